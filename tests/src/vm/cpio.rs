//! A writer for the "newc" cpio format, the one the Linux kernel unpacks as an
//! initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Every record is a 110-byte ASCII header ("070701" and thirteen 8-digit hex
//! fields), the NUL-terminated name padded to 4 bytes, then the data padded
//! to 4 bytes. An archive ends with a record named `TRAILER!!!`. Because every
//! record is 4-byte aligned, archives can be concatenated and the kernel
//! unpacks them in order: that is how a run appends its script to the cached
//! base image.

/// File type bits of `st_mode` (`S_IFDIR` and friends, from `<sys/stat.h>`).
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;
const S_IFCHR: u32 = 0o020_000;

/// The magic of the newc format without checksums.
const MAGIC: &[u8; 6] = b"070701";

/// An in-memory newc archive, built entry by entry (parents before children).
pub(crate) struct Archive {
    bytes: Vec<u8>,
    next_ino: u32,
}

impl Archive {
    /// An empty archive whose inode numbers start at `first_ino`. The kernel
    /// matches hard links by inode only for entries with nlink >= 2, which we
    /// never write, so the numbers only need to be distinct within an archive.
    pub(crate) fn new(first_ino: u32) -> Self {
        Self {
            bytes: Vec::new(),
            next_ino: first_ino,
        }
    }

    /// A directory with permission bits `perm`.
    pub(crate) fn dir(&mut self, name: &str, perm: u32) {
        self.entry(name, S_IFDIR | perm, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub(crate) fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    /// A symbolic link: its data is the target path.
    pub(crate) fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    /// A character device node: written straight into the archive, so
    /// building an image needs no `mknod` and no root.
    pub(crate) fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    /// Ends the archive with the trailer record and returns its bytes.
    pub(crate) fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry_with_nlink("TRAILER!!!", 0, (0, 0), 1, &[]);
        self.bytes
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let nlink = if mode & S_IFDIR == S_IFDIR { 2 } else { 1 };
        self.entry_with_nlink(name, mode, rdev, nlink, data);
    }

    fn entry_with_nlink(
        &mut self,
        name: &str,
        mode: u32,
        (rdev_major, rdev_minor): (u32, u32),
        nlink: u32,
        data: &[u8],
    ) {
        let ino = self.next_ino;
        self.next_ino = self.next_ino.wrapping_add(1);
        let name_size = name.len() + 1;
        let fields: [u32; 13] = [
            ino,
            mode,
            0, // uid: root
            0, // gid: root
            nlink,
            0, // mtime: fixed, so an image depends only on its content
            to_u32(data.len()),
            0, // devmajor
            0, // devminor
            rdev_major,
            rdev_minor,
            to_u32(name_size),
            0, // check: unused by "070701"
        ];
        self.bytes.extend_from_slice(MAGIC);
        for field in fields {
            self.bytes
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.bytes.extend_from_slice(name.as_bytes());
        self.bytes.push(0);
        self.pad4();
        self.bytes.extend_from_slice(data);
        self.pad4();
    }

    fn pad4(&mut self) {
        while !self.bytes.len().is_multiple_of(4) {
            self.bytes.push(0);
        }
    }
}

/// Sizes in an initramfs are far below 4 GiB (the whole image is a few MB);
/// a larger one would be a bug in the caller, so it saturates and the kernel
/// then rejects the archive loudly instead of us truncating silently.
fn to_u32(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    /// One parsed record: (name, mode, nlink, rdev, data).
    type Record = (String, u32, u32, (u32, u32), Vec<u8>);

    /// A reader written from the format description, independent of the writer.
    fn parse(mut b: &[u8]) -> Vec<Record> {
        let mut out = Vec::new();
        let mut offset = 0usize;
        loop {
            assert_eq!(offset % 4, 0, "record not 4-byte aligned");
            assert_eq!(&b[..6], MAGIC);
            let field = |i: usize| {
                let s = std::str::from_utf8(&b[6 + 8 * i..14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, nlink, size, rmaj, rmin, namesize) =
                (field(1), field(4), field(6), field(9), field(10), field(11));
            let name_end = 110 + namesize as usize;
            assert_eq!(b[name_end - 1], 0, "name not NUL-terminated");
            let name = String::from_utf8(b[110..name_end - 1].to_vec()).unwrap();
            let data_start = name_end.next_multiple_of(4);
            let data_end = data_start + size as usize;
            let data = b[data_start..data_end].to_vec();
            let next = data_end.next_multiple_of(4);
            assert!(b[name_end..data_start].iter().all(|&x| x == 0));
            assert!(b[data_end..next].iter().all(|&x| x == 0));
            b = &b[next..];
            offset += next;
            let done = name == "TRAILER!!!";
            out.push((name, mode, nlink, (rmaj, rmin), data));
            if done {
                assert!(b.is_empty(), "bytes after the trailer");
                return out;
            }
        }
    }

    #[test]
    fn entries_round_trip_through_an_independent_reader() {
        let mut a = Archive::new(1);
        a.dir("bin", 0o755);
        a.file("bin/busybox", 0o755, b"\x7fELF12345");
        a.symlink("bin/sh", "busybox");
        a.char_dev("dev/console", 0o600, 5, 1);
        a.file("e", 0o644, b"");
        let got = parse(&a.finish());
        let names: Vec<_> = got.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(
            names,
            [
                "bin",
                "bin/busybox",
                "bin/sh",
                "dev/console",
                "e",
                "TRAILER!!!"
            ]
        );
        assert_eq!(got[0].1, 0o040_755);
        assert_eq!(got[0].2, 2);
        assert_eq!(
            (got[1].1, got[1].4.as_slice()),
            (0o100_755, &b"\x7fELF12345"[..])
        );
        assert_eq!(
            (got[2].1, got[2].4.as_slice()),
            (0o120_777, &b"busybox"[..])
        );
        assert_eq!((got[3].1, got[3].3), (0o020_600, (5, 1)));
        assert!(got[4].4.is_empty());
        assert_eq!(got[5].1, 0);
    }

    #[test]
    fn concatenated_archives_stay_aligned() {
        let mut a = Archive::new(1);
        a.file("odd", 0o644, b"abc");
        let first = a.finish();
        assert_eq!(first.len() % 4, 0);
        let mut b = Archive::new(100);
        b.file("run/x", 0o644, b"12345");
        let both = [first.clone(), b.finish()].concat();
        let second = parse(&both[first.len()..]);
        assert_eq!(second[0].0, "run/x");
        assert_eq!(second[0].4, b"12345");
    }

    #[test]
    fn the_system_cpio_reads_our_archive_when_installed() {
        // An outside check of the format when GNU cpio happens to be present.
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("cpio not installed: external format check skipped");
            return;
        };
        let mut a = Archive::new(1);
        a.dir("d", 0o755);
        a.file("d/f", 0o644, b"x");
        a.symlink("d/l", "f");
        let bytes = a.finish();
        let mut stdin = child.stdin.take().unwrap();
        std::io::Write::write_all(&mut stdin, &bytes).unwrap();
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8(out.stdout).unwrap(), "d\nd/f\nd/l\n");
    }
}
