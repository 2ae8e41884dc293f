//! What the audit trail costs: appending records, serving opens with it, and verifying a
//! million records.
//!
//! ```sh
//! cargo bench -p srv-secrets --bench audit                            # all three parts
//! cargo bench -p srv-secrets --bench audit -- --part opens --workloads open-read-clunk --conns 1,16,64
//! cargo bench -p srv-secrets --bench audit -- --part append
//! cargo bench -p srv-secrets --bench audit -- --part verify --records 1000000
//! cargo bench -p srv-secrets --bench audit -- --quick                 # a short run of each
//! ```
//!
//! - `append`: the CPU a record costs (made, hashed, signed, encoded), for a chain that
//!   signs every record (changes) and one that signs the last of a batch of 4096 (opens);
//!   then through the vault and the store: commits of one change (with its one record)
//!   against a transaction of 100 changes (100 records); and opens committed in batches,
//!   records per second (each over another uid, so that each is a record of its own).
//! - `opens`: open-read-clunk (and any workload of the ninep load bench) against two
//!   servers that are this same binary re-executed, serving the same seeded data
//!   directory through `srv_secrets::serve::serve`, alike but for one call: `audit-off`
//!   calls `Vault::disable_open_recording_for_benchmarks` before serving (the server's
//!   own binary never does, and no option reaches it); `audit-on` records every open as
//!   the server does. Both pinned to the server CPU, interleaved rounds, medians, the
//!   on/off ratio side by side; the goal is 0.8 or more.
//! - `verify`: a million records (opens) made in batches of 4096 through the vault's
//!   commit path (outside `cargo test`), then verified by the server's `audit_verify`
//!   (every link, every signature, up to the store's heads) and, exported as JSON lines,
//!   by the offline verifier `deploy audit verify --log` uses.
//!
//! Run without `--bench` (as `cargo test --benches` does), it runs a small version of
//! each part and checks its answers, printing `N passed, N failed`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use loadgen::proto::{Dialect, FILE_SIZE, Target};
use loadgen::schedule::{
    self, Endpoint, LoadArgs, Results, Schedule, Transport, bench_mode, median_at, paired_summary,
    smoke_check, verdict,
};
use loadgen::servers::Workdir;
use secrets::audit::{CHANGES, Event, Head, OPENS, Record, SigningKey, Verifier};
use secrets::{Actor, Change, Vault, VersionSlot};

/// The service whose view the client attaches to.
const SERVICE: &str = "bench";
/// Its uid (the client is the admin, on its behalf).
const SERVICE_UID: u32 = 3000;
/// The secret it reads.
const SECRET: &str = "x";
/// The goal: ops/s with the audit over without, per cell.
const GOAL: f64 = 0.8;
/// The servers of the `opens` part, in the order of every report.
const NAMES: [&str; 2] = ["audit-on", "audit-off"];
const ON: usize = 0;
const OFF: usize = 1;
/// Records per batch of opens, as the flusher commits at most.
const BATCH: usize = secrets::FLUSH_BATCH;

/// What the audit trail costs.
#[derive(Parser, Debug)]
#[command(mut_arg("server_cpu", |a| a.help("The CPU both servers run on (with taskset)")))]
struct Args {
    /// A short run of each part (about 30 s in all).
    #[arg(long)]
    quick: bool,
    /// Which part: append, opens, verify, or all.
    #[arg(long, default_value = "all")]
    part: String,
    /// How many records `verify` makes and checks.
    #[arg(long, default_value_t = 1_000_000)]
    records: usize,
    #[command(flatten)]
    load: LoadArgs,
}

