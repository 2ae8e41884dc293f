//! The declarations: classes, strategies, prompts, a secret's metadata, tiers, services.
//!
//! Field-level validity lives in the types: a [`Template`], [`Reference`], [`Pattern`] or
//! [`Period`] exists only checked; free text is checked by [`SecretMeta::check`] and
//! [`Strategy::check`]. The rules between fields (the class on a tier, whether the tier is
//! core) are the catalog's ([`check_rule`]).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{DeclError, FieldError};
use crate::period::Period;
use crate::reference::Reference;
use crate::template::Template;

/// Longest owner, in bytes.
pub const MAX_OWNER_LEN: usize = 256;
/// Longest description or prompt help, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 4096;
/// Longest prompt label, in bytes.
pub const MAX_LABEL_LEN: usize = 256;
/// Longest prompt pattern, in bytes.
pub const MAX_PATTERN_LEN: usize = 1024;
/// The most memory a prompt pattern may compile to (the regex crate's size limit).
pub const MAX_PATTERN_SIZE: usize = 1 << 20;

/// What kind of secret it is (seed 001 "Classification").
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Class {
    /// Master DB passwords, root tokens, our own keys: never leaves the core server.
    Infrastructure,
    /// JWT signing keys, per-install credentials: typically generated per deployment.
    Service,
    /// Customer API keys, OAuth client secrets: typically asked at first run.
    User,
}

impl Class {
    /// `infrastructure`, `service` or `user`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Infrastructure => "infrastructure",
            Class::Service => "service",
            Class::User => "user",
        }
    }

    /// Parses `infrastructure`, `service` or `user`.
    pub fn parse(text: &str) -> Option<Class> {
        match text {
            "infrastructure" => Some(Class::Infrastructure),
            "service" => Some(Class::Service),
            "user" => Some(Class::User),
            _ => None,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a first-run prompt asks for; a UI picks its input widget by it.
#[derive(
    Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PromptKind {
    /// Any text.
    #[default]
    Text,
    /// Text not to be shown as typed.
    Password,
    /// A URL.
    Url,
    /// An e-mail address.
    Email,
    /// An integer; `min` and `max` bound its value.
    Number,
}

impl PromptKind {
    /// Parses `text`, `password`, `url`, `email` or `number`.
    pub fn parse(text: &str) -> Option<PromptKind> {
        Some(match text {
            "text" => PromptKind::Text,
            "password" => PromptKind::Password,
            "url" => PromptKind::Url,
            "email" => PromptKind::Email,
            "number" => PromptKind::Number,
            _ => return None,
        })
    }

    /// `text`, `password`, `url`, `email` or `number`.
    pub fn as_str(self) -> &'static str {
        match self {
            PromptKind::Text => "text",
            PromptKind::Password => "password",
            PromptKind::Url => "url",
            PromptKind::Email => "email",
            PromptKind::Number => "number",
        }
    }
}

/// A prompt's validation pattern: a regular expression (Rust `regex` syntax) that the whole
/// answer must match, checked to parse and to compile to at most [`MAX_PATTERN_SIZE`].
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Pattern(String);

impl Pattern {
    /// Checks a pattern.
    ///
    /// # Errors
    /// [`FieldError::Pattern`], with the byte offset of the fault when the pattern does not
    /// parse; the pattern is not echoed.
    pub fn new(text: &str) -> Result<Pattern, FieldError> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(FieldError::Pattern {
                at: None,
                reason: format!("a pattern is at most {MAX_PATTERN_LEN} bytes"),
            });
        }
        if let Err(e) = regex_syntax::Parser::new().parse(text) {
            let (at, kind) = match &e {
                regex_syntax::Error::Parse(e) => (e.span().start.offset, e.kind().to_string()),
                regex_syntax::Error::Translate(e) => (e.span().start.offset, e.kind().to_string()),
                _ => (0, "not a regular expression".to_string()),
            };
            return Err(FieldError::Pattern {
                at: Some(at),
                reason: format!("not a regular expression: {kind}"),
            });
        }
        regex::RegexBuilder::new(text)
            .size_limit(MAX_PATTERN_SIZE)
            .build()
            .map_err(|_| FieldError::Pattern {
                at: None,
                reason: "the pattern compiles too big (over 1 MiB); make it simpler".to_string(),
            })?;
        Ok(Pattern(text.to_string()))
    }

    /// The pattern's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Pattern, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Pattern::new(&text).map_err(|e| serde::de::Error::custom(format!("pattern {e}")))
    }
}

/// What a `prompt` strategy asks at first run, with its UI copy and validation rules.
///
/// `min` and `max` bound the value of a `number`, and the length in characters of anything
/// else.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PromptSpec {
    /// What the UI shows as the question.
    pub label: String,
    /// Longer help text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
    /// The kind of answer.
    #[serde(default)]
    pub kind: PromptKind,
    /// A pattern the whole answer must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<Pattern>,
    /// The least value (`number`) or length (otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// The greatest value (`number`) or length (otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// Whether the user may leave it empty.
    #[serde(default)]
    pub optional: bool,
}

