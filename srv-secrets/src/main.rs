//! `srv-secrets`: serve secrets and configuration as files over 9P2000.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use secrets::{Error as VaultError, Vault};
use srv_secrets::listen::{self, Listen};
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
        /// The cluster key file, if it is not DATA/key. Without --key, under systemd with
        /// `LoadCredentialEncrypted=srv-secrets.key:...`, the key is the credential
        /// $CREDENTIALS_DIRECTORY/srv-secrets.key, read-only (rotate-key is refused); --key
        /// wins over a credential.
        #[arg(long)]
        key: Option<PathBuf>,
        /// Where to listen: unix:PATH or a socket's path (repeatable). Default:
        /// $XDG_RUNTIME_DIR/srv-secrets/9p.sock, /run/srv-secrets/9p.sock for root,
        /// else /tmp/srv-secrets-$UID/9p.sock. The socket's directory is made (0755) if
        /// missing; an existing one must belong to this user or root and be writable by
        /// nobody else. tcp:HOST:PORT (plain TCP) only with --insecure-plain-tcp.
        #[arg(long = "listen", value_name = "ADDR")]
        listen: Vec<String>,
        /// Allow --listen tcp:HOST:PORT, on a loopback address only, for tests: plain TCP
        /// is unencrypted and proves nobody, so every connection over it must present
        /// an API token (deploy token create) at attach.
        #[arg(long)]
        insecure_plain_tcp: bool,
        /// Also serve the plan API, JSON over HTTP, on this unix socket (unix:PATH or a
        /// path; repeatable): the admin only, as for 9P; see docs/api.md. Its directory is
        /// checked as --listen's is.
        #[arg(long = "http", value_name = "ADDR")]
        http: Vec<String>,
        /// Add a demo service `demo` (uid 65534) that may read a secret `greeting`,
        /// unless the store already has a service called demo.
        #[arg(long)]
        demo: bool,
        /// How many opens of secrets may wait to be written to the audit trail (they are
        /// written in batches, 20 ms after the first); past it, opens are counted and a
        /// record says how many were not recorded.
        #[arg(long, value_name = "N", default_value_t = secrets::OPEN_QUEUE_BOUND)]
        audit_queue: usize,
    },
    /// Print a completion script for a shell to stdout.
    ///
    /// For example: srv-secrets completions bash > /usr/share/bash-completion/completions/srv-secrets
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page to stdout, or write one per command to a directory.
    ///
    /// With --dir, writes srv-secrets.1, srv-secrets-init.1, srv-secrets-serve.1, ...,
    /// replacing files of those names.
    Manpage {
        /// Write srv-secrets.1 and a page per subcommand here.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Write a backup of a data directory, served or not.
    ///
    /// FILE is a copy of DATA/store.redb as of one commit (restore it as
    /// DATA/store.redb), made mode 0600, never holding the key: back the key file up
    /// apart. While a server serves DATA, the copy is the server's (read through its
    /// socket, from one read transaction; run as root or the admin uid); otherwise the
    /// store is read directly.
    Backup {
        /// The data directory.
        #[arg(long)]
        data: PathBuf,
        /// The socket of the server serving DATA, if not the default one (unix:PATH or
        /// a path).
        #[arg(long, value_name = "ADDR")]
        addr: Option<String>,
        /// The backup file to write; an existing one is kept unless --force.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Replace FILE if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// `srv-secrets backup`: the store copied straight from DATA, which no server may hold.
fn backup(
    data: &std::path::Path,
    addr: Option<&str>,
    out: &std::path::Path,
    force: bool,
) -> Result<(), String> {
    let socket = match addr {
        Some(a) => listen::unix_paths("--addr", &[a.to_string()])?
            .pop()
            .ok_or("--addr names no socket")?,
        None => paths::default_socket(),
    };
    let mut served = false;
    let len =
        srv_secrets::backup::write_new_file(
            out,
            force,
            |mut file| match secrets::backup_unserved(
                data,
                file.try_clone().map_err(|e| e.to_string())?,
            ) {
                Ok(()) => Ok(()),
                Err(VaultError::Locked { .. }) => {
                    served = true;
                    srv_secrets::backup::through_server(data, &socket, &mut file)
                }
                Err(e) => Err(e.to_string()),
            },
        )?;
    let from = if served {
        format!(" (from the server at unix:{})", socket.display())
    } else {
        String::new()
    };
    println!(
        "wrote a backup of {}{from} to {} ({len} bytes); it holds no key: back up the key \
         file apart",
        data.display(),
        out.display()
    );
    Ok(())
}

/// Where `serve` reads the cluster key: `--key`, else the systemd credential, else DATA/key.
enum KeySource {
    /// `--key FILE`, or DATA/key: a key file the server rewrites when it rotates the key.
    File(Option<PathBuf>),
    /// `$CREDENTIALS_DIRECTORY/srv-secrets.key`: read, never written.
    Credential(PathBuf),
}

impl KeySource {
    /// `--key` wins: an operator who names a file means it. A credential that is there
    /// all the same is said in the log, since it is then not the key in use.
    fn resolve(flag: Option<PathBuf>) -> Result<KeySource, String> {
        // With --key, a credentials directory that would be refused is not used either.
        let credential = match (&flag, paths::key_credential()) {
            (Some(_), Err(_)) => None,
            (_, found) => found?,
        };
        Ok(match (flag, credential) {
            (Some(file), Some(credential)) => {
                tracing::warn!(
                    key = %file.display(),
                    credential = %credential.display(),
                    "--key is given, so the systemd credential {} is not used",
                    paths::KEY_CREDENTIAL
                );
                KeySource::File(Some(file))
            }
            (None, Some(credential)) => KeySource::Credential(credential),
            (flag, None) => KeySource::File(flag),
        })
    }
}

fn open_or_init(data: &std::path::Path, key: &KeySource, embedded: bool) -> Result<Vault, String> {
    let key = match key {
        KeySource::File(file) => file.as_deref(),
        KeySource::Credential(credential) => {
            let vault =
                Vault::open_with_read_only_key(data, credential).map_err(|e| e.to_string())?;
            tracing::info!(
                key = %credential.display(),
                "the cluster key is the systemd credential {}, read-only: rotate-key is refused",
                paths::KEY_CREDENTIAL
            );
            return Ok(vault);
        }
    };
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

/// `srv-secrets completions SHELL`.
fn print_completions(shell: clap_complete::Shell) -> Result<(), String> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "srv-secrets", &mut script);
    write_stdout(&script)
}

/// `srv-secrets manpage [--dir DIR]`.
fn write_manpages(dir: Option<PathBuf>) -> Result<(), String> {
    match dir {
        None => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut page)
                .map_err(|e| format!("cannot render the man page: {e}"))?;
            write_stdout(&page)
        }
        Some(dir) => clap_mangen::generate_to(Cli::command(), &dir)
            .map_err(|e| format!("cannot write man pages to {}: {e}", dir.display())),
    }
}

