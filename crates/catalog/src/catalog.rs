//! [`Catalog`]: the declared tiers, services' tiers and secrets' metadata, always valid.
//!
//! Every way in checks every rule: [`Catalog::from_parts`], loading a file
//! ([`crate::load`]), and the mutators the ctl commands map onto (`deploy tier add` is
//! [`Catalog::declare_tier`], `deploy secret meta` is [`Catalog::set_meta`], `deploy secret
//! strategy` is [`Catalog::set_strategy`], `deploy secret present` is
//! [`Catalog::set_present`]). A mutator that would break a rule changes nothing and says
//! why. The one way around is [`Catalog::from_parts_unchecked`], for a store reloading what
//! it wrote under the rules of its day; [`crate::lint`] and [`crate::plan`] report whatever
//! such a catalog breaks now, and never let a plan ship infrastructure.

use std::collections::BTreeMap;

use crate::error::{DeclError, Refusal};
use crate::model::{Class, SecretMeta, Service, Strategy, Tier, TierPolicy, check_rule};
use crate::names::{is_valid_secret, is_valid_service, is_valid_tier};
use crate::period::Period;
use crate::template::Template;

/// Most tiers a catalog declares.
pub const MAX_TIERS: usize = 256;
/// Most secrets a catalog holds.
pub const MAX_SECRETS: usize = 100_000;
/// Most services a catalog declares.
pub const MAX_SERVICES: usize = 100_000;

/// The deployment catalog.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Catalog {
    pub(crate) tiers: BTreeMap<String, Tier>,
    pub(crate) services: BTreeMap<String, Service>,
    pub(crate) secrets: BTreeMap<String, SecretMeta>,
}

