//! The server core's behaviour that a transcript cannot show because it depends on
//! timing: concurrency, flush of a request in progress, limits, stalls and shutdown.
//! Each test talks raw 9P over a real unix socket.

mod common;

use std::time::Duration;

use common::{Raw, SlowFs, TestServer, pattern, seeded};
use ninep::client::ClientError;
use ninep::server::{Limits, Peer, Server, Shutdown};
use ninep::{NOFID, Tattach, Tflush, Tread, Tstat, Tversion, Twrite};

fn read(fid: u32) -> Tread {
    Tread {
        fid,
        offset: 0,
        count: 100,
    }
}

#[tokio::test]
async fn a_slow_read_does_not_hold_up_other_requests() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    c.send(10, read(1)).await;
    c.send(11, Tstat { fid: 0 }).await;
    assert!(c.recv_text().await.starts_with("Rstat tag 11"));
    srv.gate.add_permits(1);
    assert_eq!(c.recv_text().await, "Rread tag 10 data <4 bytes>");
}

#[tokio::test]
async fn flush_cancels_a_read_in_progress_and_answers_rflush() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    c.send(10, read(1)).await;
    c.send(11, Tflush { oldtag: 10 }).await;
    assert_eq!(c.recv_text().await, "Rflush tag 11");
    srv.gate.add_permits(1);
    // The flushed read never answers: the next reply is for the next request.
    c.send(12, Tstat { fid: 0 }).await;
    assert!(c.recv_text().await.starts_with("Rstat tag 12"));
    // And its tag is free again.
    c.send(10, Tstat { fid: 0 }).await;
    assert!(c.recv_text().await.starts_with("Rstat tag 10"));
}

#[tokio::test]
async fn a_tag_in_use_is_refused() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    c.send(10, read(1)).await;
    c.send(10, Tstat { fid: 0 }).await;
    assert_eq!(c.recv_text().await, "Rerror tag 10 ename 'duplicate tag'");
    srv.gate.add_permits(1);
    assert_eq!(c.recv_text().await, "Rread tag 10 data <4 bytes>");
}

