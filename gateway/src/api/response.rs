//! The answers FHIR handlers share: a written resource's headers and body, one version with
//! its ETag, and Bundles (searchset, history) with their paging links.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpRequest, HttpResponse};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use store::time::{instant, now_millis};
use store::{Head, VersionRow};

use crate::api::request::Paging;
use crate::config::Config;
use crate::enforce::Released;
use crate::error::GatewayError;
use crate::http::{self, Output, Return};

/// The answer to a write: `Location`, `ETag`, `Last-Modified`, and the body `Prefer` asks for
/// (none where the write has none to give).
pub fn written_document(
    request: &HttpRequest,
    config: &Config,
    output: Output,
    status: StatusCode,
    head: &Head,
    body: Vec<u8>,
) -> HttpResponse {
    let base = http::base_url(request, config);
    let location = format!("{base}/{}/{}/_history/{}", head.resource_type, head.id, head.version);
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::LOCATION, location.clone()))
        .insert_header((header::ETAG, http::etag(head.version)))
        .insert_header((header::LAST_MODIFIED, http_date(head.last_updated)));
    let body = match http::prefer_return(request) {
        Return::Representation if !body.is_empty() => body,
        Return::OperationOutcome => {
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational",
                "diagnostics": format!("stored as {}/{} version {}", head.resource_type, head.id, head.version)}]})
            .to_string()
            .into_bytes()
        }
        _ => return response.finish(),
    };
    let mut built = http::fhir_json(status, body, output);
    for (name, value) in response.finish().headers() {
        built.headers_mut().insert(name.clone(), value.clone());
    }
    built
}

fn http_date(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis).unwrap_or_default().format("%a, %d %b %Y %H:%M:%S GMT").to_string()
}

/// One version of a resource, with its `ETag` and `Last-Modified`.
pub fn version_response(row: &VersionRow, body: Vec<u8>, output: Output) -> HttpResponse {
    let mut response = http::fhir_json(StatusCode::OK, body, output);
    let headers = response.headers_mut();
    if let Ok(value) = header::HeaderValue::from_str(&http::etag(row.version)) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = header::HeaderValue::from_str(&http_date(row.last_updated)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    response
}

#[derive(Serialize)]
pub struct Entry<'a> {
    #[serde(rename = "fullUrl")]
    pub full_url: String,
    pub resource: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<Value>,
}

#[derive(Serialize)]
struct BundleOut<'a> {
    #[serde(rename = "resourceType")]
    resource_type: &'static str,
    id: String,
    meta: Value,
    #[serde(rename = "type")]
    bundle_type: &'static str,
    total: usize,
    link: Vec<Value>,
    entry: Vec<Entry<'a>>,
}

pub fn bundle(
    bundle_type: &'static str,
    total: usize,
    link: Vec<Value>,
    entry: Vec<Entry<'_>>,
) -> Result<Vec<u8>, GatewayError> {
    let bundle = BundleOut {
        resource_type: "Bundle",
        id: uuid::Uuid::new_v4().to_string(),
        meta: json!({"lastUpdated": instant(now_millis())}),
        bundle_type,
        total,
        link,
        entry,
    };
    serde_json::to_vec(&bundle).map_err(|e| GatewayError::Internal(format!("serialise bundle: {e}")))
}

/// A stored body, to be written into a Bundle as it is.
pub fn raw(body: &[u8]) -> Result<Box<RawValue>, GatewayError> {
    let text = std::str::from_utf8(body).map_err(|_| GatewayError::Internal("stored body is not UTF-8".into()))?;
    RawValue::from_string(text.to_owned()).map_err(|e| GatewayError::Internal(format!("stored body: {e}")))
}

/// A released version and its plaintext.
pub type Opened = (Released<VersionRow>, Vec<u8>);

/// A searchset Bundle of matches and includes.
pub fn searchset(
    base: &str,
    total: usize,
    links: Vec<Value>,
    matches: &[Opened],
    included: &[Opened],
) -> Result<Vec<u8>, GatewayError> {
    let tagged = matches.iter().map(|o| (o, "match")).chain(included.iter().map(|o| (o, "include")));
    let bodies: Vec<(Box<RawValue>, &VersionRow, &str)> =
        tagged.map(|((row, body), mode)| Ok((raw(body)?, row.get(), mode))).collect::<Result<_, GatewayError>>()?;
    let entries = bodies
        .iter()
        .map(|(body, row, mode)| Entry {
            full_url: format!("{base}/{}/{}", row.resource_type, row.id),
            resource: body,
            search: Some(json!({ "mode": mode })),
            request: None,
            response: None,
        })
        .collect();
    bundle("searchset", total, links, entries)
}

/// Self, previous and next links. The query is rebuilt from the parsed parameters (minus the
/// paging ones), so a link never carries anything the server did not accept.
pub fn page_links(base: &str, path: &str, params: &[(String, String)], paging: &Paging, total: usize) -> Vec<Value> {
    let kept: Vec<&(String, String)> = params.iter().filter(|(n, _)| n != "_offset" && n != "_count").collect();
    let link = |offset: usize| {
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (name, value) in &kept {
            query.append_pair(name, value);
        }
        query.append_pair("_count", &paging.count.to_string());
        query.append_pair("_offset", &offset.to_string());
        format!("{base}/{path}?{}", query.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(paging.offset)})];
    if paging.count > 0 && paging.offset + paging.count < total {
        links.push(json!({"relation": "next", "url": link(paging.offset + paging.count)}));
    }
    if paging.offset > 0 {
        links.push(json!({"relation": "previous", "url": link(paging.offset.saturating_sub(paging.count.max(1)))}));
    }
    links
}
