//! Running the server: the vault opened, the process hardened, the listeners bound
//! (unix sockets in a directory nobody else can change, TLS, plain TCP), SIGHUP's reload
//! of the TLS material, and a clean stop on SIGTERM.

use std::fmt;
use std::fs;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ninep::server::{Limits, Server, Shutdown, bind_unix};
use secrets::Vault;
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tracing::{info, warn};

use crate::fs::SecretsFs;
use crate::listen::Listen;
use crate::tls_listener::TlsServer;

/// A listener, bound.
pub enum Bound {
    /// A unix socket, removed when the server stops.
    Unix {
        /// Its path.
        path: PathBuf,
        /// The socket.
        listener: UnixListener,
    },
    /// TLS on TCP, with the material its handshakes use.
    Tls {
        /// The socket.
        listener: TcpListener,
        /// The certificates.
        tls: Arc<TlsServer>,
    },
    /// Plain TCP (`--insecure-plain-tcp`, loopback only).
    Tcp {
        /// The socket.
        listener: TcpListener,
    },
}

/// A connection accepted by a [`Bound`], before anything is read from it.
pub enum Accepted {
    /// On a unix socket.
    Unix(UnixStream),
    /// On a TLS listener, its handshake still to do.
    Tls(TcpStream, SocketAddr, Arc<TlsServer>),
    /// On plain TCP.
    Tcp(TcpStream, SocketAddr),
}

impl Bound {
    /// The next connection.
    ///
    /// # Errors
    /// accept(2)'s.
    pub async fn accept(&self) -> io::Result<Accepted> {
        match self {
            Bound::Unix { listener, .. } => Ok(Accepted::Unix(listener.accept().await?.0)),
            Bound::Tls { listener, tls } => {
                let (stream, addr) = listener.accept().await?;
                Ok(Accepted::Tls(stream, addr, tls.clone()))
            }
            Bound::Tcp { listener } => {
                let (stream, addr) = listener.accept().await?;
                Ok(Accepted::Tcp(stream, addr))
            }
        }
    }
}

impl fmt::Display for Bound {
    /// The address as it was bound: a TLS or TCP listener's port, even if 0 was asked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let local = |l: &TcpListener| {
            l.local_addr()
                .map_or_else(|_| "?".to_string(), |a| a.to_string())
        };
        match self {
            Bound::Unix { path, .. } => write!(f, "unix:{}", path.display()),
            Bound::Tls { listener, .. } => write!(f, "tls:{}", local(listener)),
            Bound::Tcp { listener } => write!(f, "tcp:{}", local(listener)),
        }
    }
}

/// Binds `listen`: for a unix socket, call [`prepare_socket_dir`] first; a TLS listener
/// needs `tls`.
///
/// # Errors
/// What failed, naming the address.
pub async fn bind(listen: &Listen, tls: Option<&Arc<TlsServer>>) -> Result<Bound, String> {
    let failed = |e: io::Error| format!("cannot listen on {listen}: {e}");
    match listen {
        Listen::Unix(path) => Ok(Bound::Unix {
            path: path.clone(),
            listener: bind_socket(path).await.map_err(failed)?,
        }),
        Listen::Tls(addr) => {
            let tls = tls
                .ok_or_else(|| format!("cannot listen on {listen}: no TLS certificates"))?
                .clone();
            Ok(Bound::Tls {
                listener: TcpListener::bind(addr).await.map_err(failed)?,
                tls,
            })
        }
        Listen::Tcp(addr) => Ok(Bound::Tcp {
            listener: TcpListener::bind(addr).await.map_err(failed)?,
        }),
    }
}

/// Keeps secrets out of core dumps and away from ptrace by other users: a process that
/// is not dumpable writes no core file, and its memory cannot be read through /proc.
/// (Keys are also kept out of swap: [`report_key_memory`].)
pub fn harden_process() {
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        warn!(error = %e, "could not disable core dumps (PR_SET_DUMPABLE)");
    }
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Core, none) {
        warn!(error = %e, "could not set RLIMIT_CORE to 0");
    }
}

