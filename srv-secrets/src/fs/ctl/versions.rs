//! The ctl commands of a secret's versions: `stage`, `promote`, `discard`, `rollback`,
//! `retire`, `grant ... expires`, and the queries `history NAME`, `rotation NAME`
//! and `stale` (JSON bodies, never a value); what each answers, and what each refusal
//! says in the 127 bytes a ctl error has.

use ctl::{Answer, Command};
use secrets::{Applied, Change, Error as VaultError, Vault};

use super::decl::{Prepared, template_of};
use crate::reports::pretty_json;

/// The vault change a version command asks for; `None` for a command of another kind.
///
/// # Errors
/// A template that does not parse, in the ctl error's words.
pub(super) fn prepare(command: &Command) -> Option<Result<Prepared<'_>, String>> {
    Some(Ok(Prepared::Direct(match command {
        Command::Stage { name, value } => Change::Stage {
            name,
            value: value.expose(),
        },
        Command::StageGenerate { name, template } => {
            return Some(
                template
                    .as_deref()
                    .map(template_of)
                    .transpose()
                    .map(|template| Prepared::StageGenerate { name, template }),
            );
        }
        Command::Promote {
            name,
            overlap,
            revoke_previous,
            retire_when_read,
        } => Change::Promote {
            name,
            overlap: *overlap,
            revoke_previous: *revoke_previous,
            retire_when_read: *retire_when_read,
        },
        Command::Discard { name } => Change::Discard { name },
        Command::Rollback { name } => Change::Rollback { name },
        Command::Retire { name } => Change::Retire {
            name,
            when_read: None,
        },
        Command::Grant {
            service,
            name,
            expires,
        } => Change::Grant {
            service,
            name,
            expires_in: *expires,
        },
        _ => return None,
    })))
}

/// `none`, or the number.
fn or_none(n: Option<u64>) -> String {
    n.map_or_else(|| "none".to_string(), |n| n.to_string())
}

/// The result line of a version command the vault applied (and its log line, without
/// values); `None` for a command of another kind.
pub(super) fn answer(command: &Command, applied: &Applied) -> Option<Answer> {
    let a = Answer::new(command.verb());
    Some(match (command, applied) {
        (
            Command::Stage { name, .. } | Command::StageGenerate { name, .. },
            Applied::Staged { version, expires },
        ) => {
            tracing::info!(secret = %name, version, "staged a pending version");
            a.word(name)
                .field("version", version)
                .field("expires", expires)
        }
        (
            Command::Promote { name, .. },
            Applied::Promoted {
                version,
                previous,
                until,
            },
        ) => {
            tracing::info!(secret = %name, version, previous = ?previous, until = ?until, "promoted");
            a.word(name)
                .field("version", version)
                .field("previous", or_none(*previous))
                .field("until", or_none(*until))
        }
        (Command::Discard { name }, Applied::Discarded { version }) => {
            tracing::info!(secret = %name, version, "discarded the pending version");
            a.word(name).field("version", version)
        }
        (Command::Rollback { name }, Applied::RolledBack { version, previous }) => {
            tracing::info!(secret = %name, version, previous, "rolled back");
            a.word(name)
                .field("version", version)
                .field("previous", previous)
        }
        (Command::Retire { name }, Applied::Retired { version }) => {
            tracing::info!(secret = %name, version, "retired the previous version");
            a.word(name).field("version", version)
        }
        _ => return None,
    })
}

/// Answers `history NAME`, `rotation NAME` and `stale`, with a JSON body; `None`
/// for another command.
///
/// # Errors
/// `history` or `rotation` of a secret that does not exist.
pub(super) fn query(vault: &Vault, command: &Command) -> Option<Result<Answer, String>> {
    Some(match command {
        Command::History { name } => match vault.history(name) {
            Some(versions) => Ok(Answer::new(command.verb())
                .word(name)
                .field("versions", versions.len())
                .body(pretty_json(&versions))),
            None => Err(super::explain(&VaultError::NoSuchSecret)),
        },
        Command::RotationStatus { name } => match vault.rotation_status(name) {
            Ok(status) => Ok(Answer::new(command.verb())
                .word(name)
                .field("version", status.version)
                .field("previous", or_none(status.previous))
                .field("waiting", status.waiting_on.len())
                .body(pretty_json(&status))),
            Err(e) => Err(super::explain(&e)),
        },
        Command::Stale => {
            let stale = vault.stale();
            Ok(Answer::new(command.verb())
                .field("secrets", stale.len())
                .body(pretty_json(&stale)))
        }
        _ => return None,
    })
}

/// What a client sees for the vault's refusals of version commands.
pub(super) fn explain(e: &VaultError) -> Option<String> {
    Some(match e {
        VaultError::PendingVersion { version } => format!(
            "a rotation is under way (pending version {version}); promote or discard it first"
        ),
        VaultError::NoPendingVersion => {
            "no pending version (stage one first; one not promoted within an hour is gone)".into()
        }
        VaultError::NoPreviousVersion => {
            "no previous version: it was retired, revoked, or never made".into()
        }
        _ => return None,
    })
}
