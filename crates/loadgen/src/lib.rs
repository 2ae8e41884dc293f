//! The 9P load generator of the load benchmarks: ninep's (`crates/ninep/benches/load`,
//! the server core against diod and an echo server) and srv-secrets'
//! (`srv-secrets/benches/load.rs`, srv-secrets against the ramfs). Both drive their
//! servers with the same client, workloads and schedule, from here: change this crate
//! with both benches in mind. docs/performance.md says what they measure.
//!
//! # Layout
//! - [`proto`]: the request sequences of each workload in 9P2000 and 9P2000.L, and the
//!   reply checks.
//! - [`client`]: the closed-loop load generator and the percentiles.
//! - [`schedule`]: the interleaved schedule, medians over rounds, the tables; the
//!   arguments both load benches take ([`schedule::LoadArgs`]).
//! - [`servers`]: starting the servers, each in its own process; the `--serve` modes for
//!   ours (the server core with `ninep::ramfs`) and echo, which a bench runs as its own
//!   binary re-executed.
#![forbid(unsafe_code)]

pub mod client;
pub mod proto;
pub mod schedule;
pub mod servers;
