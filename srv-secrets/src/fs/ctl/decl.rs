//! The deployment catalog's ctl commands: their text made into the catalog's types (checked
//! as the catalog checks them), the vault change each asks for, the answers to the queries
//! (a plan, the lint, an export, a dry run, the bundles issued, a value identified), and
//! what each refusal says in the 127 bytes a ctl error has.
//!
//! `bundle create` is a change answered with a body: the bundle in its `json` form, values
//! and all, on the fid that asked (the attach's recent results keep its one-line summary).
//! `bundle identify`'s value comes as a `{N}` literal and goes nowhere but into its
//! fingerprint.
//!
//! Errors are the catalog's fixed briefs, with the field and the byte of a template or
//! pattern where one is at fault; the longer texts that name secrets and tiers (and, for a
//! catalog file, every refused declaration with its line) are for `deploy`, which checks
//! what it sends with the same crate before sending it.

use std::collections::BTreeMap;

use catalog::{
    ApplyReport, BundleError, Catalog, Class, DeclError, FieldError, Format, LoadError,
    LoadOptions, MetaUpdate, Pattern, Period, PromptKind, PromptSpec, Reference, SecretValue,
    Strategy, Template, TemplateError, TierPolicy,
};
use ctl::{Answer, CatalogCommand, CatalogFormat, MetaFields, PromptArgs, StrategyArg};
use secrets::{Applied, Change, Error as VaultError, Vault};
use zeroize::Zeroizing;

use crate::reports::pretty_json;

/// A catalog command in the catalog's types, owning what its vault change borrows.
pub(super) enum Prepared<'c> {
    /// A change made of the command's own fields.
    Direct(Change<'c>),
    /// `meta`.
    Meta { name: &'c str, update: MetaUpdate },
    /// `strategy` (but `remove`).
    Strategy {
        name: &'c str,
        tier: &'c str,
        policy: TierPolicy,
    },
    /// `generate`.
    Generate {
        name: &'c str,
        template: Option<Template>,
    },
    /// `stage NAME generate [TEMPLATE]`.
    StageGenerate {
        name: &'c str,
        template: Option<Template>,
    },
    /// `catalog apply`, not a dry run.
    Apply {
        catalog: Catalog,
        values: BTreeMap<String, SecretValue>,
        prune: bool,
    },
}

impl Prepared<'_> {
    /// The vault change.
    pub(super) fn change(&self) -> Change<'_> {
        match self {
            Prepared::Direct(c) => *c,
            Prepared::Meta { name, update } => Change::Meta { name, update },
            Prepared::Strategy { name, tier, policy } => Change::Strategy { name, tier, policy },
            Prepared::Generate { name, template } => Change::Generate {
                name,
                template: template.as_ref(),
            },
            Prepared::StageGenerate { name, template } => Change::StageGenerate {
                name,
                template: template.as_ref(),
            },
            Prepared::Apply {
                catalog,
                values,
                prune,
            } => Change::CatalogApply {
                catalog,
                prune: *prune,
                values,
            },
        }
    }
}

