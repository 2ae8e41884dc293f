//! Kernel-mount test runner: the real Linux 9P client (v9fs) against a 9P
//! server on this host, inside a throwaway qemu VM.
//!
//! The host kernel may lack 9P (this one has no `CONFIG_NET_9P`), so a test
//! boots a tiny VM: the installed distribution kernel, a busybox initramfs
//! built by this module, and the kernel's own 9p modules. qemu connects a
//! virtio-serial port to the server's unix socket; in the guest, v9fs mounts
//! that port at `/mnt` and a busybox `sh` script runs against the mount. The
//! VM then powers off and the script's output and exit status come back.
//!
//! ```no_run
//! # use srv_secrets_tests::vm::{self, KernelMount};
//! # fn t() -> Result<(), vm::VmError> {
//! if !vm::require_or_skip("my_test") {
//!     return Ok(());
//! }
//! // The server must already listen on the socket: qemu connects at start.
//! let run = KernelMount::unix("/tmp/srv.sock")
//!     .version("9p2000")
//!     .uname("web")
//!     .run("cat secret/db_password; exit 3")?;
//! assert_eq!(run.exit_code, 3);
//! # Ok(()) }
//! ```
//!
//! # The guest
//!
//! * The script runs under busybox 1.35 `sh` as root, with stdin `/dev/null`
//!   and stdout and stderr merged into [`GuestRun::output`] byte for byte.
//!   Its cwd is the mount point (`$V9FS_MNT`, `/mnt`), or `/` with
//!   [`KernelMount::no_mount`]. `$V9FS_VERSION` and `$V9FS_OPTS` hold the
//!   configured version and v9fs options. There is no bash, no Python and
//!   no IP networking: busybox applets only.
//! * Users for permission tests: `/etc/passwd` has `web` (uid 1001),
//!   `api` (1002), `other` (1003) and `nobody` (65534), each with a group of
//!   the same id. Run a command as one of them with
//!   `su web -c 'cat /mnt/secret/x'`: busybox `su` asks root for no password
//!   and runs the user's shell, `/bin/sh`. (Busybox 1.35's `setpriv` cannot
//!   change uids, and it has no `chpst` or `setuidgid`.)
//!   Note that with plain 9P2000 the kernel forces `access=any`: one attach,
//!   as the `uname` mount option, for every guest user; guest uids then
//!   matter only for the kernel's own permission checks on the stat modes.
//! * With [`KernelMount::no_mount`] the script mounts by itself with
//!   `v9mount [MOUNTPOINT] [EXTRA_OPTS]` (exit status: mount's), then must
//!   `cd "$V9FS_MNT"` to use it. A VM has one 9P connection, so one live
//!   mount; after a failed mount, `v9mount` may try again.
//! * `v9umount [MOUNTPOINT]` ends a mount made by `v9mount` (or the automatic
//!   one) and stops its relay; `v9mount` may then mount again, e.g. another
//!   service's view with `v9mount /mnt aname=api`: its Tversion starts a new
//!   9P session on the same connection. The script must `cd` out of the mount
//!   and close every file it holds there first (umount says EBUSY otherwise).
//! * The mount is `mount -t 9p -o trans=fd,rfdno=3,wfdno=4,<options> v9fs /mnt`
//!   on two FIFOs that busybox `cat`s relay to the virtio port (the port
//!   itself cannot serve trans=fd; see `tests/vm/v9mount`).
//!
//! # Results and failures
//!
//! [`KernelMount::run`] returns [`GuestRun`] once the script has finished,
//! whatever its exit status. A failed automatic mount is
//! [`VmError::MountFailed`] with mount's error and the guest's 9p kernel
//! messages. A VM that gives no exit status (timeout, kernel crash, qemu
//! unable to connect to the socket) is [`VmError::NoResult`] with qemu's
//! stderr and the kernel console. Missing pieces and bad options are
//! [`VmError::Setup`]; host I/O failures are [`VmError::Io`].
//!
//! # Watching a run
//!
//! [`KernelMount::spawn`] returns a [`RunningVm`]; its
//! [`wait_for_line`](RunningVm::wait_for_line) returns as soon as the guest
//! prints a given line, so a test can act on the server in the middle of a
//! script. The guest waits for the host by polling a file on the mount:
//!
//! ```text
//! echo READY; while [ ! -e go ]; do usleep 100000; done; echo DONE
//! ```
//!
//! # Speed and concurrency
//!
//! Everything is TCG (software emulation) unless `V9FS_KVM=1` is set. On
//! this machine `/dev/kvm` exists (kvm_pvm) but cannot boot a stock kernel:
//! with `-cpu host` qemu stops at "KVM internal error ... emulation failure"
//! and the run times out. A probe that waits for such a hang costs 20 s, so
//! the runner does not probe; set `V9FS_KVM=1` where KVM works (a CI runner
//! with a usable `/dev/kvm`). That path (`-accel kvm -cpu host`) has not
//! run to completion here.
//! Under TCG a run (boot, mount, script, umount, power-off) took 2.0-2.7 s
//! on this 2-vCPU machine, /init starting at about 1.9 s of guest uptime;
//! booting the bzImage instead took 5.1-5.4 s. The first run in a target
//! directory also builds the cache, `<target>/v9fs-cache/` (0.6 s): an
//! uncompressed initramfs (3 MB; uncompressed, so the guest does not
//! decompress it either) and a 66 MB vmlinux extracted from the bzImage and
//! booted through its PVH entry.
//! At most two VMs run at once per cache directory (`V9FS_MAX_VMS`), across
//! test threads and test processes; a run's timeout starts when its VM does.
//! qemu runs under coreutils `timeout`, so it dies at its deadline even if
//! the test process is killed; it is also killed when a [`RunningVm`] drops.
//!
//! # Environment
//!
//! `V9FS_KVM=1` use KVM; `V9FS_MAX_VMS=N` concurrent VMs (default 2);
//! `V9FS_KERNEL=/boot/vmlinuz-<release>` pick a kernel; `V9FS_NO_PVH=1` boot
//! the bzImage; `V9FS_CACHE_DIR=DIR` move the cache; `V9FS_VERBOSE=1` print
//! the guest's kernel console and status lines after each run; `CI=true`
//! turns a missing piece into a test failure (see [`require_or_skip`]).
//!
//! # Layout
//!
//! This file holds the public API and runs qemu; `vm/image.rs` finds the
//! kernel, modules and busybox and builds the cached boot pieces;
//! `vm/cpio.rs` writes the initramfs format; `tests/vm/` holds the guest's
//! `/init`, `v9mount`, `v9umount`, `/etc/passwd` and `/etc/group`.
//!
//! Running as root is not required: the initramfs (including its
//! `/dev/console` node) is written without `mknod`. It is needed only where
//! the distribution makes `/boot/vmlinuz-*` root-only, or for `/dev/kvm`.

