//! `deploy secret holders NAME [--json]`: everyone a rotation or revoke of a secret must
//! reach, from the ctl query `holders`: the services granted it (and whether each has
//! opened the current version), the deployments a value was generated for, the tiers it
//! is delegated to. And `deploy secret rotation-status NAME`: who has opened the current
//! version, who may still read `@previous`.

use std::io::Write;

use ctl::Command;
use serde::{Deserialize, Serialize};

use super::versions::query;
use super::{Outcome, validate};
use crate::connect::{Env, Server};
use crate::error::CliError;
use crate::output::{Align, Table, printable, when, write_json, write_text};

/// The server's answer to `holders NAME`.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Holders {
    /// The secret.
    pub name: String,
    /// Its current version, if a value is stored.
    pub version: Option<u64>,
    /// The services granted it.
    pub services: Vec<ServiceHolder>,
    /// The values of it generated for deployments.
    pub deployments: Vec<Deployment>,
    /// The tiers it is delegated to.
    pub delegated: Vec<DelegatedTier>,
}

/// A service granted the secret.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct ServiceHolder {
    /// The service.
    pub service: String,
    /// When the grant ends; none: until revoked.
    pub expires: Option<u64>,
    /// Whether it is suspended.
    pub suspended: bool,
    /// The highest version it has opened.
    pub opened: Option<u64>,
    /// Whether that is the current version or later.
    pub opened_current: bool,
}

/// A value generated for a deployment's bundle.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Deployment {
    /// The deployment.
    pub deployment: String,
    /// Its service.
    pub service: String,
    /// Its tier.
    pub tier: String,
    /// Which bundle of the deployment.
    pub bundle: u64,
    /// When it was issued.
    pub issued: u64,
    /// Whether the deployment's last bundle.
    pub current: bool,
}

/// A tier the secret is delegated to.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct DelegatedTier {
    /// The tier.
    pub tier: String,
    /// Where the provider keeps it.
    pub reference: String,
    /// Whether it is marked present.
    pub present: bool,
}

/// `deploy secret holders NAME [--json]`.
///
/// # Errors
/// The server's (no such secret), an answer that does not read.
pub async fn holders(
    name: String,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::Holders { name };
    show::<Holders>(
        &command,
        "the holders do not read",
        render,
        json,
        server,
        env,
        out,
    )
    .await
}

/// Asks the server `command`, a query answered with JSON, and prints the answer: as JSON
/// with `json`, else as `render` makes it. `what` is the error's words for an answer
/// that does not parse.
async fn show<T: serde::de::DeserializeOwned + Serialize>(
    command: &Command,
    what: &str,
    render: fn(&T) -> String,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    validate(command)?;
    let body = query(server, env, command).await?;
    let answer: T =
        serde_json::from_slice(&body).map_err(|e| CliError::Unexpected(format!("{what}: {e}")))?;
    if json {
        write_json(out, &answer)?;
    } else {
        write_text(out, &render(&answer))?;
    }
    Ok(Outcome::Done)
}

/// Three tables, each under a heading, `none` for an empty one.
fn render(h: &Holders) -> String {
    let mut text = match h.version {
        Some(v) => format!("{} (version {v})\n", printable(&h.name)),
        None => format!("{} (no value stored)\n", printable(&h.name)),
    };
    text.push_str("\nservices granted it:\n");
    if h.services.is_empty() {
        text.push_str("  none\n");
    } else {
        let mut table = Table::new(&[
            ("SERVICE", Align::Left),
            ("GRANT", Align::Left),
            ("OPENED", Align::Right),
            ("HAS CURRENT", Align::Left),
            ("NOTE", Align::Left),
        ]);
        for s in &h.services {
            table.row(vec![
                s.service.clone(),
                s.expires
                    .map_or_else(|| "until revoked".into(), |t| format!("until {}", when(t))),
                s.opened.map_or_else(|| "-".into(), |v| v.to_string()),
                if s.opened_current { "yes" } else { "no" }.into(),
                if s.suspended { "suspended" } else { "" }.into(),
            ]);
        }
        text.push_str(&table.render());
    }
    text.push_str("\ndeployments a value was generated for:\n");
    if h.deployments.is_empty() {
        text.push_str("  none\n");
    } else {
        let mut table = Table::new(&[
            ("DEPLOYMENT", Align::Left),
            ("SERVICE", Align::Left),
            ("TIER", Align::Left),
            ("BUNDLE", Align::Right),
            ("ISSUED", Align::Left),
            ("LAST BUNDLE", Align::Left),
        ]);
        for d in &h.deployments {
            table.row(vec![
                d.deployment.clone(),
                d.service.clone(),
                d.tier.clone(),
                d.bundle.to_string(),
                when(d.issued),
                if d.current { "yes" } else { "no" }.into(),
            ]);
        }
        text.push_str(&table.render());
    }
    text.push_str("\ntiers it is delegated to:\n");
    if h.delegated.is_empty() {
        text.push_str("  none\n");
    } else {
        let mut table = Table::new(&[
            ("TIER", Align::Left),
            ("REFERENCE", Align::Left),
            ("PRESENT", Align::Left),
        ]);
        for t in &h.delegated {
            table.row(vec![
                t.tier.clone(),
                t.reference.clone(),
                if t.present { "yes" } else { "no" }.into(),
            ]);
        }
        text.push_str(&table.render());
    }
    text
}

