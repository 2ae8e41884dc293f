//! `deploy bundle …`: issue a bundle and write it out (`create`), the values issued
//! (`list`), and the deployment a leaked value was issued to (`identify`).
//!
//! `create` checks everything it can before the server issues anything: the names, the
//! output directory (absent or empty), that its parent takes a directory of ours (the
//! bundle is written into a private one beside it and renamed into place only when
//! complete, so nothing is left at DIR if anything fails), and the plan (every problem
//! listed, as `deploy secret plan` has them, and for `--format dotenv` that every
//! generated secret's name is a variable name).

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use catalog::{Bundle, FindingKind, Plan};
use ctl::{CatalogCommand, Command, Value};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::catalog::{body, check_tier, from_json, send, write_lines};
use super::{Outcome, note, read_limited, validate};
use crate::cli::{BundleCommand, BundleFormat};
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{self, Align, Table, when, write_json, write_text};

/// The refusal of a value given as an argument to `identify`.
const VALUE_ON_ARGV: &str = "bundle identify takes no value on the command line (other \
    users can see arguments, and shells keep them in history); paste it at the prompt, or \
    pipe it to stdin";

/// Runs one `deploy bundle` command.
///
/// # Errors
/// Whatever the command met.
pub async fn run(
    cmd: BundleCommand,
    server: &Server,
    env: &Env,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    match cmd {
        BundleCommand::Create {
            service,
            tier,
            deployment,
            out: dir,
            format,
            replace,
        } => {
            let request = Request {
                service,
                tier,
                deployment,
                replace,
            };
            create(server, env, &request, &dir, format, out).await
        }
        BundleCommand::List {
            deployment,
            secret,
            json,
        } => list(server, env, deployment, secret, json, out).await,
        BundleCommand::Identify { argv_value } => identify(server, env, &argv_value, out).await,
    }
}

/// What `create` asks for.
struct Request {
    service: String,
    tier: String,
    deployment: String,
    replace: bool,
}

impl Request {
    fn command(&self) -> Command {
        Command::Catalog(CatalogCommand::BundleCreate {
            service: self.service.clone(),
            tier: self.tier.clone(),
            deployment: self.deployment.clone(),
            replace: self.replace,
        })
    }
}

/// `deploy bundle create`.
async fn create(
    server: &Server,
    env: &Env,
    request: &Request,
    dir: &Path,
    format: BundleFormat,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let command = request.command();
    validate(&command)?;
    check_tier(&request.tier)?;
    check_out(dir)?;
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    // The plan first: every problem is shown, and nothing is issued that could not be
    // written in the form asked for.
    let planned = ctl
        .send(&Command::Catalog(CatalogCommand::Plan {
            service: request.service.clone(),
            tier: request.tier.clone(),
        }))
        .await?;
    let plan: Plan = from_json(&planned)?;
    refuse_plan(&plan, format)?;
    if !request.replace {
        let issued = ctl
            .send(&Command::Catalog(CatalogCommand::BundleList {
                deployment: Some(request.deployment.clone()),
                secret: None,
            }))
            .await?;
        let rows: Vec<Issued> = from_json(&issued)?;
        if let Some(last) = rows
            .iter()
            .filter(|r| r.service == request.service && r.tier == request.tier)
            .max_by_key(|r| r.bundle)
        {
            return Err(CliError::Usage(format!(
                "deployment {} already has bundle {} of {} on tier {} (issued {}); a deployment \
                 id is used once per service and tier: pass --replace to issue it a new bundle \
                 (the earlier values stay on record), or give another id; nothing was issued",
                request.deployment,
                last.bundle,
                request.service,
                request.tier,
                when(last.issued)
            )));
        }
    }
    let staging = Staging::beside(dir)?;
    let answer = ctl.send(&command).await?;
    ctl.close().await?;
    let bundle = Bundle::from_json(body(&answer)?)
        .map_err(|e| CliError::Unexpected(format!("the bundle the server issued: {e}")))?;
    let unwritten = |e: CliError| {
        CliError::Deployer(format!(
            "bundle {} was issued to deployment {}, but {e}; nothing was left at {}: issue it \
             again with --replace",
            bundle.bundle,
            bundle.deployment,
            dir.display()
        ))
    };
    write_bundle(staging.path(), &bundle, format).map_err(unwritten)?;
    staging.commit(dir).map_err(unwritten)?;
    write_lines(out, &summary(&bundle, dir, format, answer.get("replaced")))?;
    for d in bundle.delegated.iter().filter(|d| !d.present) {
        note(&format!(
            "{} is delegated to {} and not present yet; hand the provider its value with \
             `deploy secret delegate {} --tier {} --ref {} --via CMD`",
            d.secret, d.reference, d.secret, bundle.tier, d.reference
        ));
    }
    Ok(Outcome::Done)
}

