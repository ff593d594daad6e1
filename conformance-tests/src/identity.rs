//! Identity cases: every way a request without a valid, bound identity must be refused before it
//! reaches data. Token variants that need a valid signature are made with the deployment's test
//! issuer key (`--issuer-key`); without it those cases are skipped, with the reason.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::cases::{Case, Context, Level, Outcome};
use crate::client::{Client, Target};

/// What the identity cases need beyond the base target.
#[derive(Clone, Debug, Default)]
pub struct IdentityOptions {
    /// The private key (PEM) of the issuer of `--token`, to sign variants of it.
    pub issuer_key: Option<PathBuf>,
    /// Certificates (cert, key) that must be refused: expired, not yet valid, revoked.
    pub expired: Option<(PathBuf, PathBuf)>,
    pub not_yet_valid: Option<(PathBuf, PathBuf)>,
    pub revoked: Option<(PathBuf, PathBuf)>,
    /// The deployment is configured to accept TLS 1.2.
    pub allows_tls12: bool,
}

pub fn cases() -> Vec<Case> {
    let shall = |id, title, reference, run| Case { id, title, level: Level::Shall, reference, run };
    vec![
        shall(
            "IDN-00",
            "A valid certificate with a token bound to it is served (the control for every refusal)",
            "RFC 8705 §3",
            valid_identity_served,
        ),
        shall(
            "IDN-01",
            "A professional token without a client certificate is refused with 401",
            "Vaitio design: organisation endpoints require a client certificate",
            no_client_certificate,
        ),
        shall(
            "IDN-02",
            "A request without a token is refused with 401",
            "Vaitio design: a practitioner token on every request",
            no_token,
        ),
        shall("IDN-03", "A malformed token is refused with 401", "RFC 7519", malformed_token),
        shall("IDN-04", "A token with alg none is refused with 401", "RFC 8725 §3.1", alg_none),
        shall(
            "IDN-05",
            "An HS256 token signed with the issuer's public key is refused with 401",
            "RFC 8725 §3.1",
            hs256_with_public_key,
        ),
        shall("IDN-06", "A token whose kid names no trusted key is refused with 401", "RFC 7515 §4.1.4", unknown_kid),
        shall("IDN-07", "An expired token is refused with 401", "RFC 7519 §4.1.4", expired_token),
        shall("IDN-08", "A token for another audience is refused with 401", "RFC 7519 §4.1.3", wrong_audience),
        shall("IDN-09", "A token from an untrusted issuer is refused with 401", "RFC 7519 §4.1.1", wrong_issuer),
        shall("IDN-10", "A token minted for another certificate is refused with 401", "RFC 8705 §3", other_certificate),
        shall(
            "IDN-11",
            "A token whose organisation is not the certificate's is refused with 403",
            "Vaitio design: the organisation comes from the certificate",
            organisation_mismatch,
        ),
        shall("IDN-12", "A token with an unknown role is refused with 403", "Vaitio design: roles", unknown_role),
        shall(
            "IDN-13",
            "A client certificate from a foreign CA is refused",
            "Vaitio design: certificates chained to the configured CA",
            foreign_ca,
        ),
        shall(
            "IDN-14",
            "A self-signed client certificate is refused",
            "Vaitio design: certificates chained to the configured CA",
            self_signed,
        ),
        shall("IDN-15", "An expired client certificate is refused", "RFC 5280 §4.1.2.5", expired_certificate),
        shall(
            "IDN-16",
            "A client certificate that is not yet valid is refused",
            "RFC 5280 §4.1.2.5",
            not_yet_valid_certificate,
        ),
        shall("IDN-17", "A revoked client certificate is refused", "RFC 5280 §5", revoked_certificate),
    ]
}

const PROBE: &str = "/Patient?_count=1";

fn skip_without_base(ctx: &Context) -> Option<Outcome> {
    let target = ctx.client.target();
    if target.token.is_none() || target.cert.is_none() {
        Some(Outcome::Skip("needs --cert, --key and --token of a valid professional identity".into()))
    } else {
        None
    }
}

fn skip_without_key(ctx: &Context) -> Option<Outcome> {
    skip_without_base(ctx).or_else(|| {
        ctx.identity.issuer_key.is_none().then(|| Outcome::Skip("needs --issuer-key to sign token variants".into()))
    })
}

pub(crate) fn client(ctx: &Context, cert: Option<(PathBuf, PathBuf)>, token: Option<String>) -> Result<Client, String> {
    let base = ctx.client.target();
    let (cert, key) = match cert {
        Some((cert, key)) => (Some(cert), Some(key)),
        None => (None, None),
    };
    Client::new(Target { base_url: base.base_url.clone(), ca: base.ca.clone(), cert, key, token })
}

