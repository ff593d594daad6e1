//! `GET /{type}`, `GET|POST /{type}/_search` and `GET /Patient/{id}/$everything`: the index
//! narrows, the enforcement point releases before anything is counted or paged, and only the
//! page is opened.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::Action;
use consent::Principal;
use fhir_profiles::query::{Filter, SearchQuery};
use fhir_profiles::search::{search_params, TokenQuery};
use fhir_profiles::{Hetu, ResourceType, HETU_SYSTEM};
use store::{Criterion, Head, Store, TokenMatch};

use crate::api::request::{context, not_found, paging, path_id, Work};
use crate::api::response::{page_links, searchset, Opened};
use crate::caller::Caller;
use crate::enforce::{Gate, Released};
use crate::error::GatewayError;
use crate::http;
use crate::state::AppState;

/// Each value's tokens under the index key version in force and, while a re-index is
/// unfinished, under the older versions too (any of them matches).
fn tokens(store: &Store, param: &str, values: &[TokenQuery]) -> Vec<TokenMatch> {
    let versions = store.index_keys().lookup();
    versions
        .iter()
        .flat_map(|pseudonyms| {
            values.iter().map(move |query| match query {
                TokenQuery::AnySystem(value) => TokenMatch::any_system(pseudonyms, param, value),
                TokenQuery::NoSystem(value) => TokenMatch::exact(pseudonyms, param, None, value),
                TokenQuery::System { system, value } => TokenMatch::exact(pseudonyms, param, Some(system), value),
            })
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
                            pseudonyms.extend(store.lookup_pseudonyms(|p| p.patient_from_hetu(&hetu)));
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

/// The patient pseudonyms of released heads, once each.
fn patients_of(heads: &[Released<Head>]) -> Vec<String> {
    let mut patients: Vec<String> = heads.iter().filter_map(|head| head.get().patient.clone()).collect();
    patients.sort_unstable();
    patients.dedup();
    patients
}

/// Opens the current versions of released heads, each passing the gate again as a version.
fn open_current(gate: &Gate<'_>, store: &Store, heads: &[Released<Head>]) -> Result<Vec<Opened>, GatewayError> {
    let rows = gate.release(store.current_versions(heads.iter().map(Released::get))?)?;
    let mut opened = Vec::with_capacity(rows.len());
    for row in rows {
        let body = gate.open(&row)?;
        opened.push((row, body));
    }
    Ok(opened)
}

/// How many ids, identifiers and patients one search may name, together: what a search judges
/// grows with what it names, so this bounds it.
const MAX_NAMED: usize = 100;

/// The register cannot be browsed: being a patient of a psychotherapy register is itself the
/// sensitive fact, and a search that names nothing would judge (and audit) every patient. A
/// patient's search is narrowed to their own data; anyone else's must name what it looks for.
fn bounded(principal: &Principal, resource_type: ResourceType, query: &SearchQuery) -> Result<(), GatewayError> {
    let named = query.named();
    if named > MAX_NAMED {
        return Err(GatewayError::BadRequest(format!(
            "a search names at most {MAX_NAMED} ids, identifiers and patients together"
        )));
    }
    let own_data = matches!(principal, Principal::Patient { .. }) && resource_type.is_patient_data();
    if named == 0 && !own_data {
        return Err(GatewayError::SearchMustName(
            search_params(resource_type)
                .iter()
                .filter(|p| matches!(p.name, "_id" | "identifier" | "patient"))
                .map(|p| if p.name == "patient" { "patient (or patient:identifier)" } else { p.name })
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
    Ok(())
}

/// What the audit log keeps of a search: the type, each parameter, and its values with every
/// identifier replaced by its keyed token (a HETU never reaches the log); other values (ids,
/// dates, paging) as far as they are printable, each bounded. A HETU typed where an id belongs
/// (`patient=`, `_id=`) is replaced by its keyed token too: the log is kept for years and
/// shown to auditors, and such a search still says which person someone looked for.
fn audited_query(store: &Store, resource_type: ResourceType, params: &[(String, String)]) -> String {
    let value = |text: &str| -> String {
        // HETUs first, in the whole value: cut or filtered first, part of one could stay.
        let masked = without_hetus(text, |hetu| store.pseudonyms().token_any_system("identifier", hetu));
        masked.chars().filter(|c| c.is_ascii_alphanumeric() || "_-:./".contains(*c)).take(64).collect()
    };
    let pairs: Vec<String> = params
        .iter()
        .map(|(name, values)| {
            let param = name.split(':').next().unwrap_or(name);
            let shown: Vec<String> = if matches!(name.as_str(), "identifier" | "patient:identifier") {
                values
                    .split(',')
                    .map(|v| match TokenQuery::parse(v) {
                        Some(TokenQuery::System { system, value: token }) => {
                            format!("{}|{}", value(&system), store.pseudonyms().token(param, Some(&system), &token))
                        }
                        Some(TokenQuery::NoSystem(token)) => {
                            format!("|{}", store.pseudonyms().token(param, None, &token))
                        }
                        Some(TokenQuery::AnySystem(token)) => store.pseudonyms().token_any_system(param, &token),
                        None => String::new(),
                    })
                    .collect()
            } else {
                values.split(',').map(value).collect()
            };
            format!("{}={}", crate::error::printable_name(name), shown.join(","))
        })
        .collect();
    format!("{resource_type}?{}", pairs.join("&"))
}

/// `text` with every run shaped like a HETU replaced by `token` of it (in capitals): six digits
/// that begin a date (day 01-31, month 01-12), a century sign, three digits and a check
/// character, in either case, valid or not (a mistyped code is still a person's).
fn without_hetus(text: &str, token: impl Fn(&str) -> String) -> String {
    const LEN: usize = 11;
    let bytes = text.as_bytes();
    let number = |w: &[u8]| w.iter().fold(0u32, |n, b| n * 10 + u32::from(b - b'0'));
    let shaped = |w: &[u8]| {
        w[..6].iter().all(u8::is_ascii_digit)
            && (1..=31).contains(&number(&w[0..2]))
            && (1..=12).contains(&number(&w[2..4]))
            && b"-+ABCDEFUVWXY".contains(&w[6].to_ascii_uppercase())
            && w[7..10].iter().all(u8::is_ascii_digit)
            && w[10].is_ascii_alphanumeric()
    };
    // A match is ASCII throughout, so its ends are character boundaries of `text`.
    let (mut out, mut at, mut copied) = (String::new(), 0, 0);
    while at + LEN <= bytes.len() {
        if shaped(&bytes[at..at + LEN]) {
            out.push_str(&text[copied..at]);
            out.push_str(&token(&text[at..at + LEN].to_ascii_uppercase()));
            at += LEN;
            copied = at;
        } else {
            at += 1;
        }
    }
    out.push_str(&text[copied..]);
    out
}

/// The patients a search names by HETU, as pseudonyms: its attempt is theirs to see even when it
/// finds nothing.
fn named_patients(
    store: &Store,
    resource_type: ResourceType,
    criteria: &[Criterion],
    filters_hetus: &[String],
) -> Vec<String> {
    let mut named: Vec<String> = criteria
        .iter()
        .filter_map(|c| match c {
            Criterion::Patients(patients) => Some(patients.iter().filter(|p| !p.is_empty()).cloned()),
            _ => None,
        })
        .flatten()
        .collect();
    if resource_type == ResourceType::Patient {
        named.extend(
            filters_hetus
                .iter()
                .filter_map(|hetu| Hetu::parse(hetu).ok())
                .map(|hetu| store.pseudonyms().patient_from_hetu(&hetu)),
        );
    }
    named.sort();
    named.dedup();
    named
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
            return Err(GatewayError::UnsupportedMediaType("application/x-www-form-urlencoded"));
        }
        let body = http::body(&request, payload, &state.config).await?;
        ctx.params.extend(form_urlencoded::parse(&body).into_owned());
    }
    let query = SearchQuery::parse(ctx.resource_type, &ctx.params)?;
    bounded(&ctx.principal, ctx.resource_type, &query)?;
    let paging = paging(&ctx.params, &state.config)?;
    let base = http::base_url(&request, &state.config);
    let (resource_type, work) = (ctx.resource_type, ctx.work(&state));
    let audited = audited_query(&state.store, resource_type, &ctx.params);
    let hetus = query.hetus();
    let SearchQuery { filters, includes } = query;
    let (total, matches, included, paging) = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        let store = work.store();
        let mut criteria = criteria(store, filters)?;
        if let (Some(own), true) = (work.principal.own_pseudonyms(), resource_type.is_patient_data()) {
            // A patient searches their own data (under every name they have had): nothing else
            // is judged.
            criteria.push(Criterion::Patients(own));
        }
        gate.reach(&named_patients(store, resource_type, &criteria, &hetus));
        // Released before counting and paging: the total and the pages cover only what this
        // caller may see. Only the page is opened, and listed in the audit log.
        let (total, page) = gate.release_page(store.search(resource_type, &criteria)?, paging.offset, paging.count)?;
        let mut included: Vec<Released<Head>> = Vec::new();
        let patients = patients_of(&page);
        if includes.patients && resource_type != ResourceType::Patient && !patients.is_empty() {
            included
                .extend(gate.release(store.search(ResourceType::Patient, &[Criterion::Patients(patients.clone())])?)?);
        }
        for source in includes.reverse {
            if !patients.is_empty() {
                included.extend(gate.release(store.search(source, &[Criterion::Patients(patients.clone())])?)?);
            }
        }
        let matches = open_current(&gate, store, &page)?;
        let included = open_current(&gate, store, &included)?;
        gate.record(Action::Search, &work.agent, Some(&audited))?;
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
    let work = Work::new(principal, agent, &state);
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &["_count", "_offset"])?;
    let id = path_id(&request, ResourceType::Patient)?;
    let paging = paging(&params, &state.config)?;
    let base = http::base_url(&request, &state.config);
    let lookup = id.clone();
    let found = web::block(move || -> Result<_, GatewayError> {
        let gate = work.gate();
        let store = work.store();
        let Some(patient) = gate.released_head(ResourceType::Patient, &lookup)? else {
            gate.record_not_found(Action::Search, &work.agent)?;
            return Ok(None);
        };
        let Some(pseudonym) = patient.get().patient.clone() else { return Ok(None) };
        gate.reach(std::slice::from_ref(&pseudonym));
        let mut rows = Vec::new();
        for resource_type in ResourceType::ALL {
            // The access log is not the patient's record; it has its own operation.
            if !resource_type.is_patient_data()
                || matches!(resource_type, ResourceType::Patient | ResourceType::AuditEvent)
            {
                continue;
            }
            rows.extend(store.search(resource_type, &[Criterion::Patients(vec![pseudonym.clone()])])?);
        }
        // The Patient comes first, then the rest, released and paged like a search's matches.
        let (offset, count) = match paging.offset {
            0 => (0, paging.count.saturating_sub(1)),
            offset => (offset - 1, paging.count),
        };
        let (released, rest) = gate.release_page(rows, offset, count)?;
        let total = 1 + released;
        let mut page: Vec<Released<Head>> = Vec::with_capacity(paging.count);
        if paging.offset == 0 && paging.count > 0 {
            page.push(patient);
        }
        page.extend(rest);
        let opened = open_current(&gate, store, &page)?;
        gate.record(Action::Search, &work.agent, Some("Patient/$everything"))?;
        Ok(Some((total, opened, paging)))
    })
    .await??;
    let Some((total, matches, paging)) = found else { return Err(not_found(ResourceType::Patient, &id)) };
    let links = page_links(&base, &format!("Patient/{id}/$everything"), &params, &paging, total);
    Ok(http::fhir_json(StatusCode::OK, searchset(&base, total, links, &matches, &[])?, output))
}

#[cfg(test)]
mod tests {
    use super::without_hetus;

    #[test]
    fn hetu_shaped_runs_are_replaced_wherever_they_stand() {
        let token = |hetu: &str| format!("<{}>", hetu.len());
        assert_eq!(without_hetus("131052-308T", token), "<11>");
        assert_eq!(without_hetus("Patient/131052-308T", token), "Patient/<11>");
        // A wrong check character is still a person's code.
        assert_eq!(without_hetus("010101A900X,010101A900R", token), "<11>,<11>");
        assert_eq!(without_hetus("x131052-308Tx", token), "x<11>x");
        // The 1800s' sign, small letters, and text around it that is not ASCII.
        assert_eq!(without_hetus("010185+123a", token), "<11>");
        assert_eq!(without_hetus("ä131052a308tä", token), "ä<11>ä");
        let seen = std::cell::RefCell::new(Vec::new());
        without_hetus("131052a308t", |hetu| {
            seen.borrow_mut().push(hetu.to_owned());
            String::new()
        });
        assert_eq!(seen.into_inner(), ["131052A308T"], "the token is of the code in capitals");
        // Ids, dates and numbers stay as they are.
        // (A uuid's first hyphen can stand where a century sign would, after six digits: those
        // are a HETU's only where they begin a date.)
        let kept = [
            "8c0e2a6e-5b4f-4c3e-9a51-2f7f0c7e1d11",
            "123456-7890-4c3e-9a51-2f7f0c7e1d11",
            "2026-03-01",
            "ge2026-03-01T10:00:00",
            "12345678901",
            "100",
        ];
        for text in kept {
            assert_eq!(without_hetus(text, token), text);
        }
    }
}
