//! The adversarial suite (issue 14), over the unix socket: each case says what it tries
//! and what must happen, and runs against the real `srv-secrets` as a service's uid
//! (setpriv) with the plain client `9p`: its golden transcripts (tests/adversarial/,
//! played by `9p play`, every reply spelled out) and its raw attacks (`9p stall`,
//! `flood`, `connections`).
//!
//! After each case: nothing changed in the store (the signed head of the audit's
//! `changes` chain, the secrets and the services are as before), no value is in the
//! server's log, and the admin and another service are each served (a fresh
//! connection: attach, walk, open, read) within a second, while the attack is still
//! under way for the attacks that last.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{SecretsServer, can_switch_uid, stderr, stdout};

/// The attacker: a service granted `db`.
const WEB: u32 = 1301;
/// Another service, granted `apikey`: it must go on being served.
const API: u32 = 1302;
/// A uid mapped to no service.
const STRANGER: u32 = 1399;

/// The values stored: neither may appear anywhere the attacker or the log can see.
const DB_VALUE: &str = "ZQX-db-value";
const API_VALUE: &str = "ZQX-api-value";

/// How long the admin and a service may wait to be served, attack or not.
const SERVED_WITHIN: Duration = Duration::from_secs(1);

fn require(test: &str) -> bool {
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

/// A server with web granted db and api granted apikey.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    s.add_service("api", API, None);
    for (name, value) in [("db", DB_VALUE), ("apikey", API_VALUE)] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value.as_bytes());
        assert!(out.status.success(), "{}", stderr(&out));
    }
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "api", "apikey"]);
    s
}

/// What must not change: the head of the `changes` chain (every change is a record
/// there), the secrets and the services with their grants.
fn fingerprint(s: &SecretsServer) -> String {
    let head: serde_json::Value =
        serde_json::from_str(&s.deploy_ok(&["audit", "head", "--json"])).unwrap();
    format!(
        "{}\n{}\n{}",
        head["heads"]["changes"],
        s.deploy_ok(&["secret", "list", "--json"]),
        s.deploy_ok(&["service", "list", "--json"])
    )
}

/// The admin and api are each served within [`SERVED_WITHIN`], with what is theirs.
fn assert_served(s: &SecretsServer, during: &str) {
    let start = Instant::now();
    let out = s.ninep_as(API, "", &["read", "/secret/apikey"]);
    let api = start.elapsed();
    assert!(out.status.success(), "{during}: api: {}", stderr(&out));
    assert_eq!(stdout(&out), API_VALUE, "{during}");
    let start = Instant::now();
    let out = s.ninep_as(0, "", &["ls", "/secrets/store"]);
    let admin = start.elapsed();
    assert!(out.status.success(), "{during}: admin: {}", stderr(&out));
    assert_eq!(stdout(&out), "apikey\ndb\n", "{during}");
    assert!(
        api < SERVED_WITHIN && admin < SERVED_WITHIN,
        "{during}: api was served in {api:?}, the admin in {admin:?}"
    );
    eprintln!("{during}: api served in {api:?}, the admin in {admin:?}");
}

/// Runs `case`, then checks what every case must leave as it was.
fn after(s: &SecretsServer, before: &str, case: &str) {
    assert_eq!(fingerprint(s), before, "{case}: the store changed");
    let log = s.log_text();
    for value in [DB_VALUE, API_VALUE] {
        assert!(!log.contains(value), "{case}: a value is in the log");
    }
    assert_served(s, &format!("after {case}"));
}

fn transcript(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("adversarial")
        .join(format!("{name}.txt"))
}

/// `9p play FILE` as `uid`: every reply as the transcript spells it.
fn play_as(s: &SecretsServer, uid: u32, file: &Path) {
    let out = s.ninep_as(uid, "", &["play", &file.display().to_string()]);
    assert!(out.status.success(), "{}: {}", file.display(), stderr(&out));
}

