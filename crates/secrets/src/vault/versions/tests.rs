//! A secret's versions through the vault: set and rollback, the rotation steps, what
//! services read in each slot and when, deadlines across restarts, grants that end,
//! stale secrets.

use std::path::{Path, PathBuf};

use crate::record::PENDING_TTL;
use crate::{Actor, Applied, Change, Error, Vault, VersionSlot, VersionState};

/// A fixed "now" for the vault's clock: 2096, far from any real clock.
const T: u64 = 4_000_000_000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, 1000).unwrap();
    (tmp, dir)
}

/// A vault at time `T` with secret `db` (version 1, "one"), services web (granted db)
/// and api (not).
fn vault() -> (tempfile::TempDir, PathBuf, Vault) {
    let (tmp, dir) = fresh();
    let v = Vault::open(&dir, None).unwrap();
    v.set_clock(Some(T));
    v.set("db", b"one").unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.service_set_uid("api", 1002).unwrap();
    v.grant("web", "db").unwrap();
    (tmp, dir, v)
}

fn reopen(dir: &Path, at: u64) -> Vault {
    let v = Vault::open(dir, None).unwrap();
    v.set_clock(Some(at));
    v
}

fn admin(reason: &str) -> Actor {
    Actor::admin(Some(1000)).with_reason(reason)
}

fn one(v: &Vault, actor: &Actor, change: Change<'_>) -> Result<Applied, Error> {
    v.apply(actor, &[change])
        .map(|mut a| a.remove(0))
        .map_err(|e| e.error)
}

fn stage(v: &Vault, value: &[u8]) -> Result<Applied, Error> {
    one(v, &admin("rotate"), Change::Stage { name: "db", value })
}

fn promote(v: &Vault, overlap: Option<u64>, revoke_previous: bool) -> Result<Applied, Error> {
    one(
        v,
        &admin("promote"),
        Change::Promote {
            name: "db",
            overlap,
            revoke_previous,
            retire_when_read: false,
        },
    )
}

/// What `service` reads in `slot` of `db`, opened now.
fn read(v: &Vault, service: &str, slot: VersionSlot) -> Result<Vec<u8>, Error> {
    let fid = v.open_version(service, "db", slot)?;
    Ok(v.read_opened(service, &fid)?.expose().to_vec())
}

fn states(v: &Vault) -> Vec<(u64, VersionState)> {
    v.history("db")
        .unwrap()
        .iter()
        .map(|h| (h.version, h.state))
        .collect()
}

#[test]
fn a_set_keeps_the_previous_version_for_a_rollback_and_destroys_the_one_before() {
    let (_tmp, _dir, v) = vault();
    one(
        &v,
        &admin("new password"),
        Change::Set {
            name: "db",
            value: b"two",
        },
    )
    .unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
    // Kept, but no service reads it: there is no overlap.
    assert!(matches!(
        read(&v, "web", VersionSlot::Previous),
        Err(Error::NotFound)
    ));
    assert!(!v.is_readable("web", "db", VersionSlot::Previous));
    assert_eq!(
        states(&v),
        [(2, VersionState::Current), (1, VersionState::Previous)]
    );
    // Rolled back: 1 is current again, 2 previous.
    let back = one(&v, &admin("bad change"), Change::Rollback { name: "db" }).unwrap();
    assert_eq!(
        back,
        Applied::RolledBack {
            version: 1,
            previous: 2
        }
    );
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"one");
    assert_eq!(v.secret_info("db").unwrap().version, 1);
    // And forward again.
    one(&v, &admin("undo"), Change::Rollback { name: "db" }).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
    // A third set: version 3, and version 1 is destroyed; numbers are never reused.
    v.set("db", b"three").unwrap();
    assert_eq!(
        states(&v),
        [
            (3, VersionState::Current),
            (2, VersionState::Previous),
            (1, VersionState::Destroyed)
        ]
    );
    let h = v.history("db").unwrap();
    assert_eq!(h[1].by.as_deref(), Some("admin"));
    assert_eq!(h[1].uid, Some(1000));
    assert_eq!(h[1].reason.as_deref(), Some("new password"));
    assert_eq!(h[0].by.as_deref(), Some("local"));
    assert_eq!(h[2].destroyed, Some(T));
    assert_eq!(h[0].length, Some(5));
    assert_eq!(h[2].length, None);
    // Retired: nothing to roll back to.
    assert_eq!(
        one(
            &v,
            &admin("done"),
            Change::Retire {
                name: "db",
                when_read: None
            }
        )
        .unwrap(),
        Applied::Retired { version: 2 }
    );
    let e = one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap_err();
    assert!(matches!(e, Error::NoPreviousVersion), "{e:?}");
    assert!(v.history("nosuch").is_none());
}