mod cpio;
mod image;

use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::sleep;
use std::time::{Duration, Instant};

use image::{Boot, Kernel};

/// The default limit for one run: generous for TCG on a busy 2-core box.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Where the guest mounts the server.
const MOUNT_POINT: &str = "/mnt";

/// Concurrent VMs per cache directory unless `V9FS_MAX_VMS` says otherwise:
/// each VM keeps one host core busy under TCG.
const DEFAULT_MAX_VMS: usize = 2;

/// How long the runner waits past a run's timeout before it kills qemu
/// itself (the `timeout` wrapper normally acts first).
const KILL_GRACE: Duration = Duration::from_secs(10);

/// How often the host looks at the guest's output and at qemu.
const POLL: Duration = Duration::from_millis(20);

/// Exit status of coreutils `timeout` when the command ran out of time
/// (124) or had to be killed after the grace period (128 + SIGKILL).
const TIMEOUT_EXPIRED: [i32; 2] = [124, 137];

/// Lines of the kernel console kept in error messages.
const CONSOLE_TAIL_LINES: usize = 40;

/// The 9P versions the Linux client accepts in `version=`.
const VERSIONS: [&str; 3] = ["9p2000", "9p2000.u", "9p2000.L"];

/// A kernel mount to run: the server's socket, mount options and limits.
/// Build it with [`KernelMount::unix`], then [`run`](Self::run) or
/// [`spawn`](Self::spawn) a script.
#[derive(Debug, Clone)]
pub struct KernelMount {
    socket: PathBuf,
    version: Option<String>,
    aname: Option<String>,
    uname: Option<String>,
    mount_opts: Vec<String>,
    automount: bool,
    timeout: Duration,
}

