//! The cluster key file.
//!
//! ```text
//! srv-secrets key file v1
//! key 1 0f1e...(64 hex digits)
//! audit 9a8b...(64 hex digits)
//! token 5c4d...(64 hex digits)
//! ```
//!
//! A header line, then one `key <id> <64 hex digits>` line per key: one normally, two while
//! a rotation is in flight. Ids are decimal u32 without leading zeros, starting at 1. Then,
//! from store format 6, one `audit <64 hex digits>` line: the seed of the audit trail's
//! Ed25519 signing key, kept here beside the cluster key so that whoever may hold one holds
//! both (and a node given the key file signs with the same key), and never anywhere else:
//! the store holds only its public key. Then one `token <64 hex digits>` line: the key
//! that API tokens are hashed under (`tokens.rs`), kept here for the same reasons, and
//! apart from the cluster keys so that a key rotation leaves every token working (the
//! store holds only each token's keyed hash). A key file without it (written before
//! tokens) gets one at the next open. Every line ends in `\n`. Parsing is strict, and no
//! error carries a byte of the file: only the path, a line number and a fixed reason.
//!
//! The file is owner-only from creation (mode 0600 at `open`, never chmod-ed later), and
//! replaced atomically with [`fsutil::write_atomic`]. A file open to group or others, or
//! owned by a uid that is neither this process's nor root, is refused on read.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use zeroize::Zeroizing;

use crate::crypto::{KEY_LEN, Key};
use crate::error::{Error, Result};
use crate::fsutil;

/// The first line of every key file.
pub(crate) const HEADER: &str = "srv-secrets key file v1";

/// Bound on the file size: a header and two key lines are under 200 bytes.
const MAX_LEN: usize = 4096;

/// At most the active key and a rotation target.
const MAX_KEYS: usize = 2;

/// The seed of the audit trail's signing key.
pub(crate) type AuditSeed = Zeroizing<[u8; KEY_LEN]>;

/// The key API tokens are hashed under.
pub(crate) type TokenSeed = Zeroizing<[u8; KEY_LEN]>;

/// What a key file holds.
pub(crate) struct KeyFile {
    /// The cluster keys.
    pub(crate) keys: Vec<Key>,
    /// The audit signing key's seed (absent from key files written before store format 6).
    pub(crate) audit: Option<AuditSeed>,
    /// The tokens' hash key (absent from key files written before store format 7).
    pub(crate) token: Option<TokenSeed>,
}

/// The keys a key file keeps beside the cluster keys, written with them every time.
#[derive(Clone, Copy, Default)]
pub(crate) struct Seeds<'a> {
    /// The audit signing key's seed.
    pub(crate) audit: Option<&'a AuditSeed>,
    /// The tokens' hash key.
    pub(crate) token: Option<&'a TokenSeed>,
}

/// The cluster keys of the key file (see [`read_file`]).
pub(crate) fn read(path: &Path) -> Result<Vec<Key>> {
    read_file(path).map(|f| f.keys)
}

/// Reads and parses the key file, refusing one that group or others may access, or that
/// belongs to another uid than ours or root's.
pub(crate) fn read_file(path: &Path) -> Result<KeyFile> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::KeyFileMissing {
            path: path.to_path_buf(),
        },
        _ => Error::io("opening key file", path)(e),
    })?;
    // fstat on the open file: the mode checked is the mode of the file read.
    let meta = file
        .metadata()
        .map_err(Error::io("reading metadata of key file", path))?;
    if !meta.is_file() {
        return Err(Error::KeyFile {
            path: path.to_path_buf(),
            line: 0,
            reason: "not a regular file",
        });
    }
    fsutil::check_owner("key file", path, &meta, fsutil::euid())?;
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(Error::KeyPermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    // A fixed buffer, not a growing Vec: reallocation would leave key copies in freed memory.
    let mut buf = Zeroizing::new([0u8; MAX_LEN]);
    let mut len = 0;
    loop {
        if len == MAX_LEN {
            return Err(Error::KeyFile {
                path: path.to_path_buf(),
                line: 0,
                reason: "file too large to be a key file",
            });
        }
        match file.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading key file", path)(e)),
        }
    }
    parse_file(&buf[..len]).map_err(|(line, reason)| Error::KeyFile {
        path: path.to_path_buf(),
        line,
        reason,
    })
}