#[test]
fn a_pending_version_is_read_by_the_grantees_only_until_promoted() {
    let (_tmp, _dir, v) = vault();
    assert_eq!(
        stage(&v, b"two").unwrap(),
        Applied::Staged {
            version: 2,
            expires: T + PENDING_TTL
        }
    );
    assert_eq!(read(&v, "web", VersionSlot::Pending).unwrap(), b"two");
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"one");
    // Not granted: as if there were nothing.
    assert!(matches!(
        read(&v, "api", VersionSlot::Pending),
        Err(Error::NotFound)
    ));
    assert!(!v.is_readable("api", "db", VersionSlot::Pending));
    assert_eq!(
        v.version_info("db", VersionSlot::Pending).unwrap().version,
        2
    );
    // A rotation is under way: no second stage, no set.
    let e = stage(&v, b"other").unwrap_err();
    assert!(matches!(e, Error::PendingVersion { version: 2 }), "{e:?}");
    let e = v.set("db", b"other").unwrap_err();
    assert!(matches!(e, Error::PendingVersion { version: 2 }), "{e:?}");
    // Staging needs a secret to rotate.
    let e = one(
        &v,
        &admin("x"),
        Change::Stage {
            name: "nosuch",
            value: b"1",
        },
    )
    .unwrap_err();
    assert!(matches!(e, Error::NoSuchSecret), "{e:?}");
    // Promoted with an overlap of 100 s.
    assert_eq!(
        promote(&v, Some(100), false).unwrap(),
        Applied::Promoted {
            version: 2,
            previous: Some(1),
            until: Some(T + 100)
        }
    );
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
    assert_eq!(read(&v, "web", VersionSlot::Previous).unwrap(), b"one");
    assert!(matches!(
        read(&v, "api", VersionSlot::Previous),
        Err(Error::NotFound)
    ));
    assert!(matches!(
        read(&v, "web", VersionSlot::Pending),
        Err(Error::NotFound)
    ));
    let h = v.history("db").unwrap();
    assert_eq!(h[1].overlap_until, Some(T + 100));
    // The overlap ends to the second, whether or not anything was committed since.
    v.set_clock(Some(T + 99));
    assert!(v.is_readable("web", "db", VersionSlot::Previous));
    v.set_clock(Some(T + 100));
    assert!(!v.is_readable("web", "db", VersionSlot::Previous));
    assert!(matches!(
        read(&v, "web", VersionSlot::Previous),
        Err(Error::NotFound)
    ));
    // Still kept for a rollback.
    assert_eq!(
        one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap(),
        Applied::RolledBack {
            version: 1,
            previous: 2
        }
    );
}

