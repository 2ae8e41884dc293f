//! Backups of the store: a copy as of one commit, in a store file of its own.
//!
//! A backup holds what `DIR/store.redb` holds (ciphertext, names, services, grants, key
//! check values), never a key: restored as `DIR/store.redb`, it opens with the key file of
//! its time. Two ways to make one:
//!
//! - [`Vault::backup`], while the vault serves: one read transaction of the open store,
//!   copied into a file without a name in the data directory, which the caller reads and
//!   which vanishes when dropped. Writers carry on meanwhile.
//! - [`backup_unserved`], when no server holds the data directory (redb refuses a second
//!   process a store that one has open): the same copy, of a store opened for it.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;

use tracing::info;

use crate::error::{Error, Result};
use crate::redb_store::{LOCK_FILE, RedbBackend, STORE_FILE, share_lock};
use crate::vault::Vault;

/// A backup made by a serving vault, to be read out: a store file as of one commit.
#[derive(Debug)]
pub struct Backup {
    file: File,
    len: u64,
}

impl Backup {
    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether it is empty (a backup never is).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads up to `buf.len()` bytes at `offset`; 0 at the end.
    ///
    /// # Errors
    /// The I/O error, if reading the file fails.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
        if offset >= self.len {
            return Ok(0);
        }
        let want = usize::try_from(self.len - offset).map_or(buf.len(), |left| left.min(buf.len()));
        self.file.read_at(&mut buf[..want], offset)
    }
}

impl Vault {
    /// A backup of the store as it is now, taken from one read transaction while reads and
    /// writes carry on. It is written to a file without a name in the data directory (so
    /// nothing is left behind, whatever happens), which is freed when the [`Backup`] is
    /// dropped. Blocking: it copies the whole store.
    ///
    /// # Errors
    /// I/O errors creating the file (a full disk), store errors.
    pub fn backup(&self) -> Result<Backup> {
        let file = self.backend.backup()?;
        let len = file
            .metadata()
            .map_err(|e| Error::Store {
                op: "measuring the backup",
                source: Box::new(e),
            })?
            .len();
        info!(store = ?self.data_dir(), bytes = len, "took a backup of the store");
        Ok(Backup { file, len })
    }
}

/// Writes a backup of the store of `data_dir`, which no server may be serving, into `out`
/// (an empty file, open for reading and writing). Needs no key, and creates nothing in `data_dir`: neither a lock file
/// (one made by another uid than the server's would keep it from starting) nor anything
/// else. Holds the directory's lock, if it has one, while it copies.
///
/// # Errors
/// [`Error::Locked`] while a server serves `data_dir` (take the backup through it);
/// [`Error::NotInitialized`]; I/O and store errors.
pub fn backup_unserved(data_dir: &Path, out: File) -> Result<()> {
    let store = data_dir.join(STORE_FILE);
    if !store.try_exists().map_err(Error::io("checking", &store))? {
        return Err(Error::NotInitialized {
            dir: data_dir.to_path_buf(),
        });
    }
    let lock_path = data_dir.join(LOCK_FILE);
    let _lock = match OpenOptions::new().read(true).open(&lock_path) {
        Ok(file) => {
            // Shared: a server starting meanwhile waits for the copy to end (and does not
            // fail to start because a scheduled backup was running).
            share_lock(&file, data_dir, &lock_path)?;
            Some(file)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io("opening lock file", &lock_path)(e)),
    };
    RedbBackend::open_for_backup(data_dir)?.backup_into(out)
}
