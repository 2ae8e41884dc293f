//! Seed 000's JSON metadata, accepted as it is: one object, or a list of them.
//!
//! ```json
//! { "secret_id": "postgres_connection",
//!   "deployment_strategy": {
//!     "local_dev": { "type": "infrastructure", "source": "secrets_vault",
//!                    "value": "postgresql://localhost:5432/app" },
//!     "desktop":   { "type": "service", "action": "generate_sqlite_path",
//!                    "template": "file://{{USER_DATA}}/app.db" },
//!     "cloud":     { "type": "service", "action": "environment_variable",
//!                    "template": "{{POSTGRES_URL}}" } } }
//! ```
//!
//! How each field maps onto the catalog:
//!
//! | seed field | catalog |
//! |---|---|
//! | `secret_id` | the secret's name |
//! | `deployment_strategy.T` | the secret's declaration on tier T; T is declared, core when any entry on T has `source: "secrets_vault"`, else not core |
//! | `T.type` | the class on T. The secret's own class is the one its `secrets_vault` tiers agree on, else the one all its typed tiers agree on, else none; a tier whose type differs from it keeps its type as the tier's class |
//! | `T.source: "secrets_vault"` | `serve` (T is core); a `template` beside it is how the stored value is made |
//! | `T.value` | the secret's stored value, returned apart when values are allowed (`--with-values`), refused otherwise; one per secret |
//! | `T.action: "generate"` or `"generate_..."` with `template` | `generate TEMPLATE` |
//! | `T.action: "environment_variable"` with `template: "{{X}}"` | `delegate env:X`, not present (`{{ENV:X}}` also means X) |
//! | `T.action: "strip"` | `strip` |
//! | `T.action: "prompt"` with `label`, `help`, `kind`, `pattern`, `min`, `max`, `optional` | `prompt`, as in TOML |
//! | `T.action: "delegate"` with `ref`, `present` | `delegate REF`, as in TOML |
//! | `class`, `owner`, `description`, `rotate_every` beside `secret_id` | the secret's metadata as in TOML; `class` there wins over the derived one |
//!
//! Any other field is refused, as is an entry with both or neither of `source` and
//! `action`, and a `secret_id` given twice.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::error::{DeclError, LoadError};
use crate::format::{
    Checked, LoadOptions, Path, SecretValue, check_parts, json_error, path, unique,
};
use crate::model::{
    Class, Pattern, PromptKind, PromptSpec, SecretMeta, Strategy, Tier, TierPolicy,
};
use crate::period::Period;
use crate::reference::Reference;
use crate::template::Template;

