//! Attaches with a credential: Tauth, the credential written to the afid, Tattach with it.
//! The core carries the bytes to the filesystem once, bounds them, refuses attaches
//! without one where one is needed, makes a stranger's connection its proven principal's,
//! and closes the connection when the credential stops holding. Each test talks raw 9P
//! over a real socket (or the client over real TCP) to a ramfs that wants a credential
//! from TCP peers.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Raw, ramfs};
use ninep::server::{
    Admission, Authenticated, ClunkKind, Filesystem, Limits, Peer, Ready, Server, Shutdown,
    Transport,
};
use ninep::{Data, Qid, Stat, Tattach, Tauth, Tclunk, Tread, Tstat, Twalk, Twrite, ename};
use tokio::sync::watch;

/// The ramfs, wanting a credential from TCP peers: `alice-key` proves alice, `bob-key`
/// bob; each can be revoked.
struct Guarded {
    inner: ramfs::RamFs,
    alice_revoked: watch::Sender<bool>,
}

impl Guarded {
    fn new() -> Guarded {
        let inner = ramfs::RamFs::with_clock(|| 0);
        inner.populate();
        Guarded {
            inner,
            alice_revoked: watch::channel(false).0,
        }
    }
}

impl Filesystem for Guarded {
    type Fid = ramfs::RamFid;

    fn accept(&self, peer: &Peer) -> Admission {
        match peer.transport {
            Transport::Tcp => Admission::Stranger,
            _ => Admission::by_uid(peer),
        }
    }

    fn needs_credential(&self, peer: &Peer) -> bool {
        peer.transport == Transport::Tcp
    }

    async fn attach_with_credential(
        &self,
        peer: &Peer,
        uname: &str,
        aname: &str,
        credential: &[u8],
    ) -> ninep::Result<Authenticated<ramfs::RamFid>> {
        let (principal, ends) = match credential {
            b"alice-key" => {
                let mut revoked = self.alice_revoked.subscribe();
                let ends = Ready::new(async move {
                    let _ = revoked.wait_for(|r| *r).await;
                });
                ("alice", ends)
            }
            b"bob-key" => ("bob", Ready::new(std::future::pending())),
            _ => return Err(ninep::Error::permission_denied()),
        };
        let (qid, fid) = self.inner.attach(peer, uname, aname).await?;
        Ok(Authenticated {
            qid,
            fid,
            principal: principal.into(),
            ends,
        })
    }

    async fn attach(
        &self,
        peer: &Peer,
        uname: &str,
        aname: &str,
    ) -> ninep::Result<(Qid, ramfs::RamFid)> {
        self.inner.attach(peer, uname, aname).await
    }
    fn clone_fid(&self, fid: &ramfs::RamFid) -> ramfs::RamFid {
        self.inner.clone_fid(fid)
    }
    async fn walk(&self, dir: &ramfs::RamFid, name: &str) -> ninep::Result<(Qid, ramfs::RamFid)> {
        self.inner.walk(dir, name).await
    }
    async fn stat(&self, fid: &ramfs::RamFid) -> ninep::Result<Stat> {
        self.inner.stat(fid).await
    }
    async fn read(&self, fid: &ramfs::RamFid, offset: u64, count: u32) -> ninep::Result<Data> {
        self.inner.read(fid, offset, count).await
    }
    async fn readdir(&self, dir: &ramfs::RamFid) -> ninep::Result<Vec<Stat>> {
        self.inner.readdir(dir).await
    }
    async fn clunk(&self, fid: &ramfs::RamFid, kind: ClunkKind) -> ninep::Result<()> {
        self.inner.clunk(fid, kind).await
    }
}

fn limits() -> Limits {
    Limits {
        max_credential_len: 64,
        max_afids: 2,
        max_credential_attaches: 3,
        ..Limits::default()
    }
}

