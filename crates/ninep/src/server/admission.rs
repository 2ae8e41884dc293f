//! Connection slots and reply pools, by the class [`Filesystem::accept`] gives a
//! connection.
//!
//! Principals and strangers are counted apart, so strangers cannot take the slots that
//! principals need, however many of them come. Each principal has its own pool of
//! reply permits, so a principal that does not read its replies stalls only its own
//! connections. Strangers get no pool at all, only their connection's small window
//! (see `conn`).
//!
//! [`Filesystem::accept`]: super::Filesystem::accept

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Semaphore;

use super::{Admission, Limits, Peer};

/// The counts behind every open connection's [`Slot`].
pub(super) struct Admissions {
    limits: Arc<Limits>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    /// Connections of principals, over all of them.
    principal_connections: usize,
    /// Principals with at least one open connection.
    principals: HashMap<String, PrincipalCount>,
    /// Connections of strangers, over all of them.
    strangers: usize,
    /// Connections of strangers, per uid or certificate name ([`stranger_key`]).
    strangers_per_uid: HashMap<String, usize>,
}

struct PrincipalCount {
    /// Reply permits shared by the principal's connections.
    pool: Arc<Semaphore>,
    /// Its open connections: the entry goes with the last.
    connections: usize,
    /// Those of them counted against `max_connections_per_principal`.
    capped: usize,
}

/// Why a connection was closed on accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Refused {
    /// [`Filesystem::accept`](super::Filesystem::accept) said so.
    ByFilesystem,
    /// `max_connections`: principals hold every slot.
    Connections,
    /// `max_connections_per_principal`.
    PrincipalConnections,
    /// `max_stranger_connections`.
    StrangerConnections,
    /// `max_stranger_connections_per_uid` (or per certificate name).
    StrangerConnectionsOfUid,
}

impl Refused {
    /// Whether the refusal is worth a warning: a principal was turned away. Strangers
    /// may come back as often as they like, and each refusal would be a line in the log.
    pub(super) fn of_a_principal(self) -> bool {
        matches!(self, Refused::Connections | Refused::PrincipalConnections)
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refused::ByFilesystem => "refused by the filesystem",
            Refused::Connections => "too many connections",
            Refused::PrincipalConnections => "too many connections of this principal",
            Refused::StrangerConnections => "too many connections of strangers",
            Refused::StrangerConnectionsOfUid => "too many connections of this stranger uid",
        })
    }
}

/// One open connection's place in the counts; given back when dropped.
pub(super) struct Slot {
    admissions: Arc<Admissions>,
    class: Class,
    /// The principal's reply pool; none for a stranger.
    pool: Option<Arc<Semaphore>>,
}

enum Class {
    Principal { key: String, capped: bool },
    Stranger { key: Option<String> },
}

