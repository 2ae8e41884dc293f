//! `srv-secrets relay` end to end: the real server with a TLS listener on 127.0.0.1, a
//! relay in front of it holding service web's certificate, and plain 9P clients on the
//! relay's unix socket (the `9p` test client run as other uids, `deploy mount`, and the
//! kernel's v9fs in a VM).
//!
//! What a service reads through the relay is what the server gives its certificate, and a
//! revoke on the server stops the next read; uids not allowed are refused, and so is an
//! admin certificate at start; when the server goes away the client gets an error within
//! seconds, never a hang, and the next connection after the server is back works; no
//! value is ever in the relay's log.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{Held, as_uid, bins, can_switch_uid, stderr, stdout};
use srv_secrets_tests::pki::Identity;
use srv_secrets_tests::relay::{Relay, RelayOptions, TlsServer};
use srv_secrets_tests::vm::{KernelMount, require_or_skip};

const WEB: u32 = 1001;
const OTHER: u32 = 1002;
const DB_VALUE: &[u8] = b"s3cr3t-through-the-relay";

/// A server with service web (uid 1001) granted db, and web's certificate.
struct Setup {
    t: TlsServer,
    web: Identity,
}

fn setup() -> Setup {
    let t = TlsServer::start();
    t.s.add_service("web", WEB, None);
    let out = t.s.deploy_with_stdin(&["secret", "set", "db"], DB_VALUE);
    assert!(out.status.success(), "{}", stderr(&out));
    t.s.deploy_ok(&["secret", "grant", "web", "db"]);
    let web = t.client("web", "web");
    Setup { t, web }
}

impl Setup {
    fn options<'a>(
        &'a self,
        socket: &'a Path,
        identity: &'a Identity,
        uids: &'a [u32],
        extra: &'a [&'a str],
        ca: &'a Path,
    ) -> RelayOptions<'a> {
        RelayOptions {
            connect: &self.t.addr,
            identity,
            ca,
            socket,
            uids,
            extra,
            rust_log: "trace",
        }
    }

    fn socket(&self, name: &str) -> PathBuf {
        self.t.s.root.path().join(format!("relay-{name}/9p.sock"))
    }

    /// A relay called `name` with web's certificate, letting `uids` in.
    fn relay(&self, name: &str, uids: &[u32], extra: &[&str]) -> Relay {
        let socket = self.socket(name);
        let ca = self.t.ca.cert();
        self.options(&socket, &self.web, uids, extra, &ca)
            .start(&self.t.s.root.path().join(format!("relay-{name}.log")))
    }

    /// No value is in the server's log or the relay's.
    fn no_values_logged(&self, relay: &Relay) {
        let value = std::str::from_utf8(DB_VALUE).unwrap();
        assert!(
            !relay.log_text().contains(value),
            "a value in the relay's log"
        );
        assert!(
            !self.t.s.log_text().contains(value),
            "a value in the server's log"
        );
    }
}

/// The `9p` client as `uid` on the relay's socket.
fn ninep_command(relay: &Relay, uid: u32, args: &[&str]) -> Command {
    let mut cmd = as_uid(uid, &bins().ninep);
    cmd.arg("--addr").arg(relay.addr()).args(args);
    cmd
}

fn ninep(relay: &Relay, uid: u32, args: &[&str]) -> Output {
    ninep_command(relay, uid, args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> Vec<u8> {
    assert!(out.status.success(), "failed: {}", stderr(out));
    out.stdout.clone()
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stdout(out));
    stderr(out)
}

/// `9p hold PATH` as `uid` through the relay: the holder and its first line.
fn hold(relay: &Relay, uid: u32, path: &str) -> (Held, String) {
    let mut cmd = ninep_command(relay, uid, &["hold", path]);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    Held::spawn(cmd.spawn().unwrap())
}

/// `held.again()`, given at most `within`: what it printed and how long it took, or None
/// if it hung.
fn again_within(held: Held, within: Duration) -> (Option<String>, Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let mut held = held;
        let _ = tx.send(held.again());
        // Kept until the answer is taken, then killed with the thread's end.
        drop(held);
    });
    let line = rx.recv_timeout(within).ok();
    (line, started.elapsed())
}

fn need_uids(test: &str) -> bool {
    if can_switch_uid() {
        return true;
    }
    assert!(std::env::var("CI").is_err(), "{test} needs root (setpriv)");
    eprintln!("skipping {test}: needs root (setpriv)");
    false
}

