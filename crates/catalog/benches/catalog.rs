//! Catalog benchmarks (issue 10: a plan over a catalog of 10,000 secrets with a 1,000-secret
//! manifest in under 10 ms; a catalog apply of 10,000 secrets). Prints numbers; asserts
//! nothing about time.
//!
//! `cargo bench -p catalog`

use std::collections::{BTreeMap, HashSet};
use std::hint::black_box;
use std::time::{Duration, Instant};

use catalog::{
    Catalog, Class, Format, LoadOptions, PromptKind, PromptSpec, Reference, SecretMeta, Service,
    StoreFacts, Strategy, Template, Tier, TierPolicy, diff, lint, load, plan,
};

const SECRETS: usize = 10_000;
const MANIFEST: usize = 1_000;
const TIERS: [(&str, bool); 4] = [
    ("local_dev", true),
    ("desktop", false),
    ("mobile", false),
    ("cloud", false),
];

fn policy(i: usize, tier: &str, core: bool) -> Option<TierPolicy> {
    let class = match i % 3 {
        0 => Class::Infrastructure,
        1 => Class::Service,
        _ => Class::User,
    };
    let strategy = if core {
        Strategy::Serve { template: None }
    } else {
        match (class, i % 5) {
            (_, 4) => return None,
            (Class::Infrastructure, _) => Strategy::Strip,
            (Class::Service, 0 | 1) => Strategy::Generate {
                template: Template::parse("postgres://app:{{password:24}}@db/{{service}}").ok()?,
            },
            (Class::Service, _) => Strategy::Delegate {
                reference: Reference::parse(&format!("github:acme/app#SECRET_{i}")).ok()?,
                present: i.is_multiple_of(2),
            },
            (Class::User, _) => {
                let mut spec = PromptSpec::new(format!("Key {i} for {tier}"));
                spec.kind = PromptKind::Password;
                spec.help = Some("Paste it from the provider's console.".into());
                Strategy::Prompt(spec)
            }
        }
    };
    Some(TierPolicy::new(strategy))
}

fn make_catalog(secrets: usize, variant: usize) -> Catalog {
    let tiers: BTreeMap<String, Tier> = TIERS
        .iter()
        .map(|(t, core)| (t.to_string(), Tier { core: *core }))
        .collect();
    let mut metas = BTreeMap::new();
    for i in 0..secrets {
        let class = match i % 3 {
            0 => Class::Infrastructure,
            1 => Class::Service,
            _ => Class::User,
        };
        let mut meta = SecretMeta {
            class: Some(class),
            owner: Some(format!("team-{}", i % 17)),
            description: i.is_multiple_of(4).then(|| format!("secret number {i}")),
            ..SecretMeta::default()
        };
        // Variant 1 changes every tenth secret's owner.
        if variant == 1 && i.is_multiple_of(10) {
            meta.owner = Some("new owner".into());
        }
        for (tier, core) in TIERS {
            if let Some(p) = policy(i, tier, core) {
                meta.tiers.insert(tier.to_string(), p);
            }
        }
        metas.insert(format!("secret_{i:05}"), meta);
    }
    let services = (0..100usize)
        .map(|s| {
            (
                format!("svc{s}"),
                Service {
                    tiers: s
                        .is_multiple_of(2)
                        .then(|| vec!["desktop".into(), "local_dev".into()]),
                },
            )
        })
        .collect();
    match Catalog::from_parts(tiers, services, metas) {
        Ok(c) => c,
        Err(e) => panic!("the benchmark's catalog is refused: {e}"),
    }
}

struct Stats {
    min: Duration,
    median: Duration,
    max: Duration,
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Stats {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed()
        })
        .collect();
    times.sort();
    Stats {
        min: times[0],
        median: times[times.len() / 2],
        max: times[times.len() - 1],
    }
}

/// Like [`time`], with an untimed setup before each run.
fn time_with<S, T>(runs: usize, mut setup: impl FnMut() -> S, mut f: impl FnMut(S) -> T) -> Stats {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let input = setup();
            let start = Instant::now();
            black_box(f(input));
            start.elapsed()
        })
        .collect();
    times.sort();
    Stats {
        min: times[0],
        median: times[times.len() / 2],
        max: times[times.len() - 1],
    }
}

fn report(what: &str, s: &Stats) {
    println!(
        "{what:<58} median {:>9.3} ms   min {:>9.3} ms   max {:>9.3} ms",
        s.median.as_secs_f64() * 1e3,
        s.min.as_secs_f64() * 1e3,
        s.max.as_secs_f64() * 1e3
    );
}

