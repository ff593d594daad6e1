//! The FHIR REST handlers: create, read, vread, update, history and search for the served types.
//! Handlers are thin: they parse the request, call the store inside the blocking pool, and pass
//! every row that leaves through `enforce` before it is opened.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, Agent, Outcome, ResourceRef};
use consent::{PatientConsent, Principal, SecurityLabel};
use fhir_profiles::search::{index_facts, search_params, DateQuery, ParamKind, TokenQuery};
use fhir_profiles::{
    document_custodian, is_valid_id, parse_resource, stored_patient_id, Hetu, ParsedResource, PatientLink,
    ProfileError, ResourceType, ServiceEventLink, HETU_SYSTEM,
};
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::app::AppState;
use crate::audit::{self, AuditRecord};
use crate::enforce::{Gate, Released};
use crate::error::GatewayError;
use crate::http::{self, Output, Return};
use crate::identity::Caller;
use crate::store::{instant, now_millis, Criterion, Head, NewResource, Store, TokenMatch, VersionRow};

/// The resource type named in the path, or 404.
fn resource_type(request: &HttpRequest) -> Result<ResourceType, GatewayError> {
    let name = request.match_info().get("type").unwrap_or("");
    name.parse().map_err(|()| GatewayError::UnknownResourceType(http::printable(name)))
}

fn not_found(resource_type: ResourceType, id: &str) -> GatewayError {
    GatewayError::NotFound { resource_type: resource_type.as_str().to_owned(), id: http::printable(id) }
}

/// The id in the path. An id that cannot exist gets the same 404 as one that does not.
fn path_id(request: &HttpRequest, resource_type: ResourceType) -> Result<String, GatewayError> {
    let id = request.match_info().get("id").unwrap_or("");
    if is_valid_id(id) {
        Ok(id.to_owned())
    } else {
        Err(not_found(resource_type, id))
    }
}

struct Context {
    resource_type: ResourceType,
    principal: Principal,
    agent: Agent,
    output: Output,
    params: Vec<(String, String)>,
}

/// What every FHIR handler does first: the caller is known (the `Caller` extractor ran before the
/// handler), the type exists, the response format is one we can produce.
fn context(request: &HttpRequest, caller: Caller) -> Result<Context, GatewayError> {
    let resource_type = resource_type(request)?;
    let Caller(principal, agent) = caller;
    let params = http::query_pairs(request);
    let output = http::negotiate(request, &params)?;
    Ok(Context { resource_type, principal, agent, output, params })
}

/// What the blocking part of a handler needs: who asks (and how the audit log names them), and
/// the store and policy that answer.
struct Work {
    principal: Principal,
    agent: Agent,
    store: Store,
    policy: consent::Policy,
}

impl Work {
    fn gate(&self) -> Gate<'_> {
        Gate::new(&self.principal, &self.store, self.policy)
    }
}

impl Context {
    fn work(&self, state: &AppState) -> Work {
        Work {
            principal: self.principal.clone(),
            agent: self.agent.clone(),
            store: state.store.clone(),
            policy: state.config.policy,
        }
    }
}

fn ensure_writable(resource_type: ResourceType) -> Result<(), GatewayError> {
    if resource_type.is_writable() {
        Ok(())
    } else {
        Err(GatewayError::MethodNotAllowed(format!("{resource_type} is read-only: only the gateway writes it")))
    }
}

/// Who writes a resource of this type, recorded as its author: healthcare professionals write
/// clinical records (as organisation and practitioner); a patient writes their own Consents and
/// nothing else (no author: the Consent names its patient). Auditors and administrators write
/// nothing.
fn author(principal: &Principal, resource_type: ResourceType) -> Result<Option<(String, String)>, GatewayError> {
    match (principal, resource_type) {
        (Principal::Patient { .. }, ResourceType::Consent) => Ok(None),
        (_, ResourceType::Consent) => Err(GatewayError::Forbidden(
            "a patient's Consents are written by the patient, through their own token".into(),
        )),
        (Principal::Professional(professional), _) => {
            Ok(Some((professional.organisation.clone(), professional.practitioner.clone())))
        }
        (other, _) => Err(GatewayError::Forbidden(format!("a {} does not write clinical records", other.kind()))),
    }
}

