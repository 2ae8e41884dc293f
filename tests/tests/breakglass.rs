//! Break-glass end to end (issue 12, "Break-glass", and "Who holds what"'s matrix): the
//! real `srv-secrets` and `deploy`, and the plain 9P client `9p` run as each service's
//! uid.
//!
//! A freeze with reads going on (a fid a service holds, and its new opens, read
//! throughout), each thing it refuses and each thing it lets through, across a restart,
//! and what `deploy status` says of it; revoke-all with two services holding fids;
//! suspend (reads of secrets and config fail, on held fids too, grants kept) and resume;
//! the ownership matrix as a table, JSON, CSV and Markdown, an owner with a comma, a pipe
//! and quotes escaped in each; and through the kernel's v9fs, a view the deployer mounted
//! before a freeze reading on through it, and a suspension's EACCES.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Output;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value as Json;
use srv_secrets_tests::harness::{
    Held, SecretsServer, as_uid, bins, can_curl, can_switch_uid, curl, run_with_stdin, stderr,
    stdout,
};

const WEB: u32 = 1201;
const WORKER: u32 = 1202;

/// What every refusal of a freeze says.
const FROZEN: &str = "frozen (see deploy status)";

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

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A started server with secrets db ("first value") and api_key, services web (1201,
/// manifest: db and config level=debug; granted db) and worker (1202, granted db and
/// api_key).
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service("web", WEB, Some("secret db\nconfig level=debug\n"));
    s.add_service("worker", WORKER, None);
    for (name, value) in [("db", &b"first value"[..]), ("api_key", b"key one")] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "worker", "db"]);
    s.deploy_ok(&["secret", "grant", "worker", "api_key"]);
    s
}

/// What `uid` reads at `path` of its own view, over a new connection: the bytes, or the
/// client's error.
fn read_as(s: &SecretsServer, uid: u32, path: &str) -> Result<Vec<u8>, String> {
    let out = s.ninep_as(uid, "", &["read", path]);
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(stderr(&out).trim().to_string())
    }
}

/// Writes ctl commands as the admin with the plain client, one Twrite per line: what it
/// reads back, and what it printed of refused writes.
fn ctl(s: &SecretsServer, lines: &[u8]) -> (String, String) {
    let mut cmd = as_uid(0, &bins().ninep);
    cmd.arg("--addr")
        .arg(s.addr())
        .args(["rpc", "/secrets/ctl"]);
    let out = run_with_stdin(cmd, lines);
    assert!(out.status.success(), "{}", stderr(&out));
    (stdout(&out), stderr(&out))
}

/// Asserts that `deploy args` failed with exit 1, saying it is frozen.
fn assert_frozen(out: &Output, args: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(1),
        "deploy {args:?} was not refused: {}{}",
        stdout(out),
        stderr(out)
    );
    assert!(
        stderr(out).contains(FROZEN),
        "deploy {args:?}: {}",
        stderr(out)
    );
}

