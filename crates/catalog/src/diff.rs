//! [`diff`]: what applying a new catalog over the current one changes, as data and for a
//! person; [`Catalog::apply`] applies it.
//!
//! The tiers, services and secrets the new catalog names get exactly its declarations (a
//! secret's fields and strategies it leaves out are removed); the others are left alone,
//! unless `prune`, which removes them. Grants and values are not the catalog's and are
//! never touched.
//!
//! A [`Diff`] is a list of [`Delta`]s, each one named declaration's state before and after:
//! a server applies it in one transaction by writing each `after` (or deleting where it is
//! `None`), and [`Catalog::apply`] first checks that every `before` is still current, so a
//! diff made before a concurrent change is refused rather than applied over it.
//! [`Diff::changes`] breaks it down into field-level [`Change`]s, which [`Diff`]'s
//! `Display` renders:
//!
//! ```text
//! + tier desktop (not core)
//! ~ tier staging: core -> not core
//! + secret postgres_connection
//!     + class: infrastructure
//!     + tier local_dev: serve
//! ~ secret api_key
//!     ~ owner: "alice" -> "bob"
//!     - tier cloud: delegate env:API_KEY (present)
//! 2 added, 2 changed, 0 removed
//! ```

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::{
    Catalog, MAX_SECRETS, MAX_SERVICES, MAX_TIERS, check_secret, check_service, check_tier,
};
use crate::error::{DeclError, DiffError, Located, Refusal};
use crate::model::{SecretMeta, Service, Tier, TierPolicy, check_rule};
use crate::period::Period;

/// One named declaration's state before and after.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Delta<T> {
    /// The tier's, service's or secret's name.
    pub name: String,
    /// Its declaration now (`None`: it is added).
    pub before: Option<T>,
    /// Its declaration after (`None`: it is removed).
    pub after: Option<T>,
}

impl<T> Delta<T> {
    /// Whether it is added, changed or removed.
    pub fn op(&self) -> Op {
        match (&self.before, &self.after) {
            (None, _) => Op::Added,
            (Some(_), None) => Op::Removed,
            (Some(_), Some(_)) => Op::Changed,
        }
    }
}

/// What a change does.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Declared where nothing was.
    Added,
    /// Declared otherwise.
    Changed,
    /// No longer declared.
    Removed,
}

impl Op {
    fn sign(self) -> char {
        match self {
            Op::Added => '+',
            Op::Changed => '~',
            Op::Removed => '-',
        }
    }
}

/// What applying a catalog changes: tiers, services' tiers and secrets, by name.
#[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Diff {
    /// Tier declarations.
    pub tiers: Vec<Delta<Tier>>,
    /// Services' tier lists.
    pub services: Vec<Delta<Service>>,
    /// Secrets' metadata and strategies.
    pub secrets: Vec<Delta<SecretMeta>>,
}

/// One field-level change, for a person or a JSON report.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Change {
    /// Added, changed or removed.
    pub op: Op,
    /// What changed.
    #[serde(flatten)]
    pub subject: Subject,
    /// The declaration before, on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// The declaration after, on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// What a [`Change`] is about.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "what", rename_all = "snake_case")]
pub enum Subject {
    /// A tier's declaration.
    Tier {
        /// The tier.
        tier: String,
    },
    /// A service's tier list.
    Service {
        /// The service.
        service: String,
    },
    /// A secret as a whole (its fields and strategies follow).
    Secret {
        /// The secret.
        secret: String,
    },
    /// One field of a secret: `class`, `owner`, `rotate_every`, `description`.
    Field {
        /// The secret.
        secret: String,
        /// The field.
        field: String,
    },
    /// A secret's strategy on a tier.
    Strategy {
        /// The secret.
        secret: String,
        /// The tier.
        tier: String,
    },
}

/// How many declarations (tiers, services, secrets) a diff adds, changes and removes.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Summary {
    /// Added.
    pub added: usize,
    /// Changed.
    pub changed: usize,
    /// Removed.
    pub removed: usize,
}

