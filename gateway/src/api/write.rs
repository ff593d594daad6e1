//! `POST /{type}` and `PUT /{type}/{id}`: the HTTP side of a write; the write path itself is
//! `write.rs`.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::request::{context, path_id};
use crate::api::response::written_document;
use crate::caller::Caller;
use crate::error::GatewayError;
use crate::http;
use crate::state::AppState;
use crate::write;

/// `POST /{type}`
pub async fn create(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    write::ensure_writable(ctx.resource_type)?;
    write::author(&ctx.principal, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    let bytes = http::fhir_body(&request, payload, &state.config).await?;
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let filed =
        web::block(move || write::create(&work.enforcement, &work.principal, &work.agent, resource_type, &bytes))
            .await??;
    Ok(written_document(&request, &state.config, ctx.output, StatusCode::CREATED, &filed.head, filed.body))
}

/// `PUT /{type}/{id}`
pub async fn update(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    write::ensure_writable(ctx.resource_type)?;
    write::author(&ctx.principal, ctx.resource_type)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    let expected = http::if_match(&request)?;
    let bytes = http::fhir_body(&request, payload, &state.config).await?;
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let filed = web::block(move || {
        write::update(&work.enforcement, &work.principal, &work.agent, resource_type, &id, expected, &bytes)
    })
    .await??;
    Ok(written_document(&request, &state.config, ctx.output, StatusCode::OK, &filed.head, filed.body))
}
