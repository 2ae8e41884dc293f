//! The fuzz targets of `crates/ninep/fuzz`, driven on stable with bounded random input
//! so that CI runs them without a nightly toolchain. Inputs come from a seeded
//! generator: pure noise, and valid frames with bytes flipped, cut or spliced.
//! Regressions found by the fuzzer go in `REGRESSIONS`.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};

use ninep::fuzzing::{fuzz_decode, fuzz_server};
use ninep::*;

/// Crash inputs found earlier, kept as regression tests.
const REGRESSIONS: &[&[u8]] = &[
    // A Twalk naming 17 elements (past MAXWELEM).
    &[
        41, 0, 0, 0, 110, 1, 0, 0, 0, 0, 0, 1, 0, 0, 0, 17, 0, 1, 0, 97, 1, 0, 97, 1, 0, 97, 1, 0,
        97, 1, 0, 97, 1, 0, 97, 1, 0, 97, 1, 0, 97,
    ],
    // A Twrite whose count claims 4 GiB.
    &[
        23, 0, 0, 0, 118, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
    ],
    // A size field below the header size.
    &[3, 0, 0, 0, 100, 255, 255],
];

/// xorshift64*: small, deterministic, good enough to make inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Up to `max - 1` random bytes.
    fn some_bytes(&mut self, max: usize) -> Vec<u8> {
        let n = self.below(max);
        self.bytes(n)
    }
    fn name(&mut self) -> String {
        ["one", "8k", "1m", "empty", "slow", "..", "new", "x/y", ""][self.below(9)].to_string()
    }
}

/// A plausible request, so that mutations land near valid messages.
fn valid_frame(rng: &mut Rng) -> Tframe {
    let fid = rng.below(6) as u32;
    let msg: Tmessage = match rng.below(12) {
        0 => Tattach {
            fid,
            afid: NOFID,
            uname: "f".into(),
            aname: String::new(),
        }
        .into(),
        1 => Twalk {
            fid,
            newfid: rng.below(6) as u32,
            wnames: (0..rng.below(4)).map(|_| rng.name()).collect(),
        }
        .into(),
        2 => Topen {
            fid,
            mode: rng.below(256) as u8,
        }
        .into(),
        3 => Tread {
            fid,
            offset: rng.below(2_000_000) as u64,
            count: rng.below(70_000) as u32,
        }
        .into(),
        4 => Twrite {
            fid,
            offset: rng.below(100) as u64,
            data: rng.some_bytes(200).into(),
        }
        .into(),
        5 => Tclunk { fid }.into(),
        6 => Tremove { fid }.into(),
        7 => Tstat { fid }.into(),
        8 => Twstat {
            fid,
            stat: WrappedStat(Stat {
                name: rng.name(),
                ..Stat::dont_touch()
            }),
        }
        .into(),
        9 => Tcreate {
            fid,
            name: rng.name(),
            perm: [0o644, dm::DIR | 0o755][rng.below(2)],
            mode: rng.below(4) as u8,
        }
        .into(),
        10 => Tflush {
            oldtag: rng.below(8) as u16,
        }
        .into(),
        _ => Tversion {
            msize: rng.below(70_000) as u32,
            version: "9P2000".into(),
        }
        .into(),
    };
    Tframe {
        tag: rng.below(8) as u16,
        msg,
    }
}

fn mutate(rng: &mut Rng, mut b: Vec<u8>) -> Vec<u8> {
    match rng.below(5) {
        0 => {
            for _ in 0..=rng.below(4) {
                let i = rng.below(b.len());
                if let Some(x) = b.get_mut(i) {
                    *x ^= 1 << rng.below(8);
                }
            }
        }
        1 => b.truncate(rng.below(b.len() + 1)),
        2 => {
            let extra = rng.some_bytes(16);
            let at = rng.below(b.len() + 1);
            b.splice(at..at, extra);
        }
        3 => {
            let i = rng.below(b.len());
            if let Some(x) = b.get_mut(i) {
                *x = [0, 0xff, 0x7f, 0x80][rng.below(4)];
            }
        }
        _ => {}
    }
    b
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

fn count_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        PANICS.fetch_add(1, Ordering::SeqCst);
        default(info);
    }));
}

#[test]
fn decoder_on_random_and_mutated_frames() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for r in REGRESSIONS {
        fuzz_decode(r);
    }
    for _ in 0..20_000 {
        let input = if rng.below(4) == 0 {
            let n = rng.below(64);
            rng.bytes(n)
        } else {
            let f = valid_frame(&mut rng).to_bytes();
            mutate(&mut rng, f)
        };
        fuzz_decode(&input);
    }
}

#[test]
fn server_core_on_random_streams() {
    count_panics();
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut streams: Vec<Vec<u8>> = REGRESSIONS.iter().map(|r| r.to_vec()).collect();
    for _ in 0..300 {
        let mut s = Vec::new();
        // Attach first, most of the time, so that fids exist to misuse.
        if rng.below(4) != 0 {
            s.extend(
                Tframe {
                    tag: 0,
                    msg: Tattach {
                        fid: 0,
                        afid: NOFID,
                        uname: "f".into(),
                        aname: String::new(),
                    }
                    .into(),
                }
                .to_bytes(),
            );
        }
        for _ in 0..rng.below(40) {
            let f = valid_frame(&mut rng).to_bytes();
            let f = if rng.below(5) == 0 {
                mutate(&mut rng, f)
            } else {
                f
            };
            s.extend(f);
        }
        streams.push(s);
    }
    for s in &streams {
        let (fs, gate) = common::seeded();
        // Let slow reads through, so that the stream ends in bounded time.
        gate.add_permits(1 << 20);
        fuzz_server(fs, s);
    }
    assert_eq!(
        PANICS.load(Ordering::SeqCst),
        0,
        "a handler or the core panicked"
    );
}