#[test]
fn a_service_cannot_forge_names_escape_its_view_mutate_or_misuse_fids() {
    if !require("adversarial test") {
        return;
    }
    let s = server();
    let before = fingerprint(&s);
    for case in ["names", "walks", "mutations", "fids"] {
        play_as(&s, WEB, &transcript(case));
        after(&s, &before, case);
    }
    // What web's view lists: its own grant, nothing of api's, no admin file.
    let out = s.ninep_as(WEB, "", &["ls", "/"]);
    assert_eq!(stdout(&out), "config\nevents\nsecret\n");
    let out = s.ninep_as(WEB, "", &["ls", "/secret"]);
    assert_eq!(stdout(&out), "db\n");
    // A stranger (a uid mapped to no service) gets no tree at all.
    let out = s.ninep_as(STRANGER, "", &["ls", "/"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    after(&s, &before, "a stranger's attach");
}

#[test]
fn names_of_eight_kilobytes_reach_nothing_and_are_not_echoed() {
    if !require("adversarial test") {
        return;
    }
    let s = server();
    let before = fingerprint(&s);
    let long = "n".repeat(8192);
    let script = format!(
        "# 8 KiB names, within a 64 KiB msize: a walk to one is a walk to nothing, an\n\
         # attach with one is refused; no reply echoes the name.\n\
         Tversion tag 65535 msize 65536 version '9P2000'\n\
         Rversion tag 65535 msize 65536 version '9P2000'\n\
         Tattach tag 1 fid 0 afid -1 uname 'web' aname ''\n\
         Rattach tag 1 qid (0c00000000000000 0 d)\n\
         Twalk tag 2 fid 0 newfid 3 wname 'secret' '{long}'\n\
         Rwalk tag 2 wqid (0d00000000000000 0 d)\n\
         Twalk tag 3 fid 0 newfid 3 wname '{long}'\n\
         Rerror tag 3 ename 'file does not exist'\n\
         Tattach tag 4 fid 9 afid -1 uname '{long}' aname '{long}'\n\
         Rerror tag 4 ename 'permission denied'\n"
    );
    let file = s.root.path().join("longnames.txt");
    std::fs::write(&file, script).unwrap();
    play_as(&s, WEB, &file);
    // A name past the negotiated msize ends the connection, with an error first.
    let over = format!(
        "Tversion tag 65535 msize 8192 version '9P2000'\n\
         Rversion tag 65535 msize 8192 version '9P2000'\n\
         Tattach tag 1 fid 0 afid -1 uname 'web' aname ''\n\
         Rattach tag 1 qid (0c00000000000000 0 d)\n\
         Twalk tag 2 fid 0 newfid 3 wname '{long}'\n\
         Rerror tag 2 ename 'message of 8211 bytes is larger than msize 8192'\n"
    );
    std::fs::write(&file, over).unwrap();
    play_as(&s, WEB, &file);
    after(&s, &before, "8 KiB names");
}

/// A started attack: a `9p` raw mode, once it has said `ready`.
struct Attack {
    child: Child,
    said: String,
}

impl Attack {
    /// Starts `9p ARGS` as `uid` and waits (60 s at most: a thousand connections take a
    /// while on a loaded machine) for its `ready` line.
    fn start(s: &SecretsServer, uid: u32, args: &[&str]) -> Attack {
        let mut child = s.spawn_ninep_as(uid, "", args);
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // The reader stays, draining, so the attacker's stdout never closes under it.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next());
            lines.for_each(drop);
        });
        let said = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(Some(Ok(line))) => line,
            Ok(_) => {
                let out = child.wait_with_output().unwrap();
                panic!("{args:?} ended before it was ready: {}", stderr(&out));
            }
            Err(_) => {
                let _ = child.kill();
                panic!("{args:?}: not ready within 60 s");
            }
        };
        assert!(said.starts_with("ready"), "{args:?}: {said}");
        Attack { child, said }
    }
}

impl Drop for Attack {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn stalled_flooding_and_connection_hoarding_clients_do_not_starve_others() {
    if !require("adversarial test") {
        return;
    }
    let s = server();
    let before = fingerprint(&s);
    {
        // Ten connections that each send half a header and then nothing.
        let stalls: Vec<Attack> = (0..10)
            .map(|_| Attack::start(&s, WEB, &["stall"]))
            .collect();
        assert_served(&s, "during ten stalled messages");
        drop(stalls);
    }
    after(&s, &before, "stalled messages");
    {
        // A service that floods requests and never reads a reply.
        let _web = Attack::start(&s, WEB, &["flood"]);
        assert_served(&s, "during a service's flood of unread requests");
    }
    after(&s, &before, "a flood of unread requests");
    {
        // A thousand connections by one service, and a thousand by a stranger.
        let web = Attack::start(&s, WEB, &["connections", "1000"]);
        let stranger = Attack::start(&s, STRANGER, &["connections", "1000"]);
        eprintln!("web: {}, stranger: {}", web.said, stranger.said);
        // The caps held: far from all of them were served.
        for attack in [&web, &stranger] {
            let answered: usize = attack.said["ready ".len()..].parse().unwrap();
            assert!(answered < 1000, "{}", attack.said);
        }
        assert_served(&s, "during two thousand connections");
        // The admin's own tools work too, not only a fresh 9P client.
        let start = Instant::now();
        s.deploy_ok(&["secret", "list"]);
        assert!(start.elapsed() < SERVED_WITHIN * 2, "{:?}", start.elapsed());
    }
    after(&s, &before, "a thousand connections");
}

#[test]
fn a_flush_of_another_connections_tags_touches_only_its_own() {
    if !require("adversarial test") {
        return;
    }
    let s = server();
    // web waits on its events file: a read outstanding on its own connection.
    let mut follower = s.spawn_ninep_as(WEB, "", &["follow", "/events"]);
    let mut events = BufReader::new(follower.stdout.take().unwrap());
    // Give the read time to reach the server before api flushes every tag it could be.
    std::thread::sleep(Duration::from_millis(500));
    let mut script = String::from(
        "# Flushes, by api, of every tag web's waiting read could have: each is answered\n\
         # at once, since none is api's, and web's read goes on.\n\
         Tversion tag 65535 msize 8192 version '9P2000'\n\
         Rversion tag 65535 msize 8192 version '9P2000'\n\
         Tattach tag 1 fid 0 afid -1 uname 'api' aname ''\n\
         Rattach tag 1 ...\n",
    );
    for old in 0..64 {
        script.push_str(&format!(
            "Tflush tag {} oldtag {old}\nRflush tag {}\n",
            old + 100,
            old + 100
        ));
    }
    let file = s.root.path().join("flushes.txt");
    std::fs::write(&file, script).unwrap();
    play_as(&s, API, &file);
    // The read web is waiting on is still there: a change wakes it.
    let out = s.deploy_with_stdin(&["secret", "set", "db"], b"ZQX-db-value-2");
    assert!(out.status.success(), "{}", stderr(&out));
    let mut line = String::new();
    events.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "set db 2");
    let _ = follower.kill();
    let _ = follower.wait();
    assert!(!s.log_text().contains("ZQX-"));
    assert_served(&s, "after flushes of another connection's tags");
}
