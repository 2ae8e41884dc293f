//! `deploy secret delegate NAME --tier T --ref REF [--via CMD]`: a secret a provider
//! holds (seed 003, level 2). The server keeps the reference and whether it is present;
//! the value, when `--via` hands it over, goes from the terminal (or stdin) to CMD's stdin
//! and nowhere else: not to the server, not to a file, not to the log or the output.
//!
//! The reference is recorded first, so that a refusal (an infrastructure secret, an
//! unknown tier) comes before anyone types a value; it is marked present only once CMD
//! exits 0.

use std::ffi::OsString;
use std::io::{self, IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::{Command as Process, Stdio};

use catalog::Reference;
use ctl::{CatalogCommand, Command, StrategyArg};

use super::catalog::{bad, check_tier, write_lines};
use super::{Outcome, read_limited, validate};
use crate::connect::{Env, Server, Session};
use crate::error::CliError;

/// The refusal of a value given as an argument.
const VALUE_ON_ARGV: &str = "secret delegate takes no value on the command line (other \
    users can see arguments, and shells keep them in history); type it at the prompt, or \
    pipe it to stdin, with --via CMD";

/// What `deploy secret delegate` was given.
pub struct Delegation {
    /// The secret.
    pub name: String,
    /// The tier it is delegated on.
    pub tier: String,
    /// The reference.
    pub reference: String,
    /// The command that stores the value.
    pub via: Option<String>,
}

/// Runs `deploy secret delegate`.
///
/// # Errors
/// A bad argument, the server's refusal, a value that cannot be read, a CMD that fails.
pub async fn run(
    d: Delegation,
    argv_value: &[OsString],
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if !argv_value.is_empty() {
        return Err(CliError::Usage(VALUE_ON_ARGV.into()));
    }
    check_tier(&d.tier)?;
    let reference = Reference::parse(&d.reference).map_err(|e| bad("--ref", e))?;
    let declare = Command::Catalog(CatalogCommand::Strategy {
        name: d.name.clone(),
        tier: d.tier.clone(),
        class: None,
        strategy: StrategyArg::Delegate {
            reference: reference.to_string(),
        },
    });
    validate(&declare)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    ctl.send(&declare).await?;
    let Some(via) = &d.via else {
        ctl.close().await?;
        write_lines(
            out,
            &format!(
                "recorded {reference} for {} on tier {} (not present: mark it with `deploy \
                 secret present {} --tier {}` once the provider holds it)\n",
                d.name, d.tier, d.name, d.tier
            ),
        )?;
        return Ok(Outcome::Done);
    };
    let value = if io::stdin().is_terminal() {
        super::secret::prompt_hidden(&format!("Value for {} (to {via}): ", d.name))?
    } else {
        read_limited(io::stdin().lock(), "stdin", "the value")?
    };
    if value.is_empty() {
        ctl.close().await?;
        return Err(CliError::Usage(format!(
            "the value is empty, so it was not handed to the command; {reference} is recorded \
             for {} on tier {}, not present",
            d.name, d.tier
        )));
    }
    let ran = hand_over(via, &value);
    drop(value);
    match ran {
        Ok(()) => {
            ctl.send(&Command::Catalog(CatalogCommand::Present {
                name: d.name.clone(),
                tier: d.tier.clone(),
                present: true,
            }))
            .await?;
            ctl.close().await?;
            write_lines(
                out,
                &format!(
                    "the command took {}'s value and exited 0: {reference} is present on tier \
                     {}; the value went nowhere else\n",
                    d.name, d.tier
                ),
            )?;
            Ok(Outcome::Done)
        }
        Err(why) => {
            ctl.close().await?;
            Err(CliError::Deployer(format!(
                "{why}: {reference} is recorded for {} on tier {}, not present; nothing was \
                 stored",
                d.name, d.tier
            )))
        }
    }
}

/// Runs `sh -c CMD` with `value` on its stdin and its stdout on our stderr; `Ok` if it
/// exits 0.
fn hand_over(via: &str, value: &[u8]) -> Result<(), String> {
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot pass stderr to the command: {e}"))?;
    let mut child = Process::new("sh")
        .arg("-c")
        .arg(via)
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stderr))
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run the command with sh -c: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A command that exits without reading is judged by its status, not by the pipe.
        match stdin.write_all(value) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("cannot write the value to the command: {e}"));
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("cannot wait for the command: {e}"))?;
    if status.success() {
        return Ok(());
    }
    Err(
        match (
            status.code(),
            std::os::unix::process::ExitStatusExt::signal(&status),
        ) {
            (Some(code), _) => format!("the command exited with status {code}"),
            (None, Some(sig)) => format!("the command was killed by signal {sig}"),
            _ => "the command failed".to_string(),
        },
    )
}
