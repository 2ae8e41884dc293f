//! Versions and rotation end to end (issue 12, "Versions and rotation"): the real
//! `srv-secrets` and `deploy`, and the plain 9P client `9p` run as each service's uid.
//!
//! `@pending` read by a test command through a service's view and refused to others,
//! never listed; a failing test that leaves everything as it was; `@previous` during the
//! overlap and gone after it, across restarts; rollback and retire; fids held across a
//! plain rotation (they keep reading) and across `--revoke-previous` (cut off); grants
//! that end by themselves; history and the stale list; kill -9 after each step, and
//! during rotations at random moments.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use srv_secrets_tests::harness::{Held, SecretsServer, bins, can_switch_uid, stderr, stdout};

const WEB: u32 = 1101;
const API: u32 = 1102;

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

/// A started server with secret `db` ("first value", version 1) granted to web (1101),
/// and service api (1102) granted nothing.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    s.add_service("api", API, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], b"first value");
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s
}

/// What `uid` reads at `path` of its own view: the bytes, or the client's error.
fn read_as(s: &SecretsServer, uid: u32, path: &str) -> Result<Vec<u8>, String> {
    let out = s.ninep_as(uid, "", &["read", path]);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(stderr(&out).trim().to_string())
    }
}

/// The names a listing of `dir` shows `uid`.
fn ls_as(s: &SecretsServer, uid: u32, dir: &str) -> Vec<String> {
    let out = s.ninep_as(uid, "", &["ls", dir]);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out).lines().map(str::to_string).collect()
}

