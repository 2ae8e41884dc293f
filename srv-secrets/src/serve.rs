//! Running the server: the vault opened, the process hardened, the sockets bound, and
//! a clean stop on SIGTERM.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ninep::server::{Limits, Server, Shutdown, bind_unix};
use secrets::Vault;
use tracing::{info, warn};

use crate::fs::SecretsFs;

/// Keeps secrets out of core dumps and away from ptrace by other users: a process that
/// is not dumpable writes no core file, and its memory cannot be read through /proc.
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

/// Makes sure that `path`'s directory is one that only this server's user (and root) can
/// change, making it (0755) if it is missing.
///
/// Whoever can write the socket's directory can rename the socket away and listen in its
/// place, and then `deploy` hands its values to them: `/tmp/srv-secrets-UID`, the default
/// for a user without `XDG_RUNTIME_DIR`, can be made by anyone before the server first
/// starts. So an existing directory must be a real directory (not a symlink), owned by
/// `euid` or root (systemd's `RuntimeDirectory=` makes `/run/srv-secrets` owned by the
/// service's user), and writable by neither group nor others.
///
/// # Errors
/// An [`io::Error`] whose text says what is wrong with the directory and what to do.
pub fn prepare_socket_dir(path: &Path, euid: u32) -> io::Result<()> {
    let dir = socket_dir(path);
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
    check_socket_dir(dir, euid)
}

/// The directory a socket path is in; `.` for a bare file name.
fn socket_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
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
        return refuse(
            format!("has mode {mode:o}, writable by group or others"),
            format!("run `chmod go-w {}`, or listen elsewhere", dir.display()),
        );
    }
    Ok(())
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

/// Serves `vault` on the unix sockets `sockets` until SIGTERM or SIGINT, then finishes the
/// requests in flight and returns.
pub async fn serve(
    vault: Arc<Vault>,
    sockets: Vec<(PathBuf, tokio::net::UnixListener)>,
) -> io::Result<()> {
    let server = Server::new(SecretsFs::new(vault), Limits::default());
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (path, listener) in sockets {
        let server = server.clone();
        let shutdown: Shutdown = shutdown.clone();
        tasks.spawn(async move {
            let r = server.serve_unix(listener, shutdown).await;
            let _ = fs::remove_file(&path);
            r
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: finishing requests in flight"),
        _ = int.recv() => info!("SIGINT: finishing requests in flight"),
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
    trigger.trigger();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            warn!(error = %e, "listener ended with an error");
        }
    }
    info!("stopped");
    Ok(())
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
        for mode in [0o777, 0o775, 0o1777, 0o757] {
            chmod(&dir, mode);
            refused(
                prepare_socket_dir(&dir.join("9p.sock"), me()),
                "writable by group or others, and whoever can change it can put their own \
                 socket in its place: run `chmod go-w",
            );
        }
        chmod(&dir, 0o755);
        prepare_socket_dir(&dir.join("9p.sock"), me()).unwrap();
        chmod(&dir, 0o700);
        prepare_socket_dir(&dir.join("9p.sock"), me()).unwrap();
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
