//! The ctl language of srv-secrets: the commands an operator writes to `/secrets/ctl`.
//!
//! This crate turns the bytes of a ctl fid's writes into [`Command`]s ([`CtlBuffer`]),
//! groups them into transactions ([`CtlStream`]: `begin` ... `commit`), and turns commands
//! back into bytes for a client ([`Command::encode`]). What reading a ctl fid returns, one
//! [`Reply`] per command, is defined here too, for the server that writes it and the client
//! that parses it ([`ReplyReader`]). It knows nothing of 9P,
//! sockets or storage: it does not apply commands, check that a service exists, or know what
//! a write offset is. Whoever applies a command formats its own errors with
//! [`command_error`] (or [`Parsed::error`]) so that they read like ours.
//!
//! Errors never echo input: not a name, not a value, not even an unknown command word
//! ([`ErrorKind`] can hold only this crate's own strings). Values are [`Value`]s, kept in
//! zeroized buffers; the buffer that holds a fid's pending bytes is zeroized too.
//!
//! # Grammar
//!
//! ```text
//! stream   = { line } ;
//! line     = [ blanks ] [ command [ blanks ] ] [ CR ] LF ;   the last line may end at the
//!                                                            end of the stream instead
//! command  = "set" NAME VALUE
//!          | "begin" | "commit" | "abort" | "help"
//!          | "delete" NAME
//!          | "grant" SERVICE NAME [ "expires" DURATION ]
//!          | "revoke" SERVICE NAME
//!          | "revoke-all" NAME                               from every service
//!          | "stage" NAME ( VALUE | "generate" [ TEXT ] )     "generate" bare: a value
//!                                                            spelled so is sent quoted
//!                                                            or as a literal
//!          | "promote" NAME [ "overlap" DURATION | "revoke-previous" ]
//!          | "discard" NAME | "rollback" NAME | "retire" NAME
//!          | "history" NAME | "stale" | "matrix"
//!          | "reason" TEXT                                   for the next change
//!          | "freeze" | "unfreeze"
//!          | "rotate-key"
//!          | "service" SERVICE "uid" UID
//!          | "service" SERVICE "manifest" VALUE
//!          | "service" SERVICE "remove"
//!          | "service" SERVICE ( "suspend" | "resume" )
//!          | "token" "create" PRINCIPAL [ "expires" DURATION ]
//!          | "token" "revoke" TOKEN_ID | "token" "list"
//!          | catalog-command ;                               tokens separated by blanks;
//!                                                            the catalog's commands are
//!                                                            in `deployment.rs`
//! blanks   = ( SP | TAB ) { SP | TAB } ;
//! token    = literal | word ;                                every word above is a token
//! literal  = "{" digit { digit } "}" [ CR ] LF  N * byte ;   N = the digits, at most
//!                                                            1048576; then blanks or the
//!                                                            end of the line
//! word     = ( bare | quoted ) { bare | quoted } ;           not "{...}" (a bare word that
//!                                                            starts with { and ends with }
//!                                                            is literal syntax: quote it)
//! bare     = byte - ( SP | TAB | LF | "'" ) , { the same } ;
//! quoted   = "'" { byte - "'" | "''" } "'" ;                 any bytes: LF, NUL, …; '' is '
//! NAME     = 1 to 128 of [A-Za-z0-9._-], not "." or ".." ;
//! SERVICE  = NAME, not "admin" or "secrets" ;
//! PRINCIPAL = "admin" | SERVICE ;
//! TOKEN_ID = 16 of [0-9a-f] ;
//! UID      = decimal digits, 0 to 4294967294 ;
//! VALUE    = any token, at most 1048576 bytes once unquoted (empty is fine) ;
//! TEXT     = any token that is UTF-8 ;                       tiers, classes, templates, ...
//! FILE     = any token, at most 16777216 bytes (a catalog file) ;
//! DURATION = digits and one of s m h d w: 30s, 15m, 12h, 90d, 2w; 1s to 3650d ;
//! ```
//!
//! Command words and actions are case-sensitive. A line is at most [`MAX_LINE_LEN`]
//! bytes before its newline (a `catalog` line, [`MAX_CATALOG_LINE_LEN`]); a blank line is
//! ignored but counts in line numbers.
//! [`Command::encode`] writes names bare and values as literals:
//! `set cert {5}\nab\ncd\n`.
//!
//! # Layout
//! - `command`: [`Command`], the table of verbs, its checks (the name rule is
//!   [`is_valid_name`], from the `model` crate) and the encoder.
//! - `deployment`: [`CatalogCommand`], the deployment catalog's commands.
//! - `value`: [`Value`], a secret-bearing byte string.
//! - `buffer`: [`CtlBuffer`], one fid's stream of bytes, and [`Parsed`].
//! - `stream`: [`CtlStream`], that stream's commands grouped into transactions.
//! - `reply`: [`Reply`], one command's result as a reader of ctl sees it.
//! - `scan`: the incremental scanner that finds where a line ends (quotes, literals).
//! - `parse`: nom parsers for a complete line: tokens, then the command.
//! - `error`: [`CtlError`], [`ErrorKind`] and the error format ([`command_error`]).
//! - [`fuzzing`]: the fuzz entry point and the properties it checks.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod buffer;
mod command;
mod deployment;
mod error;
pub mod fuzzing;
mod parse;
mod reply;
mod scan;
mod stream;
mod value;

