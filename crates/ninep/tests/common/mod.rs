//! What the ninep integration tests share: the ramfs ([`ninep::ramfs`]), a slow wrapper around it,
//! a server on a real unix socket, and a raw frame-level connection.

#![allow(dead_code)] // each test file uses a different part of this
#![allow(
    clippy::unwrap_used,
    reason = "test helpers fail the test by panicking"
)]

pub use ninep::ramfs;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ninep::server::{
    ClunkKind, Filesystem, Limits, Peer, Reading, Ready, Server, Shutdown, ShutdownTrigger,
};
use ninep::{Data, Qid, Rframe, Stat, Tframe, Tmessage};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::Semaphore;

pub use ninep::ramfs::pattern;

/// The ramfs seeded like `ramfs --populate`, plus a file `slow` whose reads wait for a
/// permit from the returned semaphore, and a file `wait` whose reads wait for what is
/// [`Feed::post`]ed to the filesystem's feed.
pub fn seeded() -> (SlowFs, Arc<Semaphore>) {
    let fs = ramfs::RamFs::with_clock(|| 0);
    fs.populate();
    fs.add_file("slow", b"slow".to_vec());
    fs.add_file("wait", Vec::new());
    let gate = Arc::new(Semaphore::new(0));
    (
        SlowFs {
            inner: fs,
            gate: gate.clone(),
            feed: Arc::default(),
        },
        gate,
    )
}

/// What reads of the file `wait` answer: each read takes the oldest message posted,
/// whichever fid it is on, and waits ([`Reading::Later`]) while there is none.
#[derive(Default)]
pub struct Feed {
    messages: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
    posted: Arc<tokio::sync::Notify>,
}

impl Feed {
    /// Queues a message for the next read of `wait`, and wakes the waiting reads.
    pub fn post(&self, message: &[u8]) {
        self.messages.lock().unwrap().push_back(message.to_vec());
        self.posted.notify_waiters();
    }

    /// Messages posted and not read yet.
    pub fn unread(&self) -> usize {
        self.messages.lock().unwrap().len()
    }
}

/// RamFs whose reads and writes of the file `slow` wait for the gate, and whose reads of
/// `wait` wait for the feed.
pub struct SlowFs {
    pub inner: ramfs::RamFs,
    gate: Arc<Semaphore>,
    pub feed: Arc<Feed>,
}

pub struct SlowFid {
    inner: ramfs::RamFid,
    slow: bool,
    waits: bool,
}

impl Filesystem for SlowFs {
    type Fid = SlowFid;

    async fn attach(&self, peer: &Peer, uname: &str, aname: &str) -> ninep::Result<(Qid, SlowFid)> {
        let (q, inner) = self.inner.attach(peer, uname, aname).await?;
        Ok((
            q,
            SlowFid {
                inner,
                slow: false,
                waits: false,
            },
        ))
    }
    fn clone_fid(&self, fid: &SlowFid) -> SlowFid {
        SlowFid {
            inner: self.inner.clone_fid(&fid.inner),
            slow: fid.slow,
            waits: fid.waits,
        }
    }
    async fn walk(&self, dir: &SlowFid, name: &str) -> ninep::Result<(Qid, SlowFid)> {
        let (q, inner) = self.inner.walk(&dir.inner, name).await?;
        Ok((
            q,
            SlowFid {
                inner,
                slow: name == "slow",
                waits: name == "wait",
            },
        ))
    }
    async fn stat(&self, fid: &SlowFid) -> ninep::Result<Stat> {
        self.inner.stat(&fid.inner).await
    }
    async fn open(&self, fid: &SlowFid, mode: u8) -> ninep::Result<()> {
        self.inner.open(&fid.inner, mode).await
    }
    async fn read(&self, fid: &SlowFid, offset: u64, count: u32) -> ninep::Result<Data> {
        if fid.slow {
            let permit = self.gate.acquire().await;
            drop(permit);
        }
        self.inner.read(&fid.inner, offset, count).await
    }
    async fn read_or_wait(
        &self,
        fid: &SlowFid,
        offset: u64,
        count: u32,
        _iounit: u32,
    ) -> ninep::Result<Reading> {
        if !fid.waits {
            return self.read(fid, offset, count).await.map(Reading::Now);
        }
        // Made (and so registered for notify_waiters) before the queue is looked at, so
        // that no post is missed.
        let posted = self.feed.posted.clone().notified_owned();
        let message = self.feed.messages.lock().unwrap().pop_front();
        Ok(match message {
            Some(m) => Reading::Now(Data::from(m)),
            None => Reading::Later(Ready::new(posted)),
        })
    }
    async fn readdir(&self, dir: &SlowFid) -> ninep::Result<Vec<Stat>> {
        self.inner.readdir(&dir.inner).await
    }
    async fn write(&self, fid: &SlowFid, offset: u64, data: &[u8]) -> ninep::Result<u32> {
        if fid.slow {
            let permit = self.gate.acquire().await;
            drop(permit);
        }
        self.inner.write(&fid.inner, offset, data).await
    }
    async fn create(
        &self,
        dir: &SlowFid,
        name: &str,
        perm: u32,
        mode: u8,
    ) -> ninep::Result<(Qid, SlowFid)> {
        let (q, inner) = self.inner.create(&dir.inner, name, perm, mode).await?;
        Ok((
            q,
            SlowFid {
                inner,
                slow: false,
                waits: false,
            },
        ))
    }
    async fn remove(&self, fid: &SlowFid) -> ninep::Result<()> {
        self.inner.remove(&fid.inner).await
    }
    async fn wstat(&self, fid: &SlowFid, stat: &Stat) -> ninep::Result<()> {
        self.inner.wstat(&fid.inner, stat).await
    }
    async fn clunk(&self, fid: &SlowFid, kind: ClunkKind) -> ninep::Result<()> {
        self.inner.clunk(&fid.inner, kind).await
    }
}