/// A Consent is the patient's own: it must name the patient whose token wrote it, and express
/// its choices in the shapes the consent crate enforces, which it refuses naming the element.
/// Anything else is one answer, so a patient cannot probe which Patient ids exist.
fn check_own_consent(store: &Store, principal: &Principal, parsed: &ParsedResource) -> Result<(), GatewayError> {
    let Principal::Patient { pseudonym } = principal else { return Ok(()) };
    let own = match &parsed.patient {
        PatientLink::Stored(id) => store.patient_pseudonym(id)?.as_deref() == Some(pseudonym.as_str()),
        _ => false,
    };
    if !own {
        return Err(GatewayError::Forbidden("a patient writes only their own Consents".into()));
    }
    PatientConsent::from_fhir(&Value::Object(parsed.json.clone())).map_err(|e| {
        GatewayError::from(ProfileError::business_rule(
            format!("not a choice the gateway can enforce: expected {}", e.expected()),
            e.path(),
        ))
    })?;
    Ok(())
}

/// The service event a resource belongs to: named by the resource, or that of the stored
/// Encounter it points at, which must be the same patient's.
fn service_event(
    store: &Store,
    link: &ServiceEventLink,
    patient: Option<&str>,
) -> Result<Option<String>, GatewayError> {
    match link {
        ServiceEventLink::Oid(oid) => Ok(Some(oid.clone())),
        ServiceEventLink::None => Ok(None),
        ServiceEventLink::Encounter(id) => match store.head(ResourceType::Encounter, id)? {
            Some(encounter) if encounter.patient.is_some() && encounter.patient.as_deref() == patient => {
                Ok(encounter.service_event)
            }
            _ => Err(GatewayError::Unprocessable(format!(
                "the referenced Encounter/{} does not exist for this patient",
                http::printable(id)
            ))),
        },
    }
}

/// Everything the store needs of a parsed resource: its patient's pseudonym, its labels, its
/// index facts. Runs in the blocking pool (a referenced Patient is looked up).
pub(crate) fn prepare(
    store: &Store,
    parsed: ParsedResource,
    id_for_pseudonym: Option<&str>,
    author: Option<(String, String)>,
) -> Result<NewResource, GatewayError> {
    // A document is filed under the organisation that answers for it: only that organisation
    // may send it.
    if parsed.resource_type == ResourceType::Bundle
        && document_custodian(&parsed.json).as_deref() != author.as_ref().map(|(organisation, _)| organisation.as_str())
    {
        let message = "the document's custodian is not the organisation of the client certificate";
        return Err(ProfileError::business_rule(message, "Bundle.entry[0].resource.custodian").into());
    }
    let pseudonyms = store.pseudonyms();
    let patient = match &parsed.patient {
        PatientLink::Itself => Some(match (parsed.hetus.first(), id_for_pseudonym) {
            (Some(hetu), _) => pseudonyms.patient_from_hetu(hetu),
            (None, Some(id)) => pseudonyms.patient_from_id(id),
            (None, None) => unreachable!("a Patient is always written with an id"),
        }),
        PatientLink::Stored(patient_id) => Some(store.patient_pseudonym(patient_id)?.ok_or_else(|| {
            GatewayError::Unprocessable(format!(
                "the referenced Patient/{} does not exist",
                http::printable(patient_id)
            ))
        })?),
        PatientLink::Embedded(hetu) => Some(pseudonyms.patient_from_hetu(hetu)),
        PatientLink::None => None,
    };
    let mut labels: Vec<&str> = parsed
        .security
        .iter()
        .filter_map(|coding| SecurityLabel::from_coding(&coding.system, &coding.code))
        .map(SecurityLabel::code)
        .collect();
    labels.sort_unstable();
    labels.dedup();
    let facts = index_facts(parsed.resource_type, &parsed.json);
    let service_event = service_event(store, &parsed.service_event, patient.as_deref())?;
    let (author_org, author_practitioner) = author.unzip();
    Ok(NewResource {
        resource_type: parsed.resource_type,
        security_labels: labels.join(" "),
        json: parsed.json,
        patient,
        facts,
        author_org,
        author_practitioner,
        service_event,
    })
}

