//! The errors of the catalog's layers (templates have theirs, [`TemplateError`]).
//!
//! - [`FieldError`]: one field's text is not valid (a period, a reference, a pattern, ...).
//! - [`DeclError`]: a declaration the catalog refuses (names, unknown tiers, the class
//!   rule, values where none are allowed), naming the secret and tier.
//! - [`Refusal`]: every refused declaration of one catalog or change, each [`Located`] at
//!   its line when it came from a file.
//! - [`LoadError`]: reading a catalog file (syntax, shape, a refusal).
//! - [`DiffError`]: computing or applying a diff.
//!
//! Messages say what is wrong, where and what to do. They name secrets, services and tiers
//! (metadata), never a value; a name that breaks the name rule is not echoed (it could be
//! anything, a pasted value included). Each error also has a `brief()`: a fixed text of at
//! most [`MAX_BRIEF_LEN`] bytes without names, for channels with a small limit (a ctl
//! error must fit in 127 bytes with its prefix, [`ctl::MAX_ERROR_LEN`]).

use std::fmt;

use crate::template::TemplateError;

/// Longest `brief()` text, in bytes: room is left for a ctl prefix (`ctl: line 12: ...`).
pub const MAX_BRIEF_LEN: usize = 96;

/// Most refused declarations a [`Refusal`] lists; the rest are counted.
pub const MAX_LISTED: usize = 50;

