//! The command line, as clap derive types. The doc comments here are the help text.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Manage the secrets and services of a srv-secrets server.
///
/// deploy speaks 9P2000 to srv-secrets and changes it only by writing commands to
/// /secrets/ctl. Run it as root or as the user that ran `srv-secrets init`.
#[derive(Debug, Parser)]
#[command(name = "deploy", version, max_term_width = 100)]
pub struct Cli {
    /// The server's address [default: $SRV_SECRETS_ADDR, else the server's default socket]
    ///
    /// The server's default socket is $XDG_RUNTIME_DIR/srv-secrets/9p.sock if
    /// XDG_RUNTIME_DIR is set, else /run/srv-secrets/9p.sock for root, else
    /// /tmp/srv-secrets-$EUID/9p.sock.
    #[arg(long, global = true, value_name = "unix:PATH")]
    pub addr: Option<String>,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set, list, grant, revoke and delete secrets; rotate the cluster key.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Add, remove, list and check services.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Show the server's status: the active key, counts, a rotation in progress.
    Status(JsonFlag),
    /// Write a backup of the server's store to FILE while it serves.
    ///
    /// FILE is a copy of the store as of one moment (restore it as DATA/store.redb, see
    /// docs/operations.md), created mode 0600. It never holds the key: back the key file
    /// up apart.
    Backup {
        /// The backup file to write; an existing one is kept unless --force.
        file: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `--json`, for commands that print tables.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `deploy secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret.
    ///
    /// The value is never taken from the command line: it is typed at a prompt without
    /// echo when stdin is a terminal (one line), read byte for byte from stdin otherwise
    /// (`deploy secret set tls_key < key.pem`), or read from --file. At most 1 MiB.
    Set {
        /// The secret's name: 1 to 128 of A-Z a-z 0-9 . _ -
        name: String,
        /// Read the value from this file, byte for byte (binary safe).
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
        /// A value given on the command line, which deploy refuses without echoing it
        /// (clap's own "unexpected argument" error would print it).
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        argv_value: Vec<OsString>,
    },
    /// List secrets: version, size, last change and the services granted each.
    List(JsonFlag),
    /// Delete a secret (and every grant of it).
    Delete {
        /// The secret's name.
        name: String,
    },
    /// Let a service read a secret.
    Grant {
        /// The service.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// Stop a service reading a secret, from its very next read.
    Revoke {
        /// The service.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// Re-encrypt every secret under a new cluster key, showing progress.
    RotateKey,
    /// Print a secret's value as a service sees it, byte for byte (admin only).
    Get {
        /// The secret's name.
        name: String,
        /// Read through this service's view: only its granted secrets exist there.
        #[arg(long = "as", value_name = "SERVICE")]
        service: String,
    },
}

/// `deploy service …`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Add a service (or change its uid), optionally with its manifest.
    Add {
        /// The service's name.
        service: String,
        /// The unix uid whose connections are this service.
        #[arg(long)]
        uid: u32,
        /// The service's manifest: lines `secret NAME` and `config KEY=VALUE`.
        #[arg(long, value_name = "FILE")]
        manifest: Option<PathBuf>,
    },
    /// Remove a service and its grants.
    Remove {
        /// The service's name.
        service: String,
    },
    /// List services: uid, secrets the manifest needs, grants, grants missing.
    List(JsonFlag),
    /// Check that every secret in a service's manifest is granted; exit 1 if not.
    Check {
        /// The service's name.
        service: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_nested_commands_and_the_global_addr() {
        let cli = Cli::try_parse_from([
            "deploy", "secret", "get", "db", "--as", "web", "--addr", "unix:/s",
        ])
        .unwrap();
        assert_eq!(cli.addr.as_deref(), Some("unix:/s"));
        match cli.command {
            Command::Secret(SecretCommand::Get { name, service }) => {
                assert_eq!((name.as_str(), service.as_str()), ("db", "web"));
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn a_value_on_argv_is_caught_for_refusal() {
        // Parsed (not a clap error, which would echo it) so that `secret set` can refuse it.
        let cli = Cli::try_parse_from(["deploy", "secret", "set", "db", "-hunter2", "x"]).unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Set { argv_value, .. }) => {
                assert_eq!(argv_value.len(), 2)
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn uid_must_be_a_number() {
        let err =
            Cli::try_parse_from(["deploy", "service", "add", "web", "--uid", "x"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
