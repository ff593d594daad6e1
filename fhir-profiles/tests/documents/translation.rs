//! The example record of the input contract, translated and read back by the R4 model.

use chrono::DateTime;
use fhir_profiles::record::{parse_record, RecordLimits};
use fhir_profiles::translate::{translate, DocumentIds};
use fhir_profiles::{parse_resource, ProfileError, ResourceType, ServiceEventLink};
use serde_json::{json, Value};

pub fn example() -> Value {
    json!({
        "schema": "vaitio.psychotherapy-record/v1",
        "record_id": "EMR-2026-000123",
        "organization": { "oid": "1.2.246.10.12345678.10.1", "name": "Example Therapy Clinic" },
        "patient": { "hetu": "131052-308T", "given": ["Aino"], "family": "Virtanen", "birth_date": "1952-10-13", "gender": "female" },
        "therapist": { "terhikki": "10012345678", "given": ["Anna"], "family": "Korhonen", "profession": "psychotherapist" },
        "service_event": { "oid": "1.2.246.10.12345678.10.1.77.1", "start": "2026-01-10", "end": null },
        "session": { "start": "2026-03-02T14:00:00+02:00", "minutes": 45, "modality": "individual", "setting": "in_person" },
        "diagnoses": [ { "icd10": "F32.1", "primary": true } ],
        "assessments": [ { "instrument": "PHQ-9", "score": 14, "date": "2026-03-02" } ],
        "note": { "kind": "progress", "text": "Mood lower this week.\n</div><script>alert(1)</script>" },
        "risk": { "suicide": "low" },
        "plan": "Continue weekly sessions."
    })
}

pub fn limits() -> RecordLimits {
    RecordLimits { now: DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap(), max_note_bytes: 64 * 1024 }
}

pub fn ids(checked: &fhir_profiles::record::CheckedRecord) -> DocumentIds {
    let mut n = 0u32;
    DocumentIds::derive(checked, |_| {
        n += 1;
        format!("00000000-0000-4000-8000-{n:012}")
    })
}

#[test]
fn the_example_record_becomes_a_document_the_r4_model_reads() {
    let checked = parse_record(example().to_string().as_bytes(), &limits()).unwrap();
    let document = translate(&checked, &ids(&checked), "2026-03-02T15:00:00+02:00");
    // For checking with an outside validator: VAITIO_EXAMPLE_DOCUMENT=path cargo test.
    if let Ok(path) = std::env::var("VAITIO_EXAMPLE_DOCUMENT") {
        std::fs::write(path, serde_json::to_string_pretty(&document).unwrap()).unwrap();
    }
    assert_eq!(document["type"], "document");
    assert_eq!(document["entry"][0]["resource"]["resourceType"], "Composition");
    assert_eq!(document["entry"].as_array().unwrap().len(), 8);
    let parsed = parse_resource(ResourceType::Bundle, document.to_string().as_bytes()).unwrap();
    assert!(parsed.security.iter().any(|s| s.code == "PSYTHPN"));
    // The document is filed under its service event, so a patient's denial of it covers it.
    assert_eq!(parsed.service_event, ServiceEventLink::Oid("1.2.246.10.12345678.10.1.77.1".into()));
    // Markup in the note stays text.
    let div = document["entry"][0]["resource"]["section"][0]["text"]["div"].as_str().unwrap();
    assert!(div.contains("&lt;/div&gt;&lt;script&gt;"), "{div}");
    assert!(!div.contains("<script>"));
    // The session is part of the service event; the diagnosis is ranked primary.
    let session = &document["entry"][5]["resource"];
    assert_eq!(session["partOf"]["reference"], document["entry"][4]["fullUrl"]);
    assert_eq!(session["diagnosis"][0]["rank"], 1);
    // The same record and ids give the same document.
    assert_eq!(translate(&checked, &ids(&checked), "2026-03-02T15:00:00+02:00"), document);
}

fn refused(change: impl FnOnce(&mut Value)) -> (String, String) {
    let mut record = example();
    change(&mut record);
    let error = match parse_record(record.to_string().as_bytes(), &limits()) {
        Err(error) => error,
        Ok(_) => panic!("accepted: {record}"),
    };
    let issue = error.issues().into_iter().next().unwrap();
    (issue.expression.unwrap_or_default(), issue.diagnostics)
}

