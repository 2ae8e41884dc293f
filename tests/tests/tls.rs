//! 9P (and the HTTP API) over TLS with client certificates, end to end: the real server
//! on 127.0.0.1, the `9p` test client and `deploy` as its clients, certificates made by a
//! CA of the test's own (tests/src/pki.rs).
//!
//! The principal is the verified certificate's Common Name; certificates that name no
//! one, expired ones, ones of another CA and revoked ones are refused, each with its
//! reason to the client and a line in the log; SIGHUP reloads the server's certificate,
//! the client CA and the CRL without dropping connections; plain TCP is refused unless
//! allowed on loopback; bytes that are not TLS on the TLS port disturb no one.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{
    CURL, Held, SecretsServer, bins, can_curl, run_with_stdin, stderr, stdout,
};
use srv_secrets_tests::pki::{Ca, Identity, Validity};

const WEB: u32 = 1001;
const API: u32 = 1002;
const DB_VALUE: &[u8] = b"s3cr3t-db-password";
const OTHER_VALUE: &[u8] = b"api-only-value";

/// A server with a TLS listener beside its unix socket, and the certificates of its
/// clients.
struct Tls {
    s: SecretsServer,
    ca: Ca,
    /// The listener, `tls:127.0.0.1:PORT`.
    addr: String,
    server_cert: PathBuf,
    server_key: PathBuf,
    crl: PathBuf,
    admin: Identity,
    web: Identity,
}

impl Tls {
    /// Started with `--listen tls:127.0.0.1:0` (and `extra` arguments), services web
    /// (granted db) and api (granted other) set up over the unix socket.
    fn start(extra: &[&str]) -> Tls {
        let mut s = SecretsServer::init();
        let dir = s.root.path().join("pki");
        std::fs::create_dir(&dir).unwrap();
        let ca = Ca::new(&dir, "ca");
        let server = ca.server("server", "srv-secrets", &["127.0.0.1", "srv.test"]);
        let admin = ca.client("admin", Some("admin"), Validity::Current);
        let web = ca.client("web", Some("web"), Validity::Current);
        let crl = dir.join("ca.crl");
        ca.write_crl(&crl, &[]);
        s.args = [
            "--listen",
            "tls:127.0.0.1:0",
            "--tls-cert",
            server.cert.to_str().unwrap(),
            "--tls-key",
            server.key.to_str().unwrap(),
            "--client-ca",
            ca.cert().to_str().unwrap(),
            "--crl",
            crl.to_str().unwrap(),
        ]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
        s.serve();
        let addr = s.listening_on("tls:", 0);
        s.add_service("web", WEB, None);
        s.add_service("api", API, None);
        s.deploy_with_stdin(&["secret", "set", "db"], DB_VALUE);
        s.deploy_with_stdin(&["secret", "set", "other"], OTHER_VALUE);
        s.deploy_ok(&["secret", "grant", "web", "db"]);
        s.deploy_ok(&["secret", "grant", "api", "other"]);
        Tls {
            s,
            ca,
            addr,
            server_cert: server.cert,
            server_key: server.key,
            crl,
            admin,
            web,
        }
    }

    /// `9p --addr tls:... --ca CA [--cert --key] [--aname A] ARGS`.
    fn ninep_command(&self, who: Option<&Identity>, aname: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&bins().ninep);
        cmd.args(["--addr", &self.addr])
            .arg("--ca")
            .arg(self.ca.cert())
            .args(["--aname", aname]);
        if let Some(id) = who {
            cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
        }
        cmd.args(args);
        cmd
    }

    fn ninep(&self, who: Option<&Identity>, aname: &str, args: &[&str]) -> Output {
        run_with_stdin(self.ninep_command(who, aname, args), b"")
    }

    /// `deploy --addr tls:... --ca CA [--cert --key] ARGS`.
    fn deploy(&self, ca: &Path, who: Option<&Identity>, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = Command::new(&bins().deploy);
        cmd.args(["--addr", &self.addr]).arg("--ca").arg(ca);
        if let Some(id) = who {
            cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
        }
        cmd.args(args);
        run_with_stdin(cmd, stdin)
    }

    fn deploy_as(&self, who: Option<&Identity>, args: &[&str]) -> Output {
        self.deploy(&self.ca.cert(), who, args, b"")
    }

    fn log_len(&self) -> usize {
        self.s.log_text().len()
    }

    /// Waits for `needle` in the log after `from`, failing with the log if it never comes.
    fn logged(&self, from: usize, needle: &str) {
        assert!(
            self.s.wait_for_log(from, needle, Duration::from_secs(5)),
            "the log lacks {needle:?}: {}",
            &self.s.log_text()[from..]
        );
    }

    fn sighup(&self, reloaded: &str) {
        let from = self.log_len();
        self.s.signal(rustix::process::Signal::HUP);
        self.logged(from, reloaded);
    }

    /// Holds `path` open over TLS as `who`: reads it again at each `again`.
    fn hold(&self, who: &Identity, path: &str) -> (Held, String) {
        let mut cmd = self.ninep_command(Some(who), "", &["hold", path]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Held::spawn(cmd.spawn().unwrap())
    }

    /// Nothing a client read or wrote as a value is in the log.
    fn no_values_in_the_log(&self) {
        let log = self.s.log_text();
        for value in [DB_VALUE, OTHER_VALUE] {
            assert!(
                !log.contains(std::str::from_utf8(value).unwrap()),
                "a value is in the log"
            );
        }
    }
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        stdout(out),
        stderr(out)
    );
    stdout(out)
}

