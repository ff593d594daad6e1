//! `GET /access-alerts` and `POST /access-alerts/{id}/$clear`: the auditor's view of
//! harvesting detection's alerts. An auditor searches them by principal, organisation and time,
//! exports them (`Accept: application/x-ndjson`, one alert a line), and clears one with a
//! stated reason; clearing is itself recorded in the audit log. Nobody else reads or clears
//! them. An alert holds identifiers only: the principal (practitioner, organisation or
//! certificate thumbprint), never a patient.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, AuditEvent, Outcome};
use consent::Principal;
use fhir_profiles::search::{DatePrefix, DateQuery};
use serde_json::{json, Value};
use store::audit::AuditRecord;
use store::time::{instant, now_millis};
use store::watch::{AccessAlert, AlertQuery};

use crate::audit;
use crate::caller::Caller;
use crate::error::{printable, printable_name, GatewayError};
use crate::http;
use crate::state::AppState;

const PARAMS: [&str; 6] = ["_id", "principal", "organization", "date", "_count", "_offset"];
/// Alerts an export reads at a time.
const EXPORT_PAGE: usize = 500;

fn auditor_only(principal: &Principal) -> Result<String, GatewayError> {
    match principal {
        Principal::Auditor { subject, .. } => Ok(subject.clone()),
        other => {
            Err(GatewayError::Forbidden(format!("unusual-access alerts are for auditors, not a {}", other.kind())))
        }
    }
}

fn rendered(alert: &AccessAlert, now: i64) -> Value {
    let status = match (alert.active(now), &alert.cleared_by) {
        (true, _) => "active",
        (false, Some(by)) if by == "lapsed" => "lapsed",
        (false, Some(_)) => "cleared",
        (false, None) => "lapsed",
    };
    json!({
        "id": alert.id,
        "status": status,
        "principal": alert.principal,
        "organisation": alert.organisation,
        "raised": instant(alert.raised_at),
        "until": alert.until.map(instant),
        "patients": alert.patients,
        "withheld": alert.withheld,
        "threshold": alert.threshold,
        "cleared": alert.cleared_at.map(instant),
        "cleared_by": alert.cleared_by,
        "clear_reason": alert.clear_reason,
    })
}

fn query(params: &[(String, String)], max_count: usize, default_count: usize) -> Result<AlertQuery, GatewayError> {
    let mut query = AlertQuery { count: default_count, ..AlertQuery::default() };
    for (name, value) in params {
        match name.as_str() {
            "_id" => query.id = Some(value.clone()),
            "principal" => query.principal = Some(value.clone()),
            "organization" => query.organisation = Some(value.strip_prefix("urn:oid:").unwrap_or(value).to_owned()),
            "date" => {
                let date = DateQuery::parse(value).ok_or_else(|| {
                    GatewayError::BadRequest(
                        "'date' takes a FHIR date with an optional prefix (eq, lt, le, gt, ge)".into(),
                    )
                })?;
                let (from, to) = match date.prefix {
                    DatePrefix::Eq => (Some(date.start * 1000), Some(date.end * 1000 + 999)),
                    DatePrefix::Ge => (Some(date.start * 1000), None),
                    DatePrefix::Gt => (Some(date.end * 1000 + 1000), None),
                    DatePrefix::Le => (None, Some(date.end * 1000 + 999)),
                    DatePrefix::Lt => (None, Some(date.start * 1000 - 1)),
                    DatePrefix::Ne => return Err(GatewayError::BadRequest("'date' does not take ne here".into())),
                };
                query.from = query.from.max(from);
                query.to = match (query.to, to) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            "_count" => {
                query.count = value
                    .parse::<usize>()
                    .map_err(|_| GatewayError::BadRequest("_count must be a whole number".into()))?
                    .min(max_count)
            }
            "_offset" => {
                query.offset =
                    value.parse().map_err(|_| GatewayError::BadRequest("_offset must be a whole number".into()))?
            }
            _ => {}
        }
    }
    Ok(query)
}

/// `GET /access-alerts`
pub async fn search(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    auditor_only(&principal)?;
    let params = http::query_pairs(&request);
    http::only_params(&params, &PARAMS)?;
    let export = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("application/x-ndjson"));
    let mut query = query(&params, state.config.max_count, state.config.default_count)?;
    let names: Vec<String> = params.iter().map(|(name, _)| printable_name(name)).collect();
    let store = state.store.clone();
    let alerts = web::block(move || -> Result<Vec<AccessAlert>, GatewayError> {
        // Reading the alerts is an access too, recorded before the answer.
        let what = if export { "access-alerts export" } else { "access-alerts" };
        let event = AuditEvent {
            query: Some(format!("{what}?{}", names.join("&"))),
            ..audit::event(Action::UnusualAccess, Outcome::Success, &agent, None, Vec::new(), audit::now())
        };
        store.record(vec![AuditRecord::new(&event)])?;
        if !export {
            return Ok(store.alerts(&query)?);
        }
        // Every matching alert, a page at a time.
        let mut all = Vec::new();
        query.offset = 0;
        query.count = EXPORT_PAGE;
        loop {
            let page = store.alerts(&query)?;
            let last = page.len() < EXPORT_PAGE;
            all.extend(page);
            if last {
                return Ok(all);
            }
            query.offset += EXPORT_PAGE;
        }
    })
    .await??;
    let now = now_millis();
    if export {
        let mut body = Vec::new();
        for alert in &alerts {
            body.extend_from_slice(rendered(alert, now).to_string().as_bytes());
            body.push(b'\n');
        }
        return Ok(HttpResponse::Ok().content_type("application/x-ndjson").body(body));
    }
    let body = json!({"alerts": alerts.iter().map(|alert| rendered(alert, now)).collect::<Vec<_>>()});
    Ok(HttpResponse::Ok().content_type("application/json").body(body.to_string()))
}