pub use buffer::{CtlBuffer, Parsed};
pub use command::{ADMIN_PRINCIPAL, AuditQuery, Command, NO_UID, help_text};
pub use deployment::{CatalogCommand, CatalogFormat, MetaFields, PromptArgs, StrategyArg};
pub use error::{CtlError, ErrorKind, NameKind, command_error};
/// The namespace's rules, which the grammar's NAME, SERVICE and VALUE follow: defined
/// once in the `model` crate, for the vault and deploy too.
pub use model::{MAX_NAME_LEN, MAX_VALUE_LEN, is_reserved_service, is_valid_name};
pub use reply::{Answer, BadReply, MAX_BODY_LEN, Reply, ReplyReader};
pub use stream::{CtlStream, Step, Transaction};
pub use value::Value;

/// Longest error text, in bytes, for any line up to 99999: plan9port keeps at most 127
/// bytes of an Rerror (its ERRMAX, 128, counts the NUL) and drops the rest, so an error
/// longer than this would reach a 9pfuse user cut off. Applications formatting their own
/// errors with [`command_error`] should keep to it too.
pub const MAX_ERROR_LEN: usize = 127;

/// Largest catalog file `catalog apply` carries, as its FILE literal: a catalog of
/// 10,000 secrets is a few MiB.
pub const MAX_CATALOG_LEN: usize = 16 << 20;

/// Longest `catalog` line, in bytes before its newline: its FILE and a few words.
pub const MAX_CATALOG_LINE_LEN: usize = MAX_CATALOG_LEN + 4096;

/// Longest line, in bytes before its newline: the most a fid's pending bytes may hold.
///
/// Twice [`MAX_VALUE_LEN`], because quoting can double a value (every `'` becomes `''`),
/// plus 4 KiB for the rest of the longest command (`service` + a 128-byte name, quoted:
/// about 300 bytes) and generous blanks. So any legal value fits in any form, and a value
/// between 1 MiB and this gets the precise "value too long" rather than "command too long".
pub const MAX_LINE_LEN: usize = 2 * MAX_VALUE_LEN + 4096;

/// The most commands one transaction holds (`begin` ... `commit`). A transaction is one
/// atomic commit in the store: bounded, so that a cluster store (etcd, whose transactions
/// are far smaller than redb's) can keep the same all-or-none promise.
pub const MAX_TXN_COMMANDS: usize = 10_000;

/// The most bytes one transaction holds, values and names counted (see
/// [`Command::weight`]), for the same reason as [`MAX_TXN_COMMANDS`], and to bound what a
/// fid keeps in memory before its commit.
pub const MAX_TXN_BYTES: usize = 4 << 20;
