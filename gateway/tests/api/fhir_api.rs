//! The FHIR REST API: interactions, HTTP conventions, errors, search and paging.

use serde_json::{json, Value};

use super::support::*;

fn outcome(answer: &vaitio_conformance::client::Answer, status: u16) -> Value {
    assert_eq!(answer.status, status, "{}", answer.text());
    assert!(answer.is_operation_outcome(), "not an OperationOutcome: {}", answer.text());
    assert!(answer.header("content-type").unwrap().starts_with("application/fhir+json"));
    answer.json().unwrap()
}

fn total(gateway: &TestGateway, query: &str) -> u64 {
    let answer = gateway.get(query);
    assert_eq!(answer.status, 200, "{query}: {}", answer.text());
    answer.json().unwrap()["total"].as_u64().unwrap()
}

/// The R4 model reads what the server emits without dropping anything.
fn assert_r4(value: &Value) {
    let model: fhir_model::r4b::resources::Resource = serde_json::from_value(value.clone()).expect("R4 shape");
    let back = serde_json::to_value(&model).unwrap();
    for key in value.as_object().unwrap().keys() {
        assert!(back.get(key).is_some(), "the R4 model dropped '{key}'");
    }
}

on_both_backends! {
    fn created_resources_read_back_exactly(gateway) {
        let submitted = patient(HETU);
        let created = gateway.post("/Patient", &submitted);
        assert_eq!(created.status, 201);
        let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(created.header("location").unwrap(), format!("{}/Patient/{id}/_history/1", gateway.base_url));
        assert_eq!(created.header("etag"), Some("W/\"1\""));
        assert!(created.header("last-modified").is_some());
        let read = gateway.get(&format!("/Patient/{id}"));
        assert_eq!(read.status, 200);
        assert_eq!(read.header("etag"), Some("W/\"1\""));
        let body = read.json().unwrap();
        for element in ["identifier", "name", "gender", "birthDate"] {
            assert_eq!(body[element], submitted[element], "{element}");
        }
        assert_eq!(body["meta"]["versionId"], "1");
        assert_r4(&body);
        let metadata = gateway.get("/metadata").json().unwrap();
        assert_eq!(metadata["fhirVersion"], "4.0.1");
        assert_r4(&metadata);
        let search = gateway.get("/Patient?_id=".to_owned().as_str().replace("_id=", &format!("_id={id}")).as_str()).json().unwrap();
        assert_r4(&search);
    }

    fn prefer_decides_what_a_write_returns(gateway) {
        let minimal = gateway.client.send("POST", "/Patient", &[("Content-Type", "application/fhir+json"), ("Prefer", "return=minimal")], Some(patient(HETU).to_string().as_bytes())).unwrap();
        assert_eq!(minimal.status, 201);
        assert!(minimal.body.is_empty());
        assert!(minimal.header("location").is_some());
        let outcome = gateway.client.send("POST", "/Patient", &[("Content-Type", "application/json"), ("Prefer", "return=OperationOutcome")], Some(patient(HETU).to_string().as_bytes())).unwrap();
        assert_eq!(outcome.status, 201);
        assert_eq!(outcome.json().unwrap()["resourceType"], "OperationOutcome");
    }

    fn updates_keep_history_and_honour_if_match(gateway) {
        let id = gateway.create(&patient(HETU));
        let mut body = gateway.get(&format!("/Patient/{id}")).json().unwrap();
        body["gender"] = json!("other");
        let stale = gateway.put(&format!("/Patient/{id}"), &body, Some("W/\"7\""));
        outcome(&stale, 412);
        let updated = gateway.put(&format!("/Patient/{id}"), &body, Some("W/\"1\""));
        assert_eq!(updated.status, 200, "{}", updated.text());
        assert_eq!(updated.header("etag"), Some("W/\"2\""));
        let unconditional = gateway.put(&format!("/Patient/{id}"), &body, None);
        assert_eq!(unconditional.header("etag"), Some("W/\"3\""));
        let history = gateway.get(&format!("/Patient/{id}/_history")).json().unwrap();
        assert_eq!(history["type"], "history");
        assert_eq!(history["total"], 3);
        assert_eq!(history["entry"][2]["request"]["method"], "POST");
        assert_eq!(history["entry"][0]["request"]["method"], "PUT");
        assert_eq!(history["entry"][2]["resource"]["gender"], "female");
        assert_eq!(gateway.get(&format!("/Patient/{id}/_history/1")).json().unwrap()["gender"], "female");
        outcome(&gateway.get(&format!("/Patient/{id}/_history/9")), 404);
        outcome(&gateway.get(&format!("/Patient/{id}/_history/x")), 404);
        let paged = gateway.get(&format!("/Patient/{id}/_history?_count=2")).json().unwrap();
        assert_eq!(paged["entry"].as_array().unwrap().len(), 2);
        assert!(paged["link"].as_array().unwrap().iter().any(|l| l["relation"] == "next"));
        assert_r4(&history);

        // The id in the body must be the id in the URL.
        let mut other = body.clone();
        other["id"] = json!("another-id");
        outcome(&gateway.put(&format!("/Patient/{id}"), &other, None), 400);
        // A Patient's HETU is the key of its pseudonym and cannot change under it.
        let mut moved = body.clone();
        moved["identifier"][0]["value"] = json!("010101A900R");
        outcome(&gateway.put(&format!("/Patient/{id}"), &moved, None), 422);
        // Updating what does not exist is the same 404 as reading it.
        let mut ghost = body.clone();
        ghost["id"] = json!("no-such-patient");
        outcome(&gateway.put("/Patient/no-such-patient", &ghost, None), 404);
        assert_eq!(total(&gateway, &format!("/Patient?_id={id}")), 1);
    }

    fn bad_input_gets_an_operation_outcome_and_stores_nothing(gateway) {
        let id = gateway.create(&patient(HETU));
        let before = gateway.stored("Patient");
        let send = |path: &str, content_type: &str, body: &[u8]| {
            gateway.client.send("POST", path, &[("Content-Type", content_type)], Some(body)).unwrap()
        };
        outcome(&send("/Patient", "application/fhir+json", b"{not json"), 400);
        outcome(&send("/Patient", "application/fhir+json", &[0xff, 0xfe, 0x00]), 400);
        outcome(&send("/Patient", "application/fhir+json", b"[]"), 400);
        outcome(&send("/Patient", "application/fhir+json", b"{\"name\": []}"), 400);
        outcome(&send("/Patient", "application/fhir+json", br#"{"resourceType": "Observation"}"#), 400);
        outcome(&send("/Patient", "application/fhir+json", br#"{"resourceType": "Basic"}"#), 400);
        let unknown_element = outcome(&send("/Patient", "application/fhir+json", br#"{"resourceType": "Patient", "favouriteColour": "blue"}"#), 400);
        assert_eq!(unknown_element["issue"][0]["expression"][0], "Patient.favouriteColour");
        outcome(&send("/Patient", "text/plain", br#"{"resourceType": "Patient"}"#), 415);
        outcome(&send("/Patient", "application/fhir+json; charset=iso-8859-1", br#"{"resourceType": "Patient"}"#), 415);
        outcome(&gateway.client.send("POST", "/Patient", &[], Some(br#"{"resourceType": "Patient"}"#)).unwrap(), 415);
        let wrong_hetu = outcome(&gateway.post("/Patient", &patient("131052-308U")), 422);
        assert_eq!(wrong_hetu["issue"][0]["expression"][0], "Patient.identifier[0].value");
        assert!(!wrong_hetu.to_string().contains("131052"), "the error echoes the HETU");
        let big = json!({"resourceType": "Organization", "name": "x".repeat(gateway.config.max_body_bytes)});
        outcome(&gateway.post("/Organization", &big), 413);
        // Patient data must name a Patient that exists.
        outcome(&gateway.post("/Encounter", &encounter("no-such-patient", "2026-01-10")), 422);
        let mut orphan = encounter(&id, "2026-01-10");
        orphan.as_object_mut().unwrap().remove("subject");
        outcome(&gateway.post("/Encounter", &orphan), 422);
        // Only document Bundles.
        outcome(&gateway.post("/Bundle", &json!({"resourceType": "Bundle", "type": "collection"})), 422);
        // AuditEvent is written by the gateway alone.
        outcome(&gateway.post("/AuditEvent", &json!({"resourceType": "AuditEvent"})), 405);
        outcome(&gateway.client.send("DELETE", &format!("/Patient/{id}"), &[], None).unwrap(), 405);
        outcome(&gateway.get("/NoSuchType"), 404);
        outcome(&gateway.get("/NoSuchType/1"), 404);
        outcome(&gateway.get("/Patient/does-not-exist"), 404);
        outcome(&gateway.get("/Patient/bad$id"), 404);
        outcome(&gateway.get("/a/b/c/d/e"), 404);
        assert_eq!(gateway.stored("Patient"), before, "a refused request stored something");
        assert_eq!(gateway.stored("Encounter"), 0);
        assert_eq!(gateway.stored("Organization"), 0);
    }

    fn unknown_and_unsupported_parameters_are_refused(gateway) {
        for query in [
            "/Patient?name=Virtanen",
            "/Patient?nonsense=1",
            "/Patient?identifier:text=x",
            "/Encounter?patient.name=x",
            "/Encounter?_include=Encounter:subject",
            "/Encounter?_include=Patient:patient",
            "/Encounter?_include:iterate=Encounter:patient",
            "/Encounter?_revinclude=Composition:patient",
            "/Patient?_revinclude=Composition:subject",
            "/Encounter?_has:Composition:subject:status=final",
            "/Encounter?_sort=date",
            "/Encounter?_summary=count",
            "/Encounter?_elements=id",
            "/Encounter?date=yesterday",
            "/Encounter?identifier=",
            "/Encounter?_count=many",
            "/Patient?_pretty=maybe",
            "/Patient/x?_summary=true",
            "/metadata?mode=terminology",
        ] {
            outcome(&gateway.get(query), 400);
        }
        for query in ["/Patient?_format=xml", "/Patient?_format=text/turtle", "/metadata?_format=application/fhir+xml"] {
            outcome(&gateway.get(query), 406);
        }
        let xml = gateway.client.send("GET", "/metadata", &[("Accept", "application/fhir+xml")], None).unwrap();
        outcome(&xml, 406);
        for format in ["json", "application/json", "application/fhir+json"] {
            assert_eq!(gateway.get(&format!("/metadata?_format={format}")).status, 200);
        }
        let pretty = gateway.get("/metadata?_pretty=true");
        assert!(pretty.text().contains("\n  \"resourceType\""));
    }

    fn search_filters_pages_and_counts(gateway) {
        let aino = gateway.create(&patient(HETU));
        let other = gateway.create(&patient("010101A900R"));
        let mut encounters = Vec::new();
        for day in 1..=5 {
            encounters.push(gateway.create(&encounter(&aino, &format!("2026-03-{day:02}T10:00:00+02:00"))));
        }
        gateway.create(&encounter(&other, "2026-03-03T10:00:00+02:00"));
        assert_eq!(total(&gateway, &format!("/Encounter?patient=Patient/{aino}")), 5);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}")), 6);
        assert_eq!(total(&gateway, &format!("/Encounter?patient:identifier=urn:oid:1.2.246.21|{HETU}")), 5);
        assert_eq!(total(&gateway, "/Encounter?patient:identifier=urn:oid:1.2.246.21|010101A900R"), 1);
        outcome(&gateway.get("/Encounter?patient:identifier=urn:oid:1.2.246.21|131052-308U"), 400);
        assert_eq!(total(&gateway, "/Encounter?patient=no-such-patient"), 0);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-03-03")), 2);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino}&date=ge2026-03-02&date=le2026-03-04")), 3);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-03-01,2026-03-05")), 2);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=lt2026-03-01")), 0);
        assert_eq!(total(&gateway, &format!("/Encounter?_id={},{}", encounters[0], encounters[1])), 2);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:ietf:rfc:3986|urn:oid:1.2.246.10.12345678.10.1.77.1"), 6);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:oid:1.2.246.10.12345678.10.1.77.1"), 6);
        assert_eq!(total(&gateway, "/Encounter?identifier=|urn:oid:1.2.246.10.12345678.10.1.77.1"), 0);
        assert_eq!(total(&gateway, "/Encounter?identifier=other-system|urn:oid:1.2.246.10.12345678.10.1.77.1"), 0);
        assert_eq!(total(&gateway, &format!("/Patient?identifier={HETU}")), 1);
        // A search that names no patient, id or identifier is refused: the register cannot be
        // browsed, and such a search would judge every patient.
        for unbounded in ["/Patient", "/Patient?_count=20", "/Encounter?date=2026-03-03", "/Encounter?_lastUpdated=ge2020-01-01", "/Organization"] {
            let refused = outcome(&gateway.get(unbounded), 400);
            assert_eq!(refused["issue"][0]["code"], "required", "{unbounded}");
            assert!(refused["issue"][0]["diagnostics"].as_str().unwrap().contains("names what it looks for"), "{refused}");
        }
        // Whatever the role, in whichever organisation.
        for (n, role) in ["psychotherapist", "psychologist", "psychiatrist", "physician", "nurse", "auditor", "administrator"].into_iter().enumerate() {
            for org in [ORG, OTHER_ORG] {
                let client = gateway.professional(org, &format!("1004000000{n}"), role);
                let refused = client.get("/Patient?_count=20").unwrap();
                assert_eq!(refused.status, 400, "{role} in {org}: {}", refused.text());
                assert!(!refused.text().contains(HETU) && !refused.text().contains("\"entry\""));
            }
        }
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&_lastUpdated=ge2020-01-01")), 6);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&_lastUpdated=lt2020-01-01")), 0);

        // An update's index replaces the old version's: the old identifier and date no longer
        // find it (their rows stay, filed under version 1), the new ones do, and going back to
        // the first values finds it once.
        let moved_id = &encounters[4];
        let mut moved = gateway.get(&format!("/Encounter/{moved_id}")).json().unwrap();
        moved["identifier"][0]["value"] = json!("urn:oid:1.2.246.10.12345678.10.1.77.2");
        moved["period"] = json!({"start": "2026-04-01T10:00:00+02:00", "end": "2026-04-01T10:00:00+02:00"});
        assert_eq!(gateway.put(&format!("/Encounter/{moved_id}"), &moved, None).status, 200);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:oid:1.2.246.10.12345678.10.1.77.1"), 5);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:oid:1.2.246.10.12345678.10.1.77.2"), 1);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-03-05")), 0);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-04-01")), 1);
        moved["identifier"][0]["value"] = json!("urn:oid:1.2.246.10.12345678.10.1.77.1");
        moved["period"] = json!({"start": "2026-03-05T10:00:00+02:00", "end": "2026-03-05T10:00:00+02:00"});
        assert_eq!(gateway.put(&format!("/Encounter/{moved_id}"), &moved, None).status, 200);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:oid:1.2.246.10.12345678.10.1.77.1"), 6);
        assert_eq!(total(&gateway, "/Encounter?identifier=urn:oid:1.2.246.10.12345678.10.1.77.2"), 0);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-03-05")), 1);
        assert_eq!(total(&gateway, &format!("/Encounter?patient={aino},{other}&date=2026-04-01")), 0);
        // An update cannot move a resource to another patient: its versions are sealed under
        // its patient's key and bound to their pseudonym.
        let owner = moved["subject"]["reference"].as_str().unwrap().to_owned();
        let someone_else = if owner == format!("Patient/{aino}") { other.clone() } else { aino.clone() };
        let mut elsewhere = moved.clone();
        elsewhere["subject"]["reference"] = json!(format!("Patient/{someone_else}"));
        outcome(&gateway.put(&format!("/Encounter/{moved_id}"), &elsewhere, None), 422);
        assert_eq!(gateway.get(&format!("/Encounter/{moved_id}")).json().unwrap()["subject"]["reference"], owner.as_str());

        // One value under two systems, and one with no system: each identifier is found by its
        // own form only, whether its index rows have the current form (one row per identifier)
        // or the form written before migration 7 (a row per token, rebuilt here in SQL).
        let mut shared = encounter(&other, "2026-05-01T10:00:00+02:00");
        shared["identifier"] = json!([
            {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.99"},
            {"system": "urn:oid:1.2.246.537.6.2", "value": "urn:oid:1.2.246.10.99"},
            {"value": "no-system-77"}
        ]);
        let shared_id = gateway.create(&shared);
        let forms = |expected: u64, old_form: &str| {
            for (query, found) in [
                ("urn:ietf:rfc:3986|urn:oid:1.2.246.10.99", expected),
                ("urn:oid:1.2.246.537.6.2|urn:oid:1.2.246.10.99", expected),
                ("urn:oid:1.2.246.10.99", expected),
                ("|urn:oid:1.2.246.10.99", 0),
                ("other-system|urn:oid:1.2.246.10.99", 0),
                ("no-system-77", expected),
                ("|no-system-77", expected),
                ("urn:ietf:rfc:3986|no-system-77", 0),
                ("urn:ietf:rfc:3986|urn:oid:1.2.246.10.99,|no-system-77", expected),
            ] {
                let query = query.replace('|', "%7C");
                assert_eq!(total(&gateway, &format!("/Encounter?identifier={query}")), found, "{query} ({old_form})");
            }
        };
        forms(1, "current form");
        {
            use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
            use store::db::schema::search_tokens;
            let mut conn = gateway.database();
            // A row per identifier: the second system's shares the first one's key, so it is
            // filed under its exact token alone.
            let rows: i64 =
                search_tokens::table.filter(search_tokens::id.eq(&shared_id)).count().get_result(&mut *conn).unwrap();
            assert_eq!(rows, 3);
            for sql in [
                format!(
                    "INSERT INTO search_tokens (resource_type, id, param, token, patient, version) \
                     SELECT resource_type, id, param, system_token, patient, version FROM search_tokens \
                     WHERE id = '{shared_id}' AND system_token IS NOT NULL"
                ),
                format!("UPDATE search_tokens SET system_token = NULL WHERE id = '{shared_id}'"),
            ] {
                diesel::sql_query(sql).execute(&mut *conn).unwrap();
            }
        }
        forms(1, "form before migration 7");

        // Paging: 5 results, 2 a page; every result once, links to follow.
        let mut seen = Vec::new();
        let mut next = Some(format!("/Encounter?patient={aino}&_count=2"));
        let mut pages = 0;
        while let Some(url) = next {
            let page = gateway.get(&url).json().unwrap();
            assert_eq!(page["total"], 5);
            for entry in page["entry"].as_array().unwrap() {
                assert_eq!(entry["search"]["mode"], "match");
                assert!(entry["fullUrl"].as_str().unwrap().starts_with(&gateway.base_url));
                seen.push(entry["resource"]["id"].as_str().unwrap().to_owned());
            }
            next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").map(|l| l["url"].as_str().unwrap().to_owned());
            pages += 1;
        }
        assert_eq!(pages, 3);
        seen.sort();
        encounters.sort();
        assert_eq!(seen, encounters);
        let count_only = gateway.get(&format!("/Encounter?patient={aino}&_count=0")).json().unwrap();
        assert_eq!(count_only["total"], 5);
        assert!(count_only["entry"].as_array().unwrap().is_empty());

        // POST _search takes the same parameters as a form.
        let posted = gateway.client.send("POST", "/Encounter/_search", &[("Content-Type", "application/x-www-form-urlencoded")], Some(format!("patient={aino}&date=2026-03-03").as_bytes())).unwrap();
        assert_eq!(posted.json().unwrap()["total"], 1);
        outcome(&gateway.client.send("POST", "/Encounter/_search", &[("Content-Type", "application/json")], Some(b"{}")).unwrap(), 415);
    }

    fn document_bundles_are_stored_and_found_by_patient(gateway) {
        let document = example_document();
        let identifier = document["identifier"]["value"].as_str().unwrap().to_owned();
        let id = gateway.create(&document);
        let stored = gateway.get(&format!("/Bundle/{id}")).json().unwrap();
        assert_eq!(stored["type"], "document");
        assert_eq!(stored["entry"][0]["resource"]["resourceType"], "Composition");
        assert_r4(&stored);
        assert_eq!(total(&gateway, &format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{HETU}")), 1);
        assert_eq!(total(&gateway, &format!("/Bundle?identifier=urn:ietf:rfc:3986|{identifier}")), 1);
        assert_eq!(total(&gateway, &format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{HETU}&timestamp=2026-03-02")), 1);
        assert_eq!(total(&gateway, &format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{HETU}&timestamp=2026-03-03")), 0);
        // A Patient created later with the same HETU finds the same document by reference.
        let patient_id = gateway.create(&patient(HETU));
        assert_eq!(total(&gateway, &format!("/Bundle?patient={patient_id}")), 1);
        // Refused: the Composition not first; a profile rule broken; another organisation's
        // document.
        let mut not_first = document.clone();
        not_first["entry"].as_array_mut().unwrap().reverse();
        outcome(&gateway.post("/Bundle", &not_first), 422);
        let mut unrestricted = document.clone();
        unrestricted["entry"][0]["resource"]["confidentiality"] = json!("N");
        let refused = outcome(&gateway.post("/Bundle", &unrestricted), 422);
        assert!(refused["issue"].as_array().unwrap().iter().any(|i| i["expression"][0] == "Bundle.entry[0].resource.confidentiality"), "{refused}");
        let theirs = gateway.professional(OTHER_ORG, "10077777777", "psychotherapist");
        let answer = theirs.post_json("/Bundle", &document).unwrap();
        assert_eq!(answer.status, 422, "{}", answer.text());
        assert_eq!(answer.json().unwrap()["issue"][0]["expression"][0], "Bundle.entry[0].resource.custodian");
        assert_eq!(gateway.stored("Bundle"), 1);
    }

    fn concurrent_writers_for_one_new_patient_all_succeed(gateway) {
        let id = gateway.create(&patient(HETU));
        let created: Vec<u16> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let client = gateway.client.clone();
                    let id = id.clone();
                    scope.spawn(move || {
                        (0..5)
                            .map(|j| client.post_json("/Encounter", &encounter(&id, &format!("2026-04-{:02}", 1 + (i * 5 + j) % 28))).unwrap().status)
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        assert!(created.iter().all(|status| *status == 201), "{created:?}");
        assert_eq!(total(&gateway, &format!("/Encounter?patient={id}")), 40);
    }

    fn a_refused_write_does_not_undo_the_writes_committed_with_it(gateway) {
        // On SQLite concurrent writes share one transaction (group commit), each request in a
        // savepoint: a request refused inside it must leave the others committed, and nothing
        // of its own.
        let id = gateway.create(&patient(HETU));
        let mut stale = patient(HETU);
        stale["id"] = json!(id);
        stale["name"] = json!([{"family": "Overwritten"}]);
        let statuses: Vec<(u16, u16)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|i| {
                    let (client, id, stale) = (gateway.client.clone(), id.clone(), stale.clone());
                    scope.spawn(move || {
                        let refused = client.send("PUT", &format!("/Patient/{id}"), &[("Content-Type", "application/fhir+json"), ("If-Match", "W/\"99\"")], Some(stale.to_string().as_bytes())).unwrap();
                        let created = client.post_json("/Encounter", &encounter(&id, &format!("2026-05-{:02}", i + 1))).unwrap();
                        (refused.status, created.status)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(statuses.iter().all(|s| *s == (412, 201)), "{statuses:?}");
        assert_eq!(total(&gateway, &format!("/Encounter?patient={id}")), 8);
        let current = gateway.get(&format!("/Patient/{id}")).json().unwrap();
        assert_eq!(current["meta"]["versionId"], "1");
        assert_ne!(current["name"][0]["family"], "Overwritten");
    }

    fn health_and_metrics_report_without_identifiers(gateway) {
        let health = gateway.get("/health").json().unwrap();
        assert_eq!(health["status"], "pass");
        assert_eq!(health["checks"]["database"]["status"], "pass");
        assert_eq!(gateway.get("/health/live").status, 200);
        assert_eq!(gateway.get("/health/ready").status, 200);
        gateway.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{HETU}"));
        // For the operator alone: its counters would tell anyone else what their requests found.
        assert_eq!(gateway.get("/metrics").status, 403, "a therapist");
        assert_eq!(gateway.patient(HETU).get("/metrics").unwrap().status, 403, "a patient");
        assert_eq!(gateway.professional(ORG, "auditor-1", "auditor").get("/metrics").unwrap().status, 403);
        let elsewhere = gateway.professional(OTHER_ORG, "admin-2", "administrator").get("/metrics").unwrap();
        assert_eq!(elsewhere.status, 403, "an administrator of another organisation than the operator's");
        let anonymous = gateway.client_with(None, None).get("/metrics").unwrap();
        assert_eq!(anonymous.status, 401, "{}", anonymous.text());
        let metrics = gateway.operator().get("/metrics").unwrap();
        assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
        let text = metrics.text();
        assert!(text.contains("vaitio_http_requests_total{method=\"GET\",route=\"/{type}\",status=\"200\"}"), "{text}");
        assert!(text.contains("vaitio_database_up 1"));
        assert!(text.contains("vaitio_kek_version_in_force 1") && text.contains("vaitio_kek_rotation_unfinished 0"), "{text}");
        assert!(!text.contains(HETU) && !text.contains("identifier"));
        assert!(!text.contains("file:"), "a key id in the metrics");
    }
}

/// Requests the HTTP layer passes on, however odd (bytes outside ASCII in a header, an encoded
/// NUL or markup in an id or a parameter, a body of the wrong type, a format not served): each
/// gets its status with an OperationOutcome, and the connection stays usable for the next.
#[test]
fn odd_requests_get_an_operation_outcome_and_keep_the_connection() {
    let gateway = TestGateway::spawn(Backend::Sqlite).unwrap();
    let cert = gateway.org_certificate(ORG);
    let mut pipeline: Vec<u8> = Vec::new();
    let mut request = |head: &[u8], body: &[u8]| {
        pipeline.extend_from_slice(head);
        pipeline.extend_from_slice(b"\r\n");
        pipeline.extend_from_slice(body);
    };
    request(b"GET /metadata HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(b"GET /Patient/%00%3Cscript%3E HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(b"GET /Patient?_id=a HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer \xff\xfe\r\n", b"");
    request(b"GET /Encounter?patient%00=%3Cb%3E HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(
        b"POST /Patient HTTP/1.1\r\nHost: localhost\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n",
        b"hello",
    );
    request(b"GET /Patient/x?_format=xml HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(b"GET /no-such-endpoint/%FF HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(b"DELETE /metadata HTTP/1.1\r\nHost: localhost\r\n", b"");
    request(b"GET /metadata HTTP/1.1\r\nHost: localhost\r\n", b"");
    let answered = gateway.raw(Some(&cert), &pipeline);
    let responses: Vec<&str> = answered.split("HTTP/1.1 ").skip(1).collect();
    let statuses: Vec<&str> = responses.iter().map(|r| &r[..3]).collect();
    assert_eq!(statuses.len(), 9, "every request answered on the one connection: {statuses:?}");
    assert_eq!((statuses[0], statuses[8]), ("200", "200"), "{statuses:?}");
    for response in &responses[1..8] {
        assert!(!response.starts_with('2') && !response.starts_with('5'), "{response}");
        assert!(response.contains("\"resourceType\":\"OperationOutcome\""), "no OperationOutcome: {response}");
        assert!(!response.to_ascii_lowercase().contains("connection: close"), "{response}");
        assert!(!response.contains("<script>") && !response.contains("<b>"), "markup echoed: {response}");
    }
}
