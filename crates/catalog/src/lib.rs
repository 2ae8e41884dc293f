//! The deployment catalog of srv-secrets: for every secret and deployment tier, what
//! happens to it there, and the plans and lint built from that.
//!
//! A platform ships the same services to several tiers (local_dev, desktop, mobile,
//! cloud, ...). Per tier, a secret is served by the core server, stripped, generated fresh
//! from a template, asked of the user at first run, or delegated to a provider that holds
//! it (PRODUCT.md "Deployment tiers"). This crate holds those declarations as values, and
//! answers questions about them with pure functions: it knows nothing of storage, 9P, ctl
//! or HTTP. The vault stores a [`Catalog`] (whole, or per secret: [`SecretMeta`] is serde),
//! ctl commands map onto its mutators, and plans, lint and diffs are computed from it and
//! from what the store knows ([`Store`]: which secrets have values, which are granted;
//! never a value).
//!
//! The rule it enforces, everywhere a declaration comes in: where a secret's class on a
//! tier is infrastructure, only `serve` on a core tier or `strip` may be declared; `serve`
//! is for core tiers only. So no strategy ever ships a stored value off the core server.
//!
//! ```
//! use catalog::{Catalog, Format, LoadOptions, StoreFacts, load, plan};
//! let file = r#"
//! [tiers.local_dev]
//! core = true
//! [tiers.desktop]
//! core = false
//! [secrets.jwt_key]
//! class = "service"
//! [secrets.jwt_key.tiers.local_dev]
//! strategy = "serve"
//! [secrets.jwt_key.tiers.desktop]
//! strategy = "generate"
//! template = "{{random:base64url:32}}"
//! "#;
//! let loaded = load(file, Format::Toml, LoadOptions::default()).unwrap();
//! let p = plan(&loaded.catalog, "web", "desktop", &["jwt_key"], &StoreFacts::default());
//! assert!(p.ok);
//! assert_eq!(loaded.catalog.to_toml(), load(&loaded.catalog.to_toml(), Format::Toml,
//!     LoadOptions::default()).unwrap().catalog.to_toml());
//! ```
//!
//! # Layout
//! - `names`: the name rules (tiers here; secrets and services as [`ctl`] has them).
//! - `period`: [`Period`], rotation periods (`90d`).
//! - `template`: [`Template`], parsing with byte positions and rendering into zeroizing
//!   buffers ([`RenderContext`]).
//! - `reference`: [`Reference`], where a delegated secret lives (`github:`, `gcp:`,
//!   `env:`, others).
//! - `model`: [`Class`], [`Strategy`], [`PromptSpec`], [`TierPolicy`], [`SecretMeta`],
//!   [`Tier`], [`Service`], and the class rule ([`check_rule`]).
//! - `catalog`: [`Catalog`], always valid, with the mutators ctl commands map onto.
//! - `format`: catalog files, TOML and JSON: [`load`] and [`Catalog::export`].
//! - `seed`: seed 000's JSON metadata and how each of its fields maps.
//! - `diff`: [`diff`] and [`Catalog::apply`], as data ([`Diff`]) and for people.
//! - `plan`: [`plan`] for a service on a tier; [`Store`].
//! - `lint`: [`lint`] over every service.
//! - `bundle`: [`issue`], a [`Bundle`] for one deployment of a service on a tier (values
//!   generated for it, prompt specs, references, names), and its files.
//! - `answer`: [`PromptSpec::check_answer`], how a first-run answer is checked.
//! - `finding`: [`Finding`], a plan's or the lint's problem with a stable id.
//! - `table`: plain text tables.
//! - `error`: [`FieldError`], [`DeclError`], [`Refusal`], [`LoadError`], [`DiffError`]
//!   ([`TemplateError`] is the template module's).
//!
//! Errors name secrets, services and tiers, never a value; text that breaks a name rule is
//! not echoed. Values exist only in [`SecretValue`] and rendered templates, both zeroizing.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod answer;
mod bundle;
mod catalog;
mod diff;
mod error;
mod finding;
mod format;
mod lint;
mod model;
mod names;
mod period;
mod plan;
mod reference;
pub mod seed;
mod table;
mod template;

pub use crate::answer::AnswerError;
pub use crate::bundle::{
    BUNDLE_FORMAT, Bundle, BundleError, DelegateEntry, GeneratedValue, IssueRequest, ManifestEntry,
    PromptEntry, PromptsFile, Shipped, is_env_name, is_valid_deployment, issue, sized_json,
};
pub use crate::catalog::{
    Catalog, MAX_SECRETS, MAX_SERVICES, MAX_TIERS, MetaUpdate, check_secret_declaration,
    check_service_declaration,
};
pub use crate::diff::{ApplyReport, Change, Delta, Diff, Op, Subject, Summary, diff};
pub use crate::error::{
    DeclError, DiffError, FieldError, LoadError, Located, MAX_BRIEF_LEN, MAX_LISTED, Refusal,
};
pub use crate::finding::{Finding, FindingKind};
pub use crate::format::{Format, LoadOptions, Loaded, MAX_CATALOG_LEN, SecretValue, load};
pub use crate::lint::{Coverage, Lint, MAX_USERS_NAMED, lint};
pub use crate::model::{
    Class, MAX_DESCRIPTION_LEN, MAX_LABEL_LEN, MAX_OWNER_LEN, MAX_PATTERN_LEN, MAX_PATTERN_SIZE,
    Pattern, PromptKind, PromptSpec, SecretMeta, Service, Strategy, Tier, TierPolicy, check_rule,
};
pub use crate::names::{MAX_TIER_LEN, is_valid_secret, is_valid_service, is_valid_tier};
pub use crate::period::Period;
pub use crate::plan::{Action, Counts, Plan, PlanEntry, Store, StoreFacts, plan};
pub use crate::reference::{MAX_REFERENCE_LEN, Reference};
pub use crate::template::{
    DEFAULT_ALPHABET, MAX_PASSWORD_LEN, MAX_PLACEHOLDERS, MAX_RANDOM_BYTES, MAX_TEMPLATE_LEN,
    MIN_RANDOM_BYTES, MIN_SECRET_BITS, RenderContext, Template, TemplateError,
};
