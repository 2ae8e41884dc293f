//! The names, limits and text files of the srv-secrets namespace, shared by the server,
//! the domain and the clients.
//!
//! Whoever checks a name or a size checks it with what is here: the ctl parser
//! (`crates/ctl`) before a command is applied, the vault (`crates/secrets`) before
//! anything is stored, `deploy` before it sends anything, the catalog before it declares
//! anything. So a name one of them accepts is a name all of them accept, and a limit is
//! changed in one place.
//!
//! Likewise each text file the server writes and clients parse is defined here once, as
//! a type with `render` (what srv-secrets serves) and `parse` (what `deploy` reads), so
//! the two cannot drift apart: [`files`]. The service manifest's line grammar, which the
//! vault parses and `deploy` reads back from a services file, is [`manifest`].
//!
//! This crate knows nothing of 9P, of storage or of the ctl grammar.
//!
//! # Layout
//! - `names`: the name rule ([`is_valid_name`]), the names kept for the server's own
//!   trees ([`RESERVED_SERVICE_NAMES`]), tier names ([`is_valid_tier`]).
//! - [`manifest`]: the lines of a service manifest.
//! - [`files`]: `secrets/status`, `secrets/grants/SERVICE`, `secrets/services/SERVICE`,
//!   and the refusal a service gets when it asks for the admin tree.
//! - [`events`]: the lines of the events files (`/events`, `secrets/events`).
//! - `duration`: durations as written (`30s`, `12h`, `90d`): overlap windows and
//!   grants' lifetimes ([`parse_duration`]).
//! - this file: the size limits, and the refusal of a freeze ([`FROZEN`]).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod duration;
pub mod events;
pub mod files;
pub mod manifest;
mod names;

pub use duration::{DurationError, MAX_DURATION_SECS, format_duration, parse_duration};

pub use events::{EventLine, MAX_EVENT_LINE, Verb};
pub use files::{FormatError, Grants, Mark, NotAdmin, Rotation, ServiceFile, Status};

pub use names::{
    ADMIN_ANAME, MAX_TIER_LEN, RESERVED_SERVICE_NAMES, is_reserved_service, is_valid_name,
    is_valid_service, is_valid_tier,
};

/// Longest secret name, service name or config key, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Largest secret value, in bytes, and largest `{N}` literal of a ctl command: 1 MiB,
/// enough for PEM chains and binary keys, small enough that every value can live in
/// memory.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// Largest service manifest, in bytes (the same bound as values, for the same reason; a
/// manifest travels in a ctl command as a value).
pub const MAX_MANIFEST_LEN: usize = 1 << 20;

/// Longest reason a change may carry, in bytes (it is stored with the change's record).
pub const MAX_REASON_LEN: usize = 1024;

/// What every change a freeze stops is refused with, word for word (a ctl error, an
/// attach's Rerror, the HTTP API's error): `deploy` knows a freeze by it.
pub const FROZEN: &str = "frozen (see deploy status)";
