//! Where things live when no flag says: the embedded default.

use std::ffi::OsString;
use std::path::PathBuf;

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The default data directory: `$XDG_DATA_HOME/srv-secrets`, else `/var/lib/srv-secrets`
/// for root, else `$HOME/.local/share/srv-secrets`; `None` when none of these applies
/// (no XDG_DATA_HOME, no HOME, not root): then `--data` must say.
pub fn default_data_dir() -> Option<PathBuf> {
    data_dir_for(
        std::env::var_os("XDG_DATA_HOME"),
        std::env::var_os("HOME"),
        euid(),
    )
}

/// [`default_data_dir`] for the given environment.
///
/// There is deliberately no fallback under /tmp: a directory there can be made by anyone
/// before the server first runs, and whoever owns the data directory owns the store.
fn data_dir_for(
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
    euid: u32,
) -> Option<PathBuf> {
    if let Some(d) = xdg_data_home.filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("srv-secrets"));
    }
    if euid == 0 {
        return Some(PathBuf::from("/var/lib/srv-secrets"));
    }
    home.filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".local/share/srv-secrets"))
}

/// The default socket: `$XDG_RUNTIME_DIR/srv-secrets/9p.sock`, else
/// `/run/srv-secrets/9p.sock` for root, else `/tmp/srv-secrets-$UID/9p.sock`.
/// `deploy` resolves the same default. Anyone may make the directory under /tmp first:
/// `serve::prepare_socket_dir` refuses one that is not the server's own.
pub fn default_socket() -> PathBuf {
    socket_for(std::env::var_os("XDG_RUNTIME_DIR"), euid())
}

/// [`default_socket`] for the given environment.
fn socket_for(xdg_runtime_dir: Option<OsString>, euid: u32) -> PathBuf {
    if let Some(d) = xdg_runtime_dir.filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("srv-secrets/9p.sock");
    }
    if euid == 0 {
        return PathBuf::from("/run/srv-secrets/9p.sock");
    }
    PathBuf::from(format!("/tmp/srv-secrets-{euid}/9p.sock"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn data_directory() {
        let p = |d: Option<PathBuf>| d.map(|d| d.display().to_string());
        assert_eq!(
            p(data_dir_for(os("/x"), os("/home/g"), 1000)).as_deref(),
            Some("/x/srv-secrets")
        );
        assert_eq!(
            p(data_dir_for(os(""), os("/home/g"), 1000)).as_deref(),
            Some("/home/g/.local/share/srv-secrets")
        );
        assert_eq!(
            p(data_dir_for(None, None, 0)).as_deref(),
            Some("/var/lib/srv-secrets")
        );
        // No HOME, no XDG_DATA_HOME, not root: no default, and nothing under /tmp.
        assert_eq!(data_dir_for(None, None, 1000), None);
        assert_eq!(data_dir_for(os(""), os(""), 1000), None);
    }

    #[test]
    fn socket() {
        let p = |x: Option<OsString>, uid| socket_for(x, uid).display().to_string();
        assert_eq!(p(os("/run/user/7"), 7), "/run/user/7/srv-secrets/9p.sock");
        assert_eq!(p(None, 0), "/run/srv-secrets/9p.sock");
        assert_eq!(p(os(""), 1002), "/tmp/srv-secrets-1002/9p.sock");
    }
}
