//! The deployment catalog in the vault, through its public API: stored with the rest,
//! changed only through `Vault::apply` (mixed with sets and grants, all or none), kept
//! across restarts, rotations and backups.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use catalog::{
    Class, DeclError, Format, LoadOptions, MetaUpdate, Period, Reference, Strategy, Template,
    TierPolicy, load,
};
use secrets::{Actor, Applied, Change, Error, Vault};

const ADMIN: u32 = 1000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, ADMIN).unwrap();
    (tmp, dir)
}

fn apply(v: &Vault, changes: &[Change<'_>]) -> Result<Vec<Applied>, secrets::ChangeError> {
    v.apply(&Actor::admin(Some(ADMIN)), changes)
}

fn one(v: &Vault, change: Change<'_>) -> Result<Applied, Error> {
    apply(v, &[change])
        .map(|mut a| a.remove(0))
        .map_err(|e| e.error)
}

fn template(t: &str) -> Template {
    Template::parse(t).unwrap()
}

fn class(c: Class) -> MetaUpdate {
    MetaUpdate {
        class: Some(Some(c)),
        ..MetaUpdate::default()
    }
}

/// local_dev (core), desktop and cloud.
fn tiers(v: &Vault) {
    for (tier, core) in [("local_dev", true), ("desktop", false), ("cloud", false)] {
        one(v, Change::TierDeclare { tier, core }).unwrap();
    }
}

const SEED: &str = r#"{
  "secret_id": "postgres_connection",
  "deployment_strategy": {
    "local_dev": { "type": "infrastructure", "source": "secrets_vault",
                   "value": "postgresql://localhost:5432/app" },
    "desktop": { "type": "service", "action": "generate_sqlite_path",
                 "template": "file://{{USER_DATA}}/app.db" },
    "cloud": { "type": "service", "action": "environment_variable",
               "template": "{{POSTGRES_URL}}" }
  }
}"#;

#[test]
fn declarations_are_kept_across_a_restart() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    tiers(&v);
    let update = MetaUpdate {
        class: Some(Some(Class::Service)),
        owner: Some(Some("platform team".into())),
        rotate_every: Some(Some(Period::parse("30d").unwrap())),
        description: Some(Some("signs the API's tokens".into())),
    };
    assert_eq!(
        one(
            &v,
            Change::Meta {
                name: "jwt_key",
                update: &update
            }
        )
        .unwrap(),
        Applied::MetaSet {
            created: true,
            changed: true
        }
    );
    let serve = TierPolicy::new(Strategy::Serve {
        template: Some(template("{{random:base64url:32}}")),
    });
    let delegate = TierPolicy::new(Strategy::Delegate {
        reference: Reference::parse("env:JWT_KEY").unwrap(),
        present: false,
    });
    for (tier, policy) in [("local_dev", &serve), ("cloud", &delegate)] {
        one(
            &v,
            Change::Strategy {
                name: "jwt_key",
                tier,
                policy,
            },
        )
        .unwrap();
    }
    one(
        &v,
        Change::Present {
            name: "jwt_key",
            tier: "cloud",
            present: true,
        },
    )
    .unwrap();
    let listed = ["desktop".to_string(), "local_dev".to_string()];
    one(
        &v,
        Change::ServiceTiers {
            service: "web",
            tiers: Some(&listed),
        },
    )
    .unwrap();
    let before = v.catalog().to_toml();
    drop(v);
    let v = Vault::open(&dir, None).unwrap();
    assert_eq!(v.catalog().to_toml(), before);
    let meta = v.catalog().secret("jwt_key").cloned().unwrap();
    assert_eq!(meta.owner.as_deref(), Some("platform team"));
    assert!(matches!(
        meta.tiers["cloud"].strategy,
        Strategy::Delegate { present: true, .. }
    ));
    assert_eq!(
        v.catalog()
            .service("web")
            .unwrap()
            .tiers
            .as_deref()
            .unwrap(),
        listed
    );
    // Metadata needs no value: jwt_key has none, and none was made.
    assert!(v.secret_info("jwt_key").is_none());
}

