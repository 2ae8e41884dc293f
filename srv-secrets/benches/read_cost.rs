//! What reading a large secret in small pieces costs, against the ramfs example serving
//! the same bytes: the read-cost goal of chunked sealing.
//!
//! ```sh
//! cargo bench -p srv-secrets --bench read_cost                 # about a minute
//! cargo bench -p srv-secrets --bench read_cost -- --rounds 3   # quicker
//! cargo bench -p srv-secrets --bench read_cost -- --srv-secrets OTHER/srv-secrets
//! ```
//!
//! Two servers, each in its own process pinned to the same CPU (the client on another):
//!
//! - `srv-secrets`: the real binary on a data directory it made (`srv-secrets init`),
//!   seeded over 9P through `/secrets/ctl` like any client would, so that any build can be
//!   measured (`--srv-secrets`, to compare with an older one). It holds `1m` (1 MiB) and
//!   `small` (16 KiB), granted to service `bench`; the client is the admin attached to
//!   that service's view (aname `bench`), so every read checks the grant and decrypts.
//! - `ramfs`: the ninep server core serving the ramfs (`ninep::ramfs`, the example's
//!   filesystem) with files `1m` and `small` of the same bytes: this binary re-executed
//!   with `--serve-ramfs`.
//!
//! Each workload is one pass of reads on a fid opened once, as a client reading a file
//! does: `1m` in 4 KiB reads (what 9pfuse and `cat` send; 256 reads), `small` in 1-byte
//! reads (`dd bs=1`; 16,384 reads), and, for information, `1m` in 128 KiB reads (the
//! kernel's, at msize). Rounds alternate the servers, first one rotating; the report is
//! the median time per pass, per read, and srv-secrets' over ramfs's. The goal (from the
//! issue): at most 2x ramfs for the 4 KiB and 1-byte workloads.
//!
//! Run without `--bench` (as `cargo test --benches` does), it checks that both servers
//! return the right bytes for each workload and prints `N passed, N failed`.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use ninep::client::{Client, Fid};
// Bytes i of every file: i mod 251, as the ramfs's seeded files.
use ninep::ramfs::pattern;

/// The service whose view the client reads.
const SERVICE: &str = "bench";
/// Its uid: any but root's and the admin's.
const SERVICE_UID: u32 = 3000;
/// The large file, 1 MiB.
const LARGE: (&str, usize) = ("1m", 1 << 20);
/// The file read a byte at a time.
const SMALL: (&str, usize) = ("small", 16 << 10);
/// The goal: srv-secrets' time over ramfs's, at most.
const GOAL: f64 = 2.0;
/// The CPUs: the client's, and the one both servers run on.
const CLIENT_CPU: usize = 0;
const SERVER_CPU: usize = 1;

/// One workload: a file read from start to end in reads of `count` bytes.
#[derive(Clone, Copy)]
struct Workload {
    label: &'static str,
    file: (&'static str, usize),
    count: u32,
    goal: bool,
}

const WORKLOADS: [Workload; 3] = [
    Workload {
        label: "1 MiB in 4 KiB reads",
        file: LARGE,
        count: 4096,
        goal: true,
    },
    Workload {
        label: "16 KiB in 1-byte reads",
        file: SMALL,
        count: 1,
        goal: true,
    },
    Workload {
        label: "1 MiB in 128 KiB reads",
        file: LARGE,
        count: 128 << 10,
        goal: false,
    },
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--serve-ramfs") {
        return match args.get(at + 1) {
            Some(path) => serve_ramfs(Path::new(path)),
            None => ExitCode::from(2),
        };
    }
    let bench = args.iter().any(|a| a == "--bench");
    let rounds = flag(&args, "--rounds").map_or(Ok(if bench { 7 } else { 1 }), |v| v.parse());
    let Ok(rounds) = rounds else {
        eprintln!("read_cost: --rounds wants a number");
        return ExitCode::from(2);
    };
    let program = flag(&args, "--srv-secrets").map_or_else(
        || PathBuf::from(env!("CARGO_BIN_EXE_srv-secrets")),
        PathBuf::from,
    );
    match run(&program, bench, rounds) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("read_cost: {e}");
            ExitCode::FAILURE
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let at = args.iter().position(|a| a == name)?;
    args.get(at + 1).map(String::as_str)
}

