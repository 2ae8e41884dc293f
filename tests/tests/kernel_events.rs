//! `cat events` through the Linux kernel's own 9P client (v9fs), in one boot: a read that
//! blocks and wakes on a set, a rotation, a revoke and a manifest change; a short read's
//! rest on the next; a read(2) larger than the iounit; a reader killed while it waits (the
//! kernel flushes its Tread); and a reader waiting when the server gets SIGTERM, answered
//! with an error while the server exits.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::{Duration, Instant};

use srv_secrets_tests::harness::SecretsServer;
use srv_secrets_tests::vm::{KernelMount, require_or_skip};

fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", 1001, Some("secret db\nconfig level=debug\n"));
    s.add_service("api", 1002, None);
    for name in ["db", "unrelated"] {
        let out = s.deploy_with_stdin(&["secret", "set", name], b"one");
        assert!(out.status.success());
    }
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "api", "unrelated"]);
    s
}

/// The guest's half. `wait_lines N` waits until the reader's output has N lines.
const SCRIPT: &str = r#"
cd /mnt
wait_lines() {
  i=0
  while [ "$(wc -l < /tmp/ev)" -lt "$1" ]; do
    i=$((i+1)); [ $i -gt 600 ] && { echo "CHECK timeout_$1=$(cat /tmp/ev | tr '\n' '|')"; return 1; }
    usleep 50000
  done
}
echo "CHECK ls_root=$(ls | tr '\n' ' ')"
echo "CHECK mode=$(stat -c '%a %s' events)"
cat events > /tmp/ev 2>/tmp/everr &
CAT=$!
usleep 500000
echo "CHECK blocked=$(wc -l < /tmp/ev) $(kill -0 $CAT && echo alive)"
echo READY-SET
wait_lines 1
echo READY-ROTATE
wait_lines 3
echo READY-REVOKE
wait_lines 4
echo READY-MANIFEST
wait_lines 5
echo "CHECK lines=$(cat /tmp/ev | tr '\n' '|')"
# Killed while it waits: the kernel flushes the read; the mount serves on.
kill $CAT
wait $CAT
echo "CHECK killed=$?"
echo "CHECK after_kill=$(cat config/level)"
# Five bytes at a time: a line comes in pieces, and nothing is lost.
dd if=events bs=5 count=3 of=/tmp/dd 2>/dev/null &
DD=$!
usleep 500000
echo READY-PIECES
wait $DD
echo "CHECK pieces=$(cat /tmp/dd | tr '\n' '|')"
# A read(2) larger than the iounit, as GNU cat's 128 KiB: the lines come all the same.
dd if=events bs=1M count=1 of=/tmp/big 2>/dev/null &
DD=$!
usleep 500000
echo READY-BIG
wait $DD
echo "CHECK big=$(cat /tmp/big | tr '\n' '|')"
# Waiting when the server stops.
cat events > /tmp/ev2 2>/tmp/err2 &
CAT=$!
usleep 500000
echo READY-STOP
wait $CAT
echo "CHECK stopped=$? $(cat /tmp/err2)"
"#;

fn checks(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
        .collect()
}

fn check<'a>(all: &'a [(String, String)], key: &str) -> &'a str {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no CHECK {key} in {all:?}"))
}

fn set_db(s: &SecretsServer, value: &[u8]) {
    let out = s.deploy_with_stdin(&["secret", "set", "db"], value);
    assert!(out.status.success());
}

#[test]
fn cat_events_through_the_kernel_mount_blocks_and_wakes() {
    if !require_or_skip("cat_events_through_the_kernel_mount_blocks_and_wakes") {
        return;
    }
    let mut s = server();
    let mut vm = KernelMount::unix(&s.socket)
        .aname("web")
        .mount_opts("dfltuid=1001,dfltgid=1001,cache=none,ro,nosuid,nodev,noexec")
        .timeout(Duration::from_secs(240))
        .spawn(SCRIPT)
        .expect("the VM starts");
    let step = |vm: &mut srv_secrets_tests::vm::RunningVm, line: &str| {
        vm.wait_for_line(line, Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    };
    step(&mut vm, "READY-SET");
    // Not web's: never in its events.
    let out = s.deploy_with_stdin(&["secret", "set", "unrelated"], b"two");
    assert!(out.status.success());
    set_db(&s, b"two");
    step(&mut vm, "READY-ROTATE");
    let out = s.deploy_with_stdin(
        &[
            "secret",
            "rotate",
            "db",
            "--overlap",
            "1h",
            "--reason",
            "test",
        ],
        b"three",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    step(&mut vm, "READY-REVOKE");
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    step(&mut vm, "READY-MANIFEST");
    s.add_service("web", 1001, Some("secret db\nconfig level=info\n"));
    step(&mut vm, "READY-PIECES");
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    step(&mut vm, "READY-BIG");
    set_db(&s, b"four");
    step(&mut vm, "READY-STOP");
    let stopping = Instant::now();
    let status = s.stop();
    let took = stopping.elapsed();
    let run = vm.wait().expect("the guest finishes");
    let all = checks(&run.output);
    let ctx = &run.output;
    eprintln!("the guest said:\n{ctx}\nthe server stopped in {took:?}");
    assert!(status.success(), "{status:?}: {}", s.log_text());
    assert!(
        took < Duration::from_secs(5),
        "the server took {took:?} to stop"
    );
    assert_eq!(check(&all, "ls_root"), "config events secret", "{ctx}");
    assert_eq!(check(&all, "mode"), "400 0", "{ctx}");
    assert_eq!(check(&all, "blocked"), "0 alive", "{ctx}");
    let lines = check(&all, "lines");
    let (changes, config) = lines.rsplit_once("config level ").expect(ctx);
    assert_eq!(
        changes, "set db 2|rotated db 3|previous-retired db 1|revoked db 3|",
        "{ctx}"
    );
    let revision = config.strip_suffix('|').expect(ctx);
    assert!(revision.parse::<u64>().is_ok(), "{ctx}");
    assert_eq!(check(&all, "killed"), "143", "{ctx}");
    assert_eq!(check(&all, "after_kill"), "info", "{ctx}");
    assert_eq!(check(&all, "pieces"), "granted db 3|", "{ctx}");
    assert_eq!(
        check(&all, "big"),
        "set db 4|previous-retired db 2|",
        "{ctx}"
    );
    let stopped = check(&all, "stopped");
    assert!(!stopped.starts_with("0 "), "{ctx}");
}
