//! `GET /portal/access-log`: every access to the patient's data, newest first, a page at a time,
//! filtered by organisation and time; and `GET /portal/access-log/live`, a server-sent event
//! stream that brings each new entry to an open page within a second, without a reload. Both
//! read the audit log through its index by patient, and opening either is itself recorded.

use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use audit_log::{Action, AuditEvent, Decision, Outcome, PurposeOfUse, Who};
use chrono::NaiveDate;
use maud::html;
use store::audit::{AuditRecord, LogQuery};

use crate::audit::EntryIds;
use crate::portal::i18n::{Lang, Text};
use crate::portal::records::Reader;
use crate::portal::views::{self, role_name, Page, Section};
use crate::portal::{is_oid, page_number, Failure, Portal, Visit, PAGE_SIZE};
use crate::state::AppState;

/// How often an open stream looks for new entries.
const LIVE_POLL: Duration = Duration::from_millis(400);
/// A comment this often keeps proxies from closing a quiet stream.
const KEEP_ALIVE_POLLS: u32 = 40;

/// One entry as the patient reads it.
struct Entry {
    seq: i64,
    /// The entry's id as the patient sees it (its position, encrypted: see `EntryIds`).
    id: String,
    when: i64,
    who: String,
    organisation: Option<String>,
    role: Option<String>,
    purpose: Option<Text>,
    emergency: bool,
    reason: Option<String>,
    what: Text,
}

fn what_happened(event: &AuditEvent) -> Text {
    match event.action {
        Action::ConsentDecision => match &event.consent {
            Some(decision) if decision.decision == Decision::Deny => match decision.rule.as_str() {
                "PatientDenied" | "EmergencyAccessRefused" => Text::WithheldByYou,
                "NoteRestrictedToAuthor" => Text::WithheldByRule,
                // Another patient, staff, a professional outside the patient's care: the data
                // is not theirs to receive.
                _ => Text::WithheldNotTheirs,
            },
            _ => Text::Released,
        },
        Action::Create | Action::Update | Action::Submission | Action::Delete if event.outcome == Outcome::Success => {
            Text::Written
        }
        Action::Create | Action::Update | Action::Submission | Action::Delete => Text::Refused,
        Action::ConsentChange => Text::ChoiceChanged,
        Action::AuthenticationRefused => Text::Refused,
        Action::UnusualAccess => Text::Unusual,
        _ if event.outcome != Outcome::Success => Text::NothingFound,
        _ if event.resources.is_empty() && event.count.unwrap_or(0) == 0 && event.consent.is_none() => {
            Text::NothingFound
        }
        _ => Text::Released,
    }
}

/// One entry of the log of the patient known by `own` (their names under every index key
/// version): a patient agent is "you" only under one of those names. Another patient who tried
/// to reach this one's data is shown as such, not as the reader's own visit.
fn entry(reader: &Reader, own: &[String], ids: &EntryIds, lang: Lang, seq: i64, bytes: &[u8]) -> Option<Entry> {
    let event = AuditEvent::from_canonical(bytes).ok()?;
    let another_patient = matches!(&event.agent.who, Who::Patient { pseudonym } if !own.contains(pseudonym));
    let purpose = event.agent.purpose.filter(|_| !another_patient).map(|p| match p {
        PurposeOfUse::Treatment => Text::PurposeTreat,
        PurposeOfUse::EmergencyTreatment => Text::PurposeEmergency,
        PurposeOfUse::BreakTheGlass => Text::PurposeBtg,
        PurposeOfUse::PatientRequested => Text::PurposeOwn,
        PurposeOfUse::Compliance => Text::PurposeCompliance,
        PurposeOfUse::SystemAdministration => Text::PurposeAdmin,
    });
    let emergency = event.action == Action::BreakTheGlass
        || matches!(event.agent.purpose, Some(PurposeOfUse::EmergencyTreatment | PurposeOfUse::BreakTheGlass));
    let (who, organisation, role) = match &event.agent.who {
        Who::Practitioner { terhikki, role, organisation } => {
            let name = reader
                .practitioner_name(terhikki, organisation)
                .unwrap_or_else(|| lang.fill(Text::Terhikki, &[terhikki]));
            let org = reader.organisation_name(organisation).unwrap_or_else(|| organisation.clone());
            (name, Some(org), Some(role_name(lang, role)))
        }
        Who::Patient { .. } if another_patient => (lang.t(Text::AnotherPatient).to_owned(), None, None),
        Who::Patient { .. } => (lang.t(Text::You).to_owned(), None, None),
        Who::Auditor { subject, organisation } => {
            (lang.fill(Text::Auditor, &[subject]), Some(organisation.clone()), None)
        }
        Who::Administrator { subject, organisation } => {
            (lang.fill(Text::Administrator, &[subject]), Some(organisation.clone()), None)
        }
        Who::Operator { .. } => (lang.t(Text::Operator).to_owned(), None, None),
        _ => (lang.t(Text::Unknown).to_owned(), None, None),
    };
    Some(Entry {
        seq,
        id: ids.show(seq),
        when: i64::try_from(event.recorded.as_millis()).unwrap_or(0),
        who,
        organisation,
        role,
        purpose,
        emergency,
        reason: event.agent.reason.clone(),
        what: what_happened(&event),
    })
}

