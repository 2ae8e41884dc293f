//! The plan API over HTTP on a unix socket (`srv-secrets serve --http unix:PATH`), with a
//! real HTTP client (curl) as root, as a service's uid and as a stranger's: health,
//! metrics, and the plan, lint and catalog saying byte for byte what `deploy` prints.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::Path;
use std::process::Command;

use srv_secrets_tests::harness::{CURL, SecretsServer, as_uid, can_curl, curl, stdout};

const WEB: u32 = 1001;
const STRANGER: u32 = 1003;
/// The most connections to the API one uid but the admin's may hold
/// (`srv_secrets::http::MAX_OTHER_CONNECTIONS_PER_UID`).
const OTHER_CONNECTIONS_PER_UID: usize = 4;

fn require(test: &str) -> bool {
    can_curl(test)
}

/// A server with the API at `RUN/http.sock`.
fn server() -> (SecretsServer, String) {
    let mut s = SecretsServer::init();
    let http = s.serve_with_http();
    (s, http)
}

/// `curl` as `uid` (None: root): the status code and the body.
fn get(socket: &str, uid: Option<u32>, path: &str, method: &str) -> (u16, String) {
    curl(socket, uid, method, path, None)
}

#[test]
fn the_admin_reads_health_and_metrics_and_others_get_403() {
    if !require("the_admin_reads_health_and_metrics_and_others_get_403") {
        return;
    }
    let (s, http) = server();
    s.add_service("web", WEB, None);
    s.deploy_with_stdin(&["secret", "set", "db_password"], b"hunter2");
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);

    let (code, body) = get(&http, None, "/health/ready", "GET");
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["ready"], true, "{body}");
    assert_eq!(health["store"], "ok");
    assert_eq!(health["key"], "ok");

    let (code, metrics) = get(&http, None, "/metrics", "GET");
    assert_eq!(code, 200);
    for line in [
        "srv_secrets_secrets 1",
        "srv_secrets_services 1",
        "srv_secrets_rotation_running 0",
        "# TYPE srv_secrets_requests_total counter",
        "srv_secrets_connections{class=\"principal\"} ",
    ] {
        assert!(metrics.contains(line), "{line} not in:\n{metrics}");
    }
    // Counts and states only: no name, no value.
    for word in ["db_password", "web", "hunter2"] {
        assert!(!metrics.contains(word), "{word} in the metrics:\n{metrics}");
    }

    // A service, and a uid that is no one, learn nothing: 403, whatever they ask.
    for uid in [WEB, STRANGER] {
        for path in ["/health/ready", "/metrics", "/no/such/thing"] {
            let (code, body) = get(&http, Some(uid), path, "GET");
            assert_eq!(code, 403, "uid {uid} {path}: {body}");
            assert!(body.contains("the admin's"), "{body}");
        }
    }
    // The admin's mistakes get their status, as JSON.
    let (code, body) = get(&http, None, "/no/such/thing", "GET");
    assert_eq!(code, 404, "{body}");
    let e: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        e["error"].as_str().unwrap().contains("no such endpoint"),
        "{body}"
    );
    let (code, _) = get(&http, None, "/metrics", "POST");
    assert_eq!(code, 405);
    // Over the socket the uid says who asks: a Bearer token beside it is refused (one
    // identity per request), the admin's uid or not, and whatever it holds.
    let token = s.deploy_ok(&["token", "create", "admin"]);
    let header = s.root.path().join("admin.header");
    std::fs::write(
        &header,
        format!("Authorization: Bearer {}", token.trim_end()),
    )
    .unwrap();
    for uid in [None, Some(WEB)] {
        let mut cmd = match uid {
            Some(u) => as_uid(u, Path::new(CURL)),
            None => Command::new(CURL),
        };
        cmd.args(["--silent", "--unix-socket", &http, "--header"])
            .arg(format!("@{}", header.display()))
            .args([
                "--write-out",
                "\n%{http_code}",
                "http://srv-secrets/metrics",
            ]);
        let text = stdout(&cmd.output().unwrap());
        let (body, code) = text.rsplit_once('\n').unwrap();
        assert_eq!(code, "400", "{body}");
        assert!(
            body.contains("this connection already says who you are (your uid)"),
            "{body}"
        );
        assert!(!body.contains(token.trim_end()), "{body}");
    }
}

