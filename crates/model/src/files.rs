//! The text files the server writes and clients parse, each defined once: its type,
//! [`render`](Status::render) (what srv-secrets serves) and `parse` (what `deploy`
//! reads), and a test that one reads what the other wrote.
//!
//! - `secrets/status` ([`Status`]): lines `key N`, `secrets N`, `services N`,
//!   `rotation idle` or `rotation DONE/TOTAL`. A reader skips lines it does not know, so
//!   a newer server can add some.
//! - `secrets/grants/SERVICE` ([`Grants`]): the granted secret names, sorted, one per line,
//!   each followed by ` expires UNIX_SECONDS` when the grant ends by itself.
//! - `secrets/services/SERVICE` ([`ServiceFile`]): `uid N` or `uid none`, then the
//!   manifest verbatim ([`crate::manifest`]).
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
}

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
        out
    }

    /// Reads the file. Lines it does not know are skipped.
    ///
    /// # Errors
    /// [`FormatError::NotUtf8`]; [`FormatError::BadStatusLine`] for a known key with a
    /// value that does not read.
    pub fn parse(text: &[u8]) -> Result<Status, FormatError> {
        let text = utf8(text, "secrets/status")?;
        let mut status = Status::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once(char::is_whitespace) else {
                continue;
            };
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
                _ => {}
            }
        }
        Ok(status)
    }
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
    /// The manifest, exactly as it was set (empty if none was).
    pub manifest: Vec<u8>,
}

impl ServiceFile {
    /// The file's text: `uid N` (or `uid none`), then the manifest verbatim.
    pub fn render(&self) -> Vec<u8> {
        let uid = self
            .uid
            .map_or_else(|| "none".to_string(), |u| u.to_string());
        let mut out = format!("uid {uid}\n").into_bytes();
        out.extend_from_slice(&self.manifest);
        out
    }

    /// Reads the file: the first line is the uid, everything after its newline the
    /// manifest.
    ///
    /// # Errors
    /// [`FormatError::NoUid`] if the first line is not `uid N` or `uid none`.
    pub fn parse(text: &[u8]) -> Result<ServiceFile, FormatError> {
        let (first, manifest) = match text.iter().position(|&b| b == b'\n') {
            Some(i) => (&text[..i], &text[i + 1..]),
            None => (text, &[][..]),
        };
        let first = std::str::from_utf8(first).map_err(|_| FormatError::NoUid)?;
        let uid = match first.trim().strip_prefix("uid").map(str::trim) {
            Some("none") => None,
            Some(n) => Some(n.parse::<u32>().map_err(|_| FormatError::NoUid)?),
            None => return Err(FormatError::NoUid),
        };
        Ok(ServiceFile {
            uid,
            manifest: manifest.to_vec(),
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
            }
        );
        assert_eq!(s.render(), "key 3\nsecrets 12\nservices 4\nrotation idle\n");
        let s = Status::parse(b"key 4\nrotation 5/12\nfuture thing\nnewkey\n").unwrap();
        assert_eq!(s.key, Some(4));
        assert_eq!(s.secrets, None);
        assert_eq!(s.rotation, Rotation::Running { done: 5, total: 12 });
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
        let none = ServiceFile::parse(b"uid none\n").unwrap();
        assert_eq!((none.uid, none.manifest.len()), (None, 0));
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
        ) {
            let s = Status { key, secrets, services, rotation };
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
            manifest in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let f = ServiceFile { uid, manifest };
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
