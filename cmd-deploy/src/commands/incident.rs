//! `deploy incident report [--since T] [--json|--markdown]`: seed 004's incident record,
//! made from the audit trail: who froze, rotated, revoked or suspended what and when,
//! which services and deployments held each secret affected, and the impact window.
//!
//! Everything comes from the server's records (`/secrets/audit`, chain `changes`) and the
//! `holders` query of each affected secret; nothing is taken from the terminal. A secret's
//! holders are the services granted it now and those a revoke in the report took it
//! from, and the deployments a value of it was generated for.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::Write;

use audit::{CHANGES, Record};
use ctl::Command;
use serde::Serialize;

use super::Outcome;
use super::audit::{read_trail, when as parse_when};
use super::holders::Holders;
use super::versions::query;
use crate::cli::IncidentFormat;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{Align, Table, printable, write_json, write_text};

/// The changes an incident is made of (the audit's action words).
const INCIDENT_ACTIONS: &[&str] = &[
    "freeze",
    "unfreeze",
    "set",
    "generate",
    "stage",
    "promote",
    "discard",
    "rollback",
    "retire",
    "delete",
    "revoke",
    "revoke-all",
    "suspend",
    "resume",
    "rotate-key",
];

/// Of those, the ones that act on a secret someone may hold.
const SECRET_ACTIONS: &[&str] = &[
    "set",
    "generate",
    "stage",
    "promote",
    "discard",
    "rollback",
    "retire",
    "delete",
    "revoke",
    "revoke-all",
];

/// The report, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Report {
    /// From when the records were read (RFC 3339), if `--since` was given.
    pub since: Option<String>,
    /// The impact window: the first incident action.
    pub window_start: Option<String>,
    /// The impact window's end: the last unfreeze after the first action, or none while
    /// deploys are still frozen or were never frozen (then `window_last_action`).
    pub window_end: Option<String>,
    /// The last incident action.
    pub window_last_action: Option<String>,
    /// Whether deploys are frozen at the end of the records.
    pub frozen_now: bool,
    /// The incident's actions, oldest first.
    pub actions: Vec<Action>,
    /// Each secret acted on, with who held it.
    pub secrets: Vec<AffectedSecret>,
    /// Each service suspended or resumed, with whether it is suspended at the end.
    pub services: Vec<AffectedService>,
}

/// One action of the incident.
#[derive(Debug, Serialize)]
pub struct Action {
    /// When (RFC 3339, milliseconds).
    pub time: String,
    /// The record, `CHAIN:SEQ`.
    pub record: String,
    /// Who, with the uid.
    pub by: String,
    /// The action's word.
    pub action: String,
    /// What it acted on.
    pub target: BTreeMap<String, String>,
    /// The version concerned.
    pub version: Option<u64>,
    /// Why.
    pub reason: Option<String>,
    /// How it ended.
    pub result: String,
}

/// A secret the incident acted on.
#[derive(Debug, Serialize)]
pub struct AffectedSecret {
    /// The secret.
    pub name: String,
    /// What was done to it, in order.
    pub actions: Vec<String>,
    /// Services granted it now.
    pub granted_now: Vec<String>,
    /// Services a revoke in the report took it from.
    pub revoked_from: Vec<String>,
    /// Services granted it that have not opened its current version.
    pub not_on_current: Vec<String>,
    /// Deployments a value of it was generated for (`DEPLOYMENT (SERVICE/TIER)`).
    pub deployments: Vec<String>,
    /// Tiers it is delegated to (a provider holds it there: rotate it there too).
    pub delegated: Vec<String>,
}

/// A service the incident suspended or resumed.
#[derive(Debug, Serialize)]
pub struct AffectedService {
    /// The service.
    pub service: String,
    /// Whether suspended at the end of the records.
    pub suspended: bool,
}

/// `deploy incident report`.
///
/// # Errors
/// A bad --since, the server's refusal, a trail that does not read.
pub async fn report(
    since: Option<String>,
    format: IncidentFormat,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let since_ms = since
        .as_deref()
        .map(|t| parse_when(t, now_ms))
        .transpose()?;
    let session = Session::admin(server, env).await?;
    // Change records at or after `since` whose action is an incident's.
    let mut records = Vec::new();
    read_trail(&session, &mut |record, _| {
        if record.chain == CHANGES
            && since_ms.is_none_or(|t| record.time_ms >= t)
            && INCIDENT_ACTIONS.contains(&record.action.as_str())
        {
            records.push(record.clone());
        }
        Ok(())
    })
    .await?;
    // Whether deploys are frozen is the server's to say: a freeze made before --since
    // has no record in the report.
    let frozen_now = super::read_status(&session).await?.frozen.is_some();
    // The chains are merged by time in the file; the report is of changes alone, in
    // their own order.
    records.sort_by_key(|r| r.seq);
    let mut holders = BTreeMap::new();
    for name in affected_secrets(&records) {
        let body = query(server, env, &Command::Holders { name: name.clone() }).await;
        match body {
            Ok(body) => {
                let h: Holders = serde_json::from_slice(&body).map_err(|e| {
                    CliError::Unexpected(format!("the holders of a secret do not read: {e}"))
                })?;
                holders.insert(name, Some(h));
            }
            // Deleted since, with nothing declared: its holders are the revokes'.
            Err(_) => {
                holders.insert(name, None);
            }
        }
    }
    let report = build(since_ms, &records, &holders, frozen_now);
    if format.json {
        write_json(out, &report)?;
    } else if format.markdown {
        write_text(out, &render_markdown(&report))?;
    } else {
        write_text(out, &render_text(&report))?;
    }
    Ok(Outcome::Done)
}

