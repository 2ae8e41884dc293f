//! Reads that wait for their data ([`ninep::server::Reading::Later`]): they hold no reply
//! permit and are not counted as outstanding, a flush answers them as flush(5) says, a
//! clunk of their fid ends them, and a shutdown answers them so that the server can exit.
//! Each test talks raw 9P over real sockets to the test filesystem's `wait` file, whose
//! reads wait for what the test posts to its feed.

mod common;

use std::time::Duration;

use common::{Raw, SlowFs, TestServer, seeded};
use ninep::server::{Limits, Peer, Server, Shutdown};
use ninep::{Tclunk, Tflush, Tread, Tstat, Tversion, Twalk};

fn read(fid: u32) -> Tread {
    Tread {
        fid,
        offset: 0,
        count: 100,
    }
}

/// A connection to `server` that it serves as coming from `uid`.
fn connect_as(server: &Server<SlowFs>, uid: u32) -> Raw {
    let (client, served) = tokio::net::UnixStream::pair().expect("a socket pair");
    let server = server.clone();
    let peer = Peer {
        uid: Some(uid),
        addr: format!("uid {uid}"),
        ..Peer::default()
    };
    tokio::spawn(async move {
        server
            .serve_connection(served, peer, Shutdown::never())
            .await
    });
    Raw(client)
}

/// Negotiates, attaches fid 0, and opens fids `fids` on `wait`.
async fn open_waits(c: &mut Raw, fids: impl IntoIterator<Item = u32>) {
    c.version(8192).await;
    c.attach(0).await;
    for fid in fids {
        c.open(fid, "wait").await;
    }
}

/// Waits until `n` reads of the server are waiting without permits.
async fn until_waiting(server: &Server<SlowFs>, n: u64) {
    for _ in 0..500 {
        if server.stats().waiting_reads == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} reads waiting, not {n}", server.stats().waiting_reads);
}

/// The next `n` replies, sorted (their order is the server's).
async fn replies(c: &mut Raw, n: usize) -> Vec<String> {
    let mut all = Vec::with_capacity(n);
    for _ in 0..n {
        all.push(c.recv_text().await);
    }
    all.sort();
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_reads_hold_no_permit_and_are_not_outstanding_requests() {
    // Windows of 8 replies per connection, 8 per principal: without the waiting reads'
    // exemption the 9th read would stop the connection being read, and the 5th would be
    // refused as one too many outstanding.
    let limits = Limits {
        max_outstanding: 4,
        max_outstanding_per_principal: 8,
        ..Limits::default()
    };
    let (fs, _gate) = seeded();
    let feed = fs.feed.clone();
    let server = Server::new(fs, limits);
    let per_connection = 100u32;
    let mut readers = Vec::new();
    let mut waiting = 0;
    for _ in 0..2 {
        let mut c = connect_as(&server, 1001);
        open_waits(&mut c, 1..=per_connection).await;
        // One at a time: a read counts as outstanding until it has begun to wait.
        for fid in 1..=per_connection {
            c.send(100 + fid as u16, read(fid)).await;
            waiting += 1;
            until_waiting(&server, waiting).await;
        }
        readers.push(c);
    }
    // The same principal, on these connections and a new one, and another principal,
    // are all served at once.
    for c in &mut readers {
        c.send(7, Tstat { fid: 0 }).await;
        assert!(c.recv_text().await.starts_with("Rstat tag 7"));
    }
    for uid in [1001, 1002] {
        let mut c = connect_as(&server, uid);
        c.version(8192).await;
        c.attach(0).await;
        c.open(1, "8k").await;
        c.send(4, read(1)).await;
        assert_eq!(c.recv_text().await, "Rread tag 4 data <100 bytes>");
    }
    // Each post answers one waiting read, whichever it is.
    for _ in 0..2 * per_connection {
        feed.post(b"event\n");
    }
    for c in &mut readers {
        let got = replies(c, per_connection as usize).await;
        assert!(got.iter().all(|r| r.ends_with("data <6 bytes>")), "{got:?}");
    }
    until_waiting(&server, 0).await;
    assert_eq!(feed.unread(), 0);
}

#[tokio::test]
async fn a_flushed_waiting_read_gets_only_the_rflush_and_takes_nothing() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1]).await;
    c.send(10, read(1)).await;
    until_waiting(&srv.server, 1).await;
    c.send(11, Tflush { oldtag: 10 }).await;
    assert_eq!(c.recv_text().await, "Rflush tag 11");
    until_waiting(&srv.server, 0).await;
    // What comes next is not the flushed read's: it never answers, and took nothing.
    srv.feed.post(b"hello");
    c.send(12, Tstat { fid: 0 }).await;
    assert!(c.recv_text().await.starts_with("Rstat tag 12"));
    assert_eq!(srv.feed.unread(), 1);
    // Its tag is free again, and the next read gets what was posted.
    c.send(10, read(1)).await;
    assert_eq!(c.recv_text().await, "Rread tag 10 data <5 bytes>");
}

#[tokio::test]
async fn a_read_answered_before_its_flush_comes_first() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1]).await;
    c.send(10, read(1)).await;
    until_waiting(&srv.server, 1).await;
    srv.feed.post(b"late");
    // The read may be answered before the flush reaches it: then its Rread comes first,
    // and the Rflush after it; never an Rread after the Rflush.
    c.send(11, Tflush { oldtag: 10 }).await;
    let first = c.recv_text().await;
    if first.starts_with("Rread") {
        assert_eq!(first, "Rread tag 10 data <4 bytes>");
        assert_eq!(c.recv_text().await, "Rflush tag 11");
    } else {
        assert_eq!(first, "Rflush tag 11");
        assert_eq!(srv.feed.unread(), 1);
    }
    c.send(12, Tstat { fid: 0 }).await;
    assert!(c.recv_text().await.starts_with("Rstat tag 12"));
}

