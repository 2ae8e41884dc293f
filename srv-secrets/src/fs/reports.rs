//! The admin tree's reports, `secrets/lint` and `secrets/plans/SERVICE/TIER`, made once per
//! revision of the store.
//!
//! A generated file is made at every walk to it, every stat (a listing stats every
//! entry: `ls secrets/plans/web` makes a plan per tier), and at open: the lint of a large
//! deployment takes seconds and megabytes, and `cat secrets/lint` through a kernel mount
//! would make it three times. So the reports are kept, by name, for the revision they were
//! made at, and made again only once the store has changed. They hold no value.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use secrets::{Revision, Vault};

/// The most bytes of reports kept; past it a report is made at every use again.
const MAX_KEPT_BYTES: usize = 64 << 20;

/// Reports made at the store's current revision.
#[derive(Default)]
pub struct Reports {
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Kept {
    /// The revision the reports were made at.
    revision: Option<Revision>,
    texts: HashMap<String, Arc<Vec<u8>>>,
    bytes: usize,
    /// How many reports were made (for tests).
    made: usize,
}

impl Reports {
    fn kept(&self) -> MutexGuard<'_, Kept> {
        // The map is whole after any single insertion.
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The report `name` as of the store's revision now: the one kept, else what `make`
    /// makes (outside the lock: others' stats do not wait on it), kept for later.
    pub fn get(
        &self,
        vault: &Vault,
        name: &str,
        make: impl FnOnce() -> Option<Vec<u8>>,
    ) -> Option<Arc<Vec<u8>>> {
        // Read before making: what is made is as of this revision or a later one, so it
        // is never kept under a revision it is older than.
        let revision = vault.revision();
        {
            let kept = self.kept();
            if kept.revision == Some(revision)
                && let Some(text) = kept.texts.get(name)
            {
                return Some(Arc::clone(text));
            }
        }
        let text = Arc::new(make()?);
        let mut kept = self.kept();
        kept.made += 1;
        if kept.revision.is_none_or(|r| r < revision) {
            kept.revision = Some(revision);
            kept.texts.clear();
            kept.bytes = 0;
        }
        if kept.revision == Some(revision)
            && kept.bytes + text.len() <= MAX_KEPT_BYTES
            && !kept.texts.contains_key(name)
        {
            kept.bytes += text.len();
            kept.texts.insert(name.to_string(), Arc::clone(&text));
        }
        Some(text)
    }

    /// How many reports were made so far.
    #[cfg(test)]
    pub fn made(&self) -> usize {
        self.kept().made
    }
}
