//! An in-memory tree of files and directories served through the server core: how a
//! filesystem plugs into the core, and what the core is tested with.
//!
//! This is the whole filesystem: the core has already checked fids, open modes,
//! permissions and offsets before any method here runs, so each handler only does its
//! file operation. `examples/ramfs` serves it on a socket; the golden transcripts, the
//! core's integration tests, the fuzz targets, the kernel-mount test and the load and
//! read-cost benchmarks (beside srv-secrets) serve it in their own processes.

use std::collections::BTreeMap;
use std::sync::Mutex;

use crate::server::{Filesystem, Peer};
use crate::{Data, Error, Qid, Result, Stat, dm, ename, om, qt};

/// The files `ramfs --populate` starts with, and their lengths: empty (0 B), one (1 B),
/// 8k (8 KiB) and 1m (1 MiB), each holding [`pattern`].
pub const POPULATED: [(&str, usize); 4] =
    [("empty", 0), ("one", 1), ("8k", 8 << 10), ("1m", 1 << 20)];

/// Contents of the seeded test files: byte i is i mod 251 (a prime, so no block size
/// lines up with the pattern).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

struct Node {
    name: String,
    parent: u64,
    mode: u32,
    version: u32,
    mtime: u32,
    owner: String,
    data: Vec<u8>,
    /// Children by name, for directories.
    children: BTreeMap<String, u64>,
}

/// The tree: node 0 is the root.
struct Tree {
    nodes: BTreeMap<u64, Node>,
    next: u64,
}

/// An in-memory filesystem.
pub struct RamFs {
    tree: Mutex<Tree>,
    clock: fn() -> u32,
}

/// The state of one fid: the node it names.
pub struct RamFid {
    node: u64,
}

fn now() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as u32)
}

impl Tree {
    fn get(&self, id: u64) -> Result<&Node> {
        self.nodes.get(&id).ok_or_else(Error::not_found)
    }

    fn get_mut(&mut self, id: u64) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or_else(Error::not_found)
    }

    fn qid(&self, id: u64) -> Result<Qid> {
        let n = self.get(id)?;
        let ty = if n.mode & dm::DIR != 0 {
            qt::DIR
        } else {
            qt::FILE
        };
        Ok(Qid {
            ty,
            version: n.version,
            path: id,
        })
    }

    fn stat(&self, id: u64) -> Result<Stat> {
        let n = self.get(id)?;
        Ok(Stat {
            qid: self.qid(id)?,
            mode: n.mode,
            atime: n.mtime,
            mtime: n.mtime,
            length: if n.mode & dm::DIR != 0 {
                0
            } else {
                n.data.len() as u64
            },
            name: n.name.clone(),
            uid: n.owner.clone(),
            gid: n.owner.clone(),
            muid: n.owner.clone(),
            ..Stat::default()
        })
    }
}

impl RamFs {
    /// An empty tree (a root directory, mode 0777) whose times come from `clock`.
    pub fn with_clock(clock: fn() -> u32) -> RamFs {
        let root = Node {
            name: "/".into(),
            parent: 0,
            mode: dm::DIR | 0o777,
            version: 0,
            mtime: clock(),
            owner: "ramfs".into(),
            data: Vec::new(),
            children: BTreeMap::new(),
        };
        RamFs {
            tree: Mutex::new(Tree {
                nodes: BTreeMap::from([(0, root)]),
                next: 1,
            }),
            clock,
        }
    }

    /// An empty tree on the system clock.
    pub fn new() -> RamFs {
        RamFs::with_clock(now)
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        // A poisoned lock means a handler panicked mid-update; the tree is still a tree.
        self.tree.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds the [`POPULATED`] files under the root.
    pub fn populate(&self) {
        for (name, len) in POPULATED {
            self.add_file(name, pattern(len));
        }
    }

    /// Adds a file with the given contents under the root (used to seed test files).
    pub fn add_file(&self, name: &str, data: Vec<u8>) {
        let mut t = self.tree();
        let id = t.next;
        t.next += 1;
        let mtime = (self.clock)();
        t.nodes.insert(
            id,
            Node {
                name: name.into(),
                parent: 0,
                mode: 0o644,
                version: 0,
                mtime,
                owner: "ramfs".into(),
                data,
                children: BTreeMap::new(),
            },
        );
        if let Some(root) = t.nodes.get_mut(&0) {
            root.children.insert(name.into(), id);
        }
    }
}

impl Default for RamFs {
    fn default() -> Self {
        RamFs::new()
    }
}

impl Filesystem for RamFs {
    type Fid = RamFid;

    async fn attach(&self, _peer: &Peer, _uname: &str, _aname: &str) -> Result<(Qid, RamFid)> {
        Ok((self.tree().qid(0)?, RamFid { node: 0 }))
    }

