//! `srv-secrets relay`: the local end of a remote server, for clients that speak only
//! plain 9P on a unix socket (the kernel's `mount -t 9p -o trans=unix`, 9pfuse, `deploy
//! mount`), none of which can present a client certificate.
//!
//! The relay holds one service's client certificate. It lets in only the local uids given
//! with `--allow-uid` (SO_PEERCRED; nobody by default), and forwards each connection it
//! lets in over a TLS connection of its own to the server, where the certificate names the
//! principal. So a remote service's view mounts like a local one, every request is still
//! checked by the server (a revoke there stops the next read through the relay), and the
//! relay keeps no 9P state: it cannot widen what the certificate may do. It refuses an
//! admin certificate: every allowed uid would be the admin, and remote administration is
//! deploy's (`deploy --addr tls:...`), whose user holds the admin's key themself.
//!
//! # The one exchange the relay reads, and why the rest is bytes
//!
//! The relay reads the client's first message (Tversion, in every 9P client) before it
//! connects upstream, and the server's answer to it: until then nothing of a session
//! exists, so when the server cannot be reached, or refuses the certificate (TLS 1.3 says
//! so only at the first read), or the uid is not allowed, the client gets an Rerror to its
//! Tversion that says why (its mount or command fails with that text), and nothing else
//! is ever said in the server's name. After it, the relay copies bytes both ways, a
//! buffer per direction, and when the server's side ends (the server stopped, the
//! connection dropped or failed) it closes the client's socket at once. A closed socket
//! is the transport's own "connection lost": the kernel fails every pending and later
//! request of the mount (EIO), 9pfuse and our client fail theirs, none of them waits. An
//! Rerror for each pending request would need the relay to track every tag and flush of
//! the session, and one wrong answer (a tag already flushed and reused) would be worse
//! than none; the session cannot be carried over to a new connection anyway (its fids
//! are the old server's). The next connection is a new session, and connects again.
//!
//! # Bounds
//!
//! Each allowed uid has a share of `--max-connections` of its own, so that one uid cannot
//! take another's; a connection past it, or from a uid not allowed, is answered and
//! closed by a few short-lived tasks of their own (past those, closed at once), and
//! cannot slow anyone. Connecting upstream is retried with a growing pause for at most
//! `--connect-timeout`; the server must answer the first message within it too. A
//! connection's buffers are fixed (two of [`BUFFER`] bytes, wiped when it ends): a client
//! that stops reading stops its own upstream connection and no one else's. TCP
//! keepalive and a user timeout on the upstream socket bound how long a dead network
//! path goes unnoticed, without a limit on how long a read may wait for its data (reads
//! of /events wait on purpose).
//!
//! The log names each uid that connects or is refused, and each upstream failure; never a
//! byte of what is relayed.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use clap::Args;
use ninep::{FrameHeader, HEADER_SIZE, Rframe, Rmessage};
use tls::rustls::ClientConfig;
use tls::rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::listen::{self, Listen};
use crate::quiet::LogBudget;

/// `srv-secrets relay`'s flags.
#[derive(Args, Debug)]
pub struct RelayArgs {
    /// The server's TLS listener: tls:HOST:PORT, HOST as the server's certificate names
    /// it (a DNS name or an IP address; IPv6 in brackets).
    #[arg(long, value_name = "ADDR")]
    pub connect: String,
    /// The service's client certificate (PEM), issued by the CA the server trusts (its
    /// --client-ca); its subject's Common Name is the service's name. An admin
    /// certificate is refused.
    #[arg(long, value_name = "FILE")]
    pub cert: PathBuf,
    /// The private key of --cert (PEM; keep it mode 0600, readable by the relay's user
    /// alone).
    #[arg(long, value_name = "FILE")]
    pub key: PathBuf,
    /// The CA certificate(s) that may issue the server's certificate (PEM).
    #[arg(long, value_name = "FILE")]
    pub ca: PathBuf,
    /// The unix socket to listen on (unix:PATH or a path). Its directory is made (0755)
    /// if missing; an existing one must belong to this user or root and be writable by
    /// nobody else.
    #[arg(long, value_name = "ADDR")]
    pub listen: String,
    /// A local uid whose processes may use the relay (repeatable; at least one). Each acts
    /// as the service the certificate names. A kernel mount connects as the uid that
    /// mounts (root: --allow-uid 0).
    #[arg(long = "allow-uid", value_name = "UID")]
    pub allow_uid: Vec<u32>,
    /// Connections relayed at once, shared out evenly among the allowed uids. The server
    /// lets one certificate hold 64.
    #[arg(long, value_name = "N", default_value_t = 64)]
    pub max_connections: usize,
    /// How long a new connection may take to reach the server (retried meanwhile) and to
    /// have its first message answered, in seconds; past it the client is told why.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub connect_timeout: u64,
}

/// The bytes a connection's buffer holds, each way: a TLS record's worth.
pub const BUFFER: usize = 16 * 1024;