/// The change a catalog command asks for, its text made into the catalog's types.
///
/// # Errors
/// What is wrong with a field, in the ctl error's words (no input echoed).
pub(super) fn prepare(command: &CatalogCommand) -> Result<Prepared<'_>, String> {
    Ok(match command {
        CatalogCommand::TierAdd { tier, core } => {
            Prepared::Direct(Change::TierDeclare { tier, core: *core })
        }
        CatalogCommand::TierRemove { tier } => Prepared::Direct(Change::TierRemove { tier }),
        CatalogCommand::Meta { name, fields } => Prepared::Meta {
            name,
            update: meta_update(fields)?,
        },
        CatalogCommand::MetaRemove { name } => Prepared::Direct(Change::MetaRemove { name }),
        CatalogCommand::Strategy {
            name,
            tier,
            strategy: StrategyArg::Remove,
            ..
        } => Prepared::Direct(Change::StrategyRemove { name, tier }),
        CatalogCommand::Strategy {
            name,
            tier,
            class,
            strategy,
        } => Prepared::Strategy {
            name,
            tier,
            policy: TierPolicy {
                class: class.as_deref().map(class_of).transpose()?,
                strategy: strategy_of(strategy)?,
            },
        },
        CatalogCommand::Present {
            name,
            tier,
            present,
        } => Prepared::Direct(Change::Present {
            name,
            tier,
            present: *present,
        }),
        CatalogCommand::ServiceTiers { service, tiers } => Prepared::Direct(Change::ServiceTiers {
            service,
            tiers: tiers.as_deref(),
        }),
        CatalogCommand::Generate { name, template } => Prepared::Generate {
            name,
            template: template.as_deref().map(template_of).transpose()?,
        },
        CatalogCommand::Apply {
            format,
            file,
            prune,
            with_values,
            ..
        } => {
            let loaded = load(file.expose(), *format, *with_values)?;
            Prepared::Apply {
                catalog: loaded.catalog,
                values: loaded.values,
                prune: *prune,
            }
        }
        CatalogCommand::BundleCreate {
            service,
            tier,
            deployment,
            replace,
        } => Prepared::Direct(Change::Bundle {
            service,
            tier,
            deployment,
            replace: *replace,
        }),
        CatalogCommand::Plan { .. }
        | CatalogCommand::Lint { .. }
        | CatalogCommand::Export { .. }
        | CatalogCommand::BundleList { .. }
        | CatalogCommand::BundleIdentify { .. } => {
            return Err("this command changes nothing: it is answered, not applied".into());
        }
    })
}

/// Answers a query: `plan`, `lint`, `catalog export`, `catalog apply dry-run`. Bodies are
/// JSON (the export, TOML or JSON as asked), never a value.
///
/// # Errors
/// The refusal, in the ctl error's words.
pub(super) fn query(vault: &Vault, command: &CatalogCommand) -> Result<Answer, String> {
    match command {
        CatalogCommand::Plan { service, tier } => {
            let plan = vault.plan(service, tier).map_err(|e| super::explain(&e))?;
            let body = pretty_json(&plan);
            Ok(Answer::new(ctl_verb(command))
                .word(service)
                .word(tier)
                .field("ok", yes(plan.ok))
                .field("problems", plan.problems.len())
                .body(body))
        }
        CatalogCommand::Lint { tier } => {
            let lint = vault.lint(tier.as_deref());
            let body = pretty_json(&lint);
            let mut answer = Answer::new(ctl_verb(command));
            if let Some(t) = tier {
                answer = answer.word(t);
            }
            Ok(answer
                .field("ok", yes(lint.ok))
                .field("findings", lint.findings.len())
                .body(body))
        }
        CatalogCommand::Export { format } => {
            let text = vault.catalog().export(match format {
                CatalogFormat::Toml => Format::Toml,
                CatalogFormat::Json => Format::Json,
            });
            Ok(Answer::new(ctl_verb(command))
                .word("export")
                .field("format", format.as_str())
                .body(Zeroizing::new(text.into_bytes())))
        }
        CatalogCommand::Apply {
            format,
            file,
            prune,
            with_values,
            ..
        } => {
            let loaded = load(file.expose(), *format, *with_values)?;
            let diff = vault
                .catalog_diff(&loaded.catalog, *prune)
                .map_err(|e| super::explain(&e))?;
            Ok(report(&ApplyReport::new(&diff, true, loaded.values.len())))
        }
        CatalogCommand::BundleList { deployment, secret } => {
            let rows = vault.issued(deployment.as_deref(), secret.as_deref());
            Ok(Answer::new(ctl_verb(command))
                .word("list")
                .field("values", rows.len())
                .body(pretty_json(&rows)))
        }
        CatalogCommand::BundleIdentify { value } => {
            let found = vault
                .identify(value.expose())
                .map_err(|e| super::explain(&e))?;
            // Who was asked about is the answer; the value is logged by its length only.
            tracing::info!(
                bytes = value.len(),
                found = found.len(),
                "a value was identified"
            );
            Ok(Answer::new(ctl_verb(command))
                .word("identify")
                .field("found", found.len())
                .body(pretty_json(&found)))
        }
        _ => Err("this command is applied, not answered".into()),
    }
}

