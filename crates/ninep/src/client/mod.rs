//! An async 9P2000 client: pipelined requests over one connection, and [`Fid`] handles
//! for the usual file operations.
//!
//! ```no_run
//! # async fn demo() -> Result<(), ninep::client::ClientError> {
//! use ninep::client::Client;
//! let client = Client::connect_unix("/tmp/ramfs.sock").await?;
//! let root = client.attach("glenda", "").await?;
//! let mut file = root.walk(&["lib", "profile"]).await?;
//! file.open(ninep::om::READ).await?;
//! let bytes = file.read_all().await?;
//! # Ok(()) }
//! ```
//!
//! Requests may be sent concurrently from many tasks; each waits for its own reply. A
//! [`Fid`] dropped without [`Fid::clunk`] is clunked in the background.

use std::collections::HashMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::BytesMut;
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use zeroize::{Zeroize, Zeroizing};

use crate::batch::Batch;
use crate::message::*;
use crate::wire::{Reader, Wire};

/// The msize [`Client::connect_unix`] asks for.
pub const DEFAULT_MSIZE: u32 = 128 * 1024;

/// What went wrong with a request.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The connection is closed.
    #[error("connection to the 9P server closed")]
    Disconnected,
    /// Connecting or writing failed.
    #[error("9P connection: {0}")]
    Io(#[from] io::Error),
    /// The server broke the protocol (a reply of the wrong type, an undecodable frame).
    #[error("9P protocol error: {0}")]
    Protocol(String),
    /// The server answered with Rerror.
    #[error("{0}")]
    Remote(String),
    /// A bounded read ([`Fid::read_all_limited`]) found more than its limit.
    #[error("the file is longer than {limit} bytes")]
    TooLong {
        /// The limit that was passed.
        limit: usize,
    },
}

impl ClientError {
    /// The Rerror text, if the server answered with one.
    pub fn remote(&self) -> Option<&str> {
        match self {
            ClientError::Remote(e) => Some(e),
            _ => None,
        }
    }
}

type Result<T> = std::result::Result<T, ClientError>;

/// What to give back when a reply arrives that nobody waits for.
enum Release {
    Nothing,
    Fid(u32),
}

struct Waiter {
    reply: Option<oneshot::Sender<Rmessage>>,
    release: Release,
}

struct State {
    waiting: HashMap<u16, Waiter>,
    next_tag: u16,
    free_fids: Vec<u32>,
    next_fid: u32,
    closed: bool,
}

struct Inner {
    tx: mpsc::UnboundedSender<Zeroizing<Vec<u8>>>,
    state: Mutex<State>,
    /// The negotiated msize (before Tversion: what we will ask). The reader refuses
    /// larger frames, so a hostile server cannot make the client allocate at will.
    msize: Arc<AtomicU32>,
}

/// A connection to a 9P2000 server. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A request sent and not yet answered; await [`Pending::reply`].
pub struct Pending {
    /// The request's tag, for [`Client::flush`].
    pub tag: u16,
    rx: oneshot::Receiver<Rmessage>,
}

impl Pending {
    /// Waits for the reply. Rerror becomes [`ClientError::Remote`].
    pub async fn reply(self) -> Result<Rmessage> {
        match self.rx.await {
            Ok(Rmessage::Error(e)) => Err(ClientError::Remote(e.ename)),
            Ok(r) => Ok(r),
            Err(_) => Err(ClientError::Disconnected),
        }
    }
}

macro_rules! expect_reply {
    ($reply:expr, $variant:ident) => {
        match $reply {
            Rmessage::$variant(r) => Ok(r),
            other => Err(ClientError::Protocol(format!(
                "expected R{}, got {}",
                stringify!($variant).to_lowercase(),
                other.name()
            ))),
        }
    };
}

impl Client {
    /// Connects to a unix socket and negotiates 9P2000 with [`DEFAULT_MSIZE`].
    pub async fn connect_unix(path: impl AsRef<Path>) -> Result<Client> {
        let stream = tokio::net::UnixStream::connect(path.as_ref()).await?;
        let client = Client::over(stream);
        client.version(DEFAULT_MSIZE).await?;
        Ok(client)
    }