#[tokio::test]
async fn past_the_outstanding_limit_requests_get_an_error() {
    let limits = Limits {
        max_outstanding: 4,
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    for tag in 10..14 {
        c.send(tag, read(1)).await;
    }
    c.send(14, read(1)).await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 14 ename 'too many outstanding requests on this connection'"
    );
    srv.gate.add_permits(4);
    let mut tags: Vec<String> = Vec::new();
    for _ in 0..4 {
        tags.push(c.recv_text().await);
    }
    tags.sort();
    assert_eq!(
        tags,
        (10..14)
            .map(|t| format!("Rread tag {t} data <4 bytes>"))
            .collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn tversion_abandons_outstanding_requests() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    c.send(10, read(1)).await;
    c.version(8192).await;
    srv.gate.add_permits(1);
    c.send(
        5,
        Tattach {
            fid: 0,
            afid: NOFID,
            uname: "t".into(),
            aname: String::new(),
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Rattach tag 5"));
}

#[tokio::test]
async fn a_half_sent_message_times_out_and_others_are_served() {
    let limits = Limits {
        stall_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    // A Tstat header promising 11 bytes, and then nothing.
    c.send_bytes(&[11, 0, 0, 0, 124, 1]).await;
    let mut idle = srv.raw().await;
    idle.version(8192).await;
    assert!(c.closed().await, "stalled connection closed");
    srv.still_serves().await;
    // An idle connection (no partial message) is not timed out.
    idle.send(9, Tstat { fid: 0 }).await;
    assert_eq!(idle.recv_text().await, "Rerror tag 9 ename 'unknown fid'");
}

#[tokio::test]
async fn a_message_larger_than_msize_is_refused_and_the_connection_closed() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.send(
        7,
        Twrite {
            fid: 0,
            offset: 0,
            data: vec![0u8; 9000].into(),
        },
    )
    .await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 7 ename 'message of 9023 bytes is larger than msize 8192'"
    );
    assert!(c.closed().await);
    srv.still_serves().await;
}

#[tokio::test]
async fn past_the_connection_limit_new_connections_are_closed() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut a = srv.raw().await;
    a.version(8192).await;
    let mut b = srv.raw().await;
    b.version(8192).await;
    let mut c = srv.raw().await;
    assert!(c.closed().await, "third connection closed at once");
    drop(a);
    // The slot comes back once the server notices the first connection is gone.
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.still_serves().await;
    b.send(3, Tstat { fid: 0 }).await;
    assert_eq!(b.recv_text().await, "Rerror tag 3 ename 'unknown fid'");
}

#[tokio::test]
async fn shutdown_finishes_requests_in_flight_then_closes() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.open(1, "slow").await;
    c.send(10, read(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.stop();
    tokio::time::sleep(Duration::from_millis(50)).await;
    srv.gate.add_permits(1);
    assert_eq!(c.recv_text().await, "Rread tag 10 data <4 bytes>");
    assert!(c.closed().await);
    tokio::time::timeout(Duration::from_secs(5), srv.task)
        .await
        .expect("server stops")
        .expect("server task ends cleanly");
}

#[tokio::test]
async fn the_client_pipelines_and_chunks() {
    let srv = TestServer::start(Limits::default()).await;
    let client = ninep::client::Client::connect_unix(&srv.path)
        .await
        .unwrap();
    let root = client.attach("t", "").await.unwrap();
    // Many concurrent reads on one connection, each its own fid.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let root_walk = root.walk(&["1m"]).await.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut f = root_walk;
            f.open(ninep::om::READ).await.unwrap();
            let all = f.read_all().await.unwrap();
            f.clunk().await.unwrap();
            all.len()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 1 << 20);
    }
    // A write split as 9pfuse does (4096 bytes at a time) reads back whole.
    let mut dir = root.walk(&[]).await.unwrap();
    dir.create("big", 0o644, ninep::om::RDWR).await.unwrap();
    let data = pattern(100_000);
    dir.write_all_chunked(0, &data, 4096).await.unwrap();
    assert_eq!(*dir.read_all().await.unwrap(), data);
    assert_eq!(dir.stat().await.unwrap().length, 100_000);
    // A directory listing decodes.
    let mut d = root.walk(&[]).await.unwrap();
    d.open(ninep::om::READ).await.unwrap();
    let names: Vec<String> = d
        .read_dir()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, ["1m", "8k", "big", "empty", "one", "slow", "wait"]);
    // Errors come back as the server's text.
    let e = root.walk(&["nosuch"]).await.err().unwrap();
    assert_eq!(e.remote(), Some("file does not exist"));
}

#[tokio::test]
async fn bounded_reads_stop_past_their_limit() {
    let srv = TestServer::start(Limits::default()).await;
    let client = ninep::client::Client::connect_unix(&srv.path)
        .await
        .unwrap();
    let root = client.attach("t", "").await.unwrap();
    let read = |name: &'static str, limit: usize| {
        let root = &root;
        async move {
            let mut f = root.walk(&[name]).await.unwrap();
            f.open(ninep::om::READ).await.unwrap();
            f.read_all_limited(limit).await
        }
    };
    // Exactly the limit is fine; one byte more is refused, whatever the read sizes.
    assert_eq!(*read("1m", 1 << 20).await.unwrap(), pattern(1 << 20));
    let e = read("1m", (1 << 20) - 1).await.unwrap_err();
    assert!(matches!(e, ClientError::TooLong { limit } if limit == (1 << 20) - 1));
    assert_eq!(e.to_string(), "the file is longer than 1048575 bytes");
    assert!(matches!(
        read("one", 0).await,
        Err(ClientError::TooLong { limit: 0 })
    ));
    assert!(read("empty", 0).await.unwrap().is_empty());
    assert_eq!(read("8k", usize::MAX).await.unwrap().len(), 8 << 10);
    // Directories too: six entries do not fit in 10 bytes.
    let mut d = root.walk(&[]).await.unwrap();
    d.open(ninep::om::READ).await.unwrap();
    assert!(matches!(
        d.read_dir_limited(10).await,
        Err(ClientError::TooLong { limit: 10 })
    ));
}

