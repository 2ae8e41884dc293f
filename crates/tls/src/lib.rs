//! TLS 1.3 for srv-secrets and its clients: rustls configurations made from PEM files,
//! the name a client certificate gives, and what a failed handshake means, in words.
//!
//! - [`server_config`] ([`ServerFiles`]): the server's certificate and key, the CA that
//!   issues client certificates (`--client-ca`) and its revocation lists (`--crl`). A
//!   client may come without a certificate (its connection then has no principal: the
//!   caller decides what it may do); one that presents a certificate must have it from
//!   that CA, unexpired and unrevoked, and naming someone: its subject's Common Name,
//!   which the caller's [`NameRule`] must accept, as Kubernetes and etcd take it.
//! - [`accept`]: the server's side of a handshake, with that name, or why it was refused
//!   and what name the client claimed (for the log; never trusted).
//! - [`client_config`] ([`ClientFiles`]) and [`connect`]: a client's side, the server's
//!   certificate checked against `--ca` and the host name it was reached by.
//! - [`Failure`]: a failed connection from the client's side, worded in terms of the
//!   client's `--ca`, `--cert` and `--key`; [`refusal`]: the same from the server's side,
//!   for its log.
//!
//! Only TLS 1.3, with ring as the crypto provider. No session resumption on either side:
//! every connection's certificate is checked against the CA and the CRLs in force when it
//! connects, so that a certificate revoked since cannot come back on an old session.
//! Nothing here logs; the callers do, and no error here holds key material or a file's
//! contents: only paths, names and dates.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::cell::RefCell;
use std::fmt;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName,
    RootCertStore, ServerConfig, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite};
use x509_cert::der::{Decode, Tag, Tagged};
use zeroize::Zeroizing;

pub use rustls;
pub use tokio_rustls;

/// The crypto provider of every configuration made here.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

const VERSIONS: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Which names a client certificate may give: those that can be someone (the admin, a
/// service). A verified certificate giving another name is refused at the handshake.
pub type NameRule = fn(&str) -> bool;

/// The server's files (`srv-secrets serve --tls-cert --tls-key --client-ca [--crl]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerFiles {
    /// The server's certificate chain, PEM, its own certificate first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// The CA certificates trusted to issue client certificates, PEM.
    pub client_ca: PathBuf,
    /// Certificate revocation lists of those CAs, PEM or DER.
    pub crl: Option<PathBuf>,
}

/// What a [`server_config`] holds, for the log: names, dates and counts, no key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The server certificate's subject.
    pub subject: String,
    /// When it expires.
    pub not_after: String,
    /// Client CAs trusted.
    pub client_cas: usize,
    /// Certificates listed as revoked, over every CRL.
    pub revoked: usize,
    /// What is wrong but does not stop the server (an expired server certificate, a CRL
    /// past its next update, a key file others can read): each to be logged.
    pub warnings: Vec<String>,
}

