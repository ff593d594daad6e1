//! The gateway's one error type, mapped once to a FHIR OperationOutcome and an HTTP status.
//!
//! Messages returned to clients name elements, rules and ids, never clinical values; internal
//! causes (database, crypto) are logged by kind and answered with a generic outcome.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use fhir_profiles::query::QueryError;
use fhir_profiles::{Issue, IssueCode, ProfileError, ResourceType};
use serde_json::{json, Value};

use store::StoreError;

pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request itself is wrong: a bad parameter, an id mismatch (400).
    #[error("{0}")]
    BadRequest(String),
    /// A submitted resource could not be read, or breaks a profile rule.
    #[error(transparent)]
    Profile(#[from] ProfileError),
    /// Absent, or not for this caller: one answer for both, so nobody learns which.
    #[error("{resource_type}/{id} is not known")]
    NotFound { resource_type: String, id: String },
    #[error("resource type '{0}' is not served here")]
    UnknownResourceType(String),
    #[error("no such endpoint")]
    UnknownEndpoint,
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The body's Content-Type is not what the endpoint reads, which the message names.
    #[error("the body must be sent as {0}")]
    UnsupportedMediaType(&'static str),
    #[error("this server answers only in FHIR JSON (application/fhir+json)")]
    NotAcceptable,
    #[error("the body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("version conflict: the resource is at version {current}, not the one in If-Match")]
    PreconditionFailed { current: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    /// An unusual-access alert holds for the caller: refused until it lapses or an auditor
    /// clears it (429, with Retry-After).
    #[error("refused: this principal's access pattern raised an alert; retry after {retry_after} s or ask an auditor")]
    TooManyRequests { retry_after: u64 },
    /// A search that names no patient, id or identifier: the register cannot be browsed.
    #[error("a search names what it looks for: give one of {0}")]
    SearchMustName(String),
    /// No verified identity: no or a bad token, no client certificate where one is needed (401).
    #[error("authentication failed: {0}")]
    Unauthenticated(String),
    /// A verified identity that may not do this at all (403). Never used for data a caller may
    /// not see: that is a 404, like absence.
    #[error("forbidden: {0}")]
    Forbidden(String),
    #[error("the database is unavailable")]
    Unavailable(String),
    /// The database's disk is full: the write was not kept (507).
    #[error("the database's disk is full: the write was not kept; retry once an operator has freed space")]
    InsufficientStorage(String),
    #[error("internal error")]
    Internal(String),
}

/// The storage layer's errors, mapped once. A database that cannot be reached, or a write that
/// did not commit, is transient (503); stored data that does not read is the gateway's fault
/// (500), and its cause goes to the log only.
impl From<identity::IdentityError> for GatewayError {
    fn from(error: identity::IdentityError) -> Self {
        match error {
            identity::IdentityError::Unauthenticated(reason) => GatewayError::Unauthenticated(reason),
            identity::IdentityError::Forbidden(reason) => GatewayError::Forbidden(reason),
        }
    }
}

impl From<QueryError> for GatewayError {
    fn from(error: QueryError) -> Self {
        GatewayError::BadRequest(error.to_string())
    }
}

impl From<StoreError> for GatewayError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflict(message) => GatewayError::Conflict(message),
            StoreError::NotFound { resource_type, id } => GatewayError::NotFound { resource_type, id },
            StoreError::VersionMismatch { current } => GatewayError::PreconditionFailed { current },
            error @ (StoreError::PatientChanged | StoreError::ResourceChangesPatient) => {
                GatewayError::Unprocessable(error.to_string())
            }
            StoreError::Unavailable(cause) => GatewayError::Unavailable(cause),
            StoreError::DiskFull(cause) => GatewayError::InsufficientStorage(cause),
            error @ (StoreError::Database(_)
            | StoreError::Crypto(_)
            | StoreError::Damaged(_)
            | StoreError::Url(_)
            | StoreError::Migration(_)
            | StoreError::Internal(_)) => GatewayError::Internal(error.to_string()),
        }
    }
}

impl From<actix_web::error::BlockingError> for GatewayError {
    fn from(_: actix_web::error::BlockingError) -> Self {
        GatewayError::Internal("the blocking pool is gone".into())
    }
}

pub use fhir_profiles::{printable, printable_name};

impl GatewayError {
    /// Absent, or not for this caller: the same answer for both.
    pub fn not_found(resource_type: ResourceType, id: &str) -> Self {
        GatewayError::NotFound { resource_type: resource_type.as_str().to_owned(), id: printable(id) }
    }