#[tokio::test]
async fn version_reply_never_exceeds_the_asked_msize() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    for asked in [4096u32, 8192, 65536, 1 << 20, u32::MAX] {
        c.send(
            ninep::NOTAG,
            Tversion {
                msize: asked,
                version: "9P2000".into(),
            },
        )
        .await;
        let r = c.recv().await.unwrap();
        match r.msg {
            ninep::Rmessage::Version(v) => {
                assert!(v.msize <= asked);
                assert!(v.msize <= Limits::default().max_msize);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn the_core_serves_tcp_too() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (fs, _gate) = common::seeded();
    let server = ninep::server::Server::new(fs, Limits::default());
    let (trigger, shutdown) = ninep::server::Shutdown::new();
    let task = tokio::spawn(async move { server.serve_tcp(listener, shutdown).await });
    let client = ninep::client::Client::connect_tcp(&addr).await.unwrap();
    let root = client.attach("t", "").await.unwrap();
    let mut f = root.walk(&["8k"]).await.unwrap();
    f.open(ninep::om::READ).await.unwrap();
    assert_eq!(*f.read_all().await.unwrap(), pattern(8 << 10));
    trigger.trigger();
    drop(f);
    drop(root);
    drop(client);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("the server stops")
        .unwrap()
        .unwrap();
}

/// A fid's requests keep their order even when pipelined: appends to an append-only
/// file come out in the order sent (a review found them reordered before).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_on_one_fid_keep_their_order() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.send(
        2,
        ninep::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec![],
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Rwalk"));
    // Create, then without waiting: 200 appends and a read of the whole file.
    c.send(
        3,
        ninep::Tcreate {
            fid: 1,
            name: "log".into(),
            perm: ninep::dm::APPEND | 0o644,
            mode: ninep::om::RDWR,
        },
    )
    .await;
    let mut expected = Vec::new();
    for i in 0..200u16 {
        let line = format!("{i},");
        expected.extend_from_slice(line.as_bytes());
        c.send(
            10 + i,
            Twrite {
                fid: 1,
                offset: 0,
                data: line.into_bytes().into(),
            },
        )
        .await;
    }
    for _ in 0..201 {
        let r = c.recv_text().await;
        assert!(r.starts_with("Rcreate") || r.starts_with("Rwrite"), "{r}");
    }
    c.send(
        5,
        Tread {
            fid: 1,
            offset: 0,
            count: 8000,
        },
    )
    .await;
    match c.recv().await.unwrap().msg {
        ninep::Rmessage::Read(r) => assert_eq!(
            String::from_utf8_lossy(r.data.expose()),
            String::from_utf8_lossy(&expected)
        ),
        other => panic!("{other:?}"),
    }
}

/// Topen and Tread sent together: the read waits for the open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipelined_open_and_read_succeed() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    for round in 0..50u32 {
        let fid = 100 + round;
        c.send(
            1,
            ninep::Twalk {
                fid: 0,
                newfid: fid,
                wnames: vec!["8k".into()],
            },
        )
        .await;
        c.send(
            2,
            ninep::Topen {
                fid,
                mode: ninep::om::READ,
            },
        )
        .await;
        c.send(3, read(fid)).await;
        c.send(4, ninep::Tclunk { fid }).await;
        let mut got: Vec<String> = Vec::new();
        for _ in 0..4 {
            got.push(c.recv_text().await);
        }
        got.sort();
        assert!(got[0].starts_with("Rclunk tag 4"), "{got:?}");
        assert!(got[1].starts_with("Ropen tag 2"), "{got:?}");
        assert_eq!(got[2], "Rread tag 3 data <100 bytes>", "{got:?}");
        assert!(got[3].starts_with("Rwalk tag 1"), "{got:?}");
    }
}

