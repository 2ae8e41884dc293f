//! Break-glass through the vault: a freeze refuses what it stops and lets the rest
//! through, across a reopen too; revoke-all in one commit, cutting off open files;
//! suspension and resumption; the ownership matrix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use catalog::{Class, MetaUpdate, Period, SecretValue, TierPolicy};

use crate::{Actor, Applied, Change, Error, Mark, MatrixGrant, Vault};

/// A fixed "now" for the vault's clock: 2096, far from any real clock.
const T: u64 = 4_000_000_000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, 1000).unwrap();
    (tmp, dir)
}

/// A vault at time `T` with secrets `db` and `api_key`, services web (1001, granted
/// both) and worker (1002, granted db).
fn vault() -> (tempfile::TempDir, PathBuf, Vault) {
    let (tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    v.set_clock(Some(T));
    v.set("db", b"one").unwrap();
    v.set("api_key", b"key").unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.service_set_uid("worker", 1002).unwrap();
    v.grant("web", "db").unwrap();
    v.grant("web", "api_key").unwrap();
    v.grant("worker", "db").unwrap();
    (tmp, dir, v)
}

fn reopen(dir: &Path) -> Vault {
    let v = Vault::open(dir, None).unwrap();
    v.set_clock(Some(T));
    v
}

fn admin(reason: &str) -> Actor {
    Actor::admin(Some(0)).with_reason(reason)
}

fn one(v: &Vault, actor: &Actor, change: Change<'_>) -> Result<Applied, Error> {
    v.apply(actor, &[change])
        .map(|mut a| a.remove(0))
        .map_err(|e| e.error)
}

fn read(v: &Vault, service: &str, name: &str) -> Result<Vec<u8>, Error> {
    let fid = v.open_secret(service, name)?;
    Ok(v.read_opened(service, &fid)?.expose().to_vec())
}

#[test]
fn a_freeze_refuses_what_deploys_and_lets_an_incident_be_answered_across_a_reopen() {
    let (_tmp, dir, v) = vault();
    assert_eq!(v.frozen(), None);
    assert_eq!(
        one(&v, &admin("INC-42: token leaked"), Change::Freeze).unwrap(),
        Applied::Frozen {
            already: false,
            since: T
        }
    );
    let frozen = Mark {
        since: T,
        by: "admin".into(),
        uid: Some(0),
        reason: Some("INC-42: token leaked".into()),
    };
    assert_eq!(v.frozen(), Some(frozen.clone()));
    assert_eq!(frozen.who(), "admin (uid 0)");
    // Freezing again keeps who froze, when and why.
    v.set_clock(Some(T + 60));
    assert_eq!(
        one(&v, &admin("again"), Change::Freeze).unwrap(),
        Applied::Frozen {
            already: true,
            since: T
        }
    );
    // It survives a reopen.
    drop(v);
    let v = reopen(&dir);
    assert_eq!(v.frozen(), Some(frozen));
    assert!(v.is_frozen());

    let update = MetaUpdate {
        owner: Some(Some("platform".into())),
        ..MetaUpdate::default()
    };
    let policy = TierPolicy {
        class: None,
        strategy: catalog::Strategy::Strip,
    };
    let empty = catalog::Catalog::new();
    let values: BTreeMap<String, SecretValue> = BTreeMap::new();
    let tiers = vec!["cloud".to_string()];
    let stopped = [
        Change::Grant {
            service: "worker",
            name: "api_key",
            expires_in: None,
        },
        Change::Grant {
            service: "worker",
            name: "api_key",
            expires_in: Some(60),
        },
        Change::ServiceUid {
            service: "new",
            uid: 1003,
        },
        Change::ServiceManifest {
            service: "web",
            manifest: b"secret db\n",
        },
        Change::ServiceRemove { service: "worker" },
        Change::ServiceTiers {
            service: "web",
            tiers: Some(&tiers),
        },
        Change::TierDeclare {
            tier: "cloud",
            core: false,
        },
        Change::TierRemove { tier: "cloud" },
        Change::Meta {
            name: "db",
            update: &update,
        },
        Change::MetaRemove { name: "db" },
        Change::Strategy {
            name: "db",
            tier: "cloud",
            policy: &policy,
        },
        Change::StrategyRemove {
            name: "db",
            tier: "cloud",
        },
        Change::Present {
            name: "db",
            tier: "cloud",
            present: true,
        },
        Change::Bundle {
            service: "web",
            tier: "cloud",
            deployment: "d1",
            replace: false,
        },
        Change::CatalogApply {
            catalog: &empty,
            prune: false,
            values: &values,
        },
    ];
    for change in stopped {
        assert!(change.stops_when_frozen(), "{change:?}");
        let e = one(&v, &admin("deploy"), change).unwrap_err();
        assert!(matches!(e, Error::Frozen), "{change:?}: {e:?}");
        assert_eq!(e.to_string(), "frozen (see deploy status)");
    }
    // Nothing of them happened.
    assert!(v.service("new").is_none());
    assert!(v.service("worker").is_some());
    assert_eq!(v.grants("worker"), ["db"]);
    assert!(v.catalog().tier("cloud").is_none());
    // What answers an incident goes on.
    let template = catalog::Template::parse("{{random:hex:16}}").unwrap();
    let going_on = [
        Change::Set {
            name: "db",
            value: b"two",
        },
        Change::Stage {
            name: "db",
            value: b"three",
        },
        Change::Promote {
            name: "db",
            overlap: None,
            revoke_previous: true,
            retire_when_read: false,
        },
        Change::Generate {
            name: "api_key",
            template: Some(&template),
        },
        Change::Rollback { name: "api_key" },
        Change::StageGenerate {
            name: "api_key",
            template: Some(&template),
        },
        Change::Discard { name: "api_key" },
        Change::Retire {
            name: "api_key",
            when_read: None,
        },
        Change::Revoke {
            service: "web",
            name: "api_key",
        },
        Change::Suspend { service: "web" },
        Change::Resume { service: "web" },
        Change::RevokeAll { name: "db" },
        Change::Delete { name: "api_key" },
    ];
    for change in going_on {
        assert!(!change.stops_when_frozen(), "{change:?}");
        one(&v, &admin("incident"), change).unwrap_or_else(|e| panic!("{change:?}: {e:?}"));
    }
    assert_eq!(
        read(&v, "web", "db").unwrap_err().to_string(),
        "file does not exist"
    );
    assert!(v.grants("web").is_empty() && v.grants("worker").is_empty());
    // Unfrozen, they deploy again; unfreezing again changes nothing.
    assert_eq!(
        one(&v, &admin("INC-42 closed"), Change::Unfreeze).unwrap(),
        Applied::Unfrozen { was_frozen: true }
    );
    assert_eq!(
        one(&v, &admin("again"), Change::Unfreeze).unwrap(),
        Applied::Unfrozen { was_frozen: false }
    );
    v.grant("worker", "db").unwrap();
    drop(v);
    let v = reopen(&dir);
    assert_eq!(v.frozen(), None);
    assert_eq!(v.grants("worker"), ["db"]);
}

#[test]
fn a_freeze_holds_from_where_it_stands_in_a_transaction() {
    let (_tmp, _dir, v) = vault();
    let grant = Change::Grant {
        service: "worker",
        name: "api_key",
        expires_in: None,
    };
    // A grant after a freeze in the same transaction is refused, and the freeze with it.
    let e = v.apply(&admin("x"), &[Change::Freeze, grant]).unwrap_err();
    assert_eq!((e.index, matches!(e.error, Error::Frozen)), (1, true));
    assert!(!v.is_frozen());
    // Before it, it goes through.
    v.apply(&admin("x"), &[grant, Change::Freeze]).unwrap();
    assert!(v.is_frozen());
    assert_eq!(v.grants("worker"), ["api_key", "db"]);
    // An unfreeze earlier in a transaction lets a grant through, and a freeze after it
    // freezes again: who froze is now this actor.
    let revoke = Change::Revoke {
        service: "worker",
        name: "api_key",
    };
    v.apply(
        &admin("y"),
        &[revoke, Change::Unfreeze, grant, Change::Freeze],
    )
    .unwrap();
    assert_eq!(v.frozen().unwrap().reason.as_deref(), Some("y"));
}

#[test]
fn revoke_all_takes_a_secret_from_every_service_at_once_and_cuts_off_open_files() {
    let (_tmp, dir, v) = vault();
    let web = v.open_secret("web", "db").unwrap();
    let worker = v.open_secret("worker", "db").unwrap();
    assert_eq!(v.read_opened("web", &web).unwrap().expose(), b"one");
    let revision = v.revision();
    assert_eq!(
        one(&v, &admin("INC-7"), Change::RevokeAll { name: "db" }).unwrap(),
        Applied::RevokedAll {
            services: vec!["web".into(), "worker".into()]
        }
    );
    // One commit.
    assert_eq!(v.revision().0, revision.0 + 1);
    for (service, fid) in [("web", &web), ("worker", &worker)] {
        assert!(matches!(v.read_opened(service, fid), Err(Error::NotFound)));
    }
    assert_eq!(v.grants("web"), ["api_key"]);
    assert!(v.grants("worker").is_empty());
    // The secret stays; nobody holds it; again, nothing changes.
    assert_eq!(v.reveal("db").unwrap().expose(), b"one");
    assert_eq!(
        one(&v, &admin("again"), Change::RevokeAll { name: "db" }).unwrap(),
        Applied::RevokedAll { services: vec![] }
    );
    assert!(matches!(
        one(&v, &admin("x"), Change::RevokeAll { name: "nosuch" }),
        Err(Error::NoSuchSecret)
    ));
    assert!(matches!(
        one(&v, &admin("x"), Change::RevokeAll { name: ".." }),
        Err(Error::InvalidName { .. })
    ));
    drop(v);
    assert!(reopen(&dir).grants("worker").is_empty());
}

#[test]
fn a_suspended_service_is_not_served_keeps_its_grants_and_is_served_again_once_resumed() {
    let (_tmp, dir, v) = vault();
    assert!(v.serves("web") && v.uid_serves(1001, "web"));
    assert_eq!(
        one(
            &v,
            &admin("INC-9: web compromised"),
            Change::Suspend { service: "web" }
        )
        .unwrap(),
        Applied::Suspended {
            already: false,
            since: T
        }
    );
    assert!(!v.serves("web"));
    assert!(!v.uid_serves(1001, "web"));
    assert!(v.serves("worker") && v.uid_serves(1002, "worker"));
    assert!(!v.uid_serves(1001, "worker"));
    assert_eq!(v.suspended(), ["web"]);
    assert_eq!(v.grants("web"), ["api_key", "db"]);
    let info = v.service("web").unwrap();
    assert_eq!(
        info.suspended,
        Some(Mark {
            since: T,
            by: "admin".into(),
            uid: Some(0),
            reason: Some("INC-9: web compromised".into()),
        })
    );
    // Again: nothing changes. A new uid or manifest keeps it suspended.
    v.set_clock(Some(T + 5));
    assert_eq!(
        one(&v, &admin("again"), Change::Suspend { service: "web" }).unwrap(),
        Applied::Suspended {
            already: true,
            since: T
        }
    );
    v.service_set_uid("web", 1005).unwrap();
    v.service_set_manifest("web", b"secret db\n").unwrap();
    assert_eq!(v.service("web").unwrap().suspended.unwrap().since, T);
    // It survives a reopen.
    drop(v);
    let v = reopen(&dir);
    assert!(!v.serves("web") && !v.uid_serves(1005, "web"));
    assert_eq!(
        one(&v, &admin("cleaned"), Change::Resume { service: "web" }).unwrap(),
        Applied::Resumed {
            was_suspended: true
        }
    );
    assert!(v.serves("web") && v.uid_serves(1005, "web"));
    assert_eq!(read(&v, "web", "db").unwrap(), b"one");
    assert_eq!(
        one(&v, &admin("again"), Change::Resume { service: "web" }).unwrap(),
        Applied::Resumed {
            was_suspended: false
        }
    );
    for change in [
        Change::Suspend { service: "nosuch" },
        Change::Resume { service: "nosuch" },
    ] {
        assert!(matches!(
            one(&v, &admin("x"), change),
            Err(Error::NoSuchService)
        ));
    }
    assert!(matches!(
        one(&v, &admin("x"), Change::Suspend { service: "admin" }),
        Err(Error::ReservedName)
    ));
    assert!(v.suspended().is_empty());
}

#[test]
fn the_matrix_has_every_secret_every_service_and_the_grants_that_hold() {
    let (_tmp, _dir, v) = vault();
    let update = MetaUpdate {
        class: Some(Some(Class::Infrastructure)),
        owner: Some(Some("Ops, \"Platform\" | SRE".into())),
        rotate_every: Some(Some(Period::parse("30d").unwrap())),
        ..MetaUpdate::default()
    };
    let declared = MetaUpdate {
        owner: Some(Some("mobile".into())),
        ..MetaUpdate::default()
    };
    v.apply(
        &admin("x"),
        &[
            Change::Meta {
                name: "db",
                update: &update,
            },
            Change::Meta {
                name: "prompted",
                update: &declared,
            },
            Change::Grant {
                service: "worker",
                name: "api_key",
                expires_in: Some(3600),
            },
        ],
    )
    .unwrap();
    v.service_set_uid("idle", 1003).unwrap();
    v.apply(&admin("x"), &[Change::Suspend { service: "worker" }])
        .unwrap();
    v.set_clock(Some(T + 40 * 86_400));
    let m = v.matrix();
    assert_eq!(m.services, ["idle", "web", "worker"]);
    assert_eq!(m.suspended, ["worker"]);
    let names: Vec<&str> = m.secrets.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api_key", "db", "prompted"]);
    let db = &m.secrets[1];
    assert_eq!(db.class.as_deref(), Some("infrastructure"));
    assert_eq!(db.owner.as_deref(), Some("Ops, \"Platform\" | SRE"));
    assert_eq!(
        (db.version, db.updated, db.age),
        (Some(1), Some(T), Some(40 * 86_400))
    );
    assert_eq!(db.rotate_every, 30 * 86_400);
    assert!(db.stale);
    assert_eq!(
        db.grants.keys().map(String::as_str).collect::<Vec<_>>(),
        ["web", "worker"]
    );
    assert_eq!(db.grants["web"], MatrixGrant { expires: None });
    // The grant that ended (an hour after T) is not shown, though not removed yet.
    let api_key = &m.secrets[0];
    assert_eq!(api_key.grants.keys().collect::<Vec<_>>(), ["web"]);
    assert_eq!((api_key.rotate_every, api_key.stale), (90 * 86_400, false));
    // A secret the catalog declares and nothing stores: no version, no age.
    let prompted = &m.secrets[2];
    assert_eq!(
        (prompted.version, prompted.age, prompted.stale),
        (None, None, false)
    );
    assert!(prompted.grants.is_empty());
    // An expiring grant shows when it ends.
    v.set_clock(Some(T + 40 * 86_400));
    v.apply(
        &admin("x"),
        &[Change::Grant {
            service: "worker",
            name: "api_key",
            expires_in: Some(600),
        }],
    )
    .unwrap();
    assert_eq!(
        v.matrix().secrets[0].grants["worker"],
        MatrixGrant {
            expires: Some(T + 40 * 86_400 + 600)
        }
    );
}