/// The largest first message the relay reads (Tversion is a few dozen bytes), and the
/// largest first answer (Rversion, or an Rerror).
const MAX_FIRST_FRAME: usize = 8 * 1024;

/// How long a client may take to send its first message. Generous, as the server's own
/// attach timeout is: qemu connects a VM's 9P port when the VM starts, and the kernel
/// speaks once it has booted. A silent client holds no upstream connection meanwhile.
const FIRST_MESSAGE_WAIT: Duration = Duration::from_secs(60);

/// Connections being refused at once (each answered within [`REFUSAL_WAIT`]); past it,
/// refused connections are closed without an answer.
const REFUSALS_AT_ONCE: usize = 16;

/// How long a refused connection may take to send the Tversion it is answered.
const REFUSAL_WAIT: Duration = Duration::from_secs(1);

/// The pause between two tries to connect upstream: the first, and the most.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_MOST: Duration = Duration::from_secs(1);

/// TCP keepalive on the upstream connection: the first probe after this much silence...
const KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// ...then one every...
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// ...and the connection is dead after this many unanswered.
const KEEPALIVE_PROBES: u32 = 3;
/// Bytes written upstream that go unacknowledged this long end the connection
/// (TCP_USER_TIMEOUT), in milliseconds.
const USER_TIMEOUT_MS: u32 = 30_000;

/// The server a relay forwards to: `tls:HOST:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    host: String,
    port: u16,
    name: ServerName<'static>,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "tls:[{}]:{}", self.host, self.port)
        } else {
            write!(f, "tls:{}:{}", self.host, self.port)
        }
    }
}

/// Reads `--connect`.
///
/// # Errors
/// What is wrong with it, and what to give.
pub fn parse_connect(text: &str) -> Result<Upstream, String> {
    let usage = || {
        format!(
            "--connect {text}: give tls:HOST:PORT, the server's TLS listener, such as \
             tls:secrets.example:5640, tls:10.0.0.5:5640 or tls:[fd00::5]:5640"
        )
    };
    let Some(rest) = text.strip_prefix("tls:") else {
        return Err(format!(
            "--connect {text}: the relay reaches its server over TLS only: give \
             tls:HOST:PORT (a client on the server's own machine can use the server's unix \
             socket directly)"
        ));
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(bracketed) => {
            let (host, port) = bracketed.split_once("]:").ok_or_else(usage)?;
            host.parse::<std::net::Ipv6Addr>().map_err(|_| usage())?;
            (host, port)
        }
        None => {
            let (host, port) = rest.rsplit_once(':').ok_or_else(usage)?;
            if host.contains(':') {
                return Err(usage());
            }
            (host, port)
        }
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(usage)?;
    if host.is_empty() {
        return Err(usage());
    }
    let name = tls::server_name(host).map_err(|_| usage())?;
    Ok(Upstream {
        host: host.to_string(),
        port,
        name,
    })
}

/// Who may connect to the relay, and how many connections each may hold.
struct Gate {
    shares: HashMap<u32, Arc<Semaphore>>,
    share: usize,
}

/// What the gate says of a new connection.
enum Admission {
    /// Relay it, holding this slot until it ends.
    Admitted(OwnedSemaphorePermit),
    /// A uid not allowed.
    NotAllowed,
    /// An allowed uid that holds its share already.
    Full,
}

impl Gate {
    /// Each of `allowed` gets `max_connections / allowed.len()` connections.
    fn new(allowed: &BTreeSet<u32>, max_connections: usize) -> Result<Gate, String> {
        let share = max_connections / allowed.len().max(1);
        if share == 0 {
            return Err(format!(
                "--max-connections {max_connections} is fewer than the {} uids allowed: each \
                 needs at least one connection",
                allowed.len()
            ));
        }
        Ok(Gate {
            shares: allowed
                .iter()
                .map(|uid| (*uid, Arc::new(Semaphore::new(share))))
                .collect(),
            share,
        })
    }

    fn admit(&self, uid: u32) -> Admission {
        match self.shares.get(&uid) {
            None => Admission::NotAllowed,
            Some(slots) => match slots.clone().try_acquire_owned() {
                Ok(permit) => Admission::Admitted(permit),
                Err(_) => Admission::Full,
            },
        }
    }
}

/// How the socket's file lets local users connect (connect(2) needs write permission
/// on it). The uid check is the gate; the mode only keeps out those it would refuse
/// anyway, where that is possible.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SocketAccess {
    /// 0600, the relay's: every allowed uid is the relay's own or root.
    Owner,
    /// 0600, given to the one allowed uid besides root (the relay runs as root).
    OwnedBy(u32),
    /// 0666: several uids, or one the relay cannot give the file to.
    Everyone,
}

