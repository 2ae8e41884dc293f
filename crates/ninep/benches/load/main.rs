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
//! three servers in their own processes: ours (the server core with the ramfs example),
//! diod (9P2000.L, exporting tmpfs) and echo (canned replies: the ceiling of the client
//! and transport). The client runs pinned to one CPU and every server to the other.
//! Each cell (transport, workload, connections) measures the servers in turn, in a
//! rotating order, for several rounds, so that noise on a shared machine hits them
//! alike; the report gives the median of the rounds. Besides ops/s and latency it gives
//! each server's CPU time per operation, which does not depend on how much of its CPU
//! the rest of the machine left it. Results and their analysis: docs/performance.md.
//!
//! Run without `--bench` (as `cargo test --benches` does), it runs its unit checks and
//! a short smoke run instead, and prints `N passed, N failed`.
//!
//! # Layout
//! - `proto`: the request sequences of each workload in 9P2000 and 9P2000.L, and the
//!   reply checks.
//! - `client`: the closed-loop load generator and the percentiles.
//! - `servers`: starting the three servers; the `--serve` modes for ours and echo.
//! - this file: arguments, the interleaved schedule, the report.

mod client;
#[path = "../../examples/ramfs/fs.rs"]
mod fs;
mod proto;
mod servers;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

use client::{Addr, Sample, measure};
use proto::{Workload, plan};
use servers::{Kind, Running, Workdir};

/// Load benchmark of the ninep server core against diod and an echo server.
#[derive(Parser, Debug)]
struct Args {
    /// A short run: one round of 0.5 s per cell and server (under a minute in all).
    #[arg(long)]
    quick: bool,
    /// Seconds measured per cell, server and round [default: 1; 0.5 with --quick].
    #[arg(long)]
    seconds: Option<f64>,
    /// Seconds of warm-up before each measurement [default: 0.2; 0.1 with --quick].
    #[arg(long)]
    warmup: Option<f64>,
    /// Rounds per cell; figures are the median over rounds [default: 5; 1 with --quick].
    #[arg(long)]
    rounds: Option<usize>,
    /// Servers to measure.
    #[arg(long, value_delimiter = ',', default_value = "ours,diod,echo")]
    servers: Vec<Kind>,
    /// Numbers of connections.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    conns: Vec<usize>,
    /// Transports.
    #[arg(long, value_delimiter = ',', default_value = "unix,tcp")]
    transport: Vec<Transport>,
    /// Workloads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read-held,open-read-clunk,attach"
    )]
    workloads: Vec<Workload>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    json: bool,
    /// The CPU the client runs on.
    #[arg(long, default_value_t = 0)]
    client_cpu: usize,
    /// The CPU every server runs on (with taskset).
    #[arg(long, default_value_t = 1)]
    server_cpu: usize,
    /// Do not pin the client and the servers to CPUs.
    #[arg(long)]
    no_pin: bool,
    /// The diod binary.
    #[arg(long, default_value = "diod")]
    diod: PathBuf,
    /// Passed by `cargo bench`; without it the binary runs its checks (test mode).
    #[allow(dead_code)] // only looked for in the raw arguments, before parsing
    #[arg(long, hide = true)]
    bench: bool,
    /// Internal: serve ours or echo (the bench starts its servers this way).
    #[arg(long, hide = true)]
    serve: Option<Kind>,
    /// Internal: the unix socket of --serve.
    #[arg(long, hide = true)]
    unix: Option<PathBuf>,
    /// Internal: the TCP address of --serve.
    #[arg(long, hide = true)]
    tcp: Option<String>,
}

/// How the client reaches a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Transport {
    /// A unix domain socket.
    Unix,
    /// TCP on 127.0.0.1.
    Tcp,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }
}

/// What one run measures and how long.
struct Schedule {
    servers: Vec<Kind>,
    transports: Vec<Transport>,
    workloads: Vec<Workload>,
    conns: Vec<usize>,
    rounds: usize,
    warmup: Duration,
    window: Duration,
}

/// One (transport, workload, connections) cell of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Cell {
    transport: Transport,
    workload: usize,
    conns: usize,
}