fn main() -> ExitCode {
    let raw: Vec<String> = std::env::args().collect();
    if let Some(i) = raw.iter().position(|a| a == "--serve-audit") {
        return serve_child(&raw[i + 1..]);
    }
    if !bench_mode() {
        return test_mode();
    }
    let args = Args::parse();
    let parts: Vec<&str> = match args.part.as_str() {
        "all" => vec!["append", "opens", "verify"],
        one => vec![one],
    };
    for part in parts {
        let done = match part {
            "append" => append(args.quick),
            "opens" => opens(&args),
            "verify" => {
                let n = if args.quick {
                    args.records.min(100_000)
                } else {
                    args.records
                };
                verify(n).map(|_| ())
            }
            other => Err(format!("no part {other}: append, opens, verify or all")),
        };
        if let Err(e) = done {
            eprintln!("audit bench: {part}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

// ---- append ----

/// The CPU per record of a chain of `n` records, signing every `sign_every`th (and the
/// last): (ns per record).
fn chain_cost(n: usize, sign_every: usize) -> f64 {
    let key = SigningKey::from_seed(&zeroize::Zeroizing::new([7; 32]));
    let started = Instant::now();
    let mut head: Option<Head> = None;
    let mut bytes = 0usize;
    for i in 0..n {
        let mut r = Event::new("service web", Some(1001), "open")
            .target("secret", "db_password")
            .target("service", "web")
            .version(3)
            .chained(OPENS, head.as_ref(), 1_700_000_000_000 + i as u64);
        let signed = r.signed_bytes();
        if (i + 1) % sign_every == 0 || i + 1 == n {
            r.sig = Some(key.sign(&signed));
        }
        head = Some(r.head());
        bytes += r.to_stored().len();
    }
    std::hint::black_box(bytes);
    started.elapsed().as_nanos() as f64 / n as f64
}

fn seeded(dir: &Path) -> Result<Vault, String> {
    let uid = rustix::process::geteuid().as_raw();
    let data = dir.join("data");
    Vault::init(&data, None, uid).map_err(|e| e.to_string())?;
    let vault = Vault::open(&data, None).map_err(|e| e.to_string())?;
    let value: Vec<u8> = (0..FILE_SIZE as usize)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    vault.set(SECRET, &value).map_err(|e| e.to_string())?;
    vault
        .service_set_uid(SERVICE, SERVICE_UID)
        .map_err(|e| e.to_string())?;
    vault.grant(SERVICE, SECRET).map_err(|e| e.to_string())?;
    Ok(vault)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v.get(v.len() / 2).copied().unwrap_or_default()
}

/// A batch's worth of openers, each over another uid: each open then is a record of its
/// own (alike opens of a batch, by one principal and uid, are one record).
fn uids() -> Vec<Actor> {
    (0..BATCH as u32)
        .map(|i| Actor::service(SERVICE, Some(10_000 + i)))
        .collect()
}

fn append(quick: bool) -> Result<(), String> {
    println!("== append: what a record costs ==");
    let n = if quick { 20_000 } else { 200_000 };
    let each = chain_cost(n, 1);
    let batched = chain_cost(n, BATCH);
    println!("record made, hashed, encoded and signed, each (changes)     {each:>8.0} ns/record");
    println!(
        "record made, hashed, encoded, one signature per {BATCH} (opens) {batched:>8.0} ns/record  ({:.1}x cheaper)",
        each / batched
    );
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let vault = seeded(tmp.path())?;
    let actor = Actor::admin(Some(0)).with_reason("bench");
    let rounds = if quick { 20 } else { 100 };
    let mut one = Vec::new();
    let mut hundred = Vec::new();
    let names: Vec<String> = (0..100).map(|i| format!("s{i}")).collect();
    for r in 0..rounds {
        let value = format!("v{r}");
        let t = Instant::now();
        vault
            .apply(
                &actor,
                &[Change::Set {
                    name: "one",
                    value: value.as_bytes(),
                }],
            )
            .map_err(|e| e.error.to_string())?;
        one.push(t.elapsed());
        let changes: Vec<Change<'_>> = names
            .iter()
            .map(|name| Change::Set {
                name,
                value: value.as_bytes(),
            })
            .collect();
        let t = Instant::now();
        vault
            .apply(&actor, &changes)
            .map_err(|e| e.error.to_string())?;
        hundred.push(t.elapsed());
    }
    let (one, hundred) = (median(one), median(hundred));
    println!("commit of 1 change (1 record)          p50 {one:>10.1?}");
    println!(
        "commit of 100 changes (100 records)    p50 {hundred:>10.1?}  ({:.1?} per further change and its record)",
        hundred.saturating_sub(one) / 99
    );
    let opened = vault
        .open_secret(SERVICE, SECRET)
        .map_err(|e| e.to_string())?;
    // Each open by another uid: a record each (alike opens of a batch are one record).
    let by = uids();
    let batches = if quick { 10 } else { 50 };
    let t = Instant::now();
    for _ in 0..batches {
        for by in &by {
            vault.record_open(by, SERVICE, &opened, VersionSlot::Current);
        }
        vault.flush_opens().map_err(|e| e.to_string())?;
    }
    let elapsed = t.elapsed();
    let total = batches * BATCH;
    println!(
        "opens queued and committed in batches of {BATCH}: {total} in {elapsed:.2?}, {:.0} records/s ({:.2} us each)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64() * 1e6 / total as f64
    );
    Ok(())
}

// ---- opens ----

/// The re-executed server: `--serve-audit on|off DATA SOCKET`. Serves until SIGTERM.
fn serve_child(args: &[String]) -> ExitCode {
    let [mode, data, socket, ..] = args else {
        eprintln!("--serve-audit on|off DATA SOCKET");
        return ExitCode::from(2);
    };
    let vault = match Vault::open(Path::new(data), None) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("opening {data}: {e}");
            return ExitCode::FAILURE;
        }
    };
    if mode == "off" {
        vault.disable_open_recording_for_benchmarks();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let socket = PathBuf::from(socket);
    let served = runtime.block_on(async {
        let signals = srv_secrets::serve::Signals::catch()?;
        let listener = srv_secrets::serve::bind_socket(&socket).await?;
        srv_secrets::serve::serve(
            Arc::new(vault),
            vec![(socket.clone(), listener)],
            Vec::new(),
            Vec::new(),
            signals,
        )
        .await
    });
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("serving: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A re-executed server, stopped (SIGTERM, then killed) on drop.
struct Served {
    endpoint: Endpoint,
    child: Child,
}

impl Drop for Served {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(work: &Workdir, which: usize, cpu: Option<usize>) -> Result<Served, String> {
    let name = NAMES[which];
    let dir = work.dir.path().join(name);
    std::fs::create_dir(&dir).map_err(|e| e.to_string())?;
    drop(seeded(&dir)?);
    let data = dir.join("data");
    let socket = work.dir.path().join(format!("{name}.sock"));
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut cmd = match cpu {
        Some(cpu) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpu.to_string()).arg(&exe);
            c
        }
        None => Command::new(&exe),
    };
    let log = std::fs::File::create(work.dir.path().join(format!("{name}.log")))
        .map_err(|e| e.to_string())?;
    let mode = if which == ON { "on" } else { "off" };
    let child = cmd
        .arg("--serve-audit")
        .arg(mode)
        .arg(&data)
        .arg(&socket)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("starting {name}: {e}"))?;
    let served = Served {
        endpoint: Endpoint {
            name: name.to_string(),
            pid: child.id(),
            dialect: Dialect::P9,
            target: Target {
                uname: SERVICE.into(),
                aname: SERVICE.into(),
                n_uname: None,
                path: vec!["secret".into(), SECRET.into()],
            },
            unix: socket.clone(),
            tcp: None,
        },
        child,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{name} did not listen within 30 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(served)
}

fn run_opens(
    schedule: &Schedule,
    cpu: Option<usize>,
    progress: bool,
) -> Result<(Results, PathBuf, Workdir), String> {
    let work = Workdir::new().map_err(|e| format!("work directory: {e}"))?;
    let on = start(&work, ON, cpu)?;
    let off = start(&work, OFF, cpu)?;
    let endpoints = [on.endpoint.clone(), off.endpoint.clone()];
    let results = schedule::run(schedule, &endpoints, progress)?;
    drop(on);
    drop(off);
    let data = work.dir.path().join(NAMES[ON]).join("data");
    Ok((results, data, work))
}

fn opens(args: &Args) -> Result<(), String> {
    println!("== opens: the servers with the audit on and off ==");
    let schedule = args.load.schedule(vec![Transport::Unix], args.quick);
    args.load.pin_client()?;
    let (results, data, _work) = run_opens(&schedule, args.load.server_cpu(), true)?;
    let ratios = [(ON, OFF)];
    let out = args.load.output(&schedule, &NAMES, &results, &ratios, || {
        goals(&schedule, &results)
    });
    print!("{out}");
    // What the audit-on server recorded: every open, or a count of those it could not.
    let vault = Vault::open(&data, None).map_err(|e| e.to_string())?;
    let heads = vault.audit_heads().heads;
    println!(
        "audit-on recorded {} records of opens; verified: {}",
        heads.get(OPENS).map_or(0, |h| h.seq),
        vault.audit_verify(&[]).map_err(|e| e.to_string())?.is_ok()
    );
    Ok(())
}

fn goals(schedule: &Schedule, results: &Results) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\ngoal: audit-on/audit-off >= {GOAL} in ops/s");
    for cell in schedule.cells() {
        let workload = schedule.workloads[cell.workload];
        let (Some(on), Some(off)) = (median_at(results, cell, ON), median_at(results, cell, OFF))
        else {
            let _ = writeln!(
                out,
                "  {:<16} {:>3} conns: failed",
                workload.name(),
                cell.conns
            );
            continue;
        };
        if off.ops_per_sec <= 0.0 {
            continue;
        }
        let ratio = on.ops_per_sec / off.ops_per_sec;
        let _ = writeln!(
            out,
            "  {:<16} {:>3} conns: {ratio:.2} {:<7} ({:.1} vs {:.1} us of server CPU per op){}",
            workload.name(),
            cell.conns,
            if ratio >= GOAL { "met" } else { "MISSED" },
            on.server_cpu_us,
            off.server_cpu_us,
            paired_summary(results, cell, ON, OFF)
        );
    }
    out
}

// ---- verify ----

/// Makes `n` records of opens in batches through the vault, then verifies them: through
/// the vault, and exported, offline. Returns the records verified each way.
fn verify(n: usize) -> Result<(u64, u64), String> {
    println!("== verify: {n} records ==");
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let vault = Arc::new(seeded(tmp.path())?);
    let opened = vault
        .open_secret(SERVICE, SECRET)
        .map_err(|e| e.to_string())?;
    let by = uids();
    let t = Instant::now();
    let mut made = 0;
    while made < n {
        let batch = BATCH.min(n - made);
        for by in &by[..batch] {
            vault.record_open(by, SERVICE, &opened, VersionSlot::Current);
        }
        vault.flush_opens().map_err(|e| e.to_string())?;
        made += batch;
    }
    println!(
        "made {n} records in batches of {BATCH} in {:.2?} (not what is measured)",
        t.elapsed()
    );
    let size = std::fs::metadata(tmp.path().join("data/store.redb"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!("store: {:.0} MiB", size as f64 / (1 << 20) as f64);
    let t = Instant::now();
    let summary = vault
        .audit_verify(&[])
        .map_err(|e| e.to_string())?
        .map_err(|bad| bad.to_string())?;
    let served = t.elapsed();
    println!(
        "verify through the vault (store reads, every link and signature): {} records, {} signatures in {served:.2?}: {:.0} records/s",
        summary.records,
        summary.signatures,
        summary.records as f64 / served.as_secs_f64()
    );
    // Exported as JSON lines, as /secrets/audit serves them, then verified offline.
    let export = tmp.path().join("audit.jsonl");
    let t = Instant::now();
    {
        let mut file =
            std::io::BufWriter::new(std::fs::File::create(&export).map_err(|e| e.to_string())?);
        let mut reader = vault.audit_reader();
        loop {
            let lines = reader.next_lines(1 << 20).map_err(|e| e.to_string())?;
            if lines.is_empty() {
                break;
            }
            file.write_all(&lines).map_err(|e| e.to_string())?;
        }
        file.flush().map_err(|e| e.to_string())?;
    }
    let exported = t.elapsed();
    let key = vault.audit_heads().public_key.ok_or("no public key")?;
    let t = Instant::now();
    let mut v = Verifier::new(key);
    let text = std::fs::read_to_string(&export).map_err(|e| e.to_string())?;
    for (i, line) in text.lines().enumerate() {
        let (record, claimed) = Record::from_json(line).map_err(|e| e.to_string())?;
        v.push(&record, claimed.as_ref(), Some(i as u64 + 1))
            .map_err(|bad| bad.to_string())?;
    }
    let offline = v.finish().map_err(|bad| bad.to_string())?;
    let checked = t.elapsed();
    println!(
        "export as JSON lines: {exported:.2?} ({:.0} MiB); verify the export offline: {} records in {checked:.2?}: {:.0} records/s",
        text.len() as f64 / (1 << 20) as f64,
        offline.records,
        offline.records as f64 / checked.as_secs_f64()
    );
    let heads: BTreeMap<_, _> = offline
        .heads
        .iter()
        .map(|(c, h)| (c.clone(), h.seq))
        .collect();
    println!("heads: {heads:?} (changes holds the seeding's records)");
    Ok((summary.records, offline.records))
}

// ---- test mode ----

fn test_mode() -> ExitCode {
    let (mut passed, mut failed) = (0, 0);
    let mut check = |ok: bool, what: &str| {
        if ok {
            passed += 1;
        } else {
            eprintln!("FAILED: {what}");
            failed += 1;
        }
    };
    check(chain_cost(100, 1) > 0.0, "a chain costs something");
    match verify(3 * BATCH + 5) {
        // Plus the seeding's records of changes.
        Ok((served, offline)) => {
            check(served == offline, "both verifications saw the same records");
            check(served > (3 * BATCH + 5) as u64, "every record was verified");
        }
        Err(e) => check(false, &format!("verify: {e}")),
    }
    let schedule = Schedule::smoke(vec![Transport::Unix]);
    match run_opens(&schedule, None, false) {
        Ok((results, data, _work)) => {
            let (p, f) = smoke_check(&schedule, &NAMES, &results);
            passed += p;
            failed += f;
            match Vault::open(&data, None) {
                Ok(vault) => {
                    let opens = vault.audit_heads().heads.get(OPENS).map_or(0, |h| h.seq);
                    if opens > 0 && vault.audit_heads().heads.contains_key(CHANGES) {
                        passed += 1;
                    } else {
                        eprintln!("FAILED: audit-on recorded no opens");
                        failed += 1;
                    }
                }
                Err(e) => {
                    eprintln!("FAILED: opening audit-on's store: {e}");
                    failed += 1;
                }
            }
        }
        Err(e) => {
            eprintln!("FAILED: smoke run: {e}");
            failed += 1;
        }
    }
    verdict(passed, failed)
}