impl KernelMount {
    /// A mount of the 9P server listening on the unix socket `socket`.
    ///
    /// The server must be listening before the run starts: qemu connects
    /// when it starts and exits at once if nobody listens (the run is then
    /// [`VmError::NoResult`] with qemu's "Connection refused").
    pub fn unix(socket: impl AsRef<Path>) -> Self {
        Self {
            socket: socket.as_ref().to_owned(),
            version: None,
            aname: None,
            uname: None,
            mount_opts: Vec::new(),
            automount: true,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The protocol version: `9p2000`, `9p2000.u` or `9p2000.L`. Without it
    /// no `version=` is passed and the kernel picks its default (9p2000.L).
    pub fn version(mut self, version: &str) -> Self {
        self.version = Some(version.to_owned());
        self
    }

    /// The `aname=` option: the tree to attach.
    pub fn aname(mut self, aname: &str) -> Self {
        self.aname = Some(aname.to_owned());
        self
    }

    /// The `uname=` option: the user name in Tattach (kernel default `nobody`).
    pub fn uname(mut self, uname: &str) -> Self {
        self.uname = Some(uname.to_owned());
        self
    }

    /// Extra comma-separated v9fs options, e.g. `cache=none,dfltuid=1001`.
    /// Calls accumulate.
    pub fn mount_opts(mut self, opts: &str) -> Self {
        if !opts.is_empty() {
            self.mount_opts.push(opts.to_owned());
        }
        self
    }

    /// Does not mount before the script: the script calls
    /// `v9mount [MOUNTPOINT] [EXTRA_OPTS]` itself, and starts in `/`.
    pub fn no_mount(mut self) -> Self {
        self.automount = false;
        self
    }

    /// The limit for the whole run, from VM start to power-off
    /// (default [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Runs `script` and waits for the result.
    pub fn run(self, script: &str) -> Result<GuestRun, VmError> {
        self.spawn(script)?.wait()
    }

    /// Starts the VM running `script` and returns at once. Blocks first while
    /// the cache is built or while the maximum number of VMs already run.
    pub fn spawn(self, script: &str) -> Result<RunningVm, VmError> {
        let conf = self.guest_conf()?;
        let host = match host() {
            Ok(host) => host,
            Err(missing) => return Err(VmError::Setup(missing_list(missing))),
        };
        let meta = fs::metadata(&self.socket).map_err(|e| {
            VmError::Setup(format!(
                "socket {}: {e} (start the server before the VM)",
                self.socket.display()
            ))
        })?;
        if !std::os::unix::fs::FileTypeExt::is_socket(&meta.file_type()) {
            return Err(VmError::Setup(format!(
                "{} is not a unix socket",
                self.socket.display()
            )));
        }
        let accel = Accel::from_env()?;
        let boot = boot(host)?;

        let dir = tempfile::Builder::new()
            .prefix("v9fs-run.")
            .tempdir()
            .map_err(|e| VmError::io("create the run directory", e))?;
        let mut overlay = cpio::Archive::new(1_000_000);
        overlay.file("run/conf", 0o644, conf.as_bytes());
        overlay.file("run/test.sh", 0o755, script.as_bytes());
        let initrd = dir.path().join("initrd");
        fs::write(
            &initrd,
            [boot.initramfs.as_slice(), &overlay.finish()].concat(),
        )
        .map_err(|e| VmError::io(format!("write {}", initrd.display()), e))?;
        for name in ["out", "ctl", "console", "qemu"] {
            File::create(dir.path().join(name))
                .map_err(|e| VmError::io(format!("create {name} in the run directory"), e))?;
        }

        let slot = acquire_slot()?;
        let args = qemu_args(&boot, accel, &self.socket, dir.path());
        let qemu_log = File::create(dir.path().join("qemu"))
            .map_err(|e| VmError::io("create the qemu log", e))?;
        let qemu_log2 = qemu_log
            .try_clone()
            .map_err(|e| VmError::io("clone the qemu log handle", e))?;
        let started = Instant::now();
        let child = Command::new("timeout")
            .arg("--kill-after=5")
            .arg(format!("{:.3}", self.timeout.as_secs_f64()))
            .arg("qemu-system-x86_64")
            .args(&args)
            .stdin(Stdio::null())
            .stdout(qemu_log)
            .stderr(qemu_log2)
            .spawn()
            .map_err(|e| VmError::io("start qemu-system-x86_64 under timeout", e))?;
        Ok(RunningVm {
            child,
            status: None,
            killed: false,
            dir,
            started,
            timeout: self.timeout,
            accel,
            boot,
            cursor: 0,
            _slot: slot,
        })
    }

    /// The per-run `/run/conf`, sourced by the guest's `sh`. Values are
    /// single-quoted, so they may not contain quotes or newlines; the kernel
    /// splits options at commas, so `aname` and `uname` may not hold one.
    fn guest_conf(&self) -> Result<String, VmError> {
        if let Some(v) = &self.version
            && !VERSIONS.contains(&v.as_str())
        {
            return Err(VmError::Setup(format!(
                "version {v:?}: expected one of {}",
                VERSIONS.join(", ")
            )));
        }
        let mut opts = Vec::new();
        for (key, value) in [
            ("version", &self.version),
            ("aname", &self.aname),
            ("uname", &self.uname),
        ] {
            if let Some(v) = value {
                if v.contains(',') {
                    return Err(VmError::Setup(format!("{key} {v:?} contains a comma")));
                }
                opts.push(format!("{key}={v}"));
            }
        }
        opts.extend(self.mount_opts.iter().cloned());
        let opts = opts.join(",");
        if let Some(bad) = opts
            .chars()
            .find(|c| matches!(c, '\'' | '\n' | '\0' | '\\'))
        {
            return Err(VmError::Setup(format!(
                "mount options may not contain {bad:?}: {opts:?}"
            )));
        }
        Ok(format!(
            "V9FS_VERSION='{}'\nV9FS_OPTS='{opts}'\nV9FS_AUTOMOUNT='{}'\nV9FS_MNT='{MOUNT_POINT}'\n",
            self.version.as_deref().unwrap_or(""),
            u8::from(self.automount),
        ))
    }
}

/// The result of a guest script that ran to its end.
#[derive(Debug, Clone)]
pub struct GuestRun {
    /// The script's stdout and stderr, merged (lossy UTF-8).
    pub output: String,
    /// The script's exit status.
    pub exit_code: i32,
    /// The guest kernel's console (ttyS0, loglevel 4), for diagnostics.
    pub console: String,
    /// The runner's status lines from the guest: uptimes, the `/proc/mounts`
    /// line, the umount result and the guest's 9p kernel messages.
    pub status: String,
    /// Wall time from VM start to power-off.
    pub wall: Duration,
    /// The accelerator the VM ran on.
    pub accel: Accel,
}

/// The qemu accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation (`V9FS_KVM=1`).
    Kvm,
    /// Software emulation, the default.
    Tcg,
}

impl Accel {
    fn from_env() -> Result<Self, VmError> {
        if std::env::var_os("V9FS_KVM").is_none_or(|v| v != "1") {
            return Ok(Self::Tcg);
        }
        fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
            .map(|_| Self::Kvm)
            .map_err(|e| VmError::Setup(format!("V9FS_KVM=1 but /dev/kvm: {e}")))
    }
}

impl fmt::Display for Accel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Kvm => "kvm",
            Self::Tcg => "tcg",
        })
    }
}

