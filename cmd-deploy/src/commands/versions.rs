//! `deploy secret rotate | rollback | retire | discard | history` and `deploy secret list
//! --stale`: a secret's versions, through the ctl commands `stage`, `promote`, `discard`,
//! `rollback`, `retire`, `history` and `stale`.
//!
//! A rotation stages the new value as pending (`secret/NAME@pending`, for the services
//! granted NAME), runs the test command if there is one, and promotes the pending version
//! (the old one becomes `NAME@previous` for the overlap) or, if the test fails, discards
//! it and exits with the test's status. Without a test, staging and promoting are one
//! transaction: there is never a pending version to be left behind. The value comes from
//! the terminal (without echo), stdin or `--file`, or is generated on the server, and goes
//! nowhere but to the server: the test reads it through a service's view, never from its
//! environment or its arguments.

use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command as Process, ExitStatus, Stdio};

use ctl::{Answer, Command, Value};
use serde::Deserialize;

use super::{Outcome, note, read_file_limited, read_limited, validate};
use crate::connect::{Ctl, Env, Server, Session};
use crate::error::CliError;
use crate::output::{Align, Table, printable, when, write_json, write_text};

/// The refusal of a value given as an argument.
const VALUE_ON_ARGV: &str = "secret rotate takes no value on the command line (other users \
    can see arguments, and shells keep them in history); type it at the prompt, pipe it to \
    stdin, pass --file PATH, or --generate";

/// What `deploy secret rotate` was given.
#[derive(Debug)]
pub struct Rotation {
    /// The secret.
    pub name: String,
    /// `--generate [TEMPLATE]`: `Some("")` for the core-tier template.
    pub generate: Option<String>,
    /// `--file PATH`.
    pub file: Option<std::path::PathBuf>,
    /// `--overlap DURATION`, in seconds.
    pub overlap: Option<u64>,
    /// `--test CMD`.
    pub test: Option<String>,
    /// `--revoke-previous`.
    pub revoke_previous: bool,
    /// `--retire-when-read`.
    pub retire_when_read: bool,
    /// `--reason R`.
    pub reason: Option<String>,
    /// `--allow-empty`.
    pub allow_empty: bool,
}

/// The environment variables the test command gets: where the server is, which secret is
/// rotated and the pending version's number. Never its value.
pub const TEST_ENV_ADDR: &str = "SRV_SECRETS_ADDR";
/// The rotated secret's name.
pub const TEST_ENV_SECRET: &str = "SRV_SECRETS_SECRET";
/// The pending version's number.
pub const TEST_ENV_VERSION: &str = "SRV_SECRETS_PENDING_VERSION";

