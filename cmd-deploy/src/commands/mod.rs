//! The commands: [`run`] dispatches a parsed command line, and what several commands
//! share (checking arguments, bounded reads of values and manifests).

use std::io::{self, Read, Write};
use std::path::Path;

use clap::CommandFactory;
use zeroize::Zeroizing;

use crate::cli::{Cli, Command, IncidentCommand};
use crate::connect::{self, Env, Server, Session};
use crate::contexts;
use crate::error::CliError;
use crate::files;
use crate::output::{self, printable, write_json, write_text};

pub mod audit;
pub mod backup;
pub mod breakglass;
pub mod bundle;
pub mod catalog;
pub mod context;
pub mod delegate;
pub mod holders;
pub mod import;
pub mod incident;
pub mod mount;
pub mod owner;
pub mod prompt;
pub mod run;
pub mod secret;
pub mod service;
pub mod token;
pub mod versions;
pub mod watch;

/// How a command that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done (exit status 0).
    Done,
    /// Done, and it found something wrong, such as missing grants (exit status 1).
    Findings,
    /// What `deploy service run` ran ended with this exit status, passed on.
    Exit(u8),
}

/// Runs one command line, writing its output to `out`.
///
/// # Errors
/// Whatever the command met, as a [`CliError`] with a hint.
pub async fn run(cli: Cli, env: &Env, out: &mut dyn Write) -> Result<Outcome, CliError> {
    if let Some(text) = &cli.reason {
        validate(&ctl::Command::Reason { text: text.clone() })?;
    }
    // The commands that need no server come first: a bad address must not stop them.
    let flags = contexts::Flags {
        addr: cli.addr.clone(),
        tls: connect::TlsFlags {
            ca: cli.ca.clone(),
            cert: cli.cert.clone(),
            key: cli.key.clone(),
        },
        token_file: cli.token_file.clone(),
        context: cli.context.clone(),
    };
    let server = || -> Result<Server, CliError> {
        let chosen = contexts::choose(&flags, env)?;
        Ok(Server {
            addr: chosen.addr,
            token: chosen
                .token_file
                .as_deref()
                .map(|file| connect::Token::read(file, env.euid))
                .transpose()?,
            timeout: cli.timeout,
            reason: cli.reason.clone(),
            tls: chosen.tls,
        })
    };
    match cli.command {
        Command::Completions { shell } => completions(shell, out),
        Command::Manpage { dir: None } => manpage(out),
        Command::Manpage { dir: Some(dir) } => manpages_to(&dir, out),
        Command::Context(cmd) => context::run(cmd, &flags, env, out),
        Command::Prompt {
            spec,
            out: dir,
            from_env,
        } => prompt::run(&spec, &dir, from_env, out),
        Command::Mount {
            service,
            dir,
            foreground,
        } => mount::mount(&server()?, env, &service, &dir, foreground, out).await,
        Command::Secret(cmd) => secret::run(cmd, &server()?, env, out).await,
        Command::Service(cmd) => service::run(cmd, &server()?, env, out).await,
        Command::Tier(cmd) => catalog::tier(cmd, &server()?, env, out).await,
        Command::Catalog(cmd) => catalog::catalog_command(cmd, &server()?, env, out).await,
        Command::Bundle(cmd) => bundle::run(cmd, &server()?, env, out).await,
        Command::Backup { file, force } => backup::run(&file, force, &server()?, env, out).await,
        Command::Token(cmd) => token::run(cmd, &server()?, env, out).await,
        Command::Watch { service, json } => {
            watch::watch(&server()?, env, service.as_deref(), json, out).await
        }
        Command::Audit(cmd) => audit::run(cmd, server, env, out).await,
        Command::Incident(IncidentCommand::Report { since, format }) => {
            incident::report(since, format, &server()?, env, out).await
        }
        Command::Status(flag) => {
            let session = Session::admin(&server()?, env).await?;
            status(&session, flag.json, out).await
        }
        Command::Freeze(flag) => breakglass::freeze(flag.reason, &server()?, env, out).await,
        Command::Unfreeze(flag) => breakglass::unfreeze(flag.reason, &server()?, env, out).await,
    }
}

/// `deploy completions SHELL`.
fn completions(shell: clap_complete::Shell, out: &mut dyn Write) -> Result<Outcome, CliError> {
    // Rendered to memory first: clap_complete panics if its writer fails, and a closed
    // stdout is an ordinary end here.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "deploy", &mut script);
    out.write_all(&script)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)?;
    Ok(Outcome::Done)
}

/// `deploy manpage`: deploy.1 on stdout.
fn manpage(out: &mut dyn Write) -> Result<Outcome, CliError> {
    let mut page = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut page)
        .map_err(|source| CliError::Write {
            what: "the man page".into(),
            source,
        })?;
    out.write_all(&page)
        .and_then(|()| out.flush())
        .map_err(CliError::Stdout)?;
    Ok(Outcome::Done)
}

