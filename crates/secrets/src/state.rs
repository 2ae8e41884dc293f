//! The in-memory copy of the store that every read is served from.
//!
//! It mirrors the backend exactly (plus the keyring, a uid index, and when things last
//! changed): the vault commits a batch to the backend first and then [`State::apply`]s the
//! same batch here, so the two never disagree about anything committed.
//!
//! # When things changed
//!
//! Every batch starts with [`Mutation::SetLastChange`], its time, persisted as the store's
//! `last_change`. A service's record and its grants have their own times, kept in memory
//! only: at load, and after a reload, both are the store's `last_change` (or the newest
//! secret mtime, for a store written before `last_change` existed), the latest they can
//! have changed. So across a restart an mtime can move forward, never back: tools that
//! compare mtimes (rsync, make) may copy or rebuild once more than needed, never less.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use catalog::Catalog;

use crate::backend::{Revision, Row};
use crate::crypto::Fingerprint;
use crate::crypto::Keyring;
use crate::error::{Error, Result};
use crate::events::Event;
use crate::keyfile::Seeds;
use crate::names;
use crate::record::{
    Auth, BundleId, BundleRecord, Decl, DeclKind, Issued, IssuedRow, IssuedValue, SecretRecord,
    ServiceRecord, TokenRecord,
};
use crate::rows::{Digest, Meta, Mutation, Stored};
use crate::tokens::TokenKey;
use crate::trail::AuditKeys;
use crate::types::RotationProgress;

/// Everything the vault knows.
#[derive(Debug)]
pub(crate) struct State {
    /// The meta table.
    pub(crate) meta: Meta,
    /// The keys that records may be under.
    pub(crate) keys: Keyring,
    /// Secrets by name (ordered, for listings).
    pub(crate) secrets: BTreeMap<String, SecretRecord>,
    /// Services by name.
    pub(crate) services: BTreeMap<String, ServiceRecord>,
    /// uid -> service name: the principal lookup at attach.
    pub(crate) uids: HashMap<u32, String>,
    /// service -> granted secret names: the check on every walk, open and read.
    pub(crate) grants: HashMap<String, BTreeSet<String>>,
    /// service -> secret -> when the grant ends (unix seconds), for the grants that end
    /// by themselves: looked up only for a service that has one. Past its end a grant is
    /// refused at once, and removed by the next [`Vault::expire`](crate::Vault::expire).
    pub(crate) expiring: HashMap<String, BTreeMap<String, u64>>,
    /// The deployment catalog: tiers, services' tiers, secrets' metadata. Shared, so that
    /// a reader (an export, a plan) takes it without holding the lock; a commit changes it
    /// in place unless a reader still holds it, and then copies it once.
    pub(crate) catalog: Arc<Catalog>,
    /// The bundles issued, and the fingerprints of the values generated for them.
    pub(crate) bundles: Bundles,
    /// API tokens' records, by ID.
    pub(crate) tokens: BTreeMap<String, TokenRecord>,
    /// The store revision this state is as of: the last commit applied.
    pub(crate) revision: Revision,
    /// How each secret, service and grant is authenticated, by row (see `rows.rs`).
    pub(crate) auths: HashMap<Row, Auth>,
    /// The digest of their terms, as the store record holds it.
    pub(crate) digest: Digest,
    /// Progress of the rotation in flight, for `status`.
    pub(crate) rotation: Option<RotationProgress>,
    /// The audit trail's keys (signing, and the tag of `opened` rows); `None` only for
    /// the state of a store being migrated or before the audit starts.
    pub(crate) audit: Option<Arc<AuditKeys>>,
    /// The key tokens are hashed under (the key file's `token` line); `None` only for the
    /// state of a store being migrated, or one made in a test without it.
    pub(crate) token_key: Option<Arc<TokenKey>>,
    /// secret -> service -> the highest version it opened (as the flushed opens say).
    pub(crate) opened: HashMap<String, BTreeMap<String, u64>>,
    /// service -> when its record and its grants last changed.
    pub(crate) changed: HashMap<String, Changed>,
    /// When anything `status` shows last changed: the last commit or rotation progress.
    pub(crate) status_changed: u64,
}

/// The bundles issued and the values generated for them (their fingerprints, never the
/// values), indexed by fingerprint for `identify`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Bundles {
    /// Every bundle, sorted by service, tier, deployment and number.
    pub(crate) bundles: BTreeMap<BundleId, BundleRecord>,
    /// Every value generated for one, by bundle and secret.
    pub(crate) values: BTreeMap<(BundleId, String), IssuedValue>,
    /// Which values have each fingerprint (one, unless a template draws no randomness).
    pub(crate) by_fingerprint: HashMap<Fingerprint, BTreeSet<(BundleId, String)>>,
}

