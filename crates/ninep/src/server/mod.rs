//! The server core: serves any [`Filesystem`] over 9P2000.
//!
//! The core owns each connection's fid table and outstanding tags and enforces the
//! protocol before a handler runs (lib9p's idea), so a handler is only ever called for a
//! request that is valid in its state:
//!
//! - Tversion comes first and resets the session; msize is negotiated (never above what
//!   was asked, never below [`MIN_MSIZE`], capped at [`Limits::max_msize`]); "9P2000.L"
//!   and "9P2000.u" are answered with "9P2000", other versions with "unknown".
//! - Fids are checked for existence and reuse; walks from open fids, walks of non
//!   directories and the partial-walk rules of walk(5) are handled here.
//! - Open modes are checked against the permission bits of the handler's stat, a
//!   directory is never opened for writing, reads and writes need a fid open for them and
//!   are bounded by the iounit; directory reads are assembled here from
//!   [`Filesystem::readdir`], whole entries only, at offset 0 or the previous end.
//! - A wstat with every field "don't touch" succeeds without calling the handler.
//! - Tflush is answered with Rflush, after the flushed request's reply if it was sent.
//!
//! A read may wait for its data as long as it takes (an event file that answers when
//! something happens): the handler answers [`Reading::Later`], and the core holds the
//! request without the reply permits it took and outside the count of outstanding
//! requests, so that thousands of waiting reads cost their principal nothing of what
//! other requests need. Only the fid limits them ([`Limits::max_waiting_reads_per_fid`]).
//! A waiting read ends with its data, when it is flushed (Rflush, never an Rread after
//! it), when its fid is clunked ("unknown fid"), or when the connection closes: on a
//! shutdown it is answered "device shut down" at once, so that the server can exit.
//!
//! Requests on one connection run concurrently and replies go out in completion order,
//! except that requests on the same fid keep their order (a pipelined Topen and Tread,
//! or a command split over Twrites).
//! [`Limits`] bounds connections, fids, outstanding requests, msize and stalls, so one
//! client can neither exhaust the process nor harm other connections.
//!
//! Who may spend what is decided at accept, before a message is read:
//! [`Filesystem::accept`] names each connection a principal (by a key), a stranger, or
//! refuses it. Principals and strangers have connection slots of their own, so no
//! number of strangers takes a principal's slot. Each principal has its own pool of
//! reply permits, so one that does not read its replies stalls only itself. A
//! connection may send only a handful of requests, a few at a time, until it has
//! attached; a stranger's connection keeps that small window and draws on no pool.
//!
//! A transport that learns who the peer is only from a handshake on the stream (TLS,
//! whose client certificate names its holder) is served by
//! [`Server::serve_handshaking`]: each handshake runs in a task of its own, in one of
//! [`Limits::max_handshakes`] slots apart from principals' and strangers' (the oldest
//! gives its slot to a new one when all are taken), for at most
//! [`Limits::handshake_timeout`]; then the connection is admitted as any other. The core
//! knows nothing of TLS: the handshake is the caller's future.
//!
//! A connection whose transport proves nothing of its peer (TCP, say) can prove itself
//! with a credential, when [`Filesystem::needs_credential`] says it must: Tauth makes an
//! authentication fid (an afid), the client writes its credential to it (at most
//! [`Limits::max_credential_len`] bytes, kept zeroized), and Tattach with that afid hands
//! the bytes to [`Filesystem::attach_with_credential`]. The core knows nothing of what
//! the bytes mean; it only carries them, once: an afid serves one attach, whatever its
//! outcome. What the filesystem answers names the principal the credential proves (a
//! stranger's connection becomes one of that principal's connections, with its slot,
//! pool and full window) and a [`Ready`] that resolves when the credential stops holding
//! (revoked, expired): the core then closes the connection. On a connection that needs
//! no credential, Tauth is answered "authentication not required" as before.
//!
//! # Layout
//! - this file: the [`Filesystem`] trait, [`Admission`], [`Limits`], [`Server`] and its
//!   listeners.
//! - `admission`: connection slots and reply pools, per class.
//! - `handshake`: slots for connections still in their transport's handshake.
//! - `conn`: framing on a byte stream, the reader loop, the reply writer.
//! - `session`: one connection's fids and tags, and the protocol checks per message.
//! - `order`: requests on one fid run in the order they arrived.

