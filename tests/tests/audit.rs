//! The audit trail end to end (issue 12, "The audit trail"): the real `srv-secrets` and
//! `deploy`, and the plain 9P client `9p` run as a service's uid.
//!
//! Every kind of change recorded with its actor, reason and version; opens recorded, by
//! the service and by the admin on its behalf, and flushed at SIGTERM; no value anywhere
//! in the trail; the trail admin-only; an exported log verified with the public key alone,
//! and a changed, removed, inserted, reordered and cut log each named by verify, a
//! re-hashed forgery by its signature; a command refused on a full disk with nothing
//! changed; the trail across a restart, a backup and its restore, and rotate-key; opens
//! past the queue's bound said not recorded; `deploy audit follow`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use audit::Record;
use srv_secrets_tests::harness::{SecretsServer, bins, can_switch_uid, stderr, stdout};

const WEB: u32 = 1201;
const API: u32 = 1202;
/// What `db` holds: never to be seen in the trail.
const VALUE: &[u8] = b"s3cret-value-4f1d9";
const NEXT_VALUE: &[u8] = b"s3cret-value-77e20";

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

/// A started server with `db` granted to web; api granted nothing.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    s.add_service("api", API, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s
}

/// Every record, as `deploy audit list --json` prints them.
fn records(s: &SecretsServer) -> Vec<Record> {
    s.deploy_ok(&["audit", "list", "--json"])
        .lines()
        .map(|l| Record::from_json(l).unwrap().0)
        .collect()
}

/// The records of `action`.
fn of<'a>(all: &'a [Record], action: &str) -> Vec<&'a Record> {
    all.iter().filter(|r| r.action == action).collect()
}

/// How many opens the records of opens count (a record stands for `count` alike opens
/// of one batch).
fn opens_counted(all: &[Record]) -> u64 {
    of(all, "open")
        .iter()
        .map(|r| {
            r.details
                .get("count")
                .map_or(1, |n| n.parse::<u64>().unwrap())
        })
        .sum()
}

