//! Identity cases: every way a request without a valid, bound identity must be refused before it
//! reaches data. Token variants that need a valid signature are made with the deployment's test
//! issuer key (`--issuer-key`); without it those cases are skipped, with the reason.

use std::path::{Path, PathBuf};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::actors::{base_cert, client, run_token, variant};
use crate::case::{Case, Context, Credential, Failure, Level, Outcome, ISSUER, PROFESSIONAL};
use crate::client::Client;
use crate::token::{read_issuer_key, segments, TokenError};

// Where it has always been found (the gateway's tests fill it in); it is part of a case's context.
pub use crate::case::IdentityOptions;

pub fn cases() -> Vec<Case> {
    let shall = |id, title, reference, needs, run| Case { id, title, level: Level::Shall, reference, needs, run };
    // The refusals of a token are judged against the control IDN-00: the run's own certificate
    // and token. The refusals of a certificate need none: without a token the handshake or the
    // missing token is refused, and the certificate cases make their own or are given them.
    vec![
        shall(
            "IDN-00",
            "A valid certificate with a token bound to it is served (the control for every refusal)",
            "RFC 8705 §3",
            PROFESSIONAL,
            valid_identity_served,
        ),
        shall(
            "IDN-01",
            "A professional token without a client certificate is refused with 401",
            "Vaitio design: organisation endpoints require a client certificate",
            PROFESSIONAL,
            no_client_certificate,
        ),
        shall(
            "IDN-02",
            "A request without a token is refused with 401",
            "Vaitio design: a practitioner token on every request",
            PROFESSIONAL,
            no_token,
        ),
        shall("IDN-03", "A malformed token is refused with 401", "RFC 7519", PROFESSIONAL, malformed_token),
        shall("IDN-04", "A token with alg none is refused with 401", "RFC 8725 §3.1", PROFESSIONAL, alg_none),
        shall(
            "IDN-05",
            "An HS256 token signed with the issuer's public key is refused with 401",
            "RFC 8725 §3.1",
            ISSUER,
            hs256_with_public_key,
        ),
        shall(
            "IDN-06",
            "A token whose kid names no trusted key is refused with 401",
            "RFC 7515 §4.1.4",
            ISSUER,
            unknown_kid,
        ),
        shall("IDN-07", "An expired token is refused with 401", "RFC 7519 §4.1.4", ISSUER, expired_token),
        shall("IDN-08", "A token for another audience is refused with 401", "RFC 7519 §4.1.3", ISSUER, wrong_audience),
        shall(
            "IDN-09",
            "A token from an untrusted issuer is refused with 401",
            "RFC 7519 §4.1.1",
            ISSUER,
            wrong_issuer,
        ),
        shall(
            "IDN-10",
            "A token minted for another certificate is refused with 401",
            "RFC 8705 §3",
            ISSUER,
            other_certificate,
        ),
        shall(
            "IDN-11",
            "A token whose organisation is not the certificate's is refused with 403",
            "Vaitio design: the organisation comes from the certificate",
            ISSUER,
            organisation_mismatch,
        ),
        shall(
            "IDN-12",
            "A token with an unknown role is refused with 403",
            "Vaitio design: roles",
            ISSUER,
            unknown_role,
        ),
        shall(
            "IDN-13",
            "A client certificate from a foreign CA is refused",
            "Vaitio design: certificates chained to the configured CA",
            &[],
            foreign_ca,
        ),
        shall(
            "IDN-14",
            "A self-signed client certificate is refused",
            "Vaitio design: certificates chained to the configured CA",
            &[],
            self_signed,
        ),
        shall(
            "IDN-15",
            "An expired client certificate is refused",
            "RFC 5280 §4.1.2.5",
            &[Credential::ExpiredCertificate],
            expired_certificate,
        ),
        shall(
            "IDN-16",
            "A client certificate that is not yet valid is refused",
            "RFC 5280 §4.1.2.5",
            &[Credential::NotYetValidCertificate],
            not_yet_valid_certificate,
        ),
        shall(
            "IDN-17",
            "A revoked client certificate is refused",
            "RFC 5280 §5",
            &[Credential::RevokedCertificate],
            revoked_certificate,
        ),
    ]
}

/// An authenticated request that names what it looks for (a search must), found or not.
const PROBE: &str = "/Patient?_id=conformance-probe";

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

fn thumbprint(cert: &Path) -> Result<String, Failure> {
    let pem = std::fs::read(cert)?;
    let der = openssl::x509::X509::from_pem(&pem).and_then(|c| c.to_der())?;
    Ok(certs::thumbprint_sha256(&der))
}

fn valid_identity_served(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.get(PROBE)?;
    Ok(if answer.status == 200 {
        Outcome::Pass("HTTP 200 for the valid identity".into())
    } else {
        Outcome::Fail(format!("the valid identity got HTTP {}: {}", answer.status, answer.text_excerpt()))
    })
}

fn no_client_certificate(ctx: &Context) -> Result<Outcome, Failure> {
    Ok(expect_refused(&client(ctx, None, Some(run_token(ctx)?))?, &[401], "token without a certificate"))
}

fn no_token(ctx: &Context) -> Result<Outcome, Failure> {
    Ok(expect_refused(&client(ctx, base_cert(ctx), None)?, &[401], "certificate without a token"))
}

fn malformed_token(ctx: &Context) -> Result<Outcome, Failure> {
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some("not.a-token".into()))?, &[401], "a malformed token"))
}

