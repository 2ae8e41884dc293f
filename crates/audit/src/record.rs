//! A record: its fields, its canonical bytes (what is hashed and signed), its stored form
//! and its exported form (a JSON line).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::time;

/// The chain of every change to the store.
pub const CHANGES: &str = "changes";
/// The chain of every open of a secret by a service's view.
pub const OPENS: &str = "opens";

/// Bytes in a hash (SHA-256).
pub const HASH_LEN: usize = 32;
/// Bytes in a signature (Ed25519).
pub const SIGNATURE_LEN: usize = 64;
/// A record's hash.
pub type Hash = [u8; HASH_LEN];
/// A record's signature.
pub type Signature = [u8; SIGNATURE_LEN];
/// The link of a chain's first record: no record before it.
pub const ZERO_HASH: Hash = [0; HASH_LEN];

/// The most bytes a text field holds (a reason holds at most 1 KiB; names 128 bytes).
pub const MAX_FIELD_LEN: usize = 4096;
/// The most parts a target or the details hold.
pub const MAX_PARTS: usize = 4096;

/// What the canonical bytes start with: the format of the record, so that no other
/// signed text of srv-secrets can pass for one.
const DOMAIN: &[u8] = b"srv-secrets/audit/v1\0";
/// The first byte of the stored form.
const STORED_FORMAT: u8 = 1;

/// Something that happened, before it takes its place in a chain: what a record holds but
/// for its chain, number, link and signature.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// When (unix milliseconds); `None`: when it is committed.
    pub time_ms: Option<u64>,
    /// On whose authority: `admin`, `service NAME`, `local` (this process on its own).
    pub principal: String,
    /// The unix uid of the connection it came over.
    pub uid: Option<u32>,
    /// The command's word (`set`, `grant`, `promote`, `rotate-key`, ..., `open`).
    pub action: String,
    /// What it acted on, by named parts (`secret`, `service`, `tier`, `deployment`, ...).
    pub target: BTreeMap<String, String>,
    /// The version it made, changed or opened.
    pub version: Option<u64>,
    /// Why, as the actor said.
    pub reason: Option<String>,
    /// How it ended: `ok`, `unchanged` (nothing to do), `refused: WHY`.
    pub result: String,
    /// Other facts (an overlap's end, a bundle's fingerprints, a count): never a value.
    pub details: BTreeMap<String, String>,
}

impl Event {
    /// An event of `action` by `principal` over `uid`, `ok`, with nothing else said yet.
    pub fn new(principal: impl Into<String>, uid: Option<u32>, action: impl Into<String>) -> Event {
        Event {
            principal: principal.into(),
            uid,
            action: action.into(),
            result: "ok".into(),
            ..Event::default()
        }
    }

    /// The same, with a target part.
    #[must_use]
    pub fn target(mut self, part: &str, value: impl Into<String>) -> Event {
        self.target.insert(part.to_owned(), value.into());
        self
    }

    /// The same, with a detail.
    #[must_use]
    pub fn detail(mut self, name: &str, value: impl ToString) -> Event {
        self.details.insert(name.to_owned(), value.to_string());
        self
    }

    /// The same, at `version`.
    #[must_use]
    pub fn version(mut self, version: u64) -> Event {
        self.version = Some(version);
        self
    }

    /// The same, with its result.
    #[must_use]
    pub fn result(mut self, result: impl Into<String>) -> Event {
        self.result = result.into();
        self
    }

    /// The same, with its reason.
    #[must_use]
    pub fn reason(mut self, reason: Option<&str>) -> Event {
        self.reason = reason.map(str::to_owned);
        self
    }

