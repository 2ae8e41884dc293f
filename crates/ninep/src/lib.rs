//! 9P2000 for Rust: the wire codec, a generic async server core, and a client.
//!
//! This crate knows the protocol and nothing of what is served: no principals, grants or
//! storage. A filesystem plugs into the server core by implementing
//! [`server::Filesystem`]; the core owns every connection's fids and tags and enforces
//! the protocol's rules before a handler runs, so handlers stay small (the idea of Plan 9's
//! lib9p). [`ramfs`] is a whole filesystem in a few hundred lines; `examples/ramfs`
//! serves it.
//!
//! # Layout
//! - [`wire`]: the [`Wire`](wire::Wire) trait (size, encode, decode) and the bounded
//!   reader every decode goes through.
//! - [`message`]: every message, the qid and the stat; frames and their header.
//!   This is where a 9P message is decoded: [`Tframe::decode`].
//! - [`text`]: the readable text form of messages, for logs and golden transcripts.
//! - [`error`]: decode errors and the Plan 9 error strings ([`ename`]).
//! - [`server`]: the server core: connections, fids, tags, flush, limits.
//! - [`client`]: an async, pipelining client.
//! - [`transcript`]: plays golden transcripts (T-lines sent, R-lines expected).
//! - [`fuzzing`]: entry points for fuzzers (and the stable random-input tests).
//! - [`ramfs`]: an in-memory filesystem, which the example serves and the tests,
//!   benchmarks and fuzz targets serve too.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod batch;
pub mod client;
pub mod error;
pub mod fuzzing;
pub mod message;
pub mod ramfs;
pub mod server;
pub mod text;
pub mod transcript;
pub mod wire;

pub use error::{DecodeError, Error, Result, ename};
pub use message::*;