mod admission;
mod conn;
mod handshake;
mod order;
mod session;
mod stats;

use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;

use tracing::{debug, info, warn};

use self::admission::{Admissions, Slot};
pub use self::handshake::{Handshake, Handshakes};
pub use self::stats::ServerStats;
use crate::error::Result;
use crate::message::{Data, Qid, Stat};

/// The smallest msize the server accepts: below this a directory entry or an error
/// string might not fit in a message.
pub const MIN_MSIZE: u32 = 4096;

/// Who is on the other end of a connection, as the transport tells it. A filesystem
/// decides the principal from this at attach, never from the client's uname.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// The transport the connection came over.
    pub transport: Transport,
    /// The peer's user id, from SO_PEERCRED on a unix socket.
    pub uid: Option<u32>,
    /// The peer's group id, from SO_PEERCRED on a unix socket.
    pub gid: Option<u32>,
    /// The peer's process id, where the transport knows it.
    pub pid: Option<i32>,
    /// The name a client certificate gives its holder (its subject's Common Name), on a
    /// TLS transport that verified the certificate during the handshake; None on every
    /// other transport, and for a verified certificate that names nothing. The core
    /// knows nothing of certificates: whoever accepts the TLS connection fills this in.
    pub certificate: Option<String>,
    /// A printable address for logs.
    pub addr: String,
}

/// The kind of transport a connection came over: what a [`Peer`]'s identity can rest on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Transport {
    /// A unix socket: the kernel tells the peer's uid (SO_PEERCRED).
    #[default]
    Unix,
    /// TLS, after a handshake that checked the client's certificate, if it sent one.
    Tls,
    /// Plain TCP: nothing is known of the peer but its address.
    Tcp,
}

/// How the core serves a new connection: the filesystem's answer to
/// [`Filesystem::accept`], given before any message is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Close the connection at once: this peer is never served (no credentials, say).
    Refuse,
    /// A principal the filesystem knows, named by a key (for a unix peer, its uid will
    /// do). The connections of one key share a connection cap
    /// ([`Limits::max_connections_per_principal`]) and a pool of reply permits
    /// ([`Limits::max_outstanding_per_principal`]): a principal that sends without
    /// reading stalls its own connections and no one else's.
    Principal(String),
    /// A peer the filesystem does not know but lets in, to be told why at attach. It
    /// gets a slot among strangers only ([`Limits::max_stranger_connections`], and
    /// [`Limits::max_stranger_connections_per_uid`]) and no pool: only the small window
    /// of [`Limits::pre_attach_window`] replies, before and after an attach.
    Stranger,
}

impl Admission {
    /// Every peer is a principal, one per uid or certificate name; peers with neither
    /// (plain TCP) are one principal together. The default of [`Filesystem::accept`].
    pub fn by_uid(peer: &Peer) -> Admission {
        Admission::Principal(match (peer.uid, &peer.certificate) {
            (Some(uid), _) => format!("uid {uid}"),
            (None, Some(name)) => format!("certificate {name}"),
            (None, None) => "no uid".to_string(),
        })
    }
}

/// What an attach with a credential proved ([`Filesystem::attach_with_credential`]).
pub struct Authenticated<Fid> {
    /// The root of the tree attached, as [`Filesystem::attach`] answers.
    pub qid: Qid,
    /// The handler's state of the new fid.
    pub fid: Fid,
    /// The principal the credential proves, as a key like those of
    /// [`Admission::Principal`]: a stranger's connection becomes one of that principal's
    /// (its slot among principals, counted against
    /// [`Limits::max_connections_per_principal`], its pool of reply permits, the full
    /// window). A connection is one principal's: a later attach on it that proves another
    /// is refused.
    pub principal: String,
    /// Resolves when the credential no longer holds (revoked, expired): the core then
    /// closes the connection, as when the client hangs up.
    pub ends: Ready,
}

