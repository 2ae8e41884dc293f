//! Every file and directory of both trees, declared once: [`KINDS`].
//!
//! ```text
//! admin tree (aname "" or "admin")        a service's view (aname = the service)
//! /                                       /
//! └── secrets/                            ├── config/
//!     ├── audit      the audit trail      │   └── KEY     a config value of its manifest
//!     ├── backup     copy of the store    ├── events  its changes, a line each, read
//!     ├── ctl        commands, results    │           as they happen
//!     ├── events     every change         └── secret/
//!     ├── grants/SERVICE   granted names      ├── NAME    a granted secret's value
//!     ├── key        never readable           ├── NAME@pending   its pending version,
//!     ├── lint       the catalog's lint, JSON │              by walk only
//!     ├── plans/SERVICE/TIER  a plan, JSON    └── NAME@previous  its previous version
//!     ├── services/SERVICE uid, manifest                 in an overlap, by walk only
//!     ├── stale      secrets due a rotation, JSON
//!     ├── status     key, counts, rotation, freeze, suspended services
//!     └── store/NAME a secret's record, never readable
//! ```
//!
//! Each kind says what it is called, where it is, whether a listing shows it, its mode,
//! and what it holds ([`Content`]): walk, stat and listing in `node.rs` and open in
//! `fs/mod.rs` read these declarations. A new file (`secrets/lint`, a directory of
//! `plans/SERVICE/TIER`, a `secret/NAME@pending` reachable by walk and never listed) is
//! one more entry here; a file whose reads are of a new sort (a stream, a read that waits
//! for a change) is one more [`Content`], opened in `fs/mod.rs` and read in
//! `fs/opened.rs`.
//!
//! The vault's questions the kinds ask (below the table) are where a service's view is
//! checked against its grants and its manifest.

use model::Rotation;
use secrets::{Vault, VersionSlot};

use super::node::{Content, Generated, Kind, Name, Node, Tree};
use crate::reports::pretty_json;

/// Every kind, in no particular order; a kind is found from its directory's.
pub static KINDS: [&Kind; 27] = [
    &ADMIN_ROOT,
    &SECRETS,
    &CTL,
    &AUDIT,
    &STORE,
    &STORE_ENTRY,
    &GRANTS,
    &GRANTS_FILE,
    &SERVICES,
    &SERVICE_FILE,
    &KEY,
    &STATUS,
    &BACKUP,
    &PLANS,
    &PLAN_SERVICE,
    &PLAN,
    &LINT,
    &STALE,
    &ADMIN_EVENTS,
    &SERVICE_ROOT,
    &EVENTS,
    &SECRET_DIR,
    &SECRET,
    &SECRET_PENDING,
    &SECRET_PREVIOUS,
    &CONFIG_DIR,
    &CONFIG,
];

/// Directories are read and searched by their owner only.
const DIR: u32 = 0o500;

