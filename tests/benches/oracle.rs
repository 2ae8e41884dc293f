//! Whether a secret's name is an oracle: does a service that walks to a secret it is not
//! granted (but that exists, granted to another service) get its answer in the same time
//! as for a name that exists nowhere? The error is the same (tests/adversarial/walks.txt
//! checks it byte for byte); this measures the time.
//!
//! The real server, a thousand secrets granted to service api, and one connection of the
//! admin attached to service web's view (`aname=web`, as a kernel mount is: the view and
//! its checks are web's). Each round walks, from web's `secret/` directory, in turns that
//! alternate: `apikey` (exists, api's), a name that exists nowhere, and `db` (web's own,
//! clunked at once) for scale. Printed per round: the median of each kind, and the ratio
//! of the not-granted to the nonexistent; then the median of the rounds' ratios (1.00:
//! no difference).
//!
//! `cargo bench -p srv-secrets-tests --bench oracle` (add `-- --rounds N --walks N`).
//! Asserts nothing about time.
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::time::{Duration, Instant};

use ninep::client::{Client, Fid};
use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::harness::SecretsServer;

/// The three walks, in the order printed.
const KINDS: [&str; 3] = ["not granted", "nonexistent", "granted"];

/// One walk of `name` from `dir`; how long it took, and the error's text if it failed.
async fn walk(dir: &Fid, name: &str) -> (Duration, Option<String>) {
    let t = Instant::now();
    let r = dir.walk(&[name]).await;
    let took = t.elapsed();
    match r {
        Ok(f) => {
            f.clunk().await.unwrap();
            (took, None)
        }
        Err(e) => (took, Some(e.to_string())),
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

fn main() {
    let rounds = arg("--rounds", 15);
    let walks = arg("--walks", 2000);
    let s = SecretsServer::start();
    s.add_service("web", 1301, None);
    s.add_service("api", 1302, None);
    let mut batch =
        String::from("set db {2}\nv1\nset apikey {2}\nv2\ngrant web db\ngrant api apikey\n");
    for i in 0..1000 {
        batch.push_str(&format!(
            "set s{i:04} {{2}}\nv{}\ngrant api s{i:04}\n",
            i % 10
        ));
    }
    let out = srv_secrets_tests::harness::run_with_stdin(
        {
            let mut cmd = std::process::Command::new(&srv_secrets_tests::harness::bins().ninep);
            cmd.args(["--addr", &s.addr(), "write", "/secrets/ctl"]);
            cmd
        },
        batch.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect_unix(s.addr().trim_start_matches("unix:"))
            .await
            .unwrap();
        let root = client.attach("bench", "web").await.unwrap();
        let dir = root.walk(&["secret"]).await.unwrap();
        let names = ["apikey", "nosuch_name", "db"];
        // The same error for both names that are not web's, or the timing means nothing.
        let (_, other) = walk(&dir, names[0]).await;
        let (_, none) = walk(&dir, names[1]).await;
        assert!(other.is_some() && other == none, "{other:?} vs {none:?}");
        println!(
            "walks from web's secret/ over unix, {walks} of each kind per round, medians in µs"
        );
        println!("round  not granted  nonexistent  granted  not granted / nonexistent");
        let mut ratios = Vec::new();
        for round in 0..rounds {
            let mut times: [Vec<f64>; 3] = Default::default();
            for i in 0..walks {
                // Alternate the order, so that neither kind always follows the other.
                let order: [usize; 3] = if i % 2 == 0 { [0, 1, 2] } else { [1, 0, 2] };
                for k in order {
                    let (took, _) = walk(&dir, names[k]).await;
                    times[k].push(micros(took));
                }
            }
            let m: Vec<f64> = times.into_iter().map(|t| median(t).unwrap()).collect();
            let ratio = m[0] / m[1];
            ratios.push(ratio);
            println!(
                "{round:>5}  {:>11.1}  {:>11.1}  {:>7.1}  {ratio:>26.3}",
                m[0], m[1], m[2]
            );
        }
        println!(
            "median of the rounds' ratios ({} / {}): {:.3}",
            KINDS[0],
            KINDS[1],
            median(ratios).unwrap()
        );
    });
}
