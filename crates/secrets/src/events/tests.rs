//! What each change tells whom: the verbs, the audiences, the bound, and that nothing
//! is said of what a reader cannot see change.

use super::*;
use crate::{Actor, Change, Vault};

/// A fixed "now" for the vault's clock.
const T: u64 = 4_000_000_000;

/// A vault with secrets `db` (granted to web) and `other` (granted to api), services web
/// and api.
fn vault() -> (tempfile::TempDir, Vault) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, 1000).unwrap();
    let v = Vault::open(&dir, None).unwrap();
    v.set_clock(Some(T));
    v.set("db", b"one").unwrap();
    v.set("other", b"x").unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.service_set_uid("api", 1002).unwrap();
    v.grant("web", "db").unwrap();
    v.grant("api", "other").unwrap();
    (tmp, v)
}

fn web(v: &Vault) -> Subscription {
    v.subscribe(Audience::Service("web".into()))
}

/// Everything the subscriber has, as lines (of the admin tree's, for `Audience::All`).
fn lines(s: &Subscription) -> Vec<String> {
    let admin = *s.audience() == Audience::All;
    std::iter::from_fn(|| s.next())
        .map(|n| match n {
            Next::Event(e) => e.line(admin).render().trim_end().to_string(),
            Next::Lost(n) => model::EventLine::Lost { count: n }
                .render()
                .trim_end()
                .to_string(),
        })
        .collect()
}

fn change(v: &Vault, change: Change<'_>) {
    v.apply(&Actor::admin(Some(1000)), &[change]).unwrap();
}

#[test]
fn a_service_is_told_of_its_secrets_only_and_the_admin_of_everything() {
    let (_tmp, v) = vault();
    let (web, api, admin) = (
        web(&v),
        v.subscribe(Audience::Service("api".into())),
        v.subscribe(Audience::All),
    );
    v.set("db", b"two").unwrap();
    v.set("other", b"y").unwrap();
    v.set("brand_new", b"z").unwrap();
    v.grant("web", "other").unwrap();
    v.revoke("web", "db").unwrap();
    // Not granted any more: its changes are not told to web.
    v.set("db", b"three").unwrap();
    assert_eq!(lines(&web), ["set db 2", "granted other 2", "revoked db 2"]);
    assert_eq!(lines(&api), ["set other 2"]);
    assert_eq!(
        lines(&admin),
        [
            "set db 2",
            "set other 2",
            "set brand_new 1",
            "granted other 2 web",
            "revoked db 2 web",
            "set db 3",
            "previous-retired db 1"
        ]
    );
}

#[test]
fn each_rotation_step_has_its_verb() {
    let (_tmp, v) = vault();
    let s = web(&v);
    change(
        &v,
        Change::Stage {
            name: "db",
            value: b"two",
        },
    );
    change(
        &v,
        Change::Promote {
            name: "db",
            overlap: Some(60),
            revoke_previous: false,
            retire_when_read: false,
        },
    );
    assert_eq!(lines(&s), ["pending db 2", "rotated db 2"]);
    // The overlap ends by the clock; the housekeeping makes it a commit, told as such.
    v.set_clock(Some(T + 59));
    v.expire().unwrap();
    assert!(lines(&s).is_empty());
    v.set_clock(Some(T + 60));
    let expired = v.expire().unwrap();
    assert_eq!(expired.overlaps, [("db".to_string(), 1)]);
    assert_eq!(lines(&s), ["previous-retired db 1"]);
    // Still there for a rollback, which is a new current version.
    change(&v, Change::Rollback { name: "db" });
    assert_eq!(lines(&s), ["set db 1"]);
    change(
        &v,
        Change::Retire {
            name: "db",
            when_read: None,
        },
    );
    assert_eq!(lines(&s), ["previous-retired db 2"]);
    // An incident: the version read until now is destroyed with the promote.
    change(
        &v,
        Change::Stage {
            name: "db",
            value: b"three",
        },
    );
    change(
        &v,
        Change::Promote {
            name: "db",
            overlap: None,
            revoke_previous: true,
            retire_when_read: false,
        },
    );
    assert_eq!(
        lines(&s),
        ["pending db 3", "rotated db 3", "previous-retired db 1"]
    );
    // Staged and promoted in one transaction, with an overlap: a rotation still.
    v.apply(
        &Actor::admin(Some(1000)),
        &[
            Change::Stage {
                name: "db",
                value: b"four",
            },
            Change::Promote {
                name: "db",
                overlap: Some(60),
                revoke_previous: false,
                retire_when_read: false,
            },
        ],
    )
    .unwrap();
    assert_eq!(lines(&s), ["rotated db 4"]);
    // A discard, and a pending version past its hour, are not told.
    change(
        &v,
        Change::Stage {
            name: "db",
            value: b"five",
        },
    );
    change(&v, Change::Discard { name: "db" });
    assert_eq!(lines(&s), ["pending db 5"]);
    // Deleted: told once, as a deletion, not as a revoke.
    v.delete("db").unwrap();
    assert_eq!(lines(&s), ["deleted db 4"]);
}