fn socket_access(allowed: &BTreeSet<u32>, euid: u32) -> SocketAccess {
    let others: Vec<u32> = allowed
        .iter()
        .copied()
        .filter(|uid| *uid != euid && *uid != 0)
        .collect();
    match others.as_slice() {
        [] => SocketAccess::Owner,
        [one] if euid == 0 => SocketAccess::OwnedBy(*one),
        _ => SocketAccess::Everyone,
    }
}

/// The certificate's configuration and the service it names.
struct Identity {
    config: Arc<ClientConfig>,
    service: String,
}

/// Loads `--cert`, `--key` and `--ca`: refused unless the certificate names a service.
fn load_identity(files: &tls::ClientFiles) -> Result<Identity, String> {
    let Some((cert, key)) = &files.identity else {
        return Err("the relay needs --cert and --key".into());
    };
    let chain = tls::read_certificates(cert, "--cert")?;
    let name = tls::certificate_name(&chain[0]).map_err(|problem| {
        format!(
            "--cert {}: {problem}: the relay needs a service's certificate, whose subject's \
             Common Name is the service's name",
            cert.display()
        )
    })?;
    if name == model::ADMIN_ANAME {
        return Err(format!(
            "--cert {}: its CN is admin, and the relay refuses the admin's certificate: every \
             uid it lets in would be the admin. Administer a remote server with deploy \
             (deploy --addr tls:HOST:PORT --ca CA --cert admin.crt --key admin.key), and give \
             the relay the certificate of the service it serves",
            cert.display()
        ));
    }
    if !model::is_valid_service(&name) {
        return Err(format!(
            "--cert {}: its CN {name:?} is not a service's name, and the server would take \
             it for no one: give the certificate of the service the relay serves",
            cert.display()
        ));
    }
    if let Ok(meta) = std::fs::metadata(key)
        && meta.permissions().mode() & 0o077 != 0
    {
        warn!(
            "--key {}: mode {:o}, readable by others than its owner: run `chmod 600 {}`",
            key.display(),
            meta.permissions().mode() & 0o7777,
            key.display()
        );
    }
    let config = tls::client_config(files)?;
    Ok(Identity {
        config,
        service: name,
    })
}

/// A relay, ready to serve: what `main` checked and loaded.
pub struct Relay {
    upstream: Upstream,
    files: tls::ClientFiles,
    identity: RwLock<Identity>,
    gate: Gate,
    socket: PathBuf,
    access: SocketAccess,
    connect_timeout: Duration,
    refusals: Arc<Semaphore>,
    refusal_log: LogBudget,
    full_log: LogBudget,
    next_connection: AtomicU64,
}

impl Relay {
    /// Checks the flags and loads the certificate: everything that can be refused before
    /// a socket is made.
    ///
    /// # Errors
    /// What is wrong, in terms of the flags.
    pub fn new(args: RelayArgs) -> Result<Relay, String> {
        let upstream = parse_connect(&args.connect)?;
        let socket = match listen::parse(&args.listen, "--listen")? {
            Listen::Unix(path) => path,
            other => {
                return Err(format!(
                    "--listen {other}: the relay listens on a unix socket only (unix:PATH), \
                     where the kernel names each client's uid for --allow-uid to check"
                ));
            }
        };
        if args.allow_uid.is_empty() {
            return Err(
                "give --allow-uid UID for each local user whose processes may use the relay \
                 (such as --allow-uid $(id -u web); a kernel mount connects as the uid that \
                 mounts, root: --allow-uid 0). Each acts as the service the certificate \
                 names, and none is allowed by default"
                    .into(),
            );
        }
        if args.connect_timeout == 0 {
            return Err("--connect-timeout 0: give at least 1 second".into());
        }
        let allowed: BTreeSet<u32> = args.allow_uid.iter().copied().collect();
        let gate = Gate::new(&allowed, args.max_connections)?;
        let files = tls::ClientFiles {
            ca: args.ca,
            identity: Some((args.cert, args.key)),
        };
        let identity = load_identity(&files)?;
        Ok(Relay {
            upstream,
            files,
            identity: RwLock::new(identity),
            gate,
            socket,
            access: socket_access(&allowed, crate::paths::euid()),
            connect_timeout: Duration::from_secs(args.connect_timeout),
            refusals: Arc::new(Semaphore::new(REFUSALS_AT_ONCE)),
            refusal_log: LogBudget::default(),
            full_log: LogBudget::default(),
            next_connection: AtomicU64::new(1),
        })
    }

    fn config(&self) -> Arc<ClientConfig> {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .config
            .clone()
    }

    fn service(&self) -> String {
        self.identity
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .service
            .clone()
    }

    /// SIGHUP: the certificate, key and CA read again for new connections; on failure
    /// the ones in use are kept. Connections open go on.
    fn reload(&self) {
        match load_identity(&self.files) {
            Ok(identity) => {
                let service = identity.service.clone();
                *self.identity.write().unwrap_or_else(|p| p.into_inner()) = identity;
                info!(
                    "SIGHUP: reloaded --cert, --key and --ca (service {service}); new \
                     connections use them"
                );
            }
            Err(e) => warn!("SIGHUP: keeping the certificate in use, the new one is refused: {e}"),
        }
    }

