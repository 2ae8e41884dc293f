//! [`Command`], the name rule, and the encoder (the client's side of the language).

use zeroize::Zeroizing;

use crate::error::{ErrorKind, NameKind};
use crate::{MAX_VALUE_LEN, Value, is_reserved_service, is_valid_name};

pub(crate) const ABORT: &str = "abort";
pub(crate) const BEGIN: &str = "begin";
pub(crate) const COMMIT: &str = "commit";
pub(crate) const DELETE: &str = "delete";
pub(crate) const GRANT: &str = "grant";
pub(crate) const HELP: &str = "help";
pub(crate) const REVOKE: &str = "revoke";
pub(crate) const ROTATE_KEY: &str = "rotate-key";
pub(crate) const SERVICE: &str = "service";
pub(crate) const SET: &str = "set";

/// Usage lines, as errors and `help` show them.
pub(crate) mod usage {
    pub(crate) const ABORT: &str = "abort";
    pub(crate) const BEGIN: &str = "begin";
    pub(crate) const COMMIT: &str = "commit";
    pub(crate) const HELP: &str = "help";
    pub(crate) const DELETE: &str = "delete NAME";
    pub(crate) const GRANT: &str = "grant SERVICE NAME";
    pub(crate) const REVOKE: &str = "revoke SERVICE NAME";
    pub(crate) const ROTATE_KEY: &str = "rotate-key";
    pub(crate) const SERVICE: &str = "service SERVICE (uid UID | manifest VALUE | remove)";
    pub(crate) const SERVICE_MANIFEST: &str = "service SERVICE manifest VALUE";
    pub(crate) const SERVICE_REMOVE: &str = "service SERVICE remove";
    pub(crate) const SERVICE_UID: &str = "service SERVICE uid UID";
    pub(crate) const SET: &str = "set NAME VALUE";
}

/// A command word, and what `help` shows of it.
pub(crate) struct Verb {
    /// The word itself.
    pub(crate) word: &'static str,
    /// Its forms, each with what it does, one line of `help` each.
    pub(crate) forms: &'static [(&'static str, &'static str)],
}

/// Every command word, sorted: the one list that the parser, the "did you mean" of an
/// unknown command and `help` are made from.
pub(crate) const VERBS: &[Verb] = &[
    Verb {
        word: ABORT,
        forms: &[(usage::ABORT, "discard the open transaction")],
    },
    Verb {
        word: BEGIN,
        forms: &[(
            usage::BEGIN,
            "start a transaction: what follows, up to commit, applies all or none",
        )],
    },
    Verb {
        word: COMMIT,
        forms: &[(usage::COMMIT, "apply the open transaction")],
    },
    Verb {
        word: DELETE,
        forms: &[(usage::DELETE, "delete a secret and its grants")],
    },
    Verb {
        word: GRANT,
        forms: &[(usage::GRANT, "let SERVICE read NAME")],
    },
    Verb {
        word: HELP,
        forms: &[(usage::HELP, "this list (read it from ctl)")],
    },
    Verb {
        word: REVOKE,
        forms: &[(
            usage::REVOKE,
            "stop SERVICE reading NAME, from its next read on",
        )],
    },
    Verb {
        word: ROTATE_KEY,
        forms: &[(
            usage::ROTATE_KEY,
            "re-encrypt every secret under a new cluster key",
        )],
    },
    Verb {
        word: SERVICE,
        forms: &[
            (usage::SERVICE_UID, "add SERVICE, or map it to another uid"),
            (usage::SERVICE_MANIFEST, "replace SERVICE's manifest"),
            (usage::SERVICE_REMOVE, "remove SERVICE and its grants"),
        ],
    },
    Verb {
        word: SET,
        forms: &[(usage::SET, "store a secret (a new version)")],
    },
];

/// The text `help` answers with: one line per form of each command, and what it does.
pub fn help_text() -> String {
    let forms = VERBS.iter().flat_map(|v| v.forms.iter());
    let width = forms
        .clone()
        .map(|(usage, _)| usage.len())
        .max()
        .unwrap_or(0);
    forms
        .map(|(usage, what)| format!("{usage:width$}  {what}\n"))
        .collect()
}

/// The uid that Plan 9 and Linux use for "no uid"; `service … uid` refuses it.
pub const NO_UID: u32 = u32::MAX;

