//! Where the hosts of a batch meet for a `fleet` step: a [`Barrier`] per fleet step and
//! batch, made by the engine (`exec::play`) with the batch's host names. Each host either
//! arrives with its value (the kind's `run`) or is marked absent with the reason (it failed
//! earlier, was skipped, or stopped: `exec::host`); once every host of the batch has done one
//! or the other, every waiting host gets the same [`Outcome`]. A waiting host gives back its
//! slots ([`Slots`]: its groups' limits and its place among the hosts in flight), so hosts that
//! have not started yet can start and reach the barrier, and takes them again afterwards.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::Value as Json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// The values of the hosts that arrived, in batch order, and the hosts left out, with why.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    pub values: Vec<(String, Json)>,
    pub left_out: Vec<(String, String)>,
}

#[derive(Default)]
struct State {
    values: HashMap<String, Json>,
    absent: HashMap<String, String>,
}

/// One fleet step's meeting point for one batch.
pub struct Barrier {
    /// The batch's hosts, in inventory order.
    expected: Vec<String>,
    state: Mutex<State>,
    done: watch::Sender<Option<Arc<Outcome>>>,
}

impl Barrier {
    pub fn new(expected: Vec<String>) -> Arc<Barrier> {
        let (done, _) = watch::channel(None);
        let b = Arc::new(Barrier {
            expected,
            state: Mutex::new(State::default()),
            done,
        });
        b.settle();
        b
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds this host's value and waits until every host of the batch has arrived or been
    /// left out.
    pub async fn arrive(&self, host: &str, value: Json) -> Arc<Outcome> {
        let mut rx = self.done.subscribe();
        {
            let mut s = self.lock();
            if !s.absent.contains_key(host) {
                s.values.insert(host.to_string(), value);
            }
        }
        self.settle();
        loop {
            if let Some(o) = rx.borrow_and_update().clone() {
                return o;
            }
            // The sender lives as long as `self`: a closed channel cannot happen while we
            // hold `&self`, but end rather than spin if it did.
            if rx.changed().await.is_err() {
                return Arc::new(self.outcome(&self.lock()));
            }
        }
    }

    /// Leaves a host out (unless it has arrived already): it will not bring a value.
    pub fn absent(&self, host: &str, reason: &str) {
        {
            let mut s = self.lock();
            if s.values.contains_key(host) || s.absent.contains_key(host) {
                return;
            }
            s.absent.insert(host.to_string(), reason.to_string());
        }
        self.settle();
    }

    /// Publishes the outcome once every expected host has arrived or been left out.
    fn settle(&self) {
        let s = self.lock();
        let complete = self
            .expected
            .iter()
            .all(|h| s.values.contains_key(h) || s.absent.contains_key(h));
        if complete && self.done.borrow().is_none() {
            let o = Arc::new(self.outcome(&s));
            self.done.send_replace(Some(o));
        }
    }

    fn outcome(&self, s: &State) -> Outcome {
        let mut o = Outcome::default();
        for h in &self.expected {
            if let Some(v) = s.values.get(h) {
                o.values.push((h.clone(), v.clone()));
            } else if let Some(r) = s.absent.get(h) {
                o.left_out.push((h.clone(), r.clone()));
            }
        }
        o
    }
}

/// The slots a running host holds: one per limited group it belongs to (in group-name order),
/// then its place among the hosts in flight. Given back while it waits at a barrier.
pub struct Slots {
    sems: Vec<Arc<Semaphore>>,
    held: Mutex<Vec<OwnedSemaphorePermit>>,
}

impl Slots {
    /// Slots over these semaphores (taken in this order), none held yet.
    pub fn new(sems: Vec<Arc<Semaphore>>) -> Arc<Slots> {
        Arc::new(Slots {
            sems,
            held: Mutex::new(Vec::new()),
        })
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Vec<OwnedSemaphorePermit>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes every slot, in order; `false` if a semaphore was closed.
    pub async fn take(&self) -> bool {
        let mut permits = Vec::with_capacity(self.sems.len());
        for s in &self.sems {
            match s.clone().acquire_owned().await {
                Ok(p) => permits.push(p),
                Err(_) => return false,
            }
        }
        *self.held() = permits;
        true
    }

    /// Gives every slot back.
    pub fn give_back(&self) {
        self.held().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_host_gets_the_same_outcome_once_all_arrived_or_left_out() {
        let b = Barrier::new(vec!["a".into(), "b".into(), "c".into()]);
        let b1 = b.clone();
        let first = tokio::spawn(async move { b1.arrive("a", Json::from(1)).await });
        b.absent("b", "failed earlier");
        let last = b.arrive("c", Json::from(2)).await;
        let first = first.await.unwrap();
        assert_eq!(first, last);
        assert_eq!(
            last.values,
            vec![
                ("a".to_string(), Json::from(1)),
                ("c".to_string(), Json::from(2))
            ]
        );
        assert_eq!(
            last.left_out,
            vec![("b".to_string(), "failed earlier".to_string())]
        );
        // Late news changes nothing.
        b.absent("a", "too late");
        assert_eq!(b.arrive("c", Json::from(9)).await, last);
    }

    #[tokio::test]
    async fn a_batch_of_nobody_settles_at_once() {
        let b = Barrier::new(Vec::new());
        assert_eq!(*b.arrive("x", Json::Null).await, Outcome::default());
    }
}
