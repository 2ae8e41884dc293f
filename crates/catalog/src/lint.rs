//! [`lint`]: what the catalog leaves undecided or broken, across every service.
//!
//! It finds secrets with no class; secrets a manifest uses that lack a strategy for one of
//! the service's tiers (those it lists, else every declared tier); strategies that break a
//! rule now (infrastructure that could leave, `serve` off core, a strategy for an undeclared
//! tier: a class or tier changed since they were declared); manifest entries with no
//! secret; delegated references not marked present. And per tier, the share of the
//! secrets used there that have a strategy (seed 001's metric, whose goal is 100%).
//!
//! Findings are sorted by id, so two runs over the same state print the same thing.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::DeclError;
use crate::finding::{self, Finding};
use crate::model::{Strategy, check_rule};
use crate::plan::Store;
use crate::table::Table;

/// The lint's report.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Lint {
    /// The tier it was limited to, if any.
    pub tier: Option<String>,
    /// Whether there is no finding.
    pub ok: bool,
    /// Every finding, sorted by id.
    pub findings: Vec<Finding>,
    /// Per declared tier (or the one asked for), how many used secrets have a strategy.
    pub coverage: Vec<Coverage>,
}

/// How much of what services use on a tier has a strategy there.
#[derive(Clone, PartialEq, Debug, Serialize, Deserialize)]
pub struct Coverage {
    /// The tier.
    pub tier: String,
    /// Whether it is core.
    pub core: bool,
    /// The distinct secrets the manifests of services deployed to the tier name.
    pub used: usize,
    /// How many of those have a strategy for the tier.
    pub with_strategy: usize,
    /// `with_strategy / used` in percent, rounded down to a tenth (100 when nothing is
    /// used): 99.9 is not 100.
    pub percent: f64,
}