/// Writes to stdout; a reader that closed it early (`| head`) is not an error.
fn write_stdout(bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(format!("cannot write to stdout: {e}"))
        }
        _ => Ok(()),
    }
}

/// What `srv-secrets serve` was asked, its flags as given.
struct ServeArgs {
    data: Option<PathBuf>,
    key: Option<PathBuf>,
    listen: Vec<String>,
    insecure_plain_tcp: bool,
    http: Vec<String>,
    demo: bool,
    audit_queue: usize,
}

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    let ServeArgs {
        data,
        key,
        listen,
        insecure_plain_tcp,
        http,
        demo,
        audit_queue,
    } = args;
    serve::harden_process();
    // Everything that can be refused without the vault is, before the vault is opened
    // (opening locks it, and may resume a key rotation).
    let http_paths = listen::unix_paths("--http", &http)?;
    let (socket_paths, tcp_addrs): (Vec<PathBuf>, Vec<std::net::SocketAddr>) = {
        let mut unix = Vec::new();
        let mut tcp = Vec::new();
        for address in listen::listen_addresses(&listen, insecure_plain_tcp)? {
            match address {
                Listen::Unix(path) => unix.push(path),
                Listen::Tcp(addr) => tcp.push(addr),
            }
        }
        (unix, tcp)
    };
    let key = KeySource::resolve(key)?;
    let embedded = data.is_none();
    let data = match data {
        Some(d) => d,
        None => paths::default_data_dir().ok_or(
            "no data directory: HOME and XDG_DATA_HOME are not set; pass --data DIR, or set HOME",
        )?,
    };
    let euid = paths::euid();
    for path in socket_paths.iter().chain(&http_paths) {
        serve::prepare_socket_dir(path, euid)
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
    }
    let vault = open_or_init(&data, &key, embedded)?;
    serve::report_key_memory();
    vault.set_open_queue_bound(audit_queue);
    if demo {
        seed_demo(&vault)?;
    }
    // Caught before any listener is bound: whoever sees a socket answer may stop us.
    let signals = serve::Signals::catch().map_err(|e| format!("cannot catch signals: {e}"))?;
    // TCP first: once a unix socket answers, every listener is bound.
    let mut tcp = Vec::new();
    for addr in tcp_addrs {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on tcp:{addr}: {e}"))?;
        let bound = listener
            .local_addr()
            .map_err(|e| format!("cannot listen on tcp:{addr}: {e}"))?;
        tcp.push((bound, listener));
    }
    let mut sockets = Vec::new();
    for path in socket_paths {
        let listener = serve::bind_socket(&path)
            .await
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
        sockets.push((path, listener));
    }
    let mut http_sockets = Vec::new();
    for path in http_paths {
        let listener = serve::bind_socket(&path)
            .await
            .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
        http_sockets.push((path, listener));
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
    for (addr, _) in &tcp {
        eprintln!(
            "srv-secrets: listening on tcp:{addr}: plain TCP ({}), for tests: every connection \
             must present an API token",
            listen::INSECURE_PLAIN_TCP
        );
        eprintln!("  manage:  deploy --addr tcp:{addr} --token-file FILE secret list");
    }
    for (path, _) in &http_sockets {
        let p = path.display();
        eprintln!("srv-secrets: the plan API (HTTP) on unix:{p}");
        eprintln!("  try:  curl --unix-socket {p} http://srv-secrets/health/ready");
    }
    if demo {
        eprintln!(
            "srv-secrets: demo: service 'demo' (uid {DEMO_UID}) may read 'greeting'; try: deploy secret get greeting --as demo"
        );
    }
    serve::serve(vault, sockets, tcp, http_sockets, signals)
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
        Command::Backup {
            data,
            addr,
            out,
            force,
        } => backup(&data, addr.as_deref(), &out, force),
        Command::Serve {
            data,
            key,
            listen,
            insecure_plain_tcp,
            http,
            demo,
            audit_queue,
        } => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run_serve(ServeArgs {
                data,
                key,
                listen,
                insecure_plain_tcp,
                http,
                demo,
                audit_queue,
            })),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
        Command::Completions { shell } => print_completions(shell),
        Command::Manpage { dir } => write_manpages(dir),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("srv-secrets: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