/// The `source` that means `serve`.
pub const SECRETS_VAULT: &str = "secrets_vault";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedSecret {
    secret_id: String,
    #[serde(default, deserialize_with = "unique")]
    deployment_strategy: BTreeMap<String, SeedTier>,
    #[serde(default)]
    class: Option<Class>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    rotate_every: Option<Period>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SeedTier {
    #[serde(default, rename = "type")]
    class: Option<Class>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    value: Option<SecretValue>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    template: Option<Template>,
    #[serde(default)]
    label: Option<String>,
    #[serde(default)]
    help: Option<String>,
    #[serde(default)]
    kind: Option<PromptKind>,
    #[serde(default)]
    pattern: Option<Pattern>,
    #[serde(default)]
    min: Option<i64>,
    #[serde(default)]
    max: Option<i64>,
    #[serde(default)]
    optional: Option<bool>,
    #[serde(default, rename = "ref")]
    reference: Option<Reference>,
    #[serde(default)]
    present: Option<bool>,
}

/// Whether a JSON document is in seed 000's form: a list, or an object with `secret_id`.
pub(crate) fn is_seed_form(src: &str) -> bool {
    #[derive(Deserialize)]
    struct Probe {
        secret_id: Option<IgnoredAny>,
    }
    match src.trim_start().as_bytes().first() {
        Some(b'[') => true,
        Some(b'{') => serde_json::from_str::<Probe>(src).is_ok_and(|p| p.secret_id.is_some()),
        _ => false,
    }
}

pub(crate) fn load(src: &str, options: LoadOptions) -> Result<Checked, LoadError> {
    // One object or a list, told by the first byte (an untagged enum would hide the fault
    // behind "did not match any variant").
    let entries: Vec<SeedSecret> = if src.trim_start().starts_with('[') {
        serde_json::from_str(src).map_err(|e| json_error(&e))?
    } else {
        vec![serde_json::from_str(src).map_err(|e| json_error(&e))?]
    };
    let mut errors: Vec<(Path, DeclError)> = Vec::new();
    let mut tiers: BTreeMap<String, Tier> = BTreeMap::new();
    let mut secrets = BTreeMap::new();
    let mut values = BTreeMap::new();
    for entry in entries {
        let name = entry.secret_id;
        if secrets.contains_key(&name) {
            errors.push((
                path(&["secrets", &name]),
                DeclError::Seed {
                    secret: name.clone(),
                    tier: None,
                    reason: "`secret_id` appears twice; give each secret one entry",
                },
            ));
            continue;
        }
        let served: Vec<Class> = entry
            .deployment_strategy
            .values()
            .filter(|t| t.source.as_deref() == Some(SECRETS_VAULT))
            .filter_map(|t| t.class)
            .collect();
        let typed: Vec<Class> = entry
            .deployment_strategy
            .values()
            .filter_map(|t| t.class)
            .collect();
        let class = entry
            .class
            .or_else(|| agreed(&served))
            .or_else(|| agreed(&typed));
        let mut meta = SecretMeta {
            class,
            owner: entry.owner,
            rotate_every: entry.rotate_every.unwrap_or_default(),
            description: entry.description,
            tiers: BTreeMap::new(),
        };
        for (tier, mut seed_tier) in entry.deployment_strategy {
            if let Some(v) = seed_tier.value.take() {
                if values.contains_key(&name) {
                    errors.push((
                        path(&["secrets", &name]),
                        DeclError::TwoValues {
                            secret: name.clone(),
                        },
                    ));
                } else {
                    values.insert(name.clone(), v);
                }
            }
            let serves = seed_tier.source.as_deref() == Some(SECRETS_VAULT);
            let core = tiers.entry(tier.clone()).or_default();
            core.core |= serves;
            let tier_class = seed_tier.class.filter(|c| Some(*c) != class);
            match strategy(seed_tier) {
                Ok(strategy) => {
                    meta.tiers.insert(
                        tier,
                        TierPolicy {
                            class: tier_class,
                            strategy,
                        },
                    );
                }
                Err(reason) => errors.push((
                    path(&["secrets", &name, "tiers", &tier]),
                    DeclError::Seed {
                        secret: name.clone(),
                        tier: Some(tier.clone()),
                        reason,
                    },
                )),
            }
        }
        secrets.insert(name, meta);
    }
    Ok(check_parts(
        tiers,
        BTreeMap::new(),
        secrets,
        values,
        errors,
        options,
    ))
}

/// The class all of `classes` are, if there are any and they agree.
fn agreed(classes: &[Class]) -> Option<Class> {
    let first = *classes.first()?;
    classes.iter().all(|c| *c == first).then_some(first)
}

fn strategy(t: SeedTier) -> Result<Strategy, &'static str> {
    let prompt_fields = t.label.is_some()
        || t.help.is_some()
        || t.kind.is_some()
        || t.pattern.is_some()
        || t.min.is_some()
        || t.max.is_some()
        || t.optional.is_some();
    let delegate_fields = t.reference.is_some() || t.present.is_some();
    let action = match (t.source.as_deref(), t.action.as_deref()) {
        (Some(_), Some(_)) => {
            return Err("give `source` (served) or `action` (what the tier does), not both");
        }
        (None, None) => {
            return Err(
                "say what happens here: `source: \"secrets_vault\"` or an `action` \
                        (generate_..., environment_variable, strip, prompt, delegate)",
            );
        }
        (Some(SECRETS_VAULT), None) => "serve",
        (Some(_), None) => {
            return Err(
                "unknown `source`; the one known is \"secrets_vault\" (served by the \
                        core server)",
            );
        }
        (None, Some(a)) if a == "generate" || a.starts_with("generate_") => "generate",
        (None, Some("environment_variable")) => "environment_variable",
        (None, Some("strip")) => "strip",
        (None, Some("prompt")) => "prompt",
        (None, Some("delegate")) => "delegate",
        (None, Some(_)) => {
            return Err(
                "unknown `action`; known: generate_..., environment_variable, strip, \
                        prompt, delegate",
            );
        }
    };
    if prompt_fields && action != "prompt" {
        return Err(
            "`label`, `help`, `kind`, `pattern`, `min`, `max` and `optional` go with \
                    action prompt",
        );
    }
    if delegate_fields && action != "delegate" {
        return Err("`ref` and `present` go with action delegate");
    }
    match action {
        "serve" => Ok(Strategy::Serve {
            template: t.template,
        }),
        "generate" => Ok(Strategy::Generate {
            template: t.template.ok_or("a generate action needs a `template`")?,
        }),
        "environment_variable" => {
            const ONE_VARIABLE: &str = "environment_variable needs a `template` that is one \
                                        variable, like \"{{POSTGRES_URL}}\"";
            let template = t.template.ok_or(ONE_VARIABLE)?;
            let names = template.target_placeholders();
            let [name] = names.as_slice() else {
                return Err(ONE_VARIABLE);
            };
            if template.source() != format!("{{{{{name}}}}}") {
                return Err(ONE_VARIABLE);
            }
            let variable = name.strip_prefix("ENV:").unwrap_or(name);
            let reference =
                Reference::parse(&format!("env:{variable}")).map_err(|_| ONE_VARIABLE)?;
            Ok(Strategy::Delegate {
                reference,
                present: false,
            })
        }
        "strip" if t.template.is_none() => Ok(Strategy::Strip),
        "strip" => Err("strip takes no `template`"),
        "prompt" if t.template.is_some() => Err("prompt takes no `template`"),
        "prompt" => Ok(Strategy::Prompt(PromptSpec {
            label: t.label.ok_or("a prompt action needs a `label`")?,
            help: t.help,
            kind: t.kind.unwrap_or_default(),
            pattern: t.pattern,
            min: t.min,
            max: t.max,
            optional: t.optional.unwrap_or(false),
        })),
        _ if t.template.is_some() => Err("delegate takes no `template`"),
        _ => Ok(Strategy::Delegate {
            reference: t.reference.ok_or("a delegate action needs a `ref`")?,
            present: t.present.unwrap_or(false),
        }),
    }
}