/// A client that sends without reading its replies stops being read, instead of
/// growing the server's memory; once it reads, every reply is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_read_is_not_read_either() {
    let limits = Limits {
        max_outstanding: 8,
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    let n = 200_000u32;
    let mut all = Vec::new();
    for i in 0..n {
        all.extend_from_slice(
            &ninep::Tframe {
                tag: (i % 60_000) as u16,
                msg: Tstat { fid: 0 }.into(),
            }
            .to_bytes(),
        );
    }
    let (mut rd, mut wr) = c.0.into_split();
    let writer = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        wr.write_all(&all).await.unwrap();
        wr
    });
    // 2.2 MB of requests cannot all be taken while nobody reads the replies.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !writer.is_finished(),
        "the server kept reading without bound"
    );
    let mut replies = 0u32;
    while replies < n {
        use tokio::io::AsyncReadExt;
        let mut h = [0u8; 4];
        rd.read_exact(&mut h).await.unwrap();
        let mut rest = vec![0u8; u32::from_le_bytes(h) as usize - 4];
        rd.read_exact(&mut rest).await.unwrap();
        replies += 1;
    }
    writer.await.unwrap();
    srv.still_serves().await;
}

/// Tversion abandons outstanding requests completely: none of them answers after the
/// Rversion, and their tags serve new requests at once. Writes cannot be cancelled, so
/// the old session's writes are still running when the new session begins unless the
/// reset waits for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tversion_leaves_nothing_of_the_old_session() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    c.send(
        2,
        ninep::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["slow".into()],
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Rwalk"));
    c.send(
        3,
        ninep::Topen {
            fid: 1,
            mode: ninep::om::RDWR,
        },
    )
    .await;
    assert!(c.recv_text().await.starts_with("Ropen"));
    for tag in 0..100u16 {
        c.send(
            tag,
            Twrite {
                fid: 1,
                offset: 0,
                data: vec![b'x'].into(),
            },
        )
        .await;
    }
    c.send(
        ninep::NOTAG,
        Tversion {
            msize: 8192,
            version: "9P2000".into(),
        },
    )
    .await;
    // The new session, on the same tags, with reads that wait at the gate too.
    c.send(
        500,
        Tattach {
            fid: 0,
            afid: NOFID,
            uname: "t".into(),
            aname: String::new(),
        },
    )
    .await;
    c.send(
        501,
        ninep::Twalk {
            fid: 0,
            newfid: 1,
            wnames: vec!["slow".into()],
        },
    )
    .await;
    c.send(
        502,
        ninep::Topen {
            fid: 1,
            mode: ninep::om::READ,
        },
    )
    .await;
    for tag in 0..100u16 {
        c.send(tag, read(1)).await;
    }
    // Let the old writes finish only now, while the new session's reads are waiting.
    tokio::time::sleep(Duration::from_millis(200)).await;
    srv.gate.add_permits(1000);
    loop {
        let r = c.recv_text().await;
        if r.starts_with("Rversion") {
            break;
        }
        assert!(r.starts_with("Rwrite"), "{r}");
    }
    let mut new_session = Vec::new();
    for _ in 0..103 {
        new_session.push(c.recv_text().await);
    }
    assert!(
        new_session.iter().all(|r| !r.starts_with("Rwrite")),
        "a reply of the old session: {new_session:?}"
    );
    assert_eq!(
        new_session
            .iter()
            .filter(|r| r.starts_with("Rread"))
            .count(),
        100,
        "{new_session:?}"
    );
}

#[tokio::test]
async fn bind_unix_replaces_only_a_stale_socket() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("precious");
    std::fs::write(&file, b"key material").unwrap();
    let e = ninep::server::bind_unix(&file).await.err().unwrap();
    assert!(e.to_string().contains("not a socket"), "{e}");
    assert_eq!(std::fs::read(&file).unwrap(), b"key material");
    // A stale socket (its listener gone) is replaced; a live one is not.
    let sock = dir.path().join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let live = ninep::server::bind_unix(&sock).await.unwrap();
    let e = ninep::server::bind_unix(&sock).await.err().unwrap();
    assert!(e.to_string().contains("already listening"), "{e}");
    drop(live);
}

