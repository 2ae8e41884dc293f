//! `deploy secret import`: many secrets at once, from a dotenv file, a JSON object or a
//! directory of files, sent as one ctl transaction (all or none).
//!
//! Nothing read from the input is ever printed: errors name a line, a position or a file,
//! never a value, and not even a name (a malformed line may be a value).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use ctl::{Command, Value};
use zeroize::Zeroizing;

use super::Outcome;
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::{self, write_text};

/// The largest import file deploy reads: a transaction holds at most 4 MiB of values, and
/// quoting or JSON escapes can double them.
const MAX_IMPORT_FILE: usize = 2 * ctl::MAX_TXN_BYTES + 64 * 1024;

/// Where the secrets come from.
#[derive(Debug)]
pub enum Source {
    /// `NAME=VALUE` lines (a filled-in `.env.example`).
    Dotenv(PathBuf),
    /// A JSON object of name to string value.
    Json(PathBuf),
    /// A directory with one file per secret, named after it.
    Dir(PathBuf),
}

/// One secret to import.
struct Entry {
    name: String,
    value: Zeroizing<Vec<u8>>,
    /// Where it came from, for errors: "line 7", "key 3", "file NAME".
    at: String,
}

/// `deploy secret import (--dotenv FILE | --json FILE | --dir DIR) [--allow-empty]`.
///
/// # Errors
/// A bad input (nothing sent), or the server's refusal (nothing changed).
pub async fn import(
    server: &Server,
    env: &Env,
    source: Source,
    allow_empty: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let what = match &source {
        Source::Dotenv(p) | Source::Json(p) | Source::Dir(p) => p.clone(),
    };
    let bad = |reason: String| CliError::BadImport {
        path: what.clone(),
        reason,
    };
    let entries = match &source {
        Source::Dotenv(path) => dotenv(&read_input(path)?),
        Source::Json(path) => json(&read_input(path)?),
        Source::Dir(dir) => directory(dir)?,
    }
    .map_err(bad)?;
    if entries.is_empty() {
        return Err(bad("it holds no secrets; nothing was sent".into()));
    }
    let mut first: BTreeMap<&str, &str> = BTreeMap::new();
    for e in &entries {
        if !model::is_valid_name(&e.name) {
            return Err(bad(format!(
                "{}: not a valid secret name (1 to 128 of A-Z a-z 0-9 . _ -); nothing was sent",
                e.at
            )));
        }
        if let Some(earlier) = first.insert(&e.name, &e.at) {
            return Err(bad(format!(
                "{}: the same secret as {earlier}; nothing was sent",
                e.at
            )));
        }
        if e.value.is_empty() && !allow_empty {
            return Err(bad(format!(
                "{}: the value is empty; nothing was sent (pass --allow-empty to store empty \
                 values)",
                e.at
            )));
        }
        if e.value.len() > model::MAX_VALUE_LEN {
            return Err(bad(format!(
                "{}: the value is larger than 1 MiB; nothing was sent",
                e.at
            )));
        }
    }
    let commands: Vec<Command> = entries
        .into_iter()
        .map(|e| Command::Set {
            name: e.name,
            value: Value::from(e.value),
        })
        .collect();
    let weight: usize = commands.iter().map(Command::weight).sum();
    if commands.len() > ctl::MAX_TXN_COMMANDS || weight > ctl::MAX_TXN_BYTES {
        return Err(bad(format!(
            "{} ({weight} bytes) are more than one transaction holds (at most {} secrets and \
             4 MiB); split it into smaller imports; nothing was sent",
            output::count(commands.len(), "secret", "secrets"),
            ctl::MAX_TXN_COMMANDS
        )));
    }
    let session = Session::admin(server, env).await?;
    let mut ctl = session.ctl().await?;
    let answers = ctl.transaction(&commands).await?;
    ctl.close().await?;
    drop(commands);
    let new = answers
        .iter()
        .filter(|a| a.number("version") == Some(1))
        .count();
    write_text(
        out,
        &format!(
            "imported {} in one transaction: {new} new, {} updated\n",
            output::count(answers.len(), "secret", "secrets"),
            answers.len() - new
        ),
    )?;
    Ok(Outcome::Done)
}

