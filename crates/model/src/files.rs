//! The text files the server writes and clients parse, each defined once: its type,
//! [`render`](Status::render) (what srv-secrets serves) and `parse` (what `deploy`
//! reads), and a test that one reads what the other wrote.
//!
//! - `secrets/status` ([`Status`]): lines `key N`, `secrets N`, `services N`,
//!   `rotation idle` or `rotation DONE/TOTAL`, `frozen no` or `frozen SINCE` with
//!   `frozen-by WHO` and `frozen-reason WHY`, and `suspended SERVICE...` when services
//!   are suspended. A reader skips lines it does not know, so a newer server can add
//!   some.
//! - `secrets/grants/SERVICE` ([`Grants`]): the granted secret names, sorted, one per line,
//!   each followed by ` expires UNIX_SECONDS` when the grant ends by itself.
//! - `secrets/services/SERVICE` ([`ServiceFile`]): `uid N` or `uid none`; while the
//!   service is suspended, `suspended SINCE`, `suspended-by WHO` and `suspended-reason
//!   WHY`; then the manifest verbatim ([`crate::manifest`]), which can never start with a
//!   `suspended` line (it is no manifest declaration).
//! - the refusal a service's uid gets when it asks for the admin tree ([`NotAdmin`]),
//!   after "permission denied: ".
//!
//! Nothing in these files is secret: names, numbers, manifests.

use std::collections::BTreeMap;
use std::fmt;

use serde::Serialize;

/// Why a file could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The file is not UTF-8.
    NotUtf8 {
        /// Which file, for people: `secrets/status`, `a grants file`.
        file: &'static str,
    },
    /// A known line of `secrets/status` has a value that does not read.
    BadStatusLine {
        /// The line's key (one of ours).
        key: &'static str,
    },
    /// A services file does not start with `uid N` or `uid none`.
    NoUid,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NotUtf8 { file } => write!(f, "{file} is not UTF-8"),
            FormatError::BadStatusLine { key } => {
                write!(f, "secrets/status has a bad '{key}' line")
            }
            FormatError::NoUid => f.write_str("a services file does not start with 'uid N'"),
        }
    }
}

impl std::error::Error for FormatError {}

fn utf8<'a>(text: &'a [u8], file: &'static str) -> Result<&'a str, FormatError> {
    std::str::from_utf8(text).map_err(|_| FormatError::NotUtf8 { file })
}

/// `secrets/status`. A field is `None` when the file has no line for it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Status {
    /// The active key's id.
    pub key: Option<u64>,
    /// How many secrets are stored.
    pub secrets: Option<u64>,
    /// How many services exist.
    pub services: Option<u64>,
    /// A key rotation, if one is running.
    pub rotation: Rotation,
    /// Deploys are frozen: since when, by whom, why (`None`: not frozen, or a server
    /// that does not say).
    pub frozen: Option<Mark>,
    /// The services suspended, sorted.
    pub suspended: Vec<String>,
}

/// Who froze deploys or suspended a service, when and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Mark {
    /// Since when (unix seconds).
    pub since: u64,
    /// Who: the actor as the server shows it, `admin (uid 0)`.
    pub by: String,
    /// Why, if they said.
    pub reason: Option<String>,
}

impl Mark {
    /// The lines `{word} SINCE`, `{word}-by WHO` and (with a reason) `{word}-reason WHY`.
    /// Line breaks in the text (which the server never stores) become spaces, so that a
    /// line stays a line.
    fn render(&self, word: &str, out: &mut String) {
        out.push_str(&format!("{word} {}\n", self.since));
        out.push_str(&format!("{word}-by {}\n", one_line(&self.by)));
        if let Some(reason) = &self.reason {
            out.push_str(&format!("{word}-reason {}\n", one_line(reason)));
        }
    }
}

/// `text` with every control character a space: one line, whatever it held.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The word of the frozen line when deploys are not frozen.
const NOT_FROZEN: &str = "no";

/// The state of key rotation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum Rotation {
    /// No rotation is running.
    #[default]
    Idle,
    /// A rotation has re-encrypted `done` of `total` secrets.
    Running {
        /// Secrets re-encrypted so far.
        done: u64,
        /// Secrets to re-encrypt.
        total: u64,
    },
}

