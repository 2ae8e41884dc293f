//! TLS termination for the 9P and HTTP listeners (`--listen tls:`, `--http tls:`): the
//! server's certificate, the client CA and the CRLs, reloaded on SIGHUP, and each
//! connection's handshake, which gives its [`Peer`] the name its client certificate
//! gives. Who that name is, is [`crate::principal`]'s to say; the 9P core serves the
//! stream knowing nothing of TLS.
//!
//! A reload swaps the configuration that new handshakes use; connections already open
//! keep going on theirs. A reload that fails (a file missing, a key that does not match)
//! keeps the old material and says why.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use ninep::server::{Peer, Transport};
use tls::rustls::ServerConfig;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use crate::quiet::LogBudget;

/// A TLS connection, once its handshake is done.
pub type TlsStream = tls::tokio_rustls::server::TlsStream<TcpStream>;

/// Which names a client certificate may give: the admin's and those a service may have.
/// A verified certificate giving any other is refused at the handshake; one giving a
/// service's name that no service has (yet) is refused at attach.
fn can_be_someone(name: &str) -> bool {
    name == model::ADMIN_ANAME || model::is_valid_service(name)
}

/// The TLS listeners' material, and the budget of their refusals' log lines.
pub struct TlsServer {
    files: tls::ServerFiles,
    config: RwLock<Arc<ServerConfig>>,
    refusals: LogBudget,
}

impl TlsServer {
    /// Loads `files`, saying in the log what was loaded.
    ///
    /// # Errors
    /// What is wrong with which file, naming its flag.
    pub fn load(files: tls::ServerFiles) -> Result<Arc<TlsServer>, String> {
        let config = load(&files)?;
        Ok(Arc::new(TlsServer {
            files,
            config: RwLock::new(config),
            refusals: LogBudget::default(),
        }))
    }

    /// Loads the files again (SIGHUP): new handshakes use what they hold now, open
    /// connections go on. On failure the material in use is kept.
    ///
    /// # Errors
    /// What is wrong, as for [`TlsServer::load`].
    pub fn reload(&self) -> Result<(), String> {
        let config = load(&self.files)?;
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        Ok(())
    }

    fn current(&self) -> Arc<ServerConfig> {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The server's side of the handshake of a connection from `addr`: the stream and
    /// its peer (named by its certificate, if it sent one). A refused client is told by
    /// its alert, and the log says why (at most [`crate::quiet::LINES_PER_WINDOW`] such
    /// lines every 10 s); the error returned is only for the core's debug log.
    ///
    /// # Errors
    /// The handshake's.
    pub async fn handshake(
        self: Arc<Self>,
        tcp: TcpStream,
        addr: SocketAddr,
    ) -> io::Result<(TlsStream, Peer)> {
        let _ = tcp.set_nodelay(true);
        let addr = format!("tls:{addr}");
        match tls::accept(self.current(), tcp).await {
            Ok((stream, certificate)) => {
                debug!(peer = %addr, certificate = ?certificate, "TLS handshake done");
                let peer = Peer {
                    transport: Transport::Tls,
                    certificate,
                    addr,
                    ..Peer::default()
                };
                Ok((stream, peer))
            }
            Err(refused) => {
                let reason = tls::refusal(&refused.error);
                // A certificate refused, or ours: worth a line. Anything else (a port
                // scan, bytes that are not TLS) is not.
                let worth_a_line = refused.claimed.is_some()
                    || reason.starts_with("it refused this server's certificate");
                if worth_a_line {
                    if let Some(unlogged) = self.refusals.allow(Instant::now()) {
                        warn!(peer = %addr, certificate = ?refused.claimed.as_deref().unwrap_or("none"),
                            unlogged, "TLS handshake refused: {reason} (at most 20 such lines every 10 s)");
                    }
                } else {
                    debug!(peer = %addr, "TLS handshake failed: {reason}");
                }
                Err(refused.error)
            }
        }
    }
}

/// The configuration from `files`, with what it holds said in the log.
fn load(files: &tls::ServerFiles) -> Result<Arc<ServerConfig>, String> {
    let (config, loaded) = tls::server_config(files, can_be_someone)?;
    info!(
        certificate = %files.cert.display(),
        subject = %loaded.subject,
        not_after = %loaded.not_after,
        client_ca = %files.client_ca.display(),
        client_cas = loaded.client_cas,
        crl = %files.crl.as_deref().map_or_else(|| "none".into(), |p| p.display().to_string()),
        revoked = loaded.revoked,
        "TLS: loaded the server's certificate, the client CA and the revocation lists"
    );
    for warning in &loaded.warnings {
        warn!("TLS: {warning}");
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_can_be_someone() {
        assert!(can_be_someone("admin"));
        assert!(can_be_someone("web"));
        assert!(can_be_someone("db-primary.eu_1"));
        for nobody in ["", "secrets", ".", "..", "a/b", "x y"] {
            assert!(!can_be_someone(nobody), "{nobody:?}");
        }
    }
}