/// The server's configuration from `files`: TLS 1.3, client certificates optional but
/// verified when given (see the crate's documentation), no session resumption.
///
/// # Errors
/// What is wrong, naming the flag and the file (`--tls-key /etc/x: ...`).
pub fn server_config(
    files: &ServerFiles,
    names: NameRule,
) -> Result<(Arc<ServerConfig>, Loaded), String> {
    let chain = read_certificates(&files.cert, "--tls-cert")?;
    let key = read_private_key(&files.key, "--tls-key")?;
    let cas = read_certificates(&files.client_ca, "--client-ca")?;
    let crls = match &files.crl {
        Some(path) => read_crls(path, "--crl")?,
        None => Vec::new(),
    };
    let mut warnings = Vec::new();
    let own = Described::of(&chain[0]).map_err(|e| {
        format!(
            "--tls-cert {}: its first certificate cannot be read: {e}",
            files.cert.display()
        )
    })?;
    if own.expired {
        warnings.push(format!(
            "--tls-cert {}: the server's certificate expired on {}; clients will refuse \
             it: renew it and send SIGHUP",
            files.cert.display(),
            own.not_after
        ));
    }
    if let Some(w) = readable_by_others(&files.key, "--tls-key") {
        warnings.push(w);
    }
    let mut roots = RootCertStore::empty();
    let client_cas = cas.len();
    for ca in cas {
        roots.add(ca).map_err(|e| {
            format!(
                "--client-ca {}: a certificate in it cannot be a CA: {e}",
                files.client_ca.display()
            )
        })?;
    }
    let mut revoked = 0;
    for crl in &crls {
        let list = x509_cert::crl::CertificateList::from_der(crl).map_err(|e| {
            format!(
                "--crl {}: not a certificate revocation list: {e}",
                path_of(&files.crl)
            )
        })?;
        let tbs = &list.tbs_cert_list;
        revoked += tbs.revoked_certificates.as_ref().map_or(0, Vec::len);
        if let Some(next) = tbs.next_update
            && is_past(&next)
        {
            warnings.push(format!(
                "--crl {}: the list of {} was due to be replaced on {}; fetch a new one \
                 from its CA and send SIGHUP",
                path_of(&files.crl),
                tbs.issuer,
                next
            ));
        }
    }
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(crls)
        .allow_unauthenticated()
        .build()
        .map_err(|e| match e {
            rustls::server::VerifierBuilderError::InvalidCrl(e) => {
                format!(
                    "--crl {}: a list cannot be used: {e:?}",
                    path_of(&files.crl)
                )
            }
            other => format!("--client-ca {}: {other}", files.client_ca.display()),
        })?;
    let verifier = Arc::new(NamedClients { inner, names });
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("TLS 1.3 is not available: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| key_error(e, &files.cert, &files.key, "--tls-cert", "--tls-key"))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    Ok((
        Arc::new(config),
        Loaded {
            subject: own.subject,
            not_after: own.not_after,
            client_cas,
            revoked,
            warnings,
        },
    ))
}

fn path_of(path: &Option<PathBuf>) -> String {
    path.as_deref()
        .map_or_else(String::new, |p| p.display().to_string())
}

/// A certificate chain and key refused together.
fn key_error(e: rustls::Error, cert: &Path, key: &Path, cert_flag: &str, key_flag: &str) -> String {
    match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "{key_flag} {} is not the key of the certificate in {cert_flag} {}: give the key \
             the certificate was made for",
            key.display(),
            cert.display()
        ),
        other => format!(
            "{key_flag} {}: the key cannot be used: {other}",
            key.display()
        ),
    }
}

/// The files of a client (`deploy --ca F [--cert F --key F]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientFiles {
    /// The CA certificates that may issue the server's certificate, PEM.
    pub ca: PathBuf,
    /// A client certificate chain and its key, PEM: who we are. None: nobody, as far as
    /// the handshake goes.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// A client's configuration from `files`: TLS 1.3, the server's certificate checked