    /// The record this event makes after `head` (the chain's last record, `None` for the
    /// first) in `chain`, dated `now_ms` unless it has a time of its own; never before the
    /// record before it, so that a chain's times only go forward. Unsigned.
    ///
    /// Within the bounds a reader holds a record to ([`MAX_FIELD_LEN`], [`MAX_PARTS`]): a
    /// longer field is cut (ending in `...`), and parts past the bound are dropped (a
    /// `truncated` detail says how many), so that no change can commit a record that would
    /// make the trail unreadable from there on.
    pub fn chained(self, chain: &str, head: Option<&Head>, now_ms: u64) -> Record {
        let after = head.map_or(0, |h| h.time_ms);
        let dropped = self.target.len().saturating_sub(MAX_PARTS)
            + self.details.len().saturating_sub(MAX_PARTS);
        let target = bounded_parts(self.target);
        let mut details = bounded_parts(self.details);
        if dropped > 0 {
            if details.len() >= MAX_PARTS {
                details.pop_last();
            }
            details.insert("truncated".into(), format!("{dropped} parts"));
        }
        Record {
            chain: chain.to_owned(),
            seq: head.map_or(1, |h| h.seq + 1),
            prev: head.map_or(ZERO_HASH, |h| h.hash),
            time_ms: self.time_ms.unwrap_or(now_ms).max(after),
            principal: bounded(self.principal),
            uid: self.uid,
            action: bounded(self.action),
            target,
            version: self.version,
            reason: self.reason.map(bounded),
            result: bounded(self.result),
            details,
            sig: None,
        }
    }
}

/// `text` cut to at most [`MAX_FIELD_LEN`] bytes, at a character's boundary, ending in
/// `...` if it was cut.
fn bounded(text: String) -> String {
    if text.len() <= MAX_FIELD_LEN {
        return text;
    }
    let mut end = MAX_FIELD_LEN - 3;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

/// At most [`MAX_PARTS`] parts (the first, in order), each name and value [`bounded`].
fn bounded_parts(parts: BTreeMap<String, String>) -> BTreeMap<String, String> {
    parts
        .into_iter()
        .take(MAX_PARTS)
        .map(|(k, v)| (bounded(k), bounded(v)))
        .collect()
}

/// A chain's last record: its number, its hash, and its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Its sequence number.
    pub seq: u64,
    /// Its hash.
    #[serde(with = "hex_bytes")]
    pub hash: Hash,
    /// Its time, unix milliseconds.
    pub time_ms: u64,
}

/// `SEQ:HASH`, as `deploy audit head` prints it and `--head` takes it.
impl fmt::Display for Head {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, hex(&self.hash))
    }
}

/// One record of the audit trail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// Its chain ([`CHANGES`], [`OPENS`]).
    pub chain: String,
    /// Its place in the chain, from 1.
    pub seq: u64,
    /// The hash of the record before it in the chain ([`ZERO_HASH`] for the first).
    pub prev: Hash,
    /// When, unix milliseconds.
    pub time_ms: u64,
    /// On whose authority (see [`Event::principal`]).
    pub principal: String,
    /// The uid of the connection.
    pub uid: Option<u32>,
    /// The command's word.
    pub action: String,
    /// What it acted on.
    pub target: BTreeMap<String, String>,
    /// The version concerned.
    pub version: Option<u64>,
    /// Why.
    pub reason: Option<String>,
    /// How it ended.
    pub result: String,
    /// Other facts.
    pub details: BTreeMap<String, String>,
    /// The Ed25519 signature of [`Record::signed_bytes`], if it carries one.
    pub sig: Option<Signature>,
}

/// Why bytes or a line are not a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

fn bad(what: impl Into<String>) -> ParseError {
    ParseError(what.into())
}

