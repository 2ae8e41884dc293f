//! The files of both trees: what each node is called, its qid, its stat, and what a
//! directory lists. Every question about a service's secret goes through the vault's
//! grant check here, so an ungranted name and a missing one look the same.

use ninep::{Error, Qid, Stat, dm, qt};
use secrets::Vault;

use crate::principal::View;

/// One file or directory of a tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// The admin root: holds `secrets/`.
    AdminRoot,
    /// `/secrets`.
    SecretsDir,
    /// `/secrets/ctl`: commands in, results out.
    Ctl,
    /// `/secrets/store`: one entry per secret.
    StoreDir,
    /// `/secrets/store/NAME`: metadata only, never readable.
    StoreEntry(String),
    /// `/secrets/grants`.
    GrantsDir,
    /// `/secrets/grants/SERVICE`: the names granted, one per line.
    Grants(String),
    /// `/secrets/services`.
    ServicesDir,
    /// `/secrets/services/SERVICE`: uid and manifest.
    Service(String),
    /// `/secrets/key`: exists, never readable.
    Key,
    /// `/secrets/status`: key id, counts, rotation progress.
    Status,
    /// `/secrets/backup`: a copy of the store, taken at open (admin only, mode 0400).
    Backup,
    /// A service view's root: holds `secret/` and `config/`.
    ServiceRoot,
    /// `/secret`.
    SecretDir,
    /// `/secret/NAME`: the plaintext of a granted secret.
    Secret(String),
    /// `/config`.
    ConfigDir,
    /// `/config/KEY`: a plain config value from the manifest.
    Config(String),
}

/// FNV-1a: a stable 64-bit hash of a name, for qid paths that survive restarts.
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The top byte of a qid path says which kind of node it is; the rest, for named
/// nodes, is the name's hash.
fn path(kind: u8, name: Option<&str>) -> u64 {
    let low = name.map_or(0, |n| name_hash(n) & 0x00ff_ffff_ffff_ffff);
    ((kind as u64) << 56) | low
}

/// What a node looks like to `stat`: everything but the name and owner.
#[derive(Debug)]
pub struct Attr {
    /// The qid; its version is the secret's version.
    pub qid: Qid,
    /// Permission bits and DMDIR.
    pub mode: u32,
    /// Last change, seconds since the epoch.
    pub mtime: u32,
    /// Bytes (plaintext bytes, for a secret).
    pub length: u64,
}

fn secs(t: u64) -> u32 {
    t.min(u32::MAX as u64) as u32
}

impl Node {
    /// The node's name as a directory entry.
    pub fn name(&self) -> &str {
        match self {
            Node::AdminRoot | Node::ServiceRoot => "/",
            Node::SecretsDir => "secrets",
            Node::Ctl => "ctl",
            Node::StoreDir => "store",
            Node::GrantsDir => "grants",
            Node::ServicesDir => "services",
            Node::Key => "key",
            Node::Status => "status",
            Node::Backup => "backup",
            Node::SecretDir => "secret",
            Node::ConfigDir => "config",
            Node::StoreEntry(n)
            | Node::Grants(n)
            | Node::Service(n)
            | Node::Secret(n)
            | Node::Config(n) => n,
        }
    }

    /// The root of a view.
    pub fn root(view: &View) -> Node {
        match view {
            View::Admin => Node::AdminRoot,
            View::Service { .. } => Node::ServiceRoot,
        }
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        matches!(
            self,
            Node::AdminRoot
                | Node::SecretsDir
                | Node::StoreDir
                | Node::GrantsDir
                | Node::ServicesDir
                | Node::ServiceRoot
                | Node::SecretDir
                | Node::ConfigDir
        )
    }

    fn kind(&self) -> u8 {
        match self {
            Node::AdminRoot => 1,
            Node::SecretsDir => 2,
            Node::Ctl => 3,
            Node::StoreDir => 4,
            Node::StoreEntry(_) => 5,
            Node::GrantsDir => 6,
            Node::Grants(_) => 7,
            Node::ServicesDir => 8,
            Node::Service(_) => 9,
            Node::Key => 10,
            Node::Status => 11,
            Node::ServiceRoot => 12,
            Node::SecretDir => 13,
            Node::Secret(_) => 14,
            Node::ConfigDir => 15,
            Node::Config(_) => 16,
            Node::Backup => 17,
        }
    }

