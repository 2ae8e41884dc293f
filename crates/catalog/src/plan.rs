//! [`Plan`]: what happens to each secret of a service's manifest on a tier, and every
//! problem. Never a value.
//!
//! The JSON of a plan is what `deploy secret plan --json`, the admin tree's
//! `secrets/plans/<service>/<tier>` and `GET /deployment/secrets?service=S&tier=T` print:
//!
//! ```json
//! {
//!   "service": "web",
//!   "tier": "desktop",
//!   "tier_declared": true,
//!   "core": false,
//!   "ok": false,
//!   "entries": [
//!     { "secret": "postgres_connection", "class": "service", "in_catalog": true,
//!       "stored": true, "action": "generate", "template": "file://{{USER_DATA}}/app.db",
//!       "target_placeholders": ["USER_DATA"], "random": false },
//!     { "secret": "db_root", "class": "infrastructure", "in_catalog": true,
//!       "stored": true, "action": "strip" },
//!     { "secret": "openrouter_key", "class": "user", "in_catalog": true, "stored": false,
//!       "action": "prompt", "prompt": { "label": "OpenRouter API key", "kind": "password",
//!       "optional": false } },
//!     { "secret": "tg_token", "class": "user", "in_catalog": true, "stored": false,
//!       "action": "delegate", "ref": "github:acme/bot#TELEGRAM_TOKEN", "scheme": "github",
//!       "present": false },
//!     { "secret": "api_jwt", "class": null, "in_catalog": false, "stored": true,
//!       "action": "none" }
//!   ],
//!   "problems": [
//!     { "id": "not-present/desktop/tg_token", "kind": "not-present", "secret": "tg_token",
//!       "tier": "desktop", "message": "..." },
//!     { "id": "no-strategy/desktop/api_jwt", "kind": "no-strategy", ... }
//!   ],
//!   "counts": { "serve": 0, "strip": 1, "generate": 1, "prompt": 1, "delegate": 1,
//!               "none": 1, "blocked": 0 }
//! }
//! ```
//!
//! `action` is one of `serve` (with `granted`), `strip`, `generate` (`template`, the
//! `target_placeholders` the target must resolve, whether it is `random`), `prompt`
//! (`prompt`: `label`, `help`, `kind`, `pattern`, `min`, `max`, `optional`), `delegate`
//! (`ref`, `scheme`, `present`), `none` (no strategy) and `blocked` (a declared strategy
//! that breaks a rule now: `declared` names it, `reason` is the finding's kind; a deployer
//! treats it as `strip`). Entries are in manifest order; `ok` is true when there is no
//! problem.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::DeclError;
use crate::finding::{self, Finding, FindingKind};
use crate::model::{Class, PromptSpec, Strategy, check_rule};
use crate::table::Table;

/// What a plan or the lint needs to know of the store: never a value.
pub trait Store {
    /// Whether the store holds a value for the secret.
    fn has_value(&self, secret: &str) -> bool;
    /// Whether `service` is granted `secret`.
    fn is_granted(&self, service: &str, secret: &str) -> bool;
}

/// A [`Store`] made of plain sets, for callers that have them (and tests).
#[derive(Clone, Debug, Default)]
pub struct StoreFacts {
    /// The secrets that have a value.
    pub values: HashSet<String>,
    /// Each service's granted secrets.
    pub grants: HashMap<String, HashSet<String>>,
}

impl Store for StoreFacts {
    fn has_value(&self, secret: &str) -> bool {
        self.values.contains(secret)
    }

    fn is_granted(&self, service: &str, secret: &str) -> bool {
        self.grants.get(service).is_some_and(|g| g.contains(secret))
    }
}

/// A plan for one service on one tier.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// The service.
    pub service: String,
    /// The tier.
    pub tier: String,
    /// Whether the tier is declared (if not, a problem says so and nothing is planned).
    pub tier_declared: bool,
    /// Whether the tier is core.
    pub core: bool,
    /// Whether there is no problem.
    pub ok: bool,
    /// One per manifest secret, in manifest order.
    pub entries: Vec<PlanEntry>,
    /// Every problem.
    pub problems: Vec<Finding>,
    /// How many entries have each action.
    pub counts: Counts,
}

