//! `GET /portal/restrictions`, `POST /portal/restrictions` and
//! `POST /portal/restrictions/{id}/withdraw`: the patient's restrictions in plain language, a
//! new one or a withdrawal shown first as a preview (what a GP, another clinic, their own
//! therapist and an emergency physician would receive, without the change and with it, by the
//! same decision function on the proposed Consents, nothing saved), then saved as the FHIR
//! Consent the API accepts, through the same write path.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use chrono::NaiveDate;
use consent::{PatientConsent, Principal, Professional, Purpose, Role};
use fhir_profiles::{is_valid_id, ResourceType};
use maud::{html, Markup};
use serde_json::{json, Value};
use store::Head;

use crate::portal::choices::{Choice, Restriction};
use crate::portal::i18n::{Lang, Text};
use crate::portal::records::{Reader, StoredRestriction};
use crate::portal::views::{self, describe, role_name, Page, Section};
use crate::portal::{is_oid, Failure, Form, Portal, Visit};
use crate::state::AppState;

/// An organisation that holds none of the patient's data: the "another clinic" of a preview
/// when the change names none.
const ANOTHER_ORGANISATION: &str = "1.2.246.10.0.10.1";
/// The practitioner of an imagined audience: not a Terhikki number, so no permit names it.
const IMAGINED: &str = "preview";

/// `GET /portal/restrictions`
pub async fn page(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let shown = async {
        let reader = visit.reader(&request)?;
        let (restrictions, holders, events, names, has_data) = web::block(move || -> Result<_, Failure> {
            let restrictions = reader.restrictions()?;
            let (mut holders, events) = (*reader.holders()?).clone();
            // Those that hold the data, then those that have read it.
            for organisation in reader.readers()? {
                if !holders.contains(&organisation) {
                    holders.push(organisation);
                }
            }
            let mut oids: Vec<String> = holders.clone();
            oids.extend(restrictions.iter().filter_map(|r| match &r.restriction.choice {
                Choice::DenyOrganisation(oid) => Some(oid.clone()),
                _ => None,
            }));
            let names = reader.organisation_names(oids);
            let has_data = reader.patient_id()?.is_some();
            Ok((restrictions, holders, events, names, has_data))
        })
        .await??;
        let query = crate::http::query_pairs(&request);
        let notice = if query.iter().any(|(n, _)| n == "saved") {
            Some(Text::Saved)
        } else if query.iter().any(|(n, _)| n == "withdrawn") {
            Some(Text::Withdrawn)
        } else {
            None
        };
        let page = visit.page(Section::Restrictions);
        let body = list(&page, notice, &restrictions, &holders, &events, &names, has_data);
        Ok::<_, Failure>(visit.html(StatusCode::OK, body))
    };
    shown.await.unwrap_or_else(|failure| visit.failed(failure))
}

fn name_of<'a>(names: &'a HashMap<String, String>) -> impl Fn(&str) -> String + 'a {
    move |oid: &str| names.get(oid).cloned().unwrap_or_else(|| oid.to_owned())
}

fn list(
    page: &Page<'_>,
    notice: Option<Text>,
    restrictions: &[StoredRestriction],
    holders: &[String],
    events: &[(String, String)],
    names: &HashMap<String, String>,
    has_data: bool,
) -> String {
    let lang = page.lang;
    let name = name_of(names);
    let body = html! {
        @if let Some(notice) = notice { p.notice role="status" { (lang.t(notice)) } }
        p { (lang.t(Text::RestrictionsIntro)) }
        h2 { (lang.t(Text::RestrictionsCurrent)) }
        @if restrictions.is_empty() { p { (lang.t(Text::RestrictionsNone)) } }
        ul.restrictions {
            @for stored in restrictions {
                li {
                    span { (describe(lang, &stored.restriction, &name)) }
                    form method="post" action={ "/portal/restrictions/" (stored.id) "/withdraw" } {
                        (page.csrf_field())
                        input type="hidden" name="action" value="preview";
                        button type="submit" { (lang.t(Text::Withdraw)) }
                    }
                }
            }
        }
        h2 { (lang.t(Text::NewRestriction)) }
        @if has_data {
            (new_form(page, holders, events, &name))
        } @else {
            p { (lang.t(Text::NoData)) }
        }
    };
    views::layout(page, lang.t(Text::RestrictionsTitle), body)
}

