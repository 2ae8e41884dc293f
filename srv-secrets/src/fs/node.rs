//! How the trees are described and walked: a [`Kind`] declares one kind of file or
//! directory (its name, its directory, whether a listing shows it, its permission bits
//! and its [`Content`]); a [`Node`] is one file of a kind, with the names that pick it
//! out. The kinds themselves are the table in `kinds.rs`.
//!
//! Walking ([`Node::child`]), listing ([`Node::list`]) and stat ([`Node::attr`]) read the
//! kinds' declarations and never ask which file a node is, so a new file is one more
//! entry in the table; what opening and reading each [`Content`] does is in `fs/mod.rs`
//! and `fs/opened.rs`.
//!
//! A named entry's existence is its [`Name::Each`] `finds`, asked at the walk and again at
//! every stat, so that a name revoked or deleted since the walk is "file does not exist";
//! for a service's secret `finds` is the vault's grant check, and an ungranted name looks
//! like a missing one.

use std::fmt;

use ninep::{Error, Qid, Stat, dm, qt};
use secrets::{Vault, VersionSlot};

use super::kinds::{ADMIN_ROOT, KINDS, SERVICE_ROOT};
use super::reports::Reports;
use crate::principal::View;

/// One kind of file or directory of a tree: everything the server does with it, declared
/// once (see `kinds.rs`).
pub struct Kind {
    /// The top byte of the qid path of every node of this kind. Clients keep qids across
    /// reconnects and server restarts (the kernel's inode numbers): a kind's id never
    /// changes, and a retired one is never given to another kind.
    pub id: u8,
    /// The directory it is in; `None` for the root of a view.
    pub parent: Option<&'static Kind>,
    /// Its name in that directory, and whether a listing shows it.
    pub name: Name,
    /// Its permission bits, which the core checks every open against (0: never opened);
    /// a directory's stat adds DMDIR.
    pub mode: u32,
    /// What it holds: what its stat says besides the mode, and what an open gives.
    pub content: Content,
}

