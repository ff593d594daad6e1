//! Record → national FHIR R4 document Bundle. Pure and deterministic: the same record and ids
//! give the same document, which is what makes a repeated submission idempotent.
//!
//! Codes are the looked-up ones of CODES.md. The note and plan are free text and appear only in
//! the Composition's section narratives (escaped XHTML); the Composition, and so the document,
//! is labelled `PSYTHPN` and confidentiality `R`.

use chrono::Duration;
use serde_json::Value;

use crate::codes::{
    ACT_CODE, ASSESSMENT_PROFILE, COMPOSITION_PROFILE, DIAGNOSIS_PROFILE, DOCUMENT_PROFILE, LOINC,
    ORGANIZATION_PROFILE, PATIENT_PROFILE, PRACTITIONER_PROFILE, SERVICE_EVENT_PROFILE, SESSION_MODALITY_SYSTEM,
    SESSION_PROFILE, SESSION_SETTING_SYSTEM, SNOMED,
};
use crate::hetu::HETU_SYSTEM;
use crate::json::{object, object_of, string};
use crate::record::{instrument, CheckedRecord, Modality, NoteKind, Setting};

// The code systems live in the leaf `codes`; these two stay reachable here, where the gateway
// and the tests have always found them.
pub use crate::codes::{ICD10_SYSTEM, TERHIKKI_SYSTEM};

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
    let mut div = String::with_capacity(text.len() + 64);
    div.push_str("<div xmlns=\"http://www.w3.org/1999/xhtml\">");
    let mut paragraphs = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        div.push_str("<p>");
        div.push_str(&escape_xhtml(line));
        div.push_str("</p>");
        paragraphs += 1;
    }
    if paragraphs == 0 {
        div.push_str("<p></p>");
    }
    div.push_str("</div>");
    object([("status", string("generated")), ("div", Value::String(div))])
}

