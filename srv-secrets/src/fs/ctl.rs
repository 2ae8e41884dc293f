//! `/secrets/ctl`: commands in, results out.
//!
//! Writes are parsed by the `ctl` crate ([`CtlStream`]: lines, `begin`/`commit`
//! transactions) and applied to the vault as each completes. Each command, or each whole
//! transaction, is one vault transaction: it applies fully or not at all, and it is durable
//! before the Twrite (or Tclunk) that completed it is answered.
//!
//! The deployment catalog's commands (`tier`, `meta`, `strategy`, `plan`, `catalog
//! apply`, ...) are made into the catalog's types in `ctl/decl.rs`; queries among them (a
//! plan, the lint, an export, a dry run) are answered from the vault with a body. The
//! commands of a secret's versions (`stage`, `promote`, `discard`, `rollback`, `retire`,
//! `history`, `stale`, `grant ... expires`) are in `ctl/versions.rs`; break-glass
//! (`freeze`, `unfreeze`, `revoke-all`, `service ... suspend|resume`, `matrix`,
//! `holders`) is in `ctl/breakglass.rs`; the audit trail's queries (`audit head`, `audit
//! since`, `audit verify`) in `ctl/audit.rs`; API tokens (`token create`, `token revoke`,
//! `token list`) in `ctl/tokens.rs`.
//!
//! Every change is made by the fid's actor (the admin, over the connection's uid), with
//! the reason a `reason TEXT` before it gave, if any.
//!
//! Reads return results, the Plan 9 way (`/net/cs`): on a fid that wrote, one [`Reply`]
//! per command it wrote, each read taking the next bytes; on a fid that wrote nothing, the
//! last [`RECENT`] results of its attach, so that `echo ... > ctl; cat ctl` works from a
//! shell whose every command opens the file anew.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex as SyncMutex, MutexGuard};

use ctl::{Answer, Command, CtlStream, Parsed, Reply, Step, Transaction};
use secrets::{Actor, Applied, Change, ChangeError, Error as VaultError, Vault};
use tokio::sync::Mutex;
use tracing::{error, info, warn};
use zeroize::Zeroizing;

mod audit;
mod breakglass;
mod decl;
mod tokens;
mod versions;

use decl::Prepared;

/// How many results an attach remembers for fids that wrote nothing.
pub const RECENT: usize = 32;

/// How many bytes of results a fid keeps unread; past it the oldest are dropped (and the
/// reader told how many). Far above any answer (a bundle, a plan), so that only a client
/// that writes without ever reading loses any.
const MAX_UNREAD: usize = 16 << 20;

/// The results of one attach's ctl fids, newest last, as one-line summaries (an answer's
/// body is for the fid that asked, nowhere else).
#[derive(Default)]
pub struct Recent(SyncMutex<VecDeque<Reply>>);

impl Recent {
    fn push(&self, reply: &Reply) {
        let mut ring = lock(&self.0);
        if ring.len() == RECENT {
            ring.pop_front();
        }
        ring.push_back(reply.summary());
    }

    fn snapshot(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        for reply in lock(&self.0).iter() {
            reply.encode(&mut out);
        }
        out
    }
}

fn lock<T>(m: &SyncMutex<T>) -> MutexGuard<'_, T> {
    // Each guarded value is whole after any single operation on it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The results a fid has not read yet.
#[derive(Default)]
struct Unread {
    /// Encoded replies; the first is read from `offset` on.
    replies: VecDeque<Zeroizing<Vec<u8>>>,
    offset: usize,
    bytes: usize,
    /// Replies dropped unread since the last read.
    lost: usize,
}

impl Unread {
    fn push(&mut self, reply: &Reply) {
        let mut bytes = Zeroizing::new(Vec::new());
        reply.encode(&mut bytes);
        self.bytes += bytes.len();
        self.replies.push_back(bytes);
        while self.bytes > MAX_UNREAD && self.replies.len() > 1 {
            if let Some(old) = self.replies.pop_front() {
                self.bytes -= old.len() - self.offset;
                self.offset = 0;
                self.lost += 1;
            }
        }
    }

