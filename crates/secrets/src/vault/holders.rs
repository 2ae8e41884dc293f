//! Who holds a secret: everyone a rotation or a revoke must reach (`deploy secret
//! holders NAME`): the services granted it, and whether each has opened the current
//! version; the deployments a value was generated for; the tiers it is delegated to.

use catalog::Strategy;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::record::VersionSlot;

use super::{IssuedInfo, Vault};

/// Everyone who holds a secret, or may: what `holders NAME` answers. Never a value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Holders {
    /// The secret.
    pub name: String,
    /// Its current version, if a value is stored.
    pub version: Option<u64>,
    /// The services granted it now, sorted.
    pub services: Vec<ServiceHolder>,
    /// The values of it generated for deployments' bundles, sorted by service, tier,
    /// deployment and bundle (`current`: of the deployment's last bundle).
    pub deployments: Vec<IssuedInfo>,
    /// The tiers it is delegated to, sorted: a provider holds it there.
    pub delegated: Vec<DelegatedTier>,
}

/// A service granted the secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServiceHolder {
    /// The service.
    pub service: String,
    /// When the grant ends, unix seconds; `None`: until revoked.
    pub expires: Option<u64>,
    /// Whether the service is suspended (it holds the grant, and reads nothing).
    pub suspended: bool,
    /// The highest version it has opened (recorded by the audit of opens), if any.
    pub opened: Option<u64>,
    /// Whether the highest version it opened is the current one: after a rotation,
    /// `false` means it may still hold the one before (after a rollback, it says `false`
    /// until the next rotation is opened: it may hold the newer value).
    pub opened_current: bool,
}

/// A tier the secret is delegated to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DelegatedTier {
    /// The tier.
    pub tier: String,
    /// Where the provider keeps it.
    pub reference: String,
    /// Whether the operator marked it present there.
    pub present: bool,
}

impl Vault {
    /// Who holds `name` ([`Holders`]).
    ///
    /// # Errors
    /// [`Error::NoSuchSecret`] if no value is stored, the catalog declares nothing of
    /// that name, and no bundle received one.
    ///
    /// # Cost
    /// The secret's grants and declaration, and one pass over the bundles issued.
    pub fn holders(&self, name: &str) -> Result<Holders> {
        let now = self.clock();
        let opened = self.opened(name);
        let deployments = self.issued(None, Some(name));
        let state = self.state();
        let version = state.secrets.get(name).map(|rec| rec.version());
        let meta = state.catalog.secret(name);
        if version.is_none() && meta.is_none() && deployments.is_empty() {
            return Err(Error::NoSuchSecret);
        }
        let mut services = Vec::new();
        for (service, secrets) in &state.grants {
            if !secrets.contains(name) {
                continue;
            }
            let expires = state.grant_expires(service, name);
            if expires.is_some_and(|t| t <= now) {
                continue;
            }
            let seen = opened.get(service).copied();
            services.push(ServiceHolder {
                service: service.clone(),
                expires,
                suspended: state
                    .services
                    .get(service)
                    .is_some_and(|rec| rec.suspended.is_some()),
                opened: seen,
                // Equal, not at least: after a rollback the current number is the lower
                // one, and a service that opened the newer value does not hold this one.
                opened_current: matches!((seen, version), (Some(s), Some(v)) if s == v),
            });
        }
        services.sort_unstable_by(|a, b| a.service.cmp(&b.service));
        let delegated = meta
            .map(|m| {
                m.tiers
                    .iter()
                    .filter_map(|(tier, policy)| match &policy.strategy {
                        Strategy::Delegate { reference, present } => Some(DelegatedTier {
                            tier: tier.clone(),
                            reference: reference.to_string(),
                            present: *present,
                        }),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Holders {
            name: name.to_owned(),
            version,
            services,
            deployments,
            delegated,
        })
    }
}

/// Where a rotation of a secret stands: what `rotation NAME` answers. Never a
/// value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationStatus {
    /// The secret.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// The previous version, while services can still read it as `NAME@previous`
    /// (within its overlap); `None` without one, or once its overlap ended (a version
    /// kept only for a rollback is not read).
    pub previous: Option<u64>,
    /// When the previous version's overlap ends (unix seconds), and services stop
    /// reading it; `None` with `previous`.
    pub overlap_until: Option<u64>,
    /// Whether the previous version retires by itself once every service below has
    /// opened the current one (`rotate --retire-when-read`), or at `overlap_until`.
    pub retire_when_read: bool,
    /// A version staged and not yet promoted.
    pub pending: Option<u64>,
    /// The services granted the secret now, sorted.
    pub services: Vec<RotationHolder>,
    /// The services of `services` that have not opened the current version: they may
    /// still read the previous one. Empty: the rotation reached everyone.
    pub waiting_on: Vec<String>,
}

/// A service granted a secret, in a rotation's view.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RotationHolder {
    /// The service.
    pub service: String,
    /// The highest version it has opened (recorded by the audit of opens), if any.
    pub opened: Option<u64>,
    /// Whether it has opened the current version (or a later one, before a rollback).
    pub has_current: bool,
    /// Whether it is suspended: it reads nothing now, and is still waited on, since a
    /// resumed service reads again.
    pub suspended: bool,
}

impl Vault {
    /// Where the rotation of `name` stands ([`RotationStatus`]): who has opened its
    /// current version and who may still read the previous one.
    ///
    /// # Errors
    /// [`Error::NoSuchSecret`] if no value of that name is stored.
    ///
    /// # Cost
    /// The secret's grants and recorded opens.
    pub fn rotation_status(&self, name: &str) -> Result<RotationStatus> {
        let now = self.clock();
        let state = self.state();
        let rec = state.secrets.get(name).ok_or(Error::NoSuchSecret)?;
        let version = rec.version();
        let waiting_on = state.yet_to_open(name, version, now);
        let opened = state.opened.get(name);
        let services = state
            .holders(name)
            .into_iter()
            .filter(|service| state.may_read(service, name, || now))
            .map(|service| RotationHolder {
                opened: opened.and_then(|by| by.get(&service)).copied(),
                has_current: !waiting_on.contains(&service),
                suspended: state
                    .services
                    .get(&service)
                    .is_some_and(|s| s.suspended.is_some()),
                service,
            })
            .collect();
        let previous = rec.readable_in(VersionSlot::Previous, now);
        Ok(RotationStatus {
            name: name.to_owned(),
            version,
            previous: previous.map(|p| p.made.version),
            overlap_until: previous.and_then(|p| p.until),
            retire_when_read: previous.is_some_and(|p| p.retire_when_read),
            pending: rec.pending.as_ref().map(|p| p.made.version),
            services,
            waiting_on,
        })
    }
}