/// A change to a secret's metadata, as `deploy secret meta` makes it: `None` keeps a field,
/// `Some(None)` clears it, `Some(Some(x))` sets it.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct MetaUpdate {
    /// The class.
    pub class: Option<Option<Class>>,
    /// The owner.
    pub owner: Option<Option<String>>,
    /// The rotation period (clearing it restores [`Period::DEFAULT`]).
    pub rotate_every: Option<Option<Period>>,
    /// The description.
    pub description: Option<Option<String>>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Catalog {
        Catalog::default()
    }

    /// A catalog of these declarations, every rule checked.
    ///
    /// # Errors
    /// A [`Refusal`] listing every declaration that breaks a rule.
    pub fn from_parts(
        tiers: BTreeMap<String, Tier>,
        services: BTreeMap<String, Service>,
        secrets: BTreeMap<String, SecretMeta>,
    ) -> Result<Catalog, Refusal> {
        let catalog = Catalog::from_parts_unchecked(tiers, services, secrets);
        catalog.validate()?;
        Ok(catalog)
    }

    /// A catalog of these declarations, unchecked: for a store reloading what it checked
    /// when it wrote it. Service tier lists are sorted here.
    pub fn from_parts_unchecked(
        tiers: BTreeMap<String, Tier>,
        mut services: BTreeMap<String, Service>,
        secrets: BTreeMap<String, SecretMeta>,
    ) -> Catalog {
        for service in services.values_mut() {
            if let Some(t) = &mut service.tiers {
                t.sort();
            }
        }
        Catalog {
            tiers,
            services,
            secrets,
        }
    }

    /// Checks every rule.
    ///
    /// # Errors
    /// A [`Refusal`] listing every declaration that breaks one, in name order.
    pub fn validate(&self) -> Result<(), Refusal> {
        let mut errors = Vec::new();
        for what in self.limits() {
            errors.push(what);
        }
        for (name, tier) in &self.tiers {
            errors.extend(check_tier(name, tier));
        }
        for (name, service) in &self.services {
            errors.extend(check_service(&self.tiers, name, service));
        }
        for (name, meta) in &self.secrets {
            errors.extend(
                check_secret(&self.tiers, name, meta)
                    .into_iter()
                    .map(|(_, e)| e),
            );
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Refusal {
                errors: errors.into_iter().map(Into::into).collect(),
            })
        }
    }

    pub(crate) fn limits(&self) -> Vec<DeclError> {
        let mut errors = Vec::new();
        for (what, len, limit) in [
            ("tiers", self.tiers.len(), MAX_TIERS),
            ("services", self.services.len(), MAX_SERVICES),
            ("secrets", self.secrets.len(), MAX_SECRETS),
        ] {
            if len > limit {
                errors.push(DeclError::TooMany { what, limit });
            }
        }
        errors
    }

    /// The declared tiers.
    pub fn tiers(&self) -> &BTreeMap<String, Tier> {
        &self.tiers
    }

    /// A tier's declaration.
    pub fn tier(&self, name: &str) -> Option<&Tier> {
        self.tiers.get(name)
    }

    /// The services declared (those with tier lists, or named without).
    pub fn services(&self) -> &BTreeMap<String, Service> {
        &self.services
    }

    /// A service's declaration.
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.get(name)
    }

    /// The tiers `service` is deployed to: those it lists (and are declared), else every
    /// declared tier.
    pub fn service_tiers(&self, service: &str) -> Vec<&str> {
        match self.services.get(service).and_then(|s| s.tiers.as_ref()) {
            Some(listed) => listed
                .iter()
                .filter(|t| self.tiers.contains_key(t.as_str()))
                .map(String::as_str)
                .collect(),
            None => self.tiers.keys().map(String::as_str).collect(),
        }
    }

    /// Every secret's metadata, by name.
    pub fn secrets(&self) -> &BTreeMap<String, SecretMeta> {
        &self.secrets
    }

    /// A secret's metadata.
    pub fn secret(&self, name: &str) -> Option<&SecretMeta> {
        self.secrets.get(name)
    }

    /// Whether it declares nothing.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty() && self.services.is_empty() && self.secrets.is_empty()
    }

    /// Declares a tier, or changes whether it is core; returns the old declaration.
    ///
    /// # Errors
    /// [`DeclError::TierName`], [`DeclError::TooMany`], or, when the tier would stop being
    /// core, [`DeclError::ServeOffCore`] / [`DeclError::InfrastructureLeaves`] naming a
    /// secret served there.
    pub fn declare_tier(&mut self, name: &str, tier: Tier) -> Result<Option<Tier>, DeclError> {
        if !is_valid_tier(name) {
            return Err(DeclError::TierName);
        }
        if !self.tiers.contains_key(name) && self.tiers.len() >= MAX_TIERS {
            return Err(DeclError::TooMany {
                what: "tiers",
                limit: MAX_TIERS,
            });
        }
        for (secret, meta) in &self.secrets {
            if let Some(policy) = meta.tiers.get(name) {
                check_rule(secret, name, Some(&tier), meta, policy)?;
            }
        }
        Ok(self.tiers.insert(name.to_string(), tier))
    }

    /// Removes a tier no strategy or service list names.
    ///
    /// # Errors
    /// [`DeclError::TierInUse`] with how many name it.
    pub fn remove_tier(&mut self, name: &str) -> Result<Option<Tier>, DeclError> {
        let uses = self
            .secrets
            .values()
            .filter(|m| m.tiers.contains_key(name))
            .count()
            + self
                .services
                .values()
                .filter(|s| {
                    s.tiers
                        .as_ref()
                        .is_some_and(|t| t.iter().any(|t| t == name))
                })
                .count();
        if uses > 0 {
            return Err(DeclError::TierInUse {
                tier: name.to_string(),
                uses,
            });
        }
        Ok(self.tiers.remove(name))
    }

    /// Declares a service's tiers (`None`: every declared tier); returns the old one.
    ///
    /// # Errors
    /// [`DeclError::ServiceName`], [`DeclError::UnknownTier`],
    /// [`DeclError::DuplicateServiceTier`], [`DeclError::TooMany`].
    pub fn set_service(
        &mut self,
        name: &str,
        mut service: Service,
    ) -> Result<Option<Service>, DeclError> {
        if let Some(t) = &mut service.tiers {
            t.sort();
        }
        if let Some(e) = check_service(&self.tiers, name, &service)
            .into_iter()
            .next()
        {
            return Err(e);
        }
        if !self.services.contains_key(name) && self.services.len() >= MAX_SERVICES {
            return Err(DeclError::TooMany {
                what: "services",
                limit: MAX_SERVICES,
            });
        }
        Ok(self.services.insert(name.to_string(), service))
    }

    /// Removes a service's declaration.
    pub fn remove_service(&mut self, name: &str) -> Option<Service> {
        self.services.remove(name)
    }

    /// Changes a secret's metadata, adding the secret if it is new.
    ///
    /// # Errors
    /// [`DeclError::SecretName`], [`DeclError::Field`], [`DeclError::TooMany`], or a rule
    /// the new class would break with a strategy already declared
    /// ([`DeclError::InfrastructureLeaves`]).
    pub fn set_meta(&mut self, name: &str, update: MetaUpdate) -> Result<&SecretMeta, DeclError> {
        let mut meta = self.secrets.get(name).cloned().unwrap_or_default();
        update.apply_to(&mut meta);
        self.put_checked(name, meta)
    }

    /// Declares a secret's strategy on a tier (adding the secret if it is new); returns
    /// the old one.
    ///
    /// # Errors
    /// [`DeclError::SecretName`], [`DeclError::UnknownTier`], [`DeclError::Field`],
    /// [`DeclError::InfrastructureLeaves`], [`DeclError::ServeOffCore`],
    /// [`DeclError::TooMany`].
    pub fn set_strategy(
        &mut self,
        name: &str,
        tier: &str,
        policy: TierPolicy,
    ) -> Result<Option<TierPolicy>, DeclError> {
        if !is_valid_tier(tier) {
            return Err(DeclError::TierName);
        }
        let mut meta = self.secrets.get(name).cloned().unwrap_or_default();
        let old = meta.tiers.insert(tier.to_string(), policy);
        self.put_checked(name, meta)?;
        Ok(old)
    }

    /// Removes a secret's strategy on a tier.
    pub fn remove_strategy(&mut self, name: &str, tier: &str) -> Option<TierPolicy> {
        self.secrets.get_mut(name)?.tiers.remove(tier)
    }

    /// Marks a delegated reference present (the provider holds the secret) or not.
    ///
    /// # Errors
    /// [`DeclError::NoSuchSecret`], [`DeclError::NoStrategy`], [`DeclError::NotDelegated`].
    pub fn set_present(&mut self, name: &str, tier: &str, present: bool) -> Result<(), DeclError> {
        self.secrets
            .get_mut(name)
            .ok_or_else(|| DeclError::NoSuchSecret {
                secret: name.to_string(),
            })?
            .set_present(name, tier, present)
    }

    /// Declares a secret whole, replacing what it had; returns the old declaration.
    ///
    /// # Errors
    /// A [`Refusal`] listing every rule it breaks.
    pub fn put_secret(
        &mut self,
        name: &str,
        meta: SecretMeta,
    ) -> Result<Option<SecretMeta>, Refusal> {
        let errors = check_secret(&self.tiers, name, &meta);
        if !errors.is_empty() {
            return Err(Refusal {
                errors: errors.into_iter().map(|(_, e)| e.into()).collect(),
            });
        }
        if !self.secrets.contains_key(name) && self.secrets.len() >= MAX_SECRETS {
            return Err(Refusal::one(DeclError::TooMany {
                what: "secrets",
                limit: MAX_SECRETS,
            }));
        }
        Ok(self.secrets.insert(name.to_string(), meta))
    }

    /// Removes a secret's metadata.
    pub fn remove_secret(&mut self, name: &str) -> Option<SecretMeta> {
        self.secrets.remove(name)
    }

    fn put_checked(&mut self, name: &str, meta: SecretMeta) -> Result<&SecretMeta, DeclError> {
        if let Some((_, e)) = check_secret(&self.tiers, name, &meta).into_iter().next() {
            return Err(e);
        }
        if !self.secrets.contains_key(name) && self.secrets.len() >= MAX_SECRETS {
            return Err(DeclError::TooMany {
                what: "secrets",
                limit: MAX_SECRETS,
            });
        }
        let slot = self.secrets.entry(name.to_string()).or_default();
        *slot = meta;
        Ok(slot)
    }

    /// The template the secret's stored value is made from (`deploy secret set NAME
    /// --generate` without a template): the one its core tiers give, on `serve` or
    /// `generate`.
    ///
    /// # Errors
    /// [`DeclError::AmbiguousTemplate`] when two core tiers give different ones.
    pub fn core_template(&self, name: &str) -> Result<Option<&Template>, DeclError> {
        match self.secrets.get(name) {
            Some(meta) => meta.core_template(name, &self.tiers),
            None => Ok(None),
        }
    }

    /// Writes one tier's declaration as a store recorded it (`None`: removed), unchecked:
    /// the store checked it when it was made. For a store applying its own records one
    /// at a time, where [`Catalog::from_parts_unchecked`] would rebuild everything.
    pub fn restore_tier(&mut self, name: String, tier: Option<Tier>) {
        match tier {
            Some(t) => {
                self.tiers.insert(name, t);
            }
            None => {
                self.tiers.remove(&name);
            }
        }
    }

    /// [`Catalog::restore_tier`] for a service's declaration (its tier list is sorted).
    pub fn restore_service(&mut self, name: String, service: Option<Service>) {
        match service {
            Some(mut s) => {
                if let Some(t) = &mut s.tiers {
                    t.sort();
                }
                self.services.insert(name, s);
            }
            None => {
                self.services.remove(&name);
            }
        }
    }

    /// [`Catalog::restore_tier`] for a secret's metadata.
    pub fn restore_secret(&mut self, name: String, meta: Option<SecretMeta>) {
        match meta {
            Some(m) => {
                self.secrets.insert(name, m);
            }
            None => {
                self.secrets.remove(&name);
            }
        }
    }
}