#[test]
fn a_manifest_change_tells_each_config_key_changed_to_its_service() {
    let (_tmp, v) = vault();
    let (s, api, admin) = (
        web(&v),
        v.subscribe(Audience::Service("api".into())),
        v.subscribe(Audience::All),
    );
    v.service_set_manifest("web", b"secret db\nconfig level=debug\nconfig name=web\n")
        .unwrap();
    let first = v.revision().0;
    v.service_set_manifest(
        "web",
        b"secret db\nconfig level=info\nconfig name=web\nconfig new=1\n",
    )
    .unwrap();
    let second = v.revision().0;
    // Only the secrets it needs changed: nothing for the view's config.
    v.service_set_manifest("web", b"config level=info\nconfig name=web\nconfig new=1\n")
        .unwrap();
    v.service_set_manifest("web", b"config level=info\nconfig new=1\n")
        .unwrap();
    let third = v.revision().0;
    // A uid is not config.
    v.service_set_uid("web", 1005).unwrap();
    assert_eq!(
        lines(&s),
        [
            format!("config level {first}"),
            format!("config name {first}"),
            format!("config level {second}"),
            format!("config new {second}"),
            format!("config name {third}"),
        ]
    );
    assert!(lines(&api).is_empty());
    assert_eq!(lines(&admin)[0], format!("config level {first} web"));
}

#[test]
fn a_reader_that_falls_behind_is_told_how_many_it_lost_and_goes_on() {
    let (_tmp, v) = vault();
    let (slow, quick) = (web(&v), web(&v));
    let mut seen = 0;
    for i in 0..EVENTS_PER_SUBSCRIBER + 100 {
        v.set("db", format!("v{i}").as_bytes()).unwrap();
        seen += lines(&quick).len();
    }
    // Each set: a new version, and the previous one before it destroyed (but the first).
    let told = 2 * (EVENTS_PER_SUBSCRIBER + 100) - 1;
    assert_eq!(seen, told);
    let behind = lines(&slow);
    assert_eq!(behind.len(), EVENTS_PER_SUBSCRIBER + 1);
    assert_eq!(behind[0], "set db 2");
    assert_eq!(
        behind[EVENTS_PER_SUBSCRIBER],
        format!("lost {}", told - EVENTS_PER_SUBSCRIBER)
    );
    v.set("db", b"again").unwrap();
    assert_eq!(
        lines(&slow)[0],
        format!("set db {}", EVENTS_PER_SUBSCRIBER + 102)
    );
}

#[test]
fn what_no_reader_sees_change_is_not_told() {
    let (_tmp, v) = vault();
    let admin = v.subscribe(Audience::All);
    // A key rotation reseals every record; granting again changes nothing.
    v.rotate_key(&|_| {}).unwrap();
    v.grant("web", "db").unwrap();
    assert!(lines(&admin).is_empty());
}

#[test]
fn a_grant_that_ends_by_itself_is_told_as_a_revoke_when_it_is_removed() {
    let (_tmp, v) = vault();
    let s = v.subscribe(Audience::Service("api".into()));
    change(
        &v,
        Change::Grant {
            service: "api",
            name: "db",
            expires_in: Some(10),
        },
    );
    v.set_clock(Some(T + 10));
    v.expire().unwrap();
    assert_eq!(lines(&s), ["granted db 1", "revoked db 1"]);
}

#[test]
fn a_waiting_reader_is_woken_and_a_dropped_subscriber_is_forgotten() {
    let (_tmp, v) = vault();
    let s = web(&v);
    let ready = s.ready();
    let mut ready = std::pin::pin!(ready);
    let (waker, woken) = counting_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(ready.as_mut().poll(&mut cx).is_pending());
    v.set("other", b"not web's").unwrap();
    assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 0);
    v.set("db", b"web's").unwrap();
    assert_eq!(woken.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(ready.as_mut().poll(&mut cx).is_ready());
    assert_eq!(v.events.subscribers(), 1);
    drop(s);
    assert_eq!(v.events.subscribers(), 0);
}

fn counting_waker() -> (Waker, Arc<std::sync::atomic::AtomicUsize>) {
    struct Count(Arc<std::sync::atomic::AtomicUsize>);
    impl std::task::Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    (Waker::from(Arc::new(Count(n.clone()))), n)
}
