//! Key rotation and its crash recovery.
//!
//! A rotation moves every secret to a new key in five steps, each durable before the next:
//!
//! 1. generate key N+1 and rewrite the key file with both keys (atomic replace);
//! 2. commit `rotation_target = N+1` and N+1's key check, and the fingerprint key of
//!    bundles (if there is one) sealed again under N+1 (from here on, `set` seals under
//!    N+1, and reads use each record's own key id, both of which are loaded);
//! 3. re-encrypt the secrets still under N in batches, one transaction per batch, applying
//!    each to memory as soon as it commits; then, likewise, tag again under N+1 the
//!    records still tagged under N (services, grants, the catalog's declarations and the
//!    bundles' records; the store record is tagged anew by every commit);
//! 4. commit `active_key = N+1`, clear `rotation_target`, drop N's key check;
//! 5. rewrite the key file with N+1 only.
//!
//! The store's meta table is the single source of truth, so `open` can always tell where
//! a crash struck ([`reconcile_keys`]):
//!
//! | state found at open                                   | crashed during | action              |
//! |-------------------------------------------------------|----------------|---------------------|
//! | file {N, N+1}, meta active N, no target               | 1–2            | drop N+1 (rollback) |
//! | meta target N+1 (records under N and N+1)             | 2–4            | resume from 3: every record not yet under N+1 |
//! | file {N, N+1}, meta active N+1, no target             | 4–5            | drop N (step 5)     |
//!
//! A key is dropped from the file only when the meta table references neither it nor any
//! record under it, so recovery can never destroy a key that something still needs. Nothing
//! depends on a clean shutdown.

use std::ops::Bound;
use std::path::Path;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use tracing::{debug, error, info, warn};

use super::{Vault, auditing};
use crate::actor::Actor;
use crate::backend::{MAX_BATCH_BYTES, Table};
use crate::crypto::{Key, Keyring};
use crate::error::{Error, Result};
use crate::keyfile;
use crate::record::{Decl, DeclKind, Issued, IssuedRow};
use crate::rows::{Meta, Mutation};
use crate::state::State;
use crate::types::{RotationProgress, RotationReport};
use audit::CHANGES;

/// Points at which tests stop a rotation as if the process had been killed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CrashPoint {
    /// After step 1: the key file holds both keys.
    KeyFileWritten,
    /// After step 2: the target is committed.
    TargetCommitted,
    /// After the given (0-based) batch of step 3 committed.
    Batch(usize),
    /// After step 4: the active key is switched, the old key still in the file.
    Switched,
}

impl Vault {
    /// Re-encrypts every secret under a new key (see the module documentation for the
    /// steps). Reads and writes keep working throughout; `set`s made meanwhile are sealed
    /// under the new key. `progress` is called after each batch, with `done` never going
    /// down, and last with `done == total`. If a rotation is already pending (an earlier
    /// call failed part-way), this finishes it instead of starting another.
    ///
    /// # Errors
    /// Each says how far the rotation got:
    /// - before the new key is committed (steps 1–2): the cause (I/O, store, ...) as is;
    ///   nothing changed, except that the key file may hold an unused new key, which the
    ///   next rotation replaces and the next start drops;
    /// - after it, before the switch (steps 2–4): [`Error::RotationPending`], wrapping the
    ///   cause, e.g. [`Error::Decrypt`] if a damaged record cannot be re-encrypted (its name
    ///   is logged; delete or re-set it, then rotate again). The rotation stays pending and
    ///   is finished by the next call or the next start;
    /// - after the switch (step 5): [`Error::RotationCleanup`]: the rotation is done, but
    ///   the key file still holds the old key, which the next start removes.
    pub fn rotate_key(&self, progress: &dyn Fn(RotationProgress)) -> Result<RotationReport> {
        self.rotate_key_by(&Actor::local(), progress)
    }

