#![allow(clippy::unwrap_used, reason = "a test fails by panicking")]

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, RevokedCertParams, SanType,
    SerialNumber,
};

use super::*;

/// A CA that writes what it issues into a directory.
struct Ca {
    dir: PathBuf,
    name: String,
    params: CertificateParams,
    key: KeyPair,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join(format!("{name}.crt")), cert.pem()).unwrap();
        Ca {
            dir: dir.to_path_buf(),
            name: name.into(),
            params,
            key,
        }
    }

    fn cert_path(&self) -> PathBuf {
        self.dir.join(format!("{}.crt", self.name))
    }

    /// A certificate for `cn` (none: no Common Name), with serial `serial`, valid from
    /// `days` ago for `days` days plus `extra`; its files' paths.
    fn issue(
        &self,
        file: &str,
        cn: Option<&str>,
        serial: u64,
        expired: bool,
    ) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        if let Some(cn) = cn {
            params.distinguished_name.push(DnType::CommonName, cn);
        }
        params.serial_number = Some(SerialNumber::from(serial));
        params.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress("127.0.0.1".parse().unwrap()),
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        if expired {
            params.not_before = rcgen::date_time_ymd(2020, 1, 1);
            params.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{file}.crt")),
            self.dir.join(format!("{file}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&k, std::fs::Permissions::from_mode(0o600)).unwrap();
        (c, k)
    }

    /// A CRL revoking `serials`.
    fn crl(&self, file: &str, serials: &[u64]) -> PathBuf {
        let now = rcgen::date_time_ymd(2025, 1, 1);
        let crl = CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(4000, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(*s),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(&Issuer::from_params(&self.params, &self.key))
        .unwrap();
        let path = self.dir.join(file);
        std::fs::write(&path, crl.pem().unwrap()).unwrap();
        path
    }
}

fn admin_or_web(name: &str) -> bool {
    matches!(name, "admin" | "web" | "old")
}

struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    server: ServerFiles,
}

fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "ca");
    let (cert, key) = ca.issue("server", Some("srv-secrets"), 1, false);
    let server = ServerFiles {
        cert,
        key,
        client_ca: ca.cert_path(),
        crl: None,
    };
    Pki { dir, ca, server }
}

/// One handshake over an in-memory pipe: the server's outcome and the client's first
/// read's (TLS 1.3 tells the client of a refused certificate only after its handshake).
async fn handshake(
    server: Arc<ServerConfig>,
    client: &ClientFiles,
    host: &str,
) -> (Result<Option<String>, Refused>, Result<(), io::Error>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (a, b) = tokio::io::duplex(64 << 10);
    let client = client_config(client).unwrap();
    let name = server_name(host).unwrap();
    let served = tokio::spawn(async move {
        match accept(server, a).await {
            Ok((mut tls, name)) => {
                let mut byte = [0u8; 1];
                tls.read_exact(&mut byte).await.unwrap();
                tls.write_all(b"!").await.unwrap();
                tls.shutdown().await.unwrap();
                Ok(name)
            }
            Err(refused) => Err(refused),
        }
    });
    let talked = async {
        let mut tls = connect(client, name, b).await?;
        tls.write_all(b"?").await?;
        let mut byte = [0u8; 1];
        tls.read_exact(&mut byte).await?;
        Ok(())
    }
    .await;
    (served.await.unwrap(), talked)
}

fn client(ca: &Ca, identity: Option<(PathBuf, PathBuf)>) -> ClientFiles {
    ClientFiles {
        ca: ca.cert_path(),
        identity,
    }
}

#[tokio::test]
async fn a_certificate_of_the_ca_names_its_holder_and_none_names_nobody() {
    let p = pki();
    let (config, loaded) = server_config(&p.server, admin_or_web).unwrap();
    assert_eq!(loaded.subject, "CN=srv-secrets");
    assert_eq!(loaded.client_cas, 1);
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let admin = p.ca.issue("admin", Some("admin"), 2, false);
    let (served, talked) =
        handshake(config.clone(), &client(&p.ca, Some(admin)), "localhost").await;
    talked.unwrap();
    assert_eq!(served.unwrap(), Some("admin".to_string()));
    // Without a certificate the handshake completes, naming nobody.
    let (served, talked) = handshake(config.clone(), &client(&p.ca, None), "127.0.0.1").await;
    talked.unwrap();
    assert_eq!(served.unwrap(), None);
}

/// The server's refusal (for its log, with the name claimed) and the client's.
async fn refused(
    config: Arc<ServerConfig>,
    client: &ClientFiles,
) -> (String, Option<String>, Failure) {
    let (served, talked) = handshake(config, client, "localhost").await;
    let refused = served.unwrap_err();
    let failure = Failure::of(&talked.unwrap_err()).unwrap();
    (refusal(&refused.error), refused.claimed, failure)
}

