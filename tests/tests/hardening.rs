//! The fixes of a security review, end to end: the real server, the real `deploy`, and
//! other local users (setpriv) trying to squat the socket, pose as the server, or hold
//! connection slots they have no business with.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{
    SecretsServer, as_uid, bins, can_switch_uid, run_with_stdin, shared_tempdir, stderr, stdout,
};

/// The uid that runs a server of its own (no XDG_RUNTIME_DIR: its socket is under /tmp).
const OWNER: u32 = 1702;
/// Another local user, up to no good.
const SQUATTER: u32 = 1705;
/// A service's uid.
const WEB: u32 = 1001;

const PYTHON: &str = "/usr/bin/python3";

/// A fake server: listens on argv[1], takes one connection and prints how many bytes it
/// was sent before the client hung up (or went quiet for 3 s).
const FAKE_SERVER: &str = r#"
import os, socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
os.chmod(sys.argv[1], 0o666)
srv.listen(8)
print("listening", flush=True)
srv.settimeout(20)
conn, _ = srv.accept()
conn.settimeout(3)
got = b""
try:
    while True:
        b = conn.recv(65536)
        if not b:
            break
        got += b
except socket.timeout:
    pass
print("received", len(got), flush=True)
"#;

/// Opens argv[2] connections to argv[1] and sends nothing; once argv[3] of them were
/// closed by the server (or 70 s passed), and half a second more, prints how many were,
/// then holds the rest until a line arrives on stdin.
const HOLDER: &str = r#"
import select, socket, sys, time
path, n, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for _ in range(n):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    socks.append(s)
def closed():
    count = 0
    for s in socks:
        if select.select([s], [], [], 0)[0]:
            try:
                count += s.recv(1, socket.MSG_PEEK) == b""
            except ConnectionResetError:
                count += 1
    return count
deadline = time.time() + 70
while closed() < expect and time.time() < deadline:
    time.sleep(0.05)
time.sleep(0.5)
print("closed", closed(), flush=True)
sys.stdin.readline()
"#;

fn require(test: &str) -> bool {
    if can_switch_uid() && Path::new(PYTHON).exists() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test}: needs root, setpriv (util-linux) and {PYTHON} to act as other users"
    );
    eprintln!("skipping {test}: needs root, setpriv and {PYTHON}");
    false
}

/// `program` as `uid`, with an environment that has only PATH: no HOME, no
/// XDG_RUNTIME_DIR, no XDG_DATA_HOME, as for a daemon started without a login session.
fn bare_as(uid: u32, program: &Path) -> Command {
    let mut cmd = as_uid(uid, program);
    cmd.env_clear().env("PATH", "/usr/bin:/bin");
    cmd
}

/// Runs `cmd`; its output if it exits within `limit`, else it is killed and `None`.
fn run_for(mut cmd: Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(child.wait_with_output().unwrap())
}

/// SIGTERM, then wait.
fn stop(mut child: Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    let _ = child.wait();
}