#[test]
fn a_fid_keeps_the_version_it_opened_unless_a_rotation_revokes_the_previous_value() {
    let (_tmp, _dir, v) = vault();
    let held = v.open_secret("web", "db").unwrap();
    stage(&v, b"two").unwrap();
    let held_pending = v.open_version("web", "db", VersionSlot::Pending).unwrap();
    promote(&v, None, false).unwrap();
    // A plain rotation: the old fid reads the old value, the pending one the new.
    assert_eq!(v.read_opened("web", &held).unwrap().expose(), b"one");
    assert_eq!(
        v.read_opened("web", &held_pending).unwrap().expose(),
        b"two"
    );
    // Even once its version is destroyed.
    v.set("db", b"three").unwrap();
    assert_eq!(v.read_opened("web", &held).unwrap().expose(), b"one");
    // An incident: every fid on an older version fails on its next read.
    stage(&v, b"four").unwrap();
    let on_three = v.open_secret("web", "db").unwrap();
    assert_eq!(
        promote(&v, Some(3600), true).unwrap(),
        Applied::Promoted {
            version: 4,
            previous: None,
            until: None
        }
    );
    for fid in [&held, &held_pending, &on_three] {
        let e = v.read_opened("web", fid).unwrap_err();
        assert!(matches!(e, Error::VersionRevoked), "{e:?}");
    }
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"four");
    assert!(matches!(
        read(&v, "web", VersionSlot::Previous),
        Err(Error::NotFound)
    ));
    let h = v.history("db").unwrap();
    assert_eq!(h[0].version, 4);
    assert!(!h[0].revoked);
    assert!(
        h[1..]
            .iter()
            .all(|h| h.revoked && h.state == VersionState::Destroyed)
    );
    // No previous version to go back to.
    let e = one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap_err();
    assert!(matches!(e, Error::NoPreviousVersion), "{e:?}");
}

#[test]
fn discarding_or_an_hour_ends_a_pending_version() {
    let (_tmp, _dir, v) = vault();
    stage(&v, b"two").unwrap();
    assert_eq!(
        one(&v, &admin("failed test"), Change::Discard { name: "db" }).unwrap(),
        Applied::Discarded { version: 2 }
    );
    let e = promote(&v, None, false).unwrap_err();
    assert!(matches!(e, Error::NoPendingVersion), "{e:?}");
    let e = one(&v, &admin("x"), Change::Discard { name: "db" }).unwrap_err();
    assert!(matches!(e, Error::NoPendingVersion), "{e:?}");
    assert_eq!(
        states(&v),
        [(2, VersionState::Destroyed), (1, VersionState::Current)]
    );
    // Nothing else changed: no previous version, the current one as it was.
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"one");
    // Staged again, and left for an hour: gone to readers at once, refused a promote.
    assert_eq!(
        stage(&v, b"three").unwrap(),
        Applied::Staged {
            version: 3,
            expires: T + PENDING_TTL
        }
    );
    v.set_clock(Some(T + PENDING_TTL - 1));
    assert!(v.is_readable("web", "db", VersionSlot::Pending));
    assert!(v.expire().unwrap().is_empty());
    v.set_clock(Some(T + PENDING_TTL));
    assert!(!v.is_readable("web", "db", VersionSlot::Pending));
    assert_eq!(v.history("db").unwrap()[0].state, VersionState::Destroyed);
    let e = promote(&v, None, false).unwrap_err();
    assert!(matches!(e, Error::NoPendingVersion), "{e:?}");
    // The housekeeping makes it durable; a set or a stage would have replaced it anyway.
    let expired = v.expire().unwrap();
    assert_eq!(expired.pending, [("db".to_string(), 3)]);
    assert!(v.expire().unwrap().is_empty());
    assert_eq!(
        stage(&v, b"four").unwrap(),
        Applied::Staged {
            version: 4,
            expires: T + 2 * PENDING_TTL
        }
    );
}

#[test]
fn a_transaction_stages_and_promotes_at_once() {
    let (_tmp, _dir, v) = vault();
    let applied = v
        .apply(
            &admin("rotate"),
            &[
                Change::Stage {
                    name: "db",
                    value: b"two",
                },
                Change::Promote {
                    name: "db",
                    overlap: Some(60),
                    revoke_previous: false,
                    retire_when_read: false,
                },
            ],
        )
        .unwrap();
    assert_eq!(
        applied[1],
        Applied::Promoted {
            version: 2,
            previous: Some(1),
            until: Some(T + 60)
        }
    );
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
    assert_eq!(read(&v, "web", VersionSlot::Previous).unwrap(), b"one");
}

