//! Bundles (issue 11), end to end on the real binaries: through `deploy`, a plain 9P
//! client writing `/secrets/ctl`, and HTTP (curl).
//!
//! A bundle's layout, modes and contents in each format; no stored value in any bundle
//! whatever the catalog says (an infrastructure secret pushed in by flags, TOML, seed JSON,
//! a class of its own on the tier, a template that spells the value out); fresh values per
//! deployment; a reused deployment id refused, `--replace` issuing anew; `identify`
//! naming the deployment of a value and none for another; the first-run prompt driven
//! through a pseudo-terminal and `--from-env`; `secret delegate --via` handing a value to
//! a fake provider and nowhere else; the records kept across a restart and rotations.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use srv_secrets_tests::harness::{
    CURL, SecretsServer, bins, can_curl, curl, run_with_stdin, stderr, stdout,
};

const WEB: u32 = 1001;
/// The infrastructure secret's stored value: in no bundle, ever.
const ROOT: &str = "ROOT-QQ7-the-master-db-password";

const CATALOG: &str = r#"
[tiers.local_dev]
core = true
[tiers.desktop]

[secrets.db_root]
class = "infrastructure"
[secrets.db_root.tiers.local_dev]
strategy = "serve"
[secrets.db_root.tiers.desktop]
strategy = "strip"

[secrets.jwt_key]
class = "service"
[secrets.jwt_key.tiers.desktop]
strategy = "generate"
template = "{{random:base64url:32}}"

[secrets.app_db]
class = "service"
[secrets.app_db.tiers.desktop]
strategy = "generate"
template = "file://{{USER_DATA}}/app.db"

[secrets.openrouter_key]
class = "user"
[secrets.openrouter_key.tiers.desktop]
strategy = "prompt"
label = "OpenRouter API key"
kind = "password"
pattern = "sk-or-[a-z0-9]+"
help = "From openrouter.ai/keys"

[secrets.port]
class = "user"
[secrets.port.tiers.desktop]
strategy = "prompt"
label = "Port"
kind = "number"
min = 1
max = 65535

[secrets.smtp_url]
class = "user"
[secrets.smtp_url.tiers.desktop]
strategy = "prompt"
label = "SMTP URL"
kind = "url"
optional = true

[secrets.tg_token]
class = "user"
[secrets.tg_token.tiers.desktop]
strategy = "delegate"
ref = "github:acme/bot#TELEGRAM_TOKEN"
"#;

const MANIFEST: &str = "secret db_root\nsecret jwt_key\nsecret app_db\nsecret openrouter_key\n\
    secret port\nsecret smtp_url\nsecret tg_token\n";

/// A server with the catalog, service web and db_root's stored value.
fn server() -> SecretsServer {
    let s = SecretsServer::start();
    setup(&s);
    s
}

