//! Client-certificate verification that follows the CRL file: an operator who revokes a clinic's
//! certificate with `vaitio certs revoke` does not have to restart the gateway. Each handshake
//! looks at the CRL file's modification time (one `stat`) and rebuilds the verifier when it
//! changed. A CRL that cannot be read fails closed: no client certificate verifies until it is
//! fixed.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{VerifierBuilderError, WebPkiClientVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, Error, RootCertStore, SignatureScheme};

use crate::CertsError;

/// Why the client verifier could not be built. It is kept, and every handshake with a client
/// certificate refused with it, until the CRL file changes: so it is cheap to clone.
#[derive(Clone, Debug, thiserror::Error)]
pub enum VerifierError {
    #[error("CRL {}: {source}", path.display())]
    Crl { path: PathBuf, source: Arc<pem::Error> },
    #[error(transparent)]
    Build(#[from] VerifierBuilderError),
}

type Current = (Option<SystemTime>, Result<Arc<dyn ClientCertVerifier>, VerifierError>);

pub struct ReloadingVerifier {
    roots: Arc<RootCertStore>,
    crl: Option<PathBuf>,
    provider: Arc<rustls::crypto::CryptoProvider>,
    hints: Vec<DistinguishedName>,
    current: RwLock<Current>,
}

impl fmt::Debug for ReloadingVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingVerifier").field("crl", &self.crl).finish()
    }
}

fn modified(path: &Option<PathBuf>) -> Option<SystemTime> {
    path.as_ref().and_then(|p| std::fs::metadata(p).ok()).and_then(|m| m.modified().ok())
}

impl ReloadingVerifier {
    pub fn new(
        roots: RootCertStore,
        crl: Option<PathBuf>,
        provider: Arc<rustls::crypto::CryptoProvider>,
    ) -> Result<Self, CertsError> {
        let roots = Arc::new(roots);
        let hints = roots.subjects();
        let stamp = modified(&crl);
        let built = build(&roots, crl.as_deref(), &provider)?;
        Ok(Self { roots, crl, provider, hints, current: RwLock::new((stamp, Ok(built))) })
    }

    fn verifier(&self) -> Result<Arc<dyn ClientCertVerifier>, Error> {
        let refused = |error: VerifierError| Error::General(error.to_string());
        let stamp = modified(&self.crl);
        if let Ok(current) = self.current.read() {
            if current.0 == stamp {
                return current.1.clone().map_err(refused);
            }
        }
        let rebuilt = build(&self.roots, self.crl.as_deref(), &self.provider);
        if let Ok(mut current) = self.current.write() {
            *current = (stamp, rebuilt.clone());
        }
        rebuilt.map_err(refused)
    }
}

/// The verifier for `roots` and the CRL file at `crl`, when there is one.
fn build(
    roots: &Arc<RootCertStore>,
    crl: Option<&Path>,
    provider: &Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, VerifierError> {
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone()).allow_unauthenticated();
    if let Some(path) = crl.filter(|p| p.exists()) {
        let crls = CertificateRevocationListDer::pem_file_iter(path)
            .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
            .map_err(|source| VerifierError::Crl { path: path.to_owned(), source: Arc::new(source) })?;
        builder = builder.with_crls(crls);
    }
    Ok(builder.build()?)
}

impl ClientCertVerifier for ReloadingVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// Optional at the TLS layer: the patient endpoints take connections without a certificate;
    /// the gateway requires one for every professional principal.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.verifier()?.verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}
