//! The FUSE requests, each answered by 9P requests on a tokio task.
//!
//! fuser's thread only receives requests: each one is handed to a task on the caller's
//! runtime with its reply, so requests from many readers are in flight at once on the one
//! 9P connection. At most [`MAX_OUTSTANDING`] 9P requests are outstanding (the server
//! refuses more than 256 on a connection); the rest wait for a slot.
//!
//! Nothing is cached. A lookup or getattr walks the path from the root and stats it; an
//! open walks and Topens a fid that the file handle keeps until release; a read is Treads
//! on that fid. File data lives only in zeroizing buffers, from the Rread to the reply.
//!
//! An append-only file (QTAPPEND, a stream such as an events file) may make a read wait
//! as long as nothing happens: its read is one Tread, with no timeout and outside the
//! request slots, so that any number of readers waiting there do not hold up the mount's
//! other requests. fuser answers FUSE_INTERRUPT with ENOSYS, after which the kernel waits
//! for our answer even once the reader has a fatal signal; so while such a read waits, it
//! looks at its reader every [`READER_CHECK`], and once the reader is dying (SIGKILL
//! pending, which every fatal signal becomes) or gone, it flushes the Tread and answers
//! EINTR.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, LockOwner,
    OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyOpen, Request,
};
use ninep::client::{ClientError, Fid};
use ninep::{Rmessage, Stat, Tread, dm, om, qt};
use tokio::sync::{Semaphore, watch};
use zeroize::Zeroizing;

use crate::errno::errno_of;
use crate::inodes::{self, Inodes};
use crate::{Options, Owner};

/// The most 9P requests in flight at once (the server allows 256 per connection).
pub const MAX_OUTSTANDING: usize = 128;

/// The most bytes of entries a directory may list: a server cannot make us allocate more.
const MAX_DIRECTORY: usize = 16 * 1024 * 1024;

/// Nothing is cached: the kernel asks again at every use.
const NO_CACHE: Duration = Duration::ZERO;

/// The block size `stat` reports, and the unit of `st_blocks` (always 512).
const BLOCK_SIZE: u32 = 4096;

/// How often a read of a stream that waits looks whether its reader is dying.
const READER_CHECK: Duration = Duration::from_millis(200);

/// The filesystem fuser runs.
pub struct NinepFs {
    shared: Arc<Shared>,
}

struct Shared {
    root: Fid,
    runtime: tokio::runtime::Handle,
    owner: Owner,
    timeout: Duration,
    inodes: Mutex<Inodes>,
    handles: Mutex<HashMap<u64, Open>>,
    next_handle: AtomicU64,
    slots: Semaphore,
    ended: watch::Sender<bool>,
}

/// What a file handle holds.
#[derive(Clone)]
enum Open {
    /// An open file: the fid its reads go to.
    File(Arc<Fid>),
    /// An open append-only file (QTAPPEND): a stream, whose reads may wait.
    Stream(Arc<Fid>),
    /// An open directory: its entries, as listed at opendir.
    Dir(Arc<Vec<Entry>>),
}

/// One directory entry.
struct Entry {
    ino: u64,
    kind: FileType,
    name: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl NinepFs {
    pub fn new(
        root: Fid,
        runtime: tokio::runtime::Handle,
        options: &Options,
        ended: watch::Sender<bool>,
    ) -> NinepFs {
        NinepFs {
            shared: Arc::new(Shared {
                root,
                runtime,
                owner: options.owner,
                timeout: options.timeout,
                inodes: Mutex::new(Inodes::new()),
                handles: Mutex::new(HashMap::new()),
                next_handle: AtomicU64::new(1),
                slots: Semaphore::new(MAX_OUTSTANDING),
                ended,
            }),
        }
    }

    /// Runs `work` on the runtime; its result (or error) is the reply.
    fn spawn<F>(&self, work: impl FnOnce(Arc<Shared>) -> F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        // A reply dropped unanswered (the runtime is gone) answers EIO by itself.
        drop(self.shared.runtime.spawn(work(self.shared.clone())));
    }
}

impl Shared {
    /// Waits for `slots` request slots, then for `request`, at most the timeout.
    async fn request<T>(
        &self,
        slots: u32,
        request: impl Future<Output = Result<T, ClientError>>,
    ) -> Result<T, Errno> {
        let _permit = self
            .slots
            .acquire_many(slots.clamp(1, MAX_OUTSTANDING as u32))
            .await
            .map_err(|_| Errno::EIO)?;
        match tokio::time::timeout(self.timeout, request).await {
            Ok(result) => result.map_err(|e| errno_of(&e)),
            Err(_) => Err(Errno::ETIMEDOUT),
        }
    }