impl Record {
    /// The bytes the record is hashed and signed as:
    ///
    /// ```text
    /// "srv-secrets/audit/v1\0" | str chain | u64 seq | prev (32 bytes) | u64 time_ms
    /// | str principal | opt u32 uid | str action | map target | opt u64 version
    /// | opt str reason | str result | map details
    /// ```
    ///
    /// Integers are big-endian; `str` is a u32 length and UTF-8 bytes; `opt` is a byte 0
    /// (absent) or 1 and the value; `map` is a u32 count and, in key order, each key and
    /// value as `str`. Nothing else, and nothing optional in the layout itself, so the
    /// fields say the bytes and the bytes say the fields.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            DOMAIN.len() + 96 + self.chain.len() + self.principal.len() + self.action.len(),
        );
        out.extend_from_slice(DOMAIN);
        put_str(&mut out, &self.chain);
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.prev);
        out.extend_from_slice(&self.time_ms.to_be_bytes());
        put_str(&mut out, &self.principal);
        match self.uid {
            Some(uid) => {
                out.push(1);
                out.extend_from_slice(&uid.to_be_bytes());
            }
            None => out.push(0),
        }
        put_str(&mut out, &self.action);
        put_map(&mut out, &self.target);
        match self.version {
            Some(v) => {
                out.push(1);
                out.extend_from_slice(&v.to_be_bytes());
            }
            None => out.push(0),
        }
        match &self.reason {
            Some(r) => {
                out.push(1);
                put_str(&mut out, r);
            }
            None => out.push(0),
        }
        put_str(&mut out, &self.result);
        put_map(&mut out, &self.details);
        out
    }

    /// SHA-256 of [`Record::signed_bytes`].
    pub fn hash(&self) -> Hash {
        hash_of(&self.signed_bytes())
    }

    /// The head this record makes of its chain.
    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash(),
            time_ms: self.time_ms,
        }
    }

    /// The stored form: `u8 1 | u32 len | signed bytes | u8 0 | ` or `u8 1 | signature`.
    pub fn to_stored(&self) -> Vec<u8> {
        stored(&self.signed_bytes(), self.sig.as_ref())
    }

    /// Parses the stored form, and returns the record with its hash (computed from the
    /// bytes read, so that nothing is encoded again).
    ///
    /// # Errors
    /// Bytes that are not a record.
    pub fn from_stored(bytes: &[u8]) -> Result<(Record, Hash), ParseError> {
        let mut r = Reader(bytes);
        if r.u8()? != STORED_FORMAT {
            return Err(bad("not a stored audit record of format 1"));
        }
        let len = r.u32()? as usize;
        let body = r.take(len)?;
        let mut record = Record::from_signed_bytes(body)?;
        record.sig = match r.u8()? {
            0 => None,
            1 => Some(r.array::<SIGNATURE_LEN>()?),
            _ => return Err(bad("bad signature flag")),
        };
        if !r.0.is_empty() {
            return Err(bad("trailing bytes after the record"));
        }
        Ok((record, hash_of(body)))
    }

    /// Parses canonical bytes back into the record they are of (without a signature).
    ///
    /// # Errors
    /// Bytes that are not [`Record::signed_bytes`] of any record.
    pub fn from_signed_bytes(bytes: &[u8]) -> Result<Record, ParseError> {
        let mut r = Reader(bytes);
        if r.take(DOMAIN.len())? != DOMAIN {
            return Err(bad("not an audit record of format v1"));
        }
        let chain = r.string()?;
        let seq = r.u64()?;
        let prev = r.array::<HASH_LEN>()?;
        let time_ms = r.u64()?;
        let principal = r.string()?;
        let uid = match r.u8()? {
            0 => None,
            1 => Some(r.u32()?),
            _ => return Err(bad("bad uid flag")),
        };
        let action = r.string()?;
        let target = r.map()?;
        let version = match r.u8()? {
            0 => None,
            1 => Some(r.u64()?),
            _ => return Err(bad("bad version flag")),
        };
        let reason = match r.u8()? {
            0 => None,
            1 => Some(r.string()?),
            _ => return Err(bad("bad reason flag")),
        };
        let result = r.string()?;
        let details = r.map()?;
        if !r.0.is_empty() {
            return Err(bad("trailing bytes after the record"));
        }
        Ok(Record {
            chain,
            seq,
            prev,
            time_ms,
            principal,
            uid,
            action,
            target,
            version,
            reason,
            result,
            details,
            sig: None,
        })
    }

    /// The exported form: one line of JSON (no newline), with every field the canonical
    /// bytes are made of (the time as RFC 3339 in UTC, to the millisecond), the record's
    /// hash and, if it has one, its signature, in hex.
    pub fn to_json(&self) -> String {
        self.to_json_with(&self.hash())
    }

    /// [`Record::to_json`] with the hash already known.
    pub fn to_json_with(&self, hash: &Hash) -> String {
        let json = Json {
            chain: self.chain.clone(),
            seq: self.seq,
            time: time::format_ms(self.time_ms),
            principal: self.principal.clone(),
            uid: self.uid,
            action: self.action.clone(),
            target: self.target.clone(),
            version: self.version,
            reason: self.reason.clone(),
            result: self.result.clone(),
            details: self.details.clone(),
            prev: hex(&self.prev),
            hash: Some(hex(hash)),
            sig: self.sig.as_ref().map(|s| hex(s)),
        };
        // A struct of strings, numbers and string maps always serializes.
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// Parses one exported line: the record, and the hash the line claims for it (which a
    /// verifier compares with the one it computes).
    ///
    /// # Errors
    /// A line that is not an exported record.
    pub fn from_json(line: &str) -> Result<(Record, Option<Hash>), ParseError> {
        let json: Json =
            serde_json::from_str(line).map_err(|e| bad(format!("not an audit record: {e}")))?;
        let time_ms =
            time::parse_time(&json.time).ok_or_else(|| bad("time is not an RFC 3339 time"))?;
        let prev =
            parse_hex::<HASH_LEN>(&json.prev).ok_or_else(|| bad("prev is not 64 hex digits"))?;
        let hash = json
            .hash
            .as_deref()
            .map(|h| parse_hex::<HASH_LEN>(h).ok_or_else(|| bad("hash is not 64 hex digits")))
            .transpose()?;
        let sig = json
            .sig
            .as_deref()
            .map(|s| parse_hex::<SIGNATURE_LEN>(s).ok_or_else(|| bad("sig is not 128 hex digits")))
            .transpose()?;
        let record = Record {
            chain: json.chain,
            seq: json.seq,
            prev,
            time_ms,
            principal: json.principal,
            uid: json.uid,
            action: json.action,
            target: json.target,
            version: json.version,
            reason: json.reason,
            result: json.result,
            details: json.details,
            sig,
        };
        Ok((record, hash))
    }
}