/// Why a fid is being clunked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClunkKind {
    /// The client sent Tclunk (or Tremove): what was written through the fid is complete.
    Requested,
    /// The connection ended or was reset by Tversion: the client may have stopped in the
    /// middle of something, so nothing half-written should take effect.
    Dropped,
}

/// What a read of a file answers: its data now, or later.
pub enum Reading {
    /// The data (empty at the end of the file).
    Now(Data),
    /// Nothing yet. The core holds the request until `Ready` resolves and then asks
    /// [`Filesystem::read_or_wait`] again; meanwhile the request holds none of the reply
    /// permits it took and is not counted among the connection's outstanding requests,
    /// only among its fid's waiting reads ([`Limits::max_waiting_reads_per_fid`]).
    Later(Ready),
}

/// Resolves when a read that waits should be tried again. A spurious wake-up only costs
/// another call of [`Filesystem::read_or_wait`].
pub struct Ready(Pin<Box<dyn Future<Output = ()> + Send + 'static>>);

impl Ready {
    /// Ready when `wake` resolves.
    pub fn new(wake: impl Future<Output = ()> + Send + 'static) -> Ready {
        Ready(Box::pin(wake))
    }
}

impl Future for Ready {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl std::fmt::Debug for Ready {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ready")
    }
}

/// A filesystem served by the core. Each method documents what the core has already
/// checked when it is called.
///
/// `Fid` is the handler's state for one fid: typically which file it names and on whose
/// behalf (the principal decided at attach). The core keeps it in its fid table and hands
/// it back on every request for that fid.
pub trait Filesystem: Send + Sync + 'static {
    /// Per-fid state.
    type Fid: Send + Sync + 'static;

    /// Whether and how to serve a new connection, before any message is read: as a
    /// principal (which one decides whose slots and reply pool it shares), as a
    /// stranger (let in with next to nothing to spend), or not at all. The default,
    /// [`Admission::by_uid`], serves every peer as a principal.
    fn accept(&self, peer: &Peer) -> Admission {
        Admission::by_uid(peer)
    }

    /// Whether a connection from `peer` must prove who it is with a credential before it
    /// may attach: Tauth, the credential written to the afid, Tattach with that afid
    /// ([`attach_with_credential`](Filesystem::attach_with_credential)). Asked at every
    /// Tauth and Tattach. The default, never: Tauth is answered "authentication not
    /// required".
    fn needs_credential(&self, peer: &Peer) -> bool {
        let _ = peer;
        false
    }

    /// Tattach with an afid, on a connection that [needs a
    /// credential](Filesystem::needs_credential): `credential` is what the client wrote
    /// to the afid (the core wipes it afterwards). The core has checked that the fid is
    /// new and that the afid was made by Tauth with the same uname and aname and not used
    /// before. The default refuses.
    fn attach_with_credential(
        &self,
        peer: &Peer,
        uname: &str,
        aname: &str,
        credential: &[u8],
    ) -> impl Future<Output = Result<Authenticated<Self::Fid>>> + Send {
        let _ = (peer, uname, aname, credential);
        async { Err(crate::Error::new(crate::ename::NO_AUTH)) }
    }

    /// Tattach: the root of the tree named by `aname`, for the connection's `peer`.
    /// The core has checked that the fid is new, that no authentication was offered, and
    /// that the connection needs no credential.
    fn attach(
        &self,
        peer: &Peer,
        uname: &str,
        aname: &str,
    ) -> impl Future<Output = Result<(Qid, Self::Fid)>> + Send;

    /// A copy of `fid` naming the same file, for a walk of zero names. The core has
    /// checked that `fid` is not open.
    fn clone_fid(&self, fid: &Self::Fid) -> Self::Fid;

    /// One step of a walk: the file called `name` in the directory `dir`. The core has
    /// checked that `dir` is a directory and not open, and that `name` is a single path
    /// element (not empty, no '/'); ".." is passed on.
    fn walk(
        &self,
        dir: &Self::Fid,
        name: &str,
    ) -> impl Future<Output = Result<(Qid, Self::Fid)>> + Send;

    /// Tstat. Also used by the core to check permissions at open.
    fn stat(&self, fid: &Self::Fid) -> impl Future<Output = Result<Stat>> + Send;

    /// Topen. The core has checked that the fid is not open, that the mode is allowed by
    /// the owner bits of [`stat`](Filesystem::stat), and that a directory is opened only
    /// for reading. A handler refuses here what its stat cannot say.
    fn open(&self, fid: &Self::Fid, mode: u8) -> impl Future<Output = Result<()>> + Send {
        let _ = (fid, mode);
        async { Ok(()) }
    }

    /// Tread of a file (not a directory). The core has checked that the fid is open for
    /// reading and capped `count` at the iounit.
    fn read(
        &self,
        fid: &Self::Fid,
        offset: u64,
        count: u32,
    ) -> impl Future<Output = Result<Data>> + Send;

    /// A Tread that may wait for its data: [`Reading::Now`] answers at once, as
    /// [`read`](Filesystem::read) does; [`Reading::Later`] has the core hold the request,
    /// at no cost to the connection's limits, until its [`Ready`] resolves, and then call
    /// this again. The same checks as for `read` were made. A handler's state for the
    /// read should be taken only once it answers `Now` (a flush, a clunk or the
    /// connection's end drops a waiting read, and nothing must be lost then). `iounit`
    /// is the fid's, the most a read can ask: a read of that much may be one piece of a
    /// larger read(2) that Linux's v9fs splits. The default reads at once.
    fn read_or_wait(
        &self,
        fid: &Self::Fid,
        offset: u64,
        count: u32,
        iounit: u32,
    ) -> impl Future<Output = Result<Reading>> + Send {
        let _ = iounit;
        async move { self.read(fid, offset, count).await.map(Reading::Now) }
    }

    /// The entries of a directory, read at offset 0 of an open directory fid. The core
    /// keeps them and answers the following reads from them.
    fn readdir(&self, dir: &Self::Fid) -> impl Future<Output = Result<Vec<Stat>>> + Send;

    /// Twrite. The core has checked that the fid is open for writing and that the data
    /// fits the iounit. Returns the number of bytes written.
    fn write(
        &self,
        fid: &Self::Fid,
        offset: u64,
        data: &[u8],
    ) -> impl Future<Output = Result<u32>> + Send {
        let _ = (fid, offset, data);
        async { Err(crate::Error::permission_denied()) }
    }

    /// Tcreate: make `name` in the directory `dir` and open it with `mode`; returns the
    /// new file's qid and the state that the fid holds from now on. The core has checked
    /// that `dir` is a directory and not open, and that `name` is a single path element.
    fn create(
        &self,
        dir: &Self::Fid,
        name: &str,
        perm: u32,
        mode: u8,
    ) -> impl Future<Output = Result<(Qid, Self::Fid)>> + Send {
        let _ = (dir, name, perm, mode);
        async { Err(crate::Error::new(crate::ename::CREATE_PROHIBITED)) }
    }

    /// Tremove (or the clunk of a fid opened with ORCLOSE). The fid is clunked whatever
    /// the outcome; [`clunk`](Filesystem::clunk) follows.
    fn remove(&self, fid: &Self::Fid) -> impl Future<Output = Result<()>> + Send {
        let _ = fid;
        async { Err(crate::Error::new(crate::ename::REMOVE_PROHIBITED)) }
    }

    /// Twstat. The core has answered a wstat of all "don't touch" fields itself and
    /// refused a change of the directory bit.
    fn wstat(&self, fid: &Self::Fid, stat: &Stat) -> impl Future<Output = Result<()>> + Send {
        let _ = (fid, stat);
        async { Err(crate::Error::new(crate::ename::WSTAT_PROHIBITED)) }
    }

    /// The fid is gone from the table. An error becomes the Rclunk's Rerror (the fid is
    /// gone regardless); it is ignored for [`ClunkKind::Dropped`].
    fn clunk(&self, fid: &Self::Fid, kind: ClunkKind) -> impl Future<Output = Result<()>> + Send {
        let _ = (fid, kind);
        async { Ok(()) }
    }
}

