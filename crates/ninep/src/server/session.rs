//! One connection's session: its fids and outstanding tags, and the protocol checks made
//! for every message before the filesystem sees it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::BytesMut;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::AbortHandle;
use tracing::{debug, trace};
use zeroize::{Zeroize, Zeroizing};

use super::admission::Slot;
use super::order::{Done, FidOrder, named_fids};
use super::{Authenticated, ClunkKind, Filesystem, Limits, MIN_MSIZE, Peer, Reading, Ready};
use crate::error::{Error, Result, ename};
use crate::message::*;
use crate::wire::Wire;

/// What the core keeps for one fid.
struct FidState<F: Filesystem> {
    /// The handler's state, shared with requests that are running on this fid.
    handler: Arc<F::Fid>,
    qid: Qid,
    /// The open mode, once opened.
    open: Option<u8>,
    iounit: u32,
    /// The entries of an open directory, taken at the read at offset 0.
    dir: Option<DirCursor>,
    /// The reads waiting for their data on this fid, made at the first one.
    waits: Option<Arc<FidWaits>>,
    /// Taken from the table (clunked, removed, dropped): a read must not start waiting.
    gone: bool,
}

/// The reads of one fid that wait for their data ([`Reading::Later`]).
struct FidWaits {
    /// How many of them hold no reply permit ([`Limits::max_waiting_reads_per_fid`]).
    parked: AtomicUsize,
    /// Set when the fid leaves the table: its waiting reads end.
    ended: watch::Sender<bool>,
}

/// A waiting read counted as parked (no permits, outside `max_outstanding`) on its fid,
/// its connection and the server, until dropped.
struct Parked<'a> {
    waits: &'a FidWaits,
    session: &'a AtomicUsize,
    stats: &'a super::stats::Stats,
}

impl Drop for Parked<'_> {
    fn drop(&mut self) {
        self.waits.parked.fetch_sub(1, Ordering::AcqRel);
        self.session.fetch_sub(1, Ordering::AcqRel);
        self.stats.waiting_ended();
    }
}

/// An authentication fid: made by Tauth, written the credential, spent by one Tattach.
struct AuthFid {
    /// The uname and aname of the Tauth: the attach must name the same.
    uname: String,
    aname: String,
    /// What was written to it, at most `Limits::max_credential_len` bytes. Its capacity is
    /// reserved up front, so that it never reallocates and leaves a copy behind.
    credential: Zeroizing<Vec<u8>>,
    /// Taken by an attach (whatever its outcome): it serves no other.
    spent: bool,
}

struct DirCursor {
    entries: Vec<Stat>,
    next: usize,
    offset: u64,
}

type Fid<F> = Arc<Mutex<FidState<F>>>;

impl<F: Filesystem> FidState<F> {
    /// The fid is out of the table: the reads waiting on it end, and none starts.
    fn leave_table(&mut self) {
        self.gone = true;
        if let Some(waits) = &self.waits {
            waits.ended.send_replace(true);
        }
    }
}

/// The right to have one more request's reply in memory, on this connection and for its
/// principal (a stranger has none). Taken by the reader before it decodes a frame, and
/// given back only when the reply has been written: so a client that sends without
/// reading stops being read, instead of growing the server's memory, and a principal
/// that does so stalls only itself.
pub(super) struct Permits {
    pub(super) _connection: OwnedSemaphorePermit,
    pub(super) _principal: Option<OwnedSemaphorePermit>,
}

/// Where a connection's reply permits come from.
pub(super) struct ReplyBudget {
    /// The connection's window of unwritten replies.
    pub(super) window: Arc<Semaphore>,
    /// How much the window grows at the first successful attach of a principal's
    /// connection.
    pub(super) growth: usize,
    /// The connection's slot: a principal's, with its pool, or a stranger's, without.
    pub(super) slot: Slot,
}

/// A reply on its way to the writer, with the permits of the request it answers.
pub(super) struct Outgoing {
    pub(super) bytes: Zeroizing<Vec<u8>>,
    pub(super) permits: Option<Permits>,
}

/// An outstanding request.
struct InFlight {
    /// Set for requests that change nothing (walk, read, stat), which a flush may
    /// cancel; others run to completion and reply before the Rflush.
    abort: Option<AbortHandle>,
    /// Tags of Tflush requests waiting for this request to finish, with their permits.
    flushers: Vec<(u16, Option<Permits>)>,
    /// The session generation it belongs to: a Tversion starts a new one, and a late
    /// request of an old one must not answer, or retire, a new request with its tag.
    generation: u64,
    /// Resolved when the request's task has ended.
    done: Arc<Done>,
}

pub(super) struct Session<F: Filesystem> {
    fs: Arc<F>,
    limits: Arc<Limits>,
    /// The server's counters, shared by every connection.
    stats: Arc<super::stats::Stats>,
    peer: Peer,
    /// The negotiated msize; 0 until Tversion succeeds.
    msize: AtomicU32,
    fids: Mutex<HashMap<u32, Fid<F>>>,
    inflight: Mutex<HashMap<u16, InFlight>>,
    /// Bumped by every Tversion.
    generation: AtomicU64,
    /// Whether an attach has succeeded (see `Limits::attach_timeout`).
    attached: AtomicBool,
    /// The connection's window of unwritten replies, and how much it grows once a
    /// principal's connection has attached (see `Limits::pre_attach_window`).
    window: Arc<Semaphore>,
    window_growth: usize,
    /// Whether the window has grown.
    grown: AtomicBool,
    /// The connection's place in the admission counts, given back when the session ends.
    slot: Mutex<Slot>,
    /// The principal's pool of reply permits: set from the start for a principal's
    /// connection, at its first attach with a credential for a stranger's.
    pool: OnceLock<Arc<Semaphore>>,
    /// Authentication fids, by number (they share the fids' numbers and cap).
    afids: Mutex<HashMap<u32, AuthFid>>,
    /// The principal the connection's credentials proved, once one did.
    proven: Mutex<Option<String>>,
    /// Set when a credential an attach was made with stops holding: the connection ends.
    credential_ended: watch::Sender<bool>,
    /// The tasks that wait for each credential to stop holding; ended with the session.
    credential_watches: Mutex<Vec<AbortHandle>>,
    /// Reads waiting for their data without permits: not counted as outstanding.
    parked: AtomicUsize,
    /// Set when the connection closes gracefully (shutdown): waiting reads end then.
    closing: watch::Sender<bool>,
    order: Mutex<FidOrder>,
    idle: Notify,
    tx: mpsc::UnboundedSender<Outgoing>,
}

