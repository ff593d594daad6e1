//! The one place a request's principal is made: the verified client certificate of the
//! connection, and the bearer token of the request.
//!
//! Tokens come from trusted issuers, each with its keys from a JWKS file: a professional identity
//! provider (practitioners, auditors, administrators) and a citizen identity provider (patients).
//! Each key pins its algorithm (ES256 or RS256), so `alg: none` and HS256-with-the-public-key
//! never verify. `iss`, `aud`, `exp` and `nbf` are checked with a small leeway, and `kid` must
//! name a key of the token's issuer. A professional token must be bound to the client certificate
//! of the same connection (RFC 8705 `cnf."x5t#S256"`), and its organisation must be the
//! certificate's. A patient's HETU becomes the pseudonym at once and goes no further.
//!
//! In development mode only, a development issuer (a key generated in the data folder) is also
//! trusted; `vaitio dev token` mints its tokens.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use certs::{OrganisationOid, PeerIdentity};
use consent::{Principal, Professional, Purpose, Role};
use fhir_profiles::Hetu;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

mod oidc;
pub use oidc::IdTokenVerifier;

/// Why a request's principal could not be made. Messages name claims and rules, never a claim's
/// value: they are answered to the caller and logged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// No usable credentials: no token, a token that does not verify (HTTP 401).
    #[error("{0}")]
    Unauthenticated(String),
    /// Verified credentials that do not allow what they claim (HTTP 403).
    #[error("{0}")]
    Forbidden(String),
}

/// Turns a patient's HETU into the pseudonyms the rest of the gateway knows them by, under each
/// version of the index key, newest first; the HETU goes no further than this call.
pub type Pseudonymise = Box<dyn Fn(&Hetu) -> Vec<String> + Send + Sync>;

pub const DEV_ISSUER: &str = "urn:vaitio:development-issuer";
pub const DEV_KID: &str = "vaitio-development-1";
const LEEWAY_SECONDS: u64 = 30;
const CACHE_SIZE: usize = 65_536;

/// A token issuer's keys that cannot be used: a JWKS file or the development issuer's key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Jwks(String),
    #[error("{what} {path}: {reason}")]
    File { what: &'static str, path: String, reason: String },
}

impl KeyError {
    fn jwks_file(path: &Path, reason: impl std::fmt::Display) -> Self {
        KeyError::File { what: "JWKS file", path: path.display().to_string(), reason: reason.to_string() }
    }

    fn file(path: &Path, reason: impl std::fmt::Display) -> Self {
        KeyError::File { what: "development issuer key", path: path.display().to_string(), reason: reason.to_string() }
    }
}

/// Which principals an issuer may assert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IssuerKind {
    /// Practitioners, auditors and administrators.
    Professional,
    /// Patients.
    Citizen,
    /// Development mode's own issuer: both.
    Development,
}

struct TrustedIssuer {
    issuer: String,
    kind: IssuerKind,
    keys: HashMap<String, (DecodingKey, Algorithm)>,
}

impl TrustedIssuer {
    fn from_jwks(issuer: &str, kind: IssuerKind, jwks: &str) -> Result<Self, KeyError> {
        let set: JwkSet =
            serde_json::from_str(jwks).map_err(|e| KeyError::Jwks(format!("not a JWKS document: {e}")))?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let kid = jwk.common.key_id.clone().ok_or_else(|| KeyError::Jwks("every key needs a kid".into()))?;
            let algorithm = match jwk.common.key_algorithm {
                Some(KeyAlgorithm::ES256) => Algorithm::ES256,
                Some(KeyAlgorithm::RS256) => Algorithm::RS256,
                _ => return Err(KeyError::Jwks(format!("key {kid}: alg must be ES256 or RS256, stated in the JWK"))),
            };
            let key = DecodingKey::from_jwk(jwk).map_err(|e| KeyError::Jwks(format!("key {kid}: {e}")))?;
            keys.insert(kid, (key, algorithm));
        }
        if keys.is_empty() {
            return Err(KeyError::Jwks("the JWKS holds no keys".into()));
        }
        Ok(TrustedIssuer { issuer: issuer.to_owned(), kind, keys })
    }
}

#[derive(Deserialize, Serialize, Clone, Debug, Default)]
pub struct Confirmation {
    #[serde(rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

/// The claims the gateway reads.
#[derive(Deserialize, Serialize, Clone, Debug, Default)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

/// A token whose signature and registered claims have been verified.
#[derive(Clone)]
struct Verified {
    claims: Claims,
    kind: IssuerKind,
}

pub struct Identity {
    audience: String,
    issuers: Vec<TrustedIssuer>,
    pseudonymise: Pseudonymise,
    /// Verified tokens by SHA-256: a signature check costs far more than the request it
    /// guards. An entry is used only until the token's `exp`; the certificate binding and
    /// every claim check are repeated on each request.
    cache: Mutex<HashMap<[u8; 32], Verified>>,
}

fn unauthenticated(reason: impl Into<String>) -> IdentityError {
    IdentityError::Unauthenticated(reason.into())
}

fn forbidden(reason: impl Into<String>) -> IdentityError {
    IdentityError::Forbidden(reason.into())
}

impl Identity {
    pub fn new(audience: &str, pseudonymise: Pseudonymise) -> Self {
        Identity { audience: audience.to_owned(), issuers: Vec::new(), pseudonymise, cache: Mutex::new(HashMap::new()) }
    }

