//! What changed, and who is told: the vault's change events.
//!
//! Events are derived where the vault applies a commit to memory ([`State::apply`]), which
//! is where every commit arrives, this process's own and, on a store shared by several
//! nodes, other nodes' through the change feed; and where a reload replaces memory
//! ([`between`]). Each mutation is compared with the state just before it, so a rewrite
//! that changes nothing a reader sees (a key rotation resealing a record, a grant put
//! again) says nothing.
//!
//! A change of a secret (`set`, `rotated`, `pending`, `previous-retired`, `deleted`) is
//! told to the services granted it at that point of the commit; `granted`, `revoked` and
//! `config` to the one service they are about. So a service learns only names it is, or
//! has just stopped being, granted: a set of a secret it is not granted, or a grant to
//! another service, never reaches it. The admin is told everything.
//!
//! Subscribers never slow a commit: [`Hub::publish`] puts each event (shared, not copied)
//! in every subscriber's bounded queue without waiting for anyone; a subscriber that does
//! not keep up gets [`Next::Lost`] with the count it missed, in place of them.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

pub use model::Verb;

use crate::backend::Revision;
use crate::record::SecretRecord;
use crate::record::ServiceRecord;
use crate::rows::Mutation;
use crate::state::State;

/// How many events a subscriber's queue holds; past it, [`Next::Lost`].
pub const EVENTS_PER_SUBSCRIBER: usize = 256;

/// How many wake-ups a queue keeps for readers waiting on it: more (readers that gave up,
/// a flush each time) wakes them all, and the live ones ask again.
const MAX_WAKERS: usize = 16;

/// One change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// What happened.
    pub verb: Verb,
    /// The secret's name, or for [`Verb::Config`] the config key.
    pub name: String,
    /// The secret's version (for `deleted`, the last current one; for `revoked` and
    /// `granted`, the current one); for a config key the store's revision.
    pub version: u64,
    /// The service it is about (granted, revoked, config).
    pub service: Option<String>,
    /// The services told of it: the secret's grantees, or the service it is about.
    audience: Vec<String>,
}

impl Event {
    /// Whether `service` is told of it.
    pub fn concerns(&self, service: &str) -> bool {
        self.audience.iter().any(|s| s == service)
    }

    /// The event as a line of an events file: with the service it is about in the admin
    /// tree (`admin`), without in a service's view.
    pub fn line(&self, admin: bool) -> model::EventLine {
        model::EventLine::Change {
            verb: self.verb,
            name: self.name.clone(),
            version: self.version,
            service: self.service.clone().filter(|_| admin),
        }
    }

    fn of_secret(verb: Verb, name: &str, version: u64, audience: Vec<String>) -> Event {
        Event {
            verb,
            name: name.to_owned(),
            version,
            service: None,
            audience,
        }
    }

    fn of_service(verb: Verb, name: &str, version: u64, service: &str) -> Event {
        Event {
            verb,
            name: name.to_owned(),
            version,
            service: Some(service.to_owned()),
            audience: vec![service.to_owned()],
        }
    }
}

/// Whose changes a subscriber is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Audience {
    /// Every change (the admin tree's `secrets/events`).
    All,
    /// The changes a service is told of (its view's `/events`).
    Service(String),
}

/// What a subscriber reads next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// A change.
    Event(Arc<Event>),
    /// This many changes were dropped here: the queue was full.
    Lost(u64),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every operation leaves these structures whole.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One subscriber's queue.
#[derive(Default)]
struct Queue {
    state: Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    entries: VecDeque<Next>,
    wakers: Vec<Waker>,
}

impl Queue {
    fn push(&self, event: &Arc<Event>) {
        let wakers = {
            let mut q = lock(&self.state);
            if q.entries.len() < EVENTS_PER_SUBSCRIBER {
                q.entries.push_back(Next::Event(Arc::clone(event)));
            } else if let Some(Next::Lost(n)) = q.entries.back_mut() {
                *n = n.saturating_add(1);
            } else {
                q.entries.push_back(Next::Lost(1));
            }
            std::mem::take(&mut q.wakers)
        };
        wakers.into_iter().for_each(Waker::wake);
    }

    fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = lock(&self.state);
        if !q.entries.is_empty() {
            return Poll::Ready(());
        }
        if !q.wakers.iter().any(|w| w.will_wake(cx.waker())) {
            if q.wakers.len() >= MAX_WAKERS {
                q.wakers.drain(..).for_each(Waker::wake);
            }
            q.wakers.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The subscribers, by audience.
#[derive(Default)]
pub(crate) struct Hub {
    subscribers: Arc<Mutex<Subscribers>>,
}

#[derive(Default)]
struct Subscribers {
    next_id: u64,
    all: HashMap<u64, Arc<Queue>>,
    services: HashMap<String, HashMap<u64, Arc<Queue>>>,
}

impl Hub {
    /// A new subscriber, told of what happens from now on.
    pub(crate) fn subscribe(&self, audience: Audience) -> Subscription {
        let queue = Arc::new(Queue::default());
        let mut subs = lock(&self.subscribers);
        let id = subs.next_id;
        subs.next_id += 1;
        match &audience {
            Audience::All => subs.all.insert(id, Arc::clone(&queue)),
            Audience::Service(s) => subs
                .services
                .entry(s.clone())
                .or_default()
                .insert(id, Arc::clone(&queue)),
        };
        Subscription {
            queue,
            subscribers: Arc::clone(&self.subscribers),
            id,
            audience,
        }
    }

    /// Whether anyone is subscribed: if not, a commit need not say what it changed.
    pub(crate) fn has_subscribers(&self) -> bool {
        let subs = lock(&self.subscribers);
        !subs.all.is_empty() || !subs.services.is_empty()
    }

    /// Tells each subscriber the events it is to be told, in order, without waiting.
    pub(crate) fn publish(&self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let subs = lock(&self.subscribers);
        for event in events {
            let event = Arc::new(event);
            for queue in subs.all.values() {
                queue.push(&event);
            }
            for service in &event.audience {
                for queue in subs
                    .services
                    .get(service)
                    .into_iter()
                    .flat_map(|m| m.values())
                {
                    queue.push(&event);
                }
            }
        }
    }

    /// Subscribers now (for tests).
    #[cfg(test)]
    pub(crate) fn subscribers(&self) -> usize {
        let subs = lock(&self.subscribers);
        subs.all.len() + subs.services.values().map(HashMap::len).sum::<usize>()
    }
}

/// A subscriber: the changes it is told of since it subscribed ([`Vault::subscribe`]),
/// in a bounded queue. It stops being told when dropped.
///
/// [`Vault::subscribe`]: crate::Vault::subscribe
pub struct Subscription {
    queue: Arc<Queue>,
    subscribers: Arc<Mutex<Subscribers>>,
    id: u64,
    audience: Audience,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// Whose changes it is told.
    pub fn audience(&self) -> &Audience {
        &self.audience
    }

    /// The next thing to read, if there is one; never waits.
    pub fn next(&self) -> Option<Next> {
        lock(&self.queue.state).entries.pop_front()
    }

    /// Puts `next` back in front, for a reader that took more than it could use.
    pub fn put_back(&self, next: Next) {
        lock(&self.queue.state).entries.push_front(next);
    }

    /// Resolves once [`next`](Subscription::next) has something (at once if it has now).
    /// It holds the queue, not the subscription: it may outlive a borrow of it.
    pub fn ready(&self) -> impl Future<Output = ()> + Send + 'static {
        let queue = Arc::clone(&self.queue);
        std::future::poll_fn(move |cx| queue.poll_ready(cx))
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subs = lock(&self.subscribers);
        match &self.audience {
            Audience::All => {
                subs.all.remove(&self.id);
            }
            Audience::Service(s) => {
                if let Some(m) = subs.services.get_mut(s) {
                    m.remove(&self.id);
                    if m.is_empty() {
                        subs.services.remove(s);
                    }
                }
            }
        }
    }
}

// ---- Deriving events from what a commit does. ----

/// The events of `m`, about to be applied to `state`, at store revision `at`.
pub(crate) fn of_mutation(state: &State, m: &Mutation, at: Revision, out: &mut Vec<Event>) {
    match m {
        Mutation::PutSecret(name, rec) => secret_changed(
            name,
            state.secrets.get(name),
            Some(rec),
            grantees(state, name),
            out,
        ),
        Mutation::DeleteSecret(name) => secret_changed(
            name,
            state.secrets.get(name),
            None,
            grantees(state, name),
            out,
        ),
        Mutation::PutGrant(service, secret, _) if !state.is_granted(service, secret) => {
            let version = state.secrets.get(secret).map_or(0, SecretRecord::version);
            out.push(Event::of_service(Verb::Granted, secret, version, service));
        }
        // A grant removed with its secret is told as the secret's deletion.
        Mutation::DeleteGrant(service, secret) => {
            if let (true, Some(rec)) =
                (state.is_granted(service, secret), state.secrets.get(secret))
            {
                out.push(Event::of_service(
                    Verb::Revoked,
                    secret,
                    rec.version(),
                    service,
                ));
            }
        }
        Mutation::PutService(name, rec) => {
            config_changed(name, state.services.get(name), Some(rec), at, out);
        }
        // Its view ends: its readers are woken, to be refused.
        Mutation::DeleteService(name) => {
            config_changed(name, state.services.get(name), None, at, out);
        }
        _ => {}
    }
}

/// The services told of a change of secret `name` now: those holding a grant of it that
/// has not ended by the commit's time.
fn grantees(state: &State, name: &str) -> Vec<String> {
    let now = state.meta.last_change;
    state
        .holders(name)
        .into_iter()
        .filter(|service| state.may_read(service, name, || now))
        .collect()
}

/// The events of secret `name` going from `old` to `new` (`None`: absent), told to
/// `audience`: a new current version (`set`, or `rotated` when it was the pending one or
/// came with an overlap or a revoke), versions gone or out of their overlap
/// (`previous-retired`), a new pending version, a deletion.
fn secret_changed(
    name: &str,
    old: Option<&SecretRecord>,
    new: Option<&SecretRecord>,
    audience: Vec<String>,
    out: &mut Vec<Event>,
) {
    let event = |verb, version| Event::of_secret(verb, name, version, audience.clone());
    let (old, new) = match (old, new) {
        (None, None) => return,
        (Some(old), None) => return out.push(event(Verb::Deleted, old.version())),
        (old, Some(new)) => match old.filter(|o| o.incarnation == new.incarnation) {
            Some(old) => (old, new),
            // New, or deleted and set again in one commit: another secret.
            None => {
                if let Some(old) = old {
                    out.push(event(Verb::Deleted, old.version()));
                }
                out.push(event(Verb::Set, new.version()));
                if let Some(p) = &new.pending {
                    out.push(event(Verb::Pending, p.made.version));
                }
                return;
            }
        },
    };
    if new.version() != old.version() {
        let promoted = old.pending.as_ref().map(|p| p.made.version) == Some(new.version())
            || new.revoked_below > old.revoked_below
            || new
                .previous
                .as_ref()
                .is_some_and(|p| p.made.version == old.version() && p.until.is_some());
        let verb = if promoted { Verb::Rotated } else { Verb::Set };
        out.push(event(verb, new.version()));
    }
    let held_after = |v: u64| new.held().any(|(_, h)| h.made.version == v);
    for gone in [
        Some(old.version()),
        old.previous.as_ref().map(|p| p.made.version),
    ]
    .into_iter()
    .flatten()
    {
        if !held_after(gone) {
            out.push(event(Verb::PreviousRetired, gone));
        }
    }
    // The same previous version, its overlap over (ended by time, say).
    if let (Some(was), Some(is)) = (&old.previous, &new.previous)
        && was.made.version == is.made.version
        && was.until.is_some()
        && is.until.is_none()
    {
        out.push(event(Verb::PreviousRetired, is.made.version));
    }
    if let Some(p) = &new.pending
        && old.pending.as_ref().map(|o| o.made.version) != Some(p.made.version)
    {
        out.push(event(Verb::Pending, p.made.version));
    }
}

/// The `config` events of service `name`'s manifest going from `old` to `new`: each key
/// added, changed or removed.
fn config_changed(
    name: &str,
    old: Option<&ServiceRecord>,
    new: Option<&ServiceRecord>,
    at: Revision,
    out: &mut Vec<Event>,
) {
    let empty = std::collections::BTreeMap::new();
    let config = |r: Option<&ServiceRecord>| r.map(|r| r.manifest.config().clone());
    let (old, new) = (config(old), config(new));
    let (old, new) = (
        old.as_ref().unwrap_or(&empty),
        new.as_ref().unwrap_or(&empty),
    );
    if old == new {
        return;
    }
    let keys: std::collections::BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    for key in keys {
        if old.get(key) != new.get(key) {
            out.push(Event::of_service(Verb::Config, key, at.0, name));
        }
    }
}

/// The events of memory going from `old` to `new` at once (a reload of the whole store):
/// what a commit-by-commit apply would have said, as far as the two states show it.
pub(crate) fn between(old: &State, new: &State, at: Revision) -> Vec<Event> {
    let mut out = Vec::new();
    let names: std::collections::BTreeSet<&String> =
        old.secrets.keys().chain(new.secrets.keys()).collect();
    for name in names {
        let (was, is) = (old.secrets.get(name), new.secrets.get(name));
        if was == is {
            continue;
        }
        // Those granted before, and still: a new grant is told below, with the version.
        let audience = grantees(old, name)
            .into_iter()
            .filter(|s| is.is_none() || new.is_granted(s, name))
            .collect();
        secret_changed(name, was, is, audience, &mut out);
    }
    let services: std::collections::BTreeSet<&String> =
        old.grants.keys().chain(new.grants.keys()).collect();
    let none = std::collections::BTreeSet::new();
    for service in services {
        let was = old.grants.get(service).unwrap_or(&none);
        let is = new.grants.get(service).unwrap_or(&none);
        for secret in is.difference(was) {
            let version = new.secrets.get(secret).map_or(0, SecretRecord::version);
            out.push(Event::of_service(Verb::Granted, secret, version, service));
        }
        for secret in was.difference(is) {
            if let Some(rec) = new.secrets.get(secret) {
                out.push(Event::of_service(
                    Verb::Revoked,
                    secret,
                    rec.version(),
                    service,
                ));
            }
        }
    }
    let services: std::collections::BTreeSet<&String> =
        old.services.keys().chain(new.services.keys()).collect();
    for service in services {
        let is = new.services.get(service);
        if is.is_some() {
            config_changed(service, old.services.get(service), is, at, &mut out);
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests;
