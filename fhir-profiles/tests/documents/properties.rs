//! Properties over generated records: every record the generator can produce becomes a document
//! that the profiles accept and the R4 model reads back, whose narrative holds the free text only
//! as escaped text; and any rule-breaking mutation of such a document is refused naming the
//! element.

use chrono::{Duration, NaiveDate};
use fhir_profiles::record::{parse_record, INSTRUMENTS};
use fhir_profiles::translate::translate;
use fhir_profiles::{parse_resource_value, ResourceType};
use proptest::prelude::*;
use serde_json::{json, Value};

use crate::profiles::{refusal, MUTATIONS};
use crate::translation::{ids, limits};

const CHECK_CHARS: &[u8] = b"0123456789ABCDEFHJKLMNPRSTUVWXY";
const CATEGORIES: &[&str] = &["F10", "F20", "F31", "F32", "F33", "F41", "F43", "F50", "F60", "F84", "F90", "F99"];

/// A valid HETU for a birth date and an individual number.
fn hetu(birth: NaiveDate, individual: u32) -> String {
    use chrono::Datelike;
    let century = match birth.year() {
        1800..=1899 => '+',
        1900..=1999 => '-',
        _ => 'A',
    };
    let date = birth.format("%d%m%y").to_string();
    let number: u64 = format!("{date}{individual:03}").parse().unwrap();
    format!("{date}{century}{individual:03}{}", CHECK_CHARS[(number % 31) as usize] as char)
}

/// Free text, markup and quotes included.
fn free_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-ZäöåÄÖÅ .,;:!?\n]{1,200}",
        Just("</div><script>alert(1)</script>".to_owned()),
        Just("a & b < c > d \"e\" 'f' ]]> <!-- x -->".to_owned()),
        "\\PC{1,80}",
    ]
    .prop_filter("not blank", |text| !text.trim().is_empty())
}

fn name() -> impl Strategy<Value = String> {
    "[A-ZÄÖÅ][a-zäöå'-]{0,20}( [A-Z][a-z]{1,10})?"
}

prop_compose! {
    fn record()(
        birth_days in 0i64..(125 * 365),
        individual in 2u32..900,
        given in proptest::collection::vec(name(), 0..3),
        family in name(),
        gender in prop_oneof![Just(None), Just(Some("female")), Just(Some("male")), Just(Some("other")), Just(Some("unknown"))],
        therapist_given in proptest::collection::vec(name(), 1..3),
        terhikki in "[0-9]{11}",
        event_days_ago in 1i64..2000,
        session_after in 0i64..1000,
        minutes in 1u32..=600,
        modality in prop_oneof![Just("individual"), Just("group"), Just("couple"), Just("family")],
        setting in prop_oneof![Just("in_person"), Just("video"), Just("phone")],
        ended in any::<bool>(),
        diagnoses in proptest::collection::vec((0..CATEGORIES.len(), proptest::option::of(0u8..10)), 0..4),
        primary in any::<bool>(),
        assessments in proptest::collection::vec((0..INSTRUMENTS.len(), 0u32..1000), 0..4),
        note_kind in prop_oneof![Just("progress"), Just("intake"), Just("closing")],
        note in free_text(),
        plan in proptest::option::of(free_text()),
        risk in proptest::option::of(prop_oneof![Just("none"), Just("low"), Just("moderate"), Just("high")]),
    ) -> Value {
        let today = NaiveDate::from_ymd_opt(2026, 11, 27).unwrap();
        let event_start = today - Duration::days(event_days_ago);
        let session_day = (event_start + Duration::days(session_after)).min(today);
        // Born at the latest on the day of the session.
        let birth = (NaiveDate::from_ymd_opt(1901, 1, 1).unwrap() + Duration::days(birth_days)).min(session_day);
        let mut record = json!({
            "schema": "vaitio.psychotherapy-record/v1",
            "record_id": format!("EMR-{individual}-{birth_days}"),
            "organization": {"oid": "1.2.246.10.12345678.10.1", "name": "Generated Clinic"},
            "patient": {"hetu": hetu(birth, individual), "given": given, "family": family,
                "birth_date": birth.to_string()},
            "therapist": {"terhikki": terhikki, "given": therapist_given, "family": "Korhonen", "profession": "psychotherapist"},
            "service_event": {"oid": format!("1.2.246.10.12345678.10.1.77.{individual}"), "start": event_start.to_string(),
                "end": if ended { Some(session_day.to_string()) } else { None }},
            "session": {"start": format!("{session_day}T10:00:00+02:00"), "minutes": minutes, "modality": modality, "setting": setting},
            "diagnoses": diagnoses.iter().enumerate().map(|(i, (category, sub))| json!({
                "icd10": match sub { Some(sub) => format!("{}.{sub}", CATEGORIES[*category]), None => CATEGORIES[*category].to_owned() },
                "primary": primary && i == 0,
            })).collect::<Vec<_>>(),
            "assessments": assessments.iter().map(|(instrument, score)| {
                let instrument = &INSTRUMENTS[*instrument];
                json!({"instrument": instrument.name, "score": i64::from(*score) % (instrument.max_score + 1), "date": session_day.to_string()})
            }).collect::<Vec<_>>(),
            "note": {"kind": note_kind, "text": note},
        });
        if let Some(gender) = gender {
            record["patient"]["gender"] = json!(gender);
        }
        if let Some(plan) = plan {
            record["plan"] = json!(plan);
        }
        if let Some(risk) = risk {
            record["risk"] = json!({"suicide": risk});
        }
        record
    }
}

fn document_of(record: &Value) -> Value {
    let checked = parse_record(record.to_string().as_bytes(), &limits())
        .unwrap_or_else(|e| panic!("the generator made a refused record: {:?}\n{record}", e.issues()));
    translate(&checked, &ids(&checked), "2026-11-28T12:00:00.000Z")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn generated_records_become_valid_documents(record in record()) {
        let document = document_of(&record);
        let parsed = parse_resource_value(ResourceType::Bundle, document.clone());
        prop_assert!(parsed.is_ok(), "{:?}", parsed.err().map(|e| e.issues()));
        // The free text appears only escaped: no markup of the submitter's reaches the narrative.
        let composition = &document["entry"][0]["resource"];
        for section in composition["section"].as_array().unwrap() {
            let div = section["text"]["div"].as_str().unwrap();
            let inner = div.strip_prefix("<div xmlns=\"http://www.w3.org/1999/xhtml\">").unwrap().strip_suffix("</div>").unwrap();
            let markup: String = inner.replace("<p>", "").replace("</p>", "");
            prop_assert!(!markup.contains('<') && !markup.contains('>'), "{div}");
        }
    }

    #[test]
    fn mutations_of_generated_documents_are_refused(record in record(), which in 0..MUTATIONS.len()) {
        let mutation = &MUTATIONS[which];
        let mut document = document_of(&record);
        // The mutations address the example's entries by position; generated documents have
        // the same first six entries, and the last ones only with a diagnosis and an assessment.
        let entries = document["entry"].as_array().unwrap();
        let kinds: Vec<&str> = entries.iter().map(|e| e["resource"]["resourceType"].as_str().unwrap()).collect();
        prop_assume!(kinds.get(6) == Some(&"Condition") && kinds.get(7) == Some(&"Observation"));
        (mutation.change)(&mut document);
        let issues = refusal(mutation.name, document);
        prop_assert!(
            issues.iter().any(|(code, at)| *code == mutation.code && at == mutation.expression),
            "{}: {:?}", mutation.name, issues
        );
    }
}