#[test]
fn overlaps_survive_a_restart_and_pending_versions_do_not() {
    let (_tmp, dir, v) = vault();
    stage(&v, b"two").unwrap();
    promote(&v, Some(600), false).unwrap();
    stage(&v, b"three").unwrap();
    v.grant("api", "db").unwrap();
    one(
        &v,
        &admin("contractor"),
        Change::Grant {
            service: "api",
            name: "db",
            expires_in: Some(300),
        },
    )
    .unwrap();
    // A kill -9 here: nothing depends on a clean stop.
    drop(v);
    let v = reopen(&dir, T + 10);
    // The rotation in flight (version 3, pending) was rolled back at open; the overlap of
    // version 1 stands, to its deadline, as does the grant's end.
    assert!(!v.is_readable("web", "db", VersionSlot::Pending));
    let h = v.history("db").unwrap();
    assert_eq!(h[0].version, 3);
    assert_eq!(h[0].state, VersionState::Destroyed);
    assert_eq!(read(&v, "web", VersionSlot::Previous).unwrap(), b"one");
    assert_eq!(read(&v, "api", VersionSlot::Current).unwrap(), b"two");
    assert_eq!(v.grant_expires("api", "db"), Some(T + 300));
    drop(v);
    // Reopened past both deadlines: the grant is removed at open, the overlap is over.
    let v = reopen(&dir, T + 601);
    assert!(!v.is_readable("web", "db", VersionSlot::Previous));
    // (The open's own housekeeping ran on the system clock; this one on the vault's.)
    v.expire().unwrap();
    assert!(v.grants("api").is_empty());
    assert_eq!(v.grant_expires("api", "db"), None);
    assert_eq!(
        stage(&v, b"four").unwrap(),
        Applied::Staged {
            version: 4,
            expires: T + 601 + PENDING_TTL
        }
    );
}

#[test]
fn a_grant_that_ends_by_itself() {
    let (_tmp, dir, v) = vault();
    let grant = |expires_in| {
        one(
            &v,
            &admin("on call this week"),
            Change::Grant {
                service: "api",
                name: "db",
                expires_in,
            },
        )
        .unwrap()
    };
    assert_eq!(
        grant(Some(100)),
        Applied::Granted {
            already: false,
            expires: Some(T + 100)
        }
    );
    let held = v.open_secret("api", "db").unwrap();
    assert_eq!(v.grants("api"), ["db"]);
    assert_eq!(v.grants_ending("api").get("db"), Some(&(T + 100)));
    v.set_clock(Some(T + 100));
    // Ended: refused at once, to new opens and to the fid held open alike.
    assert!(!v.is_granted("api", "db"));
    assert!(matches!(v.open_secret("api", "db"), Err(Error::NotFound)));
    assert!(matches!(v.read_opened("api", &held), Err(Error::NotFound)));
    assert!(v.grants("api").is_empty());
    assert!(v.grants_ending("api").is_empty());
    let expired = v.expire().unwrap();
    assert_eq!(expired.grants, [("api".to_string(), "db".to_string())]);
    // Granted for good over one that ends: it no longer ends.
    assert_eq!(
        grant(Some(50)),
        Applied::Granted {
            already: false,
            expires: Some(T + 150)
        }
    );
    assert_eq!(
        grant(None),
        Applied::Granted {
            already: false,
            expires: None
        }
    );
    assert_eq!(
        grant(None),
        Applied::Granted {
            already: true,
            expires: None
        }
    );
    assert_eq!(v.grant_expires("api", "db"), None);
    drop(v);
    let v = reopen(&dir, T + 10_000);
    assert!(v.is_granted("api", "db"));
}

