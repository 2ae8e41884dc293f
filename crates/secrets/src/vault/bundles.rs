//! The bundles issued, read: which deployments received which generated values
//! ([`Vault::issued`]), and which deployment a leaked value was issued to
//! ([`Vault::identify`]). Memory only, like every read.
//!
//! Issuing is a change ([`Change::Bundle`](super::Change::Bundle) through
//! [`Vault::apply`]): it records the bundle (service, tier, deployment, its number, when)
//! and, for each value generated for it, the secret and a keyed fingerprint, the
//! HMAC-SHA256 of the value under the fingerprint key (`crypto.rs`), never the value. The
//! fingerprint key is kept across key rotations, so a value issued before a rotation is
//! still found after it.

use std::collections::BTreeSet;

use serde::Serialize;

use super::Vault;
use crate::error::{Error, Result};
use crate::record::BundleId;
use crate::state::State;

/// A value generated for a bundle, or a bundle that has none: what the store keeps of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct IssuedInfo {
    /// The deployment it was issued to.
    pub deployment: String,
    /// The service.
    pub service: String,
    /// The tier.
    pub tier: String,
    /// Which bundle of the deployment (1, then 2 after a replace, ...).
    pub bundle: u64,
    /// The secret whose value it is; `None` for a bundle with no generated value.
    pub secret: Option<String>,
    /// When it was issued, unix seconds.
    pub issued: u64,
    /// Whether it is of the deployment's last bundle (not replaced since).
    pub current: bool,
}

impl Vault {
    /// The values generated for bundles, one entry each (and one for each bundle with none),
    /// sorted by service, tier, deployment, bundle and secret; only those issued to
    /// `deployment` and of `secret`, when given.
    pub fn issued(&self, deployment: Option<&str>, secret: Option<&str>) -> Vec<IssuedInfo> {
        let state = self.state();
        let bundles = &state.bundles;
        let mut out = Vec::new();
        for (id, rec) in &bundles.bundles {
            if deployment.is_some_and(|d| d != id.deployment) {
                continue;
            }
            let current = is_current(&state, id);
            let values = bundles
                .values
                .range((id.clone(), String::new())..)
                .take_while(|((of, _), _)| of == id);
            let mut any = false;
            for ((_, name), value) in values {
                any = true;
                if secret.is_some_and(|s| s != name) {
                    continue;
                }
                out.push(info(id, Some(name), value.issued, current));
            }
            if !any && secret.is_none() {
                out.push(info(id, None, rec.issued, current));
            }
        }
        out
    }

    /// The values generated for bundles that are `value`, byte for byte: none for a value
    /// no bundle received, more than one only for a template that draws no randomness.
    /// `value` is fingerprinted, never compared or kept.
    ///
    /// # Errors
    /// [`Error::Tampered`] if the stored fingerprint key does not open.
    pub fn identify(&self, value: &[u8]) -> Result<Vec<IssuedInfo>> {
        let state = self.state();
        let Some(sealed) = &state.meta.fingerprint_key else {
            // No bundle was ever issued.
            return Ok(Vec::new());
        };
        let key = state.keys.get(sealed.key_id).ok_or(Error::Corrupt {
            what: "the fingerprint key's key is not loaded",
        })?;
        let fingerprint = key.open_fingerprint_key(sealed)?.fingerprint(value);
        let Some(found) = state.bundles.by_fingerprint.get(&fingerprint) else {
            return Ok(Vec::new());
        };
        let found: &BTreeSet<(BundleId, String)> = found;
        Ok(found
            .iter()
            .filter_map(|key| {
                let rec = state.bundles.values.get(key)?;
                let (id, secret) = key;
                Some(info(id, Some(secret), rec.issued, is_current(&state, id)))
            })
            .collect())
    }
}

fn is_current(state: &State, id: &BundleId) -> bool {
    state
        .bundles
        .latest(&id.service, &id.tier, &id.deployment)
        .is_some_and(|(last, _)| last.number == id.number)
}

fn info(id: &BundleId, secret: Option<&String>, issued: u64, current: bool) -> IssuedInfo {
    IssuedInfo {
        deployment: id.deployment.clone(),
        service: id.service.clone(),
        tier: id.tier.clone(),
        bundle: id.number,
        secret: secret.cloned(),
        issued,
        current,
    }
}