/// against `--ca` only (never the system's CAs), no session resumption.
///
/// # Errors
/// What is wrong, naming the flag and the file.
pub fn client_config(files: &ClientFiles) -> Result<Arc<ClientConfig>, String> {
    let mut roots = RootCertStore::empty();
    for ca in read_certificates(&files.ca, "--ca")? {
        roots.add(ca).map_err(|e| {
            format!(
                "--ca {}: a certificate in it cannot be a CA: {e}",
                files.ca.display()
            )
        })?;
    }
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)
        .map_err(|e| format!("TLS 1.3 is not available: {e}"))?
        .with_root_certificates(roots);
    let mut config = match &files.identity {
        Some((cert, key)) => {
            let chain = read_certificates(cert, "--cert")?;
            let private = read_private_key(key, "--key")?;
            builder
                .with_client_auth_cert(chain, private)
                .map_err(|e| key_error(e, cert, key, "--cert", "--key"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.resumption = rustls::client::Resumption::disabled();
    Ok(Arc::new(config))
}

/// The name a client checks the server's certificate against: `host` as given in the
/// address (a DNS name or an IP address).
///
/// # Errors
/// When `host` is neither.
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    ServerName::try_from(host.to_string())
        .map_err(|_| format!("{host:?} is neither a host name nor an IP address"))
}

/// A client's handshake on `stream` with the server reached as `host`.
///
/// # Errors
/// As rustls reports it: [`Failure::of`] says what it means.
pub async fn connect<S>(
    config: Arc<ClientConfig>,
    host: ServerName<'static>,
    stream: S,
) -> io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    tokio_rustls::TlsConnector::from(config)
        .connect(host, stream)
        .await
}

/// Reads a file of PEM certificates (or one DER certificate).
///
/// # Errors
/// A missing or unreadable file, or one that holds no certificate, naming `flag`.
pub fn read_certificates(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = read(path, flag)?;
    let at = || format!("{flag} {}", path.display());
    if !is_pem(&bytes) {
        x509_cert::Certificate::from_der(&bytes).map_err(|_| {
            format!(
                "{}: holds no certificate (PEM, -----BEGIN CERTIFICATE-----, or DER)",
                at()
            )
        })?;
        return Ok(vec![CertificateDer::from(bytes.to_vec())]);
    }
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", at()))?;
    if certs.is_empty() {
        return Err(format!(
            "{}: holds no certificate (-----BEGIN CERTIFICATE-----)",
            at()
        ));
    }
    for (i, cert) in certs.iter().enumerate() {
        x509_cert::Certificate::from_der(cert)
            .map_err(|e| format!("{}: certificate {} cannot be read: {e}", at(), i + 1))?;
    }
    Ok(certs)
}

/// Reads a private key file (PEM: PKCS#8, PKCS#1 or SEC1). What it read is wiped.
///
/// # Errors
/// A missing or unreadable file, or one that holds no key, naming `flag`; never a byte
/// of the file.
pub fn read_private_key(path: &Path, flag: &str) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = read(path, flag)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no private key (PEM: -----BEGIN PRIVATE KEY-----, or an RSA or EC \
                 PRIVATE KEY)"
                    .to_string()
            }
            // The error's text could quote the file: say only what kind it is.
            _ => "holds no readable PEM private key".to_string(),
        };
        format!("{flag} {}: {why}", path.display())
    })
}

/// Reads certificate revocation lists, PEM (any number) or DER (one).
///
/// # Errors
/// A missing or unreadable file, or one that holds no list, naming `flag`.
pub fn read_crls(
    path: &Path,
    flag: &str,
) -> Result<Vec<CertificateRevocationListDer<'static>>, String> {
    let bytes = read(path, flag)?;
    let at = || format!("{flag} {}", path.display());
    if !is_pem(&bytes) {
        x509_cert::crl::CertificateList::from_der(&bytes).map_err(|_| {
            format!(
                "{}: holds no certificate revocation list (PEM, -----BEGIN X509 CRL-----, \
                 or DER)",
                at()
            )
        })?;
        return Ok(vec![CertificateRevocationListDer::from(bytes.to_vec())]);
    }
    let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM: {e}", at()))?;
    if crls.is_empty() {
        return Err(format!(
            "{}: holds no certificate revocation list (-----BEGIN X509 CRL-----)",
            at()
        ));
    }
    Ok(crls)
}

fn read(path: &Path, flag: &str) -> Result<Zeroizing<Vec<u8>>, String> {
    std::fs::read(path)
        .map(Zeroizing::new)
        .map_err(|e| format!("{flag} {}: cannot read it: {e}", path.display()))
}

fn is_pem(bytes: &[u8]) -> bool {
    bytes
        .windows(b"-----BEGIN".len())
        .any(|w| w == b"-----BEGIN")
}

/// A warning for a key file that its group or others may read.
fn readable_by_others(path: &Path, flag: &str) -> Option<String> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "{flag} {}: the key file has mode {:o}, readable by others than its owner: run \
             `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        )
    })
}

/// Why a certificate gives no name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NameProblem {
    /// It is not an X.509 certificate.
    NotACertificate,
    /// Its subject has no Common Name.
    NoCommonName,
    /// Its subject has more than one: which one is meant?
    ManyCommonNames,
    /// Its Common Name is not a UTF8String, PrintableString or IA5String.
    NotText,
}

