//! Record → national FHIR R4 document Bundle. Pure and deterministic: the same record and ids
//! give the same document, which is what makes a repeated submission idempotent.
//!
//! Codes are the looked-up ones of CODES.md. The note and plan are free text and appear only in
//! the Composition's section narratives (escaped XHTML); the Composition, and so the document,
//! is labelled `PSYTHPN` and confidentiality `R`.

use chrono::Duration;
use serde_json::{json, Value};

use crate::hetu::HETU_SYSTEM;
use crate::profiles::{
    ASSESSMENT_PROFILE, COMPOSITION_PROFILE, DIAGNOSIS_PROFILE, DOCUMENT_PROFILE, ORGANIZATION_PROFILE,
    PATIENT_PROFILE, PRACTITIONER_PROFILE, SERVICE_EVENT_PROFILE, SESSION_MODALITY_SYSTEM, SESSION_PROFILE,
    SESSION_SETTING_SYSTEM,
};
use crate::record::{instrument, CheckedRecord, Modality, NoteKind, Setting};

pub const TERHIKKI_SYSTEM: &str = "urn:oid:1.2.246.537.26";
/// THL's ICD-10 classification with its version, as HL7 Finland's examples write it.
pub const ICD10_SYSTEM: &str = "urn:oid:1.2.246.537.6.1.1999";
const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

/// The `urn:uuid:` ids of a document's parts, chosen by the caller (derived from the
/// organisation and record id, so a repeat gets the same ones).
#[derive(Clone, Debug)]
pub struct DocumentIds {
    pub document: String,
    pub composition: String,
    pub patient: String,
    pub practitioner: String,
    pub organization: String,
    pub service_event: String,
    pub session: String,
    pub conditions: Vec<String>,
    pub observations: Vec<String>,
}

impl DocumentIds {
    /// Ids from `uuid(name)` for each part's name (`composition`, `condition/0`, …).
    pub fn derive(checked: &CheckedRecord, mut uuid: impl FnMut(&str) -> String) -> Self {
        let record = &checked.record;
        DocumentIds {
            document: uuid("document"),
            composition: uuid("composition"),
            patient: uuid("patient"),
            practitioner: uuid("practitioner"),
            organization: uuid("organization"),
            service_event: uuid("service-event"),
            session: uuid("session"),
            conditions: (0..record.diagnoses.len()).map(|i| uuid(&format!("condition/{i}"))).collect(),
            observations: (0..record.assessments.len()).map(|i| uuid(&format!("observation/{i}"))).collect(),
        }
    }
}

