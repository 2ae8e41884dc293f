//! The vault through its public API only: what the server and the CLI rely on.

#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use secrets::{Error, KEY_FILE, LOCK_FILE, MAX_VALUE_LEN, STORE_FILE, Vault};

const ADMIN: u32 = 1000;

fn fresh() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    Vault::init(&dir, None, ADMIN).unwrap();
    (tmp, dir)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().mode() & 0o777
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

// ---- init ----

#[test]
fn init_creates_private_dir_key_and_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b/data");
    let report = Vault::init(&dir, None, ADMIN).unwrap();
    assert_eq!(report.key_path, dir.join(KEY_FILE));
    assert_eq!(report.store_path, dir.join(STORE_FILE));
    assert_eq!((report.key_id, report.admin_uid), (1, ADMIN));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&report.key_path), 0o600);
    assert_eq!(mode(&report.store_path), 0o600);
    let key = std::fs::read_to_string(&report.key_path).unwrap();
    let lines: Vec<&str> = key.lines().collect();
    assert_eq!(lines[0], "srv-secrets key file v1");
    assert_eq!(lines.len(), 4);
    assert!(lines[1].starts_with("key 1 ") && lines[1].len() == 6 + 64);
    // The audit trail's signing key and the tokens' hash key, beside the cluster key.
    assert!(lines[2].starts_with("audit ") && lines[2].len() == 6 + 64);
    assert!(lines[3].starts_with("token ") && lines[3].len() == 6 + 64);
    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.admin_uid(), ADMIN);
    let status = vault.status();
    assert_eq!(
        (status.active_key, status.secrets, status.rotation),
        (1, 0, None)
    );
}

#[test]
fn init_refuses_an_initialized_dir() {
    let (_tmp, dir) = fresh();
    let err = Vault::init(&dir, None, ADMIN).unwrap_err();
    assert!(matches!(err, Error::AlreadyInitialized { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("already initialized") && msg.contains("serve"),
        "{msg}"
    );
}

#[test]
fn init_accepts_an_empty_dir_and_chmods_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    Vault::init(&dir, None, ADMIN).unwrap();
    assert_eq!(mode(&dir), 0o700);
}

#[test]
fn init_refuses_unknown_files_and_existing_keys() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), b"x").unwrap();
    assert!(matches!(
        Vault::init(&dir, None, ADMIN),
        Err(Error::DirNotEmpty { .. })
    ));

    let key = tmp.path().join("elsewhere.key");
    std::fs::write(&key, b"precious").unwrap();
    let err = Vault::init(&tmp.path().join("other"), Some(&key), ADMIN).unwrap_err();
    assert!(matches!(err, Error::KeyFileExists { .. }), "{err:?}");
    assert_eq!(std::fs::read(&key).unwrap(), b"precious");
}

#[test]
fn key_may_live_outside_the_data_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let key = tmp.path().join("keys/cluster.key");
    std::fs::create_dir(tmp.path().join("keys")).unwrap();
    Vault::init(&dir, Some(&key), ADMIN).unwrap();
    assert!(!dir.join(KEY_FILE).exists());
    assert_eq!(mode(&key), 0o600);
    let vault = Vault::open(&dir, Some(&key)).unwrap();
    vault.set("a", b"b").unwrap();
    assert_eq!(vault.key_path(), key);
    drop(vault);
    // Without the key the directory is useless (a backup of DIR does not carry it).
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::KeyFileMissing { .. }), "{err:?}");
    assert!(
        err.to_string().starts_with(&format!(
            "key file {} does not exist",
            dir.join(KEY_FILE).display()
        )),
        "{err}"
    );
}

// ---- open ----

#[test]
fn open_requires_init() {
    let tmp = tempfile::tempdir().unwrap();
    let err = Vault::open(tmp.path(), None).unwrap_err();
    assert!(matches!(err, Error::NotInitialized { .. }), "{err:?}");
    assert!(err.to_string().contains("init"));
}