impl Status {
    /// The file's text: a line for each field present, in this order, then `rotation`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (key, value) in [
            ("key", self.key),
            ("secrets", self.secrets),
            ("services", self.services),
        ] {
            if let Some(n) = value {
                out.push_str(&format!("{key} {n}\n"));
            }
        }
        match self.rotation {
            Rotation::Idle => out.push_str("rotation idle\n"),
            Rotation::Running { done, total } => {
                out.push_str(&format!("rotation {done}/{total}\n"));
            }
        }
        match &self.frozen {
            Some(mark) => mark.render("frozen", &mut out),
            None => out.push_str(&format!("frozen {NOT_FROZEN}\n")),
        }
        if !self.suspended.is_empty() {
            out.push_str(&format!("suspended {}\n", self.suspended.join(" ")));
        }
        out
    }

    /// Reads the file. Lines it does not know are skipped.
    ///
    /// # Errors
    /// [`FormatError::NotUtf8`]; [`FormatError::BadStatusLine`] for a known key with a
    /// value that does not read (a `frozen-by` or `frozen-reason` without `frozen SINCE`
    /// is one).
    pub fn parse(text: &[u8]) -> Result<Status, FormatError> {
        let text = utf8(text, "secrets/status")?;
        let mut status = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
            if let Some(field) = key.strip_prefix("frozen") {
                parse_mark(&mut status.frozen, field, value.trim(), "frozen")?;
                continue;
            }
            let value = value.trim();
            let bad = |key| FormatError::BadStatusLine { key };
            let number = |key, v: &str| v.parse::<u64>().map_err(|_| bad(key));
            match key {
                "key" => status.key = Some(number("key", value)?),
                "secrets" => status.secrets = Some(number("secrets", value)?),
                "services" => status.services = Some(number("services", value)?),
                "rotation" if value == "idle" => status.rotation = Rotation::Idle,
                "rotation" => {
                    let (done, total) = value.split_once('/').ok_or_else(|| bad("rotation"))?;
                    status.rotation = Rotation::Running {
                        done: number("rotation", done)?,
                        total: number("rotation", total)?,
                    };
                }
                "suspended" => {
                    status.suspended = value.split_whitespace().map(str::to_string).collect();
                }
                _ => {}
            }
        }
        Ok(status)
    }
}

/// Reads one line of a [`Mark`]: `WORD SINCE` (`field` empty; `no` for none when `word`
/// is `frozen`), `WORD-by WHO` or `WORD-reason WHY`, into `mark`. Other fields are
/// skipped, as unknown lines are.
fn parse_mark(
    mark: &mut Option<Mark>,
    field: &str,
    value: &str,
    word: &'static str,
) -> Result<(), FormatError> {
    let bad = || FormatError::BadStatusLine { key: word };
    match field {
        "" if value == NOT_FROZEN => *mark = None,
        "" => {
            let since = value.parse().map_err(|_| bad())?;
            *mark = Some(Mark {
                since,
                ..Mark::default()
            });
        }
        "-by" => mark.as_mut().ok_or_else(bad)?.by = value.to_string(),
        "-reason" => mark.as_mut().ok_or_else(bad)?.reason = Some(value.to_string()),
        _ => {}
    }
    Ok(())
}

/// `secrets/grants/SERVICE`: the names of the secrets granted to the service, and when
/// the grants that end by themselves end.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// The names, in the order the file lists them (the server's is sorted).
    pub names: Vec<String>,
    /// When each grant that ends by itself ends (unix seconds), by name.
    pub expires: BTreeMap<String, u64>,
}

/// The word between a name and its grant's end.
const EXPIRES: &str = "expires";

impl Grants {
    /// The file's text: one name per line, `NAME expires UNIX_SECONDS` for a grant that
    /// ends by itself.
    pub fn render(&self) -> String {
        self.names
            .iter()
            .map(|n| match self.expires.get(n) {
                Some(t) => format!("{n} {EXPIRES} {t}\n"),
                None => format!("{n}\n"),
            })
            .collect()
    }

    /// Reads the file; blank lines are skipped, and a line whose end does not read is
    /// taken for a grant without one.
    ///
    /// # Errors
    /// [`FormatError::NotUtf8`].
    pub fn parse(text: &[u8]) -> Result<Grants, FormatError> {
        let text = utf8(text, "a grants file")?;
        let mut grants = Grants::default();
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let mut words = line.split(' ');
            let name = words.next().unwrap_or(line);
            if let (Some(EXPIRES), Some(t), None) = (words.next(), words.next(), words.next())
                && let Ok(t) = t.parse()
            {
                grants.expires.insert(name.to_string(), t);
            }
            grants.names.push(name.to_string());
        }
        Ok(grants)
    }
}