    /// Connects over TCP and negotiates 9P2000 with [`DEFAULT_MSIZE`].
    pub async fn connect_tcp(addr: &str) -> Result<Client> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        let _ = stream.set_nodelay(true);
        let client = Client::over(stream);
        client.version(DEFAULT_MSIZE).await?;
        Ok(client)
    }

    /// A client over any byte stream; call [`Client::version`] first.
    pub fn over<S: AsyncRead + AsyncWrite + Send + 'static>(stream: S) -> Client {
        let (rd, wr) = tokio::io::split(stream);
        let (tx, rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            tx,
            state: Mutex::new(State {
                waiting: HashMap::new(),
                next_tag: 0,
                free_fids: Vec::new(),
                next_fid: 0,
                closed: false,
            }),
            msize: Arc::new(AtomicU32::new(DEFAULT_MSIZE)),
        });
        tokio::spawn(write_loop(wr, rx));
        tokio::spawn(read_loop(rd, Arc::downgrade(&inner), inner.msize.clone()));
        Client { inner }
    }

    /// The negotiated msize.
    pub fn msize(&self) -> u32 {
        self.inner.msize.load(Ordering::Acquire)
    }

    /// The largest payload of one read or write.
    pub fn iounit(&self) -> u32 {
        self.msize() - IOHDRSZ
    }

    /// Tversion: asks for `msize` and 9P2000. Fails unless the server speaks 9P2000.
    pub async fn version(&self, msize: u32) -> Result<u32> {
        let version = Tversion {
            msize,
            version: VERSION_9P2000.into(),
        };
        // Room for the Rversion whatever we ask; the answer then sets the limit.
        self.inner
            .msize
            .fetch_max(msize.max(IOHDRSZ + 1), Ordering::AcqRel);
        let r = self
            .send_frame(version.into(), Some(NOTAG), Release::Nothing)?
            .reply()
            .await?;
        let r = expect_reply!(r, Version)?;
        if r.version != VERSION_9P2000 {
            return Err(ClientError::Protocol(format!(
                "server speaks '{}', not 9P2000",
                r.version
            )));
        }
        if r.msize > msize || r.msize < IOHDRSZ + 1 {
            return Err(ClientError::Protocol(format!(
                "server answered msize {} to our {msize}",
                r.msize
            )));
        }
        self.inner.msize.store(r.msize, Ordering::Release);
        Ok(r.msize)
    }

    fn alloc_tag(state: &mut State) -> Result<u16> {
        for _ in 0..=u16::MAX {
            let tag = state.next_tag;
            state.next_tag = state.next_tag.wrapping_add(1);
            if tag != NOTAG && !state.waiting.contains_key(&tag) {
                return Ok(tag);
            }
        }
        Err(ClientError::Protocol("all tags are in use".into()))
    }

    /// Queues a request. `tag` None takes a free tag, under the same lock that records
    /// the waiter, so two senders never share one.
    fn send_frame(&self, msg: Tmessage, tag: Option<u16>, release: Release) -> Result<Pending> {
        let (tx, rx) = oneshot::channel();
        let mut st = lock(&self.inner.state);
        if st.closed {
            return Err(ClientError::Disconnected);
        }
        let tag = match tag {
            Some(t) => t,
            None => Self::alloc_tag(&mut st)?,
        };
        let frame = Tframe { tag, msg };
        st.waiting.insert(
            tag,
            Waiter {
                reply: Some(tx),
                release,
            },
        );
        let mut bytes = Zeroizing::new(Vec::with_capacity(frame.byte_size()));
        frame.encode(&mut *bytes);
        self.inner
            .tx
            .send(bytes)
            .map_err(|_| ClientError::Disconnected)?;
        Ok(Pending { tag, rx })
    }

    /// Sends a request without waiting: many may be outstanding at once.
    pub fn send(&self, msg: impl Into<Tmessage>) -> Result<Pending> {
        self.send_frame(msg.into(), None, Release::Nothing)
    }

    /// Sends a request and waits for its reply.
    pub async fn rpc(&self, msg: impl Into<Tmessage>) -> Result<Rmessage> {
        self.send(msg)?.reply().await
    }

    /// Tflush of an outstanding request; resolves when the server answers Rflush. A reply
    /// the server sent before the Rflush has reached the request's [`Pending`]; if none
    /// came, the request is given up (its `Pending` ends with
    /// [`ClientError::Disconnected`]) and its tag is free again (flush(5)).
    pub async fn flush(&self, oldtag: u16) -> Result<()> {
        let r = self.rpc(Tflush { oldtag }).await?;
        lock(&self.inner.state).waiting.remove(&oldtag);
        expect_reply!(r, Flush).map(|_| ())
    }

    /// A fid number not in use.
    pub fn alloc_fid(&self) -> u32 {
        let mut st = lock(&self.inner.state);
        if let Some(f) = st.free_fids.pop() {
            return f;
        }
        let f = st.next_fid;
        st.next_fid += 1;
        f
    }

    fn free_fid(&self, fid: u32) {
        lock(&self.inner.state).free_fids.push(fid);
    }

    /// Tattach with no authentication; `aname` selects the tree.
    pub async fn attach(&self, uname: &str, aname: &str) -> Result<Fid> {
        let fid = self.alloc_fid();
        let r = self
            .rpc(Tattach {
                fid,
                afid: NOFID,
                uname: uname.into(),
                aname: aname.into(),
            })
            .await;
        match r.and_then(|r| expect_reply!(r, Attach)) {
            Ok(r) => Ok(self.fid_handle(fid, r.qid)),
            Err(e) => {
                self.free_fid(fid);
                Err(e)
            }
        }
    }

    /// Tattach proving who we are with `credential` (9P's authentication: Tauth, the
    /// credential written to the afid, Tattach with it; the afid is clunked after). The
    /// three are sent at once: the server keeps requests on one fid in order. A server
    /// that needs no credential answers the Tauth "authentication not required", which
    /// this returns.
    pub async fn attach_with_credential(
        &self,
        uname: &str,
        aname: &str,
        credential: &[u8],
    ) -> Result<Fid> {
        let afid = self.alloc_fid();
        let fid = self.alloc_fid();
        let sent = (|| {
            let auth = self.send(Tauth {
                afid,
                uname: uname.into(),
                aname: aname.into(),
            })?;
            let write = self.send(Twrite {
                fid: afid,
                offset: 0,
                data: Data::from(credential),
            })?;
            let attach = self.send(Tattach {
                fid,
                afid,
                uname: uname.into(),
                aname: aname.into(),
            })?;
            Ok((auth, write, attach))
        })();
        let attached = match sent {
            Ok((auth, write, attach)) => {
                let (auth, write, attach) = (
                    auth.reply().await,
                    write.reply().await,
                    attach.reply().await,
                );
                auth.and_then(|r| expect_reply!(r, Auth))
                    .and(write.and_then(|r| expect_reply!(r, Write)))
                    .and(attach.and_then(|r| expect_reply!(r, Attach)))
            }
            Err(e) => Err(e),
        };
        // The afid served its one attach, whatever came of it.
        let _ = self.rpc(Tclunk { fid: afid }).await;
        self.free_fid(afid);
        match attached {
            Ok(r) => Ok(self.fid_handle(fid, r.qid)),
            Err(e) => {
                self.free_fid(fid);
                Err(e)
            }
        }
    }

    fn fid_handle(&self, fid: u32, qid: Qid) -> Fid {
        Fid {
            client: self.clone(),
            fid,
            qid,
            iounit: 0,
            clunked: false,
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut wr: W,
    mut rx: mpsc::UnboundedReceiver<Zeroizing<Vec<u8>>>,
) {
    // Twrite payloads may be secrets: Batch zeroes what it wrote.
    let mut batch = Batch::new();
    while let Some(first) = rx.recv().await {
        let mut queued = || rx.try_recv().ok();
        if batch
            .write_queued(&mut wr, first, &mut queued)
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut rd: R,
    inner: std::sync::Weak<Inner>,
    msize: Arc<AtomicU32>,
) {
    // Replies carry secrets: size the buffer for the largest frame up front so that it
    // is not reallocated (which would free reply bytes without zeroing them).
    let mut buf = BytesMut::with_capacity(DEFAULT_MSIZE as usize + HEADER_SIZE);
    loop {
        let frame = loop {
            if buf.len() >= 4 {
                let size = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                if size < HEADER_SIZE || size > msize.load(Ordering::Acquire) as usize {
                    break None;
                }
                if buf.len() >= size {
                    break Some(buf.split_to(size));
                }
                buf.reserve(size - buf.len());
            }
            match rd.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break None,
                Ok(_) => {}
            }
        };
        let Some(inner) = inner.upgrade() else { return };
        let Some(mut frame) = frame else {
            // Closed or unsynchronisable: fail everyone waiting.
            let mut st = lock(&inner.state);
            st.closed = true;
            st.waiting.clear();
            return;
        };
        let decoded = Rframe::decode(&frame);
        frame.as_mut().zeroize();
        let Ok(Rframe { tag, msg }) = decoded else {
            let mut st = lock(&inner.state);
            st.closed = true;
            st.waiting.clear();
            return;
        };
        let waiter = lock(&inner.state).waiting.remove(&tag);
        if let Some(mut w) = waiter {
            if let Some(tx) = w.reply.take() {
                let _ = tx.send(msg);
            }
            if let Release::Fid(f) = w.release {
                lock(&inner.state).free_fids.push(f);
            }
        }
    }
}

/// Appends to a buffer of secret bytes without leaving a copy behind: a Vec that grows
/// frees its old buffer unzeroed, so grow by hand into a new zeroizing buffer.
fn append_zeroizing(out: &mut Zeroizing<Vec<u8>>, more: &[u8]) {
    let needed = out.len() + more.len();
    if needed > out.capacity() {
        let mut bigger = Zeroizing::new(Vec::with_capacity(needed.max(2 * out.capacity())));
        bigger.extend_from_slice(out);
        *out = bigger;
    }
    out.extend_from_slice(more);
}

/// A fid on the server. Clunked when dropped, if not explicitly.
pub struct Fid {
    client: Client,
    fid: u32,
    qid: Qid,
    iounit: u32,
    clunked: bool,
}

impl Fid {
    /// The fid number.
    pub fn number(&self) -> u32 {
        self.fid
    }

    /// The qid of the file, as of the walk, open or create that made this handle.
    pub fn qid(&self) -> Qid {
        self.qid
    }

    /// The client this fid belongs to.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Walks a new fid from this one. Zero names clone the fid. More than MAXWELEM names
    /// take several Twalks. Fails unless every name is found.
    pub async fn walk(&self, names: &[&str]) -> Result<Fid> {
        let newfid = self.client.alloc_fid();
        let mut from = self.fid;
        let mut qid = self.qid;
        let mut chunks: Vec<&[&str]> = names.chunks(MAXWELEM).collect();
        if chunks.is_empty() {
            chunks.push(&[]);
        }
        for chunk in chunks {
            let r = self
                .client
                .rpc(Twalk {
                    fid: from,
                    newfid,
                    wnames: chunk.iter().map(|s| s.to_string()).collect(),
                })
                .await
                .and_then(|r| expect_reply!(r, Walk));
            let r = match r {
                Ok(r) => r,
                Err(e) => {
                    if from == newfid {
                        let _ = self.client.rpc(Tclunk { fid: newfid }).await;
                    }
                    self.client.free_fid(newfid);
                    return Err(e);
                }
            };
            if r.wqids.len() < chunk.len() {
                if from == newfid {
                    let _ = self.client.rpc(Tclunk { fid: newfid }).await;
                }
                self.client.free_fid(newfid);
                return Err(ClientError::Remote(crate::ename::NOT_FOUND.into()));
            }
            if let Some(q) = r.wqids.last() {
                qid = *q;
            }
            from = newfid;
        }
        Ok(self.client.fid_handle(newfid, qid))
    }

    /// Topen with `mode` (the [`om`] constants).
    pub async fn open(&mut self, mode: u8) -> Result<()> {
        let r = self
            .client
            .rpc(Topen {
                fid: self.fid,
                mode,
            })
            .await?;
        let r = expect_reply!(r, Open)?;
        self.qid = r.qid;
        self.iounit = r.iounit;
        Ok(())
    }

    /// Tcreate: this fid (a directory) becomes the new file, open with `mode`.
    pub async fn create(&mut self, name: &str, perm: u32, mode: u8) -> Result<()> {
        let r = self
            .client
            .rpc(Tcreate {
                fid: self.fid,
                name: name.into(),
                perm,
                mode,
            })
            .await?;
        let r = expect_reply!(r, Create)?;
        self.qid = r.qid;
        self.iounit = r.iounit;
        Ok(())
    }

    /// The most bytes one Tread or Twrite on this fid carries: its iounit, or the
    /// connection's when the server gave none.
    pub fn io_size(&self) -> u32 {
        match self.iounit {
            0 => self.client.iounit(),
            n => n.min(self.client.iounit()),
        }
    }

    /// One Tread.
    pub async fn read(&self, offset: u64, count: u32) -> Result<Data> {
        let r = self
            .client
            .rpc(Tread {
                fid: self.fid,
                offset,
                count,
            })
            .await?;
        Ok(expect_reply!(r, Read)?.data)
    }

    /// Reads from offset 0 until an empty read.
    pub async fn read_all(&self) -> Result<Zeroizing<Vec<u8>>> {
        self.read_all_limited(usize::MAX).await
    }

    /// Reads from offset 0 until an empty read, failing with [`ClientError::TooLong`] as
    /// soon as the file has shown more than `limit` bytes: a server that serves an endless
    /// file cannot make the client read until memory runs out.
    pub async fn read_all_limited(&self, limit: usize) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(Vec::new());
        loop {
            // Whole iounits, even near the limit: a directory read must have room for an
            // entry, and what comes back is checked before it is kept.
            let d = self.read(out.len() as u64, self.io_size()).await?;
            if d.is_empty() {
                return Ok(out);
            }
            if d.len() > limit - out.len() {
                return Err(ClientError::TooLong { limit });
            }
            append_zeroizing(&mut out, d.expose());
        }
    }

    /// Reads a whole directory and decodes its entries.
    pub async fn read_dir(&self) -> Result<Vec<Stat>> {
        self.read_dir_limited(usize::MAX).await
    }

    /// Reads a whole directory of at most `limit` bytes of entries (see
    /// [`Fid::read_all_limited`]) and decodes its entries.
    pub async fn read_dir_limited(&self, limit: usize) -> Result<Vec<Stat>> {
        let bytes = self.read_all_limited(limit).await?;
        let mut r = Reader::new(&bytes);
        let mut out = Vec::new();
        while r.remaining() > 0 {
            out.push(Stat::decode(&mut r).map_err(|e| ClientError::Protocol(e.to_string()))?);
        }
        Ok(out)
    }

    /// One Twrite of at most one iounit; returns the count the server took.
    pub async fn write(&self, offset: u64, data: &[u8]) -> Result<u32> {
        let r = self
            .client
            .rpc(Twrite {
                fid: self.fid,
                offset,
                data: Data::from(data),
            })
            .await?;
        Ok(expect_reply!(r, Write)?.count)
    }

    /// Writes all of `data` from `offset`, in iounit-sized Twrites, one after another.
    pub async fn write_all(&self, offset: u64, data: &[u8]) -> Result<()> {
        self.write_all_chunked(offset, data, self.io_size() as usize)
            .await
    }

    /// Writes all of `data` in Twrites of at most `chunk` bytes (a client such as
    /// plan9port's 9pfuse writes at most 4096 bytes at a time).
    pub async fn write_all_chunked(&self, offset: u64, data: &[u8], chunk: usize) -> Result<()> {
        let chunk = chunk.clamp(1, self.io_size() as usize);
        let mut done = 0usize;
        while done < data.len() || (data.is_empty() && done == 0) {
            let end = (done + chunk).min(data.len());
            let n = self.write(offset + done as u64, &data[done..end]).await? as usize;
            if data.is_empty() {
                break;
            }
            if n == 0 {
                return Err(ClientError::Protocol("server wrote 0 bytes".into()));
            }
            done += n;
        }
        Ok(())
    }

    /// Tstat.
    pub async fn stat(&self) -> Result<Stat> {
        let r = self.client.rpc(Tstat { fid: self.fid }).await?;
        Ok(expect_reply!(r, Stat)?.stat.0)
    }

    /// Twstat.
    pub async fn wstat(&self, stat: Stat) -> Result<()> {
        let r = self
            .client
            .rpc(Twstat {
                fid: self.fid,
                stat: WrappedStat(stat),
            })
            .await?;
        expect_reply!(r, Wstat).map(|_| ())
    }

    /// Tclunk, waiting for the answer (which may be an error the server reports at
    /// clunk, such as a ctl command completed by it).
    pub async fn clunk(mut self) -> Result<()> {
        self.clunked = true;
        let r = self.client.rpc(Tclunk { fid: self.fid }).await;
        self.client.free_fid(self.fid);
        expect_reply!(r?, Clunk).map(|_| ())
    }

    /// Tremove: removes the file; the fid is gone whatever the answer.
    pub async fn remove(mut self) -> Result<()> {
        self.clunked = true;
        let r = self.client.rpc(Tremove { fid: self.fid }).await;
        self.client.free_fid(self.fid);
        expect_reply!(r?, Remove).map(|_| ())
    }
}

impl Drop for Fid {
    fn drop(&mut self) {
        if self.clunked {
            return;
        }
        // Clunk in the background; the fid number is reused once the server answers.
        let clunk = Tclunk { fid: self.fid }.into();
        if let Ok(pending) = self.client.send_frame(clunk, None, Release::Fid(self.fid)) {
            drop(pending);
        }
    }
}
