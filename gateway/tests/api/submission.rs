//! Clinic submission: a record becomes a national document, idempotently, and bad records are
//! refused naming the field, on both backends.

use serde_json::{json, Value};
use vaitio_conformance::client::{Answer, Client};

use super::support::*;

pub fn record() -> Value {
    json!({
        "schema": "vaitio.psychotherapy-record/v1",
        "record_id": "EMR-2026-000123",
        "organization": { "oid": ORG, "name": "Example Therapy Clinic" },
        "patient": { "hetu": HETU, "given": [GIVEN], "family": FAMILY, "birth_date": "1952-10-13", "gender": "female" },
        "therapist": { "terhikki": THERAPIST, "given": ["Anna"], "family": "Korhonen", "profession": "psychotherapist" },
        "service_event": { "oid": "1.2.246.10.12345678.10.1.77.1", "start": "2026-01-10", "end": null },
        "session": { "start": "2026-03-02T14:00:00+02:00", "minutes": 45, "modality": "individual", "setting": "in_person" },
        "diagnoses": [ { "icd10": "F32.1", "primary": true } ],
        "assessments": [ { "instrument": "PHQ-9", "score": 14, "date": "2026-03-02" } ],
        "note": { "kind": "progress", "text": format!("{NOTE}\n</div><script>alert(1)</script>") },
        "risk": { "suicide": "low" },
        "plan": "Continue weekly sessions."
    })
}