#[test]
fn readiness_fails_when_the_key_file_no_longer_matches() {
    if !require("readiness_fails_when_the_key_file_no_longer_matches") {
        return;
    }
    let (s, http) = server();
    // Another store's key where this one's was.
    let other = s.root.path().join("other");
    let out = Command::new(&srv_secrets_tests::harness::bins().srv_secrets)
        .args(["init", "--data"])
        .arg(&other)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::copy(other.join("key"), s.data.join("key")).unwrap();
    let (code, body) = get(&http, None, "/health/ready", "GET");
    assert_eq!(code, 503, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(health["ready"], false);
    assert!(
        health["key"]
            .as_str()
            .unwrap()
            .contains("does not match this store"),
        "{body}"
    );
}

#[test]
fn plans_lint_and_the_catalog_are_what_deploy_prints_with_their_statuses() {
    if !require("plans_lint_and_the_catalog_are_what_deploy_prints_with_their_statuses") {
        return;
    }
    let (s, http) = server();
    s.add_service("web", WEB, Some("secret db_password\nsecret api_key\n"));
    s.deploy_with_stdin(&["secret", "set", "db_password"], b"hunter2");
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    s.deploy_ok(&["tier", "add", "local", "--core"]);
    s.deploy_ok(&["tier", "add", "cloud"]);
    s.deploy_ok(&["secret", "meta", "db_password", "--class", "service"]);
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db_password",
        "--tier",
        "local",
        "--serve",
    ]);
    s.deploy_ok(&[
        "secret",
        "strategy",
        "db_password",
        "--tier",
        "cloud",
        "--delegate",
        "env:DB_PASSWORD",
    ]);
    let printed = |args: &[&str]| stdout(&s.deploy(args));

    // The plan: both spellings, 200 with its problems (api_key has no strategy), the same
    // bytes as deploy secret plan --json.
    for tier in ["local", "cloud"] {
        let deploy = printed(&[
            "secret",
            "plan",
            "--service",
            "web",
            "--tier",
            tier,
            "--json",
        ]);
        for key in ["service", "scenario"] {
            let (code, body) = get(
                &http,
                None,
                &format!("/deployment/secrets?{key}=web&tier={tier}"),
                "GET",
            );
            assert_eq!(code, 200, "{body}");
            assert_eq!(body, deploy, "{key} {tier}");
        }
    }
    let (_, body) = get(
        &http,
        None,
        "/deployment/secrets?service=web&tier=cloud",
        "GET",
    );
    let plan: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(plan["ok"], false, "{body}");
    assert_eq!(plan["entries"][0]["ref"], "env:DB_PASSWORD", "{body}");
    // The lint, whole and for one tier; the catalog, JSON by default or TOML.
    for (path, args) in [
        ("/lint", &["secret", "lint", "--json"][..]),
        (
            "/lint?tier=cloud",
            &["secret", "lint", "--tier", "cloud", "--json"][..],
        ),
        ("/catalog", &["catalog", "export", "--format", "json"][..]),
        (
            "/catalog?format=toml",
            &["catalog", "export", "--format", "toml"][..],
        ),
    ] {
        let (code, body) = get(&http, None, path, "GET");
        assert_eq!(code, 200, "{path}: {body}");
        assert_eq!(body, printed(args), "{path}");
    }
    // Never a value, anywhere.
    for path in [
        "/deployment/secrets?service=web&tier=local",
        "/lint",
        "/catalog",
    ] {
        let (_, body) = get(&http, None, path, "GET");
        assert!(!body.contains("hunter2"), "{path}");
    }

    // Mistakes: 400 with what to do, 404 for a service the server does not have.
    for (path, code, says) in [
        ("/deployment/secrets?tier=cloud", 400, "which service?"),
        ("/deployment/secrets?service=web", 400, "which tier?"),
        (
            "/deployment/secrets?service=web&teir=cloud",
            400,
            "no parameter \"teir\"",
        ),
        (
            "/deployment/secrets?service=web&tier=Cloud",
            400,
            "a tier name is",
        ),
        (
            "/deployment/secrets?service=a/b&tier=cloud",
            400,
            "a service name is",
        ),
        (
            "/deployment/secrets?service=web&scenario=api&tier=cloud",
            400,
            "one of them",
        ),
        (
            "/deployment/secrets?service=web&tier=cloud&tier=local",
            400,
            "given twice",
        ),
        (
            "/deployment/secrets?service=nosuch&tier=cloud",
            404,
            "no such service",
        ),
        ("/lint?tier=NO", 400, "a tier name is"),
        ("/catalog?format=yaml", 400, "json or toml"),
    ] {
        let (got, body) = get(&http, None, path, "GET");
        assert_eq!(got, code, "{path}: {body}");
        let e: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert!(
            e["error"].as_str().unwrap().contains(says),
            "{path}: {body}"
        );
    }
    // A service learns nothing, not even whether it is planned.
    for path in [
        "/deployment/secrets?service=web&tier=local",
        "/lint",
        "/catalog",
    ] {
        let (code, body) = get(&http, Some(WEB), path, "GET");
        assert_eq!(code, 403, "{path}: {body}");
        assert!(!body.contains("db_password"), "{body}");
    }
}

