//! `deploy service run SERVICE [--mount fuse|kernel|auto] -- CMD ARGS...` (root).
//!
//! 1. The grants: every `secret` of SERVICE's manifest must be granted, or nothing starts
//!    (nor while deploys are frozen).
//! 2. A mount namespace of deploy's own (unshare(CLONE_NEWNS) on its main thread, every
//!    mount made private so that nothing propagates back to the host), in which SERVICE's
//!    view is mounted at /secret and /config: FUSE (two fuse9p mounts, of the view's
//!    `secret` and `config`) or the kernel's v9fs (one mount of the view, whose two
//!    directories are then moved to /secret and /config).
//! 3. CMD, spawned from that thread so that it inherits the namespace and no_new_privs, as
//!    SERVICE's uid and gid with no supplementary groups (std's `uid()` drops them). deploy
//!    stays to serve the FUSE mounts, passes signals on, and exits as CMD did.
//! 4. With `--restart-on-change` or `--signal-on-change SIG`, deploy reads SERVICE's
//!    `/events` on a connection of its own (opened before CMD starts, so that no change
//!    after the start is missed) and restarts CMD, or signals it, when a change reaches
//!    what CMD reads: a secret's current version, a grant, a config key.
//!
//! Everything here runs on the one thread of deploy's runtime, which is the thread in the
//! new namespace: mounts and unmounts happen there, and nothing on it touches the FUSE
//! mounts synchronously (their requests are answered on this same runtime).

use std::ffi::{CString, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::ExitStatus;

use fuse9p::Owner;
use rustix::mount::{
    MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};
use tokio::signal::unix::{SignalKind, signal};

use super::mount::mount_view;
use super::owner::unfit_directory;
use super::service::service_report;
use super::watch::{EventStream, Line};
use super::{Outcome, note, validate};
use crate::cli::{MountKind, OnChangeSignal};
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::printable;

/// Where CMD sees the service's secrets.
const SECRET_DIR: &str = "/secret";
/// Where CMD sees the service's config.
const CONFIG_DIR: &str = "/config";

/// The signals passed on to CMD.
const PASSED_ON: [(SignalKind, rustix::process::Signal); 6] = [
    (SignalKind::terminate(), rustix::process::Signal::TERM),
    (SignalKind::interrupt(), rustix::process::Signal::INT),
    (SignalKind::hangup(), rustix::process::Signal::HUP),
    (SignalKind::quit(), rustix::process::Signal::QUIT),
    (SignalKind::user_defined1(), rustix::process::Signal::USR1),
    (SignalKind::user_defined2(), rustix::process::Signal::USR2),
];

/// What `deploy service run` does when a change reaches what CMD reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnChange {
    /// Nothing: CMD reads its files when it likes.
    Nothing,
    /// Stop CMD and start it again (`--restart-on-change`).
    Restart,
    /// Send CMD a signal (`--signal-on-change SIG`).
    Signal(OnChangeSignal),
}

