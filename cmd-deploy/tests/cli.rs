//! CLI transcripts: runs the `deploy` binary for every `tests/cmd/*.txt` and compares its
//! exit status, stdout and stderr with the file's (the idea of rage's `tests/cmd/*.toml`,
//! in a format that needs no parser crate).
//!
//! These cover what deploy does without a server: finding the address, connection
//! errors and their hints, usage errors and exit codes. The end-to-end tests (package
//! srv-secrets-tests) run the same binary against the real server.
//!
//! A transcript:
//!
//! ```text
//! # comments
//! args: secret list --addr unix:$TMP/dead.sock   (split on blanks)
//! env: NAME=VALUE                                (repeatable)
//! stdin: one line of input                       (else stdin is empty)
//! status: 1
//! --- stdout                                     (absent: not checked)
//! --- stderr                                     (each section: exact text)
//! deploy: cannot connect ...
//! ```
//!
//! `$TMP` is a fresh directory per transcript, holding `dead.sock`: a socket that was
//! bound and closed, so connecting to it is refused. The environment is cleared of
//! SRV_SECRETS_ADDR, SRV_SECRETS_CONTEXT and XDG_RUNTIME_DIR unless the transcript sets
//! them, and XDG_CONFIG_HOME is `$TMP/config` (where no contexts are yet).
#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::fs;
use std::io::Write;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::{Command, Stdio};

struct Transcript {
    args: Vec<String>,
    env: Vec<(String, String)>,
    stdin: String,
    status: i32,
    stdout: Option<String>,
    stderr: Option<String>,
}

fn parse(text: &str, tmp: &str) -> Transcript {
    let text = text.replace("$TMP", tmp);
    let mut t = Transcript {
        args: Vec::new(),
        env: Vec::new(),
        stdin: String::new(),
        status: 0,
        stdout: None,
        stderr: None,
    };
    let mut section: Option<&mut Option<String>> = None;
    for line in text.lines() {
        if let Some(name) = line.strip_prefix("--- ") {
            let slot = match name {
                "stdout" => &mut t.stdout,
                "stderr" => &mut t.stderr,
                other => panic!("unknown section {other}"),
            };
            *slot = Some(String::new());
            section = Some(slot);
            continue;
        }
        if let Some(out) = section.as_mut() {
            let out = out.as_mut().expect("set when the section began");
            out.push_str(line);
            out.push('\n');
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (key, value) = line.split_once(": ").expect("header lines are KEY: VALUE");
        match key {
            "args" => t.args = value.split_whitespace().map(String::from).collect(),
            "env" => {
                let (k, v) = value.split_once('=').expect("env: NAME=VALUE");
                t.env.push((k.into(), v.into()));
            }
            "stdin" => t.stdin = format!("{value}\n"),
            "status" => t.status = value.parse().expect("status: N"),
            other => panic!("unknown header {other}"),
        }
    }
    t
}

fn run(path: &Path) -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    drop(UnixListener::bind(tmp.path().join("dead.sock")).map_err(|e| e.to_string())?);
    let text = fs::read_to_string(path).map_err(|e| e.to_string())?;
    let t = parse(&text, &tmp.path().display().to_string());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deploy"));
    cmd.args(&t.args)
        .env_remove("SRV_SECRETS_ADDR")
        .env_remove("SRV_SECRETS_CONTEXT")
        .env_remove("XDG_RUNTIME_DIR")
        .env("XDG_CONFIG_HOME", tmp.path().join("config"))
        .envs(t.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // deploy may exit before reading stdin: a closed pipe is fine here.
        let _ = stdin.write_all(t.stdin.as_bytes());
    }
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() != Some(t.status) {
        problems.push(format!(
            "status {:?}, expected {}",
            out.status.code(),
            t.status
        ));
    }
    for (name, got, want) in [
        ("stdout", &stdout, &t.stdout),
        ("stderr", &stderr, &t.stderr),
    ] {
        if let Some(want) = want
            && got.as_ref() != want
        {
            problems.push(format!("{name}:\n  got:  {got:?}\n  want: {want:?}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} (args {:?}):\n{}",
            path.display(),
            t.args,
            problems.join("\n")
        ))
    }
}

#[test]
fn transcripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cmd");
    let mut paths: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 10,
        "transcripts missing from {}",
        dir.display()
    );
    let failures: Vec<String> = paths.iter().filter_map(|p| run(p).err()).collect();
    assert!(
        failures.is_empty(),
        "{} of {} transcripts failed:\n\n{}",
        failures.len(),
        paths.len(),
        failures.join("\n\n")
    );
}