impl Bundles {
    /// Records a bundle or a value (replacing the record of that row).
    pub(crate) fn put(&mut self, issued: Issued) {
        match issued {
            Issued::Bundle(id, rec) => {
                self.bundles.insert(id, rec);
            }
            Issued::Value(id, secret, rec) => {
                let key = (id, secret);
                if let Some(old) = self.values.insert(key.clone(), rec) {
                    self.unindex(&old.fingerprint, &key);
                }
                self.by_fingerprint
                    .entry(rec.fingerprint)
                    .or_default()
                    .insert(key);
            }
        }
    }

    /// Removes a bundle's or a value's record.
    pub(crate) fn delete(&mut self, what: IssuedRow) {
        match what {
            IssuedRow::Bundle(id) => {
                self.bundles.remove(&id);
            }
            IssuedRow::Value(id, secret) => {
                let key = (id, secret);
                if let Some(old) = self.values.remove(&key) {
                    self.unindex(&old.fingerprint, &key);
                }
            }
        }
    }

    fn unindex(&mut self, fingerprint: &Fingerprint, key: &(BundleId, String)) {
        if let Some(set) = self.by_fingerprint.get_mut(fingerprint) {
            set.remove(key);
            if set.is_empty() {
                self.by_fingerprint.remove(fingerprint);
            }
        }
    }

    /// The last bundle issued to `deployment` of `service` on `tier`.
    pub(crate) fn latest(
        &self,
        service: &str,
        tier: &str,
        deployment: &str,
    ) -> Option<(&BundleId, &BundleRecord)> {
        let from = BundleId {
            service: service.to_owned(),
            tier: tier.to_owned(),
            deployment: deployment.to_owned(),
            number: 0,
        };
        let to = BundleId {
            number: u64::MAX,
            ..from.clone()
        };
        self.bundles.range(from..=to).next_back()
    }
}

/// The keys the key file keeps beside the cluster keys ([`State::seed_keys`]).
pub(crate) struct SeedKeys {
    audit: Option<Arc<AuditKeys>>,
    token: Option<Arc<TokenKey>>,
}

impl SeedKeys {
    /// Their seeds, for the key file.
    pub(crate) fn seeds(&self) -> Seeds<'_> {
        Seeds {
            audit: self.audit.as_ref().map(|a| a.seed()),
            token: self.token.as_ref().map(|t| t.seed()),
        }
    }
}

/// When a service's files last changed, in unix seconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Changed {
    /// Its record: uid and manifest.
    pub(crate) record: u64,
    /// Its grants.
    pub(crate) grants: u64,
}

impl State {
    /// Builds the state from a freshly loaded store, checking the invariants the vault
    /// keeps, so that a damaged store is refused rather than served wrongly (a grant left
    /// behind by a deleted secret must not grant a later secret of the same name).
    pub(crate) fn from_stored(
        stored: Stored,
        keys: Keyring,
        audit: Option<Arc<AuditKeys>>,
        revision: Revision,
    ) -> Result<State> {
        let corrupt = |what| Error::Corrupt { what };
        let meta = stored.meta;
        let (auths, digest) = (stored.auths, stored.digest);
        let mut secrets = BTreeMap::new();
        for (name, rec) in stored.secrets {
            if !names::is_valid_name(&name) {
                return Err(corrupt("a secret has an invalid name"));
            }
            if rec.key_id != meta.active_key && Some(rec.key_id) != meta.rotation_target {
                return Err(corrupt(
                    "a secret is encrypted under a key the store does not use",
                ));
            }
            secrets.insert(name, rec);
        }
        let mut services = BTreeMap::new();
        let mut uids = HashMap::new();
        for (name, rec) in stored.services {
            if names::check_service_name(&name).is_err() {
                return Err(corrupt("a service has an invalid name"));
            }
            if let Some(uid) = rec.uid {
                if uid == 0 || uid == meta.admin_uid {
                    return Err(corrupt("a service is mapped to root or the admin uid"));
                }
                if uids.insert(uid, name.clone()).is_some() {
                    return Err(corrupt("two services share a uid"));
                }
            }
            services.insert(name, rec);
        }
        let mut grants: HashMap<String, BTreeSet<String>> = HashMap::new();
        let mut expiring: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        for (svc, sec, expires) in stored.grants {
            if !services.contains_key(&svc) || !secrets.contains_key(&sec) {
                return Err(corrupt("a grant names a missing service or secret"));
            }
            if let Some(t) = expires {
                expiring
                    .entry(svc.clone())
                    .or_default()
                    .insert(sec.clone(), t);
            }
            grants.entry(svc).or_default().insert(sec);
        }
        let catalog = catalog_of(stored.decls)?;
        let mut bundles = Bundles::default();
        for issued in stored.issued {
            bundles.put(issued);
        }
        if bundles
            .values
            .keys()
            .any(|(id, _)| !bundles.bundles.contains_key(id))
        {
            return Err(corrupt("a bundle's value has no bundle"));
        }
        // The latest anything can have changed (see the module documentation).
        let newest = secrets
            .values()
            .map(SecretRecord::mtime)
            .fold(meta.last_change, u64::max);
        let at_load = Changed {
            record: newest,
            grants: newest,
        };
        let changed = services.keys().map(|s| (s.clone(), at_load)).collect();
        let mut opened: HashMap<String, BTreeMap<String, u64>> = HashMap::new();
        for (secret, service, version) in stored.opened {
            opened.entry(secret).or_default().insert(service, version);
        }
        let mut tokens = BTreeMap::new();
        for (id, rec) in stored.tokens {
            if rec
                .service
                .as_deref()
                .is_some_and(|s| names::check_service_name(s).is_err())
            {
                return Err(corrupt("a token names an invalid service"));
            }
            tokens.insert(id, rec);
        }
        Ok(State {
            meta,
            keys,
            secrets,
            services,
            uids,
            grants,
            expiring,
            catalog: Arc::new(catalog),
            bundles,
            tokens,
            revision,
            auths,
            digest,
            rotation: None,
            audit,
            token_key: None,
            opened,
            changed,
            status_changed: newest,
        })
    }

