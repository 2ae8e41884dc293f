//! The command line, as clap derive types. The doc comments here are the help text; the
//! same definition makes the shell completions and man pages (`deploy completions`,
//! `deploy manpage`).

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, ArgGroup, Args, Parser, Subcommand, ValueEnum};

/// The top of `deploy --help`, after the options: where deploy looks for the server, once
/// here rather than under every subcommand's --addr.
const TOP_AFTER_HELP: &str = "\
Server address:
  The flags --addr, --ca, --cert with --key, and --token-file; else --context
  NAME; else $SRV_SECRETS_CONTEXT; else $SRV_SECRETS_ADDR; else the server's
  default socket: $XDG_RUNTIME_DIR/srv-secrets/9p.sock if XDG_RUNTIME_DIR is
  set, else /run/srv-secrets/9p.sock for root, else /tmp/srv-secrets-$EUID/9p.sock.
  An address is unix:PATH or the socket's path, or tls:HOST:PORT for a server
  elsewhere: with --ca (the CA of the server's certificate) and either --cert and
  --key (a client certificate whose CN is admin, from the CA the server trusts)
  or --token-file FILE (a token deploy token create made). For a test server on
  loopback (srv-secrets serve --insecure-plain-tcp), tcp:HOST:PORT, with
  --token-file FILE: over TCP the server knows you only by a token.
  A context is a server saved by name with deploy context add NAME --addr ...
  (in $XDG_CONFIG_HOME/srv-secrets/contexts.toml, else
  ~/.config/srv-secrets/contexts.toml): its address, --ca, and --cert and --key
  or --token-file (the token's file, never the token). Flags given beside a
  context replace its fields one by one: --addr its address, --ca its CA, --cert
  with --key or --token-file its certificate or token. With --addr and no
  --context, neither environment variable is read.

Exit status:
  0 success, 1 a failure or a finding (missing grants, a plan's problem, a lint
  finding), 2 a usage error, 130 interrupted (Ctrl-C).

Examples:
  deploy status
  deploy secret set db_password              # type the value; it is not echoed
  deploy secret grant web db_password
  deploy service check web
  deploy --addr /run/srv-secrets/9p.sock secret list
  deploy --addr tls:secrets.example:5640 --ca ca.crt --cert admin.crt --key admin.key status
  deploy context add prod --addr tls:10.0.0.5:5640 --ca ca.crt --cert admin.crt --key admin.key
  deploy --context prod secret list";

/// Manage the secrets and services of a srv-secrets server.
///
/// deploy speaks 9P2000 to srv-secrets and changes it only by writing commands to
/// /secrets/ctl. Run it as root or as the user that ran `srv-secrets init`.
#[derive(Debug, Parser)]
#[command(
    name = "deploy",
    version,
    max_term_width = 100,
    after_help = TOP_AFTER_HELP
)]
pub struct Cli {
    /// The server's socket, unix:PATH or PATH, tls:HOST:PORT, or tcp:HOST:PORT on
    /// loopback (default: see "Server address" in `deploy --help`)
    #[arg(long, global = true, value_name = "ADDR")]
    pub addr: Option<String>,

    /// For --addr tls:...: the server's certificate must be issued by a CA in FILE (PEM)
    /// and name HOST
    #[arg(long, global = true, value_name = "FILE")]
    pub ca: Option<PathBuf>,

    /// For --addr tls:...: who deploy is, a client certificate (PEM) from the CA the
    /// server trusts; its CN is the principal (admin for admin commands)
    #[arg(long, global = true, value_name = "FILE")]
    pub cert: Option<PathBuf>,

    /// The private key of --cert (PEM)
    #[arg(long, global = true, value_name = "FILE")]
    pub key: Option<PathBuf>,

    /// The API token to present where the server knows you by nothing else (--addr
    /// tls: without --cert, or tcp:): a file of yours, mode 0600 or 0400, holding the
    /// one line `deploy token create` printed. Read from the file only, never from the
    /// command line or the environment.
    #[arg(long, global = true, value_name = "FILE")]
    pub token_file: Option<PathBuf>,

    /// A server saved with `deploy context add NAME` (default: $SRV_SECRETS_CONTEXT);
    /// --addr, --ca, --cert/--key and --token-file given beside it replace its fields
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,

    /// Why: recorded in the audit trail with every change this command makes (a ticket,
    /// an incident; at most 1 KiB of text)
    #[arg(long, global = true, value_name = "R")]
    pub reason: Option<String>,

    /// How long to wait when the server sends nothing at all (e.g. 500ms, 10s, 2m)
    #[arg(
        long,
        global = true,
        value_name = "DURATION",
        default_value = "10s",
        value_parser = parse_timeout
    )]
    pub timeout: Duration,

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
    /// Add, remove, list and check services; the tiers they are deployed to.
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Declare the deployment tiers (local_dev, desktop, mobile, cloud, ...).
    #[command(subcommand)]
    Tier(TierCommand),
    /// Apply and export deployment catalogs: tiers, services' tiers, secrets' metadata.
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// Issue bundles to deployments outside the core server; list them; trace a leaked
    /// value to the deployment it was issued to.
    #[command(subcommand)]
    Bundle(BundleCommand),
    /// Ask for a bundle's user secrets at first run and write each to DIR/values/NAME.
    ///
    /// For each prompt of the spec (a bundle's prompts.json), in order: shows its label
    /// and help, asks at the terminal (without echo for kind password), checks the answer
    /// as the spec says (kind, pattern, min, max) and asks again with the reason if it is
    /// refused; an empty answer skips an optional prompt. Each answer is written to
    /// DIR/values/NAME, mode 0600 (DIR/values is made 0700), replacing an earlier one.
    /// Needs no server.
    ///
    /// With --from-env, reads each answer from the environment variable NAME instead,
    /// checks them the same way, and writes nothing unless every one passes.
    #[command(after_help = "\
Examples:
  deploy prompt --spec ./bundle/prompts.json --out ./bundle
  OPENROUTER_KEY=sk-or-... deploy prompt --spec b/prompts.json --out b --from-env")]
    Prompt {
        /// The prompt spec: a bundle's prompts.json.
        #[arg(long, value_name = "FILE")]
        spec: PathBuf,
        /// The directory whose values/ the answers go into (a bundle's directory).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Read each answer from the environment variable named after its secret.
        #[arg(long)]
        from_env: bool,
    },
    /// Mount a service's view (/secret/NAME, /config/KEY) at a directory, over FUSE.
    ///
    /// Run as root, it mounts SERVICE's view on its behalf: the files belong to the
    /// service's uid and gid (from `deploy service add`; the gid is that uid's passwd
    /// group, else the same number), mode 0400, and only that uid (and root) can read them.
    /// Run as the service's own uid, it mounts that service's view for itself alone.
    ///
    /// Nothing is cached: a revoke fails the next read, even of a file held open, and a
    /// new value is read by the next open. Shared mmap is refused (ENODEV), and a private
    /// mapping cannot read (SIGBUS), so that no value stays in the page cache.
    ///
    /// Without --foreground, deploy returns once the view is mounted and a background
    /// deploy serves it. Unmount with `fusermount3 -u DIR` (or umount, or SIGTERM to the
    /// serving deploy). If the server goes away, reads fail at once with "Transport
    /// endpoint is not connected" until DIR is unmounted.
    #[command(after_help = "\
Examples:
  deploy mount web /run/web/secrets              # as root, for service web
  runuser -u web -- cat /run/web/secrets/secret/db_password
  fusermount3 -u /run/web/secrets
  deploy mount web ~/secrets --foreground        # as web itself; Ctrl-C unmounts")]
    Mount {
        /// The service whose view to mount.
        service: String,
        /// An existing, empty directory to mount it at.
        dir: PathBuf,
        /// Stay in the foreground until unmounted (SIGTERM, SIGINT or SIGHUP unmounts).
        #[arg(long)]
        foreground: bool,
    },
    /// Read, follow and verify the audit trail: every change, and every open of a secret.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Incident records, from the audit trail (break-glass, seed 004).
    #[command(subcommand)]
    Incident(IncidentCommand),
    /// Show the server's status: the active key, counts, a rotation in progress, whether
    /// deploys are frozen (since when, by whom, why) and which services are suspended.
    #[command(after_help = "\
