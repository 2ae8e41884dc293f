//! `deploy secret import`: many secrets in one transaction, from a dotenv file, a JSON
//! object or a directory, against the real server; values never echoed.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use srv_secrets_tests::harness::{SecretsServer, stderr, stdout};

const WEB: u32 = 1001;

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path.display().to_string()
}

#[test]
fn a_dotenv_file_imports_in_one_transaction() {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    let dotenv = write(
        s.root.path(),
        "app.env",
        b"# filled in from .env.example\n\
          DATABASE_URL=postgres://app:hunter2-db@db/app\n\
          export API_KEY='hunter2-api'\n\
          TLS_KEY=\"-----BEGIN KEY-----\nhunter2-pem\n-----END KEY-----\n\"\n",
    );
    let out = s.deploy_ok(&["secret", "import", "--dotenv", &dotenv]);
    assert_eq!(
        out,
        "imported 3 secrets in one transaction: 3 new, 0 updated\n"
    );
    for name in ["DATABASE_URL", "API_KEY", "TLS_KEY"] {
        s.deploy_ok(&["secret", "grant", "web", name]);
    }
    assert_eq!(
        s.get_as("DATABASE_URL", "web"),
        b"postgres://app:hunter2-db@db/app"
    );
    assert_eq!(s.get_as("API_KEY", "web"), b"hunter2-api");
    assert_eq!(
        s.get_as("TLS_KEY", "web"),
        b"-----BEGIN KEY-----\nhunter2-pem\n-----END KEY-----\n"
    );
    // Again: every one is a new version.
    let out = s.deploy_ok(&["secret", "import", "--dotenv", &dotenv]);
    assert_eq!(
        out,
        "imported 3 secrets in one transaction: 0 new, 3 updated\n"
    );
    assert!(!s.log_text().contains("hunter2"));
}

#[test]
fn a_bad_input_sends_nothing_and_shows_no_value() {
    let s = SecretsServer::start();
    let cases: [(&str, &[u8], &str); 4] = [
        (
            "bad.env",
            b"GOOD=fine\nhunter2-stray-value\n",
            "line 2: expected NAME=VALUE; nothing was sent",
        ),
        (
            "empty.env",
            b"GOOD=fine\nEMPTY=\n",
            "line 2: the value is empty; nothing was sent (pass --allow-empty to store \
             empty values)",
        ),
        (
            "twice.env",
            b"A=hunter2-one\nB=x\nA=hunter2-two\n",
            "line 3: the same secret as line 1; nothing was sent",
        ),
        (
            "name.env",
            b"bad name=hunter2\n",
            "line 1: not a variable name ([A-Za-z_][A-Za-z0-9_]*; a value that spans lines \
             must be quoted); nothing was sent",
        ),
    ];
    for (file, text, says) in cases {
        let path = write(s.root.path(), file, text);
        let out = s.deploy(&["secret", "import", "--dotenv", &path]);
        assert_eq!(out.status.code(), Some(1), "{file}");
        assert_eq!(stderr(&out), format!("deploy: {path}: {says}\n"));
        assert!(!stdout(&out).contains("hunter2") && !stderr(&out).contains("hunter2"));
    }
    // Nothing of any of them was stored.
    let list = s.deploy_ok(&["secret", "list", "--json"]);
    assert_eq!(list.trim(), "[]", "{list}");
    // --allow-empty lets an empty value in.
    let path = write(s.root.path(), "empty.env", b"GOOD=fine\nEMPTY=\n");
    let out = s.deploy_ok(&["secret", "import", "--dotenv", &path, "--allow-empty"]);
    assert_eq!(
        out,
        "imported 2 secrets in one transaction: 2 new, 0 updated\n"
    );
    // Exactly one source.
    let out = s.deploy(&["secret", "import"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn json_and_directories_import_too() {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    let json = write(
        s.root.path(),
        "s.json",
        br#"{"db_password": "hunter2", "api_key": "k\"1"}"#,
    );
    let out = s.deploy_ok(&["secret", "import", "--json", &json]);
    assert_eq!(
        out,
        "imported 2 secrets in one transaction: 2 new, 0 updated\n"
    );
    let dir = s.root.path().join("keys");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("tls_key"), b"\x00\x01binary\xff").unwrap();
    std::fs::write(dir.join("db_password"), b"hunter3").unwrap();
    let out = s.deploy_ok(&["secret", "import", "--dir", dir.to_str().unwrap()]);
    assert_eq!(
        out,
        "imported 2 secrets in one transaction: 1 new, 1 updated\n"
    );
    for name in ["db_password", "api_key", "tls_key"] {
        s.deploy_ok(&["secret", "grant", "web", name]);
    }
    assert_eq!(s.get_as("db_password", "web"), b"hunter3");
    assert_eq!(s.get_as("api_key", "web"), b"k\"1");
    assert_eq!(s.get_as("tls_key", "web"), b"\x00\x01binary\xff");
}

#[test]
fn five_thousand_secrets_in_one_import() {
    let s = SecretsServer::start();
    let mut text = String::new();
    for i in 0..5000 {
        text.push_str(&format!("S{i:04}=value-{i}\n"));
    }
    let path = write(s.root.path(), "many.env", text.as_bytes());
    let out = s.deploy_ok(&["secret", "import", "--dotenv", &path]);
    assert_eq!(
        out,
        "imported 5000 secrets in one transaction: 5000 new, 0 updated\n"
    );
    let status = s.deploy_ok(&["status", "--json"]);
    assert!(status.contains("\"secrets\": 5000"), "{status}");
    // Past what one transaction holds: refused before anything is sent.
    let mut text = String::new();
    for i in 0..=ctl::MAX_TXN_COMMANDS {
        text.push_str(&format!("T{i}=v\n"));
    }
    let path = write(s.root.path(), "too-many.env", text.as_bytes());
    let out = s.deploy(&["secret", "import", "--dotenv", &path]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("10001 secrets") && stderr(&out).contains("split it"),
        "{}",
        stderr(&out)
    );
    let status = s.deploy_ok(&["status", "--json"]);
    assert!(status.contains("\"secrets\": 5000"), "{status}");
}
