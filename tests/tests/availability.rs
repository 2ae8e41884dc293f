//! Availability under hostile local users, end to end: the real server, attackers as
//! other uids (setpriv, small python3 scripts), and probes that measure, every 150 ms
//! for several seconds of attack, how long the admin (root) and a service wait to be
//! served: a fresh connection (connect, Tversion, Tattach, walk, open, read) and a read
//! on a connection attached before the attack began. Each must be served within a
//! second throughout; the latencies are printed (max and p99).
//!
//! The attacks are those of a review: a uid mapped to nothing flooding requests without
//! reading the replies (alongside a mapped service doing the same after attaching), and
//! seventeen such uids holding as many connections as they can.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdout, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use srv_secrets_tests::harness::{SecretsServer, as_uid, can_switch_uid};

const PYTHON: &str = "/usr/bin/python3";

/// The service whose availability is probed.
const WEB: u32 = 1001;
/// A mapped service that misbehaves: it attaches, then floods without reading.
const ROGUE: u32 = 1741;
/// A uid mapped to nothing, flooding.
const FLOODER: u32 = 1740;
/// Seventeen uids mapped to nothing, holding connections: 17 × 64 (the per-uid cap of
/// the review) is more than the 1,024 connections the server had in all.
const HOLDERS: std::ops::RangeInclusive<u32> = 1720..=1736;
const HOLDER_CONNECTIONS: usize = 64;

const VALUE: &[u8] = b"correct horse battery staple";

/// How long each attack is measured.
const ATTACK: Duration = Duration::from_secs(6);
/// How often each probe runs.
const PROBE_INTERVAL: Duration = Duration::from_millis(150);
/// The most a probe may wait: "served within a second".
const SERVED_WITHIN_MS: f64 = 1000.0;

/// The attacks compete for the machine's two cores: one at a time.
static ONE_ATTACK_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The 9P helpers the scripts share.
const NINEP_PY: &str = r#"
import socket, struct, sys, threading, time, select, os
def s9(v):
    b = v.encode()
    return struct.pack('<H', len(b)) + b
def frame(t, tag, body):
    return struct.pack('<IBH', 7 + len(body), t, tag) + body
VERSION = frame(100, 0xffff, struct.pack('<I', 8192) + s9('9P2000'))
def attach(aname, fid=0):
    return frame(104, 1, struct.pack('<II', fid, 0xffffffff) + s9('probe') + s9(aname))
def recv_exact(s, n):
    buf = b''
    while len(buf) < n:
        b = s.recv(n - len(buf))
        if not b:
            raise EOFError('the server closed the connection')
        buf += b
    return buf
def rpc(s, t, body, tag=1):
    s.sendall(frame(t, tag, body))
    size, rt, rtag = struct.unpack('<IBH', recv_exact(s, 7))
    rb = recv_exact(s, size - 7)
    if rtag != tag:
        raise Exception('reply for tag %d, not %d' % (rtag, tag))
    if rt == 107:
        raise Exception('Rerror ' + rb[2:].decode())
    if rt != t + 1:
        raise Exception('reply type %d to %d' % (rt, t))
    return rb
def stdin_closed():
    done = threading.Event()
    def wait():
        sys.stdin.read()
        done.set()
    threading.Thread(target=wait, daemon=True).start()
    return done
"#;

/// argv: socket aname file seconds interval. Attaches and opens `file` on a connection it
/// holds, says "ready", and on a line from stdin probes for `seconds`: each round a
/// fresh session (connect, version, attach, walk, open, read, close) and a read on the
/// held one, printing "fresh MS", "held MS" or "fail fresh|held MS why".
const PROBE: &str = r#"
path, aname, file, duration, interval = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), float(sys.argv[5])
names = [n for n in file.split('/') if n]
def session():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(path)
        rpc(s, 100, struct.pack('<I', 8192) + s9('9P2000'), tag=0xffff)
        rpc(s, 104, struct.pack('<II', 0, 0xffffffff) + s9('probe') + s9(aname))
        rb = rpc(s, 110, struct.pack('<IIH', 0, 1, len(names)) + b''.join(s9(n) for n in names))
        if struct.unpack('<H', rb[:2])[0] != len(names):
            raise Exception('no ' + file)
        rpc(s, 112, struct.pack('<IB', 1, 0))
        return s
    except BaseException:
        s.close()
        raise