/// `PSYTHPN` and confidentiality `R`: what the consent rules act on.
fn note_labels() -> Value {
    Value::Array(vec![
        coding_with_display(ACT_CODE, "PSYTHPN", "psychotherapy note"),
        coding_with_display("http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "R", "restricted"),
    ])
}

fn urn(id: &str) -> String {
    format!("urn:uuid:{id}")
}

fn reference(id: &str) -> Value {
    object([("reference", string(urn(id)))])
}

fn coding(system: &str, code: &str) -> Value {
    object([("system", string(system)), ("code", string(code))])
}

fn coding_with_display(system: &str, code: &str, display: &str) -> Value {
    object([("system", string(system)), ("code", string(code)), ("display", string(display))])
}

/// A CodeableConcept of one coding.
fn concept(coding: Value) -> Value {
    object([("coding", Value::Array(vec![coding]))])
}

/// `meta` naming the profile the resource claims.
fn meta(profile: &str) -> Value {
    object([("profile", Value::Array(vec![string(profile)]))])
}

/// `meta` naming the profile, with the note labels.
fn labelled_meta(profile: &str) -> Value {
    object([("profile", Value::Array(vec![string(profile)])), ("security", note_labels())])
}

/// An official identifier.
fn identifier(system: &str, value: impl Into<String>) -> Value {
    object([("use", string("official")), ("system", string(system)), ("value", string(value))])
}

fn human_name(given: &[String], family: &str) -> Value {
    // FHIR has no empty arrays: no given names, no `given`.
    let name = if given.is_empty() {
        object([("use", string("official")), ("family", string(family))])
    } else {
        let given = given.iter().map(|g| string(g.as_str())).collect();
        object([("use", string("official")), ("family", string(family)), ("given", Value::Array(given))])
    };
    Value::Array(vec![name])
}

/// The document of a checked record. `assembled` is the Bundle's timestamp (FHIR instant).
pub fn translate(checked: &CheckedRecord, ids: &DocumentIds, assembled: &str) -> Value {
    let record = &checked.record;
    let session_start = checked.session_start;
    let session_end = session_start + Duration::minutes(i64::from(record.session.minutes));
    let seconds = chrono::SecondsFormat::Secs;
    // Every object is built at its final size with its members in order (`json::object`): the
    // `json!` macro grew each map member by member and hashed placeholders twice.

    let patient = object_of(vec![
        ("resourceType", Some(string("Patient"))),
        ("meta", Some(meta(PATIENT_PROFILE))),
        (
            "identifier",
            Some(Value::Array(vec![object([
                ("use", string("official")),
                ("type", concept(coding("http://terminology.hl7.org/CodeSystem/v2-0203", "NNFIN"))),
                ("system", string(HETU_SYSTEM)),
                ("value", string(checked.hetu.expose())),
            ])])),
        ),
        ("name", Some(human_name(&record.patient.given, &record.patient.family))),
        ("gender", record.patient.gender.map(|gender| string(gender.code()))),
        ("birthDate", record.patient.birth_date.as_deref().map(string)),
    ]);
    let practitioner = object([
        ("resourceType", string("Practitioner")),
        ("meta", meta(PRACTITIONER_PROFILE)),
        ("identifier", Value::Array(vec![identifier(TERHIKKI_SYSTEM, record.therapist.terhikki.as_str())])),
        ("name", human_name(&record.therapist.given, &record.therapist.family)),
        (
            "qualification",
            Value::Array(vec![object([("code", object([("text", string(record.therapist.profession.as_str()))]))])]),
        ),
    ]);
    let organization = object([
        ("resourceType", string("Organization")),
        ("meta", meta(ORGANIZATION_PROFILE)),
        (
            "identifier",
            Value::Array(vec![identifier("urn:ietf:rfc:3986", format!("urn:oid:{}", record.organization.oid))]),
        ),
        ("active", Value::Bool(true)),
        ("name", string(record.organization.name.as_str())),
    ]);
    let service_event = object([
        ("resourceType", string("Encounter")),
        ("meta", meta(SERVICE_EVENT_PROFILE)),
        (
            "identifier",
            Value::Array(vec![identifier("urn:ietf:rfc:3986", format!("urn:oid:{}", record.service_event.oid))]),
        ),
        ("status", string(if record.service_event.end.is_some() { "finished" } else { "in-progress" })),
        ("class", coding_with_display(ACT_CODE, "AMB", "ambulatory")),
        (
            "type",
            Value::Array(vec![concept(coding_with_display(SNOMED, "75516001", "Psychotherapy (regime/therapy)"))]),
        ),
        ("subject", reference(&ids.patient)),
        (
            "period",
            object_of(vec![
                ("start", Some(string(record.service_event.start.as_str()))),
                ("end", record.service_event.end.as_deref().map(string)),
            ]),
        ),
        ("serviceProvider", reference(&ids.organization)),
    ]);
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
        let diagnoses: Vec<Value> = record
            .diagnoses
            .iter()
            .zip(&ids.conditions)
            .map(|(diagnosis, id)| {
                object_of(vec![("condition", Some(reference(id))), ("rank", diagnosis.primary.then(|| Value::from(1)))])
            })
            .collect();
        object_of(vec![
            ("resourceType", Some(string("Encounter"))),
            ("meta", Some(meta(SESSION_PROFILE))),
            ("status", Some(string("finished"))),
            ("class", Some(coding_with_display(ACT_CODE, class_code, class_display))),
            (
                "type",
                Some(Value::Array(vec![
                    object([
                        (
                            "coding",
                            Value::Array(vec![
                                coding_with_display(SNOMED, type_code, type_display),
                                coding_with_display(SESSION_MODALITY_SYSTEM, modality_code, modality_display),
                            ]),
                        ),
                        ("text", string(format!("{modality_display} psychotherapy session"))),
                    ]),
                    concept(coding_with_display(SESSION_SETTING_SYSTEM, setting_code, setting_display)),
                ])),
            ),
            ("subject", Some(reference(&ids.patient))),
            ("participant", Some(Value::Array(vec![object([("individual", reference(&ids.practitioner))])]))),
            (
                "period",
                Some(object([
                    ("start", string(session_start.to_rfc3339_opts(seconds, false))),
                    ("end", string(session_end.to_rfc3339_opts(seconds, false))),
                ])),
            ),
            (
                "length",
                Some(object([
                    ("value", Value::from(record.session.minutes)),
                    ("unit", string("min")),
                    ("system", string("http://unitsofmeasure.org")),
                    ("code", string("min")),
                ])),
            ),
            ("serviceProvider", Some(reference(&ids.organization))),
            ("partOf", Some(reference(&ids.service_event))),
            ("diagnosis", (!diagnoses.is_empty()).then_some(Value::Array(diagnoses))),
        ])
    };
    let recorded = session_start.date_naive().to_string();
    let conditions: Vec<Value> = record
        .diagnoses
        .iter()
        .map(|diagnosis| {
            object([
                ("resourceType", string("Condition")),
                ("meta", meta(DIAGNOSIS_PROFILE)),
                (
                    "clinicalStatus",
                    concept(coding("http://terminology.hl7.org/CodeSystem/condition-clinical", "active")),
                ),
                (
                    "verificationStatus",
                    concept(coding("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed")),
                ),
                (
                    "category",
                    Value::Array(vec![concept(coding(
                        "http://terminology.hl7.org/CodeSystem/condition-category",
                        "encounter-diagnosis",
                    ))]),
                ),
                ("code", concept(coding(ICD10_SYSTEM, &diagnosis.icd10))),
                ("subject", reference(&ids.patient)),
                ("encounter", reference(&ids.session)),
                ("recordedDate", string(recorded.as_str())),
            ])
        })
        .collect();
    let observations: Vec<Value> = record
        .assessments
        .iter()
        .map(|assessment| {
            let known = instrument(&assessment.instrument);
            object([
                ("resourceType", string("Observation")),
                ("meta", meta(ASSESSMENT_PROFILE)),
                ("status", string("final")),
                (
                    "category",
                    Value::Array(vec![concept(coding(
                        "http://terminology.hl7.org/CodeSystem/observation-category",
                        "survey",
                    ))]),
                ),
                (
                    "code",
                    object([
                        (
                            "coding",
                            Value::Array(vec![coding_with_display(
                                LOINC,
                                known.map(|i| i.loinc).unwrap_or_default(),
                                known.map(|i| i.display).unwrap_or_default(),
                            )]),
                        ),
                        ("text", string(assessment.instrument.as_str())),
                    ]),
                ),
                ("subject", reference(&ids.patient)),
                ("encounter", reference(&ids.session)),
                ("effectiveDateTime", string(assessment.date.as_str())),
                ("performer", Value::Array(vec![reference(&ids.practitioner)])),
                ("valueInteger", Value::from(assessment.score)),
            ])
        })
        .collect();

    let note_title = match record.note.kind {
        NoteKind::Progress => "Session note",
        NoteKind::Intake => "Intake note",
        NoteKind::Closing => "Closing note",
    };
    let section = |title: &str, code: &str, display: &str, text: Value, entry: Option<Value>| {
        object_of(vec![
            ("title", Some(string(title))),
            ("code", Some(concept(coding_with_display(LOINC, code, display)))),
            ("text", Some(text)),
            ("entry", entry),
        ])
    };
    let entries_of = |ids: &[String]| Some(Value::Array(ids.iter().map(|id| reference(id)).collect()));
    let mut sections = vec![section(note_title, "61150-9", "Subjective Narrative", narrative(&record.note.text), None)];
    if !conditions.is_empty() {
        let listed: Vec<String> = record
            .diagnoses
            .iter()
            .map(|d| format!("{}{}", d.icd10, if d.primary { " (primary)" } else { "" }))
            .collect();
        let text = narrative(&listed.join("\n"));
        sections.push(section("Diagnoses", "11450-4", "Problem list - Reported", text, entries_of(&ids.conditions)));
    }
    if !observations.is_empty() || record.risk.is_some() {
        let mut lines: Vec<String> =
            record.assessments.iter().map(|a| format!("{} {}: {}", a.date, a.instrument, a.score)).collect();
        if let Some(risk) = &record.risk {
            lines.push(format!("Suicide risk: {}", risk.suicide.text()));
        }
        let entry = if observations.is_empty() { None } else { entries_of(&ids.observations) };
        let text = narrative(&lines.join("\n"));
        sections.push(section("Assessment and risk", "51848-0", "Evaluation note", text, entry));
    }
    if let Some(plan) = record.plan.as_deref().filter(|p| !p.trim().is_empty()) {
        sections.push(section("Plan", "18776-5", "Plan of care note", narrative(plan), None));
    }
    let composition = object([
        ("resourceType", string("Composition")),
        ("meta", labelled_meta(COMPOSITION_PROFILE)),
        ("identifier", object([("system", string("urn:ietf:rfc:3986")), ("value", string(urn(&ids.composition)))])),
        ("status", string("final")),
        ("type", concept(coding_with_display(LOINC, "34904-3", "Mental health Progress note"))),
        ("subject", reference(&ids.patient)),
        ("encounter", reference(&ids.session)),
        ("date", string(session_start.to_rfc3339_opts(seconds, false))),
        ("author", Value::Array(vec![reference(&ids.practitioner)])),
        ("title", string("Psychotherapy session note")),
        ("confidentiality", string("R")),
        ("custodian", reference(&ids.organization)),
        ("section", Value::Array(sections)),
    ]);

    let mut entries = Vec::with_capacity(6 + conditions.len() + observations.len());
    entries.extend([
        (ids.composition.as_str(), composition),
        (ids.patient.as_str(), patient),
        (ids.practitioner.as_str(), practitioner),
        (ids.organization.as_str(), organization),
        (ids.service_event.as_str(), service_event),
        (ids.session.as_str(), session),
    ]);
    entries.extend(ids.conditions.iter().map(String::as_str).zip(conditions));
    entries.extend(ids.observations.iter().map(String::as_str).zip(observations));
    let entries = entries
        .into_iter()
        .map(|(id, resource)| object([("fullUrl", string(urn(id))), ("resource", resource)]))
        .collect();
    object([
        ("resourceType", string("Bundle")),
        ("meta", labelled_meta(DOCUMENT_PROFILE)),
        ("identifier", object([("system", string("urn:ietf:rfc:3986")), ("value", string(urn(&ids.document)))])),
        ("type", string("document")),
        ("timestamp", string(assembled)),
        ("entry", Value::Array(entries)),
    ])
}