/// The result of a catalog change the vault applied (and the log line, without values).
pub(super) fn answer(command: &CatalogCommand, applied: Applied) -> Answer {
    let answer = Answer::new(ctl_verb(command));
    match (command, applied) {
        (CatalogCommand::TierAdd { tier, core }, Applied::TierDeclared { created, changed }) => {
            tracing::info!(%tier, core, created, changed, "tier declared");
            answer
                .word("add")
                .word(tier)
                .field("core", yes(*core))
                .field("created", yes(created))
                .field("changed", yes(changed))
        }
        (CatalogCommand::TierRemove { tier }, Applied::TierRemoved) => {
            tracing::info!(%tier, "tier removed");
            answer.word("remove").word(tier)
        }
        (CatalogCommand::Meta { name, .. }, Applied::MetaSet { created, changed }) => {
            tracing::info!(secret = %name, created, changed, "metadata set");
            answer
                .word(name)
                .field("created", yes(created))
                .field("changed", yes(changed))
        }
        (CatalogCommand::MetaRemove { name }, Applied::MetaRemoved) => {
            tracing::info!(secret = %name, "metadata removed");
            answer.word(name).word("remove")
        }
        (
            CatalogCommand::Strategy {
                name,
                tier,
                strategy,
                ..
            },
            Applied::StrategySet {
                created,
                replaced,
                changed,
            },
        ) => {
            let kind = strategy_word(strategy);
            tracing::info!(secret = %name, %tier, strategy = kind, changed, "strategy declared");
            answer
                .word(name)
                .word(tier)
                .field("strategy", kind)
                .field("created", yes(created))
                .field("replaced", yes(replaced))
                .field("changed", yes(changed))
        }
        (CatalogCommand::Strategy { name, tier, .. }, Applied::StrategyRemoved) => {
            tracing::info!(secret = %name, %tier, "strategy removed");
            answer.word(name).word(tier).word("remove")
        }
        (
            CatalogCommand::Present {
                name,
                tier,
                present,
            },
            Applied::PresentSet { changed },
        ) => {
            tracing::info!(secret = %name, %tier, present, changed, "presence marked");
            answer
                .word(name)
                .word(tier)
                .field("present", yes(*present))
                .field("changed", yes(changed))
        }
        (CatalogCommand::ServiceTiers { service, tiers }, Applied::ServiceTiersSet { changed }) => {
            tracing::info!(%service, ?tiers, changed, "service tiers declared");
            answer
                .word(service)
                .word("tiers")
                .field("changed", yes(changed))
        }
        (CatalogCommand::Generate { name, .. }, Applied::Set { version }) => {
            // Shown nowhere: not here, not in the log.
            tracing::info!(secret = %name, version, "generated");
            answer.word(name).field("version", version)
        }
        (CatalogCommand::Apply { .. }, Applied::CatalogApplied { diff, values }) => {
            let summary = diff.summary();
            tracing::info!(
                added = summary.added,
                changed = summary.changed,
                removed = summary.removed,
                values,
                "catalog applied"
            );
            report(&ApplyReport::new(&diff, false, values))
        }
        (
            CatalogCommand::BundleCreate {
                service,
                tier,
                deployment,
                ..
            },
            Applied::BundleIssued { bundle, replaced },
        ) => {
            // The values go to the fid that asked; the log has names and counts.
            tracing::info!(%service, %tier, %deployment, bundle = bundle.bundle,
                replaced = ?replaced, values = bundle.values.len(),
                prompts = bundle.prompts.len(), delegated = bundle.delegated.len(),
                "bundle issued");
            let replaced = replaced.map_or_else(|| "none".to_string(), |n| n.to_string());
            answer
                .word("create")
                .word(service)
                .word(tier)
                .word(deployment)
                .field("bundle", bundle.bundle)
                .field("replaced", replaced)
                .field("values", bundle.values.len())
                .field("prompts", bundle.prompts.len())
                .field("delegated", bundle.delegated.len())
                .body(bundle.to_json())
        }
        (command, applied) => {
            tracing::error!(
                verb = command.verb(),
                ?applied,
                "unexpected outcome of a catalog command"
            );
            answer
        }
    }
}