/// What applying `new` over `current` changes (with `prune`, what `current` has and `new`
/// does not is removed).
///
/// # Errors
/// [`DiffError::Refused`] when the result would break a rule: `new` breaks one itself
/// (only possible for a catalog made unchecked), or a secret `new` leaves alone would, with
/// a tier `new` declares no longer core.
pub fn diff(current: &Catalog, new: &Catalog, prune: bool) -> Result<Diff, DiffError> {
    new.validate().map_err(DiffError::Refused)?;
    let tiers = deltas(current.tiers(), new.tiers(), prune);
    let services = deltas(current.services(), new.services(), prune);
    let secrets = deltas(current.secrets(), new.secrets(), prune);

    let mut errors: Vec<Located> = Vec::new();
    if !prune {
        // The secrets left alone keep their strategies: each must still be allowed with
        // the tiers as they will be.
        let turned: Vec<(&String, &Tier)> = tiers
            .iter()
            .filter_map(|d| d.after.as_ref().map(|t| (&d.name, t)))
            .filter(|(name, t)| current.tier(name).is_some_and(|old| old.core && !t.core))
            .collect();
        for (tier, decl) in turned {
            for (secret, meta) in current.secrets() {
                if new.secret(secret).is_some() {
                    continue;
                }
                if let Some(policy) = meta.tiers.get(tier.as_str())
                    && let Err(e) = check_rule(secret, tier, Some(decl), meta, policy)
                {
                    errors.push(e.into());
                }
            }
        }
        let added = secrets.iter().filter(|d| d.before.is_none()).count();
        if current.secrets().len() + added > MAX_SECRETS {
            errors.push(
                DeclError::TooMany {
                    what: "secrets",
                    limit: MAX_SECRETS,
                }
                .into(),
            );
        }
    }
    if !errors.is_empty() {
        return Err(DiffError::Refused(Refusal { errors }));
    }
    Ok(Diff {
        tiers,
        services,
        secrets,
    })
}

