//! Connections whose peer a handshake names (`Server::serve_handshaking`): handshakes run
//! apart, time out, and a flood of them that never finish keeps neither a new handshake
//! nor a unix client from being served. The handshake here is a line naming the peer,
//! a stand-in for TLS that the core cannot tell from it.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

mod common;

use std::time::{Duration, Instant};

use common::{SlowFs, seeded};
use ninep::client::Client;
use ninep::server::{Limits, Peer, Server, Shutdown, ShutdownTrigger, Transport};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

/// Reads `NAME\n` a byte at a time (nothing past it): the peer is certified as NAME. A
/// line `fail` is a refused handshake.
async fn line_handshake(mut stream: TcpStream, addr: String) -> std::io::Result<(TcpStream, Peer)> {
    let mut name = Vec::new();
    loop {
        let b = stream.read_u8().await?;
        if b == b'\n' {
            break;
        }
        name.push(b);
    }
    if name == b"fail" {
        return Err(std::io::Error::other("refused"));
    }
    let peer = Peer {
        transport: Transport::Tls,
        certificate: Some(String::from_utf8_lossy(&name).into_owned()),
        addr,
        ..Peer::default()
    };
    Ok((stream, peer))
}

struct Served {
    tcp: std::net::SocketAddr,
    unix: std::path::PathBuf,
    _dir: tempfile::TempDir,
    _trigger: ShutdownTrigger,
}

async fn serve(limits: Limits) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let unix = dir.path().join("9p.sock");
    let unix_listener = ninep::server::bind_unix(&unix).await.unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tcp = listener.local_addr().unwrap();
    let (fs, _gate): (SlowFs, _) = seeded();
    let server = Server::new(fs, limits);
    let (trigger, shutdown) = Shutdown::new();
    let s = server.clone();
    let sd = shutdown.clone();
    tokio::spawn(async move { s.serve_unix(unix_listener, sd).await.unwrap() });
    tokio::spawn(async move {
        server
            .serve_handshaking(shutdown, || async {
                let (stream, addr) = listener.accept().await?;
                let addr = format!("test:{addr}");
                Ok((line_handshake(stream, addr.clone()), addr))
            })
            .await
            .unwrap()
    });
    Served {
        tcp,
        unix,
        _dir: dir,
        _trigger: trigger,
    }
}

/// Connects, says `name`, and reads a file: served.
async fn handshake_and_read(tcp: std::net::SocketAddr, name: &str) {
    use tokio::io::AsyncWriteExt;
    let mut stream = TcpStream::connect(tcp).await.unwrap();
    stream
        .write_all(format!("{name}\n").as_bytes())
        .await
        .unwrap();
    let client = Client::over(stream);
    client.version(8192).await.unwrap();
    let root = client.attach("t", "").await.unwrap();
    let mut f = root.walk(&["8k"]).await.unwrap();
    f.open(ninep::om::READ).await.unwrap();
    assert_eq!(f.read_all().await.unwrap().len(), 8 << 10);
}

async fn unix_read(path: &std::path::Path) {
    let client = Client::connect_unix(path).await.unwrap();
    let root = client.attach("t", "").await.unwrap();
    let mut f = root.walk(&["8k"]).await.unwrap();
    f.open(ninep::om::READ).await.unwrap();
    assert_eq!(f.read_all().await.unwrap().len(), 8 << 10);
}

/// Whether the server closed `stream` within `within`.
async fn closed(stream: &mut TcpStream, within: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(within, stream.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn a_flood_of_handshakes_that_never_finish_delays_neither_a_new_one_nor_unix() {
    let s = serve(Limits {
        max_handshakes: 8,
        ..Limits::default()
    })
    .await;
    // Far more silent connections than there are handshake slots (and than strangers
    // have): each waits for a name that never comes.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(s.tcp).await.unwrap());
    }
    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(1), unix_read(&s.unix))
        .await
        .expect("a unix client is served within a second");
    tokio::time::timeout(Duration::from_secs(1), handshake_and_read(s.tcp, "admin"))
        .await
        .expect("a new handshake is served within a second");
    assert!(started.elapsed() < Duration::from_secs(2));
    // The oldest of the flood were abandoned for the newer ones: the first is closed.
    assert!(closed(&mut flood[0], Duration::from_secs(1)).await);
}

#[tokio::test]
async fn a_handshake_that_takes_too_long_or_fails_is_closed_and_others_go_on() {
    use tokio::io::AsyncWriteExt;
    let s = serve(Limits {
        handshake_timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let mut slow = TcpStream::connect(s.tcp).await.unwrap();
    slow.write_all(b"half a na").await.unwrap();
    let mut refused = TcpStream::connect(s.tcp).await.unwrap();
    refused.write_all(b"fail\n").await.unwrap();
    assert!(closed(&mut refused, Duration::from_secs(1)).await);
    // While the slow one is still in its handshake, another finishes and is served.
    handshake_and_read(s.tcp, "web").await;
    assert!(closed(&mut slow, Duration::from_secs(2)).await);
}
