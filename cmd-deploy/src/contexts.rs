//! Named servers: `deploy context add NAME --addr ADDR [--ca F] [--cert F --key F |
//! --token-file F]` saves where a server is and how deploy proves itself to it, and
//! `deploy --context NAME ...` (or `$SRV_SECRETS_CONTEXT`) uses it ([`choose`]).
//!
//! The contexts live in one TOML file of the user's, [`contexts_file`]: the address, and
//! the paths (absolute) of the CA, the client certificate and key, or the token file.
//! Never a token: a token stays in its own file, read at each use as `--token-file`
//! reads it. The file is the user's alone, as a token file is: made mode 0600 in a
//! directory made 0700, written whole to a temporary file, synced and renamed over the
//! old one (under a lock, so that two deploys do not lose each other's change), and
//! refused, with what to do, if it is open to group or others, or belongs to someone
//! else: whoever can change it can point deploy at a server of theirs.
//!
//! What decides the server, first to last: the flags `--addr`, `--ca`, `--cert` with
//! `--key`, `--token-file`; then `--context NAME`; then `$SRV_SECRETS_CONTEXT`; then
//! `$SRV_SECRETS_ADDR`; then the default socket. Flags given beside a context replace its
//! fields one by one: `--addr` its address, `--ca` its CA, and `--cert` with `--key`, or
//! `--token-file`, its identity (a certificate replaces its token, a token its
//! certificate). The environment names a default server: with `--addr`, and no
//! `--context`, neither `$SRV_SECRETS_CONTEXT` nor `$SRV_SECRETS_ADDR` is read.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::connect::{self, Addr, Env, TlsFlags};
use crate::error::CliError;

/// The environment variable that names the context to use when neither `--context` nor
/// `--addr` is given.
pub const CONTEXT_VAR: &str = "SRV_SECRETS_CONTEXT";

/// The most bytes the contexts file may hold: a context is a few hundred.
const MAX_FILE: u64 = 1 << 20;

/// One named server, as the file keeps it. Every path is absolute; a token is only ever
/// named by its file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// The address, as `--addr` takes it (`tls:HOST:PORT`, `unix:PATH`, `tcp:...`).
    pub addr: String,
    /// `--ca`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// `--cert`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// `--key`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// `--token-file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Context {
    /// Its files, each with the flag it stands for.
    pub fn files(&self) -> impl Iterator<Item = (&'static str, &Path)> {
        [
            ("--ca", &self.ca),
            ("--cert", &self.cert),
            ("--key", &self.key),
            ("--token-file", &self.token_file),
        ]
        .into_iter()
        .filter_map(|(flag, path)| Some((flag, path.as_deref()?)))
    }
}

/// The file as TOML: `[contexts.NAME]` tables.
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Document {
    #[serde(default)]
    contexts: BTreeMap<String, Context>,
}

/// What the file starts with when deploy writes it.
const HEADER: &str = "\
# deploy's named servers: deploy context add|list|show|remove, deploy --context NAME.
# Paths only: a token stays in its own file (token_file), never here.
";

/// Whether `name` may name a context: a letter or digit, then letters, digits, `.`, `_`
/// or `-`, at most 64 in all.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    (1..=64).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Refuses a name that could not have been saved.
///
/// # Errors
/// [`CliError::Usage`].
pub fn check_name(name: &str) -> Result<(), CliError> {
    if is_valid_name(name) {
        return Ok(());
    }
    Err(CliError::Usage(format!(
        "{:?} is not a context name: a letter or digit, then letters, digits, '.', '_' or \
         '-', at most 64",
        crate::output::printable(name)
    )))
}

/// The contexts file: `$XDG_CONFIG_HOME/srv-secrets/contexts.toml`, else
/// `$HOME/.config/srv-secrets/contexts.toml` (an XDG_CONFIG_HOME that is not absolute is
/// ignored, as the XDG spec says).
///
/// # Errors
/// [`CliError::Context`] when neither variable gives a directory.
pub fn contexts_file(env: &Env) -> Result<PathBuf, CliError> {
    let absolute = |v: &Option<std::ffi::OsString>| {
        v.as_deref()
            .map(Path::new)
            .filter(|p| p.is_absolute())
            .map(Path::to_path_buf)
    };
    let dir = match (absolute(&env.config_home), absolute(&env.home)) {
        (Some(config), _) => config,
        (None, Some(home)) => home.join(".config"),
        (None, None) => {
            return Err(CliError::Context(
                "cannot find your config directory for the contexts file: neither \
                 XDG_CONFIG_HOME nor HOME is set to an absolute path; set one"
                    .into(),
            ));
        }
    };
    Ok(dir.join("srv-secrets/contexts.toml"))
}