fn deltas<T: Clone + PartialEq>(
    current: &BTreeMap<String, T>,
    new: &BTreeMap<String, T>,
    prune: bool,
) -> Vec<Delta<T>> {
    let mut out = Vec::new();
    for (name, after) in new {
        let before = current.get(name);
        if before != Some(after) {
            out.push(Delta {
                name: name.clone(),
                before: before.cloned(),
                after: Some(after.clone()),
            });
        }
    }
    if prune {
        for (name, before) in current {
            if !new.contains_key(name) {
                out.push(Delta {
                    name: name.clone(),
                    before: Some(before.clone()),
                    after: None,
                });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
    }
    out
}

impl Catalog {
    /// Applies a diff made against this catalog: all of it, or (when the catalog changed
    /// since) nothing.
    ///
    /// # Errors
    /// [`DiffError::Stale`] naming the first declaration whose `before` is not current;
    /// [`DiffError::Refused`] if the result would break a rule (possible only for a diff
    /// not made by [`diff`], or tampered with).
    pub fn apply(&mut self, diff: &Diff) -> Result<(), DiffError> {
        fn stale<T: PartialEq>(
            what: &'static str,
            map: &BTreeMap<String, T>,
            deltas: &[Delta<T>],
        ) -> Result<(), DiffError> {
            match deltas
                .iter()
                .find(|d| map.get(&d.name) != d.before.as_ref())
            {
                Some(d) => Err(DiffError::Stale {
                    what,
                    name: d.name.clone(),
                }),
                None => Ok(()),
            }
        }
        stale("tier", self.tiers(), &diff.tiers)?;
        stale("service", self.services(), &diff.services)?;
        stale("secret", self.secrets(), &diff.secrets)?;
        // A diff may come from elsewhere (it deserializes), so what it makes is checked:
        // what it declares, and what it leaves alone on a tier it changes. Only then is
        // anything changed, in place (cloning 10,000 secrets would cost more than the rest).
        let mut tiers = self.tiers.clone();
        put(&mut tiers, &diff.tiers);
        let mut errors: Vec<Located> = Vec::new();
        for d in &diff.tiers {
            if let Some(t) = &d.after
                && let Some(e) = check_tier(&d.name, t)
            {
                errors.push(e.into());
            }
        }
        // Tiers changed or removed: what names them is checked again.
        let changed: HashSet<&str> = diff
            .tiers
            .iter()
            .filter(|d| d.before.is_some())
            .map(|d| d.name.as_str())
            .collect();
        let touched_services: HashSet<&str> =
            diff.services.iter().map(|d| d.name.as_str()).collect();
        for d in &diff.services {
            if let Some(s) = &d.after {
                errors.extend(
                    check_service(&tiers, &d.name, s)
                        .into_iter()
                        .map(Located::from),
                );
            }
        }
        let touched_secrets: HashSet<&str> = diff.secrets.iter().map(|d| d.name.as_str()).collect();
        for d in &diff.secrets {
            if let Some(m) = &d.after {
                errors.extend(
                    check_secret(&tiers, &d.name, m)
                        .into_iter()
                        .map(|(_, e)| e.into()),
                );
            }
        }
        if !changed.is_empty() {
            let names_changed =
                |listed: &[String]| listed.iter().any(|t| changed.contains(t.as_str()));
            for (name, s) in &self.services {
                if !touched_services.contains(name.as_str())
                    && s.tiers.as_deref().is_some_and(names_changed)
                {
                    errors.extend(
                        check_service(&tiers, name, s)
                            .into_iter()
                            .map(Located::from),
                    );
                }
            }
            for (name, m) in &self.secrets {
                if !touched_secrets.contains(name.as_str())
                    && m.tiers.keys().any(|t| changed.contains(t.as_str()))
                {
                    errors.extend(
                        check_secret(&tiers, name, m)
                            .into_iter()
                            .map(|(_, e)| e.into()),
                    );
                }
            }
        }
        for (what, len, limit) in [
            ("tiers", tiers.len(), MAX_TIERS),
            (
                "services",
                after_len(self.services.len(), &diff.services),
                MAX_SERVICES,
            ),
            (
                "secrets",
                after_len(self.secrets.len(), &diff.secrets),
                MAX_SECRETS,
            ),
        ] {
            if len > limit {
                errors.push(DeclError::TooMany { what, limit }.into());
            }
        }
        if !errors.is_empty() {
            return Err(DiffError::Refused(Refusal { errors }));
        }
        self.tiers = tiers;
        put(&mut self.services, &diff.services);
        put(&mut self.secrets, &diff.secrets);
        Ok(())
    }
}

/// How many a map holds once `deltas` (made against it) are applied.
fn after_len<T>(before: usize, deltas: &[Delta<T>]) -> usize {
    let added = deltas
        .iter()
        .filter(|d| d.before.is_none() && d.after.is_some())
        .count();
    let removed = deltas
        .iter()
        .filter(|d| d.before.is_some() && d.after.is_none())
        .count();
    (before + added).saturating_sub(removed)
}

fn put<T: Clone>(map: &mut BTreeMap<String, T>, deltas: &[Delta<T>]) {
    for d in deltas {
        match &d.after {
            Some(after) => {
                map.insert(d.name.clone(), after.clone());
            }
            None => {
                map.remove(&d.name);
            }
        }
    }
}

/// What a catalog apply answers: what it changed (or, in a dry run, would change), field
/// by field, and how many values it stored. Its JSON is what `deploy catalog apply --json`
/// prints; its `Display` is the diff a person reads.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct ApplyReport {
    /// Nothing was changed: this is what would be.
    pub dry_run: bool,
    /// Declarations added, changed and removed.
    pub summary: Summary,
    /// Values stored (`--with-values`).
    pub values: usize,
    /// Every change, field by field, in [`Diff::changes`]'s order.
    pub changes: Vec<Change>,
}

impl ApplyReport {
    /// The report of `diff`, applied (or not, `dry_run`) with `values` values.
    pub fn new(diff: &Diff, dry_run: bool, values: usize) -> ApplyReport {
        ApplyReport {
            dry_run,
            summary: diff.summary(),
            values,
            changes: diff.changes(),
        }
    }
}

impl fmt::Display for ApplyReport {
    /// One line per change, then the counts (and the values stored).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            writeln!(f, "no changes")?;
        } else {
            for change in &self.changes {
                writeln!(f, "{change}")?;
            }
            let s = self.summary;
            write!(
                f,
                "{} added, {} changed, {} removed",
                s.added, s.changed, s.removed
            )?;
            writeln!(
                f,
                "{}",
                if self.dry_run {
                    " (dry run: nothing changed)"
                } else {
                    ""
                }
            )?;
        }
        if self.values > 0 {
            let verb = if self.dry_run {
                "would be stored"
            } else {
                "stored"
            };
            let plural = if self.values == 1 { "" } else { "s" };
            writeln!(f, "{} value{plural} {verb}", self.values)?;
        }
        Ok(())
    }
}

impl Diff {
    /// Whether it changes nothing.
    pub fn is_empty(&self) -> bool {
        self.tiers.is_empty() && self.services.is_empty() && self.secrets.is_empty()
    }

    /// How many tiers, services and secrets it adds, changes and removes.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        let ops = self
            .tiers
            .iter()
            .map(Delta::op)
            .chain(self.services.iter().map(Delta::op))
            .chain(self.secrets.iter().map(Delta::op));
        for op in ops {
            match op {
                Op::Added => s.added += 1,
                Op::Changed => s.changed += 1,
                Op::Removed => s.removed += 1,
            }
        }
        s
    }

    /// Every change, field by field: tiers, then services, then secrets (each secret's
    /// [`Subject::Secret`] change followed by its fields' and strategies').
    pub fn changes(&self) -> Vec<Change> {
        let mut out = Vec::new();
        for d in &self.tiers {
            out.push(Change {
                op: d.op(),
                subject: Subject::Tier {
                    tier: d.name.clone(),
                },
                before: d.before.map(|t| core_text(&t)),
                after: d.after.map(|t| core_text(&t)),
            });
        }
        for d in &self.services {
            out.push(Change {
                op: d.op(),
                subject: Subject::Service {
                    service: d.name.clone(),
                },
                before: d.before.as_ref().map(service_text),
                after: d.after.as_ref().map(service_text),
            });
        }
        for d in &self.secrets {
            out.push(Change {
                op: d.op(),
                subject: Subject::Secret {
                    secret: d.name.clone(),
                },
                before: None,
                after: None,
            });
            secret_changes(&d.name, d.before.as_ref(), d.after.as_ref(), &mut out);
        }
        out
    }
}

