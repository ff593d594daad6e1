//! Vaitio's PKI: the development CA, server certificates, and the rustls configuration of the
//! gateway's only listener.
//!
//! Keys are ECDSA P-256, generated with openssl; private keys are written with mode 0600. The
//! gateway's development mode creates its PKI through [`DevPki::ensure`] on first run; a
//! production deployment brings its own certificates and only uses [`server_config`].

use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509Name, X509NameBuilder, X509NameRef, X509};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

mod identity;
mod registry;
mod verifier;

pub use identity::{base64url, thumbprint_sha256, OrganisationOid, PeerIdentity};
pub use registry::{list, IssuedRecord, Validity, CRL_FILE};
pub use verifier::VerifierError;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("openssl: {0}")]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Pem { path: PathBuf, message: String },
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS client verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error(transparent)]
    ClientVerifier(#[from] verifier::VerifierError),
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> CertsError + '_ {
    move |source| CertsError::Io { path: path.to_owned(), source }
}

/// The lowest TLS version the listener accepts. TLS 1.3 unless an operator explicitly allows 1.2
/// for an older client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsMinimum {
    Tls12,
    Tls13,
}

/// A certificate authority whose key is on disk: the development CA, or an operator's own.
pub struct CertificateAuthority {
    pub(crate) cert: X509,
    pub(crate) key: PKey<Private>,
}

/// A freshly issued certificate and its key, as PEM.
pub struct Issued {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

pub(crate) const CA_CERT: &str = "ca.pem";
pub(crate) const CA_KEY: &str = "ca-key.pem";

fn subject(organisation_name: &str, oid: Option<&OrganisationOid>, common_name: &str) -> Result<X509Name, CertsError> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, organisation_name)?;
    if let Some(oid) = oid {
        name.append_entry_by_text("organizationIdentifier", oid.as_str())?;
    }
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

/// A version 3 certificate with a random serial, for `key`, named `subject`, issued by `issuer`.
fn certificate_builder(
    subject: &X509NameRef,
    issuer: &X509NameRef,
    key: &PKey<Private>,
    validity: Validity,
) -> Result<X509Builder, CertsError> {
    let mut builder = X509Builder::new()?;
    builder.set_version(2)?;
    builder.set_serial_number(serial()?.as_ref())?;
    builder.set_subject_name(subject)?;
    builder.set_issuer_name(issuer)?;
    builder.set_pubkey(key)?;
    builder.set_not_before(Asn1Time::from_unix(validity.not_before())?.as_ref())?;
    builder.set_not_after(Asn1Time::from_unix(validity.not_after())?.as_ref())?;
    Ok(builder)
}

pub(crate) fn new_key() -> Result<PKey<Private>, CertsError> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    Ok(PKey::from_ec_key(EcKey::generate(&group)?)?)
}

/// A new ECDSA P-256 private key as PKCS#8 PEM (token-signing keys).
pub fn generate_p256_pem() -> Result<Vec<u8>, CertsError> {
    Ok(new_key()?.private_key_to_pem_pkcs8()?)
}

/// The public half of a P-256 private key (PKCS#8 PEM) as JWK coordinates: base64url `x`, `y`.
pub fn p256_public_coordinates(private_pem: &[u8]) -> Result<(String, String), CertsError> {
    let key = EcKey::private_key_from_pem(private_pem)?;
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let mut context = openssl::bn::BigNumContext::new()?;
    let (mut x, mut y) = (BigNum::new()?, BigNum::new()?);
    key.public_key().affine_coordinates(&group, &mut x, &mut y, &mut context)?;
    Ok((base64url(&x.to_vec_padded(32)?), base64url(&y.to_vec_padded(32)?)))
}

/// The public half of a private key as SubjectPublicKeyInfo PEM.
pub fn public_key_pem(private_pem: &[u8]) -> Result<Vec<u8>, CertsError> {
    Ok(PKey::private_key_from_pem(private_pem)?.public_key_to_pem()?)
}

