//! A secret's versions as services and `history` see them, stale secrets, and the
//! housekeeping that ends what ends by itself.
//!
//! A secret holds its current version, and may hold a previous and a pending one
//! (`record.rs`). Services granted the secret read the current one as `secret/NAME`, the
//! pending one as `secret/NAME@pending` within its hour, and the previous one as
//! `secret/NAME@previous` during its overlap; each of these is decided at the moment of
//! the walk, stat or open, by the clock, so that a deadline holds to the second whether or
//! not a housekeeping pass has run. The changes themselves (`stage`, `promote`, `discard`,
//! `rollback`, `retire`) are [`Change`](super::Change)s, through [`Vault::apply`].
//!
//! [`Vault::expire`] makes durable what time has ended: it destroys pending versions past
//! their hour, removes grants past their end and ends overlaps past their deadline (the
//! previous version stays, for a rollback), in one commit made by this process, so that
//! the change is a commit that subscribers are told of like any other. The
//! server runs it every few seconds; [`Vault::open`] runs it at start, after discarding
//! every pending version (a rotation in flight when the server stopped cannot finish: the
//! test that was to decide it is gone), so that a crash at any step of a rotation leaves
//! either the rotation done or nothing of it.

use std::collections::BTreeMap;

use tracing::{info, warn};

use super::{Change, Vault, auditing};
use crate::actor::Actor;
use crate::error::{Error, Result};
use crate::record::{PENDING_TTL, VersionSlot, VersionState};
use crate::rows::Mutation;
use crate::types::{Expired, OpenedSecret, SecretInfo, StaleSecret, VersionInfo};
use audit::CHANGES;

/// The rotation period of a secret the catalog gives none: 90 days, in seconds.
pub(super) const DEFAULT_ROTATION_SECS: u64 = 90 * 24 * 3600;

impl Vault {
    /// Opens a version of a secret on behalf of `service`: checks the grant and that the
    /// version is readable in `slot` now, and snapshots it (ciphertext only), which
    /// [`Vault::read_opened`] decrypts.
    ///
    /// # Errors
    /// [`Error::NotFound`] alike for a secret that does not exist, one not granted, and a
    /// version that is not readable in `slot` (none pending, no overlap).
    pub fn open_version(
        &self,
        service: &str,
        name: &str,
        slot: VersionSlot,
    ) -> Result<OpenedSecret> {
        let now = self.clock();
        let state = self.state();
        if !state.may_read(service, name, || now) {
            return Err(Error::NotFound);
        }
        let rec = state.secrets.get(name).ok_or(Error::NotFound)?;
        let held = rec.readable_in(slot, now).ok_or(Error::NotFound)?;
        Ok(OpenedSecret {
            name: name.to_owned(),
            incarnation: rec.incarnation,
            key_id: rec.key_id,
            held: held.clone(),
        })
    }

    /// Whether `service` may read `name` in `slot` now: granted, and (for the pending and
    /// previous slots) a version there that is readable now. What a walk and a stat ask.
    pub fn is_readable(&self, service: &str, name: &str, slot: VersionSlot) -> bool {
        let now = || self.clock();
        let state = self.state();
        state.may_read(service, name, now)
            && state
                .secrets
                .get(name)
                .is_some_and(|rec| rec.readable_in(slot, now()).is_some())
    }

    /// The public facts of the version of `name` readable in `slot` now.
    pub fn version_info(&self, name: &str, slot: VersionSlot) -> Option<SecretInfo> {
        let now = self.clock();
        let state = self.state();
        let held = state.secrets.get(name)?.readable_in(slot, now)?;
        Some(SecretInfo {
            name: name.to_owned(),
            version: held.made.version,
            mtime: held.made.at,
            length: held.sealed.length,
        })
    }

    /// Every version of `name` the record knows, newest first: the current, previous and
    /// pending ones and the last destroyed ones, with who made each, when and why; never
    /// a value. `None` for a secret that does not exist.
    pub fn history(&self, name: &str) -> Option<Vec<VersionInfo>> {
        let now = self.clock();
        let state = self.state();
        let rec = state.secrets.get(name)?;
        let revoked = |version: u64| version < rec.revoked_below;
        let mut out: Vec<VersionInfo> = rec
            .held()
            .map(|(state, held)| {
                // A pending version past its hour is as good as gone, whether or not the
                // housekeeping has destroyed it yet.
                let expired = state == VersionState::Pending && rec.pending_expired(now);
                VersionInfo {
                    version: held.made.version,
                    state: if expired {
                        VersionState::Destroyed
                    } else {
                        state
                    },
                    created: held.made.at,
                    by: held.made.by.clone(),
                    uid: held.made.uid,
                    reason: held.made.reason.clone(),
                    length: (!expired).then_some(held.sealed.length),
                    overlap_until: held.until,
                    expires: (state == VersionState::Pending)
                        .then(|| held.made.at.saturating_add(PENDING_TTL)),
                    destroyed: expired.then(|| held.made.at.saturating_add(PENDING_TTL)),
                    revoked: revoked(held.made.version),
                }
            })
            .chain(rec.destroyed.iter().map(|d| VersionInfo {
                version: d.made.version,
                state: VersionState::Destroyed,
                created: d.made.at,
                by: d.made.by.clone(),
                uid: d.made.uid,
                reason: d.made.reason.clone(),
                length: None,
                overlap_until: None,
                expires: None,
                destroyed: Some(d.at),
                revoked: revoked(d.made.version),
            }))
            .collect();
        out.sort_by_key(|v| std::cmp::Reverse(v.version));
        Some(out)
    }

