//! An open events file (`/events` of a service's view, `secrets/events` of the admin
//! tree): the fid's own subscription to the vault's changes, from the moment it was
//! opened, read as lines ([`model::EventLine`]).
//!
//! A read returns the whole lines waiting, as many as fit; a read smaller than a line gets
//! its first bytes and the next read the rest. With nothing waiting a read waits (the
//! server core holds it without its reply permits: [`Reading::Later`]) until something
//! changes for the fid's view. A fid that falls behind (its subscription's bounded queue)
//! reads `lost N` where the dropped lines were, and goes on.
//!
//! Linux's v9fs fills a read(2) with as many Treads as it takes (p9_client_read), each at
//! the offset where the last one ended and for what is left of the buffer, at most the
//! iounit: a read that waited until the buffer was full would never return the lines it
//! has. So a read that continues the one before it in that way gets 0 bytes when nothing
//! is waiting, which ends the kernel's loop and returns the lines to the reader. It
//! continues the one before when it is at that read's end, after lines, and asks for less
//! than it did but no less than it left unfilled (a read(2) smaller than the iounit), or,
//! after a read of the whole iounit that was not filled, for the whole iounit again (a
//! larger read(2): GNU cat's 128 KiB). Any other read waits: one after 0 bytes (the next
//! read(2)), and one of a client that reads at offset 0 (deploy, our FUSE client) or asks
//! less than the iounit each time (Plan 9's cat).

use std::sync::{Mutex, MutexGuard};

use ninep::Data;
use ninep::server::{Reading, Ready};
use secrets::events::{Next, Subscription};

/// What an open events file holds.
pub struct EventsFid {
    subscription: Subscription,
    /// The admin tree's file: lines name the service they concern.
    admin: bool,
    cursor: Mutex<Cursor>,
}

/// Where the fid's reads are.
#[derive(Default)]
struct Cursor {
    /// The rest of a line a short read cut.
    partial: Vec<u8>,
    /// The last read that returned data: where it ended, what it asked, what it got.
    last: Option<LastRead>,
}

#[derive(Clone, Copy)]
struct LastRead {
    end: u64,
    count: u32,
    returned: u32,
}