#[test]
fn a_service_reads_through_the_relay_as_if_local_and_a_revoke_stops_the_next_read() {
    if !need_uids("reads") {
        return;
    }
    let x = setup();
    // A value larger than a buffer of the relay and than one 9P message.
    let big: Vec<u8> = (0..300 * 1024).map(|i| (i * 7 % 251) as u8).collect();
    let big_file = x.t.s.root.path().join("big");
    std::fs::write(&big_file, &big).unwrap();
    x.t.s
        .deploy_ok(&["secret", "set", "big", "--file", big_file.to_str().unwrap()]);
    x.t.s.deploy_ok(&["secret", "grant", "web", "big"]);
    let relay = x.relay("reads", &[WEB], &[]);
    // At start it tried the server, and says so.
    assert!(
        relay.wait_for_log(
            0,
            &format!(
                "the server at {} takes this certificate: service web",
                x.t.addr
            ),
            Duration::from_secs(10)
        ),
        "{}",
        relay.log_text()
    );

    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/db"])), DB_VALUE);
    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/big"])), big);
    assert_eq!(ok(&ninep(&relay, WEB, &["ls", "/secret"])), b"big\ndb\n");
    // The server decides, as for any connection with web's certificate: not another view,
    // not the admin tree.
    for (aname, says) in [
        (
            "admin",
            "9p: permission denied: a service's certificate or token; the admin tree takes \
             the admin's\n",
        ),
        ("secrets", "9p: permission denied\n"),
        ("api", "9p: permission denied\n"),
    ] {
        assert_eq!(
            failed(&ninep(&relay, WEB, &["--aname", aname, "ls", "/"])),
            says,
            "{aname}"
        );
    }
    // deploy's reads as the service work the same way.
    let mut cmd = as_uid(WEB, &bins().deploy);
    cmd.args([
        "--addr",
        &relay.addr(),
        "secret",
        "get",
        "db",
        "--as",
        "web",
    ])
    .stdin(Stdio::null());
    assert_eq!(ok(&cmd.output().unwrap()), DB_VALUE);

    // A revoke on the server (by the admin, on its unix socket) stops the next read of a
    // file held open through the relay, and the next open.
    let (held, first) = hold(&relay, WEB, "/secret/db");
    assert_eq!(first.as_bytes(), [b"read ".as_slice(), DB_VALUE].concat());
    x.t.s.deploy_ok(&["secret", "revoke", "web", "db"]);
    let (after, _) = again_within(held, Duration::from_secs(10));
    let after = after.expect("the held read answered");
    assert!(after.starts_with("error "), "{after}");
    assert_eq!(
        failed(&ninep(&relay, WEB, &["read", "/secret/db"])),
        "9p: file does not exist\n"
    );
    let log = relay.log_text();
    assert!(log.contains("uid 1001 connected (connection 1)"), "{log}");
    x.no_values_logged(&relay);
}

#[test]
fn deploy_mount_as_the_service_through_the_relay() {
    let fuse = Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    if !fuse || !can_switch_uid() {
        assert!(
            std::env::var("CI").is_err(),
            "needs root, /dev/fuse and fusermount3"
        );
        eprintln!("skipping: needs root, /dev/fuse and fusermount3");
        return;
    }
    // fusermount3 wants the user in the password database: a service of nobody's uid.
    const NOBODY: u32 = 65534;
    let mut x = setup();
    x.t.s.add_service("nob", NOBODY, None);
    x.t.s.deploy_ok(&["secret", "grant", "nob", "db"]);
    x.web = x.t.client("nob", "nob");
    let relay = x.relay("mount", &[NOBODY], &[]);
    let dir = x.t.s.root.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    // As the service itself: its own view, for itself; the serving deploy stays in the
    // background.
    let mut cmd = as_uid(NOBODY, &bins().deploy);
    cmd.args(["--addr", &relay.addr(), "mount", "nob"])
        .arg(&dir)
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert_eq!(
        String::from_utf8(ok(&out)).unwrap(),
        format!("mounted nob's view at {}\n", dir.display())
    );
    let cat = |who: u32| {
        as_uid(who, Path::new("/bin/cat"))
            .arg(dir.join("secret/db"))
            .output()
            .unwrap()
    };
    let read = cat(NOBODY);
    x.t.s.deploy_ok(&["secret", "revoke", "nob", "db"]);
    let after = cat(NOBODY);
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .status()
        .unwrap();
    assert_eq!(ok(&read), DB_VALUE);
    assert!(!after.status.success(), "read after the revoke");
    assert!(unmounted.success());
    x.no_values_logged(&relay);
}

