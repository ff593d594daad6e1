//! What several case files set up on the deployment: a clinic's record as an EMR sends it, its
//! submission, and the scene the consent and audit cases act on (a fresh patient's record as the
//! run's practitioner filed it).

use serde_json::{json, Value};

use crate::actors::practitioner;
use crate::case::{temporary_hetu, Context, Failure, Outcome};
use crate::client::{Answer, Client, ClientError};

/// A record of the input contract v1 for `hetu`, by `practitioner` of `org`.
pub fn record(org: &str, practitioner: &str, record_id: &str, hetu: &str) -> Value {
    json!({
        "schema": "vaitio.psychotherapy-record/v1",
        "record_id": record_id,
        "organization": { "oid": org, "name": "Conformance Clinic" },
        "patient": { "hetu": hetu, "given": ["Testi"], "family": "Conformance", "gender": "unknown" },
        "therapist": { "terhikki": practitioner, "given": ["Testi"], "family": "Terapeutti", "profession": "psychotherapist" },
        "service_event": { "oid": format!("{org}.99.1"), "start": "2026-01-10", "end": null },
        "session": { "start": "2026-03-02T14:00:00+02:00", "minutes": 45, "modality": "individual", "setting": "in_person" },
        "diagnoses": [ { "icd10": "F32.1", "primary": true } ],
        "assessments": [ { "instrument": "PHQ-9", "score": 14, "date": "2026-03-02" } ],
        "note": { "kind": "progress", "text": "Synthetic conformance note.\n</div><script>alert(1)</script>" },
        "risk": { "suicide": "low" },
        "plan": "Continue."
    })
}

/// Submits a record as the run's practitioner.
pub fn submit(ctx: &Context, body: &Value) -> Result<Answer, ClientError> {
    ctx.client.send(
        "POST",
        "/psychotherapy-records",
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

/// The skip of a case that makes a record from the run's token when the token names no
/// organisation and practitioner.
pub fn not_a_practitioner() -> Outcome {
    Outcome::Skip("needs --token of a practitioner (its org and sub make the record)".into())
}

/// A fresh patient's record as the run's practitioner filed it: the document (a note), the
/// service event's Encounter (not a note), and an Encounter of another service event.
pub struct Scene {
    pub org: String,
    pub hetu: String,
    pub patient: String,
    pub document: String,
    pub service_event: String,
    pub event: String,
    pub other_event: String,
}

/// Files a scene; skipped (the `Outcome`) when the run's token names no practitioner.
pub fn scene(ctx: &Context) -> Result<Result<Scene, Outcome>, Failure> {
    let Some((org, author)) = practitioner(ctx) else {
        return Ok(Err(not_a_practitioner()));
    };
    let hetu = temporary_hetu();
    let record_id = format!("CONSENT-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    let body = record(&org, &author, &record_id, &hetu);
    let service_event = body["service_event"]["oid"].as_str().unwrap_or_default().to_owned();
    let answer = submit(ctx, &body)?;
    if answer.status != 201 {
        return Err(format!("the record was not filed: HTTP {}: {}", answer.status, answer.text_excerpt()).into());
    }
    let document = answer.json()?;
    let patient = document["entry"][1]["fullUrl"]
        .as_str()
        .and_then(|url| url.strip_prefix("urn:uuid:"))
        .ok_or("the document names no stored Patient")?
        .to_owned();
    let encounter = |oid: &str| {
        json!({
            "resourceType": "Encounter",
            "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{oid}")}],
            "subject": {"reference": format!("Patient/{patient}")},
            "period": {"start": "2026-01-10"}
        })
    };
    let event = created(&ctx.client, &encounter(&service_event))?;
    let other_event = created(&ctx.client, &encounter(&format!("{org}.99.2")))?;
    Ok(Ok(Scene {
        org,
        hetu,
        patient,
        document: document["id"].as_str().unwrap_or_default().to_owned(),
        service_event,
        event,
        other_event,
    }))
}

/// Creates a resource; its id.
fn created(client: &Client, body: &Value) -> Result<String, Failure> {
    let resource_type = body["resourceType"].as_str().unwrap_or_default();
    let answer = client.post_json(&format!("/{resource_type}"), body)?;
    if answer.status != 201 {
        return Err(format!("{resource_type} not created: HTTP {}: {}", answer.status, answer.text_excerpt()).into());
    }
    Ok(answer.json()?["id"].as_str().unwrap_or_default().to_owned())
}