#[test]
fn a_key_without_its_store_is_a_lost_store_not_a_fresh_directory() {
    let (_tmp, dir) = fresh();
    std::fs::remove_file(dir.join(STORE_FILE)).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::StoreLost { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("Restore it from a backup"), "{msg}");
    assert!(
        msg.find("Restore").unwrap() < msg.find("srv-secrets init").unwrap(),
        "a restore is suggested before init: {msg}"
    );
    // And init still refuses to make a new store beside the old key.
    assert!(matches!(
        Vault::init(&dir, None, ADMIN),
        Err(Error::DirNotEmpty { .. })
    ));
    // With the key kept outside, the key file's presence says the same.
    let tmp = tempfile::tempdir().unwrap();
    let (data, key) = (tmp.path().join("data"), tmp.path().join("key"));
    Vault::init(&data, Some(&key), ADMIN).unwrap();
    std::fs::remove_file(data.join(STORE_FILE)).unwrap();
    let err = Vault::open(&data, Some(&key)).unwrap_err();
    assert!(matches!(err, Error::StoreLost { .. }), "{err:?}");
}

#[test]
fn open_refuses_a_data_directory_store_or_lock_open_to_others() {
    let (_tmp, dir) = fresh();
    let chmod = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    for m in [0o777, 0o775, 0o770, 0o750, 0o705] {
        chmod(&dir, m);
        let err = Vault::open(&dir, None).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OpenToOthers {
                    what: "data directory",
                    ..
                }
            ),
            "{m:o}: {err:?}"
        );
        assert!(
            err.to_string()
                .ends_with(&format!("run `chmod 700 {}`", dir.display())),
            "{err}"
        );
    }
    chmod(&dir, 0o700);
    for (name, what) in [(STORE_FILE, "store"), (LOCK_FILE, "lock file")] {
        let path = dir.join(name);
        for m in [0o666, 0o644, 0o640, 0o606] {
            chmod(&path, m);
            let err = Vault::open(&dir, None).unwrap_err();
            assert!(
                matches!(&err, Error::OpenToOthers { what: w, mode, .. } if *w == what && *mode == m),
                "{name} {m:o}: {err:?}"
            );
            assert!(
                err.to_string()
                    .ends_with(&format!("run `chmod 600 {}`", path.display())),
                "{err}"
            );
        }
        chmod(&path, 0o600);
    }
    Vault::open(&dir, None).unwrap();
}

#[test]
fn open_refuses_files_of_another_uid() {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("skipping: giving files to another uid needs root");
        return;
    }
    let (_tmp, dir) = fresh();
    let chown = |p: &Path, uid: u32| std::os::unix::fs::chown(p, Some(uid), None).unwrap();
    for (path, what) in [
        (dir.clone(), "data directory"),
        (dir.join(LOCK_FILE), "lock file"),
        (dir.join(KEY_FILE), "key file"),
        (dir.join(STORE_FILE), "store"),
    ] {
        chown(&path, 1705);
        let err = Vault::open(&dir, None).unwrap_err();
        assert!(
            matches!(&err, Error::ForeignOwner { what: w, owner: 1705, euid: 0, .. } if *w == what),
            "{what}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("{what} {} belongs to uid 1705", path.display())),
            "{msg}"
        );
        assert!(msg.contains("run srv-secrets as uid 1705"), "{msg}");
        chown(&path, 0);
    }
    Vault::open(&dir, None).unwrap();
}

#[test]
fn one_vault_per_directory() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    assert!(
        err.to_string().contains("another srv-secrets serves"),
        "{err}"
    );
    assert!(dir.join(LOCK_FILE).exists());
    drop(vault);
    Vault::open(&dir, None).unwrap();
}

#[test]
fn open_refuses_a_key_file_open_to_others() {
    let (_tmp, dir) = fresh();
    let key = dir.join(KEY_FILE);
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(
        matches!(err, Error::KeyPermissions { mode: 0o644, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    Vault::open(&dir, None).unwrap();
}

#[test]
fn open_detects_the_wrong_key_file() {
    let (_tmp, dir) = fresh();
    let (_tmp2, other) = fresh();
    let wrong = other.join(KEY_FILE);
    let err = Vault::open(&dir, Some(&wrong)).unwrap_err();
    assert!(matches!(err, Error::KeyMismatch { id: 1, .. }), "{err:?}");
    // The message names the file, never its bytes.
    let hex = std::fs::read_to_string(&wrong).unwrap();
    let hex = hex.lines().nth(1).unwrap().rsplit(' ').next().unwrap();
    assert!(!err.to_string().contains(&hex[..16]), "{err}");
    // The wrong key file is left exactly as it was.
    assert!(std::fs::read_to_string(&wrong).unwrap().contains(hex));
}

#[test]
fn open_detects_a_key_file_without_the_needed_id() {
    let (_tmp, dir) = fresh();
    let key = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&key)
        .unwrap()
        .replace("key 1 ", "key 7 ");
    std::fs::write(&key, text).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::KeyMissing { id: 1, .. }), "{err:?}");
}

