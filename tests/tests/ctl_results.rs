//! `/secrets/ctl` is read-write: a plain 9P client (our `9p`, no `deploy` in the way)
//! reads one result per command it wrote, a fid that wrote nothing reads the attach's
//! recent results, and `begin` ... `commit` apply all or none, however the writes split.
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::process::Command;

use srv_secrets_tests::harness::{SecretsServer, bins, run_with_stdin, stderr, stdout};

/// `9p rpc secrets/ctl` as root: one Twrite per line of `input`, then the fid's results.
fn rpc(s: &SecretsServer, input: &str) -> (String, String) {
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "rpc", "/secrets/ctl"]);
    let out = run_with_stdin(cmd, input.as_bytes());
    (stdout(&out), stderr(&out))
}

#[test]
fn a_fid_reads_one_result_per_command_it_wrote() {
    let s = SecretsServer::start();
    let (out, err) = rpc(
        &s,
        "set db hunter2\nset db hunter3\nservice web uid 1001\nservice web uid 1002\n\
         grant web db\ngrant web db\nrevoke web nosuch\nrevoke web db\nrevoke web db\n\
         service web manifest 'secret db'\ndelete db\nservice web remove\n",
    );
    assert_eq!(
        out,
        "ok set db version=1\n\
         ok set db version=2\n\
         ok service web uid=1001 created=yes previous=none\n\
         ok service web uid=1002 created=no previous=1001\n\
         ok grant web db already=no\n\
         ok grant web db already=yes\n\
         ctl: line 7: revoke: no such secret; see the names with: deploy secret list\n\
         ok revoke web db was_granted=yes\n\
         ok revoke web db was_granted=no\n\
         ok service web manifest created=no\n\
         ok delete db grants=0\n\
         ok service web remove grants=0\n"
    );
    assert_eq!(
        err,
        "9p: write: ctl: line 7: revoke: no such secret; see the names with: deploy secret list\n"
    );
    // No value in any result, nor in the log.
    assert!(!out.contains("hunter"));
    assert!(!s.log_text().contains("hunter"));
}

#[test]
fn help_answers_with_a_body() {
    let s = SecretsServer::start();
    let (out, _) = rpc(&s, "help\n");
    let body = ctl::help_text();
    assert_eq!(out, format!("ok help {{{}}}\n{body}\n", body.len()));
    for verb in ["begin", "commit", "abort", "set NAME VALUE", "rotate-key"] {
        assert!(body.contains(verb), "{body}");
    }
}

#[test]
fn a_transaction_applies_all_or_none_however_its_writes_split() {
    let s = SecretsServer::start();
    // Each line is its own Twrite: the service made inside the transaction is seen by
    // the grant after it, and nothing is applied before the commit.
    let (out, err) = rpc(
        &s,
        "begin\nset a 1\nservice web uid 1001\ngrant web a\ncommit\n",
    );
    assert_eq!(
        out,
        "ok begin\nok set a version=1\nok service web uid=1001 created=yes previous=none\n\
         ok grant web a already=no\nok commit commands=3\n"
    );
    assert_eq!(err, "");
    assert_eq!(s.get_as("a", "web"), b"1");
    // A command that fails at commit: nothing of the transaction applies.
    let (out, err) = rpc(&s, "begin\nset b 2\ngrant nosuch b\ncommit\nset c 3\n");
    assert_eq!(
        out,
        "ok begin\n\
         ctl: line 3: grant: no such service; add it with: deploy service add NAME --uid UID\n\
         ok set c version=1\n"
    );
    assert!(err.contains("line 3: grant: no such service"), "{err}");
    let list = s.deploy_ok(&["secret", "list"]);
    assert!(!list.contains("\nb "), "{list}");
    // A bad line aborts it; the lines after it, in later writes, are skipped, not
    // applied, and the commit says why.
    let (out, err) = rpc(&s, "begin\nset d 4\nbogus\nset e 5\ncommit\nset f 6\n");
    assert_eq!(
        out,
        "ok begin\n\
         ctl: line 3: unknown command; write 'help' for the list\n\
         ctl: line 5: commit: the transaction was aborted by the error at line 3; nothing \
         was applied\n\
         ok set f version=1\n"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    let list = s.deploy_ok(&["secret", "list"]);
    for absent in ["d", "e"] {
        assert!(!list.contains(&format!("\n{absent} ")), "{list}");
    }
    // Left open at clunk: nothing applies, and a fid that wrote nothing can read why.
    let (out, err) = rpc(&s, "begin\nset g 7\n");
    assert_eq!(out, "ok begin\n");
    assert!(
        err.contains("9p: ctl: line 1: begin: transaction not committed before ctl was closed"),
        "{err}"
    );
    assert!(!s.deploy_ok(&["secret", "list"]).contains("\ng "));
}

#[test]
fn a_fid_that_wrote_nothing_reads_the_recent_results_of_its_attach() {
    let s = SecretsServer::start();
    // As a shell through a mount: a fid per `echo ... > ctl`, then `cat ctl`. The last
    // command never finishes its quote: dropped at close, which no client reports, but
    // the read shows it.
    let shell = |input: &str| {
        let mut cmd = Command::new(&bins().ninep);
        cmd.args(["--addr", &s.addr(), "shell", "/secrets/ctl"]);
        let out = run_with_stdin(cmd, input.as_bytes());
        (stdout(&out), stderr(&out))
    };
    let (out, err) = shell("set a 1\nbogus\nset z 'unterminated\n");
    assert_eq!(
        out,
        "ok set a version=1\n\
         ctl: line 1: unknown command; write 'help' for the list\n\
         ctl: line 1: set: unterminated quote; close it with ' or send the value as a {N} \
         literal\n"
    );
    assert!(
        err.contains("9p: write: ctl: line 1: unknown command"),
        "{err}"
    );
    assert!(
        err.contains("9p: clunk: ctl: line 1: set: unterminated quote"),
        "{err}"
    );
    // Another attach (another mount) sees none of them.
    let mut cmd = Command::new(&bins().ninep);
    cmd.args(["--addr", &s.addr(), "read", "/secrets/ctl"]);
    let other = run_with_stdin(cmd, b"");
    assert_eq!(stdout(&other), "", "{}", stderr(&other));
    // The last 32 only, and an answer's body is not kept: only its size.
    let mut input = String::from("help\n");
    for i in 0..40 {
        input.push_str(&format!("set s{i} v\n"));
    }
    let (out, _) = shell(&input);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 32, "{out}");
    assert_eq!(lines[0], "ok set s8 version=1");
    assert_eq!(lines[31], "ok set s39 version=1");
    let (out, _) = shell("help\n");
    assert_eq!(
        out,
        format!("ok help body_bytes={}\n", ctl::help_text().len())
    );
}
