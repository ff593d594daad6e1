//! The clinic's input contract, `vaitio.psychotherapy-record/v1`: what an EMR sends, read
//! strictly. Every field has a place in the national document; a field that has none is refused,
//! never silently dropped.

use chrono::{DateTime, FixedOffset, NaiveDate};
use serde::Deserialize;

use crate::codes::{ICD10_SYSTEM, MENTAL_DISORDERS_VALUE_SET};
use crate::error::{printable_name, Issue, IssueCode, ProfileError};
use crate::hetu::Hetu;
use crate::profiles::profiles;

pub const SCHEMA_V1: &str = "vaitio.psychotherapy-record/v1";

/// The contract as a JSON Schema, with every field's meaning (served by the gateway).
pub const JSON_SCHEMA_V1: &str = include_str!("../schemas/psychotherapy-record-v1.schema.json");

/// The example record of the contract, as EMR vendors are shown it.
pub const EXAMPLE_V1: &str = include_str!("../schemas/psychotherapy-record-v1.example.json");

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PsychotherapyRecord {
    pub schema: String,
    pub record_id: String,
    pub organization: OrganizationPart,
    pub patient: PatientPart,
    pub therapist: TherapistPart,
    pub service_event: ServiceEventPart,
    pub session: SessionPart,
    #[serde(default)]
    pub diagnoses: Vec<DiagnosisPart>,
    #[serde(default)]
    pub assessments: Vec<AssessmentPart>,
    pub note: NotePart,
    pub risk: Option<RiskPart>,
    pub plan: Option<String>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct OrganizationPart {
    pub oid: String,
    pub name: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct PatientPart {
    pub hetu: String,
    pub given: Vec<String>,
    pub family: String,
    pub birth_date: Option<String>,
    pub gender: Option<Gender>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Gender {
    Female,
    Male,
    Other,
    Unknown,
}

impl Gender {
    pub fn code(self) -> &'static str {
        match self {
            Gender::Female => "female",
            Gender::Male => "male",
            Gender::Other => "other",
            Gender::Unknown => "unknown",
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct TherapistPart {
    pub terhikki: String,
    pub given: Vec<String>,
    pub family: String,
    pub profession: String,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ServiceEventPart {
    pub oid: String,
    pub start: String,
    pub end: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Modality {
    Individual,
    Group,
    Couple,
    Family,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Setting {
    InPerson,
    Video,
    Phone,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SessionPart {
    pub start: String,
    pub minutes: u32,
    pub modality: Modality,
    pub setting: Setting,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct DiagnosisPart {
    pub icd10: String,
    #[serde(default)]
    pub primary: bool,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AssessmentPart {
    pub instrument: String,
    pub score: i64,
    pub date: String,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum NoteKind {
    Progress,
    Intake,
    Closing,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct NotePart {
    pub kind: NoteKind,
    pub text: String,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum RiskLevel {
    None,
    Low,
    Moderate,
    High,
}

impl RiskLevel {
    pub fn text(self) -> &'static str {
        match self {
            RiskLevel::None => "none",
            RiskLevel::Low => "low",
            RiskLevel::Moderate => "moderate",
            RiskLevel::High => "high",
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct RiskPart {
    pub suicide: RiskLevel,
}

/// An assessment instrument the document can code: its LOINC total-score code (CODES.md) and
/// the valid score range.
pub struct Instrument {
    pub name: &'static str,
    pub loinc: &'static str,
    pub display: &'static str,
    pub max_score: i64,
}

pub const INSTRUMENTS: [Instrument; 5] = [
    Instrument {
        name: "PHQ-9",
        loinc: "44261-6",
        display: "Patient Health Questionnaire 9 item (PHQ-9) total score [Reported]",
        max_score: 27,
    },
    Instrument {
        name: "GAD-7",
        loinc: "70274-6",
        display: "Generalized anxiety disorder 7 item (GAD-7) total score [Reported.PHQ]",
        max_score: 21,
    },
    Instrument {
        name: "PHQ-2",
        loinc: "55758-7",
        display: "Patient Health Questionnaire 2 item (PHQ-2) total score [Reported]",
        max_score: 6,
    },
    Instrument {
        name: "BDI-II",
        loinc: "89209-1",
        display: "Beck Depression Inventory II total score [BDI]",
        max_score: 63,
    },
    Instrument { name: "AUDIT", loinc: "75624-7", display: "Total score [AUDIT]", max_score: 40 },
];

pub fn instrument(name: &str) -> Option<&'static Instrument> {
    INSTRUMENTS.iter().find(|i| i.name == name)
}

/// Limits that come from the deployment's configuration and the clock.
pub struct RecordLimits {
    pub now: DateTime<FixedOffset>,
    pub max_note_bytes: usize,
}

/// A record that passed every check, with its parsed values.
pub struct CheckedRecord {
    pub record: PsychotherapyRecord,
    pub hetu: Hetu,
    pub session_start: DateTime<FixedOffset>,
}

/// Reads a record: JSON, UTF-8, the v1 schema, no unknown fields, and every value checked.
/// Errors name the field (`expression` is its path in the record, e.g. `patient.hetu`).
pub fn parse_record(bytes: &[u8], limits: &RecordLimits) -> Result<CheckedRecord, ProfileError> {
    // One pass from the bytes to the record. Only a refused record is read again, with its path
    // tracked to name the field (tracking it on every submission cost a fifth of the reading),
    // and through a JSON tree, to tell a wrong schema version from a wrong field. Both readings
    // accept exactly the same records.
    if let Ok(record) = serde_json::from_slice::<PsychotherapyRecord>(bytes) {
        if record.schema != SCHEMA_V1 {
            return Err(schema_error());
        }
        return check(record, limits);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let record: Result<PsychotherapyRecord, _> = serde_path_to_error::deserialize(&mut deserializer);
    let record = match record {
        Ok(record) => {
            deserializer.end().map_err(|e| ProfileError::MalformedJson(e.to_string()))?;
            record
        }
        Err(error) if !matches!(error.inner().classify(), serde_json::error::Category::Data) => {
            return Err(ProfileError::MalformedJson(error.into_inner().to_string()))
        }
        Err(error) => {
            let value: serde_json::Value =
                serde_json::from_slice(bytes).map_err(|e| ProfileError::MalformedJson(e.to_string()))?;
            if value.get("schema").and_then(serde_json::Value::as_str) != Some(SCHEMA_V1) {
                return Err(schema_error());
            }
            return Err(field_error(&error));
        }
    };
    if record.schema != SCHEMA_V1 {
        return Err(schema_error());
    }
    check(record, limits)
}

fn schema_error() -> ProfileError {
    ProfileError::Structure(vec![
        Issue::new(IssueCode::NotSupported, format!("schema must be \"{SCHEMA_V1}\"")).at("schema")
    ])
}

/// serde's messages can quote the offending value (which could be anything, a HETU included);
/// keep what names a field and say the rest in general terms.
fn field_error(error: &serde_path_to_error::Error<serde_json::Error>) -> ProfileError {
    // Written out here rather than by the path's Display: a member name is the client's, and is
    // shown only when it reads as a name.
    let mut path = String::new();
    for segment in error.path().iter() {
        use serde_path_to_error::Segment;
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&printable_name(key));
            }
            Segment::Unknown => {}
        }
    }
    if path.is_empty() {
        path.push('.');
    }
    let full = error.inner().to_string();
    let inner = full.split(" at line ").next().unwrap_or(&full);
    // A field given twice: serde's path stops at the object holding it, so the field is added.
    // A name the client sent is shown only when it reads as a name (a key may hold data).
    let named = |prefix: &str| inner.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(printable_name);
    let duplicate = named("duplicate field `");
    let message = if let Some(field) = named("unknown field `") {
        format!("unknown field '{field}'")
    } else if inner.starts_with("missing field") {
        inner.split(", expected").next().unwrap_or(inner).replace('`', "'")
    } else if let Some(field) = &duplicate {
        format!("the field '{field}' is given more than once")
    } else if inner.starts_with("unknown variant") {
        format!(
            "not one of the allowed values{}",
            inner
                .split_once(", expected")
                .map(|(_, allowed)| format!(": {}", allowed.replace('`', "'")))
                .unwrap_or_default()
        )
    } else {
        "wrong type or value".to_owned()
    };
    let code = if inner.starts_with("missing field") { IssueCode::Required } else { IssueCode::Structure };
    // A missing field is named in the path too, so a report can say where it is missing.
    let named_field = duplicate.or_else(|| named("missing field `"));
    let at = match (path.as_str(), named_field) {
        (".", None) => String::new(),
        (".", Some(field)) => field,
        (_, Some(field)) => format!("{path}.{field}"),
        (_, None) => path,
    };
    ProfileError::Structure(vec![Issue::new(code, message).at(at)])
}

fn check(record: PsychotherapyRecord, limits: &RecordLimits) -> Result<CheckedRecord, ProfileError> {
    let mut issues = Vec::new();
    let mut issue = |code: IssueCode, at: &str, text: String| issues.push(Issue::new(code, text).at(at));
    if record.record_id.trim().is_empty() || record.record_id.len() > 128 {
        issue(IssueCode::Value, "record_id", "record_id must be 1-128 characters".into());
    }
    if !is_oid(&record.organization.oid) {
        issue(IssueCode::Value, "organization.oid", "not an OID".into());
    }
    let hetu = Hetu::parse(&record.patient.hetu);
    match &hetu {
        Err(error) => issue(IssueCode::Value, "patient.hetu", error.to_string()),
        Ok(hetu) => {
            if let Some(birth) = &record.patient.birth_date {
                match NaiveDate::parse_from_str(birth, "%Y-%m-%d") {
                    Err(_) => issue(IssueCode::Value, "patient.birth_date", "not a date (YYYY-MM-DD)".into()),
                    Ok(date) if Some(date) != hetu.birth_date() => issue(
                        IssueCode::BusinessRule,
                        "patient.birth_date",
                        "does not match the HETU's date of birth".into(),
                    ),
                    Ok(_) => {}
                }
            }
        }
    }
    // FHIR strings may not be empty: a blank name would make an invalid document.
    let texts = [
        ("organization.name", &record.organization.name),
        ("patient.family", &record.patient.family),
        ("therapist.family", &record.therapist.family),
        ("therapist.profession", &record.therapist.profession),
    ];
    // Nor hold control characters other than tab and line ends (the note's text is made safe
    // when it is written into the narrative).
    let control = |text: &str| text.chars().any(|c| c < ' ' && !matches!(c, '\t' | '\r' | '\n'));
    if control(&record.record_id) {
        issue(IssueCode::Value, "record_id", "holds a control character".into());
    }
    for (at, text) in texts {
        if text.trim().is_empty() {
            issue(IssueCode::Required, at, "must not be blank".into());
        } else if control(text) {
            issue(IssueCode::Value, at, "holds a control character".into());
        }
    }
    for (part, given) in [("patient", &record.patient.given), ("therapist", &record.therapist.given)] {
        for (index, name) in given.iter().enumerate() {
            if name.trim().is_empty() {
                issue(IssueCode::Required, &format!("{part}.given[{index}]"), "must not be blank".into());
            } else if control(name) {
                issue(IssueCode::Value, &format!("{part}.given[{index}]"), "holds a control character".into());
            }
        }
    }
    if record.therapist.terhikki.len() != 11 || !record.therapist.terhikki.bytes().all(|b| b.is_ascii_digit()) {
        issue(IssueCode::Value, "therapist.terhikki", "a Terhikki registration number has 11 digits".into());
    }
    if !is_oid(&record.service_event.oid) {
        issue(IssueCode::Value, "service_event.oid", "the service event needs an OID".into());
    }
    let event_start = NaiveDate::parse_from_str(&record.service_event.start, "%Y-%m-%d").ok();
    if event_start.is_none() {
        issue(IssueCode::Value, "service_event.start", "not a date (YYYY-MM-DD)".into());
    }
    let mut event_end = None;
    if let Some(end) = &record.service_event.end {
        match NaiveDate::parse_from_str(end, "%Y-%m-%d") {
            Err(_) => issue(IssueCode::Value, "service_event.end", "not a date (YYYY-MM-DD)".into()),
            Ok(end) if event_start.is_some_and(|start| end < start) => {
                issue(IssueCode::BusinessRule, "service_event.end", "ends before it starts".into())
            }
            Ok(end) => event_end = Some(end),
        }
    }
    let session_start = DateTime::parse_from_rfc3339(&record.session.start);
    match &session_start {
        Err(_) => issue(IssueCode::Value, "session.start", "not a date-time with a time zone (RFC 3339)".into()),
        Ok(start) => {
            if *start > limits.now {
                issue(IssueCode::BusinessRule, "session.start", "the session is in the future".into());
            }
            if event_start.is_some_and(|event| start.date_naive() < event) {
                issue(
                    IssueCode::BusinessRule,
                    "session.start",
                    "the session is before its service event starts".into(),
                );
            }
            if event_end.is_some_and(|end| start.date_naive() > end) {
                issue(IssueCode::BusinessRule, "session.start", "the session is after its service event ended".into());
            }
        }
    }
    // A valid HETU can carry a date of birth still to come (the century sign allows it): a
    // patient born after their session is as impossible as 30 February.
    if let (Ok(hetu), Ok(start)) = (&hetu, &session_start) {
        if hetu.birth_date().is_some_and(|born| born > start.date_naive()) {
            let at = if record.patient.birth_date.is_some() { "patient.birth_date" } else { "patient.hetu" };
            issue(IssueCode::BusinessRule, at, "the patient is born after the session".into());
        }
    }
    if !(1..=600).contains(&record.session.minutes) {
        issue(IssueCode::Value, "session.minutes", "must be 1-600".into());
    }
    for (index, diagnosis) in record.diagnoses.iter().enumerate() {
        if !is_icd10_code(&diagnosis.icd10) {
            issue(IssueCode::CodeInvalid, &format!("diagnoses[{index}].icd10"), "not a known ICD-10 code".into());
        }
    }
    if record.diagnoses.iter().filter(|d| d.primary).count() > 1 {
        issue(IssueCode::BusinessRule, "diagnoses", "at most one diagnosis is primary".into());
    }
    // A date has no time zone: it is not in the future while it is today anywhere (UTC+14).
    let latest_today = (limits.now.naive_utc() + chrono::Duration::hours(14)).date();
    for (index, assessment) in record.assessments.iter().enumerate() {
        match instrument(&assessment.instrument) {
            None => issue(
                IssueCode::CodeInvalid,
                &format!("assessments[{index}].instrument"),
                format!(
                    "unknown instrument; known: {}",
                    INSTRUMENTS.iter().map(|i| i.name).collect::<Vec<_>>().join(", ")
                ),
            ),
            Some(known) if !(0..=known.max_score).contains(&assessment.score) => issue(
                IssueCode::Value,
                &format!("assessments[{index}].score"),
                format!("{} scores are 0-{}", known.name, known.max_score),
            ),
            Some(_) => {}
        }
        match NaiveDate::parse_from_str(&assessment.date, "%Y-%m-%d") {
            Err(_) => issue(IssueCode::Value, &format!("assessments[{index}].date"), "not a date (YYYY-MM-DD)".into()),
            Ok(date) if date > latest_today => issue(
                IssueCode::BusinessRule,
                &format!("assessments[{index}].date"),
                "the assessment is dated in the future".into(),
            ),
            Ok(_) => {}
        }
    }
    if record.note.text.trim().is_empty() {
        issue(IssueCode::Required, "note.text", "the note is empty".into());
    }
    if record.note.text.len() > limits.max_note_bytes {
        issue(
            IssueCode::TooLong,
            "note.text",
            format!("the note is longer than the limit of {} bytes", limits.max_note_bytes),
        );
    }
    match (hetu, session_start, issues.is_empty()) {
        (Ok(hetu), Ok(session_start), true) => Ok(CheckedRecord { record, hetu, session_start }),
        _ => Err(ProfileError::Rule(issues)),
    }
}

fn is_oid(text: &str) -> bool {
    let arcs: Vec<&str> = text.split('.').collect();
    arcs.len() >= 3 && arcs.iter().all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
}

/// An ICD-10 code in THL's notation (`F32` or `F32.1`) in the profiles' value set of mental and
/// behavioural disorders (chapter V): the same list the document profile binds.
pub fn is_icd10_code(code: &str) -> bool {
    profiles().value_set_contains(MENTAL_DISORDERS_VALUE_SET, Some(ICD10_SYSTEM), code)
}
