//! Deployment tiers (issue 10), end to end: the real server and `deploy`, and a plain 9P
//! client writing `/secrets/ctl` with no `deploy` in the way.
//!
//! Seed 000's example applied with its value; infrastructure refused off the core server
//! however it is declared; a bad template refused at its byte; plans' and the lint's exit
//! statuses; an export applied back changes nothing; `--prune`; a restart keeps it all;
//! and a `kill -9` in the middle of a large catalog apply leaves all of it or none.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;

use srv_secrets_tests::harness::{SecretsServer, bins, run_with_stdin, stderr, stdout};

const WEB: u32 = 1001;

/// Seed 000's metadata example, as it is.
const SEED: &str = r#"{
  "secret_id": "postgres_connection",
  "deployment_strategy": {
    "local_dev": {
      "type": "infrastructure",
      "source": "secrets_vault",
      "value": "postgresql://localhost:5432/app"
    },
    "desktop": {
      "type": "service",
      "action": "generate_sqlite_path",
      "template": "file://{{USER_DATA}}/app.db"
    },
    "cloud": {
      "type": "service",
      "action": "environment_variable",
      "template": "{{POSTGRES_URL}}"
    }
  }
}
"#;

fn write(s: &SecretsServer, name: &str, text: &str) -> String {
    let path = s.root.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// `9p rpc secrets/ctl` as root: one Twrite per line of `input`, then the fid's results.
fn rpc(s: &SecretsServer, input: &[u8]) -> (String, String) {
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "rpc", "/secrets/ctl"]);
    let out = run_with_stdin(cmd, input);
    (stdout(&out), stderr(&out))
}

/// The body of the one answer `rpc` read: after its first line, without the final newline.
fn body(out: &str) -> &str {
    let (_, rest) = out.split_once('\n').unwrap();
    rest.strip_suffix('\n').unwrap()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

/// The plan's entry for `secret`, as `deploy secret plan --json` prints it.
fn entry(s: &SecretsServer, service: &str, tier: &str, secret: &str) -> serde_json::Value {
    let out = s.deploy(&[
        "secret",
        "plan",
        "--service",
        service,
        "--tier",
        tier,
        "--json",
    ]);
    let plan = json(&stdout(&out));
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["secret"] == secret)
        .cloned()
        .unwrap_or_else(|| panic!("{secret} not in {plan}"))
}

#[test]
fn seed_000_applied_with_its_value() {
    let mut s = SecretsServer::start();
    let seed = write(&s, "postgres.json", SEED);
    // Without --with-values, the value is refused, saying why and what to pass.
    let out = s.deploy(&["catalog", "apply", &seed]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("catalogs end up in git"), "{err}");
    assert!(err.contains("--with-values"), "{err}");
    assert!(!err.contains("localhost:5432"), "{err}");
    // The same through ctl, to a plain 9P client.
    let mut line = format!("catalog apply {{{}}}\n", SEED.len()).into_bytes();
    line.extend_from_slice(SEED.as_bytes());
    line.push(b'\n');
    let (_, err) = rpc(&s, &line);
    assert_eq!(
        err,
        "9p: write: ctl: line 1: catalog: a catalog holds no values (it ends up in git); \
         --with-values stores them\n"
    );

    let out = s.deploy_ok(&["catalog", "apply", &seed, "--with-values"]);
    assert!(out.contains("+ secret postgres_connection"), "{out}");
    assert!(
        out.ends_with("4 added, 0 changed, 0 removed\n1 value stored\n"),
        "{out}"
    );
    assert!(!out.contains("localhost:5432"), "{out}");
    s.add_service("web", WEB, Some("secret postgres_connection\n"));

    let local = entry(&s, "web", "local_dev", "postgres_connection");
    assert_eq!(local["action"], "serve");
    assert_eq!(local["class"], "infrastructure");
    assert_eq!(local["stored"], true);
    let desktop = entry(&s, "web", "desktop", "postgres_connection");
    assert_eq!(desktop["action"], "generate");
    assert_eq!(desktop["class"], "service");
    assert_eq!(desktop["template"], "file://{{USER_DATA}}/app.db");
    assert_eq!(
        desktop["target_placeholders"],
        serde_json::json!(["USER_DATA"])
    );
    let cloud = entry(&s, "web", "cloud", "postgres_connection");
    assert_eq!(cloud["action"], "delegate");
    assert_eq!(cloud["ref"], "env:POSTGRES_URL");
    assert_eq!(cloud["present"], false);

    // The value is the secret's, served on the core tier once granted.
    s.deploy_ok(&["secret", "grant", "web", "postgres_connection"]);
    assert_eq!(
        s.get_as("postgres_connection", "web"),
        b"postgresql://localhost:5432/app"
    );
    // No plan, lint or export, nor the log, carries it.
    for args in [
        &[
            "secret",
            "plan",
            "--service",
            "web",
            "--tier",
            "local_dev",
            "--json",
        ][..],
        &["secret", "lint", "--json"][..],
        &["catalog", "export", "--format", "json"][..],
    ] {
        let out = s.deploy(args);
        assert!(!stdout(&out).contains("localhost:5432"), "{args:?}");
    }
    assert!(!s.log_text().contains("localhost:5432"));

    // A restart keeps everything.
    let before = s.deploy_ok(&["catalog", "export"]);
    s.stop_ok();
    s.serve();
    assert_eq!(s.deploy_ok(&["catalog", "export"]), before);
    assert_eq!(
        entry(&s, "web", "desktop", "postgres_connection")["action"],
        "generate"
    );
    assert_eq!(
        s.get_as("postgres_connection", "web"),
        b"postgresql://localhost:5432/app"
    );
}

