//! The deployment catalog: `deploy tier …`, `deploy catalog …`, and the catalog's
//! `deploy secret …` commands (meta, strategy, present, plan, lint, `set --generate`) and
//! `deploy service tiers`.
//!
//! Each checks what it sends with the catalog crate first, so that a bad template, pattern,
//! reference or catalog file is refused here with the whole story (the byte of a template
//! at fault, every refused declaration of a file with its line), then sends one ctl
//! command. What only the server can know (the class rule against what is declared, a
//! tier that is in use) comes back as its 127-byte refusal; for a catalog file, deploy then
//! diffs the file against the server's catalog itself to list every declaration refused.

use std::io::Write;
use std::path::Path;

use catalog::{ApplyReport, Format, LoadOptions, Pattern, Period, Reference, Template};
use ctl::{
    Answer, CatalogCommand, CatalogFormat, Command, MetaFields, PromptArgs, StrategyArg, Value,
};

use super::{Outcome, read_file_bounded, validate};
use crate::cli::{self, FormatArg, MetaArgs, StrategyArgs, TierCommand};
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{Align, Table, printable, write_text};

/// Validates, connects, sends one command and returns its result.
pub(crate) async fn send(server: &Server, env: &Env, command: Command) -> Result<Answer, CliError> {
    validate(&command)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answer = ctl.send(&command).await?;
    ctl.close().await?;
    Ok(answer)
}

/// A usage error about one flag's text, with the catalog's whole explanation.
pub(crate) fn bad(flag: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("{flag}: {e}"))
}

/// Text the server sent, one escaped line at a time (names could hold nothing harmful,
/// but labels and templates are the operator's free text).
pub(crate) fn write_lines(out: &mut dyn Write, text: &str) -> Result<(), CliError> {
    let mut shown = String::with_capacity(text.len() + 16);
    for line in text.lines() {
        shown.push_str(&printable(line));
        shown.push('\n');
    }
    write_text(out, &shown)
}

pub(crate) fn body(answer: &Answer) -> Result<&[u8], CliError> {
    answer
        .body
        .as_deref()
        .map(Vec::as_slice)
        .ok_or_else(|| CliError::Unexpected(format!("`{}` came back without a body", answer.verb)))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(answer: &Answer) -> Result<T, CliError> {
    serde_json::from_slice(body(answer)?)
        .map_err(|e| CliError::Unexpected(format!("the server's `{}` answer: {e}", answer.verb)))
}

// ---- deploy tier ----

/// Runs one `deploy tier` command.
///
/// # Errors
/// Whatever the command met.
pub async fn tier(
    cmd: TierCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        TierCommand::Add { tier, core } => {
            check_tier(&tier)?;
            let a = send(
                server,
                env,
                Command::Catalog(CatalogCommand::TierAdd {
                    tier: tier.clone(),
                    core,
                }),
            )
            .await?;
            let what = if core { "core" } else { "not core" };
            let line = match (a.flag("created"), a.flag("changed")) {
                (Some(true), _) => format!("declared tier {tier} ({what})\n"),
                (_, Some(false)) => {
                    format!("tier {tier} is declared so already ({what}); nothing changed\n")
                }
                _ => format!("tier {tier} is now {what}\n"),
            };
            write_text(out, &line)?;
        }
        TierCommand::Remove { tier } => {
            check_tier(&tier)?;
            send(
                server,
                env,
                Command::Catalog(CatalogCommand::TierRemove { tier: tier.clone() }),
            )
            .await?;
            write_text(out, &format!("removed tier {tier}\n"))?;
        }
        TierCommand::List(flag) => {
            let session = Session::admin(server, env).await?;
            let current = fetch_catalog(&session).await?;
            #[derive(serde::Serialize)]
            struct Row<'a> {
                tier: &'a str,
                core: bool,
                strategies: usize,
            }
            let rows: Vec<Row<'_>> = current
                .tiers()
                .iter()
                .map(|(name, t)| Row {
                    tier: name,
                    core: t.core,
                    strategies: current
                        .secrets()
                        .values()
                        .filter(|m| m.tiers.contains_key(name))
                        .count(),
                })
                .collect();
            if flag.json {
                crate::output::write_json(out, &rows)?;
            } else {
                let mut table = Table::new(&[
                    ("TIER", Align::Left),
                    ("CORE", Align::Left),
                    ("STRATEGIES", Align::Right),
                ]);
                for r in &rows {
                    table.row(vec![
                        r.tier.to_string(),
                        if r.core { "yes" } else { "no" }.to_string(),
                        r.strategies.to_string(),
                    ]);
                }
                write_text(out, &table.render())?;
            }
        }
    }
    Ok(Outcome::Done)
}

