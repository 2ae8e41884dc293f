//! Vault tests that need the crate's insides: simulated crashes at each rotation step,
//! backend failures, and tampering with the raw store.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::rotation::CrashPoint;
use super::*;
use crate::backend::{Row, Snapshot, Table};
use crate::redb_store::raw;
use crate::{MAX_VALUE_LEN, RotationProgress};

const ADMIN: u32 = 1000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, ADMIN).unwrap();
    (tmp, dir)
}

fn open(dir: &Path) -> Vault {
    Vault::open(dir, None).unwrap()
}

fn value_of(i: usize) -> Vec<u8> {
    format!("value-{i}").into_bytes()
}

/// A backend that forwards to the real one, with small rotation batches and a commit that
/// can be made to fail.
struct TestBackend {
    inner: Box<dyn Backend>,
    batch: usize,
    /// Commits left before one fails (usize::MAX: never).
    fail_in: AtomicUsize,
    faults: Arc<Faults>,
}

/// Failures of the kind redb has on a full disk, injected from a test.
#[derive(Default)]
struct Faults {
    /// What the next commit does.
    next: Mutex<Option<Inject>>,
    /// Closed by an injected failure, until a reopen.
    closed: AtomicBool,
    /// Reopens left to fail.
    failing_reopens: AtomicUsize,
    /// Reopens that worked.
    reopens: AtomicUsize,
}

#[derive(Clone, Copy)]
enum Inject {
    /// Fail without writing, leaving the store closed (as redb on ENOSPC).
    FailClosing,
    /// Write, then fail, leaving the store closed (as an fsync error after the commit
    /// record reached the file).
    LandThenFailClosing,
}

impl Faults {
    fn inject(&self, what: Inject) {
        *self.next.lock().unwrap() = Some(what);
    }
}

impl Backend for TestBackend {
    fn load(&self) -> Result<Snapshot> {
        if self.faults.closed.load(Ordering::SeqCst) {
            return Err(Error::Corrupt {
                what: "load on a closed store",
            });
        }
        self.inner.load()
    }

    fn commit(&self, batch: Batch) -> Result<Revision> {
        if self.faults.closed.load(Ordering::SeqCst) {
            return Err(Error::Corrupt {
                what: "commit on a closed store",
            });
        }
        let injected = self.faults.next.lock().unwrap().take();
        if let Some(what) = injected {
            if let Inject::LandThenFailClosing = what {
                self.inner.commit(batch)?;
            }
            self.faults.closed.store(true, Ordering::SeqCst);
            return Err(Error::Corrupt {
                what: "injected commit failure",
            });
        }
        let left = self.fail_in.load(Ordering::SeqCst);
        if left == 0 {
            self.fail_in.store(usize::MAX, Ordering::SeqCst);
            return Err(Error::Corrupt {
                what: "injected commit failure",
            });
        }
        if left != usize::MAX {
            self.fail_in.store(left - 1, Ordering::SeqCst);
        }
        self.inner.commit(batch)
    }

    fn changes(&self, after: Revision) -> Result<Feed> {
        self.inner.changes(after)
    }

    fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        self.inner.range(table, from, to, limit)
    }

    fn needs_reopen(&self) -> bool {
        self.faults.closed.load(Ordering::SeqCst) || self.inner.needs_reopen()
    }

    fn reopen(&self) -> Result<()> {
        let failing = &self.faults.failing_reopens;
        if failing.load(Ordering::SeqCst) > 0 {
            failing.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::Corrupt {
                what: "injected reopen failure",
            });
        }
        self.inner.reopen()?;
        self.faults.closed.store(false, Ordering::SeqCst);
        self.faults.reopens.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn max_batch(&self) -> usize {
        self.batch
    }
}

/// Opens `dir` with rotation batches of `batch` and a commit failure after `fail_in`
/// successful commits (None: never).
fn open_with(dir: &Path, batch: usize, fail_in: Option<usize>) -> Vault {
    open_faulty(dir, batch, fail_in).0
}

/// [`open_with`], and the handle to inject store failures.
fn open_faulty(dir: &Path, batch: usize, fail_in: Option<usize>) -> (Vault, Arc<Faults>) {
    let mut vault = open(dir);
    let inner = std::mem::replace(&mut vault.backend, Box::new(Nothing));
    let faults = Arc::new(Faults::default());
    vault.backend = Box::new(TestBackend {
        inner,
        batch,
        fail_in: AtomicUsize::new(fail_in.unwrap_or(usize::MAX)),
        faults: Arc::clone(&faults),
    });
    (vault, faults)
}

/// Placeholder while swapping backends.
struct Nothing;

impl Backend for Nothing {
    fn load(&self) -> Result<Snapshot> {
        Err(Error::NotFound)
    }
    fn commit(&self, _: Batch) -> Result<Revision> {
        Err(Error::NotFound)
    }
    fn changes(&self, _: Revision) -> Result<Feed> {
        Err(Error::NotFound)
    }
}

fn key_file_ids(dir: &Path) -> Vec<u32> {
    keyfile::read(&dir.join(KEY_FILE))
        .unwrap()
        .iter()
        .map(Key::id)
        .collect()
}

fn assert_all_values(vault: &Vault, n: usize) {
    for i in 0..n {
        let name = format!("s{i:03}");
        assert_eq!(vault.reveal(&name).unwrap().expose(), value_of(i), "{name}");
    }
}

fn populate(vault: &Vault, n: usize) {
    let entries: Vec<(String, Vec<u8>)> =
        (0..n).map(|i| (format!("s{i:03}"), value_of(i))).collect();
    vault.set_many(entries).unwrap();
}

// ---- Crash recovery of rotation: every step. ----

/// Stops a rotation of `n` secrets at `point` (batches of 3), reopens as after a kill,
/// and returns the reopened vault and the key ids the file held at the crash.
fn crash_and_reopen(point: CrashPoint, n: usize) -> (tempfile::TempDir, PathBuf, Vault, Vec<u32>) {
    let (tmp, dir) = fresh();
    let vault = open_with(&dir, 3, None);
    populate(&vault, n);
    vault.crash_at(Some(point));
    let err = vault.rotate_key(&|_| {}).unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let at_crash = key_file_ids(&dir);
    drop(vault);
    let vault = open(&dir);
    (tmp, dir, vault, at_crash)
}

#[test]
fn crash_after_key_file_written_rolls_back() {
    let (_tmp, dir, vault, at_crash) = crash_and_reopen(CrashPoint::KeyFileWritten, 10);
    assert_eq!(at_crash, [1, 2]);
    assert_eq!(key_file_ids(&dir), [1]);
    assert_eq!(vault.status().active_key, 1);
    assert_eq!(vault.status().rotation, None);
    assert_all_values(&vault, 10);
    // A later rotation is unaffected by the discarded key.
    let report = vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(
        (report.old_key, report.new_key, report.reencrypted),
        (1, 2, 10)
    );
    assert_all_values(&vault, 10);
}

#[test]
fn crash_after_target_committed_resumes() {
    let (_tmp, dir, vault, at_crash) = crash_and_reopen(CrashPoint::TargetCommitted, 10);
    assert_eq!(at_crash, [1, 2]);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(vault.status().rotation, None);
    assert_all_values(&vault, 10);
}

#[test]
fn crash_between_batches_resumes() {
    for batch in [0, 1, 3] {
        let (_tmp, dir, vault, at_crash) = crash_and_reopen(CrashPoint::Batch(batch), 10);
        assert_eq!(at_crash, [1, 2], "batch {batch}");
        assert_eq!(key_file_ids(&dir), [2], "batch {batch}");
        assert_eq!(vault.status().active_key, 2);
        assert!(vault.state().secrets.values().all(|r| r.key_id == 2));
        assert_all_values(&vault, 10);
    }
}

#[test]
fn crash_after_switch_retires_old_key() {
    let (_tmp, dir, vault, at_crash) = crash_and_reopen(CrashPoint::Switched, 10);
    assert_eq!(at_crash, [1, 2]);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(vault.status().active_key, 2);
    assert_all_values(&vault, 10);
    let report = vault.rotate_key(&|_| {}).unwrap();
    assert_eq!((report.old_key, report.new_key), (2, 3));
    assert_eq!(key_file_ids(&dir), [3]);
    assert_all_values(&vault, 10);
}

#[test]
fn crash_with_an_empty_store() {
    let (_tmp, dir, vault, _) = crash_and_reopen(CrashPoint::TargetCommitted, 0);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(vault.status().active_key, 2);
}

#[test]
fn interrupted_rotation_resumes_in_process() {
    let (_tmp, dir) = fresh();
    let vault = open_with(&dir, 3, None);
    populate(&vault, 10);
    vault.crash_at(Some(CrashPoint::Batch(1)));
    vault.rotate_key(&|_| {}).unwrap_err();
    vault.crash_at(None);
    // Mid-rotation: records under both keys, all readable; a set uses the new key.
    let under: Vec<u32> = vault.state().secrets.values().map(|r| r.key_id).collect();
    assert!(under.contains(&1) && under.contains(&2), "{under:?}");
    assert_eq!(
        vault.status().rotation,
        Some(RotationProgress { done: 6, total: 10 })
    );
    assert_all_values(&vault, 10);
    vault.set("s000", b"changed").unwrap();
    assert_eq!(vault.state().secrets["s000"].key_id, 2);
    vault.set("zz-new", b"new").unwrap();
    assert_eq!(vault.state().secrets["zz-new"].key_id, 2);

    let report = vault.rotate_key(&|_| {}).unwrap();
    assert_eq!((report.old_key, report.new_key), (1, 2));
    assert_eq!(report.reencrypted, 4);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(vault.reveal("s000").unwrap().expose(), b"changed");
    assert_eq!(vault.reveal("zz-new").unwrap().expose(), b"new");
    assert_eq!(vault.reveal("s009").unwrap().expose(), value_of(9));
}

