//! Signing in and out. In development mode a form takes a HETU (with a banner saying it is not
//! for real patients); production mode has no such form, and `POST /portal/login/dev` is the
//! same 404 as any unknown page. The sign-in form's CSRF token is a double submit: the same
//! random value in a short-lived cookie and in the form.

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use fhir_profiles::Hetu;

use crate::portal::i18n::Text;
use crate::portal::oidc::{OidcError, SIGN_IN_TIME, STATE_COOKIE};
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
    let oidc = portal.oidc.is_some();
    let mut response = visit.html(StatusCode::OK, views::sign_in(&page, notice, token.as_deref(), oidc));
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
    let pseudonyms = state.store.every_pseudonym(|p| p.patient_from_hetu(&hetu));
    signed_in(&visit, &request, &portal, pseudonyms)
}

/// A new session for the patient of `pseudonyms`: a new id whatever the browser held before.
fn signed_in(visit: &Visit, request: &HttpRequest, portal: &Portal, pseudonyms: Vec<String>) -> HttpResponse {
    if let Some(old) = cookie_value(request, SESSION_COOKIE) {
        portal.sessions.end(&old);
    }
    let Ok((id, _)) = portal.sessions.start(pseudonyms) else {
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
    if let Err(failure) = visit.signed_form(&request, payload).await {
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

/// `GET /portal/login/oidc`: to the identity provider, with this sign-in's `state` in a cookie.
pub async fn begin(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let Some(oidc) = &portal.oidc else { return visit.failed(Failure::NotFound) };
    match oidc.begin() {
        Ok((sign_in_state, url)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url))
            .append_header((
                header::SET_COOKIE,
                format!(
                    "{STATE_COOKIE}={sign_in_state}; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age={}",
                    SIGN_IN_TIME.as_secs()
                ),
            ))
            .finish(),
        Err(error) => {
            tracing::warn!(%error, "a portal sign-in could not begin");
            visit.failed(Failure::Gateway(crate::error::GatewayError::Unavailable(error.to_string())))
        }
    }
}

/// `GET /portal/login/callback?code=…&state=…`: the provider's answer. A wrong or used
/// `state`, a `state` from another browser, or an ID token that does not verify (issuer,
/// audience, signature, expiry, nonce) is refused, recorded, and signs nobody in.
pub async fn callback(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    if portal.oidc.is_none() {
        return visit.failed(Failure::NotFound);
    }
    let query = crate::http::query_pairs(&request);
    let param = |name: &str| query.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_default();
    let (code, sign_in_state) = (param("code"), param("state"));
    let cookie_state = cookie_value(&request, STATE_COOKIE).unwrap_or_default();
    let completed = if code.is_empty() || sign_in_state.is_empty() {
        Err(OidcError::Refused("the provider's answer has no code or state".into()))
    } else {
        let portal = portal.clone().into_inner();
        web::block(move || portal.oidc.as_ref().map(|oidc| oidc.complete(&sign_in_state, &cookie_state, &code)))
            .await
            .ok()
            .flatten()
            .unwrap_or_else(|| Err(OidcError::Refused("the sign-in could not be completed".into())))
    };
    let hetu = completed.and_then(|text| {
        Hetu::parse(&text).map_err(|_| OidcError::Refused("the HETU claim is not a valid HETU".into()))
    });
    match hetu {
        Ok(hetu) => {
            let pseudonyms = state.store.every_pseudonym(|p| p.patient_from_hetu(&hetu));
            let mut response = signed_in(&visit, &request, &portal, pseudonyms);
            if let Ok(value) = header::HeaderValue::from_str(&format!(
                "{STATE_COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=0"
            )) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
            response
        }
        Err(OidcError::Provider { .. }) => {
            visit.failed(Failure::Gateway(crate::error::GatewayError::Unavailable("the identity provider".into())))
        }
        Err(OidcError::Refused(reason)) => {
            tracing::info!(%reason, "a portal sign-in was refused");
            refused_sign_in(&request, &state).await;
            let page = visit.page(Section::Error);
            visit.html(StatusCode::FORBIDDEN, views::error(&page, Text::ErrorTitle, visit.lang.t(Text::SignInFailed)))
        }
    }
}

/// A refused sign-in, recorded like a refused token: who is unknown, where it came from is not.
async fn refused_sign_in(request: &HttpRequest, state: &web::Data<AppState>) {
    let address = request.peer_addr().map(|a| a.ip().to_string());
    let agent = crate::audit::agent(&consent::Principal::Anonymous, None, address);
    let event = crate::audit::event(
        audit_log::Action::AuthenticationRefused,
        audit_log::Outcome::MinorFailure,
        &agent,
        None,
        Vec::new(),
        crate::audit::now(),
    );
    let store = state.store.clone();
    let recorded = web::block(move || store.record(vec![store::audit::AuditRecord::new(&event)])).await;
    if !matches!(recorded, Ok(Ok(()))) {
        tracing::warn!("a refused portal sign-in could not be recorded in the audit log");
    }
}