/// What tells one peer from another for the per-peer caps: its uid, else the name its
/// certificate gives (a TLS peer), else nothing (plain TCP: every such peer looks alike).
fn stranger_key(peer: &Peer) -> Option<String> {
    match (peer.uid, &peer.certificate) {
        (Some(uid), _) => Some(format!("uid {uid}")),
        (None, Some(name)) => Some(format!("certificate {name}")),
        (None, None) => None,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The counts are consistent after any single operation on them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Admissions {
    pub(super) fn new(limits: Arc<Limits>) -> Arc<Admissions> {
        Arc::new(Admissions {
            limits,
            counts: Mutex::new(Counts::default()),
        })
    }

    /// Connections open now: of principals, of strangers.
    pub(super) fn open(&self) -> (usize, usize) {
        let counts = self.counts.lock().unwrap_or_else(|p| p.into_inner());
        (counts.principal_connections, counts.strangers)
    }

    /// A slot for a connection from `peer` that the filesystem admitted as `admission`,
    /// or why not.
    pub(super) fn admit(
        self: &Arc<Self>,
        admission: Admission,
        peer: &Peer,
    ) -> Result<Slot, Refused> {
        let limits = &self.limits;
        let mut counts = lock(&self.counts);
        let (class, pool) = match admission {
            Admission::Refuse => return Err(Refused::ByFilesystem),
            Admission::Principal(key) => {
                // The kernel mounts one view per service as root; and peers with
                // neither a uid nor a certificate cannot be told apart, so a cap on
                // them would be a cap on everyone.
                let capped = peer.uid != Some(0) && stranger_key(peer).is_some();
                principal_slot(&mut counts, limits, key, capped)?
            }
            Admission::Stranger => {
                if counts.strangers >= limits.max_stranger_connections {
                    return Err(Refused::StrangerConnections);
                }
                let key = stranger_key(peer);
                if let Some(key) = &key {
                    let n = counts.strangers_per_uid.entry(key.clone()).or_insert(0);
                    if *n >= limits.max_stranger_connections_per_uid {
                        if *n == 0 {
                            counts.strangers_per_uid.remove(key);
                        }
                        return Err(Refused::StrangerConnectionsOfUid);
                    }
                    *n += 1;
                }
                counts.strangers += 1;
                (Class::Stranger { key }, None)
            }
        };
        Ok(Slot {
            admissions: self.clone(),
            class,
            pool,
        })
    }

    /// A principal's slot for a connection that proved itself `key` with a credential:
    /// counted against the principal's cap, whatever its transport (the credential tells
    /// it apart from everyone else).
    fn admit_proven(self: &Arc<Self>, key: String) -> Result<Slot, Refused> {
        let mut counts = lock(&self.counts);
        let (class, pool) = principal_slot(&mut counts, &self.limits, key, true)?;
        Ok(Slot {
            admissions: self.clone(),
            class,
            pool,
        })
    }

    #[cfg(test)]
    fn principals(&self) -> usize {
        lock(&self.counts).principals.len()
    }
}

/// Takes a slot among principals for one of `key`'s connections, counted against its
/// cap if `capped`, with its pool (made with its first connection).
fn principal_slot(
    counts: &mut Counts,
    limits: &Limits,
    key: String,
    capped: bool,
) -> Result<(Class, Option<Arc<Semaphore>>), Refused> {
    if counts.principal_connections >= limits.max_connections {
        return Err(Refused::Connections);
    }
    let held = counts.principals.get(&key).map_or(0, |p| p.capped);
    if capped && held >= limits.max_connections_per_principal {
        return Err(Refused::PrincipalConnections);
    }
    let entry = counts
        .principals
        .entry(key.clone())
        .or_insert_with(|| PrincipalCount {
            pool: Arc::new(Semaphore::new(permits(
                limits.max_outstanding_per_principal,
            ))),
            connections: 0,
            capped: 0,
        });
    entry.connections += 1;
    entry.capped += usize::from(capped);
    let pool = entry.pool.clone();
    counts.principal_connections += 1;
    Ok((Class::Principal { key, capped }, Some(pool)))
}

/// A permit count a semaphore can hold, and at least one (a pool of none would never
/// serve anything).
pub(super) fn permits(n: usize) -> usize {
    n.clamp(1, Semaphore::MAX_PERMITS)
}

impl Slot {
    /// The pool of reply permits this connection draws from besides its own window:
    /// its principal's, or none for a stranger.
    pub(super) fn pool(&self) -> Option<Arc<Semaphore>> {
        self.pool.clone()
    }

    /// Whether this is a stranger's slot.
    pub(super) fn is_strangers(&self) -> bool {
        matches!(self.class, Class::Stranger { .. })
    }

    /// The connection proved itself the principal `key` (a credential at attach): a
    /// stranger's slot becomes one of `key`'s, giving back the stranger's. A principal's
    /// slot stays what it is.
    pub(super) fn prove(&mut self, key: String) -> Result<(), Refused> {
        if self.is_strangers() {
            *self = self.admissions.admit_proven(key)?;
        }
        Ok(())
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut counts = lock(&self.admissions.counts);
        match &self.class {
            Class::Principal { key, capped } => {
                counts.principal_connections -= 1;
                if let Some(p) = counts.principals.get_mut(key) {
                    p.connections -= 1;
                    p.capped -= usize::from(*capped);
                    if p.connections == 0 {
                        counts.principals.remove(key);
                    }
                }
            }
            Class::Stranger { key } => {
                counts.strangers -= 1;
                if let Some(key) = key
                    && let Some(n) = counts.strangers_per_uid.get_mut(key)
                {
                    *n -= 1;
                    if *n == 0 {
                        counts.strangers_per_uid.remove(key);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;

    fn peer(uid: Option<u32>) -> Peer {
        Peer {
            uid,
            addr: "test".into(),
            ..Peer::default()
        }
    }

    fn principal(key: &str) -> Admission {
        Admission::Principal(key.into())
    }

    #[test]
    fn strangers_have_slots_of_their_own_and_principals_theirs() {
        let limits = Arc::new(Limits {
            max_connections: 3,
            max_connections_per_principal: 2,
            max_stranger_connections: 3,
            max_stranger_connections_per_uid: 2,
            ..Limits::default()
        });
        let a = Admissions::new(limits);
        // Strangers: two per uid, three in all, whatever the principals hold.
        let s1 = a.admit(Admission::Stranger, &peer(Some(7))).unwrap();
        let _s2 = a.admit(Admission::Stranger, &peer(Some(7))).unwrap();
        assert_eq!(
            a.admit(Admission::Stranger, &peer(Some(7))).err(),
            Some(Refused::StrangerConnectionsOfUid)
        );
        let _s3 = a.admit(Admission::Stranger, &peer(Some(8))).unwrap();
        assert_eq!(
            a.admit(Admission::Stranger, &peer(Some(9))).err(),
            Some(Refused::StrangerConnections)
        );
        assert!(s1.pool().is_none(), "strangers draw from no pool");
        // Principals still find every one of their slots; uid 0 is not capped per
        // principal, only in all.
        let w1 = a.admit(principal("web"), &peer(Some(1001))).unwrap();
        let w2 = a.admit(principal("web"), &peer(Some(1001))).unwrap();
        assert_eq!(
            a.admit(principal("web"), &peer(Some(1001))).err(),
            Some(Refused::PrincipalConnections)
        );
        let root = a.admit(principal("root"), &peer(Some(0))).unwrap();
        assert_eq!(
            a.admit(principal("root"), &peer(Some(0))).err(),
            Some(Refused::Connections)
        );
        // One principal's connections share one pool; another's is apart.
        assert!(Arc::ptr_eq(&w1.pool().unwrap(), &w2.pool().unwrap()));
        assert!(!Arc::ptr_eq(&w1.pool().unwrap(), &root.pool().unwrap()));
        // Slots come back when connections end, and a principal's entry with its last.
        drop(w1);
        let _w3 = a.admit(principal("web"), &peer(Some(1001))).unwrap();
        drop(s1);
        let _s4 = a.admit(Admission::Stranger, &peer(Some(9))).unwrap();
        assert_eq!(a.principals(), 2);
        drop((w2, _w3));
        assert_eq!(a.principals(), 1);
        assert_eq!(
            a.admit(Admission::Refuse, &peer(Some(1))).err(),
            Some(Refused::ByFilesystem)
        );
    }

    fn certified(name: &str) -> Peer {
        Peer {
            transport: super::super::Transport::Tls,
            certificate: Some(name.into()),
            addr: "tls:test".into(),
            ..Peer::default()
        }
    }

    #[test]
    fn a_certificate_is_capped_by_its_name_as_a_uid_is() {
        let limits = Arc::new(Limits {
            max_connections: 10,
            max_connections_per_principal: 2,
            max_stranger_connections: 10,
            max_stranger_connections_per_uid: 1,
            ..Limits::default()
        });
        let a = Admissions::new(limits);
        // A principal by certificate is capped per name: it has no uid 0 to excuse it.
        let _w1 = a.admit(principal("cert web"), &certified("web")).unwrap();
        let _w2 = a.admit(principal("cert web"), &certified("web")).unwrap();
        assert_eq!(
            a.admit(principal("cert web"), &certified("web")).err(),
            Some(Refused::PrincipalConnections)
        );
        // A stranger's certificate is capped per name, apart from other names.
        let _x = a.admit(Admission::Stranger, &certified("nobody")).unwrap();
        assert_eq!(
            a.admit(Admission::Stranger, &certified("nobody")).err(),
            Some(Refused::StrangerConnectionsOfUid)
        );
        let _y = a.admit(Admission::Stranger, &certified("other")).unwrap();
    }
}

/// How often at most a refusal of one kind is logged: a principal that reconnects as fast
/// as it can (a refusal each time) must not flood the log, where it would push the
/// server's real errors past journald's rate limit.
pub(super) const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// The refusals worth a warning, each kind logged at most once per [`REFUSAL_LOG_EVERY`]
/// with the count of those not logged since.
#[derive(Default)]
pub(super) struct RefusalLog {
    last: std::sync::Mutex<std::collections::HashMap<Refused, (std::time::Instant, u64)>>,
}

impl RefusalLog {
    /// Whether to log this refusal now, and how many of its kind went unlogged before it.
    pub(super) fn should_log(&self, refused: Refused, now: std::time::Instant) -> Option<u64> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        match last.get_mut(&refused) {
            Some((at, quiet)) if now.duration_since(*at) < REFUSAL_LOG_EVERY => {
                *quiet += 1;
                None
            }
            Some((at, quiet)) => {
                *at = now;
                Some(std::mem::take(quiet))
            }
            None => {
                last.insert(refused, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod refusal_log_tests {
    use super::*;

    #[test]
    fn a_refusal_is_logged_once_per_interval_with_the_count_it_kept_quiet() {
        let log = RefusalLog::default();
        let t0 = std::time::Instant::now();
        assert_eq!(log.should_log(Refused::PrincipalConnections, t0), Some(0));
        for i in 1..=1000 {
            let t = t0 + std::time::Duration::from_millis(i);
            assert_eq!(log.should_log(Refused::PrincipalConnections, t), None);
        }
        // Another kind has its own interval.
        assert_eq!(log.should_log(Refused::Connections, t0), Some(0));
        let later = t0 + REFUSAL_LOG_EVERY;
        assert_eq!(
            log.should_log(Refused::PrincipalConnections, later),
            Some(1000)
        );
        assert_eq!(log.should_log(Refused::PrincipalConnections, later), None);
    }
}
