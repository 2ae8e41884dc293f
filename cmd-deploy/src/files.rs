//! The server's text files, parsed: `secrets/status`, `secrets/grants/SERVICE` and
//! `secrets/services/SERVICE`; and the `service check` rule over them.
//!
//! Formats (what srv-secrets serves):
//! - status: lines `key N`, `secrets N`, `services N`, `rotation idle` or
//!   `rotation DONE/TOTAL`. Lines we do not know are skipped, so a newer server can add some.
//! - grants: the granted secret names, sorted, one per line.
//! - services: `uid N` or `uid none`, then the manifest verbatim (`secret NAME`,
//!   `config KEY=VALUE`, blank lines, `#` comments).

use serde::Serialize;

use crate::error::CliError;

// How much deploy reads of each of the server's files at most (`Session::read` and
// `Session::list` refuse more). A broken or hostile server could otherwise serve an
// endless file, and deploy would read it until memory ran out. Each bound is far above
// what srv-secrets serves there.

/// `secret/NAME`: a value is at most [`model::MAX_VALUE_LEN`] (1 MiB), the server's limit.
pub const MAX_VALUE_FILE: usize = model::MAX_VALUE_LEN;

/// `secrets/status`: a handful of short `key value` lines; 64 KiB leaves room for many
/// more that a newer server may add.
pub const MAX_STATUS_FILE: usize = 64 << 10;

/// `secrets/services/SERVICE`: a `uid N` line, then the manifest, which the server keeps
/// to at most 1 MiB (the limit of a value in a ctl command).
pub const MAX_SERVICE_FILE: usize = model::MAX_VALUE_LEN + 4096;

/// `secrets/grants/SERVICE`: one name (at most 128 bytes) per line; 16 MiB is over
/// 100,000 of the longest names, more than a million typical ones.
pub const MAX_GRANTS_FILE: usize = 16 << 20;

/// A directory (`secrets/store/`, `grants/`, `services/`): 9P stat entries of at most
/// about 560 bytes (a name and three owner names of up to 128 bytes each), typically
/// under 100. 64 MiB is over 100,000 of the largest entries, and more than half a million
/// typical ones: above the 100,000-secret stores the benchmarks use.
pub const MAX_DIRECTORY: usize = 64 << 20;

/// `secrets/status`.
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

/// Parses `secrets/status`.
///
/// # Errors
/// [`CliError::Unexpected`] for a known key with a value we cannot read.
pub fn parse_status(text: &[u8]) -> Result<Status, CliError> {
    let text = utf8(text, "secrets/status")?;
    let mut status = Status::default();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once(char::is_whitespace) else {
            continue;
        };
        let value = value.trim();
        let bad = || CliError::Unexpected(format!("secrets/status has a bad '{key}' line"));
        let number = |v: &str| v.parse::<u64>().map_err(|_| bad());
        match key {
            "key" => status.key = Some(number(value)?),
            "secrets" => status.secrets = Some(number(value)?),
            "services" => status.services = Some(number(value)?),
            "rotation" if value == "idle" => status.rotation = Rotation::Idle,
            "rotation" => {
                let (done, total) = value.split_once('/').ok_or_else(bad)?;
                status.rotation = Rotation::Running {
                    done: number(done)?,
                    total: number(total)?,
                };
            }
            _ => {}
        }
    }
    Ok(status)
}

/// Parses `secrets/grants/SERVICE`: the granted secret names.
///
/// # Errors
/// [`CliError::Unexpected`] if the file is not UTF-8.
pub fn parse_grants(text: &[u8]) -> Result<Vec<String>, CliError> {
    let text = utf8(text, "a grants file")?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect())
}

/// `secrets/services/SERVICE`, the parts deploy uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFile {
    /// The uid mapped to the service, if any.
    pub uid: Option<u32>,
    /// The secrets its manifest declares, in manifest order.
    pub secrets: Vec<String>,
}

/// Parses `secrets/services/SERVICE`.
///
/// The server checked the manifest when it was set, so only `secret` lines are read here;
/// config lines, comments and blank lines are skipped.
///
/// # Errors
/// [`CliError::Unexpected`] if the first line is not `uid N` or `uid none`.
pub fn parse_service(text: &[u8]) -> Result<ServiceFile, CliError> {
    let (first, manifest) = match text.iter().position(|&b| b == b'\n') {
        Some(i) => (&text[..i], &text[i + 1..]),
        None => (text, &[][..]),
    };
    let bad = || CliError::Unexpected("a services file does not start with 'uid N'".into());
    let first = std::str::from_utf8(first).map_err(|_| bad())?;
    let uid = match first.trim().strip_prefix("uid").map(str::trim) {
        Some("none") => None,
        Some(n) => Some(n.parse::<u32>().map_err(|_| bad())?),
        None => return Err(bad()),
    };
    Ok(ServiceFile {
        uid,
        secrets: manifest_secrets(manifest),
    })
}