#[test]
fn infrastructure_never_leaves_the_core_server() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    tiers(&v);
    one(
        &v,
        Change::Meta {
            name: "db_root",
            update: &class(Class::Infrastructure),
        },
    )
    .unwrap();
    let generate = TierPolicy::new(Strategy::Generate {
        template: template("{{password:24}}"),
    });
    let e = one(
        &v,
        Change::Strategy {
            name: "db_root",
            tier: "desktop",
            policy: &generate,
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Declaration(DeclError::InfrastructureLeaves { .. })
        ),
        "{e:?}"
    );
    assert!(
        e.to_string().contains("never leaves the core server"),
        "{e}"
    );
    // Not even as a class given on the tier, nor served off core.
    let infra_here = TierPolicy {
        class: Some(Class::Infrastructure),
        strategy: Strategy::Generate {
            template: template("{{uuid}}"),
        },
    };
    for (tier, policy) in [
        ("cloud", infra_here),
        ("cloud", TierPolicy::new(Strategy::Serve { template: None })),
    ] {
        assert!(
            one(
                &v,
                Change::Strategy {
                    name: "db_root",
                    tier,
                    policy: &policy
                }
            )
            .is_err()
        );
    }
    // Served on the core tier, the tier cannot stop being core.
    let serve = TierPolicy::new(Strategy::Serve { template: None });
    one(
        &v,
        Change::Strategy {
            name: "db_root",
            tier: "local_dev",
            policy: &serve,
        },
    )
    .unwrap();
    let e = one(
        &v,
        Change::TierDeclare {
            tier: "local_dev",
            core: false,
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::Declaration(_)), "{e:?}");
    assert!(v.catalog().tier("local_dev").unwrap().core);
    // Nor be removed while named.
    let e = one(&v, Change::TierRemove { tier: "local_dev" }).unwrap_err();
    assert!(
        matches!(e, Error::Declaration(DeclError::TierInUse { uses: 1, .. })),
        "{e:?}"
    );
    assert!(matches!(
        one(&v, Change::TierRemove { tier: "mobile" }),
        Err(Error::NoSuchTier)
    ));
    // A bad tier name is not echoed.
    let e = one(
        &v,
        Change::TierDeclare {
            tier: "Bad Tier",
            core: false,
        },
    )
    .unwrap_err();
    assert!(!e.to_string().contains("Bad"), "{e}");
}

#[test]
fn a_transaction_sees_its_own_declarations_and_applies_all_or_none() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    let serve = TierPolicy::new(Strategy::Serve {
        template: Some(template("{{random:hex:32}}")),
    });
    let strip = TierPolicy::new(Strategy::Strip);
    let infra = class(Class::Infrastructure);
    let changes = [
        Change::TierDeclare {
            tier: "core",
            core: true,
        },
        Change::TierDeclare {
            tier: "edge",
            core: false,
        },
        Change::Meta {
            name: "api_key",
            update: &infra,
        },
        // Needs the tier declared two changes before.
        Change::Strategy {
            name: "api_key",
            tier: "core",
            policy: &serve,
        },
        Change::Strategy {
            name: "api_key",
            tier: "edge",
            policy: &strip,
        },
        // Renders the core tier's template declared just before.
        Change::Generate {
            name: "api_key",
            template: None,
        },
        Change::ServiceUid {
            service: "web",
            uid: 1001,
        },
        Change::Grant {
            service: "web",
            name: "api_key",
            expires_in: None,
        },
    ];
    let applied = apply(&v, &changes).unwrap();
    assert_eq!(applied[5], Applied::Set { version: 1 });
    let value = v.reveal("api_key").unwrap();
    assert_eq!(value.expose().len(), 64);
    assert!(value.expose().iter().all(u8::is_ascii_hexdigit));
    assert!(v.is_granted("web", "api_key"));

    // A failing last change: nothing of the list applies, declarations included.
    let generate = TierPolicy::new(Strategy::Generate {
        template: template("{{uuid}}"),
    });
    let e = apply(
        &v,
        &[
            Change::TierDeclare {
                tier: "mobile",
                core: false,
            },
            Change::Set {
                name: "other",
                value: b"1",
            },
            Change::Strategy {
                name: "api_key",
                tier: "mobile",
                policy: &generate,
            },
        ],
    )
    .unwrap_err();
    assert_eq!(e.index, 2);
    assert!(v.catalog().tier("mobile").is_none());
    assert!(v.secret_info("other").is_none());

    // A template that needs what a stored value has not is refused, saying where.
    let needs_service = template("db-{{service}}-{{random:hex:16}}");
    let e = one(
        &v,
        Change::Generate {
            name: "other",
            template: Some(&needs_service),
        },
    )
    .unwrap_err();
    assert!(e.to_string().contains("at byte 3"), "{e}");
    // No template given, none on a core tier.
    assert!(matches!(
        one(
            &v,
            Change::Generate {
                name: "nothing",
                template: None
            }
        ),
        Err(Error::NoTemplate)
    ));
}

#[test]
fn deleting_a_secret_keeps_its_declaration() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    tiers(&v);
    one(
        &v,
        Change::Meta {
            name: "db",
            update: &class(Class::Service),
        },
    )
    .unwrap();
    v.set("db", b"secret").unwrap();
    v.delete("db").unwrap();
    assert!(v.secret_info("db").is_none());
    assert_eq!(
        v.catalog().secret("db").unwrap().class,
        Some(Class::Service)
    );
    one(&v, Change::MetaRemove { name: "db" }).unwrap();
    assert!(v.catalog().secret("db").is_none());
    assert!(matches!(
        one(&v, Change::MetaRemove { name: "db" }),
        Err(Error::Declaration(DeclError::NoSuchSecret { .. }))
    ));
}