/// Lints the catalog against the services' manifests (name, secrets) and the store,
/// optionally for one tier only (tier-less findings are kept).
pub fn lint<'a, M: AsRef<str> + 'a>(
    catalog: &Catalog,
    manifests: impl IntoIterator<Item = (&'a str, &'a [M])>,
    store: &(impl Store + ?Sized),
    tier: Option<&str>,
) -> Lint {
    let wanted = |t: &str| tier.is_none_or(|only| only == t);
    let mut findings = Vec::new();
    if let Some(t) = tier
        && catalog.tier(t).is_none()
    {
        findings.push(finding::unknown_tier(t, None));
    }
    for (name, meta) in catalog.secrets() {
        if meta.class.is_none() {
            findings.push(finding::no_class(name));
        }
        for (t, policy) in &meta.tiers {
            if !wanted(t) {
                continue;
            }
            match check_rule(name, t, catalog.tier(t), meta, policy) {
                Ok(()) => {}
                Err(DeclError::UnknownTier { .. }) => {
                    findings.push(finding::unknown_tier(t, Some(name)));
                }
                Err(e) => findings.push(finding::rule_broken(
                    name,
                    t,
                    matches!(e, DeclError::InfrastructureLeaves { .. }),
                    policy.strategy.name(),
                )),
            }
            if let Strategy::Delegate {
                reference,
                present: false,
            } = &policy.strategy
            {
                findings.push(finding::not_present(name, t, &reference.to_string()));
            }
        }
    }

    // (tier, secret): the services using it, and whether it has a strategy there. Hashed:
    // there is an entry per manifest line and tier, and their order is made below.
    let mut used: HashMap<(&str, &str), (UsedBy<'_>, bool)> = HashMap::new();
    for (service, secrets) in manifests {
        let tiers: Vec<&str> = catalog
            .service_tiers(service)
            .into_iter()
            .filter(|t| wanted(t))
            .collect();
        for secret in secrets {
            let secret = secret.as_ref();
            let meta = catalog.secret(secret);
            if meta.is_none() && !store.has_value(secret) {
                findings.push(finding::no_such_secret(service, secret));
            }
            for &t in &tiers {
                let has = meta.is_some_and(|m| m.tiers.contains_key(t));
                used.entry((t, secret))
                    .or_insert_with(|| (UsedBy::default(), has))
                    .0
                    .add(service);
            }
        }
    }
    let mut per_tier: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for (&(t, secret), (services, has)) in &used {
        let counts = per_tier.entry(t).or_default();
        counts.0 += 1;
        if *has {
            counts.1 += 1;
        } else if catalog.secret(secret).is_some() || store.has_value(secret) {
            // (A secret neither declared nor stored is reported as no-such-secret.)
            let service = (services.count == 1).then(|| services.first[0]);
            let used_by = format!(" (used by {services})");
            findings.push(finding::no_strategy(secret, t, service, &used_by));
        }
    }
    let coverage = catalog
        .tiers()
        .iter()
        .filter(|(t, _)| wanted(t))
        .map(|(t, decl)| {
            let (used, with_strategy) = per_tier.get(t.as_str()).copied().unwrap_or((0, 0));
            // Integers first, so the rounding is exact: 999/1000 is 99.9.
            let percent = (with_strategy * 1000)
                .checked_div(used)
                .map_or(100.0, |permille| permille as f64 / 10.0);
            Coverage {
                tier: t.clone(),
                core: decl.core,
                used,
                with_strategy,
                percent,
            }
        })
        .collect();
    findings.sort_by(|a, b| a.id.cmp(&b.id));
    findings.dedup_by(|a, b| a.id == b.id);
    Lint {
        tier: tier.map(str::to_string),
        ok: findings.is_empty(),
        findings,
        coverage,
    }
}

/// Most services a finding names as using its secret; the rest are counted. A secret
/// used by every one of thousands of services would otherwise make each of its findings
/// as long as the list of services, and the lint as large as every manifest times every
/// tier.
pub const MAX_USERS_NAMED: usize = 5;

/// The services using a secret on a tier: how many, and the first few by name.
#[derive(Default)]
struct UsedBy<'a> {
    count: usize,
    /// The first [`MAX_USERS_NAMED`] of them, sorted.
    first: Vec<&'a str>,
}

impl<'a> UsedBy<'a> {
    /// Counts `service`, which is not counted yet (a manifest names a secret once).
    fn add(&mut self, service: &'a str) {
        self.count += 1;
        if self.first.len() < MAX_USERS_NAMED {
            let at = self.first.partition_point(|s| *s < service);
            self.first.insert(at, service);
        } else if let Some(last) = self.first.last_mut()
            && service < *last
        {
            *last = service;
            self.first.sort_unstable();
        }
    }
}

impl fmt::Display for UsedBy<'_> {
    /// `bot, web`, or `a, b, c, d, e and 95 more`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.first.join(", "))?;
        if self.count > self.first.len() {
            write!(f, " and {} more", self.count - self.first.len())?;
        }
        Ok(())
    }
}

impl fmt::Display for Lint {
    /// A table of findings, then the coverage per tier.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.findings.len() {
            0 => writeln!(f, "lint: no findings")?,
            1 => writeln!(f, "lint: 1 finding")?,
            n => writeln!(f, "lint: {n} findings")?,
        }
        if !self.findings.is_empty() {
            let mut table = Table::new(&["ID", "MESSAGE"]);
            for finding in &self.findings {
                table.row(vec![finding.id.clone(), finding.message.clone()]);
            }
            write!(f, "{table}")?;
        }
        if !self.coverage.is_empty() {
            let mut table = Table::new(&["TIER", "CORE", "WITH STRATEGY"]);
            for c in &self.coverage {
                table.row(vec![
                    c.tier.clone(),
                    if c.core { "yes" } else { "no" }.to_string(),
                    format!("{}/{} ({}%)", c.with_strategy, c.used, c.percent),
                ]);
            }
            write!(f, "{table}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
