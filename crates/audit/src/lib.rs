//! The audit trail of srv-secrets: what a record holds, the bytes it is hashed and signed
//! as, the chains records form, and the verification of a log with the public key alone.
//!
//! This crate knows nothing of the store, 9P or ctl: the secrets domain makes records
//! (every change, every open of a secret) and commits them with the change they record;
//! the server exports them; `deploy audit verify` checks an exported log offline. All of
//! them share this one definition of a record and of what makes a log whole.
//!
//! # Records and chains
//!
//! A [`Record`] holds a chain name, a sequence number, the hash of the record before it
//! in its chain, a time (unix milliseconds), who acted (principal and uid), the action
//! (the command's word: `set`, `grant`, `promote`, ..., `open`), its target (named parts:
//! `secret`, `service`, `tier`, ...), a version, a reason, a result, and details; never a
//! value. Records form chains, each numbered from 1 on its own: `changes` (every change to
//! the store) and `opens` (every open of a secret by a service's view), so that opens,
//! recorded in batches off the read path, never wait on the changes' chain (and, on a
//! store shared by several nodes, each node's opens can have a chain of their own).
//!
//! # The hash chain and the signatures
//!
//! A record's hash is SHA-256 over its canonical bytes ([`Record::signed_bytes`], laid out
//! there), which include the previous record's hash: changing, removing, inserting or
//! moving a record breaks the link after it. A record may carry an Ed25519 signature over
//! the same bytes; since they include the link, a signature vouches for every record
//! before it in its chain. Every record of `changes` is signed, and the last record of
//! each batch of `opens` (signing each open would cost more than the open itself): so a
//! log ends with a signed record, and one that does not was cut. Whoever can write the
//! store but lacks the signing key cannot rewrite a record and re-hash what follows: the
//! next signature fails. What a signature cannot show is a log cut at a signed record: a
//! head (`SEQ:HASH`) kept elsewhere shows that ([`Verifier::expect`]).
//!
//! # Forms
//!
//! - stored: [`Record::to_stored`] / [`Record::from_stored`] (canonical bytes and the
//!   signature);
//! - exported: one JSON object per line ([`Record::to_json`], [`Record::from_json`]),
//!   carrying every field the canonical bytes are made of, and the record's hash, so that
//!   an exported log verifies with the public key alone.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod key;
mod record;
mod time;
mod verify;

pub use key::{PUBLIC_KEY_LEN, PublicKey, SEED_LEN, SigningKey};
pub use record::{
    CHANGES, Event, HASH_LEN, Hash, Head, MAX_FIELD_LEN, MAX_PARTS, OPENS, ParseError, Record,
    SIGNATURE_LEN, Signature, ZERO_HASH, hash_of, hex, parse_hex, stored,
};
pub use time::{format_ms, parse_time};
pub use verify::{Bad, Expected, Summary, Verifier, verify};