fn write(s: &SecretsServer, name: &str, text: &str) -> String {
    let path = s.root.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn status_json(s: &SecretsServer) -> Json {
    serde_json::from_str(&s.deploy_ok(&["status", "--json"])).unwrap()
}

#[test]
fn a_freeze_refuses_what_deploys_while_reads_go_on_and_the_incident_is_answered() {
    if !require_uid_switching("freeze") {
        return;
    }
    let s = server();
    // A tier, a secret's strategy there and a delegated reference, for the catalog's
    // commands to be refused on; a catalog file; a manifest file.
    s.deploy_ok(&["tier", "add", "desktop"]);
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db",
        "--tier",
        "desktop",
        "--generate",
        "{{random:hex:16}}",
    ]);
    s.deploy_ok(&["service", "tiers", "web", "desktop"]);
    s.deploy_ok(&[
        "secret",
        "delegate",
        "api_key",
        "--tier",
        "desktop",
        "--ref",
        "env:API_KEY",
    ]);
    let catalog = write(&s, "catalog.toml", "[tiers.cloud]\n");
    let manifest = write(&s, "web2.manifest", "secret db\nsecret api_key\n");
    let set = s.deploy_with_stdin(&["secret", "set", "scratch"], b"scratch value");
    assert!(set.status.success(), "{}", stderr(&set));
    // web holds a secret and a config file open, throughout.
    let (mut held, first) = Held::open(&s, WEB, "/secret/db");
    assert_eq!(first, "read first value");
    let (mut config, first) = Held::open(&s, WEB, "/config/level");
    assert_eq!(first, "read debug");

    let before = now();
    let out = s.deploy_ok(&["freeze", "--reason", "INC-42: token leaked"]);
    assert!(out.starts_with("froze deploys at "), "{out}");
    // Status: since when, by whom, why.
    let status = status_json(&s);
    let frozen = &status["frozen"];
    assert_eq!(frozen["by"], "admin (uid 0)");
    assert_eq!(frozen["reason"], "INC-42: token leaked");
    let since = frozen["since"].as_u64().unwrap();
    assert!(since >= before && since <= now(), "{since}");
    let text = s.deploy_ok(&["status"]);
    assert!(
        text.contains("frozen:     yes, since ")
            && text.contains(" by admin (uid 0): INC-42: token leaked\n"),
        "{text}"
    );
    let file = s.ninep_as(0, "", &["read", "/secrets/status"]);
    assert!(
        stdout(&file).contains(&format!(
            "frozen {since}\nfrozen-by admin (uid 0)\nfrozen-reason INC-42: token leaked\n"
        )),
        "{}",
        stdout(&file)
    );
    // Freezing again changes nothing.
    let out = s.deploy_ok(&["freeze", "--reason", "again"]);
    assert!(out.starts_with("deploys were frozen already"), "{out}");
    assert_eq!(status_json(&s)["frozen"]["reason"], "INC-42: token leaked");

    // Reads go on: the held fids, and the service's own new connections.
    assert_eq!(held.again(), "read first value");
    assert_eq!(config.again(), "read debug");
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"first value");
    assert_eq!(read_as(&s, WEB, "/config/level").unwrap(), b"debug");
    assert_eq!(read_as(&s, WORKER, "/secret/api_key").unwrap(), b"key one");

    // Each thing a freeze refuses.
    let out_dir = s.root.path().join("bundle-out");
    let out_dir = out_dir.to_str().unwrap();
    let mount_dir = s.root.path().join("mnt");
    std::fs::create_dir(&mount_dir).unwrap();
    let mount_dir = mount_dir.to_str().unwrap();
    let refused: Vec<Vec<&str>> = vec![
        vec!["secret", "grant", "web", "api_key"],
        vec!["secret", "grant", "web", "api_key", "--expires", "1h"],
        vec!["service", "add", "new", "--uid", "1203"],
        vec![
            "service",
            "add",
            "web",
            "--uid",
            "1201",
            "--manifest",
            &manifest,
        ],
        vec!["service", "add", "worker", "--uid", "1204"],
        vec!["service", "remove", "worker"],
        vec!["service", "tiers", "web", "--all"],
        vec!["tier", "add", "cloud"],
        vec!["tier", "remove", "desktop"],
        vec!["secret", "meta", "db", "--owner", "platform"],
        vec!["secret", "meta", "db", "--remove"],
        vec!["secret", "strategy", "db", "--tier", "desktop", "--strip"],
        vec!["secret", "strategy", "db", "--tier", "desktop", "--remove"],
        vec!["secret", "present", "api_key", "--tier", "desktop"],
        vec![
            "secret",
            "delegate",
            "api_key",
            "--tier",
            "desktop",
            "--ref",
            "env:OTHER",
        ],
        vec!["catalog", "apply", &catalog],
        vec![
            "bundle",
            "create",
            "--service",
            "web",
            "--tier",
            "desktop",
            "--deployment",
            "d1",
            "--out",
            out_dir,
        ],
        vec!["service", "check", "web"],
        vec!["service", "check", "web", "--json"],
        vec!["service", "run", "web", "--mount", "fuse", "--", "true"],
        vec!["secret", "get", "db", "--as", "web"],
        vec!["mount", "web", mount_dir, "--foreground"],
    ];
    for args in &refused {
        let out = s.deploy(args);
        assert_frozen(&out, args);
    }
    // Nothing of them happened.
    let services: Json =
        serde_json::from_str(&s.deploy_ok(&["service", "list", "--json"])).unwrap();
    let names: Vec<&str> = services
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["web", "worker"]);
    assert_eq!(services[0]["secrets"], serde_json::json!(["db"]));
    assert_eq!(services[1]["uid"], WORKER);
    assert_eq!(services[0]["granted"], serde_json::json!(["db"]));
    assert!(!std::path::Path::new(out_dir).exists());
    let export = s.deploy_ok(&["catalog", "export"]);
    assert!(!export.contains("cloud"), "{export}");
    // The server refuses the admin's attach of a service's view itself, to any client.
    let attach = s.ninep_as(0, "web", &["read", "/secret/db"]);
    assert_eq!(stderr(&attach).trim(), format!("9p: {FROZEN}"));
    // And every refused change over ctl, in its words.
    let (_, errors) = ctl(
        &s,
        b"grant web api_key\nservice new uid 1203\ntier add cloud\nbegin\nset x {1}\n1\n\
          grant web x\ncommit\n",
    );
    for verb in ["grant", "service", "tier"] {
        assert!(
            errors.contains(&format!("{verb}: {FROZEN}")),
            "{verb}: {errors}"
        );
    }
    // The grant inside the transaction (line 6: a literal's bytes count as its own
    // line's) is what stopped it.
    assert!(
        errors.contains(&format!("line 6: grant: {FROZEN}")),
        "{errors}"
    );
    assert!(
        s.deploy_ok(&["secret", "list"])
            .lines()
            .all(|l| !l.starts_with("x "))
    );

    // Each thing that answers the incident goes on, and every read-only query.
    let mut allowed: Vec<(Vec<&str>, &[u8])> = vec![
        (vec!["secret", "set", "api_key"], b"key two"),
        (
            vec!["secret", "rotate", "db", "--reason", "INC-42"],
            b"second value",
        ),
        (vec!["secret", "rollback", "db", "--reason", "INC-42"], b""),
        (vec!["secret", "rotate", "db"], b"third value"),
        (vec!["secret", "retire", "db"], b""),
        (vec!["secret", "revoke", "worker", "api_key"], b""),
        (
            vec!["secret", "revoke-all", "api_key", "--reason", "INC-42"],
            b"",
        ),
        (
            vec!["service", "suspend", "worker", "--reason", "INC-42"],
            b"",
        ),
        (
            vec!["service", "resume", "worker", "--reason", "INC-42"],
            b"",
        ),
        (vec!["secret", "delete", "scratch"], b""),
    ];
    for query in [
        &["status"][..],
        &["secret", "list"],
        &["secret", "list", "--stale"],
        &["secret", "history", "db"],
        &["secret", "matrix"],
        &["service", "list"],
        &["catalog", "export"],
        &["catalog", "apply", &catalog, "--dry-run"],
        &["bundle", "list"],
    ] {
        allowed.push((query.to_vec(), b""));
    }
    for (args, stdin) in &allowed {
        let out = s.deploy_with_stdin(args, stdin);
        assert!(
            out.status.success(),
            "deploy {args:?} while frozen: {}",
            stderr(&out)
        );
    }
    // The catalog's reports answer, findings and all (their exit status says whether
    // there are any: not a refusal).
    for args in [
        &["secret", "lint", "--json"][..],
        &[
            "secret",
            "plan",
            "--service",
            "web",
            "--tier",
            "desktop",
            "--json",
        ],
    ] {
        let out = s.deploy(args);
        assert!(
            !stderr(&out).contains(FROZEN),
            "deploy {args:?}: {}",
            stderr(&out)
        );
        serde_json::from_slice::<Json>(&out.stdout)
            .unwrap_or_else(|e| panic!("deploy {args:?}: {e}: {}", stderr(&out)));
    }
    // A plain rotation left the held fid reading what it opened; a new open reads the
    // newest value.
    assert_eq!(held.again(), "read first value");
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"third value");
    assert_eq!(config.again(), "read debug");
    assert!(read_as(&s, WORKER, "/secret/api_key").is_err());
    // A key rotation too (after which the held fid's version, destroyed by the retire,
    // can no longer be read: as without a freeze).
    s.deploy_ok(&["secret", "rotate-key"]);
    assert_eq!(read_as(&s, WEB, "/secret/db").unwrap(), b"third value");
    // Still frozen through all that.
    assert_eq!(status_json(&s)["frozen"]["since"], since);

    // Unfrozen, deploys go on.
    let out = s.deploy_ok(&["unfreeze", "--reason", "INC-42: rotated and restarted"]);
    assert!(out.starts_with("unfroze deploys"), "{out}");
    assert_eq!(status_json(&s)["frozen"], Json::Null);
    assert!(s.deploy_ok(&["status"]).contains("frozen:     no\n"));
    let out = s.deploy_ok(&["unfreeze"]);
    assert!(out.starts_with("deploys were not frozen"), "{out}");
    s.deploy_ok(&["secret", "grant", "worker", "api_key"]);
    s.deploy_ok(&["service", "check", "web"]);
    assert_eq!(s.get_as("db", "web"), b"third value");
    s.deploy_ok(&["tier", "add", "cloud"]);
}