/// `secrets/services/SERVICE`: the uid mapped to the service, and its manifest.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServiceFile {
    /// The uid mapped to the service, if any.
    pub uid: Option<u32>,
    /// Whether the service is suspended: since when, by whom, why.
    pub suspended: Option<Mark>,
    /// The manifest, exactly as it was set (empty if none was).
    pub manifest: Vec<u8>,
}

/// The word of a suspended service's lines.
const SUSPENDED: &str = "suspended";

/// Splits the first line (without its newline) off `text`.
fn first_line(text: &[u8]) -> (&[u8], &[u8]) {
    match text.iter().position(|&b| b == b'\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[][..]),
    }
}

impl ServiceFile {
    /// The file's text: `uid N` (or `uid none`), the suspension's lines if it is
    /// suspended, then the manifest verbatim.
    pub fn render(&self) -> Vec<u8> {
        let uid = self
            .uid
            .map_or_else(|| "none".to_string(), |u| u.to_string());
        let mut head = format!("uid {uid}\n");
        if let Some(mark) = &self.suspended {
            mark.render(SUSPENDED, &mut head);
        }
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.manifest);
        out
    }

    /// Reads the file: the first line is the uid, the `suspended` lines after it (if
    /// any) the suspension, everything after them the manifest.
    ///
    /// # Errors
    /// [`FormatError::NoUid`] if the first line is not `uid N` or `uid none`.
    pub fn parse(text: &[u8]) -> Result<ServiceFile, FormatError> {
        let (first, mut rest) = first_line(text);
        let first = std::str::from_utf8(first).map_err(|_| FormatError::NoUid)?;
        let uid = match first.trim().strip_prefix("uid").map(str::trim) {
            Some("none") => None,
            Some(n) => Some(n.parse::<u32>().map_err(|_| FormatError::NoUid)?),
            None => return Err(FormatError::NoUid),
        };
        let mut suspended = None;
        while rest.starts_with(SUSPENDED.as_bytes()) {
            let (line, after) = first_line(rest);
            let Ok(line) = std::str::from_utf8(line) else {
                break;
            };
            let (key, value) = line.split_once(' ').unwrap_or((line, ""));
            let Some(field) = key.strip_prefix(SUSPENDED) else {
                break;
            };
            if parse_mark(&mut suspended, field, value, SUSPENDED).is_err() {
                break;
            }
            rest = after;
        }
        Ok(ServiceFile {
            uid,
            suspended,
            manifest: rest.to_vec(),
        })
    }

    /// The secrets its manifest declares, in manifest order
    /// ([`declared_secrets`](crate::manifest::declared_secrets)).
    pub fn secrets(&self) -> Vec<String> {
        crate::manifest::declared_secrets(&self.manifest)
    }
}

/// What srv-secrets tells a service's uid that asks for the admin tree, after
/// "permission denied: ": `uid 1001 is service web; the admin is root or uid 1000`, or
/// `...; the admin is root` when root made the store. `deploy` reads it to say what to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAdmin {
    /// The uid that asked.
    pub uid: u32,
    /// The service that uid is.
    pub service: String,
    /// The admin's uid besides root (the uid that ran `init`), if not root itself.
    pub admin_uid: Option<u32>,
}

impl NotAdmin {
    /// The text after "permission denied: ".
    pub fn render(&self) -> String {
        let admin = match self.admin_uid {
            None => "root".to_string(),
            Some(n) => format!("root or uid {n}"),
        };
        format!(
            "uid {} is service {}; the admin is {admin}",
            self.uid, self.service
        )
    }

