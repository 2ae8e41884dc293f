//! Durable file system primitives: private directories, atomic replacement, directory fsync,
//! and the check that a file is private to this process's uid.

use std::fs::{self, DirBuilder, File, Metadata, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Owner-only directory mode.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Owner-only file mode.
pub(crate) const FILE_MODE: u32 = 0o600;

/// Creates `dir` (and missing parents) with mode 0700; an existing directory is chmod-ed to
/// 0700. Parents are created 0700 too: they are ours, and nothing needs them wider.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .map_err(Error::io("creating data directory", dir))?;
    // `recursive` accepts an existing directory without touching its mode.
    fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        .map_err(Error::io("setting mode 0700 on data directory", dir))
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// Refuses a file or directory of the data directory that anyone but this process's uid
/// and root could change or read: one owned by another uid ([`Error::ForeignOwner`]), or
/// with any permission bit for group or others ([`Error::OpenToOthers`], whose fix is
/// `chmod fix`). The store's tables carry no MAC, so whoever can write it can add grants or
/// make itself admin; whoever can read it learns every name; whoever can open the lock file
/// can hold it and keep the server from starting.
pub(crate) fn check_private(
    what: &'static str,
    path: &Path,
    meta: &Metadata,
    fix: u32,
) -> Result<()> {
    check_owner(what, path, meta, euid())?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::OpenToOthers {
            what,
            path: path.to_path_buf(),
            mode,
            fix,
        });
    }
    Ok(())
}

/// Refuses a file owned by neither `euid` nor root.
pub(crate) fn check_owner(
    what: &'static str,
    path: &Path,
    meta: &Metadata,
    euid: u32,
) -> Result<()> {
    let owner = meta.uid();
    if owner != euid && owner != 0 {
        return Err(Error::ForeignOwner {
            what,
            path: path.to_path_buf(),
            owner,
            euid,
        });
    }
    Ok(())
}

/// The directory holding `path` ("." for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary name [`write_atomic`] uses for `path`: a hidden sibling, so that the
/// rename stays within one directory (and one file system).
pub(crate) fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    parent_dir(path).join(name)
}

/// Replaces `path` with `contents`, atomically and durably: a temporary sibling created with
/// mode 0600 (never wider, not even for an instant), written, fsynced, renamed over `path`,
/// then the directory fsynced so the rename itself survives a crash.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let tmp = temp_path(path);
    remove_if_exists(&tmp)?;
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(Error::io("creating", &tmp))?;
    file.write_all(contents)
        .map_err(Error::io("writing", &tmp))?;
    file.sync_all().map_err(Error::io("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, path).map_err(Error::io("renaming into place", path))?;
    sync_dir(&parent_dir(path))
}

/// Removes a leftover file, if any (e.g. a temporary file from a crashed write).
pub(crate) fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(Error::io("removing stale", path)(e)),
    }
}

/// Fsyncs a directory so that entries created or renamed in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io("syncing directory", dir))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn atomic_write_is_private_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, FILE_MODE);
        assert!(!temp_path(&path).exists());
    }

    #[test]
    fn stale_temp_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(temp_path(&path), b"leftover").unwrap();
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
    }

    #[test]
    fn private_dir_with_parents_and_chmod() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("a/b/c");
        create_private_dir(&deep).unwrap();
        assert_eq!(fs::metadata(&deep).unwrap().mode() & 0o777, DIR_MODE);
        fs::set_permissions(&deep, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&deep).unwrap();
        assert_eq!(fs::metadata(&deep).unwrap().mode() & 0o777, DIR_MODE);
    }

    #[test]
    fn private_means_ours_or_roots_and_closed_to_group_and_others() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, b"").unwrap();
        for mode in [0o600, 0o400, 0o700] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            check_private("store", &path, &fs::metadata(&path).unwrap(), 0o600).unwrap();
        }
        for mode in [0o666, 0o640, 0o604, 0o660, 0o601] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err =
                check_private("store", &path, &fs::metadata(&path).unwrap(), 0o600).unwrap_err();
            assert!(matches!(err, Error::OpenToOthers { .. }), "{err:?}");
            let msg = err.to_string();
            assert!(
                msg.starts_with(&format!("store {} has mode {mode:o}", path.display())),
                "{msg}"
            );
            assert!(
                msg.ends_with(&format!("run `chmod 600 {}`", path.display())),
                "{msg}"
            );
        }
        // Another uid's file is refused whatever its mode; root's is not.
        let meta = fs::metadata(&path).unwrap();
        let mine = meta.uid();
        check_owner("store", &path, &meta, mine).unwrap();
        if mine == 0 {
            check_owner("store", &path, &meta, 1000).unwrap();
            std::os::unix::fs::chown(&path, Some(1705), None).unwrap();
            let meta = fs::metadata(&path).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
            let err = check_private("store", &path, &meta, 0o600).unwrap_err();
            assert!(
                matches!(
                    err,
                    Error::ForeignOwner {
                        owner: 1705,
                        euid: 0,
                        ..
                    }
                ),
                "{err:?}"
            );
            assert!(
                err.to_string().contains("run srv-secrets as uid 1705"),
                "{err}"
            );
            assert!(
                err.to_string()
                    .ends_with(&format!("give it to uid 0: `chown 0 {}`", path.display())),
                "{err}"
            );
        } else {
            let err = check_owner("store", &path, &meta, mine + 1).unwrap_err();
            assert!(matches!(err, Error::ForeignOwner { .. }), "{err:?}");
        }
    }

    #[test]
    fn temp_names() {
        assert_eq!(temp_path(Path::new("key")), Path::new("./.key.tmp"));
        assert_eq!(temp_path(Path::new("/d/key")), Path::new("/d/.key.tmp"));
    }
}
