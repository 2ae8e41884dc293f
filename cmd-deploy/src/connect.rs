//! Finding the server ([`resolve`]), connecting and attaching ([`Session`]), and the one
//! way deploy changes anything: writing commands to `secrets/ctl` ([`Ctl`]).

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ninep::client::{Client, ClientError, Fid};
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
    /// [`CliError::Connect`] with a hint; [`CliError::AttachRefused`] when the server does
    /// not take us for the admin.
    pub async fn admin(addr: &Addr, env: &Env) -> Result<Session, CliError> {
        let client = connect(addr).await?;
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
        let client = connect(addr).await?;
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

/// Connects and negotiates 9P2000.
async fn connect(addr: &Addr) -> Result<Client, CliError> {
    Client::connect_unix(addr.path())
        .await
        .map_err(|source| CliError::Connect {
            addr: addr.to_string(),
            source,
        })
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
