//! `deploy token create PRINCIPAL [--expires D] [--json]`, `deploy token list [--json]`,
//! `deploy token revoke ID`: API tokens, over the ctl commands `token create`, `token
//! list` and `token revoke`.
//!
//! A token is printed once, by `create`, to stdout alone (so that it can go straight
//! into a file), with what to do with it on stderr; the server keeps only its keyed hash.
//! `list` never shows one.

use std::io::Write;

use ctl::Command;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::versions::query;
use super::{Outcome, note, validate};
use crate::cli::TokenCommand;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{Align, Table, when, write_json, write_text};

/// `deploy token ...`.
///
/// # Errors
/// The server's refusal (no such service, no such token, frozen), a bad argument.
pub async fn run(
    cmd: TokenCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        TokenCommand::Create {
            principal,
            expires,
            json,
        } => create(principal, expires, json, server, env, out).await,
        TokenCommand::List(flag) => list(flag.json, server, env, out).await,
        TokenCommand::Revoke { id } => revoke(id, server, env, out).await,
    }
}

/// What `--json` prints of a token made.
#[derive(Serialize)]
struct Created<'a> {
    id: &'a str,
    principal: &'a str,
    expires: Option<u64>,
    token: &'a str,
}

async fn create(
    principal: String,
    expires: Option<u64>,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::TokenCreate { principal, expires };
    validate(&command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&command).await?;
    ctl.close().await?;
    let id = answer.words.get(1).cloned().unwrap_or_default();
    let expires = answer.get("expires").and_then(|t| t.parse::<u64>().ok());
    let body = answer
        .body
        .ok_or_else(|| CliError::Unexpected("the server answered no token".into()))?;
    let token = std::str::from_utf8(&body)
        .ok()
        .map(str::trim_end)
        .filter(|t| t.starts_with("srvtok_") && !t.contains(char::is_whitespace))
        .ok_or_else(|| CliError::Unexpected("the server's token does not read".into()))?;
    let Command::TokenCreate { principal, .. } = &command else {
        return Err(CliError::Unexpected("not a token command".into()));
    };
    let mut text = Zeroizing::new(String::with_capacity(token.len() + 256));
    if json {
        let created = Created {
            id: &id,
            principal,
            expires,
            token,
        };
        let encoded = serde_json::to_string_pretty(&created)
            .map_err(|e| CliError::Unexpected(format!("cannot encode JSON: {e}")))?;
        text.push_str(&encoded);
        // The string serde_json made holds the token: wiped as ours is.
        drop(Zeroizing::new(encoded));
    } else {
        text.push_str(token);
    }
    text.push('\n');
    write_text(out, &text)?;
    let ends = expires.map_or_else(
        || "until revoked".to_string(),
        |t| format!("until {}", when(t)),
    );
    note(&format!(
        "made token {id} for {principal}, {ends}. It is shown this once: the server keeps only \
         a keyed hash. Store it in a file only you can read (chmod 600) and pass that to \
         deploy --token-file; revoke it with: deploy token revoke {id}"
    ));
    Ok(Outcome::Done)
}

/// A token as `token list` answers it.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Listed {
    /// Its ID.
    pub id: String,
    /// `admin`, or a service.
    pub principal: String,
    /// When it was made (unix seconds).
    pub created: u64,
    /// Who made it.
    pub created_by: String,
    /// When it ends, if it does.
    pub expires: Option<u64>,
    /// When it was revoked, if it was.
    pub revoked: Option<u64>,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

async fn list(
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let body = query(server, env, &Command::TokenList).await?;
    let tokens: Vec<Listed> = serde_json::from_slice(&body)
        .map_err(|e| CliError::Unexpected(format!("the tokens do not read: {e}")))?;
    if json {
        write_json(out, &tokens)?;
    } else {
        write_text(out, &render(&tokens))?;
    }
    Ok(Outcome::Done)
}

/// A table of the tokens, `no tokens` when there is none.
fn render(tokens: &[Listed]) -> String {
    if tokens.is_empty() {
        return "no tokens\n".into();
    }
    let mut table = Table::new(&[
        ("ID", Align::Left),
        ("PRINCIPAL", Align::Left),
        ("CREATED", Align::Left),
        ("EXPIRES", Align::Left),
        ("STATE", Align::Left),
    ]);
    for t in tokens {
        let state = match t.revoked {
            Some(at) => format!("{} {}", t.state, when(at)),
            None => t.state.clone(),
        };
        table.row(vec![
            t.id.clone(),
            t.principal.clone(),
            when(t.created),
            t.expires.map_or_else(|| "never".into(), when),
            state,
        ]);
    }
    table.render()
}

async fn revoke(
    id: String,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::TokenRevoke { id };
    validate(&command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&command).await?;
    ctl.close().await?;
    let Command::TokenRevoke { id } = &command else {
        return Err(CliError::Unexpected("not a token command".into()));
    };
    let text = if answer.get("already") == Some("yes") {
        format!("token {id} was revoked already\n")
    } else {
        format!("revoked token {id}: it is refused from now on, and its connections are closed\n")
    };
    write_text(out, &text)?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_shows_every_fact_but_a_token() {
        let tokens = vec![
            Listed {
                id: "0123456789abcdef".into(),
                principal: "admin".into(),
                created: 1_700_000_000,
                created_by: "admin".into(),
                expires: None,
                revoked: None,
                state: "active".into(),
            },
            Listed {
                id: "fedcba9876543210".into(),
                principal: "web".into(),
                created: 1_700_000_000,
                created_by: "admin".into(),
                expires: Some(1_700_003_600),
                revoked: Some(1_700_000_100),
                state: "revoked".into(),
            },
        ];
        let text = render(&tokens);
        assert!(text.starts_with("ID"), "{text}");
        assert!(text.contains("0123456789abcdef  admin"), "{text}");
        assert!(text.contains("never"), "{text}");
        assert!(text.contains("revoked 2023-11-14T22:15:00Z"), "{text}");
        assert_eq!(render(&[]), "no tokens\n");
    }
}
