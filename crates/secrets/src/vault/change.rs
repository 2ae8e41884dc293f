//! Changes to the vault, applied as one transaction: [`Vault::apply`].
//!
//! Every mutation of secrets, services and grants goes through here, one change or many:
//! each change is checked and planned against the state as the changes before it in the
//! same call left it ([`Overlay`]), and the mutations of all of them are committed as one
//! batch. So a list of changes applies fully or not at all, and a single change is just a
//! list of one (`Vault::set`, `Vault::grant`, ... call [`Vault::apply`]).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use crate::actor::Actor;
use crate::crypto::{Key, random_u64};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::names;
use crate::record::{SecretRecord, ServiceRecord};
use crate::rows::Mutation;
use crate::state::State;

use super::{Vault, sealing_key};

/// One change to the vault. Values are borrowed: nothing copies a secret to describe it.
#[derive(Clone, Copy)]
pub enum Change<'a> {
    /// Store a new version of a secret (version 1 if it is new).
    Set {
        /// The secret's name.
        name: &'a str,
        /// Its new value.
        value: &'a [u8],
    },
    /// Delete a secret and every grant of it.
    Delete {
        /// The secret's name.
        name: &'a str,
    },
    /// Let a service read a secret.
    Grant {
        /// The service.
        service: &'a str,
        /// The secret.
        name: &'a str,
    },
    /// Stop a service reading a secret.
    Revoke {
        /// The service.
        service: &'a str,
        /// The secret.
        name: &'a str,
    },
    /// Map a unix uid to a service, creating the service if absent.
    ServiceUid {
        /// The service.
        service: &'a str,
        /// The uid.
        uid: u32,
    },
    /// Replace a service's manifest, creating the service if absent.
    ServiceManifest {
        /// The service.
        service: &'a str,
        /// The manifest's text, parsed before anything changes.
        manifest: &'a [u8],
    },
    /// Remove a service, its uid mapping and its grants.
    ServiceRemove {
        /// The service.
        service: &'a str,
    },
}

impl std::fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Set { name, value } => write!(f, "Set({name}, {} bytes)", value.len()),
            Change::Delete { name } => write!(f, "Delete({name})"),
            Change::Grant { service, name } => write!(f, "Grant({service}, {name})"),
            Change::Revoke { service, name } => write!(f, "Revoke({service}, {name})"),
            Change::ServiceUid { service, uid } => write!(f, "ServiceUid({service}, {uid})"),
            Change::ServiceManifest { service, manifest } => {
                write!(f, "ServiceManifest({service}, {} bytes)", manifest.len())
            }
            Change::ServiceRemove { service } => write!(f, "ServiceRemove({service})"),
        }
    }
}

/// What one change did: enough for a client to say so ("already granted", "updated").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// A secret was stored as this version.
    Set {
        /// Its new version.
        version: u64,
    },
    /// A secret was deleted, with this many grants.
    Deleted {
        /// Grants that went with it.
        grants: usize,
    },
    /// A grant holds.
    Granted {
        /// It held already: nothing changed.
        already: bool,
    },
    /// A grant is gone.
    Revoked {
        /// Whether there was a grant to take away (if not, nothing changed).
        was_granted: bool,
    },
    /// A service is mapped to the uid.
    ServiceUid {
        /// The service was created by this change.
        created: bool,
        /// The uid it had before, if any (the same uid: nothing changed).
        previous: Option<u32>,
    },
    /// A service's manifest was replaced.
    ServiceManifest {
        /// The service was created by this change.
        created: bool,
    },
    /// A service was removed, with this many grants.
    ServiceRemoved {
        /// Grants that went with it.
        grants: usize,
    },
}

/// A change of a list that could not be applied; none of the list was.
#[derive(Debug)]
pub struct ChangeError {
    /// Its position in the list.
    pub index: usize,
    /// Why.
    pub error: Error,
}

/// The state as a transaction sees it: what is committed, and over it what the changes
/// planned so far in this transaction did. Only what they touched is held here, so a
/// single change costs no copy of the state.
struct Overlay<'s> {
    base: &'s State,
    secrets: HashMap<String, Option<SecretRecord>>,
    services: HashMap<String, Option<ServiceRecord>>,
    grants: HashMap<(String, String), bool>,
    uids: HashMap<u32, Option<String>>,
    batch: Vec<Mutation>,
}

