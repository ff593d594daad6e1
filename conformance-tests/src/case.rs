//! What a case is: an id, a title, a requirement level, the rule it checks, the credentials it
//! needs, and a function that yields pass, fail (with what was seen) or skip (with why). Also
//! what a case runs against ([`Context`]) and the helpers every case file shares. The registry of
//! all cases is `cases.rs`.
//!
//! Cases that write use synthetic patients with temporary identity codes (individual numbers
//! 900-999, never issued to a person).

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::client::{Answer, Client, ClientError};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Shall,
    Should,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Shall => "SHALL",
            Level::Should => "SHOULD",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Pass(String),
    Fail(String),
    Skip(String),
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass(_) => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Skip(_) => "skip",
        }
    }

    pub fn detail(&self) -> &str {
        match self {
            Outcome::Pass(d) | Outcome::Fail(d) | Outcome::Skip(d) => d,
        }
    }
}

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

/// What a case runs against.
pub struct Context {
    pub client: Client,
    /// The body size the deployment is configured to refuse above.
    pub max_body_bytes: usize,
    pub identity: IdentityOptions,
    /// The deployment's harvesting threshold per practitioner, when the run was told it.
    pub harvest_limit: Option<u64>,
}

impl Context {
    /// Whether the run was given `credential`.
    pub fn has(&self, credential: Credential) -> bool {
        let target = self.client.target();
        match credential {
            Credential::ClientCertificate => target.cert.is_some() && target.key.is_some(),
            Credential::Token => target.token.is_some(),
            Credential::IssuerKey => self.identity.issuer_key.is_some(),
            Credential::ExpiredCertificate => self.identity.expired.is_some(),
            Credential::NotYetValidCertificate => self.identity.not_yet_valid.is_some(),
            Credential::RevokedCertificate => self.identity.revoked.is_some(),
        }
    }
}

/// Something a run may be given that a case cannot do without. A case declares what it needs
/// ([`Case::needs`]); without it the case is skipped, naming what is missing, rather than run to
/// a failure that says nothing about the deployment (an unauthenticated request is refused with
/// 401 before any other rule is reached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    /// `--cert` and `--key`: an organisation's client certificate from the deployment's CA.
    ClientCertificate,
    /// `--token`: a practitioner's token bound to that certificate.
    Token,
    /// `--issuer-key`: the key of the test issuer that minted `--token`, to sign other tokens.
    IssuerKey,
    /// `--expired-cert` and `--expired-key`.
    ExpiredCertificate,
    /// `--not-yet-valid-cert` and `--not-yet-valid-key`.
    NotYetValidCertificate,
    /// `--revoked-cert` and `--revoked-key`.
    RevokedCertificate,
}

impl Credential {
    /// The command-line options that give it.
    pub fn options(self) -> &'static str {
        match self {
            Credential::ClientCertificate => "--cert/--key",
            Credential::Token => "--token",
            Credential::IssuerKey => "--issuer-key",
            Credential::ExpiredCertificate => "--expired-cert/--expired-key",
            Credential::NotYetValidCertificate => "--not-yet-valid-cert/--not-yet-valid-key",
            Credential::RevokedCertificate => "--revoked-cert/--revoked-key",
        }
    }

    /// What it is, for a skip's reason.
    pub fn what(self) -> &'static str {
        match self {
            Credential::ClientCertificate => "an organisation's client certificate from the deployment's CA",
            Credential::Token => "a practitioner's token bound to the certificate",
            Credential::IssuerKey => "the test issuer's key, to sign tokens of other identities",
            Credential::ExpiredCertificate => "an expired certificate from the deployment's CA",
            Credential::NotYetValidCertificate => "a certificate from the deployment's CA that is not yet valid",
            Credential::RevokedCertificate => "a revoked certificate from the deployment's CA",
        }
    }
}

/// A valid professional identity: what every case that acts as the run's practitioner needs.
pub const PROFESSIONAL: &[Credential] = &[Credential::ClientCertificate, Credential::Token];
/// A valid professional identity and the issuer's key: what a case needs to act as other
/// professionals, patients and auditors, or to sign variants of the run's token.
pub const ISSUER: &[Credential] = &[Credential::ClientCertificate, Credential::Token, Credential::IssuerKey];

pub struct Case {
    pub id: &'static str,
    pub title: &'static str,
    pub level: Level,
    /// The rule checked: a section of the FHIR specification or of Vaitio's design.
    pub reference: &'static str,
    /// The credentials the case cannot run without; it is skipped when one is not given.
    pub needs: &'static [Credential],
    /// Runs the case's checks: `Err` is the case failing because it could not be carried out.
    pub run: fn(&Context) -> Result<Outcome, Failure>,
}

