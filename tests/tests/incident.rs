//! Who holds a secret, and the record of a scripted incident (issue 12, "Who holds what"
//! and seed 004's incident report), end to end through deploy and the plain 9P client:
//! `deploy secret holders` after a service read and a bundle was issued, then a freeze, a
//! rotation with --revoke-previous, a revoke-all, a suspension and an unfreeze, and the
//! `deploy incident report` that tells of them.

#![allow(clippy::unwrap_used, reason = "tests")]

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use srv_secrets_tests::harness::{SecretsServer, can_switch_uid, stderr, stdout};

const WEB: u32 = 1301;
const WORKER: u32 = 1302;

const CATALOG: &str = r#"
[tiers.local_dev]
core = true
[tiers.desktop]
[tiers.cloud]

[secrets.jwt_key]
class = "service"
owner = "platform"
[secrets.jwt_key.tiers.local_dev]
strategy = "serve"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"
[secrets.jwt_key.tiers.cloud]
strategy = "delegate"
ref = "github:acme/api#JWT_KEY"
"#;

fn json(text: &str) -> Json {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The time now, to the second, as RFC 3339 (what `--since` takes).
fn rfc3339_now() -> String {
    let out = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn strings(v: &Json) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn holders_after_a_read_and_a_bundle_then_the_report_of_a_scripted_incident() {
    if !can_switch_uid() {
        assert!(std::env::var("CI").is_err(), "needs root and setpriv");
        eprintln!("skipping: needs root and setpriv to read as a service");
        return;
    }
    let s = SecretsServer::start();
    let catalog = s.root.path().join("catalog.toml");
    std::fs::write(&catalog, CATALOG).unwrap();
    s.deploy_ok(&["catalog", "apply", catalog.to_str().unwrap()]);
    s.add_service("web", WEB, Some("secret jwt_key\n"));
    s.add_service("worker", WORKER, None);
    for (name, value) in [("jwt_key", &b"key one"[..]), ("api_key", b"api one")] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    s.deploy_ok(&["secret", "grant", "web", "jwt_key"]);
    s.deploy_ok(&["secret", "grant", "worker", "jwt_key"]);
    s.deploy_ok(&["secret", "grant", "worker", "api_key", "--expires", "1d"]);

    // web reads its secret; a deployment of web on desktop gets a generated one.
    let read = s.ninep_as(WEB, "", &["read", "/secret/jwt_key"]);
    assert!(read.status.success(), "{}", stderr(&read));
    assert_eq!(read.stdout, b"key one");
    let out_dir = s.root.path().join("bundle");
    s.deploy_ok(&[
        "bundle",
        "create",
        "--service",
        "web",
        "--tier",
        "desktop",
        "--deployment",
        "acme-1",
        "--out",
        out_dir.to_str().unwrap(),
    ]);

    // Opens are recorded in batches: wait for web's.
    let started = Instant::now();
    let holders = loop {
        let h = json(&s.deploy_ok(&["secret", "holders", "jwt_key", "--json"]));
        if h["services"][0]["opened"] == 1 {
            break h;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{h}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(holders["name"], "jwt_key");
    assert_eq!(holders["version"], 1);
    let services = holders["services"].as_array().unwrap();
    assert_eq!(services.len(), 2, "{holders}");
    assert_eq!(services[0]["service"], "web");
    assert_eq!(services[0]["opened_current"], true);
    assert_eq!(services[0]["expires"], Json::Null);
    assert_eq!(services[1]["service"], "worker");
    assert_eq!(services[1]["opened"], Json::Null);
    assert_eq!(services[1]["opened_current"], false);
    let deployments = holders["deployments"].as_array().unwrap();
    assert_eq!(deployments.len(), 1, "{holders}");
    assert_eq!(deployments[0]["deployment"], "acme-1");
    assert_eq!(deployments[0]["service"], "web");
    assert_eq!(deployments[0]["tier"], "desktop");
    assert_eq!(deployments[0]["current"], true);
    assert_eq!(
        holders["delegated"],
        serde_json::json!([{"tier": "cloud", "reference": "github:acme/api#JWT_KEY", "present": false}])
    );
    let table = s.deploy_ok(&["secret", "holders", "jwt_key"]);
    for want in [
        "jwt_key (version 1)",
        "services granted it:",
        "acme-1",
        "github:acme/api#JWT_KEY",
        "until revoked",
    ] {
        assert!(table.contains(want), "{want}: {table}");
    }
    let grant_line = s.deploy_ok(&["secret", "holders", "api_key"]);
    assert!(
        grant_line.contains("worker") && grant_line.contains("until 2"),
        "{grant_line}"
    );
    let missing = s.deploy(&["secret", "holders", "no_such"]);
    assert_eq!(missing.status.code(), Some(1), "{}", stdout(&missing));
    assert!(!stderr(&missing).is_empty());

    // The incident, after a second has passed: nothing of the set-up is in it.
    std::thread::sleep(Duration::from_millis(1100));
    let since = rfc3339_now();
    s.deploy_ok(&["freeze", "--reason", "INC-7: key_leaked | urgent"]);
    let out = s.deploy_with_stdin(
        &[
            "secret",
            "rotate",
            "jwt_key",
            "--revoke-previous",
            "--reason",
            "INC-7: rotate",
        ],
        b"key two",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&[
        "secret",
        "revoke-all",
        "api_key",
        "--reason",
        "INC-7: contain",
    ]);
    s.deploy_ok(&[
        "service",
        "suspend",
        "worker",
        "--reason",
        "INC-7: worker leaked it",
    ]);
    s.deploy_ok(&["unfreeze", "--reason", "INC-7 closed"]);

    let report = json(&s.deploy_ok(&["incident", "report", "--since", &since, "--json"]));
    let actions: Vec<String> = report["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        actions,
        [
            "freeze",
            "stage",
            "promote",
            "revoke-all",
            "revoke",
            "suspend",
            "unfreeze"
        ],
        "{report}"
    );
    let first = &report["actions"][0];
    assert_eq!(first["reason"], "INC-7: key_leaked | urgent");
    assert!(
        first["by"].as_str().unwrap().starts_with("admin"),
        "{first}"
    );
    assert_eq!(report["actions"][2]["version"], 2);
    assert_eq!(report["actions"][2]["reason"], "INC-7: rotate");
    assert_eq!(report["frozen_now"], false);
    assert!(report["window_start"].is_string() && report["window_end"].is_string());
    assert_eq!(report["window_end"], report["window_last_action"]);
    let secrets = report["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 2, "{report}");
    assert_eq!(secrets[0]["name"], "api_key");
    assert_eq!(strings(&secrets[0]["actions"]), ["revoke-all", "revoke"]);
    assert_eq!(report["actions"][4]["target"]["service"], "worker");
    assert_eq!(strings(&secrets[0]["revoked_from"]), ["worker"]);
    assert!(strings(&secrets[0]["granted_now"]).is_empty());
    assert_eq!(secrets[1]["name"], "jwt_key");
    assert_eq!(strings(&secrets[1]["granted_now"]), ["web", "worker"]);
    // Nobody has opened version 2 yet: both may still hold version 1.
    assert_eq!(strings(&secrets[1]["not_on_current"]), ["web", "worker"]);
    assert_eq!(
        strings(&secrets[1]["deployments"]),
        ["acme-1 (web/desktop)"]
    );
    assert_eq!(strings(&secrets[1]["delegated"]), ["cloud"]);
    assert_eq!(
        report["services"],
        serde_json::json!([{"service": "worker", "suspended": true}])
    );

    let text = s.deploy_ok(&["incident", "report", "--since", &since]);
    for want in [
        "impact window:",
        "(unfrozen)",
        "revoke-all",
        "INC-7: key_leaked | urgent",
        "acme-1",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let md = s.deploy_ok(&["incident", "report", "--since", &since, "--markdown"]);
    assert!(md.starts_with("## Incident report\n"), "{md}");
    assert!(md.contains("| Time | Record | Action | By |"), "{md}");
    // What Markdown would misread in a cell is escaped (emphasis, a cell's end), and
    // nothing else.
    assert!(md.contains("| INC-7: key\\_leaked \\| urgent |"), "{md}");
    assert!(md.contains("| acme-1 (web/desktop) |"), "{md}");
    let bad = s.deploy(&["incident", "report", "--since", "yesterday"]);
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
}
