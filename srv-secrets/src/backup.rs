//! Writing a backup file: created mode 0600, never over an existing file unless asked,
//! and never left half-written.
//!
//! The backup is written to a hidden sibling (`.NAME.PID.partial`, mode 0600 from
//! creation), fsynced, and only then given its name: by `rename(2)` with
//! `RENAME_NOREPLACE`, so that a file that appeared meanwhile is not replaced either, or
//! a plain rename with `--force`. On any failure the sibling is removed, so FILE is either
//! absent or a whole backup. (`deploy backup` does the same in cmd-deploy.)

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Removes the partial file unless it was given its name.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The message for a FILE that is there already.
fn exists(path: &Path) -> String {
    format!(
        "{} already exists; not replacing it (choose another name, or pass --force to \
         replace it)",
        path.display()
    )
}

/// Writes a new file at `path` with what `fill` writes into the (empty, 0600, read-write)
/// file it is given, and returns its length. Refuses an existing `path` unless `force`.
///
/// # Errors
/// What went wrong, worded for the operator; `fill`'s own error as it is.
pub fn write_new_file(
    path: &Path,
    force: bool,
    fill: impl FnOnce(File) -> Result<(), String>,
) -> Result<u64, String> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(exists(path));
    }
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".{}.partial", std::process::id()));
    let partial = dir.join(partial_name);
    let io_err = |what: &str, p: &Path, e: io::Error| format!("{what} {}: {e}", p.display());
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| io_err("cannot create", &partial, e))?;
    let mut guard = Partial(Some(partial.clone()));
    let copy = file
        .try_clone()
        .map_err(|e| io_err("cannot write", &partial, e))?;
    fill(copy)?;
    file.sync_all()
        .map_err(|e| io_err("cannot write", &partial, e))?;
    let len = file
        .metadata()
        .map_err(|e| io_err("cannot write", &partial, e))?
        .len();
    drop(file);
    if force {
        std::fs::rename(&partial, path).map_err(|e| io_err("cannot write", path, e))?;
    } else {
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &partial,
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(|e| match e {
            rustix::io::Errno::EXIST => exists(path),
            e => io_err("cannot write", path, e.into()),
        })?;
    }
    guard.0 = None;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("cannot sync", dir, e))?;
    Ok(len)
}

/// How long a request to the serving server may go unanswered.
const SERVER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The first bytes of every redb file: a backup that does not start so is refused.
const STORE_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// Copies the store of the server that serves `data_dir` into `out`, through its socket:
/// the admin-only `secrets/backup`, made by the server from one read transaction. Called
/// when the directory's lock is held: redb lets no second process open the store.
///
/// The socket must be served by the very process that holds the data directory's lock
/// (its pid, by SO_PEERCRED, against the lock's holder in /proc/locks), so that a backup
/// of `data_dir` never silently copies another server's store.
///
/// # Errors
/// What went wrong, worded for the operator.
pub fn through_server(data_dir: &Path, socket: &Path, out: &mut File) -> Result<(), String> {
    let lock = data_dir.join(secrets::LOCK_FILE);
    let holder = lock_holder(&lock)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    rt.block_on(async {
        let failed = |e: &dyn std::fmt::Display| {
            format!(
                "cannot take the backup through unix:{}: {e}",
                socket.display()
            )
        };
        let timed = |what: &'static str| {
            format!(
                "no answer from the server at unix:{} within {}s while {what}",
                socket.display(),
                SERVER_TIMEOUT.as_secs()
            )
        };
        let stream = tokio::net::UnixStream::connect(socket).await.map_err(|e| {
            format!(
                "a server (pid {holder}) serves {}, but none answers at unix:{} ({e}); pass \
                 --addr with the socket that server listens on",
                data_dir.display(),
                socket.display()
            )
        })?;
        let pid = stream.peer_cred().map_err(|e| failed(&e))?.pid();
        if pid != Some(holder) {
            return Err(format!(
                "the server at unix:{} (pid {}) is not the one that serves {} (pid {holder}); \
                 pass --addr with the socket that server listens on",
                socket.display(),
                pid.map_or_else(|| "?".to_string(), |p| p.to_string()),
                data_dir.display()
            ));
        }
        let client = ninep::client::Client::over(stream);
        tokio::time::timeout(SERVER_TIMEOUT, client.version(ninep::client::DEFAULT_MSIZE))
            .await
            .map_err(|_| timed("starting the 9P session"))?
            .map_err(|e| failed(&e))?;
        let root = tokio::time::timeout(
            SERVER_TIMEOUT,
            client.attach("srv-secrets-backup", model::ADMIN_ANAME),
        )
        .await
        .map_err(|_| timed("attaching"))?
        .map_err(|e| failed(&e))?;
        let mut fid = tokio::time::timeout(SERVER_TIMEOUT, root.walk(&["secrets", "backup"]))
            .await
            .map_err(|_| timed("walking to secrets/backup"))?
            .map_err(|e| failed(&e))?;
        tokio::time::timeout(SERVER_TIMEOUT, fid.open(ninep::om::READ))
            .await
            .map_err(|_| timed("opening secrets/backup (the server copies its store then)"))?
            .map_err(|e| failed(&e))?;
        let count = fid.io_size();
        let mut offset = 0u64;
        loop {
            let data = tokio::time::timeout(SERVER_TIMEOUT, fid.read(offset, count))
                .await
                .map_err(|_| timed("reading secrets/backup"))?
                .map_err(|e| failed(&e))?;
            if data.is_empty() {
                break;
            }
            if offset == 0 && !data.expose().starts_with(&STORE_MAGIC) {
                return Err(failed(&"secrets/backup is not a store file"));
            }
            offset += data.len() as u64;
            std::io::Write::write_all(out, data.expose()).map_err(|e| failed(&e))?;
        }
        Ok(())
    })
}

