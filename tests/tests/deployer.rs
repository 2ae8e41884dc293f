//! The deployer (issue 8), on this host's FUSE: `deploy mount` and `deploy service run`,
//! the real binaries against the real server.
//!
//! Needs root (setpriv, mounts, namespaces), /dev/fuse, fusermount3 and /usr/bin/python3
//! with its mmap module; without them each test says what is missing and skips, and under
//! CI=true fails.
//!
//! The server is a debug build here: every Tread of a 300 KiB secret decrypts it in
//! unoptimized generic AES-GCM code, ~70 ms. So the reads of the big secret are few and
//! large; the block sizes still cover reads smaller than, equal to and larger than the 9P
//! iounit, at offsets that are not multiples of anything.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{
    SecretsServer, as_uid, bins, can_switch_uid, run_with_stdin, stderr, stdout,
};

/// The service (a uid with no passwd entry: the gid is the same number).
const WEB: u32 = 1001;
/// Another local uid, which must not read web's files.
const STRANGER: u32 = 1003;
/// A service that mounts its own view: fusermount3 needs a passwd entry for the uid that
/// runs it, and `nobody` has one everywhere.
const NOBODY: u32 = 65534;
const PYTHON: &str = "/usr/bin/python3";
const PASSWORD: &[u8] = b"hunter2";

fn ready(test: &str) -> bool {
    let python_mmap = Command::new(PYTHON)
        .args(["-c", "import mmap"])
        .output()
        .is_ok_and(|o| o.status.success());
    let fusermount = Command::new("fusermount3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    for (what, present) in [
        ("root and setpriv", can_switch_uid()),
        ("/dev/fuse", Path::new("/dev/fuse").exists()),
        ("fusermount3 (apt-get install fuse3)", fusermount),
        (
            "/usr/bin/python3 with mmap (apt-get install python3)",
            python_mmap,
        ),
    ] {
        if !present {
            assert!(std::env::var("CI").is_err(), "{test}: needs {what}");
            eprintln!("skipping {test}: needs {what}");
            return false;
        }
    }
    true
}

/// 300 KiB of bytes that are not all alike (and no file anyone reads on this host).
fn big_value() -> Vec<u8> {
    let mut x: u32 = 0x9e37_79b9;
    (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A server with service web (uid 1001): `db` and the 300 KiB `big` granted, a config.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service(
        "web",
        WEB,
        Some("secret db\nsecret big\nconfig log_level=debug\n"),
    );
    assert!(
        s.deploy_with_stdin(&["secret", "set", "db"], PASSWORD)
            .status
            .success()
    );
    let big = s.root.path().join("big.value");
    std::fs::write(&big, big_value()).unwrap();
    s.deploy_ok(&["secret", "set", "big", "--file", big.to_str().unwrap()]);
    std::fs::remove_file(&big).unwrap();
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "web", "big"]);
    s
}

fn mounted(dir: &Path) -> bool {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = dir.to_str().unwrap();
    mounts.lines().any(|l| l.split(' ').nth(1) == Some(dir))
}

/// The /proc/self/mounts line of `dir`.
fn mount_line(dir: &Path) -> String {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let dir = dir.to_str().unwrap();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(dir))
        .unwrap_or_else(|| panic!("{dir} is not mounted: {mounts}"))
        .to_string()
}

/// `deploy mount SERVICE DIR --foreground`, as root or as `uid`, once it says it mounted.
struct Mount {
    child: Child,
    dir: PathBuf,
}

impl Mount {
    fn start(s: &SecretsServer, service: &str, dir: &Path, uid: Option<u32>) -> Mount {
        let mut cmd = match uid {
            Some(uid) => as_uid(uid, &bins().deploy),
            None => Command::new(&bins().deploy),
        };
        cmd.arg("--addr")
            .arg(s.addr())
            .args(["mount", service])
            .arg(dir)
            .arg("--foreground")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        if !line.starts_with("mounted ") {
            let out = child.wait_with_output().unwrap();
            panic!("deploy mount: {line}{}", stderr(&out));
        }
        assert!(mounted(dir), "{line}");
        Mount {
            child,
            dir: dir.to_path_buf(),
        }
    }

    fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).unwrap()
    }

    /// Waits for the serving deploy to exit; its status and stderr.
    fn wait(mut self) -> (std::process::ExitStatus, String) {
        let status = wait_timeout(&mut self.child, Duration::from_secs(20));
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = rustix::process::kill_process(self.pid(), rustix::process::Signal::TERM);
            let _ = self.child.wait();
        }
        if mounted(&self.dir) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

fn wait_timeout(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory inside the server's (world-traversable) temp dir, owned by `uid`.
fn mount_dir(s: &SecretsServer, name: &str, uid: u32) -> PathBuf {
    let dir = s.root.path().join(name);
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(uid), Some(uid)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn run_as(uid: u32, program: &str, args: &[&str]) -> Output {
    let mut cmd = as_uid(uid, Path::new(program));
    cmd.args(args);
    run_with_stdin(cmd, b"")
}

fn sh(script: &str) -> Output {
    run_with_stdin(
        {
            let mut c = Command::new("sh");
            c.args(["-c", script]);
            c
        },
        b"",
    )
}

#[test]
fn root_mounts_a_view_for_its_service_uncached_and_for_it_alone() {
    if !ready("root_mounts_a_view_for_its_service_uncached_and_for_it_alone") {
        return;
    }
    let s = server();
    let dir = mount_dir(&s, "web", 0);
    let m = Mount::start(&s, "web", &dir, None);
    let line = mount_line(&dir);
    for option in [
        "ro",
        "nosuid",
        "nodev",
        "default_permissions",
        "allow_other",
    ] {
        assert!(line.split([' ', ',']).any(|o| o == option), "{line}");
    }
    let db = dir.join("secret/db");
    let meta = std::fs::metadata(&db).unwrap();
    assert_eq!(
        (meta.mode() & 0o7777, meta.uid(), meta.gid(), meta.len()),
        (0o400, WEB, WEB, 7)
    );
    let dir_meta = std::fs::metadata(dir.join("secret")).unwrap();
    assert_eq!((dir_meta.mode() & 0o7777, dir_meta.uid()), (0o500, WEB));

    // The service reads its secret and config; a third uid is refused by the kernel.
    let out = run_as(WEB, "/bin/cat", &[db.to_str().unwrap()]);
    assert_eq!(out.stdout, PASSWORD, "{}", stderr(&out));
    let log_level = dir.join("config/log_level");
    let out = run_as(WEB, "/bin/cat", &[log_level.to_str().unwrap()]);
    assert_eq!(stdout(&out), "debug");
    for path in [&db, &dir.join("secret")] {
        let out = run_as(STRANGER, "/bin/ls", &[path.to_str().unwrap()]);
        assert!(!out.status.success());
        assert!(
            stderr(&out).contains("Permission denied"),
            "{}",
            stderr(&out)
        );
    }
    let out = run_as(STRANGER, "/bin/cat", &[db.to_str().unwrap()]);
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());

    // A revoke fails the next read of a file held open, and the next open.
    let held = std::fs::File::open(&db).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 7);
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    let e = held.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    let e = std::fs::File::open(&db).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
    drop(held);

    // A new version: a file open before keeps its version, the next open sees the new one.
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    let before = std::fs::File::open(&db).unwrap();
    let out = s.deploy_with_stdin(&["secret", "set", "db"], b"correct horse");
    assert!(out.status.success());
    assert_eq!(std::fs::read(&db).unwrap(), b"correct horse");
    let n = before.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf[..n], PASSWORD);
    drop(before);

    // The 300 KiB secret: tar, dd at many block sizes and offsets, du.
    let big = dir.join("secret/big");
    let want = big_value();
    let meta = std::fs::metadata(&big).unwrap();
    assert_eq!((meta.len(), meta.blocks()), (300 * 1024, 600));
    let out = sh(&format!("du -k '{}'", big.display()));
    assert_eq!(stdout(&out), format!("300\t{}\n", big.display()));
    let tarball = s.root.path().join("view.tar");
    let out = sh(&format!(
        "tar -C '{}' -cf '{}' secret",
        dir.display(),
        tarball.display()
    ));
    assert!(out.status.success(), "tar: {}", stderr(&out));
    assert!(stderr(&out).is_empty(), "tar: {}", stderr(&out));
    let untar = s.root.path().join("untar");
    std::fs::create_dir(&untar).unwrap();
    let out = sh(&format!(
        "tar -C '{}' -xf '{}'",
        untar.display(),
        tarball.display()
    ));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(untar.join("secret/big")).unwrap(), want);
    assert_eq!(
        std::fs::read(untar.join("secret/db")).unwrap(),
        b"correct horse"
    );
    for (bs, skip, count) in [
        (10_000, 0, 31),
        (65_536, 0, 5),
        (131_072, 0, 3),
        (1_048_576, 0, 1),
        (4096, 7, 3),
        (7_777, 13, 2),
        (1, 300 * 1024 - 5, 10),
        (200_000, 1, 1),
    ] {
        let out = sh(&format!(
            "dd if='{}' bs={bs} skip={skip} count={count} status=none",
            big.display()
        ));
        assert!(out.status.success(), "dd bs={bs}: {}", stderr(&out));
        let start = (bs * skip).min(want.len());
        let end = (bs * (skip + count)).min(want.len());
        assert_eq!(out.stdout, want[start..end], "dd bs={bs} skip={skip}");
    }

    // mmap: shared is refused by the kernel (direct I/O), private cannot read a page.
    let shared = Command::new(PYTHON)
        .args([
            "-c",
            "import mmap, os, sys\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\n\
             try:\n    mmap.mmap(fd, 0, access=mmap.ACCESS_READ)\n    print('mapped')\n\
             except OSError as e:\n    print(e.errno, e.strerror)",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(stdout(&shared).trim(), "19 No such device", "{shared:?}");
    let private = Command::new(PYTHON)
        .args([
            "-c",
            "import mmap, os, sys\n\
             fd = os.open(sys.argv[1], os.O_RDONLY)\n\
             m = mmap.mmap(fd, 0, access=mmap.ACCESS_COPY)\n\
             print('mapped', flush=True)\n\
             print(m[:3])",
        ])
        .arg(&db)
        .output()
        .unwrap();
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            stdout(&private),
            "mapped\n",
            "no byte read through the mapping"
        );
        assert_eq!(private.status.signal(), Some(7), "SIGBUS: {private:?}");
    }

    // fusermount3 -u ends the serving deploy, which leaves nothing mounted.
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let (status, err) = m.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("was unmounted"), "{err}");
    assert!(!mounted(&dir));
    assert!(!s.log_text().contains("hunter2") && !s.log_text().contains("correct horse"));
}