impl fmt::Display for NameProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NameProblem::NotACertificate => "it is not an X.509 certificate",
            NameProblem::NoCommonName => "its subject has no Common Name (CN)",
            NameProblem::ManyCommonNames => "its subject has more than one Common Name (CN)",
            NameProblem::NotText => "its Common Name (CN) is not text",
        })
    }
}

/// The name a certificate gives its holder: its subject's one Common Name.
///
/// # Errors
/// A [`NameProblem`].
pub fn certificate_name(cert: &CertificateDer<'_>) -> Result<String, NameProblem> {
    let cert = x509_cert::Certificate::from_der(cert).map_err(|_| NameProblem::NotACertificate)?;
    let mut found = None;
    for rdn in &cert.tbs_certificate.subject.0 {
        for atv in rdn.0.iter() {
            if atv.oid != x509_cert::der::oid::db::rfc4519::CN {
                continue;
            }
            if found.is_some() {
                return Err(NameProblem::ManyCommonNames);
            }
            let text = match atv.value.tag() {
                Tag::Utf8String | Tag::PrintableString | Tag::Ia5String => {
                    std::str::from_utf8(atv.value.value()).map_err(|_| NameProblem::NotText)?
                }
                _ => return Err(NameProblem::NotText),
            };
            found = Some(text.to_string());
        }
    }
    found.ok_or(NameProblem::NoCommonName)
}

fn is_past(time: &x509_cert::time::Time) -> bool {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .is_ok_and(|now| time.to_unix_duration() < now)
}

/// A certificate's subject and expiry, for the log.
struct Described {
    subject: String,
    not_after: String,
    expired: bool,
}

impl Described {
    fn of(cert: &CertificateDer<'_>) -> Result<Described, x509_cert::der::Error> {
        let cert = x509_cert::Certificate::from_der(cert)?;
        let validity = &cert.tbs_certificate.validity;
        Ok(Described {
            subject: cert.tbs_certificate.subject.to_string(),
            not_after: validity.not_after.to_string(),
            expired: is_past(&validity.not_after),
        })
    }
}

tokio::task_local! {
    /// The name the certificate of the client being verified claims, kept for [`accept`]
    /// to report if the handshake fails (the verifier has no other way to the caller).
    static CLAIMED: RefCell<Option<String>>;
}

/// The webpki verifier, with the name rule on top.
#[derive(Debug)]
struct NamedClients {
    inner: Arc<dyn ClientCertVerifier>,
    names: NameRule,
}

impl ClientCertVerifier for NamedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let name = certificate_name(end_entity);
        let claimed = match &name {
            Ok(name) => name.clone(),
            Err(problem) => format!("(none: {problem})"),
        };
        let _ = CLAIMED.try_with(|c| *c.borrow_mut() = Some(claimed));
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        match name {
            Ok(name) if (self.names)(&name) => Ok(verified),
            _ => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server handshake that failed.
#[derive(Debug)]
pub struct Refused {
    /// What rustls reported: [`refusal`] words it.
    pub error: io::Error,
    /// The name the client's certificate claimed, if it sent one (or why it gives none):
    /// for the log, never trusted.
    pub claimed: Option<String>,
}

/// The server's side of a handshake on `stream`: the TLS stream, and the name the
/// client's verified certificate gives (None: the client sent no certificate).
///
/// # Errors
/// [`Refused`].
pub async fn accept<S>(
    config: Arc<ServerConfig>,
    stream: S,
) -> Result<(tokio_rustls::server::TlsStream<S>, Option<String>), Refused>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    CLAIMED
        .scope(RefCell::new(None), async move {
            match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(tls) => {
                    let name = match tls.get_ref().1.peer_certificates() {
                        Some([first, ..]) => match certificate_name(first) {
                            Ok(name) => Some(name),
                            // The verifier accepted only certificates that give one.
                            Err(problem) => {
                                return Err(Refused {
                                    error: io::Error::other(problem.to_string()),
                                    claimed: None,
                                });
                            }
                        },
                        _ => None,
                    };
                    Ok((tls, name))
                }
                Err(error) => Err(Refused {
                    error,
                    claimed: CLAIMED.with(|c| c.borrow_mut().take()),
                }),
            }
        })
        .await
}

fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref().and_then(|inner| inner.downcast_ref())
}

/// Why the server refused a client, in words for its log (the flags are the server's).
pub fn refusal(e: &io::Error) -> String {
    use CertificateError as C;
    let Some(tls) = rustls_error(e) else {
        return match e.kind() {
            io::ErrorKind::UnexpectedEof => "it closed the connection during the handshake".into(),
            _ => format!("the connection failed: {e}"),
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(cert) => match cert {
            C::Expired | C::ExpiredContext { .. } => "its certificate has expired".into(),
            C::NotValidYet | C::NotValidYetContext { .. } => {
                "its certificate is not valid yet".into()
            }
            C::UnknownIssuer => "its certificate is not issued by a CA in --client-ca".into(),
            C::BadSignature => {
                "its certificate's signature does not verify with the CA in --client-ca".into()
            }
            C::Revoked => "its certificate is revoked (--crl)".into(),
            C::UnknownRevocationStatus => {
                "its certificate's revocation status is unknown: --crl holds no list from its \
                 issuer"
                    .into()
            }
            C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                "the revocation list of its issuer (--crl) is out of date".into()
            }
            C::ApplicationVerificationFailure => {
                "its certificate names no principal: its subject's Common Name must be admin \
                 or a service's name"
                    .into()
            }
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => {
                "its certificate is not for client authentication (extendedKeyUsage)".into()
            }
            other => format!("its certificate is refused: {other}"),
        },
        rustls::Error::AlertReceived(alert) => match alert {
            AlertDescription::UnknownCA => "it refused this server's certificate (UnknownCA): \
                 its --ca is not the CA of --tls-cert"
                .into(),
            AlertDescription::BadCertificate => "it refused this server's certificate \
                 (BadCertificate): it may have reached the server by a name --tls-cert lacks"
                .into(),
            other => format!("it gave up the handshake ({other:?})"),
        },
        rustls::Error::PeerIncompatible(why) => {
            format!("it cannot speak TLS 1.3 as this server does ({why:?})")
        }
        rustls::Error::InvalidMessage(_) => "it does not speak TLS".into(),
        other => format!("the handshake failed: {other}"),
    }
}

/// What the server refused of ours, as its alert says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Our certificate has expired (or is not valid yet).
    Expired,
    /// Our certificate is not from a CA the server trusts (or its revocation status is
    /// unknown there).
    UnknownCa,
    /// Our certificate is revoked.
    Revoked,
    /// Our certificate gives no name the server takes for someone.
    NoPrincipal,
    /// The server wants a certificate and we sent none.
    Required,
    /// Another alert.
    Other(String),
}

/// Why a client's TLS connection failed, from its side.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The server's certificate is not from a CA in `--ca`.
    ServerNotTrusted,
    /// The server's certificate has expired.
    ServerExpired,
    /// The server's certificate is not valid yet.
    ServerNotYetValid,
    /// The server's certificate is not for the name we reached it by.
    ServerNameMismatch {
        /// The host of the address.
        expected: String,
        /// The names in its certificate.
        presented: Vec<String>,
    },
    /// Something else is wrong with the server's certificate.
    ServerCertificate(String),
    /// The server refused the handshake.
    Refused(Refusal),
    /// The other end does not speak TLS.
    NotTls,
    /// The other end cannot speak TLS 1.3.
    OldTls,
    /// The server closed the connection during the handshake, without saying why.
    Closed,
}

