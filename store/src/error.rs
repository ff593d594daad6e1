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
    /// An update would move a resource to another patient (or to none, or from none). Each of
    /// its versions is sealed under its patient's key and bound to their pseudonym, and a
    /// patient's history, destruction and re-index read it as theirs.
    #[error(
        "an update cannot move a resource to another patient: create a new resource for the other patient and delete this one"
    )]
    ResourceChangesPatient,
    /// The database could not be reached, or a write (or its audit record) did not commit:
    /// nothing is known to be kept.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The disk holding the database is full: the write did not commit, and writes are refused
    /// until space is freed (reads go on while the disk reserve lasts; see `reserve.rs`).
    #[error("the database's disk is full: {0}")]
    DiskFull(String),
    /// A query failed, and not for want of the database (that is `Unavailable`).
    #[error("database: {0}")]
    Database(diesel::result::Error),
    #[error("crypto: {0}")]
    Crypto(CryptoError),
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

/// A key-encryption key that cannot be reached (its token absent or locked) is transient, as a
/// database that cannot be reached is: 503, and the request may be sent again.
impl From<CryptoError> for StoreError {
    fn from(error: CryptoError) -> Self {
        match error {
            CryptoError::Unavailable(_) => StoreError::Unavailable(error.to_string()),
            error => StoreError::Crypto(error),
        }
    }
}

impl From<diesel::r2d2::PoolError> for StoreError {
    fn from(error: diesel::r2d2::PoolError) -> Self {
        StoreError::Unavailable(format!("connection pool: {error}"))
    }
}

/// A query's failure, told apart: the database gone or unreachable (a closed connection, a
/// server shutting down, SQLite busy past its timeout, a full disk) is transient, and answers
/// 503; anything else is the gateway's fault.
impl From<diesel::result::Error> for StoreError {
    fn from(error: diesel::result::Error) -> Self {
        if disk_full(&error) {
            StoreError::DiskFull(format!("database: {error}"))
        } else if unavailable(&error) {
            StoreError::Unavailable(format!("database: {error}"))
        } else {
            StoreError::Database(error)
        }
    }
}

/// Whether a write failed for want of disk space (SQLite's `SQLITE_FULL`; PostgreSQL's
/// `could not extend file` and `No space left on device`).
pub(crate) fn disk_full(error: &diesel::result::Error) -> bool {
    match error {
        diesel::result::Error::DatabaseError(_, info) => {
            let message = info.message().to_ascii_lowercase();
            ["database or disk is full", "no space left on device", "could not extend file"]
                .iter()
                .any(|known| message.contains(known))
        }
        _ => false,
    }
}

/// Whether a query failed because the database could not be reached or could not take the
/// write, rather than because of what was asked.
pub(crate) fn unavailable(error: &diesel::result::Error) -> bool {
    use diesel::result::{DatabaseErrorKind as Kind, Error};
    match error {
        Error::DatabaseError(Kind::ClosedConnection | Kind::UnableToSendCommand, _) => true,
        Error::DatabaseError(_, info) => {
            // PostgreSQL's shutdown and connection failures (SQLSTATE classes 08 and 57P)
            // arrive as messages; so do SQLite's busy and full-disk answers.
            let message = info.message().to_ascii_lowercase();
            [
                "terminating connection",
                "server closed the connection",
                "connection to server",
                "could not connect",
                "no connection to the server",
                "the database system is shutting down",
                "the database system is starting up",
                "the database system is in recovery mode",
                "database is locked",
                "database or disk is full",
                "disk i/o error",
                "unable to open database file",
            ]
            .iter()
            .any(|known| message.contains(known))
        }
        Error::BrokenTransactionManager => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn database_error(kind: DatabaseErrorKind, message: &str) -> Error {
        Error::DatabaseError(kind, Box::new(message.to_owned()))
    }

    #[test]
    fn a_database_that_went_away_is_transient_and_a_bad_query_is_not() {
        for gone in [
            database_error(DatabaseErrorKind::ClosedConnection, "server closed the connection unexpectedly"),
            database_error(DatabaseErrorKind::Unknown, "terminating connection due to administrator command"),
            database_error(DatabaseErrorKind::Unknown, "FATAL: the database system is shutting down"),
            database_error(DatabaseErrorKind::Unknown, "database is locked"),
        ] {
            assert!(matches!(StoreError::from(gone), StoreError::Unavailable(_)));
        }
        for full in [
            database_error(DatabaseErrorKind::Unknown, "database or disk is full"),
            database_error(
                DatabaseErrorKind::Unknown,
                "could not extend file \"base/16384/2619\": No space left on device",
            ),
        ] {
            assert!(matches!(StoreError::from(full), StoreError::DiskFull(_)));
        }
        let bad = database_error(DatabaseErrorKind::Unknown, "syntax error at or near \"SELEC\"");
        assert!(matches!(StoreError::from(bad), StoreError::Database(_)));
        assert!(matches!(StoreError::from(Error::NotFound), StoreError::Database(_)));
    }
}