fn setup(s: &SecretsServer) {
    let path = write(s, "catalog.toml", CATALOG);
    s.deploy_ok(&["catalog", "apply", &path]);
    s.add_service("web", WEB, Some(MANIFEST));
    let out = s.deploy_with_stdin(&["secret", "set", "db_root"], ROOT.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
}

fn write(s: &SecretsServer, name: &str, text: &str) -> String {
    let path = s.root.path().join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"))
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o777
}

/// RFC 4648 base64, padded.
fn base64(raw: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in raw.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &c)| n | u32::from(c) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(A[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn unbase64(text: &str) -> Vec<u8> {
    let sym = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let mut out = Vec::new();
    for quad in text.as_bytes().chunks(4) {
        let pad = quad.iter().filter(|&&c| c == b'=').count();
        let n = quad
            .iter()
            .map(|&c| if c == b'=' { 0 } else { u32::from(sym(c)) })
            .fold(0u32, |n, v| n << 6 | v);
        out.extend_from_slice(&[(n >> 16) as u8, (n >> 8) as u8, n as u8][..3 - pad]);
    }
    out
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// `deploy bundle create` of web on desktop to `deployment`, into `s.root/dir`.
fn create(s: &SecretsServer, deployment: &str, dir: &str, extra: &[&str]) -> (Output, PathBuf) {
    let out_dir = s.root.path().join(dir);
    let mut args = vec![
        "bundle",
        "create",
        "--service",
        "web",
        "--tier",
        "desktop",
        "--deployment",
        deployment,
        "--out",
        out_dir.to_str().unwrap(),
    ];
    args.extend(extra);
    (s.deploy(&args), out_dir)
}

fn create_ok(s: &SecretsServer, deployment: &str, dir: &str, extra: &[&str]) -> PathBuf {
    let (out, path) = create(s, deployment, dir, extra);
    assert!(out.status.success(), "{}", stderr(&out));
    path
}

/// `9p rpc secrets/ctl` as root: one Twrite per line of `input`, then the fid's results.
fn rpc(s: &SecretsServer, input: &[u8]) -> (String, String) {
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "rpc", "/secrets/ctl"]);
    let out = run_with_stdin(cmd, input);
    (stdout(&out), stderr(&out))
}

#[test]
fn each_format_has_its_layout_modes_and_contents() {
    let s = server();
    // dir, the default.
    let (out, dir) = create(&s, "acme-dir", "b-dir", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.starts_with("issued bundle 1 of web on tier desktop to deployment acme-dir, in "),
        "{said}"
    );
    assert!(said.contains("2 generated (values/)"), "{said}");
    assert!(
        said.contains("3 to prompt for at first run (prompts.json)"),
        "{said}"
    );
    assert!(
        said.contains("1 delegated (delegated.json, 1 not present yet)"),
        "{said}"
    );
    assert!(
        said.contains("1 stripped (named in manifest.json)"),
        "{said}"
    );
    assert!(stderr(&out).contains("tg_token is delegated to github:acme/bot#TELEGRAM_TOKEN"));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join("values")), 0o700);
    let got = files(&dir);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "delegated.json",
            "manifest.json",
            "prompts.json",
            "values/app_db",
            "values/jwt_key"
        ]
    );
    for (name, _) in &got {
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
    assert_eq!(read("values/app_db"), b"file://{{USER_DATA}}/app.db");
    let jwt = read("values/jwt_key");
    assert_eq!(jwt.len(), 43, "32 random bytes, base64url");
    let manifest = json(&String::from_utf8(read("manifest.json")).unwrap());
    assert_eq!(manifest["deployment"], "acme-dir");
    assert_eq!(manifest["bundle"], 1);
    let secrets = manifest["secrets"].as_array().unwrap();
    assert_eq!(secrets.len(), 7, "every secret of the manifest");
    assert_eq!(secrets[0]["secret"], "db_root");
    assert_eq!(secrets[0]["action"], "strip");
    assert_eq!(secrets[0]["class"], "infrastructure");
    assert_eq!(
        secrets[2]["target_placeholders"],
        serde_json::json!(["USER_DATA"])
    );
    let prompts = json(&String::from_utf8(read("prompts.json")).unwrap());
    assert_eq!(prompts["prompts"][0]["secret"], "openrouter_key");
    assert_eq!(prompts["prompts"][0]["pattern"], "sk-or-[a-z0-9]+");
    assert_eq!(prompts["prompts"][2]["optional"], true);
    let delegated = json(&String::from_utf8(read("delegated.json")).unwrap());
    assert_eq!(
        delegated["delegated"][0]["ref"],
        "github:acme/bot#TELEGRAM_TOKEN"
    );
    assert_eq!(delegated["delegated"][0]["present"], false);

    // json: one document, values in base64.
    let dir = create_ok(&s, "acme-json", "b-json", &["--format", "json"]);
    assert_eq!(mode(&dir), 0o700);
    let got = files(&dir);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, "bundle.json");
    assert_eq!(mode(&dir.join("bundle.json")), 0o600);
    let doc = json(&String::from_utf8(got[0].1.clone()).unwrap());
    assert_eq!(doc["format"], "srv-secrets-bundle/1");
    assert_eq!(
        doc["values"]["app_db"],
        base64(b"file://{{USER_DATA}}/app.db").as_str()
    );
    let json_jwt = unbase64(doc["values"]["jwt_key"].as_str().unwrap());
    assert_eq!(json_jwt.len(), 43);
    assert_eq!(doc["prompts"].as_array().unwrap().len(), 3);
    assert_eq!(doc["manifest"].as_array().unwrap().len(), 7);

    // dotenv: NAME=VALUE lines beside the JSON files, quoted so any bytes survive.
    let dir = create_ok(&s, "acme-env", "b-env", &["--format", "dotenv"]);
    let got = files(&dir);
    let names: Vec<&str> = got.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "delegated.json",
            "manifest.json",
            "prompts.json",
            "values.env"
        ]
    );
    assert_eq!(mode(&dir.join("values.env")), 0o600);
    let env = String::from_utf8(std::fs::read(dir.join("values.env")).unwrap()).unwrap();
    let lines: Vec<&str> = env.lines().collect();
    assert_eq!(lines[0], "app_db='file://{{USER_DATA}}/app.db'");
    assert!(lines[1].starts_with("jwt_key='") && lines[1].len() == "jwt_key=''".len() + 43);
    // A shell reads it back exactly.
    let sourced = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "set -a; . '{}'; printf %s \"$app_db\"",
            dir.join("values.env").display()
        ))
        .output()
        .unwrap();
    assert_eq!(sourced.stdout, b"file://{{USER_DATA}}/app.db");

    // Fresh values for each deployment.
    let env_jwt = lines[1].as_bytes()["jwt_key='".len()..lines[1].len() - 1].to_vec();
    assert_ne!(jwt, json_jwt);
    assert_ne!(jwt, env_jwt);
    assert_ne!(json_jwt, env_jwt);
    // None of them reached the log.
    let log = s.log_text();
    for v in [&jwt, &json_jwt, &env_jwt] {
        assert!(
            !contains(log.as_bytes(), v),
            "a generated value is in the log"
        );
    }
    assert!(!log.contains(ROOT));
}

