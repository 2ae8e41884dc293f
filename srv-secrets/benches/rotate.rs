//! rotate-key of many secrets through the real server, while services keep reading.
//!
//! ```sh
//! cargo bench -p srv-secrets --bench rotate                  # 100,000 secrets
//! cargo bench -p srv-secrets --bench rotate -- 20000 16      # secrets, reader connections
//! ```
//!
//! The data directory is seeded through the vault in one transaction per 10,000 secrets
//! (a bulk import, not what is measured), then `srv-secrets serve` runs as its own
//! process. Reader connections attach as the admin on a service's behalf and read
//! their secret on a held fid in a closed loop; meanwhile `rotate-key` is written to
//! ctl. Printed: the rotation's wall time as ctl reports it, and the readers' latency
//! before and during the rotation (p50, p99, max).

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ninep::client::Client;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn summary(label: &str, mut v: Vec<Duration>, over: Duration) {
    v.sort();
    println!(
        "{label:<22} {:>9} reads {:>9.0}/s  p50 {:>8.1?}  p99 {:>8.1?}  max {:>8.1?}",
        v.len(),
        v.len() as f64 / over.as_secs_f64(),
        percentile(&v, 0.5),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or_default()
    );
}

/// Readers on `conns` connections, each reading its own secret on a held fid until
/// `stop`; returns every read's latency with the time it started.
async fn readers(socket: &str, conns: usize, stop: Arc<AtomicBool>) -> Vec<(Instant, Duration)> {
    let mut tasks = Vec::new();
    for c in 0..conns {
        let socket = socket.to_string();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let client = Client::connect_unix(&socket).await.expect("connect");
            let view = client
                .attach("bench", "bench")
                .await
                .expect("attach the view");
            let name = format!("s{c}");
            let mut f = view.walk(&["secret", &name]).await.expect("walk");
            f.open(ninep::om::READ).await.expect("open");
            let mut lat = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let d = f.read(0, 256).await.expect("read");
                assert!(!d.is_empty());
                lat.push((t, t.elapsed()));
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("reader"));
    }
    all
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let conns: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = dir.path().join("data");
    let socket = dir.path().join("9p.sock");
    let uid = rustix::process::geteuid().as_raw();
    secrets::Vault::init(&data, None, uid).expect("init");
    {
        let vault = secrets::Vault::open(&data, None).expect("open");
        let t = Instant::now();
        let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
        for chunk in names.chunks(10_000) {
            vault
                .set_many(
                    chunk
                        .iter()
                        .map(|name| (name.as_str(), format!("value of {name}"))),
                )
                .expect("seed");
        }
        vault.service_set_uid("bench", 3000).expect("service");
        for c in 0..conns {
            vault.grant("bench", &format!("s{c}")).expect("grant");
        }
        println!(
            "seeded {n} secrets in {:.2?} (bulk import, not measured)",
            t.elapsed()
        );
    }
    let mut server = Command::new(env!("CARGO_BIN_EXE_srv-secrets"))
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("unix:{}", socket.display()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("srv-secrets serve");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let sock = socket.display().to_string();
    rt.block_on(async move {
        // Before: a second of reads with no rotation, for comparison.
        let stop = Arc::new(AtomicBool::new(false));
        let r = tokio::spawn(readers_owned(sock.clone(), conns, stop.clone()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        stop.store(true, Ordering::Relaxed);
        let before: Vec<Duration> = r
            .await
            .expect("readers")
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        summary("reads, no rotation", before, Duration::from_secs(1));

        let stop = Arc::new(AtomicBool::new(false));
        let r = tokio::spawn(readers_owned(sock.clone(), conns, stop.clone()));
        tokio::time::sleep(Duration::from_millis(200)).await;
        let client = Client::connect_unix(&sock).await.expect("admin connect");
        let admin = client.attach("bench", "").await.expect("admin attach");
        let mut ctl = admin.walk(&["secrets", "ctl"]).await.expect("ctl");
        ctl.open(ninep::om::WRITE).await.expect("open ctl");
        let t0 = Instant::now();
        ctl.write(0, b"rotate-key\n").await.expect("rotate-key");
        let rotation = t0.elapsed();
        let t1 = Instant::now();
        stop.store(true, Ordering::Relaxed);
        let during: Vec<Duration> = r
            .await
            .expect("readers")
            .into_iter()
            .filter(|(t, _)| *t >= t0 && *t <= t1)
            .map(|(_, d)| d)
            .collect();
        println!("rotate-key of {n} secrets: {rotation:.2?} (goal: under 5 s)");
        summary("reads during rotation", during, rotation);
    });
    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(server.id() as i32).expect("pid"),
        rustix::process::Signal::TERM,
    );
    let _ = server.wait();
}

async fn readers_owned(
    socket: String,
    conns: usize,
    stop: Arc<AtomicBool>,
) -> Vec<(Instant, Duration)> {
    readers(&socket, conns, stop).await
}
