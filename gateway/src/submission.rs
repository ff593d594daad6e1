//! `POST /psychotherapy-records`: a clinic's record, translated into a national document Bundle,
//! checked by the R4 model and the national profiles, and stored as one versioned, encrypted
//! document, together with its Patient, Practitioner and Organization when they are new.
//!
//! Ids are derived from the organisation and the record id with the index key, so the same
//! record sent again yields the same document (200, nothing new written), and a changed record
//! becomes a new version of that document.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, Agent, Outcome, ResourceRef};
use consent::Principal;
use fhir_profiles::record::{parse_record, CheckedRecord, RecordLimits, JSON_SCHEMA_V1};
use fhir_profiles::translate::{translate, DocumentIds, TERHIKKI_SYSTEM};
use fhir_profiles::{parse_resource, parse_translated, Issue, IssueCode, ProfileError, ResourceType, HETU_SYSTEM};
use serde_json::Value;

use crate::app::AppState;
use crate::audit::{self, AuditRecord};
use crate::enforce::{self, Gate};
use crate::error::GatewayError;
use crate::fhir::{prepare, written_document};
use crate::http;
use crate::identity::Caller;
use crate::store::{instant, Head, Store, Stored, Write, WriteKind};

/// `GET /psychotherapy-records/schema`: the input contract, for EMR vendors.
pub async fn schema() -> HttpResponse {
    HttpResponse::Ok().content_type("application/schema+json").body(JSON_SCHEMA_V1)
}

/// Everything but what changes on every assembly: two documents of the same record compare
/// equal when this is equal.
fn content(document: &Value) -> Value {
    let mut document = document.clone();
    if let Some(object) = document.as_object_mut() {
        object.remove("meta");
        object.remove("id");
        object.remove("timestamp");
    }
    document
}

pub async fn submit(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    let Principal::Professional(professional) = &principal else {
        return Err(GatewayError::Forbidden(format!("a {} does not submit clinical records", principal.kind())));
    };
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &[])?;
    let bytes = http::json_body(&request, payload, &state).await?;
    let (organisation, practitioner_id) = (professional.organisation.clone(), professional.practitioner.clone());
    let limits = RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: state.config.max_note_bytes };
    let (store, policy) = (state.store.clone(), state.config.policy);
    let block_principal = principal.clone();
    let (status, head, body, visible) = web::block(move || -> Result<_, GatewayError> {
        let checked = parse_record(&bytes, &limits)?;
        if checked.record.organization.oid != organisation {
            let message = "the record's organisation is not the organisation of the client certificate";
            return Err(ProfileError::business_rule(message, "organization.oid").into());
        }
        // Two submissions of the same new record at once both try to create its document; the
        // one that loses sees the winner's document on a second run and answers as a repeat.
        let file = || file_record(&store, &checked, &organisation, &practitioner_id, &agent);
        let (status, head, body) = match file() {
            Err(GatewayError::Conflict(_)) => file(),
            other => other,
        }?;
        // The author wrote it, but what they get back still passes the enforcement point (a
        // patient may have denied even the author).
        let visible = Gate::new(&block_principal, &store, policy).permits(&head)?;
        Ok((status, head, body, visible))
    })
    .await??;
    Ok(written_document(&request, &state, visible, output, status, &head, body))
}