/// `deploy secret history NAME --json`, as (version, state) pairs, newest first.
fn states(s: &SecretsServer, name: &str) -> Vec<(u64, String)> {
    history(s, name)
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn history(s: &SecretsServer, name: &str) -> Vec<Json> {
    let text = s.deploy_ok(&["secret", "history", name, "--json"]);
    serde_json::from_str::<Vec<Json>>(&text).unwrap()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `deploy secret rotate ARGS` with `value` on stdin; its output.
fn rotate(s: &SecretsServer, args: &[&str], value: &[u8]) -> std::process::Output {
    let mut all = vec!["secret", "rotate"];
    all.extend(args);
    s.deploy_with_stdin(&all, value)
}

/// The command line that runs the `9p` client as `uid` against the server the test
/// command is given (`$SRV_SECRETS_ADDR`).
fn ninep_in_test(uid: u32) -> String {
    format!(
        "setpriv --reuid={uid} --regid={uid} --clear-groups -- {} --addr \"$SRV_SECRETS_ADDR\"",
        bins().ninep.display()
    )
}

#[test]
fn a_test_command_reads_pending_through_a_services_view_and_nobody_else_does() {
    if !require_uid_switching("rotation test") {
        return;
    }
    let s = server();
    let dir = s.root.path().join("test-out");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.display();
    let web = ninep_in_test(WEB);
    let api = ninep_in_test(API);
    // What the test command sees: the pending value through web's view, a listing of
    // secret/, api's refusal, its own environment and arguments.
    let test = format!(
        "{web} read \"/secret/$SRV_SECRETS_SECRET@pending\" > {d}/pending && \
         {web} ls /secret > {d}/listing && \
         {web} read /secret/db > {d}/current && \
         {{ {api} read /secret/db@pending 2> {d}/api; true; }} && \
         {{ {web} read /secret/db@previous 2> {d}/previous; true; }} && \
         env > {d}/env && echo \"$0 $*\" > {d}/args && \
         test \"$SRV_SECRETS_PENDING_VERSION\" = 2"
    );
    let out = rotate(
        &s,
        &[
            "db",
            "--test",
            &test,
            "--overlap",
            "1h",
            "--reason",
            "quarterly",
        ],
        b"second value",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("the test passed; rotated db: version 2 is current;"),
        "{}",
        stdout(&out)
    );
    let file = |n: &str| std::fs::read(dir.join(n)).unwrap();
    assert_eq!(file("pending"), b"second value");
    assert_eq!(file("current"), b"first value");
    // Never listed: a glob of /secret/* reads current values only.
    assert_eq!(String::from_utf8(file("listing")).unwrap(), "db\n");
    assert_eq!(
        String::from_utf8(file("api")).unwrap(),
        "9p: file does not exist\n"
    );
    assert_eq!(
        String::from_utf8(file("previous")).unwrap(),
        "9p: file does not exist\n"
    );
    // The value was in neither its environment nor its arguments.
    for n in ["env", "args"] {
        let text = file(n);
        assert!(
            !text.windows(12).any(|w| w == b"second value"),
            "the value is in the test's {n}"
        );
    }
    assert!(
        String::from_utf8(file("env"))
            .unwrap()
            .contains("SRV_SECRETS_SECRET=db\n")
    );
    // Promoted: the new value is current, the old one @previous for the overlap.
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"second value");
    assert_eq!(
        read_as(&s, WEB, "/secret/db@previous").unwrap(),
        b"first value"
    );
    assert_eq!(
        read_as(&s, API, "/secret/db@previous").unwrap_err(),
        "9p: file does not exist"
    );
    assert!(read_as(&s, WEB, "/secret/db@pending").is_err());
    assert_eq!(ls_as(&s, WEB, "/secret"), ["db"]);
    // The admin reads the versions through a service's view too.
    assert_eq!(s.get_as("db@previous", "web"), b"first value");
    let h = history(&s, "db");
    assert_eq!(h[0]["state"], "current");
    assert_eq!(h[0]["reason"], "quarterly");
    assert_eq!(h[0]["by"], "admin");
    assert_eq!(h[1]["state"], "previous");
    let until = h[1]["overlap_until"].as_u64().unwrap();
    assert!(until > now() + 3000 && until <= now() + 3600, "{until}");
    // The value reached no log.
    assert!(!s.log_text().contains("second value"));
}

#[test]
fn a_failing_test_leaves_everything_as_it_was() {
    let s = server();
    s.deploy_ok(&["secret", "grant", "api", "db"]);
    let before_list = s.deploy_ok(&["secret", "list", "--json"]);
    let before_history = history(&s, "db");
    let out = rotate(
        &s,
        &["db", "--test", "echo checking >&2; exit 7"],
        b"bad value",
    );
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(
            "deploy: the test failed (exit status 7): pending version 2 of db was discarded; \
             nothing else changed"
        ),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("checking"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    assert_eq!(s.deploy_ok(&["secret", "list", "--json"]), before_list);
    assert_eq!(s.get_as("db", "web"), b"first value");
    let out = s.deploy(&["secret", "get", "db@pending", "--as", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no such version now"),
        "{}",
        stderr(&out)
    );
    // The history gained the destroyed version, and nothing else changed in it.
    let after = history(&s, "db");
    assert_eq!(after.len(), before_history.len() + 1);
    assert_eq!(after[0]["version"], 2);
    assert_eq!(after[0]["state"], "destroyed");
    assert_eq!(after[1..], before_history[..]);
    // There is no previous version to roll back to: nothing was promoted.
    let out = s.deploy(&["secret", "rollback", "db"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no previous version"),
        "{}",
        stderr(&out)
    );
    // A test that cannot even start is a failure too, with nothing changed.
    let out = rotate(
        &s,
        &["db", "--test", "exec /nonexistent/check"],
        b"bad value",
    );
    assert_eq!(out.status.code(), Some(127), "{}", stderr(&out));
    assert_eq!(s.get_as("db", "web"), b"first value");
}

#[test]
fn previous_is_read_during_the_overlap_only_and_the_deadline_survives_restarts() {
    if !require_uid_switching("rotation overlap") {
        return;
    }
    let mut s = server();
    let out = rotate(&s, &["db", "--overlap", "20s"], b"second value");
    assert!(out.status.success(), "{}", stderr(&out));
    let until = history(&s, "db")[1]["overlap_until"].as_u64().unwrap();
    assert_eq!(
        read_as(&s, WEB, "/secret/db@previous").unwrap(),
        b"first value"
    );
    // A clean restart and a crash: the overlap stands, to the same deadline.
    s.stop_ok();
    s.serve();
    assert_eq!(history(&s, "db")[1]["overlap_until"], until);
    s.kill9();
    s.serve();
    if now() + 1 < until {
        assert_eq!(
            read_as(&s, WEB, "/secret/db@previous").unwrap(),
            b"first value"
        );
    }
    // Past the deadline: gone, before and after another restart.
    while now() <= until {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        read_as(&s, WEB, "/secret/db@previous").unwrap_err(),
        "9p: file does not exist"
    );
    s.kill9();
    s.serve();
    assert!(read_as(&s, WEB, "/secret/db@previous").is_err());
    // Still kept for a rollback, which makes it current again...
    let out = s.deploy_ok(&["secret", "rollback", "db", "--reason", "the new one broke"]);
    assert!(
        out.starts_with("rolled back db: version 1 is current again; version 2 is previous"),
        "{out}"
    );
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"first value");
    // ... and retire destroys it: nothing to roll back to.
    s.deploy_ok(&["secret", "retire", "db"]);
    let out = s.deploy(&["secret", "rollback", "db"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        states(&s, "db"),
        [(2, "destroyed".to_string()), (1, "current".to_string())]
    );
}

#[test]
fn held_fids_keep_reading_after_a_rotation_and_are_cut_off_by_revoke_previous() {
    if !require_uid_switching("rotation held fids") {
        return;
    }
    let s = server();
    let (mut on_v1, first) = Held::open(&s, WEB, "/secret/db");
    assert_eq!(first, "read first value");
    let out = rotate(&s, &["db"], b"second value");
    assert!(out.status.success(), "{}", stderr(&out));
    // A plain rotation: the fid goes on reading what it opened; a new open the new value.
    assert_eq!(on_v1.again(), "read first value");
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"second value");
    let (mut on_v2, first) = Held::open(&s, WEB, "/secret/db");
    assert_eq!(first, "read second value");
    // An incident: the old value destroyed, and every reader of an older one cut off.
    let out = rotate(
        &s,
        &[
            "db",
            "--generate",
            "{{random:hex:16}}",
            "--revoke-previous",
            "--reason",
            "INC-1",
        ],
        b"",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("every fid still reading it fails"),
        "{}",
        stdout(&out)
    );
    for held in [&mut on_v1, &mut on_v2] {
        assert_eq!(held.again(), "error file has been removed");
    }
    let new = read_as(&s, WEB, "/secret/db").unwrap();
    assert_eq!(new.len(), 32);
    assert!(new.iter().all(u8::is_ascii_hexdigit));
    assert!(read_as(&s, WEB, "/secret/db@previous").is_err());
    let h = history(&s, "db");
    assert_eq!(h[0]["reason"], "INC-1");
    assert!(
        h[1..]
            .iter()
            .all(|v| v["revoked"] == true && v["state"] == "destroyed")
    );
    // Generated values are in no log.
    assert!(!s.log_text().contains(std::str::from_utf8(&new).unwrap()));
}

#[test]
fn a_grant_that_ends_by_itself_and_the_stale_list() {
    if !require_uid_switching("rotation grants") {
        return;
    }
    let mut s = server();
    // A rotation period of a minute, to find the secret stale within the test.
    s.deploy_ok(&[
        "secret",
        "meta",
        "db",
        "--owner",
        "platform team",
        "--rotate-every",
        "1m",
    ]);
    let out = s.deploy_ok(&["secret", "list", "--stale", "--json"]);
    assert_eq!(
        serde_json::from_str::<Json>(&out).unwrap(),
        serde_json::json!([])
    );
    let out = s.deploy_ok(&["secret", "grant", "api", "db", "--expires", "6s"]);
    assert!(out.starts_with("granted db to api until "), "{out}");
    let list = s.deploy_ok(&["secret", "list", "--json"]);
    let list: Json = serde_json::from_str(&list).unwrap();
    assert_eq!(list[0]["granted_to"], serde_json::json!(["api", "web"]));
    assert!(list[0]["grants_end"]["api"].is_string(), "{list}");
    let table = s.deploy_ok(&["secret", "list"]);
    assert!(table.contains("api (until "), "{table}");
    let grants = s.ninep_as(0, "", &["read", "/secrets/grants/api"]);
    assert!(
        stdout(&grants).starts_with("db expires "),
        "{}",
        stdout(&grants)
    );
    // A restart keeps it, and when it ends.
    s.kill9();
    s.serve();
    assert_eq!(read_as(&s, API, "/secret/db").unwrap(), b"first value");
    let (mut held, first) = Held::open(&s, API, "/secret/db");
    assert_eq!(first, "read first value");
    let started = Instant::now();
    while read_as(&s, API, "/secret/db").is_ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the grant did not end"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // Ended: the held fid fails too, and within a housekeeping round it is gone from
    // the store (the grants file is empty), and from listings at once.
    assert_eq!(held.again(), "error file does not exist");
    assert_eq!(ls_as(&s, API, "/secret"), Vec::<String>::new());
    assert!(!s.deploy_ok(&["secret", "list"]).contains("api"));
    let started = Instant::now();
    loop {
        let grants = s.ninep_as(0, "", &["read", "/secrets/grants/api"]);
        if stdout(&grants).is_empty() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "never removed");
        std::thread::sleep(Duration::from_millis(250));
    }
    // A minute after it was set, db is stale, with its owner; a rotation makes it fresh.
    let set_at = history(&s, "db")[0]["created"].as_u64().unwrap();
    while now() < set_at + 60 {
        std::thread::sleep(Duration::from_millis(500));
    }
    let stale: Json =
        serde_json::from_str(&s.deploy_ok(&["secret", "list", "--stale", "--json"])).unwrap();
    assert_eq!(stale[0]["name"], "db");
    assert_eq!(stale[0]["owner"], "platform team");
    assert_eq!(stale[0]["rotate_every"], 60);
    assert!(stale[0]["age"].as_u64().unwrap() >= 60);
    let table = s.deploy_ok(&["secret", "list", "--stale"]);
    assert!(table.contains("platform team"), "{table}");
    let file = s.ninep_as(0, "", &["read", "/secrets/stale"]);
    let file: Json = serde_json::from_slice(&file.stdout).unwrap();
    assert_eq!(file, stale);
    let out = rotate(&s, &["db"], b"second value");
    assert!(out.status.success(), "{}", stderr(&out));
    let stale: Json =
        serde_json::from_str(&s.deploy_ok(&["secret", "list", "--stale", "--json"])).unwrap();
    assert_eq!(stale, serde_json::json!([]));
}

/// Writes ctl commands as the admin with the plain client, one Twrite per line; the
/// results read back (a refused command's error among them).
fn ctl(s: &SecretsServer, lines: &[u8]) -> String {
    let mut cmd = srv_secrets_tests::harness::as_uid(0, &bins().ninep);
    cmd.arg("--addr")
        .arg(s.addr())
        .args(["rpc", "/secrets/ctl"]);
    let out = srv_secrets_tests::harness::run_with_stdin(cmd, lines);
    assert!(out.status.success(), "{}", stderr(&out));
    stdout(&out)
}

#[test]
fn a_kill_9_after_each_step_leaves_it_done_or_rolled_back() {
    if !require_uid_switching("rotation kill -9") {
        return;
    }
    let mut s = server();
    // stage, then kill -9: the next start rolls the rotation back.
    let out = ctl(&s, b"reason 'step 1'\nstage db {12}\nsecond value\n");
    assert!(out.contains("ok stage db version=2"), "{out}");
    assert_eq!(
        read_as(&s, WEB, "/secret/db@pending").unwrap(),
        b"second value"
    );
    s.kill9();
    s.serve();
    assert!(read_as(&s, WEB, "/secret/db@pending").is_err());
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"first value");
    assert_eq!(states(&s, "db")[0], (2, "destroyed".to_string()));
    assert!(s.log_text().contains("discarded a pending version"));
    // stage and promote, then kill -9: done, overlap and all.
    let out = ctl(&s, b"stage db {11}\nthird value\npromote db overlap 1h\n");
    assert!(
        out.contains("ok promote db version=3 previous=1 until="),
        "{out}"
    );
    s.kill9();
    s.serve();
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"third value");
    assert_eq!(
        read_as(&s, WEB, "/secret/db@previous").unwrap(),
        b"first value"
    );
    // rollback, retire, discard: each durable when acknowledged.
    ctl(&s, b"rollback db\n");
    s.kill9();
    s.serve();
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"first value");
    ctl(&s, b"retire db\n");
    s.kill9();
    s.serve();
    assert!(ctl(&s, b"rollback db\n").contains("no previous version"));
    ctl(&s, b"stage db {6}\nfourth\ndiscard db\n");
    s.kill9();
    s.serve();
    assert_eq!(
        states(&s, "db")[..3],
        [
            (4, "destroyed".to_string()),
            (3, "destroyed".to_string()),
            (2, "destroyed".to_string())
        ]
    );
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"first value");
}

