//! What opening each [`Content`] gives ([`Opened`]), and how what was opened is read,
//! written and clunked: the one place where file kinds behave differently once walked.

use std::sync::Arc;

use ninep::server::{ClunkKind, Reading};
use ninep::{Data, Error, Result, ename};
use secrets::events::Audience;
use secrets::{Backup, Error as VaultError, OpenedSecret};
use zeroize::Zeroizing;

use super::SecretsFs;
use super::ctl::CtlFid;
use super::events::EventsFid;
use super::fid::Valid;
use super::node::Content;
use crate::principal::View;

/// A Tread that decrypts more than this is decrypted on tokio's blocking pool rather than
/// on the worker that serves it. A read decrypts only the 4 KiB chunks it touches: one
/// chunk takes a few microseconds, less than the hop to the pool, so a page-sized read
/// (9pfuse's, `cat`'s, `dd bs=1`'s) stays on the worker, while a read of many chunks (the
/// kernel's, up to the iounit) does not hold up the worker's other requests.
const BLOCKING_READ_LEN: u64 = 4 * 1024;

/// What an open fid holds.
pub enum Opened {
    /// A secret's ciphertext as of the open: reads decrypt it after checking the grant.
    Secret(OpenedSecret),
    /// The ctl command buffer.
    Ctl(Box<CtlFid>),
    /// A generated text file, fixed at open so that reads at offsets agree.
    Text(Zeroizing<Vec<u8>>),
    /// A copy of the store, taken at open: reads at any offset read the same copy.
    Backup(Backup),
    /// An events file: what changed for the view since the open, read as it happens.
    Events(EventsFid),
    /// The audit trail as it was at open, rendered as it is read.
    Audit(Arc<std::sync::Mutex<AuditStream>>),
}

/// How many bytes of the audit trail a read renders at a time beyond what it returns.
const AUDIT_RENDER: usize = 64 * 1024;

/// A fid's read of `secrets/audit`: the records up to the heads at open, rendered a page
/// at a time, and only the bytes from the last read's offset on kept, so that a log of a
/// million records is never held whole. A read before those bytes (a seek back) renders
/// again from the start.
pub struct AuditStream {
    reader: secrets::AuditReader,
    /// The bytes rendered and not yet read past: `start..start + buf.len()`.
    buf: Vec<u8>,
    start: u64,
    done: bool,
}

impl AuditStream {
    fn read(&mut self, offset: u64, count: usize) -> secrets::Result<Vec<u8>> {
        if offset < self.start {
            self.reader.restart();
            self.buf.clear();
            self.start = 0;
            self.done = false;
        }
        loop {
            let skip = usize::try_from(offset - self.start)
                .unwrap_or(usize::MAX)
                .min(self.buf.len());
            self.buf.drain(..skip);
            self.start += skip as u64;
            let have = self.start + self.buf.len() as u64;
            if self.done || have >= offset.saturating_add(count as u64) {
                break;
            }
            let more = self.reader.next_lines(AUDIT_RENDER)?;
            if more.is_empty() {
                self.done = true;
            }
            self.buf.extend_from_slice(&more);
        }
        let from = usize::try_from(offset - self.start).unwrap_or(usize::MAX);
        let from = from.min(self.buf.len());
        let to = from.saturating_add(count).min(self.buf.len());
        Ok(self.buf[from..to].to_vec())
    }
}

/// Maps a vault error on a service's read path to 9P. Not granted and missing are both
/// "file does not exist": names are not an oracle.
fn read_error(e: VaultError) -> Error {
    match e {
        VaultError::NotFound | VaultError::NoSuchSecret => Error::not_found(),
        // The vault's own words ("... open it again") are in no errno table: Linux would
        // give its readers ESERVERFAULT, "Unknown error 526". "file has been removed" is
        // EIDRM there, and true: the version the fid read is gone. The log keeps why.
        e @ (VaultError::Stale | VaultError::VersionRevoked) => {
            tracing::info!(reason = %e, "a read of an open file was cut off");
            Error::new(ename::REMOVED)
        }
        other => {
            tracing::error!(error = %other, "reading a secret failed");
            Error::new(ename::IO)
        }
    }
}