#[test]
fn no_stored_value_reaches_a_bundle_whatever_the_catalog_says() {
    let s = server();
    const REASON: &str = "infrastructure never leaves the core server";
    // By flags.
    for how in [
        &["--generate", ROOT][..],
        &["--prompt", "--label", "Root"][..],
        &["--delegate", "env:DB_ROOT"][..],
        &["--serve"][..],
    ] {
        let mut args = vec!["secret", "strategy", "db_root", "--tier", "desktop"];
        args.extend(how);
        let out = s.deploy(&args);
        assert_eq!(out.status.code(), Some(1), "{how:?}");
        assert!(stderr(&out).contains(REASON), "{how:?}: {}", stderr(&out));
    }
    // By TOML.
    let toml = write(
        &s,
        "leak.toml",
        "[tiers.desktop]\n[secrets.db_root]\nclass = \"infrastructure\"\n\
         [secrets.db_root.tiers.desktop]\nstrategy = \"generate\"\ntemplate = \"{{uuid}}\"\n",
    );
    let out = s.deploy(&["catalog", "apply", &toml]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(REASON), "{}", stderr(&out));
    // By seed JSON, value and all.
    let seed = write(
        &s,
        "leak.json",
        &format!(
            r#"{{ "secret_id": "db_root", "deployment_strategy": {{
                 "local_dev": {{ "type": "infrastructure", "source": "secrets_vault",
                                 "value": "{ROOT}" }},
                 "desktop": {{ "type": "infrastructure", "action": "generate_copy",
                               "template": "{{{{random:hex:16}}}}" }} }} }}"#
        ),
    );
    let out = s.deploy(&["catalog", "apply", &seed, "--with-values"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(REASON), "{}", stderr(&out));
    assert!(!stderr(&out).contains(ROOT));

    let mut bundles = vec![create_ok(&s, "leak-1", "leak-1", &[])];
    // A class of its own on the tier makes it generated there: fresh, never the stored one.
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db_root",
        "--tier",
        "desktop",
        "--class",
        "service",
        "--generate",
        "{{random:hex:16}}",
    ]);
    for format in ["dir", "json", "dotenv"] {
        let name = format!("leak-{format}");
        bundles.push(create_ok(&s, &name, &name, &["--format", format]));
    }
    let generated = std::fs::read(bundles[1].join("values/db_root")).unwrap();
    assert_eq!(generated.len(), 32);
    // A template that spells the stored value out is refused, and nothing is written.
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db_root",
        "--tier",
        "desktop",
        "--class",
        "service",
        "--generate",
        &format!("postgres://root:{ROOT}@db/app"),
    ]);
    let (out, dir) = create(&s, "leak-spelled", "leak-spelled", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("bundles never carry one"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains(ROOT));
    assert!(!dir.exists());
    // Nor over 9P, to a client that checks nothing.
    let (_, err) = rpc(&s, b"bundle create web desktop leak-9p\n");
    assert!(err.contains("bundles never carry one"), "{err}");
    // No bundle anywhere holds the stored value, nor its base64.
    for dir in &bundles {
        for (name, bytes) in files(dir) {
            assert!(!contains(&bytes, ROOT.as_bytes()), "{name}");
            assert!(
                !contains(&bytes, base64(ROOT.as_bytes()).as_bytes()),
                "{name}"
            );
        }
    }
    assert!(!s.log_text().contains(ROOT));
}

