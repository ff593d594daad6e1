//! Every attempt on a patient's record is theirs to see: each output path × each outcome
//! (released, withheld by the note rule, withheld by the patient's Consent, refused as absent),
//! asserted in the patient's access log and the auditor's view, while the requester's answer
//! stays the one they would get for what does not exist. And the register cannot be browsed:
//! what one search appends to the log is bounded by its page, not by the patient's record.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use vaitio_conformance::client::Client;

use super::support::*;

const GP: &str = "10088888888";
const OTHER_HETU: &str = "010101A900R";

/// The log entries the auditor finds for `query` that are not in `seen`, oldest first.
/// Whether `log` (a patient's AuditEvent Bundle) holds `entry` as an auditor saw it: the same
/// event, under the id the patient sees it by.
fn holds(log: &Value, entry: &Value) -> bool {
    let without_id = |resource: &Value| {
        let mut resource = resource.clone();
        resource.as_object_mut().map(|fields| fields.remove("id"));
        resource
    };
    log["entry"].as_array().into_iter().flatten().any(|e| without_id(&e["resource"]) == without_id(entry))
}

fn new_entries(auditor: &Client, query: &str, seen: &BTreeSet<String>) -> Vec<Value> {
    let page = auditor.get(&format!("/AuditEvent?{query}&_count=100")).unwrap();
    assert_eq!(page.status, 200, "{}", page.text());
    let mut entries: Vec<Value> = page.json().unwrap()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .filter(|r| !seen.contains(r["id"].as_str().unwrap()))
        .collect();
    entries.reverse();
    entries
}

fn ids(entries: &[Value]) -> BTreeSet<String> {
    entries.iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

/// The `detail` of an entity with this type code, e.g. the deciding rule.
fn detail<'a>(entry: &'a Value, detail_type: &str) -> Vec<&'a str> {
    entry["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|entity| entity["detail"].as_array().into_iter().flatten())
        .filter(|d| d["type"] == detail_type)
        .filter_map(|d| d["valueString"].as_str())
        .collect()
}

fn references(entry: &Value) -> Vec<String> {
    entry["entity"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|entity| entity["what"]["reference"].as_str().map(str::to_owned))
        .collect()
}

pub fn deny_organisation(patient_id: &str, org: &str) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient_id}")}, "dateTime": "2026-11-01T10:00:00+02:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{org}")}}}]}
    })
}

/// What the requester sees, with the ids that differ between two requests blanked out: a
/// withheld resource must answer exactly like an absent one.
fn shape(answer: &vaitio_conformance::client::Answer, ids: &[&str]) -> (u16, String) {
    let mut text = answer.text();
    for id in ids {
        text = text.replace(id, "ID");
    }
    let mut value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if value["resourceType"] == "Bundle" {
        // A searchset's own id, time and links differ from request to request.
        for volatile in ["id", "meta", "link"] {
            value.as_object_mut().unwrap().remove(volatile);
        }
    }
    (answer.status, value.to_string())
}

/// One cell of the matrix: the path asked, the absent twin it must answer like, the outcome,
/// and the patient it belongs to (their id and their own client).
type Cell<'a> = (String, String, Expect, Option<(&'a str, &'a Client)>);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Expect {
    Released,
    NoteRule,
    Consent,
    Absent,
}

