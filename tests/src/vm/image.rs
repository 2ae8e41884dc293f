//! The boot pieces of the test VM and their on-disk cache: the installed
//! kernel and its 9P/virtio modules, the base initramfs, and an uncompressed
//! `vmlinux` for a PVH boot.
//!
//! Everything built here is cached under `<target dir>/v9fs-cache/` and keyed
//! by content, so the first run in a target directory pays for the build
//! (about a second, plus one `xz -d` of the kernel) and later runs only read
//! a few MB. Builds happen under an exclusive file lock and land with a
//! rename, so parallel test threads and test processes never see half a file.

use std::collections::{BTreeSet, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::UNIX_EPOCH;

use super::cpio::Archive;
use super::{Missing, VmError};

/// Bump when the image layout changes in a way the content hash cannot see.
const IMAGE_REV: u32 = 1;

/// The modules the guest loads; their dependencies come from `modules.dep`.
/// 9p (v9fs) and 9pnet_fd (trans=fd) are the client, virtio_pci and
/// virtio_console give the serial ports that carry 9P and the results.
const WANTED_MODULES: &[&str] = &["9p", "9pnet_fd", "virtio_pci", "virtio_console"];

/// Guest-side files, authored in `tests/vm/`.
const GUEST_INIT: &[u8] = include_bytes!("../../vm/init");
const GUEST_V9MOUNT: &[u8] = include_bytes!("../../vm/v9mount");
const GUEST_V9UMOUNT: &[u8] = include_bytes!("../../vm/v9umount");
const GUEST_PASSWD: &[u8] = include_bytes!("../../vm/passwd");
const GUEST_GROUP: &[u8] = include_bytes!("../../vm/group");

/// `XEN_ELFNOTE_PHYS32_ENTRY` (include/xen/interface/elfnote.h): the note
/// that gives a vmlinux its PVH entry point, which qemu needs to boot an ELF.
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
/// ELF program header types (`PT_INTERP`, `PT_NOTE` from `<elf.h>`).
const PT_INTERP: u32 = 3;
const PT_NOTE: u32 = 4;
/// Note segments of a vmlinux are a few hundred bytes; anything bigger is
/// not worth reading for one note.
const MAX_NOTE_SEGMENT: u64 = 1 << 20;

/// The kernel the guest boots, with the modules it needs, dependencies first.
pub(crate) struct Kernel {
    /// The release, e.g. `6.1.0-56-amd64`.
    pub(crate) kver: String,
    /// The bzImage (`/boot/vmlinuz-<kver>`).
    pub(crate) bzimage: PathBuf,
    /// Module files to load, in load order (absolute paths, maybe compressed).
    pub(crate) modules: Vec<PathBuf>,
}

/// What a run boots: the kernel image for `-kernel` and the base initramfs.
pub(crate) struct Boot {
    /// The release of the booted kernel.
    pub(crate) kver: String,
    /// The extracted vmlinux (PVH entry) or, when that failed, the bzImage.
    pub(crate) image: PathBuf,
    /// Why the bzImage is booted instead of a vmlinux; `None` for PVH.
    pub(crate) no_pvh_reason: Option<String>,
    /// The base initramfs (uncompressed newc), to which each run appends its files.
    pub(crate) initramfs: Vec<u8>,
}

/// Finds the kernel to boot: `$V9FS_KERNEL` if set, else the newest
/// `/boot/vmlinuz-*` whose `/lib/modules/<release>` has the modules we need.
pub(crate) fn find_kernel() -> Result<Kernel, Missing> {
    if let Some(path) = std::env::var_os("V9FS_KERNEL") {
        let path = PathBuf::from(path);
        let kver = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("vmlinuz-"))
            .ok_or_else(|| {
                Missing::Kernel(format!(
                    "V9FS_KERNEL={} is not named vmlinuz-<release>",
                    path.display()
                ))
            })?
            .to_owned();
        return kernel_at(path.clone(), kver);
    }
    let mut candidates: Vec<(String, PathBuf)> = fs::read_dir("/boot")
        .map_err(|e| Missing::Kernel(format!("cannot list /boot: {e}")))?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let kver = name.strip_prefix("vmlinuz-")?.to_owned();
            Some((kver, e.path()))
        })
        .collect();
    candidates.sort_by(|a, b| version_cmp(&b.0, &a.0));
    let mut first_problem = None;
    for (kver, path) in candidates {
        match kernel_at(path, kver) {
            Ok(k) => return Ok(k),
            Err(m) => {
                first_problem.get_or_insert(m);
            }
        }
    }
    Err(first_problem.unwrap_or_else(|| Missing::Kernel("no /boot/vmlinuz-* found".into())))
}