    /// Takes up to `count` bytes.
    fn take(&mut self, count: usize) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::new());
        if self.lost > 0 && self.offset == 0 {
            // Queued as a reply of its own, ahead of the rest, so that a read smaller than
            // it takes it in pieces like any other.
            let mut notice = Zeroizing::new(Vec::new());
            Reply::Err(format!(
                "ctl: {} results were dropped, not read in time",
                self.lost
            ))
            .encode(&mut notice);
            self.bytes += notice.len();
            self.replies.push_front(notice);
            self.lost = 0;
        }
        while out.len() < count {
            let Some(front) = self.replies.front() else {
                break;
            };
            let n = (count - out.len()).min(front.len() - self.offset);
            out.extend_from_slice(&front[self.offset..self.offset + n]);
            self.offset += n;
            self.bytes -= n;
            if self.offset == front.len() {
                self.replies.pop_front();
                self.offset = 0;
            }
        }
        out
    }
}

/// What a read of the fid returns.
enum Results {
    /// Nothing read or written yet.
    None,
    /// The fid wrote: its own results, consumed as they are read.
    Own(Unread),
    /// The fid wrote nothing: the attach's recent results as they were at the first read,
    /// read by offset like a file.
    Recent(Zeroizing<Vec<u8>>),
}

/// One open ctl fid.
pub struct CtlFid {
    stream: Mutex<CtlStream>,
    results: SyncMutex<Results>,
    wrote: AtomicBool,
    recent: Arc<Recent>,
    /// Who opened it: the maker of every change written to it.
    actor: Actor,
}

impl CtlFid {
    /// A fid opened by `actor`, whose results also go to `recent`.
    pub fn new(recent: Arc<Recent>, actor: Actor) -> CtlFid {
        CtlFid {
            stream: Mutex::new(CtlStream::new()),
            results: SyncMutex::new(Results::None),
            wrote: AtomicBool::new(false),
            recent,
            actor,
        }
    }

    /// A Twrite: buffers the bytes and applies every command they complete, in order. At
    /// the first refused command the rest of this write is dropped and its error returned.
    pub async fn write(&self, vault: &Arc<Vault>, data: &[u8]) -> Result<(), String> {
        self.wrote.store(true, Ordering::Release);
        let mut stream = self.stream.lock().await;
        stream.push(data);
        self.run(&mut stream, vault, CtlStream::next_step).await
    }

    /// A Tclunk: what is left is the last command, which the clunk completes; a
    /// transaction still open is dropped.
    pub async fn finish(&self, vault: &Arc<Vault>) -> Result<(), String> {
        let mut stream = self.stream.lock().await;
        self.run(&mut stream, vault, CtlStream::finish).await
    }

    /// The connection ended without a clunk: a half-written command, or an open
    /// transaction, must not apply.
    pub async fn abandon(&self) {
        self.stream.lock().await.abandon();
    }

    /// A Tread: the next results (see the module documentation).
    pub fn read(&self, offset: u64, count: u32) -> Zeroizing<Vec<u8>> {
        let mut results = lock(&self.results);
        if matches!(*results, Results::None) {
            *results = if self.wrote.load(Ordering::Acquire) {
                Results::Own(Unread::default())
            } else {
                Results::Recent(self.recent.snapshot())
            };
        }
        match &mut *results {
            Results::Own(unread) => unread.take(count as usize),
            Results::Recent(bytes) => {
                let start = offset.min(bytes.len() as u64) as usize;
                let end = start.saturating_add(count as usize).min(bytes.len());
                Zeroizing::new(bytes[start..end].to_vec())
            }
            Results::None => Zeroizing::new(Vec::new()),
        }
    }

    fn record(&self, reply: &Reply) {
        self.recent.push(reply);
        let mut results = lock(&self.results);
        if !matches!(*results, Results::Own(_)) {
            *results = Results::Own(Unread::default());
        }
        if let Results::Own(unread) = &mut *results {
            unread.push(reply);
        }
    }

    /// Carries out the steps `next` takes from the stream until it has none, or one is
    /// refused; then the rest of the pending bytes are dropped and the refusal returned.
    async fn run(
        &self,
        stream: &mut CtlStream,
        vault: &Arc<Vault>,
        next: fn(&mut CtlStream) -> Option<Step>,
    ) -> Result<(), String> {
        while let Some(step) = next(stream) {
            let replies = match step {
                Step::Apply(parsed, reason) => {
                    let actor = with_reason(&self.actor, reason);
                    vec![apply_parsed(vault, &actor, parsed).await]
                }
                Step::Commit(mut txn) => {
                    let actor = with_reason(&self.actor, txn.reason.take());
                    commit(vault, &actor, txn).await
                }
                Step::Answer(reply) => vec![reply],
                Step::Refuse(e) => vec![Reply::Err(e)],
            };
            for reply in &replies {
                self.record(reply);
            }
            if let Some(Reply::Err(e)) = replies.last() {
                stream.discard_pending();
                return Err(e.clone());
            }
        }
        Ok(())
    }
}