/// One ctl command, as parsed from a line or to be encoded into one.
///
/// `Debug` is safe to log: names are not secret, and a [`Value`] shows only its length.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `set NAME VALUE`: create or replace a secret.
    Set {
        /// The secret's name.
        name: String,
        /// The secret's value.
        value: Value,
    },
    /// `delete NAME`: remove a secret.
    Delete {
        /// The secret's name.
        name: String,
    },
    /// `grant SERVICE NAME`: let a service read a secret.
    Grant {
        /// The service's name.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// `revoke SERVICE NAME`: stop a service reading a secret.
    Revoke {
        /// The service's name.
        service: String,
        /// The secret's name.
        name: String,
    },
    /// `rotate-key`: re-encrypt every secret under a new cluster key.
    RotateKey,
    /// `begin`: the commands that follow, up to `commit`, apply all or none.
    Begin,
    /// `commit`: apply the open transaction.
    Commit,
    /// `abort`: discard the open transaction.
    Abort,
    /// `help`: answer with the list of commands.
    Help,
    /// `service SERVICE uid UID`: add a service, or change the uid that maps to it.
    ServiceUid {
        /// The service's name.
        service: String,
        /// The peer uid that authenticates as this service (never [`NO_UID`]).
        uid: u32,
    },
    /// `service SERVICE manifest VALUE`: replace a service's manifest (its whole text).
    ServiceManifest {
        /// The service's name.
        service: String,
        /// The manifest's text, unparsed.
        manifest: Value,
    },
    /// `service SERVICE remove`: remove a service and its grants.
    ServiceRemove {
        /// The service's name.
        service: String,
    },
}

impl Command {
    /// The command's first word (`service` for all three service actions), for errors
    /// and logs.
    pub fn verb(&self) -> &'static str {
        match self {
            Command::Set { .. } => SET,
            Command::Delete { .. } => DELETE,
            Command::Grant { .. } => GRANT,
            Command::Revoke { .. } => REVOKE,
            Command::RotateKey => ROTATE_KEY,
            Command::Begin => BEGIN,
            Command::Commit => COMMIT,
            Command::Abort => ABORT,
            Command::Help => HELP,
            Command::ServiceUid { .. }
            | Command::ServiceManifest { .. }
            | Command::ServiceRemove { .. } => SERVICE,
        }
    }

    /// Whether the command changes the store (and so can be part of a transaction, or
    /// must wait for one to end).
    pub fn is_change(&self) -> bool {
        !matches!(
            self,
            Command::Begin | Command::Commit | Command::Abort | Command::Help
        )
    }

    /// About how many bytes the command holds, for the bound on a transaction: its value
    /// and names, plus a little for the words around them.
    pub fn weight(&self) -> usize {
        const WORDS: usize = 32;
        WORDS
            + match self {
                Command::Set { name, value } => name.len() + value.len(),
                Command::Delete { name } => name.len(),
                Command::Grant { service, name } | Command::Revoke { service, name } => {
                    service.len() + name.len()
                }
                Command::ServiceUid { service, .. } | Command::ServiceRemove { service } => {
                    service.len()
                }
                Command::ServiceManifest { service, manifest } => service.len() + manifest.len(),
                Command::RotateKey
                | Command::Begin
                | Command::Commit
                | Command::Abort
                | Command::Help => 0,
            }
    }

    /// Checks the command as the parser would: names, reserved services, the uid and value
    /// sizes. A client calls this to report a bad argument before sending anything; format
    /// the error as `"{verb}: {kind}"`.
    ///
    /// # Errors
    /// The [`ErrorKind`] the server would answer with.
    pub fn validate(&self) -> Result<(), ErrorKind> {
        match self {
            Command::Set { name, value } => {
                check_name(name.as_bytes())?;
                check_value(value.expose())
            }
            Command::Delete { name } => check_name(name.as_bytes()).map(drop),
            Command::Grant { service, name } | Command::Revoke { service, name } => {
                check_service(service.as_bytes())?;
                check_name(name.as_bytes()).map(drop)
            }
            Command::RotateKey
            | Command::Begin
            | Command::Commit
            | Command::Abort
            | Command::Help => Ok(()),
            Command::ServiceUid { service, uid } => {
                check_service(service.as_bytes())?;
                if *uid == NO_UID {
                    Err(ErrorKind::BadUid)
                } else {
                    Ok(())
                }
            }
            Command::ServiceManifest { service, manifest } => {
                check_service(service.as_bytes())?;
                check_value(manifest.expose())
            }
            Command::ServiceRemove { service } => check_service(service.as_bytes()).map(drop),
        }
    }

    /// The command as one complete line, ending in `\n`: names as bare words, values as
    /// `{N}` literals, so any bytes travel safely and `parse(encode(c)) == c` for every
    /// command that passes [`validate`](Command::validate).
    ///
    /// A name that breaks the name rule is sent quoted, so that the server rejects it with
    /// "invalid name" instead of reading it as more words or lines: encoding never lets a
    /// name inject a command.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let uid_text;
        let (words, value): (Vec<&str>, Option<&Value>) = match self {
            Command::Set { name, value } => (vec![SET, name], Some(value)),
            Command::Delete { name } => (vec![DELETE, name], None),
            Command::Grant { service, name } => (vec![GRANT, service, name], None),
            Command::Revoke { service, name } => (vec![REVOKE, service, name], None),
            Command::RotateKey
            | Command::Begin
            | Command::Commit
            | Command::Abort
            | Command::Help => (vec![self.verb()], None),
            Command::ServiceUid { service, uid } => {
                uid_text = uid.to_string();
                (vec![SERVICE, service, "uid", &uid_text], None)
            }
            Command::ServiceManifest { service, manifest } => {
                (vec![SERVICE, service, "manifest"], Some(manifest))
            }
            Command::ServiceRemove { service } => (vec![SERVICE, service, "remove"], None),
        };
        // Sized up front so that the buffer never reallocates: a reallocation would leave
        // a copy of the value in freed memory.
        let header = value.map_or(0, |v| format!(" {{{}}}\n", v.len()).len());
        let capacity = words.iter().map(|w| 2 * w.len() + 3).sum::<usize>()
            + header
            + value.map_or(0, Value::len)
            + 1;
        let mut out = Zeroizing::new(Vec::with_capacity(capacity));
        for (i, word) in words.iter().enumerate() {
            if i > 0 {
                out.push(b' ');
            }
            put_word(&mut out, word.as_bytes());
        }
        if let Some(v) = value {
            out.extend_from_slice(format!(" {{{}}}\n", v.len()).as_bytes());
            out.extend_from_slice(v.expose());
        }
        out.push(b'\n');
        out
    }
}