#[test]
fn only_the_allowed_uids_get_in_and_the_socket_is_theirs() {
    if !need_uids("uids") {
        return;
    }
    let x = setup();
    let mut relay = x.relay("uids", &[WEB], &[]);
    // Root runs the relay and gives the socket to the one uid it lets in.
    let meta = std::fs::symlink_metadata(&relay.socket).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (WEB, 0o600));
    // Another uid cannot even connect; root can, and is refused at its first message (let
    // through, it would have read web's view).
    assert_eq!(
        failed(&ninep(&relay, OTHER, &["read", "/secret/db"])),
        "9p: 9P connection: Permission denied (os error 13)\n"
    );
    refused(&relay, 0);
    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/db"])), DB_VALUE);
    // SIGTERM: a clean exit, the socket removed.
    let status = relay.stop();
    assert_eq!(status.code(), Some(0), "{}", relay.log_text());
    assert!(!relay.socket.exists());
    assert!(relay.log_text().contains("SIGTERM: stopped"));

    // Several uids: the socket is everyone's to connect to, and the uid check decides.
    let relay = x.relay("two", &[WEB, OTHER], &[]);
    let meta = std::fs::symlink_metadata(&relay.socket).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o666));
    assert_eq!(ok(&ninep(&relay, OTHER, &["read", "/secret/db"])), DB_VALUE);
    refused(&relay, 1003);
}

/// `uid` is refused by the relay itself, and the relay logs it.
fn refused(relay: &Relay, uid: u32) {
    assert_eq!(
        failed(&ninep(relay, uid, &["read", "/secret/db"])),
        "9p: permission denied\n",
        "uid {uid}"
    );
    assert!(
        relay.wait_for_log(
            0,
            &format!("refused uid {uid}: not allowed (--allow-uid)"),
            Duration::from_secs(5)
        ),
        "{}",
        relay.log_text()
    );
}

#[test]
fn bad_starts_are_refused_with_what_to_do() {
    let x = setup();
    let ca = x.t.ca.cert();
    let socket = x.socket("refused");
    let missing = PathBuf::from("/nonexistent/relay.pem");
    let mismatched = Identity {
        cert: x.web.cert.clone(),
        key: x.t.admin.key.clone(),
        serial: 0,
    };
    let no_cert = Identity {
        cert: missing.clone(),
        key: x.web.key.clone(),
        serial: 0,
    };
    let cases: Vec<(RelayOptions, &str)> = vec![
        (
            x.options(&socket, &x.t.admin, &[WEB], &[], &ca),
            "its CN is admin, and the relay refuses the admin's certificate: every uid it \
             lets in would be the admin. Administer a remote server with deploy (deploy \
             --addr tls:HOST:PORT",
        ),
        (
            x.options(&socket, &x.web, &[], &[], &ca),
            "give --allow-uid UID for each local user whose processes may use the relay",
        ),
        (
            x.options(&socket, &no_cert, &[WEB], &[], &ca),
            "--cert /nonexistent/relay.pem: cannot read it",
        ),
        (
            x.options(&socket, &mismatched, &[WEB], &[], &ca),
            "is not the key of the certificate in --cert",
        ),
        (
            x.options(&socket, &x.web, &[WEB], &[], &missing),
            "--ca /nonexistent/relay.pem: cannot read it",
        ),
        (
            x.options(&socket, &x.web, &[WEB, 0], &["--max-connections", "1"], &ca),
            "--max-connections 1 is fewer than the 2 uids allowed",
        ),
    ];
    for (options, says) in &cases {
        let out = options.refused();
        let e = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{e}");
        assert!(e.starts_with("srv-secrets: "), "{e}");
        assert!(e.contains(says), "{says}: {e}");
        assert!(!socket.exists(), "{e}");
    }
    let nameless =
        x.t.ca
            .client("nameless", None, srv_secrets_tests::pki::Validity::Current);
    let out = x.options(&socket, &nameless, &[WEB], &[], &ca).refused();
    assert!(
        stderr(&out).contains("the relay needs a service's certificate"),
        "{}",
        stderr(&out)
    );
    // --connect and --listen name what they take.
    let listen = format!("unix:{}", socket.display());
    for (connect, listen, says) in [
        (
            "unix:/run/s.sock",
            listen.as_str(),
            "--connect unix:/run/s.sock: the relay reaches its server over TLS only",
        ),
        (
            "tls:nowhere",
            &listen,
            "--connect tls:nowhere: give tls:HOST:PORT",
        ),
        (
            &x.t.addr,
            "tls:127.0.0.1:1",
            "--listen tls:127.0.0.1:1: the relay listens on a unix socket only",
        ),
    ] {
        let mut cmd = Command::new(&bins().srv_secrets);
        cmd.args(["relay", "--connect", connect, "--listen", listen])
            .arg("--cert")
            .arg(&x.web.cert)
            .arg("--key")
            .arg(&x.web.key)
            .arg("--ca")
            .arg(&ca)
            .args(["--allow-uid", "1001"]);
        let out = cmd.output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        assert!(stderr(&out).contains(says), "{}", stderr(&out));
    }
    // A socket another relay listens on is not taken over.
    let _first = x.relay("refused", &[WEB], &[]);
    let out = x.options(&socket, &x.web, &[WEB], &[], &ca).refused();
    assert!(
        stderr(&out).contains("something already listens there (another relay?)"),
        "{}",
        stderr(&out)
    );
    assert!(socket.exists());
}

