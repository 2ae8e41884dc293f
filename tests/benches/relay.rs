//! What the relay costs: a read on a held fid over the server's unix socket, over TLS
//! directly, and through `srv-secrets relay` (unix to the relay, TLS from it), at 1 and 64
//! connections; and new connections per second on each (TLS handshakes).
//!
//! One release srv-secrets serving its unix socket and `tls:127.0.0.1:PORT`, one release
//! relay in front of it (`--allow-uid 0`), all on this machine. Each side has 64
//! connections open for the whole run, each with a fid of a 64-byte secret opened and
//! read once; a cell reads on the first 1 or all 64 of them (a task each, one Tread of
//! 4096 bytes at offset 0 after another) for a round's duration. The three sides run one
//! after another in each round, which goes first turning each round, and the table gives
//! each cell's median over the rounds. The sides use a service each (over unix, root
//! attaches it on the service's behalf), so that no certificate's connection cap (64) is
//! shared.
//!
//! New connections: connect, the TLS handshake where there is one (the relay's to the
//! server for a connection through it), Tversion answered, close; one after another, and
//! four at once.
//!
//! `cargo bench -p srv-secrets-tests --bench relay [-- --quick] [-- --rounds N --millis M]`
//! (root). Prints numbers, asserts nothing about them (docs/performance.md).
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ninep::client::{Client, Fid};
use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::pki::Identity;
use srv_secrets_tests::relay::{RelayOptions, TlsServer};

const CONNECTIONS: usize = 64;
const CELLS: [usize; 2] = [1, 64];
const SIDES: [&str; 3] = ["unix", "tls", "relay"];
const VALUE: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Where a side connects.
#[derive(Clone)]
enum Dial {
    Unix(std::path::PathBuf),
    Tls {
        port: u16,
        config: Arc<tls::rustls::ClientConfig>,
    },
}

impl Dial {
    fn tls(t: &TlsServer, who: &Identity) -> Dial {
        let config = tls::client_config(&tls::ClientFiles {
            ca: t.ca.cert(),
            identity: Some((who.cert.clone(), who.key.clone())),
        })
        .unwrap();
        let port = t.addr.rsplit_once(':').unwrap().1.parse().unwrap();
        Dial::Tls { port, config }
    }

    /// A client that has negotiated 9P2000.
    async fn connect(&self) -> Client {
        let client = match self {
            Dial::Unix(path) => Client::over(tokio::net::UnixStream::connect(path).await.unwrap()),
            Dial::Tls { port, config } => {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", *port))
                    .await
                    .unwrap();
                tcp.set_nodelay(true).unwrap();
                let name = tls::server_name("127.0.0.1").unwrap();
                Client::over(tls::connect(config.clone(), name, tcp).await.unwrap())
            }
        };
        client.version(ninep::client::DEFAULT_MSIZE).await.unwrap();
        client
    }
}

/// A side's connections, each with its held fid.
struct Side {
    fids: Vec<Arc<Fid>>,
    _clients: Vec<Client>,
}

async fn open_side(dial: &Dial, aname: &str) -> Side {
    let mut fids = Vec::new();
    let mut clients = Vec::new();
    for _ in 0..CONNECTIONS {
        let client = dial.connect().await;
        let root = client.attach("bench", aname).await.unwrap();
        let mut fid = root.walk(&["secret", "db"]).await.unwrap();
        fid.open(ninep::om::READ).await.unwrap();
        assert_eq!(fid.read(0, 4096).await.unwrap().expose(), VALUE);
        fids.push(Arc::new(fid));
        clients.push(client);
    }
    Side {
        fids,
        _clients: clients,
    }
}

