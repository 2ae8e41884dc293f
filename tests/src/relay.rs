//! A server with a TLS listener beside its unix socket, and `srv-secrets relay` processes in
//! front of it: what tests/tests/relay.rs and benches/relay.rs share.
//!
//! The TLS listener has a port chosen before the server starts, so that a relay's
//! `--connect` still names it after the server is killed and started again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{SecretsServer, bins, exits_within, wait_for_text};
use crate::pki::{Ca, Identity, Validity};

/// A free port on 127.0.0.1, as the kernel hands one out (free when asked; the server
/// binds it with SO_REUSEADDR right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A server listening on its unix socket (the admin's, for `deploy`) and on
/// `tls:127.0.0.1:PORT`, with a CA of its own and certificates for the admin and for each
/// service it was started with.
pub struct TlsServer {
    /// The server.
    pub s: SecretsServer,
    /// The CA that issues every certificate here, the server's and the clients'.
    pub ca: Ca,
    /// `tls:127.0.0.1:PORT`.
    pub addr: String,
    /// The revocation list the server reads (`--crl`), empty to begin with.
    pub crl: PathBuf,
    /// The admin's client certificate.
    pub admin: Identity,
}

impl TlsServer {
    /// Initialized and started, nothing set up in it yet.
    ///
    /// # Panics
    /// If the server does not start.
    pub fn start() -> TlsServer {
        let mut t = TlsServer::init();
        t.serve();
        t
    }

    /// Initialized, its certificates made, not started yet (set `s.env` first, say).
    ///
    /// # Panics
    /// If the data directory or the certificates cannot be made.
    pub fn init() -> TlsServer {
        let mut s = SecretsServer::init();
        let dir = s.root.path().join("pki");
        std::fs::create_dir(&dir).expect("make the pki directory");
        let ca = Ca::new(&dir, "ca");
        let server = ca.server("server", "srv-secrets", &["127.0.0.1"]);
        let admin = ca.client("admin", Some("admin"), Validity::Current);
        let crl = dir.join("ca.crl");
        ca.write_crl(&crl, &[]);
        let addr = format!("tls:127.0.0.1:{}", free_port());
        s.args = vec![
            "--listen".into(),
            addr.clone(),
            "--tls-cert".into(),
            path_text(&server.cert),
            "--tls-key".into(),
            path_text(&server.key),
            "--client-ca".into(),
            path_text(&ca.cert()),
            "--crl".into(),
            path_text(&crl),
        ];
        TlsServer {
            s,
            ca,
            addr,
            crl,
            admin,
        }
    }

    /// Starts the server (again) and waits until its TLS listener takes connections.
    ///
    /// # Panics
    /// If it does not start, or its TLS port does not answer within 20 s.
    pub fn serve(&mut self) {
        self.s.serve();
        let port = self.addr.rsplit_once(':').expect("HOST:PORT").1;
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(format!("127.0.0.1:{port}")).is_err() {
            assert!(
                Instant::now() < deadline,
                "the TLS listener did not come up: {}",
                self.s.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client certificate for service `name` (or anyone: `cn` is the CN).
    pub fn client(&self, file: &str, cn: &str) -> Identity {
        self.ca.client(file, Some(cn), Validity::Current)
    }
}

fn path_text(path: &Path) -> String {
    path.to_str().expect("a UTF-8 temp path").to_string()
}

/// `srv-secrets relay ...` as a test starts it.
pub struct RelayOptions<'a> {
    /// `--connect`.
    pub connect: &'a str,
    /// `--cert` and `--key`.
    pub identity: &'a Identity,
    /// `--ca`.
    pub ca: &'a Path,
    /// `--listen unix:PATH`.
    pub socket: &'a Path,
    /// One `--allow-uid` each.
    pub uids: &'a [u32],
    /// Any further arguments (`--connect-timeout 2`).
    pub extra: &'a [&'a str],
    /// `RUST_LOG`: `trace` in the tests, so that every line it could log is there to be
    /// searched for values.
    pub rust_log: &'a str,
}

impl RelayOptions<'_> {
    /// The command.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&bins().srv_secrets);
        cmd.arg("relay")
            .arg("--connect")
            .arg(self.connect)
            .arg("--cert")
            .arg(&self.identity.cert)
            .arg("--key")
            .arg(&self.identity.key)
            .arg("--ca")
            .arg(self.ca)
            .arg("--listen")
            .arg(format!("unix:{}", self.socket.display()));
        for uid in self.uids {
            cmd.arg("--allow-uid").arg(uid.to_string());
        }
        cmd.args(self.extra).env("RUST_LOG", self.rust_log);
        cmd
    }

    /// Runs a relay that should refuse to start: its output once it has exited.
    ///
    /// # Panics
    /// If it is still running after 20 s.
    pub fn refused(&self) -> Output {
        let child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("srv-secrets relay starts");
        exits_within(child, Duration::from_secs(20), "the relay started")
    }

    /// Starts the relay, its log in `log`, and waits until it says it listens (it says so
    /// once its socket is bound; a connection to see would take one of root's slots).
    ///
    /// # Panics
    /// If it exits, or its socket does not come up within 20 s.
    pub fn start(&self, log: &Path) -> Relay {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the relay's log");
        let mut child = self
            .command()
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("srv-secrets relay starts");
        let relay_log = || std::fs::read_to_string(log).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if relay_log().contains("srv-secrets relay: listening on") {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("the relay exited with {status}: {}", relay_log());
            }
            assert!(
                Instant::now() < deadline,
                "the relay did not listen: {}",
                relay_log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Relay {
            child: Some(child),
            socket: self.socket.to_path_buf(),
            log: log.to_path_buf(),
        }
    }
}

/// A running `srv-secrets relay`, killed when dropped.
pub struct Relay {
    child: Option<Child>,
    /// Its socket.
    pub socket: PathBuf,
    /// Its stderr.
    pub log: PathBuf,
}

impl Relay {
    /// `unix:SOCKET`, for a client's `--addr`.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Everything it has logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for `needle` in what it logged after `from` bytes; whether it
    /// came.
    pub fn wait_for_log(&self, from: usize, needle: &str, within: Duration) -> bool {
        wait_for_text(&self.log, from, needle, within)
    }

    /// Sends it `signal`.
    ///
    /// # Panics
    /// If it is not running.
    pub fn signal(&self, signal: rustix::process::Signal) {
        let child = self.child.as_ref().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the relay");
    }

    /// SIGTERM, and its exit status.
    ///
    /// # Panics
    /// If it is not running.
    pub fn stop(&mut self) -> ExitStatus {
        self.signal(rustix::process::Signal::TERM);
        self.child
            .take()
            .expect("running")
            .wait()
            .expect("wait for the relay")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