    /// A TLS connection to the server, tried again with a growing pause while the server
    /// cannot be reached, for at most the connect timeout. A certificate refused is not
    /// tried again.
    ///
    /// # Errors
    /// Why not, in words for the client and the log.
    async fn connect(&self) -> Result<Upstreamed, String> {
        let deadline = Instant::now() + self.connect_timeout;
        let mut pause = RETRY_FIRST;
        let mut tries = 0u32;
        loop {
            tries += 1;
            let left = deadline.saturating_duration_since(Instant::now());
            let why = match tokio::time::timeout(left, self.try_connect()).await {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(Try::Final(why))) => return Err(why),
                Ok(Err(Try::Again(why))) => why,
                Err(_) => "no answer".to_string(),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(format!(
                    "cannot reach the server ({why}; {tries} tries in {} s)",
                    self.connect_timeout.as_secs()
                ));
            }
            tokio::time::sleep(pause.min(left)).await;
            pause = (pause * 2).min(RETRY_MOST);
        }
    }

    async fn try_connect(&self) -> Result<Upstreamed, Try> {
        let tcp = TcpStream::connect((self.upstream.host.as_str(), self.upstream.port))
            .await
            .map_err(|e| Try::Again(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        if let Err(e) = keep_alive(&tcp) {
            debug!("cannot set TCP keepalive upstream: {e}");
        }
        tls::connect(self.config(), self.upstream.name.clone(), tcp)
            .await
            .map_err(|e| match tls::Failure::of(&e) {
                // Closed during the handshake: a server stopping, or at its limit.
                None | Some(tls::Failure::Closed) => Try::Again(e.to_string()),
                Some(failure) => Try::Final(failure.to_string()),
            })
    }

    /// A new local connection: let in, answered and closed, or closed.
    fn accept(self: &Arc<Self>, stream: UnixStream) {
        let uid = match stream.peer_cred() {
            Ok(cred) => cred.uid(),
            Err(e) => {
                debug!("a connection without peer credentials, closed: {e}");
                return;
            }
        };
        match self.gate.admit(uid) {
            Admission::Admitted(slot) => {
                let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
                info!("uid {uid} connected (connection {id})");
                let relay = self.clone();
                tokio::spawn(async move {
                    relay.relay(stream, uid, id).await;
                    drop(slot);
                });
            }
            Admission::NotAllowed => {
                if let Some(unlogged) = self.refusal_log.allow(Instant::now()) {
                    warn!(
                        unlogged,
                        "refused uid {uid}: not allowed (--allow-uid) (at most 20 such lines \
                         every 10 s)"
                    );
                }
                self.refuse(stream, ninep::ename::PERMISSION_DENIED.to_string());
            }
            Admission::Full => {
                let share = self.gate.share;
                if let Some(unlogged) = self.full_log.allow(Instant::now()) {
                    warn!(
                        unlogged,
                        "refused a connection of uid {uid}: it holds its {share} already \
                         (--max-connections) (at most 20 such lines every 10 s)"
                    );
                }
                self.refuse(
                    stream,
                    format!(
                        "srv-secrets relay: uid {uid} has its {share} connections through the \
                         relay already"
                    ),
                );
            }
        }
    }

    /// Answers a refused connection's Tversion with `ename` and closes it, within
    /// [`REFUSAL_WAIT`], by one of [`REFUSALS_AT_ONCE`] tasks; with none free, closes it.
    fn refuse(&self, mut stream: UnixStream, ename: String) {
        let Ok(slot) = self.refusals.clone().try_acquire_owned() else {
            return;
        };
        tokio::spawn(async move {
            if let Ok(Ok(first)) =
                tokio::time::timeout(REFUSAL_WAIT, read_frame(&mut stream, MAX_FIRST_FRAME)).await
            {
                let _ = tokio::time::timeout(REFUSAL_WAIT, answer(&mut stream, first.tag, &ename))
                    .await;
            }
            drop(slot);
        });
    }

    /// One local connection, from its first message to its end.
    async fn relay(&self, mut local: UnixStream, uid: u32, id: u64) {
        let first =
            match tokio::time::timeout(FIRST_MESSAGE_WAIT, read_frame(&mut local, MAX_FIRST_FRAME))
                .await
            {
                Ok(Ok(first)) => first,
                Ok(Err(FrameError::Closed)) => {
                    info!("uid {uid} (connection {id}) closed before its first message");
                    return;
                }
                Ok(Err(e)) => {
                    warn!("uid {uid} (connection {id}): closed: its first message {e}");
                    return;
                }
                Err(_) => {
                    info!(
                        "uid {uid} (connection {id}) sent nothing for {} s: closed",
                        FIRST_MESSAGE_WAIT.as_secs()
                    );
                    return;
                }
            };
        let upstream = &self.upstream;
        let tell = |why: String| {
            warn!("uid {uid} (connection {id}): the server at {upstream}: {why}; told the client");
            format!("srv-secrets relay: {upstream}: {why}")
        };
        let mut server = match self.connect().await {
            Ok(server) => server,
            Err(why) => {
                let _ = answer(&mut local, first.tag, &tell(why)).await;
                return;
            }
        };
        // The first exchange: a failure here is still the client's to be told.
        let reply = async {
            server.write_all(&first.bytes).await?;
            server.flush().await?;
            match tokio::time::timeout(
                self.connect_timeout,
                read_frame(&mut server, MAX_FIRST_FRAME),
            )
            .await
            {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(FrameError::Io(e))) => Err(e),
                Ok(Err(FrameError::Closed)) => Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Err(e)) => Err(io::Error::other(format!("its first answer {e}"))),
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "the server did not answer within {} s",
                        self.connect_timeout.as_secs()
                    ),
                )),
            }
        }
        .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                let why = match tls::Failure::of(&e) {
                    Some(tls::Failure::Closed) => "the server closed the connection before \
                                                   answering (at its limit of connections for \
                                                   this certificate, or stopping: see its log)"
                        .to_string(),
                    Some(failure) => failure.to_string(),
                    None => e.to_string(),
                };
                let _ = answer(&mut local, first.tag, &tell(why)).await;
                return;
            }
        };
        if let Err(e) = async {
            local.write_all(&reply.bytes).await?;
            local.flush().await
        }
        .await
        {
            info!("uid {uid} (connection {id}) closed: {e}");
            return;
        }
        drop((first, reply));
        match pump(local, server).await {
            Ended::ClientClosed => info!("uid {uid} (connection {id}) closed"),
            Ended::ClientFailed(e) => info!("uid {uid} (connection {id}) closed: {e}"),
            Ended::ServerClosed => warn!(
                "uid {uid} (connection {id}): the server at {} closed the connection; closed \
                 the client's",
                self.upstream
            ),
            Ended::ServerFailed(e) => warn!(
                "uid {uid} (connection {id}): the connection to the server at {} failed: {}; \
                 closed the client's",
                self.upstream,
                tls::Failure::of(&e).map_or_else(|| e.to_string(), |f| f.to_string())
            ),
        }
    }

    /// Tries the server once, at start, and says in the log whether it takes the
    /// certificate: an operator learns of a wrong CA, a revoked certificate or a missing
    /// service now rather than from the first mount. Nothing depends on it.
    async fn probe(&self) {
        let service = self.service();
        let attach = ninep::Tframe {
            tag: 1,
            msg: ninep::Tmessage::Attach(ninep::Tattach {
                fid: 0,
                afid: ninep::NOFID,
                uname: "srv-secrets-relay".into(),
                aname: String::new(),
            }),
        };
        let version = ninep::Tframe {
            tag: ninep::NOTAG,
            msg: ninep::Tmessage::Version(ninep::Tversion {
                msize: MAX_FIRST_FRAME as u32,
                version: ninep::VERSION_9P2000.into(),
            }),
        };
        let result = async {
            let mut server = self.connect().await?;
            let mut answers = Vec::new();
            for message in [version, attach] {
                let said = async {
                    server.write_all(&message.to_bytes()).await?;
                    server.flush().await?;
                    match read_frame(&mut server, MAX_FIRST_FRAME).await {
                        Ok(frame) => Ok(frame),
                        Err(FrameError::Io(e)) => Err(e),
                        Err(FrameError::Closed) => Err(io::ErrorKind::UnexpectedEof.into()),
                        Err(e) => Err(io::Error::other(e.to_string())),
                    }
                };
                let frame = tokio::time::timeout(self.connect_timeout, said)
                    .await
                    .map_err(|_| "the server does not answer".to_string())?
                    .map_err(|e| {
                        tls::Failure::of(&e).map_or_else(|| e.to_string(), |f| f.to_string())
                    })?;
                answers.push(Rframe::decode(&frame.bytes).map_err(|e| e.to_string())?);
            }
            let _ = server.shutdown().await;
            Ok::<_, String>(answers)
        }
        .await;
        match result.as_deref() {
            Ok(
                [
                    _,
                    Rframe {
                        msg: Rmessage::Attach(_),
                        ..
                    },
                ],
            ) => info!(
                "the server at {} takes this certificate: service {service}",
                self.upstream
            ),
            Ok(
                [
                    _,
                    Rframe {
                        msg: Rmessage::Error(e),
                        ..
                    },
                ],
            ) => warn!(
                "the server at {} refuses service {service}'s attach now ({}): does it have a \
                 service {service}? Local clients will be told the same",
                self.upstream, e.ename
            ),
            Ok(_) => warn!("the server at {} answers oddly", self.upstream),
            Err(why) => warn!(
                "the server at {} cannot be used now: {why}; each local connection will try \
                 again",
                self.upstream
            ),
        }
    }
}

