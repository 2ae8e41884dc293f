//! The service manifest: which secrets a service needs and its plain config.
//!
//! Its lines are the namespace's ([`model::manifest`], where the format is written down):
//! `secret NAME`, `config KEY=VALUE`, blanks and `#` comments. What a line declares is
//! read there, by the same code that reads a services file back in `deploy`; the vault
//! adds the rules a stored manifest keeps: names and keys follow the name rule, none is
//! declared twice, a `secret` line names one secret, and the whole is at most
//! [`MAX_MANIFEST_LEN`]. A line that breaks one is an error naming the line number, never
//! the line's text: a manifest may be written by hand and a pasted secret must not leak
//! through an error.

use std::collections::BTreeMap;

#[cfg(test)]
use model::manifest::{CONFIG_NEEDS_KV, UNKNOWN};
use model::manifest::{Line, NOT_UTF8, is_blank};

use crate::error::{Error, Result};
use crate::names::{self, MAX_MANIFEST_LEN};

// The reasons a line can be refused: fixed strings, so no input can reach a message.
const SECRET_NEEDS_NAME: &str = "`secret` needs a name";
const SECRET_ONE_NAME: &str = "`secret` takes one name";
const BAD_SECRET_NAME: &str = "invalid secret name (1 to 128 of A-Z a-z 0-9 . _ -, not . or ..)";
const DUPLICATE_SECRET: &str = "secret declared twice";
const BAD_CONFIG_KEY: &str = "invalid config key (1 to 128 of A-Z a-z 0-9 . _ -, not . or ..)";
const DUPLICATE_CONFIG: &str = "config key declared twice";
#[cfg(test)]
const REASONS: [&str; 9] = [
    NOT_UTF8,
    SECRET_NEEDS_NAME,
    SECRET_ONE_NAME,
    BAD_SECRET_NAME,
    DUPLICATE_SECRET,
    CONFIG_NEEDS_KV,
    BAD_CONFIG_KEY,
    DUPLICATE_CONFIG,
    UNKNOWN,
];

/// A parsed manifest, with the text it was parsed from.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    text: String,
    secrets: Vec<String>,
    config: BTreeMap<String, String>,
}

impl Manifest {
    /// Parses a manifest.
    ///
    /// # Errors
    /// [`Error::Manifest`] with the 1-based line number of the first bad line (not UTF-8,
    /// unknown declaration, bad name, duplicate); [`Error::TooLarge`] above
    /// [`MAX_MANIFEST_LEN`].
    pub fn parse(src: &[u8]) -> Result<Manifest> {
        if src.len() > MAX_MANIFEST_LEN {
            return Err(Error::TooLarge {
                what: "manifest",
                limit: MAX_MANIFEST_LEN,
            });
        }
        let mut secrets = Vec::new();
        let mut config = BTreeMap::new();
        for (line, read) in model::manifest::lines(src) {
            let bad = |reason| Error::Manifest { line, reason };
            match read.map_err(bad)? {
                Line::Nothing => {}
                Line::Secret(name) => {
                    if name.is_empty() {
                        return Err(bad(SECRET_NEEDS_NAME));
                    }
                    if name.contains(is_blank) {
                        return Err(bad(SECRET_ONE_NAME));
                    }
                    names::check_secret_name(name).map_err(|_| bad(BAD_SECRET_NAME))?;
                    if secrets.iter().any(|s| s == name) {
                        return Err(bad(DUPLICATE_SECRET));
                    }
                    secrets.push(name.to_owned());
                }
                Line::Config { key, value } => {
                    names::check_config_key(key).map_err(|_| bad(BAD_CONFIG_KEY))?;
                    if config.insert(key.to_owned(), value.to_owned()).is_some() {
                        return Err(bad(DUPLICATE_CONFIG));
                    }
                }
            }
        }
        // Validated as UTF-8 line by line above, and `\n` never splits a character.
        let text = String::from_utf8(src.to_vec()).map_err(|_| Error::Manifest {
            line: 1,
            reason: NOT_UTF8,
        })?;
        Ok(Manifest {
            text,
            secrets,
            config,
        })
    }

    /// The secrets the service needs, in declaration order.
    pub fn secrets(&self) -> &[String] {
        &self.secrets
    }

    /// The plain config values, ordered by key.
    pub fn config(&self) -> &BTreeMap<String, String> {
        &self.config
    }

    /// One config value.
    pub fn config_value(&self, key: &str) -> Option<&str> {
        self.config.get(key).map(String::as_str)
    }