fn serial() -> Result<Asn1Integer, CertsError> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    Ok(bn.to_asn1_integer()?)
}

impl CertificateAuthority {
    /// Creates a new CA in `dir` (`ca.pem`, `ca-key.pem`), valid for ten years.
    pub fn init(dir: &Path, common_name: &str) -> Result<Self, CertsError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let key = new_key()?;
        let name = subject("Vaitio", None, common_name)?;
        let mut builder = certificate_builder(&name, &name, &key, Validity { start_days: 0, days: 3650 })?;
        builder.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
        builder.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
        builder.append_extension(ski)?;
        builder.sign(&key, MessageDigest::sha256())?;
        let ca = CertificateAuthority { cert: builder.build(), key };
        write_file(&dir.join(CA_CERT), &ca.cert.to_pem()?, false)?;
        write_file(&dir.join(CA_KEY), &ca.key.private_key_to_pem_pkcs8()?, true)?;
        Ok(ca)
    }

    /// Loads the CA kept in `dir`.
    pub fn load(dir: &Path) -> Result<Self, CertsError> {
        let cert_path = dir.join(CA_CERT);
        let key_path = dir.join(CA_KEY);
        let cert = X509::from_pem(&fs::read(&cert_path).map_err(io_error(&cert_path))?)?;
        let key = PKey::private_key_from_pem(&fs::read(&key_path).map_err(io_error(&key_path))?)?;
        Ok(CertificateAuthority { cert, key })
    }

    pub fn cert_pem(&self) -> Result<Vec<u8>, CertsError> {
        Ok(self.cert.to_pem()?)
    }

    /// Issues a TLS server certificate for the given names and addresses, valid for one year.
    pub fn issue_server(&self, dns_names: &[String], ips: &[IpAddr]) -> Result<Issued, CertsError> {
        self.issue_server_with(dns_names, ips, Validity::default())
    }

    pub fn issue_server_with(
        &self,
        dns_names: &[String],
        ips: &[IpAddr],
        validity: Validity,
    ) -> Result<Issued, CertsError> {
        if dns_names.is_empty() && ips.is_empty() {
            return Err(CertsError::Invalid(
                "a server certificate needs at least one --dns name or --ip address".into(),
            ));
        }
        let common_name = dns_names.first().cloned().unwrap_or_else(|| ips[0].to_string());
        self.issue(
            &common_name,
            None,
            validity,
            |san| {
                for dns in dns_names {
                    san.dns(dns);
                }
                for ip in ips {
                    san.ip(&ip.to_string());
                }
            },
            ExtendedKeyUsage::new().server_auth().build()?,
        )
    }

    /// Issues an organisation's client certificate: the OID in a `urn:oid:` SAN URI and in the
    /// subject's organizationIdentifier, so the gateway can read the organisation back.
    pub fn issue_org(&self, oid: &OrganisationOid, name: &str, validity: Validity) -> Result<Issued, CertsError> {
        if name.trim().is_empty() {
            return Err(CertsError::Invalid("an organisation certificate needs --name".into()));
        }
        self.issue(
            name,
            Some(oid),
            validity,
            |san| {
                san.uri(&format!("urn:oid:{oid}"));
            },
            ExtendedKeyUsage::new().client_auth().build()?,
        )
    }

    fn issue(
        &self,
        common_name: &str,
        organisation: Option<&OrganisationOid>,
        validity: Validity,
        names: impl FnOnce(&mut SubjectAlternativeName),
        usage: openssl::x509::X509Extension,
    ) -> Result<Issued, CertsError> {
        let key = new_key()?;
        let name = subject(organisation.map(|_| common_name).unwrap_or("Vaitio"), organisation, common_name)?;
        let mut builder = certificate_builder(&name, self.cert.subject_name(), &key, validity)?;
        builder.append_extension(BasicConstraints::new().critical().build()?)?;
        builder.append_extension(KeyUsage::new().critical().digital_signature().build()?)?;
        builder.append_extension(usage)?;
        let mut san = SubjectAlternativeName::new();
        names(&mut san);
        let san = san.build(&builder.x509v3_context(Some(&self.cert), None))?;
        builder.append_extension(san)?;
        let aki = AuthorityKeyIdentifier::new().keyid(false).build(&builder.x509v3_context(Some(&self.cert), None))?;
        builder.append_extension(aki)?;
        builder.sign(&self.key, MessageDigest::sha256())?;
        Ok(Issued { cert_pem: builder.build().to_pem()?, key_pem: key.private_key_to_pem_pkcs8()? })
    }
}

