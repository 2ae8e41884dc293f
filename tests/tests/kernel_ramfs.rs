//! The kernel-mount proof of the ninep server core: the Linux v9fs client, in
//! a qemu VM, mounts the ramfs (`ninep::ramfs`, the example's filesystem) served
//! by this test process on a unix socket, and a busybox script reads, writes,
//! renames, truncates and provokes errors through the mount.
//!
//! One script runs per boot and prints `CHECK name=value` lines; the host
//! parses them and compares each with what it expects (md5s computed here from
//! the seeded contents, errno texts), and then looks into the served `RamFs`
//! to see that what the guest wrote arrived byte for byte. Every printed check
//! must be asserted, so a new line in the script cannot go unnoticed.
//!
//! Three boots (two at a time, the runner's limit): `version=9p2000`; the
//! kernel's default, where it asks for 9P2000.L, the server answers 9P2000
//! and the kernel must fall back; and the default again against a server that
//! caps msize at its minimum (4096), so every large read and write is split.
//!
//! With 9P2000 the kernel mounts with `access=any`: one attach, as `uname`,
//! for every guest user, and file owners are the `dfltuid` mount option. The
//! mounts set `dfltuid=1001` (the guest's `web`), so that `web` owns every file
//! and a refused write by `web` is the kernel's check on the stat mode, while
//! a refused write by root (who passes the kernel's check) is the server's.
//!
//! Skips with a message when qemu, a kernel or busybox is missing; fails
//! instead under `CI=true`. `RUST_LOG=ninep=trace` logs the 9P exchange.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;

use ninep::ramfs::{self, RamFs, pattern};
use ninep::server::{Filesystem, Limits, Peer, Server, Shutdown, ShutdownTrigger, bind_unix};
use srv_secrets_tests::vm::{self, GuestRun, KernelMount};

/// The seeded files: name and length; byte i of each is `i % 251`.
const SEED: [(&str, usize); 4] = [("empty", 0), ("one", 1), ("8k", 8 << 10), ("1m", 1 << 20)];

/// The guest's half of the test. It never stops at a failure: every step
/// prints a check, and the host decides.
const SCRIPT: &str = r#"
check() { printf 'CHECK %s=%s\n' "$1" "$2"; }
# try NAME COMMAND...: checks "rc=STATUS OUTPUT", stderr merged, newlines as '|'.
try() {
  n=$1; shift
  o=$("$@" 2>&1); r=$?
  check "$n" "rc=$r $(printf %s "$o" | tr '\n' '|')"
}
md5() { md5sum | cut -d' ' -f1; }
hex() { od -An -tx1 -v | tr -d ' \n'; }
exists() { if [ -e "$1" ]; then echo yes; else echo no; fi; }

# The seeded root.
ls -la | sed 's/^/LS /'
for f in empty one 8k 1m; do check "stat.$f" "$(stat -c '%s|%F|%a|%u' $f)"; done
check stat.root "$(stat -c '%F|%a' .)"
check cat.one "$(cat one | hex)"
check cat.8k "$(cat 8k | md5)"
check cat.1m "$(cat 1m | md5)"

# Reads at several block sizes; bs=1 only on the small files.
for f in empty one; do check "dd.$f.1" "$(dd if=$f bs=1 2>/dev/null | md5)"; done
check dd.8k.1.mid "$(dd if=8k bs=1 skip=3900 count=400 2>/dev/null | md5)"
for f in empty one 8k 1m; do
  for bs in 512 4096 65536 1M; do
    check "dd.$f.$bs" "$(dd if=$f bs=$bs 2>/dev/null | md5)"
  done
done
check dd.8k.61 "$(dd if=8k bs=61 2>/dev/null | md5)"
check dd.1m.skip "$(dd if=1m bs=4096 skip=100 count=3 2>/dev/null | md5)"
check dd.one.past_eof "$(dd if=one bs=1 skip=5 2>/dev/null | wc -c)"

# Files opened now and read (or renamed) later.
exec 3< 8k
exec 4< 1m
echo keep > held
exec 5< held
mv held held2

