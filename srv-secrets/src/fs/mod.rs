//! The secrets filesystem: the handlers the ninep server core calls.
//!
//! The core has already checked fids, open modes against each file's permission bits,
//! offsets and sizes; these handlers decide who sees what.
//!
//! # Layout
//! - `kinds.rs`: every file and directory of both trees, declared once (name, directory,
//!   listing, mode, content), and the vault's questions they ask: the grant check of
//!   every walk, stat and listing of a service's `secret/`.
//! - `node.rs`: what a kind declares, and walking, listing and stat from it.
//! - `fid.rs`: a fid's state, reached only through [`SecretsFid`]'s `valid`, the view
//!   check every request kind runs first, so that a removed or remapped service loses
//!   access at once, through fids it holds too.
//! - `opened.rs`: what opening each kind of content gives, and how it is read, written
//!   and clunked; a read of a secret checks the grant again, so a revoke takes effect on
//!   the next read of a file the service holds open.
//! - `ctl.rs`: `/secrets/ctl`, commands applied to the vault.
//! - `events.rs`: `/events` and `secrets/events`, the vault's changes as lines, a read
//!   waiting until there is one.
//! - `reports.rs`: the admin tree's plans and lint, made once per revision of the store.
//! - this file: [`SecretsFs`], the [`Filesystem`] the core serves.

mod ctl;
mod events;
mod fid;
mod kinds;
mod node;
mod opened;
mod reports;

use std::sync::{Arc, Mutex, MutexGuard};

use ninep::server::{Admission, Authenticated, ClunkKind, Filesystem, Peer, Reading, Ready};
use ninep::{Data, Error, Qid, Result, Stat};
use secrets::Vault;

pub use self::fid::SecretsFid;
use self::fid::Valid;
use self::node::Content;
use crate::principal::{
    admission_of, needs_token, principal_of, principal_of_token, token_admission_key, view_for,
};

/// How many large decryptions one service's view may have running at once. The blocking
/// pool and the CPU are shared by everyone: without a bound, one service (or a kernel
/// mount of its view) sending many reads of a large secret, or a read and a Tflush over
/// and over (a flushed read's decryption runs on), would slow every other service and the
/// admin's ctl commands. Waiting for the slot is cancellable by a flush; holding it is not.
const DECRYPTS_PER_SERVICE: usize = 1;

/// Serves a [`Vault`] over 9P.
pub struct SecretsFs {
    vault: Arc<Vault>,
    /// When the server started: the mtime of directories and generated files.
    started: u32,
    /// Each service's slots for large decryptions ([`DECRYPTS_PER_SERVICE`]).
    decrypts: Mutex<std::collections::HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// The admin tree's reports, made once per revision of the store.
    reports: reports::Reports,
    /// The log lines of attaches refused to a certificate that names no one.
    refusals: crate::quiet::LogBudget,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The map is valid after any single insertion.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl SecretsFs {
    /// A filesystem serving `vault`.
    pub fn new(vault: Arc<Vault>) -> SecretsFs {
        let started = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs().min(u32::MAX as u64) as u32);
        SecretsFs {
            vault,
            started,
            decrypts: Mutex::new(std::collections::HashMap::new()),
            reports: reports::Reports::default(),
            refusals: crate::quiet::LogBudget::default(),
        }
    }

    /// `service`'s slots for large decryptions.
    fn decrypt_slots(&self, service: &str) -> Arc<tokio::sync::Semaphore> {
        lock(&self.decrypts)
            .entry(service.to_owned())
            .or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(DECRYPTS_PER_SERVICE)))
            .clone()
    }

    /// The vault served.
    pub fn vault(&self) -> &Arc<Vault> {
        &self.vault
    }

    /// The fid's state, once its view is checked (the first thing every request on a fid
    /// but its clunk does).
    fn valid<'a>(&'a self, fid: &'a SecretsFid) -> Result<Valid<'a>> {
        fid.valid(&self.vault, &self.reports, self.started)
    }
}

impl Filesystem for SecretsFs {
    type Fid = SecretsFid;

    /// Root, the admin's uid and service uids are principals, one per uid, and so are
    /// the names verified certificates give (`admin`, a service's). Any other uid or name
    /// is a stranger: served, to be told "permission denied" at attach, in the core's few
    /// stranger slots, with a handful of requests before it is closed; so is a peer that
    /// must present a token (plain TCP, TLS without a certificate), until it has (see
    /// [`admission_of`]). A unix peer without a uid is refused.
    fn accept(&self, peer: &Peer) -> Admission {
        admission_of(&self.vault, peer)
    }