fn failed(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", stdout(out));
    stderr(out)
}

#[test]
fn a_service_reads_its_granted_secret_over_tls_and_sees_only_its_view() {
    let t = Tls::start(&[]);
    let web = Some(&t.web);
    assert_eq!(
        ok(&t.ninep(web, "", &["read", "/secret/db"])).as_bytes(),
        DB_VALUE
    );
    assert_eq!(ok(&t.ninep(web, "", &["ls", "/secret"])), "db\n");
    assert_eq!(
        failed(&t.ninep(web, "", &["read", "/secret/other"])),
        "9p: file does not exist\n"
    );
    // Another service's view and the admin tree are refused, by name or not.
    for aname in ["api", "secrets"] {
        assert_eq!(
            failed(&t.ninep(web, aname, &["ls", "/"])),
            "9p: permission denied\n",
            "{aname}"
        );
    }
    // Asking for the admin tree by its name says what it takes, and nothing more.
    assert_eq!(
        failed(&t.ninep(web, "admin", &["ls", "/"])),
        "9p: permission denied: a service's certificate or token; the admin tree takes the \
         admin's\n"
    );
    // The admin's certificate gets the admin tree; no certificate gets nothing.
    assert!(ok(&t.ninep(Some(&t.admin), "", &["ls", "/secrets"])).contains("ctl\n"));
    assert_eq!(
        failed(&t.ninep(None, "", &["ls", "/"])),
        "9p: authentication required: Tauth, write the credential to the afid, then Tattach with it\n"
    );
    // deploy's view of a service works over TLS with the service's own certificate.
    let out = t.deploy_as(web, &["secret", "get", "db", "--as", "web"]);
    assert_eq!(ok(&out).as_bytes(), DB_VALUE);
    t.no_values_in_the_log();
}

/// A token made over the unix socket with `deploy token create ARGS`, in a file of its
/// own (mode 0600), and its ID.
fn token_file(t: &Tls, name: &str, args: &[&str]) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let out = t.s.deploy(&[&["token", "create"][..], args].concat());
    let token = ok(&out);
    let path = t.s.root.path().join(name);
    std::fs::write(&path, &token).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    // srvtok_ID_SECRET: the ID is the 16 characters after the prefix.
    let id = token["srvtok_".len().."srvtok_".len() + 16].to_string();
    (path, id)
}

#[test]
fn over_tls_without_a_certificate_a_token_says_who_connects() {
    let t = Tls::start(&[]);
    let (admin_token, admin_id) = token_file(&t, "admin.token", &["admin"]);
    let (web_token, _) = token_file(&t, "web.token", &["web"]);
    let with_token = |file: &Path, args: &[&str]| {
        let mut cmd = Command::new(&bins().deploy);
        cmd.args(["--addr", &t.addr])
            .arg("--ca")
            .arg(t.ca.cert())
            .arg("--token-file")
            .arg(file)
            .args(args);
        run_with_stdin(cmd, b"")
    };
    // The admin's token is the admin, over TLS as over TCP.
    let list = ok(&with_token(&admin_token, &["secret", "list"]));
    assert!(list.contains("db"), "{list}");
    // A service's token reads its own secret, and is no admin: said in terms of tokens.
    let got = ok(&with_token(
        &web_token,
        &["secret", "get", "db", "--as", "web"],
    ));
    assert_eq!(got.as_bytes(), DB_VALUE);
    let e = failed(&with_token(&web_token, &["secret", "list"]));
    assert!(
        e.contains("admin commands need a token made for the admin"),
        "{e}"
    );
    // A certificate is the identity: a token beside it is refused before connecting.
    let mut cmd = Command::new(&bins().deploy);
    cmd.args(["--addr", &t.addr])
        .arg("--ca")
        .arg(t.ca.cert())
        .arg("--cert")
        .arg(&t.admin.cert)
        .arg("--key")
        .arg(&t.admin.key)
        .arg("--token-file")
        .arg(&admin_token)
        .args(["secret", "list"]);
    let out = run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("not both"), "{}", stderr(&out));
    // Revoked, the token is refused at the next attach.
    ok(&t.s.deploy(&["token", "revoke", &admin_id]));
    let e = failed(&with_token(&admin_token, &["secret", "list"]));
    assert!(e.contains("the server refused the token in"), "{e}");
    t.no_values_in_the_log();
    let log = t.s.log_text();
    let secret = std::fs::read_to_string(&admin_token).unwrap();
    assert!(!log.contains(secret.trim_end()), "a token is in the log");
}