/// What happens to one manifest secret.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PlanEntry {
    /// The secret.
    pub secret: String,
    /// Its class on the tier.
    pub class: Option<Class>,
    /// Whether the catalog declares it.
    pub in_catalog: bool,
    /// Whether the store holds a value for it.
    pub stored: bool,
    /// What happens.
    #[serde(flatten)]
    pub action: Action,
}

/// What happens to a secret on the tier.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// The core server serves the stored value.
    Serve {
        /// Whether the service is granted it.
        granted: bool,
    },
    /// Nothing: it never leaves.
    Strip,
    /// A fresh value per deployment.
    Generate {
        /// The template.
        template: String,
        /// The placeholders the target resolves (`USER_DATA`).
        target_placeholders: Vec<String>,
        /// Whether it draws randomness.
        random: bool,
    },
    /// Asked at first run.
    Prompt {
        /// What to ask and how to check it.
        prompt: PromptSpec,
    },
    /// A provider holds it.
    Delegate {
        /// The reference.
        #[serde(rename = "ref")]
        reference: String,
        /// Its scheme (`github`, `gcp`, `env`, ...).
        scheme: String,
        /// Whether the provider holds it.
        present: bool,
    },
    /// No strategy for the tier.
    None,
    /// A declared strategy that breaks a rule now; treated as `strip`.
    Blocked {
        /// The strategy declared (`generate`, `serve`, ...).
        declared: String,
        /// Why it is blocked.
        reason: FindingKind,
    },
}

/// How many entries have each action.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
pub struct Counts {
    /// `serve`.
    pub serve: usize,
    /// `strip`.
    pub strip: usize,
    /// `generate`.
    pub generate: usize,
    /// `prompt`.
    pub prompt: usize,
    /// `delegate`.
    pub delegate: usize,
    /// `none`.
    pub none: usize,
    /// `blocked`.
    pub blocked: usize,
}

/// The plan for `service` on `tier`, given the service's manifest secrets (in order) and
/// what the store knows.
pub fn plan<M: AsRef<str>>(
    catalog: &Catalog,
    service: &str,
    tier: &str,
    manifest: &[M],
    store: &(impl Store + ?Sized),
) -> Plan {
    let declared = catalog.tier(tier);
    let core = declared.is_some_and(|t| t.core);
    let mut problems = Vec::new();
    match declared {
        None => problems.push(finding::unknown_tier(tier, None)),
        Some(_) => {
            if let Some(listed) = catalog.service(service).and_then(|s| s.tiers.as_ref())
                && !listed.iter().any(|t| t == tier)
            {
                problems.push(Finding::new(
                    FindingKind::TierNotListed,
                    &[service, tier],
                    None,
                    Some(service),
                    Some(tier),
                    format!(
                        "service `{service}` is deployed to {}, not to tier `{tier}`",
                        if listed.is_empty() {
                            "no tier".to_string()
                        } else {
                            listed.join(", ")
                        }
                    ),
                ));
            }
        }
    }
    let mut counts = Counts::default();
    let mut entries = Vec::with_capacity(manifest.len());
    for name in manifest {
        let name = name.as_ref();
        let meta = catalog.secret(name);
        let stored = store.has_value(name);
        let policy = meta.and_then(|m| m.tiers.get(tier));
        let action = match (meta, policy, declared) {
            (None, _, _) if !stored => {
                problems.push(finding::no_such_secret(service, name));
                Action::None
            }
            (_, _, None) => Action::None,
            (Some(meta), Some(policy), Some(t)) => {
                match check_rule(name, tier, Some(t), meta, policy) {
                    Err(e) => {
                        let infrastructure = matches!(e, DeclError::InfrastructureLeaves { .. });
                        let f = finding::rule_broken(
                            name,
                            tier,
                            infrastructure,
                            policy.strategy.name(),
                        );
                        let reason = f.kind;
                        problems.push(f);
                        Action::Blocked {
                            declared: policy.strategy.name().to_string(),
                            reason,
                        }
                    }
                    Ok(()) => action_of(
                        &policy.strategy,
                        service,
                        name,
                        tier,
                        stored,
                        store,
                        &mut problems,
                    ),
                }
            }
            _ => {
                problems.push(finding::no_strategy(name, tier, Some(service), ""));
                Action::None
            }
        };
        match action {
            Action::Serve { .. } => counts.serve += 1,
            Action::Strip => counts.strip += 1,
            Action::Generate { .. } => counts.generate += 1,
            Action::Prompt { .. } => counts.prompt += 1,
            Action::Delegate { .. } => counts.delegate += 1,
            Action::None => counts.none += 1,
            Action::Blocked { .. } => counts.blocked += 1,
        }
        entries.push(PlanEntry {
            secret: name.to_string(),
            class: meta.and_then(|m| m.class_on(tier)),
            in_catalog: meta.is_some(),
            stored,
            action,
        });
    }
    Plan {
        service: service.to_string(),
        tier: tier.to_string(),
        tier_declared: declared.is_some(),
        core,
        ok: problems.is_empty(),
        entries,
        problems,
        counts,
    }
}

