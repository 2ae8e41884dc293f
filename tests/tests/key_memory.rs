//! The keys kept out of swap: the real server's key pages locked in RAM (VmLck in
//! /proc/PID/status) where RLIMIT_MEMLOCK allows, and where it does not, a log line that
//! says why and what to raise, while the server serves all the same.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{
    SecretsServer, as_uid, bins, can_switch_uid, run_with_stdin, shared_tempdir, stderr, stdout,
};

/// VmLck of process `pid`, in kB.
fn vm_lck(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .map(|v| v.trim().parse().unwrap())
        .unwrap_or_else(|| panic!("no VmLck in {status}"))
}

fn require(test: &str) -> bool {
    let prlimit = Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if can_switch_uid() && prlimit {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test} needs root, setpriv and prlimit"
    );
    eprintln!("skipping {test}: needs root, setpriv and prlimit");
    false
}

#[test]
fn the_servers_keys_are_locked_in_ram() {
    let s = SecretsServer::start();
    let pid = s.pid().unwrap();
    // The cluster key and the audit key, a page each at least.
    assert!(vm_lck(pid) >= 8, "VmLck {} kB", vm_lck(pid));
    let log = s.log_text();
    assert!(
        log.contains("key memory locked in RAM: the keys are never written to swap"),
        "{log}"
    );
    assert!(!log.contains("not locked"), "{log}");
}

/// A server of its own run as `uid` (not root: no CAP_IPC_LOCK) under RLIMIT_MEMLOCK
/// `limit` bytes (soft and hard), set by prlimit, which execs setpriv, which execs the
/// server: the child's pid is the server's.
struct Limited {
    dir: tempfile::TempDir,
    uid: u32,
    server: Child,
}

impl Limited {
    fn start(uid: u32, limit: u64) -> Limited {
        let dir = shared_tempdir();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        let init = as_uid(uid, &bins().srv_secrets)
            .arg("init")
            .arg("--data")
            .arg(dir.path().join("data"))
            .output()
            .unwrap();
        assert!(init.status.success(), "{}", stderr(&init));
        let log = std::fs::File::create(dir.path().join("log")).unwrap();
        let server = Command::new("prlimit")
            .arg(format!("--memlock={limit}:{limit}"))
            .arg("--")
            .arg("setpriv")
            .arg(format!("--reuid={uid}"))
            .arg(format!("--regid={uid}"))
            .arg("--clear-groups")
            .arg("--")
            .arg(&bins().srv_secrets)
            .arg("serve")
            .arg("--data")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg(format!("unix:{}", dir.path().join("9p.sock").display()))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut s = Limited { dir, uid, server };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(s.socket()).is_err() {
            if let Some(status) = s.server.try_wait().unwrap() {
                panic!("server exited with {status}: {}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "server did not start: {}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("9p.sock")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default()
    }

    /// `deploy` as the admin (the uid that ran init), with `stdin`.
    fn deploy_with_stdin(&self, args: &[&str], stdin: &[u8]) -> String {
        let mut cmd = as_uid(self.uid, &bins().deploy);
        cmd.arg("--addr")
            .arg(format!("unix:{}", self.socket().display()))
            .args(args);
        let out = run_with_stdin(cmd, stdin);
        assert!(out.status.success(), "deploy {args:?}: {}", stderr(&out));
        stdout(&out)
    }

    fn deploy(&self, args: &[&str]) -> String {
        self.deploy_with_stdin(args, b"")
    }

    fn pid(&self) -> u32 {
        self.server.id()
    }
}

impl Drop for Limited {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Waits until `path`'s text contains `needle` (a log line written after the event).
fn wait_for(path: &Path, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.contains(needle) || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn an_ordinary_uid_under_the_units_limit_locks_its_keys() {
    if !require("an_ordinary_uid_under_the_units_limit_locks_its_keys") {
        return;
    }
    // LimitMEMLOCK=256K, as both units in docs/ set it.
    let s = Limited::start(1520, 256 * 1024);
    assert!(vm_lck(s.pid()) >= 8, "VmLck {} kB", vm_lck(s.pid()));
    let log = s.log();
    assert!(log.contains("key memory locked in RAM"), "{log}");
    // A rotation holds two cluster keys and the audit key for a while, within the limit.
    s.deploy_with_stdin(&["secret", "set", "db"], b"x");
    s.deploy(&["secret", "rotate-key"]);
    let log = wait_for(&s.dir.path().join("log"), "key rotation finished");
    assert!(log.contains("key rotation finished"), "{log}");
    assert!(!log.contains("not locked"), "{log}");
    assert!(vm_lck(s.pid()) >= 8, "VmLck {} kB", vm_lck(s.pid()));
}

#[test]
fn a_limit_of_zero_is_logged_with_what_to_raise_and_the_server_serves() {
    if !require("a_limit_of_zero_is_logged_with_what_to_raise_and_the_server_serves") {
        return;
    }
    let s = Limited::start(1521, 0);
    assert_eq!(vm_lck(s.pid()), 0);
    let log = s.log();
    assert!(
        log.contains(
            "bytes of key memory are not locked in RAM, so keys may be written to swap: \
             mlock of 4096 bytes refused (EPERM): RLIMIT_MEMLOCK is 0 bytes and the process \
             lacks CAP_IPC_LOCK; give the server more lockable memory: LimitMEMLOCK=256K in \
             its systemd unit, or `ulimit -l 256` in the shell that starts it"
        ),
        "{log}"
    );
    // Not locked, but served.
    s.deploy_with_stdin(&["secret", "set", "db"], b"x");
    assert!(s.deploy(&["secret", "list"]).contains("db"));
}

#[test]
fn a_limit_too_low_for_a_rotation_is_logged_when_the_new_key_comes() {
    if !require("a_limit_too_low_for_a_rotation_is_logged_when_the_new_key_comes") {
        return;
    }
    // Room for the cluster key and the audit key (a page each), not for a third.
    let s = Limited::start(1522, 8192);
    assert!(vm_lck(s.pid()) >= 8, "VmLck {} kB", vm_lck(s.pid()));
    assert!(s.log().contains("key memory locked in RAM"), "{}", s.log());
    s.deploy_with_stdin(&["secret", "set", "db"], b"x");
    s.deploy(&["secret", "rotate-key"]);
    let log = wait_for(&s.dir.path().join("log"), "key rotation finished");
    assert!(
        log.contains("the new key's memory is not locked in RAM and may be written to swap"),
        "{log}"
    );
    assert!(
        log.contains(
            "refused (ENOMEM): RLIMIT_MEMLOCK is 8192 bytes and 8192 bytes are locked already"
        ),
        "{log}"
    );
    // The rotation went through all the same.
    assert!(log.contains("key rotation finished"), "{log}");
    assert!(s.deploy(&["secret", "list"]).contains("db"));
}