#[test]
fn a_context_saves_the_tls_flags_and_the_flags_given_beside_it_still_win() {
    let t = Tls::start(&[]);
    let config = t.s.root.path().join("config");
    let deploy = |env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = Command::new(&bins().deploy);
        cmd.env("XDG_CONFIG_HOME", &config)
            .env_remove("SRV_SECRETS_ADDR")
            .env_remove("SRV_SECRETS_CONTEXT")
            .envs(env.iter().copied())
            .args(args);
        run_with_stdin(cmd, b"")
    };
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let ca = path(&t.ca.cert());
    let (admin_token, _) = token_file(&t, "admin.token", &["admin"]);
    ok(&deploy(
        &[],
        &[
            "context",
            "add",
            "prod",
            "--addr",
            &t.addr,
            "--ca",
            &ca,
            "--cert",
            &path(&t.admin.cert),
            "--key",
            &path(&t.admin.key),
        ],
    ));
    ok(&deploy(
        &[],
        &[
            "context",
            "add",
            "tok",
            "--addr",
            &t.addr,
            "--ca",
            &ca,
            "--token-file",
            &path(&admin_token),
        ],
    ));
    // The file names the token's file, never the token.
    let saved = std::fs::read_to_string(config.join("srv-secrets/contexts.toml")).unwrap();
    let token = std::fs::read_to_string(&admin_token).unwrap();
    assert!(
        !saved.contains(token.trim_end()) && saved.contains("token_file"),
        "{saved}"
    );
    // Each is the admin, by --context or SRV_SECRETS_CONTEXT.
    for name in ["prod", "tok"] {
        let list = ok(&deploy(&[], &["--context", name, "secret", "list"]));
        assert!(list.contains("db"), "{name}: {list}");
        let status = ok(&deploy(&[("SRV_SECRETS_CONTEXT", name)], &["status"]));
        assert!(status.contains(&t.addr), "{status}");
    }
    // A certificate given beside the token's context replaces its token: web's view,
    // and web is no admin.
    let web = [
        "--context",
        "tok",
        "--cert",
        &path(&t.web.cert),
        "--key",
        &path(&t.web.key),
    ];
    let got = ok(&deploy(
        &[],
        &[&web[..], &["secret", "get", "db", "--as", "web"]].concat(),
    ));
    assert_eq!(got.as_bytes(), DB_VALUE);
    let e = failed(&deploy(&[], &[&web[..], &["secret", "list"]].concat()));
    assert!(e.contains("(CN web) for the admin"), "{e}");
    // --ca beside it replaces the context's CA only: a CA that did not issue the
    // server's certificate is refused at the handshake.
    let other = Ca::new(&t.s.root.path().join("pki"), "other-ca");
    let e = failed(&deploy(
        &[],
        &["--context", "prod", "--ca", &path(&other.cert()), "status"],
    ));
    assert!(e.contains("cannot connect to srv-secrets at tls:"), "{e}");
    // A context whose file is gone says which, before connecting.
    let moved = t.s.root.path().join("admin-moved.key");
    std::fs::copy(&t.admin.key, &moved).unwrap();
    ok(&deploy(
        &[],
        &[
            "context",
            "add",
            "gone",
            "--addr",
            &t.addr,
            "--ca",
            &ca,
            "--cert",
            &path(&t.admin.cert),
            "--key",
            &path(&moved),
        ],
    ));
    std::fs::remove_file(&moved).unwrap();
    let e = failed(&deploy(&[], &["--context", "gone", "status"]));
    assert_eq!(
        e,
        format!(
            "deploy: context gone: its --key file {} no longer exists; put it back, give --key \
             FILE on the command line, or save the context again with: deploy context add gone \
             --force --addr ADDR ...\n",
            moved.display()
        )
    );
    let shown = ok(&deploy(&[], &["context", "show", "gone"]));
    assert!(shown.contains("(no longer exists)"), "{shown}");
}

#[test]
fn the_admin_manages_secrets_over_tls_with_deploy() {
    let t = Tls::start(&[]);
    let admin = Some(&t.admin);
    let set = t.deploy(
        &t.ca.cert(),
        admin,
        &["secret", "set", "tls_made"],
        b"from afar",
    );
    ok(&set);
    ok(&t.deploy_as(admin, &["secret", "grant", "web", "tls_made"]));
    let list = ok(&t.deploy_as(admin, &["secret", "list"]));
    assert!(list.contains("tls_made"), "{list}");
    assert_eq!(t.s.get_as("tls_made", "web"), b"from afar");
    // SRV_SECRETS_ADDR names a TLS server as it does a socket.
    let mut cmd = Command::new(&bins().deploy);
    cmd.env("SRV_SECRETS_ADDR", &t.addr)
        .arg("--ca")
        .arg(t.ca.cert())
        .arg("--cert")
        .arg(&t.admin.cert)
        .arg("--key")
        .arg(&t.admin.key)
        .args(["service", "list"]);
    let services = ok(&run_with_stdin(cmd, b""));
    assert!(services.contains("web"), "{services}");
    // A service's certificate, or none, is not the admin: said in terms of --cert.
    let e = failed(&t.deploy_as(Some(&t.web), &["secret", "list"]));
    assert_eq!(
        e,
        format!(
            "deploy: cannot connect to srv-secrets at {}: the server does not take the \
             certificate in --cert (CN web) for the admin: admin commands need a certificate \
             whose CN is admin\n",
            t.addr
        )
    );
    let e = failed(&t.deploy_as(None, &["secret", "list"]));
    assert!(
        e.contains("the server knows no one on this connection: give --cert and --key"),
        "{e}"
    );
    // Without --ca there is no TLS at all.
    let mut cmd = Command::new(&bins().deploy);
    cmd.args(["--addr", &t.addr, "secret", "list"]);
    let out = run_with_stdin(cmd, b"");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("needs --ca FILE"), "{}", stderr(&out));
}