Examples:
  deploy status
  deploy status --json
  deploy --addr unix:/run/srv-secrets/9p.sock status")]
    Status(JsonFlag),
    /// Freeze deploys (break-glass, for a confirmed leak or active abuse).
    ///
    /// Until `deploy unfreeze`, the server refuses what deploys something: grants,
    /// service changes (add, remove, manifest, tiers), the catalog (apply, tiers,
    /// metadata, strategies), bundles, and mounts of a service's view by the admin
    /// (`deploy service run`, `deploy mount` as root, `deploy secret get --as`); `deploy
    /// service check` refuses too. Running services keep reading, and may reconnect
    /// themselves. What answers the incident goes on: set, rotate, rollback, retire,
    /// revoke, revoke-all, suspend, resume. The freeze is stored: it survives a restart.
    /// `deploy status` shows since when, by whom and why.
    #[command(after_help = "\
Examples:
  deploy freeze --reason 'INC-42: signing key leaked'
  deploy status
  deploy unfreeze --reason 'INC-42: keys rotated, services restarted'")]
    Freeze(ReasonFlag),
    /// Unfreeze deploys: grants, service changes, the catalog, bundles and mounts work
    /// again.
    #[command(after_help = "\
Examples:
  deploy unfreeze --reason 'INC-42 resolved'")]
    Unfreeze(ReasonFlag),
    /// Print a completion script for a shell to stdout.
    #[command(after_help = "\
Examples:
  deploy completions bash > /usr/share/bash-completion/completions/deploy
  deploy completions zsh > /usr/share/zsh/vendor-completions/_deploy
  deploy completions fish > /usr/share/fish/vendor_completions.d/deploy.fish")]
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print deploy's man page to stdout, or write one per command to a directory.
    ///
    /// With --dir, writes deploy.1 and a page for every subcommand (deploy-secret.1,
    /// deploy-secret-set.1, ...), replacing files of those names.
    #[command(after_help = "\
Examples:
  deploy manpage | man -l -
  deploy manpage --dir /usr/share/man/man1")]
    Manpage {
        /// Write deploy.1, deploy-secret.1, deploy-secret-set.1, ... here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Print the changes of secrets, grants and config as they happen, one line each.
    ///
    /// Without SERVICE, every change (the admin tree's secrets/events): `VERB NAME
    /// VERSION`, and the service after it for granted, revoked and config. With SERVICE,
    /// the changes SERVICE is told of (its view's /events, read on its behalf): those of
    /// the secrets it is granted, its grants and its config. VERB is set, rotated, pending,
    /// previous-retired, revoked, granted, deleted or config (a config key's VERSION is the
    /// store's revision); `lost N` says N lines were dropped because deploy fell behind.
    /// Runs until Ctrl-C, SIGTERM or SIGHUP (exit status 0), or until the server stops
    /// (exit status 1).
    #[command(after_help = "\
Examples:
  deploy watch
  deploy watch web
  deploy watch --json | jq -c 'select(.verb == \"rotated\")'")]
    Watch {
        /// Only the changes this service is told of.
        service: Option<String>,
        /// One JSON object per line: {"verb":"set","name":"db","version":4}.
        #[arg(long)]
        json: bool,
    },
    /// Make, list and revoke API tokens: what proves the admin or a service where the
    /// transport does not (TCP, TLS without a client certificate).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Save servers by name (address, CA, certificate or token file) for `deploy
    /// --context NAME` and $SRV_SECRETS_CONTEXT; list, show and remove them.
    #[command(subcommand)]
    Context(ContextCommand),
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

impl Command {
    /// Whether SIGTERM and SIGHUP should stop the command as Ctrl-C does (dropping it, so
    /// that it cleans up) rather than end deploy at once: `bundle create`, whose partial
    /// directory holds generated values. Other commands keep the default, since one that
    /// waits in a blocking read (a value on stdin) would not see the signal until it ends.
    pub fn stops_on_term(&self) -> bool {
        matches!(self, Command::Bundle(BundleCommand::Create { .. }))
    }

    /// Whether the command handles SIGINT itself (instead of deploy ending at Ctrl-C):
    /// those that unmount first, or pass the signal on to what they run.
    pub fn handles_signals(&self) -> bool {
        matches!(
            self,
            Command::Mount { .. }
                | Command::Watch { .. }
                | Command::Service(ServiceCommand::Run { .. })
                | Command::Secret(SecretCommand::Rotate(RotateArgs { test: Some(_), .. }))
                | Command::Audit(AuditCommand::Follow { .. })
        )
    }
}

/// A signal `deploy service run --signal-on-change` may send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnChangeSignal {
    /// Its name without SIG.
    pub name: &'static str,
    /// The signal.
    pub signal: rustix::process::Signal,
}

/// The signals a program is told to reload by, and the usual others that do not stop or
/// kill it by default being caught.
const ON_CHANGE_SIGNALS: [(&str, rustix::process::Signal); 8] = [
    ("HUP", rustix::process::Signal::HUP),
    ("INT", rustix::process::Signal::INT),
    ("QUIT", rustix::process::Signal::QUIT),
    ("USR1", rustix::process::Signal::USR1),
    ("USR2", rustix::process::Signal::USR2),
    ("TERM", rustix::process::Signal::TERM),
    ("ALRM", rustix::process::Signal::ALARM),
    ("WINCH", rustix::process::Signal::WINCH),
];

fn parse_signal(s: &str) -> Result<OnChangeSignal, String> {
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    ON_CHANGE_SIGNALS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(name, signal)| OnChangeSignal { name, signal })
        .ok_or_else(|| {
            let names: Vec<&str> = ON_CHANGE_SIGNALS.iter().map(|(n, _)| *n).collect();
            format!("not a signal deploy sends; use one of {}", names.join(", "))
        })
}

/// How `deploy service run` mounts a view.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum MountKind {
    /// deploy's built-in FUSE client (needs /dev/fuse).
    Fuse,
    /// The kernel's 9P client, v9fs, over the server's unix socket (needs the 9p module).
    Kernel,
    /// The kernel's if it has 9p, else FUSE; deploy says which.
    Auto,
}

/// `deploy token ...`
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Make an API token for PRINCIPAL (admin, or a service) and print it, once.
    ///
    /// The token is 256 random bits; the server keeps only a keyed hash of it, so it
    /// cannot be shown again: store it at once in a file only you can read (mode 0600)
    /// and give that to `deploy --token-file`. It proves PRINCIPAL over TCP (and TLS
    /// without a client certificate) until it expires or is revoked; removing a service
    /// revokes its tokens. A freeze refuses new tokens.
    #[command(after_help = "\
Examples:
  (umask 077; deploy token create admin > ~/.config/srv-secrets/admin.token)
  deploy token create web --expires 90d
  deploy --addr tcp:127.0.0.1:5640 --token-file admin.token secret list")]
    Create {
        /// admin, or a service's name.
        principal: String,
        /// How long it holds (30m, 12h, 90d, 2w; at most 3650d); default: until revoked.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
        /// Print JSON: {"id", "principal", "expires", "token"}.
        #[arg(long)]
        json: bool,
    },
    /// List the tokens: ID, principal, when made, when they end, state. Never a token.
    #[command(after_help = "\
Examples:
  deploy token list
  deploy token list --json")]
    List(JsonFlag),
    /// Revoke a token: refused from now on, and every connection that attached with it is
    /// closed.
    #[command(after_help = "\
Examples:
  deploy token revoke 3f9a1c2b7d4e5f60 --reason 'laptop lost'")]
    Revoke {
        /// The token's ID, as `deploy token list` shows it.
        id: String,
    },
}

/// `deploy context ...`
#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Save a server as NAME: its address and how deploy proves itself to it.
    ///
    /// Takes --addr, and for tls: --ca with --cert and --key or --token-file (tcp: takes
    /// --token-file), checked as they are when used, every path made absolute. The TLS
    /// files are loaded and the token file checked (yours, mode 0600 or 0400, one token)
    /// as a connection would; only the token file's path is saved, never the token.
    /// Needs no server. Contexts are kept in $XDG_CONFIG_HOME/srv-secrets/contexts.toml
    /// (else ~/.config/srv-secrets/contexts.toml), mode 0600, written atomically.
    #[command(after_help = "\