/// How long CMD has to exit after SIGTERM, when it is restarted, before SIGKILL.
const RESTART_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// `deploy service run`.
///
/// # Errors
/// Whatever stopped it before CMD started; after that, CMD's status is the outcome.
pub async fn run(
    server: &Server,
    env: &Env,
    service: &str,
    kind: MountKind,
    on_change: OnChange,
    command: &[OsString],
) -> Result<Outcome, CliError> {
    validate(&ctl::Command::ServiceRemove {
        service: service.to_string(),
    })?;
    if env.euid != 0 {
        return Err(CliError::Deployer(format!(
            "deploy service run needs root: it makes a mount namespace for the command and \
             runs it as {service}'s uid; run it as root (sudo deploy service run {service} -- ...)"
        )));
    }
    let Some((program, args)) = command.split_first() else {
        return Err(CliError::Usage(
            "give the command to run after --: deploy service run SERVICE -- CMD ARGS...".into(),
        ));
    };
    // Caught from the start, so that none ends deploy with its work half done.
    let (caught, mut signals) = tokio::sync::mpsc::unbounded_channel();
    for (kind, sig) in PASSED_ON {
        let mut stream =
            signal(kind).map_err(|e| CliError::Deployer(format!("cannot handle signals: {e}")))?;
        let caught = caught.clone();
        tokio::spawn(
            async move { while stream.recv().await.is_some() && caught.send(sig).is_ok() {} },
        );
    }

    // 1. The grants, unless deploys are frozen (the server would refuse the mount anyway;
    // this says so before anything is looked at).
    let admin = Session::admin(server, env).await?;
    super::breakglass::refuse_if_frozen(&admin, "service run").await?;
    let report = service_report(&admin, service).await?;
    if !report.missing.is_empty() {
        note(&format!(
            "{service} is not granted {} of the {} secrets its manifest needs; nothing was \
             started. Grant each with:",
            report.missing.len(),
            report.secrets.len()
        ));
        for name in &report.missing {
            eprintln!("  deploy secret grant {service} {}", printable(name));
        }
        return Ok(Outcome::Findings);
    }
    let owner = super::owner::service_owner(&admin, service).await?;
    // The admin tree is not needed while the command runs.
    drop(admin);
    if owner.uid == 0 {
        return Err(CliError::Deployer(format!(
            "service {service} has uid 0; refusing to run it as root"
        )));
    }
    for dir in [SECRET_DIR, CONFIG_DIR] {
        if let Some(why) = unfit_directory(Path::new(dir)) {
            return Err(CliError::Deployer(format!(
                "{dir} {why}: deploy service run mounts the view on the empty directories \
                 /secret and /config, which the install step makes \
                 (install -d -m 0755 /secret /config)"
            )));
        }
    }

    // 2. The namespace and the view.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS)
        .map_err(|e| CliError::Deployer(format!("cannot make a mount namespace: {e}")))?;
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::PRIVATE | MountPropagationFlags::REC,
    )
    .map_err(|e| CliError::Deployer(format!("cannot make the namespace's mounts private: {e}")))?;
    let view = mount(server, env, service, owner, kind).await?;

    // 4. The changes, watched from before CMD starts.
    let mut changes = match on_change {
        OnChange::Nothing => None,
        OnChange::Restart | OnChange::Signal(_) => Some(Changes::open(server, env, service).await?),
    };

    // 3. The command.
    rustix::thread::set_no_new_privs(true)
        .map_err(|e| CliError::Deployer(format!("cannot set no_new_privs: {e}")))?;
    let spawn = || {
        tokio::process::Command::new(program)
            .args(args)
            .uid(owner.uid)
            .gid(owner.gid)
            .spawn()
            .map_err(|e| {
                // main passes every error through printable() before it reaches a terminal.
                let name = program.to_string_lossy();
                CliError::Deployer(format!("cannot run {name} as uid {}: {e}", owner.uid))
            })
    };
    let pid_of = |child: &tokio::process::Child| {
        child
            .id()
            .and_then(|id| rustix::process::Pid::from_raw(id as i32))
    };
    let mut child = spawn()?;
    let mut pid = pid_of(&child);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            sig = signals.recv() => {
                if let (Some(pid), Some(sig)) = (pid, sig)
                    && !terminal_sent_it_too(sig)
                {
                    let _ = rustix::process::kill_process(pid, sig);
                }
            }
            lines = next_change(&mut changes) => {
                let lines = match lines {
                    Ok(lines) => lines,
                    Err(e) => {
                        note(&format!("{e}; CMD runs on, no longer restarted or signalled on a change"));
                        changes = None;
                        continue;
                    }
                };
                let Some(why) = what_changed(&lines) else {
                    continue;
                };
                match on_change {
                    OnChange::Signal(sig) => {
                        note(&format!("{why}: sending SIG{} to the command", sig.name));
                        if let Some(pid) = pid {
                            let _ = rustix::process::kill_process(pid, sig.signal);
                        }
                    }
                    OnChange::Restart => {
                        note(&format!("{why}: restarting the command"));
                        // Watched afresh from before the new start: what the old watch
                        // holds happened before it, and the new command reads it anyway.
                        changes = Some(Changes::open(server, env, service).await?);
                        stop(&mut child, pid).await;
                        child = spawn()?;
                        pid = pid_of(&child);
                    }
                    OnChange::Nothing => {}
                }
            }
        }
    };
    drop(view);
    let status =
        status.map_err(|e| CliError::Deployer(format!("cannot wait for the command: {e}")))?;
    Ok(Outcome::Exit(exit_code(status)))
}

/// SERVICE's `/events`, on a connection of deploy's own (the admin's, on its behalf).
struct Changes {
    stream: EventStream,
    _session: Session,
}

impl Changes {
    async fn open(server: &Server, env: &Env, service: &str) -> Result<Changes, CliError> {
        let session = Session::service_view(server, env, service, "service run").await?;
        let stream = EventStream::open(&session, Some(service)).await?;
        Ok(Changes {
            stream,
            _session: session,
        })
    }
}