impl PromptSpec {
    /// A required text prompt with this label.
    pub fn new(label: impl Into<String>) -> PromptSpec {
        PromptSpec {
            label: label.into(),
            help: None,
            kind: PromptKind::Text,
            pattern: None,
            min: None,
            max: None,
            optional: false,
        }
    }

    /// Checks the free text and the bounds; returns the field at fault.
    ///
    /// # Errors
    /// The field's name and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, FieldError)> {
        check_line(&self.label, MAX_LABEL_LEN).map_err(|e| ("label", e))?;
        if let Some(help) = &self.help {
            check_paragraph(help, MAX_DESCRIPTION_LEN).map_err(|e| ("help", e))?;
        }
        if let (Some(min), Some(max)) = (self.min, self.max)
            && min > max
        {
            return Err(("min", FieldError::Prompt("min is greater than max")));
        }
        if self.kind != PromptKind::Number
            && (self.min.is_some_and(|n| n < 0) || self.max.is_some_and(|n| n < 0))
        {
            return Err((
                "min",
                FieldError::Prompt("min and max bound a length here, which is not negative"),
            ));
        }
        Ok(())
    }
}

/// What happens to a secret on a tier.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Strategy {
    /// The core server serves the stored value (core tiers only). `template`, if given, is
    /// how `deploy secret set NAME --generate` makes that stored value.
    Serve {
        /// The template the stored value is made from, if any.
        template: Option<Template>,
    },
    /// It never leaves: deployments get nothing.
    Strip,
    /// A fresh value per deployment, from a template.
    Generate {
        /// The template.
        template: Template,
    },
    /// Asked of the user at first run.
    Prompt(PromptSpec),
    /// A provider holds it; we keep the reference and whether it is there.
    Delegate {
        /// Where it lives.
        reference: Reference,
        /// Whether the provider holds it (marked by the operator).
        present: bool,
    },
}

impl Strategy {
    /// `serve`, `strip`, `generate`, `prompt` or `delegate`.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Serve { .. } => "serve",
            Strategy::Strip => "strip",
            Strategy::Generate { .. } => "generate",
            Strategy::Prompt(_) => "prompt",
            Strategy::Delegate { .. } => "delegate",
        }
    }

    /// Checks the strategy's free text (a prompt's); the rest is checked by its types.
    ///
    /// # Errors
    /// The field's name and what is wrong with it.
    pub fn check(&self) -> Result<(), (&'static str, FieldError)> {
        match self {
            Strategy::Prompt(spec) => spec.check(),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Strategy {
    /// One line, for diffs and tables: `generate file://{{USER_DATA}}/app.db`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Serve { template: None } => f.write_str("serve"),
            Strategy::Serve {
                template: Some(template),
            } => write!(f, "serve (stored value made from {template})"),
            Strategy::Strip => f.write_str("strip"),
            Strategy::Generate { template } => write!(f, "generate {template}"),
            Strategy::Prompt(spec) => {
                write!(f, "prompt {:?} ({}", spec.label, spec.kind.as_str())?;
                if spec.optional {
                    f.write_str(", optional")?;
                }
                if let Some(p) = &spec.pattern {
                    write!(f, ", pattern {:?}", p.as_str())?;
                }
                if let Some(n) = spec.min {
                    write!(f, ", min {n}")?;
                }
                if let Some(n) = spec.max {
                    write!(f, ", max {n}")?;
                }
                if let Some(h) = &spec.help {
                    write!(f, ", help {h:?}")?;
                }
                f.write_str(")")
            }
            Strategy::Delegate { reference, present } => write!(
                f,
                "delegate {reference} ({})",
                if *present { "present" } else { "not present" }
            ),
        }
    }
}

/// A secret's declaration for one tier: a strategy, and the class there if it differs.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct TierPolicy {
    /// The class on this tier, overriding the secret's.
    pub class: Option<Class>,
    /// What happens on this tier.
    pub strategy: Strategy,
}

impl TierPolicy {
    /// A policy with the secret's own class.
    pub fn new(strategy: Strategy) -> TierPolicy {
        TierPolicy {
            class: None,
            strategy,
        }
    }
}

impl fmt::Display for TierPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.strategy)?;
        if let Some(class) = self.class {
            write!(f, "; class {class} here")?;
        }
        Ok(())
    }
}

