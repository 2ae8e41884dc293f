//! `deploy`: the operator's CLI for srv-secrets.
//!
//! deploy speaks 9P2000 to the server (through `ninep::client`) and changes it only by
//! writing ctl commands (encoded by the `ctl` crate) to `/secrets/ctl`; it reads state from
//! the admin tree (`secrets/store/`, `grants/`, `services/`, `status`) and, for
//! `secret get --as`, from a service's view. There is no side channel to the store.
//!
//! It does not hold secrets longer than a command: a value comes from a prompt without
//! echo, stdin or `--file` (never argv), lives in zeroized buffers, and appears in no
//! output except `deploy secret get`'s stdout.
//!
//! # Layout
//! - `main.rs`: parse, run, and map the result to an exit status, once: 0 success, 1 a
//!   failure or a finding (missing grants), 2 a usage error, 130 Ctrl-C; a closed stdout
//!   (`deploy secret list | head -1`) ends the output quietly.
//! - `cli`: the clap derive types; their doc comments are the help.
//! - `connect`: the server's address, connecting and attaching, writing `secrets/ctl`.
//! - `contexts`: named servers (`deploy context`, `--context`, `$SRV_SECRETS_CONTEXT`),
//!   their file, and which server the flags, a context and the environment choose.
//! - `commands`: dispatch and shared helpers; `commands::secret` and `commands::service`
//!   implement the subcommands, `deploy status` lives in `commands` itself;
//!   `commands::bundle` (`deploy bundle`), `commands::prompt` (`deploy prompt`, a
//!   bundle's first run, no server) and `commands::delegate` (`deploy secret delegate`);
//!   `commands::mount` (`deploy mount`, over the `fuse9p` crate) and `commands::run`
//!   (`deploy service run`: grants, a mount namespace, the service's uid) are the deployer,
//!   and `commands::owner` finds whose files a view shows.
//! - `files`: the server's `status`, `grants/*` and `services/*` files as deploy reads
//!   them (their formats are `model::files`, shared with the server), how much of each it
//!   reads, and the `service check` rule.
//! - `glob`: the patterns of `deploy secret list PATTERN`.
//! - `output`: tables, times, JSON, and [`printable`](output::printable), through which
//!   every text from the server passes before a person sees it.
//! - `error`: [`CliError`](error::CliError), every failure with what to do about it.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod cli;
mod commands;
mod connect;
mod contexts;
mod error;
mod files;
mod glob;
mod output;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser;

use crate::commands::Outcome;
use crate::error::CliError;

/// deploy holds values (typed, piped, imported, read back): it writes no core file, and
/// other processes of its user cannot read its memory. Best effort: a failure here only
/// loses that protection.
fn keep_values_out_of_core_dumps() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, none);
}

fn main() -> ExitCode {
    keep_values_out_of_core_dumps();
    // Usage errors exit 2 inside clap; --help and --version exit 0.
    let cli = cli::Cli::parse();
    let env = connect::Env::current();
    // The deployer serves FUSE requests while its own command runs: worker threads answer
    // them, so that a request does not wait for the command's thread to wake. The command
    // itself (mounts, the namespace, spawning) still runs on this thread, in block_on.
    let mut builder = if cli.command.handles_signals() {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(2);
        b
    } else {
        tokio::runtime::Builder::new_current_thread()
    };
    let result = builder
        .enable_all()
        .build()
        .map_err(|e| CliError::Unexpected(format!("cannot start the async runtime: {e}")))
        .and_then(|runtime| runtime.block_on(run(cli, &env)));
    match result {
        Ok(Outcome::Done) => ExitCode::SUCCESS,
        Ok(Outcome::Findings) => ExitCode::from(1),
        Ok(Outcome::Exit(status)) => ExitCode::from(status),
        Err(e) if e.is_broken_pipe() => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote the server (its Rerror texts, names): never raw to a terminal.
            let _ = writeln!(
                io::stderr(),
                "deploy: {}",
                output::printable(&e.to_string())
            );
            ExitCode::from(e.exit_code())
        }
    }
}

/// Runs the command; Ctrl-C ends it with [`CliError::Interrupted`], and SIGTERM and SIGHUP
/// a command that [`stops_on_term`](cli::Command::stops_on_term) with
/// [`CliError::Stopped`]: the command's future is dropped, so that what it holds (a
/// partial bundle directory) is undone before deploy exits.
async fn run(cli: cli::Cli, env: &connect::Env) -> Result<Outcome, CliError> {
    let mut stdout = io::stdout().lock();
    if cli.command.handles_signals() {
        return commands::run(cli, env, &mut stdout).await;
    }
    tokio::select! {
        // Biased, so that the SIGINT handler is installed (on this branch's first poll)
        // before the command runs: the value prompt relies on it (see commands::secret).
        biased;
        stop = stop_signal(cli.command.stops_on_term()) => Err(stop),
        result = commands::run(cli, env, &mut stdout) => result,
    }
}

/// The first of SIGINT and (with `term`) SIGTERM and SIGHUP, as the error it ends the
/// command with. The handlers are installed at the first poll, before the command runs.
async fn stop_signal(term: bool) -> CliError {
    use tokio::signal::unix::{SignalKind, signal};
    if !term {
        let _ = tokio::signal::ctrl_c().await;
        return CliError::Interrupted;
    }
    let (Ok(mut term), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::hangup()),
    ) else {
        // Without those handlers SIGTERM and SIGHUP end deploy at once, as by default.
        let _ = tokio::signal::ctrl_c().await;
        return CliError::Interrupted;
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => CliError::Interrupted,
        _ = term.recv() => CliError::Stopped { name: "SIGTERM", number: 15 },
        _ = hup.recv() => CliError::Stopped { name: "SIGHUP", number: 1 },
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn deploy_writes_no_core_file() {
        super::keep_values_out_of_core_dumps();
        let core = rustix::process::getrlimit(rustix::process::Resource::Core);
        assert_eq!((core.current, core.maximum), (Some(0), Some(0)));
        assert_eq!(
            rustix::process::dumpable_behavior().ok(),
            Some(rustix::process::DumpableBehavior::NotDumpable)
        );
    }
}
