//! Load benchmark of srv-secrets against the ramfs example: what the grant check and
//! the decryption cost a service that reads its secret.
//!
//! ```sh
//! cargo bench -p srv-secrets --bench load                # full run, about 2 minutes
//! cargo bench -p srv-secrets --bench load -- --quick     # about 15 s
//! cargo bench -p srv-secrets --bench load -- --conns 64 --workloads read-held --rounds 9
//! cargo bench -p srv-secrets --bench load -- --srv-secrets OTHER/srv-secrets  # another build
//! ```
//!
//! The client, the workloads, the CPU pinning, the interleaved schedule and most of the
//! arguments are those of the ninep load bench (`crates/ninep/benches/load`), from the
//! `loadgen` crate both share; its doc and docs/performance.md say what they measure. Here two servers run in their own processes, each pinned to the server
//! CPU:
//!
//! - `srv-secrets`: the real binary (`srv-secrets serve --data DIR --listen unix:PATH`,
//!   `RUST_LOG=warn`) on a data directory seeded through the vault: a 64-byte secret
//!   `x` granted to a service `bench`. The client is the admin (it ran init) and
//!   attaches with aname `bench`, so it gets that service's view and reads
//!   `secret/x`: every walk, open and read goes through the grant check, and every
//!   read decrypts.
//! - `ramfs`: the ninep server core serving `ninep::ramfs` with one 64-byte file,
//!   `file`: this binary re-executed with `--serve ours`, as in the ninep bench.
//!
//! Only the unix socket is measured: srv-secrets serves nothing else. The goal (from
//! the issue) is srv-secrets at 80% of ramfs's ops/s or more in each read-held and
//! open-read-clunk cell. Run without `--bench` (as `cargo test --benches` does), it
//! runs its checks and a short smoke run instead, and prints `N passed, N failed`.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;

use loadgen::client;
use loadgen::proto::{self, Dialect, FILE_SIZE, Target, Workload};
use loadgen::schedule::{
    self, Endpoint, LoadArgs, Results, Schedule, Transport, bench_mode, median_at, paired_summary,
    smoke_check, verdict,
};
use loadgen::servers::{self, Kind, Running, Workdir};

/// The service whose view the client attaches to.
const SERVICE: &str = "bench";
/// Its uid: any but the admin's and root's (the client is the admin, on its behalf).
const SERVICE_UID: u32 = 3000;
/// The secret it reads.
const SECRET: &str = "x";
/// A secret it is not granted, for the test mode's check that grants are enforced.
const UNGRANTED: &str = "y";
/// The goal: srv-secrets' ops/s over ramfs's, per cell.
const GOAL: f64 = 0.8;
/// The servers, in the order of the endpoints and of every report.
const NAMES: [&str; 2] = ["srv-secrets", "ramfs"];
/// Index of srv-secrets in [`NAMES`].
const SRV: usize = 0;
/// Index of ramfs in [`NAMES`].
const RAMFS: usize = 1;

/// Load benchmark of srv-secrets against the ramfs example (unix socket only).
#[derive(Parser, Debug)]
// --server-cpu's help, in the words of a bench with two servers.
#[command(mut_arg("server_cpu", |a| a.help("The CPU both servers run on (with taskset)")))]
struct Args {
    /// A short run: one round of 0.5 s per cell and server (about 15 s in all).
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    load: LoadArgs,
    /// The srv-secrets binary to measure, to compare builds [default: the one cargo
    /// built with this bench].
    #[arg(long)]
    srv_secrets: Option<PathBuf>,
}