fn wait_for_socket(path: &Path, server: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        if let Some(status) = server.try_wait().unwrap() {
            panic!("the server exited with {status}");
        }
        assert!(Instant::now() < deadline, "no socket at {}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory for `uid` under a shared temp dir, with a data directory `init`ed by it.
fn data_of(uid: u32) -> (tempfile::TempDir, PathBuf) {
    let root = shared_tempdir();
    std::os::unix::fs::chown(root.path(), Some(uid), Some(uid)).unwrap();
    let data = root.path().join("data");
    let out = bare_as(uid, &bins().srv_secrets)
        .arg("init")
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert!(out.status.success(), "init: {}", stderr(&out));
    (root, data)
}

/// The default socket directory of a uid without XDG_RUNTIME_DIR, removed on drop.
struct TmpSocketDir(PathBuf);

impl TmpSocketDir {
    fn of(uid: u32) -> TmpSocketDir {
        let dir = PathBuf::from(format!("/tmp/srv-secrets-{uid}"));
        let _ = std::fs::remove_dir_all(&dir);
        TmpSocketDir(dir)
    }
}

impl Drop for TmpSocketDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn a_socket_directory_made_by_another_user_stops_the_server() {
    if !require("socket directory squatting") {
        return;
    }
    let (_root, data) = data_of(OWNER);
    let dir = TmpSocketDir::of(OWNER);
    // Before OWNER's server first starts, SQUATTER makes its socket directory, open to all.
    let mkdir = as_uid(SQUATTER, Path::new("/bin/mkdir"))
        .args(["-m", "0777"])
        .arg(&dir.0)
        .output()
        .unwrap();
    assert!(mkdir.status.success(), "{}", stderr(&mkdir));
    let serve = || {
        let mut cmd = bare_as(OWNER, &bins().srv_secrets);
        cmd.arg("serve").arg("--data").arg(&data);
        cmd
    };
    let Some(out) = run_for(serve(), Duration::from_secs(10)) else {
        panic!("the server started in a socket directory that uid {SQUATTER} made");
    };
    assert_eq!(out.status.code(), Some(1));
    let said = stderr(&out);
    assert!(
        said.contains(&format!(
            "cannot listen on unix:{}/9p.sock: the socket's directory {} belongs to uid \
             {SQUATTER}, not to this server's uid {OWNER}",
            dir.0.display(),
            dir.0.display()
        )),
        "{said}"
    );
    assert!(!dir.0.join("9p.sock").exists());

    // Once it is gone, the server makes the directory its own, and the squatter can
    // neither move the socket away nor put one beside it.
    std::fs::remove_dir(&dir.0).unwrap();
    let mut server = serve().stderr(Stdio::null()).spawn().unwrap();
    let socket = dir.0.join("9p.sock");
    wait_for_socket(&socket, &mut server);
    let meta = std::fs::metadata(&dir.0).unwrap();
    assert_eq!(
        (meta.uid(), meta.permissions().mode() & 0o777),
        (OWNER, 0o755)
    );
    let mv = as_uid(SQUATTER, Path::new("/bin/mv"))
        .arg(&socket)
        .arg(dir.0.with_file_name("stolen.sock"))
        .output()
        .unwrap();
    assert!(!mv.status.success());
    // OWNER's deploy finds it at the same default, and trusts it: it runs as OWNER.
    let status = bare_as(OWNER, &bins().deploy)
        .arg("status")
        .output()
        .unwrap();
    stop(server);
    assert!(status.status.success(), "{}", stderr(&status));
    assert!(stdout(&status).contains("secrets"), "{}", stdout(&status));
}

#[test]
fn without_home_serve_asks_for_data_instead_of_using_tmp() {
    if !require("no data directory under /tmp") {
        return;
    }
    let root = shared_tempdir();
    std::os::unix::fs::chown(root.path(), Some(OWNER), Some(OWNER)).unwrap();
    let dir = TmpSocketDir::of(OWNER);
    let mut cmd = bare_as(OWNER, &bins().srv_secrets);
    cmd.arg("serve")
        .arg("--listen")
        .arg(format!("unix:{}", root.path().join("9p.sock").display()));
    let Some(out) = run_for(cmd, Duration::from_secs(10)) else {
        panic!("the server started with a data directory of its own choosing");
    };
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "srv-secrets: no data directory: HOME and XDG_DATA_HOME are not set; pass --data \
         DIR, or set HOME\n"
    );
    assert!(!dir.0.exists(), "nothing was made under /tmp");
}

#[test]
fn deploy_sends_nothing_to_a_socket_another_user_serves() {
    if !require("deploy and a fake server") {
        return;
    }
    let shared = shared_tempdir();
    let squat = shared.path().join("squat");
    std::fs::create_dir(&squat).unwrap();
    std::os::unix::fs::chown(&squat, Some(SQUATTER), Some(SQUATTER)).unwrap();
    let socket = squat.join("9p.sock");
    let mut fake = as_uid(SQUATTER, Path::new(PYTHON))
        .args(["-c", FAKE_SERVER])
        .arg(&socket)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = BufReader::new(fake.stdout.take().unwrap()).lines();
    assert_eq!(said.next().unwrap().unwrap(), "listening");
    let mut set = as_uid(OWNER, &bins().deploy);
    set.arg("--addr")
        .arg(format!("unix:{}", socket.display()))
        .args(["secret", "set", "db_password"]);
    let out = run_with_stdin(set, b"hunter2");
    let received = said.next().unwrap().unwrap();
    let _ = fake.wait();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "deploy: refusing unix:{}: it is served by uid {SQUATTER}, who is neither root \
             nor you (uid {OWNER}), and others can change the path to it; another user may \
             be posing as srv-secrets to collect what you send. Nothing was sent. Do not \
             trust this socket: see who serves it with `ss -xlp`, and run srv-secrets in a \
             directory that only you or root can write\n",
            socket.display()
        )
    );
    assert_eq!(
        received, "received 0",
        "deploy sent the fake server something"
    );
}