/// A TLS connection to the server.
type Upstreamed = tls::tokio_rustls::client::TlsStream<TcpStream>;

/// One try to connect upstream failed: to be tried again, or not.
enum Try {
    Again(String),
    Final(String),
}

/// Keepalive and a user timeout on the upstream socket, so that a server whose host or
/// network went away is noticed within about a minute, whether the connection is idle
/// (keepalive) or has requests on the way (the user timeout).
fn keep_alive(tcp: &TcpStream) -> io::Result<()> {
    use rustix::net::sockopt;
    sockopt::set_socket_keepalive(tcp, true)?;
    sockopt::set_tcp_keepidle(tcp, KEEPALIVE_IDLE)?;
    sockopt::set_tcp_keepintvl(tcp, KEEPALIVE_INTERVAL)?;
    sockopt::set_tcp_keepcnt(tcp, KEEPALIVE_PROBES)?;
    sockopt::set_tcp_user_timeout(tcp, USER_TIMEOUT_MS)?;
    Ok(())
}

/// A whole 9P frame, read before anything is forwarded.
struct Frame {
    tag: u16,
    bytes: Zeroizing<Vec<u8>>,
}

/// Why a frame could not be read.
#[derive(Debug)]
enum FrameError {
    /// The other end closed before the frame began.
    Closed,
    /// It is not a 9P frame, or is larger than the relay reads.
    Bad(String),
    /// Reading failed, or the stream ended inside the frame.
    Io(io::Error),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Closed => f.write_str("was never sent"),
            FrameError::Bad(why) => write!(f, "is not 9P: {why}"),
            FrameError::Io(e) => write!(f, "could not be read: {e}"),
        }
    }
}

