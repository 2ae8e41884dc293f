//! Changes to the vault, applied as one transaction: [`Vault::apply`].
//!
//! Every mutation of secrets, services, grants and the deployment catalog goes through
//! here, one change or many: each change is checked and planned against the state as the
//! changes before it in the same call left it ([`Overlay`]), and the mutations of all of
//! them are committed as one batch. So a list of changes applies fully or not at all, and a
//! single change is just a list of one (`Vault::set`, `Vault::grant`, ... call
//! [`Vault::apply`]).
//!
//! The catalog's changes are checked by the catalog's own rules
//! ([`catalog::check_secret_declaration`], [`catalog::check_rule`], ...) against the
//! catalog as the transaction sees it: only the declarations it touched are held apart,
//! so one change costs a lookup and the one secret's check, not a copy of a catalog of
//! 10,000 secrets. A tier that stops being core is checked against every secret with a
//! strategy there, and a `catalog apply` is a diff against the whole catalog: those cost
//! what the catalog's size does.
//!
//! A bundle ([`Change::Bundle`]) is a change too: the values generated for it are not
//! stored, but the bundle and each value's keyed fingerprint are, so that a leaked value
//! can be traced to the deployment it was issued to (`vault/bundles.rs`).
//!
//! Break-glass (seed 004) is changes too (`change/breakglass.rs`): a freeze, which from
//! then on refuses every change [`Change::stops_when_frozen`] names (checked here, for
//! every change, against the freeze as the transaction sees it); revoking a secret from
//! every service at once; suspending a service and resuming it.
//!
//! API tokens are changes too (`change/tokens.rs`): making one (its text is in the
//! [`Applied`], once, and nowhere in the store) and revoking one; removing a service
//! revokes its tokens, so that a service made again under the same name does not bring
//! them back.
//!
//! Deleting a secret deletes its value and its grants, and keeps its metadata: a catalog
//! holds declarations (what the secret is and what happens to it on each tier), which stand
//! whether or not a value is stored now, as they do for a delegated or prompted secret that
//! never has one. Removing a service likewise keeps its tier list. The catalog's own
//! commands remove declarations (`MetaRemove`, `StrategyRemove`, a `catalog apply` with
//! `prune`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use catalog::{
    Bundle, Catalog, DeclError, DiffError, IssueRequest, MetaUpdate, RenderContext, SecretMeta,
    SecretValue, Service, Template, Tier, TierPolicy,
};

use crate::actor::Actor;
use crate::crypto::{FingerprintKey, Key, SealedFingerprintKey, random_u64};
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::names;
use crate::record::{
    BundleId, BundleRecord, Decl, DeclKind, Issued, IssuedValue, Made, Marked, PENDING_TTL,
    SecretRecord, ServiceRecord,
};
use crate::rows::Mutation;
use crate::state::State;

use super::{Vault, auditing, sealing_key};
use audit::CHANGES;

mod breakglass;
mod tokens;

pub use tokens::MAX_TOKENS;

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
    /// Stage a new version of an existing secret as pending: services granted it read it
    /// as `secret/NAME@pending` until it is promoted or discarded (or an hour passes);
    /// nothing else changes. Refused while it has a pending version already.
    Stage {
        /// The secret's name.
        name: &'a str,
        /// The new version's value.
        value: &'a [u8],
    },
    /// [`Change::Stage`] of a value made from a template: this one, or (`None`) the one
    /// its core tiers give.
    StageGenerate {
        /// The secret.
        name: &'a str,
        /// The template.
        template: Option<&'a Template>,
    },
    /// Make the pending version current. The current one becomes the previous one,
    /// which services read as `secret/NAME@previous` for `overlap` seconds (`None`: not
    /// at all); the previous one is destroyed. With `revoke_previous`, the current one is
    /// destroyed instead, and every fid still reading an older version fails on its next
    /// read (an incident).
    Promote {
        /// The secret.
        name: &'a str,
        /// How long services may still read the version it replaces, in seconds.
        overlap: Option<u64>,
        /// Destroy the version it replaces, and cut off its readers.
        revoke_previous: bool,
        /// Retire the version it replaces once every service granted the secret has
        /// opened the new one, or at the overlap's end (with an overlap only).
        retire_when_read: bool,
    },
    /// Destroy the pending version.
    Discard {
        /// The secret.
        name: &'a str,
    },
    /// Make the previous version current again, and the current one previous (read by no
    /// service).
    Rollback {
        /// The secret.
        name: &'a str,
    },
    /// Destroy the previous version: its overlap ends, and no rollback can bring it back.
    Retire {
        /// The secret.
        name: &'a str,
        /// Retire only this previous version, and only if it was promoted with
        /// `retire-when-read` (else [`Error::NoPreviousVersion`]): housekeeping decides
        /// from a snapshot, and a rollback or another rotation since must not make it
        /// retire a version it never judged.
        when_read: Option<u64>,
    },
    /// Delete a secret and every grant of it.
    Delete {
        /// The secret's name.
        name: &'a str,
    },
    /// Let a service read a secret: for good, or for `expires_in` seconds from now (a
    /// grant that ends by itself). Granting again replaces when it ends.
    Grant {
        /// The service.
        service: &'a str,
        /// The secret.
        name: &'a str,
        /// How long the grant lasts, in seconds; `None`: until revoked.
        expires_in: Option<u64>,
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
    /// Remove a service, its uid mapping and its grants (its tier list in the catalog
    /// stays).
    ServiceRemove {
        /// The service.
        service: &'a str,
    },
    /// Declare a tier, or change whether it is core (a core tier that serves something
    /// stays core).
    TierDeclare {
        /// The tier.
        tier: &'a str,
        /// Whether it is the core server itself.
        core: bool,
    },
    /// Remove a tier that no strategy and no service's tier list names.
    TierRemove {
        /// The tier.
        tier: &'a str,
    },
    /// Change a secret's metadata, declaring the secret in the catalog if it is not.
    Meta {
        /// The secret.
        name: &'a str,
        /// The fields to set or clear.
        update: &'a MetaUpdate,
    },
    /// Remove a secret's metadata from the catalog (its value, if any, stays).
    MetaRemove {
        /// The secret.
        name: &'a str,
    },
    /// Declare a secret's strategy on a tier, declaring the secret if it is not.
    Strategy {
        /// The secret.
        name: &'a str,
        /// The tier.
        tier: &'a str,
        /// The strategy, and the class there if it is not the secret's.
        policy: &'a TierPolicy,
    },
    /// Remove a secret's strategy on a tier.
    StrategyRemove {
        /// The secret.
        name: &'a str,
        /// The tier.
        tier: &'a str,
    },
    /// Mark a delegated reference present (the provider holds it) or not.
    Present {
        /// The secret.
        name: &'a str,
        /// The tier it is delegated on.
        tier: &'a str,
        /// Whether the provider holds it.
        present: bool,
    },
    /// Declare the tiers a service is deployed to; `None`: every declared tier (its
    /// declaration is removed).
    ServiceTiers {
        /// The service (a name in the catalog; it need not be added to the vault).
        service: &'a str,
        /// Its tiers.
        tiers: Option<&'a [String]>,
    },
    /// Store a new version of a secret made from a template: this one, or (`None`) the
    /// one its core tiers give. Rendered without a service, tier or deployment.
    Generate {
        /// The secret.
        name: &'a str,
        /// The template.
        template: Option<&'a Template>,
    },
    /// Issue a bundle to a deployment of a service on a tier: values generated for it (not
    /// stored; their fingerprints are), prompt specs, references, names. Refused for a
    /// deployment that has a bundle of the service on the tier already, unless `replace`.
    Bundle {
        /// The service, whose manifest is bundled.
        service: &'a str,
        /// The tier (not a core one).
        tier: &'a str,
        /// The deployment's id.
        deployment: &'a str,
        /// Issue a new bundle to a deployment that has one.
        replace: bool,
    },
    /// Apply a catalog: the tiers, services and secrets it names get exactly its
    /// declarations, others are left alone unless `prune` (which removes them); then
    /// `values` are stored, as `Set`s. Grants are never touched.
    CatalogApply {
        /// The catalog, as loaded from a file (every rule checked).
        catalog: &'a Catalog,
        /// Remove what it does not declare.
        prune: bool,
        /// Values the file carried (`--with-values`).
        values: &'a BTreeMap<String, SecretValue>,
    },
    /// Freeze deploys (break-glass): until [`Change::Unfreeze`], every change
    /// [`Change::stops_when_frozen`] names is refused ([`Error::Frozen`]), and the server
    /// refuses the admin's new attaches of a service's view. The actor and its reason
    /// are kept, with the time. Freezing again changes nothing: who froze, when and why
    /// stay.
    Freeze,
    /// Unfreeze deploys (not frozen: nothing changes).
    Unfreeze,
    /// Revoke a secret from every service granted it, at once: each one's next read
    /// fails, of files held open too.
    RevokeAll {
        /// The secret.
        name: &'a str,
    },
    /// Suspend a service: every request made through its view (its own or one the admin
    /// attached for it) fails but a clunk, through fids held open too; its grants, uid
    /// and manifest stay. The actor and its reason are kept, with the time. Suspending
    /// again changes nothing.
    Suspend {
        /// The service.
        service: &'a str,
    },
    /// Resume a suspended service: its reads work again (not suspended: nothing changes).
    Resume {
        /// The service.
        service: &'a str,
    },
    /// Make an API token for a principal: the admin (`service` `None`) or a service that
    /// exists. Its text is in the [`Applied::TokenCreated`], and only there: the store
    /// keeps its keyed hash.
    TokenCreate {
        /// The service it proves; `None`: the admin.
        service: Option<&'a str>,
        /// How long it holds, in seconds; `None`: until revoked.
        expires_in: Option<u64>,
    },
    /// Revoke an API token: it is refused from now on, and the connections that attached
    /// with it are closed (revoking it again changes nothing).
    TokenRevoke {
        /// The token's ID.
        id: &'a str,
    },
}