#[test]
fn open_refuses_a_malformed_key_file_by_line() {
    let (_tmp, dir) = fresh();
    let key = dir.join(KEY_FILE);
    let text = std::fs::read_to_string(&key).unwrap();
    std::fs::write(&key, format!("{text}garbage\n")).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    // After the key line, the audit key's and the token key's.
    assert!(matches!(err, Error::KeyFile { line: 5, .. }), "{err:?}");
}

// ---- secrets ----

#[test]
fn set_versions_mtime_and_reveal() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    let before = now();
    assert_eq!(vault.set("db_password", b"hunter2").unwrap(), 1);
    assert_eq!(vault.set("db_password", b"correct horse").unwrap(), 2);
    assert_eq!(vault.set("api_key", b"").unwrap(), 1);
    let after = now();
    let info = vault.secret_info("db_password").unwrap();
    assert_eq!((info.version, info.length), (2, 13));
    assert!((before..=after).contains(&info.mtime));
    assert_eq!(
        vault.reveal("db_password").unwrap().expose(),
        b"correct horse"
    );
    assert!(vault.reveal("api_key").unwrap().is_empty());
    let names: Vec<String> = vault.list_secrets().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["api_key", "db_password"]);
    assert!(matches!(vault.reveal("nope"), Err(Error::NoSuchSecret)));
    drop(vault);
    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.secret_info("db_password").unwrap().version, 2);
    assert_eq!(
        vault.reveal("db_password").unwrap().expose(),
        b"correct horse"
    );
}

#[test]
fn binary_and_maximal_values() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    let binary: Vec<u8> = (0..=255).cycle().take(MAX_VALUE_LEN).collect();
    vault.set("blob", &binary).unwrap();
    assert_eq!(vault.reveal("blob").unwrap().expose(), binary.as_slice());
    let err = vault.set("blob", &vec![0; MAX_VALUE_LEN + 1]).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooLarge {
                limit: MAX_VALUE_LEN,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(vault.secret_info("blob").unwrap().version, 1);
}

#[test]
fn bad_names_are_refused_without_echo() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    for name in ["", ".", "..", "a/b", "with space", &"x".repeat(129)] {
        let err = vault.set(name, b"v").unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{err:?}");
        assert!(name.len() < 3 || !err.to_string().contains(name));
    }
    assert!(matches!(
        vault.service_set_uid("admin", 5),
        Err(Error::ReservedName)
    ));
    assert!(matches!(
        vault.service_set_uid("secrets", 5),
        Err(Error::ReservedName)
    ));
}

#[test]
fn delete_drops_grants() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"x").unwrap();
    vault.set("other", b"y").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.service_set_uid("worker", 2001).unwrap();
    vault.grant("web", "db").unwrap();
    vault.grant("worker", "db").unwrap();
    vault.grant("web", "other").unwrap();
    vault.delete("db").unwrap();
    assert_eq!(vault.grants("web"), ["other"]);
    assert!(vault.grants("worker").is_empty());
    assert!(matches!(vault.delete("db"), Err(Error::NoSuchSecret)));
    // A new secret of the same name is not granted by the old grant.
    vault.set("db", b"z").unwrap();
    assert!(!vault.is_granted("web", "db"));
    drop(vault);
    let vault = Vault::open(&dir, None).unwrap();
    assert!(!vault.is_granted("web", "db"));
    assert_eq!(vault.grants("web"), ["other"]);
}

// ---- services ----