/// `actor`, saying why if a reason was given.
fn with_reason(actor: &Actor, reason: Option<String>) -> Actor {
    match reason {
        Some(r) => actor.clone().with_reason(r),
        None => actor.clone(),
    }
}

/// What a client sees for a vault error: the command's line and verb are added by the
/// caller, and these texts are ours; names come from the store, never a value. With that
/// prefix each fits [`ctl::MAX_ERROR_LEN`], what a Plan 9 client keeps of an error.
fn explain(e: &VaultError) -> String {
    if let Some(text) = decl::explain(e)
        .or_else(|| versions::explain(e))
        .or_else(|| breakglass::explain(e))
        .or_else(|| tokens::explain(e))
    {
        return text;
    }
    match e {
        VaultError::NoSuchSecret => "no such secret; see the names with: deploy secret list".into(),
        VaultError::NoSuchService => {
            "no such service; add it with: deploy service add NAME --uid UID".into()
        }
        VaultError::UidInUse { uid, service } => {
            let named =
                format!("uid {uid} is already service {service}'s; remove or remap it first");
            // A long service name would not fit: then it is left to `deploy service list`.
            if named.len() + LONGEST_PREFIX <= ctl::MAX_ERROR_LEN {
                named
            } else {
                format!("uid {uid} is already another service's; see: deploy service list")
            }
        }
        VaultError::UidIsAdmin { uid, admin_uid } if uid == admin_uid => {
            format!("uid {uid} ran init, so it is the admin (as root is); pick another uid")
        }
        VaultError::UidIsAdmin { uid, admin_uid } => {
            format!("uid {uid} is root, the admin (as uid {admin_uid} is); pick another uid")
        }
        VaultError::ReservedName
        | VaultError::InvalidName { .. }
        | VaultError::TooLarge { .. }
        | VaultError::Manifest { .. } => e.to_string(),
        // The store failures that say how far they got: the client learns that much, the
        // cause (paths, I/O errors) goes to the log.
        VaultError::CommitUncertain { .. } => {
            error!(error = %e, "ctl command failed in the store, yet took effect");
            "the store reported an error, yet the change took effect; see the server log".into()
        }
        VaultError::RotationPending { key, .. } => {
            error!(error = %e, "key rotation stopped part-way");
            format!(
                "rotation to key {key} stopped part-way and is pending; rerun rotate-key; see \
                 the server log"
            )
        }
        VaultError::KeyReadOnly { .. } => {
            warn!(error = %e, "refused: the key file is read-only");
            "the key file is a read-only systemd credential; see docs/operations.md to rotate it"
                .into()
        }
        VaultError::RotationCleanup { key, .. } => {
            error!(error = %e, "key rotation done, but the old key is still in the key file");
            format!(
                "rotated to key {key}; the old key leaves the key file at the next start; see \
                 the server log"
            )
        }
        other => {
            // Paths and causes are for the operator's log, not the client. Whether anything
            // changed is not known here, so this does not say.
            error!(error = %other, "ctl command failed in the store");
            "the store failed; see the server log".into()
        }
    }
}

/// The longest `ctl: line K: VERB: ` an explanation is given (five-digit lines).
const LONGEST_PREFIX: usize = "ctl: line 99999: rotate-key: ".len();

/// The vault change a ctl command asks for, its fields in the vault's and the catalog's
/// types.
///
/// # Errors
/// What is wrong with a field (a template, a class), in the ctl error's words; or that
/// the command is no change.
fn prepare(command: &Command) -> Result<Prepared<'_>, String> {
    if let Some(prepared) = versions::prepare(command) {
        return prepared;
    }
    if let Some(prepared) = breakglass::prepare(command) {
        return Ok(prepared);
    }
    if let Some(prepared) = tokens::prepare(command) {
        return Ok(prepared);
    }
    Ok(Prepared::Direct(match command {
        Command::Set { name, value } => Change::Set {
            name,
            value: value.expose(),
        },
        Command::Delete { name } => Change::Delete { name },
        Command::Revoke { service, name } => Change::Revoke { service, name },
        Command::ServiceUid { service, uid } => Change::ServiceUid { service, uid: *uid },
        Command::ServiceManifest { service, manifest } => Change::ServiceManifest {
            service,
            manifest: manifest.expose(),
        },
        Command::ServiceRemove { service } => Change::ServiceRemove { service },
        Command::Catalog(c) => return decl::prepare(c),
        _ => return Err("this command is no change to the store".into()),
    }))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The result line of a command the vault applied (and the log line, without values).