#[test]
fn stale_secrets_are_older_than_their_rotation_period() {
    let (_tmp, _dir, v) = vault();
    v.set("fresh", b"x").unwrap();
    let update = catalog::MetaUpdate {
        owner: Some(Some("platform team".into())),
        rotate_every: Some(Some(catalog::Period::parse("30d").unwrap())),
        ..catalog::MetaUpdate::default()
    };
    one(
        &v,
        &admin("x"),
        Change::Meta {
            name: "db",
            update: &update,
        },
    )
    .unwrap();
    assert!(v.stale().is_empty());
    // 30 days on: db is stale by its own period, fresh not yet by the default 90 days.
    let day = 24 * 3600;
    v.set_clock(Some(T + 30 * day));
    let stale = v.stale();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].name, "db");
    assert_eq!(stale[0].age, 30 * day);
    assert_eq!(stale[0].rotate_every, 30 * day);
    assert_eq!(stale[0].owner.as_deref(), Some("platform team"));
    assert_eq!(stale[0].since, T);
    v.set_clock(Some(T + 90 * day));
    let names: Vec<String> = v.stale().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["db", "fresh"]);
    // A rotation makes it fresh again.
    stage(&v, b"two").unwrap();
    promote(&v, None, false).unwrap();
    let names: Vec<String> = v.stale().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["fresh"]);
}

#[test]
fn a_key_rotation_carries_every_version() {
    let (_tmp, dir, v) = vault();
    v.set("db", b"two").unwrap();
    stage(&v, b"three").unwrap();
    let old = v.open_secret("web", "db").unwrap();
    v.rotate_key(&|_| {}).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Pending).unwrap(), b"three");
    assert_eq!(v.read_opened("web", &old).unwrap().expose(), b"two");
    promote(&v, Some(60), false).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Previous).unwrap(), b"two");
    one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap();
    one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap();
    drop(v);
    let v = reopen(&dir, T + 1);
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"three");
    one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
}

#[test]
fn a_set_during_a_key_rotation_seals_every_version_under_the_new_key() {
    let (_tmp, dir, v) = vault();
    // A rotation stopped after its target was committed: records under key 1, new
    // ones sealed under key 2.
    v.crash_at(Some(super::super::rotation::CrashPoint::TargetCommitted));
    v.rotate_key(&|_| {}).unwrap_err();
    v.crash_at(None);
    v.set("db", b"two").unwrap();
    assert_eq!(v.state().secrets["db"].key_id, 2);
    one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"one");
    drop(v);
    // The next start finishes the rotation; every version still reads.
    let v = reopen(&dir, T + 1);
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"one");
    one(&v, &admin("x"), Change::Rollback { name: "db" }).unwrap();
    assert_eq!(read(&v, "web", VersionSlot::Current).unwrap(), b"two");
}

/// Promotes db's pending version with an overlap of `secs`, to retire when read.
fn promote_retire_when_read(v: &Vault, secs: u64) {
    one(
        v,
        &admin("rotate"),
        Change::Promote {
            name: "db",
            overlap: Some(secs),
            revoke_previous: false,
            retire_when_read: true,
        },
    )
    .unwrap();
}

/// `service` opens db's current version, and the open is recorded.
fn open_current(v: &Vault, service: &str) {
    let opened = v.open_version(service, "db", VersionSlot::Current).unwrap();
    v.record_open(
        &Actor::service(service, None),
        service,
        &opened,
        VersionSlot::Current,
    );
    v.flush_opens().unwrap();
}

#[test]
fn retire_when_read_retires_once_every_grantee_opened_the_new_version() {
    let (_tmp, _dir, v) = vault();
    v.grant("api", "db").unwrap();
    stage(&v, b"two").unwrap();
    promote_retire_when_read(&v, 3600);
    let record = v.history("db").unwrap();
    assert_eq!(record[1].state, VersionState::Previous);
    // Nobody has opened version 2: the previous one stays readable.
    assert!(v.expire().unwrap().retired.is_empty());
    open_current(&v, "web");
    assert!(v.expire().unwrap().retired.is_empty());
    assert!(v.is_readable("api", "db", VersionSlot::Previous));
    // The late one opens it: retired at the next housekeeping, with its reason audited.
    open_current(&v, "api");
    assert_eq!(v.expire().unwrap().retired, vec![("db".to_owned(), 1)]);
    assert!(!v.is_readable("api", "db", VersionSlot::Previous));
    let history = v.history("db").unwrap();
    assert_eq!(history[1].state, VersionState::Destroyed);
    assert_eq!(history.len(), 2);
}