Examples:
  deploy context add prod --addr tls:10.0.0.5:5640 --ca ca.crt --cert admin.crt --key admin.key
  deploy context add ci --addr tls:10.0.0.5:5640 --ca ca.crt --token-file ~/ci.token
  deploy context add local --addr unix:/run/srv-secrets/9p.sock
  deploy --context prod status
  SRV_SECRETS_CONTEXT=prod deploy secret list")]
    Add {
        /// The name: a letter or digit, then letters, digits, '.', '_' or '-' (at most 64).
        name: String,
        /// Replace a context of that name.
        #[arg(long)]
        force: bool,
    },
    /// List the contexts: name, address, CA, and the certificate or token file.
    #[command(after_help = "\
Examples:
  deploy context list
  deploy context list --json")]
    List(JsonFlag),
    /// Show one context, and which of its files no longer exist.
    #[command(after_help = "\
Examples:
  deploy context show prod
  deploy context show prod --json")]
    Show {
        /// The context.
        name: String,
        /// Print JSON: {"name", "addr", "ca", "cert", "key", "token_file"}.
        #[arg(long)]
        json: bool,
    },
    /// Remove a context (its files are left as they are).
    #[command(after_help = "\
Examples:
  deploy context remove prod")]
    Remove {
        /// The context.
        name: String,
    },
}

/// `--json`, for commands that print tables.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `deploy incident ...`
#[derive(Debug, Subcommand)]
pub enum IncidentCommand {
    /// The record of an incident, from the audit trail: who froze, rotated, revoked or
    /// suspended what and when, which services and deployments held each secret
    /// affected (and which granted services have not opened its current version yet),
    /// and the impact window (the first action to the unfreeze).
    #[command(after_help = "\
Examples:
  deploy incident report --since 2h
  deploy incident report --since 2025-06-01T09:00:00Z --markdown >> INC-42.md
  deploy incident report --json")]
    Report {
        /// Only records at or after T: RFC 3339, or a time ago (90s, 15m, 1h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// How to print it.
        #[command(flatten)]
        format: IncidentFormat,
    },
}

/// How `deploy incident report` prints (default: text for a terminal).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct IncidentFormat {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Print Markdown, for an incident record.
    #[arg(long)]
    pub markdown: bool,
}

/// `--reason R`, for the break-glass commands.
#[derive(Debug, Args)]
pub struct ReasonFlag {
    /// Why (recorded with the change, and shown by `deploy status`).
    #[arg(long, value_name = "R")]
    pub reason: Option<String>,
}

/// How `deploy secret matrix` prints the matrix (default: a table for a terminal).
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct MatrixFormat {
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
    /// Print CSV (RFC 4180), for a spreadsheet.
    #[arg(long)]
    pub csv: bool,
    /// Print a Markdown table, for an incident record or a wiki.
    #[arg(long)]
    pub markdown: bool,
}

/// `deploy secret …`
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Create or replace a secret.
    ///
    /// The value is never taken from the command line: it is typed at a prompt without
    /// echo when stdin is a terminal (one line), read byte for byte from stdin otherwise
    /// (`deploy secret set tls_key < key.pem`), or read from --file. At most 1 MiB.
    ///
    /// An empty value (Enter at the prompt, an empty pipe or file) is refused with exit
    /// status 1 and nothing changed, unless --allow-empty.
    #[command(after_help = "\
Examples:
  deploy secret set db_password                      # type it; it is not echoed
  deploy secret set tls_key < key.pem                # byte for byte from stdin
  deploy secret set tls_key --file /etc/ssl/private/key.pem
  openssl rand -hex 32 | deploy secret set api_key
  deploy secret set jwt_key --generate '{{random:base64url:32}}'
  deploy secret set db_password --generate           # its core tier's template")]
    Set {
        /// The secret's name: 1 to 128 of A-Z a-z 0-9 . _ -
        name: String,
        /// Read the value from this file, byte for byte (binary safe).
        #[arg(long, value_name = "PATH", conflicts_with = "generate")]
        file: Option<PathBuf>,
        /// Make the value on the server from TEMPLATE ({{random:hex:32}},
        /// {{password:24}}, ...), or, without TEMPLATE, from the secret's core-tier
        /// template (`deploy secret strategy NAME --tier T --serve --template ...`). The
        /// value is shown nowhere.
        #[arg(long, value_name = "TEMPLATE", num_args = 0..=1, default_missing_value = "")]
        generate: Option<String>,
        /// Store an empty value (replacing the secret's value with nothing).
        #[arg(long)]
        allow_empty: bool,
        /// A value given on the command line, which deploy refuses without echoing it
        /// (clap's own "unexpected argument" error would print it).
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        argv_value: Vec<OsString>,
    },
    /// Set many secrets at once, in one transaction: all of them or none.
    ///
    /// From a dotenv file (NAME=VALUE lines, `export`, `#` comments, values quoted
    /// '...' byte for byte or "..." with \n \t \" escapes, over several lines if need
    /// be: a filled-in .env.example), a JSON object of name to string value, or a
    /// directory with one file per secret (named after it, read byte for byte). Values
    /// are never printed, nor is any line of the input. At most 10,000 secrets and 4 MiB
    /// in one import; an empty value is refused unless --allow-empty.
    #[command(
        group(clap::ArgGroup::new("source").required(true)),
        after_help = "\
Examples:
  deploy secret import --dotenv .env
  deploy secret import --json secrets.json
  deploy secret import --dir /run/keys        # one file per secret: /run/keys/tls_key, ..."
    )]
    Import {
        /// A dotenv file.
        #[arg(long, value_name = "FILE", group = "source")]
        dotenv: Option<PathBuf>,
        /// A JSON object of secret name to string value.
        #[arg(long, value_name = "FILE", group = "source")]
        json: Option<PathBuf>,
        /// A directory of files, one per secret.
        #[arg(long, value_name = "DIR", group = "source")]
        dir: Option<PathBuf>,
        /// Store empty values too.
        #[arg(long)]
        allow_empty: bool,
    },
    /// List secrets: version, size, last change and the services granted each.
    ///
    /// PATTERN is a shell-style glob over names: * any run of characters, ? one
    /// character, [abc] or [a-z] one of a set, [!abc] one not in it. Quote it, so that
    /// the shell does not expand it first. A grant that ends by itself shows when.
    ///
    /// With --stale, the secrets whose current version is older than their rotation
    /// period (the catalog's rotate-every, 90 days if none is declared), with owner and
    /// age (also /secrets/stale).
    #[command(after_help = "\