    fn issues(&self) -> Vec<Issue> {
        let one = |code: IssueCode, text: String| vec![Issue::new(code, text)];
        match self {
            GatewayError::Profile(error) => error.issues(),
            GatewayError::BadRequest(text) => one(IssueCode::Invalid, text.clone()),
            GatewayError::UnknownResourceType(_) | GatewayError::MethodNotAllowed(_) => {
                one(IssueCode::NotSupported, self.to_string())
            }
            GatewayError::Unprocessable(text) => one(IssueCode::BusinessRule, text.clone()),
            other => one(IssueCode::Invalid, other.to_string()),
        }
    }

    /// The OperationOutcome that answers this error: what the client is told, and no more.
    pub fn outcome(&self) -> Value {
        let issues: Vec<(String, String, Option<String>)> = match self {
            GatewayError::Profile(_) => {
                self.issues().into_iter().map(|i| (i.code.as_str().to_owned(), i.diagnostics, i.expression)).collect()
            }
            _ => self.issues().into_iter().map(|i| (self.code().to_owned(), i.diagnostics, i.expression)).collect(),
        };
        operation_outcome(&issues)
    }

    /// A failure of the gateway's own: its cause goes to the log, and the client learns only
    /// that it failed.
    pub fn log_cause(&self) {
        if let GatewayError::Internal(cause)
        | GatewayError::Unavailable(cause)
        | GatewayError::InsufficientStorage(cause) = self
        {
            tracing::error!(cause = %cause, "request failed");
        }
    }

    /// The FHIR issue-type code for errors that are not about a submitted resource.
    fn code(&self) -> &'static str {
        match self {
            GatewayError::NotFound { .. } | GatewayError::UnknownEndpoint => "not-found",
            GatewayError::UnsupportedMediaType(_)
            | GatewayError::NotAcceptable
            | GatewayError::UnknownResourceType(_) => "not-supported",
            GatewayError::MethodNotAllowed(_) => "not-supported",
            GatewayError::PayloadTooLarge { .. } => "too-costly",
            GatewayError::PreconditionFailed { .. } | GatewayError::Conflict(_) => "conflict",
            GatewayError::Unauthenticated(_) => "login",
            GatewayError::Forbidden(_) => "forbidden",
            GatewayError::Unavailable(_) | GatewayError::InsufficientStorage(_) => "transient",
            GatewayError::Internal(_) => "exception",
            GatewayError::Unprocessable(_) => "business-rule",
            GatewayError::SearchMustName(_) => "required",
            GatewayError::TooManyRequests { .. } => "throttled",
            GatewayError::BadRequest(_) | GatewayError::Profile(_) => "invalid",
        }
    }
}

/// An OperationOutcome with one `error` issue per entry.
pub fn operation_outcome(issues: &[(String, String, Option<String>)]) -> Value {
    let issues: Vec<Value> = issues
        .iter()
        .map(|(code, diagnostics, expression)| {
            let mut issue = json!({"severity": "error", "code": code, "diagnostics": diagnostics});
            if let Some(expression) = expression {
                issue["expression"] = json!([expression]);
            }
            issue
        })
        .collect();
    json!({"resourceType": "OperationOutcome", "issue": issues})
}

impl ResponseError for GatewayError {
    fn status_code(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) | GatewayError::SearchMustName(_) => StatusCode::BAD_REQUEST,
            GatewayError::Profile(ProfileError::Rule(_)) | GatewayError::Unprocessable(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            GatewayError::Profile(_) => StatusCode::BAD_REQUEST,
            GatewayError::NotFound { .. } | GatewayError::UnknownResourceType(_) | GatewayError::UnknownEndpoint => {
                StatusCode::NOT_FOUND
            }
            GatewayError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            GatewayError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            GatewayError::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            GatewayError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            GatewayError::Conflict(_) => StatusCode::CONFLICT,
            GatewayError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden(_) => StatusCode::FORBIDDEN,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::InsufficientStorage(_) => StatusCode::INSUFFICIENT_STORAGE,
            GatewayError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        self.log_cause();
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CONTENT_TYPE, FHIR_JSON));
        if let GatewayError::Unauthenticated(_) = self {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\""));
        }
        if let GatewayError::TooManyRequests { retry_after } = self {
            response.insert_header((header::RETRY_AFTER, retry_after.to_string()));
        }
        response.body(self.outcome().to_string())
    }
}