#[test]
fn commit_failure_mid_rotation_leaves_it_pending() {
    let (_tmp, dir) = fresh();
    // populate is commit 1; the target is commit 2; batches are 3, 4, ...
    let vault = open_with(&dir, 4, Some(3));
    populate(&vault, 10);
    let err = vault.rotate_key(&|_| {}).unwrap_err();
    assert!(err.to_string().contains("injected"), "{err}");
    assert!(
        matches!(err, Error::RotationPending { key: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("stays pending"), "{err}");
    assert_eq!(vault.state().meta.rotation_target, Some(2));
    assert_all_values(&vault, 10);
    drop(vault);
    let vault = open(&dir);
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_all_values(&vault, 10);
}

#[test]
fn a_rotation_tags_every_record_under_the_new_key_even_across_a_crash() {
    // 10 secrets in 4 batches of 3 (0 to 3), then 4 services and 8 grants in 4 more.
    for point in [
        None,
        Some(CrashPoint::Batch(3)),
        Some(CrashPoint::Batch(5)),
        Some(CrashPoint::Batch(7)),
    ] {
        let (_tmp, dir) = fresh();
        let vault = open_with(&dir, 3, None);
        populate(&vault, 10);
        for i in 0..4u32 {
            let service = format!("svc{i}");
            vault.service_set_uid(&service, 3000 + i).unwrap();
            vault.grant(&service, "s000").unwrap();
            vault.grant(&service, "s001").unwrap();
        }
        vault.crash_at(point);
        let done = vault.rotate_key(&|_| {});
        assert_eq!(done.is_err(), point.is_some(), "{point:?}");
        drop(vault);
        // The next start finishes what the crash left; every record is then under key 2,
        // and key 1 is gone: a record still under it would not load.
        let vault = open(&dir);
        assert_eq!(key_file_ids(&dir), [2], "{point:?}");
        assert_eq!(vault.state().auths.len(), 10 + 4 + 8);
        assert!(
            vault.state().auths.values().all(|a| a.key_id == 2),
            "{point:?}"
        );
        assert_all_values(&vault, 10);
        assert_eq!(vault.grants("svc3"), ["s000", "s001"]);
        assert_eq!(vault.service_for_uid(3002).as_deref(), Some("svc2"));
        drop(vault);
        open(&dir);
    }
}

#[test]
fn a_damaged_record_does_not_stop_open_during_recovery() {
    let (_tmp, dir) = fresh();
    let vault = open_with(&dir, 2, None);
    populate(&vault, 6);
    vault.crash_at(Some(CrashPoint::TargetCommitted));
    vault.rotate_key(&|_| {}).unwrap_err();
    drop(vault);
    // Damage a record still under the old key.
    let store = dir.join(STORE_FILE);
    let mut bytes = raw::secret(&store, "s004");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    raw::put_secret(&store, "s004", &bytes);

    let vault = open(&dir);
    assert_eq!(vault.state().meta.rotation_target, Some(2));
    assert!(matches!(vault.reveal("s004"), Err(Error::Decrypt)));
    assert_eq!(vault.reveal("s005").unwrap().expose(), value_of(5));
    let err = vault.rotate_key(&|_| {}).unwrap_err();
    assert!(
        matches!(&err, Error::RotationPending { key: 2, source } if matches!(**source, Error::Decrypt)),
        "{err:?}"
    );
    // The way out: delete (or re-set) the damaged secret, rotate again.
    vault.delete("s004").unwrap();
    vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(key_file_ids(&dir), [2]);
}

// ---- Rotation, in full. ----

#[test]
fn rotation_keeps_values_and_reports_monotonic_progress() {
    let (_tmp, dir) = fresh();
    let vault = open_with(&dir, 7, None);
    populate(&vault, 50);
    let seen = RefCell::new(Vec::new());
    let report = vault.rotate_key(&|p| seen.borrow_mut().push(p)).unwrap();
    let seen = seen.into_inner();
    assert_eq!(
        (report.old_key, report.new_key, report.reencrypted),
        (1, 2, 50)
    );
    assert_eq!(seen.first(), Some(&RotationProgress { done: 0, total: 50 }));
    assert_eq!(
        seen.last(),
        Some(&RotationProgress {
            done: 50,
            total: 50
        })
    );
    assert!(
        seen.windows(2)
            .all(|w| w[0].done <= w[1].done && w[0].total == w[1].total)
    );
    assert_eq!(seen.len(), 1 + 50_usize.div_ceil(7));
    assert_eq!(vault.status().rotation, None);
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(
        vault
            .state()
            .meta
            .key_checks
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        [2]
    );
    // Versions are unchanged by rotation.
    assert!(vault.list_secrets().iter().all(|s| s.version == 1));
    assert_all_values(&vault, 50);
    drop(vault);
    let vault = open(&dir);
    assert_all_values(&vault, 50);
}

#[test]
fn opened_file_reads_across_rotations() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set("db", b"v1").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();

    vault.rotate_key(&|_| {}).unwrap();
    // Key 1 is retired; the unchanged version is re-fetched under key 2.
    assert!(vault.state().keys.get(1).is_none());
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"v1");

    // Changed and then rotated again: the opened version is the previous one, re-fetched
    // under the new key as well.
    let fid2 = vault.open_secret("web", "db").unwrap();
    vault.set("db", b"v2").unwrap();
    assert_eq!(vault.read_opened("web", &fid2).unwrap().expose(), b"v1");
    vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(vault.read_opened("web", &fid2).unwrap().expose(), b"v1");
    // Changed once more, version 1 destroyed, and rotated: its key is gone for good.
    vault.set("db", b"v2").unwrap();
    vault.rotate_key(&|_| {}).unwrap();
    assert!(matches!(vault.read_opened("web", &fid2), Err(Error::Stale)));
    assert_eq!(
        vault
            .read_opened("web", &vault.open_secret("web", "db").unwrap())
            .unwrap()
            .expose(),
        b"v2"
    );
}

#[test]
fn deleted_and_recreated_secret_is_a_new_incarnation() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set("db", b"old").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    vault.delete("db").unwrap();
    vault.set("db", b"new").unwrap();
    vault.grant("web", "db").unwrap();
    assert_eq!(vault.secret_info("db").unwrap().version, 1);
    // Same name and version 1, but not the secret that was opened: gone, as after the
    // delete, whether the snapshot's key is still loaded or not.
    assert!(matches!(
        vault.read_opened("web", &fid),
        Err(Error::NotFound)
    ));
    vault.rotate_key(&|_| {}).unwrap();
    assert!(matches!(
        vault.read_opened("web", &fid),
        Err(Error::NotFound)
    ));
}

#[test]
fn failed_key_file_cleanup_says_the_rotation_is_committed_and_open_finishes_it() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    populate(&vault, 5);
    // After step 1 has written the key file, make its next rewrite fail: a directory where
    // the atomic write puts its temporary file (root may write anywhere, but not there).
    let blocker = fsutil::temp_path(&dir.join(KEY_FILE));
    let err = vault
        .rotate_key(&|_| {
            if !blocker.exists() {
                std::fs::create_dir(&blocker).unwrap();
            }
        })
        .unwrap_err();
    assert!(
        matches!(&err, Error::RotationCleanup { key: 2, source } if matches!(**source, Error::Io { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("is committed") && text.contains("next start"),
        "{text}"
    );
    // The rotation itself is done: active key 2, everything under it and readable.
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(vault.status().rotation, None);
    assert!(vault.state().secrets.values().all(|r| r.key_id == 2));
    assert_eq!(key_file_ids(&dir), [1, 2]);
    assert_all_values(&vault, 5);
    vault.set("s000", b"after").unwrap();
    assert_eq!(vault.state().secrets["s000"].key_id, 2);
    drop(vault);

    std::fs::remove_dir(&blocker).unwrap();
    let vault = open(&dir);
    assert_eq!(key_file_ids(&dir), [2]);
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(vault.reveal("s000").unwrap().expose(), b"after");
    assert_eq!(vault.reveal("s004").unwrap().expose(), value_of(4));
}

// ---- A store that must be reopened after a failed write (redb on a full disk). ----

#[test]
fn a_failed_write_reopens_the_store_and_the_next_write_works() {
    let (_tmp, dir) = fresh();
    let (vault, faults) = open_faulty(&dir, 1000, None);
    vault.set("a", b"1").unwrap();
    vault.service_set_uid("web", 2000).unwrap();

    faults.inject(Inject::FailClosing);
    let err = vault.set("b", b"lost").unwrap_err();
    assert!(err.to_string().contains("injected commit failure"), "{err}");
    assert_eq!(faults.reopens.load(Ordering::SeqCst), 1, "reopened at once");
    assert!(vault.secret_info("b").is_none());
    vault.set("b", b"2").unwrap();
    vault.grant("web", "b").unwrap();
    assert_eq!(vault.reveal("b").unwrap().expose(), b"2");
    assert_eq!(vault.secret_info("b").unwrap().version, 1);
    drop(vault);
    let vault = open(&dir);
    assert_eq!(vault.reveal("b").unwrap().expose(), b"2");
    assert!(vault.is_granted("web", "b"));
}

#[test]
fn a_store_that_will_not_reopen_refuses_writes_until_it_does() {
    let (_tmp, dir) = fresh();
    let (vault, faults) = open_faulty(&dir, 1000, None);
    vault.set("a", b"1").unwrap();

    faults.inject(Inject::FailClosing);
    faults.failing_reopens.store(2, Ordering::SeqCst);
    // The commit's own error is reported; the reopen right after it fails.
    let err = vault.set("b", b"lost").unwrap_err();
    assert!(err.to_string().contains("injected commit failure"), "{err}");
    // The next write tries to reopen first and says that this is what failed.
    let err = vault.set("c", b"lost").unwrap_err();
    assert!(err.to_string().contains("injected reopen failure"), "{err}");
    assert!(vault.secret_info("b").is_none() && vault.secret_info("c").is_none());
    // Reads never needed the store.
    assert_eq!(vault.reveal("a").unwrap().expose(), b"1");
    // The third try reopens it.
    vault.set("c", b"3").unwrap();
    assert_eq!(faults.reopens.load(Ordering::SeqCst), 1);
    assert!(vault.secret_info("b").is_none());
    drop(vault);
    let vault = open(&dir);
    assert!(vault.secret_info("b").is_none());
    assert_eq!(vault.reveal("c").unwrap().expose(), b"3");
}

#[test]
fn a_commit_that_failed_but_landed_is_reported_and_shown() {
    let (_tmp, dir) = fresh();
    let (vault, faults) = open_faulty(&dir, 1000, None);
    vault.set("a", b"1").unwrap();
    faults.inject(Inject::LandThenFailClosing);
    let err = vault.set("a", b"2").unwrap_err();
    assert!(matches!(err, Error::CommitUncertain { .. }), "{err:?}");
    assert!(err.to_string().contains("took effect"), "{err}");
    // Memory follows the store, so the next version is 3, not a second 2.
    assert_eq!(vault.secret_info("a").unwrap().version, 2);
    assert_eq!(vault.reveal("a").unwrap().expose(), b"2");
    assert_eq!(vault.set("a", b"3").unwrap(), 3);
    drop(vault);
    assert_eq!(open(&dir).reveal("a").unwrap().expose(), b"3");
}

#[test]
fn a_rotation_target_that_failed_but_landed_loads_its_key() {
    let (_tmp, dir) = fresh();
    let (vault, faults) = open_faulty(&dir, 3, None);
    populate(&vault, 10);
    // The rotation's first commit is the target's.
    faults.inject(Inject::LandThenFailClosing);
    let err = vault.rotate_key(&|_| {}).unwrap_err();
    assert!(
        matches!(&err, Error::RotationPending { key: 2, source } if matches!(**source, Error::CommitUncertain { .. })),
        "{err:?}"
    );
    // The new key came from the key file with the reload, so new values can use it.
    assert_eq!(vault.state().meta.rotation_target, Some(2));
    assert!(vault.state().keys.get(2).is_some());
    vault.set("new", b"sealed under 2").unwrap();
    assert_eq!(vault.state().secrets["new"].key_id, 2);
    assert_all_values(&vault, 10);
    let report = vault.rotate_key(&|_| {}).unwrap();
    assert_eq!((report.old_key, report.new_key), (1, 2));
    assert_eq!(key_file_ids(&dir), [2]);
    assert_all_values(&vault, 10);
    assert_eq!(vault.reveal("new").unwrap().expose(), b"sealed under 2");
}

#[test]
fn a_failed_write_mid_rotation_reopens_and_the_rotation_resumes() {
    let (_tmp, dir) = fresh();
    let (vault, faults) = open_faulty(&dir, 3, None);
    populate(&vault, 10);
    let calls = AtomicUsize::new(0);
    let err = vault
        .rotate_key(&|_| {
            // After the first batch: the second batch's commit fails.
            if calls.fetch_add(1, Ordering::SeqCst) == 1 {
                faults.inject(Inject::FailClosing);
            }
        })
        .unwrap_err();
    assert!(
        matches!(err, Error::RotationPending { key: 2, .. }),
        "{err:?}"
    );
    assert_eq!(
        vault.status().rotation,
        Some(RotationProgress { done: 3, total: 10 })
    );
    assert_all_values(&vault, 10);
    vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(key_file_ids(&dir), [2]);
    assert_all_values(&vault, 10);
}

// ---- Atomicity. ----

#[test]
fn failed_commit_changes_nothing() {
    let (_tmp, dir) = fresh();
    let vault = open_with(&dir, 1000, Some(2));
    vault.set("a", b"1").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    assert!(vault.grant("web", "a").is_err());
    assert!(!vault.is_granted("web", "a"));
    vault.grant("web", "a").unwrap();
    assert!(vault.is_granted("web", "a"));
    drop(vault);
    assert!(open(&dir).is_granted("web", "a"));
}

#[test]
fn set_many_is_all_or_nothing() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    let err = vault
        .set_many([("a", b"x".as_slice()), ("b", big.as_slice())])
        .unwrap_err();
    assert!(matches!(err, Error::TooLarge { .. }));
    assert!(vault.secret_info("a").is_none());
    let versions = vault
        .set_many([
            ("a", b"1".as_slice()),
            ("a", b"2".as_slice()),
            ("b", b"3".as_slice()),
        ])
        .unwrap();
    assert_eq!(versions, [1, 2, 1]);
    assert_eq!(vault.reveal("a").unwrap().expose(), b"2");
}

// ---- Tampering with the raw store. ----

/// The store's keys, as whoever holds the key file has them.
fn store_keys(dir: &Path) -> Keyring {
    Keyring::new(keyfile::read(&dir.join(KEY_FILE)).unwrap())
}

fn assert_tampered(dir: &Path) {
    let err = Vault::open(dir, None).unwrap_err();
    assert!(matches!(err, Error::Tampered { .. }), "{err:?}");
    assert!(
        err.to_string().contains("changed outside srv-secrets"),
        "{err}"
    );
}

#[test]
fn a_record_moved_to_another_name_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set("alpha", b"alpha-value").unwrap();
    vault.set("bravo", b"bravo-value").unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let alpha = raw::secret(&store, "alpha");
    raw::put_secret(&store, "bravo", &alpha);
    assert_tampered(&dir);
}