/// The pid of the process holding the flock on `lock` (from /proc/locks).
fn lock_holder(lock: &Path) -> Result<i32, String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let dev = meta.dev();
    let id = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    let locks = std::fs::read_to_string("/proc/locks")
        .map_err(|e| format!("cannot tell which process serves the directory: /proc/locks: {e}"))?;
    locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE START END"
            (fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&id.as_str()))
                .then(|| fields.get(4)?.parse().ok())
                .flatten()
        })
        .next()
        .ok_or_else(|| {
            format!(
                "cannot tell which process holds {}; stop the server, or take the backup with \
                 `deploy backup FILE`",
                lock.display()
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn write(file: File, bytes: &[u8]) -> Result<(), String> {
        let mut file = file;
        file.write_all(bytes).map_err(|e| e.to_string())
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".partial"))
            .collect()
    }

    #[test]
    fn a_new_file_is_private_and_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store.backup");
        let len = write_new_file(&path, false, |f| write(f, b"a store")).unwrap();
        assert_eq!(len, 7);
        assert_eq!(std::fs::read(&path).unwrap(), b"a store");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert!(leftovers(tmp.path()).is_empty());
    }

    #[test]
    fn an_existing_file_is_kept_unless_forced() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store.backup");
        std::fs::write(&path, b"yesterday's").unwrap();
        let e = write_new_file(&path, false, |_| panic!("nothing is made")).unwrap_err();
        assert!(e.contains("already exists; not replacing it"), "{e}");
        assert!(e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(&path).unwrap(), b"yesterday's");
        // One that appears while the backup is written is not replaced either.
        let late = tmp.path().join("late.backup");
        let e = write_new_file(&late, false, |f| {
            std::fs::write(&late, b"someone else's").unwrap();
            write(f, b"ours")
        })
        .unwrap_err();
        assert!(e.contains("already exists"), "{e}");
        assert_eq!(std::fs::read(&late).unwrap(), b"someone else's");
        assert!(leftovers(tmp.path()).is_empty());
        // Asked to, it replaces.
        write_new_file(&path, true, |f| write(f, b"today's")).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"today's");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
    }

    #[test]
    fn a_failure_leaves_no_file() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store.backup");
        let e = write_new_file(&path, false, |f| {
            write(f, b"half a sto")?;
            Err("the server went away".into())
        })
        .unwrap_err();
        assert_eq!(e, "the server went away");
        assert!(!path.exists());
        assert!(leftovers(tmp.path()).is_empty());
        let e = write_new_file(&tmp.path().join("no/such/dir/f"), false, |_| Ok(())).unwrap_err();
        assert!(e.starts_with("cannot create"), "{e}");
    }
}
