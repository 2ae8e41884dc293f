//! One fid's state, and the one way to it: [`SecretsFid::valid`], which checks the fid's
//! view before a handler sees its node, its view or what it opened.
//!
//! The fields are private to this module, so a handler cannot reach them without passing
//! the check: every request kind on a fid (walk, stat, wstat, open, read, readdir, write,
//! create, remove) runs it, once, before it does anything. Only the clunk does not, since
//! a clunk always succeeds; it can only take what the fid opened.

use std::sync::{Arc, Mutex, MutexGuard};

use ninep::{Error, ename};
use secrets::{Actor, Vault};

use super::ctl::Recent;
use super::node::{Node, Tree};
use super::opened::Opened;
use super::reports::Reports;
use crate::principal::{Principal, View};

/// The state of one fid: its view, its node, and what it opened.
pub struct SecretsFid {
    view: View,
    node: Node,
    /// The connection's unix uid (SO_PEERCRED): with the view, who makes a change.
    uid: Option<u32>,
    /// The ID of the API token the attach was made with, over a transport without uids:
    /// it must still hold for every request.
    token: Option<Arc<str>>,
    opened: Mutex<Option<Arc<Opened>>>,
    /// The ctl results of the attach this fid was walked from (what `cat ctl` shows on a
    /// fid that wrote nothing).
    recent: Arc<Recent>,
}

/// A fid whose view was found valid for the request at hand: how the handlers reach its
/// node, its view and what it opened.
pub struct Valid<'a> {
    fid: &'a SecretsFid,
    /// What the fid's view sees of the vault.
    pub tree: Tree<'a>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded Option is valid after any single assignment.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SecretsFid {
    /// The fid of an attach: the root of `view`, for a connection of `uid`, or one that
    /// presented the token `token` (its ID).
    pub(super) fn attached(view: View, uid: Option<u32>, token: Option<Arc<str>>) -> SecretsFid {
        let root = Node::root(&view);
        SecretsFid::at(view, root, uid, token, Arc::default())
    }

    fn at(
        view: View,
        node: Node,
        uid: Option<u32>,
        token: Option<Arc<str>>,
        recent: Arc<Recent>,
    ) -> SecretsFid {
        SecretsFid {
            view,
            node,
            uid,
            token,
            opened: Mutex::new(None),
            recent,
        }
    }

    /// A copy naming the same file, not open (a walk of no names: the core's clone,
    /// which reveals nothing and cannot fail).
    pub(super) fn unopened_copy(&self) -> SecretsFid {
        SecretsFid::at(
            self.view.clone(),
            self.node.clone(),
            self.uid,
            self.token.clone(),
            self.recent.clone(),
        )
    }

    /// Checks, for this request, that the fid's view is still valid
    /// ([`View::still_valid`]: the service still exists, and a service's uid still maps
    /// to it), so that a removed or remapped service loses access at once, through the
    /// fids it holds too; and that the token it was attached with, if any, still holds
    /// (not revoked, not expired). The fid's state is reached only through what this
    /// returns.
    pub(super) fn valid<'a>(
        &'a self,
        vault: &'a Vault,
        reports: &'a Reports,
        started: u32,
    ) -> Result<Valid<'a>, Error> {
        if let Some(id) = &self.token
            && !vault.token_holds(id)
        {
            return Err(Error::permission_denied());
        }
        self.view.still_valid(vault)?;
        Ok(Valid {
            fid: self,
            tree: Tree {
                vault,
                reports,
                view: &self.view,
                started,
            },
        })
    }

    /// What the fid opened, taken from it at its clunk.
    pub(super) fn take_opened(&self) -> Option<Arc<Opened>> {
        lock(&self.opened).take()
    }
}

impl Valid<'_> {
    /// The file the fid names.
    pub fn node(&self) -> &Node {
        &self.fid.node
    }

    /// The fid's view.
    pub fn view(&self) -> &View {
        &self.fid.view
    }

    /// Who makes a change through this fid, or opens a file: the service whose own view
    /// it is, else the admin (on a service's behalf, for a service's view it attached),
    /// over the connection's uid or with its token.
    pub fn actor(&self) -> Actor {
        let actor = match &self.fid.view {
            View::Service {
                by: Principal::Service { name, .. },
                ..
            } => Actor::service(name.clone(), self.fid.uid),
            View::Service { .. } | View::Admin => Actor::admin(self.fid.uid),
        };
        match &self.fid.token {
            Some(id) => actor.with_token(&**id),
            None => actor,
        }
    }

    /// The ctl results of the fid's attach.
    pub fn recent(&self) -> &Arc<Recent> {
        &self.fid.recent
    }

    /// What the fid opened (the core reads and writes only fids it saw opened).
    pub fn opened(&self) -> Result<Arc<Opened>, Error> {
        lock(&self.fid.opened)
            .clone()
            .ok_or_else(|| Error::new(ename::BOTCH))
    }

    /// Records what an open gave.
    pub fn set_opened(&self, opened: Opened) {
        *lock(&self.fid.opened) = Some(Arc::new(opened));
    }

    /// The fid a walk from this one to `node` makes: same view, uid and attach.
    pub fn walked_to(&self, node: Node) -> SecretsFid {
        SecretsFid::at(
            self.fid.view.clone(),
            node,
            self.fid.uid,
            self.fid.token.clone(),
            self.fid.recent.clone(),
        )
    }
}
