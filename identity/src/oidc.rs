//! OpenID Connect ID tokens, verified (no network I/O: the caller fetched the token and the
//! provider's keys). The checks follow OpenID Connect Core 1.0 §3.1.3.7: the issuer is the
//! configured one, the audience names this client, the signature verifies under a key of the
//! provider's JWKS with its pinned algorithm, the token has not expired and was not issued in
//! the future, and `nonce` is the one this sign-in sent.

use jsonwebtoken::{decode, decode_header, Validation};
use serde_json::{Map, Value};

use crate::{unauthenticated, IdentityError, IssuerKind, KeyError, TrustedIssuer, LEEWAY_SECONDS};

/// Verifies the ID tokens of one provider for one client.
pub struct IdTokenVerifier {
    provider: TrustedIssuer,
    client_id: String,
}

impl IdTokenVerifier {
    /// `jwks`: the provider's JWKS document; each key states its algorithm (ES256 or RS256).
    pub fn new(issuer: &str, client_id: &str, jwks: &str) -> Result<Self, KeyError> {
        Ok(IdTokenVerifier {
            provider: TrustedIssuer::from_jwks(issuer, IssuerKind::Citizen, jwks)?,
            client_id: client_id.to_owned(),
        })
    }

    /// The claims of `id_token`, if it verifies for this sign-in's `nonce` at `now` (epoch
    /// seconds). Refusals name the check, never a claim's value.
    pub fn verify(&self, id_token: &str, nonce: &str, now: i64) -> Result<Map<String, Value>, IdentityError> {
        let header = decode_header(id_token).map_err(|_| unauthenticated("the ID token is not a well-formed JWT"))?;
        let kid = header.kid.as_deref().ok_or_else(|| unauthenticated("the ID token's header has no kid"))?;
        let (key, algorithm) = self
            .provider
            .keys
            .get(kid)
            .ok_or_else(|| unauthenticated("the ID token's kid names no key of the provider"))?;
        if header.alg != *algorithm {
            return Err(unauthenticated("the ID token's alg is not the one pinned for its key"));
        }
        let mut validation = Validation::new(*algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_audience(&[&self.client_id]);
        validation.set_issuer(&[&self.provider.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = decode::<Map<String, Value>>(id_token, key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            unauthenticated(match e.kind() {
                ErrorKind::ExpiredSignature => "the ID token has expired",
                ErrorKind::InvalidAudience => "the ID token is not for this client",
                ErrorKind::InvalidIssuer => "the ID token is not from the configured provider",
                ErrorKind::InvalidSignature => "the ID token's signature does not verify",
                ErrorKind::MissingRequiredClaim(_) => "the ID token lacks a required claim (exp, iss, aud, sub)",
                _ => "the ID token does not verify",
            })
        })?;
        let claims = data.claims;
        if claims.get("iat").and_then(Value::as_i64).is_some_and(|iat| iat > now + LEEWAY_SECONDS as i64) {
            return Err(unauthenticated("the ID token's iat is in the future"));
        }
        // Several audiences: the authorised party must then be this client (Core §3.1.3.7 5).
        if claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1)
            && claims.get("azp").and_then(Value::as_str) != Some(self.client_id.as_str())
        {
            return Err(unauthenticated("the ID token has several audiences and another authorised party"));
        }
        match claims.get("nonce").and_then(Value::as_str) {
            Some(sent) if !nonce.is_empty() && sent == nonce => Ok(claims),
            _ => Err(unauthenticated("the ID token's nonce is not this sign-in's")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    fn provider() -> (tempfile::TempDir, String, EncodingKey, String) {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("idp.pem");
        let jwks = crate::development_jwks(&key_path).unwrap();
        let kid = serde_json::from_str::<Value>(&jwks).unwrap()["keys"][0]["kid"].as_str().unwrap().to_owned();
        let key = EncodingKey::from_ec_pem(&std::fs::read(&key_path).unwrap()).unwrap();
        (dir, jwks, key, kid)
    }

    #[test]
    fn an_id_token_verifies_only_for_its_issuer_client_nonce_and_time() {
        let (_dir, jwks, key, kid) = provider();
        let verifier = IdTokenVerifier::new("https://idp.test", "portal", &jwks).unwrap();
        let now = chrono::Utc::now().timestamp();
        let sign = |claims: Value| {
            let mut header = Header::new(jsonwebtoken::Algorithm::ES256);
            header.kid = Some(kid.clone());
            encode(&header, &claims, &key).unwrap()
        };
        let good = json!({"iss": "https://idp.test", "sub": "s", "aud": "portal", "exp": now + 300, "iat": now, "nonce": "n-1", "hetu": "131052-308T"});
        let claims = verifier.verify(&sign(good.clone()), "n-1", now).unwrap();
        assert_eq!(claims["hetu"], "131052-308T");
        let refused =
            |changed: Value, nonce: &str| verifier.verify(&sign(changed), nonce, now).unwrap_err().to_string();
        assert!(refused(good.clone(), "n-2").contains("nonce"));
        assert!(refused(good.clone(), "").contains("nonce"));
        let mut other = good.clone();
        other["aud"] = json!("someone-else");
        assert!(refused(other, "n-1").contains("client"));
        let mut other = good.clone();
        other["iss"] = json!("https://evil.test");
        assert!(refused(other, "n-1").contains("provider"));
        let mut other = good.clone();
        other["exp"] = json!(now - 3600);
        other["iat"] = json!(now - 7200);
        assert!(verifier.verify(&sign(other), "n-1", now).is_err());
        let mut other = good.clone();
        other["iat"] = json!(now + 3600);
        other["exp"] = json!(now + 7200);
        assert!(refused(other, "n-1").contains("future"));
        let mut other = good;
        other["aud"] = json!(["portal", "another"]);
        assert!(refused(other, "n-1").contains("authorised party"));
    }
}
