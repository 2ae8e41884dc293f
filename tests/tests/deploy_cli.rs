//! `deploy`'s first hour and its hostile-server fixes (issue 7), end to end: the real
//! `deploy` against the real server, against a fake 9P server (python3) that misbehaves
//! in one way each, and in a pseudo-terminal (`script`) where a terminal matters.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{
    SecretsServer, as_uid, bins, can_switch_uid, run_with_stdin, stderr, stdout,
};

const WEB: u32 = 1001;
const STRANGER: u32 = 1003;
const PYTHON: &str = "/usr/bin/python3";

/// A fake 9P2000 server: listens on argv[1] and behaves as argv[2] says, argv[3] being a
/// delay in seconds where one is needed. It serves a tree with `secrets/status`,
/// `secrets/ctl` and anything else walked to (empty files), answering each request at
/// once unless the mode says otherwise:
/// - silent: accepts, reads, never answers anything.
/// - version-only: answers Tversion, then nothing.
/// - hostile: answers Tattach with an Rerror full of terminal escape sequences.
/// - endless: every Tread returns as many bytes as asked, forever.
/// - slow-rotate: a Twrite (the rotate-key command) is answered after the delay, while
///   `secrets/status` reports progress meanwhile, and key 2 after; then a read of the
///   ctl fid gives its result.
/// - stuck-rotate: a Twrite is never answered, nor is anything read after it.
const FAKE_9P: &str = r#"
import select, socket, struct, sys, time
path, mode = sys.argv[1], sys.argv[2]
delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(16)
print("listening", flush=True)
conns, later, fids, results = {}, [], {}, {}
rotation = None
DIRS = {(), ("secrets",), ("secret",)}

def string(text):
    b = text.encode()
    return struct.pack("<H", len(b)) + b

def qid(p):
    return struct.pack("<BIQ", 0x80 if p in DIRS else 0, 0, len(p) * 1000 + sum(map(len, p)))

def frame(kind, tag, body=b""):
    return struct.pack("<IBH", 7 + len(body), kind, tag) + body

def status():
    if rotation is None:
        return "key 1\nsecrets 10\nservices 0\nrotation idle\n"
    elapsed = time.time() - rotation
    if elapsed >= delay:
        return "key 2\nsecrets 10\nservices 0\nrotation idle\n"
    return "key 1\nsecrets 10\nservices 0\nrotation %d/10\n" % int(10 * elapsed / delay)

def reply(sock, kind, tag, body):
    global rotation
    if mode == "silent":
        return None
    if kind == 100:
        msize, = struct.unpack_from("<I", body)
        return frame(101, tag, struct.pack("<I", min(msize, 65536)) + string("9P2000"))
    if mode == "version-only":
        return None
    if kind == 104:
        if mode == "hostile":
            return frame(107, tag, string("\x1b]0;pwned\x07\nforged: all is well"))
        fid, = struct.unpack_from("<I", body)
        fids[(sock, fid)] = ()
        return frame(105, tag, qid(()))
    if kind == 110:
        fid, newfid, n = struct.unpack_from("<IIH", body)
        names, off = [], 10
        for _ in range(n):
            size, = struct.unpack_from("<H", body, off)
            names.append(body[off + 2 : off + 2 + size].decode())
            off += 2 + size
        base = fids.get((sock, fid), ())
        fids[(sock, newfid)] = base + tuple(names)
        qids = b"".join(qid(base + tuple(names[: i + 1])) for i in range(n))
        return frame(111, tag, struct.pack("<H", n) + qids)
    if kind == 112:
        fid, = struct.unpack_from("<I", body)
        return frame(113, tag, qid(fids.get((sock, fid), ())) + struct.pack("<I", 0))
    if kind == 116:
        fid, offset, count = struct.unpack_from("<IQI", body)
        if mode == "endless":
            data = b"A" * count
        elif mode == "stuck-rotate" and rotation is not None:
            return None
        elif fids.get((sock, fid)) == ("secrets", "status"):
            data = status().encode()[offset : offset + count]
        elif fids.get((sock, fid)) == ("secrets", "ctl"):
            # The command's result, read once (ctl reads are a stream).
            data = results.pop((sock, fid), b"")[:count]
        else:
            data = b""
        return frame(117, tag, struct.pack("<I", len(data)) + data)
    if kind == 118:
        fid, offset, count = struct.unpack_from("<IQI", body)
        rotation = time.time()
        results[(sock, fid)] = b"ok rotate-key from=1 to=2 secrets=10\n"
        if mode != "stuck-rotate":
            later.append((rotation + delay, sock, frame(119, tag, struct.pack("<I", count))))
        return None
    if kind == 120:
        fid, = struct.unpack_from("<I", body)
        fids.pop((sock, fid), None)
        return frame(121, tag)
    return frame(107, tag, string("not in this fake"))

