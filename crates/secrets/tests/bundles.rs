//! Bundles in the vault, through its public API: issued only through `Vault::apply`, made
//! of values generated for them and never a stored one, a deployment id used once per
//! service and tier unless replaced, and each value traced back by its fingerprint after
//! restarts and rotations.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::PathBuf;

use catalog::{Bundle, BundleError, Format, LoadOptions, Shipped, load};
use secrets::{Actor, Applied, Change, Error, Vault};

const ADMIN: u32 = 1000;

const CATALOG: &str = r#"
[tiers.local_dev]
core = true
[tiers.desktop]

[secrets.db_root]
class = "infrastructure"
[secrets.db_root.tiers.local_dev]
strategy = "serve"
[secrets.db_root.tiers.desktop]
strategy = "strip"

[secrets.jwt_key]
class = "service"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"

[secrets.app_db]
class = "service"
[secrets.app_db.tiers.desktop]
strategy = "generate"
template = "file://{{USER_DATA}}/app.db"

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

const MANIFEST: &[u8] = b"secret db_root\nsecret jwt_key\nsecret app_db\nsecret openrouter_key\n\
    secret tg_token\n";

/// A vault holding the catalog, service web and db_root's stored value.
fn vault() -> (tempfile::TempDir, PathBuf, Vault) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, ADMIN).unwrap();
    let v = Vault::open(&dir, None).unwrap();
    let loaded = load(CATALOG, Format::Toml, LoadOptions::default()).unwrap();
    v.apply(
        &Actor::local(),
        &[
            Change::CatalogApply {
                catalog: &loaded.catalog,
                prune: false,
                values: &loaded.values,
            },
            Change::ServiceManifest {
                service: "web",
                manifest: MANIFEST,
            },
            Change::Set {
                name: "db_root",
                value: b"the root password",
            },
        ],
    )
    .unwrap();
    (tmp, dir, v)
}

fn issue(v: &Vault, deployment: &str, replace: bool) -> Result<(Bundle, Option<u64>), Error> {
    let applied = v
        .apply(
            &Actor::admin(Some(ADMIN)),
            &[Change::Bundle {
                service: "web",
                tier: "desktop",
                deployment,
                replace,
            }],
        )
        .map_err(|e| e.error)?;
    match applied.into_iter().next() {
        Some(Applied::BundleIssued { bundle, replaced }) => Ok((*bundle, replaced)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_bundle_holds_what_is_generated_for_it_and_no_stored_value() {
    let (_tmp, _dir, v) = vault();
    let (b, replaced) = issue(&v, "acme-1", false).unwrap();
    assert_eq!(replaced, None);
    assert_eq!((b.bundle, b.deployment.as_str()), (1, "acme-1"));
    assert_eq!(
        b.values.keys().map(String::as_str).collect::<Vec<_>>(),
        ["app_db", "jwt_key"]
    );
    assert_eq!(b.values["app_db"].expose(), b"file://{{USER_DATA}}/app.db");
    assert_eq!(b.manifest[0].shipped, Shipped::Strip);
    let json = b.to_json();
    let text = String::from_utf8_lossy(&json);
    assert!(!text.contains("the root password"));
    // base64 of the stored value is not in it either.
    assert!(!text.contains("dGhlIHJvb3QgcGFzc3dvcmQ"));
    // Nothing generated is stored as a secret.
    assert_eq!(
        v.list_secrets()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["db_root"]
    );
    // Another deployment: fresh random values.
    let (other, _) = issue(&v, "acme-2", false).unwrap();
    assert_ne!(other.values["jwt_key"], b.values["jwt_key"]);
}

#[test]
fn a_deployment_id_is_used_once_unless_replaced() {
    let (_tmp, dir, v) = vault();
    let (first, _) = issue(&v, "acme-1", false).unwrap();
    let e = issue(&v, "acme-1", false).unwrap_err();
    assert!(
        matches!(&e, Error::DeploymentUsed { bundle: 1, deployment, .. } if deployment == "acme-1"),
        "{e:?}"
    );
    assert!(e.to_string().contains("--replace"), "{e}");
    assert_eq!(v.issued(Some("acme-1"), None).len(), 2, "nothing recorded");
    let (second, replaced) = issue(&v, "acme-1", true).unwrap();
    assert_eq!((second.bundle, replaced), (2, Some(1)));
    // The first bundle's values stay on record, marked replaced.
    let jwt = v.identify(first.values["jwt_key"].expose()).unwrap();
    assert_eq!(jwt.len(), 1);
    assert_eq!((jwt[0].bundle, jwt[0].current), (1, false));
    let now = v.identify(second.values["jwt_key"].expose()).unwrap();
    assert_eq!((now[0].bundle, now[0].current), (2, true));
    // `replace` on a deployment that has no bundle is a first bundle.
    let (fresh, replaced) = issue(&v, "acme-3", true).unwrap();
    assert_eq!((fresh.bundle, replaced), (1, None));
    drop(v);
    let v = Vault::open(&dir, None).unwrap();
    assert!(matches!(
        issue(&v, "acme-1", false),
        Err(Error::DeploymentUsed { bundle: 2, .. })
    ));
}

#[test]
fn identify_names_the_deployment_and_finds_none_for_other_values() {
    let (_tmp, dir, v) = vault();
    assert!(v.identify(b"anything").unwrap().is_empty(), "no bundle yet");
    let (a, _) = issue(&v, "acme-1", false).unwrap();
    let (b, _) = issue(&v, "acme-2", false).unwrap();
    let found = v.identify(b.values["jwt_key"].expose()).unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].deployment, "acme-2");
    assert_eq!(found[0].secret.as_deref(), Some("jwt_key"));
    assert_eq!(
        (found[0].service.as_str(), found[0].tier.as_str()),
        ("web", "desktop")
    );
    // A template without randomness gave both the same value: both are named.
    let both = v.identify(b"file://{{USER_DATA}}/app.db").unwrap();
    assert_eq!(
        both.iter()
            .map(|i| i.deployment.as_str())
            .collect::<Vec<_>>(),
        ["acme-1", "acme-2"]
    );
    assert!(v.identify(b"the root password").unwrap().is_empty());
    let mut near = a.values["jwt_key"].expose().to_vec();
    near.push(b'\n');
    assert!(v.identify(&near).unwrap().is_empty(), "byte for byte");
    // Across a restart and two key rotations.
    drop(v);
    let v = Vault::open(&dir, None).unwrap();
    v.rotate_key(&|_| {}).unwrap();
    v.rotate_key(&|_| {}).unwrap();
    drop(v);
    let v = Vault::open(&dir, None).unwrap();
    assert_eq!(
        v.identify(a.values["jwt_key"].expose()).unwrap()[0].deployment,
        "acme-1"
    );
    // The list: one row per value, filtered by deployment and secret.
    assert_eq!(v.issued(None, None).len(), 4);
    let rows = v.issued(Some("acme-2"), Some("jwt_key"));
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].deployment, "acme-2");
    assert!(rows[0].current);
    assert!(v.issued(Some("nobody"), None).is_empty());
}

