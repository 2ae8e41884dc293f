//! [`CliError`]: what went wrong, worded for the operator, each with what to do next.
//!
//! Library errors ([`ClientError`], I/O) are wrapped here with the context deploy knows
//! (which address, which file, which request). Nothing here ever holds a secret value:
//! names are the operator's own arguments, and a ctl error is the server's text, which by
//! the ctl crate's design never echoes input.

use std::io;
use std::time::Duration;

use ninep::client::ClientError;
use thiserror::Error;

use crate::output::{flag_duration, human_size};

/// The exit status for a usage error (clap uses the same).
pub const EXIT_USAGE: u8 = 2;

/// The exit status after Ctrl-C at the prompt (128 + SIGINT, as shells report it).
pub const EXIT_INTERRUPTED: u8 = 130;

/// A failure of one deploy invocation.
#[derive(Debug, Error)]
pub enum CliError {
    /// The server would not attach the admin tree for this user.
    #[error(
        "the server refused this user (uid {uid}): only root and the uid that ran \
         `srv-secrets init` are admin"
    )]
    AttachRefused {
        /// Our effective uid, which the server sees through SO_PEERCRED.
        uid: u32,
    },
    /// A catalog file refused, here or by the server: every declaration at fault, each at
    /// its line (never a value).
    #[error("{}: {reason}", path.display())]
    BadCatalog {
        /// The catalog file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// An import's input was refused before anything was sent.
    #[error("{}: {reason}", path.display())]
    BadImport {
        /// The file or directory imported from.
        path: std::path::PathBuf,
        /// What is wrong, and where (a line, a key, a file): never a value.
        reason: String,
    },
    /// The server refused a manifest.
    #[error(
        "{}: {reason}; the server refused the manifest, nothing was changed",
        path.display()
    )]
    BadManifest {
        /// The manifest file.
        path: std::path::PathBuf,
        /// The server's reason: the manifest's line and what is wrong with it.
        reason: String,
    },
    /// `deploy backup` could not write its file; nothing was left at that path.
    #[error("{0}")]
    BackupFile(String),
    /// Connecting or negotiating the protocol failed.
    #[error("cannot connect to srv-secrets at {addr}: {}", connect_hint(.source))]
    Connect {
        /// The address, as `unix:PATH`.
        addr: String,
        /// What the client reported.
        source: ClientError,
    },
    /// A TLS connection failed, or a file it needs (`--ca`, `--cert`, `--key`) is bad, or
    /// the server took the connection for no one: what, and what to do, in terms of
    /// those flags.
    #[error("cannot connect to srv-secrets at {addr}: {problem}")]
    Tls {
        /// The address, as `tls:HOST:PORT`.
        addr: String,
        /// What is wrong and what to do.
        problem: String,
    },
    /// The contexts file (`deploy context`), or a context in it, cannot be used: what is
    /// wrong and what to do.
    #[error("{0}")]
    Context(String),
    /// The server refused a ctl command; this is its text, verbatim.
    #[error("{0}")]
    Ctl(String),
    /// `deploy mount`, `deploy service run`, `deploy bundle create` or `deploy secret
    /// delegate` could not do its part (mount, namespace, uid, the command, the bundle's
    /// files): the message says what and what to do.
    #[error("{0}")]
    Deployer(String),
    /// `secret set` read an empty value and was not given --allow-empty.
    #[error(
        "the value {from} is empty: refusing to store an empty secret, nothing was changed; \
         pass --allow-empty to store it anyway"
    )]
    EmptyValue {
        /// Where it came from: "typed at the prompt", "from stdin", "in the file X".
        from: String,
    },
    /// Deploys are frozen (`deploy freeze`), and this command deploys something: the
    /// server refused it with [`model::FROZEN`], or deploy did, seeing the freeze in
    /// `secrets/status`.
    #[error("{}", frozen_text(what, mark.as_ref()))]
    Frozen {
        /// The command refused, as typed after `deploy`: `service run`.
        what: &'static str,
        /// Since when, by whom and why, if deploy knows.
        mark: Option<model::Mark>,
    },
    /// Ctrl-C (SIGINT).
    #[error("interrupted")]
    Interrupted,
    /// SIGTERM or SIGHUP: the command stopped and cleaned up, as after Ctrl-C (a bundle's
    /// partial directory is removed).
    #[error("stopped by {name}")]
    Stopped {
        /// The signal's name, `SIGTERM`.
        name: &'static str,
        /// Its number: the exit status is 128 plus it, as shells report a signal.
        number: u8,
    },
    /// Nothing at all was heard from the server for the whole --timeout while a request
    /// waited.
    #[error(
        "no answer from srv-secrets at {addr} within {} while {during}; is the server \
         stuck? see its log, or raise --timeout",
        flag_duration(*.after)
    )]
    NoAnswer {
        /// The address, as `unix:PATH`.
        addr: String,
        /// The timeout.
        after: Duration,
        /// What deploy was doing ("reading secrets/status").
        during: String,
    },
    /// A service's uid ran an admin command; the server said who it is and who the
    /// admin is.
    #[error(
        "this uid ({uid}) is service {service}: admin commands need root{}",
        admin_uid.map_or_else(String::new, |u| format!(" or uid {u}"))
    )]
    NotAdmin {
        /// Our uid, as the server saw it.
        uid: u32,
        /// The service the server maps it to.
        service: String,
        /// The admin uid besides root, if it is not root itself.
        admin_uid: Option<u32>,
    },
    /// `secret get` to a terminal of a value that is not text, without --raw.
    #[error(
        "{name} is not text (it is not UTF-8, or it holds control characters), so it is \
         not printed to the terminal, which could garble or obey it; see it with \
         `deploy secret get {name} --as {service} --raw`, or redirect it to a file or \
         through `od -c`"
    )]
    NotText {
        /// The secret's name.
        name: String,
        /// The service whose view was read.
        service: String,
    },
    /// A service that does not exist.
    #[error(
        "no such service {0}; see `deploy service list`, or add it with \
         `deploy service add {0} --uid UID`"
    )]
    NoSuchService(String),
    /// A service whose view is refused because it is suspended (`deploy service
    /// suspend`).
    #[error(
        "service {service} is suspended{}: every read through its view is refused; resume \
         it with `deploy service resume {service}`",
        since_text(mark)
    )]
    Suspended {
        /// The service.
        service: String,
        /// Since when, by whom and why.
        mark: model::Mark,
    },
    /// Reading the value or a manifest failed.
    #[error("cannot read {what}: {source}")]
    Read {
        /// What was being read ("stdin", "the file /x").
        what: String,
        /// The I/O error.
        source: io::Error,
    },
    /// A 9P request failed for a reason other than those above.
    #[error("{context}: {}", request_hint(.source))]
    Request {
        /// What deploy was doing ("reading secrets/status").
        context: String,
        /// What the client reported.
        source: ClientError,
    },
    /// A secret that a service's view does not show.
    #[error(
        "{service} cannot read a secret {name}: it is not granted to {service}, or it does \
         not exist; grant it with `deploy secret grant {service} {name}`"
    )]
    SecretNotVisible {
        /// The service whose view was used.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// Writing our output failed (a closed pipe is not reported: see [`CliError::is_broken_pipe`]).
    #[error("cannot write to stdout: {0}")]
    Stdout(io::Error),
    /// A value or manifest over the server's limit, caught before sending.
    #[error(
        "{what} is larger than 1 MiB ({limit} bytes), the most the server accepts; \
         nothing was sent",
        limit = model::MAX_VALUE_LEN
    )]
    TooLarge {
        /// "the value" or "the manifest".
        what: &'static str,
    },
    /// The server sent something this deploy does not understand.
    #[error("unexpected answer from the server: {0}; are deploy and srv-secrets the same version?")]
    Unexpected(String),
    /// The socket is served by a user who is not root, not us, and not the one who
    /// controls the path to it: maybe someone posing as srv-secrets.
    #[error(
        "refusing {addr}: it is served by uid {server_uid}, who is neither root nor you \
         (uid {euid}), and others can change the path to it; another user may be posing as \
         srv-secrets to collect what you send. Nothing was sent. Do not trust this socket: \
         see who serves it with `ss -xlp`, and run srv-secrets in a directory that only \
         you or root can write"
    )]
    UntrustedServer {
        /// The address, as `unix:PATH`.
        addr: String,
        /// The uid of the process listening there (SO_PEERCRED).
        server_uid: u32,
        /// Our effective uid.
        euid: u32,
    },
    /// `--token-file` names a file deploy will not take a token from.
    #[error("--token-file {}: {why}", file.display())]
    TokenFile {
        /// The file.
        file: std::path::PathBuf,
        /// What is wrong with it (never a byte of what it holds).
        why: String,
    },
    /// The server refused the token of `--token-file` at attach.
    #[error("the server refused the token in {}: {why}; {hint}", file.display())]
    TokenRefused {
        /// The token's file.
        file: std::path::PathBuf,
        /// Why, as the server said it (never the token).
        why: String,
        /// What to do.
        hint: &'static str,
    },
    /// An argument that is wrong before anything is sent (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// Writing a file of our own (a man page) failed.
    #[error("cannot write {what}: {source}")]
    Write {
        /// What was being written.
        what: String,
        /// The I/O error.
        source: io::Error,
    },
}

