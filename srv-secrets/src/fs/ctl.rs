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
/// verb are added by the caller, and these texts are ours.
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
        other => {
            // Paths and causes are for the operator's log, not the client.
            error!(error = %other, "ctl command failed in the store");
            "the store failed and nothing was changed; see the server log".into()
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