    /// The keys the key file keeps beside the cluster keys, for writing it again.
    pub(crate) fn seeds(&self) -> Seeds<'_> {
        Seeds {
            audit: self.audit.as_ref().map(|a| a.seed()),
            token: self.token_key.as_ref().map(|t| t.seed()),
        }
    }

    /// The same keys, held apart from the state: for writing the key file without holding
    /// the state's lock meanwhile.
    pub(crate) fn seed_keys(&self) -> SeedKeys {
        SeedKeys {
            audit: self.audit.clone(),
            token: self.token_key.clone(),
        }
    }

    /// The state of a store holding `meta` and nothing else.
    pub(crate) fn empty(meta: Meta, keys: Keyring) -> State {
        State {
            meta,
            keys,
            secrets: BTreeMap::new(),
            services: BTreeMap::new(),
            uids: HashMap::new(),
            grants: HashMap::new(),
            expiring: HashMap::new(),
            catalog: Arc::default(),
            bundles: Bundles::default(),
            tokens: BTreeMap::new(),
            revision: Revision(0),
            auths: HashMap::new(),
            digest: Digest::default(),
            rotation: None,
            audit: None,
            token_key: None,
            opened: HashMap::new(),
            changed: HashMap::new(),
            status_changed: 0,
        }
    }

    /// The digest once the rows of a commit are written (`None`: deleted), in order.
    pub(crate) fn digest_after(&self, auths: &[(Row, Option<Auth>)]) -> Digest {
        let mut digest = self.digest;
        let mut now: HashMap<&Row, Option<Auth>> = HashMap::new();
        for (row, auth) in auths {
            let before = now
                .get(row)
                .copied()
                .unwrap_or_else(|| self.auths.get(row).copied());
            for term in before.iter().chain(auth).map(|a| a.term) {
                for (d, t) in digest.iter_mut().zip(term) {
                    *d ^= t;
                }
            }
            now.insert(row, *auth);
        }
        digest
    }

    /// Records how the rows of a commit are authenticated now, and the digest they make.
    pub(crate) fn apply_auths(&mut self, auths: Vec<(Row, Option<Auth>)>, digest: Digest) {
        for (row, auth) in auths {
            match auth {
                Some(auth) => {
                    self.auths.insert(row, auth);
                }
                None => {
                    self.auths.remove(&row);
                }
            }
        }
        self.digest = digest;
    }

    /// Applies a committed batch, and says what it changed for readers
    /// ([`crate::events`]) if `tell` gives the batch's store revision (none: nobody
    /// listens, and nothing is derived). Its changes are dated by its
    /// [`Mutation::SetLastChange`], which comes first.
    pub(crate) fn apply(&mut self, batch: Vec<Mutation>, tell: Option<Revision>) -> Vec<Event> {
        let mut events = Vec::new();
        for m in batch {
            // Against the state just before it: what a reader would see change.
            if let Some(at) = tell {
                crate::events::of_mutation(self, &m, at, &mut events);
            }
            let now = self.meta.last_change;
            match m {
                Mutation::PutSecret(name, rec) => {
                    self.secrets.insert(name, rec);
                }
                Mutation::DeleteSecret(name) => {
                    self.secrets.remove(&name);
                }
                Mutation::PutService(name, rec) => {
                    if let Some(old) = self.services.get(&name).and_then(|s| s.uid) {
                        self.uids.remove(&old);
                    }
                    if let Some(uid) = rec.uid {
                        self.uids.insert(uid, name.clone());
                    }
                    match self.changed.entry(name.clone()) {
                        Entry::Occupied(mut e) => e.get_mut().record = now,
                        // A new service: its (empty) grants file appears now too.
                        Entry::Vacant(e) => {
                            e.insert(Changed {
                                record: now,
                                grants: now,
                            });
                        }
                    }
                    self.services.insert(name, rec);
                }
                Mutation::DeleteService(name) => {
                    if let Some(uid) = self.services.remove(&name).and_then(|s| s.uid) {
                        self.uids.remove(&uid);
                    }
                    self.changed.remove(&name);
                }
                Mutation::PutGrant(svc, sec, expires) => {
                    self.touch_grants(&svc, now);
                    self.unexpire(&svc, &sec);
                    if let Some(t) = expires {
                        self.expiring
                            .entry(svc.clone())
                            .or_default()
                            .insert(sec.clone(), t);
                    }
                    self.grants.entry(svc).or_default().insert(sec);
                }
                Mutation::DeleteGrant(svc, sec) => {
                    self.touch_grants(&svc, now);
                    self.unexpire(&svc, &sec);
                    if let Some(set) = self.grants.get_mut(&svc) {
                        set.remove(&sec);
                        if set.is_empty() {
                            self.grants.remove(&svc);
                        }
                    }
                }
                Mutation::PutDecl(name, decl) => {
                    let catalog = Arc::make_mut(&mut self.catalog);
                    match decl {
                        Decl::Tier(t) => catalog.restore_tier(name, Some(t)),
                        Decl::Service(s) => catalog.restore_service(name, Some(s)),
                        Decl::Secret(m) => catalog.restore_secret(name, Some(m)),
                    }
                }
                Mutation::DeleteDecl(kind, name) => {
                    let catalog = Arc::make_mut(&mut self.catalog);
                    match kind {
                        DeclKind::Tier => catalog.restore_tier(name, None),
                        DeclKind::Service => catalog.restore_service(name, None),
                        DeclKind::Secret => catalog.restore_secret(name, None),
                    }
                }
                Mutation::PutIssued(issued) => self.bundles.put(issued),
                Mutation::DeleteIssued(what) => self.bundles.delete(what),
                Mutation::PutToken(id, rec) => {
                    self.tokens.insert(id, rec);
                }
                Mutation::DeleteToken(id) => {
                    self.tokens.remove(&id);
                }
                Mutation::SetFingerprintKey(sealed) => self.meta.fingerprint_key = sealed,
                Mutation::SetFrozen(frozen) => self.meta.frozen = frozen,
                Mutation::SetActiveKey(id) => self.meta.active_key = id,
                Mutation::SetRotationTarget(id) => self.meta.rotation_target = id,
                Mutation::PutKeyCheck(id, check) => {
                    self.meta.key_checks.insert(id, check);
                }
                Mutation::DeleteKeyCheck(id) => {
                    self.meta.key_checks.remove(&id);
                }
                Mutation::SetLastChange(t) => {
                    self.meta.last_change = t;
                    self.status_changed = self.status_changed.max(t);
                }
                Mutation::SetAuditHeads(heads) => self.meta.audit_heads = heads,
                Mutation::SetAuditKey(key) => self.meta.audit_key = Some(key),
                Mutation::PutOpened(secret, service, version) => {
                    self.opened
                        .entry(secret)
                        .or_default()
                        .insert(service, version);
                }
                Mutation::DeleteOpened(secret, service) => {
                    if let Some(by) = self.opened.get_mut(&secret) {
                        by.remove(&service);
                        if by.is_empty() {
                            self.opened.remove(&secret);
                        }
                    }
                }
                // Records are kept in the store only; memory keeps their heads.
                Mutation::Audit(..) | Mutation::PutAudit(..) => {}
            }
        }
        events
    }

    /// Forgets when `service`'s grant of `secret` ends.
    fn unexpire(&mut self, service: &str, secret: &str) {
        if let Some(map) = self.expiring.get_mut(service) {
            map.remove(secret);
            if map.is_empty() {
                self.expiring.remove(service);
            }
        }
    }

    /// Dates a change of `service`'s grants (a grant of a service being removed in the
    /// same batch, say, leaves nothing to date).
    fn touch_grants(&mut self, service: &str, now: u64) {
        if let Some(c) = self.changed.get_mut(service) {
            c.grants = now;
        }
    }

    /// Records the progress of a rotation, which `status` shows, at time `now`.
    pub(crate) fn set_rotation(&mut self, progress: Option<RotationProgress>, now: u64) {
        if self.rotation != progress {
            self.rotation = progress;
            self.status_changed = self.status_changed.max(now);
        }
    }

    /// Whether both hold the same records: meta, secrets, services, grants and the
    /// catalog (the uid index follows from the services; keys and rotation progress are
    /// not records).
    pub(crate) fn same_records(&self, other: &State) -> bool {
        self.meta == other.meta
            && self.secrets == other.secrets
            && self.services == other.services
            && self.grants == other.grants
            && self.expiring == other.expiring
            && self.catalog == other.catalog
            && self.bundles == other.bundles
            && self.tokens == other.tokens
            && self.opened == other.opened
    }

    /// Whether the store holds a grant of `secret` to `service` (ended or not).
    pub(crate) fn is_granted(&self, service: &str, secret: &str) -> bool {
        self.grants.get(service).is_some_and(|s| s.contains(secret))
    }

    /// When `service`'s grant of `secret` ends, if it ends by itself.
    pub(crate) fn grant_expires(&self, service: &str, secret: &str) -> Option<u64> {
        self.expiring.get(service)?.get(secret).copied()
    }

    /// Whether `service` may read `secret` at the time `now` gives: a grant held and not
    /// ended. `now` is asked only of a grant that ends by itself.
    pub(crate) fn may_read(&self, service: &str, secret: &str, now: impl FnOnce() -> u64) -> bool {
        self.is_granted(service, secret)
            && self
                .grant_expires(service, secret)
                .is_none_or(|t| now() < t)
    }

    /// The services whose grant of `secret` holds at `now` (suspended ones too: a
    /// resumed service reads again) and that have not opened version `version` or a
    /// later one, by the opens recorded so far: those a rotation still waits on.
    pub(crate) fn yet_to_open(&self, secret: &str, version: u64, now: u64) -> Vec<String> {
        let opened = self.opened.get(secret);
        self.holders(secret)
            .into_iter()
            .filter(|service| {
                self.may_read(service, secret, || now)
                    && opened
                        .and_then(|by| by.get(service))
                        .is_none_or(|&v| v < version)
            })
            .collect()
    }

    /// The services holding a grant on `secret`.
    pub(crate) fn holders(&self, secret: &str) -> Vec<String> {
        let mut holders: Vec<String> = self
            .grants
            .iter()
            .filter(|(_, set)| set.contains(secret))
            .map(|(svc, _)| svc.clone())
            .collect();
        holders.sort();
        holders
    }

    /// The highest key id anything refers to; a new key takes the next one.
    pub(crate) fn highest_key_id(&self) -> u32 {
        let meta_ids = [self.meta.active_key, self.meta.rotation_target.unwrap_or(0)];
        self.keys
            .ids()
            .chain(self.meta.key_checks.keys().copied())
            .chain(meta_ids)
            .max()
            .unwrap_or(0)
    }
}

