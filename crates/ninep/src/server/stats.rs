//! [`Stats`]: what the server core has done and holds now, as counters, for a metrics
//! endpoint. Nothing here names a principal, a file or anything a client sent.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters the core keeps as it serves. Cheap to update (relaxed atomics: a metrics
/// reading needs no ordering with anything else).
#[derive(Debug, Default)]
pub(super) struct Stats {
    requests: AtomicU64,
    errors: AtomicU64,
    open_fids: AtomicU64,
    refused_connections: AtomicU64,
    waiting_reads: AtomicU64,
}

impl Stats {
    /// A request was read (any message, valid or not).
    pub(super) fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A reply was an Rerror.
    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` fids came into a connection's table.
    pub(super) fn fids_added(&self, n: u64) {
        self.open_fids.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` fids left a connection's table.
    pub(super) fn fids_removed(&self, n: u64) {
        // Saturating: a reading must never wrap to a huge number.
        let _ = self
            .open_fids
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(n))
            });
    }

    /// A read began to wait for its data without permits.
    pub(super) fn waiting_started(&self) {
        self.waiting_reads.fetch_add(1, Ordering::Relaxed);
    }

    /// A read that waited without permits ended or got its data.
    pub(super) fn waiting_ended(&self) {
        let _ = self
            .waiting_reads
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// A new connection was closed on accept.
    pub(super) fn refused(&self) {
        self.refused_connections.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(
        &self,
        principal_connections: u64,
        stranger_connections: u64,
    ) -> ServerStats {
        ServerStats {
            requests: self.requests.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            open_fids: self.open_fids.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            waiting_reads: self.waiting_reads.load(Ordering::Relaxed),
            principal_connections,
            stranger_connections,
        }
    }
}

/// A reading of the server's counters ([`Server::stats`](super::Server::stats)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Requests read since the server started.
    pub requests: u64,
    /// Replies that were Rerror, since the server started.
    pub errors: u64,
    /// Fids open now, over all connections.
    pub open_fids: u64,
    /// Connections closed on accept (refused, or over a cap), since the server started.
    pub refused_connections: u64,
    /// Reads waiting for their data now, holding no reply permit.
    pub waiting_reads: u64,
    /// Connections of principals open now.
    pub principal_connections: u64,
    /// Connections of strangers open now.
    pub stranger_connections: u64,
}
