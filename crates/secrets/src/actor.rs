//! Who makes a change: every mutation of the vault carries an [`Actor`].
//!
//! The vault does not decide who someone is (the server does, from the transport); it is
//! told, and passes it on with the change: to the log today, to an audit record later,
//! without any caller having to be touched again.

use std::fmt;

pub use model::MAX_REASON_LEN;

use crate::error::{Error, Result};

/// On whose authority a change is made.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Principal {
    /// The operator: root or the uid that ran `init`.
    Admin,
    /// A service, by name.
    Service(String),
    /// This process on its own behalf: the recovery `open` runs, and the convenience
    /// methods ([`Vault::set`](crate::Vault::set), ...) that tools and tests call.
    Local,
}

/// Who made a change: the principal, the uid of the connection it came over (or the API
/// token it proved itself with), and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    principal: Principal,
    uid: Option<u32>,
    token: Option<String>,
    reason: Option<String>,
}

impl Actor {
    /// The admin, over a connection of unix uid `uid` (`None`: a transport without one).
    pub fn admin(uid: Option<u32>) -> Actor {
        Actor {
            principal: Principal::Admin,
            uid,
            token: None,
            reason: None,
        }
    }

    /// The service `name`, over a connection of unix uid `uid`.
    pub fn service(name: impl Into<String>, uid: Option<u32>) -> Actor {
        Actor {
            principal: Principal::Service(name.into()),
            uid,
            token: None,
            reason: None,
        }
    }

    /// This process, on its own behalf.
    pub fn local() -> Actor {
        Actor {
            principal: Principal::Local,
            uid: None,
            token: None,
            reason: None,
        }
    }

    /// The same actor, saying why (at most [`MAX_REASON_LEN`] bytes, checked when a change
    /// is applied).
    #[must_use]
    pub fn with_reason(mut self, reason: impl Into<String>) -> Actor {
        self.reason = Some(reason.into());
        self
    }

    /// On whose authority.
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The unix uid of the connection the change came over, if the transport has one.
    pub fn uid(&self) -> Option<u32> {
        self.uid
    }

    /// Why, if the actor said.
    pub fn reason(&self) -> Option<&str> {
        self.reason.as_deref()
    }

    /// The same actor, proven by the API token `id` (its ID, never the token).
    #[must_use]
    pub fn with_token(mut self, id: impl Into<String>) -> Actor {
        self.token = Some(id.into());
        self
    }

    /// The ID of the API token the actor proved itself with, if it did.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The principal as [`Actor`]'s `Display` shows it, without the uid: `admin`,
    /// `service web`, `local` (what a version's record keeps of who made it).
    pub fn principal_text(&self) -> String {
        match &self.principal {
            Principal::Admin => "admin".to_owned(),
            Principal::Service(name) => format!("service {name}"),
            Principal::Local => "local".to_owned(),
        }
    }

    /// Refuses a reason past [`MAX_REASON_LEN`].
    pub(crate) fn check(&self) -> Result<()> {
        match &self.reason {
            Some(r) if r.len() > MAX_REASON_LEN => Err(Error::TooLarge {
                what: "reason",
                limit: MAX_REASON_LEN,
            }),
            _ => Ok(()),
        }
    }
}

/// `admin (uid 1000)`, `service web (uid 1001)`, `admin (token 0123456789abcdef)`,
/// `local`; the reason is not shown.
impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.principal_text())?;
        match (self.uid, &self.token) {
            (Some(uid), _) => write!(f, " (uid {uid})"),
            (None, Some(id)) => write!(f, " (token {id})"),
            (None, None) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_who_and_checks_the_reason() {
        assert_eq!(Actor::admin(Some(1000)).to_string(), "admin (uid 1000)");
        assert_eq!(
            Actor::service("web", Some(1001)).to_string(),
            "service web (uid 1001)"
        );
        assert_eq!(Actor::local().to_string(), "local");
        let t = Actor::admin(None).with_token("0123456789abcdef");
        assert_eq!(t.to_string(), "admin (token 0123456789abcdef)");
        assert_eq!(t.token(), Some("0123456789abcdef"));
        let a = Actor::admin(None).with_reason("incident 42");
        assert_eq!(a.reason(), Some("incident 42"));
        assert!(a.check().is_ok());
        let long = Actor::local().with_reason("x".repeat(MAX_REASON_LEN + 1));
        assert!(matches!(
            long.check(),
            Err(Error::TooLarge { what: "reason", .. })
        ));
    }
}
