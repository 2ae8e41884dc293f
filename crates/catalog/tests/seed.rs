//! Seed 000's metadata example, verbatim (tests/data/seed000.json), through the crate's
//! public API: loading, the class rule, plans, export.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use catalog::{
    Action, Class, DeclError, Format, LoadError, LoadOptions, Reference, StoreFacts, Strategy,
    diff, load, plan,
};

const SEED: &str = include_str!("data/seed000.json");

fn with_values() -> LoadOptions {
    LoadOptions { allow_values: true }
}

#[test]
fn seed_000_gives_serve_generate_and_delegate() {
    let loaded = load(SEED, Format::Json, with_values()).unwrap();
    let c = &loaded.catalog;
    assert!(
        c.tier("local_dev").unwrap().core,
        "secrets_vault makes the tier core"
    );
    assert!(!c.tier("desktop").unwrap().core);
    assert!(!c.tier("cloud").unwrap().core);

    let pg = c.secret("postgres_connection").unwrap();
    assert_eq!(
        pg.class,
        Some(Class::Infrastructure),
        "the class where it is served"
    );
    assert_eq!(pg.class_on("local_dev"), Some(Class::Infrastructure));
    assert_eq!(pg.class_on("desktop"), Some(Class::Service));
    assert_eq!(pg.class_on("cloud"), Some(Class::Service));
    assert_eq!(
        pg.tiers["local_dev"].strategy,
        Strategy::Serve { template: None }
    );
    let Strategy::Generate { template } = &pg.tiers["desktop"].strategy else {
        panic!("desktop: {:?}", pg.tiers["desktop"]);
    };
    assert_eq!(template.source(), "file://{{USER_DATA}}/app.db");
    assert_eq!(
        pg.tiers["cloud"].strategy,
        Strategy::Delegate {
            reference: Reference::parse("env:POSTGRES_URL").unwrap(),
            present: false
        }
    );
    assert_eq!(
        loaded.values["postgres_connection"].expose(),
        "postgresql://localhost:5432/app"
    );
}

#[test]
fn seed_000_plans() {
    let c = load(SEED, Format::Json, with_values()).unwrap().catalog;
    let mut store = StoreFacts::default();
    store.values.insert("postgres_connection".into());
    store
        .grants
        .entry("web".into())
        .or_default()
        .insert("postgres_connection".into());
    let manifest = ["postgres_connection"];

    let local = plan(&c, "web", "local_dev", &manifest, &store);
    assert!(local.ok, "{local}");
    assert!(local.core);
    assert_eq!(local.entries[0].action, Action::Serve { granted: true });
    assert_eq!(local.entries[0].class, Some(Class::Infrastructure));

    let desktop = plan(&c, "web", "desktop", &manifest, &store);
    assert!(desktop.ok, "{desktop}");
    assert_eq!(
        desktop.entries[0].action,
        Action::Generate {
            template: "file://{{USER_DATA}}/app.db".into(),
            target_placeholders: vec!["USER_DATA".into()],
            random: false
        }
    );
    assert_eq!(desktop.entries[0].class, Some(Class::Service));

    let cloud = plan(&c, "web", "cloud", &manifest, &store);
    assert_eq!(
        cloud.entries[0].action,
        Action::Delegate {
            reference: "env:POSTGRES_URL".into(),
            scheme: "env".into(),
            present: false
        }
    );
    assert!(!cloud.ok);
    assert_eq!(
        cloud.problems[0].id,
        "not-present/cloud/postgres_connection"
    );

    // The plan's JSON carries no value.
    let json = serde_json::to_string(&local).unwrap();
    assert!(!json.contains("postgresql://localhost"), "{json}");
}

#[test]
fn seed_000_needs_with_values_for_its_value() {
    let e = load(SEED, Format::Json, LoadOptions::default()).unwrap_err();
    let LoadError::Refused(refusal) = &e else {
        panic!("{e}");
    };
    assert_eq!(refusal.errors.len(), 1);
    assert!(matches!(
        &refusal.errors[0].error,
        DeclError::ValueNotAllowed { secret } if secret == "postgres_connection"
    ));
    let text = e.to_string();
    assert!(
        text.contains("--with-values") && text.contains("git"),
        "{text}"
    );
    assert!(!text.contains("postgresql://"), "{text}");
}