#[test]
fn infrastructure_never_leaves_the_core_server_however_it_is_declared() {
    let s = SecretsServer::start();
    s.deploy_ok(&["tier", "add", "local_dev", "--core"]);
    s.deploy_ok(&["tier", "add", "desktop"]);
    s.deploy_ok(&["secret", "meta", "db_root", "--class", "infrastructure"]);
    const REASON: &str = "infrastructure never leaves the core server";

    // By flags.
    for how in [
        &["--generate", "{{password:24}}"][..],
        &["--prompt", "--label", "Root password"][..],
        &["--delegate", "env:DB_ROOT"][..],
        &["--serve"][..],
    ] {
        let mut args = vec!["secret", "strategy", "db_root", "--tier", "desktop"];
        args.extend(how);
        let out = s.deploy(&args);
        assert_eq!(out.status.code(), Some(1), "{how:?}");
        assert!(stderr(&out).contains(REASON), "{how:?}: {}", stderr(&out));
    }
    // Nor as the tier's own class.
    let out = s.deploy(&[
        "secret",
        "strategy",
        "api",
        "--tier",
        "desktop",
        "--class",
        "infrastructure",
        "--generate",
        "{{uuid}}",
    ]);
    assert!(stderr(&out).contains(REASON), "{}", stderr(&out));
    // Strip is fine; serve on the core tier too.
    s.deploy_ok(&[
        "secret", "strategy", "db_root", "--tier", "desktop", "--strip",
    ]);
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db_root",
        "--tier",
        "local_dev",
        "--serve",
    ]);
    // And then the core tier cannot stop being core.
    let out = s.deploy(&["tier", "add", "local_dev"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(REASON), "{}", stderr(&out));

    // By TOML: refused here with the line, nothing applied.
    let toml = write(
        &s,
        "leak.toml",
        "[tiers.local_dev]\ncore = true\n[tiers.desktop]\ncore = false\n\n\
         [secrets.master_key]\nclass = \"infrastructure\"\n\n\
         [secrets.master_key.tiers.desktop]\nstrategy = \"generate\"\n\
         template = \"{{random:hex:32}}\"\n",
    );
    let out = s.deploy(&["catalog", "apply", &toml]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("line 9: secret `master_key` is infrastructure"),
        "{err}"
    );
    assert!(err.contains(REASON), "{err}");
    // By seed JSON.
    let seed = write(
        &s,
        "leak.json",
        r#"{ "secret_id": "master_key", "deployment_strategy": {
             "local_dev": { "type": "infrastructure", "source": "secrets_vault" },
             "desktop": { "type": "infrastructure", "action": "generate_key",
                          "template": "{{random:hex:32}}" } } }"#,
    );
    let out = s.deploy(&["catalog", "apply", &seed]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(REASON), "{}", stderr(&out));
    // By ctl, from a plain 9P client: the server refuses it on its own.
    let (_, err) = rpc(
        &s,
        b"strategy master_key tier desktop class infrastructure generate '{{uuid}}'\n",
    );
    assert_eq!(
        err,
        "9p: write: ctl: line 1: strategy: infrastructure never leaves the core server: only \
         serve (on core) or strip\n"
    );
    let mut line = format!(
        "catalog apply toml {{{}}}\n",
        std::fs::metadata(&toml).unwrap().len()
    )
    .into_bytes();
    line.extend(std::fs::read(&toml).unwrap());
    line.push(b'\n');
    let (_, err) = rpc(&s, &line);
    assert_eq!(
        err,
        "9p: write: ctl: line 1: catalog: line 9: infrastructure never leaves the core server: \
         only serve (on core) or strip\n"
    );
    // None of it was stored.
    let export = s.deploy_ok(&["catalog", "export"]);
    assert!(!export.contains("master_key"), "{export}");
    assert!(!export.contains("[secrets.api"), "{export}");
}

