//! Break-glass (seed 004), one command each: `deploy freeze` and `unfreeze`, `deploy
//! secret revoke-all`, `deploy service suspend` and `resume`, through the ctl commands
//! `freeze`, `unfreeze`, `revoke-all`, `service ... suspend|resume`, each with the
//! `reason` it was given; and the ownership matrix, `deploy secret matrix`, from the ctl
//! query `matrix`, printed as a table, JSON, CSV or Markdown.
//!
//! A freeze is the server's to enforce: it refuses what deploys something. deploy refuses
//! too where the server cannot tell a deploy from a look (`deploy service check`, the
//! gate a deploy passes), from `secrets/status` ([`refuse_if_frozen`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use ctl::{Answer, Command};
use serde::{Deserialize, Serialize};

use super::versions::age;
use super::{Outcome, read_status, validate};
use crate::cli::MatrixFormat;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{self, Align, Table, printable, when, write_json, write_text};

/// Sends `command` as the admin, after `reason TEXT` if given: its answer.
async fn apply(
    server: &Server,
    env: &Env,
    command: &Command,
    reason: Option<String>,
) -> Result<Answer, CliError> {
    let reason = reason.map(|text| Command::Reason { text });
    if let Some(reason) = &reason {
        validate(reason)?;
    }
    validate(command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    if let Some(reason) = &reason {
        ctl.send(reason).await?;
    }
    let answer = ctl.send(command).await?;
    ctl.close().await?;
    Ok(answer)
}

/// `deploy freeze [--reason R]`.
///
/// # Errors
/// A bad reason, the server's refusal.
pub async fn freeze(
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let a = apply(server, env, &Command::Freeze, reason).await?;
    let since = when(a.number("since").unwrap_or(0));
    let line = if a.flag("already") == Some(true) {
        format!("deploys were frozen already, since {since}; nothing changed (see deploy status)\n")
    } else {
        format!(
            "froze deploys at {since}: grants, service changes, the catalog, bundles, `deploy \
             service check` and `run`, and mounts for services are refused until `deploy \
             unfreeze`; running services keep reading\n"
        )
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// `deploy unfreeze [--reason R]`.
///
/// # Errors
/// A bad reason, the server's refusal.
pub async fn unfreeze(
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let a = apply(server, env, &Command::Unfreeze, reason).await?;
    let line = if a.flag("was_frozen") == Some(false) {
        "deploys were not frozen; nothing changed\n"
    } else {
        "unfroze deploys: grants, service changes, the catalog, bundles and mounts work again\n"
    };
    write_text(out, line)?;
    Ok(Outcome::Done)
}

/// `deploy secret revoke-all NAME [--reason R]`.
///
/// # Errors
/// A bad name or reason, the server's refusal (no such secret).
pub async fn revoke_all(
    name: String,
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::RevokeAll { name: name.clone() };
    let a = apply(server, env, &command, reason).await?;
    let services: Vec<String> = match &a.body {
        Some(body) => serde_json::from_slice(body).map_err(|e| {
            CliError::Unexpected(format!("the services revoke-all names do not read: {e}"))
        })?,
        None => Vec::new(),
    };
    let line = if services.is_empty() {
        format!("no service was granted {name}; nothing changed\n")
    } else {
        format!(
            "revoked {name} from {}: {}; each one's next read of it fails, of open files too\n",
            output::count(services.len(), "service", "services"),
            services.join(", ")
        )
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// `deploy service suspend SERVICE [--reason R]`.
///
/// # Errors
/// A bad name or reason, the server's refusal (no such service).
pub async fn suspend(
    service: String,
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::ServiceSuspend {
        service: service.clone(),
    };
    let a = apply(server, env, &command, reason)
        .await
        .map_err(|e| no_such_service(e, &service))?;
    let since = when(a.number("since").unwrap_or(0));
    let line = if a.flag("already") == Some(true) {
        format!("{service} was suspended already, since {since}; nothing changed\n")
    } else {
        format!(
            "suspended {service}: every read through its view fails from now on, of open files \
             too; its grants stay (`deploy service resume {service}` brings it back)\n"
        )
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// `deploy service resume SERVICE [--reason R]`.
///
/// # Errors
/// A bad name or reason, the server's refusal (no such service).
pub async fn resume(
    service: String,
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::ServiceResume {
        service: service.clone(),
    };
    let a = apply(server, env, &command, reason)
        .await
        .map_err(|e| no_such_service(e, &service))?;
    let line = if a.flag("was_suspended") == Some(false) {
        format!("{service} was not suspended; nothing changed\n")
    } else {
        format!("resumed {service}: its reads work again\n")
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// The server's "no such service" as deploy says it, with the name.
fn no_such_service(e: CliError, service: &str) -> CliError {
    match e {
        CliError::Ctl(text) if text.contains("no such service") => {
            CliError::NoSuchService(service.to_string())
        }
        other => other,
    }
}

/// Refuses `deploy {what}` while deploys are frozen, as `secrets/status` says.
///
/// # Errors
/// [`CliError::Frozen`], with since when, by whom and why; the status's own.
pub async fn refuse_if_frozen(session: &Session, what: &'static str) -> Result<(), CliError> {
    match read_status(session).await?.frozen {
        Some(mark) => Err(CliError::Frozen {
            what,
            mark: Some(mark),
        }),
        None => Ok(()),
    }
}

/// The matrix as the server answers `matrix` (and `--json` prints it).
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct Matrix {
    /// The services: the columns.
    pub services: Vec<String>,
    /// The services suspended.
    #[serde(default)]
    pub suspended: Vec<String>,
    /// The secrets: the rows.
    pub secrets: Vec<MatrixRow>,
}

/// One secret of the matrix.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq)]
pub struct MatrixRow {
    /// Its name.
    pub name: String,
    /// Its class.
    pub class: Option<String>,
    /// Its owner.
    pub owner: Option<String>,
    /// Its current version (none: declared, no value stored).
    pub version: Option<u64>,
    /// When that version was made.
    pub updated: Option<u64>,
    /// Its age, in seconds.
    pub age: Option<u64>,
    /// Its rotation period, in seconds.
    pub rotate_every: u64,
    /// Older than its rotation period.
    pub stale: bool,
    /// The services granted it, with when each grant ends.
    pub grants: BTreeMap<String, MatrixGrant>,
}

/// A grant of the matrix.
#[derive(Debug, Deserialize, Serialize, PartialEq, Eq, Clone, Copy)]
pub struct MatrixGrant {
    /// When it ends by itself; none: until revoked.
    pub expires: Option<u64>,
}

/// `deploy secret matrix [--json|--csv|--markdown]`.
///
/// # Errors
/// The server's, an answer that does not read.
pub async fn matrix(
    format: MatrixFormat,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&Command::Matrix).await?;
    ctl.close().await?;
    let body = answer.body.map(|b| b.to_vec()).unwrap_or_default();
    let m: Matrix = serde_json::from_slice(&body)
        .map_err(|e| CliError::Unexpected(format!("the matrix does not read: {e}")))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if format.json {
        write_json(out, &m)?;
    } else if format.csv {
        write_text(out, &render_csv(&m))?;
    } else if format.markdown {
        write_text(out, &render_markdown(&m))?;
    } else {
        write_text(out, &render_table(&m, now))?;
    }
    Ok(Outcome::Done)
}

/// `-`, or the text.
fn or_dash(text: Option<&str>) -> &str {
    text.unwrap_or("-")
}

/// How long until a grant ends, for people, in its largest unit, rounded to the nearest:
/// `12h` for 11 hours 59 minutes (`age` rounds down, which would say 11h).
fn ends_in(secs: u64) -> String {
    for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= scale {
            return format!("{}{unit}", (secs + scale / 2) / scale);
        }
    }
    format!("{secs}s")
}

/// A row's age, `-` for a secret with no value.
fn age_text(r: &MatrixRow) -> String {
    r.age.map_or_else(|| "-".into(), age)
}

/// The table for a terminal: a row per secret, a column per service (`yes` where
/// granted, `~12h` for a grant that ends in 12 hours, `-` where not), then a legend.
fn render_table(m: &Matrix, now: u64) -> String {
    let mut columns = vec![
        ("SECRET", Align::Left),
        ("CLASS", Align::Left),
        ("OWNER", Align::Left),
        ("AGE", Align::Right),
        ("ROTATE EVERY", Align::Right),
    ];
    let headers = service_headers(m);
    columns.extend(headers.iter().map(|s| (s.as_str(), Align::Left)));
    let mut table = Table::new(&columns);
    for r in &m.secrets {
        let shown_age = if r.stale {
            format!("{}!", age_text(r))
        } else {
            age_text(r)
        };
        let mut cells = vec![
            r.name.clone(),
            or_dash(r.class.as_deref()).to_string(),
            or_dash(r.owner.as_deref()).to_string(),
            shown_age,
            model::format_duration(r.rotate_every),
        ];
        cells.extend(m.services.iter().map(|s| match r.grants.get(s) {
            None => "-".to_string(),
            Some(MatrixGrant { expires: None }) => "yes".to_string(),
            Some(MatrixGrant { expires: Some(t) }) => {
                format!("~{}", ends_in(t.saturating_sub(now)))
            }
        }));
        table.row(cells);
    }
    let mut text = table.render();
    text.push_str(
        "\nyes: granted; ~12h: granted, ends by itself in 12h; -: not granted. AGE is the \
         current version's; ! marks one older than ROTATE EVERY.\n",
    );
    text
}

/// The services' column headers: a suspended one says so (its grants stay, and show).
fn service_headers(m: &Matrix) -> Vec<String> {
    m.services
        .iter()
        .map(|s| {
            if m.suspended.contains(s) {
                format!("{s} (suspended)")
            } else {
                s.clone()
            }
        })
        .collect()
}

/// A CSV field (RFC 4180): quoted, with `"` doubled, when it holds a comma, a quote or
/// a line break. Control characters (which no name or owner holds: the catalog refuses
/// them) are written as escapes first, so that the file is safe to show on a terminal.
fn csv_field(text: &str) -> String {
    let text = printable(text);
    // A cell a spreadsheet would take for a formula (OWASP's CSV injection) starts with
    // a quote mark, so that it stays text.
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{text}"))
    } else {
        text
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.into_owned()
    }
}

/// The matrix as CSV: a header, then a row per secret; grant cells are `yes`, `until
/// TIME` or `no`; times UTC ISO-8601, ages and periods as `95d`.
fn render_csv(m: &Matrix) -> String {
    let mut out = String::new();
    let mut header = vec![
        "secret".to_string(),
        "class".into(),
        "owner".into(),
        "version".into(),
        "updated".into(),
        "age".into(),
        "rotate_every".into(),
        "stale".into(),
    ];
    header.extend(m.services.iter().cloned());
    push_csv_line(&mut out, &header);
    for r in &m.secrets {
        let mut cells = vec![
            r.name.clone(),
            r.class.clone().unwrap_or_default(),
            r.owner.clone().unwrap_or_default(),
            r.version.map(|v| v.to_string()).unwrap_or_default(),
            r.updated.map(when).unwrap_or_default(),
            r.age.map(age).unwrap_or_default(),
            model::format_duration(r.rotate_every),
            if r.stale { "yes" } else { "no" }.to_string(),
        ];
        cells.extend(m.services.iter().map(|s| match r.grants.get(s) {
            None => "no".to_string(),
            Some(MatrixGrant { expires: None }) => "yes".to_string(),
            Some(MatrixGrant { expires: Some(t) }) => format!("until {}", when(*t)),
        }));
        push_csv_line(&mut out, &cells);
    }
    out
}

/// One CSV record, its fields escaped, ending in CRLF as RFC 4180 has it.
fn push_csv_line(out: &mut String, cells: &[String]) {
    let line: Vec<String> = cells.iter().map(|c| csv_field(c)).collect();
    out.push_str(&line.join(","));
    out.push_str("\r\n");
}

/// Text for a Markdown table cell, shown as written: control characters as escapes
/// (so also no line break, which would end the row), then every character Markdown or
/// GitHub's tables would read as syntax (`|` ends a cell; `*`, `_`, `` ` ``, `[`, `<`, `&`,
/// `~`, `$`, `\` format, link, or start HTML or math) escaped with a backslash, which
/// CommonMark allows before any ASCII punctuation.
fn md_cell(text: &str) -> String {
    let mut out = String::new();
    for c in printable(text).chars() {
        if matches!(
            c,
            '\\' | '|' | '*' | '_' | '`' | '[' | ']' | '<' | '>' | '&' | '~' | '$' | '#' | '!'
        ) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The matrix as a Markdown table, as seed 004's: secrets as code, ✅ where granted (⏳
/// and when it ends, for a grant that ends by itself), ❌ where not.
fn render_markdown(m: &Matrix) -> String {
    let mut out = String::from("| Secret | Class | Owner | Age | Rotate every |");
    for s in service_headers(m) {
        let _ = write!(out, " {} |", md_cell(&s));
    }
    out.push_str("\n|---|---|---|---|---|");
    for _ in &m.services {
        out.push_str("---|");
    }
    out.push('\n');
    for r in &m.secrets {
        let shown_age = match (r.age, r.stale) {
            (None, _) => "-".to_string(),
            (Some(a), true) => format!("{} (stale)", age(a)),
            (Some(a), false) => age(a),
        };
        // A name follows the name rule ([A-Za-z0-9._-]): a code span holds it as it is.
        let _ = write!(
            out,
            "| `{}` | {} | {} | {shown_age} | {} |",
            r.name,
            md_cell(or_dash(r.class.as_deref())),
            md_cell(or_dash(r.owner.as_deref())),
            model::format_duration(r.rotate_every),
        );
        for s in &m.services {
            let mark = match r.grants.get(s) {
                None => "❌".to_string(),
                Some(MatrixGrant { expires: None }) => "✅".to_string(),
                Some(MatrixGrant { expires: Some(t) }) => format!("⏳ until {}", when(*t)),
            };
            let _ = write!(out, " {mark} |");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_csv_cell_a_spreadsheet_would_run_as_a_formula_stays_text() {
        assert_eq!(csv_field("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_field("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_field("-1+2"), "'-1+2");
        assert_eq!(csv_field("platform team"), "platform team");
    }

    /// db (infrastructure, an owner with a comma, quotes and a pipe, stale) granted to web
    /// and to worker until a time; prompted (declared, no value) granted to nobody.
    fn matrix() -> Matrix {
        Matrix {
            services: vec!["web".into(), "worker".into()],
            suspended: vec![],
            secrets: vec![
                MatrixRow {
                    name: "db".into(),
                    class: Some("infrastructure".into()),
                    owner: Some("Ops, \"Platform\" | SRE".into()),
                    version: Some(3),
                    updated: Some(1_714_564_800),
                    age: Some(40 * 86_400),
                    rotate_every: 30 * 86_400,
                    stale: true,
                    grants: [
                        ("web".to_string(), MatrixGrant { expires: None }),
                        (
                            "worker".to_string(),
                            MatrixGrant {
                                expires: Some(1_714_568_400),
                            },
                        ),
                    ]
                    .into(),
                },
                MatrixRow {
                    name: "prompted".into(),
                    class: None,
                    owner: None,
                    version: None,
                    updated: None,
                    age: None,
                    rotate_every: 90 * 86_400,
                    stale: false,
                    grants: BTreeMap::new(),
                },
            ],
        }
    }

    #[test]
    fn a_table_for_a_terminal() {
        assert_eq!(
            render_table(&matrix(), 1_714_564_800),
            "SECRET    CLASS           OWNER                   AGE  ROTATE EVERY  web  worker\n\
             db        infrastructure  Ops, \"Platform\" | SRE  40d!           30d  yes  ~1h\n\
             prompted  -               -                         -           90d  -    -\n\
             \n\
             yes: granted; ~12h: granted, ends by itself in 12h; -: not granted. AGE is the \
             current version's; ! marks one older than ROTATE EVERY.\n"
        );
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        assert_eq!(
            render_csv(&matrix()),
            "secret,class,owner,version,updated,age,rotate_every,stale,web,worker\r\n\
             db,infrastructure,\"Ops, \"\"Platform\"\" | SRE\",3,2024-05-01T12:00:00Z,40d,30d,\
             yes,yes,until 2024-05-01T13:00:00Z\r\n\
             prompted,,,,,,90d,no,no,no\r\n"
        );
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a\"b"), "\"a\"\"b\"");
        assert_eq!(csv_field("a\nb"), "a\\nb");
    }

    #[test]
    fn markdown_escapes_what_markdown_would_read() {
        assert_eq!(
            render_markdown(&matrix()),
            "| Secret | Class | Owner | Age | Rotate every | web | worker |\n\
             |---|---|---|---|---|---|---|\n\
             | `db` | infrastructure | Ops, \"Platform\" \\| SRE | 40d (stale) | 30d | ✅ | \
             ⏳ until 2024-05-01T13:00:00Z |\n\
             | `prompted` | - | - | - | 90d | ❌ | ❌ |\n"
        );
        assert_eq!(
            md_cell("*a* _b_ `c` [d](e) <f> &amp; ~~g~~ $h$ \\ |"),
            "\\*a\\* \\_b\\_ \\`c\\` \\[d\\](e) \\<f\\> \\&amp; \\~\\~g\\~\\~ \\$h\\$ \\\\ \\|"
        );
        // A line break cannot end the row.
        assert_eq!(md_cell("a\nb"), "a\\\\nb");
    }

    #[test]
    fn a_suspended_service_says_so_in_its_column() {
        let mut m = matrix();
        m.suspended = vec!["worker".into()];
        assert!(
            render_table(&m, 0).starts_with(
                "SECRET    CLASS           OWNER                   AGE  ROTATE EVERY  web  \
                 worker (suspended)\n"
            ),
            "{}",
            render_table(&m, 0)
        );
        assert!(render_markdown(&m).starts_with(
            "| Secret | Class | Owner | Age | Rotate every | web | worker (suspended) |\n"
        ));
        // CSV keeps plain service names as its column names.
        assert!(render_csv(&m).starts_with(
            "secret,class,owner,version,updated,age,rotate_every,stale,web,worker\r\n"
        ));
    }

    #[test]
    fn a_grant_ends_in_its_nearest_unit() {
        assert_eq!(ends_in(12 * 3600 - 2), "12h");
        assert_eq!(ends_in(86_400 + 60), "1d");
        assert_eq!(ends_in(90), "2m");
        assert_eq!(ends_in(59), "59s");
    }
}
