//! [`Vault::health`]: whether the vault can serve and change, checked now, for a readiness
//! probe (seed 004's `/health/ready`).

use super::{Vault, rotation};
use crate::keyfile;

/// What a readiness check found. Nothing in it is secret: paths and key ids at most.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    /// The store answers, and takes writes (it is not waiting to be reopened after a
    /// failed write): `None`, or what is wrong.
    pub store: Option<String>,
    /// The key file still holds the keys the store uses, and they pass the store's key
    /// checks: `None`, or what is wrong.
    pub key: Option<String>,
    /// The store's revision.
    pub revision: u64,
}

impl Health {
    /// Whether everything is fine.
    pub fn ready(&self) -> bool {
        self.store.is_none() && self.key.is_none()
    }
}

impl Vault {
    /// Checks, now, that the store answers and takes writes, and that the key file on disk
    /// still matches the store (a key file replaced or damaged since the start would make
    /// the next start fail, and a rotation's end too). Reads the key file: meant for a
    /// probe every few seconds, not for every request.
    pub fn health(&self) -> Health {
        let revision = self.revision();
        let store = if self.backend.needs_reopen() {
            Some("the store failed a write and is not reopened yet; see the server log".into())
        } else {
            self.backend
                .changes(revision)
                .err()
                .map(|e| format!("the store does not answer: {e}"))
        };
        let meta = self.state().meta.clone();
        let key = match keyfile::read(&self.key_path) {
            Ok(keys) => rotation::reconcile_keys(&self.key_path, keys, &meta)
                .err()
                .map(|e| e.to_string()),
            Err(e) => Some(e.to_string()),
        };
        Health {
            store,
            key,
            revision: revision.0,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn a_healthy_vault_and_one_whose_key_file_changed() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        v.set("a", b"1").unwrap();
        let h = v.health();
        assert!(h.ready(), "{h:?}");
        // Another store's key file put in its place.
        let other = dir.path().join("other");
        Vault::init(&other, None, 1000).unwrap();
        std::fs::copy(other.join("key"), data.join("key")).unwrap();
        let h = v.health();
        assert!(!h.ready());
        let said = h.key.unwrap();
        assert!(said.contains("does not match this store"), "{said}");
        // Gone altogether.
        std::fs::remove_file(data.join("key")).unwrap();
        assert!(v.health().key.is_some());
    }
}