/// A VM that runs a guest script. Dropping it kills qemu and removes the
/// run's files.
pub struct RunningVm {
    child: Child,
    /// qemu's (the `timeout` wrapper's) exit status, once reaped.
    status: Option<ExitStatus>,
    /// The runner had to kill qemu itself.
    killed: bool,
    dir: tempfile::TempDir,
    started: Instant,
    timeout: Duration,
    accel: Accel,
    boot: Arc<Boot>,
    /// Byte offset in the output after the last line matched by `wait_for_line`.
    cursor: usize,
    /// Holds one of the `V9FS_MAX_VMS` slots until the VM is gone.
    _slot: File,
}

impl fmt::Debug for RunningVm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunningVm")
            .field("pid", &self.child.id())
            .field("dir", &self.dir.path())
            .field("elapsed", &self.started.elapsed())
            .finish_non_exhaustive()
    }
}

impl RunningVm {
    /// Waits until the guest prints `line` as a complete line (exactly, without
    /// its newline), searching after the line matched by the previous call,
    /// so the same line can be awaited twice. Errors when `timeout` passes or
    /// the VM ends first; if the VM ended with an error (mount failed, no
    /// result), that error is returned.
    pub fn wait_for_line(&mut self, line: &str, timeout: Duration) -> Result<(), VmError> {
        let deadline = Instant::now() + timeout;
        loop {
            let exited = self.poll_exit()?;
            let out = self.read("out");
            if let Some(end) = find_line(&out, self.cursor, line) {
                self.cursor = end;
                return Ok(());
            }
            if exited {
                return Err(match self.outcome() {
                    Err(e) => e,
                    Ok(run) => VmError::LineNotSeen {
                        line: line.to_owned(),
                        finished: true,
                        output: run.output,
                    },
                });
            }
            if Instant::now() >= deadline {
                return Err(VmError::LineNotSeen {
                    line: line.to_owned(),
                    finished: false,
                    output: String::from_utf8_lossy(&out).into_owned(),
                });
            }
            sleep(POLL);
        }
    }

    /// The process id of qemu's `timeout` wrapper, which leads the process
    /// group qemu runs in (for tests of the runner itself).
    pub fn process_group(&self) -> u32 {
        self.child.id()
    }