#[test]
fn a_freeze_survives_a_restart_until_unfrozen() {
    let mut s = server();
    s.deploy_ok(&["freeze", "--reason", "INC-7"]);
    let frozen = status_json(&s)["frozen"].clone();
    s.stop_ok();
    s.serve();
    assert_eq!(status_json(&s)["frozen"], frozen);
    let args = ["secret", "grant", "web", "api_key"];
    assert_frozen(&s.deploy(&args), &args);
    s.kill9();
    s.serve();
    assert_eq!(status_json(&s)["frozen"], frozen);
    assert_frozen(&s.deploy(&args), &args);
    s.deploy_ok(&["unfreeze", "--reason", "INC-7 closed"]);
    s.stop_ok();
    s.serve();
    assert_eq!(status_json(&s)["frozen"], Json::Null);
    s.deploy_ok(&args);
    // The freeze over ctl, with its reason, as any 9P client makes it.
    let (out, errors) = ctl(&s, b"reason 'INC-8 by hand'\nfreeze\nunfreeze\nfreeze\n");
    assert!(errors.is_empty(), "{errors}");
    assert!(out.contains("ok freeze since="), "{out}");
    assert!(out.contains("ok unfreeze was_frozen=yes"), "{out}");
    let frozen = status_json(&s)["frozen"].clone();
    assert_eq!(frozen["by"], "admin (uid 0)");
    // The reason went with the first change only.
    assert_eq!(frozen["reason"], Json::Null);
    assert!(
        s.deploy_ok(&["status"])
            .contains(" by admin (uid 0) (no reason given)\n")
    );
}