/// Reads one frame of at most `max` bytes.
async fn read_frame<R: AsyncRead + Unpin>(r: &mut R, max: usize) -> Result<Frame, FrameError> {
    let mut head = [0u8; HEADER_SIZE];
    let mut got = 0;
    while got < HEADER_SIZE {
        match r.read(&mut head[got..]).await.map_err(FrameError::Io)? {
            0 if got == 0 => return Err(FrameError::Closed),
            0 => return Err(FrameError::Io(io::ErrorKind::UnexpectedEof.into())),
            n => got += n,
        }
    }
    let header = FrameHeader::parse(&head).map_err(|e| FrameError::Bad(e.to_string()))?;
    let size = header.size as usize;
    if size > max {
        return Err(FrameError::Bad(format!(
            "a first message of {size} bytes (the relay reads at most {max})"
        )));
    }
    let mut bytes = Zeroizing::new(vec![0u8; size]);
    bytes[..HEADER_SIZE].copy_from_slice(&head);
    r.read_exact(&mut bytes[HEADER_SIZE..])
        .await
        .map_err(FrameError::Io)?;
    Ok(Frame {
        tag: header.tag,
        bytes,
    })
}

/// Sends an Rerror of `ename` for `tag`.
async fn answer<W: AsyncWrite + Unpin>(w: &mut W, tag: u16, ename: &str) -> io::Result<()> {
    let frame = Rframe {
        tag,
        msg: Rmessage::error(ename),
    };
    w.write_all(&frame.to_bytes()).await?;
    w.flush().await
}

/// How a relayed connection ended.
#[derive(Debug)]
enum Ended {
    ClientClosed,
    ClientFailed(io::Error),
    ServerClosed,
    ServerFailed(io::Error),
}