/// Whether the entry called `name` exists in the directory for the tree's view.
pub type Finds = fn(&Tree<'_>, &Node, &str) -> bool;

/// The names of the entries of this kind in a directory, as a view sees them.
pub type Lists = fn(&Tree<'_>, &Node) -> Vec<String>;

/// A generated file as it is now; `None` if it no longer exists for the view.
pub type Renders = fn(&Tree<'_>, &Node) -> Option<Generated>;

/// How a kind's entries are named in their directory.
pub enum Name {
    /// One entry with this name, always there, listed.
    Fixed(&'static str),
    /// One entry per name the vault has: a walk finds `name` when `finds` holds for it
    /// (asked again at every stat), and a listing shows what `lists` returns. With
    /// `lists` `None` the entries are reachable by walk and never listed.
    Each {
        /// What stands for the name in paths written for people: `/secret/NAME`.
        pattern: &'static str,
        /// Whether an entry of this name exists for the view.
        finds: Finds,
        /// The entries a listing shows, if any.
        lists: Option<Lists>,
    },
}

/// What a file holds: what its stat reports besides the mode, and what an open gives
/// (`fs/mod.rs`: `SecretsFs::open`; reads of what was opened: `fs/opened.rs`).
pub enum Content {
    /// A directory: its entries are the kinds whose parent it is. Stat: the server's
    /// start. Read through the core, from [`Node::list`].
    Dir,
    /// Nothing to read (`key`): mode 0, dated by the server's start.
    Nothing,
    /// A secret's record seen from the admin tree: its version, mtime and length, and
    /// nothing readable (mode 0).
    Record,
    /// A granted secret's value in a slot (current, pending, previous): that version's
    /// number, mtime and length. The node's name is the secret's, followed by the slot's
    /// suffix (`db@pending`). An open takes the version in the slot then
    /// ([`Vault::open_version`]); each read checks the grant again and decrypts the
    /// chunks it touches.
    Plaintext(VersionSlot),
    /// A text generated from the vault: its length is the text's now; an open fixes the
    /// text, so that reads at any offset agree.
    Text(Renders),
    /// The ctl file: commands in, results out (`fs/ctl.rs`). Dated by the server's start.
    Ctl,
    /// A copy of the store, taken at open; dated by the last change of the store.
    Backup,
    /// The changes the view is told of, from the open on, a line each; a read waits
    /// until there is one (`fs/events.rs`). Append-only (DMAPPEND, QTAPPEND): a stream,
    /// whose length is 0. Dated by the server's start.
    Events,
    /// The audit trail, read as a stream from the records as they were at open: no
    /// length (a log of a million records is not rendered to be measured), dated by its
    /// last record, its qid's version the number of records of changes.
    Audit,
}

/// A generated file's text and when what it shows last changed.
pub struct Generated {
    /// The file's bytes.
    pub text: Vec<u8>,
    /// Its mtime (unix seconds); `None` for the server's start.
    pub changed: Option<u64>,
}

/// What a request sees the vault through: the vault, the fid's view, and the server's
/// start (the mtime of directories and fixed files).
pub struct Tree<'a> {
    /// The vault served.
    pub vault: &'a Vault,
    /// The admin tree's reports as made at the store's revision.
    pub reports: &'a Reports,
    /// The fid's view.
    pub view: &'a View,
    /// When the server started, seconds since the epoch.
    pub started: u32,
}

impl Tree<'_> {
    /// The service whose view this is; `None` in the admin tree.
    pub fn service(&self) -> Option<&str> {
        match self.view {
            View::Service { service, .. } => Some(service),
            View::Admin => None,
        }
    }
}

impl Kind {
    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(self.content, Content::Dir)
    }

    /// Whether it is an entry of `dir`.
    fn is_in(&self, dir: &Kind) -> bool {
        self.parent.is_some_and(|p| p.id == dir.id)
    }

    /// Where its nodes are, for people: `/secrets/store/NAME`.
    pub fn path(&self) -> String {
        let name = match self.name {
            Name::Fixed(name) => name,
            Name::Each { pattern, .. } => pattern,
        };
        match self.parent {
            None => "/".to_string(),
            Some(parent) if parent.parent.is_none() => format!("/{name}"),
            Some(parent) => format!("{}/{name}", parent.path()),
        }
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (kind {})", self.path(), self.id)
    }
}

/// FNV-1a: a stable 64-bit hash of a name, for qid paths that survive restarts.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// What a node looks like to `stat`: everything but the name and owner.
#[derive(Debug)]
pub struct Attr {
    /// The qid; its version is the secret's version.
    pub qid: Qid,
    /// Permission bits and DMDIR.
    pub mode: u32,
    /// Last change, seconds since the epoch.
    pub mtime: u32,
    /// Bytes (plaintext bytes, for a secret).
    pub length: u64,
}

fn secs(t: u64) -> u32 {
    t.min(u32::MAX as u64) as u32
}

/// One file or directory of a tree: its kind, and the names of the [`Name::Each`]
/// entries on the way to it.
#[derive(Clone)]
pub struct Node {
    kind: &'static Kind,
    /// The names of the `Each` entries from the root down to this node, joined by `/`
    /// (which no walked name holds): `db_password` for `/secret/db_password`, empty for
    /// `/secrets/ctl`. Their hash is the low bits of the qid path.
    names: String,
}

impl PartialEq for Node {
    fn eq(&self, other: &Node) -> bool {
        self.kind.id == other.kind.id && self.names == other.names
    }
}

impl Eq for Node {}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} {:?}", self.kind, self.names)
    }
}

impl Node {
    /// The root of a view.
    pub fn root(view: &View) -> Node {
        let kind = match view {
            View::Admin => &ADMIN_ROOT,
            View::Service { .. } => &SERVICE_ROOT,
        };
        Node {
            kind,
            names: String::new(),
        }
    }

