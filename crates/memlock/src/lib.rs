//! Key material in pages of its own, locked in RAM with mlock(2), so that it is never
//! written to swap.
//!
//! A [`Locked`] value lives in a heap allocation aligned to 4096 bytes whose size is a
//! multiple of 4096: on a system whose pages are 4096 bytes (x86-64, and the default of
//! every other Linux port) it holds whole pages that nothing else shares. Those pages are
//! locked when the value is made and unlocked when it is dropped, after its own `Drop`
//! (the zeroizing one, for keys) has run. Nothing else in the process is locked: not the
//! heap at large, nor the stacks, so a key's transient copies (while it is derived or read
//! from its file) are not covered, and each is wiped by its own zeroizing buffer instead.
//!
//! Locking can fail: an unprivileged process may lock at most `RLIMIT_MEMLOCK` bytes, and
//! none at all when that limit is 0. Then the value is kept all the same (a server that
//! refused to start would protect nothing), [`Locked::is_locked`] says so, and
//! [`status`] says why, in words that tell the operator what to raise. This crate logs
//! nothing: its callers decide what to say and when.
//!
//! This is the workspace's one crate with `unsafe`, in three blocks: mlock(2) and
//! munlock(2) take a raw range, and a value that must be dropped before its pages are
//! unlocked is dropped in place. Each block says why it is sound.

use std::ffi::c_void;
use std::fmt;
use std::mem::{ManuallyDrop, size_of};
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use rustix::io::Errno;

/// The alignment of every locked value's allocation, and so the granularity it is locked
/// in: the page size of x86-64 (and the smallest of any Linux port).
pub const PAGE: usize = 4096;

/// What the locked allocation holds: the value, and padding to a whole number of pages.
/// The value is dropped by hand ([`Locked`]'s `Drop`), before the pages are unlocked.
#[repr(C, align(4096))]
struct Page<T>(ManuallyDrop<T>);

/// A value kept in pages of its own, locked in RAM when the limit allows.
pub struct Locked<T> {
    page: Box<Page<T>>,
    locked: bool,
}

/// Bytes of live [`Locked`] values that are locked.
static LOCKED: AtomicUsize = AtomicUsize::new(0);
/// Bytes of live [`Locked`] values that could not be locked.
static UNLOCKED: AtomicUsize = AtomicUsize::new(0);
/// Why the last lock that failed did.
static LAST_FAILURE: Mutex<Option<Failure>> = Mutex::new(None);

impl<T> Locked<T> {
    /// `value`, moved into pages of its own and locked there if the limit allows. It is
    /// kept either way: see [`Locked::is_locked`] and [`status`].
    pub fn new(value: T) -> Locked<T> {
        let page = Box::new(Page(ManuallyDrop::new(value)));
        let len = size_of::<Page<T>>();
        let locked = match lock(&page) {
            Ok(()) => {
                LOCKED.fetch_add(len, Ordering::Relaxed);
                true
            }
            Err(failure) => {
                UNLOCKED.fetch_add(len, Ordering::Relaxed);
                *LAST_FAILURE
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(failure);
                false
            }
        };
        Locked { page, locked }
    }

    /// Whether the value's pages are locked in RAM.
    pub fn is_locked(&self) -> bool {
        self.locked
    }

    /// The bytes this value's pages take (a multiple of [`PAGE`]).
    pub fn footprint(&self) -> usize {
        size_of::<Page<T>>()
    }
}

/// Locks the pages of `page`, or says why not.
#[allow(
    unsafe_code,
    reason = "mlock(2) takes a raw range; see the SAFETY comment"
)]
fn lock<T>(page: &Page<T>) -> Result<(), Failure> {
    let len = size_of::<Page<T>>();
    let system = rustix::param::page_size();
    if system > PAGE {
        // mlock would round the range out to pages that other allocations share.
        return Err(Failure::new(Cause::LargePages(system), len));
    }
    let ptr = std::ptr::from_ref(page).cast::<c_void>().cast_mut();
    // SAFETY: rustix asks that the range, rounded out to whole pages, be valid to read
    // through `ptr`. It is exactly the allocation `page` refers to, alive for this call:
    // `Page` is aligned to PAGE and its size is a multiple of it (Rust rounds a type's
    // size up to its alignment), and the system's page is PAGE or smaller (checked
    // above), so no rounding reaches past it. mlock(2) itself neither reads nor writes
    // the memory nor changes any mapping: it only keeps the pages resident.
    match unsafe { rustix::mm::mlock(ptr, len) } {
        Ok(()) => Ok(()),
        Err(errno) => Err(Failure::new(Cause::from_errno(errno), len)),
    }
}