#[test]
fn a_record_relabelled_with_another_version_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set("a", b"one").unwrap();
    vault.set("a", b"two").unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let (mut rec, _) =
        SecretRecord::decode("a", &raw::secret(&store, "a"), &store_keys(&dir)).unwrap();
    assert_eq!(rec.version(), 2);
    rec.current.made.version = 1;
    // Without the cluster key, a record can only be tagged under some other key.
    let forger = Key::generate(1).unwrap();
    raw::put_secret(&store, "a", &rec.encode("a", &forger).0);
    assert_tampered(&dir);
}

#[test]
fn a_forged_or_replayed_grant_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set("db", b"v").unwrap();
    vault.set("other", b"v").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let clean = std::fs::read(&store).unwrap();
    let grant = raw::get(&store, Table::Grants, "web/db").unwrap();

    // The record of one grant copied to another: it names its row, so it is refused.
    raw::put(&store, Table::Grants, "web/other", &grant);
    assert_tampered(&dir);
    // A grant made with a key of the forger's own.
    std::fs::write(&store, &clean).unwrap();
    let row = Row::grant("web", "other");
    let forged = crate::record::encode_grant(&row, None, &Key::generate(1).unwrap()).0;
    raw::put(&store, Table::Grants, "web/other", &forged);
    assert_tampered(&dir);

    // Revoked, then the earlier record put back: authentic, but not in the set the last
    // commit wrote.
    std::fs::write(&store, &clean).unwrap();
    let vault = open(&dir);
    vault.revoke("web", "db").unwrap();
    drop(vault);
    raw::put(&store, Table::Grants, "web/db", &grant);
    assert_tampered(&dir);
    // As is a grant removed.
    std::fs::write(&store, &clean).unwrap();
    raw::delete(&store, Table::Grants, "web/db");
    assert_tampered(&dir);
    std::fs::write(&store, &clean).unwrap();
    assert!(open(&dir).is_granted("web", "db"));
}

#[test]
fn a_tampered_service_or_store_record_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.service_set_uid("web", 2000).unwrap();
    vault.service_set_uid("api", 2001).unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let clean = std::fs::read(&store).unwrap();
    let keys = store_keys(&dir);
    let forger = Key::generate(1).unwrap();
    // web's record given api's uid's... bytes: api's record at web's row.
    let api = raw::get(&store, Table::Services, "api").unwrap();
    raw::put(&store, Table::Services, "web", &api);
    assert_tampered(&dir);
    // A service re-made with a uid of the forger's choosing.
    std::fs::write(&store, &clean).unwrap();
    let (mut web, _) = ServiceRecord::decode(
        "web",
        &raw::get(&store, Table::Services, "web").unwrap(),
        &keys,
    )
    .unwrap();
    web.uid = Some(0);
    raw::put(
        &store,
        Table::Services,
        "web",
        &web.encode("web", &forger).0,
    );
    assert_tampered(&dir);
    // The admin uid (in the store record) changed, as whoever wants to be admin would.
    std::fs::write(&store, &clean).unwrap();
    let bytes = raw::meta(&store, "store").unwrap();
    let mut record = crate::record::StoreRecord::decode(&bytes, &keys).unwrap();
    record.admin_uid = 4242;
    raw::put_meta(&store, "store", &record.encode(&forger));
    assert_tampered(&dir);
    std::fs::write(&store, &clean).unwrap();
    assert_eq!(open(&dir).admin_uid(), ADMIN);
}

#[test]
fn stale_temp_key_file_is_removed_at_open() {
    let (_tmp, dir) = fresh();
    let tmp_key = fsutil::temp_path(&dir.join(KEY_FILE));
    std::fs::write(&tmp_key, b"partial").unwrap();
    let vault = open(&dir);
    assert!(!tmp_key.exists());
    drop(vault);
}

#[test]
fn poisoned_writer_reloads() {
    let (_tmp, dir) = fresh();
    let vault = std::sync::Arc::new(open(&dir));
    vault.set("a", b"1").unwrap();
    let v = std::sync::Arc::clone(&vault);
    let joined = std::thread::spawn(move || {
        let _w = v.writer.lock().unwrap();
        // Committed but never applied, as if the mutation panicked in between.
        v.backend
            .commit(Batch {
                base: v.revision(),
                actor: Actor::local(),
                ops: rows::encode(&[Mutation::DeleteSecret("a".into())], &v.state()).unwrap(),
            })
            .unwrap();
        panic!("injected panic while holding the writer");
    })
    .join();
    assert!(joined.is_err());
    assert!(vault.secret_info("a").is_some(), "memory lags the store");
    vault.set("b", b"2").unwrap();
    assert!(vault.secret_info("a").is_none(), "reloaded from the store");
    assert_eq!(vault.reveal("b").unwrap().expose(), b"2");
}

#[test]
fn sets_and_reads_run_during_a_rotation() {
    let (_tmp, dir) = fresh();
    let vault = std::sync::Arc::new(open_with(&dir, 2, None));
    populate(&vault, 200);
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "s100").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (vault, stop) = (std::sync::Arc::clone(&vault), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut i = 0u32;
            while !stop.load(Ordering::SeqCst) {
                // Names on both sides of the rotation's cursor.
                let name = ["s000", "s150", "s199"][i as usize % 3];
                vault.set(name, format!("w{i}").as_bytes()).unwrap();
                let fid = vault.open_secret("web", "s100").unwrap();
                assert_eq!(
                    vault.read_opened("web", &fid).unwrap().expose(),
                    value_of(100)
                );
                i += 1;
            }
            i
        })
    };
    let report = vault.rotate_key(&|_| {}).unwrap();
    stop.store(true, Ordering::SeqCst);
    let sets = writer.join().unwrap();
    assert_eq!(report.new_key, 2);
    assert!(vault.state().secrets.values().all(|r| r.key_id == 2));
    assert_eq!(key_file_ids(&dir), [2]);
    for i in 1..200 {
        if ![150, 199].contains(&i) {
            let name = format!("s{i:03}");
            assert_eq!(vault.reveal(&name).unwrap().expose(), value_of(i));
        }
    }
    if sets > 0 {
        let last = sets - 1;
        let name = ["s000", "s150", "s199"][last as usize % 3];
        assert_eq!(
            vault.reveal(name).unwrap().expose(),
            format!("w{last}").as_bytes()
        );
    }
}

/// A time after init's (which used the system clock): the store's last change never
/// moves back, so a test clock must start after it.
const T: u64 = 4_000_000_000;

#[test]
fn grants_services_and_status_are_dated_by_their_last_change() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    let times = |v: &Vault, s: &str| {
        let info = v.service(s).unwrap();
        (info.changed, info.grants_changed)
    };
    vault.set_clock(Some(T + 1000));
    vault.service_set_uid("web", 1001).unwrap();
    vault.service_set_uid("api", 1002).unwrap();
    assert_eq!(times(&vault, "web"), (T + 1000, T + 1000));
    assert_eq!(vault.status().changed, T + 1000);

    vault.set_clock(Some(T + 2000));
    vault.set("a", b"alpha").unwrap();
    assert_eq!(vault.secret_info("a").unwrap().mtime, T + 2000);
    assert_eq!(vault.status().changed, T + 2000);
    assert_eq!(
        times(&vault, "web"),
        (T + 1000, T + 1000),
        "a set is not web's change"
    );

    vault.set_clock(Some(T + 3000));
    vault.grant("web", "a").unwrap();
    assert_eq!(times(&vault, "web"), (T + 1000, T + 3000));
    assert_eq!(times(&vault, "api"), (T + 1000, T + 1000));
    // Granting again changes nothing, so dates nothing.
    vault.set_clock(Some(T + 3500));
    vault.grant("web", "a").unwrap();
    assert_eq!(times(&vault, "web"), (T + 1000, T + 3000));

    vault.set_clock(Some(T + 4000));
    vault.service_set_manifest("web", b"secret a\n").unwrap();
    assert_eq!(times(&vault, "web"), (T + 4000, T + 3000));

    // Deleting a secret drops its grants: its holders' grants changed.
    vault.set_clock(Some(T + 5000));
    vault.delete("a").unwrap();
    assert_eq!(times(&vault, "web"), (T + 4000, T + 5000));
    assert_eq!(times(&vault, "api"), (T + 1000, T + 1000));

    // A clock stepping back takes back neither the store's last change nor the mtime of
    // what it dates: nothing is dated before what came before it.
    vault.set_clock(Some(100));
    vault.set("b", b"bravo").unwrap();
    assert_eq!(vault.secret_info("b").unwrap().mtime, T + 5000);
    assert_eq!(vault.status().changed, T + 5000);

    // A rotation's steps date status.
    vault.set_clock(Some(T + 6000));
    vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(vault.status().changed, T + 6000);
    drop(vault);

    // After a restart, only the store's last change is known: every time is that, the
    // latest anything can have changed, never earlier than before.
    let vault = open(&dir);
    assert_eq!(vault.status().changed, T + 6000);
    assert_eq!(times(&vault, "web"), (T + 6000, T + 6000));
    assert_eq!(times(&vault, "api"), (T + 6000, T + 6000));
}