    /// Over a transport that proves nothing of its peer ([`needs_token`]).
    fn needs_credential(&self, peer: &Peer) -> bool {
        needs_token(peer)
    }

    /// The credential is an API token: checked against the vault's keyed hashes in
    /// constant time; what it proves is the principal, and the connection ends when it
    /// stops holding (revoked, expired, its service removed). Neither a token nor any
    /// part of one ever reaches a log or an error.
    async fn attach_with_credential(
        &self,
        peer: &Peer,
        _uname: &str,
        aname: &str,
        credential: &[u8],
    ) -> Result<Authenticated<SecretsFid>> {
        let holder = self
            .vault
            .authenticate_token(credential)
            .map_err(|refused| {
                tracing::debug!(peer = %peer.addr, %refused, "a token was refused");
                Error::new(refused.to_string())
            })?;
        let principal = principal_of_token(&holder);
        let view = view_for(&self.vault, &principal, aname)?;
        tracing::debug!(peer = %peer.addr, ?principal, token = %holder.id, aname, "attach with a token");
        let id: Arc<str> = Arc::from(holder.id.as_str());
        let fid = SecretsFid::attached(view, None, Some(id.clone()));
        let qid = {
            let root = self.valid(&fid)?;
            root.node().attr(&root.tree)?.qid
        };
        Ok(Authenticated {
            qid,
            fid,
            principal: token_admission_key(&principal),
            ends: Ready::new(token_ends(self.vault.clone(), id, holder.expires)),
        })
    }

    async fn attach(&self, peer: &Peer, _uname: &str, aname: &str) -> Result<(Qid, SecretsFid)> {
        let principal = principal_of(&self.vault, peer).inspect_err(|_| {
            if let Some(name) = &peer.certificate
                && let Some(unlogged) = self.refusals.allow(std::time::Instant::now())
            {
                tracing::warn!(peer = %peer.addr, certificate = %name, unlogged,
                    "attach refused: the client certificate names neither admin nor a \
                     service (at most 20 such lines every 10 s)");
            }
        })?;
        let view = view_for(&self.vault, &principal, aname)?;
        tracing::debug!(peer = %peer.addr, ?principal, aname, "attach");
        let fid = SecretsFid::attached(view, peer.uid, None);
        let qid = {
            let root = self.valid(&fid)?;
            root.node().attr(&root.tree)?.qid
        };
        Ok((qid, fid))
    }

    fn clone_fid(&self, fid: &SecretsFid) -> SecretsFid {
        fid.unopened_copy()
    }

    async fn walk(&self, dir: &SecretsFid, name: &str) -> Result<(Qid, SecretsFid)> {
        let dir = self.valid(dir)?;
        let node = match name {
            "." => dir.node().clone(),
            ".." => dir.node().parent(),
            _ => dir
                .node()
                .child(&dir.tree, name)
                .ok_or_else(Error::not_found)?,
        };
        let qid = node.attr(&dir.tree)?.qid;
        Ok((qid, dir.walked_to(node)))
    }

    async fn stat(&self, fid: &SecretsFid) -> Result<Stat> {
        let fid = self.valid(fid)?;
        fid.node().stat(&fid.tree)
    }

    async fn open(&self, fid: &SecretsFid, _mode: u8) -> Result<()> {
        let fid = self.valid(fid)?;
        if let Some(opened) = self.open_content(&fid).await? {
            fid.set_opened(opened);
        }
        Ok(())
    }

    async fn read(&self, fid: &SecretsFid, offset: u64, count: u32) -> Result<Data> {
        let fid = self.valid(fid)?;
        self.read_opened(&fid, offset, count).await
    }

    /// An events file's read waits for a change, rechecking the fid's view at each try;
    /// every other read answers at once.
    async fn read_or_wait(
        &self,
        fid: &SecretsFid,
        offset: u64,
        count: u32,
        iounit: u32,
    ) -> Result<Reading> {
        let fid = self.valid(fid)?;
        self.read_or_wait_opened(&fid, offset, count, iounit).await
    }