#[tokio::test]
async fn a_connection_that_does_not_attach_in_time_is_closed() {
    let limits = Limits {
        attach_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut idle = srv.raw().await;
    idle.version(8192).await;
    let mut attached = srv.raw().await;
    attached.version(8192).await;
    attached.attach(0).await;
    assert!(idle.closed().await, "no attach: closed");
    tokio::time::sleep(Duration::from_millis(400)).await;
    attached.send(9, Tstat { fid: 0 }).await;
    assert!(attached.recv_text().await.starts_with("Rstat tag 9"));
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

#[tokio::test]
async fn before_attach_a_connection_gets_a_handful_of_requests() {
    let limits = Limits {
        max_requests_before_attach: 6,
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    for tag in 0..5 {
        c.send(tag, Tstat { fid: 0 }).await;
        assert_eq!(
            c.recv_text().await,
            format!("Rerror tag {tag} ename 'unknown fid'")
        );
    }
    c.send(9, Tstat { fid: 0 }).await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 9 ename 'more than 6 requests before a successful attach'"
    );
    assert!(c.closed().await);
    // Once attached, a connection is not counted any more.
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    for tag in 0..20 {
        c.send(tag, Tstat { fid: 0 }).await;
        assert!(c.recv_text().await.starts_with(&format!("Rstat tag {tag}")));
    }
}

#[tokio::test]
async fn a_principal_that_does_not_read_its_replies_stalls_only_itself() {
    let limits = Limits {
        max_outstanding: 16,
        max_outstanding_per_principal: 32,
        ..Limits::default()
    };
    let (fs, _gate) = seeded();
    let server = Server::new(fs, limits);
    let mut flood = connect_as(&server, 1001);
    flood.version(8192).await;
    flood.attach(0).await;
    flood.open(1, "8k").await;
    let mut same = connect_as(&server, 1001);
    same.version(8192).await;
    same.attach(0).await;
    // Far more 8 KiB replies than the socket buffer, the window and the pool hold, and
    // none of them read.
    let n = 200;
    for tag in 0..n {
        flood
            .send(
                tag,
                Tread {
                    fid: 1,
                    offset: 0,
                    count: 8000,
                },
            )
            .await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // The flooder's pool is spent: its other connection waits...
    same.send(5, Tstat { fid: 0 }).await;
    // (Nothing arrives, so nothing of a reply is lost when the wait is given up.)
    assert!(
        tokio::time::timeout(Duration::from_millis(300), same.recv())
            .await
            .is_err(),
        "the flood did not spend its principal's pool"
    );
    // ...and another principal is served as if nothing happened.
    let mut other = connect_as(&server, 1002);
    other.version(8192).await;
    other.attach(0).await;
    other.open(1, "8k").await;
    other.send(4, read(1)).await;
    assert_eq!(other.recv_text().await, "Rread tag 4 data <100 bytes>");
    // Once the flooder reads its replies, its other connection goes on.
    for _ in 0..n {
        flood.recv().await.expect("a reply to the flood");
    }
    assert!(same.recv_text().await.starts_with("Rstat tag 5"));
}

/// The counters a metrics endpoint reads: requests, errors, open fids and connections,
/// as they happen.
#[tokio::test]
async fn the_server_counts_what_it_does() {
    let s = TestServer::start(Limits::default()).await;
    let before = s.server.stats();
    assert_eq!(before.open_fids, 0);
    let client = ninep::client::Client::connect_unix(&s.path).await.unwrap();
    client.version(8192).await.unwrap();
    let root = client.attach("u", "").await.unwrap();
    let file = root.walk(&["one"]).await.unwrap();
    assert!(root.walk(&["nosuch"]).await.is_err());
    let during = s.server.stats();
    assert_eq!(during.open_fids, 2, "{during:?}");
    assert_eq!(during.principal_connections, 1, "{during:?}");
    assert!(during.requests >= before.requests + 4, "{during:?}");
    assert_eq!(during.errors, before.errors + 1, "{during:?}");
    file.clunk().await.unwrap();
    let after = s.server.stats();
    assert_eq!(after.open_fids, 1, "{after:?}");
    drop(root);
    drop(client);
    // The connection's end clunks the rest.
    for _ in 0..100 {
        if s.server.stats().open_fids == 0 && s.server.stats().principal_connections == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let gone = s.server.stats();
    assert_eq!(
        (gone.open_fids, gone.principal_connections),
        (0, 0),
        "{gone:?}"
    );
}