pub(crate) fn check_tier(tier: &str) -> Result<(), CliError> {
    if catalog::is_valid_tier(tier) {
        Ok(())
    } else {
        Err(CliError::Usage(
            "a tier name is 1 to 32 of a-z 0-9 _ - (local_dev, desktop, cloud-eu)".into(),
        ))
    }
}

/// The server's catalog, as `catalog export json` gives it.
async fn fetch_catalog(session: &Session) -> Result<catalog::Catalog, CliError> {
    let mut ctl = session.ctl().await?;
    let answer = ctl
        .send(&Command::Catalog(CatalogCommand::Export {
            format: CatalogFormat::Json,
        }))
        .await?;
    ctl.close().await?;
    let text = std::str::from_utf8(body(&answer)?)
        .map_err(|_| CliError::Unexpected("the catalog export is not UTF-8".into()))?;
    catalog::load(text, Format::Json, LoadOptions::default())
        .map(|l| l.catalog)
        .map_err(|e| CliError::Unexpected(format!("the server's catalog export: {e}")))
}

// ---- deploy catalog ----

/// Runs one `deploy catalog` command.
///
/// # Errors
/// Whatever the command met.
pub async fn catalog_command(
    cmd: cli::CatalogCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        cli::CatalogCommand::Apply {
            file,
            dry_run,
            prune,
            with_values,
            json,
        } => apply(server, env, &file, dry_run, prune, with_values, json, out).await,
        cli::CatalogCommand::Export { format } => {
            let format = match format {
                FormatArg::Toml => CatalogFormat::Toml,
                FormatArg::Json => CatalogFormat::Json,
            };
            let a = send(
                server,
                env,
                Command::Catalog(CatalogCommand::Export { format }),
            )
            .await?;
            // A catalog file for a redirect: written as it is (it holds no value, and its
            // strings are escaped by TOML and JSON themselves).
            out.write_all(body(&a)?)
                .and_then(|()| out.flush())
                .map_err(CliError::Stdout)?;
            Ok(Outcome::Done)
        }
    }
}