    fn path(&self, ino: INodeNo) -> Result<inodes::Path, Errno> {
        lock(&self.inodes).path(ino.0).ok_or(Errno::ENOENT)
    }

    /// A new fid for `path`, walked from the root.
    async fn walk(&self, path: &[String]) -> Result<Fid, Errno> {
        let names: Vec<&str> = path.iter().map(String::as_str).collect();
        self.request(1, self.root.walk(&names)).await
    }

    /// Walks to `path` and stats it. The fid is clunked in the background.
    async fn stat(&self, path: &[String]) -> Result<Stat, Errno> {
        let fid = self.walk(path).await?;
        self.request(1, fid.stat()).await
    }

    fn add_handle(&self, open: Open) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        lock(&self.handles).insert(fh, open);
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> Option<Open> {
        lock(&self.handles).get(&fh.0).cloned()
    }

    async fn lookup(&self, parent: INodeNo, name: &str) -> Result<FileAttr, Errno> {
        let parent = self.path(parent)?;
        let mut path = parent.to_vec();
        path.push(name.to_string());
        let stat = self.stat(&path).await?;
        // Numbered only once the server has shown that the name exists.
        let (ino, _) = lock(&self.inodes).child(&parent, name);
        Ok(file_attr(self.owner, ino, &stat))
    }

    async fn getattr(&self, ino: INodeNo, fh: Option<FileHandle>) -> Result<FileAttr, Errno> {
        let stat = match fh.and_then(|fh| self.handle(fh)) {
            Some(Open::File(fid) | Open::Stream(fid)) => self.request(1, fid.stat()).await?,
            _ => self.stat(&self.path(ino)?).await?,
        };
        Ok(file_attr(self.owner, ino.0, &stat))
    }

    /// Opens the file; says whether it is a stream.
    async fn open(&self, ino: INodeNo) -> Result<(FileHandle, bool), Errno> {
        let mut fid = self.walk(&self.path(ino)?).await?;
        self.request(1, fid.open(om::READ)).await?;
        let stream = fid.qid().ty & qt::APPEND != 0;
        let fid = Arc::new(fid);
        let open = if stream {
            Open::Stream(fid)
        } else {
            Open::File(fid)
        };
        Ok((self.add_handle(open), stream))
    }

    /// A read of a stream: one Tread of up to `size` bytes, waiting as long as the server
    /// does (a 0-byte answer is not an end: it is read again), until the reader `pid`
    /// is dying.
    async fn read_stream(
        &self,
        fid: Arc<Fid>,
        size: u32,
        pid: u32,
    ) -> Result<Zeroizing<Vec<u8>>, Errno> {
        let client = fid.client().clone();
        let count = size.min(fid.io_size()).max(1);
        loop {
            let tread = Tread {
                fid: fid.number(),
                offset: 0,
                count,
            };
            let pending = client.send(tread).map_err(|e| errno_of(&e))?;
            let tag = pending.tag;
            let reply = pending.reply();
            tokio::pin!(reply);
            let reply = loop {
                tokio::select! {
                    r = &mut reply => break r,
                    () = tokio::time::sleep(READER_CHECK) => {
                        if reader_is_dying(pid) {
                            let _ = tokio::time::timeout(self.timeout, client.flush(tag)).await;
                            return Err(Errno::EINTR);
                        }
                    }
                }
            };
            let Rmessage::Read(r) = reply.map_err(|e| errno_of(&e))? else {
                return Err(Errno::EIO);
            };
            let bytes = r.data.expose();
            if bytes.len() > count as usize {
                return Err(Errno::EIO);
            }
            if !bytes.is_empty() {
                let mut data = Zeroizing::new(Vec::with_capacity(bytes.len()));
                data.extend_from_slice(bytes);
                return Ok(data);
            }
        }
    }

    /// Reads `size` bytes at `offset`, or up to the end of the file: one Tread per iounit,
    /// all sent at once, then the replies in order until a short one.
    async fn read(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
        pid: u32,
    ) -> Result<Zeroizing<Vec<u8>>, Errno> {
        let fid = match self.handle(fh) {
            Some(Open::File(fid)) => fid,
            Some(Open::Stream(fid)) => return self.read_stream(fid, size, pid).await,
            _ => return Err(Errno::EBADF),
        };
        let client = fid.client().clone();
        let chunk = client.iounit().max(1);
        let chunks = size.div_ceil(chunk);
        let want = size as usize;
        self.request(chunks, async move {
            let mut pending = Vec::with_capacity(chunks as usize);
            let mut at = 0u32;
            while at < size {
                let count = chunk.min(size - at);
                let Some(offset) = offset.checked_add(u64::from(at)) else {
                    break;
                };
                let tread = Tread {
                    fid: fid.number(),
                    offset,
                    count,
                };
                pending.push((client.send(tread)?, count));
                at += count;
            }
            let mut data = Zeroizing::new(Vec::with_capacity(want));
            for (reply, count) in pending {
                let Rmessage::Read(r) = reply.reply().await? else {
                    return Err(ClientError::Protocol("expected Rread".into()));
                };
                let bytes = r.data.expose();
                if bytes.len() > count as usize {
                    return Err(ClientError::Protocol("Rread longer than asked".into()));
                }
                data.extend_from_slice(bytes);
                if bytes.len() < count as usize {
                    break;
                }
            }
            Ok(data)
        })
        .await
    }

