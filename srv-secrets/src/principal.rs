//! Who is asking: the principal of a connection, decided from the transport at attach,
//! and the view (tree) that the attach's aname selects.
//!
//! Over a unix socket the peer's uid (SO_PEERCRED) decides: uid 0 and the uid that ran
//! `init` are the admin; a uid mapped to a service is that service; anyone else is refused.
//! The client's uname is never consulted.

use ninep::Error;
use ninep::server::Peer;
use secrets::Vault;

/// The authenticated party behind a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator: root or the uid that ran `init`.
    Admin,
    /// A service, by the uid mapped to it.
    Service {
        /// The service's name.
        name: String,
        /// The uid it connected with; the mapping is checked again on every request.
        uid: u32,
    },
}

/// The tree a fid belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum View {
    /// The admin tree: `/secrets/{ctl,store/,grants/,services/,key,status}`.
    Admin,
    /// A service's view: `/secret/*` and `/config/*`.
    Service {
        /// Whose view.
        service: String,
        /// Who attached: the service itself, or the admin on its behalf.
        by: Principal,
    },
}

/// Names no service may take, because anames use them for the admin tree.
const ADMIN_ANAMES: [&str; 2] = ["", "admin"];

/// The principal of a connection's peer. Anonymous and unknown peers are refused.
pub fn principal_of(vault: &Vault, peer: &Peer) -> Result<Principal, Error> {
    let Some(uid) = peer.uid else {
        // No credentials from the transport (TCP): nobody is anonymous here.
        return Err(Error::permission_denied());
    };
    if uid == 0 || uid == vault.admin_uid() {
        return Ok(Principal::Admin);
    }
    match vault.service_for_uid(uid) {
        Some(name) => Ok(Principal::Service { name, uid }),
        None => Err(Error::permission_denied()),
    }
}

/// The view an attach with `aname` gets. The admin may attach the admin tree or any
/// existing service's view; a service only its own view. Every other aname, existing
/// or not, is "permission denied", so anames reveal nothing.
pub fn view_for(vault: &Vault, principal: &Principal, aname: &str) -> Result<View, Error> {
    match principal {
        Principal::Admin if ADMIN_ANAMES.contains(&aname) => Ok(View::Admin),
        Principal::Admin if vault.has_service(aname) => Ok(View::Service {
            service: aname.to_string(),
            by: Principal::Admin,
        }),
        Principal::Service { name, .. } if aname.is_empty() || aname == name => Ok(View::Service {
            service: name.clone(),
            by: principal.clone(),
        }),
        _ => Err(Error::permission_denied()),
    }
}

impl View {
    /// Checks, on every request, that the view is still valid: the service still exists
    /// and a service connection's uid still maps to it. A removed or remapped service
    /// loses access at once, even through fids it holds.
    pub fn still_valid(&self, vault: &Vault) -> Result<(), Error> {
        match self {
            View::Admin => Ok(()),
            View::Service { service, by } => {
                let valid = match by {
                    Principal::Admin => vault.has_service(service),
                    Principal::Service { uid, .. } => vault.uid_maps_to(*uid, service),
                };
                if valid {
                    Ok(())
                } else {
                    Err(Error::permission_denied())
                }
            }
        }
    }

    /// The owner shown in stats: the principal the files are served to.
    pub fn owner(&self) -> &str {
        match self {
            View::Admin => "admin",
            View::Service { service, .. } => service,
        }
    }
}
