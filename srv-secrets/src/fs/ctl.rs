//! `/secrets/ctl`: commands parsed by the `ctl` crate, applied to the vault one at a time
//! as each completes. Each command is one vault transaction: it applies fully or not at
//! all, and it is durable before the Twrite (or Tclunk) that completed it is answered.

use std::sync::Arc;

use ctl::{Command, CtlBuffer, Parsed};
use secrets::{Error as VaultError, Vault};
use tokio::sync::Mutex;
use tracing::{error, info};

/// One ctl fid's pending bytes.
#[derive(Default)]
pub struct CtlFid {
    buffer: Mutex<CtlBuffer>,
}

/// What a client sees for a vault error. Never a name or value: the command's line and
/// verb are added by the caller, and these texts are ours. With that prefix each fits
/// [`ctl::MAX_ERROR_LEN`], what a Plan 9 client keeps of an error.
fn explain(e: &VaultError) -> String {
    match e {
        VaultError::NoSuchSecret => "no such secret; see the names with: deploy secret list".into(),
        VaultError::NoSuchService => {
            "no such service; add it first with: service NAME uid UID".into()
        }
        VaultError::UidInUse { .. } => {
            "that uid already maps to another service; remove or remap that service first".into()
        }
        VaultError::UidIsAdmin { .. } => {
            "uid 0 and the uid that ran init are the admin and cannot be a service".into()
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

/// Applies one command to the vault. Blocks: run it off the async workers.
fn apply(vault: &Vault, cmd: &Command) -> Result<(), VaultError> {
    match cmd {
        Command::Set { name, value } => {
            let version = vault.set(name, value.expose())?;
            info!(secret = %name, version, "set");
        }
        Command::Delete { name } => {
            vault.delete(name)?;
            info!(secret = %name, "deleted");
        }
        Command::Grant { service, name } => {
            vault.grant(service, name)?;
            info!(%service, secret = %name, "granted");
        }
        Command::Revoke { service, name } => {
            vault.revoke(service, name)?;
            info!(%service, secret = %name, "revoked");
        }
        Command::RotateKey => {
            let report = vault.rotate_key(&|_| {})?;
            info!(
                old_key = report.old_key,
                new_key = report.new_key,
                secrets = report.reencrypted,
                elapsed_ms = report.elapsed.as_millis() as u64,
                "key rotated"
            );
        }
        Command::ServiceUid { service, uid } => {
            vault.service_set_uid(service, *uid)?;
            info!(%service, uid, "service uid set");
        }
        Command::ServiceManifest { service, manifest } => {
            vault.service_set_manifest(service, manifest.expose())?;
            info!(%service, "service manifest set");
        }
        Command::ServiceRemove { service } => {
            vault.service_remove(service)?;
            info!(%service, "service removed");
        }
    }
    Ok(())
}

/// Applies the commands `next` takes from the buffer until it has none, or one fails;
/// then the rest of the pending bytes are dropped and the failure returned.
async fn apply_all(
    buffer: &mut CtlBuffer,
    vault: &Arc<Vault>,
    next: fn(&mut CtlBuffer) -> Option<Result<Parsed, ctl::CtlError>>,
) -> Result<(), String> {
    while let Some(command) = next(buffer) {
        let result = match command {
            Ok(parsed) => apply_parsed(vault, parsed).await,
            Err(e) => Err(e.to_string()),
        };
        if let Err(e) = result {
            buffer.discard_pending();
            return Err(e);
        }
    }
    Ok(())
}

async fn apply_parsed(vault: &Arc<Vault>, parsed: Parsed) -> Result<(), String> {
    let vault = vault.clone();
    let outcome = tokio::task::spawn_blocking(move || {
        let r = apply(&vault, &parsed.command).map_err(|e| parsed.error(explain(&e)));
        drop(parsed);
        r
    })
    .await;
    match outcome {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "ctl command task failed");
            Err("ctl: the command failed inside the server; see the server log".into())
        }
    }
}

impl CtlFid {
    /// A Twrite: buffers the bytes and applies every command they complete, in order. At
    /// the first bad command, the rest of this write is dropped and its error returned.
    pub async fn write(&self, vault: &Arc<Vault>, data: &[u8]) -> Result<(), String> {
        let mut buffer = self.buffer.lock().await;
        buffer.push(data);
        apply_all(&mut buffer, vault, CtlBuffer::next_command).await
    }

    /// A Tclunk: what is left is the last command, which the clunk completes.
    pub async fn finish(&self, vault: &Arc<Vault>) -> Result<(), String> {
        let mut buffer = self.buffer.lock().await;
        apply_all(&mut buffer, vault, CtlBuffer::finish).await
    }

    /// The connection ended without a clunk: a half-written command must not apply.
    pub async fn abandon(&self) {
        self.buffer.lock().await.discard_pending();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The longest prefix a command's error gets (a line number of five digits).
    const PREFIX: &str = "ctl: line 99999: rotate-key: ";

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
        let mut errors = vec![
            VaultError::NoSuchSecret,
            VaultError::NoSuchService,
            VaultError::UidInUse { uid: u32::MAX },
            VaultError::UidIsAdmin { uid: u32::MAX },
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
        ];
        errors.extend(manifest_errors());
        for e in &errors {
            let text = format!("{PREFIX}{}", explain(e));
            assert!(
                text.len() <= ctl::MAX_ERROR_LEN,
                "{} bytes: {text}",
                text.len()
            );
        }
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
    fn explanations_say_what_to_do() {
        assert_eq!(
            explain(&VaultError::NoSuchService),
            "no such service; add it first with: service NAME uid UID"
        );
        assert!(explain(&VaultError::UidInUse { uid: 1001 }).contains("remap"));
        assert_eq!(
            explain(&manifest_errors()[8]),
            "manifest line 1048577: unknown declaration; expected `secret NAME` or \
             `config KEY=VALUE`"
        );
    }
}
