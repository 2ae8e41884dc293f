use std::collections::BTreeMap;

use super::*;
use crate::format::{Format, LoadOptions, load};
use crate::model::{Class, SecretMeta, Tier, TierPolicy};
use crate::plan::StoreFacts;
use crate::template::Template;

const CATALOG: &str = r#"
[tiers.local_dev]
core = true
[tiers.desktop]
[tiers.cloud]

[services.web]
tiers = ["local_dev", "desktop"]

[secrets.db_root]
class = "infrastructure"
[secrets.db_root.tiers.local_dev]
strategy = "serve"
[secrets.db_root.tiers.desktop]
strategy = "strip"

[secrets.jwt_key.tiers.local_dev]
strategy = "serve"

[secrets.tg_token]
class = "user"
[secrets.tg_token.tiers.cloud]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
"#;

fn catalog() -> Catalog {
    load(CATALOG, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog
}

fn manifests() -> Vec<(&'static str, Vec<String>)> {
    vec![
        (
            "web",
            vec!["db_root".into(), "jwt_key".into(), "ghost".into()],
        ),
        // No tier list: every declared tier.
        ("bot", vec!["tg_token".into(), "jwt_key".into()]),
    ]
}

fn run(c: &Catalog, tier: Option<&str>) -> Lint {
    let m = manifests();
    let store = StoreFacts {
        values: ["db_root", "jwt_key"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..StoreFacts::default()
    };
    lint(c, m.iter().map(|(s, v)| (*s, v.as_slice())), &store, tier)
}

fn ids(l: &Lint) -> Vec<&str> {
    l.findings.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn every_kind_of_finding() {
    let l = run(&catalog(), None);
    assert!(!l.ok);
    assert_eq!(
        ids(&l),
        [
            "no-class/jwt_key",
            "no-strategy/cloud/jwt_key",
            "no-strategy/desktop/jwt_key",
            "no-strategy/desktop/tg_token",
            "no-strategy/local_dev/tg_token",
            "no-such-secret/web/ghost",
            "not-present/cloud/tg_token",
        ]
    );
    let jwt = l
        .findings
        .iter()
        .find(|f| f.id == "no-strategy/desktop/jwt_key")
        .unwrap();
    assert!(
        jwt.message.contains("(used by bot, web)"),
        "{}",
        jwt.message
    );
    assert_eq!(jwt.service, None, "two services use it");
    let tg = l
        .findings
        .iter()
        .find(|f| f.id == "no-strategy/desktop/tg_token")
        .unwrap();
    assert_eq!(tg.service.as_deref(), Some("bot"));
    assert_eq!(tg.tier.as_deref(), Some("desktop"));
    assert_eq!(tg.secret.as_deref(), Some("tg_token"));
}

#[test]
fn a_finding_names_a_few_of_the_services_using_its_secret_and_counts_the_rest() {
    // 2,000 services use jwt_key, which has no strategy on desktop and cloud: each finding
    // names five of them, not all 2,000 (which made the lint of a large deployment as
    // large as every manifest times every tier).
    let services: Vec<String> = (0..2000).rev().map(|i| format!("svc{i:04}")).collect();
    let manifest = vec!["jwt_key".to_string()];
    let manifests = services.iter().map(|s| (s.as_str(), manifest.as_slice()));
    let l = lint(&catalog(), manifests, &StoreFacts::default(), None);
    let jwt: Vec<&Finding> = l
        .findings
        .iter()
        .filter(|f| f.id.starts_with("no-strategy/"))
        .collect();
    assert_eq!(jwt.len(), 2, "{:?}", ids(&l));
    for f in jwt {
        assert!(
            f.message
                .contains("(used by svc0000, svc0001, svc0002, svc0003, svc0004 and 1995 more)"),
            "{}",
            f.message
        );
        assert!(f.message.len() < 400, "{} bytes", f.message.len());
        assert_eq!(f.service, None);
    }
}

#[test]
fn coverage_per_tier() {
    let l = run(&catalog(), None);
    let by_tier: BTreeMap<&str, (usize, usize, f64)> = l
        .coverage
        .iter()
        .map(|c| (c.tier.as_str(), (c.used, c.with_strategy, c.percent)))
        .collect();
    // cloud: bot's tg_token (has one), jwt_key (has none).
    assert_eq!(by_tier["cloud"], (2, 1, 50.0));
    // desktop: web's db_root (yes), jwt_key (no), ghost (no); bot's tg_token (no).
    assert_eq!(by_tier["desktop"], (4, 1, 25.0));
    // local_dev: db_root, jwt_key (yes), ghost, tg_token (no).
    assert_eq!(by_tier["local_dev"], (4, 2, 50.0));
}

#[test]
fn a_tier_filter_keeps_tierless_findings() {
    let l = run(&catalog(), Some("cloud"));
    assert_eq!(
        ids(&l),
        [
            "no-class/jwt_key",
            "no-strategy/cloud/jwt_key",
            "no-such-secret/web/ghost",
            "not-present/cloud/tg_token",
        ]
    );
    assert_eq!(l.coverage.len(), 1);
    assert_eq!(l.tier.as_deref(), Some("cloud"));
    let l = run(&catalog(), Some("mars"));
    assert!(ids(&l).contains(&"unknown-tier/mars"));
    assert!(l.coverage.is_empty());
}

#[test]
fn a_clean_catalog_is_ok_at_100_percent() {
    let src = "[tiers.local_dev]\ncore = true\n[secrets.k]\nclass = \"service\"\n\
               [secrets.k.tiers.local_dev]\nstrategy = \"serve\"\n";
    let c = load(src, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog;
    let manifest = vec!["k".to_string()];
    let l = lint(
        &c,
        [("web", manifest.as_slice())],
        &StoreFacts::default(),
        None,
    );
    assert!(l.ok, "{l}");
    assert_eq!(l.coverage[0].percent, 100.0);
    assert_eq!(
        l.to_string(),
        "lint: no findings\nTIER       CORE  WITH STRATEGY\nlocal_dev  yes   1/1 (100%)\n"
    );
}

#[test]
fn rules_broken_since_are_reported() {
    let mut meta = SecretMeta {
        class: Some(Class::Infrastructure),
        ..SecretMeta::default()
    };
    meta.tiers.insert(
        "desktop".into(),
        TierPolicy::new(Strategy::Generate {
            template: Template::parse("{{uuid}}").unwrap(),
        }),
    );
    let mut served = SecretMeta {
        class: Some(Class::Service),
        ..SecretMeta::default()
    };
    served.tiers.insert(
        "desktop".into(),
        TierPolicy::new(Strategy::Serve { template: None }),
    );
    served
        .tiers
        .insert("gone".into(), TierPolicy::new(Strategy::Strip));
    let c = Catalog::from_parts_unchecked(
        BTreeMap::from([("desktop".to_string(), Tier::default())]),
        BTreeMap::new(),
        BTreeMap::from([("master".to_string(), meta), ("cert".to_string(), served)]),
    );
    let l = lint(
        &c,
        std::iter::empty::<(&str, &[String])>(),
        &StoreFacts::default(),
        None,
    );
    assert_eq!(
        ids(&l),
        [
            "infrastructure-would-leave/desktop/master",
            "serve-off-core/desktop/cert",
            "unknown-tier/gone/cert",
        ]
    );
}

#[test]
fn ninety_nine_point_nine_is_not_a_hundred() {
    let mut c = Catalog::new();
    c.declare_tier("t", Tier::default()).unwrap();
    let mut manifest = Vec::new();
    for i in 0..1000 {
        let name = format!("s{i}");
        if i > 0 {
            c.set_strategy(&name, "t", TierPolicy::new(Strategy::Strip))
                .unwrap();
        }
        manifest.push(name);
    }
    let store = StoreFacts {
        values: manifest.iter().cloned().collect(),
        ..StoreFacts::default()
    };
    let l = lint(&c, [("web", manifest.as_slice())], &store, None);
    assert_eq!(l.coverage[0].percent, 99.9);
    assert!(l.to_string().contains("999/1000 (99.9%)"));
}

#[test]
fn the_json_has_stable_ids() {
    let l = run(&catalog(), None);
    let v = serde_json::to_value(&l).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["findings"][0]["id"], "no-class/jwt_key");
    assert_eq!(v["findings"][0]["kind"], "no-class");
    assert_eq!(v["coverage"][0]["tier"], "cloud");
    let back: Lint = serde_json::from_value(v).unwrap();
    assert_eq!(back, l);
    assert_eq!(run(&catalog(), None), l, "two runs agree");
}