impl Issued {
    /// Writes `cert.pem`, `key.pem` (mode 0600) and the issuing CA's `ca.pem` into `dir`.
    pub fn write_to(&self, dir: &Path, ca: &CertificateAuthority) -> Result<(), CertsError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        write_file(&dir.join("cert.pem"), &self.cert_pem, false)?;
        write_file(&dir.join("key.pem"), &self.key_pem, true)?;
        write_file(&dir.join("ca.pem"), &ca.cert_pem()?, false)
    }
}

/// Writes a file; a private one is created with mode 0600 from the start, never widened later.
pub fn write_file(path: &Path, contents: &[u8], private: bool) -> Result<(), CertsError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(io_error(path))?;
    file.write_all(contents).map_err(io_error(path))
}

/// The development PKI in `<data folder>/pki/`: a CA and a server certificate for localhost.
pub struct DevPki {
    pub dir: PathBuf,
    /// True when this call generated it (first run).
    pub created: bool,
}

impl DevPki {
    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server").join("cert.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server").join("key.pem")
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join(CA_CERT)
    }

    /// Uses the PKI in `dir`, generating the CA and the localhost server certificate when absent.
    pub fn ensure(dir: &Path) -> Result<DevPki, CertsError> {
        let pki = DevPki { dir: dir.to_owned(), created: false };
        if pki.ca_cert().exists() && pki.server_cert().exists() && pki.server_key().exists() {
            return Ok(pki);
        }
        let ca = if dir.join(CA_KEY).exists() {
            CertificateAuthority::load(dir)?
        } else {
            CertificateAuthority::init(dir, "Vaitio development CA")?
        };
        let localhost: [IpAddr; 2] = [IpAddr::from([127, 0, 0, 1]), IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])];
        ca.issue_server(&["localhost".to_owned()], &localhost)?.write_to(&pki.dir.join("server"), &ca)?;
        Ok(DevPki { created: true, ..pki })
    }
}

pub(crate) fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| CertsError::Pem { path: path.to_owned(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(CertsError::Pem { path: path.to_owned(), message: "no certificate in the file".into() });
    }
    Ok(certs)
}

/// Who may present a client certificate: organisations whose certificates chain to `ca`, minus
/// those revoked in the CRL file `crl` (re-read whenever it changes).
#[derive(Clone, Debug)]
pub struct ClientAuth {
    pub ca: PathBuf,
    pub crl: Option<PathBuf>,
}