/// The names of a manifest's `secret NAME` lines (the same reading as the server's
/// manifest parser: blanks are spaces and tabs; lines split on `\n`).
pub fn manifest_secrets(manifest: &[u8]) -> Vec<String> {
    let blank = |c: char| c == ' ' || c == '\t';
    manifest
        .split(|&b| b == b'\n')
        .filter_map(|raw| std::str::from_utf8(raw).ok())
        .filter_map(|line| {
            let line = line.trim_start_matches(blank);
            let (keyword, rest) = line.split_once(blank)?;
            let name = rest.trim_matches(blank);
            (keyword == "secret" && !name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The secrets a manifest declares that are not granted, in manifest order.
pub fn missing_grants(manifest: &[String], granted: &[String]) -> Vec<String> {
    manifest
        .iter()
        .filter(|name| !granted.contains(name))
        .cloned()
        .collect()
}

fn utf8<'a>(text: &'a [u8], what: &str) -> Result<&'a str, CliError> {
    std::str::from_utf8(text).map_err(|_| CliError::Unexpected(format!("{what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_idle_and_running() {
        let s = parse_status(b"key 3\nsecrets 12\nservices 4\nrotation idle\n").unwrap();
        assert_eq!(
            s,
            Status {
                key: Some(3),
                secrets: Some(12),
                services: Some(4),
                rotation: Rotation::Idle,
            }
        );
        let s = parse_status(b"key 4\nrotation 5/12\nfuture thing\nnewkey\n").unwrap();
        assert_eq!(s.key, Some(4));
        assert_eq!(s.secrets, None);
        assert_eq!(s.rotation, Rotation::Running { done: 5, total: 12 });
    }

    #[test]
    fn status_with_bad_values_is_an_error() {
        for bad in [
            &b"key x\n"[..],
            b"rotation 5\n",
            b"rotation a/b\n",
            b"\xff\n",
        ] {
            assert!(parse_status(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn status_as_json() {
        let s = parse_status(b"key 1\nsecrets 2\nservices 0\nrotation 1/2\n").unwrap();
        assert_eq!(
            serde_json::to_value(&s).unwrap(),
            serde_json::json!({
                "key": 1, "secrets": 2, "services": 0,
                "rotation": {"state": "running", "done": 1, "total": 2}
            })
        );
        assert_eq!(
            serde_json::to_value(Rotation::Idle).unwrap(),
            serde_json::json!({"state": "idle"})
        );
    }

    #[test]
    fn grants() {
        assert_eq!(parse_grants(b"").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_grants(b"api_key\ndb_password\n").unwrap(),
            ["api_key", "db_password"]
        );
        assert_eq!(parse_grants(b"a\n\nb").unwrap(), ["a", "b"]);
    }

    #[test]
    fn services_file() {
        let text = b"uid 1001\n# web\nsecret db_password\n  secret\tapi_key \nconfig secret=x\n\n";
        let s = parse_service(text).unwrap();
        assert_eq!(s.uid, Some(1001));
        assert_eq!(s.secrets, ["db_password", "api_key"]);
        assert_eq!(
            parse_service(b"uid none\n").unwrap(),
            ServiceFile {
                uid: None,
                secrets: vec![]
            }
        );
        assert_eq!(parse_service(b"uid 0").unwrap().uid, Some(0));
        for bad in [&b"secret a\n"[..], b"uid x\n", b"", b"uid -1\n"] {
            assert!(parse_service(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn manifest_lines_that_are_not_secrets() {
        let m =
            b"#secret commented\nsecrets plural\nsecret\nconfig a=secret b\nsecretx y\nsecret ok";
        assert_eq!(manifest_secrets(m), ["ok"]);
    }

    #[test]
    fn check_lists_missing_in_manifest_order() {
        let manifest: Vec<String> = ["db", "api", "tls"].map(String::from).to_vec();
        let granted: Vec<String> = ["api", "other"].map(String::from).to_vec();
        assert_eq!(missing_grants(&manifest, &granted), ["db", "tls"]);
        assert!(missing_grants(&manifest, &manifest).is_empty());
        assert!(missing_grants(&[], &granted).is_empty());
    }
}
