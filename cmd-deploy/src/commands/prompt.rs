//! `deploy prompt --spec DIR/prompts.json --out DIR [--from-env]`: the first run of a
//! bundle, on Linux and servers. Each user secret of the spec is asked at the terminal
//! (without echo for `password`), checked as the spec says
//! ([`catalog::PromptSpec::check_answer`]), asked again with the reason when refused, and
//! written to `DIR/values/NAME` (0600). The reference behaviour that a desktop or mobile
//! packager implements with its own widgets and secure storage.
//!
//! Answers are kept in zeroizing buffers and written only once every prompt has one, each
//! file replaced atomically; nothing is sent anywhere.

use std::io::{self, BufRead, IsTerminal, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use catalog::{AnswerError, PromptEntry, PromptKind, PromptsFile};
use zeroize::Zeroizing;

use super::bundle::write_private;
use super::{Outcome, read_file_bounded};
use crate::error::CliError;
use crate::output::{self, printable};

/// The largest prompt spec deploy reads: far above any bundle's.
const MAX_SPEC_LEN: usize = 4 << 20;

/// Runs `deploy prompt`.
///
/// # Errors
/// A spec that does not read, an answer that is refused (with `--from-env`), no terminal
/// to ask at, a file that cannot be written.
pub fn run(
    spec: &Path,
    dir: &Path,
    from_env: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let prompts = read_spec(spec)?;
    if !dir.is_dir() {
        return Err(CliError::Usage(format!(
            "{} is not a directory; give --out the bundle's directory",
            dir.display()
        )));
    }
    // Before anything is asked: an answer typed is never refused for where it would go.
    values_dir(dir)?;
    let answers = if from_env {
        from_environment(&prompts)?
    } else {
        if !io::stdin().is_terminal() {
            return Err(CliError::Usage(
                "deploy prompt asks at a terminal, and stdin is none; run it at one, or pass \
                 --from-env to read each answer from the variable named after its secret"
                    .into(),
            ));
        }
        ask_all(&prompts)?
    };
    let written = write_answers(dir, &answers)?;
    let skipped: Vec<&str> = prompts
        .iter()
        .filter(|p| !answers.iter().any(|(n, _)| *n == p.secret))
        .map(|p| p.secret.as_str())
        .collect();
    let mut text = format!(
        "wrote {} to {}",
        output::count(written.len(), "answer", "answers"),
        dir.join("values").display()
    );
    if !written.is_empty() {
        text.push_str(&format!(" ({})", written.join(", ")));
    }
    if !skipped.is_empty() {
        text.push_str(&format!(
            "; skipped {} ({})",
            output::count(skipped.len(), "optional one", "optional ones"),
            skipped.join(", ")
        ));
    }
    text.push('\n');
    super::catalog::write_lines(out, &text)?;
    Ok(Outcome::Done)
}

/// Reads and checks the spec: every prompt's secret a name, its fields as the catalog
/// checks them.
fn read_spec(spec: &Path) -> Result<Vec<PromptEntry>, CliError> {
    let bad = |reason: String| CliError::BadImport {
        path: spec.to_path_buf(),
        reason,
    };
    let text = read_file_bounded(spec, MAX_SPEC_LEN, "the prompt spec")?;
    let file: PromptsFile = serde_json::from_slice(&text)
        .map_err(|e| bad(format!("not a prompt spec (a bundle's prompts.json): {e}")))?;
    let mut seen = std::collections::HashSet::with_capacity(file.prompts.len());
    for p in &file.prompts {
        if !catalog::is_valid_secret(&p.secret) {
            return Err(bad(
                "a prompt's secret breaks the name rule (1 to 128 of A-Z a-z 0-9 . _ -)".into(),
            ));
        }
        if let Err((field, e)) = p.spec.check() {
            return Err(bad(format!("{}: {field}: {e}", p.secret)));
        }
        if !seen.insert(p.secret.as_str()) {
            return Err(bad(format!("{} is asked twice", p.secret)));
        }
    }
    Ok(file.prompts)
}

/// An answer kept: the secret and its value.
type Answer = (String, Zeroizing<Vec<u8>>);

/// `--from-env`: every answer from the variable named after its secret, all checked
/// before any is kept.
fn from_environment(prompts: &[PromptEntry]) -> Result<Vec<Answer>, CliError> {
    let mut answers = Vec::new();
    let mut refused = Vec::new();
    for p in prompts {
        let value = std::env::var_os(&p.secret).unwrap_or_default();
        let bytes = Zeroizing::new(value.as_bytes().to_vec());
        let verdict = match std::str::from_utf8(&bytes) {
            Ok(text) => p.spec.check_answer(text).map_err(|e| match e {
                AnswerError::Required => {
                    "the variable is not set, or empty, and an answer is required".to_string()
                }
                other => other.to_string(),
            }),
            Err(_) => Err("the variable is not UTF-8 text".to_string()),
        };
        match verdict {
            Ok(true) => answers.push((p.secret.clone(), bytes)),
            Ok(false) => {}
            Err(why) => refused.push(format!("{}: {why}", p.secret)),
        }
    }
    if !refused.is_empty() {
        return Err(CliError::Usage(format!(
            "{} refused, so nothing was written: {}",
            output::count(refused.len(), "answer", "answers"),
            refused.join("; ")
        )));
    }
    Ok(answers)
}

/// Asks each prompt at the terminal until it is answered as the spec says.
fn ask_all(prompts: &[PromptEntry]) -> Result<Vec<Answer>, CliError> {
    let mut answers = Vec::new();
    for p in prompts {
        let spec = &p.spec;
        let mut intro = format!("{} ({})", spec.label, p.secret);
        if spec.optional {
            intro.push_str(", optional: Enter skips it");
        }
        say(&intro);
        if let Some(help) = &spec.help {
            say(&format!("  {help}"));
        }
        loop {
            let answer = read_answer(spec.kind, &format!("{}: ", spec.label))?;
            let Ok(text) = std::str::from_utf8(&answer) else {
                say("deploy: the answer is not UTF-8 text; try again");
                continue;
            };
            match spec.check_answer(text) {
                Ok(true) => {
                    answers.push((p.secret.clone(), answer));
                    break;
                }
                Ok(false) => break,
                Err(e) => say(&format!("deploy: {e}; try again")),
            }
        }
    }
    Ok(answers)
}

fn say(text: &str) {
    let _ = writeln!(io::stderr(), "{}", printable(text));
}

/// One answer from the terminal: without echo for a password, else a line as typed. The
/// newline that ends it is dropped.
fn read_answer(kind: PromptKind, prompt: &str) -> Result<Zeroizing<Vec<u8>>, CliError> {
    if kind == PromptKind::Password {
        return super::secret::prompt_hidden(prompt);
    }
    let mut err = io::stderr();
    let _ = err.write_all(printable(prompt).as_bytes());
    let _ = err.flush();
    // Allocated at the limit once, so that the line never makes it grow (a copy left
    // behind in freed memory).
    let limit = model::MAX_VALUE_LEN;
    let mut line = Zeroizing::new(Vec::with_capacity(limit + 1));
    let read = io::stdin()
        .lock()
        .take(limit as u64 + 1)
        .read_until(b'\n', &mut line);
    let n = read.map_err(|source| CliError::Read {
        what: "the answer from the terminal".into(),
        source,
    })?;
    if n == 0 {
        return Err(CliError::Interrupted);
    }
    if line.len() > limit {
        return Err(CliError::TooLarge { what: "the answer" });
    }
    if line.ends_with(b"\n") {
        line.pop();
        if line.ends_with(b"\r") {
            line.pop();
        }
    }
    Ok(line)
}

/// `dir/values`, where the answers go, and whether it exists: a directory, not a link to
/// one (answers written through a link would land wherever it points, a directory others
/// may read).
fn values_dir(dir: &Path) -> Result<(PathBuf, bool), CliError> {
    let values = dir.join("values");
    match std::fs::symlink_metadata(&values) {
        Ok(m) if m.is_dir() => Ok((values, true)),
        Ok(m) => Err(CliError::Usage(format!(
            "{} is {}, not a directory of the bundle's; deploy prompt writes answers only \
             into one: remove it (deploy prompt makes it 0700), then run again; nothing was \
             written",
            values.display(),
            if m.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "not a directory"
            }
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok((values, false)),
        Err(source) => Err(CliError::Read {
            what: format!("{}", values.display()),
            source,
        }),
    }
}

/// Writes each answer to `dir/values/NAME`, mode 0600 (`values` made 0700 if need be),
/// each replacing an earlier file whole. Returns the names written.
fn write_answers(dir: &Path, answers: &[Answer]) -> Result<Vec<String>, CliError> {
    let (values, exists) = values_dir(dir)?;
    if !exists {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&values)
            .map_err(|source| CliError::Write {
                what: format!("{}", values.display()),
                source,
            })?;
    }
    let mut written = Vec::new();
    for (name, value) in answers {
        let target = values.join(name);
        let partial = values.join(format!(".{name}.partial-{}", std::process::id()));
        let _ = std::fs::remove_file(&partial);
        write_private(&partial, value)?;
        std::fs::rename(&partial, &target).map_err(|source| {
            let _ = std::fs::remove_file(&partial);
            CliError::Write {
                what: format!("{}", target.display()),
                source,
            }
        })?;
        written.push(name.clone());
    }
    std::fs::File::open(&values)
        .and_then(|d| d.sync_all())
        .map_err(|source| CliError::Write {
            what: format!("{}", values.display()),
            source,
        })?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_checked_before_anything_is_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("prompts.json");
        std::fs::write(&path, br#"{"prompts": [{"secret": "../x", "label": "L"}]}"#).unwrap();
        let e = read_spec(&path).unwrap_err();
        assert!(e.to_string().contains("name rule"), "{e}");
        std::fs::write(&path, br#"{"prompts": [{"secret": "k", "label": ""}]}"#).unwrap();
        assert!(read_spec(&path).unwrap_err().to_string().contains("label"));
        std::fs::write(
            &path,
            br#"{"format": "srv-secrets-bundle/1", "prompts": [{"secret": "k", "label": "Key",
                "kind": "number", "min": 1, "max": 9, "optional": true}]}"#,
        )
        .unwrap();
        let p = read_spec(&path).unwrap();
        assert_eq!(p[0].spec.kind, PromptKind::Number);
    }

    #[test]
    fn a_spec_of_many_prompts_is_read_in_linear_time() {
        // The largest spec deploy reads, of the smallest prompts: checked for repeats
        // pairwise, it took minutes.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("prompts.json");
        let mut text = String::from(r#"{"prompts": ["#);
        let mut n = 0;
        while text.len() < MAX_SPEC_LEN - 64 {
            if n > 0 {
                text.push(',');
            }
            text.push_str(&format!(r#"{{"secret":"s{n}","label":"L"}}"#));
            n += 1;
        }
        text.push_str("]}");
        std::fs::write(&path, &text).unwrap();
        let started = std::time::Instant::now();
        assert_eq!(read_spec(&path).unwrap().len(), n);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{n} prompts took {:?}",
            started.elapsed()
        );
        // A repeat is still found.
        std::fs::write(
            &path,
            br#"{"prompts": [{"secret": "k", "label": "A"}, {"secret": "k", "label": "B"}]}"#,
        )
        .unwrap();
        assert!(
            read_spec(&path)
                .unwrap_err()
                .to_string()
                .contains("k is asked twice")
        );
    }

    #[test]
    fn answers_are_never_written_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let bundle = tmp.path().join("bundle");
        std::fs::create_dir(&bundle).unwrap();
        std::os::unix::fs::symlink(&elsewhere, bundle.join("values")).unwrap();
        let one = vec![("k".to_string(), Zeroizing::new(b"answer".to_vec()))];
        let e = write_answers(&bundle, &one).unwrap_err();
        assert!(e.to_string().contains("a symbolic link"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
        // A file there is refused as well, and left alone.
        std::fs::remove_file(bundle.join("values")).unwrap();
        std::fs::write(bundle.join("values"), b"").unwrap();
        let e = write_answers(&bundle, &one).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
        assert_eq!(std::fs::read(bundle.join("values")).unwrap(), b"");
    }

    #[test]
    fn answers_replace_earlier_files_whole_and_privately() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let one = vec![("k".to_string(), Zeroizing::new(b"first".to_vec()))];
        write_answers(tmp.path(), &one).unwrap();
        let two = vec![("k".to_string(), Zeroizing::new(b"2".to_vec()))];
        assert_eq!(write_answers(tmp.path(), &two).unwrap(), ["k"]);
        let file = tmp.path().join("values/k");
        assert_eq!(std::fs::read(&file).unwrap(), b"2");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&tmp.path().join("values")), 0o700);
        assert_eq!(
            std::fs::read_dir(tmp.path().join("values"))
                .unwrap()
                .count(),
            1
        );
    }
}