    /// A node of `kind` with these names, as a walk would make it (for tests).
    #[cfg(test)]
    pub fn new(kind: &'static Kind, names: &str) -> Node {
        Node {
            kind,
            names: names.to_string(),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> &'static Kind {
        self.kind
    }

    /// The node's name as a directory entry.
    pub fn name(&self) -> &str {
        match self.kind.name {
            Name::Fixed(name) => name,
            Name::Each { .. } => self.names.rsplit('/').next().unwrap_or(&self.names),
        }
    }

    /// The name of the secret a node of `slot`'s kind reads: its name without the slot's
    /// suffix.
    pub fn secret_name(&self, slot: VersionSlot) -> &str {
        let name = self.name();
        name.strip_suffix(slot.suffix()).unwrap_or(name)
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind.is_dir()
    }

    /// The qid path: the kind in the top byte, the names' hash below.
    fn qid_path(&self) -> u64 {
        let low = if self.names.is_empty() {
            0
        } else {
            name_hash(&self.names) & 0x00ff_ffff_ffff_ffff
        };
        ((self.kind.id as u64) << 56) | low
    }

    /// The child `name` of this directory, if it exists for the tree's view.
    pub fn child(&self, tree: &Tree<'_>, name: &str) -> Option<Node> {
        KINDS
            .iter()
            .filter(|kind| kind.is_in(self.kind))
            .find_map(|&kind| match kind.name {
                Name::Fixed(fixed) => (fixed == name).then(|| Node {
                    kind,
                    names: self.names.clone(),
                }),
                Name::Each { finds, .. } => finds(tree, self, name).then(|| self.entry(kind, name)),
            })
    }

    /// The entry `name` of kind `kind` in this directory.
    fn entry(&self, kind: &'static Kind, name: &str) -> Node {
        let names = if self.names.is_empty() {
            name.to_string()
        } else {
            format!("{}/{name}", self.names)
        };
        Node { kind, names }
    }

    /// The parent directory, for "..": a root is its own.
    pub fn parent(&self) -> Node {
        let Some(parent) = self.kind.parent else {
            return self.clone();
        };
        let names = match self.kind.name {
            Name::Fixed(_) => self.names.clone(),
            Name::Each { .. } => self
                .names
                .rsplit_once('/')
                .map_or_else(String::new, |(up, _)| up.to_string()),
        };
        Node {
            kind: parent,
            names,
        }
    }

    /// The entries of a directory as the tree's view sees them: the fixed ones by name,
    /// then those the vault has (for a service's `secret/`, only granted secrets).
    pub fn list(&self, tree: &Tree<'_>) -> Vec<Node> {
        let mut fixed = Vec::new();
        let mut named = Vec::new();
        for &kind in KINDS.iter().filter(|kind| kind.is_in(self.kind)) {
            match kind.name {
                Name::Fixed(_) => fixed.push(Node {
                    kind,
                    names: self.names.clone(),
                }),
                Name::Each {
                    lists: Some(lists), ..
                } => named.extend(lists(tree, self).iter().map(|n| self.entry(kind, n))),
                Name::Each { lists: None, .. } => {}
            }
        }
        fixed.sort_by(|a, b| a.name().cmp(b.name()));
        fixed.extend(named);
        fixed
    }

    /// The node's attributes now, or "file does not exist" if it no longer exists for
    /// the tree's view (a secret revoked or deleted since the walk).
    pub fn attr(&self, tree: &Tree<'_>) -> Result<Attr, Error> {
        if let Name::Each { finds, .. } = self.kind.name
            && !finds(tree, &self.parent(), self.name())
        {
            return Err(Error::not_found());
        }
        let (version, mtime, length) = match self.kind.content {
            Content::Dir | Content::Nothing | Content::Ctl | Content::Events => {
                (0, tree.started, 0)
            }
            Content::Record => {
                let info = tree
                    .vault
                    .secret_info(self.name())
                    .ok_or_else(Error::not_found)?;
                (info.version as u32, secs(info.mtime), info.length)
            }
            Content::Plaintext(slot) => {
                let info = tree
                    .vault
                    .version_info(self.secret_name(slot), slot)
                    .ok_or_else(Error::not_found)?;
                (info.version as u32, secs(info.mtime), info.length)
            }
            Content::Text(render) => {
                let generated = render(tree, self).ok_or_else(Error::not_found)?;
                let mtime = generated.changed.map_or(tree.started, secs);
                (0, mtime, generated.text.len() as u64)
            }
            // Its length is known once a copy is taken, at open; it changes with the store.
            Content::Backup => (0, secs(tree.vault.status().changed), 0),
            Content::Audit => {
                let heads = tree.vault.audit_heads().heads;
                let last = heads.values().map(|h| h.time_ms / 1000).max();
                let changes = heads
                    .get(secrets::audit::CHANGES)
                    .map_or(0, |h| h.seq as u32);
                (changes, last.map_or(tree.started, secs), 0)
            }
        };
        let (ty, mode) = if self.is_dir() {
            (qt::DIR, dm::DIR | self.kind.mode)
        } else if matches!(self.kind.content, Content::Events) {
            (qt::APPEND, dm::APPEND | self.kind.mode)
        } else {
            (qt::FILE, self.kind.mode)
        };
        Ok(Attr {
            qid: Qid {
                ty,
                version,
                path: self.qid_path(),
            },
            mode,
            mtime,
            length,
        })
    }

    /// The stat of this node as the tree's view sees it.
    pub fn stat(&self, tree: &Tree<'_>) -> Result<Stat, Error> {
        let a = self.attr(tree)?;
        Ok(Stat {
            qid: a.qid,
            mode: a.mode,
            atime: a.mtime,
            mtime: a.mtime,
            length: a.length,
            name: self.name().to_string(),
            uid: tree.view.owner().to_string(),
            gid: tree.view.owner().to_string(),
            muid: String::new(),
            ..Stat::default()
        })
    }
}