#[test]
fn a_freeze_refuses_bundles_over_http_too() {
    if !can_curl("freeze over HTTP") {
        return;
    }
    let mut s = SecretsServer::init();
    let http = s.serve_with_http();
    s.add_service("web", WEB, Some("secret jwt\n"));
    s.deploy_ok(&["tier", "add", "desktop"]);
    s.deploy_ok(&[
        "secret",
        "strategy",
        "jwt",
        "--tier",
        "desktop",
        "--generate",
        "{{random:hex:16}}",
    ]);
    let request = r#"{"service": "web", "tier": "desktop", "deployment": "d1"}"#;
    s.deploy_ok(&["freeze", "--reason", "INC-3"]);
    let (code, body) = curl(&http, None, "POST", "/deployment/bundle", Some(request));
    assert_eq!(code, 423, "{body}");
    let body: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(body["error"], FROZEN);
    let issued = s.deploy_ok(&["bundle", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Json>(&issued).unwrap(),
        serde_json::json!([])
    );
    s.deploy_ok(&["unfreeze"]);
    let (code, body) = curl(&http, None, "POST", "/deployment/bundle", Some(request));
    assert_eq!(code, 200, "{body}");
}

#[test]
fn revoke_all_takes_a_secret_from_every_service_holding_it_at_once() {
    if !require_uid_switching("revoke-all") {
        return;
    }
    let s = server();
    let (mut web, first) = Held::open(&s, WEB, "/secret/db");
    assert_eq!(first, "read first value");
    let (mut worker, first) = Held::open(&s, WORKER, "/secret/db");
    assert_eq!(first, "read first value");
    let out = s.deploy_ok(&["secret", "revoke-all", "db", "--reason", "INC-9: db leaked"]);
    assert_eq!(
        out,
        "revoked db from 2 services: web, worker; each one's next read of it fails, of open \
         files too\n"
    );
    for held in [&mut web, &mut worker] {
        assert_eq!(held.again(), "error file does not exist");
    }
    for uid in [WEB, WORKER] {
        assert_eq!(
            read_as(&s, uid, "/secret/db").unwrap_err(),
            "9p: file does not exist"
        );
    }
    // Gone from every grant; the secret and the other grants stay.
    let list: Json = serde_json::from_str(&s.deploy_ok(&["secret", "list", "--json"])).unwrap();
    let db = list
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "db")
        .unwrap();
    assert_eq!(db["granted_to"], serde_json::json!([]));
    assert_eq!(read_as(&s, WORKER, "/secret/api_key").unwrap(), b"key one");
    // Again: nothing to revoke. A secret that does not exist is named.
    let out = s.deploy_ok(&["secret", "revoke-all", "db"]);
    assert_eq!(out, "no service was granted db; nothing changed\n");
    let out = s.deploy(&["secret", "revoke-all", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no such secret"), "{}", stderr(&out));
    // Over ctl, as any 9P client does it.
    let (out, errors) = ctl(&s, b"revoke-all api_key\n");
    assert!(errors.is_empty(), "{errors}");
    assert!(
        out.starts_with("ok revoke-all api_key services=1 {"),
        "{out}"
    );
    assert!(read_as(&s, WORKER, "/secret/api_key").is_err());
}

#[test]
fn a_suspended_service_reads_nothing_keeps_its_grants_and_reads_again_once_resumed() {
    if !require_uid_switching("suspend") {
        return;
    }
    let mut s = server();
    let (mut secret, first) = Held::open(&s, WEB, "/secret/db");
    assert_eq!(first, "read first value");
    let (mut config, first) = Held::open(&s, WEB, "/config/level");
    assert_eq!(first, "read debug");
    let (mut other, _) = Held::open(&s, WORKER, "/secret/db");
    let out = s.deploy_ok(&["service", "suspend", "web", "--reason", "INC-5: web host"]);
    assert!(out.starts_with("suspended web: every read"), "{out}");
    // Every read through web's view fails, of held fids too, secrets and config alike.
    assert_eq!(secret.again(), "error permission denied");
    assert_eq!(config.again(), "error permission denied");
    for path in ["/secret/db", "/config/level", "/secret"] {
        assert_eq!(
            read_as(&s, WEB, path).unwrap_err(),
            "9p: permission denied",
            "{path}"
        );
    }
    let stat = s.ninep_as(WEB, "", &["stat", "/secret/db"]);
    assert!(!stat.status.success());
    // The admin's view of it too.
    let get = s.deploy(&["secret", "get", "db", "--as", "web"]);
    assert_eq!(get.status.code(), Some(1));
    assert!(
        stderr(&get).contains("service web is suspended since ")
            && stderr(&get).contains("resume it with `deploy service resume web`"),
        "{}",
        stderr(&get)
    );
    // Others read on.
    assert_eq!(other.again(), "read first value");
    // Its grants stay, and the listings say it is suspended, since when, by whom, why.
    let grants = s.ninep_as(0, "", &["read", "/secrets/grants/web"]);
    assert_eq!(stdout(&grants), "db\n");
    let list: Json = serde_json::from_str(&s.deploy_ok(&["service", "list", "--json"])).unwrap();
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["granted"], serde_json::json!(["db"]));
    assert_eq!(list[0]["suspended"]["by"], "admin (uid 0)");
    assert_eq!(list[0]["suspended"]["reason"], "INC-5: web host");
    assert_eq!(list[1]["suspended"], Json::Null);
    let table = s.deploy_ok(&["service", "list"]);
    assert!(
        table.contains("  suspended since ")
            && table.contains(" by admin (uid 0): INC-5: web host"),
        "{table}"
    );
    assert_eq!(status_json(&s)["suspended"], serde_json::json!(["web"]));
    assert!(s.deploy_ok(&["status"]).contains("suspended:  web\n"));
    // Again: nothing changes.
    let out = s.deploy_ok(&["service", "suspend", "web"]);
    assert!(
        out.starts_with("web was suspended already, since "),
        "{out}"
    );
    // It survives a restart.
    drop((secret, config, other));
    s.stop_ok();
    s.serve();
    assert_eq!(
        read_as(&s, WEB, "/secret/db").unwrap_err(),
        "9p: permission denied"
    );
    let (mut secret, _) = Held::open(&s, WORKER, "/secret/db");
    // Resumed: reads work again; a fid held open through the suspension reads again.
    let (mut held, first) = {
        s.deploy_ok(&["service", "resume", "web", "--reason", "INC-5: rebuilt"]);
        Held::open(&s, WEB, "/secret/db")
    };
    assert_eq!(first, "read first value");
    s.deploy_ok(&["service", "suspend", "web"]);
    assert_eq!(held.again(), "error permission denied");
    let out = s.deploy_ok(&["service", "resume", "web"]);
    assert_eq!(out, "resumed web: its reads work again\n");
    assert_eq!(held.again(), "read first value");
    assert_eq!(read_as(&s, WEB, "/config/level").unwrap(), b"debug");
    assert_eq!(secret.again(), "read first value");
    let out = s.deploy_ok(&["service", "resume", "web"]);
    assert_eq!(out, "web was not suspended; nothing changed\n");
    assert_eq!(status_json(&s)["suspended"], serde_json::json!([]));
    // A service that does not exist is named.
    let out = s.deploy(&["service", "suspend", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no such service nosuch"),
        "{}",
        stderr(&out)
    );
    // Over ctl, as any 9P client does it.
    let (out, errors) = ctl(&s, b"reason 'by hand'\nservice worker suspend\n");
    assert!(errors.is_empty(), "{errors}");
    assert!(out.contains("ok service worker suspend since="), "{out}");
    assert_eq!(secret.again(), "error permission denied");
    let (out, _) = ctl(&s, b"service worker resume\n");
    assert!(
        out.contains("ok service worker resume was_suspended=yes"),
        "{out}"
    );
}

#[test]
fn the_matrix_in_four_forms_escapes_what_each_would_misread() {
    let s = server();
    let owner = "Ops, \"Platform\" | SRE";
    s.deploy_ok(&[
        "secret",
        "meta",
        "db",
        "--class",
        "infrastructure",
        "--owner",
        owner,
        "--rotate-every",
        "30d",
    ]);
    // Declared in the catalog, with no value stored.
    s.deploy_ok(&["secret", "meta", "jwt_key", "--class", "service"]);
    s.deploy_ok(&["secret", "grant", "web", "api_key", "--expires", "2h"]);
    s.add_service("idle", 1203, None);
    s.deploy_ok(&["service", "suspend", "idle"]);

    let m: Json = serde_json::from_str(&s.deploy_ok(&["secret", "matrix", "--json"])).unwrap();
    assert_eq!(m["services"], serde_json::json!(["idle", "web", "worker"]));
    assert_eq!(m["suspended"], serde_json::json!(["idle"]));
    let rows = m["secrets"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["api_key", "db", "jwt_key"]);
    let (api_key, db, jwt) = (&rows[0], &rows[1], &rows[2]);
    assert_eq!(db["class"], "infrastructure");
    assert_eq!(db["owner"], owner);
    assert_eq!(db["rotate_every"], 30 * 86_400);
    assert_eq!(db["version"], 1);
    assert!(db["age"].as_u64().unwrap() < 600);
    assert_eq!(db["stale"], false);
    assert_eq!(
        db["grants"],
        serde_json::json!({"web": {"expires": null}, "worker": {"expires": null}})
    );
    let ends = api_key["grants"]["web"]["expires"].as_u64().unwrap();
    assert!(ends > now() + 7000 && ends <= now() + 7200, "{ends}");
    assert_eq!(api_key["grants"]["worker"]["expires"], Json::Null);
    assert_eq!(api_key["rotate_every"], 90 * 86_400);
    assert_eq!(
        (jwt["version"].clone(), jwt["age"].clone()),
        (Json::Null, Json::Null)
    );
    assert_eq!(jwt["class"], "service");
    assert_eq!(jwt["grants"], serde_json::json!({}));

    // A table for a terminal.
    let table = s.deploy_ok(&["secret", "matrix"]);
    let lines: Vec<&str> = table.lines().collect();
    let cells = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        cells(lines[0]),
        [
            "SECRET",
            "CLASS",
            "OWNER",
            "AGE",
            "ROTATE EVERY",
            "idle (suspended)",
            "web",
            "worker"
        ]
    );
    let api_row = cells(lines[1]);
    assert_eq!(api_row[0], "api_key");
    // Ends in two hours, less the moments since (to the nearest hour).
    assert_eq!(&api_row[4..], ["90d", "-", "~2h", "yes"]);
    let db_row = cells(lines[2]);
    assert_eq!(&db_row[..3], ["db", "infrastructure", owner]);
    assert_eq!(&db_row[4..], ["30d", "-", "yes", "yes"]);
    let jwt_row = cells(lines[3]);
    assert_eq!(
        jwt_row,
        ["jwt_key", "service", "-", "-", "90d", "-", "-", "-"]
    );
    assert!(table.contains("\nyes: granted; ~12h: granted, ends by itself in 12h"));

    // CSV (RFC 4180): the owner quoted, its quotes doubled.
    let csv = s.deploy_ok(&["secret", "matrix", "--csv"]);
    let lines: Vec<&str> = csv.split("\r\n").collect();
    assert_eq!(
        lines[0],
        "secret,class,owner,version,updated,age,rotate_every,stale,idle,web,worker"
    );
    assert!(
        lines[1].starts_with("api_key,,,1,") && lines[1].contains(",90d,no,no,until "),
        "{}",
        lines[1]
    );
    assert!(lines[1].ends_with(",yes"), "{}", lines[1]);
    assert!(
        lines[2].starts_with("db,infrastructure,\"Ops, \"\"Platform\"\" | SRE\",1,"),
        "{}",
        lines[2]
    );
    assert!(lines[2].ends_with(",30d,no,no,yes,yes"), "{}", lines[2]);
    assert_eq!(lines[3], "jwt_key,service,,,,,90d,no,no,no,no");
    assert_eq!((lines.len(), lines[4]), (5, ""));

    // Markdown: the pipe escaped, so that the row keeps its cells.
    let md = s.deploy_ok(&["secret", "matrix", "--markdown"]);
    let lines: Vec<&str> = md.lines().collect();
    assert_eq!(
        lines[0],
        "| Secret | Class | Owner | Age | Rotate every | idle (suspended) | web | worker |"
    );
    assert_eq!(lines[1], "|---|---|---|---|---|---|---|---|");
    assert!(
        lines[2].starts_with("| `api_key` | - | - | "),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains(" | 90d | ❌ | ⏳ until "), "{}", lines[2]);
    assert!(lines[2].ends_with("Z | ✅ |"), "{}", lines[2]);
    assert!(
        lines[3].starts_with("| `db` | infrastructure | Ops, \"Platform\" \\| SRE | ")
            && lines[3].ends_with(" | 30d | ❌ | ✅ | ✅ |"),
        "{}",
        lines[3]
    );
    assert_eq!(
        lines[4],
        "| `jwt_key` | service | - | - | 90d | ❌ | ❌ | ❌ |"
    );
    // Every row has the header's cells (escaped pipes are not separators).
    let separators = |l: &str| l.matches('|').count() - l.matches("\\|").count();
    assert!(lines.iter().all(|l| separators(l) == 9), "{md}");
    // Over ctl, as any 9P client asks.
    let (out, _) = ctl(&s, b"matrix\n");
    assert!(out.starts_with("ok matrix secrets=3 services=3 {"), "{out}");
}

/// The guest's half of the kernel-mount test: web's view, refused to the deployer during
/// a first freeze, then mounted before a second, held open and read through it, and
/// opened anew, at each of the host's steps (`READY-...`, then waiting for what the
/// host's step makes visible).
const KERNEL_SCRIPT: &str = r#"
# Frozen from the start: the deployer's new mount of the view is refused.
v9mount 2>/tmp/err; echo "CHECK frozen_mount=$? $(cat /tmp/err)"
echo READY-UNFREEZE
i=0
until v9mount 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && exit 9; usleep 200000; done
cd "$V9FS_MNT"
# The held file is read a few bytes at a time, so that each read goes on from where the
# last stopped (cache=none: each is a Tread at that offset), on the version it opened.
exec 3< secret/db
echo "CHECK held0=$(dd bs=1 count=3 <&3 2>/dev/null)"
echo READY-FREEZE
i=0
while [ "$(su web -c 'cat /mnt/secret/db')" != "second value" ] && [ $i -lt 600 ]; do
  i=$((i+1)); usleep 100000
done
echo "CHECK held1=$(dd bs=1 count=3 <&3 2>/dev/null)"
echo "CHECK open1=$(su web -c 'cat /mnt/secret/db')"
echo "CHECK config1=$(su web -c 'cat /mnt/config/level')"
echo READY-SUSPEND
i=0
while su web -c 'cat /mnt/secret/db' >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "CHECK suspended=never"; break; }
  usleep 100000
