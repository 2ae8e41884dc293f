//! The systemd units in docs/ against what the real server does: every system call it
//! makes (seen by strace, under a workload of sets, grants, reads as a service, a key
//! rotation, a backup, the HTTP API and a stop) is allowed by each unit's
//! `SystemCallFilter=`, as `systemd-analyze syscall-filter` expands its groups, and every
//! socket it makes is of a family its `RestrictAddressFamilies=` allows. A filter that
//! refused one of them would break the server only when that call is made, perhaps
//! weeks after the start; this finds it before.
//!
//! (systemd cannot start the units here: it is not PID 1 in this sandbox. .ci/run
//! verifies and scores them with `systemd-analyze`.)
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};

use srv_secrets_tests::harness::{SecretsServer, bins, can_curl, curl, stderr};

const UNITS: [&str; 2] = ["srv-secrets.service", "srv-secrets-network.service"];

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn require(test: &str) -> bool {
    if have("strace") && have("systemd-analyze") {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test} needs strace and systemd-analyze"
    );
    eprintln!("skipping {test}: needs strace and systemd-analyze");
    false
}

fn unit(name: &str) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    std::fs::read_to_string(root.join("docs").join(name)).unwrap()
}

/// The values of `key=` lines of a unit, in order.
fn settings<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("{key}=");
    unit.lines()
        .filter_map(|l| l.strip_prefix(prefix.as_str()))
        .collect()
}