fn main() -> ExitCode {
    if !bench_mode() {
        return test_mode();
    }
    let args = Args::parse();
    if let Some(code) = args.load.serve() {
        return code;
    }
    let schedule = args.load.schedule(vec![Transport::Unix], args.quick);
    if let Err(e) = args.load.pin_client() {
        eprintln!("load: {e}");
        return ExitCode::FAILURE;
    }
    let program = args
        .srv_secrets
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_srv-secrets")));
    let server_cpu = args.load.server_cpu();
    let results = match start_and_run(&schedule, &program, server_cpu, true, |_| Ok(())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ratios = [(SRV, RAMFS)];
    let out = args.load.output(&schedule, &NAMES, &results, &ratios, || {
        goals(&schedule, &results)
    });
    print!("{out}");
    ExitCode::SUCCESS
}

/// srv-secrets serving a seeded data directory, killed on drop.
struct SrvSecrets {
    endpoint: Endpoint,
    child: Child,
}

impl Drop for SrvSecrets {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The secret's value: [`FILE_SIZE`] bytes, like ramfs's file.
fn value() -> Vec<u8> {
    (0..FILE_SIZE as usize)
        .map(|i| b'a' + (i % 26) as u8)
        .collect()
}

/// Makes a data directory in `dir` whose admin is this process's uid, holding
/// [`SECRET`] granted to [`SERVICE`] and [`UNGRANTED`] granted to nobody.
fn seed(data: &Path) -> Result<(), secrets::Error> {
    let uid = rustix::process::geteuid().as_raw();
    secrets::Vault::init(data, None, uid)?;
    // Dropped at the end of this function: the server locks the directory.
    let vault = secrets::Vault::open(data, None)?;
    vault.set_many([(SECRET, value()), (UNGRANTED, value())])?;
    vault.service_set_uid(SERVICE, SERVICE_UID)?;
    vault.grant(SERVICE, SECRET)?;
    Ok(())
}

/// Seeds a data directory in `work` and starts `program serve` on it, pinned to `cpu`
/// if asked; waits until it accepts connections.
fn start_srv_secrets(
    work: &Workdir,
    program: &Path,
    cpu: Option<usize>,
) -> Result<SrvSecrets, String> {
    let data = work.dir.path().join("data");
    let unix = work.dir.path().join("srv-secrets.sock");
    let log_path = work.dir.path().join("srv-secrets.log");
    seed(&data).map_err(|e| format!("seeding {}: {e}", data.display()))?;
    let log = std::fs::File::create(&log_path).map_err(|e| format!("log: {e}"))?;
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(program);
            c
        }
        None => Command::new(program),
    };
    let child = cmd
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("unix:{}", unix.display()))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("running {}: {e}", program.display()))?;
    // taskset execs the server, so the child's pid is the server's.
    let pid = child.id();
    let mut server = SrvSecrets {
        endpoint: Endpoint {
            name: NAMES[SRV].to_string(),
            pid,
            dialect: Dialect::P9,
            target: Target {
                uname: SERVICE.into(),
                aname: SERVICE.into(),
                n_uname: None,
                path: vec!["secret".into(), SECRET.into()],
            },
            unix: unix.clone(),
            tcp: None,
        },
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&unix).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let mut log = String::new();
            let _ = std::fs::File::open(&log_path).and_then(|mut f| f.read_to_string(&mut log));
            return Err(format!("srv-secrets exited with {status}: {}", log.trim()));
        }
        if Instant::now() > deadline {
            return Err("srv-secrets did not listen within 30 s".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// Starts both servers, calls `before` with their endpoints (the test mode checks
/// them there), and measures every cell, servers interleaved; stops them after.
fn start_and_run(
    schedule: &Schedule,
    program: &Path,
    server_cpu: Option<usize>,
    progress: bool,
    before: impl FnOnce(&[Endpoint]) -> Result<(), String>,
) -> Result<Results, String> {
    let work = Workdir::new().map_err(|e| format!("work directory: {e}"))?;
    let srv = start_srv_secrets(&work, program, server_cpu)?;
    // The diod path is not used for ours.
    let ramfs: Running = servers::start(Kind::Ours, &work, server_cpu, Path::new("diod"))
        .map_err(|e| format!("starting ramfs: {e}"))?;
    let mut ramfs_endpoint = ramfs.endpoint();
    ramfs_endpoint.name = NAMES[RAMFS].to_string();
    let endpoints = [srv.endpoint.clone(), ramfs_endpoint];
    before(&endpoints)?;
    schedule::run(schedule, &endpoints, progress)
}

/// srv-secrets over ramfs in every read-held and open-read-clunk cell (and attach, for
/// information), against the goal. Beside the ops/s ratio: the ratio the servers' CPU
/// costs per operation predict when both are CPU-bound (ramfs's over srv-secrets'),
/// which does not depend on how much CPU the rest of the machine left each of them.
fn goals(schedule: &Schedule, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\ngoal: srv-secrets/ramfs >= {GOAL} in ops/s (read-held and open-read-clunk; attach for information)"
    );
    let _ = writeln!(
        out,
        "  by CPU: ramfs's server CPU per op over srv-secrets' (what ops/s would show if both were CPU-bound)"
    );
    for cell in schedule.cells() {
        let workload = schedule.workloads[cell.workload];
        let conns = cell.conns;
        let (Some(s), Some(r)) = (
            median_at(results, cell, SRV),
            median_at(results, cell, RAMFS),
        ) else {
            let _ = writeln!(out, "  {:<16} {conns:>3} conns: failed", workload.name());
            continue;
        };
        if r.ops_per_sec <= 0.0 || s.server_cpu_us <= 0.0 {
            continue;
        }
        let ratio = s.ops_per_sec / r.ops_per_sec;
        let verdict = match (workload, ratio >= GOAL) {
            (Workload::Attach, _) => "(no goal)",
            (_, true) => "met",
            (_, false) => "MISSED",
        };
        let _ = writeln!(
            out,
            "  {:<16} {conns:>3} conns: {ratio:.2} {verdict:<9} by CPU {:.2} ({:.1} vs {:.1} us/op, {:+.1}){}",
            workload.name(),
            r.server_cpu_us / s.server_cpu_us,
            s.server_cpu_us,
            r.server_cpu_us,
            s.server_cpu_us - r.server_cpu_us,
            paired_summary(results, cell, SRV, RAMFS)
        );
    }
    out
}

/// What `cargo test --benches` runs: a check that the service's view refuses a secret it
/// is not granted (so the bench measures the real grant check), then every workload on
/// both servers for a moment at 1 and 4 connections, unpinned. (The shared client's and
/// schedule's own checks are `loadgen`'s unit tests.)
fn test_mode() -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let schedule = Schedule::smoke(vec![Transport::Unix]);
    let mut refused = false;
    let check_grants = |endpoints: &[Endpoint]| {
        refused = ungranted_is_refused(&endpoints[SRV])?;
        Ok(())
    };
    let program = Path::new(env!("CARGO_BIN_EXE_srv-secrets"));
    match start_and_run(&schedule, program, None, false, check_grants) {
        Ok(results) => {
            let (p, f) = smoke_check(&schedule, &NAMES, &results);
            passed += p;
            failed += f;
            if refused {
                passed += 1;
            } else {
                eprintln!("FAILED: reading {UNGRANTED}, not granted, did not fail as expected");
                failed += 1;
            }
        }
        Err(e) => {
            eprintln!("FAILED: smoke run: {e}");
            failed += 1;
        }
    }
    verdict(passed, failed)
}

/// Whether a read-held setup on [`UNGRANTED`] through `srv`'s service view fails the
/// way a missing file does, while the same on [`SECRET`] succeeds.
fn ungranted_is_refused(srv: &Endpoint) -> Result<bool, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    let setup = |name: &str| {
        let target = Target {
            path: vec!["secret".into(), name.into()],
            ..srv.target.clone()
        };
        let plan = proto::plan(srv.dialect, Workload::ReadHeld, &target);
        runtime.block_on(async {
            let mut c = client::Conn::connect(&client::Addr::Unix(srv.unix.clone())).await?;
            for s in plan.setup.iter().chain(&plan.op) {
                c.step(s).await?;
            }
            Ok::<(), client::LoadError>(())
        })
    };
    if let Err(e) = setup(SECRET) {
        return Err(format!("reading {SECRET}: {e}"));
    }
    // The walk stops at `secret`: an Rwalk of one qid, as for a name that is not there.
    Ok(matches!(setup(UNGRANTED), Err(client::LoadError::Reply(m)) if m.contains("1 qids")))
}