pub(crate) fn base_cert(ctx: &Context) -> Option<(PathBuf, PathBuf)> {
    let target = ctx.client.target();
    Some((target.cert.clone()?, target.key.clone()?))
}

/// Sends the probe; a refused handshake counts as refused.
fn expect_refused(client: &Client, statuses: &[u16], what: &str) -> Outcome {
    match client.get(PROBE) {
        Err(error) => Outcome::Pass(format!("{what}: the connection was refused ({error})")),
        Ok(answer) if statuses.contains(&answer.status) && answer.is_operation_outcome() => {
            Outcome::Pass(format!("{what}: HTTP {} with an OperationOutcome", answer.status))
        }
        Ok(answer) => Outcome::Fail(format!(
            "{what}: HTTP {} (expected {statuses:?} with an OperationOutcome): {}",
            answer.status,
            answer.text_excerpt()
        )),
    }
}

fn segments(token: &str) -> Result<(Value, Value), String> {
    let mut parts = token.split('.');
    let decode = |part: Option<&str>| -> Result<Value, String> {
        let bytes = base64url_decode(part.ok_or("not a JWT")?)?;
        serde_json::from_slice(&bytes).map_err(|e| format!("not a JWT: {e}"))
    };
    Ok((decode(parts.next())?, decode(parts.next())?))
}

pub(crate) fn base64url_decode(text: &str) -> Result<Vec<u8>, String> {
    let value = |c: u8| -> Result<u32, String> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return Err("not base64url".into()),
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

/// The claims and header of `--token`, changed by `change`, signed with the issuer key.
pub(crate) fn variant(ctx: &Context, change: impl FnOnce(&mut Value, &mut Header)) -> Result<String, String> {
    let token = ctx.client.target().token.clone().ok_or("no --token")?;
    let (header_json, mut claims) = segments(&token)?;
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
    let pem = std::fs::read(ctx.identity.issuer_key.as_ref().ok_or("no --issuer-key")?).map_err(|e| e.to_string())?;
    let key = match header.alg {
        Algorithm::RS256 => EncodingKey::from_rsa_pem(&pem),
        _ => EncodingKey::from_ec_pem(&pem),
    }
    .map_err(|e| format!("issuer key: {e}"))?;
    jsonwebtoken::encode(&header, &claims, &key).map_err(|e| e.to_string())
}

fn thumbprint(cert: &Path) -> Result<String, String> {
    let pem = std::fs::read(cert).map_err(|e| e.to_string())?;
    let der = openssl::x509::X509::from_pem(&pem).and_then(|c| c.to_der()).map_err(|e| e.to_string())?;
    Ok(certs::thumbprint_sha256(&der))
}

fn valid_identity_served(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_base(ctx) {
        return Ok(skip);
    }
    let answer = ctx.client.get(PROBE)?;
    Ok(if answer.status == 200 {
        Outcome::Pass("HTTP 200 for the valid identity".into())
    } else {
        Outcome::Fail(format!("the valid identity got HTTP {}: {}", answer.status, answer.text_excerpt()))
    })
}

fn no_client_certificate(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_base(ctx) {
        return Ok(skip);
    }
    Ok(expect_refused(&client(ctx, None, ctx.client.target().token.clone())?, &[401], "token without a certificate"))
}

fn no_token(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_base(ctx) {
        return Ok(skip);
    }
    Ok(expect_refused(&client(ctx, base_cert(ctx), None)?, &[401], "certificate without a token"))
}

fn malformed_token(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_base(ctx) {
        return Ok(skip);
    }
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some("not.a-token".into()))?, &[401], "a malformed token"))
}

fn alg_none(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_base(ctx) {
        return Ok(skip);
    }
    let token = ctx.client.target().token.clone().unwrap_or_default();
    let (mut header, claims) = segments(&token)?;
    header["alg"] = json!("none");
    let encode = |v: &Value| certs::base64url(v.to_string().as_bytes());
    let forged = format!("{}.{}.", encode(&header), encode(&claims));
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(forged))?, &[401], "alg none"))
}

fn hs256_with_public_key(ctx: &Context) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_key(ctx) {
        return Ok(skip);
    }
    let pem = std::fs::read(ctx.identity.issuer_key.as_ref().ok_or("no key")?).map_err(|e| e.to_string())?;
    let public = certs::public_key_pem(&pem).map_err(|e| e.to_string())?;
    let token = ctx.client.target().token.clone().unwrap_or_default();
    let (header_json, claims) = segments(&token)?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = header_json["kid"].as_str().map(str::to_owned);
    let forged = jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(&public).map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(forged))?, &[401], "HS256 keyed with the public key"))
}

