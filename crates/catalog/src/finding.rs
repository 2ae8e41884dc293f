//! [`Finding`]: one problem a plan or the lint reports, with a stable id.
//!
//! The id is the kind and the names it is about, joined by `/`
//! (`no-strategy/desktop/postgres_connection`): the same problem gets the same id in every
//! run, in plans and in the lint alike, so an issue tracker files it once. Names cannot
//! hold `/`, so ids are unambiguous.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of problem, as it appears at the head of the id.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// `no-class/SECRET`: the secret has no class.
    NoClass,
    /// `no-strategy/TIER/SECRET`: a secret a service deploys to TIER uses has no strategy
    /// there.
    NoStrategy,
    /// `infrastructure-would-leave/TIER/SECRET`: a declared strategy would ship an
    /// infrastructure secret off the core server (its class changed since); it is treated
    /// as stripped.
    InfrastructureWouldLeave,
    /// `serve-off-core/TIER/SECRET`: `serve` on a tier that is no longer core; nothing is
    /// served.
    ServeOffCore,
    /// `unknown-tier/TIER` or `unknown-tier/TIER/SECRET`: a tier asked for, or named by a
    /// strategy, that is not declared.
    UnknownTier,
    /// `tier-not-listed/SERVICE/TIER`: the service lists its tiers, and not this one.
    TierNotListed,
    /// `no-such-secret/SERVICE/SECRET`: a manifest names a secret that is neither in the
    /// catalog nor stored.
    NoSuchSecret,
    /// `not-granted/SERVICE/SECRET`: served on a core tier to a service not granted it.
    NotGranted,
    /// `no-value/SECRET`: served on a core tier, and the store has no value for it.
    NoValue,
    /// `not-present/TIER/SECRET`: delegated, and the reference is not marked present.
    NotPresent,
}

impl FindingKind {
    /// The kind as written in ids.
    pub fn as_str(self) -> &'static str {
        match self {
            FindingKind::NoClass => "no-class",
            FindingKind::NoStrategy => "no-strategy",
            FindingKind::InfrastructureWouldLeave => "infrastructure-would-leave",
            FindingKind::ServeOffCore => "serve-off-core",
            FindingKind::UnknownTier => "unknown-tier",
            FindingKind::TierNotListed => "tier-not-listed",
            FindingKind::NoSuchSecret => "no-such-secret",
            FindingKind::NotGranted => "not-granted",
            FindingKind::NoValue => "no-value",
            FindingKind::NotPresent => "not-present",
        }
    }
}

impl fmt::Display for FindingKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One problem, with what to do about it.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Finding {
    /// Stable: the kind and the names, joined by `/`.
    pub id: String,
    /// The kind.
    pub kind: FindingKind,
    /// The secret it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// The service it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// The tier it is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// What is wrong and what to do, for a person.
    pub message: String,
}

impl Finding {
    /// A finding; the id is made from the kind and `names`, in order.
    pub(crate) fn new(
        kind: FindingKind,
        names: &[&str],
        secret: Option<&str>,
        service: Option<&str>,
        tier: Option<&str>,
        message: String,
    ) -> Finding {
        let mut id = kind.as_str().to_string();
        for name in names {
            id.push('/');
            id.push_str(name);
        }
        Finding {
            id,
            kind,
            secret: secret.map(str::to_string),
            service: service.map(str::to_string),
            tier: tier.map(str::to_string),
            message,
        }
    }
}

pub(crate) fn no_class(secret: &str) -> Finding {
    Finding::new(
        FindingKind::NoClass,
        &[secret],
        Some(secret),
        None,
        None,
        format!(
            "secret `{secret}` has no class; set one: deploy secret meta {secret} --class \
             infrastructure|service|user"
        ),
    )
}

pub(crate) fn no_strategy(
    secret: &str,
    tier: &str,
    service: Option<&str>,
    used_by: &str,
) -> Finding {
    Finding::new(
        FindingKind::NoStrategy,
        &[tier, secret],
        Some(secret),
        service,
        Some(tier),
        format!(
            "secret `{secret}` has no strategy for tier `{tier}`{used_by}; declare one: deploy \
             secret strategy {secret} --tier {tier} (--strip | --generate T | --prompt ... | \
             --delegate REF)"
        ),
    )
}

pub(crate) fn rule_broken(
    secret: &str,
    tier: &str,
    infrastructure: bool,
    strategy: &str,
) -> Finding {
    if infrastructure {
        Finding::new(
            FindingKind::InfrastructureWouldLeave,
            &[tier, secret],
            Some(secret),
            None,
            Some(tier),
            format!(
                "secret `{secret}` is infrastructure on tier `{tier}` but declares `{strategy}` \
                 there, which would ship it off the core server; it is treated as stripped: \
                 declare --strip, or give the tier another class"
            ),
        )
    } else {
        Finding::new(
            FindingKind::ServeOffCore,
            &[tier, secret],
            Some(secret),
            None,
            Some(tier),
            format!(
                "secret `{secret}` declares `serve` on tier `{tier}`, which is not core; \
                 nothing is served there: declare another strategy, or make the tier core"
            ),
        )
    }
}

pub(crate) fn unknown_tier(tier: &str, secret: Option<&str>) -> Finding {
    match secret {
        None => Finding::new(
            FindingKind::UnknownTier,
            &[tier],
            None,
            None,
            Some(tier),
            format!("tier `{tier}` is not declared; declare it: deploy tier add {tier} [--core]"),
        ),
        Some(s) => Finding::new(
            FindingKind::UnknownTier,
            &[tier, s],
            Some(s),
            None,
            Some(tier),
            format!(
                "secret `{s}` has a strategy for tier `{tier}`, which is not declared; declare \
                 it (deploy tier add {tier}) or remove the strategy"
            ),
        ),
    }
}

pub(crate) fn not_present(secret: &str, tier: &str, reference: &str) -> Finding {
    Finding::new(
        FindingKind::NotPresent,
        &[tier, secret],
        Some(secret),
        None,
        Some(tier),
        format!(
            "secret `{secret}` is delegated to {reference} on tier `{tier}`, and not marked \
             present; once the provider holds it: deploy secret present {secret} --tier {tier}"
        ),
    )
}

pub(crate) fn no_such_secret(service: &str, secret: &str) -> Finding {
    Finding::new(
        FindingKind::NoSuchSecret,
        &[service, secret],
        Some(secret),
        Some(service),
        None,
        format!(
            "service `{service}`'s manifest names secret `{secret}`, which is neither in the \
             catalog nor stored; declare it, or set it: deploy secret set {secret}"
        ),
    )
}
