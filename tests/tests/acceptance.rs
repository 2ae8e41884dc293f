//! PRODUCT.md's acceptance steps 1-6, end to end: the real `srv-secrets`, the real
//! `deploy`, and a plain 9P client (`9p`) running as each service's own uid, so that
//! identity comes from SO_PEERCRED as in production.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use srv_secrets_tests::harness::{SecretsServer, can_switch_uid, run_with_stdin, stderr, stdout};

const WEB: u32 = 1001;
const API: u32 = 1002;
const STRANGER: u32 = 1003;
const VALUE: &[u8] = b"correct horse battery staple";
const WEB_MANIFEST: &str = "secret db_password\nconfig log_level=debug\nconfig max_conn=100\n";

/// A started server with services web (1001) and api (1002), web's manifest needing
/// db_password.
fn server_with_services() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, Some(WEB_MANIFEST));
    s.add_service("api", API, None);
    s
}

fn require_uid_switching(test: &str) -> bool {
    if can_switch_uid() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test}: needs root and setpriv (util-linux) to run clients as service uids"
    );
    eprintln!("skipping {test}: needs root and setpriv to run clients as service uids");
    false
}

/// Every file under `dir`, byte for byte, must not contain `needle`.
fn assert_not_in_files(dir: &std::path::Path, needle: &[u8]) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            assert_not_in_files(&path, needle);
        } else if let Ok(bytes) = std::fs::read(&path) {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "plaintext found in {}",
                path.display()
            );
        }
    }
}