done
dd bs=1 count=1 <&3 >/dev/null 2>/tmp/err; echo "CHECK held2=$? $(grep -v records /tmp/err)"
su web -c 'cat /mnt/secret/db' >/dev/null 2>/tmp/err; echo "CHECK open2=$(cat /tmp/err)"
su web -c 'cat /mnt/config/level' >/dev/null 2>/tmp/err; echo "CHECK config2=$(cat /tmp/err)"
echo READY-RESUME
i=0
while ! su web -c 'cat /mnt/secret/db' >/dev/null 2>&1; do
  i=$((i+1)); [ $i -gt 300 ] && break
  usleep 100000
done
echo "CHECK held3=$(dd bs=1 count=5 <&3 2>/dev/null)"
echo "CHECK open3=$(su web -c 'cat /mnt/secret/db')"
"#;

/// The service side through the Linux kernel's v9fs: the deployer's mount of a view is
/// refused while frozen; one made before a freeze reads on through it (a held file its
/// version, a new open a value set during the freeze); a suspension makes every read fail
/// with EACCES, of the held file too; a resume brings them back.
#[test]
fn kernel_v9fs_a_mounted_view_reads_through_a_freeze_and_a_suspension_stops_it() {
    use srv_secrets_tests::vm::{KernelMount, RunningVm, require_or_skip};
    if !require_or_skip("kernel_v9fs_a_mounted_view_reads_through_a_freeze") {
        return;
    }
    let s = server();
    s.deploy_ok(&["freeze", "--reason", "INC-0"]);
    // The guest's web is uid 1001 (the VM's /etc/passwd); the host's is the server's
    // business: the deployer (root) mounts web's view on its behalf.
    let mut vm = KernelMount::unix(&s.socket)
        .no_mount()
        .aname("web")
        // What `deploy service run --mount kernel` mounts with.
        .mount_opts("dfltuid=1001,dfltgid=1001,cache=none,ro,nosuid,nodev,noexec")
        .timeout(std::time::Duration::from_secs(180))
        .spawn(KERNEL_SCRIPT)
        .expect("the VM starts");
    let step = |vm: &mut RunningVm, line: &str| {
        vm.wait_for_line(line, std::time::Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    };
    step(&mut vm, "READY-UNFREEZE");
    s.deploy_ok(&["unfreeze"]);
    step(&mut vm, "READY-FREEZE");
    s.deploy_ok(&["freeze", "--reason", "INC-1"]);
    let out = s.deploy_with_stdin(&["secret", "set", "db"], b"second value");
    assert!(out.status.success(), "{}", stderr(&out));
    step(&mut vm, "READY-SUSPEND");
    s.deploy_ok(&["service", "suspend", "web", "--reason", "INC-1"]);
    step(&mut vm, "READY-RESUME");
    s.deploy_ok(&["service", "resume", "web"]);
    let run = vm.wait().expect("the guest finishes");
    let ctx = &run.output;
    let check = |key: &str| -> String {
        run.output
            .lines()
            .filter_map(|l| l.strip_prefix("CHECK "))
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.trim_end().to_string())
            .unwrap_or_else(|| panic!("no CHECK {key}: {ctx}"))
    };
    assert_eq!(run.exit_code, 0, "{ctx}");
    // The Rerror's text is in no errno table of the kernel's: ESERVERFAULT.
    let refused = check("frozen_mount");
    assert!(
        refused.starts_with("255 ") && refused.contains("Unknown error 526"),
        "{ctx}"
    );
    // "first value" (the CHECK lines lose a trailing blank), read on through the freeze
    // and after the resume: never a byte of "second value", set meanwhile, which new
    // opens read.
    assert_eq!(
        [check("held0"), check("held1"), check("held3")],
        ["fir", "st", "value"],
        "{ctx}"
    );
    for key in ["open1", "open3"] {
        assert_eq!(check(key), "second value", "{key}: {ctx}");
    }
    assert_eq!(check("config1"), "debug", "{ctx}");
    assert!(check("held2").starts_with("1 "), "{ctx}");
    for key in ["held2", "open2", "config2"] {
        assert!(check(key).contains("Permission denied"), "{key}: {ctx}");
    }
    // Frozen throughout.
    assert_eq!(status_json(&s)["frozen"]["reason"], "INC-1");
}