    /// Reads the text after "permission denied: "; `None` if it is not this refusal.
    pub fn parse(text: &str) -> Option<NotAdmin> {
        let (uid, rest) = text.strip_prefix("uid ")?.split_once(" is service ")?;
        let (service, admin) = rest.split_once("; the admin is root")?;
        let admin_uid = match admin {
            "" => None,
            other => Some(other.strip_prefix(" or uid ")?.parse().ok()?),
        };
        Some(NotAdmin {
            uid: uid.parse().ok()?,
            service: service.to_string(),
            admin_uid,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn status_idle_and_running() {
        let s = Status::parse(b"key 3\nsecrets 12\nservices 4\nrotation idle\n").unwrap();
        assert_eq!(
            s,
            Status {
                key: Some(3),
                secrets: Some(12),
                services: Some(4),
                rotation: Rotation::Idle,
                frozen: None,
                suspended: vec![],
            }
        );
        assert_eq!(
            s.render(),
            "key 3\nsecrets 12\nservices 4\nrotation idle\nfrozen no\n"
        );
        let s = Status::parse(b"key 4\nrotation 5/12\nfuture thing\nnewkey\n").unwrap();
        assert_eq!(s.key, Some(4));
        assert_eq!(s.secrets, None);
        assert_eq!(s.rotation, Rotation::Running { done: 5, total: 12 });
    }

    #[test]
    fn status_frozen_and_suspended() {
        let s = Status::parse(
            b"key 1\nrotation idle\nfrozen 1767225600\nfrozen-by admin (uid 0)\n\
              frozen-reason INC-42: token leaked\nsuspended api web\n",
        )
        .unwrap();
        assert_eq!(
            s.frozen,
            Some(Mark {
                since: 1_767_225_600,
                by: "admin (uid 0)".into(),
                reason: Some("INC-42: token leaked".into()),
            })
        );
        assert_eq!(s.suspended, ["api", "web"]);
        assert_eq!(Status::parse(b"frozen no\n").unwrap().frozen, None);
        // A reason with a line break in it stays on its line.
        let s = Status {
            frozen: Some(Mark {
                since: 5,
                by: "admin".into(),
                reason: Some("a\nkey 9".into()),
            }),
            ..Status::default()
        };
        let text = s.render();
        assert!(text.contains("frozen-reason a key 9\n"), "{text}");
        assert_eq!(Status::parse(text.as_bytes()).unwrap().key, None);
        for bad in [
            &b"frozen soon\n"[..],
            b"frozen-by admin\n",
            b"frozen-reason x\n",
        ] {
            assert_eq!(
                Status::parse(bad).unwrap_err(),
                FormatError::BadStatusLine { key: "frozen" },
                "{bad:?}"
            );
        }
    }

    #[test]
    fn status_with_bad_values_is_an_error() {
        for (bad, key) in [
            (&b"key x\n"[..], "key"),
            (b"rotation 5\n", "rotation"),
            (b"rotation a/b\n", "rotation"),
        ] {
            let e = Status::parse(bad).unwrap_err();
            assert_eq!(e, FormatError::BadStatusLine { key });
            assert_eq!(
                e.to_string(),
                format!("secrets/status has a bad '{key}' line")
            );
        }
        assert_eq!(
            Status::parse(b"\xff\n").unwrap_err().to_string(),
            "secrets/status is not UTF-8"
        );
    }

    #[test]
    fn grants() {
        assert_eq!(Grants::parse(b"").unwrap(), Grants::default());
        let g = Grants::parse(b"api_key\ndb_password\n").unwrap();
        assert_eq!(g.names, ["api_key", "db_password"]);
        assert_eq!(g.render(), "api_key\ndb_password\n");
        assert_eq!(Grants::parse(b"a\n\nb").unwrap().names, ["a", "b"]);
        let g = Grants::parse(b"a expires 1767225600\nb\n").unwrap();
        assert_eq!(g.names, ["a", "b"]);
        assert_eq!(g.expires.get("a"), Some(&1_767_225_600));
        assert_eq!(g.expires.get("b"), None);
        assert_eq!(g.render(), "a expires 1767225600\nb\n");
        assert_eq!(
            Grants::parse(b"\xff").unwrap_err().to_string(),
            "a grants file is not UTF-8"
        );
    }

    #[test]
    fn services_file() {
        let text = b"uid 1001\n# web\nsecret db_password\n  secret\tapi_key \nconfig secret=x\n\n";
        let s = ServiceFile::parse(text).unwrap();
        assert_eq!(s.uid, Some(1001));
        assert_eq!(s.secrets(), ["db_password", "api_key"]);
        assert_eq!(s.render(), text);
        assert_eq!(s.suspended, None);
        let none = ServiceFile::parse(b"uid none\n").unwrap();
        assert_eq!((none.uid, none.manifest.len()), (None, 0));
        let text = b"uid 1001\nsuspended 1767225600\nsuspended-by admin (uid 0)\n\
                     suspended-reason INC-42\nsecret db\n";
        let s = ServiceFile::parse(text).unwrap();
        assert_eq!(
            s.suspended,
            Some(Mark {
                since: 1_767_225_600,
                by: "admin (uid 0)".into(),
                reason: Some("INC-42".into()),
            })
        );
        assert_eq!(s.manifest, b"secret db\n");
        assert_eq!(s.secrets(), ["db"]);
        assert_eq!(s.render(), text);
        assert_eq!(ServiceFile::parse(b"uid 0").unwrap().uid, Some(0));
        for bad in [&b"secret a\n"[..], b"uid x\n", b"", b"uid -1\n", b"\xff\n"] {
            assert_eq!(
                ServiceFile::parse(bad).unwrap_err().to_string(),
                "a services file does not start with 'uid N'",
                "{bad:?}"
            );
        }
    }

    #[test]
    fn not_admin() {
        for (text, admin_uid) in [
            (
                "uid 1001 is service web; the admin is root or uid 1000",
                Some(1000),
            ),
            ("uid 1001 is service web; the admin is root", None),
        ] {
            let n = NotAdmin::parse(text).unwrap();
            assert_eq!(
                n,
                NotAdmin {
                    uid: 1001,
                    service: "web".into(),
                    admin_uid
                }
            );
            assert_eq!(n.render(), text);
        }
        for bad in [
            "",
            "uid x is service web; the admin is root",
            "uid 1 is service web",
            "uid 1 is service web; the admin is root or uid",
            "uid 1 is service web; the admin is root and more",
        ] {
            assert_eq!(NotAdmin::parse(bad), None, "{bad}");
        }
    }

    /// A mark as the server makes one: a `by` and a reason of one line each, without
    /// blanks at either end (the lines are read trimmed).
    fn mark() -> impl Strategy<Value = Mark> {
        (
            any::<u64>(),
            "[a-z]{1,8}( \\(uid [0-9]{1,5}\\))?",
            proptest::option::of("[!-~]([ -~]{0,40}[!-~])?"),
        )
            .prop_map(|(since, by, reason)| Mark { since, by, reason })
    }

    fn rotation() -> impl Strategy<Value = Rotation> {
        prop_oneof![
            Just(Rotation::Idle),
            (any::<u64>(), any::<u64>())
                .prop_map(|(done, total)| Rotation::Running { done, total }),
        ]
    }

    proptest! {
        #[test]
        fn status_round_trips(
            key in any::<Option<u64>>(),
            secrets in any::<Option<u64>>(),
            services in any::<Option<u64>>(),
            rotation in rotation(),
            frozen in proptest::option::of(mark()),
            suspended in proptest::collection::btree_set("[A-Za-z0-9._-]{1,20}", 0..5),
        ) {
            let suspended = suspended.into_iter().collect();
            let s = Status { key, secrets, services, rotation, frozen, suspended };
            prop_assert_eq!(Status::parse(s.render().as_bytes()).unwrap(), s);
        }

        #[test]
        fn grants_round_trip(
            names in proptest::collection::btree_map("[A-Za-z0-9._-]{1,20}", any::<Option<u64>>(), 0..20)
        ) {
            let expires = names.iter().filter_map(|(n, t)| Some((n.clone(), (*t)?))).collect();
            let g = Grants { names: names.into_keys().collect(), expires };
            prop_assert_eq!(Grants::parse(g.render().as_bytes()).unwrap(), g);
        }

        #[test]
        fn service_files_round_trip(
            uid in any::<Option<u32>>(),
            suspended in proptest::option::of(mark()),
            manifest in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            // A stored manifest never starts with a `suspended` line (no declaration does).
            prop_assume!(!manifest.starts_with(b"suspended"));
            let f = ServiceFile { uid, suspended, manifest };
            prop_assert_eq!(ServiceFile::parse(&f.render()).unwrap(), f);
        }

        #[test]
        fn refusals_round_trip(
            uid in any::<u32>(),
            service in "[A-Za-z0-9._-]{1,128}",
            admin_uid in any::<Option<u32>>(),
        ) {
            let n = NotAdmin { uid, service, admin_uid };
            prop_assert_eq!(NotAdmin::parse(&n.render()), Some(n));
        }
    }
}