#[test]
fn strangers_are_refused_and_closed_and_one_uid_cannot_take_every_slot() {
    if !require("connection slots") {
        return;
    }
    let s = SecretsServer::start();
    s.deploy_ok(&["service", "add", "web", "--uid", &WEB.to_string()]);
    let socket = s.socket.display().to_string();
    let hold = |uid: u32, n: usize, expect_closed: usize| {
        let mut child = as_uid(uid, Path::new(PYTHON))
            .args([
                "-c",
                HOLDER,
                &socket,
                &n.to_string(),
                &expect_closed.to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        (child, line)
    };
    // A uid that is neither the admin nor a service is refused at attach, and a
    // connection that never attaches is closed at the attach timeout (60 s).
    let r = s.ninep_as(SQUATTER, "", &["ls", "/"]);
    assert_eq!(stderr(&r), "9p: permission denied\n");
    let (mut stranger, closed) = hold(SQUATTER, 5, 5);
    drop(stranger.stdin.take());
    stranger.wait().unwrap();
    assert_eq!(
        closed, "closed 5\n",
        "a stranger's idle connections were kept open"
    );
    // A service holding 100 connections keeps 64 (its cap), and the admin gets in.
    let (mut web, closed) = hold(WEB, 100, 36);
    assert_eq!(closed, "closed 36\n");
    let status = s.deploy(&["status"]);
    writeln!(web.stdin.take().unwrap()).unwrap();
    web.wait().unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
}

#[test]
fn a_listen_address_that_is_not_unix_is_refused_before_the_vault_is_touched() {
    // With the data directory locked by a running server, opening the vault would fail
    // first: the address is checked before that.
    let s = SecretsServer::start();
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .args(["--listen", "tcp:127.0.0.1:5640"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "srv-secrets: --listen tcp:127.0.0.1:5640: plain TCP proves nothing of who connects and \
         lets anyone on the way read the secrets: listen on tls:127.0.0.1:5640 (with \
         --tls-cert, --tls-key and --client-ca) instead; for a test on this machine alone, \
         --insecure-plain-tcp allows tcp: on a loopback address (every connection must then \
         present an API token)\n"
    );
    // The embedded default is not even made, and neither is a good address's socket.
    let home = shared_tempdir();
    let good = home.path().join("run/9p.sock");
    let out = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--listen")
        .arg(format!("unix:{}", good.display()))
        .args(["--listen", "tcp:[::1]:564"])
        .env("XDG_DATA_HOME", home.path().join("share"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "srv-secrets: --listen tcp:[::1]:564: plain TCP proves nothing of who connects"
        ),
        "{}",
        stderr(&out)
    );
    assert!(!home.path().join("share").exists());
    assert!(!home.path().join("run").exists());
    // Allowed for tests, on loopback only; and nothing else is taken for a path.
    for (args, says) in [
        (
            &["--listen", "tcp:0.0.0.0:5640", "--insecure-plain-tcp"][..],
            "srv-secrets: --listen tcp:0.0.0.0:5640: --insecure-plain-tcp allows only loopback \
             addresses (127.0.0.1, [::1]): anywhere else, listen on tls:0.0.0.0:5640\n",
        ),
        (
            &["--listen", "vsock:3:564"],
            "srv-secrets: --listen vsock:3:564: give unix:PATH (or a socket's path), \
             tls:HOST:PORT or tcp:HOST:PORT\n",
        ),
        (
            &["--insecure-plain-tcp"],
            "srv-secrets: --insecure-plain-tcp allows --listen tcp:HOST:PORT, and there is \
             none; leave it out\n",
        ),
    ] {
        let out = Command::new(&bins().srv_secrets)
            .arg("serve")
            .arg("--data")
            .arg(&s.data)
            .args(args)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert_eq!(stderr(&out), says);
    }
}
