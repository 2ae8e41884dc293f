//! `srv-secrets`: serve secrets and configuration as files over 9P2000.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, CommandFactory, Parser, Subcommand};
use secrets::{Error as VaultError, Vault};
use srv_secrets::listen::{self, Listen};
use srv_secrets::tls_listener::TlsServer;
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
    ///
    /// Over a unix socket the peer's uid says who it is. Over TLS (--listen
    /// tls:HOST:PORT, TLS 1.3 only) the client's certificate does: it must be issued by
    /// the CA in --client-ca, unexpired and not revoked (--crl), and its subject's Common
    /// Name is the principal: `admin`, or a service's name. A client without a
    /// certificate completes the handshake but is nobody: its attach is refused
    /// ("authentication required"). SIGHUP reloads --tls-cert, --tls-key, --client-ca
    /// and --crl without dropping connections; if the new files are refused, the old
    /// ones stay in use and the log says why. See docs/operations.md, "TLS".
    Serve(ServeArgs),
    /// Relay plain 9P clients on this machine to a remote server over TLS, as a service.
    ///
    /// For clients that speak only plain 9P on a unix socket (the kernel's `mount -t 9p -o
    /// trans=unix`, 9pfuse, `deploy mount`): each connection from a uid given with
    /// --allow-uid (SO_PEERCRED; nobody else) is carried over a TLS connection of its own
    /// to --connect, with the certificate in --cert, so that it sees the view of the
    /// service the certificate names, as the server decides it request by request. An
    /// admin certificate is refused: every allowed uid would be the admin (administer a
    /// remote server with deploy). If the server cannot be reached, the client's first
    /// message is answered with why; if the server goes away, the client's connection is
    /// closed at once, and the next one connects again. SIGHUP reloads --cert, --key and
    /// --ca. See docs/operations.md, "A relay".
    Relay(srv_secrets::relay::RelayArgs),
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

/// `srv-secrets serve`'s flags.
#[derive(Args)]
struct ServeArgs {
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
    /// Where to listen (repeatable): unix:PATH or a socket's path; tls:HOST:PORT (9P over
    /// TLS 1.3, with --tls-cert, --tls-key and --client-ca); tcp:HOST:PORT only with
    /// --insecure-plain-tcp. HOST is an IP address or localhost; port 0 picks a free one.
    /// Default: $XDG_RUNTIME_DIR/srv-secrets/9p.sock, /run/srv-secrets/9p.sock for root,
    /// else /tmp/srv-secrets-$UID/9p.sock. A socket's directory is made (0755) if
    /// missing; an existing one must belong to this user or root and be writable by
    /// nobody else.
    #[arg(long = "listen", value_name = "ADDR")]
    listen: Vec<String>,
    /// Also serve the plan API, JSON over HTTP (repeatable): on a unix socket (unix:PATH
    /// or a path; its directory is checked as --listen's is) or over TLS (tls:HOST:PORT,
    /// the same certificates as 9P's). The admin only, as for 9P; see docs/api.md.
    #[arg(long = "http", value_name = "ADDR")]
    http: Vec<String>,
    /// The server's certificate chain (PEM), for tls: listeners.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; keep it mode 0600).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// The CA certificate(s) trusted to issue client certificates (PEM): whatever name
    /// one of them issues a certificate for (its CN) is that principal.
    #[arg(long, value_name = "FILE")]
    client_ca: Option<PathBuf>,
    /// Certificate revocation lists of --client-ca (PEM or DER): a certificate listed
    /// is refused at the handshake. Reloaded on SIGHUP.
    #[arg(long, value_name = "FILE")]
    crl: Option<PathBuf>,
    /// Allow --listen tcp:HOST:PORT, on a loopback address only, for tests: plain TCP
    /// is unencrypted and proves nobody, so every connection over it must present an
    /// API token (deploy token create) at attach.
    #[arg(long)]
    insecure_plain_tcp: bool,
    /// Add a demo service `demo` (uid 65534) that may read a secret `greeting`,
    /// unless the store already has a service called demo.
    #[arg(long)]
    demo: bool,
    /// How many opens of secrets may wait to be written to the audit trail (they are
    /// written in batches, 20 ms after the first); past it, opens are counted and a
    /// record says how many were not recorded.
    #[arg(long, value_name = "N", default_value_t = secrets::OPEN_QUEUE_BOUND)]
    audit_queue: usize,
}