/// Refuses, before anything is issued, a plan the server would refuse (listing every
/// problem) or one whose values a dotenv file cannot name.
fn refuse_plan(plan: &Plan, format: BundleFormat) -> Result<(), CliError> {
    let problems: Vec<String> = plan
        .problems
        .iter()
        .filter(|p| p.kind != FindingKind::NotPresent)
        .map(|p| format!("{}: {}", p.id, p.message))
        .collect();
    if !problems.is_empty() {
        return Err(CliError::Usage(format!(
            "the plan for service {} on tier {} has {}, so no bundle was issued: {}",
            plan.service,
            plan.tier,
            output::count(problems.len(), "problem", "problems"),
            problems.join("; ")
        )));
    }
    if plan.core {
        return Err(CliError::Usage(format!(
            "tier {} is core: its services read the core server (deploy service run), and a \
             bundle is for a deployment outside it",
            plan.tier
        )));
    }
    if format == BundleFormat::Dotenv {
        let generated = plan
            .entries
            .iter()
            .filter(|e| matches!(e.action, catalog::Action::Generate { .. }));
        for e in generated {
            if !catalog::is_env_name(&e.secret) {
                return Err(CliError::Usage(format!(
                    "secret {} is not a variable name ([A-Za-z_][A-Za-z0-9_]*), so it cannot \
                     be a dotenv line; use --format dir or json (nothing was issued)",
                    e.secret
                )));
            }
        }
    }
    Ok(())
}

/// DIR must not exist, or be an empty directory (not a link to one).
fn check_out(dir: &Path) -> Result<(), CliError> {
    let shown = dir.display();
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_dir() => {
            let mut entries = std::fs::read_dir(dir).map_err(|source| CliError::Read {
                what: format!("{shown}"),
                source,
            })?;
            if entries.next().is_some() {
                return Err(CliError::Usage(format!(
                    "{shown} is not empty; give --out a directory that does not exist yet, or \
                     an empty one (nothing was issued)"
                )));
            }
            Ok(())
        }
        Ok(_) => Err(CliError::Usage(format!(
            "{shown} exists and is not a directory; give --out a directory that does not exist \
             yet, or an empty one (nothing was issued)"
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CliError::Read {
            what: format!("{shown}"),
            source,
        }),
    }
}

/// A private directory beside the output directory, where the bundle is written; renamed
/// into place when whole, removed otherwise.
struct Staging {
    path: Option<PathBuf>,
}

impl Staging {
    fn beside(dir: &Path) -> Result<Staging, CliError> {
        let name = dir.file_name().ok_or_else(|| {
            CliError::Usage(format!(
                "--out {} names no directory; give it one (./bundle)",
                dir.display()
            ))
        })?;
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let mut stage = OsString::from(".");
        stage.push(name);
        stage.push(format!(".partial-{}", std::process::id()));
        let path = parent.join(stage);
        DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .map_err(|source| CliError::Write {
                what: format!(
                    "a directory beside {} (for the bundle, before it is complete)",
                    dir.display()
                ),
                source,
            })?;
        Ok(Staging { path: Some(path) })
    }

    fn path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("."))
    }

    /// Renames it to `dir` (an empty directory there is replaced), and syncs the parent.
    fn commit(mut self, dir: &Path) -> Result<(), CliError> {
        let Some(path) = self.path.take() else {
            return Ok(());
        };
        let failed = |source| CliError::Write {
            what: format!("{}", dir.display()),
            source,
        };
        if let Err(e) = std::fs::rename(&path, dir) {
            self.path = Some(path);
            return Err(failed(e));
        }
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(failed)?;
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = std::fs::remove_dir_all(path);
        }
    }
}

