//! The backup and restore procedures of docs/operations.md, run as written: the key kept
//! outside the data directory (`init --key`); an online backup with `deploy backup FILE`
//! while a writer keeps setting secrets, and an offline one with `srv-secrets backup`
//! or `cp -a` of the stopped server's data directory; the key file copied on its own;
//! the disk "lost", both put back, and every value read back as its service. And the
//! other half of the rule: a data directory restored without its own key file does not
//! start, and says why.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use srv_secrets_tests::harness::{
    SecretsServer, as_uid, bins, can_switch_uid, run_with_stdin, stderr, stdout,
};

const WEB: u32 = 1001;
const API: u32 = 1002;
const DB_PASSWORD: &[u8] = b"correct horse battery staple";
const API_TOKEN: &[u8] = b"tok_9f8e7d6c5b4a";
const WEB_MANIFEST: &str = "secret db_password\nsecret tls_key\nconfig log_level=debug\n";

/// Every byte value, twice, with a newline and a NUL in the middle: a binary key.
fn tls_key() -> Vec<u8> {
    (0..=255u8).chain((0..=255u8).rev()).collect()
}

/// An installation laid out as docs/operations.md says (the key in a directory of its
/// own), serving two services, three secrets (one binary, one set twice) and grants.
fn populated() -> SecretsServer {
    let mut s = SecretsServer::init_with_key_outside();
    s.serve();
    s.add_service("web", WEB, Some(WEB_MANIFEST));
    s.add_service("api", API, None);
    for (name, value) in [
        ("db_password", &b"an older password"[..]),
        ("db_password", DB_PASSWORD),
        ("api_token", API_TOKEN),
    ] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let tls = s.root.path().join("tls.bin");
    std::fs::write(&tls, tls_key()).unwrap();
    s.deploy_ok(&["secret", "set", "tls_key", "--file", tls.to_str().unwrap()]);
    std::fs::remove_file(&tls).unwrap();
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    s.deploy_ok(&["secret", "grant", "web", "tls_key"]);
    s.deploy_ok(&["secret", "grant", "api", "api_token"]);
    s
}

/// `cp -a FROM TO`, as the documented procedure runs it.
fn cp_a(from: &Path, to: &Path) {
    let out = Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "cp -a: {}", stderr(&out));
}

