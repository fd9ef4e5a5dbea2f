//! The runner against real listeners: scheduling, step semantics, tcp/local/assert/set.