#[test]
fn a_service_mounts_its_own_view_for_itself_and_sigterm_unmounts() {
    if !ready("a_service_mounts_its_own_view_for_itself_and_sigterm_unmounts") {
        return;
    }
    let s = server();
    s.add_service("self", NOBODY, Some("secret db\n"));
    s.deploy_ok(&["secret", "grant", "self", "db"]);
    let dir = mount_dir(&s, "self", NOBODY);
    // Not another service's view.
    let mut cmd = as_uid(NOBODY, &bins().deploy);
    cmd.arg("--addr")
        .arg(s.addr())
        .args(["mount", "web"])
        .arg(&dir)
        .arg("--foreground");
    let out = run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is service self: it may mount only its own view"),
        "{}",
        stderr(&out)
    );
    assert!(!mounted(&dir));

    let m = Mount::start(&s, "self", &dir, Some(NOBODY));
    let line = mount_line(&dir);
    assert!(!line.contains("allow_other"), "{line}");
    let db = dir.join("secret/db");
    let out = run_as(NOBODY, "/bin/cat", &[db.to_str().unwrap()]);
    assert_eq!(out.stdout, PASSWORD, "{}", stderr(&out));
    let meta = run_as(
        NOBODY,
        "/usr/bin/stat",
        &["-c", "%a %u", db.to_str().unwrap()],
    );
    assert_eq!(stdout(&meta), format!("400 {NOBODY}\n"));
    // Without allow_other, FUSE serves only the uid that mounted: not even root.
    let e = std::fs::read(&db).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::PermissionDenied, "{e}");

    rustix::process::kill_process(m.pid(), rustix::process::Signal::TERM).unwrap();
    let (status, err) = m.wait();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!mounted(&dir), "SIGTERM left {dir:?} mounted");
}