/// A connection served as coming over `transport`.
fn connect(server: &Server<Guarded>, transport: Transport) -> Raw {
    let (client, served) = tokio::net::UnixStream::pair().unwrap();
    let server = server.clone();
    let peer = Peer {
        transport,
        uid: (transport == Transport::Unix).then_some(1000),
        addr: "test".into(),
        ..Peer::default()
    };
    tokio::spawn(async move {
        server
            .serve_connection(served, peer, Shutdown::never())
            .await
    });
    Raw(client)
}

fn auth(afid: u32, uname: &str, aname: &str) -> Tauth {
    Tauth {
        afid,
        uname: uname.into(),
        aname: aname.into(),
    }
}

fn write(fid: u32, offset: u64, data: &[u8]) -> Twrite {
    Twrite {
        fid,
        offset,
        data: Data::from(data),
    }
}

fn attach(fid: u32, afid: u32, uname: &str, aname: &str) -> Tattach {
    Tattach {
        fid,
        afid,
        uname: uname.into(),
        aname: aname.into(),
    }
}

async fn ask(c: &mut Raw, msg: impl Into<ninep::Tmessage>) -> String {
    c.send(1, msg).await;
    c.recv_text().await
}

/// Tauth of `afid`, the credential written to it: both answered.
async fn prepare(c: &mut Raw, afid: u32, credential: &[u8]) {
    let r = ask(c, auth(afid, "u", "")).await;
    assert!(r.starts_with("Rauth"), "{r}");
    let r = ask(c, write(afid, 0, credential)).await;
    assert!(r.starts_with("Rwrite"), "{r}");
}

fn error(text: &str) -> String {
    format!("Rerror tag 1 ename '{text}'")
}

#[tokio::test]
async fn a_connection_that_needs_no_credential_is_told_so_at_tauth() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Unix);
    c.version(8192).await;
    assert!(ask(&mut c, auth(5, "u", "")).await.contains(ename::NO_AUTH));
    // An afid offered anyway is refused; a plain attach works.
    assert!(
        ask(&mut c, attach(0, 5, "u", ""))
            .await
            .contains(ename::NO_AUTH)
    );
    assert!(
        ask(&mut c, attach(0, ninep::NOFID, "u", ""))
            .await
            .starts_with("Rattach")
    );
}

#[tokio::test]
async fn an_attach_without_a_credential_is_refused_where_one_is_needed() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    let r = ask(&mut c, attach(0, ninep::NOFID, "u", "")).await;
    assert!(r.contains(ename::AUTH_REQUIRED), "{r}");
    // A stranger holds no fid, and the next step is still open to it.
    prepare(&mut c, 7, b"alice-key").await;
    let r = ask(&mut c, attach(0, 7, "u", "")).await;
    assert!(r.starts_with("Rattach"), "{r}");
    let r = ask(
        &mut c,
        Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["8k".into()],
        },
    )
    .await;
    assert!(r.starts_with("Rwalk"), "{r}");
}

#[tokio::test]
async fn a_wrong_credential_is_refused_and_spends_its_afid() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    prepare(&mut c, 7, b"mallory").await;
    assert_eq!(
        ask(&mut c, attach(0, 7, "u", "")).await,
        error(ename::PERMISSION_DENIED)
    );
    // The afid served its one attach: no second guess on it, not even with more bytes.
    assert_eq!(
        ask(&mut c, attach(0, 7, "u", "")).await,
        error(ename::AFID_SPENT)
    );
    assert_eq!(
        ask(&mut c, write(7, 7, b"x")).await,
        error(ename::AFID_SPENT)
    );
    assert!(ask(&mut c, Tclunk { fid: 7 }).await.starts_with("Rclunk"));
    // A good credential on a new afid attaches.
    prepare(&mut c, 7, b"bob-key").await;
    assert!(
        ask(&mut c, attach(0, 7, "u", ""))
            .await
            .starts_with("Rattach")
    );
    // And a successful attach spends its afid too.
    assert_eq!(
        ask(&mut c, attach(1, 7, "u", "")).await,
        error(ename::AFID_SPENT)
    );
}

