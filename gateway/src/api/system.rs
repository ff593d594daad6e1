//! The endpoints about the server rather than the data: `/metadata`, the health checks,
//! `/metrics`, and the answers to paths and methods that do not exist.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use consent::Principal;
use serde_json::json;

use crate::caller::Caller;
use crate::capability::capability_statement;
use crate::config::Mode;
use crate::error::GatewayError;
use crate::http;
use crate::metrics::KeyState;
use crate::state::AppState;

/// `GET /metadata`: the CapabilityStatement.
pub async fn metadata(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &["mode"])?;
    if params.iter().any(|(name, value)| name == "mode" && value != "full") {
        return Err(GatewayError::BadRequest("only mode=full is supported".into()));
    }
    let base = http::base_url(&request, &state.config);
    let body = capability_statement(Some(&base)).to_string().into_bytes();
    Ok(http::fhir_json(StatusCode::OK, body, output))
}

/// Liveness (Kubernetes' liveness probe): the process answers, whatever the database does.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "pass"}))
}

/// How long the readiness check waits for the database: it answers within a second.
const READY_WAIT: std::time::Duration = std::time::Duration::from_millis(800);

/// Readiness (Kubernetes' readiness probe): the database answers a query within a second. A
/// node that is not ready still answers its liveness probe, `/health/live`.
pub async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let database = web::block(move || store.ping(READY_WAIT)).await;
    let (status, database_status) = match database {
        Ok(Ok(())) => (StatusCode::OK, "pass"),
        _ => (StatusCode::SERVICE_UNAVAILABLE, "fail"),
    };
    HttpResponse::build(status).json(json!({
        "status": database_status,
        "mode": match state.config.mode { Mode::Development => "development", Mode::Production => "production" },
        "checks": {"database": {"status": database_status, "backend": state.config.database.backend_name()}}
    }))
}

/// `GET /metrics`: Prometheus' text format, for the service's operators alone: administrators
/// of `operator_organisation`. Its counters move with every request, and how far they move says
/// what a request did (an audit record naming a withheld resource is longer than one naming
/// nothing): open to anyone else, even a clinic's own administrator, they would tell whether a
/// patient or a note exists to a caller the enforcement point answers 404.
pub async fn prometheus(caller: Caller, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, _) = caller;
    let operator = match &principal {
        Principal::Administrator { organisation, .. } => {
            state.config.operator_organisation.as_deref() == Some(organisation.as_str())
        }
        _ => false,
    };
    if !operator {
        return Err(GatewayError::Forbidden(format!(
            "the metrics are for the administrators of the operator organisation (operator_organisation), not a {}",
            principal.kind()
        )));
    }
    let store = state.store.clone();
    let (up, keys) = web::block(move || {
        let up = store.ping(READY_WAIT).is_ok();
        let keys = KeyState {
            kek: store.kek_versions(),
            index_version: store.pseudonyms().version(),
            reindex: store.reindex_progress().ok().flatten().map(|(_, moved, to_move)| (moved, to_move)),
        };
        (up, keys)
    })
    .await
    .unwrap_or_default();
    let (connections, idle) = state.store.pool_state();
    Ok(HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render(
        up,
        connections,
        idle,
        state.store.writer_stats(),
        state.enforcement.watch().counters(),
        &keys,
    )))
}

/// A path that matches no route.
pub async fn unknown_endpoint() -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::UnknownEndpoint)
}

/// Any other method on a known path.
pub async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed(format!("{} is not supported on this path", request.method())))
}