    fn named(&self) -> Option<&str> {
        match self {
            Node::StoreEntry(n)
            | Node::Grants(n)
            | Node::Service(n)
            | Node::Secret(n)
            | Node::Config(n) => Some(n),
            _ => None,
        }
    }

    /// The child `name` of this directory in `view`, if it exists for that view.
    pub fn child(&self, vault: &Vault, view: &View, name: &str) -> Option<Node> {
        let service = match view {
            View::Service { service, .. } => Some(service.as_str()),
            View::Admin => None,
        };
        let node = match (self, name) {
            (Node::AdminRoot, "secrets") => Node::SecretsDir,
            (Node::SecretsDir, "ctl") => Node::Ctl,
            (Node::SecretsDir, "store") => Node::StoreDir,
            (Node::SecretsDir, "grants") => Node::GrantsDir,
            (Node::SecretsDir, "services") => Node::ServicesDir,
            (Node::SecretsDir, "key") => Node::Key,
            (Node::SecretsDir, "status") => Node::Status,
            (Node::SecretsDir, "backup") => Node::Backup,
            (Node::StoreDir, n) if vault.secret_info(n).is_some() => Node::StoreEntry(n.into()),
            (Node::GrantsDir, n) if vault.service(n).is_some() => Node::Grants(n.into()),
            (Node::ServicesDir, n) if vault.service(n).is_some() => Node::Service(n.into()),
            (Node::ServiceRoot, "secret") => Node::SecretDir,
            (Node::ServiceRoot, "config") => Node::ConfigDir,
            // The grant check of a walk. A granted secret exists (delete drops grants).
            (Node::SecretDir, n) if service.is_some_and(|s| vault.is_granted(s, n)) => {
                Node::Secret(n.into())
            }
            (Node::ConfigDir, n) if has_config(vault, service?, n) => Node::Config(n.into()),
            _ => return None,
        };
        Some(node)
    }

    /// The parent directory, for "..".
    pub fn parent(&self) -> Node {
        match self {
            Node::AdminRoot | Node::SecretsDir => Node::AdminRoot,
            Node::Ctl
            | Node::StoreDir
            | Node::GrantsDir
            | Node::ServicesDir
            | Node::Key
            | Node::Status
            | Node::Backup => Node::SecretsDir,
            Node::StoreEntry(_) => Node::StoreDir,
            Node::Grants(_) => Node::GrantsDir,
            Node::Service(_) => Node::ServicesDir,
            Node::ServiceRoot | Node::SecretDir | Node::ConfigDir => Node::ServiceRoot,
            Node::Secret(_) => Node::SecretDir,
            Node::Config(_) => Node::ConfigDir,
        }
    }