Examples:
  deploy secret list
  deploy secret list 'db_*'
  deploy secret list '*_key' --json
  deploy secret list --stale")]
    List {
        /// List only the secrets whose names match this glob.
        #[arg(conflicts_with = "stale")]
        pattern: Option<String>,
        /// Only the secrets older than their rotation period.
        #[arg(long)]
        stale: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Delete a secret (and every grant of it).
    Delete {
        /// The secret's name.
        name: String,
    },
    /// Let a service read a secret, for good or (--expires) for a while.
    ///
    /// A grant with --expires ends by itself: from then on the service's reads fail, as
    /// after a revoke, even of a file it holds open. Granting again replaces when it ends
    /// (without --expires: never).
    #[command(after_help = "\
Examples:
  deploy secret grant web db_password
  deploy secret grant oncall db_password --expires 12h
  deploy service check web                   # are all its manifest's secrets granted?")]
    Grant {
        /// The service.
        service: String,
        /// The secret's name.
        name: String,
        /// End the grant after DURATION: 30s, 15m, 12h, 90d, 2w.
        #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
        expires: Option<u64>,
    },
    /// Replace a secret's value by a rotation: stage, test, promote.
    ///
    /// The new value (typed at a prompt without echo on a terminal, else stdin, or
    /// --file, or made on the server with --generate) is staged as a pending version:
    /// the services granted NAME can read it as secret/NAME@pending (by that name; a
    /// listing never shows it), nobody else. With --test, CMD runs (sh -c) and may read
    /// it through a service's view, e.g. `deploy secret get "$SRV_SECRETS_SECRET@pending"
    /// --as web`; the value is never in its environment or arguments, which hold
    /// SRV_SECRETS_ADDR, SRV_SECRETS_SECRET and SRV_SECRETS_PENDING_VERSION. If CMD
    /// fails, the pending version is destroyed, nothing else changes, and deploy exits
    /// with CMD's status. Then the pending version is promoted: it becomes current, and
    /// the old one NAME@previous until the --overlap ends (default: none; `deploy secret
    /// retire NAME` ends it sooner); a fid still reading the old value keeps reading it.
    ///
    /// --revoke-previous (an incident) destroys the old value at promotion instead, and
    /// every fid still reading it fails on its next read. A pending version not promoted
    /// within an hour is discarded.
    #[command(after_help = "\
Examples:
  deploy secret rotate db_password                     # type the new value
  deploy secret rotate jwt_key --generate --overlap 1d --reason 'quarterly rotation'
  deploy secret rotate api_key --file new.key \\
      --test 'deploy secret get \"$SRV_SECRETS_SECRET@pending\" --as web | ./check-key'
  deploy secret rotate signing_key --generate --revoke-previous --reason 'INC-42: leaked'")]
    Rotate(RotateArgs),
    /// Make a secret's previous version current again (the current one becomes previous).
    #[command(after_help = "\
Examples:
  deploy secret rollback db_password --reason 'the new password broke the worker'")]
    Rollback {
        /// The secret's name.
        name: String,
    },
    /// Destroy a secret's previous version: its overlap ends, and no rollback can bring
    /// it back.
    Retire {
        /// The secret's name.
        name: String,
    },
    /// Destroy a secret's pending version (a rotation that will not be promoted).
    Discard {
        /// The secret's name.
        name: String,
    },
    /// Everyone a rotation or revoke of a secret must reach: the services granted it (and
    /// whether each has opened the current version), the deployments a value of it was
    /// generated for, the tiers it is delegated to.
    #[command(after_help = "\
Examples:
  deploy secret holders db_password
  deploy secret holders db_password --json")]
    Holders {
        /// The secret's name.
        name: String,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Where a secret's rotation stands: which services granted it have opened the
    /// current version, and which may still read NAME@previous (they have not yet).
    #[command(after_help = "\
Examples:
  deploy secret rotation-status db_password
  deploy secret rotation-status db_password --json")]
    RotationStatus {
        /// The secret's name.
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A secret's versions: current, previous, pending and destroyed, with when each was
    /// made, by whom and why; never a value.
    #[command(after_help = "\
Examples:
  deploy secret history jwt_key
  deploy secret history jwt_key --json")]
    History {
        /// The secret's name.
        name: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Stop a service reading a secret, from its very next read.
    #[command(after_help = "\
Examples:
  deploy secret revoke web db_password
  deploy secret revoke-all db_password --reason 'INC-42'   # every service at once")]
    Revoke {
        /// The service.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// Stop every service reading a secret, at once (break-glass).
    ///
    /// One transaction: every grant of NAME goes, and each service's next read of it
    /// fails, of files held open too. The secret and its value stay (rotate it with
    /// `deploy secret rotate NAME --generate --revoke-previous`); grant it again once the
    /// incident allows. Works while deploys are frozen.
    #[command(after_help = "\
Examples:
  deploy secret revoke-all signing_key --reason 'INC-42: leaked in a log'")]
    RevokeAll {
        /// The secret's name.
        name: String,
        /// Why (recorded with the change).
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },
    /// Seed 004's ownership matrix: secrets by services, with class, owner and age.
    ///
    /// A row per secret (stored, or declared in the catalog), a column per service, a
    /// mark where a grant holds (a grant that ends by itself shows when), with each
    /// secret's class, owner, the age of its current version and its rotation period (the
    /// catalog's rotate-every, 90 days if none). A table for a terminal, or --json, --csv
    /// (RFC 4180) or --markdown. Never a value.
    #[command(after_help = "\
Examples:
  deploy secret matrix
  deploy secret matrix --markdown >> incident-42.md
  deploy secret matrix --csv > matrix.csv")]
    Matrix(MatrixFormat),
    /// Re-encrypt every secret under a new cluster key, showing progress.
    RotateKey,
    /// Set a secret's metadata: class, owner, rotation period, description.
    ///
    /// The secret need not have a value (a prompted or delegated one never does). Only the
    /// fields given change; an empty one (--owner '') clears it (--class none clears the
    /// class). Deleting a secret keeps its metadata; --remove drops it.
    #[command(after_help = "\
Examples:
  deploy secret meta db_root --class infrastructure --owner 'platform team'
  deploy secret meta jwt_key --class service --rotate-every 30d --description 'signs API tokens'
  deploy secret meta old_key --remove")]
    Meta(MetaArgs),
    /// Declare what happens to a secret on a tier: served, stripped, generated, prompted
    /// or delegated.
    ///
    /// Give exactly one of --serve, --strip, --generate, --prompt, --delegate, --remove.
    /// Where the secret's class on the tier is infrastructure, only --serve (on a core
    /// tier) or --strip is accepted: infrastructure never leaves the core server. --class
    /// gives the tier a class of its own (a connection string that is infrastructure on
    /// the core tier and a generated service secret on desktop).
    ///
    /// --help TEXT, after --prompt, is the prompt's help text; --help alone (or -h) prints
    /// this.
    #[command(
        disable_help_flag = true,
        group(ArgGroup::new("how").args(["serve", "strip", "generate", "prompt", "delegate", "remove"])),
        after_help = "\
Templates: {{random:hex:N}} {{random:base64:N}} {{random:base64url:N}} (N random bytes),
  {{password:N}} {{password:N:ALPHABET}} {{uuid}} {{deployment}} {{service}} {{tier}};
  upper-case ones ({{USER_DATA}}, {{ENV:NAME}}) are left to the target. Quote them.

Examples:
  deploy secret strategy postgres_connection --tier local_dev --serve
  deploy secret strategy postgres_connection --tier desktop --class service \\
      --generate 'file://{{USER_DATA}}/app.db'
  deploy secret strategy db_root --tier desktop --strip
  deploy secret strategy openrouter_key --tier desktop --prompt --label 'OpenRouter API key' \\
      --kind password --pattern '^sk-or-' --help 'From openrouter.ai/keys'
  deploy secret strategy telegram_token --tier cloud --delegate github:acme/bot#TELEGRAM_TOKEN"
    )]
    Strategy(StrategyArgs),
    /// Mark a delegated reference present (the provider holds the secret), or not.
    #[command(after_help = "\
Examples:
  deploy secret present telegram_token --tier cloud
  deploy secret present telegram_token --tier cloud --absent")]
    Present {
        /// The secret's name.
        name: String,
        /// The tier it is delegated on.
        #[arg(long)]
        tier: String,
        /// Mark it not present.
        #[arg(long)]
        absent: bool,
    },
    /// What happens to each secret of a service's manifest on a tier; exit 1 on a problem.
    ///
    /// For each secret: its class on the tier, and whether it is served, stripped,
    /// generated (with which template), prompted (with which label and rules) or
    /// delegated (to which reference, and whether it is present). Then every problem: no
    /// strategy for the tier, no such secret, not granted on a core tier, a delegated
    /// reference not marked present. Never a value.
    #[command(after_help = "\
Examples:
  deploy secret plan --service web --tier desktop
  deploy secret plan --scenario picker-wheel --tier desktop --json")]
    Plan {
        /// The service (a scenario) whose manifest is planned.
        #[arg(long, visible_alias = "scenario", value_name = "SERVICE")]
        service: String,
        /// The tier.
        #[arg(long)]
        tier: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Declare a secret delegated to a provider on a tier, and hand the provider its value.
    ///
    /// Without --via, records the reference (not present; `deploy secret present` marks
    /// it). With --via CMD, reads the value (typed at a prompt without echo on a terminal,
    /// else stdin) and pipes it to `sh -c CMD`'s stdin, a provider's CLI that stores it;
    /// when CMD exits 0, marks the reference present. The value is never sent to the
    /// server, stored, logged or printed: it goes to CMD and nowhere else. CMD's output
    /// goes to stderr.
    #[command(after_help = "\
Examples:
  deploy secret delegate tg_token --tier cloud --ref github:acme/bot#TELEGRAM_TOKEN
  deploy secret delegate tg_token --tier cloud --ref github:acme/bot#TELEGRAM_TOKEN \\
      --via 'gh secret set TELEGRAM_TOKEN --repo acme/bot'")]
    Delegate {
        /// The secret's name.
        name: String,
        /// The tier it is delegated on.
        #[arg(long)]
        tier: String,
        /// Where the provider holds it: github:OWNER/REPO#NAME, gcp:projects/P/secrets/S,
        /// env:NAME, ...
        #[arg(long = "ref", value_name = "REF")]
        reference: String,
        /// A command that stores the value it reads on stdin (run with sh -c).
        #[arg(long, value_name = "CMD")]
        via: Option<String>,
        /// A value given on the command line, which deploy refuses without echoing it.
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        argv_value: Vec<OsString>,
    },
    /// What the catalog leaves undecided or broken; exit 1 on any finding.
    ///
    /// Secrets with no class; secrets a manifest uses that lack a strategy for one of the
    /// service's tiers; infrastructure that could leave; manifest entries with no secret;
    /// delegated references not present; and per tier the share of secrets with a strategy.
    /// Each finding has a stable id (`no-strategy/desktop/jwt_key`), so that a tracker
    /// files it once.
    #[command(after_help = "\
Examples:
  deploy secret lint
  deploy secret lint --tier desktop --json")]
    Lint {
        /// Only this tier's findings (and those of no tier).
        #[arg(long)]
        tier: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print a secret's value as a service sees it, byte for byte (admin only).
    ///
    /// NAME@pending reads the version a rotation staged, NAME@previous the one it
    /// replaced, during its overlap. To a terminal, a value that is not text (not UTF-8, or with control characters
    /// other than newline, tab and carriage return) is refused unless --raw; to a pipe or
    /// a file the bytes are written exactly as stored.
    #[command(after_help = "\
Examples:
  deploy secret get db_password --as web
  deploy secret get tls_key --as web > key.pem
  deploy secret get tls_key --as web | od -c | head
  deploy secret get jwt_key@pending --as web")]
    Get {
        /// The secret's name.
        name: String,
        /// Read through this service's view: only its granted secrets exist there.
        #[arg(long = "as", value_name = "SERVICE")]
        service: String,
        /// Print the bytes to a terminal even if they are not text.
        #[arg(long)]
        raw: bool,
    },
}

/// `deploy audit …`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// List the audit trail's records, oldest first, every chain merged by time.
    ///
    /// Records of the changes (chain `changes`: set, grant, revoke, promote, rotate-key,
    /// ...) and of the opens of secrets by services' views (chain `opens`), each with who
    /// (principal and uid), the action, its target, the version, the reason and the
    /// result; never a value. A table, or with --json the records as the server exports
    /// them (one JSON object a line, which `deploy audit verify --log` checks).
    #[command(after_help = "\
Examples:
  deploy audit list --since 1h
  deploy audit list --secret db_password --since 2025-06-01T00:00:00Z
  deploy audit list --service web --action open
  deploy audit list --json > audit.jsonl")]
    List {
        /// Only records at or after T: RFC 3339, or a time ago (90s, 15m, 1h, 7d).
        #[arg(long, value_name = "T")]
        since: Option<String>,
        /// Only records at or before T.
        #[arg(long, value_name = "T")]
        until: Option<String>,
        /// Only records of this secret.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// Only records of this service (its changes, and opens through its view).
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Only records of this action (set, grant, open, ...).
        #[arg(long, value_name = "A")]
        action: Option<String>,
        /// Only records of this chain (changes, opens).
        #[arg(long, value_name = "CHAIN")]
        chain: Option<String>,
        /// Print the records as JSON lines instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print records as they are made, until stopped (SIGINT, SIGTERM or SIGHUP: exit 0).
    ///
    /// For shipping to a log system: with --json, one JSON object a line, flushed as each
    /// batch arrives.
    #[command(after_help = "\
Examples:
  deploy audit follow
  deploy audit follow --json | logger -t srv-secrets-audit")]
    Follow {
        /// Print JSON lines instead of table rows.
        #[arg(long)]
        json: bool,
    },
    /// Check every record's signature and link, and that the log reaches each --head.
    ///
    /// Names the first bad record: one changed, removed, inserted or reordered, or (against
    /// a head recorded elsewhere) a tail cut off. Exit 0 if the log verifies, 1 if not.
    /// With --log, checks an exported log (JSON lines) with --public-key alone, needing no
    /// server.
    #[command(after_help = "\
Examples:
  deploy audit verify
  deploy audit verify --head 1234:9f2c...e1
  deploy audit verify --log audit.jsonl --public-key 3b6a...0c --head opens:88:51d0...aa")]
    Verify {
        /// A head the log must reach: [CHAIN:]SEQ:HASH from `deploy audit head` (the chain
        /// defaults to changes); repeatable.
        #[arg(long, value_name = "SEQ:HASH")]
        head: Vec<String>,
        /// Verify this exported log instead of the server's.
        #[arg(long, value_name = "FILE")]
        log: Option<PathBuf>,
        /// The audit's public key (64 hex digits, from `deploy audit head`), with --log.
        #[arg(long, value_name = "HEX")]
        public_key: Option<String>,
    },
    /// Print the audit's public key and each chain's last record (SEQ:HASH).
    ///
    /// Keep a head somewhere the server cannot write: `deploy audit verify --head` then
    /// shows that no record up to it was removed since.
    Head {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// `deploy secret rotate NAME ...`
#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The secret's name (it must exist).
    pub name: String,
    /// Read the new value from this file, byte for byte.
    #[arg(long, value_name = "PATH", conflicts_with = "generate")]
    pub file: Option<PathBuf>,
    /// Make the new value on the server from TEMPLATE, or, without TEMPLATE, from the
    /// secret's core-tier template. The value is shown nowhere.
    #[arg(long, value_name = "TEMPLATE", num_args = 0..=1, default_missing_value = "")]
    pub generate: Option<String>,
    /// How long services may still read the old value as NAME@previous: 30s, 15m, 12h,
    /// 90d, 2w (default: not at all).
    #[arg(
        long,
        value_name = "DURATION",
        value_parser = parse_duration,
        conflicts_with = "revoke_previous"
    )]
    pub overlap: Option<u64>,
    /// Run CMD (sh -c) before promoting; if it fails, discard the new value and exit with
    /// its status.
    #[arg(long, value_name = "CMD")]
    pub test: Option<String>,
    /// Destroy the old value at promotion, and cut off every reader of it (an incident).
    #[arg(long)]
    pub revoke_previous: bool,
    /// Retire the old value as soon as every service granted NAME has opened the new one
    /// (at the latest when the overlap ends); needs --overlap.
    #[arg(long, requires = "overlap")]
    pub retire_when_read: bool,
    /// Stage an empty value.
    #[arg(long)]
    pub allow_empty: bool,
    /// A value given on the command line, which deploy refuses without echoing it.
    #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
    pub argv_value: Vec<OsString>,
}

/// `deploy service …`
#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Add a service (or change its uid), optionally with its manifest.
    #[command(after_help = "\
Examples:
  deploy service add web --uid 1001
  deploy service add web --uid 1001 --manifest web.manifest

A manifest has lines `secret NAME` and `config KEY=VALUE`, e.g.:
  secret db_password
  config log_level=info")]
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
    /// Remove a service and its grants (its tiers in the catalog stay).
    Remove {
        /// The service's name.
        service: String,
    },
    /// Declare the tiers a service is deployed to (plans and the lint use them).
    #[command(after_help = "\
Examples:
  deploy service tiers web desktop,local_dev
  deploy service tiers web --all                 # every declared tier (the default)")]
    Tiers {
        /// The service's name.
        service: String,
        /// The tiers, comma-separated.
        #[arg(value_name = "TIER,TIER", required_unless_present = "all")]
        tiers: Option<String>,
        /// Every declared tier.
        #[arg(long, conflicts_with = "tiers")]
        all: bool,
    },
    /// List services: uid, secrets the manifest needs, grants, grants missing, and
    /// whether each is suspended.
    List(JsonFlag),
    /// Suspend a service (break-glass): its next read of anything fails.
    ///
    /// Every request through SERVICE's view (its own connections, and views the admin
    /// mounted for it) fails from now on with "permission denied", of files held open
    /// too: secrets and config alike. Its grants, uid and manifest stay, so that `deploy
    /// service resume SERVICE` brings it back as it was. Stored: it survives a restart.
    /// Works while deploys are frozen.
    #[command(after_help = "\
Examples:
  deploy service suspend worker --reason 'INC-42: worker host compromised'
  deploy service list
  deploy service resume worker --reason 'INC-42: host rebuilt'")]
    Suspend {
        /// The service.
        service: String,
        /// Why (recorded with the change, shown by `deploy service list`).
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },
    /// Resume a suspended service: its reads work again.
    Resume {
        /// The service.
        service: String,
        /// Why (recorded with the change).
        #[arg(long, value_name = "R")]
        reason: Option<String>,
    },
    /// Check that every secret in a service's manifest is granted; exit 1 if not.
    ///
    /// Refused while deploys are frozen (`deploy freeze`): it is the gate a deploy
    /// passes.
    #[command(after_help = "\
Examples:
  deploy service check web
  deploy service check web --json || echo 'web lacks grants'")]
    Check {
        /// The service's name.
        service: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a command with SERVICE's view at /secret and /config, as SERVICE's uid (root).
    ///
    /// Refused while deploys are frozen. First checks that every secret in SERVICE's
    /// manifest is granted; if one is not, exits 1 before starting anything and says how
    /// to grant each. Then CMD runs in a
    /// mount namespace of its own, where /secret/NAME and /config/KEY are SERVICE's live
    /// view (the host's namespace does not change), as SERVICE's uid and gid with no
    /// supplementary groups and no_new_privs. deploy passes SIGTERM, SIGINT, SIGHUP,
    /// SIGQUIT, SIGUSR1 and SIGUSR2 on to CMD, exits with CMD's status (128+N if a signal
    /// N ended it) and unmounts. Nothing is written to disk or to CMD's environment.
    ///
    /// For a program that reads its secrets only when it starts: with
    /// --restart-on-change, deploy stops CMD (SIGTERM, SIGKILL after 10 s) and starts it
    /// again when one of SERVICE's secrets or config keys changes (a set, a rotation, a
    /// grant, a revoke, a delete, a config key; not a staged version); with
    /// --signal-on-change SIG, it sends CMD SIG instead (a program that reloads on SIGHUP).
    ///
    /// /secret and /config must be empty directories (the install step makes them:
    /// `install -d -m 0755 /secret /config`).
    #[command(after_help = "\
Examples:
  deploy service run web -- /usr/bin/web --port 8080
  deploy service run web --mount fuse -- sh -c 'cat /secret/db_password'
  deploy service check web && deploy service run web -- web-server
  deploy service run web --restart-on-change -- /usr/bin/web
  deploy service run web --signal-on-change HUP -- nginx -g 'daemon off;'")]
    Run {
        /// The service.
        service: String,
        /// How to mount its view.
        #[arg(long, value_enum, default_value = "auto")]
        mount: MountKind,
        /// Restart CMD when one of the service's secrets or config keys changes.
        #[arg(long, conflicts_with = "signal_on_change")]
        restart_on_change: bool,
        /// Send CMD this signal when one of the service's secrets or config keys changes:
        /// HUP, INT, QUIT, USR1, USR2, TERM, ALRM or WINCH (with or without SIG).
        #[arg(long, value_name = "SIG", value_parser = parse_signal)]
        signal_on_change: Option<OnChangeSignal>,
        /// The command and its arguments, after `--`.
        #[arg(required = true, last = true, value_name = "CMD")]
        command: Vec<OsString>,
    },
}

/// `deploy secret meta …`'s arguments.
#[derive(Debug, Args)]
pub struct MetaArgs {
    /// The secret's name.
    pub name: String,
    /// infrastructure (never leaves the core server), service (made per deployment)
    /// or user (asked of the user); none clears it.
    #[arg(long, value_enum)]
    pub class: Option<ClassArg>,
    /// Who answers for it (free text).
    #[arg(long)]
    pub owner: Option<String>,
    /// How often to rotate it: 30m, 12h, 90d (the default), 2w.
    #[arg(long, value_name = "DURATION")]
    pub rotate_every: Option<String>,
    /// What it is.
    #[arg(long)]
    pub description: Option<String>,
    /// Remove its metadata (its value, if any, stays).
    #[arg(long, conflicts_with_all = ["class", "owner", "rotate_every", "description"])]
    pub remove: bool,
}

/// `deploy secret strategy …`'s arguments.
#[derive(Debug, Args)]
pub struct StrategyArgs {
    /// Print help.
    #[arg(short = 'h', action = ArgAction::Help)]
    pub short_help: Option<bool>,
    /// The secret's name.
    #[arg(required_unless_present = "help")]
    pub name: Option<String>,
    /// The tier.
    #[arg(long, required_unless_present = "help")]
    pub tier: Option<String>,
    /// The secret's class on this tier, if not its own.
    #[arg(long, value_enum)]
    pub class: Option<ClassArg>,
    /// Served by the core server (core tiers only).
    #[arg(long)]
    pub serve: bool,
    /// With --serve: the template `deploy secret set NAME --generate` makes the stored
    /// value from.
    #[arg(long, value_name = "TEMPLATE")]
    pub template: Option<String>,
    /// Never leaves the core server: deployments get nothing.
    #[arg(long)]
    pub strip: bool,
    /// Made fresh for each deployment from TEMPLATE.
    #[arg(long, value_name = "TEMPLATE")]
    pub generate: Option<String>,
    /// Asked of the user at first run (with --label).
    #[arg(long)]
    pub prompt: bool,
    /// With --prompt: the question the UI shows.
    #[arg(long, value_name = "TEXT")]
    pub label: Option<String>,
    /// With --prompt: longer help text for the UI. Alone: print this help.
    #[arg(long = "help", value_name = "TEXT", num_args = 0..=1)]
    pub help: Option<Option<String>>,
    /// With --prompt: the kind of answer.
    #[arg(long, value_enum)]
    pub kind: Option<KindArg>,
    /// With --prompt: a regular expression the whole answer must match.
    #[arg(long, value_name = "REGEX")]
    pub pattern: Option<String>,
    /// With --prompt: the least value (number) or length (otherwise).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub min: Option<i64>,
    /// With --prompt: the greatest value (number) or length (otherwise).
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub max: Option<i64>,
    /// With --prompt: the user may leave it empty.
    #[arg(long)]
    pub optional: bool,
    /// Held by a provider: github:OWNER/REPO#NAME, gcp:projects/P/secrets/S, env:NAME, ...
    #[arg(long, value_name = "REF")]
    pub delegate: Option<String>,
    /// Remove the secret's strategy on the tier.
    #[arg(long)]
    pub remove: bool,
}

/// A secret's class, as the command line takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ClassArg {
    /// Never leaves the core server.
    Infrastructure,
    /// Made per deployment.
    Service,
    /// Asked of the user.
    User,
    /// No class (clears it; with `strategy`, the secret's own).
    None,
}

impl ClassArg {
    /// The word the ctl language carries (`''` for none).
    pub fn word(self) -> &'static str {
        match self {
            ClassArg::Infrastructure => "infrastructure",
            ClassArg::Service => "service",
            ClassArg::User => "user",
            ClassArg::None => "",
        }
    }
}

/// A prompt's kind of answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    /// Any text.
    Text,
    /// Not shown as typed.
    Password,
    /// A URL.
    Url,
    /// An e-mail address.
    Email,
    /// An integer (--min and --max bound its value).
    Number,
}