#[test]
fn bad_certificates_are_refused_with_their_reason_and_a_log_line() {
    let t = Tls::start(&[]);
    let other_ca = Ca::new(&t.s.root.path().join("pki"), "other-ca");
    let cases = [
        (
            t.ca.client("expired", Some("admin"), Validity::Expired),
            "the server refused the certificate in --cert: it has expired",
            "TLS handshake refused: its certificate has expired",
        ),
        (
            other_ca.client("foreign", Some("admin"), Validity::Current),
            "the server refused the certificate in --cert: it is not issued by a CA the server \
             trusts",
            "TLS handshake refused: its certificate is not issued by a CA in --client-ca",
        ),
        (
            t.ca.client("misnamed", Some("not a name"), Validity::Current),
            "the server refused the certificate in --cert: its subject's Common Name (CN) must \
             be admin or a service's name",
            "TLS handshake refused: its certificate names no principal",
        ),
        (
            t.ca.client("nameless", None, Validity::Current),
            "the server refused the certificate in --cert: its subject's Common Name (CN) must \
             be admin or a service's name",
            "TLS handshake refused: its certificate names no principal",
        ),
        (
            t.ca.client("ghost", Some("ghost"), Validity::Current),
            "the server does not take the certificate in --cert (CN ghost) for the admin",
            "attach refused: the client certificate names neither admin nor a service",
        ),
    ];
    for (id, told, logged) in &cases {
        let from = t.log_len();
        let e = failed(&t.deploy_as(Some(id), &["status"]));
        assert!(
            e.starts_with(&format!(
                "deploy: cannot connect to srv-secrets at {}: ",
                t.addr
            )),
            "{e}"
        );
        assert!(e.contains(told), "{e}");
        t.logged(from, logged);
        // The plain client is refused too, and gets nothing.
        let out = t.ninep(Some(id), "", &["read", "/secret/db"]);
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
    }
    // A client that does not trust the server's certificate, or reached it by a name that
    // is not the certificate's, is told so; the server's log says the client gave up.
    let from = t.log_len();
    let e = failed(&t.deploy(&other_ca.cert(), Some(&t.admin), &["status"], b""));
    assert!(
        e.contains("the server's certificate is not issued by the CA in --ca"),
        "{e}"
    );
    t.logged(
        from,
        "TLS handshake refused: it refused this server's certificate",
    );
    let port = t.addr.rsplit_once(':').unwrap().1;
    let mut cmd = Command::new(&bins().deploy);
    cmd.args(["--addr", &format!("tls:localhost:{port}")])
        .arg("--ca")
        .arg(t.ca.cert())
        .arg("--cert")
        .arg(&t.admin.cert)
        .arg("--key")
        .arg(&t.admin.key)
        .arg("status");
    let e = failed(&run_with_stdin(cmd, b""));
    assert!(
        e.contains(
            "the server's certificate is for 127.0.0.1, srv.test, not localhost: connect by \
             one of those names"
        ),
        "{e}"
    );
    // The admin is still served, and nothing was ever let through.
    ok(&t.deploy_as(Some(&t.admin), &["status"]));
    t.no_values_in_the_log();
}

#[test]
fn a_revoked_certificate_is_refused_after_sighup_while_open_connections_go_on() {
    let t = Tls::start(&[]);
    let (mut held, first) = t.hold(&t.web, "/secret/db");
    assert_eq!(first.as_bytes(), [b"read ".as_slice(), DB_VALUE].concat());
    let reader = ["secret", "get", "db", "--as", "web"];
    assert_eq!(ok(&t.deploy_as(Some(&t.web), &reader)).as_bytes(), DB_VALUE);
    // A CRL that cannot be read is refused on SIGHUP; the old one stays in force.
    std::fs::write(&t.crl, "not a CRL").unwrap();
    t.sighup("SIGHUP: keeping the TLS material in use, the new one is refused: --crl");
    assert_eq!(ok(&t.deploy_as(Some(&t.web), &reader)).as_bytes(), DB_VALUE);
    // Revoked: the next handshake is refused, with its reason and a log line.
    t.ca.write_crl(&t.crl, &[&t.web]);
    t.sighup("SIGHUP: reloaded the TLS material");
    let from = t.log_len();
    let e = failed(&t.deploy_as(Some(&t.web), &reader));
    assert!(
        e.contains("the server refused the certificate in --cert: it is revoked"),
        "{e}"
    );
    t.logged(
        from,
        "TLS handshake refused: its certificate is revoked (--crl)",
    );
    // The connection opened before the reload goes on; so does the admin.
    assert_eq!(
        held.again().as_bytes(),
        [b"read ".as_slice(), DB_VALUE].concat()
    );
    ok(&t.deploy_as(Some(&t.admin), &["status"]));
}