    /// The guest's output so far.
    pub fn output(&self) -> String {
        String::from_utf8_lossy(&self.read("out")).into_owned()
    }

    /// Waits for the VM to power off (or for its timeout) and returns the result.
    pub fn wait(mut self) -> Result<GuestRun, VmError> {
        while !self.poll_exit()? {
            sleep(POLL);
        }
        self.outcome()
    }

    /// Reaps qemu if it has exited; kills it when it overstays its timeout.
    /// Returns whether it is gone.
    fn poll_exit(&mut self) -> Result<bool, VmError> {
        if self.status.is_some() {
            return Ok(true);
        }
        if let Some(status) = self
            .child
            .try_wait()
            .map_err(|e| VmError::io("wait for qemu", e))?
        {
            self.status = Some(status);
            return Ok(true);
        }
        if self.started.elapsed() > self.timeout + KILL_GRACE {
            self.killed = true;
            self.status = Some(self.terminate());
            return Ok(true);
        }
        Ok(false)
    }

    /// Stops qemu: SIGTERM to the `timeout` wrapper's process group (qemu is
    /// in it, since `timeout` makes its own group), then SIGKILL.
    fn terminate(&mut self) -> ExitStatus {
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            sleep(POLL);
        }
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        // After SIGKILL the wait cannot block for long; if it fails anyway,
        // report a generic failure status rather than hang or panic.
        self.child
            .wait()
            .unwrap_or_else(|_| std::os::unix::process::ExitStatusExt::from_raw(9))
    }

    fn read(&self, name: &str) -> Vec<u8> {
        fs::read(self.dir.path().join(name)).unwrap_or_default()
    }

    /// Interprets the run's files after qemu has gone.
    fn outcome(&self) -> Result<GuestRun, VmError> {
        let wall = self.started.elapsed();
        let ctl = String::from_utf8_lossy(&self.read("ctl")).into_owned();
        let console = String::from_utf8_lossy(&self.read("console")).replace('\r', "");
        let qemu = String::from_utf8_lossy(&self.read("qemu"))
            .trim()
            .to_owned();
        let output = String::from_utf8_lossy(&self.read("out")).into_owned();
        let report = CtlReport::parse(&ctl);
        if std::env::var_os("V9FS_VERBOSE").is_some_and(|v| v == "1") {
            eprintln!(
                "----- v9fs guest console -----\n{console}\n----- v9fs status -----\n{ctl}\
                 ----- qemu -----\n{qemu}\n----- {} kernel {} image {} wall {:.2}s",
                self.accel,
                self.boot.kver,
                self.boot.image.display(),
                wall.as_secs_f64()
            );
        }
        if let Some(exit_code) = report.rc {
            return Ok(GuestRun {
                output,
                exit_code,
                console,
                status: ctl,
                wall,
                accel: self.accel,
            });
        }
        if report.mount_failed {
            return Err(VmError::MountFailed {
                error: report.mount_error.join("\n"),
                dmesg: report.dmesg.join("\n"),
                console,
            });
        }
        let code = self.status.and_then(|s| s.code());
        let mut reason = if self.killed || code.is_some_and(|c| TIMEOUT_EXPIRED.contains(&c)) {
            format!("timed out after {:.0?}", self.timeout)
        } else if code == Some(0) {
            "the guest powered off without an exit status".to_owned()
        } else {
            match self.status {
                Some(s) => format!("qemu exited with {s}"),
                None => "qemu is still running".to_owned(),
            }
        };
        if let Some(why) = &self.boot.no_pvh_reason {
            reason.push_str(&format!(" [booted the bzImage: {why}]"));
        }
        Err(VmError::NoResult {
            reason,
            qemu_stderr: qemu,
            console_tail: tail(&console, CONSOLE_TAIL_LINES),
            output,
        })
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        if self.status.is_none() && !matches!(self.child.try_wait(), Ok(Some(_))) {
            self.terminate();
        }
    }
}

/// The guest's status lines (see `tests/vm/init`), digested.
#[derive(Debug, Default, PartialEq)]
struct CtlReport {
    rc: Option<i32>,
    mount_failed: bool,
    mount_error: Vec<String>,
    dmesg: Vec<String>,
}

impl CtlReport {
    fn parse(ctl: &str) -> Self {
        let mut r = Self::default();
        for line in ctl.lines() {
            let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
            match word {
                "rc" => r.rc = rest.trim().parse().ok(),
                "mount-failed" => r.mount_failed = true,
                "mount-error" => r.mount_error.push(rest.to_owned()),
                "dmesg" => r.dmesg.push(rest.to_owned()),
                _ => {}
            }
        }
        r
    }
}

