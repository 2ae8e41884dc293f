//! Where things live when no flag says: the embedded default.

use std::path::PathBuf;

/// The effective uid of this process.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// The default data directory: `$XDG_DATA_HOME/srv-secrets`, else
/// `/var/lib/srv-secrets` for root, else `~/.local/share/srv-secrets`.
pub fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("srv-secrets");
    }
    if euid() == 0 {
        return PathBuf::from("/var/lib/srv-secrets");
    }
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/srv-secrets"),
        None => PathBuf::from(format!("/tmp/srv-secrets-{}/data", euid())),
    }
}

/// The default socket: `$XDG_RUNTIME_DIR/srv-secrets/9p.sock`, else
/// `/run/srv-secrets/9p.sock` for root, else `/tmp/srv-secrets-$UID/9p.sock`.
/// `deploy` resolves the same default.
pub fn default_socket() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("srv-secrets/9p.sock");
    }
    if euid() == 0 {
        return PathBuf::from("/run/srv-secrets/9p.sock");
    }
    PathBuf::from(format!("/tmp/srv-secrets-{}/9p.sock", euid()))
}