/// The next lines of the watch, if there is one; never, if not.
async fn next_change(changes: &mut Option<Changes>) -> Result<Vec<Line>, CliError> {
    match changes {
        Some(c) => c.stream.next().await,
        None => std::future::pending().await,
    }
}

/// What of `lines` reaches what CMD reads, said for people (`rotated db 3`): a new current
/// version, a grant gone or new, a secret deleted, a config key, or lines lost (which may
/// have been any of these). A staged version or a previous one retired changes nothing
/// CMD reads at /secret/NAME.
fn what_changed(lines: &[Line]) -> Option<String> {
    use model::{EventLine, Verb};
    let changed: Vec<&str> = lines
        .iter()
        .filter(|l| match &l.event {
            Some(EventLine::Change { verb, .. }) => {
                !matches!(verb, Verb::Pending | Verb::PreviousRetired)
            }
            Some(EventLine::Lost { .. }) => true,
            None => false,
        })
        .map(|l| l.text.as_str())
        .collect();
    (!changed.is_empty()).then(|| changed.join(", "))
}

/// Stops CMD for a restart: SIGTERM, then SIGKILL if it has not exited within
/// [`RESTART_GRACE`].
async fn stop(child: &mut tokio::process::Child, pid: Option<rustix::process::Pid>) {
    if let Some(pid) = pid {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }
    if tokio::time::timeout(RESTART_GRACE, child.wait())
        .await
        .is_err()
    {
        note(&format!(
            "the command did not exit within {}s of SIGTERM; killing it",
            RESTART_GRACE.as_secs()
        ));
        let _ = child.kill().await;
    }
}

/// Whether the terminal delivered `sig` to CMD as well as to us: Ctrl-C and Ctrl-\ reach
/// the whole foreground process group, which CMD shares with deploy. Passing those on
/// again would make one keypress two signals.
fn terminal_sent_it_too(sig: rustix::process::Signal) -> bool {
    if sig != rustix::process::Signal::INT && sig != rustix::process::Signal::QUIT {
        return false;
    }
    rustix::termios::tcgetpgrp(std::io::stdin())
        .is_ok_and(|foreground| foreground == rustix::process::getpgrp())
}

/// The exit status deploy passes on: CMD's, or 128+N for a signal N, as shells report it.
fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => code.clamp(0, 255) as u8,
        (None, Some(sig)) => (128 + sig).clamp(0, 255) as u8,
        (None, None) => 1,
    }
}

/// The mounted view; unmounted (in the namespace) when dropped.
enum View {
    /// Held only to be dropped (unmounted) when the command ends.
    Fuse(#[allow(dead_code, reason = "held for its Drop")] Box<FuseView>),
    Kernel,
}

impl Drop for View {
    fn drop(&mut self) {
        if let View::Kernel = self {
            for dir in [SECRET_DIR, CONFIG_DIR] {
                let _ = rustix::mount::unmount(dir, UnmountFlags::DETACH);
            }
        }
    }
}

/// The two FUSE mounts, and the connection they share.
struct FuseView {
    _secret: fuse9p::Mount,
    _config: fuse9p::Mount,
    _session: Session,
}

/// Mounts `service`'s view at /secret and /config the way `kind` says, saying which.
async fn mount(
    server: &Server,
    env: &Env,
    service: &str,
    owner: Owner,
    kind: MountKind,
) -> Result<View, CliError> {
    // The kernel speaks no TLS and presents no token: over TLS or TCP only deploy's FUSE
    // client can mount.
    let socket = server.addr.unix_path();
    match kind {
        MountKind::Kernel => {
            let socket = socket.ok_or_else(|| {
                CliError::Usage(format!(
                    "--mount kernel needs the server's unix socket (the kernel's 9P client \
                     speaks no TLS and presents no token), not {}: use --mount fuse",
                    server.addr
                ))
            })?;
            kernel_mount(socket, service, owner).map_err(|e| kernel_failed(&e))?;
            note(&format!(
                "mounted {service}'s view with the kernel's 9P client (v9fs)"
            ));
            Ok(View::Kernel)
        }
        MountKind::Fuse => {
            let view = fuse_mount(server, env, service, owner).await?;
            note(&format!(
                "mounted {service}'s view with deploy's FUSE client"
            ));
            Ok(view)
        }
        MountKind::Auto => match socket
            .ok_or_else(|| {
                io::Error::other("the kernel's 9P client speaks no TLS and presents no token")
            })
            .and_then(|socket| kernel_mount(socket, service, owner))
        {
            Ok(()) => {
                note(&format!(
                    "mounted {service}'s view with the kernel's 9P client (v9fs)"
                ));
                Ok(View::Kernel)
            }
            Err(e) => {
                let view = fuse_mount(server, env, service, owner).await?;
                let why = if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
                    "this kernel has no 9p filesystem".to_string()
                } else {
                    format!("the kernel's 9p mount failed: {e}")
                };
                note(&format!(
                    "mounted {service}'s view with deploy's FUSE client ({why})"
                ));
                Ok(view)
            }
        },
    }
}