#[test]
fn when_the_server_goes_away_clients_get_an_error_promptly_and_the_next_connection_works() {
    if !need_uids("restart") {
        return;
    }
    let mut x = setup();
    let relay = x.relay("restart", &[WEB], &["--connect-timeout", "2"]);
    let patient = x.relay("patient", &[WEB], &["--connect-timeout", "30"]);
    let (held, first) = hold(&relay, WEB, "/secret/db");
    assert_eq!(first.as_bytes(), [b"read ".as_slice(), DB_VALUE].concat());
    // A read that is pending when the server goes: one of /events, which waits for a
    // change.
    let mut follower = ninep_command(&relay, WEB, &["follow", "/events"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(relay.wait_for_log(0, "(connection 2)", Duration::from_secs(5)));
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        follower.try_wait().unwrap().is_none(),
        "the read did not wait"
    );
    let from = relay.log_text().len();
    x.t.s.kill9();
    let killed = Instant::now();
    // It fails, within seconds.
    let status = loop {
        if let Some(status) = follower.try_wait().unwrap() {
            break status;
        }
        if killed.elapsed() > Duration::from_secs(20) {
            let _ = follower.kill();
            panic!("the pending read hung");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = killed.elapsed();
    assert!(!status.success());
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // The held fid's next read fails, within seconds.
    let (after, took) = again_within(held, Duration::from_secs(20));
    let after = after.expect("the held read hung");
    assert!(after.starts_with("error "), "{after}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        relay.wait_for_log(from, "closed the client's", Duration::from_secs(5)),
        "{}",
        relay.log_text()
    );
    // A new connection while the server is down is told why, within the connect timeout.
    let started = Instant::now();
    let e = failed(&ninep(&relay, WEB, &["read", "/secret/db"]));
    let took = started.elapsed();
    assert!(
        e.starts_with(&format!(
            "9p: srv-secrets relay: {}: cannot reach the server (",
            x.t.addr
        )),
        "{e}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    // A connection made while the server is down waits for it, within its connect
    // timeout, and is served once it is back.
    let waiting = ninep_command(&patient, WEB, &["read", "/secret/db"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    x.t.serve();
    assert_eq!(ok(&waiting.wait_with_output().unwrap()), DB_VALUE);
    // And a new one, through the relay that gave up before.
    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/db"])), DB_VALUE);
    x.no_values_logged(&relay);
}

#[test]
fn a_certificate_the_server_refuses_is_said_to_the_client() {
    if !need_uids("revoked") {
        return;
    }
    let x = setup();
    let relay = x.relay("revoked", &[WEB], &[]);
    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/db"])), DB_VALUE);
    x.t.ca.write_crl(&x.t.crl, &[&x.web]);
    let from = x.t.s.log_text().len();
    x.t.s.signal(rustix::process::Signal::HUP);
    assert!(x.t.s.wait_for_log(
        from,
        "SIGHUP: reloaded the TLS material",
        Duration::from_secs(5)
    ));
    let e = failed(&ninep(&relay, WEB, &["read", "/secret/db"]));
    assert_eq!(
        e,
        format!(
            "9p: srv-secrets relay: {}: the server refused the certificate in --cert: it is \
             revoked (the server's --crl)\n",
            x.t.addr
        )
    );
    assert!(
        relay
            .log_text()
            .contains("the server refused the certificate in --cert: it is revoked"),
        "{}",
        relay.log_text()
    );
}

#[test]
fn sighup_reloads_the_certificate_and_an_admin_one_is_refused_then_too() {
    if !need_uids("sighup") {
        return;
    }
    let x = setup();
    x.t.s.add_service("api", OTHER, None);
    let out =
        x.t.s
            .deploy_with_stdin(&["secret", "set", "other"], b"api-only");
    assert!(out.status.success());
    x.t.s.deploy_ok(&["secret", "grant", "api", "other"]);
    // The relay's own copies of web's files, to be written over.
    let dir = x.t.s.root.path().join("relay-files");
    std::fs::create_dir(&dir).unwrap();
    let own = Identity {
        cert: dir.join("relay.crt"),
        key: dir.join("relay.key"),
        serial: 0,
    };
    let put = |from: &Identity| {
        std::fs::copy(&from.cert, &own.cert).unwrap();
        std::fs::copy(&from.key, &own.key).unwrap();
    };
    put(&x.web);
    let socket = x.socket("sighup");
    let ca = x.t.ca.cert();
    let relay = x
        .options(&socket, &own, &[WEB], &[], &ca)
        .start(&x.t.s.root.path().join("relay-sighup.log"));
    let (mut held, _) = hold(&relay, WEB, "/secret/db");
    let hup = |says: &str| {
        let from = relay.log_text().len();
        relay.signal(rustix::process::Signal::HUP);
        assert!(
            relay.wait_for_log(from, says, Duration::from_secs(5)),
            "{}",
            relay.log_text()
        );
    };
    // An admin certificate is refused on reload as at start; web's stays in use.
    put(&x.t.admin);
    hup("SIGHUP: keeping the certificate in use, the new one is refused: --cert");
    assert!(relay.log_text().contains("its CN is admin"));
    assert_eq!(ok(&ninep(&relay, WEB, &["read", "/secret/db"])), DB_VALUE);
    // Another service's: new connections are that service; the open one goes on.
    put(&x.t.client("api", "api"));
    hup("SIGHUP: reloaded --cert, --key and --ca (service api)");
    assert_eq!(
        ok(&ninep(&relay, WEB, &["read", "/secret/other"])),
        b"api-only"
    );
    assert_eq!(
        failed(&ninep(&relay, WEB, &["read", "/secret/db"])),
        "9p: file does not exist\n"
    );
    assert_eq!(
        held.again().as_bytes(),
        [b"read ".as_slice(), DB_VALUE].concat()
    );
}

#[test]
fn connections_are_bounded_per_uid_and_a_stalled_client_slows_no_one() {
    if !need_uids("bounds") {
        return;
    }
    let x = setup();
    let relay = x.relay("bounds", &[0, WEB], &["--max-connections", "4"]);
    // Root's share (2): a client that sends half a message and stalls, and one that sends
    // nothing at all.
    let mut half = std::os::unix::net::UnixStream::connect(&relay.socket).unwrap();
    half.write_all(&[19, 0, 0, 0, 100]).unwrap();
    let _silent = std::os::unix::net::UnixStream::connect(&relay.socket).unwrap();
    // Web's share is its own, and web is served at once.
    let started = Instant::now();
    let (held_a, _) = hold(&relay, WEB, "/secret/db");
    let (held_b, _) = hold(&relay, WEB, "/secret/db");
    assert!(started.elapsed() < Duration::from_secs(5));
    // Past its share, web is told so.
    assert_eq!(
        failed(&ninep(&relay, WEB, &["read", "/secret/db"])),
        "9p: srv-secrets relay: uid 1001 has its 2 connections through the relay already\n"
    );
    // A connection ended gives its slot back.
    drop(held_a);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let out = ninep(&relay, WEB, &["read", "/secret/db"]);
        if out.status.success() {
            assert_eq!(out.stdout, DB_VALUE);
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&out));
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(held_b);
    // Root is past its share too, with its two stalled connections.
    let mut third = std::os::unix::net::UnixStream::connect(&relay.socket).unwrap();
    third
        .write_all(
            &ninep::Tframe {
                tag: ninep::NOTAG,
                msg: ninep::Tmessage::Version(ninep::Tversion {
                    msize: 8192,
                    version: "9P2000".into(),
                }),
            }
            .to_bytes(),
        )
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut third, &mut reply)
        .unwrap_or_else(|e| panic!("{e}: {}", relay.log_text()));
    let reply = ninep::Rframe::decode(&reply).unwrap();
    assert_eq!(
        reply.msg,
        ninep::Rmessage::error(
            "srv-secrets relay: uid 0 has its 2 connections through the relay already"
        )
    );
}

/// The guest's half of the kernel test: prints `CHECK` lines for the host, and waits on
/// the host between steps by polling the mount.
const SCRIPT: &str = r#"
cd /mnt
echo "CHECK ls_secret=$(ls secret | tr '\n' ' ')"
echo "CHECK mode=$(stat -c '%a %u %g' secret/db)"
echo "CHECK web_reads=$(su web -c 'cat /mnt/secret/db')"
exec 3< secret/db
echo "CHECK held=$(cat <&3)"
echo READY-REVOKE
i=0
while cat <&3 >/dev/null 2>/tmp/err; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "CHECK revoked=never"; break; }
  usleep 100000
done
echo "CHECK revoked=$(cat /tmp/err)"
exec 3<&-
cat secret/db >/dev/null 2>/tmp/err; echo "CHECK reopen=$(cat /tmp/err)"
echo "CHECK still=$(ls config | tr '\n' ' ')ok"
echo READY-KILL
start=$(date +%s)
i=0
while ls secret >/dev/null 2>/tmp/err; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "CHECK killed=never"; break; }
  usleep 100000
done
echo "CHECK killed=$(( $(date +%s) - start )) $(cat /tmp/err)"
cd /
"#;

fn checks(output: &str) -> Vec<(String, String)> {
    output
        .lines()
        .filter_map(|l| l.strip_prefix("CHECK "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_end().to_string()))
        .collect()
}

fn check<'a>(all: &'a [(String, String)], key: &str) -> &'a str {
    all.iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no CHECK {key} in {all:?}"))
}