/// What a request that timed out carries inside [`ClientError::Io`] (of kind TimedOut):
/// it travels through the code that handles client errors unchanged, until
/// [`CliError::request`] names it with what deploy was doing.
#[derive(Debug, Error)]
#[error("no answer from srv-secrets at {addr} within {}", flag_duration(*.after))]
pub struct NoAnswer {
    /// The address, as `unix:PATH`.
    pub addr: String,
    /// The timeout.
    pub after: Duration,
}

impl NoAnswer {
    /// As a client error.
    pub fn into_client_error(self) -> ClientError {
        ClientError::Io(io::Error::new(io::ErrorKind::TimedOut, self))
    }

    /// The timeout a client error is, if it is one.
    pub fn of(e: &ClientError) -> Option<&NoAnswer> {
        match e {
            ClientError::Io(io) => io.get_ref()?.downcast_ref(),
            _ => None,
        }
    }
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::Interrupted => EXIT_INTERRUPTED,
            CliError::Stopped { number, .. } => 128 + number,
            _ => 1,
        }
    }

    /// Whether this is stdout closed by its reader (`deploy secret list | head -1`), which
    /// is how a pipeline says "enough", not a failure.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Stdout(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    /// Wraps a failed request with what deploy was doing.
    pub fn request(context: impl Into<String>, source: ClientError) -> CliError {
        if let Some(timeout) = NoAnswer::of(&source) {
            return CliError::NoAnswer {
                addr: timeout.addr.clone(),
                after: timeout.after,
                during: context.into(),
            };
        }
        CliError::Request {
            context: context.into(),
            source,
        }
    }

    /// A ctl write or clunk that failed: the server's own text when it answered Rerror.
    pub fn ctl(source: ClientError) -> CliError {
        match source {
            ClientError::Remote(text) => CliError::Ctl(text),
            other => CliError::request("writing secrets/ctl", other),
        }
    }
}