impl KindArg {
    /// The word the ctl language carries.
    pub fn word(self) -> &'static str {
        match self {
            KindArg::Text => "text",
            KindArg::Password => "password",
            KindArg::Url => "url",
            KindArg::Email => "email",
            KindArg::Number => "number",
        }
    }
}

/// `deploy tier …`
#[derive(Debug, Subcommand)]
pub enum TierCommand {
    /// Declare a tier, or change whether it is core.
    ///
    /// A core tier is the core server itself, where services read their view from
    /// srv-secrets; only core tiers serve stored values. A core tier that serves a secret
    /// cannot stop being core.
    #[command(after_help = "\
Examples:
  deploy tier add local_dev --core
  deploy tier add desktop
  deploy tier add cloud")]
    Add {
        /// The tier's name: 1 to 32 of a-z 0-9 _ -
        tier: String,
        /// The core server itself.
        #[arg(long)]
        core: bool,
    },
    /// Remove a tier that no strategy and no service's tier list names.
    Remove {
        /// The tier.
        tier: String,
    },
    /// List the declared tiers.
    List(JsonFlag),
}

/// `deploy bundle …`
#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Issue a deployment a bundle of a service on a tier, and write it to DIR.
    ///
    /// The server generates a fresh value for each secret the tier generates, and keeps
    /// (for `deploy bundle list` and `identify`) which deployment got which, by a keyed
    /// fingerprint, never the value. A bundle never holds a stored value: infrastructure
    /// is stripped, user secrets come as prompt specs, delegated ones as references.
    /// Refused if the plan has a problem (see `deploy secret plan`), or if the deployment
    /// already has a bundle of the service on the tier, unless --replace (which issues a
    /// new one; the earlier values stay on record).
    ///
    /// DIR must not exist, or be empty; it is made 0700, its files 0600, and nothing is
    /// written if anything fails. --format dir (the default): DIR/values/NAME, one file
    /// per generated value (its exact bytes), prompts.json, delegated.json, manifest.json.
    /// --format dotenv: the values as NAME=VALUE lines in DIR/values.env, beside the same
    /// JSON files. --format json: everything in one document, DIR/bundle.json, values in
    /// base64.
    #[command(after_help = "\
