//! Load benchmark of the ninep server core, side by side with diod and an echo server.
//!
//! ```sh
//! cargo bench -p ninep --bench load                 # full run, about 6 minutes
//! cargo bench -p ninep --bench load -- --quick      # under a minute
//! cargo bench -p ninep --bench load -- --servers ours,echo --conns 64 --transport unix
//! ```
//!
//! Three workloads (open-read-clunk of a 64-byte file, read on a held fid, attach +
//! clunk) at 1, 16 and 64 connections, over a unix socket and TCP on loopback, against
//! three servers in their own processes: ours (the server core with `ninep::ramfs`),
//! diod (9P2000.L, exporting tmpfs) and echo (canned replies: the ceiling of the client
//! and transport). The client runs pinned to one CPU and every server to the other.
//! Each cell (transport, workload, connections) measures the servers in turn, in a
//! rotating order, for several rounds, so that noise on a shared machine hits them
//! alike; the report gives the median of the rounds. Besides ops/s and latency it gives
//! each server's CPU time per operation, which does not depend on how much of its CPU
//! the rest of the machine left it. Results and their analysis: docs/performance.md.
//!
//! Run without `--bench` (as `cargo test --benches` does), it runs a short smoke run
//! instead, and prints `N passed, N failed`.
//!
//! The client, the workloads, the schedule and the servers' processes are the `loadgen`
//! crate's, which `srv-secrets/benches/load.rs` shares; this file holds this bench's own
//! arguments and its goals.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use loadgen::proto::Workload;
use loadgen::schedule::{
    self, Cell, Endpoint, LoadArgs, Results, Schedule, Transport, bench_mode, median_at,
    paired_summary, smoke_check, verdict,
};
use loadgen::servers::{self, Kind, Running, Workdir};

/// Load benchmark of the ninep server core against diod and an echo server.
#[derive(Parser, Debug)]
struct Args {
    /// A short run: one round of 0.5 s per cell and server (under a minute in all).
    #[arg(long)]
    quick: bool,
    #[command(flatten)]
    load: LoadArgs,
    /// Servers to measure.
    #[arg(long, value_delimiter = ',', default_value = "ours,diod,echo")]
    servers: Vec<Kind>,
    /// Transports.
    #[arg(long, value_delimiter = ',', default_value = "unix,tcp")]
    transport: Vec<Transport>,
    /// The diod binary.
    #[arg(long, default_value = "diod")]
    diod: PathBuf,
}

fn main() -> ExitCode {
    if !bench_mode() {
        // The checks run with the defaults when the arguments are libtest's.
        let args = Args::try_parse().unwrap_or_else(|_| Args::parse_from(["load"]));
        return test_mode(&args);
    }
    let args = Args::parse();
    if let Some(code) = args.load.serve() {
        return code;
    }
    let schedule = args.load.schedule(args.transport.clone(), args.quick);
    if let Err(e) = args.load.pin_client() {
        eprintln!("load: {e}");
        return ExitCode::FAILURE;
    }
    let server_cpu = args.load.server_cpu();
    let results = match start_and_run(&schedule, &args.servers, server_cpu, &args.diod, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    let names: Vec<&str> = args.servers.iter().map(|k| k.name()).collect();
    let at = |k: Kind| args.servers.iter().position(|&s| s == k);
    let ratios: Vec<(usize, usize)> = [(Kind::Ours, Kind::Diod), (Kind::Ours, Kind::Echo)]
        .into_iter()
        .filter_map(|(a, b)| Some((at(a)?, at(b)?)))
        .collect();
    let out = args.load.output(&schedule, &names, &results, &ratios, || {
        goals(&schedule, &args.servers, &results)
    });
    print!("{out}");
    ExitCode::SUCCESS
}

/// Starts `servers` and measures every cell, servers interleaved; stops them after.
fn start_and_run(
    schedule: &Schedule,
    servers: &[Kind],
    server_cpu: Option<usize>,
    diod: &std::path::Path,
    progress: bool,
) -> Result<Results, String> {
    let work = Workdir::new().map_err(|e| format!("work directory: {e}"))?;
    let mut running: Vec<Running> = Vec::new();
    for &kind in servers {
        let r = servers::start(kind, &work, server_cpu, diod)
            .map_err(|e| format!("starting {}: {e}", kind.name()))?;
        running.push(r);
    }
    let endpoints: Vec<Endpoint> = running.iter().map(Running::endpoint).collect();
    schedule::run(schedule, &endpoints, progress)
}

/// The goals: read on a held fid at 64 connections (or the most measured), ours at
/// least 2x diod and half of echo.
fn goals(schedule: &Schedule, servers: &[Kind], results: &Results) -> String {
    let mut out = String::new();
    let Some(&most) = schedule.conns.iter().max() else {
        return out;
    };
    let Some(wi) = schedule
        .workloads
        .iter()
        .position(|&w| w == Workload::ReadHeld)
    else {
        return out;
    };
    let Some(ours) = servers.iter().position(|&k| k == Kind::Ours) else {
        return out;
    };
    let _ = writeln!(out, "\ngoals (read-held, {most} connections):");
    for &transport in &schedule.transports {
        let cell = Cell {
            transport,
            workload: wi,
            conns: most,
        };
        for (other, goal) in [(Kind::Diod, 2.0), (Kind::Echo, 0.5)] {
            let Some(oi) = servers.iter().position(|&k| k == other) else {
                continue;
            };
            let (Some(x), Some(y)) = (median_at(results, cell, ours), median_at(results, cell, oi))
            else {
                continue;
            };
            if y.ops_per_sec <= 0.0 {
                continue;
            }
            let ratio = x.ops_per_sec / y.ops_per_sec;
            let _ = writeln!(
                out,
                "  {:<4} ours/{} = {:.2} (goal >= {goal}): {}{}",
                transport.name(),
                other.name(),
                ratio,
                if ratio >= goal { "met" } else { "MISSED" },
                paired_summary(results, cell, ours, oi)
            );
        }
    }
    out
}

/// What `cargo test --benches` runs: every server, workload and transport for a moment
/// at 1 and 4 connections, unpinned. diod is left out if it is not installed. (The
/// client's and the schedule's own checks are `loadgen`'s unit tests.)
fn test_mode(args: &Args) -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let have_diod = std::process::Command::new(&args.diod)
        .arg("--help")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    let mut servers = vec![Kind::Ours, Kind::Echo];
    if have_diod {
        servers.insert(1, Kind::Diod);
    } else {
        eprintln!(
            "load: {} not found; smoke run without diod",
            args.diod.display()
        );
    }
    let schedule = Schedule::smoke(vec![Transport::Unix, Transport::Tcp]);
    match start_and_run(&schedule, &servers, None, &args.diod, false) {
        Ok(results) => {
            let names: Vec<&str> = servers.iter().map(|k| k.name()).collect();
            let (p, f) = smoke_check(&schedule, &names, &results);
            passed += p;
            failed += f;
        }
        Err(e) => {
            eprintln!("FAILED: smoke run: {e}");
            failed += 1;
        }
    }
    verdict(passed, failed)
}