/// `deploy manpage --dir DIR`: deploy.1 and a page per subcommand, `deploy-secret-set.1`
/// and so on, named as man(1) finds them (`man deploy-secret-set`).
fn manpages_to(dir: &Path, out: &mut dyn Write) -> Result<Outcome, CliError> {
    clap_mangen::generate_to(Cli::command(), dir).map_err(|source| CliError::Write {
        what: format!("man pages to {}", dir.display()),
        source,
    })?;
    write_text(
        out,
        &format!("wrote deploy's man pages to {}\n", dir.display()),
    )?;
    Ok(Outcome::Done)
}

/// `deploy status`.
async fn status(session: &Session, json: bool, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let status = read_status(session).await?;
    if json {
        #[derive(serde::Serialize)]
        struct Json<'a> {
            addr: String,
            #[serde(flatten)]
            status: &'a files::Status,
        }
        let addr = session.addr().to_string();
        write_json(
            out,
            &Json {
                addr,
                status: &status,
            },
        )?;
    } else {
        write_text(out, &render_status(&session.addr().to_string(), &status))?;
    }
    Ok(Outcome::Done)
}

/// The human form of `deploy status`.
fn render_status(addr: &str, status: &files::Status) -> String {
    let num = |n: Option<u64>| n.map_or_else(|| "?".to_string(), |n| n.to_string());
    let rotation = match status.rotation {
        files::Rotation::Idle => "idle".to_string(),
        files::Rotation::Running { done, total } => {
            format!("running, {done} of {total} secrets re-encrypted")
        }
    };
    let frozen = match &status.frozen {
        Some(mark) => format!("yes,{}", crate::error::since_text(mark)),
        None => "no".to_string(),
    };
    let suspended = if status.suspended.is_empty() {
        "none".to_string()
    } else {
        status.suspended.join(", ")
    };
    let mut table = output::Table::new(&[("", output::Align::Left), ("", output::Align::Left)]);
    for (k, v) in [
        ("server", addr.to_string()),
        ("key", num(status.key)),
        ("secrets", num(status.secrets)),
        ("services", num(status.services)),
        ("rotation", rotation),
        ("frozen", frozen),
        ("suspended", suspended),
    ] {
        table.row(vec![format!("{k}:"), v]);
    }
    table.render_rows()
}

/// Reads and parses `secrets/status`.
pub(crate) async fn read_status(session: &Session) -> Result<files::Status, CliError> {
    let text = session
        .read(&["secrets", "status"], files::MAX_STATUS_FILE)
        .await
        .map_err(|e| CliError::request("reading secrets/status", e))?;
    files::parse_status(&text)
}

/// Checks a command as the server would, before anything is sent; a bad name or uid
/// is a usage error (exit status 2). The message never holds the argument itself.
pub(crate) fn validate(command: &ctl::Command) -> Result<(), CliError> {
    command
        .validate()
        .map_err(|kind| CliError::Usage(kind.to_string()))
}

/// Reads everything from `reader` into a zeroized buffer, failing with
/// [`CliError::TooLarge`] beyond [`model::MAX_VALUE_LEN`] bytes.
///
/// The buffer is allocated once at the full limit, so it never reallocates and leaves no
/// copy of a value behind in freed memory.
pub(crate) fn read_limited(
    mut reader: impl Read,
    what: &str,
    too_large: &'static str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let limit = model::MAX_VALUE_LEN;
    let mut buf = Zeroizing::new(Vec::with_capacity(limit + 1));
    let read = reader.by_ref().take(limit as u64 + 1).read_to_end(&mut buf);
    read.map_err(|source| CliError::Read {
        what: what.to_string(),
        source,
    })?;
    if buf.len() > limit {
        return Err(CliError::TooLarge { what: too_large });
    }
    Ok(buf)
}