fn kernel_at(bzimage: PathBuf, kver: String) -> Result<Kernel, Missing> {
    if let Err(e) = File::open(&bzimage) {
        return Err(Missing::Kernel(format!(
            "cannot read {}: {e} (some distributions make it root-only)",
            bzimage.display()
        )));
    }
    let moddir = Path::new("/lib/modules").join(&kver);
    let dep = fs::read_to_string(moddir.join("modules.dep"))
        .map_err(|e| Missing::Modules(format!("{}/modules.dep: {e}", moddir.display())))?;
    // modules.builtin is optional: a kernel may build some wanted module in.
    let builtin = fs::read_to_string(moddir.join("modules.builtin")).unwrap_or_default();
    let modules = resolve_modules(&dep, &builtin, WANTED_MODULES)
        .map_err(|e| Missing::Modules(format!("kernel {kver}: {e}")))?
        .into_iter()
        .map(|rel| moddir.join(rel))
        .collect();
    Ok(Kernel {
        kver,
        bzimage,
        modules,
    })
}

/// The module name of a path in modules.dep: `kernel/net/9p/9pnet-fd.ko.xz` -> `9pnet_fd`.
fn module_name(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or(path);
    let stem = base.find(".ko").map_or(base, |i| &base[..i]);
    stem.replace('-', "_")
}

/// Orders the wanted modules and their dependencies so that each comes after
/// everything it needs (a depth-first walk of modules.dep). Returns paths
/// relative to the module directory; built-in modules are left out.
fn resolve_modules(dep: &str, builtin: &str, wanted: &[&str]) -> Result<Vec<String>, String> {
    let mut deps: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut by_name: HashMap<String, &str> = HashMap::new();
    for line in dep.lines() {
        let Some((path, rest)) = line.split_once(':') else {
            continue;
        };
        deps.insert(path, rest.split_whitespace().collect());
        by_name.insert(module_name(path), path);
    }
    let builtin: BTreeSet<String> = builtin.lines().map(module_name).collect();
    let mut order = Vec::new();
    let mut seen = BTreeSet::new();
    fn visit<'a>(
        path: &'a str,
        deps: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut BTreeSet<&'a str>,
        order: &mut Vec<String>,
    ) {
        if !seen.insert(path) {
            return;
        }
        for d in deps.get(path).into_iter().flatten() {
            visit(d, deps, seen, order);
        }
        order.push(path.to_owned());
    }
    for want in wanted {
        let want = want.replace('-', "_");
        match by_name.get(&want) {
            Some(path) => visit(path, &deps, &mut seen, &mut order),
            None if builtin.contains(&want) => {}
            None => {
                return Err(format!(
                    "module {want} is neither in modules.dep nor built in"
                ));
            }
        }
    }
    Ok(order)
}

/// Compares kernel releases so that `6.10.0` sorts after `6.9.0`.
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    fn chunks(s: &str) -> Vec<(bool, &str)> {
        let mut out = Vec::new();
        let mut start = 0;
        let bytes = s.as_bytes();
        for i in 1..=bytes.len() {
            if i == bytes.len() || bytes[i].is_ascii_digit() != bytes[start].is_ascii_digit() {
                out.push((bytes[start].is_ascii_digit(), &s[start..i]));
                start = i;
            }
        }
        out
    }
    let (ca, cb) = (chunks(a), chunks(b));
    for (x, y) in ca.iter().zip(&cb) {
        let ord = match (x, y) {
            ((true, x), (true, y)) => {
                let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
                x.len().cmp(&y.len()).then_with(|| x.cmp(y))
            }
            ((_, x), (_, y)) => x.cmp(y),
        };
        if ord.is_ne() {
            return ord;
        }
    }
    ca.len().cmp(&cb.len())
}