/// Files a checked record: resolves its participants, translates it, and stores the document
/// (new, a new version, or nothing for an identical repeat) with any new participants, in one
/// transaction.
fn file_record(
    store: &Store,
    checked: &CheckedRecord,
    organisation: &str,
    practitioner_id: &str,
    agent: &Agent,
) -> Result<(StatusCode, Head, Vec<u8>), GatewayError> {
    let pseudonyms = store.pseudonyms();
    let record_id = checked.record.record_id.clone();
    let mut ids = DocumentIds::derive(checked, |part| pseudonyms.uuid(&["document", organisation, &record_id, part]));
    let record = &checked.record;
    let patient = participant(store, ResourceType::Patient, HETU_SYSTEM, checked.hetu.expose())?;
    let practitioner = participant(store, ResourceType::Practitioner, TERHIKKI_SYSTEM, &record.therapist.terhikki)?;
    let oid = format!("urn:oid:{}", record.organization.oid);
    let organization = participant(store, ResourceType::Organization, "urn:ietf:rfc:3986", &oid)?;
    ids.patient = patient.id().to_owned();
    ids.practitioner = practitioner.id().to_owned();
    ids.organization = organization.id().to_owned();
    let existing = store.head(ResourceType::Bundle, &ids.document)?;
    let document = translate(checked, &ids, &instant(crate::store::now_millis()));
    // Compared with the stored version only when there is one: a copy of the whole document
    // was a twentieth of a new submission's time.
    let compared = existing.as_ref().map(|_| content(&document));
    let author = (organisation.to_owned(), practitioner_id.to_owned());
    let mut writes = Vec::new();
    let participants = [
        (&patient, ResourceType::Patient, HETU_SYSTEM, checked.hetu.expose()),
        (&practitioner, ResourceType::Practitioner, TERHIKKI_SYSTEM, record.therapist.terhikki.as_str()),
        (&organization, ResourceType::Organization, "urn:ietf:rfc:3986", oid.as_str()),
    ];
    for (found, resource_type, _, _) in participants {
        if let Participant::New(id) = found {
            let entry = entry_resource(&document, id)?;
            let parsed = parse_translated(resource_type, entry).map_err(translation_bug)?;
            let resource = prepare(store, parsed, Some(id), Some(author.clone()))?;
            writes.push(Write { resource, id: id.clone(), kind: WriteKind::CreateIfAbsent });
        }
    }
    // The profiles and the gateway's rules read what the translation made: a translation bug is
    // refused here, not stored.
    let parsed = parse_translated(ResourceType::Bundle, document).map_err(translation_bug)?;
    let id = ids.document.clone();
    let resource = prepare(store, parsed, Some(&id), Some(author))?;
    let (status, kind) = match (existing, compared) {
        (Some(head), Some(compared)) => {
            // Only the therapist who wrote the document may send a new version of it. Asked of
            // authorship, not of the enforcement point: a patient's denial may hide the
            // document even from its author, and must not freeze the author's record.
            let authored = head.author() == (Some(organisation), Some(practitioner_id));
            if !authored {
                return Err(GatewayError::Forbidden(
                    "this record id belongs to a document only its authoring therapist may change".into(),
                ));
            }
            let current = store
                .version(ResourceType::Bundle, &id, head.version)?
                .map(enforce::read_internally)
                .ok_or_else(|| GatewayError::Internal("the current version vanished".into()))?;
            let stored_body = store.open(&current)?;
            let stored: Value =
                serde_json::from_slice(&stored_body).map_err(|e| GatewayError::Internal(e.to_string()))?;
            if content(&stored) == compared {
                // Nothing written, but the submission (and what it answered) is recorded.
                let resource = ResourceRef {
                    resource_type: "Bundle".into(),
                    id: head.id.clone(),
                    version: Some(head.version.to_string()),
                };
                store.record(vec![submission_record(agent, resource, head.patient.clone())])?;
                return Ok((StatusCode::OK, head, stored_body));
            }
            (StatusCode::OK, WriteKind::Update(Some(head.version)))
        }
        _ => (StatusCode::CREATED, WriteKind::Create),
    };
    let version = match &kind {
        WriteKind::Update(Some(current)) => current + 1,
        _ => 1,
    };
    let record = submission_record(
        agent,
        ResourceRef { resource_type: "Bundle".into(), id: id.clone(), version: Some(version.to_string()) },
        resource.patient.clone(),
    );
    writes.push(Write { resource, id, kind });
    // The participants, the document and the audit record commit together, or not at all.
    let (head, body) = store
        .write_all(writes, vec![record])?
        .pop()
        .flatten()
        .ok_or_else(|| GatewayError::Internal("the document was not written".into()))?;
    for (found, resource_type, system, value) in participants {
        if let Participant::New(id) = found {
            store.remember_identifier(resource_type, system, value, id);
        }
    }
    Ok((status, head, body))
}

fn submission_record(agent: &Agent, document: ResourceRef, patient: Option<String>) -> AuditRecord {
    AuditRecord::new(&audit::event(Action::Submission, Outcome::Success, agent, patient, vec![document], audit::now()))
}

/// A document's Patient, Practitioner or Organization: one stored resource per identifier,
/// shared by every document that names it.
enum Participant {
    /// Stored before, by an earlier document or through the FHIR API.
    Found(String),
    /// Not stored yet: created with the document, under an id derived from the identifier (so
    /// concurrent first documents agree on it).
    New(String),
}