#[test]
fn seed_000_applied_with_values() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    let loaded = load(SEED, Format::Json, LoadOptions { allow_values: true }).unwrap();
    // A dry run says what would change, and changes nothing.
    let dry = v.catalog_diff(&loaded.catalog, false).unwrap();
    assert_eq!(dry.summary().added, 4, "{dry}");
    assert!(v.catalog().is_empty());
    let applied = one(
        &v,
        Change::CatalogApply {
            catalog: &loaded.catalog,
            prune: false,
            values: &loaded.values,
        },
    )
    .unwrap();
    let Applied::CatalogApplied { diff, values } = applied else {
        panic!("{applied:?}")
    };
    assert_eq!((*diff, values), (dry, 1));
    assert_eq!(
        v.reveal("postgres_connection").unwrap().expose(),
        b"postgresql://localhost:5432/app"
    );
    let meta = v.catalog().secret("postgres_connection").cloned().unwrap();
    assert!(matches!(
        meta.tiers["local_dev"].strategy,
        Strategy::Serve { .. }
    ));
    assert_eq!(
        meta.tiers["desktop"].strategy.to_string(),
        "generate file://{{USER_DATA}}/app.db"
    );
    assert_eq!(
        meta.tiers["cloud"].strategy.to_string(),
        "delegate env:POSTGRES_URL (not present)"
    );
    // Applying it again changes nothing; prune with an empty catalog removes it all and
    // leaves the value.
    let again = v.catalog_diff(&loaded.catalog, false).unwrap();
    assert!(again.is_empty(), "{again}");
    let empty = catalog::Catalog::new();
    one(
        &v,
        Change::CatalogApply {
            catalog: &empty,
            prune: true,
            values: &BTreeMap::new(),
        },
    )
    .unwrap();
    assert!(v.catalog().is_empty());
    assert!(v.secret_info("postgres_connection").is_some());
}

#[test]
fn plans_and_lint_come_from_the_vault() {
    let (_tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    let loaded = load(SEED, Format::Json, LoadOptions { allow_values: true }).unwrap();
    one(
        &v,
        Change::CatalogApply {
            catalog: &loaded.catalog,
            prune: false,
            values: &loaded.values,
        },
    )
    .unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.service_set_manifest("web", b"secret postgres_connection\nsecret missing\n")
        .unwrap();
    let plan = v.plan("web", "desktop").unwrap();
    assert!(!plan.ok);
    assert_eq!(
        plan.entries[0].action.describe(),
        "generate file://{{USER_DATA}}/app.db"
    );
    let ids: Vec<&str> = plan.problems.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["no-such-secret/web/missing"]);
    let core = v.plan("web", "local_dev").unwrap();
    assert!(
        core.problems
            .iter()
            .any(|p| p.id == "not-granted/web/postgres_connection"),
        "{core}"
    );
    assert!(matches!(
        v.plan("nosuch", "desktop"),
        Err(Error::NoSuchService)
    ));
    let lint = v.lint(None);
    assert!(!lint.ok);
    assert!(
        lint.findings
            .iter()
            .any(|f| f.id == "not-present/cloud/postgres_connection"),
        "{lint}"
    );
    // No value anywhere in either.
    let json = serde_json::to_string(&(plan, lint)).unwrap();
    assert!(!json.contains("localhost:5432"), "{json}");
}

#[test]
fn rotation_and_backups_carry_the_catalog() {
    let (tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    tiers(&v);
    one(
        &v,
        Change::Meta {
            name: "a",
            update: &class(Class::User),
        },
    )
    .unwrap();
    v.set("a", b"1").unwrap();
    // Every record, declarations too, is tagged under the new key, or the rotation could
    // not finish.
    let report = v.rotate_key(&|_| {}).unwrap();
    assert_eq!(report.new_key, 2);
    let before = v.catalog().to_toml();
    drop(v);
    let v = Vault::open(&dir, None).unwrap();
    assert_eq!(v.catalog().to_toml(), before);
    let backup = v.backup().unwrap();
    let mut bytes = vec![0u8; backup.len() as usize];
    let mut at = 0;
    while at < bytes.len() {
        at += backup.read_at(at as u64, &mut bytes[at..]).unwrap();
    }
    drop(v);
    let restored = restore(tmp.path(), &bytes, &dir.join(secrets::KEY_FILE));
    let r = Vault::open(&restored, None).unwrap();
    assert_eq!(r.catalog().to_toml(), before);
}

/// A data directory holding `store`, with a copy of `key`.
fn restore(tmp: &Path, store: &[u8], key: &Path) -> PathBuf {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = tmp.join("restored");
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(secrets::STORE_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, store).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(secrets::KEY_FILE))
        .unwrap();
    std::fs::copy(key, dir.join(secrets::KEY_FILE)).unwrap();
    dir
}