/// `srv-secrets backup`: the store copied straight from DATA, which no server may hold.
fn backup(
    data: &std::path::Path,
    addr: Option<&str>,
    out: &std::path::Path,
    force: bool,
) -> Result<(), String> {
    let socket = match addr.map(|a| listen::parse(a, "--addr")).transpose()? {
        Some(Listen::Unix(path)) => path,
        Some(other) => {
            return Err(format!(
                "--addr {other}: a backup is read through the server's unix socket: give \
                 unix:PATH"
            ));
        }
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

/// The TLS files of `serve`, if it has a tls: listener; refused if it has none, or if
/// one is missing.
fn tls_files(args: &ServeArgs, wants_tls: bool) -> Result<Option<tls::ServerFiles>, String> {
    let given = [
        ("--tls-cert", &args.tls_cert),
        ("--tls-key", &args.tls_key),
        ("--client-ca", &args.client_ca),
        ("--crl", &args.crl),
    ];
    if !wants_tls {
        if let Some((flag, _)) = given.iter().find(|(_, v)| v.is_some()) {
            return Err(format!(
                "{flag} is for tls: listeners: add --listen tls:HOST:PORT (or --http \
                 tls:HOST:PORT), or leave it out"
            ));
        }
        return Ok(None);
    }
    let missing: Vec<&str> = given[..3]
        .iter()
        .filter(|(_, v)| v.is_none())
        .map(|(flag, _)| *flag)
        .collect();
    match (&args.tls_cert, &args.tls_key, &args.client_ca) {
        (Some(cert), Some(key), Some(client_ca)) => Ok(Some(tls::ServerFiles {
            cert: cert.clone(),
            key: key.clone(),
            client_ca: client_ca.clone(),
            crl: args.crl.clone(),
        })),
        _ => Err(format!(
            "a tls: listener needs --tls-cert, --tls-key and --client-ca; missing: {} (see \
             docs/operations.md, \"TLS\", to make them)",
            missing.join(", ")
        )),
    }
}

/// The 9P and HTTP addresses of `serve`, read and checked: the default socket if there
/// are no --listen; plain TCP refused unless allowed, and for HTTP always.
fn listen_addresses(args: &ServeArgs) -> Result<(Vec<Listen>, Vec<Listen>), String> {
    let nine_p = if args.listen.is_empty() {
        vec![Listen::Unix(paths::default_socket())]
    } else {
        args.listen
            .iter()
            .map(|l| listen::parse(l, "--listen"))
            .collect::<Result<Vec<_>, _>>()?
    };
    for l in &nine_p {
        listen::check_plain_tcp(l, args.insecure_plain_tcp, "--listen")?;
    }
    if args.insecure_plain_tcp && !nine_p.iter().any(|l| matches!(l, Listen::Tcp(_))) {
        return Err(
            "--insecure-plain-tcp allows --listen tcp:HOST:PORT, and there is none; leave it \
             out"
            .into(),
        );
    }
    let http = args
        .http
        .iter()
        .map(|h| listen::parse(h, "--http"))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(tcp) = http.iter().find(|h| matches!(h, Listen::Tcp(_))) {
        return Err(format!(
            "--http {tcp}: the HTTP API is served on unix: or tls: addresses only"
        ));
    }
    Ok((nine_p, http))
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

async fn run_serve(args: ServeArgs) -> Result<(), String> {
    serve::harden_process();
    // Everything that can be refused without the vault is, before the vault is opened
    // (opening locks it, and may resume a key rotation).
    let (nine_p, http) = listen_addresses(&args)?;
    let wants_tls = nine_p
        .iter()
        .chain(&http)
        .any(|l| matches!(l, Listen::Tls(_)));
    let tls = tls_files(&args, wants_tls)?
        .map(TlsServer::load)
        .transpose()?;
    let key = KeySource::resolve(args.key)?;
    let embedded = args.data.is_none();
    let data = match args.data {
        Some(d) => d,
        None => paths::default_data_dir().ok_or(
            "no data directory: HOME and XDG_DATA_HOME are not set; pass --data DIR, or set HOME",
        )?,
    };
    let euid = paths::euid();
    for listen in nine_p.iter().chain(&http) {
        if let Listen::Unix(path) = listen {
            serve::prepare_socket_dir(path, euid)
                .map_err(|e| format!("cannot listen on unix:{}: {e}", path.display()))?;
        }
    }
    let vault = open_or_init(&data, &key, embedded)?;
    serve::report_key_memory();
    vault.set_open_queue_bound(args.audit_queue);
    if args.demo {
        seed_demo(&vault)?;
    }
    // Caught before any listener is bound: whoever sees a socket answer may stop us.
    let signals = serve::Signals::catch().map_err(|e| format!("cannot catch signals: {e}"))?;
    // Network listeners first: once a unix socket answers, every listener is bound.
    let mut nine_p_bound = Vec::new();
    let mut http_bound = Vec::new();
    for unix in [false, true] {
        for listen in nine_p
            .iter()
            .filter(|l| matches!(l, Listen::Unix(_)) == unix)
        {
            nine_p_bound.push(serve::bind(listen, tls.as_ref()).await?);
        }
        for listen in http.iter().filter(|l| matches!(l, Listen::Unix(_)) == unix) {
            http_bound.push(serve::bind(listen, tls.as_ref()).await?);
        }
    }
    let vault = Arc::new(vault);
    eprintln!(
        "srv-secrets: serving {} ({} secrets, {} services; admin uid {})",
        data.display(),
        vault.list_secrets().len(),
        vault.services().len(),
        vault.admin_uid()
    );
    for bound in &nine_p_bound {
        eprintln!("srv-secrets: listening on {bound}");
        match bound {
            serve::Bound::Unix { path, .. } => {
                let p = path.display();
                eprintln!("  manage:  deploy --addr unix:{p} secret list");
                eprintln!(
                    "  mount a service's view (as root): mount -t 9p -o trans=unix,version=9p2000,aname=SERVICE,dfltuid=UID,dfltgid=GID,cache=none {p} /mnt/SERVICE"
                );
            }
            serve::Bound::Tls { .. } => {
                eprintln!(
                    "  9P over TLS 1.3: a client certificate from --client-ca names its holder \
                     (CN admin, or a service's name)"
                );
                eprintln!(
                    "  manage:  deploy --addr {bound} --ca CA.crt --cert admin.crt --key admin.key secret list"
                );
            }
            serve::Bound::Tcp { .. } => {
                eprintln!(
                    "  plain TCP ({}), for tests: unencrypted; every connection must present \
                     an API token",
                    listen::INSECURE_PLAIN_TCP
                );
                eprintln!("  manage:  deploy --addr {bound} --token-file FILE secret list");
            }
        }
    }
    for bound in &http_bound {
        eprintln!("srv-secrets: the plan API (HTTP) on {bound}");
        match bound {
            serve::Bound::Unix { path, .. } => eprintln!(
                "  try:  curl --unix-socket {} http://srv-secrets/health/ready",
                path.display()
            ),
            _ => eprintln!(
                "  try:  curl --cacert CA.crt --cert admin.crt --key admin.key https://{}/health/ready",
                bound.to_string().trim_start_matches("tls:")
            ),
        }
    }
    if args.demo {
        eprintln!(
            "srv-secrets: demo: service 'demo' (uid {DEMO_UID}) may read 'greeting'; try: deploy secret get greeting --as demo"
        );
    }
    serve::serve(vault, nine_p_bound, http_bound, tls, signals)
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
        Command::Serve(args) => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(run_serve(args)),
            Err(e) => Err(format!("cannot start the runtime: {e}")),
        },
        Command::Relay(args) => srv_secrets::relay::main(args),
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

    fn serve_args(args: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from(["srv-secrets", "serve"].iter().chain(args)).unwrap();
        match cli.command {
            Command::Serve(args) => args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn tls_listeners_need_their_three_files_and_the_files_need_a_tls_listener() {
        let args = serve_args(&["--listen", "tls:127.0.0.1:0", "--tls-cert", "c"]);
        assert_eq!(
            tls_files(&args, true).unwrap_err(),
            "a tls: listener needs --tls-cert, --tls-key and --client-ca; missing: \
             --tls-key, --client-ca (see docs/operations.md, \"TLS\", to make them)"
        );
        let args = serve_args(&[
            "--listen",
            "tls:127.0.0.1:0",
            "--tls-cert",
            "c",
            "--tls-key",
            "k",
            "--client-ca",
            "ca",
            "--crl",
            "r",
        ]);
        let files = tls_files(&args, true).unwrap().unwrap();
        assert_eq!(files.crl, Some(PathBuf::from("r")));
        let args = serve_args(&["--crl", "r"]);
        assert_eq!(
            tls_files(&args, false).unwrap_err(),
            "--crl is for tls: listeners: add --listen tls:HOST:PORT (or --http \
             tls:HOST:PORT), or leave it out"
        );
        assert_eq!(tls_files(&serve_args(&[]), false).unwrap(), None);
    }

    #[test]
    fn plain_tcp_is_refused_without_the_flag_and_for_http_always() {
        let (nine_p, http) = listen_addresses(&serve_args(&[])).unwrap();
        assert_eq!(nine_p, vec![Listen::Unix(paths::default_socket())]);
        assert!(http.is_empty());
        let e = listen_addresses(&serve_args(&["--listen", "tcp:127.0.0.1:0"])).unwrap_err();
        assert!(
            e.contains("--insecure-plain-tcp allows tcp: on a loopback address"),
            "{e}"
        );
        let ok = serve_args(&["--listen", "tcp:127.0.0.1:0", "--insecure-plain-tcp"]);
        assert_eq!(listen_addresses(&ok).unwrap().0.len(), 1);
        let e = listen_addresses(&serve_args(&[
            "--listen",
            "tcp:0.0.0.0:0",
            "--insecure-plain-tcp",
        ]))
        .unwrap_err();
        assert!(e.contains("allows only loopback addresses"), "{e}");
        let e = listen_addresses(&serve_args(&["--insecure-plain-tcp"])).unwrap_err();
        assert!(
            e.starts_with("--insecure-plain-tcp allows --listen tcp:"),
            "{e}"
        );
        let e = listen_addresses(&serve_args(&["--http", "tcp:127.0.0.1:1"])).unwrap_err();
        assert_eq!(
            e,
            "--http tcp:127.0.0.1:1: the HTTP API is served on unix: or tls: addresses only"
        );
    }

    #[test]
    fn the_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
