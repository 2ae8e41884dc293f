//! The interleaved schedule, the medians over rounds, and the tables: what a load
//! benchmark does once its servers are running, whichever servers they are.
//!
//! Shared by ninep's load bench (ours, diod, echo) and `srv-secrets/benches/load.rs`
//! (srv-secrets and the ramfs). A server is
//! an [`Endpoint`]: where it listens, its process (for its CPU time), and the
//! [`Target`] its workloads read. The arguments both benches take are [`LoadArgs`].

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{self, Addr, Sample, measure};
use crate::proto::{Dialect, Target, Workload, plan};
use crate::servers::{self, Kind};

/// The arguments both load benches take: what to measure and for how long, where the
/// client and the servers run, how to print the results; and the hidden ones of a
/// server the bench starts as this binary. Each bench adds `--quick` (its help says how
/// long the bench's short run takes) and the options of its own servers.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// Seconds measured per cell, server and round [default: 1; 0.5 with --quick].
    #[arg(long)]
    pub seconds: Option<f64>,
    /// Seconds of warm-up before each measurement [default: 0.2; 0.1 with --quick].
    #[arg(long)]
    pub warmup: Option<f64>,
    /// Rounds per cell; figures are the median over rounds [default: 5; 1 with --quick].
    #[arg(long)]
    pub rounds: Option<usize>,
    /// Numbers of connections.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64")]
    pub conns: Vec<usize>,
    /// Workloads.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "read-held,open-read-clunk,attach"
    )]
    pub workloads: Vec<Workload>,
    /// Print the results as JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    /// The CPU the client runs on.
    #[arg(long, default_value_t = 0)]
    pub client_cpu: usize,
    /// The CPU every server runs on (with taskset).
    #[arg(long, default_value_t = 1)]
    pub server_cpu: usize,
    /// Do not pin the client and the servers to CPUs.
    #[arg(long)]
    pub no_pin: bool,
    /// Passed by `cargo bench`; without it the binary runs its checks (test mode).
    #[allow(dead_code)] // only looked for in the raw arguments, by `bench_mode`
    #[arg(long, hide = true)]
    pub bench: bool,
    /// Internal: serve ours or echo (the bench starts its servers this way).
    #[arg(long, hide = true)]
    pub serve: Option<Kind>,
    /// Internal: the unix socket of --serve.
    #[arg(long, hide = true)]
    pub unix: Option<PathBuf>,
    /// Internal: the TCP address of --serve.
    #[arg(long, hide = true)]
    pub tcp: Option<String>,
}

impl LoadArgs {
    /// What to measure over `transports`, and how long: as the arguments say, else
    /// the defaults of a full run or, with `quick`, of a short one.
    pub fn schedule(&self, transports: Vec<Transport>, quick: bool) -> Schedule {
        let (rounds, warmup, window) = if quick { (1, 0.1, 0.5) } else { (5, 0.2, 1.0) };
        Schedule {
            transports,
            workloads: self.workloads.clone(),
            conns: self.conns.clone(),
            rounds: self.rounds.unwrap_or(rounds).max(1),
            warmup: Duration::from_secs_f64(self.warmup.unwrap_or(warmup)),
            window: Duration::from_secs_f64(self.seconds.unwrap_or(window)),
        }
    }

    /// The CPU the servers are to be pinned to; none with --no-pin.
    pub fn server_cpu(&self) -> Option<usize> {
        (!self.no_pin).then_some(self.server_cpu)
    }

    /// Pins this thread to the client's CPU, unless --no-pin; see [`pin_self`].
    pub fn pin_client(&self) -> Result<(), String> {
        if self.no_pin {
            return Ok(());
        }
        pin_self(self.client_cpu)
            .map_err(|e| format!("cannot pin the client to CPU {}: {e}", self.client_cpu))
    }

    /// With --serve, serves until stdin closes (a bench started this binary as one of
    /// its servers) and returns the exit code; without it, none.
    pub fn serve(&self) -> Option<ExitCode> {
        let kind = self.serve?;
        let (Some(unix), Some(tcp)) = (&self.unix, &self.tcp) else {
            eprintln!("--serve needs --unix and --tcp");
            return Some(ExitCode::from(2));
        };
        Some(servers::serve(kind, unix, tcp))
    }

    /// The results as the arguments ask for them: JSON, or the [`report`] (with a
    /// column for each pair of `ratios`) followed by the bench's `goals`.
    pub fn output(
        &self,
        schedule: &Schedule,
        names: &[&str],
        results: &Results,
        ratios: &[(usize, usize)],
        goals: impl FnOnce() -> String,
    ) -> String {
        if self.json {
            return json(schedule, names, results);
        }
        let pinning = match self.server_cpu() {
            Some(s) => format!("client on CPU {}, servers on CPU {s}", self.client_cpu),
            None => "not pinned".to_string(),
        };
        report(schedule, names, results, &pinning, ratios) + &goals()
    }
}