#[test]
fn a_bad_template_is_refused_at_its_byte() {
    let s = SecretsServer::start();
    s.deploy_ok(&["tier", "add", "desktop"]);
    // deploy checks it before sending: the whole explanation.
    let out = s.deploy(&[
        "secret",
        "strategy",
        "jwt",
        "--tier",
        "desktop",
        "--generate",
        "jwt-{{random:hx:32}}",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out),
        "deploy: --generate: at byte 13: unknown encoding; use hex, base64 or base64url\n"
    );
    let out = s.deploy(&["secret", "set", "jwt", "--generate", "{{password:8}}"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).starts_with("deploy: --generate: at byte 11: "),
        "{}",
        stderr(&out)
    );
    // The server, to a plain 9P client.
    let (out, err) = rpc(
        &s,
        b"strategy jwt tier desktop generate 'jwt-{{random:hx:32}}'\ngenerate jwt '{{nope}}'\n",
    );
    assert_eq!(
        err,
        "9p: write: ctl: line 1: strategy: template: at byte 13: unknown encoding; use hex, \
         base64 or base64url\n\
         9p: write: ctl: line 2: generate: template: at byte 2: unknown placeholder (known: \
         random, password, uuid, ...)\n"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    // In a catalog file: its line and the byte.
    let toml = write(
        &s,
        "bad.toml",
        "[tiers.desktop]\n\n[secrets.jwt.tiers.desktop]\nstrategy = \"generate\"\n\
         template = \"{{uuid}}{{\"\n",
    );
    let out = s.deploy(&["catalog", "apply", &toml]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(err.contains("at byte 8"), "{err}");
    assert!(
        s.deploy_ok(&["catalog", "export"])
            .contains("[tiers.desktop]")
    );
    assert!(!s.deploy_ok(&["catalog", "export"]).contains("jwt"));
}

#[test]
fn plans_and_lint_exit_1_on_a_problem() {
    let s = SecretsServer::start();
    s.deploy_ok(&["tier", "add", "local_dev", "--core"]);
    s.deploy_ok(&["tier", "add", "desktop"]);
    s.add_service("web", WEB, Some("secret jwt_key\nsecret api_key\n"));
    // Nothing decided: a problem per secret, and findings.
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "desktop"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("problem no-such-secret/web/jwt_key"),
        "{text}"
    );
    let out = s.deploy(&["secret", "lint", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let lint = json(&stdout(&out));
    let ids: Vec<&str> = lint["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["no-such-secret/web/api_key", "no-such-secret/web/jwt_key"],
        "{lint}"
    );

    // Decided for every tier web is deployed to: no problem on desktop, exit 0.
    for name in ["jwt_key", "api_key"] {
        s.deploy_ok(&[
            "secret", "meta", name, "--class", "service", "--owner", "api team",
        ]);
        s.deploy_ok(&[
            "secret",
            "strategy",
            name,
            "--tier",
            "local_dev",
            "--serve",
            "--template",
            "{{random:hex:32}}",
        ]);
        s.deploy_ok(&[
            "secret",
            "strategy",
            name,
            "--tier",
            "desktop",
            "--generate",
            "{{random:base64url:32}}",
        ]);
    }
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "desktop"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    // Served on the core tier, they need values and grants.
    let out = s.deploy(&[
        "secret",
        "plan",
        "--scenario",
        "web",
        "--tier",
        "local_dev",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let plan = json(&stdout(&out));
    assert_eq!(plan["problems"].as_array().unwrap().len(), 4, "{plan}");
    // The value is made on the server from the core tier's template, shown nowhere.
    for name in ["jwt_key", "api_key"] {
        let out = s.deploy_ok(&["secret", "set", name, "--generate"]);
        assert_eq!(
            out,
            format!("generated {name} (version 1); the value is shown nowhere\n")
        );
        s.deploy_ok(&["secret", "grant", "web", name]);
    }
    let value = s.get_as("jwt_key", "web");
    assert_eq!(value.len(), 64);
    assert!(value.iter().all(u8::is_ascii_hexdigit));
    assert!(!s.log_text().contains(std::str::from_utf8(&value).unwrap()));
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "local_dev"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = s.deploy(&["secret", "lint"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).starts_with("lint: no findings\n"),
        "{}",
        stdout(&out)
    );

    // A delegated reference is a finding until it is marked present.
    s.deploy_ok(&["tier", "add", "cloud"]);
    let out = s.deploy(&["secret", "lint", "--tier", "cloud", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let ids: Vec<String> = json(&stdout(&out))["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["no-strategy/cloud/api_key", "no-strategy/cloud/jwt_key"]
    );
    for name in ["jwt_key", "api_key"] {
        s.deploy_ok(&[
            "secret",
            "strategy",
            name,
            "--tier",
            "cloud",
            "--delegate",
            &format!("github:acme/web#{}", name.to_uppercase()),
        ]);
    }
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "cloud"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("problem not-present/cloud/api_key"),
        "{}",
        stdout(&out)
    );
    for name in ["jwt_key", "api_key"] {
        s.deploy_ok(&["secret", "present", name, "--tier", "cloud"]);
    }
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "cloud"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let out = s.deploy_ok(&[
        "secret", "present", "api_key", "--tier", "cloud", "--absent",
    ]);
    assert_eq!(out, "api_key on cloud: not present\n");
    // A service listing its tiers is linted for those only.
    s.deploy_ok(&["service", "tiers", "web", "local_dev,desktop"]);
    assert_eq!(
        s.deploy(&["secret", "lint", "--tier", "cloud"])
            .status
            .code(),
        Some(1)
    );
    let out = s.deploy(&[
        "secret",
        "plan",
        "--service",
        "web",
        "--tier",
        "cloud",
        "--json",
    ]);
    let ids: Vec<String> = json(&stdout(&out))["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        ids,
        ["tier-not-listed/web/cloud", "not-present/cloud/api_key"]
    );
}

#[test]
fn an_export_applies_back_to_nothing_and_prune_removes_the_rest() {
    let s = SecretsServer::start();
    let catalog = write(
        &s,
        "catalog.toml",
        r#"
[tiers.local_dev]
core = true
[tiers.desktop]
core = false

[services.web]
tiers = ["local_dev", "desktop"]

[secrets.jwt_key]
class = "service"
owner = "api team"
rotate_every = "30d"
description = "signs the API's tokens"
[secrets.jwt_key.tiers.local_dev]
strategy = "serve"
template = "{{random:base64url:32}}"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"

[secrets.openrouter_key]
class = "user"
[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
help = "From openrouter.ai/keys"
kind = "password"
pattern = "^sk-or-[A-Za-z0-9-]+$"
min = 20
"#,
    );
    let dry = s.deploy_ok(&["catalog", "apply", &catalog, "--dry-run", "--json"]);
    let report = json(&dry);
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["summary"]["added"], 5, "{report}");
    assert_eq!(s.deploy_ok(&["catalog", "export"]), "");
    s.deploy_ok(&["catalog", "apply", &catalog]);
    let first = s.deploy_ok(&["catalog", "export"]);
    let exported = write(&s, "exported.toml", &first);
    assert_eq!(
        s.deploy_ok(&["catalog", "apply", &exported]),
        "no changes\n"
    );
    assert_eq!(
        s.deploy_ok(&["catalog", "export"]),
        first,
        "a second export is byte-identical"
    );
    // JSON too, both ways.
    let first_json = s.deploy_ok(&["catalog", "export", "--format", "json"]);
    let exported_json = write(&s, "exported.json", &first_json);
    assert_eq!(
        s.deploy_ok(&["catalog", "apply", &exported_json]),
        "no changes\n"
    );
    assert_eq!(
        s.deploy_ok(&["catalog", "export", "--format", "json"]),
        first_json
    );

    // Declarations made since: left alone by an apply, removed by --prune.
    s.deploy_ok(&["tier", "add", "cloud"]);
    s.deploy_ok(&["secret", "meta", "extra", "--class", "user"]);
    let out = s.deploy_ok(&["catalog", "apply", &exported]);
    assert_eq!(out, "no changes\n");
    let out = s.deploy_ok(&["catalog", "apply", &exported, "--prune", "--dry-run"]);
    assert!(out.contains("- tier cloud (not core)"), "{out}");
    assert!(out.contains("- secret extra"), "{out}");
    assert!(
        out.ends_with("0 added, 0 changed, 2 removed (dry run: nothing changed)\n"),
        "{out}"
    );
    s.deploy_ok(&["catalog", "apply", &exported, "--prune"]);
    assert_eq!(s.deploy_ok(&["catalog", "export"]), first);
    // A changed file is a readable diff of fields.
    let changed = write(
        &s,
        "changed.toml",
        &first.replace("owner = \"api team\"", "owner = \"platform team\""),
    );
    let out = s.deploy_ok(&["catalog", "apply", &changed]);
    assert_eq!(
        out,
        "~ secret jwt_key\n    ~ owner: \"api team\" -> \"platform team\"\n\
         0 added, 1 changed, 0 removed\n"
    );
}

#[test]
fn a_plain_9p_client_has_every_answer_on_ctl() {
    let s = SecretsServer::start();
    s.add_service("web", WEB, Some("secret db\n"));
    // A transaction mixes declarations, a generated value and a grant, all or none; the
    // value generated is the core tier's template, declared two lines before.
    let (out, err) = rpc(
        &s,
        b"begin\ntier add local_dev core\nstrategy db tier local_dev serve '{{random:hex:16}}'\n\
          generate db\ngrant web db\ncommit\n",
    );
    assert_eq!(err, "");
    assert_eq!(
        out,
        "ok begin\n\
         ok tier add local_dev core=yes created=yes changed=yes\n\
         ok strategy db local_dev strategy=serve created=yes replaced=no changed=yes\n\
         ok generate db version=1\n\
         ok grant web db already=no\n\
         ok commit commands=4\n"
    );
    assert_eq!(s.get_as("db", "web").len(), 32);
    // One that fails at its end leaves nothing.
    let (_, err) = rpc(
        &s,
        b"begin\ntier add desktop\nmeta db owner ops\nstrategy db tier desktop serve\ncommit\n",
    );
    assert!(err.contains("serve is for core tiers only"), "{err}");
    let (out, _) = rpc(&s, b"catalog export\n");
    assert!(!out.contains("desktop"), "{out}");
    assert!(!out.contains("ops"), "{out}");
    // Plans and lint as JSON bodies; queries stay out of transactions.
    let (out, _) = rpc(&s, b"plan web local_dev\n");
    assert!(
        out.starts_with("ok plan web local_dev ok=yes problems=0 {"),
        "{out}"
    );
    assert_eq!(json(body(&out))["entries"][0]["action"], "serve");
    let (out, _) = rpc(&s, b"lint\n");
    assert!(out.starts_with("ok lint ok=no findings=1 {"), "{out}");
    assert_eq!(json(body(&out))["findings"][0]["id"], "no-class/db");
    let (_, err) = rpc(&s, b"begin\nlint\n");
    assert!(
        err.contains("lint: cannot run inside a transaction"),
        "{err}"
    );
    // help lists the catalog's commands.
    let (out, _) = rpc(&s, b"help\n");
    for form in [
        "tier add TIER [core]",
        "plan SERVICE TIER",
        "catalog export [toml|json]",
    ] {
        assert!(out.contains(form), "{out}");
    }
}

/// `9p read PATH` (or `ls`) as `uid` on the admin aname: stdout, or the error.
fn read_9p(s: &SecretsServer, uid: u32, verb: &str, path: &str) -> Result<String, String> {
    let out = s.ninep_as(uid, "", &[verb, path]);
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(stderr(&out))
    }
}

#[test]
fn plans_and_the_lint_are_files_of_the_admin_tree_saying_what_deploy_prints() {
    let s = SecretsServer::start();
    let seed = write(&s, "postgres.json", SEED);
    s.deploy_ok(&["catalog", "apply", &seed, "--with-values"]);
    s.add_service(
        "web",
        WEB,
        Some("secret postgres_connection\nsecret missing\n"),
    );
    assert_eq!(
        read_9p(&s, 0, "ls", "/secrets/plans").unwrap(),
        "web\n",
        "a directory per service"
    );
    assert_eq!(
        read_9p(&s, 0, "ls", "/secrets/plans/web").unwrap(),
        "cloud\ndesktop\nlocal_dev\n"
    );
    for tier in ["cloud", "desktop", "local_dev"] {
        let file = read_9p(&s, 0, "read", &format!("/secrets/plans/web/{tier}")).unwrap();
        let printed = s.deploy(&[
            "secret",
            "plan",
            "--service",
            "web",
            "--tier",
            tier,
            "--json",
        ]);
        assert_eq!(printed.status.code(), Some(1), "missing is a problem");
        assert_eq!(file, stdout(&printed), "{tier}");
    }
    assert_eq!(
        json(&read_9p(&s, 0, "read", "/secrets/plans/web/desktop").unwrap())["entries"][0]["action"],
        "generate"
    );
    let lint = read_9p(&s, 0, "read", "/secrets/lint").unwrap();
    assert_eq!(lint, stdout(&s.deploy(&["secret", "lint", "--json"])));
    assert!(
        !json(&lint)["findings"].as_array().unwrap().is_empty(),
        "{lint}"
    );
    // A tier or a service that is not there is no file.
    for path in ["/secrets/plans/web/mobile", "/secrets/plans/api/cloud"] {
        let err = read_9p(&s, 0, "read", path).unwrap_err();
        assert!(err.contains("file does not exist"), "{path}: {err}");
    }
    // A plan follows the catalog: the next read shows a new strategy.
    s.deploy_ok(&[
        "secret", "strategy", "missing", "--tier", "cloud", "--strip",
    ]);
    let cloud = json(&read_9p(&s, 0, "read", "/secrets/plans/web/cloud").unwrap());
    let stripped = cloud["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["secret"] == "missing")
        .cloned()
        .unwrap();
    assert_eq!(stripped["action"], "strip", "{cloud}");
    // The service cannot reach the admin tree at all, plans included.
    let err = read_9p(&s, WEB, "read", "/secrets/plans/web/cloud").unwrap_err();
    assert!(!err.is_empty());
    assert!(!err.contains("postgres"), "{err}");
}

/// A catalog of `n` secrets, each owned by `owner`.
fn big_catalog(n: usize, owner: &str) -> String {
    let mut out = String::from("[tiers.local_dev]\ncore = true\n[tiers.desktop]\ncore = false\n");
    for i in 0..n {
        out.push_str(&format!(
            "\n[secrets.s{i:05}]\nclass = \"service\"\nowner = \"{owner}\"\n\
             [secrets.s{i:05}.tiers.desktop]\nstrategy = \"generate\"\n\
             template = \"{{{{random:hex:16}}}}\"\n"
        ));
    }
    out
}

/// The owners of every secret of the exported catalog.
fn owners(export: &str) -> std::collections::BTreeSet<String> {
    export
        .lines()
        .filter_map(|l| l.strip_prefix("owner = "))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_kill_9_during_a_catalog_apply_leaves_all_of_it_or_none() {
    const N: usize = 3000;
    let mut s = SecretsServer::start();
    let a = write(&s, "a.toml", &big_catalog(N, "team-a"));
    let b = write(&s, "b.toml", &big_catalog(N, "team-b"));
    // How long an apply takes, start to finish: the kills land across it.
    let started = std::time::Instant::now();
    s.deploy_ok(&["catalog", "apply", &a]);
    let whole = started.elapsed();
    // What the store holds, as of the last restart.
    let mut current = "\"team-a\"".to_string();
    let mut cut = 0;
    const KILLS: u32 = 8;
    let mut landed = 0;
    for i in 0..KILLS {
        let (file, owner) = if current.contains("team-a") {
            (&b, "\"team-b\"")
        } else {
            (&a, "\"team-a\"")
        };
        let mut child = std::process::Command::new(&bins().deploy)
            .args(["--addr", &s.addr(), "catalog", "apply", file])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // From before the file is sent to after the commit.
        std::thread::sleep(whole * (i + 1) / (KILLS - 2));
        s.kill9();
        let status = child.wait().unwrap();
        if !status.success() {
            cut += 1;
        }
        s.serve();
        let found = owners(&s.deploy_ok(&["catalog", "export"]));
        assert_eq!(found.len(), 1, "a catalog apply landed in part: {found:?}");
        let found = found.into_iter().next().unwrap();
        if status.success() {
            assert_eq!(found, owner, "an acknowledged apply was lost");
        }
        if found == owner {
            landed += 1;
        }
        current = found;
    }
    eprintln!(
        "an apply takes {whole:?}; of {KILLS} kills, {cut} cut deploy short, and {landed} \
         applies landed"
    );
}