/// One row of the log's table; the live stream sends the same markup.
fn row(lang: Lang, entry: &Entry) -> String {
    html! {
        tr data-entry=(entry.id) class=[entry.emergency.then_some("emergency")] {
            td { (lang.date_time(entry.when)) }
            td {
                (entry.who)
                @if let Some(org) = &entry.organisation { br; span.muted { (org) } }
            }
            td { (entry.role.as_deref().unwrap_or("–")) }
            td {
                @if entry.emergency {
                    strong.alert { (lang.t(Text::BreakTheGlass)) }
                    @if let Some(reason) = &entry.reason { br; span { (lang.fill(Text::StatedReason, &[reason])) } }
                } @else {
                    (entry.purpose.map_or("–", |p| lang.t(p)))
                }
            }
            td { (lang.t(entry.what)) }
        }
    }
    .into_string()
}

/// The filters of the page, read strictly: an OID and two dates, or nothing.
struct Filters {
    organisation: Option<String>,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    /// The patient's own visits to the portal left out (asked for: a filter that reads past
    /// them, where the unfiltered page reads only the page).
    hide_mine: bool,
}

fn filters(request: &HttpRequest) -> Result<Filters, Failure> {
    let mut filters = Filters { organisation: None, from: None, to: None, hide_mine: false };
    for (name, value) in crate::http::query_pairs(request) {
        if value.is_empty() {
            continue;
        }
        let date = || NaiveDate::parse_from_str(&value, "%Y-%m-%d").map_err(|_| Failure::BadForm(name.clone()));
        match name.as_str() {
            "organisation" if is_oid(&value) => filters.organisation = Some(value.clone()),
            "organisation" => return Err(Failure::BadForm(name)),
            "from" => filters.from = Some(date()?),
            "to" => filters.to = Some(date()?),
            "others" => filters.hide_mine = value == "1",
            _ => {}
        }
    }
    Ok(filters)
}

fn millis(date: NaiveDate, end_of_day: bool) -> i64 {
    // Dates are Finland's: midnight there is 22:00 or 21:00 UTC; the wider bound keeps every
    // entry of the day.
    let time = if end_of_day { date.and_hms_opt(23, 59, 59) } else { date.and_hms_opt(0, 0, 0) };
    let utc = time.map_or(0, |t| t.and_utc().timestamp_millis());
    if end_of_day {
        utc + 999 - 2 * 3_600_000
    } else {
        utc - 3 * 3_600_000
    }
}