/// Finds a statically linked busybox (the guest has no libc to link against).
pub(crate) fn find_busybox() -> Result<PathBuf, Missing> {
    let path = std::env::var_os("V9FS_BUSYBOX")
        .map(PathBuf::from)
        .or_else(|| {
            ["/bin/busybox", "/usr/bin/busybox"]
                .map(PathBuf::from)
                .into_iter()
                .find(|p| p.is_file())
        })
        .or_else(|| super::find_program("busybox"))
        .ok_or_else(|| Missing::Busybox("no busybox binary found".into()))?;
    let mut f = File::open(&path)
        .map_err(|e| Missing::Busybox(format!("cannot read {}: {e}", path.display())))?;
    match program_headers(&mut f) {
        Ok(ph) if ph.iter().any(|h| h.kind == PT_INTERP) => Err(Missing::Busybox(format!(
            "{} is dynamically linked",
            path.display()
        ))),
        Ok(_) => Ok(path),
        Err(e) => Err(Missing::Busybox(format!("{}: {e}", path.display()))),
    }
}

/// Where the cache lives: `$V9FS_CACHE_DIR`, else `v9fs-cache` in the cargo
/// target directory (from an absolute `$CARGO_TARGET_DIR`, or the nearest
/// ancestor of the running test binary that holds cargo's `CACHEDIR.TAG`),
/// else the system temp directory.
pub(crate) fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("V9FS_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from)
        && dir.is_absolute()
    {
        return dir.join("v9fs-cache");
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(target) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return target.join("v9fs-cache");
    }
    std::env::temp_dir().join("v9fs-cache")
}

/// Makes sure the cached base initramfs and vmlinux exist, and loads them.
pub(crate) fn prepare(cache: &Path, kernel: &Kernel, busybox: &Path) -> Result<Boot, VmError> {
    fs::create_dir_all(cache).map_err(|e| VmError::io(format!("create {}", cache.display()), e))?;
    let lock_path = cache.join("build.lock");
    let lock = File::create(&lock_path)
        .map_err(|e| VmError::io(format!("open {}", lock_path.display()), e))?;
    lock.lock()
        .map_err(|e| VmError::io(format!("lock {}", lock_path.display()), e))?;

    let key = image_key(kernel, busybox);
    let initramfs_path = cache.join(format!("initramfs-{}-{key:016x}.cpio", kernel.kver));
    let initramfs = match fs::read(&initramfs_path) {
        Ok(bytes) => bytes,
        Err(_) => {
            let bytes = build_initramfs(kernel, busybox)?;
            write_atomically(&initramfs_path, &bytes)?;
            remove_stale(cache, "initramfs-", &initramfs_path);
            bytes
        }
    };

    let (image, no_pvh_reason) = vmlinux(cache, kernel)?;
    drop(lock);
    Ok(Boot {
        kver: kernel.kver.clone(),
        image,
        no_pvh_reason,
        initramfs,
    })
}

/// The cached vmlinux, extracted on first use; the bzImage (with the reason)
/// when extraction is impossible. A failure is remembered in a marker file
/// so that later runs do not retry a slow extraction that cannot work.
fn vmlinux(cache: &Path, kernel: &Kernel) -> Result<(PathBuf, Option<String>), VmError> {
    if std::env::var_os("V9FS_NO_PVH").is_some_and(|v| v == "1") {
        return Ok((kernel.bzimage.clone(), Some("V9FS_NO_PVH=1".into())));
    }
    let mut h = Fnv::new();
    h.file_identity(&kernel.bzimage);
    let stem = format!("vmlinux-{}-{:016x}", kernel.kver, h.finish());
    let path = cache.join(&stem);
    let failed = cache.join(format!("{stem}.failed"));
    if path.is_file() {
        return Ok((path, None));
    }
    if let Ok(reason) = fs::read_to_string(&failed) {
        return Ok((kernel.bzimage.clone(), Some(reason)));
    }
    match extract_vmlinux(&kernel.bzimage, &path) {
        Ok(()) => {
            remove_stale(cache, "vmlinux-", &path);
            Ok((path, None))
        }
        Err(reason) => {
            write_atomically(&failed, reason.as_bytes())?;
            Ok((kernel.bzimage.clone(), Some(reason)))
        }
    }
}

