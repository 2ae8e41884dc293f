//! Verification of a log: every link and every signature, chain by chain, with the public
//! key alone; and, against heads recorded elsewhere, that no tail was cut.
//!
//! [`Verifier`] takes records one at a time (a log of a million records is never held
//! whole), in the order the log has them; records of different chains may be interleaved,
//! each chain's in its own order. It stops at the first bad record and names it.

use std::collections::BTreeMap;
use std::fmt;

use crate::key::PublicKey;
use crate::record::{Hash, Head, Record, ZERO_HASH, hex, parse_hex};

/// A head a log must reach: from `deploy audit head`, kept elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// The chain.
    pub chain: String,
    /// Its sequence number.
    pub seq: u64,
    /// The hash of that record.
    pub hash: Hash,
}

impl Expected {
    /// Reads `[CHAIN:]SEQ:HASH` (the chain defaults to `default_chain`).
    pub fn parse(text: &str, default_chain: &str) -> Option<Expected> {
        let mut parts: Vec<&str> = text.trim().split(':').collect();
        let hash = parse_hex(parts.pop()?)?;
        let seq = parts.pop()?.parse().ok().filter(|&s| s > 0)?;
        let chain = match parts.as_slice() {
            [] => default_chain.to_owned(),
            [chain] if !chain.is_empty() => (*chain).to_owned(),
            _ => return None,
        };
        Some(Expected { chain, seq, hash })
    }
}

/// What a whole log showed: each chain's last record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Each chain's head, by chain.
    pub heads: BTreeMap<String, Head>,
    /// How many records.
    pub records: u64,
    /// How many signatures were checked.
    pub signatures: u64,
}

/// The first bad record, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bad {
    /// The chain.
    pub chain: String,
    /// The record's sequence number, if it is one record's fault.
    pub seq: Option<u64>,
    /// Its line in the log, if the log has lines (counted from 1).
    pub line: Option<u64>,
    /// What is wrong, and what it means.
    pub what: String,
}

impl fmt::Display for Bad {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        match self.seq {
            Some(seq) => write!(f, "{} record {seq}: {}", self.chain, self.what),
            None => write!(f, "{}: {}", self.chain, self.what),
        }
    }
}

impl std::error::Error for Bad {}

/// Where a chain stands so far.
struct Track {
    head: Head,
    /// Whether its last record carries a signature (which vouches for all before it).
    signed: bool,
}

/// Checks a log record by record: see the module documentation.
pub struct Verifier {
    key: PublicKey,
    chains: BTreeMap<String, Track>,
    /// The heads the log must reach, by chain (seq, hash); checked as the record passes.
    expected: BTreeMap<String, (u64, Hash)>,
    /// Those whose record has gone by and matched.
    reached: BTreeMap<String, bool>,
    records: u64,
    signatures: u64,
}

impl Verifier {
    /// A verifier of logs signed with `key`.
    pub fn new(key: PublicKey) -> Verifier {
        Verifier {
            key,
            chains: BTreeMap::new(),
            expected: BTreeMap::new(),
            reached: BTreeMap::new(),
            records: 0,
            signatures: 0,
        }
    }

    /// Requires the log to reach `head` (a head recorded earlier, elsewhere): a log that
    /// ends before it was cut, and one whose record there differs was rewritten.
    pub fn expect(&mut self, head: Expected) {
        self.reached.insert(head.chain.clone(), false);
        self.expected.insert(head.chain, (head.seq, head.hash));
    }

    /// Checks the next record of the log: `claimed` is the hash the log says it has (an
    /// exported line carries one), `line` where it is.
    ///
    /// # Errors
    /// The first thing wrong with it.
    pub fn push(
        &mut self,
        record: &Record,
        claimed: Option<&Hash>,
        line: Option<u64>,
    ) -> Result<(), Bad> {
        let hash = record.hash();
        self.push_hashed(record, &hash, claimed, line)
    }