fn new_form(page: &Page<'_>, holders: &[String], events: &[(String, String)], name: &dyn Fn(&str) -> String) -> Markup {
    let lang = page.lang;
    let kinds = [
        ("organisation", Text::KindOrganisation),
        ("service_event", Text::KindServiceEvent),
        ("role", Text::KindRole),
        ("everyone", Text::KindEveryone),
        ("permit", Text::KindPermit),
        ("emergency", Text::KindEmergency),
    ];
    html! {
        form.restriction method="post" action="/portal/restrictions" {
            (page.csrf_field())
            fieldset {
                legend { (lang.t(Text::KindLabel)) }
                @for (i, (value, text)) in kinds.iter().enumerate() {
                    div.choice {
                        input type="radio" name="kind" id={ "kind-" (value) } value=(value) checked[i == 0] required;
                        label for={ "kind-" (value) } { (lang.t(*text)) }
                    }
                }
            }
            div.field {
                label for="organisation" { (lang.t(Text::OrganisationLabel)) }
                select #organisation name="organisation" {
                    option value="" { (lang.t(Text::Choose)) }
                    @for oid in holders { option value=(oid) { (name(oid)) } }
                }
            }
            div.field {
                label for="organisation_oid" { (lang.t(Text::OrganisationOidLabel)) }
                input #organisation_oid type="text" name="organisation_oid" inputmode="decimal" maxlength="64" aria-describedby="oid-hint";
                span #oid-hint .hint { (lang.t(Text::OrganisationOidHint)) }
            }
            div.field {
                label for="service_event" { (lang.t(Text::ServiceEventLabel)) }
                select #service_event name="service_event" {
                    option value="" { (lang.t(Text::Choose)) }
                    @for (oid, org) in events { option value=(oid) { (name(org)) ": " (oid) } }
                }
            }
            div.field {
                label for="role" { (lang.t(Text::RoleLabel)) }
                select #role name="role" {
                    @for role in Role::ALL { option value=(role.as_str()) selected[role == Role::Physician] { (role_name(lang, role.as_str())) } }
                }
            }
            div.field {
                label for="practitioner" { (lang.t(Text::PractitionerLabel)) }
                input #practitioner type="text" name="practitioner" inputmode="numeric" maxlength="20";
            }
            div.field {
                label for="from" { (lang.t(Text::ValidFrom)) }
                input #from type="date" name="from";
            }
            div.field {
                label for="until" { (lang.t(Text::ValidUntil)) }
                input #until type="date" name="until";
            }
            div.field {
                label for="gp_org" { (lang.t(Text::GpOrganisation)) }
                select #gp_org name="gp_org" {
                    @for oid in holders { option value=(oid) { (name(oid)) } }
                }
            }
            div.actions {
                button type="submit" name="action" value="preview" { (lang.t(Text::Preview)) }
                button type="submit" name="action" value="save" { (lang.t(Text::Save)) }
            }
        }
    }
}