fn core_text(t: &Tier) -> String {
    if t.core { "core" } else { "not core" }.to_string()
}

fn service_text(s: &Service) -> String {
    match &s.tiers {
        None => "every tier".to_string(),
        Some(t) if t.is_empty() => "no tier".to_string(),
        Some(t) => format!("tiers {}", t.join(", ")),
    }
}

fn secret_changes(
    secret: &str,
    before: Option<&SecretMeta>,
    after: Option<&SecretMeta>,
    out: &mut Vec<Change>,
) {
    for name in ["class", "owner", "rotate_every", "description"] {
        let (b, a) = if name == "rotate_every" {
            // Every secret has a period; the default is shown only where it changes.
            let period = |m: &SecretMeta, shown: bool| {
                (shown || m.rotate_every != Period::DEFAULT).then(|| m.rotate_every.to_string())
            };
            let both = before.is_some() && after.is_some();
            (
                before.and_then(|m| period(m, both)),
                after.and_then(|m| period(m, both)),
            )
        } else {
            (
                before.and_then(|m| field_text(m, name)),
                after.and_then(|m| field_text(m, name)),
            )
        };
        if let Some(op) = op_of(b.as_ref(), a.as_ref()) {
            out.push(Change {
                op,
                subject: Subject::Field {
                    secret: secret.to_string(),
                    field: name.to_string(),
                },
                before: b,
                after: a,
            });
        }
    }
    let empty = BTreeMap::new();
    let b_tiers = before.map_or(&empty, |m| &m.tiers);
    let a_tiers = after.map_or(&empty, |m| &m.tiers);
    let mut names: Vec<&String> = b_tiers.keys().chain(a_tiers.keys()).collect();
    names.sort();
    names.dedup();
    for tier in names {
        let b = b_tiers.get(tier).map(TierPolicy::to_string);
        let a = a_tiers.get(tier).map(TierPolicy::to_string);
        if let Some(op) = op_of(b.as_ref(), a.as_ref()) {
            out.push(Change {
                op,
                subject: Subject::Strategy {
                    secret: secret.to_string(),
                    tier: tier.clone(),
                },
                before: b,
                after: a,
            });
        }
    }
}

fn field_text(m: &SecretMeta, name: &str) -> Option<String> {
    match name {
        "class" => m.class.map(|c| c.to_string()),
        "owner" => m.owner.as_ref().map(|o| format!("{o:?}")),
        _ => m.description.as_ref().map(|d| format!("{d:?}")),
    }
}

fn op_of(before: Option<&String>, after: Option<&String>) -> Option<Op> {
    match (before, after) {
        (None, None) => None,
        (None, Some(_)) => Some(Op::Added),
        (Some(_), None) => Some(Op::Removed),
        (Some(b), Some(a)) if b == a => None,
        (Some(_), Some(_)) => Some(Op::Changed),
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = self.op.sign();
        let value = match (self.op, &self.before, &self.after) {
            (Op::Changed, Some(b), Some(a)) => format!("{b} -> {a}"),
            (_, _, Some(a)) => a.clone(),
            (_, Some(b), None) => b.clone(),
            _ => String::new(),
        };
        match &self.subject {
            Subject::Tier { tier } => match self.op {
                Op::Changed => write!(f, "{sign} tier {tier}: {value}"),
                _ => write!(f, "{sign} tier {tier} ({value})"),
            },
            Subject::Service { service } => write!(f, "{sign} service {service}: {value}"),
            Subject::Secret { secret } => write!(f, "{sign} secret {secret}"),
            Subject::Field { field, .. } => write!(f, "    {sign} {field}: {value}"),
            Subject::Strategy { tier, .. } => write!(f, "    {sign} tier {tier}: {value}"),
        }
    }
}

impl fmt::Display for Diff {
    /// One line per change, then the counts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return writeln!(f, "no changes");
        }
        for change in self.changes() {
            writeln!(f, "{change}")?;
        }
        let s = self.summary();
        writeln!(
            f,
            "{} added, {} changed, {} removed",
            s.added, s.changed, s.removed
        )
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
