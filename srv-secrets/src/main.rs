//! `srv-secrets`: serve secrets and configuration as files over 9P2000.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrets::{Error as VaultError, Vault};
use srv_secrets::{paths, serve};

/// Serve secrets and configuration as files over 9P2000.
///
/// A service reads /secret/NAME from its view; an operator manages secrets with
/// `deploy`, or by writing commands to /secrets/ctl.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a data directory: an empty store and a new cluster key.
    ///
    /// The uid that runs init becomes the admin (with root).
    Init {
        /// The data directory to create (mode 0700).
        #[arg(long)]
        data: PathBuf,
        /// Where to write the cluster key (mode 0600); default DATA/key. Keep it
        /// outside DATA so that backups of DATA do not carry the key.
        #[arg(long)]
        key: Option<PathBuf>,
    },
    /// Serve a data directory over 9P2000.
    ///
    /// With no flags: the embedded default data directory (made on first run) and
    /// the default socket.
    Serve {
        /// The data directory (default: $XDG_DATA_HOME/srv-secrets, else
        /// /var/lib/srv-secrets for root, else ~/.local/share/srv-secrets; with none of
        /// these set, --data is required).
        #[arg(long)]
        data: Option<PathBuf>,
        /// The cluster key file, if it is not DATA/key.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to listen: unix:PATH (repeatable). Default:
        /// $XDG_RUNTIME_DIR/srv-secrets/9p.sock, /run/srv-secrets/9p.sock for root,
        /// else /tmp/srv-secrets-$UID/9p.sock. The socket's directory is made (0755) if
        /// missing; an existing one must belong to this user or root and be writable by
        /// nobody else.
        #[arg(long = "listen", value_name = "unix:PATH")]
        listen: Vec<String>,
        /// Add a demo service `demo` (uid 65534) that may read a secret `greeting`,
        /// unless the store already has a service called demo.
        #[arg(long)]
        demo: bool,
    },
    /// Write a backup of a data directory that no server is serving.
    ///
    /// FILE is a copy of DATA/store.redb as of one commit (restore it as
    /// DATA/store.redb), made mode 0600, never holding the key: back the key file up
    /// apart. While a server serves DATA, take the backup through it with
    /// `deploy backup FILE`.
    Backup {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The backup file to write; an existing one is kept unless --force.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `srv-secrets backup`: the store copied straight from DATA, which no server may hold.
fn backup(data: &std::path::Path, out: &std::path::Path, force: bool) -> Result<(), String> {
    let len = srv_secrets::backup::write_new_file(out, force, |file| {
        secrets::backup_unserved(data, file).map_err(|e| match e {
            VaultError::Locked { dir } => format!(
                "a server serves {} (its lock file is held), and only it can read the store \
                 now: take the backup through it with `deploy backup {}` (as root or the \
                 admin uid), or stop it first",
                dir.display(),
                out.display()
            ),
            e => e.to_string(),
        })
    })?;
    println!(
        "wrote a backup of {} to {} ({len} bytes); it holds no key: back up the key file apart",
        data.display(),
        out.display()
    );
    Ok(())
}

fn open_or_init(
    data: &std::path::Path,
    key: Option<&std::path::Path>,
    embedded: bool,
) -> Result<Vault, String> {
    match Vault::open(data, key) {
        Ok(v) => Ok(v),
        Err(VaultError::NotInitialized { .. }) if embedded => {
            let report = Vault::init(data, key, paths::euid()).map_err(|e| e.to_string())?;
            eprintln!(
                "srv-secrets: first run: initialized {} (key {})",
                report.data_dir.display(),
                report.key_path.display()
            );
            Vault::open(data, key).map_err(|e| e.to_string())
        }
        // A directory that lost its store but kept its key is StoreLost, which is never
        // initialized over, embedded default or not: its message says how to restore.
        Err(VaultError::NotInitialized { dir }) => Err(format!(
            "{} holds no store; if it had one, restore it from a backup (docs/operations.md, \
             \"Backup and restore\"); to make a new one: srv-secrets init --data {}",
            dir.display(),
            dir.display()
        )),
        Err(e) => Err(e.to_string()),
    }
}

const DEMO_UID: u32 = 65534;

fn seed_demo(vault: &Vault) -> Result<(), String> {
    if vault.service("demo").is_some() {
        return Ok(());
    }
    let e = |e: VaultError| format!("demo: {e}");
    vault
        .set("greeting", b"hello from srv-secrets\n")
        .map_err(e)?;
    vault.service_set_uid("demo", DEMO_UID).map_err(e)?;
    vault
        .service_set_manifest(
            "demo",
            b"secret greeting\nconfig log_level=debug\nconfig listen=127.0.0.1:8080\n",
        )
        .map_err(e)?;
    vault.grant("demo", "greeting").map_err(e)?;
    Ok(())
}

/// The paths of `--listen unix:PATH` addresses (the default socket if there are none),
/// all checked before anything else is done.
fn socket_paths(listen: Vec<String>) -> Result<Vec<PathBuf>, String> {
    if listen.is_empty() {
        return Ok(vec![paths::default_socket()]);
    }
    listen
        .iter()
        .map(|l| match l.strip_prefix("unix:") {
            Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
            _ => Err(format!("--listen {l}: only unix:PATH is supported")),
        })
        .collect()
}

async fn run_serve(
    data: Option<PathBuf>,
    key: Option<PathBuf>,
    listen: Vec<String>,
    demo: bool,
) -> Result<(), String> {
    serve::harden_process();
    // Everything that can be refused without the vault is, before the vault is opened
    // (opening locks it, and may resume a key rotation).
    let socket_paths = socket_paths(listen)?;
    let embedded = data.is_none();
    let data = match data {
        Some(d) => d,
        None => paths::default_data_dir().ok_or(
            "no data directory: HOME and XDG_DATA_HOME are not set; pass --data DIR, or set HOME",
        )?,
    };
    let euid = paths::euid();
    for path in &socket_paths {
        serve::prepare_socket_dir(path, euid)
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
    }
    let vault = open_or_init(&data, key.as_deref(), embedded)?;
    if demo {
        seed_demo(&vault)?;
    }
    let mut sockets = Vec::new();
    for path in socket_paths {
        let listener = serve::bind_socket(&path)
            .await
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
        sockets.push((path, listener));
    }
    let vault = Arc::new(vault);
    eprintln!(
        "srv-secrets: serving {} ({} secrets, {} services; admin uid {})",
        data.display(),
        vault.list_secrets().len(),
        vault.services().len(),
        vault.admin_uid()
    );
    for (path, _) in &sockets {
        let p = path.display();
        eprintln!("srv-secrets: listening on unix:{p}");
        eprintln!("  manage:  deploy --addr unix:{p} secret list");
        eprintln!(
            "  mount a service's view (as root): mount -t 9p -o trans=unix,version=9p2000,aname=SERVICE,dfltuid=UID,dfltgid=GID,cache=none {p} /mnt/SERVICE"
        );
    }
    if demo {
        eprintln!(
            "srv-secrets: demo: service 'demo' (uid {DEMO_UID}) may read 'greeting'; try: deploy secret get greeting --as demo"
        );
    }
    serve::serve(vault, sockets)
        .await
        .map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Init { data, key } => Vault::init(&data, key.as_deref(), paths::euid())
            .map(|r| {
                println!(
                    "initialized {} (store {}, key {}, key id {}); admin uid {}",
                    r.data_dir.display(),
                    r.store_path.display(),
                    r.key_path.display(),
                    r.key_id,
                    r.admin_uid
                );
            })
            .map_err(|e| e.to_string()),
        Command::Backup { data, out, force } => backup(&data, &out, force),
        Command::Serve {
            data,
            key,
            listen,
            demo,
        } => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run_serve(data, key, listen, demo)),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srv-secrets: {e}");
            ExitCode::FAILURE
        }
    }
}