/// One field's text is not valid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldError {
    /// A rotation period that is not `90d`-like or is out of bounds.
    #[error("{0}")]
    Period(&'static str),
    /// A delegate reference that is not `scheme:rest` or breaks its scheme's rules.
    #[error("{0}")]
    Reference(&'static str),
    /// A template that does not parse.
    #[error("{0}")]
    Template(#[from] TemplateError),
    /// A prompt pattern that is not a regular expression (or too big a one).
    #[error("{}{reason}", at.map(|at| format!("at byte {at}: ")).unwrap_or_default())]
    Pattern {
        /// The 0-based byte offset of the fault, when known.
        at: Option<usize>,
        /// What is wrong.
        reason: String,
    },
    /// Free text (owner, description, label, help) that is empty, too long or holds control
    /// characters.
    #[error("{0}")]
    Text(&'static str),
    /// A prompt's bounds that contradict each other or its kind.
    #[error("{0}")]
    Prompt(&'static str),
    /// A strategy's fields that do not go together (a `template` on `strip`, a `prompt`
    /// without `label`).
    #[error("{0}")]
    Shape(&'static str),
}

impl FieldError {
    /// The 0-based byte offset of the fault in the field's text, when known (templates
    /// and patterns).
    pub fn at(&self) -> Option<usize> {
        match self {
            FieldError::Template(e) => e.at(),
            FieldError::Pattern { at, .. } => *at,
            _ => None,
        }
    }

    /// What is wrong in at most 96 bytes, without the position: the field's own fixed text
    /// where it has one, else a summary.
    pub fn brief(&self) -> &'static str {
        match self {
            FieldError::Period(text)
            | FieldError::Reference(text)
            | FieldError::Text(text)
            | FieldError::Prompt(text)
            | FieldError::Shape(text)
                if text.len() <= MAX_BRIEF_LEN =>
            {
                text
            }
            FieldError::Template(e) => e.brief(),
            FieldError::Pattern { at: Some(_), .. } => "not a regular expression",
            FieldError::Pattern { .. } => "the pattern is too long or compiles too big",
            FieldError::Period(_) => "not a rotation period (30m, 12h, 90d, 2w)",
            FieldError::Reference(_) => "not a reference (github:OWNER/REPO#NAME, env:NAME, ...)",
            FieldError::Text(_) | FieldError::Prompt(_) | FieldError::Shape(_) => {
                "the field is not valid"
            }
        }
    }
}

/// A declaration the catalog refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeclError {
    /// A tier name that breaks the tier rule (not echoed).
    #[error("a tier name is 1 to 32 of a-z 0-9 _ -")]
    TierName,
    /// A secret name that breaks the name rule (not echoed).
    #[error("a secret name is 1 to 128 of A-Z a-z 0-9 . _ -, not . or ..")]
    SecretName,
    /// A service name that breaks the name rule or is reserved (not echoed).
    #[error("a service name is 1 to 128 of A-Z a-z 0-9 . _ -, not . or .., admin or secrets")]
    ServiceName,
    /// One field of a secret's declaration is not valid.
    #[error("secret `{secret}`{}, {field}: {source}", on_tier(tier))]
    Field {
        /// The secret.
        secret: String,
        /// The tier, for a field of a strategy.
        tier: Option<String>,
        /// The field (`owner`, `template`, `pattern`, ...).
        field: &'static str,
        /// What is wrong with it.
        source: Box<FieldError>,
    },
    /// A strategy or a service names a tier that is not declared.
    #[error(
        "{} tier `{tier}`, which is not declared; declare it (`[tiers.{tier}]`, or \
         `deploy tier add {tier}`)",
        match (secret, service) {
            (Some(s), _) => format!("secret `{s}` has a strategy for"),
            (None, Some(s)) => format!("service `{s}` lists"),
            (None, None) => "no such tier:".to_string(),
        }
    )]
    UnknownTier {
        /// The secret whose strategy names it.
        secret: Option<String>,
        /// The service that lists it.
        service: Option<String>,
        /// The tier.
        tier: String,
    },
    /// A strategy that would take an infrastructure secret off the core server.
    #[error(
        "secret `{secret}` is infrastructure on tier `{tier}`{}, and infrastructure never \
         leaves the core server: only `serve` on a core tier or `strip` may be declared there, \
         not `{strategy}`; declare `strip`, or give tier `{tier}` another class if its value \
         there is another one",
        if *overridden { " (its class there)" } else { "" }
    )]
    InfrastructureLeaves {
        /// The secret.
        secret: String,
        /// The tier.
        tier: String,
        /// The strategy refused (`generate`, `prompt`, `delegate`, or `serve` off core).
        strategy: &'static str,
        /// Whether the class is the tier's override rather than the secret's own.
        overridden: bool,
    },
    /// `serve` on a tier that is not core.
    #[error(
        "secret `{secret}`: `serve` on tier `{tier}`, which is not core; only the core server \
         serves stored values: declare the tier core, or another strategy there"
    )]
    ServeOffCore {
        /// The secret.
        secret: String,
        /// The tier.
        tier: String,
    },
    /// A service lists a tier twice.
    #[error("service `{service}` lists tier `{tier}` twice")]
    DuplicateServiceTier {
        /// The service.
        service: String,
        /// The tier.
        tier: String,
    },
    /// A tier cannot be removed while strategies or services use it.
    #[error("tier `{tier}` is used by {uses} strategies and service lists; remove those first")]
    TierInUse {
        /// The tier.
        tier: String,
        /// How many strategies and service lists name it.
        uses: usize,
    },
    /// The operation needs a secret the catalog does not hold.
    #[error("secret `{secret}` is not in the catalog")]
    NoSuchSecret {
        /// The secret.
        secret: String,
    },
    /// The operation needs a strategy the secret does not have on the tier.
    #[error("secret `{secret}` has no strategy for tier `{tier}`")]
    NoStrategy {
        /// The secret.
        secret: String,
        /// The tier.
        tier: String,
    },
    /// Marking present a strategy that does not delegate.
    #[error(
        "secret `{secret}` is not delegated on tier `{tier}`: only a delegated reference can \
         be present"
    )]
    NotDelegated {
        /// The secret.
        secret: String,
        /// The tier.
        tier: String,
    },
    /// A catalog carries a value and the caller did not allow values.
    #[error(
        "secret `{secret}` has a `value`: a catalog holds metadata, not values, because \
         catalogs end up in git; remove it and set values with `deploy secret set`, or pass \
         --with-values to store it"
    )]
    ValueNotAllowed {
        /// The secret.
        secret: String,
    },
    /// A secret given two values (seed JSON: on two tiers); the store keeps one.
    #[error("secret `{secret}` has more than one `value`; the store keeps one per secret")]
    TwoValues {
        /// The secret.
        secret: String,
    },
    /// A value larger than the store takes.
    #[error("secret `{secret}`: a value is at most {limit} bytes")]
    ValueTooLarge {
        /// The secret.
        secret: String,
        /// The store's limit.
        limit: usize,
    },
    /// An entry of the seed-000 JSON form that does not map onto a strategy.
    #[error("secret `{secret}`{}: {reason}", on_tier(tier))]
    Seed {
        /// The secret (`secret_id`).
        secret: String,
        /// The tier entry.
        tier: Option<String>,
        /// What is wrong and how to say it.
        reason: &'static str,
    },
    /// Core tiers give one secret different templates to make its value from.
    #[error(
        "secret `{secret}` has different templates on its core tiers; give the template to use"
    )]
    AmbiguousTemplate {
        /// The secret.
        secret: String,
    },
    /// More of something than a catalog holds.
    #[error("a catalog holds at most {limit} {what}")]
    TooMany {
        /// What (`tiers`, `secrets`, ...).
        what: &'static str,
        /// The limit.
        limit: usize,
    },
}

