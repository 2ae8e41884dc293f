//! The API tokens' ctl commands: `token create PRINCIPAL [expires DURATION]`, answered
//! with the token as its body (on the fid that asked, once: a body is kept nowhere else,
//! and the log has the token's ID only), `token revoke ID`, and the query `token list`
//! (a JSON body, never a token).

use ctl::{ADMIN_PRINCIPAL, Answer, Command};
use secrets::{Applied, Change, Error as VaultError, Principal, TokenInfo, Vault};
use serde::Serialize;
use zeroize::Zeroizing;

use super::decl::Prepared;
use crate::reports::pretty_json;

/// The vault change a token command asks for; `None` for a command of another kind.
pub(super) fn prepare(command: &Command) -> Option<Prepared<'_>> {
    Some(Prepared::Direct(match command {
        Command::TokenCreate { principal, expires } => Change::TokenCreate {
            service: (principal != ADMIN_PRINCIPAL).then_some(principal.as_str()),
            expires_in: *expires,
        },
        Command::TokenRevoke { id } => Change::TokenRevoke { id },
        _ => return None,
    }))
}

/// The result of a token command the vault applied (and its log line, which names the
/// token by its ID); `None` for a command of another kind.
pub(super) fn answer(command: &Command, applied: &Applied) -> Option<Answer> {
    let a = Answer::new(command.verb());
    Some(match (command, applied) {
        (Command::TokenCreate { principal, .. }, Applied::TokenCreated { token, expires }) => {
            tracing::info!(token = %token.id(), %principal, expires = ?expires, "token created");
            let mut body = Zeroizing::new(Vec::with_capacity(token.expose().len() + 1));
            body.extend_from_slice(token.expose().as_bytes());
            body.push(b'\n');
            a.word("create")
                .word(token.id())
                .field("principal", principal)
                .field(
                    "expires",
                    expires.map_or_else(|| "never".to_string(), |t| t.to_string()),
                )
                .body(body)
        }
        (Command::TokenRevoke { id }, Applied::TokenRevoked { already }) => {
            tracing::warn!(token = %id, already, "token revoked");
            a.word("revoke")
                .word(id)
                .field("already", if *already { "yes" } else { "no" })
        }
        _ => return None,
    })
}

/// A token as `token list` shows it.
#[derive(Serialize)]
struct Listed<'a> {
    id: &'a str,
    /// `admin`, or the service's name.
    principal: &'a str,
    /// Unix seconds.
    created: u64,
    created_by: &'a str,
    expires: Option<u64>,
    revoked: Option<u64>,
    /// `active`, `expired`, `revoked`.
    state: &'static str,
}

impl<'a> From<&'a TokenInfo> for Listed<'a> {
    fn from(t: &'a TokenInfo) -> Listed<'a> {
        Listed {
            id: &t.id,
            principal: match &t.principal {
                Principal::Service(name) => name,
                Principal::Admin | Principal::Local => ADMIN_PRINCIPAL,
            },
            created: t.created,
            created_by: &t.created_by,
            expires: t.expires,
            revoked: t.revoked,
            state: t.state.as_str(),
        }
    }
}

/// Answers `token list`, with a JSON body; `None` for another command.
pub(super) fn query(vault: &Vault, command: &Command) -> Option<Result<Answer, String>> {
    match command {
        Command::TokenList => {
            let tokens = vault.tokens();
            let listed: Vec<Listed<'_>> = tokens.iter().map(Listed::from).collect();
            Some(Ok(Answer::new(command.verb())
                .word("list")
                .field("tokens", listed.len())
                .body(pretty_json(&listed))))
        }
        _ => None,
    }
}

/// What a client sees for the vault's refusal of a token command.
pub(super) fn explain(e: &VaultError) -> Option<String> {
    match e {
        VaultError::NoSuchToken => {
            Some("no such token; see the IDs with: deploy token list".into())
        }
        VaultError::InvalidTokenId | VaultError::TooManyTokens { .. } => Some(e.to_string()),
        _ => None,
    }
}
