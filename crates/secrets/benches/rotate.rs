//! Key rotation throughput (and, for context, bulk set, open and read).
//!
//! `cargo bench -p secrets` prints one line per measurement. The number of secrets is
//! `SECRETS_BENCH_N` (default 100000); values are small (32 bytes). The goal is a
//! rotation of 100,000 small secrets well under 5 s on a 2-core machine (release build).
//! Timings are printed, never asserted.

use std::error::Error;
use std::time::Instant;

use secrets::{RotationProgress, Vault};

fn main() -> Result<(), Box<dyn Error>> {
    let n: usize = match std::env::var("SECRETS_BENCH_N") {
        Ok(v) => v.parse()?,
        Err(_) => 100_000,
    };
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, 1000)?;
    let vault = Vault::open(&dir, None)?;

    let started = Instant::now();
    let names: Vec<String> = (0..n).map(|i| format!("secret-{i:07}")).collect();
    for chunk in names.chunks(10_000) {
        vault.set_many(chunk.iter().map(|name| (name, [b'v'; 32])))?;
    }
    report(
        "set_many (10000 per txn)",
        n,
        started.elapsed().as_secs_f64(),
    );

    let batches = std::cell::Cell::new(0u32);
    let started = Instant::now();
    let rotation = vault.rotate_key(&|_: RotationProgress| batches.set(batches.get() + 1))?;
    let secs = started.elapsed().as_secs_f64();
    report("rotate_key", n, secs);
    println!(
        "  key {} -> {}, {} re-encrypted, {} progress calls",
        rotation.old_key,
        rotation.new_key,
        rotation.reencrypted,
        batches.get()
    );

    drop(vault);
    let started = Instant::now();
    let vault = Vault::open(&dir, None)?;
    report(
        "open (load into memory)",
        n,
        started.elapsed().as_secs_f64(),
    );

    vault.service_set_uid("web", 2000)?;
    let granted = names.len().min(1000);
    let grants = &names[..granted];
    for name in grants {
        vault.grant("web", name)?;
    }
    let reads = 200_000;
    let started = Instant::now();
    let mut bytes = 0;
    for i in 0..reads {
        let fid = vault.open_secret("web", &grants[i % granted])?;
        bytes += vault.read_opened("web", &fid)?.len();
    }
    report(
        "open_secret + read_opened",
        reads,
        started.elapsed().as_secs_f64(),
    );
    println!("  {bytes} bytes decrypted");
    Ok(())
}

fn report(what: &str, count: usize, secs: f64) {
    let rate = count as f64 / secs;
    println!("{what}: {count} in {secs:.3} s ({rate:.0}/s)");
}