async fn fuse_mount(
    server: &Server,
    env: &Env,
    service: &str,
    owner: Owner,
) -> Result<View, CliError> {
    let session = Session::service_view(server, env, service, "service run").await?;
    let secret = mount_view(
        server,
        &session,
        &["secret"],
        Path::new(SECRET_DIR),
        service,
        owner,
        true,
    )
    .await?;
    let config = mount_view(
        server,
        &session,
        &["config"],
        Path::new(CONFIG_DIR),
        service,
        owner,
        true,
    )
    .await?;
    Ok(View::Fuse(Box::new(FuseView {
        _secret: secret,
        _config: config,
        _session: session,
    })))
}

fn kernel_failed(e: &io::Error) -> CliError {
    let hint = if e.raw_os_error() == Some(rustix::io::Errno::NODEV.raw_os_error()) {
        "; this kernel has no 9p filesystem: use --mount fuse"
    } else {
        ""
    };
    CliError::Deployer(format!(
        "cannot mount with the kernel's 9p client: {e}{hint}"
    ))
}

/// The v9fs options `deploy service run --mount kernel` uses, and only these:
/// plain 9P2000 (so one attach, `access=any`, the kernel checking modes against
/// dfltuid/dfltgid), and `cache=none`, so that every read is a Tread and a revoke or a new
/// value takes effect at the next read. No `cache=loose`, `fscache` or `mmap`: they keep
/// pages after a revoke and serve an old value after a change.
pub fn kernel_options(service: &str, owner: Owner) -> String {
    format!(
        "trans=unix,version=9p2000,aname={service},dfltuid={},dfltgid={},cache=none",
        owner.uid, owner.gid
    )
}

/// Mounts the view with v9fs at /secret, then moves its `secret` and `config` to /secret
/// and /config (a detached copy of each, open_tree(2), then the view root unmounted).
fn kernel_mount(socket: &Path, service: &str, owner: Owner) -> io::Result<()> {
    let data = CString::new(kernel_options(service, owner)).map_err(io::Error::other)?;
    let source = CString::new(socket.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let flags = MountFlags::RDONLY | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    rustix::mount::mount(source.as_c_str(), SECRET_DIR, "9p", flags, data.as_c_str())?;
    let moved = (|| -> io::Result<()> {
        let clone = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
        let secret = rustix::mount::open_tree(rustix::fs::CWD, "/secret/secret", clone)?;
        let config = rustix::mount::open_tree(rustix::fs::CWD, "/secret/config", clone)?;
        rustix::mount::unmount(SECRET_DIR, UnmountFlags::DETACH)?;
        let empty = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH;
        rustix::mount::move_mount(&secret, "", rustix::fs::CWD, SECRET_DIR, empty)?;
        rustix::mount::move_mount(&config, "", rustix::fs::CWD, CONFIG_DIR, empty)?;
        Ok(())
    })();
    if moved.is_err() {
        for dir in [SECRET_DIR, CONFIG_DIR] {
            let _ = rustix::mount::unmount(dir, UnmountFlags::DETACH);
        }
    }
    moved
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;

    #[test]
    fn exit_statuses_pass_on_as_shells_report_them() {
        assert_eq!(exit_code(ExitStatus::from_raw(7 << 8)), 7);
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        // Killed by SIGTERM (15): 143.
        assert_eq!(exit_code(ExitStatus::from_raw(15)), 143);
    }

    #[test]
    fn kernel_mounts_are_uncached_plain_9p2000() {
        let o = kernel_options(
            "web",
            Owner {
                uid: 1001,
                gid: 2001,
            },
        );
        assert_eq!(
            o,
            "trans=unix,version=9p2000,aname=web,dfltuid=1001,dfltgid=2001,cache=none"
        );
        for never in ["loose", "fscache", "mmap", "readahead"] {
            assert!(!o.contains(never), "{o}");
        }
    }
}