fn main() {
    let build = Instant::now();
    let current = make_catalog(SECRETS, 0);
    println!(
        "built and validated a catalog of {SECRETS} secrets x {} tiers in {:.1} ms",
        TIERS.len(),
        build.elapsed().as_secs_f64() * 1e3
    );

    report(
        "validate (every rule)",
        &time(20, || current.validate().is_ok()),
    );

    let manifest: Vec<String> = (0..MANIFEST)
        .map(|i| format!("secret_{:05}", i * (SECRETS / MANIFEST)))
        .collect();
    let mut store = StoreFacts {
        values: current.secrets().keys().cloned().collect(),
        ..StoreFacts::default()
    };
    store.grants.insert(
        "svc0".into(),
        manifest.iter().step_by(2).cloned().collect::<HashSet<_>>(),
    );

    for (tier, _) in TIERS {
        let s = time(200, || plan(&current, "svc0", tier, &manifest, &store));
        report(
            &format!("plan {MANIFEST} of {SECRETS} secrets, tier {tier}"),
            &s,
        );
    }
    let p = plan(&current, "svc0", "desktop", &manifest, &store);
    let s = time(200, || serde_json::to_string(&p).map(|j| j.len()));
    let json_len = serde_json::to_string(&p).map(|j| j.len()).unwrap_or(0);
    report(&format!("plan as JSON ({json_len} bytes)"), &s);
    let s = time(200, || {
        let p = plan(&current, "svc0", "desktop", &manifest, &store);
        serde_json::to_string(&p).map(|j| j.len())
    });
    report("plan + JSON, desktop", &s);

    let toml = current.to_toml();
    let json = current.to_json();
    report(
        &format!("export TOML ({} bytes)", toml.len()),
        &time(10, || current.to_toml()),
    );
    report(
        &format!("export JSON ({} bytes)", json.len()),
        &time(10, || current.to_json()),
    );
    report(
        "load TOML (parse + every rule)",
        &time(10, || {
            load(&toml, Format::Toml, LoadOptions::default()).is_ok()
        }),
    );
    report(
        "load JSON (parse + every rule)",
        &time(10, || {
            load(&json, Format::Json, LoadOptions::default()).is_ok()
        }),
    );

    let new = make_catalog(SECRETS, 1);
    let d = match diff(&current, &new, false) {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    };
    println!(
        "diff of {SECRETS} secrets, {} changed ({} change lines)",
        d.secrets.len(),
        d.changes().len()
    );
    report(
        "diff (no changes: an export applied)",
        &time(20, || diff(&current, &current, false).is_ok()),
    );
    report(
        "diff (1,000 of 10,000 secrets changed)",
        &time(20, || diff(&current, &new, false).is_ok()),
    );
    report(
        "diff --prune against an empty catalog",
        &time(20, || diff(&current, &Catalog::new(), true).is_ok()),
    );
    report(
        "apply a diff of 1,000 secrets to 10,000 (checks included)",
        &time_with(20, || current.clone(), |mut c| c.apply(&d).is_ok()),
    );
    report(
        "diff + apply, 1,000 of 10,000 changed",
        &time_with(
            20,
            || current.clone(),
            |mut c| diff(&c, &new, false).is_ok_and(|d| c.apply(&d).is_ok()),
        ),
    );
    report(
        "load TOML + diff + apply: `catalog apply FILE` of 10,000",
        &time_with(
            10,
            || new.clone(),
            |mut c| {
                let Ok(loaded) = load(&toml, Format::Toml, LoadOptions::default()) else {
                    return false;
                };
                diff(&c, &loaded.catalog, false).is_ok_and(|d| c.apply(&d).is_ok())
            },
        ),
    );
    report(
        "render of the diff for a person",
        &time(20, || d.to_string().len()),
    );

    let manifests: Vec<(String, Vec<String>)> = (0..100)
        .map(|s| {
            (
                format!("svc{s}"),
                (0..100)
                    .map(|i| format!("secret_{:05}", s * 100 + i))
                    .collect(),
            )
        })
        .collect();
    let findings = lint(
        &current,
        manifests.iter().map(|(s, m)| (s.as_str(), m.as_slice())),
        &store,
        None,
    )
    .findings
    .len();
    report(
        &format!("lint: 100 services x 100 secrets ({findings} findings)"),
        &time(20, || {
            lint(
                &current,
                manifests.iter().map(|(s, m)| (s.as_str(), m.as_slice())),
                &store,
                None,
            )
            .findings
            .len()
        }),
    );
    let t = Template::parse("postgres://app:{{password:24}}@db/{{random:hex:32}}/{{uuid}}");
    if let Ok(t) = t {
        let ctx = catalog::RenderContext::default();
        report(
            "render a template (password, hex, uuid) from the OS RNG",
            &time(1000, || t.render(&ctx).is_ok()),
        );
    }
}