/// Waits (at most 10 s) until `check` holds of the trail.
fn until(s: &SecretsServer, what: &str, check: impl Fn(&[Record]) -> bool) -> Vec<Record> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let all = records(s);
        if check(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "{what}: {all:#?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn every_kind_of_change_is_recorded_with_its_actor_reason_and_version_and_never_a_value() {
    let s = server();
    let reason = ["--reason", "INC-7: rotate after the leak"];
    let with = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(reason);
        s.deploy_ok(&a)
    };
    let out = s.deploy_with_stdin(&["secret", "set", "short"], b"y");
    assert!(out.status.success(), "{}", stderr(&out));
    with(&["secret", "grant", "web", "short", "--expires", "2s"]);
    let out = s.deploy_with_stdin(
        &[
            "secret",
            "rotate",
            "db",
            "--overlap",
            "1h",
            "--reason",
            "quarterly",
        ],
        NEXT_VALUE,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    with(&["secret", "rollback", "db"]);
    with(&["secret", "retire", "db"]);
    with(&["secret", "revoke", "web", "db"]);
    with(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["tier", "add", "desktop"]);
    s.deploy_ok(&["secret", "meta", "db", "--owner", "platform"]);
    with(&["secret", "rotate-key"]);
    let out = s.deploy_with_stdin(&["secret", "set", "spare"], b"x");
    assert!(out.status.success(), "{}", stderr(&out));
    with(&["secret", "delete", "spare"]);
    with(&["service", "remove", "api"]);
    // A refusal is recorded too, and changes nothing.
    let out = s.deploy(&["secret", "revoke", "web", "nosuch", "--reason", "typo"]);
    assert!(!out.status.success());
    let all = until(&s, "the grant's end", |all| !of(all, "expire").is_empty());

    let admin_uid = rustix::process::geteuid().as_raw();
    let grant = of(&all, "grant")[0];
    assert_eq!(grant.principal, "admin");
    assert_eq!(grant.uid, Some(admin_uid));
    assert_eq!(grant.reason, None, "the grant before --reason has none");
    let expiring = of(&all, "grant")
        .into_iter()
        .find(|r| r.target["secret"] == "short")
        .unwrap();
    assert_eq!(expiring.target["service"], "web");
    assert_eq!(
        expiring.reason.as_deref(),
        Some("INC-7: rotate after the leak")
    );
    assert!(expiring.details.contains_key("expires"));
    let stage = of(&all, "stage")[0];
    let promote = of(&all, "promote")[0];
    assert_eq!((stage.version, promote.version), (Some(2), Some(2)));
    assert_eq!(promote.reason.as_deref(), Some("quarterly"));
    assert_eq!(promote.details["previous"], "1");
    assert!(promote.details.contains_key("overlap_until"));
    assert_eq!(of(&all, "rollback")[0].version, Some(1));
    assert_eq!(of(&all, "retire")[0].version, Some(2));
    assert_eq!(of(&all, "revoke")[0].target["service"], "web");
    let refused = of(&all, "revoke")[1];
    assert_eq!(refused.result, "refused: no such secret");
    assert_eq!(refused.reason.as_deref(), Some("typo"));
    assert_eq!(of(&all, "tier-add")[0].target["tier"], "desktop");
    assert_eq!(of(&all, "meta")[0].target["secret"], "db");
    let rotations = of(&all, "rotate-key");
    assert_eq!(rotations.len(), 2);
    assert_eq!(
        (rotations[0].result.as_str(), rotations[1].result.as_str()),
        ("started", "ok")
    );
    assert_eq!(of(&all, "delete")[0].target["secret"], "spare");
    assert_eq!(of(&all, "service-remove")[0].target["service"], "api");
    assert_eq!(of(&all, "service-uid").len(), 2);
    // What ended by itself: by this process, saying so.
    let ended = of(&all, "expire")[0];
    assert_eq!(ended.target["secret"], "short");
    assert_eq!(
        (ended.principal.as_str(), ended.reason.as_deref()),
        ("local", Some("ended by itself"))
    );
    assert_eq!(of(&all, "audit-start").len(), 1);
    // Every record is signed (every change is), and the whole trail verifies.
    assert!(
        all.iter()
            .filter(|r| r.chain == "changes")
            .all(|r| r.sig.is_some())
    );
    let v = s.deploy_ok(&["audit", "verify"]);
    assert!(v.starts_with("verified: "), "{v}");
    // No value in the trail as exported, nor in the table.
    let json = s.deploy_ok(&["audit", "list", "--json"]);
    let table = s.deploy_ok(&["audit", "list"]);
    for text in [&json, &table] {
        assert!(!contains(text.as_bytes(), VALUE));
        assert!(!contains(text.as_bytes(), NEXT_VALUE));
    }
    assert!(table.contains("INC-7: rotate after the leak"), "{table}");
    // Filters.
    let only = s.deploy_ok(&["audit", "list", "--json", "--action", "rollback"]);
    assert_eq!(only.lines().count(), 1, "{only}");
    let since = s.deploy_ok(&[
        "audit", "list", "--json", "--since", "1h", "--secret", "spare",
    ]);
    assert_eq!(since.lines().count(), 2, "{since}");
    let none = s.deploy_ok(&["audit", "list", "--json", "--until", "2000-01-01T00:00:00Z"]);
    assert!(none.is_empty(), "{none}");
}