/// Runs `deploy secret rotate`.
///
/// # Errors
/// A bad argument, the server's refusal, a value that cannot be read, a test that cannot
/// be run.
pub async fn rotate(
    r: Rotation,
    argv_value: &[std::ffi::OsString],
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if !argv_value.is_empty() {
        return Err(CliError::Usage(VALUE_ON_ARGV.into()));
    }
    // `--reason` goes with each change the session's ctl sends (`Ctl::send`).
    if let Some(text) = &r.reason {
        validate(&Command::Reason { text: text.clone() })?;
    }
    let promote = Command::Promote {
        name: r.name.clone(),
        overlap: r.overlap,
        revoke_previous: r.revoke_previous,
        retire_when_read: r.retire_when_read,
    };
    validate(&promote)?;
    // With a test, deploy handles Ctrl-C itself (see `Command::handles_signals`): at the
    // prompt it ends the prompt, during the test it discards the pending version.
    let mut interrupt = match &r.test {
        Some(_) => Some(
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
                .map_err(|e| CliError::Unexpected(format!("cannot catch Ctrl-C: {e}")))?,
        ),
        None => None,
    };
    // Connect (and check the name) before anyone types a value.
    let session = Session::admin(server, env).await?;
    let stage = match &r.generate {
        Some(template) => Command::StageGenerate {
            name: r.name.clone(),
            template: (!template.is_empty()).then(|| template.clone()),
        },
        None => {
            validate(&Command::Stage {
                name: r.name.clone(),
                value: Value::default(),
            })?;
            let value = read_value(&r.name, r.file.as_deref(), r.allow_empty)?;
            Command::Stage {
                name: r.name.clone(),
                value: Value::from(value),
            }
        }
    };
    validate(&stage)?;
    let mut ctl = session.ctl().await?;
    let (Some(test), Some(interrupt)) = (&r.test, interrupt.as_mut()) else {
        // One transaction: no pending version can be left behind.
        let answers = ctl.transaction(&[stage, promote]).await?;
        ctl.close().await?;
        let promoted = answers
            .last()
            .ok_or_else(|| CliError::Unexpected("secrets/ctl gave no result for promote".into()))?;
        write_text(out, &promoted_line(&r, promoted))?;
        return Ok(Outcome::Done);
    };
    let staged = ctl.send(&stage).await?;
    drop(stage);
    let version = staged.number("version").unwrap_or(0);
    let ran = run_test(
        test,
        &session.addr().to_string(),
        &r.name,
        version,
        interrupt,
    )
    .await;
    let status = match ran {
        Ok(status) => status,
        Err(e) => {
            discard(&mut ctl, &r.name).await;
            return Err(e);
        }
    };
    if status.success() {
        let promoted = ctl.send(&promote).await?;
        ctl.close().await?;
        write_text(
            out,
            &format!("the test passed; {}", promoted_line(&r, &promoted)),
        )?;
        return Ok(Outcome::Done);
    }
    discard(&mut ctl, &r.name).await;
    ctl.close().await?;
    let code = exit_code(status);
    note(&format!(
        "the test failed ({}): pending version {version} of {} was discarded; nothing else \
         changed",
        describe(status),
        r.name
    ));
    Ok(Outcome::Exit(code))
}

/// Discards the pending version after a failed test; a failure to is only told (an hour
/// discards it anyway).
async fn discard(ctl: &mut Ctl, name: &str) {
    let sent = async {
        ctl.send(&Command::Discard {
            name: name.to_owned(),
        })
        .await
    };
    if let Err(e) = sent.await {
        note(&format!(
            "could not discard the pending version of {name} ({e}); discard it with `deploy \
             secret discard {name}` (an hour discards it anyway)"
        ));
    }
}

/// The value to stage: from `--file`, the terminal (without echo) or stdin.
fn read_value(
    name: &str,
    file: Option<&Path>,
    allow_empty: bool,
) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
    let (value, from) = match file {
        Some(path) => (
            read_file_limited(path, "the value")?,
            format!("in the file {}", path.display()),
        ),
        None if io::stdin().is_terminal() => (
            super::secret::prompt_hidden(&format!("New value for {name}: "))?,
            "typed at the prompt".into(),
        ),
        None => (
            read_limited(io::stdin().lock(), "stdin", "the value")?,
            "from stdin".into(),
        ),
    };
    if value.is_empty() && !allow_empty {
        return Err(CliError::EmptyValue { from });
    }
    Ok(value)
}

