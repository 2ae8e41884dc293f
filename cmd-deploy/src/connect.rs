//! Finding the server ([`resolve`]), connecting and attaching ([`Session`]), and the one
//! way deploy changes anything: writing commands to `secrets/ctl` ([`Ctl`]).
//!
//! Over a unix socket the server knows us by our uid (SO_PEERCRED), and we make sure of
//! who serves it before sending anything ([`trusted_server`]). Over TLS it knows us by
//! our client certificate (`--cert`, `--key`), and we know it by its own, checked against
//! `--ca`; on TLS without a certificate, and over plain TCP (which srv-secrets serves on
//! loopback only and for tests, `--insecure-plain-tcp`), it knows us by an API token,
//! read from `--token-file` ([`Token`]) and presented at attach (9P's Tauth).
//!
//! Every request waits at most `--timeout` for a sign of life: it fails once no whole
//! message (nor 64 KiB of a long one) has been heard from the server, on its connection,
//! for that long ([`Link`]). A
//! request that is slow while the server keeps answering others (the `rotate-key` write,
//! while the progress polls are answered) waits as long as that lasts; a server that
//! trickles a byte now and then without finishing a message does not keep it waiting.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use ctl::{Answer, Reply, ReplyReader};
use ninep::client::{Client, ClientError, DEFAULT_MSIZE, Fid};
use ninep::{Stat, ename, om};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::{CliError, NoAnswer};
use crate::files;

/// The environment variable that names the server when --addr is not given.
pub const ADDR_VAR: &str = "SRV_SECRETS_ADDR";

/// The aname of the admin tree. (srv-secrets also gives the admin that tree for "", but
/// to a service "" is its own view: asking for "admin" lets the server tell a service's
/// uid that it is not the admin, instead of serving it a tree without `secrets/`.)
pub use model::ADMIN_ANAME;

/// Where the server listens: a unix socket, where it knows us by SO_PEERCRED; TLS,
/// where it knows us by our certificate (`--cert`, `--key`) or a token, and we know it
/// by its own, checked against `--ca`; or plain TCP on loopback, for tests, where it
/// knows us by a token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Addr {
    /// `unix:PATH`.
    Unix {
        /// The socket's path.
        path: PathBuf,
    },
    /// `tls:HOST:PORT`.
    Tls {
        /// A host name or an IP address: what the server's certificate must name.
        host: String,
        /// The TCP port.
        port: u16,
    },
    /// `tcp:HOST:PORT`, on loopback (the server's `--insecure-plain-tcp`, for tests).
    Tcp(SocketAddr),
}

impl Addr {
    /// The socket's path, for a unix address.
    pub fn unix_path(&self) -> Option<&Path> {
        match self {
            Addr::Unix { path } => Some(path),
            Addr::Tls { .. } | Addr::Tcp(_) => None,
        }
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Unix { path } => write!(f, "unix:{}", path.display()),
            Addr::Tls { host, port } if host.contains(':') => write!(f, "tls:[{host}]:{port}"),
            Addr::Tls { host, port } => write!(f, "tls:{host}:{port}"),
            Addr::Tcp(addr) => write!(f, "tcp:{addr}"),
        }
    }
}

/// An API token, read from `--token-file`: presented at attach over a transport where
/// the server knows us by nothing else. Kept zeroized; never printed.
#[derive(Clone)]
pub struct Token {
    /// The file it came from, for errors.
    pub file: PathBuf,
    text: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(from {})", self.file.display())
    }
}

/// The most bytes a token file may hold: a token is 67, and a newline.
const MAX_TOKEN_FILE: u64 = 4096;

impl Token {
    /// The token in `file`: one line, `srvtok_...`, as `deploy token create` prints it,
    /// in a regular file of ours (or root's) that neither group nor others may read.
    ///
    /// # Errors
    /// [`CliError::TokenFile`], saying what is wrong and how to fix it (never a byte of
    /// what the file holds).
    pub fn read(file: &Path, euid: u32) -> Result<Token, CliError> {
        use std::io::Read;
        use std::os::unix::fs::MetadataExt;
        refuse_a_token_for_its_file(file)?;
        let refuse = |why: String| CliError::TokenFile {
            file: file.to_path_buf(),
            why,
        };
        let mut f =
            std::fs::File::open(file).map_err(|e| refuse(format!("cannot open it: {e}")))?;
        // fstat of the file opened: what is checked is what is read.
        let meta = f
            .metadata()
            .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
        if !meta.is_file() {
            return Err(refuse("it is not a regular file".into()));
        }
        if meta.uid() != euid && meta.uid() != 0 {
            return Err(refuse(format!(
                "it belongs to uid {}, neither this user ({euid}) nor root: whoever owns it \
                 can change the token",
                meta.uid()
            )));
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(refuse(format!(
                "it has mode {mode:o}, open to group or others, who could read the token: run \
                 `chmod 600 {}`",
                file.display()
            )));
        }
        let mut text = Zeroizing::new(Vec::with_capacity(MAX_TOKEN_FILE as usize + 1));
        f.by_ref()
            .take(MAX_TOKEN_FILE + 1)
            .read_to_end(&mut text)
            .map_err(|e| refuse(format!("cannot read it: {e}")))?;
        if text.len() as u64 > MAX_TOKEN_FILE {
            return Err(refuse("it is far longer than a token".into()));
        }
        // One line: its newline (and a CR before it) is not the token's.
        while matches!(text.last(), Some(b'\n' | b'\r')) {
            text.pop();
        }
        let shaped = text.starts_with(b"srvtok_")
            && text
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
        if !shaped {
            return Err(refuse(
                "it does not hold a token: one line, srvtok_..., as deploy token create \
                 prints it"
                    .into(),
            ));
        }
        Ok(Token {
            file: file.to_path_buf(),
            text,
        })
    }

    /// The token's text, to present at attach.
    fn expose(&self) -> &[u8] {
        &self.text
    }
}

/// Refuses a `--token-file` argument that is a token rather than a file's path (a token
/// pasted where its file belongs), without repeating it: every other refusal names the
/// file, and the file's name would be the token.
///
/// # Errors
/// [`CliError::Usage`].
pub fn refuse_a_token_for_its_file(file: &Path) -> Result<(), CliError> {
    let text = file.as_os_str().as_bytes();
    let a_token = text.starts_with(b"srvtok_")
        && text.len() >= 40
        && text
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if a_token {
        return Err(CliError::Usage(
            "--token-file takes the path of a file that holds the token, and was given what \
             looks like a token (not repeated here); nothing was read or saved. A token on a \
             command line is seen by ps and kept in shell history: revoke it (deploy token \
             revoke ID) and keep the new one in a file, (umask 077; deploy token create \
             PRINCIPAL > FILE)"
                .into(),
        ));
    }
    Ok(())
}

/// The server deploy talks to, and how long it waits for a sign of life from it.
#[derive(Clone, Debug)]
pub struct Server {
    /// Where it listens.
    pub addr: Addr,
    /// `--token-file`'s token: for an address where the server knows us by nothing else.
    pub token: Option<Token>,
    /// `--timeout`.
    pub timeout: Duration,
    /// `--reason`: sent before every change (and every transaction) written to ctl.
    pub reason: Option<String>,
    /// `--ca`, `--cert` and `--key`, for a TLS address (and only then).
    pub tls: Option<tls::ClientFiles>,
}

impl Server {
    /// The token to present at attach, where the server knows us by nothing else: over
    /// plain TCP, and over TLS without a client certificate.
    fn token_to_present(&self) -> Option<&Token> {
        let certified = self.tls.as_ref().is_some_and(|f| f.identity.is_some());
        match self.addr {
            Addr::Tcp(_) => self.token.as_ref(),
            Addr::Tls { .. } if !certified => self.token.as_ref(),
            Addr::Tls { .. } | Addr::Unix { .. } => None,
        }
    }
}