    /// [`Verifier::push`] of a record whose hash is already computed (from the stored
    /// bytes).
    ///
    /// # Errors
    /// As [`Verifier::push`].
    pub fn push_hashed(
        &mut self,
        record: &Record,
        hash: &Hash,
        claimed: Option<&Hash>,
        line: Option<u64>,
    ) -> Result<(), Bad> {
        let bad = |what: String| Bad {
            chain: record.chain.clone(),
            seq: Some(record.seq),
            line,
            what,
        };
        if claimed.is_some_and(|c| c != hash) {
            return Err(bad(
                "its contents do not match its hash: it was changed".into()
            ));
        }
        let (expected_seq, expected_prev) = match self.chains.get(&record.chain) {
            Some(t) => (t.head.seq + 1, t.head.hash),
            None => (1, ZERO_HASH),
        };
        if record.seq != expected_seq {
            let what = if record.seq > expected_seq {
                if expected_seq == 1 {
                    format!(
                        "the chain starts here, not at record 1: records 1 to {} are missing",
                        record.seq - 1
                    )
                } else if record.seq == expected_seq + 1 {
                    format!(
                        "comes after record {}: record {expected_seq} was removed, or records were reordered",
                        expected_seq - 1
                    )
                } else {
                    format!(
                        "comes after record {}: records {expected_seq} to {} were removed, or records were reordered",
                        expected_seq - 1,
                        record.seq - 1
                    )
                }
            } else {
                format!(
                    "comes after record {}: a record was inserted, or records were reordered",
                    expected_seq - 1
                )
            };
            return Err(bad(what));
        }
        if record.prev != expected_prev {
            let what = if expected_seq == 1 {
                "is the chain's first but links to a record before it".to_owned()
            } else {
                format!(
                    "does not link to record {}: one of the two was changed, or a record put in between",
                    expected_seq - 1
                )
            };
            return Err(bad(what));
        }
        if let Some(sig) = &record.sig {
            if !self.key.verifies(&record.signed_bytes(), sig) {
                return Err(bad(
                    "its signature does not verify with the public key: it (or a record before it) was changed and re-hashed, or it was signed with another key".into(),
                ));
            }
            self.signatures += 1;
        }
        if let Some(&(seq, want)) = self.expected.get(&record.chain)
            && seq == record.seq
        {
            if want != *hash {
                return Err(bad(format!(
                    "differs from the head given ({seq}:{}): the log was rewritten since that head was taken",
                    hex(&want)
                )));
            }
            self.reached.insert(record.chain.clone(), true);
        }
        self.chains.insert(
            record.chain.clone(),
            Track {
                head: Head {
                    seq: record.seq,
                    hash: *hash,
                    time_ms: record.time_ms,
                },
                signed: record.sig.is_some(),
            },
        );
        self.records += 1;
        Ok(())
    }

    /// The log is over: every chain must end with a signed record, and reach the heads
    /// expected.
    ///
    /// # Errors
    /// A chain cut short.
    pub fn finish(self) -> Result<Summary, Bad> {
        for (chain, t) in &self.chains {
            if !t.signed {
                return Err(Bad {
                    chain: chain.clone(),
                    seq: Some(t.head.seq),
                    line: None,
                    what:
                        "is the chain's last, and no signature covers it: the log was cut after it"
                            .into(),
                });
            }
        }
        for (chain, reached) in &self.reached {
            if *reached {
                continue;
            }
            let (seq, _) = self.expected[chain];
            let what = match self.chains.get(chain) {
                Some(t) => format!(
                    "ends at record {}, before the head given (record {seq}): its tail was cut off",
                    t.head.seq
                ),
                None => {
                    format!("has no record, but the head given is record {seq}: the log was cut")
                }
            };
            return Err(Bad {
                chain: chain.clone(),
                seq: None,
                line: None,
                what,
            });
        }
        Ok(Summary {
            heads: self
                .chains
                .into_iter()
                .map(|(chain, t)| (chain, t.head))
                .collect(),
            records: self.records,
            signatures: self.signatures,
        })
    }
}