impl std::fmt::Debug for Change<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Set { name, value } => write!(f, "Set({name}, {} bytes)", value.len()),
            Change::Delete { name } => write!(f, "Delete({name})"),
            Change::Stage { name, value } => write!(f, "Stage({name}, {} bytes)", value.len()),
            Change::StageGenerate { name, template } => write!(
                f,
                "StageGenerate({name}, {})",
                if template.is_some() {
                    "template"
                } else {
                    "core template"
                }
            ),
            Change::Promote {
                name,
                overlap,
                revoke_previous,
                retire_when_read,
            } => write!(
                f,
                "Promote({name}, overlap={overlap:?}, revoke_previous={revoke_previous}, retire_when_read={retire_when_read})"
            ),
            Change::Discard { name } => write!(f, "Discard({name})"),
            Change::Rollback { name } => write!(f, "Rollback({name})"),
            Change::Retire { name, when_read } => {
                write!(f, "Retire({name}, when_read={when_read:?})")
            }
            Change::Grant {
                service,
                name,
                expires_in,
            } => write!(f, "Grant({service}, {name}, expires_in={expires_in:?})"),
            Change::Revoke { service, name } => write!(f, "Revoke({service}, {name})"),
            Change::ServiceUid { service, uid } => write!(f, "ServiceUid({service}, {uid})"),
            Change::ServiceManifest { service, manifest } => {
                write!(f, "ServiceManifest({service}, {} bytes)", manifest.len())
            }
            Change::ServiceRemove { service } => write!(f, "ServiceRemove({service})"),
            Change::TierDeclare { tier, core } => write!(f, "TierDeclare({tier}, core={core})"),
            Change::TierRemove { tier } => write!(f, "TierRemove({tier})"),
            Change::Meta { name, update } => write!(f, "Meta({name}, {update:?})"),
            Change::MetaRemove { name } => write!(f, "MetaRemove({name})"),
            Change::Strategy { name, tier, policy } => {
                write!(f, "Strategy({name}, {tier}, {})", policy.strategy.name())
            }
            Change::StrategyRemove { name, tier } => write!(f, "StrategyRemove({name}, {tier})"),
            Change::Present {
                name,
                tier,
                present,
            } => write!(f, "Present({name}, {tier}, {present})"),
            Change::ServiceTiers { service, tiers } => {
                write!(f, "ServiceTiers({service}, {tiers:?})")
            }
            Change::Generate { name, template } => write!(
                f,
                "Generate({name}, {})",
                if template.is_some() {
                    "template"
                } else {
                    "core template"
                }
            ),
            Change::Bundle {
                service,
                tier,
                deployment,
                replace,
            } => write!(
                f,
                "Bundle({service}, {tier}, {deployment}, replace={replace})"
            ),
            Change::CatalogApply {
                catalog,
                prune,
                values,
            } => write!(
                f,
                "CatalogApply({} secrets, prune={prune}, {} values)",
                catalog.secrets().len(),
                values.len()
            ),
            Change::Freeze => f.write_str("Freeze"),
            Change::Unfreeze => f.write_str("Unfreeze"),
            Change::RevokeAll { name } => write!(f, "RevokeAll({name})"),
            Change::Suspend { service } => write!(f, "Suspend({service})"),
            Change::Resume { service } => write!(f, "Resume({service})"),
            Change::TokenCreate {
                service,
                expires_in,
            } => write!(f, "TokenCreate({service:?}, expires_in={expires_in:?})"),
            Change::TokenRevoke { id } => write!(f, "TokenRevoke({id})"),
        }
    }
}