#[test]
fn service_uid_rules() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    assert!(matches!(
        vault.service_set_uid("web", 0),
        Err(Error::UidIsAdmin {
            uid: 0,
            admin_uid: ADMIN
        })
    ));
    assert!(matches!(
        vault.service_set_uid("web", ADMIN),
        Err(Error::UidIsAdmin { .. })
    ));
    assert!(vault.service("web").is_none());
    vault.service_set_uid("web", 2000).unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    assert!(matches!(
        vault.service_set_uid("api", 2000),
        Err(Error::UidInUse { uid: 2000, ref service }) if service == "web"
    ));
    assert_eq!(vault.service_for_uid(2000).as_deref(), Some("web"));
    // Moving web to another uid frees the old one.
    vault.service_set_uid("web", 2001).unwrap();
    assert_eq!(vault.service_for_uid(2000), None);
    vault.service_set_uid("api", 2000).unwrap();
    assert_eq!(vault.service_for_uid(2001).as_deref(), Some("web"));
    vault.service_remove("web").unwrap();
    assert_eq!(vault.service_for_uid(2001), None);
    assert!(matches!(
        vault.service_remove("web"),
        Err(Error::NoSuchService)
    ));
    drop(vault);
    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.service_for_uid(2000).as_deref(), Some("api"));
    assert_eq!(vault.service("api").unwrap().uid, Some(2000));
}

#[test]
fn manifests() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    let text = b"secret db_password\nconfig log_level=debug\n";
    vault.service_set_manifest("web", text).unwrap();
    let web = vault.service("web").unwrap();
    assert_eq!(web.uid, None);
    assert_eq!(web.manifest.secrets(), ["db_password"]);
    assert_eq!(web.manifest.config_value("log_level"), Some("debug"));
    assert_eq!(web.manifest.text().as_bytes(), text);
    // A bad manifest changes nothing and names the line only.
    let err = vault
        .service_set_manifest("web", b"secret a\nbogus hunter2\n")
        .unwrap_err();
    assert!(matches!(err, Error::Manifest { line: 2, .. }), "{err:?}");
    assert!(!err.to_string().contains("hunter2"));
    assert_eq!(
        vault.service("web").unwrap().manifest.text().as_bytes(),
        text
    );
    // The uid survives a manifest change and vice versa.
    vault.service_set_uid("web", 2000).unwrap();
    vault.service_set_manifest("web", b"config a=b\n").unwrap();
    assert_eq!(vault.service("web").unwrap().uid, Some(2000));
    vault.service_set_uid("web", 2002).unwrap();
    assert_eq!(
        vault.service("web").unwrap().manifest.config_value("a"),
        Some("b")
    );
    drop(vault);
    let vault = Vault::open(&dir, None).unwrap();
    let services = vault.services();
    assert_eq!(services.len(), 1);
    assert_eq!(services[0].manifest.text(), "config a=b\n");
}

// ---- grants ----

#[test]
fn grant_and_revoke() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"x").unwrap();
    assert!(matches!(
        vault.grant("web", "db"),
        Err(Error::NoSuchService)
    ));
    vault.service_set_uid("web", 2000).unwrap();
    assert!(matches!(
        vault.grant("web", "nope"),
        Err(Error::NoSuchSecret)
    ));
    vault.grant("web", "db").unwrap();
    vault.grant("web", "db").unwrap();
    assert!(vault.is_granted("web", "db"));
    assert!(!vault.is_granted("worker", "db"));
    assert_eq!(vault.grants("web"), ["db"]);
    vault.revoke("web", "db").unwrap();
    vault.revoke("web", "db").unwrap();
    assert!(!vault.is_granted("web", "db"));
    assert!(matches!(
        vault.revoke("web", "nope"),
        Err(Error::NoSuchSecret)
    ));
    assert!(matches!(
        vault.revoke("nobody", "db"),
        Err(Error::NoSuchService)
    ));
}

#[test]
fn service_remove_drops_its_grants() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"x").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    vault.service_remove("web").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    assert!(!vault.is_granted("web", "db"));
    assert!(vault.grants("web").is_empty());
}

// ---- reads on behalf of a service ----