/// Refuses a directory others could change the contexts file in: it must be ours (or
/// root's) and writable by no one else.
fn check_dir(dir: &Path, euid: u32) -> Result<(), CliError> {
    let meta = std::fs::metadata(dir)
        .map_err(|e| CliError::Context(format!("cannot use {}: {e}", dir.display())))?;
    if !meta.is_dir() {
        return Err(CliError::Context(format!(
            "{} is not a directory: the contexts file goes in it",
            dir.display()
        )));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(CliError::Context(format!(
            "{} belongs to uid {}, neither this user ({euid}) nor root: whoever owns it can \
             change your contexts; move it aside and let deploy context add make it",
            dir.display(),
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(CliError::Context(format!(
            "{} has mode {mode:o}: group or others can replace the contexts file in it; run \
             `chmod 700 {}`",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// The contexts in `file`; none if it does not exist. Refused if it is not a regular
/// file of ours (or root's) that only we can read, or does not parse.
fn load(file: &Path, euid: u32) -> Result<Document, CliError> {
    let refuse = |why: String| CliError::Context(format!("{}: {why}", file.display()));
    let mut f = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Document::default()),
        Err(e) => return Err(refuse(format!("cannot open it: {e}"))),
    };
    if let Some(dir) = file.parent() {
        check_dir(dir, euid)?;
    }
    // fstat of the file opened: what is checked is what is read.
    let meta = f
        .metadata()
        .map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return Err(refuse(format!(
            "it belongs to uid {}, neither this user ({euid}) nor root: whoever owns it can \
             point deploy at a server of theirs; remove it and add your contexts again",
            meta.uid()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(refuse(format!(
            "it has mode {mode:o}, open to group or others: run `chmod 600 {}`",
            file.display()
        )));
    }
    let mut text = Vec::new();
    Read::by_ref(&mut f)
        .take(MAX_FILE + 1)
        .read_to_end(&mut text)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if text.len() as u64 > MAX_FILE {
        return Err(refuse(
            "it is over 1 MiB, far more than contexts take".into(),
        ));
    }
    let text = std::str::from_utf8(&text)
        .map_err(|_| refuse("it is not UTF-8 text; remove it, or fix it".into()))?;
    let doc: Document = toml::from_str(text).map_err(|e| {
        refuse(format!(
            "it is not a contexts file: {}; fix it, or remove it and add the contexts again",
            e.message()
        ))
    })?;
    for name in doc.contexts.keys() {
        if !is_valid_name(name) {
            return Err(refuse(format!(
                "{:?} is not a context name; fix it or remove that table",
                crate::output::printable(name)
            )));
        }
    }
    Ok(doc)
}

/// The contexts saved: none if there is no file yet.
///
/// # Errors
/// [`CliError::Context`] when the file cannot be trusted or read.
pub fn list(env: &Env) -> Result<(PathBuf, BTreeMap<String, Context>), CliError> {
    let file = contexts_file(env)?;
    let doc = load(&file, env.euid)?;
    Ok((file, doc.contexts))
}

/// The context `name`, or an error that lists the ones there are; `given` is how the
/// name was given (`--context prod`, `SRV_SECRETS_CONTEXT=prod`, `prod`).
///
/// # Errors
/// [`CliError::Usage`] for a name that is not there; [`CliError::Context`] when the file
/// cannot be used.
pub fn find(env: &Env, name: &str, given: &str) -> Result<Context, CliError> {
    let (file, mut contexts) = list(env)?;
    contexts
        .remove(name)
        .ok_or_else(|| unknown(given, name, &file, &contexts))
}

fn unknown(given: &str, name: &str, file: &Path, contexts: &BTreeMap<String, Context>) -> CliError {
    let given = crate::output::printable(given);
    if contexts.is_empty() {
        let name = if is_valid_name(name) { name } else { "NAME" };
        return CliError::Usage(format!(
            "{given}: there are no contexts yet ({} has none); add one with: deploy context \
             add {name} --addr ADDR ...",
            file.display()
        ));
    }
    let known: Vec<&str> = contexts.keys().map(String::as_str).collect();
    CliError::Usage(format!(
        "{given}: no such context; the contexts are {} (deploy context list shows them)",
        known.join(", ")
    ))
}

/// Changes the contexts under a lock: reads the file (none yet is an empty one), lets
/// `change` edit them, and writes the file whole, atomically, mode 0600 (the directory
/// made 0700 if it is not there). Nothing is written if `change` fails.
fn update<T>(
    env: &Env,
    change: impl FnOnce(&Path, &mut BTreeMap<String, Context>) -> Result<T, CliError>,
) -> Result<(PathBuf, T), CliError> {
    let file = contexts_file(env)?;
    let dir = file
        .parent()
        .ok_or_else(|| CliError::Context(format!("{} has no directory", file.display())))?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| CliError::Context(format!("cannot make {}: {e}", dir.display())))?;
    check_dir(dir, env.euid)?;
    let lock = std::fs::File::open(dir)
        .map_err(|e| CliError::Context(format!("cannot open {}: {e}", dir.display())))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| CliError::Context(format!("cannot lock {}: {e}", dir.display())))?;
    let mut doc = load(&file, env.euid)?;
    let result = change(&file, &mut doc.contexts)?;
    let mut text = HEADER.to_string();
    let body = toml::to_string(&doc)
        .map_err(|e| CliError::Unexpected(format!("cannot write the contexts as TOML: {e}")))?;
    text.push_str(&body);
    write_atomically(&file, dir, &lock, text.as_bytes())?;
    Ok((file, result))
}

/// Writes `bytes` to a new file beside `file`, mode 0600, syncs it, renames it over
/// `file` and syncs the directory (`dir_handle`), so that `file` is the old contents or
/// the new, whole, even across a crash.
fn write_atomically(
    file: &Path,
    dir: &Path,
    dir_handle: &std::fs::File,
    bytes: &[u8],
) -> Result<(), CliError> {
    let failed = |what: &str, e: std::io::Error| {
        CliError::Context(format!(
            "cannot write {}: {what}: {e}; it is as it was",
            file.display()
        ))
    };
    let temp = dir.join(format!(".contexts.toml.{}.tmp", std::process::id()));
    // One of ours left by a deploy that died with our pid (we hold the lock).
    let _ = std::fs::remove_file(&temp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .map_err(|e| failed("making a temporary file beside it", e))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| failed("writing the temporary file", e))
        .and_then(|()| {
            std::fs::rename(&temp, file).map_err(|e| failed("renaming it into place", e))
        });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(e);
    }
    dir_handle
        .sync_all()
        .map_err(|e| failed("syncing its directory", e))
}

/// Saves `context` as `name`; one of that name is replaced only with `replace`. Returns
/// the file written.
///
/// # Errors
/// [`CliError::Usage`] for a name taken (without `replace`); [`CliError::Context`] when
/// the file cannot be used or written.
pub fn save(env: &Env, name: &str, context: Context, replace: bool) -> Result<PathBuf, CliError> {
    check_name(name)?;
    let (file, ()) = update(env, |_, contexts| {
        if let Some(old) = contexts.get(name)
            && !replace
        {
            return Err(CliError::Usage(format!(
                "there is a context {name} already ({}); give --force to replace it, or \
                 remove it first with: deploy context remove {name}",
                old.addr
            )));
        }
        contexts.insert(name.to_string(), context);
        Ok(())
    })?;
    Ok(file)
}

/// Removes the context `name`. Returns the file written.
///
/// # Errors
/// As [`find`] for a name that is not there; [`CliError::Context`] when the file cannot
/// be used or written.
pub fn remove(env: &Env, name: &str) -> Result<PathBuf, CliError> {
    let (file, ()) = update(env, |file, contexts| match contexts.remove(name) {
        Some(_) => Ok(()),
        None => Err(unknown(&format!("context {name}"), name, file, contexts)),
    })?;
    Ok(file)
}

/// The server flags as the command line gave them.
#[derive(Clone, Debug, Default)]
pub struct Flags {
    /// `--addr`.
    pub addr: Option<String>,
    /// `--ca`, `--cert`, `--key`.
    pub tls: TlsFlags,
    /// `--token-file`.
    pub token_file: Option<PathBuf>,
    /// `--context`.
    pub context: Option<String>,
}

impl Flags {
    /// Whether any of `--addr`, `--ca`, `--cert`, `--key`, `--token-file` or `--context`
    /// was given.
    pub fn any(&self) -> bool {
        self.addr.is_some()
            || self.tls.ca.is_some()
            || self.tls.cert.is_some()
            || self.tls.key.is_some()
            || self.token_file.is_some()
            || self.context.is_some()
    }
}

/// Where deploy connects and with what, once the flags, a context and the environment
/// are weighed ([`choose`]).
#[derive(Clone, Debug)]
pub struct Chosen {
    /// The server's address.
    pub addr: Addr,
    /// `--ca`, `--cert`, `--key` for a TLS address.
    pub tls: Option<tls::ClientFiles>,
    /// The token's file, not read yet.
    pub token_file: Option<PathBuf>,
}

/// The server to use: see the module's documentation for the order. A context's address
/// and flags are checked as `--addr` and the flags are, and each file it names (and the
/// flags given do not replace) must still be there.
///
/// # Errors
/// [`CliError::Usage`] for an address or a combination of flags that does not go
/// together, or a context that is not there (the known ones listed);
/// [`CliError::Context`] for a contexts file that cannot be used, or a context's file
/// that no longer exists (which one).
pub fn choose(flags: &Flags, env: &Env) -> Result<Chosen, CliError> {
    let var = env.context.as_deref().filter(|v| !v.is_empty());
    let named = match (&flags.context, &flags.addr, var) {
        (Some(name), _, _) => Some((name.clone(), format!("--context {name}"))),
        (None, None, Some(var)) => {
            let name = var.to_string_lossy().into_owned();
            let given = format!("{CONTEXT_VAR}={name}");
            Some((name, given))
        }
        _ => None,
    };
    let Some((name, given)) = named else {
        let addr = connect::resolve(flags.addr.as_deref(), env)?;
        return checked(addr, flags.tls.clone(), flags.token_file.clone());
    };
    let context = find(env, &name, &given)?;
    let addr = match &flags.addr {
        Some(addr) => connect::resolve(Some(addr), env)?,
        None => connect::parse(
            OsStr::new(&context.addr),
            &format!("context {name}'s addr in {}", contexts_file(env)?.display()),
        )?,
    };
    let mut from_context = Vec::new();
    let ca = match &flags.tls.ca {
        Some(ca) => Some(ca.clone()),
        None => {
            from_context.extend(context.ca.as_deref().map(|p| ("--ca", p)));
            context.ca.clone()
        }
    };
    let given_identity =
        flags.tls.cert.is_some() || flags.tls.key.is_some() || flags.token_file.is_some();
    let (cert, key, token_file) = if given_identity {
        (
            flags.tls.cert.clone(),
            flags.tls.key.clone(),
            flags.token_file.clone(),
        )
    } else {
        for (flag, path) in [
            ("--cert", &context.cert),
            ("--key", &context.key),
            ("--token-file", &context.token_file),
        ] {
            from_context.extend(path.as_deref().map(|p| (flag, p)));
        }
        (
            context.cert.clone(),
            context.key.clone(),
            context.token_file.clone(),
        )
    };
    for (flag, path) in from_context {
        if let Err(e) = std::fs::metadata(path) {
            let state = if e.kind() == std::io::ErrorKind::NotFound {
                "no longer exists".to_string()
            } else {
                format!("cannot be read ({e})")
            };
            return Err(CliError::Context(format!(
                "context {name}: its {flag} file {} {state}; put it back, give {flag} FILE \
                 on the command line, or save the context again with: deploy context add \
                 {name} --force --addr ADDR ...",
                path.display()
            )));
        }
    }
    let tls = TlsFlags { ca, cert, key };
    checked(addr, tls, token_file).map_err(|e| match e {
        CliError::Usage(text) => CliError::Usage(format!(
            "{text} (with {given}: the flags given replace the context's fields one by one; \
             see deploy context show {name})"
        )),
        other => other,
    })
}

/// The address with the flags that go with it, checked as `--addr` checks them.
fn checked(addr: Addr, tls: TlsFlags, token_file: Option<PathBuf>) -> Result<Chosen, CliError> {
    let files = connect::tls_files(&addr, &tls)?;
    let certified = files.as_ref().is_some_and(|f| f.identity.is_some());
    connect::check_token_file(&addr, token_file.as_deref(), certified)?;
    Ok(Chosen {
        addr,
        tls: files,
        token_file,
    })
}

/// A context made of `flags` for `deploy context add`: the address and flag combination
/// checked as they are for `--addr`, every path made absolute, the TLS files read as a
/// connection would read them and the token file checked as `--token-file` is (and
/// dropped: only its path is kept).
///
/// # Errors
/// [`CliError::Usage`] for a missing `--addr`, a bad address or combination, a token
/// given where its file belongs; [`CliError::Tls`]-like [`CliError::Context`] for TLS
/// files that do not load; [`CliError::TokenFile`] for a token file deploy would refuse.
pub fn from_flags(name: &str, flags: &Flags, env: &Env) -> Result<Context, CliError> {
    if flags.context.is_some() {
        return Err(CliError::Usage(format!(
            "deploy context add takes no --context: it saves context {name} from --addr and \
             the flags given"
        )));
    }
    let Some(addr_text) = &flags.addr else {
        return Err(CliError::Usage(format!(
            "deploy context add {name} needs --addr ADDR: tls:HOST:PORT (with --ca, and \
             --cert and --key or --token-file), unix:PATH, or tcp:HOST:PORT on loopback \
             (with --token-file)"
        )));
    };
    if let Some(file) = &flags.token_file {
        connect::refuse_a_token_for_its_file(file)?;
    }
    let absolute = |p: &Path| {
        std::path::absolute(p)
            .map_err(|e| CliError::Context(format!("cannot make {} absolute: {e}", p.display())))
    };
    let addr = match connect::resolve(Some(addr_text), env)? {
        Addr::Unix { path } => Addr::Unix {
            path: absolute(&path)?,
        },
        other => other,
    };
    let abs = |p: &Option<PathBuf>| p.as_deref().map(absolute).transpose();
    let tls = TlsFlags {
        ca: abs(&flags.tls.ca)?,
        cert: abs(&flags.tls.cert)?,
        key: abs(&flags.tls.key)?,
    };
    let token_file = abs(&flags.token_file)?;
    let chosen = checked(addr, tls.clone(), token_file.clone())?;
    if let Some(files) = &chosen.tls {
        tls::client_config(files).map_err(|problem| {
            CliError::Context(format!(
                "context {name} was not saved: {problem}; deploy would refuse it at every use"
            ))
        })?;
    }
    if let Some(file) = &token_file {
        drop(connect::Token::read(file, env.euid)?);
    }
    let addr = match &chosen.addr {
        Addr::Unix { path } => {
            let mut text = b"unix:".to_vec();
            text.extend_from_slice(path.as_os_str().as_bytes());
            String::from_utf8(text).map_err(|_| not_utf8(name, path))?
        }
        other => other.to_string(),
    };
    let context = Context {
        addr,
        ca: tls.ca,
        cert: tls.cert,
        key: tls.key,
        token_file,
    };
    for (_, path) in context.files() {
        if path.to_str().is_none() {
            return Err(not_utf8(name, path));
        }
    }
    Ok(context)
}

fn not_utf8(name: &str, path: &Path) -> CliError {
    CliError::Usage(format!(
        "context {name} was not saved: {} is not UTF-8, and the contexts file is text; \
         rename it, or use it with the flags alone",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::os::unix::fs::PermissionsExt;

    use super::*;

    struct Home {
        dir: tempfile::TempDir,
        env: Env,
    }

    fn home() -> Home {
        let dir = tempfile::tempdir().unwrap();
        let env = Env {
            config_home: Some(dir.path().join("config").into()),
            euid: rustix::process::geteuid().as_raw(),
            user: "glenda".into(),
            ..Env::default()
        };
        Home { dir, env }
    }

    fn unix(path: &str) -> Context {
        Context {
            addr: format!("unix:{path}"),
            ..Context::default()
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn the_file_is_under_xdg_config_home_else_home() {
        let env = Env {
            config_home: Some("/c".into()),
            home: Some("/h".into()),
            ..Env::default()
        };
        assert_eq!(
            contexts_file(&env).unwrap(),
            Path::new("/c/srv-secrets/contexts.toml")
        );
        // Not absolute: ignored, as the XDG spec says.
        let env = Env {
            config_home: Some("rel".into()),
            home: Some("/h".into()),
            ..Env::default()
        };
        assert_eq!(
            contexts_file(&env).unwrap(),
            Path::new("/h/.config/srv-secrets/contexts.toml")
        );
        let e = contexts_file(&Env::default()).unwrap_err().to_string();
        assert!(e.contains("neither XDG_CONFIG_HOME nor HOME"), "{e}");
    }

    #[test]
    fn saved_private_atomically_and_read_back() {
        let h = home();
        let file = save(&h.env, "prod", unix("/run/a.sock"), false).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.starts_with("# deploy's named servers"), "{text}");
        assert!(text.contains("[contexts.prod]"), "{text}");
        save(&h.env, "a.b-c_1", unix("/run/b.sock"), false).unwrap();
        let (_, all) = list(&h.env).unwrap();
        assert_eq!(all.keys().collect::<Vec<_>>(), ["a.b-c_1", "prod"]);
        assert_eq!(all["prod"], unix("/run/a.sock"));
        // No temporary file is left beside it.
        let names: Vec<_> = std::fs::read_dir(file.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["contexts.toml"]);
        // A name taken is replaced only with --force.
        let e = save(&h.env, "prod", unix("/run/c.sock"), false).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(e.to_string().contains("give --force to replace it"), "{e}");
        assert_eq!(find(&h.env, "prod", "prod").unwrap(), unix("/run/a.sock"));
        save(&h.env, "prod", unix("/run/c.sock"), true).unwrap();
        assert_eq!(find(&h.env, "prod", "prod").unwrap(), unix("/run/c.sock"));
        remove(&h.env, "prod").unwrap();
        let e = find(&h.env, "prod", "--context prod").unwrap_err();
        assert_eq!(
            e.to_string(),
            "--context prod: no such context; the contexts are a.b-c_1 (deploy context list \
             shows them)"
        );
        assert!(remove(&h.env, "prod").is_err());
        drop(h.dir);
    }

    #[test]
    fn no_file_is_no_contexts() {
        let h = home();
        assert!(list(&h.env).unwrap().1.is_empty());
        let e = find(&h.env, "prod", "SRV_SECRETS_CONTEXT=prod").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string()
                .starts_with("SRV_SECRETS_CONTEXT=prod: there are no contexts yet ("),
            "{e}"
        );
        assert!(
            e.to_string()
                .ends_with("has none); add one with: deploy context add prod --addr ADDR ..."),
            "{e}"
        );
        assert!(save(&h.env, "-x", unix("/s"), false).is_err());
        assert!(save(&h.env, "", unix("/s"), false).is_err());
        assert!(save(&h.env, "a/b", unix("/s"), false).is_err());
    }

    #[test]
    fn a_file_or_directory_others_could_change_is_refused_with_what_to_do() {
        let h = home();
        let file = save(&h.env, "prod", unix("/s"), false).unwrap();
        for bad in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(bad)).unwrap();
            let e = list(&h.env).unwrap_err().to_string();
            assert!(
                e.contains(&format!("it has mode {bad:o}, open to group or others")),
                "{e}"
            );
            assert!(e.contains("chmod 600"), "{e}");
            // Nor is it written over.
            assert!(save(&h.env, "other", unix("/s"), false).is_err());
        }
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(list(&h.env).unwrap().1.len(), 1);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let dir = file.parent().unwrap();
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = list(&h.env).unwrap_err().to_string();
        assert!(e.contains("has mode 770") && e.contains("chmod 700"), "{e}");
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(list(&h.env).is_ok());
        // Another user's file (root's is not: root can change any).
        if h.env.euid != 0 {
            let other = Env {
                euid: h.env.euid + 1,
                ..h.env.clone()
            };
            let e = list(&other).unwrap_err().to_string();
            assert!(e.contains("neither this user"), "{e}");
        } else {
            rustix::fs::chown(&file, Some(rustix::process::Uid::from_raw(1234)), None).unwrap();
            let e = list(&h.env).unwrap_err().to_string();
            assert!(e.contains("belongs to uid 1234, neither this user"), "{e}");
        }
    }

    #[test]
    fn a_file_that_does_not_parse_says_where_and_is_not_overwritten() {
        let h = home();
        let file = save(&h.env, "prod", unix("/s"), false).unwrap();
        std::fs::write(
            &file,
            "[contexts.prod]\naddr = \"unix:/s\"\ntoken = \"x\"\n",
        )
        .unwrap();
        let e = list(&h.env).unwrap_err().to_string();
        assert!(
            e.contains("it is not a contexts file: unknown field `token`"),
            "{e}"
        );
        assert!(save(&h.env, "other", unix("/s"), false).is_err());
        assert!(std::fs::read_to_string(&file).unwrap().contains("token = "));
    }

    fn flags(addr: &str) -> Flags {
        Flags {
            addr: Some(addr.into()),
            ..Flags::default()
        }
    }

    #[test]
    fn the_flags_then_the_context_then_the_environment() {
        let h = home();
        save(&h.env, "a", unix("/run/a.sock"), false).unwrap();
        save(&h.env, "b", unix("/run/b.sock"), false).unwrap();
        let env = Env {
            context: Some("b".into()),
            addr: Some("unix:/from/addr-var".into()),
            ..h.env.clone()
        };
        let addr = |f: &Flags, env: &Env| choose(f, env).unwrap().addr.to_string();
        let context = |name: &str| Flags {
            context: Some(name.into()),
            ..Flags::default()
        };
        // SRV_SECRETS_CONTEXT before SRV_SECRETS_ADDR; --context before both.
        assert_eq!(addr(&Flags::default(), &env), "unix:/run/b.sock");
        assert_eq!(addr(&context("a"), &env), "unix:/run/a.sock");
        // --addr beside --context replaces its address; without --context, --addr is
        // the server and the environment is not read.
        let both = Flags {
            context: Some("a".into()),
            ..flags("/flag.sock")
        };
        assert_eq!(addr(&both, &env), "unix:/flag.sock");
        assert_eq!(addr(&flags("/flag.sock"), &env), "unix:/flag.sock");
        // SRV_SECRETS_ADDR when no context is named.
        let no_context = Env {
            context: None,
            ..env.clone()
        };
        assert_eq!(addr(&Flags::default(), &no_context), "unix:/from/addr-var");
        let empty = Env {
            context: Some("".into()),
            ..no_context
        };
        assert_eq!(addr(&Flags::default(), &empty), "unix:/from/addr-var");
        // An unknown context, by flag or variable, lists the known ones.
        let e = choose(&context("c"), &env).unwrap_err().to_string();
        assert!(
            e.starts_with("--context c: no such context; the contexts are a, b"),
            "{e}"
        );
        let wrong = Env {
            context: Some("c".into()),
            ..env
        };
        let e = choose(&Flags::default(), &wrong).unwrap_err().to_string();
        assert!(
            e.starts_with("SRV_SECRETS_CONTEXT=c: no such context"),
            "{e}"
        );
    }

    /// A TLS context with a CA, and with a certificate or a token file, in files that
    /// exist.
    fn tls_context(h: &Home, identity: &str) -> Context {
        let touch = |name: &str| {
            let p = h.dir.path().join(name);
            std::fs::write(&p, "x").unwrap();
            Some(p)
        };
        let mut c = Context {
            addr: "tls:secrets.example:5640".into(),
            ca: touch("ca.crt"),
            ..Context::default()
        };
        match identity {
            "cert" => {
                c.cert = touch("admin.crt");
                c.key = touch("admin.key");
            }
            _ => c.token_file = touch("admin.token"),
        }
        c
    }

    #[test]
    fn flags_beside_a_context_replace_its_fields_one_by_one() {
        let h = home();
        let cert = tls_context(&h, "cert");
        save(&h.env, "prod", cert.clone(), false).unwrap();
        save(&h.env, "tok", tls_context(&h, "token"), false).unwrap();
        let named = |name: &str, more: Flags| Flags {
            context: Some(name.into()),
            ..more
        };
        let c = choose(&named("prod", Flags::default()), &h.env).unwrap();
        assert_eq!(c.addr.to_string(), "tls:secrets.example:5640");
        let files = c.tls.unwrap();
        assert_eq!(files.ca, cert.ca.clone().unwrap());
        assert_eq!(
            files.identity,
            Some((cert.cert.clone().unwrap(), cert.key.clone().unwrap()))
        );
        assert!(c.token_file.is_none());
        // --ca replaces the CA only.
        let other_ca = Flags {
            tls: TlsFlags {
                ca: Some("/other/ca.crt".into()),
                ..TlsFlags::default()
            },
            ..Flags::default()
        };
        let c = choose(&named("prod", other_ca), &h.env).unwrap();
        let files = c.tls.unwrap();
        assert_eq!(files.ca, Path::new("/other/ca.crt"));
        assert!(files.identity.is_some());
        // --token-file replaces the context's certificate, and --cert --key its token.
        let token = Flags {
            token_file: Some("/my/admin.token".into()),
            ..Flags::default()
        };
        let c = choose(&named("prod", token), &h.env).unwrap();
        assert_eq!(c.tls.unwrap().identity, None);
        assert_eq!(c.token_file.unwrap(), Path::new("/my/admin.token"));
        let certificate = Flags {
            tls: TlsFlags {
                cert: Some("/my/web.crt".into()),
                key: Some("/my/web.key".into()),
                ..TlsFlags::default()
            },
            ..Flags::default()
        };
        let c = choose(&named("tok", certificate), &h.env).unwrap();
        assert_eq!(
            c.tls.unwrap().identity,
            Some(("/my/web.crt".into(), "/my/web.key".into()))
        );
        assert!(c.token_file.is_none());
        // A combination that does not go together says so, and with which context.
        let half = Flags {
            tls: TlsFlags {
                cert: Some("/my/web.crt".into()),
                ..TlsFlags::default()
            },
            ..Flags::default()
        };
        let e = choose(&named("tok", half), &h.env).unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(
            e.to_string().starts_with("--cert needs --key")
                && e.to_string()
                    .contains("(with --context tok: the flags given replace"),
            "{e}"
        );
        let unix = Flags {
            context: Some("prod".into()),
            ..flags("/run/s.sock")
        };
        let e = choose(&unix, &h.env).unwrap_err().to_string();
        assert!(
            e.contains("--ca, --cert and --key are for --addr tls:"),
            "{e}"
        );
    }

    #[test]
    fn a_context_whose_files_are_gone_says_which() {
        let h = home();
        let c = tls_context(&h, "cert");
        save(&h.env, "prod", c.clone(), false).unwrap();
        std::fs::remove_file(c.key.as_ref().unwrap()).unwrap();
        let named = Flags {
            context: Some("prod".into()),
            ..Flags::default()
        };
        let e = choose(&named, &h.env).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert_eq!(
            e.to_string(),
            format!(
                "context prod: its --key file {} no longer exists; put it back, give --key \
                 FILE on the command line, or save the context again with: deploy context add \
                 prod --force --addr ADDR ...",
                c.key.as_ref().unwrap().display()
            )
        );
        // A file the flags replace is not looked for.
        let replaced = Flags {
            tls: TlsFlags {
                cert: Some("/my/web.crt".into()),
                key: Some("/my/web.key".into()),
                ..TlsFlags::default()
            },
            ..named
        };
        assert!(choose(&replaced, &h.env).is_ok());
    }

    #[test]
    fn add_checks_as_addr_does_and_keeps_absolute_paths_and_no_token() {
        let h = home();
        let f = |addr: &str, more: Flags| Flags {
            addr: Some(addr.into()),
            ..more
        };
        let e = from_flags("x", &Flags::default(), &h.env).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("deploy context add x needs --addr ADDR"),
            "{e}"
        );
        let e = from_flags("x", &f("ssh:host", Flags::default()), &h.env).unwrap_err();
        assert!(e.to_string().starts_with("--addr must be unix:PATH"), "{e}");
        let e = from_flags("x", &f("tls:h:1", Flags::default()), &h.env).unwrap_err();
        assert!(
            e.to_string().starts_with("--addr tls:h:1 needs --ca FILE"),
            "{e}"
        );
        let e = from_flags("x", &f("tcp:127.0.0.1:1", Flags::default()), &h.env).unwrap_err();
        assert!(e.to_string().contains("needs --token-file FILE"), "{e}");
        // A token where its file belongs is refused without being repeated.
        let token = format!("srvtok_0123456789abcdef_{}", "A".repeat(43));
        let given = Flags {
            token_file: Some(token.clone().into()),
            ..Flags::default()
        };
        let e = from_flags("x", &f("tcp:127.0.0.1:1", given), &h.env).unwrap_err();
        assert!(!e.to_string().contains("AAAA"), "{e}");
        assert!(e.to_string().contains("looks like a token"), "{e}");
        // A relative socket path is kept absolute.
        let c = from_flags("x", &f("rel.sock", Flags::default()), &h.env).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(c.addr, format!("unix:{}", cwd.join("rel.sock").display()));
        // A token file is checked as --token-file checks it, and kept by its path only.
        let file = h.dir.path().join("t");
        std::fs::write(&file, format!("{token}\n")).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let given = Flags {
            token_file: Some(file.clone()),
            ..Flags::default()
        };
        let e = from_flags("x", &f("tcp:127.0.0.1:1", given.clone()), &h.env).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let c = from_flags("x", &f("tcp:127.0.0.1:1", given), &h.env).unwrap();
        assert_eq!(c.token_file.as_deref(), Some(file.as_path()));
        let path = save(&h.env, "x", c, false).unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        assert!(!text.contains("srvtok_"), "{text}");
        // TLS files are loaded as a connection would load them.
        let ca = h.dir.path().join("ca.crt");
        std::fs::write(&ca, "not a certificate").unwrap();
        let given = Flags {
            tls: TlsFlags {
                ca: Some(ca),
                ..TlsFlags::default()
            },
            ..Flags::default()
        };
        let e = from_flags("x", &f("tls:h:1", given), &h.env).unwrap_err();
        assert!(
            e.to_string().starts_with("context x was not saved: --ca "),
            "{e}"
        );
    }
}
