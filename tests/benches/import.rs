//! `deploy secret import` of 5,000 secrets in one transaction, against as many single
//! `deploy secret set`s (timed on a sample and scaled), on the real binaries, interleaved.
//!
//! `cargo bench -p srv-secrets-tests --bench import` (add `-- --rounds N --sets N`).
//! Prints one line per round and the median of each.
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::time::Instant;

use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::harness::SecretsServer;

fn main() {
    const SECRETS: usize = 5000;
    let rounds = arg("--rounds", 5);
    let sample = arg("--sets", 100);
    let s = SecretsServer::start();
    let mut text = String::new();
    for i in 0..SECRETS {
        text.push_str(&format!("S{i:05}={}\n", "v".repeat(32)));
    }
    let file = s.root.path().join("bench.env");
    std::fs::write(&file, &text).unwrap();
    let file = file.display().to_string();
    let (mut imports, mut sets) = (Vec::new(), Vec::new());
    println!("import of {SECRETS} secrets vs {SECRETS} single sets (timed on {sample}, scaled)");
    for round in 1..=rounds {
        let t = Instant::now();
        s.deploy_ok(&["secret", "import", "--dotenv", &file]);
        let import = t.elapsed();
        let t = Instant::now();
        for i in 0..sample {
            let out = s.deploy_with_stdin(&["secret", "set", &format!("one{i}")], b"value");
            assert!(out.status.success());
        }
        let set = t.elapsed() * (SECRETS / sample) as u32;
        println!(
            "round {round}: import {:>8.1} ms   single sets {:>9.1} ms   ratio {:>6.1}x",
            import.as_secs_f64() * 1e3,
            set.as_secs_f64() * 1e3,
            set.as_secs_f64() / import.as_secs_f64()
        );
        imports.push(import);
        sets.push(set);
    }
    let (i, s) = (median(imports).unwrap(), median(sets).unwrap());
    println!(
        "median: import {:.1} ms, single sets {:.1} ms, ratio {:.1}x",
        i.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        s.as_secs_f64() / i.as_secs_f64()
    );
}