/// The server's answer to `rotation NAME`.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RotationStatus {
    /// The secret.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// The previous version, while it can still be read.
    pub previous: Option<u64>,
    /// When the previous version's overlap ends.
    pub overlap_until: Option<u64>,
    /// Whether the previous version retires once every holder opened the current one.
    pub retire_when_read: bool,
    /// A version staged and not yet promoted.
    pub pending: Option<u64>,
    /// The services granted it.
    pub services: Vec<RotationHolder>,
    /// The services that have not opened the current version.
    pub waiting_on: Vec<String>,
}

/// A service granted the secret, in a rotation's view.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct RotationHolder {
    /// The service.
    pub service: String,
    /// The highest version it has opened.
    pub opened: Option<u64>,
    /// Whether it has opened the current version.
    pub has_current: bool,
    /// Whether it is suspended.
    pub suspended: bool,
}

/// `deploy secret rotation-status NAME [--json]`.
///
/// # Errors
/// The server's (no such secret), an answer that does not read.
pub async fn rotation_status(
    name: String,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::RotationStatus { name };
    show::<RotationStatus>(
        &command,
        "the rotation status does not read",
        render_rotation,
        json,
        server,
        env,
        out,
    )
    .await
}

/// A summary line of where the rotation stands, then one row per service granted it.
fn render_rotation(s: &RotationStatus) -> String {
    let name = printable(&s.name);
    let mut text = format!("{name}: version {}", s.version);
    match s.previous {
        Some(previous) => {
            text.push_str(&format!(
                " is current; version {previous} can still be read as {name}@previous\n"
            ));
            match s.overlap_until {
                Some(t) => text.push_str(&format!("until {}", when(t))),
                None => text.push_str("until retired"),
            }
            if s.retire_when_read {
                text.push_str(", or until every service below has opened the current version");
            }
            text.push_str(".\n");
        }
        None => text.push_str(" is current; no previous version can be read.\n"),
    }
    if let Some(pending) = s.pending {
        text.push_str(&format!(
            "version {pending} is staged (pending), not yet promoted.\n"
        ));
    }
    text.push('\n');
    if s.services.is_empty() {
        text.push_str("no service is granted it.\n");
        return text;
    }
    let mut table = Table::new(&[
        ("SERVICE", Align::Left),
        ("OPENED", Align::Right),
        ("READS", Align::Left),
        ("NOTE", Align::Left),
    ]);
    for h in &s.services {
        let reads = match (h.has_current, h.opened, s.previous) {
            (true, _, _) => "current",
            (false, None, _) => "nothing yet",
            (false, Some(_), Some(_)) => "@previous (or older)",
            (false, Some(_), None) => "an older version",
        };
        table.row(vec![
            h.service.clone(),
            h.opened.map_or_else(|| "-".into(), |v| v.to_string()),
            reads.into(),
            if h.suspended { "suspended" } else { "" }.into(),
        ]);
    }
    text.push_str(&table.render());
    if s.waiting_on.is_empty() {
        text.push_str("\nevery service granted it has opened the current version.\n");
    } else {
        text.push_str(&format!(
            "\nwaiting on {} of {}: {}\n",
            s.waiting_on.len(),
            s.services.len(),
            s.waiting_on.join(", ")
        ));
    }
    text
}