on_both_backends! {
    fn every_output_path_and_outcome_is_attributed(gateway) {
        let author = &gateway.client;
        let p = gateway.create(&patient(HETU));
        let visit = gateway.create(&encounter(&p, "2026-03-02T10:00:00+02:00"));
        let note = gateway.create(&note_composition(&p, NOTE));
        let q = gateway.create(&patient(OTHER_HETU));
        let q_visit = gateway.create(&encounter(&q, "2026-03-03T10:00:00+02:00"));
        let denial = gateway.patient(OTHER_HETU).post_json("/Consent", &deny_organisation(&q, OTHER_ORG)).unwrap();
        assert_eq!(denial.status, 201, "{}", denial.text());
        let consent_id = denial.json().unwrap()["id"].as_str().unwrap().to_owned();
        assert_eq!(author.get(&format!("/Encounter/{visit}")).unwrap().status, 200);

        let gp = gateway.professional(OTHER_ORG, GP, "physician");
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let patient_p = gateway.patient(HETU);
        let patient_q = gateway.patient(OTHER_HETU);

        // (path, what it reaches, the absent twin it must look like, expected outcome, patient)
        let cells: Vec<Cell> = vec![
            (format!("/Encounter/{visit}"), "/Encounter/absent-0".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Encounter/{visit}/_history/1"), "/Encounter/absent-0/_history/1".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Encounter/{visit}/_history"), "/Encounter/absent-0/_history".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Encounter?patient={p}"), "/Encounter?patient=absent-0".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Patient/{p}/$everything"), "/Patient/absent-0/$everything".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Patient?_id={p}&_revinclude=Encounter:patient"), "/Patient?_id=absent-0".into(), Expect::Released, Some((&p, &patient_p))),
            (format!("/Composition/{note}"), "/Composition/absent-0".into(), Expect::NoteRule, Some((&p, &patient_p))),
            (format!("/Composition/{note}/_history/1"), "/Composition/absent-0/_history/1".into(), Expect::NoteRule, Some((&p, &patient_p))),
            (format!("/Composition/{note}/_history"), "/Composition/absent-0/_history".into(), Expect::NoteRule, Some((&p, &patient_p))),
            (format!("/Composition?patient={p}"), "/Composition?patient=absent-0".into(), Expect::NoteRule, Some((&p, &patient_p))),
            (format!("/Encounter/{q_visit}"), "/Encounter/absent-0".into(), Expect::Consent, Some((&q, &patient_q))),
            (format!("/Encounter/{q_visit}/_history"), "/Encounter/absent-0/_history".into(), Expect::Consent, Some((&q, &patient_q))),
            (format!("/Encounter?patient={q}"), "/Encounter?patient=absent-0".into(), Expect::Consent, Some((&q, &patient_q))),
            (format!("/Patient/{q}/$everything"), "/Patient/absent-0/$everything".into(), Expect::Consent, Some((&q, &patient_q))),
            ("/Encounter/absent-1".into(), "/Encounter/absent-0".into(), Expect::Absent, None),
        ];
        let own_ids = [visit.as_str(), note.as_str(), q_visit.as_str(), p.as_str(), q.as_str(), "absent-0", "absent-1"];
        for (path, absent, expect, owner) in cells {
            // The absent twin first, so that what it appends is not taken for the cell's.
            let twin = gp.get(&absent).unwrap();
            let seen_gp = ids(&new_entries(&auditor, &format!("agent={GP}"), &BTreeSet::new()));
            let answer = gp.get(&path).unwrap();
            // The requester's answer: released data is served; withheld answers like absent.
            if expect == Expect::Released {
                assert_eq!(answer.status, 200, "{path}: {}", answer.text());
                assert!(!answer.text().contains("\"total\":0"), "{path}: {}", answer.text());
            } else {
                assert_eq!(shape(&answer, &own_ids), shape(&twin, &own_ids), "{path} answers unlike {absent}");
            }
            let Some((patient_id, patient_client)) = owner else {
                // Absent: recorded in the auditor's view, against no patient.
                let mine = new_entries(&auditor, &format!("agent={GP}"), &seen_gp);
                assert!(!mine.is_empty(), "{path}: the attempt is in the auditor's view");
                assert!(mine.iter().all(|e| e["outcome"] != "0"), "{path}: {mine:?}");
                continue;
            };
            // The auditor's view of this patient holds the attempt, with what was asked for.
            let theirs = new_entries(&auditor, &format!("agent={GP}&patient=Patient/{patient_id}"), &seen_gp);
            assert!(!theirs.is_empty(), "{path}: no entry against the patient");
            let rules: Vec<&str> = theirs.iter().flat_map(|e| detail(e, "rule")).collect();
            match expect {
                Expect::Released => {
                    assert!(theirs.iter().any(|e| e["outcome"] == "0"), "{path}: {theirs:?}");
                    assert!(rules.contains(&"Treatment"), "{path}: {rules:?}");
                }
                Expect::NoteRule => {
                    assert!(rules.contains(&"NoteRestrictedToAuthor"), "{path}: {rules:?}");
                    assert!(theirs.iter().any(|e| references(e).iter().any(|r| r.starts_with(&format!("Composition/{note}")))), "{path}: what was asked for: {theirs:?}");
                }
                Expect::Consent => {
                    assert!(rules.contains(&"PatientDenied"), "{path}: {rules:?}");
                    assert!(theirs.iter().any(|e| references(e).contains(&format!("Consent/{consent_id}"))), "{path}: which Consent: {theirs:?}");
                }
                Expect::Absent => unreachable!(),
            }
            // The patient's own log shows the same entries, refused and withheld ones included.
            let log = patient_client.get("/AuditEvent?_count=100").unwrap().json().unwrap();
            for entry in &theirs {
                assert!(holds(&log, entry), "{path}: entry {} not in the patient's log", entry["id"]);
            }
        }
    }

    fn a_search_that_finds_nothing_is_still_the_named_patients_and_its_query_holds_no_hetu(gateway) {
        let p = gateway.create(&patient(HETU));
        let gp = gateway.professional(OTHER_ORG, GP, "physician");
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let seen = ids(&new_entries(&auditor, &format!("patient=Patient/{p}"), &BTreeSet::new()));
        // Nothing of the kind exists for this patient: the attempt is recorded against them.
        let empty = gp.get(&format!("/Observation?patient:identifier=urn:oid:1.2.246.21|{HETU}")).unwrap();
        assert_eq!(empty.json().unwrap()["total"], 0);
        let (readings, entries): (Vec<Value>, Vec<Value>) = new_entries(&auditor, &format!("patient=Patient/{p}"), &seen)
            .into_iter()
            .partition(|entry| entry.to_string().contains("\"auditor-1\""));
        assert_eq!(readings.len(), 1, "the auditor's first reading of the patient's log is in it: {readings:?}");
        assert_eq!(entries.len(), 1, "{entries:?}");
        assert_eq!(detail(&entries[0], "count"), ["0"]);
        let text = entries[0].to_string();
        assert!(text.contains("Observation?patient:identifier=urn:oid:1.2.246.21|"), "the query is recorded: {text}");
        assert!(!text.contains(HETU) && !text.contains("131052"), "the query holds the HETU: {text}");
        // The patient sees it.
        let log = gateway.patient(HETU).get("/AuditEvent?_count=100").unwrap().text();
        assert!(holds(&serde_json::from_str(&log).unwrap(), &entries[0]), "{log}");
        // And the auditor's readings of their log, by Patient id and by HETU, each in it.
        let mine = |log: &str| log.matches("\"auditor-1\"").count();
        let before = mine(&log);
        new_entries(&auditor, &format!("patient:identifier=urn:oid:1.2.246.21|{HETU}"), &BTreeSet::new());
        let log = gateway.patient(HETU).get("/AuditEvent?_count=100").unwrap().text();
        assert!(before >= 2 && mine(&log) > before, "{before}: {log}");

        // Nor is a HETU kept where it was typed in place of an id: it is kept as its keyed token.
        let by_gp = format!("agent={GP}");
        let before = ids(&new_entries(&auditor, &by_gp, &BTreeSet::new()));
        for probe in [format!("/Bundle?patient={HETU}"), format!("/Bundle?patient=Patient/{HETU}"), format!("/Patient?_id={HETU}")]
        {
            let answer = gp.get(&probe).unwrap();
            assert!(answer.status < 500, "{probe}: {}", answer.status);
        }
        let probes = new_entries(&auditor, &by_gp, &before);
        assert_eq!(probes.len(), 3, "{probes:?}");
        for entry in &probes {
            let text = entry.to_string();
            assert!(text.contains("?patient=") || text.contains("?_id="), "the query is recorded: {text}");
            assert!(!text.contains(HETU) && !text.contains("131052"), "the query holds the HETU: {text}");
        }
    }

    fn what_a_search_appends_is_bounded_by_its_page(gateway) {
        let p = gateway.create(&patient(HETU));
        for day in 1..=25 {
            gateway.create(&encounter(&p, &format!("2026-03-{day:02}T10:00:00+02:00")));
        }
        for n in 0..5 {
            gateway.create(&note_composition(&p, &format!("{NOTE} {n}")));
        }
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let gp = gateway.professional(OTHER_ORG, GP, "physician");
        for (client, who, path, released, withheld) in [
            (&gateway.client, THERAPIST, format!("/Encounter?patient={p}&_count=3"), 25, 0),
            (&gp, GP, format!("/Encounter?patient={p}&_count=3"), 25, 0),
            (&gp, GP, format!("/Composition?patient={p}&_count=3"), 0, 5),
        ] {
            let seen = ids(&new_entries(&auditor, &format!("agent={who}"), &BTreeSet::new()));
            let answer = client.get(&path).unwrap().json().unwrap();
            assert_eq!(answer["total"], released, "{path}");
            let entries = new_entries(&auditor, &format!("agent={who}"), &seen);
            assert!(entries.len() <= 2, "{path}: one event for what was released, one per reason withheld: {entries:?}");
            let listed: usize = entries.iter().map(|e| references(e).iter().filter(|r| r.contains("/_history/")).count()).sum();
            assert!(listed <= 3, "{path}: {listed} resources listed for a page of 3");
            let counted: u64 = entries.iter().flat_map(|e| detail(e, "count")).map(|c| c.parse::<u64>().unwrap()).sum();
            assert_eq!(counted, released + withheld, "{path}: every resource judged is counted");
        }
    }
}