/// The end offset of the first complete line equal to `line` at or after `from`.
fn find_line(out: &[u8], from: usize, line: &str) -> Option<usize> {
    let mut start = from.min(out.len());
    while let Some(nl) = out[start..].iter().position(|&b| b == b'\n') {
        let end = start + nl;
        if &out[start..end] == line.as_bytes() {
            return Some(end + 1);
        }
        start = end + 1;
    }
    None
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// qemu's `-chardev` and `-device` options separate fields with commas; a
/// literal comma in a value is written twice.
fn qemu_escape(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

fn qemu_args(boot: &Boot, accel: Accel, socket: &Path, dir: &Path) -> Vec<String> {
    let file = |name: &str| qemu_escape(&dir.join(name));
    let mut args: Vec<String> = [
        "-nodefaults",
        "-no-user-config",
        "-M",
        "q35",
        "-smp",
        "1",
        "-m",
        "256",
        "-display",
        "none",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .map(String::from)
    .to_vec();
    args.extend(
        match accel {
            Accel::Kvm => ["-accel", "kvm", "-cpu", "host"],
            Accel::Tcg => ["-accel", "tcg", "-cpu", "max"],
        }
        .map(String::from),
    );
    args.extend([
        "-kernel".into(),
        boot.image.to_string_lossy().into_owned(),
        "-initrd".into(),
        dir.join("initrd").to_string_lossy().into_owned(),
        "-append".into(),
        // panic=-1 with -no-reboot: a guest panic ends qemu at once.
        // i8042.*: no PS/2 probing, which costs time under TCG.
        "console=ttyS0 loglevel=4 panic=-1 rdinit=/init i8042.noaux i8042.nokbd tsc=reliable"
            .into(),
        "-chardev".into(),
        format!("file,id=console,path={}", file("console")),
        "-serial".into(),
        "chardev:console".into(),
        "-device".into(),
        "virtio-serial-pci,id=vser".into(),
        "-chardev".into(),
        format!("socket,id=v9fs,path={}", qemu_escape(socket)),
        "-device".into(),
        "virtserialport,bus=vser.0,chardev=v9fs,name=v9fs".into(),
        "-chardev".into(),
        format!("file,id=v9out,path={}", file("out")),
        "-device".into(),
        "virtserialport,bus=vser.0,chardev=v9out,name=v9out".into(),
        "-chardev".into(),
        format!("file,id=v9ctl,path={}", file("ctl")),
        "-device".into(),
        "virtserialport,bus=vser.0,chardev=v9ctl,name=v9ctl".into(),
    ]);
    args
}

/// Takes one of the machine-wide VM slots: an exclusive lock on one of
/// `slot-<n>.lock` in the cache directory. flock locks belong to the open
/// file, so they separate threads of one process as well as processes, and
/// the kernel releases them if the process dies.
fn acquire_slot() -> Result<File, VmError> {
    let max = std::env::var("V9FS_MAX_VMS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_MAX_VMS);
    let cache = image::cache_dir();
    fs::create_dir_all(&cache)
        .map_err(|e| VmError::io(format!("create {}", cache.display()), e))?;
    loop {
        for n in 0..max {
            let path = cache.join(format!("slot-{n}.lock"));
            let f = File::create(&path)
                .map_err(|e| VmError::io(format!("open {}", path.display()), e))?;
            match f.try_lock() {
                Ok(()) => return Ok(f),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => {
                    return Err(VmError::io(format!("lock {}", path.display()), e));
                }
            }
        }
        sleep(Duration::from_millis(100));
    }
}

/// The machine's pieces, looked up once per process.
struct Host {
    kernel: Kernel,
    busybox: PathBuf,
}

fn host() -> Result<&'static Host, &'static [Missing]> {
    static HOST: OnceLock<Result<Host, Vec<Missing>>> = OnceLock::new();
    HOST.get_or_init(|| {
        let mut missing = Vec::new();
        for (program, package) in [
            ("qemu-system-x86_64", "qemu-system-x86"),
            ("timeout", "coreutils"),
        ] {
            if find_program(program).is_none() {
                missing.push(Missing::Program {
                    name: program.into(),
                    package: package.into(),
                });
            }
        }
        let busybox = image::find_busybox().map_err(|m| missing.push(m)).ok();
        let kernel = image::find_kernel().map_err(|m| missing.push(m)).ok();
        match (kernel, busybox) {
            (Some(kernel), Some(busybox)) if missing.is_empty() => Ok(Host { kernel, busybox }),
            _ => Err(missing),
        }
    })
    .as_ref()
    .map_err(Vec::as_slice)
}

/// The boot pieces, prepared once per process (and cached on disk across processes).
fn boot(host: &Host) -> Result<Arc<Boot>, VmError> {
    static BOOT: Mutex<Option<Arc<Boot>>> = Mutex::new(None);
    // A panic while holding this lock can only come from a bug in prepare;
    // the Option is still consistent, so keep using it.
    let mut slot = BOOT.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(boot) = &*slot {
        return Ok(Arc::clone(boot));
    }
    let boot = Arc::new(image::prepare(
        &image::cache_dir(),
        &host.kernel,
        &host.busybox,
    )?);
    *slot = Some(Arc::clone(&boot));
    Ok(boot)
}

/// Looks a program up in `$PATH`.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            fs::metadata(p).is_ok_and(|m| {
                m.is_file()
                    && std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o111 != 0
            })
        })
}