# Writes.
echo hello > new; check write "$(cat new)"
echo world >> new; check append "$(tr '\n' '|' < new)"
echo bye > new; check overwrite "$(tr '\n' '|' < new)"
dd if=/dev/urandom of=/tmp/rand bs=65536 count=16 2>/dev/null
check rand.src "$(md5 < /tmp/rand)"
dd if=/tmp/rand of=rand bs=65536 2>/dev/null; check rand.rc "$?"
check rand.back "$(md5 < rand)"
check rand.size "$(stat -c %s rand)"
dd if=/tmp/rand of=rand1m bs=1M 2>/dev/null; check rand1m.rc "$?"
check rand1m.back "$(md5 < rand1m)"
cat 8k > patch
printf XYZ | dd of=patch bs=1 seek=4000 conv=notrunc 2>/dev/null
check patch "$(dd if=patch bs=1 skip=3998 count=7 2>/dev/null | hex)"
check patch.size "$(stat -c %s patch)"
exec 6> w; echo one >&6; usleep 200000; echo two >&6; exec 6>&-
check fd.write "$(tr '\n' '|' < w)"

# Truncation (Twstat length, or Topen with OTRUNC).
cat 8k > t
truncate -s 100 t; check trunc.size "$(stat -c %s t)"; check trunc.md5 "$(md5 < t)"
truncate -s 300 t; check extend.size "$(stat -c %s t)"; check extend.md5 "$(md5 < t)"
: > t; check trunc0.size "$(stat -c %s t)"

# Directories, remove, rename.
mkdir d; check mkdir "$(stat -c '%F|%a' d)"
echo inner > d/f; check d.ls "$(ls d | tr '\n' '|')"
try rmdir.full rmdir d
try rm.file rm d/f
check d.entries "$(ls -A d | wc -l)"
try rmdir rmdir d
check d.exists "$(exists d)"
echo a > a; try mv.rename mv a b
check mv.rename.new "$(cat b)"; check mv.rename.old "$(exists a)"
mkdir sub; try mv.otherdir mv b sub/b
check mv.otherdir.new "$(cat sub/b)"; check mv.otherdir.old "$(exists b)"
try mv.dir mv sub sub2; check mv.dir.new "$(cat sub2/b)"
echo c > c; echo e > e; try mv.onto mv c e
check mv.onto.e "$(cat e)"
rm -r sub2 c e; check cleanup "$(exists sub2)$(exists c)$(exists e)"
# A directory larger than one message (at the smallest msize): the kernel
# reads it in several Treads, and after a short one asks for the rest of its
# buffer, which may be too small for the next entry.
mkdir many
i=0; while [ $i -lt 60 ]; do : > many/a-longish-file-name-$i; i=$((i + 1)); done
check many.ls "$(ls many | md5)"
try many.rm rm -r many

# Readers and a writer at once: requests outstanding together on the connection.
dd if=1m bs=65536 2>/dev/null | md5 > /tmp/p1 &
dd if=1m bs=4096 2>/dev/null | md5 > /tmp/p2 &
dd if=/tmp/rand of=par bs=65536 2>/dev/null
wait
check parallel "$(cat /tmp/p1) $(cat /tmp/p2) $(md5 < par)"
rm par

# The files opened at the start, read now.
usleep 200000
check late.8k "$(dd bs=4096 <&3 2>/dev/null | md5)"
check late.1m.head "$(dd bs=65536 count=2 <&4 2>/dev/null | md5)"
check late.1m.tail "$(dd bs=65536 <&4 2>/dev/null | md5)"
check held.read "$(cat <&5)"
check held.names "$(exists held)$(exists held2)"
exec 3<&- 4<&- 5<&-

# Errors and their errno.
try err.nosuch cat nosuch
try err.rm.nosuch rm nosuch
try err.notdir ls one/
try err.notdir.walk cat one/x
echo ro > ro; chmod 444 ro; check chmod "$(stat -c %a ro)"
try err.ro.root sh -c 'echo x > ro'
try err.ro.web su web -c 'echo x > /mnt/ro'
check ro.content "$(cat ro)"
echo wo > wo; chmod 200 wo
try err.wo.root cat wo
try web.write su web -c 'echo web > /mnt/webfile && cat /mnt/webfile'
check webfile.owner "$(stat -c %u webfile)"
try err.big dd if=/dev/zero of=big bs=1 count=1 seek=67108864 conv=notrunc
rm -f big ro wo webfile