fn on_tier(tier: &Option<String>) -> String {
    tier.as_ref()
        .map(|t| format!(", tier `{t}`"))
        .unwrap_or_default()
}

impl DeclError {
    /// A fixed text without names, at most [`MAX_BRIEF_LEN`] bytes.
    pub fn brief(&self) -> &'static str {
        match self {
            DeclError::TierName => "a tier name is 1 to 32 of a-z 0-9 _ -",
            DeclError::SecretName => "a secret name breaks the name rule (A-Z a-z 0-9 . _ -)",
            DeclError::ServiceName => "a service name breaks the name rule, or is reserved",
            DeclError::Field { .. } => "a field of a declaration is not valid",
            DeclError::UnknownTier { .. } => "a tier is used but not declared",
            DeclError::InfrastructureLeaves { .. } => {
                "infrastructure never leaves the core server: only serve (on core) or strip"
            }
            DeclError::ServeOffCore { .. } => "serve is for core tiers only",
            DeclError::DuplicateServiceTier { .. } => "a service lists a tier twice",
            DeclError::TierInUse { .. } => "the tier is in use; remove its strategies first",
            DeclError::NoSuchSecret { .. } => "no such secret in the catalog",
            DeclError::NoStrategy { .. } => "no strategy for that tier",
            DeclError::NotDelegated { .. } => "only a delegated reference can be present",
            DeclError::ValueNotAllowed { .. } => {
                "a catalog holds no values (it ends up in git); --with-values stores them"
            }
            DeclError::TwoValues { .. } => "a secret has more than one value",
            DeclError::ValueTooLarge { .. } => "a value is too large",
            DeclError::Seed { .. } => "an entry of the seed JSON form does not map to a strategy",
            DeclError::AmbiguousTemplate { .. } => "core tiers give different templates",
            DeclError::TooMany { .. } => "the catalog is too large",
        }
    }
}

/// A refused declaration and, when it came from a file, its line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The 1-based line of the file where the declaration is.
    pub line: Option<usize>,
    /// What is refused.
    pub error: DeclError,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.error),
            None => write!(f, "{}", self.error),
        }
    }
}

impl From<DeclError> for Located {
    fn from(error: DeclError) -> Located {
        Located { line: None, error }
    }
}

/// Every declaration a catalog (or a change to one) had refused; nothing was changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// The refused declarations, in the order of the file (or of the catalog's names).
    pub errors: Vec<Located>,
}

impl Refusal {
    /// A refusal of one declaration.
    pub fn one(error: DeclError) -> Refusal {
        Refusal {
            errors: vec![error.into()],
        }
    }

    /// A fixed text without names, at most [`MAX_BRIEF_LEN`] bytes.
    pub fn brief(&self) -> &'static str {
        match self.errors.as_slice() {
            [one] => one.error.brief(),
            _ => "the catalog has refused declarations; see the full report",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.errors.as_slice() {
            [] => write!(f, "refused"),
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "{} declarations refused:", many.len())?;
                for e in many.iter().take(MAX_LISTED) {
                    write!(f, "\n  {e}")?;
                }
                if many.len() > MAX_LISTED {
                    write!(f, "\n  and {} more", many.len() - MAX_LISTED)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// A catalog file that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file is larger than [`crate::MAX_CATALOG_LEN`].
    #[error("a catalog file is at most {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: usize,
    },
    /// The file is not valid TOML or JSON, or not shaped like a catalog.
    #[error("{format}{}: {message}", at(*line, *column))]
    Syntax {
        /// `TOML` or `JSON`.
        format: &'static str,
        /// The 1-based line of the fault, when known.
        line: Option<usize>,
        /// The 1-based column (in characters) of the fault, when known.
        column: Option<usize>,
        /// What is wrong, without the file's text.
        message: String,
    },
    /// The file is well-formed, and declares what the catalog refuses.
    #[error("{0}")]
    Refused(Refusal),
}

fn at(line: Option<usize>, column: Option<usize>) -> String {
    match (line, column) {
        (Some(l), Some(c)) => format!(" at line {l}, column {c}"),
        (Some(l), None) => format!(" at line {l}"),
        _ => String::new(),
    }
}

impl LoadError {
    /// A fixed text without names, at most [`MAX_BRIEF_LEN`] bytes.
    pub fn brief(&self) -> &'static str {
        match self {
            LoadError::TooLarge { .. } => "the catalog file is too large",
            LoadError::Syntax { .. } => "the catalog file is not valid TOML or JSON catalog",
            LoadError::Refused(r) => r.brief(),
        }
    }
}