#[test]
fn not_granted_and_nonexistent_look_the_same() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"x").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    let ungranted = vault.open_secret("web", "db").unwrap_err();
    let missing = vault.open_secret("web", "nope").unwrap_err();
    let no_service = vault.open_secret("ghost", "db").unwrap_err();
    assert!(matches!(ungranted, Error::NotFound));
    assert!(matches!(missing, Error::NotFound));
    assert!(matches!(no_service, Error::NotFound));
    assert_eq!(ungranted.to_string(), missing.to_string());
}

#[test]
fn revoke_stops_reads_on_an_open_file() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"secret").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    assert_eq!((fid.name(), fid.version(), fid.length()), ("db", 1, 6));
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"secret");
    vault.revoke("web", "db").unwrap();
    assert!(matches!(
        vault.read_opened("web", &fid),
        Err(Error::NotFound)
    ));
    // Another service cannot use web's open file either.
    vault.grant("web", "db").unwrap();
    vault.service_set_uid("worker", 2001).unwrap();
    assert!(matches!(
        vault.read_opened("worker", &fid),
        Err(Error::NotFound)
    ));
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"secret");
}

#[test]
fn an_open_file_reads_the_version_it_opened() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"old").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    vault.set("db", b"new").unwrap();
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"old");
    let fid = vault.open_secret("web", "db").unwrap();
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"new");
}

#[test]
fn open_file_survives_a_rotation() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"value").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    let report = vault.rotate_key(&|_| {}).unwrap();
    assert_eq!((report.old_key, report.new_key), (1, 2));
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"value");
}

// ---- rotation ----

#[test]
fn rotation_re_encrypts_everything() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    let n = 2500;
    let entries: Vec<(String, Vec<u8>)> = (0..n)
        .map(|i| (format!("s{i}"), format!("v{i}").into_bytes()))
        .collect();
    vault.set_many(entries.iter().map(|(n, v)| (n, v))).unwrap();
    let before = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap();
    let calls = std::cell::RefCell::new(Vec::new());
    let report = vault.rotate_key(&|p| calls.borrow_mut().push(p)).unwrap();
    assert_eq!(report.reencrypted, n as u64);
    let calls = calls.into_inner();
    assert!(calls.windows(2).all(|w| w[0].done <= w[1].done));
    assert_eq!(
        calls.last().map(|p| (p.done, p.total)),
        Some((n as u64, n as u64))
    );
    let after = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap();
    assert_ne!(before, after);
    assert_eq!(after.lines().count(), 4);
    assert!(after.contains("\nkey 2 "));
    // The audit key stays as it was: the trail signed before still verifies; and so does
    // the tokens' key, so that every token still works.
    let line = |text: &str, word: &str| {
        text.lines()
            .find(|l| l.starts_with(word))
            .map(str::to_owned)
    };
    assert_eq!(line(&after, "audit "), line(&before, "audit "));
    assert_eq!(line(&after, "token "), line(&before, "token "));
    assert!(vault.audit_verify(&[]).unwrap().is_ok());
    assert_eq!(mode(&dir.join(KEY_FILE)), 0o600);
    drop(vault);
    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.status().active_key, 2);
    for (name, value) in &entries {
        assert_eq!(vault.reveal(name).unwrap().expose(), value.as_slice());
    }
}

// ---- at rest ----

#[test]
fn no_plaintext_in_the_data_dir() {
    let (_tmp, dir) = fresh();
    let marker = b"PLAINTEXT-MARKER-c0ffee-4242";
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("a", marker).unwrap();
    vault
        .set("b", &[marker.as_slice(), b" with a suffix"].concat())
        .unwrap();
    vault
        .set("a", &[b"prefix ".as_slice(), marker].concat())
        .unwrap();
    vault.set_many([("c", marker)]).unwrap();
    vault.rotate_key(&|_| {}).unwrap();
    vault.set("d", marker).unwrap();
    vault.delete("d").unwrap();
    drop(vault);
    let mut scanned = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(
            !bytes.windows(marker.len()).any(|w| w == marker),
            "plaintext found in {}",
            path.display()
        );
        scanned += 1;
    }
    assert_eq!(scanned, 3, "key, lock, store");
}