/// `GET /portal/access-log`
pub async fn page(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let shown = async {
        let reader = visit.reader(&request)?;
        let number = page_number(&request)?;
        let filters = filters(&request)?;
        let lang = visit.lang;
        let live = number == 1 && filters.organisation.is_none() && filters.from.is_none() && filters.to.is_none();
        // The patient acts under their newest name; their entries are under every name.
        let names = reader.pseudonyms();
        let own = names.clone();
        // Under every name: visits made before a re-index stand under an older one.
        let except_agents = if filters.hide_mine { names.clone() } else { Vec::new() };
        let query = LogQuery {
            patients: Some(names),
            organisations: filters.organisation.iter().cloned().collect(),
            from: filters.from.map(|d| millis(d, false)),
            to: filters.to.map(|d| millis(d, true)),
            offset: (number - 1) * PAGE_SIZE,
            // One more than a page: whether there is a next page, without counting them all.
            count: PAGE_SIZE + 1,
            without_total: true,
            except_agents,
            ..LogQuery::default()
        };
        let (more, rows, newest, organisations) = web::block(move || -> Result<_, Failure> {
            let store = reader.store().clone();
            let (_, mut page) = store.read_log(&query)?;
            let more = page.len() > PAGE_SIZE;
            page.truncate(PAGE_SIZE);
            record(&reader, "portal: access log")?;
            let ids = EntryIds::of(reader.store())?;
            let newest = ids.show(page.first().map(|(seq, _)| *seq).unwrap_or(0));
            let rows: Vec<String> = page
                .iter()
                .filter_map(|(seq, bytes)| entry(&reader, &own, &ids, lang, *seq, bytes))
                .map(|e| row(lang, &e))
                .collect();
            let holders = reader.holders()?.0.clone();
            let organisations: Vec<(String, String)> = holders
                .into_iter()
                .map(|oid| (reader.organisation_name(&oid).unwrap_or_else(|| oid.clone()), oid))
                .collect();
            Ok((more, rows, newest, organisations))
        })
        .await??;
        let page = visit.page(Section::Access);
        let body = view(&page, &filters, &organisations, more, number, &rows, live.then_some(newest));
        Ok::<_, Failure>(visit.html(StatusCode::OK, body))
    };
    shown.await.unwrap_or_else(|failure| visit.failed(failure))
}

/// Reading one's own log is an access too, recorded before the answer (as the API's is).
fn record(reader: &Reader, query: &str) -> Result<(), Failure> {
    let mut event = crate::audit::event(
        Action::Search,
        Outcome::Success,
        &reader.agent,
        reader.pseudonyms().into_iter().next(),
        Vec::new(),
        crate::audit::now(),
    );
    event.query = Some(query.to_owned());
    reader.store().record(vec![AuditRecord::new(&event)])?;
    Ok(())
}

fn view(
    page: &Page<'_>,
    filters: &Filters,
    organisations: &[(String, String)],
    more: bool,
    number: usize,
    rows: &[String],
    live_after: Option<String>,
) -> String {
    let lang = page.lang;
    let date = |d: &Option<NaiveDate>| d.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default();
    let mut base = form_urlencoded::Serializer::new(String::new());
    if let Some(org) = &filters.organisation {
        base.append_pair("organisation", org);
    }
    if let Some(from) = filters.from {
        base.append_pair("from", &from.format("%Y-%m-%d").to_string());
    }
    if let Some(to) = filters.to {
        base.append_pair("to", &to.format("%Y-%m-%d").to_string());
    }
    if filters.hide_mine {
        base.append_pair("others", "1");
    }
    let base = format!("/portal/access-log?{}", base.finish());
    let body = html! {
        p { (lang.t(Text::AccessIntro)) }
        form.filters method="get" action="/portal/access-log" {
            div.field {
                label for="organisation" { (lang.t(Text::FilterOrganisation)) }
                select #organisation name="organisation" {
                    option value="" { (lang.t(Text::AllOrganisations)) }
                    @for (name, oid) in organisations {
                        option value=(oid) selected[filters.organisation.as_deref() == Some(oid.as_str())] { (name) }
                    }
                }
            }
            div.field {
                label for="from" { (lang.t(Text::FilterFrom)) }
                input #from type="date" name="from" value=(date(&filters.from));
            }
            div.field {
                label for="to" { (lang.t(Text::FilterTo)) }
                input #to type="date" name="to" value=(date(&filters.to));
            }
            div.choice {
                input #others type="checkbox" name="others" value="1" checked[filters.hide_mine];
                label for="others" { (lang.t(Text::HideMine)) }
            }
            button type="submit" { (lang.t(Text::Filter)) }
        }
        @if rows.is_empty() { p { (lang.t(Text::AccessEmpty)) } }
        div.scroll {
            table #access-log {
                caption { (lang.t(Text::AccessCaption)) }
                thead { tr {
                    th scope="col" { (lang.t(Text::ColWhen)) }
                    th scope="col" { (lang.t(Text::ColWho)) }
                    th scope="col" { (lang.t(Text::ColRole)) }
                    th scope="col" { (lang.t(Text::ColPurpose)) }
                    th scope="col" { (lang.t(Text::ColWhat)) }
                } }
                tbody #entries data-live-after=[live_after] data-others=[filters.hide_mine.then_some("1")] aria-live="polite" {
                    @for row in rows { (views::trusted(row.clone())) }
                }
            }
        }
        (views_pager(page, &base, number, more))
    };
    views::layout(page, lang.t(Text::AccessTitle), body)
}

