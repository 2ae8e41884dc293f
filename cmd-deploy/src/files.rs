//! The server's text files, parsed: `secrets/status`, `secrets/grants/SERVICE` and
//! `secrets/services/SERVICE`; how much of each deploy reads; and the `service check`
//! rule over them.
//!
//! The formats are the namespace's, defined once with the server's rendering of them
//! ([`model::files`]); here their errors become deploy's.

pub use model::{Rotation, Status};

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

fn unexpected(e: model::FormatError) -> CliError {
    CliError::Unexpected(e.to_string())
}

/// Parses `secrets/status` ([`model::Status`]).
///
/// # Errors
/// [`CliError::Unexpected`] for a known key with a value we cannot read.
pub fn parse_status(text: &[u8]) -> Result<Status, CliError> {
    Status::parse(text).map_err(unexpected)
}

/// Parses `secrets/grants/SERVICE`: the granted secret names ([`model::Grants`]).
///
/// # Errors
/// [`CliError::Unexpected`] if the file is not UTF-8.
pub fn parse_grants(text: &[u8]) -> Result<Vec<String>, CliError> {
    model::Grants::parse(text)
        .map(|g| g.names)
        .map_err(unexpected)
}

/// Parses `secrets/grants/SERVICE` whole: the names, and when the grants that end by
/// themselves end.
///
/// # Errors
/// [`CliError::Unexpected`] if the file is not UTF-8.
pub fn parse_grant_file(text: &[u8]) -> Result<model::Grants, CliError> {
    model::Grants::parse(text).map_err(unexpected)
}

/// `secrets/services/SERVICE`, the parts deploy uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceFile {
    /// The uid mapped to the service, if any.
    pub uid: Option<u32>,
    /// The secrets its manifest declares, in manifest order.
    pub secrets: Vec<String>,
    /// Whether it is suspended: since when, by whom, why.
    pub suspended: Option<model::Mark>,
}

/// Parses `secrets/services/SERVICE` ([`model::ServiceFile`]).
///
/// The server checked the manifest when it was set, so only `secret` lines are read here;
/// config lines, comments and blank lines are skipped.
///
/// # Errors
/// [`CliError::Unexpected`] if the first line is not `uid N` or `uid none`.
pub fn parse_service(text: &[u8]) -> Result<ServiceFile, CliError> {
    let file = model::ServiceFile::parse(text).map_err(unexpected)?;
    Ok(ServiceFile {
        uid: file.uid,
        secrets: file.secrets(),
        suspended: file.suspended,
    })
}

/// The secrets a manifest declares that are not granted, in manifest order.
pub fn missing_grants(manifest: &[String], granted: &[String]) -> Vec<String> {
    manifest
        .iter()
        .filter(|name| !granted.contains(name))
        .cloned()
        .collect()
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
                frozen: None,
                suspended: vec![],
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
                "rotation": {"state": "running", "done": 1, "total": 2},
                "frozen": null, "suspended": []
            })
        );
        let s = parse_status(
            b"frozen 1714564800\nfrozen-by admin (uid 0)\nfrozen-reason INC-1\nsuspended web\n",
        )
        .unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(
            json["frozen"],
            serde_json::json!({"since": 1_714_564_800, "by": "admin (uid 0)", "reason": "INC-1"})
        );
        assert_eq!(json["suspended"], serde_json::json!(["web"]));
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
                secrets: vec![],
                suspended: None,
            }
        );
        assert_eq!(parse_service(b"uid 0").unwrap().uid, Some(0));
        for bad in [&b"secret a\n"[..], b"uid x\n", b"", b"uid -1\n"] {
            assert!(parse_service(bad).is_err(), "{bad:?}");
        }
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