/// Runs `sh -c CMD`, its stdout on our stderr, with where the server is, the secret's name
/// and the pending version's number in its environment; waits for it on the blocking pool,
/// so that Ctrl-C (which the terminal sends it too) is seen here.
async fn run_test(
    test: &str,
    addr: &str,
    name: &str,
    version: u64,
    interrupt: &mut tokio::signal::unix::Signal,
) -> Result<ExitStatus, CliError> {
    let failed = |what: &str, e: io::Error| CliError::Deployer(format!("{what}: {e}"));
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| failed("cannot pass stderr to the test", e))?;
    let mut child = Process::new("sh")
        .arg("-c")
        .arg(test)
        .env(TEST_ENV_ADDR, addr)
        .env(TEST_ENV_SECRET, name)
        .env(TEST_ENV_VERSION, version.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::from(stderr))
        .stderr(Stdio::inherit())
        // A group of its own, so that stopping the test stops what it started too: a
        // shell killed while it waits leaves its children running, holding deploy's
        // stdout and stderr open.
        .process_group(0)
        .spawn()
        .map_err(|e| failed("cannot run the test with sh -c", e))?;
    let group = rustix::process::Pid::from_raw(child.id() as i32);
    let mut wait = tokio::task::spawn_blocking(move || child.wait());
    tokio::select! {
        waited = &mut wait => match waited {
            Ok(status) => status.map_err(|e| failed("cannot wait for the test", e)),
            Err(e) => Err(CliError::Unexpected(format!("waiting for the test: {e}"))),
        },
        _ = interrupt.recv() => {
            // The test runs in a group of its own, which the terminal's SIGINT does not
            // reach: its whole group is stopped here, and waited for, so that none of it
            // outlives deploy.
            let kill = |signal| {
                if let Some(group) = group {
                    let _ = rustix::process::kill_process_group(group, signal);
                }
            };
            kill(rustix::process::Signal::TERM);
            if tokio::time::timeout(std::time::Duration::from_secs(5), &mut wait)
                .await
                .is_err()
            {
                kill(rustix::process::Signal::KILL);
                let _ = wait.await;
            }
            Err(CliError::Interrupted)
        }
    }
}

/// The exit status deploy passes on: the test's, or 128 + the signal that killed it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code).unwrap_or(1).max(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(1),
        _ => 1,
    }
}

/// `status 3`, `signal 9`.
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "it failed".into(),
    }
}

/// What a promotion did, in a line.
fn promoted_line(r: &Rotation, promoted: &Answer) -> String {
    let name = &r.name;
    let version = promoted.number("version").unwrap_or(0);
    let previous = promoted.number("previous");
    let until = promoted.number("until");
    let after = match (previous, until) {
        (None, _) => "the previous value was destroyed, and every fid still reading it fails \
                      on its next read"
            .to_string(),
        (Some(p), Some(t)) if r.retire_when_read => format!(
            "version {p} stays readable as {name}@previous until {t}, or until every service \
             granted it has opened version {version} (see `deploy secret rotation-status \
             {name}`)",
            t = when(t)
        ),
        (Some(p), Some(t)) => format!(
            "version {p} stays readable as {name}@previous until {t} (retire it sooner with \
             `deploy secret retire {name}`)",
            t = when(t)
        ),
        (Some(p), None) => {
            format!("version {p} is kept for `deploy secret rollback {name}`; no service reads it")
        }
    };
    format!("rotated {name}: version {version} is current; {after}\n")
}