/// Writes `keys` and the `seeds` beside them as the new key file, atomically and durably.
pub(crate) fn write(path: &Path, keys: &[&Key], seeds: Seeds<'_>) -> Result<()> {
    let mut text = Zeroizing::new(String::with_capacity(
        HEADER.len() + 1 + (keys.len() + 2) * (2 * KEY_LEN + 20),
    ));
    text.push_str(HEADER);
    text.push('\n');
    for key in keys {
        text.push_str("key ");
        text.push_str(&key.id().to_string());
        text.push(' ');
        text.push_str(&key.hex());
        text.push('\n');
    }
    for (word, seed) in [("audit ", seeds.audit), ("token ", seeds.token)] {
        let Some(seed) = seed else { continue };
        text.push_str(word);
        for b in seed.iter() {
            text.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
            text.push(char::from(HEX_DIGITS[usize::from(b & 15)]));
        }
        text.push('\n');
    }
    fsutil::write_atomic(path, text.as_bytes())
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Parses key file contents; errors are (line, reason).
#[cfg(test)]
fn parse(bytes: &[u8]) -> Result<Vec<Key>, (usize, &'static str)> {
    parse_file(bytes).map(|f| f.keys)
}

/// Parses key file contents, the audit seed too; errors are (line, reason).
fn parse_file(bytes: &[u8]) -> Result<KeyFile, (usize, &'static str)> {
    let text = std::str::from_utf8(bytes).map_err(|_| (0, "not valid UTF-8"))?;
    let Some(body) = text.strip_suffix('\n') else {
        return Err((0, "missing final newline (or empty file)"));
    };
    let mut lines = body.split('\n').enumerate().map(|(i, l)| (i + 1, l));
    match lines.next() {
        Some((_, HEADER)) => {}
        _ => return Err((1, "first line is not `srv-secrets key file v1`")),
    }
    let mut keys = Vec::new();
    let mut audit = None;
    let mut token = None;
    let mut seen = BTreeSet::new();
    for (n, line) in lines {
        if let Some(hex) = line.strip_prefix("token ") {
            // After the keys, once (before or after the audit key).
            if token.is_some() {
                return Err((n, "more than one token key"));
            }
            token = Some(parse_hex(hex).ok_or((n, "token key is not exactly 64 hex digits"))?);
            continue;
        }
        if let Some(hex) = line.strip_prefix("audit ") {
            // After the keys, once.
            if audit.is_some() {
                return Err((n, "more than one audit key"));
            }
            audit = Some(parse_hex(hex).ok_or((n, "audit key is not exactly 64 hex digits"))?);
            continue;
        }
        let mut fields = line.split(' ');
        let (Some("key"), Some(id), Some(hex), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err((n, "expected `key <id> <64 hex digits>`"));
        };
        if audit.is_some() || token.is_some() {
            return Err((n, "a key line after the audit or token key"));
        }
        let id = parse_id(id).ok_or((n, "key id is not a decimal number from 1 to 4294967295"))?;
        let bytes = parse_hex(hex).ok_or((n, "key is not exactly 64 hex digits"))?;
        if !seen.insert(id) {
            return Err((n, "duplicate key id"));
        }
        if keys.len() == MAX_KEYS {
            return Err((n, "more than two keys"));
        }
        keys.push(Key::from_bytes(id, bytes).map_err(|_| (n, "unusable key"))?);
    }
    if keys.is_empty() {
        return Err((1, "no key line"));
    }
    Ok(KeyFile { keys, audit, token })
}

fn parse_id(s: &str) -> Option<u32> {
    let canonical = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    canonical.then(|| s.parse().ok()).flatten()
}

fn parse_hex(s: &str) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let digits = s.as_bytes();
    if digits.len() != 2 * KEY_LEN {
        return None;
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    const HEX: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ids(text: &str) -> Result<Vec<u32>, (usize, &'static str)> {
        parse(text.as_bytes()).map(|keys| keys.iter().map(Key::id).collect())
    }

    #[test]
    fn parses_one_and_two_keys() {
        assert_eq!(ids(&format!("{HEADER}\nkey 1 {HEX}\n")), Ok(vec![1]));
        assert_eq!(
            ids(&format!("{HEADER}\nkey 1 {HEX}\nkey 2 {HEX}\n")),
            Ok(vec![1, 2])
        );
        let upper = HEX.to_uppercase();
        assert_eq!(
            ids(&format!("{HEADER}\nkey 4294967295 {upper}\n")),
            Ok(vec![u32::MAX])
        );
    }

    #[test]
    fn strict() {
        let bad = [
            (String::new(), 0),
            (format!("{HEADER}\nkey 1 {HEX}"), 0),
            (format!("{HEADER}\n"), 1),
            (format!("srv-secrets key file v2\nkey 1 {HEX}\n"), 1),
            (format!("{HEADER}\nkey 0 {HEX}\n"), 2),
            (format!("{HEADER}\nkey 01 {HEX}\n"), 2),
            (format!("{HEADER}\nkey +1 {HEX}\n"), 2),
            (format!("{HEADER}\nkey 4294967296 {HEX}\n"), 2),
            (format!("{HEADER}\nkey 1 {}\n", &HEX[1..]), 2),
            (format!("{HEADER}\nkey 1 {}g\n", &HEX[1..]), 2),
            (format!("{HEADER}\nkey 1  {HEX}\n"), 2),
            (format!("{HEADER}\nkey 1 {HEX} \n"), 2),
            (format!("{HEADER}\nkey 1 {HEX}\r\n"), 2),
            (format!("{HEADER}\n\nkey 1 {HEX}\n"), 2),
            (format!("{HEADER}\nkey 1 {HEX}\nkey 1 {HEX}\n"), 3),
            (
                format!("{HEADER}\nkey 1 {HEX}\nkey 2 {HEX}\nkey 3 {HEX}\n"),
                4,
            ),
            (format!("{HEADER}\nkey 1 {HEX}\naudit {}\n", &HEX[1..]), 3),
            (
                format!("{HEADER}\nkey 1 {HEX}\naudit {HEX}\naudit {HEX}\n"),
                4,
            ),
            (
                format!("{HEADER}\nkey 1 {HEX}\naudit {HEX}\nkey 2 {HEX}\n"),
                4,
            ),
            (format!("{HEADER}\naudit {HEX}\n"), 1),
            (format!("{HEADER}\nkey 1 {HEX}\ntoken {}\n", &HEX[1..]), 3),
            (
                format!("{HEADER}\nkey 1 {HEX}\ntoken {HEX}\ntoken {HEX}\n"),
                4,
            ),
            (
                format!("{HEADER}\nkey 1 {HEX}\ntoken {HEX}\nkey 2 {HEX}\n"),
                4,
            ),
            (format!("{HEADER}\ntoken {HEX}\n"), 1),
        ];
        for (text, line) in bad {
            let got = ids(&text);
            assert!(matches!(got, Err((l, _)) if l == line), "{text:?}: {got:?}");
        }
    }

    #[test]
    fn write_then_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let (a, b) = (Key::generate(1).unwrap(), Key::generate(2).unwrap());
        let seed = Zeroizing::new([0xa5; KEY_LEN]);
        let token = Zeroizing::new([0x5a; KEY_LEN]);
        let seeds = Seeds {
            audit: Some(&seed),
            token: Some(&token),
        };
        write(&path, &[&a, &b], seeds).unwrap();
        let file = read_file(&path).unwrap();
        assert_eq!(*file.audit.unwrap(), *seed);
        assert_eq!(*file.token.unwrap(), *token);
        let keys = read(&path).unwrap();
        assert_eq!(keys.iter().map(Key::id).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(*keys[0].hex(), *a.hex());
        assert_eq!(*keys[1].hex(), *b.hex());
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        // Either may be absent; a token key without an audit key is read too, and the
        // two in either order.
        write(
            &path,
            &[&a],
            Seeds {
                audit: None,
                token: Some(&token),
            },
        )
        .unwrap();
        let file = read_file(&path).unwrap();
        assert!(file.audit.is_none());
        assert_eq!(*file.token.unwrap(), *token);
        let hex = |b: u8| format!("{b:02x}").repeat(KEY_LEN);
        let text = format!(
            "{HEADER}\nkey 1 {}\ntoken {}\naudit {}\n",
            HEX,
            hex(0x5a),
            hex(0xa5)
        );
        let file = parse_file(text.as_bytes()).unwrap();
        assert_eq!(
            (*file.audit.unwrap(), *file.token.unwrap()),
            (*seed, *token)
        );
    }

    #[test]
    fn refuses_open_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, &[&Key::generate(1).unwrap()], Seeds::default()).unwrap();
        for mode in [0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = read(&path).unwrap_err();
            assert!(matches!(err, Error::KeyPermissions { .. }), "{err:?}");
            assert!(err.to_string().contains("chmod 600"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read(&path).is_ok());
    }

    #[test]
    fn a_missing_key_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let err = read(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFileMissing { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("key file {} does not exist; ", path.display())),
            "{msg}"
        );
        assert!(!msg.contains("os error"), "{msg}");
    }

    #[test]
    fn refuses_another_users_key_file() {
        if fsutil::euid() != 0 {
            eprintln!("skipping: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        write(&path, &[&Key::generate(1).unwrap()], Seeds::default()).unwrap();
        std::os::unix::fs::chown(&path, Some(1705), None).unwrap();
        let err = read(&path).unwrap_err();
        assert!(
            matches!(
                err,
                Error::ForeignOwner {
                    what: "key file",
                    owner: 1705,
                    ..
                }
            ),
            "{err:?}"
        );
        std::os::unix::fs::chown(&path, Some(0), None).unwrap();
        assert!(read(&path).is_ok());
    }

    #[test]
    fn errors_carry_no_key_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        let text = format!("{HEADER}\nkey 1 {HEX}\nkey 1 {HEX}\n");
        fsutil::write_atomic(&path, text.as_bytes()).unwrap();
        let msg = read(&path).unwrap_err().to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(!msg.contains(&HEX[..8]), "{msg}");
    }

    #[test]
    fn oversized_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        fsutil::write_atomic(&path, &vec![b'k'; MAX_LEN + 1]).unwrap();
        let err = read(&path).unwrap_err();
        assert!(matches!(err, Error::KeyFile { line: 0, .. }), "{err:?}");
        assert!(
            err.to_string()
                .ends_with("key: file too large to be a key file"),
            "{err}"
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(keys) = parse(&bytes) {
                prop_assert!((1..=MAX_KEYS).contains(&keys.len()));
            }
        }

        #[test]
        fn parse_line_mutations(i in 0usize..100, c in any::<u8>()) {
            // One changed byte of a valid file either still parses or is refused by line.
            let mut text = format!("{HEADER}\nkey 1 {HEX}\n").into_bytes();
            let i = i % text.len();
            text[i] = c;
            if let Err((line, _)) = parse(&text) {
                prop_assert!(line <= 2);
            }
        }
    }
}
