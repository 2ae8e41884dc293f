use super::*;
use crate::format::{Format, LoadOptions, load};
use crate::model::Strategy;

fn toml(src: &str) -> Catalog {
    load(src, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog
}

const CURRENT: &str = r#"
[tiers.local_dev]
core = true
[tiers.staging]
core = true
[tiers.old]

[services.web]
tiers = ["local_dev"]

[secrets.api_key]
class = "user"
owner = "alice"
[secrets.api_key.tiers.staging]
strategy = "delegate"
ref = "env:API_KEY"
present = true

[secrets.untouched]
[secrets.untouched.tiers.local_dev]
strategy = "serve"
"#;

const NEW: &str = r#"
[tiers.local_dev]
core = true
[tiers.staging]
core = false
[tiers.desktop]

[services.web]
tiers = ["desktop", "local_dev"]

[secrets.api_key]
class = "user"
owner = "bob"
rotate_every = "2w"

[secrets.postgres_connection]
class = "infrastructure"
[secrets.postgres_connection.tiers.local_dev]
strategy = "serve"
[secrets.postgres_connection.tiers.desktop]
class = "service"
strategy = "generate"
template = "file://{{USER_DATA}}/app.db"
"#;

#[test]
fn a_diff_a_person_can_read() {
    let d = diff(&toml(CURRENT), &toml(NEW), false).unwrap();
    assert_eq!(
        d.to_string(),
        "\
+ tier desktop (not core)
~ tier staging: core -> not core
~ service web: tiers local_dev -> tiers desktop, local_dev
~ secret api_key
    ~ owner: \"alice\" -> \"bob\"
    ~ rotate_every: 90d -> 2w
    - tier staging: delegate env:API_KEY (present)
+ secret postgres_connection
    + class: infrastructure
    + tier desktop: generate file://{{USER_DATA}}/app.db; class service here
    + tier local_dev: serve
2 added, 3 changed, 0 removed
"
    );
    assert_eq!(
        d.summary(),
        Summary {
            added: 2,
            changed: 3,
            removed: 0
        }
    );
}

#[test]
fn the_named_get_exactly_the_new_declarations_and_the_rest_is_left_alone() {
    let mut c = toml(CURRENT);
    let new = toml(NEW);
    let d = diff(&c, &new, false).unwrap();
    c.apply(&d).unwrap();
    assert_eq!(
        c.secret("api_key"),
        new.secret("api_key"),
        "exactly its declarations"
    );
    assert!(c.secret("untouched").is_some(), "left alone");
    assert!(c.tier("old").is_some(), "left alone");
    assert!(
        diff(&c, &new, false).unwrap().is_empty(),
        "applying again changes nothing"
    );
}

#[test]
fn prune_removes_the_rest() {
    let mut c = toml(CURRENT);
    let new = toml(NEW);
    let d = diff(&c, &new, true).unwrap();
    let text = d.to_string();
    assert!(text.contains("- tier old (not core)\n"), "{text}");
    assert!(
        text.contains("- secret untouched\n    - tier local_dev: serve\n"),
        "{text}"
    );
    assert!(text.ends_with("2 added, 3 changed, 2 removed\n"), "{text}");
    c.apply(&d).unwrap();
    assert_eq!(c, new);
}

#[test]
fn a_tier_that_stops_being_core_under_a_kept_secret_is_refused() {
    let current = toml(CURRENT);
    let new = toml(
        "[tiers.local_dev]\ncore = false\n[secrets.x.tiers.local_dev]\nstrategy = \"strip\"\n",
    );
    let e = diff(&current, &new, false).unwrap_err();
    let DiffError::Refused(r) = &e else {
        panic!("{e}");
    };
    assert!(
        matches!(&r.errors[0].error, DeclError::ServeOffCore { secret, .. } if secret == "untouched"),
        "{e}"
    );
    // With --prune the secret goes, and so does the conflict.
    assert!(diff(&current, &new, true).is_ok());
}

#[test]
fn a_stale_diff_is_refused_whole() {
    let mut c = toml(CURRENT);
    let d = diff(&c, &toml(NEW), false).unwrap();
    c.set_present("api_key", "staging", false).unwrap();
    let before = c.clone();
    assert_eq!(
        c.apply(&d).unwrap_err(),
        DiffError::Stale {
            what: "secret",
            name: "api_key".into()
        }
    );
    assert_eq!(c, before, "nothing applied");
}

#[test]
fn a_diff_from_elsewhere_is_checked() {
    let mut c = toml(CURRENT);
    let mut d = diff(&c, &toml(NEW), false).unwrap();
    // Tamper: make desktop's strategy ship an infrastructure secret.
    let pg = d
        .secrets
        .iter_mut()
        .find(|s| s.name == "postgres_connection")
        .unwrap();
    pg.after
        .as_mut()
        .unwrap()
        .tiers
        .get_mut("desktop")
        .unwrap()
        .class = None;
    let json = serde_json::to_string(&d).unwrap();
    let tampered: Diff = serde_json::from_str(&json).unwrap();
    let before = c.clone();
    assert!(matches!(c.apply(&tampered), Err(DiffError::Refused(_))));
    assert_eq!(c, before);
}

#[test]
fn changes_as_json() {
    let d = diff(&toml(CURRENT), &toml(NEW), false).unwrap();
    let v = serde_json::to_value(d.changes()).unwrap();
    assert_eq!(
        v[0],
        serde_json::json!({"op": "added", "what": "tier", "tier": "desktop", "after": "not core"})
    );
    assert_eq!(
        v[4],
        serde_json::json!({"op": "changed", "what": "field", "secret": "api_key",
                           "field": "owner", "before": "\"alice\"", "after": "\"bob\""})
    );
    assert!(d.changes().iter().any(|c| c.subject
        == Subject::Strategy {
            secret: "postgres_connection".into(),
            tier: "local_dev".into()
        }
        && c.after.as_deref() == Some("serve")));
}

#[test]
fn no_changes() {
    let c = toml(CURRENT);
    let d = diff(&c, &c, true).unwrap();
    assert!(d.is_empty());
    assert_eq!(d.to_string(), "no changes\n");
    // A strategy that differs only in the present flag is a change.
    let mut other = c.clone();
    other.set_present("api_key", "staging", false).unwrap();
    let d = diff(&c, &other, false).unwrap();
    assert_eq!(
        d.changes()[1].to_string(),
        "    ~ tier staging: delegate env:API_KEY (present) -> delegate env:API_KEY (not present)"
    );
    assert!(matches!(
        d.secrets[0].after.as_ref().unwrap().tiers["staging"].strategy,
        Strategy::Delegate { present: false, .. }
    ));
}

#[test]
fn a_diff_from_elsewhere_cannot_pull_a_tier_from_under_a_secret() {
    use crate::model::Tier;
    let mut c = toml(CURRENT);
    let before = c.clone();
    let not_core = Diff {
        tiers: vec![Delta {
            name: "local_dev".into(),
            before: Some(Tier { core: true }),
            after: Some(Tier { core: false }),
        }],
        ..Diff::default()
    };
    let Err(DiffError::Refused(r)) = c.apply(&not_core) else {
        panic!("applied");
    };
    assert!(
        matches!(&r.errors[0].error, DeclError::ServeOffCore { secret, .. } if secret == "untouched")
    );
    let removed = Diff {
        tiers: vec![Delta {
            name: "local_dev".into(),
            before: Some(Tier { core: true }),
            after: None,
        }],
        ..Diff::default()
    };
    let Err(DiffError::Refused(r)) = c.apply(&removed) else {
        panic!("applied");
    };
    // web lists it, untouched serves on it.
    assert_eq!(r.errors.len(), 2, "{r}");
    assert_eq!(c, before);
}