    async fn opendir(&self, ino: INodeNo) -> Result<FileHandle, Errno> {
        let parent = self.path(ino)?;
        let mut fid = self.walk(&parent).await?;
        self.request(1, fid.open(om::READ)).await?;
        let stats = self.request(1, fid.read_dir_limited(MAX_DIRECTORY)).await?;
        drop(fid);
        let mut inodes = lock(&self.inodes);
        let entries = stats
            .into_iter()
            // A name FUSE cannot show (a '/', or "." and "..", which are ours to add).
            .filter(|s| !s.name.contains('/') && s.name != "." && s.name != "..")
            .filter(|s| !s.name.is_empty())
            .map(|s| {
                let (ino, _) = inodes.child(&parent, &s.name);
                let kind = if s.mode & dm::DIR != 0 {
                    FileType::Directory
                } else {
                    FileType::RegularFile
                };
                Entry {
                    ino,
                    kind,
                    name: s.name,
                }
            })
            .collect();
        drop(inodes);
        Ok(self.add_handle(Open::Dir(Arc::new(entries))))
    }
}

impl Filesystem for NinepFs {
    fn destroy(&mut self) {
        self.shared.ended.send_replace(true);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        // 9P names are UTF-8: another name cannot exist.
        let Some(name) = name.to_str().map(str::to_string) else {
            return reply.error(Errno::ENOENT);
        };
        self.spawn(|fs| async move {
            match fs.lookup(parent, &name).await {
                Ok(attr) => reply.entry(&NO_CACHE, &attr, Generation(0)),
                Err(e) => reply.error(e),
            }
        });
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.spawn(|fs| async move {
            match fs.getattr(ino, fh).await {
                Ok(attr) => reply.attr(&NO_CACHE, &attr),
                Err(e) => reply.error(e),
            }
        });
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        self.spawn(|fs| async move {
            match fs.open(ino).await {
                // Direct I/O: every read(2) comes here, none is served from the page cache.
                Ok((fh, false)) => reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO),
                // A stream has no file position: reads of it are the next bytes.
                Ok((fh, true)) => {
                    reply.opened(fh, FopenFlags::FOPEN_DIRECT_IO | FopenFlags::FOPEN_STREAM)
                }
                Err(e) => reply.error(e),
            }
        });
    }