#[test]
fn debug_output_carries_no_values() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"hunter2").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    let bytes = vault.read_opened("web", &fid).unwrap();
    let dbg = format!("{vault:?} {fid:?} {bytes:?} {:?}", vault.list_secrets());
    assert!(!dbg.contains("hunter2"), "{dbg}");
    assert!(dbg.contains("7 bytes"), "{dbg}");
}

#[test]
fn readers_run_while_writing() {
    let (_tmp, dir) = fresh();
    let vault = std::sync::Arc::new(Vault::open(&dir, None).unwrap());
    vault.set("db", b"v0").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let reader = {
        let vault = std::sync::Arc::clone(&vault);
        std::thread::spawn(move || {
            let mut reads = 0;
            while reads < 2000 {
                let fid = vault.open_secret("web", "db").unwrap();
                match vault.read_opened("web", &fid) {
                    Ok(value) => assert!(value.expose().starts_with(b"v")),
                    // Opened, then set and rotated away before the read: open again.
                    Err(Error::Stale) => {}
                    Err(e) => panic!("{e}"),
                }
                reads += 1;
            }
        })
    };
    for i in 1..20 {
        vault.set("db", format!("v{i}").as_bytes()).unwrap();
    }
    vault.rotate_key(&|_| {}).unwrap();
    reader.join().unwrap();
}

#[test]
fn a_store_damaged_on_disk_is_refused_not_served() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("MARKER-NAME-1234", b"value").unwrap();
    drop(vault);
    let store = dir.join(STORE_FILE);
    let mut bytes = std::fs::read(&store).unwrap();
    let at: Vec<usize> = bytes
        .windows(16)
        .enumerate()
        .filter(|(_, w)| *w == b"MARKER-NAME-1234")
        .map(|(i, _)| i)
        .collect();
    assert!(!at.is_empty());
    for i in at {
        bytes[i] ^= 0x20;
    }
    std::fs::write(&store, &bytes).unwrap();
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::Store { .. }), "{err:?}");
}

/// Set by [`lock_is_per_process_and_dies_with_it`] for its child process.
const CHILD_DIR_ENV: &str = "SECRETS_TEST_CHILD_DIR";

#[test]
fn lock_is_per_process_and_dies_with_it() {
    use std::io::BufRead;
    let (_tmp, dir) = fresh();
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_holds_the_vault",
            "--ignored",
            "--nocapture",
        ])
        .env(CHILD_DIR_ENV, &dir)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let ready = stdout
        .lines()
        .map_while(Result::ok)
        .any(|line| line.contains("VAULT-READY"));
    assert!(ready, "child did not open the vault");
    let err = Vault::open(&dir, None).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    // SIGKILL: no destructor runs, the kernel drops the lock, the commit is on disk.
    child.kill().unwrap();
    child.wait().unwrap();
    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.reveal("from-child").unwrap().expose(), b"committed");
}

/// The child half of [`lock_is_per_process_and_dies_with_it`]; does nothing on its own.
#[test]
#[ignore = "run as a child process by lock_is_per_process_and_dies_with_it"]
fn child_holds_the_vault() {
    let Some(dir) = std::env::var_os(CHILD_DIR_ENV) else {
        return;
    };
    let vault = Vault::open(Path::new(&dir), None).unwrap();
    vault.set("from-child", b"committed").unwrap();
    println!("VAULT-READY");
    std::thread::sleep(std::time::Duration::from_secs(120));
    drop(vault);
}

#[test]
fn an_open_file_does_not_read_a_deleted_secret_after_it_is_recreated() {
    let (_tmp, dir) = fresh();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("db", b"old").unwrap();
    vault.service_set_uid("web", 2000).unwrap();
    vault.grant("web", "db").unwrap();
    let fid = vault.open_secret("web", "db").unwrap();
    vault.delete("db").unwrap();
    assert!(matches!(
        vault.read_opened("web", &fid),
        Err(Error::NotFound)
    ));
    // Same name, same version number, granted again: still not the opened value.
    vault.set("db", b"new").unwrap();
    vault.grant("web", "db").unwrap();
    assert_eq!(vault.secret_info("db").unwrap().version, fid.version());
    assert!(matches!(
        vault.read_opened("web", &fid),
        Err(Error::NotFound)
    ));
    // A newer version of the same incarnation is fine: the fid reads what it opened.
    let fid = vault.open_secret("web", "db").unwrap();
    vault.set("db", b"newer").unwrap();
    assert_eq!(vault.read_opened("web", &fid).unwrap().expose(), b"new");
}

