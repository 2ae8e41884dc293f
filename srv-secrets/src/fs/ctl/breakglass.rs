//! The break-glass ctl commands (seed 004): `freeze`, `unfreeze`, `revoke-all NAME`,
//! `service SERVICE suspend` and `service SERVICE resume`, and the queries `matrix` and
//! `holders NAME` (JSON bodies); what each answers, and what a freeze's refusal says.
//!
//! The ownership matrix is a ctl query rather than a file of the admin tree: like
//! `history` and `stale`, it is made from one look at the state and answered on the fid
//! that asked, it moves with the clock (ages, grants that end) rather than with the store
//! alone, and a query can take arguments later (a glob of names, one service) that a file
//! would need a directory tree for.

use ctl::{Answer, Command};
use secrets::{Applied, Change, Error as VaultError, Vault};

use super::decl::Prepared;
use crate::reports::pretty_json;

/// The vault change a break-glass command asks for; `None` for a command of another kind.
pub(super) fn prepare(command: &Command) -> Option<Prepared<'_>> {
    Some(Prepared::Direct(match command {
        Command::Freeze => Change::Freeze,
        Command::Unfreeze => Change::Unfreeze,
        Command::RevokeAll { name } => Change::RevokeAll { name },
        Command::ServiceSuspend { service } => Change::Suspend { service },
        Command::ServiceResume { service } => Change::Resume { service },
        _ => return None,
    }))
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// The result line of a break-glass command the vault applied (and its log line);
/// `None` for a command of another kind.
pub(super) fn answer(command: &Command, applied: &Applied) -> Option<Answer> {
    let a = Answer::new(command.verb());
    Some(match (command, applied) {
        (Command::Freeze, Applied::Frozen { already, since }) => {
            tracing::warn!(since, already, "deploys frozen");
            a.field("since", since).field("already", yes(*already))
        }
        (Command::Unfreeze, Applied::Unfrozen { was_frozen }) => {
            tracing::warn!(was_frozen, "deploys unfrozen");
            a.field("was_frozen", yes(*was_frozen))
        }
        (Command::RevokeAll { name }, Applied::RevokedAll { services }) => {
            tracing::warn!(secret = %name, services = ?services, "revoked from every service");
            a.word(name)
                .field("services", services.len())
                .body(pretty_json(services))
        }
        (Command::ServiceSuspend { service }, Applied::Suspended { already, since }) => {
            tracing::warn!(%service, since, already, "service suspended");
            a.word(service)
                .word("suspend")
                .field("since", since)
                .field("already", yes(*already))
        }
        (Command::ServiceResume { service }, Applied::Resumed { was_suspended }) => {
            tracing::warn!(%service, was_suspended, "service resumed");
            a.word(service)
                .word("resume")
                .field("was_suspended", yes(*was_suspended))
        }
        _ => return None,
    })
}

/// Answers `matrix` and `holders NAME`, with a JSON body; `None` for another command.
pub(super) fn query(vault: &Vault, command: &Command) -> Option<Result<Answer, String>> {
    Some(match command {
        Command::Matrix => {
            let matrix = vault.matrix();
            Ok(Answer::new(command.verb())
                .field("secrets", matrix.secrets.len())
                .field("services", matrix.services.len())
                .body(pretty_json(&matrix)))
        }
        Command::Holders { name } => match vault.holders(name) {
            Ok(holders) => Ok(Answer::new(command.verb())
                .word(name)
                .field("services", holders.services.len())
                .field("deployments", holders.deployments.len())
                .field("delegated", holders.delegated.len())
                .body(pretty_json(&holders))),
            Err(e) => Err(super::explain(&e)),
        },
        _ => return None,
    })
}

/// What a client sees for the vault's refusal of a change a freeze stops: word for word
/// [`model::FROZEN`], which deploy knows a freeze by.
pub(super) fn explain(e: &VaultError) -> Option<String> {
    match e {
        VaultError::Frozen => Some(model::FROZEN.to_string()),
        _ => None,
    }
}