/// The exported form's fields, in the order a reader expects them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Json {
    chain: String,
    seq: u64,
    time: String,
    principal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    uid: Option<u32>,
    action: String,
    #[serde(default)]
    target: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    result: String,
    #[serde(default)]
    details: BTreeMap<String, String>,
    prev: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hash: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    sig: Option<String>,
}

/// The stored form of a record whose [`Record::signed_bytes`] are `body` (made once, for
/// its hash and its signature too), with its signature if it has one.
pub fn stored(body: &[u8], sig: Option<&Signature>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 6 + SIGNATURE_LEN);
    out.push(STORED_FORMAT);
    out.extend_from_slice(&len_u32(body.len()).to_be_bytes());
    out.extend_from_slice(body);
    match sig {
        Some(sig) => {
            out.push(1);
            out.extend_from_slice(sig);
        }
        None => out.push(0),
    }
    out
}

/// SHA-256 of `bytes`: a record's hash, from its [`Record::signed_bytes`].
pub fn hash_of(bytes: &[u8]) -> Hash {
    Sha256::digest(bytes).into()
}

fn len_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&len_u32(s.len()).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_map(out: &mut Vec<u8>, map: &BTreeMap<String, String>) {
    out.extend_from_slice(&len_u32(map.len()).to_be_bytes());
    for (k, v) in map {
        put_str(out, k);
        put_str(out, v);
    }
}

