//! Rotation that closes itself (issue 13, second section), end to end: the real
//! `srv-secrets` and `deploy`, and the plain 9P client `9p` run as each service's uid or
//! as the admin on a service's behalf.
//!
//! `deploy secret rotate --overlap D --retire-when-read` with two services, one reading
//! late (through a view the admin attached on its behalf, which counts as the service):
//! `deploy secret rotation-status` names the one still waited on, and the previous
//! version is retired once both have opened the new one, before its overlap ends; the
//! deadline variant, where a service never reads and the overlap's end retires it; and
//! the refusals of the flag without an overlap.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;
use std::time::{Duration, Instant};

use audit::Record;
use serde_json::Value as Json;
use srv_secrets_tests::harness::{
    SecretsServer, bins, can_switch_uid, run_with_stdin, stderr, stdout,
};

const WEB: u32 = 1201;
const API: u32 = 1202;

/// How long a rotation may take to close after its last open: the opens' flusher
/// records an open within a second or so, housekeeping runs every 5 s. Loose, for a
/// loaded machine.
const CLOSES_WITHIN: Duration = Duration::from_secs(30);

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

/// A started server with secret `db` ("first value", version 1) granted to web and api.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    s.add_service("api", API, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], b"first value");
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "api", "db"]);
    s
}

/// What `uid` (0: the admin, on behalf of the service `aname`) reads at `path`.
fn read_as(s: &SecretsServer, uid: u32, aname: &str, path: &str) -> Result<String, String> {
    let out = s.ninep_as(uid, aname, &["read", path]);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(stderr(&out).trim().to_string())
    }
}

/// `deploy secret rotation-status db --json`.
fn status(s: &SecretsServer) -> Json {
    serde_json::from_str(&s.deploy_ok(&["secret", "rotation-status", "db", "--json"])).unwrap()
}

fn waiting_on(s: &SecretsServer) -> Vec<String> {
    status(s)["waiting_on"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `deploy secret history db --json`, as (version, state) pairs.
fn states(s: &SecretsServer) -> Vec<(u64, String)> {
    let text = s.deploy_ok(&["secret", "history", "db", "--json"]);
    serde_json::from_str::<Vec<Json>>(&text)
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until `done` holds, asking every 200 ms; panics with `what` after `within`.
fn wait_for(what: &str, within: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The audit trail's retires of db.
fn retires(s: &SecretsServer) -> Vec<Record> {
    s.deploy_ok(&["audit", "list", "--json"])
        .lines()
        .map(|l| Record::from_json(l).unwrap().0)
        .filter(|r| r.action == "retire")
        .collect()
}

fn rotate_retire_when_read(s: &SecretsServer, overlap: &str) {
    let out = s.deploy_with_stdin(
        &[
            "secret",
            "rotate",
            "db",
            "--overlap",
            overlap,
            "--retire-when-read",
        ],
        b"second value",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn retire_when_read_closes_once_the_late_service_has_read_the_new_version() {
    if !require_uid_switching("closes test") {
        return;
    }
    let s = server();
    assert_eq!(read_as(&s, WEB, "", "/secret/db").unwrap(), "first value");
    rotate_retire_when_read(&s, "1h");

    let st = status(&s);
    assert_eq!(st["version"], 2);
    assert_eq!(st["previous"], 1);
    assert_eq!(st["retire_when_read"], true);
    assert_eq!(waiting_on(&s), ["api", "web"]);

    // web opens the new version; api, late, still reads the old one as @previous.
    assert_eq!(read_as(&s, WEB, "", "/secret/db").unwrap(), "second value");
    wait_for("web's open to be recorded", CLOSES_WITHIN, || {
        waiting_on(&s) == ["api"]
    });
    assert_eq!(
        read_as(&s, API, "", "/secret/db@previous").unwrap(),
        "first value"
    );
    let table = s.deploy_ok(&["secret", "rotation-status", "db"]);
    assert!(table.contains("waiting on 1 of 2: api"), "{table}");
    assert!(
        table.contains("or until every service below has opened the current version"),
        "{table}"
    );
    // Housekeeping runs meanwhile, and does not retire what api may still need.
    std::thread::sleep(Duration::from_secs(6));
    assert!(
        states(&s).contains(&(1, "previous".into())),
        "{:?}",
        states(&s)
    );

    // api reads the new value, through a view the admin attached on its behalf (as a
    // kernel mount does): that counts as api's open.
    assert_eq!(read_as(&s, 0, "api", "/secret/db").unwrap(), "second value");
    wait_for("the previous version to be retired", CLOSES_WITHIN, || {
        states(&s).contains(&(1, "destroyed".into()))
    });
    let err = read_as(&s, API, "", "/secret/db@previous").unwrap_err();
    assert!(!err.is_empty());
    let st = status(&s);
    assert!(st["previous"].is_null(), "{st}");
    assert!(waiting_on(&s).is_empty());
    let table = s.deploy_ok(&["secret", "rotation-status", "db"]);
    assert!(
        table.contains("every service granted it has opened the current version"),
        "{table}"
    );
    // The trail says who retired it and why.
    let retired = retires(&s);
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0].principal, "local");
    assert_eq!(retired[0].version, Some(1));
    assert_eq!(retired[0].reason.as_deref(), Some("read by every holder"));
    assert!(!s.log_text().contains("second value"));
}

#[test]
fn retire_when_read_closes_at_the_overlaps_end_if_a_service_never_reads() {
    if !require_uid_switching("closes test") {
        return;
    }
    let s = server();
    rotate_retire_when_read(&s, "3s");
    assert_eq!(read_as(&s, WEB, "", "/secret/db").unwrap(), "second value");
    // api never reads: the deadline closes the rotation.
    wait_for(
        "the overlap's end to retire the previous version",
        CLOSES_WITHIN,
        || states(&s).contains(&(1, "destroyed".into())),
    );
    assert_eq!(waiting_on(&s), ["api"]);
    assert!(status(&s)["previous"].is_null());
    let retired = retires(&s);
    assert_eq!(retired.len(), 1, "{retired:?}");
    assert_eq!(retired[0].reason.as_deref(), Some("its overlap ended"));
}

#[test]
fn retire_when_read_needs_an_overlap() {
    let s = server();
    let out = s.deploy_with_stdin(
        &["secret", "rotate", "db", "--retire-when-read"],
        b"second value",
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--overlap"), "{}", stderr(&out));
    // The ctl command says the same to a client that writes it by hand.
    let mut ctl = Command::new(&bins().ninep);
    ctl.args(["--addr", &s.addr(), "write", "/secrets/ctl"]);
    let out = run_with_stdin(ctl, b"promote db retire-when-read\n");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("overlap"), "{}", stderr(&out));
    // Nothing changed: version 1 is current, and no previous version was made.
    assert_eq!(states(&s)[0].0, 1);
    let st = status(&s);
    assert_eq!(st["version"], 1);
    assert!(st["previous"].is_null());
    let out = s.deploy(&["secret", "rotation-status", "nope"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("no such secret"), "{}", stderr(&out));
}