/// ` since T by WHO: WHY` (or ` (no reason given)`).
pub(crate) fn since_text(m: &model::Mark) -> String {
    let why = m
        .reason
        .as_deref()
        .map_or_else(|| " (no reason given)".to_string(), |r| format!(": {r}"));
    let at = crate::output::iso8601(u32::try_from(m.since).unwrap_or(u32::MAX));
    format!(" since {at} by {}{why}", m.by)
}

/// The text of [`CliError::Frozen`].
fn frozen_text(what: &str, mark: Option<&model::Mark>) -> String {
    let since = mark.map(since_text).unwrap_or_default();
    format!(
        "{}: deploys are frozen{since}, so `deploy {what}` is refused and nothing was done; \
         lift the freeze with `deploy unfreeze --reason R` once the incident allows",
        model::FROZEN
    )
}

/// Says what a failed connect means and what to do about it.
fn connect_hint(e: &ClientError) -> String {
    const START: &str = "is the server running? start it with `srv-secrets serve` or pass --addr";
    match e {
        ClientError::Io(io) => match io.kind() {
            io::ErrorKind::ConnectionRefused => format!("connection refused; {START}"),
            io::ErrorKind::NotFound => format!("no such socket; {START}"),
            io::ErrorKind::PermissionDenied => "permission denied on the socket; run deploy as \
                 root or as the user that ran `srv-secrets init`"
                .to_string(),
            _ => format!("{io}; check the address (--addr)"),
        },
        ClientError::Disconnected => {
            "the server closed the connection; is this a srv-secrets socket? see the server's log"
                .to_string()
        }
        ClientError::Remote(text) => format!("the server refused the session: {text}"),
        other => format!("{other}; is this a srv-secrets socket?"),
    }
}