/// Caps that keep one client from exhausting the process, or starving another.
///
/// What bounds memory: every request read holds a reply permit until its reply is
/// written, and a request and its reply each fit in msize. A connection draws a permit
/// from its own window (`pre_attach_window` until its first successful attach, then
/// twice `max_outstanding`) and, for a principal, one from the principal's pool
/// (`max_outstanding_per_principal`); a stranger's connection keeps the small window and
/// draws on no pool. So requests and replies hold at most about
/// `max_outstanding_per_principal` × 2 × msize per principal with open connections
/// (256 MiB at the defaults, if every request and reply were 128 KiB), plus
/// `max_stranger_connections` × `pre_attach_window` × 2 × msize for all strangers
/// (64 MiB), plus one read buffer of msize per connection. The principals are whoever
/// the filesystem names: for srv-secrets root, the admin's uid and one uid per service.
/// A read that waits for its data ([`Reading::Later`]) holds no permit while it waits,
/// only its state (a few hundred bytes), at most `max_waiting_reads_per_fid` per fid.
#[derive(Clone, Debug)]
pub struct Limits {
    /// The largest msize the server agrees to.
    pub max_msize: u32,
    /// Connections of principals served at once; more are closed on accept. Strangers
    /// do not count here: they have their own, far fewer, slots.
    pub max_connections: usize,
    /// Connections one principal may hold at once, so that it cannot take every slot.
    /// Connections from uid 0 are not counted (the kernel mounts one view per service
    /// as root), nor those from peers with neither a uid nor a certificate name (they
    /// cannot be told apart).
    pub max_connections_per_principal: usize,
    /// Connections of strangers served at once, over all of them; more are closed on
    /// accept. Far below `max_connections`, and apart from it: strangers can fill only
    /// their own slots.
    pub max_stranger_connections: usize,
    /// Connections of strangers one uid (or one certificate name) may hold at once, so
    /// that one local user does not take every stranger's slot.
    pub max_stranger_connections_per_uid: usize,
    /// Fids one connection may hold.
    pub max_fids: usize,
    /// Reads of one fid that may wait for their data ([`Reading::Later`]) holding no
    /// reply permit and outside `max_outstanding`. A read past it waits as any request
    /// does, holding its permits.
    pub max_waiting_reads_per_fid: usize,
    /// Requests one connection may have outstanding. Its window of unwritten replies,
    /// once attached, is twice this: the requests, their flushes, and as many again of
    /// errors and replies queued for the writer.
    pub max_outstanding: usize,
    /// Requests whose replies are not yet written, over all the connections of one
    /// principal; past it, that principal's connections wait before reading more, and
    /// no one else's do.
    pub max_outstanding_per_principal: usize,
    /// Replies not yet written that a connection may have before its first successful
    /// attach, and a stranger's always: enough for Tversion, Tauth and Tattach, too few
    /// to flood with.
    pub pre_attach_window: usize,
    /// Requests a connection may send before its first successful attach; the one after
    /// closes it. A client needs two or three (Tversion, Tauth, Tattach), a few more to
    /// try another aname.
    pub max_requests_before_attach: usize,
    /// Bytes an authentication fid accepts: a credential longer than this is refused,
    /// and the afid's bytes wiped.
    pub max_credential_len: usize,
    /// Authentication fids one connection may hold at once (each reserves
    /// `max_credential_len` bytes): a client needs one per attach, clunked after.
    pub max_afids: usize,
    /// Attaches with a credential one connection may make; each holds a watch on its
    /// credential until the connection ends.
    pub max_credential_attaches: usize,
    /// How long a connection may take to send the rest of a message it has begun.
    pub stall_timeout: Duration,
    /// How long a new connection may go without a successful attach: one that cannot
    /// attach (refused, or never trying) does not keep its connection slot. Generous,
    /// because a client may connect long before it speaks (qemu connects a VM's 9P port
    /// when the VM starts; the kernel mounts once it has booted).
    pub attach_timeout: Duration,
    /// How long a connection may refuse to take our replies before it is closed.
    pub write_timeout: Duration,
    /// Connections in their transport's handshake at once ([`Server::serve_handshaking`]),
    /// apart from principals' and strangers' slots; when all are taken, a new one takes
    /// the oldest one's slot (see [`Handshakes`]).
    pub max_handshakes: usize,
    /// How long a transport's handshake may take before the connection is closed.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_msize: 128 * 1024,
            max_connections: 1024,
            max_connections_per_principal: 64,
            max_stranger_connections: 64,
            max_stranger_connections_per_uid: 4,
            max_fids: 4096,
            max_waiting_reads_per_fid: 1,
            max_outstanding: 256,
            // Two connections' full windows.
            max_outstanding_per_principal: 1024,
            pre_attach_window: 4,
            max_requests_before_attach: 16,
            max_credential_len: 1024,
            max_afids: 4,
            max_credential_attaches: 16,
            stall_timeout: Duration::from_secs(30),
            attach_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            max_handshakes: 64,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Serves a [`Filesystem`] on listeners and connections.
pub struct Server<F: Filesystem> {
    fs: Arc<F>,
    limits: Arc<Limits>,
    admissions: Arc<Admissions>,
    handshakes: Arc<Handshakes>,
    refusals: Arc<admission::RefusalLog>,
    stats: Arc<stats::Stats>,
}

impl<F: Filesystem> Clone for Server<F> {
    fn clone(&self) -> Self {
        Server {
            fs: self.fs.clone(),
            limits: self.limits.clone(),
            admissions: self.admissions.clone(),
            handshakes: self.handshakes.clone(),
            refusals: self.refusals.clone(),
            stats: self.stats.clone(),
        }
    }
}

/// A signal that tells connections to stop taking requests; see [`Server::serve_unix`].
#[derive(Clone, Debug)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

/// Triggers a [`Shutdown`].
#[derive(Debug)]
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    /// A shutdown signal and its trigger.
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(Some(rx)))
    }

    /// A signal that never fires.
    pub fn never() -> Shutdown {
        Shutdown(None)
    }

    /// Resolves once the trigger fired (or was dropped); never, for [`Shutdown::never`].
    pub async fn wait(&mut self) {
        let Some(rx) = self.0.as_mut() else {
            return std::future::pending().await;
        };
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}