Examples:
  deploy bundle create --service web --tier desktop --deployment acme-laptop-7 --out ./bundle
  deploy bundle create --service web --tier cloud --deployment eu-1 --out ./eu-1 --format dotenv
  deploy bundle create --service web --tier desktop --deployment acme-laptop-7 --out ./b2 --replace")]
    Create {
        /// The service whose manifest is bundled.
        #[arg(long)]
        service: String,
        /// The tier (not a core one).
        #[arg(long)]
        tier: String,
        /// The deployment's id: 1 to 128 of A-Z a-z 0-9 . _ -
        #[arg(long, value_name = "ID")]
        deployment: String,
        /// Where to write it: a directory that does not exist yet, or an empty one.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The layout.
        #[arg(long, value_enum, default_value = "dir")]
        format: BundleFormat,
        /// Issue a new bundle to a deployment that has one.
        #[arg(long)]
        replace: bool,
    },
    /// List the values bundles were issued: deployment, service, tier, bundle, secret, when.
    #[command(after_help = "\
Examples:
  deploy bundle list
  deploy bundle list --deployment acme-laptop-7
  deploy bundle list --secret jwt_key --json")]
    List {
        /// Only those issued to this deployment.
        #[arg(long, value_name = "ID")]
        deployment: Option<String>,
        /// Only this secret's.
        #[arg(long, value_name = "NAME")]
        secret: Option<String>,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Name the deployment a leaked value was issued to; exit 1 if none was.
    ///
    /// The value is typed at a prompt without echo on a terminal, else read from stdin
    /// byte for byte (a single newline at its end is tried both with and without), never
    /// from the command line. The server compares fingerprints and keeps nothing of it.
    #[command(after_help = "\
Examples:
  deploy bundle identify                       # paste the value; it is not echoed
  deploy bundle identify < leaked.txt")]
    Identify {
        /// A value given on the command line, which deploy refuses without echoing it.
        #[arg(hide = true, num_args = 0.., allow_hyphen_values = true)]
        argv_value: Vec<OsString>,
    },
}

