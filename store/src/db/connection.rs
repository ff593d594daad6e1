//! The connection enum over both backends. It lives in its own module: diesel's
//! `MultiConnection` derive generates items that clash with names elsewhere (an actix handler of
//! the same name broke it once).

use diesel::pg::PgConnection;
use diesel::sqlite::SqliteConnection;

#[derive(diesel::MultiConnection)]
pub enum DbConnection {
    Postgres(PgConnection),
    Sqlite(SqliteConnection),
}