/// `--ca`, `--cert` and `--key` as given.
#[derive(Clone, Debug, Default)]
pub struct TlsFlags {
    /// `--ca`.
    pub ca: Option<PathBuf>,
    /// `--cert`.
    pub cert: Option<PathBuf>,
    /// `--key`.
    pub key: Option<PathBuf>,
}

/// The TLS files for `addr`: a TLS address needs `--ca`, and `--cert` with `--key` or
/// neither; a unix one takes none of them.
///
/// # Errors
/// [`CliError::Usage`] saying which flag is missing or out of place.
pub fn tls_files(addr: &Addr, flags: &TlsFlags) -> Result<Option<tls::ClientFiles>, CliError> {
    match addr {
        Addr::Unix { .. } | Addr::Tcp(_) => {
            if flags.ca.is_some() || flags.cert.is_some() || flags.key.is_some() {
                let by = match addr {
                    Addr::Tcp(_) => "a token (--token-file)",
                    _ => "its uid",
                };
                return Err(CliError::Usage(format!(
                    "--ca, --cert and --key are for --addr tls:HOST:PORT; the server at {addr} \
                     knows deploy by {by} and needs none of them"
                )));
            }
            Ok(None)
        }
        Addr::Tls { .. } => {
            let Some(ca) = &flags.ca else {
                return Err(CliError::Usage(format!(
                    "--addr {addr} needs --ca FILE: the CA certificate that issued the \
                     server's certificate (PEM)"
                )));
            };
            let identity = match (&flags.cert, &flags.key) {
                (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(CliError::Usage(
                        "--cert needs --key: the private key of the certificate".into(),
                    ));
                }
                (None, Some(_)) => {
                    return Err(CliError::Usage(
                        "--key needs --cert: the certificate of the key".into(),
                    ));
                }
            };
            Ok(Some(tls::ClientFiles {
                ca: ca.clone(),
                identity,
            }))
        }
    }
}

/// What address resolution reads from the process's environment, gathered once so that
/// [`resolve`] is a pure function.
#[derive(Clone, Debug, Default)]
pub struct Env {
    /// `$SRV_SECRETS_ADDR`.
    pub addr: Option<OsString>,
    /// `$XDG_RUNTIME_DIR`.
    pub xdg_runtime_dir: Option<OsString>,
    /// `$SRV_SECRETS_CONTEXT`: the context to use when neither `--context` nor `--addr`
    /// is given ([`crate::contexts`]).
    pub context: Option<OsString>,
    /// `$XDG_CONFIG_HOME`, where the contexts file is (else under `$HOME/.config`).
    pub config_home: Option<OsString>,
    /// `$HOME`.
    pub home: Option<OsString>,
    /// The effective uid: it picks the default socket as the server does (root gets the
    /// system one), and it is the uid the server sees through SO_PEERCRED.
    pub euid: u32,
    /// The name sent as Tattach's uname (the server ignores it: SO_PEERCRED decides).
    pub user: String,
}

impl Env {
    /// The current process's environment.
    pub fn current() -> Env {
        let euid = rustix::process::geteuid().as_raw();
        let user = std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| euid.to_string());
        Env {
            addr: std::env::var_os(ADDR_VAR),
            xdg_runtime_dir: std::env::var_os("XDG_RUNTIME_DIR"),
            context: std::env::var_os(crate::contexts::CONTEXT_VAR),
            config_home: std::env::var_os("XDG_CONFIG_HOME"),
            home: std::env::var_os("HOME"),
            euid,
            user,
        }
    }
}

/// The server's address: `--addr`, else `$SRV_SECRETS_ADDR`, else the socket the server
/// listens on by default (`$XDG_RUNTIME_DIR/srv-secrets/9p.sock`; for root
/// `/run/srv-secrets/9p.sock`; else `/tmp/srv-secrets-EUID/9p.sock`), the same rule as
/// srv-secrets' `paths::default_socket`.
///
/// # Errors
/// [`CliError::Usage`] for an address that is neither `unix:PATH` nor a path.
pub fn resolve(flag: Option<&str>, env: &Env) -> Result<Addr, CliError> {
    if let Some(flag) = flag {
        return parse(OsStr::new(flag), "--addr");
    }
    if let Some(var) = env.addr.as_deref().filter(|v| !v.is_empty()) {
        return parse(var, ADDR_VAR);
    }
    let path = match env.xdg_runtime_dir.as_deref().filter(|v| !v.is_empty()) {
        Some(dir) => Path::new(dir).join("srv-secrets/9p.sock"),
        None if env.euid == 0 => PathBuf::from("/run/srv-secrets/9p.sock"),
        None => PathBuf::from(format!("/tmp/srv-secrets-{}/9p.sock", env.euid)),
    };
    Ok(Addr::Unix { path })
}

/// `unix:PATH`, a bare `PATH`, `tls:HOST:PORT`, or `tcp:HOST:PORT` on loopback. Anything
/// that starts like another scheme (`ssh:...`) is refused rather than taken for a file of
/// that name; such a file can still be named `./ssh:...` or `unix:ssh:...`. `from` says
/// where the text came from, for errors (`--addr`, `SRV_SECRETS_ADDR`, a context).
pub fn parse(text: &OsStr, from: &str) -> Result<Addr, CliError> {
    let bytes = text.as_bytes();
    let refuse = || {
        CliError::Usage(format!(
            "{from} must be unix:PATH (or the path of the server's socket) or tls:HOST:PORT \
             (or, for a test server on loopback, tcp:HOST:PORT), not '{}'",
            text.to_string_lossy()
        ))
    };
    if let Some(rest) = bytes.strip_prefix(b"tls:") {
        let rest = std::str::from_utf8(rest).map_err(|_| refuse())?;
        return tls_host_port(rest).ok_or_else(|| {
            CliError::Usage(format!(
                "{from} {}: give tls:HOST:PORT, such as tls:secrets.example:5640, \
                 tls:10.0.0.5:5640 or tls:[::1]:5640",
                text.to_string_lossy()
            ))
        });
    }
    if let Some(hostport) = bytes.strip_prefix(b"tcp:") {
        let addr: SocketAddr = std::str::from_utf8(hostport)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| {
                CliError::Usage(format!(
                    "{from} tcp:HOST:PORT takes an IP address and a port, such as \
                     tcp:127.0.0.1:5640, not '{}'",
                    text.to_string_lossy()
                ))
            })?;
        if !addr.ip().is_loopback() {
            return Err(CliError::Usage(format!(
                "{from} tcp:{addr}: deploy speaks plain TCP to loopback only (127.0.0.0/8, \
                 [::1]): it is unencrypted, for test servers (srv-secrets serve \
                 --insecure-plain-tcp); reach other machines over TLS"
            )));
        }
        return Ok(Addr::Tcp(addr));
    }
    let path = match bytes.strip_prefix(b"unix:") {
        Some(path) => path,
        None if looks_like_a_scheme(bytes) => return Err(refuse()),
        None => bytes,
    };
    if path.is_empty() {
        return Err(refuse());
    }
    Ok(Addr::Unix {
        path: PathBuf::from(OsStr::from_bytes(path)),
    })
}

