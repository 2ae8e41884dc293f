//! Acceptance steps 3-6 with the Linux kernel's own 9P client (v9fs), not ours.
//!
//! The deployer (root on the host, so the admin) mounts web's view with `aname=web` and
//! `dfltuid`/`dfltgid` set to web's ids, `cache=none`, read-only, nosuid, nodev and noexec,
//! as `deploy service run --mount kernel` does for a service instance. Inside the
//! VM, web reads its secret and config; another uid is refused by the kernel's own
//! check of the 0400 mode; a file web holds open stops reading on revoke; after
//! rotate-key the same values come back.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::time::Duration;

use srv_secrets_tests::harness::SecretsServer;
use srv_secrets_tests::vm::{KernelMount, require_or_skip};

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
    assert_eq!(check(&all, "ls_root"), "config secret", "{ctx}");
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
        "backup ctl grants key lint plans services stale status store",
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