/// A bounded reader of canonical bytes: every length is checked before it is used.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], ParseError> {
        if self.0.len() < n {
            return Err(bad("the record is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ParseError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, ParseError> {
        Ok(self.array::<1>()?[0])
    }

    fn u32(&mut self) -> Result<u32, ParseError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, ParseError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let len = self.u32()? as usize;
        if len > MAX_FIELD_LEN {
            return Err(bad(
                "a field is longer than an audit record's fields may be",
            ));
        }
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad("a field is not UTF-8"))
    }

    fn map(&mut self) -> Result<BTreeMap<String, String>, ParseError> {
        let n = self.u32()? as usize;
        if n > MAX_PARTS {
            return Err(bad("too many parts"));
        }
        let mut map = BTreeMap::new();
        let mut last: Option<String> = None;
        for _ in 0..n {
            let k = self.string()?;
            let v = self.string()?;
            // In key order, each once: the one encoding of the map.
            if last.as_ref().is_some_and(|l| *l >= k) {
                return Err(bad("parts out of order"));
            }
            last = Some(k.clone());
            map.insert(k, v);
        }
        Ok(map)
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// `N` bytes from exactly `2N` hex digits (either case).
pub fn parse_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Serde of a hash as hex.
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(h: &super::Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(h))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::Hash, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_hex(&text).ok_or_else(|| serde::de::Error::custom("not 64 hex digits"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn an_event_too_large_for_a_reader_makes_a_record_it_can_read() {
        let mut e = Event::new("admin", Some(0), "revoke-all")
            .target("secret", "db")
            .detail("services", "svc,".repeat(5000))
            .reason(Some(&"é".repeat(3000)));
        for i in 0..MAX_PARTS + 10 {
            e = e.detail(&format!("x{i:05}"), i);
        }
        let r = e.chained(CHANGES, None, 1);
        let (back, _) = Record::from_stored(&r.to_stored()).unwrap();
        assert_eq!(back, r);
        assert!(
            back.details["services"].ends_with("...")
                && back.details["services"].len() <= MAX_FIELD_LEN
        );
        assert!(back.reason.as_ref().unwrap().len() <= MAX_FIELD_LEN);
        assert_eq!(back.details.len(), MAX_PARTS);
        assert_eq!(back.details["truncated"], "11 parts");
        let (json, _) = Record::from_json(&r.to_json()).unwrap();
        assert_eq!(json, r);
    }

    fn sample() -> Record {
        Event::new("admin", Some(1000), "grant")
            .target("secret", "db")
            .target("service", "web")
            .detail("expires", 1_700_000_100)
            .reason(Some("ticket 7"))
            .chained(CHANGES, None, 1_700_000_000_123)
    }

    #[test]
    fn every_form_reads_back_as_written() {
        let mut r = sample();
        r.sig = Some([7; SIGNATURE_LEN]);
        let (back, hash) = Record::from_stored(&r.to_stored()).unwrap();
        assert_eq!(back, r);
        assert_eq!(hash, r.hash());
        let (back, claimed) = Record::from_json(&r.to_json()).unwrap();
        assert_eq!(back, r);
        assert_eq!(claimed, Some(r.hash()));
        assert_eq!(
            Record::from_signed_bytes(&r.signed_bytes()).unwrap().sig,
            None
        );
        let line = r.to_json();
        assert!(line.starts_with(r#"{"chain":"changes","seq":1,"time":"2023-11-14T22:13:20.123Z","principal":"admin","uid":1000,"action":"grant","target":{"secret":"db","service":"web"}"#), "{line}");
    }

    #[test]
    fn a_chain_links_and_dates_forward() {
        let first = sample();
        let second = Event::new("local", None, "expire").chained(CHANGES, Some(&first.head()), 5);
        assert_eq!(second.seq, 2);
        assert_eq!(second.prev, first.hash());
        // The clock went back; the chain does not.
        assert_eq!(second.time_ms, first.time_ms);
    }

    #[test]
    fn bad_bytes_are_refused_not_misread() {
        let bytes = sample().to_stored();
        for cut in 0..bytes.len() {
            assert!(Record::from_stored(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::from_stored(&longer).is_err());
        assert!(Record::from_json("{}").is_err());
        assert!(Record::from_json("not json").is_err());
    }

    proptest! {
        #[test]
        fn canonical_bytes_decode_to_the_same_record(
            seq in 1u64.., time in 0u64..253_402_300_800_000, uid in any::<Option<u32>>(),
            action in "[a-z-]{1,12}", reason in proptest::option::of(".{0,40}"),
            version in any::<Option<u64>>(),
            target in proptest::collection::btree_map("[a-z]{1,8}", ".{0,20}", 0..4),
            details in proptest::collection::btree_map("[a-z]{1,8}", ".{0,20}", 0..4),
        ) {
            let r = Record {
                chain: OPENS.into(), seq, prev: [3; HASH_LEN], time_ms: time,
                principal: "service web".into(), uid, action, target, version, reason,
                result: "ok".into(), details, sig: None,
            };
            let back = Record::from_signed_bytes(&r.signed_bytes()).unwrap();
            prop_assert_eq!(&back, &r);
            let (json, _) = Record::from_json(&r.to_json()).unwrap();
            prop_assert_eq!(json, r);
        }
    }
}