    /// Trusts `issuer` with the keys in the JWKS file at `path`.
    pub fn trust_jwks_file(&mut self, issuer: &str, kind: IssuerKind, path: &Path) -> Result<(), KeyError> {
        let text = std::fs::read_to_string(path).map_err(|e| KeyError::jwks_file(path, e))?;
        let trusted = TrustedIssuer::from_jwks(issuer, kind, &text).map_err(|e| KeyError::jwks_file(path, e))?;
        self.issuers.push(trusted);
        Ok(())
    }

    /// Trusts the development issuer whose key is at `key_path`, generating the key when absent.
    pub fn trust_development_issuer(&mut self, key_path: &Path) -> Result<(), KeyError> {
        let jwks = development_jwks(key_path)?;
        self.issuers.push(TrustedIssuer::from_jwks(DEV_ISSUER, IssuerKind::Development, &jwks)?);
        Ok(())
    }

    fn verify(&self, token: &str) -> Result<Verified, IdentityError> {
        // sha2, not OpenSSL's one-shot digest, which looks its algorithm up again on every call.
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let now = chrono::Utc::now().timestamp();
        if let Some(hit) = self.cache.lock().ok().and_then(|cache| cache.get(&digest).cloned()) {
            if hit.claims.exp + LEEWAY_SECONDS as i64 >= now {
                return Ok(hit);
            }
        }
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| unauthenticated("the bearer token is not a well-formed JWT with a supported alg"))?;
        let kid = header.kid.as_deref().ok_or_else(|| unauthenticated("the token header has no kid"))?;
        let issuer: Issuer = jsonwebtoken::dangerous::insecure_decode_claims(token)
            .map_err(|_| unauthenticated("the token has no iss claim"))?;
        let trusted = self
            .issuers
            .iter()
            .find(|t| t.issuer == issuer.iss)
            .ok_or_else(|| unauthenticated("the token's issuer is not trusted"))?;
        let (key, algorithm) =
            trusted.keys.get(kid).ok_or_else(|| unauthenticated("the token's kid names no key of its issuer"))?;
        if header.alg != *algorithm {
            return Err(unauthenticated("the token's alg is not the one pinned for its key"));
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation.set_audience(&[&self.audience]);
        validation.set_issuer(&[&trusted.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "the token has expired",
                ErrorKind::ImmatureSignature => "the token is not valid yet (nbf)",
                ErrorKind::InvalidAudience => "the token is not for this audience",
                ErrorKind::InvalidIssuer => "the token's issuer is not trusted",
                ErrorKind::InvalidSignature => "the token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the token lacks a required claim (exp, iss, aud, sub)",
                _ => "the token does not verify",
            })
        })?;
        // A token issued in the future was not issued by a clock this gateway can trust.
        if data.claims.iat.is_some_and(|iat| iat > now + LEEWAY_SECONDS as i64) {
            return Err(unauthenticated("the token's iat is in the future"));
        }
        let verified = Verified { claims: data.claims, kind: trusted.kind };
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_SIZE {
                cache.clear();
            }
            cache.insert(digest, verified.clone());
        }
        Ok(verified)
    }

    /// The principal of a request: its `Authorization` header and its connection's certificate.
    pub fn principal(
        &self,
        authorization: Option<&str>,
        peer: Option<&PeerIdentity>,
    ) -> Result<Principal, IdentityError> {
        let authorization = authorization.ok_or_else(|| unauthenticated("a bearer token is required"))?;
        let token = authorization
            .strip_prefix("Bearer ")
            .or_else(|| authorization.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header must be 'Bearer <token>'"))?;
        let Verified { claims, kind } = self.verify(token)?;
        let role = claims.role.as_deref().unwrap_or("");
        let patient = role == "patient" || (kind == IssuerKind::Citizen && role.is_empty());
        match (kind, patient) {
            (IssuerKind::Citizen, false) => return Err(forbidden("a citizen identity provider asserts patients only")),
            (IssuerKind::Professional, true) => {
                return Err(forbidden("patients authenticate through the citizen identity provider"))
            }
            _ => {}
        }
        if patient {
            let hetu = Hetu::parse(&claims.sub)
                .map_err(|_| unauthenticated("a patient token's subject must be a valid HETU"))?;
            let mut names = (self.pseudonymise)(&hetu).into_iter();
            let pseudonym = names.next().ok_or_else(|| unauthenticated("no index key names patients"))?;
            return Ok(Principal::Patient { pseudonym, earlier: names.collect() });
        }
        // Every professional principal is bound to the organisation's certificate.
        let peer = peer.ok_or_else(|| {
            unauthenticated("a professional token needs the organisation's client certificate on the connection")
        })?;
        let bound = claims.cnf.as_ref().and_then(|c| c.x5t_s256.as_deref());
        if bound != Some(peer.thumbprint.as_str()) {
            return Err(unauthenticated(
                "the token is not bound to this connection's client certificate (cnf.x5t#S256)",
            ));
        }
        let certificate_org =
            peer.organisation.as_ref().ok_or_else(|| forbidden("the client certificate names no organisation"))?;
        let token_org = claims
            .org
            .as_deref()
            .map(OrganisationOid::parse)
            .transpose()
            .map_err(|_| forbidden("the token's org is not an organisation OID"))?;
        if token_org.as_ref() != Some(certificate_org) {
            return Err(forbidden("the token's organisation is not the client certificate's"));
        }
        if claims.sub.trim().is_empty() {
            return Err(unauthenticated("the token has no subject"));
        }
        let organisation = certificate_org.to_string();
        match role {
            "auditor" | "administrator" if !is_staff_subject(&claims.sub) => {
                return Err(unauthenticated("a staff token's subject must be 1-64 of A-Z a-z 0-9 . _ @ -"))
            }
            "auditor" => return Ok(Principal::Auditor { subject: claims.sub, organisation }),
            "administrator" => return Ok(Principal::Administrator { subject: claims.sub, organisation }),
            _ => {}
        }
        if !is_terhikki(&claims.sub) {
            return Err(unauthenticated(
                "a practitioner token's subject must be a Terhikki registration number (11 digits)",
            ));
        }
        let role = Role::parse(role).ok_or_else(|| forbidden("the token's role is not one this gateway knows"))?;
        let purpose = match claims.purpose.as_deref() {
            None => Purpose::Treatment,
            Some(code) => Purpose::parse(code).ok_or_else(|| forbidden("purpose must be TREAT, ETREAT or BTG"))?,
        };
        let reason = claims.reason.filter(|r| !r.trim().is_empty());
        if purpose.needs_reason() && reason.is_none() {
            return Err(forbidden("emergency access (ETREAT, BTG) needs a stated reason"));
        }
        Ok(Principal::Professional(Professional { practitioner: claims.sub, role, organisation, purpose, reason }))
    }
}

