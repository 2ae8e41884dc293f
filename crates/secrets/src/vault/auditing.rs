//! The audit trail: every change and every open of a secret, recorded in signed hash
//! chains (the `audit` crate), in the store.
//!
//! # Changes
//!
//! Each change planned by [`Vault::apply`] (and each step of the vault's own: a key
//! rotation's start and end, what ends by itself, the audit's start) adds an event to its
//! batch ([`Mutation::Audit`]); [`Vault::commit_batch`], the one place every batch passes,
//! makes the events into records against the chain's head at that moment (so that a batch
//! planned again after a conflict links to the head it commits on), signs them, and commits
//! them with the change, in the same transaction: if the record cannot be written, the
//! change is not either. A change the vault refuses is recorded too, in a commit of its
//! own (`refused: WHY`), since nothing else of it is.
//!
//! # Opens
//!
//! An open never waits on the store: [`Vault::record_open`] puts it in a bounded queue in
//! memory, and a flusher ([`OpenFlusher`], a thread) commits what is queued
//! [`FLUSH_AFTER`] after the first of it, or at once when [`FLUSH_BATCH`] are waiting, in
//! one batch (a commit has a cost of its own, which a batch of many opens shares): the records of
//! the opens (chain `opens`, the batch's last one signed; the same open made many times
//! in a batch, by the same principal and uid, of the same version through the same view,
//! is one record with `count` and the `last` time) and the highest version of each
//! secret each service opened ([`Vault::opened`]). Past the queue's bound an open is
//! counted instead, and the next batch records how many were not recorded, and when:
//! never silently. A batch that fails to commit is counted so too. The flusher flushes a
//! last time when it is stopped (a clean shutdown).
//!
//! # Reading
//!
//! The trail is never loaded into memory: [`Vault::audit_read`] reads a page of a chain,
//! [`AuditReader`] streams every chain merged by time, as JSON lines, for `secrets/audit`,
//! and [`Vault::audit_verify`] checks every record with the public key and that the rows
//! end where the store record's heads say.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use audit::{CHANGES, Event, Hash, Head, OPENS, PublicKey, Record};
use tracing::{debug, info, warn};

use super::{Applied, Change, Vault};
use crate::actor::{Actor, Principal};
use crate::backend::Table;
use crate::error::{Error, Result};
use crate::record::{Issued, VersionSlot};
use crate::rows::Mutation;
use crate::state::State;
use crate::trail::audit_row;
use crate::types::OpenedSecret;

/// How many opens may wait for the flusher; past it they are counted, not recorded.
pub const OPEN_QUEUE_BOUND: usize = 65_536;
/// The flusher commits as soon as this many opens wait.
pub const FLUSH_BATCH: usize = 4096;
/// ... and otherwise this long after the first of them: long enough that the cost of a
/// commit is shared by many opens, short enough that a `kill -9` loses little.
pub const FLUSH_AFTER: Duration = Duration::from_millis(20);
/// The most records [`Vault::audit_read`] returns at once.
pub const MAX_READ: usize = 10_000;
/// The longest result a refused change's record keeps of the refusal.
const MAX_RESULT_LEN: usize = 512;

/// The action of a record saying that opens were not recorded (the queue was full, or
/// their batch failed to commit).
pub const OPENS_NOT_RECORDED: &str = "opens-not-recorded";

/// The audit's public key and each chain's last record, as the store says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHeads {
    /// The public key that verifies every record.
    pub public_key: Option<PublicKey>,
    /// Each chain's last record, by chain.
    pub heads: BTreeMap<String, Head>,
}

/// One open waiting to be recorded.
struct QueuedOpen {
    time_ms: u64,
    principal: Principal,
    uid: Option<u32>,
    service: String,
    secret: String,
    version: u64,
    slot: VersionSlot,
}

#[derive(Default)]
struct Queue {
    opens: Vec<QueuedOpen>,
    /// When the first of `opens` was queued.
    since: Option<Instant>,
    /// Opens not recorded since the last batch that said so, and when the first and the
    /// last of them were made.
    lost: u64,
    lost_from: u64,
    lost_to: u64,
    stopping: bool,
}

