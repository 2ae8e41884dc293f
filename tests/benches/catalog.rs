//! The deployment catalog end to end, on the real binaries: `deploy catalog apply` of a
//! catalog of 10,000 secrets (first, unchanged, and with every tenth secret changed),
//! `deploy secret plan` of a 1,000-secret manifest against a server holding them, the lint
//! and an export, and what one declaration costs on a catalog that large (200 `meta`
//! commands over one ctl fid, against 200 `set`s).
//!
//! `cargo bench -p srv-secrets-tests --bench catalog` (add `-- --rounds N`). Prints one
//! line per round and the medians; asserts nothing about time.
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::process::Command;
use std::time::{Duration, Instant};

use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::harness::{SecretsServer, bins, run_with_stdin};

const SECRETS: usize = 10_000;
const MANIFEST: usize = 1_000;
const SINGLES: usize = 200;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A catalog of `SECRETS` secrets on four tiers, as the catalog crate's benchmark makes it:
/// a class each, an owner, strategies that serve, strip, generate, prompt and delegate.
/// `variant` 1 changes every tenth secret's owner.
fn catalog(variant: usize) -> String {
    let mut out = String::from(
        "[tiers.local_dev]\ncore = true\n[tiers.desktop]\ncore = false\n\
         [tiers.mobile]\ncore = false\n[tiers.cloud]\ncore = false\n\n\
         [services.web]\ntiers = [\"local_dev\", \"desktop\", \"cloud\"]\n",
    );
    for i in 0..SECRETS {
        let class = ["infrastructure", "service", "user"][i % 3];
        let owner = if variant == 1 && i % 10 == 0 {
            "new owner".to_string()
        } else {
            format!("team-{}", i % 17)
        };
        out.push_str(&format!(
            "\n[secrets.s{i:05}]\nclass = \"{class}\"\nowner = \"{owner}\"\n\
             [secrets.s{i:05}.tiers.local_dev]\nstrategy = \"serve\"\n"
        ));
        for tier in ["desktop", "mobile", "cloud"] {
            if i % 5 == 4 {
                continue;
            }
            let strategy = match (class, i % 5) {
                ("infrastructure", _) => "strategy = \"strip\"\n".to_string(),
                ("service", 0 | 1) => {
                    "strategy = \"generate\"\ntemplate = \"postgres://app:{{password:24}}@db/{{service}}\"\n"
                        .to_string()
                }
                ("service", _) => format!(
                    "strategy = \"delegate\"\nref = \"github:acme/app#SECRET_{i}\"\npresent = {}\n",
                    i % 2 == 0
                ),
                _ => format!(
                    "strategy = \"prompt\"\nlabel = \"Key {i} for {tier}\"\nkind = \"password\"\n\
                     help = \"Paste it from the provider's console.\"\n"
                ),
            };
            out.push_str(&format!("[secrets.s{i:05}.tiers.{tier}]\n{strategy}"));
        }
    }
    out
}

fn timed(s: &SecretsServer, args: &[&str]) -> Duration {
    let t = Instant::now();
    let out = s.deploy(args);
    let took = t.elapsed();
    // A plan or the lint with findings exits 1; anything else is a failure.
    assert!(
        out.status.code().is_some_and(|c| c <= 1),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

/// `9p rpc secrets/ctl`: one Twrite per line of `input`, on one fid.
fn rpc(s: &SecretsServer, input: &str) -> Duration {
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "rpc", "/secrets/ctl"]);
    let t = Instant::now();
    let out = run_with_stdin(cmd, input.as_bytes());
    let took = t.elapsed();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

fn main() {
    let rounds = arg("--rounds", 3);
    let mut s = SecretsServer::init();
    s.env = vec![("RUST_LOG".into(), "warn".into())];
    s.serve();
    let files = [0, 1].map(|variant| {
        let path = s.root.path().join(format!("catalog{variant}.toml"));
        std::fs::write(&path, catalog(variant)).unwrap();
        path.display().to_string()
    });
    let size = std::fs::metadata(&files[0]).unwrap().len();
    let manifest: String = (0..MANIFEST)
        .map(|i| format!("secret s{:05}\n", i * (SECRETS / MANIFEST)))
        .collect();
    s.add_service("web", 4001, Some(&manifest));
    println!(
        "catalog of {SECRETS} secrets on 4 tiers ({:.1} MiB of TOML), a manifest of {MANIFEST}",
        size as f64 / f64::from(1 << 20)
    );
    let mut m: [Vec<Duration>; 9] = Default::default();
    for round in 1..=rounds {
        // From an empty catalog: everything added.
        timed(&s, &["catalog", "apply", &files[0], "--prune"]);
        let empty = s.root.path().join("empty.toml");
        std::fs::write(&empty, "").unwrap();
        let empty = empty.display().to_string();
        timed(&s, &["catalog", "apply", &empty, "--prune"]);
        let first = timed(&s, &["catalog", "apply", &files[0]]);
        let same = timed(&s, &["catalog", "apply", &files[0]]);
        let tenth = timed(&s, &["catalog", "apply", &files[1]]);
        timed(&s, &["catalog", "apply", &files[0]]);
        let plan = timed(
            &s,
            &[
                "secret",
                "plan",
                "--service",
                "web",
                "--tier",
                "desktop",
                "--json",
            ],
        );
        let lint = timed(&s, &["secret", "lint", "--json"]);
        let export = timed(&s, &["catalog", "export"]);
        let status = timed(&s, &["status"]);
        let metas: String = (0..SINGLES)
            .map(|i| format!("meta s{:05} owner 'round {round}'\n", i * 7))
            .collect();
        let meta = rpc(&s, &metas) / SINGLES as u32;
        let sets: String = (0..SINGLES)
            .map(|i| format!("set v{i} value-{round}\n"))
            .collect();
        let set = rpc(&s, &sets) / SINGLES as u32;
        println!(
            "round {round}: apply {:>7.1} ms (unchanged {:>6.1}, a tenth changed {:>6.1})  plan \
             {:>5.1} ms  lint {:>5.1} ms  export {:>6.1} ms  status {:>4.1} ms  one meta {:>4.2} \
             ms, one set {:>4.2} ms",
            ms(first),
            ms(same),
            ms(tenth),
            ms(plan),
            ms(lint),
            ms(export),
            ms(status),
            ms(meta),
            ms(set),
        );
        for (v, d) in m
            .iter_mut()
            .zip([first, same, tenth, plan, lint, export, status, meta, set])
        {
            v.push(d);
        }
    }
    let [first, same, tenth, plan, lint, export, status, meta, set] = m.map(|v| median(v).unwrap());
    println!(
        "median: apply {:.1} ms (unchanged {:.1}, a tenth changed {:.1}), plan {:.1} ms, lint \
         {:.1} ms, export {:.1} ms, status {:.1} ms; one meta {:.2} ms, one set {:.2} ms",
        ms(first),
        ms(same),
        ms(tenth),
        ms(plan),
        ms(lint),
        ms(export),
        ms(status),
        ms(meta),
        ms(set)
    );
    s.stop_ok();
}