/// `deploy secret rollback | retire | discard NAME [--reason R]`.
///
/// # Errors
/// A bad argument, the server's refusal.
pub async fn step(
    command: Command,
    reason: Option<String>,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if let Some(text) = reason {
        validate(&Command::Reason { text })?;
    }
    validate(&command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let a = ctl.send(&command).await?;
    ctl.close().await?;
    let n = |k: &str| a.number(k).map_or_else(|| "?".into(), |n| n.to_string());
    let line = match &command {
        Command::Rollback { name } => format!(
            "rolled back {name}: version {} is current again; version {} is previous (no \
             service reads it; rollback again to undo)\n",
            n("version"),
            n("previous")
        ),
        Command::Retire { name } => format!(
            "retired {name}'s previous version {}: its value is destroyed\n",
            n("version")
        ),
        Command::Discard { name } => format!(
            "discarded {name}'s pending version {}: its value is destroyed\n",
            n("version")
        ),
        other => format!("{}: done\n", other.verb()),
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// One version as `history` has it (the server's JSON).
#[derive(Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct VersionRow {
    /// Its number.
    pub version: u64,
    /// current, previous, pending or destroyed.
    pub state: String,
    /// When it was made.
    pub created: u64,
    /// Who made it.
    pub by: Option<String>,
    /// The uid of the connection it was made over.
    pub uid: Option<u32>,
    /// Why.
    pub reason: Option<String>,
    /// Its value's length, while it has one.
    pub length: Option<u64>,
    /// A previous version's overlap end.
    pub overlap_until: Option<u64>,
    /// A pending version's end.
    pub expires: Option<u64>,
    /// When its value was destroyed.
    pub destroyed: Option<u64>,
    /// Whether fids that opened it were cut off.
    pub revoked: bool,
}

/// `deploy secret history NAME [--json]`.
///
/// # Errors
/// A bad name, the server's refusal (no such secret), an answer that does not read.
pub async fn history(
    name: String,
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = Command::History { name };
    validate(&command)?;
    let body = query(server, env, &command).await?;
    let rows: Vec<VersionRow> = serde_json::from_slice(&body)
        .map_err(|e| CliError::Unexpected(format!("the history does not read: {e}")))?;
    if json {
        write_json(out, &rows)?;
    } else {
        write_text(out, &render_history(&rows))?;
    }
    Ok(Outcome::Done)
}

/// The table of `deploy secret history`.
fn render_history(rows: &[VersionRow]) -> String {
    let mut table = Table::new(&[
        ("VERSION", Align::Right),
        ("STATE", Align::Left),
        ("CREATED", Align::Left),
        ("BY", Align::Left),
        ("REASON", Align::Left),
        ("NOTE", Align::Left),
    ]);
    for r in rows {
        let by = match (&r.by, r.uid) {
            (Some(by), Some(uid)) => format!("{by} (uid {uid})"),
            (Some(by), None) => by.clone(),
            (None, _) => "-".into(),
        };
        let mut notes = Vec::new();
        if let Some(t) = r.overlap_until {
            notes.push(format!("readable as @previous until {}", when(t)));
        }
        if r.state == "pending"
            && let Some(t) = r.expires
        {
            notes.push(format!("discarded at {} unless promoted", when(t)));
        }
        if let Some(t) = r.destroyed {
            notes.push(format!("destroyed {}", when(t)));
        }
        if r.revoked {
            notes.push("revoked".into());
        }
        table.row(vec![
            r.version.to_string(),
            r.state.clone(),
            when(r.created),
            printable(&by).into_owned(),
            printable(r.reason.as_deref().unwrap_or("-")).into_owned(),
            if notes.is_empty() {
                "-".into()
            } else {
                notes.join("; ")
            },
        ]);
    }
    table.render()
}

/// One secret as `stale` has it (the server's JSON).
#[derive(Debug, Deserialize, serde::Serialize, PartialEq, Eq)]
pub struct StaleRow {
    /// Its name.
    pub name: String,
    /// Its current version.
    pub version: u64,
    /// When that version was made.
    pub since: u64,
    /// Its age, in seconds.
    pub age: u64,
    /// Its rotation period, in seconds.
    pub rotate_every: u64,
    /// Its owner.
    pub owner: Option<String>,
    /// Its class.
    pub class: Option<String>,
}

/// `deploy secret list --stale [--json]`.
///
/// # Errors
/// The server's, an answer that does not read.
pub async fn stale(
    json: bool,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let body = query(server, env, &Command::Stale).await?;
    let rows: Vec<StaleRow> = serde_json::from_slice(&body)
        .map_err(|e| CliError::Unexpected(format!("the stale list does not read: {e}")))?;
    if json {
        write_json(out, &rows)?;
    } else {
        write_text(out, &render_stale(&rows))?;
        if rows.is_empty() {
            note("no secret is older than its rotation period");
        }
    }
    Ok(Outcome::Done)
}

/// The table of `deploy secret list --stale`.
fn render_stale(rows: &[StaleRow]) -> String {
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("VERSION", Align::Right),
        ("AGE", Align::Right),
        ("ROTATE EVERY", Align::Right),
        ("OWNER", Align::Left),
        ("CLASS", Align::Left),
        ("SINCE", Align::Left),
    ]);
    for r in rows {
        table.row(vec![
            r.name.clone(),
            r.version.to_string(),
            age(r.age),
            model::format_duration(r.rotate_every),
            printable(r.owner.as_deref().unwrap_or("-")).into_owned(),
            r.class.clone().unwrap_or_else(|| "-".into()),
            when(r.since),
        ]);
    }
    table.render()
}