impl Queue {
    fn lose(&mut self, n: u64, from: u64, to: u64) {
        if self.lost == 0 {
            self.lost_from = from;
        }
        self.lost = self.lost.saturating_add(n);
        self.lost_from = self.lost_from.min(from);
        self.lost_to = self.lost_to.max(to);
    }

    fn is_idle(&self) -> bool {
        self.opens.is_empty() && self.lost == 0
    }
}

/// The opens waiting for the flusher.
pub(crate) struct OpenQueue {
    queue: Mutex<Queue>,
    ready: Condvar,
    bound: AtomicUsize,
    /// Off only in a benchmark's baseline (see [`Vault::disable_open_recording_for_benchmarks`]).
    recording: AtomicBool,
}

impl Default for OpenQueue {
    fn default() -> OpenQueue {
        OpenQueue {
            queue: Mutex::new(Queue::default()),
            ready: Condvar::new(),
            bound: AtomicUsize::new(OPEN_QUEUE_BOUND),
            recording: AtomicBool::new(true),
        }
    }
}

impl OpenQueue {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Every operation leaves the queue whole.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, open: QueuedOpen) {
        let mut q = self.lock();
        if q.opens.len() >= self.bound.load(Ordering::Relaxed) {
            let t = open.time_ms;
            q.lose(1, t, t);
            return;
        }
        q.opens.push(open);
        let n = q.opens.len();
        if n == 1 {
            q.since = Some(Instant::now());
        }
        drop(q);
        if n == 1 || n == FLUSH_BATCH {
            self.ready.notify_one();
        }
    }

    /// Waits until a batch is due (or `stop`), and takes it: the opens and the count of
    /// those not recorded. Returns `None` once stopping with nothing left.
    fn next_batch(&self) -> Option<(Vec<QueuedOpen>, Lost)> {
        let mut q = self.lock();
        loop {
            if q.is_idle() {
                if q.stopping {
                    return None;
                }
                q = self.ready.wait(q).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            let waited = q.since.map_or(FLUSH_AFTER, |t| t.elapsed());
            if q.stopping || q.opens.len() >= FLUSH_BATCH || waited >= FLUSH_AFTER {
                return Some(take(&mut q));
            }
            q = self
                .ready
                .wait_timeout(q, FLUSH_AFTER - waited)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn take_now(&self) -> (Vec<QueuedOpen>, Lost) {
        take(&mut self.lock())
    }

    fn stop(&self) {
        self.lock().stopping = true;
        self.ready.notify_all();
    }
}

/// What makes opens of a batch one record: who (principal, uid), through whose view, of
/// what, at which version, in which slot.
type OpenKey<'a> = (
    &'a Principal,
    Option<u32>,
    &'a str,
    &'a str,
    u64,
    &'static str,
);

/// Opens not recorded: how many, from when to when (unix milliseconds).
#[derive(Clone, Copy, Default)]
struct Lost {
    count: u64,
    from: u64,
    to: u64,
}

fn take(q: &mut Queue) -> (Vec<QueuedOpen>, Lost) {
    let lost = Lost {
        count: q.lost,
        from: q.lost_from,
        to: q.lost_to,
    };
    q.lost = 0;
    q.lost_from = 0;
    q.lost_to = 0;
    // At most a batch's worth: a backlog taken whole (up to the queue's bound, of opens
    // all different) could outgrow a transaction, fail every time, and lose them all.
    // What stays keeps its `since`, so the next batch is due at once.
    let n = q.opens.len().min(FLUSH_BATCH);
    let opens: Vec<QueuedOpen> = q.opens.drain(..n).collect();
    if q.opens.is_empty() {
        q.since = None;
    }
    (opens, lost)
}

/// Now, in unix milliseconds.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The event of an actor: who, over which uid (or with which token), why.
fn by(actor: &Actor, action: &str) -> Event {
    let e = Event::new(actor.principal_text(), actor.uid(), action).reason(actor.reason());
    match actor.token() {
        Some(id) => e.detail("by_token", id),
        None => e,
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The events a change makes once planned: `applied` is its outcome, `planned` the
/// mutations it added to the batch. One event, but for a catalog apply with values,
/// which also records the set of each value.
pub(super) fn events_of(
    change: &Change<'_>,
    applied: &Applied,
    planned: &[Mutation],
    actor: &Actor,
) -> Vec<Event> {
    let mut e = by(actor, change.action());
    for (part, name) in change.target() {
        e = e.target(part, name);
    }
    let mut more = Vec::new();
    let unchanged = |e: Event, changed: bool| if changed { e } else { e.result("unchanged") };
    e = match applied {
        Applied::Set { version } => e.version(*version),
        Applied::Deleted { grants } => e.detail("grants", grants),
        Applied::Granted { already, expires } => {
            let e = match expires {
                Some(t) => e.detail("expires", audit::format_ms(t.saturating_mul(1000))),
                None => e,
            };
            unchanged(e, !already)
        }
        Applied::Staged { version, expires } => e
            .version(*version)
            .detail("expires", audit::format_ms(expires.saturating_mul(1000))),
        Applied::Promoted {
            version,
            previous,
            until,
        } => {
            let mut e = e.version(*version);
            if let Some(p) = previous {
                e = e.detail("previous", p);
            }
            if let Some(t) = until {
                e = e.detail("overlap_until", audit::format_ms(t.saturating_mul(1000)));
            }
            if let Change::Promote {
                revoke_previous: true,
                ..
            } = change
            {
                e = e.detail("revoke_previous", "yes");
            }
            if let Change::Promote {
                retire_when_read: true,
                ..
            } = change
            {
                e = e.detail("retire_when_read", "yes");
            }
            e
        }
        Applied::Discarded { version } | Applied::Retired { version } => e.version(*version),
        Applied::RolledBack { version, previous } => {
            e.version(*version).detail("previous", previous)
        }
        Applied::Revoked { was_granted } => unchanged(e, *was_granted),
        Applied::ServiceUid { created, previous } => {
            let e = e.detail("created", yes(*created));
            let e = match previous {
                Some(p) => e.detail("previous_uid", p),
                None => e,
            };
            let same = matches!(change, Change::ServiceUid { uid, .. } if Some(*uid) == *previous);
            unchanged(e, !same)
        }
        Applied::ServiceManifest { created } => e.detail("created", yes(*created)),
        Applied::ServiceRemoved { grants, tokens } => {
            let e = e.detail("grants", grants);
            if *tokens > 0 {
                e.detail("tokens_revoked", tokens)
            } else {
                e
            }
        }
        Applied::TierDeclared { created, changed } => {
            unchanged(e.detail("created", yes(*created)), *changed)
        }
        Applied::TierRemoved | Applied::MetaRemoved | Applied::StrategyRemoved => e,
        Applied::MetaSet { created, changed } => {
            unchanged(e.detail("created", yes(*created)), *changed)
        }
        Applied::StrategySet {
            created,
            replaced,
            changed,
        } => unchanged(
            e.detail("created", yes(*created))
                .detail("replaced", yes(*replaced)),
            *changed,
        ),
        Applied::PresentSet { changed } | Applied::ServiceTiersSet { changed } => {
            unchanged(e, *changed)
        }
        Applied::Frozen { already, .. } | Applied::Suspended { already, .. } => {
            unchanged(e, !already)
        }
        Applied::Unfrozen { was_frozen } => unchanged(e, *was_frozen),
        Applied::Resumed { was_suspended } => unchanged(e, *was_suspended),
        // The token's ID, never the token.
        Applied::TokenCreated { token, expires } => {
            let e = e.target("token", token.id());
            match expires {
                Some(t) => e.detail("expires", audit::format_ms(t.saturating_mul(1000))),
                None => e,
            }
        }
        Applied::TokenRevoked { already } => unchanged(e, !already),
        Applied::RevokedAll { services } => {
            // Each service it was taken from is a revoke of its own, as each value of a
            // catalog apply is a set: a list in one field would outgrow a record.
            if let Some((_, name)) = change.target().into_iter().find(|(p, _)| *p == "secret") {
                for service in services {
                    more.push(
                        by(actor, "revoke")
                            .target("secret", name)
                            .target("service", service.clone())
                            .detail("by", "revoke-all"),
                    );
                }
            }
            unchanged(e.detail("services", services.len()), !services.is_empty())
        }
        Applied::BundleIssued { bundle, replaced } => {
            let mut e = e.detail("bundle", bundle.bundle);
            if let Some(r) = replaced {
                e = e.detail("replaced", r);
            }
            // Which value went where, by its keyed fingerprint's first bytes: enough to
            // match the fingerprint `bundle identify` finds, never the value.
            for m in planned {
                if let Mutation::PutIssued(Issued::Value(_, secret, value)) = m {
                    e = e.detail(
                        &format!("fingerprint.{secret}"),
                        audit::hex(&value.fingerprint[..8]),
                    );
                }
            }
            e
        }
        Applied::CatalogApplied { diff, values } => {
            let e = e
                .detail("tiers", diff.tiers.len())
                .detail("services", diff.services.len())
                .detail("secrets", diff.secrets.len())
                .detail("values", values);
            // Each value the apply stored is a set of its own.
            for m in planned {
                if let Mutation::PutSecret(name, rec) = m {
                    more.push(
                        by(actor, "set")
                            .target("secret", name.clone())
                            .version(rec.version())
                            .detail("by", "catalog apply"),
                    );
                }
            }
            e
        }
    };
    let mut out = vec![e];
    out.extend(more);
    out
}

/// The event of a change the vault refused.
pub(super) fn refused(change: &Change<'_>, error: &Error, actor: &Actor, of: usize) -> Event {
    let mut e = by(actor, change.action());
    for (part, name) in change.target() {
        e = e.target(part, name);
    }
    let mut why = format!("refused: {error}");
    if why.len() > MAX_RESULT_LEN {
        let mut cut = MAX_RESULT_LEN;
        while !why.is_char_boundary(cut) {
            cut -= 1;
        }
        why.truncate(cut);
    }
    let e = e.result(why);
    if of > 1 {
        e.detail("transaction_of", of)
    } else {
        e
    }
}

/// An event of the vault's own (`rotate-key`, `expire`, ...), made by `actor`.
pub(super) fn own(actor: &Actor, action: &str) -> Event {
    by(actor, action)
}

impl Vault {
    /// Now, in unix milliseconds (the tests' clock, if they set one).
    pub(super) fn clock_ms(&self) -> u64 {
        #[cfg(test)]
        if let Some(t) = *self.clock.lock().unwrap_or_else(PoisonError::into_inner) {
            return t.saturating_mul(1000);
        }
        now_ms()
    }

    /// With the writer held: makes the batch's audit events into records, each after its
    /// chain's head as memory holds it (the store's, at the batch's base), signed (every
    /// record of `changes`; the last of the batch in other chains), and puts the chains'
    /// new heads after them. A batch without events is left alone.
    pub(super) fn chain_audit(&self, batch: &mut Vec<Mutation>) -> Result<()> {
        if !batch.iter().any(|m| matches!(m, Mutation::Audit(..))) {
            return Ok(());
        }
        let state = self.state();
        let keys = state.audit.clone().ok_or(Error::Corrupt {
            what: "the audit key is not loaded",
        })?;
        let mut heads = state.meta.audit_heads.clone();
        drop(state);
        let now = self.clock_ms();
        // Where each chain's last record of the batch is, with its signed bytes.
        let mut last: HashMap<String, (usize, Vec<u8>)> = HashMap::new();
        for (i, m) in batch.iter_mut().enumerate() {
            let Mutation::Audit(chain, event) = m else {
                continue;
            };
            let event = std::mem::take(&mut **event);
            let record = event.chained(chain, heads.get(chain.as_str()), now);
            let bytes = record.signed_bytes();
            let hash = audit::hash_of(&bytes);
            let signed = (chain == CHANGES).then(|| keys.sign(&bytes));
            let head = Head {
                seq: record.seq,
                hash,
                time_ms: record.time_ms,
            };
            match heads.get_mut(chain.as_str()) {
                Some(h) => *h = head,
                None => {
                    heads.insert(chain.clone(), head);
                }
            }
            let stored = audit::stored(&bytes, signed.as_ref());
            if chain != CHANGES {
                match last.get_mut(chain.as_str()) {
                    Some(at) => *at = (i, bytes),
                    None => {
                        last.insert(chain.clone(), (i, bytes));
                    }
                }
            }
            *m = Mutation::PutAudit(std::mem::take(chain), record.seq, stored);
        }
        // The last record of each other chain is signed: it vouches for the batch.
        for (i, bytes) in last.into_values() {
            if let Mutation::PutAudit(_, _, stored) = &mut batch[i] {
                *stored = audit::stored(&bytes, Some(&keys.sign(&bytes)));
            }
        }
        batch.push(Mutation::SetAuditHeads(heads));
        Ok(())
    }

    /// At open, for a store whose audit has not started (new, or of an older format):
    /// records the audit's public key and a first record saying so, made by this process.
    /// `from` is the format the store was upgraded from, if it was.
    pub(super) fn start_audit(&self, from: Option<u32>) -> Result<()> {
        let (public, started) = {
            let state = self.state();
            let keys = state.audit.as_ref().ok_or(Error::Corrupt {
                what: "the audit key is not loaded",
            })?;
            (keys.public(), state.meta.audit_key.is_some())
        };
        if started {
            return Ok(());
        }
        let _writer = self.writer()?;
        let actor = Actor::local();
        let mut event = own(&actor, "audit-start").detail("public_key", public);
        event = match from {
            Some(format) => event.detail("upgraded_from_format", format),
            None => event,
        };
        self.commit(&actor, |_| {
            Ok(vec![
                Mutation::SetAuditKey(public),
                Mutation::Audit(CHANGES.into(), Box::new(event.clone())),
            ])
        })?;
        info!(public_key = %public, "the audit trail started");
        Ok(())
    }

    /// Records that `by` opened `opened` (from `slot`) through `service`'s view: queued
    /// for the flusher, never waiting on the store. Past the queue's bound the open is
    /// counted, and the next batch records how many were not recorded.
    pub fn record_open(&self, by: &Actor, service: &str, opened: &OpenedSecret, slot: VersionSlot) {
        if !self.opens.recording.load(Ordering::Relaxed) {
            return;
        }
        self.opens.push(QueuedOpen {
            time_ms: self.clock_ms(),
            principal: by.principal().clone(),
            uid: by.uid(),
            service: service.to_owned(),
            secret: opened.name.clone(),
            version: opened.version(),
            slot,
        });
    }

    /// How many opens may wait for the flusher (at least 1); past it they are counted.
    pub fn set_open_queue_bound(&self, bound: usize) {
        self.opens.bound.store(bound.max(1), Ordering::Relaxed);
    }

    /// Stops recording opens: only a benchmark's baseline calls this, to measure what
    /// recording costs on the same server otherwise (the server never does, and no option
    /// reaches it).
    #[doc(hidden)]
    pub fn disable_open_recording_for_benchmarks(&self) {
        self.opens.recording.store(false, Ordering::Relaxed);
    }

    /// Commits the opens queued so far, now. Returns how many it recorded.
    ///
    /// # Errors
    /// The store's; the opens are then counted as not recorded, and the next batch says
    /// so.
    pub fn flush_opens(&self) -> Result<usize> {
        let mut recorded = 0;
        loop {
            let (opens, lost) = self.opens.take_now();
            if opens.is_empty() && lost.count == 0 {
                return Ok(recorded);
            }
            recorded += self.commit_opens(opens, lost)?;
        }
    }

    /// The flusher's commit of one batch.
    fn commit_opens(&self, opens: Vec<QueuedOpen>, lost: Lost) -> Result<usize> {
        if opens.is_empty() && lost.count == 0 {
            return Ok(0);
        }
        let n = opens.len();
        let (first, last) = opens.iter().fold((u64::MAX, 0), |(lo, hi), o| {
            (lo.min(o.time_ms), hi.max(o.time_ms))
        });
        let result = self.writer().and_then(|_writer| {
            self.commit(&Actor::local(), |state| {
                let mut batch = Vec::with_capacity(n * 2 + 2);
                if lost.count > 0 {
                    let event = own(&Actor::local(), OPENS_NOT_RECORDED)
                        .detail("count", lost.count)
                        .detail("from", audit::format_ms(lost.from))
                        .detail("to", audit::format_ms(lost.to))
                        .result("ok");
                    batch.push(Mutation::Audit(OPENS.into(), Box::new(event)));
                }
                let mut highest: BTreeMap<(&str, &str), u64> = BTreeMap::new();
                // The same open by the same principal and uid, of the same version through
                // the same view, is one record of the batch, with how many there were and
                // the first and last time: a service that re-reads its secret at every
                // request makes one record a batch, not thousands.
                let mut groups: Vec<(&QueuedOpen, u64, u64)> = Vec::new();
                let mut index: HashMap<OpenKey<'_>, usize> = HashMap::new();
                for o in &opens {
                    let key = (
                        &o.principal,
                        o.uid,
                        &*o.service,
                        &*o.secret,
                        o.version,
                        o.slot.suffix(),
                    );
                    match index.get(&key) {
                        Some(&i) => {
                            let g = &mut groups[i];
                            g.1 += 1;
                            g.2 = g.2.max(o.time_ms);
                        }
                        None => {
                            index.insert(key, groups.len());
                            groups.push((o, 1, o.time_ms));
                        }
                    }
                    let h = highest.entry((&o.secret, &o.service)).or_insert(0);
                    *h = (*h).max(o.version);
                }
                for (o, count, last) in groups {
                    let mut event = Event {
                        time_ms: Some(o.time_ms),
                        ..Event::new(principal_text(&o.principal), o.uid, "open")
                    }
                    .target("secret", o.secret.clone())
                    .target("service", o.service.clone())
                    .version(o.version);
                    if o.slot != VersionSlot::Current {
                        event = event.detail("slot", o.slot.suffix().trim_start_matches('@'));
                    }
                    if count > 1 {
                        event = event
                            .detail("count", count)
                            .detail("last", audit::format_ms(last));
                    }
                    batch.push(Mutation::Audit(OPENS.into(), Box::new(event)));
                }
                batch.extend(opened_updates(state, highest));
                Ok(batch)
            })
        });
        match result {
            Ok(()) => {
                debug!(opens = n, lost = lost.count, "recorded opens");
                if lost.count > 0 {
                    warn!(count = lost.count, "recorded that opens were not recorded");
                }
                Ok(n)
            }
            Err(e) => {
                // Counted, so that the next batch that commits says so.
                let mut q = self.opens.lock();
                if n > 0 {
                    q.lose(n as u64, first, last);
                }
                if lost.count > 0 {
                    q.lose(lost.count, lost.from, lost.to);
                }
                Err(e)
            }
        }
    }

    /// The audit's public key and each chain's last record.
    pub fn audit_heads(&self) -> AuditHeads {
        let state = self.state();
        AuditHeads {
            public_key: state.meta.audit_key,
            heads: state.meta.audit_heads.clone(),
        }
    }

    /// Up to `limit` (at most [`MAX_READ`]) records of `chain` from record `from` on,
    /// each with its hash, in order.
    ///
    /// # Errors
    /// The store's; [`Error::Corrupt`] for a row that is not a record.
    pub fn audit_read(&self, chain: &str, from: u64, limit: usize) -> Result<Vec<(Record, Hash)>> {
        let limit = limit.min(MAX_READ);
        if limit == 0 || chain.contains('/') {
            return Ok(Vec::new());
        }
        let lo = audit_row(chain, from.max(1)).key;
        // '0' follows '/': every key of the chain is below it.
        let hi = format!("{chain}0");
        let rows = self.backend.range(Table::Audit, &lo, &hi, limit)?;
        rows.into_iter()
            .map(|(key, bytes)| {
                let (record, hash) = Record::from_stored(&bytes).map_err(|e| {
                    warn!(row = %key, error = %e, "an audit row is not a record");
                    Error::Corrupt {
                        what: "an audit row is not a record",
                    }
                })?;
                if audit_row(&record.chain, record.seq).key != key {
                    warn!(row = %key, "an audit record is stored under another record's row");
                    return Err(Error::Corrupt {
                        what: "an audit record is stored under another record's row",
                    });
                }
                Ok((record, hash))
            })
            .collect()
    }

    /// Verifies the whole trail with the audit's public key: every signature and link of
    /// every chain, up to the heads the store record holds (so that rows removed from the
    /// end are caught too), and the heads in `expected` (recorded elsewhere). Records
    /// committed meanwhile are left for the next verification.
    ///
    /// # Errors
    /// The store's. The first bad record is `Ok(Err(..))`.
    pub fn audit_verify(
        &self,
        expected: &[audit::Expected],
    ) -> Result<std::result::Result<audit::Summary, audit::Bad>> {
        let AuditHeads { public_key, heads } = self.audit_heads();
        let Some(key) = public_key else {
            return Ok(Ok(audit::Summary::default()));
        };
        let mut v = audit::Verifier::new(key);
        for (chain, head) in &heads {
            v.expect(audit::Expected {
                chain: chain.clone(),
                seq: head.seq,
                hash: head.hash,
            });
        }
        for e in expected {
            if heads.get(&e.chain).is_some_and(|h| h.seq < e.seq) {
                return Ok(Err(audit::Bad {
                    chain: e.chain.clone(),
                    seq: None,
                    line: None,
                    what: format!(
                        "ends at record {}, before the head given (record {}): its tail was cut off",
                        heads[&e.chain].seq, e.seq
                    ),
                }));
            }
            if !heads.contains_key(&e.chain) {
                return Ok(Err(audit::Bad {
                    chain: e.chain.clone(),
                    seq: None,
                    line: None,
                    what: format!("has no record, but the head given is record {}", e.seq),
                }));
            }
            v.expect(e.clone());
        }
        for (chain, head) in &heads {
            let mut next = 1;
            while next <= head.seq {
                let page = self.audit_read(chain, next, MAX_READ)?;
                if page.is_empty() {
                    break;
                }
                for (record, hash) in &page {
                    if record.seq > head.seq {
                        break;
                    }
                    if let Err(bad) = v.push_hashed(record, hash, None, None) {
                        return Ok(Err(bad));
                    }
                    next = record.seq + 1;
                }
                if page.last().is_some_and(|(r, _)| r.seq >= head.seq) {
                    break;
                }
            }
        }
        Ok(v.finish())
    }

    /// A reader of every record of every chain, merged by time, up to the heads as they
    /// are now: what `secrets/audit` serves.
    pub fn audit_reader(self: &Arc<Vault>) -> AuditReader {
        let heads = self.audit_heads().heads;
        AuditReader {
            vault: Arc::clone(self),
            chains: heads
                .into_iter()
                .map(|(chain, head)| Cursor {
                    chain,
                    next: 1,
                    last: head.seq,
                    page: std::collections::VecDeque::new(),
                })
                .collect(),
        }
    }

    /// The highest version of `name` each service has opened (of the opens recorded so
    /// far), by service.
    pub fn opened(&self, name: &str) -> BTreeMap<String, u64> {
        self.state().opened.get(name).cloned().unwrap_or_default()
    }
}

/// The `opened` rows a batch of opens changes: a higher version than the one recorded,
/// for a secret and a service that still exist.
fn opened_updates(
    state: &State,
    highest: BTreeMap<(&str, &str), u64>,
) -> impl Iterator<Item = Mutation> {
    let mut out = Vec::new();
    for ((secret, service), version) in highest {
        if !state.secrets.contains_key(secret) || !state.services.contains_key(service) {
            continue;
        }
        let known = state
            .opened
            .get(secret)
            .and_then(|by| by.get(service))
            .copied();
        if known.is_none_or(|k| k < version) {
            out.push(Mutation::PutOpened(
                secret.to_owned(),
                service.to_owned(),
                version,
            ));
        }
    }
    out.into_iter()
}

fn principal_text(p: &Principal) -> String {
    match p {
        Principal::Admin => "admin".to_owned(),
        Principal::Service(name) => format!("service {name}"),
        Principal::Local => "local".to_owned(),
    }
}

/// One chain's place in an [`AuditReader`].
struct Cursor {
    chain: String,
    next: u64,
    last: u64,
    page: std::collections::VecDeque<(Record, Hash)>,
}

/// Streams the trail as JSON lines, every chain merged by time (records of one chain in
/// their order), a page of each chain at a time: a log of a million records is never
/// rendered whole.
pub struct AuditReader {
    vault: Arc<Vault>,
    chains: Vec<Cursor>,
}

/// How many records of a chain a reader reads at once.
const READER_PAGE: usize = 512;

impl AuditReader {
    /// Starts again from each chain's first record (up to the same heads).
    pub fn restart(&mut self) {
        for c in &mut self.chains {
            c.next = 1;
            c.page.clear();
        }
    }

    /// The next records, as JSON lines (each ending in `\n`), about `bytes` of them (at
    /// least one record, unless the trail is done: then nothing).
    ///
    /// # Errors
    /// The store's.
    pub fn next_lines(&mut self, bytes: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        while out.len() < bytes {
            for c in &mut self.chains {
                if c.page.is_empty() && c.next <= c.last {
                    let want = READER_PAGE
                        .min(usize::try_from(c.last - c.next + 1).unwrap_or(READER_PAGE));
                    let page = self.vault.audit_read(&c.chain, c.next, want)?;
                    if page.is_empty() {
                        // Fewer rows than the head said: the verifier says why.
                        c.next = c.last + 1;
                    }
                    for entry in page {
                        if entry.0.seq > c.last {
                            c.next = c.last + 1;
                            break;
                        }
                        c.next = entry.0.seq + 1;
                        c.page.push_back(entry);
                    }
                }
            }
            let Some(pick) = self
                .chains
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.page.front().map(|(r, _)| (r.time_ms, i)))
                .min()
                .map(|(_, i)| i)
            else {
                break;
            };
            if let Some((record, hash)) = self.chains[pick].page.pop_front() {
                out.extend_from_slice(record.to_json_with(&hash).as_bytes());
                out.push(b'\n');
            }
        }
        Ok(out)
    }
}

/// Commits queued opens in batches, on a thread of its own, until stopped (and then once
/// more): see the module documentation.
pub struct OpenFlusher {
    vault: Arc<Vault>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OpenFlusher {
    /// Starts flushing `vault`'s opens.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start(vault: Arc<Vault>) -> std::io::Result<OpenFlusher> {
        let v = Arc::clone(&vault);
        let thread = std::thread::Builder::new()
            .name("audit-opens".into())
            .spawn(move || {
                while let Some((opens, lost)) = v.opens.next_batch() {
                    if let Err(e) = v.commit_opens(opens, lost) {
                        warn!(error = %e, "could not record opens; they are counted as not recorded");
                    }
                }
            })?;
        Ok(OpenFlusher {
            vault,
            thread: Some(thread),
        })
    }

    /// Stops the flusher once what is queued is recorded.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.vault.opens.stop();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            warn!("the opens' flusher panicked");
        }
    }
}

impl Drop for OpenFlusher {
    fn drop(&mut self) {
        self.halt();
    }
}