#[test]
fn kernel_v9fs_mounts_through_the_relay_and_sees_a_revoke_and_the_server_go() {
    if !require_or_skip("kernel_v9fs_mounts_through_the_relay_and_sees_a_revoke_and_the_server_go")
    {
        return;
    }
    let mut x = setup();
    // qemu, as root, makes the VM's one 9P connection: the uid the relay lets in.
    let relay = x.relay("kernel", &[0], &["--connect-timeout", "2"]);
    let mut vm = KernelMount::unix(&relay.socket)
        .version("9p2000")
        .mount_opts("dfltuid=1001,dfltgid=1001,cache=none,ro,nosuid,nodev,noexec")
        .timeout(Duration::from_secs(180))
        .spawn(SCRIPT)
        .expect("the VM starts");
    vm.wait_for_line("READY-REVOKE", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    x.t.s.deploy_ok(&["secret", "revoke", "web", "db"]);
    vm.wait_for_line("READY-KILL", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    x.t.s.kill9();
    let run = vm.wait().expect("the guest finishes");
    let all = checks(&run.output);
    let ctx = &run.output;
    eprintln!("the guest said:\n{ctx}");
    assert_eq!(run.exit_code, 0, "{ctx}");
    assert_eq!(check(&all, "ls_secret"), "db", "{ctx}");
    assert_eq!(check(&all, "mode"), "400 1001 1001", "{ctx}");
    assert_eq!(check(&all, "web_reads").as_bytes(), DB_VALUE, "{ctx}");
    assert_eq!(check(&all, "held").as_bytes(), DB_VALUE, "{ctx}");
    assert!(
        check(&all, "revoked").contains("No such file or directory"),
        "{ctx}"
    );
    assert!(
        check(&all, "reopen").contains("No such file or directory"),
        "{ctx}"
    );
    assert_eq!(check(&all, "still"), "ok", "{ctx}");
    // The server killed: the mount's next request fails within seconds, not a hang.
    let killed = check(&all, "killed");
    let (secs, error) = killed.split_once(' ').expect(ctx);
    assert!(secs.parse::<u64>().unwrap() <= 5, "{ctx}");
    assert!(!error.is_empty(), "{ctx}");
    assert!(
        relay.log_text().contains("uid 0 connected (connection 1)"),
        "{}",
        relay.log_text()
    );
    x.no_values_logged(&relay);
}
