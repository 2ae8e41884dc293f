//! Inode numbers for paths: FUSE names a file by a number, 9P by a walk from the root.
//!
//! Each path below the root gets a number the first time it is looked up or listed, and
//! keeps it; the root is [`ROOT`]. Nothing is cached but the name: every request walks the
//! path again, so the server decides, at each request, what exists and who may see it.
//! The table only grows with names the server has shown, so it is bounded by the tree.

use std::collections::HashMap;
use std::sync::Arc;

/// The root's inode number (FUSE's `FUSE_ROOT_ID`).
pub const ROOT: u64 = 1;

/// A path below the root, as the names to walk.
pub type Path = Arc<[String]>;

/// Paths and their numbers, both ways.
pub struct Inodes {
    numbers: HashMap<Path, u64>,
    paths: Vec<Path>,
}

impl Inodes {
    /// A table holding only the root.
    pub fn new() -> Inodes {
        let root: Path = Arc::from(Vec::<String>::new());
        Inodes {
            numbers: HashMap::from([(root.clone(), ROOT)]),
            paths: vec![root],
        }
    }

    /// The path of inode `ino`, if it was ever handed out.
    pub fn path(&self, ino: u64) -> Option<Path> {
        let index = usize::try_from(ino.checked_sub(ROOT)?).ok()?;
        self.paths.get(index).cloned()
    }

    /// The number of `parent`/`name`, handing out a new one the first time.
    pub fn child(&mut self, parent: &Path, name: &str) -> (u64, Path) {
        let mut names = parent.to_vec();
        names.push(name.to_string());
        let path: Path = Arc::from(names);
        if let Some(&ino) = self.numbers.get(&path) {
            return (ino, path);
        }
        self.paths.push(path.clone());
        let ino = self.paths.len() as u64;
        self.numbers.insert(path.clone(), ino);
        (ino, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_stable_and_distinct() {
        let mut t = Inodes::new();
        let root = t.path(ROOT).unwrap();
        assert!(root.is_empty());
        let (a, pa) = t.child(&root, "secret");
        let (b, _) = t.child(&pa, "db");
        let (c, _) = t.child(&root, "config");
        assert_eq!(t.child(&root, "secret").0, a);
        assert_eq!(t.child(&pa, "db").0, b);
        assert!(a != b && b != c && a != c && a != ROOT);
        assert_eq!(
            &*t.path(b).unwrap(),
            ["secret".to_string(), "db".to_string()]
        );
        assert!(t.path(0).is_none());
        assert!(t.path(99).is_none());
    }
}