quit_at = time.time() + 120
while time.time() < quit_at:
    now = time.time()
    for item in [l for l in later if l[0] <= now]:
        later.remove(item)
        try:
            item[1].sendall(item[2])
        except OSError:
            pass
    wait = min([l[0] for l in later] + [now + 0.05]) - now
    ready, _, _ = select.select([srv] + list(conns), [], [], max(wait, 0))
    for sock in ready:
        if sock is srv:
            conn, _ = srv.accept()
            conns[conn] = bytearray()
            continue
        try:
            data = sock.recv(65536)
        except OSError:
            data = b""
        if not data:
            del conns[sock]
            sock.close()
            continue
        buf = conns[sock]
        buf += data
        while len(buf) >= 7:
            size, = struct.unpack_from("<I", buf)
            if len(buf) < size:
                break
            kind, tag = struct.unpack_from("<BH", buf, 4)
            body = bytes(buf[7:size])
            del buf[:size]
            out = reply(sock, kind, tag, body)
            if out:
                try:
                    sock.sendall(out)
                except OSError:
                    pass
"#;

fn have(test: &str, what: &str, present: bool) -> bool {
    if !present {
        assert!(std::env::var("CI").is_err(), "{test}: needs {what}");
        eprintln!("skipping {test}: needs {what}");
    }
    present
}

fn have_python(test: &str) -> bool {
    have(test, PYTHON, Path::new(PYTHON).exists())
}

fn have_script(test: &str) -> bool {
    let present = Command::new("script").arg("--version").output().is_ok();
    have(test, "script (util-linux)", present)
}

/// A running [`FAKE_9P`], killed on drop.
struct Fake {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    child: Child,
}

impl Fake {
    fn start(mode: &str, delay: f64) -> Fake {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("9p.sock");
        let mut child = Command::new(PYTHON)
            .args(["-c", FAKE_9P])
            .arg(&socket)
            .arg(mode)
            .arg(delay.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "listening\n");
        Fake {
            _dir: dir,
            socket,
            child,
        }
    }

    fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Runs `deploy --addr ADDR args...`; its output and how long it took.
    fn deploy(&self, args: &[&str]) -> (Output, Duration) {
        let deploy = &bins().deploy; // built (once) before the clock starts
        let started = Instant::now();
        let mut cmd = Command::new(deploy);
        cmd.arg("--addr").arg(self.addr()).args(args);
        let out = run_with_stdin(cmd, b"");
        (out, started.elapsed())
    }
}