check names "$(ls | tr '\n' ' ')"
check done 1
"#;

/// The md5 of `data` in hex, from the host's `md5sum` (coreutils, which the
/// runner needs anyway for `timeout`): the guest has only busybox's md5sum.
fn md5(data: &[u8]) -> String {
    let mut child = Command::new("md5sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run md5sum");
    // md5sum prints only after its input ends, so writing all first cannot block on it.
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "md5sum: {:?}", out.status);
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}

fn hex(data: &[u8]) -> String {
    data.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The ramfs, seeded, served on a unix socket by a tokio runtime of
/// its own. The test keeps the `Arc` to look at the files afterwards.
struct Served {
    fs: Arc<RamFs>,
    rt: tokio::runtime::Runtime,
    stop: ShutdownTrigger,
    dir: tempfile::TempDir,
}

impl Served {
    fn start(limits: Limits) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let fs = Arc::new(RamFs::new());
        for (name, len) in SEED {
            fs.add_file(name, pattern(len));
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let listener = rt
            .block_on(bind_unix(&dir.path().join("ramfs.sock")))
            .unwrap();
        let server = Server::from_arc(Arc::clone(&fs), limits);
        let (stop, shutdown) = Shutdown::new();
        rt.spawn(async move { server.serve_unix(listener, shutdown).await });
        Served { fs, rt, stop, dir }
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("ramfs.sock")
    }

    /// The contents of `path` (names separated by '/'), through the
    /// filesystem's own handlers.
    fn read(&self, path: &str) -> Result<Vec<u8>, ninep::Error> {
        self.rt.block_on(async {
            let fid = self.walk(path).await?;
            let len = self.fs.stat(&fid).await?.length;
            let data = self.fs.read(&fid, 0, u32::try_from(len).unwrap()).await?;
            Ok(data.expose().to_vec())
        })
    }

    /// The names in the root directory, sorted.
    fn root_names(&self) -> Vec<String> {
        self.rt.block_on(async {
            let root = self.walk("").await.unwrap();
            let mut names: Vec<String> = self
                .fs
                .readdir(&root)
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.name)
                .collect();
            names.sort();
            names
        })
    }

    async fn walk(&self, path: &str) -> Result<ramfs::RamFid, ninep::Error> {
        let (_, mut fid) = self.fs.attach(&Peer::default(), "", "").await?;
        for name in path.split('/').filter(|n| !n.is_empty()) {
            fid = self.fs.walk(&fid, name).await?.1;
        }
        Ok(fid)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.stop.trigger();
    }
}

/// The guest's `CHECK` lines; each must be asserted exactly once.
struct Checks {
    values: BTreeMap<String, String>,
    failures: Vec<String>,
}

impl Checks {
    fn parse(output: &str) -> Self {
        let mut values = BTreeMap::new();
        let mut failures = Vec::new();
        for line in output.lines() {
            let Some(check) = line.strip_prefix("CHECK ") else {
                continue;
            };
            let (name, value) = check.split_once('=').unwrap_or((check, ""));
            if values.insert(name.to_owned(), value.to_owned()).is_some() {
                failures.push(format!("{name}: printed twice"));
            }
        }
        Checks { values, failures }
    }

    /// The value of check `name`, now asserted by the caller.
    fn take(&mut self, name: &str) -> String {
        self.values.remove(name).unwrap_or_else(|| {
            self.failures.push(format!("{name}: not printed"));
            String::new()
        })
    }

