//! `sortie check` on every example playbook and every invalid one (exact diagnostics).