/// Whether `cargo bench` ran this binary (or someone asking for its help, or a bench
/// starting it as a server). Otherwise `cargo test` did, and may have passed libtest's
/// flags (--nocapture, a filter, ...), which are not ours: the bench runs its checks.
pub fn bench_mode() -> bool {
    let ours = ["--bench", "--serve", "--help", "-h"];
    std::env::args().any(|a| ours.contains(&a.as_str()))
}

/// How the client reaches a server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
pub enum Transport {
    /// A unix domain socket.
    Unix,
    /// TCP on 127.0.0.1.
    Tcp,
}

impl Transport {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }
}

/// A running server as the schedule sees it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its name in reports.
    pub name: String,
    /// Its process id, whose threads' CPU time is its cost.
    pub pid: u32,
    /// The protocol it speaks.
    pub dialect: Dialect,
    /// Whom to attach as and which file to read.
    pub target: Target,
    /// Its unix socket.
    pub unix: PathBuf,
    /// Its TCP address, if it listens on TCP.
    pub tcp: Option<SocketAddr>,
}

/// What one run measures and how long.
pub struct Schedule {
    /// Transports, outermost loop.
    pub transports: Vec<Transport>,
    /// Workloads; [`Cell::workload`] indexes this.
    pub workloads: Vec<Workload>,
    /// Numbers of connections.
    pub conns: Vec<usize>,
    /// Rounds per cell: every server is measured once per round.
    pub rounds: usize,
    /// Load before the window opens, not counted.
    pub warmup: Duration,
    /// The measured window.
    pub window: Duration,
}

impl Schedule {
    /// Every cell, in the order they are measured: by transport, then workload, then
    /// number of connections.
    pub fn cells(&self) -> Vec<Cell> {
        let mut cells = Vec::new();
        for &transport in &self.transports {
            for workload in 0..self.workloads.len() {
                for &conns in &self.conns {
                    cells.push(Cell {
                        transport,
                        workload,
                        conns,
                    });
                }
            }
        }
        cells
    }

    /// The smoke run of a test mode, over `transports`: every workload for a moment at
    /// 1 and 4 connections, one round.
    pub fn smoke(transports: Vec<Transport>) -> Schedule {
        Schedule {
            transports,
            workloads: Workload::ALL.to_vec(),
            conns: vec![1, 4],
            rounds: 1,
            warmup: Duration::from_millis(10),
            window: Duration::from_millis(50),
        }
    }
}

/// One (transport, workload, connections) cell of the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cell {
    /// The transport.
    pub transport: Transport,
    /// Index into [`Schedule::workloads`].
    pub workload: usize,
    /// Connections, each with one request outstanding.
    pub conns: usize,
}

/// Every round's sample of one server (by index into the endpoints) in one cell.
pub type Results = BTreeMap<(Cell, usize), Vec<Result<Sample, String>>>;

/// Pins the calling thread, before any other exists, so that the runtime and every
/// thread it starts inherit the mask.
pub fn pin_self(cpu: usize) -> std::io::Result<()> {
    let mut set = rustix::thread::CpuSet::new();
    set.set(cpu);
    rustix::thread::sched_setaffinity(None, &set)?;
    Ok(())
}

/// Measures every cell against every endpoint, servers interleaved: within a cell,
/// each round measures them all in turn, the first one rotating from round to round,
/// so that noise from the rest of the machine hits them alike. With `progress`, a line
/// per cell goes to stderr.
pub fn run(schedule: &Schedule, servers: &[Endpoint], progress: bool) -> Result<Results, String> {
    if schedule.transports.contains(&Transport::Tcp)
        && let Some(s) = servers.iter().find(|s| s.tcp.is_none())
    {
        return Err(format!("{} does not listen on TCP", s.name));
    }
    // The client is one thread: it is pinned to one CPU, and one thread there does not
    // pay for handing work between threads.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    if progress {
        let cells = schedule.transports.len() * schedule.workloads.len() * schedule.conns.len();
        let secs = (cells * servers.len() * schedule.rounds) as f64
            * (schedule.warmup + schedule.window).as_secs_f64();
        eprintln!(
            "load: {cells} cells x {} servers x {} rounds of {:.1}+{:.1} s: about {:.0} s",
            servers.len(),
            schedule.rounds,
            schedule.warmup.as_secs_f64(),
            schedule.window.as_secs_f64(),
            secs
        );
    }
    let mut results = Results::new();
    for cell in schedule.cells() {
        let Cell {
            transport, conns, ..
        } = cell;
        let workload = schedule.workloads[cell.workload];
        for round in 0..schedule.rounds {
            // Rotate who goes first, so that no server always follows the same one.
            for i in 0..servers.len() {
                let si = (i + round) % servers.len();
                let server = &servers[si];
                let addr = match (transport, server.tcp) {
                    (Transport::Unix, _) => Addr::Unix(server.unix.clone()),
                    (Transport::Tcp, Some(tcp)) => Addr::Tcp(tcp),
                    (Transport::Tcp, None) => unreachable!("checked above"),
                };
                let plan = plan(server.dialect, workload, &server.target);
                let sample = runtime
                    .block_on(measure(
                        &addr,
                        server.pid,
                        &plan,
                        conns,
                        schedule.warmup,
                        schedule.window,
                    ))
                    .map_err(|e| e.to_string());
                results.entry((cell, si)).or_default().push(sample);
                runtime.block_on(client::settle(server.pid, Duration::from_secs(2)));
            }
        }
        if progress {
            let mut line = format!("{} {} c={conns}:", transport.name(), workload.name());
            for (si, server) in servers.iter().enumerate() {
                match median(&results[&(cell, si)]) {
                    Some(m) => {
                        let _ = write!(line, " {} {:.0}/s", server.name, m.ops_per_sec);
                    }
                    None => {
                        let _ = write!(line, " {} failed", server.name);
                    }
                }
            }
            eprintln!("{line}");
        }
    }
    Ok(results)
}