    async fn readdir(&self, dir: &SecretsFid) -> Result<Vec<Stat>> {
        let dir = self.valid(dir)?;
        Ok(dir
            .node()
            .list(&dir.tree)
            .into_iter()
            // An entry that vanished between the listing and its stat is left out.
            .filter_map(|n| n.stat(&dir.tree).ok())
            .collect())
    }

    async fn write(&self, fid: &SecretsFid, _offset: u64, data: &[u8]) -> Result<u32> {
        let fid = self.valid(fid)?;
        self.write_opened(&fid, data).await
    }

    /// Shells truncate what they redirect into: a wstat that only sets the length (and
    /// times) of ctl is accepted and changes nothing.
    async fn wstat(&self, fid: &SecretsFid, stat: &Stat) -> Result<()> {
        let fid = self.valid(fid)?;
        let only_length_or_times = stat.name.is_empty()
            && stat.mode == u32::MAX
            && stat.uid.is_empty()
            && stat.gid.is_empty();
        if matches!(fid.node().kind().content, Content::Ctl) && only_length_or_times {
            Ok(())
        } else {
            Err(Error::permission_denied())
        }
    }

    /// Both trees are read-only but for ctl: files come and go by ctl commands. Refused
    /// with "permission denied", which both Linux and 9pfuse map to EACCES (lib9p's
    /// "create prohibited" reaches a 9pfuse user as ERANGE).
    async fn create(
        &self,
        dir: &SecretsFid,
        _name: &str,
        _perm: u32,
        _mode: u8,
    ) -> Result<(Qid, SecretsFid)> {
        self.valid(dir)?;
        Err(Error::permission_denied())
    }

    /// See [`create`](Filesystem::create).
    async fn remove(&self, fid: &SecretsFid) -> Result<()> {
        self.valid(fid)?;
        Err(Error::permission_denied())
    }

    /// Always succeeds, view or no view: a clunk only ends what the fid opened.
    async fn clunk(&self, fid: &SecretsFid, kind: ClunkKind) -> Result<()> {
        match fid.take_opened() {
            Some(opened) => self.clunk_opened(opened, kind).await,
            None => Ok(()),
        }
    }
}

