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

/// The name of the systemd credential the cluster key may come from:
/// `LoadCredentialEncrypted=srv-secrets.key:/etc/credstore.encrypted/srv-secrets.key` in the
/// unit, read as `$CREDENTIALS_DIRECTORY/srv-secrets.key`.
pub const KEY_CREDENTIAL: &str = "srv-secrets.key";

/// The cluster key's systemd credential, if the environment names a credentials directory
/// (`$CREDENTIALS_DIRECTORY`, set by systemd for a unit with credentials) that holds one
/// called [`KEY_CREDENTIAL`]; `Ok(None)` otherwise. The directory must be a real
/// directory, owned by this user or root and writable by no one else, as systemd makes
/// it (mode 0500, read-only, the service's own); the file itself is checked as every key
/// file is, when it is read.
///
/// # Errors
/// What is wrong with the directory, and what to do.
pub fn key_credential() -> Result<Option<PathBuf>, String> {
    key_credential_in(std::env::var_os("CREDENTIALS_DIRECTORY"), euid())
}

/// [`key_credential`] for the given environment.
fn key_credential_in(dir: Option<OsString>, euid: u32) -> Result<Option<PathBuf>, String> {
    use std::os::unix::fs::MetadataExt;
    let Some(dir) = dir.filter(|d| !d.is_empty()).map(PathBuf::from) else {
        return Ok(None);
    };
    let key = dir.join(KEY_CREDENTIAL);
    if std::fs::symlink_metadata(&key).is_err() {
        // Credentials for something else (a TLS key, say), or none for the key.
        return Ok(None);
    }
    let refuse = |problem: String| {
        Err(format!(
            "CREDENTIALS_DIRECTORY {} {problem}, and it holds the cluster key's credential \
             {KEY_CREDENTIAL}: let systemd make it (LoadCredentialEncrypted=), or pass --key FILE",
            dir.display()
        ))
    };
    if !dir.is_absolute() {
        return refuse("is not an absolute path".into());
    }
    let meta = match std::fs::symlink_metadata(&dir) {
        Ok(meta) => meta,
        Err(e) => return refuse(format!("cannot be read ({e})")),
    };
    if !meta.is_dir() {
        return refuse("is not a directory (a symbolic link?)".into());
    }
    if meta.uid() != euid && meta.uid() != 0 {
        return refuse(format!(
            "belongs to uid {}, neither root nor this server's uid {euid}",
            meta.uid()
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return refuse(format!("has mode {mode:o}, writable by group or others"));
    }
    Ok(Some(key))
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
    fn the_key_credential_is_found_in_a_private_credentials_directory() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("credentials");
        std::fs::create_dir(&dir).unwrap();
        let set = |mode| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode));
        let found = |d: &std::path::Path| key_credential_in(Some(d.into()), euid());
        // Set, but without the key's credential: not ours to judge.
        set(0o777).unwrap();
        assert_eq!(found(&dir), Ok(None));
        assert_eq!(key_credential_in(None, euid()), Ok(None));
        assert_eq!(key_credential_in(os(""), euid()), Ok(None));
        std::fs::write(dir.join(KEY_CREDENTIAL), b"k").unwrap();
        let err = found(&dir).unwrap_err();
        assert!(
            err.contains("has mode 777, writable by group or others"),
            "{err}"
        );
        assert!(err.contains("pass --key FILE"), "{err}");
        set(0o500).unwrap();
        assert_eq!(found(&dir), Ok(Some(dir.join(KEY_CREDENTIAL))));
        // Owned by another uid than ours or root's (as root, which may chown).
        if euid() == 0 {
            std::os::unix::fs::chown(&dir, Some(4321), None).unwrap();
            let err = found(&dir).unwrap_err();
            assert!(
                err.contains("belongs to uid 4321, neither root nor this server's uid 0"),
                "{err}"
            );
            std::os::unix::fs::chown(&dir, Some(0), None).unwrap();
        }
        let link = tmp.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(found(&link).unwrap_err().contains("is not a directory"));
        set(0o700).unwrap();
    }

    #[test]
    fn socket() {
        let p = |x: Option<OsString>, uid| socket_for(x, uid).display().to_string();
        assert_eq!(p(os("/run/user/7"), 7), "/run/user/7/srv-secrets/9p.sock");
        assert_eq!(p(None, 0), "/run/srv-secrets/9p.sock");
        assert_eq!(p(os(""), 1002), "/tmp/srv-secrets-1002/9p.sock");
    }
}