/// Reads a file with [`read_limited`], refusing one that is too large before reading it.
pub(crate) fn read_file_limited(
    path: &std::path::Path,
    too_large: &'static str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let what = format!("{}", path.display());
    let io_err = |source| CliError::Read {
        what: what.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_file() && meta.len() > model::MAX_VALUE_LEN as u64 {
        return Err(CliError::TooLarge { what: too_large });
    }
    read_limited(file, &what, too_large)
}

/// Reads a whole file of at most `limit` bytes (an import file, larger than one value),
/// into one zeroized buffer allocated once.
pub(crate) fn read_file_bounded(
    path: &std::path::Path,
    limit: usize,
    what: &str,
) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let shown = format!("{}", path.display());
    let io_err = |source| CliError::Read {
        what: shown.clone(),
        source,
    };
    let too_large = || {
        CliError::Usage(format!(
            "{what} {shown} is larger than {limit} bytes, more than one transaction holds; \
             split it; nothing was sent"
        ))
    };
    let file = std::fs::File::open(path).map_err(io_err)?;
    let meta = file.metadata().map_err(io_err)?;
    if meta.is_file() && meta.len() > limit as u64 {
        return Err(too_large());
    }
    let mut buf = Zeroizing::new(Vec::with_capacity(
        (meta.len() as usize).min(limit).saturating_add(1),
    ));
    // A file that grows while it is read, or is not a regular file, still stops at the
    // limit. Read in pieces, growing by hand: Vec's own growth would leave a copy of the
    // values behind in freed memory.
    let mut capped = file.take(limit as u64 + 1);
    let mut chunk = Zeroizing::new([0u8; 8192]);
    loop {
        let n = capped.read(&mut chunk[..]).map_err(io_err)?;
        if n == 0 {
            break;
        }
        if buf.len() + n > limit {
            return Err(too_large());
        }
        if buf.len() + n > buf.capacity() {
            let want = (2 * buf.capacity()).max(buf.len() + n).min(limit + 1);
            let mut grown = Zeroizing::new(Vec::with_capacity(want));
            grown.extend_from_slice(&buf);
            buf = grown;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// A note for the operator on stderr, beside the output. Failing to write it is not
/// worth failing the command for.
pub(crate) fn note(text: &str) {
    let _ = writeln!(io::stderr(), "deploy: {}", printable(text));
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    #[test]
    fn reads_binary_values_byte_for_byte() {
        let value: Vec<u8> = (0..=255u8).chain([b'\n', 0, b'\r', b'\n']).collect();
        let got = read_limited(Cursor::new(value.clone()), "stdin", "the value").unwrap();
        assert_eq!(*got, value);
        let empty = read_limited(Cursor::new(Vec::new()), "stdin", "the value").unwrap();
        assert!(empty.is_empty());
    }

    #[test]
    fn the_limit_is_exactly_one_mib() {
        let max = vec![7u8; model::MAX_VALUE_LEN];
        let got = read_limited(Cursor::new(max), "stdin", "the value").unwrap();
        assert_eq!(got.len(), model::MAX_VALUE_LEN);
        // Over the limit by one: refused, and the buffer never grew past its allocation.
        let over = vec![7u8; model::MAX_VALUE_LEN + 1];
        let e = read_limited(Cursor::new(over), "stdin", "the value").unwrap_err();
        assert!(matches!(e, CliError::TooLarge { what: "the value" }));
        // A reader that never ends is cut off at the limit, not read to the end.
        let e = read_limited(io::repeat(1), "stdin", "the value").unwrap_err();
        assert!(matches!(e, CliError::TooLarge { .. }));
    }

    #[test]
    fn reads_files_and_refuses_large_ones_up_front() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("key.bin");
        std::fs::write(&small, b"\x00\x01\xff\n").unwrap();
        assert_eq!(
            *read_file_limited(&small, "the value").unwrap(),
            b"\x00\x01\xff\n"
        );
        let big = dir.path().join("big");
        std::fs::write(&big, vec![0u8; model::MAX_VALUE_LEN + 1]).unwrap();
        assert!(matches!(
            read_file_limited(&big, "the manifest"),
            Err(CliError::TooLarge {
                what: "the manifest"
            })
        ));
        let missing = dir.path().join("missing");
        let e = read_file_limited(&missing, "the value").unwrap_err();
        assert!(e.to_string().starts_with("cannot read "), "{e}");
        assert!(e.to_string().contains("missing"), "{e}");
    }

    #[test]
    fn usage_errors_do_not_echo_the_argument() {
        let e = validate(&ctl::Command::Delete {
            name: "hunter2 oops".into(),
        })
        .unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("hunter2"));
        assert!(e.to_string().starts_with("invalid secret name"), "{e}");
    }

    #[test]
    fn status_text() {
        let s = files::Status {
            key: Some(2),
            secrets: Some(10),
            services: Some(3),
            rotation: files::Rotation::Running { done: 4, total: 10 },
            frozen: None,
            suspended: vec![],
        };
        assert_eq!(
            render_status("unix:/s", &s),
            "server:     unix:/s\n\
             key:        2\n\
             secrets:    10\n\
             services:   3\n\
             rotation:   running, 4 of 10 secrets re-encrypted\n\
             frozen:     no\n\
             suspended:  none\n"
        );
        let s = files::Status {
            frozen: Some(model::Mark {
                since: 1_714_564_800,
                by: "admin (uid 0)".into(),
                reason: Some("INC-42: token leaked".into()),
            }),
            suspended: vec!["api".into(), "web".into()],
            ..s
        };
        let text = render_status("unix:/s", &s);
        assert!(
            text.ends_with(
                "frozen:     yes, since 2024-05-01T12:00:00Z by admin (uid 0): INC-42: token \
                 leaked\n\
                 suspended:  api, web\n"
            ),
            "{text}"
        );
    }
}