#[test]
fn acceptance_through_deploy_and_a_plain_client_as_each_uid() {
    if !require_uid_switching("acceptance") {
        return;
    }
    let s = server_with_services();

    // 1. set stores an encrypted secret (value from stdin, not argv).
    let out = s.deploy_with_stdin(&["secret", "set", "db_password"], VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_not_in_files(&s.data, VALUE);
    let list = s.deploy_ok(&["secret", "list", "--json"]);
    assert!(list.contains("\"db_password\""), "{list}");
    assert!(!list.contains("correct horse"), "{list}");

    // Before the grant, the deployer's check finds what is missing, and exits 1.
    let check = s.deploy(&["service", "check", "web"]);
    assert_eq!(check.status.code(), Some(1));
    assert!(
        stdout(&check).contains("missing db_password"),
        "{}",
        stdout(&check)
    );

    // 2. grant authorizes web.
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    let check = s.deploy(&["service", "check", "web"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));

    // 3. web, connecting as its own uid, sees and reads the secret and its config.
    let r = s.ninep_as(WEB, "", &["read", "/secret/db_password"]);
    assert!(r.status.success(), "{}", stderr(&r));
    assert_eq!(r.stdout, VALUE);
    assert_eq!(
        stdout(&s.ninep_as(WEB, "", &["ls", "/secret"])),
        "db_password\n"
    );
    assert_eq!(
        stdout(&s.ninep_as(WEB, "", &["read", "/config/log_level"])),
        "debug"
    );
    assert_eq!(
        stdout(&s.ninep_as(WEB, "", &["read", "/config/max_conn"])),
        "100"
    );
    assert_eq!(
        stdout(&s.ninep_as(WEB, "", &["ls", "/config"])),
        "log_level\nmax_conn\n"
    );
    assert_eq!(
        stdout(&s.ninep_as(WEB, "web", &["ls", "/"])),
        "config\nevents\nsecret\n"
    );
    // The deployer reads the same bytes on web's behalf.
    let got = s.deploy(&["secret", "get", "db_password", "--as", "web"]);
    assert_eq!(got.stdout, VALUE, "{}", stderr(&got));

    // 4. another service is denied, and cannot tell the name exists.
    let denied = s.ninep_as(API, "", &["read", "/secret/db_password"]);
    let missing = s.ninep_as(API, "", &["read", "/secret/no_such_secret"]);
    assert!(!denied.status.success());
    assert_eq!(stderr(&denied), "9p: file does not exist\n");
    assert_eq!(
        stderr(&denied),
        stderr(&missing),
        "not granted == nonexistent"
    );
    let denied = s.ninep_as(API, "", &["stat", "/secret/db_password"]);
    let missing = s.ninep_as(API, "", &["stat", "/secret/no_such_secret"]);
    assert_eq!(stderr(&denied), stderr(&missing));
    assert_eq!(stdout(&s.ninep_as(API, "", &["ls", "/secret"])), "");
    // Nor can it attach web's view, a view that does not exist, or the admin tree (which
    // tells it who it is: see tests/deploy_cli.rs).
    for aname in ["web", "nosuch"] {
        let r = s.ninep_as(API, aname, &["ls", "/"]);
        assert_eq!(stderr(&r), "9p: permission denied\n", "aname {aname}");
    }
    let r = s.ninep_as(API, "admin", &["ls", "/"]);
    assert!(
        stderr(&r).starts_with("9p: permission denied: uid 1002 is service api;"),
        "{}",
        stderr(&r)
    );
    // A uid mapped to no service is refused at attach.
    let r = s.ninep_as(STRANGER, "", &["ls", "/"]);
    assert_eq!(stderr(&r), "9p: permission denied\n");

    // 5. revoke takes effect on the very next read, even on a file web holds open.
    let mut held = s.spawn_ninep_as(WEB, "", &["hold", "/secret/db_password"]);
    let mut lines = BufReader::new(held.stdout.take().unwrap()).lines();
    let mut input = held.stdin.take().unwrap();
    assert_eq!(
        lines.next().unwrap().unwrap(),
        format!("read {}", String::from_utf8_lossy(VALUE))
    );
    s.deploy_ok(&["secret", "revoke", "web", "db_password"]);
    writeln!(input).unwrap();
    assert_eq!(lines.next().unwrap().unwrap(), "error file does not exist");
    drop(input);
    held.wait().unwrap();
    let r = s.ninep_as(WEB, "", &["read", "/secret/db_password"]);
    assert_eq!(stderr(&r), "9p: file does not exist\n");

    // 6. rotate-key re-encrypts everything; services read the same values.
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    let out = s.deploy_with_stdin(&["secret", "set", "api_key"], b"\x00\x01binary\xff");
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "api", "api_key"]);
    let status_before = s.deploy_ok(&["status", "--json"]);
    s.deploy_ok(&["secret", "rotate-key"]);
    let status_after = s.deploy_ok(&["status", "--json"]);
    assert_ne!(status_before, status_after, "the active key changed");
    assert_eq!(
        s.ninep_as(WEB, "", &["read", "/secret/db_password"]).stdout,
        VALUE
    );
    assert_eq!(
        s.ninep_as(API, "", &["read", "/secret/api_key"]).stdout,
        b"\x00\x01binary\xff"
    );
    assert_not_in_files(&s.data, VALUE);
    assert!(!s.log_text().contains("correct horse"));
}

#[test]
fn set_prompts_without_echo_on_a_terminal() {
    // `script` gives deploy a pseudo-terminal; what we type must not come back.
    if Command::new("script").arg("--version").output().is_err() {
        assert!(std::env::var("CI").is_err(), "needs script (util-linux)");
        return;
    }
    let s = SecretsServer::start();
    let deploy = srv_secrets_tests::harness::bins()
        .deploy
        .display()
        .to_string();
    let inner = format!("{deploy} --addr {} secret set typed_secret", s.addr());
    let mut child = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Type only once the prompt is up (echo is off by then), as a person would.
    let mut out = child.stdout.take().unwrap();
    let mut shown = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&shown).contains("Value for typed_secret") {
        let n = std::io::Read::read(&mut out, &mut buf).unwrap();
        assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&shown));
        shown.extend_from_slice(&buf[..n]);
    }
    // rpassword prints the prompt a moment before it turns echo off (rpassword 7.5,
    // prompt_password_with_config): a person reads the prompt first, and so does this.
    std::thread::sleep(std::time::Duration::from_millis(500));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"typed-hunter2\n")
        .unwrap();
    std::io::Read::read_to_end(&mut out, &mut shown).unwrap();
    let status = child.wait().unwrap();
    let shown = String::from_utf8_lossy(&shown);
    assert!(status.success(), "{shown}");
    assert!(
        !shown.contains("typed-hunter2"),
        "the value was echoed: {shown:?}"
    );
    // The trailing newline is dropped from a typed value.
    s.add_service("web", WEB, None);
    s.deploy_ok(&["secret", "grant", "web", "typed_secret"]);
    let got = s.deploy(&["secret", "get", "typed_secret", "--as", "web"]);
    assert_eq!(got.stdout, b"typed-hunter2");
}