    fn read(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        // With direct I/O, read(2) reaches us as a direct read, which the kernel always
        // sends with the reader's lock owner. A read without one fills the page cache:
        // the page-in of a private mapping (shared ones the kernel refuses itself). Refuse
        // it, so that file data never sits in the page cache after the reader is done.
        if lock_owner.is_none() {
            return reply.error(Errno::ENODEV);
        }
        let pid = req.pid();
        self.spawn(|fs| async move {
            match fs.read(fh, offset, size, pid).await {
                Ok(data) => reply.data(&data),
                Err(e) => reply.error(e),
            }
        });
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing is ever written, so there is nothing to flush.
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        // Dropping the fid clunks it in the background.
        drop(lock(&self.shared.handles).remove(&fh.0));
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.spawn(|fs| async move {
            match fs.opendir(ino).await {
                Ok(fh) => reply.opened(fh, FopenFlags::empty()),
                Err(e) => reply.error(e),
            }
        });
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let Some(Open::Dir(entries)) = self.shared.handle(fh) else {
            return reply.error(Errno::EBADF);
        };
        // Offsets: 1 after ".", 2 after "..", 3 + i after entry i.
        let dots = [
            (ino.0, FileType::Directory, "."),
            (ino.0, FileType::Directory, ".."),
        ];
        let all = dots
            .into_iter()
            .chain(entries.iter().map(|e| (e.ino, e.kind, e.name.as_str())));
        for (i, (ino, kind, name)) in all.enumerate().skip(offset as usize) {
            if reply.add(INodeNo(ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        drop(lock(&self.shared.handles).remove(&fh.0));
        reply.ok();
    }
}

/// Whether process (or thread) `pid` is dying or gone: a fatal signal is pending for it
/// (the kernel makes every fatal signal a SIGKILL pending for each thread, which is what
/// its killable waits look at), or it has no entry in /proc. A reader FUSE could not name
/// (pid 0: in a pid namespace this one cannot see) cannot be watched: it waits on.
fn reader_is_dying(pid: u32) -> bool {
    if pid == 0 {
        return false;
    }
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    sigkill_pending(&status)
}

/// Whether a /proc/PID/status text has SIGKILL (signal 9, bit 8) among its pending signals,
/// the thread's own (`SigPnd`) or its process's (`ShdPnd`).
fn sigkill_pending(status: &str) -> bool {
    const SIGKILL_BIT: u64 = 1 << 8;
    status.lines().any(|line| {
        let mask = line
            .strip_prefix("SigPnd:")
            .or_else(|| line.strip_prefix("ShdPnd:"));
        mask.and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
            .is_some_and(|m| m & SIGKILL_BIT != 0)
    })
}

/// The attributes FUSE shows for inode `ino`, which the server stats as `stat`.
fn file_attr(owner: Owner, ino: u64, stat: &Stat) -> FileAttr {
    let dir = stat.mode & dm::DIR != 0;
    let mtime = UNIX_EPOCH + Duration::from_secs(u64::from(stat.mtime));
    let atime = UNIX_EPOCH + Duration::from_secs(u64::from(stat.atime));
    let size = if dir { 0 } else { stat.length };
    FileAttr {
        ino: INodeNo(ino),
        size,
        // In 512-byte units whatever the block size: what du(1) adds up.
        blocks: size.div_ceil(512),
        atime,
        mtime,
        ctime: mtime,
        crtime: mtime,
        kind: if dir {
            FileType::Directory
        } else {
            FileType::RegularFile
        },
        // The owner's read and search bits, nothing else: read-only, and only for the
        // owner (with default_permissions the kernel enforces it).
        perm: (stat.mode & 0o500) as u16,
        nlink: if dir { 2 } else { 1 },
        uid: owner.uid,
        gid: owner.gid,
        rdev: 0,
        blksize: BLOCK_SIZE,
        flags: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat(mode: u32, length: u64) -> Stat {
        Stat {
            mode,
            length,
            mtime: 1_700_000_000,
            atime: 1_700_000_001,
            name: "x".into(),
            ..Stat::default()
        }
    }

    const WEB: Owner = Owner {
        uid: 1001,
        gid: 2001,
    };

    #[test]
    fn files_are_the_owners_read_only_with_du_right_blocks() {
        let a = file_attr(WEB, 7, &stat(0o644, 300 * 1024));
        assert_eq!(a.ino, INodeNo(7));
        assert_eq!(a.kind, FileType::RegularFile);
        assert_eq!((a.perm, a.uid, a.gid, a.nlink), (0o400, 1001, 2001, 1));
        assert_eq!((a.size, a.blocks), (307_200, 600));
        assert_eq!(file_attr(WEB, 7, &stat(0o400, 1)).blocks, 1);
        assert_eq!(file_attr(WEB, 7, &stat(0o400, 0)).blocks, 0);
        assert_eq!(file_attr(WEB, 7, &stat(0o000, 5)).perm, 0);
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::from_secs(1_700_000_000));
    }

    #[test]
    fn a_reader_with_a_fatal_signal_pending_is_dying() {
        let status = |sig: &str, shd: &str| {
            format!(
                "Name:\tcat\nState:\tS (sleeping)\nSigPnd:\t{sig}\nShdPnd:\t{shd}\nSigBlk:\t0000000000000000\n"
            )
        };
        assert!(!sigkill_pending(&status(
            "0000000000000000",
            "0000000000000000"
        )));
        // SIGINT (bit 1) alone: caught, or not yet made fatal.
        assert!(!sigkill_pending(&status(
            "0000000000000002",
            "0000000000000000"
        )));
        assert!(sigkill_pending(&status(
            "0000000000000100",
            "0000000000000000"
        )));
        assert!(sigkill_pending(&status(
            "0000000000000000",
            "0000000000004100"
        )));
        // This process lives; a pid that is no process is gone.
        assert!(!reader_is_dying(std::process::id()));
        assert!(reader_is_dying(u32::MAX));
        assert!(
            !reader_is_dying(0),
            "a reader FUSE cannot name is not taken for dead"
        );
    }

    #[test]
    fn directories_are_the_owners_to_search() {
        let a = file_attr(WEB, 1, &stat(dm::DIR | 0o755, 0));
        assert_eq!(a.kind, FileType::Directory);
        assert_eq!((a.perm, a.nlink, a.size, a.blocks), (0o500, 2, 0, 0));
    }
}