/// Says in the log whether the keys the vault holds are locked in RAM (they are kept in
/// pages of their own, locked with mlock where RLIMIT_MEMLOCK allows: [`memlock`]), and if
/// not, why and what the operator raises. Call it once the vault is open.
pub fn report_key_memory() {
    let status = memlock::status();
    match (status.unlocked_bytes, status.last_failure) {
        (0, _) => info!(
            locked_bytes = status.locked_bytes,
            "key memory locked in RAM: the keys are never written to swap"
        ),
        (unlocked, failure) => {
            let why = failure.map_or_else(|| "unknown".to_string(), |f| f.to_string());
            warn!(
                locked_bytes = status.locked_bytes,
                unlocked_bytes = unlocked,
                "{unlocked} bytes of key memory are not locked in RAM, so keys may be \
                 written to swap: {why}"
            );
        }
    }
}

/// Descriptors the server needs beyond its connections: the store, key and lock files,
/// listeners, backups being read, the runtime's own.
const SPARE_DESCRIPTORS: u64 = 64;

/// Raises the soft limit on open files to the hard one, and, if even that cannot hold
/// every connection the limits allow, lowers the principals' cap so that it can: past the
/// descriptor limit, accept(2) fails for everyone, root included, and the promise that the
/// admin and services always find a slot would not hold. `others` are the descriptors the
/// server's other connections may hold at once (the HTTP API's). Says so in the log.
pub fn fit_to_descriptors(mut limits: Limits, others: u64) -> Limits {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut nofile = getrlimit(Resource::Nofile);
    if nofile.current != nofile.maximum {
        let raised = rustix::process::Rlimit {
            current: nofile.maximum,
            maximum: nofile.maximum,
        };
        match setrlimit(Resource::Nofile, raised) {
            Ok(()) => nofile = getrlimit(Resource::Nofile),
            Err(e) => warn!(error = %e, "could not raise the open-files limit to its hard limit"),
        }
    }
    let Some(have) = nofile.current else {
        return limits;
    };
    // The connections not counted in the principals' cap.
    let apart = (limits.max_stranger_connections + limits.max_handshakes) as u64 + others;
    let wanted = limits.max_connections as u64 + apart + SPARE_DESCRIPTORS;
    if have < wanted {
        let fits = have.saturating_sub(apart + SPARE_DESCRIPTORS).max(1) as usize;
        warn!(
            open_files = have,
            wanted,
            max_connections = fits,
            "the open-files limit cannot hold every connection allowed; serving fewer \
             (raise LimitNOFILE, or ulimit -n, to at least the wanted number)"
        );
        limits.max_connections = fits;
    }
    limits
}

/// Makes sure that `path`'s directory is one that only this server's user (and root) can
/// change, and that so is the way to it, making the directory (0755) if it is missing.
///
/// Whoever can write the socket's directory can rename the socket away and listen in its
/// place, and then `deploy` hands its values to them: `/tmp/srv-secrets-UID`, the default
/// for a user without `XDG_RUNTIME_DIR`, can be made by anyone before the server first
/// starts. So an existing directory must be a real directory (not a symlink), owned by
/// `euid` or root (systemd's `RuntimeDirectory=` makes `/run/srv-secrets` owned by the
/// service's user), and writable by neither group nor others.
///
/// Whoever can write a directory above it can rename the whole socket directory away and
/// put one of their own there, with a socket that kernel and 9pfuse clients, which cannot
/// ask who serves it, would mount. So every directory on the way, as written and as
/// resolved, must be owned by root or `euid` and writable by no one else, except that a
/// sticky one (like `/tmp`, mode 1777) will do: others may add entries to it but not
/// rename or remove ours, and every entry on the way is ours or root's.
///
/// # Errors
/// An [`io::Error`] whose text says what is wrong with the directory and what to do.
pub fn prepare_socket_dir(path: &Path, euid: u32) -> io::Result<()> {
    let dir = socket_dir(path);
    // The way there first: a directory made under one that others can change could be
    // swapped for theirs at once.
    if let Some(parent) = dir.parent() {
        check_ancestors(dir, parent, euid)?;
    }
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(dir)
    {
        Ok(()) => {}
        // Something that is not a directory (a file, a dangling symlink): the check
        // below says what.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    check_socket_dir(dir, euid)?;
    // Again, now that the directory exists and its path resolves in full.
    if let Some(parent) = dir.parent() {
        check_ancestors(dir, parent, euid)?;
    }
    Ok(())
}

/// The directory a socket path is in; `.` for a bare file name.
fn socket_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

/// A directory to suggest listening in instead of `dir`: the default one for `euid`.
fn elsewhere(dir: &Path) -> String {
    let default = crate::paths::default_socket();
    match default.parent() {
        Some(d) if d != dir => format!(", such as {}", d.display()),
        _ => String::new(),
    }
}

/// Refuses a socket directory that anyone but `euid` and root could change.
fn check_socket_dir(dir: &Path, euid: u32) -> io::Result<()> {
    let refuse = |problem: String, fix: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the socket's directory {} {problem}, and whoever can change it can put their \
                 own socket in its place: {fix}",
                dir.display()
            ),
        ))
    };
    let meta = fs::symlink_metadata(dir)?;
    if meta.file_type().is_symlink() {
        return refuse(
            "is a symbolic link".into(),
            format!("listen in a real directory that only uid {euid} can write"),
        );
    }
    if !meta.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} is not a directory: remove it, or listen elsewhere",
                dir.display()
            ),
        ));
    }
    let owner = meta.uid();
    if owner != euid && owner != 0 {
        return refuse(
            format!("belongs to uid {owner}, not to this server's uid {euid}"),
            format!("remove it (as root or uid {owner}) and start again, or listen elsewhere"),
        );
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        let private = format!(
            "listen in a directory that only uid {euid} can write{}",
            elsewhere(dir)
        );
        // A directory of our own that we opened by mistake may be closed again; a shared
        // one (/tmp, or root's when we are not root) is shared on purpose.
        let fix = if owner == euid && mode & 0o1000 == 0 {
            format!("run `chmod go-w {}`, or {private}", dir.display())
        } else {
            private
        };
        return refuse(
            format!("has mode {mode:o}, writable by group or others"),
            fix,
        );
    }
    Ok(())
}