fn read_input(path: &Path) -> Result<Zeroizing<Vec<u8>>, CliError> {
    super::read_file_bounded(path, MAX_IMPORT_FILE, "the import file")
}

/// Parses a dotenv file: `NAME=VALUE` lines, `export NAME=VALUE`, blank lines and `#`
/// comments. A value is taken as it stands (blanks around it and a ` # comment` after it
/// dropped), or quoted: `'...'` byte for byte, `"..."` with `\n`, `\r`, `\t`, `\"` and
/// `\\`; a quoted value may span lines.
fn dotenv(text: &[u8]) -> Result<Vec<Entry>, String> {
    let mut p = Dotenv {
        text,
        pos: 0,
        line: 1,
    };
    let mut entries = Vec::new();
    loop {
        p.skip_blanks();
        match p.peek() {
            None => return Ok(entries),
            Some(b'\n') => {
                p.newline();
                continue;
            }
            Some(b'#') => {
                p.skip_to_line_end();
                continue;
            }
            Some(_) => {}
        }
        let at = p.line;
        if p.rest().starts_with(b"export ") || p.rest().starts_with(b"export\t") {
            p.pos += "export".len();
            p.skip_blanks();
        }
        let name_start = p.pos;
        while !matches!(p.peek(), None | Some(b'=' | b'\n')) {
            p.pos += 1;
        }
        if p.peek() != Some(b'=') {
            return Err(p.error(at, "expected NAME=VALUE"));
        }
        let name = trim(&text[name_start..p.pos]);
        // An environment variable's name, as a .env file holds: anything else is more
        // likely a piece of a value that wrapped onto its own line, and a name is stored
        // and shown in the clear.
        if !is_env_name(name) {
            return Err(p.error(
                at,
                "not a variable name ([A-Za-z_][A-Za-z0-9_]*; a value that spans lines must \
                 be quoted)",
            ));
        }
        let name = String::from_utf8_lossy(name).into_owned();
        p.pos += 1;
        if p.peek() == Some(b'=') {
            // `NAME==...`: the tail of a wrapped base64 value, most likely.
            return Err(p.error(
                at,
                "the value starts with '=' (a value that spans lines must be quoted)",
            ));
        }
        p.skip_blanks();
        let value = match p.peek() {
            Some(q @ (b'\'' | b'"')) => {
                p.pos += 1;
                let value = p
                    .quoted(q)
                    .ok_or_else(|| p.error(at, "the quote is never closed"))?;
                p.skip_blanks();
                if !matches!(p.peek(), None | Some(b'\n' | b'#' | b'\r')) {
                    return Err(p.error(at, "text after the closing quote"));
                }
                p.skip_to_line_end();
                value
            }
            _ => {
                let start = p.pos;
                p.skip_to_line_end();
                let raw = &text[start..p.pos];
                let end = comment_start(raw).unwrap_or(raw.len());
                Zeroizing::new(trim(&raw[..end]).to_vec())
            }
        };
        entries.push(Entry {
            name,
            value,
            at: format!("line {at}"),
        });
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
fn is_env_name(name: &[u8]) -> bool {
    matches!(name.first(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && name.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

/// A position in a dotenv file.
struct Dotenv<'a> {
    text: &'a [u8],
    pos: usize,
    line: usize,
}

impl Dotenv<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn rest(&self) -> &[u8] {
        &self.text[self.pos..]
    }

    fn skip_blanks(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn newline(&mut self) {
        self.pos += 1;
        self.line += 1;
    }

    /// Moves to the start of the next line.
    fn skip_to_line_end(&mut self) {
        while let Some(b) = self.peek() {
            if b == b'\n' {
                self.newline();
                return;
            }
            self.pos += 1;
        }
    }

    /// The value of a quoted string whose opening quote `q` was just passed; `None` if it
    /// never closes.
    fn quoted(&mut self, q: u8) -> Option<Zeroizing<Vec<u8>>> {
        // Where it closes first, so that the buffer is sized to the value: never more (a
        // file of many short values must not reserve the rest of the file for each), never
        // less (growing would leave copies of the value behind).
        let rest = self.rest();
        let mut span = 0;
        loop {
            match *rest.get(span)? {
                b if b == q => break,
                b'\\' if q == b'"' => span += 2,
                _ => span += 1,
            }
        }
        let mut out = Zeroizing::new(Vec::with_capacity(span));
        loop {
            let b = self.peek()?;
            self.pos += 1;
            match b {
                _ if b == q => return Some(out),
                b'\n' => {
                    self.line += 1;
                    out.push(b);
                }
                b'\\' if q == b'"' => {
                    let escaped = self.peek()?;
                    self.pos += 1;
                    if escaped == b'\n' {
                        self.line += 1;
                    }
                    out.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        other => other,
                    });
                }
                _ => out.push(b),
            }
        }
    }

    fn error(&self, line: usize, what: &str) -> String {
        let _ = self;
        format!("line {line}: {what}; nothing was sent")
    }
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().take_while(|c| c.is_ascii_whitespace()).count();
    let end = b
        .iter()
        .rev()
        .take_while(|c| c.is_ascii_whitespace())
        .count();
    if start == b.len() {
        return &[];
    }
    &b[start..b.len() - end]
}

/// Where an unquoted value's comment begins: a `#` after a blank.
fn comment_start(value: &[u8]) -> Option<usize> {
    value
        .windows(2)
        .position(|w| w[0].is_ascii_whitespace() && w[1] == b'#')
}

/// Parses a JSON object of name to string.
fn json(text: &[u8]) -> Result<Vec<Entry>, String> {
    // Zeroizing strings: serde_json hands each value over once, into a buffer wiped on
    // drop.
    let parsed: serde_json::Map<String, serde_json::Value> = match serde_json::from_slice(text) {
        Ok(serde_json::Value::Object(map)) => map,
        Ok(_) => {
            return Err(
                "expected a JSON object of secret name to string value; nothing was sent".into(),
            );
        }
        // serde_json's messages give a line and column, never the text.
        Err(e) => {
            return Err(format!(
                "not JSON (line {}, column {}); nothing was sent",
                e.line(),
                e.column()
            ));
        }
    };
    let mut entries = Vec::with_capacity(parsed.len());
    for (name, value) in parsed {
        // A JSON key can only be a name, never part of a value: it may be shown.
        let at = format!("key \"{}\"", output::printable(&name));
        let serde_json::Value::String(value) = value else {
            return Err(format!(
                "{at}: the value must be a string; nothing was sent"
            ));
        };
        entries.push(Entry {
            name,
            value: Zeroizing::new(value.into_bytes()),
            at,
        });
    }
    Ok(entries)
}

/// Reads a directory of files, one per secret, byte for byte. Only regular files; names
/// must be secret names. The outer error is reading's, the inner one the content's.
///
/// Whoever else can change the directory could swap a file for a link to one only we can
/// read (deploy runs as root) between the listing and the read, and so import it as a
/// secret: the directory must be changeable by nobody but us and root, and each file is
/// opened through the directory's descriptor without following links, then checked on
/// the descriptor (a FIFO swapped in must not block us either).
fn directory(dir: &Path) -> Result<Result<Vec<Entry>, String>, CliError> {
    use rustix::fs::{Mode, OFlags};
    let read = |source: std::io::Error| CliError::Read {
        what: format!("the directory {}", dir.display()),
        source,
    };
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| read(e.into()))?;
    let meta = rustix::fs::fstat(&fd).map_err(|e| read(e.into()))?;
    let me = rustix::process::geteuid().as_raw();
    if (meta.st_uid != me && meta.st_uid != 0) || meta.st_mode & 0o022 != 0 {
        return Ok(Err(format!(
            "others can change this directory (owner uid {}, mode {:o}), so a file in it could \
             be swapped for another between listing and reading; import from a directory only \
             you (uid {me}) or root can write; nothing was sent",
            meta.st_uid,
            meta.st_mode & 0o7777
        )));
    }
    let mut names = Vec::new();
    let listing = rustix::fs::Dir::read_from(&fd).map_err(|e| read(e.into()))?;
    for entry in listing {
        let entry = entry.map_err(|e| read(e.into()))?;
        let raw = entry.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let Some(name) = std::str::from_utf8(raw)
            .ok()
            .filter(|n| model::is_valid_name(n))
        else {
            return Ok(Err(format!(
                "{}: a file whose name is not a secret name (1 to 128 of A-Z a-z 0-9 . _ -); \
                 nothing was sent",
                output::printable(&String::from_utf8_lossy(raw))
            )));
        };
        names.push(name.to_string());
    }
    names.sort();
    let mut entries = Vec::with_capacity(names.len());
    for name in names {
        let file = match rustix::fs::openat(
            &fd,
            name.as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(file) => file,
            Err(rustix::io::Errno::LOOP) => {
                return Ok(Err(format!(
                    "{name}: a symbolic link, not a regular file; nothing was sent"
                )));
            }
            Err(e) => return Err(read(e.into())),
        };
        let stat = rustix::fs::fstat(&file).map_err(|e| read(e.into()))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Ok(Err(format!("{name}: not a regular file; nothing was sent")));
        }
        if stat.st_size > model::MAX_VALUE_LEN as i64 {
            return Ok(Err(format!(
                "{name}: larger than 1 MiB, the most a value holds; nothing was sent"
            )));
        }
        let value = super::read_limited(
            std::fs::File::from(file),
            &format!("{}", dir.join(&name).display()),
            "a secret's file",
        )?;
        entries.push(Entry {
            at: format!("file {name}"),
            name,
            value,
        });
    }
    Ok(Ok(entries))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(entries: Vec<Entry>) -> Vec<(String, String, String)> {
        entries
            .into_iter()
            .map(|e| (e.name, String::from_utf8_lossy(&e.value).into_owned(), e.at))
            .collect()
    }

    fn t(name: &str, value: &str, at: &str) -> (String, String, String) {
        (name.into(), value.into(), at.into())
    }

    #[test]
    fn dotenv_files() {
        let text = b"# the app's secrets\n\
            \n\
            DATABASE_URL=postgres://app:pw@db/app\n\
            export API_KEY = k1  # rotate me\n\
            EMPTY=\n\
            SINGLE='a\\b #not a comment'\n\
            DOUBLE=\"a\\tb\\nc \\\"q\\\"\"\n\
            PEM=\"-----BEGIN\n\
            body\n\
            -----END\"\n\
            AFTER=x\r\n\
            HASH=a#b\n";
        assert_eq!(
            pairs(dotenv(text).unwrap()),
            [
                t("DATABASE_URL", "postgres://app:pw@db/app", "line 3"),
                t("API_KEY", "k1", "line 4"),
                t("EMPTY", "", "line 5"),
                // Single quotes are byte for byte: a backslash is a backslash.
                t("SINGLE", "a\\b #not a comment", "line 6"),
                t("DOUBLE", "a\tb\nc \"q\"", "line 7"),
                t("PEM", "-----BEGIN\nbody\n-----END", "line 8"),
                t("AFTER", "x", "line 11"),
                t("HASH", "a#b", "line 12"),
            ]
        );
    }

    #[test]
    fn dotenv_values_and_positions() {
        let ok = b"A=1\nexport B = two words  # note\nC='x # y'\nD=\"l1\nl2\"\nE=e\n";
        assert_eq!(
            pairs(dotenv(ok).unwrap()),
            [
                t("A", "1", "line 1"),
                t("B", "two words", "line 2"),
                t("C", "x # y", "line 3"),
                t("D", "l1\nl2", "line 4"),
                t("E", "e", "line 6"),
            ]
        );
        let e = dotenv(b"A=1\nhunter2\n").err().unwrap();
        assert_eq!(e, "line 2: expected NAME=VALUE; nothing was sent");
        let e = dotenv(b"A='never closed\n").err().unwrap();
        assert_eq!(e, "line 1: the quote is never closed; nothing was sent");
        let e = dotenv(b"A='x'y\n").err().unwrap();
        assert_eq!(e, "line 1: text after the closing quote; nothing was sent");
        // A wrapped value is refused, not taken for a name.
        let e = dotenv(b"API_KEY=aGVsbG8gd29ybGQgdGhp\ncyBpcyBhIHNlY3JldA==\n")
            .err()
            .unwrap();
        assert_eq!(
            e,
            "line 2: the value starts with '=' (a value that spans lines must be quoted); \
             nothing was sent"
        );
        let e = dotenv(b"db.password=x\n").err().unwrap();
        assert!(e.starts_with("line 1: not a variable name"), "{e}");
        // Many short quoted values reserve no more than they hold.
        let many = "A=''\n".repeat(20_000);
        let err = dotenv(many.as_bytes()).err();
        assert!(err.is_none());
        // No value ever in an error.
        for bad in [
            &b"secretvalue\n"[..],
            b"K='secretvalue\n",
            b"K='a'secretvalue\n",
        ] {
            let e = dotenv(bad).err().unwrap();
            assert!(!e.contains("secretvalue"), "{e}");
        }
    }

    #[test]
    fn json_objects() {
        let got = json(br#"{"db": "p\"w", "api_key": "k"}"#).unwrap();
        assert_eq!(
            pairs(got),
            [
                t("api_key", "k", "key \"api_key\""),
                t("db", "p\"w", "key \"db\"")
            ]
        );
        let e = json(br#"["not", "an object"]"#).err().unwrap();
        assert!(e.starts_with("expected a JSON object"), "{e}");
        let e = json(br#"{"a": 5}"#).err().unwrap();
        assert_eq!(e, "key \"a\": the value must be a string; nothing was sent");
        let e = json(b"{\"a\": \"secretvalue").err().unwrap();
        assert!(e.starts_with("not JSON (line 1"), "{e}");
        assert!(!e.contains("secretvalue"), "{e}");
    }

    #[test]
    fn directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), b"\x00\xff").unwrap();
        std::fs::write(dir.path().join("a.pem"), b"-----BEGIN\n").unwrap();
        let got = directory(dir.path()).unwrap().unwrap();
        assert_eq!(got[0].name, "a.pem");
        assert_eq!(*got[1].value, b"\x00\xff");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let e = directory(dir.path()).unwrap().err().unwrap();
        assert_eq!(e, "sub: not a regular file; nothing was sent");
        std::fs::remove_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("bad name"), b"x").unwrap();
        let e = directory(dir.path()).unwrap().err().unwrap();
        assert!(e.contains("not a secret name"), "{e}");
        std::fs::remove_file(dir.path().join("bad name")).unwrap();
        // A link is never followed, even to a regular file.
        std::os::unix::fs::symlink(dir.path().join("b"), dir.path().join("link")).unwrap();
        let e = directory(dir.path()).unwrap().err().unwrap();
        assert_eq!(
            e,
            "link: a symbolic link, not a regular file; nothing was sent"
        );
        std::fs::remove_file(dir.path().join("link")).unwrap();
        // A directory others can change is refused.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = directory(dir.path()).unwrap().err().unwrap();
        assert!(e.starts_with("others can change this directory"), "{e}");
    }
}