impl MetaUpdate {
    /// Makes the change to `meta`, unchecked (what [`Catalog::set_meta`] then checks).
    pub fn apply_to(&self, meta: &mut SecretMeta) {
        if let Some(class) = &self.class {
            meta.class = *class;
        }
        if let Some(owner) = &self.owner {
            meta.owner.clone_from(owner);
        }
        if let Some(period) = &self.rotate_every {
            meta.rotate_every = period.unwrap_or_default();
        }
        if let Some(description) = &self.description {
            meta.description.clone_from(description);
        }
    }

    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self == &MetaUpdate::default()
    }
}

impl SecretMeta {
    /// Marks the delegated reference on `tier` present or not (`secret` is this secret's
    /// name, for the error).
    ///
    /// # Errors
    /// [`DeclError::NoStrategy`], [`DeclError::NotDelegated`].
    pub fn set_present(
        &mut self,
        secret: &str,
        tier: &str,
        present: bool,
    ) -> Result<(), DeclError> {
        let policy = self
            .tiers
            .get_mut(tier)
            .ok_or_else(|| DeclError::NoStrategy {
                secret: secret.to_string(),
                tier: tier.to_string(),
            })?;
        match &mut policy.strategy {
            Strategy::Delegate { present: p, .. } => {
                *p = present;
                Ok(())
            }
            _ => Err(DeclError::NotDelegated {
                secret: secret.to_string(),
                tier: tier.to_string(),
            }),
        }
    }