// ---- A full disk. ----

/// A tmpfs mounted on a temporary directory for one test, unmounted on drop (declare it
/// before anything that holds files in it, so that it is dropped last).
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `size` (e.g. "3m"). None, with a message, if this process may not
    /// mount (not root); under CI=true that is a failure instead, since CI runs as root.
    fn mount(size: &str) -> Option<Tmpfs> {
        use rustix::mount::{MountFlags, mount};
        let dir = tempfile::tempdir().unwrap();
        let data = std::ffi::CString::new(format!("size={size},mode=0700")).unwrap();
        let failure = if rustix::process::geteuid().is_root() {
            match mount(
                "tmpfs",
                dir.path(),
                "tmpfs",
                MountFlags::NOSUID | MountFlags::NODEV,
                data.as_c_str(),
            ) {
                Ok(()) => return Some(Tmpfs { dir }),
                Err(e) => format!("mount(2) failed: {e}"),
            }
        } else {
            "not running as root".to_owned()
        };
        let msg = format!("cannot mount a tmpfs to fill: {failure}");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{msg}; CI runs the tests as root"
        );
        eprintln!("SKIPPED: {msg}");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let path = self.dir.path();
        if let Err(e) = rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
            eprintln!("could not unmount {}: {e}", path.display());
        }
    }
}