#[test]
fn a_store_from_before_last_change_is_dated_by_its_newest_secret() {
    // Format 1 without `last_change`, as the oldest builds wrote it: migrated with none.
    let (_tmp, dir) = format1_fixture("plain");
    raw::remove_meta(&dir.join(STORE_FILE), "last_change");
    let vault = open(&dir);
    assert_eq!(vault.status().changed, T);
    let web = vault.service("web").unwrap();
    assert_eq!((web.changed, web.grants_changed), (T, T));
}

#[test]
fn a_new_service_and_its_grants_file_are_dated_when_it_is_made() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    vault.set_clock(Some(T + 1000));
    vault.set("a", b"alpha").unwrap();
    vault.set_clock(Some(T + 2000));
    vault.service_set_manifest("web", b"").unwrap();
    let web = vault.service("web").unwrap();
    assert_eq!((web.changed, web.grants_changed), (T + 2000, T + 2000));
    // Removed and made again: dated anew.
    vault.service_remove("web").unwrap();
    vault.set_clock(Some(T + 3000));
    vault.service_set_uid("web", 1001).unwrap();
    let web = vault.service("web").unwrap();
    assert_eq!((web.changed, web.grants_changed), (T + 3000, T + 3000));
}

// ---- Fixtures: stores written by this build, for the migration tests of later ones. ----

/// The secrets of the fixture stores, names and values: test values, nothing else.
/// `updated` is set three times (version 3, this is its last value); `large` is 10,000
/// bytes, more than one chunk of any layout.
pub(super) fn fixture_secrets() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("db_password", b"hunter2".to_vec()),
        ("empty", Vec::new()),
        ("binary", vec![0, 1, 2, 0xfe, 0xff, b'\n', 0]),
        ("updated", b"third value".to_vec()),
        ("large", (0..10_000u32).map(|i| (i % 251) as u8).collect()),
    ]
}

/// Writes the fixture stores into `$SECRETS_WRITE_FIXTURES/{plain,rotating}/` (each a data
/// directory with its key file), as this build writes them. Run by hand, never by CI:
///
/// ```text
/// SECRETS_WRITE_FIXTURES=/tmp/fx cargo test -p secrets --lib write_fixtures -- --ignored
/// ```
///
/// `plain`: admin uid 1000, rotated once (active key 2), the secrets of
/// [`fixture_secrets`], services web (uid 1001, a manifest), api (uid 1002) and worker (a
/// manifest, no uid), grants web: db_password, large; api: binary. `rotating`: the same,
/// then a rotation to key 3 stopped after its first batch of 2 (records under keys 2 and 3,
/// the target committed), as a crash would leave it.
#[test]
#[ignore = "writes fixtures on request"]
fn write_fixtures() {
    let out = PathBuf::from(std::env::var_os("SECRETS_WRITE_FIXTURES").unwrap());
    for (which, stop) in [("plain", false), ("rotating", true)] {
        let dir = out.join(which);
        Vault::init(&dir, None, ADMIN).unwrap();
        let vault = open_with(&dir, 2, None);
        vault.set_clock(Some(T));
        for (name, value) in fixture_secrets() {
            if name == "updated" {
                vault.set(name, b"first value").unwrap();
                vault.set(name, b"second value").unwrap();
            }
            vault.set(name, &value).unwrap();
        }
        vault.service_set_uid("web", 1001).unwrap();
        vault
            .service_set_manifest(
                "web",
                b"secret db_password\nsecret large\nconfig mode=prod\n",
            )
            .unwrap();
        vault.service_set_uid("api", 1002).unwrap();
        vault
            .service_set_manifest("worker", b"secret binary\n")
            .unwrap();
        vault.grant("web", "db_password").unwrap();
        vault.grant("web", "large").unwrap();
        vault.grant("api", "binary").unwrap();
        vault.rotate_key(&|_| {}).unwrap();
        if stop {
            vault.crash_at(Some(CrashPoint::Batch(0)));
            vault.rotate_key(&|_| {}).unwrap_err();
        }
    }
}

// ---- The store seam: a store shared by several vaults, as nodes share etcd. ----

/// One store in memory that several vaults share: rows, a revision, and the log of every
/// commit, which each vault's feed reads from.
#[derive(Default)]
struct Shared {
    inner: Mutex<SharedInner>,
}

#[derive(Default)]
struct SharedInner {
    revision: Revision,
    rows: std::collections::BTreeMap<Row, Vec<u8>>,
    log: Vec<(Revision, Revision, Vec<Op>)>,
    /// Batches committed, with who made them.
    actors: Vec<Actor>,
}

/// One vault's view of a [`Shared`] store.
struct Node {
    store: Arc<Shared>,
    /// The feed leaves out the next commit it would deliver (a watch that missed one).
    skip_next: AtomicBool,
}

impl Node {
    fn on(store: &Arc<Shared>) -> Box<Node> {
        Box::new(Node {
            store: Arc::clone(store),
            skip_next: AtomicBool::new(false),
        })
    }
}

impl Backend for Node {
    fn load(&self) -> Result<Snapshot> {
        let inner = self.store.inner.lock().unwrap();
        Ok(Snapshot {
            revision: inner.revision,
            rows: inner
                .rows
                .iter()
                .map(|(r, v)| (r.clone(), v.clone()))
                .collect(),
        })
    }

    fn commit(&self, batch: Batch) -> Result<Revision> {
        let mut inner = self.store.inner.lock().unwrap();
        if inner.revision != batch.base {
            return Err(Error::Conflict {
                expected: batch.base.0,
                found: inner.revision.0,
            });
        }
        for op in &batch.ops {
            match op {
                Op::Put(row, value) => {
                    inner.rows.insert(row.clone(), value.clone());
                }
                Op::Delete(row) => {
                    inner.rows.remove(row);
                }
            }
        }
        // Revisions that are not consecutive, as etcd's are not.
        let revision = Revision(inner.revision.0 + 10);
        inner.revision = revision;
        inner.log.push((batch.base, revision, batch.ops));
        inner.actors.push(batch.actor);
        Ok(revision)
    }