/// A secret's metadata: never its value.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct SecretMeta {
    /// Its class; absent until someone decides (lint reports it).
    pub class: Option<Class>,
    /// Who answers for it (free text).
    pub owner: Option<String>,
    /// How often to rotate it.
    pub rotate_every: Period,
    /// What it is.
    pub description: Option<String>,
    /// Its strategy per tier.
    pub tiers: BTreeMap<String, TierPolicy>,
}

impl SecretMeta {
    /// The class on `tier`: the tier's override, else the secret's own.
    pub fn class_on(&self, tier: &str) -> Option<Class> {
        self.tiers.get(tier).and_then(|p| p.class).or(self.class)
    }

    /// Checks the free text (owner, description) and the strategies' fields.
    ///
    /// # Errors
    /// The tier (for a strategy's field), the field's name and what is wrong with it.
    pub fn check(&self) -> Result<(), (Option<&str>, &'static str, FieldError)> {
        if let Some(owner) = &self.owner {
            check_line(owner, MAX_OWNER_LEN).map_err(|e| (None, "owner", e))?;
        }
        if let Some(d) = &self.description {
            check_paragraph(d, MAX_DESCRIPTION_LEN).map_err(|e| (None, "description", e))?;
        }
        for (tier, policy) in &self.tiers {
            policy
                .strategy
                .check()
                .map_err(|(field, e)| (Some(tier.as_str()), field, e))?;
        }
        Ok(())
    }
}

/// A deployment tier.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    /// Whether the tier is the core server itself, where services read their view from
    /// srv-secrets; only core tiers may `serve`.
    #[serde(default)]
    pub core: bool,
}

/// A service's declaration in the catalog.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct Service {
    /// The tiers it is deployed to, sorted; absent means every declared tier.
    pub tiers: Option<Vec<String>>,
}

/// The rule between a strategy, the class on its tier and the tier: where the class is
/// infrastructure only `serve` on a core tier or `strip`; `serve` only on a core tier.
///
/// `tier` is the tier's declaration, `None` when it is not declared.
///
/// # Errors
/// [`DeclError::UnknownTier`], [`DeclError::InfrastructureLeaves`] or
/// [`DeclError::ServeOffCore`].
pub fn check_rule(
    secret: &str,
    tier_name: &str,
    tier: Option<&Tier>,
    meta: &SecretMeta,
    policy: &TierPolicy,
) -> Result<(), DeclError> {
    let Some(tier) = tier else {
        return Err(DeclError::UnknownTier {
            secret: Some(secret.to_string()),
            service: None,
            tier: tier_name.to_string(),
        });
    };
    let class = policy.class.or(meta.class);
    let allowed_for_infrastructure = match policy.strategy {
        Strategy::Serve { .. } => tier.core,
        Strategy::Strip => true,
        _ => false,
    };
    if class == Some(Class::Infrastructure) && !allowed_for_infrastructure {
        return Err(DeclError::InfrastructureLeaves {
            secret: secret.to_string(),
            tier: tier_name.to_string(),
            strategy: policy.strategy.name(),
            overridden: policy.class.is_some(),
        });
    }
    if matches!(policy.strategy, Strategy::Serve { .. }) && !tier.core {
        return Err(DeclError::ServeOffCore {
            secret: secret.to_string(),
            tier: tier_name.to_string(),
        });
    }
    Ok(())
}

/// One line of free text: 1 to `max` bytes, no control characters.
pub(crate) fn check_line(text: &str, max: usize) -> Result<(), FieldError> {
    check_text(text, max, false)
}

/// Free text that may hold newlines and tabs.
pub(crate) fn check_paragraph(text: &str, max: usize) -> Result<(), FieldError> {
    check_text(text, max, true)
}

