//! The server's command line and lifecycle: init, the embedded default, the data
//! directory lock, a stale socket, and the clean stop on SIGTERM.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{SecretsServer, bins, shared_tempdir, stderr, stdout};

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn init_makes_an_owner_only_directory_and_key_and_refuses_to_run_twice() {
    let dir = shared_tempdir();
    let data = dir.path().join("data");
    let key = dir.path().join("elsewhere/cluster.key");
    std::fs::create_dir(dir.path().join("elsewhere")).unwrap();
    let out = Command::new(&bins().srv_secrets)
        .args(["init", "--data"])
        .arg(&data)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&key), 0o600);
    assert!(std::fs::metadata(&key).unwrap().len() > 0);
    assert!(!data.join("key").exists(), "the key lives where --key says");
    let again = Command::new(&bins().srv_secrets)
        .args(["init", "--data"])
        .arg(&data)
        .arg("--key")
        .arg(dir.path().join("other.key"))
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already initialized"),
        "{}",
        stderr(&again)
    );
    // Serving it needs the key it was made with.
    let wrong = Command::new(&bins().srv_secrets)
        .args(["serve", "--data"])
        .arg(&data)
        .args([
            "--listen",
            &format!("unix:{}", dir.path().join("s.sock").display()),
        ])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(stderr(&wrong).contains("key"), "{}", stderr(&wrong));
}

#[test]
fn a_second_server_on_the_same_directory_refuses_to_start() {
    let s = SecretsServer::start();
    let other = Command::new(&bins().srv_secrets)
        .args(["serve", "--data"])
        .arg(&s.data)
        .args([
            "--listen",
            &format!("unix:{}", s.root.path().join("other.sock").display()),
        ])
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
    assert!(
        stderr(&other).contains("another srv-secrets serves"),
        "{}",
        stderr(&other)
    );
}

#[test]
fn sigterm_finishes_and_exits_0_and_a_stale_socket_is_replaced() {
    let mut s = SecretsServer::start();
    let status = s.stop();
    assert_eq!(status.code(), Some(0), "{}", s.log_text());
    assert!(!s.socket.exists(), "a clean stop removes its socket");
    // A crash leaves the socket file behind; the next start replaces it.
    s.serve();
    s.kill9();
    assert!(s.socket.exists());
    s.serve();
    assert!(s.deploy_ok(&["status"]).contains("secrets"));
    assert_eq!(mode(&s.socket), 0o666);
    assert_eq!(mode(s.socket.parent().unwrap()), 0o755);
}