fn alg_none(ctx: &Context) -> Result<Outcome, Failure> {
    let (mut header, claims) = segments(&run_token(ctx)?)?;
    header["alg"] = json!("none");
    let encode = |v: &Value| certs::base64url(v.to_string().as_bytes());
    let forged = format!("{}.{}.", encode(&header), encode(&claims));
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(forged))?, &[401], "alg none"))
}

fn hs256_with_public_key(ctx: &Context) -> Result<Outcome, Failure> {
    let pem = read_issuer_key(ctx.identity.issuer_key.as_ref().ok_or(Failure::NotGiven(Credential::IssuerKey))?)?;
    let public = certs::public_key_pem(&pem)?;
    let (header_json, claims) = segments(&run_token(ctx)?)?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = header_json["kid"].as_str().map(str::to_owned);
    let key = EncodingKey::from_secret(&public).map_err(TokenError::Sign)?;
    let forged = jsonwebtoken::encode(&header, &claims, &key).map_err(TokenError::Sign)?;
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(forged))?, &[401], "HS256 keyed with the public key"))
}

fn signed_variant(
    ctx: &Context,
    statuses: &[u16],
    what: &str,
    change: impl FnOnce(&mut Value, &mut Header),
) -> Result<Outcome, Failure> {
    let token = variant(ctx, change)?;
    Ok(expect_refused(&client(ctx, base_cert(ctx), Some(token))?, statuses, what))
}

fn unknown_kid(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[401], "unknown kid", |_, header| header.kid = Some("conformance-unknown-kid".into()))
}

fn expired_token(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[401], "expired an hour ago", |claims, _| {
        let now = chrono::Utc::now().timestamp();
        claims["exp"] = json!(now - 3600);
        claims["nbf"] = json!(now - 7200);
        claims["iat"] = json!(now - 7200);
    })
}

fn wrong_audience(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[401], "aud of another service", |claims, _| {
        claims["aud"] = json!("https://another-service.invalid")
    })
}

fn wrong_issuer(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[401], "an untrusted iss", |claims, _| {
        claims["iss"] = json!("https://untrusted-issuer.invalid")
    })
}

fn other_certificate(ctx: &Context) -> Result<Outcome, Failure> {
    // The thumbprint of a certificate other than the connection's.
    let dir = tempfile::tempdir()?;
    let other = certs::CertificateAuthority::init(dir.path(), "Conformance other")?;
    std::fs::write(dir.path().join("other.pem"), other.cert_pem()?)?;
    let foreign = thumbprint(&dir.path().join("other.pem"))?;
    signed_variant(ctx, &[401], "cnf of another certificate", |claims, _| claims["cnf"] = json!({"x5t#S256": foreign}))
}

fn organisation_mismatch(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[403], "org of another organisation", |claims, _| {
        claims["org"] = json!("1.2.246.10.99999999.10.9")
    })
}

fn unknown_role(ctx: &Context) -> Result<Outcome, Failure> {
    signed_variant(ctx, &[403], "role 'janitor'", |claims, _| claims["role"] = json!("janitor"))
}

/// A request with `cert` and, when the issuer key is at hand, a token bound to it (so only the
/// certificate can be the reason for refusal).
fn with_certificate(ctx: &Context, cert: (PathBuf, PathBuf), what: &str) -> Result<Outcome, Failure> {
    let token = match &ctx.identity.issuer_key {
        Some(_) if ctx.client.target().token.is_some() => {
            let bound = thumbprint(&cert.0)?;
            Some(variant(ctx, |claims, _| claims["cnf"] = json!({"x5t#S256": bound}))?)
        }
        _ => ctx.client.target().token.clone(),
    };
    Ok(expect_refused(&client(ctx, Some(cert), token)?, &[401, 403], what))
}

fn foreign_ca(ctx: &Context) -> Result<Outcome, Failure> {
    let dir = tempfile::tempdir()?;
    let ca = certs::CertificateAuthority::init(dir.path(), "Conformance foreign CA")?;
    let oid = certs::OrganisationOid::parse("1.2.246.10.12345678.10.1")?;
    let issued = ca.issue_org(&oid, "Foreign", certs::Validity::default())?;
    issued.write_to(&dir.path().join("org"), &ca)?;
    with_certificate(
        ctx,
        (dir.path().join("org/cert.pem"), dir.path().join("org/key.pem")),
        "a certificate of a foreign CA",
    )
}

fn self_signed(ctx: &Context) -> Result<Outcome, Failure> {
    let dir = tempfile::tempdir()?;
    certs::CertificateAuthority::init(dir.path(), "Conformance self-signed")?;
    with_certificate(ctx, (dir.path().join("ca.pem"), dir.path().join("ca-key.pem")), "a self-signed certificate")
}

/// One of the certificates the run was given to see refused.
fn given_certificate(
    ctx: &Context,
    cert: Option<&(PathBuf, PathBuf)>,
    credential: Credential,
    what: &str,
) -> Result<Outcome, Failure> {
    let cert = cert.cloned().ok_or(Failure::NotGiven(credential))?;
    with_certificate(ctx, cert, what)
}

fn expired_certificate(ctx: &Context) -> Result<Outcome, Failure> {
    given_certificate(ctx, ctx.identity.expired.as_ref(), Credential::ExpiredCertificate, "expired")
}

fn not_yet_valid_certificate(ctx: &Context) -> Result<Outcome, Failure> {
    given_certificate(ctx, ctx.identity.not_yet_valid.as_ref(), Credential::NotYetValidCertificate, "not yet valid")
}

fn revoked_certificate(ctx: &Context) -> Result<Outcome, Failure> {
    given_certificate(ctx, ctx.identity.revoked.as_ref(), Credential::RevokedCertificate, "revoked")
}
