//! The database: one connection type over SQLite and PostgreSQL, chosen from the URL by the
//! program itself, a pool, and the embedded migrations of each backend.

mod connection;
pub mod schema;
pub(crate) mod unnest;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection};
use diesel::sqlite::SqliteConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub use connection::DbConnection;

use crate::error::StoreError;

/// Runs `$body` with `$c` bound to the concrete connection of whichever backend `$conn` is.
///
/// A query run through [`DbConnection`] itself is rendered to SQL text on every execution, to
/// find its prepared statement (diesel's `MultiConnection` gives queries no static id); on the
/// concrete connection a statement is found by the query's type. The hot paths (a read's
/// lookups, the audit append) go through here: rendering was an eighth of a read's CPU.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::db::DbConnection::Postgres($c) => $body,
            $crate::db::DbConnection::Sqlite($c) => $body,
        }
    };
}
pub(crate) use on_backend;

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
    pub fn parse(url: &str) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(DatabaseUrl::Postgres(url.to_owned()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            return Ok(DatabaseUrl::Sqlite(PathBuf::from(path)));
        }
        if let Some((scheme, _)) = url.split_once("://") {
            return Err(StoreError::Url(format!(
                "unknown database scheme '{scheme}://': use postgres://… for PostgreSQL or sqlite://PATH for SQLite"
            )));
        }
        if url.is_empty() {
            return Err(StoreError::Url("the database URL is empty".into()));
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
    reach: Arc<Reach>,
}

/// What the pool's attempts to connect say about the database: when the last one failed, if
/// none has succeeded since. A refused connection is known in a millisecond, so an outage is
/// noticed at the first attempt rather than after a request's whole wait.
#[derive(Default)]
struct Reach {
    refused_at: std::sync::Mutex<Option<Instant>>,
}

impl Reach {
    fn refused_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.refused_at.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Manager {
    fn connect_to(&self) -> Result<DbConnection, r2d2::Error> {
        match &self.url {
            DatabaseUrl::Postgres(url) => {
                let mut conn = PgConnection::establish(url).map_err(r2d2::Error::ConnectionError)?;
                conn.set_instrumentation(Health::default());
                Ok(DbConnection::Postgres(conn))
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
                // log the thread lets grow past 262,144 pages (1 GiB).
                // The log file is cut back to 64 MiB when it starts over, rather than keep the
                // length it once reached under ingest (hundreds of megabytes).
                conn.batch_execute(
                    "PRAGMA busy_timeout = 10000; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
                     PRAGMA wal_autocheckpoint = 262144; PRAGMA journal_size_limit = 67108864;",
                )
                .map_err(r2d2::Error::QueryError)?;
                Ok(DbConnection::Sqlite(conn))
            }
        }
    }
}

impl ManageConnection for Manager {
    type Connection = DbConnection;
    type Error = r2d2::Error;

    fn connect(&self) -> Result<DbConnection, r2d2::Error> {
        let connected = self.connect_to();
        *self.reach.refused_at() = match &connected {
            Ok(_) => None,
            Err(_) => Some(Instant::now()),
        };
        connected
    }

    fn is_valid(&self, conn: &mut DbConnection) -> Result<(), r2d2::Error> {
        if health(conn).is_some_and(|health| health.answered_lately()) {
            return Ok(());
        }
        conn.batch_execute("SELECT 1").map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut DbConnection) -> bool {
        health(conn).is_some_and(|health| health.lost)
    }
}

/// What the pool knows of a PostgreSQL connection without asking the server, kept by diesel's
/// instrumentation hook as the connection's queries finish.
///
/// A connection is checked with a query when it leaves the pool, so that one the server dropped
/// (a restart, a failover, an idle timeout) is replaced rather than handed to a request. Under
/// load that check was a round trip on every checkout: four of a submission's eight statements
/// on the request path. A connection whose last query was answered within
/// [`Health::CHECKED_WITHIN`] is as good as checked and goes out as it is (the compromise
/// HikariCP makes); one whose query failed in a way that may mean the connection is gone is
/// thrown away when it comes back (`has_broken`), so at most the request that met the failure
/// sees it.
#[derive(Default)]
struct Health {
    answered: Option<Instant>,
    lost: bool,
}

impl Health {
    const CHECKED_WITHIN: Duration = Duration::from_millis(500);

    fn answered_lately(&self) -> bool {
        !self.lost && self.answered.is_some_and(|at| at.elapsed() < Self::CHECKED_WITHIN)
    }
}

impl Instrumentation for Health {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        use diesel::result::{DatabaseErrorKind as Kind, Error};
        if let InstrumentationEvent::FinishQuery { error, .. } = event {
            match error {
                None => self.answered = Some(Instant::now()),
                // A refusal of the data itself: the server answered.
                Some(Error::DatabaseError(
                    Kind::UniqueViolation
                    | Kind::ForeignKeyViolation
                    | Kind::NotNullViolation
                    | Kind::CheckViolation
                    | Kind::RestrictViolation
                    | Kind::ExclusionViolation
                    | Kind::SerializationFailure
                    | Kind::ReadOnlyTransaction,
                    _,
                ))
                | Some(Error::NotFound) => self.answered = Some(Instant::now()),
                // Anything else may have been the connection: do not trust it again.
                Some(_) => self.lost = true,
            }
        }
    }
}

fn health(conn: &mut DbConnection) -> Option<&mut Health> {
    match conn {
        DbConnection::Postgres(pg) => pg.instrumentation().downcast_mut::<Health>(),
        DbConnection::Sqlite(_) => None,
    }
}

/// The pool of connections; it dereferences to r2d2's pool, and also knows what its last
/// attempt to connect found.
#[derive(Clone)]
pub struct Pool {
    connections: r2d2::Pool<Manager>,
    reach: Arc<Reach>,
    url: DatabaseUrl,
}

impl Pool {
    /// The database file, when the database is embedded.
    pub fn sqlite_path(&self) -> Option<&std::path::Path> {
        match &self.url {
            DatabaseUrl::Sqlite(path) => Some(path),
            DatabaseUrl::Postgres(_) => None,
        }
    }
}

impl std::ops::Deref for Pool {
    type Target = r2d2::Pool<Manager>;

    fn deref(&self) -> &Self::Target {
        &self.connections
    }
}

/// How long, after a checkout found the database unreachable, checkouts fail at
/// once rather than wait: during an outage a request answers 503 in a moment. After that, one
/// request at a time waits to find out whether the database is back (the others still fail at
/// once), and the first connection made ends the outage for all.
const FAIL_FAST_FOR: Duration = Duration::from_secs(1);

/// The pool as requests use it: a checkout waits at most `wait`, and while the database is
/// known to be down (it failed within the last second) fails at once.
pub struct Database {
    pool: Pool,
    wait: Duration,
    failed_at: std::sync::Mutex<Option<Instant>>,
    /// A request is finding out whether the database is back.
    probing: std::sync::atomic::AtomicBool,
}

impl Database {
    pub fn new(pool: Pool, wait: Duration) -> Self {
        Database { pool, wait, failed_at: std::sync::Mutex::new(None), probing: Default::default() }
    }

    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    fn failed_at(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.failed_at.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A connection, or `Unavailable` after at most the wait (at once while the database is
    /// known to be down).
    pub fn conn(&self) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        use std::sync::atomic::Ordering;
        if self.refused_lately() {
            return Err(down());
        }
        let Some(at) = *self.failed_at() else { return self.checkout(self.wait) };
        if at.elapsed() < FAIL_FAST_FOR || self.probing.swap(true, Ordering::AcqRel) {
            return Err(down());
        }
        let probed = self.checkout(self.wait);
        self.probing.store(false, Ordering::Release);
        probed
    }

    /// A connection within `wait` (at most the usual wait), for the readiness check: it fails at
    /// once while the database is known to be down, and otherwise finds out, also whether an
    /// outage has ended.
    pub fn probe(&self, wait: Duration) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        if self.refused_lately() || self.failed_at().is_some_and(|at| at.elapsed() < FAIL_FAST_FOR) {
            return Err(down());
        }
        self.checkout(wait.min(self.wait))
    }

    /// Whether the pool's last attempt to connect, within the last moment, was refused: the
    /// pool keeps trying in the background while requests wait, and a refusal takes a
    /// millisecond, so this knows of an outage long before a request's wait runs out.
    fn refused_lately(&self) -> bool {
        self.pool.reach.refused_at().is_some_and(|at| at.elapsed() < FAIL_FAST_FOR)
    }

    fn checkout(&self, wait: Duration) -> Result<r2d2::PooledConnection<Manager>, StoreError> {
        match self.pool.get_timeout(wait) {
            Ok(conn) => {
                if self.failed_at().is_some() {
                    *self.failed_at() = None;
                }
                Ok(conn)
            }
            Err(error) => {
                // Only a checkout that found no connection within the wait says the database is
                // down: a query that failed may have met one connection the server dropped.
                *self.failed_at() = Some(Instant::now());
                Err(StoreError::Unavailable(format!("connection pool: {error}")))
            }
        }
    }
}

fn down() -> StoreError {
    StoreError::Unavailable("the database did not answer a moment ago".into())
}

/// How long a start waits for the database to answer (it may be starting too).
pub const START_WAIT: Duration = Duration::from_secs(10);

/// The longest pause between two attempts to connect while the database does not answer
/// (r2d2 waits half its connection timeout at most): how soon after an outage the pool
/// notices that the database is back.
const RECONNECT_WITHIN: Duration = Duration::from_millis(500);

/// A pool of connections to `url`, at most `size` of them.
pub fn pool(url: &DatabaseUrl, size: u32) -> Result<Pool, StoreError> {
    if let DatabaseUrl::Sqlite(path) = url {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            let _ = std::fs::create_dir_all(parent);
        }
        // WAL is a property of the file: set it once, before the pool opens its connections
        // side by side (switching modes concurrently fails with "database is locked").
        let mut conn = SqliteConnection::establish(&path.to_string_lossy())
            .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
        // SQLite's default 4 KiB pages: 16 KiB pages packed audit events (about 2 KiB each) twice
        // as densely and sped up `audit verify`, but cost reads 10-15 % and ingest 20 %.
        conn.batch_execute("PRAGMA busy_timeout = 10000; PRAGMA journal_mode = WAL;")?;
    }
    let reach = Arc::new(Reach::default());
    r2d2::Pool::builder()
        // A pooled SQLite connection is a handle on a local file: there is no server connection
        // to lose, so checking it with a query at every checkout only costs a statement parse.
        .test_on_check_out(!matches!(url, DatabaseUrl::Sqlite(_)))
        .max_size(size)
        .connection_timeout(RECONNECT_WITHIN * 2)
        .build(Manager { url: url.clone(), reach: reach.clone() })
        .map(|connections| Pool { connections, reach, url: url.clone() })
        .map_err(|e| StoreError::Unavailable(e.to_string()))
}

