//! The real binaries, started the way an operator starts them: `srv-secrets init` and
//! `serve` on a socket in a temporary directory, `deploy` against it, and the `9p` test
//! client run as any uid with `setpriv`.
//!
//! The binaries are built once per test process with the cargo that runs the tests
//! (`cargo test` does not build other packages' binaries by itself).

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Paths of the binaries under test.
#[derive(Debug)]
pub struct Bins {
    /// The server.
    pub srv_secrets: PathBuf,
    /// The operator's CLI.
    pub deploy: PathBuf,
    /// The plain 9P test client.
    pub ninep: PathBuf,
}

/// The binaries, built on first use.
///
/// # Panics
/// If cargo cannot build them: nothing in the suite can run then.
pub fn bins() -> &'static Bins {
    static BINS: OnceLock<Bins> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("the test binary knows its path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binaries live in target/<profile>/deps")
            .to_path_buf();
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "srv-secrets",
            "-p",
            "cmd-deploy",
            "-p",
            "srv-secrets-tests",
            "--bins",
        ]);
        if release {
            cmd.arg("--release");
        }
        let target_dir = profile_dir
            .parent()
            .expect("target/<profile> has a parent")
            .to_path_buf();
        cmd.env("CARGO_TARGET_DIR", &target_dir)
            .current_dir(env!("CARGO_MANIFEST_DIR"));
        // cargo runs a test with the variables it sets for the crate under test
        // (CARGO_MANIFEST_DIR, CARGO_PKG_NAME, ...). A build script that reads one (ring's
        // does) would see it changed between this build and the one that built the test,
        // and each would build it and all above it again, every time.
        for (key, _) in std::env::vars_os() {
            let set_for_the_crate = key.to_str().is_some_and(|k| {
                k.starts_with("CARGO_PKG_")
                    || [
                        "CARGO_MANIFEST_DIR",
                        "CARGO_MANIFEST_PATH",
                        "CARGO_CRATE_NAME",
                        "CARGO_PRIMARY_PACKAGE",
                        "CARGO_TARGET_TMPDIR",
                        "CARGO_RUSTC_CURRENT_DIR",
                    ]
                    .contains(&k)
            });
            if set_for_the_crate {
                cmd.env_remove(key);
            }
        }
        let status = cmd.status().expect("cargo runs");
        assert!(status.success(), "building the binaries failed");
        Bins {
            srv_secrets: profile_dir.join("srv-secrets"),
            deploy: profile_dir.join("deploy"),
            ninep: profile_dir.join("9p"),
        }
    })
}

/// A directory under /tmp that other uids can traverse (a service connecting as its own
/// uid must reach the socket inside it).
pub fn shared_tempdir() -> tempfile::TempDir {
    shared_tempdir_in(Path::new("/tmp"))
}

/// Like [`shared_tempdir`], under `parent` (e.g. `/dev/shm`, where fsync costs nothing).
pub fn shared_tempdir_in(parent: &Path) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix("srv-secrets-test.")
        .tempdir_in(parent)
        .expect("a temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
        .expect("chmod the temp dir");
    dir
}

/// A running (or stopped) `srv-secrets serve` on its own data directory and socket.
pub struct SecretsServer {
    /// Holds the data directory, the socket and the log.
    pub root: tempfile::TempDir,
    /// The data directory.
    pub data: PathBuf,
    /// The socket.
    pub socket: PathBuf,
    /// The server's stderr (its log), appended across restarts.
    pub log: PathBuf,
    /// Extra environment for the server (e.g. RUST_LOG).
    pub env: Vec<(String, String)>,
    /// Extra arguments for `serve` (e.g. `--http unix:PATH`).
    pub args: Vec<String>,
    /// The key file `init` and `serve` are given with `--key`; none: the default one,
    /// inside the data directory.
    pub key: Option<PathBuf>,
    child: Option<Child>,
}

impl SecretsServer {
    /// `srv-secrets init` on a fresh data directory; not started yet.
    pub fn init() -> SecretsServer {
        SecretsServer::init_under(Path::new("/tmp"))
    }

    /// Like [`Self::init`], with the data directory and the socket under `parent`.
    pub fn init_under(parent: &Path) -> SecretsServer {
        let root = shared_tempdir_in(parent);
        let data = root.path().join("data");
        let socket = root.path().join("run/9p.sock");
        SecretsServer::init_in(root, data, None, socket)
    }