pub fn submit(client: &Client, body: &Value) -> Answer {
    client
        .send(
            "POST",
            "/psychotherapy-records",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
        .unwrap()
}

fn refused(client: &Client, status: u16, change: impl FnOnce(&mut Value)) -> Value {
    let mut body = record();
    change(&mut body);
    let answer = submit(client, &body);
    assert_eq!(answer.status, status, "{}", answer.text());
    assert!(answer.is_operation_outcome());
    answer.json().unwrap()
}

fn expression(outcome: &Value) -> &str {
    outcome["issue"][0]["expression"][0].as_str().unwrap_or("")
}

on_both_backends! {
    fn a_record_becomes_one_versioned_document(gateway) {
        let therapist = &gateway.client;
        let created = submit(therapist, &record());
        assert_eq!(created.status, 201, "{}", created.text());
        let location = created.header("location").unwrap().to_owned();
        assert!(location.contains("/Bundle/") && location.ends_with("/_history/1"), "{location}");
        let document = created.json().unwrap();
        let id = document["id"].as_str().unwrap().to_owned();
        assert_eq!(document["type"], "document");
        assert_eq!(document["entry"][0]["resource"]["resourceType"], "Composition");
        let div = document["entry"][0]["resource"]["section"][0]["text"]["div"].as_str().unwrap();
        assert!(div.contains("&lt;script&gt;") && !div.contains("<script>"), "markup was not escaped: {div}");

        // The same record again: the same document, nothing new.
        let again = submit(therapist, &record());
        assert_eq!(again.status, 200, "{}", again.text());
        assert_eq!(again.json().unwrap()["id"], id.as_str());
        assert_eq!(again.header("etag"), Some("W/\"1\""));
        // A changed record: a new version; the old one stays in history.
        let mut changed = record();
        changed["plan"] = json!("Move to fortnightly sessions.");
        let updated = submit(therapist, &changed);
        assert_eq!(updated.status, 200, "{}", updated.text());
        assert_eq!(updated.header("etag"), Some("W/\"2\""));
        let history = therapist.get(&format!("/Bundle/{id}/_history")).unwrap().json().unwrap();
        assert_eq!(history["total"], 2);
        let first = therapist.get(&format!("/Bundle/{id}/_history/1")).unwrap().text();
        assert!(first.contains("Continue weekly sessions.") && !first.contains("fortnightly"));

        // Found by the patient's HETU; a note for its author and the patient, for no one else.
        let found = therapist.get(&format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{HETU}")).unwrap().json().unwrap();
        assert_eq!(found["total"], 1);
        assert_eq!(gateway.patient(HETU).get(&format!("/Bundle/{id}")).unwrap().status, 200);
        let gp = gateway.professional(ORG, "10088888888", "physician");
        assert_eq!(gp.get(&format!("/Bundle/{id}")).unwrap().status, 404);
        assert_eq!(gp.get(&format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{HETU}")).unwrap().json().unwrap()["total"], 0);
        // Another practitioner of the organisation cannot overwrite it.
        let colleague = gateway.professional(ORG, "10099999999", "psychotherapist");
        let mut theirs = record();
        theirs["therapist"]["terhikki"] = json!("10099999999");
        assert_eq!(submit(&colleague, &theirs).status, 403);
        // The try is in the patient's log, as a refused submission by the colleague.
        let log = gateway.patient(HETU).get("/AuditEvent?_count=100").unwrap().json().unwrap();
        let tried = log["entry"].as_array().unwrap().iter().map(|e| &e["resource"]).any(|r| {
            r.to_string().contains("10099999999") && r["outcome"] != "0" && r.to_string().contains(id.as_str())
        });
        assert!(tried, "{log}");
        assert_eq!(submit(&gateway.patient(HETU), &record()).status, 403);
        assert!(gateway.get("/psychotherapy-records/schema").json().unwrap()["properties"]["patient"].is_object());
    }

    fn bad_records_are_refused_naming_the_field_and_store_nothing(gateway) {
        let client = &gateway.client;
        let send = |content_type: &str, body: &[u8]| client.send("POST", "/psychotherapy-records", &[("Content-Type", content_type)], Some(body)).unwrap();
        assert_eq!(send("application/json", b"{not json").status, 400);
        assert_eq!(send("application/json", &[0xff, 0xfe, 0x7b]).status, 400);
        assert_eq!(send("text/plain", record().to_string().as_bytes()).status, 415);
        assert_eq!(expression(&refused(client, 400, |r| r["schema"] = json!("vaitio.psychotherapy-record/v2"))), "schema");
        assert_eq!(expression(&refused(client, 400, |r| r["patient"]["favourite_colour"] = json!("blue"))), "patient.favourite_colour");
        assert_eq!(expression(&refused(client, 400, |r| { r.as_object_mut().unwrap().remove("service_event"); })), "service_event");
        let wrong_hetu = refused(client, 422, |r| r["patient"]["hetu"] = json!("131052-308U"));
        assert_eq!(expression(&wrong_hetu), "patient.hetu");
        assert!(!wrong_hetu.to_string().contains("131052"), "the refusal echoes the HETU");
        let born_later = refused(client, 422, |r| {
            r["patient"]["hetu"] = json!("010199A9001");
            r["patient"].as_object_mut().unwrap().remove("birth_date");
        });
        assert_eq!(expression(&born_later), "patient.hetu");
        assert!(!born_later.to_string().contains("010199"), "the refusal echoes the HETU");
        assert_eq!(expression(&refused(client, 422, |r| r["patient"]["birth_date"] = json!("1952-02-30"))), "patient.birth_date");
        assert_eq!(expression(&refused(client, 422, |r| r["diagnoses"][0]["icd10"] = json!("F99.X"))), "diagnoses[0].icd10");
        assert_eq!(expression(&refused(client, 422, |r| r["session"]["start"] = json!("2099-01-01T10:00:00+02:00"))), "session.start");
        assert_eq!(expression(&refused(client, 422, |r| r["assessments"][0]["date"] = json!("2099-01-01"))), "assessments[0].date");
        assert_eq!(expression(&refused(client, 422, |r| r["organization"]["oid"] = json!(OTHER_ORG))), "organization.oid");
        assert_eq!(expression(&refused(client, 422, |r| r["note"]["text"] = json!("x".repeat(gateway.config.max_note_bytes + 1)))), "note.text");
        for kind in ["Bundle", "Patient", "Practitioner", "Organization"] {
            assert_eq!(gateway.stored(kind), 0, "a refused record stored a {kind}");
        }
    }

    fn the_same_record_sent_concurrently_is_one_document(gateway) {
        // An EMR that retries while its first request is still running: one 201, the rest 200
        // with the same document, never a conflict.
        let answers: Vec<(u16, String)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    let client = gateway.client.clone();
                    scope.spawn(move || {
                        let answer = submit(&client, &record());
                        (answer.status, answer.json().map(|d| d["id"].as_str().unwrap_or("").to_owned()).unwrap_or_default())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(answers.iter().filter(|(status, _)| *status == 201).count(), 1, "{answers:?}");
        assert!(answers.iter().all(|(status, _)| *status == 201 || *status == 200), "{answers:?}");
        assert!(answers.iter().all(|(_, id)| *id == answers[0].1 && !id.is_empty()), "{answers:?}");
        assert_eq!(gateway.stored("Bundle"), 1);
        let id = &answers[0].1;
        assert_eq!(gateway.client.get(&format!("/Bundle/{id}/_history")).unwrap().json().unwrap()["total"], 1);
    }

    fn participants_are_resolved_not_duplicated(gateway) {
        let therapist = &gateway.client;
        // A Patient created earlier through the FHIR API is the one the documents name.
        let existing = gateway.create(&patient(HETU));
        let first = submit(therapist, &record());
        assert_eq!(first.status, 201, "{}", first.text());
        let first = first.json().unwrap();
        let mut next_session = record();
        next_session["record_id"] = json!("EMR-2026-000124");
        next_session["session"]["start"] = json!("2026-03-09T14:00:00+02:00");
        let second = submit(therapist, &next_session).json().unwrap();
        assert_ne!(first["id"], second["id"]);
        assert_eq!(first["entry"][1]["fullUrl"], format!("urn:uuid:{existing}"));
        for entry in 1..4 {
            assert_eq!(first["entry"][entry]["fullUrl"], second["entry"][entry]["fullUrl"]);
        }
        let total = |path: &str| therapist.get(path).unwrap().json().unwrap()["total"].clone();
        assert_eq!(total(&format!("/Patient?identifier=urn:oid:1.2.246.21|{HETU}")), 1);
        assert_eq!(total(&format!("/Practitioner?identifier=urn:oid:1.2.246.537.26|{THERAPIST}")), 1);
        assert_eq!(total(&format!("/Organization?identifier=urn:ietf:rfc:3986|urn:oid:{ORG}")), 1);
        // The stored Practitioner is the document's, under the same id.
        let practitioner = first["entry"][2]["fullUrl"].as_str().unwrap().trim_start_matches("urn:uuid:").to_owned();
        let stored = therapist.get(&format!("/Practitioner/{practitioner}")).unwrap().json().unwrap();
        assert_eq!(stored["identifier"][0]["value"], THERAPIST);
        assert_eq!(stored["meta"]["profile"][0], "https://fhir.vaitio.fi/StructureDefinition/vaitio-practitioner");

        // Concurrent first documents of a new patient agree on one Patient.
        let statuses: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..6)
                .map(|i| {
                    let client = therapist.clone();
                    scope.spawn(move || {
                        let mut body = record();
                        body["record_id"] = json!(format!("EMR-NEW-{i}"));
                        body["patient"] = json!({"hetu": "010106A9986", "given": ["Eero"], "family": "Uusi", "birth_date": "2006-01-01"});
                        submit(&client, &body).status
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");
        assert_eq!(total("/Patient?identifier=urn:oid:1.2.246.21|010106A9986"), 1);
        assert_eq!(total("/Bundle?patient:identifier=urn:oid:1.2.246.21|010106A9986"), 6);
    }
}

on_both_backends! {
    fn validate_checks_without_storing_or_revealing(gateway) {
        let client = &gateway.client;
        let post = |path: &str, body: &Value| client.post_json(path, body).unwrap();
        let valid = post("/Patient/$validate", &patient(HETU));
        assert_eq!(valid.status, 200, "{}", valid.text());
        assert_eq!(valid.json().unwrap()["issue"][0]["severity"], "information");
        let invalid = post("/Patient/$validate", &patient("131052-308U")).json().unwrap();
        assert_eq!(invalid["issue"][0]["severity"], "error");
        assert_eq!(invalid["issue"][0]["expression"][0], "Patient.identifier[0].value");
        let unknown = post("/$validate", &json!({"resourceType": "Patient", "colour": "blue"})).json().unwrap();
        assert_eq!(unknown["issue"][0]["expression"][0], "Patient.colour");
        let wrapped = post("/$validate", &json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient(HETU)}]}));
        assert_eq!(wrapped.json().unwrap()["issue"][0]["severity"], "information");
        let wrong_type = post("/Observation/$validate", &patient(HETU)).json().unwrap();
        assert_eq!(wrong_type["issue"][0]["severity"], "error");
        // A reference to a stored patient is not looked up: nothing about existence leaks.
        let existing = gateway.create(&patient(HETU));
        let about_existing = post("/Encounter/$validate", &encounter(&existing, "2026-01-10")).text();
        let about_missing = post("/Encounter/$validate", &encounter("no-such-patient", "2026-01-10")).text();
        assert_eq!(about_existing, about_missing);
        assert_eq!(gateway.stored("Encounter"), 0, "$validate stored something");
        assert_eq!(gateway.client_with(None, None).post_json("/$validate", &patient(HETU)).unwrap().status, 401);
    }
}

/// The gateway works on at most `request_threads` requests at once and queues the rest. With a
/// single thread per worker, clients submitting and reading at once are all answered: no
/// request's work waits for a thread that another request holds.
fn many_clients_queue_for_one_request_thread_per_worker(backend: Backend) {
    let Some(gateway) = TestGateway::spawn_with(backend, |config| config.request_threads = 1) else { return };
    let answers: Vec<(u16, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|i| {
                let client = gateway.client.clone();
                scope.spawn(move || {
                    let mut body = record();
                    body["record_id"] = json!(format!("EMR-QUEUE-{i}"));
                    let created = submit(&client, &body);
                    let id = created.json().map(|d| d["id"].as_str().unwrap_or("").to_owned()).unwrap_or_default();
                    (created.status, client.get(&format!("/Bundle/{id}")).unwrap().status)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|answer| *answer == (201, 200)), "{answers:?}");
    assert_eq!(gateway.stored("Bundle"), 12);
}

#[test]
fn many_clients_queue_for_one_request_thread_per_worker_sqlite() {
    many_clients_queue_for_one_request_thread_per_worker(Backend::Sqlite);
}

#[test]
fn many_clients_queue_for_one_request_thread_per_worker_postgres() {
    many_clients_queue_for_one_request_thread_per_worker(Backend::Postgres);
}