/// What a vault error of the catalog says, in the ctl error's words; `None` for the
/// vault's other errors.
pub(super) fn explain(e: &VaultError) -> Option<String> {
    Some(match e {
        VaultError::Declaration(d) => decl_brief(d),
        VaultError::CatalogRefused(r) => match r.errors.as_slice() {
            [one] => located_brief(one.line, &one.error),
            _ => r.brief().to_string(),
        },
        VaultError::Template(t) => template_brief(t),
        VaultError::NoSuchTier => "no such tier; declare it with: deploy tier add TIER".into(),
        VaultError::NoTemplate => {
            "no template given, and no core tier gives this secret one: give one".into()
        }
        VaultError::Bundle(b) => bundle_brief(b),
        VaultError::DeploymentUsed { bundle, .. } => format!(
            "this deployment has bundle {bundle} of the service on the tier; a new one needs \
             replace"
        ),
        VaultError::BundleHoldsStoredValue { .. } => {
            "a template makes a stored value; bundles never carry one: fix the template".into()
        }
        _ => return None,
    })
}

/// The longest `ctl: line K: bundle: ` a bundle's refusal is given.
const BUNDLE_PREFIX: usize = "ctl: line 99999: bundle: ".len();

/// Why no bundle was issued, within a ctl error: the first problem's id when it fits.
fn bundle_brief(e: &BundleError) -> String {
    match e {
        BundleError::Incomplete { problems, .. } => {
            let named = problems.first().map(|first| {
                format!(
                    "the plan has {} problem(s), first {}; see: deploy secret plan",
                    problems.len(),
                    first.id
                )
            });
            match named {
                Some(text) if BUNDLE_PREFIX + text.len() <= ctl::MAX_ERROR_LEN => text,
                _ => e.brief().to_string(),
            }
        }
        BundleError::Template { error, .. } => template_brief(error),
        other => other.brief().to_string(),
    }
}

fn ctl_verb(command: &CatalogCommand) -> &'static str {
    command.verb()
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn strategy_word(s: &StrategyArg) -> &'static str {
    match s {
        StrategyArg::Serve { .. } => "serve",
        StrategyArg::Strip => "strip",
        StrategyArg::Generate { .. } => "generate",
        StrategyArg::Prompt(_) => "prompt",
        StrategyArg::Delegate { .. } => "delegate",
        StrategyArg::Remove => "remove",
    }
}

/// A catalog apply's answer: its counts, and the report as the body.
fn report(r: &ApplyReport) -> Answer {
    Answer::new("catalog")
        .word("apply")
        .field("dry_run", yes(r.dry_run))
        .field("added", r.summary.added)
        .field("changed", r.summary.changed)
        .field("removed", r.summary.removed)
        .field("values", r.values)
        .body(pretty_json(r))
}

/// A catalog file, TOML or JSON: as the command says, else told by its first bytes (a JSON
/// document starts with `{`, or with `[` and then `{`, `]` or `"`; a TOML file's `[` starts
/// a table's name).
fn load(
    file: &[u8],
    format: Option<CatalogFormat>,
    with_values: bool,
) -> Result<catalog::Loaded, String> {
    let text =
        std::str::from_utf8(file).map_err(|_| "the catalog file is not UTF-8 text".to_string())?;
    let format = match format {
        Some(CatalogFormat::Toml) => Format::Toml,
        Some(CatalogFormat::Json) => Format::Json,
        None => format_of(text),
    };
    catalog::load(
        text,
        format,
        LoadOptions {
            allow_values: with_values,
        },
    )
    .map_err(|e| load_brief(&e))
}

