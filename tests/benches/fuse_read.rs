//! Reads through `deploy mount` (FUSE) against the same reads with the 9P client directly.
//!
//! One release srv-secrets, one service `web` with a 64-byte and a 300 KiB secret, and its
//! view mounted by `deploy mount web DIR --foreground` as root. Each cell runs one side for
//! a round's duration, then the other (which goes first alternates), for every round:
//!
//! - `read-held`: a file opened once per reader, then `pread(fd, 0)` of the whole file;
//!   directly, a fid opened once per reader, then Treads of the whole file.
//! - `open-read-close`: open, read to the end, close; directly, Twalk `secret/NAME`,
//!   Topen, Treads to the end, Tclunk.
//!
//! At 1 and 16 readers: threads for FUSE (each read(2) is its own syscall), tasks on one
//! connection for the direct client (as the mount itself uses one connection). Prints the
//! median ops/s of each side, their ratio, and the FUSE side's p99 latency.
//!
//! `cargo bench -p srv-secrets-tests --bench fuse_read [-- --quick]` (root, /dev/fuse).
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ninep::client::Client;
use ninep::om;
use srv_secrets_tests::bench::median;
use srv_secrets_tests::harness::{SecretsServer, bins};

const SIZES: [(&str, usize); 2] = [("small", 64), ("big", 300 * 1024)];
const READERS: [usize; 2] = [1, 16];
const WORKLOADS: [&str; 2] = ["read-held", "open-read-close"];

struct Cell {
    ops: u64,
    secs: f64,
    latencies: Vec<Duration>,
}

impl Cell {
    fn rate(&self) -> f64 {
        self.ops as f64 / self.secs
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, round) = if quick {
        (1, Duration::from_millis(500))
    } else {
        (3, Duration::from_secs(1))
    };
    if !rustix::process::geteuid().is_root() || !Path::new("/dev/fuse").exists() {
        eprintln!("fuse_read: needs root and /dev/fuse; skipped");
        return;
    }
    let mut s = SecretsServer::init();
    s.env = vec![("RUST_LOG".into(), "warn".into())];
    s.serve();
    s.add_service("web", 1001, None);
    for (name, size) in SIZES {
        let value: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
        let path = s.root.path().join("value");
        std::fs::write(&path, &value).unwrap();
        s.deploy_ok(&["secret", "set", name, "--file", path.to_str().unwrap()]);
        s.deploy_ok(&["secret", "grant", "web", name]);
    }
    let dir = s.root.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    let _mount = MountGuard::start(&s, &dir);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = runtime.block_on(Client::connect_unix(&s.socket)).unwrap();

    println!(
        "{:<16} {:>5} {:>7} {:>12} {:>12} {:>8} {:>12} {:>14}",
        "workload",
        "size",
        "readers",
        "fuse ops/s",
        "9p ops/s",
        "fuse/9p",
        "fuse MB/s",
        "fuse p99 µs"
    );
    for workload in WORKLOADS {
        for (name, size) in SIZES {
            for readers in READERS {
                let mut fuse = Vec::new();
                let mut direct = Vec::new();
                for r in 0..rounds {
                    let mut sides = [true, false];
                    if r % 2 == 1 {
                        sides.reverse();
                    }
                    for through_fuse in sides {
                        if through_fuse {
                            let path = dir.join("secret").join(name);
                            fuse.push(fuse_cell(workload, &path, size, readers, round));
                        } else {
                            direct.push(runtime.block_on(direct_cell(
                                &client, workload, name, size, readers, round,
                            )));
                        }
                    }
                }
                let fuse_rate = median(fuse.iter().map(Cell::rate).collect()).unwrap();
                let direct_rate = median(direct.iter().map(Cell::rate).collect()).unwrap();
                let mut lat: Vec<Duration> = fuse
                    .iter()
                    .flat_map(|c| c.latencies.iter().copied())
                    .collect();
                lat.sort();
                let p99 = lat.get(lat.len() * 99 / 100).copied().unwrap_or_default();
                println!(
                    "{:<16} {:>5} {:>7} {:>12.0} {:>12.0} {:>8.2} {:>12.1} {:>14}",
                    workload,
                    name,
                    readers,
                    fuse_rate,
                    direct_rate,
                    fuse_rate / direct_rate,
                    fuse_rate * size as f64 / 1e6,
                    p99.as_micros()
                );
            }
        }
    }
}

