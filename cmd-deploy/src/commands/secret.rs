//! `deploy secret …`: set, list, delete, grant, revoke, rotate-key, get (revoke-all and
//! matrix are in `breakglass.rs`, the versions' commands in `versions.rs`).

use std::collections::BTreeMap;
use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use ctl::{Answer, Command, Value};
use serde::Serialize;
use zeroize::Zeroizing;

use super::{Outcome, note, read_file_limited, read_limited, read_status, validate};
use crate::cli::SecretCommand;
use crate::connect::{Env, Server, Session, is_not_found, is_permission_denied};
use crate::error::CliError;
use crate::files::{self, Rotation};
use crate::glob::Glob;
use crate::output::{self, Align, Table, write_json, write_text};

/// How often `rotate-key` polls `secrets/status`.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// How long `rotate-key` works before it shows progress at all: a rotation that is over
/// before anyone could read a bar shows none.
const SHOW_PROGRESS_AFTER: Duration = Duration::from_secs(1);

/// How often `rotate-key` prints a progress line when stderr is not a terminal.
const PLAIN_PROGRESS_INTERVAL: Duration = Duration::from_secs(2);

/// The refusal of a value given as an argument.
const VALUE_ON_ARGV: &str = "secret set takes no value on the command line (other users \
    can see arguments, and shells keep them in history); type it at the prompt, pipe it \
    to stdin, or pass --file PATH";