impl SecretsFs {
    /// Topen of a valid fid: what its kind's content gives, `None` for a directory (the
    /// core reads directories through readdir).
    pub(super) async fn open_content(&self, fid: &Valid<'_>) -> Result<Option<Opened>> {
        let admin = *fid.view() == View::Admin;
        let node = fid.node();
        Ok(Some(match node.kind().content {
            Content::Dir => return Ok(None),
            Content::Plaintext(slot) => {
                let service = fid.tree.service().ok_or_else(Error::permission_denied)?;
                let secret = self
                    .vault
                    .open_version(service, node.secret_name(slot), slot)
                    .map_err(read_error)?;
                // Recorded off the read path: queued, committed by the flusher.
                self.vault.record_open(&fid.actor(), service, &secret, slot);
                Opened::Secret(secret)
            }
            Content::Text(render) => {
                let generated = render(&fid.tree, node).ok_or_else(Error::not_found)?;
                Opened::Text(Zeroizing::new(generated.text))
            }
            Content::Ctl if admin => {
                Opened::Ctl(Box::new(CtlFid::new(fid.recent().clone(), fid.actor())))
            }
            // Copying the whole store is blocking I/O: off the async workers.
            Content::Backup if admin => {
                let vault = self.vault.clone();
                let backup = tokio::task::spawn_blocking(move || vault.backup())
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r.map_err(|e| e.to_string()))
                    .map_err(|e| {
                        tracing::error!(error = %e, "taking a backup failed");
                        Error::new(ename::IO)
                    })?;
                Opened::Backup(backup)
            }
            Content::Events => {
                let audience = match fid.view() {
                    View::Admin => Audience::All,
                    View::Service { service, .. } => Audience::Service(service.clone()),
                };
                Opened::Events(EventsFid::new(self.vault.subscribe(audience), admin))
            }
            Content::Audit if admin => {
                Opened::Audit(Arc::new(std::sync::Mutex::new(AuditStream {
                    reader: self.vault.audit_reader(),
                    buf: Vec::new(),
                    start: 0,
                    done: false,
                })))
            }
            // Store entries and the key have mode 0; the core refused them already. Ctl,
            // the backup and the audit are in the admin tree only.
            Content::Nothing
            | Content::Record
            | Content::Ctl
            | Content::Backup
            | Content::Audit => {
                return Err(Error::permission_denied());
            }
        }))
    }

    /// Tread of what a valid fid opened, which may wait (an events file's).
    pub(super) async fn read_or_wait_opened(
        &self,
        fid: &Valid<'_>,
        offset: u64,
        count: u32,
        iounit: u32,
    ) -> Result<Reading> {
        if let Opened::Events(events) = &*fid.opened()? {
            return Ok(events.read(offset, count, iounit));
        }
        self.read_opened(fid, offset, count).await.map(Reading::Now)
    }

    /// Tread of what a valid fid opened.
    pub(super) async fn read_opened(
        &self,
        fid: &Valid<'_>,
        offset: u64,
        count: u32,
    ) -> Result<Data> {
        let opened = fid.opened()?;
        let slice = |bytes: &[u8]| {
            let start = offset.min(bytes.len() as u64) as usize;
            let end = start.saturating_add(count as usize).min(bytes.len());
            Data::from(&bytes[start..end])
        };
        match (&*opened, fid.view()) {
            (Opened::Secret(s), View::Service { service, .. }) => {
                self.read_secret(service, s, offset, count).await
            }
            (Opened::Text(t), _) => Ok(slice(t)),
            (Opened::Ctl(ctl), View::Admin) => Ok(Data::from(ctl.read(offset, count))),
            // A pread of at most one message from a file just written, in the page cache:
            // quick enough for the worker.
            (Opened::Backup(b), View::Admin) => {
                let left = b.len().saturating_sub(offset);
                let mut buf = vec![0u8; left.min(u64::from(count)) as usize];
                let n = b.read_at(offset, &mut buf).map_err(|e| {
                    tracing::error!(error = %e, "reading a backup failed");
                    Error::new(ename::IO)
                })?;
                buf.truncate(n);
                Ok(Data::from(buf))
            }
            // Reading the store is blocking I/O: off the async workers.
            (Opened::Audit(stream), View::Admin) => {
                let stream = Arc::clone(stream);
                tokio::task::spawn_blocking(move || {
                    stream
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .read(offset, count as usize)
                })
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()))
                .map(Data::from)
                .map_err(|e| {
                    tracing::error!(error = %e, "reading the audit trail failed");
                    Error::new(ename::IO)
                })
            }
            _ => Err(Error::permission_denied()),
        }
    }

    /// A read of an opened secret: the grant is checked again on every read, at any
    /// offset; only the chunks the range lies in are decrypted.
    async fn read_secret(
        &self,
        service: &str,
        s: &OpenedSecret,
        offset: u64,
        count: u32,
    ) -> Result<Data> {
        let count = u64::from(count);
        let plain = if s.decrypted_len(offset, count) > BLOCKING_READ_LEN {
            // Decrypting many chunks takes long enough to hold up every other request on
            // this worker: let the blocking pool do it (the clone of the opened secret
            // shares its ciphertext).
            let (vault, service, s) = (self.vault.clone(), service.to_owned(), s.clone());
            let slots = self.decrypt_slots(&service);
            let slot = slots
                .acquire_owned()
                .await
                .map_err(|_| Error::new(ename::IO))?;
            tokio::task::spawn_blocking(move || {
                let plain = vault.read_opened_range(&service, &s, offset, count);
                drop(slot);
                plain
            })
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "reading a secret failed");
                Error::new(ename::IO)
            })?
        } else {
            self.vault.read_opened_range(service, s, offset, count)
        }
        .map_err(read_error)?;
        Ok(Data::from(plain.into_zeroizing()))
    }

    /// Twrite to what a valid fid opened: ctl only. Offsets are ignored: ctl is a stream
    /// of commands.
    pub(super) async fn write_opened(&self, fid: &Valid<'_>, data: &[u8]) -> Result<u32> {
        match &*fid.opened()? {
            Opened::Ctl(ctl) => {
                ctl.write(&self.vault, data).await.map_err(Error::new)?;
                Ok(data.len() as u32)
            }
            _ => Err(Error::permission_denied()),
        }
    }

    /// Tclunk of what a fid opened: a ctl fid's last command is complete (or, dropped
    /// with its connection, abandoned); nothing else holds anything to finish.
    pub(super) async fn clunk_opened(&self, opened: Arc<Opened>, kind: ClunkKind) -> Result<()> {
        if let Opened::Ctl(ctl) = &*opened {
            match kind {
                ClunkKind::Requested => ctl.finish(&self.vault).await.map_err(Error::new)?,
                ClunkKind::Dropped => ctl.abandon().await,
            }
        }
        Ok(())
    }
}