    fn expect(&mut self, name: &str, want: impl AsRef<str>) {
        let got = self.take(name);
        if got != want.as_ref() {
            self.failures
                .push(format!("{name}: got {got:?}, want {:?}", want.as_ref()));
        }
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn finish(self, label: &str, run: &GuestRun) {
        let mut failures = self.failures;
        failures.extend(
            self.values
                .keys()
                .map(|k| format!("{k}: printed, not asserted")),
        );
        assert!(
            failures.is_empty(),
            "{label}: {} failed checks:\n  {}\n--- guest output ---\n{}\n--- status ---\n{}",
            failures.len(),
            failures.join("\n  "),
            run.output,
            run.status
        );
    }
}

/// A mount configuration and what differs in its expectations.
struct Case {
    label: &'static str,
    version: Option<&'static str>,
    max_msize: u32,
}

fn run_case(case: &Case) {
    if !vm::require_or_skip(case.label) {
        return;
    }
    let served = Served::start(Limits {
        max_msize: case.max_msize,
        ..Limits::default()
    });
    let mut mount = KernelMount::unix(served.socket())
        .uname("web")
        .mount_opts("dfltuid=1001,dfltgid=1001");
    if let Some(v) = case.version {
        mount = mount.version(v);
    }
    let run = mount
        .run(SCRIPT)
        .unwrap_or_else(|e| panic!("{}: {e}", case.label));
    report(case.label, &run);
    assert_eq!(
        run.exit_code, 0,
        "{}: exit status\n{}",
        case.label, run.output
    );
    let mut c = Checks::parse(&run.output);
    check_mount(&mut c, case, &run);
    check_listing(&mut c, &run.output);
    check_reads(&mut c);
    check_writes(&mut c, &served);
    check_namespace(&mut c);
    check_late_reads(&mut c);
    check_errors(&mut c);
    let names: Vec<String> = served.root_names();
    let want = [
        "1m", "8k", "empty", "held2", "new", "one", "patch", "rand", "rand1m", "t", "w",
    ];
    c.expect("names", format!("{} ", want.join(" ")));
    if names != want {
        c.fail(format!("the served root holds {names:?}, want {want:?}"));
    }
    c.expect("done", "1");
    c.finish(case.label, &run);
}

fn report(label: &str, run: &GuestRun) {
    let uptime = |word: &str| {
        run.status
            .lines()
            .find(|l| l.starts_with(word))
            .and_then(|l| l.split_once("uptime=").map(|(_, t)| t.split(' ').next()))
            .flatten()
            .and_then(|t| t.parse::<f64>().ok())
    };
    let script = match (uptime("begin "), uptime("umount ")) {
        (Some(b), Some(u)) => format!("{:.2}s", u - b),
        _ => "?".into(),
    };
    eprintln!(
        "{label}: wall {:.2}s (script and umount {script}) accel {}",
        run.wall.as_secs_f64(),
        run.accel
    );
}

/// The status lines: the mount the kernel made, its umount and its 9p messages.
fn check_mount(c: &mut Checks, case: &Case, run: &GuestRun) {
    let mounted = run
        .status
        .lines()
        .find(|l| l.starts_with("mounted "))
        .unwrap_or_default();
    // With the server's "9P2000" answer the kernel runs the legacy protocol,
    // which /proc/mounts shows as "noextend".
    if !mounted.contains(",noextend") {
        c.fail(format!("{}: not a 9P2000 mount: {mounted:?}", case.label));
    }
    let msize = format!(",msize={}", case.max_msize);
    if case.max_msize < Limits::default().max_msize && !mounted.contains(&msize) {
        c.fail(format!("mount line lacks {msize}: {mounted:?}"));
    }
    if !run.status.lines().any(|l| l.starts_with("umount rc=0 ")) {
        c.fail("umount did not succeed".into());
    }
    // An Rerror text that Linux's table (net/9p/error.c) lacks becomes
    // ESERVERFAULT, and the kernel logs it.
    for line in run.status.lines().filter(|l| l.contains("unknown error")) {
        c.fail(format!("the kernel did not know an error string: {line:?}"));
    }
}

/// `ls -la` of the seeded root. 9P2000 directories hold no "." or ".."
/// (read(5)) and the kernel adds none, so `ls -a` shows just the files.
fn check_listing(c: &mut Checks, output: &str) {
    let mut seen = BTreeMap::new();
    for line in output.lines().filter_map(|l| l.strip_prefix("LS ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() >= 9 {
            seen.insert(
                fields[8..].join(" "),
                format!("{} {}", fields[0], fields[4]),
            );
        }
    }
    let want: BTreeMap<String, String> = SEED
        .iter()
        .map(|&(name, len)| (name.to_owned(), format!("-rw-r--r-- {len}")))
        .collect();
    if seen != want {
        c.fail(format!("ls -la: got {seen:?}, want {want:?}"));
    }
    for (name, len) in SEED {
        let ty = if len == 0 {
            "regular empty file"
        } else {
            "regular file"
        };
        c.expect(&format!("stat.{name}"), format!("{len}|{ty}|644|1001"));
    }
    c.expect("stat.root", "directory|777");
}

fn check_reads(c: &mut Checks) {
    let files: BTreeMap<&str, Vec<u8>> = SEED.iter().map(|&(n, l)| (n, pattern(l))).collect();
    let sums: BTreeMap<&str, String> = files.iter().map(|(n, d)| (*n, md5(d))).collect();
    c.expect("cat.one", "00");
    c.expect("cat.8k", &sums["8k"]);
    c.expect("cat.1m", &sums["1m"]);
    c.expect("dd.empty.1", &sums["empty"]);
    c.expect("dd.one.1", &sums["one"]);
    c.expect("dd.8k.1.mid", md5(&files["8k"][3900..4300]));
    for name in ["empty", "one", "8k", "1m"] {
        for bs in ["512", "4096", "65536", "1M"] {
            c.expect(&format!("dd.{name}.{bs}"), &sums[name]);
        }
    }
    c.expect("dd.8k.61", &sums["8k"]);
    c.expect("dd.1m.skip", md5(&files["1m"][100 * 4096..103 * 4096]));
    c.expect("dd.one.past_eof", "0");
}

fn check_writes(c: &mut Checks, served: &Served) {
    c.expect("write", "hello");
    c.expect("append", "hello|world|");
    c.expect("overwrite", "bye|");
    let src = c.take("rand.src");
    if src.len() != 32 {
        c.fail(format!("rand.src: not an md5: {src:?}"));
    }
    c.expect("rand.rc", "0");
    c.expect("rand.back", &src);
    c.expect("rand.size", "1048576");
    c.expect("rand1m.rc", "0");
    c.expect("rand1m.back", &src);
    c.expect("parallel", format!("{0} {0} {src}", md5(&pattern(1 << 20))));
    for name in ["rand", "rand1m"] {
        match served.read(name) {
            Ok(data) if md5(&data) == src && data.len() == 1 << 20 => {}
            Ok(data) => c.fail(format!(
                "served {name}: {} bytes, md5 {}, want 1048576 bytes, md5 {src}",
                data.len(),
                md5(&data)
            )),
            Err(e) => c.fail(format!("served {name}: {e}")),
        }
    }
    let mut patched = pattern(8 << 10);
    patched[4000..4003].copy_from_slice(b"XYZ");
    c.expect("patch", hex(&patched[3998..4005]));
    c.expect("patch.size", "8192");
    match served.read("patch") {
        Ok(data) if data == patched => {}
        Ok(data) => c.fail(format!("served patch differs: {} bytes", data.len())),
        Err(e) => c.fail(format!("served patch: {e}")),
    }
    c.expect("fd.write", "one|two|");
    let served_text = |name: &str| {
        served
            .read(name)
            .map(|d| String::from_utf8_lossy(&d).into_owned())
    };
    for (name, want) in [
        ("new", "bye\n"),
        ("w", "one\ntwo\n"),
        ("held2", "keep\n"),
        ("t", ""),
    ] {
        match served_text(name) {
            Ok(got) if got == want => {}
            other => c.fail(format!("served {name}: got {other:?}, want {want:?}")),
        }
    }

    let eight_k = pattern(8 << 10);
    c.expect("trunc.size", "100");
    c.expect("trunc.md5", md5(&eight_k[..100]));
    let mut extended = eight_k[..100].to_vec();
    extended.resize(300, 0);
    c.expect("extend.size", "300");
    c.expect("extend.md5", md5(&extended));
    c.expect("trunc0.size", "0");
}

fn check_namespace(c: &mut Checks) {
    c.expect("mkdir", "directory|755");
    c.expect("d.ls", "f|");
    c.expect("rmdir.full", "rc=1 rmdir: 'd': Directory not empty");
    c.expect("rm.file", "rc=0 ");
    c.expect("d.entries", "0");
    c.expect("rmdir", "rc=0 ");
    c.expect("d.exists", "no");
    c.expect("mv.rename", "rc=0 ");
    c.expect("mv.rename.new", "a");
    c.expect("mv.rename.old", "no");
    // 9P2000 renames only within a directory (wstat of the name): the kernel
    // says EXDEV and busybox mv copies and removes instead.
    c.expect("mv.otherdir", "rc=0 ");
    c.expect("mv.otherdir.new", "a");
    c.expect("mv.otherdir.old", "no");
    c.expect("mv.dir", "rc=0 ");
    c.expect("mv.dir.new", "a");
    // stat(5): renaming onto an existing name is an error; Linux would
    // replace the target, 9P2000 cannot.
    c.expect("mv.onto", "rc=1 mv: can't rename 'c': File exists");
    c.expect("mv.onto.e", "e");
    c.expect("cleanup", "nonono");
    let mut many: Vec<String> = (0..60)
        .map(|i| format!("a-longish-file-name-{i}\n"))
        .collect();
    many.sort();
    c.expect("many.ls", md5(many.concat().as_bytes()));
    c.expect("many.rm", "rc=0 ");
}

fn check_late_reads(c: &mut Checks) {
    let eight_k = pattern(8 << 10);
    let one_m = pattern(1 << 20);
    c.expect("late.8k", md5(&eight_k));
    c.expect("late.1m.head", md5(&one_m[..128 << 10]));
    c.expect("late.1m.tail", md5(&one_m[128 << 10..]));
    c.expect("held.read", "keep");
    c.expect("held.names", "noyes");
}

fn check_errors(c: &mut Checks) {
    c.expect(
        "err.nosuch",
        "rc=1 cat: can't open 'nosuch': No such file or directory",
    );
    c.expect(
        "err.rm.nosuch",
        "rc=1 rm: can't remove 'nosuch': No such file or directory",
    );
    c.expect("err.notdir", "rc=1 ls: one/: Not a directory");
    c.expect(
        "err.notdir.walk",
        "rc=1 cat: can't open 'one/x': Not a directory",
    );
    c.expect("chmod", "444");
    // Root passes the kernel's mode check: the refusal is the server's.
    c.expect("err.ro.root", "rc=1 sh: can't create ro: Permission denied");
    c.expect(
        "err.ro.web",
        "rc=1 sh: can't create /mnt/ro: Permission denied",
    );
    c.expect("ro.content", "ro");
    c.expect(
        "err.wo.root",
        "rc=1 cat: can't open 'wo': Permission denied",
    );
    c.expect("web.write", "rc=0 web");
    c.expect("webfile.owner", "1001");
    c.expect(
        "err.big",
        "rc=1 dd: error writing 'big': File too large|1+0 records in|0+0 records out",
    );
}

#[test]
fn ramfs_under_the_kernel_with_version_9p2000() {
    run_case(&Case {
        label: "ramfs_under_the_kernel_with_version_9p2000",
        version: Some("9p2000"),
        max_msize: Limits::default().max_msize,
    });
}

#[test]
fn ramfs_under_the_kernel_default_version_falls_back_to_9p2000() {
    run_case(&Case {
        label: "ramfs_under_the_kernel_default_version_falls_back_to_9p2000",
        version: None,
        max_msize: Limits::default().max_msize,
    });
}

#[test]
fn ramfs_under_the_kernel_with_the_smallest_msize() {
    run_case(&Case {
        label: "ramfs_under_the_kernel_with_the_smallest_msize",
        version: None,
        max_msize: ninep::server::MIN_MSIZE,
    });
}
