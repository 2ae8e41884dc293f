//! `deploy service …`: add, remove, list, check (suspend and resume are in
//! `breakglass.rs`, run in `run.rs`).

use std::io::Write;
use std::path::Path;

use ctl::{Command, Value};
use serde::Serialize;

use super::secret::all_grants;
use super::{Outcome, note, read_file_limited, validate};
use crate::cli::ServiceCommand;
use crate::connect::{Env, Server, Session, is_not_found};
use crate::error::CliError;
use crate::files::{self, ServiceFile};
use crate::output::{self, Align, Table, printable, write_json, write_text};

/// Runs one `deploy service` command.
///
/// # Errors
/// Whatever the command met.
pub async fn run(
    cmd: ServiceCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        ServiceCommand::Add {
            service,
            uid,
            manifest,
        } => add(server, env, service, uid, manifest.as_deref(), out).await,
        ServiceCommand::Remove { service } => {
            let command = Command::ServiceRemove {
                service: service.clone(),
            };
            validate(&command)?;
            let session = Session::admin(server, env).await?;
            let mut ctl = session.ctl().await?;
            let answer = ctl.send(&command).await?;
            ctl.close().await?;
            let line = match answer.number("grants").unwrap_or(0) as usize {
                0 => format!("removed service {service}\n"),
                n => format!(
                    "removed service {service} and its {}\n",
                    output::count(n, "grant", "grants")
                ),
            };
            write_text(out, &line)?;
            Ok(Outcome::Done)
        }
        ServiceCommand::Tiers {
            service,
            tiers,
            all,
        } => {
            let tiers = if all {
                None
            } else {
                tiers.or(Some(String::new()))
            };
            super::catalog::service_tiers(server, env, service, tiers, out).await
        }
        ServiceCommand::List(flag) => {
            let session = Session::admin(server, env).await?;
            list(&session, flag.json, out).await
        }
        ServiceCommand::Run {
            service,
            mount,
            restart_on_change,
            signal_on_change,
            command,
        } => {
            let on_change = match (restart_on_change, signal_on_change) {
                (true, _) => super::run::OnChange::Restart,
                (false, Some(sig)) => super::run::OnChange::Signal(sig),
                (false, None) => super::run::OnChange::Nothing,
            };
            super::run::run(server, env, &service, mount, on_change, &command).await
        }
        ServiceCommand::Check { service, json } => {
            validate(&Command::ServiceRemove {
                service: service.clone(),
            })?;
            let session = Session::admin(server, env).await?;
            // The gate a deploy passes: shut while deploys are frozen.
            super::breakglass::refuse_if_frozen(&session, "service check").await?;
            check(&session, &service, json, out).await
        }
        ServiceCommand::Suspend { service, reason } => {
            super::breakglass::suspend(service, reason, server, env, out).await
        }
        ServiceCommand::Resume { service, reason } => {
            super::breakglass::resume(service, reason, server, env, out).await
        }
    }
}

/// `deploy service add SERVICE --uid UID [--manifest FILE]`.
async fn add(
    server: &Server,
    env: &Env,
    service: String,
    uid: u32,
    manifest: Option<&Path>,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let uid_command = Command::ServiceUid {
        service: service.clone(),
        uid,
    };
    validate(&uid_command)?;
    let manifest_command = match manifest {
        Some(path) => Some(Command::ServiceManifest {
            service: service.clone(),
            manifest: Value::from(read_file_limited(path, "the manifest")?),
        }),
        None => None,
    };
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    // The uid and the manifest together or not at all: a refused manifest must not
    // leave a service half made.
    let mut commands = vec![uid_command];
    commands.extend(manifest_command.iter().cloned());
    let answers = match ctl.transaction(&commands).await {
        Ok(answers) => answers,
        Err(CliError::Ctl(text)) if manifest.is_some() && text.contains("manifest line ") => {
            return Err(CliError::BadManifest {
                path: manifest.map(Path::to_path_buf).unwrap_or_default(),
                reason: manifest_reason(&text).to_string(),
            });
        }
        Err(e) => return Err(e),
    };
    ctl.close().await?;
    let with = if manifest_command.is_some() {
        " with its manifest"
    } else {
        ""
    };
    let line = match answers.first() {
        Some(a) if a.flag("created") == Some(false) => match a.get("previous") {
            Some(previous) if previous == uid.to_string() => {
                format!("updated service {service}{with} (uid {uid}, as before)\n")
            }
            Some(previous) => {
                format!("updated service {service}{with}: uid {uid}, was {previous}\n")
            }
            None => format!("updated service {service}{with} (uid {uid})\n"),
        },
        _ => format!("added service {service} (uid {uid}){with}\n"),
    };
    write_text(out, &line)?;
    if manifest_command.is_some() {
        // A helpful look ahead, not part of the change: a failure here is not the add's.
        if let Ok(report) = service_report(&session, &service).await
            && !report.missing.is_empty()
        {
            note(&format!(
                "{} of the {} in {service}'s manifest {} not granted yet; \
                 see `deploy service check {service}`",
                report.missing.len(),
                output::count(report.secrets.len(), "secret", "secrets"),
                if report.missing.len() == 1 {
                    "is"
                } else {
                    "are"
                }
            ));
        }
    }
    Ok(Outcome::Done)
}