    fn range(
        &self,
        table: Table,
        from: &str,
        to: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>> {
        let inner = self.store.inner.lock().unwrap();
        Ok(inner
            .rows
            .range(Row::new(table, from)..Row::new(table, to))
            .take(limit)
            .map(|(r, v)| (r.key.clone(), v.clone()))
            .collect())
    }

    fn changes(&self, after: Revision) -> Result<Feed> {
        let inner = self.store.inner.lock().unwrap();
        let mut commits: Vec<crate::backend::Committed> = inner
            .log
            .iter()
            .filter(|(_, rev, _)| *rev > after)
            .map(|(base, revision, ops)| crate::backend::Committed {
                base: *base,
                revision: *revision,
                ops: ops.clone(),
            })
            .collect();
        if !commits.is_empty() && self.skip_next.swap(false, Ordering::SeqCst) {
            commits.remove(0);
        }
        Ok(Feed::Commits(commits))
    }
}

/// A shared store made by `init_store`, its key file, and two vaults on it.
fn two_nodes() -> (tempfile::TempDir, Arc<Shared>, Vault, Vault) {
    let tmp = tempfile::tempdir().unwrap();
    let key_path = tmp.path().join("key");
    let key = Key::generate(1).unwrap();
    keyfile::write(&key_path, &[&key], keyfile::Seeds::default()).unwrap();
    let store = Arc::new(Shared::default());
    Vault::init_store(&*Node::on(&store), &key, ADMIN).unwrap();
    let a = Vault::with_backend(Node::on(&store), &key_path).unwrap();
    let b = Vault::with_backend(Node::on(&store), &key_path).unwrap();
    (tmp, store, a, b)
}

#[test]
fn the_change_feed_brings_other_writers_commits_in_order() {
    let (_tmp, store, a, b) = two_nodes();
    a.set("db", b"v1").unwrap();
    a.service_set_uid("web", 2000).unwrap();
    a.grant("web", "db").unwrap();
    assert!(b.secret_info("db").is_none(), "b has not caught up");
    assert_eq!(b.catch_up().unwrap(), a.revision());
    assert!(b.is_granted("web", "db"));
    let fid = b.open_secret("web", "db").unwrap();
    assert_eq!(b.read_opened("web", &fid).unwrap().expose(), b"v1");

    // A revoke on one node stops reads on the other once its feed has brought it.
    a.revoke("web", "db").unwrap();
    assert_eq!(b.read_opened("web", &fid).unwrap().expose(), b"v1");
    b.catch_up().unwrap();
    assert!(matches!(b.read_opened("web", &fid), Err(Error::NotFound)));

    // b plans against what it has; a commits first; b's conditional commit is refused,
    // b catches up and plans again, on top of a's change.
    a.set("db", b"v2").unwrap();
    assert_eq!(
        b.set("db", b"v3").unwrap(),
        3,
        "planned again after a's version 2"
    );
    a.catch_up().unwrap();
    assert_eq!(a.reveal("db").unwrap().expose(), b"v3");
    assert_eq!(a.revision(), b.revision());
    let inner = store.inner.lock().unwrap();
    assert!(
        inner.log.windows(2).all(|w| w[1].0 == w[0].1),
        "every commit was made against the one before it"
    );
}

#[test]
fn a_feed_that_skips_a_commit_makes_the_vault_reload() {
    let (_tmp, _store, a, b) = two_nodes();
    a.set("one", b"1").unwrap();
    a.set("two", b"2").unwrap();
    // b's feed delivers "two" without "one": it does not follow what b has, so b reloads
    // rather than apply it out of order.
    let skipping = Node::on(&_store);
    skipping.skip_next.store(true, Ordering::SeqCst);
    let mut b = b;
    b.backend = skipping;
    b.catch_up().unwrap();
    assert_eq!(b.reveal("one").unwrap().expose(), b"1");
    assert_eq!(b.reveal("two").unwrap().expose(), b"2");
    assert_eq!(b.revision(), a.revision());
}

/// What a subscriber holds, as the lines of a service's events file.
fn told(s: &crate::events::Subscription) -> Vec<String> {
    std::iter::from_fn(|| s.next())
        .map(|n| match n {
            crate::events::Next::Event(e) => e.line(false).render(),
            crate::events::Next::Lost(n) => format!("lost {n}\n"),
        })
        .collect()
}

#[test]
fn a_change_made_on_another_node_is_told_where_the_feed_brings_it() {
    let (_tmp, _store, a, b) = two_nodes();
    a.set("db", b"v1").unwrap();
    a.service_set_uid("web", 2000).unwrap();
    a.grant("web", "db").unwrap();
    b.catch_up().unwrap();
    let web = crate::events::Audience::Service("web".into());
    let (on_a, on_b) = (a.subscribe(web.clone()), b.subscribe(web));
    a.set("db", b"v2").unwrap();
    a.revoke("web", "db").unwrap();
    assert_eq!(told(&on_a), ["set db 2\n", "revoked db 2\n"]);
    assert!(told(&on_b).is_empty(), "b's feed has not brought them yet");
    b.catch_up().unwrap();
    assert_eq!(told(&on_b), ["set db 2\n", "revoked db 2\n"]);
}

#[test]
fn a_reload_tells_what_changed_since_memory_was_last_right() {
    let (_tmp, store, a, b) = two_nodes();
    a.set("db", b"v1").unwrap();
    a.service_set_uid("web", 2000).unwrap();
    a.grant("web", "db").unwrap();
    a.set("other", b"o").unwrap();
    b.catch_up().unwrap();
    let on_b = b.subscribe(crate::events::Audience::Service("web".into()));
    a.set("db", b"v2").unwrap();
    a.grant("web", "other").unwrap();
    a.service_set_manifest("web", b"config level=debug\n")
        .unwrap();
    // b's feed misses a commit, so b reloads the whole store: what web sees change is
    // told all the same, from the difference.
    let skipping = Node::on(&store);
    skipping.skip_next.store(true, Ordering::SeqCst);
    let mut b = b;
    b.backend = skipping;
    b.catch_up().unwrap();
    let revision = b.revision().0;
    assert_eq!(
        told(&on_b),
        [
            "set db 2\n".to_string(),
            "granted other 1\n".to_string(),
            format!("config level {revision}\n")
        ]
    );
}

#[test]
fn every_batch_carries_its_actor() {
    let (_tmp, store, a, _b) = two_nodes();
    let admin = Actor::admin(Some(1000)).with_reason("ticket 7");
    a.apply(
        &admin,
        &[Change::Set {
            name: "db",
            value: b"v",
        }],
    )
    .unwrap();
    a.set("other", b"v").unwrap();
    a.rotate_key_by(&Actor::admin(Some(0)), &|_| {}).unwrap();
    let inner = store.inner.lock().unwrap();
    let who: Vec<String> = inner.actors.iter().map(ToString::to_string).collect();
    // The store's creation, the audit's start, the two changes, then the rotation's
    // target, one batch of both secrets and the switch.
    assert_eq!(
        who,
        [
            "local",
            "local",
            "admin (uid 1000)",
            "local",
            "admin (uid 0)",
            "admin (uid 0)",
            "admin (uid 0)"
        ]
    );
    assert_eq!(inner.actors[2].reason(), Some("ticket 7"));
}

#[test]
fn batches_past_the_bounds_are_refused_before_the_store() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    // As many rows as the bound: one commit (each set is a row and its audit record).
    let names: Vec<String> = (0..MAX_BATCH_MUTATIONS / 2)
        .map(|i| format!("s{i:05}"))
        .collect();
    vault
        .set_many(names.iter().map(|n| (n.as_str(), b"v".as_slice())))
        .unwrap();
    let mut more = names.clone();
    more.push("one-more".into());
    let err = vault
        .set_many(more.iter().map(|n| (n.as_str(), b"w".as_slice())))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: MAX_BATCH_MUTATIONS,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(vault.reveal("s00000").unwrap().expose(), b"v");
    // Four values of 1 MiB, as much as a ctl transaction holds, are one commit; so are
    // four more over them (each record then carries its previous version too), and four
    // staged over those (three versions each); more are refused.
    let big = vec![7u8; MAX_VALUE_LEN];
    let four = ["a", "b", "c", "d"].map(|n| (n, big.as_slice()));
    vault.set_many(four).unwrap();
    vault.set_many(four).unwrap();
    let stage = four.map(|(name, value)| Change::Stage { name, value });
    vault.apply(&Actor::local(), &stage).unwrap();
    let many: Vec<(String, &[u8])> = (0..17)
        .map(|i| (format!("big{i}"), big.as_slice()))
        .collect();
    let err = vault.set_many(many).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: MAX_BATCH_BYTES,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(vault.secret_info("big0").is_none());
}

// ---- The migration from format 1, on stores written by the build that wrote format 1. ----

/// A copy of fixture `format1/<which>` as a data directory of its own, with the modes the
/// vault requires (git keeps none).
fn format1_fixture(which: &str) -> (tempfile::TempDir, PathBuf) {
    fixture("format1", which)
}

/// A copy of fixture `<format>/<which>`, likewise.
fn fixture(format: &str, which: &str) -> (tempfile::TempDir, PathBuf) {
    use std::os::unix::fs::PermissionsExt;
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(format)
        .join(which);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    for file in [KEY_FILE, STORE_FILE] {
        std::fs::copy(from.join(file), dir.join(file)).unwrap();
        std::fs::set_permissions(dir.join(file), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (tmp, dir)
}

/// What the fixtures hold, read through the vault.
fn assert_fixture_contents(vault: &Vault) {
    for (name, value) in fixture_secrets() {
        assert_eq!(vault.reveal(name).unwrap().expose(), &value[..], "{name}");
        let info = vault.secret_info(name).unwrap();
        assert_eq!(
            info.version,
            if name == "updated" { 3 } else { 1 },
            "{name}"
        );
        assert_eq!(info.mtime, T, "{name}");
        assert_eq!(info.length, value.len() as u64);
    }
    let names: Vec<String> = vault
        .list_secrets()
        .into_iter()
        .map(|s| s.name)
        .filter(|n| n != "after")
        .collect();
    assert_eq!(names.len(), fixture_secrets().len());
    assert_eq!(vault.admin_uid(), ADMIN);
    let web = vault.service("web").unwrap();
    assert_eq!(web.uid, Some(1001));
    assert_eq!(
        web.manifest.text(),
        "secret db_password\nsecret large\nconfig mode=prod\n"
    );
    assert_eq!(vault.service("api").unwrap().uid, Some(1002));
    let worker = vault.service("worker").unwrap();
    assert_eq!(
        (worker.uid, worker.manifest.text()),
        (None, "secret binary\n")
    );
    assert_eq!(vault.service_for_uid(1002).as_deref(), Some("api"));
    assert_eq!(vault.grants("web"), ["db_password", "large"]);
    assert_eq!(vault.grants("api"), ["binary"]);
    assert!(vault.grants("worker").is_empty());
    let fid = vault.open_secret("web", "large").unwrap();
    assert_eq!(
        vault.read_opened("web", &fid).unwrap().expose(),
        &fixture_secrets()[4].1[..]
    );
    assert!(matches!(
        vault.open_secret("api", "db_password"),
        Err(Error::NotFound)
    ));
}

#[test]
fn a_format_4_store_opens_as_it_is_and_its_versions_go_on_from_its_numbers() {
    use crate::{VersionSlot, VersionState};
    for (which, active_after) in [("plain", 2), ("rotating", 3)] {
        let (_tmp, dir) = fixture("format4", which);
        let store = dir.join(STORE_FILE);
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            rows::FORMAT_WITHOUT_VERSIONS.to_be_bytes(),
            "{which}"
        );
        let vault = open(&dir);
        assert_fixture_contents(&vault);
        assert_eq!(vault.status().active_key, active_after, "{which}");
        // Its audit starts at the upgrade, signed with a key the key file now holds.
        let start = &vault.audit_read(audit::CHANGES, 1, 1).unwrap()[0].0;
        assert_eq!(start.action, "audit-start", "{which}");
        assert_eq!(start.details["upgraded_from_format"], "4", "{which}");
        assert!(
            keyfile::read_file(&dir.join(KEY_FILE))
                .unwrap()
                .audit
                .is_some()
        );
        assert!(vault.audit_verify(&[]).unwrap().is_ok(), "{which}");
        let history = vault.history("updated").unwrap();
        assert_eq!(history.len(), 1, "format 4 kept no earlier version");
        assert_eq!(
            (
                history[0].version,
                history[0].state,
                history[0].by.as_deref()
            ),
            (3, VersionState::Current, None)
        );
        // Versions go on from the stored number; the old one is kept for a rollback.
        vault.set("updated", b"fourth value").unwrap();
        assert_eq!(vault.secret_info("updated").unwrap().version, 4);
        vault
            .apply(&Actor::local(), &[Change::Rollback { name: "updated" }])
            .unwrap();
        assert_eq!(vault.reveal("updated").unwrap().expose(), b"third value");
        // A stage and a grant that ends, which format 4 had no room for, survive a restart.
        vault
            .apply(
                &Actor::local(),
                &[
                    Change::Stage {
                        name: "db_password",
                        value: b"rotated",
                    },
                    Change::Promote {
                        name: "db_password",
                        overlap: Some(3600),
                        revoke_previous: false,
                        retire_when_read: false,
                    },
                    Change::Grant {
                        service: "api",
                        name: "db_password",
                        expires_in: Some(3600),
                    },
                ],
            )
            .unwrap();
        drop(vault);
        // Upgraded by its number; the records read as they were written.
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            FORMAT_VERSION.to_be_bytes()
        );
        let vault = open(&dir);
        let fid = vault
            .open_version("web", "db_password", VersionSlot::Previous)
            .unwrap();
        assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"hunter2");
        assert!(vault.grant_expires("api", "db_password").is_some());
        assert_eq!(
            vault.reveal("large").unwrap().expose(),
            &fixture_secrets()[4].1[..]
        );
    }
}