/// Runs one `deploy secret` command.
///
/// # Errors
/// Whatever the command met.
pub async fn run(
    cmd: SecretCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        SecretCommand::Set {
            name,
            file,
            generate,
            allow_empty,
            argv_value,
        } => {
            if !argv_value.is_empty() {
                return Err(CliError::Usage(VALUE_ON_ARGV.into()));
            }
            if let Some(template) = generate {
                return super::catalog::generate(server, env, name, template, out).await;
            }
            set(server, env, name, file.as_deref(), allow_empty, out).await
        }
        SecretCommand::Meta(args) => super::catalog::meta(server, env, args, out).await,
        SecretCommand::Strategy(args) => super::catalog::strategy(server, env, args, out).await,
        SecretCommand::Delegate {
            name,
            tier,
            reference,
            via,
            argv_value,
        } => {
            let d = super::delegate::Delegation {
                name,
                tier,
                reference,
                via,
            };
            super::delegate::run(d, &argv_value, server, env, out).await
        }
        SecretCommand::Present { name, tier, absent } => {
            super::catalog::present(server, env, name, tier, absent, out).await
        }
        SecretCommand::Plan {
            service,
            tier,
            json,
        } => super::catalog::plan(server, env, service, tier, json, out).await,
        SecretCommand::Lint { tier, json } => {
            super::catalog::lint(server, env, tier, json, out).await
        }
        SecretCommand::Import {
            dotenv,
            json,
            dir,
            allow_empty,
        } => {
            use super::import::{Source, import};
            let source = match (dotenv, json, dir) {
                (Some(f), _, _) => Source::Dotenv(f),
                (_, Some(f), _) => Source::Json(f),
                (_, _, Some(d)) => Source::Dir(d),
                // clap requires one of them.
                _ => return Err(CliError::Usage("give --dotenv, --json or --dir".into())),
            };
            import(server, env, source, allow_empty, out).await
        }
        SecretCommand::List {
            stale: true, json, ..
        } => super::versions::stale(json, server, env, out).await,
        SecretCommand::List { pattern, json, .. } => {
            let glob = pattern.as_deref().map(Glob::parse).transpose();
            let glob = glob.map_err(CliError::Usage)?;
            let session = Session::admin(server, env).await?;
            list(&session, glob.as_ref(), json, out).await
        }
        SecretCommand::Delete { name } => {
            let answer = apply(server, env, &Command::Delete { name: name.clone() }).await?;
            let line = match answer.number("grants").unwrap_or(0) as usize {
                0 => format!("deleted secret {name}\n"),
                n => format!(
                    "deleted secret {name} and its {}\n",
                    output::count(n, "grant", "grants")
                ),
            };
            write_text(out, &line)?;
            Ok(Outcome::Done)
        }
        SecretCommand::Grant {
            service,
            name,
            expires,
        } => {
            let command = Command::Grant {
                service: service.clone(),
                name: name.clone(),
                expires,
            };
            let answer = apply(server, env, &command).await?;
            let until = answer
                .number("expires")
                .map(|t| output::iso8601(u32::try_from(t).unwrap_or(u32::MAX)));
            let line = match (answer.flag("already") == Some(true), until) {
                (true, _) => format!("{service} could already read {name}; nothing changed\n"),
                (false, Some(until)) => {
                    format!("granted {name} to {service} until {until}\n")
                }
                (false, None) => format!("granted {name} to {service}\n"),
            };
            write_text(out, &line)?;
            Ok(Outcome::Done)
        }
        SecretCommand::Revoke { service, name } => {
            let command = Command::Revoke {
                service: service.clone(),
                name: name.clone(),
            };
            let answer = apply(server, env, &command).await?;
            let line = if answer.flag("was_granted") == Some(false) {
                format!("{service} was not granted {name}; nothing changed\n")
            } else {
                format!("revoked {name} from {service}\n")
            };
            write_text(out, &line)?;
            Ok(Outcome::Done)
        }
        SecretCommand::RevokeAll { name, reason } => {
            super::breakglass::revoke_all(name, reason, server, env, out).await
        }
        SecretCommand::Matrix(format) => super::breakglass::matrix(format, server, env, out).await,
        SecretCommand::Rotate(a) => {
            let r = super::versions::Rotation {
                name: a.name,
                generate: a.generate,
                file: a.file,
                overlap: a.overlap,
                test: a.test,
                revoke_previous: a.revoke_previous,
                retire_when_read: a.retire_when_read,
                reason: server.reason.clone(),
                allow_empty: a.allow_empty,
            };
            super::versions::rotate(r, &a.argv_value, server, env, out).await
        }
        SecretCommand::Rollback { name } => {
            let reason = server.reason.clone();
            super::versions::step(Command::Rollback { name }, reason, server, env, out).await
        }
        SecretCommand::Retire { name } => {
            let reason = server.reason.clone();
            super::versions::step(Command::Retire { name }, reason, server, env, out).await
        }
        SecretCommand::Discard { name } => {
            let reason = server.reason.clone();
            super::versions::step(Command::Discard { name }, reason, server, env, out).await
        }
        SecretCommand::Holders { name, json } => {
            super::holders::holders(name, json, server, env, out).await
        }
        SecretCommand::RotationStatus { name, json } => {
            super::holders::rotation_status(name, json, server, env, out).await
        }
        SecretCommand::History { name, json } => {
            super::versions::history(name, json, server, env, out).await
        }
        SecretCommand::RotateKey => {
            let session = Session::admin(server, env).await?;
            rotate_key(&session, out).await
        }
        SecretCommand::Get { name, service, raw } => {
            get(server, env, &name, &service, raw, out).await
        }
    }
}

