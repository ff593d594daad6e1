//! The database: one connection type over SQLite and PostgreSQL, chosen from the URL by the
//! program itself, a pool, and the embedded migrations of each backend.

mod connection;
pub mod schema;

use std::path::PathBuf;
use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use connection::DbConnection;

/// Runs `$body` with `$c` bound to the concrete connection of whichever backend `$conn` is.
///
/// A query run through [`DbConnection`] itself is rendered to SQL text on every execution, to
/// find its prepared statement (diesel's `MultiConnection` gives queries no static id); on the
/// concrete connection a statement is found by the query's type. The hot paths (a read's
/// lookups, the audit append) go through here: rendering was an eighth of a read's CPU.
#[macro_export]
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}

const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/sqlite");
const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations/postgres");

/// Where the data lives. Chosen from the URL's scheme, never by trying backends in turn: a
/// mistyped PostgreSQL URL must fail, not quietly create a SQLite file named after it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DatabaseUrl {
    Postgres(String),
    Sqlite(PathBuf),
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(format!(
                "unknown database scheme '{scheme}://': use postgres://… for PostgreSQL or sqlite://PATH for SQLite"
            ));
        }
        if url.is_empty() {
            return Err("the database URL is empty".into());
        }
        Ok(DatabaseUrl::Sqlite(PathBuf::from(url)))
    }

    pub fn backend_name(&self) -> &'static str {
        match self {
            DatabaseUrl::Postgres(_) => "postgresql",
            DatabaseUrl::Sqlite(_) => "sqlite",
        }
    }

    /// The URL without a password, for logs.
    pub fn redacted(&self) -> String {
        match self {
            DatabaseUrl::Sqlite(path) => format!("sqlite://{}", path.display()),
            DatabaseUrl::Postgres(url) => match (url.find("://"), url.rfind('@')) {
                (Some(scheme_end), Some(at)) if at > scheme_end => {
                    let credentials = &url[scheme_end + 3..at];
                    let user = credentials.split(':').next().unwrap_or("");
                    format!("{}://{}@{}", &url[..scheme_end], user, &url[at + 1..])
                }
                _ => url.clone(),
            },
        }
    }
}

pub struct Manager {
    url: DatabaseUrl,
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                Ok(DbConnection::Postgres(PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?))
            }
            DatabaseUrl::Sqlite(path) => {
                let mut conn =
                    SqliteConnection::establish(&path.to_string_lossy()).map_err(r2d2::Error::ConnectionError)?;
                // WAL lets readers proceed during a write; the busy timeout covers the short
                // moments a reader waits for a checkpoint. Writers are serialised in-process
                // (see `Store`), so SQLite never has to arbitrate between them.
                // Checkpoints run in a background thread (`Store`). The automatic one runs inside
                // a commit, and the writer's commit holds up every queued write while it copies
                // and syncs the database file (80 ms was measured), so it is only a backstop for a
                // log the thread lets grow past 65,536 pages (256 MiB).
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 65536;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, _conn: &mut DbConnection) -> bool {
        false
    }
}

pub type Pool = r2d2::Pool<Manager>;

#[derive(Debug)]
pub struct SetupError(String);

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn r2d2_error(message: String) -> SetupError {
    SetupError(message)
}

pub fn pool(url: &DatabaseUrl, size: u32) -> Result<Pool, SetupError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        // WAL is a property of the file: set it once, before the pool opens its connections
        // side by side (switching modes concurrently fails with "database is locked").
        let mut conn = SqliteConnection::establish(&path.to_string_lossy()).map_err(|e| r2d2_error(e.to_string()))?;
        // SQLite's default 4 KiB pages: 16 KiB pages packed audit events (about 2 KiB each) twice
        // as densely and sped up `audit verify`, but cost reads 10-15 % and ingest 20 %.
        conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")
            .map_err(|e| r2d2_error(e.to_string()))?;
    }
    r2d2::Pool::builder()
        // A pooled SQLite connection is a handle on a local file: there is no server connection
        // to lose, so checking it with a query at every checkout only costs a statement parse.
        .test_on_check_out(!matches!(url, DatabaseUrl::Sqlite(_)))
        .max_size(size)
        .connection_timeout(Duration::from_secs(10))
        .build(Manager { url: url.clone() })
        .map_err(|e| SetupError(e.to_string()))
}

/// Applies the pending migrations of the connection's backend; returns how many ran.
pub fn migrate(conn: &mut DbConnection) -> Result<usize, String> {
    let applied = match conn {
        DbConnection::Postgres(pg) => pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| format!("migration failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_chooses_the_backend() {
        assert_eq!(DatabaseUrl::parse("postgres://u:p@h/db").unwrap().backend_name(), "postgresql");
        assert_eq!(DatabaseUrl::parse("postgresql://h/db").unwrap().backend_name(), "postgresql");
        assert_eq!(DatabaseUrl::parse("sqlite:///tmp/x.db").unwrap(), DatabaseUrl::Sqlite("/tmp/x.db".into()));
        assert_eq!(DatabaseUrl::parse("data/x.db").unwrap(), DatabaseUrl::Sqlite("data/x.db".into()));
        assert!(DatabaseUrl::parse("postgress://h/db").is_err(), "a typo must not become a SQLite file");
        assert!(DatabaseUrl::parse("mysql://h/db").is_err());
    }

    #[test]
    fn passwords_are_redacted() {
        let url = DatabaseUrl::parse("postgres://vaitio:s3cret@db.internal:5432/vaitio").unwrap();
        assert_eq!(url.redacted(), "postgres://vaitio@db.internal:5432/vaitio");
    }
}