/// The restriction a form describes; a field that does not read is named by its label.
fn restriction(lang: Lang, form: &Form) -> Result<Restriction, Failure> {
    let bad = |text: Text| Failure::BadForm(lang.t(text).to_owned());
    let choice = match form.get("kind").unwrap_or("") {
        "organisation" => {
            let oid = form
                .get("organisation_oid")
                .or_else(|| form.get("organisation"))
                .ok_or(bad(Text::OrganisationLabel))?;
            if !is_oid(oid) {
                return Err(bad(Text::OrganisationOidLabel));
            }
            Choice::DenyOrganisation(oid.to_owned())
        }
        "service_event" => {
            let oid = form.get("service_event").filter(|oid| is_oid(oid)).ok_or(bad(Text::ServiceEventLabel))?;
            Choice::DenyServiceEvent(oid.to_owned())
        }
        "role" => Choice::DenyRole(form.get("role").and_then(Role::parse).ok_or(bad(Text::RoleLabel))?),
        "everyone" => Choice::DenyEveryone,
        "permit" => {
            let number = form
                .get("practitioner")
                .filter(|n| n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
                .ok_or(bad(Text::PractitionerLabel))?;
            Choice::PermitPractitioner(number.to_owned())
        }
        "emergency" => Choice::DenyEmergency,
        _ => return Err(bad(Text::KindLabel)),
    };
    let date = |name: &str, text: Text| -> Result<Option<String>, Failure> {
        form.get(name)
            .map(|d| {
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .map(|d| d.format("%Y-%m-%d").to_string())
                    .map_err(|_| bad(text))
            })
            .transpose()
    };
    let (from, until) = (date("from", Text::ValidFrom)?, date("until", Text::ValidUntil)?);
    if let (Some(from), Some(until)) = (&from, &until) {
        if from >= until {
            return Err(bad(Text::ValidUntil));
        }
    }
    Ok(Restriction { choice, from, until })
}

/// A change the patient proposes.
enum Change {
    Add(Restriction),
    Withdraw(String),
}

/// `POST /portal/restrictions`: `action=preview` shows what would change; `action=save` saves.
pub async fn propose(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
) -> HttpResponse {
    let read = |lang, form: &Form, _: &HttpRequest| Ok(Change::Add(restriction(lang, form)?));
    answer(request, payload, state, portal, read, "saved").await
}

/// `POST /portal/restrictions/{id}/withdraw`: the same, for withdrawing one.
pub async fn withdraw(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
) -> HttpResponse {
    let read = |_, _: &Form, request: &HttpRequest| {
        let id = request.match_info().get("id").unwrap_or("").to_owned();
        if is_valid_id(&id) {
            Ok(Change::Withdraw(id))
        } else {
            Err(Failure::NotFound)
        }
    };
    answer(request, payload, state, portal, read, "withdrawn").await
}

/// A proposed change, from a form with the session's token: its preview, or (`action=save`)
/// saved, then back to the list with `?{done}=1`.
async fn answer(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
    read: impl FnOnce(Lang, &Form, &HttpRequest) -> Result<Change, Failure>,
    done: &str,
) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let answered = async {
        let reader = visit.reader(&request)?;
        let form = visit.signed_form(&request, payload).await?;
        let change = read(visit.lang, &form, &request)?;
        if form.get("action") == Some("save") {
            web::block(move || save(&reader, change)).await??;
            return Ok(visit.see_other(&format!("/portal/restrictions?{done}=1")));
        }
        show_preview(&visit, reader, &form, change).await
    };
    answered.await.unwrap_or_else(|failure| visit.failed(failure))
}

/// Saves a change through the API's write path: a new Consent, or the patient's Consent made
/// inactive as a new version.
fn save(reader: &Reader, change: Change) -> Result<(), Failure> {
    let enforcement = &reader.enforcement;
    match change {
        Change::Add(restriction) => {
            let patient_id = reader.patient_id()?.ok_or(Failure::NotFound)?;
            let now = store::time::instant(store::time::now_millis());
            let bytes = restriction.to_consent(&patient_id, &now).to_string().into_bytes();
            crate::write::create(enforcement, &reader.principal, &reader.agent, ResourceType::Consent, &bytes)?;
        }
        Change::Withdraw(id) => {
            let gate = reader.gate();
            let consents = reader.consents_with(&gate)?;
            gate.record(audit_log::Action::Read, &reader.agent, None)?;
            let (_, mut json) = consents.into_iter().find(|(c, _)| *c == id).ok_or(Failure::NotFound)?;
            json["status"] = json!("inactive");
            let bytes = json.to_string().into_bytes();
            crate::write::update(
                enforcement,
                &reader.principal,
                &reader.agent,
                ResourceType::Consent,
                &id,
                None,
                &bytes,
            )?;
        }
    }
    Ok(())
}

/// One audience of the preview: who, and the principal the decision function judges.
struct Audience {
    key: &'static str,
    label: String,
    principal: Principal,
}

fn professional(organisation: &str, practitioner: &str, role: Role, purpose: Purpose) -> Principal {
    Principal::Professional(Professional {
        practitioner: practitioner.to_owned(),
        role,
        organisation: organisation.to_owned(),
        purpose,
        reason: (purpose != Purpose::Treatment).then(|| "preview".to_owned()),
    })
}

/// What the preview shows of one audience: the `Type/id` each would receive, without and with.
struct Seen {
    audience: Audience,
    without: Vec<usize>,
    with: Vec<usize>,
}

