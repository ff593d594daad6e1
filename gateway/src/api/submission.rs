//! `POST /psychotherapy-records`: a clinic's record, translated into a national document Bundle,
//! checked by the R4 model and the national profiles, and stored as one versioned, encrypted
//! document, together with its Patient, Practitioner and Organization when they are new (the
//! write path is `write.rs`). Also `$validate`, which runs the same checks and stores nothing,
//! and the record contract's JSON Schema.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, Outcome};
use fhir_profiles::record::{parse_record, RecordLimits, JSON_SCHEMA_V1};
use fhir_profiles::{parse_resource, Issue, IssueCode, ProfileError, ResourceType};
use serde_json::Value;
use store::audit::AuditRecord;

use crate::api::request::Work;
use crate::api::response::written_document;
use crate::audit;
use crate::caller::Caller;
use crate::error::{printable_name, GatewayError};
use crate::http;
use crate::state::AppState;
use crate::write;

/// `GET /psychotherapy-records/schema`: the input contract, for EMR vendors.
pub async fn schema() -> HttpResponse {
    HttpResponse::Ok().content_type("application/schema+json").body(JSON_SCHEMA_V1)
}

/// `POST /psychotherapy-records`
pub async fn submit(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    write::submitter(&principal)?;
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &[])?;
    let bytes = http::json_body(&request, payload, &state.config).await?;
    let limits = RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: state.config.max_note_bytes };
    let work = Work::new(principal, agent, &state);
    let filed = web::block(move || {
        let checked = parse_record(&bytes, &limits)?;
        write::submit_record(&work.enforcement, &work.principal, &work.agent, &checked)
    })
    .await??;
    let status = if filed.created { StatusCode::CREATED } else { StatusCode::OK };
    Ok(written_document(&request, &state.config, output, status, &filed.head, filed.body))
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
            Some(name.parse::<ResourceType>().map_err(|()| GatewayError::UnknownResourceType(printable_name(name)))?)
        }
        None => None,
    };
    let bytes = http::fhir_body(&request, payload, &state.config).await?;
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