#[test]
fn the_servers_certificate_is_rotated_on_sighup_without_dropping_a_connection() {
    let t = Tls::start(&[]);
    let (mut held, _) = t.hold(&t.web, "/secret/db");
    // The new certificate is from another CA, so that which one is served shows.
    let new_ca = Ca::new(&t.s.root.path().join("pki"), "new-ca");
    let next = new_ca.server("server2", "srv-secrets-2", &["127.0.0.1"]);
    std::fs::copy(&next.cert, &t.server_cert).unwrap();
    std::fs::copy(&next.key, &t.server_key).unwrap();
    t.sighup("SIGHUP: reloaded the TLS material");
    t.logged(0, "subject=CN=srv-secrets-2");
    ok(&t.deploy(&new_ca.cert(), Some(&t.admin), &["status"], b""));
    let e = failed(&t.deploy_as(Some(&t.admin), &["status"]));
    assert!(
        e.contains("the server's certificate is not issued by the CA in --ca"),
        "{e}"
    );
    assert_eq!(
        held.again().as_bytes(),
        [b"read ".as_slice(), DB_VALUE].concat()
    );
    // A key that is not the certificate's is refused, and the rotated pair stays.
    let stray = new_ca.server("stray", "stray", &["127.0.0.1"]);
    std::fs::copy(&stray.key, &t.server_key).unwrap();
    t.sighup("is not the key of the certificate in --tls-cert");
    ok(&t.deploy(&new_ca.cert(), Some(&t.admin), &["status"], b""));
    assert_eq!(
        held.again().as_bytes(),
        [b"read ".as_slice(), DB_VALUE].concat()
    );
}

/// `srv-secrets serve` with `args` (beside a data directory of its own), expected to
/// refuse to start: its stderr.
fn serve_refused(args: &[&str]) -> String {
    let s = SecretsServer::init();
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "started: {}", stderr(&out));
    stderr(&out)
}

#[test]
fn plain_tcp_is_refused_without_the_flag_and_off_loopback_and_knows_no_one() {
    let e = serve_refused(&["--listen", "tcp:127.0.0.1:0"]);
    assert!(
        e.starts_with(
            "srv-secrets: --listen tcp:127.0.0.1:0: plain TCP proves nothing of who connects"
        ),
        "{e}"
    );
    assert!(e.contains("--insecure-plain-tcp"), "{e}");
    let e = serve_refused(&["--listen", "tcp:0.0.0.0:0", "--insecure-plain-tcp"]);
    assert!(
        e.contains("--insecure-plain-tcp allows only loopback addresses"),
        "{e}"
    );
    let e = serve_refused(&["--listen", "tls:127.0.0.1:0"]);
    assert!(
        e.contains("a tls: listener needs --tls-cert, --tls-key and --client-ca"),
        "{e}"
    );
    // Allowed on loopback, a connection is served as far as attach, and is no one.
    let mut s = SecretsServer::init();
    s.args = ["--listen", "tcp:127.0.0.1:0", "--insecure-plain-tcp"]
        .map(String::from)
        .to_vec();
    s.serve();
    let addr = s.listening_on("tcp:", 0);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let attached = rt.block_on(async {
        let client = ninep::client::Client::connect_tcp(addr.strip_prefix("tcp:").unwrap())
            .await
            .unwrap();
        client.attach("root", "").await.map(|_| ())
    });
    let e = attached.unwrap_err();
    assert!(
        e.remote()
            .is_some_and(|r| r.starts_with("authentication required")),
        "{e}"
    );
}

#[test]
fn bytes_that_are_not_tls_on_the_tls_port_delay_no_one() {
    let t = Tls::start(&[]);
    let port: u16 = t.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    // Far more connections than there are handshake slots: silent ones, ones that send
    // HTTP, ones that begin a TLS record and stop.
    let mut flood = Vec::new();
    for i in 0..300 {
        let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        match i % 3 {
            0 => {}
            1 => {
                let _ = c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
            }
            _ => {
                let _ = c.write_all(&[0x16, 0x03, 0x01, 0x40, 0x00, 0x01]);
            }
        }
        flood.push(c);
    }
    // A unix client and a TLS one are each served within a second (the TLS one pays for
    // starting deploy, too: two).
    let started = Instant::now();
    let out = t.s.ninep_as(WEB, "", &["read", "/secret/db"]);
    let unix = started.elapsed();
    assert_eq!(ok(&out).as_bytes(), DB_VALUE);
    assert!(
        unix < Duration::from_secs(1),
        "unix client served in {unix:?}"
    );
    let started = Instant::now();
    ok(&t.deploy_as(Some(&t.admin), &["status"]));
    let tls = started.elapsed();
    assert!(tls < Duration::from_secs(2), "TLS client served in {tls:?}");
    eprintln!("during a flood of 300 connections: unix read {unix:?}, TLS deploy status {tls:?}");
    // None of it is worth more than a debug line.
    assert!(!t.s.log_text().contains("WARN"), "{}", t.s.log_text());
    drop(flood);
}

