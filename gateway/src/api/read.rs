//! `GET /{type}/{id}`, `GET /{type}/{id}/_history/{vid}` and `GET /{type}/{id}/_history`: one
//! resource by id, every row judged by the enforcement point before it is opened.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::Action;
use serde_json::json;
use serde_json::value::RawValue;
use store::time::instant;
use store::VersionRow;

use crate::api::request::{context, not_found, paging, path_id, Context};
use crate::api::response::{bundle, page_links, raw, version_response, Entry};
use crate::caller::Caller;
use crate::enforce::Released;
use crate::error::GatewayError;
use crate::http;
use crate::state::AppState;

/// `GET /{type}/{id}`
pub async fn read(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    one_version(ctx, id, None, state).await
}

/// `GET /{type}/{id}/_history/{vid}`
pub async fn vread(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    let version = request.match_info().get("vid").and_then(|v| v.parse::<i64>().ok()).filter(|v| *v > 0);
    let Some(version) = version else { return Err(not_found(ctx.resource_type, &id)) };
    one_version(ctx, id, Some(version), state).await
}

async fn one_version(
    ctx: Context,
    id: String,
    version: Option<i64>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let (resource_type, work, asked) = (ctx.resource_type, ctx.work(&state), id.clone());
    let action = if version.is_some() { Action::Vread } else { Action::Read };
    let found = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        let store = work.store();
        let row = match version {
            // The current version carries the head's metadata: judging it is judging the head.
            None => store.current(resource_type, &id)?.map(|row| gate.release_one(row)).transpose()?.flatten(),
            // An older version is judged together with the current one: a resource withheld
            // now is withheld in every version.
            Some(version) => match gate.released_head(resource_type, &id)? {
                Some(_) => {
                    store.version(resource_type, &id, version)?.map(|row| gate.release_one(row)).transpose()?.flatten()
                }
                None => None,
            },
        };
        let Some(row) = row else {
            gate.record_not_found(action, &work.agent)?;
            return Ok(None);
        };
        let body = gate.open(&row)?;
        // Nothing is answered before its audit record is durable.
        gate.record(action, &work.agent, None)?;
        Ok(Some((row, body)))
    })
    .await??;
    match found {
        Some((row, body)) => Ok(version_response(row.get(), body, ctx.output)),
        None => Err(not_found(ctx.resource_type, &asked)),
    }
}

/// `GET /{type}/{id}/_history`
pub async fn history(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &["_count", "_offset"])?;
    let paging = paging(&ctx.params, &state.config)?;
    let base = http::base_url(&request, &state.config);
    let (resource_type, work, lookup) = (ctx.resource_type, ctx.work(&state), id.clone());
    let rows = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        if gate.released_head(resource_type, &lookup)?.is_none() {
            gate.record_not_found(Action::History, &work.agent)?;
            return Ok(None);
        }
        let released = gate.release(work.store().history(resource_type, &lookup)?)?;
        let total = released.len();
        let page: Vec<Released<VersionRow>> = released.into_iter().skip(paging.offset).take(paging.count).collect();
        let mut opened = Vec::with_capacity(page.len());
        for row in page {
            let body = gate.open(&row)?;
            opened.push((row, body));
        }
        gate.record(Action::History, &work.agent, None)?;
        Ok(Some((total, opened, paging)))
    })
    .await??;
    let Some((total, opened, paging)) = rows else { return Err(not_found(ctx.resource_type, &id)) };
    let bodies: Vec<Box<RawValue>> = opened.iter().map(|(_, body)| raw(body)).collect::<Result<_, _>>()?;
    let entries = opened
        .iter()
        .zip(&bodies)
        .map(|((row, _), body)| {
            let row = row.get();
            let (method, url, status) = if row.method == "POST" {
                ("POST", row.resource_type.clone(), "201 Created")
            } else {
                ("PUT", format!("{}/{}", row.resource_type, row.id), "200 OK")
            };
            Entry {
                full_url: format!("{base}/{}/{}", row.resource_type, row.id),
                resource: body,
                search: None,
                request: Some(json!({"method": method, "url": url})),
                response: Some(json!({"status": status, "etag": http::etag(row.version), "lastModified": instant(row.last_updated)})),
            }
        })
        .collect();
    let links = page_links(&base, &format!("{}/{id}/_history", ctx.resource_type), &ctx.params, &paging, total);
    Ok(http::fhir_json(StatusCode::OK, bundle("history", total, links, entries)?, ctx.output))
}