#[test]
fn an_incomplete_plan_or_a_core_tier_gives_no_bundle_and_records_nothing() {
    let (_tmp, _dir, v) = vault();
    v.service_set_manifest("web", b"secret jwt_key\nsecret api_jwt\n")
        .unwrap();
    let e = issue(&v, "acme-1", false).unwrap_err();
    let Error::Bundle(BundleError::Incomplete { problems, .. }) = &e else {
        panic!("{e:?}");
    };
    assert_eq!(problems[0].id, "no-such-secret/web/api_jwt");
    assert!(v.issued(None, None).is_empty());
    // A delegated reference not present yet does not stop a bundle.
    v.service_set_manifest("web", b"secret tg_token\n").unwrap();
    let (b, _) = issue(&v, "acme-1", false).unwrap();
    assert!(!b.delegated[0].present);
    assert_eq!(
        v.issued(None, None)[0].secret,
        None,
        "a bundle with no value"
    );
    let e = v
        .apply(
            &Actor::local(),
            &[Change::Bundle {
                service: "web",
                tier: "local_dev",
                deployment: "x",
                replace: false,
            }],
        )
        .unwrap_err();
    assert!(
        matches!(e.error, Error::Bundle(BundleError::CoreTier { .. })),
        "{:?}",
        e.error
    );
    let e = v
        .apply(
            &Actor::local(),
            &[Change::Bundle {
                service: "nosuch",
                tier: "desktop",
                deployment: "x",
                replace: false,
            }],
        )
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSuchService), "{:?}", e.error);
}

#[test]
fn a_template_that_spells_out_a_stored_value_is_refused() {
    let (_tmp, _dir, v) = vault();
    let policy = catalog::TierPolicy::new(catalog::Strategy::Generate {
        template: catalog::Template::parse("prefix-the root password-suffix").unwrap(),
    });
    v.apply(
        &Actor::local(),
        &[Change::Strategy {
            name: "jwt_key",
            tier: "desktop",
            policy: &policy,
        }],
    )
    .unwrap();
    let e = issue(&v, "acme-1", false).unwrap_err();
    assert!(
        matches!(&e, Error::BundleHoldsStoredValue { secret, stored } if secret == "jwt_key" && stored == "db_root"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("root password"), "{e}");
    assert!(v.issued(None, None).is_empty());
}