/// `deploy catalog apply FILE [--dry-run] [--prune] [--with-values] [--json]`.
#[allow(
    clippy::too_many_arguments,
    reason = "the command's flags, each used once"
)]
async fn apply(
    server: &Server,
    env: &Env,
    path: &Path,
    dry_run: bool,
    prune: bool,
    with_values: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let bytes = read_file_bounded(path, ctl::MAX_CATALOG_LEN, "the catalog file")?;
    let text = std::str::from_utf8(&bytes).map_err(|_| CliError::BadCatalog {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })?;
    let format = format_of(path, text);
    // Checked here first: every refused declaration, each at its line.
    let loaded = catalog::load(
        text,
        format,
        LoadOptions {
            allow_values: with_values,
        },
    )
    .map_err(|e| CliError::BadCatalog {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    drop(loaded.values);
    let new = loaded.catalog;
    let session = Session::admin(server, env).await?;
    let command = Command::Catalog(CatalogCommand::Apply {
        format: Some(match format {
            Format::Toml => CatalogFormat::Toml,
            Format::Json => CatalogFormat::Json,
        }),
        file: Value::from(bytes.to_vec()),
        dry_run,
        prune,
        with_values,
    });
    drop(bytes);
    validate(&command)?;
    let mut ctl = session.ctl().await?;
    let sent = ctl.send(&command).await;
    drop(command);
    let answer = match sent {
        Ok(a) => a,
        Err(CliError::Ctl(text)) => {
            // The server says what broke in a line; the whole list is had by diffing here.
            let _ = ctl.close().await;
            if let Ok(current) = fetch_catalog(&session).await
                && let Err(catalog::DiffError::Refused(r)) = catalog::diff(&current, &new, prune)
            {
                return Err(CliError::BadCatalog {
                    path: path.to_path_buf(),
                    reason: format!("{r}\nnothing was changed"),
                });
            }
            return Err(CliError::Ctl(text));
        }
        Err(e) => return Err(e),
    };
    ctl.close().await?;
    if json {
        out.write_all(body(&answer)?)
            .and_then(|()| out.flush())
            .map_err(CliError::Stdout)?;
    } else {
        let report: ApplyReport = from_json(&answer)?;
        write_lines(out, &report.to_string())?;
    }
    Ok(Outcome::Done)
}

/// A catalog file's form: its extension, else its first bytes (as the server tells them).
fn format_of(path: &Path, text: &str) -> Format {
    if let Some(f) = path
        .extension()
        .and_then(|e| e.to_str())
        .and_then(Format::from_extension)
    {
        return f;
    }
    let rest = text.trim_start();
    let json = rest.starts_with('{')
        || rest
            .strip_prefix('[')
            .is_some_and(|r| r.trim_start().starts_with(['{', ']', '"']));
    if json { Format::Json } else { Format::Toml }
}

// ---- deploy secret: meta, strategy, present, plan, lint, set --generate ----

/// `deploy secret meta NAME [--class C] [--owner O] [--rotate-every D] [--description D]`.
///
/// # Errors
/// Whatever the command met.
pub async fn meta(
    server: &Server,
    env: &Env,
    args: MetaArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let MetaArgs {
        name,
        class,
        owner,
        rotate_every,
        description,
        remove,
    } = args;
    if remove {
        send(
            server,
            env,
            Command::Catalog(CatalogCommand::MetaRemove { name: name.clone() }),
        )
        .await?;
        write_text(out, &format!("removed the metadata of {name}\n"))?;
        return Ok(Outcome::Done);
    }
    if let Some(p) = rotate_every.as_deref().filter(|p| !p.is_empty()) {
        Period::parse(p).map_err(|e| bad("--rotate-every", e))?;
    }
    let fields = MetaFields {
        class: class.map(|c| c.word().to_string()),
        owner,
        rotate_every,
        description,
    };
    let a = send(
        server,
        env,
        Command::Catalog(CatalogCommand::Meta {
            name: name.clone(),
            fields,
        }),
    )
    .await?;
    let line = match (a.flag("created"), a.flag("changed")) {
        (Some(true), _) => format!("declared {name} in the catalog\n"),
        (_, Some(false)) => format!("{name}'s metadata is so already; nothing changed\n"),
        _ => format!("changed {name}'s metadata\n"),
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// The strategy `deploy secret strategy`'s flags declare, checked with the catalog's own
/// parsers (a template's fault at its byte).
fn strategy_of(a: &StrategyArgs) -> Result<StrategyArg, CliError> {
    let template = |flag: &str, t: &str| -> Result<String, CliError> {
        Template::parse(t).map_err(|e| bad(flag, e))?;
        Ok(t.to_string())
    };
    let prompt_fields = a.label.is_some()
        || a.kind.is_some()
        || a.pattern.is_some()
        || a.min.is_some()
        || a.max.is_some()
        || a.optional;
    if prompt_fields && !a.prompt {
        return Err(CliError::Usage(
            "--label, --kind, --pattern, --min, --max and --optional go with --prompt".into(),
        ));
    }
    if a.prompt && a.label.is_none() {
        return Err(CliError::Usage(
            "--prompt needs --label TEXT: what the user is asked".into(),
        ));
    }
    if a.template.is_some() && !a.serve {
        return Err(CliError::Usage(
            "--template goes with --serve (for --generate, the template is its value)".into(),
        ));
    }
    let prompt_help = match &a.help {
        Some(Some(text)) if a.prompt => Some(text.clone()),
        Some(Some(_)) => {
            return Err(CliError::Usage(
                "--help TEXT is a prompt's help text and goes with --prompt; for this \
                 command's help, give --help alone"
                    .into(),
            ));
        }
        _ => None,
    };
    Ok(if a.serve {
        StrategyArg::Serve {
            template: a
                .template
                .as_deref()
                .map(|t| template("--template", t))
                .transpose()?,
        }
    } else if a.strip {
        StrategyArg::Strip
    } else if let Some(t) = &a.generate {
        StrategyArg::Generate {
            template: template("--generate", t)?,
        }
    } else if a.prompt {
        if let Some(p) = &a.pattern {
            Pattern::new(p).map_err(|e| bad("--pattern", e))?;
        }
        StrategyArg::Prompt(PromptArgs {
            label: a.label.clone().unwrap_or_default(),
            help: prompt_help,
            kind: a.kind.map(|k| k.word().to_string()),
            pattern: a.pattern.clone(),
            min: a.min,
            max: a.max,
            optional: a.optional,
        })
    } else if let Some(r) = &a.delegate {
        Reference::parse(r).map_err(|e| bad("--delegate", e))?;
        StrategyArg::Delegate {
            reference: r.clone(),
        }
    } else if a.remove {
        StrategyArg::Remove
    } else {
        return Err(CliError::Usage(
            "say what happens on the tier: give one of --serve, --strip, --generate TEMPLATE, \
             --prompt --label TEXT, --delegate REF or --remove"
                .into(),
        ));
    })
}

/// `deploy secret strategy NAME --tier T [--class C] STRATEGY`.
///
/// # Errors
/// Whatever the command met.
pub async fn strategy(
    server: &Server,
    env: &Env,
    args: StrategyArgs,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if matches!(args.help, Some(None)) {
        return print_strategy_help(out);
    }
    let (Some(name), Some(tier)) = (args.name.clone(), args.tier.clone()) else {
        return Err(CliError::Usage(
            "give the secret's name and --tier TIER".into(),
        ));
    };
    check_tier(&tier)?;
    let strategy = strategy_of(&args)?;
    let class = args
        .class
        .map(|c| c.word().to_string())
        .filter(|c| !c.is_empty());
    if class.is_some() && strategy == StrategyArg::Remove {
        return Err(CliError::Usage(
            "--class goes with a strategy, not --remove".into(),
        ));
    }
    let command = Command::Catalog(CatalogCommand::Strategy {
        name: name.clone(),
        tier: tier.clone(),
        class: class.clone(),
        strategy: strategy.clone(),
    });
    let a = send(server, env, command).await?;
    let line = match (&strategy, a.flag("changed")) {
        (StrategyArg::Remove, _) => format!("removed {name}'s strategy on {tier}\n"),
        (_, Some(false)) => format!("{name} on {tier}: declared so already; nothing changed\n"),
        (s, _) => {
            let mut line = format!("{name} on {tier}: {}", describe(s));
            if let Some(c) = &class {
                line.push_str(&format!(" (class {c} there)"));
            }
            if a.flag("replaced") == Some(true) {
                line.push_str("; replaced the strategy it had");
            }
            line.push('\n');
            line
        }
    };
    write_lines(out, &line)?;
    Ok(Outcome::Done)
}

fn describe(s: &StrategyArg) -> String {
    match s {
        StrategyArg::Serve { template: None } => "served by the core server".into(),
        StrategyArg::Serve { template: Some(t) } => {
            format!("served by the core server (its value made from {t})")
        }
        StrategyArg::Strip => "stripped: never leaves the core server".into(),
        StrategyArg::Generate { template } => format!("generated per deployment from {template}"),
        StrategyArg::Prompt(p) => format!("asked at first run: {:?}", p.label),
        StrategyArg::Delegate { reference } => {
            format!("delegated to {reference} (not present until marked)")
        }
        StrategyArg::Remove => "no strategy".into(),
    }
}

/// `deploy secret strategy --help`: clap's own help, since `--help` is taken by the
/// prompt's help text.
fn print_strategy_help(out: &mut dyn Write) -> Result<Outcome, CliError> {
    use clap::CommandFactory;
    let mut cmd = crate::cli::Cli::command();
    let help = cmd
        .find_subcommand_mut("secret")
        .and_then(|s| s.find_subcommand_mut("strategy"))
        .map(|s| s.render_long_help().to_string())
        .unwrap_or_default();
    write_text(out, &help)?;
    Ok(Outcome::Done)
}

/// `deploy secret present NAME --tier T [--absent]`.
///
/// # Errors
/// Whatever the command met.
pub async fn present(
    server: &Server,
    env: &Env,
    name: String,
    tier: String,
    absent: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    check_tier(&tier)?;
    let a = send(
        server,
        env,
        Command::Catalog(CatalogCommand::Present {
            name: name.clone(),
            tier: tier.clone(),
            present: !absent,
        }),
    )
    .await?;
    let state = if absent { "not present" } else { "present" };
    let line = if a.flag("changed") == Some(false) {
        format!("{name} on {tier} is {state} already; nothing changed\n")
    } else {
        format!("{name} on {tier}: {state}\n")
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// `deploy secret plan --service S --tier T [--json]`: exit 1 when the plan has a problem.
///
/// # Errors
/// Whatever the command met.
pub async fn plan(
    server: &Server,
    env: &Env,
    service: String,
    tier: String,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    check_tier(&tier)?;
    let a = send(
        server,
        env,
        Command::Catalog(CatalogCommand::Plan { service, tier }),
    )
    .await?;
    let plan: catalog::Plan = from_json(&a)?;
    print_report(&plan, plan.ok, json, out)
}

/// `deploy secret lint [--tier T] [--json]`: exit 1 on any finding.
///
/// # Errors
/// Whatever the command met.
pub async fn lint(
    server: &Server,
    env: &Env,
    tier: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if let Some(t) = &tier {
        check_tier(t)?;
    }
    let a = send(server, env, Command::Catalog(CatalogCommand::Lint { tier })).await?;
    let lint: catalog::Lint = from_json(&a)?;
    print_report(&lint, lint.ok, json, out)
}

/// A plan or the lint, as JSON or for people; exit 1 when it is not `ok`.
fn print_report<T: serde::Serialize + std::fmt::Display>(
    report: &T,
    ok: bool,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if json {
        crate::output::write_json(out, report)?;
    } else {
        write_lines(out, &report.to_string())?;
    }
    Ok(if ok { Outcome::Done } else { Outcome::Findings })
}

/// `deploy secret set NAME --generate [TEMPLATE]`: the server makes the value; it is shown
/// nowhere.
///
/// # Errors
/// Whatever the command met.
pub async fn generate(
    server: &Server,
    env: &Env,
    name: String,
    template: String,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let template = (!template.is_empty()).then_some(template);
    if let Some(t) = &template {
        Template::parse(t).map_err(|e| bad("--generate", e))?;
    }
    let a = send(
        server,
        env,
        Command::Catalog(CatalogCommand::Generate {
            name: name.clone(),
            template,
        }),
    )
    .await?;
    let line = match a.number("version") {
        Some(v) => format!("generated {name} (version {v}); the value is shown nowhere\n"),
        None => format!("generated {name}; the value is shown nowhere\n"),
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

/// `deploy service tiers SERVICE (TIER,TIER | --all)`.
///
/// # Errors
/// Whatever the command met.
pub async fn service_tiers(
    server: &Server,
    env: &Env,
    service: String,
    tiers: Option<String>,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let tiers: Option<Vec<String>> = tiers.map(|t| {
        t.split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    });
    for t in tiers.iter().flatten() {
        check_tier(t)?;
    }
    let a = send(
        server,
        env,
        Command::Catalog(CatalogCommand::ServiceTiers {
            service: service.clone(),
            tiers: tiers.clone(),
        }),
    )
    .await?;
    let listed = match &tiers {
        None => "every declared tier".to_string(),
        Some(t) if t.is_empty() => "no tier".to_string(),
        Some(t) => t.join(", "),
    };
    let line = if a.flag("changed") == Some(false) {
        format!("{service} is deployed to {listed} already; nothing changed\n")
    } else {
        format!("{service} is deployed to {listed}\n")
    };
    write_text(out, &line)?;
    Ok(Outcome::Done)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use clap::Parser;

    fn strategy_args(args: &[&str]) -> StrategyArgs {
        let mut argv = vec!["deploy", "secret", "strategy", "k", "--tier", "desktop"];
        argv.extend(args);
        match cli::Cli::try_parse_from(argv).unwrap().command {
            cli::Command::Secret(cli::SecretCommand::Strategy(a)) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn flags_become_the_strategy_checked_here() {
        let s = strategy_of(&strategy_args(&[
            "--prompt",
            "--label",
            "Key",
            "--help",
            "From the console",
            "--kind",
            "password",
        ]))
        .unwrap();
        let StrategyArg::Prompt(p) = s else { panic!() };
        assert_eq!(p.help.as_deref(), Some("From the console"));
        assert_eq!(p.kind.as_deref(), Some("password"));
        // A bad template is refused here, with its byte.
        let e = strategy_of(&strategy_args(&["--generate", "x{{rnd:hex:32}}"])).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .starts_with("--generate: at byte 3: unknown placeholder"),
            "{e}"
        );
        let e = strategy_of(&strategy_args(&["--delegate", "nowhere"])).unwrap_err();
        assert!(e.to_string().starts_with("--delegate: "), "{e}");
        let e = strategy_of(&strategy_args(&["--strip", "--help", "x"])).unwrap_err();
        assert!(e.to_string().contains("goes with --prompt"), "{e}");
        assert!(strategy_of(&strategy_args(&[])).is_err());
        for args in [
            &["--strip", "--label", "x"][..],
            &["--strip", "--optional"][..],
            &["--strip", "--template", "x"][..],
            &["--prompt"][..],
        ] {
            let e = strategy_of(&strategy_args(args)).unwrap_err();
            assert_eq!(e.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn a_files_form_is_its_extension_else_its_first_bytes() {
        let p = Path::new;
        assert_eq!(format_of(p("c.toml"), "{}"), Format::Toml);
        assert_eq!(format_of(p("c.json"), "[tiers.a]"), Format::Json);
        assert_eq!(format_of(p("catalog"), "[tiers.a]\n"), Format::Toml);
        assert_eq!(
            format_of(p("catalog"), " [\n {\"secret_id\": \"a\"}]"),
            Format::Json
        );
    }

    #[test]
    fn strategy_help_is_claps() {
        let mut out = Vec::new();
        print_strategy_help(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("--prompt"), "{text}");
        assert!(text.contains("--help [<TEXT>]"), "{text}");
    }
}