/// The answer to a write: `Location`, `ETag`, `Last-Modified`, and the body `Prefer` asks for.
/// `visible`: whether the writer may read what they wrote (the enforcement point's answer,
/// asked in the blocking pool); a writer who may not gets the headers and no body.
pub(crate) fn written_document(
    request: &HttpRequest,
    state: &AppState,
    visible: bool,
    output: Output,
    status: StatusCode,
    head: &Head,
    body: Vec<u8>,
) -> HttpResponse {
    let base = http::base_url(request, state);
    let location = format!("{base}/{}/{}/_history/{}", head.resource_type, head.id, head.version);
    let mut response = HttpResponse::build(status);
    response
        .insert_header((header::LOCATION, location.clone()))
        .insert_header((header::ETAG, http::etag(head.version)))
        .insert_header((header::LAST_MODIFIED, http_date(head.last_updated)));
    let body = match http::prefer_return(request) {
        Return::Representation if visible => body,
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

/// `POST /{type}`
pub async fn create(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    ensure_writable(ctx.resource_type)?;
    let writer = author(&ctx.principal, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    let bytes = http::fhir_body(&request, payload, &state).await?;
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let (head, body, visible) = web::block(move || -> Result<_, GatewayError> {
        let parsed = parse_resource(resource_type, &bytes)?;
        check_own_consent(&work.store, &work.principal, &parsed)?;
        // The server assigns ids on create; the pseudonym of a Patient without a HETU derives
        // from that id, so the id is chosen before the pseudonym.
        let id = uuid::Uuid::new_v4().to_string();
        let resource = prepare(&work.store, parsed, Some(&id), writer)?;
        let record = write_record(&work.agent, resource_type, &id, 1, resource.patient.clone());
        let (head, body) = work.store.create(resource, &id, vec![record])?;
        // The caller wrote it, but what they get back still passes the enforcement point.
        let visible = work.gate().permits(&head)?;
        Ok((head, body, visible))
    })
    .await??;
    Ok(written_document(&request, &state, visible, ctx.output, StatusCode::CREATED, &head, body))
}

/// `PUT /{type}/{id}`
pub async fn update(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    ensure_writable(ctx.resource_type)?;
    let writer = author(&ctx.principal, ctx.resource_type)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &[])?;
    let expected = http::if_match(&request)?;
    let bytes = http::fhir_body(&request, payload, &state).await?;
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let (head, body, visible) = web::block(move || -> Result<_, GatewayError> {
        let parsed = parse_resource(resource_type, &bytes)?;
        if parsed.id() != Some(id.as_str()) {
            return Err(GatewayError::BadRequest("the resource's id must equal the id in the URL".into()));
        }
        let gate = work.gate();
        // A resource the caller may not see is, to them, one that does not exist.
        let Some(current) = released_head(&gate, &work.store, resource_type, &id)? else {
            gate.record_not_found(Action::Update, &work.agent)?;
            return Err(not_found(resource_type, &id));
        };
        check_own_consent(&work.store, &work.principal, &parsed)?;
        let resource = prepare(&work.store, parsed, Some(&id), writer)?;
        let record = write_record(&work.agent, resource_type, &id, current.get().version + 1, resource.patient.clone());
        let (head, body) = work.store.update(resource, &id, expected, vec![record])?;
        // Judged afresh: a patient's new Consent may have changed what the writer may read.
        let visible = work.gate().permits(&head)?;
        Ok((head, body, visible))
    })
    .await??;
    Ok(written_document(&request, &state, visible, ctx.output, StatusCode::OK, &head, body))
}

fn version_response(row: &VersionRow, body: Vec<u8>, output: Output) -> HttpResponse {
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
        let row = match version {
            // The current version carries the head's metadata: judging it is judging the head.
            None => work.store.current(resource_type, &id)?.map(|row| gate.release_one(row)).transpose()?.flatten(),
            // An older version is judged together with the current one: a resource withheld
            // now is withheld in every version.
            Some(version) => match released_head(&gate, &work.store, resource_type, &id)? {
                Some(_) => work
                    .store
                    .version(resource_type, &id, version)?
                    .map(|row| gate.release_one(row))
                    .transpose()?
                    .flatten(),
                None => None,
            },
        };
        let Some(row) = row else {
            gate.record_not_found(action, &work.agent)?;
            return Ok(None);
        };
        let body = work.store.open(&row)?;
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

/// The audit record of a create or update, committed with it. A Consent written is a change of
/// the patient's choices.
fn write_record(
    agent: &Agent,
    resource_type: ResourceType,
    id: &str,
    version: i64,
    patient: Option<String>,
) -> AuditRecord {
    let action = match resource_type {
        ResourceType::Consent => Action::ConsentChange,
        _ if version == 1 => Action::Create,
        _ => Action::Update,
    };
    let resource =
        ResourceRef { resource_type: resource_type.to_string(), id: id.to_owned(), version: Some(version.to_string()) };
    AuditRecord::new(&audit::event(action, Outcome::Success, agent, patient, vec![resource], audit::now()))
}

/// What the audit log keeps of a search: the type and the parameter names, never their values
/// (a value may be a HETU).
fn query_shape(resource_type: &str, params: &[(String, String)]) -> String {
    let names: Vec<String> = params.iter().map(|(name, _)| http::printable(name)).collect();
    format!("{resource_type}?{}", names.join("&"))
}

/// The current head of a resource, if it exists and the gate releases it.
fn released_head(
    gate: &Gate<'_>,
    store: &Store,
    resource_type: ResourceType,
    id: &str,
) -> Result<Option<Released<Head>>, GatewayError> {
    match store.head(resource_type, id)? {
        Some(head) => gate.release_one(head),
        None => Ok(None),
    }
}

#[derive(Serialize)]
struct Entry<'a> {
    #[serde(rename = "fullUrl")]
    full_url: String,
    resource: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    search: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    request: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<Value>,
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

fn bundle(
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

fn raw(body: &[u8]) -> Result<Box<RawValue>, GatewayError> {
    let text = std::str::from_utf8(body).map_err(|_| GatewayError::Internal("stored body is not UTF-8".into()))?;
    RawValue::from_string(text.to_owned()).map_err(|e| GatewayError::Internal(format!("stored body: {e}")))
}

/// `_count` and `_offset`.
struct Paging {
    count: usize,
    offset: usize,
}

fn paging(params: &[(String, String)], state: &AppState) -> Result<Paging, GatewayError> {
    let mut paging = Paging { count: state.config.default_count, offset: 0 };
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                let count: usize =
                    value.parse().map_err(|_| GatewayError::BadRequest("_count must be a whole number".into()))?;
                paging.count = count.min(state.config.max_count);
            }
            "_offset" => {
                paging.offset =
                    value.parse().map_err(|_| GatewayError::BadRequest("_offset must be a whole number".into()))?;
            }
            _ => {}
        }
    }
    Ok(paging)
}

/// Self, previous and next links. The query is rebuilt from the parsed parameters (minus the
/// paging ones), so a link never carries anything the server did not accept.
fn page_links(base: &str, path: &str, params: &[(String, String)], paging: &Paging, total: usize) -> Vec<Value> {
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

/// `GET /{type}/{id}/_history`
pub async fn history(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let ctx = context(&request, caller)?;
    let id = path_id(&request, ctx.resource_type)?;
    http::only_params(&ctx.params, &["_count", "_offset"])?;
    let paging = paging(&ctx.params, &state)?;
    let base = http::base_url(&request, &state);
    let (resource_type, work, lookup) = (ctx.resource_type, ctx.work(&state), id.clone());
    let rows = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        if released_head(&gate, &work.store, resource_type, &lookup)?.is_none() {
            gate.record_not_found(Action::History, &work.agent)?;
            return Ok(None);
        }
        let released = gate.release(work.store.history(resource_type, &lookup)?)?;
        let total = released.len();
        let page: Vec<Released<VersionRow>> = released.into_iter().skip(paging.offset).take(paging.count).collect();
        let mut opened = Vec::with_capacity(page.len());
        for row in page {
            let body = work.store.open(&row)?;
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

/// A search request, parsed but not yet resolved against the database.
enum Filter {
    Ids(Vec<String>),
    Tokens { param: &'static str, values: Vec<TokenQuery> },
    PatientIds(Vec<String>),
    PatientIdentifiers(Vec<TokenQuery>),
    Dates { param: &'static str, queries: Vec<DateQuery> },
    LastUpdated(Vec<DateQuery>),
}

const CONTROL_PARAMS: [&str; 6] = ["_count", "_offset", "_format", "_pretty", "_include", "_revinclude"];

fn parse_filters(resource_type: ResourceType, params: &[(String, String)]) -> Result<Vec<Filter>, GatewayError> {
    let supported = search_params(resource_type);
    let mut filters = Vec::new();
    for (raw_name, value) in params {
        if CONTROL_PARAMS.contains(&raw_name.as_str()) {
            continue;
        }
        let printable = http::printable(raw_name);
        let (name, modifier) = match raw_name.split_once(':') {
            Some((name, modifier)) => (name, Some(modifier)),
            None => (raw_name.as_str(), None),
        };
        // Both would test values of resources other than the ones returned, which the caller may
        // not be allowed to see; refused rather than answered from hidden data.
        if name.contains('.') {
            return Err(GatewayError::BadRequest(format!("chained search ('{printable}') is not supported")));
        }
        if name == "_has" {
            return Err(GatewayError::BadRequest("reverse chaining (_has) is not supported".into()));
        }
        let Some(param) = supported.iter().find(|p| p.name == name) else {
            return Err(GatewayError::BadRequest(format!(
                "unknown or unsupported search parameter '{printable}' for {resource_type}; supported: {}",
                supported.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            )));
        };
        let values: Vec<&str> = value.split(',').collect();
        if values.iter().any(|v| v.is_empty()) {
            return Err(GatewayError::BadRequest(format!("search parameter '{printable}' has an empty value")));
        }
        let bad_modifier = || GatewayError::BadRequest(format!("modifier in '{printable}' is not supported"));
        let filter = match (param.name, param.kind, modifier) {
            ("_id", _, None) => {
                Filter::Ids(values.iter().filter(|v| is_valid_id(v)).map(|v| (*v).to_owned()).collect())
            }
            ("_lastUpdated", _, None) => Filter::LastUpdated(date_queries(&values, &printable)?),
            (_, ParamKind::Date, None) => {
                Filter::Dates { param: param.name, queries: date_queries(&values, &printable)? }
            }
            (_, ParamKind::Token, None) => {
                Filter::Tokens { param: param.name, values: token_queries(&values, &printable)? }
            }
            (_, ParamKind::Reference, None) => Filter::PatientIds(
                values
                    .iter()
                    .map(|v| {
                        let id = stored_patient_id(v).unwrap_or(v);
                        if is_valid_id(id) {
                            Ok(id.to_owned())
                        } else {
                            Err(GatewayError::BadRequest(format!("'{printable}' takes Patient/{{id}} or {{id}}")))
                        }
                    })
                    .collect::<Result<_, _>>()?,
            ),
            (_, ParamKind::Reference, Some("identifier")) => {
                Filter::PatientIdentifiers(token_queries(&values, &printable)?)
            }
            _ => return Err(bad_modifier()),
        };
        filters.push(filter);
    }
    Ok(filters)
}

fn date_queries(values: &[&str], name: &str) -> Result<Vec<DateQuery>, GatewayError> {
    values
        .iter()
        .map(|v| {
            DateQuery::parse(v).ok_or_else(|| {
                GatewayError::BadRequest(format!(
                    "'{name}' takes a FHIR date with an optional prefix (eq, ne, lt, le, gt, ge)"
                ))
            })
        })
        .collect()
}

fn token_queries(values: &[&str], name: &str) -> Result<Vec<TokenQuery>, GatewayError> {
    values
        .iter()
        .map(|v| {
            TokenQuery::parse(v)
                .ok_or_else(|| GatewayError::BadRequest(format!("'{name}' takes system|value, |value or value")))
        })
        .collect()
}

fn tokens(store: &Store, param: &str, values: &[TokenQuery]) -> Vec<TokenMatch> {
    let pseudonyms = store.pseudonyms();
    values
        .iter()
        .map(|query| match query {
            TokenQuery::AnySystem(value) => TokenMatch::any_system(pseudonyms, param, value),
            TokenQuery::NoSystem(value) => TokenMatch::exact(pseudonyms, param, None, value),
            TokenQuery::System { system, value } => TokenMatch::exact(pseudonyms, param, Some(system), value),
        })
        .collect()
}

/// Turns filters into store criteria; patient references become pseudonyms here.
fn criteria(store: &Store, filters: Vec<Filter>) -> Result<Vec<Criterion>, GatewayError> {
    let mut criteria = Vec::with_capacity(filters.len());
    for filter in filters {
        criteria.push(match filter {
            Filter::Ids(ids) => Criterion::Ids(ids),
            Filter::Tokens { param, values } => {
                Criterion::Tokens { param: param.to_owned(), tokens: tokens(store, param, &values) }
            }
            Filter::Dates { param, queries } => Criterion::Dates { param: param.to_owned(), queries },
            Filter::LastUpdated(queries) => Criterion::LastUpdated(queries),
            Filter::PatientIds(ids) => {
                let mut pseudonyms = Vec::new();
                for id in ids {
                    pseudonyms.extend(store.patient_pseudonym(&id)?);
                }
                Criterion::Patients(pseudonyms)
            }
            Filter::PatientIdentifiers(values) => {
                let mut pseudonyms = Vec::new();
                for value in &values {
                    if let TokenQuery::System { system, value } = value {
                        if system == HETU_SYSTEM {
                            let hetu = Hetu::parse(value).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
                            pseudonyms.push(store.pseudonyms().patient_from_hetu(&hetu));
                        }
                    }
                }
                let patients = store.search(
                    ResourceType::Patient,
                    &[Criterion::Tokens { param: "identifier".into(), tokens: tokens(store, "identifier", &values) }],
                )?;
                pseudonyms.extend(patients.into_iter().filter_map(|head| head.patient));
                pseudonyms.sort();
                pseudonyms.dedup();
                Criterion::Patients(pseudonyms)
            }
        });
    }
    Ok(criteria)
}

/// What a search adds to its matches: `_include={type}:patient` (the matches' Patients) and, on
/// Patient, `_revinclude={type}:patient` (the resources of those types about the matched
/// patients). Both are judged by the enforcement point like the matches and not counted in
/// `total`. Nothing else is supported, so nothing else can be asked of hidden data.
#[derive(Default)]
struct Includes {
    patients: bool,
    reverse: Vec<ResourceType>,
}

fn includes(resource_type: ResourceType, params: &[(String, String)]) -> Result<Includes, GatewayError> {
    let mut includes = Includes::default();
    for (name, value) in params {
        let reverse = match name.as_str() {
            "_include" => false,
            "_revinclude" => true,
            other if other.starts_with("_include:") || other.starts_with("_revinclude:") => {
                return Err(GatewayError::BadRequest(format!(
                    "'{}' is not supported: includes do not iterate",
                    http::printable(other)
                )))
            }
            _ => continue,
        };
        let refused = || {
            GatewayError::BadRequest(if reverse {
                "_revinclude takes {type}:patient, on a Patient search".into()
            } else {
                format!("_include takes {resource_type}:patient")
            })
        };
        let (source, param) = value.split_once(':').ok_or_else(refused)?;
        let source: ResourceType = source.parse().map_err(|()| refused())?;
        let patient_param = search_params(source).iter().any(|p| p.name == "patient" && p.kind == ParamKind::Reference);
        if param != "patient" || !patient_param {
            return Err(refused());
        }
        if reverse {
            if resource_type != ResourceType::Patient {
                return Err(refused());
            }
            if !includes.reverse.contains(&source) {
                includes.reverse.push(source);
            }
        } else {
            if source != resource_type {
                return Err(refused());
            }
            includes.patients = true;
        }
    }
    Ok(includes)
}

/// The patient pseudonyms of released heads, once each.
fn patients_of(heads: &[Released<Head>]) -> Vec<String> {
    let mut patients: Vec<String> = heads.iter().filter_map(|head| head.get().patient.clone()).collect();
    patients.sort_unstable();
    patients.dedup();
    patients
}

/// Opens the current versions of released heads, each passing the gate again as a version.
fn open_current(gate: &Gate<'_>, store: &Store, heads: &[Released<Head>]) -> Result<Vec<Opened>, GatewayError> {
    let rows = gate.release(store.current_versions(heads)?)?;
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        let body = store.open(&row)?;
        opened.push((row, body));
    }
    Ok(opened)
}

type Opened = (Released<VersionRow>, Vec<u8>);

/// A searchset Bundle of matches and includes.
fn searchset(
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

/// `GET /{type}`, `GET|POST /{type}/_search`
pub async fn search(
    request: HttpRequest,
    caller: Caller,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let mut ctx = context(&request, caller)?;
    if request.method() == actix_web::http::Method::POST {
        let content_type = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !content_type.starts_with("application/x-www-form-urlencoded") {
            return Err(GatewayError::UnsupportedMediaType);
        }
        let body = http::body(&request, payload, &state).await?;
        ctx.params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let filters = parse_filters(ctx.resource_type, &ctx.params)?;
    let includes = includes(ctx.resource_type, &ctx.params)?;
    let paging = paging(&ctx.params, &state)?;
    let base = http::base_url(&request, &state);
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let query = query_shape(resource_type.as_str(), &ctx.params);
    let (total, matches, included, paging) = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        let criteria = criteria(&work.store, filters)?;
        // Released before counting and paging: the total and the pages cover only what this
        // caller may see.
        let released = gate.release(work.store.search(resource_type, &criteria)?)?;
        let total = released.len();
        let page: Vec<Released<Head>> = released.into_iter().skip(paging.offset).take(paging.count).collect();
        let mut included: Vec<Released<Head>> = Vec::new();
        let patients = patients_of(&page);
        if includes.patients && resource_type != ResourceType::Patient && !patients.is_empty() {
            included.extend(
                gate.release(work.store.search(ResourceType::Patient, &[Criterion::Patients(patients.clone())])?)?,
            );
        }
        for source in includes.reverse {
            if !patients.is_empty() {
                included.extend(gate.release(work.store.search(source, &[Criterion::Patients(patients.clone())])?)?);
            }
        }
        let matches = open_current(&gate, &work.store, &page)?;
        let included = open_current(&gate, &work.store, &included)?;
        gate.record(Action::Search, &work.agent, Some(&query))?;
        Ok((total, matches, included, paging))
    })
    .await??;
    let links = page_links(&base, ctx.resource_type.as_str(), &ctx.params, &paging, total);
    Ok(http::fhir_json(StatusCode::OK, searchset(&base, total, links, &matches, &included)?, ctx.output))
}

/// `GET /Patient/{id}/$everything`: the Patient and every resource about them that the caller
/// may receive, paged with `_count` and `_offset`. What is withheld is neither counted nor hinted
/// at; a Patient the caller may not see is a 404 like any other.
pub async fn everything(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    let work = Work { principal, agent, store: state.store.clone(), policy: state.config.policy };
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &["_count", "_offset"])?;
    let id = path_id(&request, ResourceType::Patient)?;
    let paging = paging(&params, &state)?;
    let base = http::base_url(&request, &state);
    let lookup = id.clone();
    let found = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        let Some(patient) = released_head(&gate, &work.store, ResourceType::Patient, &lookup)? else {
            gate.record_not_found(Action::Search, &work.agent)?;
            return Ok(None);
        };
        let Some(pseudonym) = patient.get().patient.clone() else { return Ok(None) };
        let mut released = vec![patient];
        for resource_type in ResourceType::ALL {
            // The access log is not the patient's record; it has its own operation.
            if !resource_type.is_patient_data()
                || matches!(resource_type, ResourceType::Patient | ResourceType::AuditEvent)
            {
                continue;
            }
            let criteria = [Criterion::Patients(vec![pseudonym.clone()])];
            released.extend(gate.release(work.store.search(resource_type, &criteria)?)?);
        }
        let total = released.len();
        let page: Vec<Released<Head>> = released.into_iter().skip(paging.offset).take(paging.count).collect();
        let opened = open_current(&gate, &work.store, &page)?;
        gate.record(Action::Search, &work.agent, Some("Patient/$everything"))?;
        Ok(Some((total, opened, paging)))
    })
    .await??;
    let Some((total, matches, paging)) = found else { return Err(not_found(ResourceType::Patient, &id)) };
    let links = page_links(&base, &format!("Patient/{id}/$everything"), &params, &paging, total);
    Ok(http::fhir_json(StatusCode::OK, searchset(&base, total, links, &matches, &[])?, output))
}

/// Any other method on a FHIR path.
pub async fn method_not_allowed(request: HttpRequest) -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::MethodNotAllowed(format!("{} is not supported on this path", request.method())))
}