impl Case {
    /// Why the case is skipped in `ctx`: the credentials it needs that were not given.
    pub fn skip_reason(&self, ctx: &Context) -> Option<String> {
        let missing: Vec<String> = self
            .needs
            .iter()
            .filter(|credential| !ctx.has(**credential))
            .map(|credential| format!("{} ({})", credential.options(), credential.what()))
            .collect();
        let (last, others) = missing.split_last()?;
        let listed = if others.is_empty() { last.clone() } else { format!("{} and {last}", others.join(", ")) };
        Some(format!("needs {listed}, which this run was not given"))
    }

    /// Runs the case, or skips it when it needs a credential `ctx` was not given.
    pub fn outcome(&self, ctx: &Context) -> Outcome {
        if let Some(reason) = self.skip_reason(ctx) {
            return Outcome::Skip(reason);
        }
        // A case that cannot reach the deployment at all has failed: an unreachable server is
        // not conformant.
        (self.run)(ctx).unwrap_or_else(|failure| Outcome::Fail(format!("could not run: {failure}")))
    }
}

/// Why a case failed: what it saw that breaks its rule (inside [`verdict`]), or why it could not
/// be carried out (returned by the case).
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// What the deployment answered that the case does not accept.
    #[error("{0}")]
    Seen(String),
    /// The deployment could not be reached, or its answer not read.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// A credential the case reached for was not given ([`Case::outcome`] skips a case that
    /// declares what it needs before it gets here).
    #[error("no {}", .0.options())]
    NotGiven(Credential),
    /// The run's token, or a token the case made from it, could not be read or signed.
    #[error(transparent)]
    Token(#[from] crate::token::TokenError),
    /// A certificate the case makes for itself could not be made.
    #[error(transparent)]
    Certificate(#[from] certs::CertsError),
    #[error(transparent)]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl From<String> for Failure {
    fn from(seen: String) -> Self {
        Failure::Seen(seen)
    }
}

impl From<&str> for Failure {
    fn from(seen: &str) -> Self {
        Failure::Seen(seen.to_owned())
    }
}

/// Fails with `message` unless `condition` holds.
pub fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), Failure> {
    if condition {
        Ok(())
    } else {
        Err(Failure::Seen(message()))
    }
}

/// Runs a case's assertions: a returned `Err` is the case failing with what was seen.
pub fn verdict(result: Result<String, Failure>) -> Result<Outcome, Failure> {
    Ok(match result {
        Ok(detail) => Outcome::Pass(detail),
        Err(seen) => Outcome::Fail(seen.to_string()),
    })
}

/// The answer has `status`, an OperationOutcome body and the FHIR JSON Content-Type.
pub fn expect_outcome(answer: &Answer, status: u16, what: &str) -> Result<String, Failure> {
    check(answer.status == status, || {
        format!("{what}: expected HTTP {status}, got {}: {}", answer.status, answer.text_excerpt())
    })?;
    check(answer.is_operation_outcome(), || {
        format!("{what}: HTTP {status} without an OperationOutcome body: {}", answer.text_excerpt())
    })?;
    check(answer.header("content-type").is_some_and(|c| c.starts_with("application/fhir+json")), || {
        format!("{what}: Content-Type is {:?}, not application/fhir+json", answer.header("content-type"))
    })?;
    Ok(format!("{what}: HTTP {status} with an OperationOutcome"))
}

/// A 401 or 403 to the run's own identity where the case needs an answer past it: the case
/// cannot judge its rule with this identity (IDN-00 judges the identity itself).
pub fn refused_to_this_identity(answer: &Answer, what: &str) -> Option<Outcome> {
    matches!(answer.status, 401 | 403).then(|| {
        Outcome::Skip(format!(
            "{what} was refused to the run's identity (HTTP {}): {}",
            answer.status,
            answer.text_excerpt()
        ))
    })
}

/// A valid temporary HETU (individual number 900-999), different on every run.
pub fn temporary_hetu() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    temporary_hetu_number(nanos)
}

/// The `n`th of 1,680,000 distinct valid temporary HETUs.
pub fn temporary_hetu_number(n: u128) -> String {
    let day = 1 + (n % 28) as u32;
    let month = 1 + ((n / 28) % 12) as u32;
    let year = 50 + ((n / 336) % 50) as u32;
    let individual = 900 + ((n / 16_800) % 100) as u32;
    let number = day * 10_000_000 + month * 100_000 + year * 1_000 + individual;
    let check = b"0123456789ABCDEFHJKLMNPRSTUVWXY"[(number % 31) as usize] as char;
    format!("{day:02}{month:02}{year:02}-{individual:03}{check}")
}

pub fn test_patient(hetu: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": "urn:oid:1.2.246.21", "value": hetu}],
        "name": [{"family": "Conformance", "given": ["Testi"]}],
        "gender": "unknown"
    })
}