async fn show_preview(visit: &Visit, reader: Reader, form: &Form, change: Change) -> Result<HttpResponse, Failure> {
    let lang = visit.lang;
    let gp_org = form.get("gp_org").filter(|oid| is_oid(oid)).map(str::to_owned);
    let described = match &change {
        Change::Add(restriction) => Some(restriction.clone()),
        Change::Withdraw(_) => None,
    };
    let withdrawn_id = match &change {
        Change::Withdraw(id) => Some(id.clone()),
        Change::Add(_) => None,
    };
    let (seen, heads, names, what) = web::block(move || -> Result<_, Failure> {
        let gate = reader.gate();
        let stored = reader.consents_with(&gate)?;
        gate.record(audit_log::Action::Search, &reader.agent, Some("portal: restriction preview"))?;
        let read = |json: &Value| {
            PatientConsent::from_fhir(json).map_err(|e| Failure::BadForm(format!("{} ({})", e.expected(), e.path())))
        };
        let current: Vec<PatientConsent> = stored.iter().map(|(_, json)| read(json)).collect::<Result<_, _>>()?;
        let (proposed, what) = match &change {
            Change::Add(restriction) => {
                let patient_id = reader.patient_id()?.ok_or(Failure::NotFound)?;
                let consent = restriction.to_consent(&patient_id, &store::time::instant(store::time::now_millis()));
                let mut proposed = current.clone();
                proposed.push(read(&consent)?);
                (proposed, restriction.clone())
            }
            Change::Withdraw(id) => {
                let at = stored.iter().position(|(c, _)| c == id).ok_or(Failure::NotFound)?;
                let what = Restriction::from_consent(&stored[at].1).ok_or(Failure::NotFound)?;
                let mut proposed = current.clone();
                proposed.remove(at);
                (proposed, what)
            }
        };
        let mut heads = reader.clinical_heads()?;
        heads.sort_by(|a, b| (a.resource_type.as_str(), &a.id).cmp(&(b.resource_type.as_str(), &b.id)));
        let holders = reader.holders()?.0.clone();
        let gp_org = gp_org.or_else(|| holders.first().cloned()).unwrap_or_else(|| ANOTHER_ORGANISATION.to_owned());
        let other_org = match &what.choice {
            Choice::DenyOrganisation(oid) => oid.clone(),
            _ => holders.iter().find(|o| **o != gp_org).cloned().unwrap_or_else(|| ANOTHER_ORGANISATION.to_owned()),
        };
        let mut oids = holders.clone();
        oids.extend([gp_org.clone(), other_org.clone()]);
        let names = reader.organisation_names(oids);
        let name = |oid: &str| names.get(oid).cloned().unwrap_or_else(|| oid.to_owned());
        // A permit names its practitioner: the GP of the preview is then that practitioner, so
        // that the preview shows what the permit opens.
        let (gp, gp_label) = match &what.choice {
            Choice::PermitPractitioner(number) => (
                number.as_str(),
                format!(
                    "{} ({})",
                    lang.fill(Text::AudienceGp, &[&name(&gp_org)]),
                    lang.fill(Text::Terhikki, &[number])
                ),
            ),
            _ => (IMAGINED, lang.fill(Text::AudienceGp, &[&name(&gp_org)])),
        };
        let mut audiences = vec![
            Audience {
                key: "gp",
                label: gp_label,
                principal: professional(&gp_org, gp, Role::Physician, Purpose::Treatment),
            },
            Audience {
                key: "other-clinic",
                label: format!("{} ({})", lang.t(Text::AudienceOtherClinic), name(&other_org)),
                principal: professional(&other_org, IMAGINED, Role::Psychotherapist, Purpose::Treatment),
            },
        ];
        // The patient's own therapist: the author of their most recent document.
        let latest = heads.iter().filter(|h| h.resource_type == "Bundle").max_by_key(|h| h.last_updated);
        if let Some((Some(org), Some(practitioner))) =
            latest.map(|h| (h.author_org.clone(), h.author_practitioner.clone()))
        {
            let label = match reader.practitioner_name(&practitioner, &org) {
                Some(person) => format!("{} ({person})", lang.t(Text::AudienceTherapist)),
                None => lang.t(Text::AudienceTherapist).to_owned(),
            };
            audiences.push(Audience {
                key: "therapist",
                label,
                principal: professional(&org, &practitioner, Role::Psychotherapist, Purpose::Treatment),
            });
        }
        audiences.push(Audience {
            key: "emergency",
            label: format!("{} ({})", lang.t(Text::AudienceEmergency), name(&other_org)),
            principal: professional(&other_org, IMAGINED, Role::Physician, Purpose::EmergencyTreatment),
        });
        let principals: Vec<Principal> = audiences.iter().map(|a| a.principal.clone()).collect();
        let without = reader.enforcement.preview(&principals, &current, &heads);
        let with = reader.enforcement.preview(&principals, &proposed, &heads);
        let keep = |row: &[bool]| row.iter().enumerate().filter(|(_, v)| **v).map(|(i, _)| i).collect();
        let seen: Vec<Seen> = audiences
            .into_iter()
            .zip(without.iter().zip(&with))
            .map(|(audience, (without, with))| Seen { audience, without: keep(without), with: keep(with) })
            .collect();
        Ok((seen, heads, names, what))
    })
    .await??;
    let page = visit.page(Section::Restrictions);
    let name = name_of(&names);
    let change_text = describe(lang, &what, &name);
    let confirm = match (&described, &withdrawn_id) {
        (Some(_), _) => hidden_fields(&page, form, "/portal/restrictions", Text::Save),
        (None, Some(id)) => {
            hidden_fields(&page, form, &format!("/portal/restrictions/{id}/withdraw"), Text::ConfirmWithdraw)
        }
        (None, None) => html! {},
    };
    let body = html! {
        p role="status" { (lang.t(Text::PreviewIntro)) }
        p { strong { (lang.t(Text::TheChange)) ": " } (change_text) @if withdrawn_id.is_some() { " – " (lang.t(Text::Withdraw)) } }
        @for seen in &seen { (audience(&page, seen, &heads, &name)) }
        (confirm)
    };
    Ok(visit.html(StatusCode::OK, views::layout(&page, lang.t(Text::PreviewTitle), body)))
}

