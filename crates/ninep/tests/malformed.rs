//! Hostile input over a real socket. After each case another connection must still be
//! served: one bad client never harms another.

mod common;

use common::TestServer;
use ninep::server::Limits;
use ninep::{Tstat, Twalk};

/// An 18-byte Tversion frame whose version string claims 300 bytes.
fn bad_string_length() -> Vec<u8> {
    let mut b = vec![18, 0, 0, 0, 100, 0xff, 0xff];
    b.extend_from_slice(&8192u32.to_le_bytes());
    b.extend_from_slice(&300u16.to_le_bytes());
    b.extend_from_slice(b"9P200");
    b
}

#[tokio::test]
async fn a_truncated_message_then_hangup() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.send_bytes(&[100, 0, 0, 0, 124, 1, 0, 0, 0, 0]).await;
    tokio::io::AsyncWriteExt::shutdown(&mut c.0).await.ok();
    assert!(c.closed().await);
    srv.still_serves().await;
}

#[tokio::test]
async fn an_oversized_size_field() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.send_bytes(&[0xff, 0xff, 0xff, 0xff, 116, 4, 0]).await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 4 ename 'message of 4294967295 bytes is larger than msize 8192'"
    );
    assert!(c.closed().await);
    srv.still_serves().await;
}

#[tokio::test]
async fn a_zero_length_message() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.send_bytes(&[0, 0, 0, 0]).await;
    assert!(c.closed().await);
    srv.still_serves().await;
}

#[tokio::test]
async fn garbage() {
    // Junk may declare a frame longer than what follows: the stall timeout ends it.
    let limits = Limits {
        stall_timeout: std::time::Duration::from_millis(500),
        ..Limits::default()
    };
    let srv = TestServer::start(limits).await;
    let mut c = srv.raw().await;
    // Deterministic junk: a linear congruential sequence.
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    c.send_bytes(&junk).await;
    // Frames the junk happens to delimit are answered (every answer must decode, which
    // recv checks); the rest ends the connection, at once or at the stall timeout.
    let mut answers = 0;
    while c.recv().await.is_some() {
        answers += 1;
        assert!(answers < 4096, "connection never ends");
    }
    srv.still_serves().await;
}

#[tokio::test]
async fn a_bad_string_length_gets_an_error_and_the_connection_goes_on() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.send_bytes(&bad_string_length()).await;
    assert_eq!(
        c.recv_text().await,
        "Rerror tag 65535 ename 'bad message: message truncated: a field runs past the end of the frame'"
    );
    c.version(8192).await;
    c.attach(0).await;
    srv.still_serves().await;
}

#[tokio::test]
async fn unknown_types_and_replies_sent_as_requests() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    for (ty, tag) in [(99u8, 1u16), (101, 2), (106, 3), (107, 4), (200, 5)] {
        c.send_bytes(&[7, 0, 0, 0, ty, tag as u8, 0]).await;
        assert_eq!(
            c.recv_text().await,
            format!("Rerror tag {tag} ename 'bad message: unknown message type {ty}'")
        );
    }
    c.attach(0).await;
    srv.still_serves().await;
}

#[tokio::test]
async fn ten_thousand_fids() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    let (mut ok, mut refused) = (0, 0);
    for window in (1..=10_000u32).collect::<Vec<_>>().chunks(200) {
        for &fid in window {
            c.send(
                (fid % 60_000) as u16,
                Twalk {
                    fid: 0,
                    newfid: fid,
                    wnames: vec![],
                },
            )
            .await;
        }
        for _ in window {
            let r = c.recv_text().await;
            if r.starts_with("Rwalk") {
                ok += 1;
            } else {
                assert!(r.ends_with("'too many fids on this connection'"), "{r}");
                refused += 1;
            }
        }
    }
    // The root fid plus 4095 clones fill the default limit of 4096.
    assert_eq!(ok, 4095);
    assert_eq!(refused, 10_000 - 4095);
    srv.still_serves().await;
}

#[tokio::test]
async fn ten_thousand_tags_at_once() {
    let srv = TestServer::start(Limits::default()).await;
    let mut c = srv.raw().await;
    c.version(8192).await;
    c.attach(0).await;
    let mut all = Vec::new();
    for tag in 0..10_000u16 {
        all.extend_from_slice(
            &ninep::Tframe {
                tag,
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
    let (mut ok, mut refused) = (0, 0);
    for _ in 0..10_000 {
        use tokio::io::AsyncReadExt;
        let mut h = [0u8; 4];
        rd.read_exact(&mut h).await.unwrap();
        let mut frame = vec![0u8; u32::from_le_bytes(h) as usize];
        frame[..4].copy_from_slice(&h);
        rd.read_exact(&mut frame[4..]).await.unwrap();
        let r = ninep::Rframe::decode(&frame).unwrap().to_string();
        if r.starts_with("Rstat") {
            ok += 1;
        } else {
            assert!(
                r.ends_with("'too many outstanding requests on this connection'"),
                "{r}"
            );
            refused += 1;
        }
    }
    writer.await.unwrap();
    assert_eq!(ok + refused, 10_000);
    assert!(ok >= 256, "at least the outstanding limit is served: {ok}");
    srv.still_serves().await;
}