#[test]
fn a_deployment_id_is_used_once_and_replace_issues_anew() {
    let mut s = server();
    let first = create_ok(&s, "acme-1", "first", &[]);
    let first_jwt = std::fs::read(first.join("values/jwt_key")).unwrap();
    // Again: refused, naming the bundle and --replace; nothing issued or written.
    let (out, dir) = create(&s, "acme-1", "again", &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("deployment acme-1 already has bundle 1 of web on tier desktop"),
        "{err}"
    );
    assert!(err.contains("--replace"), "{err}");
    assert!(!dir.exists());
    // The server refuses it on its own, to a plain 9P client.
    let (_, err) = rpc(&s, b"bundle create web desktop acme-1\n");
    assert_eq!(
        err,
        "9p: write: ctl: line 1: bundle: this deployment has bundle 1 of the service on the \
         tier; a new one needs replace\n"
    );
    // The same id for another tier or service is another deployment: not refused here.
    let out = s.deploy_ok(&["bundle", "list", "--deployment", "acme-1", "--json"]);
    assert_eq!(json(&out).as_array().unwrap().len(), 2);
    // --replace: bundle 2, fresh values, the earlier ones on record as replaced.
    let second = create_ok(&s, "acme-1", "second", &["--replace"]);
    let second_jwt = std::fs::read(second.join("values/jwt_key")).unwrap();
    assert_ne!(first_jwt, second_jwt);
    let manifest = json(&std::fs::read_to_string(second.join("manifest.json")).unwrap());
    assert_eq!(manifest["bundle"], 2);
    let list = s.deploy_ok(&[
        "bundle",
        "list",
        "--deployment",
        "acme-1",
        "--secret",
        "jwt_key",
    ]);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 3, "{list}");
    assert!(lines[0].starts_with("DEPLOYMENT  SERVICE  TIER"), "{list}");
    assert!(
        lines[1].contains(" 1  jwt_key ") && lines[1].ends_with("replaced"),
        "{list}"
    );
    assert!(
        lines[2].contains(" 2  jwt_key ") && lines[2].ends_with("current"),
        "{list}"
    );
    // A restart keeps it all.
    let before = s.deploy_ok(&["bundle", "list", "--json"]);
    s.stop_ok();
    s.serve();
    assert_eq!(s.deploy_ok(&["bundle", "list", "--json"]), before);
    let (out, _) = create(&s, "acme-1", "third", &[]);
    assert_eq!(out.status.code(), Some(2));
    let out = s.deploy_with_stdin(&["bundle", "identify"], &first_jwt);
    assert!(stdout(&out).contains("bundle 1"), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("(replaced since)"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn identify_names_the_deployment_of_a_value_and_none_for_another() {
    let mut s = server();
    let a = create_ok(&s, "acme-laptop-7", "a", &[]);
    let b = create_ok(&s, "acme-laptop-8", "b", &[]);
    let a_jwt = std::fs::read(a.join("values/jwt_key")).unwrap();
    let b_jwt = std::fs::read(b.join("values/jwt_key")).unwrap();
    let out = s.deploy_with_stdin(&["bundle", "identify"], &a_jwt);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.starts_with(
            "issued to deployment acme-laptop-7: secret jwt_key of service web on tier \
             desktop, bundle 1, "
        ),
        "{said}"
    );
    assert_eq!(said.lines().count(), 1);
    assert!(!contains(&out.stdout, &a_jwt) && !contains(&out.stderr, &a_jwt));
    // As pasted, with a newline: found all the same.
    let mut pasted = b_jwt.clone();
    pasted.push(b'\n');
    let out = s.deploy_with_stdin(&["bundle", "identify"], &pasted);
    assert!(stdout(&out).contains("acme-laptop-8"), "{}", stdout(&out));
    // A value no bundle got: none, exit 1.
    let out = s.deploy_with_stdin(&["bundle", "identify"], b"sk-random-QQ9-never-issued");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), "no bundle was issued this value\n");
    // The stored value is not a bundle's.
    let out = s.deploy_with_stdin(&["bundle", "identify"], ROOT.as_bytes());
    assert_eq!(out.status.code(), Some(1));
    // A value that no template drew at random was given to both.
    let out = s.deploy_with_stdin(&["bundle", "identify"], b"file://{{USER_DATA}}/app.db");
    assert_eq!(stdout(&out).lines().count(), 2, "{}", stdout(&out));
    // Never from argv: refused without an echo.
    let out = s.deploy(&["bundle", "identify", "sk-argv-QQ8"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("sk-argv-QQ8"), "{}", stderr(&out));
    // A plain 9P client: the value as a literal, the answer on the same fid.
    let mut line = format!("bundle identify {{{}}}\n", a_jwt.len()).into_bytes();
    line.extend_from_slice(&a_jwt);
    line.push(b'\n');
    let (out, err) = rpc(&s, &line);
    assert_eq!(err, "");
    let (first, body) = out.split_once('\n').unwrap();
    assert!(first.starts_with("ok bundle identify found=1 {"), "{first}");
    let found = json(body);
    assert_eq!(found[0]["deployment"], "acme-laptop-7");
    assert_eq!(found[0]["secret"], "jwt_key");
    assert!(!out.contains(std::str::from_utf8(&a_jwt).unwrap()));
    // After a restart and a key rotation, still found.
    s.stop_ok();
    s.serve();
    s.deploy_ok(&["secret", "rotate-key"]);
    let out = s.deploy_with_stdin(&["bundle", "identify"], &b_jwt);
    assert!(stdout(&out).contains("acme-laptop-8"), "{}", stdout(&out));
    // Nothing identified reached the log.
    assert!(!contains(s.log_text().as_bytes(), &a_jwt));
    assert!(!s.log_text().contains("sk-random-QQ9"));
}