impl LastRead {
    /// Whether a read at `offset` for `count`, on a fid of `iounit`, is v9fs filling the
    /// rest of the read(2) this one began (see the module's documentation).
    fn continued_by(self, offset: u64, count: u32, iounit: u32) -> bool {
        let after_lines = offset == self.end && self.returned > 0;
        let the_rest = count < self.count && count + self.returned >= self.count;
        let another_iounit = count == iounit && self.count == iounit && self.returned < self.count;
        after_lines && (the_rest || another_iounit)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The cursor is whole after any single operation on it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl EventsFid {
    /// The events file opened: `subscription` from now on, as the admin tree's file
    /// (`admin`) or a service's.
    pub fn new(subscription: Subscription, admin: bool) -> EventsFid {
        EventsFid {
            subscription,
            admin,
            cursor: Mutex::new(Cursor::default()),
        }
    }

    /// A Tread at `offset` for `count` bytes, on a fid of `iounit`: the lines waiting, or
    /// a wait for them.
    pub fn read(&self, offset: u64, count: u32, iounit: u32) -> Reading {
        let mut cursor = lock(&self.cursor);
        let want = count as usize;
        let mut out = Vec::with_capacity(want.min(4096));
        let partial = std::mem::take(&mut cursor.partial);
        self.take(&mut out, partial, want, &mut cursor);
        while out.len() < want {
            let Some(next) = self.subscription.next() else {
                break;
            };
            let line = match next {
                Next::Event(e) => e.line(self.admin).render(),
                Next::Lost(n) => model::EventLine::Lost { count: n }.render(),
            };
            self.take(&mut out, line.into_bytes(), want, &mut cursor);
        }
        if !out.is_empty() {
            let returned = out.len() as u32;
            cursor.last = Some(LastRead {
                end: offset.saturating_add(u64::from(returned)),
                count,
                returned,
            });
            return Reading::Now(Data::from(out));
        }
        if count == 0
            || cursor
                .last
                .is_some_and(|l| l.continued_by(offset, count, iounit))
        {
            // Nothing for the rest of v9fs's read(2): it returns what it has.
            cursor.last = Some(LastRead {
                end: offset,
                count,
                returned: 0,
            });
            return Reading::Now(Data::from(Vec::new()));
        }
        Reading::Later(Ready::new(self.subscription.ready()))
    }

    /// Appends what of `bytes` fits in `want`, keeping the rest for the next read.
    fn take(&self, out: &mut Vec<u8>, mut bytes: Vec<u8>, want: usize, cursor: &mut Cursor) {
        let room = want - out.len();
        if bytes.len() > room {
            cursor.partial = bytes.split_off(room);
        }
        out.extend_from_slice(&bytes);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::sync::Arc;

    use secrets::Vault;
    use secrets::events::Audience;

    use super::*;

    fn vault() -> (tempfile::TempDir, Arc<Vault>) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        v.set("db", b"one").unwrap();
        v.service_set_uid("web", 1001).unwrap();
        v.grant("web", "db").unwrap();
        (dir, Arc::new(v))
    }

    /// A fid's iounit at an msize of 8 KiB.
    const IOUNIT: u32 = 8168;

    fn now(r: Reading) -> Vec<u8> {
        match r {
            Reading::Now(d) => d.expose().to_vec(),
            Reading::Later(_) => panic!("the read waits"),
        }
    }

    #[test]
    fn whole_lines_as_many_as_fit_and_a_short_read_gets_the_rest_next() {
        let (_dir, v) = vault();
        let fid = EventsFid::new(v.subscribe(Audience::Service("web".into())), false);
        assert!(matches!(fid.read(0, 4096, IOUNIT), Reading::Later(_)));
        v.set("db", b"two").unwrap();
        v.set("db", b"three").unwrap();
        assert_eq!(now(fid.read(0, 5, IOUNIT)), b"set d");
        assert_eq!(now(fid.read(5, 5, IOUNIT)), b"b 2\ns");
        assert_eq!(
            now(fid.read(10, 4096, IOUNIT)),
            b"et db 3\nprevious-retired db 1\n"
        );
        assert!(matches!(fid.read(40, 4096, IOUNIT), Reading::Later(_)));
    }

    #[test]
    fn the_admin_file_names_the_service_and_a_fid_sees_only_what_came_after_its_open() {
        let (_dir, v) = vault();
        v.set("db", b"before the open").unwrap();
        let fid = EventsFid::new(v.subscribe(Audience::All), true);
        v.revoke("web", "db").unwrap();
        assert_eq!(now(fid.read(0, 4096, IOUNIT)), b"revoked db 2 web\n");
    }

    #[test]
    fn a_read_that_continues_one_that_got_lines_gets_nothing_rather_than_waiting() {
        let (_dir, v) = vault();
        let fid = EventsFid::new(v.subscribe(Audience::Service("web".into())), false);
        v.set("db", b"two").unwrap();
        // v9fs: a read(2) of 4096 bytes is a Tread of 4096, then one for the 4087 left.
        assert_eq!(now(fid.read(0, 4096, IOUNIT)), b"set db 2\n");
        assert_eq!(now(fid.read(9, 4087, IOUNIT)), b"");
        // The next read(2) asks afresh, and waits.
        assert!(matches!(fid.read(9, 4096, IOUNIT), Reading::Later(_)));
        // Capped by the iounit, the rest is asked for in the same way.
        v.set("db", b"three").unwrap();
        let got = now(fid.read(9, 8168, IOUNIT));
        assert_eq!(got.len(), 31);
        assert_eq!(now(fid.read(40, 8168 - 31, IOUNIT)), b"");
        // A client that asks the same count each time always waits.
        v.set("db", b"four").unwrap();
        let got = now(fid.read(40, 4096, IOUNIT)).len() as u64;
        assert!(matches!(
            fid.read(40 + got, 4096, IOUNIT),
            Reading::Later(_)
        ));
        // Lines waiting are returned to a continuing read too.
        v.set("db", b"five").unwrap();
        assert!(!now(fid.read(40 + got, 4095, IOUNIT)).is_empty());
    }

    #[test]
    fn the_whole_iounit_again_after_lines_is_a_larger_read2_going_on() {
        let (_dir, v) = vault();
        let fid = EventsFid::new(v.subscribe(Audience::Service("web".into())), false);
        v.set("db", b"two").unwrap();
        // GNU cat's read(2) of 128 KiB, larger than the iounit: v9fs asks for the whole
        // iounit again where the lines ended.
        assert_eq!(now(fid.read(0, IOUNIT, IOUNIT)), b"set db 2\n");
        assert_eq!(now(fid.read(9, IOUNIT, IOUNIT)), b"");
        // Its next read(2) waits.
        assert!(matches!(fid.read(9, IOUNIT, IOUNIT), Reading::Later(_)));
        // Plan 9's cat asks 8 KiB each time, below the iounit, at the offsets it got to.
        v.set("db", b"three").unwrap();
        let got = now(fid.read(9, 4096, IOUNIT)).len() as u64;
        assert!(matches!(fid.read(9 + got, 4096, IOUNIT), Reading::Later(_)));
        // deploy and the FUSE client read the iounit at offset 0.
        v.set("db", b"four").unwrap();
        assert!(!now(fid.read(0, IOUNIT, IOUNIT)).is_empty());
        assert!(matches!(fid.read(0, IOUNIT, IOUNIT), Reading::Later(_)));
    }
}
