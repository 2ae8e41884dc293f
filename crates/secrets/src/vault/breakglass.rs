//! Break-glass (seed 004) as readers see it: whether deploys are frozen, which services
//! are suspended, and the ownership matrix. The changes that freeze and unfreeze,
//! suspend and resume, and revoke a secret from every service are
//! [`Change`](super::Change)s, planned in `change/breakglass.rs`.
//!
//! A freeze stops the changes that deploy something ([`Change::stops_when_frozen`]: a
//! grant, a service's uid or manifest, the catalog, a bundle); the server also refuses
//! the admin's new attaches of a service's view then. A suspended service's view is
//! refused on every request but a clunk ([`Vault::serves`], which the server asks on each
//! one), through fids it holds open too; its grants stay.
//!
//! [`Change::stops_when_frozen`]: super::Change::stops_when_frozen

use std::collections::BTreeMap;

use super::Vault;
use super::versions::DEFAULT_ROTATION_SECS;
use crate::record::Marked;
use crate::types::{Mark, Matrix, MatrixGrant, MatrixRow};

/// The public form of a stored mark.
pub(super) fn mark_of(m: &Marked) -> Mark {
    Mark {
        since: m.at,
        by: m.by.clone(),
        uid: m.uid,
        reason: m.reason.clone(),
    }
}

impl Vault {
    /// Whether deploys are frozen: since when, by whom and why.
    pub fn frozen(&self) -> Option<Mark> {
        self.state().meta.frozen.as_ref().map(mark_of)
    }

    /// Whether deploys are frozen: one look, no allocation (the server asks at every
    /// attach of a service's view by the admin).
    pub fn is_frozen(&self) -> bool {
        self.state().meta.frozen.is_some()
    }

    /// The services suspended, sorted.
    pub fn suspended(&self) -> Vec<String> {
        self.state()
            .services
            .iter()
            .filter(|(_, rec)| rec.suspended.is_some())
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether `service`'s view may be served: the service exists and is not suspended.
    /// One lookup, no allocation: the server asks on every request made through a view
    /// the admin attached on the service's behalf.
    pub fn serves(&self, service: &str) -> bool {
        self.state()
            .services
            .get(service)
            .is_some_and(|rec| rec.suspended.is_none())
    }

    /// Whether `uid` authenticates as `service` and the service is not suspended: what
    /// the server asks on every request made through a service's own view.
    pub fn uid_serves(&self, uid: u32, service: &str) -> bool {
        let state = self.state();
        state.uids.get(&uid).is_some_and(|s| s == service)
            && state
                .services
                .get(service)
                .is_some_and(|rec| rec.suspended.is_none())
    }

    /// Seed 004's ownership matrix: every secret stored or declared in the catalog (by
    /// name), every service, and the grants that hold now, with each secret's class,
    /// owner, the age of its current version and its rotation period. Never a value.
    ///
    /// # Cost
    /// One pass over the secrets, the catalog's declarations and the grants, under the
    /// state's read lock.
    pub fn matrix(&self) -> Matrix {
        let now = self.clock();
        let state = self.state();
        let mut granted: BTreeMap<&str, BTreeMap<String, MatrixGrant>> = BTreeMap::new();
        for (service, secrets) in &state.grants {
            for secret in secrets {
                let expires = state.grant_expires(service, secret);
                if expires.is_some_and(|t| t <= now) {
                    continue;
                }
                granted
                    .entry(secret.as_str())
                    .or_default()
                    .insert(service.clone(), MatrixGrant { expires });
            }
        }
        let mut names: Vec<&str> = state
            .secrets
            .keys()
            .chain(state.catalog.secrets().keys())
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        names.dedup();
        let secrets = names
            .into_iter()
            .map(|name| {
                let meta = state.catalog.secret(name);
                let rotate_every = meta.map_or(DEFAULT_ROTATION_SECS, |m| {
                    u64::from(m.rotate_every.minutes()) * 60
                });
                let rec = state.secrets.get(name);
                let age = rec.map(|r| now.saturating_sub(r.mtime()));
                MatrixRow {
                    name: name.to_owned(),
                    class: meta.and_then(|m| m.class).map(|c| c.to_string()),
                    owner: meta.and_then(|m| m.owner.clone()),
                    version: rec.map(|r| r.version()),
                    updated: rec.map(|r| r.mtime()),
                    age,
                    rotate_every,
                    stale: age.is_some_and(|a| a >= rotate_every),
                    grants: granted.remove(name).unwrap_or_default(),
                }
            })
            .collect();
        Matrix {
            services: state.services.keys().cloned().collect(),
            suspended: state
                .services
                .iter()
                .filter(|(_, rec)| rec.suspended.is_some())
                .map(|(name, _)| name.clone())
                .collect(),
            secrets,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