#[tokio::test]
async fn a_clunk_of_the_fid_ends_its_waiting_read() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1]).await;
    c.send(10, read(1)).await;
    until_waiting(&srv.server, 1).await;
    // The clunk does not wait for the read (it would wait for ever): it ends it.
    c.send(11, Tclunk { fid: 1 }).await;
    assert_eq!(
        replies(&mut c, 2).await,
        ["Rclunk tag 11", "Rerror tag 10 ename 'unknown fid'"]
    );
    until_waiting(&srv.server, 0).await;
    srv.feed.post(b"unread");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(srv.feed.unread(), 1);
}

#[tokio::test]
async fn shutdown_answers_every_waiting_read_and_the_server_ends() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, 1..=3).await;
    for fid in 1..=3 {
        c.send(10 + fid as u16, read(fid)).await;
    }
    until_waiting(&srv.server, 3).await;
    srv.stop();
    assert_eq!(
        replies(&mut c, 3).await,
        (11..=13)
            .map(|t| format!("Rerror tag {t} ename 'device shut down'"))
            .collect::<Vec<_>>()
    );
    assert!(c.closed().await);
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("the server stops although reads were waiting")
        .expect("the server task ends cleanly");
}

#[tokio::test]
async fn a_fid_parks_one_read_and_the_next_waits_as_any_request() {
    let limits = Limits {
        max_outstanding: 2,
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1]).await;
    c.send(10, read(1)).await;
    until_waiting(&srv.server, 1).await;
    c.send(11, read(1)).await;
    c.send(12, read(1)).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(srv.server.stats().waiting_reads, 1);
    // One waits without permits; the other two are outstanding requests, as many as
    // the connection may have.
    c.send(20, Tstat { fid: 0 }).await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 20 ename 'too many outstanding requests on this connection'"
    );
    // Each is answered in turn, and the fid's one parked place is taken again.
    for _ in 0..3 {
        srv.feed.post(b"x");
    }
    assert_eq!(
        replies(&mut c, 3).await,
        (10..13)
            .map(|t| format!("Rread tag {t} data <1 bytes>"))
            .collect::<Vec<_>>()
    );
    until_waiting(&srv.server, 0).await;
}

#[tokio::test]
async fn a_read_woken_for_nothing_waits_again() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1, 2]).await;
    c.send(10, read(1)).await;
    c.send(11, read(2)).await;
    until_waiting(&srv.server, 2).await;
    // One message wakes both: one takes it, the other goes back to waiting.
    srv.feed.post(b"one");
    let first = c.recv_text().await;
    assert!(first.ends_with("data <3 bytes>"), "{first}");
    until_waiting(&srv.server, 1).await;
    assert!(
        tokio::time::timeout(Duration::from_millis(200), c.recv())
            .await
            .is_err(),
        "the second read was answered with nothing to say"
    );
    srv.feed.post(b"two!");
    let second = c.recv_text().await;
    assert!(second.ends_with("data <4 bytes>"), "{second}");
    let tag = |r: &str| r.split(' ').nth(2).map(str::to_string);
    assert_ne!(tag(&first), tag(&second), "both answers were for one tag");
}

#[tokio::test]
async fn tversion_abandons_waiting_reads() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    open_waits(&mut c, [1]).await;
    c.send(10, read(1)).await;
    until_waiting(&srv.server, 1).await;
    c.send(
        ninep::NOTAG,
        Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Rversion"));
    until_waiting(&srv.server, 0).await;
    srv.feed.post(b"after");
    // The new session knows nothing of the old read, which took nothing.
    c.attach(0).await;
    c.send(
        2,
        Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["wait".into()],
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Rwalk tag 2"));
    assert_eq!(srv.feed.unread(), 1);
}

#[tokio::test]
async fn the_client_flushes_a_waiting_read_and_its_tag_is_free_again() {
    let srv = TestServer::start(Limits::default()).await;
    let client = ninep::client::Client::connect_unix(&srv.path)
        .await
        .unwrap();
    let root = client.attach("t", "").await.unwrap();
    let mut fid = root.walk(&["wait"]).await.unwrap();
    fid.open(ninep::om::READ).await.unwrap();
    let pending = client.send(read(fid.number())).unwrap();
    let tag = pending.tag;
    until_waiting(&srv.server, 1).await;
    client.flush(tag).await.unwrap();
    let given_up = tokio::time::timeout(Duration::from_secs(5), pending.reply()).await;
    assert!(
        matches!(given_up, Ok(Err(ninep::client::ClientError::Disconnected))),
        "the flushed read still waits for a reply that will not come"
    );
    // Its tag comes round again (the client takes tags in turn, skipping those in use).
    let mut reused = false;
    for _ in 0..u16::MAX {
        let p = client.send(Tstat { fid: fid.number() }).unwrap();
        reused |= p.tag == tag;
        p.reply().await.unwrap();
    }
    assert!(reused, "the flushed read's tag stayed in use");
    srv.feed.post(b"then");
    assert_eq!(fid.read(0, 100).await.unwrap().expose(), b"then");
}
