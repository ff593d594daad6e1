//! The storage layer's one error type. The gateway maps it to an HTTP status and an
//! OperationOutcome in one place (`gateway/src/error.rs`).

use crate::crypto::CryptoError;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed or created the same row first; reading again and retrying may work.
    #[error("{0}")]
    Conflict(String),
    /// An update names a resource that does not exist.
    #[error("{resource_type}/{id} is not known")]
    NotFound { resource_type: String, id: String },
    /// An update said which version it last saw, and that is not the current one.
    #[error("version conflict: the resource is at version {current}, not the one in If-Match")]
    VersionMismatch { current: i64 },
    /// An update would change the HETU, and with it the pseudonym, of a stored Patient.
    #[error(
        "a Patient's HETU cannot be changed by an update: the pseudonym every record of this patient is filed under derives from it"
    )]
    PatientChanged,
    /// The database could not be reached, or a write (or its audit record) did not commit:
    /// nothing is known to be kept.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// A query failed.
    #[error("database: {0}")]
    Database(#[from] diesel::result::Error),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
    /// What is stored is not what this code wrote: a damaged audit head, a body without its
    /// data key, a head without its version.
    #[error("stored data is damaged: {0}")]
    Damaged(String),
    /// The database URL names no backend this program has.
    #[error("{0}")]
    Url(String),
    #[error("migration failed: {0}")]
    Migration(String),
    /// A bug: something this code should never let happen.
    #[error("internal: {0}")]
    Internal(String),
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(format!("connection pool: {error}"))
    }
}
