//! Production sign-in: OpenID Connect's authorization code flow with PKCE (RFC 7636, `S256`)
//! against the configured citizen identity provider. The provider's discovery document and JWKS
//! come from files or from the issuer, read once at start-up. A sign-in's `state`, `nonce` and
//! code verifier are kept on the node for ten minutes, its `state` also in a cookie of the
//! browser that started it; the code is exchanged over HTTPS (the provider's CA configurable),
//! the ID token verified (`identity::IdTokenVerifier`: issuer, audience, signature, expiry,
//! nonce), and the HETU read from the configured claim becomes the patient's pseudonym at once.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use identity::IdTokenVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::OidcSettings;
use crate::portal::session::random_token;

/// The cookie that ties a sign-in's `state` to the browser that began it. `SameSite=Lax`: the
/// provider sends the browser back with a cross-site top-level navigation, on which a `Strict`
/// cookie would not be sent.
pub const STATE_COOKIE: &str = "__Host-vaitio-oidc";
/// How long a begun sign-in may take.
pub const SIGN_IN_TIME: Duration = Duration::from_secs(600);
/// How many sign-ins a node keeps begun at once.
const MAX_PENDING: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("the identity provider's {what}: {reason}")]
    Provider { what: &'static str, reason: String },
    #[error("{0}")]
    Refused(String),
}

fn provider(what: &'static str, reason: impl std::fmt::Display) -> OidcError {
    OidcError::Provider { what, reason: reason.to_string() }
}

struct Pending {
    nonce: String,
    verifier: String,
    begun: Instant,
}

pub struct OidcClient {
    settings: OidcSettings,
    redirect_url: String,
    authorization_endpoint: String,
    token_endpoint: String,
    verifier: IdTokenVerifier,
    agent: ureq::Agent,
    pending: Mutex<HashMap<String, Pending>>,
}

fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

/// The PKCE challenge of a verifier: `BASE64URL(SHA256(verifier))`.
pub fn challenge(verifier: &str) -> String {
    base64url(&Sha256::digest(verifier.as_bytes()))
}

fn agent(settings: &OidcSettings) -> Result<ureq::Agent, OidcError> {
    let builder = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).redirects(0);
    let Some(ca) = &settings.ca else { return Ok(builder.build()) };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(ca)
        .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
        .map_err(|e| provider("CA file", e))?;
    for certificate in certificates {
        roots.add(certificate).map_err(|e| provider("CA file", e))?;
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| provider("TLS configuration", e))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(builder.tls_config(Arc::new(config)).build())
}

fn fetch_json(agent: &ureq::Agent, what: &'static str, url: &str) -> Result<Value, OidcError> {
    if !url.starts_with("https://") {
        return Err(provider(what, "must be an https:// URL"));
    }
    let response = agent.get(url).call().map_err(|e| provider(what, e))?;
    let mut text = String::new();
    response.into_reader().take(1 << 20).read_to_string(&mut text).map_err(|e| provider(what, e))?;
    serde_json::from_str(&text).map_err(|e| provider(what, e))
}