/// What a manifest refusal says, without the ctl prefix (`ctl: line 2: service: `): the
/// manifest's own line and what is wrong with it.
fn manifest_reason(text: &str) -> &str {
    text.find("manifest line ").map_or(text, |i| &text[i..])
}

/// What deploy knows of one service: its uid, the secrets its manifest needs, its grants.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct ServiceReport {
    /// The service's name.
    pub name: String,
    /// The uid mapped to it, if any.
    pub uid: Option<u32>,
    /// The secrets its manifest declares, in manifest order.
    pub secrets: Vec<String>,
    /// The secrets granted to it, sorted.
    pub granted: Vec<String>,
    /// The manifest's secrets that are not granted, in manifest order.
    pub missing: Vec<String>,
    /// Whether it is suspended: since when, by whom, why.
    pub suspended: Option<model::Mark>,
}

impl ServiceReport {
    fn new(name: String, file: ServiceFile, granted: Vec<String>) -> ServiceReport {
        let missing = files::missing_grants(&file.secrets, &granted);
        ServiceReport {
            name,
            uid: file.uid,
            secrets: file.secrets,
            granted,
            missing,
            suspended: file.suspended,
        }
    }
}

/// Reads `secrets/services/SERVICE` and `secrets/grants/SERVICE`.
pub(crate) async fn service_report(
    session: &Session,
    service: &str,
) -> Result<ServiceReport, CliError> {
    let path = ["secrets", "services", service];
    let file = match session.read(&path, files::MAX_SERVICE_FILE).await {
        Ok(text) => files::parse_service(&text)?,
        Err(e) if is_not_found(&e) => return Err(CliError::NoSuchService(service.to_string())),
        Err(e) => {
            let context = format!("reading secrets/services/{service}");
            return Err(CliError::request(context, e));
        }
    };
    let path = ["secrets", "grants", service];
    let granted = match session.read(&path, files::MAX_GRANTS_FILE).await {
        Ok(text) => files::parse_grants(&text)?,
        Err(e) if is_not_found(&e) => Vec::new(),
        Err(e) => {
            let context = format!("reading secrets/grants/{service}");
            return Err(CliError::request(context, e));
        }
    };
    Ok(ServiceReport::new(service.to_string(), file, granted))
}

/// `deploy service list [--json]`.
async fn list(session: &Session, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let entries = session
        .list(&["secrets", "services"], files::MAX_DIRECTORY)
        .await
        .map_err(|e| CliError::request("listing secrets/services", e))?;
    let mut grants = all_grants(session).await?;
    let mut reports = Vec::new();
    for entry in entries {
        let path = ["secrets", "services", &entry.name];
        let file = match session.read(&path, files::MAX_SERVICE_FILE).await {
            Ok(text) => files::parse_service(&text)?,
            // Removed since the listing.
            Err(e) if is_not_found(&e) => continue,
            Err(e) => {
                let context = format!("reading secrets/services/{}", entry.name);
                return Err(CliError::request(context, e));
            }
        };
        let granted = grants.remove(&entry.name).unwrap_or_default();
        reports.push(ServiceReport::new(entry.name, file, granted));
    }
    reports.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        write_json(out, &reports)?;
    } else {
        write_text(out, &render_list(&reports))?;
    }
    Ok(Outcome::Done)
}

/// The table of `deploy service list`.
fn render_list(reports: &[ServiceReport]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("UID", Align::Right),
        ("SECRETS", Align::Right),
        ("GRANTED", Align::Right),
        ("MISSING", Align::Right),
        ("STATE", Align::Left),
    ]);
    for r in reports {
        let state = match &r.suspended {
            Some(mark) => format!("suspended{}", crate::error::since_text(mark)),
            None => "active".to_string(),
        };
        table.row(vec![
            r.name.clone(),
            r.uid.map_or_else(|| "-".to_string(), |u| u.to_string()),
            r.secrets.len().to_string(),
            r.granted.len().to_string(),
            r.missing.len().to_string(),
            state,
        ]);
    }
    table.render()
}

