//! `deploy mount SERVICE DIR [--foreground]`: a service's view over FUSE (crate fuse9p).
//!
//! Root mounts on the service's behalf (the admin attaching aname = the service): files
//! owned by the service's uid and gid, `allow_other`, so that the service reads them and
//! the kernel refuses every other uid. Anyone else mounts the view the server gives them
//! for that aname (a service: its own), for themselves alone.
//!
//! Without --foreground the same deploy is started again with --foreground, in a process
//! group of its own (so that the terminal's Ctrl-C does not reach it), and this one returns
//! once that one says it has mounted: its first line of stdout. What the serving deploy
//! says after that goes nowhere (run --foreground under a supervisor to keep it).

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use fuse9p::Owner;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::signal::unix::{SignalKind, signal};

use super::owner::service_owner;
use super::{Outcome, note, validate};
use crate::connect::{Env, Server, Session};
use crate::error::CliError;
use crate::output::write_text;

/// The first words of the line --foreground prints once mounted.
const MOUNTED: &str = "mounted ";

/// The command, as its refusals name it.
const WHAT: &str = "mount";

/// `deploy mount`.
///
/// # Errors
/// Whatever stopped the mount, with what to do about it.
pub async fn mount(
    server: &Server,
    env: &Env,
    service: &str,
    dir: &Path,
    foreground: bool,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    validate(&ctl::Command::ServiceRemove {
        service: service.to_string(),
    })?;
    if !dir.is_dir() {
        return Err(CliError::Deployer(format!(
            "{} is not a directory; make it first (mkdir -p {})",
            dir.display(),
            dir.display()
        )));
    }
    let dir = std::fs::canonicalize(dir).map_err(|source| CliError::Read {
        what: dir.display().to_string(),
        source,
    })?;
    if foreground {
        serve(server, env, service, &dir, out).await
    } else {
        in_background(server, service, &dir, out).await
    }
}

/// Mounts, serves until unmounted or told to stop by a signal, and unmounts.
async fn serve(
    server: &Server,
    env: &Env,
    service: &str,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let signal_error = |e: io::Error| CliError::Deployer(format!("cannot handle signals: {e}"));
    let mut term = signal(SignalKind::terminate()).map_err(signal_error)?;
    let mut int = signal(SignalKind::interrupt()).map_err(signal_error)?;
    let mut hup = signal(SignalKind::hangup()).map_err(signal_error)?;
    let (view, owner, allow_other) = attach(server, env, service).await?;
    let mut mount = mount_view(server, &view, &[], dir, service, owner, allow_other).await?;
    write_text(
        out,
        &format!("{MOUNTED}{service}'s view at {}\n", dir.display()),
    )?;
    out.flush().map_err(CliError::Stdout)?;
    tokio::select! {
        () = mount.ended() => {
            note(&format!("{} was unmounted; stopping", dir.display()));
            return Ok(Outcome::Done);
        }
        _ = term.recv() => {}
        _ = int.recv() => {}
        _ = hup.recv() => {}
    }
    mount.unmount().map_err(|e| {
        CliError::Deployer(format!(
            "cannot unmount {}: {e}; unmount it with `fusermount3 -u {}`",
            dir.display(),
            dir.display()
        ))
    })?;
    Ok(Outcome::Done)
}

/// Connects and attaches `service`'s view: as root, on its behalf (with its uid and gid
/// as the owner, for others to use); otherwise as ourselves, for ourselves.
async fn attach(
    server: &Server,
    env: &Env,
    service: &str,
) -> Result<(Session, Owner, bool), CliError> {
    if env.euid == 0 {
        let admin = Session::admin(server, env).await?;
        let owner = service_owner(&admin, service).await?;
        let view = Session::service_view(server, env, service, WHAT).await?;
        return Ok((view, owner, true));
    }
    let view = Session::service_view(server, env, service, WHAT)
        .await
        .map_err(|e| not_yours(e, service, env.euid))?;
    let owner = Owner {
        uid: env.euid,
        gid: rustix::process::getegid().as_raw(),
    };
    Ok((view, owner, false))
}

/// Says, for a uid that is not root, why the server will not show it `service`'s view.
fn not_yours(e: CliError, service: &str, euid: u32) -> CliError {
    match e {
        CliError::NotAdmin {
            uid, service: own, ..
        } => CliError::Deployer(format!(
            "uid {uid} is service {own}: it may mount only its own view \
             (`deploy mount {own} DIR`); root mounts any service's view"
        )),
        CliError::AttachRefused { .. } => CliError::Deployer(format!(
            "uid {euid} is neither root nor service {service}, so the server does not show \
             it {service}'s view; run `deploy mount {service} DIR` as root or as {service}'s uid"
        )),
        other => other,
    }
}