/// The content key of the base initramfs: the guest files themselves, and
/// the identity (path, size, mtime) of busybox and of every module, so a
/// package upgrade or an edit in `tests/vm/` rebuilds the image.
fn image_key(kernel: &Kernel, busybox: &Path) -> u64 {
    let mut h = Fnv::new();
    h.bytes(&IMAGE_REV.to_le_bytes());
    h.bytes(kernel.kver.as_bytes());
    for f in [
        GUEST_INIT,
        GUEST_V9MOUNT,
        GUEST_V9UMOUNT,
        GUEST_PASSWD,
        GUEST_GROUP,
    ] {
        h.bytes(f);
    }
    h.file_identity(busybox);
    for m in &kernel.modules {
        h.file_identity(m);
    }
    h.finish()
}

fn build_initramfs(kernel: &Kernel, busybox: &Path) -> Result<Vec<u8>, VmError> {
    let mut a = Archive::new(1);
    for dir in [
        "bin",
        "dev",
        "etc",
        "lib",
        "lib/modules",
        "mnt",
        "proc",
        "root",
        "run",
        "sys",
    ] {
        a.dir(dir, 0o755);
    }
    a.dir("tmp", 0o1777);
    // The kernel opens /dev/console for init's stdio before init mounts devtmpfs.
    a.char_dev("dev/console", 0o600, 5, 1);
    let bb =
        fs::read(busybox).map_err(|e| VmError::io(format!("read {}", busybox.display()), e))?;
    a.file("bin/busybox", 0o755, &bb);
    let list = Command::new(busybox)
        .arg("--list")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::io(format!("run {} --list", busybox.display()), e))?;
    if !list.status.success() {
        return Err(VmError::Setup(format!(
            "{} --list failed: {}",
            busybox.display(),
            list.status
        )));
    }
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if !applet.is_empty() && applet != "busybox" && !applet.contains('/') {
            a.symlink(&format!("bin/{applet}"), "busybox");
        }
    }
    a.file("init", 0o755, GUEST_INIT);
    a.file("bin/v9mount", 0o755, GUEST_V9MOUNT);
    a.file("bin/v9umount", 0o755, GUEST_V9UMOUNT);
    a.file("etc/passwd", 0o644, GUEST_PASSWD);
    a.file("etc/group", 0o644, GUEST_GROUP);
    let mut load = String::new();
    for m in &kernel.modules {
        let name = format!("{}.ko", module_name(&m.to_string_lossy()));
        a.file(&format!("lib/modules/{name}"), 0o644, &read_module(m)?);
        load.push_str(&name);
        load.push('\n');
    }
    a.file("etc/modules.load", 0o644, load.as_bytes());
    Ok(a.finish())
}