#[test]
fn a_list_of_seed_entries_is_accepted() {
    let list = format!(
        "[{SEED}, {{\"secret_id\": \"jwt_key\", \"deployment_strategy\": {{\"desktop\": \
         {{\"type\": \"service\", \"action\": \"generate_jwt_secret\", \"template\": \
         \"{{{{random:base64url:32}}}}\"}}}}}}]"
    );
    let c = load(&list, Format::Json, with_values()).unwrap().catalog;
    assert_eq!(c.secrets().len(), 2);
    let jwt = c.secret("jwt_key").unwrap();
    assert_eq!(jwt.class, Some(Class::Service));
    assert_eq!(
        jwt.tiers["desktop"].class, None,
        "no override where the tier agrees"
    );
}

#[test]
fn infrastructure_is_refused_off_the_core_server_in_seed_form_too() {
    let leaky = SEED.replace(
        "\"type\": \"service\",\n      \"action\": \"generate_sqlite_path\"",
        "\"type\": \"infrastructure\",\n      \"action\": \"generate_sqlite_path\"",
    );
    assert_ne!(leaky, SEED);
    let e = load(&leaky, Format::Json, with_values()).unwrap_err();
    let LoadError::Refused(refusal) = &e else {
        panic!("{e}");
    };
    assert!(
        refusal.errors.iter().any(|l| matches!(
            &l.error,
            DeclError::InfrastructureLeaves { tier, strategy: "generate", .. } if tier == "desktop"
        )),
        "{e}"
    );
}

#[test]
fn seed_entries_that_say_nothing_clear_are_refused() {
    for (tier_entry, expect) in [
        (
            r#"{"source": "secrets_vault", "action": "generate"}"#,
            "not both",
        ),
        (r#"{"type": "service"}"#, "say what happens"),
        (r#"{"source": "vault"}"#, "unknown `source`"),
        (r#"{"action": "make_it_up"}"#, "unknown `action`"),
        (r#"{"action": "generate_x"}"#, "needs a `template`"),
        (
            r#"{"action": "environment_variable", "template": "x{{A}}"}"#,
            "one variable",
        ),
        (
            r#"{"action": "environment_variable", "template": "{{A}}{{B}}"}"#,
            "one variable",
        ),
        (
            r#"{"action": "strip", "label": "x"}"#,
            "go with action prompt",
        ),
    ] {
        let src = format!(r#"{{"secret_id": "s", "deployment_strategy": {{"t": {tier_entry}}}}}"#);
        let e = load(&src, Format::Json, with_values()).unwrap_err();
        assert!(e.to_string().contains(expect), "{tier_entry}: {e}");
    }
    let twice = format!("[{SEED}, {SEED}]");
    let e = load(&twice, Format::Json, with_values()).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
    let e = load(
        r#"{"secret_id": "s", "extra": 1}"#,
        Format::Json,
        with_values(),
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::Syntax { .. }), "{e}");
    // {{ENV:X}} means X too.
    let src = r#"{"secret_id": "s", "deployment_strategy": {"t": {"action": "environment_variable", "template": "{{ENV:HOME}}"}}}"#;
    let c = load(src, Format::Json, with_values()).unwrap().catalog;
    assert_eq!(
        c.secret("s").unwrap().tiers["t"].strategy,
        Strategy::Delegate {
            reference: Reference::parse("env:HOME").unwrap(),
            present: false
        }
    );
}

#[test]
fn a_seed_catalog_exports_and_round_trips() {
    let c = load(SEED, Format::Json, with_values()).unwrap().catalog;
    let toml = c.to_toml();
    assert!(toml.contains("[tiers.local_dev]\ncore = true"), "{toml}");
    assert!(!toml.contains("postgresql://"), "no values in an export");
    let again = load(&toml, Format::Toml, LoadOptions::default())
        .unwrap()
        .catalog;
    assert_eq!(again, c);
    assert_eq!(again.to_toml(), toml);
    assert!(diff(&c, &again, false).unwrap().is_empty());
    let json = c.to_json();
    let from_json = load(&json, Format::Json, LoadOptions::default())
        .unwrap()
        .catalog;
    assert_eq!(from_json, c);
    assert_eq!(from_json.to_json(), json);
}