/// Locks a mutex, recovering it if a panicking thread poisoned it: the data it guards
/// (maps of fids and tags) is valid after any single operation on it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Sends the reply of a request when the request's task ends, whether it finished or
/// was cancelled by a flush, and then the Rflush of whoever flushed it; then lets the
/// next request on the same fids run.
struct ReplyGuard<F: Filesystem> {
    session: Arc<Session<F>>,
    tag: u16,
    generation: u64,
    reply: Option<Rmessage>,
    permits: Option<Permits>,
    done: Arc<Done>,
    named: [Option<u32>; 2],
}

impl<F: Filesystem> ReplyGuard<F> {
    fn set_reply(&mut self, reply: Rmessage) {
        self.reply = Some(reply);
    }

    /// Lets the next requests on the request's fids run (done again at the end, which
    /// changes nothing then).
    fn leave_order(&self) {
        self.done.finish();
        // Lock order: fids, then order (nowhere else holds both).
        let fids = lock(&self.session.fids);
        let live = self
            .named
            .into_iter()
            .flatten()
            .map(|f| (f, fids.contains_key(&f)));
        lock(&self.session.order).leave(live, &self.done);
    }
}

impl<F: Filesystem> Drop for ReplyGuard<F> {
    fn drop(&mut self) {
        let mut reply = self.reply.take();
        if reply.is_none() && std::thread::panicking() {
            // A handler bug must not leave the client waiting forever on this tag.
            reply = Some(Rmessage::error(ename::IO));
        }
        self.session
            .complete(self.tag, self.generation, reply, self.permits.take());
        // After the reply is queued, so that replies on one fid keep their order too.
        self.leave_order();
    }
}

fn access_needed(mode: u8) -> u32 {
    let mut need = match mode & 3 {
        om::READ => dm::READ,
        om::WRITE => dm::WRITE,
        om::RDWR => dm::READ | dm::WRITE,
        _ => dm::EXEC,
    };
    if mode & (om::TRUNC | om::RCLOSE) != 0 {
        need |= dm::WRITE;
    }
    need
}

fn reads(mode: u8) -> bool {
    matches!(mode & 3, om::READ | om::RDWR | om::EXEC)
}

fn writes(mode: u8) -> bool {
    matches!(mode & 3, om::WRITE | om::RDWR)
}

/// A name that can be one element of a path.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.contains('/') || name.contains('\0') {
        return Err(Error::new(ename::BAD_NAME));
    }
    Ok(())
}

/// The Rversion answer to a version string (version(5)): any "9P2000..." dialect, and any
/// later year, is answered with plain 9P2000; anything else is "unknown".
fn negotiate_version(asked: &str) -> Option<&'static str> {
    let rest = asked.strip_prefix("9P")?;
    let year: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    match year.parse::<u32>() {
        Ok(y) if y >= 2000 => Some(VERSION_9P2000),
        _ => None,
    }
}

impl<F: Filesystem> Session<F> {
    pub(super) fn new(
        fs: Arc<F>,
        limits: Arc<Limits>,
        stats: Arc<super::stats::Stats>,
        peer: Peer,
        tx: mpsc::UnboundedSender<Outgoing>,
        budget: ReplyBudget,
    ) -> Self {
        let ReplyBudget {
            window,
            growth: window_growth,
            slot,
        } = budget;
        let pool = OnceLock::new();
        if let Some(p) = slot.pool() {
            let _ = pool.set(p);
        }
        Session {
            fs,
            limits,
            stats,
            peer,
            msize: AtomicU32::new(0),
            fids: Mutex::new(HashMap::new()),
            inflight: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
            attached: AtomicBool::new(false),
            window,
            window_growth,
            grown: AtomicBool::new(false),
            slot: Mutex::new(slot),
            pool,
            afids: Mutex::new(HashMap::new()),
            proven: Mutex::new(None),
            credential_ended: watch::channel(false).0,
            credential_watches: Mutex::new(Vec::new()),
            parked: AtomicUsize::new(0),
            closing: watch::channel(false).0,
            order: Mutex::new(FidOrder::default()),
            idle: Notify::new(),
            tx,
        }
    }

    /// The largest frame the reader accepts now: the negotiated msize, or before
    /// negotiation the most the server would agree to.
    pub(super) fn max_frame_size(&self) -> u32 {
        match self.msize.load(Ordering::Acquire) {
            0 => self.limits.max_msize,
            m => m,
        }
    }

    /// Whether an attach has succeeded on this connection.
    pub(super) fn has_attached(&self) -> bool {
        self.attached.load(Ordering::Acquire)
    }

    fn iounit(&self) -> u32 {
        self.max_frame_size() - IOHDRSZ
    }