/// Reads a module, decompressing `.ko.xz`/`.ko.zst`/`.ko.gz` with the system
/// tool: whether busybox insmod can read compressed modules depends on how
/// it was configured, a plain `.ko` always works.
fn read_module(path: &Path) -> Result<Vec<u8>, VmError> {
    let name = path.to_string_lossy();
    let tool: &[&str] = if name.ends_with(".ko.xz") {
        &["xz", "-dc"]
    } else if name.ends_with(".ko.zst") {
        &["zstd", "-dcq"]
    } else if name.ends_with(".ko.gz") {
        &["gzip", "-dc"]
    } else {
        return fs::read(path).map_err(|e| VmError::io(format!("read {name}"), e));
    };
    let out = Command::new(tool[0])
        .args(&tool[1..])
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| VmError::io(format!("run {} on {name} (install it)", tool[0]), e))?;
    if !out.status.success() {
        return Err(VmError::Setup(format!(
            "{} -d {name} failed: {}",
            tool[0],
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// Extracts the compressed vmlinux ELF from a bzImage (boot protocol >= 2.08,
/// Documentation/arch/x86/boot.rst: the payload lies at `payload_offset`
/// after the setup sectors, and its last 4 bytes hold the uncompressed size)
/// and checks that it is an ELF with a PVH entry note.
fn extract_vmlinux(bzimage: &Path, out: &Path) -> Result<(), String> {
    let image = fs::read(bzimage).map_err(|e| format!("read {}: {e}", bzimage.display()))?;
    let payload = bzimage_payload(&image)?;
    let (tool, args): (&str, &[&str]) = match payload {
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => ("xz", &["-dc", "--single-stream"]),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => ("zstd", &["-dcq"]),
        [0x1f, 0x8b, ..] => ("gzip", &["-dc"]),
        [0x5d, 0, 0, ..] => ("xz", &["--format=lzma", "-dc"]),
        _ => return Err("unsupported bzImage compression (want xz, zstd, gzip or lzma)".into()),
    };
    let expected = payload
        .last_chunk::<4>()
        .map(|b| u64::from(u32::from_le_bytes(*b)))
        .ok_or("empty bzImage payload")?;
    let tmp = temp_name(out);
    let result = (|| {
        let file = File::create(&tmp).map_err(|e| format!("create {}: {e}", tmp.display()))?;
        let mut child = Command::new(tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("run {tool}: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            // The size trailer after the stream makes some tools complain
            // (and exit non-zero) once they have written everything, so a
            // write error here and the exit status are not the verdict:
            // the size and ELF checks below are.
            let _ = stdin.write_all(payload);
        }
        let _ = child.wait().map_err(|e| format!("wait for {tool}: {e}"))?;
        let size = fs::metadata(&tmp).map_err(|e| e.to_string())?.len();
        if size != expected {
            return Err(format!(
                "{tool} produced {size} bytes, the bzImage says {expected}"
            ));
        }
        let mut f = File::open(&tmp).map_err(|e| e.to_string())?;
        if !has_pvh_note(&mut f).map_err(|e| format!("extracted vmlinux: {e}"))? {
            return Err("the kernel has no PVH entry note (CONFIG_PVH is off)".into());
        }
        fs::rename(&tmp, out).map_err(|e| format!("rename to {}: {e}", out.display()))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn bzimage_payload(image: &[u8]) -> Result<&[u8], String> {
    let u16_at = |o: usize| {
        image
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |o: usize| {
        image
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    if image.get(0x202..0x206) != Some(b"HdrS") {
        return Err("not a bzImage (no HdrS header)".into());
    }
    let version = u16_at(0x206).ok_or("truncated bzImage")?;
    if version < 0x208 {
        return Err(format!("boot protocol {version:#x} has no payload fields"));
    }
    let setup_sects = match image.get(0x1f1).copied().ok_or("truncated bzImage")? {
        0 => 4, // boot.rst: "If this field is 0, the real value is 4."
        n => usize::from(n),
    };
    let offset = u32_at(0x248).ok_or("truncated bzImage")? as usize;
    let length = u32_at(0x24c).ok_or("truncated bzImage")? as usize;
    let start = (setup_sects + 1) * 512 + offset;
    image
        .get(start..start + length)
        .ok_or_else(|| "bzImage payload lies outside the file".into())
}

/// One ELF64 program header, the fields we use.
struct ProgramHeader {
    kind: u32,
    offset: u64,
    size: u64,
}

/// The program headers of a little-endian ELF64 file (what x86-64 runs).
fn program_headers(r: &mut (impl Read + Seek)) -> io::Result<Vec<ProgramHeader>> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_owned());
    let mut eh = [0u8; 64];
    r.seek(SeekFrom::Start(0))?;
    r.read_exact(&mut eh)?;
    if &eh[..4] != b"\x7fELF" {
        return Err(bad("not an ELF file"));
    }
    if eh[4] != 2 || eh[5] != 1 {
        return Err(bad("not a little-endian ELF64 file"));
    }
    let phoff = u64::from_le_bytes(eh[0x20..0x28].try_into().map_err(|_| bad("header"))?);
    let phentsize = u16::from_le_bytes([eh[0x36], eh[0x37]]);
    let phnum = u16::from_le_bytes([eh[0x38], eh[0x39]]);
    if phentsize < 0x28 {
        return Err(bad("program header entries too small"));
    }
    let mut out = Vec::with_capacity(usize::from(phnum));
    let mut ph = vec![0u8; usize::from(phentsize)];
    for i in 0..u64::from(phnum) {
        r.seek(SeekFrom::Start(phoff + i * u64::from(phentsize)))?;
        r.read_exact(&mut ph)?;
        let u64_at = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&ph[o..o + 8]);
            u64::from_le_bytes(b)
        };
        out.push(ProgramHeader {
            kind: u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]),
            offset: u64_at(0x08),
            size: u64_at(0x20),
        });
    }
    Ok(out)
}

/// Whether an ELF file carries the Xen PVH entry note, without which qemu
/// refuses to boot it ("Error loading uncompressed kernel without PVH ELF Note").
fn has_pvh_note(r: &mut (impl Read + Seek)) -> io::Result<bool> {
    for ph in program_headers(r)? {
        if ph.kind != PT_NOTE || ph.size > MAX_NOTE_SEGMENT {
            continue;
        }
        let mut seg = vec![0u8; usize::try_from(ph.size).unwrap_or(0)];
        r.seek(SeekFrom::Start(ph.offset))?;
        r.read_exact(&mut seg)?;
        let mut rest = seg.as_slice();
        while rest.len() >= 12 {
            let word =
                |o: usize| u32::from_le_bytes([rest[o], rest[o + 1], rest[o + 2], rest[o + 3]]);
            let (namesz, descsz, kind) = (word(0) as usize, word(4) as usize, word(8));
            let name_end = 12 + namesz;
            let desc_end = name_end.next_multiple_of(4) + descsz;
            if rest.len() < name_end {
                break;
            }
            if &rest[12..name_end] == b"Xen\0" && kind == XEN_ELFNOTE_PHYS32_ENTRY {
                return Ok(true);
            }
            rest = rest.get(desc_end.next_multiple_of(4)..).unwrap_or(&[]);
        }
    }
    Ok(false)
}

/// Writes a file under a unique temporary name and renames it into place.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), VmError> {
    let tmp = temp_name(path);
    fs::write(&tmp, bytes)
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = fs::remove_file(&tmp);
            VmError::io(format!("write {}", path.display()), e)
        })
}

fn temp_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    PathBuf::from(name)
}