fn audience(page: &Page<'_>, seen: &Seen, heads: &[Head], name: &dyn Fn(&str) -> String) -> Markup {
    let lang = page.lang;
    let column = |state: &str, text: Text, shown: &[usize]| {
        let documents: Vec<&Head> = shown.iter().map(|i| &heads[*i]).filter(|h| h.resource_type == "Bundle").collect();
        html! {
            div.column data-audience=(seen.audience.key) data-state=(state) {
                h3 { (lang.t(text)) }
                p {
                    (lang.fill(Text::DocumentsCount, &[&lang.number(documents.len())])) ", "
                    (lang.fill(Text::ResourcesCount, &[&lang.number(shown.len())]))
                }
                @if documents.is_empty() { p.muted { (lang.t(Text::NothingVisible)) } }
                ul {
                    @for head in &documents {
                        li { (lang.date_time(head.last_updated)) " · " (name(head.author_org.as_deref().unwrap_or(""))) }
                    }
                }
                details {
                    summary { (lang.fill(Text::ResourcesCount, &[&lang.number(shown.len())])) }
                    ul.resources {
                        @for i in shown { li data-resource={ (heads[*i].resource_type) "/" (heads[*i].id) } { (heads[*i].resource_type) } }
                    }
                }
            }
        }
    };
    html! {
        section.audience aria-labelledby={ "audience-" (seen.audience.key) } {
            h2 #{ "audience-" (seen.audience.key) } { (seen.audience.label) }
            div.compare {
                (column("without", Text::Without, &seen.without))
                (column("with", Text::With, &seen.with))
            }
        }
    }
}

/// The confirming form: the proposal's fields again, hidden, and the save button.
fn hidden_fields(page: &Page<'_>, form: &Form, action: &str, button: Text) -> Markup {
    const FIELDS: [&str; 9] = [
        "kind",
        "organisation",
        "organisation_oid",
        "service_event",
        "role",
        "practitioner",
        "from",
        "until",
        "gp_org",
    ];
    html! {
        form method="post" action=(action) {
            (page.csrf_field())
            @for field in FIELDS {
                @if let Some(value) = form.get(field) { input type="hidden" name=(field) value=(value); }
            }
            input type="hidden" name="action" value="save";
            div.actions {
                button type="submit" { (page.t(button)) }
                a href="/portal/restrictions" { (page.t(Text::Cancel)) }
            }
        }
    }
}