/// Appends `word` bare if it is a harmless bare word (the bytes of names), else quoted.
fn put_word(out: &mut Vec<u8>, word: &[u8]) {
    let bare = !word.is_empty()
        && word
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if bare {
        out.extend_from_slice(word);
        return;
    }
    out.push(b'\'');
    for &b in word {
        if b == b'\'' {
            out.push(b'\'');
        }
        out.push(b);
    }
    out.push(b'\'');
}

/// The name rule ([`is_valid_name`]) over a token's bytes: a name is ASCII, so bytes
/// that are not UTF-8 are not one.
fn valid_name(name: &[u8]) -> bool {
    std::str::from_utf8(name).is_ok_and(is_valid_name)
}

/// Checks a secret name, returning it as a `String` (it is ASCII once checked).
pub(crate) fn check_name(name: &[u8]) -> Result<String, ErrorKind> {
    checked(name, NameKind::Secret)
}

/// Checks a service name, reserved names included.
pub(crate) fn check_service(service: &[u8]) -> Result<String, ErrorKind> {
    let service = checked(service, NameKind::Service)?;
    if is_reserved_service(&service) {
        return Err(ErrorKind::ReservedService);
    }
    Ok(service)
}

fn checked(name: &[u8], kind: NameKind) -> Result<String, ErrorKind> {
    if !valid_name(name) {
        return Err(ErrorKind::InvalidName(kind));
    }
    // Only ASCII passed the check above, so this conversion cannot fail.
    String::from_utf8(name.to_vec()).map_err(|_| ErrorKind::InvalidName(kind))
}