/// `deploy service check SERVICE [--json]`: exit status 1 when a grant is missing.
async fn check(
    session: &Session,
    service: &str,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let report = service_report(session, service).await?;
    if json {
        #[derive(Serialize)]
        struct Json<'a> {
            ok: bool,
            #[serde(flatten)]
            report: &'a ServiceReport,
        }
        let ok = report.missing.is_empty();
        write_json(
            out,
            &Json {
                ok,
                report: &report,
            },
        )?;
    } else {
        write_text(out, &render_check(&report))?;
    }
    if report.missing.is_empty() {
        Ok(Outcome::Done)
    } else {
        if !json {
            note(&format!(
                "{service} lacks {} of the {} its manifest needs; grant each with \
                 `deploy secret grant {service} NAME`",
                report.missing.len(),
                output::count(report.secrets.len(), "secret", "secrets"),
            ));
        }
        Ok(Outcome::Findings)
    }
}

/// The text of `deploy service check`: a `missing NAME` line per secret not granted, or
/// one `ok:` line.
fn render_check(report: &ServiceReport) -> String {
    if report.missing.is_empty() {
        return match report.secrets.len() {
            0 => format!("ok: {}'s manifest needs no secrets\n", report.name),
            1 => format!(
                "ok: the 1 secret in {}'s manifest is granted\n",
                report.name
            ),
            n => format!(
                "ok: all {n} secrets in {}'s manifest are granted\n",
                report.name
            ),
        };
    }
    report
        .missing
        .iter()
        .map(|name| format!("missing {}\n", printable(name)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn report(manifest: &str, grants: &str) -> ServiceReport {
        let file = files::parse_service(manifest.as_bytes()).unwrap();
        let granted = files::parse_grants(grants.as_bytes()).unwrap();
        ServiceReport::new("web".into(), file, granted)
    }

    #[test]
    fn check_reports_missing_grants() {
        let r = report(
            "uid 1001\nsecret db_password\nsecret api_key\nconfig a=b\nsecret tls\n",
            "api_key\nunrelated\n",
        );
        assert_eq!(r.missing, strings(&["db_password", "tls"]));
        assert_eq!(render_check(&r), "missing db_password\nmissing tls\n");
        // Names from the server's manifest cannot forge lines or drive the terminal.
        let r = report("uid 1\nsecret a\x1b[2Jb\n", "");
        assert_eq!(render_check(&r), "missing a\\x1b[2Jb\n");
    }

    #[test]
    fn check_ok() {
        let r = report("uid 7\nsecret a\nsecret b\n", "a\nb\nc\n");
        assert!(r.missing.is_empty());
        assert_eq!(
            render_check(&r),
            "ok: all 2 secrets in web's manifest are granted\n"
        );
        let none = report("uid none\n", "");
        assert_eq!(render_check(&none), "ok: web's manifest needs no secrets\n");
        let one = report("uid 7\nsecret a\n", "a\n");
        assert_eq!(
            render_check(&one),
            "ok: the 1 secret in web's manifest is granted\n"
        );
    }

    #[test]
    fn list_table_and_json() {
        let reports = vec![
            report("uid 1001\nsecret a\nsecret b\n", "a\n"),
            ServiceReport {
                name: "worker".into(),
                ..report("uid none\n", "x\ny\n")
            },
        ];
        assert_eq!(
            render_list(&reports),
            "NAME     UID  SECRETS  GRANTED  MISSING  STATE\n\
             web     1001        2        1        1  active\n\
             worker     -        0        2        0  active\n"
        );
        assert_eq!(
            serde_json::to_value(&reports[0]).unwrap(),
            serde_json::json!({
                "name": "web", "uid": 1001, "secrets": ["a", "b"],
                "granted": ["a"], "missing": ["b"], "suspended": null
            })
        );
        let suspended = vec![report(
            "uid 1001\nsuspended 1714564800\nsuspended-by admin (uid 0)\n\
             suspended-reason INC-9\nsecret a\n",
            "a\n",
        )];
        assert_eq!(
            render_list(&suspended),
            "NAME   UID  SECRETS  GRANTED  MISSING  STATE\n\
             web   1001        1        1        0  suspended since 2024-05-01T12:00:00Z by \
             admin (uid 0): INC-9\n"
        );
        assert_eq!(
            serde_json::to_value(&suspended[0]).unwrap()["suspended"],
            serde_json::json!({"since": 1_714_564_800, "by": "admin (uid 0)", "reason": "INC-9"})
        );
        assert_eq!(
            serde_json::to_value(&reports[1]).unwrap()["uid"],
            serde_json::Value::Null
        );
    }
}
