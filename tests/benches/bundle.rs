//! Bundle creation for a 100-secret manifest, on the real binaries: `deploy bundle create`
//! end to end (plan, issue, the files written and synced), the server's own part (many
//! `bundle create` commands on one ctl fid, so that a process start is not counted), and
//! `bundle identify` against the records they leave.
//!
//! The manifest: 40 generated (random bytes, passwords, a path template), 20 prompted, 20
//! delegated, 20 infrastructure stripped, each of those with a stored value (which a
//! bundle is checked not to hold), beside 1,000 other stored secrets.
//!
//! `cargo bench -p srv-secrets-tests --bench bundle` (add `-- --rounds N`). Prints one
//! line per round and the medians; asserts nothing about time.
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::process::Command;
use std::time::{Duration, Instant};

use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::harness::{SecretsServer, bins, run_with_stdin};

const MANIFEST: usize = 100;
const OTHERS: usize = 1_000;
/// Bundles issued per round over one ctl fid.
const BATCH: usize = 50;

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn catalog() -> String {
    let mut out = String::from("[tiers.local_dev]\ncore = true\n[tiers.desktop]\n");
    for i in 0..MANIFEST {
        let (class, strategy) = match i % 5 {
            0 | 1 => (
                "service",
                match i % 3 {
                    0 => "strategy = \"generate\"\ntemplate = \"{{random:base64url:32}}\"\n",
                    1 => {
                        "strategy = \"generate\"\ntemplate = \"postgres://app:{{password:24}}@db/\
                         {{deployment}}\"\n"
                    }
                    _ => "strategy = \"generate\"\ntemplate = \"file://{{USER_DATA}}/app.db\"\n",
                }
                .to_string(),
            ),
            2 => (
                "user",
                format!(
                    "strategy = \"prompt\"\nlabel = \"Key {i}\"\nkind = \"password\"\n\
                     pattern = \"sk-[a-z0-9]+\"\n"
                ),
            ),
            3 => (
                "user",
                format!("strategy = \"delegate\"\nref = \"github:acme/app#SECRET_{i}\"\n"),
            ),
            _ => ("infrastructure", "strategy = \"strip\"\n".to_string()),
        };
        out.push_str(&format!(
            "\n[secrets.s{i:03}]\nclass = \"{class}\"\n[secrets.s{i:03}.tiers.desktop]\n{strategy}"
        ));
    }
    out
}

/// `9p rpc secrets/ctl` with `input`: how long it took, and its output.
fn rpc(s: &SecretsServer, input: &[u8]) -> (Duration, Vec<u8>) {
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "rpc", "/secrets/ctl"]);
    let t = Instant::now();
    let out = run_with_stdin(cmd, input);
    let took = t.elapsed();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (took, out.stdout)
}

fn main() {
    let rounds = arg("--rounds", 5);
    let mut s = SecretsServer::init();
    s.env = vec![("RUST_LOG".into(), "warn".into())];
    s.serve();
    let path = s.root.path().join("catalog.toml");
    std::fs::write(&path, catalog()).unwrap();
    s.deploy_ok(&["catalog", "apply", path.to_str().unwrap()]);
    let manifest: String = (0..MANIFEST).map(|i| format!("secret s{i:03}\n")).collect();
    s.add_service("web", 4001, Some(&manifest));
    let mut values = String::from("begin\n");
    for i in (4..MANIFEST).step_by(5) {
        values.push_str(&format!("set s{i:03} infrastructure-value-{i:05}\n"));
    }
    for i in 0..OTHERS {
        values.push_str(&format!("set other{i:04} some-stored-value-{i:08}\n"));
    }
    values.push_str("commit\n");
    rpc(&s, values.as_bytes());
    println!(
        "a manifest of {MANIFEST} secrets (40 generated, 20 prompted, 20 delegated, 20 \
         stripped), {} stored values",
        OTHERS + MANIFEST / 5
    );
    let mut m: [Vec<Duration>; 4] = Default::default();
    let mut issued = 0;
    for round in 1..=rounds {
        let dir = s.root.path().join(format!("bundle-{round}"));
        let t = Instant::now();
        let deployment = format!("deploy-{round}");
        s.deploy_ok(&[
            "bundle",
            "create",
            "--service",
            "web",
            "--tier",
            "desktop",
            "--deployment",
            &deployment,
            "--out",
            dir.to_str().unwrap(),
        ]);
        let create = t.elapsed();
        let jwt = std::fs::read(dir.join("values/s000")).unwrap();
        let one_file = s.root.path().join(format!("bundle-{round}.json"));
        let t = Instant::now();
        s.deploy_ok(&[
            "bundle",
            "create",
            "--service",
            "web",
            "--tier",
            "desktop",
            "--deployment",
            &format!("json-{round}"),
            "--out",
            one_file.to_str().unwrap(),
            "--format",
            "json",
        ]);
        let json = t.elapsed();
        let batch: String = (0..BATCH)
            .map(|i| format!("bundle create web desktop batch-{round}-{i}\n"))
            .collect();
        let (took, _) = rpc(&s, batch.as_bytes());
        let server = took / BATCH as u32;
        issued += BATCH + 2;
        let mut asks = Vec::new();
        for _ in 0..BATCH {
            asks.extend_from_slice(format!("bundle identify {{{}}}\n", jwt.len()).as_bytes());
            asks.extend_from_slice(&jwt);
            asks.push(b'\n');
        }
        let (took, out) = rpc(&s, &asks);
        assert!(String::from_utf8_lossy(&out).contains("found=1"));
        let identify = took / BATCH as u32;
        println!(
            "round {round}: deploy bundle create {:>6.1} ms (--format json {:>6.1} ms)   one \
             bundle create on a ctl fid {:>5.2} ms   one identify {:>5.3} ms   ({issued} bundles \
             on record)",
            ms(create),
            ms(json),
            ms(server),
            ms(identify)
        );
        for (v, d) in m.iter_mut().zip([create, json, server, identify]) {
            v.push(d);
        }
    }
    let [create, json, server, identify] = m.map(|v| median(v).unwrap());
    println!(
        "median: deploy bundle create {:.1} ms (--format json {:.1} ms), one bundle create on \
         a ctl fid {:.2} ms, one identify {:.3} ms",
        ms(create),
        ms(json),
        ms(server),
        ms(identify)
    );
    s.stop_ok();
}