/// The rustls configuration of the gateway's listener: the server certificate chain and key from
/// PEM files, TLS 1.3 only unless `minimum` allows 1.2, the `ring` provider, HTTP/2 and
/// HTTP/1.1 offered by ALPN, and, with `client_auth`, optional client certificates verified
/// against the organisations' CA and CRL.
pub fn server_config(
    cert: &Path,
    key: &Path,
    minimum: TlsMinimum,
    client_auth: Option<&ClientAuth>,
) -> Result<rustls::ServerConfig, CertsError> {
    let chain = read_pem_certs(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| CertsError::Pem { path: key.to_owned(), message: e.to_string() })?;
    let versions: &[&rustls::SupportedProtocolVersion] = match minimum {
        TlsMinimum::Tls13 => &[&rustls::version::TLS13],
        TlsMinimum::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone()).with_protocol_versions(versions)?;
    let builder = match client_auth {
        Some(auth) => {
            let verifier = verifier::ReloadingVerifier::new(client_roots(&auth.ca)?, auth.crl.clone(), provider)?;
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(chain, key_der)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// A client configuration that trusts only the CA in `ca` (PEM), for the conformance suite, the
/// tests and the operator's tools.
pub fn client_roots(ca: &Path) -> Result<rustls::RootCertStore, CertsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_pem_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_pki_is_created_once_with_private_keys_closed() {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        let first = DevPki::ensure(&pki_dir).unwrap();
        assert!(first.created);
        let cert_before = fs::read(first.server_cert()).unwrap();
        let again = DevPki::ensure(&pki_dir).unwrap();
        assert!(!again.created);
        assert_eq!(fs::read(again.server_cert()).unwrap(), cert_before);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for key in [pki_dir.join("ca-key.pem"), first.server_key()] {
                assert_eq!(fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600, "{key:?}");
            }
        }
        let config = server_config(&first.server_cert(), &first.server_key(), TlsMinimum::Tls13, None).unwrap();
        assert_eq!(config.alpn_protocols.len(), 2);
        assert_eq!(client_roots(&first.ca_cert()).unwrap().len(), 1);
    }

    #[test]
    fn server_certificate_chains_to_the_ca_and_names_localhost() {
        let dir = tempfile::tempdir().unwrap();
        let pki = DevPki::ensure(dir.path()).unwrap();
        let ca = X509::from_pem(&fs::read(pki.ca_cert()).unwrap()).unwrap();
        let server = X509::from_pem(&fs::read(pki.server_cert()).unwrap()).unwrap();
        assert!(server.verify(&ca.public_key().unwrap()).unwrap());
        let names: Vec<String> = server
            .subject_alt_names()
            .unwrap()
            .iter()
            .filter_map(|n| n.dnsname().map(str::to_owned).or_else(|| n.ipaddress().map(|ip| format!("{ip:?}"))))
            .collect();
        assert!(names.contains(&"localhost".to_owned()), "{names:?}");
        assert_eq!(names.len(), 3);
    }
}

#[cfg(test)]
mod registry_tests {
    use super::*;

    #[test]
    fn organisation_certificates_carry_their_oid_and_can_be_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::init(dir.path(), "Test CA").unwrap();
        let oid = OrganisationOid::parse("1.2.246.10.12345678.10.1").unwrap();
        let issued = ca.issue_org(&oid, "Example Therapy Clinic", Validity::default()).unwrap();
        let serial = ca.record(dir.path(), &issued).unwrap();
        let der = X509::from_pem(&issued.cert_pem).unwrap().to_der().unwrap();
        let identity = PeerIdentity::from_der(&der).unwrap();
        assert_eq!(identity.organisation, Some(oid));
        assert_eq!(identity.serial, serial);
        assert_eq!(identity.thumbprint.len(), 43);
        let records = list(dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert!(!records[0].revoked);
        let crl_path = ca.revoke(dir.path(), &serial).unwrap();
        let crl = openssl::x509::X509Crl::from_pem(&fs::read(crl_path).unwrap()).unwrap();
        assert_eq!(crl.get_revoked().map(|r| r.len()), Some(1));
        assert!(list(dir.path()).unwrap()[0].revoked);
        assert!(ca.revoke(dir.path(), "DEADBEEF").is_err());
        let server = ca.issue_server(&["localhost".into()], &[]).unwrap();
        let server_identity =
            PeerIdentity::from_der(&X509::from_pem(&server.cert_pem).unwrap().to_der().unwrap()).unwrap();
        assert_eq!(server_identity.organisation, None);
        let auth = ClientAuth { ca: dir.path().join("ca.pem"), crl: Some(dir.path().join(CRL_FILE)) };
        server.write_to(&dir.path().join("server"), &ca).unwrap();
        server_config(
            &dir.path().join("server/cert.pem"),
            &dir.path().join("server/key.pem"),
            TlsMinimum::Tls13,
            Some(&auth),
        )
        .unwrap();
    }
}