    /// The node's attributes now, or "file does not exist" if it no longer exists for
    /// this view (a secret revoked or deleted since the walk).
    pub fn attr(&self, vault: &Vault, view: &View, started: u32) -> Result<Attr, Error> {
        let file = |mode: u32, version: u32, mtime: u32, length: u64| Attr {
            qid: Qid {
                ty: qt::FILE,
                version,
                path: path(self.kind(), self.named()),
            },
            mode,
            mtime,
            length,
        };
        if self.is_dir() {
            return Ok(Attr {
                qid: Qid {
                    ty: qt::DIR,
                    version: 0,
                    path: path(self.kind(), None),
                },
                mode: dm::DIR | 0o500,
                mtime: started,
                length: 0,
            });
        }
        let service = match view {
            View::Service { service, .. } => Some(service.as_str()),
            View::Admin => None,
        };
        match self {
            // Read-write: commands in, their results out (fs/ctl.rs).
            Node::Ctl => Ok(file(0o600, 0, started, 0)),
            Node::Key => Ok(file(0, 0, started, 0)),
            // Generated files are dated by the vault's last change of what they show.
            Node::Status => Ok(file(
                0o400,
                0,
                secs(vault.status().changed),
                status_text(vault).len() as u64,
            )),
            // Its length is known once a copy is taken, at open; it changes with the store.
            Node::Backup => Ok(file(0o400, 0, secs(vault.status().changed), 0)),
            Node::StoreEntry(n) => {
                let info = vault.secret_info(n).ok_or_else(Error::not_found)?;
                Ok(file(0, info.version as u32, secs(info.mtime), info.length))
            }
            Node::Grants(s) => {
                let info = vault.service(s).ok_or_else(Error::not_found)?;
                let length = grants_text(vault, s).len() as u64;
                Ok(file(0o400, 0, secs(info.grants_changed), length))
            }
            Node::Service(s) => {
                let info = vault.service(s).ok_or_else(Error::not_found)?;
                let length = service_text_of(&info).len() as u64;
                Ok(file(0o400, 0, secs(info.changed), length))
            }
            Node::Secret(n) => {
                let s = service.ok_or_else(Error::not_found)?;
                if !vault.is_granted(s, n) {
                    return Err(Error::not_found());
                }
                let info = vault.secret_info(n).ok_or_else(Error::not_found)?;
                Ok(file(
                    0o400,
                    info.version as u32,
                    secs(info.mtime),
                    info.length,
                ))
            }
            Node::Config(k) => {
                let value = config_value(vault, service.ok_or_else(Error::not_found)?, k)
                    .ok_or_else(Error::not_found)?;
                Ok(file(0o400, 0, started, value.len() as u64))
            }
            // Directories were answered above.
            _ => Err(Error::not_found()),
        }
    }

    /// The stat of this node as `view` sees it.
    pub fn stat(&self, vault: &Vault, view: &View, started: u32) -> Result<Stat, Error> {
        let a = self.attr(vault, view, started)?;
        Ok(Stat {
            qid: a.qid,
            mode: a.mode,
            atime: a.mtime,
            mtime: a.mtime,
            length: a.length,
            name: self.name().to_string(),
            uid: view.owner().to_string(),
            gid: view.owner().to_string(),
            muid: String::new(),
            ..Stat::default()
        })
    }