#[test]
fn help_lists_every_command() {
    let out = Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(["secret", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    for cmd in [
        "set",
        "list",
        "delete",
        "grant",
        "revoke",
        "rotate-key",
        "get",
    ] {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(cmd)),
            "{cmd} missing from:\n{help}"
        );
    }
}

fn deploy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(args)
        .env_remove("SRV_SECRETS_ADDR")
        .output()
        .unwrap()
}

fn help(args: &[&str]) -> String {
    let out = deploy(args);
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn the_address_rules_are_explained_once_at_the_top() {
    let top = help(&["--help"]);
    assert_eq!(top.matches("/tmp/srv-secrets-$EUID").count(), 1, "{top}");
    assert!(top.contains("Server address:"), "{top}");
    for args in [
        &["secret", "list", "--help"][..],
        &["secret", "set", "--help"],
        &["secret", "--help"],
        &["service", "check", "-h"],
        &["status", "--help"],
    ] {
        let text = help(args);
        assert!(
            !text.contains("/tmp/srv-secrets-$EUID"),
            "{args:?}:\n{text}"
        );
        // Still there, in one line, and usable after the subcommand.
        assert!(text.contains("--addr <ADDR>"), "{args:?}:\n{text}");
    }
}

#[test]
fn the_main_commands_show_examples() {
    for (args, example) in [
        (
            &["secret", "set", "--help"][..],
            "deploy secret set tls_key < key.pem",
        ),
        (
            &["secret", "get", "--help"],
            "deploy secret get db_password --as web",
        ),
        (&["secret", "list", "--help"], "deploy secret list 'db_*'"),
        (
            &["secret", "grant", "--help"],
            "deploy secret grant web db_password",
        ),
        (
            &["secret", "revoke", "--help"],
            "deploy secret revoke web db_password",
        ),
        (
            &["service", "add", "--help"],
            "deploy service add web --uid 1001",
        ),
        (&["service", "check", "--help"], "deploy service check web"),
        (&["status", "--help"], "deploy status --json"),
        (&["status", "-h"], "deploy status --json"),
    ] {
        let text = help(args);
        let examples = text
            .split_once("Examples:\n")
            .map(|(_, e)| e)
            .unwrap_or_else(|| panic!("no Examples: in {args:?}:\n{text}"));
        assert!(examples.contains(example), "{args:?}:\n{text}");
    }
}

#[test]
fn completions_for_each_shell_come_from_the_same_definition() {
    for (shell, marker) in [
        ("bash", "_deploy()"),
        ("zsh", "#compdef deploy"),
        ("fish", "complete -c deploy"),
    ] {
        let out = deploy(&["completions", shell]);
        assert!(out.status.success(), "{shell}");
        let script = String::from_utf8(out.stdout).unwrap();
        assert!(script.contains(marker), "{shell}:\n{script}");
        // Nested subcommands and flags added later are in it too.
        for word in ["rotate-key", "allow-empty", "timeout"] {
            assert!(script.contains(word), "{shell} lacks {word}");
        }
    }
    let out = deploy(&["completions", "tcsh"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_to_stdout_and_one_per_command_to_a_directory() {
    let page = help(&["manpage"]);
    assert!(page.contains(".TH deploy 1"), "{page}");
    assert!(page.contains("Server address:"), "{page}");
    let dir = tempfile::tempdir().unwrap();
    let out = deploy(&["manpage", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    for name in [
        "deploy.1",
        "deploy-secret.1",
        "deploy-secret-set.1",
        "deploy-secret-list.1",
        "deploy-service-check.1",
        "deploy-status.1",
    ] {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        assert!(text.contains(".TH deploy"), "{name}");
    }
    let set = fs::read_to_string(dir.path().join("deploy-secret-set.1")).unwrap();
    assert!(set.contains("allow\\-empty"), "{set}");
    // A directory that is not there is an error that names it.
    let missing = dir.path().join("no/such");
    let out = deploy(&["manpage", "--dir", missing.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.starts_with("deploy: cannot write man pages to "),
        "{err}"
    );
}

/// `deploy ARGS` with its contexts under `config`, the environment cleared of the
/// address variables and `env` added.
fn deploy_in(config: &Path, env: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deploy"))
        .args(args)
        .env_remove("SRV_SECRETS_ADDR")
        .env_remove("SRV_SECRETS_CONTEXT")
        .env_remove("XDG_RUNTIME_DIR")
        .env("XDG_CONFIG_HOME", config)
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn contexts_name_servers_and_the_flags_given_still_win() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config");
    let t = tmp.path().display().to_string();
    // Sockets that were bound and closed: connecting to them is refused, which names the
    // address deploy chose.
    for name in ["a.sock", "b.sock", "env.sock", "flag.sock"] {
        drop(UnixListener::bind(tmp.path().join(name)).unwrap());
    }
    let run = |env: &[(&str, &str)], args: &[&str]| deploy_in(&config, env, args);
    let ok = |env: &[(&str, &str)], args: &[&str]| {
        let out = run(env, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let chose = |env: &[(&str, &str)], args: &[&str]| {
        let out = run(env, args);
        let err = String::from_utf8(out.stderr).unwrap();
        err.strip_prefix("deploy: cannot connect to srv-secrets at ")
            .and_then(|rest| rest.split_once(": "))
            .map(|(addr, _)| addr.to_string())
            .unwrap_or_else(|| panic!("{args:?}: {err}"))
    };
    let a = format!("{t}/a.sock");
    let saved = ok(&[], &["context", "add", "a", "--addr", &a]);
    assert_eq!(
        saved,
        format!("saved context a: unix:{a} (your uid); use it with deploy --context a\n")
    );
    ok(
        &[],
        &["context", "add", "b", "--addr", &format!("unix:{t}/b.sock")],
    );
    // The file is ours alone, and names no token.
    let file = config.join("srv-secrets/contexts.toml");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode(&file), mode(file.parent().unwrap())), (0o600, 0o700));
    let list = ok(&[], &["context", "list"]);
    assert_eq!(
        list,
        format!(
            "NAME  ADDR{pad}  CA  IDENTITY\na     unix:{a}  -   your uid\nb     unix:{t}/b.sock  -   your uid\n",
            pad = " ".repeat(a.len() + 5 - 4)
        )
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&[], &["context", "list", "--json"])).unwrap();
    assert_eq!(json[1]["name"], "b");
    assert_eq!(json[1]["addr"], format!("unix:{t}/b.sock"));
    // --addr, then --context, then SRV_SECRETS_CONTEXT, then SRV_SECRETS_ADDR.
    let env_addr = format!("unix:{t}/env.sock");
    let both = [
        ("SRV_SECRETS_CONTEXT", "b"),
        ("SRV_SECRETS_ADDR", env_addr.as_str()),
    ];
    assert_eq!(chose(&both, &["status"]), format!("unix:{t}/b.sock"));
    assert_eq!(
        chose(&both, &["--context", "a", "status"]),
        format!("unix:{a}")
    );
    assert_eq!(
        chose(&[("SRV_SECRETS_ADDR", &env_addr)], &["status"]),
        env_addr
    );
    let flag = format!("unix:{t}/flag.sock");
    assert_eq!(chose(&both, &["--addr", &flag, "status"]), flag);
    assert_eq!(
        chose(&both, &["--context", "a", "--addr", &flag, "status"]),
        flag
    );
    // An unknown context lists the known ones.
    let out = run(&[], &["--context", "c", "status"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "deploy: --context c: no such context; the contexts are a, b (deploy context list \
         shows them)\n"
    );
    // Saved again only with --force.
    let out = run(&[], &["context", "add", "a", "--addr", &flag]);
    assert_eq!(out.status.code(), Some(2));
    ok(&[], &["context", "add", "a", "--addr", &flag, "--force"]);
    assert_eq!(chose(&[], &["--context", "a", "status"]), flag);
    // Opened to others, the file is refused with what to do.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&[], &["--context", "a", "status"]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("it has mode 644, open to group or others: run `chmod 600"),
        "{err}"
    );
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(ok(&[], &["context", "remove", "a"]), "removed context a\n");
    let out = run(&[], &["context", "remove", "a"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(ok(&[], &["context", "show", "b"]).contains("addr:        unix:"));
}
