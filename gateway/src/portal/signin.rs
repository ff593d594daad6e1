//! Signing in and out. In development mode a form takes a HETU (with a banner saying it is not
//! for real patients); production mode has no such form, and `POST /portal/login/dev` is the
//! same 404 as any unknown page. The sign-in form's CSRF token is a double submit: the same
//! random value in a short-lived cookie and in the form.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use fhir_profiles::Hetu;

use crate::portal::i18n::Text;
use crate::portal::session::{cookie, random_token, same_token, SESSION_COOKIE, SIGN_IN_COOKIE};
use crate::portal::views::{self, Section};
use crate::portal::{cookie_value, Failure, Form, Portal, Visit};
use crate::state::AppState;

/// How long a sign-in form stays usable.
const SIGN_IN_SECONDS: u64 = 900;

/// `GET /portal/`: the documents when signed in, else the sign-in page.
pub async fn start(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    match visit.session {
        Some(_) => visit.see_other("/portal/documents"),
        None => visit.see_other("/portal/login"),
    }
}

/// `GET /portal/login`
pub async fn page(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    if visit.session.is_some() {
        return visit.see_other("/portal/documents");
    }
    let query = crate::http::query_pairs(&request);
    let notice = if query.iter().any(|(n, _)| n == "signed_out") {
        Some(visit.lang.t(Text::SignedOut))
    } else if query.iter().any(|(n, _)| n == "ended") {
        Some(visit.lang.t(Text::SessionEnded))
    } else {
        None
    };
    let token = visit.development.then(random_token);
    let page = visit.page(Section::SignIn);
    let mut response = visit.html(StatusCode::OK, views::sign_in(&page, notice, token.as_deref(), false));
    if let Some(token) = token {
        if let Ok(value) = header::HeaderValue::from_str(&cookie(SIGN_IN_COOKIE, &token, true, Some(SIGN_IN_SECONDS))) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
}

/// `POST /portal/login/dev`: development mode only.
pub async fn development(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    if !visit.development {
        return visit.failed(Failure::NotFound);
    }
    let form = match Form::read(&request, payload).await {
        Ok(form) => form,
        Err(failure) => return visit.failed(failure),
    };
    let expected = cookie_value(&request, SIGN_IN_COOKIE).unwrap_or_default();
    if !form.get("csrf").is_some_and(|token| same_token(token, &expected)) {
        return visit.failed(Failure::Csrf);
    }
    let Some(hetu) = form.get("hetu").and_then(|text| Hetu::parse(text).ok()) else {
        return visit.failed(Failure::BadForm(visit.lang.t(Text::BadHetu).to_owned()));
    };
    let pseudonym = state.store.pseudonyms().patient_from_hetu(&hetu);
    signed_in(&visit, &request, &portal, pseudonym)
}

/// A new session for `pseudonym`: a new id whatever the browser held before.
fn signed_in(visit: &Visit, request: &HttpRequest, portal: &Portal, pseudonym: String) -> HttpResponse {
    if let Some(old) = cookie_value(request, SESSION_COOKIE) {
        portal.sessions.end(&old);
    }
    let Ok((id, _)) = portal.sessions.start(pseudonym) else {
        return visit.failed(Failure::Gateway(crate::error::GatewayError::Unavailable("no room for a session".into())));
    };
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/portal/documents"))
        .append_header((header::SET_COOKIE, cookie(SESSION_COOKIE, &id, true, None)))
        .append_header((header::SET_COOKIE, cookie(SIGN_IN_COOKIE, "", true, Some(0))))
        .finish()
}

/// `POST /portal/logout`: the session ends on the server; its cookie is worth nothing after.
pub async fn sign_out(
    request: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    portal: web::Data<Portal>,
) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let form = match Form::read(&request, payload).await {
        Ok(form) => form,
        Err(failure) => return visit.failed(failure),
    };
    if let Err(failure) = visit.check_csrf(&form) {
        return visit.failed(failure);
    }
    if let Some((id, _)) = &visit.session {
        portal.sessions.end(id);
    }
    HttpResponse::SeeOther()
        .insert_header((header::LOCATION, "/portal/login?signed_out=1"))
        .append_header((header::SET_COOKIE, cookie(SESSION_COOKIE, "", true, Some(0))))
        .finish()
}
