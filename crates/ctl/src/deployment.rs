//! [`CatalogCommand`]: the commands of the deployment catalog (tiers, secrets' metadata and
//! strategies, services' tiers, generated values, plans, lint, catalog files).
//!
//! The language carries their words; what the words mean (a tier's name rule, a class, a
//! template's placeholders, a reference's schemes) is the catalog's, checked by whoever
//! applies the command. So tiers, classes, templates, labels and the like are text here:
//! UTF-8, any length a line holds, sent bare when they are harmless words and quoted
//! otherwise (a template's `{{...}}` always is).
//!
//! ```text
//! tier add TIER [core]                 tier remove TIER
//! meta NAME { (class | owner | rotate-every | description) TEXT }    '' clears a field
//! meta NAME remove
//! strategy NAME tier TIER [class CLASS] ( serve [TEMPLATE] | strip | generate TEMPLATE
//!          | prompt LABEL { help TEXT | kind KIND | pattern TEXT | min N | max N | optional }
//!          | delegate REF | remove )
//! present NAME tier TIER (yes | no)
//! service SERVICE tiers LIST           LIST: TIER{,TIER}, '' for none, * for every tier
//! generate NAME [TEMPLATE]
//! plan SERVICE TIER                    lint [TIER]
//! catalog export [toml | json]
//! catalog apply [toml | json] [dry-run] [prune] [with-values] FILE
//! bundle create SERVICE TIER DEPLOYMENT [replace]      answered with the bundle (JSON)
//! bundle list [deployment DEPLOYMENT] [secret NAME]    bundle identify VALUE
//! ```
//!
//! DEPLOYMENT follows the name rule, as NAME does. `bundle identify`'s VALUE is a value:
//! [`Command::encode`](crate::Command::encode) sends it as a `{N}` literal, and nothing
//! echoes it.

use crate::Value;

/// The form a catalog is exported in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CatalogFormat {
    /// TOML, the native form.
    #[default]
    Toml,
    /// JSON, the same shape.
    Json,
}

impl CatalogFormat {
    /// `toml` or `json`.
    pub fn as_str(self) -> &'static str {
        match self {
            CatalogFormat::Toml => "toml",
            CatalogFormat::Json => "json",
        }
    }
}

/// The fields `meta` sets: `None` leaves a field as it is, `Some("")` clears it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetaFields {
    /// `class CLASS`: infrastructure, service or user.
    pub class: Option<String>,
    /// `owner TEXT`.
    pub owner: Option<String>,
    /// `rotate-every DURATION`: 30m, 12h, 90d, 2w.
    pub rotate_every: Option<String>,
    /// `description TEXT`.
    pub description: Option<String>,
}

impl MetaFields {
    /// The fields with their option words, in the order they are written.
    pub(crate) fn options(&self) -> [(&'static str, Option<&str>); 4] {
        [
            (CLASS, self.class.as_deref()),
            (OWNER, self.owner.as_deref()),
            (ROTATE_EVERY, self.rotate_every.as_deref()),
            (DESCRIPTION, self.description.as_deref()),
        ]
    }

    /// The slot of the option `word`.
    pub(crate) fn slot(&mut self, word: &[u8]) -> Option<&mut Option<String>> {
        Some(match word {
            b"class" => &mut self.class,
            b"owner" => &mut self.owner,
            b"rotate-every" => &mut self.rotate_every,
            b"description" => &mut self.description,
            _ => return None,
        })
    }
}

/// What a first-run prompt asks (`strategy ... prompt LABEL ...`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PromptArgs {
    /// What the UI shows as the question.
    pub label: String,
    /// `help TEXT`.
    pub help: Option<String>,
    /// `kind KIND`: text, password, url, email or number.
    pub kind: Option<String>,
    /// `pattern TEXT`: a regular expression the whole answer matches.
    pub pattern: Option<String>,
    /// `min N`.
    pub min: Option<i64>,
    /// `max N`.
    pub max: Option<i64>,
    /// `optional`.
    pub optional: bool,
}

/// A strategy as `strategy` declares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StrategyArg {
    /// `serve [TEMPLATE]`: the core server serves the stored value (made from TEMPLATE by
    /// `generate NAME`).
    Serve {
        /// How the stored value is made, if given.
        template: Option<String>,
    },
    /// `strip`: it never leaves.
    Strip,
    /// `generate TEMPLATE`: fresh per deployment.
    Generate {
        /// The template.
        template: String,
    },
    /// `prompt LABEL ...`: asked at first run.
    Prompt(PromptArgs),
    /// `delegate REF`: a provider holds it.
    Delegate {
        /// Where (`github:OWNER/REPO#NAME`, `env:NAME`, ...).
        reference: String,
    },
    /// `remove`: no strategy on the tier any more.
    Remove,
}

