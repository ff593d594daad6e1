//! The patient portal: server-rendered pages under `/portal/` on the gateway's one HTTPS
//! listener, for the people Vaitio exists to protect. A patient signs in (OpenID Connect in
//! production, a development form in development mode), reads their documents, sees every
//! access to their data as it happens, and sets restrictions after a preview of what each
//! audience would receive. Every page reads as the signed-in patient through the one
//! enforcement point and is recorded like the API; every form carries a CSRF token; every
//! answer carries a Content-Security-Policy with no inline script or style.
//!
//! Files: `session.rs` (cookies, sessions, CSRF), `i18n.rs` (the three languages),
//! `records.rs` (what is read, as the patient), `choices.rs` (restrictions as FHIR Consents),
//! `views.rs` (the pages), `oidc.rs` (production sign-in), and one file of handlers per part:
//! `signin.rs`, `pages.rs`
//! (documents), `access.rs` (the access log and its live updates), `restrictions.rs`.

mod access;
mod choices;
pub mod i18n;
pub mod oidc;
mod pages;
mod records;
mod restrictions;
pub mod session;
mod signin;
mod views;

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{middleware, web, HttpRequest, HttpResponse};
use consent::Principal;

use crate::config::Mode;
use crate::error::GatewayError;
use crate::state::AppState;
use i18n::{Lang, Text};
use records::{Directory, Reader};
use session::{Session, Sessions, LANG_COOKIE, SESSION_COOKIE};
use views::{Page, Section};

/// The portal's state on a node: its sessions, the names it has looked up, and the identity
/// provider's client when production sign-in is configured.
pub struct Portal {
    pub sessions: Sessions,
    directory: Arc<Directory>,
    oidc: Option<oidc::OidcClient>,
}

impl Portal {
    pub fn new(idle: Duration, oidc: Option<oidc::OidcClient>) -> Self {
        Portal { sessions: Sessions::new(idle), directory: Arc::new(Directory::default()), oidc }
    }
}

/// The headers of every portal answer. The policy allows the portal's own stylesheet, script
/// and event stream, nothing inline, and no framing.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'";

/// Registers the portal under `/portal`; before the FHIR routes, whose `/{type}` would
/// otherwise take `/portal`.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/portal", web::get().to(signin::start)).service(
        web::scope("/portal")
            .wrap(
                middleware::DefaultHeaders::new()
                    .add((header::CONTENT_SECURITY_POLICY, CSP))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                    .add((header::REFERRER_POLICY, "no-referrer"))
                    .add((header::X_FRAME_OPTIONS, "DENY"))
                    .add((header::CACHE_CONTROL, "no-store")),
            )
            .route("/", web::get().to(signin::start))
            .route("/static/portal.css", web::get().to(stylesheet))
            .route("/static/portal.js", web::get().to(script))
            .route("/login", web::get().to(signin::page))
            .route("/login/dev", web::post().to(signin::development))
            .route("/login/oidc", web::get().to(signin::begin))
            .route("/login/callback", web::get().to(signin::callback))
            .route("/logout", web::post().to(signin::sign_out))
            .route("/documents", web::get().to(pages::documents))
            .route("/documents/{id}", web::get().to(pages::document))
            .route("/access-log", web::get().to(access::page))
            .route("/access-log/live", web::get().to(access::live))
            .service(
                web::resource("/restrictions")
                    .route(web::get().to(restrictions::page))
                    .route(web::post().to(restrictions::propose)),
            )
            .route("/restrictions/{id}/withdraw", web::post().to(restrictions::withdraw))
            .default_service(web::to(not_found)),
    );
}

async fn stylesheet() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("static/portal.css"))
}

async fn script() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "public, max-age=3600"))
        .body(include_str!("static/portal.js"))
}

async fn not_found(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    visit.failed(Failure::NotFound)
}

/// Why a page could not be shown; each has its page, in the visitor's language.
#[derive(Debug)]
pub enum Failure {
    /// Not signed in, or the session ended: to the sign-in page.
    SignIn,
    NotFound,
    /// A form without the session's CSRF token: nothing was done.
    Csrf,
    /// A form field that cannot be read; the text says which, never what was in it.
    BadForm(String),
    Gateway(GatewayError),
}

impl From<GatewayError> for Failure {
    fn from(error: GatewayError) -> Self {
        Failure::Gateway(error)
    }
}

impl From<store::StoreError> for Failure {
    fn from(error: store::StoreError) -> Self {
        Failure::Gateway(error.into())
    }
}

