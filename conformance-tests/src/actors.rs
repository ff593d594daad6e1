//! Who a case acts as: the run's own identity, or another identity made from it. Other
//! professionals of the run's organisation use the run's certificate with a token signed by the
//! deployment's test issuer (`--issuer-key`); a patient uses a citizen token and no certificate.

use std::path::PathBuf;

use jsonwebtoken::Header;
use serde_json::{json, Value};

use crate::case::{Context, Credential, Failure};
use crate::client::{Client, ClientError, Target};
use crate::token;

/// The run's token (`--token`).
pub fn run_token(ctx: &Context) -> Result<String, Failure> {
    ctx.client.target().token.clone().ok_or(Failure::NotGiven(Credential::Token))
}

/// The organisation and practitioner of the run's token.
pub fn practitioner(ctx: &Context) -> Option<(String, String)> {
    token::practitioner(ctx.client.target().token.as_deref()?)
}

/// A client of the deployment with `cert` (certificate, key) and `token`, each optional.
pub fn client(ctx: &Context, cert: Option<(PathBuf, PathBuf)>, token: Option<String>) -> Result<Client, ClientError> {
    let base = ctx.client.target();
    let (cert, key) = match cert {
        Some((cert, key)) => (Some(cert), Some(key)),
        None => (None, None),
    };
    Client::new(Target { base_url: base.base_url.clone(), ca: base.ca.clone(), cert, key, token })
}

/// The run's certificate and key (`--cert`, `--key`).
pub fn base_cert(ctx: &Context) -> Option<(PathBuf, PathBuf)> {
    let target = ctx.client.target();
    Some((target.cert.clone()?, target.key.clone()?))
}

/// The claims and header of `--token`, changed by `change`, signed with the issuer key.
pub fn variant(ctx: &Context, change: impl FnOnce(&mut Value, &mut Header)) -> Result<String, Failure> {
    let issuer_key = ctx.identity.issuer_key.as_ref().ok_or(Failure::NotGiven(Credential::IssuerKey))?;
    Ok(token::sign_variant(&run_token(ctx)?, issuer_key, change)?)
}

/// Another professional of the run's organisation, on the run's certificate; `emergency` is a
/// purpose of use with its stated reason.
pub fn professional(ctx: &Context, practitioner: &str, role: &str, emergency: Option<&str>) -> Result<Client, Failure> {
    let token = variant(ctx, |claims, _| {
        claims["sub"] = json!(practitioner);
        claims["role"] = json!(role);
        let claims = claims.as_object_mut().expect("claims are an object");
        claims.remove("purpose");
        claims.remove("reason");
        if let Some(purpose) = emergency {
            claims.insert("purpose".into(), json!(purpose));
            claims.insert("reason".into(), json!("conformance: patient unconscious on arrival"));
        }
    })?;
    Ok(client(ctx, base_cert(ctx), Some(token))?)
}

/// The patient of `hetu`, with a citizen token and no certificate.
pub fn patient(ctx: &Context, hetu: &str) -> Result<Client, Failure> {
    let token = variant(ctx, |claims, _| {
        claims["sub"] = json!(hetu);
        claims["role"] = json!("patient");
        let claims = claims.as_object_mut().expect("claims are an object");
        for professional_only in ["org", "cnf", "purpose", "reason"] {
            claims.remove(professional_only);
        }
    })?;
    Ok(client(ctx, None, Some(token))?)
}

/// An auditor, on the run's certificate.
pub fn auditor(ctx: &Context) -> Result<Client, Failure> {
    let token = variant(ctx, |claims, _| {
        claims["sub"] = json!("conformance-auditor");
        claims["role"] = json!("auditor");
    })?;
    Ok(client(ctx, base_cert(ctx), Some(token))?)
}