/// The system calls a name of `SystemCallFilter=` stands for: a group, expanded by
/// `systemd-analyze syscall-filter` (groups within it too), or a call.
fn calls_of(name: &str) -> BTreeSet<String> {
    if !name.starts_with('@') {
        return BTreeSet::from([name.to_string()]);
    }
    let out = Command::new("systemd-analyze")
        .args(["syscall-filter", "--no-pager", name])
        .output()
        .unwrap();
    assert!(out.status.success(), "{name}: {}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    let mut calls = BTreeSet::new();
    for line in text.lines().skip(1) {
        let word = line.trim();
        if word.is_empty() || word.starts_with('#') {
            continue;
        }
        calls.extend(calls_of(word));
    }
    assert!(!calls.is_empty(), "{name} names no system call");
    calls
}

/// What a unit's `SystemCallFilter=` lines allow: the allow lists' calls, less the deny
/// lists' (`~`), as systemd applies them in order.
fn allowed_calls(unit: &str) -> BTreeSet<String> {
    let mut allowed = BTreeSet::new();
    for value in settings(unit, "SystemCallFilter") {
        match value.strip_prefix('~') {
            Some(denied) => {
                for name in denied.split_whitespace() {
                    for call in calls_of(name) {
                        allowed.remove(&call);
                    }
                }
            }
            None => {
                for name in value.split_whitespace() {
                    allowed.extend(calls_of(name));
                }
            }
        }
    }
    assert!(!allowed.is_empty(), "the unit has a SystemCallFilter=");
    allowed
}

/// The calls of an `strace -f` log, and the families of the sockets made.
fn traced(log: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut calls = BTreeSet::new();
    let mut families = BTreeSet::new();
    for line in log.lines() {
        // "PID name(args) = result"; resumptions, signals and exits are skipped.
        let Some((_, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let Some((name, args)) = rest.split_once('(') else {
            continue;
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            continue;
        }
        if name == "socket" || name == "socketpair" {
            families.insert(args.split(',').next().unwrap().to_string());
        }
        calls.insert(name.to_string());
    }
    (calls, families)
}

#[test]
fn every_system_call_and_socket_family_the_server_uses_is_allowed_by_both_units() {
    let test = "every_system_call_and_socket_family_the_server_uses_is_allowed_by_both_units";
    if !require(test) {
        return;
    }
    let s = SecretsServer::init();
    let trace = s.root.path().join("strace.log");
    let http = s.root.path().join("run/http.sock");
    // strace runs the server as its child. strace blocks fatal signals while it traces a
    // program it started, so the server itself is sent SIGTERM at the end.
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-o"])
        .arg(&trace)
        .arg(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .arg("--listen")
        .arg(s.addr())
        .arg("--http")
        .arg(format!("unix:{}", http.display()))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&s.log).unwrap());
    let mut server = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while std::os::unix::net::UnixStream::connect(&s.socket).is_err() || !http.exists() {
        assert!(server.try_wait().unwrap().is_none(), "{}", s.log_text());
        assert!(std::time::Instant::now() < deadline, "{}", s.log_text());
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    s.deploy_with_stdin(&["secret", "set", "db"], b"value-1");
    s.add_service("web", 1631, None);
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    assert_eq!(s.get_as("db", "web"), b"value-1");
    s.deploy_ok(&["secret", "rotate", "db", "--generate", "{{random:hex:8}}"]);
    s.deploy_ok(&["secret", "rotate-key"]);
    s.deploy_ok(&["audit", "list"]);
    let backup = Command::new(&bins().srv_secrets)
        .arg("backup")
        .arg("--data")
        .arg(&s.data)
        .arg("--addr")
        .arg(s.addr())
        .arg("--out")
        .arg(s.root.path().join("backup.redb"))
        .output()
        .unwrap();
    assert!(backup.status.success(), "{}", stderr(&backup));
    if can_curl(test) {
        let (status, _) = curl(http.to_str().unwrap(), None, "GET", "/health/ready", None);
        assert_eq!(status, 200);
    }
    // Past the housekeeping interval (5 s), so that its calls are seen too.
    std::thread::sleep(std::time::Duration::from_secs(6));
    let children = format!("/proc/{0}/task/{0}/children", server.id());
    let child: i32 = std::fs::read_to_string(children)
        .unwrap()
        .split_whitespace()
        .next()
        .expect("strace's child, the server")
        .parse()
        .unwrap();
    let pid = rustix::process::Pid::from_raw(child).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = server.wait().unwrap();
    assert!(status.success(), "{status}: {}", s.log_text());
    assert!(s.log_text().contains("stopped"), "{}", s.log_text());

    let (calls, families) = traced(&std::fs::read_to_string(&trace).unwrap());
    for expected in ["mlock", "accept4", "fdatasync", "prlimit64", "prctl"] {
        assert!(calls.contains(expected), "{expected} traced: {calls:?}");
    }
    assert!(families.contains("AF_UNIX"), "{families:?}");
    for name in UNITS {
        let text = unit(name);
        let allowed = allowed_calls(&text);
        let refused: Vec<&String> = calls
            .iter()
            // strace's own exec of the server, before the server runs.
            .filter(|c| *c != "execve" && !allowed.contains(*c))
            .collect();
        assert!(
            refused.is_empty(),
            "{name}'s SystemCallFilter= refuses {refused:?}, which the server calls"
        );
        let allowed_families: BTreeSet<&str> = settings(&text, "RestrictAddressFamilies")
            .iter()
            .flat_map(|v| v.split_whitespace())
            .collect();
        for family in &families {
            assert!(
                allowed_families.contains(family.as_str()),
                "{name}'s RestrictAddressFamilies= refuses {family}, which the server makes"
            );
        }
    }
}

#[test]
fn the_filter_check_finds_a_call_a_unit_refuses() {
    if !require("the_filter_check_finds_a_call_a_unit_refuses") {
        return;
    }
    // The check itself: a filter without @memlock refuses mlock, and @resources has
    // setrlimit but not prlimit64 (the server's), so the units' ~@resources costs it
    // nothing.
    let allowed =
        allowed_calls("SystemCallFilter=@system-service\nSystemCallFilter=~@privileged @memlock\n");
    assert!(!allowed.contains("mlock") && allowed.contains("read"));
    let resources = calls_of("@resources");
    assert!(resources.contains("setrlimit") && !resources.contains("prlimit64"));
    let (calls, families) =
        traced("12 socket(AF_INET6, SOCK_STREAM, 0) = 3\n12 <... futex resumed>) = 0\n");
    assert_eq!(calls, BTreeSet::from(["socket".to_string()]));
    assert_eq!(families, BTreeSet::from(["AF_INET6".to_string()]));
    for name in UNITS {
        assert!(allowed_calls(&unit(name)).contains("mlock"), "{name}");
    }
}