    /// The template this secret's stored value is made from, given the declared `tiers`:
    /// see [`Catalog::core_template`] (`name` is this secret's, for the error).
    ///
    /// # Errors
    /// [`DeclError::AmbiguousTemplate`].
    pub fn core_template<'a>(
        &'a self,
        name: &str,
        tiers: &BTreeMap<String, Tier>,
    ) -> Result<Option<&'a Template>, DeclError> {
        let mut found: Option<&Template> = None;
        for (tier, policy) in &self.tiers {
            if !tiers.get(tier).is_some_and(|t| t.core) {
                continue;
            }
            let template = match &policy.strategy {
                Strategy::Serve { template: Some(t) } | Strategy::Generate { template: t } => t,
                _ => continue,
            };
            match found {
                Some(f) if f != template => {
                    return Err(DeclError::AmbiguousTemplate {
                        secret: name.to_string(),
                    });
                }
                _ => found = Some(template),
            }
        }
        Ok(found)
    }
}

/// Checks one secret's declaration against the declared `tiers` as every way into a
/// [`Catalog`] does (names, fields, the class rule), for a caller that keeps declarations
/// apart (a store's transaction, seeing its own changes over the catalog). The catalog's
/// size limit is the caller's to check.
///
/// # Errors
/// The first rule it breaks.
pub fn check_secret_declaration(
    tiers: &BTreeMap<String, Tier>,
    name: &str,
    meta: &SecretMeta,
) -> Result<(), DeclError> {
    match check_secret(tiers, name, meta).into_iter().next() {
        Some((_, e)) => Err(e),
        None => Ok(()),
    }
}