/// `POST /access-alerts/{id}/$clear` with `{"reason": "…"}`
pub async fn clear(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    let auditor = auditor_only(&principal)?;
    http::only_params(&http::query_pairs(&request), &[])?;
    let id = request.match_info().get("id").unwrap_or("").to_owned();
    let bytes = http::fhir_body(&request, payload, &state.config).await?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|_| GatewayError::BadRequest("the body must be a JSON object with a 'reason'".into()))?;
    let reason = body.get("reason").and_then(Value::as_str).map(str::trim).unwrap_or("");
    if reason.is_empty() || reason.chars().count() > 500 || reason.chars().any(char::is_control) {
        return Err(GatewayError::BadRequest(
            "clearing an alert needs a 'reason' of 1 to 500 printable characters".into(),
        ));
    }
    let reason = reason.to_owned();
    let store = state.store.clone();
    let watch_id = id.clone();
    let cleared = web::block(move || -> Result<Option<AccessAlert>, GatewayError> {
        let event = AuditEvent {
            query: Some(format!("cleared unusual-access alert {}: {reason}", printable(&watch_id))),
            ..audit::event(Action::UnusualAccess, Outcome::Success, &agent, None, Vec::new(), audit::now())
        };
        if !store.clear_alert(&watch_id, &auditor, &reason, AuditRecord::new(&event))? {
            // No active alert of that id: the attempt is recorded all the same.
            let refused = AuditEvent { outcome: Outcome::MinorFailure, ..event };
            store.record(vec![AuditRecord::new(&refused)])?;
            return Ok(None);
        }
        let found = store.alerts(&AlertQuery { id: Some(watch_id), count: 1, ..AlertQuery::default() })?;
        Ok(found.into_iter().next())
    })
    .await??;
    let Some(alert) = cleared else {
        return Err(GatewayError::NotFound { resource_type: "access-alert".into(), id: printable(&id) });
    };
    // The node heeds the clearing at once rather than at its next look.
    let enforcement = state.enforcement.clone();
    let _ = web::block(move || enforcement.watch().refresh()).await;
    Ok(HttpResponse::build(StatusCode::OK)
        .content_type("application/json")
        .body(rendered(&alert, now_millis()).to_string()))
}