impl Participant {
    fn id(&self) -> &str {
        match self {
            Participant::Found(id) | Participant::New(id) => id,
        }
    }
}

fn participant(
    store: &crate::store::Store,
    resource_type: ResourceType,
    system: &str,
    value: &str,
) -> Result<Participant, GatewayError> {
    // The document refers to it as `urn:uuid:{id}`, so only a UUID id can be reused.
    let found = store.id_by_identifier(resource_type, system, value, |id| {
        uuid::Uuid::parse_str(id).is_ok_and(|u| u.hyphenated().to_string() == id)
    })?;
    Ok(match found {
        Some(id) => Participant::Found(id),
        None => Participant::New(store.pseudonyms().uuid(&["participant", resource_type.as_str(), system, value])),
    })
}

/// The resource of the document's entry `urn:uuid:{id}`.
fn entry_resource(document: &Value, id: &str) -> Result<Value, GatewayError> {
    let full_url = format!("urn:uuid:{id}");
    document["entry"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["fullUrl"] == full_url.as_str()))
        .map(|entry| entry["resource"].clone())
        .ok_or_else(|| GatewayError::Internal("the translation left out a participant".into()))
}

fn translation_bug(error: ProfileError) -> GatewayError {
    GatewayError::Internal(format!("the translation produced an unreadable document: {error}"))
}

/// `POST /$validate` and `POST /{type}/$validate`: the same checks as a write, nothing stored,
/// nothing stored read (references to stored resources are not looked up, so the answer says
/// nothing about what exists). Always 200 with an OperationOutcome listing every issue.
pub async fn validate(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    // Validation reads nothing stored, but it is a service for authenticated callers only: the
    // `Caller` extractor has refused everyone else before this line. It is audited like any use.
    let Caller(_, agent) = caller;
    let store = state.store.clone();
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &[])?;
    let expected = match request.match_info().get("type") {
        Some(name) => {
            Some(name.parse::<ResourceType>().map_err(|()| GatewayError::UnknownResourceType(http::printable(name)))?)
        }
        None => None,
    };
    let bytes = http::fhir_body(&request, payload, &state).await?;
    let outcome = web::block(move || -> Result<Value, GatewayError> {
        let outcome = validation_outcome(expected, &bytes);
        let event = audit::event(Action::Validate, Outcome::Success, &agent, None, Vec::new(), audit::now());
        store.record(vec![AuditRecord::new(&event)])?;
        Ok(outcome)
    })
    .await??;
    Ok(http::fhir_json(StatusCode::OK, outcome.to_string().into_bytes(), output))
}

fn validation_outcome(expected: Option<ResourceType>, bytes: &[u8]) -> Value {
    let resource = match serde_json::from_slice::<Value>(bytes) {
        // A Parameters resource carries the resource to validate in its `resource` parameter.
        Ok(Value::Object(body)) if body.get("resourceType").and_then(Value::as_str) == Some("Parameters") => body
            .get("parameter")
            .and_then(Value::as_array)
            .and_then(|parameters| {
                parameters.iter().find(|p| p.get("name").and_then(Value::as_str) == Some("resource"))
            })
            .and_then(|p| p.get("resource"))
            .map(|r| serde_json::to_vec(r).unwrap_or_default()),
        _ => Some(bytes.to_vec()),
    };
    let result = match resource {
        None => Err(ProfileError::Structure(vec![Issue::new(
            IssueCode::Required,
            "the Parameters carry no 'resource' parameter",
        )])),
        Some(resource) => {
            let declared = serde_json::from_slice::<Value>(&resource).ok().and_then(|v| {
                v.get("resourceType").and_then(Value::as_str).and_then(|t| t.parse::<ResourceType>().ok())
            });
            parse_resource(expected.or(declared).unwrap_or(ResourceType::Patient), &resource).map(|_| ())
        }
    };
    match result {
        Ok(()) => serde_json::json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "diagnostics": "no issues: the resource is valid"}]}),
        Err(error) => {
            let issues: Vec<(String, String, Option<String>)> =
                error.issues().into_iter().map(|i| (i.code.as_str().to_owned(), i.diagnostics, i.expression)).collect();
            crate::error::operation_outcome(&issues)
        }
    }
}