def read(s):
    rb = rpc(s, 116, struct.pack('<IQI', 1, 0, 4096))
    return rb[4:4 + struct.unpack('<I', rb[:4])[0]]
held = session()
expected = read(held)
print('ready', flush=True)
sys.stdin.readline()
out = []
def ms(start):
    return (time.monotonic() - start) * 1000
end = time.monotonic() + duration
while time.monotonic() < end:
    start = time.monotonic()
    try:
        s = session()
        try:
            if read(s) != expected:
                raise Exception('read other bytes')
        finally:
            s.close()
        out.append('fresh %.1f' % ms(start))
    except Exception as e:
        out.append('fail fresh %.1f %r' % (ms(start), e))
    start = time.monotonic()
    try:
        if held is None:
            raise Exception('no held connection')
        if read(held) != expected:
            raise Exception('read other bytes')
        out.append('held %.1f' % ms(start))
    except Exception as e:
        out.append('fail held %.1f %r' % (ms(start), e))
        if held is not None:
            held.close()
        try:
            held = session()
        except Exception:
            held = None
    time.sleep(max(0, interval - (time.monotonic() - start)))
print('\n'.join(out), flush=True)
"#;

/// argv: socket conns aname. `conns` threads each connect, send Tversion (and Tattach
/// with `aname`, unless it is "-"), then Tclunks of an unknown fid without end, never
/// reading a reply; when the server drops them, they connect again. Says "attacking"
/// once every thread has sent requests; on stdin's end prints how many connections it
/// made.
const FLOOD: &str = r#"
path, conns, aname = sys.argv[1], int(sys.argv[2]), sys.argv[3]
blob = b''.join(frame(120, i, struct.pack('<I', 0x7fff0000)) for i in range(1000))
lock = threading.Lock()
made = [0]
sent = set()
def attack(i):
    while True:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            with lock:
                made[0] += 1
            s.sendall(VERSION)
            if aname != '-':
                s.sendall(attach(aname))
            while True:
                s.sendall(blob)
                sent.add(i)
        except OSError:
            pass
        finally:
            s.close()
for i in range(conns):
    threading.Thread(target=attack, args=(i,), daemon=True).start()
done = stdin_closed()
while len(sent) < conns and not done.is_set():
    time.sleep(0.01)
print('attacking', flush=True)
done.wait()
print('connections', made[0], flush=True)
os._exit(0)
"#;

/// argv: socket n. Keeps `n` connections open that sent Tversion and nothing more,
/// opening again (every 0.2 s) those the server closed. Says "holding" after the first
/// round; on stdin's end waits half a second and prints how many are still open.
const HOLD: &str = r#"
path, n = sys.argv[1], int(sys.argv[2])
socks = [None] * n
def is_open(s):
    try:
        while select.select([s], [], [], 0)[0]:
            if s.recv(4096) == b'':
                return False
        return True
    except OSError:
        return False
def open_one():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(path)
        s.sendall(VERSION)
        return s
    except OSError:
        s.close()
        return None
done = stdin_closed()
first = True
while not done.is_set():
    for i in range(n):
        if socks[i] is not None and not is_open(socks[i]):
            socks[i].close()
            socks[i] = None
        if socks[i] is None:
            socks[i] = open_one()
    if first:
        print('holding', flush=True)
        first = False
    done.wait(0.2)
time.sleep(0.5)
print('open', sum(1 for s in socks if s is not None and is_open(s)), flush=True)
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

/// A server with web and rogue (both granted db_password), logging at info: at the suite's
/// trace level, the server would spend the attack writing a line per frame.
fn server() -> SecretsServer {
    let mut s = SecretsServer::init();
    s.env = vec![("RUST_LOG".into(), "info".into())];
    s.serve();
    s.add_service("web", WEB, None);
    s.add_service("rogue", ROGUE, None);
    let set = s.deploy_with_stdin(&["secret", "set", "db_password"], VALUE);
    assert!(set.status.success());
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    s.deploy_ok(&["secret", "grant", "rogue", "db_password"]);
    s
}