/// Every round's sample of one server in one cell.
type Results = BTreeMap<(Cell, usize), Vec<Result<Sample, String>>>;

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    let ours = ["--bench", "--serve", "--help", "-h"];
    if !raw.iter().any(|a| ours.contains(&a.as_str())) {
        // Test mode: `cargo test` may pass libtest's flags (--nocapture, a filter, ...),
        // which are not ours; run the checks with the defaults then.
        let args = Args::try_parse().unwrap_or_else(|_| Args::parse_from(["load"]));
        return test_mode(&args);
    }
    let args = Args::parse();
    if let Some(kind) = args.serve {
        let (Some(unix), Some(tcp)) = (&args.unix, &args.tcp) else {
            eprintln!("--serve needs --unix and --tcp");
            return ExitCode::from(2);
        };
        return servers::serve(kind, unix, tcp);
    }
    let quick = args.quick;
    let schedule = Schedule {
        servers: args.servers.clone(),
        transports: args.transport.clone(),
        workloads: args.workloads.clone(),
        conns: args.conns.clone(),
        rounds: args.rounds.unwrap_or(if quick { 1 } else { 5 }).max(1),
        warmup: Duration::from_secs_f64(args.warmup.unwrap_or(if quick { 0.1 } else { 0.2 })),
        window: Duration::from_secs_f64(args.seconds.unwrap_or(if quick { 0.5 } else { 1.0 })),
    };
    if !args.no_pin
        && let Err(e) = pin_self(args.client_cpu)
    {
        eprintln!(
            "load: cannot pin the client to CPU {}: {e}",
            args.client_cpu
        );
        return ExitCode::FAILURE;
    }
    let server_cpu = (!args.no_pin).then_some(args.server_cpu);
    let results = match run(&schedule, server_cpu, &args.diod, true) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("load: {e}");
            return ExitCode::FAILURE;
        }
    };
    if args.json {
        print!("{}", json(&schedule, &results));
    } else {
        print!(
            "{}",
            report(&schedule, &results, server_cpu, args.client_cpu)
        );
    }
    ExitCode::SUCCESS
}

/// Pins the calling thread, before any other exists, so that the runtime and every
/// thread it starts inherit the mask.
fn pin_self(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// Starts the servers and measures every cell, servers interleaved.
fn run(
    schedule: &Schedule,
    server_cpu: Option<usize>,
    diod: &std::path::Path,
    progress: bool,
) -> Result<Results, String> {
    let work = Workdir::new().map_err(|e| format!("work directory: {e}"))?;
    let mut running: Vec<Running> = Vec::new();
    for &kind in &schedule.servers {
        let r = servers::start(kind, &work, server_cpu, diod)
            .map_err(|e| format!("starting {}: {e}", kind.name()))?;
        running.push(r);
    }
    // The client is one thread: it is pinned to one CPU, and one thread there does not
    // pay for handing work between threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    if progress {
        let cells = schedule.transports.len() * schedule.workloads.len() * schedule.conns.len();
        let secs = (cells * running.len() * schedule.rounds) as f64
            * (schedule.warmup + schedule.window).as_secs_f64();
        eprintln!(
            "load: {cells} cells x {} servers x {} rounds of {:.1}+{:.1} s: about {:.0} s",
            running.len(),
            schedule.rounds,
            schedule.warmup.as_secs_f64(),
            schedule.window.as_secs_f64(),
            secs
        );
    }
    let mut results = Results::new();
    for &transport in &schedule.transports {
        for (wi, &workload) in schedule.workloads.iter().enumerate() {
            for &conns in &schedule.conns {
                let cell = Cell {
                    transport,
                    workload: wi,
                    conns,
                };
                for round in 0..schedule.rounds {
                    // Rotate who goes first, so that no server always follows the same one.
                    for i in 0..running.len() {
                        let si = (i + round) % running.len();
                        let server = &running[si];
                        let addr = match transport {
                            Transport::Unix => Addr::Unix(server.unix.clone()),
                            Transport::Tcp => Addr::Tcp(server.tcp),
                        };
                        let plan = plan(server.kind.dialect(), workload, &server.who);
                        let sample = runtime
                            .block_on(measure(
                                &addr,
                                server.pid(),
                                &plan,
                                conns,
                                schedule.warmup,
                                schedule.window,
                            ))
                            .map_err(|e| e.to_string());
                        results.entry((cell, si)).or_default().push(sample);
                        runtime.block_on(client::settle(server.pid(), Duration::from_secs(2)));
                    }
                }
                if progress {
                    let mut line = format!("{} {} c={conns}:", transport.name(), workload.name());
                    for (si, server) in running.iter().enumerate() {
                        match median(&results[&(cell, si)]) {
                            Some(m) => {
                                let _ =
                                    write!(line, " {} {:.0}/s", server.kind.name(), m.ops_per_sec);
                            }
                            None => {
                                let _ = write!(line, " {} failed", server.kind.name());
                            }
                        }
                    }
                    eprintln!("{line}");
                }
            }
        }
    }
    drop(running);
    Ok(results)
}