#[test]
fn without_foreground_mount_returns_once_mounted_and_the_server_dying_fails_reads_at_once() {
    if !ready(
        "without_foreground_mount_returns_once_mounted_and_the_server_dying_fails_reads_at_once",
    ) {
        return;
    }
    let mut s = server();
    let dir = mount_dir(&s, "web", 0);
    let out = s.deploy(&["mount", "web", dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!("mounted web's view at {}\n", dir.display())
    );
    assert!(stderr(&out).contains("unmount with `fusermount3 -u"));
    assert!(mounted(&dir));
    let db = dir.join("secret/db");
    let held = std::fs::File::open(&db).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(held.read_at(&mut buf, 0).unwrap(), 7);

    s.kill9();
    let started = Instant::now();
    let e = held.read_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    let e = std::fs::read(&db).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    let e = std::fs::read_dir(dir.join("secret")).unwrap_err();
    assert_eq!(e.kind(), std::io::ErrorKind::NotConnected, "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "failing took {:?}",
        started.elapsed()
    );
    drop(held);
    let out = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!mounted(&dir));
    // The serving deploy noticed and is gone: nothing is left of the mount.
    let deadline = Instant::now() + Duration::from_secs(10);
    let serving = || {
        let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
        stdout(&ps).lines().any(|l| {
            l.contains(" mount web ")
                && l.contains(dir.to_str().unwrap())
                && l.contains("--foreground")
        })
    };
    while serving() {
        assert!(Instant::now() < deadline, "the serving deploy still runs");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// /secret and /config exist while any test that runs a service needs them, and are
/// removed after if the tests made them. Each run mounts in a namespace of its own, so
/// the tests can share them.
struct MountPoints;

static MOUNT_POINTS: Mutex<(usize, bool)> = Mutex::new((0, false));

impl MountPoints {
    fn hold() -> MountPoints {
        let mut state = MOUNT_POINTS.lock().unwrap_or_else(|p| p.into_inner());
        if state.0 == 0 {
            let mut made = false;
            for dir in ["/secret", "/config"] {
                if !Path::new(dir).exists() {
                    std::fs::create_dir(dir).unwrap();
                    made = true;
                }
            }
            state.1 = made;
        }
        state.0 += 1;
        MountPoints
    }
}

impl Drop for MountPoints {
    fn drop(&mut self) {
        let mut state = MOUNT_POINTS.lock().unwrap_or_else(|p| p.into_inner());
        state.0 -= 1;
        if state.0 == 0 && state.1 {
            for dir in ["/secret", "/config"] {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

/// Nothing of the runs shows on the host: no mount at /secret or /config, both empty.
fn host_untouched() {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    for dir in ["/secret", "/config"] {
        assert!(
            !info.lines().any(|l| l.split(' ').nth(4) == Some(dir)),
            "{dir} is mounted on the host: {info}"
        );
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 0, "{dir}");
    }
}

/// `deploy --addr ADDR service run ARGS...` with only PATH and one more variable in its
/// environment.
fn service_run(s: &SecretsServer, args: &[&str]) -> Command {
    let mut cmd = Command::new(&bins().deploy);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("ONLY_THIS", "1")
        .arg("--addr")
        .arg(s.addr())
        .args(["service", "run"])
        .args(args);
    cmd
}

#[test]
fn run_refuses_a_service_lacking_a_grant_and_starts_nothing() {
    if !ready("run_refuses_a_service_lacking_a_grant_and_starts_nothing") {
        return;
    }
    let _points = MountPoints::hold();
    let s = server();
    s.deploy_ok(&["secret", "revoke", "web", "big"]);
    let marker = s.root.path().join("started");
    let out = run_with_stdin(
        service_run(
            &s,
            &["web", "--", "/usr/bin/touch", marker.to_str().unwrap()],
        ),
        b"",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(!marker.exists(), "the command ran");
    let err = stderr(&out);
    assert!(
        err.contains("web is not granted 1 of the 2 secrets its manifest needs"),
        "{err}"
    );
    assert!(err.contains("  deploy secret grant web big\n"), "{err}");
    assert!(!err.contains("grant web db"), "{err}");
    // The kernel path on a kernel without 9p: a clear error, nothing started.
    s.deploy_ok(&["secret", "grant", "web", "big"]);
    let has_9p = std::fs::read_to_string("/proc/filesystems")
        .unwrap()
        .lines()
        .any(|l| l.trim_start_matches("nodev").trim() == "9p");
    if !has_9p {
        let out = run_with_stdin(
            service_run(
                &s,
                &[
                    "web",
                    "--mount",
                    "kernel",
                    "--",
                    "/usr/bin/touch",
                    marker.to_str().unwrap(),
                ],
            ),
            b"",
        );
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(!marker.exists(), "the command ran");
        assert!(
            stderr(&out).contains("this kernel has no 9p filesystem: use --mount fuse"),
            "{}",
            stderr(&out)
        );
    }
    host_untouched();
}

#[test]
fn run_gives_the_command_the_view_as_the_service_and_passes_its_status_on() {
    if !ready("run_gives_the_command_the_view_as_the_service_and_passes_its_status_on") {
        return;
    }
    let _points = MountPoints::hold();
    let s = server();
    let script = "echo uid=$(id -u) gid=$(id -g) groups=$(id -G); \
                  echo db=$(cat /secret/db); echo log_level=$(cat /config/log_level); \
                  echo ls=$(ls /secret | tr '\\n' ' '); \
                  echo $(grep NoNewPrivs /proc/self/status); \
                  echo mounts=$(grep -cE ' /(secret|config) ' /proc/self/mountinfo); \
                  (echo x > /secret/db) 2>/dev/null && echo WROTE; \
                  echo environment:; env | sort; exit 7";
    let out = run_with_stdin(service_run(&s, &["web", "--", "sh", "-c", script]), b"");
    let (o, e) = (stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(7), "{o}{e}");
    assert!(
        e.contains("mounted web's view with deploy's FUSE client"),
        "auto says which: {e}"
    );
    assert!(
        o.contains(&format!("uid={WEB} gid={WEB} groups={WEB}\n")),
        "{o}"
    );
    assert!(o.contains("db=hunter2\n"), "{o}");
    assert!(o.contains("log_level=debug\n"), "{o}");
    assert!(o.contains("ls=big db\n"), "{o}");
    assert!(o.contains("NoNewPrivs: 1\n"), "{o}");
    assert!(o.contains("mounts=2\n"), "{o}");
    assert!(!o.contains("WROTE"), "{o}");
    // Exactly deploy's environment (PWD, SHLVL and _ are the shell's own), nothing added.
    let env: Vec<&str> = o
        .split("environment:\n")
        .nth(1)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with("PWD=") && !l.starts_with("SHLVL=") && !l.starts_with("_="))
        .collect();
    assert_eq!(
        env,
        ["ONLY_THIS=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"],
        "{o}"
    );
    host_untouched();
    // --mount fuse, and a command that cannot be run.
    let out = run_with_stdin(
        service_run(&s, &["web", "--mount", "fuse", "--", "/no/such/program"]),
        b"",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot run /no/such/program as uid 1001"),
        "{}",
        stderr(&out)
    );
    host_untouched();
}

#[test]
fn run_passes_sigterm_on_and_unmounts_when_the_command_ends() {
    if !ready("run_passes_sigterm_on_and_unmounts_when_the_command_ends") {
        return;
    }
    let _points = MountPoints::hold();
    let s = server();
    for (script, want) in [
        // A command that handles SIGTERM: its own status comes back.
        (
            "trap 'echo got-term; exit 3' TERM; echo ready; while :; do sleep 0.1; done",
            Some(3),
        ),
        // One that dies of it: 128 + 15.
        ("echo ready; exec sleep 60", Some(143)),
    ] {
        let mut child = service_run(&s, &["web", "--", "sh", "-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = wait_timeout(&mut child, Duration::from_secs(20));
        let mut rest = String::new();
        reader.read_to_string(&mut rest).unwrap();
        assert_eq!(status.code(), want, "{script}: {rest}");
        if want == Some(3) {
            assert_eq!(rest, "got-term\n");
        }
    }
    host_untouched();
}