impl Change<'_> {
    /// The word the audit records it by: the command's (`deploy`'s and ctl's), with the
    /// action of a command of many (`service NAME uid`) after a hyphen. The one place a
    /// change is named: a new change takes a word here.
    pub fn action(&self) -> &'static str {
        match self {
            Change::Set { .. } => "set",
            Change::Stage { .. } | Change::StageGenerate { .. } => "stage",
            Change::Promote { .. } => "promote",
            Change::Discard { .. } => "discard",
            Change::Rollback { .. } => "rollback",
            Change::Retire { .. } => "retire",
            Change::Delete { .. } => "delete",
            Change::Grant { .. } => "grant",
            Change::Revoke { .. } => "revoke",
            Change::ServiceUid { .. } => "service-uid",
            Change::ServiceManifest { .. } => "service-manifest",
            Change::ServiceRemove { .. } => "service-remove",
            Change::TierDeclare { .. } => "tier-add",
            Change::TierRemove { .. } => "tier-remove",
            Change::Meta { .. } => "meta",
            Change::MetaRemove { .. } => "meta-remove",
            Change::Strategy { .. } => "strategy",
            Change::StrategyRemove { .. } => "strategy-remove",
            Change::Present { .. } => "present",
            Change::ServiceTiers { .. } => "service-tiers",
            Change::Generate { .. } => "generate",
            Change::Bundle { .. } => "bundle",
            Change::CatalogApply { .. } => "catalog-apply",
            Change::Freeze => "freeze",
            Change::Unfreeze => "unfreeze",
            Change::RevokeAll { .. } => "revoke-all",
            Change::Suspend { .. } => "suspend",
            Change::Resume { .. } => "resume",
            Change::TokenCreate { .. } => "token-create",
            Change::TokenRevoke { .. } => "token-revoke",
        }
    }

    /// What it acts on, by named parts (`secret`, `service`, `tier`, `deployment`), as
    /// the audit records it; none for a change of the whole store.
    pub fn target(&self) -> Vec<(&'static str, &str)> {
        match *self {
            Change::Set { name, .. }
            | Change::Stage { name, .. }
            | Change::StageGenerate { name, .. }
            | Change::Promote { name, .. }
            | Change::Discard { name }
            | Change::Rollback { name }
            | Change::Retire { name, .. }
            | Change::Delete { name }
            | Change::Meta { name, .. }
            | Change::MetaRemove { name }
            | Change::Generate { name, .. }
            | Change::RevokeAll { name } => vec![("secret", name)],
            Change::Grant { service, name, .. } | Change::Revoke { service, name } => {
                vec![("secret", name), ("service", service)]
            }
            Change::ServiceUid { service, .. }
            | Change::ServiceManifest { service, .. }
            | Change::ServiceRemove { service }
            | Change::ServiceTiers { service, .. }
            | Change::Suspend { service }
            | Change::Resume { service } => vec![("service", service)],
            Change::TierDeclare { tier, .. } | Change::TierRemove { tier } => {
                vec![("tier", tier)]
            }
            Change::Strategy { name, tier, .. }
            | Change::StrategyRemove { name, tier }
            | Change::Present { name, tier, .. } => vec![("secret", name), ("tier", tier)],
            Change::Bundle {
                service,
                tier,
                deployment,
                ..
            } => vec![
                ("deployment", deployment),
                ("service", service),
                ("tier", tier),
            ],
            Change::TokenCreate {
                service: Some(service),
                ..
            } => vec![("service", service)],
            Change::TokenRevoke { id } => vec![("token", id)],
            Change::CatalogApply { .. }
            | Change::Freeze
            | Change::Unfreeze
            | Change::TokenCreate { service: None, .. } => Vec::new(),
        }
    }
}

/// What one change did: enough for a client to say so ("already granted", "updated").
#[derive(Clone, Debug, PartialEq, Eq)]
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
        /// It held already, ending when asked: nothing changed.
        already: bool,
        /// When it ends (unix seconds), if it ends by itself.
        expires: Option<u64>,
    },
    /// A version was staged as pending.
    Staged {
        /// Its number.
        version: u64,
        /// When it is discarded unless promoted (unix seconds).
        expires: u64,
    },
    /// The pending version was made current.
    Promoted {
        /// The version now current.
        version: u64,
        /// The version now previous (`None`: it was revoked).
        previous: Option<u64>,
        /// Until when services read the previous one (`None`: not at all).
        until: Option<u64>,
    },
    /// The pending version was destroyed.
    Discarded {
        /// Its number.
        version: u64,
    },
    /// The previous version is current again.
    RolledBack {
        /// The version now current.
        version: u64,
        /// The version now previous.
        previous: u64,
    },
    /// The previous version was destroyed.
    Retired {
        /// Its number.
        version: u64,
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
        /// Its API tokens that were revoked with it.
        tokens: usize,
    },
    /// A tier is declared.
    TierDeclared {
        /// It was not declared before.
        created: bool,
        /// Anything changed (not: it was declared so already).
        changed: bool,
    },
    /// A tier was removed.
    TierRemoved,
    /// A secret's metadata holds the fields given.
    MetaSet {
        /// The secret was not in the catalog before.
        created: bool,
        /// Anything changed.
        changed: bool,
    },
    /// A secret's metadata was removed.
    MetaRemoved,
    /// A secret's strategy on a tier is declared.
    StrategySet {
        /// The secret was not in the catalog before.
        created: bool,
        /// It replaced a strategy it had on the tier.
        replaced: bool,
        /// Anything changed.
        changed: bool,
    },
    /// A secret's strategy on a tier was removed.
    StrategyRemoved,
    /// A delegated reference is marked present or not.
    PresentSet {
        /// Anything changed.
        changed: bool,
    },
    /// A service's tier list is declared (or removed: every tier).
    ServiceTiersSet {
        /// Anything changed.
        changed: bool,
    },
    /// A bundle was issued (its values are in it, and nowhere in the store).
    BundleIssued {
        /// The bundle.
        bundle: Box<Bundle>,
        /// The number of the bundle it replaces, if the deployment had one.
        replaced: Option<u64>,
    },
    /// A catalog was applied: what it changed, and how many values it stored.
    CatalogApplied {
        /// The declarations it changed.
        diff: Box<catalog::Diff>,
        /// The values it stored (`--with-values`).
        values: usize,
    },
    /// Deploys are frozen.
    Frozen {
        /// They were frozen already: nothing changed.
        already: bool,
        /// Since when (unix seconds).
        since: u64,
    },
    /// Deploys are not frozen.
    Unfrozen {
        /// Whether they were (if not, nothing changed).
        was_frozen: bool,
    },
    /// A secret was revoked from every service granted it.
    RevokedAll {
        /// Those services, sorted (none: nothing changed).
        services: Vec<String>,
    },
    /// A service is suspended.
    Suspended {
        /// It was suspended already: nothing changed.
        already: bool,
        /// Since when (unix seconds).
        since: u64,
    },
    /// A service is not suspended.
    Resumed {
        /// Whether it was (if not, nothing changed).
        was_suspended: bool,
    },
    /// An API token was made.
    TokenCreated {
        /// The token: shown to its maker once, kept nowhere.
        token: crate::tokens::NewToken,
        /// When it stops holding (unix seconds), if it does.
        expires: Option<u64>,
    },
    /// An API token is revoked.
    TokenRevoked {
        /// It was revoked already: nothing changed.
        already: bool,
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
    /// Where in the batch each secret's last put is, so that a later put of the same
    /// secret replaces it there: a record carries every version's ciphertext, and a
    /// transaction that stages and promotes must not write it twice.
    secret_puts: HashMap<String, usize>,
    services: HashMap<String, Option<ServiceRecord>>,
    /// Grants the transaction made (`Some`: held, ending when given) or removed (`None`).
    grants: HashMap<(String, String), Option<Option<u64>>>,
    uids: HashMap<u32, Option<String>>,
    /// The catalog's tiers, once a change in the transaction declared or removed one
    /// (there are at most 256: copied whole).
    decl_tiers: Option<BTreeMap<String, Tier>>,
    /// Services' tier lists the transaction declared (`None`: removed).
    decl_services: HashMap<String, Option<Service>>,
    /// Secrets' metadata the transaction declared (`None`: removed).
    decl_secrets: HashMap<String, Option<SecretMeta>>,
    /// The last bundle the transaction issued to each (service, tier, deployment).
    bundles: HashMap<(String, String, String), u64>,
    /// The fingerprint key, once the transaction made one.
    fingerprint_key: Option<SealedFingerprintKey>,
    /// The freeze, once a change in the transaction set or lifted it.
    frozen: Option<Option<Marked>>,
    /// API tokens the transaction made or revoked (`None`: forgotten).
    tokens: HashMap<String, Option<crate::record::TokenRecord>>,
    batch: Vec<Mutation>,
}