/// Holds as many connections to the API's socket as the server lets it, as the uid it runs
/// as, each with a request head begun and never finished: prints how many it opened and
/// how many the server left open a second later, then, once a line comes on stdin, how
/// many seconds passed until the server had closed them all (or `still N`).
const HOLD_HTTP_PY: &str = r#"
import socket, sys, time, resource
path, n = sys.argv[1], int(sys.argv[2])
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
socks = []
for i in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(path)
        s.send(b"GET /metrics HTTP/1.1\r\nHost: srv-secrets\r\n")
    except OSError:
        s.close()
        break
    s.setblocking(False)
    socks.append(s)
def still_open():
    left = 0
    for s in socks:
        try:
            if s.recv(4096) == b'':
                continue
            left += 1
        except BlockingIOError:
            left += 1
        except OSError:
            pass
    return left
time.sleep(1)
print("opened %d open %d" % (len(socks), still_open()), flush=True)
sys.stdin.readline()
start = time.time()
while still_open() > 0 and time.time() - start < 20:
    time.sleep(0.2)
left = still_open()
print("closed after %.1f" % (time.time() - start) if left == 0 else "still %d" % left, flush=True)
"#;

/// Runs `cmd`, killed if it takes longer than `limit`: its output, or `None` if killed.
fn within(mut cmd: Command, limit: std::time::Duration) -> Option<std::process::Output> {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

#[test]
fn a_local_user_holding_connections_to_the_api_takes_few_and_not_for_long() {
    if !require("a_local_user_holding_connections_to_the_api_takes_few_and_not_for_long") {
        return;
    }
    use std::io::{BufRead, BufReader, Write};
    let (s, http) = server();
    s.add_service("web", WEB, None);
    s.deploy_with_stdin(&["secret", "set", "db_password"], b"hunter2");
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    // The descriptors of a server whose LimitNOFILE is small: connections that are never
    // given back would take them all, and then nobody is accepted, on 9P either.
    let pid = s.pid().unwrap().to_string();
    let limited = Command::new("prlimit")
        .args(["--pid", &pid, "--nofile=256:256"])
        .status()
        .unwrap();
    assert!(limited.success());

    let mut holder = as_uid(STRANGER, Path::new("/usr/bin/python3"));
    holder
        .args(["-c", HOLD_HTTP_PY, &http, "400"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped());
    let mut holder = holder.spawn().unwrap();
    let mut lines = BufReader::new(holder.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let open: usize = first.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(
        open <= OTHER_CONNECTIONS_PER_UID,
        "a stranger holds {open} connections ({first})"
    );

    // Meanwhile the admin and the service are served, on both sockets.
    let mut curl = Command::new(CURL);
    curl.args([
        "--silent",
        "--max-time",
        "5",
        "--unix-socket",
        &http,
        "http://srv-secrets/health/ready",
    ]);
    let out = within(curl, std::time::Duration::from_secs(10)).expect("the admin is served");
    assert!(stdout(&out).contains("\"ready\":true"), "{}", stdout(&out));
    let mut read = as_uid(WEB, &srv_secrets_tests::harness::bins().ninep);
    read.args(["--addr", &s.addr(), "read", "/secret/db_password"]);
    let out = within(read, std::time::Duration::from_secs(10)).expect("the service is served");
    assert_eq!(out.stdout, b"hunter2");
    let (_, metrics) = get(&http, None, "/metrics", "GET");
    assert!(
        !metrics.contains("srv_secrets_http_refused_connections_total 0\n"),
        "{metrics}"
    );

    // And the ones it kept are closed once their heads are overdue.
    holder.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let last = lines.next().unwrap().unwrap();
    let after: f64 = last
        .strip_prefix("closed after ")
        .unwrap_or_else(|| panic!("{last}"))
        .parse()
        .unwrap();
    assert!(after < 10.0, "{last}");
    holder.wait().unwrap();
}