/// Mounts the tree at `path` in `view` (the root for `deploy mount`; `secret` or `config`
/// for `deploy service run`) at `dir`.
pub(crate) async fn mount_view(
    server: &Server,
    view: &Session,
    path: &[&str],
    dir: &Path,
    service: &str,
    owner: Owner,
    allow_other: bool,
) -> Result<fuse9p::Mount, CliError> {
    let root = tokio::time::timeout(server.timeout, view.root().walk(path))
        .await
        .map_err(|_| CliError::NoAnswer {
            addr: server.addr.to_string(),
            after: server.timeout,
            during: format!("walking to {service}'s view"),
        })?
        .map_err(|e| CliError::request(format!("walking to {service}'s view"), e))?;
    let options = fuse9p::Options {
        owner,
        allow_other,
        timeout: server.timeout,
        fsname: format!("srv-secrets:{service}"),
    };
    fuse9p::Mount::new(root, dir, tokio::runtime::Handle::current(), &options)
        .map_err(|e| mount_failed(&e, service, dir))
}

/// A failed FUSE mount, with what to do.
fn mount_failed(e: &io::Error, service: &str, dir: &Path) -> CliError {
    let hint = if !Path::new("/dev/fuse").exists() {
        "; this system has no /dev/fuse: load the module (modprobe fuse), or give the \
         container the device (--device /dev/fuse)"
    } else if e.kind() == io::ErrorKind::NotFound && !rustix::process::geteuid().is_root() {
        "; is fusermount3 installed? (apt-get install fuse3)"
    } else {
        ""
    };
    CliError::Deployer(format!(
        "cannot mount {service}'s view at {}: {}{hint}",
        dir.display(),
        e.to_string().trim()
    ))
}

/// Starts `deploy ... mount SERVICE DIR --foreground` in a process group of its own and
/// returns when it has mounted (printing what it printed), or with its exit status.
async fn in_background(
    server: &Server,
    service: &str,
    dir: &Path,
    out: &mut dyn Write,
) -> Result<Outcome, CliError> {
    let exe = std::env::current_exe()
        .map_err(|e| CliError::Deployer(format!("cannot find deploy's own program: {e}")))?;
    let addr = match server.addr.unix_path() {
        Some(path) => {
            let mut addr = OsString::from("unix:");
            addr.push(path);
            addr
        }
        None => OsString::from(server.addr.to_string()),
    };
    let mut command = tokio::process::Command::new(exe);
    command.arg("--addr").arg(addr);
    // Absolute, as given: the serving deploy reads them again when it reconnects.
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    if let Some(files) = &server.tls {
        command.arg("--ca").arg(absolute(&files.ca));
        if let Some((cert, key)) = &files.identity {
            command
                .arg("--cert")
                .arg(absolute(cert))
                .arg("--key")
                .arg(absolute(key));
        }
    }
    // The token by its file, as it came: never on a command line.
    if let Some(token) = &server.token {
        command.arg("--token-file").arg(absolute(&token.file));
    }
    let mut child = command
        .arg("--timeout")
        .arg(format!("{}ms", server.timeout.as_millis()))
        .arg("mount")
        .arg(service)
        .arg(PathBuf::from(dir))
        .arg("--foreground")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .map_err(|e| CliError::Deployer(format!("cannot start the serving deploy: {e}")))?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.take() {
        // EOF means it gave up; why is on its stderr.
        let _ = BufReader::new(stdout).read_line(&mut line).await;
    }
    if line.starts_with(MOUNTED) {
        // Its stdout and stderr are pipes that end with us, so that whoever waits for our
        // output to end (a shell's $(...), a test) is not held up by the serving deploy.
        let pid = child.id().unwrap_or(0);
        write_text(out, &line)?;
        note(&format!(
            "served by deploy (pid {pid}); unmount with `fusermount3 -u {}`",
            dir.display()
        ));
        return Ok(Outcome::Done);
    }
    let mut why = Vec::new();
    if let Some(mut stderr) = child.stderr.take() {
        let _ = stderr.read_to_end(&mut why).await;
    }
    let _ = io::stderr().write_all(&why);
    let status = child
        .wait()
        .await
        .map_err(|e| CliError::Deployer(format!("cannot wait for the serving deploy: {e}")))?;
    Ok(Outcome::Exit(
        status.code().map_or(1, |c| c.clamp(1, 255) as u8),
    ))
}