/// `HOST:PORT` (an IPv6 address in brackets): a host name the server's certificate can
/// be checked against, and a port other than 0.
fn tls_host_port(text: &str) -> Option<Addr> {
    let (host, port) = match text.strip_prefix('[') {
        Some(rest) => {
            let (host, port) = rest.split_once("]:")?;
            host.parse::<std::net::Ipv6Addr>().ok()?;
            (host, port)
        }
        None => text.rsplit_once(':')?,
    };
    let port = port.parse::<u16>().ok().filter(|p| *p != 0)?;
    if host.is_empty() || host.contains(':') && !text.starts_with('[') {
        return None;
    }
    tls::server_name(host).ok()?;
    Some(Addr::Tls {
        host: host.to_string(),
        port,
    })
}

/// Whether `text` starts with `SCHEME:` (RFC 3986: a letter, then letters, digits, `+`,
/// `-` or `.`).
fn looks_like_a_scheme(text: &[u8]) -> bool {
    let Some(colon) = text.iter().position(|&b| b == b':') else {
        return false;
    };
    let scheme = &text[..colon];
    scheme.first().is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Whether the server answered "file does not exist".
pub fn is_not_found(e: &ClientError) -> bool {
    e.remote() == Some(ename::NOT_FOUND)
}

/// Whether the server answered "permission denied".
pub fn is_permission_denied(e: &ClientError) -> bool {
    e.remote() == Some(ename::PERMISSION_DENIED)
}

/// The time something last arrived from the server on one connection, shared by the
/// connection's reader ([`Heard`]) and every request waiting on it ([`Link::answer`]).
type LastHeard = Arc<Mutex<Instant>>;

fn last_heard(heard: &LastHeard) -> Instant {
    *heard.lock().unwrap_or_else(|p| p.into_inner())
}

/// What a TLS connection's reads failed with, if it was about TLS: in TLS 1.3 the
/// server refuses a client's certificate after the client's handshake is done, with an
/// alert that the first read meets, and the 9P client only says that the connection
/// closed.
type TlsFailure = Arc<Mutex<Option<tls::Failure>>>;

/// A stream that notes in [`LastHeard`] when a whole 9P message, or [`PROGRESS`] bytes
/// of one, has arrived, and in its [`TlsFailure`] (if it has one) why a read failed.
struct Heard<S> {
    stream: S,
    heard: LastHeard,
    frame: FrameProgress,
    tls_failure: Option<TlsFailure>,
}

impl<S> Heard<S> {
    fn new(stream: S, heard: LastHeard) -> Heard<S> {
        Heard {
            stream,
            heard,
            frame: FrameProgress::default(),
            tls_failure: None,
        }
    }
}

/// How much of a long message counts as a sign of life before it is whole: a large read
/// over a slow link is progress, a byte now and then is not.
const PROGRESS: u64 = 64 * 1024;

/// How far the message being received has come: its size field (little-endian, counting
/// itself), then the rest. Only counted, never parsed: the client decodes it.
#[derive(Default)]
struct FrameProgress {
    size: [u8; 4],
    size_have: usize,
    remaining: u64,
    since_progress: u64,
}

impl FrameProgress {
    /// Takes bytes just received; whether a message was completed among them.
    fn take(&mut self, mut bytes: &[u8]) -> bool {
        let mut completed = false;
        while !bytes.is_empty() {
            if self.size_have < self.size.len() {
                self.size[self.size_have] = bytes[0];
                self.size_have += 1;
                bytes = &bytes[1..];
                if self.size_have == self.size.len() {
                    // A size below the field's own is malformed: the client refuses it;
                    // here it ends the message, so counting stays in step.
                    self.remaining = u64::from(u32::from_le_bytes(self.size)).saturating_sub(4);
                }
            } else {
                let n = usize::try_from(self.remaining)
                    .unwrap_or(usize::MAX)
                    .min(bytes.len());
                self.remaining -= n as u64;
                bytes = &bytes[n..];
                self.since_progress += n as u64;
                if self.since_progress >= PROGRESS {
                    completed = true;
                    self.since_progress = 0;
                }
            }
            if self.size_have == self.size.len() && self.remaining == 0 {
                completed = true;
                self.size_have = 0;
                self.since_progress = 0;
            }
        }
        completed
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Heard<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && this.frame.take(&buf.filled()[before..]) {
            *this.heard.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        }
        if let (Poll::Ready(Err(e)), Some(slot)) = (&polled, &this.tls_failure)
            && let Some(failure) = tls::Failure::of(e)
        {
            slot.lock()
                .unwrap_or_else(|p| p.into_inner())
                .get_or_insert(failure);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Heard<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// One connection's timeout: how requests on it wait.
#[derive(Clone)]
struct Link {
    addr: Addr,
    timeout: Duration,
    heard: LastHeard,
    /// For a TLS connection, why its reads failed.
    tls_failure: Option<TlsFailure>,
}

impl Link {
    /// What the TLS connection's reads met, if it failed for that.
    fn tls_failure(&self) -> Option<tls::Failure> {
        self.tls_failure
            .as_ref()?
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Link {
    /// Waits for `request` while the server shows signs of life: it fails with
    /// [`NoAnswer`] (as a [`ClientError`]) once neither it nor anything else on the
    /// connection was answered for the whole timeout since it started.
    async fn answer<T>(
        &self,
        request: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, ClientError> {
        let started = Instant::now();
        let deadline = || last_heard(&self.heard).max(started) + self.timeout;
        tokio::pin!(request);
        loop {
            if let Ok(answered) = tokio::time::timeout_at(deadline(), &mut request).await {
                return answered;
            }
            // Something else may have been answered meanwhile: then wait on from there.
            if deadline() <= Instant::now() {
                return Err(NoAnswer {
                    addr: self.addr.to_string(),
                    after: self.timeout,
                }
                .into_client_error());
            }
        }
    }
}

/// A connection with one attached tree.
pub struct Session {
    addr: Addr,
    root: Fid,
    link: Link,
    /// `--reason`, for the ctl fids it opens.
    reason: Option<String>,
}

impl Session {
    /// Connects and attaches the admin tree (`/secrets/…`).
    ///
    /// # Errors
    /// [`CliError::Connect`] with a hint; [`CliError::UntrustedServer`] when the socket is
    /// served by a user we must not send secrets to; [`CliError::AttachRefused`] when the
    /// server does not take us for the admin, [`CliError::NotAdmin`] when it takes us for
    /// a service; [`CliError::NoAnswer`] when it does not answer at all.
    pub async fn admin(server: &Server, env: &Env) -> Result<Session, CliError> {
        let (client, link) = connect(server, env).await?;
        let root = link
            .answer(attach(&client, server, env, ADMIN_ANAME))
            .await
            .map_err(|e| attach_error(e, env, server, &link))?;
        Ok(Session {
            addr: server.addr.clone(),
            root,
            link,
            reason: server.reason.clone(),
        })
    }

    /// Connects and attaches `service`'s view (`/secret/…`, `/config/…`) on its behalf,
    /// which only the admin may do; `what` is the command that asks (`service run`), for
    /// its refusals.
    ///
    /// # Errors
    /// As [`Session::admin`]; [`CliError::NoSuchService`] when we are the admin but the
    /// service does not exist, and [`CliError::Suspended`] when it is suspended (the
    /// server says "permission denied" to all three, so that anames are no oracle; the
    /// admin may know the difference, so we ask); [`CliError::Frozen`] while deploys are
    /// frozen.
    pub async fn service_view(
        server: &Server,
        env: &Env,
        service: &str,
        what: &'static str,
    ) -> Result<Session, CliError> {
        let (client, link) = connect(server, env).await?;
        match link.answer(attach(&client, server, env, service)).await {
            Ok(root) => Ok(Session {
                addr: server.addr.clone(),
                root,
                link,
                reason: server.reason.clone(),
            }),
            Err(e) if is_permission_denied(&e) => {
                let root = match link.answer(attach(&client, server, env, ADMIN_ANAME)).await {
                    Ok(root) => root,
                    Err(e) => return Err(attach_error(e, env, server, &link)),
                };
                let admin = Session {
                    addr: server.addr.clone(),
                    root,
                    link: link.clone(),
                    reason: None,
                };
                let path = ["secrets", "services", service];
                match admin.read(&path, files::MAX_SERVICE_FILE).await {
                    Ok(text) => match model::ServiceFile::parse(&text) {
                        Ok(model::ServiceFile {
                            suspended: Some(mark),
                            ..
                        }) => Err(CliError::Suspended {
                            service: service.to_string(),
                            mark,
                        }),
                        _ => Err(attach_error(e, env, server, &link)),
                    },
                    Err(_) => Err(CliError::NoSuchService(service.to_string())),
                }
            }
            Err(e) if e.remote() == Some(model::FROZEN) => {
                let mark = match link.answer(attach(&client, server, env, ADMIN_ANAME)).await {
                    Ok(root) => {
                        let admin = Session {
                            addr: server.addr.clone(),
                            root,
                            link,
                            reason: None,
                        };
                        crate::commands::read_status(&admin)
                            .await
                            .ok()
                            .and_then(|s| s.frozen)
                    }
                    Err(_) => None,
                };
                Err(CliError::Frozen { what, mark })
            }
            Err(e) => Err(attach_error(e, env, server, &link)),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// The attached tree's root, for requests that are not one whole file (deploy mount
    /// walks its own fids from it). Requests on it wait as long as the server takes:
    /// bound them yourself.
    pub fn root(&self) -> &Fid {
        &self.root
    }

    /// Reads a whole file of at most `limit` bytes (the `files::MAX_*` bounds); a longer
    /// one is [`ClientError::TooLong`].
    pub async fn read(
        &self,
        path: &[&str],
        limit: usize,
    ) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        self.link
            .answer(async {
                let mut fid = self.root.walk(path).await?;
                fid.open(om::READ).await?;
                // Dropping the fid clunks it in the background; nothing waits on that.
                fid.read_all_limited(limit).await
            })
            .await
    }

    /// Reads a whole file into `sink`, a read at a time, at most `limit` bytes; returns
    /// how many it wrote. For files too large to hold in memory (a backup of the store).
    pub async fn read_into(
        &self,
        path: &[&str],
        sink: &mut dyn std::io::Write,
        limit: u64,
    ) -> Result<u64, ClientError> {
        let fid = self
            .link
            .answer(async {
                let mut fid = self.root.walk(path).await?;
                fid.open(om::READ).await?;
                Ok(fid)
            })
            .await?;
        let count = fid.io_size();
        let mut offset = 0u64;
        loop {
            let data = self.link.answer(fid.read(offset, count)).await?;
            if data.is_empty() {
                return Ok(offset);
            }
            offset += data.len() as u64;
            if offset > limit {
                return Err(ClientError::TooLong {
                    limit: usize::try_from(limit).unwrap_or(usize::MAX),
                });
            }
            sink.write_all(data.expose())?;
        }
    }

    /// Walks to `path` and opens it for reading, within the timeout. Reads of the fid then
    /// wait as long as the server takes (an events file's wait for a change).
    pub async fn open(&self, path: &[&str]) -> Result<Fid, ClientError> {
        self.link
            .answer(async {
                let mut fid = self.root.walk(path).await?;
                fid.open(om::READ).await?;
                Ok(fid)
            })
            .await
    }

    /// Reads a whole directory of at most `limit` bytes of entries.
    pub async fn list(&self, path: &[&str], limit: usize) -> Result<Vec<Stat>, ClientError> {
        self.link
            .answer(async {
                let mut fid = self.root.walk(path).await?;
                fid.open(om::READ).await?;
                fid.read_dir_limited(limit).await
            })
            .await
    }

    /// Opens `secrets/ctl` for writing.
    ///
    /// # Errors
    /// [`CliError::Request`].
    pub async fn ctl(&self) -> Result<Ctl, CliError> {
        let fid = self
            .link
            .answer(async {
                let mut fid = self.root.walk(&["secrets", "ctl"]).await?;
                // Read-write: each command written has a result to read back.
                fid.open(om::RDWR).await?;
                Ok(fid)
            })
            .await
            .map_err(|e| CliError::request("opening secrets/ctl", e))?;
        Ok(Ctl {
            fid,
            offset: 0,
            link: self.link.clone(),
            results: ReplyReader::new(),
            reason: self
                .reason
                .clone()
                .map(|text| ctl::Command::Reason { text }),
        })
    }
}

/// Connects, makes sure the server is someone to trust with secrets, and negotiates
/// 9P2000. Nothing is sent to an untrusted server, not even Tversion: over a unix socket
/// the server's uid must be one we trust; over TLS its certificate must be from `--ca`
/// and name the host we reached it by.
async fn connect(server: &Server, env: &Env) -> Result<(Client, Link), CliError> {
    let addr = &server.addr;
    let failed = |source| CliError::Connect {
        addr: addr.to_string(),
        source,
    };
    let no_answer = || CliError::NoAnswer {
        addr: addr.to_string(),
        after: server.timeout,
        during: "connecting".into(),
    };
    let heard = Arc::new(Mutex::new(Instant::now()));
    check_token_flag(server)?;
    let (client, tls_failure) = match addr {
        Addr::Unix { path } => {
            let stream =
                tokio::time::timeout(server.timeout, tokio::net::UnixStream::connect(path))
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(|e| failed(ClientError::Io(e)))?;
            // SO_PEERCRED: the uid of the process that listens, which it cannot choose.
            let server_uid = stream
                .peer_cred()
                .map_err(|e| failed(ClientError::Io(e)))?
                .uid();
            if !trusted_server(server_uid, env.euid, path) {
                return Err(CliError::UntrustedServer {
                    addr: addr.to_string(),
                    server_uid,
                    euid: env.euid,
                });
            }
            (Client::over(Heard::new(stream, heard.clone())), None)
        }
        Addr::Tls { host, port } => {
            let tls_error = |problem: String| CliError::Tls {
                addr: addr.to_string(),
                problem,
            };
            let files = server
                .tls
                .as_ref()
                .ok_or_else(|| CliError::Usage(format!("--addr {addr} needs --ca FILE")))?;
            let config = tls::client_config(files).map_err(tls_error)?;
            let name = tls::server_name(host).map_err(tls_error)?;
            let tcp = tokio::time::timeout(
                server.timeout,
                tokio::net::TcpStream::connect((host.as_str(), *port)),
            )
            .await
            .map_err(|_| no_answer())?
            .map_err(|e| failed(ClientError::Io(e)))?;
            let _ = tcp.set_nodelay(true);
            let stream = tokio::time::timeout(server.timeout, tls::connect(config, name, tcp))
                .await
                .map_err(|_| no_answer())?
                .map_err(|e| match tls::Failure::of(&e) {
                    Some(failure) => tls_error(failure.to_string()),
                    None => failed(ClientError::Io(e)),
                })?;
            let failure = TlsFailure::default();
            let mut heard_stream = Heard::new(stream, heard.clone());
            heard_stream.tls_failure = Some(failure.clone());
            (Client::over(heard_stream), Some(failure))
        }
        Addr::Tcp(socket) => {
            let stream =
                tokio::time::timeout(server.timeout, tokio::net::TcpStream::connect(socket))
                    .await
                    .map_err(|_| no_answer())?
                    .map_err(|e| failed(ClientError::Io(e)))?;
            let _ = stream.set_nodelay(true);
            (Client::over(Heard::new(stream, heard.clone())), None)
        }
    };
    let link = Link {
        addr: addr.clone(),
        timeout: server.timeout,
        heard,
        tls_failure,
    };
    match link.answer(client.version(DEFAULT_MSIZE)).await {
        Ok(_) => Ok((client, link)),
        Err(e) if NoAnswer::of(&e).is_some() => {
            Err(CliError::request("starting the 9P session (Tversion)", e))
        }
        Err(e) => match link.tls_failure() {
            Some(failure) => Err(CliError::Tls {
                addr: addr.to_string(),
                problem: failure.to_string(),
            }),
            None => Err(failed(e)),
        },
    }
}

/// Refuses `--token-file` where the server would not take it, and its absence where
/// nothing else could say who we are.
fn check_token_flag(server: &Server) -> Result<(), CliError> {
    let certified = server.tls.as_ref().is_some_and(|f| f.identity.is_some());
    check_token_file(
        &server.addr,
        server.token.as_ref().map(|t| t.file.as_path()),
        certified,
    )
}

/// [`check_token_flag`] before the token is read: whether `--token-file FILE` (or its
/// absence) goes with `addr` and a client certificate (`certified`).
///
/// # Errors
/// [`CliError::Usage`] saying which flag is out of place or missing.
pub fn check_token_file(
    addr: &Addr,
    token_file: Option<&Path>,
    certified: bool,
) -> Result<(), CliError> {
    match (addr, token_file) {
        (Addr::Unix { .. }, Some(file)) => Err(CliError::Usage(format!(
            "--token-file {}: over a unix socket the server knows you by your uid, not by a \
             token: leave --token-file out (it is for --addr tls: without --cert, and tcp:)",
            file.display()
        ))),
        (Addr::Tls { .. }, Some(file)) if certified => Err(CliError::Usage(format!(
            "--token-file {}: with --cert the certificate says who you are, and the server \
             takes no token beside it: give --cert and --key, or --token-file, not both",
            file.display()
        ))),
        (Addr::Tcp(_), None) => Err(CliError::Usage(format!(
            "{addr} needs --token-file FILE: over TCP the server knows no one without a token \
             (make one over its unix socket with: deploy token create PRINCIPAL)"
        ))),
        _ => Ok(()),
    }
}

/// Whether the server behind the socket at `path`, running as `server_uid`, may be sent
/// secrets by a deploy running as `euid`: when it runs as root, as ourselves, or as the
/// one user besides root who can change what `path` names (systemd runs srv-secrets as
/// its own user, in a `/run/srv-secrets` it owns).
///
/// Anyone else got there by writing a directory on the way: the default socket of a user
/// without XDG_RUNTIME_DIR is under /tmp, where another user can make the directory
/// first, rename the real socket away, and listen in its place.
fn trusted_server(server_uid: u32, euid: u32, path: &Path) -> bool {
    server_uid == 0 || server_uid == euid || only_changed_by(path, server_uid)
}

/// Whether nobody but `uid` and root can change what `path` names: every directory on the
/// way to it, as written and as resolved, belongs to one of them and is writable by no
/// one else (OpenSSH's rule for the files it trusts, `safe_path`). A symbolic link on the
/// way must belong to one of them too; its own mode means nothing.
fn only_changed_by(path: &Path, uid: u32) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(path) = std::path::absolute(path) else {
        return false;
    };
    let Some(dir) = path.parent() else {
        return false;
    };
    let owned = |m: &std::fs::Metadata| m.uid() == 0 || m.uid() == uid;
    let private = |m: &std::fs::Metadata| owned(m) && m.mode() & 0o022 == 0;
    let as_written = dir.ancestors().all(|d| match std::fs::symlink_metadata(d) {
        Ok(m) if m.file_type().is_symlink() => owned(&m),
        Ok(m) => private(&m),
        Err(_) => false,
    });
    let resolved = std::fs::canonicalize(dir).is_ok_and(|real| {
        real.ancestors()
            .all(|d| std::fs::metadata(d).is_ok_and(|m| private(&m)))
    });
    as_written && resolved
}

/// Tattach of `aname` as the server knows us: by our uid (a unix socket) or certificate
/// (TLS), or with our token.
async fn attach(
    client: &Client,
    server: &Server,
    env: &Env,
    aname: &str,
) -> Result<Fid, ClientError> {
    match server.token_to_present() {
        Some(token) => {
            client
                .attach_with_credential(&env.user, aname, token.expose())
                .await
        }
        None => client.attach(&env.user, aname).await,
    }
}

fn attach_error(e: ClientError, env: &Env, server: &Server, link: &Link) -> CliError {
    if let Some(failure) = link.tls_failure() {
        return CliError::Tls {
            addr: server.addr.to_string(),
            problem: failure.to_string(),
        };
    }
    if let (Some(token), Some(text)) = (server.token_to_present(), e.remote())
        && text.starts_with(ename::PERMISSION_DENIED)
    {
        // The server's words: they never hold the token.
        let why = text
            .strip_prefix("permission denied: ")
            .unwrap_or("the server does not take it for the admin");
        let hint = if why.starts_with("a service's certificate or token") {
            "admin commands need a token made for the admin (deploy token create admin)"
        } else {
            "make a new one with `deploy token create PRINCIPAL` (see them with `deploy \
             token list`)"
        };
        return CliError::TokenRefused {
            file: token.file.clone(),
            why: why.to_string(),
            hint,
        };
    }
    if let Some(files) = &server.tls {
        return tls_attach_error(e, files, &server.addr);
    }
    if is_permission_denied(&e) {
        return CliError::AttachRefused { uid: env.euid };
    }
    if let Some(text) = e
        .remote()
        .and_then(|t| t.strip_prefix("permission denied: "))
    {
        return match parse_not_admin(text) {
            Some((uid, service, admin_uid)) => CliError::NotAdmin {
                uid,
                service,
                admin_uid,
            },
            None => CliError::AttachRefused { uid: env.euid },
        };
    }
    CliError::request("attaching", e)
}

/// An attach refused over TLS, in terms of `--cert`: none given, or one that does not
/// name the admin.
fn tls_attach_error(e: ClientError, files: &tls::ClientFiles, addr: &Addr) -> CliError {
    let refused = |problem: String| CliError::Tls {
        addr: addr.to_string(),
        problem,
    };
    match (e.remote(), &files.identity) {
        (Some(text), _) if text.starts_with(ename::AUTH_REQUIRED) => refused(
            "the server knows no one on this connection: give --cert and --key, a client \
             certificate from the CA the server trusts (its --client-ca) whose CN is admin, \
             or --token-file with a token deploy token create made"
                .into(),
        ),
        (Some(text), Some((cert, _))) if text.starts_with(ename::PERMISSION_DENIED) => {
            let name = tls::read_certificates(cert, "--cert")
                .ok()
                .and_then(|chain| tls::certificate_name(chain.first()?).ok());
            refused(match name {
                Some(name) => format!(
                    "the server does not take the certificate in --cert (CN {name}) for the \
                     admin: admin commands need a certificate whose CN is admin"
                ),
                None => "the server does not take the certificate in --cert for the admin: \
                         admin commands need a certificate whose CN is admin"
                    .into(),
            })
        }
        _ => CliError::request("attaching", e),
    }
}

/// Reads what srv-secrets tells a service's uid that asks for the admin tree, after
/// "permission denied: " ([`model::NotAdmin`]: `uid 1001 is service web; the admin is root
/// or uid 1000`, or `...; the admin is root`). Gives (uid, service, the admin uid if not
/// root).
fn parse_not_admin(text: &str) -> Option<(u32, String, Option<u32>)> {
    model::NotAdmin::parse(text).map(|n| (n.uid, n.service, n.admin_uid))
}

/// `secrets/ctl`, open for writing: one command per write, checked at clunk too.
pub struct Ctl {
    fid: Fid,
    offset: u64,
    link: Link,
    results: ReplyReader,
    /// `reason TEXT`, written before each change and each transaction (the server keeps
    /// a reason for the next change only).
    reason: Option<ctl::Command>,
}

/// The most result bytes deploy takes from ctl for one request: the server keeps at most
/// 16 MiB unread per fid, and a transaction's results are far smaller.
const MAX_RESULTS: usize = 16 << 20;

impl Ctl {
    /// Sends one command and returns its result. The server applies the command when its
    /// line completes, answers its error (if any) to this write, and queues its result.
    ///
    /// # Errors
    /// [`CliError::Ctl`] with the server's text.
    pub async fn send(&mut self, command: &ctl::Command) -> Result<Answer, CliError> {
        let reason = self.reason.as_ref().filter(|_| command.is_change());
        let mut text = Zeroizing::new(Vec::with_capacity(command.weight() + 1100));
        if let Some(reason) = reason {
            text.extend_from_slice(&reason.encode());
        }
        text.extend_from_slice(&command.encode());
        let want = 1 + usize::from(reason.is_some());
        self.write(&text).await?;
        drop(text);
        let mut answers = self.answers(want).await?;
        answers
            .pop()
            .ok_or_else(|| CliError::Unexpected("secrets/ctl gave no result for a command".into()))
    }

    /// Sends `commands` as one transaction (`begin`, the commands, `commit`), packed into
    /// as few writes as the connection allows: all apply or none does. Returns each
    /// command's result.
    ///
    /// # Errors
    /// [`CliError::Ctl`] with the server's text (the command that stopped it, or the
    /// transaction's own refusal); nothing was applied then.
    pub async fn transaction(
        &mut self,
        commands: &[ctl::Command],
    ) -> Result<Vec<Answer>, CliError> {
        let size: usize = commands.iter().map(|c| c.weight()).sum::<usize>() + 32;
        // One buffer for all of it, sized up front so that it never reallocates (values
        // pass through it).
        let mut text = Zeroizing::new(Vec::with_capacity(2 * size + 1100));
        // The reason before `begin` is the transaction's.
        let reason = self.reason.is_some();
        if let Some(reason) = &self.reason {
            text.extend_from_slice(&reason.encode());
        }
        text.extend_from_slice(&ctl::Command::Begin.encode());
        for c in commands {
            text.extend_from_slice(&c.encode());
        }
        text.extend_from_slice(&ctl::Command::Commit.encode());
        self.write(&text).await?;
        drop(text);
        // The reason's, begin, each command, then commit.
        let mut answers = self
            .answers(commands.len() + 2 + usize::from(reason))
            .await?;
        if reason && !answers.is_empty() {
            answers.remove(0);
        }
        if answers.len() != commands.len() + 2 {
            return Err(CliError::Unexpected(format!(
                "secrets/ctl gave {} results for a transaction of {} commands",
                answers.len(),
                commands.len()
            )));
        }
        answers.pop();
        answers.remove(0);
        Ok(answers)
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        let sent = self
            .link
            .answer(self.fid.write_all(self.offset, bytes))
            .await;
        self.offset += bytes.len() as u64;
        sent.map_err(CliError::ctl)
    }

    /// Reads results until `want` of them came, or the fid has no more. A result that is
    /// an error is returned as one.
    async fn answers(&mut self, want: usize) -> Result<Vec<Answer>, CliError> {
        let mut answers = Vec::with_capacity(want);
        let mut taken = 0usize;
        while answers.len() < want {
            if let Some(next) = self.results.next_reply() {
                match next {
                    Ok(Reply::Ok(answer)) => answers.push(answer),
                    Ok(Reply::Err(text)) => return Err(CliError::Ctl(text)),
                    Err(e) => {
                        return Err(CliError::Unexpected(format!("reading secrets/ctl: {e}")));
                    }
                }
                continue;
            }
            let count = self.fid.io_size();
            let data = self
                .link
                .answer(self.fid.read(0, count))
                .await
                .map_err(|e| CliError::request("reading the results from secrets/ctl", e))?;
            if data.is_empty() {
                break;
            }
            taken += data.len();
            if taken > MAX_RESULTS {
                return Err(CliError::Unexpected(
                    "secrets/ctl gave more results than any command has".into(),
                ));
            }
            self.results.push(data.expose());
        }
        Ok(answers)
    }

    /// Clunks the fid; the server may report an error for an unfinished command here.
    ///
    /// # Errors
    /// [`CliError::Ctl`] with the server's text.
    pub async fn close(self) -> Result<(), CliError> {
        let Ctl { fid, link, .. } = self;
        link.answer(fid.clunk()).await.map_err(CliError::ctl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Env {
        Env {
            euid: 1000,
            user: "glenda".into(),
            ..Env::default()
        }
    }

    fn path(a: Result<Addr, CliError>) -> String {
        a.unwrap().unix_path().unwrap().display().to_string()
    }

    fn unix_server() -> Server {
        Server {
            addr: resolve(Some("/s"), &env()).unwrap(),
            token: None,
            timeout: Duration::from_secs(1),
            reason: None,
            tls: None,
        }
    }

    fn attach_error(e: ClientError, env: &Env) -> CliError {
        attach_error_on(e, env, &unix_server())
    }

    fn attach_error_on(e: ClientError, env: &Env, server: &Server) -> CliError {
        let link = Link {
            addr: server.addr.clone(),
            timeout: Duration::from_secs(1),
            heard: Arc::new(Mutex::new(Instant::now())),
            tls_failure: None,
        };
        super::attach_error(e, env, server, &link)
    }

    #[test]
    fn the_flag_wins() {
        let e = Env {
            addr: Some("unix:/from/env".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..env()
        };
        assert_eq!(path(resolve(Some("unix:/from/flag"), &e)), "/from/flag");
        assert_eq!(
            resolve(Some("unix:rel/sock"), &e).unwrap().to_string(),
            "unix:rel/sock"
        );
    }

    #[test]
    fn then_the_environment_variable() {
        let e = Env {
            addr: Some("unix:/from/env".into()),
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..env()
        };
        assert_eq!(path(resolve(None, &e)), "/from/env");
        // An empty variable is as good as none.
        let e = Env {
            addr: Some("".into()),
            ..env()
        };
        assert_eq!(path(resolve(None, &e)), "/tmp/srv-secrets-1000/9p.sock");
    }

    #[test]
    fn then_the_servers_default_socket() {
        let xdg = Env {
            xdg_runtime_dir: Some("/run/user/1000".into()),
            ..env()
        };
        assert_eq!(
            path(resolve(None, &xdg)),
            "/run/user/1000/srv-secrets/9p.sock"
        );
        let root = Env { euid: 0, ..env() };
        assert_eq!(path(resolve(None, &root)), "/run/srv-secrets/9p.sock");
        // XDG_RUNTIME_DIR comes first even for root (a root login session has one).
        let root_xdg = Env {
            xdg_runtime_dir: Some("/run/user/0".into()),
            ..root
        };
        assert_eq!(
            path(resolve(None, &root_xdg)),
            "/run/user/0/srv-secrets/9p.sock"
        );
        let user = Env {
            xdg_runtime_dir: Some("".into()),
            euid: 1001,
            ..env()
        };
        assert_eq!(path(resolve(None, &user)), "/tmp/srv-secrets-1001/9p.sock");
    }

    #[test]
    fn a_bare_path_is_a_unix_socket() {
        for (given, want) in [
            ("/run/srv-secrets/9p.sock", "/run/srv-secrets/9p.sock"),
            ("rel/9p.sock", "rel/9p.sock"),
            ("9p.sock", "9p.sock"),
            ("./tcp:1", "./tcp:1"),
            ("unix:tcp:1", "tcp:1"),
            ("/odd:name.sock", "/odd:name.sock"),
        ] {
            assert_eq!(path(resolve(Some(given), &env())), want, "{given}");
        }
        assert_eq!(
            resolve(Some("/s"), &env()).unwrap().to_string(),
            "unix:/s",
            "shown as unix:PATH"
        );
        let e = Env {
            addr: Some("/from/env.sock".into()),
            ..env()
        };
        assert_eq!(path(resolve(None, &e)), "/from/env.sock");
    }

    #[test]
    fn other_schemes_and_empty_addresses_are_usage_errors() {
        for bad in ["unix:", "tcp!host!564", "ssh:host", "", "TCP:x"] {
            let Err(e) = resolve(Some(bad), &env()) else {
                if bad == "tcp!host!564" {
                    continue; // no colon: a file name like any other
                }
                panic!("{bad} was taken");
            };
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(
                e.to_string()
                    .starts_with("--addr must be unix:PATH (or the path"),
                "{e}"
            );
        }
        let e = Env {
            addr: Some("ssh:host".into()),
            ..env()
        };
        let err = resolve(None, &e).unwrap_err().to_string();
        assert_eq!(
            err,
            "SRV_SECRETS_ADDR must be unix:PATH (or the path of the server's socket) or \
             tls:HOST:PORT (or, for a test server on loopback, tcp:HOST:PORT), not 'ssh:host'"
        );
    }

    #[test]
    fn a_tls_address_is_a_host_and_a_port_from_the_flag_or_the_environment() {
        let tls = |host: &str, port| Addr::Tls {
            host: host.into(),
            port,
        };
        for (given, want) in [
            ("tls:secrets.example:5640", tls("secrets.example", 5640)),
            ("tls:127.0.0.1:1", tls("127.0.0.1", 1)),
            ("tls:[::1]:5640", tls("::1", 5640)),
            ("tls:localhost:443", tls("localhost", 443)),
        ] {
            let addr = resolve(Some(given), &env()).unwrap();
            assert_eq!(addr, want, "{given}");
            assert_eq!(addr.to_string(), given);
        }
        let e = Env {
            addr: Some("tls:db.internal:5640".into()),
            ..env()
        };
        assert_eq!(resolve(None, &e).unwrap(), tls("db.internal", 5640));
        for bad in [
            "tls:",
            "tls:host",
            "tls::5640",
            "tls:host:0",
            "tls:host:x",
            "tls:::1:5",
        ] {
            let err = resolve(Some(bad), &env()).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{bad}");
            assert!(
                err.to_string()
                    .starts_with(&format!("--addr {bad}: give tls:HOST:PORT")),
                "{err}"
            );
        }
    }

    #[test]
    fn tls_flags_go_with_a_tls_address_only() {
        let tls = resolve(Some("tls:h:1"), &env()).unwrap();
        let unix = resolve(Some("/s"), &env()).unwrap();
        let flags = |ca: bool, cert: bool, key: bool| TlsFlags {
            ca: ca.then(|| "ca.crt".into()),
            cert: cert.then(|| "me.crt".into()),
            key: key.then(|| "me.key".into()),
        };
        let files = tls_files(&tls, &flags(true, true, true)).unwrap().unwrap();
        assert_eq!(files.identity, Some(("me.crt".into(), "me.key".into())));
        assert_eq!(
            tls_files(&tls, &flags(true, false, false))
                .unwrap()
                .unwrap()
                .identity,
            None
        );
        let usage = |r: Result<Option<tls::ClientFiles>, CliError>| {
            let e = r.unwrap_err();
            assert_eq!(e.exit_code(), 2);
            e.to_string()
        };
        assert_eq!(
            usage(tls_files(&tls, &flags(false, true, true))),
            "--addr tls:h:1 needs --ca FILE: the CA certificate that issued the server's \
             certificate (PEM)"
        );
        assert!(
            usage(tls_files(&tls, &flags(true, true, false))).starts_with("--cert needs --key")
        );
        assert!(
            usage(tls_files(&tls, &flags(true, false, true))).starts_with("--key needs --cert")
        );
        assert!(
            usage(tls_files(&unix, &flags(true, false, false)))
                .starts_with("--ca, --cert and --key are for --addr tls:HOST:PORT")
        );
        assert_eq!(tls_files(&unix, &flags(false, false, false)).unwrap(), None);
    }

    #[test]
    fn tcp_is_for_loopback_only() {
        assert_eq!(
            resolve(Some("tcp:127.0.0.1:5640"), &env()).unwrap(),
            Addr::Tcp("127.0.0.1:5640".parse().unwrap())
        );
        let six = resolve(Some("tcp:[::1]:5640"), &env()).unwrap();
        assert_eq!(six.to_string(), "tcp:[::1]:5640");
        assert!(six.unix_path().is_none());
        for far in ["tcp:10.1.2.3:5640", "tcp:0.0.0.0:5640"] {
            let e = resolve(Some(far), &env()).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("loopback only"), "{e}");
        }
        for bad in ["tcp:localhost:5640", "tcp:127.0.0.1", "tcp:"] {
            let e = resolve(Some(bad), &env()).unwrap_err();
            assert!(
                e.to_string().contains("takes an IP address and a port"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_token_file_is_ours_private_and_holds_one_token() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("token");
        let euid = rustix::process::geteuid().as_raw();
        let good = format!("srvtok_0123456789abcdef_{}\n", "A".repeat(43));
        std::fs::write(&file, &good).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let token = Token::read(&file, euid).unwrap();
        assert_eq!(token.expose(), good.trim_end().as_bytes());
        assert!(!format!("{token:?}").contains("AAAA"));
        for mode in [0o640, 0o604, 0o644, 0o660] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Token::read(&file, euid).unwrap_err().to_string();
            assert!(
                e.contains(&format!("has mode {mode:o}, open to group or others")),
                "{e}"
            );
            assert!(e.contains("chmod 600"), "{e}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(Token::read(&file, euid).is_ok());
        // Another user's file is theirs to change (root's is not: root can change any).
        if euid != 0 {
            let e = Token::read(&file, euid + 1).unwrap_err().to_string();
            assert!(e.contains("neither this user"), "{e}");
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Not a token: said without a byte of it.
        std::fs::write(&file, "hunter2-not-a-token\n").unwrap();
        let e = Token::read(&file, euid).unwrap_err().to_string();
        assert!(
            e.contains("does not hold a token") && !e.contains("hunter2"),
            "{e}"
        );
        std::fs::write(&file, vec![b's'; 5000]).unwrap();
        let e = Token::read(&file, euid).unwrap_err().to_string();
        assert!(e.contains("far longer than a token"), "{e}");
        let e = Token::read(&tmp.path().join("missing"), euid)
            .unwrap_err()
            .to_string();
        assert!(e.contains("cannot open it"), "{e}");
        let e = Token::read(tmp.path(), euid).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn what_the_server_tells_a_service_uid() {
        assert_eq!(
            parse_not_admin("uid 1001 is service web; the admin is root or uid 1000"),
            Some((1001, "web".to_string(), Some(1000)))
        );
        assert_eq!(
            parse_not_admin("uid 1001 is service web; the admin is root"),
            Some((1001, "web".to_string(), None))
        );
        for bad in [
            "",
            "uid x is service web; the admin is root",
            "uid 1 is service web",
            "uid 1 is service web; the admin is root or uid",
            "uid 1 is service web; the admin is root and more",
        ] {
            assert_eq!(parse_not_admin(bad), None, "{bad}");
        }
        let env = env();
        let e = attach_error(
            ClientError::Remote(
                "permission denied: uid 1001 is service web; the admin is root or uid 1000".into(),
            ),
            &env,
        );
        assert_eq!(
            e.to_string(),
            "this uid (1001) is service web: admin commands need root or uid 1000"
        );
        let e = attach_error(ClientError::Remote("permission denied".into()), &env);
        assert!(matches!(e, CliError::AttachRefused { uid: 1000 }));
        let e = attach_error(ClientError::Remote("permission denied: other".into()), &env);
        assert!(matches!(e, CliError::AttachRefused { uid: 1000 }));
        // Over TCP, a refusal is of the token, in the server's words.
        let token = Token {
            file: PathBuf::from("/home/glenda/admin.token"),
            text: Zeroizing::new(b"srvtok_x".to_vec()),
        };
        let tcp = Server {
            addr: resolve(Some("tcp:127.0.0.1:5640"), &env).unwrap(),
            token: Some(token.clone()),
            ..unix_server()
        };
        let e = attach_error_on(
            ClientError::Remote("permission denied: token 0123456789abcdef was revoked".into()),
            &env,
            &tcp,
        );
        assert_eq!(
            e.to_string(),
            "the server refused the token in /home/glenda/admin.token: token 0123456789abcdef \
             was revoked; make a new one with `deploy token create PRINCIPAL` (see them with \
             `deploy token list`)"
        );
        // Over TLS without a certificate too; with one, the token is not presented.
        let files = |identity| tls::ClientFiles {
            ca: "ca.crt".into(),
            identity,
        };
        let mut tls = Server {
            addr: resolve(Some("tls:h:1"), &env).unwrap(),
            token: Some(token),
            tls: Some(files(None)),
            ..unix_server()
        };
        assert!(tls.token_to_present().is_some());
        let e = attach_error_on(
            ClientError::Remote(
                "permission denied: a service's certificate or token; the admin tree takes \
                 the admin's"
                    .into(),
            ),
            &env,
            &tls,
        );
        assert!(
            e.to_string().ends_with(
                "admin commands need a token made for the admin (deploy token create admin)"
            ),
            "{e}"
        );
        tls.tls = Some(files(Some(("me.crt".into(), "me.key".into()))));
        assert!(tls.token_to_present().is_none());
        assert!(check_token_flag(&tls).is_err());
        assert!(unix_server().token_to_present().is_none());
    }

    /// A Link over one end of a socket pair whose other end `peer` drives.
    fn link(timeout: Duration) -> (Link, tokio::net::UnixStream, Heard<tokio::net::UnixStream>) {
        let (ours, peer) = tokio::net::UnixStream::pair().unwrap();
        let heard = Arc::new(Mutex::new(Instant::now()));
        let link = Link {
            addr: resolve(Some("/s"), &env()).unwrap(),
            timeout,
            heard: heard.clone(),
            tls_failure: None,
        };
        (link, peer, Heard::new(ours, heard))
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_fails_after_the_timeout_of_silence() {
        let (link, _peer, _ours) = link(Duration::from_secs(10));
        let started = Instant::now();
        let never = std::future::pending::<Result<(), ClientError>>();
        let e = link.answer(never).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        let e = CliError::request("reading secrets/status", e);
        assert_eq!(
            e.to_string(),
            "no answer from srv-secrets at unix:/s within 10s while reading secrets/status; \
             is the server stuck? see its log, or raise --timeout"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_request_lives_while_the_server_answers_others() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (link, mut peer, mut ours) = link(Duration::from_secs(1));
        // The server answers something every 500 ms for 5 s (as the rotate-key polls
        // are answered), then falls silent.
        let chatter = tokio::spawn(async move {
            for _ in 0..10 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                peer.write_all(&[7, 0, 0, 0, 1, 2, 3]).await.unwrap();
            }
            peer
        });
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            while ours.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let started = Instant::now();
        let slow = async {
            tokio::time::sleep(Duration::from_secs(4)).await;
            Ok::<_, ClientError>("done")
        };
        assert_eq!(link.answer(slow).await.unwrap(), "done");
        assert_eq!(started.elapsed(), Duration::from_secs(4));
        // Once it is silent, the next request fails a timeout after the last word.
        let _peer = chatter.await.unwrap();
        let never = std::future::pending::<Result<(), ClientError>>();
        let e = link.answer(never).await.unwrap_err();
        assert!(NoAnswer::of(&e).is_some());
        assert_eq!(started.elapsed(), Duration::from_secs(6));
        reader.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn bytes_that_never_finish_a_message_are_no_sign_of_life() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (link, mut peer, mut ours) = link(Duration::from_secs(1));
        // A message of 1 MiB announced, then a byte of it every 500 ms.
        let trickle = tokio::spawn(async move {
            peer.write_all(&[0, 0, 16, 0]).await.unwrap();
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                peer.write_all(b"x").await.unwrap();
            }
            peer
        });
        let reader = tokio::spawn(async move {
            let mut buf = [0u8; 16];
            while ours.read(&mut buf).await.is_ok_and(|n| n > 0) {}
        });
        let started = Instant::now();
        let never = std::future::pending::<Result<(), ClientError>>();
        let e = link.answer(never).await.unwrap_err();
        assert!(NoAnswer::of(&e).is_some());
        assert_eq!(started.elapsed(), Duration::from_secs(1));
        trickle.abort();
        reader.abort();
    }

    #[test]
    fn message_boundaries_are_counted_across_and_within_reads() {
        let mut frame = FrameProgress::default();
        // Two whole messages in one read, then one split inside its size field.
        assert!(frame.take(&[5, 0, 0, 0, 9, 6, 0, 0, 0, 1, 2]));
        assert!(!frame.take(&[6, 0]));
        assert!(!frame.take(&[0, 0, 1]));
        assert!(frame.take(&[2]));
        // A malformed size (below 4) ends its message at once, and counting goes on.
        assert!(frame.take(&[1, 0, 0, 0]));
        assert!(!frame.take(&[9, 0, 0, 0, 1]));
        assert!(frame.take(&[1, 2, 3, 4]));
        // A long message is progress every 64 KiB of it.
        assert!(!frame.take(&[0, 0, 4, 0]));
        assert!(!frame.take(&vec![0; 65_535]));
        assert!(frame.take(&[0]));
        assert!(!frame.take(&vec![0; 65_535]));
    }

    #[test]
    fn the_server_must_be_root_us_or_who_alone_controls_the_path() {
        let squatted = Path::new("/tmp/srv-secrets-1002/9p.sock");
        assert!(trusted_server(0, 1002, squatted));
        assert!(trusted_server(1002, 1002, squatted));
        // Everyone can write /tmp: anyone else there may be posing as the server.
        assert!(!trusted_server(1005, 1002, squatted));
        assert!(!trusted_server(1005, 0, squatted));
        let tmp = tempfile::tempdir_in("/tmp").unwrap();
        assert!(!only_changed_by(&tmp.path().join("9p.sock"), 1005));
        // What only root can change belongs to the system's server, whoever it runs as
        // (srv-secrets under systemd, serving root's deploy).
        assert!(trusted_server(999, 0, Path::new("/9p.sock")));
        assert!(!only_changed_by(Path::new("/no/such/dir/9p.sock"), 999));
    }

    #[test]
    fn non_utf8_paths_survive() {
        let raw = OsStr::from_bytes(b"unix:/tmp/\xff.sock").to_os_string();
        let e = Env {
            addr: Some(raw),
            ..env()
        };
        let a = resolve(None, &e).unwrap();
        assert_eq!(
            a.unix_path().unwrap().as_os_str().as_bytes(),
            b"/tmp/\xff.sock"
        );
    }
}