impl<'s> Overlay<'s> {
    fn new(base: &'s State) -> Overlay<'s> {
        Overlay {
            base,
            secrets: HashMap::new(),
            services: HashMap::new(),
            grants: HashMap::new(),
            uids: HashMap::new(),
            batch: Vec::new(),
        }
    }

    fn secret(&self, name: &str) -> Option<&SecretRecord> {
        match self.secrets.get(name) {
            Some(planned) => planned.as_ref(),
            None => self.base.secrets.get(name),
        }
    }

    fn service(&self, name: &str) -> Option<&ServiceRecord> {
        match self.services.get(name) {
            Some(planned) => planned.as_ref(),
            None => self.base.services.get(name),
        }
    }

    fn is_granted(&self, service: &str, secret: &str) -> bool {
        match self.grants.get(&(service.to_owned(), secret.to_owned())) {
            Some(&planned) => planned,
            None => self.base.is_granted(service, secret),
        }
    }

    fn uid_owner(&self, uid: u32) -> Option<&str> {
        match self.uids.get(&uid) {
            Some(planned) => planned.as_deref(),
            None => self.base.uids.get(&uid).map(String::as_str),
        }
    }

    /// The services granted `secret`, sorted.
    fn holders(&self, secret: &str) -> Vec<String> {
        self.adjusted(self.base.holders(secret), |svc, sec| {
            (sec == secret).then_some(svc)
        })
    }

    /// The secrets granted to `service`, sorted.
    fn grants_of(&self, service: &str) -> Vec<String> {
        let base = self.base.grants.get(service).into_iter().flatten().cloned();
        self.adjusted(base, |svc, sec| (svc == service).then_some(sec))
    }

    /// `base`, a set of names from the committed grants, with this transaction's grant
    /// changes applied: `pick` says which name of a changed (service, secret) pair the set
    /// holds, if the pair concerns the set at all.
    fn adjusted<'a>(
        &'a self,
        base: impl IntoIterator<Item = String>,
        pick: impl Fn(&'a str, &'a str) -> Option<&'a str>,
    ) -> Vec<String> {
        let mut names: BTreeSet<String> = base.into_iter().collect();
        for ((svc, sec), &granted) in &self.grants {
            if let Some(name) = pick(svc, sec) {
                if granted {
                    names.insert(name.to_owned());
                } else {
                    names.remove(name);
                }
            }
        }
        names.into_iter().collect()
    }

    /// Plans a mutation: it joins the batch, and later changes see it.
    fn push(&mut self, m: Mutation) {
        match &m {
            Mutation::PutSecret(name, rec) => {
                self.secrets.insert(name.clone(), Some(rec.clone()));
            }
            Mutation::DeleteSecret(name) => {
                self.secrets.insert(name.clone(), None);
            }
            Mutation::PutService(name, rec) => {
                if let Some(old) = self.service(name).and_then(|s| s.uid) {
                    self.uids.insert(old, None);
                }
                if let Some(uid) = rec.uid {
                    self.uids.insert(uid, Some(name.clone()));
                }
                self.services.insert(name.clone(), Some(rec.clone()));
            }
            Mutation::DeleteService(name) => {
                if let Some(uid) = self.service(name).and_then(|s| s.uid) {
                    self.uids.insert(uid, None);
                }
                self.services.insert(name.clone(), None);
            }
            Mutation::PutGrant(svc, sec) => {
                self.grants.insert((svc.clone(), sec.clone()), true);
            }
            Mutation::DeleteGrant(svc, sec) => {
                self.grants.insert((svc.clone(), sec.clone()), false);
            }
            // Not made by changes (rotation and commit write these themselves).
            Mutation::SetLastChange(_)
            | Mutation::SetActiveKey(_)
            | Mutation::SetRotationTarget(_)
            | Mutation::PutKeyCheck(..)
            | Mutation::DeleteKeyCheck(_) => {}
        }
        self.batch.push(m);
    }

