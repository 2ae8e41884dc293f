//! What a `set` costs now that a secret's record holds its previous version beside the
//! current one: every set re-encodes (seals, tags, writes) the previous value too.
//!
//! The real server (release), one admin connection with `/secrets/ctl` open, each command
//! sent as deploy sends it (`set NAME {N}\n` + the value + `\n`, in iounit-sized Twrites)
//! and timed from its first Twrite to the Rwrite of its last: the server applies it and
//! commits it to disk (fsync) before that Rwrite. Per value size (1 KiB, 64 KiB, 1 MiB):
//!
//! - **first set**: a set of a new secret: its record holds one value;
//! - **set again**: a set of a secret that has a current and a previous version: the
//!   record written holds two (the new current, and the old current as previous);
//! - **stage**: for context, `stage` of a secret with both: three values (then `discard`,
//!   not timed).
//!
//! The kinds take turns command by command, in an order that alternates. Each round's
//! figure is the median of its commands (one slow fsync does not move it); printed are
//! every round and the median of the rounds.
//!
//! `--shm` puts the data directory on /dev/shm, where fsync costs nothing: what is left is
//! the server's own work (the 9P transfer, parsing, sealing, encoding, the store's
//! write), which is where the previous version's extra bytes cost.
//!
//! `cargo bench -p srv-secrets-tests --bench set_cost` (add `-- --rounds N --sets N
//! --shm`). Asserts nothing about time.
#![allow(clippy::unwrap_used, reason = "a benchmark fails by panicking")]

use std::path::Path;
use std::time::{Duration, Instant};

use ninep::client::{Client, Fid};
use srv_secrets_tests::bench::{arg, median};
use srv_secrets_tests::harness::SecretsServer;

const SIZES: [(usize, &str); 3] = [(1 << 10, "1 KiB"), (64 << 10, "64 KiB"), (1 << 20, "1 MiB")];

#[derive(Clone, Copy)]
enum Kind {
    First,
    Again,
    Stage,
}

const KINDS: [Kind; 3] = [Kind::First, Kind::Again, Kind::Stage];

/// The ctl fid and where the stream of commands has got to.
struct Ctl {
    fid: Fid,
    offset: u64,
}

impl Ctl {
    /// Sends `command`, which ends in a `{N}` literal's header, then `value` and a
    /// newline; returns how long until the server acknowledged the last write.
    async fn send(&mut self, command: &str, value: &[u8]) -> Duration {
        let mut bytes = Vec::with_capacity(command.len() + value.len() + 1);
        bytes.extend_from_slice(command.as_bytes());
        bytes.extend_from_slice(value);
        bytes.push(b'\n');
        let t = Instant::now();
        self.fid.write_all(self.offset, &bytes).await.unwrap();
        let took = t.elapsed();
        self.offset += bytes.len() as u64;
        took
    }

    async fn line(&mut self, line: &str) {
        self.send(line, b"").await;
    }
}

/// A value of `len` bytes that differs from every other this run makes (xorshift).
fn value(len: usize, seed: &mut u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        out.extend_from_slice(&seed.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let rounds = arg("--rounds", 7);
    let sets = arg("--sets", 15);
    let shm = std::env::args().any(|a| a == "--shm");
    let mut s = SecretsServer::init_under(Path::new(if shm { "/dev/shm" } else { "/tmp" }));
    s.env = vec![("RUST_LOG".into(), "warn".into())];
    s.serve();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    // per_round[size][kind]: each round's median command.
    let mut per_round: Vec<[Vec<Duration>; 3]> = SIZES.iter().map(|_| Default::default()).collect();
    rt.block_on(async {
        let client = Client::connect_unix(&s.socket).await.unwrap();
        let root = client.attach("root", "").await.unwrap();
        let mut fid = root.walk(&["secrets", "ctl"]).await.unwrap();
        fid.open(ninep::om::RDWR).await.unwrap();
        let mut ctl = Ctl { fid, offset: 0 };
        // The secrets set again: a current and a previous version each, from the start.
        for (len, _) in SIZES {
            for _ in 0..2 {
                let v = value(len, &mut seed);
                ctl.send(&format!("set again-{len} {{{len}}}\n"), &v).await;
            }
        }
        println!(
            "set cost: one ctl fid, each command committed before its last Rwrite (data on {}); \
             {rounds} rounds of {sets} commands per kind and size, interleaved",
            s.data.display()
        );
        let mut made = 0usize;
        for round in 0..rounds {
            for (size, &(len, label)) in SIZES.iter().enumerate() {
                let mut samples: [Vec<Duration>; 3] = Default::default();
                for i in 0..sets {
                    let mut order = KINDS;
                    if (round + i) % 2 == 1 {
                        order.reverse();
                    }
                    for kind in order {
                        let v = value(len, &mut seed);
                        let took = match kind {
                            Kind::First => {
                                made += 1;
                                ctl.send(&format!("set first-{made} {{{len}}}\n"), &v).await
                            }
                            Kind::Again => {
                                ctl.send(&format!("set again-{len} {{{len}}}\n"), &v).await
                            }
                            Kind::Stage => {
                                let took = ctl
                                    .send(&format!("stage again-{len} {{{len}}}\n"), &v)
                                    .await;
                                ctl.line(&format!("discard again-{len}")).await;
                                took
                            }
                        };
                        samples[kind as usize].push(took);
                    }
                }
                let round_median = samples.map(|v| median(v).unwrap());
                println!(
                    "round {}: {label:>6}  first set {:>7.2} ms  set again {:>7.2} ms  \
                     stage {:>7.2} ms  again/first {:.2}x",
                    round + 1,
                    ms(round_median[0]),
                    ms(round_median[1]),
                    ms(round_median[2]),
                    round_median[1].as_secs_f64() / round_median[0].as_secs_f64()
                );
                for (k, m) in round_median.into_iter().enumerate() {
                    per_round[size][k].push(m);
                }
            }
        }
        ctl.fid.clunk().await.unwrap();
    });
    // Every command went through: each set and stage made a version, each discard
    // destroyed one, and each secret set again has a current and a previous version.
    for (len, _) in SIZES {
        let history = s.deploy_ok(&["secret", "history", &format!("again-{len}"), "--json"]);
        let history: Vec<serde_json::Value> = serde_json::from_str(&history).unwrap();
        assert_eq!(history[0]["version"], 2 + 2 * rounds * sets);
        let live: Vec<&serde_json::Value> = history
            .iter()
            .map(|v| &v["state"])
            .filter(|s| *s != "destroyed")
            .collect();
        assert_eq!(live, ["current", "previous"]);
    }
    println!(
        "\nmedian of {rounds} rounds, per command\n{:<8} {:>12} {:>12} {:>12} {:>12} {:>12}",
        "size", "first set", "set again", "stage", "again/first", "stage/first"
    );
    for (size, &(_, label)) in SIZES.iter().enumerate() {
        let [first, again, stage] =
            std::array::from_fn(|k| median(per_round[size][k].clone()).unwrap());
        println!(
            "{label:<8} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>11.2}x {:>11.2}x",
            ms(first),
            ms(again),
            ms(stage),
            again.as_secs_f64() / first.as_secs_f64(),
            stage.as_secs_f64() / first.as_secs_f64()
        );
    }
    println!(
        "reproduce: cargo bench -p srv-secrets-tests --bench set_cost -- --rounds {rounds} --sets \
         {sets}{}",
        if shm { " --shm" } else { "" }
    );
    s.stop_ok();
}