/// Checks a value's length.
pub(crate) fn check_value(value: &[u8]) -> Result<(), ErrorKind> {
    if value.len() > MAX_VALUE_LEN {
        Err(ErrorKind::ValueTooLong)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(c: &Command) -> Vec<u8> {
        c.encode().to_vec()
    }

    #[test]
    fn encodes_every_command() {
        let v = |b: &[u8]| Value::from(b.to_vec());
        assert_eq!(
            enc(&Command::Set {
                name: "cert".into(),
                value: v(b"ab\ncd")
            }),
            b"set cert {5}\nab\ncd\n"
        );
        assert_eq!(
            enc(&Command::Set {
                name: "e".into(),
                value: v(b"")
            }),
            b"set e {0}\n\n"
        );
        assert_eq!(enc(&Command::Delete { name: "a".into() }), b"delete a\n");
        assert_eq!(
            enc(&Command::Grant {
                service: "web".into(),
                name: "db_password".into()
            }),
            b"grant web db_password\n"
        );
        assert_eq!(
            enc(&Command::Revoke {
                service: "web".into(),
                name: "db.password-2".into()
            }),
            b"revoke web db.password-2\n"
        );
        assert_eq!(enc(&Command::RotateKey), b"rotate-key\n");
        assert_eq!(
            enc(&Command::ServiceUid {
                service: "web".into(),
                uid: 1000
            }),
            b"service web uid 1000\n"
        );
        assert_eq!(
            enc(&Command::ServiceManifest {
                service: "web".into(),
                manifest: v(b"secret a\n")
            }),
            b"service web manifest {9}\nsecret a\n\n"
        );
        assert_eq!(
            enc(&Command::ServiceRemove {
                service: "web".into()
            }),
            b"service web remove\n"
        );
    }

    #[test]
    fn encoding_quotes_bad_names() {
        assert_eq!(
            enc(&Command::Delete {
                name: "a b\nrotate-key".into()
            }),
            b"delete 'a b\nrotate-key'\n"
        );
        assert_eq!(
            enc(&Command::Delete {
                name: "it's".into()
            }),
            b"delete 'it''s'\n"
        );
        assert_eq!(enc(&Command::Delete { name: "".into() }), b"delete ''\n");
        assert_eq!(
            enc(&Command::Delete { name: "{5}".into() }),
            b"delete '{5}'\n"
        );
    }

    #[test]
    fn encoding_never_reallocates() {
        let c = Command::Grant {
            service: "''''".into(),
            name: "x".repeat(300),
        };
        let e = c.encode();
        assert!(e.capacity() >= e.len());
        let c = Command::Set {
            name: "n".into(),
            value: Value::from(vec![7; 100_000]),
        };
        let e = c.encode();
        assert!(e.len() <= e.capacity());
        assert_eq!(e.len(), "set n {100000}\n".len() + 100_000 + 1);
    }

    #[test]
    fn names() {
        assert!(is_valid_name("db_password"));
        assert!(is_valid_name("A-Z.a_z-09"));
        assert!(is_valid_name(&"x".repeat(128)));
        assert!(is_valid_name("..."));
        assert!(is_valid_name(".hidden"));
        assert!(!is_valid_name(&"x".repeat(129)));
        assert!(!is_valid_name(""));
        assert!(!is_valid_name("."));
        assert!(!is_valid_name(".."));
        assert!(!is_valid_name("a/b"));
        assert!(!is_valid_name("a b"));
        assert!(!is_valid_name("é"));
        assert!(is_reserved_service("admin"));
        assert!(is_reserved_service("secrets"));
        assert!(!is_reserved_service("Admin"));
    }

    #[test]
    fn validate() {
        let ok = Command::ServiceUid {
            service: "web".into(),
            uid: NO_UID - 1,
        };
        assert_eq!(ok.validate(), Ok(()));
        let bad = Command::ServiceUid {
            service: "web".into(),
            uid: NO_UID,
        };
        assert_eq!(bad.validate(), Err(ErrorKind::BadUid));
        let reserved = Command::ServiceRemove {
            service: "admin".into(),
        };
        assert_eq!(reserved.validate(), Err(ErrorKind::ReservedService));
        let bad_name = Command::Grant {
            service: "web".into(),
            name: "..".into(),
        };
        assert_eq!(
            bad_name.validate(),
            Err(ErrorKind::InvalidName(NameKind::Secret))
        );
        let big = Command::Set {
            name: "n".into(),
            value: Value::from(vec![0; MAX_VALUE_LEN + 1]),
        };
        assert_eq!(big.validate(), Err(ErrorKind::ValueTooLong));
        let max = Command::ServiceManifest {
            service: "web".into(),
            manifest: Value::from(vec![0; MAX_VALUE_LEN]),
        };
        assert_eq!(max.validate(), Ok(()));
        assert_eq!(Command::RotateKey.validate(), Ok(()));
    }

    #[test]
    fn verbs() {
        assert_eq!(Command::RotateKey.verb(), "rotate-key");
        assert_eq!(
            Command::ServiceRemove {
                service: "w".into()
            }
            .verb(),
            "service"
        );
    }
}
