//! The events files end to end (issue 13, "The events file"): the real server, the real
//! `deploy`, the plain `9p` client as a service's own uid, ninep's client in this process,
//! and the FUSE mount.
//!
//! - a blocked read woken by a set, a rotation, a revoke and a manifest change, and a name
//!   the service is not granted never in its events (`9p follow` as web, `deploy watch`);
//! - two readers of one view, the slow one told `lost N`; a read smaller than a line;
//! - a flushed blocked read: Rflush, and nothing taken;
//! - 2,000 blocked readers while the admin and another service are served within a second;
//! - SIGTERM with blocked readers: each answered, the server gone promptly;
//! - `cat events` through `deploy mount`, with more readers waiting than the mount has
//!   request slots, woken by a set, a rotation, a revoke and a manifest change; a reader
//!   killed while it waits; the server stopped under them;
//! - `deploy service run --restart-on-change` and `--signal-on-change HUP`.
//!
//! Needs root (setpriv) and curl (the server's metrics say how many reads wait); the FUSE
//! tests need /dev/fuse and fusermount3 too. Without them a test says so and skips, and
//! under CI=true fails.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ninep::client::Client;
use srv_secrets_tests::harness::{SecretsServer, as_uid, bins, can_curl, curl, stderr};

const WEB: u32 = 1001;
const API: u32 = 1002;

/// A server (with its HTTP API, for the metrics) where web (1001) is granted `db` and has
/// a config key, and api (1002) is granted `unrelated`.
fn server() -> (SecretsServer, String) {
    let mut s = SecretsServer::init();
    let http = s.serve_with_http();
    s.add_service("web", WEB, Some("secret db\nconfig level=debug\n"));
    s.add_service("api", API, None);
    for name in ["db", "unrelated"] {
        set(&s, name, b"one");
    }
    s.deploy_ok(&["secret", "grant", "web", "db"]);
    s.deploy_ok(&["secret", "grant", "api", "unrelated"]);
    (s, http)
}