    /// [`Vault::rotate_key`], made by `actor`: every batch of the rotation carries it.
    ///
    /// # Errors
    /// As [`Vault::rotate_key`]; a reason past [`MAX_REASON_LEN`](crate::MAX_REASON_LEN)
    /// before anything changed.
    pub fn rotate_key_by(
        &self,
        actor: &Actor,
        progress: &dyn Fn(RotationProgress),
    ) -> Result<RotationReport> {
        actor.check()?;
        if self.key_read_only {
            return Err(Error::KeyReadOnly {
                path: self.key_path.clone(),
                needs: "a key rotation writes the new key into it",
            });
        }
        let _one = self.rotating.lock().unwrap_or_else(PoisonError::into_inner);
        let active_before = self.state().meta.active_key;
        self.rotate_steps(actor, progress).map_err(|e| {
            // Memory mirrors the store (a failed commit reloads it), so it tells how far
            // the rotation got.
            let meta = &self.state().meta;
            match meta.rotation_target {
                Some(key) => Error::RotationPending {
                    key,
                    source: Box::new(e),
                },
                None if meta.active_key != active_before => Error::RotationCleanup {
                    key: meta.active_key,
                    source: Box::new(e),
                },
                None => e,
            }
        })
    }

    /// The body of [`Vault::rotate_key`]; errors unclassified.
    fn rotate_steps(
        &self,
        actor: &Actor,
        progress: &dyn Fn(RotationProgress),
    ) -> Result<RotationReport> {
        let started = Instant::now();
        let (old_key, new_key) = self.begin_rotation(actor)?;
        info!(old_key, new_key, by = %actor, "key rotation started");
        let reencrypted = self.reencrypt(actor, new_key, progress)?;
        self.finish_rotation(actor, old_key, new_key, reencrypted)?;
        let report = RotationReport {
            old_key,
            new_key,
            reencrypted,
            elapsed: started.elapsed(),
        };
        info!(
            old_key,
            new_key,
            reencrypted,
            seconds = report.elapsed.as_secs_f64(),
            "key rotation finished"
        );
        Ok(report)
    }