/// The development issuer's public key as a JWKS document (the key is generated when absent).
pub fn development_jwks(key_path: &Path) -> Result<String, KeyError> {
    let pem = development_key(key_path)?;
    let (x, y) = certs::p256_public_coordinates(&pem).map_err(|e| KeyError::file(key_path, e))?;
    Ok(serde_json::json!({"keys": [{"kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": DEV_KID, "alg": "ES256", "use": "sig"}]}).to_string())
}

fn development_key(key_path: &Path) -> Result<Vec<u8>, KeyError> {
    let failed = |e: &dyn std::fmt::Display| KeyError::file(key_path, e);
    if !key_path.exists() {
        if let Some(parent) = key_path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| failed(&e))?;
        }
        let pem = certs::generate_p256_pem().map_err(|e| failed(&e))?;
        certs::write_file(key_path, &pem, true).map_err(|e| failed(&e))?;
    }
    std::fs::read(key_path).map_err(|e| failed(&e))
}

/// Signs `claims` with the development issuer's key.
pub fn mint_development_token(key_path: &Path, claims: &Claims) -> Result<String, KeyError> {
    let pem = development_key(key_path)?;
    let key = EncodingKey::from_ec_pem(&pem).map_err(|e| KeyError::file(key_path, e))?;
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(DEV_KID.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| KeyError::file(key_path, e))
}

/// Claims for a development token valid for `ttl_seconds`.
pub fn development_claims(audience: &str, subject: &str, role: &str, ttl_seconds: i64) -> Claims {
    let now = chrono::Utc::now().timestamp();
    Claims {
        iss: DEV_ISSUER.to_owned(),
        sub: subject.to_owned(),
        aud: audience.to_owned(),
        exp: now + ttl_seconds,
        nbf: Some(now),
        iat: Some(now),
        role: Some(role.to_owned()),
        ..Claims::default()
    }
}

/// A Terhikki (Valvira) registration number: 11 digits.
fn is_terhikki(subject: &str) -> bool {
    subject.len() == 11 && subject.bytes().all(|b| b.is_ascii_digit())
}

/// A staff subject (an auditor's or administrator's employee id): what an audit entry can
/// name plainly.
fn is_staff_subject(subject: &str) -> bool {
    (1..=64).contains(&subject.len()) && subject.bytes().all(|b| b.is_ascii_alphanumeric() || b"._@-".contains(&b))
}