/// Whether this machine can run kernel-mount tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// Every piece is there.
    Ready,
    /// These pieces are missing.
    Missing(Vec<Missing>),
}

/// A piece the runner needs and did not find.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missing {
    /// No statically linked busybox.
    Busybox(String),
    /// No usable kernel image.
    Kernel(String),
    /// The kernel's 9p or virtio modules are missing.
    Modules(String),
    /// A program is not in `$PATH`.
    Program {
        /// The program's name.
        name: String,
        /// The Debian package that provides it.
        package: String,
    },
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Busybox(why) => {
                write!(f, "static busybox: {why} (apt-get install busybox-static)")
            }
            Self::Kernel(why) => {
                write!(f, "kernel image: {why} (apt-get install linux-image-amd64)")
            }
            Self::Modules(why) => {
                write!(
                    f,
                    "kernel modules: {why} (apt-get install linux-image-amd64)"
                )
            }
            Self::Program { name, package } => {
                write!(f, "{name} is not in PATH (apt-get install {package})")
            }
        }
    }
}

fn missing_list(missing: &[Missing]) -> String {
    missing
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Checks whether kernel-mount tests can run here: qemu, coreutils `timeout`,
/// a static busybox, a kernel image and its 9p/virtio modules.
pub fn availability() -> Availability {
    match host() {
        Ok(_) => Availability::Ready,
        Err(missing) => Availability::Missing(missing.to_vec()),
    }
}

/// Returns true if kernel-mount tests can run. Otherwise, when the
/// environment has `CI=true` it panics (a missing piece fails CI), and
/// elsewhere it prints why `test_name` is skipped and returns false.
pub fn require_or_skip(test_name: &str) -> bool {
    match availability() {
        Availability::Ready => true,
        Availability::Missing(missing) => skip_or_fail(test_name, &missing),
    }
}

/// Like [`require_or_skip`] for a program a test needs besides the VM, e.g.
/// `require_program_or_skip("smoke", "diod", "diod")`.
pub fn require_program_or_skip(test_name: &str, program: &str, package: &str) -> bool {
    if find_program(program).is_some() {
        return true;
    }
    skip_or_fail(
        test_name,
        &[Missing::Program {
            name: program.into(),
            package: package.into(),
        }],
    )
}

fn skip_or_fail(test_name: &str, missing: &[Missing]) -> bool {
    let what = missing_list(missing);
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{test_name}: cannot run under CI=true: {what}");
    }
    eprintln!("skipping {test_name}: {what}");
    false
}

/// Why a kernel-mount run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// A host-side operation of the runner failed (cache, run directory, spawning qemu).
    #[error("kernel-mount runner: {context}: {source}")]
    Io {
        /// What the runner was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The guest did not print the awaited line in time, or finished without it.
    #[error("guest did not print the line {line:?} ({}); output so far:\n{output}",
        if *finished { "it finished" } else { "wait timed out" })]
    LineNotSeen {
        /// The awaited line.
        line: String,
        /// Whether the guest script had already finished.
        finished: bool,
        /// The guest's output.
        output: String,
    },
    /// The guest could not mount the 9P server.
    #[error("guest mount failed: {error}\nguest 9p kernel messages:\n{dmesg}")]
    MountFailed {
        /// mount's error message.
        error: String,
        /// The guest's kernel messages about 9p (or the last ones, if none).
        dmesg: String,
        /// The guest kernel's console.
        console: String,
    },
    /// The VM gave no exit status: a timeout, a guest crash, or qemu failed
    /// (e.g. it could not connect to the server's socket).
    #[error(
        "no result from the guest: {reason}\nqemu: {qemu_stderr}\nguest output:\n{output}\nconsole tail:\n{console_tail}"
    )]
    NoResult {
        /// What happened, as far as the host can tell.
        reason: String,
        /// qemu's stderr.
        qemu_stderr: String,
        /// The last lines of the guest kernel's console.
        console_tail: String,
        /// The guest script's output so far.
        output: String,
    },
    /// The runner cannot work here (a missing piece) or was given invalid options.
    #[error("kernel-mount runner: {0}")]
    Setup(String),
}