/// The median (the upper one of an even count); `v` is never empty here.
fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each figure over the rounds that succeeded; none if none did.
fn median(samples: &[Result<Sample, String>]) -> Option<Sample> {
    let ok: Vec<&Sample> = samples.iter().filter_map(|s| s.as_ref().ok()).collect();
    if ok.is_empty() {
        return None;
    }
    Some(Sample {
        ops_per_sec: median_of(ok.iter().map(|s| s.ops_per_sec).collect()),
        p50_us: median_of(ok.iter().map(|s| s.p50_us).collect()),
        p99_us: median_of(ok.iter().map(|s| s.p99_us).collect()),
        ops: ok.iter().map(|s| s.ops).sum(),
        server_cpu_us: median_of(ok.iter().map(|s| s.server_cpu_us).collect()),
        client_cpu_us: median_of(ok.iter().map(|s| s.client_cpu_us).collect()),
        server_busy: median_of(ok.iter().map(|s| s.server_busy).collect()),
    })
}

fn first_error(samples: &[Result<Sample, String>]) -> Option<&str> {
    samples
        .iter()
        .find_map(|s| s.as_ref().err().map(String::as_str))
}

/// The median ops/s of `kind` in `cell`, if it was measured.
fn ops_of(schedule: &Schedule, results: &Results, cell: Cell, kind: Kind) -> Option<f64> {
    let si = schedule.servers.iter().position(|&k| k == kind)?;
    median(results.get(&(cell, si))?).map(|m| m.ops_per_sec)
}