fn set(s: &SecretsServer, name: &str, value: &[u8]) {
    let out = s.deploy_with_stdin(&["secret", "set", name], value);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// The 9P reads waiting on the server now, from its metrics.
fn waiting(http: &str) -> u64 {
    let (code, body) = curl(http, None, "GET", "/metrics", None);
    assert_eq!(code, 200, "{body}");
    body.lines()
        .find_map(|l| l.strip_prefix("srv_secrets_waiting_reads "))
        .unwrap_or_else(|| panic!("no waiting_reads in {body}"))
        .parse()
        .unwrap()
}

/// Waits until `n` reads wait on the server.
fn until_waiting(http: &str, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = waiting(http);
        if now == n {
            return;
        }
        assert!(Instant::now() < deadline, "{now} reads wait, not {n}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process whose stdout lines are collected as they come.
struct Lines {
    child: Child,
    lines: mpsc::Receiver<String>,
    what: String,
}

impl Lines {
    fn spawn(mut cmd: Command, what: &str) -> Lines {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Lines {
            child,
            lines,
            what: what.to_string(),
        }
    }

    /// The next line, within `limit`.
    fn next(&self, limit: Duration) -> String {
        self.lines
            .recv_timeout(limit)
            .unwrap_or_else(|e| panic!("{}: no line within {limit:?}: {e}", self.what))
    }

    /// The next lines, each within 10 s of the one before: `want`, exactly.
    fn expect(&self, want: &[&str]) {
        for w in want {
            assert_eq!(self.next(Duration::from_secs(10)), *w, "{}", self.what);
        }
    }

    /// Nothing more within `quiet`.
    fn nothing_for(&self, quiet: Duration) {
        if let Ok(line) = self.lines.recv_timeout(quiet) {
            panic!("{}: unexpected {line:?}", self.what);
        }
    }

    fn signal(&self, sig: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, sig).unwrap();
    }

    /// Waits for the process to exit, at most `limit`: its status and stderr.
    fn wait(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: running after {limit:?}",
                self.what
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut err = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (status, err)
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `9p follow PATH` as `uid` on the view `aname`.
fn follow(s: &SecretsServer, uid: u32, aname: &str, path: &str) -> Lines {
    let mut cmd = as_uid(uid, &bins().ninep);
    cmd.args(["--addr", &s.addr(), "--aname", aname, "follow", path]);
    Lines::spawn(cmd, &format!("9p follow {path} as {uid}"))
}

/// `deploy watch ARGS` (the admin).
fn watch(s: &SecretsServer, args: &[&str]) -> Lines {
    let mut cmd = Command::new(&bins().deploy);
    cmd.args(["--addr", &s.addr(), "watch"]).args(args);
    Lines::spawn(cmd, &format!("deploy watch {}", args.join(" ")))
}

fn require(test: &str) -> bool {
    can_curl(test)
}

#[test]
fn a_blocked_read_wakes_on_each_change_of_the_service_and_never_shows_another_name() {
    if !require("a_blocked_read_wakes_on_each_change_of_the_service_and_never_shows_another_name") {
        return;
    }
    let (s, http) = server();
    let web = follow(&s, WEB, "", "/events");
    let admin = watch(&s, &[]);
    let web_json = watch(&s, &["web", "--json"]);
    until_waiting(&http, 3);
    // Not web's: it hears nothing of it.
    set(&s, "unrelated", b"two");
    admin.expect(&["set unrelated 2"]);
    set(&s, "db", b"two");
    web.expect(&["set db 2"]);
    let out = s.deploy_with_stdin(
        &[
            "secret",
            "rotate",
            "db",
            "--overlap",
            "1h",
            "--reason",
            "test",
        ],
        b"three",
    );
    assert!(out.status.success(), "{}", stderr(&out));
    web.expect(&["rotated db 3", "previous-retired db 1"]);
    // Another service's grant is not web's business; its own revoke is.
    s.deploy_ok(&["secret", "grant", "api", "db"]);
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    web.expect(&["revoked db 3"]);
    // Not granted any more: its changes are not told to web.
    set(&s, "db", b"four");
    s.add_service("web", WEB, Some("secret db\nconfig level=info\n"));
    let config = web.next(Duration::from_secs(10));
    let revision = config.strip_prefix("config level ").expect(&config);
    assert!(revision.parse::<u64>().is_ok(), "{config}");
    s.deploy_ok(&["secret", "revoke", "api", "unrelated"]);
    s.deploy_ok(&["secret", "delete", "unrelated"]);
    web.nothing_for(Duration::from_millis(500));
    // Nothing of `unrelated` ever reached web; the admin heard everything.
    web_json.expect(&[
        r#"{"verb":"set","name":"db","version":2}"#,
        r#"{"verb":"rotated","name":"db","version":3}"#,
        r#"{"verb":"previous-retired","name":"db","version":1}"#,
        r#"{"verb":"revoked","name":"db","version":3}"#,
        &format!(r#"{{"verb":"config","name":"level","version":{revision}}}"#),
    ]);
    admin.expect(&[
        "set db 2",
        "rotated db 3",
        "previous-retired db 1",
        "granted db 3 api",
        "revoked db 3 web",
        "set db 4",
        "previous-retired db 2",
        &format!("config level {revision} web"),
        "revoked unrelated 2 api",
        "deleted unrelated 2",
    ]);
    // Ctrl-C ends a watch cleanly.
    admin.signal(rustix::process::Signal::INT);
    let (status, err) = admin.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "");
    web_json.signal(rustix::process::Signal::TERM);
    let (status, err) = web_json.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(0), "{err}");
}

/// ninep's client in this process, connected as root: the admin, on `aname`'s view.
async fn attach(s: &SecretsServer, aname: &str) -> ninep::client::Fid {
    let client = Client::connect_unix(&s.socket).await.unwrap();
    client.attach("test", aname).await.unwrap()
}

async fn open(root: &ninep::client::Fid, path: &[&str]) -> ninep::client::Fid {
    let mut f = root.walk(path).await.unwrap();
    f.open(ninep::om::READ).await.unwrap();
    f
}

/// Writes `set db {N}\nVALUE\n` commands to `ctl`, one per Twrite.
async fn ctl_set(ctl: &ninep::client::Fid, value: &str) {
    let command = format!("set db {{{}}}\n{value}\n", value.len());
    ctl.write(0, command.as_bytes()).await.unwrap();
}

#[test]
fn two_readers_of_one_view_and_the_slow_one_is_told_what_it_lost() {
    if !require("two_readers_of_one_view_and_the_slow_one_is_told_what_it_lost") {
        return;
    }
    let (s, http) = server();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let web = attach(&s, "web").await;
        let (quick, slow) = (open(&web, &["events"]).await, open(&web, &["events"]).await);
        let admin = attach(&s, "").await;
        let mut ctl = admin.walk(&["secrets", "ctl"]).await.unwrap();
        ctl.open(ninep::om::RDWR).await.unwrap();
        // 150 sets: the first says one line, each after it two (the version before the
        // previous one is destroyed): 299, more than a reader's 256.
        let mut told = 0;
        for i in 2..=151 {
            ctl_set(&ctl, &format!("v{i}")).await;
            let mut got = String::new();
            while !got.contains(&format!("set db {i}\n")) {
                let d = quick.read(0, 8192).await.unwrap();
                got.push_str(std::str::from_utf8(d.expose()).unwrap());
            }
            told += got.lines().count();
        }
        assert_eq!(told, 299);
        // The slow one reads now: a line in pieces first, then the rest of what it kept.
        assert_eq!(slow.read(0, 5).await.unwrap().expose(), b"set d");
        assert_eq!(slow.read(5, 4).await.unwrap().expose(), b"b 2\n");
        let mut kept = String::new();
        while !kept.contains("lost") {
            let d = slow.read(9, 8192).await.unwrap();
            kept.push_str(std::str::from_utf8(d.expose()).unwrap());
        }
        let lines: Vec<&str> = kept.lines().collect();
        assert_eq!(lines.len(), 256, "{kept}");
        assert_eq!(lines[0], "set db 3");
        assert_eq!(lines[255], "lost 43");
        // And both go on.
        ctl_set(&ctl, "last").await;
        for f in [&quick, &slow] {
            let d = f.read(0, 8192).await.unwrap();
            assert_eq!(
                std::str::from_utf8(d.expose()).unwrap(),
                "set db 152\nprevious-retired db 150\n"
            );
        }
        // A flushed read of a blocked reader: Rflush, and it took nothing.
        let pending = quick
            .client()
            .send(ninep::Tread {
                fid: quick.number(),
                offset: 0,
                count: 8192,
            })
            .unwrap();
        let tag = pending.tag;
        until_waiting(&http, 1);
        quick.client().flush(tag).await.unwrap();
        assert!(
            pending.reply().await.is_err(),
            "the flushed read was answered"
        );
        until_waiting(&http, 0);
        ctl_set(&ctl, "after the flush").await;
        let d = quick.read(0, 8192).await.unwrap();
        assert_eq!(
            std::str::from_utf8(d.expose()).unwrap(),
            "set db 153\nprevious-retired db 151\n"
        );
    });
}

/// `9p park N /events` as web: N reads waiting, over connections of 100.
fn park(s: &SecretsServer, n: usize) -> Lines {
    let mut cmd = as_uid(WEB, &bins().ninep);
    cmd.args(["--addr", &s.addr(), "park", &n.to_string(), "/events"]);
    let parked = Lines::spawn(cmd, "9p park");
    assert_eq!(parked.next(Duration::from_secs(60)), format!("parked {n}"));
    parked
}

/// How long `f` takes, asserting it succeeds.
fn timed(f: impl FnOnce() -> bool) -> Duration {
    let start = Instant::now();
    assert!(f());
    start.elapsed()
}

#[test]
fn two_thousand_blocked_readers_and_the_admin_and_another_service_are_served_within_a_second() {
    if !require(
        "two_thousand_blocked_readers_and_the_admin_and_another_service_are_served_within_a_second",
    ) {
        return;
    }
    let (s, http) = server();
    let parked = park(&s, 2000);
    until_waiting(&http, 2000);
    // Each served at once: the admin, another service, and web itself on another
    // connection (its reply pool is the one the 2,000 reads would spend if they held it).
    let admin = timed(|| s.deploy(&["status"]).status.success());
    let api = timed(|| {
        s.ninep_as(API, "", &["read", "/secret/unrelated"])
            .stdout
            .starts_with(b"one")
    });
    let web = timed(|| {
        s.ninep_as(WEB, "", &["read", "/secret/db"])
            .stdout
            .starts_with(b"one")
    });
    eprintln!("with 2,000 reads waiting: admin {admin:?}, api {api:?}, web {web:?}");
    for (who, took) in [("admin", admin), ("api", api), ("web", web)] {
        assert!(took < Duration::from_secs(1), "{who} waited {took:?}");
    }
    // One change wakes them all.
    set(&s, "db", b"two");
    for _ in 0..2000 {
        assert_eq!(parked.next(Duration::from_secs(30)), "ok set db 2");
    }
    until_waiting(&http, 0);
}

#[test]
fn sigterm_with_blocked_readers_answers_each_and_the_server_exits_promptly() {
    if !require("sigterm_with_blocked_readers_answers_each_and_the_server_exits_promptly") {
        return;
    }
    let (mut s, http) = server();
    let parked = park(&s, 300);
    let admin = watch(&s, &[]);
    let web = follow(&s, WEB, "", "/events");
    until_waiting(&http, 302);
    let stopping = Instant::now();
    let status = s.stop();
    let took = stopping.elapsed();
    eprintln!("SIGTERM with 302 reads waiting: the server exited in {took:?}");
    assert_eq!(status.code(), Some(0), "{}", s.log_text());
    assert!(took < Duration::from_secs(5), "the server took {took:?}");
    for _ in 0..300 {
        assert_eq!(
            parked.next(Duration::from_secs(10)),
            "error device shut down"
        );
    }
    let (status, err) = admin.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err,
        "deploy: reading secrets/events: the server is shutting down; run the command again \
         once it is back\n"
    );
    let (status, err) = web.wait(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(err, "9p: device shut down\n");
}

// ---- Through the FUSE mount, and deploy service run. ----

fn fuse_ready(test: &str) -> bool {
    let fusermount = Command::new("fusermount3")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    for (what, present) in [
        ("/dev/fuse", Path::new("/dev/fuse").exists()),
        ("fusermount3 (apt-get install fuse3)", fusermount),
    ] {
        if !present {
            assert!(std::env::var("CI").is_err(), "{test}: needs {what}");
            eprintln!("skipping {test}: needs {what}");
            return false;
        }
    }
    require(test)
}

/// `deploy mount web DIR --foreground` as root, once it says it mounted.
struct Mount {
    deploy: Lines,
    dir: PathBuf,
}

impl Mount {
    fn start(s: &SecretsServer) -> Mount {
        let dir = s.root.path().join("mnt");
        std::fs::create_dir(&dir).unwrap();
        let mut cmd = Command::new(&bins().deploy);
        cmd.args(["--addr", &s.addr(), "mount", "web"])
            .arg(&dir)
            .arg("--foreground");
        let deploy = Lines::spawn(cmd, "deploy mount");
        let said = deploy.next(Duration::from_secs(20));
        assert!(said.starts_with("mounted "), "{said}");
        Mount { deploy, dir }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.deploy.signal(rustix::process::Signal::TERM);
        let _ = self.deploy.child.wait();
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        let dir = self.dir.to_string_lossy();
        if mounts.lines().any(|l| l.split(' ').nth(1) == Some(&*dir)) {
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}

/// `cat PATH` as web.
fn cat(path: &Path) -> Lines {
    let mut cmd = as_uid(WEB, Path::new("/bin/cat"));
    cmd.arg(path);
    Lines::spawn(cmd, &format!("cat {}", path.display()))
}

#[test]
fn cat_events_through_the_fuse_mount_blocks_and_wakes_and_holds_up_nothing_else() {
    if !fuse_ready("cat_events_through_the_fuse_mount_blocks_and_wakes_and_holds_up_nothing_else") {
        return;
    }
    let (mut s, http) = server();
    let mount = Mount::start(&s);
    let events = mount.dir.join("events");
    // More readers waiting than the mount has request slots (128).
    let cats: Vec<Lines> = (0..150).map(|_| cat(&events)).collect();
    until_waiting(&http, 150);
    let read = timed(|| {
        let mut cmd = as_uid(WEB, Path::new("/bin/cat"));
        cmd.arg(mount.dir.join("secret/db"));
        cmd.output().unwrap().stdout == b"one"
    });
    eprintln!("with 150 cat events waiting, cat secret/db took {read:?}");
    assert!(read < Duration::from_secs(1), "{read:?}");
    set(&s, "db", b"two");
    for c in &cats {
        c.expect(&["set db 2"]);
    }
    let out = s.deploy_with_stdin(&["secret", "rotate", "db", "--overlap", "1h"], b"three");
    assert!(out.status.success(), "{}", stderr(&out));
    for c in &cats {
        c.expect(&["rotated db 3", "previous-retired db 1"]);
    }
    // Ctrl-C on a reader that waits ends it at once; the others wait on.
    let mut cats = cats.into_iter();
    let first = cats.next().unwrap();
    first.signal(rustix::process::Signal::INT);
    let started = Instant::now();
    let (status, _) = first.wait(Duration::from_secs(5));
    eprintln!("a waiting cat ended {:?} after SIGINT", started.elapsed());
    assert!(!status.success());
    until_waiting(&http, 149);
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    s.add_service("web", WEB, Some("secret db\nconfig level=info\n"));
    let cats: Vec<Lines> = cats.collect();
    for c in &cats {
        c.expect(&["revoked db 3"]);
        let config = c.next(Duration::from_secs(10));
        assert!(config.starts_with("config level "), "{config}");
    }
    // The server stopped with them waiting: each is told, and it exits promptly. (A read
    // sent as the server stopped reading is not answered: its connection's end is.)
    let stopping = Instant::now();
    let status = s.stop();
    assert_eq!(status.code(), Some(0), "{}", s.log_text());
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    for c in cats {
        let (status, err) = c.wait(Duration::from_secs(10));
        assert!(!status.success(), "{err}");
        assert!(
            err.contains("Input/output error")
                || err.contains("Transport endpoint is not connected"),
            "{err}"
        );
    }
}

/// /secret and /config exist while a test here runs a service, and are removed after if
/// it made them (each run mounts in a namespace of its own; deployer.rs does the same).
struct MountPoints {
    made: bool,
    _held: std::sync::MutexGuard<'static, ()>,
}

static MOUNT_POINTS: Mutex<()> = Mutex::new(());

impl MountPoints {
    fn hold() -> MountPoints {
        let held = MOUNT_POINTS.lock().unwrap_or_else(|p| p.into_inner());
        let mut made = false;
        for dir in ["/secret", "/config"] {
            if !Path::new(dir).exists() {
                std::fs::create_dir(dir).unwrap();
                made = true;
            }
        }
        MountPoints { made, _held: held }
    }
}

impl Drop for MountPoints {
    fn drop(&mut self) {
        if self.made {
            for dir in ["/secret", "/config"] {
                let _ = std::fs::remove_dir(dir);
            }
        }
    }
}

fn service_run(s: &SecretsServer, args: &[&str], script: &str) -> Lines {
    let mut cmd = Command::new(&bins().deploy);
    cmd.args(["--addr", &s.addr(), "service", "run", "web"])
        .args(args)
        .args(["--", "sh", "-c", script]);
    Lines::spawn(cmd, &format!("deploy service run {}", args.join(" ")))
}

#[test]
fn run_restarts_or_signals_the_command_when_its_secrets_or_config_change() {
    if !fuse_ready("run_restarts_or_signals_the_command_when_its_secrets_or_config_change") {
        return;
    }
    let _points = MountPoints::hold();
    let (s, _http) = server();
    let run = service_run(
        &s,
        &["--mount", "fuse", "--restart-on-change"],
        "echo start $(cat /secret/db) $(cat /config/level); exec sleep 1000",
    );
    run.expect(&["start one debug"]);
    set(&s, "db", b"two");
    run.expect(&["start two debug"]);
    // A staged version changes nothing the command reads: no restart for it.
    let out = s.deploy_with_stdin(&["secret", "rotate", "db", "--test", "exit 3"], b"x");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // Nor does another service's secret.
    set(&s, "unrelated", b"two");
    run.nothing_for(Duration::from_secs(1));
    s.add_service("web", WEB, Some("secret db\nconfig level=info\n"));
    run.expect(&["start two info"]);
    run.signal(rustix::process::Signal::TERM);
    let (status, err) = run.wait(Duration::from_secs(20));
    eprintln!("deploy service run --restart-on-change said:\n{err}");
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains("deploy: set db 2: restarting the command\n"),
        "{err}"
    );
    assert!(!err.contains("pending"), "{err}");

    let run = service_run(
        &s,
        &["--mount", "fuse", "--signal-on-change", "HUP"],
        "trap 'echo hup $(cat /secret/db)' HUP; echo ready; while :; do sleep 0.1; done",
    );
    run.expect(&["ready"]);
    set(&s, "db", b"three");
    run.expect(&["hup three"]);
    s.deploy_ok(&["secret", "revoke", "web", "db"]);
    // The trap's cat fails now: revoked.
    run.expect(&["hup"]);
    run.signal(rustix::process::Signal::TERM);
    let (status, err) = run.wait(Duration::from_secs(20));
    eprintln!("deploy service run --signal-on-change HUP said:\n{err}");
    assert_eq!(status.code(), Some(143), "{err}");
    assert!(
        err.contains("deploy: set db 4: sending SIGHUP to the command\n"),
        "{err}"
    );
}
