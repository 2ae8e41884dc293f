//! Slots for connections still in their transport's handshake (TLS): connections whose
//! peer nobody knows yet, so that they can be neither principals nor strangers.
//!
//! Their slots are apart from both, so that no number of handshakes takes a principal's
//! slot (a unix client is never refused for them) and no number of strangers, which
//! hold theirs until their attach times out, keeps a principal of the network from
//! finishing its handshake. When every slot is taken, a new handshake takes the oldest
//! one's slot, and the oldest is abandoned: a client that has not finished in the time
//! it took as many others to arrive is far more likely one of a flood than a client, and
//! a real client's handshake, which takes milliseconds, gets through a flood of
//! connections that send nothing at all.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

/// The handshakes in progress, at most a given number of them.
#[derive(Debug)]
pub struct Handshakes {
    max: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The id of the next handshake: ids only grow, so the first entry is the oldest.
    next: u64,
    /// Each handshake in progress, by id, with what tells it that it was abandoned.
    open: BTreeMap<u64, Arc<Notify>>,
}

/// One handshake's slot, given back when dropped.
#[derive(Debug)]
pub struct Handshake {
    handshakes: Arc<Handshakes>,
    id: u64,
    abandoned: Arc<Notify>,
}

impl Handshakes {
    /// Room for `max` handshakes at once (none at all for 0).
    pub fn new(max: usize) -> Arc<Handshakes> {
        Arc::new(Handshakes {
            max,
            state: Mutex::default(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // The map is whole after any single operation on it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot for a new handshake, taken from the oldest one if all are taken (which is
    /// told so by [`Handshake::abandoned`]); None only if there is no slot at all.
    pub fn begin(self: &Arc<Self>) -> Option<Handshake> {
        if self.max == 0 {
            return None;
        }
        let mut state = self.state();
        while state.open.len() >= self.max {
            if let Some((_, oldest)) = state.open.pop_first() {
                // Remembered by the Notify if the oldest is not waiting on it yet.
                oldest.notify_one();
            }
        }
        let id = state.next;
        state.next += 1;
        let abandoned = Arc::new(Notify::new());
        state.open.insert(id, abandoned.clone());
        Some(Handshake {
            handshakes: self.clone(),
            id,
            abandoned,
        })
    }

    /// Handshakes in progress now.
    pub fn open(&self) -> usize {
        self.state().open.len()
    }
}

impl Handshake {
    /// Resolves once a newer handshake took this one's slot: stop it then.
    pub async fn abandoned(&self) {
        self.abandoned.notified().await;
    }
}

impl Drop for Handshake {
    fn drop(&mut self) {
        // Gone already if it was abandoned.
        self.handshakes.state().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::time::Duration;

    use super::*;

    async fn is_abandoned(h: &Handshake) -> bool {
        tokio::time::timeout(Duration::from_millis(10), h.abandoned())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_new_handshake_takes_the_oldest_ones_slot_when_all_are_taken() {
        let hs = Handshakes::new(2);
        let a = hs.begin().unwrap();
        let b = hs.begin().unwrap();
        assert_eq!(hs.open(), 2);
        let c = hs.begin().unwrap();
        assert_eq!(hs.open(), 2);
        assert!(is_abandoned(&a).await, "the oldest gave its slot");
        assert!(!is_abandoned(&b).await);
        assert!(!is_abandoned(&c).await);
        // The abandoned one's drop gives back nothing it no longer holds.
        drop(a);
        assert_eq!(hs.open(), 2);
        // A finished handshake gives its slot back; then no one is abandoned for a new one.
        drop(b);
        assert_eq!(hs.open(), 1);
        let d = hs.begin().unwrap();
        assert!(!is_abandoned(&c).await);
        assert!(!is_abandoned(&d).await);
        drop((c, d));
        assert_eq!(hs.open(), 0);
    }

    #[test]
    fn no_slots_no_handshakes() {
        assert!(Handshakes::new(0).begin().is_none());
    }
}