/// Reads per second on the first `conns` fids of `side`, for `round`.
async fn reads(side: &Side, conns: usize, round: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + round;
    let mut tasks = tokio::task::JoinSet::new();
    for fid in side.fids.iter().take(conns) {
        let fid = fid.clone();
        let count = count.clone();
        tasks.spawn(async move {
            let mut n = 0;
            while Instant::now() < deadline {
                let data = fid.read(0, 4096).await.unwrap();
                assert_eq!(data.len(), VALUE.len());
                n += 1;
            }
            count.fetch_add(n, Ordering::Relaxed);
        });
    }
    while tasks.join_next().await.is_some() {}
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// New connections per second to `dial` (connect, handshake, Tversion, close), `at_once`
/// at a time, for `round`.
async fn connections(dial: &Dial, at_once: usize, round: Duration) -> f64 {
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + round;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..at_once {
        let dial = dial.clone();
        let count = count.clone();
        tasks.spawn(async move {
            while Instant::now() < deadline {
                drop(dial.connect().await);
                count.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = arg("--rounds", if quick { 1 } else { 5 });
    let round = Duration::from_millis(arg("--millis", if quick { 500 } else { 1000 }) as u64);
    if !rustix::process::geteuid().is_root() {
        eprintln!("relay: needs root (the unix side is root on the service's behalf); skipped");
        return;
    }
    let mut t = TlsServer::init();
    t.s.env = vec![("RUST_LOG".into(), "warn".into())];
    t.serve();
    let services = [
        "bench-unix",
        "bench-tls",
        "bench-relay",
        "hs-tls",
        "hs-relay",
    ];
    let value = t.s.root.path().join("value");
    std::fs::write(&value, VALUE).unwrap();
    t.s.deploy_ok(&["secret", "set", "db", "--file", value.to_str().unwrap()]);
    for (i, name) in services.iter().enumerate() {
        t.s.add_service(name, 3000 + i as u32, None);
        t.s.deploy_ok(&["secret", "grant", name, "db"]);
    }
    let id = |name: &str| t.client(name, name);
    let (tls_id, relay_id, hs_tls_id, hs_relay_id) = (
        id("bench-tls"),
        id("bench-relay"),
        id("hs-tls"),
        id("hs-relay"),
    );
    let ca = t.ca.cert();
    let start_relay = |name: &str, who: &Identity| {
        let socket = t.s.root.path().join(format!("{name}/9p.sock"));
        RelayOptions {
            connect: &t.addr,
            identity: who,
            ca: &ca,
            socket: &socket,
            uids: &[0],
            extra: &[],
            rust_log: "warn",
        }
        .start(&t.s.root.path().join(format!("{name}.log")))
    };
    let relay = start_relay("relay", &relay_id);
    let hs_relay = start_relay("relay-hs", &hs_relay_id);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dials = [
        Dial::Unix(t.s.socket.clone()),
        Dial::tls(&t, &tls_id),
        Dial::Unix(relay.socket.clone()),
    ];
    let sides: Vec<Side> = runtime.block_on(async {
        vec![
            open_side(&dials[0], "bench-unix").await,
            open_side(&dials[1], "").await,
            open_side(&dials[2], "").await,
        ]
    });

    // samples[cell][side]: reads/s of each round.
    let mut samples = vec![vec![Vec::new(); SIDES.len()]; CELLS.len()];
    let hs_dials = [
        Dial::Unix(t.s.socket.clone()),
        Dial::tls(&t, &hs_tls_id),
        Dial::Unix(hs_relay.socket.clone()),
    ];
    let mut hs = vec![vec![Vec::new(); SIDES.len()]; 2];
    let started = Instant::now();
    for r in 0..rounds {
        for (c, conns) in CELLS.iter().enumerate() {
            for k in 0..SIDES.len() {
                let side = (k + r) % SIDES.len();
                let rate = runtime.block_on(reads(&sides[side], *conns, round));
                samples[c][side].push(rate);
            }
        }
        for (a, at_once) in [1, 4].iter().enumerate() {
            for k in 0..SIDES.len() {
                let side = (k + r) % SIDES.len();
                let rate = runtime.block_on(connections(&hs_dials[side], *at_once, round));
                hs[a][side].push(rate);
            }
        }
    }

    println!(
        "relay: {rounds} rounds of {} ms per cell, interleaved, medians ({:.0} s)",
        round.as_millis(),
        started.elapsed().as_secs_f64()
    );
    println!();
    println!(
        "read on a held fid (a 64-byte secret; Tread 4096 at offset 0, one after another per connection)"
    );
    println!(
        "{:>6}  {:<6}  {:>10}  {:>14}  {:>8}",
        "conns", "side", "reads/s", "us/read/conn", "vs unix"
    );
    for (c, conns) in CELLS.iter().enumerate() {
        let unix = median(samples[c][0].clone()).unwrap();
        for (s, side) in SIDES.iter().enumerate() {
            let rate = median(samples[c][s].clone()).unwrap();
            println!(
                "{conns:>6}  {side:<6}  {rate:>10.0}  {:>14.1}  {:>8.2}",
                *conns as f64 * 1e6 / rate,
                rate / unix
            );
        }
    }
    println!();
    println!("new connections (connect, TLS handshake if any, Tversion, close)");
    println!(
        "{:>8}  {:<6}  {:>10}  {:>8}",
        "at once", "side", "per s", "vs unix"
    );
    for (a, at_once) in [1, 4].iter().enumerate() {
        let unix = median(hs[a][0].clone()).unwrap();
        for (s, side) in SIDES.iter().enumerate() {
            let rate = median(hs[a][s].clone()).unwrap();
            println!(
                "{at_once:>8}  {side:<6}  {rate:>10.0}  {:>8.3}",
                rate / unix
            );
        }
    }
    // The clients go before the relays and the server do.
    drop(sides);
    drop(runtime);
}