/// `a`'s ops/s over `b`'s in each round of `cell` in which both were measured (seconds
/// apart, so under much the same load from the rest of the machine), sorted.
fn paired_ratios(schedule: &Schedule, results: &Results, cell: Cell, a: Kind, b: Kind) -> Vec<f64> {
    let at = |k: Kind| {
        let si = schedule.servers.iter().position(|&s| s == k)?;
        results.get(&(cell, si))
    };
    let (Some(ra), Some(rb)) = (at(a), at(b)) else {
        return Vec::new();
    };
    let mut v: Vec<f64> = ra
        .iter()
        .zip(rb)
        .filter_map(|(x, y)| match (x, y) {
            (Ok(x), Ok(y)) if y.ops_per_sec > 0.0 => Some(x.ops_per_sec / y.ops_per_sec),
            _ => None,
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v
}

/// The readable report: one row per server and cell, then the servers side by side as
/// a markdown table, then the goals.
fn report(
    schedule: &Schedule,
    results: &Results,
    server_cpu: Option<usize>,
    client_cpu: usize,
) -> String {
    let mut out = String::new();
    let pinning = match server_cpu {
        Some(s) => format!("client on CPU {client_cpu}, servers on CPU {s}"),
        None => "not pinned".to_string(),
    };
    let _ = writeln!(
        out,
        "\nmedian of {} round(s) of {:.1} s after {:.1} s warm-up; {pinning}; one request \
         outstanding per connection\n",
        schedule.rounds,
        schedule.window.as_secs_f64(),
        schedule.warmup.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "{:<6} {:<9} {:<16} {:>5} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}  rounds (ops/s)",
        "server",
        "transport",
        "workload",
        "conns",
        "ops/s",
        "p50 us",
        "p99 us",
        "srv us/op",
        "cli us/op",
        "srv busy"
    );
    for (&(cell, si), samples) in results {
        let name = schedule.servers[si].name();
        let workload = schedule.workloads[cell.workload].name();
        let rounds: Vec<String> = samples
            .iter()
            .map(|s| {
                s.as_ref()
                    .map_or("err".into(), |s| format!("{:.0}", s.ops_per_sec))
            })
            .collect();
        match median(samples) {
            Some(m) => {
                let _ = writeln!(
                    out,
                    "{:<6} {:<9} {:<16} {:>5} {:>10.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>7.0}%  {}",
                    name,
                    cell.transport.name(),
                    workload,
                    cell.conns,
                    m.ops_per_sec,
                    m.p50_us,
                    m.p99_us,
                    m.server_cpu_us,
                    m.client_cpu_us,
                    m.server_busy * 100.0,
                    rounds.join(" ")
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{:<6} {:<9} {:<16} {:>5} failed: {}",
                    name,
                    cell.transport.name(),
                    workload,
                    cell.conns,
                    first_error(samples).unwrap_or("?")
                );
            }
        }
    }

    // Side by side.
    let _ = writeln!(out);
    let mut head = String::from("| transport | workload | conns |");
    let mut rule = String::from("|---|---|---:|");
    for k in &schedule.servers {
        let n = k.name();
        let _ = write!(head, " {n} ops/s | {n} p50/p99 µs | {n} CPU µs/op |");
        rule.push_str("---:|---:|---:|");
    }
    let ratios = [(Kind::Ours, Kind::Diod), (Kind::Ours, Kind::Echo)];
    let ratios: Vec<_> = ratios
        .into_iter()
        .filter(|(a, b)| schedule.servers.contains(a) && schedule.servers.contains(b))
        .collect();
    for (a, b) in &ratios {
        let _ = write!(head, " {}/{} |", a.name(), b.name());
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    let mut cells: Vec<Cell> = results.keys().map(|(c, _)| *c).collect();
    cells.dedup();
    for cell in &cells {
        let mut row = format!(
            "| {} | {} | {} |",
            cell.transport.name(),
            schedule.workloads[cell.workload].name(),
            cell.conns
        );
        for si in 0..schedule.servers.len() {
            match results.get(&(*cell, si)).and_then(|s| median(s)) {
                Some(m) => {
                    let _ = write!(
                        row,
                        " {:.0} | {:.0} / {:.0} | {:.1} |",
                        m.ops_per_sec, m.p50_us, m.p99_us, m.server_cpu_us
                    );
                }
                None => row.push_str(" failed | | |"),
            }
        }
        for (a, b) in &ratios {
            match (
                ops_of(schedule, results, *cell, *a),
                ops_of(schedule, results, *cell, *b),
            ) {
                (Some(x), Some(y)) if y > 0.0 => {
                    let _ = write!(row, " {:.2} |", x / y);
                }
                _ => row.push_str(" |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }

    // The goals: read on a held fid at 64 connections (or the most measured).
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
    let _ = writeln!(out, "\ngoals (read-held, {most} connections):");
    for &transport in &schedule.transports {
        let cell = Cell {
            transport,
            workload: wi,
            conns: most,
        };
        for (other, goal) in [(Kind::Diod, 2.0), (Kind::Echo, 0.5)] {
            let (Some(x), Some(y)) = (
                ops_of(schedule, results, cell, Kind::Ours),
                ops_of(schedule, results, cell, other),
            ) else {
                continue;
            };
            if y <= 0.0 {
                continue;
            }
            let ratio = x / y;
            let paired = paired_ratios(schedule, results, cell, Kind::Ours, other);
            let paired = match paired.as_slice() {
                [] => String::new(),
                p => format!(
                    "; per round {:.2} (median), {:.2}..{:.2}",
                    median_of(p.to_vec()),
                    p[0],
                    p[p.len() - 1]
                ),
            };
            let _ = writeln!(
                out,
                "  {:<4} ours/{} = {:.2} (goal >= {goal}): {}{paired}",
                transport.name(),
                other.name(),
                ratio,
                if ratio >= goal { "met" } else { "MISSED" }
            );
        }
    }
    out
}

/// The results as one JSON document.
fn json(schedule: &Schedule, results: &Results) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "{{\"rounds\":{},\"window_s\":{},\"warmup_s\":{},\"results\":[",
        schedule.rounds,
        schedule.window.as_secs_f64(),
        schedule.warmup.as_secs_f64()
    );
    for (i, (&(cell, si), samples)) in results.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(
            out,
            "{{\"server\":\"{}\",\"transport\":\"{}\",\"workload\":\"{}\",\"conns\":{},",
            schedule.servers[si].name(),
            cell.transport.name(),
            schedule.workloads[cell.workload].name(),
            cell.conns
        );
        let rounds: Vec<String> = samples
            .iter()
            .map(|s| match s {
                Ok(s) => format!(
                    "{{\"ops_per_sec\":{:.1},\"p50_us\":{:.2},\"p99_us\":{:.2},\
                     \"server_cpu_us_per_op\":{:.3},\"client_cpu_us_per_op\":{:.3},\
                     \"server_busy\":{:.3}}}",
                    s.ops_per_sec,
                    s.p50_us,
                    s.p99_us,
                    s.server_cpu_us,
                    s.client_cpu_us,
                    s.server_busy
                ),
                Err(_) => "null".to_string(),
            })
            .collect();
        match median(samples) {
            Some(m) => {
                let _ = write!(
                    out,
                    "\"ops_per_sec\":{:.1},\"p50_us\":{:.2},\"p99_us\":{:.2},\
                     \"server_cpu_us_per_op\":{:.3},\"client_cpu_us_per_op\":{:.3},\
                     \"server_busy\":{:.3},",
                    m.ops_per_sec,
                    m.p50_us,
                    m.p99_us,
                    m.server_cpu_us,
                    m.client_cpu_us,
                    m.server_busy
                );
            }
            None => out.push_str(
                "\"ops_per_sec\":null,\"p50_us\":null,\"p99_us\":null,\
                 \"server_cpu_us_per_op\":null,\"client_cpu_us_per_op\":null,\
                 \"server_busy\":null,",
            ),
        }
        let _ = write!(out, "\"rounds\":[{}]}}", rounds.join(","));
    }
    out.push_str("]}\n");
    out
}

/// What `cargo test --benches` runs: the unit checks, then every server, workload and
/// transport for a moment at 1 and 4 connections, unpinned. diod is left out if it is
/// not installed.
fn test_mode(args: &Args) -> ExitCode {
    let mut passed = 0;
    let mut failed = 0;
    for (name, test) in unit_tests() {
        match std::panic::catch_unwind(test) {
            Ok(()) => passed += 1,
            Err(_) => {
                eprintln!("FAILED: {name}");
                failed += 1;
            }
        }
    }
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
    let schedule = Schedule {
        servers,
        transports: vec![Transport::Unix, Transport::Tcp],
        workloads: Workload::ALL.to_vec(),
        conns: vec![1, 4],
        rounds: 1,
        warmup: Duration::from_millis(10),
        window: Duration::from_millis(50),
    };
    match run(&schedule, None, &args.diod, false) {
        Ok(results) => {
            for (&(cell, si), samples) in &results {
                let what = format!(
                    "smoke {} {} {} c={}",
                    schedule.servers[si].name(),
                    cell.transport.name(),
                    schedule.workloads[cell.workload].name(),
                    cell.conns
                );
                match median(samples) {
                    Some(m) if m.ops > 0 && m.p50_us > 0.0 && m.p99_us >= m.p50_us => passed += 1,
                    _ => {
                        eprintln!(
                            "FAILED: {what}: {}",
                            first_error(samples).unwrap_or("no operations counted")
                        );
                        failed += 1;
                    }
                }
            }
        }
        Err(e) => {
            eprintln!("FAILED: smoke run: {e}");
            failed += 1;
        }
    }
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
fn unit_tests() -> Vec<(&'static str, fn())> {
    [
        proto::tests::TESTS,
        client::tests::TESTS,
        servers::tests::TESTS,
    ]
    .concat()
}

/// Built outside `cargo test` (`cargo bench` without `--bench`), there are no unit
/// checks to run: only the smoke run.
#[cfg(not(test))]
fn unit_tests() -> Vec<(&'static str, fn())> {
    Vec::new()
}
