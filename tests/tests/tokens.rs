//! API tokens, end to end: the real server listening on a unix socket and on plain TCP on
//! loopback (`--listen tcp:127.0.0.1:PORT --insecure-plain-tcp`), tokens made, listed and
//! revoked with the real `deploy`, and used over TCP by `deploy --token-file` and by a raw
//! 9P client (ninep's, in this process: Tauth, the token written to the afid, Tattach).
//!
//! What must hold: a token proves its principal and nothing more; the server never shows
//! one again (not in `token list`, its log, the audit trail or any error); no token, a
//! wrong one, an expired one, a revoked one and one of a removed service are refused; a
//! revoke closes the connections that attached with it at once; and a stranger guessing
//! tokens as fast as it can does not slow the admin on the unix socket.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ninep::client::{Client, ClientError};
use srv_secrets_tests::harness::{SecretsServer, bins, run_with_stdin, stderr, stdout};

const WEB: u32 = 1001;
const VALUE: &[u8] = b"correct horse battery staple";

/// A server with service web granted `db`, serving unix and plain TCP on loopback.
struct Served {
    s: SecretsServer,
    /// `127.0.0.1:PORT`.
    tcp: String,
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn serve() -> Served {
    let mut s = SecretsServer::init();
    let tcp = format!("127.0.0.1:{}", free_port());
    s.args = vec![
        "--listen".into(),
        format!("tcp:{tcp}"),
        "--insecure-plain-tcp".into(),
    ];
    s.serve();
    s.add_service("web", WEB, Some("secret db\n"));
    let out = s.deploy_with_stdin(&["secret", "set", "db"], VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    Served { s, tcp }
}

/// A token made with `deploy token create ARGS`: its text (stdout), and what deploy said
/// of it (stderr).
fn create(s: &SecretsServer, args: &[&str]) -> (String, String) {
    let mut all = vec!["token", "create"];
    all.extend_from_slice(args);
    let out = s.deploy(&all);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out);
    assert_eq!(
        token.lines().count(),
        1,
        "the token alone on stdout: {token}"
    );
    (token.trim_end().to_string(), stderr(&out))
}

/// The ID of a token's text.
fn id_of(token: &str) -> String {
    token["srvtok_".len().."srvtok_".len() + 16].to_string()
}

/// The part of a token that must never be seen again.
fn secret_of(token: &str) -> &str {
    &token["srvtok_".len() + 17..]
}

/// `token` in a file of its own, mode 0600.
fn token_file(s: &SecretsServer, name: &str, token: &str) -> PathBuf {
    let path = s.root.path().join(name);
    std::fs::write(&path, format!("{token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

/// `deploy --addr tcp:... --token-file FILE ARGS`.
fn deploy_tcp(served: &Served, file: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(&bins().deploy);
    cmd.arg("--addr")
        .arg(format!("tcp:{}", served.tcp))
        .arg("--token-file")
        .arg(file)
        .args(args);
    run_with_stdin(cmd, b"")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A raw 9P client over TCP, attached to `aname` with `token`.
async fn attach_tcp(
    tcp: &str,
    token: &[u8],
    aname: &str,
) -> Result<ninep::client::Fid, ClientError> {
    let client = Client::connect_tcp(tcp).await?;
    client.attach_with_credential("probe", aname, token).await
}

/// The whole of `path` from `root`.
async fn read(root: &ninep::client::Fid, path: &[&str]) -> Result<Vec<u8>, ClientError> {
    let mut f = root.walk(path).await?;
    f.open(ninep::om::READ).await?;
    Ok(f.read_all().await?.to_vec())
}

/// Asserts that nothing the server said or logged, nor what deploy printed, holds any
/// of `tokens`' secret parts.
fn never_shown(s: &SecretsServer, tokens: &[&str], outputs: &[&str]) {
    let log = s.log_text();
    for token in tokens {
        let secret = secret_of(token);
        assert!(!log.contains(secret), "the server's log shows a token");
        for out in outputs {
            assert!(!out.contains(secret), "an output shows a token: {out}");
        }
    }
}

#[test]
fn a_token_proves_its_principal_over_tcp_and_is_shown_once() {
    let served = serve();
    let s = &served.s;
    let (admin, said) = create(s, &["admin"]);
    let admin_id = id_of(&admin);
    assert!(admin.starts_with("srvtok_") && admin.len() == 67, "{admin}");
    assert!(
        said.contains(&format!("made token {admin_id} for admin, until revoked"))
            && said.contains("It is shown this once"),
        "{said}"
    );
    // deploy over TCP with it: the admin, as over the unix socket.
    let file = token_file(s, "admin.token", &admin);
    let listed = deploy_tcp(&served, &file, &["secret", "list"]);
    assert!(listed.status.success(), "{}", stderr(&listed));
    assert!(stdout(&listed).contains("db"), "{}", stdout(&listed));
    // What the admin does over a token is made by the admin, with the token's ID.
    let set = run_with_stdin(
        {
            let mut c = Command::new(&bins().deploy);
            c.arg("--addr")
                .arg(format!("tcp:{}", served.tcp))
                .arg("--token-file")
                .arg(&file)
                .args(["secret", "set", "over_tcp"]);
            c
        },
        b"v1",
    );
    assert!(set.status.success(), "{}", stderr(&set));
    let audit = s.deploy_ok(&["audit", "list", "--json"]);
    let record = audit
        .lines()
        .find(|l| l.contains(r#""action":"set""#) && l.contains("over_tcp"))
        .unwrap();
    assert!(
        record.contains(r#""principal":"admin""#)
            && record.contains(&format!(r#""by_token":"{admin_id}""#)),
        "{record}"
    );
    assert!(audit.contains("token-create"), "{audit}");
    // A service's token, with the raw client: its view and nothing else.
    let (web, _) = create(s, &["web", "--expires", "1h"]);
    let rt = runtime();
    rt.block_on(async {
        let root = attach_tcp(&served.tcp, web.as_bytes(), "").await.unwrap();
        assert_eq!(read(&root, &["secret", "db"]).await.unwrap(), VALUE);
        assert!(
            root.walk(&["secrets"]).await.is_err(),
            "a service's view has no secrets/"
        );
        let e = attach_tcp(&served.tcp, web.as_bytes(), "admin")
            .await
            .err()
            .unwrap();
        assert!(e.to_string().starts_with("permission denied"), "{e}");
    });
    // Listed, never shown.
    let list = s.deploy_ok(&["token", "list"]);
    let json = s.deploy_ok(&["token", "list", "--json"]);
    for id in [&admin_id, &id_of(&web)] {
        assert!(
            list.contains(id.as_str()) && json.contains(id.as_str()),
            "{list}"
        );
    }
    assert!(list.contains("active"), "{list}");
    assert!(json.contains(r#""principal": "web""#), "{json}");
    never_shown(
        s,
        &[&admin, &web],
        &[&list, &json, &audit, &stderr(&listed)],
    );
}

#[test]
fn no_token_a_wrong_one_an_expired_one_and_one_of_a_removed_service_are_refused() {
    let served = serve();
    let s = &served.s;
    let (admin, _) = create(s, &["admin"]);
    let (brief, _) = create(s, &["admin", "--expires", "1s"]);
    let (web, _) = create(s, &["web"]);
    let mut wrong = admin.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'A' { b'B' } else { b'A' };
    let rt = runtime();
    let errors = rt.block_on(async {
        // No token: refused, saying how to attach.
        let client = Client::connect_tcp(&served.tcp).await.unwrap();
        let none = client.attach("probe", "").await.err().unwrap().to_string();
        assert!(none.starts_with(ninep::ename::AUTH_REQUIRED), "{none}");
        let bad = attach_tcp(&served.tcp, &wrong, "")
            .await
            .err()
            .unwrap()
            .to_string();
        assert_eq!(bad, "permission denied: not a valid token");
        let junk = attach_tcp(&served.tcp, b"hunter2", "")
            .await
            .err()
            .unwrap()
            .to_string();
        assert_eq!(junk, "permission denied: not a valid token");
        vec![none, bad, junk]
    });
    std::thread::sleep(Duration::from_millis(2100));
    let expired = rt.block_on(async {
        attach_tcp(&served.tcp, brief.as_bytes(), "")
            .await
            .err()
            .unwrap()
            .to_string()
    });
    assert_eq!(
        expired,
        format!("permission denied: token {} expired", id_of(&brief))
    );
    // A removed service's tokens go with it: made again, the service does not bring them
    // back.
    s.deploy_ok(&["service", "remove", "web"]);
    s.add_service("web", WEB, Some("secret db\n"));
    let removed = rt.block_on(async {
        attach_tcp(&served.tcp, web.as_bytes(), "")
            .await
            .err()
            .unwrap()
            .to_string()
    });
    assert_eq!(
        removed,
        format!("permission denied: token {} was revoked", id_of(&web))
    );
    let list = s.deploy_ok(&["token", "list"]);
    assert!(
        list.contains("expired") && list.contains("revoked"),
        "{list}"
    );
    // deploy says what was wrong, in the server's words, and what to do.
    let file = token_file(s, "wrong.token", std::str::from_utf8(&wrong).unwrap());
    let out = deploy_tcp(&served, &file, &["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server refused the token in")
            && stderr(&out).contains("not a valid token; make a new one"),
        "{}",
        stderr(&out)
    );
    // A token file others may read is refused before anything is sent.
    let open = token_file(s, "open.token", &admin);
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = deploy_tcp(&served, &open, &["status"]);
    assert!(
        stderr(&out).contains("has mode 644, open to group or others"),
        "{}",
        stderr(&out)
    );
    let mut all = errors;
    all.extend([expired, removed, stderr(&out), list]);
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    never_shown(s, &[&admin, &brief, &web], &refs);
    let wrong_text = String::from_utf8(wrong).unwrap();
    assert!(!s.log_text().contains(secret_of(&wrong_text)));
}

#[test]
fn a_revoke_ends_the_connections_that_attached_with_the_token() {
    let served = serve();
    let s = &served.s;
    let (doomed, _) = create(s, &["web"]);
    let (other, _) = create(s, &["web"]);
    let rt = runtime();
    rt.block_on(async {
        let root = attach_tcp(&served.tcp, doomed.as_bytes(), "")
            .await
            .unwrap();
        let kept = attach_tcp(&served.tcp, other.as_bytes(), "").await.unwrap();
        // A file held open on the connection, read once.
        let mut held = root.walk(&["secret", "db"]).await.unwrap();
        held.open(ninep::om::READ).await.unwrap();
        assert_eq!(held.read(0, 100).await.unwrap().expose(), VALUE);
        let id = id_of(&doomed);
        let out = tokio::task::spawn_blocking({
            let deploy = bins().deploy.clone();
            let addr = s.addr();
            move || {
                Command::new(deploy)
                    .args(["--addr", &addr, "token", "revoke", &id])
                    .output()
                    .unwrap()
            }
        })
        .await
        .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(
            stdout(&out).contains("its connections are closed"),
            "{}",
            stdout(&out)
        );
        let revoked_at = Instant::now();
        // The next read on the open file fails ("permission denied", or cut off)...
        let next = tokio::time::timeout(Duration::from_secs(5), held.read(0, 100))
            .await
            .expect("a read on a revoked token's connection is answered or cut off at once");
        assert!(next.is_err(), "a revoked token's open file still reads");
        // ... and the server closes the connection within a second.
        loop {
            match tokio::time::timeout(Duration::from_secs(1), root.walk(&["secret"])).await {
                Ok(Err(ClientError::Disconnected | ClientError::Io(_))) => break,
                Ok(Err(e)) if e.remote().is_some() => {}
                other => panic!(
                    "a revoked token's connection answered {:?}",
                    other.map(|r| r.map(|f| f.qid()))
                ),
            }
            assert!(
                revoked_at.elapsed() < Duration::from_secs(1),
                "still open {:?} after the revoke",
                revoked_at.elapsed()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!(
            "closed {:?} after the revoke returned",
            revoked_at.elapsed()
        );
        // The other token's connection goes on.
        assert_eq!(read(&kept, &["secret", "db"]).await.unwrap(), VALUE);
        let again = attach_tcp(&served.tcp, doomed.as_bytes(), "")
            .await
            .err()
            .unwrap();
        assert!(again.to_string().ends_with("was revoked"), "{again}");
    });
    let again = s.deploy_ok(&["token", "revoke", &id_of(&doomed)]);
    assert!(again.contains("was revoked already"), "{again}");
    assert!(s.log_text().contains("a token stopped holding"));
    never_shown(s, &[&doomed, &other], &[]);
}

#[test]
fn bad_token_attempts_do_not_slow_the_admin_on_unix() {
    let served = serve();
    let s = &served.s;
    let (admin, _) = create(s, &["admin"]);
    let socket = s.socket.clone();
    let rt = runtime();
    let (latencies, attempts) = rt.block_on(async {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let tried = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        // Guessers, each as fast as it can, on a new connection when the server closes
        // its last (after a few guesses: the requests before a successful attach are
        // few). Fewer than the server's slots for strangers: a good token must find one
        // beside them. (More would take every stranger's slot: a connection is no one
        // until it attaches, so that is what the cap on strangers is for, and the
        // admin's and services' unix connections have slots apart.)
        let mut guessers = Vec::new();
        for g in 0..48u32 {
            let (stop, tried, tcp) = (stop.clone(), tried.clone(), served.tcp.clone());
            guessers.push(tokio::spawn(async move {
                let guess = format!("srvtok_{g:016x}_{}", "A".repeat(43));
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let Ok(client) = Client::connect_tcp(&tcp).await else {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                        continue;
                    };
                    while client
                        .attach_with_credential("guess", "", guess.as_bytes())
                        .await
                        .is_err_and(|e| e.remote().is_some())
                    {
                        tried.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Meanwhile the admin connects over the unix socket, attaches and reads, again
        // and again: each must be served within a second.
        let mut latencies = Vec::new();
        let until = Instant::now() + Duration::from_secs(4);
        while Instant::now() < until {
            let start = Instant::now();
            let served = tokio::time::timeout(Duration::from_secs(5), async {
                let client = Client::connect_unix(&socket).await?;
                let root = client.attach("root", "").await?;
                read(&root, &["secrets", "status"]).await
            })
            .await;
            let took = start.elapsed();
            assert!(
                matches!(served, Ok(Ok(_))),
                "the admin was not served: {served:?}"
            );
            latencies.push(took);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // And a good token is served over TCP beside the guessers, within a second.
        let start = Instant::now();
        let root = tokio::time::timeout(
            Duration::from_secs(5),
            attach_tcp(&served.tcp, admin.as_bytes(), ""),
        )
        .await
        .expect("a good token was answered");
        latencies.push(start.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for g in guessers {
            let _ = g.await;
        }
        assert!(
            root.is_ok(),
            "a good token was not served beside the guessers"
        );
        (latencies, tried.load(std::sync::atomic::Ordering::Relaxed))
    });
    let max = latencies.iter().max().unwrap();
    println!(
        "{attempts} bad token attempts over TCP; the admin over unix served {} times and a \
         good token over TCP once, max {max:?}",
        latencies.len() - 1
    );
    assert!(attempts > 100, "the guessers hardly guessed: {attempts}");
    assert!(*max < Duration::from_secs(1), "the admin waited {max:?}");
    never_shown(s, &[&admin], &[]);
}
