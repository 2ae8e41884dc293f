//! Requests on one fid run in the order they arrived.
//!
//! Requests run concurrently, but a client may pipeline several requests on one fid:
//! Topen then Tread, or a ctl command split over Twrites that must be applied in the
//! order sent. Without ordering, the second could overtake the first (a review showed
//! pipelined Twrites to a ctl file applied out of order: half a value run as a command).
//!
//! So each request that changes a fid (attach, walk's newfid, open, create, write,
//! wstat, clunk, remove) waits for every earlier request on the fids it names, and
//! becomes the change the next ones wait for. Requests that only look (read, stat, a
//! walk's source fid) wait for the last change but not for each other, so reads on a
//! held fid still run side by side; a Tclunk after them waits for them all.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::Notify;

use crate::message::Tmessage;

/// The end of one request, which later requests may wait for.
///
/// Most requests end with nobody waiting, so `finish` wakes waiters only if one
/// registered (Notify's wake-up takes a lock every time).
#[derive(Debug, Default)]
pub(super) struct Done {
    finished: AtomicBool,
    waited: AtomicBool,
    notify: Notify,
}

impl Done {
    pub(super) fn new() -> Arc<Done> {
        Arc::new(Done::default())
    }

    /// Resolves once [`finish`](Done::finish) was called.
    pub(super) async fn wait(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is raised, and the flag raised before
            // `finished` is read: so either finish sees the flag and wakes this
            // registration, or this sees `finished`.
            notified.as_mut().enable();
            self.waited.store(true, Ordering::SeqCst);
            if self.finished.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    pub(super) fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        if self.waited.load(Ordering::SeqCst) {
            self.notify.notify_waiters();
        }
    }
}

/// The fids a request names, and those it changes.
fn fids_of(msg: &Tmessage) -> ([Option<u32>; 2], [Option<u32>; 2]) {
    match msg {
        // An attach spends its afid: it waits for the writes of the credential before it.
        Tmessage::Attach(m) => {
            let afid = (m.afid != crate::message::NOFID).then_some(m.afid);
            ([Some(m.fid), afid], [Some(m.fid), afid])
        }
        Tmessage::Auth(m) => ([Some(m.afid), None], [Some(m.afid), None]),
        Tmessage::Walk(m) => ([Some(m.fid), Some(m.newfid)], [Some(m.newfid), None]),
        Tmessage::Open(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Create(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Write(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Clunk(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Remove(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Wstat(m) => ([Some(m.fid), None], [Some(m.fid), None]),
        Tmessage::Read(m) => ([Some(m.fid), None], [None, None]),
        Tmessage::Stat(m) => ([Some(m.fid), None], [None, None]),
        Tmessage::Version(_) | Tmessage::Flush(_) => ([None, None], [None, None]),
    }
}

/// What is still running on one fid: the last change, and the looks since.
#[derive(Debug, Default)]
struct FidQueue {
    last_change: Option<Arc<Done>>,
    looks: Vec<Arc<Done>>,
}

/// The requests still running on each fid, as far as order needs them.
#[derive(Debug, Default)]
pub(super) struct FidOrder {
    fids: HashMap<u32, FidQueue>,
}

impl FidOrder {
    /// Called in arrival order, before the request runs: what it must wait for. The
    /// request's own `done` is recorded for the fids it names, for later requests.
    pub(super) fn enter(&mut self, msg: &Tmessage, done: &Arc<Done>) -> Vec<Arc<Done>> {
        let (names, changes) = fids_of(msg);
        let mut before: Vec<Arc<Done>> = Vec::new();
        let mut wait_for = |d: &Arc<Done>| {
            if !Arc::ptr_eq(d, done) && !before.iter().any(|b| Arc::ptr_eq(b, d)) {
                before.push(d.clone());
            }
        };
        for fid in names.into_iter().flatten() {
            let q = self.fids.entry(fid).or_default();
            if let Some(d) = &q.last_change {
                wait_for(d);
            }
            if changes.contains(&Some(fid)) {
                for d in q.looks.drain(..) {
                    wait_for(&d);
                }
                q.last_change = Some(done.clone());
            } else {
                q.looks.push(done.clone());
            }
        }
        before
    }

    /// The request that owns `done` ended: forget it on the fids it named, each with
    /// whether the fid is still in use. A live fid's queue is kept even when empty
    /// (reads on a held fid would otherwise allocate one per read); a queue left empty
    /// on a fid that is gone (clunked, or a newfid a walk did not make) is dropped, so
    /// the map never holds more than the fids and the requests in flight.
    pub(super) fn leave(&mut self, fids: impl IntoIterator<Item = (u32, bool)>, done: &Arc<Done>) {
        for (fid, live) in fids {
            let Some(q) = self.fids.get_mut(&fid) else {
                continue;
            };
            if q.last_change.as_ref().is_some_and(|d| Arc::ptr_eq(d, done)) {
                q.last_change = None;
            }
            if let Some(i) = q.looks.iter().position(|d| Arc::ptr_eq(d, done)) {
                q.looks.swap_remove(i);
            }
            if !live && q.last_change.is_none() && q.looks.is_empty() {
                self.fids.remove(&fid);
            }
        }
    }

    /// Everything is abandoned (Tversion).
    pub(super) fn clear(&mut self) {
        self.fids.clear();
    }
}

/// The fids a request names, where [`FidOrder::enter`] recorded it.
pub(super) fn named_fids(msg: &Tmessage) -> [Option<u32>; 2] {
    fids_of(msg).0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Tread, Twrite};

    #[tokio::test]
    async fn changes_wait_for_everything_before_and_looks_only_for_changes() {
        let mut order = FidOrder::default();
        let write = |fid| {
            Tmessage::from(Twrite {
                fid,
                offset: 0,
                data: vec![1u8].into(),
            })
        };
        let read = |fid| {
            Tmessage::from(Tread {
                fid,
                offset: 0,
                count: 1,
            })
        };
        let w1 = Done::new();
        assert!(order.enter(&write(1), &w1).is_empty());
        let (r1, r2) = (Done::new(), Done::new());
        let before_r1 = order.enter(&read(1), &r1);
        let before_r2 = order.enter(&read(1), &r2);
        assert!(before_r1.len() == 1 && Arc::ptr_eq(&before_r1[0], &w1));
        assert!(
            before_r2.len() == 1 && Arc::ptr_eq(&before_r2[0], &w1),
            "reads do not wait for reads"
        );
        let w2 = Done::new();
        let before_w2 = order.enter(&write(1), &w2);
        assert_eq!(
            before_w2.len(),
            3,
            "a change waits for the change and both reads"
        );
        // Another fid is independent.
        assert!(order.enter(&write(2), &Done::new()).is_empty());
        for d in [&w1, &r1, &r2] {
            d.finish();
            order.leave([(1, true)], d);
        }
        for d in &before_w2 {
            d.wait().await;
        }
        order.leave([(1, false)], &w2);
        assert!(!order.fids.contains_key(&1));
    }
}