fn check_text(text: &str, max: usize, paragraph: bool) -> Result<(), FieldError> {
    if text.is_empty() {
        return Err(FieldError::Text("empty; leave the field out instead"));
    }
    if text.len() > max {
        return Err(FieldError::Text(if max == MAX_DESCRIPTION_LEN {
            "longer than 4096 bytes"
        } else {
            "longer than 256 bytes"
        }));
    }
    // Control characters and bidirectional overrides would rewrite the terminal or the
    // table a person reads this in.
    let bad = |c: char| {
        (c.is_control() && !(paragraph && (c == '\n' || c == '\t')))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if text.chars().any(bad) {
        return Err(FieldError::Text(if paragraph {
            "holds control characters (newlines and tabs are fine)"
        } else {
            "holds control characters or newlines"
        }));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    fn policy(class: Option<Class>, strategy: Strategy) -> TierPolicy {
        TierPolicy { class, strategy }
    }

    fn generate() -> Strategy {
        Strategy::Generate {
            template: Template::parse("{{random:hex:32}}").unwrap(),
        }
    }

    #[test]
    fn infrastructure_stays_on_the_core_server() {
        let core = Tier { core: true };
        let edge = Tier { core: false };
        let infra = SecretMeta {
            class: Some(Class::Infrastructure),
            ..SecretMeta::default()
        };
        let serve = Strategy::Serve { template: None };
        let ok =
            |tier: &Tier, s: Strategy| check_rule("k", "t", Some(tier), &infra, &policy(None, s));
        assert!(ok(&core, serve.clone()).is_ok());
        assert!(ok(&core, Strategy::Strip).is_ok());
        assert!(ok(&edge, Strategy::Strip).is_ok());
        assert!(matches!(
            ok(&edge, serve.clone()),
            Err(DeclError::InfrastructureLeaves {
                strategy: "serve",
                ..
            })
        ));
        assert!(matches!(
            ok(&core, generate()),
            Err(DeclError::InfrastructureLeaves {
                strategy: "generate",
                ..
            })
        ));
        let delegate = Strategy::Delegate {
            reference: Reference::parse("env:X").unwrap(),
            present: true,
        };
        assert!(ok(&edge, delegate).is_err());
        assert!(ok(&edge, Strategy::Prompt(PromptSpec::new("Key"))).is_err());

        // The tier's class decides, both ways.
        let service_here = policy(Some(Class::Service), generate());
        assert!(check_rule("k", "t", Some(&edge), &infra, &service_here).is_ok());
        let plain = SecretMeta::default();
        let infra_here = policy(Some(Class::Infrastructure), generate());
        let e = check_rule("k", "t", Some(&edge), &plain, &infra_here).unwrap_err();
        assert!(e.to_string().contains("(its class there)"), "{e}");
    }

    #[test]
    fn serve_is_for_core_tiers() {
        let meta = SecretMeta::default();
        let serve = policy(None, Strategy::Serve { template: None });
        assert!(check_rule("k", "t", Some(&Tier { core: true }), &meta, &serve).is_ok());
        assert!(matches!(
            check_rule("k", "t", Some(&Tier { core: false }), &meta, &serve),
            Err(DeclError::ServeOffCore { .. })
        ));
        assert!(matches!(
            check_rule("k", "t", None, &meta, &serve),
            Err(DeclError::UnknownTier { .. })
        ));
    }

    #[test]
    fn patterns_are_checked_with_their_position() {
        assert!(Pattern::new("^sk-or-[A-Za-z0-9]{20,}$").is_ok());
        let e = Pattern::new("sk-(or").unwrap_err();
        assert!(
            matches!(e, FieldError::Pattern { at: Some(3), .. }),
            "{e:?}"
        );
        assert!(
            e.to_string()
                .starts_with("at byte 3: not a regular expression"),
            "{e}"
        );
        assert!(
            Pattern::new("a{1000}{1000}").is_err(),
            "too big once compiled"
        );
        assert!(Pattern::new(&"a".repeat(MAX_PATTERN_LEN + 1)).is_err());
    }

    #[test]
    fn prompt_bounds() {
        let mut spec = PromptSpec::new("Port");
        spec.kind = PromptKind::Number;
        spec.min = Some(-1);
        spec.max = Some(65535);
        assert!(spec.check().is_ok());
        spec.kind = PromptKind::Text;
        assert_eq!(spec.check().unwrap_err().0, "min");
        spec.min = Some(10);
        spec.max = Some(5);
        assert!(spec.check().is_err());
        spec.min = None;
        spec.label = String::new();
        assert_eq!(spec.check().unwrap_err().0, "label");
    }

    #[test]
    fn free_text() {
        assert!(check_line("platform team <ops@example.com>", 256).is_ok());
        assert!(check_line("", 256).is_err());
        assert!(check_line("a\nb", 256).is_err());
        assert!(check_line("\u{1b}[2J", 256).is_err());
        assert!(check_line("abc\u{202e}", 256).is_err());
        assert!(check_paragraph("one\n\ttwo", 4096).is_ok());
        assert!(check_paragraph("bell\u{7}", 4096).is_err());
        assert!(check_line(&"x".repeat(257), 256).is_err());
    }

    #[test]
    fn strategies_print_on_one_line() {
        let mut spec = PromptSpec::new("OpenRouter key");
        spec.kind = PromptKind::Password;
        spec.help = Some("From openrouter.ai\nkeys".into());
        spec.optional = true;
        let s = Strategy::Prompt(spec).to_string();
        assert_eq!(
            s,
            "prompt \"OpenRouter key\" (password, optional, help \"From openrouter.ai\\nkeys\")"
        );
        let d = Strategy::Delegate {
            reference: Reference::parse("env:POSTGRES_URL").unwrap(),
            present: false,
        };
        assert_eq!(d.to_string(), "delegate env:POSTGRES_URL (not present)");
        let p = TierPolicy {
            class: Some(Class::Service),
            strategy: generate(),
        };
        assert_eq!(
            p.to_string(),
            "generate {{random:hex:32}}; class service here"
        );
    }
}