/// The median (the upper one of an even count); `v` is never empty here.
pub fn median_of(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// The median of each figure over the rounds that succeeded; none if none did.
pub fn median(samples: &[Result<Sample, String>]) -> Option<Sample> {
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

/// The first failure among the rounds, if any failed.
pub fn first_error(samples: &[Result<Sample, String>]) -> Option<&str> {
    samples
        .iter()
        .find_map(|s| s.as_ref().err().map(String::as_str))
}

/// The median figures of server `si` in `cell`, if any round of it succeeded.
pub fn median_at(results: &Results, cell: Cell, si: usize) -> Option<Sample> {
    median(results.get(&(cell, si))?)
}

/// Server `a`'s ops/s over server `b`'s in each round of `cell` in which both were
/// measured (seconds apart, so under much the same load from the rest of the
/// machine), sorted.
pub fn paired_ratios(results: &Results, cell: Cell, a: usize, b: usize) -> Vec<f64> {
    let (Some(ra), Some(rb)) = (results.get(&(cell, a)), results.get(&(cell, b))) else {
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

/// `paired_ratios` as "; per round 0.93 (median), 0.90..0.97", or nothing.
pub fn paired_summary(results: &Results, cell: Cell, a: usize, b: usize) -> String {
    let p = paired_ratios(results, cell, a, b);
    match p.as_slice() {
        [] => String::new(),
        p => format!(
            "; per round {:.2} (median), {:.2}..{:.2}",
            median_of(p.to_vec()),
            p[0],
            p[p.len() - 1]
        ),
    }
}

/// The readable report: a heading naming the schedule and `pinning`, one row per
/// server and cell with each round's ops/s, then the servers side by side as a
/// markdown table, with a column of ops/s ratios for each pair (a, b) of `ratios`.
pub fn report(
    schedule: &Schedule,
    names: &[&str],
    results: &Results,
    pinning: &str,
    ratios: &[(usize, usize)],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\nmedian of {} round(s) of {:.1} s after {:.1} s warm-up; {pinning}; one request \
         outstanding per connection\n",
        schedule.rounds,
        schedule.window.as_secs_f64(),
        schedule.warmup.as_secs_f64()
    );
    let w = names.iter().map(|n| n.len()).max().unwrap_or(0).max(6);
    let _ = writeln!(
        out,
        "{:<w$} {:<9} {:<16} {:>5} {:>10} {:>9} {:>9} {:>10} {:>10} {:>8}  rounds (ops/s)",
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
        let name = names[si];
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
                    "{:<w$} {:<9} {:<16} {:>5} {:>10.0} {:>9.1} {:>9.1} {:>10.1} {:>10.1} {:>7.0}%  {}",
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
                    "{:<w$} {:<9} {:<16} {:>5} failed: {}",
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
    for n in names {
        let _ = write!(head, " {n} ops/s | {n} p50/p99 µs | {n} CPU µs/op |");
        rule.push_str("---:|---:|---:|");
    }
    for &(a, b) in ratios {
        let _ = write!(head, " {}/{} |", names[a], names[b]);
        rule.push_str("---:|");
    }
    let _ = writeln!(out, "{head}\n{rule}");
    let mut cells: Vec<Cell> = results.keys().map(|(c, _)| *c).collect();
    cells.dedup();
    for &cell in &cells {
        let mut row = format!(
            "| {} | {} | {} |",
            cell.transport.name(),
            schedule.workloads[cell.workload].name(),
            cell.conns
        );
        for si in 0..names.len() {
            match median_at(results, cell, si) {
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
        for &(a, b) in ratios {
            match (median_at(results, cell, a), median_at(results, cell, b)) {
                (Some(x), Some(y)) if y.ops_per_sec > 0.0 => {
                    let _ = write!(row, " {:.2} |", x.ops_per_sec / y.ops_per_sec);
                }
                _ => row.push_str(" |"),
            }
        }
        let _ = writeln!(out, "{row}");
    }
    out
}

/// The results as one JSON document.
pub fn json(schedule: &Schedule, names: &[&str], results: &Results) -> String {
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
            names[si],
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

/// The smoke check of a test mode: every cell of `results` counted operations with
/// sane percentiles. Returns (passed, failed), failures described on stderr.
pub fn smoke_check(schedule: &Schedule, names: &[&str], results: &Results) -> (usize, usize) {
    let (mut passed, mut failed) = (0, 0);
    for (&(cell, si), samples) in results {
        match median(samples) {
            Some(m) if m.ops > 0 && m.p50_us > 0.0 && m.p99_us >= m.p50_us => passed += 1,
            _ => {
                eprintln!(
                    "FAILED: smoke {} {} {} c={}: {}",
                    names[si],
                    cell.transport.name(),
                    schedule.workloads[cell.workload].name(),
                    cell.conns,
                    first_error(samples).unwrap_or("no operations counted")
                );
                failed += 1;
            }
        }
    }
    (passed, failed)
}

/// A test mode's last word: the counts on stdout, and failure if any check failed.
pub fn verdict(passed: usize, failed: usize) -> ExitCode {
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn sample(ops_per_sec: f64) -> Sample {
        Sample {
            ops_per_sec,
            p50_us: 10.0,
            p99_us: 20.0,
            ops: 100,
            server_cpu_us: 4.0,
            client_cpu_us: 3.0,
            server_busy: 0.9,
        }
    }

    const CELL: Cell = Cell {
        transport: Transport::Unix,
        workload: 0,
        conns: 16,
    };

    fn results() -> Results {
        let mut r = Results::new();
        r.insert(
            (CELL, 0),
            vec![Ok(sample(90.0)), Err("boom".into()), Ok(sample(80.0))],
        );
        r.insert(
            (CELL, 1),
            vec![Ok(sample(100.0)), Ok(sample(100.0)), Ok(sample(200.0))],
        );
        r
    }

    #[test]
    fn medians_and_paired_ratios_skip_failed_rounds() {
        let r = results();
        let m = median_at(&r, CELL, 0).unwrap();
        // Upper median of the two rounds that succeeded; ops summed over them.
        assert_eq!(m.ops_per_sec, 90.0);
        assert_eq!(m.ops, 200);
        assert_eq!(first_error(&r[&(CELL, 0)]), Some("boom"));
        assert_eq!(first_error(&r[&(CELL, 1)]), None);
        // Round 2 failed for server 0, so only rounds 1 and 3 pair up.
        assert_eq!(paired_ratios(&r, CELL, 0, 1), vec![0.4, 0.9]);
        assert_eq!(
            paired_summary(&r, CELL, 0, 1),
            "; per round 0.90 (median), 0.40..0.90"
        );
        assert_eq!(paired_ratios(&r, CELL, 0, 5), Vec::<f64>::new());
        assert_eq!(median(&[Err("x".into())]).map(|m| m.ops), None);
    }

    #[test]
    fn report_names_every_server_and_ratio() {
        let schedule = Schedule {
            transports: vec![Transport::Unix],
            workloads: vec![Workload::ReadHeld],
            conns: vec![16],
            rounds: 3,
            warmup: Duration::from_millis(1),
            window: Duration::from_millis(1),
        };
        let names = ["srv-secrets", "ramfs"];
        let out = report(&schedule, &names, &results(), "not pinned", &[(0, 1)]);
        assert!(out.contains("| srv-secrets ops/s |"), "{out}");
        assert!(out.contains("| srv-secrets/ramfs |"), "{out}");
        // Medians 90 and 100 (upper median of 100, 100, 200): the ratio 0.90.
        assert!(
            out.contains("| unix | read-held | 16 | 90 | 10 / 20 | 4.0 | 100 |"),
            "{out}"
        );
        assert!(out.contains(" 0.90 |\n"), "{out}");
        assert!(out.contains("90 err 80"), "{out}");
        let (passed, failed) = smoke_check(&schedule, &names, &results());
        assert_eq!((passed, failed), (2, 0));
        let j = json(&schedule, &names, &results());
        assert!(j.contains("\"server\":\"srv-secrets\""), "{j}");
        assert!(j.contains("null"), "{j}");
    }
}
