//! Acceptance steps 3-6 with the Linux kernel's own 9P client (v9fs), not ours.
//!
//! The deployer (root on the host, so the admin) mounts web's view with `aname=web` and
//! `dfltuid`/`dfltgid` set to web's ids, `cache=none`, read-only, nosuid, nodev and noexec,
//! as `deploy service run --mount kernel` does for a service instance. Inside the
//! VM, web reads its secret and config; another uid is refused by the kernel's own
//! check of the 0400 mode; a file web holds open stops reading on revoke; after
//! rotate-key the same values come back.
//!
//! Versions and rotation (issue 12) the same way, in one boot that mounts api's view and
//! then web's (`v9umount`, then `v9mount` again): `@pending` read by web while `deploy
//! secret rotate --test` waits on what web read, refused to api, never listed;
//! `@previous` during an overlap and gone after `retire` and after the overlap's end;
//! rollback; files held open across each step, and cut off by `--revoke-previous`.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::collections::BTreeMap;
use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use srv_secrets_tests::harness::{SecretsServer, bins};
use srv_secrets_tests::vm::{KernelMount, RunningVm, require_or_skip};

const VALUE: &str = "correct horse battery staple";

fn server() -> SecretsServer {
    let s = SecretsServer::start();
    s.add_service(
        "web",
        1001,
        Some("secret db_password\nconfig log_level=debug\n"),
    );
    s.add_service("api", 1002, None);
    let out = s.deploy_with_stdin(&["secret", "set", "db_password"], VALUE.as_bytes());
    assert!(out.status.success());
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    s
}

/// The guest's half: prints `CHECK` lines for the host to assert, and waits on the
/// host between the steps by polling the mount.
const SCRIPT: &str = r#"
cd /mnt
echo "CHECK ls_root=$(ls | tr '\n' ' ')"
echo "CHECK ls_secret=$(ls secret | tr '\n' ' ')"
echo "CHECK ls_config=$(ls config | tr '\n' ' ')"
echo "CHECK mode=$(stat -c '%a %u %g %s' secret/db_password)"
echo "CHECK flags=$(grep ' /mnt ' /proc/mounts | cut -d' ' -f4)"
echo "CHECK web_reads=$(su web -c 'cat /mnt/secret/db_password')"
echo "CHECK config=$(su web -c 'cat /mnt/config/log_level')"
su api -c 'cat /mnt/secret/db_password' >/dev/null 2>/tmp/err; echo "CHECK api_rc=$? $(cat /tmp/err)"
cat secret/no_such_secret >/dev/null 2>/tmp/err; echo "CHECK missing=$(cat /tmp/err)"
# Step 5: hold the file open, then wait for the host to revoke.
exec 3< secret/db_password
echo "CHECK held=$(cat <&3)"
echo READY-REVOKE
i=0
while cat <&3 >/dev/null 2>/tmp/err; do
  i=$((i+1)); [ $i -gt 300 ] && { echo "CHECK revoked=never"; break; }
  usleep 100000
done
echo "CHECK revoked=$(cat /tmp/err)"
exec 3<&-
cat secret/db_password >/dev/null 2>/tmp/err; echo "CHECK reopen=$(cat /tmp/err)"
echo READY-ROTATE
# Step 6: the host grants again and rotates the key, then grants a marker.
i=0
while [ ! -e secret/after_rotation ]; do
  i=$((i+1)); [ $i -gt 600 ] && break
  usleep 100000
done
echo "CHECK after_rotation=$(su web -c 'cat /mnt/secret/db_password')"
echo "CHECK marker=$(cat secret/after_rotation)"
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