/// Resolves when the token `id` stops holding: at once after a change of the vault's
/// tokens that ends it (a revoke, its service removed), and at its end (`expires`, unix
/// seconds) if it has one.
async fn token_ends(vault: Arc<Vault>, id: Arc<str>, expires: Option<u64>) {
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    // A second past the end, so that the vault's clock agrees it has come.
    let until_end =
        |t: u64| std::time::Duration::from_secs(t.saturating_sub(now()).saturating_add(1));
    // Without an end, one no connection outlives (and an Instant can always add).
    let never = std::time::Duration::from_secs(10 * 365 * 86_400);
    let end = tokio::time::sleep(expires.map_or(never, until_end));
    tokio::pin!(end);
    loop {
        // Made before the look, so that a change between the two is not missed.
        let changed = vault.tokens_changed();
        if !vault.token_holds(&id) {
            tracing::info!(token = %id, "a token stopped holding: closing a connection that attached with it");
            return;
        }
        tokio::select! {
            () = changed => {}
            () = &mut end => {
                // Not ended after all (the clock stepped back): look again in a second.
                end.as_mut().reset(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};
    use std::time::Duration;

    use secrets::Actor;

    use super::*;

    const WEB: u32 = 1001;

    /// A filesystem over a vault made by uid 1000 with service web (1001), granted a
    /// 1 MiB secret `big` and a small one `small`.
    fn fs() -> (tempfile::TempDir, SecretsFs, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let v = Vault::open(&data, None).unwrap();
        let big: Vec<u8> = (0..secrets::MAX_VALUE_LEN)
            .map(|i| (i % 251) as u8)
            .collect();
        v.set("big", &big).unwrap();
        v.set("small", b"small value").unwrap();
        v.service_set_uid("web", WEB).unwrap();
        v.grant("web", "big").unwrap();
        v.grant("web", "small").unwrap();
        (dir, SecretsFs::new(Arc::new(v)), big)
    }

    fn peer(uid: Option<u32>) -> Peer {
        Peer {
            uid,
            addr: "test".into(),
            ..Peer::default()
        }
    }

    async fn open(fs: &SecretsFs, name: &str) -> SecretsFid {
        let (_, root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        let (_, dir) = fs.walk(&root, "secret").await.unwrap();
        let (_, fid) = fs.walk(&dir, name).await.unwrap();
        fs.open(&fid, ninep::om::READ).await.unwrap();
        fid
    }

    #[tokio::test]
    async fn peers_without_credentials_are_not_served_and_strangers_are_refused_at_attach() {
        let (_dir, fs, _) = fs();
        assert_eq!(
            fs.accept(&peer(Some(0))),
            Admission::Principal("uid 0".into())
        );
        assert_eq!(
            fs.accept(&peer(Some(WEB))),
            Admission::Principal(format!("uid {WEB}"))
        );
        assert_eq!(
            fs.accept(&peer(None)),
            Admission::Refuse,
            "no uid, no principal"
        );
        // A uid that is no one is let in as a stranger, to be told why at attach.
        assert_eq!(fs.accept(&peer(Some(1005))), Admission::Stranger);
        let e = fs.attach(&peer(Some(1005)), "", "").await.err().unwrap();
        assert_eq!(e.ename(), "permission denied");
        // Mapped later, it attaches as that service.
        fs.vault().service_set_uid("api", 1005).unwrap();
        assert!(fs.attach(&peer(Some(1005)), "", "").await.is_ok());
    }

    #[tokio::test]
    async fn a_suspended_services_every_request_is_refused_but_a_clunk_until_resumed() {
        let (_dir, fs, _) = fs();
        let file = open(&fs, "small").await;
        let (_, root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        let (_, dir) = fs.walk(&root, "secret").await.unwrap();
        let (_, admins) = fs.attach(&peer(Some(1000)), "", "web").await.unwrap();
        let actor = Actor::admin(Some(0));
        fs.vault()
            .apply(&actor, &[secrets::Change::Suspend { service: "web" }])
            .unwrap();
        let denied = |r: Result<()>| assert_eq!(r.unwrap_err(), Error::permission_denied());
        denied(fs.read(&file, 0, 100).await.map(drop));
        denied(fs.walk(&dir, "small").await.map(drop));
        denied(fs.walk(&admins, "config").await.map(drop));
        denied(fs.stat(&file).await.map(drop));
        denied(fs.attach(&peer(Some(WEB)), "", "").await.map(drop));
        denied(fs.attach(&peer(Some(1000)), "", "web").await.map(drop));
        // Its grants stay; resumed, the same open fid reads again.
        assert_eq!(fs.vault().grants("web"), ["big", "small"]);
        fs.vault()
            .apply(&actor, &[secrets::Change::Resume { service: "web" }])
            .unwrap();
        assert_eq!(
            fs.read(&file, 0, 100).await.unwrap().expose(),
            b"small value"
        );
        fs.clunk(&file, ClunkKind::Requested).await.unwrap();
    }

    #[tokio::test]
    async fn every_request_on_a_fid_of_a_view_that_ended_is_refused_but_its_clunk() {
        let (_dir, fs, _) = fs();
        let (_, root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        let (_, dir) = fs.walk(&root, "secret").await.unwrap();
        let (_, file) = fs.walk(&dir, "small").await.unwrap();
        let (_, unopened) = fs.walk(&dir, "big").await.unwrap();
        fs.open(&dir, ninep::om::READ).await.unwrap();
        fs.open(&file, ninep::om::READ).await.unwrap();
        let mut truncate = Stat::dont_touch();
        truncate.length = 0;
        // Remapped: the view web's old uid holds has ended, on every fid it holds.
        fs.vault().service_set_uid("web", 1005).unwrap();
        let denied = |r: Result<()>| assert_eq!(r.unwrap_err(), Error::permission_denied());
        denied(fs.walk(&root, "secret").await.map(drop));
        denied(fs.stat(&file).await.map(drop));
        denied(fs.wstat(&file, &truncate).await);
        denied(fs.open(&unopened, ninep::om::READ).await);
        denied(fs.read(&file, 0, 100).await.map(drop));
        denied(fs.readdir(&dir).await.map(drop));
        denied(fs.write(&file, 0, b"x").await.map(drop));
        denied(
            fs.create(&dir, "new", 0o600, ninep::om::WRITE)
                .await
                .map(drop),
        );
        denied(fs.remove(&unopened).await);
        // A clunk always succeeds.
        for fid in [&file, &dir, &unopened, &root] {
            fs.clunk(fid, ClunkKind::Requested).await.unwrap();
        }
        // Mapped back, the same fids would serve again; a new attach does.
        fs.vault().service_set_uid("web", WEB).unwrap();
        let (_, root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        assert!(fs.walk(&root, "secret").await.is_ok());
    }

    /// The whole of the file at `path` in the tree `aname` gives `uid`.
    async fn read_all(fs: &SecretsFs, uid: u32, aname: &str, path: &[&str]) -> Vec<u8> {
        let (_, mut fid) = fs.attach(&peer(Some(uid)), "", aname).await.unwrap();
        for name in path {
            fid = fs.walk(&fid, name).await.unwrap().1;
        }
        fs.open(&fid, ninep::om::READ).await.unwrap();
        let mut bytes = Vec::new();
        loop {
            let d = fs.read(&fid, bytes.len() as u64, 8192).await.unwrap();
            if d.is_empty() {
                return bytes;
            }
            bytes.extend_from_slice(d.expose());
        }
    }

    #[tokio::test]
    async fn what_the_admin_tree_serves_is_what_deploy_parses() {
        let (_dir, fs, _) = fs();
        let v = fs.vault();
        v.service_set_manifest("web", b"# web\nsecret big\n  secret\tsmall \nconfig a=b\n")
            .unwrap();
        v.service_set_uid("api", 1002).unwrap();
        // deploy's parsers are these (cmd-deploy/src/files.rs, connect.rs).
        let text = read_all(&fs, 1000, "", &["secrets", "status"]).await;
        let st = v.status();
        assert_eq!(
            model::Status::parse(&text).unwrap(),
            model::Status {
                key: Some(u64::from(st.active_key)),
                secrets: Some(2),
                services: Some(2),
                rotation: model::Rotation::Idle,
                frozen: None,
                suspended: vec![],
            }
        );
        let text = read_all(&fs, 1000, "", &["secrets", "grants", "web"]).await;
        assert_eq!(model::Grants::parse(&text).unwrap().names, v.grants("web"));
        let text = read_all(&fs, 1000, "", &["secrets", "grants", "api"]).await;
        assert!(model::Grants::parse(&text).unwrap().names.is_empty());
        for (service, uid) in [("web", WEB), ("api", 1002)] {
            let text = read_all(&fs, 1000, "", &["secrets", "services", service]).await;
            let file = model::ServiceFile::parse(&text).unwrap();
            let info = v.service(service).unwrap();
            assert_eq!(file.uid, Some(uid));
            assert_eq!(file.manifest, info.manifest.text().as_bytes());
            assert_eq!(file.secrets(), info.manifest.secrets());
        }
        // A service's uid asking for the admin tree is told who it is, as deploy reads it.
        let refused = fs.attach(&peer(Some(WEB)), "", model::ADMIN_ANAME).await;
        let e = refused.err().unwrap();
        let detail = e.ename().strip_prefix("permission denied: ").unwrap();
        assert_eq!(
            model::NotAdmin::parse(detail),
            Some(model::NotAdmin {
                uid: WEB,
                service: "web".into(),
                admin_uid: Some(1000),
            })
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_admin_reads_a_backup_that_restores_and_a_service_cannot_reach_it() {
        let (dir, fs, big) = fs();
        let (_, root) = fs.attach(&peer(Some(1000)), "", "").await.unwrap();
        let (_, secrets_dir) = fs.walk(&root, "secrets").await.unwrap();
        let (_, fid) = fs.walk(&secrets_dir, "backup").await.unwrap();
        let stat = fs.stat(&fid).await.unwrap();
        assert_eq!(stat.mode, 0o400);
        fs.open(&fid, ninep::om::READ).await.unwrap();
        // Changes after the open are not in this copy.
        fs.vault().set("later", b"not in the backup").unwrap();
        let mut bytes = Vec::new();
        loop {
            let d = fs.read(&fid, bytes.len() as u64, 8192).await.unwrap();
            if d.is_empty() {
                break;
            }
            bytes.extend_from_slice(d.expose());
        }
        assert!(bytes.len() > big.len(), "{} bytes", bytes.len());
        fs.clunk(&fid, ClunkKind::Requested).await.unwrap();
        // Put back as a store, with the key, it opens and holds what was there at the open.
        let restored = dir.path().join("restored");
        std::fs::create_dir(&restored).unwrap();
        std::fs::set_permissions(
            &restored,
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        let store = restored.join(secrets::STORE_FILE);
        std::fs::write(&store, &bytes).unwrap();
        std::fs::set_permissions(&store, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let key = dir.path().join("data").join(secrets::KEY_FILE);
        let copy = Vault::open(&restored, Some(&key)).unwrap();
        assert_eq!(copy.reveal("big").unwrap().expose(), &big[..]);
        assert!(copy.secret_info("later").is_none());
        // A service's view has no secrets/ at all.
        let (_, web_root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        assert!(fs.walk(&web_root, "secrets").await.is_err());
    }

    #[test]
    fn one_services_large_reads_wait_for_its_own_slot_only() {
        let (_dir, fs, big) = fs();
        fs.vault().service_set_uid("api", 1002).unwrap();
        fs.vault().grant("api", "big").unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let web_fid = open(&fs, "big").await;
            let (_, root) = fs.attach(&peer(Some(1002)), "", "").await.unwrap();
            let (_, dir) = fs.walk(&root, "secret").await.unwrap();
            let (_, api_fid) = fs.walk(&dir, "big").await.unwrap();
            fs.open(&api_fid, ninep::om::READ).await.unwrap();
            // web's one slot is taken (as by a decryption still running for it). Reads
            // that decrypt more than BLOCKING_READ_LEN take a slot; smaller ones run at once.
            let taken = fs.decrypt_slots("web").acquire_owned().await.unwrap();
            let large = 100_000;
            let web_read = fs.read(&web_fid, 0, large);
            tokio::pin!(web_read);
            assert!(
                tokio::time::timeout(Duration::from_millis(200), &mut web_read)
                    .await
                    .is_err(),
                "a second large decryption of web's ran at once"
            );
            // api is not held up by web.
            let api = tokio::time::timeout(Duration::from_secs(5), fs.read(&api_fid, 0, large))
                .await
                .expect("api's read waited on web's slot")
                .unwrap();
            assert_eq!(api.expose(), &big[..large as usize]);
            drop(taken);
            let web = web_read.await.unwrap();
            assert_eq!(web.expose(), &big[..large as usize]);
        });
    }

    #[test]
    fn a_large_value_is_decrypted_off_the_async_worker() {
        let (_dir, fs, big) = fs();
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let big_fid = rt.block_on(open(&fs, "big"));
        let small_fid = rt.block_on(open(&fs, "small"));
        // Hold the one blocking thread, so that work sent there waits until released.
        let (started, wait_started) = std::sync::mpsc::channel();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let blocker = rt.spawn_blocking(move || {
            started.send(()).unwrap();
            let _ = wait_release.recv();
        });
        wait_started.recv().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let guard = rt.enter();
        // A small value is read at once, on the worker.
        let mut small = pin!(fs.read(&small_fid, 0, 4096));
        match small.as_mut().poll(&mut cx) {
            Poll::Ready(d) => assert_eq!(d.unwrap().expose(), b"small value"),
            Poll::Pending => panic!("a small read waited"),
        }
        // A large one waits for the blocking pool: the worker is free meanwhile.
        let mut read = pin!(fs.read(&big_fid, 4096, 8192));
        assert!(
            read.as_mut().poll(&mut cx).is_pending(),
            "a 1 MiB value was decrypted on the async worker"
        );
        drop(guard);
        release.send(()).unwrap();
        let data = rt.block_on(read).unwrap();
        assert_eq!(data.expose(), &big[4096..4096 + 8192]);
        rt.block_on(blocker).unwrap();
        // Revoked: the next read of the open fid fails, large or not.
        fs.vault().revoke("web", "big").unwrap();
        let err = rt.block_on(fs.read(&big_fid, 0, 10)).unwrap_err();
        assert_eq!(err, Error::not_found());
    }

    #[test]
    fn a_page_sized_read_of_a_large_value_decrypts_on_the_worker_and_reads_right() {
        let (_dir, fs, big) = fs();
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let fid = rt.block_on(open(&fs, "big"));
        // The one blocking thread held: a read sent there would wait.
        let (started, wait_started) = std::sync::mpsc::channel();
        let (release, wait_release) = std::sync::mpsc::channel::<()>();
        let blocker = rt.spawn_blocking(move || {
            started.send(()).unwrap();
            let _ = wait_release.recv();
        });
        wait_started.recv().unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        let guard = rt.enter();
        // One 4 KiB chunk, and single bytes at its edges: each decrypts one chunk, at once.
        for (offset, count) in [
            (8192, 4096),
            (4095, 1),
            (4096, 1),
            (big.len() as u64 - 1, 1),
        ] {
            let mut read = pin!(fs.read(&fid, offset, count));
            match read.as_mut().poll(&mut cx) {
                Poll::Ready(d) => {
                    let end = (offset as usize + count as usize).min(big.len());
                    assert_eq!(d.unwrap().expose(), &big[offset as usize..end]);
                }
                Poll::Pending => panic!("a read of one chunk waited for the blocking pool"),
            }
        }
        // Past the end: nothing, and nothing to decrypt.
        let mut read = pin!(fs.read(&fid, big.len() as u64, 4096));
        assert!(matches!(read.as_mut().poll(&mut cx), Poll::Ready(Ok(d)) if d.is_empty()));
        drop(guard);
        release.send(()).unwrap();
        rt.block_on(blocker).unwrap();
    }

    #[tokio::test]
    async fn the_events_file_is_a_stream_of_the_views_changes_that_ends_with_the_view() {
        let (_dir, fs, _) = fs();
        let (_, root) = fs.attach(&peer(Some(WEB)), "", "").await.unwrap();
        let (qid, events) = fs.walk(&root, "events").await.unwrap();
        assert_eq!(qid.ty, ninep::qt::APPEND);
        let stat = fs.stat(&events).await.unwrap();
        assert_eq!((stat.mode, stat.length), (ninep::dm::APPEND | 0o400, 0));
        fs.open(&events, ninep::om::READ).await.unwrap();
        assert!(matches!(
            fs.read_or_wait(&events, 0, 4096, 8168).await.unwrap(),
            Reading::Later(_)
        ));
        fs.vault().set("small", b"new").unwrap();
        let Reading::Now(line) = fs.read_or_wait(&events, 0, 4096, 8168).await.unwrap() else {
            panic!("a change waits");
        };
        assert_eq!(line.expose(), b"set small 2\n");
        // The service removed: its reader is told (the grants go) and then refused.
        fs.vault().service_remove("web").unwrap();
        let e = fs
            .read_or_wait(&events, 12, 4096, 8168)
            .await
            .err()
            .unwrap();
        assert_eq!(e, Error::permission_denied());
        // The admin tree has its own, of every change.
        let (_, admin) = fs.attach(&peer(Some(1000)), "", "").await.unwrap();
        let (_, dir) = fs.walk(&admin, "secrets").await.unwrap();
        let (_, all) = fs.walk(&dir, "events").await.unwrap();
        fs.open(&all, ninep::om::READ).await.unwrap();
        fs.vault().service_set_uid("api", 1002).unwrap();
        fs.vault().grant("api", "small").unwrap();
        let Reading::Now(line) = fs.read_or_wait(&all, 0, 4096, 8168).await.unwrap() else {
            panic!("a change waits");
        };
        assert_eq!(line.expose(), b"granted small 2 api\n");
    }

    fn token(fs: &SecretsFs, service: Option<&str>) -> secrets::NewToken {
        let applied = fs
            .vault()
            .apply(
                &Actor::admin(Some(0)),
                &[secrets::Change::TokenCreate {
                    service,
                    expires_in: None,
                }],
            )
            .unwrap();
        match applied.into_iter().next() {
            Some(secrets::Applied::TokenCreated { token, .. }) => token,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_token_attaches_as_its_principal_and_every_request_checks_it() {
        let (_dir, fs, _) = fs();
        let tcp = Peer {
            transport: ninep::server::Transport::Tcp,
            addr: "tcp:test".into(),
            ..Peer::default()
        };
        assert!(fs.needs_credential(&tcp));
        assert!(!fs.needs_credential(&peer(Some(WEB))));
        assert_eq!(fs.accept(&tcp), Admission::Stranger);
        // No token, no attach; a wrong one says nothing of why.
        let none = fs.attach(&tcp, "", "").await.err().unwrap();
        assert!(none.0.starts_with(ninep::ename::AUTH_REQUIRED), "{none}");
        let web = token(&fs, Some("web"));
        let mut wrong = web.expose().as_bytes().to_vec();
        *wrong.last_mut().unwrap() ^= 1;
        let e = fs
            .attach_with_credential(&tcp, "", "", &wrong)
            .await
            .err()
            .unwrap();
        assert_eq!(e.ename(), "permission denied: not a valid token");
        let attached = fs
            .attach_with_credential(&tcp, "", "", web.expose().as_bytes())
            .await
            .unwrap();
        assert_eq!(attached.principal, "token service web");
        let (_, dir) = fs.walk(&attached.fid, "secret").await.unwrap();
        let (_, file) = fs.walk(&dir, "small").await.unwrap();
        fs.open(&file, ninep::om::READ).await.unwrap();
        assert_eq!(
            fs.read(&file, 0, 100).await.unwrap().expose(),
            b"small value"
        );
        // An admin token attaches the admin tree; a service's does not.
        let e = fs
            .attach_with_credential(&tcp, "", "admin", web.expose().as_bytes())
            .await
            .err()
            .unwrap();
        assert!(e.ename().starts_with("permission denied"), "{e}");
        let admin = token(&fs, None);
        let root = fs
            .attach_with_credential(&tcp, "", "", admin.expose().as_bytes())
            .await
            .unwrap();
        assert_eq!(root.principal, "token admin");
        assert!(fs.walk(&root.fid, "secrets").await.is_ok());
        // Revoked: the next request on a fid it holds fails, and the connection's end
        // comes at once.
        let ends = attached.ends;
        fs.vault()
            .apply(
                &Actor::admin(Some(0)),
                &[secrets::Change::TokenRevoke { id: web.id() }],
            )
            .unwrap();
        assert_eq!(
            fs.read(&file, 0, 100).await.unwrap_err(),
            Error::permission_denied()
        );
        tokio::time::timeout(Duration::from_secs(5), ends)
            .await
            .expect("a revoked token's connection ends at once");
        // The admin's token holds on.
        assert!(fs.walk(&root.fid, "secrets").await.is_ok());
        let e = fs
            .attach_with_credential(&tcp, "", "", web.expose().as_bytes())
            .await
            .err()
            .unwrap();
        assert_eq!(
            e.ename(),
            format!("permission denied: token {} was revoked", web.id())
        );
    }

    /// Passes everything to the store of a data directory, and records who made each batch.
    struct Recording {
        inner: secrets::RedbBackend,
        actors: Arc<Mutex<Vec<Actor>>>,
    }

    impl secrets::Backend for Recording {
        fn load(&self) -> secrets::Result<secrets::backend::Snapshot> {
            self.inner.load()
        }

        fn commit(&self, batch: secrets::backend::Batch) -> secrets::Result<secrets::Revision> {
            lock(&self.actors).push(batch.actor.clone());
            self.inner.commit(batch)
        }

        fn changes(&self, after: secrets::Revision) -> secrets::Result<secrets::backend::Feed> {
            self.inner.changes(after)
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_written_to_ctl_is_made_by_the_admin_over_its_connections_uid() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        Vault::init(&data, None, 1000).unwrap();
        let actors = Arc::new(Mutex::new(Vec::new()));
        let backend = Recording {
            inner: secrets::RedbBackend::open(&data).unwrap(),
            actors: Arc::clone(&actors),
        };
        let vault = Vault::with_backend(Box::new(backend), &data.join(secrets::KEY_FILE)).unwrap();
        // The audit's start, made at open by the vault itself.
        assert_eq!(*lock(&actors), [Actor::local()]);
        lock(&actors).clear();
        let fs = SecretsFs::new(Arc::new(vault));
        for uid in [1000, 0] {
            let (_, root) = fs.attach(&peer(Some(uid)), "", "").await.unwrap();
            let (_, dir) = fs.walk(&root, "secrets").await.unwrap();
            let (_, ctl) = fs.walk(&dir, "ctl").await.unwrap();
            fs.open(&ctl, ninep::om::RDWR).await.unwrap();
            fs.write(&ctl, 0, b"set db {2}\nv1\n").await.unwrap();
            fs.write(&ctl, 0, b"rotate-key\n").await.unwrap();
            let made = std::mem::take(&mut *lock(&actors));
            // The set, then the rotation's target, its batch and its switch.
            assert_eq!(made.len(), 4, "{made:?}");
            assert!(
                made.iter().all(|a| *a == Actor::admin(Some(uid))),
                "{made:?}"
            );
        }
        assert_eq!(fs.vault().secret_info("db").unwrap().version, 2);
    }
}