impl<T> Drop for Locked<T> {
    #[allow(
        unsafe_code,
        reason = "the value is dropped in place, then munlock(2); see the SAFETY comments"
    )]
    fn drop(&mut self) {
        // SAFETY: the value is dropped here once, and never used again: `self` is being
        // dropped, and its box is freed right after this function returns. Dropping it
        // in place, before the pages are unlocked, is the point: its own Drop wipes a
        // key while the pages still cannot be swapped out.
        unsafe { ManuallyDrop::drop(&mut self.page.0) };
        let len = size_of::<Page<T>>();
        if self.locked {
            let ptr = std::ptr::from_mut(&mut *self.page).cast::<c_void>();
            // SAFETY: the same range that `lock` locked, still allocated (the box is
            // freed after this): see `lock`. munlock(2) neither reads nor writes it, and
            // the pages are this value's alone, so no other value's lock is undone.
            let _ = unsafe { rustix::mm::munlock(ptr, len) };
            LOCKED.fetch_sub(len, Ordering::Relaxed);
        } else {
            UNLOCKED.fetch_sub(len, Ordering::Relaxed);
        }
    }
}

impl<T> Deref for Locked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.page.0
    }
}

impl<T> DerefMut for Locked<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.page.0
    }
}

impl<T> fmt::Debug for Locked<T> {
    /// Never the value: what is locked is key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Locked({} bytes, {})",
            self.footprint(),
            if self.locked { "locked" } else { "not locked" }
        )
    }
}

/// How much of the process's [`Locked`] memory is locked, and why not all of it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// Bytes of live values that are locked in RAM.
    pub locked_bytes: usize,
    /// Bytes of live values that could not be locked.
    pub unlocked_bytes: usize,
    /// Why the last lock that failed did, if one did (it may since have been dropped).
    pub last_failure: Option<Failure>,
}

/// The process's [`Status`] now.
pub fn status() -> Status {
    Status {
        locked_bytes: LOCKED.load(Ordering::Relaxed),
        unlocked_bytes: UNLOCKED.load(Ordering::Relaxed),
        last_failure: LAST_FAILURE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone(),
    }
}

/// Why a value's pages could not be locked. Its `Display` says what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    cause: Cause,
    /// The bytes the value needed locked.
    bytes: usize,
    /// RLIMIT_MEMLOCK's soft limit when it failed (`None`: unlimited).
    limit: Option<u64>,
    /// Bytes of [`Locked`] values already locked when it failed.
    already: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Cause {
    /// EPERM: a limit of 0, and no CAP_IPC_LOCK.
    NoPrivilege,
    /// ENOMEM: more than the limit.
    OverLimit,
    /// Anything else mlock(2) said (EAGAIN: the kernel could not lock them now).
    Other(Errno),
    /// Pages larger than [`PAGE`]: a value's pages would be shared with other memory.
    LargePages(usize),
}

impl Cause {
    fn from_errno(errno: Errno) -> Cause {
        match errno {
            Errno::PERM => Cause::NoPrivilege,
            Errno::NOMEM => Cause::OverLimit,
            other => Cause::Other(other),
        }
    }
}

impl Failure {
    fn new(cause: Cause, bytes: usize) -> Failure {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        Failure {
            cause,
            bytes,
            limit,
            already: LOCKED.load(Ordering::Relaxed),
        }
    }

    /// Whether raising RLIMIT_MEMLOCK (LimitMEMLOCK=, `ulimit -l`) would let it succeed.
    pub fn limit_is_the_cause(&self) -> bool {
        matches!(self.cause, Cause::NoPrivilege | Cause::OverLimit)
    }
}

/// The limit as the operator sets it: bytes, or "unlimited".
fn limit_text(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_string(), |l| format!("{l} bytes"))
}