#[test]
fn the_http_api_over_tls_serves_the_admins_certificate_only() {
    if !can_curl("the_http_api_over_tls_serves_the_admins_certificate_only") {
        return;
    }
    let t = Tls::start(&["--http", "tls:127.0.0.1:0"]);
    let http = t.s.http_on("tls:", 0);
    let url = format!(
        "https://{}/health/ready",
        http.strip_prefix("tls:").unwrap()
    );
    let curl = |who: Option<&Identity>| {
        let mut cmd = Command::new(CURL);
        cmd.args(["--silent", "--cacert"]).arg(t.ca.cert());
        if let Some(id) = who {
            cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
        }
        cmd.args(["--write-out", "\n%{http_code}", &url]);
        let out = cmd.output().unwrap();
        let text = stdout(&out);
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_string(), body.to_string())
    };
    let (code, body) = curl(Some(&t.admin));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains("\"ready\":true"), "{body}");
    let (code, body) = curl(Some(&t.web));
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("a client certificate whose CN is admin"),
        "{body}"
    );
    // No certificate: a token is needed (tests below), and its absence is a 401.
    let (code, body) = curl(None);
    assert_eq!(code, "401", "{body}");
    assert!(body.contains("send Authorization: Bearer TOKEN"), "{body}");
}

/// The API over TLS as curl sees it: `curl -s -i --cacert CA [--cert --key] [-H @FILE]
/// ARGS`, the token (if any) read by curl from a header file, never from its command line.
struct Api<'a> {
    t: &'a Tls,
    /// `https://127.0.0.1:PORT`.
    base: String,
}

/// One answer: status, headers (lowercase names) and body.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

impl Api<'_> {
    fn command(&self, cert: Option<&Identity>, header: Option<&Path>, args: &[&str]) -> Command {
        let mut cmd = Command::new(CURL);
        cmd.args(["--silent", "--cacert"]).arg(self.t.ca.cert());
        if let Some(id) = cert {
            cmd.arg("--cert").arg(&id.cert).arg("--key").arg(&id.key);
        }
        if let Some(file) = header {
            // curl reads the header lines from FILE (curl 7.55 and later).
            cmd.arg("--header").arg(format!("@{}", file.display()));
        }
        cmd.args(args);
        cmd
    }

    fn ask(&self, cert: Option<&Identity>, header: Option<&Path>, path: &str) -> Answer {
        self.ask_with(cert, header, &[], path)
    }

    fn ask_with(
        &self,
        cert: Option<&Identity>,
        header: Option<&Path>,
        args: &[&str],
        path: &str,
    ) -> Answer {
        let url = format!("{}{path}", self.base);
        let mut cmd = self.command(cert, header, args);
        cmd.args(["--include", &url]);
        let out = cmd.output().unwrap();
        let text = stdout(&out);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no answer: {text}{}", stderr(&out)));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("no status: {head}"));
        Answer {
            status,
            headers: head.to_ascii_lowercase(),
            body: body.to_string(),
        }
    }

    /// Each answer's status and whether curl opened a connection for it, for `urls`
    /// fetched by one curl (which keeps a connection alive while the server does).
    fn connections(&self, header: Option<&Path>, paths: &[&str]) -> Vec<(String, String)> {
        let mut cmd = self.command(None, header, &[]);
        for path in paths {
            cmd.args(["--output", "/dev/null"])
                .arg(format!("{}{path}", self.base));
        }
        cmd.args(["--write-out", "%{http_code} %{num_connects}\n"]);
        let out = cmd.output().unwrap();
        stdout(&out)
            .lines()
            .map(|l| {
                let (code, connects) = l.split_once(' ').unwrap();
                (code.to_string(), connects.to_string())
            })
            .collect()
    }
}

