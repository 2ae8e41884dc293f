//! `deploy backup FILE`: the server's store, copied while it serves.
//!
//! Opening `secrets/backup` (admin only) makes the server copy its store from one read
//! transaction; reading it streams that copy, a store file of its own that a restore puts
//! back as `DIR/store.redb`. It holds ciphertext, names and grants, never the key.
//!
//! FILE is written as srv-secrets' own `srv-secrets backup` writes it (see
//! `srv-secrets/src/backup.rs`): to a hidden sibling created 0600, fsynced, then renamed
//! into place without replacing a file that is there (`RENAME_NOREPLACE`) unless
//! `--force`; on any failure the sibling is removed, so FILE is whole or absent.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::commands::Outcome;
use crate::connect::{Addr, Env, Session, is_not_found};
use crate::error::CliError;
use crate::output::write_text;

/// How every redb file starts: a check that what came back is a store.
const STORE_MAGIC: [u8; 9] = [b'r', b'e', b'd', b'b', 0x1A, 0x0A, 0xA9, 0x0D, 0x0A];

/// `deploy backup FILE [--force]`.
///
/// # Errors
/// Connecting, reading `secrets/backup`, or writing FILE ([`CliError::BackupFile`]).
pub async fn run(
    file: &Path,
    force: bool,
    addr: &Addr,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // Before the server copies anything.
    if !force && std::fs::symlink_metadata(file).is_ok() {
        return Err(exists(file));
    }
    let session = Session::admin(addr, env).await?;
    let store = session.read(&["secrets", "backup"]).await.map_err(|e| {
        if is_not_found(&e) {
            CliError::Unexpected(
                "the server has no secrets/backup (it is older than this deploy)".into(),
            )
        } else {
            CliError::request("reading secrets/backup", e)
        }
    })?;
    if !store.starts_with(&STORE_MAGIC) {
        return Err(CliError::Unexpected(
            "secrets/backup is not a store file".into(),
        ));
    }
    write_new_file(file, force, &store)?;
    write_text(
        out,
        &format!(
            "wrote a backup of the store at {addr} to {} ({} bytes); it holds no key: back \
             up the key file apart\n",
            file.display(),
            store.len()
        ),
    )?;
    Ok(Outcome::Done)
}

fn exists(path: &Path) -> CliError {
    CliError::BackupFile(format!(
        "{} already exists; not replacing it (choose another name, or pass --force to \
         replace it)",
        path.display()
    ))
}

/// Removes the partial file unless it was given its name.
struct Partial(Option<PathBuf>);

impl Drop for Partial {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Writes `bytes` as a new file at `path` (see the module documentation).
fn write_new_file(path: &Path, force: bool, bytes: &[u8]) -> Result<(), CliError> {
    let fail = |what: &str, p: &Path, e: io::Error| {
        CliError::BackupFile(format!("cannot {what} {}: {e}", p.display()))
    };
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("{} names no file", path.display())))?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut partial_name = std::ffi::OsString::from(".");
    partial_name.push(name);
    partial_name.push(format!(".{}.partial", std::process::id()));
    let partial = dir.join(partial_name);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .map_err(|e| fail("create", &partial, e))?;
    let mut guard = Partial(Some(partial.clone()));
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| fail("write", &partial, e))?;
    drop(file);
    if force {
        std::fs::rename(&partial, path).map_err(|e| fail("write", path, e))?;
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
            e => fail("write", path, e.into()),
        })?;
    }
    guard.0 = None;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| fail("sync", dir, e))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn partials(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".partial")
            })
            .count()
    }

    #[test]
    fn the_file_is_new_private_and_whole_or_absent() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("store.backup");
        write_new_file(&path, false, b"redb...").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"redb...");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let e = write_new_file(&path, false, b"other").unwrap_err();
        assert!(matches!(e, CliError::BackupFile(_)), "{e:?}");
        assert!(
            e.to_string().contains("already exists; not replacing it"),
            "{e}"
        );
        assert_eq!(e.exit_code(), 1);
        assert_eq!(std::fs::read(&path).unwrap(), b"redb...");
        write_new_file(&path, true, b"newer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"newer");
        let e = write_new_file(&tmp.path().join("no/dir/f"), false, b"x").unwrap_err();
        assert!(e.to_string().starts_with("cannot create"), "{e}");
        assert_eq!(partials(tmp.path()), 0);
    }
}