/// Writes `bundle` into the (empty, private) directory `dir` in `format`: files 0600,
/// then all of it synced at once (`syncfs`: one flush for a bundle of a hundred files,
/// where a sync per file costs milliseconds each).
fn write_bundle(dir: &Path, bundle: &Bundle, format: BundleFormat) -> Result<(), CliError> {
    match format {
        BundleFormat::Dir | BundleFormat::Dotenv => {
            if format == BundleFormat::Dir {
                let values = dir.join("values");
                DirBuilder::new()
                    .mode(0o700)
                    .create(&values)
                    .map_err(|source| CliError::Write {
                        what: format!("{}", values.display()),
                        source,
                    })?;
                for (name, value) in &bundle.values {
                    // A name from the server becomes a file name: only a name the name
                    // rule allows, so a path element and never `..`.
                    if !catalog::is_valid_secret(name) {
                        return Err(CliError::Unexpected(
                            "the bundle names a secret that breaks the name rule".into(),
                        ));
                    }
                    write_file(&values.join(name), value.expose())?;
                }
            } else {
                let env = bundle.dotenv().map_err(CliError::Usage)?;
                write_file(&dir.join("values.env"), &env)?;
            }
            write_file(&dir.join("manifest.json"), &bundle.manifest_json())?;
            write_file(&dir.join("prompts.json"), &bundle.prompts_json())?;
            write_file(&dir.join("delegated.json"), &bundle.delegated_json())?;
        }
        BundleFormat::Json => write_file(&dir.join("bundle.json"), &bundle.to_json())?,
    }
    let synced = File::open(dir).and_then(|d| rustix::fs::syncfs(&d).map_err(io::Error::from));
    synced.map_err(|source| CliError::Write {
        what: format!("{}", dir.display()),
        source,
    })
}

/// Creates `path` (it must not exist) mode 0600 and writes `bytes` to it, durably.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let file = create_file(path, bytes)?;
    file.sync_all().map_err(|source| CliError::Write {
        what: format!("{}", path.display()),
        source,
    })
}

/// Creates `path` (it must not exist) mode 0600 and writes `bytes` to it; the caller
/// syncs.
fn write_file(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    create_file(path, bytes).map(drop)
}

