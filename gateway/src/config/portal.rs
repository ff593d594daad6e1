//! The portal's production sign-in settings, lifted from the raw values: the citizen identity
//! provider (OpenID Connect) and this client's registration with it.

use std::path::PathBuf;

use super::{refuse, ConfigError, Raw};

/// The citizen identity provider the portal signs patients in with.
#[derive(Clone)]
pub struct OidcSettings {
    pub issuer: String,
    pub client_id: String,
    /// Read from its file; never printed.
    pub client_secret: Option<String>,
    /// `None`: `<public_base_url>/portal/login/callback`.
    pub redirect_url: Option<String>,
    /// The discovery document from a file; `None`: from the issuer.
    pub discovery: Option<PathBuf>,
    /// The JWKS from a file; `None`: from the discovery document's `jwks_uri`.
    pub jwks: Option<PathBuf>,
    /// The CA bundle the provider's certificate chains to; `None`: the usual web roots.
    pub ca: Option<PathBuf>,
    /// The ID token claim holding the patient's HETU.
    pub hetu_claim: String,
}

impl std::fmt::Debug for OidcSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcSettings")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_url", &self.redirect_url)
            .field("discovery", &self.discovery)
            .field("jwks", &self.jwks)
            .field("ca", &self.ca)
            .field("hetu_claim", &self.hetu_claim)
            .finish()
    }
}

pub(super) fn oidc(raw: &Raw) -> Result<Option<OidcSettings>, ConfigError> {
    let Some(issuer) = raw.text("portal.oidc_issuer") else {
        let stray = ["portal.oidc_client_id", "portal.oidc_redirect_url", "portal.oidc_client_secret_file"]
            .into_iter()
            .find(|key| raw.values.contains_key(key));
        return match stray {
            Some(key) => refuse(format!("{key} needs portal.oidc_issuer")),
            None => Ok(None),
        };
    };
    if !issuer.starts_with("https://") {
        return refuse("portal.oidc_issuer must be an https:// URL");
    }
    let client_id = raw
        .text("portal.oidc_client_id")
        .filter(|id| !id.trim().is_empty())
        .ok_or_else(|| ConfigError("portal.oidc_issuer needs portal.oidc_client_id".into()))?;
    let client_secret = match raw.path("portal.oidc_client_secret_file") {
        Some(path) => {
            let secret = std::fs::read_to_string(&path)
                .map_err(|e| ConfigError(format!("portal.oidc_client_secret_file {}: {e}", path.display())))?;
            let secret = secret.trim().to_owned();
            if secret.is_empty() {
                return refuse(format!("portal.oidc_client_secret_file {} is empty", path.display()));
            }
            Some(secret)
        }
        None => None,
    };
    let redirect_url = raw.text("portal.oidc_redirect_url");
    if redirect_url.as_deref().is_some_and(|url| !url.starts_with("https://")) {
        return refuse("portal.oidc_redirect_url must be an https:// URL");
    }
    let file = |key: &str| -> Result<Option<PathBuf>, ConfigError> {
        match raw.path(key) {
            Some(path) if !path.is_file() => refuse(format!("{key} {} does not exist", path.display())),
            other => Ok(other),
        }
    };
    Ok(Some(OidcSettings {
        issuer,
        client_id,
        client_secret,
        redirect_url,
        discovery: file("portal.oidc_discovery")?,
        jwks: file("portal.oidc_jwks")?,
        ca: file("portal.oidc_ca")?,
        hetu_claim: raw.text("portal.oidc_hetu_claim").unwrap_or_else(|| "hetu".into()),
    }))
}