#[tokio::test]
async fn afids_are_checked_before_the_filesystem_sees_anything() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    // No such afid.
    assert_eq!(
        ask(&mut c, attach(0, 9, "u", "")).await,
        error(ename::UNKNOWN_FID)
    );
    prepare(&mut c, 7, b"alice-key").await;
    // Its number is taken, as any fid's.
    assert_eq!(
        ask(&mut c, auth(7, "u", "")).await,
        error(ename::FID_IN_USE)
    );
    // Only reads (empty), writes and clunks: no walk, stat or open of an afid.
    let r = ask(
        &mut c,
        Twalk {
            fid: 7,
            newfid: 8,
            wnames: vec![],
        },
    )
    .await;
    assert_eq!(r, error(ename::AFID_MISUSED));
    assert_eq!(
        ask(&mut c, Tstat { fid: 7 }).await,
        error(ename::AFID_MISUSED)
    );
    let r = ask(
        &mut c,
        Tread {
            fid: 7,
            offset: 0,
            count: 100,
        },
    )
    .await;
    assert_eq!(r, "Rread tag 1 data <0 bytes>");
    // Written in order only: a write elsewhere than where the last ended is refused.
    assert_eq!(
        ask(&mut c, write(7, 3, b"x")).await,
        error(ename::BAD_OFFSET)
    );
    // An attach naming another uname or aname than the Tauth did is refused, and spends it.
    assert_eq!(
        ask(&mut c, attach(0, 7, "other", "")).await,
        error(ename::AFID_MISMATCH)
    );
    assert_eq!(
        ask(&mut c, attach(0, 7, "u", "")).await,
        error(ename::AFID_SPENT)
    );
    // A fid that is not an afid is not one.
    prepare(&mut c, 8, b"alice-key").await;
    assert!(
        ask(&mut c, attach(0, 8, "u", ""))
            .await
            .starts_with("Rattach")
    );
    assert_eq!(
        ask(&mut c, attach(1, 0, "u", "")).await,
        error(ename::NOT_AN_AFID)
    );
}

#[tokio::test]
async fn a_credential_longer_than_the_bound_is_refused_and_wiped() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    assert!(ask(&mut c, auth(7, "u", "")).await.starts_with("Rauth"));
    // 64 bytes in two pieces fit; one more does not.
    assert!(
        ask(&mut c, write(7, 0, &[b'a'; 40]))
            .await
            .starts_with("Rwrite")
    );
    assert!(
        ask(&mut c, write(7, 40, &[b'a'; 24]))
            .await
            .starts_with("Rwrite")
    );
    assert_eq!(
        ask(&mut c, write(7, 64, b"a")).await,
        error(ename::CREDENTIAL_TOO_LONG)
    );
    // What it held is gone: the afid serves no attach.
    assert_eq!(
        ask(&mut c, attach(0, 7, "u", "")).await,
        error(ename::AFID_SPENT)
    );
    // One write of it all at once likewise.
    assert!(ask(&mut c, auth(8, "u", "")).await.starts_with("Rauth"));
    assert_eq!(
        ask(&mut c, write(8, 0, &[b'a'; 65])).await,
        error(ename::CREDENTIAL_TOO_LONG)
    );
}

