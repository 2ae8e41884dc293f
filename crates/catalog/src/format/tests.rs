use proptest::prelude::*;
use proptest::strategy::Strategy as _;

use super::*;
use crate::diff::diff;
use crate::model::Strategy;
use crate::model::check_rule;

const FULL: &str = r#"
[tiers.local_dev]
core = true

[tiers.desktop]

[tiers.cloud]
core = false

[services.web]
tiers = ["local_dev", "desktop"]

[services.worker]

[secrets.postgres_connection]
class = "infrastructure"
owner = "platform team"
rotate_every = "30d"
description = "The app's database.\nOne per install."

[secrets.postgres_connection.tiers.local_dev]
strategy = "serve"
template = "postgres://app:{{password:24}}@db/app"

[secrets.postgres_connection.tiers.desktop]
class = "service"
strategy = "generate"
template = "file://{{USER_DATA}}/app.db"

[secrets.postgres_connection.tiers.cloud]
strategy = "strip"

[secrets.openrouter_key]
class = "user"

[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
help = "From openrouter.ai/keys"
kind = "password"
pattern = "sk-or-[A-Za-z0-9-]+"
min = 20
max = 200
optional = true

[secrets.telegram_token.tiers.cloud]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
present = true
"#;

fn load_toml(src: &str) -> Result<Loaded, LoadError> {
    load(src, Format::Toml, LoadOptions::default())
}

fn refused(e: LoadError) -> Vec<Located> {
    match e {
        LoadError::Refused(r) => r.errors,
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn the_full_example_loads() {
    let c = load_toml(FULL).unwrap().catalog;
    assert!(c.tier("local_dev").unwrap().core);
    assert!(!c.tier("desktop").unwrap().core);
    assert_eq!(c.service_tiers("web"), ["desktop", "local_dev"]);
    assert_eq!(c.service("worker").unwrap().tiers, None);
    let pg = c.secret("postgres_connection").unwrap();
    assert_eq!(pg.class, Some(Class::Infrastructure));
    assert_eq!(pg.rotate_every, Period::parse("30d").unwrap());
    assert_eq!(pg.class_on("desktop"), Some(Class::Service));
    assert_eq!(pg.class_on("cloud"), Some(Class::Infrastructure));
    assert!(matches!(
        &pg.tiers["local_dev"].strategy,
        Strategy::Serve { template: Some(t) } if t.source() == "postgres://app:{{password:24}}@db/app"
    ));
    let Strategy::Prompt(spec) = &c.secret("openrouter_key").unwrap().tiers["desktop"].strategy
    else {
        panic!("not a prompt");
    };
    assert_eq!(spec.kind, PromptKind::Password);
    assert_eq!(
        (spec.min, spec.max, spec.optional),
        (Some(20), Some(200), true)
    );
    assert_eq!(
        spec.pattern.as_ref().unwrap().as_str(),
        "sk-or-[A-Za-z0-9-]+"
    );
    assert_eq!(
        c.secret("telegram_token").unwrap().tiers["cloud"].strategy,
        Strategy::Delegate {
            reference: Reference::parse("github:acme/bot#TELEGRAM_TOKEN").unwrap(),
            present: true
        }
    );
}

#[test]
fn the_export_is_canonical_toml() {
    let c = load_toml(FULL).unwrap().catalog;
    let expected = r#"[tiers.cloud]
core = false

[tiers.desktop]
core = false

[tiers.local_dev]
core = true

[services.web]
tiers = ["desktop", "local_dev"]

[services.worker]

[secrets.openrouter_key]
class = "user"

[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
help = "From openrouter.ai/keys"
kind = "password"
pattern = "sk-or-[A-Za-z0-9-]+"
min = 20
max = 200
optional = true

[secrets.postgres_connection]
class = "infrastructure"
owner = "platform team"
rotate_every = "30d"
description = """
The app's database.
One per install."""

[secrets.postgres_connection.tiers.cloud]
strategy = "strip"

[secrets.postgres_connection.tiers.desktop]
class = "service"
strategy = "generate"
template = "file://{{USER_DATA}}/app.db"

[secrets.postgres_connection.tiers.local_dev]
strategy = "serve"
template = "postgres://app:{{password:24}}@db/app"

[secrets.telegram_token.tiers.cloud]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
present = true
"#;
    assert_eq!(c.to_toml(), expected);
}

#[test]
fn exports_round_trip_in_both_formats() {
    let c = load_toml(FULL).unwrap().catalog;
    for format in [Format::Toml, Format::Json] {
        let first = c.export(format);
        let again = load(&first, format, LoadOptions::default())
            .unwrap()
            .catalog;
        assert_eq!(again, c, "{format:?}");
        assert_eq!(
            again.export(format),
            first,
            "{format:?}: a second export is identical"
        );
        assert!(diff(&c, &again, true).unwrap().is_empty());
    }
    // And across formats.
    let from_json = load(&c.to_json(), Format::Json, LoadOptions::default())
        .unwrap()
        .catalog;
    assert_eq!(from_json.to_toml(), c.to_toml());
}

#[test]
fn syntax_errors_say_where_and_never_show_the_file() {
    let e = load_toml("[secrets.x]\nvalue = \"hunter2\n").unwrap_err();
    let text = e.to_string();
    assert!(text.starts_with("TOML at line 2, column "), "{text}");
    assert!(!text.contains("hunter2"), "{text}");

    // serde would say "invalid type: integer `31337`": a value in the wrong form is not shown.
    let e = load(
        "[secrets.x]\nvalue = 31337\n",
        Format::Toml,
        LoadOptions { allow_values: true },
    )
    .unwrap_err();
    assert!(!e.to_string().contains("31337"), "{e}");
    assert!(e.to_string().contains("a `value` is a string"), "{e}");
    let e = load(
        r#"{"secrets": {"x": {"value": ["hunter2"]}}}"#,
        Format::Json,
        LoadOptions { allow_values: true },
    )
    .unwrap_err();
    assert!(!e.to_string().contains("hunter2"), "{e}");
    assert!(e.to_string().starts_with("JSON at line 1, column "), "{e}");
}

#[test]
fn what_the_file_gave_in_the_wrong_place_is_not_shown() {
    // serde quotes what it got where something else was expected: a `NAME = "VALUE"`
    // table, or a value pasted into the wrong field, would be in the error.
    for (src, format, says) in [
        (
            "[secrets]\ndb = \"postgres://app:hunter2@db\"\n",
            Format::Toml,
            "TOML at line 2, column 6: invalid type: a string, expected struct RawSecret",
        ),
        (
            "[secrets.db]\nclass = \"hunter2\"\n",
            Format::Toml,
            "unknown variant, expected one of `infrastructure`, `service`, `user`",
        ),
        (
            "[secrets.db]\nowner = 31337\n",
            Format::Toml,
            "invalid type: an integer, expected a string",
        ),
        (
            "[secrets.db.tiers.a]\nstrategy = \"hunter2`, expected x\"\n",
            Format::Toml,
            "unknown variant, expected one of `serve`, `strip`",
        ),
        (
            "[secrets.db]\nhunter2 = 1\n",
            Format::Toml,
            "TOML at line 2, column 1: unknown field, expected one of `class`, `owner`",
        ),
        (
            r#"{"secrets": {"db": "postgres://app:hunter2@db"}}"#,
            Format::Json,
            "invalid type: a string, expected struct RawSecret",
        ),
        (
            r#"{"secrets": {"db": {"owner": "a", "class": "hunter2\", expected"}}}"#,
            Format::Json,
            "JSON at line 1, column 64: unknown variant, expected one of `infrastructure`",
        ),
        (
            r#"{"secret_id": "db", "deployment_strategy": {"a": "hunter2"}}"#,
            Format::Json,
            "invalid type: a string, expected struct SeedTier",
        ),
        (
            r#"{"secret_id": "db", "deployment_strategy": {"a": {"hunter2": 1}}}"#,
            Format::Json,
            "unknown field, expected one of `type`, `source`",
        ),
    ] {
        let e = load(src, format, LoadOptions { allow_values: true }).unwrap_err();
        let text = e.to_string();
        assert!(
            !text.contains("hunter2") && !text.contains("31337"),
            "{text}"
        );
        assert!(text.contains(says), "{text}");
    }
}

#[test]
fn field_errors_carry_the_line_and_the_byte() {
    let src = "[tiers.desktop]\n\n[secrets.jwt.tiers.desktop]\nstrategy = \"generate\"\n\
               template = \"key-{{random:hex:4}}\"\n";
    let e = load_toml(src).unwrap_err();
    let LoadError::Syntax { line, message, .. } = &e else {
        panic!("{e}");
    };
    assert_eq!(*line, Some(5));
    assert!(
        message.contains("at byte 17: random takes 8 to 1024 bytes"),
        "{message}"
    );

    let e = load_toml("[tiers.desktop]\n[secrets.x.tiers.desktop]\nstrategy = \"delegate\"\nref = \"POSTGRES_URL\"\n")
        .unwrap_err();
    assert!(matches!(e, LoadError::Syntax { line: Some(4), .. }), "{e}");
    assert!(e.to_string().contains("starts with its scheme"), "{e}");

    let e = load_toml("[secrets.x]\nrotate_every = \"90 days\"\n").unwrap_err();
    assert!(matches!(e, LoadError::Syntax { line: Some(2), .. }), "{e}");
}

#[test]
fn refusals_are_all_listed_at_their_lines() {
    let src = "\
[tiers.local_dev]
core = true
[tiers.desktop]

[secrets.master_key]
class = \"infrastructure\"

[secrets.master_key.tiers.desktop]
strategy = \"generate\"
template = \"{{random:hex:32}}\"

[secrets.cert.tiers.desktop]
strategy = \"serve\"

[secrets.api.tiers.mobile]
strategy = \"strip\"

[secrets.owned]
owner = \"\"
";
    let errors = refused(load_toml(src).unwrap_err());
    let lines: Vec<Option<usize>> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [Some(15), Some(12), Some(8), Some(19)], "{errors:?}");
    assert!(matches!(errors[0].error, DeclError::UnknownTier { .. }));
    assert!(matches!(errors[1].error, DeclError::ServeOffCore { .. }));
    assert!(matches!(
        errors[2].error,
        DeclError::InfrastructureLeaves { .. }
    ));
    assert!(matches!(
        errors[3].error,
        DeclError::Field { field: "owner", .. }
    ));
    let text = errors[2].to_string();
    assert!(
        text.starts_with("line 8: secret `master_key` is infrastructure on tier `desktop`"),
        "{text}"
    );
}

#[test]
fn a_file_refused_everywhere_is_placed_line_by_line_in_time() {
    // A refusal on every other line of a 1 MiB file: placing each must not scan the file
    // or its tables again (that took a minute here, and hours for a 16 MiB file). The
    // bound is generous: it holds on a loaded machine, and fails by far the other way.
    const N: usize = 20_000;
    let mut src = String::from("[tiers.a]\n");
    for i in 0..N {
        src.push_str(&format!(
            "[secrets.s{i:05}.tiers.nope]\nstrategy = \"strip\"\n"
        ));
    }
    let started = std::time::Instant::now();
    let errors = refused(load_toml(&src).unwrap_err());
    let took = started.elapsed();
    assert_eq!(errors.len(), N);
    for (i, e) in errors.iter().enumerate() {
        assert_eq!(e.line, Some(2 + 2 * i), "{e}");
    }
    assert!(
        took < std::time::Duration::from_secs(10),
        "{N} refusals placed in {took:?}"
    );
}

#[test]
fn a_strategy_takes_only_its_fields() {
    for (fields, expect) in [
        (
            "strategy = \"strip\"\ntemplate = \"{{uuid}}\"",
            "`template` goes with",
        ),
        ("strategy = \"generate\"", "needs a `template`"),
        ("strategy = \"prompt\"", "needs a `label`"),
        (
            "strategy = \"prompt\"\nlabel = \"x\"\nref = \"env:X\"",
            "`ref` and `present` go with",
        ),
        (
            "strategy = \"delegate\"\nref = \"env:X\"\nlabel = \"x\"",
            "go with strategy prompt",
        ),
        ("strategy = \"delegate\"", "needs a `ref`"),
    ] {
        let src = format!("[tiers.desktop]\n[secrets.s.tiers.desktop]\n{fields}\n");
        let errors = refused(load_toml(&src).unwrap_err());
        assert_eq!(errors[0].line, Some(2));
        assert!(
            errors[0].to_string().contains(expect),
            "{fields}: {}",
            errors[0]
        );
    }
    for typo in ["templat = \"x\"", "strategy = \"serv\""] {
        let src = format!("[tiers.desktop]\n[secrets.s.tiers.desktop]\n{typo}\n");
        assert!(
            matches!(
                load_toml(&src),
                Err(LoadError::Syntax { line: Some(3), .. })
            ),
            "{typo}"
        );
    }
}

#[test]
fn values_need_with_values() {
    let src = "[tiers.local_dev]\ncore = true\n[secrets.db]\nvalue = \"hunter2\"\n\
               [secrets.db.tiers.local_dev]\nstrategy = \"serve\"\n";
    let errors = refused(load_toml(src).unwrap_err());
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].line, Some(4));
    let text = errors[0].to_string();
    assert!(
        text.contains("git") && text.contains("--with-values"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(errors[0].error.brief().contains("--with-values"));

    let loaded = load(src, Format::Toml, LoadOptions { allow_values: true }).unwrap();
    assert_eq!(loaded.values["db"].expose(), "hunter2");
    assert_eq!(format!("{:?}", loaded.values["db"]), "SecretValue(7 bytes)");
    assert!(!format!("{loaded:?}").contains("hunter2"));
    assert!(!loaded.catalog.to_toml().contains("hunter2"));
    assert!(!loaded.catalog.to_json().contains("hunter2"));
}

#[test]
fn invalid_names_are_refused_and_not_echoed() {
    let src = "[tiers.\"Desk Top\"]\n[services.admin]\n[secrets.\"hunter2 is my password\"]\n";
    let errors = refused(load_toml(src).unwrap_err());
    assert_eq!(errors.len(), 3);
    let text = LoadError::Refused(Refusal { errors }).to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("Desk"),
        "{text}"
    );
    assert!(
        text.contains("line 1: a tier name") && text.contains("line 3: a secret name"),
        "{text}"
    );
}

#[test]
fn json_refuses_a_name_given_twice() {
    let src = r#"{"tiers": {"desktop": {}, "desktop": {"core": true}}}"#;
    let e = load(src, Format::Json, LoadOptions::default()).unwrap_err();
    assert!(e.to_string().contains("appears twice"), "{e}");
    let e = load("[]x", Format::Json, LoadOptions::default()).unwrap_err();
    assert!(matches!(e, LoadError::Syntax { format: "JSON", .. }));
}

#[test]
fn too_large() {
    let big = " ".repeat(MAX_CATALOG_LEN + 1);
    assert_eq!(
        load_toml(&big).unwrap_err(),
        LoadError::TooLarge {
            limit: MAX_CATALOG_LEN
        }
    );
}

#[test]
fn secret_meta_is_serde_for_a_store() {
    let c = load_toml(FULL).unwrap().catalog;
    for meta in c.secrets().values() {
        let json = serde_json::to_string(meta).unwrap();
        let back: SecretMeta = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, meta);
    }
    assert!(serde_json::from_str::<SecretMeta>(r#"{"value": "x"}"#).is_err());
    let e = serde_json::from_str::<SecretMeta>(r#"{"tiers": {"t": {"strategy": "generate"}}}"#)
        .unwrap_err();
    assert!(e.to_string().contains("needs a `template`"), "{e}");
}

#[test]
fn briefs_are_short_and_nameless() {
    let errors = refused(load_toml("[tiers.desktop]\n[secrets.some_long_secret_name.tiers.desktop]\nstrategy = \"serve\"\n").unwrap_err());
    let brief = errors[0].error.brief();
    assert!(brief.len() <= crate::MAX_BRIEF_LEN);
    assert!(!brief.contains("some_long"));
}

const TIERS: [&str; 4] = ["local_dev", "desktop", "cloud", "mobile"];
const TEMPLATES: [&str; 5] = [
    "{{random:hex:32}}",
    "file://{{USER_DATA}}/app.db",
    "postgres://app:{{password:24}}@db/{{service}}",
    "{{uuid}}-{{tier}}",
    "plain \"quoted\" \\ text",
];
const REFERENCES: [&str; 4] = [
    "github:acme/web#TOKEN",
    "gcp:projects/my-project/secrets/db",
    "env:POSTGRES_URL",
    "vault:kv/app#key",
];

fn text() -> impl proptest::strategy::Strategy<Value = String> {
    "[ -~]{1,24}"
}

fn class() -> impl proptest::strategy::Strategy<Value = Option<Class>> {
    prop_oneof![
        Just(None),
        Just(Some(Class::Infrastructure)),
        Just(Some(Class::Service)),
        Just(Some(Class::User)),
    ]
}

fn strategy() -> impl proptest::strategy::Strategy<Value = Strategy> {
    use crate::model::Strategy as S;
    prop_oneof![
        proptest::option::of(0..TEMPLATES.len()).prop_map(|t| S::Serve {
            template: t.map(|i| Template::parse(TEMPLATES[i]).unwrap())
        }),
        Just(S::Strip),
        (0..TEMPLATES.len()).prop_map(|i| S::Generate {
            template: Template::parse(TEMPLATES[i]).unwrap()
        }),
        (
            text(),
            proptest::option::of("[ -~\n\t]{1,40}"),
            0..5usize,
            proptest::option::of(Just("^[a-z]+$")),
            proptest::option::of(0..10i64),
            proptest::option::of(10..100i64),
            any::<bool>()
        )
            .prop_map(|(label, help, kind, pattern, min, max, optional)| {
                S::Prompt(PromptSpec {
                    label,
                    help,
                    kind: [
                        PromptKind::Text,
                        PromptKind::Password,
                        PromptKind::Url,
                        PromptKind::Email,
                        PromptKind::Number,
                    ][kind],
                    pattern: pattern.map(|p| Pattern::new(p).unwrap()),
                    min,
                    max,
                    optional,
                })
            }),
        (0..REFERENCES.len(), any::<bool>()).prop_map(|(i, present)| S::Delegate {
            reference: Reference::parse(REFERENCES[i]).unwrap(),
            present
        }),
    ]
}

fn secret() -> impl proptest::strategy::Strategy<Value = SecretMeta> {
    (
        class(),
        proptest::option::of(text()),
        1..=Period::MAX.minutes(),
        proptest::option::of("[ -~\n\t]{1,60}"),
        proptest::collection::btree_map(0..TIERS.len(), (class(), strategy()), 0..4),
    )
        .prop_map(|(class, owner, minutes, description, tiers)| SecretMeta {
            class,
            owner,
            rotate_every: Period::from_minutes(minutes).unwrap(),
            description,
            tiers: tiers
                .into_iter()
                .map(|(i, (class, strategy))| {
                    (TIERS[i].to_string(), TierPolicy { class, strategy })
                })
                .collect(),
        })
}

prop_compose! {
    fn catalog()(
        cores in proptest::collection::vec(any::<bool>(), TIERS.len()),
        secrets in proptest::collection::btree_map("[A-Za-z0-9._-]{1,12}", secret(), 0..8),
        services in proptest::collection::btree_map(
            "[a-z]{1,6}",
            proptest::option::of(proptest::collection::btree_set(0..TIERS.len(), 0..3)),
            0..3,
        ),
    ) -> Catalog {
        let tiers: BTreeMap<String, Tier> = TIERS
            .iter()
            .zip(cores)
            .map(|(t, core)| (t.to_string(), Tier { core }))
            .collect();
        let mut secrets = secrets;
        secrets.retain(|name, _| crate::names::is_valid_secret(name));
        // Keep only the strategies the rule allows: what a valid catalog can hold.
        for (name, meta) in secrets.iter_mut() {
            let snapshot = meta.clone();
            meta.tiers.retain(|t, p| check_rule(name, t, tiers.get(t), &snapshot, p).is_ok());
        }
        let services = services
            .into_iter()
            .filter(|(name, _)| crate::names::is_valid_service(name))
            .map(|(name, t)| {
                (name, Service { tiers: t.map(|set| set.into_iter().map(|i| TIERS[i].to_string()).collect()) })
            })
            .collect();
        Catalog::from_parts(tiers, services, secrets).unwrap()
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn any_catalog_round_trips(c in catalog()) {
        for format in [Format::Toml, Format::Json] {
            let first = c.export(format);
            let again = load(&first, format, LoadOptions::default())
                .map_err(|e| TestCaseError::fail(format!("{format:?}: {e}\n{first}")))?
                .catalog;
            prop_assert_eq!(&again, &c);
            prop_assert_eq!(again.export(format), first);
            prop_assert!(diff(&c, &again, true).unwrap().is_empty());
        }
    }

    #[test]
    fn any_toml_loads_or_fails_cleanly(src in "(\\[|\\]|[a-z_.]|=|\"|\\{|\\}|\n| |tiers|secrets|strategy|serve|core|true|value){0,60}") {
        let _ = load(&src, Format::Toml, LoadOptions::default());
        let _ = load(&src, Format::Json, LoadOptions::default());
    }
}
