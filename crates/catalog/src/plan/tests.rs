use std::collections::BTreeMap;

use super::*;
use crate::format::{Format, LoadOptions, load};
use crate::model::{SecretMeta, Tier, TierPolicy};
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

[secrets.jwt_key]
class = "service"
[secrets.jwt_key.tiers.local_dev]
strategy = "serve"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"

[secrets.openrouter_key]
class = "user"
[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
kind = "password"

[secrets.tg_token]
class = "user"
[secrets.tg_token.tiers.desktop]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
"#;

fn catalog() -> Catalog {
    load(CATALOG, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog
}

fn store(values: &[&str], granted: &[&str]) -> StoreFacts {
    let mut s = StoreFacts::default();
    s.values.extend(values.iter().map(|v| v.to_string()));
    s.grants
        .entry("web".into())
        .or_default()
        .extend(granted.iter().map(|v| v.to_string()));
    s
}

fn ids(p: &Plan) -> Vec<&str> {
    p.problems.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn a_desktop_plan() {
    let manifest = [
        "db_root",
        "jwt_key",
        "openrouter_key",
        "tg_token",
        "untracked",
        "ghost",
    ];
    let p = plan(
        &catalog(),
        "web",
        "desktop",
        &manifest,
        &store(&["db_root", "jwt_key", "untracked"], &[]),
    );
    assert!(!p.core && p.tier_declared && !p.ok);
    let actions: Vec<String> = p.entries.iter().map(|e| e.action.describe()).collect();
    assert_eq!(
        actions,
        [
            "strip",
            "generate {{random:base64url:32}}",
            "prompt \"OpenRouter API key\" (password)",
            "delegate github:acme/bot#TELEGRAM_TOKEN (not present)",
            "(no strategy)",
            "(no strategy)",
        ]
    );
    assert_eq!(
        ids(&p),
        [
            "not-present/desktop/tg_token",
            "no-strategy/desktop/untracked",
            "no-such-secret/web/ghost",
        ]
    );
    assert_eq!(
        p.counts,
        Counts {
            strip: 1,
            generate: 1,
            prompt: 1,
            delegate: 1,
            none: 2,
            ..Counts::default()
        }
    );
    assert_eq!(p.entries[4].class, None);
    assert!(!p.entries[4].in_catalog && p.entries[4].stored);
    assert!(!p.entries[5].in_catalog && !p.entries[5].stored);
}

#[test]
fn a_core_plan_checks_grants_and_values() {
    let c = catalog();
    let manifest = ["db_root", "jwt_key"];
    let p = plan(
        &c,
        "web",
        "local_dev",
        &manifest,
        &store(&["db_root", "jwt_key"], &["db_root", "jwt_key"]),
    );
    assert!(p.ok, "{p}");
    assert!(p.core);
    let p = plan(
        &c,
        "web",
        "local_dev",
        &manifest,
        &store(&["db_root"], &["db_root"]),
    );
    assert_eq!(ids(&p), ["not-granted/web/jwt_key", "no-value/jwt_key"]);
    assert_eq!(p.entries[1].action, Action::Serve { granted: false });
}

#[test]
fn unknown_and_unlisted_tiers() {
    let c = catalog();
    let p = plan(&c, "web", "mobile", &["jwt_key"], &store(&[], &[]));
    assert!(!p.tier_declared && !p.core);
    assert_eq!(ids(&p), ["unknown-tier/mobile"]);
    assert_eq!(p.entries[0].action, Action::None);

    let p = plan(&c, "web", "cloud", &["db_root"], &store(&["db_root"], &[]));
    assert_eq!(
        ids(&p),
        ["tier-not-listed/web/cloud", "no-strategy/cloud/db_root"]
    );
    assert!(
        p.problems[0]
            .message
            .contains("deployed to desktop, local_dev"),
        "{}",
        p.problems[0].message
    );
}

#[test]
fn a_strategy_broken_since_is_blocked_never_shipped() {
    // A catalog reloaded from a store, written before the class became infrastructure.
    let mut meta = SecretMeta {
        class: Some(crate::model::Class::Infrastructure),
        ..SecretMeta::default()
    };
    meta.tiers.insert(
        "desktop".into(),
        TierPolicy::new(Strategy::Generate {
            template: Template::parse("{{random:hex:32}}").unwrap(),
        }),
    );
    meta.tiers.insert(
        "cloud".into(),
        TierPolicy::new(Strategy::Serve { template: None }),
    );
    let tiers = BTreeMap::from([
        ("desktop".to_string(), Tier::default()),
        ("cloud".to_string(), Tier::default()),
    ]);
    let c = Catalog::from_parts_unchecked(
        tiers,
        BTreeMap::new(),
        BTreeMap::from([("master".to_string(), meta)]),
    );
    let p = plan(
        &c,
        "web",
        "desktop",
        &["master"],
        &store(&["master"], &["master"]),
    );
    assert_eq!(
        p.entries[0].action,
        Action::Blocked {
            declared: "generate".into(),
            reason: FindingKind::InfrastructureWouldLeave
        }
    );
    assert_eq!(ids(&p), ["infrastructure-would-leave/desktop/master"]);
    let p = plan(
        &c,
        "web",
        "cloud",
        &["master"],
        &store(&["master"], &["master"]),
    );
    assert!(matches!(p.entries[0].action, Action::Blocked { .. }));
    assert_eq!(p.counts.blocked, 1);
}

#[test]
fn the_json_shape() {
    let p = plan(
        &catalog(),
        "web",
        "desktop",
        &["jwt_key", "openrouter_key", "tg_token"],
        &store(&[], &[]),
    );
    let v: serde_json::Value = serde_json::to_value(&p).unwrap();
    assert_eq!(v["service"], "web");
    assert_eq!(v["tier"], "desktop");
    assert_eq!(v["core"], false);
    assert_eq!(v["tier_declared"], true);
    assert_eq!(v["ok"], false);
    assert_eq!(
        v["entries"][0],
        serde_json::json!({
            "secret": "jwt_key", "class": "service", "in_catalog": true, "stored": false,
            "action": "generate", "template": "{{random:base64url:32}}",
            "target_placeholders": [], "random": true
        })
    );
    assert_eq!(
        v["entries"][1]["prompt"],
        serde_json::json!({"label": "OpenRouter API key", "kind": "password", "optional": false})
    );
    assert_eq!(v["entries"][2]["ref"], "github:acme/bot#TELEGRAM_TOKEN");
    assert_eq!(v["entries"][2]["scheme"], "github");
    assert_eq!(v["problems"][0]["id"], "not-present/desktop/tg_token");
    assert_eq!(v["problems"][0]["kind"], "not-present");
    assert_eq!(v["counts"]["delegate"], 1);
    // A client reads it back (deploy renders the server's JSON).
    let back: Plan = serde_json::from_value(v).unwrap();
    assert_eq!(back, p);
}

#[test]
fn the_table() {
    let p = plan(
        &catalog(),
        "web",
        "desktop",
        &["db_root", "tg_token"],
        &store(&[], &[]),
    );
    let text = p.to_string();
    assert_eq!(
        text,
        "plan for service web on tier desktop (not core): 2 secrets, 1 problem\n\
         SECRET    CLASS           ACTION\n\
         db_root   infrastructure  strip\n\
         tg_token  user            delegate github:acme/bot#TELEGRAM_TOKEN (not present)\n\
         problem not-present/desktop/tg_token: secret `tg_token` is delegated to \
         github:acme/bot#TELEGRAM_TOKEN on tier `desktop`, and not marked present; once the \
         provider holds it: deploy secret present tg_token --tier desktop\n"
    );
}
