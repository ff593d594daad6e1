//! FHIR's HTTP conventions, shared by every handler: query parameters, `_format` and `Accept`,
//! `Content-Type`, the body size limit, `Prefer`, `If-Match`, and FHIR JSON responses.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use crate::config::Config;
use crate::error::{printable_name, GatewayError, FHIR_JSON};

/// The query string as ordered pairs (a name may repeat: repeats are ANDed in search).
pub fn query_pairs(request: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(request.query_string().as_bytes()).into_owned().collect()
}

/// How to write the response.
#[derive(Clone, Copy, Default)]
pub struct Output {
    pub pretty: bool,
}

const JSON_FORMATS: [&str; 4] = ["json", "application/json", "application/fhir+json", "application/json+fhir"];

/// Reads `_format`, `_pretty` and `Accept`. Only JSON is served; asking for anything else (XML,
/// Turtle) is answered 406 rather than with JSON the client did not ask for.
pub fn negotiate(request: &HttpRequest, params: &[(String, String)]) -> Result<Output, GatewayError> {
    let mut output = Output::default();
    for (name, value) in params {
        match name.as_str() {
            "_format" => {
                // An unencoded '+' in a query string arrives as a space: application/fhir json.
                let format = value.split(';').next().unwrap_or("").trim().replace(' ', "+");
                if !JSON_FORMATS.contains(&format.as_str()) {
                    return Err(GatewayError::NotAcceptable);
                }
            }
            "_pretty" => {
                output.pretty = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(GatewayError::BadRequest("_pretty must be true or false".into())),
                }
            }
            _ => {}
        }
    }
    if params.iter().any(|(name, _)| name == "_format") {
        return Ok(output);
    }
    if let Some(accept) = request.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()) {
        let acceptable = accept.split(',').any(|range| {
            let media = range.split(';').next().unwrap_or("").trim();
            media.is_empty() || matches!(media, "*/*" | "application/*") || JSON_FORMATS[1..].contains(&media)
        });
        if !acceptable {
            return Err(GatewayError::NotAcceptable);
        }
    }
    Ok(output)
}

/// Refuses parameters an endpoint does not take: nothing is silently ignored.
pub fn only_params(params: &[(String, String)], allowed: &[&str]) -> Result<(), GatewayError> {
    match params.iter().find(|(name, _)| !allowed.contains(&name.as_str()) && name != "_format" && name != "_pretty") {
        Some((name, _)) => {
            Err(GatewayError::BadRequest(format!("parameter '{}' is not supported here", printable_name(name))))
        }
        None => Ok(()),
    }
}

/// The body of a create or update: FHIR JSON in UTF-8, within the size limit.
pub async fn fhir_body(
    request: &HttpRequest,
    payload: web::Payload,
    config: &Config,
) -> Result<web::Bytes, GatewayError> {
    let expected = "application/fhir+json (or application/json) in UTF-8";
    utf8_body(request, payload, config, &JSON_FORMATS[1..], expected).await
}

/// A plain JSON body (the clinic's record format), in UTF-8, within the size limit.
pub async fn json_body(
    request: &HttpRequest,
    payload: web::Payload,
    config: &Config,
) -> Result<web::Bytes, GatewayError> {
    utf8_body(request, payload, config, &["application/json"], "application/json in UTF-8").await
}

/// A body whose Content-Type is one of `media_types` (`expected` says them to the client), with no
/// charset other than UTF-8.
async fn utf8_body(
    request: &HttpRequest,
    payload: web::Payload,
    config: &Config,
    media_types: &[&str],
    expected: &'static str,
) -> Result<web::Bytes, GatewayError> {
    if !has_media_type(request, media_types) {
        return Err(GatewayError::UnsupportedMediaType(expected));
    }
    body(request, payload, config).await
}

/// Whether the body's Content-Type is one of `media_types`, with no charset other than UTF-8.
pub fn has_media_type(request: &HttpRequest, media_types: &[&str]) -> bool {
    let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut parts = content_type.split(';').map(str::trim);
    let media = parts.next().unwrap_or("").to_ascii_lowercase();
    let other_charset =
        parts.any(|p| p.to_ascii_lowercase().strip_prefix("charset=").is_some_and(|c| c.trim_matches('"') != "utf-8"));
    media_types.contains(&media.as_str()) && !other_charset
}

/// Any body, within the size limit; a declared length over the limit is refused before reading.
pub async fn body(request: &HttpRequest, payload: web::Payload, config: &Config) -> Result<web::Bytes, GatewayError> {
    let limit = config.max_body_bytes;
    let declared =
        request.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(GatewayError::PayloadTooLarge { limit });
    }
    match payload.to_bytes_limited(limit).await {
        Ok(Ok(bytes)) => Ok(bytes),
        Ok(Err(_)) => Err(GatewayError::BadRequest("the request body could not be read".into())),
        Err(_) => Err(GatewayError::PayloadTooLarge { limit }),
    }
}

/// What the client asked to get back after a write (`Prefer: return=…`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Return {
    Minimal,
    Representation,
    OperationOutcome,
}

pub fn prefer_return(request: &HttpRequest) -> Return {
    let prefer = request.headers().get_all("prefer").filter_map(|v| v.to_str().ok()).collect::<Vec<_>>().join(",");
    for preference in prefer.split([',', ';']).map(str::trim) {
        match preference {
            "return=minimal" => return Return::Minimal,
            "return=OperationOutcome" => return Return::OperationOutcome,
            "return=representation" => return Return::Representation,
            _ => {}
        }
    }
    Return::Representation
}

/// `If-Match: W/"3"` (or `"3"`) as the version it names.
pub fn if_match(request: &HttpRequest) -> Result<Option<i64>, GatewayError> {
    let Some(value) = request.headers().get(header::IF_MATCH) else { return Ok(None) };
    let text = value.to_str().unwrap_or("").trim();
    let text = text.strip_prefix("W/").unwrap_or(text);
    text.trim_matches('"')
        .parse::<i64>()
        .map(Some)
        .map_err(|_| GatewayError::BadRequest("If-Match must be an ETag of the form W/\"<version>\"".into()))
}

pub fn etag(version: i64) -> String {
    format!("W/\"{version}\"")
}

/// The base URL for links: the configured public URL, else this request's host over HTTPS.
pub fn base_url(request: &HttpRequest, config: &Config) -> String {
    match &config.public_base_url {
        Some(url) => url.clone(),
        None => format!("https://{}", request.connection_info().host()),
    }
}

/// A FHIR JSON response; `_pretty=true` re-indents it.
pub fn fhir_json(status: StatusCode, body: Vec<u8>, output: Output) -> HttpResponse {
    let body = if output.pretty {
        serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|value| serde_json::to_vec_pretty(&value).ok())
            .unwrap_or(body)
    } else {
        body
    };
    HttpResponse::build(status).insert_header((header::CONTENT_TYPE, FHIR_JSON)).body(body)
}