    /// The text the manifest was parsed from, exactly as given.
    pub fn text(&self) -> &str {
        &self.text
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_the_product_example() {
        let src =
            b"secret db_password\nsecret api_key\nconfig log_level=debug\nconfig max_conn=100\n";
        let m = Manifest::parse(src).unwrap();
        assert_eq!(m.secrets(), ["db_password", "api_key"]);
        let config: Vec<_> = m
            .config()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(config, [("log_level", "debug"), ("max_conn", "100")]);
        assert_eq!(m.text().as_bytes(), src);
    }

    #[test]
    fn comments_blanks_and_values() {
        let src = "# header\n\n   \n\t# indented comment\nconfig empty=\nconfig eq=a=b\nconfig sp= two words \n  secret\tx  \n";
        let m = Manifest::parse(src.as_bytes()).unwrap();
        assert_eq!(m.config_value("empty"), Some(""));
        assert_eq!(m.config_value("eq"), Some("a=b"));
        assert_eq!(m.config_value("sp"), Some(" two words "));
        assert_eq!(m.secrets(), ["x"]);
        assert_eq!(m.config_value("missing"), None);
    }

    #[test]
    fn empty_manifest() {
        let m = Manifest::parse(b"").unwrap();
        assert!(m.secrets().is_empty() && m.config().is_empty());
    }

    #[test]
    fn errors_name_the_line_and_not_the_text() {
        let cases: &[(&[u8], usize)] = &[
            (b"secret ok\nsekret hunter2\n", 2),
            (b"# c\n\nsecret bad/name\n", 3),
            (b"secret\n", 1),
            (b"secret a b\n", 1),
            (b"config novalue\n", 1),
            (b"config =hunter2\n", 1),
            (b"config bad key=hunter2\n", 1),
            (b"config k=1\nconfig k=hunter2\n", 2),
            (b"secret a\nsecret a\n", 2),
            (b"secret a\n\xffhunter2\n", 2),
            (b"hunter2\n", 1),
        ];
        for (src, want) in cases {
            match Manifest::parse(src) {
                Err(e @ Error::Manifest { line, .. }) => {
                    assert_eq!(line, *want, "{}", String::from_utf8_lossy(src));
                    let msg = e.to_string();
                    assert!(msg.contains(&format!("line {want}")), "{msg}");
                    assert!(!msg.contains("hunter2"), "{msg}");
                    assert!(!msg.contains("bad/name"), "{msg}");
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(src)),
            }
        }
    }

    #[test]
    fn too_large() {
        let big = vec![b'#'; MAX_MANIFEST_LEN + 1];
        assert!(matches!(Manifest::parse(&big), Err(Error::TooLarge { .. })));
    }

    fn e_string(line: usize, reason: &'static str) -> String {
        Error::Manifest { line, reason }.to_string()
    }

    proptest! {
        #[test]
        fn never_panics_and_never_echoes(src in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Err(e) = Manifest::parse(&src) {
                // Messages are built from a number and a fixed reason only.
                let Error::Manifest { line, reason } = e else {
                    return Err(TestCaseError::fail("not a manifest error"));
                };
                prop_assert!(REASONS.contains(&reason));
                prop_assert_eq!(
                    e_string(line, reason),
                    format!("manifest line {line}: {reason}")
                );
            }
        }

        #[test]
        fn a_client_reads_the_secrets_the_vault_keeps(
            lines in proptest::collection::vec(prop_oneof![
                "secret [a-z]{1,5}",
                "[ \t]{0,2}secret[ \t]{1,2}[A-Za-z0-9._-]{1,8}[ \t]{0,2}",
                "config [a-z]{1,5}=[^\n]{0,10}",
                "[ \t]{0,2}#[^\n]{0,10}",
                "[ \t]{0,3}",
            ], 0..12)
        ) {
            // What deploy reads from a services file is what the vault stored.
            let src = lines.join("\n");
            if let Ok(m) = Manifest::parse(src.as_bytes()) {
                prop_assert_eq!(model::manifest::declared_secrets(src.as_bytes()), m.secrets());
            }
        }

        #[test]
        fn config_round_trips(
            entries in proptest::collection::btree_map("[a-z][a-z0-9_]{0,10}", "[^\n]{0,20}", 0..8)
        ) {
            let mut src = String::new();
            for (k, v) in &entries {
                src.push_str(&format!("config {k}={v}\n"));
            }
            let m = Manifest::parse(src.as_bytes()).unwrap();
            prop_assert_eq!(m.config(), &entries);
        }
    }
}
