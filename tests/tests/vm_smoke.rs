//! Proof that the kernel-mount runner works, against a known-good 9P server:
//! diod (9P2000.L only) serving a temp directory on a unix socket.
//!
//! Each test skips with a message when qemu, the kernel, busybox or diod is
//! missing, and fails instead under `CI=true`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::vm::{self, KernelMount, VmError};

/// A diod serving `<tmp>/export` on `<tmp>/diod.sock`; killed on drop.
struct Diod {
    child: Child,
    dir: tempfile::TempDir,
}

impl Diod {
    /// Starts diod and waits for its socket. Returns None (after printing why)
    /// when the test should be skipped.
    fn start(test: &str) -> Option<Self> {
        if !vm::require_or_skip(test) || !vm::require_program_or_skip(test, "diod", "diod") {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        // The mount-time attach user is "nobody" (the default uname): the
        // export's parents must be traversable by it, and tempdir is 0700.
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let export = dir.path().join("export");
        fs::create_dir(&export).unwrap();
        fs::write(export.join("hello.txt"), "hello from the host\n").unwrap();
        let sock = dir.path().join("diod.sock");
        let child = Command::new("diod")
            .arg("-f") // foreground
            .arg("-n") // no authentication
            .arg("-l")
            .arg(&sock)
            .arg("-e")
            .arg(&export)
            .arg("-L")
            .arg(dir.path().join("diod.log"))
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sock.exists() {
            assert!(
                Instant::now() < deadline,
                "diod did not create {}",
                sock.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Self { child, dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("diod.sock")
    }

    fn export(&self) -> PathBuf {
        self.dir.path().join("export")
    }

    /// A mount of the export: diod wants the export path as the aname.
    fn mount(&self) -> KernelMount {
        KernelMount::unix(self.socket()).aname(self.export().to_str().unwrap())
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("diod.log")).unwrap_or_default()
    }
}

impl Drop for Diod {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn report(test: &str, run: &vm::GuestRun) {
    eprintln!(
        "{test}: wall {:.2}s accel {}",
        run.wall.as_secs_f64(),
        run.accel
    );
}

#[test]
fn diod_mount_ls_cat_write_stat_and_exit_status() {
    let Some(diod) = Diod::start("diod_mount_ls_cat_write_stat_and_exit_status") else {
        return;
    };
    let run = diod
        .mount()
        .version("9p2000.L")
        .run("echo \"cwd=$(pwd) version=$V9FS_VERSION\"; ls -la; cat hello.txt; echo hi > new; stat new; exit 3")
        .unwrap_or_else(|e| panic!("{e}\ndiod log:\n{}", diod.log()));
    report("ls/cat/write/stat", &run);
    assert_eq!(run.exit_code, 3, "output:\n{}", run.output);
    assert!(
        run.output.starts_with("cwd=/mnt version=9p2000.L\n"),
        "{}",
        run.output
    );
    assert!(
        run.output.contains("hello.txt"),
        "ls output missing:\n{}",
        run.output
    );
    assert!(
        run.output.contains("hello from the host\n"),
        "cat output missing:\n{}",
        run.output
    );
    assert!(
        run.output.contains("File: new"),
        "stat output missing:\n{}",
        run.output
    );
    assert!(
        run.output.contains("Size: 3"),
        "stat size wrong:\n{}",
        run.output
    );
    assert_eq!(
        fs::read_to_string(diod.export().join("new")).unwrap(),
        "hi\n"
    );
    assert!(run.status.contains("mounted "), "{}", run.status);
    assert!(run.status.contains("version=9p2000.L"), "{}", run.status);
}

#[test]
fn a_refused_version_is_reported_as_a_mount_failure() {
    let Some(diod) = Diod::start("a_refused_version_is_reported_as_a_mount_failure") else {
        return;
    };
    // diod speaks only 9P2000.L: the kernel's Tversion "9P2000" gets an error.
    let err = diod
        .mount()
        .version("9p2000")
        .run("echo must not run")
        .expect_err("a 9p2000 mount against diod must fail");
    match &err {
        VmError::MountFailed { error, .. } => {
            assert!(error.contains("mount"), "{err}");
        }
        other => panic!("expected MountFailed, got: {other}"),
    }
    eprintln!("refused version: {err}");
}

#[test]
fn the_script_can_mount_by_itself() {
    let Some(diod) = Diod::start("the_script_can_mount_by_itself") else {
        return;
    };
    // The first mount is refused (wrong version), the second works: v9mount
    // can retry after a failure, and takes extra options.
    let run = diod
        .mount()
        .no_mount()
        .run(
            r#"pwd
grep -c ' 9p ' /proc/mounts
v9mount /mnt version=9p2000 2>/dev/null; echo "first=$?"
v9mount /mnt version=9p2000.L; echo "second=$?"
v9mount /mnt; echo "third=$?"
cd "$V9FS_MNT" && cat hello.txt
grep ' /mnt 9p ' /proc/mounts | cut -d' ' -f3
su web -c 'id -u; echo web > /tmp/w; stat -c %u /tmp/w'
su api -c id"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    report("no_mount", &run);
    assert_eq!(run.exit_code, 0, "{}", run.output);
    let lines: Vec<&str> = run.output.lines().collect();
    assert_eq!(lines[0], "/");
    assert_eq!(lines[1], "0");
    assert!(
        lines[2].starts_with("first=") && lines[2] != "first=0",
        "{}",
        run.output
    );
    assert_eq!(lines[3], "second=0", "{}", run.output);
    assert!(
        run.output.contains("v9mount: already mounted"),
        "{}",
        run.output
    );
    assert!(lines.contains(&"third=1"), "{}", run.output);
    assert!(lines.contains(&"hello from the host"), "{}", run.output);
    assert!(lines.contains(&"9p"), "{}", run.output);
    assert!(
        run.output.contains("1001\n1001\n"),
        "su web: {}",
        run.output
    );
    assert!(
        run.output.contains("uid=1002(api) gid=1002(api)"),
        "su api: {}",
        run.output
    );
}

#[test]
fn the_host_sees_guest_lines_while_the_guest_runs() {
    let Some(diod) = Diod::start("the_host_sees_guest_lines_while_the_guest_runs") else {
        return;
    };
    let mut vm = diod
        .mount()
        .version("9p2000.L")
        .spawn(
            r#"echo READY
i=0
while [ ! -e go ]; do
  i=$((i + 1)); [ $i -gt 600 ] && { echo "gave up waiting"; exit 1; }
  usleep 100000
done
echo "DONE $(cat go)""#,
        )
        .unwrap();
    vm.wait_for_line("READY", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let seen = vm.output();
    assert!(
        !seen.contains("DONE"),
        "the guest went on before the host acted: {seen}"
    );
    write_file(&diod.export().join("go"), "from host");
    vm.wait_for_line("DONE from host", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let run = vm.wait().unwrap_or_else(|e| panic!("{e}"));
    report("live output", &run);
    assert_eq!(run.exit_code, 0);
    assert_eq!(run.output, "READY\nDONE from host\n");
}

#[test]
fn a_vm_that_overstays_its_timeout_is_no_result() {
    let Some(diod) = Diod::start("a_vm_that_overstays_its_timeout_is_no_result") else {
        return;
    };
    let started = Instant::now();
    let err = diod
        .mount()
        .version("9p2000.L")
        .timeout(Duration::from_secs(15))
        .run("echo sleeping; sleep 600")
        .expect_err("the run must time out");
    assert!(
        started.elapsed() < Duration::from_secs(35),
        "{:?}",
        started.elapsed()
    );
    match &err {
        VmError::NoResult { reason, output, .. } => {
            assert!(reason.contains("timed out"), "{err}");
            assert_eq!(output, "sleeping\n");
        }
        other => panic!("expected NoResult, got: {other}"),
    }
}

#[test]
fn no_listening_server_is_no_result_with_qemus_error() {
    if !vm::require_or_skip("no_listening_server_is_no_result_with_qemus_error") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("dead.sock");
    // A socket file nobody listens on: bind, then drop the listener.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    let err = KernelMount::unix(&sock).run("true").expect_err("must fail");
    match &err {
        VmError::NoResult { qemu_stderr, .. } => {
            assert!(qemu_stderr.contains("Connection refused"), "{err}");
        }
        other => panic!("expected NoResult, got: {other}"),
    }
}

#[test]
fn dropping_a_running_vm_kills_qemu() {
    let Some(diod) = Diod::start("dropping_a_running_vm_kills_qemu") else {
        return;
    };
    let mut vm = diod
        .mount()
        .version("9p2000.L")
        .spawn("echo up; sleep 600")
        .unwrap();
    vm.wait_for_line("up", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    let group = vm.process_group();
    assert!(
        !group_members(group).is_empty(),
        "qemu's process group is empty while it runs"
    );
    drop(vm);
    assert_eq!(
        group_members(group),
        Vec::<u32>::new(),
        "processes left in qemu's group"
    );
}

/// The processes whose process group is `group` (field 5 of /proc/PID/stat).
fn group_members(group: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().filter_map(Result::ok) {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The command name is in parentheses and may hold spaces: split after it.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest = " state ppid pgrp ...": a zombie still counts until reaped.
        if fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(group) {
            members.push(pid);
        }
    }
    members
}

fn write_file(path: &Path, text: &str) {
    // Write then rename, so the guest never sees a half-written file.
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, path).unwrap();
}
