//! Whose files a service's view shows: the service's uid (from the server) and the gid of
//! that uid's passwd entry, else the same number.

use std::path::Path;

use fuse9p::Owner;

use super::service::service_report;
use crate::connect::Session;
use crate::error::CliError;

/// The uid and gid of `service`, read through the admin tree.
///
/// # Errors
/// [`CliError::NoSuchService`]; [`CliError::Deployer`] for a service without a uid.
pub async fn service_owner(session: &Session, service: &str) -> Result<Owner, CliError> {
    let report = service_report(session, service).await?;
    let Some(uid) = report.uid else {
        return Err(CliError::Deployer(format!(
            "service {service} has no uid, so nobody could read its files; give it one with \
             `deploy service add {service} --uid UID`"
        )));
    };
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    Ok(Owner {
        uid,
        gid: passwd_gid(&passwd, uid).unwrap_or(uid),
    })
}

/// The gid of the first passwd entry (`name:x:uid:gid:...`) with this uid.
fn passwd_gid(passwd: &str, uid: u32) -> Option<u32> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let (_name, _password) = (fields.next()?, fields.next()?);
        let entry_uid: u32 = fields.next()?.parse().ok()?;
        let gid: u32 = fields.next()?.parse().ok()?;
        (entry_uid == uid).then_some(gid)
    })
}

/// How a directory we are about to use is unfit, if it is: missing, not a directory, or
/// not empty.
pub fn unfit_directory(dir: &Path) -> Option<&'static str> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => entries.next().map(|_| "is not empty"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some("does not exist"),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Some("is not a directory"),
        Err(_) => Some("cannot be read"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gid_comes_from_the_uids_passwd_entry() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      # a comment\n\
                      broken line\n\
                      web:x:1001:2001::/home/web:/bin/sh\n\
                      web2:x:1001:3001::/:/bin/sh\n";
        assert_eq!(passwd_gid(passwd, 0), Some(0));
        assert_eq!(passwd_gid(passwd, 1001), Some(2001), "the first entry");
        assert_eq!(passwd_gid(passwd, 1002), None);
        assert_eq!(passwd_gid("", 1), None);
    }

    #[test]
    fn directories_must_exist_and_be_empty() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(unfit_directory(dir.path()), None);
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        assert_eq!(unfit_directory(dir.path()), Some("is not empty"));
        assert_eq!(
            unfit_directory(&dir.path().join("nope")),
            Some("does not exist")
        );
        assert_eq!(
            unfit_directory(&dir.path().join("f")),
            Some("is not a directory")
        );
    }
}
