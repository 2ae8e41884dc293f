//! `deploy context add NAME --addr ... [--ca F] [--cert F --key F | --token-file F]
//! [--force]`, `deploy context list [--json]`, `deploy context show NAME [--json]`,
//! `deploy context remove NAME`: named servers, kept by [`crate::contexts`]. None of them
//! needs a server.

use std::io::Write;
use std::path::Path;

use serde::Serialize;

use super::Outcome;
use crate::cli::ContextCommand;
use crate::connect::Env;
use crate::contexts::{self, Context, Flags};
use crate::error::CliError;
use crate::output::{Align, Table, write_json, write_text};

/// `deploy context ...`.
///
/// # Errors
/// A bad name, address or flag; a contexts file that cannot be used or written.
pub fn run(
    cmd: ContextCommand,
    flags: &Flags,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        ContextCommand::Add { name, force } => add(&name, force, flags, env, out),
        ContextCommand::List(json) => {
            no_server_flags(flags, "list")?;
            list(json.json, env, out)
        }
        ContextCommand::Show { name, json } => {
            no_server_flags(flags, "show")?;
            show(&name, json, env, out)
        }
        ContextCommand::Remove { name } => {
            no_server_flags(flags, "remove")?;
            contexts::check_name(&name)?;
            contexts::remove(env, &name)?;
            write_text(out, &format!("removed context {name}\n"))?;
            Ok(Outcome::Done)
        }
    }
}

/// Refuses server flags where they would mean nothing, rather than ignore them.
fn no_server_flags(flags: &Flags, what: &str) -> Result<(), CliError> {
    if flags.any() {
        return Err(CliError::Usage(format!(
            "deploy context {what} reads the saved contexts and takes none of --addr, --ca, \
             --cert, --key, --token-file and --context"
        )));
    }
    Ok(())
}

fn add(
    name: &str,
    force: bool,
    flags: &Flags,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    contexts::check_name(name)?;
    let context = contexts::from_flags(name, flags, env)?;
    let summary = format!("{} ({})", context.addr, identity(&context));
    contexts::save(env, name, context, force)?;
    write_text(
        out,
        &format!("saved context {name}: {summary}; use it with deploy --context {name}\n"),
    )?;
    Ok(Outcome::Done)
}

/// How deploy proves itself with `context`, for people.
fn identity(context: &Context) -> String {
    match (&context.cert, &context.token_file) {
        (Some(cert), _) => format!("certificate {}", cert.display()),
        (None, Some(token)) => format!("token file {}", token.display()),
        (None, None) if context.addr.starts_with("unix:") => "your uid".into(),
        (None, None) => "no certificate or token".into(),
    }
}

/// A context as `--json` prints it.
#[derive(Serialize)]
struct Shown<'a> {
    name: &'a str,
    addr: &'a str,
    ca: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    token_file: Option<String>,
}

impl<'a> Shown<'a> {
    fn of(name: &'a str, c: &'a Context) -> Shown<'a> {
        let text = |p: &Option<std::path::PathBuf>| p.as_ref().map(|p| p.display().to_string());
        Shown {
            name,
            addr: &c.addr,
            ca: text(&c.ca),
            cert: text(&c.cert),
            key: text(&c.key),
            token_file: text(&c.token_file),
        }
    }
}

fn list(json: bool, env: &Env, out: &mut dyn Write) -> Result<Outcome, CliError> {
    let (_, all) = contexts::list(env)?;
    if json {
        let shown: Vec<Shown> = all.iter().map(|(n, c)| Shown::of(n, c)).collect();
        write_json(out, &shown)?;
        return Ok(Outcome::Done);
    }
    if all.is_empty() {
        write_text(out, "no contexts\n")?;
        return Ok(Outcome::Done);
    }
    let mut table = Table::new(&[
        ("NAME", Align::Left),
        ("ADDR", Align::Left),
        ("CA", Align::Left),
        ("IDENTITY", Align::Left),
    ]);
    for (name, c) in &all {
        let ca =
            c.ca.as_ref()
                .map_or_else(|| "-".to_string(), |p| p.display().to_string());
        table.row(vec![name.clone(), c.addr.clone(), ca, identity(c)]);
    }
    write_text(out, &table.render())?;
    Ok(Outcome::Done)
}

fn show(name: &str, json: bool, env: &Env, out: &mut dyn Write) -> Result<Outcome, CliError> {
    contexts::check_name(name)?;
    let context = contexts::find(env, name, &format!("context {name}"))?;
    if json {
        write_json(out, &Shown::of(name, &context))?;
        return Ok(Outcome::Done);
    }
    let file = |p: &Option<std::path::PathBuf>| match p.as_deref() {
        None => "-".to_string(),
        Some(p) if exists(p) => p.display().to_string(),
        Some(p) => format!("{} (no longer exists)", p.display()),
    };
    let mut table = Table::new(&[("", Align::Left), ("", Align::Left)]);
    for (k, v) in [
        ("name", name.to_string()),
        ("addr", context.addr.clone()),
        ("ca", file(&context.ca)),
        ("cert", file(&context.cert)),
        ("key", file(&context.key)),
        ("token-file", file(&context.token_file)),
        ("file", contexts::contexts_file(env)?.display().to_string()),
    ] {
        table.row(vec![format!("{k}:"), v]);
    }
    write_text(out, &table.render_rows())?;
    Ok(Outcome::Done)
}

fn exists(path: &Path) -> bool {
    std::fs::metadata(path).is_ok()
}