#[test]
fn ctl_errors_say_what_is_wrong_and_never_echo_input() {
    let s = SecretsServer::start();
    let out = s.deploy(&["secret", "grant", "nosuchsvc", "nosuchsecret"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("no such service"), "{err}");
    // Through the 9P ctl file directly, as root (admin). A value split by a stray
    // newline turns its second half into a "command word": it must not come back.
    let ctl = |input: &[u8]| {
        let mut cmd = Command::new(&srv_secrets_tests::harness::bins().ninep);
        cmd.args(["--addr", &s.addr(), "write", "/secrets/ctl"]);
        run_with_stdin(cmd, input)
    };
    let out = ctl(b"set split first-half\nZQXJ-second-half\n");
    assert_eq!(
        stderr(&out),
        "9p: ctl: line 2: unknown command; write 'help' for the list\n"
    );
    let out = ctl(b"set db_password two words\n");
    let err = stderr(&out);
    assert!(
        err.starts_with("9p: ctl: line 1: set: too many arguments"),
        "{err}"
    );
    assert!(!err.contains("words"), "{err}");
    let out = ctl(b"sett x y\n");
    assert!(
        stderr(&out).contains("did you mean 'set'?"),
        "{}",
        stderr(&out)
    );
    // The good command before the bad one in the same write was applied.
    let out = s.deploy_ok(&["secret", "list"]);
    assert!(out.contains("split"), "{out}");
    assert!(!s.log_text().contains("ZQXJ"));
    assert!(!s.log_text().contains("first-half"));
}

#[test]
fn a_pem_chain_of_more_than_64_kib_split_over_many_writes_reads_back_exactly() {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    // A PEM-like chain of ~100 KiB: newlines, '=' padding, quotes.
    let mut pem = Vec::new();
    for i in 0..1400 {
        pem.extend_from_slice(b"-----BEGIN CERTIFICATE-----\n");
        pem.extend_from_slice(format!("MIIB{i:08}'quoted'==\n").as_bytes());
        pem.extend_from_slice(b"-----END CERTIFICATE-----\n");
    }
    assert!(pem.len() > 100 * 1024);
    // Through deploy --file, and as a {N} literal written 4096 bytes per Twrite as
    // 9pfuse would, straight to ctl.
    let file = s.root.path().join("chain.pem");
    std::fs::write(&file, &pem).unwrap();
    s.deploy_ok(&[
        "secret",
        "set",
        "tls_chain",
        "--file",
        file.to_str().unwrap(),
    ]);
    let mut literal = format!("set tls_chain2 {{{}}}\n", pem.len()).into_bytes();
    literal.extend_from_slice(&pem);
    literal.push(b'\n');
    let mut cmd = Command::new(&srv_secrets_tests::harness::bins().ninep);
    cmd.args(["--addr", &s.addr(), "write", "/secrets/ctl"]);
    let out = run_with_stdin(cmd, &literal);
    assert!(out.status.success(), "{}", stderr(&out));
    for name in ["tls_chain", "tls_chain2"] {
        s.deploy_ok(&["secret", "grant", "web", name]);
        let got = s.deploy(&["secret", "get", name, "--as", "web"]);
        assert!(
            got.stdout == pem,
            "{name} differs ({} bytes back)",
            got.stdout.len()
        );
    }
    // A value over 1 MiB is refused, and says the limit.
    let big = s.root.path().join("big.bin");
    std::fs::write(&big, vec![b'x'; (1 << 20) + 1]).unwrap();
    let out = s.deploy(&["secret", "set", "too_big", "--file", big.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("1 MiB") || stderr(&out).contains("1048576"),
        "{}",
        stderr(&out)
    );
}
