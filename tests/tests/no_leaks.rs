//! Secrets never appear in logs, error messages or test output, even at trace level,
//! nor in plaintext on disk; and the server keeps itself out of core dumps.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;

use srv_secrets_tests::harness::{
    SecretsServer, bins, can_switch_uid, run_with_stdin, stderr, stdout,
};

/// Distinctive values: if any of these bytes sequences shows up anywhere but a read
/// of the secret itself, something leaked.
const MARKERS: [&str; 4] = [
    "QQX-stdin-value-7731",
    "QQX-file-value-9902",
    "QQX-ctl-value-4417",
    "QQX-manifest-secret-5150",
];

fn scan_dir(dir: &Path, found: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_dir(&path, found);
        } else if let Ok(bytes) = std::fs::read(&path) {
            for m in MARKERS {
                if bytes.windows(m.len()).any(|w| w == m.as_bytes()) {
                    found.push(format!("{m} in {}", path.display()));
                }
            }
        }
    }
}

fn record(outputs: &mut Vec<(String, String)>, what: &str, o: &std::process::Output) {
    outputs.push((format!("{what} stdout"), stdout(o)));
    outputs.push((format!("{what} stderr"), stderr(o)));
}

fn assert_clean(what: &str, text: &str) {
    for m in MARKERS {
        assert!(!text.contains(m), "{m} leaked into {what}:\n{text}");
    }
}

#[test]
fn values_never_reach_logs_errors_or_the_data_directory() {
    let mut s = SecretsServer::start();
    assert!(s.env.iter().any(|(k, v)| k == "RUST_LOG" && v == "trace"));
    let mut outputs: Vec<(String, String)> = Vec::new();

    record(
        &mut outputs,
        "service add",
        &s.deploy(&["service", "add", "web", "--uid", "1001"]),
    );
    record(
        &mut outputs,
        "set stdin",
        &s.deploy_with_stdin(&["secret", "set", "a"], MARKERS[0].as_bytes()),
    );
    let file = s.root.path().join("value.bin");
    std::fs::write(&file, MARKERS[1]).unwrap();
    record(
        &mut outputs,
        "set file",
        &s.deploy(&["secret", "set", "b", "--file", file.to_str().unwrap()]),
    );
    record(
        &mut outputs,
        "grant",
        &s.deploy(&["secret", "grant", "web", "a"]),
    );
    record(
        &mut outputs,
        "grant",
        &s.deploy(&["secret", "grant", "web", "b"]),
    );
    record(&mut outputs, "list", &s.deploy(&["secret", "list"]));
    record(
        &mut outputs,
        "list json",
        &s.deploy(&["secret", "list", "--json"]),
    );
    record(&mut outputs, "status", &s.deploy(&["status"]));
    record(&mut outputs, "rotate", &s.deploy(&["secret", "rotate-key"]));
    // A command that fails after its value was sent, and one broken by a stray newline.
    let ctl = |input: String| {
        let mut cmd = std::process::Command::new(&bins().ninep);
        cmd.args(["--addr", &s.addr(), "write", "/secrets/ctl"]);
        run_with_stdin(cmd, input.as_bytes())
    };
    record(
        &mut outputs,
        "ctl bad name",
        &ctl(format!("set bad/name {}\n", MARKERS[2])),
    );
    record(
        &mut outputs,
        "ctl split",
        &ctl(format!("set c half\n{}\n", MARKERS[2])),
    );
    record(
        &mut outputs,
        "ctl extra args",
        &ctl(format!("set c {} {}\n", MARKERS[2], MARKERS[2])),
    );
    record(
        &mut outputs,
        "ctl bad manifest",
        &ctl(format!("service web manifest '{}'\n", MARKERS[3])),
    );
    // Reads, which must show the value, are checked for the value and kept out of
    // the scan.
    let got = s.deploy(&["secret", "get", "a", "--as", "web"]);
    assert_eq!(stdout(&got), MARKERS[0]);
    outputs.push(("get stderr".into(), stderr(&got)));
    if can_switch_uid() {
        let r = s.ninep_as(1001, "", &["read", "/secret/b"]);
        assert_eq!(stdout(&r), MARKERS[1]);
        outputs.push(("9p read stderr".into(), stderr(&r)));
        outputs.push((
            "9p denied".into(),
            stderr(&s.ninep_as(1002, "", &["read", "/secret/b"])),
        ));
    }
    // A crash and a restart log too.
    s.kill9();
    s.serve();
    record(
        &mut outputs,
        "list after restart",
        &s.deploy(&["secret", "list"]),
    );
    s.stop();

    for (what, text) in &outputs {
        assert_clean(what, text);
    }
    let log = s.log_text();
    assert!(log.contains("TRACE"), "the server logged at trace level");
    assert_clean("the server log", &log);
    let mut found = Vec::new();
    scan_dir(&s.data, &mut found);
    assert!(found.is_empty(), "plaintext on disk: {found:?}");
}

#[test]
fn the_server_disables_its_core_dumps() {
    let s = SecretsServer::start();
    let pid = s.pid().unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap();
    let fields: Vec<&str> = core.split_whitespace().collect();
    assert_eq!(&fields[4..6], ["0", "0"], "{core}");
}

#[test]
fn the_server_is_not_dumpable() {
    // For a non-dumpable process the kernel makes /proc/PID/* owned by root, whatever
    // uid the process runs as: so run the server as an ordinary uid and look.
    if !can_switch_uid() {
        assert!(std::env::var("CI").is_err(), "needs root and setpriv");
        return;
    }
    let dir = srv_secrets_tests::harness::shared_tempdir();
    let uid = 1500u32;
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
    let data = dir.path().join("data");
    let sock = dir.path().join("9p.sock");
    let init = srv_secrets_tests::harness::as_uid(uid, &bins().srv_secrets)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let mut serve = srv_secrets_tests::harness::as_uid(uid, &bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&data)
        .arg("--listen")
        .arg(format!("unix:{}", sock.display()))
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // setpriv execs the server, so the child's pid is the server's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(std::time::Instant::now() < deadline, "server did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{}/status", serve.id())).unwrap();
    let running_as = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap()
        .to_string();
    let owner = std::os::unix::fs::MetadataExt::uid(
        &std::fs::metadata(format!("/proc/{}/environ", serve.id())).unwrap(),
    );
    let _ = serve.kill();
    let _ = serve.wait();
    assert_eq!(running_as, uid.to_string());
    assert_eq!(
        owner, 0,
        "/proc/PID/environ owned by root: the server is not dumpable"
    );
}
