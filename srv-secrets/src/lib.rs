//! srv-secrets: a 9P2000 file server that serves secrets and configuration as files.
//!
//! This crate glues the ninep server core to the secrets domain: it decides who a
//! connection is, which tree it sees, and what each file of that tree is. It holds no
//! protocol rules (ninep checks those before a handler runs) and no storage or
//! cryptography (the `secrets` crate owns the vault).
//!
//! # Layout
//! - [`principal`]: who is asking (SO_PEERCRED uid, a TLS client certificate's name, or
//!   an API token where the transport proves nothing → admin or service) and which view
//!   an aname selects.
//! - [`fs`]: the filesystem handlers; `fs/kinds.rs` declares every file of both trees
//!   (name, directory, listing, mode, content) and holds the grant check of every walk,
//!   stat and listing, which `fs/node.rs` runs; `fs/fid.rs` checks the view before every
//!   request on a fid; `fs/opened.rs` opens and reads each kind of content; `fs/ctl.rs`
//!   applies ctl commands to the vault. The text files it serves are the namespace's
//!   (the `model` crate), which deploy parses.
//! - [`listen`]: the addresses `--listen` and `--http` take (unix sockets; TLS; plain TCP
//!   on loopback, for tests), read and checked in one place.
//! - [`tls_listener`]: TLS listeners' certificates (reloaded on SIGHUP) and each
//!   connection's handshake, which gives its peer a name.
//! - [`quiet`]: a budget for the log lines strangers can cause.
//! - [`serve`]: process hardening, the socket (in a directory nobody else can change),
//!   the listeners, SIGHUP's reload, and the clean stop on SIGTERM.
//! - [`relay`]: `srv-secrets relay`, the local end of a remote server for plain 9P clients
//!   (the kernel, 9pfuse): the uids it lets in, and each of their connections carried over
//!   a TLS connection of its own with a service's certificate.
//! - [`paths`]: the embedded default data directory and socket.
//! - [`backup`]: writing a backup file (mode 0600, no clobbering, never half).
//! - `main.rs`: the `srv-secrets` command line (`init`, `serve`, `relay`, `backup`).
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod backup;
pub mod fs;
pub mod http;
pub mod listen;
pub mod paths;
pub mod principal;
pub mod quiet;
pub mod relay;
pub mod reports;
pub mod serve;
pub mod tls_listener;
