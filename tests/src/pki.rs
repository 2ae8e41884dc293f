//! Certificate authorities for the TLS tests, made in the test (rcgen): CAs, server and
//! client certificates (expired ones, nameless ones, ones of another CA) and revocation
//! lists, written as PEM files the binaries are given.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SanType,
    SerialNumber,
};

/// A certificate authority that writes what it issues into a directory.
pub struct Ca {
    dir: PathBuf,
    name: String,
    params: CertificateParams,
    key: KeyPair,
    next_serial: AtomicU64,
    crl_number: AtomicU64,
}

/// A certificate and its key, as files.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, mode 0600).
    pub key: PathBuf,
    /// Its serial number, for a revocation list.
    pub serial: u64,
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Validity {
    /// From 1975 to 4096.
    Current,
    /// During 2020 only.
    Expired,
}

fn params_named(cn: Option<&str>) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(cn) = cn {
        params.distinguished_name.push(DnType::CommonName, cn);
    }
    params
}

impl Ca {
    /// A new CA called `name`, its certificate written to `DIR/NAME.crt`.
    ///
    /// # Panics
    /// If the key or the certificate cannot be made or written.
    pub fn new(dir: &Path, name: &str) -> Ca {
        let mut params = params_named(Some(name));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).expect("write the CA");
        Ca {
            dir: dir.to_path_buf(),
            name: name.into(),
            params,
            key,
            next_serial: AtomicU64::new(1000),
            crl_number: AtomicU64::new(1),
        }
    }

    /// The CA's certificate file.
    pub fn cert(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    fn issue_with(&self, file: &str, mut params: CertificateParams) -> Identity {
        let serial = self.next_serial.fetch_add(1, Ordering::Relaxed);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate().expect("a key");
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).expect("a certificate");
        let identity = Identity {
            cert: self.dir.join(format!("{file}.crt")),
            key: self.dir.join(format!("{file}.key")),
            serial,
        };
        std::fs::write(&identity.cert, cert.pem()).expect("write the certificate");
        std::fs::write(&identity.key, key.serialize_pem()).expect("write the key");
        std::fs::set_permissions(&identity.key, std::fs::Permissions::from_mode(0o600))
            .expect("chmod the key");
        identity
    }

    /// A client certificate whose subject's Common Name is `cn` (none: no CN), written to
    /// `DIR/FILE.crt` and `DIR/FILE.key`.
    ///
    /// # Panics
    /// If it cannot be made or written.
    pub fn client(&self, file: &str, cn: Option<&str>, validity: Validity) -> Identity {
        let mut params = params_named(cn);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        self.issue_with(file, params)
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    ///
    /// # Panics
    /// If it cannot be made or written.
    pub fn server(&self, file: &str, cn: &str, names: &[&str]) -> Identity {
        let mut params = params_named(Some(cn));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*n).try_into().expect("a DNS name")),
            })
            .collect();
        self.issue_with(file, params)
    }

    /// Writes a revocation list of `revoked` to `path` (PEM), a newer one each time.
    ///
    /// # Panics
    /// If it cannot be made or written.
    pub fn write_crl(&self, path: &Path, revoked: &[&Identity]) {
        let now = rcgen::date_time_ymd(2025, 1, 1);
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(self.crl_number.fetch_add(1, Ordering::Relaxed)),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|id| RevokedCertParams {
                    serial_number: SerialNumber::from(id.serial),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&self.params, &self.key))
        .expect("a CRL");
        std::fs::write(path, crl.pem().expect("PEM")).expect("write the CRL");
    }
}