/// Escapes text for XHTML: whatever a note says, it stays text.
pub fn escape_xhtml(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0.
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// A narrative `div`: one paragraph per line of text.
fn narrative(text: &str) -> Value {
    let paragraphs: String =
        text.lines().filter(|l| !l.trim().is_empty()).map(|l| format!("<p>{}</p>", escape_xhtml(l))).collect();
    let body = if paragraphs.is_empty() { "<p></p>".to_owned() } else { paragraphs };
    let mut text = json!({"status": "generated"});
    text["div"] = Value::String(format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>"));
    text
}

/// `PSYTHPN` and confidentiality `R`: what the consent rules act on.
fn note_labels() -> Value {
    json!([
        {"system": ACT_CODE, "code": "PSYTHPN", "display": "psychotherapy note"},
        {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R", "display": "restricted"}
    ])
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn reference(id: &str) -> Value {
    json!({"reference": urn(id)})
}

fn human_name(given: &[String], family: &str) -> Value {
    // FHIR has no empty arrays: no given names, no `given`.
    if given.is_empty() {
        json!([{"use": "official", "family": family}])
    } else {
        json!([{"use": "official", "family": family, "given": given}])
    }
}

/// The document of a checked record. `assembled` is the Bundle's timestamp (FHIR instant).
pub fn translate(checked: &CheckedRecord, ids: &DocumentIds, assembled: &str) -> Value {
    let record = &checked.record;
    let session_start = checked.session_start;
    let session_end = session_start + Duration::minutes(i64::from(record.session.minutes));
    let seconds = chrono::SecondsFormat::Secs;

    let patient = {
        let mut patient = json!({
            "resourceType": "Patient",
            "meta": {"profile": [PATIENT_PROFILE]},
            "identifier": [{"use": "official",
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "NNFIN"}]},
                "system": HETU_SYSTEM, "value": checked.hetu.expose()}],
            "name": null,
        });
        patient["name"] = human_name(&record.patient.given, &record.patient.family);
        if let Some(gender) = record.patient.gender {
            patient["gender"] = json!(gender.code());
        }
        if let Some(birth) = &record.patient.birth_date {
            patient["birthDate"] = json!(birth);
        }
        patient
    };
    let mut practitioner = json!({
        "resourceType": "Practitioner",
        "meta": {"profile": [PRACTITIONER_PROFILE]},
        "identifier": [{"use": "official", "system": TERHIKKI_SYSTEM, "value": record.therapist.terhikki}],
        "name": null,
        "qualification": [{"code": {"text": record.therapist.profession}}],
    });
    practitioner["name"] = human_name(&record.therapist.given, &record.therapist.family);
    let organization = json!({
        "resourceType": "Organization",
        "meta": {"profile": [ORGANIZATION_PROFILE]},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", record.organization.oid)}],
        "active": true,
        "name": record.organization.name,
    });
    let service_event = {
        let mut period = json!({"start": record.service_event.start});
        if let Some(end) = &record.service_event.end {
            period["end"] = json!(end);
        }
        let mut service_event = json!({
            "resourceType": "Encounter",
            "meta": {"profile": [SERVICE_EVENT_PROFILE]},
            "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", record.service_event.oid)}],
            "status": if record.service_event.end.is_some() { "finished" } else { "in-progress" },
            "class": {"system": ACT_CODE, "code": "AMB", "display": "ambulatory"},
            "type": [{"coding": [{"system": SNOMED, "code": "75516001", "display": "Psychotherapy (regime/therapy)"}]}],
            "subject": null,
            "period": null,
            "serviceProvider": null,
        });
        service_event["subject"] = reference(&ids.patient);
        service_event["period"] = period;
        service_event["serviceProvider"] = reference(&ids.organization);
        service_event
    };
    let (class_code, class_display) = match record.session.setting {
        Setting::InPerson => ("AMB", "ambulatory"),
        Setting::Video | Setting::Phone => ("VR", "virtual"),
    };
    let (type_code, type_display) = match record.session.modality {
        Modality::Individual => ("18512000", "Individual psychotherapy (regime/therapy)"),
        Modality::Group | Modality::Couple | Modality::Family => ("76168009", "Group psychotherapy (regime/therapy)"),
    };
    let (modality_code, modality_display) = match record.session.modality {
        Modality::Individual => ("individual", "Individual"),
        Modality::Group => ("group", "Group"),
        Modality::Couple => ("couple", "Couple"),
        Modality::Family => ("family", "Family"),
    };
    let (setting_code, setting_display) = match record.session.setting {
        Setting::InPerson => ("in-person", "In person"),
        Setting::Video => ("video", "Video"),
        Setting::Phone => ("phone", "Phone"),
    };
    let session = {
        let mut session = json!({
            "resourceType": "Encounter",
            "meta": {"profile": [SESSION_PROFILE]},
            "status": "finished",
            "class": {"system": ACT_CODE, "code": class_code, "display": class_display},
            "type": [
                {"coding": [{"system": SNOMED, "code": type_code, "display": type_display},
                    {"system": SESSION_MODALITY_SYSTEM, "code": modality_code, "display": modality_display}],
                    "text": format!("{modality_display} psychotherapy session")},
                {"coding": [{"system": SESSION_SETTING_SYSTEM, "code": setting_code, "display": setting_display}]},
            ],
            "subject": null,
            "participant": [{"individual": null}],
            "period": {"start": session_start.to_rfc3339_opts(seconds, false), "end": session_end.to_rfc3339_opts(seconds, false)},
            "length": {"value": record.session.minutes, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
            "serviceProvider": null,
            "partOf": null,
        });
        session["subject"] = reference(&ids.patient);
        session["participant"][0]["individual"] = reference(&ids.practitioner);
        session["serviceProvider"] = reference(&ids.organization);
        session["partOf"] = reference(&ids.service_event);
        let diagnoses: Vec<Value> = record
            .diagnoses
            .iter()
            .zip(&ids.conditions)
            .map(|(diagnosis, id)| {
                let mut entry = json!({"condition": null});
                entry["condition"] = reference(id);
                if diagnosis.primary {
                    entry["rank"] = json!(1);
                }
                entry
            })
            .collect();
        if !diagnoses.is_empty() {
            session["diagnosis"] = Value::Array(diagnoses);
        }
        session
    };
    let conditions: Vec<Value> = record
        .diagnoses
        .iter()
        .map(|diagnosis| {
            let mut condition = json!({
                "resourceType": "Condition",
                "meta": {"profile": [DIAGNOSIS_PROFILE]},
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis"}]}],
                "code": {"coding": [{"system": ICD10_SYSTEM, "code": diagnosis.icd10}]},
                "subject": null,
                "encounter": null,
                "recordedDate": session_start.date_naive().to_string(),
            });
            condition["subject"] = reference(&ids.patient);
            condition["encounter"] = reference(&ids.session);
            condition
        })
        .collect();
    let observations: Vec<Value> = record
        .assessments
        .iter()
        .map(|assessment| {
            let known = instrument(&assessment.instrument);
            let mut observation = json!({
                "resourceType": "Observation",
                "meta": {"profile": [ASSESSMENT_PROFILE]},
                "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
                "code": {"coding": [{"system": LOINC, "code": known.map(|i| i.loinc).unwrap_or_default(),
                    "display": known.map(|i| i.display).unwrap_or_default()}], "text": assessment.instrument},
                "subject": null,
                "encounter": null,
                "effectiveDateTime": assessment.date,
                "performer": [null],
                "valueInteger": assessment.score,
            });
            observation["subject"] = reference(&ids.patient);
            observation["encounter"] = reference(&ids.session);
            observation["performer"][0] = reference(&ids.practitioner);
            observation
        })
        .collect();

    let note_title = match record.note.kind {
        NoteKind::Progress => "Session note",
        NoteKind::Intake => "Intake note",
        NoteKind::Closing => "Closing note",
    };
    // `json!` copies every value it is given (through serde); built values (narratives,
    // sections, entries, references, labels) are moved into a `null` placeholder afterwards
    // instead, which keeps the member order.
    let section = |title: &str, code: &str, display: &str, text: Value| {
        let mut section =
            json!({"title": title, "code": {"coding": [{"system": LOINC, "code": code, "display": display}]}});
        section["text"] = text;
        section
    };
    let mut sections = vec![section(note_title, "61150-9", "Subjective Narrative", narrative(&record.note.text))];
    if !conditions.is_empty() {
        let listed: Vec<String> = record
            .diagnoses
            .iter()
            .map(|d| format!("{}{}", d.icd10, if d.primary { " (primary)" } else { "" }))
            .collect();
        let mut diagnoses = section("Diagnoses", "11450-4", "Problem list - Reported", narrative(&listed.join("\n")));
        diagnoses["entry"] = ids.conditions.iter().map(|id| reference(id)).collect();
        sections.push(diagnoses);
    }
    if !observations.is_empty() || record.risk.is_some() {
        let mut lines: Vec<String> =
            record.assessments.iter().map(|a| format!("{} {}: {}", a.date, a.instrument, a.score)).collect();
        if let Some(risk) = &record.risk {
            lines.push(format!("Suicide risk: {}", risk.suicide.text()));
        }
        let mut assessment = section("Assessment and risk", "51848-0", "Evaluation note", narrative(&lines.join("\n")));
        if !observations.is_empty() {
            assessment["entry"] = ids.observations.iter().map(|id| reference(id)).collect();
        }
        sections.push(assessment);
    }
    if let Some(plan) = record.plan.as_deref().filter(|p| !p.trim().is_empty()) {
        sections.push(section("Plan", "18776-5", "Plan of care note", narrative(plan)));
    }
    let mut composition = json!({
        "resourceType": "Composition",
        "meta": {"profile": [COMPOSITION_PROFILE], "security": null},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": urn(&ids.composition)},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "34904-3", "display": "Mental health Progress note"}]},
        "subject": null,
        "encounter": null,
        "date": session_start.to_rfc3339_opts(seconds, false),
        "author": [null],
        "title": "Psychotherapy session note",
        "confidentiality": "R",
        "custodian": null,
    });
    composition["meta"]["security"] = note_labels();
    composition["subject"] = reference(&ids.patient);
    composition["encounter"] = reference(&ids.session);
    composition["author"][0] = reference(&ids.practitioner);
    composition["custodian"] = reference(&ids.organization);
    composition["section"] = Value::Array(sections);

    let mut entries = vec![
        (ids.composition.as_str(), composition),
        (ids.patient.as_str(), patient),
        (ids.practitioner.as_str(), practitioner),
        (ids.organization.as_str(), organization),
        (ids.service_event.as_str(), service_event),
        (ids.session.as_str(), session),
    ];
    entries.extend(ids.conditions.iter().map(String::as_str).zip(conditions));
    entries.extend(ids.observations.iter().map(String::as_str).zip(observations));
    let mut bundle = json!({
        "resourceType": "Bundle",
        "meta": {"profile": [DOCUMENT_PROFILE], "security": null},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": urn(&ids.document)},
        "type": "document",
        "timestamp": assembled,
    });
    bundle["meta"]["security"] = note_labels();
    bundle["entry"] = entries
        .into_iter()
        .map(|(id, resource)| {
            let mut entry = serde_json::Map::new();
            entry.insert("fullUrl".into(), Value::String(urn(id)));
            entry.insert("resource".into(), resource);
            Value::Object(entry)
        })
        .collect();
    bundle
}