fn create_file(path: &Path, bytes: &[u8]) -> Result<File, CliError> {
    let failed = |source| CliError::Write {
        what: format!("{}", path.display()),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(failed)?;
    file.write_all(bytes).map_err(failed)?;
    Ok(file)
}

/// What `create` says it did.
fn summary(bundle: &Bundle, dir: &Path, format: BundleFormat, replaced: Option<&str>) -> String {
    let (form, values_at) = match format {
        BundleFormat::Dir => ("dir", "values/"),
        BundleFormat::Dotenv => ("dotenv", "values.env"),
        BundleFormat::Json => ("json", "bundle.json"),
    };
    let absent = bundle.delegated.iter().filter(|d| !d.present).count();
    let stripped = bundle
        .manifest
        .iter()
        .filter(|e| e.shipped == catalog::Shipped::Strip)
        .count();
    let mut text = format!(
        "issued bundle {} of {} on tier {} to deployment {}",
        bundle.bundle, bundle.service, bundle.tier, bundle.deployment
    );
    if let Some(n) = replaced.filter(|r| *r != "none") {
        text.push_str(&format!(
            ", replacing bundle {n} (whose values stay on record)"
        ));
    }
    text.push_str(&format!(", in {} ({form}):\n", dir.display()));
    let in_file = |what: &str| {
        if format == BundleFormat::Json {
            "bundle.json".to_string()
        } else {
            what.to_string()
        }
    };
    text.push_str(&format!(
        "  {} generated ({values_at})\n  {} to prompt for at first run ({})\n  {} delegated \
         ({}{})\n  {} stripped (named in {})\n",
        bundle.values.len(),
        bundle.prompts.len(),
        in_file("prompts.json"),
        bundle.delegated.len(),
        in_file("delegated.json"),
        if absent > 0 {
            format!(", {absent} not present yet")
        } else {
            String::new()
        },
        stripped,
        in_file("manifest.json"),
    ));
    text
}

/// One value issued, as `bundle list` shows it (the server's `bundle list` body).
#[derive(Debug, Deserialize, Serialize)]
struct Issued {
    deployment: String,
    service: String,
    tier: String,
    bundle: u64,
    secret: Option<String>,
    issued: u64,
    current: bool,
}

/// `deploy bundle list`.
async fn list(
    server: &Server,
    env: &Env,
    deployment: Option<String>,
    secret: Option<String>,
    json: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let answer = send(
        server,
        env,
        Command::Catalog(CatalogCommand::BundleList { deployment, secret }),
    )
    .await?;
    let rows: Vec<Issued> = from_json(&answer)?;
    if json {
        write_json(out, &rows)?;
    } else {
        write_text(out, &render_list(&rows))?;
    }
    Ok(Outcome::Done)
}

fn render_list(rows: &[Issued]) -> String {
    let mut table = Table::new(&[
        ("DEPLOYMENT", Align::Left),
        ("SERVICE", Align::Left),
        ("TIER", Align::Left),
        ("BUNDLE", Align::Right),
        ("SECRET", Align::Left),
        ("ISSUED", Align::Left),
        ("STATUS", Align::Left),
    ]);
    for r in rows {
        table.row(vec![
            r.deployment.clone(),
            r.service.clone(),
            r.tier.clone(),
            r.bundle.to_string(),
            r.secret.clone().unwrap_or_else(|| "-".into()),
            when(r.issued),
            if r.current { "current" } else { "replaced" }.to_string(),
        ]);
    }
    table.render()
}

/// `deploy bundle identify`.
async fn identify(
    server: &Server,
    env: &Env,
    argv_value: &[OsString],
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    if !argv_value.is_empty() {
        return Err(CliError::Usage(VALUE_ON_ARGV.into()));
    }
    let session = Session::admin(server, env).await?;
    let value = if io::stdin().is_terminal() {
        super::secret::prompt_hidden("Value to identify: ")?
    } else {
        read_limited(io::stdin().lock(), "stdin", "the value")?
    };
    if value.is_empty() {
        return Err(CliError::Usage(
            "the value to identify is empty; nothing was asked".into(),
        ));
    }
    let mut ctl = session.ctl().await?;
    let mut found = ask(&mut ctl, Zeroizing::new(value.to_vec())).await?;
    // A value pasted or echoed into a pipe usually brings a newline the bundle never had.
    let trimmed = value
        .strip_suffix(b"\n")
        .map(|v| v.strip_suffix(b"\r").unwrap_or(v));
    if found.is_empty()
        && let Some(v) = trimmed.filter(|v| !v.is_empty())
    {
        found = ask(&mut ctl, Zeroizing::new(v.to_vec())).await?;
    }
    ctl.close().await?;
    if found.is_empty() {
        write_text(out, "no bundle was issued this value\n")?;
        return Ok(Outcome::Findings);
    }
    let mut text = String::new();
    for f in &found {
        text.push_str(&format!(
            "issued to deployment {}: secret {} of service {} on tier {}, bundle {}, {} ({})\n",
            f.deployment,
            f.secret.as_deref().unwrap_or("-"),
            f.service,
            f.tier,
            f.bundle,
            when(f.issued),
            if f.current {
                "current"
            } else {
                "replaced since"
            }
        ));
    }
    write_lines(out, &text)?;
    Ok(Outcome::Done)
}

async fn ask(
    ctl: &mut crate::connect::Ctl,
    value: Zeroizing<Vec<u8>>,
) -> Result<Vec<Issued>, CliError> {
    let command = Command::Catalog(CatalogCommand::BundleIdentify {
        value: Value::from(value),
    });
    validate(&command)?;
    let answer = ctl.send(&command).await?;
    from_json(&answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_directory_is_absent_or_empty() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(check_out(&tmp.path().join("new")).is_ok());
        assert!(check_out(tmp.path()).is_ok());
        std::fs::write(tmp.path().join("x"), b"").unwrap();
        let e = check_out(tmp.path()).unwrap_err();
        assert!(e.to_string().contains("is not empty"), "{e}");
        let e = check_out(&tmp.path().join("x")).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn a_staging_directory_is_private_and_gone_unless_committed() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("b");
        let s = Staging::beside(&out).unwrap();
        let staged = s.path().to_path_buf();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&staged).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(s);
        assert!(!staged.exists());
        let s = Staging::beside(&out).unwrap();
        write_private(&s.path().join("f"), b"x").unwrap();
        s.commit(&out).unwrap();
        assert_eq!(std::fs::read(out.join("f")).unwrap(), b"x");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_list_table() {
        let rows = vec![
            Issued {
                deployment: "acme-7".into(),
                service: "web".into(),
                tier: "desktop".into(),
                bundle: 1,
                secret: Some("jwt_key".into()),
                issued: 1_714_564_800,
                current: false,
            },
            Issued {
                deployment: "acme-7".into(),
                service: "web".into(),
                tier: "desktop".into(),
                bundle: 2,
                secret: None,
                issued: 1_714_564_801,
                current: true,
            },
        ];
        assert_eq!(
            render_list(&rows),
            "DEPLOYMENT  SERVICE  TIER     BUNDLE  SECRET   ISSUED                STATUS\n\
             acme-7      web      desktop       1  jwt_key  2024-05-01T12:00:00Z  replaced\n\
             acme-7      web      desktop       2  -        2024-05-01T12:00:01Z  current\n"
        );
    }
}