impl From<actix_web::error::BlockingError> for Failure {
    fn from(_: actix_web::error::BlockingError) -> Self {
        Failure::Gateway(GatewayError::Unavailable("the blocking pool is gone".into()))
    }
}

/// Who is visiting and how they see the portal: language (chosen by `?lang=`, then the
/// remembered choice, then `Accept-Language`), the session if signed in, the mode.
pub struct Visit {
    pub lang: Lang,
    /// A language chosen on this request, to be remembered.
    chosen: Option<Lang>,
    pub development: bool,
    /// The page's path and query without `lang`.
    here: String,
    /// The session's cookie value and the session.
    pub session: Option<(String, Session)>,
    /// A session cookie came that names no live session: it ended.
    ended: bool,
    pub state: web::Data<AppState>,
    directory: Arc<Directory>,
}

/// The value of cookie `name`, if the request carries it once, short and plain.
pub fn cookie_value(request: &HttpRequest, name: &str) -> Option<String> {
    let mut found = request
        .headers()
        .get_all(header::COOKIE)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|cookies| cookies.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned());
    let value = found.next()?;
    // Two cookies of one name (one planted by a sibling domain): trust neither.
    if found.next().is_some() {
        return None;
    }
    Some(value).filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_alphanumeric()))
}

impl Visit {
    pub fn of(request: &HttpRequest, state: &web::Data<AppState>, portal: &Portal) -> Visit {
        let query: Vec<(String, String)> = crate::http::query_pairs(request);
        let chosen = query.iter().find(|(n, _)| n == "lang").and_then(|(_, v)| Lang::parse(v));
        let remembered = cookie_value(request, LANG_COOKIE).and_then(|v| Lang::parse(&v));
        let accepted = request
            .headers()
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language);
        let lang = chosen.or(remembered).or(accepted).unwrap_or(Lang::Fi);
        let mut kept = form_urlencoded::Serializer::new(String::new());
        for (name, value) in query.iter().filter(|(n, _)| n != "lang") {
            kept.append_pair(name, value);
        }
        let kept = kept.finish();
        let path = request.path().to_owned();
        let here = if kept.is_empty() { path } else { format!("{path}?{kept}") };
        let cookie = cookie_value(request, SESSION_COOKIE);
        let session = cookie.clone().and_then(|id| portal.sessions.get(&id).map(|s| (id, s)));
        let ended = cookie.is_some() && session.is_none();
        Visit {
            lang,
            chosen,
            development: state.config.mode == Mode::Development,
            here,
            session,
            ended,
            state: state.clone(),
            directory: portal.directory.clone(),
        }
    }

    pub fn page(&self, section: Section) -> Page<'_> {
        Page {
            lang: self.lang,
            development: self.development,
            csrf: self.session.as_ref().map(|(_, s)| s.csrf.as_str()),
            section,
            here: &self.here,
        }
    }

    /// The signed-in patient, or the way to the sign-in page.
    pub fn patient(&self) -> Result<&Session, Failure> {
        self.session.as_ref().map(|(_, s)| s).ok_or(Failure::SignIn)
    }

    /// The signed-in patient's reader, for the blocking pool.
    pub fn reader(&self, request: &HttpRequest) -> Result<Reader, Failure> {
        let session = self.patient()?;
        let mut names = session.pseudonyms.iter().cloned();
        let pseudonym = names.next().ok_or(Failure::SignIn)?;
        let principal = Principal::Patient { pseudonym, earlier: names.collect() };
        let address = request.peer_addr().map(|a| a.ip().to_string());
        let agent = crate::audit::agent(&principal, None, address);
        Ok(Reader { principal, agent, enforcement: self.state.enforcement.clone(), directory: self.directory.clone() })
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, form: &Form) -> Result<(), Failure> {
        let session = self.patient()?;
        match form.get("csrf") {
            Some(token) if session::same_token(token, &session.csrf) => Ok(()),
            _ => Err(Failure::Csrf),
        }
    }

    /// A posted form, once its CSRF token is the signed-in session's.
    pub async fn signed_form(&self, request: &HttpRequest, payload: web::Payload) -> Result<Form, Failure> {
        let form = Form::read(request, payload).await?;
        self.check_csrf(&form)?;
        Ok(form)
    }

    /// A page: HTML, and the language cookie when a language was chosen.
    pub fn html(&self, status: StatusCode, body: String) -> HttpResponse {
        let mut response = HttpResponse::build(status);
        response.content_type("text/html; charset=utf-8");
        if let Some(lang) = self.chosen {
            response
                .append_header((header::SET_COOKIE, session::cookie(LANG_COOKIE, lang.code(), true, Some(31_536_000))));
        }
        response.body(body)
    }

    /// A redirect after a form (303), or to the sign-in page.
    pub fn see_other(&self, location: &str) -> HttpResponse {
        HttpResponse::SeeOther().insert_header((header::LOCATION, location.to_owned())).finish()
    }

    /// The answer to a failure: its page, in the visitor's language.
    pub fn failed(&self, failure: Failure) -> HttpResponse {
        let (status, title, message) = match failure {
            Failure::SignIn => {
                return self.see_other(if self.ended { "/portal/login?ended=1" } else { "/portal/login" });
            }
            Failure::NotFound => {
                (StatusCode::NOT_FOUND, Text::NotFoundTitle, self.lang.t(Text::NotFoundText).to_owned())
            }
            Failure::Csrf => (StatusCode::FORBIDDEN, Text::ErrorTitle, self.lang.t(Text::FormExpired).to_owned()),
            Failure::BadForm(why) => {
                (StatusCode::BAD_REQUEST, Text::ErrorTitle, self.lang.fill(Text::BadForm, &[&why]))
            }
            Failure::Gateway(error) => {
                error.log_cause();
                match &error {
                    GatewayError::NotFound { .. } => {
                        (StatusCode::NOT_FOUND, Text::NotFoundTitle, self.lang.t(Text::NotFoundText).to_owned())
                    }
                    GatewayError::Unavailable(_) | GatewayError::InsufficientStorage(_) => {
                        (StatusCode::SERVICE_UNAVAILABLE, Text::ErrorTitle, self.lang.t(Text::Unavailable).to_owned())
                    }
                    GatewayError::Internal(_) => {
                        (StatusCode::INTERNAL_SERVER_ERROR, Text::ErrorTitle, self.lang.t(Text::Failure).to_owned())
                    }
                    // What the write path refused (a Consent it cannot enforce): its message
                    // names the rule and the element, never a value.
                    other => (
                        actix_web::ResponseError::status_code(other),
                        Text::ErrorTitle,
                        self.lang.fill(Text::BadForm, &[&other.to_string()]),
                    ),
                }
            }
        };
        let page = self.page(Section::Error);
        self.html(status, views::error(&page, title, &message))
    }
}

