//! The deployment catalog as the vault holds it, read: the catalog itself, plans, the
//! lint, and what a catalog apply would change. Memory only, like every read.
//!
//! A plan and the lint need the catalog and what the store knows (which secrets have
//! values, which are granted: [`catalog::Store`], never a value). A plan is computed under
//! the state's read lock, which it holds for what the catalog crate's benchmark measures
//! (a plan of a 1,000-secret manifest over 10,000 secrets in well under 10 ms); the lint,
//! whose cost grows with every manifest and tier, from a copy of what it reads. An export
//! takes the catalog's shared pointer and lets go of the lock before it serializes.

use std::sync::Arc;

use catalog::{Catalog, Diff, DiffError, Lint, Plan, StoreFacts};

use super::Vault;
use crate::error::{Error, Result};
use crate::manifest::Manifest;

impl Vault {
    /// The deployment catalog as of the last commit, shared (no copy is made; a commit
    /// meanwhile changes a copy of its own).
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.state().catalog)
    }

    /// The plan for `service` on `tier`: for each secret of its manifest, in order, its
    /// class there and what happens to it, and every problem. Never a value.
    ///
    /// # Errors
    /// [`Error::NoSuchService`] for a service the vault does not have (its manifest is
    /// what is planned).
    pub fn plan(&self, service: &str, tier: &str) -> Result<Plan> {
        let state = self.state();
        let rec = state.services.get(service).ok_or(Error::NoSuchService)?;
        Ok(catalog::plan(
            &state.catalog,
            service,
            tier,
            rec.manifest.secrets(),
            &*state,
        ))
    }

    /// The lint of the catalog against every service's manifest, optionally for one tier.
    ///
    /// Made from what it reads copied out from under the read lock (the catalog and the
    /// manifests are shared, not copied): its cost is every manifest line times every
    /// tier, seconds for a large deployment, and a writer waiting for the lock that long
    /// would make every reader wait behind it, services reading their secrets included.
    pub fn lint(&self, tier: Option<&str>) -> Lint {
        let (catalog, manifests, facts) = {
            let state = self.state();
            let manifests: Vec<(String, Arc<Manifest>)> = state
                .services
                .iter()
                .map(|(name, rec)| (name.clone(), Arc::clone(&rec.manifest)))
                .collect();
            let facts = StoreFacts {
                values: state.secrets.keys().cloned().collect(),
                grants: state
                    .grants
                    .iter()
                    .map(|(service, names)| (service.clone(), names.iter().cloned().collect()))
                    .collect(),
            };
            (Arc::clone(&state.catalog), manifests, facts)
        };
        let manifests = manifests
            .iter()
            .map(|(name, manifest)| (name.as_str(), manifest.secrets()));
        catalog::lint(&catalog, manifests, &facts, tier)
    }

    /// What applying `new` would change now (with `prune`, removing what it does not
    /// declare), changing nothing: a dry run of a catalog apply.
    ///
    /// # Errors
    /// [`Error::CatalogRefused`] with every declaration the result would break a rule
    /// with.
    pub fn catalog_diff(&self, new: &Catalog, prune: bool) -> Result<Diff> {
        let current = self.catalog();
        catalog::diff(&current, new, prune).map_err(|e| match e {
            DiffError::Refused(r) => Error::CatalogRefused(r),
            _ => Error::Corrupt {
                what: "a catalog diff went stale while it was made",
            },
        })
    }
}