/// What the operator gives the server so that its keys fit, with room for a rotation.
pub const ADVICE: &str = "give the server more lockable memory: LimitMEMLOCK=256K in its \
                          systemd unit, or `ulimit -l 256` in the shell that starts it";

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.cause {
            Cause::NoPrivilege => write!(
                f,
                "mlock of {} bytes refused (EPERM): RLIMIT_MEMLOCK is {} and the process \
                 lacks CAP_IPC_LOCK; {ADVICE}",
                self.bytes,
                limit_text(self.limit)
            ),
            Cause::OverLimit => write!(
                f,
                "mlock of {} bytes refused (ENOMEM): RLIMIT_MEMLOCK is {} and {} bytes are \
                 locked already; {ADVICE}",
                self.bytes,
                limit_text(self.limit),
                self.already
            ),
            Cause::Other(errno) => write!(
                f,
                "mlock of {} bytes failed: {errno} (RLIMIT_MEMLOCK is {})",
                self.bytes,
                limit_text(self.limit)
            ),
            Cause::LargePages(size) => write!(
                f,
                "this system's pages are {size} bytes, larger than the {PAGE} that key \
                 material is laid out in, so its pages would be shared; it is not locked"
            ),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    /// VmLck of this process, in kB.
    fn vm_lck() -> u64 {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmLck:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap()
    }

    #[test]
    fn a_value_has_whole_pages_of_its_own() {
        let small = Locked::new([7u8; 32]);
        let large = Locked::new([7u8; PAGE + 1]);
        assert_eq!(small.footprint(), PAGE);
        assert_eq!(large.footprint(), 2 * PAGE);
        for addr in [
            std::ptr::from_ref(&*small).addr(),
            std::ptr::from_ref(&*large).addr(),
        ] {
            assert_eq!(addr % PAGE, 0, "page-aligned");
        }
        assert_eq!(*small, [7u8; 32]);
        assert!(format!("{small:?}").starts_with("Locked(4096 bytes, "));
        assert!(!format!("{small:?}").contains('7'));
    }

    #[test]
    fn pages_are_locked_while_the_value_lives_when_the_limit_allows() {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Memlock).current;
        let root = rustix::process::geteuid().is_root();
        if !root && limit.is_some_and(|l| l < 64 * PAGE as u64) {
            eprintln!("skipping: RLIMIT_MEMLOCK too low and not root");
            return;
        }
        let mut values = Vec::new();
        for _ in 0..16 {
            values.push(Locked::new([1u8; 3 * PAGE]));
        }
        assert!(values.iter().all(Locked::is_locked));
        // 16 values of 3 pages each: at least 192 kB locked, whatever else the tests do.
        assert!(vm_lck() >= 192, "VmLck {} kB", vm_lck());
        assert!(status().locked_bytes >= 16 * 3 * PAGE);
    }

    #[test]
    fn a_failure_says_what_to_raise() {
        let perm = Failure {
            cause: Cause::from_errno(Errno::PERM),
            bytes: 4096,
            limit: Some(0),
            already: 0,
        };
        assert_eq!(
            perm.to_string(),
            format!(
                "mlock of 4096 bytes refused (EPERM): RLIMIT_MEMLOCK is 0 bytes and the \
                 process lacks CAP_IPC_LOCK; {ADVICE}"
            )
        );
        assert!(perm.limit_is_the_cause());
        let nomem = Failure {
            cause: Cause::from_errno(Errno::NOMEM),
            bytes: 8192,
            limit: Some(4096),
            already: 4096,
        };
        assert!(nomem.to_string().contains(
            "refused (ENOMEM): RLIMIT_MEMLOCK is 4096 bytes and 4096 bytes are locked already"
        ));
        assert!(nomem.to_string().contains("LimitMEMLOCK=256K"));
        let again = Failure {
            cause: Cause::from_errno(Errno::AGAIN),
            bytes: 4096,
            limit: None,
            already: 0,
        };
        assert!(!again.limit_is_the_cause());
        assert!(again.to_string().contains("RLIMIT_MEMLOCK is unlimited"));
        let large = Failure {
            cause: Cause::LargePages(65536),
            bytes: 4096,
            limit: None,
            already: 0,
        };
        assert!(large.to_string().contains("pages are 65536 bytes"));
    }
}