/// `install -m 600 FROM TO`: how the documented procedure puts the key back.
fn install_600(from: &Path, to: &Path) {
    let out = Command::new("install")
        .args(["-m", "600"])
        .arg(from)
        .arg(to)
        .output()
        .unwrap();
    assert!(out.status.success(), "install: {}", stderr(&out));
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The 64 hex digits of each key in a key file (`key ID HEX` lines).
fn key_hex(key_file: &Path) -> Vec<String> {
    std::fs::read_to_string(key_file)
        .unwrap()
        .lines()
        .filter_map(|l| {
            // The cluster keys, and the audit's signing key beside them.
            l.strip_prefix("key ")
                .and_then(|l| l.split_once(' ').map(|(_, hex)| hex.to_string()))
                .or_else(|| l.strip_prefix("audit ").map(str::to_string))
        })
        .collect()
}

#[test]
fn an_offline_backup_restores_every_value_grant_and_service_after_the_disk_is_lost() {
    let mut s = populated();
    let key = s.key.clone().unwrap();
    let secrets_before = s.deploy_ok(&["secret", "list", "--json"]);
    let services_before = s.deploy_ok(&["service", "list", "--json"]);
    let status_before = s.deploy_ok(&["status", "--json"]);
    assert!(
        secrets_before.contains("\"version\": 2"),
        "{secrets_before}"
    );

    // 1. Stop the server: the copy is of a store nothing is writing.
    s.stop_ok();
    assert!(!s.socket.exists(), "a clean stop removes the socket");

    // 2. Copy the data directory, and the key file on its own, elsewhere.
    let backups = s.root.path().join("var/backups/srv-secrets");
    let keys = s.root.path().join("root/srv-secrets-keys");
    std::fs::create_dir_all(&backups).unwrap();
    std::fs::create_dir_all(&keys).unwrap();
    let data_backup = backups.join("2026-11-23");
    let key_backup = keys.join("key.2026-11-23");
    cp_a(&s.data, &data_backup);
    cp_a(&key, &key_backup);
    assert_eq!(
        mode(&data_backup),
        0o700,
        "cp -a keeps the directory private"
    );
    assert_eq!(mode(&data_backup.join("store.redb")), 0o600);
    assert_eq!(mode(&key_backup), 0o600);

    // The data backup alone gives nothing away: no key, no value in the clear.
    let hex = key_hex(&key);
    // One key outside a rotation, and the audit's signing key.
    assert_eq!(
        hex.len(),
        2,
        "one key outside a rotation, and the audit key"
    );
    for file in files_under(&data_backup) {
        let bytes = std::fs::read(&file).unwrap();
        let name = file.display();
        for hex in &hex {
            assert!(!contains(&bytes, hex.as_bytes()), "a key is in {name}");
        }
        assert!(!contains(&bytes, DB_PASSWORD), "a value is in {name}");
        assert!(!contains(&bytes, API_TOKEN), "a value is in {name}");
        assert!(!contains(&bytes, &tls_key()), "a value is in {name}");
    }

    // 3. The disk is lost: the data directory and the key file are gone.
    std::fs::remove_dir_all(&s.data).unwrap();
    std::fs::remove_file(&key).unwrap();
    let out = s.serve_refused(&key);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("holds no store"), "{}", stderr(&out));

    // 4. Restore both, start, and everything is back.
    cp_a(&data_backup, &s.data);
    install_600(&key_backup, &key);
    s.serve();
    assert_eq!(s.deploy_ok(&["secret", "list", "--json"]), secrets_before);
    assert_eq!(s.deploy_ok(&["service", "list", "--json"]), services_before);
    assert_eq!(s.deploy_ok(&["status", "--json"]), status_before);
    assert_eq!(s.get_as("db_password", "web"), DB_PASSWORD);
    assert_eq!(s.get_as("tls_key", "web"), tls_key());
    assert_eq!(s.get_as("api_token", "api"), API_TOKEN);
    let check = s.deploy(&["service", "check", "web"]);
    assert_eq!(check.status.code(), Some(0), "{}", stdout(&check));
    // Grants came back exactly: no more, no less.
    let denied = s.deploy(&["secret", "get", "api_token", "--as", "web"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(
        stderr(&denied).contains("not granted"),
        "{}",
        stderr(&denied)
    );
    assert!(!stderr(&denied).contains("tok_"), "{}", stderr(&denied));

    // The services themselves, known by their uids, read their secrets again.
    if can_switch_uid() {
        let r = s.ninep_as(WEB, "", &["read", "/secret/db_password"]);
        assert!(r.status.success(), "{}", stderr(&r));
        assert_eq!(r.stdout, DB_PASSWORD);
        let r = s.ninep_as(API, "", &["read", "/secret/api_token"]);
        assert_eq!(r.stdout, API_TOKEN, "{}", stderr(&r));
        let r = s.ninep_as(API, "", &["read", "/secret/db_password"]);
        assert_eq!(r.status.code(), Some(1));
        assert!(stderr(&r).contains("file does not exist"), "{}", stderr(&r));
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "reading as the service uids needs root and setpriv"
        );
        eprintln!("skipping the reads as service uids: needs root and setpriv");
    }

    // The restored server is a working one: it takes changes and rotates its key.
    let out = s.deploy_with_stdin(&["secret", "set", "after_restore"], b"new");
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "rotate-key"]);
    assert_eq!(s.get_as("db_password", "web"), DB_PASSWORD);
    assert_eq!(s.get_as("tls_key", "web"), tls_key());
    s.stop_ok();
}