/// `Authorization: Bearer TOKEN` in a file of its own, mode 0600, for `curl -H @FILE`.
fn bearer_header(t: &Tls, name: &str, token_file: &Path) -> (PathBuf, String) {
    use std::os::unix::fs::PermissionsExt;
    let token = std::fs::read_to_string(token_file)
        .unwrap()
        .trim_end()
        .to_string();
    let path = t.s.root.path().join(name);
    std::fs::write(&path, format!("Authorization: Bearer {token}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    (path, token)
}

#[test]
fn the_http_api_over_tls_takes_the_admins_bearer_token_where_there_is_no_certificate() {
    if !can_curl("the_http_api_over_tls_takes_the_admins_bearer_token") {
        return;
    }
    let t = Tls::start(&["--http", "tls:127.0.0.1:0"]);
    let http = t.s.http_on("tls:", 0);
    let api = Api {
        t: &t,
        base: format!("https://{}", http.strip_prefix("tls:").unwrap()),
    };
    let (admin_file, admin_id) = token_file(&t, "admin.token", &["admin"]);
    let (admin, admin_token) = bearer_header(&t, "admin.header", &admin_file);
    let (web_file, web_id) = token_file(&t, "web.token", &["web"]);
    let (web, web_token) = bearer_header(&t, "web.header", &web_file);
    // The token stays off curl's command line.
    let argv = format!("{:?}", api.command(None, Some(&admin), &[]));
    assert!(!argv.contains(&admin_token), "{argv}");

    // The admin's token is the admin.
    let a = api.ask(None, Some(&admin), "/health/ready");
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(a.body.contains("\"ready\":true"), "{}", a.body);
    let metrics = api.ask(None, Some(&admin), "/metrics");
    assert_eq!(metrics.status, 200);
    assert!(metrics.body.contains("srv_secrets_http_requests_total"));
    // No token, or another scheme: 401, with the challenge.
    for header in [None, Some("basic.header")] {
        let file = header.map(|name| {
            let p = t.s.root.path().join(name);
            std::fs::write(&p, "Authorization: Basic YWRtaW46aHVudGVyMg==\n").unwrap();
            p
        });
        let a = api.ask(None, file.as_deref(), "/health/ready");
        assert_eq!(a.status, 401, "{}", a.body);
        assert!(
            a.headers
                .contains("www-authenticate: bearer realm=\"srv-secrets\"\r\n"),
            "{}",
            a.headers
        );
        assert!(
            a.body.starts_with("{\"error\":\"unauthorized: "),
            "{}",
            a.body
        );
    }
    // A token that is no token of this store: 401 invalid_token, the token not echoed.
    let forged = t.s.root.path().join("forged.header");
    let forged_token = format!("srvtok_{admin_id}_{}", "A".repeat(43));
    std::fs::write(&forged, format!("Authorization: Bearer {forged_token}\n")).unwrap();
    let a = api.ask(None, Some(&forged), "/health/ready");
    assert_eq!(a.status, 401);
    assert!(
        a.headers.contains("error=\"invalid_token\""),
        "{}",
        a.headers
    );
    assert!(a.body.contains("not a valid token"), "{}", a.body);
    assert!(!a.body.contains(&forged_token));
    // A service's token: 403, in terms of tokens.
    let a = api.ask(None, Some(&web), "/health/ready");
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.body.contains(&format!(
            "token {web_id} is service web's, and this API is the admin's"
        )),
        "{}",
        a.body
    );
    // One identity per request: a token beside a certificate is a 400, even the admin's.
    let a = api.ask(Some(&t.admin), Some(&admin), "/health/ready");
    assert_eq!(a.status, 400, "{}", a.body);
    assert!(
        a.body
            .contains("already says who you are (its client certificate)")
    );

    // A connection that a token proved stays open for the next request; one that proved
    // no one is closed after its answer.
    assert_eq!(
        api.connections(Some(&admin), &["/health/ready", "/metrics"]),
        [("200".into(), "1".into()), ("200".into(), "0".into())]
    );
    assert_eq!(
        api.connections(None, &["/health/ready", "/metrics"]),
        [("401".into(), "1".into()), ("401".into(), "1".into())]
    );
    assert_eq!(
        api.connections(Some(&web), &["/health/ready", "/metrics"]),
        [("403".into(), "1".into()), ("403".into(), "1".into())]
    );

    // A change made with the token is the admin's, with the token's ID in the audit.
    let catalog = t.s.root.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[tiers.local_dev]\ncore = true\n[tiers.desktop]\n\n[secrets.jwt_key]\nclass = \
         \"service\"\n[secrets.jwt_key.tiers.desktop]\nstrategy = \"generate\"\ntemplate = \
         \"{{random:base64url:32}}\"\n",
    )
    .unwrap();
    t.s.deploy_ok(&["catalog", "apply", catalog.to_str().unwrap()]);
    t.s.add_service("app", 1005, Some("secret jwt_key\n"));
    let request = r#"{"service": "app", "tier": "desktop", "deployment": "over-tls"}"#;
    let a = api.ask_with(
        None,
        Some(&admin),
        &["--request", "POST", "--data-binary", request],
        "/deployment/bundle",
    );
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(
        a.body.contains("\"deployment\": \"over-tls\""),
        "{}",
        a.body
    );
    let audit = t.s.deploy_ok(&["audit", "list", "--json"]);
    let record = audit
        .lines()
        .find(|l| l.contains("over-tls"))
        .unwrap_or_else(|| panic!("no record of the bundle: {audit}"));
    assert!(
        record.contains(r#""principal":"admin""#)
            && record.contains(&format!(r#""by_token":"{admin_id}""#)),
        "{record}"
    );

    // Expired, the token is refused with why; revoked, at the next request.
    let (soon_file, soon_id) = token_file(&t, "soon.token", &["admin", "--expires", "1s"]);
    let (soon, _) = bearer_header(&t, "soon.header", &soon_file);
    std::thread::sleep(Duration::from_millis(2100));
    let a = api.ask(None, Some(&soon), "/health/ready");
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(
        a.body.contains(&format!("token {soon_id} expired")),
        "{}",
        a.body
    );
    ok(&t.s.deploy(&["token", "revoke", &admin_id]));
    let a = api.ask(None, Some(&admin), "/health/ready");
    assert_eq!(a.status, 401, "{}", a.body);
    assert!(
        a.headers.contains("error=\"invalid_token\""),
        "{}",
        a.headers
    );
    assert!(
        a.body.contains(&format!("token {admin_id} was revoked")),
        "{}",
        a.body
    );
    // Neither token, nor any part of the header, is in the log.
    let log = t.s.log_text();
    for token in [&admin_token, &web_token, &forged_token] {
        let secret = &token[token.len() - 43..];
        assert!(!log.contains(secret), "a token is in the log");
    }
    assert!(
        !log.contains("YWRtaW46aHVudGVyMg"),
        "a Basic credential is in the log"
    );
}

#[test]
fn deploy_mounts_a_view_over_tls_and_its_serving_deploy_keeps_the_certificate() {
    let fuse = std::path::Path::new("/dev/fuse").exists()
        && Command::new("fusermount3")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success());
    if !fuse || !srv_secrets_tests::harness::can_switch_uid() {
        assert!(
            std::env::var("CI").is_err(),
            "needs root, /dev/fuse and fusermount3"
        );
        eprintln!("skipping: needs root, /dev/fuse and fusermount3");
        return;
    }
    let t = Tls::start(&[]);
    let dir = t.s.root.path().join("mnt");
    std::fs::create_dir(&dir).unwrap();
    // In the background: the deploy that serves the mount is started again with the
    // address and the certificate's files, and connects over TLS itself.
    let out = t.deploy_as(Some(&t.admin), &["mount", "web", dir.to_str().unwrap()]);
    assert_eq!(
        ok(&out),
        format!("mounted web's view at {}\n", dir.display())
    );
    let read = srv_secrets_tests::harness::as_uid(WEB, Path::new("/bin/cat"))
        .arg(dir.join("secret/db"))
        .output()
        .unwrap();
    let unmounted = Command::new("fusermount3")
        .arg("-u")
        .arg(&dir)
        .status()
        .unwrap();
    assert_eq!(ok(&read).as_bytes(), DB_VALUE);
    assert!(unmounted.success());
    // A service's certificate cannot mount a view for another service.
    let out = t.deploy_as(Some(&t.web), &["mount", "api", dir.to_str().unwrap()]);
    assert!(!out.status.success());
}

/// The `sh` blocks of docs/operations.md's "Making the certificates with openssl", the
/// second up to its `srv-secrets serve` (which names the installation's paths).
fn openssl_recipe() -> String {
    let ops = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/operations.md"),
    )
    .unwrap();
    let section = &ops[ops
        .find("### Making the certificates with openssl")
        .expect("the section")..];
    let blocks: Vec<&str> = section
        .split("```sh\n")
        .skip(1)
        .take(2)
        .map(|b| &b[..b.find("\n```").expect("a closed block")])
        .collect();
    let server = blocks[1]
        .find("srv-secrets serve")
        .expect("the second block starts the server");
    format!(
        "set -euo pipefail\n{}\n{}\n",
        blocks[0],
        &blocks[1][..server]
    )
}

#[test]
fn the_openssl_recipe_of_the_docs_makes_certificates_the_server_takes() {
    let openssl = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !openssl {
        assert!(
            std::env::var("CI").is_err(),
            "needs openssl (apt-get install openssl)"
        );
        eprintln!("skipping: needs openssl");
        return;
    }
    let mut s = SecretsServer::init();
    let dir = s.root.path().join("tls");
    std::fs::create_dir(&dir).unwrap();
    let made = Command::new("bash")
        .arg("-c")
        .arg(openssl_recipe())
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "the recipe failed: {}",
        stderr(&made)
    );
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    s.args = vec![
        "--listen".into(),
        "tls:127.0.0.1:0".into(),
        "--tls-cert".into(),
        file("server.crt"),
        "--tls-key".into(),
        file("server.key"),
        "--client-ca".into(),
        file("ca.crt"),
        "--crl".into(),
        file("ca.crl"),
    ];
    s.serve();
    s.add_service("web", WEB, None);
    s.deploy_with_stdin(&["secret", "set", "db"], DB_VALUE);
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    let addr = s.listening_on("tls:", 0);
    let deploy = |who: &str, args: &[&str]| {
        let mut cmd = Command::new(&bins().deploy);
        cmd.args(["--addr", &addr, "--ca", &file("ca.crt")])
            .args(["--cert", &file(&format!("{who}.crt"))])
            .args(["--key", &file(&format!("{who}.key"))])
            .args(args);
        run_with_stdin(cmd, b"")
    };
    ok(&deploy("admin", &["status"]));
    let get = ["secret", "get", "db", "--as", "web"];
    assert_eq!(ok(&deploy("web", &get)).as_bytes(), DB_VALUE);
    // The revocation, as the docs do it.
    for args in [
        &["ca", "-config", "ca.cnf", "-revoke", "web.crt"][..],
        &["ca", "-config", "ca.cnf", "-gencrl", "-out", "ca.crl"],
    ] {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {}", stderr(&out));
    }
    let from = s.log_text().len();
    s.signal(rustix::process::Signal::HUP);
    assert!(s.wait_for_log(from, "SIGHUP: reloaded", Duration::from_secs(5)));
    let e = failed(&deploy("web", &get));
    assert!(e.contains("it is revoked"), "{e}");
    ok(&deploy("admin", &["status"]));
}