/// The admin root: holds `secrets/`.
pub static ADMIN_ROOT: Kind = Kind {
    id: 1,
    parent: None,
    name: Name::Fixed("/"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets`.
pub static SECRETS: Kind = Kind {
    id: 2,
    parent: Some(&ADMIN_ROOT),
    name: Name::Fixed("secrets"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/ctl`: read-write, commands in and their results out (fs/ctl.rs).
pub static CTL: Kind = Kind {
    id: 3,
    parent: Some(&SECRETS),
    name: Name::Fixed("ctl"),
    mode: 0o600,
    content: Content::Ctl,
};

/// `/secrets/store`: one entry per secret.
pub static STORE: Kind = Kind {
    id: 4,
    parent: Some(&SECRETS),
    name: Name::Fixed("store"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/store/NAME`: metadata only, never readable.
pub static STORE_ENTRY: Kind = Kind {
    id: 5,
    parent: Some(&STORE),
    name: Name::Each {
        pattern: "NAME",
        finds: is_secret,
        lists: Some(all_secrets),
    },
    mode: 0,
    content: Content::Record,
};

/// `/secrets/grants`.
pub static GRANTS: Kind = Kind {
    id: 6,
    parent: Some(&SECRETS),
    name: Name::Fixed("grants"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/grants/SERVICE`: the names granted, one per line.
pub static GRANTS_FILE: Kind = Kind {
    id: 7,
    parent: Some(&GRANTS),
    name: Name::Each {
        pattern: "SERVICE",
        finds: is_service,
        lists: Some(all_services),
    },
    mode: 0o400,
    content: Content::Text(grants_text),
};

/// `/secrets/services`.
pub static SERVICES: Kind = Kind {
    id: 8,
    parent: Some(&SECRETS),
    name: Name::Fixed("services"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/services/SERVICE`: uid and manifest.
pub static SERVICE_FILE: Kind = Kind {
    id: 9,
    parent: Some(&SERVICES),
    name: Name::Each {
        pattern: "SERVICE",
        finds: is_service,
        lists: Some(all_services),
    },
    mode: 0o400,
    content: Content::Text(service_text),
};

/// `/secrets/key`: exists, never readable.
pub static KEY: Kind = Kind {
    id: 10,
    parent: Some(&SECRETS),
    name: Name::Fixed("key"),
    mode: 0,
    content: Content::Nothing,
};

/// `/secrets/status`: key id, counts, rotation progress.
pub static STATUS: Kind = Kind {
    id: 11,
    parent: Some(&SECRETS),
    name: Name::Fixed("status"),
    mode: 0o400,
    content: Content::Text(status_text),
};

/// `/secrets/backup`: a copy of the store, taken at open (admin only).
pub static BACKUP: Kind = Kind {
    id: 17,
    parent: Some(&SECRETS),
    name: Name::Fixed("backup"),
    mode: 0o400,
    content: Content::Backup,
};

/// `/secrets/audit`: the audit trail, every chain merged by time, as JSON lines (admin
/// only), read as a stream a page at a time from the store (fs/opened.rs).
pub static AUDIT: Kind = Kind {
    id: 25,
    parent: Some(&SECRETS),
    name: Name::Fixed("audit"),
    mode: 0o400,
    content: Content::Audit,
};

/// `/secrets/plans`: a directory per service.
pub static PLANS: Kind = Kind {
    id: 18,
    parent: Some(&SECRETS),
    name: Name::Fixed("plans"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/plans/SERVICE`: a plan per tier. Every declared tier can be walked to; a
/// listing shows the service's own tiers (all declared tiers if it lists none).
pub static PLAN_SERVICE: Kind = Kind {
    id: 19,
    parent: Some(&PLANS),
    name: Name::Each {
        pattern: "SERVICE",
        finds: is_service,
        lists: Some(all_services),
    },
    mode: DIR,
    content: Content::Dir,
};

/// `/secrets/plans/SERVICE/TIER`: the plan, as `deploy secret plan --json` prints it.
pub static PLAN: Kind = Kind {
    id: 20,
    parent: Some(&PLAN_SERVICE),
    name: Name::Each {
        pattern: "TIER",
        finds: is_tier,
        lists: Some(service_tiers),
    },
    mode: 0o400,
    content: Content::Text(plan_text),
};

/// `/secrets/lint`: the lint of every tier, as `deploy secret lint --json` prints it.
pub static LINT: Kind = Kind {
    id: 21,
    parent: Some(&SECRETS),
    name: Name::Fixed("lint"),
    mode: 0o400,
    content: Content::Text(lint_text),
};

/// `/secrets/stale`: the secrets older than their rotation period, as `deploy secret list
/// --stale --json` prints them.
pub static STALE: Kind = Kind {
    id: 24,
    parent: Some(&SECRETS),
    name: Name::Fixed("stale"),
    mode: 0o400,
    content: Content::Text(stale_text),
};

/// `/secrets/events`: every change, a line each (with the service it concerns), read as
/// it happens.
pub static ADMIN_EVENTS: Kind = Kind {
    // 25 is main's `secrets/audit` (issue 12): kinds' ids are never shared.
    id: 27,
    parent: Some(&SECRETS),
    name: Name::Fixed("events"),
    mode: 0o400,
    content: Content::Events,
};

/// `/events`: the changes the service is told of (its secrets', its grants', its
/// config's), a line each, read as they happen. Beside `secret/` and `config/`, so that no
/// secret's name can take it.
pub static EVENTS: Kind = Kind {
    id: 26,
    parent: Some(&SERVICE_ROOT),
    name: Name::Fixed("events"),
    mode: 0o400,
    content: Content::Events,
};

/// A service view's root: holds `secret/`, `config/` and `events`.
pub static SERVICE_ROOT: Kind = Kind {
    id: 12,
    parent: None,
    name: Name::Fixed("/"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secret`.
pub static SECRET_DIR: Kind = Kind {
    id: 13,
    parent: Some(&SERVICE_ROOT),
    name: Name::Fixed("secret"),
    mode: DIR,
    content: Content::Dir,
};

/// `/secret/NAME`: the plaintext of a granted secret.
pub static SECRET: Kind = Kind {
    id: 14,
    parent: Some(&SECRET_DIR),
    name: Name::Each {
        pattern: "NAME",
        finds: is_granted,
        lists: Some(granted),
    },
    mode: 0o400,
    content: Content::Plaintext(VersionSlot::Current),
};

/// `/secret/NAME@pending`: a granted secret's pending version, while it has one (for an
/// hour at most): reachable by walk, never listed, so that a glob of `/secret/*` reads
/// current values only.
pub static SECRET_PENDING: Kind = Kind {
    id: 22,
    parent: Some(&SECRET_DIR),
    name: Name::Each {
        pattern: "NAME@pending",
        finds: has_pending,
        lists: None,
    },
    mode: 0o400,
    content: Content::Plaintext(VersionSlot::Pending),
};

/// `/secret/NAME@previous`: a granted secret's previous version during its overlap:
/// reachable by walk, never listed.
pub static SECRET_PREVIOUS: Kind = Kind {
    id: 23,
    parent: Some(&SECRET_DIR),
    name: Name::Each {
        pattern: "NAME@previous",
        finds: has_previous,
        lists: None,
    },
    mode: 0o400,
    content: Content::Plaintext(VersionSlot::Previous),
};

/// `/config`.
pub static CONFIG_DIR: Kind = Kind {
    id: 15,
    parent: Some(&SERVICE_ROOT),
    name: Name::Fixed("config"),
    mode: DIR,
    content: Content::Dir,
};

/// `/config/KEY`: a plain config value from the manifest.
pub static CONFIG: Kind = Kind {
    id: 16,
    parent: Some(&CONFIG_DIR),
    name: Name::Each {
        pattern: "KEY",
        finds: has_config,
        lists: Some(config_keys),
    },
    mode: 0o400,
    content: Content::Text(config_text),
};

fn is_secret(tree: &Tree<'_>, _: &Node, name: &str) -> bool {
    tree.vault.secret_info(name).is_some()
}

fn all_secrets(tree: &Tree<'_>, _: &Node) -> Vec<String> {
    tree.vault
        .list_secrets()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

fn is_service(tree: &Tree<'_>, _: &Node, name: &str) -> bool {
    tree.vault.has_service(name)
}

fn all_services(tree: &Tree<'_>, _: &Node) -> Vec<String> {
    tree.vault.services().into_iter().map(|s| s.name).collect()
}

fn is_tier(tree: &Tree<'_>, _: &Node, tier: &str) -> bool {
    tree.vault.catalog().tier(tier).is_some()
}

/// The tiers a service is deployed to: those its declaration lists, else every tier.
fn service_tiers(tree: &Tree<'_>, dir: &Node) -> Vec<String> {
    let catalog = tree.vault.catalog();
    catalog
        .service_tiers(dir.name())
        .into_iter()
        .map(str::to_string)
        .collect()
}

/// The grant check of a walk and of every stat. A granted secret exists (delete drops
/// grants).
fn is_granted(tree: &Tree<'_>, _: &Node, name: &str) -> bool {
    tree.service()
        .is_some_and(|service| tree.vault.is_granted(service, name))
}

/// Whether the view's service may read `name`'s version in `slot` now, `name` being the
/// secret's name and the slot's suffix.
fn readable_in(tree: &Tree<'_>, name: &str, slot: VersionSlot) -> bool {
    let Some(secret) = name.strip_suffix(slot.suffix()) else {
        return false;
    };
    tree.service()
        .is_some_and(|service| tree.vault.is_readable(service, secret, slot))
}

fn has_pending(tree: &Tree<'_>, _: &Node, name: &str) -> bool {
    readable_in(tree, name, VersionSlot::Pending)
}

fn has_previous(tree: &Tree<'_>, _: &Node, name: &str) -> bool {
    readable_in(tree, name, VersionSlot::Previous)
}

fn granted(tree: &Tree<'_>, _: &Node) -> Vec<String> {
    tree.service()
        .map(|service| tree.vault.grants(service))
        .unwrap_or_default()
}

fn has_config(tree: &Tree<'_>, _: &Node, key: &str) -> bool {
    tree.service()
        .is_some_and(|service| config_value(tree.vault, service, key).is_some())
}

fn config_keys(tree: &Tree<'_>, _: &Node) -> Vec<String> {
    tree.service()
        .and_then(|service| tree.vault.service(service))
        .map(|s| s.manifest.config().keys().cloned().collect())
        .unwrap_or_default()
}

/// A service's config value for `key`, from its manifest.
fn config_value(vault: &Vault, service: &str, key: &str) -> Option<String> {
    vault
        .service(service)?
        .manifest
        .config_value(key)
        .map(str::to_string)
}

// Generated files are dated by the vault's last change of what they show.

/// A freeze's or a suspension's mark as the files show it.
fn mark_text(mark: secrets::Mark) -> model::Mark {
    model::Mark {
        since: mark.since,
        by: mark.who(),
        reason: mark.reason,
    }
}

/// `/secrets/status` ([`model::Status`]).
fn status_text(tree: &Tree<'_>, _: &Node) -> Option<Generated> {
    let st = tree.vault.status();
    let status = model::Status {
        frozen: tree.vault.frozen().map(mark_text),
        suspended: tree.vault.suspended(),
        key: Some(u64::from(st.active_key)),
        secrets: Some(st.secrets as u64),
        services: Some(st.services as u64),
        rotation: match st.rotation {
            Some(p) => Rotation::Running {
                done: p.done,
                total: p.total,
            },
            None => Rotation::Idle,
        },
    };
    Some(Generated {
        text: status.render().into_bytes(),
        changed: Some(st.changed),
    })
}

/// `/secrets/grants/SERVICE` ([`model::Grants`]): the granted names, sorted.
fn grants_text(tree: &Tree<'_>, node: &Node) -> Option<Generated> {
    let service = tree.vault.service(node.name())?;
    let grants = model::Grants {
        names: tree.vault.grants(node.name()),
        expires: tree.vault.grants_ending(node.name()),
    };
    Some(Generated {
        text: grants.render().into_bytes(),
        changed: Some(service.grants_changed),
    })
}

/// `/secrets/services/SERVICE` ([`model::ServiceFile`]): the uid, then the manifest
/// verbatim.
fn service_text(tree: &Tree<'_>, node: &Node) -> Option<Generated> {
    let s = tree.vault.service(node.name())?;
    let file = model::ServiceFile {
        uid: s.uid,
        suspended: s.suspended.map(mark_text),
        manifest: s.manifest.text().as_bytes().to_vec(),
    };
    Some(Generated {
        text: file.render(),
        changed: Some(s.changed),
    })
}

/// `/secrets/plans/SERVICE/TIER` ([`catalog::Plan`]), dated by the store's last change
/// (a plan reads the catalog, the manifest, grants and which values exist).
/// Made once per revision of the store ([`super::reports`]).
fn plan_text(tree: &Tree<'_>, node: &Node) -> Option<Generated> {
    let service = node.parent();
    let (service, tier) = (service.name(), node.name());
    let text = tree
        .reports
        .get(tree.vault, &format!("plan/{service}/{tier}"), || {
            let plan = tree.vault.plan(service, tier).ok()?;
            Some(pretty_json(&plan).to_vec())
        })?;
    Some(Generated {
        text: text.to_vec(),
        changed: Some(tree.vault.status().changed),
    })
}

/// `/secrets/lint` ([`catalog::Lint`]), dated by the store's last change; made once per
/// revision of the store.
fn lint_text(tree: &Tree<'_>, _: &Node) -> Option<Generated> {
    let text = tree.reports.get(tree.vault, "lint", || {
        Some(pretty_json(&tree.vault.lint(None)).to_vec())
    })?;
    Some(Generated {
        text: text.to_vec(),
        changed: Some(tree.vault.status().changed),
    })
}

/// `/secrets/stale` ([`secrets::StaleSecret`]s), dated by the store's last change. Made
/// anew at each open (its answer moves with the clock, not only with the store).
fn stale_text(tree: &Tree<'_>, _: &Node) -> Option<Generated> {
    Some(Generated {
        text: pretty_json(&tree.vault.stale()).to_vec(),
        changed: Some(tree.vault.status().changed),
    })
}

/// `/config/KEY`, dated by the server's start.
fn config_text(tree: &Tree<'_>, node: &Node) -> Option<Generated> {
    Some(Generated {
        text: config_value(tree.vault, tree.service()?, node.name())?.into_bytes(),
        changed: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use ninep::{Error, dm, qt};

    use super::*;
    use crate::fs::reports::Reports;
    use crate::principal::{Principal, View};

    /// A vault with secrets a (granted to web) and b, services web (with a manifest) and api.
    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        v.set("a", b"alpha").unwrap();
        v.set("b", b"bravo!").unwrap();
        v.service_set_uid("web", 1001).unwrap();
        v.service_set_manifest("web", b"secret a\nconfig level=debug\n")
            .unwrap();
        v.service_set_uid("api", 1002).unwrap();
        v.grant("web", "a").unwrap();
        (dir, v)
    }

    fn view(service: &str) -> View {
        View::Service {
            service: service.into(),
            by: Principal::Admin,
        }
    }

    /// A tree of its own reports (tests share no reports: each has a vault of its own).
    fn tree<'a>(vault: &'a Vault, view: &'a View) -> Tree<'a> {
        Tree {
            vault,
            reports: Box::leak(Box::default()),
            view,
            started: 7,
        }
    }

    fn at(kind: &'static Kind) -> Node {
        Node::new(kind, "")
    }

    fn named(kind: &'static Kind, name: &str) -> Node {
        Node::new(kind, name)
    }

    #[test]
    fn a_service_walks_only_to_what_it_was_granted() {
        let (_dir, v) = vault();
        let (web, api, admin) = (view("web"), view("api"), View::Admin);
        let secret_dir = at(&SECRET_DIR);
        assert_eq!(
            secret_dir.child(&tree(&v, &web), "a"),
            Some(named(&SECRET, "a"))
        );
        // Not granted, and missing: the same answer.
        assert_eq!(secret_dir.child(&tree(&v, &web), "b"), None);
        assert_eq!(secret_dir.child(&tree(&v, &web), "nosuch"), None);
        assert_eq!(secret_dir.child(&tree(&v, &api), "a"), None);
        // The admin tree has no secret/ of its own.
        assert_eq!(secret_dir.child(&tree(&v, &admin), "a"), None);
        assert_eq!(
            at(&CONFIG_DIR).child(&tree(&v, &web), "level"),
            Some(named(&CONFIG, "level"))
        );
        assert_eq!(at(&CONFIG_DIR).child(&tree(&v, &api), "level"), None);
        v.revoke("web", "a").unwrap();
        assert_eq!(secret_dir.child(&tree(&v, &web), "a"), None);
    }

    #[test]
    fn pending_and_previous_versions_are_walked_to_by_grantees_and_never_listed() {
        let (_dir, v) = vault();
        let (web, api) = (view("web"), view("api"));
        let secret_dir = at(&SECRET_DIR);
        let names = |view: &View| {
            secret_dir
                .list(&tree(&v, view))
                .iter()
                .map(|n| n.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(secret_dir.child(&tree(&v, &web), "a@pending"), None);
        let actor = secrets::Actor::admin(Some(0));
        v.apply(
            &actor,
            &[secrets::Change::Stage {
                name: "a",
                value: b"alpha, version 2",
            }],
        )
        .unwrap();
        let pending = secret_dir.child(&tree(&v, &web), "a@pending").unwrap();
        assert_eq!(pending, named(&SECRET_PENDING, "a@pending"));
        let attr = pending.attr(&tree(&v, &web)).unwrap();
        assert_eq!((attr.mode, attr.length, attr.qid.version), (0o400, 16, 2));
        assert_ne!(
            attr.qid.path,
            named(&SECRET, "a").attr(&tree(&v, &web)).unwrap().qid.path
        );
        // Never listed; not there for a service not granted the secret, nor for names
        // that only look like one.
        assert_eq!(names(&web), ["a"]);
        assert_eq!(secret_dir.child(&tree(&v, &api), "a@pending"), None);
        assert_eq!(secret_dir.child(&tree(&v, &web), "b@pending"), None);
        assert_eq!(secret_dir.child(&tree(&v, &web), "a@pending@pending"), None);
        assert_eq!(secret_dir.child(&tree(&v, &web), "@pending"), None);
        assert_eq!(secret_dir.child(&tree(&v, &web), "a@previous"), None);
        // Promoted with an overlap: the old version is a@previous; a@pending is gone, and
        // a stat of the node walked before says so.
        v.apply(
            &actor,
            &[secrets::Change::Promote {
                name: "a",
                overlap: Some(3600),
                revoke_previous: false,
                retire_when_read: false,
            }],
        )
        .unwrap();
        assert_eq!(
            pending.attr(&tree(&v, &web)).unwrap_err(),
            Error::not_found()
        );
        let previous = secret_dir.child(&tree(&v, &web), "a@previous").unwrap();
        let attr = previous.attr(&tree(&v, &web)).unwrap();
        assert_eq!((attr.length, attr.qid.version), (5, 1));
        assert_eq!(names(&web), ["a"]);
        // Retired: gone.
        v.apply(
            &actor,
            &[secrets::Change::Retire {
                name: "a",
                when_read: None,
            }],
        )
        .unwrap();
        assert_eq!(secret_dir.child(&tree(&v, &web), "a@previous"), None);
    }

    #[test]
    fn a_stat_checks_the_grant_again() {
        let (_dir, v) = vault();
        let web = view("web");
        let web = tree(&v, &web);
        let secret = named(&SECRET, "a");
        let a = secret.attr(&web).unwrap();
        assert_eq!((a.mode, a.length, a.qid.version), (0o400, 5, 1));
        assert_eq!(a.qid.ty, qt::FILE);
        v.set("a", b"alpha, version 2").unwrap();
        let a = secret.attr(&web).unwrap();
        assert_eq!((a.length, a.qid.version), (16, 2));
        // Revoked after the walk: gone, as if it never existed.
        v.revoke("web", "a").unwrap();
        assert_eq!(secret.attr(&web).unwrap_err(), Error::not_found());
        assert_eq!(
            named(&SECRET, "b").attr(&web).unwrap_err(),
            Error::not_found()
        );
        // In the admin tree a secret is an entry of store/, never readable.
        let admin = tree(&v, &View::Admin);
        let entry = named(&STORE_ENTRY, "b").attr(&admin).unwrap();
        assert_eq!((entry.mode, entry.length), (0, 6));
        assert_eq!(at(&KEY).attr(&admin).unwrap().mode, 0);
        assert_eq!(at(&CTL).attr(&admin).unwrap().mode, 0o600);
        let dir = at(&STORE).attr(&admin).unwrap();
        assert_eq!(
            (dir.mode, dir.mtime, dir.qid.ty),
            (dm::DIR | 0o500, 7, qt::DIR)
        );
    }

    #[test]
    fn generated_files_are_dated_by_their_last_change_not_the_start() {
        let (_dir, v) = vault();
        let admin = View::Admin;
        let mtime = |n: Node| n.attr(&tree(&v, &admin)).unwrap().mtime;
        let web = v.service("web").unwrap();
        let status = v.status().changed;
        assert!(status > 7 && web.changed > 7 && web.grants_changed > 7);
        assert_eq!(u64::from(mtime(at(&STATUS))), status);
        assert_eq!(
            u64::from(mtime(named(&GRANTS_FILE, "web"))),
            web.grants_changed
        );
        assert_eq!(u64::from(mtime(named(&SERVICE_FILE, "web"))), web.changed);
        // Directories and the fixed files keep the server's start.
        assert_eq!(mtime(at(&GRANTS)), 7);
        assert_eq!(mtime(at(&CTL)), 7);
    }

    #[test]
    fn listings_show_only_what_a_walk_would_find() {
        let (_dir, v) = vault();
        let names = |nodes: Vec<Node>| {
            nodes
                .iter()
                .map(|n| n.name().to_string())
                .collect::<Vec<_>>()
        };
        let (web, api, admin) = (view("web"), view("api"), View::Admin);
        let list = |dir: &'static Kind, view: &View| names(at(dir).list(&tree(&v, view)));
        assert_eq!(list(&SECRET_DIR, &web), ["a"]);
        assert!(list(&SECRET_DIR, &api).is_empty());
        assert_eq!(list(&CONFIG_DIR, &web), ["level"]);
        assert_eq!(list(&STORE, &admin), ["a", "b"]);
        assert_eq!(list(&GRANTS, &admin), ["api", "web"]);
        assert_eq!(
            list(&SECRETS, &admin),
            [
                "audit", "backup", "ctl", "events", "grants", "key", "lint", "plans", "services",
                "stale", "status", "store"
            ]
        );
        assert_eq!(list(&SERVICE_ROOT, &web), ["config", "events", "secret"]);
        // Every entry listed is one a walk finds, and its parent is the directory.
        for (dir, view) in [
            (&ADMIN_ROOT, &admin),
            (&SECRETS, &admin),
            (&STORE, &admin),
            (&GRANTS, &admin),
            (&SERVICES, &admin),
            (&SERVICE_ROOT, &web),
            (&SECRET_DIR, &web),
            (&CONFIG_DIR, &web),
        ] {
            let (dir, tree) = (at(dir), tree(&v, view));
            for entry in dir.list(&tree) {
                assert_eq!(dir.child(&tree, entry.name()), Some(entry.clone()));
                assert_eq!(entry.parent(), dir);
                entry.stat(&tree).unwrap();
            }
        }
    }

    #[test]
    fn every_kind_hangs_from_a_root_in_the_table_under_a_name_of_its_own() {
        for kind in KINDS {
            let mut up = kind;
            while let Some(parent) = up.parent {
                assert!(KINDS.iter().any(|k| k.id == parent.id), "{kind:?}");
                assert!(parent.is_dir(), "{kind:?} is in a file");
                up = parent;
            }
            assert!(
                up.id == ADMIN_ROOT.id || up.id == SERVICE_ROOT.id,
                "{kind:?}"
            );
            // No two fixed entries of a directory share a name.
            if let (Name::Fixed(name), Some(_)) = (&kind.name, kind.parent) {
                let same = KINDS.iter().filter(|k| {
                    k.parent.map(|p| p.id) == kind.parent.map(|p| p.id)
                        && matches!(k.name, Name::Fixed(n) if n == *name)
                });
                assert_eq!(same.count(), 1, "{kind:?}");
            }
        }
        assert_eq!(SECRET.path(), "/secret/NAME");
        assert_eq!(GRANTS_FILE.path(), "/secrets/grants/SERVICE");
    }

    #[test]
    fn qid_paths_are_stable_and_distinct() {
        let mut ids: Vec<u8> = KINDS.iter().map(|k| k.id).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), KINDS.len(), "two kinds share an id");
        let (_dir, v) = vault();
        let admin = View::Admin;
        let nodes = [
            at(&ADMIN_ROOT),
            at(&SECRETS),
            at(&CTL),
            at(&STORE),
            named(&STORE_ENTRY, "a"),
            named(&STORE_ENTRY, "b"),
            at(&GRANTS),
            named(&GRANTS_FILE, "web"),
            at(&SERVICES),
            named(&SERVICE_FILE, "web"),
            at(&KEY),
            at(&STATUS),
            at(&BACKUP),
            at(&STALE),
        ];
        let mut paths: Vec<u64> = nodes
            .iter()
            .map(|n| n.attr(&tree(&v, &admin)).unwrap().qid.path)
            .collect();
        let web = view("web");
        for n in [
            at(&SERVICE_ROOT),
            at(&SECRET_DIR),
            named(&SECRET, "a"),
            at(&CONFIG_DIR),
            named(&CONFIG, "level"),
        ] {
            paths.push(n.attr(&tree(&v, &web)).unwrap().qid.path);
        }
        let mut unique = paths.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), paths.len(), "{paths:x?}");
        // The kind's byte, then FNV-1a of the name, masked: the same in every run and
        // every build, and what earlier servers gave.
        let secret_a = named(&SECRET, "a").attr(&tree(&v, &web)).unwrap();
        assert_eq!(
            secret_a.qid.path,
            (14 << 56) | (0xaf63_dc4c_8601_ec8c & 0x00ff_ffff_ffff_ffff)
        );
        let ctl = at(&CTL).attr(&tree(&v, &admin)).unwrap();
        assert_eq!(ctl.qid.path, 3 << 56);
    }

    #[test]
    fn plans_are_walked_by_service_and_tier_and_say_what_deploy_secret_plan_says() {
        let (_dir, v) = vault();
        let actor = secrets::Actor::admin(Some(0));
        v.apply(
            &actor,
            &[
                secrets::Change::TierDeclare {
                    tier: "cloud",
                    core: false,
                },
                secrets::Change::TierDeclare {
                    tier: "local",
                    core: true,
                },
            ],
        )
        .unwrap();
        let admin = View::Admin;
        let admin = tree(&v, &admin);
        let plans = at(&PLANS);
        let names = |n: &Node| {
            n.list(&admin)
                .iter()
                .map(|e| e.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&plans), ["api", "web"]);
        let web = plans.child(&admin, "web").unwrap();
        assert_eq!(names(&web), ["cloud", "local"]);
        assert_eq!(plans.child(&admin, "nosuch"), None);
        assert_eq!(web.child(&admin, "undeclared"), None);
        let local = web.child(&admin, "local").unwrap();
        assert_eq!(local.attr(&admin).unwrap().mode, 0o400);
        let Content::Text(render) = local.kind().content else {
            panic!("a plan is generated");
        };
        let text = render(&admin, &local).unwrap().text;
        let plan: catalog::Plan = serde_json::from_slice(&text).unwrap();
        assert_eq!(
            (plan.service.as_str(), plan.tier.as_str()),
            ("web", "local")
        );
        assert_eq!(text, pretty_json(&v.plan("web", "local").unwrap()).to_vec());
        let lint = at(&LINT);
        let Content::Text(render) = lint.kind().content else {
            panic!("the lint is generated");
        };
        let text = render(&admin, &lint).unwrap().text;
        assert_eq!(text, pretty_json(&v.lint(None)).to_vec());
    }

    #[test]
    fn reports_are_made_once_per_revision_however_often_they_are_walked_and_statted() {
        let (_dir, v) = vault();
        v.apply(
            &secrets::Actor::admin(Some(0)),
            &[secrets::Change::TierDeclare {
                tier: "local",
                core: true,
            }],
        )
        .unwrap();
        let reports = Reports::default();
        let admin = View::Admin;
        let admin = Tree {
            vault: &v,
            reports: &reports,
            view: &admin,
            started: 7,
        };
        let secrets_dir = at(&SECRETS);
        let lint = secrets_dir.child(&admin, "lint").unwrap();
        let plan = at(&PLANS)
            .child(&admin, "web")
            .unwrap()
            .child(&admin, "local")
            .unwrap();
        let Content::Text(render) = lint.kind().content else {
            panic!("the lint is generated");
        };
        // What `cat` through a kernel mount does (walk, stat, open), and `ls -l`, twice.
        for _ in 0..2 {
            lint.attr(&admin).unwrap();
            lint.stat(&admin).unwrap();
            render(&admin, &lint).unwrap();
            secrets_dir
                .list(&admin)
                .iter()
                .for_each(|n| drop(n.stat(&admin)));
            plan.attr(&admin).unwrap();
            plan.parent()
                .list(&admin)
                .iter()
                .for_each(|n| drop(n.stat(&admin)));
        }
        assert_eq!(reports.made(), 2, "one lint, one plan");
        assert_eq!(
            render(&admin, &lint).unwrap().text,
            pretty_json(&v.lint(None)).to_vec()
        );
        // A change makes them again, once.
        v.set("c", b"charlie").unwrap();
        for _ in 0..3 {
            lint.attr(&admin).unwrap();
            plan.attr(&admin).unwrap();
        }
        assert_eq!(reports.made(), 4);
        assert_eq!(
            render(&admin, &lint).unwrap().text,
            pretty_json(&v.lint(None)).to_vec()
        );
    }

    #[test]
    fn generated_files() {
        let (_dir, v) = vault();
        let (web, admin) = (view("web"), View::Admin);
        let text = |kind: &'static Kind, name: &str, view: &View| {
            let Content::Text(render) = kind.content else {
                panic!("{kind:?} is not generated");
            };
            render(&tree(&v, view), &named(kind, name)).map(|g| String::from_utf8(g.text).unwrap())
        };
        assert_eq!(text(&GRANTS_FILE, "web", &admin).unwrap(), "a\n");
        assert_eq!(text(&GRANTS_FILE, "api", &admin).unwrap(), "");
        assert_eq!(
            text(&SERVICE_FILE, "web", &admin).unwrap(),
            "uid 1001\nsecret a\nconfig level=debug\n"
        );
        assert_eq!(text(&SERVICE_FILE, "nosuch", &admin), None);
        assert_eq!(text(&CONFIG, "level", &web).as_deref(), Some("debug"));
        assert_eq!(text(&CONFIG, "other", &web), None);
        let status = text(&STATUS, "", &admin).unwrap();
        assert!(
            status.ends_with("secrets 2\nservices 2\nrotation idle\nfrozen no\n"),
            "{status}"
        );
        assert!(status.starts_with("key "), "{status}");
        // Frozen, and web suspended: both files say since when, by whom and why.
        let actor = secrets::Actor::admin(Some(0)).with_reason("INC-42");
        v.apply(
            &actor,
            &[
                secrets::Change::Freeze,
                secrets::Change::Suspend { service: "web" },
            ],
        )
        .unwrap();
        let since = v.frozen().unwrap().since;
        let status = text(&STATUS, "", &admin).unwrap();
        assert!(
            status.ends_with(&format!(
                "rotation idle\nfrozen {since}\nfrozen-by admin (uid 0)\nfrozen-reason INC-42\n\
                 suspended web\n"
            )),
            "{status}"
        );
        assert_eq!(
            text(&SERVICE_FILE, "web", &admin).unwrap(),
            format!(
                "uid 1001\nsuspended {since}\nsuspended-by admin (uid 0)\n\
                 suspended-reason INC-42\nsecret a\nconfig level=debug\n"
            )
        );
    }
}