/// A request's failure, with a hint where the cause is known.
fn request_hint(e: &ClientError) -> String {
    match e {
        ClientError::Disconnected => {
            "the server closed the connection; see the server's log".to_string()
        }
        ClientError::Remote(text) if text == ninep::ename::SHUT_DOWN => {
            "the server is shutting down; run the command again once it is back".to_string()
        }
        ClientError::TooLong { limit } => format!(
            "the server sent more than {}, more than srv-secrets ever serves there; is this \
             a srv-secrets socket, and as new as this deploy?",
            human_size(*limit)
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(kind: io::ErrorKind) -> String {
        CliError::Connect {
            addr: "unix:/run/srv-secrets/9p.sock".into(),
            source: ClientError::Io(io::Error::from(kind)),
        }
        .to_string()
    }

    #[test]
    fn connect_errors_say_what_to_do() {
        assert_eq!(
            connect(io::ErrorKind::ConnectionRefused),
            "cannot connect to srv-secrets at unix:/run/srv-secrets/9p.sock: connection \
             refused; is the server running? start it with `srv-secrets serve` or pass --addr"
        );
        assert_eq!(
            connect(io::ErrorKind::NotFound),
            "cannot connect to srv-secrets at unix:/run/srv-secrets/9p.sock: no such socket; \
             is the server running? start it with `srv-secrets serve` or pass --addr"
        );
        assert!(connect(io::ErrorKind::PermissionDenied).ends_with(
            "permission denied on the socket; run deploy as root or as the user that ran \
             `srv-secrets init`"
        ));
        let closed = CliError::Connect {
            addr: "unix:/s".into(),
            source: ClientError::Disconnected,
        };
        assert!(closed.to_string().contains("is this a srv-secrets socket?"));
    }

    #[test]
    fn attach_refused_names_the_uid_and_who_is_admin() {
        assert_eq!(
            CliError::AttachRefused { uid: 1000 }.to_string(),
            "the server refused this user (uid 1000): only root and the uid that ran \
             `srv-secrets init` are admin"
        );
    }

    #[test]
    fn ctl_errors_are_the_servers_text() {
        let text = "ctl: line 1: grant: no such service; add it first with: service NAME uid UID";
        let e = CliError::ctl(ClientError::Remote(text.into()));
        assert_eq!(e.to_string(), text);
        assert_eq!(e.exit_code(), 1);
        let e = CliError::ctl(ClientError::Disconnected);
        assert_eq!(
            e.to_string(),
            "writing secrets/ctl: the server closed the connection; see the server's log"
        );
    }

    #[test]
    fn hints_for_names() {
        assert_eq!(
            CliError::NoSuchService("web".into()).to_string(),
            "no such service web; see `deploy service list`, or add it with \
             `deploy service add web --uid UID`"
        );
        let e = CliError::SecretNotVisible {
            service: "web".into(),
            name: "db".into(),
        };
        assert!(
            e.to_string()
                .ends_with("grant it with `deploy secret grant web db`")
        );
        assert_eq!(
            CliError::TooLarge { what: "the value" }.to_string(),
            "the value is larger than 1 MiB (1048576 bytes), the most the server accepts; \
             nothing was sent"
        );
    }

    #[test]
    fn an_untrusted_server_is_named_and_nothing_is_sent() {
        let e = CliError::UntrustedServer {
            addr: "unix:/tmp/srv-secrets-1002/9p.sock".into(),
            server_uid: 1005,
            euid: 1002,
        };
        let text = e.to_string();
        assert!(
            text.starts_with(
                "refusing unix:/tmp/srv-secrets-1002/9p.sock: it is served by uid 1005, who is \
                 neither root nor you (uid 1002)"
            ),
            "{text}"
        );
        assert!(
            text.contains("Nothing was sent. Do not trust this socket"),
            "{text}"
        );
        assert_eq!(e.exit_code(), 1);
    }

    #[test]
    fn timeouts_say_what_waited_and_what_to_do() {
        let timeout = NoAnswer {
            addr: "unix:/run/srv-secrets/9p.sock".into(),
            after: Duration::from_secs(10),
        };
        let e = CliError::request("reading secrets/status", timeout.into_client_error());
        assert_eq!(
            e.to_string(),
            "no answer from srv-secrets at unix:/run/srv-secrets/9p.sock within 10s while \
             reading secrets/status; is the server stuck? see its log, or raise --timeout"
        );
        assert_eq!(e.exit_code(), 1);
        // Through the ctl path too.
        let timeout = NoAnswer {
            addr: "unix:/s".into(),
            after: Duration::from_millis(500),
        };
        let e = CliError::ctl(timeout.into_client_error());
        assert!(
            e.to_string().starts_with(
                "no answer from srv-secrets at unix:/s within 500ms while writing secrets/ctl;"
            ),
            "{e}"
        );
        // An I/O error that is not ours stays one.
        let other = ClientError::Io(io::ErrorKind::TimedOut.into());
        assert!(NoAnswer::of(&other).is_none());
    }

    #[test]
    fn a_file_longer_than_its_bound_is_named() {
        let e = CliError::request("reading secret/db", ClientError::TooLong { limit: 1 << 20 });
        assert_eq!(
            e.to_string(),
            "reading secret/db: the server sent more than 1 MiB, more than srv-secrets ever \
             serves there; is this a srv-secrets socket, and as new as this deploy?"
        );
    }

    #[test]
    fn a_freeze_says_since_when_by_whom_why_and_how_to_lift_it() {
        let e = CliError::Frozen {
            what: "service run",
            mark: Some(model::Mark {
                since: 1_714_564_800,
                by: "admin (uid 0)".into(),
                reason: Some("INC-42".into()),
            }),
        };
        assert_eq!(
            e.to_string(),
            "frozen (see deploy status): deploys are frozen since 2024-05-01T12:00:00Z by \
             admin (uid 0): INC-42, so `deploy service run` is refused and nothing was done; \
             lift the freeze with `deploy unfreeze --reason R` once the incident allows"
        );
        assert_eq!(e.exit_code(), 1);
        let e = CliError::Frozen {
            what: "mount",
            mark: None,
        };
        assert!(
            e.to_string()
                .starts_with("frozen (see deploy status): deploys are frozen, so `deploy mount`"),
            "{e}"
        );
    }

    #[test]
    fn not_admin_names_the_service_and_the_admin() {
        let e = CliError::NotAdmin {
            uid: 1001,
            service: "web".into(),
            admin_uid: Some(1000),
        };
        assert_eq!(
            e.to_string(),
            "this uid (1001) is service web: admin commands need root or uid 1000"
        );
        let e = CliError::NotAdmin {
            uid: 1001,
            service: "web".into(),
            admin_uid: None,
        };
        assert_eq!(
            e.to_string(),
            "this uid (1001) is service web: admin commands need root"
        );
    }

    #[test]
    fn exit_codes_and_broken_pipe() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), 2);
        assert_eq!(CliError::Interrupted.exit_code(), 130);
        let term = CliError::Stopped {
            name: "SIGTERM",
            number: 15,
        };
        assert_eq!(
            (term.exit_code(), term.to_string().as_str()),
            (143, "stopped by SIGTERM")
        );
        assert_eq!(CliError::Ctl("x".into()).exit_code(), 1);
        assert!(CliError::Stdout(io::ErrorKind::BrokenPipe.into()).is_broken_pipe());
        assert!(!CliError::Stdout(io::ErrorKind::Other.into()).is_broken_pipe());
        let read = CliError::Read {
            what: "stdin".into(),
            source: io::ErrorKind::BrokenPipe.into(),
        };
        assert!(!read.is_broken_pipe());
    }
}