    /// Checks one change against the state so far and plans its mutations.
    fn plan(&mut self, change: &Change<'_>, key: &Key, mtime: u64) -> Result<Applied> {
        match *change {
            Change::Set { name, value } => {
                names::check_secret_name(name)?;
                names::check_value(value)?;
                let (version, incarnation) = match self.secret(name) {
                    // Versions count sets; u64 cannot run out.
                    Some(r) => (r.version.saturating_add(1), r.incarnation),
                    None => (1, random_u64()?),
                };
                let rec = SecretRecord::seal(name, version, incarnation, mtime, key, value)?;
                self.push(Mutation::PutSecret(name.to_owned(), rec));
                Ok(Applied::Set { version })
            }
            Change::Delete { name } => {
                names::check_secret_name(name)?;
                if self.secret(name).is_none() {
                    return Err(Error::NoSuchSecret);
                }
                let holders = self.holders(name);
                self.push(Mutation::DeleteSecret(name.to_owned()));
                for service in &holders {
                    self.push(Mutation::DeleteGrant(service.clone(), name.to_owned()));
                }
                Ok(Applied::Deleted {
                    grants: holders.len(),
                })
            }
            Change::Grant { service, name } | Change::Revoke { service, name } => {
                let grant = matches!(change, Change::Grant { .. });
                names::check_service_name(service)?;
                names::check_secret_name(name)?;
                // Checked service first: "add the service" is the likelier fix.
                if self.service(service).is_none() {
                    return Err(Error::NoSuchService);
                }
                if self.secret(name).is_none() {
                    return Err(Error::NoSuchSecret);
                }
                let held = self.is_granted(service, name);
                let (service, name) = (service.to_owned(), name.to_owned());
                match (grant, held) {
                    (true, already) => {
                        if !already {
                            self.push(Mutation::PutGrant(service, name));
                        }
                        Ok(Applied::Granted { already })
                    }
                    (false, was_granted) => {
                        if was_granted {
                            self.push(Mutation::DeleteGrant(service, name));
                        }
                        Ok(Applied::Revoked { was_granted })
                    }
                }
            }
            Change::ServiceUid { service, uid } => {
                names::check_service_name(service)?;
                let admin_uid = self.base.meta.admin_uid;
                if uid == 0 || uid == admin_uid {
                    return Err(Error::UidIsAdmin { uid, admin_uid });
                }
                let existing = self.service(service);
                let created = existing.is_none();
                let previous = existing.and_then(|s| s.uid);
                match self.uid_owner(uid) {
                    Some(owner) if owner == service => {
                        return Ok(Applied::ServiceUid { created, previous });
                    }
                    Some(owner) => {
                        return Err(Error::UidInUse {
                            uid,
                            service: owner.to_owned(),
                        });
                    }
                    None => {}
                }
                let manifest = existing.map_or_else(Default::default, |s| Arc::clone(&s.manifest));
                self.push(Mutation::PutService(
                    service.to_owned(),
                    ServiceRecord {
                        uid: Some(uid),
                        manifest,
                    },
                ));
                Ok(Applied::ServiceUid { created, previous })
            }
            Change::ServiceManifest { service, manifest } => {
                names::check_service_name(service)?;
                let manifest = Arc::new(Manifest::parse(manifest)?);
                let existing = self.service(service);
                let created = existing.is_none();
                let uid = existing.and_then(|s| s.uid);
                self.push(Mutation::PutService(
                    service.to_owned(),
                    ServiceRecord { uid, manifest },
                ));
                Ok(Applied::ServiceManifest { created })
            }
            Change::ServiceRemove { service } => {
                names::check_service_name(service)?;
                if self.service(service).is_none() {
                    return Err(Error::NoSuchService);
                }
                let granted = self.grants_of(service);
                self.push(Mutation::DeleteService(service.to_owned()));
                for secret in &granted {
                    self.push(Mutation::DeleteGrant(service.to_owned(), secret.clone()));
                }
                Ok(Applied::ServiceRemoved {
                    grants: granted.len(),
                })
            }
        }
    }
}