impl Drop for Fake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the shell command `command` in a pseudo-terminal (`script`), typing `typed` once
/// `prompt` has appeared (if given): its exit status and everything the terminal showed.
fn in_terminal(command: &str, prompt: Option<&str>, typed: &[u8]) -> (Option<i32>, Vec<u8>) {
    let mut child = Command::new("script")
        .args(["-qec", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut input = child.stdin.take().unwrap();
    let mut shown = Vec::new();
    if let Some(prompt) = prompt {
        let mut buf = [0u8; 256];
        while !String::from_utf8_lossy(&shown).contains(prompt) {
            let n = out.read(&mut buf).unwrap();
            assert!(n > 0, "no prompt: {}", String::from_utf8_lossy(&shown));
            shown.extend_from_slice(&buf[..n]);
        }
        input.write_all(typed).unwrap();
    }
    out.read_to_end(&mut shown).unwrap();
    let status = child.wait().unwrap();
    drop(input);
    (status.code(), shown)
}

fn deploy_path() -> String {
    bins().deploy.display().to_string()
}

// --- Item 2: timeouts -------------------------------------------------------------

#[test]
fn a_server_that_never_answers_is_given_up_on_after_the_timeout() {
    if !have_python("never answers") {
        return;
    }
    let fake = Fake::start("silent", 0.0);
    let (out, took) = fake.deploy(&["status", "--timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "deploy: no answer from srv-secrets at {} within 500ms while starting the 9P \
             session (Tversion); is the server stuck? see its log, or raise --timeout\n",
            fake.addr()
        )
    );
    assert!(took >= Duration::from_millis(500), "{took:?}");
    assert!(took < Duration::from_secs(8), "gave up only after {took:?}");
}

#[test]
fn sigterm_and_sighup_stop_a_bundle_create_as_ctrl_c_does_and_leave_nothing() {
    if !have_python("stopped by a signal") {
        return;
    }
    let fake = Fake::start("silent", 0.0);
    let parent = tempfile::tempdir().unwrap();
    let out_dir = parent.path().join("bundle");
    for (signal, name, status) in [("TERM", "SIGTERM", 143), ("HUP", "SIGHUP", 129)] {
        let deploy = Command::new(&bins().deploy)
            .args([
                "--addr",
                &fake.addr(),
                "--timeout",
                "20s",
                "bundle",
                "create",
            ])
            .args([
                "--service",
                "web",
                "--tier",
                "desktop",
                "--deployment",
                "d1",
            ])
            .arg("--out")
            .arg(&out_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // deploy waits for the silent server's Rversion; its handlers are in by then.
        std::thread::sleep(Duration::from_millis(500));
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &deploy.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let started = Instant::now();
        let out = deploy.wait_with_output().unwrap();
        // Stopped, cleaning up, with 128 + the signal: not killed by it.
        assert_eq!(out.status.code(), Some(status), "{name}: {}", stderr(&out));
        assert_eq!(stderr(&out), format!("deploy: stopped by {name}\n"));
        assert!(started.elapsed() < Duration::from_secs(5));
        let left: Vec<_> = std::fs::read_dir(parent.path()).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
    // Other commands keep SIGTERM's default: one blocked reading a value from a pipe that
    // never closes still ends at once.
    let mut set = Command::new(&bins().deploy)
        .args(["--addr", &fake.addr(), "secret", "set", "x"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let _ = Command::new("kill")
        .args(["-TERM", &set.id().to_string()])
        .status()
        .unwrap();
    let status = set.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status:?}");
}

#[test]
fn a_server_that_stops_after_tversion_is_given_up_on_at_attach() {
    if !have_python("stops after Tversion") {
        return;
    }
    let fake = Fake::start("version-only", 0.0);
    let (out, took) = fake.deploy(&["secret", "list", "--timeout", "1s"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "deploy: no answer from srv-secrets at {} within 1s while attaching; is the \
             server stuck? see its log, or raise --timeout\n",
            fake.addr()
        )
    );
    assert!(took < Duration::from_secs(8), "gave up only after {took:?}");
}

#[test]
fn rotate_key_outlives_the_timeout_while_its_polls_are_answered() {
    if !have_python("slow rotation") {
        return;
    }
    // The rotation's write takes 3 s, six times the timeout; the progress polls on the
    // same connection are answered all along.
    let fake = Fake::start("slow-rotate", 3.0);
    let (out, took) = fake.deploy(&["secret", "rotate-key", "--timeout", "500ms"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("rotated key 1 → 2: 10 secrets re-encrypted in "),
        "{}",
        stdout(&out)
    );
    assert!(took >= Duration::from_secs(3), "{took:?}");
}

#[test]
fn a_rotation_that_falls_silent_is_given_up_on() {
    if !have_python("silent rotation") {
        return;
    }
    let fake = Fake::start("stuck-rotate", 0.0);
    let (out, took) = fake.deploy(&["secret", "rotate-key", "--timeout", "500ms"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        format!(
            "deploy: no answer from srv-secrets at {} within 500ms while writing \
             secrets/ctl; is the server stuck? see its log, or raise --timeout\n",
            fake.addr()
        )
    );
    assert!(took < Duration::from_secs(8), "gave up only after {took:?}");
}

// --- Item 1: what the server says is escaped ---------------------------------------

#[test]
fn escape_sequences_from_the_server_reach_the_terminal_escaped() {
    if !have_python("hostile server") {
        return;
    }
    let fake = Fake::start("hostile", 0.0);
    let (out, _) = fake.deploy(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "deploy: attaching: \\x1b]0;pwned\\x07\\nforged: all is well\n"
    );
}

// --- Item 3: bounded reads ----------------------------------------------------------

#[test]
fn an_endless_file_is_cut_off_at_its_bound() {
    if !have_python("endless file") {
        return;
    }
    let fake = Fake::start("endless", 0.0);
    let (out, took) = fake.deploy(&["secret", "get", "db_password", "--as", "web"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "printed {} bytes", out.stdout.len());
    assert_eq!(
        stderr(&out),
        "deploy: reading secret/db_password: the server sent more than 1 MiB, more than \
         srv-secrets ever serves there; is this a srv-secrets socket, and as new as this \
         deploy?\n"
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let (out, _) = fake.deploy(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(
            "deploy: reading secrets/status: the server sent more than 64 KiB, more than \
             srv-secrets ever serves there"
        ),
        "{}",
        stderr(&out)
    );
}

// --- Item 4: empty values -----------------------------------------------------------

/// The version of a secret, from `deploy secret list --json`.
fn version_of(s: &SecretsServer, name: &str) -> Option<u64> {
    let list = s.deploy_ok(&["secret", "list", name, "--json"]);
    let at = list.find("\"version\": ")?;
    let digits: String = list[at + 11..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

#[test]
fn an_empty_value_is_refused_unless_allowed_and_nothing_changes() {
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db_password"], b"v1");
    assert!(out.status.success(), "{}", stderr(&out));
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    assert_eq!(version_of(&s, "db_password"), Some(1));

    // An empty pipe.
    let out = s.deploy_with_stdin(&["secret", "set", "db_password"], b"");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "deploy: the value from stdin is empty: refusing to store an empty secret, nothing \
         was changed; pass --allow-empty to store it anyway\n"
    );
    // </dev/null.
    let null = Command::new(&bins().deploy)
        .arg("--addr")
        .arg(s.addr())
        .args(["secret", "set", "db_password"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(null.status.code(), Some(1), "{}", stderr(&null));
    // An empty file.
    let empty = s.root.path().join("empty");
    std::fs::write(&empty, b"").unwrap();
    let file = empty.to_str().unwrap();
    let out = s.deploy(&["secret", "set", "db_password", "--file", file]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).starts_with(&format!("deploy: the value in the file {file} is empty")),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        version_of(&s, "db_password"),
        Some(1),
        "nothing was changed"
    );
    assert_eq!(s.get_as("db_password", "web"), b"v1");

    // Asked for, it is stored.
    let out = s.deploy_with_stdin(&["secret", "set", "db_password", "--allow-empty"], b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "set db_password (version 2, 0 bytes)\n");
    assert_eq!(s.get_as("db_password", "web"), b"");
}

#[test]
fn enter_at_the_prompt_stores_nothing() {
    if !have_script("empty prompt") {
        return;
    }
    let s = SecretsServer::start();
    let command = format!("{} --addr {} secret set typed", deploy_path(), s.addr());
    let (status, shown) = in_terminal(&command, Some("Value for typed"), b"\n");
    let shown = String::from_utf8_lossy(&shown);
    assert_eq!(status, Some(1), "{shown}");
    assert!(
        shown.contains("the value typed at the prompt is empty"),
        "{shown}"
    );
    assert_eq!(version_of(&s, "typed"), None, "no secret was made");
}

// --- Item 5: a service's uid running admin commands ---------------------------------

#[test]
fn a_service_uid_is_told_who_it_is_and_a_stranger_nothing() {
    if !have("admin refusals", "root and setpriv", can_switch_uid()) {
        return;
    }
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    let deploy_as = |uid: u32, args: &[&str]| {
        let mut cmd = as_uid(uid, &bins().deploy);
        cmd.arg("--addr").arg(s.addr()).args(args);
        run_with_stdin(cmd, b"")
    };
    // The store was made by root, so root alone is the admin.
    for args in [
        &["status"][..],
        &["secret", "list"],
        &["service", "check", "web"],
    ] {
        let out = deploy_as(WEB, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert_eq!(
            stderr(&out),
            "deploy: this uid (1001) is service web: admin commands need root\n",
            "{args:?}"
        );
    }
    // Reading another service's view is for the admin too.
    let out = deploy_as(WEB, &["secret", "get", "x", "--as", "nosuch"]);
    assert_eq!(
        stderr(&out),
        "deploy: this uid (1001) is service web: admin commands need root\n"
    );
    // A stranger learns nothing: the server says exactly "permission denied".
    let out = deploy_as(STRANGER, &["status"]);
    assert_eq!(
        stderr(&out),
        "deploy: the server refused this user (uid 1003): only root and the uid that ran \
         `srv-secrets init` are admin\n"
    );
    for aname in ["admin", "", "web"] {
        let r = s.ninep_as(STRANGER, aname, &["ls", "/"]);
        assert_eq!(stderr(&r), "9p: permission denied\n", "aname {aname:?}");
    }
    // On the wire, the service hears who it is only when it asks for the admin tree.
    let r = s.ninep_as(WEB, "admin", &["ls", "/"]);
    assert_eq!(
        stderr(&r),
        "9p: permission denied: uid 1001 is service web; the admin is root\n"
    );
    assert_eq!(
        stdout(&s.ninep_as(WEB, "", &["ls", "/"])),
        "config\nevents\nsecret\n"
    );
}

// --- Item 6: bare socket paths ------------------------------------------------------

#[test]
fn listen_and_addr_take_a_bare_socket_path() {
    let mut s = SecretsServer::init();
    let socket = s.root.path().join("bare.sock");
    let mut server = Command::new(&bins().srv_secrets)
        .arg("serve")
        .arg("--data")
        .arg(&s.data)
        .arg("--listen")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        assert!(
            Instant::now() < deadline,
            "no socket at {}",
            socket.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = Command::new(&bins().deploy)
        .arg("--addr")
        .arg(&socket)
        .arg("status")
        .output()
        .unwrap();
    let by_env = Command::new(&bins().deploy)
        .env("SRV_SECRETS_ADDR", &socket)
        .args(["status", "--json"])
        .output()
        .unwrap();
    let _ = server.kill();
    let log = server.wait_with_output().unwrap();
    s.kill9();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with(&format!("server:     unix:{}\n", socket.display())),
        "{}",
        stdout(&out)
    );
    assert!(by_env.status.success(), "{}", stderr(&by_env));
    assert!(
        stderr(&log).contains(&format!("listening on unix:{}", socket.display())),
        "{}",
        stderr(&log)
    );
}

// --- Item 7: completions and man pages of srv-secrets -------------------------------

#[test]
fn srv_secrets_prints_completions_and_man_pages() {
    for (shell, marker) in [
        ("bash", "complete -F _srv__secrets"),
        ("zsh", "#compdef srv-secrets"),
        ("fish", "complete -c srv-secrets"),
    ] {
        let out = Command::new(&bins().srv_secrets)
            .args(["completions", shell])
            .output()
            .unwrap();
        assert!(out.status.success(), "{shell}: {}", stderr(&out));
        let script = stdout(&out);
        assert!(script.contains(marker), "{shell}:\n{script}");
        assert!(script.contains("listen"), "{shell}");
    }
    let out = Command::new(&bins().srv_secrets)
        .arg("manpage")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        stdout(&out).contains(".TH srv-secrets 1"),
        "{}",
        stdout(&out)
    );
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(&bins().srv_secrets)
        .args(["manpage", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    for page in ["srv-secrets.1", "srv-secrets-init.1", "srv-secrets-serve.1"] {
        let text = std::fs::read_to_string(dir.path().join(page)).unwrap();
        assert!(text.contains(".TH srv-secrets"), "{page}");
    }
}

// --- Item 9: list PATTERN -----------------------------------------------------------

#[test]
fn secret_list_takes_a_glob() {
    let s = SecretsServer::start();
    for name in ["db_password", "db_user", "api_key", "tls_key", "x"] {
        let out = s.deploy_with_stdin(&["secret", "set", name], b"value");
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let names = |args: &[&str]| -> Vec<String> {
        s.deploy_ok(args)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().next().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names(&["secret", "list", "db_*"]),
        ["db_password", "db_user"]
    );
    assert_eq!(names(&["secret", "list", "*_key"]), ["api_key", "tls_key"]);
    assert_eq!(names(&["secret", "list", "?"]), ["x"]);
    assert_eq!(names(&["secret", "list", "[at]*"]), ["api_key", "tls_key"]);
    assert_eq!(names(&["secret", "list"]).len(), 5);
    let json = s.deploy_ok(&["secret", "list", "db_*", "--json"]);
    assert!(json.contains("\"db_user\""), "{json}");
    assert!(!json.contains("api_key"), "{json}");
    // Nothing matches: the header, and a note that says so.
    let out = s.deploy(&["secret", "list", "nope*"]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 1);
    assert!(
        stderr(&out).contains("no secret's name matches"),
        "{}",
        stderr(&out)
    );
}

// --- Item 10: binary values and terminals -------------------------------------------

#[test]
fn get_keeps_binary_off_a_terminal_unless_raw_and_pipes_get_exact_bytes() {
    if !have_script("binary to a terminal") {
        return;
    }
    let binary: &[u8] = b"\x00\x01\x1b[2Jbinary\xff\xfe";
    let s = SecretsServer::start();
    s.add_service("web", WEB, None);
    for (name, value) in [("bin", binary), ("text", &b"plain text\n"[..])] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value);
        assert!(out.status.success(), "{}", stderr(&out));
        s.deploy_ok(&["secret", "grant", "web", name]);
    }
    // A pipe gets exactly the bytes.
    assert_eq!(s.get_as("bin", "web"), binary);
    assert_eq!(s.get_as("text", "web"), b"plain text\n");
    let get = |args: &str| format!("{} --addr {} secret get {args}", deploy_path(), s.addr());
    // A terminal does not, unless --raw.
    let (status, shown) = in_terminal(&get("bin --as web"), None, b"");
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(status, Some(1), "{text}");
    assert!(
        text.contains("bin is not text") && text.contains("--raw") && text.contains("od -c"),
        "{text}"
    );
    assert!(!shown.windows(6).any(|w| w == b"binary"), "{text}");
    let (status, shown) = in_terminal(&get("bin --as web --raw"), None, b"");
    assert_eq!(status, Some(0));
    assert!(shown.windows(6).any(|w| w == b"binary"));
    // Text is printed as it is.
    let (status, shown) = in_terminal(&get("text --as web"), None, b"");
    assert_eq!(status, Some(0));
    assert!(String::from_utf8_lossy(&shown).contains("plain text"));
}

// --- Item 11: progress --------------------------------------------------------------

#[test]
fn rotation_progress_is_a_bar_on_a_terminal_only_once_it_lasts() {
    if !have_python("progress") || !have_script("progress") {
        return;
    }
    let rotate =
        |fake: &Fake| format!("{} --addr {} secret rotate-key", deploy_path(), fake.addr());
    // Three seconds: a bar on the terminal, cleared before the summary.
    let slow = Fake::start("slow-rotate", 3.0);
    let (status, shown) = in_terminal(&rotate(&slow), None, b"");
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("re-encrypting ["), "{text:?}");
    assert!(text.contains("/10 secrets"), "{text:?}");
    assert!(text.contains("rotated key 1 → 2"), "{text:?}");
    // A third of a second: nothing to watch, so no bar.
    let quick = Fake::start("slow-rotate", 0.3);
    let (status, shown) = in_terminal(&rotate(&quick), None, b"");
    let text = String::from_utf8_lossy(&shown);
    assert_eq!(status, Some(0), "{text}");
    assert!(!text.contains("re-encrypting"), "{text:?}");
    assert!(text.contains("rotated key 1 → 2"), "{text:?}");
    // Not a terminal: no bar, no control sequences, a plain line now and then.
    let slow = Fake::start("slow-rotate", 3.0);
    let (out, _) = slow.deploy(&["secret", "rotate-key"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains('\x1b') && !err.contains('\r'), "{err:?}");
    let lines: Vec<&str> = err.lines().collect();
    assert!((1..=2).contains(&lines.len()), "{err:?}");
    for line in lines {
        assert!(line.starts_with("deploy: re-encrypting: "), "{err:?}");
    }
}