/// Verifies a whole log: the records in order, each with the hash the log claims for it;
/// `expected` heads reached.
///
/// # Errors
/// The first bad record.
pub fn verify<'a>(
    records: impl IntoIterator<Item = (&'a Record, Option<&'a Hash>)>,
    key: PublicKey,
    expected: impl IntoIterator<Item = Expected>,
) -> Result<Summary, Bad> {
    let mut v = Verifier::new(key);
    for head in expected {
        v.expect(head);
    }
    for (i, (record, claimed)) in records.into_iter().enumerate() {
        v.push(record, claimed, Some(i as u64 + 1))?;
    }
    v.finish()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use zeroize::Zeroizing;

    use super::*;
    use crate::key::SigningKey;
    use crate::record::{CHANGES, Event, OPENS};

    fn key() -> SigningKey {
        SigningKey::from_seed(&Zeroizing::new([5; 32]))
    }

    /// `n` records of `changes`, each signed, and of `opens` signed every `batch`.
    fn log(n: u64, batch: u64) -> Vec<Record> {
        let key = key();
        let mut out = Vec::new();
        let (mut changes, mut opens): (Option<Head>, Option<Head>) = (None, None);
        for i in 0..n {
            let mut c = Event::new("admin", Some(0), "set")
                .target("secret", format!("s{i}"))
                .version(i + 1)
                .chained(CHANGES, changes.as_ref(), 1000 + i);
            c.sig = Some(key.sign(&c.signed_bytes()));
            changes = Some(c.head());
            out.push(c);
            let mut o = Event::new("service web", Some(1001), "open")
                .target("secret", format!("s{i}"))
                .chained(OPENS, opens.as_ref(), 1000 + i);
            if (i + 1) % batch == 0 || i + 1 == n {
                o.sig = Some(key.sign(&o.signed_bytes()));
            }
            opens = Some(o.head());
            out.push(o);
        }
        out
    }

    fn check(records: &[Record], expected: Vec<Expected>) -> Result<Summary, Bad> {
        verify(records.iter().map(|r| (r, None)), key().public(), expected)
    }

    fn at(records: &[Record], chain: &str, seq: u64) -> usize {
        records
            .iter()
            .position(|r| r.chain == chain && r.seq == seq)
            .unwrap()
    }

    #[test]
    fn a_whole_log_verifies_and_says_its_heads() {
        let records = log(10, 4);
        let s = check(&records, vec![]).unwrap();
        assert_eq!(s.records, 20);
        assert_eq!(s.heads[CHANGES].seq, 10);
        assert_eq!(s.heads[OPENS].seq, 10);
        // 10 changes, and opens 4, 8, 10.
        assert_eq!(s.signatures, 13);
        // Against its own heads, taken earlier or now.
        let head = records[at(&records, CHANGES, 7)].head();
        let expected = Expected::parse(&format!("{head}"), CHANGES).unwrap();
        check(&records, vec![expected]).unwrap();
        let opens = Expected::parse(&format!("opens:{}", s.heads[OPENS]), CHANGES).unwrap();
        check(&records, vec![opens]).unwrap();
    }

    #[test]
    fn a_changed_record_is_named() {
        let mut records = log(10, 4);
        let i = at(&records, CHANGES, 5);
        records[i].reason = Some("nothing to see".into());
        let e = check(&records, vec![]).unwrap_err();
        assert_eq!((e.chain.as_str(), e.seq), (CHANGES, Some(5)));
        assert!(e.what.contains("signature"), "{e}");
        // Exported, with the hash the line claims: that record, by its hash.
        let claimed = log(10, 4)[i].hash();
        let e = verify(
            records
                .iter()
                .enumerate()
                .map(|(j, r)| (r, (j == i).then_some(&claimed))),
            key().public(),
            [],
        )
        .unwrap_err();
        assert_eq!(e.seq, Some(5));
        assert!(e.what.contains("do not match its hash"), "{e}");
        // An unsigned open changed: the link after it breaks.
        let mut records = log(10, 4);
        let i = at(&records, OPENS, 2);
        records[i].uid = Some(0);
        let e = check(&records, vec![]).unwrap_err();
        assert_eq!((e.chain.as_str(), e.seq), (OPENS, Some(3)));
        assert!(e.what.contains("does not link to record 2"), "{e}");
    }

    #[test]
    fn removed_inserted_and_reordered_records_are_named() {
        let records = log(10, 4);
        let mut removed = records.clone();
        removed.remove(at(&records, CHANGES, 4));
        let e = check(&removed, vec![]).unwrap_err();
        assert_eq!(e.seq, Some(5));
        assert!(e.what.contains("record 4 was removed"), "{e}");
        let mut inserted = records.clone();
        let copy = inserted[at(&records, CHANGES, 3)].clone();
        inserted.insert(at(&records, CHANGES, 6), copy);
        let e = check(&inserted, vec![]).unwrap_err();
        assert_eq!(e.seq, Some(3));
        assert!(e.what.contains("inserted"), "{e}");
        let mut reordered = records.clone();
        let (a, b) = (at(&records, CHANGES, 6), at(&records, CHANGES, 7));
        reordered.swap(a, b);
        let e = check(&reordered, vec![]).unwrap_err();
        assert_eq!(e.seq, Some(7));
        assert!(e.what.contains("removed, or records were reordered"), "{e}");
    }

    #[test]
    fn a_cut_tail_is_caught_unsigned_or_against_a_head() {
        let records = log(10, 4);
        let head = Expected::parse(
            &records[at(&records, CHANGES, 10)].head().to_string(),
            CHANGES,
        )
        .unwrap();
        // Cut after a signed record: only the head given shows it.
        let cut: Vec<Record> = records
            .iter()
            .filter(|r| !(r.chain == CHANGES && r.seq > 8))
            .cloned()
            .collect();
        check(&cut, vec![]).unwrap();
        let e = check(&cut, vec![head.clone()]).unwrap_err();
        assert_eq!(e.chain, CHANGES);
        assert!(
            e.what
                .contains("ends at record 8, before the head given (record 10)"),
            "{e}"
        );
        // Cut within a batch of opens: no signature covers the last one.
        let cut: Vec<Record> = records
            .iter()
            .filter(|r| !(r.chain == OPENS && r.seq > 6))
            .cloned()
            .collect();
        let e = check(&cut, vec![]).unwrap_err();
        assert_eq!((e.chain.as_str(), e.seq), (OPENS, Some(6)));
        assert!(e.what.contains("no signature covers it"), "{e}");
        // A head that the log passes with another record there: rewritten.
        let mut wrong = head;
        wrong.hash[0] ^= 1;
        let e = check(&records, vec![wrong]).unwrap_err();
        assert!(e.what.contains("differs from the head given"), "{e}");
    }

    #[test]
    fn a_rehashed_forgery_fails_by_its_signature() {
        let mut records = log(10, 4);
        // Change open 5 (unsigned) and make every later open link again: the first
        // signature after it (open 8's) does not verify.
        let i = at(&records, OPENS, 5);
        records[i].target.insert("secret".into(), "other".into());
        let mut prev = records[i].hash();
        for seq in 6..=10 {
            let j = at(&records, OPENS, seq);
            records[j].prev = prev;
            prev = records[j].hash();
        }
        let e = check(&records, vec![]).unwrap_err();
        assert_eq!((e.chain.as_str(), e.seq), (OPENS, Some(8)));
        assert!(e.what.contains("signature does not verify"), "{e}");
        // Signed with another key throughout: the first signature fails.
        let e = verify(
            log(3, 1).iter().map(|r| (r, None)),
            SigningKey::from_seed(&Zeroizing::new([6; 32])).public(),
            [],
        )
        .unwrap_err();
        assert_eq!(e.seq, Some(1));
    }

    #[test]
    fn heads_parse_with_or_without_a_chain() {
        let h = format!("12:{}", "ab".repeat(32));
        assert_eq!(Expected::parse(&h, CHANGES).unwrap().chain, CHANGES);
        assert_eq!(
            Expected::parse(&format!("opens:{h}"), CHANGES)
                .unwrap()
                .chain,
            OPENS
        );
        assert!(Expected::parse("12:abc", CHANGES).is_none());
        assert!(Expected::parse(&format!("0:{}", "ab".repeat(32)), CHANGES).is_none());
        assert!(Expected::parse(&format!("a:b:12:{}", "ab".repeat(32)), CHANGES).is_none());
    }
}