impl Vault {
    /// Applies `changes` in order as one transaction, made by `actor`: each is checked
    /// against the state the ones before it left, and then all are committed together,
    /// durably, or none is. Returns what each did.
    ///
    /// # Errors
    /// The first change that cannot be applied, with its position; nothing was changed.
    /// A failure of the store itself, or an actor's reason past
    /// [`MAX_REASON_LEN`](crate::MAX_REASON_LEN), is reported at index 0 for a single
    /// change and at the list's end for several (no one change caused it).
    pub fn apply(
        &self,
        actor: &Actor,
        changes: &[Change<'_>],
    ) -> std::result::Result<Vec<Applied>, ChangeError> {
        let whole = |error| ChangeError {
            index: changes.len().saturating_sub(1),
            error,
        };
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        actor.check().map_err(whole)?;
        let _writer = self.writer().map_err(whole)?;
        // Never before the store's last change, as the commit dates itself: a clock that
        // steps back must not make a secret's mtime go back.
        let mtime = self.clock().max(self.state().meta.last_change);
        self.commit_planned(
            actor,
            |state| {
                let key = Arc::clone(sealing_key(state).map_err(whole)?);
                let mut overlay = Overlay::new(state);
                let mut applied = Vec::with_capacity(changes.len());
                for (index, change) in changes.iter().enumerate() {
                    let done = overlay
                        .plan(change, &key, mtime)
                        .map_err(|error| ChangeError { index, error })?;
                    applied.push(done);
                }
                Ok((overlay.batch, applied))
            },
            whole,
        )
    }

    /// [`Vault::apply`] of one change, made by this process ([`Actor::local`]).
    pub(crate) fn apply_one(&self, change: Change<'_>) -> Result<Applied> {
        self.apply(&Actor::local(), &[change])
            .map_err(|e| e.error)?
            .pop()
            .ok_or(Error::Corrupt {
                what: "a change produced no outcome",
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        (dir, v)
    }

    #[test]
    fn a_list_applies_whole_or_not_at_all() {
        let (_dir, v) = vault();
        let changes = [
            Change::Set {
                name: "a",
                value: b"1",
            },
            Change::ServiceUid {
                service: "web",
                uid: 1001,
            },
            Change::Grant {
                service: "web",
                name: "a",
            },
            Change::Grant {
                service: "web",
                name: "nosuch",
            },
        ];
        let e = v.apply(&Actor::local(), &changes).unwrap_err();
        assert_eq!(e.index, 3);
        assert!(matches!(e.error, Error::NoSuchSecret), "{:?}", e.error);
        assert!(v.secret_info("a").is_none());
        assert!(v.service("web").is_none());
        // Without the bad one, every change sees the ones before it.
        let applied = v.apply(&Actor::local(), &changes[..3]).unwrap();
        assert_eq!(
            applied,
            [
                Applied::Set { version: 1 },
                Applied::ServiceUid {
                    created: true,
                    previous: None
                },
                Applied::Granted { already: false },
            ]
        );
        assert_eq!(v.grants("web"), ["a"]);
        // The store holds it all after a reopen.
        let data = v.data_dir().unwrap().to_path_buf();
        drop(v);
        let v = Vault::open(&data, None).unwrap();
        assert_eq!(v.grants("web"), ["a"]);
        assert_eq!(v.service_for_uid(1001).as_deref(), Some("web"));
    }

    #[test]
    fn outcomes_say_what_changed() {
        let (_dir, v) = vault();
        let applied = v
            .apply(
                &Actor::local(),
                &[
                    Change::Set {
                        name: "a",
                        value: b"1",
                    },
                    Change::Set {
                        name: "a",
                        value: b"2",
                    },
                    Change::ServiceUid {
                        service: "web",
                        uid: 1001,
                    },
                    Change::ServiceUid {
                        service: "web",
                        uid: 1002,
                    },
                    // The uid web gave up is free for another service in the same list.
                    Change::ServiceUid {
                        service: "api",
                        uid: 1001,
                    },
                    Change::Grant {
                        service: "web",
                        name: "a",
                    },
                    Change::Grant {
                        service: "web",
                        name: "a",
                    },
                    Change::Revoke {
                        service: "api",
                        name: "a",
                    },
                    Change::Grant {
                        service: "api",
                        name: "a",
                    },
                    Change::ServiceManifest {
                        service: "worker",
                        manifest: b"secret a\n",
                    },
                    Change::ServiceRemove { service: "api" },
                    Change::Delete { name: "a" },
                ],
            )
            .unwrap();
        assert_eq!(
            applied,
            [
                Applied::Set { version: 1 },
                Applied::Set { version: 2 },
                Applied::ServiceUid {
                    created: true,
                    previous: None
                },
                Applied::ServiceUid {
                    created: false,
                    previous: Some(1001)
                },
                Applied::ServiceUid {
                    created: true,
                    previous: None
                },
                Applied::Granted { already: false },
                Applied::Granted { already: true },
                Applied::Revoked { was_granted: false },
                Applied::Granted { already: false },
                Applied::ServiceManifest { created: true },
                Applied::ServiceRemoved { grants: 1 },
                // web's grant, made in this list; api's went with api.
                Applied::Deleted { grants: 1 },
            ]
        );
        assert!(v.secret_info("a").is_none());
        assert!(v.grants("web").is_empty());
        assert_eq!(v.service_for_uid(1002).as_deref(), Some("web"));
        assert_eq!(v.service_for_uid(1001), None);
        assert!(v.service("worker").is_some());
        // Taking a uid another service holds names that service.
        let e = v
            .apply(
                &Actor::local(),
                &[Change::ServiceUid {
                    service: "worker",
                    uid: 1002,
                }],
            )
            .unwrap_err();
        assert!(
            matches!(&e.error, Error::UidInUse { uid: 1002, service } if service == "web"),
            "{:?}",
            e.error
        );
        let e = v
            .apply(
                &Actor::local(),
                &[Change::ServiceUid {
                    service: "worker",
                    uid: 1000,
                }],
            )
            .unwrap_err();
        assert_eq!(
            e.error.to_string(),
            "uid 1000 is the admin (root and uid 1000, which ran init, are) and cannot be \
             mapped to a service"
        );
    }

    #[test]
    fn mtimes_never_go_back_when_the_clock_does() {
        let (_dir, v) = vault();
        v.set_clock(Some(4_000_002_000));
        v.set("a", b"1").unwrap();
        v.set_clock(Some(4_000_001_000));
        v.set("a", b"2").unwrap();
        assert_eq!(v.secret_info("a").unwrap().mtime, 4_000_002_000);
    }

    #[test]
    fn a_change_that_changes_nothing_commits_nothing() {
        let (_dir, v) = vault();
        v.set("a", b"1").unwrap();
        v.service_set_uid("web", 1001).unwrap();
        let applied = v
            .apply(
                &Actor::local(),
                &[
                    Change::Revoke {
                        service: "web",
                        name: "a",
                    },
                    Change::ServiceUid {
                        service: "web",
                        uid: 1001,
                    },
                ],
            )
            .unwrap();
        assert_eq!(
            applied,
            [
                Applied::Revoked { was_granted: false },
                Applied::ServiceUid {
                    created: false,
                    previous: Some(1001)
                }
            ]
        );
    }

    #[test]
    fn a_reason_past_its_limit_is_refused_before_anything_changes() {
        let (_dir, v) = vault();
        let actor = Actor::admin(Some(1000)).with_reason("x".repeat(crate::MAX_REASON_LEN + 1));
        let set = Change::Set {
            name: "a",
            value: b"1",
        };
        let e = v.apply(&actor, &[set]).unwrap_err();
        assert!(
            matches!(e.error, Error::TooLarge { what: "reason", .. }),
            "{:?}",
            e.error
        );
        assert!(v.secret_info("a").is_none());
        assert!(v.rotate_key_by(&actor, &|_| {}).is_err());
        assert_eq!(v.status().active_key, 1);
        let actor = Actor::admin(Some(1000)).with_reason("ticket 42");
        assert_eq!(
            v.apply(&actor, &[set]).unwrap(),
            [Applied::Set { version: 1 }]
        );
    }
}