/// The secrets the records act on, sorted.
fn affected_secrets(records: &[Record]) -> BTreeSet<String> {
    records
        .iter()
        .filter(|r| SECRET_ACTIONS.contains(&r.action.as_str()))
        .filter_map(|r| r.target.get("secret").cloned())
        .collect()
}

fn by(r: &Record) -> String {
    match r.uid {
        Some(uid) => format!("{} (uid {uid})", r.principal),
        None => r.principal.clone(),
    }
}

/// The report from the records and the holders of each affected secret (`None`: the
/// server knows no such secret now).
fn build(
    since_ms: Option<u64>,
    records: &[Record],
    holders: &BTreeMap<String, Option<Holders>>,
    frozen_now: bool,
) -> Report {
    let changed: Vec<&Record> = records.iter().filter(|r| r.result == "ok").collect();
    let first = changed.first().map(|r| r.time_ms);
    let last = changed.last().map(|r| r.time_ms);
    let mut window_end = None;
    for r in &changed {
        match r.action.as_str() {
            "freeze" => window_end = None,
            "unfreeze" => window_end = Some(r.time_ms),
            _ => {}
        }
    }
    if frozen_now {
        window_end = None;
    }
    let mut secrets = Vec::new();
    for (name, held) in holders {
        let mine: Vec<&&Record> = changed
            .iter()
            .filter(|r| r.target.get("secret") == Some(name))
            .collect();
        let mut revoked_from = BTreeSet::new();
        for r in mine.iter().filter(|r| r.action == "revoke") {
            if let Some(s) = r.target.get("service") {
                revoked_from.insert(s.clone());
            }
        }
        let (granted_now, not_on_current, deployments, delegated) = match held {
            Some(h) => (
                h.services.iter().map(|s| s.service.clone()).collect(),
                h.services
                    .iter()
                    .filter(|s| !s.opened_current)
                    .map(|s| s.service.clone())
                    .collect(),
                h.deployments
                    .iter()
                    .map(|d| format!("{} ({}/{})", d.deployment, d.service, d.tier))
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect(),
                h.delegated.iter().map(|t| t.tier.clone()).collect(),
            ),
            None => (Vec::new(), Vec::new(), Vec::new(), Vec::new()),
        };
        secrets.push(AffectedSecret {
            name: name.clone(),
            actions: mine.iter().map(|r| r.action.clone()).collect(),
            granted_now,
            revoked_from: revoked_from.into_iter().collect(),
            not_on_current,
            deployments,
            delegated,
        });
    }
    let mut services: BTreeMap<String, bool> = BTreeMap::new();
    for r in &changed {
        if let Some(s) = r.target.get("service") {
            match r.action.as_str() {
                "suspend" => {
                    services.insert(s.clone(), true);
                }
                "resume" => {
                    services.insert(s.clone(), false);
                }
                _ => {}
            }
        }
    }
    Report {
        since: since_ms.map(audit::format_ms),
        window_start: first.map(audit::format_ms),
        window_end: window_end.map(audit::format_ms),
        window_last_action: last.map(audit::format_ms),
        frozen_now,
        actions: records
            .iter()
            .map(|r| Action {
                time: audit::format_ms(r.time_ms),
                record: format!("{}:{}", r.chain, r.seq),
                by: by(r),
                action: r.action.clone(),
                target: r.target.clone(),
                version: r.version,
                reason: r.reason.clone(),
                result: r.result.clone(),
            })
            .collect(),
        secrets,
        services: services
            .into_iter()
            .map(|(service, suspended)| AffectedService { service, suspended })
            .collect(),
    }
}

