//! The audit log on both backends: what each route records, what patients and auditors read,
//! tampering found and named by position, fail-closed writes and reads, and two gateway nodes
//! appending to one log.

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::RunQueryDsl;
use serde_json::json;
use store::db::DbConnection;
use vaitio_conformance::client::Client;

use super::submission::{record, submit};
use super::support::*;

const GP: &str = "10055555555";
const EMERGENCY_DOCTOR: &str = "10066666666";
const OTHER_HETU: &str = "010101A900R";

/// A gateway that signs a checkpoint every 5 entries or 100 ms, so tests need not wait.
fn audited(backend: Backend) -> Option<TestGateway> {
    TestGateway::spawn_with(backend, |config| {
        config.audit_checkpoint_entries = 5;
        config.audit_checkpoint_millis = 100;
    })
}

/// Waits until every entry is covered by a signed checkpoint; returns the verification.
fn signed(gateway: &TestGateway) -> audit_log::Verified {
    let started = Instant::now();
    loop {
        let verified = gateway.verify_audit_log().expect("the log verifies");
        if verified.unsigned_tail() == 0 || started.elapsed() > Duration::from_secs(10) {
            return verified;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The actions of the entries after `after`, in log order.
fn actions_after(gateway: &TestGateway, after: i64) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        action: String,
    }
    let rows: Vec<Row> =
        diesel::sql_query(format!("SELECT action FROM audit_entries WHERE seq > {after} ORDER BY seq"))
            .load(&mut *gateway.database())
            .unwrap();
    rows.into_iter().map(|r| r.action).collect()
}

fn last_seq(gateway: &TestGateway) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        last: i64,
    }
    let rows: Vec<Row> = diesel::sql_query("SELECT COALESCE(MAX(seq), -1) AS last FROM audit_entries")
        .load(&mut *gateway.database())
        .unwrap();
    rows[0].last
}

fn emergency_doctor(gateway: &TestGateway) -> Client {
    let cert = gateway.org_certificate(OTHER_ORG);
    let mut claims = gateway.claims("physician", Some(OTHER_ORG), EMERGENCY_DOCTOR, Some(&cert.0));
    claims.purpose = Some("BTG".into());
    claims.reason = Some("unconscious on arrival".into());
    gateway.client_with(Some(cert), Some(gateway.token(&claims)))
}

/// A stored row of the log, to put back after a tampering case.
#[derive(diesel::QueryableByName, Clone)]
struct EntryRow {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    recorded: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    action: String,
    #[diesel(sql_type = diesel::sql_types::Binary)]
    event: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Binary)]
    leaf: Vec<u8>,
    #[diesel(sql_type = diesel::sql_types::Binary)]
    prev: Vec<u8>,
}

fn rows(conn: &mut DbConnection, condition: &str) -> Vec<EntryRow> {
    diesel::sql_query(format!(
        "SELECT seq, recorded, action, event, leaf, prev FROM audit_entries WHERE {condition} ORDER BY seq"
    ))
    .load(conn)
    .unwrap()
}

fn bytes(backend: Backend, value: &[u8]) -> String {
    match backend {
        Backend::Sqlite => format!("X'{}'", hex::encode(value)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(value)),
    }
}

fn put_back(conn: &mut DbConnection, backend: Backend, row: &EntryRow) {
    conn.batch_execute(&format!(
        "INSERT INTO audit_entries (seq, recorded, action, event, leaf, prev) VALUES ({}, {}, '{}', {}, {}, {})",
        row.seq,
        row.recorded,
        row.action,
        bytes(backend, &row.event),
        bytes(backend, &row.leaf),
        bytes(backend, &row.prev)
    ))
    .unwrap();
}