    /// The entries of a directory: for a service's `secret/`, only granted secrets.
    pub fn list(&self, vault: &Vault, view: &View) -> Vec<Node> {
        match (self, view) {
            (Node::AdminRoot, _) => vec![Node::SecretsDir],
            (Node::SecretsDir, _) => vec![
                Node::Backup,
                Node::Ctl,
                Node::GrantsDir,
                Node::Key,
                Node::ServicesDir,
                Node::Status,
                Node::StoreDir,
            ],
            (Node::StoreDir, _) => vault
                .list_secrets()
                .into_iter()
                .map(|s| Node::StoreEntry(s.name))
                .collect(),
            (Node::GrantsDir, _) => vault
                .services()
                .into_iter()
                .map(|s| Node::Grants(s.name))
                .collect(),
            (Node::ServicesDir, _) => vault
                .services()
                .into_iter()
                .map(|s| Node::Service(s.name))
                .collect(),
            (Node::ServiceRoot, _) => vec![Node::ConfigDir, Node::SecretDir],
            (Node::SecretDir, View::Service { service, .. }) => vault
                .grants(service)
                .into_iter()
                .map(Node::Secret)
                .collect(),
            (Node::ConfigDir, View::Service { service, .. }) => vault
                .service(service)
                .map(|s| {
                    s.manifest
                        .config()
                        .keys()
                        .cloned()
                        .map(Node::Config)
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

fn has_config(vault: &Vault, service: &str, key: &str) -> bool {
    config_value(vault, service, key).is_some()
}

/// A service's config value for `key`, from its manifest.
pub fn config_value(vault: &Vault, service: &str, key: &str) -> Option<String> {
    vault
        .service(service)?
        .manifest
        .config_value(key)
        .map(str::to_string)
}

/// `/secrets/status`.
pub fn status_text(vault: &Vault) -> String {
    let st = vault.status();
    let rotation = match st.rotation {
        Some(p) => format!("{}/{}", p.done, p.total),
        None => "idle".to_string(),
    };
    format!(
        "key {}\nsecrets {}\nservices {}\nrotation {rotation}\n",
        st.active_key, st.secrets, st.services
    )
}

/// `/secrets/grants/SERVICE`: the granted names, sorted, one per line.
pub fn grants_text(vault: &Vault, service: &str) -> String {
    vault
        .grants(service)
        .into_iter()
        .map(|n| n + "\n")
        .collect()
}

/// `/secrets/services/SERVICE`: `uid N` (or `uid none`), then the manifest verbatim.
pub fn service_text(vault: &Vault, service: &str) -> Option<String> {
    vault.service(service).map(|s| service_text_of(&s))
}

fn service_text_of(s: &secrets::ServiceInfo) -> String {
    let uid = s.uid.map_or_else(|| "none".to_string(), |u| u.to_string());
    format!("uid {uid}\n{}", s.manifest.text())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use super::*;
    use crate::principal::Principal;

    /// A vault with secrets a (granted to web) and b, services web (with a manifest) and api.
    fn vault() -> (tempfile::TempDir, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        v.set("a", b"alpha").unwrap();
        v.set("b", b"bravo!").unwrap();
        v.service_set_uid("web", 1001).unwrap();
        v.service_set_manifest("web", b"secret a\nconfig level=debug\n")
            .unwrap();
        v.service_set_uid("api", 1002).unwrap();
        v.grant("web", "a").unwrap();
        (dir, v)
    }

    fn view(service: &str) -> View {
        View::Service {
            service: service.into(),
            by: Principal::Admin,
        }
    }

    #[test]
    fn a_service_walks_only_to_what_it_was_granted() {
        let (_dir, v) = vault();
        let web = view("web");
        let api = view("api");
        assert_eq!(
            Node::SecretDir.child(&v, &web, "a"),
            Some(Node::Secret("a".into()))
        );
        // Not granted, and missing: the same answer.
        assert_eq!(Node::SecretDir.child(&v, &web, "b"), None);
        assert_eq!(Node::SecretDir.child(&v, &web, "nosuch"), None);
        assert_eq!(Node::SecretDir.child(&v, &api, "a"), None);
        // The admin tree has no secret/ of its own.
        assert_eq!(Node::SecretDir.child(&v, &View::Admin, "a"), None);
        assert_eq!(
            Node::ConfigDir.child(&v, &web, "level"),
            Some(Node::Config("level".into()))
        );
        assert_eq!(Node::ConfigDir.child(&v, &api, "level"), None);
        v.revoke("web", "a").unwrap();
        assert_eq!(Node::SecretDir.child(&v, &web, "a"), None);
    }

    #[test]
    fn a_stat_checks_the_grant_again() {
        let (_dir, v) = vault();
        let web = view("web");
        let secret = Node::Secret("a".into());
        let a = secret.attr(&v, &web, 7).unwrap();
        assert_eq!((a.mode, a.length, a.qid.version), (0o400, 5, 1));
        assert_eq!(a.qid.ty, qt::FILE);
        v.set("a", b"alpha, version 2").unwrap();
        let a = secret.attr(&v, &web, 7).unwrap();
        assert_eq!((a.length, a.qid.version), (16, 2));
        // Revoked after the walk: gone, as if it never existed.
        v.revoke("web", "a").unwrap();
        assert_eq!(secret.attr(&v, &web, 7).unwrap_err(), Error::not_found());
        assert_eq!(
            Node::Secret("b".into()).attr(&v, &web, 7).unwrap_err(),
            Error::not_found()
        );
        // In the admin tree a secret is an entry of store/, never readable.
        let entry = Node::StoreEntry("b".into())
            .attr(&v, &View::Admin, 7)
            .unwrap();
        assert_eq!((entry.mode, entry.length), (0, 6));
        assert_eq!(Node::Key.attr(&v, &View::Admin, 7).unwrap().mode, 0);
        assert_eq!(Node::Ctl.attr(&v, &View::Admin, 7).unwrap().mode, 0o600);
        let dir = Node::StoreDir.attr(&v, &View::Admin, 7).unwrap();
        assert_eq!(
            (dir.mode, dir.mtime, dir.qid.ty),
            (dm::DIR | 0o500, 7, qt::DIR)
        );
    }

    #[test]
    fn generated_files_are_dated_by_their_last_change_not_the_start() {
        let (_dir, v) = vault();
        let admin = View::Admin;
        let mtime = |n: Node| n.attr(&v, &admin, 7).unwrap().mtime;
        let web = v.service("web").unwrap();
        let status = v.status().changed;
        assert!(status > 7 && web.changed > 7 && web.grants_changed > 7);
        assert_eq!(mtime(Node::Status), secs(status));
        assert_eq!(mtime(Node::Grants("web".into())), secs(web.grants_changed));
        assert_eq!(mtime(Node::Service("web".into())), secs(web.changed));
        // Directories and the fixed files keep the server's start.
        assert_eq!(mtime(Node::GrantsDir), 7);
        assert_eq!(mtime(Node::Ctl), 7);
    }

    #[test]
    fn listings_show_only_what_a_walk_would_find() {
        let (_dir, v) = vault();
        let names = |nodes: Vec<Node>| {
            nodes
                .iter()
                .map(|n| n.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(Node::SecretDir.list(&v, &view("web"))), ["a"]);
        assert!(Node::SecretDir.list(&v, &view("api")).is_empty());
        assert_eq!(names(Node::ConfigDir.list(&v, &view("web"))), ["level"]);
        assert_eq!(names(Node::StoreDir.list(&v, &View::Admin)), ["a", "b"]);
        assert_eq!(
            names(Node::GrantsDir.list(&v, &View::Admin)),
            ["api", "web"]
        );
        assert_eq!(
            names(Node::SecretsDir.list(&v, &View::Admin)),
            [
                "backup", "ctl", "grants", "key", "services", "status", "store"
            ]
        );
        // Every entry listed is one a walk finds, and its parent is the directory.
        for (dir, view) in [
            (Node::AdminRoot, View::Admin),
            (Node::SecretsDir, View::Admin),
            (Node::StoreDir, View::Admin),
            (Node::GrantsDir, View::Admin),
            (Node::ServicesDir, View::Admin),
            (Node::ServiceRoot, view("web")),
            (Node::SecretDir, view("web")),
            (Node::ConfigDir, view("web")),
        ] {
            for entry in dir.list(&v, &view) {
                assert_eq!(dir.child(&v, &view, entry.name()), Some(entry.clone()));
                assert_eq!(entry.parent(), dir);
                entry.stat(&v, &view, 0).unwrap();
            }
        }
    }

    #[test]
    fn qid_paths_are_stable_and_distinct() {
        let nodes = [
            Node::AdminRoot,
            Node::SecretsDir,
            Node::Ctl,
            Node::StoreDir,
            Node::StoreEntry("a".into()),
            Node::StoreEntry("b".into()),
            Node::GrantsDir,
            Node::Grants("a".into()),
            Node::ServicesDir,
            Node::Service("a".into()),
            Node::Key,
            Node::Status,
            Node::Backup,
            Node::ServiceRoot,
            Node::SecretDir,
            Node::Secret("a".into()),
            Node::Secret("b".into()),
            Node::ConfigDir,
            Node::Config("a".into()),
        ];
        let paths: Vec<u64> = nodes.iter().map(|n| path(n.kind(), n.named())).collect();
        let mut unique = paths.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), paths.len(), "{paths:x?}");
        // FNV-1a of "a", masked: the same in every run and every build.
        assert_eq!(
            path(14, Some("a")),
            (14 << 56) | (0xaf63_dc4c_8601_ec8c & 0x00ff_ffff_ffff_ffff)
        );
    }

    #[test]
    fn generated_files() {
        let (_dir, v) = vault();
        assert_eq!(grants_text(&v, "web"), "a\n");
        assert_eq!(grants_text(&v, "api"), "");
        assert_eq!(
            service_text(&v, "web").unwrap(),
            "uid 1001\nsecret a\nconfig level=debug\n"
        );
        assert_eq!(service_text(&v, "nosuch"), None);
        assert_eq!(config_value(&v, "web", "level").as_deref(), Some("debug"));
        assert_eq!(config_value(&v, "web", "other"), None);
        let status = status_text(&v);
        assert!(
            status.ends_with("secrets 2\nservices 2\nrotation idle\n"),
            "{status}"
        );
        assert!(status.starts_with("key "), "{status}");
    }
}