/// What a plan and the lint learn of the store: which secrets have values, which are
/// granted. Never a value.
impl catalog::Store for State {
    fn has_value(&self, secret: &str) -> bool {
        self.secrets.contains_key(secret)
    }

    fn is_granted(&self, service: &str, secret: &str) -> bool {
        State::is_granted(self, service, secret)
    }
}

/// The catalog the stored declarations make, their names checked (the rest was checked
/// when they were declared, under the rules of that build: a plan or the lint reports
/// what breaks a rule now).
fn catalog_of(decls: Vec<(String, Decl)>) -> Result<Catalog> {
    let corrupt = |what| Error::Corrupt { what };
    let mut tiers = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    for (name, decl) in decls {
        match decl {
            Decl::Tier(t) => {
                if !catalog::is_valid_tier(&name) {
                    return Err(corrupt("a declared tier has an invalid name"));
                }
                tiers.insert(name, t);
            }
            Decl::Service(s) => {
                if !catalog::is_valid_service(&name) {
                    return Err(corrupt("a declared service has an invalid name"));
                }
                services.insert(name, s);
            }
            Decl::Secret(m) => {
                if !catalog::is_valid_secret(&name) {
                    return Err(corrupt("a secret's metadata has an invalid name"));
                }
                secrets.insert(name, m);
            }
        }
    }
    Ok(Catalog::from_parts_unchecked(tiers, services, secrets))
}
