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
use crate::connect::{Env, Server, Session, is_not_found};
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
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    // Before the server copies anything.
    if !force && std::fs::symlink_metadata(file).is_ok() {
        return Err(exists(file));
    }
    let session = Session::admin(server, env).await?;
    let mut new = NewFile::create(file)?;
    let mut sink = Checked {
        file: &mut new.file,
        head: Vec::with_capacity(STORE_MAGIC.len()),
    };
    let written = session
        .read_into(&["secrets", "backup"], &mut sink, MAX_BACKUP)
        .await
        .map_err(|e| {
            if is_not_found(&e) {
                CliError::Unexpected(
                    "the server has no secrets/backup (it is older than this deploy)".into(),
                )
            } else {
                CliError::request("reading secrets/backup", e)
            }
        })?;
    if sink.head != STORE_MAGIC {
        return Err(CliError::Unexpected(
            "secrets/backup is not a store file".into(),
        ));
    }
    new.finish(file, force)?;
    write_text(
        out,
        &format!(
            "wrote a backup of the store at {} to {} ({written} bytes); it holds no key: back \
             up the key file apart\n",
            server.addr,
            file.display(),
        ),
    )?;
    Ok(Outcome::Done)
}

/// The largest backup deploy takes: far above any store srv-secrets keeps in memory.
const MAX_BACKUP: u64 = 64 << 30;

/// Writes to the backup file, keeping its first bytes to check that they are a store's.
struct Checked<'a> {
    file: &'a mut File,
    head: Vec<u8>,
}

impl Write for Checked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let want = STORE_MAGIC.len() - self.head.len();
        self.head.extend_from_slice(&buf[..want.min(buf.len())]);
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
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

/// A new file being written under a hidden temporary name beside `path`; it is given
/// its name by [`NewFile::finish`], and removed if dropped before (see the module
/// documentation).
struct NewFile {
    file: File,
    partial: Partial,
}

fn fail(what: &str, p: &Path, e: io::Error) -> CliError {
    CliError::BackupFile(format!("cannot {what} {}: {e}", p.display()))
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

impl NewFile {
    fn create(path: &Path) -> Result<NewFile, CliError> {
        let name = path
            .file_name()
            .ok_or_else(|| CliError::Usage(format!("{} names no file", path.display())))?;
        let mut partial_name = std::ffi::OsString::from(".");
        partial_name.push(name);
        partial_name.push(format!(".{}.partial", std::process::id()));
        let partial = dir_of(path).join(partial_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| fail("create", &partial, e))?;
        Ok(NewFile {
            file,
            partial: Partial(Some(partial)),
        })
    }

    /// Syncs the file and gives it its name: without replacing an existing file, unless
    /// `force`.
    fn finish(mut self, path: &Path, force: bool) -> Result<(), CliError> {
        let Some(partial) = self.partial.0.clone() else {
            return Err(CliError::Unexpected("the backup file is gone".into()));
        };
        self.file
            .sync_all()
            .map_err(|e| fail("write", &partial, e))?;
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
        self.partial.0 = None;
        let dir = dir_of(path);
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| fail("sync", dir, e))
    }
}

/// Writes `bytes` as a new file at `path` (see [`NewFile`]).
#[cfg(test)]
fn write_new_file(path: &Path, force: bool, bytes: &[u8]) -> Result<(), CliError> {
    let mut new = NewFile::create(path)?;
    new.file
        .write_all(bytes)
        .map_err(|e| fail("write", path, e))?;
    new.finish(path, force)
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