#[test]
fn a_format_1_store_opens_reads_the_same_values_and_is_rewritten() {
    for (which, keys_before, active_after) in [("plain", vec![2], 2), ("rotating", vec![2, 3], 3)] {
        let (_tmp, dir) = format1_fixture(which);
        let store = dir.join(STORE_FILE);
        assert_eq!(key_file_ids(&dir), keys_before, "{which}");
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            1u32.to_be_bytes(),
            "{which}"
        );
        let vault = open(&dir);
        assert_fixture_contents(&vault);
        // The interrupted rotation of `rotating` was finished after the migration.
        assert_eq!(vault.status().active_key, active_after, "{which}");
        assert_eq!(vault.status().rotation, None);
        assert_eq!(key_file_ids(&dir), [active_after], "{which}");
        vault.set("after", b"written in format 2").unwrap();
        drop(vault);

        // Rewritten: this format's number and records, the old layout gone.
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            FORMAT_VERSION.to_be_bytes()
        );
        assert!(raw::meta(&store, "admin_uid").is_none(), "{which}");
        // Every record authenticated, under the active key.
        let keys = store_keys(&dir);
        for (name, _) in fixture_secrets() {
            let (rec, auth) =
                SecretRecord::decode(name, &raw::secret(&store, name), &keys).unwrap();
            assert_eq!(
                (rec.key_id, auth.key_id),
                (active_after, active_after),
                "{which} {name}"
            );
        }
        for name in ["web", "api", "worker"] {
            let bytes = raw::get(&store, Table::Services, name).unwrap();
            let (_, auth) = ServiceRecord::decode(name, &bytes, &keys).unwrap();
            assert_eq!(auth.key_id, active_after, "{which} {name}");
        }
        let grants = raw::grants(&store);
        let names: Vec<&str> = grants.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["api/binary", "web/db_password", "web/large"]);
        for (key, bytes) in &grants {
            let auth =
                crate::record::decode_grant(&Row::new(Table::Grants, key.as_str()), bytes, &keys)
                    .unwrap();
            assert_eq!(auth.1.key_id, active_after, "{which} {key}");
        }
        let vault = open(&dir);
        assert_fixture_contents(&vault);
        assert_eq!(
            vault.reveal("after").unwrap().expose(),
            b"written in format 2"
        );
    }
}

#[test]
fn a_backup_of_a_format_1_store_is_a_format_1_store_that_migrates() {
    let (tmp, dir) = format1_fixture("plain");
    let out = tmp.path().join("backup.redb");
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&out)
        .unwrap();
    crate::backup_unserved(&dir, file).unwrap();
    assert_eq!(
        raw::meta(&out, "format_version").unwrap(),
        1u32.to_be_bytes()
    );
    std::fs::rename(&out, dir.join(STORE_FILE)).unwrap();
    std::fs::set_permissions(
        dir.join(STORE_FILE),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    assert_fixture_contents(&open(&dir));
}

// ---- Values in chunks: range reads, and chunks tampered with in the store. ----

fn chunked(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn a_range_read_returns_its_bytes_and_checks_the_grant_each_time() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    let value = chunked(3 * crate::crypto::CHUNK_LEN as usize + 100);
    vault.set("big", &value).unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "big").unwrap();
    let fid = vault.open_secret("web", "big").unwrap();
    for (offset, count) in [
        (0, 4096),
        (4095, 2),
        (4096, 4096),
        (12_000, 500),
        (12_388, 10),
        (99_999, 1),
    ] {
        let got = vault.read_opened_range("web", &fid, offset, count).unwrap();
        let lo = (offset as usize).min(value.len());
        let hi = ((offset + count) as usize).min(value.len());
        assert_eq!(got.expose(), &value[lo..hi], "{offset} {count}");
    }
    assert_eq!(fid.decrypted_len(4095, 2), 8192);
    assert_eq!(fid.decrypted_len(12_288, 4096), 100);
    assert_eq!(fid.decrypted_len(99_999, 1), 0);
    vault.revoke("web", "big").unwrap();
    assert!(matches!(
        vault.read_opened_range("web", &fid, 0, 1),
        Err(Error::NotFound)
    ));
}

#[test]
fn chunks_swapped_in_the_store_fail_to_decrypt_and_a_cut_value_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    let c = crate::crypto::CHUNK_LEN as usize;
    let value = chunked(3 * c);
    vault.set("big", &value).unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "big").unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let clean = std::fs::read(&store).unwrap();
    let bytes = raw::secret(&store, "big");
    let stride = c + crate::crypto::TAG_LEN;
    let payload = bytes.len() - 3 * stride;
    // Chunks 0 and 1 swapped: the record's tag does not cover the ciphertext, the
    // chunks' own tags and associated data do.
    let mut swapped = bytes.clone();
    swapped[payload..payload + stride]
        .copy_from_slice(&bytes[payload + stride..payload + 2 * stride]);
    swapped[payload + stride..payload + 2 * stride]
        .copy_from_slice(&bytes[payload..payload + stride]);
    raw::put_secret(&store, "big", &swapped);
    let vault = open(&dir);
    let fid = vault.open_secret("web", "big").unwrap();
    assert!(matches!(
        vault.read_opened_range("web", &fid, 0, 10),
        Err(Error::Decrypt)
    ));
    assert!(matches!(
        vault.read_opened_range("web", &fid, c as u64, 10),
        Err(Error::Decrypt)
    ));
    assert!(matches!(vault.reveal("big"), Err(Error::Decrypt)));
    // The chunk that was not moved still reads.
    assert_eq!(
        vault
            .read_opened_range("web", &fid, 2 * c as u64, 10)
            .unwrap()
            .expose(),
        &value[2 * c..2 * c + 10]
    );
    drop(vault);
    // The last chunk cut off: the record no longer matches its header.
    std::fs::write(&store, &clean).unwrap();
    raw::put_secret(&store, "big", &bytes[..bytes.len() - stride]);
    assert!(Vault::open(&dir, None).is_err());
}

// ---- The catalog's records. ----

fn declare(vault: &Vault) {
    let meta = catalog::MetaUpdate {
        class: Some(Some(catalog::Class::Service)),
        ..catalog::MetaUpdate::default()
    };
    vault
        .apply(
            &Actor::local(),
            &[
                Change::TierDeclare {
                    tier: "desktop",
                    core: false,
                },
                Change::Meta {
                    name: "jwt",
                    update: &meta,
                },
            ],
        )
        .unwrap();
}

#[test]
fn a_tampered_replayed_or_removed_declaration_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    declare(&vault);
    drop(vault);
    let store = dir.join(STORE_FILE);
    let good = raw::get(&store, Table::Catalog, "secret/jwt").unwrap();
    // A byte of its header changed.
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    raw::put(&store, Table::Catalog, "secret/jwt", &bad);
    assert_tampered(&dir);
    // Moved to another name.
    raw::put(&store, Table::Catalog, "secret/jwt", &good);
    raw::put(&store, Table::Catalog, "secret/other", &good);
    assert_tampered(&dir);
    raw::delete(&store, Table::Catalog, "secret/other");
    assert!(Vault::open(&dir, None).is_ok());
    // Removed: the digest no longer adds up.
    raw::delete(&store, Table::Catalog, "tier/desktop");
    assert_tampered(&dir);
}

#[test]
fn stores_of_formats_2_to_6_are_upgraded_in_place() {
    for older in [
        rows::FORMAT_WITHOUT_CATALOG,
        rows::FORMAT_WITHOUT_BUNDLES,
        rows::FORMAT_WITHOUT_VERSIONS,
        rows::FORMAT_WITHOUT_AUDIT,
        rows::FORMAT_WITHOUT_TOKENS,
    ] {
        let (_tmp, dir) = fresh();
        let vault = open(&dir);
        vault.set("a", b"1").unwrap();
        vault.service_set_uid("web", 1001).unwrap();
        vault.grant("web", "a").unwrap();
        if older != rows::FORMAT_WITHOUT_CATALOG {
            declare(&vault);
        }
        drop(vault);
        let store = dir.join(STORE_FILE);
        // What a build of that format wrote: everything alike but the number.
        raw::put_meta(&store, "format_version", &older.to_be_bytes());
        let vault = open(&dir);
        assert_eq!(vault.reveal("a").unwrap().expose(), b"1");
        assert!(vault.is_granted("web", "a"));
        declare(&vault);
        drop(vault);
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            FORMAT_VERSION.to_be_bytes()
        );
        let vault = open(&dir);
        assert!(vault.catalog().secret("jwt").is_some());
        // A later format is refused by its number, as an older build refuses this one.
        drop(vault);
        raw::put_meta(&store, "format_version", &8u32.to_be_bytes());
        let err = Vault::open(&dir, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::FormatVersion {
                    found: 8,
                    supported: 7
                }
            ),
            "{err:?}"
        );
    }
}

/// A service `web` whose manifest holds `jwt` and `db_root`, generated and stripped on
/// tier `desktop`.
fn bundled(vault: &Vault) {
    let file = r#"
[tiers.desktop]
[secrets.jwt]
class = "service"
[secrets.jwt.tiers.desktop]
strategy = "generate"
template = "{{random:hex:16}}"
[secrets.db_root]
class = "infrastructure"
[secrets.db_root.tiers.desktop]
strategy = "strip"
"#;
    let loaded =
        catalog::load(file, catalog::Format::Toml, catalog::LoadOptions::default()).unwrap();
    vault
        .apply(
            &Actor::local(),
            &[
                Change::CatalogApply {
                    catalog: &loaded.catalog,
                    prune: false,
                    values: &loaded.values,
                },
                Change::ServiceManifest {
                    service: "web",
                    manifest: b"secret jwt\nsecret db_root\n",
                },
                Change::Set {
                    name: "db_root",
                    value: b"root password",
                },
            ],
        )
        .unwrap();
}