/// `readers` threads reading `path` through the mount for `round`.
fn fuse_cell(workload: &str, path: &Path, size: usize, readers: usize, round: Duration) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..readers)
        .map(|_| {
            let (path, stop, held) = (path.to_path_buf(), stop.clone(), workload == "read-held");
            std::thread::spawn(move || {
                let mut buf = vec![0u8; size + 1];
                let file = std::fs::File::open(&path).unwrap();
                let mut lat = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let n = if held {
                        file.read_at(&mut buf, 0).unwrap()
                    } else {
                        let mut f = std::fs::File::open(&path).unwrap();
                        let mut n = 0;
                        loop {
                            let got = f.read(&mut buf[n..]).unwrap();
                            if got == 0 {
                                break n;
                            }
                            n += got;
                        }
                    };
                    assert_eq!(n, size);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(round);
    stop.store(true, Ordering::Relaxed);
    let latencies: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    Cell {
        ops: latencies.len() as u64,
        secs: started.elapsed().as_secs_f64(),
        latencies,
    }
}

/// `readers` tasks reading secret `name` with the 9P client on one connection.
async fn direct_cell(
    client: &Client,
    workload: &str,
    name: &str,
    size: usize,
    readers: usize,
    round: Duration,
) -> Cell {
    let root = Arc::new(client.attach("bench", "web").await.unwrap());
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..readers)
        .map(|_| {
            let (root, stop, name) = (root.clone(), stop.clone(), name.to_string());
            let held = workload == "read-held";
            tokio::spawn(async move {
                let mut held_fid = root.walk(&["secret", &name]).await.unwrap();
                held_fid.open(om::READ).await.unwrap();
                let mut ops = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let n = if held {
                        read_whole(&held_fid).await
                    } else {
                        let mut fid = root.walk(&["secret", &name]).await.unwrap();
                        fid.open(om::READ).await.unwrap();
                        let n = read_whole(&fid).await;
                        fid.clunk().await.unwrap();
                        n
                    };
                    assert_eq!(n, size);
                    ops += 1;
                }
                ops
            })
        })
        .collect();
    tokio::time::sleep(round).await;
    stop.store(true, Ordering::Relaxed);
    let mut ops = 0;
    for t in tasks {
        ops += t.await.unwrap();
    }
    Cell {
        ops,
        secs: started.elapsed().as_secs_f64(),
        latencies: Vec::new(),
    }
}

/// Treads of one iounit from offset 0 until a short one, as a plain client reads a file.
async fn read_whole(fid: &ninep::client::Fid) -> usize {
    let iounit = fid.client().iounit();
    let mut n = 0usize;
    loop {
        let data = fid.read(n as u64, iounit).await.unwrap();
        n += data.len();
        if data.len() < iounit as usize {
            return n;
        }
    }
}

/// `deploy mount web DIR --foreground`, stopped with SIGTERM at the end.
struct MountGuard {
    child: Child,
    _dir: PathBuf,
}

impl MountGuard {
    fn start(s: &SecretsServer, dir: &Path) -> MountGuard {
        let mut child = Command::new(&bins().deploy)
            .arg("--addr")
            .arg(s.addr())
            .args(["mount", "web"])
            .arg(dir)
            .arg("--foreground")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("mounted "), "deploy mount: {line}");
        MountGuard {
            child,
            _dir: dir.to_path_buf(),
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let _ = self.child.wait();
    }
}