#[test]
fn with_no_flags_serve_uses_the_embedded_default() {
    let home = shared_tempdir();
    let runtime = home.path().join("run");
    let child = Command::new(&bins().srv_secrets)
        .args(["serve", "--demo"])
        .env("XDG_DATA_HOME", home.path().join("share"))
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let socket = runtime.join("srv-secrets/9p.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // deploy finds the same default socket.
    let get = Command::new(&bins().deploy)
        .args(["secret", "get", "greeting", "--as", "demo"])
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert_eq!(stdout(&get), "hello from srv-secrets\n", "{}", stderr(&get));
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let said = stderr(&out);
    assert!(said.contains("first run: initialized"), "{said}");
    assert!(
        said.contains(&format!("listening on unix:{}", socket.display())),
        "{said}"
    );
    assert!(said.contains("mount -t 9p"), "{said}");
    assert!(home.path().join("share/srv-secrets/store.redb").exists());
}

#[test]
fn a_data_directory_that_lost_its_store_is_never_initialized_over() {
    let home = shared_tempdir();
    let runtime = home.path().join("run");
    let data = home.path().join("share/srv-secrets");
    let serve_default = || {
        Command::new(&bins().srv_secrets)
            .args(["serve", "--demo"])
            .env("XDG_DATA_HOME", home.path().join("share"))
            .env("XDG_RUNTIME_DIR", &runtime)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    // The embedded default's first run, made by hand: init, as the first run does.
    let init = Command::new(&bins().srv_secrets)
        .args(["init", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    let key_before = std::fs::read(data.join("key")).unwrap();
    // The store is lost; the key and the lock are still there.
    std::fs::remove_file(data.join("store.redb")).unwrap();
    let out = serve_default();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(!said.contains("first run"), "{said}");
    assert!(
        said.starts_with(&format!(
            "srv-secrets: data directory {} has a key file ({}/key) but no store",
            data.display(),
            data.display()
        )),
        "{said}"
    );
    assert!(
        said.find("Restore it from a backup").unwrap() < said.find("srv-secrets init").unwrap(),
        "{said}"
    );
    assert!(!data.join("store.redb").exists(), "nothing was initialized");
    assert_eq!(std::fs::read(data.join("key")).unwrap(), key_before);

    // --data of a directory with no store at all: a restore first, then init.
    let missing = home.path().join("nowhere");
    let out = Command::new(&bins().srv_secrets)
        .args(["serve", "--data"])
        .arg(&missing)
        .arg("--listen")
        .arg(format!("unix:{}", home.path().join("s.sock").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        format!(
            "srv-secrets: {} holds no store; if it had one, restore it from a backup \
             (docs/operations.md, \"Backup and restore\"); to make a new one: srv-secrets init \
             --data {}\n",
            missing.display(),
            missing.display()
        )
    );
}

#[test]
fn a_missing_key_file_is_named_by_its_path() {
    let dir = shared_tempdir();
    let data = dir.path().join("data");
    let key = dir.path().join("cluster.key");
    let init = Command::new(&bins().srv_secrets)
        .args(["init", "--data"])
        .arg(&data)
        .arg("--key")
        .arg(&key)
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", stderr(&init));
    std::fs::rename(&key, dir.path().join("moved.key")).unwrap();
    // The store is there, the key is not: a missing key, not a lost store.
    let out = Command::new(&bins().srv_secrets)
        .args(["serve", "--data"])
        .arg(&data)
        .arg("--key")
        .arg(&key)
        .arg("--listen")
        .arg(format!("unix:{}", dir.path().join("s.sock").display()))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.starts_with(&format!(
            "srv-secrets: key file {} does not exist; pass --key",
            key.display()
        )),
        "{said}"
    );
    assert!(!said.contains("os error"), "{said}");
}

/// Starts `srv-secrets serve ARGS` with the environment `env` and waits for `socket`.
fn serve_until_listening(
    args: &[&std::ffi::OsStr],
    env: &[(&str, &std::path::Path)],
    socket: &std::path::Path,
) -> std::process::Child {
    let mut cmd = Command::new(&bins().srv_secrets);
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(socket).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the server exited");
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child
}

fn sigterm(mut child: std::process::Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(child.wait().unwrap().success());
}

#[test]
fn from_the_demo_to_production_as_docs_operations_says() {
    let home = shared_tempdir();
    let runtime = home.path().join("run");
    let share = home.path().join("share");
    let data = share.join("srv-secrets");
    let socket = runtime.join("srv-secrets/9p.sock");
    let env = [
        ("XDG_DATA_HOME", share.as_path()),
        ("XDG_RUNTIME_DIR", runtime.as_path()),
    ];
    let deploy = |args: &[&str]| {
        let out = Command::new(&bins().deploy)
            .args(args)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output()
            .unwrap();
        assert!(out.status.success(), "deploy {args:?}: {}", stderr(&out));
        stdout(&out)
    };
    // The README's demo.
    let demo = serve_until_listening(&["serve".as_ref(), "--demo".as_ref()], &env, &socket);
    assert_eq!(
        deploy(&["secret", "get", "greeting", "--as", "demo"]),
        "hello from srv-secrets\n"
    );
    // Keep the data directory: the demo goes, then the key moves out with the server
    // stopped.
    deploy(&["service", "remove", "demo"]);
    deploy(&["secret", "delete", "greeting"]);
    let status = deploy(&["status"]);
    assert!(
        status.contains("secrets:    0\nservices:   0\n"),
        "{status}"
    );
    sigterm(demo);
    let keys = home.path().join("etc/srv-secrets");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o700)).unwrap();
    let key = keys.join("key");
    std::fs::rename(data.join("key"), &key).unwrap();
    // Without --key the server looks in DIR, and says what is missing.
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .env("XDG_DATA_HOME", &share)
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!(
            "srv-secrets: key file {} does not exist; pass --key",
            data.join("key").display()
        )),
        "{}",
        stderr(&out)
    );
    // With it, the same directory serves, the demo gone and the key outside.
    let server = serve_until_listening(
        &[
            "serve".as_ref(),
            "--data".as_ref(),
            data.as_os_str(),
            "--key".as_ref(),
            key.as_os_str(),
        ],
        &env,
        &socket,
    );
    let status = deploy(&["status"]);
    assert!(
        status.contains("secrets:    0\nservices:   0\n"),
        "{status}"
    );
    assert!(!data.join("key").exists());
    sigterm(server);
}