impl ShutdownTrigger {
    /// Tells every holder of the [`Shutdown`] to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl<F: Filesystem> Server<F> {
    /// A server for `fs` with the given limits.
    pub fn new(fs: F, limits: Limits) -> Self {
        Self::from_arc(Arc::new(fs), limits)
    }

    /// A server for a filesystem that is shared with other code.
    pub fn from_arc(fs: Arc<F>, limits: Limits) -> Self {
        let limits = Arc::new(Limits {
            max_msize: limits.max_msize.max(MIN_MSIZE),
            ..limits
        });
        Server {
            fs,
            admissions: Admissions::new(limits.clone()),
            handshakes: Handshakes::new(limits.max_handshakes),
            refusals: Arc::default(),
            stats: Arc::default(),
            limits,
        }
    }

    /// The filesystem served.
    pub fn filesystem(&self) -> &Arc<F> {
        &self.fs
    }

    /// The server's counters now: requests, errors, open fids and connections.
    pub fn stats(&self) -> ServerStats {
        let (principals, strangers) = self.admissions.open();
        self.stats.snapshot(principals as u64, strangers as u64)
    }

    /// Serves one connection until the client hangs up, a fatal protocol error, or
    /// `shutdown`. On shutdown the connection stops reading, finishes the requests it
    /// has, sends their replies and closes. It is admitted as the listeners admit
    /// theirs ([`Filesystem::accept`] and the connection caps), and closed at once if
    /// refused.
    pub async fn serve_connection<S>(&self, stream: S, peer: Peer, shutdown: Shutdown)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        if let Some(slot) = self.admit(&peer) {
            self.serve_admitted(stream, peer, slot, shutdown).await;
        }
    }

    /// A slot for a new connection from `peer`, or None (logged) if it is to be closed.
    fn admit(&self, peer: &Peer) -> Option<Slot> {
        let admission = self.fs.accept(peer);
        let admitted = self.admissions.admit(admission, peer);
        if admitted.is_err() {
            self.stats.refused();
        }
        match admitted {
            Ok(slot) => Some(slot),
            Err(refused) if refused.of_a_principal() => {
                if let Some(quiet) = self.refusals.should_log(refused, std::time::Instant::now()) {
                    warn!(peer = %peer.addr, %refused, refused_unlogged = quiet,
                        "closing the new connection (at most one such line every 10 s)");
                }
                None
            }
            Err(refused) => {
                debug!(peer = %peer.addr, %refused, "closing the new connection");
                None
            }
        }
    }

    async fn serve_admitted<S>(&self, stream: S, peer: Peer, slot: Slot, shutdown: Shutdown)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        conn::run(
            self.fs.clone(),
            self.limits.clone(),
            self.stats.clone(),
            slot,
            stream,
            peer,
            shutdown,
        )
        .await;
    }

    /// Accepts connections on a unix socket until `shutdown`, then waits for the open
    /// connections to finish their outstanding requests. Each connection's [`Peer`] has
    /// the uid, gid and pid of the connecting process (SO_PEERCRED).
    pub async fn serve_unix(&self, listener: UnixListener, shutdown: Shutdown) -> io::Result<()> {
        self.accept_loop(shutdown, || async {
            let (stream, _) = listener.accept().await?;
            let cred = stream.peer_cred()?;
            let peer = Peer {
                transport: Transport::Unix,
                uid: Some(cred.uid()),
                gid: Some(cred.gid()),
                pid: cred.pid(),
                certificate: None,
                addr: format!(
                    "unix:uid={},pid={}",
                    cred.uid(),
                    cred.pid()
                        .map_or_else(|| "?".to_string(), |p| p.to_string())
                ),
            };
            Ok((stream, peer))
        })
        .await
    }

    /// Accepts connections on TCP until `shutdown`. TCP peers carry no credentials:
    /// their [`Peer`] has only an address.
    pub async fn serve_tcp(&self, listener: TcpListener, shutdown: Shutdown) -> io::Result<()> {
        self.accept_loop(shutdown, || async {
            let (stream, addr) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            let peer = Peer {
                transport: Transport::Tcp,
                addr: format!("tcp:{addr}"),
                ..Peer::default()
            };
            Ok((stream, peer))
        })
        .await
    }

    /// Accepts connections whose peer is known only once a handshake on the stream has
    /// said who it is (TLS: the name its client certificate gives), until `shutdown`,
    /// then waits for the open connections to finish their outstanding requests.
    ///
    /// `accept` waits for the next connection and gives its handshake, a future that
    /// ends with the stream to serve and its [`Peer`] (or why not), with an address for
    /// the log. The handshake runs in a task of its own, so that a slow one delays
    /// nobody, in one of [`Limits::max_handshakes`] slots apart from principals' and
    /// strangers' (the oldest is abandoned for a new one when all are taken), and is
    /// abandoned after [`Limits::handshake_timeout`]. Then the connection is admitted as
    /// the other listeners admit theirs ([`Filesystem::accept`] and the caps). The
    /// handshake says itself what was wrong with a client it refused.
    pub async fn serve_handshaking<A, AF, H, S>(
        &self,
        shutdown: Shutdown,
        mut accept: A,
    ) -> io::Result<()>
    where
        A: FnMut() -> AF,
        AF: Future<Output = io::Result<(H, String)>>,
        H: Future<Output = io::Result<(S, Peer)>> + Send + 'static,
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut connections = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait() => break,
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                a = accept() => a,
            };
            let (handshake, addr) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Some(slot) = self.handshakes.begin() else {
                debug!(peer = %addr, "closing the new connection: no handshakes are allowed");
                self.stats.refused();
                continue;
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                server
                    .handshake_and_serve(handshake, addr, slot, shutdown)
                    .await;
            });
        }
        info!(
            open = connections.len(),
            "stopped accepting; finishing open connections"
        );
        while connections.join_next().await.is_some() {}
        Ok(())
    }

    /// One connection of [`Server::serve_handshaking`], from its handshake on.
    async fn handshake_and_serve<H, S>(
        &self,
        handshake: H,
        addr: String,
        slot: Handshake,
        shutdown: Shutdown,
    ) where
        H: Future<Output = io::Result<(S, Peer)>>,
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let mut stop = shutdown.clone();
        let done = tokio::select! {
            done = tokio::time::timeout(self.limits.handshake_timeout, handshake) => done,
            () = slot.abandoned() => {
                debug!(peer = %addr, "handshake abandoned: a newer connection took its slot");
                return;
            }
            () = stop.wait() => return,
        };
        drop(slot);
        let (stream, peer) = match done {
            Ok(Ok(accepted)) => accepted,
            Ok(Err(e)) => {
                debug!(peer = %addr, error = %e, "handshake failed; closing");
                return;
            }
            Err(_) => {
                debug!(peer = %addr, "handshake not finished in time; closing");
                return;
            }
        };
        if let Some(slot) = self.admit(&peer) {
            self.serve_admitted(stream, peer, slot, shutdown).await;
        }
    }

    async fn accept_loop<S, A, Fut>(&self, shutdown: Shutdown, mut accept: A) -> io::Result<()>
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
        A: FnMut() -> Fut,
        Fut: Future<Output = io::Result<(S, Peer)>>,
    {
        let mut connections = JoinSet::new();
        let mut stop = shutdown.clone();
        loop {
            let accepted = tokio::select! {
                _ = stop.wait() => break,
                // Reap finished connections so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                a = accept() => a,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: not fatal, but do not spin.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            // Admitted here rather than in the task, so that a refused connection costs
            // no task.
            let Some(slot) = self.admit(&peer) else {
                drop(stream);
                continue;
            };
            let server = self.clone();
            let shutdown = shutdown.clone();
            connections.spawn(async move {
                server.serve_admitted(stream, peer, slot, shutdown).await;
            });
        }
        info!(
            open = connections.len(),
            "stopped accepting; finishing open connections"
        );
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

/// Binds a unix socket at `path`, replacing a stale socket left by a server that is no
/// longer running. A live server's socket is not replaced, and neither is anything that
/// is not a socket (a mistyped path must not delete, say, a key file).
pub async fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    match UnixListener::bind(path) {
        Ok(l) => Ok(l),
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {
            let is_socket = std::fs::symlink_metadata(path)?.file_type().is_socket();
            if !is_socket {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "{}: exists and is not a socket; not replacing it",
                        path.display()
                    ),
                ));
            }
            if tokio::net::UnixStream::connect(path).await.is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("{}: a server is already listening there", path.display()),
                ));
            }
            std::fs::remove_file(path)?;
            UnixListener::bind(path)
        }
        Err(e) => Err(e),
    }
}