fn answer(command: &Command, applied: Applied) -> Reply {
    if let Some(answer) = versions::answer(command, &applied)
        .or_else(|| breakglass::answer(command, &applied))
        .or_else(|| tokens::answer(command, &applied))
    {
        return Reply::Ok(answer);
    }
    let answer = Answer::new(command.verb());
    let answer = match (command, applied) {
        (Command::Set { name, .. }, Applied::Set { version }) => {
            info!(secret = %name, version, "set");
            answer.word(name).field("version", version)
        }
        (Command::Delete { name }, Applied::Deleted { grants }) => {
            info!(secret = %name, grants, "deleted");
            answer.word(name).field("grants", grants)
        }
        (Command::Grant { service, name, .. }, Applied::Granted { already, expires }) => {
            info!(%service, secret = %name, already, expires = ?expires, "granted");
            let answer = answer
                .word(service)
                .word(name)
                .field("already", yes(already));
            match expires {
                Some(t) => answer.field("expires", t),
                None => answer,
            }
        }
        (Command::Revoke { service, name }, Applied::Revoked { was_granted }) => {
            info!(%service, secret = %name, was_granted, "revoked");
            answer
                .word(service)
                .word(name)
                .field("was_granted", yes(was_granted))
        }
        (Command::ServiceUid { service, uid }, Applied::ServiceUid { created, previous }) => {
            info!(%service, uid, created, "service uid set");
            let previous = previous.map_or_else(|| "none".to_string(), |u| u.to_string());
            answer
                .word(service)
                .field("uid", uid)
                .field("created", yes(created))
                .field("previous", previous)
        }
        (Command::ServiceManifest { service, .. }, Applied::ServiceManifest { created }) => {
            info!(%service, created, "service manifest set");
            answer
                .word(service)
                .word("manifest")
                .field("created", yes(created))
        }
        (Command::ServiceRemove { service }, Applied::ServiceRemoved { grants, tokens }) => {
            info!(%service, grants, tokens, "service removed");
            let answer = answer.word(service).word("remove").field("grants", grants);
            // Its tokens went with it: said only when it had some.
            if tokens > 0 {
                answer.field("tokens_revoked", tokens)
            } else {
                answer
            }
        }
        (Command::Catalog(c), applied) => decl::answer(c, applied),
        (command, applied) => {
            // The vault answers each change with its own kind; anything else is a bug here.
            error!(
                verb = command.verb(),
                ?applied,
                "unexpected outcome of a ctl command"
            );
            answer
        }
    };
    Reply::Ok(answer)
}

/// Applies one command on tokio's blocking pool (vault calls block on the store).
async fn apply_parsed(vault: &Arc<Vault>, actor: &Actor, parsed: Parsed) -> Reply {
    let (vault, actor) = (vault.clone(), actor.clone());
    blocking(move || {
        let reply = match &parsed.command {
            Command::RotateKey => rotate_key(&vault, &actor).map_err(|e| explain(&e.error)),
            Command::Catalog(c) if parsed.command.is_query() => {
                decl::query(&vault, c).map(Reply::Ok)
            }
            command if command.is_query() => {
                match versions::query(&vault, command)
                    .or_else(|| breakglass::query(&vault, command))
                    .or_else(|| audit::query(&vault, command))
                    .or_else(|| tokens::query(&vault, command))
                {
                    Some(answered) => answered.map(Reply::Ok),
                    None => Err("this command is no query".into()),
                }
            }
            command => prepare(command).and_then(|prepared| {
                vault
                    .apply(&actor, &[prepared.change()])
                    .map(|mut applied| answer(command, applied.remove(0)))
                    .map_err(|e| explain(&e.error))
            }),
        };
        reply.unwrap_or_else(|text| Reply::Err(parsed.error(text)))
    })
    .await
}

fn rotate_key(vault: &Vault, actor: &Actor) -> Result<Reply, ChangeError> {
    let report = vault
        .rotate_key_by(actor, &|_| {})
        .map_err(|error| ChangeError { index: 0, error })?;
    info!(
        old_key = report.old_key,
        new_key = report.new_key,
        secrets = report.reencrypted,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "key rotated"
    );
    Ok(Reply::Ok(
        Answer::new(Command::RotateKey.verb())
            .field("from", report.old_key)
            .field("to", report.new_key)
            .field("secrets", report.reencrypted),
    ))
}