fn run(version: Option<&str>) {
    let s = server();
    let mut mount = KernelMount::unix(&s.socket)
        .aname("web")
        // Exactly what `deploy service run --mount kernel` mounts with (its
        // `kernel_options`, and the flags ro, nosuid, nodev, noexec).
        .mount_opts("dfltuid=1001,dfltgid=1001,cache=none,ro,nosuid,nodev,noexec")
        .timeout(Duration::from_secs(180));
    if let Some(v) = version {
        mount = mount.version(v);
    }
    let mut vm = mount.spawn(SCRIPT).expect("the VM starts");
    vm.wait_for_line("READY-REVOKE", Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    s.deploy_ok(&["secret", "revoke", "web", "db_password"]);
    vm.wait_for_line("READY-ROTATE", Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
    s.deploy_ok(&["secret", "grant", "web", "db_password"]);
    s.deploy_ok(&["secret", "rotate-key"]);
    let out = s.deploy_with_stdin(&["secret", "set", "after_rotation"], b"rotated");
    assert!(out.status.success());
    s.deploy_ok(&["secret", "grant", "web", "after_rotation"]);
    let run = vm.wait().expect("the guest finishes");
    let all = checks(&run.output);
    let ctx = &run.output;
    assert_eq!(run.exit_code, 0, "{ctx}");
    assert_eq!(check(&all, "ls_root"), "config events secret", "{ctx}");
    assert_eq!(check(&all, "ls_secret"), "db_password", "{ctx}");
    assert_eq!(check(&all, "ls_config"), "log_level", "{ctx}");
    assert_eq!(
        check(&all, "mode"),
        format!("400 1001 1001 {}", VALUE.len()),
        "{ctx}"
    );
    let flags = check(&all, "flags");
    for flag in ["ro", "nosuid", "nodev", "noexec"] {
        assert!(flags.split(',').any(|f| f == flag), "{flag}: {ctx}");
    }
    assert!(
        !flags.contains("cache=loose") && !flags.contains("fscache"),
        "{ctx}"
    );
    assert_eq!(check(&all, "web_reads"), VALUE, "{ctx}");
    assert_eq!(check(&all, "config"), "debug", "{ctx}");
    assert!(check(&all, "api_rc").starts_with("1 "), "{ctx}");
    assert!(check(&all, "api_rc").contains("Permission denied"), "{ctx}");
    assert!(
        check(&all, "missing").contains("No such file or directory"),
        "{ctx}"
    );
    assert_eq!(check(&all, "held"), VALUE, "{ctx}");
    assert!(
        check(&all, "revoked").contains("No such file or directory"),
        "{ctx}"
    );
    assert!(
        check(&all, "reopen").contains("No such file or directory"),
        "{ctx}"
    );
    assert_eq!(check(&all, "after_rotation"), VALUE, "{ctx}");
    assert_eq!(check(&all, "marker"), "rotated", "{ctx}");
}

#[test]
fn kernel_v9fs_9p2000_reads_revokes_and_rotates() {
    if !require_or_skip("kernel_v9fs_9p2000_reads_revokes_and_rotates") {
        return;
    }
    run(Some("9p2000"));
}

#[test]
fn kernel_v9fs_default_dialect_is_answered_with_9p2000() {
    if !require_or_skip("kernel_v9fs_default_dialect_is_answered_with_9p2000") {
        return;
    }
    run(None);
}

/// The admin tree through v9fs: a shell writes ctl commands the way shells do (open
/// with O_TRUNC, maybe a truncating wstat, one write per line), reads status and
/// grants, and cannot read the key or a store entry.
#[test]
fn kernel_v9fs_admin_tree_takes_ctl_commands_from_a_shell() {
    if !require_or_skip("kernel_v9fs_admin_tree_takes_ctl_commands_from_a_shell") {
        return;
    }
    let s = SecretsServer::start();
    s.add_service("web", 1001, None);
    let script = r#"
cd /mnt/secrets
echo "CHECK ls=$(ls | tr '\n' ' ')"
echo 'set from_shell hello-from-the-shell' > ctl; echo "CHECK set_rc=$?"
printf 'grant web from_shell\n' > ctl; echo "CHECK grant_rc=$?"
echo "CHECK grants=$(cat grants/web)"
echo "CHECK store=$(ls store | tr '\n' ' ')"
echo "CHECK store_stat=$(stat -c '%s %a' store/from_shell)"
cat store/from_shell >/dev/null 2>/tmp/err; echo "CHECK store_read=$?"
cat key >/dev/null 2>/tmp/err; echo "CHECK key_read=$?"
echo "CHECK key_stat=$(stat -c '%a' key)"
echo 'bogus command' > ctl 2>/tmp/err; echo "CHECK bad_rc=$?"
echo "CHECK bad_result=$(cat ctl | tail -n 1)"
echo "set z 'unterminated" > ctl; echo "CHECK dropped_rc=$?"
echo "CHECK dropped_result=$(cat ctl | tail -n 1)"
printf 'begin\nset t1 one\nset t2 two\ncommit\n' > ctl; echo "CHECK txn_rc=$?"
echo "CHECK txn_result=$(cat ctl | tail -n 3 | tr '\n' '|')"
printf 'begin\nset t3 three\nbogus\ncommit\n' > ctl; echo "CHECK bad_txn_rc=$?"
echo "CHECK t3=$(ls store | grep -c t3)"
echo "CHECK backup=$(head -c 4 backup)"
echo "CHECK status=$(grep secrets status)"
echo "CHECK service=$(head -1 services/web)"
"#;
    let run = KernelMount::unix(&s.socket)
        .version("9p2000")
        .mount_opts("cache=none")
        .timeout(Duration::from_secs(120))
        .run(script)
        .expect("the guest finishes");
    let all = checks(&run.output);
    let ctx = &run.output;
    assert_eq!(
        check(&all, "ls"),
        "audit backup ctl events grants key lint plans services stale status store",
        "{ctx}"
    );
    assert_eq!(check(&all, "set_rc"), "0", "{ctx}");
    assert_eq!(check(&all, "grant_rc"), "0", "{ctx}");
    assert_eq!(check(&all, "grants"), "from_shell", "{ctx}");
    assert_eq!(check(&all, "store"), "from_shell", "{ctx}");
    assert_eq!(check(&all, "store_stat"), "20 0", "{ctx}");
    assert_eq!(check(&all, "store_read"), "1", "{ctx}");
    assert_eq!(check(&all, "key_read"), "1", "{ctx}");
    assert_eq!(check(&all, "key_stat"), "0", "{ctx}");
    assert_ne!(check(&all, "bad_rc"), "0", "{ctx}");
    // A shell learns what went wrong by reading ctl: every error, and a command dropped
    // at close (which no client reports).
    assert_eq!(
        check(&all, "bad_result"),
        "ctl: line 1: unknown command; write 'help' for the list",
        "{ctx}"
    );
    assert_eq!(check(&all, "dropped_rc"), "0", "{ctx}");
    assert_eq!(
        check(&all, "dropped_result"),
        "ctl: line 1: set: unterminated quote; close it with ' or send the value as a {N} literal",
        "{ctx}"
    );
    assert_eq!(check(&all, "txn_rc"), "0", "{ctx}");
    assert_eq!(
        check(&all, "txn_result"),
        "ok set t1 version=1|ok set t2 version=1|ok commit commands=2|",
        "{ctx}"
    );
    assert_ne!(check(&all, "bad_txn_rc"), "0", "{ctx}");
    assert_eq!(
        check(&all, "t3"),
        "0",
        "a refused transaction applied in part: {ctx}"
    );
    // The admin's online backup reads through the kernel too (a store file: "redb...").
    assert_eq!(check(&all, "backup"), "redb", "{ctx}");
    assert_eq!(check(&all, "status"), "secrets 3", "{ctx}");
    assert_eq!(check(&all, "service"), "uid 1001", "{ctx}");
    let got = s.deploy(&["secret", "get", "from_shell", "--as", "web"]);
    assert_eq!(got.stdout, b"hello-from-the-shell");
}

/// The guest's `CHECK name=value` lines; each must be asserted exactly once, so that a
/// check added to a script cannot go unasserted.
struct Checks {
    values: BTreeMap<String, String>,
    failures: Vec<String>,
}

impl Checks {
    fn parse(output: &str) -> Self {
        let mut values = BTreeMap::new();
        let mut failures = Vec::new();
        for (name, value) in checks(output) {
            if values.insert(name.clone(), value).is_some() {
                failures.push(format!("{name}: printed twice"));
            }
        }
        Checks { values, failures }
    }

    fn expect(&mut self, name: &str, want: &str) {
        match self.values.remove(name) {
            None => self.failures.push(format!("{name}: not printed")),
            Some(got) if got != want => {
                self.failures
                    .push(format!("{name}: got {got:?}, want {want:?}"));
            }
            Some(_) => {}
        }
    }

    fn finish(self, output: &str) {
        let mut failures = self.failures;
        failures.extend(
            self.values
                .keys()
                .map(|k| format!("{k}: printed, not asserted")),
        );
        assert!(
            failures.is_empty(),
            "{} failed checks:\n  {}\n--- guest output ---\n{output}",
            failures.len(),
            failures.join("\n  ")
        );
    }
}

/// db's versions in the rotation test: the same length, so that a held file re-read from
/// its start (below) reads all of its own version whatever size the kernel last saw.
const V1: &str = "value-v1-aaaa";
const V2: &str = "value-v2-bbbb";
const V3: &str = "value-v3-cccc";
const V4: &str = "value-v4-dddd";
const API_TOKEN: &str = "api-own-token";

/// The guest's half of the rotation test: api's view (not granted db), then web's, while
/// the host rotates db step by step. The guest waits for each step by reading the mount.
const ROTATION_SCRIPT: &str = r#"
check() { printf 'CHECK %s=%s\n' "$1" "$2"; }
# try NAME COMMAND...: checks "rc=STATUS OUTPUT", stderr merged, newlines as '|'.
try() {
  n=$1; shift
  o=$("$@" 2>&1); r=$?
  check "$n" "rc=$r $(printf %s "$o" | tr '\n' '|')"
}
is() { [ "$(cat "$1" 2>/dev/null)" = "$2" ]; }
gone() { ! cat "$1" >/dev/null 2>&1; }
# await NAME COMMAND...: COMMAND every 0.1 s until it succeeds, for up to a minute.
await() {
  n=$1; shift; i=0
  until "$@"; do
    i=$((i + 1))
    [ $i -ge 600 ] && { check "$n" timeout; return 1; }
    usleep 100000
  done
  check "$n" ok
}
# held FD: the file open on FD read again from its start, on the same fid. busybox
# `tail -c N` seeks to the end less N, clamped at 0, and reads to the end; it reports a
# read error but exits 0, so a cat at the end (a read at EOF, empty when all is well)
# gives the status.
held() { eval "tail -c 4096 <&$1 && cat <&$1"; }
# What a listing and a glob of secret/ show, and what the glob reads.
listing() { check "$1" "$(ls -A secret | tr '\n' ' ')|$(echo secret/*)|$(cat secret/*)"; }

cd /
# 1. api's view, while db's rotation waits on its test: api is not granted db.
v9mount /mnt aname=api,dfltuid=1002,dfltgid=1002; check api.mount $?
cd /mnt
listing api.listing
try api.pending cat secret/db@pending
try api.current cat secret/db
try api.previous cat secret/db@previous
cd /
v9umount; check api.umount $?

# 2. web's view: the pending version reads, and is never listed.
v9mount /mnt aname=web,dfltuid=1001,dfltgid=1001; check web.mount $?
cd /mnt
try staged.pending cat secret/db@pending
check staged.stat "$(stat -c '%a %s' secret/db@pending)"
try staged.current cat secret/db
try staged.previous cat secret/db@previous
listing staged.listing
exec 3< secret/db
exec 6< secret/db@pending
try staged.held3 held 3
try staged.held6 held 6
echo READY-VERDICT

# 3. The host passed the test on what web read: promoted, with an overlap of an hour.
await promoted is secret/db value-v2-bbbb
try promoted.current cat secret/db
try promoted.previous cat secret/db@previous
try promoted.pending cat secret/db@pending
listing promoted.listing
exec 4< secret/db@previous
try promoted.held3 held 3
try promoted.held4 held 4
try promoted.held6 held 6
echo READY-RETIRE

# 4. Retired: @previous is gone; files held open read on what they opened.
await retired gone secret/db@previous
try retired.previous cat secret/db@previous
try retired.current cat secret/db
try retired.held3 held 3
try retired.held4 held 4
echo READY-OVERLAP

# 5. Rotated without a test, with a 5 s overlap: @previous until it ends.
await rotated is secret/db value-v3-cccc
try overlap.previous cat secret/db@previous
listing overlap.listing
await overlap_ended gone secret/db@previous
try ended.previous cat secret/db@previous
try ended.current cat secret/db
try ended.held3 held 3
echo READY-ROLLBACK

# 6. Rolled back: version 2 is current again, version 3 previous and read by nobody.
await rolled_back is secret/db value-v2-bbbb
try rollback.current cat secret/db
try rollback.previous cat secret/db@previous
try rollback.held3 held 3
exec 5< secret/db
try rollback.held5 held 5
echo READY-REVOKE

# 7. Rotated with --revoke-previous: every file opened on an older version fails.
await revoked is secret/db value-v4-dddd
try revoked.held3 held 3
try revoked.held4 held 4
try revoked.held5 held 5
try revoked.held6 held 6
try revoked.previous cat secret/db@previous
listing revoked.listing
exec 7< secret/db
try revoked.held7 held 7
exec 3<&- 4<&- 5<&- 6<&- 7<&-
check done 1
"#;

/// Waits for the guest to print `line`: it is at the next step.
fn step(vm: &mut RunningVm, line: &str) {
    vm.wait_for_line(line, Duration::from_secs(150))
        .unwrap_or_else(|e| panic!("{e}\n{}", vm.output()));
}

/// Issue 12's kernel-mount proof of versions, in one boot: `@pending` read through web's
/// kernel mount while `deploy secret rotate --test` waits (its verdict is what web read),
/// refused in api's view, never listed; `@previous` during the overlap, gone after
/// `retire` and after the overlap ends; rollback; files held open across each step, and
/// cut off by `--revoke-previous`.
#[test]
fn kernel_v9fs_sees_a_rotation_step_by_step() {
    if !require_or_skip("kernel_v9fs_sees_a_rotation_step_by_step") {
        return;
    }
    let s = SecretsServer::start();
    s.add_service("web", 1001, None);
    s.add_service("api", 1002, None);
    for (name, value, service) in [("db", V1, "web"), ("api_token", API_TOKEN, "api")] {
        let out = s.deploy_with_stdin(&["secret", "set", name], value.as_bytes());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.deploy_ok(&["secret", "grant", service, name]);
    }
    // The rotation's test command says it runs, then exits with the verdict the host
    // writes once the guest has read the pending value through the mount.
    let dir = s.root.path().join("rotation-test");
    std::fs::create_dir(&dir).unwrap();
    let (running, verdict) = (dir.join("running"), dir.join("verdict"));
    let test = format!(
        "touch {running}; i=0; while [ ! -e {verdict} ]; do i=$((i+1)); \
         [ $i -gt 3000 ] && exit 99; sleep 0.1; done; exit \"$(cat {verdict})\"",
        running = running.display(),
        verdict = verdict.display()
    );
    let mut deploy = Command::new(&bins().deploy)
        .arg("--addr")
        .arg(s.addr())
        .args(["secret", "rotate", "db", "--overlap", "1h", "--test", &test])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    deploy
        .stdin
        .take()
        .unwrap()
        .write_all(V2.as_bytes())
        .unwrap();
    let started = Instant::now();
    while !running.exists() {
        assert!(
            deploy.try_wait().unwrap().is_none(),
            "deploy ended before its test ran"
        );
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the test never ran"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let mut vm = KernelMount::unix(&s.socket)
        .version("9p2000")
        .mount_opts("cache=none,ro,nosuid,nodev,noexec")
        .no_mount()
        .timeout(Duration::from_secs(300))
        .spawn(ROTATION_SCRIPT)
        .expect("the VM starts");
    step(&mut vm, "READY-VERDICT");
    let seen = checks(&vm.output());
    let passed = check(&seen, "staged.pending") == format!("rc=0 {V2}");
    std::fs::write(&verdict, if passed { "0" } else { "1" }).unwrap();
    let out = deploy.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the rotation failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        vm.output()
    );
    assert!(
        stdout.starts_with(
            "the test passed; rotated db: version 2 is current; version 1 stays readable as \
             db@previous until "
        ),
        "{stdout}"
    );

    step(&mut vm, "READY-RETIRE");
    assert_eq!(
        s.deploy_ok(&["secret", "retire", "db"]),
        "retired db's previous version 1: its value is destroyed\n"
    );
    step(&mut vm, "READY-OVERLAP");
    let out = s.deploy_with_stdin(
        &["secret", "rotate", "db", "--overlap", "5s"],
        V3.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    step(&mut vm, "READY-ROLLBACK");
    let out = s.deploy_ok(&["secret", "rollback", "db"]);
    assert!(
        out.starts_with("rolled back db: version 2 is current again; version 3 is previous"),
        "{out}"
    );
    step(&mut vm, "READY-REVOKE");
    let out = s.deploy_with_stdin(
        &["secret", "rotate", "db", "--revoke-previous"],
        V4.as_bytes(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "rotated db: version 4 is current; the previous value was destroyed, and every fid \
         still reading it fails on its next read\n"
    );
    let run = vm.wait().expect("the guest finishes");
    eprintln!(
        "kernel_v9fs_sees_a_rotation_step_by_step: wall {:.2}s accel {}",
        run.wall.as_secs_f64(),
        run.accel
    );
    assert_eq!(run.exit_code, 0, "{}", run.output);

    let mut c = Checks::parse(&run.output);
    let enoent = |path: &str| format!("rc=1 cat: can't open '{path}': No such file or directory");
    let reads = |value: &str| format!("rc=0 {value}");
    let (current, pending, previous) = ("secret/db", "secret/db@pending", "secret/db@previous");
    // 1. api, not granted db, sees none of its versions: its own secret only.
    c.expect("api.mount", "0");
    c.expect(
        "api.listing",
        &format!("api_token |secret/api_token|{API_TOKEN}"),
    );
    c.expect("api.pending", &enoent(pending));
    c.expect("api.current", &enoent(current));
    c.expect("api.previous", &enoent(previous));
    c.expect("api.umount", "0");
    // 2. web, during the test: @pending reads, unlisted; a glob reads the current value.
    c.expect("web.mount", "0");
    c.expect("staged.pending", &reads(V2));
    c.expect("staged.stat", &format!("400 {}", V2.len()));
    c.expect("staged.current", &reads(V1));
    c.expect("staged.previous", &enoent(previous));
    c.expect("staged.listing", &format!("db |secret/db|{V1}"));
    c.expect("staged.held3", &reads(V1));
    c.expect("staged.held6", &reads(V2));
    // 3. Promoted with an overlap: the new value current, the old one @previous.
    c.expect("promoted", "ok");
    c.expect("promoted.current", &reads(V2));
    c.expect("promoted.previous", &reads(V1));
    c.expect("promoted.pending", &enoent(pending));
    c.expect("promoted.listing", &format!("db |secret/db|{V2}"));
    c.expect("promoted.held3", &reads(V1));
    c.expect("promoted.held4", &reads(V1));
    c.expect("promoted.held6", &reads(V2));
    // 4. Retired: @previous gone; held files keep their versions, the retired one too.
    c.expect("retired", "ok");
    c.expect("retired.previous", &enoent(previous));
    c.expect("retired.current", &reads(V2));
    c.expect("retired.held3", &reads(V1));
    c.expect("retired.held4", &reads(V1));
    // 5. The 5 s overlap, then its end.
    c.expect("rotated", "ok");
    c.expect("overlap.previous", &reads(V2));
    c.expect("overlap.listing", &format!("db |secret/db|{V3}"));
    c.expect("overlap_ended", "ok");
    c.expect("ended.previous", &enoent(previous));
    c.expect("ended.current", &reads(V3));
    c.expect("ended.held3", &reads(V1));
    // 6. Rollback.
    c.expect("rolled_back", "ok");
    c.expect("rollback.current", &reads(V2));
    c.expect("rollback.previous", &enoent(previous));
    c.expect("rollback.held3", &reads(V1));
    c.expect("rollback.held5", &reads(V2));
    // 7. --revoke-previous: every older version's file fails; a new open reads the new.
    c.expect("revoked", "ok");
    // "file has been removed", which net/9p/error.c maps to EIDRM (not a text of our
    // own, which the kernel would make ESERVERFAULT, "Unknown error 526").
    for fd in [3, 4, 5, 6] {
        c.expect(
            &format!("revoked.held{fd}"),
            "rc=1 tail: read error: Identifier removed|cat: read error: Identifier removed",
        );
    }
    c.expect("revoked.previous", &enoent(previous));
    c.expect("revoked.listing", &format!("db |secret/db|{V4}"));
    c.expect("revoked.held7", &reads(V4));
    c.expect("done", "1");
    c.finish(&run.output);

    let states: Vec<(u64, String)> = serde_json::from_str::<Vec<serde_json::Value>>(
        &s.deploy_ok(&["secret", "history", "db", "--json"]),
    )
    .unwrap()
    .iter()
    .map(|v| {
        (
            v["version"].as_u64().unwrap(),
            v["state"].as_str().unwrap().to_string(),
        )
    })
    .collect();
    assert_eq!(
        states,
        [
            (4, "current".to_string()),
            (3, "destroyed".to_string()),
            (2, "destroyed".to_string()),
            (1, "destroyed".to_string())
        ]
    );
    assert!(!s.log_text().contains("value-v"), "a value reached the log");
}