fn target_text(target: &BTreeMap<String, String>) -> String {
    if target.is_empty() {
        return "-".into();
    }
    target
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

fn window_text(r: &Report) -> String {
    match (&r.window_start, &r.window_end, &r.window_last_action) {
        (None, _, _) => "no incident actions in the records".into(),
        (Some(start), Some(end), _) => format!("{start} to {end} (unfrozen)"),
        (Some(start), None, Some(last)) if r.frozen_now => {
            format!("{start} to now (deploys still frozen; last action {last})")
        }
        (Some(start), None, Some(last)) => format!("{start} to {last} (last action)"),
        (Some(start), None, None) => start.clone(),
    }
}

/// For a terminal.
fn render_text(r: &Report) -> String {
    let mut s = String::from("incident report\n");
    if let Some(since) = &r.since {
        let _ = writeln!(s, "records since:  {since}");
    }
    let _ = writeln!(s, "impact window:  {}", window_text(r));
    let _ = writeln!(
        s,
        "deploys:        {}",
        if r.frozen_now { "frozen" } else { "not frozen" }
    );
    s.push_str("\nactions:\n");
    if r.actions.is_empty() {
        s.push_str("  none\n");
    } else {
        let mut t = Table::new(&[
            ("TIME", Align::Left),
            ("RECORD", Align::Left),
            ("ACTION", Align::Left),
            ("BY", Align::Left),
            ("TARGET", Align::Left),
            ("VERSION", Align::Right),
            ("RESULT", Align::Left),
            ("REASON", Align::Left),
        ]);
        for a in &r.actions {
            t.row(vec![
                a.time.clone(),
                a.record.clone(),
                a.action.clone(),
                a.by.clone(),
                target_text(&a.target),
                a.version.map_or_else(|| "-".into(), |v| v.to_string()),
                a.result.clone(),
                a.reason.clone().unwrap_or_else(|| "-".into()),
            ]);
        }
        s.push_str(&t.render());
    }
    s.push_str("\nsecrets affected, and who held them:\n");
    if r.secrets.is_empty() {
        s.push_str("  none\n");
    }
    for x in &r.secrets {
        let _ = writeln!(s, "  {} ({})", printable(&x.name), x.actions.join(", "));
        let _ = writeln!(
            s,
            "    granted now:        {}",
            printable(&list_or_none(&x.granted_now))
        );
        let _ = writeln!(
            s,
            "    revoked from:       {}",
            printable(&list_or_none(&x.revoked_from))
        );
        let _ = writeln!(
            s,
            "    not on current yet: {}",
            printable(&list_or_none(&x.not_on_current))
        );
        let _ = writeln!(
            s,
            "    deployments:        {}",
            printable(&list_or_none(&x.deployments))
        );
        let _ = writeln!(
            s,
            "    delegated to tiers: {}",
            printable(&list_or_none(&x.delegated))
        );
    }
    s.push_str("\nservices suspended or resumed:\n");
    if r.services.is_empty() {
        s.push_str("  none\n");
    }
    for x in &r.services {
        let _ = writeln!(
            s,
            "  {}: {}",
            printable(&x.service),
            if x.suspended { "suspended" } else { "resumed" }
        );
    }
    s
}

/// Text for a table cell or the rest of a list item, with what Markdown would read as
/// syntax there escaped (emphasis, code, links, HTML, entities, a cell's end). Nothing
/// here starts a line, so list and heading markers need none.
fn md(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in printable(text).chars() {
        if matches!(
            c,
            '\\' | '`' | '*' | '_' | '~' | '[' | ']' | '<' | '>' | '&' | '|'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// For an incident record or a wiki (seed 004's template).
fn render_markdown(r: &Report) -> String {
    let mut s = String::from("## Incident report\n\n");
    if let Some(since) = &r.since {
        let _ = writeln!(s, "- Records since: {}", md(since));
    }
    let _ = writeln!(s, "- Impact window: {}", md(&window_text(r)));
    let _ = writeln!(
        s,
        "- Deploys: {}\n",
        if r.frozen_now { "frozen" } else { "not frozen" }
    );
    s.push_str("### Actions\n\n");
    if r.actions.is_empty() {
        s.push_str("None.\n");
    } else {
        s.push_str("| Time | Record | Action | By | Target | Version | Result | Reason |\n");
        s.push_str("|---|---|---|---|---|---|---|---|\n");
        for a in &r.actions {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                md(&a.time),
                md(&a.record),
                md(&a.action),
                md(&a.by),
                md(&target_text(&a.target)),
                a.version.map_or_else(|| "-".into(), |v| v.to_string()),
                md(&a.result),
                md(a.reason.as_deref().unwrap_or("-")),
            );
        }
    }
    s.push_str("\n### Secrets affected, and who held them\n\n");
    if r.secrets.is_empty() {
        s.push_str("None.\n");
    } else {
        s.push_str(
            "| Secret | Actions | Granted now | Revoked from | Not on current yet | Deployments | Delegated to |\n",
        );
        s.push_str("|---|---|---|---|---|---|---|\n");
        for x in &r.secrets {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} |",
                md(&x.name),
                md(&x.actions.join(", ")),
                md(&list_or_none(&x.granted_now)),
                md(&list_or_none(&x.revoked_from)),
                md(&list_or_none(&x.not_on_current)),
                md(&list_or_none(&x.deployments)),
                md(&list_or_none(&x.delegated)),
            );
        }
    }
    s.push_str("\n### Services suspended or resumed\n\n");
    if r.services.is_empty() {
        s.push_str("None.\n");
    }
    for x in &r.services {
        let _ = writeln!(
            s,
            "- {}: {}",
            md(&x.service),
            if x.suspended { "suspended" } else { "resumed" }
        );
    }
    s
}