impl Failure {
    /// What `e`, from a TLS connection's handshake or its first reads, means; None for an
    /// error that is not about TLS (a refused connection, a timeout).
    pub fn of(e: &io::Error) -> Option<Failure> {
        use CertificateError as C;
        let Some(tls) = rustls_error(e) else {
            return (e.kind() == io::ErrorKind::UnexpectedEof).then_some(Failure::Closed);
        };
        Some(match tls {
            rustls::Error::InvalidCertificate(cert) => match cert {
                C::UnknownIssuer | C::BadSignature => Failure::ServerNotTrusted,
                C::Expired | C::ExpiredContext { .. } => Failure::ServerExpired,
                C::NotValidYet | C::NotValidYetContext { .. } => Failure::ServerNotYetValid,
                C::NotValidForNameContext {
                    expected,
                    presented,
                } => Failure::ServerNameMismatch {
                    expected: expected.to_str().into_owned(),
                    presented: presented.iter().map(|n| plain_name(n)).collect(),
                },
                C::NotValidForName => Failure::ServerNameMismatch {
                    expected: String::new(),
                    presented: Vec::new(),
                },
                other => Failure::ServerCertificate(other.to_string()),
            },
            rustls::Error::AlertReceived(alert) => Failure::Refused(match alert {
                AlertDescription::CertificateExpired => Refusal::Expired,
                AlertDescription::UnknownCA => Refusal::UnknownCa,
                AlertDescription::CertificateRevoked => Refusal::Revoked,
                AlertDescription::AccessDenied => Refusal::NoPrincipal,
                AlertDescription::CertificateRequired => Refusal::Required,
                other => Refusal::Other(format!("{other:?}")),
            }),
            rustls::Error::InvalidMessage(_) => Failure::NotTls,
            rustls::Error::PeerIncompatible(_) => Failure::OldTls,
            other => Failure::ServerCertificate(other.to_string()),
        })
    }
}

/// A name of a certificate as webpki shows it (`DnsName("db")`, `IpAddress(10.0.0.1)`),
/// as the user would type it.
fn plain_name(shown: &str) -> String {
    let inner = shown
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .unwrap_or(shown);
    inner.trim_matches('"').to_string()
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ServerNotTrusted => f.write_str(
                "the server's certificate is not issued by the CA in --ca: give the CA that \
                 issued it (the server's --tls-cert)",
            ),
            Failure::ServerExpired => f.write_str(
                "the server's certificate has expired: its operator must renew it (then \
                 SIGHUP reloads it)",
            ),
            Failure::ServerNotYetValid => {
                f.write_str("the server's certificate is not valid yet: check this machine's clock")
            }
            Failure::ServerNameMismatch {
                expected,
                presented,
            } if !presented.is_empty() => write!(
                f,
                "the server's certificate is for {}, not {expected}: connect by one of those \
                 names (--addr tls:NAME:PORT), or have it reissued with {expected} among its \
                 names (subjectAltName)",
                presented.join(", ")
            ),
            Failure::ServerNameMismatch { .. } => f.write_str(
                "the server's certificate is not for the host in --addr: connect by a name it \
                 has, or have it reissued with this one (subjectAltName)",
            ),
            Failure::ServerCertificate(why) => {
                write!(f, "the server's certificate is refused: {why}")
            }
            Failure::Refused(refusal) => {
                f.write_str("the server refused ")?;
                match refusal {
                    Refusal::Expired => f.write_str(
                        "the certificate in --cert: it has expired (or is not valid yet); \
                         get a new one from the CA",
                    ),
                    Refusal::UnknownCa => f.write_str(
                        "the certificate in --cert: it is not issued by a CA the server \
                         trusts (its --client-ca), or its revocation status is unknown there",
                    ),
                    Refusal::Revoked => {
                        f.write_str("the certificate in --cert: it is revoked (the server's --crl)")
                    }
                    Refusal::NoPrincipal => f.write_str(
                        "the certificate in --cert: its subject's Common Name (CN) must be \
                         admin or a service's name",
                    ),
                    Refusal::Required => f.write_str(
                        "the connection: it needs a client certificate; give --cert and --key",
                    ),
                    Refusal::Other(alert) => {
                        write!(f, "the handshake ({alert}); see the server's log")
                    }
                }
            }
            Failure::NotTls => f.write_str(
                "the other end does not speak TLS: is the address a tls: listener of \
                 srv-secrets?",
            ),
            Failure::OldTls => f.write_str("the other end does not speak TLS 1.3"),
            Failure::Closed => f.write_str(
                "the server closed the connection during the TLS handshake; see its log",
            ),
        }
    }
}

#[cfg(test)]
mod tests;