fn format_of(text: &str) -> Format {
    let mut rest = text.trim_start();
    if rest.starts_with('{') {
        return Format::Json;
    }
    if let Some(after) = rest.strip_prefix('[') {
        rest = after.trim_start();
        if rest.starts_with(['{', ']', '"']) {
            return Format::Json;
        }
    }
    Format::Toml
}

fn load_brief(e: &LoadError) -> String {
    match e {
        LoadError::Syntax {
            format,
            line: Some(l),
            column: Some(c),
            ..
        } => format!("the file is not valid {format} at line {l}, column {c}"),
        LoadError::Syntax { format, .. } => format!("the file is not a valid {format} catalog"),
        LoadError::Refused(r) => match r.errors.as_slice() {
            [one] => located_brief(one.line, &one.error),
            _ => format!(
                "{} declarations refused; deploy catalog apply lists them",
                r.errors.len()
            ),
        },
        other => other.brief().to_string(),
    }
}

/// The most an explanation may hold: a ctl error is `ctl: line K: VERB: ` and it, in at
/// most [`ctl::MAX_ERROR_LEN`] bytes for any line up to 99999 (`strategy` is the longest
/// verb whose refusals are explained here).
const MAX_EXPLANATION_LEN: usize = ctl::MAX_ERROR_LEN - "ctl: line 99999: strategy: ".len();

/// The first of `texts` that fits [`MAX_EXPLANATION_LEN`]; the last is a fixed brief that
/// always does.
fn first_fitting<const N: usize>(texts: [String; N]) -> String {
    let mut texts = texts.into_iter();
    let mut last = String::new();
    for text in texts.by_ref() {
        if text.len() <= MAX_EXPLANATION_LEN {
            return text;
        }
        last = text;
    }
    last
}

/// A refused declaration of a file at its line: its line and detail while they fit, else
/// its line and its fixed brief, else the detail, else the brief (a file can be 16 MiB,
/// and its lines many digits).
fn located_brief(line: Option<usize>, d: &DeclError) -> String {
    let Some(line) = line else {
        return decl_brief(d);
    };
    first_fitting([
        format!("line {line}: {}", decl_brief(d)),
        format!("line {line}: {}", d.brief()),
        decl_brief(d),
        d.brief().to_string(),
    ])
}

/// A declaration's refusal in at most [`MAX_EXPLANATION_LEN`] bytes: the field and the
/// byte at fault where there is one.
fn decl_brief(d: &DeclError) -> String {
    match d {
        DeclError::Field { field, source, .. } => {
            first_fitting([field_brief(field, source), d.brief().to_string()])
        }
        other => other.brief().to_string(),
    }
}

fn field_brief(field: &str, e: &FieldError) -> String {
    let text = match e.at() {
        Some(at) => format!("{field}: at byte {at}: {}", e.brief()),
        None => format!("{field}: {}", e.brief()),
    };
    first_fitting([text, e.brief().to_string()])
}

fn template_brief(e: &TemplateError) -> String {
    match e.at() {
        Some(at) => format!("template: at byte {at}: {}", e.brief()),
        None => format!("template: {}", e.brief()),
    }
}

fn class_of(text: &str) -> Result<Class, String> {
    Class::parse(text).ok_or_else(|| "class: infrastructure, service or user".to_string())
}

pub(super) fn template_of(text: &str) -> Result<Template, String> {
    Template::parse(text).map_err(|e| template_brief(&e))
}

fn meta_update(fields: &MetaFields) -> Result<MetaUpdate, String> {
    // '' clears a field; anything else sets it.
    fn text(v: &Option<String>) -> Option<Option<String>> {
        v.as_ref().map(|t| (!t.is_empty()).then(|| t.clone()))
    }
    let class = match fields.class.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(c) => Some(Some(class_of(c)?)),
    };
    let rotate_every = match fields.rotate_every.as_deref() {
        None => None,
        Some("") => Some(None),
        Some(p) => Some(Some(
            Period::parse(p).map_err(|e| field_brief("rotate-every", &e))?,
        )),
    };
    Ok(MetaUpdate {
        class,
        owner: text(&fields.owner),
        rotate_every,
        description: text(&fields.description),
    })
}

