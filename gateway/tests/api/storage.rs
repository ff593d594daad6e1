//! What a stolen database would hold: no HETU, no name, no note text, on either backend.

use std::process::Command;

use super::support::*;

fn pg_dump() -> String {
    if let Ok(path) = std::env::var("VAITIO_TEST_PG_BIN") {
        return format!("{path}/pg_dump");
    }
    "pg_dump".into()
}

/// The raw bytes of the database: the SQLite file and its write-ahead log, or pg_dump's output.
fn raw_database(gateway: &TestGateway) -> Vec<u8> {
    match gateway.backend {
        Backend::Sqlite => {
            let store::db::DatabaseUrl::Sqlite(path) = &gateway.config.database else { unreachable!() };
            let mut bytes = std::fs::read(path).unwrap();
            let wal = path.with_extension("sqlite3-wal");
            if let Ok(wal) = std::fs::read(&wal) {
                bytes.extend(wal);
            }
            assert!(bytes.len() > 4096, "the SQLite file is unexpectedly small");
            bytes
        }
        Backend::Postgres => {
            let admin = postgres_admin_url().unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            let database = gateway.database.as_ref().unwrap();
            let output = Command::new(pg_dump())
                .arg("--no-owner")
                .arg(format!("--dbname={base}/{database}"))
                .output()
                .expect("pg_dump runs (set VAITIO_TEST_PG_BIN to its folder)");
            assert!(output.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&output.stderr));
            assert!(String::from_utf8_lossy(&output.stdout).contains("COPY public.resource_versions"));
            output.stdout
        }
    }
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|window| window == needle.as_bytes())
}

on_both_backends! {
    fn a_database_dump_holds_no_plaintext(gateway) {
        let patient_id = gateway.create(&patient(HETU));
        gateway.create(&encounter(&patient_id, "2026-01-10"));
        let composition = gateway.create(&note_composition(&patient_id, NOTE));
        // Searching by HETU must not leave it behind either.
        let found = gateway.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{HETU}"));
        assert_eq!(found.json().unwrap()["total"], 1);
        // The API gives it all back, so the strings are real and the check below can fail.
        let read = gateway.get(&format!("/Composition/{composition}")).text();
        assert!(read.contains(NOTE));
        let read = gateway.get(&format!("/Patient/{patient_id}")).text();
        assert!(read.contains(HETU) && read.contains(FAMILY) && read.contains(GIVEN));

        let raw = raw_database(&gateway);
        for secret in [HETU, "131052", FAMILY, GIVEN, NOTE, "nightmares"] {
            assert!(!contains(&raw, secret), "the raw {:?} database holds {secret:?}", gateway.backend);
        }
        // What it does hold is ciphertext and pseudonyms: the rows are there.
        assert!(contains(&raw, &patient_id));
    }

    fn a_ciphertext_moved_to_another_row_does_not_open(gateway) {
        let patient_id = gateway.create(&patient(HETU));
        let first = gateway.create(&encounter(&patient_id, "2026-01-10"));
        let second = gateway.create(&encounter(&patient_id, "2026-02-10"));
        // Copy the first encounter's sealed body over the second's, as an attacker with write
        // access to the database could.
        let sql = format!(
            "UPDATE resource_versions SET body = (SELECT body FROM resource_versions WHERE id = '{first}') WHERE id = '{second}'"
        );
        match gateway.backend {
            Backend::Sqlite => {
                use diesel::{Connection, RunQueryDsl};
                let store::db::DatabaseUrl::Sqlite(path) = &gateway.config.database else { unreachable!() };
                let mut conn = diesel::sqlite::SqliteConnection::establish(&path.to_string_lossy()).unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap();
            }
            Backend::Postgres => {
                use diesel::{Connection, RunQueryDsl};
                let store::db::DatabaseUrl::Postgres(url) = &gateway.config.database else { unreachable!() };
                let mut conn = diesel::pg::PgConnection::establish(url).unwrap();
                diesel::sql_query(sql).execute(&mut conn).unwrap();
            }
        }
        assert_eq!(gateway.get(&format!("/Encounter/{first}")).status, 200);
        let moved = gateway.get(&format!("/Encounter/{second}"));
        assert_eq!(moved.status, 500, "{}", moved.text());
        assert!(moved.is_operation_outcome());
        assert!(!moved.text().contains("2026-01-10"), "the moved body leaked");
    }
}

on_both_backends! {
    fn a_row_relabelled_in_the_database_does_not_open_for_anyone(gateway) {
        use diesel::connection::SimpleConnection;
        let patient_id = gateway.create(&patient(HETU));
        let note = gateway.create(&note_composition(&patient_id, NOTE));
        let gp = gateway.professional(ORG, "10055555555", "physician");
        assert_eq!(gp.get(&format!("/Composition/{note}")).unwrap().status, 404);
        // Someone with the database strips the note's labels, in the head and every version.
        gateway
            .database()
            .batch_execute(&format!(
                "UPDATE resource_heads SET security_labels = '' WHERE id = '{note}'; \
                 UPDATE resource_versions SET security_labels = '' WHERE id = '{note}';"
            ))
            .unwrap();
        // The decision now says yes, but the body was sealed with its labels: it does not open.
        for client in [&gp, &gateway.client] {
            let answer = client.get(&format!("/Composition/{note}")).unwrap();
            assert_ne!(answer.status, 200, "{}", answer.text());
            assert!(answer.is_operation_outcome());
            assert!(!answer.text().contains(NOTE));
        }
        let search = gp.get(&format!("/Composition?patient={patient_id}")).unwrap();
        assert!(!search.text().contains(NOTE));
    }
}

/// A connection the server dropped (a restart, a failover) is not handed out again. A pooled
/// connection that answered within the last half second leaves the pool unchecked, so right
/// after the server drops every session each connection may fail the one request that meets
/// it, and is then replaced; a connection idle for longer is checked on the way out, and a dead
/// one is replaced before any request sees it.
#[test]
fn connections_the_server_dropped_are_replaced() {
    let Some(admin_url) = postgres_or_skip() else { return };
    let gateway = TestGateway::spawn(Backend::Postgres).unwrap();
    let database = gateway.database.clone().unwrap();
    let patient_id = gateway.create(&patient(HETU));
    let read = || gateway.get(&format!("/Patient/{patient_id}")).status;
    assert_eq!(read(), 200);
    let drop_sessions = || {
        use diesel::Connection;
        let mut admin = diesel::pg::PgConnection::establish(&admin_url).unwrap();
        diesel::sql_query(format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{database}' AND pid <> pg_backend_pid()"
        ))
        .execute(&mut admin)
        .unwrap();
    };
    use diesel::RunQueryDsl;

    // At once: at most one failure per connection (the pool's four and the writer's).
    drop_sessions();
    let statuses: Vec<u16> = (0..20).map(|_| read()).collect();
    let failed = statuses.iter().filter(|status| **status != 200).count();
    assert!(failed <= 5, "{statuses:?}");
    assert!(statuses[10..].iter().all(|status| *status == 200), "{statuses:?}");

    // After a pause: the pooled connections are checked and replaced unseen; only the
    // writer's, held between groups, fails its next group once.
    drop_sessions();
    std::thread::sleep(std::time::Duration::from_millis(700));
    let statuses: Vec<u16> = (0..10).map(|_| read()).collect();
    assert!(statuses.iter().filter(|status| **status != 200).count() <= 1, "{statuses:?}");
    assert!(statuses[2..].iter().all(|status| *status == 200), "{statuses:?}");
    assert_eq!(gateway.post("/Encounter", &encounter(&patient_id, "2026-04-02")).status, 201);
}