    fn clone_fid(&self, fid: &RamFid) -> RamFid {
        RamFid { node: fid.node }
    }

    async fn walk(&self, dir: &RamFid, name: &str) -> Result<(Qid, RamFid)> {
        let t = self.tree();
        let d = t.get(dir.node)?;
        let node = match name {
            "." => dir.node,
            ".." => d.parent,
            _ => *d.children.get(name).ok_or_else(Error::not_found)?,
        };
        Ok((t.qid(node)?, RamFid { node }))
    }

    async fn stat(&self, fid: &RamFid) -> Result<Stat> {
        self.tree().stat(fid.node)
    }

    async fn open(&self, fid: &RamFid, mode: u8) -> Result<()> {
        if mode & om::TRUNC != 0 {
            let mut t = self.tree();
            let n = t.get_mut(fid.node)?;
            n.data.clear();
            n.version += 1;
        }
        Ok(())
    }

    async fn read(&self, fid: &RamFid, offset: u64, count: u32) -> Result<Data> {
        let t = self.tree();
        let data = &t.get(fid.node)?.data;
        let start = (offset.min(data.len() as u64)) as usize;
        let end = start.saturating_add(count as usize).min(data.len());
        Ok(Data::from(&data[start..end]))
    }

    async fn readdir(&self, dir: &RamFid) -> Result<Vec<Stat>> {
        let t = self.tree();
        t.get(dir.node)?
            .children
            .values()
            .map(|&id| t.stat(id))
            .collect()
    }

    async fn write(&self, fid: &RamFid, offset: u64, data: &[u8]) -> Result<u32> {
        const MAX_FILE: u64 = 64 << 20;
        if offset.saturating_add(data.len() as u64) > MAX_FILE {
            return Err(Error::new("file too big"));
        }
        let mtime = (self.clock)();
        let mut t = self.tree();
        let n = t.get_mut(fid.node)?;
        let offset = if n.mode & dm::APPEND != 0 {
            n.data.len()
        } else {
            offset as usize
        };
        if n.data.len() < offset + data.len() {
            n.data.resize(offset + data.len(), 0);
        }
        n.data[offset..offset + data.len()].copy_from_slice(data);
        n.version += 1;
        n.mtime = mtime;
        Ok(data.len() as u32)
    }

    async fn create(&self, dir: &RamFid, name: &str, perm: u32, mode: u8) -> Result<(Qid, RamFid)> {
        let mtime = (self.clock)();
        let mut t = self.tree();
        if t.get(dir.node)?.children.contains_key(name) {
            return Err(Error::new(ename::EXISTS));
        }
        let id = t.next;
        t.next += 1;
        let _ = mode;
        let owner = t.get(dir.node)?.owner.clone();
        t.nodes.insert(
            id,
            Node {
                name: name.into(),
                parent: dir.node,
                mode: perm,
                version: 0,
                mtime,
                owner,
                data: Vec::new(),
                children: BTreeMap::new(),
            },
        );
        t.get_mut(dir.node)?.children.insert(name.into(), id);
        Ok((t.qid(id)?, RamFid { node: id }))
    }

    async fn remove(&self, fid: &RamFid) -> Result<()> {
        let mut t = self.tree();
        let n = t.get(fid.node)?;
        if fid.node == 0 {
            return Err(Error::permission_denied());
        }
        if !n.children.is_empty() {
            return Err(Error::new("directory is not empty"));
        }
        let (parent, name) = (n.parent, n.name.clone());
        t.nodes.remove(&fid.node);
        t.get_mut(parent)?.children.remove(&name);
        Ok(())
    }

    /// Rename (a new name in the same directory), truncate or extend (length), chmod
    /// (mode) and touch (mtime); other fields must be "don't touch".
    async fn wstat(&self, fid: &RamFid, st: &Stat) -> Result<()> {
        let mut t = self.tree();
        let n = t.get(fid.node)?;
        let (parent, old_name) = (n.parent, n.name.clone());
        let renaming = !st.name.is_empty() && st.name != old_name;
        if renaming && (fid.node == 0 || t.get(parent)?.children.contains_key(&st.name)) {
            return Err(Error::new(ename::EXISTS));
        }
        let n = t.get_mut(fid.node)?;
        if st.length != u64::MAX {
            if n.mode & dm::DIR != 0 || st.length > 64 << 20 {
                return Err(Error::permission_denied());
            }
            n.data.resize(st.length as usize, 0);
        }
        if st.mode != u32::MAX {
            n.mode = (n.mode & dm::DIR) | (st.mode & !dm::DIR);
        }
        if st.mtime != u32::MAX {
            n.mtime = st.mtime;
        }
        n.version += 1;
        if renaming {
            n.name = st.name.clone();
            let p = t.get_mut(parent)?;
            p.children.remove(&old_name);
            p.children.insert(st.name.clone(), fid.node);
        }
        Ok(())
    }
}