#[test]
fn a_kill_9_at_any_moment_of_a_rotation_leaves_it_whole_or_not_at_all() {
    if !require_uid_switching("rotation kill -9 loop") {
        return;
    }
    let mut s = server();
    let iterations: u64 = std::env::var("ROTATION_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let mut before = b"first value".to_vec();
    // How many rotations deploy saw through, and how many the kill cut short.
    let (mut whole, mut cut) = (0, 0);
    for i in 0..iterations {
        // A rotation with a test that reads the pending value (as web), killed after a
        // delay that moves through the steps: before the stage, during the test, after
        // the promotion.
        let test = format!(
            "{} read \"/secret/$SRV_SECRETS_SECRET@pending\" > /dev/null",
            ninep_in_test(WEB)
        );
        let mut deploy = Command::new(&bins().deploy);
        deploy
            .arg("--addr")
            .arg(s.addr())
            .args(["secret", "rotate", "db", "--overlap", "1h", "--test", &test])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = deploy.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("value {i}").as_bytes())
            .unwrap();
        std::thread::sleep(Duration::from_millis((i * 11) % 90));
        s.kill9();
        let out = child.wait_with_output().unwrap();
        s.serve();
        // Whatever the moment: no pending version, and what deploy was told holds.
        let h = history(&s, "db");
        assert!(
            h.iter().all(|v| v["state"] != "pending"),
            "iteration {i}: {h:?}"
        );
        assert_eq!(
            h.iter().filter(|v| v["state"] == "current").count(),
            1,
            "iteration {i}: {h:?}"
        );
        // Acknowledged: the new value. Cut off: the old one, or the new one if the
        // promotion landed before the kill; never anything half made.
        let value = read_as(&s, WEB, "/secret/db").unwrap();
        let new = format!("value {i}").into_bytes();
        if out.status.success() {
            whole += 1;
            assert_eq!(value, new, "iteration {i}");
        } else {
            cut += 1;
            assert!(value == before || value == new, "iteration {i}");
        }
        before = value;
        // A promoted rotation keeps its overlap across the crash.
        if h.iter()
            .any(|v| v["state"] == "previous" && v["overlap_until"].is_u64())
        {
            assert!(
                read_as(&s, WEB, "/secret/db@previous").is_ok(),
                "iteration {i}"
            );
        }
    }
    eprintln!("rotations through: {whole}, cut short by the kill: {cut}");
    // The delays cover both (the first ones kill before deploy is done, the last after).
    assert!(whole > 0 && cut > 0, "whole {whole}, cut {cut}");
    // And the next rotation works.
    let out = rotate(&s, &["db"], b"last value");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"last value");
}

#[test]
fn ctrl_c_during_the_test_discards_the_pending_version() {
    let s = server();
    let mut child = Command::new(&bins().deploy)
        .arg("--addr")
        .arg(s.addr())
        .args(["secret", "rotate", "db", "--test", "sleep 30"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"second value")
        .unwrap();
    let started = Instant::now();
    while states(&s, "db")[0].1 != "pending" {
        assert!(started.elapsed() < Duration::from_secs(20), "never staged");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "the test was not stopped"
    );
    assert_eq!(
        states(&s, "db"),
        [(2, "destroyed".to_string()), (1, "current".to_string())]
    );
    assert_eq!(s.get_as("db", "web"), b"first value");
}