/// A python script (the 9P helpers, then `script`) as `uid`, with piped stdin and
/// stdout.
fn python(uid: u32, script: &str, args: &[&str]) -> (Child, BufReader<ChildStdout>) {
    let mut child = as_uid(uid, Path::new(PYTHON))
        .arg("-c")
        .arg(format!("{NINEP_PY}\n{script}"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn expect_line(out: &mut BufReader<ChildStdout>, what: &str) {
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim_end(), what, "the script did not say {what:?}");
}

/// A probe, attached and holding its file open, waiting for "go".
struct Probe {
    who: &'static str,
    child: Child,
    out: BufReader<ChildStdout>,
}

impl Probe {
    fn start(s: &SecretsServer, who: &'static str, uid: u32, file: &str) -> Probe {
        let socket = s.socket.display().to_string();
        let (child, mut out) = python(
            uid,
            PROBE,
            &[
                &socket,
                "",
                file,
                &ATTACK.as_secs_f64().to_string(),
                &PROBE_INTERVAL.as_secs_f64().to_string(),
            ],
        );
        expect_line(&mut out, "ready");
        Probe { who, child, out }
    }

    fn go(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
    }

    /// Waits for the probe to end; its latencies.
    fn finish(mut self) -> Latencies {
        let mut text = String::new();
        self.out.read_to_string(&mut text).unwrap();
        assert!(self.child.wait().unwrap().success(), "{}: {text}", self.who);
        let mut l = Latencies {
            who: self.who,
            fresh: Vec::new(),
            held: Vec::new(),
            failures: Vec::new(),
        };
        for line in text.lines() {
            let mut words = line.split(' ');
            let (kind, ms) = match words.next() {
                Some("fail") => {
                    l.failures.push(line.to_string());
                    (words.next().unwrap(), f64::INFINITY)
                }
                Some(kind) => (kind, words.next().unwrap().parse::<f64>().unwrap()),
                None => continue,
            };
            match kind {
                "fresh" => l.fresh.push(ms),
                "held" => l.held.push(ms),
                other => panic!("{}: unexpected {other:?} in {line:?}", self.who),
            }
        }
        l
    }
}

/// One probe's measurements, in milliseconds (a failure counts as infinitely late).
struct Latencies {
    who: &'static str,
    fresh: Vec<f64>,
    held: Vec<f64>,
    failures: Vec<String>,
}

/// "n=40 max 12.3 ms p99 12.3 ms".
fn summary(ms: &[f64]) -> String {
    let mut sorted = ms.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p99 = sorted[(sorted.len() * 99).div_ceil(100).max(1) - 1];
    let max = sorted[sorted.len() - 1];
    format!("n={} max {max:.1} ms p99 {p99:.1} ms", sorted.len())
}

/// Prints each probe's latencies under `attack` and asserts that every probe was
/// served within a second.
fn assert_served(attack: &str, results: &[Latencies]) {
    let mut late = Vec::new();
    for l in results {
        println!(
            "availability: {attack}: {}: fresh session {}; read on a held connection {}",
            l.who,
            summary(&l.fresh),
            summary(&l.held)
        );
        for f in l.failures.iter().take(3) {
            println!("availability: {attack}: {}: {f}", l.who);
        }
        for ms in l.fresh.iter().chain(&l.held) {
            if *ms > SERVED_WITHIN_MS {
                late.push(format!("{}: {ms:.1} ms", l.who));
            }
        }
    }
    for l in results {
        // The probes ran throughout: at least a quarter of the 40 rounds they would
        // make, 150 ms apart, in 6 s.
        assert!(
            l.fresh.len() >= 10 && l.fresh.len() == l.held.len(),
            "{attack}: {}: too few probes: {} fresh, {} held",
            l.who,
            l.fresh.len(),
            l.held.len()
        );
    }
    assert!(
        late.is_empty(),
        "{attack}: {} probes waited more than {SERVED_WITHIN_MS} ms (or failed), the first: \
         {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
}

/// Prints the latencies of a principal's probe under its own flood and asserts that it
/// was stalled: the flood took hold, and stalled its sender.
fn assert_stalled(attack: &str, l: &Latencies) {
    let worst = l.fresh.iter().chain(&l.held).copied().fold(0.0, f64::max);
    println!(
        "availability: {attack}: {} (the flooder itself): fresh session {}; read on a held \
         connection {}",
        l.who,
        summary(&l.fresh),
        summary(&l.held)
    );
    assert!(
        worst > SERVED_WITHIN_MS,
        "{attack}: {} was served within {SERVED_WITHIN_MS} ms throughout its own flood: the \
         flood did not take hold, and the test proves nothing",
        l.who
    );
}

fn probes(s: &SecretsServer) -> Vec<Probe> {
    vec![
        Probe::start(s, "admin", 0, "secrets/status"),
        Probe::start(s, "web", WEB, "secret/db_password"),
    ]
}

/// What a flooding script said at its end: how many connections it made.
fn connections_made(mut child: Child, mut out: BufReader<ChildStdout>) -> usize {
    let mut said = String::new();
    out.read_to_string(&mut said).unwrap();
    let _ = child.wait();
    said.trim()
        .strip_prefix("connections ")
        .unwrap_or_else(|| panic!("the flood said {said:?}"))
        .parse()
        .unwrap()
}

#[test]
fn strangers_and_a_rogue_service_flooding_unread_requests_do_not_starve_others() {
    if !require("flooding availability") {
        return;
    }
    let _one = ONE_ATTACK_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let s = server();
    let socket = s.socket.display().to_string();
    let mut probes = probes(&s);
    // The rogue probes too, from a connection attached before its own flood.
    let mut rogue_probe = Probe::start(&s, "rogue", ROGUE, "secret/db_password");
    // A uid mapped to nothing floods on 8 connections without attaching; the rogue
    // service does the same after attaching.
    let (mut stranger, mut stranger_out) = python(FLOODER, FLOOD, &[&socket, "8", "-"]);
    let (mut rogue, mut rogue_out) = python(ROGUE, FLOOD, &[&socket, "8", ""]);
    expect_line(&mut stranger_out, "attacking");
    expect_line(&mut rogue_out, "attacking");
    // Let the flood fill what it can fill.
    std::thread::sleep(Duration::from_millis(500));
    for p in probes.iter_mut().chain([&mut rogue_probe]) {
        p.go();
    }
    let results: Vec<Latencies> = probes.into_iter().map(Probe::finish).collect();
    let rogue_results = rogue_probe.finish();
    drop(stranger.stdin.take());
    drop(rogue.stdin.take());
    let stranger_made = connections_made(stranger, stranger_out);
    let rogue_made = connections_made(rogue, rogue_out);
    let attack = "flood of unread requests";
    println!(
        "availability: {attack}: the stranger connected {stranger_made} times, the rogue \
         service {rogue_made} times"
    );
    assert_served(attack, &results);
    assert_stalled(attack, &rogue_results);
    // A connection that never attaches is allowed a handful of requests, then closed:
    // the stranger had to connect again and again.
    assert!(
        stranger_made > 8 * 10,
        "the stranger's flooding connections were not closed: {stranger_made} connections \
         in {ATTACK:?}"
    );
}

#[test]
fn strangers_holding_connections_do_not_lock_out_the_admin_or_services() {
    if !require("connection slots availability") {
        return;
    }
    let _one = ONE_ATTACK_AT_A_TIME
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let s = server();
    let socket = s.socket.display().to_string();
    let mut probes = probes(&s);
    let mut holders: Vec<(u32, Child, BufReader<ChildStdout>)> = HOLDERS
        .map(|uid| {
            let (child, out) = python(uid, HOLD, &[&socket, &HOLDER_CONNECTIONS.to_string()]);
            (uid, child, out)
        })
        .collect();
    for (_, _, out) in &mut holders {
        expect_line(out, "holding");
    }
    for p in &mut probes {
        p.go();
    }
    let results: Vec<Latencies> = probes.into_iter().map(Probe::finish).collect();
    // All stop opening connections at once, before any counts and exits (and frees
    // slots that the others would take).
    for (_, child, _) in &mut holders {
        drop(child.stdin.take());
    }
    let mut open = Vec::new();
    for (uid, mut child, mut out) in holders {
        let mut said = String::new();
        out.read_to_string(&mut said).unwrap();
        let _ = child.wait();
        let n: usize = said
            .trim()
            .strip_prefix("open ")
            .unwrap_or_else(|| panic!("uid {uid} said {said:?}"))
            .parse()
            .unwrap();
        open.push((uid, n));
    }
    let total: usize = open.iter().map(|(_, n)| n).sum();
    println!(
        "availability: strangers holding connections: {total} held by {} strangers",
        open.len()
    );
    assert_served("strangers holding connections", &results);
    // Strangers have slots of their own, few in all and fewer per uid.
    assert!(total <= 64, "strangers held {total} connections: {open:?}");
    assert!(
        open.iter().all(|(_, n)| *n <= 4),
        "a stranger held more than 4 connections: {open:?}"
    );
}
