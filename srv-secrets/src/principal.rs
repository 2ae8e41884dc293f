//! Who is asking: the principal of a connection, decided from the transport at attach,
//! and the view (tree) that the attach's aname selects.
//!
//! Over a unix socket the peer's uid (SO_PEERCRED) decides: uid 0 and the uid that ran
//! `init` are the admin; a uid mapped to a service is that service; anyone else is refused.
//! Over TLS the name the client's verified certificate gives decides (its subject's
//! Common Name; the CA of `--client-ca` is trusted to issue names): `admin` is the admin,
//! a service's name is that service, any other name is refused.
//!
//! A transport that proves nothing of its peer ([`needs_token`]: plain TCP, and TLS
//! without a client certificate) must present an API token, at attach (9P's Tauth): the
//! token decides ([`principal_of_token`]). There is no anonymous principal. The client's
//! uname is never consulted.
//!
//! The same decides, at accept, how the server core admits a connection
//! ([`admission_of`]): those who are someone as principals, the rest as strangers (a
//! connection that must present a token is a stranger until it has).

use ninep::Error;
use ninep::server::{Admission, Peer, Transport};
use secrets::{TokenHolder, Vault};

/// The authenticated party behind a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    /// The operator: root or the uid that ran `init`.
    Admin,
    /// A service, by the uid mapped to it, the name its certificate gives, or one of
    /// its API tokens.
    Service {
        /// The service's name.
        name: String,
        /// The uid it connected with; the mapping is checked again on every request.
        /// `None` over a transport without uids: a verified certificate named it (the
        /// name is all there is to check again: the service exists), or a token proved
        /// it (the token is checked again on every request: `fs/fid.rs`).
        uid: Option<u32>,
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

/// The anames of the admin tree (no service may be called by one:
/// [`model::RESERVED_SERVICE_NAMES`]).
const ADMIN_ANAMES: [&str; 2] = ["", model::ADMIN_ANAME];

/// Whether a connection from `peer` must present an API token at attach: its transport
/// proves nothing of who it is (plain TCP; TLS without a client certificate, whose
/// certificate, when it has one, is the identity instead). The one place this is decided.
pub fn needs_token(peer: &Peer) -> bool {
    match peer.transport {
        Transport::Unix => false,
        Transport::Tcp => true,
        Transport::Tls => peer.certificate.is_none(),
    }
}

/// The principal of a connection's peer, from its transport. Unknown peers are
/// "permission denied"; a peer that must present a token ([`needs_token`]) is
/// "authentication required": it proves itself at attach, with [`principal_of_token`].
/// Nobody is anonymous here.
pub fn principal_of(vault: &Vault, peer: &Peer) -> Result<Principal, Error> {
    if needs_token(peer) {
        return Err(Error::new(ninep::ename::AUTH_REQUIRED));
    }
    let Some(uid) = peer.uid else {
        return match peer.certificate.as_deref() {
            Some(model::ADMIN_ANAME) => Ok(Principal::Admin),
            Some(name) if vault.has_service(name) => Ok(Principal::Service {
                name: name.to_string(),
                uid: None,
            }),
            // A unix peer without credentials, or a name that is no one's.
            _ => Err(Error::permission_denied()),
        };
    };
    if uid == 0 || uid == vault.admin_uid() {
        return Ok(Principal::Admin);
    }
    match vault.service_for_uid(uid) {
        Some(name) => Ok(Principal::Service {
            name,
            uid: Some(uid),
        }),
        None => Err(Error::permission_denied()),
    }
}

/// The principal a token proved ([`Vault::authenticate_token`]).
pub fn principal_of_token(holder: &TokenHolder) -> Principal {
    match &holder.principal {
        secrets::Principal::Service(name) => Principal::Service {
            name: name.clone(),
            uid: None,
        },
        // Tokens are made for the admin or a service only.
        secrets::Principal::Admin | secrets::Principal::Local => Principal::Admin,
    }
}

/// How the core should admit a new connection from `peer`, before it says anything.
/// Root, the admin's uid and each service's uid are principals, one per uid, and so is
/// each name a certificate gives (`admin`, a service's), so that one that floods and does
/// not read its replies stalls only itself. Any other uid or name is a stranger: let in,
/// to be told "permission denied" at attach, with its own few slots and next to nothing
/// to spend. A unix peer without a uid can never be anyone, and is refused.
///
/// A peer that must present a token is a stranger until it has: then the core makes its
/// connection one of the token's principal's ([`token_admission_key`]).
pub fn admission_of(vault: &Vault, peer: &Peer) -> Admission {
    if needs_token(peer) {
        return Admission::Stranger;
    }
    let known = principal_of(vault, peer).is_ok();
    match (peer.uid, peer.certificate.as_deref()) {
        (Some(uid), _) if known => Admission::Principal(format!("uid {uid}")),
        (None, Some(name)) if known => Admission::Principal(format!("certificate {name}")),
        (Some(_), _) | (None, Some(_)) => Admission::Stranger,
        (None, None) => Admission::Refuse,
    }
}

/// The key the core admits a connection under once a token proved `principal`: one
/// pool and connection cap per principal proven by tokens, apart from those of uids.
pub fn token_admission_key(principal: &Principal) -> String {
    match principal {
        Principal::Admin => "token admin".to_string(),
        Principal::Service { name, .. } => format!("token service {name}"),
    }
}

/// The view an attach with `aname` gets. The admin may attach the admin tree or any
/// existing service's view; a service only its own view. Every other aname, existing
/// or not, is "permission denied", so anames reveal nothing.
///
/// One refusal says more: a service asking for the admin tree by its name, "admin" (as
/// `deploy` does), is told who it is and who the admin is ([`not_admin`]), so that an
/// operator who ran deploy as a service's uid learns what to do. That tells a service
/// only its own name and the admin's uid; a uid that is nobody never gets this far.
///
/// While deploys are frozen, the admin's attach of a service's view is refused with
/// [`model::FROZEN`]: it is how a deployer mounts a new instance (`deploy service run`,
/// `deploy mount`). Views attached before the freeze go on, and so do a service's own
/// attaches (an instance that restarts by itself).
pub fn view_for(vault: &Vault, principal: &Principal, aname: &str) -> Result<View, Error> {
    match principal {
        Principal::Admin if ADMIN_ANAMES.contains(&aname) => Ok(View::Admin),
        Principal::Admin if vault.has_service(aname) && vault.is_frozen() => {
            Err(Error::new(model::FROZEN))
        }
        Principal::Admin if vault.has_service(aname) => Ok(View::Service {
            service: aname.to_string(),
            by: Principal::Admin,
        }),
        Principal::Service { name, .. } if aname.is_empty() || aname == name => Ok(View::Service {
            service: name.clone(),
            by: principal.clone(),
        }),
        Principal::Service {
            name,
            uid: Some(uid),
        } if aname == model::ADMIN_ANAME => Err(not_admin(*uid, name, vault.admin_uid())),
        Principal::Service { uid: None, .. } if aname == model::ADMIN_ANAME => {
            Err(Error::new(format!(
                "{}: a service's certificate or token; the admin tree takes the admin's",
                ninep::ename::PERMISSION_DENIED
            )))
        }
        _ => Err(Error::permission_denied()),
    }
}

/// What a service's uid asking for the admin tree is told: `permission denied: uid 1001
/// is service web; the admin is root or uid 1000` (`...; the admin is root` when root
/// made the store). It starts "permission denied" as every refusal does; the rest is
/// [`model::NotAdmin`], which deploy reads back with the same type.
fn not_admin(uid: u32, service: &str, admin_uid: u32) -> Error {
    let refusal = model::NotAdmin {
        uid,
        service: service.to_string(),
        admin_uid: (admin_uid != 0).then_some(admin_uid),
    };
    Error::new(format!(
        "{}: {}",
        ninep::ename::PERMISSION_DENIED,
        refusal.render()
    ))
}

impl View {
    /// Checks, on every request, that the view is still valid: the service still exists,
    /// is not suspended, and a service connection's uid still maps to it. A removed,
    /// remapped or suspended service loses access at once, even through fids it holds
    /// (and "permission denied" is what Linux and 9pfuse both make EACCES).
    pub fn still_valid(&self, vault: &Vault) -> Result<(), Error> {
        match self {
            View::Admin => Ok(()),
            View::Service { service, by } => {
                let valid = match by {
                    // A token's principal: the token is checked apart (`fs/fid.rs`).
                    Principal::Admin | Principal::Service { uid: None, .. } => {
                        vault.serves(service)
                    }
                    Principal::Service { uid: Some(uid), .. } => vault.uid_serves(*uid, service),
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    const ADMIN: u32 = 1000;
    const WEB: u32 = 1001;
    const API: u32 = 1002;
    const STRANGER: u32 = 1003;

    /// A vault made by uid 1000, with services web (1001) and api (1002).
    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, ADMIN).unwrap();
        let vault = Vault::open(&data, None).unwrap();
        vault.service_set_uid("web", WEB).unwrap();
        vault.service_set_uid("api", API).unwrap();
        (dir, vault)
    }

    fn peer(uid: Option<u32>) -> Peer {
        Peer {
            uid,
            addr: "test".into(),
            ..Peer::default()
        }
    }

    fn service(name: &str, uid: u32) -> Principal {
        Principal::Service {
            name: name.into(),
            uid: Some(uid),
        }
    }

    /// A TLS peer whose verified certificate gives `name` (None: it sent none).
    fn certified(name: Option<&str>) -> Peer {
        Peer {
            transport: Transport::Tls,
            certificate: name.map(str::to_string),
            addr: "tls:test".into(),
            ..Peer::default()
        }
    }

    fn denied<T: std::fmt::Debug>(r: Result<T, Error>) {
        assert_eq!(r.unwrap_err(), Error::permission_denied());
    }

    #[test]
    fn the_uid_decides_the_principal() {
        let (_dir, v) = vault();
        assert_eq!(principal_of(&v, &peer(Some(0))).unwrap(), Principal::Admin);
        assert_eq!(
            principal_of(&v, &peer(Some(ADMIN))).unwrap(),
            Principal::Admin
        );
        assert_eq!(
            principal_of(&v, &peer(Some(WEB))).unwrap(),
            service("web", WEB)
        );
        assert_eq!(
            principal_of(&v, &peer(Some(API))).unwrap(),
            service("api", API)
        );
        denied(principal_of(&v, &peer(Some(STRANGER))));
        // A unix peer without credentials is nobody.
        denied(principal_of(&v, &peer(None)));
        // A remapped service is known by its new uid only.
        v.service_set_uid("web", STRANGER).unwrap();
        denied(principal_of(&v, &peer(Some(WEB))));
        assert_eq!(
            principal_of(&v, &peer(Some(STRANGER))).unwrap(),
            service("web", STRANGER)
        );
    }

    #[test]
    fn a_certificate_names_the_admin_or_a_service_and_no_certificate_is_nobody() {
        let (_dir, v) = vault();
        assert_eq!(
            principal_of(&v, &certified(Some("admin"))).unwrap(),
            Principal::Admin
        );
        let web = Principal::Service {
            name: "web".into(),
            uid: None,
        };
        assert_eq!(principal_of(&v, &certified(Some("web"))).unwrap(), web);
        denied(principal_of(&v, &certified(Some("nosuch"))));
        // "secrets" is the admin tree's directory, never a service.
        denied(principal_of(&v, &certified(Some("secrets"))));
        let required = |e: Error| assert!(e.0.starts_with("authentication required"), "{e}");
        required(principal_of(&v, &certified(None)).unwrap_err());
        let tcp = Peer {
            transport: Transport::Tcp,
            addr: "tcp:test".into(),
            ..Peer::default()
        };
        required(principal_of(&v, &tcp).unwrap_err());
        // Admitted: a principal per name; the others as strangers, to hear why at attach.
        let cert_key = |name: &str| Admission::Principal(format!("certificate {name}"));
        assert_eq!(
            admission_of(&v, &certified(Some("admin"))),
            cert_key("admin")
        );
        assert_eq!(admission_of(&v, &certified(Some("web"))), cert_key("web"));
        assert_eq!(
            admission_of(&v, &certified(Some("nosuch"))),
            Admission::Stranger
        );
        assert_eq!(admission_of(&v, &certified(None)), Admission::Stranger);
        assert_eq!(admission_of(&v, &tcp), Admission::Stranger);
        // A service's view by certificate: its own only, and "admin" is refused with
        // what the admin tree takes (there is no uid to tell it about).
        let own = view_for(&v, &web, "").unwrap();
        assert_eq!(view_for(&v, &web, "web").unwrap(), own);
        denied(view_for(&v, &web, "api"));
        let e = view_for(&v, &web, "admin").unwrap_err();
        assert!(
            e.0.starts_with("permission denied: a service's certificate"),
            "{e}"
        );
        // The view lasts while the service does; a certificate is no uid to remap.
        own.still_valid(&v).unwrap();
        v.service_set_uid("web", STRANGER).unwrap();
        own.still_valid(&v).unwrap();
        v.service_remove("web").unwrap();
        denied(own.still_valid(&v));
        denied(principal_of(&v, &certified(Some("web"))));
    }

    #[test]
    fn known_uids_are_admitted_as_principals_one_per_uid_and_others_as_strangers() {
        let (_dir, v) = vault();
        let admitted = |uid| admission_of(&v, &peer(uid));
        let uid_key = |uid: u32| Admission::Principal(format!("uid {uid}"));
        assert_eq!(admitted(Some(0)), uid_key(0));
        assert_eq!(admitted(Some(ADMIN)), uid_key(ADMIN));
        assert_eq!(admitted(Some(WEB)), uid_key(WEB));
        assert_eq!(admitted(Some(API)), uid_key(API));
        assert_eq!(admitted(Some(STRANGER)), Admission::Stranger);
        assert_eq!(admitted(None), Admission::Refuse, "no uid, no principal");
        // Mapped, a stranger's next connection is a principal's.
        v.service_set_uid("db", STRANGER).unwrap();
        assert_eq!(admitted(Some(STRANGER)), uid_key(STRANGER));
    }

    #[test]
    fn the_aname_picks_the_view() {
        let (_dir, v) = vault();
        let admin = Principal::Admin;
        assert_eq!(view_for(&v, &admin, "").unwrap(), View::Admin);
        assert_eq!(view_for(&v, &admin, "admin").unwrap(), View::Admin);
        // The admin may mount a service's view, on its behalf.
        assert_eq!(
            view_for(&v, &admin, "web").unwrap(),
            View::Service {
                service: "web".into(),
                by: Principal::Admin
            }
        );
        denied(view_for(&v, &admin, "nosuch"));
        let web = service("web", WEB);
        let own = View::Service {
            service: "web".into(),
            by: web.clone(),
        };
        assert_eq!(view_for(&v, &web, "").unwrap(), own);
        assert_eq!(view_for(&v, &web, "web").unwrap(), own);
        // Another service's view and a missing name look the same.
        for aname in ["api", "nosuch", "secrets"] {
            denied(view_for(&v, &web, aname));
        }
        // Asking for the admin tree by name, a service learns who it is and who the
        // admin is (deploy run as a service's uid says so).
        assert_eq!(
            view_for(&v, &web, "admin").unwrap_err().0,
            "permission denied: uid 1001 is service web; the admin is root or uid 1000"
        );
        assert_eq!(
            not_admin(1002, "api", 0).0,
            "permission denied: uid 1002 is service api; the admin is root"
        );
    }

    #[test]
    fn a_freeze_refuses_the_admins_new_attaches_of_a_service_view_only() {
        let (_dir, v) = vault();
        let before = view_for(&v, &Principal::Admin, "web").unwrap();
        let actor = secrets::Actor::admin(Some(0));
        v.apply(&actor, &[secrets::Change::Freeze]).unwrap();
        let e = view_for(&v, &Principal::Admin, "web").unwrap_err();
        assert_eq!(e.0, "frozen (see deploy status)");
        // The admin tree, a service's own attach, and views attached before go on; a
        // name that is no service is still just refused.
        assert_eq!(view_for(&v, &Principal::Admin, "").unwrap(), View::Admin);
        assert!(view_for(&v, &service("web", WEB), "").is_ok());
        before.still_valid(&v).unwrap();
        denied(view_for(&v, &Principal::Admin, "nosuch"));
        v.apply(&actor, &[secrets::Change::Unfreeze]).unwrap();
        assert!(view_for(&v, &Principal::Admin, "web").is_ok());
    }

    #[test]
    fn a_suspended_service_loses_every_view_until_resumed() {
        let (_dir, v) = vault();
        let by_admin = view_for(&v, &Principal::Admin, "web").unwrap();
        let by_web = view_for(&v, &service("web", WEB), "").unwrap();
        let by_api = view_for(&v, &service("api", API), "").unwrap();
        let actor = secrets::Actor::admin(Some(0));
        v.apply(&actor, &[secrets::Change::Suspend { service: "web" }])
            .unwrap();
        denied(by_admin.still_valid(&v));
        denied(by_web.still_valid(&v));
        by_api.still_valid(&v).unwrap();
        v.apply(&actor, &[secrets::Change::Resume { service: "web" }])
            .unwrap();
        by_admin.still_valid(&v).unwrap();
        by_web.still_valid(&v).unwrap();
    }

    #[test]
    fn a_view_lasts_while_its_service_and_mapping_do() {
        let (_dir, v) = vault();
        let by_admin = view_for(&v, &Principal::Admin, "web").unwrap();
        let by_web = view_for(&v, &service("web", WEB), "").unwrap();
        let by_api = view_for(&v, &service("api", API), "").unwrap();
        for view in [&View::Admin, &by_admin, &by_web, &by_api] {
            view.still_valid(&v).unwrap();
        }
        assert_eq!(View::Admin.owner(), "admin");
        assert_eq!(by_admin.owner(), "web");
        // Remapping web to another uid ends the view its old uid holds, not the admin's.
        v.service_set_uid("web", STRANGER).unwrap();
        denied(by_web.still_valid(&v));
        by_admin.still_valid(&v).unwrap();
        // Removing a service ends every view of it.
        v.service_remove("web").unwrap();
        denied(by_admin.still_valid(&v));
        by_api.still_valid(&v).unwrap();
        View::Admin.still_valid(&v).unwrap();
        // Made again with the same name and uid, it is the same principal again.
        v.service_set_uid("web", WEB).unwrap();
        by_admin.still_valid(&v).unwrap();
        by_web.still_valid(&v).unwrap();
    }
}

#[cfg(test)]
mod token_tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn over(transport: Transport, uid: Option<u32>, certificate: Option<&str>) -> Peer {
        Peer {
            transport,
            uid,
            certificate: certificate.map(str::to_owned),
            addr: "test".into(),
            ..Peer::default()
        }
    }

    #[test]
    fn only_a_transport_that_proves_nothing_needs_a_token() {
        assert!(!needs_token(&over(Transport::Unix, Some(1000), None)));
        assert!(needs_token(&over(Transport::Tcp, None, None)));
        // TLS: a client certificate is the identity; without one, a token is.
        assert!(needs_token(&over(Transport::Tls, None, None)));
        assert!(!needs_token(&over(Transport::Tls, None, Some("web"))));
    }

    #[test]
    fn a_peer_that_needs_a_token_is_a_stranger_and_nobody_until_it_presents_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        v.service_set_uid("web", 1001).unwrap();
        // Even a TCP peer that somehow carried a uid is no one by it.
        for peer in [
            over(Transport::Tcp, None, None),
            over(Transport::Tcp, Some(0), None),
            over(Transport::Tls, None, None),
        ] {
            assert_eq!(admission_of(&v, &peer), Admission::Stranger);
            let e = principal_of(&v, &peer).unwrap_err();
            assert!(e.0.starts_with("authentication required"), "{e}");
        }
        // A service's token: its own view, not the admin tree.
        let holder = TokenHolder {
            id: "0123456789abcdef".into(),
            principal: secrets::Principal::Service("web".into()),
            expires: None,
        };
        let web = principal_of_token(&holder);
        assert_eq!(token_admission_key(&web), "token service web");
        assert!(matches!(
            view_for(&v, &web, "").unwrap(),
            View::Service { .. }
        ));
        let e = view_for(&v, &web, "admin").unwrap_err();
        assert!(
            e.0.starts_with("permission denied: a service's certificate or token"),
            "{e}"
        );
        assert_eq!(
            view_for(&v, &web, "api").unwrap_err(),
            Error::permission_denied()
        );
        let admin = principal_of_token(&TokenHolder {
            principal: secrets::Principal::Admin,
            ..holder
        });
        assert_eq!(view_for(&v, &admin, "").unwrap(), View::Admin);
        assert_eq!(token_admission_key(&admin), "token admin");
    }
}
