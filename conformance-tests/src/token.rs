//! The run's token as the cases read and vary it: a JWT's header and claims decoded (not
//! verified: verifying is the deployment's job), and variants of it signed with the test issuer's
//! key. A leaf: it knows tokens and keys, nothing of cases or clients.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

/// Why a token could not be read or signed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("not a JWT")]
    NotAJwt,
    #[error("not base64url")]
    NotBase64Url,
    #[error("not a JWT: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("issuer key {}: {source}", path.display())]
    IssuerKeyFile { path: PathBuf, source: std::io::Error },
    #[error("issuer key: {0}")]
    IssuerKey(#[source] jsonwebtoken::errors::Error),
    #[error(transparent)]
    Sign(jsonwebtoken::errors::Error),
}

/// The header and claims of a JWT.
pub fn segments(token: &str) -> Result<(Value, Value), TokenError> {
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| -> Result<Value, TokenError> {
        let bytes = base64url_decode(part.ok_or(TokenError::NotAJwt)?)?;
        serde_json::from_slice(&bytes).map_err(TokenError::NotJson)
    };
    Ok((decode(parts.next())?, decode(parts.next())?))
}

/// The organisation (`org`) and practitioner (`sub`) a token names, when it names both.
pub fn practitioner(token: &str) -> Option<(String, String)> {
    let (_, claims) = segments(token).ok()?;
    Some((claims["org"].as_str()?.to_owned(), claims["sub"].as_str()?.to_owned()))
}

pub fn base64url_decode(text: &str) -> Result<Vec<u8>, TokenError> {
    let value = |c: u8| -> Result<u32, TokenError> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err(TokenError::NotBase64Url),
        } as u32)
    };
    let bytes: Vec<u8> = text.bytes().filter(|b| *b != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c)? << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    Ok(out)
}

/// The issuer's private key (PEM).
pub fn read_issuer_key(path: &Path) -> Result<Vec<u8>, TokenError> {
    std::fs::read(path).map_err(|source| TokenError::IssuerKeyFile { path: path.to_owned(), source })
}

/// The claims and header of `token`, valid from now for ten minutes, changed by `change`, signed
/// with the issuer key at `issuer_key`.
pub fn sign_variant(
    token: &str,
    issuer_key: &Path,
    change: impl FnOnce(&mut Value, &mut Header),
) -> Result<String, TokenError> {
    let (header_json, mut claims) = segments(token)?;
    let algorithm = match header_json["alg"].as_str() {
        Some("RS256") => Algorithm::RS256,
        _ => Algorithm::ES256,
    };
    let mut header = Header::new(algorithm);
    header.kid = header_json["kid"].as_str().map(str::to_owned);
    let now = chrono::Utc::now().timestamp();
    claims["iat"] = json!(now);
    claims["nbf"] = json!(now);
    claims["exp"] = json!(now + 600);
    change(&mut claims, &mut header);
    let pem = read_issuer_key(issuer_key)?;
    let key = match header.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .map_err(TokenError::IssuerKey)?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(TokenError::Sign)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64url_round_trips() {
        for text in ["", "a", "ab", "abc", "abcd", "{\"alg\":\"ES256\"}"] {
            assert_eq!(base64url_decode(&certs::base64url(text.as_bytes())).unwrap(), text.as_bytes());
        }
    }

    #[test]
    fn a_token_names_its_practitioner_only_with_both_claims() {
        let token = |claims: Value| {
            format!("{}.{}.", certs::base64url(b"{\"alg\":\"ES256\"}"), certs::base64url(claims.to_string().as_bytes()))
        };
        let both = token(json!({"org": "1.2.246.10.12345678.10.1", "sub": "10012345678"}));
        assert_eq!(practitioner(&both), Some(("1.2.246.10.12345678.10.1".into(), "10012345678".into())));
        assert_eq!(practitioner(&token(json!({"sub": "010101A900R", "role": "patient"}))), None);
        assert_eq!(practitioner("not.a-token"), None);
    }
}