impl<'s> Overlay<'s> {
    fn new(base: &'s State) -> Overlay<'s> {
        Overlay {
            base,
            secrets: HashMap::new(),
            secret_puts: HashMap::new(),
            services: HashMap::new(),
            grants: HashMap::new(),
            uids: HashMap::new(),
            decl_tiers: None,
            decl_services: HashMap::new(),
            decl_secrets: HashMap::new(),
            bundles: HashMap::new(),
            fingerprint_key: None,
            frozen: None,
            tokens: HashMap::new(),
            batch: Vec::new(),
        }
    }

    /// The catalog's declared tiers, as the transaction sees them.
    fn tiers(&self) -> &BTreeMap<String, Tier> {
        self.decl_tiers
            .as_ref()
            .unwrap_or_else(|| self.base.catalog.tiers())
    }

    /// A secret's metadata, as the transaction sees it.
    fn meta(&self, name: &str) -> Option<&SecretMeta> {
        match self.decl_secrets.get(name) {
            Some(planned) => planned.as_ref(),
            None => self.base.catalog.secret(name),
        }
    }

    /// A service's declaration in the catalog, as the transaction sees it.
    fn declared_service(&self, name: &str) -> Option<&Service> {
        match self.decl_services.get(name) {
            Some(planned) => planned.as_ref(),
            None => self.base.catalog.service(name),
        }
    }

    /// Every secret's metadata, as the transaction sees it (in no particular order).
    fn metas(&self) -> impl Iterator<Item = (&str, &SecretMeta)> {
        let planned = &self.decl_secrets;
        self.base
            .catalog
            .secrets()
            .iter()
            .filter(move |(name, _)| !planned.contains_key(name.as_str()))
            .map(|(name, meta)| (name.as_str(), meta))
            .chain(
                planned
                    .iter()
                    .filter_map(|(name, meta)| meta.as_ref().map(|m| (name.as_str(), m))),
            )
    }

    /// Every service's declaration, as the transaction sees it.
    fn declared_services(&self) -> impl Iterator<Item = (&str, &Service)> {
        let planned = &self.decl_services;
        self.base
            .catalog
            .services()
            .iter()
            .filter(move |(name, _)| !planned.contains_key(name.as_str()))
            .map(|(name, s)| (name.as_str(), s))
            .chain(
                planned
                    .iter()
                    .filter_map(|(name, s)| s.as_ref().map(|s| (name.as_str(), s))),
            )
    }

    /// How many secrets the catalog holds, as the transaction sees it.
    fn meta_count(&self) -> usize {
        let base = &self.base.catalog;
        let mut n = base.secrets().len();
        for (name, planned) in &self.decl_secrets {
            match (base.secret(name).is_some(), planned.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        n
    }

    /// How many services the catalog declares, as the transaction sees it.
    fn declared_service_count(&self) -> usize {
        let base = &self.base.catalog;
        let mut n = base.services().len();
        for (name, planned) in &self.decl_services {
            match (base.service(name).is_some(), planned.is_some()) {
                (false, true) => n += 1,
                (true, false) => n -= 1,
                _ => {}
            }
        }
        n
    }

    /// The whole catalog as the transaction sees it: the committed one itself, or (after
    /// a catalog change in the same transaction) a copy with the changes made.
    fn catalog(&self) -> Cow<'s, Catalog> {
        let base: &'s Catalog = &self.base.catalog;
        if self.decl_tiers.is_none()
            && self.decl_services.is_empty()
            && self.decl_secrets.is_empty()
        {
            return Cow::Borrowed(base);
        }
        let mut c = base.clone();
        if let Some(tiers) = &self.decl_tiers {
            for name in base.tiers().keys() {
                if !tiers.contains_key(name) {
                    c.restore_tier(name.clone(), None);
                }
            }
            for (name, t) in tiers {
                c.restore_tier(name.clone(), Some(*t));
            }
        }
        for (name, s) in &self.decl_services {
            c.restore_service(name.clone(), s.clone());
        }
        for (name, m) in &self.decl_secrets {
            c.restore_secret(name.clone(), m.clone());
        }
        Cow::Owned(c)
    }

    /// Checks a secret's new metadata and plans it (`created`: the catalog lacked it).
    fn put_meta(&mut self, name: &str, meta: SecretMeta, created: bool) -> Result<()> {
        catalog::check_secret_declaration(self.tiers(), name, &meta).map_err(Error::Declaration)?;
        if created && self.meta_count() >= catalog::MAX_SECRETS {
            return Err(Error::Declaration(DeclError::TooMany {
                what: "secrets",
                limit: catalog::MAX_SECRETS,
            }));
        }
        self.push(Mutation::PutDecl(name.to_owned(), Decl::Secret(meta)));
        Ok(())
    }

    /// A secret's metadata that must exist.
    fn existing_meta(&self, name: &str) -> Result<&SecretMeta> {
        self.meta(name).ok_or_else(|| {
            Error::Declaration(DeclError::NoSuchSecret {
                secret: name.to_owned(),
            })
        })
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
        self.grant(service, secret).is_some()
    }

    /// A grant as the transaction sees it: `Some` (and when it ends, if it does) if held.
    fn grant(&self, service: &str, secret: &str) -> Option<Option<u64>> {
        match self.grants.get(&(service.to_owned(), secret.to_owned())) {
            Some(&planned) => planned,
            None => self
                .base
                .is_granted(service, secret)
                .then(|| self.base.grant_expires(service, secret)),
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
        for ((svc, sec), granted) in &self.grants {
            if let Some(name) = pick(svc, sec) {
                if granted.is_some() {
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
                if let Some(&at) = self.secret_puts.get(name) {
                    // Nothing between the two concerns this secret's row but grants, which
                    // name it either way: the later record takes the earlier one's place.
                    self.batch[at] = m;
                    return;
                }
                self.secret_puts.insert(name.clone(), self.batch.len());
            }
            Mutation::DeleteSecret(name) => {
                self.secrets.insert(name.clone(), None);
                self.secret_puts.remove(name);
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
            Mutation::PutGrant(svc, sec, expires) => {
                self.grants
                    .insert((svc.clone(), sec.clone()), Some(*expires));
            }
            Mutation::DeleteGrant(svc, sec) => {
                self.grants.insert((svc.clone(), sec.clone()), None);
            }
            Mutation::PutDecl(name, decl) => match decl {
                Decl::Tier(t) => {
                    let base = self.base;
                    self.decl_tiers
                        .get_or_insert_with(|| base.catalog.tiers().clone())
                        .insert(name.clone(), *t);
                }
                Decl::Service(s) => {
                    self.decl_services.insert(name.clone(), Some(s.clone()));
                }
                Decl::Secret(m) => {
                    self.decl_secrets.insert(name.clone(), Some(m.clone()));
                }
            },
            Mutation::DeleteDecl(kind, name) => match kind {
                DeclKind::Tier => {
                    let base = self.base;
                    self.decl_tiers
                        .get_or_insert_with(|| base.catalog.tiers().clone())
                        .remove(name);
                }
                DeclKind::Service => {
                    self.decl_services.insert(name.clone(), None);
                }
                DeclKind::Secret => {
                    self.decl_secrets.insert(name.clone(), None);
                }
            },
            Mutation::PutIssued(Issued::Bundle(id, _)) => {
                let last = self
                    .bundles
                    .entry((id.service.clone(), id.tier.clone(), id.deployment.clone()))
                    .or_insert(0);
                *last = (*last).max(id.number);
            }
            Mutation::SetFingerprintKey(sealed) => self.fingerprint_key.clone_from(sealed),
            Mutation::SetFrozen(frozen) => self.frozen = Some(frozen.clone()),
            Mutation::PutToken(id, rec) => {
                self.tokens.insert(id.clone(), Some(rec.clone()));
            }
            Mutation::DeleteToken(id) => {
                self.tokens.insert(id.clone(), None);
            }
            // Not made by changes (rotation and commit write these themselves), or seen by
            // no later change.
            Mutation::PutIssued(Issued::Value(..))
            | Mutation::DeleteIssued(_)
            | Mutation::SetLastChange(_)
            | Mutation::SetActiveKey(_)
            | Mutation::SetRotationTarget(_)
            | Mutation::PutKeyCheck(..)
            | Mutation::DeleteKeyCheck(_)
            | Mutation::Audit(..)
            | Mutation::PutAudit(..)
            | Mutation::SetAuditHeads(_)
            | Mutation::SetAuditKey(_)
            | Mutation::PutOpened(..)
            | Mutation::DeleteOpened(..) => {}
        }
        self.batch.push(m);
    }

    /// The secret `name` as the transaction sees it, under `key`: sealed again under it if
    /// a key rotation left it under the other key (every version of a record is under one
    /// key).
    fn secret_under(&self, name: &str, key: &Key) -> Result<Option<SecretRecord>> {
        let Some(rec) = self.secret(name) else {
            return Ok(None);
        };
        if rec.key_id == key.id() {
            return Ok(Some(rec.clone()));
        }
        let from = self.base.keys.get(rec.key_id).ok_or(Error::Corrupt {
            what: "a secret's key is not loaded",
        })?;
        rec.resealed(name, from, key).map(Some)
    }

    /// Plans a new current version of a secret: the current one becomes the previous
    /// one, the previous one is destroyed.
    fn plan_set(&mut self, name: &str, value: &[u8], at: &Made, key: &Key) -> Result<Applied> {
        names::check_secret_name(name)?;
        names::check_value(value)?;
        let rec = match self.secret_under(name, key)? {
            Some(r) => {
                if let Some(p) = r.pending.as_ref().filter(|_| !r.pending_expired(at.at)) {
                    return Err(Error::PendingVersion {
                        version: p.made.version,
                    });
                }
                // One past its hour is as good as gone.
                let r = r.discarded(at.at);
                let made = Made {
                    version: r.next_version(),
                    ..at.clone()
                };
                r.with_current(name, made, key, value, at.at)?
            }
            None => {
                let made = Made {
                    version: 1,
                    ..at.clone()
                };
                SecretRecord::seal(name, random_u64()?, made, key, value)?
            }
        };
        let version = rec.version();
        self.push(Mutation::PutSecret(name.to_owned(), rec));
        Ok(Applied::Set { version })
    }

    /// Plans a pending version of an existing secret that has none.
    fn plan_stage(&mut self, name: &str, value: &[u8], at: &Made, key: &Key) -> Result<Applied> {
        names::check_secret_name(name)?;
        names::check_value(value)?;
        let rec = self.secret_under(name, key)?.ok_or(Error::NoSuchSecret)?;
        if let Some(p) = rec.pending.as_ref().filter(|_| !rec.pending_expired(at.at)) {
            return Err(Error::PendingVersion {
                version: p.made.version,
            });
        }
        // One past its hour is as good as gone: staging replaces it.
        let rec = rec.discarded(at.at);
        let made = Made {
            version: rec.next_version(),
            ..at.clone()
        };
        let version = made.version;
        let rec = rec.with_pending(name, made, key, value)?;
        self.push(Mutation::PutSecret(name.to_owned(), rec));
        Ok(Applied::Staged {
            version,
            expires: at.at.saturating_add(PENDING_TTL),
        })
    }

    /// The secret `name`, which must exist, with a pending version within its hour at
    /// `now`.
    fn with_live_pending(&self, name: &str, now: u64) -> Result<&SecretRecord> {
        names::check_secret_name(name)?;
        let rec = self.secret(name).ok_or(Error::NoSuchSecret)?;
        if rec.pending.is_none() || rec.pending_expired(now) {
            return Err(Error::NoPendingVersion);
        }
        Ok(rec)
    }

    /// The secret `name`, which must exist, with a previous version.
    fn with_previous(&self, name: &str) -> Result<&SecretRecord> {
        names::check_secret_name(name)?;
        let rec = self.secret(name).ok_or(Error::NoSuchSecret)?;
        if rec.previous.is_none() {
            return Err(Error::NoPreviousVersion);
        }
        Ok(rec)
    }

    /// A value made from `template`, or from the core template of `name`'s metadata.
    fn generated(
        &self,
        name: &str,
        template: Option<&Template>,
    ) -> Result<zeroize::Zeroizing<String>> {
        let core;
        let template = match template {
            Some(t) => t,
            None => {
                core = match self.meta(name) {
                    Some(m) => m
                        .core_template(name, self.tiers())
                        .map_err(Error::Declaration)?
                        .cloned(),
                    None => None,
                };
                core.as_ref().ok_or(Error::NoTemplate)?
            }
        };
        template
            .render(&RenderContext::default())
            .map_err(Error::Template)
    }

    /// Checks one change against the state so far and plans its mutations. `at` dates
    /// any version it makes and says who made it (its number is the change's to give).
    fn plan(&mut self, change: &Change<'_>, key: &Key, at: &Made) -> Result<Applied> {
        let now = at.at;
        if change.stops_when_frozen() && self.frozen().is_some() {
            return Err(Error::Frozen);
        }
        match *change {
            Change::Set { name, value } => self.plan_set(name, value, at, key),
            Change::Stage { name, value } => self.plan_stage(name, value, at, key),
            Change::StageGenerate { name, template } => {
                names::check_secret_name(name)?;
                let value = self.generated(name, template)?;
                self.plan_stage(name, value.as_bytes(), at, key)
            }
            Change::Promote {
                name,
                overlap,
                revoke_previous,
                retire_when_read,
            } => {
                let rec = self.with_live_pending(name, now)?;
                let until = match (revoke_previous, overlap) {
                    (false, Some(secs)) if secs > 0 => Some(now.saturating_add(secs)),
                    _ => None,
                };
                let next = rec.promoted(until, revoke_previous, retire_when_read, now);
                let applied = Applied::Promoted {
                    version: next.version(),
                    previous: next.previous.as_ref().map(|p| p.made.version),
                    until,
                };
                self.push(Mutation::PutSecret(name.to_owned(), next));
                Ok(applied)
            }
            Change::Discard { name } => {
                let rec = self.with_live_pending(name, now)?;
                let version = rec.pending.as_ref().map_or(0, |p| p.made.version);
                let next = rec.discarded(now);
                self.push(Mutation::PutSecret(name.to_owned(), next));
                Ok(Applied::Discarded { version })
            }
            Change::Rollback { name } => {
                let next = self.with_previous(name)?.rolled_back();
                let applied = Applied::RolledBack {
                    version: next.version(),
                    previous: next.previous.as_ref().map_or(0, |p| p.made.version),
                };
                self.push(Mutation::PutSecret(name.to_owned(), next));
                Ok(applied)
            }
            Change::Retire { name, when_read } => {
                let rec = self.with_previous(name)?;
                let version = rec.previous.as_ref().map_or(0, |p| p.made.version);
                let judged = rec
                    .previous
                    .as_ref()
                    .is_some_and(|p| p.retire_when_read && Some(p.made.version) == when_read);
                if when_read.is_some() && !judged {
                    return Err(Error::NoPreviousVersion);
                }
                let next = rec.retired(now);
                self.push(Mutation::PutSecret(name.to_owned(), next));
                Ok(Applied::Retired { version })
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
                // What services opened of it: a secret set again under the name is another.
                if let Some(by) = self.base.opened.get(name) {
                    for service in by.keys() {
                        self.push(Mutation::DeleteOpened(name.to_owned(), service.clone()));
                    }
                }
                Ok(Applied::Deleted {
                    grants: holders.len(),
                })
            }
            Change::Grant {
                service,
                name,
                expires_in,
            } => {
                self.check_grant_names(service, name)?;
                let expires = expires_in.map(|secs| now.saturating_add(secs));
                let already = self.grant(service, name) == Some(expires);
                if !already {
                    self.push(Mutation::PutGrant(
                        service.to_owned(),
                        name.to_owned(),
                        expires,
                    ));
                }
                Ok(Applied::Granted { already, expires })
            }
            Change::Revoke { service, name } => {
                self.check_grant_names(service, name)?;
                let was_granted = self.is_granted(service, name);
                if was_granted {
                    self.push(Mutation::DeleteGrant(service.to_owned(), name.to_owned()));
                }
                Ok(Applied::Revoked { was_granted })
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
                let suspended = existing.and_then(|s| s.suspended.clone());
                self.push(Mutation::PutService(
                    service.to_owned(),
                    ServiceRecord {
                        uid: Some(uid),
                        manifest,
                        suspended,
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
                let suspended = existing.and_then(|s| s.suspended.clone());
                self.push(Mutation::PutService(
                    service.to_owned(),
                    ServiceRecord {
                        uid,
                        manifest,
                        suspended,
                    },
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
                let opened: Vec<String> = self
                    .base
                    .opened
                    .iter()
                    .filter(|(_, by)| by.contains_key(service))
                    .map(|(secret, _)| secret.clone())
                    .collect();
                for secret in opened {
                    self.push(Mutation::DeleteOpened(secret, service.to_owned()));
                }
                let tokens = self.revoke_tokens_of(service, at);
                Ok(Applied::ServiceRemoved {
                    grants: granted.len(),
                    tokens,
                })
            }
            Change::TierDeclare { tier, core } => self.plan_tier(tier, core),
            Change::TierRemove { tier } => {
                if !self.tiers().contains_key(tier) {
                    return Err(Error::NoSuchTier);
                }
                let uses = self
                    .metas()
                    .filter(|(_, m)| m.tiers.contains_key(tier))
                    .count()
                    + self
                        .declared_services()
                        .filter(|(_, s)| {
                            s.tiers
                                .as_ref()
                                .is_some_and(|listed| listed.iter().any(|t| t == tier))
                        })
                        .count();
                if uses > 0 {
                    return Err(Error::Declaration(DeclError::TierInUse {
                        tier: tier.to_owned(),
                        uses,
                    }));
                }
                self.push(Mutation::DeleteDecl(DeclKind::Tier, tier.to_owned()));
                Ok(Applied::TierRemoved)
            }
            Change::Meta { name, update } => {
                let current = self.meta(name);
                let created = current.is_none();
                let mut meta = current.cloned().unwrap_or_default();
                update.apply_to(&mut meta);
                if !created && current == Some(&meta) {
                    return Ok(Applied::MetaSet {
                        created,
                        changed: false,
                    });
                }
                self.put_meta(name, meta, created)?;
                Ok(Applied::MetaSet {
                    created,
                    changed: true,
                })
            }
            Change::MetaRemove { name } => {
                self.existing_meta(name)?;
                self.push(Mutation::DeleteDecl(DeclKind::Secret, name.to_owned()));
                Ok(Applied::MetaRemoved)
            }
            Change::Strategy { name, tier, policy } => {
                if !catalog::is_valid_tier(tier) {
                    return Err(Error::Declaration(DeclError::TierName));
                }
                let current = self.meta(name);
                let created = current.is_none();
                let mut meta = current.cloned().unwrap_or_default();
                let old = meta.tiers.insert(tier.to_owned(), policy.clone());
                let replaced = old.is_some();
                if old.as_ref() == Some(policy) {
                    return Ok(Applied::StrategySet {
                        created,
                        replaced,
                        changed: false,
                    });
                }
                self.put_meta(name, meta, created)?;
                Ok(Applied::StrategySet {
                    created,
                    replaced,
                    changed: true,
                })
            }
            Change::StrategyRemove { name, tier } => {
                let mut meta = self.existing_meta(name)?.clone();
                if meta.tiers.remove(tier).is_none() {
                    return Err(Error::Declaration(DeclError::NoStrategy {
                        secret: name.to_owned(),
                        tier: tier.to_owned(),
                    }));
                }
                self.push(Mutation::PutDecl(name.to_owned(), Decl::Secret(meta)));
                Ok(Applied::StrategyRemoved)
            }
            Change::Present {
                name,
                tier,
                present,
            } => {
                let current = self.existing_meta(name)?;
                let mut meta = current.clone();
                meta.set_present(name, tier, present)
                    .map_err(Error::Declaration)?;
                if *current == meta {
                    return Ok(Applied::PresentSet { changed: false });
                }
                self.push(Mutation::PutDecl(name.to_owned(), Decl::Secret(meta)));
                Ok(Applied::PresentSet { changed: true })
            }
            Change::ServiceTiers { service, tiers } => self.plan_service_tiers(service, tiers),
            Change::Generate { name, template } => {
                names::check_secret_name(name)?;
                let value = self.generated(name, template)?;
                self.plan_set(name, value.as_bytes(), at, key)
            }
            Change::Bundle {
                service,
                tier,
                deployment,
                replace,
            } => self.plan_bundle(service, tier, deployment, replace, key, now),
            Change::CatalogApply {
                catalog,
                prune,
                values,
            } => {
                let diff = {
                    let current = self.catalog();
                    catalog::diff(&current, catalog, prune).map_err(|e| match e {
                        DiffError::Refused(r) => Error::CatalogRefused(r),
                        // A diff made here is never stale.
                        _ => Error::Corrupt {
                            what: "a catalog diff went stale while it was made",
                        },
                    })?
                };
                for d in &diff.tiers {
                    self.push(match d.after {
                        Some(t) => Mutation::PutDecl(d.name.clone(), Decl::Tier(t)),
                        None => Mutation::DeleteDecl(DeclKind::Tier, d.name.clone()),
                    });
                }
                for d in &diff.services {
                    self.push(match &d.after {
                        Some(s) => Mutation::PutDecl(d.name.clone(), Decl::Service(s.clone())),
                        None => Mutation::DeleteDecl(DeclKind::Service, d.name.clone()),
                    });
                }
                for d in &diff.secrets {
                    self.push(match &d.after {
                        Some(m) => Mutation::PutDecl(d.name.clone(), Decl::Secret(m.clone())),
                        None => Mutation::DeleteDecl(DeclKind::Secret, d.name.clone()),
                    });
                }
                for (name, value) in values {
                    self.plan_set(name, value.expose().as_bytes(), at, key)?;
                }
                Ok(Applied::CatalogApplied {
                    diff: Box::new(diff),
                    values: values.len(),
                })
            }
            Change::Freeze
            | Change::Unfreeze
            | Change::RevokeAll { .. }
            | Change::Suspend { .. }
            | Change::Resume { .. } => self.plan_breakglass(change, at),
            Change::TokenCreate { .. } | Change::TokenRevoke { .. } => self.plan_token(change, at),
        }
    }

    /// The names of a grant or revoke: both valid, and both existing (the service first:
    /// "add the service" is the likelier fix).
    fn check_grant_names(&self, service: &str, name: &str) -> Result<()> {
        names::check_service_name(service)?;
        names::check_secret_name(name)?;
        if self.service(service).is_none() {
            return Err(Error::NoSuchService);
        }
        if self.secret(name).is_none() {
            return Err(Error::NoSuchSecret);
        }
        Ok(())
    }

    /// `TierDeclare`: a tier that stops being core must not leave a secret served or
    /// infrastructure there.
    fn plan_tier(&mut self, tier: &str, core: bool) -> Result<Applied> {
        if !catalog::is_valid_tier(tier) {
            return Err(Error::Declaration(DeclError::TierName));
        }
        let new = Tier { core };
        let old = self.tiers().get(tier).copied();
        if old == Some(new) {
            return Ok(Applied::TierDeclared {
                created: false,
                changed: false,
            });
        }
        if old.is_none() && self.tiers().len() >= catalog::MAX_TIERS {
            return Err(Error::Declaration(DeclError::TooMany {
                what: "tiers",
                limit: catalog::MAX_TIERS,
            }));
        }
        // Only leaving core restricts what may be declared there.
        if old.is_some_and(|t| t.core) {
            for (name, meta) in self.metas() {
                if let Some(policy) = meta.tiers.get(tier) {
                    catalog::check_rule(name, tier, Some(&new), meta, policy)
                        .map_err(Error::Declaration)?;
                }
            }
        }
        self.push(Mutation::PutDecl(tier.to_owned(), Decl::Tier(new)));
        Ok(Applied::TierDeclared {
            created: old.is_none(),
            changed: true,
        })
    }

    /// `Bundle`: the bundle, from the catalog as the transaction sees it; its record and
    /// its values' fingerprints join the batch.
    fn plan_bundle(
        &mut self,
        service: &str,
        tier: &str,
        deployment: &str,
        replace: bool,
        key: &Key,
        now: u64,
    ) -> Result<Applied> {
        names::check_service_name(service)?;
        let manifest = Arc::clone(&self.service(service).ok_or(Error::NoSuchService)?.manifest);
        let last = self.last_bundle(service, tier, deployment);
        if let Some(bundle) = last
            && !replace
        {
            return Err(Error::DeploymentUsed {
                service: service.to_owned(),
                tier: tier.to_owned(),
                deployment: deployment.to_owned(),
                bundle,
            });
        }
        let number = last.map_or(1, |n| n.saturating_add(1));
        let bundle = catalog::issue(
            &self.catalog(),
            manifest.secrets(),
            &*self,
            &IssueRequest {
                service,
                tier,
                deployment,
                bundle: number,
                issued: now,
            },
        )
        .map_err(Error::Bundle)?;
        self.refuse_stored_values(&bundle)?;
        let fingerprints = self.fingerprint_key(key)?;
        let id = BundleId {
            service: service.to_owned(),
            tier: tier.to_owned(),
            deployment: deployment.to_owned(),
            number,
        };
        self.push(Mutation::PutIssued(Issued::Bundle(
            id.clone(),
            BundleRecord { issued: now },
        )));
        for (secret, value) in &bundle.values {
            let fingerprint = fingerprints.fingerprint(value.expose());
            self.push(Mutation::PutIssued(Issued::Value(
                id.clone(),
                secret.clone(),
                IssuedValue {
                    issued: now,
                    fingerprint,
                },
            )));
        }
        Ok(Applied::BundleIssued {
            bundle: Box::new(bundle),
            replaced: last,
        })
    }

    /// The number of the last bundle issued to `deployment` of `service` on `tier`.
    fn last_bundle(&self, service: &str, tier: &str, deployment: &str) -> Option<u64> {
        let key = (service.to_owned(), tier.to_owned(), deployment.to_owned());
        self.bundles.get(&key).copied().or_else(|| {
            self.base
                .bundles
                .latest(service, tier, deployment)
                .map(|(id, _)| id.number)
        })
    }

    /// The fingerprint key: the store's, or (the first bundle) a new one, sealed under
    /// `key` and planned into the batch.
    fn fingerprint_key(&mut self, key: &Key) -> Result<FingerprintKey> {
        let sealed = self
            .fingerprint_key
            .as_ref()
            .or(self.base.meta.fingerprint_key.as_ref());
        if let Some(sealed) = sealed {
            let under = self.base.keys.get(sealed.key_id).ok_or(Error::Corrupt {
                what: "the fingerprint key's key is not loaded",
            })?;
            return under.open_fingerprint_key(sealed);
        }
        let fresh = FingerprintKey::generate()?;
        self.push(Mutation::SetFingerprintKey(Some(
            key.seal_fingerprint_key(&fresh)?,
        )));
        Ok(fresh)
    }

    /// Refuses a bundle any of whose values holds a stored value, whatever the catalog
    /// says (a template's literal text could spell one out): equal to one, or holding one
    /// of [`MIN_STORED_CHECKED`] bytes or more. Only stored values no longer than the
    /// longest generated one are decrypted, each into a zeroizing buffer.
    fn refuse_stored_values(&self, bundle: &Bundle) -> Result<()> {
        let Some(longest) = bundle.values.values().map(|v| v.len() as u64).max() else {
            return Ok(());
        };
        let planned = &self.secrets;
        let visible = self
            .base
            .secrets
            .iter()
            .filter(|(name, _)| !planned.contains_key(name.as_str()))
            .chain(
                planned
                    .iter()
                    .filter_map(|(name, rec)| rec.as_ref().map(|r| (name, r))),
            );
        for (name, rec) in visible {
            if rec.length() == 0 || rec.length() > longest {
                continue;
            }
            let under = self.base.keys.get(rec.key_id).ok_or(Error::Corrupt {
                what: "a secret's key is not loaded",
            })?;
            let stored = under.open_value(&rec.value(name))?;
            let stored = stored.expose();
            for (secret, value) in &bundle.values {
                let value = value.expose();
                let holds = value == stored
                    || (stored.len() >= MIN_STORED_CHECKED
                        && value.windows(stored.len()).any(|w| w == stored));
                if holds {
                    return Err(Error::BundleHoldsStoredValue {
                        secret: secret.clone(),
                        stored: name.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// `ServiceTiers`.
    fn plan_service_tiers(&mut self, service: &str, tiers: Option<&[String]>) -> Result<Applied> {
        let current = self.declared_service(service);
        let Some(listed) = tiers else {
            if !catalog::is_valid_service(service) {
                return Err(Error::Declaration(DeclError::ServiceName));
            }
            if current.is_none() {
                return Ok(Applied::ServiceTiersSet { changed: false });
            }
            self.push(Mutation::DeleteDecl(DeclKind::Service, service.to_owned()));
            return Ok(Applied::ServiceTiersSet { changed: true });
        };
        let mut new = Service {
            tiers: Some(listed.to_vec()),
        };
        catalog::check_service_declaration(self.tiers(), service, &mut new)
            .map_err(Error::Declaration)?;
        if current == Some(&new) {
            return Ok(Applied::ServiceTiersSet { changed: false });
        }
        if current.is_none() && self.declared_service_count() >= catalog::MAX_SERVICES {
            return Err(Error::Declaration(DeclError::TooMany {
                what: "services",
                limit: catalog::MAX_SERVICES,
            }));
        }
        self.push(Mutation::PutDecl(service.to_owned(), Decl::Service(new)));
        Ok(Applied::ServiceTiersSet { changed: true })
    }
}

/// The shortest stored value a bundle's value is checked not to hold anywhere inside it
/// (any stored value is checked not to be one of them whole): shorter ones (`1`, `yes`)
/// turn up inside random text by chance.
const MIN_STORED_CHECKED: usize = 8;

/// What a plan made within the transaction knows of the store: which secrets have a value
/// (never a value), which are granted.
impl catalog::Store for Overlay<'_> {
    fn has_value(&self, secret: &str) -> bool {
        self.secret(secret).is_some()
    }

    fn is_granted(&self, service: &str, secret: &str) -> bool {
        Overlay::is_granted(self, service, secret)
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
        let at = Made::by(0, mtime, actor);
        // Set when a change is refused (not when the store fails): the refusal is then
        // recorded on its own.
        let mut refusal: Option<usize> = None;
        let result = self.commit_planned(
            actor,
            |state| {
                refusal = None;
                let key = Arc::clone(sealing_key(state).map_err(whole)?);
                let mut overlay = Overlay::new(state);
                let mut applied = Vec::with_capacity(changes.len());
                for (index, change) in changes.iter().enumerate() {
                    let from = overlay.batch.len();
                    let done = overlay.plan(change, &key, &at).map_err(|error| {
                        refusal = Some(index);
                        ChangeError { index, error }
                    })?;
                    for event in auditing::events_of(change, &done, &overlay.batch[from..], actor) {
                        overlay.push(Mutation::Audit(CHANGES.into(), Box::new(event)));
                    }
                    applied.push(done);
                }
                Ok((overlay.batch, applied))
            },
            whole,
        );
        if let (Err(e), Some(index)) = (&result, refusal)
            && let Some(change) = changes.get(index)
        {
            let event = auditing::refused(change, &e.error, actor, changes.len());
            let recorded = self.commit(actor, |_| {
                Ok(vec![Mutation::Audit(
                    CHANGES.into(),
                    Box::new(event.clone()),
                )])
            });
            if let Err(failed) = recorded {
                tracing::warn!(error = %failed, "could not record a refused change in the audit trail");
            }
        }
        result
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
                expires_in: None,
            },
            Change::Grant {
                service: "web",
                name: "nosuch",
                expires_in: None,
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
                Applied::Granted {
                    already: false,
                    expires: None
                },
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
                        expires_in: None,
                    },
                    Change::Grant {
                        service: "web",
                        name: "a",
                        expires_in: None,
                    },
                    Change::Revoke {
                        service: "api",
                        name: "a",
                    },
                    Change::Grant {
                        service: "api",
                        name: "a",
                        expires_in: None,
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
                Applied::Granted {
                    already: false,
                    expires: None
                },
                Applied::Granted {
                    already: true,
                    expires: None
                },
                Applied::Revoked { was_granted: false },
                Applied::Granted {
                    already: false,
                    expires: None
                },
                Applied::ServiceManifest { created: true },
                Applied::ServiceRemoved {
                    grants: 1,
                    tokens: 0
                },
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