/// Applies the pending migrations of the connection's backend; returns how many ran.
pub fn migrate(conn: &mut DbConnection) -> Result<usize, StoreError> {
    let applied = match conn {
        DbConnection::Postgres(pg) => pg.run_pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        DbConnection::Sqlite(sqlite) => sqlite.run_pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
    };
    applied.map_err(|e| StoreError::Migration(e.to_string()))
}

/// The writer's transaction, in which `work` runs: committed when it succeeds, rolled back when
/// it fails. On SQLite it begins `IMMEDIATE`, taking the write lock (waiting for it under the
/// busy timeout) before it reads the audit head: a deferred transaction that reads and then
/// writes cannot wait, and fails with "database is locked" if any other connection wrote in
/// between (`vaitio migrate`, another process on the same file); that failure would refuse
/// every read in the group with 503.
pub(crate) fn write_transaction<T>(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?,
        DbConnection::Postgres(_) => Manager::begin_transaction(conn)?,
    }
    match work(conn) {
        Ok(done) => {
            Manager::commit_transaction(conn)?;
            Ok(done)
        }
        Err(error) => {
            // The work's error says more than a failed rollback would; a connection left in a
            // transaction is dropped by the caller.
            let _ = Manager::rollback_transaction(conn);
            Err(error)
        }
    }
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

    /// The bundled SQLite is built with the options `.cargo/config.toml` declares, and the
    /// connections of a pool run with the settings `Manager::connect` gives them.
    #[test]
    fn sqlite_runs_as_declared() {
        #[derive(diesel::QueryableByName, Debug)]
        struct Answer {
            #[diesel(sql_type = diesel::sql_types::Text)]
            answer: String,
        }
        let dir = tempfile::tempdir().unwrap();
        let pool = pool(&DatabaseUrl::Sqlite(dir.path().join("options.db")), 1).unwrap();
        let mut conn = pool.get().unwrap();
        let DbConnection::Sqlite(sqlite) = &mut *conn else { unreachable!() };
        let mut ask = |sql: &str| -> String {
            diesel::RunQueryDsl::get_result::<Answer>(diesel::sql_query(sql), sqlite).unwrap().answer
        };
        // sqlite_compileoption_used() is sqlite3_compileoption_used() in SQL.
        assert_eq!(ask("SELECT CAST(sqlite_compileoption_used('DEFAULT_MEMSTATUS=0') AS TEXT) AS answer"), "1");
        assert_eq!(ask("SELECT CAST(sqlite_compileoption_used('ENABLE_MEMORY_MANAGEMENT') AS TEXT) AS answer"), "0");
        assert_eq!(ask("SELECT CAST(sqlite_compileoption_used('THREADSAFE=1') AS TEXT) AS answer"), "1");
        assert_eq!(ask("SELECT CAST(sqlite_compileoption_used('DEFAULT_PCACHE_INITSZ=256') AS TEXT) AS answer"), "1");
        assert_eq!(ask("SELECT journal_mode AS answer FROM pragma_journal_mode"), "wal");
        // NORMAL is 1.
        assert_eq!(ask("SELECT CAST(synchronous AS TEXT) AS answer FROM pragma_synchronous"), "1");
        assert_eq!(ask("SELECT CAST(foreign_keys AS TEXT) AS answer FROM pragma_foreign_keys"), "1");
        assert_eq!(ask("SELECT CAST(journal_size_limit AS TEXT) AS answer FROM pragma_journal_size_limit"), "67108864");
    }

    #[test]
    fn passwords_are_redacted() {
        let url = DatabaseUrl::parse("postgres://vaitio:s3cret@db.internal:5432/vaitio").unwrap();
        assert_eq!(url.redacted(), "postgres://vaitio@db.internal:5432/vaitio");
    }
}