#[test]
fn bad_records_are_refused_naming_the_field() {
    assert_eq!(refused(|r| r["schema"] = json!("vaitio.psychotherapy-record/v9")).0, "schema");
    assert_eq!(refused(|r| r["patient"]["nickname"] = json!("x")).0, "patient.nickname");
    assert!(refused(|r| r["patient"]["nickname"] = json!("x")).1.contains("nickname"));
    // A member named with data (found by fuzzing: a date typed as a key) is not named back.
    let (at, message) = refused(|r| r["patient"]["131052-308T"] = json!("x"));
    assert!(!at.contains("131052") && !message.contains("131052"), "{at}: {message}");
    assert_eq!(refused(|r| r["patient"]["hetu"] = json!("131052-308U")).0, "patient.hetu");
    assert_eq!(refused(|r| r["patient"]["birth_date"] = json!("1952-10-14")).0, "patient.birth_date");
    assert_eq!(refused(|r| r["patient"]["birth_date"] = json!("1952-02-30")).0, "patient.birth_date");
    assert_eq!(refused(|r| r["diagnoses"][0]["icd10"] = json!("F32.X")).0, "diagnoses[0].icd10");
    assert_eq!(refused(|r| r["diagnoses"][0]["icd10"] = json!("J45")).0, "diagnoses[0].icd10");
    assert_eq!(
        refused(|r| {
            r.as_object_mut().unwrap().remove("service_event");
        })
        .0,
        "service_event",
        "a missing field is named where it is missing"
    );
    assert_eq!(
        refused(|r| {
            r["patient"].as_object_mut().unwrap().remove("family");
        })
        .0,
        "patient.family"
    );
    assert_eq!(refused(|r| r["session"]["start"] = json!("2027-01-01T10:00:00+02:00")).0, "session.start");
    assert_eq!(refused(|r| r["session"]["modality"] = json!("telepathic")).0, "session.modality");
    // A control character (FHIR strings allow tab and line ends only), named and not echoed.
    let nul = refused(|r| r["patient"]["family"] = json!("Vir\u{0}tanen"));
    assert_eq!(nul, ("patient.family".into(), "holds a control character".into()));
    assert_eq!(refused(|r| r["therapist"]["given"][0] = json!("An\u{1b}na")).0, "therapist.given[0]");
    assert_eq!(refused(|r| r["organization"]["name"] = json!("Clinic\u{7}")).0, "organization.name");
    let after_the_end = refused(|r| r["service_event"]["end"] = json!("2026-03-01"));
    assert_eq!(after_the_end, ("session.start".into(), "the session is after its service event ended".into()));
    // Born after the session: a HETU of 2099 (century sign A) with its right check character.
    let born_later = |r: &mut Value| {
        r["patient"]["hetu"] = json!("010199A9001");
        r["patient"].as_object_mut().unwrap().remove("birth_date");
    };
    assert_eq!(refused(born_later), ("patient.hetu".into(), "the patient is born after the session".into()));
    let (at, _) = refused(|r| {
        born_later(r);
        r["patient"]["birth_date"] = json!("2099-01-01");
    });
    assert_eq!(at, "patient.birth_date");
    // Dated after today everywhere on Earth (`limits` puts now at 2026-11-28T12:00Z)...
    assert_eq!(refused(|r| r["assessments"][0]["date"] = json!("2026-11-30")).0, "assessments[0].date");
    // ...but a date that is already today east of UTC is not in the future.
    let mut tomorrow = example();
    tomorrow["assessments"][0]["date"] = json!("2026-11-29");
    assert!(parse_record(tomorrow.to_string().as_bytes(), &limits()).is_ok());
    assert_eq!(refused(|r| r["assessments"][0]["score"] = json!(99)).0, "assessments[0].score");
    assert_eq!(refused(|r| r["note"]["text"] = json!("x".repeat(70 * 1024))).0, "note.text");
    // A field given twice is named, at the top level and inside an object, without its values.
    let twice = |json: &str| {
        let Err(error) = parse_record(json.as_bytes(), &limits()) else { panic!("accepted: {json}") };
        let issue = error.issues().into_iter().next().unwrap();
        (issue.expression.unwrap_or_default(), issue.diagnostics)
    };
    let text = example().to_string();
    let top = twice(&text.replacen("\"record_id\":", "\"record_id\":\"EMR-1\",\"record_id\":", 1));
    assert_eq!(top, ("record_id".into(), "the field 'record_id' is given more than once".into()));
    let inner = twice(&text.replacen("\"hetu\":", "\"hetu\":\"010101-123N\",\"hetu\":", 1));
    assert_eq!(inner.0, "patient.hetu");
    assert!(!inner.1.contains("010101") && !inner.1.contains("131052"), "{}", inner.1);
    // The HETU is never echoed.
    let (_, message) = refused(|r| r["patient"]["hetu"] = json!(12345));
    assert!(!message.contains("12345"), "{message}");
    assert!(matches!(parse_record(b"{not json", &limits()), Err(ProfileError::MalformedJson(_))));
    assert!(matches!(parse_record(&[0xff, 0xfe], &limits()), Err(ProfileError::MalformedJson(_))));
}

#[test]
fn the_json_schema_names_every_field_of_the_contract() {
    let schema: Value = serde_json::from_str(fhir_profiles::record::JSON_SCHEMA_V1).unwrap();
    let record = example();
    for (field, value) in record.as_object().unwrap() {
        let described = &schema["properties"][field];
        assert!(described.is_object(), "{field} is not in the schema");
        if let Some(inner) = value.as_object() {
            for key in inner.keys() {
                assert!(described["properties"][key].is_object(), "{field}.{key} is not in the schema");
            }
        }
    }
    assert_eq!(schema["additionalProperties"], false);
}

/// The document shown to integrators (`docs/example-document.json`) is what the contract's
/// example record (`schemas/psychotherapy-record-v1.example.json`) becomes, with ids fixed for
/// the example. `VAITIO_BLESS=1 cargo test -p fhir-profiles` rewrites it after a deliberate
/// change.
#[test]
fn the_documented_example_document_is_the_translation_of_the_contract_example() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let record = std::fs::read(root.join("schemas/psychotherapy-record-v1.example.json")).unwrap();
    let checked = parse_record(&record, &limits()).unwrap();
    let document = translate(&checked, &ids(&checked), "2026-03-02T15:00:00+02:00");
    let path = root.join("../docs/example-document.json");
    if std::env::var_os("VAITIO_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&document).unwrap() + "\n").unwrap();
    }
    let documented: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(documented, document, "{} is not the translation of the example record", path.display());
    parse_resource(ResourceType::Bundle, document.to_string().as_bytes()).unwrap();
}