#[test]
fn a_plain_9p_client_gets_the_bundle_on_the_fid_that_asked() {
    let s = server();
    let (out, err) = rpc(
        &s,
        b"bundle create web desktop acme-9p\nbundle list deployment acme-9p\n",
    );
    assert_eq!(err, "");
    let (first, rest) = out.split_once('\n').unwrap();
    assert!(
        first.starts_with(
            "ok bundle create web desktop acme-9p bundle=1 replaced=none values=2 prompts=3 \
             delegated=1 {"
        ),
        "{first}"
    );
    let len: usize = first
        .rsplit_once('{')
        .unwrap()
        .1
        .trim_end_matches('}')
        .parse()
        .unwrap();
    let (body, after) = rest.split_at(len);
    let bundle = json(body);
    assert_eq!(bundle["deployment"], "acme-9p");
    let jwt = unbase64(bundle["values"]["jwt_key"].as_str().unwrap());
    assert_eq!(jwt.len(), 43);
    // Then the list's answer, on the same fid.
    let (list_line, list_body) = after.trim_start_matches('\n').split_once('\n').unwrap();
    assert!(
        list_line.starts_with("ok bundle list values=2 {"),
        "{list_line}"
    );
    assert_eq!(json(list_body).as_array().unwrap().len(), 2);
    // Another fid's recent results carry the line, never the body.
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "read", "/secrets/ctl"]);
    let recent = stdout(&run_with_stdin(cmd, b""));
    assert!(!contains(recent.as_bytes(), &jwt), "{recent}");
    // Refusals fit what a Plan 9 client keeps.
    let (_, err) = rpc(
        &s,
        b"bundle create web local_dev x\nbundle create web desktop '..'\nbundle frob\n",
    );
    for line in err.lines() {
        let text = line.strip_prefix("9p: write: ").unwrap();
        assert!(text.len() <= 127, "{} bytes: {text}", text.len());
    }
    assert!(err.contains("a core tier reads the core server"), "{err}");
    assert!(err.contains("invalid deployment name"), "{err}");
    // An incomplete plan names its first problem.
    s.deploy_ok(&["service", "add", "api", "--uid", "1002"]);
    let manifest = write(&s, "api.manifest", "secret jwt_key\nsecret nowhere\n");
    s.deploy_ok(&[
        "service",
        "add",
        "api",
        "--uid",
        "1002",
        "--manifest",
        &manifest,
    ]);
    let (_, err) = rpc(&s, b"bundle create api desktop x\n");
    assert_eq!(
        err,
        "9p: write: ctl: line 1: bundle: the plan has 1 problem(s), first \
         no-such-secret/api/nowhere; see: deploy secret plan\n"
    );
    // deploy lists every problem, and writes nothing.
    let out_dir = s.root.path().join("api-bundle");
    let out = s.deploy(&[
        "bundle",
        "create",
        "--service",
        "api",
        "--tier",
        "desktop",
        "--deployment",
        "x",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("no-such-secret/api/nowhere: "),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());
    let leftovers: Vec<String> = std::fs::read_dir(s.root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn an_output_directory_that_is_not_empty_is_refused_before_anything_is_issued() {
    let s = server();
    let dir = s.root.path().join("full");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("keep"), b"mine").unwrap();
    let out = s.deploy(&[
        "bundle",
        "create",
        "--service",
        "web",
        "--tier",
        "desktop",
        "--deployment",
        "acme-1",
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("is not empty"), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.join("keep")).unwrap(), b"mine");
    assert_eq!(s.deploy_ok(&["bundle", "list", "--json"]), "[]\n");
    // An empty one is taken, and made private.
    let empty = s.root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    std::fs::set_permissions(&empty, std::fs::Permissions::from_mode(0o755)).unwrap();
    create_ok(&s, "acme-1", "empty", &[]);
    assert_eq!(mode(&empty), 0o700);
    assert!(empty.join("values/jwt_key").exists());
    // A dotenv bundle of a secret whose name is no variable name is refused up front.
    let path = write(
        &s,
        "dotted.toml",
        "[tiers.desktop]\n[secrets.\"app.key\"]\nclass = \"service\"\n\
         [secrets.\"app.key\".tiers.desktop]\n\
         strategy = \"generate\"\ntemplate = \"{{uuid}}\"\n",
    );
    s.deploy_ok(&["catalog", "apply", &path]);
    let manifest = write(&s, "dotted.manifest", "secret app.key\n");
    s.deploy_ok(&[
        "service",
        "add",
        "dotted",
        "--uid",
        "1004",
        "--manifest",
        &manifest,
    ]);
    let out_dir = s.root.path().join("dotted");
    let out = s.deploy(&[
        "bundle",
        "create",
        "--service",
        "dotted",
        "--tier",
        "desktop",
        "--deployment",
        "d1",
        "--out",
        out_dir.to_str().unwrap(),
        "--format",
        "dotenv",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("app.key is not a variable name"),
        "{}",
        stderr(&out)
    );
    assert!(!out_dir.exists());
    assert_eq!(
        json(&s.deploy_ok(&["bundle", "list", "--deployment", "d1", "--json"])),
        serde_json::json!([])
    );
}

/// Runs `command` in a pseudo-terminal (`script`), and for each step waits for its text to
/// appear (after the previous step's), lets a moment pass (rpassword shows its prompt just
/// before it turns echo off), and types its input. Returns the exit status and everything
/// the terminal showed.
fn dialog(command: &str, steps: &[(&str, &[u8])]) -> (Option<i32>, String) {
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut shown = Vec::new();
    let mut from = 0;
    let mut buf = [0u8; 256];
    for (wait_for, typed) in steps {
        loop {
            let text = String::from_utf8_lossy(&shown[from..]).into_owned();
            if let Some(at) = text.find(wait_for) {
                from += at + wait_for.len();
                break;
            }
            let n = out.read(&mut buf).unwrap();
            assert!(
                n > 0,
                "no {wait_for:?} in: {}",
                String::from_utf8_lossy(&shown)
            );
            shown.extend_from_slice(&buf[..n]);
        }
        std::thread::sleep(Duration::from_millis(500));
        input.write_all(typed).unwrap();
    }
    out.read_to_end(&mut shown).unwrap();
    let status = child.wait().unwrap();
    drop(input);
    (status.code(), String::from_utf8_lossy(&shown).into_owned())
}

fn have_script(test: &str) -> bool {
    let present = Command::new("script").arg("--version").output().is_ok();
    if !present {
        assert!(
            std::env::var("CI").is_err(),
            "{test}: needs script (util-linux)"
        );
        eprintln!("skipping {test}: needs script (util-linux)");
    }
    present
}

#[test]
fn the_first_run_prompt_asks_checks_asks_again_and_skips() {
    if !have_script("prompt") {
        return;
    }
    let s = server();
    let dir = create_ok(&s, "acme-first-run", "first-run", &[]);
    let command = format!(
        "{} prompt --spec {} --out {}",
        bins().deploy.display(),
        dir.join("prompts.json").display(),
        dir.display()
    );
    let (status, shown) = dialog(
        &command,
        &[
            // A password: not echoed. Wrong first, then right.
            ("OpenRouter API key: ", b"nope-QQ1\n"),
            ("must match the pattern", b""),
            ("OpenRouter API key: ", b"sk-or-goodqq2\n"),
            // A number, right the first time.
            ("Port: ", b"8080\n"),
            // Optional: Enter skips it.
            ("SMTP URL: ", b"\n"),
        ],
    );
    assert_eq!(status, Some(0), "{shown}");
    assert!(shown.contains("From openrouter.ai/keys"), "{shown}");
    assert_eq!(shown.matches("try again").count(), 1, "{shown}");
    assert!(shown.contains("optional: Enter skips it"), "{shown}");
    assert!(
        !shown.contains("nope-QQ1"),
        "a password was echoed: {shown}"
    );
    assert!(
        !shown.contains("sk-or-goodqq2"),
        "a password was echoed: {shown}"
    );
    assert!(shown.contains("wrote 2 answers"), "{shown}");
    assert!(
        shown.contains("skipped 1 optional one (smtp_url)"),
        "{shown}"
    );
    let values = dir.join("values");
    assert_eq!(
        std::fs::read(values.join("openrouter_key")).unwrap(),
        b"sk-or-goodqq2"
    );
    assert_eq!(std::fs::read(values.join("port")).unwrap(), b"8080");
    assert!(!values.join("smtp_url").exists());
    assert_eq!(mode(&values.join("openrouter_key")), 0o600);
    assert_eq!(mode(&values.join("port")), 0o600);
    // The generated value is still there beside the answers.
    assert_eq!(std::fs::read(values.join("jwt_key")).unwrap().len(), 43);
    // Without a terminal, and without --from-env: refused, saying what to do.
    let out = run_with_stdin(
        {
            let mut c = Command::new(&bins().deploy);
            c.args(["prompt", "--spec"])
                .arg(dir.join("prompts.json"))
                .arg("--out")
                .arg(&dir);
            c
        },
        b"",
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("--from-env"), "{}", stderr(&out));
}

#[test]
fn the_first_run_prompt_reads_the_environment_with_from_env() {
    let s = server();
    let dir = create_ok(&s, "acme-env", "env-run", &[]);
    let prompt = |vars: &[(&str, &str)]| {
        let mut c = Command::new(&bins().deploy);
        c.args(["prompt", "--from-env", "--spec"])
            .arg(dir.join("prompts.json"))
            .arg("--out")
            .arg(&dir)
            .env_remove("openrouter_key")
            .env_remove("port")
            .env_remove("smtp_url");
        for (k, v) in vars {
            c.env(k, v);
        }
        run_with_stdin(c, b"")
    };
    // Refused answers: every one named with its reason, never the value; nothing written.
    let out = prompt(&[("openrouter_key", "nope-QQ3"), ("port", "x")]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("2 answers refused, so nothing was written"),
        "{err}"
    );
    assert!(
        err.contains("openrouter_key: the answer must match the pattern"),
        "{err}"
    );
    assert!(err.contains("port: a whole number is expected"), "{err}");
    assert!(!err.contains("nope-QQ3"), "{err}");
    assert!(!dir.join("values/openrouter_key").exists());
    let out = prompt(&[("port", "80")]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("openrouter_key: the variable is not set, or empty"),
        "{}",
        stderr(&out)
    );
    // Right ones: written, the optional one skipped.
    let out = prompt(&[("openrouter_key", "sk-or-envqq4"), ("port", "443")]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "wrote 2 answers to {} (openrouter_key, port); skipped 1 optional one (smtp_url)\n",
            dir.join("values").display()
        )
    );
    assert!(!stdout(&out).contains("sk-or-envqq4"));
    let values = dir.join("values");
    assert_eq!(
        std::fs::read(values.join("openrouter_key")).unwrap(),
        b"sk-or-envqq4"
    );
    assert_eq!(std::fs::read(values.join("port")).unwrap(), b"443");
    // Given, the optional one is checked and kept.
    let out = prompt(&[
        ("openrouter_key", "sk-or-envqq4"),
        ("port", "443"),
        ("smtp_url", "smtp://mail.example.com:587"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(values.join("smtp_url")).unwrap(),
        b"smtp://mail.example.com:587"
    );
}

#[test]
fn delegate_via_hands_the_value_to_the_provider_and_nowhere_else() {
    let s = server();
    const VALUE: &[u8] = b"tg-QQ5-bot-token-123456";
    let got = s.root.path().join("provider-got");
    let provider = write(&s, "provider.sh", "#!/bin/sh\ncat > \"$1\"\n");
    let via = format!("sh {provider} {}", got.display());
    let args = [
        "secret",
        "delegate",
        "tg_token",
        "--tier",
        "desktop",
        "--ref",
        "github:acme/bot#TELEGRAM_TOKEN",
        "--via",
        &via,
    ];
    let out = s.deploy_with_stdin(&args, VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&got).unwrap(),
        VALUE,
        "the value reached the provider"
    );
    assert!(
        stdout(&out).contains("github:acme/bot#TELEGRAM_TOKEN is present on tier desktop"),
        "{}",
        stdout(&out)
    );
    // Not the output, not the log, not the store.
    for text in [&out.stdout, &out.stderr] {
        assert!(!contains(text, VALUE));
    }
    assert!(!contains(s.log_text().as_bytes(), VALUE));
    let list = s.deploy_ok(&["secret", "list", "--json"]);
    assert!(!list.contains("tg_token"), "{list}");
    assert!(
        !contains(&std::fs::read(s.data.join("store.redb")).unwrap(), VALUE),
        "in the store file"
    );
    // The plan and a bundle show it present.
    let plan = json(&s.deploy_ok(&[
        "secret",
        "plan",
        "--service",
        "web",
        "--tier",
        "desktop",
        "--json",
    ]));
    let entry = plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["secret"] == "tg_token")
        .unwrap()
        .clone();
    assert_eq!(entry["present"], true);
    let dir = create_ok(&s, "acme-delegated", "delegated", &[]);
    let delegated = json(&std::fs::read_to_string(dir.join("delegated.json")).unwrap());
    assert_eq!(delegated["delegated"][0]["present"], true);
    for (name, bytes) in files(&dir) {
        assert!(!contains(&bytes, VALUE), "{name}");
    }

    // A provider that fails: the reference is recorded, not present; exit 1.
    let failing = format!("cat > /dev/null; exit 3 # {}", got.display());
    let args = [
        "secret",
        "delegate",
        "tg_token",
        "--tier",
        "desktop",
        "--ref",
        "github:acme/bot#TELEGRAM_TOKEN",
        "--via",
        &failing,
    ];
    let out = s.deploy_with_stdin(&args, b"tg-QQ6-other");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("exited with status 3"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("not present"), "{}", stderr(&out));
    assert!(!contains(&out.stderr, b"tg-QQ6-other"));
    let out = s.deploy(&["secret", "plan", "--service", "web", "--tier", "desktop"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the plan shows it is not present"
    );
    assert!(
        stdout(&out).contains("not-present/desktop/tg_token"),
        "{}",
        stdout(&out)
    );
    // Without --via: the reference alone.
    let out = s.deploy(&[
        "secret",
        "delegate",
        "tg_token",
        "--tier",
        "desktop",
        "--ref",
        "env:TELEGRAM_TOKEN",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("recorded env:TELEGRAM_TOKEN for tg_token"));
    // Never on argv; never for infrastructure (refused before any value is read).
    let out = s.deploy(&[
        "secret", "delegate", "tg_token", "--tier", "desktop", "--ref", "env:X", "tg-QQ7",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!stderr(&out).contains("tg-QQ7"));
    let out = s.deploy_with_stdin(
        &[
            "secret", "delegate", "db_root", "--tier", "desktop", "--ref", "env:ROOT", "--via",
            &via,
        ],
        b"tg-QQ8",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("infrastructure never leaves the core server"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(&got).unwrap(),
        VALUE,
        "the provider was not run"
    );
}

fn require_http(test: &str) -> bool {
    can_curl(test)
}

/// `curl` as `uid` (None: root), POSTing `body`: the status and the body.
fn post(socket: &str, uid: Option<u32>, path: &str, body: &str) -> (u16, String) {
    curl(socket, uid, "POST", path, Some(body))
}

#[test]
fn post_deployment_bundle_answers_with_the_json_form_to_the_admin_only() {
    if !require_http("post_deployment_bundle") {
        return;
    }
    let mut s = SecretsServer::init();
    let http = s.serve_with_http();
    setup(&s);
    let request = r#"{"service": "web", "tier": "desktop", "deployment": "acme-http"}"#;
    let (code, body) = post(&http, None, "/deployment/bundle", request);
    assert_eq!(code, 200, "{body}");
    let bundle = json(&body);
    assert_eq!(bundle["format"], "srv-secrets-bundle/1");
    assert_eq!(bundle["deployment"], "acme-http");
    assert_eq!(bundle["manifest"][0]["action"], "strip");
    let jwt = unbase64(bundle["values"]["jwt_key"].as_str().unwrap());
    assert_eq!(jwt.len(), 43);
    assert!(!body.contains(ROOT) && !body.contains(&base64(ROOT.as_bytes())));
    // The same deployment again: 409, saying how to replace; with it, bundle 2.
    let (code, body) = post(&http, None, "/deployment/bundle", request);
    assert_eq!(code, 409, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("\"replace\": true")
    );
    let replace = r#"{"service": "web", "tier": "desktop", "deployment": "acme-http",
        "replace": true}"#;
    let (code, body) = post(&http, None, "/deployment/bundle", replace);
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["bundle"], 2);
    // deploy identifies what HTTP issued.
    let out = s.deploy_with_stdin(&["bundle", "identify"], &jwt);
    assert!(stdout(&out).contains("acme-http"), "{}", stdout(&out));
    // Mistakes get their status, as JSON.
    for (body, want) in [
        ("not json", 400),
        (r#"{"service": "web", "tier": "desktop"}"#, 400),
        (
            r#"{"service": "web", "tier": "desktop", "deployment": "a", "x": 1}"#,
            400,
        ),
        (
            r#"{"service": "web", "tier": "desktop", "deployment": "a/b"}"#,
            400,
        ),
        (
            r#"{"service": "web", "tier": "local_dev", "deployment": "a"}"#,
            400,
        ),
        (
            r#"{"service": "nosuch", "tier": "desktop", "deployment": "a"}"#,
            404,
        ),
        (
            r#"{"service": "web", "tier": "mobile", "deployment": "a"}"#,
            404,
        ),
    ] {
        let (code, text) = post(&http, None, "/deployment/bundle", body);
        assert_eq!(code, want, "{body}: {text}");
        assert!(json(&text)["error"].is_string(), "{text}");
    }
    // A plan with problems: 409, each problem listed.
    let manifest = write(&s, "api.manifest", "secret jwt_key\nsecret nowhere\n");
    s.deploy_ok(&[
        "service",
        "add",
        "api",
        "--uid",
        "1002",
        "--manifest",
        &manifest,
    ]);
    let (code, text) = post(
        &http,
        None,
        "/deployment/bundle",
        r#"{"service": "api", "tier": "desktop", "deployment": "a"}"#,
    );
    assert_eq!(code, 409, "{text}");
    assert_eq!(
        json(&text)["problems"][0]["id"],
        "no-such-secret/api/nowhere"
    );
    // A service's uid, or anyone else's: 403, and nothing issued.
    let (code, text) = post(
        &http,
        Some(WEB),
        "/deployment/bundle",
        r#"{"service": "web", "tier": "desktop", "deployment": "by-web"}"#,
    );
    assert_eq!(code, 403, "{text}");
    let list = s.deploy_ok(&["bundle", "list", "--deployment", "by-web", "--json"]);
    assert_eq!(list, "[]\n");
    // GET is not how a bundle is asked for.
    let mut cmd = Command::new(CURL);
    cmd.args([
        "--silent",
        "--unix-socket",
        &http,
        "--write-out",
        "\n%{http_code}",
        "http://srv-secrets/deployment/bundle",
    ]);
    let text = stdout(&cmd.output().unwrap());
    assert!(text.ends_with("\n405"), "{text}");
    assert!(text.contains("takes POST only"), "{text}");
    assert!(!contains(s.log_text().as_bytes(), &jwt));
}

#[test]
fn a_bundle_request_body_is_bounded_in_size_and_in_time() {
    if !require_http("bundle_request_body_bounds") {
        return;
    }
    let mut s = SecretsServer::init();
    let http = s.serve_with_http();
    setup(&s);
    // A body far larger than any bundle request: 413, as JSON like every other error.
    let big = s.root.path().join("big.json");
    std::fs::write(&big, vec![b' '; 100 << 10]).unwrap();
    let (code, text) = post(
        &http,
        None,
        "/deployment/bundle",
        &format!("@{}", big.display()),
    );
    assert_eq!(code, 413, "{text}");
    assert!(
        json(&text)["error"].as_str().unwrap().contains("KiB"),
        "{text}"
    );
    // A body that never arrives: answered (408, as JSON) and the connection let go, not
    // held for as long as the client likes; meanwhile others are served.
    let mut slow = std::os::unix::net::UnixStream::connect(&http).unwrap();
    slow.write_all(
        b"POST /deployment/bundle HTTP/1.1\r\nHost: srv-secrets\r\nContent-Type: \
          application/json\r\nContent-Length: 64\r\n\r\n{\"service\": ",
    )
    .unwrap();
    let request = r#"{"service": "web", "tier": "desktop", "deployment": "while-slow"}"#;
    let (code, body) = post(&http, None, "/deployment/bundle", request);
    assert_eq!(code, 200, "{body}");
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut answer = Vec::new();
    let _ = slow.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 408"),
        "after {:?}: {answer}",
        started.elapsed()
    );
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20));
}
