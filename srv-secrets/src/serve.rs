//! Running the server: the vault opened, the process hardened, the sockets bound, and
//! a clean stop on SIGTERM.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ninep::server::{Limits, Server, Shutdown, bind_unix};
use secrets::Vault;
use tracing::{info, warn};

use crate::fs::SecretsFs;

/// Keeps secrets out of core dumps and away from ptrace by other users: a process that
/// is not dumpable writes no core file, and its memory cannot be read through /proc.
pub fn harden_process() {
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        warn!(error = %e, "could not disable core dumps (PR_SET_DUMPABLE)");
    }
    let none = rustix::process::Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(e) = rustix::process::setrlimit(rustix::process::Resource::Core, none) {
        warn!(error = %e, "could not set RLIMIT_CORE to 0");
    }
}

/// Makes the socket's directory (0755) and binds the socket (0666): who may do what is
/// decided by identity at attach, not by file mode.
pub async fn bind_socket(path: &Path) -> io::Result<tokio::net::UnixListener> {
    if let Some(dir) = path.parent()
        && !dir.exists()
    {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)?;
    }
    let listener = bind_unix(path).await?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o666))?;
    Ok(listener)
}

/// Serves `vault` on the unix sockets `sockets` until SIGTERM or SIGINT, then finishes the
/// requests in flight and returns.
pub async fn serve(
    vault: Arc<Vault>,
    sockets: Vec<(PathBuf, tokio::net::UnixListener)>,
) -> io::Result<()> {
    let server = Server::new(SecretsFs::new(vault), Limits::default());
    let (trigger, shutdown) = Shutdown::new();
    let mut tasks = tokio::task::JoinSet::new();
    for (path, listener) in sockets {
        let server = server.clone();
        let shutdown: Shutdown = shutdown.clone();
        tasks.spawn(async move {
            let r = server.serve_unix(listener, shutdown).await;
            let _ = fs::remove_file(&path);
            r
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => info!("SIGTERM: finishing requests in flight"),
        _ = int.recv() => info!("SIGINT: finishing requests in flight"),
        Some(r) = tasks.join_next() => {
            // A listener ended on its own: that is an error worth stopping for.
            trigger.trigger();
            while tasks.join_next().await.is_some() {}
            return match r {
                Ok(r) => r,
                Err(e) => Err(io::Error::other(e)),
            };
        }
    }
    trigger.trigger();
    while let Some(r) = tasks.join_next().await {
        if let Ok(Err(e)) = r {
            warn!(error = %e, "listener ended with an error");
        }
    }
    info!("stopped");
    Ok(())
}