/// [`check_secret_declaration`] for a service's tier list (sorted first).
///
/// # Errors
/// The first rule it breaks.
pub fn check_service_declaration(
    tiers: &BTreeMap<String, Tier>,
    name: &str,
    service: &mut Service,
) -> Result<(), DeclError> {
    if let Some(t) = &mut service.tiers {
        t.sort();
    }
    match check_service(tiers, name, service).into_iter().next() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// A tier's declaration's faults.
pub(crate) fn check_tier(name: &str, _tier: &Tier) -> Option<DeclError> {
    (!is_valid_tier(name)).then_some(DeclError::TierName)
}

/// A service's declaration's faults (`tiers` sorted).
pub(crate) fn check_service(
    tiers: &BTreeMap<String, Tier>,
    name: &str,
    service: &Service,
) -> Vec<DeclError> {
    if !is_valid_service(name) {
        return vec![DeclError::ServiceName];
    }
    let mut errors = Vec::new();
    let listed = service.tiers.as_deref().unwrap_or_default();
    for (i, tier) in listed.iter().enumerate() {
        if !is_valid_tier(tier) {
            errors.push(DeclError::TierName);
        } else if !tiers.contains_key(tier) {
            errors.push(DeclError::UnknownTier {
                secret: None,
                service: Some(name.to_string()),
                tier: tier.clone(),
            });
        } else if i > 0 && listed[i - 1] == *tier {
            errors.push(DeclError::DuplicateServiceTier {
                service: name.to_string(),
                tier: tier.clone(),
            });
        }
    }
    errors
}

/// A secret's declaration's faults, each with the tier key of the strategy at fault.
pub(crate) fn check_secret(
    tiers: &BTreeMap<String, Tier>,
    name: &str,
    meta: &SecretMeta,
) -> Vec<(Option<String>, DeclError)> {
    if !is_valid_secret(name) {
        return vec![(None, DeclError::SecretName)];
    }
    let mut errors = Vec::new();
    if let Err((tier, field, source)) = meta.check() {
        errors.push((
            tier.map(str::to_string),
            DeclError::Field {
                secret: name.to_string(),
                tier: tier.map(str::to_string),
                field,
                source: Box::new(source),
            },
        ));
    }
    for (tier, policy) in &meta.tiers {
        if !is_valid_tier(tier) {
            errors.push((Some(tier.clone()), DeclError::TierName));
            continue;
        }
        if let Err(e) = check_rule(name, tier, tiers.get(tier), meta, policy) {
            errors.push((Some(tier.clone()), e));
        }
    }
    errors
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use crate::model::PromptSpec;
    use crate::reference::Reference;

    fn core() -> Tier {
        Tier { core: true }
    }

    fn generate(t: &str) -> Strategy {
        Strategy::Generate {
            template: Template::parse(t).unwrap(),
        }
    }

    fn sample() -> Catalog {
        let mut c = Catalog::new();
        c.declare_tier("local_dev", core()).unwrap();
        c.declare_tier("desktop", Tier::default()).unwrap();
        c.set_meta(
            "db",
            MetaUpdate {
                class: Some(Some(Class::Infrastructure)),
                ..MetaUpdate::default()
            },
        )
        .unwrap();
        c.set_strategy(
            "db",
            "local_dev",
            TierPolicy::new(Strategy::Serve { template: None }),
        )
        .unwrap();
        c.set_strategy("db", "desktop", TierPolicy::new(Strategy::Strip))
            .unwrap();
        c
    }

    #[test]
    fn mutators_enforce_the_class_rule() {
        let mut c = sample();
        let before = c.clone();
        let e = c
            .set_strategy(
                "db",
                "desktop",
                TierPolicy::new(generate("{{random:hex:16}}")),
            )
            .unwrap_err();
        assert!(matches!(e, DeclError::InfrastructureLeaves { .. }), "{e}");
        assert_eq!(c, before, "a refused change changes nothing");

        // A service secret on desktop: the tier's class allows it.
        c.set_strategy(
            "db",
            "desktop",
            TierPolicy {
                class: Some(Class::Service),
                strategy: generate("file://{{USER_DATA}}/app.db"),
            },
        )
        .unwrap();

        // Changing the secret's class does not reach past the override...
        c.set_meta(
            "db",
            MetaUpdate {
                class: Some(Some(Class::Infrastructure)),
                ..MetaUpdate::default()
            },
        )
        .unwrap();
        // ...but a class that would send a value off the core server is refused.
        c.set_strategy("api", "desktop", TierPolicy::new(generate("{{uuid}}")))
            .unwrap();
        let e = c
            .set_meta(
                "api",
                MetaUpdate {
                    class: Some(Some(Class::Infrastructure)),
                    ..MetaUpdate::default()
                },
            )
            .unwrap_err();
        assert!(matches!(e, DeclError::InfrastructureLeaves { .. }));
        assert_eq!(c.secret("api").unwrap().class, None);
    }

    #[test]
    fn a_tier_served_on_stays_core() {
        let mut c = sample();
        let e = c.declare_tier("local_dev", Tier::default()).unwrap_err();
        assert!(matches!(e, DeclError::InfrastructureLeaves { .. }), "{e}");
        assert!(c.tier("local_dev").unwrap().core);
        c.set_meta(
            "db",
            MetaUpdate {
                class: Some(None),
                ..MetaUpdate::default()
            },
        )
        .unwrap();
        let e = c.declare_tier("local_dev", Tier::default()).unwrap_err();
        assert!(matches!(e, DeclError::ServeOffCore { .. }), "{e}");
        assert!(matches!(
            c.remove_tier("desktop"),
            Err(DeclError::TierInUse { uses: 1, .. })
        ));
        c.declare_tier("cloud", Tier::default()).unwrap();
        assert_eq!(c.remove_tier("cloud").unwrap(), Some(Tier::default()));
    }

    #[test]
    fn strategies_need_declared_tiers_and_valid_names() {
        let mut c = sample();
        assert!(matches!(
            c.set_strategy("db", "mobile", TierPolicy::new(Strategy::Strip)),
            Err(DeclError::UnknownTier { .. })
        ));
        assert!(matches!(
            c.set_strategy("db", "Mobile", TierPolicy::new(Strategy::Strip)),
            Err(DeclError::TierName)
        ));
        assert!(matches!(
            c.set_strategy("a/b", "desktop", TierPolicy::new(Strategy::Strip)),
            Err(DeclError::SecretName)
        ));
        assert!(matches!(
            c.declare_tier("a b", core()),
            Err(DeclError::TierName)
        ));
        let bad_prompt = Strategy::Prompt(PromptSpec::new(""));
        let e = c
            .set_strategy("key", "desktop", TierPolicy::new(bad_prompt))
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("secret `key`, tier `desktop`, label: empty"),
            "{e}"
        );
    }

    #[test]
    fn services_list_declared_tiers() {
        let mut c = sample();
        c.set_service(
            "web",
            Service {
                tiers: Some(vec!["local_dev".into(), "desktop".into()]),
            },
        )
        .unwrap();
        assert_eq!(
            c.service("web").unwrap().tiers.as_deref().unwrap(),
            ["desktop", "local_dev"]
        );
        assert_eq!(c.service_tiers("web"), ["desktop", "local_dev"]);
        assert_eq!(c.service_tiers("other"), ["desktop", "local_dev"]);
        for (tiers, expect) in [
            (vec!["cloud"], "not declared"),
            (vec!["desktop", "desktop"], "twice"),
        ] {
            let e = c
                .set_service(
                    "web",
                    Service {
                        tiers: Some(tiers.into_iter().map(String::from).collect()),
                    },
                )
                .unwrap_err();
            assert!(e.to_string().contains(expect), "{e}");
        }
        assert!(matches!(
            c.set_service("admin", Service::default()),
            Err(DeclError::ServiceName)
        ));
    }

    #[test]
    fn present_is_for_delegated_references() {
        let mut c = sample();
        let delegate = Strategy::Delegate {
            reference: Reference::parse("github:acme/web#TOKEN").unwrap(),
            present: false,
        };
        c.set_strategy("token", "desktop", TierPolicy::new(delegate))
            .unwrap();
        c.set_present("token", "desktop", true).unwrap();
        assert!(matches!(
            c.secret("token").unwrap().tiers["desktop"].strategy,
            Strategy::Delegate { present: true, .. }
        ));
        assert!(matches!(
            c.set_present("db", "desktop", true),
            Err(DeclError::NotDelegated { .. })
        ));
        assert!(matches!(
            c.set_present("db", "cloud", true),
            Err(DeclError::NoStrategy { .. })
        ));
        assert!(matches!(
            c.set_present("x", "desktop", true),
            Err(DeclError::NoSuchSecret { .. })
        ));
    }

    #[test]
    fn core_template() {
        let mut c = sample();
        assert_eq!(c.core_template("db").unwrap(), None);
        let t = Template::parse("{{random:hex:32}}").unwrap();
        c.set_strategy(
            "db",
            "local_dev",
            TierPolicy::new(Strategy::Serve {
                template: Some(t.clone()),
            }),
        )
        .unwrap();
        assert_eq!(c.core_template("db").unwrap(), Some(&t));
        c.declare_tier("staging", core()).unwrap();
        c.set_strategy(
            "db",
            "staging",
            TierPolicy::new(Strategy::Serve {
                template: Some(Template::parse("{{random:hex:16}}").unwrap()),
            }),
        )
        .unwrap();
        assert!(matches!(
            c.core_template("db"),
            Err(DeclError::AmbiguousTemplate { .. })
        ));
    }

    #[test]
    fn from_parts_lists_every_fault() {
        let mut secrets = BTreeMap::new();
        let mut bad = SecretMeta {
            class: Some(Class::Infrastructure),
            ..SecretMeta::default()
        };
        bad.tiers
            .insert("desktop".into(), TierPolicy::new(generate("{{uuid}}")));
        bad.tiers
            .insert("nowhere".into(), TierPolicy::new(Strategy::Strip));
        secrets.insert("a".to_string(), bad);
        secrets.insert("..".to_string(), SecretMeta::default());
        let tiers = BTreeMap::from([("desktop".to_string(), Tier::default())]);
        let refusal = Catalog::from_parts(tiers, BTreeMap::new(), secrets).unwrap_err();
        assert_eq!(refusal.errors.len(), 3, "{refusal}");
        let text = refusal.to_string();
        assert!(text.starts_with("3 declarations refused:"), "{text}");
        assert!(
            !text.contains("`..`"),
            "invalid names are not echoed: {text}"
        );
    }
}