/// How `deploy bundle create` lays a bundle out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BundleFormat {
    /// values/NAME, prompts.json, delegated.json, manifest.json.
    Dir,
    /// bundle.json: one document, values in base64.
    Json,
    /// values.env (NAME=VALUE lines), prompts.json, delegated.json, manifest.json.
    Dotenv,
}

/// `deploy catalog …`
#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Apply a catalog file (TOML, or JSON: its TOML shape or seed 000's), showing the diff.
    ///
    /// The tiers, services and secrets the file names get exactly its declarations; the
    /// others are left alone unless --prune removes them. Grants are never touched. It is
    /// one transaction: all of it applies, or nothing does. A catalog holds metadata, not
    /// values: a `value` in it is refused, because catalogs end up in git, unless
    /// --with-values stores each as the secret's value in the same transaction.
    #[command(after_help = "\
Examples:
  deploy catalog apply catalog.toml --dry-run
  deploy catalog apply catalog.toml
  deploy catalog apply secrets.json --with-values     # seed 000's metadata, with its values
  deploy catalog export > catalog.toml && deploy catalog apply catalog.toml --prune")]
    Apply {
        /// The catalog file (.toml or .json; up to 16 MiB).
        file: PathBuf,
        /// Show what would change, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Remove the declarations the file does not make.
        #[arg(long)]
        prune: bool,
        /// Store the values the file carries as the secrets' values.
        #[arg(long)]
        with_values: bool,
        /// Print the diff as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write the catalog to stdout: no values. Applying it changes nothing.
    #[command(after_help = "\
Examples:
  deploy catalog export > catalog.toml
  deploy catalog export --format json")]
    Export {
        /// The form.
        #[arg(long, value_enum, default_value = "toml")]
        format: FormatArg,
    },
}

/// A catalog file's form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// TOML, the native form.
    Toml,
    /// JSON.
    Json,
}

/// The longest --timeout: a day is already "never" for a command someone waits on.
const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

/// Parses `--timeout`: a whole number and a unit, `500ms`, `10s`, `2m` or `1h`.
/// A duration as `--overlap` and `--expires` take it, in seconds.
fn parse_duration(text: &str) -> Result<u64, String> {
    model::parse_duration(text).map_err(|e| e.to_string())
}

