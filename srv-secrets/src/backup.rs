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