#[test]
fn retire_when_read_retires_at_the_overlap_end_if_nobody_read() {
    let (_tmp, dir, v) = vault();
    stage(&v, b"two").unwrap();
    promote_retire_when_read(&v, 100);
    v.set_clock(Some(T + 99));
    assert!(v.expire().unwrap().retired.is_empty());
    // The flag survives a restart.
    drop(v);
    let v = reopen(&dir, T + 100);
    assert!(!v.is_readable("web", "db", VersionSlot::Previous));
    assert_eq!(v.expire().unwrap().retired, vec![("db".to_owned(), 1)]);
    assert_eq!(v.history("db").unwrap()[1].state, VersionState::Destroyed);
}

#[test]
fn a_promote_without_retire_when_read_keeps_the_previous_version_after_opens() {
    let (_tmp, _dir, v) = vault();
    stage(&v, b"two").unwrap();
    promote(&v, Some(3600), false).unwrap();
    open_current(&v, "web");
    assert!(v.expire().unwrap().retired.is_empty());
    assert!(v.is_readable("web", "db", VersionSlot::Previous));
}

#[test]
fn a_retire_when_read_judged_before_a_rollback_does_not_retire_after_it() {
    let (_tmp, _dir, v) = vault();
    stage(&v, b"two").unwrap();
    promote_retire_when_read(&v, 3600);
    // Housekeeping judged version 1 retirable; a rollback lands before its Retire.
    one(&v, &admin("oops"), Change::Rollback { name: "db" }).unwrap();
    let late = |version| {
        one(
            &v,
            &admin("housekeeping"),
            Change::Retire {
                name: "db",
                when_read: Some(version),
            },
        )
    };
    // Version 2 is now the previous one, and was never promoted to retire when read.
    assert!(matches!(late(1), Err(Error::NoPreviousVersion)));
    assert!(matches!(late(2), Err(Error::NoPreviousVersion)));
    let states: Vec<_> = v
        .history("db")
        .unwrap()
        .iter()
        .map(|h| (h.version, h.state))
        .collect();
    assert!(states.contains(&(2, VersionState::Previous)), "{states:?}");
    assert!(v.expire().unwrap().retired.is_empty());
    // An operator's plain retire still works.
    one(
        &v,
        &admin("done"),
        Change::Retire {
            name: "db",
            when_read: None,
        },
    )
    .unwrap();
}

#[test]
fn rotation_status_names_the_services_yet_to_open_the_current_version() {
    let (_tmp, _dir, v) = vault();
    v.grant("api", "db").unwrap();
    open_current(&v, "api");
    stage(&v, b"two").unwrap();
    promote_retire_when_read(&v, 3600);
    let status = v.rotation_status("db").unwrap();
    assert_eq!((status.version, status.previous), (2, Some(1)));
    assert_eq!(status.overlap_until, Some(T + 3600));
    assert!(status.retire_when_read);
    assert_eq!(status.waiting_on, ["api", "web"]);
    let api = &status.services[0];
    assert_eq!(
        (api.service.as_str(), api.opened, api.has_current),
        ("api", Some(1), false)
    );
    open_current(&v, "web");
    let status = v.rotation_status("db").unwrap();
    assert_eq!(status.waiting_on, ["api"]);
    assert!(status.services[1].has_current);
    // A grant that ended is no longer waited on.
    one(
        &v,
        &admin("gone"),
        Change::Revoke {
            service: "api",
            name: "db",
        },
    )
    .unwrap();
    let status = v.rotation_status("db").unwrap();
    assert!(status.waiting_on.is_empty());
    assert_eq!(status.services.len(), 1);
    assert!(matches!(
        v.rotation_status("nope"),
        Err(Error::NoSuchSecret)
    ));
}