fn strategy_of(s: &StrategyArg) -> Result<Strategy, String> {
    Ok(match s {
        StrategyArg::Serve { template } => Strategy::Serve {
            template: template.as_deref().map(template_of).transpose()?,
        },
        StrategyArg::Strip => Strategy::Strip,
        StrategyArg::Generate { template } => Strategy::Generate {
            template: template_of(template)?,
        },
        StrategyArg::Prompt(p) => Strategy::Prompt(prompt_of(p)?),
        StrategyArg::Delegate { reference } => Strategy::Delegate {
            reference: Reference::parse(reference).map_err(|e| field_brief("ref", &e))?,
            present: false,
        },
        // Made into a change of its own by `prepare`.
        StrategyArg::Remove => return Err("remove is not a strategy".into()),
    })
}

fn prompt_of(p: &PromptArgs) -> Result<PromptSpec, String> {
    let kind = match p.kind.as_deref() {
        None => PromptKind::Text,
        Some(k) => PromptKind::parse(k)
            .ok_or_else(|| "kind: text, password, url, email or number".to_string())?,
    };
    let pattern = p
        .pattern
        .as_deref()
        .map(|t| Pattern::new(t).map_err(|e| field_brief("pattern", &e)))
        .transpose()?;
    Ok(PromptSpec {
        label: p.label.clone(),
        help: p.help.clone(),
        kind,
        pattern,
        min: p.min,
        max: p.max,
        optional: p.optional,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    /// The longest prefix an explanation gets: `ctl: line 99999: strategy: `.
    const PREFIX: usize = "ctl: line 99999: strategy: ".len();

    fn fits(text: &str) {
        assert!(
            PREFIX + text.len() <= ctl::MAX_ERROR_LEN,
            "{} bytes: {text}",
            PREFIX + text.len()
        );
    }

    #[test]
    fn every_refusal_fits_a_ctl_error() {
        let texts = [
            class_of("x").unwrap_err(),
            template_of(&format!("{}{{{{rand}}}}", "x".repeat(4000))).unwrap_err(),
            template_of(&"x".repeat(5000)).unwrap_err(),
            template_of("{{password:4}}").unwrap_err(),
            meta_update(&MetaFields {
                rotate_every: Some("soon".into()),
                ..MetaFields::default()
            })
            .unwrap_err(),
            strategy_of(&StrategyArg::Delegate {
                reference: "nowhere".into(),
            })
            .unwrap_err(),
            prompt_of(&PromptArgs {
                label: "L".into(),
                kind: Some("colour".into()),
                ..PromptArgs::default()
            })
            .unwrap_err(),
            prompt_of(&PromptArgs {
                label: "L".into(),
                pattern: Some(format!("{}(", "a".repeat(1000))),
                ..PromptArgs::default()
            })
            .unwrap_err(),
            load(b"\xff", None, false).unwrap_err(),
            load(b"[tiers.a\n", None, false).unwrap_err(),
            load(b"{\"secret_id\": 1}", None, false).unwrap_err(),
            load(
                b"[secrets.a]\nvalue = \"hunter2\"\n[secrets.b]\nvalue = \"x\"\n",
                None,
                false,
            )
            .unwrap_err(),
            load(
                b"[secrets.a]\nvalue = \"hunter2\"\n",
                Some(CatalogFormat::Toml),
                false,
            )
            .unwrap_err(),
            explain(&VaultError::NoSuchTier).unwrap(),
            explain(&VaultError::NoTemplate).unwrap(),
            explain(&VaultError::Template(TemplateError::Missing {
                at: 4095,
                what: "deployment",
                needs: "deployment id",
            }))
            .unwrap(),
        ];
        for t in &texts {
            fits(t);
            assert!(!t.contains("hunter2"), "{t}");
        }
        let long = "x".repeat(128);
        let problem = |id: String| catalog::Finding {
            id,
            kind: catalog::FindingKind::NoStrategy,
            secret: None,
            service: None,
            tier: None,
            message: String::new(),
        };
        let bundles = [
            VaultError::DeploymentUsed {
                service: long.clone(),
                tier: long.clone(),
                deployment: long.clone(),
                bundle: u64::MAX,
            },
            VaultError::BundleHoldsStoredValue {
                secret: long.clone(),
                stored: long.clone(),
            },
            VaultError::Bundle(BundleError::Incomplete {
                service: long.clone(),
                tier: long.clone(),
                problems: vec![problem(format!("no-strategy/{long}/{long}"))],
            }),
            VaultError::Bundle(BundleError::Incomplete {
                service: "web".into(),
                tier: "desktop".into(),
                problems: vec![problem("no-strategy/desktop/api_jwt".into())],
            }),
            VaultError::Bundle(BundleError::CoreTier { tier: long.clone() }),
            VaultError::Bundle(BundleError::DeploymentName),
            VaultError::Bundle(BundleError::UnknownTier { tier: long.clone() }),
            VaultError::Bundle(BundleError::Template {
                secret: long.clone(),
                error: TemplateError::Random,
            }),
        ];
        for e in &bundles {
            let text = explain(e).unwrap();
            assert!(BUNDLE_PREFIX + text.len() <= ctl::MAX_ERROR_LEN, "{text}");
        }
        assert_eq!(
            explain(&bundles[3]).unwrap(),
            "the plan has 1 problem(s), first no-strategy/desktop/api_jwt; see: deploy secret plan"
        );
        assert_eq!(
            texts[1],
            "template: at byte 4002: unknown placeholder (known: random, password, uuid, ...)"
        );
        assert_eq!(
            texts[12],
            "line 2: a catalog holds no values (it ends up in git); --with-values stores them"
        );
    }

    #[test]
    fn a_refusal_deep_in_a_long_file_fits_a_ctl_error_with_its_line() {
        // A strategy's field where it does not belong has the longest detail there is;
        // at line 123,458 it came to 137 bytes.
        let mut file = "#\n".repeat(123_456);
        file.push_str("[tiers.a]\n[secrets.x.tiers.a]\nstrategy = \"strip\"\noptional = true\n");
        let text = load(file.as_bytes(), None, false).unwrap_err();
        fits(&text);
        assert_eq!(text, "line 123458: a field of a declaration is not valid");
        // A detail that fits beside its line is given.
        let text = load(
            b"[tiers.a]\n[secrets.x.tiers.a]\nstrategy = \"strip\"\ntemplate = \"x\"\n",
            None,
            false,
        )
        .unwrap_err();
        assert_eq!(
            text,
            "line 2: template: `template` goes with strategy serve or generate"
        );
        // The vault's refusal of a file's declaration reads the same.
        let refusal = catalog::Refusal {
            errors: vec![catalog::Located {
                line: Some(123_458),
                error: DeclError::Field {
                    secret: "x".into(),
                    tier: Some("a".into()),
                    field: "optional",
                    source: Box::new(FieldError::Shape(
                        "`label`, `help`, `kind`, `pattern`, `min`, `max` and `optional` go \
                         with strategy prompt",
                    )),
                },
            }],
        };
        fits(&explain(&VaultError::CatalogRefused(refusal)).unwrap());
    }

    #[test]
    fn files_are_told_apart_by_their_first_bytes() {
        assert_eq!(format_of("[tiers.a]\ncore = true\n"), Format::Toml);
        assert_eq!(format_of("  [ \"x\" ]"), Format::Json);
        assert_eq!(format_of("[\n  {\"secret_id\": \"a\"}\n]"), Format::Json);
        assert_eq!(format_of("{}"), Format::Json);
        assert_eq!(format_of("# a comment\n[tiers]\n"), Format::Toml);
        assert_eq!(format_of(""), Format::Toml);
    }
}