impl OidcClient {
    /// Reads the provider's discovery document and keys (files, or from the issuer) once.
    pub fn start(settings: OidcSettings, public_base_url: Option<&str>) -> Result<OidcClient, OidcError> {
        let agent = agent(&settings)?;
        let discovery = match &settings.discovery {
            Some(path) => {
                serde_json::from_str(&std::fs::read_to_string(path).map_err(|e| provider("discovery file", e))?)
                    .map_err(|e| provider("discovery file", e))?
            }
            None => fetch_json(
                &agent,
                "discovery document",
                &format!("{}/.well-known/openid-configuration", settings.issuer.trim_end_matches('/')),
            )?,
        };
        if discovery["issuer"].as_str() != Some(settings.issuer.as_str()) {
            return Err(provider("discovery document", "its issuer is not the configured one"));
        }
        let endpoint = |name: &'static str| -> Result<String, OidcError> {
            discovery[name]
                .as_str()
                .filter(|url| url.starts_with("https://"))
                .map(str::to_owned)
                .ok_or_else(|| provider("discovery document", format!("no https:// {name}")))
        };
        let jwks = match &settings.jwks {
            Some(path) => std::fs::read_to_string(path).map_err(|e| provider("JWKS file", e))?,
            None => fetch_json(&agent, "JWKS", &endpoint("jwks_uri")?)?.to_string(),
        };
        let verifier =
            IdTokenVerifier::new(&settings.issuer, &settings.client_id, &jwks).map_err(|e| provider("JWKS", e))?;
        let redirect_url = match (&settings.redirect_url, public_base_url) {
            (Some(url), _) => url.clone(),
            (None, Some(base)) => format!("{base}/portal/login/callback"),
            (None, None) => return Err(provider("redirect URL", "set portal.oidc_redirect_url or public_base_url")),
        };
        Ok(OidcClient {
            authorization_endpoint: endpoint("authorization_endpoint")?,
            token_endpoint: endpoint("token_endpoint")?,
            redirect_url,
            verifier,
            agent,
            settings,
            pending: Mutex::new(HashMap::new()),
        })
    }

    fn pending(&self) -> std::sync::MutexGuard<'_, HashMap<String, Pending>> {
        self.pending.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Begins a sign-in: its `state` (for the cookie) and the provider's authorization URL.
    pub fn begin(&self) -> Result<(String, String), OidcError> {
        let (state, nonce, verifier) = (random_token(), random_token(), random_token());
        if state.is_empty() || nonce.is_empty() || verifier.is_empty() {
            return Err(OidcError::Refused("no randomness".into()));
        }
        let mut query = form_urlencoded::Serializer::new(String::new());
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", &self.settings.client_id)
            .append_pair("redirect_uri", &self.redirect_url)
            .append_pair("scope", "openid")
            .append_pair("state", &state)
            .append_pair("nonce", &nonce)
            .append_pair("code_challenge", &challenge(&verifier))
            .append_pair("code_challenge_method", "S256");
        let separator = if self.authorization_endpoint.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}{}", self.authorization_endpoint, query.finish());
        let mut pending = self.pending();
        pending.retain(|_, p| p.begun.elapsed() < SIGN_IN_TIME);
        if pending.len() >= MAX_PENDING {
            return Err(OidcError::Refused("too many sign-ins under way".into()));
        }
        pending.insert(state.clone(), Pending { nonce, verifier, begun: Instant::now() });
        Ok((state, url))
    }

    /// Completes a sign-in (blocking: it calls the provider): the `state` must be one this node
    /// began, within its time, and the one in the browser's cookie; the code is exchanged with
    /// the PKCE verifier and the ID token verified. Returns the HETU claim's text. A `state` is
    /// used once, whatever happens.
    pub fn complete(&self, state: &str, cookie_state: &str, code: &str) -> Result<String, OidcError> {
        let refused = |why: &str| OidcError::Refused(why.to_owned());
        let pending = self.pending().remove(state).ok_or_else(|| refused("the sign-in's state is unknown or used"))?;
        if !crate::portal::session::same_token(state, cookie_state) {
            return Err(refused("the sign-in's state is not this browser's"));
        }
        if pending.begun.elapsed() >= SIGN_IN_TIME {
            return Err(refused("the sign-in took too long"));
        }
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", self.redirect_url.as_str()),
            ("client_id", self.settings.client_id.as_str()),
            ("code_verifier", pending.verifier.as_str()),
        ];
        if let Some(secret) = &self.settings.client_secret {
            form.push(("client_secret", secret.as_str()));
        }
        let response = match self.agent.post(&self.token_endpoint).send_form(&form) {
            Ok(response) => response,
            Err(ureq::Error::Status(status, _)) => {
                return Err(refused(&format!("the provider refused the code ({status})")))
            }
            Err(e) => return Err(provider("token endpoint", e)),
        };
        let mut text = String::new();
        response.into_reader().take(1 << 20).read_to_string(&mut text).map_err(|e| provider("token endpoint", e))?;
        let answer: Value = serde_json::from_str(&text).map_err(|e| provider("token endpoint", e))?;
        let id_token = answer["id_token"].as_str().ok_or_else(|| refused("the provider sent no ID token"))?;
        let claims = self
            .verifier
            .verify(id_token, &pending.nonce, chrono::Utc::now().timestamp())
            .map_err(|e| OidcError::Refused(e.to_string()))?;
        claims
            .get(&self.settings.hetu_claim)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| refused("the ID token has no HETU claim"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pkce_challenge_is_rfc_7636s() {
        // RFC 7636, Appendix B.
        assert_eq!(
            challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(base64url(b"f"), "Zg");
        assert_eq!(base64url(b"fo"), "Zm8");
        assert_eq!(base64url(b"foo"), "Zm9v");
    }
}