/// Removes older cache entries of one kind. A process still using one has
/// read it already (initramfs) or keeps it open (qemu maps the vmlinux), so
/// unlinking is safe; errors only leave a stale file behind.
fn remove_stale(cache: &Path, prefix: &str, keep: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(prefix) && !name.contains(".tmp.") && e.path() != keep {
            let _ = fs::remove_file(e.path());
        }
    }
}

/// FNV-1a, 64-bit: a stable hash for cache keys (std's hasher may change
/// between Rust releases, which would only cost a rebuild, but this is
/// simpler to reason about and needs no dependency).
struct Fnv(u64);

impl Fnv {
    fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    /// Hashes a length-prefixed item, so that ("ab","c") differs from ("a","bc").
    fn bytes(&mut self, b: &[u8]) {
        for x in (b.len() as u64).to_le_bytes().iter().chain(b) {
            self.0 ^= u64::from(*x);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// A file's identity: path, size and mtime (its content is too big to hash per run).
    fn file_identity(&mut self, path: &Path) {
        self.bytes(path.as_os_str().as_encoded_bytes());
        let meta = fs::metadata(path).ok();
        let len = meta.as_ref().map_or(0, |m| m.len());
        let mtime = meta
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        self.bytes(&len.to_le_bytes());
        self.bytes(&mtime.to_le_bytes());
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;
    use std::io::Cursor;

    const DEP: &str = "\
kernel/fs/netfs/netfs.ko:
kernel/fs/fscache/fscache.ko: kernel/fs/netfs/netfs.ko
kernel/fs/9p/9p.ko: kernel/net/9p/9pnet.ko kernel/fs/fscache/fscache.ko kernel/fs/netfs/netfs.ko
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/char/virtio_console.ko: kernel/drivers/virtio/virtio.ko.xz kernel/drivers/virtio/virtio_ring.ko
kernel/net/9p/9pnet.ko:
kernel/net/9p/9pnet_fd.ko: kernel/net/9p/9pnet.ko
kernel/drivers/virtio/virtio.ko.xz:
kernel/drivers/virtio/virtio_ring.ko:
";

    #[test]
    fn modules_come_after_their_dependencies() {
        let order = resolve_modules(DEP, "", WANTED_MODULES).unwrap();
        let pos = |m: &str| order.iter().position(|p| module_name(p) == m).unwrap();
        assert_eq!(order.len(), 10);
        for (before, after) in [
            ("9pnet", "9p"),
            ("fscache", "9p"),
            ("netfs", "fscache"),
            ("9pnet", "9pnet_fd"),
            ("virtio", "virtio_pci"),
            ("virtio_ring", "virtio_console"),
            ("virtio_pci_modern_dev", "virtio_pci"),
        ] {
            assert!(
                pos(before) < pos(after),
                "{before} must load before {after}"
            );
        }
        // Each module once, although several depend on it.
        let unique: BTreeSet<_> = order.iter().collect();
        assert_eq!(unique.len(), order.len());
    }

    #[test]
    fn built_in_modules_are_skipped_and_unknown_ones_reported() {
        let dep = "kernel/fs/9p/9p.ko:\nkernel/net/9p/9pnet_fd.ko:\n";
        let builtin =
            "kernel/drivers/virtio/virtio_pci.ko\nkernel/drivers/char/virtio_console.ko\n";
        let order = resolve_modules(dep, builtin, WANTED_MODULES).unwrap();
        assert_eq!(order, ["kernel/fs/9p/9p.ko", "kernel/net/9p/9pnet_fd.ko"]);
        let err = resolve_modules(dep, "", WANTED_MODULES).unwrap_err();
        assert!(err.contains("virtio_pci"), "{err}");
    }

    #[test]
    fn module_names_drop_compression_and_dashes() {
        assert_eq!(module_name("kernel/net/9p/9pnet-fd.ko.xz"), "9pnet_fd");
        assert_eq!(module_name("9p.ko"), "9p");
        assert_eq!(
            module_name("kernel/x/virtio_console.ko.zst"),
            "virtio_console"
        );
    }

    #[test]
    fn kernel_versions_sort_numerically() {
        use std::cmp::Ordering::*;
        assert_eq!(version_cmp("6.10.0-1-amd64", "6.9.0-1-amd64"), Greater);
        assert_eq!(version_cmp("6.1.0-56-amd64", "6.1.0-9-amd64"), Greater);
        assert_eq!(version_cmp("6.1.0-56-amd64", "6.1.0-56-amd64"), Equal);
        assert_eq!(version_cmp("5.10", "5.10.1"), Less);
    }

    fn fake_bzimage(setup_sects: u8, payload: &[u8]) -> Vec<u8> {
        let start = (usize::from(setup_sects.max(1)) + 1) * 512;
        let mut img = vec![0u8; start + 16 + payload.len()];
        img[0x1f1] = setup_sects;
        img[0x202..0x206].copy_from_slice(b"HdrS");
        img[0x206..0x208].copy_from_slice(&0x20fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&16u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img[start + 16..].copy_from_slice(payload);
        img
    }

    #[test]
    fn bzimage_payload_is_found_from_the_header() {
        let img = fake_bzimage(3, b"PAYLOAD!");
        assert_eq!(bzimage_payload(&img).unwrap(), b"PAYLOAD!");
        let mut old = img.clone();
        old[0x206..0x208].copy_from_slice(&0x206u16.to_le_bytes());
        assert!(bzimage_payload(&old).unwrap_err().contains("0x206"));
        assert!(bzimage_payload(&img[..0x300]).is_err());
        assert!(bzimage_payload(b"not a kernel").is_err());
    }

    /// A minimal ELF64 with one PT_NOTE segment holding `notes`, plus a PT_INTERP when `interp`.
    fn fake_elf(notes: &[(&[u8], u32)], interp: bool) -> Vec<u8> {
        let mut seg = Vec::new();
        for (name, kind) in notes {
            seg.extend_from_slice(&(name.len() as u32).to_le_bytes());
            seg.extend_from_slice(&4u32.to_le_bytes());
            seg.extend_from_slice(&kind.to_le_bytes());
            seg.extend_from_slice(name);
            while seg.len() % 4 != 0 {
                seg.push(0);
            }
            seg.extend_from_slice(&0x0100_0000u32.to_le_bytes());
        }
        let phnum: u16 = if interp { 2 } else { 1 };
        let seg_off = 64 + 56 * u64::from(phnum);
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        elf[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        elf[0x38..0x3a].copy_from_slice(&phnum.to_le_bytes());
        let mut ph = |kind: u32, off: u64, size: u64| {
            let mut p = vec![0u8; 56];
            p[..4].copy_from_slice(&kind.to_le_bytes());
            p[8..16].copy_from_slice(&off.to_le_bytes());
            p[0x20..0x28].copy_from_slice(&size.to_le_bytes());
            elf.extend_from_slice(&p);
        };
        ph(PT_NOTE, seg_off, seg.len() as u64);
        if interp {
            ph(PT_INTERP, 0, 0);
        }
        elf.extend_from_slice(&seg);
        elf
    }

    #[test]
    fn the_pvh_note_is_recognised() {
        let with = fake_elf(
            &[(b"GNU\0", 3), (b"Xen\0", XEN_ELFNOTE_PHYS32_ENTRY)],
            false,
        );
        assert!(has_pvh_note(&mut Cursor::new(with)).unwrap());
        let other_xen_note = fake_elf(&[(b"Xen\0", 1), (b"Linux\0", 18)], false);
        assert!(!has_pvh_note(&mut Cursor::new(other_xen_note)).unwrap());
        assert!(has_pvh_note(&mut Cursor::new(b"#!/bin/sh\n".repeat(10))).is_err());
    }

    #[test]
    fn an_interpreter_marks_a_dynamic_binary() {
        let dynamic = program_headers(&mut Cursor::new(fake_elf(&[], true))).unwrap();
        assert!(dynamic.iter().any(|h| h.kind == PT_INTERP));
        let stat = program_headers(&mut Cursor::new(fake_elf(&[], false))).unwrap();
        assert!(!stat.iter().any(|h| h.kind == PT_INTERP));
    }

    #[test]
    fn compressed_modules_are_decompressed_with_the_system_tool() {
        let dir = tempfile::tempdir().unwrap();
        let ko = dir.path().join("m.ko");
        fs::write(&ko, b"\x7fELF module bytes").unwrap();
        assert_eq!(read_module(&ko).unwrap(), b"\x7fELF module bytes");
        let Ok(st) = Command::new("xz").arg("-k").arg(&ko).status() else {
            eprintln!("xz not installed: compressed-module check skipped");
            return;
        };
        assert!(st.success());
        assert_eq!(
            read_module(&dir.path().join("m.ko.xz")).unwrap(),
            b"\x7fELF module bytes"
        );
    }

    #[test]
    fn the_cache_key_follows_file_identity() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("busybox");
        fs::write(&f, b"1").unwrap();
        let k = Kernel {
            kver: "6.1".into(),
            bzimage: f.clone(),
            modules: vec![],
        };
        let a = image_key(&k, &f);
        assert_eq!(a, image_key(&k, &f));
        fs::write(&f, b"22").unwrap();
        assert_ne!(a, image_key(&k, &f));
    }
}