/// A diff that could not be made or applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// The catalog the new one would make is refused (secrets it leaves alone would break a
    /// rule with the tiers it declares).
    #[error("{0}")]
    Refused(Refusal),
    /// The catalog changed since the diff was made.
    #[error(
        "{what} `{name}` changed since the diff was made; nothing was applied: make the diff \
         again"
    )]
    Stale {
        /// `tier`, `service` or `secret`.
        what: &'static str,
        /// Its name.
        name: String,
    },
}

impl DiffError {
    /// A fixed text without names, at most [`MAX_BRIEF_LEN`] bytes.
    pub fn brief(&self) -> &'static str {
        match self {
            DiffError::Refused(r) => r.brief(),
            DiffError::Stale { .. } => "the catalog changed since the diff was made; diff again",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_decl_error() -> Vec<DeclError> {
        let s = || "a".repeat(128);
        let t = || "t".repeat(32);
        vec![
            DeclError::TierName,
            DeclError::SecretName,
            DeclError::ServiceName,
            DeclError::Field {
                secret: s(),
                tier: Some(t()),
                field: "template",
                source: Box::new(FieldError::Text("x")),
            },
            DeclError::UnknownTier {
                secret: Some(s()),
                service: None,
                tier: t(),
            },
            DeclError::InfrastructureLeaves {
                secret: s(),
                tier: t(),
                strategy: "generate",
                overridden: true,
            },
            DeclError::ServeOffCore {
                secret: s(),
                tier: t(),
            },
            DeclError::DuplicateServiceTier {
                service: s(),
                tier: t(),
            },
            DeclError::TierInUse { tier: t(), uses: 3 },
            DeclError::NoSuchSecret { secret: s() },
            DeclError::NoStrategy {
                secret: s(),
                tier: t(),
            },
            DeclError::NotDelegated {
                secret: s(),
                tier: t(),
            },
            DeclError::ValueNotAllowed { secret: s() },
            DeclError::TwoValues { secret: s() },
            DeclError::ValueTooLarge {
                secret: s(),
                limit: 1,
            },
            DeclError::Seed {
                secret: s(),
                tier: None,
                reason: "x",
            },
            DeclError::AmbiguousTemplate { secret: s() },
            DeclError::TooMany {
                what: "tiers",
                limit: 1,
            },
        ]
    }

    #[test]
    fn briefs_fit_a_ctl_error_and_name_nothing() {
        let mut briefs: Vec<&str> = every_decl_error().iter().map(DeclError::brief).collect();
        briefs.push(Refusal { errors: vec![] }.brief());
        briefs.push(LoadError::TooLarge { limit: 1 }.brief());
        briefs.push(
            LoadError::Syntax {
                format: "TOML",
                line: None,
                column: None,
                message: String::new(),
            }
            .brief(),
        );
        briefs.push(
            DiffError::Stale {
                what: "tier",
                name: "t".into(),
            }
            .brief(),
        );
        for brief in briefs {
            assert!(
                brief.len() <= MAX_BRIEF_LEN,
                "{} bytes: {brief}",
                brief.len()
            );
            assert!(brief.len() + "ctl: line 99999: catalog: ".len() <= ctl::MAX_ERROR_LEN);
            assert!(
                !brief.contains("aaaa") && !brief.contains("tttt"),
                "{brief}"
            );
        }
    }

    #[test]
    fn a_refusal_lists_at_most_its_limit() {
        let errors = (0..MAX_LISTED + 5)
            .map(|_| Located {
                line: Some(1),
                error: DeclError::TierName,
            })
            .collect();
        let text = Refusal { errors }.to_string();
        assert_eq!(text.lines().count(), 1 + MAX_LISTED + 1);
        assert!(text.ends_with("and 5 more"), "{text}");
    }
}
