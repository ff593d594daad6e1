//! How long a rotation of the key-encryption key takes over many data keys: fills a database
//! with `N` data keys wrapped by version 1 (key files), then rewraps them all under version 2 as
//! `vaitio keys rotate-kek` does, batch by batch, and prints the rate.
//!
//! ```sh
//! cargo run --release -p store --example kek_rotation -- 1000000            # SQLite in a temp folder
//! cargo run --release -p store --example kek_rotation -- 1000000 postgres://postgres@127.0.0.1:55499/bench
//! ```
//!
//! The wait for gateways to read the new version (`KekRotation::finish`) is not timed: with no
//! gateway running it only adds its fixed six seconds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use store::crypto::DataKey;
use store::db::schema::data_keys;
use store::db::{pool, DatabaseUrl, DbConnection};
use store::kek::{KekCustody, KeyFiles};
use store::rotation::{KekRotation, REWRAP_BATCH};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(100_000);
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = match args.next() {
        Some(url) => DatabaseUrl::parse(&url).expect("a database URL"),
        None => DatabaseUrl::Sqlite(dir.path().join("rotation.sqlite3")),
    };
    let pool = pool(&url, 2).expect("the database");
    store::db::migrate(&mut pool.get().expect("a connection")).expect("migrations");
    let files = KeyFiles::new(&dir.path().join("kek.hex"));
    let first = files.create(1).expect("version 1");

    let started = Instant::now();
    let mut conn = pool.get().expect("a connection");
    let now = 0i64;
    for chunk in (0..count).collect::<Vec<_>>().chunks(10_000) {
        let rows: Vec<_> = chunk
            .iter()
            .map(|n| {
                let scope = format!("{n:064x}");
                let wrapped = first.wrap(&scope, &DataKey::generate().expect("a key")).expect("wrapped");
                (
                    data_keys::scope.eq(scope),
                    data_keys::kek_id.eq(first.id().to_owned()),
                    data_keys::wrapped_key.eq(wrapped),
                    data_keys::created_at.eq(now),
                )
            })
            .collect();
        match &mut *conn {
            DbConnection::Sqlite(c) => c.transaction(|c| {
                for row in rows {
                    diesel::insert_into(data_keys::table).values(row).execute(c)?;
                }
                diesel::QueryResult::Ok(())
            }),
            DbConnection::Postgres(c) => diesel::insert_into(data_keys::table).values(rows).execute(c).map(|_| ()),
        }
        .expect("data keys inserted");
    }
    drop(conn);
    println!("filled {count} data keys in {:.1} s ({})", started.elapsed().as_secs_f64(), url.redacted());

    let db = Arc::new(store::db::Database::new(pool, Duration::from_secs(10)));
    let rotation = KekRotation::new(db, Box::new(KeyFiles::new(&dir.path().join("kek.hex")))).expect("the rotation");
    let state = rotation.begin().expect("a new version");
    assert_eq!(state.remaining, count as u64);
    let started = Instant::now();
    let mut done = 0usize;
    while let Some(batch) = rotation.rewrap_batch(&state.target, REWRAP_BATCH).expect("a batch") {
        done += batch;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(done, count);
    assert_eq!(rotation.remaining(&state.target).expect("remaining"), 0);
    println!(
        "rotated {done} data keys to version {} in {seconds:.1} s: {:.0} data keys/s (batches of {REWRAP_BATCH})",
        state.target.version,
        done as f64 / seconds
    );
}