#[test]
fn a_restored_data_directory_does_not_start_without_its_own_key() {
    let mut s = populated();
    let key = s.key.clone().unwrap();
    s.stop_ok();
    let data_backup = s.root.path().join("backup-data");
    let key_before_rotation = s.root.path().join("key.before-rotation");
    cp_a(&s.data, &data_backup);
    cp_a(&key, &key_before_rotation);

    // A rotation afterwards replaces the key file: key 1 is gone from it.
    s.serve();
    s.deploy_ok(&["secret", "rotate-key"]);
    s.stop_ok();
    let key_after_rotation = s.root.path().join("key.after-rotation");
    cp_a(&key, &key_after_rotation);
    assert!(
        std::fs::read_to_string(&key_after_rotation)
            .unwrap()
            .contains("\nkey 2 "),
        "rotate-key wrote key 2"
    );

    // Another installation's key has the same id 1, and different bytes.
    let other = SecretsServer::init_with_key_outside();
    let other_key = other.key.clone().unwrap();

    // The backup taken before the rotation is restored: its store needs key 1.
    std::fs::remove_dir_all(&s.data).unwrap();
    cp_a(&data_backup, &s.data);
    let missing = s.root.path().join("etc/srv-secrets/no-such-key");
    let loose = s.root.path().join("loose.key");
    std::fs::copy(&key_before_rotation, &loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o644)).unwrap();
    let refused: [(&Path, &str); 4] = [
        (&missing, "does not exist; pass --key"),
        (&key_after_rotation, "lacks key 1, which this store needs"),
        (
            &other_key,
            "does not match this store: key 1 fails the store's key check",
        ),
        (&loose, "open to group or others; run `chmod 600"),
    ];
    for (key, says) in refused {
        let out = s.serve_refused(key);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", key.display());
        assert!(err.contains(says), "{}: {err}", key.display());
        assert!(
            err.contains(&key.display().to_string()),
            "names the file: {err}"
        );
        assert!(!s.socket.exists(), "it never listened");
        for hex in key_hex(&key_before_rotation) {
            assert!(!err.contains(&hex), "no key bytes in errors");
        }
    }

    // The key file of the backup's own time opens it, whatever was tried before.
    install_600(&key_before_rotation, &key);
    s.serve();
    assert_eq!(s.get_as("db_password", "web"), DB_PASSWORD);
    assert_eq!(s.get_as("tls_key", "web"), tls_key());
    assert_eq!(s.get_as("api_token", "api"), API_TOKEN);
    assert!(
        s.deploy_ok(&["status"]).contains("key:        1"),
        "the backup is from before the rotation"
    );
    s.stop_ok();
}

/// `install -d -m 700 DIR`: how the documented restore makes a lost data directory again.
fn install_dir_700(dir: &Path) {
    let out = Command::new("install")
        .args(["-d", "-m", "700"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "install -d: {}", stderr(&out));
}

/// Files left beside `file` by a backup that did not finish.
fn partials_beside(file: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".partial"))
        .collect()
}

/// Checks that `file` is a backup as the rules want it: mode 0600, holding neither the
/// key nor a value in the clear.
fn assert_a_safe_backup(file: &Path, key: &Path) {
    assert_eq!(mode(file), 0o600);
    let bytes = std::fs::read(file).unwrap();
    for hex in key_hex(key) {
        assert!(
            !contains(&bytes, hex.as_bytes()),
            "the key is in the backup"
        );
    }
    for value in [DB_PASSWORD, API_TOKEN, &tls_key()[..]] {
        assert!(
            !contains(&bytes, value),
            "a value is in the backup in the clear"
        );
    }
    assert!(partials_beside(file).is_empty());
}

/// The documented restore of a backup FILE, after the disk is lost: the server stopped,
/// DIR made again (0700), FILE put back as DIR/store.redb (0600), the key file of the
/// backup's time put back (0600), the server started.
fn restore_after_losing_the_disk(s: &mut SecretsServer, file: &Path, key_backup: &Path) {
    let key = s.key.clone().unwrap();
    s.stop_ok();
    std::fs::remove_dir_all(&s.data).unwrap();
    std::fs::remove_file(&key).unwrap();
    install_dir_700(&s.data);
    install_600(file, &s.data.join("store.redb"));
    install_600(key_backup, &key);
    s.serve();
}