fn parse_timeout(text: &str) -> Result<Duration, String> {
    let bad = || format!("'{text}' is not a duration; write a number and a unit: 500ms, 10s, 2m");
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().map_err(|_| bad())?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(bad()),
    };
    let ms = number.checked_mul(unit_ms).ok_or_else(bad)?;
    let d = Duration::from_millis(ms);
    if d.is_zero() {
        return Err("a timeout of 0 would give up at once; give at least 1ms".into());
    }
    if d > MAX_TIMEOUT {
        return Err("a timeout longer than a day (24h) is not a timeout; give at most 24h".into());
    }
    Ok(d)
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
            Command::Secret(SecretCommand::Get { name, service, raw }) => {
                assert_eq!((name.as_str(), service.as_str(), raw), ("db", "web", false));
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
    fn flags_after_the_name_are_flags_not_values() {
        let cli = Cli::try_parse_from(["deploy", "secret", "set", "db", "--allow-empty"]).unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Set {
                allow_empty,
                argv_value,
                ..
            }) => {
                assert!(allow_empty);
                assert!(argv_value.is_empty());
            }
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn global_flags_after_any_subcommand() {
        let cli = Cli::try_parse_from([
            "deploy",
            "secret",
            "list",
            "db_*",
            "--addr",
            "/s",
            "--timeout",
            "2m",
        ])
        .unwrap();
        assert_eq!(cli.addr.as_deref(), Some("/s"));
        assert_eq!(cli.timeout, Duration::from_secs(120));
        match cli.command {
            Command::Secret(SecretCommand::List { pattern, json, .. }) => {
                assert_eq!((pattern.as_deref(), json), (Some("db_*"), false));
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["deploy", "service", "list", "--timeout", "500ms"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_millis(500));
    }

    #[test]
    fn the_timeout_defaults_to_ten_seconds() {
        let cli = Cli::try_parse_from(["deploy", "status"]).unwrap();
        assert_eq!(cli.timeout, Duration::from_secs(10));
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_timeout("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_timeout("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_timeout("1h"), Ok(Duration::from_secs(3600)));
        for bad in [
            "",
            "10",
            "s",
            "1.5s",
            "-1s",
            "10 s",
            "10sec",
            "99999999999999999999h",
        ] {
            let e = parse_timeout(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad}: {e}");
        }
        assert!(parse_timeout("0s").unwrap_err().contains("at least 1ms"));
        assert!(parse_timeout("25h").unwrap_err().contains("at most 24h"));
        let e = Cli::try_parse_from(["deploy", "status", "--timeout", "soon"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn a_change_restarts_or_signals_by_a_signal_named_either_way() {
        let signal_of = |sig: &str| {
            let cli = Cli::try_parse_from([
                "deploy",
                "service",
                "run",
                "web",
                "--signal-on-change",
                sig,
                "--",
                "true",
            ]);
            match cli.map(|c| c.command) {
                Ok(Command::Service(ServiceCommand::Run {
                    signal_on_change: Some(s),
                    ..
                })) => Ok(s.name),
                Ok(other) => panic!("parsed as {other:?}"),
                Err(e) => Err(e.to_string()),
            }
        };
        assert_eq!(signal_of("HUP"), Ok("HUP"));
        assert_eq!(signal_of("sighup"), Ok("HUP"));
        assert_eq!(signal_of("USR1"), Ok("USR1"));
        let e = signal_of("KILL").unwrap_err();
        assert!(e.contains("use one of HUP, INT, QUIT"), "{e}");
        let both = Cli::try_parse_from([
            "deploy",
            "service",
            "run",
            "web",
            "--restart-on-change",
            "--signal-on-change",
            "HUP",
            "--",
            "true",
        ]);
        assert_eq!(both.unwrap_err().exit_code(), 2);
        let watch = Cli::try_parse_from(["deploy", "watch", "web", "--json"]).unwrap();
        assert!(watch.command.handles_signals());
        assert!(matches!(
            watch.command,
            Command::Watch { service: Some(s), json: true } if s == "web"
        ));
    }

    #[test]
    fn run_takes_the_command_after_the_double_dash() {
        let cli = Cli::try_parse_from([
            "deploy", "service", "run", "web", "--mount", "fuse", "--", "sh", "-c", "x --y",
        ])
        .unwrap();
        assert!(cli.command.handles_signals());
        match cli.command {
            Command::Service(ServiceCommand::Run {
                service,
                mount,
                command,
                restart_on_change,
                signal_on_change,
            }) => {
                assert_eq!((service.as_str(), mount), ("web", MountKind::Fuse));
                assert_eq!(command, ["sh", "-c", "x --y"]);
                assert!(!restart_on_change && signal_on_change.is_none());
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from(["deploy", "service", "run", "web", "--", "true"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Service(ServiceCommand::Run {
                mount: MountKind::Auto,
                ..
            })
        ));
        // No command: a usage error.
        let e = Cli::try_parse_from(["deploy", "service", "run", "web"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn mount_takes_a_service_and_a_directory() {
        let cli =
            Cli::try_parse_from(["deploy", "mount", "web", "/run/web", "--foreground"]).unwrap();
        assert!(cli.command.handles_signals());
        match cli.command {
            Command::Mount {
                service,
                dir,
                foreground,
            } => {
                assert_eq!(service, "web");
                assert_eq!(dir, PathBuf::from("/run/web"));
                assert!(foreground);
            }
            other => panic!("parsed as {other:?}"),
        }
        let status = Cli::try_parse_from(["deploy", "status"]).unwrap();
        assert!(!status.command.handles_signals());
    }

    #[test]
    fn strategy_takes_help_text_and_still_has_help() {
        let cli = Cli::try_parse_from([
            "deploy",
            "secret",
            "strategy",
            "key",
            "--tier",
            "desktop",
            "--prompt",
            "--label",
            "Key",
            "--help",
            "From the console",
            "--min",
            "-1",
        ])
        .unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Strategy(a)) => {
                assert_eq!(a.help, Some(Some("From the console".into())));
                assert_eq!(a.min, Some(-1));
                assert!(a.prompt);
            }
            other => panic!("parsed as {other:?}"),
        }
        // --help alone needs no other argument: it asks for the help.
        let cli = Cli::try_parse_from(["deploy", "secret", "strategy", "--help"]).unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Strategy(a)) => assert_eq!(a.help, Some(None)),
            other => panic!("parsed as {other:?}"),
        }
        let e = Cli::try_parse_from(["deploy", "secret", "strategy", "-h"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
        // Two strategies: a usage error (a prompt's fields without --prompt are refused
        // by `deploy`, see commands::catalog).
        for args in [
            &["--serve", "--strip"][..],
            &["--generate", "x", "--delegate", "y"][..],
        ] {
            let mut argv = vec!["deploy", "secret", "strategy", "k", "--tier", "t"];
            argv.extend(args);
            let e = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn set_generate_takes_an_optional_template() {
        let cli = Cli::try_parse_from(["deploy", "secret", "set", "k", "--generate"]).unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Set { generate, .. }) => {
                assert_eq!(generate.as_deref(), Some(""))
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "deploy",
            "secret",
            "set",
            "k",
            "--generate",
            "{{random:hex:32}}",
        ])
        .unwrap();
        match cli.command {
            Command::Secret(SecretCommand::Set {
                generate,
                argv_value,
                ..
            }) => {
                assert_eq!(generate.as_deref(), Some("{{random:hex:32}}"));
                assert!(argv_value.is_empty());
            }
            other => panic!("parsed as {other:?}"),
        }
        let cli = Cli::try_parse_from([
            "deploy",
            "secret",
            "plan",
            "--scenario",
            "web",
            "--tier",
            "desktop",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Secret(SecretCommand::Plan { service, .. }) if service == "web"
        ));
    }

    #[test]
    fn bundle_and_prompt_take_their_flags() {
        let cli = Cli::try_parse_from([
            "deploy",
            "bundle",
            "create",
            "--service",
            "web",
            "--tier",
            "desktop",
            "--deployment",
            "acme-7",
            "--out",
            "/tmp/b",
            "--format",
            "dotenv",
            "--replace",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Bundle(BundleCommand::Create {
                format: BundleFormat::Dotenv,
                replace: true,
                ..
            })
        ));
        let cli = Cli::try_parse_from(["deploy", "bundle", "identify", "hunter2"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Bundle(BundleCommand::Identify { argv_value }) if argv_value.len() == 1
        ));
        let cli = Cli::try_parse_from([
            "deploy",
            "prompt",
            "--spec",
            "b/prompts.json",
            "--out",
            "b",
            "--from-env",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Prompt { from_env: true, .. }
        ));
        let cli = Cli::try_parse_from([
            "deploy",
            "secret",
            "delegate",
            "tg",
            "--tier",
            "cloud",
            "--ref",
            "env:TG",
            "--via",
            "cat > /dev/null",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Secret(SecretCommand::Delegate { via: Some(_), .. })
        ));
    }

    #[test]
    fn break_glass_commands_take_a_reason_and_the_matrix_one_format() {
        let cli = Cli::try_parse_from(["deploy", "freeze", "--reason", "INC-42"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Freeze(ReasonFlag { reason: Some(r) }) if r == "INC-42"
        ));
        let cli = Cli::try_parse_from(["deploy", "unfreeze"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Unfreeze(ReasonFlag { reason: None })
        ));
        let cli =
            Cli::try_parse_from(["deploy", "secret", "revoke-all", "db", "--reason", "x"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Secret(SecretCommand::RevokeAll { name, reason: Some(_) }) if name == "db"
        ));
        for (verb, suspend) in [("suspend", true), ("resume", false)] {
            let cli = Cli::try_parse_from(["deploy", "service", verb, "web"]).unwrap();
            match (cli.command, suspend) {
                (Command::Service(ServiceCommand::Suspend { service, .. }), true)
                | (Command::Service(ServiceCommand::Resume { service, .. }), false) => {
                    assert_eq!(service, "web");
                }
                (other, _) => panic!("parsed as {other:?}"),
            }
        }
        let cli = Cli::try_parse_from(["deploy", "secret", "matrix", "--csv"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Secret(SecretCommand::Matrix(MatrixFormat { csv: true, .. }))
        ));
        let e = Cli::try_parse_from(["deploy", "secret", "matrix", "--csv", "--json"]).unwrap_err();
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn uid_must_be_a_number() {
        let err =
            Cli::try_parse_from(["deploy", "service", "add", "web", "--uid", "x"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }
}