impl VmError {
    fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "a test fails by panicking")]
mod tests {
    use super::*;

    #[test]
    fn lines_are_matched_whole_and_in_order() {
        let out = b"xREADY\nREADY\nmid\nREADY\npartial READY";
        let first = find_line(out, 0, "READY").unwrap();
        assert_eq!(first, 13);
        let second = find_line(out, first, "READY").unwrap();
        assert_eq!(second, 23);
        assert_eq!(
            find_line(out, second, "READY"),
            None,
            "an unterminated line is not complete"
        );
        assert_eq!(find_line(out, 0, "mid"), Some(17));
        assert_eq!(find_line(out, 1000, "mid"), None);
        assert_eq!(find_line(b"\n", 0, ""), Some(1));
    }

    #[test]
    fn status_lines_are_digested() {
        let ok = CtlReport::parse(
            "init uptime=2.4\nopts trans=fd\nmounted x\nbegin\nrc 3\numount rc=0\ndmesg 9pnet: x\nend\n",
        );
        assert_eq!(ok.rc, Some(3));
        assert!(!ok.mount_failed);
        assert_eq!(ok.dmesg, ["9pnet: x"]);
        let failed = CtlReport::parse(
            "init\nmount-error mount: mounting v9fs on /mnt failed: Bad address\ndmesg a\ndmesg b\nmount-failed\n",
        );
        assert_eq!(failed.rc, None);
        assert!(failed.mount_failed);
        assert_eq!(
            failed.mount_error,
            ["mount: mounting v9fs on /mnt failed: Bad address"]
        );
        assert_eq!(failed.dmesg, ["a", "b"]);
        assert_eq!(CtlReport::parse("init\nbegin\n"), CtlReport::default());
    }

    #[test]
    fn options_are_assembled_and_validated() {
        let conf = KernelMount::unix("/s")
            .version("9p2000.L")
            .aname("/srv/export dir")
            .uname("web")
            .mount_opts("cache=none")
            .mount_opts("dfltuid=1001")
            .guest_conf()
            .unwrap();
        assert!(conf.contains("V9FS_OPTS='version=9p2000.L,aname=/srv/export dir,uname=web,cache=none,dfltuid=1001'\n"), "{conf}");
        assert!(conf.contains("V9FS_AUTOMOUNT='1'"));
        let default = KernelMount::unix("/s").no_mount().guest_conf().unwrap();
        assert!(
            default.contains("V9FS_OPTS=''\n") && default.contains("V9FS_VERSION=''\n"),
            "{default}"
        );
        assert!(default.contains("V9FS_AUTOMOUNT='0'"));
        for bad in [
            KernelMount::unix("/s").version("9P2000"),
            KernelMount::unix("/s").aname("a,b"),
            KernelMount::unix("/s").uname("it's"),
            KernelMount::unix("/s").mount_opts("x\ny"),
        ] {
            assert!(
                matches!(bad.guest_conf(), Err(VmError::Setup(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn qemu_option_values_escape_commas() {
        assert_eq!(qemu_escape(Path::new("/tmp/a,b/s")), "/tmp/a,,b/s");
        let boot = Boot {
            kver: "k".into(),
            image: "/boot/vmlinux".into(),
            no_pvh_reason: None,
            initramfs: vec![],
        };
        let args = qemu_args(&boot, Accel::Tcg, Path::new("/x,y.sock"), Path::new("/run"));
        assert!(args.contains(&"socket,id=v9fs,path=/x,,y.sock".to_owned()));
        assert!(args.contains(&"tcg".to_owned()));
    }

    #[test]
    fn a_missing_socket_is_a_setup_error() {
        if !matches!(availability(), Availability::Ready) {
            return;
        }
        let err = KernelMount::unix("/nonexistent/v9fs.sock")
            .run("true")
            .unwrap_err();
        assert!(
            matches!(&err, VmError::Setup(m) if m.contains("start the server")),
            "{err}"
        );
    }
}