/// Applies a transaction's commands as one vault transaction: every command's result and
/// then the commit's, or the error of the command that stopped it (nothing applied).
async fn commit(vault: &Arc<Vault>, actor: &Actor, txn: Transaction) -> Vec<Reply> {
    let (vault, actor) = (vault.clone(), actor.clone());
    blocking(move || {
        let mut prepared = Vec::with_capacity(txn.commands.len());
        for p in &txn.commands {
            match prepare(&p.command) {
                Ok(one) => prepared.push(one),
                Err(text) => return vec![Reply::Err(p.error(text))],
            }
        }
        let changes: Vec<Change<'_>> = prepared.iter().map(Prepared::change).collect();
        match vault.apply(&actor, &changes) {
            Ok(applied) => {
                let mut replies: Vec<Reply> = txn
                    .commands
                    .iter()
                    .zip(applied)
                    .map(|(p, a)| answer(&p.command, a))
                    .collect();
                info!(commands = txn.commands.len(), "transaction committed");
                replies.push(txn.committed());
                replies
            }
            Err(e) => {
                let failed = txn.commands.get(e.index).or(txn.commands.last());
                let text = match failed {
                    Some(p) => p.error(explain(&e.error)),
                    None => ctl::command_error(txn.commit_line, "commit", explain(&e.error)),
                };
                vec![Reply::Err(text)]
            }
        }
    })
    .await
}

/// Runs `f` on tokio's blocking pool; a panic there becomes an error result.
async fn blocking<T>(f: impl FnOnce() -> T + Send + 'static) -> T
where
    T: From<FailedInside> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "ctl command task failed");
            T::from(FailedInside)
        }
    }
}

/// A ctl command's task panicked.
struct FailedInside;

const FAILED_INSIDE: &str = "ctl: the command failed inside the server; see the server log";

impl From<FailedInside> for Reply {
    fn from(_: FailedInside) -> Reply {
        Reply::Err(FAILED_INSIDE.into())
    }
}