#[test]
fn an_online_backup_taken_while_a_writer_sets_secrets_restores_to_a_state_the_server_had() {
    let mut s = populated();
    let key = s.key.clone().unwrap();
    let key_backup = s.root.path().join("key.backup");
    cp_a(&key, &key_backup);
    let web_before = s.deploy_ok(&["service", "check", "web"]);

    // A writer sets item-i and then latest=i, one `deploy secret set` each, so every
    // state the server passes through holds item-0..=item-k and latest k-1 or k.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let started = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let writer = {
        let (stop, started) = (stop.clone(), started.clone());
        let addr = s.addr();
        std::thread::spawn(move || {
            let set = |name: &str, value: &str| {
                let mut cmd = Command::new(&bins().deploy);
                cmd.arg("--addr").arg(&addr).args(["secret", "set", name]);
                let out = run_with_stdin(cmd, value.as_bytes());
                assert!(out.status.success(), "{}", stderr(&out));
            };
            let mut i = 0u64;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                set(&format!("item-{i}"), &format!("value-{i}"));
                set("latest", &i.to_string());
                i += 1;
                started.store(i, std::sync::atomic::Ordering::SeqCst);
            }
            i
        })
    };
    while started.load(std::sync::atomic::Ordering::SeqCst) < 3 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let file = s.root.path().join("var/backups/store.backup");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let before_backup = started.load(std::sync::atomic::Ordering::SeqCst);
    let said = s.deploy_ok(&["backup", file.to_str().unwrap()]);
    // A few more writes after the backup: they must not be in it.
    let at_backup = started.load(std::sync::atomic::Ordering::SeqCst);
    while started.load(std::sync::atomic::Ordering::SeqCst) < at_backup + 2 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let written = writer.join().unwrap();
    assert!(
        said.starts_with(&format!(
            "wrote a backup of the store at {} to {} (",
            s.addr(),
            file.display()
        )),
        "{said}"
    );
    assert_a_safe_backup(&file, &key);

    restore_after_losing_the_disk(&mut s, &file, &key_backup);
    let list = s.deploy_ok(&["secret", "list"]);
    let items = (0..written)
        .filter(|i| list.contains(&format!("item-{i} ")))
        .count() as u64;
    // Between what was done when `deploy backup` started and what was done (and one
    // item more) when it finished.
    assert!(
        (before_backup..=at_backup + 1).contains(&items),
        "{items} items, {before_backup} to {at_backup} while the backup was taken, \
         {written} in all: {list}"
    );
    assert!(items < written, "writes after the backup are not in it");
    // Each item and `latest` decrypt under the key, and agree: a state the server had.
    let grants: String = (0..items)
        .map(|i| format!("grant web item-{i}\n"))
        .chain(["grant web latest\n".to_string()])
        .collect();
    let mut ctl = Command::new(&bins().ninep);
    ctl.arg("--addr")
        .arg(s.addr())
        .args(["write", "/secrets/ctl"]);
    let out = run_with_stdin(ctl, grants.as_bytes());
    assert!(out.status.success(), "{}", stderr(&out));
    for i in 0..items {
        assert_eq!(
            s.get_as(&format!("item-{i}"), "web"),
            format!("value-{i}").into_bytes(),
            "item-{i}"
        );
    }
    let latest: u64 = String::from_utf8(s.get_as("latest", "web"))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        latest + 1 == items || latest + 2 == items,
        "latest {latest} with {items} items: not a state the server had"
    );
    // Everything that was there before the writer started came back too.
    assert_eq!(s.get_as("db_password", "web"), DB_PASSWORD);
    assert_eq!(s.get_as("tls_key", "web"), tls_key());
    assert_eq!(s.get_as("api_token", "api"), API_TOKEN);
    assert_eq!(s.deploy_ok(&["service", "check", "web"]), web_before);
    s.stop_ok();
}