/// A submitted form: `application/x-www-form-urlencoded`, small, each field once, each value
/// short and free of control characters. Anything else is refused before it is read further.
pub struct Form(Vec<(String, String)>);

/// The largest form body, and the longest value of one field.
const MAX_FORM_BYTES: usize = 8 * 1024;
const MAX_FIELD_CHARS: usize = 256;

impl Form {
    pub async fn read(request: &HttpRequest, mut payload: web::Payload) -> Result<Form, Failure> {
        use futures_util::StreamExt;
        if !crate::http::has_media_type(request, &["application/x-www-form-urlencoded"]) {
            return Err(Failure::BadForm("application/x-www-form-urlencoded".into()));
        }
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| Failure::BadForm("body".into()))?;
            if body.len() + chunk.len() > MAX_FORM_BYTES {
                return Err(Failure::BadForm(format!("body > {MAX_FORM_BYTES} B")));
            }
            body.extend_from_slice(&chunk);
        }
        let mut fields: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(&body) {
            let printable = crate::error::printable_name(&name);
            if fields.iter().any(|(n, _)| *n == name) {
                return Err(Failure::BadForm(printable));
            }
            if value.chars().count() > MAX_FIELD_CHARS || value.chars().any(char::is_control) {
                return Err(Failure::BadForm(printable));
            }
            fields.push((name.into_owned(), value.trim().to_owned()));
        }
        Ok(Form(fields))
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }
}

pub use crate::config::is_oid;

/// A page number from `?page=`, from 1.
pub fn page_number(request: &HttpRequest) -> Result<usize, Failure> {
    match crate::http::query_pairs(request).into_iter().find(|(n, _)| n == "page") {
        None => Ok(1),
        Some((_, value)) => {
            value.parse::<usize>().ok().filter(|n| (1..=100_000).contains(n)).ok_or(Failure::BadForm("page".into()))
        }
    }
}

/// Rows per page of the portal's lists.
pub const PAGE_SIZE: usize = 20;