/// One command of the deployment catalog. `Debug` is safe to log: nothing here is secret
/// but a catalog file's values, which a [`Value`] shows by length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CatalogCommand {
    /// `tier add TIER [core]`: declare a tier, or change whether it is core.
    TierAdd {
        /// The tier.
        tier: String,
        /// Whether it is the core server itself.
        core: bool,
    },
    /// `tier remove TIER`.
    TierRemove {
        /// The tier.
        tier: String,
    },
    /// `meta NAME [OPTION TEXT]...`: set (or clear, with '') a secret's metadata.
    Meta {
        /// The secret.
        name: String,
        /// The fields given.
        fields: MetaFields,
    },
    /// `meta NAME remove`: remove a secret's metadata.
    MetaRemove {
        /// The secret.
        name: String,
    },
    /// `strategy NAME tier TIER [class CLASS] STRATEGY`.
    Strategy {
        /// The secret.
        name: String,
        /// The tier.
        tier: String,
        /// The class on the tier, if not the secret's.
        class: Option<String>,
        /// What happens there.
        strategy: StrategyArg,
    },
    /// `present NAME tier TIER (yes|no)`.
    Present {
        /// The secret.
        name: String,
        /// The tier it is delegated on.
        tier: String,
        /// Whether the provider holds it.
        present: bool,
    },
    /// `service SERVICE tiers LIST`: the tiers a service is deployed to (`None`: `*`,
    /// every declared tier).
    ServiceTiers {
        /// The service.
        service: String,
        /// Its tiers.
        tiers: Option<Vec<String>>,
    },
    /// `generate NAME [TEMPLATE]`: store a value made from TEMPLATE, or from the
    /// secret's core-tier template.
    Generate {
        /// The secret.
        name: String,
        /// The template, if given.
        template: Option<String>,
    },
    /// `plan SERVICE TIER`: answered with the plan's JSON.
    Plan {
        /// The service.
        service: String,
        /// The tier.
        tier: String,
    },
    /// `lint [TIER]`: answered with the lint's JSON.
    Lint {
        /// Only this tier's findings (and those of no tier).
        tier: Option<String>,
    },
    /// `catalog export [toml|json]`: answered with the catalog, no values.
    Export {
        /// The form.
        format: CatalogFormat,
    },
    /// `bundle create SERVICE TIER DEPLOYMENT [replace]`: issue a bundle, answered with it
    /// (values generated for it, prompts, references, names: the `json` form).
    BundleCreate {
        /// The service.
        service: String,
        /// The tier.
        tier: String,
        /// The deployment's id.
        deployment: String,
        /// Issue a new one to a deployment that has one.
        replace: bool,
    },
    /// `bundle list [deployment DEPLOYMENT] [secret NAME]`: answered with the values
    /// issued, as JSON (never a value).
    BundleList {
        /// Only those issued to this deployment.
        deployment: Option<String>,
        /// Only this secret's.
        secret: Option<String>,
    },
    /// `bundle identify VALUE`: answered with the deployments `VALUE` was issued to.
    BundleIdentify {
        /// The value, as leaked.
        value: Value,
    },
    /// `catalog apply [toml|json] [dry-run] [prune] [with-values] FILE`: answered with
    /// the diff.
    Apply {
        /// The file's form; without it the server tells by its first bytes.
        format: Option<CatalogFormat>,
        /// The catalog file's text (a `{N}` literal of up to
        /// [`MAX_CATALOG_LEN`](crate::MAX_CATALOG_LEN) bytes).
        file: Value,
        /// Say what would change, and change nothing.
        dry_run: bool,
        /// Remove the declarations the file does not make.
        prune: bool,
        /// Store the values the file carries (else a value is refused).
        with_values: bool,
    },
}

impl CatalogCommand {
    /// The command's first word (`service` for `service SERVICE tiers`).
    pub fn verb(&self) -> &'static str {
        match self {
            CatalogCommand::TierAdd { .. } | CatalogCommand::TierRemove { .. } => TIER,
            CatalogCommand::Meta { .. } | CatalogCommand::MetaRemove { .. } => META,
            CatalogCommand::Strategy { .. } => STRATEGY,
            CatalogCommand::Present { .. } => PRESENT,
            CatalogCommand::ServiceTiers { .. } => crate::command::SERVICE,
            CatalogCommand::Generate { .. } => GENERATE,
            CatalogCommand::Plan { .. } => PLAN,
            CatalogCommand::Lint { .. } => LINT,
            CatalogCommand::Export { .. } | CatalogCommand::Apply { .. } => CATALOG,
            CatalogCommand::BundleCreate { .. }
            | CatalogCommand::BundleList { .. }
            | CatalogCommand::BundleIdentify { .. } => BUNDLE,
        }
    }
}

pub(crate) const TIER: &str = "tier";
pub(crate) const META: &str = "meta";
pub(crate) const STRATEGY: &str = "strategy";
pub(crate) const PRESENT: &str = "present";
pub(crate) const GENERATE: &str = "generate";
pub(crate) const PLAN: &str = "plan";
pub(crate) const LINT: &str = "lint";
pub(crate) const CATALOG: &str = "catalog";
pub(crate) const BUNDLE: &str = "bundle";

pub(crate) const CLASS: &str = "class";
pub(crate) const OWNER: &str = "owner";
pub(crate) const ROTATE_EVERY: &str = "rotate-every";
pub(crate) const DESCRIPTION: &str = "description";

/// `meta`'s options, in the order "expected one of" lists them.
pub(crate) const META_OPTIONS: [&str; 5] = [CLASS, OWNER, ROTATE_EVERY, DESCRIPTION, "remove"];
/// The strategies.
pub(crate) const STRATEGIES: [&str; 6] =
    ["serve", "strip", "generate", "prompt", "delegate", "remove"];
/// A prompt's options.
pub(crate) const PROMPT_OPTIONS: [&str; 6] = ["help", "kind", "pattern", "min", "max", "optional"];
/// `catalog apply`'s flags.
pub(crate) const APPLY_FLAGS: [&str; 3] = ["dry-run", "prune", "with-values"];