    /// `srv-secrets init --key KEY`, laid out as docs/operations.md lays out an
    /// installation: the data directory at `var/lib/srv-secrets`, the key in a private
    /// directory of its own at `etc/srv-secrets/key`, the socket under
    /// `run/srv-secrets`; not started yet.
    pub fn init_with_key_outside() -> SecretsServer {
        let root = shared_tempdir();
        let data = root.path().join("var/lib/srv-secrets");
        let key_dir = root.path().join("etc/srv-secrets");
        std::fs::create_dir_all(&key_dir).expect("make the key's directory");
        std::fs::set_permissions(&key_dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod the key's directory");
        let socket = root.path().join("run/srv-secrets/9p.sock");
        let s = SecretsServer::init_in(root, data, Some(key_dir.join("key")), socket);
        assert!(
            !s.data.join("key").exists(),
            "with --key, the data directory holds no key"
        );
        s
    }

    /// `srv-secrets init --data DATA` on a data directory of the caller's choosing (on a
    /// file system it made, say), with the socket and the log in a fresh directory; not
    /// started yet.
    pub fn init_at(data: PathBuf) -> SecretsServer {
        let root = shared_tempdir();
        let socket = root.path().join("run/9p.sock");
        SecretsServer::init_in(root, data, None, socket)
    }

    /// `srv-secrets init --data DATA [--key KEY]`, asserting success.
    fn init_in(
        root: tempfile::TempDir,
        data: PathBuf,
        key: Option<PathBuf>,
        socket: PathBuf,
    ) -> SecretsServer {
        let mut cmd = Command::new(&bins().srv_secrets);
        cmd.arg("init").arg("--data").arg(&data);
        if let Some(key) = &key {
            cmd.arg("--key").arg(key);
        }
        let out = cmd.output().expect("srv-secrets init runs");
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SecretsServer {
            socket,
            log: root.path().join("server.log"),
            data,
            root,
            // The whole suite runs the server at trace level, so that the tests that
            // look for leaked values in its log see everything it could print.
            env: vec![("RUST_LOG".into(), "trace".into())],
            args: Vec::new(),
            key,
            child: None,
        }
    }

    /// Initialized and started.
    pub fn start() -> SecretsServer {
        let mut s = SecretsServer::init();
        s.serve();
        s
    }

    /// The `--addr` of this server.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// `srv-secrets serve --data DATA [--key KEY] --listen ADDR`, with [`Self::env`].
    fn serve_command(&self, key: Option<&Path>) -> Command {
        let mut cmd = Command::new(&bins().srv_secrets);
        cmd.arg("serve").arg("--data").arg(&self.data);
        if let Some(key) = key {
            cmd.arg("--key").arg(key);
        }
        cmd.arg("--listen").arg(self.addr());
        cmd.args(&self.args);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `srv-secrets serve` and waits until the socket accepts connections.
    pub fn serve(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open the log");
        let mut cmd = self.serve_command(self.key.as_deref());
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(log);
        self.child = Some(cmd.spawn().expect("srv-secrets serve starts"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("server exited with {status}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "server did not listen: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts `srv-secrets serve` with the HTTP API (`--http unix:RUN/http.sock`) as well,
    /// and waits until both sockets are there: the API's path.
    pub fn serve_with_http(&mut self) -> String {
        let http = self.root.path().join("run/http.sock").display().to_string();
        self.args = vec!["--http".into(), format!("unix:{http}")];
        self.serve();
        // The 9P socket answers first; the HTTP one comes up beside it.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !Path::new(&http).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        http
    }

    /// `srv-secrets serve --key key`, expected to refuse to start: its output, once it
    /// has exited.
    ///
    /// # Panics
    /// If it is still running after 20 s (it started, with a key it should refuse).
    pub fn serve_refused(&self, key: &Path) -> Output {
        let child = self
            .serve_command(Some(key))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("srv-secrets serve starts");
        exits_within(
            child,
            Duration::from_secs(20),
            "serve started with a wrong key",
        )
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGTERM, and the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        child.wait().expect("wait for the server")
    }

    /// SIGTERM, as `systemctl stop` sends it, asserting that the server exits 0.
    pub fn stop_ok(&mut self) {
        let status = self.stop();
        assert_eq!(status.code(), Some(0), "{}", self.log_text());
    }

    /// SIGKILL: a crash.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Everything the server has logged.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to `within` for the log to hold `needle` (in what was logged after
    /// `from` bytes of it); whether it did.
    pub fn wait_for_log(&self, from: usize, needle: &str, within: Duration) -> bool {
        wait_for_text(&self.log, from, needle, within)
    }

    /// The address the server says it listens on with `scheme` (`tls:`, `tcp:`): the
    /// port it was given, or the one it picked for port 0. The `n`th such listener. Waits
    /// for the line: the unix socket may take connections before it is printed.
    pub fn listening_on(&self, scheme: &str, n: usize) -> String {
        self.announced("srv-secrets: listening on ", scheme, n)
    }

    /// The address of the HTTP API's `n`th listener with `scheme`, as the server says.
    pub fn http_on(&self, scheme: &str, n: usize) -> String {
        self.announced("srv-secrets: the plan API (HTTP) on ", scheme, n)
    }

    /// The `n`th address with `scheme` of the server's lines starting `line`.
    fn announced(&self, line: &str, scheme: &str, n: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let found = self
                .log_text()
                .lines()
                .filter_map(|l| l.strip_prefix(line))
                .filter(|a| a.starts_with(scheme))
                .nth(n)
                .map(str::to_string);
            if let Some(addr) = found {
                return addr;
            }
            assert!(
                Instant::now() < deadline,
                "no {scheme} address after {line:?} in the log: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends the server `signal` (`HUP`, say).
    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = self.pid().expect("running");
        let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
        rustix::process::kill_process(pid, signal).expect("signal the server");
    }

    /// Runs `deploy --addr ADDR args...` with empty stdin.
    pub fn deploy(&self, args: &[&str]) -> Output {
        self.deploy_with_stdin(args, b"")
    }

    /// Runs `deploy --addr ADDR args...` with `stdin` piped in.
    pub fn deploy_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut cmd = Command::new(&bins().deploy);
        cmd.arg("--addr").arg(self.addr()).args(args);
        run_with_stdin(cmd, stdin)
    }

    /// Runs `deploy`, asserting success; returns stdout.
    pub fn deploy_ok(&self, args: &[&str]) -> String {
        let out = self.deploy(args);
        assert!(
            out.status.success(),
            "deploy {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `deploy service add NAME --uid UID`, with `--manifest` of a file holding
    /// `manifest` if given; asserts success.
    pub fn add_service(&self, name: &str, uid: u32, manifest: Option<&str>) {
        let uid = uid.to_string();
        let mut args = vec!["service", "add", name, "--uid", &uid];
        let path = self.root.path().join(format!("{name}.manifest"));
        if let Some(text) = manifest {
            std::fs::write(&path, text).expect("write the manifest");
            args.extend(["--manifest", path.to_str().expect("a UTF-8 temp path")]);
        }
        self.deploy_ok(&args);
    }

    /// `deploy secret get NAME --as SERVICE`, asserting success: the bytes the service
    /// reads.
    pub fn get_as(&self, name: &str, service: &str) -> Vec<u8> {
        let out = self.deploy(&["secret", "get", name, "--as", service]);
        assert!(
            out.status.success(),
            "get {name} as {service}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    }

    /// The `9p` test client as `uid` (gid the same), with `--aname aname`.
    fn ninep_command(&self, uid: u32, aname: &str, args: &[&str]) -> Command {
        let mut cmd = as_uid(uid, &bins().ninep);
        cmd.arg("--addr")
            .arg(self.addr())
            .arg("--aname")
            .arg(aname)
            .args(args);
        cmd
    }

    /// Runs the `9p` test client as `uid` (gid the same), with `--aname aname`.
    pub fn ninep_as(&self, uid: u32, aname: &str, args: &[&str]) -> Output {
        run_with_stdin(self.ninep_command(uid, aname, args), b"")
    }

    /// Starts the `9p` test client as `uid`, with piped stdin and stdout (for `hold`).
    pub fn spawn_ninep_as(&self, uid: u32, aname: &str, args: &[&str]) -> Child {
        let mut cmd = self.ninep_command(uid, aname, args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd.spawn().expect("9p starts")
    }
}

impl Drop for SecretsServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Waits up to `within` for `needle` in the file at `path` after its first `from` bytes
/// (a log being written); whether it came.
pub fn wait_for_text(path: &Path, from: usize, needle: &str, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.get(from..).is_some_and(|t| t.contains(needle)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The output of `child` (its stdout and stderr piped), which must exit by itself within
/// `within`.
///
/// # Panics
/// If it is still running then: killed, and `started` said with its stderr.
pub fn exits_within(mut child: Child, within: Duration, started: &str) -> Output {
    let deadline = Instant::now() + within;
    while child.try_wait().expect("poll the child").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait for the child");
            panic!("{started}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("wait for the child")
}

/// A command that runs `program` as `uid`:`uid` with no supplementary groups.
pub fn as_uid(uid: u32, program: &Path) -> Command {
    let mut cmd = Command::new("setpriv");
    cmd.arg(format!("--reuid={uid}"))
        .arg(format!("--regid={uid}"))
        .arg("--clear-groups")
        .arg("--")
        .arg(program);
    cmd
}

/// Runs `cmd` to completion with `stdin` piped in.
pub fn run_with_stdin(mut cmd: Command, stdin: &[u8]) -> Output {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the command starts");
    if let Some(mut i) = child.stdin.take() {
        // A command that exits without reading its input is not an error here.
        let _ = i.write_all(stdin);
    }
    child.wait_with_output().expect("the command finishes")
}

/// curl, the HTTP API's client in the tests.
pub const CURL: &str = "/usr/bin/curl";

/// Whether a test of the HTTP API can run here (curl, and root to be other uids); under
/// CI a missing piece fails the test instead of skipping it.
pub fn can_curl(test: &str) -> bool {
    if Path::new(CURL).exists() && can_switch_uid() {
        return true;
    }
    assert!(
        std::env::var("CI").is_err(),
        "{test} needs curl and root (setpriv)"
    );
    eprintln!("skipping {test}: needs curl and root");
    false
}

/// `curl` as `uid` (`None`: root) on the HTTP API at `socket`: `method path`, with `body`
/// if any (curl's `--data-binary`, so `@FILE` sends a file). The status and the body.
pub fn curl(
    socket: &str,
    uid: Option<u32>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> (u16, String) {
    let mut cmd = match uid {
        Some(u) => as_uid(u, Path::new(CURL)),
        None => Command::new(CURL),
    };
    cmd.args(["--silent", "--unix-socket", socket, "--request", method]);
    if let Some(body) = body {
        cmd.args(["--data-binary", body]);
    }
    cmd.args([
        "--write-out",
        "\n%{http_code}",
        &format!("http://srv-secrets{path}"),
    ]);
    let out = cmd.output().expect("curl runs");
    let text = stdout(&out);
    let (body, code) = text.rsplit_once('\n').expect("curl wrote the status");
    (code.parse().expect("a status code"), body.to_string())
}

/// Whether tests may switch uids (setpriv needs root).
pub fn can_switch_uid() -> bool {
    rustix::process::geteuid().is_root()
        && Command::new("setpriv")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

/// The text of a process's stdout.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The text of a process's stderr.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A `9p hold PATH` as a uid: a fid opened and read once, then read again on the same fid
/// at each [`Held::again`], as a service that keeps a file open does. Killed when dropped.
pub struct Held {
    child: Child,
    input: std::process::ChildStdin,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
}

impl Held {
    /// Opens `path` of `uid`'s view: the holder, and what its first read printed.
    pub fn open(s: &SecretsServer, uid: u32, path: &str) -> (Held, String) {
        Held::spawn(s.spawn_ninep_as(uid, "", &["hold", path]))
    }

    /// A `9p ... hold PATH` started by the caller (with piped stdin and stdout): the
    /// holder, and what its first read printed.
    pub fn spawn(mut child: Child) -> (Held, String) {
        use std::io::BufRead;
        let stdout = child.stdout.take().expect("9p hold's stdout is piped");
        let input = child.stdin.take().expect("9p hold's stdin is piped");
        let mut lines = std::io::BufReader::new(stdout).lines();
        let first = lines
            .next()
            .expect("9p hold printed its first read")
            .expect("9p hold's output is text");
        (
            Held {
                child,
                input,
                lines,
            },
            first,
        )
    }

    /// Reads the same fid again: what `9p hold` printed of it.
    pub fn again(&mut self) -> String {
        writeln!(self.input).expect("9p hold takes a line");
        self.lines
            .next()
            .expect("9p hold printed the read")
            .expect("9p hold's output is text")
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