fn action_of(
    strategy: &Strategy,
    service: &str,
    name: &str,
    tier: &str,
    stored: bool,
    store: &(impl Store + ?Sized),
    problems: &mut Vec<Finding>,
) -> Action {
    match strategy {
        Strategy::Serve { .. } => {
            let granted = store.is_granted(service, name);
            if !granted {
                problems.push(Finding::new(
                    FindingKind::NotGranted,
                    &[service, name],
                    Some(name),
                    Some(service),
                    Some(tier),
                    format!(
                        "secret `{name}` is served on tier `{tier}`, and service `{service}` is \
                         not granted it; grant it: deploy secret grant {service} {name}"
                    ),
                ));
            }
            if !stored {
                problems.push(Finding::new(
                    FindingKind::NoValue,
                    &[name],
                    Some(name),
                    None,
                    Some(tier),
                    format!(
                        "secret `{name}` is served on tier `{tier}`, and has no value; set one: \
                         deploy secret set {name}"
                    ),
                ));
            }
            Action::Serve { granted }
        }
        Strategy::Strip => Action::Strip,
        Strategy::Generate { template } => Action::Generate {
            template: template.source().to_string(),
            target_placeholders: template
                .target_placeholders()
                .into_iter()
                .map(str::to_string)
                .collect(),
            random: template.is_random(),
        },
        Strategy::Prompt(spec) => Action::Prompt {
            prompt: spec.clone(),
        },
        Strategy::Delegate { reference, present } => {
            let text = reference.to_string();
            if !present {
                problems.push(finding::not_present(name, tier, &text));
            }
            Action::Delegate {
                reference: text,
                scheme: reference.scheme().to_string(),
                present: *present,
            }
        }
    }
}

impl Action {
    /// One line for a table: `generate file://{{USER_DATA}}/app.db`.
    pub fn describe(&self) -> String {
        match self {
            Action::Serve { granted: true } => "serve".to_string(),
            Action::Serve { granted: false } => "serve (not granted)".to_string(),
            Action::Strip => "strip".to_string(),
            Action::Generate { template, .. } => format!("generate {template}"),
            Action::Prompt { prompt } => Strategy::Prompt(prompt.clone()).to_string(),
            Action::Delegate {
                reference, present, ..
            } => format!(
                "delegate {reference} ({})",
                if *present { "present" } else { "not present" }
            ),
            Action::None => "(no strategy)".to_string(),
            Action::Blocked { declared, reason } => {
                format!("blocked: declares {declared} ({reason}), treated as strip")
            }
        }
    }
}

impl fmt::Display for Plan {
    /// A table a person reads: one row per secret, then the problems.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let problems = match self.problems.len() {
            0 => "no problems".to_string(),
            1 => "1 problem".to_string(),
            n => format!("{n} problems"),
        };
        writeln!(
            f,
            "plan for service {} on tier {} ({}): {} secrets, {problems}",
            self.service,
            self.tier,
            match (self.tier_declared, self.core) {
                (false, _) => "not declared",
                (true, true) => "core",
                (true, false) => "not core",
            },
            self.entries.len(),
        )?;
        if !self.entries.is_empty() {
            let mut table = Table::new(&["SECRET", "CLASS", "ACTION"]);
            for e in &self.entries {
                table.row(vec![
                    e.secret.clone(),
                    e.class.map_or("-", Class::as_str).to_string(),
                    e.action.describe(),
                ]);
            }
            write!(f, "{table}")?;
        }
        for p in &self.problems {
            writeln!(f, "problem {}: {}", p.id, p.message)?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