/// A server on a unix socket in a temporary directory.
pub struct TestServer {
    pub path: PathBuf,
    pub gate: Arc<Semaphore>,
    pub feed: Arc<Feed>,
    /// A handle on the server, for its counters.
    pub server: Server<SlowFs>,
    _dir: tempfile::TempDir,
    trigger: ShutdownTrigger,
    pub task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    pub async fn start(limits: Limits) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("9p.sock");
        let listener = ninep::server::bind_unix(&path).await.unwrap();
        let (fs, gate) = seeded();
        let feed = fs.feed.clone();
        let server = Server::new(fs, limits);
        let (trigger, shutdown) = Shutdown::new();
        let serving = server.clone();
        let task = tokio::spawn(async move {
            serving.serve_unix(listener, shutdown).await.unwrap();
        });
        TestServer {
            path,
            gate,
            feed,
            server,
            _dir: dir,
            trigger,
            task,
        }
    }

    pub async fn raw(&self) -> Raw {
        Raw(UnixStream::connect(&self.path).await.unwrap())
    }

    /// A fresh connection that negotiates, attaches and reads a file: proof that the
    /// server still serves.
    pub async fn still_serves(&self) {
        let client = tokio::time::timeout(
            Duration::from_secs(5),
            ninep::client::Client::connect_unix(&self.path),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let root = client.attach("check", "").await.unwrap();
        let mut f = root.walk(&["8k"]).await.unwrap();
        f.open(ninep::om::READ).await.unwrap();
        assert_eq!(*f.read_all().await.unwrap(), pattern(8 << 10));
    }

    pub fn stop(&self) {
        self.trigger.trigger();
    }
}

/// A raw connection: frames in, frames out.
pub struct Raw(pub UnixStream);

impl Raw {
    pub async fn send(&mut self, tag: u16, msg: impl Into<Tmessage>) {
        let f = Tframe {
            tag,
            msg: msg.into(),
        };
        self.0.write_all(&f.to_bytes()).await.unwrap();
    }

    pub async fn send_bytes(&mut self, b: &[u8]) {
        self.0.write_all(b).await.unwrap();
    }

    /// The next reply, or None if the server closed the connection.
    pub async fn recv(&mut self) -> Option<Rframe> {
        let mut h = [0u8; 4];
        match tokio::time::timeout(Duration::from_secs(10), self.0.read_exact(&mut h)).await {
            Ok(Ok(_)) => {}
            Ok(Err(_)) => return None,
            Err(_) => panic!("no reply within 10 s"),
        }
        let size = u32::from_le_bytes(h) as usize;
        let mut buf = vec![0u8; size];
        buf[..4].copy_from_slice(&h);
        self.0.read_exact(&mut buf[4..]).await.ok()?;
        Some(Rframe::decode(&buf).expect("server replies decode"))
    }

    /// The next reply's text form (payloads hidden).
    pub async fn recv_text(&mut self) -> String {
        self.recv().await.expect("a reply").to_string()
    }

    /// Whether the server closed the connection (within 5 s).
    pub async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.0.read(&mut b)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }

    pub async fn version(&mut self, msize: u32) {
        self.send(
            ninep::NOTAG,
            ninep::Tversion {
                msize,
                version: "9P2000".into(),
            },
        )
        .await;
        let r = self.recv_text().await;
        assert!(r.starts_with("Rversion"), "{r}");
    }

    pub async fn attach(&mut self, fid: u32) {
        self.send(
            1,
            ninep::Tattach {
                fid,
                afid: ninep::NOFID,
                uname: "t".into(),
                aname: String::new(),
            },
        )
        .await;
        let r = self.recv_text().await;
        assert!(r.starts_with("Rattach"), "{r}");
    }

    /// Walks `newfid` to `name` from fid 0 and opens it for reading.
    pub async fn open(&mut self, newfid: u32, name: &str) {
        self.send(
            2,
            ninep::Twalk {
                fid: 0,
                newfid,
                wnames: vec![name.into()],
            },
        )
        .await;
        let r = self.recv_text().await;
        assert!(r.starts_with("Rwalk"), "{r}");
        self.send(
            3,
            ninep::Topen {
                fid: newfid,
                mode: ninep::om::READ,
            },
        )
        .await;
        let r = self.recv_text().await;
        assert!(r.starts_with("Ropen"), "{r}");
    }
}