/// Previous and next: the log pages by "is there more", never counting every entry.
fn views_pager(page: &Page<'_>, base: &str, number: usize, more: bool) -> maud::Markup {
    html! {
        nav.pager aria-label=(page.t(Text::Pages)) {
            @if number > 1 { a rel="prev" href={ (base) "&page=" (number - 1) } { (page.t(Text::Previous)) } }
            span { (page.lang.fill(Text::PageNumber, &[&page.lang.number(number)])) }
            @if more { a rel="next" href={ (base) "&page=" (number + 1) } { (page.t(Text::Next)) } }
        }
    }
}

/// `GET /portal/access-log/live?after=ID`: `text/event-stream`, one `entry` event per new entry
/// (its table row), oldest first, after the entry `ID` (as the page showed it). The stream ends
/// when the session does.
pub async fn live(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let reader = match visit.reader(&request) {
        Ok(reader) => reader,
        // An event stream cannot follow a redirect: the script reloads the page instead.
        Err(Failure::SignIn) => return HttpResponse::Unauthorized().finish(),
        Err(failure) => return visit.failed(failure),
    };
    let Some(session_id) = visit.session.as_ref().map(|(id, _)| id.clone()) else {
        return HttpResponse::Unauthorized().finish();
    };
    let params = crate::http::query_pairs(&request);
    let after = params.iter().find(|(n, _)| n == "after").map(|(_, v)| v.clone());
    let hide_mine = params.iter().any(|(n, v)| n == "others" && v == "1");
    let reader = std::sync::Arc::new(reader);
    let opened = reader.clone();
    let opening = web::block(move || -> Result<(i64, EntryIds), Failure> {
        record(&opened, "portal: access log, live")?;
        let ids = EntryIds::of(opened.store())?;
        // An id the page did not show starts from the newest entries (the page drops repeats).
        let after = after.and_then(|id| ids.read(&id)).unwrap_or(0);
        Ok((after, ids))
    });
    let (after, ids) = match opening.await.map_err(Failure::from).and_then(|r| r) {
        Ok(opened) => opened,
        Err(failure) => return visit.failed(failure),
    };
    let ids = std::sync::Arc::new(ids);
    let lang = visit.lang;
    let portal = portal.into_inner();
    let stream = futures_util::stream::unfold((after, 0u32), move |(after, polls)| {
        let (reader, portal, session_id, ids) = (reader.clone(), portal.clone(), session_id.clone(), ids.clone());
        async move {
            actix_web::rt::time::sleep(LIVE_POLL).await;
            if !portal.sessions.alive(&session_id) {
                return None;
            }
            let names = reader.pseudonyms();
            let own = names.clone();
            let query = LogQuery {
                except_agents: if hide_mine { names.clone() } else { Vec::new() },
                patients: Some(names),
                after: Some(after),
                count: 50,
                without_total: true,
                ..LogQuery::default()
            };
            let found = web::block(move || -> Result<Vec<(i64, String, String)>, Failure> {
                let (_, mut page) = reader.store().read_log(&query)?;
                page.reverse();
                Ok(page
                    .iter()
                    .filter_map(|(seq, bytes)| entry(&reader, &own, &ids, lang, *seq, bytes))
                    .map(|e| (e.seq, row(lang, &e), e.id))
                    .collect())
            })
            .await;
            let mut chunk = String::new();
            let mut newest = after;
            // A failed look (the database away a moment) sends nothing; the next one tries again.
            if let Ok(Ok(rows)) = found {
                for (seq, row, id) in rows {
                    newest = newest.max(seq);
                    chunk.push_str(&format!("event: entry\nid: {id}\n"));
                    for line in row.lines() {
                        chunk.push_str(&format!("data: {line}\n"));
                    }
                    chunk.push('\n');
                }
            }
            if chunk.is_empty() && polls % KEEP_ALIVE_POLLS == 0 {
                chunk.push_str(": keep-alive\n\n");
            }
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), (newest, polls.wrapping_add(1))))
        }
    });
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Accel-Buffering", "no"))
        .streaming(stream)
}