/// Validates, connects, sends one command and returns its result.
async fn apply(server: &Server, env: &Env, command: &Command) -> Result<Answer, CliError> {
    validate(command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(command).await?;
    ctl.close().await?;
    Ok(answer)
}

/// `deploy secret set NAME [--file PATH] [--allow-empty]`.
async fn set(
    server: &Server,
    env: &Env,
    name: String,
    file: Option<&Path>,
    allow_empty: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // Check the name before anyone types a value for it.
    validate(&Command::Set {
        name: name.clone(),
        value: Value::default(),
    })?;
    // Connect before prompting too: a server that is down should not cost a typed value.
    let session = Session::admin(server, env).await?;
    let (value, from) = match file {
        Some(path) => (
            read_file_limited(path, "the value")?,
            format!("in the file {}", path.display()),
        ),
        None if io::stdin().is_terminal() => (prompt_value(&name)?, "typed at the prompt".into()),
        None => (
            read_limited(io::stdin().lock(), "stdin", "the value")?,
            "from stdin".into(),
        ),
    };
    // Enter at the prompt, or an empty pipe, is far more often a mistake than a wish to
    // replace the value with nothing; and a replaced value cannot be had back.
    if value.is_empty() && !allow_empty {
        return Err(CliError::EmptyValue { from });
    }
    let size = value.len();
    let command = Command::Set {
        name: name.clone(),
        value: Value::from(value),
    };
    validate(&command)?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&command).await?;
    ctl.close().await?;
    drop(command);
    let size = output::count(size, "byte", "bytes");
    let line = match answer.number("version") {
        Some(version) => format!("set {name} (version {version}, {size})\n"),
        None => format!("set {name} ({size})\n"),
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// Reads a value typed at the terminal, without echo; the newline that ends it is dropped.
///
/// This blocks the (single-threaded) runtime on purpose: nothing else is in flight, and
/// main.rs has installed a SIGINT handler, so Ctrl-C (which rpassword, with the terminal
/// in raw mode, turns into a raised SIGINT) makes rpassword return, restoring echo, instead
/// of killing the process with the terminal still silent.
fn prompt_value(name: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    prompt_hidden(&format!("Value for {name}: "))
}

/// Shows `prompt` on stderr and reads a line typed at the terminal without echo (see
/// [`prompt_value`]).
pub(crate) fn prompt_hidden(prompt: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let config = rpassword::ConfigBuilder::new()
        .output_writer(io::stderr())
        .build();
    let typed = rpassword::prompt_password_with_config(prompt, config);
    match typed {
        Ok(text) => Ok(Zeroizing::new(text.into_bytes())),
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(CliError::Interrupted),
        Err(source) => Err(CliError::Read {
            what: "the value from the terminal".into(),
            source,
        }),
    }
}

/// One row of `deploy secret list`.
#[derive(Debug, PartialEq, Eq, Serialize)]
pub struct SecretRow {
    /// The secret's name.
    pub name: String,
    /// Its version (the qid version of its store entry).
    pub version: u32,
    /// Its size in bytes.
    pub size: u64,
    /// When it last changed, UTC ISO-8601.
    pub mtime: String,
    /// The services granted it, sorted.
    pub granted_to: Vec<String>,
    /// When the grants that end by themselves end (UTC ISO-8601), by service.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub grants_end: BTreeMap<String, String>,
}

/// `deploy secret list [PATTERN] [--json]`.
async fn list(
    session: &Session,
    glob: Option<&Glob>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let mut store = session
        .list(&["secrets", "store"], files::MAX_DIRECTORY)
        .await
        .map_err(|e| CliError::request("listing secrets/store", e))?;
    if let Some(glob) = glob {
        store.retain(|st| glob.matches(&st.name));
    }
    let grants = grant_files(session).await?;
    let mut holders: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let mut ends: BTreeMap<&str, BTreeMap<String, String>> = BTreeMap::new();
    for (service, file) in &grants {
        for name in &file.names {
            holders.entry(name).or_default().push(service.clone());
            if let Some(&t) = file.expires.get(name) {
                let until = output::iso8601(u32::try_from(t).unwrap_or(u32::MAX));
                ends.entry(name).or_default().insert(service.clone(), until);
            }
        }
    }
    let mut rows: Vec<SecretRow> = store
        .into_iter()
        .map(|st| SecretRow {
            granted_to: holders.remove(st.name.as_str()).unwrap_or_default(),
            grants_end: ends.remove(st.name.as_str()).unwrap_or_default(),
            version: st.qid.version,
            size: st.length,
            mtime: output::iso8601(st.mtime),
            name: st.name,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        write_json(out, &rows)?;
    } else {
        write_text(out, &render_list(&rows))?;
        if rows.is_empty() && glob.is_some() {
            note("no secret's name matches the pattern; see them all with `deploy secret list`");
        }
    }
    Ok(Outcome::Done)
}

/// The table of `deploy secret list`.
fn render_list(rows: &[SecretRow]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("VERSION", Align::Right),
        ("SIZE", Align::Right),
        ("MODIFIED", Align::Left),
        ("GRANTED TO", Align::Left),
    ]);
    for r in rows {
        let granted = if r.granted_to.is_empty() {
            "-".to_string()
        } else {
            r.granted_to
                .iter()
                .map(|s| match r.grants_end.get(s) {
                    Some(until) => format!("{s} (until {until})"),
                    None => s.clone(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        table.row(vec![
            r.name.clone(),
            r.version.to_string(),
            r.size.to_string(),
            r.mtime.clone(),
            granted,
        ]);
    }
    table.render()
}

/// Every service's grants, from `secrets/grants/*`, by service name.
pub(crate) async fn all_grants(
    session: &Session,
) -> Result<BTreeMap<String, Vec<String>>, CliError> {
    Ok(grant_files(session)
        .await?
        .into_iter()
        .map(|(service, file)| (service, file.names))
        .collect())
}

/// Every service's grants file, parsed, by service name.
async fn grant_files(session: &Session) -> Result<BTreeMap<String, model::Grants>, CliError> {
    let entries = session
        .list(&["secrets", "grants"], files::MAX_DIRECTORY)
        .await
        .map_err(|e| CliError::request("listing secrets/grants", e))?;
    let mut grants = BTreeMap::new();
    for entry in entries {
        let path = ["secrets", "grants", &entry.name];
        match session.read(&path, files::MAX_GRANTS_FILE).await {
            Ok(text) => {
                grants.insert(entry.name, files::parse_grant_file(&text)?);
            }
            // Removed since the listing: it has no grants any more.
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                let context = format!("reading secrets/grants/{}", entry.name);
                return Err(CliError::request(context, e));
            }
        }
    }
    Ok(grants)
}

/// `deploy secret rotate-key`: sends `rotate-key` and, while its Twrite is outstanding,
/// polls `secrets/status` on the same connection to show progress.
async fn rotate_key(session: &Session, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let before = read_status(session).await?;
    let started = Instant::now();
    let mut progress = Progress::new(started, io::stderr().is_terminal());
    let mut ctl = session.ctl().await?;
    let mut last_total = None;
    {
        let send = ctl.send(&Command::RotateKey);
        tokio::pin!(send);
        // The first poll waits one interval: a quick rotation shows no progress at all.
        let first = tokio::time::Instant::now() + POLL_INTERVAL;
        let mut tick = tokio::time::interval_at(first, POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                sent = &mut send => {
                    progress.finish();
                    sent?;
                    break;
                }
                _ = tick.tick() => {
                    // A failed poll only costs a frame of progress; the write decides.
                    if let Ok(Rotation::Running { done, total }) =
                        read_status(session).await.map(|s| s.rotation)
                    {
                        last_total = Some(total);
                        progress.show(done, total);
                    }
                }
            }
        }
    }
    ctl.close().await?;
    let elapsed = started.elapsed();
    let after = read_status(session).await?;
    let count = last_total.or(after.secrets).or(before.secrets);
    write_text(
        out,
        &rotation_summary(before.key, after.key, count, elapsed),
    )?;
    Ok(Outcome::Done)
}

/// The line `rotate-key` ends with.
fn rotation_summary(
    old: Option<u64>,
    new: Option<u64>,
    secrets: Option<u64>,
    elapsed: Duration,
) -> String {
    let id = |k: Option<u64>| k.map_or_else(|| "?".to_string(), |k| k.to_string());
    let count = match secrets {
        Some(1) => "1 secret".to_string(),
        Some(n) => format!("{n} secrets"),
        None => "all secrets".to_string(),
    };
    format!(
        "rotated key {} → {}: {count} re-encrypted in {}\n",
        id(old),
        id(new),
        output::human_duration(elapsed)
    )
}

/// Rotation progress on stderr, once the rotation has lasted [`SHOW_PROGRESS_AFTER`]: a
/// bar (indicatif) on a terminal, else a plain line now and then (logs and CI do not
/// want a line per poll, nor the bar's control sequences).
struct Progress {
    started: Instant,
    terminal: bool,
    bar: Option<indicatif::ProgressBar>,
    last_plain: Option<Instant>,
}

impl Progress {
    fn new(started: Instant, terminal: bool) -> Progress {
        Progress {
            started,
            terminal,
            bar: None,
            last_plain: None,
        }
    }

    /// What to show now, `now` being `elapsed` into the work.
    fn due(&self, elapsed: Duration) -> Show {
        if elapsed < SHOW_PROGRESS_AFTER {
            Show::Nothing
        } else if self.terminal {
            Show::Bar
        } else if self
            .last_plain
            .is_none_or(|t| t.elapsed() >= PLAIN_PROGRESS_INTERVAL)
        {
            Show::Line
        } else {
            Show::Nothing
        }
    }

    fn show(&mut self, done: u64, total: u64) {
        match self.due(self.started.elapsed()) {
            Show::Nothing => {}
            Show::Bar => {
                let started = self.started;
                let bar = self
                    .bar
                    .get_or_insert_with(|| new_bar(started, done, total));
                bar.set_length(total);
                bar.set_position(done);
            }
            Show::Line => {
                let _ = writeln!(
                    io::stderr(),
                    "deploy: re-encrypting: {done}/{total} secrets"
                );
                self.last_plain = Some(Instant::now());
            }
        }
    }

    /// Clears the bar so that the summary starts on a clean line.
    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// What [`Progress`] shows at a poll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Show {
    Nothing,
    Bar,
    Line,
}

/// The bar: `re-encrypting [#######>......] 35/100 secrets, 2s`, its clock counting
/// from `started`.
fn new_bar(started: Instant, done: u64, total: u64) -> indicatif::ProgressBar {
    let style = indicatif::ProgressStyle::with_template(
        "re-encrypting [{bar:30}] {pos}/{len} secrets, {elapsed}",
    )
    .map(|style| style.progress_chars("#>."))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    indicatif::ProgressBar::with_draw_target(Some(total), indicatif::ProgressDrawTarget::stderr())
        .with_style(style)
        .with_position(done)
        .with_elapsed(started.elapsed())
}

/// `deploy secret get NAME --as SERVICE`: the value as the service reads it.
async fn get(
    server: &Server,
    env: &Env,
    name: &str,
    service: &str,
    raw: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // NAME@pending and NAME@previous name a version of NAME.
    let base = ["@pending", "@previous"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .unwrap_or(name);
    validate(&Command::Grant {
        service: service.to_string(),
        name: base.to_string(),
        expires: None,
    })?;
    let session = Session::service_view(server, env, service, "secret get --as").await?;
    let value = match session.read(&["secret", name], files::MAX_VALUE_FILE).await {
        Ok(v) => v,
        Err(e) if (is_not_found(&e) || is_permission_denied(&e)) && base != name => {
            return Err(CliError::Deployer(format!(
                "{service} cannot read {name}: {base} is not granted to {service}, or it \
                 has no such version now (a pending one until it is promoted, discarded or an \
                 hour old; a previous one during its overlap); see `deploy secret history {base}`"
            )));
        }
        Err(e) if is_not_found(&e) || is_permission_denied(&e) => {
            return Err(CliError::SecretNotVisible {
                service: service.to_string(),
                name: name.to_string(),
            });
        }
        Err(e) => return Err(CliError::request(format!("reading secret/{name}"), e)),
    };
    let terminal = io::stdout().is_terminal();
    if terminal && !raw && !is_text(&value) {
        return Err(CliError::NotText {
            name: name.to_string(),
            service: service.to_string(),
        });
    }
    out.write_all(&value)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)?;
    if terminal && !value.ends_with(b"\n") {
        // Keep the shell's prompt off the value's line; only on a terminal, so that a
        // pipe or file gets the exact bytes.
        let _ = writeln!(io::stderr());
    }
    Ok(Outcome::Done)
}

/// Whether a value is text a terminal shows as it is: UTF-8 with no control characters
/// but newline, tab and carriage return. Anything else (a key in DER, an escape sequence)
/// could garble the terminal or drive it.
fn is_text(value: &[u8]) -> bool {
    std::str::from_utf8(value).is_ok_and(|text| {
        text.chars()
            .all(|c| !c.is_control() || matches!(c, '\n' | '\t' | '\r'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_counts_as_text_for_a_terminal() {
        assert!(is_text(b""));
        assert!(is_text(b"correct horse battery staple"));
        assert!(is_text(b"-----BEGIN KEY-----\r\nMIIB\tx==\n"));
        assert!(is_text("pässwörd ✓".as_bytes()));
        assert!(!is_text(b"\x00\x01binary\xff"));
        assert!(!is_text(b"\xff\xfe"));
        assert!(!is_text(b"\x1b]0;pwned\x07"));
        assert!(!is_text(b"nul\x00inside"));
        assert!(!is_text("c1 \u{9b}2J".as_bytes()));
        assert!(!is_text(b"del\x7f"));
    }

    #[test]
    fn progress_waits_a_second_then_shows_a_bar_or_an_occasional_line() {
        let now = Instant::now();
        let terminal = Progress::new(now, true);
        assert_eq!(terminal.due(Duration::from_millis(999)), Show::Nothing);
        assert_eq!(terminal.due(SHOW_PROGRESS_AFTER), Show::Bar);
        let mut plain = Progress::new(now, false);
        assert_eq!(plain.due(Duration::from_millis(500)), Show::Nothing);
        assert_eq!(plain.due(Duration::from_secs(1)), Show::Line);
        plain.last_plain = Some(Instant::now());
        assert_eq!(plain.due(Duration::from_secs(2)), Show::Nothing);
        plain.last_plain = Some(Instant::now() - PLAIN_PROGRESS_INTERVAL);
        assert_eq!(plain.due(Duration::from_secs(3)), Show::Line);
    }

    #[test]
    fn list_table() {
        let rows = vec![
            SecretRow {
                name: "api_key".into(),
                version: 12,
                size: 40,
                mtime: output::iso8601(1_714_564_800),
                granted_to: vec![],
                grants_end: BTreeMap::new(),
            },
            SecretRow {
                name: "db_password".into(),
                version: 3,
                size: 1048576,
                mtime: output::iso8601(0),
                granted_to: vec!["web".into(), "worker".into()],
                grants_end: [("worker".to_string(), output::iso8601(86_400))].into(),
            },
        ];
        assert_eq!(
            render_list(&rows),
            "NAME         VERSION     SIZE  MODIFIED              GRANTED TO\n\
             api_key           12       40  2024-05-01T12:00:00Z  -\n\
             db_password        3  1048576  1970-01-01T00:00:00Z  web, worker (until \
             1970-01-02T00:00:00Z)\n"
        );
        let json = serde_json::to_value(&rows[1]).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "name": "db_password", "version": 3, "size": 1048576,
                "mtime": "1970-01-01T00:00:00Z", "granted_to": ["web", "worker"],
                "grants_end": {"worker": "1970-01-02T00:00:00Z"}
            })
        );
    }

    #[test]
    fn rotation_summaries() {
        assert_eq!(
            rotation_summary(Some(3), Some(4), Some(120), Duration::from_millis(1234)),
            "rotated key 3 → 4: 120 secrets re-encrypted in 1.2s\n"
        );
        assert_eq!(
            rotation_summary(Some(1), Some(2), Some(1), Duration::from_millis(5)),
            "rotated key 1 → 2: 1 secret re-encrypted in 5ms\n"
        );
        assert_eq!(
            rotation_summary(None, None, None, Duration::ZERO),
            "rotated key ? → ?: all secrets re-encrypted in 0ms\n"
        );
    }
}