#[tokio::test]
async fn a_proven_stranger_becomes_its_principals_connection_and_stays_one_principals() {
    let server = Server::new(Guarded::new(), limits());
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    prepare(&mut c, 7, b"alice-key").await;
    assert_eq!(server.stats().stranger_connections, 1);
    assert_eq!(server.stats().principal_connections, 0);
    assert!(
        ask(&mut c, attach(0, 7, "u", ""))
            .await
            .starts_with("Rattach")
    );
    let stats = server.stats();
    assert_eq!(
        (stats.principal_connections, stats.stranger_connections),
        (1, 0)
    );
    // Its window grew: more requests at once than a stranger's few replies allow, all
    // answered (a stranger's connection would stop being read past its window).
    for tag in 0..32u16 {
        c.send(tag, Tstat { fid: 0 }).await;
    }
    for _ in 0..32 {
        let r = c.recv_text().await;
        assert!(r.starts_with("Rstat"), "{r}");
    }
    // Another credential of the same principal attaches; one of another does not.
    prepare(&mut c, 8, b"alice-key").await;
    assert!(
        ask(&mut c, attach(1, 8, "u", ""))
            .await
            .starts_with("Rattach")
    );
    // At most max_afids (2) at once: the next Tauth is refused until one is clunked.
    assert_eq!(
        ask(&mut c, auth(9, "u", "")).await,
        error(ename::TOO_MANY_AFIDS)
    );
    for afid in [7, 8] {
        assert!(
            ask(&mut c, Tclunk { fid: afid })
                .await
                .starts_with("Rclunk")
        );
    }
    prepare(&mut c, 9, b"bob-key").await;
    assert_eq!(
        ask(&mut c, attach(2, 9, "u", "")).await,
        error(ename::ANOTHER_PRINCIPAL)
    );
    assert!(ask(&mut c, Tclunk { fid: 9 }).await.starts_with("Rclunk"));
    // At most max_credential_attaches (3) attaches with a credential per connection.
    prepare(&mut c, 10, b"alice-key").await;
    assert!(
        ask(&mut c, attach(3, 10, "u", ""))
            .await
            .starts_with("Rattach")
    );
    prepare(&mut c, 11, b"alice-key").await;
    assert_eq!(
        ask(&mut c, attach(4, 11, "u", "")).await,
        error(ename::TOO_MANY_CREDENTIALS)
    );
    drop(c);
    // Its slot is given back when it ends.
    tokio::time::timeout(Duration::from_secs(5), async {
        while server.stats().principal_connections != 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_connection_ends_when_the_credential_it_attached_with_stops_holding() {
    let fs = Arc::new(Guarded::new());
    let server = Server::from_arc(fs.clone(), limits());
    let mut alice = connect(&server, Transport::Tcp);
    let mut bob = connect(&server, Transport::Tcp);
    for (c, key) in [(&mut alice, &b"alice-key"[..]), (&mut bob, b"bob-key")] {
        c.version(8192).await;
        prepare(c, 7, key).await;
        assert!(ask(c, attach(0, 7, "u", "")).await.starts_with("Rattach"));
    }
    fs.alice_revoked.send_replace(true);
    assert!(
        alice.closed().await,
        "alice's connection outlived her credential"
    );
    // Bob's goes on.
    assert!(ask(&mut bob, Tstat { fid: 0 }).await.starts_with("Rstat"));
}

#[tokio::test]
async fn guesses_count_against_the_requests_before_a_successful_attach() {
    let server = Server::new(
        Guarded::new(),
        Limits {
            max_requests_before_attach: 7,
            ..limits()
        },
    );
    let mut c = connect(&server, Transport::Tcp);
    c.version(8192).await;
    // Two guesses of three requests each, and the connection is closed at the next.
    for afid in [1, 2] {
        prepare(&mut c, afid, b"guess").await;
        assert_eq!(
            ask(&mut c, attach(0, afid, "u", "")).await,
            error(ename::PERMISSION_DENIED)
        );
    }
    c.send(1, auth(3, "u", "")).await;
    let r = c.recv_text().await;
    assert!(r.contains("requests before a successful attach"), "{r}");
    assert!(c.closed().await);
}

#[tokio::test]
async fn the_client_attaches_with_a_credential_over_tcp() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let server = Server::new(Guarded::new(), limits());
    tokio::spawn(async move { server.serve_tcp(listener, Shutdown::never()).await });
    let client = ninep::client::Client::connect_tcp(&addr).await.unwrap();
    let e = client.attach("u", "").await.err().unwrap();
    assert!(e.to_string().starts_with(ename::AUTH_REQUIRED), "{e}");
    let e = client
        .attach_with_credential("u", "", b"wrong")
        .await
        .err()
        .unwrap();
    assert_eq!(e.to_string(), ename::PERMISSION_DENIED);
    let root = client
        .attach_with_credential("u", "", b"alice-key")
        .await
        .unwrap();
    let mut f = root.walk(&["8k"]).await.unwrap();
    f.open(ninep::om::READ).await.unwrap();
    assert_eq!(*f.read_all().await.unwrap(), common::pattern(8 << 10));
}