fn signed_variant(
    ctx: &Context,
    statuses: &[u16],
    what: &str,
    change: impl FnOnce(&mut Value, &mut Header),
) -> Result<Outcome, String> {
    if let Some(skip) = skip_without_key(ctx) {
        return Ok(skip);
    }
    let token = variant(ctx, change)?;
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(token))?, statuses, what))
}

fn unknown_kid(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[401], "unknown kid", |_, header| header.kid = Some("conformance-unknown-kid".into()))
}

fn expired_token(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[401], "expired an hour ago", |claims, _| {
        let now = chrono::Utc::now().timestamp();
        claims["exp"] = json!(now - 3600);
        claims["nbf"] = json!(now - 7200);
        claims["iat"] = json!(now - 7200);
    })
}

fn wrong_audience(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[401], "aud of another service", |claims, _| {
        claims["aud"] = json!("https://another-service.invalid")
    })
}

fn wrong_issuer(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[401], "an untrusted iss", |claims, _| {
        claims["iss"] = json!("https://untrusted-issuer.invalid")
    })
}

fn other_certificate(ctx: &Context) -> Result<Outcome, String> {
    // The thumbprint of a certificate other than the connection's.
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let other = certs::CertificateAuthority::init(dir.path(), "Conformance other").map_err(|e| e.to_string())?;
    std::fs::write(dir.path().join("other.pem"), other.cert_pem().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let foreign = thumbprint(&dir.path().join("other.pem"))?;
    signed_variant(ctx, &[401], "cnf of another certificate", |claims, _| claims["cnf"] = json!({"x5t#S256": foreign}))
}

fn organisation_mismatch(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[403], "org of another organisation", |claims, _| {
        claims["org"] = json!("1.2.246.10.99999999.10.9")
    })
}

fn unknown_role(ctx: &Context) -> Result<Outcome, String> {
    signed_variant(ctx, &[403], "role 'janitor'", |claims, _| claims["role"] = json!("janitor"))
}

/// A request with `cert` and, when the issuer key is at hand, a token bound to it (so only the
/// certificate can be the reason for refusal).
fn with_certificate(ctx: &Context, cert: (PathBuf, PathBuf), what: &str) -> Result<Outcome, String> {
    let token = match &ctx.identity.issuer_key {
        Some(_) if ctx.client.target().token.is_some() => {
            let bound = thumbprint(&cert.0)?;
            Some(variant(ctx, |claims, _| claims["cnf"] = json!({"x5t#S256": bound}))?)
        }
        _ => ctx.client.target().token.clone(),
    };
    Ok(expect_refused(&client(ctx, Some(cert), token)?, &[401, 403], what))
}

fn foreign_ca(ctx: &Context) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let ca = certs::CertificateAuthority::init(dir.path(), "Conformance foreign CA").map_err(|e| e.to_string())?;
    let oid = certs::OrganisationOid::parse("1.2.246.10.12345678.10.1").map_err(|e| e.to_string())?;
    let issued = ca.issue_org(&oid, "Foreign", certs::Validity::default()).map_err(|e| e.to_string())?;
    issued.write_to(&dir.path().join("org"), &ca).map_err(|e| e.to_string())?;
    with_certificate(
        ctx,
        (dir.path().join("org/cert.pem"), dir.path().join("org/key.pem")),
        "a certificate of a foreign CA",
    )
}

fn self_signed(ctx: &Context) -> Result<Outcome, String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    certs::CertificateAuthority::init(dir.path(), "Conformance self-signed").map_err(|e| e.to_string())?;
    with_certificate(ctx, (dir.path().join("ca.pem"), dir.path().join("ca-key.pem")), "a self-signed certificate")
}

fn given_certificate(
    ctx: &Context,
    cert: &Option<(PathBuf, PathBuf)>,
    flag: &str,
    what: &str,
) -> Result<Outcome, String> {
    match cert {
        Some(cert) => with_certificate(ctx, cert.clone(), what),
        None => Ok(Outcome::Skip(format!(
            "needs {flag}-cert and {flag}-key: a certificate from the deployment's CA that is {what}"
        ))),
    }
}

fn expired_certificate(ctx: &Context) -> Result<Outcome, String> {
    given_certificate(ctx, &ctx.identity.expired, "--expired", "expired")
}

fn not_yet_valid_certificate(ctx: &Context) -> Result<Outcome, String> {
    given_certificate(ctx, &ctx.identity.not_yet_valid, "--not-yet-valid", "not yet valid")
}

fn revoked_certificate(ctx: &Context) -> Result<Outcome, String> {
    given_certificate(ctx, &ctx.identity.revoked, "--revoked", "revoked")
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
}