impl From<FailedInside> for Vec<Reply> {
    fn from(_: FailedInside) -> Vec<Reply> {
        vec![Reply::Err(FAILED_INSIDE.into())]
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    /// Each reason `Manifest::parse` can give, from a manifest that has it.
    fn manifest_errors() -> Vec<VaultError> {
        let bad: [&[u8]; 9] = [
            b"\xff",
            b"secret",
            b"secret a b",
            b"secret .",
            b"secret a\nsecret a",
            b"config x",
            b"config .=1",
            b"config a=1\nconfig a=2",
            b"frob",
        ];
        bad.iter()
            .map(|m| match secrets::Manifest::parse(m) {
                // The most lines a manifest within the size limit can have.
                Err(VaultError::Manifest { reason, .. }) => VaultError::Manifest {
                    line: secrets::MAX_MANIFEST_LEN + 1,
                    reason,
                },
                other => panic!("{m:?} gave {other:?}"),
            })
            .collect()
    }

    #[test]
    fn every_explanation_fits_what_a_plan9_client_keeps() {
        let long = "s".repeat(ctl::MAX_NAME_LEN);
        let mut errors = vec![
            VaultError::NoSuchSecret,
            VaultError::NoSuchService,
            VaultError::UidInUse {
                uid: u32::MAX,
                service: long.clone(),
            },
            VaultError::UidInUse {
                uid: u32::MAX,
                service: "web".into(),
            },
            VaultError::UidIsAdmin {
                uid: u32::MAX - 1,
                admin_uid: u32::MAX - 1,
            },
            VaultError::UidIsAdmin {
                uid: 0,
                admin_uid: u32::MAX - 1,
            },
            VaultError::ReservedName,
            VaultError::InvalidName { kind: "secret" },
            VaultError::InvalidName { kind: "service" },
            VaultError::InvalidName { kind: "config key" },
            VaultError::TooLarge {
                what: "secret value",
                limit: secrets::MAX_VALUE_LEN,
            },
            VaultError::TooLarge {
                what: "manifest",
                limit: secrets::MAX_MANIFEST_LEN,
            },
            VaultError::Random,
            VaultError::CommitUncertain {
                source: Box::new(VaultError::Random),
            },
            VaultError::RotationPending {
                key: u32::MAX,
                source: Box::new(VaultError::Decrypt),
            },
            VaultError::RotationCleanup {
                key: u32::MAX,
                source: Box::new(VaultError::Random),
            },
            VaultError::KeyReadOnly {
                path: "/run/credentials/srv-secrets.service/srv-secrets.key".into(),
                needs: "a key rotation writes the new key into it",
            },
            VaultError::PendingVersion { version: u64::MAX },
            VaultError::NoPendingVersion,
            VaultError::NoPreviousVersion,
            VaultError::Frozen,
            VaultError::NoSuchToken,
            VaultError::InvalidTokenId,
            VaultError::TooManyTokens {
                limit: secrets::MAX_TOKENS,
            },
        ];
        errors.extend(manifest_errors());
        for e in &errors {
            let text = format!("ctl: line 99999: rotate-key: {}", explain(e));
            assert!(
                text.len() <= ctl::MAX_ERROR_LEN,
                "{} bytes: {text}",
                text.len()
            );
        }
        assert!(FAILED_INSIDE.len() <= ctl::MAX_ERROR_LEN);
    }

    #[test]
    fn an_unexplained_failure_does_not_claim_that_nothing_changed() {
        let e = VaultError::Corrupt {
            what: "a rotation's target key is not loaded",
        };
        assert_eq!(explain(&e), "the store failed; see the server log");
        // Its cause is for the log, not the client.
        assert!(!explain(&e).contains("rotation"));
    }

    #[test]
    fn a_failed_rotation_says_how_far_it_got() {
        let cause = || Box::new(VaultError::Decrypt);
        assert_eq!(
            explain(&VaultError::RotationPending {
                key: 3,
                source: cause()
            }),
            "rotation to key 3 stopped part-way and is pending; rerun rotate-key; see the server \
             log"
        );
        assert_eq!(
            explain(&VaultError::RotationCleanup {
                key: 3,
                source: cause()
            }),
            "rotated to key 3; the old key leaves the key file at the next start; see the \
             server log"
        );
        assert_eq!(
            explain(&VaultError::CommitUncertain { source: cause() }),
            "the store reported an error, yet the change took effect; see the server log"
        );
    }

    #[test]
    fn explanations_say_what_to_do_in_deploy_terms() {
        assert_eq!(
            explain(&VaultError::NoSuchService),
            "no such service; add it with: deploy service add NAME --uid UID"
        );
        assert_eq!(
            explain(&VaultError::UidInUse {
                uid: 1001,
                service: "api".into()
            }),
            "uid 1001 is already service api's; remove or remap it first"
        );
        assert_eq!(
            explain(&VaultError::UidIsAdmin {
                uid: 1001,
                admin_uid: 1001
            }),
            "uid 1001 ran init, so it is the admin (as root is); pick another uid"
        );
        assert_eq!(
            explain(&VaultError::UidIsAdmin {
                uid: 0,
                admin_uid: 1001
            }),
            "uid 0 is root, the admin (as uid 1001 is); pick another uid"
        );
        assert_eq!(
            explain(&manifest_errors()[8]),
            "manifest line 1048577: unknown declaration; expected `secret NAME` or \
             `config KEY=VALUE`"
        );
    }

    #[test]
    fn a_freeze_is_refused_in_the_words_deploy_knows_it_by() {
        assert_eq!(explain(&VaultError::Frozen), "frozen (see deploy status)");
        assert_eq!(explain(&VaultError::Frozen), model::FROZEN);
    }

    #[test]
    fn unread_results_are_bounded_and_read_in_pieces() {
        let mut u = Unread::default();
        u.push(&Reply::Ok(Answer::new("set").word("a").field("version", 1)));
        u.push(&Reply::Err("ctl: line 2: bogus".into()));
        assert_eq!(&*u.take(5), b"ok se");
        assert_eq!(&*u.take(100), b"t a version=1\nctl: line 2: bogus\n");
        assert!(u.take(100).is_empty());
        // A writer that never reads loses the oldest results, and is told.
        let big = Reply::Ok(Answer::new("help").body(Zeroizing::new(vec![b'x'; 6 << 20])));
        for _ in 0..4 {
            u.push(&big);
        }
        assert!(u.bytes <= MAX_UNREAD);
        // Read in pieces smaller than the notice, it arrives whole all the same.
        let mut first = Vec::new();
        while first.len() < 64 {
            let piece = u.take(10);
            // Never more than asked: the core would cut the rest off.
            assert!(piece.len() <= 10, "{} bytes", piece.len());
            first.extend_from_slice(&piece);
        }
        assert!(
            first.starts_with(b"ctl: 2 results were dropped, not read in time\nok help {"),
            "{:?}",
            String::from_utf8_lossy(&first)
        );
    }
}