/// Issues a bundle to `deployment` of web on desktop: its `jwt` value.
fn issue(vault: &Vault, deployment: &str, replace: bool) -> Result<Vec<u8>> {
    let applied = vault
        .apply(
            &Actor::admin(Some(ADMIN)),
            &[Change::Bundle {
                service: "web",
                tier: "desktop",
                deployment,
                replace,
            }],
        )
        .map_err(|e| e.error)?;
    match applied.into_iter().next() {
        Some(Applied::BundleIssued { bundle, .. }) => Ok(bundle.values["jwt"].expose().to_vec()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn bundle_records_survive_rotations_crashes_in_them_and_reopens() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    bundled(&vault);
    let first = issue(&vault, "acme-1", false).unwrap();
    // A rotation that crashes after its target is committed: the fingerprint key went
    // along, sealed under the new key, in that same commit.
    vault.crash_at(Some(CrashPoint::TargetCommitted));
    assert!(vault.rotate_key(&|_| {}).is_err());
    let during = issue(&vault, "acme-2", false).unwrap();
    drop(vault);
    let vault = open(&dir);
    assert_eq!(
        vault.status().active_key,
        2,
        "the rotation resumed and finished"
    );
    for (value, deployment) in [(&first, "acme-1"), (&during, "acme-2")] {
        let found = vault.identify(value).unwrap();
        assert_eq!(found.len(), 1, "{deployment}");
        assert_eq!(found[0].deployment, deployment);
    }
    vault.rotate_key(&|_| {}).unwrap();
    assert_eq!(vault.identify(&first).unwrap()[0].deployment, "acme-1");
    assert!(vault.identify(b"root password").unwrap().is_empty());
    // Every record is under the one key left: the rotation tagged the bundles' too.
    let key = vault.status().active_key;
    assert!(vault.state().auths.values().all(|a| a.key_id == key));
    assert_eq!(
        vault
            .state()
            .meta
            .fingerprint_key
            .as_ref()
            .map(|s| s.key_id),
        Some(key)
    );
}

#[test]
fn a_tampered_or_removed_bundle_record_is_refused() {
    let (_tmp, dir) = fresh();
    let vault = open(&dir);
    bundled(&vault);
    issue(&vault, "acme-1", false).unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let row = "value/web/desktop/acme-1/1/jwt";
    let good = raw::get(&store, Table::Bundles, row).unwrap();
    let mut bad = good.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    raw::put(&store, Table::Bundles, row, &bad);
    assert!(matches!(
        Vault::open(&dir, None),
        Err(Error::Tampered { .. })
    ));
    raw::delete(&store, Table::Bundles, row);
    assert!(matches!(
        Vault::open(&dir, None),
        Err(Error::Tampered { .. })
    ));
    raw::put(&store, Table::Bundles, row, &good);
    assert!(Vault::open(&dir, None).is_ok());
}

#[test]
fn a_long_lint_holds_up_neither_writers_nor_readers() {
    let (_tmp, dir) = fresh();
    let vault = Arc::new(open(&dir));
    let tiers: Vec<String> = (0..16).map(|t| format!("t{t:02}")).collect();
    let declare: Vec<Change<'_>> = tiers
        .iter()
        .map(|tier| Change::TierDeclare { tier, core: false })
        .collect();
    vault.apply(&Actor::local(), &declare).unwrap();
    // 40 services of 2,500 secrets on 16 tiers: a lint of 1.6 million (tier, secret,
    // service) uses, more than a second in a debug build.
    let manifest: String = (0..2500).map(|i| format!("secret s{i:04}\n")).collect();
    for s in 0..40 {
        vault
            .service_set_manifest(&format!("svc{s:02}"), manifest.as_bytes())
            .unwrap();
    }
    vault.set("probe", b"before").unwrap();
    let linting = {
        let vault = Arc::clone(&vault);
        std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let lint = vault.lint(None);
            (lint, started.elapsed())
        })
    };
    std::thread::sleep(std::time::Duration::from_millis(50));
    // A write (which takes the state's write lock to apply what it committed), and a read
    // after it, while the lint goes on: they took as long as the rest of the lint when it
    // held the read lock throughout.
    let started = std::time::Instant::now();
    vault.set("probe", b"after").unwrap();
    assert_eq!(vault.reveal("probe").unwrap().expose(), b"after");
    let wrote_in = started.elapsed();
    let (lint, linted_in) = linting.join().unwrap();
    assert!(!lint.ok);
    assert!(
        wrote_in * 2 < linted_in,
        "a write and a read took {wrote_in:?} during a lint of {linted_in:?}"
    );
}

// ---- The audit trail ----

use audit::{CHANGES, OPENS};

/// Every record of `chain`, in order.
fn trail(v: &Vault, chain: &str) -> Vec<audit::Record> {
    v.audit_read(chain, 1, MAX_READ)
        .unwrap()
        .into_iter()
        .map(|(r, _)| r)
        .collect()
}

fn actions(records: &[audit::Record]) -> Vec<&str> {
    records.iter().map(|r| r.action.as_str()).collect()
}

#[test]
fn every_change_is_recorded_with_its_actor_reason_version_and_never_a_value() {
    let (_tmp, dir) = fresh();
    let v = open(&dir);
    let admin = Actor::admin(Some(ADMIN)).with_reason("ticket 9");
    v.apply(
        &admin,
        &[
            Change::Set {
                name: "db",
                value: b"hunter2-first",
            },
            Change::ServiceUid {
                service: "web",
                uid: 1001,
            },
            Change::Grant {
                service: "web",
                name: "db",
                expires_in: Some(60),
            },
        ],
    )
    .unwrap();
    for change in [
        Change::Stage {
            name: "db",
            value: b"hunter2-second",
        },
        Change::Promote {
            name: "db",
            overlap: Some(3600),
            revoke_previous: false,
            retire_when_read: false,
        },
        Change::Rollback { name: "db" },
        Change::Retire {
            name: "db",
            when_read: None,
        },
        Change::Revoke {
            service: "web",
            name: "db",
        },
        Change::Revoke {
            service: "web",
            name: "db",
        },
    ] {
        v.apply(&admin, &[change]).unwrap();
    }
    // Refused: recorded as such, nothing else changed.
    let e = v
        .apply(
            &admin,
            &[Change::Grant {
                service: "web",
                name: "nosuch",
                expires_in: None,
            }],
        )
        .unwrap_err();
    assert!(matches!(e.error, Error::NoSuchSecret));
    v.rotate_key_by(&Actor::admin(Some(0)), &|_| {}).unwrap();
    v.delete("db").unwrap();
    let records = trail(&v, CHANGES);
    assert_eq!(
        actions(&records),
        [
            "audit-start",
            "set",
            "service-uid",
            "grant",
            "stage",
            "promote",
            "rollback",
            "retire",
            "revoke",
            "revoke",
            "grant",
            "rotate-key",
            "rotate-key",
            "delete"
        ]
    );
    let set = &records[1];
    assert_eq!(
        (
            set.principal.as_str(),
            set.uid,
            set.reason.as_deref(),
            set.version,
            set.result.as_str()
        ),
        ("admin", Some(ADMIN), Some("ticket 9"), Some(1), "ok")
    );
    assert_eq!(set.target["secret"], "db");
    let grant = &records[3];
    assert_eq!(
        (
            grant.target["service"].as_str(),
            grant.target["secret"].as_str()
        ),
        ("web", "db")
    );
    assert!(grant.details.contains_key("expires"));
    assert_eq!(records[4].version, Some(2));
    assert_eq!(records[5].details["previous"], "1");
    assert!(records[5].details.contains_key("overlap_until"));
    assert_eq!(records[8].result, "ok");
    assert_eq!(records[9].result, "unchanged");
    assert_eq!(records[10].result, "refused: no such secret");
    assert_eq!(records[10].target["secret"], "nosuch");
    assert_eq!(
        (records[11].result.as_str(), records[12].result.as_str()),
        ("started", "ok")
    );
    assert_eq!(records[12].uid, Some(0));
    assert_eq!(records[12].details["to_key"], "2");
    assert_eq!(records[13].principal, "local");
    // Each is signed, and the chain verifies with the public key alone.
    assert!(records.iter().all(|r| r.sig.is_some()));
    let key = v.audit_heads().public_key.unwrap();
    audit::verify(records.iter().map(|r| (r, None)), key, []).unwrap();
    assert!(v.audit_verify(&[]).unwrap().is_ok());
    // No value anywhere in the trail, as stored.
    let rows = v.backend.range(Table::Audit, "", "~", usize::MAX).unwrap();
    for (_, bytes) in rows {
        assert!(!bytes.windows(7).any(|w| w == b"hunter2"));
    }
}

#[test]
fn what_ends_by_itself_is_recorded_as_made_by_this_process() {
    let (_tmp, dir) = fresh();
    let v = open(&dir);
    v.set_clock(Some(4_000_000_000));
    v.set("db", b"1").unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.apply(
        &Actor::admin(Some(ADMIN)),
        &[
            Change::Grant {
                service: "web",
                name: "db",
                expires_in: Some(60),
            },
            Change::Stage {
                name: "db",
                value: b"2",
            },
        ],
    )
    .unwrap();
    v.set_clock(Some(4_000_000_000 + 2 * 3600));
    v.expire().unwrap();
    let records = trail(&v, CHANGES);
    let ended: Vec<_> = records.iter().filter(|r| r.action == "expire").collect();
    assert_eq!(ended.len(), 2);
    for r in &ended {
        assert_eq!(
            (r.principal.as_str(), r.reason.as_deref()),
            ("local", Some("ended by itself"))
        );
    }
    assert!(
        ended
            .iter()
            .any(|r| r.details["what"] == "pending" && r.version == Some(2))
    );
    assert!(
        ended
            .iter()
            .any(|r| r.details["what"] == "grant" && r.target["service"] == "web")
    );
    // Dated by the vault's clock, in milliseconds.
    assert_eq!(ended[0].time_ms, (4_000_000_000 + 2 * 3600) * 1000);
}

#[test]
fn a_change_whose_record_cannot_be_written_is_not_made() {
    let (_tmp, dir) = fresh();
    let (v, faults) = open_faulty(&dir, 1000, None);
    v.set("a", b"1").unwrap();
    let before = v.audit_heads();
    faults.inject(Inject::FailClosing);
    assert!(v.set("b", b"2").is_err());
    assert!(v.secret_info("b").is_none());
    assert_eq!(v.audit_heads(), before);
    // Once the store works again, the chain goes on from where it was.
    v.set("b", b"2").unwrap();
    assert_eq!(
        v.audit_heads().heads[CHANGES].seq,
        before.heads[CHANGES].seq + 1
    );
    assert!(v.audit_verify(&[]).unwrap().is_ok());
}

#[test]
fn writers_racing_on_a_shared_store_link_to_the_head_they_commit_on() {
    let (_tmp, _store, a, b) = two_nodes();
    a.set("one", b"1").unwrap();
    // b planned against an older head: its commit conflicts, it catches up and plans
    // again, and its record follows a's.
    b.set("two", b"2").unwrap();
    a.catch_up().unwrap();
    let records = trail(&a, CHANGES);
    let seqs: Vec<u64> = records.iter().map(|r| r.seq).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert_eq!(records.last().unwrap().target["secret"], "two");
    assert!(a.audit_verify(&[]).unwrap().is_ok());
    assert_eq!(a.audit_heads(), b.audit_heads());
}

fn serving() -> (tempfile::TempDir, PathBuf, Vault) {
    let (tmp, dir) = fresh();
    let v = open(&dir);
    v.set("db", b"1").unwrap();
    v.service_set_uid("web", 1001).unwrap();
    v.grant("web", "db").unwrap();
    (tmp, dir, v)
}

