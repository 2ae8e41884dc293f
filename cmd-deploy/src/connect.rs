//! Finding the server ([`resolve`]), connecting and attaching ([`Session`]), and the one
//! way deploy changes anything: writing commands to `secrets/ctl` ([`Ctl`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ninep::client::{Client, ClientError, DEFAULT_MSIZE, Fid};
use ninep::{Stat, ename, om};
use zeroize::Zeroizing;

use crate::error::CliError;

/// The environment variable that names the server when --addr is not given.
pub const ADDR_VAR: &str = "SRV_SECRETS_ADDR";

/// Where the server listens. Only unix sockets for now: the server knows its peers by
/// SO_PEERCRED, and TCP needs authentication it does not offer yet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Addr {
    path: PathBuf,
}

impl Addr {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}", self.path.display())
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
/// [`CliError::Usage`] for an address that is not `unix:PATH`.
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
    Ok(Addr { path })
}

fn parse(text: &OsStr, from: &str) -> Result<Addr, CliError> {
    match text.as_bytes().strip_prefix(b"unix:") {
        Some(path) if !path.is_empty() => Ok(Addr {
            path: PathBuf::from(OsStr::from_bytes(path)),
        }),
        _ => Err(CliError::Usage(format!(
            "{from} must be unix:PATH (the server's socket), not '{}'",
            text.to_string_lossy()
        ))),
    }
}

/// Whether the server answered "file does not exist".
pub fn is_not_found(e: &ClientError) -> bool {
    e.remote() == Some(ename::NOT_FOUND)
}

/// Whether the server answered "permission denied".
pub fn is_permission_denied(e: &ClientError) -> bool {
    e.remote() == Some(ename::PERMISSION_DENIED)
}

/// A connection with one attached tree.
pub struct Session {
    addr: Addr,
    root: Fid,
}

impl Session {
    /// Connects and attaches the admin tree (`/secrets/…`).
    ///
    /// # Errors
    /// [`CliError::Connect`] with a hint; [`CliError::UntrustedServer`] when the socket is
    /// served by a user we must not send secrets to; [`CliError::AttachRefused`] when the
    /// server does not take us for the admin.
    pub async fn admin(addr: &Addr, env: &Env) -> Result<Session, CliError> {
        let client = connect(addr, env).await?;
        let root = client
            .attach(&env.user, "")
            .await
            .map_err(|e| attach_error(e, env))?;
        Ok(Session {
            addr: addr.clone(),
            root,
        })
    }

    /// Connects and attaches `service`'s view (`/secret/…`, `/config/…`) on its behalf,
    /// which only the admin may do.
    ///
    /// # Errors
    /// As [`Session::admin`], and [`CliError::NoSuchService`] when we are the admin but
    /// the service does not exist (the server says "permission denied" to both, so that
    /// anames are no oracle; the admin may know the difference, so we ask).
    pub async fn service_view(addr: &Addr, env: &Env, service: &str) -> Result<Session, CliError> {
        let client = connect(addr, env).await?;
        match client.attach(&env.user, service).await {
            Ok(root) => Ok(Session {
                addr: addr.clone(),
                root,
            }),
            Err(e) if is_permission_denied(&e) => match client.attach(&env.user, "").await {
                Ok(_) => Err(CliError::NoSuchService(service.to_string())),
                Err(e) => Err(attach_error(e, env)),
            },
            Err(e) => Err(attach_error(e, env)),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> &Addr {
        &self.addr
    }

    /// Reads a whole file.
    pub async fn read(&self, path: &[&str]) -> Result<Zeroizing<Vec<u8>>, ClientError> {
        let mut fid = self.root.walk(path).await?;
        fid.open(om::READ).await?;
        // Dropping the fid clunks it in the background; nothing waits on that answer.
        fid.read_all().await
    }

    /// Reads a whole directory.
    pub async fn list(&self, path: &[&str]) -> Result<Vec<Stat>, ClientError> {
        let mut fid = self.root.walk(path).await?;
        fid.open(om::READ).await?;
        fid.read_dir().await
    }

    /// Stats a file.
    pub async fn stat(&self, path: &[&str]) -> Result<Stat, ClientError> {
        self.root.walk(path).await?.stat().await
    }

    /// Opens `secrets/ctl` for writing.
    ///
    /// # Errors
    /// [`CliError::Request`].
    pub async fn ctl(&self) -> Result<Ctl, CliError> {
        let walk = self.root.walk(&["secrets", "ctl"]).await;
        let mut fid = walk.map_err(|e| CliError::request("opening secrets/ctl", e))?;
        fid.open(om::WRITE)
            .await
            .map_err(|e| CliError::request("opening secrets/ctl", e))?;
        Ok(Ctl { fid, offset: 0 })
    }
}

/// Connects, makes sure the server is someone to trust with secrets, and negotiates
/// 9P2000. Nothing is sent to an untrusted server, not even Tversion.
async fn connect(addr: &Addr, env: &Env) -> Result<Client, CliError> {
    let failed = |source| CliError::Connect {
        addr: addr.to_string(),
        source,
    };
    let stream = tokio::net::UnixStream::connect(addr.path())
        .await
        .map_err(|e| failed(ClientError::Io(e)))?;
    // SO_PEERCRED: the uid of the process that listens, which it cannot choose.
    let server_uid = stream
        .peer_cred()
        .map_err(|e| failed(ClientError::Io(e)))?
        .uid();
    if !trusted_server(server_uid, env.euid, addr.path()) {
        return Err(CliError::UntrustedServer {
            addr: addr.to_string(),
            server_uid,
            euid: env.euid,
        });
    }
    let client = Client::over(stream);
    client.version(DEFAULT_MSIZE).await.map_err(failed)?;
    Ok(client)
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

fn attach_error(e: ClientError, env: &Env) -> CliError {
    if is_permission_denied(&e) {
        CliError::AttachRefused { uid: env.euid }
    } else {
        CliError::request("attaching", e)
    }
}

/// `secrets/ctl`, open for writing: one command per write, checked at clunk too.
pub struct Ctl {
    fid: Fid,
    offset: u64,
}

impl Ctl {
    /// Sends one command. The server applies it when its line completes and answers
    /// its error (if any) to this write.
    ///
    /// # Errors
    /// [`CliError::Ctl`] with the server's text.
    pub async fn send(&mut self, command: &ctl::Command) -> Result<(), CliError> {
        let line = command.encode();
        self.fid
            .write_all(self.offset, &line)
            .await
            .map_err(CliError::ctl)?;
        self.offset += line.len() as u64;
        Ok(())
    }

    /// Clunks the fid; the server may report an error for an unfinished command here.
    ///
    /// # Errors
    /// [`CliError::Ctl`] with the server's text.
    pub async fn close(self) -> Result<(), CliError> {
        self.fid.clunk().await.map_err(CliError::ctl)
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
        a.unwrap().path().display().to_string()
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
    fn bad_addresses_are_usage_errors() {
        for bad in ["/run/x.sock", "unix:", "tcp:127.0.0.1:564", ""] {
            let e = resolve(Some(bad), &env()).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{bad}");
            assert!(e.to_string().starts_with("--addr must be unix:PATH"), "{e}");
        }
        let e = Env {
            addr: Some("/run/x.sock".into()),
            ..env()
        };
        let err = resolve(None, &e).unwrap_err().to_string();
        assert_eq!(
            err,
            "SRV_SECRETS_ADDR must be unix:PATH (the server's socket), not '/run/x.sock'"
        );
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
        assert_eq!(a.path().as_os_str().as_bytes(), b"/tmp/\xff.sock");
    }
}