    /// The secrets whose current version is older than their rotation period (the
    /// catalog's `rotate_every`, 90 days for a secret it declares none for), by name.
    pub fn stale(&self) -> Vec<StaleSecret> {
        let now = self.clock();
        let state = self.state();
        state
            .secrets
            .iter()
            .filter_map(|(name, rec)| {
                let meta = state.catalog.secret(name);
                let period = meta.map_or(DEFAULT_ROTATION_SECS, |m| {
                    u64::from(m.rotate_every.minutes()) * 60
                });
                let age = now.saturating_sub(rec.mtime());
                (age >= period).then(|| StaleSecret {
                    name: name.clone(),
                    version: rec.version(),
                    since: rec.mtime(),
                    age,
                    rotate_every: period,
                    owner: meta.and_then(|m| m.owner.clone()),
                    class: meta.and_then(|m| m.class).map(|c| c.to_string()),
                })
            })
            .collect()
    }

    /// When `service`'s grant of `secret` ends, if it ends by itself.
    pub fn grant_expires(&self, service: &str, secret: &str) -> Option<u64> {
        self.state().grant_expires(service, secret)
    }

    /// The grants of `service` that end by themselves and have not ended: secret -> when
    /// (unix seconds).
    pub fn grants_ending(&self, service: &str) -> BTreeMap<String, u64> {
        let now = self.clock();
        self.state()
            .expiring
            .get(service)
            .map(|m| {
                m.iter()
                    .filter(|&(_, &t)| now < t)
                    .map(|(s, &t)| (s.clone(), t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Makes durable what time has ended (reads refuse it already): destroys every
    /// pending version past its hour, removes every grant past its end and ends every
    /// overlap past its deadline, in one commit made by this process (none if nothing
    /// has ended). Returns what it removed.
    ///
    /// # Errors
    /// The store's; nothing was removed then, and the next call tries again.
    pub fn expire(&self) -> Result<Expired> {
        let retired = self.retire_read()?;
        let mut expired = self.expire_ended()?;
        expired.retired = retired;
        Ok(expired)
    }

    /// Retires every previous version promoted with `retire-when-read` whose overlap has
    /// ended or that every service granted the secret has opened the current version of
    /// (by the opens recorded so far), each with a `Retire` made by this process, so
    /// that the audit trail and the change events record it as any retire. Returns the
    /// (secret, previous version) retired.
    ///
    /// # Errors
    /// The store's; what was retired before the failure stays retired, and the next
    /// call tries the rest again.
    ///
    /// # Cost
    /// One pass over the secrets; for each previous version to retire when read, over
    /// its grants and opens.
    pub fn retire_read(&self) -> Result<Vec<(String, u64)>> {
        let now = self.clock();
        let due: Vec<(String, u64, &'static str)> = {
            let state = self.state();
            state
                .secrets
                .iter()
                .filter_map(|(name, rec)| {
                    let p = rec.previous.as_ref().filter(|p| p.retire_when_read)?;
                    if p.until.is_none_or(|t| t <= now) {
                        return Some((name.clone(), p.made.version, "its overlap ended"));
                    }
                    let all_read = state.yet_to_open(name, rec.version(), now).is_empty();
                    all_read.then(|| (name.clone(), p.made.version, "read by every holder"))
                })
                .collect()
        };
        let mut retired = Vec::with_capacity(due.len());
        for (name, version, why) in due {
            let actor = Actor::local().with_reason(why);
            match self.apply(
                &actor,
                &[Change::Retire {
                    name: &name,
                    when_read: Some(version),
                }],
            ) {
                Ok(_) => {
                    info!(secret = %name, version, reason = why, "retired the previous version (retire-when-read)");
                    retired.push((name, version));
                }
                // Retired, rolled back, rotated again or deleted since: nothing left
                // to do, or for the next pass to judge afresh.
                Err(e) if matches!(e.error, Error::NoPreviousVersion | Error::NoSuchSecret) => {}
                Err(e) => return Err(e.error),
            }
        }
        Ok(retired)
    }

    /// The rest of [`Vault::expire`]: pending versions, grants and overlaps.
    fn expire_ended(&self) -> Result<Expired> {
        let now = self.clock();
        let due = {
            let state = self.state();
            state
                .secrets
                .values()
                .any(|r| r.pending_expired(now) || overlap_ended(r, now))
                || state
                    .expiring
                    .values()
                    .any(|m| m.values().any(|&t| t <= now))
        };
        if !due {
            return Ok(Expired::default());
        }
        let _writer = self.writer()?;
        let actor = Actor::local().with_reason("ended by itself");
        let expired = self.commit_planned(
            &actor,
            |state| {
                let mut batch = Vec::new();
                let mut expired = Expired::default();
                for (name, rec) in &state.secrets {
                    let mut next = None;
                    if let (true, Some(p)) = (rec.pending_expired(now), &rec.pending) {
                        expired.pending.push((name.clone(), p.made.version));
                        next = Some(rec.discarded(now));
                        let event = auditing::own(&actor, "expire")
                            .target("secret", name.clone())
                            .version(p.made.version)
                            .detail("what", "pending");
                        batch.push(Mutation::Audit(CHANGES.into(), Box::new(event)));
                    }
                    if overlap_ended(rec, now) {
                        let next = next.get_or_insert_with(|| rec.clone());
                        if let Some(previous) = &mut next.previous {
                            expired.overlaps.push((name.clone(), previous.made.version));
                            previous.until = None;
                            let event = auditing::own(&actor, "expire")
                                .target("secret", name.clone())
                                .version(previous.made.version)
                                .detail("what", "overlap");
                            batch.push(Mutation::Audit(CHANGES.into(), Box::new(event)));
                        }
                    }
                    if let Some(next) = next {
                        batch.push(Mutation::PutSecret(name.clone(), next));
                    }
                }
                for (service, ends) in &state.expiring {
                    for (secret, _) in ends.iter().filter(|&(_, &t)| t <= now) {
                        expired.grants.push((service.clone(), secret.clone()));
                        batch.push(Mutation::DeleteGrant(service.clone(), secret.clone()));
                        let event = auditing::own(&actor, "expire")
                            .target("secret", secret.clone())
                            .target("service", service.clone())
                            .detail("what", "grant");
                        batch.push(Mutation::Audit(CHANGES.into(), Box::new(event)));
                    }
                }
                Ok::<_, Error>((batch, expired))
            },
            |e| e,
        )?;
        for (name, version) in &expired.pending {
            info!(secret = %name, version, "discarded a pending version not promoted within an hour");
        }
        for (service, secret) in &expired.grants {
            info!(%service, %secret, "a grant ended");
        }
        for (name, version) in &expired.overlaps {
            info!(secret = %name, version, "an overlap ended: the previous version is no longer readable as @previous");
        }
        Ok(expired)
    }

    /// At open: discards every pending version (a rotation in flight when the server
    /// stopped: the test that was to decide it is gone, so it is rolled back), then ends
    /// what has ended. A failure is logged and serving goes on: reads refuse what has
    /// ended regardless, and the server's housekeeping tries again.
    pub(super) fn settle_versions_at_open(&self) {
        let discard = || -> Result<Vec<(String, u64)>> {
            let _writer = self.writer()?;
            let now = self.clock();
            let actor = Actor::local().with_reason("a rotation in flight when the server stopped");
            self.commit_planned(
                &actor,
                |state| {
                    let mut batch = Vec::new();
                    let mut gone = Vec::new();
                    for (name, rec) in &state.secrets {
                        if let Some(p) = &rec.pending {
                            gone.push((name.clone(), p.made.version));
                            batch.push(Mutation::PutSecret(name.clone(), rec.discarded(now)));
                            let event = auditing::own(&actor, "discard")
                                .target("secret", name.clone())
                                .version(p.made.version);
                            batch.push(Mutation::Audit(CHANGES.into(), Box::new(event)));
                        }
                    }
                    Ok::<_, Error>((batch, gone))
                },
                |e| e,
            )
        };
        match discard() {
            Ok(gone) => {
                for (name, version) in gone {
                    warn!(secret = %name, version, "discarded a pending version: its rotation was in flight when the server stopped; rotate again");
                }
            }
            Err(e) => warn!(error = %e, "could not discard the pending versions left by a stop"),
        }
        if let Err(e) = self.expire() {
            warn!(error = %e, "could not remove what ended while the server was stopped");
        }
    }
}

/// Whether `rec`'s previous version had an overlap that is over at `now`.
fn overlap_ended(rec: &crate::record::SecretRecord, now: u64) -> bool {
    rec.previous
        .as_ref()
        .and_then(|p| p.until)
        .is_some_and(|t| t <= now)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