    /// The principal's pool of reply permits, if the connection is a principal's.
    pub(super) fn pool(&self) -> Option<&Arc<Semaphore>> {
        self.pool.get()
    }

    /// Resolves when a credential an attach on this connection was made with stops
    /// holding; never, if none does.
    pub(super) fn credential_ended(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut ended = self.credential_ended.subscribe();
        async move {
            if ended.wait_for(|e| *e).await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// An attach succeeded: the window grows to its full size, once, if the connection is
    /// a principal's by now.
    fn attach_succeeded(&self) {
        self.attached.store(true, Ordering::Release);
        if self.pool().is_some() && !self.grown.swap(true, Ordering::AcqRel) {
            self.window.add_permits(self.window_growth);
        }
    }

    /// Encodes and queues a reply, with the permits it holds until written. A reply that
    /// would not fit the msize (a handler's overlong stat or error) is replaced by an
    /// error that does.
    fn send(&self, tag: u16, msg: Rmessage, permits: Option<Permits>) {
        if matches!(msg, Rmessage::Error(_)) {
            self.stats.error();
        }
        let mut frame = Rframe { tag, msg };
        let max = self.max_frame_size() as usize;
        if frame.byte_size() > max {
            debug!(reply = %frame, "reply larger than msize");
            frame.msg = Rmessage::error(ename::IO);
        }
        if let Rmessage::Error(e) = &mut frame.msg {
            // Keep an error string well inside the smallest msize.
            if e.ename.len() > 1024 {
                let mut cut = 1024;
                while !e.ename.is_char_boundary(cut) {
                    cut -= 1;
                }
                e.ename.truncate(cut);
            }
        }
        trace!(peer = %self.peer.addr, "-> {frame}");
        let mut bytes = Zeroizing::new(Vec::with_capacity(frame.byte_size()));
        frame.encode(&mut *bytes);
        // The writer is gone only when the connection is closing; the reply has nowhere
        // to go then.
        let _ = self.tx.send(Outgoing { bytes, permits });
    }

    /// Replies with an error at once, outside the request machinery (the reader uses it
    /// before closing a connection).
    pub(super) fn reply_error_now(&self, tag: u16, ename: &str) {
        self.send(tag, Rmessage::error(ename), None);
    }

    /// A request's task ended: send its reply (if it has one and the session was not
    /// reset meanwhile), then the Rflush of each flush waiting on it.
    fn complete(
        &self,
        tag: u16,
        generation: u64,
        reply: Option<Rmessage>,
        permits: Option<Permits>,
    ) {
        let mut inflight = lock(&self.inflight);
        match inflight.get(&tag) {
            Some(entry) if entry.generation == generation => {}
            // Abandoned by a Tversion; the tag may already belong to a new request.
            _ => return,
        }
        let Some(entry) = inflight.remove(&tag) else {
            return;
        };
        // Sending under the lock keeps a flush from overtaking the reply it waits for.
        if let Some(reply) = reply {
            self.send(tag, reply, permits);
        }
        for (flusher, permits) in entry.flushers {
            self.send(flusher, Rflush {}.into(), permits);
        }
        if inflight.is_empty() {
            self.idle.notify_waiters();
        }
    }

    /// Decodes one frame and starts its request. Version and flush are handled here, in
    /// order; every other request runs as its own task.
    pub(super) async fn handle_frame(self: &Arc<Self>, mut bytes: BytesMut, permits: Permits) {
        self.stats.request();
        let header = FrameHeader::parse(&bytes).ok();
        let decoded = Tframe::decode(&bytes);
        // Twrite payloads may be secrets: wipe the frame once decoded.
        bytes.as_mut().zeroize();
        let frame = match decoded {
            Ok(f) => f,
            Err(e) => {
                if let Some(h) = header {
                    debug!(peer = %self.peer.addr, tag = h.tag, error = %e, "bad message");
                    self.send(
                        h.tag,
                        Rmessage::error(format!("{}: {e}", ename::BAD_MESSAGE)),
                        Some(permits),
                    );
                }
                return;
            }
        };
        trace!(peer = %self.peer.addr, "<- {frame}");
        let Tframe { tag, msg } = frame;
        match msg {
            Tmessage::Version(m) => {
                let reply = self.version(m).await;
                self.send(tag, reply, Some(permits));
            }
            Tmessage::Flush(m) => self.flush(tag, m.oldtag, permits),
            _ if self.msize.load(Ordering::Acquire) == 0 => {
                self.send(tag, Rmessage::error(ename::NO_VERSION), Some(permits));
            }
            msg => self.start(tag, msg, permits),
        }
    }

    fn start(self: &Arc<Self>, tag: u16, msg: Tmessage, permits: Permits) {
        let cancellable = matches!(
            msg,
            Tmessage::Walk(_) | Tmessage::Read(_) | Tmessage::Stat(_)
        );
        let generation = self.generation.load(Ordering::Acquire);
        let done = Done::new();
        {
            let mut inflight = lock(&self.inflight);
            if inflight.contains_key(&tag) {
                drop(inflight);
                self.send(tag, Rmessage::error(ename::DUPLICATE_TAG), Some(permits));
                return;
            }
            // Reads that wait for their data without permits do not count.
            let outstanding = inflight
                .len()
                .saturating_sub(self.parked.load(Ordering::Acquire));
            if outstanding >= self.limits.max_outstanding {
                drop(inflight);
                self.send(
                    tag,
                    Rmessage::error(ename::TOO_MANY_REQUESTS),
                    Some(permits),
                );
                return;
            }
            inflight.insert(
                tag,
                InFlight {
                    abort: None,
                    flushers: Vec::new(),
                    generation,
                    done: done.clone(),
                },
            );
        }
        // In arrival order: this is what keeps requests on one fid in order.
        let before = lock(&self.order).enter(&msg, &done);
        let mut guard = ReplyGuard {
            session: self.clone(),
            tag,
            generation,
            reply: None,
            permits: Some(permits),
            named: named_fids(&msg),
            done,
        };
        let handle = tokio::spawn(async move {
            for earlier in before {
                earlier.wait().await;
            }
            let session = guard.session.clone();
            let reply = match msg {
                // A read may wait for its data: it needs the guard's permits and order.
                Tmessage::Read(m) => session.read(m, &mut guard).await,
                msg => session.dispatch(msg).await,
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => Rmessage::error(e.0),
            };
            guard.set_reply(reply);
        });
        if cancellable && let Some(entry) = lock(&self.inflight).get_mut(&tag) {
            entry.abort = Some(handle.abort_handle());
        }
    }

    /// Tflush (flush(5)): always answered with Rflush, never Rerror. If the old request
    /// is still outstanding, a request that changes nothing is cancelled; the Rflush is
    /// sent when it is gone, after its reply if it got that far.
    fn flush(&self, tag: u16, oldtag: u16, permits: Permits) {
        let mut inflight = lock(&self.inflight);
        match inflight.get_mut(&oldtag) {
            Some(entry) if oldtag != tag => {
                entry.flushers.push((tag, Some(permits)));
                if let Some(abort) = &entry.abort {
                    abort.abort();
                }
            }
            _ => self.send(tag, Rflush {}.into(), Some(permits)),
        }
    }

    /// Tversion: negotiates msize and version and resets the session: outstanding
    /// requests are abandoned (cancelled where possible, their replies dropped) and
    /// every fid is clunked.
    async fn version(&self, m: Tversion) -> Rmessage {
        self.reset().await;
        if m.msize < MIN_MSIZE {
            self.msize.store(0, Ordering::Release);
            return Rmessage::error(ename::MSIZE_TOO_SMALL);
        }
        let msize = m.msize.min(self.limits.max_msize);
        match negotiate_version(&m.version) {
            Some(v) => {
                self.msize.store(msize, Ordering::Release);
                debug!(peer = %self.peer.addr, msize, asked = %m.version, "version negotiated");
                Rversion {
                    msize,
                    version: v.to_string(),
                }
                .into()
            }
            None => {
                self.msize.store(0, Ordering::Release);
                Rversion {
                    msize,
                    version: VERSION_UNKNOWN.to_string(),
                }
                .into()
            }
        }
    }

    /// Abandons every outstanding request of this generation and waits until their
    /// tasks have ended (the cancellable ones are cancelled; the others finish, and their
    /// replies are dropped), so that nothing of the old session touches the new one.
    async fn reset(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let abandoned: Vec<InFlight> = lock(&self.inflight).drain().map(|(_, e)| e).collect();
        for entry in &abandoned {
            if let Some(abort) = &entry.abort {
                abort.abort();
            }
        }
        for entry in &abandoned {
            entry.done.wait().await;
        }
        lock(&self.order).clear();
        self.drop_fids().await;
    }

    async fn drop_fids(&self) {
        // Their credentials are wiped as they go.
        lock(&self.afids).clear();
        let fids: Vec<Fid<F>> = lock(&self.fids).drain().map(|(_, f)| f).collect();
        self.stats.fids_removed(fids.len() as u64);
        for fid in fids {
            let (handler, open) = {
                let mut st = lock(&fid);
                st.leave_table();
                (st.handler.clone(), st.open)
            };
            if open.is_some_and(|m| m & om::RCLOSE != 0) {
                let _ = self.fs.remove(&handler).await;
            }
            let _ = self.fs.clunk(&handler, ClunkKind::Dropped).await;
        }
    }

    /// The connection is ending. On a graceful shutdown the outstanding requests finish
    /// and reply first (reads waiting for their data are answered "device shut down"
    /// at once); otherwise those that can be are cancelled. Then every fid is clunked as
    /// dropped.
    pub(super) async fn close(&self, graceful: bool) {
        self.closing.send_replace(true);
        for watch in lock(&self.credential_watches).drain(..) {
            watch.abort();
        }
        if !graceful {
            for entry in lock(&self.inflight).values() {
                if let Some(abort) = &entry.abort {
                    abort.abort();
                }
            }
        }
        loop {
            let idle = self.idle.notified();
            if lock(&self.inflight).is_empty() {
                break;
            }
            idle.await;
        }
        self.drop_fids().await;
    }

    fn fid(&self, fid: u32) -> Result<Fid<F>> {
        let found = lock(&self.fids).get(&fid).cloned();
        found.ok_or_else(|| self.missing_fid(fid))
    }

    /// The error for a request on `fid`, which is not in the table of fids: an afid is
    /// good for reads, writes and clunks only.
    fn missing_fid(&self, fid: u32) -> Error {
        if lock(&self.afids).contains_key(&fid) {
            Error::new(ename::AFID_MISUSED)
        } else {
            Error::new(ename::UNKNOWN_FID)
        }
    }

    /// Checks that `fid` may be added: not in use (as a fid or an afid), and under the
    /// per-connection cap (which counts both).
    fn check_new_fid(&self, fid: u32) -> Result<()> {
        let fids = lock(&self.fids);
        let afids = lock(&self.afids);
        if fids.contains_key(&fid) || afids.contains_key(&fid) {
            return Err(Error::new(ename::FID_IN_USE));
        }
        if fids.len() + afids.len() >= self.limits.max_fids {
            return Err(Error::new(ename::TOO_MANY_FIDS));
        }
        Ok(())
    }

    /// Takes the afid `fid` out of its table (its credential wiped), if it is one.
    fn take_afid(&self, fid: u32) -> bool {
        lock(&self.afids).remove(&fid).is_some()
    }

    /// Adds a fid, checking again: another request may have taken the number while the
    /// handler ran.
    async fn insert_fid(&self, fid: u32, handler: F::Fid, qid: Qid) -> Result<()> {
        let state = FidState {
            handler: Arc::new(handler),
            qid,
            open: None,
            iounit: 0,
            dir: None,
            waits: None,
            gone: false,
        };
        let refused = {
            // Lock order: fids, then afids.
            let mut fids = lock(&self.fids);
            let is_afid = lock(&self.afids).contains_key(&fid);
            match fids.entry(fid) {
                std::collections::hash_map::Entry::Occupied(_) => Some(state),
                std::collections::hash_map::Entry::Vacant(_) if is_afid => Some(state),
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(Arc::new(Mutex::new(state)));
                    self.stats.fids_added(1);
                    None
                }
            }
        };
        match refused {
            Some(state) => {
                let _ = self.fs.clunk(&state.handler, ClunkKind::Dropped).await;
                Err(Error::new(ename::FID_IN_USE))
            }
            None => Ok(()),
        }
    }

    async fn dispatch(&self, msg: Tmessage) -> Result<Rmessage> {
        match msg {
            Tmessage::Auth(m) => self.auth(m),
            Tmessage::Attach(m) => self.attach(m).await,
            Tmessage::Walk(m) => self.walk(m).await,
            Tmessage::Open(m) => self.open(m).await,
            Tmessage::Create(m) => self.create(m).await,
            // Started by `start` with its guard; never dispatched.
            Tmessage::Read(_) => Err(Error::new(ename::BOTCH)),
            Tmessage::Write(m) => self.write(m).await,
            Tmessage::Clunk(m) => self.clunk(m).await,
            Tmessage::Remove(m) => self.remove(m).await,
            Tmessage::Stat(m) => self.stat(m).await,
            Tmessage::Wstat(m) => self.wstat(m).await,
            // Handled in order by handle_frame; never spawned.
            Tmessage::Version(_) | Tmessage::Flush(_) => Err(Error::new(ename::BOTCH)),
        }
    }

    async fn attach(&self, m: Tattach) -> Result<Rmessage> {
        let needs_credential = self.fs.needs_credential(&self.peer);
        match (m.afid, needs_credential) {
            (NOFID, true) => return Err(Error::new(ename::AUTH_REQUIRED)),
            (NOFID, false) => {}
            (_, false) => return Err(Error::new(ename::NO_AUTH)),
            (afid, true) => return self.attach_with_credential(m, afid).await,
        }
        self.check_new_fid(m.fid)?;
        let (qid, handler) = self.fs.attach(&self.peer, &m.uname, &m.aname).await?;
        self.insert_fid(m.fid, handler, qid).await?;
        self.attach_succeeded();
        Ok(Rattach { qid }.into())
    }

    /// Tauth: an afid for a connection that needs a credential, to be written it and
    /// spent by a Tattach.
    fn auth(&self, m: Tauth) -> Result<Rmessage> {
        if !self.fs.needs_credential(&self.peer) {
            return Err(Error::new(ename::NO_AUTH));
        }
        self.check_new_fid(m.afid)?;
        let afid = AuthFid {
            uname: m.uname,
            aname: m.aname,
            credential: Zeroizing::new(Vec::with_capacity(self.limits.max_credential_len)),
            spent: false,
        };
        // Checked again under the lock of both tables: a concurrent request may have
        // taken the number meanwhile.
        let fids = lock(&self.fids);
        let mut afids = lock(&self.afids);
        if fids.contains_key(&m.afid) || afids.contains_key(&m.afid) {
            return Err(Error::new(ename::FID_IN_USE));
        }
        if afids.len() >= self.limits.max_afids {
            return Err(Error::new(ename::TOO_MANY_AFIDS));
        }
        afids.insert(m.afid, afid);
        drop((fids, afids));
        let aqid = Qid {
            ty: qt::AUTH,
            version: 0,
            path: u64::from(m.afid),
        };
        Ok(Rauth { aqid }.into())
    }

    /// Tattach with an afid: its credential, taken from it once, goes to the filesystem;
    /// what that proves makes the connection its principal's.
    async fn attach_with_credential(&self, m: Tattach, afid: u32) -> Result<Rmessage> {
        self.check_new_fid(m.fid)?;
        let credential = {
            let mut afids = lock(&self.afids);
            let Some(auth) = afids.get_mut(&afid) else {
                drop(afids);
                return Err(Error::new(if lock(&self.fids).contains_key(&afid) {
                    ename::NOT_AN_AFID
                } else {
                    ename::UNKNOWN_FID
                }));
            };
            if auth.spent {
                return Err(Error::new(ename::AFID_SPENT));
            }
            // Spent whatever happens next: a guess costs a Tauth and a write each time.
            auth.spent = true;
            if auth.uname != m.uname || auth.aname != m.aname {
                auth.credential.zeroize();
                return Err(Error::new(ename::AFID_MISMATCH));
            }
            std::mem::take(&mut auth.credential)
        };
        if lock(&self.credential_watches).len() >= self.limits.max_credential_attaches {
            return Err(Error::new(ename::TOO_MANY_CREDENTIALS));
        }
        let Authenticated {
            qid,
            fid: handler,
            principal,
            ends,
        } = self
            .fs
            .attach_with_credential(&self.peer, &m.uname, &m.aname, &credential)
            .await?;
        drop(credential);
        if let Err(e) = self.prove(principal) {
            let _ = self.fs.clunk(&handler, ClunkKind::Dropped).await;
            return Err(e);
        }
        self.insert_fid(m.fid, handler, qid).await?;
        self.watch_credential(ends);
        self.attach_succeeded();
        Ok(Rattach { qid }.into())
    }

    /// The connection proved itself `principal`: it becomes that principal's (its slot
    /// and pool, for a stranger's), unless it proved another before.
    fn prove(&self, principal: String) -> Result<()> {
        let mut proven = lock(&self.proven);
        match &*proven {
            Some(p) if *p == principal => return Ok(()),
            Some(_) => return Err(Error::new(ename::ANOTHER_PRINCIPAL)),
            None => {}
        }
        let mut slot = lock(&self.slot);
        if let Err(refused) = slot.prove(principal.clone()) {
            debug!(peer = %self.peer.addr, %refused, "a proven principal has no slot left");
            return Err(Error::new(refused.to_string()));
        }
        if let Some(pool) = slot.pool() {
            let _ = self.pool.set(pool);
        }
        *proven = Some(principal);
        Ok(())
    }

    /// Ends the connection when `ends` resolves: the credential stopped holding.
    fn watch_credential(&self, ends: Ready) {
        let ended = self.credential_ended.clone();
        let task = tokio::spawn(async move {
            ends.await;
            ended.send_replace(true);
        });
        lock(&self.credential_watches).push(task.abort_handle());
    }

    /// walk(5): a walk whose first name fails is an error; one that fails later returns
    /// the qids walked so far and does not create newfid.
    async fn walk(&self, m: Twalk) -> Result<Rmessage> {
        let fid = self.fid(m.fid)?;
        let (start, start_qid) = {
            let st = lock(&fid);
            if st.open.is_some() {
                return Err(Error::new(ename::WALK_OPEN_FID));
            }
            (st.handler.clone(), st.qid)
        };
        if m.newfid != m.fid {
            self.check_new_fid(m.newfid)?;
        }
        if m.wnames.is_empty() {
            if m.newfid != m.fid {
                let copy = self.fs.clone_fid(&start);
                self.insert_fid(m.newfid, copy, start_qid).await?;
            }
            return Ok(Rwalk { wqids: vec![] }.into());
        }
        let mut wqids = Vec::with_capacity(m.wnames.len());
        let mut here = start;
        let mut here_qid = start_qid;
        for (i, name) in m.wnames.iter().enumerate() {
            let step = if !here_qid.is_dir() {
                Err(Error::new(ename::NOT_A_DIRECTORY))
            } else {
                match check_name(name) {
                    Ok(()) => self.fs.walk(&here, name).await,
                    Err(e) => Err(e),
                }
            };
            match step {
                Ok((qid, next)) => {
                    wqids.push(qid);
                    here = Arc::new(next);
                    here_qid = qid;
                }
                Err(e) if i == 0 => return Err(e),
                Err(_) => return Ok(Rwalk { wqids }.into()),
            }
        }
        let handler = Arc::try_unwrap(here).map_err(|_| Error::new(ename::BOTCH));
        let handler = match handler {
            Ok(h) => h,
            // Only the walk itself held the state it made.
            Err(e) => return Err(e),
        };
        if m.newfid == m.fid {
            let mut st = lock(&fid);
            st.handler = Arc::new(handler);
            st.qid = here_qid;
        } else {
            self.insert_fid(m.newfid, handler, here_qid).await?;
        }
        Ok(Rwalk { wqids }.into())
    }

    async fn open(&self, m: Topen) -> Result<Rmessage> {
        let fid = self.fid(m.fid)?;
        let handler = {
            let st = lock(&fid);
            if st.open.is_some() {
                return Err(Error::new(ename::ALREADY_OPEN));
            }
            st.handler.clone()
        };
        let stat = self.fs.stat(&handler).await?;
        let is_dir = stat.mode & dm::DIR != 0 || stat.qid.is_dir();
        if is_dir && (m.mode & 3 != om::READ || m.mode & (om::TRUNC | om::RCLOSE) != 0) {
            return Err(Error::new(ename::IS_A_DIRECTORY));
        }
        let need = access_needed(m.mode);
        if (stat.mode & 0o700) & need != need {
            return Err(Error::permission_denied());
        }
        self.fs.open(&handler, m.mode).await?;
        let iounit = self.iounit();
        let mut st = lock(&fid);
        if st.open.is_some() {
            return Err(Error::new(ename::ALREADY_OPEN));
        }
        st.open = Some(m.mode);
        st.qid = stat.qid;
        st.iounit = iounit;
        Ok(Ropen {
            qid: stat.qid,
            iounit,
        }
        .into())
    }

    async fn create(&self, m: Tcreate) -> Result<Rmessage> {
        let fid = self.fid(m.fid)?;
        let (handler, qid) = {
            let st = lock(&fid);
            if st.open.is_some() {
                return Err(Error::new(ename::ALREADY_OPEN));
            }
            (st.handler.clone(), st.qid)
        };
        if !qid.is_dir() {
            return Err(Error::new(ename::CREATE_NON_DIR));
        }
        check_name(&m.name)?;
        if m.name == "." || m.name == ".." {
            return Err(Error::new(ename::BAD_NAME));
        }
        let dir = self.fs.stat(&handler).await?;
        if dir.mode & dm::WRITE == 0 {
            return Err(Error::permission_denied());
        }
        if m.perm & dm::DIR != 0 && m.mode & 3 != om::READ {
            return Err(Error::new(ename::IS_A_DIRECTORY));
        }
        let (qid, created) = self.fs.create(&handler, &m.name, m.perm, m.mode).await?;
        let iounit = self.iounit();
        let mut st = lock(&fid);
        st.handler = Arc::new(created);
        st.qid = qid;
        st.open = Some(m.mode);
        st.iounit = iounit;
        Ok(Rcreate { qid, iounit }.into())
    }

    async fn read(&self, m: Tread, guard: &mut ReplyGuard<F>) -> Result<Rmessage> {
        if lock(&self.afids).contains_key(&m.fid) {
            // The credential is the client's to say; the server has nothing to tell.
            return Ok(Rread {
                data: Data::default(),
            }
            .into());
        }
        let fid = self.fid(m.fid)?;
        let (handler, qid, count, iounit) = {
            let st = lock(&fid);
            match st.open {
                Some(mode) if reads(mode) => {}
                _ => return Err(Error::new(ename::NOT_OPEN)),
            }
            (
                st.handler.clone(),
                st.qid,
                m.count.min(st.iounit),
                st.iounit,
            )
        };
        if !qid.is_dir() {
            let mut data = loop {
                match self
                    .fs
                    .read_or_wait(&handler, m.offset, count, iounit)
                    .await?
                {
                    Reading::Now(data) => break data,
                    Reading::Later(ready) => self.wait_for_data(&fid, ready, guard).await?,
                }
            };
            if data.len() > count as usize {
                // A handler that returns more than asked is cut to the count.
                data = Data::from(&data.expose()[..count as usize]);
            }
            return Ok(Rread { data }.into());
        }
        if m.offset == 0 {
            let entries = self.fs.readdir(&handler).await?;
            lock(&fid).dir = Some(DirCursor {
                entries,
                next: 0,
                offset: 0,
            });
        }
        let mut st = lock(&fid);
        let cursor = match st.dir.as_mut() {
            Some(c) if c.offset == m.offset => c,
            _ => return Err(Error::new(ename::BAD_OFFSET)),
        };
        let mut out = Vec::new();
        while let Some(entry) = cursor.entries.get(cursor.next) {
            if out.len() + entry.byte_size() > count as usize {
                break;
            }
            entry.encode(&mut out);
            cursor.next += 1;
        }
        // A read that cannot hold the next entry: at offset 0 the count can never be
        // enough, which is an error; later, it is the tail of a read the client split
        // to fill its buffer (Linux's p9_client_read does), and an empty Rread lets it
        // come back with a full count for the same offset (lib9p's dirread9p too).
        if out.is_empty() && cursor.next < cursor.entries.len() && m.offset == 0 {
            return Err(Error::new(ename::COUNT_TOO_SMALL));
        }
        cursor.offset += out.len() as u64;
        Ok(Rread {
            data: Data::from(out),
        }
        .into())
    }

    /// Holds a read until `ready`, without its reply permits (while the fid has room
    /// for it among its parked reads) and out of its fid's order, so that a clunk of the
    /// fid runs and ends it. Takes permits again before the read is retried, as the
    /// reader does for a new request: a client that does not take its replies is not
    /// answered either. Fails, to be answered at once, if the fid leaves the table or
    /// the connection closes meanwhile; a flush drops it (no reply, then the Rflush).
    async fn wait_for_data(
        &self,
        fid: &Fid<F>,
        ready: Ready,
        guard: &mut ReplyGuard<F>,
    ) -> Result<()> {
        guard.leave_order();
        let waits = {
            let mut st = lock(fid);
            if st.gone {
                return Err(Error::new(ename::UNKNOWN_FID));
            }
            st.waits
                .get_or_insert_with(|| {
                    Arc::new(FidWaits {
                        parked: AtomicUsize::new(0),
                        ended: watch::channel(false).0,
                    })
                })
                .clone()
        };
        let mut ended = waits.ended.subscribe();
        let mut closing = self.closing.subscribe();
        if *closing.borrow() {
            return Err(Error::new(ename::SHUT_DOWN));
        }
        let parked = self.park(&waits);
        if parked.is_some() {
            guard.permits = None;
        }
        tokio::select! {
            () = ready => {}
            _ = ended.wait_for(|gone| *gone) => return Err(Error::new(ename::UNKNOWN_FID)),
            _ = closing.wait_for(|c| *c) => return Err(Error::new(ename::SHUT_DOWN)),
        }
        drop(parked);
        if guard.permits.is_none() {
            let permits = tokio::select! {
                p = self.take_permits() => p?,
                _ = ended.wait_for(|gone| *gone) => return Err(Error::new(ename::UNKNOWN_FID)),
                _ = closing.wait_for(|c| *c) => return Err(Error::new(ename::SHUT_DOWN)),
            };
            guard.permits = Some(permits);
        }
        Ok(())
    }

    /// Counts a waiting read as parked, if its fid has room for one more.
    fn park<'a>(&'a self, waits: &'a FidWaits) -> Option<Parked<'a>> {
        let limit = self.limits.max_waiting_reads_per_fid;
        waits
            .parked
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()?;
        self.parked.fetch_add(1, Ordering::AcqRel);
        self.stats.waiting_started();
        Some(Parked {
            waits,
            session: &self.parked,
            stats: &self.stats,
        })
    }

    /// The permits of one more reply: the connection's, then its principal's.
    async fn take_permits(&self) -> Result<Permits> {
        let closed = |_| Error::new(ename::SHUT_DOWN);
        let connection = self.window.clone().acquire_owned().await.map_err(closed)?;
        let principal = match self.pool() {
            Some(pool) => Some(pool.clone().acquire_owned().await.map_err(closed)?),
            None => None,
        };
        Ok(Permits {
            _connection: connection,
            _principal: principal,
        })
    }

    async fn write(&self, m: Twrite) -> Result<Rmessage> {
        if let Some(written) = self.write_afid(&m) {
            return written;
        }
        let fid = self.fid(m.fid)?;
        let (handler, iounit) = {
            let st = lock(&fid);
            match st.open {
                Some(mode) if writes(mode) => {}
                _ => return Err(Error::new(ename::NOT_OPEN)),
            }
            (st.handler.clone(), st.iounit)
        };
        let data = m.data.expose();
        let data = &data[..data.len().min(iounit as usize)];
        let count = self.fs.write(&handler, m.offset, data).await?;
        Ok(Rwrite {
            count: count.min(data.len() as u32),
        }
        .into())
    }

    /// A Twrite of an afid, if `m.fid` is one: the credential's next bytes, at the offset
    /// where the last write ended. Past the bound, or on a spent afid, refused, and what
    /// it held wiped.
    fn write_afid(&self, m: &Twrite) -> Option<Result<Rmessage>> {
        let mut afids = lock(&self.afids);
        let auth = afids.get_mut(&m.fid)?;
        let data = m.data.expose();
        Some(if auth.spent {
            Err(Error::new(ename::AFID_SPENT))
        } else if m.offset != auth.credential.len() as u64 {
            Err(Error::new(ename::BAD_OFFSET))
        } else if data.len() > self.limits.max_credential_len - auth.credential.len() {
            auth.credential.zeroize();
            auth.spent = true;
            Err(Error::new(ename::CREDENTIAL_TOO_LONG))
        } else {
            // Within the capacity reserved at Tauth: no reallocation.
            auth.credential.extend_from_slice(data);
            Ok(Rwrite {
                count: data.len() as u32,
            }
            .into())
        })
    }

    fn take_fid(&self, fid: u32) -> Result<(Arc<F::Fid>, Option<u8>)> {
        let found = lock(&self.fids).remove(&fid);
        let slot = found.ok_or_else(|| self.missing_fid(fid))?;
        self.stats.fids_removed(1);
        let mut st = lock(&slot);
        st.leave_table();
        Ok((st.handler.clone(), st.open))
    }

    async fn clunk(&self, m: Tclunk) -> Result<Rmessage> {
        if self.take_afid(m.fid) {
            return Ok(Rclunk {}.into());
        }
        let (handler, open) = self.take_fid(m.fid)?;
        if open.is_some_and(|mode| mode & om::RCLOSE != 0) {
            // The fid goes whatever happens; a failed remove-on-close is not the
            // clunk's failure (lib9p does the same).
            let _ = self.fs.remove(&handler).await;
        }
        self.fs.clunk(&handler, ClunkKind::Requested).await?;
        Ok(Rclunk {}.into())
    }

    async fn remove(&self, m: Tremove) -> Result<Rmessage> {
        if self.take_afid(m.fid) {
            // Clunked all the same, as remove(5) has it.
            return Err(Error::new(ename::REMOVE_PROHIBITED));
        }
        let (handler, _) = self.take_fid(m.fid)?;
        let removed = self.fs.remove(&handler).await;
        let _ = self.fs.clunk(&handler, ClunkKind::Requested).await;
        removed?;
        Ok(Rremove {}.into())
    }

    async fn stat(&self, m: Tstat) -> Result<Rmessage> {
        let fid = self.fid(m.fid)?;
        let handler = lock(&fid).handler.clone();
        let stat = self.fs.stat(&handler).await?;
        Ok(Rstat {
            stat: WrappedStat(stat),
        }
        .into())
    }

    async fn wstat(&self, m: Twstat) -> Result<Rmessage> {
        let fid = self.fid(m.fid)?;
        let handler = lock(&fid).handler.clone();
        let new = &m.stat.0;
        if new.is_dont_touch() {
            return Ok(Rwstat {}.into());
        }
        let current = self.fs.stat(&handler).await?;
        let dir_bit_changes = new.mode != u32::MAX && (new.mode ^ current.mode) & dm::DIR != 0;
        let type_changes = new.qid.ty != u8::MAX && new.qid.ty != current.qid.ty;
        if dir_bit_changes || type_changes {
            return Err(Error::new(ename::WSTAT_DIR_CHANGE));
        }
        self.fs.wstat(&handler, new).await?;
        Ok(Rwstat {}.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_strings() {
        assert_eq!(negotiate_version("9P2000"), Some("9P2000"));
        assert_eq!(negotiate_version("9P2000.L"), Some("9P2000"));
        assert_eq!(negotiate_version("9P2000.u"), Some("9P2000"));
        assert_eq!(negotiate_version("9P2010"), Some("9P2000"));
        assert_eq!(negotiate_version("9P1999"), None);
        assert_eq!(negotiate_version("9P"), None);
        assert_eq!(negotiate_version("styx"), None);
        assert_eq!(negotiate_version(""), None);
    }

    #[test]
    fn open_modes_need_the_right_bits() {
        assert_eq!(access_needed(om::READ), dm::READ);
        assert_eq!(access_needed(om::WRITE | om::TRUNC), dm::WRITE);
        assert_eq!(access_needed(om::RDWR), dm::READ | dm::WRITE);
        assert_eq!(access_needed(om::EXEC), dm::EXEC);
        assert_eq!(access_needed(om::READ | om::RCLOSE), dm::READ | dm::WRITE);
    }
}