/// An age for people, in its largest whole unit: `95d`, `3h`, `12m`, `40s`.
pub(crate) fn age(secs: u64) -> String {
    for (unit, scale) in [("d", 86_400), ("h", 3600), ("m", 60)] {
        if secs >= scale {
            return format!("{}{unit}", secs / scale);
        }
    }
    format!("{secs}s")
}

/// Sends a query and returns its body.
pub(super) async fn query(
    server: &Server,
    env: &Env,
    command: &Command,
) -> Result<Vec<u8>, CliError> {
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(command).await?;
    ctl.close().await?;
    Ok(answer.body.map(|b| b.to_vec()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rotation(overlap: Option<u64>) -> Rotation {
        Rotation {
            name: "db".into(),
            generate: None,
            file: None,
            overlap,
            test: None,
            revoke_previous: false,
            retire_when_read: false,
            reason: None,
            allow_empty: false,
        }
    }

    #[test]
    fn what_a_promotion_says() {
        let a = Answer::new("promote")
            .word("db")
            .field("version", 5)
            .field("previous", 4)
            .field("until", 1_714_564_800);
        assert_eq!(
            promoted_line(&rotation(Some(3600)), &a),
            "rotated db: version 5 is current; version 4 stays readable as db@previous until \
             2024-05-01T12:00:00Z (retire it sooner with `deploy secret retire db`)\n"
        );
        let mut closing = rotation(Some(3600));
        closing.retire_when_read = true;
        assert_eq!(
            promoted_line(&closing, &a),
            "rotated db: version 5 is current; version 4 stays readable as db@previous until \
             2024-05-01T12:00:00Z, or until every service granted it has opened version 5 (see \
             `deploy secret rotation-status db`)\n"
        );
        let a = Answer::new("promote")
            .field("version", 5)
            .field("previous", 4)
            .field("until", "none");
        assert!(
            promoted_line(&rotation(None), &a).ends_with(
                "version 4 is kept for `deploy secret rollback db`; no service reads it\n"
            )
        );
        let a = Answer::new("promote")
            .field("version", 5)
            .field("previous", "none")
            .field("until", "none");
        assert!(promoted_line(&rotation(None), &a).contains("destroyed"));
    }

    #[test]
    fn tables() {
        let rows = vec![
            VersionRow {
                version: 2,
                state: "current".into(),
                created: 1_714_564_800,
                by: Some("admin".into()),
                uid: Some(0),
                reason: Some("quarterly".into()),
                length: Some(10),
                overlap_until: None,
                expires: None,
                destroyed: None,
                revoked: false,
            },
            VersionRow {
                version: 1,
                state: "previous".into(),
                created: 0,
                by: None,
                uid: None,
                reason: None,
                length: Some(3),
                overlap_until: Some(1_714_568_400),
                expires: None,
                destroyed: None,
                revoked: false,
            },
        ];
        assert_eq!(
            render_history(&rows),
            "VERSION  STATE     CREATED               BY             REASON     NOTE\n      \
             2  current   2024-05-01T12:00:00Z  admin (uid 0)  quarterly  -\n      \
             1  previous  1970-01-01T00:00:00Z  -              -          readable as \
             @previous until 2024-05-01T13:00:00Z\n"
        );
        let stale = vec![StaleRow {
            name: "jwt_key".into(),
            version: 3,
            since: 0,
            age: 95 * 86_400 + 7,
            rotate_every: 90 * 86_400,
            owner: Some("platform".into()),
            class: None,
        }];
        assert_eq!(
            render_stale(&stale),
            "NAME     VERSION  AGE  ROTATE EVERY  OWNER     CLASS  SINCE\n\
             jwt_key        3  95d           90d  platform  -      1970-01-01T00:00:00Z\n"
        );
        assert_eq!(age(59), "59s");
        assert_eq!(age(3 * 3600 + 5), "3h");
    }

    #[test]
    fn a_failed_test_passes_its_status_on() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
        assert_eq!(describe(ExitStatus::from_raw(3 << 8)), "exit status 3");
        assert_eq!(describe(ExitStatus::from_raw(9)), "killed by signal 9");
    }
}