/// Fills the file system holding `path` with one file; returns its size.
fn fill(path: &Path) -> u64 {
    use std::io::Write;
    let mut file = std::fs::File::create(path).unwrap();
    let chunk = vec![0xa5u8; 4096];
    let mut written = 0u64;
    loop {
        match file.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    written
}

/// The reviewer's repro: once redb hit ENOSPC, every later write failed with "Previous I/O
/// error occurred. Please close and re-open the database" until a restart.
#[test]
fn a_full_disk_refuses_writes_only_until_space_is_freed() {
    let Some(fs) = Tmpfs::mount("3m") else {
        return;
    };
    let dir = fs.path().join("data");
    Vault::init(&dir, None, ADMIN).unwrap();
    let vault = Vault::open(&dir, None).unwrap();
    vault.set("before", b"kept").unwrap();
    let filler = fs.path().join("filler");
    assert!(fill(&filler) > 0);

    // redb may have free pages left in its file: write until the disk-full error shows.
    let big = vec![7u8; MAX_VALUE_LEN];
    let (failed_name, err) = (0..16)
        .map(|i| format!("big{i:02}"))
        .find_map(|name| vault.set(&name, &big).err().map(|e| (name, e)))
        .expect("no write failed on a full file system");
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(
        vault.secret_info(&failed_name).is_none(),
        "failed set is visible"
    );
    // Still full: refused again (the store was reopened, so not as a latched error), and
    // still nothing half-done.
    let err = vault.set(&failed_name, &big).unwrap_err();
    assert!(err.to_string().contains("No space left on device"), "{err}");
    assert!(
        vault.secret_info(&failed_name).is_none(),
        "failed set is visible"
    );

    std::fs::remove_file(&filler).unwrap();
    // Space is back: the same Vault writes again, no restart.
    assert_eq!(vault.set("after", b"works").unwrap(), 1);
    vault.set("before", b"changed").unwrap();
    assert!(
        vault.secret_info(&failed_name).is_none(),
        "failed set is visible"
    );
    assert_eq!(vault.reveal("after").unwrap().expose(), b"works");
    drop(vault);

    let vault = Vault::open(&dir, None).unwrap();
    assert_eq!(vault.reveal("before").unwrap().expose(), b"changed");
    assert_eq!(vault.reveal("after").unwrap().expose(), b"works");
    assert!(vault.secret_info(&failed_name).is_none());
    drop(vault);
}

// ---- backups ----

/// The bytes of a backup, read out as the server does, in pieces.
fn read_backup(backup: &secrets::Backup) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 8192];
    loop {
        let n = backup.read_at(out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

/// A data directory restored from `store` (a backup's bytes) with a copy of `key`.
fn restore(store: &[u8], key: &Path) -> (tempfile::TempDir, PathBuf, PathBuf) {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("restored");
    std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(dir.join(STORE_FILE))
        .unwrap();
    std::io::Write::write_all(&mut f, store).unwrap();
    let restored_key = tmp.path().join("key");
    std::fs::copy(key, &restored_key).unwrap();
    (tmp, dir, restored_key)
}

#[test]
fn a_backup_taken_while_writing_restores_to_a_state_the_vault_had() {
    let (_tmp, dir) = fresh();
    let vault = std::sync::Arc::new(Vault::open(&dir, None).unwrap());
    vault.service_set_uid("web", 1001).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // item-i is set, then `latest` says i: every state the vault passes through has
    // items 0..=k, with latest k-1 or k.
    let writer = {
        let (vault, stop) = (vault.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || i < 20 {
                vault
                    .set(&format!("item-{i}"), format!("value-{i}").as_bytes())
                    .unwrap();
                vault.set("latest", i.to_string().as_bytes()).unwrap();
                i += 1;
            }
            i
        })
    };
    while vault.list_secrets().len() < 11 {
        std::thread::yield_now();
    }
    let backup = vault.backup().unwrap();
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    let bytes = read_backup(&backup);
    assert_eq!(bytes.len() as u64, backup.len());
    let key_hex = std::fs::read_to_string(dir.join(KEY_FILE)).unwrap();
    let key_hex = key_hex.lines().nth(1).unwrap().rsplit(' ').next().unwrap();
    assert!(
        !bytes
            .windows(key_hex.len())
            .any(|w| w == key_hex.as_bytes()),
        "a backup never holds the key"
    );
    drop(backup);

    let (_r, restored, key) = restore(&bytes, &dir.join(KEY_FILE));
    let copy = Vault::open(&restored, Some(&key)).unwrap();
    let names: Vec<String> = copy.list_secrets().into_iter().map(|s| s.name).collect();
    let items = names.iter().filter(|n| n.starts_with("item-")).count() as u64;
    assert!(items >= 10 && items < written, "{items} of {written}");
    for i in 0..items {
        let name = format!("item-{i}");
        assert!(
            names.contains(&name),
            "{name} is missing: not a state the vault had"
        );
        assert_eq!(
            copy.reveal(&name).unwrap().expose(),
            format!("value-{i}").as_bytes()
        );
    }
    let latest: u64 = std::str::from_utf8(copy.reveal("latest").unwrap().expose())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        latest + 1 == items || latest + 2 == items,
        "latest {latest}, {items} items"
    );
    assert_eq!(copy.service("web").unwrap().uid, Some(1001));
    assert_eq!(copy.admin_uid(), ADMIN);
    // It is a working store: it takes writes.
    copy.set("after", b"restore").unwrap();
}

#[test]
fn a_backup_without_a_server_needs_no_key_and_leaves_the_directory_as_it_was() {
    let (tmp, dir) = fresh();
    {
        let vault = Vault::open(&dir, None).unwrap();
        vault.set("a", b"alpha").unwrap();
    }
    let out = tmp.path().join("backup");
    let file = || {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&out)
            .unwrap()
    };
    // While a vault holds the directory, it is the one to ask.
    let vault = Vault::open(&dir, None).unwrap();
    let err = secrets::backup_unserved(&dir, file()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    drop(vault);
    // Without one: no key needed, no lock file made where there was none.
    std::fs::rename(dir.join(KEY_FILE), tmp.path().join("key")).unwrap();
    std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
    secrets::backup_unserved(&dir, file()).unwrap();
    assert!(!dir.join(LOCK_FILE).exists());
    let (_r, restored, key) = restore(&std::fs::read(&out).unwrap(), &tmp.path().join("key"));
    let copy = Vault::open(&restored, Some(&key)).unwrap();
    assert_eq!(copy.reveal("a").unwrap().expose(), b"alpha");
    // Nothing to back up.
    let err = secrets::backup_unserved(&tmp.path().join("nowhere"), file()).unwrap_err();
    assert!(matches!(err, Error::NotInitialized { .. }), "{err:?}");
}