#[test]
fn opens_are_recorded_in_batches_with_the_highest_version_each_service_opened() {
    let (_tmp, dir, v) = serving();
    let opened = v.open_secret("web", "db").unwrap();
    v.record_open(
        &Actor::service("web", Some(1001)),
        "web",
        &opened,
        VersionSlot::Current,
    );
    // The admin, through web's view (a deployer's mount).
    v.record_open(&Actor::admin(Some(0)), "web", &opened, VersionSlot::Current);
    assert!(v.opened("db").is_empty(), "not before the batch commits");
    assert_eq!(v.flush_opens().unwrap(), 2);
    let opens = trail(&v, OPENS);
    assert_eq!(actions(&opens), ["open", "open"]);
    assert_eq!(
        (opens[0].principal.as_str(), opens[0].uid, opens[0].version),
        ("service web", Some(1001), Some(1))
    );
    assert_eq!(
        (opens[1].principal.as_str(), opens[1].uid),
        ("admin", Some(0))
    );
    assert_eq!(opens[1].target["service"], "web");
    assert_eq!(opens[1].target["secret"], "db");
    // The batch's last record is signed, and vouches for the one before it.
    assert!(opens[0].sig.is_none() && opens[1].sig.is_some());
    assert_eq!(v.opened("db"), [("web".to_owned(), 1)].into());
    let changes_before = v.audit_heads().heads[CHANGES];
    let last_change = v.state().meta.last_change;
    v.set("db", b"2").unwrap();
    let newer = v.open_secret("web", "db").unwrap();
    v.record_open(
        &Actor::service("web", Some(1001)),
        "web",
        &newer,
        VersionSlot::Current,
    );
    v.record_open(
        &Actor::service("web", Some(1001)),
        "web",
        &opened,
        VersionSlot::Current,
    );
    v.flush_opens().unwrap();
    assert_eq!(v.opened("db")["web"], 2);
    // Opens go to their own chain, and date no file.
    assert_eq!(v.audit_heads().heads[CHANGES].seq, changes_before.seq + 1);
    assert!(v.state().meta.last_change >= last_change);
    drop(v);
    let v = open(&dir);
    assert_eq!(v.opened("db")["web"], 2);
    assert!(v.audit_verify(&[]).unwrap().is_ok());
    // Deleting the secret forgets what was opened of it.
    v.delete("db").unwrap();
    assert!(v.opened("db").is_empty());
}

#[test]
fn opens_past_the_queue_bound_are_counted_and_said_not_recorded() {
    let (_tmp, _dir, v) = serving();
    v.set_open_queue_bound(3);
    let opened = v.open_secret("web", "db").unwrap();
    let web = Actor::service("web", Some(1001));
    for _ in 0..5 {
        v.record_open(&web, "web", &opened, VersionSlot::Current);
    }
    v.flush_opens().unwrap();
    let opens = trail(&v, OPENS);
    // The three queued, alike, are one record that counts them.
    assert_eq!(actions(&opens), [OPENS_NOT_RECORDED, "open"]);
    assert_eq!(opens[0].details["count"], "2");
    assert_eq!(opens[1].details["count"], "3");
    assert!(opens[1].details.contains_key("last"));
    // A batch that fails to commit is counted so too.
    let (_tmp, dir, v) = serving();
    drop(v);
    let (v, faults) = open_faulty(&dir, 1000, None);
    let opened = v.open_secret("web", "db").unwrap();
    v.record_open(&web, "web", &opened, VersionSlot::Pending);
    v.record_open(&web, "web", &opened, VersionSlot::Current);
    faults.inject(Inject::FailClosing);
    assert!(v.flush_opens().is_err());
    assert!(trail(&v, OPENS).is_empty());
    v.flush_opens().unwrap();
    let opens = trail(&v, OPENS);
    assert_eq!(actions(&opens), [OPENS_NOT_RECORDED]);
    assert_eq!(opens[0].details["count"], "2");
}

#[test]
fn a_backlog_of_opens_is_committed_a_batch_at_a_time_and_none_is_lost() {
    let (_tmp, _dir, v) = serving();
    let opened = v.open_secret("web", "db").unwrap();
    // All different (each over its own uid): none is grouped with another.
    let n = 2 * super::FLUSH_BATCH + 10;
    for uid in 0..n {
        let by = Actor::service("web", Some(u32::try_from(uid).unwrap()));
        v.record_open(&by, "web", &opened, VersionSlot::Current);
    }
    assert_eq!(v.flush_opens().unwrap(), n);
    let opens = trail(&v, OPENS);
    assert_eq!(opens.len(), n);
    // One commit per batch, each ending in a signed record.
    assert_eq!(opens.iter().filter(|r| r.sig.is_some()).count(), 3);
    assert!(v.audit_verify(&[]).unwrap().is_ok());
}

#[test]
fn the_flusher_records_what_was_queued_and_flushes_at_its_stop() {
    let (_tmp, _dir, v) = serving();
    let v = Arc::new(v);
    let flusher = OpenFlusher::start(Arc::clone(&v)).unwrap();
    let opened = v.open_secret("web", "db").unwrap();
    let web = Actor::service("web", Some(1001));
    v.record_open(&web, "web", &opened, VersionSlot::Current);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while trail(&v, OPENS).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the flusher recorded nothing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    for _ in 0..10 {
        v.record_open(&web, "web", &opened, VersionSlot::Current);
    }
    flusher.stop();
    let counted: u64 = trail(&v, OPENS)
        .iter()
        .map(|r| {
            r.details
                .get("count")
                .map_or(1, |n| n.parse::<u64>().unwrap())
        })
        .sum();
    assert_eq!(counted, 11);
    assert!(v.audit_verify(&[]).unwrap().is_ok());
}

#[test]
fn verify_catches_a_record_changed_or_cut_off_in_the_store() {
    let (_tmp, dir) = fresh();
    let v = open(&dir);
    for i in 0..5 {
        v.set(&format!("s{i}"), b"v").unwrap();
    }
    let head = v.audit_heads().heads[CHANGES];
    let at_3 = audit::Expected {
        chain: CHANGES.into(),
        seq: 3,
        hash: trail(&v, CHANGES)[2].hash(),
    };
    assert!(v.audit_verify(std::slice::from_ref(&at_3)).unwrap().is_ok());
    drop(v);
    let store = dir.join(STORE_FILE);
    let row = |seq: u64| crate::trail::audit_row(CHANGES, seq).key;
    // A record changed (its signature no longer verifies).
    let good = raw::get(&store, Table::Audit, &row(3)).unwrap();
    let (mut rec, _) = audit::Record::from_stored(&good).unwrap();
    rec.target.insert("secret".into(), "other".into());
    raw::put(&store, Table::Audit, &row(3), &rec.to_stored());
    let v = open(&dir);
    let bad = v.audit_verify(&[]).unwrap().unwrap_err();
    assert_eq!(bad.seq, Some(3), "{bad}");
    assert!(bad.what.contains("signature"), "{bad}");
    drop(v);
    raw::put(&store, Table::Audit, &row(3), &good);
    // The last record removed: the store record's head says where the chain ends.
    raw::delete(&store, Table::Audit, &row(head.seq));
    let v = open(&dir);
    let bad = v.audit_verify(&[]).unwrap().unwrap_err();
    assert!(bad.what.contains("tail was cut off"), "{bad}");
    // And the server keeps its chain from the store record's head, not from the rows.
    v.set("after", b"v").unwrap();
    assert_eq!(v.audit_heads().heads[CHANGES].seq, head.seq + 1);
}

#[test]
fn a_format_5_store_opens_and_starts_its_audit_chain() {
    for (which, active_after) in [("plain", 2), ("rotating", 3)] {
        let (_tmp, dir) = fixture("format5", which);
        let store = dir.join(STORE_FILE);
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            rows::FORMAT_WITHOUT_AUDIT.to_be_bytes(),
            "{which}"
        );
        assert!(
            keyfile::read_file(&dir.join(KEY_FILE))
                .unwrap()
                .audit
                .is_none()
        );
        let vault = open(&dir);
        assert_fixture_contents(&vault);
        assert_eq!(vault.status().active_key, active_after, "{which}");
        // The chain starts with a record saying so; the rotation the crash left is
        // finished after it, and recorded.
        let records = trail(&vault, CHANGES);
        assert_eq!(records[0].action, "audit-start", "{which}");
        assert_eq!(records[0].details["upgraded_from_format"], "5");
        let public = vault.audit_heads().public_key.unwrap();
        assert_eq!(records[0].details["public_key"], public.to_string());
        if which == "rotating" {
            assert!(
                records
                    .iter()
                    .any(|r| r.action == "rotate-key" && r.result == "ok")
            );
        }
        vault.set("after", b"v").unwrap();
        drop(vault);
        assert_eq!(
            raw::meta(&store, "format_version").unwrap(),
            FORMAT_VERSION.to_be_bytes()
        );
        // The key file holds the signing key now, and the next start goes on with it.
        assert!(
            keyfile::read_file(&dir.join(KEY_FILE))
                .unwrap()
                .audit
                .is_some()
        );
        let vault = open(&dir);
        assert_eq!(vault.audit_heads().public_key, Some(public));
        assert!(vault.audit_verify(&[]).unwrap().is_ok(), "{which}");
        assert_eq!(
            trail(&vault, CHANGES).last().unwrap().target["secret"],
            "after"
        );
        drop(vault);
        // Without the audit key, or with another, the store is refused.
        let key = dir.join(KEY_FILE);
        let text = std::fs::read_to_string(&key).unwrap();
        let without: String = text
            .lines()
            .filter(|l| !l.starts_with("audit "))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(&key, &without).unwrap();
        let err = Vault::open(&dir, None).unwrap_err();
        assert!(matches!(err, Error::AuditKeyMissing { .. }), "{err:?}");
        std::fs::write(&key, format!("{without}audit {}\n", "ab".repeat(32))).unwrap();
        let err = Vault::open(&dir, None).unwrap_err();
        assert!(matches!(err, Error::AuditKeyMismatch { .. }), "{err:?}");
        std::fs::write(&key, &text).unwrap();
        open(&dir);
    }
}

#[test]
fn a_read_only_key_file_is_read_and_never_written() {
    let (_tmp, dir) = fresh();
    let key = dir.join(KEY_FILE);
    populate(&open(&dir), 3);
    let before = std::fs::read(&key).unwrap();
    let vault = Vault::open_with_read_only_key(&dir, &key).unwrap();
    assert!(vault.key_read_only());
    assert_all_values(&vault, 3);
    vault.set("s000", b"changed").unwrap();
    let err = vault.rotate_key(&|_| {}).unwrap_err();
    assert!(
        matches!(err, Error::KeyReadOnly { ref path, .. } if *path == key),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(
            "and a key rotation writes the new key into it: do it with the key file itself"
        ),
        "{err}"
    );
    assert_eq!(vault.status().active_key, 1);
    assert_eq!(vault.status().rotation, None);
    drop(vault);
    assert_eq!(
        std::fs::read(&key).unwrap(),
        before,
        "the key file is untouched"
    );
}

#[test]
fn a_read_only_key_file_taken_mid_rotation_serves_with_both_keys() {
    let (_tmp, dir) = fresh();
    {
        let vault = open_with(&dir, 3, None);
        populate(&vault, 10);
        vault.crash_at(Some(CrashPoint::Batch(1)));
        vault.rotate_key(&|_| {}).unwrap_err();
    }
    let key = dir.join(KEY_FILE);
    assert_eq!(key_file_ids(&dir), [1, 2]);
    let before = std::fs::read(&key).unwrap();
    let vault = Vault::open_with_read_only_key(&dir, &key).unwrap();
    // Not resumed: finishing would rewrite the key file. Everything reads.
    assert_eq!(vault.state().meta.rotation_target, Some(2));
    assert_all_values(&vault, 10);
    drop(vault);
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // With the key file itself, the rotation finishes.
    let vault = open(&dir);
    assert_eq!(vault.status().rotation, None);
    assert_eq!(vault.status().active_key, 2);
    assert_eq!(key_file_ids(&dir), [2]);
}