/// A server process, killed on drop.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `program` pinned to the servers' CPU when the machine has one to spare.
fn pinned(program: &Path, pin: bool) -> Command {
    if pin {
        let mut c = Command::new("taskset");
        c.arg("-c").arg(SERVER_CPU.to_string()).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn wait_for(socket: &Path, server: &mut Server) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        if let Ok(Some(status)) = server.0.try_wait() {
            return Err(format!("a server exited with {status}"));
        }
        if Instant::now() > deadline {
            return Err(format!(
                "nothing listens on {} after 30 s",
                socket.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

fn run(program: &Path, bench: bool, rounds: usize) -> Result<ExitCode, String> {
    let pin = bench && std::thread::available_parallelism().is_ok_and(|n| n.get() > SERVER_CPU);
    let work = tempfile::tempdir().map_err(|e| format!("work directory: {e}"))?;
    let data = work.path().join("data");
    let srv_sock = work.path().join("srv-secrets.sock");
    let ram_sock = work.path().join("ramfs.sock");
    let init = Command::new(program)
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    if !init.status.success() {
        return Err(format!(
            "init: {}",
            String::from_utf8_lossy(&init.stderr).trim()
        ));
    }
    let mut srv = Server(
        pinned(program, pin)
            .arg("serve")
            .arg("--data")
            .arg(&data)
            .arg("--listen")
            .arg(format!("unix:{}", srv_sock.display()))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("running {}: {e}", program.display()))?,
    );
    wait_for(&srv_sock, &mut srv)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut ram = Server(
        pinned(&exe, pin)
            .arg("--serve-ramfs")
            .arg(&ram_sock)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| format!("running the ramfs server: {e}"))?,
    );
    if let Some(out) = ram.0.stdout.take() {
        let mut line = String::new();
        let _ = BufReader::new(out).read_line(&mut line);
    }
    wait_for(&ram_sock, &mut ram)?;
    if pin {
        let mut set = rustix::thread::CpuSet::new();
        set.set(CLIENT_CPU);
        rustix::thread::sched_setaffinity(None, &set).map_err(|e| format!("pinning: {e}"))?;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        seed(&srv_sock).await?;
        let servers = [
            (
                "srv-secrets",
                open_files(&srv_sock, SERVICE, "secret").await?,
            ),
            ("ramfs", open_files(&ram_sock, "", "").await?),
        ];
        if bench {
            measure(&servers, rounds, pin, program).await
        } else {
            check(&servers).await
        }
    })
}

/// Seeds srv-secrets through its ctl file, as the admin (who ran init: this uid).
async fn seed(socket: &Path) -> Result<(), String> {
    let client = connect(socket).await?;
    let root = client
        .attach("admin", "")
        .await
        .map_err(|e| format!("attach: {e}"))?;
    let mut ctl = root
        .walk(&["secrets", "ctl"])
        .await
        .map_err(|e| format!("walk ctl: {e}"))?;
    ctl.open(ninep::om::RDWR)
        .await
        .map_err(|e| format!("open ctl: {e}"))?;
    let mut commands = format!("service {SERVICE} uid {SERVICE_UID}\n").into_bytes();
    for (name, len) in [LARGE, SMALL] {
        commands.extend_from_slice(format!("set {name} {{{len}}}\n").as_bytes());
        commands.extend_from_slice(&pattern(len));
        commands.extend_from_slice(format!("\ngrant {SERVICE} {name}\n").as_bytes());
    }
    let chunk = ctl.io_size() as usize;
    ctl.write_all_chunked(0, &commands, chunk)
        .await
        .map_err(|e| format!("seeding through ctl: {e}"))?;
    ctl.clunk().await.map_err(|e| format!("clunk ctl: {e}"))
}

async fn connect(socket: &Path) -> Result<Client, String> {
    let client = Client::connect_unix(socket)
        .await
        .map_err(|e| format!("connecting to {}: {e}", socket.display()))?;
    client
        .version(ninep::server::Limits::default().max_msize)
        .await
        .map_err(|e| format!("version: {e}"))?;
    Ok(client)
}

/// Both files of a server, opened for reading on one connection.
async fn open_files(socket: &Path, aname: &str, dir: &str) -> Result<Vec<Fid>, String> {
    let client = connect(socket).await?;
    let root = client
        .attach(SERVICE, aname)
        .await
        .map_err(|e| format!("attach {aname:?}: {e}"))?;
    let mut fids = Vec::new();
    for (name, _) in [LARGE, SMALL] {
        let path: Vec<&str> = [dir, name].into_iter().filter(|p| !p.is_empty()).collect();
        let mut fid = root
            .walk(&path)
            .await
            .map_err(|e| format!("walk {name}: {e}"))?;
        fid.open(ninep::om::READ)
            .await
            .map_err(|e| format!("open {name}: {e}"))?;
        fids.push(fid);
    }
    Ok(fids)
}

fn fid_of(fids: &[Fid], w: Workload) -> &Fid {
    if w.file == LARGE { &fids[0] } else { &fids[1] }
}

/// One pass of `w` on `fid`; returns the bytes read.
async fn pass(fid: &Fid, w: Workload) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(w.file.1);
    let mut offset = 0u64;
    while (offset as usize) < w.file.1 {
        let data = fid
            .read(offset, w.count)
            .await
            .map_err(|e| format!("read at {offset}: {e}"))?;
        if data.is_empty() {
            return Err(format!("read at {offset}: unexpected end"));
        }
        offset += data.len() as u64;
        out.extend_from_slice(data.expose());
    }
    Ok(out)
}

/// The test mode: every workload returns the file's bytes on both servers.
async fn check(servers: &[(&str, Vec<Fid>); 2]) -> Result<ExitCode, String> {
    let (mut passed, mut failed) = (0, 0);
    for w in WORKLOADS {
        for (name, fids) in servers {
            match pass(fid_of(fids, w), w).await {
                Ok(bytes) if bytes == pattern(w.file.1) => passed += 1,
                Ok(_) => {
                    eprintln!("FAILED: {name}, {}: wrong bytes", w.label);
                    failed += 1;
                }
                Err(e) => {
                    eprintln!("FAILED: {name}, {}: {e}", w.label);
                    failed += 1;
                }
            }
        }
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// The bench: `rounds` rounds per workload, servers alternating; each round is as many
/// passes as fill about 0.3 s on the slower server.
async fn measure(
    servers: &[(&str, Vec<Fid>); 2],
    rounds: usize,
    pinned: bool,
    program: &Path,
) -> Result<ExitCode, String> {
    println!(
        "read_cost: {} ({}), {rounds} rounds per workload, median per pass",
        program.display(),
        if pinned {
            format!("servers on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}")
        } else {
            "unpinned".to_string()
        }
    );
    println!(
        "{:<24} {:>14} {:>14} {:>10} {:>10} {:>7}",
        "workload", "srv-secrets", "ramfs", "srv/read", "ramfs/read", "ratio"
    );
    let mut met = true;
    for w in WORKLOADS {
        let reads = w.file.1.div_ceil(w.count as usize) as u32;
        // Warm up, and size the rounds.
        let started = Instant::now();
        for (_, fids) in servers {
            pass(fid_of(fids, w), w).await?;
        }
        let passes = (Duration::from_millis(300).as_secs_f64() / started.elapsed().as_secs_f64())
            .ceil()
            .max(1.0) as u32;
        let mut times = [Vec::new(), Vec::new()];
        for round in 0..rounds {
            for k in 0..2 {
                let i = (round + k) % 2;
                let fid = fid_of(&servers[i].1, w);
                let t = Instant::now();
                for _ in 0..passes {
                    pass(fid, w).await?;
                }
                times[i].push(t.elapsed() / passes);
            }
        }
        let [srv, ram] = times.map(median);
        let ratio = srv.as_secs_f64() / ram.as_secs_f64();
        let per_read = |d: Duration| d.as_secs_f64() * 1e6 / f64::from(reads);
        let verdict = match (w.goal, ratio <= GOAL) {
            (false, _) => "(no goal)",
            (true, true) => "met",
            (true, false) => "MISSED",
        };
        met &= !w.goal || ratio <= GOAL;
        println!(
            "{:<24} {:>11.2} ms {:>11.2} ms {:>7.1} us {:>7.1} us {:>6.2}x {verdict}",
            w.label,
            srv.as_secs_f64() * 1e3,
            ram.as_secs_f64() * 1e3,
            per_read(srv),
            per_read(ram),
            ratio,
        );
    }
    println!(
        "goal: srv-secrets at most {GOAL}x ramfs for the 4 KiB and 1-byte workloads: {}",
        if met { "met" } else { "MISSED" }
    );
    Ok(ExitCode::SUCCESS)
}

/// `--serve-ramfs PATH`: the ramfs example with the two files, on a unix socket, until
/// stdin closes (the bench that started this process is gone).
fn serve_ramfs(path: &Path) -> ExitCode {
    let Ok(rt) = tokio::runtime::Runtime::new() else {
        return ExitCode::FAILURE;
    };
    rt.block_on(async {
        let ramfs = ninep::ramfs::RamFs::new();
        for (name, len) in [LARGE, SMALL] {
            ramfs.add_file(name, pattern(len));
        }
        let server = ninep::server::Server::new(ramfs, ninep::server::Limits::default());
        let (trigger, shutdown) = ninep::server::Shutdown::new();
        let Ok(listener) = ninep::server::bind_unix(path).await else {
            return ExitCode::FAILURE;
        };
        println!("ready");
        std::thread::spawn(move || {
            let mut sink = [0u8; 64];
            while matches!(std::io::stdin().read(&mut sink), Ok(n) if n > 0) {}
            trigger.trigger();
        });
        match server.serve_unix(listener, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(_) => ExitCode::FAILURE,
        }
    })
}