/// Which end of a copy failed.
enum Side {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` to `to` until `from` ends, flushing after each piece: 9P is requests
/// and replies, and each must go on at once, not wait in a TLS buffer.
async fn copy<R, W>(from: &mut R, to: &mut W) -> Result<(), Side>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = Zeroizing::new(vec![0u8; BUFFER]);
    loop {
        let n = from.read(&mut buf).await.map_err(Side::Read)?;
        if n == 0 {
            return Ok(());
        }
        to.write_all(&buf[..n]).await.map_err(Side::Write)?;
        to.flush().await.map_err(Side::Write)?;
    }
}

/// Copies both ways until either ends; the other is then closed, so that a client never
/// waits on a server that is gone.
async fn pump<L, S>(local: L, server: S) -> Ended
where
    L: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut local_r, mut local_w) = tokio::io::split(local);
    let (mut server_r, mut server_w) = tokio::io::split(server);
    let ended = tokio::select! {
        r = copy(&mut local_r, &mut server_w) => match r {
            Ok(()) => Ended::ClientClosed,
            Err(Side::Read(e)) => Ended::ClientFailed(e),
            Err(Side::Write(e)) => Ended::ServerFailed(e),
        },
        r = copy(&mut server_r, &mut local_w) => match r {
            Ok(()) => Ended::ServerClosed,
            Err(Side::Read(e)) => Ended::ServerFailed(e),
            Err(Side::Write(e)) => Ended::ClientFailed(e),
        },
    };
    if matches!(ended, Ended::ClientClosed) {
        // A TLS close, so that the server sees a client that left, not a failure.
        let _ = tokio::time::timeout(Duration::from_secs(1), server_w.shutdown()).await;
    }
    ended
}

/// Binds the relay's socket (see [`SocketAccess`]), replacing a stale one; refused when
/// something listens there, or the path is not a socket.
async fn bind(relay: &Relay) -> Result<UnixListener, String> {
    let path = &relay.socket;
    let failed = |e: io::Error| format!("cannot listen on unix:{}: {e}", path.display());
    crate::serve::prepare_socket_dir(path, crate::paths::euid()).map_err(failed)?;
    let listener = ninep::server::bind_unix(path).await.map_err(|e| {
        if e.kind() == io::ErrorKind::AddrInUse {
            format!(
                "--listen unix:{}: something already listens there (another relay?): stop it, \
                 or give another path",
                path.display()
            )
        } else {
            failed(e)
        }
    })?;
    // As serve's bind_socket: the directory is the relay's alone, so the path still names
    // what bind made; checked all the same before it is handed to anyone.
    let meta = std::fs::symlink_metadata(path).map_err(failed)?;
    if !meta.file_type().is_socket() {
        return Err(failed(io::Error::other("replaced while binding it")));
    }
    let mode = match relay.access {
        SocketAccess::Owner => 0o600,
        SocketAccess::OwnedBy(uid) => {
            std::os::unix::fs::chown(path, Some(uid), None).map_err(failed)?;
            0o600
        }
        SocketAccess::Everyone => 0o666,
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(failed)?;
    Ok(listener)
}

/// `srv-secrets relay`: serves until SIGTERM or SIGINT, then removes its socket.
///
/// # Errors
/// What stopped it from starting, in terms of its flags.
pub async fn run(relay: Relay) -> Result<(), String> {
    use tokio::signal::unix::{SignalKind, signal};
    crate::serve::harden_process();
    let caught = |e: io::Error| format!("cannot catch signals: {e}");
    let mut term = signal(SignalKind::terminate()).map_err(caught)?;
    let mut int = signal(SignalKind::interrupt()).map_err(caught)?;
    let mut hup = signal(SignalKind::hangup()).map_err(caught)?;
    let listener = bind(&relay).await?;
    let relay = Arc::new(relay);
    let allowed: BTreeSet<u32> = relay.gate.shares.keys().copied().collect();
    eprintln!(
        "srv-secrets relay: listening on unix:{} for uids {}, as service {} of the server at {}",
        relay.socket.display(),
        allowed
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", "),
        relay.service(),
        relay.upstream
    );
    eprintln!(
        "  mount (as root): mount -t 9p -o trans=unix,version=9p2000,dfltuid=UID,dfltgid=GID,cache=none {} /mnt/{}",
        relay.socket.display(),
        relay.service()
    );
    if relay.access == SocketAccess::Everyone {
        info!(
            "the socket is mode 0666, since several uids may use it: the relay lets in only \
             the uids allowed"
        );
    }
    {
        let relay = relay.clone();
        tokio::spawn(async move { relay.probe().await });
    }
    let stopped = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = int.recv() => break "SIGINT",
            _ = hup.recv() => relay.reload(),
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => relay.accept(stream),
                Err(e) => {
                    // Out of descriptors, say: pause rather than spin.
                    warn!("cannot accept a connection: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    };
    drop(listener);
    let _ = std::fs::remove_file(&relay.socket);
    info!("{stopped}: stopped; removed {}", relay.socket.display());
    Ok(())
}

/// `srv-secrets relay ARGS`, on a runtime of its own.
///
/// # Errors
/// As [`Relay::new`] and [`run`].
pub fn main(args: RelayArgs) -> Result<(), String> {
    let relay = Relay::new(args)?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?
        .block_on(run(relay))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    #[test]
    fn connect_takes_a_tls_host_and_port() {
        let u = parse_connect("tls:secrets.example:5640").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("secrets.example", 5640));
        assert_eq!(u.to_string(), "tls:secrets.example:5640");
        let u = parse_connect("tls:[::1]:1").unwrap();
        assert_eq!(u.to_string(), "tls:[::1]:1");
        assert_eq!(
            parse_connect("tls:10.0.0.5:5640").unwrap().to_string(),
            "tls:10.0.0.5:5640"
        );
        for bad in [
            "tls:",
            "tls:host",
            "tls:host:0",
            "tls::5640",
            "tls:::1:5640",
            "tls:[nope]:1",
            "tls:host:port",
            "tls:a b:1",
        ] {
            let e = parse_connect(bad).unwrap_err();
            assert!(
                e.starts_with(&format!("--connect {bad}: give tls:HOST:PORT")),
                "{e}"
            );
        }
        for other in ["unix:/run/s.sock", "/run/s.sock", "tcp:127.0.0.1:1"] {
            let e = parse_connect(other).unwrap_err();
            assert!(e.contains("over TLS only"), "{e}");
        }
    }

    #[test]
    fn the_socket_is_private_where_the_allowed_uids_allow() {
        let set = |uids: &[u32]| uids.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(socket_access(&set(&[1001]), 1001), SocketAccess::Owner);
        assert_eq!(socket_access(&set(&[0, 1001]), 1001), SocketAccess::Owner);
        assert_eq!(socket_access(&set(&[0]), 0), SocketAccess::Owner);
        assert_eq!(
            socket_access(&set(&[0, 1001]), 0),
            SocketAccess::OwnedBy(1001)
        );
        assert_eq!(
            socket_access(&set(&[1001, 1002]), 0),
            SocketAccess::Everyone
        );
        assert_eq!(socket_access(&set(&[1002]), 1001), SocketAccess::Everyone);
    }

    #[test]
    fn each_allowed_uid_has_a_share_of_its_own() {
        let allowed: BTreeSet<u32> = [0, 1001].into_iter().collect();
        let gate = Gate::new(&allowed, 5).unwrap();
        assert_eq!(gate.share, 2);
        let held: Vec<_> = (0..2)
            .map(|_| match gate.admit(1001) {
                Admission::Admitted(p) => p,
                _ => panic!("a share of 2"),
            })
            .collect();
        assert!(matches!(gate.admit(1001), Admission::Full));
        // The other uid's share is untouched.
        assert!(matches!(gate.admit(0), Admission::Admitted(_)));
        assert!(matches!(gate.admit(1002), Admission::NotAllowed));
        drop(held);
        assert!(matches!(gate.admit(1001), Admission::Admitted(_)));
        let e = Gate::new(&allowed, 1).err().unwrap();
        assert!(e.contains("fewer than the 2 uids allowed"), "{e}");
    }

    fn version_frame(tag: u16) -> Vec<u8> {
        ninep::Tframe {
            tag,
            msg: ninep::Tmessage::Version(ninep::Tversion {
                msize: 8192,
                version: "9P2000".into(),
            }),
        }
        .to_bytes()
    }

    #[tokio::test]
    async fn a_first_frame_is_read_whole_and_bounded() {
        let bytes = version_frame(7);
        let frame = read_frame(&mut bytes.as_slice(), MAX_FIRST_FRAME)
            .await
            .unwrap();
        assert_eq!((frame.tag, frame.bytes.as_slice()), (7, bytes.as_slice()));
        assert!(matches!(
            read_frame(&mut [].as_slice(), MAX_FIRST_FRAME).await,
            Err(FrameError::Closed)
        ));
        assert!(matches!(
            read_frame(&mut &bytes[..10], MAX_FIRST_FRAME).await,
            Err(FrameError::Io(_))
        ));
        let mut huge = bytes.clone();
        huge[..4].copy_from_slice(&(1u32 << 20).to_le_bytes());
        let e = read_frame(&mut huge.as_slice(), MAX_FIRST_FRAME)
            .await
            .err()
            .unwrap();
        assert!(
            e.to_string().contains("the relay reads at most 8192"),
            "{e}"
        );
        let tiny = [3u8, 0, 0, 0, 100, 0, 0];
        assert!(matches!(
            read_frame(&mut tiny.as_slice(), MAX_FIRST_FRAME).await,
            Err(FrameError::Bad(_))
        ));
    }

    #[tokio::test]
    async fn an_answer_is_an_rerror_of_the_tag() {
        let mut out = Vec::new();
        answer(&mut out, 7, "permission denied").await.unwrap();
        assert_eq!(
            Rframe::decode(&out).unwrap(),
            Rframe {
                tag: 7,
                msg: Rmessage::error("permission denied")
            }
        );
    }

    #[tokio::test]
    async fn when_the_server_goes_the_client_is_closed() {
        let (client, relay_local) = tokio::io::duplex(64);
        let (relay_server, server) = tokio::io::duplex(64);
        let pumping = tokio::spawn(pump(relay_local, relay_server));
        let (mut client_r, mut client_w) = tokio::io::split(client);
        let (mut server_r, mut server_w) = tokio::io::split(server);
        client_w.write_all(b"request").await.unwrap();
        let mut got = [0u8; 7];
        server_r.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"request");
        server_w.write_all(b"reply").await.unwrap();
        drop((server_r, server_w));
        let mut all = Vec::new();
        // What the server said before it went arrives; then the end, not a wait.
        tokio::time::timeout(Duration::from_secs(5), client_r.read_to_end(&mut all))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(all, b"reply");
        assert!(matches!(pumping.await.unwrap(), Ended::ServerClosed));
    }
}
