//! The cluster key as a systemd credential: `LoadCredentialEncrypted=srv-secrets.key:...`
//! in the unit, which systemd decrypts into `$CREDENTIALS_DIRECTORY/srv-secrets.key` (mode
//! 0400, in a directory of mode 0500, both the service's) before it starts the server.
//!
//! systemd cannot start a unit here (it is not PID 1 in this sandbox: `systemd-run` says
//! "System has not been booted with systemd as init system"), so the test does what
//! systemd does: `systemd-creds encrypt` the key file with a host key of its own
//! (`SYSTEMD_CREDENTIAL_SECRET`: the machine's /var/lib/systemd/credential.secret is left
//! alone), `systemd-creds decrypt` it into a directory laid out as systemd lays one out,
//! and starts the real server with `CREDENTIALS_DIRECTORY` naming it.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use srv_secrets_tests::harness::{SecretsServer, bins, stderr};

const SYSTEMD_CREDS: &str = "systemd-creds";

fn can_use_systemd_creds() -> bool {
    let ok = Command::new(SYSTEMD_CREDS)
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok || std::env::var("CI").is_err(),
        "the credential tests need systemd-creds (the systemd package)"
    );
    ok
}

/// `systemd-creds ARGS` with the host key `secret`, asserting success.
fn systemd_creds(secret: &Path, args: &[&Path]) {
    let out = Command::new(SYSTEMD_CREDS)
        .env("SYSTEMD_CREDENTIAL_SECRET", secret)
        .args(["--name=srv-secrets.key", "--with-key=host"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "systemd-creds: {}", stderr(&out));
}

/// The key file encrypted as `LoadCredentialEncrypted=` wants it, then decrypted into
/// `ROOT/credentials/srv-secrets.key` as systemd does at start; that directory.
fn credentials_dir(s: &SecretsServer, key: &Path) -> PathBuf {
    let root = s.root.path();
    let secret = root.join("credential.secret");
    let encrypted = root.join("srv-secrets.key.cred");
    systemd_creds(&secret, &[Path::new("encrypt"), key, &encrypted]);
    let text = std::fs::read(&encrypted).unwrap();
    assert!(
        !text
            .windows(8)
            .any(|w| std::fs::read(key).unwrap().windows(8).any(|k| k == w)),
        "the encrypted credential does not hold the key file's text"
    );
    let dir = root.join("credentials");
    std::fs::create_dir(&dir).unwrap();
    let credential = dir.join("srv-secrets.key");
    systemd_creds(&secret, &[Path::new("decrypt"), &encrypted, &credential]);
    std::fs::set_permissions(&credential, std::fs::Permissions::from_mode(0o400)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o500)).unwrap();
    assert_eq!(
        std::fs::read(&credential).unwrap(),
        std::fs::read(key).unwrap()
    );
    dir
}

#[test]
fn the_key_comes_from_the_credential_read_only_and_key_wins_over_it() {
    if !can_use_systemd_creds() {
        return;
    }
    let mut s = SecretsServer::init_with_key_outside();
    let key = s.key.clone().unwrap();
    s.serve();
    s.deploy_with_stdin(&["secret", "set", "db"], b"s3cret-value");
    s.add_service("web", 1611, None);
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.stop_ok();

    let dir = credentials_dir(&s, &key);
    // The key file the operator shreds once it is encrypted: kept aside here, to see that
    // the server reads the credential and nothing else.
    let aside = s.root.path().join("key.aside");
    std::fs::rename(&key, &aside).unwrap();
    s.key = None;
    s.env
        .push(("CREDENTIALS_DIRECTORY".into(), dir.display().to_string()));
    s.serve();
    let log = s.log_text();
    assert!(
        log.contains(
            "the cluster key is the systemd credential srv-secrets.key, read-only: rotate-key \
             is refused"
        ),
        "{log}"
    );
    assert_eq!(s.get_as("db", "web"), b"s3cret-value");
    s.deploy_with_stdin(&["secret", "set", "db"], b"another");

    // A rotation would write the new key into the credential: refused before anything
    // changes, with what to do.
    let before = std::fs::read(dir.join("srv-secrets.key")).unwrap();
    let out = s.deploy(&["secret", "rotate-key"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "the key file is a read-only systemd credential; see docs/operations.md to rotate it"
        ),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(dir.join("srv-secrets.key")).unwrap(), before);
    let status = s.deploy_ok(&["status", "--json"]);
    assert!(status.contains("\"key\": 1,"), "still key 1: {status}");
    s.stop_ok();

    // --key wins over the credential, and the log says that the credential is not used.
    std::fs::rename(&aside, &key).unwrap();
    s.key = Some(key.clone());
    s.serve();
    let log = s.log_text();
    assert!(
        log.contains("--key is given, so the systemd credential srv-secrets.key is not used"),
        "{log}"
    );
    s.deploy_ok(&["secret", "rotate-key"]);
    let status = s.deploy_ok(&["status", "--json"]);
    assert!(status.contains("\"key\": 2,"), "rotated: {status}");
    assert_eq!(s.get_as("db", "web"), b"another");
    assert!(!s.log_text().contains("s3cret-value"));
}

#[test]
fn a_credentials_directory_others_can_write_is_refused() {
    if !can_use_systemd_creds() {
        return;
    }
    let s = SecretsServer::init_with_key_outside();
    let key = s.key.clone().unwrap();
    let dir = credentials_dir(&s, &key);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .arg("--listen")
        .arg(s.addr())
        .env("CREDENTIALS_DIRECTORY", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains(&format!(
            "srv-secrets: CREDENTIALS_DIRECTORY {} has mode 777, writable by group or others, \
             and it holds the cluster key's credential srv-secrets.key: let systemd make it \
             (LoadCredentialEncrypted=), or pass --key FILE",
            dir.display()
        )),
        "{}",
        stderr(&out)
    );
    assert!(!s.socket.exists(), "nothing was served");
    // A credential file open to others is refused as any key file is.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(
        dir.join("srv-secrets.key"),
        std::fs::Permissions::from_mode(0o440),
    )
    .unwrap();
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .arg("--listen")
        .arg(s.addr())
        .env("CREDENTIALS_DIRECTORY", &dir)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("has mode 440, open to group or others"),
        "{}",
        stderr(&out)
    );
}
