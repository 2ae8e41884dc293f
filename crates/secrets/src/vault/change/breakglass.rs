//! The break-glass changes (seed 004), planned: [`Change::Freeze`] and
//! [`Change::Unfreeze`], [`Change::RevokeAll`], [`Change::Suspend`] and
//! [`Change::Resume`]; and which changes a freeze stops ([`Change::stops_when_frozen`]).
//!
//! A freeze lives in the store record (so it survives a restart, and is checked as every
//! other record is), a suspension in the service's record; each keeps who set it, when
//! and why (the actor's reason), as a version keeps who made it.

use super::{Applied, Change, Overlay};
use crate::error::{Error, Result};
use crate::names;
use crate::record::{Made, Marked};
use crate::rows::Mutation;

impl Change<'_> {
    /// Whether a freeze refuses this change: those that deploy something, or change what
    /// a deployment gets (a grant, a service's uid, manifest or tiers, a removal, the
    /// catalog and its tiers, a bundle, a new API token). What answers an incident goes
    /// on: a set, a rotation's steps, a rollback, a retire, a delete, a revoke (of one
    /// service or all, or of a token), a suspension and a resume, and the freeze's own
    /// changes.
    pub fn stops_when_frozen(&self) -> bool {
        match self {
            Change::Grant { .. }
            | Change::ServiceUid { .. }
            | Change::ServiceManifest { .. }
            | Change::ServiceRemove { .. }
            | Change::ServiceTiers { .. }
            | Change::TierDeclare { .. }
            | Change::TierRemove { .. }
            | Change::Meta { .. }
            | Change::MetaRemove { .. }
            | Change::Strategy { .. }
            | Change::StrategyRemove { .. }
            | Change::Present { .. }
            | Change::Bundle { .. }
            | Change::CatalogApply { .. }
            | Change::TokenCreate { .. } => true,
            Change::Set { .. }
            | Change::Generate { .. }
            | Change::Stage { .. }
            | Change::StageGenerate { .. }
            | Change::Promote { .. }
            | Change::Discard { .. }
            | Change::Rollback { .. }
            | Change::Retire { .. }
            | Change::Delete { .. }
            | Change::Revoke { .. }
            | Change::RevokeAll { .. }
            | Change::Suspend { .. }
            | Change::Resume { .. }
            | Change::Freeze
            | Change::Unfreeze
            | Change::TokenRevoke { .. } => false,
        }
    }
}

impl Overlay<'_> {
    /// The freeze, as the transaction sees it.
    pub(super) fn frozen(&self) -> Option<&Marked> {
        match &self.frozen {
            Some(planned) => planned.as_ref(),
            None => self.base.meta.frozen.as_ref(),
        }
    }

    /// Plans a break-glass change; `at` says who makes it, when and why.
    pub(super) fn plan_breakglass(&mut self, change: &Change<'_>, at: &Made) -> Result<Applied> {
        match *change {
            Change::Freeze => {
                if let Some(frozen) = self.frozen() {
                    return Ok(Applied::Frozen {
                        already: true,
                        since: frozen.at,
                    });
                }
                self.push(Mutation::SetFrozen(Some(Marked::of(at))));
                Ok(Applied::Frozen {
                    already: false,
                    since: at.at,
                })
            }
            Change::Unfreeze => {
                let was_frozen = self.frozen().is_some();
                if was_frozen {
                    self.push(Mutation::SetFrozen(None));
                }
                Ok(Applied::Unfrozen { was_frozen })
            }
            Change::RevokeAll { name } => {
                names::check_secret_name(name)?;
                if self.secret(name).is_none() {
                    return Err(Error::NoSuchSecret);
                }
                let services = self.holders(name);
                for service in &services {
                    self.push(Mutation::DeleteGrant(service.clone(), name.to_owned()));
                }
                Ok(Applied::RevokedAll { services })
            }
            Change::Suspend { service } => {
                names::check_service_name(service)?;
                let rec = self.service(service).ok_or(Error::NoSuchService)?;
                if let Some(mark) = &rec.suspended {
                    return Ok(Applied::Suspended {
                        already: true,
                        since: mark.at,
                    });
                }
                let mut rec = rec.clone();
                rec.suspended = Some(Marked::of(at));
                self.push(Mutation::PutService(service.to_owned(), rec));
                Ok(Applied::Suspended {
                    already: false,
                    since: at.at,
                })
            }
            Change::Resume { service } => {
                names::check_service_name(service)?;
                let rec = self.service(service).ok_or(Error::NoSuchService)?;
                if rec.suspended.is_none() {
                    return Ok(Applied::Resumed {
                        was_suspended: false,
                    });
                }
                let mut rec = rec.clone();
                rec.suspended = None;
                self.push(Mutation::PutService(service.to_owned(), rec));
                Ok(Applied::Resumed {
                    was_suspended: true,
                })
            }
            _ => Err(Error::Corrupt {
                what: "a change that is no break-glass change was planned as one",
            }),
        }
    }
}