#[tokio::test]
async fn a_bad_client_certificate_is_refused_with_its_reason_on_both_sides() {
    let p = pki();
    let (config, _) = server_config(&p.server, admin_or_web).unwrap();

    let expired = p.ca.issue("expired", Some("web"), 3, true);
    let (log, claimed, failure) = refused(config.clone(), &client(&p.ca, Some(expired))).await;
    assert_eq!(log, "its certificate has expired");
    assert_eq!(claimed.as_deref(), Some("web"));
    assert_eq!(failure, Failure::Refused(Refusal::Expired));
    assert!(
        failure.to_string().contains("--cert: it has expired"),
        "{failure}"
    );

    let other = Ca::new(p.dir.path(), "other-ca");
    let foreign = other.issue("foreign", Some("admin"), 4, false);
    let (log, claimed, failure) = refused(config.clone(), &client(&p.ca, Some(foreign))).await;
    assert_eq!(log, "its certificate is not issued by a CA in --client-ca");
    assert_eq!(claimed.as_deref(), Some("admin"));
    assert_eq!(failure, Failure::Refused(Refusal::UnknownCa));

    let unknown = p.ca.issue("unknown", Some("x/y"), 5, false);
    let (log, claimed, failure) = refused(config.clone(), &client(&p.ca, Some(unknown))).await;
    assert!(
        log.starts_with("its certificate names no principal"),
        "{log}"
    );
    assert_eq!(claimed.as_deref(), Some("x/y"));
    assert_eq!(failure, Failure::Refused(Refusal::NoPrincipal));

    let nameless = p.ca.issue("nameless", None, 6, false);
    let (log, claimed, _) = refused(config, &client(&p.ca, Some(nameless))).await;
    assert!(
        log.starts_with("its certificate names no principal"),
        "{log}"
    );
    assert_eq!(
        claimed.as_deref(),
        Some("(none: its subject has no Common Name (CN))")
    );
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_once_the_crl_lists_it() {
    let mut p = pki();
    let web = p.ca.issue("web", Some("web"), 7, false);
    let old = p.ca.issue("old", Some("old"), 8, false);
    p.server.crl = Some(p.ca.crl("ca.crl", &[8]));
    let (config, loaded) = server_config(&p.server, admin_or_web).unwrap();
    assert_eq!(loaded.revoked, 1);
    let (served, talked) = handshake(config.clone(), &client(&p.ca, Some(web)), "localhost").await;
    talked.unwrap();
    assert_eq!(served.unwrap().as_deref(), Some("web"));
    let (log, claimed, failure) = refused(config, &client(&p.ca, Some(old))).await;
    assert_eq!(log, "its certificate is revoked (--crl)");
    assert_eq!(claimed.as_deref(), Some("old"));
    assert_eq!(failure, Failure::Refused(Refusal::Revoked));
}

#[tokio::test]
async fn the_client_checks_the_servers_certificate_and_name() {
    let p = pki();
    let (config, _) = server_config(&p.server, admin_or_web).unwrap();
    let other = Ca::new(p.dir.path(), "other-ca");
    let (served, talked) = handshake(config.clone(), &client(&other, None), "localhost").await;
    assert!(served.is_err());
    let failure = Failure::of(&talked.unwrap_err()).unwrap();
    assert_eq!(failure, Failure::ServerNotTrusted);
    assert!(
        failure
            .to_string()
            .starts_with("the server's certificate is not issued by the CA in --ca")
    );
    let (served, talked) = handshake(config, &client(&p.ca, None), "db.example").await;
    let refused = served.unwrap_err();
    assert!(refusal(&refused.error).starts_with("it refused this server's certificate"));
    let failure = Failure::of(&talked.unwrap_err()).unwrap();
    assert_eq!(
        failure.to_string(),
        "the server's certificate is for localhost, 127.0.0.1, not db.example: connect by \
         one of those names (--addr tls:NAME:PORT), or have it reissued with db.example \
         among its names (subjectAltName)"
    );
}

#[test]
fn bad_files_are_named_with_their_flag_and_never_quoted() {
    let p = pki();
    let missing = ServerFiles {
        key: p.dir.path().join("nope.key"),
        ..p.server.clone()
    };
    let e = server_config(&missing, admin_or_web).unwrap_err();
    assert!(
        e.starts_with(&format!(
            "--tls-key {}: cannot read it:",
            p.dir.path().join("nope.key").display()
        )),
        "{e}"
    );
    // A file that is not a key, holding something that looks secret: never echoed.
    let junk = p.dir.path().join("junk.key");
    std::fs::write(
        &junk,
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LXZhbHVl!!\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let e = server_config(
        &ServerFiles {
            key: junk.clone(),
            ..p.server.clone()
        },
        admin_or_web,
    )
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "--tls-key {}: holds no readable PEM private key",
            junk.display()
        )
    );
    // Another certificate's key.
    let (_, other_key) = p.ca.issue("other", Some("web"), 9, false);
    let e = server_config(
        &ServerFiles {
            key: other_key.clone(),
            ..p.server.clone()
        },
        admin_or_web,
    )
    .unwrap_err();
    assert!(
        e.starts_with(&format!(
            "--tls-key {} is not the key of the certificate in --tls-cert",
            other_key.display()
        )),
        "{e}"
    );
    // A CA file without certificates.
    let empty = p.dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    let e = client_config(&ClientFiles {
        ca: empty.clone(),
        identity: None,
    })
    .unwrap_err();
    assert_eq!(
        e,
        format!(
            "--ca {}: holds no certificate (PEM, -----BEGIN CERTIFICATE-----, or DER)",
            empty.display()
        )
    );
    // A key others may read is a warning, not a refusal.
    std::fs::set_permissions(&p.server.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (_, loaded) = server_config(&p.server, admin_or_web).unwrap();
    assert!(
        loaded.warnings[0].contains("chmod 600"),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn the_name_is_the_one_common_name() {
    let p = pki();
    let read = |path: &Path| read_certificates(path, "--cert").unwrap().remove(0);
    let (admin, _) = p.ca.issue("a", Some("admin"), 10, false);
    assert_eq!(certificate_name(&read(&admin)), Ok("admin".into()));
    let (none, _) = p.ca.issue("n", None, 11, false);
    assert_eq!(
        certificate_name(&read(&none)),
        Err(NameProblem::NoCommonName)
    );
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "web");
    params
        .distinguished_name
        .push(DnType::OrganizationName, "x");
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    assert_eq!(certificate_name(cert.der()), Ok("web".into()));
    assert_eq!(
        certificate_name(&CertificateDer::from(vec![1, 2, 3])),
        Err(NameProblem::NotACertificate)
    );
}