#[test]
fn deploy_backup_never_replaces_a_file_unasked_and_leaves_nothing_when_refused() {
    let s = populated();
    let key = s.key.clone().unwrap();
    let file = s.root.path().join("store.backup");
    std::fs::write(&file, b"yesterday's backup").unwrap();
    let out = s.deploy(&["backup", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "deploy: {} already exists; not replacing it (choose another name, or pass \
             --force to replace it)\n",
            file.display()
        )
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"yesterday's backup");
    s.deploy_ok(&["backup", "--force", file.to_str().unwrap()]);
    assert_a_safe_backup(&file, &key);

    // Only the admin may take one; a refused deploy leaves no file behind.
    if can_switch_uid() {
        let shared = s.root.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let theirs = shared.join("stolen.backup");
        let mut cmd = as_uid(1005, &bins().deploy);
        cmd.arg("--addr").arg(s.addr()).arg("backup").arg(&theirs);
        let out = run_with_stdin(cmd, b"");
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("the server refused this user (uid 1005)"),
            "{}",
            stderr(&out)
        );
        assert!(!theirs.exists());
        assert!(partials_beside(&theirs).is_empty());
        // Nor can a service read it through its view: there is no secrets/ there.
        let r = s.ninep_as(WEB, "", &["read", "/secrets/backup"]);
        assert_eq!(stderr(&r), "9p: file does not exist\n");
    } else {
        assert!(
            std::env::var("CI").is_err(),
            "deploy as another uid needs root and setpriv"
        );
    }
}

#[test]
fn srv_secrets_backup_copies_a_served_store_through_its_server_and_a_stopped_one_directly() {
    let mut s = populated();
    let key = s.key.clone().unwrap();
    let secrets_before = s.deploy_ok(&["secret", "list", "--json"]);
    let services_before = s.deploy_ok(&["service", "list", "--json"]);
    let file = s.root.path().join("offline.backup");
    let data = s.data.clone();
    let addr = s.addr();
    let backup_to = |file: &std::path::Path, addr: Option<&str>, force: bool| {
        let mut cmd = Command::new(&bins().srv_secrets);
        cmd.arg("backup")
            .arg("--data")
            .arg(&data)
            .arg("--out")
            .arg(file);
        if let Some(a) = addr {
            cmd.arg("--addr").arg(a);
        }
        if force {
            cmd.arg("--force");
        }
        cmd.output().unwrap()
    };
    let backup = |force: bool| backup_to(&file, None, force);
    // While it serves, the server holds the store: the backup is taken through it, on
    // the socket it listens on.
    let served = s.root.path().join("served.backup");
    let out = backup_to(&served, Some(&addr), false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "wrote a backup of {} (from the server at {addr}) to {} ({} bytes); it holds no \
             key: back up the key file apart\n",
            s.data.display(),
            served.display(),
            std::fs::metadata(&served).unwrap().len()
        )
    );
    assert_a_safe_backup(&served, &key);
    // A socket served by another server is not taken for this directory's.
    let mut other = SecretsServer::start();
    let out = backup_to(&file, Some(&other.addr()), false);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("is not the one that serves") && stderr(&out).contains("--addr"),
        "{}",
        stderr(&out)
    );
    other.stop_ok();
    assert!(!file.exists());
    assert!(partials_beside(&file).is_empty());

    // Stopped: straight from the data directory, without the key.
    s.stop_ok();
    let out = backup(false);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        format!(
            "wrote a backup of {} to {} ({} bytes); it holds no key: back up the key file \
             apart\n",
            s.data.display(),
            file.display(),
            std::fs::metadata(&file).unwrap().len()
        )
    );
    assert_a_safe_backup(&file, &key);
    // Not over the one just made, unless asked.
    let again = backup(false);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists; not replacing it"),
        "{}",
        stderr(&again)
    );
    let forced = backup(true);
    assert!(forced.status.success(), "{}", stderr(&forced));

    let key_backup = s.root.path().join("key.backup");
    cp_a(&key, &key_backup);
    s.serve();
    restore_after_losing_the_disk(&mut s, &file, &key_backup);
    assert_eq!(s.deploy_ok(&["secret", "list", "--json"]), secrets_before);
    assert_eq!(s.deploy_ok(&["service", "list", "--json"]), services_before);
    assert_eq!(s.get_as("db_password", "web"), DB_PASSWORD);
    assert_eq!(s.get_as("tls_key", "web"), tls_key());
    assert_eq!(s.get_as("api_token", "api"), API_TOKEN);
    s.stop_ok();
}