    /// At open: finishes a rotation the store says is pending. A record that cannot be
    /// re-encrypted does not stop the server from starting: it serves with both keys and
    /// the next `rotate_key` resumes. Nor does a failure to drop the old key from the key
    /// file once the rotation is done: the next start drops it.
    pub(super) fn resume_rotation(&self) -> Result<()> {
        let Some(target) = self.state().meta.rotation_target else {
            return Ok(());
        };
        if self.key_read_only {
            // Both keys are loaded and checked: everything is readable. Finishing needs the
            // key file rewritten.
            warn!(target, key = %self.key_path.display(),
                "a key rotation is pending and the key file is read-only: serving with both keys; finish it with the key file itself (rotate-key)");
            return Ok(());
        }
        info!(target, "resuming a key rotation interrupted by a crash");
        match self.rotate_key(&|p| debug!(done = p.done, total = p.total, "resumed rotation")) {
            Ok(_) => Ok(()),
            Err(Error::RotationPending { key, source }) if matches!(*source, Error::Decrypt) => {
                warn!(key, error = %source, "could not finish the interrupted key rotation; serving with both keys");
                Ok(())
            }
            // Done but for the key file: serving needs nothing more, the next start retries.
            Err(e @ Error::RotationCleanup { .. }) => {
                warn!(error = %e, "finished the interrupted key rotation but not its cleanup");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Steps 1 and 2, or the pending target if there is one. Returns (old, new) key ids.
    fn begin_rotation(&self, actor: &Actor) -> Result<(u32, u32)> {
        let _writer = self.writer()?;
        let (active, next, pending) = {
            let state = self.state();
            let active = Arc::clone(state.keys.get(state.meta.active_key).ok_or(
                Error::Corrupt {
                    what: "the active key is not loaded",
                },
            )?);
            (
                active,
                state.highest_key_id().checked_add(1),
                state.meta.rotation_target,
            )
        };
        if let Some(target) = pending {
            return Ok((active.id(), target));
        }
        let id = next.ok_or(Error::Corrupt {
            what: "key ids are exhausted",
        })?;
        let key = Arc::new(Key::generate(id)?);
        if !key.is_locked() {
            // Served all the same: a rotation refused for want of locked memory would
            // leave the old key in use, which is worse.
            let why = memlock::status().last_failure.map(|f| f.to_string());
            warn!(
                key = id,
                reason = why.as_deref().unwrap_or("unknown"),
                "the new key's memory is not locked in RAM and may be written to swap"
            );
        }
        let check = key.check()?;
        let seeds = self.state().seed_keys();
        keyfile::write(&self.key_path, &[&active, &key], seeds.seeds())?;
        self.crash_here(CrashPoint::KeyFileWritten)?;
        // The key is loaded before the target is committed, so no reader ever sees a record
        // whose key is not loaded; unused until then.
        self.state_mut().keys.insert(Arc::clone(&key));
        let committed = self.commit(actor, |state| {
            if state.meta.rotation_target.is_some() {
                return Err(Error::Corrupt {
                    what: "another key rotation started meanwhile",
                });
            }
            let started = auditing::own(actor, "rotate-key")
                .detail("from_key", active.id())
                .detail("to_key", id)
                .result("started");
            let mut batch = vec![
                Mutation::PutKeyCheck(id, check.clone()),
                Mutation::SetRotationTarget(Some(id)),
                Mutation::Audit(CHANGES.into(), Box::new(started)),
            ];
            // The same fingerprint key, under the new key: fingerprints made before the
            // rotation still match after it.
            if let Some(sealed) = &state.meta.fingerprint_key {
                let old = state.keys.get(sealed.key_id).ok_or(Error::Corrupt {
                    what: "the fingerprint key's key is not loaded",
                })?;
                let fingerprint = old.open_fingerprint_key(sealed)?;
                batch.push(Mutation::SetFingerprintKey(Some(
                    key.seal_fingerprint_key(&fingerprint)?,
                )));
            }
            Ok(batch)
        });
        if let Err(e) = committed {
            // Memory mirrors the store: the key stays only if its target landed after all.
            let mut state = self.state_mut();
            if state.meta.rotation_target != Some(id) {
                state.keys.retain(|k| k != id);
            }
            return Err(e);
        }
        self.crash_here(CrashPoint::TargetCommitted)?;
        Ok((active.id(), id))
    }

    /// Step 3: one pass in name order, re-encrypting what is not yet under `target`.
    /// Records `set` behind the cursor meanwhile are already under `target`.
    fn reencrypt(
        &self,
        actor: &Actor,
        target: u32,
        progress: &dyn Fn(RotationProgress),
    ) -> Result<u64> {
        let total = {
            let state = self.state();
            state
                .secrets
                .values()
                .filter(|r| r.key_id != target)
                .count() as u64
        };
        let mut now = RotationProgress { done: 0, total };
        self.state_mut().set_rotation(Some(now), self.clock());
        progress(now);
        let max = self.backend.max_batch().max(1);
        let mut cursor: Option<String> = None;
        let mut reencrypted = 0u64;
        // Counts committed batches, for the crash points of the tests.
        let mut batch_no = 0;
        loop {
            let writer = self.writer()?;
            let mut resealed = None;
            self.commit(actor, |state| {
                let batch = reseal_batch(state, target, cursor.as_deref(), max)?;
                resealed = match batch.last() {
                    Some(Mutation::PutSecret(last, _)) => Some((last.clone(), batch.len())),
                    _ => None,
                };
                Ok(batch)
            })?;
            let Some((last, n)) = resealed else {
                break;
            };
            cursor = Some(last);
            reencrypted += n as u64;
            // Secrets deleted meanwhile are never re-encrypted: cap rather than overshoot.
            now.done = reencrypted.min(total);
            self.state_mut().set_rotation(Some(now), self.clock());
            drop(writer);
            progress(now);
            debug!(done = now.done, total, "key rotation progress");
            self.crash_here(CrashPoint::Batch(batch_no))?;
            batch_no += 1;
        }
        if now.done != total {
            now.done = total;
            progress(now);
        }
        // Then the records that have no key of their own: tagged again under the target,
        // in batches too (the count above is of secrets, as `status` shows).
        loop {
            let _writer = self.writer()?;
            let mut n = 0;
            self.commit(actor, |state| {
                let batch = retag_batch(state, target, max);
                n = batch.len();
                Ok(batch)
            })?;
            if n == 0 {
                break;
            }
            debug!(
                records = n,
                "key rotation: records tagged under the new key"
            );
            self.crash_here(CrashPoint::Batch(batch_no))?;
            batch_no += 1;
        }
        Ok(reencrypted)
    }

    /// Steps 4 and 5.
    fn finish_rotation(
        &self,
        actor: &Actor,
        old: u32,
        target: u32,
        reencrypted: u64,
    ) -> Result<()> {
        let _writer = self.writer()?;
        let key = Arc::clone(self.state().keys.get(target).ok_or(Error::Corrupt {
            what: "the rotation's target key is not loaded",
        })?);
        self.commit(actor, |state| {
            if state.auths.values().any(|a| a.key_id != target) {
                return Err(Error::Corrupt {
                    what: "a record is still under the old key after re-encryption",
                });
            }
            let done = auditing::own(actor, "rotate-key")
                .detail("from_key", old)
                .detail("to_key", target)
                .detail("secrets", reencrypted);
            let mut batch = vec![
                Mutation::SetActiveKey(target),
                Mutation::SetRotationTarget(None),
                Mutation::Audit(CHANGES.into(), Box::new(done)),
            ];
            for &id in state.meta.key_checks.keys().filter(|&&id| id != target) {
                batch.push(Mutation::DeleteKeyCheck(id));
            }
            Ok(batch)
        })?;
        self.state_mut().set_rotation(None, self.clock());
        self.crash_here(CrashPoint::Switched)?;
        // If this fails, the old key stays in the file (and in memory) until the next open
        // retires it; nothing uses it any more.
        let seeds = self.state().seed_keys();
        keyfile::write(&self.key_path, &[&key], seeds.seeds())?;
        self.state_mut().keys.retain(|id| id == target);
        Ok(())
    }

    #[cfg(test)]
    fn crash_here(&self, point: CrashPoint) -> Result<()> {
        let crash_at = *self.crash_at.lock().unwrap_or_else(PoisonError::into_inner);
        if crash_at == Some(point) {
            return Err(Error::Corrupt {
                what: "simulated crash",
            });
        }
        Ok(())
    }

    #[cfg(not(test))]
    #[inline]
    fn crash_here(&self, _point: CrashPoint) -> Result<()> {
        Ok(())
    }

    /// Makes the next rotation stop at `point` as if killed.
    #[cfg(test)]
    pub(super) fn crash_at(&self, point: Option<CrashPoint>) {
        *self.crash_at.lock().unwrap_or_else(PoisonError::into_inner) = point;
    }
}

/// At open: matches the key file against the store. Every key the meta table uses (active,
/// and the rotation target if any) must be in the file and pass its key check. Returns
/// those keys, and the ids of any other keys in the file (left by an interrupted rotation).
pub(super) fn reconcile_keys(
    key_path: &Path,
    file_keys: Vec<Key>,
    meta: &Meta,
) -> Result<(Keyring, Vec<u32>)> {
    let needed: Vec<u32> = std::iter::once(meta.active_key)
        .chain(meta.rotation_target)
        .collect();
    let (keep, extra): (Vec<Key>, Vec<Key>) = file_keys
        .into_iter()
        .partition(|k| needed.contains(&k.id()));
    for &id in &needed {
        let key = keep
            .iter()
            .find(|k| k.id() == id)
            .ok_or_else(|| Error::KeyMissing {
                path: key_path.to_path_buf(),
                id,
            })?;
        let check = meta.key_checks.get(&id).ok_or(Error::Corrupt {
            what: "no key check for a key in use",
        })?;
        let verified = if meta.format_version == crate::legacy::FORMAT {
            key.verify_v1(check)
        } else {
            key.verify(check)
        };
        if !verified {
            return Err(Error::KeyMismatch {
                path: key_path.to_path_buf(),
                id,
            });
        }
    }
    Ok((Keyring::new(keep), extra.iter().map(Key::id).collect()))
}

/// At open: rewrites the key file without the keys nothing uses (the state was validated,
/// so every record is under a key in `state.keys`), and with the audit key's seed and the
/// tokens' key.
pub(super) fn drop_extra_keys(key_path: &Path, state: &State, extra: &[u32]) -> Result<()> {
    let keep: Vec<&Key> = state
        .keys
        .ids()
        .filter_map(|id| state.keys.get(id))
        .map(|k| &**k)
        .collect();
    keyfile::write(key_path, &keep, state.seeds())?;
    for &id in extra {
        if id > state.meta.active_key {
            warn!(
                key = id,
                "rolled back an interrupted key rotation: discarded its unused new key"
            );
        } else {
            warn!(
                key = id,
                "finished an interrupted key rotation: retired the old key"
            );
        }
    }
    Ok(())
}

/// Up to `max` records after `cursor` not under `target`, re-encrypted, and no more than
/// half of [`MAX_BATCH_BYTES`] of values (at least one record): a record carries every
/// version of its secret.
fn reseal_batch(
    state: &State,
    target: u32,
    cursor: Option<&str>,
    max: usize,
) -> Result<Vec<Mutation>> {
    let new_key = state.keys.get(target).ok_or(Error::Corrupt {
        what: "the rotation's target key is not loaded",
    })?;
    let lower = cursor.map_or(Bound::Unbounded, Bound::Excluded);
    let mut batch = Vec::with_capacity(max.min(1024));
    let mut bytes = 0usize;
    let todo = state
        .secrets
        .range::<str, _>((lower, Bound::Unbounded))
        .filter(|(_, rec)| rec.key_id != target)
        .take(max);
    for (name, rec) in todo {
        let size: usize = rec.held().map(|(_, h)| h.sealed.ciphertext.len()).sum();
        if !batch.is_empty() && bytes + size > MAX_BATCH_BYTES / 2 {
            break;
        }
        bytes += size;
        let old_key = state.keys.get(rec.key_id).ok_or(Error::Corrupt {
            what: "a secret's key is not loaded",
        })?;
        let rec = rec.resealed(name, old_key, new_key).inspect_err(|_| {
            error!(secret = %name, "cannot re-encrypt: the record does not authenticate");
        })?;
        batch.push(Mutation::PutSecret(name.clone(), rec));
    }
    Ok(batch)
}

/// Up to `max` services, grants, declarations, bundle and token records still tagged under another key than
/// `target`, written again as they are (so tagged under the target, the key the store
/// seals with).
fn retag_batch(state: &State, target: u32, max: usize) -> Vec<Mutation> {
    state
        .auths
        .iter()
        .filter(|(_, auth)| auth.key_id != target)
        .filter_map(|(row, _)| match row.table {
            Table::Services => state
                .services
                .get(&row.key)
                .map(|rec| Mutation::PutService(row.key.clone(), rec.clone())),
            Table::Grants => row.grant_names().map(|(svc, sec)| {
                let expires = state.grant_expires(svc, sec);
                Mutation::PutGrant(svc.to_owned(), sec.to_owned(), expires)
            }),
            Table::Catalog => {
                let (kind, name) = DeclKind::of_key(&row.key)?;
                let catalog = &state.catalog;
                let decl = match kind {
                    DeclKind::Tier => Decl::Tier(*catalog.tier(name)?),
                    DeclKind::Service => Decl::Service(catalog.service(name)?.clone()),
                    DeclKind::Secret => Decl::Secret(catalog.secret(name)?.clone()),
                };
                Some(Mutation::PutDecl(name.to_owned(), decl))
            }
            Table::Tokens => state
                .tokens
                .get(&row.key)
                .map(|rec| Mutation::PutToken(row.key.clone(), rec.clone())),
            Table::Bundles => {
                let bundles = &state.bundles;
                let issued = match IssuedRow::of_key(&row.key)? {
                    IssuedRow::Bundle(id) => {
                        let rec = *bundles.bundles.get(&id)?;
                        Issued::Bundle(id, rec)
                    }
                    IssuedRow::Value(id, secret) => {
                        let key = (id, secret);
                        let rec = *bundles.values.get(&key)?;
                        Issued::Value(key.0, key.1, rec)
                    }
                };
                Some(Mutation::PutIssued(issued))
            }
            _ => None,
        })
        .take(max)
        .collect()
}
