//! A 9P2000 file tree served as a read-only FUSE filesystem, through [`ninep::client`].
//!
//! [`Mount::new`] mounts the tree under a [`Fid`] (usually an attach root, or a directory
//! walked from one) at a directory, and serves it from a thread of its own while the
//! caller's tokio runtime carries the 9P requests. It knows nothing of what the files hold.
//!
//! What a reader sees is what the server says at the time of each call:
//! - no attribute or entry caching (every TTL is zero), and every open file is opened with
//!   `FOPEN_DIRECT_IO`: each `read(2)` is Treads on the fid that the `open(2)` opened, so
//!   a server that refuses a read (a revoked grant) stops the very next read even on a file
//!   held open, and a new version of a file is seen by the next open;
//! - the page cache never holds file data: a shared mapping is refused by the kernel
//!   (`ENODEV`, "No such device") and the page-in reads of a private one are refused here
//!   (the access gets `SIGBUS`), see [`fs`];
//! - reads of any size at any offset return every byte asked for up to the end of the
//!   file (a read larger than the 9P iounit becomes several Treads, sent at once);
//! - an append-only file (QTAPPEND) is a stream (`FOPEN_STREAM`): a read returns what the
//!   server has, and waits without a timeout while it has nothing, without taking a
//!   request slot, so that readers waiting there do not hold up the mount's other
//!   requests; a reader killed while it waits is answered at once (see `fs`);
//! - every file and directory belongs to [`Options::owner`], files `0400` and directories
//!   `0500` at most (the server's owner bits, without write), so that with
//!   `default_permissions` the kernel lets that uid read and no other (root excepted).
//!
//! When the server goes away every request fails at once with `ENOTCONN` ("Transport
//! endpoint is not connected"), and the mount can still be removed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod errno;
mod fs;
mod inodes;

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use ninep::client::Fid;
use tokio::sync::watch;

pub use errno::errno_of;

/// Who the files belong to: the uid and gid every `stat` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Owner {
    /// The owner's uid.
    pub uid: u32,
    /// The owner's gid.
    pub gid: u32,
}

/// How to mount.
#[derive(Clone, Debug)]
pub struct Options {
    /// Who the files belong to.
    pub owner: Owner,
    /// Let uids other than the one that mounts use the mount (`allow_other`): for root
    /// mounting on another uid's behalf. Access is still checked by the kernel against
    /// [`Options::owner`] and the modes (`default_permissions` is always on). Without it
    /// only the uid that mounts can use the mount at all.
    pub allow_other: bool,
    /// How long a 9P request may go unanswered before its FUSE request fails with
    /// `ETIMEDOUT`.
    pub timeout: Duration,
    /// The mount's source, as `/proc/mounts` shows it (`srv-secrets:web`).
    pub fsname: String,
}

/// A mounted tree. Dropping it unmounts (lazily: a file still open keeps reading until
/// closed); [`Mount::unmount`] says whether that worked.
pub struct Mount {
    session: Option<BackgroundSession>,
    dir: PathBuf,
    ended: watch::Receiver<bool>,
}

impl Mount {
    /// Mounts the tree under `root` at `dir` (an existing directory). The 9P requests run
    /// on `runtime`, which must keep running while the mount lives (a current-thread
    /// runtime must be inside `block_on`); nothing on that runtime may touch the mount
    /// synchronously.
    ///
    /// # Errors
    /// What mount(2) or fusermount3 said: `/dev/fuse` missing, `dir` not a directory,
    /// `allow_other` refused to a user (`user_allow_other` is not in /etc/fuse.conf).
    pub fn new(
        root: Fid,
        dir: &Path,
        runtime: tokio::runtime::Handle,
        options: &Options,
    ) -> io::Result<Mount> {
        let (ended_tx, ended) = watch::channel(false);
        let filesystem = fs::NinepFs::new(root, runtime, options, ended_tx);
        let mut config = Config::default();
        config.mount_options = vec![
            MountOption::FSName(options.fsname.clone()),
            MountOption::Subtype("fuse9p".into()),
            MountOption::DefaultPermissions,
            MountOption::RO,
            MountOption::NoSuid,
            MountOption::NoDev,
            MountOption::NoExec,
            MountOption::NoAtime,
        ];
        config.acl = if options.allow_other {
            SessionACL::All
        } else {
            SessionACL::Owner
        };
        let session = fuser::spawn_mount(filesystem, dir, &config)?;
        Ok(Mount {
            session: Some(session),
            dir: dir.to_path_buf(),
            ended,
        })
    }

    /// The directory it is mounted at.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Resolves once the filesystem is gone from under the mount's feet: unmounted from
    /// outside (`fusermount -u DIR`, `umount DIR`) or by [`Mount::unmount`].
    pub async fn ended(&mut self) {
        // An error means the filesystem was dropped: ended all the same.
        let _ = self.ended.wait_for(|ended| *ended).await;
    }

    /// Unmounts now, lazily (`MNT_DETACH`, or `fusermount3 -u -z` for a user), so that a
    /// file held open does not keep the mount in place.
    ///
    /// # Errors
    /// What umount2(2) or fusermount3 said.
    pub fn unmount(mut self) -> io::Result<()> {
        let result = detach(&self.dir, self.ended.borrow().to_owned());
        // fuser's own unmount finds it unmounted and does nothing more.
        drop(self.session.take());
        result
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.session.is_some() {
            let _ = detach(&self.dir, *self.ended.borrow());
        }
    }
}

/// Detaches the mount at `dir`, unless it has already gone.
fn detach(dir: &Path, ended: bool) -> io::Result<()> {
    if ended {
        return Ok(());
    }
    if rustix::process::geteuid().is_root() {
        return rustix::mount::unmount(dir, rustix::mount::UnmountFlags::DETACH)
            .map_err(io::Error::from);
    }
    // Only root may umount2(2); users go through the setuid helper.
    let out = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
