//! `GET /AuditEvent`: the audit log as its readers see it. A patient reads every access to
//! their own data (who, which organisation, which role, why, break-the-glass and its reason),
//! newest first, paged; an auditor searches all of it by patient, agent, organisation and time.
//! The events hold identifiers and pseudonyms only, never clinical content. Nobody else reads
//! the log, and reading it is itself recorded.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, AuditEvent, Outcome, Who, PATIENT_PSEUDONYM};
use consent::Principal;
use fhir_profiles::search::{DatePrefix, DateQuery};
use fhir_profiles::{stored_patient_id, Hetu, HETU_SYSTEM};
use serde_json::{json, Map, Value};

use store::audit::{AuditRecord, LogQuery};
use store::time::{instant, now_millis};
use store::Store;

use crate::audit::{self, EntryIds};
use crate::caller::Caller;
use crate::error::{printable_name, GatewayError};
use crate::http;
use crate::state::AppState;

const PARAMS: [&str; 9] =
    ["_id", "_lastUpdated", "patient", "patient:identifier", "agent", "organization", "date", "_count", "_offset"];

/// `GET /AuditEvent`
pub async fn search(
    request: HttpRequest,
    caller: Caller,
    state: web::Data<AppState>,
) -> Result<HttpResponse, GatewayError> {
    let Caller(principal, agent) = caller;
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    // Who may read: a patient their own entries, an auditor all of them. Asked before the
    // parameters, so nobody else learns what the log can be asked.
    let own = match &principal {
        // Under every name the index key's versions have given them: the log is never
        // rewritten, so entries made before a rotation keep the older names.
        Principal::Patient { .. } => principal.own_pseudonyms(),
        Principal::Auditor { .. } => None,
        other => {
            return Err(GatewayError::Forbidden(format!(
                "the audit log is read by patients (their own entries) and auditors, not by a {}",
                other.kind()
            )))
        }
    };
    http::only_params(&params, &PARAMS)?;
    let mut query = LogQuery { count: state.config.default_count, ..LogQuery::default() };
    let base = http::base_url(&request, &state.config);
    let (store, max_count) = (state.store.clone(), state.config.max_count);
    let names: Vec<String> = params.iter().map(|(name, _)| printable_name(name)).collect();
    let reader = own.clone();
    let (total, page, query, ids) = web::block(move || -> Result<_, GatewayError> {
        let ids = EntryIds::of(&store)?;
        // Each patient the query names, by their names (the current one first).
        let mut named: Vec<Vec<String>> = Vec::new();
        for (name, value) in &params {
            match name.as_str() {
                "patient" | "patient:identifier" => {
                    for one in values(value) {
                        let found = patients(&store, name, one)?;
                        named.push(found.clone());
                        query.patients.get_or_insert_with(Vec::new).extend(found);
                    }
                }
                "agent" => query.agents.extend(values(value).map(|v| token_value(v).to_owned())),
                "organization" => query.organisations.extend(values(value).map(|v| {
                    let v = token_value(v);
                    v.strip_prefix("urn:oid:").unwrap_or(v).to_owned()
                })),
                // An entry's id is its position in the log (for a patient, encrypted: see
                // `EntryIds`); anything else matches nothing.
                "_id" => query.ids.get_or_insert_with(Vec::new).extend(values(value).map(|v| match &own {
                    Some(_) => ids.read(v).unwrap_or(-1),
                    None => v.parse().unwrap_or(-1),
                })),
                "date" | "_lastUpdated" => {
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
        // A patient's query is narrowed to their own entries, whatever it named.
        if let Some(own) = &own {
            let asked = query.patients.take();
            query.patients = Some(match asked {
                Some(asked) => asked.into_iter().filter(|p| own.contains(p)).collect(),
                None => own.clone(),
            });
        }
        let (total, page) = store.read_log(&query)?;
        // Reading the log is an access too, recorded before the answer: a patient's in their own
        // log; an auditor's in the log of each patient it named, so that the patient sees whose
        // eyes their history passed before.
        let mut event = audit::event(Action::Search, Outcome::Success, &agent, None, Vec::new(), audit::now());
        event.query = Some(format!("AuditEvent?{}", names.join("&")));
        event.count = Some(page.len() as u64);
        let concerned: Vec<Option<String>> = match &own {
            Some(own) => vec![own.first().cloned()],
            None => {
                named.iter().filter_map(|names| names.first().filter(|n| !n.is_empty()).cloned()).map(Some).collect()
            }
        };
        let records: Vec<AuditRecord> = if concerned.is_empty() {
            vec![AuditRecord::new(&event)]
        } else {
            concerned.into_iter().map(|patient| AuditRecord::new(&AuditEvent { patient, ..event.clone() })).collect()
        };
        store.record(records)?;
        Ok((total, page, query, ids))
    })
    .await??;
    let entries: Vec<Value> = page
        .into_iter()
        .map(|(seq, bytes)| {
            let mut resource = rendered(seq, &bytes, reader.as_deref())?;
            // The stored bytes carry no id; the entry's position is its id, a patient's encrypted.
            let id = if reader.is_some() { ids.show(seq) } else { seq.to_string() };
            let mut with_id = Map::with_capacity(resource.len() + 1);
            with_id.insert("resourceType".into(), resource.remove("resourceType").unwrap_or(json!("AuditEvent")));
            with_id.insert("id".into(), json!(id));
            with_id.extend(resource);
            Ok(json!({"fullUrl": format!("{base}/AuditEvent/{id}"), "resource": with_id, "search": {"mode": "match"}}))
        })
        .collect::<Result<_, GatewayError>>()?;
    let total = usize::try_from(total).unwrap_or(0);
    let link = |offset| page_url(&base, &request, &state.store, offset, query.count);
    let mut links = vec![json!({"relation": "self", "url": link(query.offset)})];
    if query.count > 0 && query.offset + query.count < total {
        links.push(json!({"relation": "next", "url": link(query.offset + query.count)}));
    }
    let bundle = json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::new_v4().to_string(),
        "meta": {"lastUpdated": instant(now_millis())},
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    });
    Ok(http::fhir_json(StatusCode::OK, bundle.to_string().into_bytes(), output))
}

/// The FHIR AuditEvent of a stored entry, as `reader` (a patient's names, or none for an
/// auditor) may see it. Entries written before events were stored compact hold the FHIR
/// rendering itself, and are served as they are.
fn rendered(seq: i64, bytes: &[u8], reader: Option<&[String]>) -> Result<Map<String, Value>, GatewayError> {
    let rendering = match AuditEvent::from_canonical(bytes) {
        Ok(mut event) => {
            if let Some(own) = reader {
                seen_by_patient(&mut event, own);
            }
            event.to_fhir()
        }
        Err(error) => match serde_json::from_slice::<Value>(bytes) {
            Ok(stored) if stored["resourceType"] == "AuditEvent" => stored,
            _ => return Err(GatewayError::Internal(format!("audit entry {seq}: {error}"))),
        },
    };
    match rendering {
        Value::Object(resource) => Ok(resource),
        _ => Err(GatewayError::Internal(format!("audit entry {seq} is not a JSON object"))),
    }
}

/// What a patient reading their log sees of an entry: another patient who tried to reach their
/// data appears as [`ANOTHER_PATIENT`], without that patient's pseudonym, network address or
/// certificate, which are the other's own data (an auditor sees the entry whole).
fn seen_by_patient(event: &mut AuditEvent, own: &[String]) {
    if matches!(&event.agent.who, Who::Patient { pseudonym } if !own.contains(pseudonym)) {
        event.agent.who = Who::Patient { pseudonym: ANOTHER_PATIENT.into() };
        event.agent.address = None;
        event.agent.client_certificate = None;
    }
}

/// The agent a patient's log names for another patient.
const ANOTHER_PATIENT: &str = "another-patient";

fn values(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').filter(|v| !v.is_empty())
}

/// The value of a token `system|value`, `|value` or `value`.
fn token_value(token: &str) -> &str {
    token.rsplit_once('|').map_or(token, |(_, value)| value)
}

/// The pseudonyms a `patient` parameter's values name (a stored Patient, a HETU, or a
/// pseudonym), each patient's current name first.
fn patients(store: &Store, name: &str, value: &str) -> Result<Vec<String>, GatewayError> {
    let mut found = Vec::new();
    for value in values(value) {
        if name == "patient" {
            let id = stored_patient_id(value).unwrap_or(value);
            if let Some(pseudonym) = store.patient_pseudonym(id)? {
                // And the names a re-index moved them from, under which older entries stand.
                let earlier = store.earlier_names(&pseudonym)?;
                found.push(pseudonym);
                found.extend(earlier);
            }
            continue;
        }
        match value.split_once('|') {
            Some((HETU_SYSTEM, hetu)) => {
                let hetu = Hetu::parse(hetu).map_err(|e| GatewayError::BadRequest(e.to_string()))?;
                found.extend(store.every_pseudonym(|p| p.patient_from_hetu(&hetu)));
            }
            Some((PATIENT_PSEUDONYM, pseudonym)) => found.push(pseudonym.to_owned()),
            _ => {
                return Err(GatewayError::BadRequest(format!(
                    "patient:identifier takes {HETU_SYSTEM}|{{hetu}} or {PATIENT_PSEUDONYM}|{{pseudonym}}"
                )))
            }
        }
    }
    // Named but not found: the query matches nothing rather than everything.
    if found.is_empty() {
        found.push(String::new());
    }
    Ok(found)
}

/// A paging link. A HETU the reader named is carried as its pseudonyms (one under each index
/// key version), which find the same entries: the identity code is not written back into the response.
fn page_url(base: &str, request: &HttpRequest, store: &Store, offset: usize, count: usize) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (name, value) in http::query_pairs(request) {
        if name == "patient:identifier" {
            // Every name of the patient, as the first page searched.
            let values: Vec<String> = values(&value)
                .flat_map(|v| match v.split_once('|') {
                    Some((HETU_SYSTEM, hetu)) => match Hetu::parse(hetu) {
                        Ok(hetu) => store
                            .every_pseudonym(|p| p.patient_from_hetu(&hetu))
                            .into_iter()
                            .map(|pseudonym| format!("{PATIENT_PSEUDONYM}|{pseudonym}"))
                            .collect(),
                        Err(_) => vec![String::new()],
                    },
                    _ => vec![v.to_owned()],
                })
                .collect();
            query.append_pair(&name, &values.join(","));
        } else if name != "_offset" && name != "_count" {
            query.append_pair(&name, &value);
        }
    }
    query.append_pair("_count", &count.to_string());
    query.append_pair("_offset", &offset.to_string());
    format!("{base}/AuditEvent?{}", query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_log::{Agent, PurposeOfUse, UnixMillis, Who};

    #[test]
    fn entries_render_whether_stored_compact_or_as_fhir() {
        let event = AuditEvent {
            action: Action::Read,
            outcome: Outcome::Success,
            recorded: UnixMillis::new(1_795_912_322_589).unwrap(),
            agent: Agent {
                who: Who::Patient { pseudonym: "p-1".into() },
                client_certificate: None,
                address: Some("127.0.0.1".into()),
                purpose: Some(PurposeOfUse::PatientRequested),
                reason: None,
            },
            observer: "vaitio@test".into(),
            resources: Vec::new(),
            patient: Some("p-1".into()),
            query: None,
            consent: None,
            count: None,
        };
        let compact = rendered(7, &event.canonical_bytes(), None).unwrap();
        let earlier = rendered(8, event.to_fhir().to_string().as_bytes(), None).unwrap();
        assert_eq!(compact, earlier);
        assert_eq!(compact["resourceType"], "AuditEvent");
        assert!(rendered(9, br#"{"action":"read"}"#, None).is_err());
        assert!(rendered(10, b"not json", None).is_err());

        // The patient p-1 sees their own request whole; p-2, whose data it tried to reach, sees
        // another patient without p-1's name or address; an auditor sees it whole.
        let own = rendered(7, &event.canonical_bytes(), Some(&["p-1".to_owned()])).unwrap();
        assert_eq!(own, compact);
        let tried = AuditEvent { patient: Some("p-2".into()), ..event.clone() };
        let theirs =
            Value::Object(rendered(7, &tried.canonical_bytes(), Some(&["p-2".to_owned()])).unwrap()).to_string();
        assert!(theirs.contains(ANOTHER_PATIENT) && theirs.contains("PAT"), "{theirs}");
        assert!(!theirs.contains("p-1") && !theirs.contains("127.0.0.1"), "{theirs}");
        let whole = Value::Object(compact).to_string();
        assert!(whole.contains("p-1") && whole.contains("127.0.0.1"));
    }
}