/// Lifts the insert-only protection, as an attacker with the database's owner would.
fn lift_protection(conn: &mut DbConnection, backend: Backend) {
    conn.batch_execute(match backend {
        Backend::Sqlite => {
            "DROP TRIGGER audit_entries_no_update; DROP TRIGGER audit_entries_no_delete; \
             DROP TRIGGER audit_checkpoints_no_update; DROP TRIGGER audit_checkpoints_no_delete;"
        }
        Backend::Postgres => {
            "ALTER TABLE audit_entries DISABLE TRIGGER USER; ALTER TABLE audit_checkpoints DISABLE TRIGGER USER;"
        }
    })
    .unwrap();
}

fn problem(gateway: &TestGateway) -> audit_log::Problem {
    gateway.verify_audit_log().expect_err("the tampering goes unnoticed")
}

on_both_backends! {
    fn a_graceful_stop_signs_the_logs_tail(gateway) {
        let mut gateway = gateway;
        // Checkpoints every 1,000 entries or 10 seconds (the default): these few stay unsigned
        // until the stop signs them.
        let id = gateway.create(&patient(HETU));
        assert_eq!(gateway.get(&format!("/Patient/{id}")).status, 200);
        assert!(gateway.verify_audit_log().expect("the log verifies").unsigned_tail() > 0);
        gateway.stop();
        let verified = gateway.verify_audit_log().expect("the log verifies");
        assert_eq!(verified.unsigned_tail(), 0, "the tail is signed at the stop");
        assert_eq!(verified.entries as i64, last_seq(&gateway) + 1);
    }

    fn each_route_records_exactly_its_events(gateway) {
        let patient_id = gateway.create(&patient(HETU));
        let visit = gateway.create(&encounter(&patient_id, "2026-03-02"));
        let note = gateway.create(&note_composition(&patient_id, NOTE));
        let gp = gateway.professional(ORG, GP, "physician");
        let me = gateway.patient(HETU);
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let anonymous = gateway.client_with(None, None);
        let consent = json!({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient_id}")}, "dateTime": "2026-11-01T10:00:00+02:00",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": {"type": "deny", "actor": [{"role": {"coding": [{"system": "https://fhir.vaitio.fi/CodeSystem/professional-role", "code": "nurse"}]}, "reference": {"display": "any nurse"}}]}
        });
        let mut visit_update = gateway.get(&format!("/Encounter/{visit}")).json().unwrap();
        visit_update["status"] = json!("in-progress");
        let mut document = record();
        document["record_id"] = json!("EMR-AUDIT-1");
        let mut imported = record();
        imported["record_id"] = json!("EMR-AUDIT-2");
        let imported = format!("{imported}\n");

        let client = &gateway.client;
        let operator = gateway.operator();
        let form = |path: &str, body: &str| {
            client.send("POST", path, &[("Content-Type", "application/x-www-form-urlencoded")], Some(body.as_bytes())).unwrap().status
        };
        // Each step names the route it must reach (method and pattern, as `ROUTES` has them);
        // `/metrics` counts requests by route, which confirms it did.
        type Step<'a> = (&'a str, &'a str, &'a str, Box<dyn Fn() -> u16 + 'a>, &'a [&'a str]);
        let steps: Vec<Step<'_>> = vec![
            ("capabilities", "get", "/metadata", Box::new(|| gateway.get("/metadata").status), &[]),
            ("health", "get", "/health", Box::new(|| gateway.get("/health").status), &[]),
            ("liveness", "get", "/health/live", Box::new(|| gateway.get("/health/live").status), &[]),
            ("readiness", "get", "/health/ready", Box::new(|| gateway.get("/health/ready").status), &[]),
            ("metrics", "get", "/metrics", Box::new(|| operator.get("/metrics").unwrap().status), &[]),
            ("record schema", "get", "/psychotherapy-records/schema", Box::new(|| gateway.get("/psychotherapy-records/schema").status), &[]),
            ("read", "get", "/{type}/{id}", Box::new(|| gateway.get(&format!("/Encounter/{visit}")).status), &["read"]),
            ("vread", "get", "/{type}/{id}/_history/{vid}", Box::new(|| gateway.get(&format!("/Encounter/{visit}/_history/1")).status), &["vread"]),
            ("history", "get", "/{type}/{id}/_history", Box::new(|| gateway.get(&format!("/Encounter/{visit}/_history")).status), &["history"]),
            ("search", "get", "/{type}", Box::new(|| gateway.get(&format!("/Encounter?patient={patient_id}")).status), &["search"]),
            ("search by GET _search", "get", "/{type}/_search", Box::new(|| gateway.get(&format!("/Encounter/_search?patient={patient_id}")).status), &["search"]),
            ("search by POST _search", "post", "/{type}/_search", Box::new(|| form("/Encounter/_search", &format!("patient={patient_id}"))), &["search"]),
            ("everything", "get", "/Patient/{id}/$everything", Box::new(|| gateway.get(&format!("/Patient/{patient_id}/$everything")).status), &["search"]),
            ("absent", "get", "/{type}/{id}", Box::new(|| gateway.get("/Encounter/no-such-id").status), &["read"]),
            ("create", "post", "/{type}", Box::new(|| gateway.post("/Encounter", &encounter(&patient_id, "2026-03-09")).status), &["create"]),
            ("update", "put", "/{type}/{id}", Box::new(|| gateway.put(&format!("/Encounter/{visit}"), &visit_update, None).status), &["update"]),
            ("submission", "post", "/psychotherapy-records", Box::new(|| submit(&gateway.client, &document).status), &["submission"]),
            ("import", "post", "/psychotherapy-records/$import", Box::new(|| client.send("POST", "/psychotherapy-records/$import", &[("Content-Type", "application/x-ndjson")], Some(imported.as_bytes())).unwrap().status), &["submission"]),
            ("validate", "post", "/$validate", Box::new(|| gateway.post("/$validate", &patient(HETU)).status), &["validate"]),
            ("validate a type", "post", "/{type}/$validate", Box::new(|| gateway.post("/Patient/$validate", &patient(HETU)).status), &["validate"]),
            ("note withheld from a GP", "get", "/{type}/{id}", Box::new(|| gp.get(&format!("/Composition/{note}")).unwrap().status), &["consent-decision"]),
            ("consent change", "post", "/{type}", Box::new(|| me.post_json("/Consent", &consent).unwrap().status), &["consent-change"]),
            ("a patient's log", "get", "/AuditEvent", Box::new(|| me.get("/AuditEvent").unwrap().status), &["search"]),
            ("an auditor's search", "get", "/AuditEvent", Box::new(|| auditor.get("/AuditEvent?agent=10012345678").unwrap().status), &["search"]),
            ("an auditor's alerts", "get", "/access-alerts", Box::new(|| auditor.get("/access-alerts").unwrap().status), &["unusual-access"]),
            ("clearing no alert", "post", "/access-alerts/{id}/$clear", Box::new(|| auditor.post_json("/access-alerts/no-such-alert/$clear", &json!({"reason": "checked"})).unwrap().status), &["unusual-access"]),
            ("refused authentication", "get", "/{type}", Box::new(|| anonymous.get("/Patient").unwrap().status), &["authentication-refused"]),
        ];
        // The walk covers the route table: a route added without a step here fails.
        for (pattern, methods) in vaitio::app::ROUTES {
            for method in *methods {
                assert!(
                    steps.iter().any(|(_, m, p, _, _)| m == method && p == pattern),
                    "no step of this test reaches {method} {pattern}: say which audit events it writes"
                );
            }
        }
        let requests = |method: &str, pattern: &str| -> u64 {
            let label = format!("vaitio_http_requests_total{{method=\"{}\",route=\"{pattern}\",", method.to_uppercase());
            operator.get("/metrics").unwrap().text().lines()
                .filter(|line| line.starts_with(&label))
                .map(|line| line.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum()
        };
        for (name, method, pattern, step, expected) in &steps {
            let (before, counted) = (last_seq(&gateway), requests(method, pattern));
            let status = step();
            assert!(status < 500, "{name}: HTTP {status}");
            assert!(requests(method, pattern) > counted, "{name} did not reach {method} {pattern}");
            assert_eq!(actions_after(&gateway, before), *expected, "{name}");
        }
    }

    fn patients_and_auditors_read_the_log_and_it_verifies(gateway) {
        let gateway = audited(gateway.backend).unwrap();
        let filed = submit(&gateway.client, &record());
        assert_eq!(filed.status, 201, "{}", filed.text());
        let document = filed.json().unwrap()["id"].as_str().unwrap().to_owned();
        let patient_id = filed.json().unwrap()["entry"][1]["fullUrl"].as_str().unwrap().trim_start_matches("urn:uuid:").to_owned();
        let visit = gateway.create(&encounter(&patient_id, "2026-03-02"));
        // A GP is refused the note; an emergency doctor opens the visit.
        assert_eq!(gateway.professional(ORG, GP, "physician").get(&format!("/Bundle/{document}")).unwrap().status, 404);
        assert_eq!(emergency_doctor(&gateway).get(&format!("/Encounter/{visit}")).unwrap().status, 200);

        let me = gateway.patient(HETU);
        let stranger = gateway.patient(OTHER_HETU);
        assert_eq!(stranger.get("/AuditEvent").unwrap().json().unwrap()["total"], 0, "another patient's log is empty");
        let log = me.get("/AuditEvent?_count=100").unwrap();
        assert_eq!(log.status, 200, "{}", log.text());
        let log = log.json().unwrap();
        let events = log["entry"].as_array().unwrap();
        let recorded: Vec<&str> = events.iter().map(|e| e["resource"]["recorded"].as_str().unwrap()).collect();
        assert!(recorded.windows(2).all(|w| w[0] >= w[1]), "newest first: {recorded:?}");
        // A patient's ids say nothing of where the entries stand in the whole log (how far that
        // moves across someone's request would say what it found); each finds its entry again.
        let ids: Vec<&str> = events.iter().map(|e| e["resource"]["id"].as_str().unwrap()).collect();
        assert!(ids.iter().all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit())), "{ids:?}");
        let one = me.get(&format!("/AuditEvent?_id={}", ids[1])).unwrap().json().unwrap();
        assert_eq!((one["total"].as_u64(), one["entry"][0]["resource"]["id"].as_str()), (Some(1), Some(ids[1])), "{one}");
        let by_position = me.get(&format!("/AuditEvent?_id={}", last_seq(&gateway))).unwrap().json().unwrap();
        assert_eq!(by_position["total"], 0, "{by_position}");
        let text = log.to_string();
        assert!(text.contains(GP) && text.contains("\"deny\""), "the GP's refused access is in the patient's log");
        assert!(text.contains(EMERGENCY_DOCTOR) && text.contains("BTG") && text.contains("unconscious on arrival"), "break-the-glass with its reason");
        assert!(text.contains(OTHER_ORG), "the organisation of the access");
        for forbidden in [NOTE, FAMILY, GIVEN, HETU] {
            assert!(!text.contains(forbidden), "the log holds {forbidden:?}");
        }
        // Paged.
        let page = me.get("/AuditEvent?_count=2").unwrap().json().unwrap();
        assert_eq!(page["entry"].as_array().unwrap().len(), 2);
        assert!(page["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
        // A patient asking for someone else's entries gets none.
        let hers = stranger.get(&format!("/AuditEvent?patient={patient_id}")).unwrap().json().unwrap();
        assert_eq!(hers["total"], 0);

        // The auditor searches everything, and receives no clinical content.
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let by_agent = auditor.get(&format!("/AuditEvent?agent={GP}")).unwrap().json().unwrap();
        assert!(by_agent["total"].as_u64().unwrap() >= 1);
        assert!(by_agent["entry"][0]["resource"]["id"].as_str().unwrap().parse::<u64>().is_ok(), "an auditor sees positions");
        let by_patient = auditor.get(&format!("/AuditEvent?patient:identifier=urn:oid:1.2.246.21|{HETU}")).unwrap().json().unwrap();
        assert!(by_patient["total"].as_u64().unwrap() >= 4, "{by_patient}");
        let by_org = auditor.get(&format!("/AuditEvent?organization={OTHER_ORG}&date=ge2026-01-01")).unwrap().json().unwrap();
        assert!(by_org["total"].as_u64().unwrap() >= 1);
        let everything = auditor.get("/AuditEvent?_count=100").unwrap().text();
        for forbidden in [NOTE, FAMILY, GIVEN, HETU] {
            assert!(!everything.contains(forbidden), "the auditor's view holds {forbidden:?}");
        }
        // Nobody else reads the log.
        assert_eq!(gateway.client.get("/AuditEvent").unwrap().status, 403);
        assert_eq!(gateway.professional(ORG, "admin-1", "administrator").get("/AuditEvent").unwrap().status, 403);

        let verified = signed(&gateway);
        assert_eq!(verified.entries as i64, last_seq(&gateway) + 1);
        assert!(verified.checkpoints >= 1);
    }

    fn tampering_is_found_and_named_by_position(gateway) {
        let gateway = audited(gateway.backend).unwrap();
        let patient_id = gateway.create(&patient(HETU));
        for _ in 0..30 {
            assert_eq!(gateway.get(&format!("/Patient/{patient_id}")).status, 200);
        }
        let verified = signed(&gateway);
        let size = verified.entries as i64;
        assert!(size >= 31);
        let backend = gateway.backend;
        let mut conn = gateway.database();
        // The gateway's own connection cannot change or remove the log.
        assert!(conn.batch_execute("UPDATE audit_entries SET action = 'read' WHERE seq = 3").is_err());
        assert!(conn.batch_execute("DELETE FROM audit_entries WHERE seq = 3").is_err());
        assert!(conn.batch_execute("DELETE FROM audit_checkpoints").is_err());
        lift_protection(&mut conn, backend);
        // Positions drawn from the clock, away from the ends.
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as i64;
        let k = 2 + nanos % (size - 6);

        // Modified: one byte of one event.
        let original = rows(&mut conn, &format!("seq = {k}")).remove(0);
        let mut changed = original.event.clone();
        let at = changed.iter().position(|b| *b == b'"').unwrap() + 1;
        changed[at] ^= 0x01;
        conn.batch_execute(&format!("UPDATE audit_entries SET event = {} WHERE seq = {k}", bytes(backend, &changed))).unwrap();
        let found = problem(&gateway);
        assert_eq!(found.position(), Some(k as u64), "{found}");
        assert!(found.to_string().contains("modified"), "{found}");
        conn.batch_execute(&format!("UPDATE audit_entries SET event = {} WHERE seq = {k}", bytes(backend, &original.event))).unwrap();
        gateway.verify_audit_log().expect("restored");

        // Missing: one entry deleted.
        conn.batch_execute(&format!("DELETE FROM audit_entries WHERE seq = {k}")).unwrap();
        let found = problem(&gateway);
        assert_eq!(found.position(), Some(k as u64), "{found}");
        assert!(found.to_string().contains("missing"), "{found}");
        put_back(&mut conn, backend, &original);
        gateway.verify_audit_log().expect("restored");

        // Swapped: two neighbours exchange their contents.
        let pair = rows(&mut conn, &format!("seq IN ({k}, {})", k + 1));
        for (row, other) in [(&pair[0], &pair[1]), (&pair[1], &pair[0])] {
            conn.batch_execute(&format!(
                "UPDATE audit_entries SET event = {}, leaf = {}, prev = {} WHERE seq = {}",
                bytes(backend, &other.event), bytes(backend, &other.leaf), bytes(backend, &other.prev), row.seq
            ))
            .unwrap();
        }
        let found = problem(&gateway);
        assert_eq!(found.position(), Some(k as u64), "{found}");
        for row in &pair {
            conn.batch_execute(&format!(
                "UPDATE audit_entries SET event = {}, leaf = {}, prev = {} WHERE seq = {}",
                bytes(backend, &row.event), bytes(backend, &row.leaf), bytes(backend, &row.prev), row.seq
            ))
            .unwrap();
        }
        gateway.verify_audit_log().expect("restored");

        // Truncated after a checkpoint: the tail removed.
        let cut = size - 3;
        let tail = rows(&mut conn, &format!("seq >= {cut}"));
        conn.batch_execute(&format!("DELETE FROM audit_entries WHERE seq >= {cut}")).unwrap();
        let found = problem(&gateway);
        assert_eq!(found.position(), Some(cut as u64), "{found}");
        assert!(found.to_string().contains("truncated"), "{found}");
        for row in &tail {
            put_back(&mut conn, backend, row);
        }
        gateway.verify_audit_log().expect("restored");

        // Forged: the latest checkpoint re-signed with a key of the attacker's.
        #[derive(diesel::QueryableByName)]
        struct Note {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            size: i64,
            #[diesel(sql_type = diesel::sql_types::Text)]
            note: String,
        }
        let latest: Note = diesel::sql_query("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
            .get_result(&mut *conn)
            .unwrap();
        let signed_note = audit_log::SignedCheckpoint::from_note(&latest.note).unwrap();
        let attacker = audit_log::SigningKey::from_pkey(
            store::audit::ORIGIN,
            openssl::pkey::PKey::generate_ed25519().unwrap(),
        )
        .unwrap();
        let forged = attacker.sign(signed_note.checkpoint().clone()).unwrap().to_note();
        conn.batch_execute(&format!("UPDATE audit_checkpoints SET note = '{forged}' WHERE size = {}", latest.size)).unwrap();
        let found = problem(&gateway);
        assert!(found.to_string().contains("not signed by the log's key"), "{found}");
        conn.batch_execute(&format!("UPDATE audit_checkpoints SET note = '{}' WHERE size = {}", latest.note, latest.size)).unwrap();
        gateway.verify_audit_log().expect("restored");
    }

    fn a_request_whose_audit_record_cannot_be_written_does_not_happen(gateway) {
        let patient_id = gateway.create(&patient(HETU));
        let count = |path: &str| gateway.get(path).json().unwrap()["total"].as_u64().unwrap();
        let encounters = count(&format!("/Encounter?patient={patient_id}"));
        let documents = count(&format!("/Bundle?patient={patient_id}"));
        let mut conn = gateway.database();
        conn.batch_execute(match gateway.backend {
            Backend::Sqlite => "CREATE TRIGGER audit_fails BEFORE INSERT ON audit_entries BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
            Backend::Postgres => "CREATE FUNCTION audit_fails() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'disk full'; END $$; \
                CREATE TRIGGER audit_fails BEFORE INSERT ON audit_entries FOR EACH ROW EXECUTE FUNCTION audit_fails();",
        })
        .unwrap();
        // A read: 503 with an OperationOutcome, and no data.
        let read = gateway.get(&format!("/Patient/{patient_id}"));
        assert_eq!(read.status, 503, "{}", read.text());
        assert!(read.is_operation_outcome());
        assert!(!read.text().contains(FAMILY));
        // Writes: refused, and nothing of them stays.
        assert_eq!(gateway.post("/Encounter", &encounter(&patient_id, "2026-04-01")).status, 503);
        let mut document = record();
        document["record_id"] = json!("EMR-FAIL-CLOSED");
        assert_eq!(submit(&gateway.client, &document).status, 503);
        conn.batch_execute("DROP TRIGGER audit_fails ON audit_entries").or_else(|_| conn.batch_execute("DROP TRIGGER audit_fails")).unwrap();
        assert_eq!(count(&format!("/Encounter?patient={patient_id}")), encounters);
        assert_eq!(count(&format!("/Bundle?patient={patient_id}")), documents);
        assert_eq!(gateway.get(&format!("/Patient/{patient_id}")).status, 200);
        gateway.verify_audit_log().expect("the log is whole");
    }
}

/// Two gateway nodes on one PostgreSQL append to one log: concurrent requests on both, then the
/// whole log verifies and holds every one of them.
#[test]
fn two_nodes_write_one_consistent_log() {
    let Some(first) = audited(Backend::Postgres) else { return };
    let second = first.second_node();
    let patient_id = first.create(&patient(HETU));
    let before = last_seq(&first);
    let clients =
        [first.client.reconnect(), first.client.reconnect(), second.client.reconnect(), second.client.reconnect()];
    std::thread::scope(|scope| {
        for client in &clients {
            let patient_id = &patient_id;
            scope.spawn(move || {
                for n in 0..25 {
                    if n % 5 == 0 {
                        let answer = client.post_json("/Encounter", &encounter(patient_id, "2026-05-01")).unwrap();
                        assert_eq!(answer.status, 201, "{}", answer.text());
                    } else {
                        assert_eq!(client.get(&format!("/Patient/{patient_id}")).unwrap().status, 200);
                    }
                }
            });
        }
    });
    let verified = signed(&first);
    assert_eq!(last_seq(&first) - before, 100, "one entry per request, from both nodes");
    assert_eq!(verified.entries as i64, last_seq(&first) + 1);
    assert_eq!(verified.unsigned_tail(), 0);
}

/// Fail closed on PostgreSQL when the gateway's role loses the right to append to the log (as
/// a database administrator revoking a grant would do): the gateway connects as an ordinary
/// role that owns its tables, the role's INSERT on `audit_entries` is revoked, and a read and a
/// write are refused with nothing kept.
#[test]
fn a_revoked_grant_on_the_log_refuses_requests() {
    let Some(admin_url) = postgres_or_skip() else { return };
    let role = format!("gateway_{}", uuid::Uuid::new_v4().simple());
    let (url, name) = fresh_postgres_database(&admin_url);
    use diesel::Connection;
    let mut admin = diesel::pg::PgConnection::establish(&admin_url).unwrap();
    admin.batch_execute(&format!("CREATE ROLE {role} LOGIN; ALTER DATABASE {name} OWNER TO {role};")).unwrap();
    // postgres://user@host:port/db: the same database, as the gateway's own role.
    let (scheme, rest) = url.split_once("://").unwrap();
    let at_host = rest.split_once('@').map_or(rest, |(_, host)| host);
    let as_role = format!("{scheme}://{role}@{at_host}");
    let gateway = TestGateway::spawn_with(Backend::Postgres, |config| {
        config.database = store::db::DatabaseUrl::parse(&as_role).unwrap();
        config.audit_checkpoint_entries = 5;
        config.audit_checkpoint_millis = 100;
    })
    .unwrap();
    let patient_id = gateway.create(&patient(HETU));
    let encounters = |gateway: &TestGateway| {
        gateway.get(&format!("/Encounter?patient={patient_id}")).json().unwrap()["total"].as_u64().unwrap()
    };
    let before = encounters(&gateway);
    let mut owner = diesel::pg::PgConnection::establish(&as_role).unwrap();
    owner.batch_execute(&format!("REVOKE INSERT ON audit_entries FROM {role}")).unwrap();

    let read = gateway.get(&format!("/Patient/{patient_id}"));
    assert_eq!(read.status, 503, "{}", read.text());
    assert!(read.is_operation_outcome() && !read.text().contains(FAMILY));
    assert_eq!(gateway.post("/Encounter", &encounter(&patient_id, "2026-04-02")).status, 503);

    owner.batch_execute(&format!("GRANT INSERT ON audit_entries TO {role}")).unwrap();
    assert_eq!(encounters(&gateway), before, "the refused create left nothing");
    assert_eq!(gateway.get(&format!("/Patient/{patient_id}")).status, 200);
    gateway.verify_audit_log().expect("the log is whole");
}
