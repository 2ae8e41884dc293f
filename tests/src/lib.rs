//! End-to-end tests of srv-secrets, and the support code they share.
//!
//! This crate holds the tests that exercise the whole system from the
//! outside (in `tests/`), and the helpers they need. It does not test the
//! library crates' internals; those tests live beside their code.
//!
//! # Layout
//!
//! - [`bench`]: the benchmarks' flags and medians.
//! - [`harness`]: the real binaries (`srv-secrets`, `deploy`, the `9p` test client),
//!   started on temporary data directories and sockets, and run as other uids.
//! - [`pki`]: certificate authorities for the TLS tests.
//! - [`relay`]: a server with a TLS listener on a fixed port, and `srv-secrets relay`
//!   processes in front of it.
//! - [`vm`]: the kernel-mount runner. Boots a tiny qemu VM in which the Linux
//!   kernel's 9P client (v9fs) mounts a 9P server running on this host, runs
//!   a busybox shell script against the mount and reports its output and
//!   exit status. Guest-side files live in `tests/vm/`.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod bench;
pub mod harness;
pub mod pki;
pub mod relay;
pub mod vm;