/// Refuses a socket directory `dir` whose way there, `parent` and up, others could change:
/// see [`prepare_socket_dir`]. Checks the path as written (where a symbolic link must be
/// root's or `euid`'s, whatever its mode) and, once it resolves, as resolved. A part of
/// the path not made yet is left to the caller, which makes it and checks again.
fn check_ancestors(dir: &Path, parent: &Path, euid: u32) -> io::Result<()> {
    let parent = if parent.as_os_str().is_empty() {
        Path::new(".")
    } else {
        parent
    };
    let written = std::path::absolute(parent)?;
    let mut walks = vec![written];
    if let Ok(resolved) = fs::canonicalize(parent) {
        walks.push(resolved);
    }
    for walk in walks {
        for ancestor in walk.ancestors() {
            let meta = match fs::symlink_metadata(ancestor) {
                Ok(meta) => meta,
                // Not made yet: `dir`'s creation makes it 0755 and ours.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if let Some(problem) = unsafe_ancestor(&meta, euid) {
                return Err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "the socket's directory {} is under {}, which {problem}, and whoever \
                         can change it can put their own directory and socket in place of \
                         {}: listen in a directory whose parents only root or uid {euid} can \
                         change{}",
                        dir.display(),
                        ancestor.display(),
                        dir.display(),
                        elsewhere(dir)
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// What makes a directory on the way to the socket unsafe, if anything.
fn unsafe_ancestor(meta: &fs::Metadata, euid: u32) -> Option<String> {
    let owner = meta.uid();
    if owner != euid && owner != 0 {
        return Some(format!(
            "belongs to uid {owner}, neither root nor this server's uid {euid}"
        ));
    }
    // A symbolic link's own mode means nothing; what it names is on the resolved walk.
    if meta.file_type().is_symlink() {
        return None;
    }
    let mode = meta.mode() & 0o7777;
    // Sticky: others may add entries, but not rename or remove the entry below, which
    // is itself checked to be root's or ours.
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Some(format!(
            "has mode {mode:o}, writable by group or others and not sticky"
        ));
    }
    None
}

/// Binds the socket (mode 0666: who may do what is decided by identity, not by file
/// mode), replacing a stale socket that a server which is no longer running left behind.
/// Anything there that is not a socket is left alone and refused.
///
/// Call [`prepare_socket_dir`] first: this relies on nobody else being able to change the
/// directory.
pub async fn bind_socket(path: &Path) -> io::Result<tokio::net::UnixListener> {
    let is_socket = |m: &fs::Metadata| m.file_type().is_socket();
    match fs::symlink_metadata(path) {
        Ok(m) if !is_socket(&m) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!(
                    "{} exists and is not a socket; remove it, or listen elsewhere",
                    path.display()
                ),
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = bind_unix(path).await?;
    // chmod(2) follows symlinks, and there is no chmod of a socket's file through its
    // descriptor. Changing it by path is safe here: prepare_socket_dir made sure that
    // nobody but this user and root can write the directory, so what bind just made is
    // still what the path names. Checked all the same, before the mode is widened.
    if !is_socket(&fs::symlink_metadata(path)?) {
        return Err(io::Error::other(format!(
            "{} was replaced while binding it",
            path.display()
        )));
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// How often the server makes durable what time has ended (`Vault::expire`): pending
/// versions past their hour, grants past their end. Reads refuse them to the second
/// regardless; this only cleans the store (and will date the audit's records of it).
const HOUSEKEEPING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs [`Vault::expire`] every [`HOUSEKEEPING_INTERVAL`] on the blocking pool, until
/// shutdown. A failure is logged, and the next tick tries again.
async fn housekeeping(vault: Arc<Vault>, mut shutdown: Shutdown) -> io::Result<()> {
    let mut tick = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.wait() => return Ok(()),
            _ = tick.tick() => {}
        }
        let vault = vault.clone();
        match tokio::task::spawn_blocking(move || vault.expire()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not remove what ended by itself; trying again"),
            Err(e) => warn!(error = %e, "the housekeeping task failed; trying again"),
        }
    }
}

/// The signals the server acts on, caught from before its listeners are bound: a SIGTERM
/// that comes as soon as a socket answers must stop the server cleanly, not kill it.
pub struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Catches SIGTERM, SIGINT and SIGHUP from now on. SIGHUP never ends the server,
    /// whether or not it has anything to reload (systemd's ExecReload sends it).
    ///
    /// # Errors
    /// If a handler cannot be installed.
    pub fn catch() -> io::Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// Serves `vault` over 9P on `nine_p`, and the HTTP API on `http`, until SIGTERM or
/// SIGINT, reloading `tls` on SIGHUP, then finishes the requests in flight, records the
/// opens still queued for the audit trail, and returns.
pub async fn serve(
    vault: Arc<Vault>,
    nine_p: Vec<Bound>,
    http: Vec<Bound>,
    tls: Option<Arc<TlsServer>>,
    signals: Signals,
) -> io::Result<()> {
    let flusher = secrets::OpenFlusher::start(vault.clone())?;
    let served = serve_until_stopped(vault, nine_p, http, tls, signals).await;
    // The last opens, from the requests just finished; a commit, so off the workers.
    match tokio::task::spawn_blocking(move || flusher.stop()).await {
        Ok(()) => info!("recorded the opens still queued for the audit trail"),
        Err(e) => warn!(error = %e, "the audit's last flush failed"),
    }
    served
}

/// [`serve`], but for the audit's flusher.
async fn serve_until_stopped(
    vault: Arc<Vault>,
    nine_p: Vec<Bound>,
    http: Vec<Bound>,
    tls: Option<Arc<TlsServer>>,
    mut signals: Signals,
) -> io::Result<()> {
    let server = Server::new(
        SecretsFs::new(vault.clone()),
        fit_to_descriptors(
            Limits::default(),
            (http.len() * crate::http::MAX_CONNECTIONS) as u64,
        ),
    );
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    let stats = {
        let server = server.clone();
        Arc::new(move || server.stats())
    };
    for bound in http {
        let api = crate::http::Api::new(vault.clone(), stats.clone());
        let shutdown: Shutdown = shutdown.clone();
        tasks.spawn(async move {
            let path = match &bound {
                Bound::Unix { path, .. } => Some(path.clone()),
                _ => None,
            };
            let r = crate::http::serve(api, bound, shutdown).await;
            if let Some(path) = path {
                let _ = fs::remove_file(&path);
            }
            r
        });
    }
    for bound in nine_p {
        let server = server.clone();
        let shutdown: Shutdown = shutdown.clone();
        tasks.spawn(serve_9p(server, bound, shutdown));
    }
    tasks.spawn(housekeeping(vault.clone(), shutdown.clone()));
    loop {
        tokio::select! {
            _ = signals.term.recv() => {
                info!("SIGTERM: finishing requests in flight");
                break;
            }
            _ = signals.int.recv() => {
                info!("SIGINT: finishing requests in flight");
                break;
            }
            _ = signals.hup.recv() => reload(tls.as_deref()),
            Some(r) = tasks.join_next() => {
                // A listener ended on its own: that is an error worth stopping for.
                trigger.trigger();
                while tasks.join_next().await.is_some() {}
                return match r {
                    Ok(r) => r,
                    Err(e) => Err(io::Error::other(e)),
                };
            }
        }
    }
    trigger.trigger();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            warn!(error = %e, "listener ended with an error");
        }
    }
    info!("stopped");
    Ok(())
}

/// Serves 9P on one listener until `shutdown`.
async fn serve_9p(server: Server<SecretsFs>, bound: Bound, shutdown: Shutdown) -> io::Result<()> {
    if let Bound::Tcp { .. } = bound {
        warn!(addr = %bound, "serving 9P over plain TCP (--insecure-plain-tcp): tokens only, for tests");
    }
    match bound {
        Bound::Unix { path, listener } => {
            let r = server.serve_unix(listener, shutdown).await;
            let _ = fs::remove_file(&path);
            r
        }
        Bound::Tcp { listener } => server.serve_tcp(listener, shutdown).await,
        Bound::Tls { listener, tls } => {
            server
                .serve_handshaking(shutdown, || {
                    let tls = tls.clone();
                    let listener = &listener;
                    async move {
                        let (tcp, addr) = listener.accept().await?;
                        Ok((tls.handshake(tcp, addr), format!("tls:{addr}")))
                    }
                })
                .await
        }
    }
}

/// SIGHUP: the TLS listeners' certificates, client CA and CRLs loaded again; on failure
/// the ones in use are kept. Connections open go on either way.
fn reload(tls: Option<&TlsServer>) {
    match tls {
        None => info!("SIGHUP: nothing to reload (no TLS listener)"),
        Some(tls) => match tls.reload() {
            Ok(()) => info!("SIGHUP: reloaded the TLS material; new connections use it"),
            Err(e) => warn!("SIGHUP: keeping the TLS material in use, the new one is refused: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::os::unix::fs::symlink;

    use super::*;

    fn me() -> u32 {
        crate::paths::euid()
    }

    fn chmod(p: &Path, mode: u32) {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn refused(r: io::Result<()>, says: &str) {
        let e = r.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }

    #[test]
    fn connections_fit_in_the_open_files_limit() {
        // Under a soft limit below what the connections need, with a hard limit above:
        // the soft one is raised. Run in a child, so that this process keeps its limits.
        let wanted = Limits::default().max_connections as u64
            + Limits::default().max_stranger_connections as u64
            + Limits::default().max_handshakes as u64
            + SPARE_DESCRIPTORS;
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        if limit.maximum.is_some_and(|m| m >= wanted) {
            let low = rustix::process::Rlimit {
                current: Some(256),
                maximum: limit.maximum,
            };
            rustix::process::setrlimit(rustix::process::Resource::Nofile, low).unwrap();
            let fitted = fit_to_descriptors(Limits::default(), 0);
            assert_eq!(fitted.max_connections, Limits::default().max_connections);
            let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
            assert_eq!(now.current, limit.maximum);
        }
        // With the hard limit itself too low, the principals' cap comes down to fit.
        let tight = rustix::process::Rlimit {
            current: Some(512),
            maximum: Some(512),
        };
        if rustix::process::setrlimit(rustix::process::Resource::Nofile, tight).is_ok() {
            let fitted = fit_to_descriptors(Limits::default(), 0);
            let apart = (fitted.max_stranger_connections + fitted.max_handshakes) as u64;
            assert_eq!(
                fitted.max_connections as u64,
                512 - apart - SPARE_DESCRIPTORS
            );
            // Root may raise it back (tests run as root); others keep the lower limit.
            let _ = rustix::process::setrlimit(rustix::process::Resource::Nofile, limit);
        }
    }

    #[test]
    fn a_missing_directory_is_made_and_is_ours() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("a/b/9p.sock");
        prepare_socket_dir(&sock, me()).unwrap();
        let meta = fs::symlink_metadata(tmp.path().join("a/b")).unwrap();
        assert!(meta.is_dir());
        assert_eq!(meta.uid(), me());
        assert_eq!(meta.mode() & 0o022, 0);
        // Twice is fine.
        prepare_socket_dir(&sock, me()).unwrap();
        // A bare file name is in the current directory, which is checked like any other.
        assert_eq!(socket_dir(Path::new("9p.sock")), Path::new("."));
    }

    #[test]
    fn a_directory_others_can_write_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        fs::create_dir(&dir).unwrap();
        for mode in [0o777, 0o775, 0o757] {
            chmod(&dir, mode);
            refused(
                prepare_socket_dir(&dir.join("9p.sock"), me()),
                "writable by group or others, and whoever can change it can put their own \
                 socket in its place: run `chmod go-w",
            );
        }
        // A sticky one is shared on purpose, like /tmp: never advise opening it less.
        chmod(&dir, 0o1777);
        let e = prepare_socket_dir(&dir.join("9p.sock"), me()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains(&format!(
                "has mode 1777, writable by group or others, and whoever can change it can put \
                 their own socket in its place: listen in a directory that only uid {} can \
                 write",
                me()
            )),
            "{text}"
        );
        assert!(!text.contains("chmod"), "{text}");
        chmod(&dir, 0o755);
        prepare_socket_dir(&dir.join("9p.sock"), me()).unwrap();
        chmod(&dir, 0o700);
        prepare_socket_dir(&dir.join("9p.sock"), me()).unwrap();
    }

    #[test]
    fn a_socket_right_in_tmp_is_refused_without_advising_a_chmod_of_tmp() {
        let e = prepare_socket_dir(Path::new("/tmp/9p.sock"), me()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "{e}");
        let text = e.to_string();
        assert!(
            text.starts_with("the socket's directory /tmp has mode 1777"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "listen in a directory that only uid {} can write",
                me()
            )),
            "{text}"
        );
        assert!(!text.contains("chmod"), "{text}");
    }

    #[test]
    fn a_parent_others_can_write_is_refused_unless_it_is_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let open = tmp.path().join("open");
        fs::create_dir(&open).unwrap();
        let sock = open.join("run/9p.sock");
        for mode in [0o777, 0o775, 0o757] {
            chmod(&open, mode);
            refused(
                prepare_socket_dir(&sock, me()),
                &format!(
                    "the socket's directory {} is under {}, which has mode {mode:o}, writable by \
                     group or others and not sticky, and whoever can change it can put their \
                     own directory and socket in place of {}: listen in a directory whose \
                     parents only root or uid {} can change",
                    open.join("run").display(),
                    open.display(),
                    open.join("run").display(),
                    me()
                ),
            );
            assert!(!open.join("run").exists(), "nothing was made under it");
        }
        // Sticky, as /tmp is: others cannot move our directory away.
        chmod(&open, 0o1777);
        prepare_socket_dir(&sock, me()).unwrap();
        // Higher up counts as much as the parent.
        let deep = tmp.path().join("a/b/c/9p.sock");
        fs::create_dir(tmp.path().join("a")).unwrap();
        chmod(&tmp.path().join("a"), 0o777);
        refused(
            prepare_socket_dir(&deep, me()),
            &format!(
                "is under {}, which has mode 777",
                tmp.path().join("a").display()
            ),
        );
        // Through a symbolic link, what it names counts too.
        let link = tmp.path().join("link");
        symlink(&open, &link).unwrap();
        chmod(&open, 0o777);
        refused(
            prepare_socket_dir(&link.join("run/9p.sock"), me()),
            &format!("is under {}, which has mode 777", open.display()),
        );
    }

    #[test]
    fn the_paths_the_suite_and_the_defaults_use_are_accepted() {
        // tests/src/harness.rs shared_tempdir: /tmp/srv-secrets-test.XXXX, 0755, and run/.
        let shared = tempfile::Builder::new()
            .prefix("srv-secrets-test.")
            .tempdir_in("/tmp")
            .unwrap();
        chmod(shared.path(), 0o755);
        prepare_socket_dir(&shared.path().join("run/9p.sock"), me()).unwrap();
        prepare_socket_dir(&shared.path().join("run/srv-secrets/9p.sock"), me()).unwrap();
        // /tmp/srv-secrets-$UID, the default without XDG_RUNTIME_DIR, under sticky /tmp.
        let default = shared.path().join("srv-secrets-1702");
        prepare_socket_dir(&default.join("9p.sock"), me()).unwrap();
        // /run/srv-secrets, root's default: /run is root's 0755.
        check_ancestors(Path::new("/run/srv-secrets"), Path::new("/run"), me()).unwrap();
        // $XDG_RUNTIME_DIR/srv-secrets: the user's 0700 /run/user/UID, here under /tmp.
        let runtime = shared.path().join("user");
        fs::create_dir(&runtime).unwrap();
        chmod(&runtime, 0o700);
        prepare_socket_dir(&runtime.join("srv-secrets/9p.sock"), me()).unwrap();
    }

    #[test]
    fn a_parent_of_another_user_is_refused() {
        if me() != 0 {
            eprintln!("skipping: chown needs root");
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let theirs = tmp.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        chmod(&theirs, 0o755);
        std::os::unix::fs::chown(&theirs, Some(1705), Some(1705)).unwrap();
        refused(
            prepare_socket_dir(&theirs.join("run/9p.sock"), 0),
            &format!(
                "is under {}, which belongs to uid 1705, neither root nor this server's uid 0",
                theirs.display()
            ),
        );
        // Even sticky: its owner may move anything in it.
        chmod(&theirs, 0o1777);
        refused(
            prepare_socket_dir(&theirs.join("run/9p.sock"), 0),
            "which belongs to uid 1705",
        );
        // Its owner's own server may listen there.
        chmod(&theirs, 0o755);
        prepare_socket_dir(&theirs.join("run/9p.sock"), 1705).unwrap();
        // A symbolic link of another user on the way is refused whatever it names.
        let link = tmp.path().join("link");
        symlink(tmp.path(), &link).unwrap();
        rustix::fs::chownat(
            rustix::fs::CWD,
            &link,
            Some(rustix::process::Uid::from_raw(1705)),
            None,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .unwrap();
        refused(
            prepare_socket_dir(&link.join("mine/9p.sock"), 0),
            &format!("is under {}, which belongs to uid 1705", link.display()),
        );
    }

    #[test]
    fn a_directory_of_another_user_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("srv-secrets-1702");
        fs::create_dir(&dir).unwrap();
        chmod(&dir, 0o755);
        // Owned by someone who is neither the server's uid nor root.
        let owner = if me() == 0 {
            std::os::unix::fs::chown(&dir, Some(1705), Some(1705)).unwrap();
            1705
        } else {
            me()
        };
        refused(
            prepare_socket_dir(&dir.join("9p.sock"), owner + 1),
            &format!(
                "belongs to uid {owner}, not to this server's uid {}",
                owner + 1
            ),
        );
        prepare_socket_dir(&dir.join("9p.sock"), owner).unwrap();
    }

    #[test]
    fn a_symlinked_directory_or_a_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        fs::create_dir(&real).unwrap();
        chmod(&real, 0o755);
        let link = tmp.path().join("link");
        symlink(&real, &link).unwrap();
        refused(
            prepare_socket_dir(&link.join("9p.sock"), me()),
            "is a symbolic link",
        );
        let dangling = tmp.path().join("dangling");
        symlink(tmp.path().join("nowhere"), &dangling).unwrap();
        refused(
            prepare_socket_dir(&dangling.join("9p.sock"), me()),
            "is a symbolic link",
        );
        let file = tmp.path().join("file");
        fs::write(&file, b"").unwrap();
        refused(
            prepare_socket_dir(&file.join("9p.sock"), me()),
            "is not a directory",
        );
    }

    #[tokio::test]
    async fn only_a_stale_socket_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let sock = tmp.path().join("9p.sock");
        // A stale socket: bound, then closed.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        let listener = bind_socket(&sock).await.unwrap();
        let meta = fs::symlink_metadata(&sock).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.mode() & 0o777, 0o666);
        drop(listener);
        // Anything else is left as it is.
        let key = tmp.path().join("key");
        fs::write(&key, b"not a socket").unwrap();
        chmod(&key, 0o600);
        let e = bind_socket(&key).await.unwrap_err();
        assert!(e.to_string().contains("exists and is not a socket"), "{e}");
        assert_eq!(fs::read(&key).unwrap(), b"not a socket");
        assert_eq!(fs::metadata(&key).unwrap().mode() & 0o777, 0o600);
        // A symlink, even to a socket, is not followed, replaced or chmod-ed.
        let other = tmp.path().join("other.sock");
        let _live = std::os::unix::net::UnixListener::bind(&other).unwrap();
        chmod(&other, 0o700);
        let link = tmp.path().join("link.sock");
        symlink(&other, &link).unwrap();
        let e = bind_socket(&link).await.unwrap_err();
        assert!(e.to_string().contains("exists and is not a socket"), "{e}");
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::metadata(&other).unwrap().mode() & 0o777, 0o700);
    }
}