#[test]
fn opens_are_recorded_by_the_service_and_by_the_admin_on_its_behalf() {
    if !require_uid_switching("opens_are_recorded") {
        return;
    }
    let mut s = server();
    let out = s.ninep_as(WEB, "", &["read", "secret/db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(out.stdout, VALUE);
    assert_eq!(s.get_as("db", "web"), VALUE);
    let all = until(&s, "two opens", |all| of(all, "open").len() >= 2);
    let opens = of(&all, "open");
    let by_web = opens.iter().find(|r| r.principal == "service web").unwrap();
    assert_eq!(by_web.uid, Some(WEB));
    assert_eq!(
        (
            by_web.target["secret"].as_str(),
            by_web.target["service"].as_str(),
            by_web.version
        ),
        ("db", "web", Some(1))
    );
    let by_admin = opens.iter().find(|r| r.principal == "admin").unwrap();
    assert_eq!(
        by_admin.target["service"], "web",
        "counted by the view's service"
    );
    assert!(opens.iter().all(|r| r.chain == "opens"));
    // The opens' chain verifies too; no value is in it.
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
    let raw = s.deploy_ok(&["audit", "list", "--json", "--service", "web"]);
    assert!(!contains(raw.as_bytes(), VALUE));
    // Opens made just before a SIGTERM are flushed by the stop.
    let out = s.ninep_as(WEB, "", &["opens", "25", "secret/db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.stop_ok();
    s.serve();
    let all = records(&s);
    assert_eq!(opens_counted(&all), 27, "{all:#?}");
    // The audit is the admin's: not in a service's view, refused in the admin tree.
    let out = s.ninep_as(WEB, "", &["read", "secrets/audit"]);
    assert!(!out.status.success());
    let out = s.ninep_as(WEB, "admin", &["read", "secrets/audit"]);
    assert!(
        stderr(&out).contains("permission denied"),
        "{}",
        stderr(&out)
    );
    let mut cmd = srv_secrets_tests::harness::as_uid(WEB, &bins().deploy);
    let out = cmd
        .args(["--addr", &s.addr(), "audit", "list"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!out.stdout.windows(4).any(|w| w == b"open"));
}

/// Writes `lines` to a file in the server's directory; its path.
fn log_file(s: &SecretsServer, name: &str, lines: &[String]) -> String {
    let path = s.root.path().join(name);
    std::fs::write(
        &path,
        lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    path.display().to_string()
}

/// `deploy audit verify --log FILE --public-key KEY [--head H]`: success, and its output.
fn verify_log(file: &str, key: &str, head: Option<&str>) -> (bool, String) {
    let mut args = vec!["audit", "verify", "--log", file, "--public-key", key];
    if let Some(h) = head {
        args.extend(["--head", h]);
    }
    // No server needed: the address points nowhere.
    let out = Command::new(&bins().deploy)
        .args(["--addr", "unix:/nonexistent/9p.sock"])
        .args(&args)
        .output()
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    match out.status.code() {
        Some(0) => (true, text),
        Some(1) => (false, text),
        other => panic!("verify exited {other:?}: {text}"),
    }
}

#[test]
fn an_exported_log_verifies_with_the_public_key_alone_and_tampering_is_named() {
    let s = server();
    for i in 0..6 {
        let out = s.deploy_with_stdin(&["secret", "set", &format!("s{i}")], b"v");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let head_text = s.deploy_ok(&["audit", "head"]);
    let key = head_text
        .lines()
        .find_map(|l| l.strip_prefix("public key  "))
        .unwrap()
        .trim()
        .to_owned();
    let head = head_text
        .lines()
        .find_map(|l| l.strip_prefix("changes"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let lines: Vec<String> = s
        .deploy_ok(&["audit", "list", "--json", "--chain", "changes"])
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(lines.len() >= 9);
    let good = log_file(&s, "good.jsonl", &lines);
    let (ok, text) = verify_log(&good, &key, Some(&head));
    assert!(ok, "{text}");
    assert!(text.contains(&format!("changes   {head}")), "{text}");
    // Another key: the first signature fails.
    let other = "ab".repeat(32);
    let (ok, text) = verify_log(&good, &other, None);
    assert!(
        !ok && text.contains("changes record 1: its signature does not verify"),
        "{text}"
    );

    let seq = |line: &str| Record::from_json(line).unwrap().0.seq;
    // A record changed (its reason), its hash left as it was.
    let mut changed = lines.clone();
    changed[4] = changed[4].replacen(r#""result":"ok""#, r#""result":"ok","reason":"nothing""#, 1);
    let (ok, text) = verify_log(&log_file(&s, "changed.jsonl", &changed), &key, None);
    assert!(!ok, "{text}");
    assert!(
        text.contains(&format!(
            "line 5: changes record {}: its contents do not match its hash",
            seq(&lines[4])
        )),
        "{text}"
    );
    // Removed.
    let mut removed = lines.clone();
    removed.remove(3);
    let (ok, text) = verify_log(&log_file(&s, "removed.jsonl", &removed), &key, None);
    assert!(
        !ok && text.contains(&format!("record {} was removed", seq(&lines[3]))),
        "{text}"
    );
    // Inserted: a copy of an earlier record.
    let mut inserted = lines.clone();
    inserted.insert(5, lines[2].clone());
    let (ok, text) = verify_log(&log_file(&s, "inserted.jsonl", &inserted), &key, None);
    assert!(
        !ok && text.contains("line 6: ") && text.contains("a record was inserted"),
        "{text}"
    );
    // Reordered.
    let mut reordered = lines.clone();
    reordered.swap(5, 6);
    let (ok, text) = verify_log(&log_file(&s, "reordered.jsonl", &reordered), &key, None);
    assert!(
        !ok && text.contains("line 6: ") && text.contains("reordered"),
        "{text}"
    );
    // Cut at a signed record: whole as far as it goes, but short of the head kept.
    let cut = &lines[..lines.len() - 2];
    let file = log_file(&s, "cut.jsonl", cut);
    assert!(verify_log(&file, &key, None).0);
    let (ok, text) = verify_log(&file, &key, Some(&head));
    assert!(!ok && text.contains("its tail was cut off"), "{text}");
    // A forgery re-hashed throughout: the next signature fails.
    let mut forged: Vec<Record> = lines
        .iter()
        .map(|l| Record::from_json(l).unwrap().0)
        .collect();
    forged[3].target.insert("secret".into(), "forged".into());
    let mut prev = forged[3].hash();
    for r in &mut forged[4..] {
        r.prev = prev;
        prev = r.hash();
    }
    let forged: Vec<String> = forged.iter().map(Record::to_json).collect();
    let (ok, text) = verify_log(&log_file(&s, "forged.jsonl", &forged), &key, None);
    assert!(
        !ok && text.contains(&format!(
            "changes record {}: its signature does not verify",
            seq(&lines[3])
        )),
        "{text}"
    );
    // The server's own copy verifies against the head too.
    let v = s.deploy_ok(&["audit", "verify", "--head", &head]);
    assert!(v.starts_with("verified: "), "{v}");
}

/// A tmpfs of `size` mounted on a directory (unmounted on drop); `None` where this
/// process may not mount (not root), which CI (root) must not meet.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        use rustix::mount::{MountFlags, mount};
        let dir = srv_secrets_tests::harness::shared_tempdir();
        let data = std::ffi::CString::new(format!("size={size},mode=0755")).unwrap();
        let why = if rustix::process::geteuid().is_root() {
            match mount(
                "tmpfs",
                dir.path(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                data.as_c_str(),
            ) {
                Ok(()) => return Some(Tmpfs(dir)),
                Err(e) => format!("mount(2) failed: {e}"),
            }
        } else {
            "not running as root".to_owned()
        };
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot mount a tmpfs: {why}"
        );
        eprintln!("SKIPPED: cannot mount a tmpfs: {why}");
        None
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(self.0.path(), rustix::mount::UnmountFlags::DETACH);
    }
}

fn fill(path: &Path) {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling: {e}"),
        }
    }
}

#[test]
fn a_command_whose_record_cannot_be_written_is_refused_and_changes_nothing() {
    let Some(fs) = Tmpfs::mount("4m") else {
        return;
    };
    let mut s = SecretsServer::init_at(fs.0.path().join("data"));
    s.serve();
    s.add_service("web", WEB, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    let filler = fs.0.path().join("filler");
    fill(&filler);
    // redb may have room left in its file: grant and revoke until a commit fails.
    let mut refused = None;
    for i in 0..400 {
        let args: &[&str] = if i % 2 == 0 {
            &["secret", "grant", "web", "db"]
        } else {
            &["secret", "revoke", "web", "db"]
        };
        let before = s.deploy_ok(&["secret", "list", "--json"]);
        let head = s.deploy_ok(&["audit", "head", "--json"]);
        let out = s.deploy(args);
        if !out.status.success() {
            refused = Some((args, before, head, stderr(&out)));
            break;
        }
    }
    let (args, before, head, error) = refused.expect("a commit fails on a full disk");
    assert!(error.contains("the store failed"), "{error}");
    // Nothing changed: not the grant, not the trail.
    assert_eq!(s.deploy_ok(&["secret", "list", "--json"]), before);
    assert_eq!(s.deploy_ok(&["audit", "head", "--json"]), head);
    // Space again: the same command goes through, and is recorded after the last one.
    std::fs::remove_file(&filler).unwrap();
    s.deploy_ok(args);
    let all = records(&s);
    assert_eq!(all.last().unwrap().action, args[1]);
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
    s.stop_ok();
    drop(s);
}

#[test]
fn the_trail_survives_a_restart_a_backup_and_its_restore_and_rotate_key() {
    let mut s = server();
    let heads = |s: &SecretsServer| s.deploy_ok(&["audit", "head", "--json"]);
    let key_of =
        |h: &str| serde_json::from_str::<serde_json::Value>(h).unwrap()["public_key"].clone();
    let first = heads(&s);
    s.stop_ok();
    s.serve();
    assert_eq!(heads(&s), first, "a restart keeps the trail as it was");
    s.deploy_ok(&["secret", "rotate-key", "--reason", "yearly"]);
    let after_rotation = heads(&s);
    assert_eq!(
        key_of(&after_rotation),
        key_of(&first),
        "the signing key is not rotated"
    );
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
    // A backup carries the trail; a restore brings it back as it was then.
    let file = s.root.path().join("backup.redb");
    s.deploy_ok(&["backup", file.to_str().unwrap()]);
    let at_backup = heads(&s);
    let backed_up = records(&s).len();
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    s.stop_ok();
    std::fs::copy(&file, s.data.join("store.redb")).unwrap();
    s.serve();
    assert_eq!(heads(&s), at_backup);
    assert_eq!(records(&s).len(), backed_up);
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
    // And goes on from there.
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    assert_eq!(records(&s).len(), backed_up + 1);
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
}

#[test]
fn opens_past_the_queue_bound_are_said_not_recorded() {
    if !require_uid_switching("opens_past_the_queue_bound") {
        return;
    }
    let mut s = SecretsServer::init();
    s.args = vec!["--audit-queue".into(), "2".into()];
    s.serve();
    s.add_service("web", WEB, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    let out = s.ninep_as(WEB, "", &["opens", "3000", "secret/db"]);
    assert!(out.status.success(), "{}", stderr(&out));
    s.stop_ok();
    s.serve();
    let all = records(&s);
    let recorded = opens_counted(&all);
    let lost: u64 = of(&all, "opens-not-recorded")
        .iter()
        .map(|r| r.details["count"].parse::<u64>().unwrap())
        .sum();
    assert!(
        lost > 0,
        "3000 opens through a queue of 2 lost none: {recorded} recorded"
    );
    assert_eq!(recorded + lost, 3000, "every open is recorded or counted");
    let table = s.deploy_ok(&["audit", "list", "--action", "opens-not-recorded"]);
    assert!(table.contains("opens not recorded"), "{table}");
    assert!(s.deploy_ok(&["audit", "verify"]).starts_with("verified: "));
}

#[test]
fn follow_prints_records_as_they_come_and_stops_cleanly_on_sigterm() {
    let s = server();
    let mut child = Command::new(&bins().deploy)
        .args(["--addr", &s.addr(), "audit", "follow", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Give it its starting point, then change something.
    std::thread::sleep(Duration::from_millis(700));
    s.deploy_ok(&["secret", "revoke", "web", "db", "--reason", "follow me"]);
    let line = lines.next().unwrap().unwrap();
    let (record, _) = Record::from_json(&line).unwrap();
    assert_eq!(
        (record.action.as_str(), record.reason.as_deref()),
        ("revoke", Some("follow me"))
    );
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}
