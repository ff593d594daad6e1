//! `GET /portal/documents` and `GET /portal/documents/{id}`: the patient's own documents, a page
//! at a time, and one opened for a person to read. Another patient's document id gets the same
//! 404 page as an id that does not exist.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use fhir_profiles::is_valid_id;

use crate::portal::views::{self, Section};
use crate::portal::{page_number, Failure, Portal, Visit, PAGE_SIZE};
use crate::state::AppState;

/// `GET /portal/documents?page=N`
pub async fn documents(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let shown = async {
        let number = page_number(&request)?;
        let reader = visit.reader(&request)?;
        let (total, summaries) = web::block(move || reader.documents((number - 1) * PAGE_SIZE, PAGE_SIZE)).await??;
        let pages = total.div_ceil(PAGE_SIZE);
        let page = visit.page(Section::Documents);
        Ok::<_, Failure>(visit.html(StatusCode::OK, views::documents(&page, total, number, pages, &summaries)))
    };
    shown.await.unwrap_or_else(|failure| visit.failed(failure))
}

/// `GET /portal/documents/{id}`
pub async fn document(request: HttpRequest, state: web::Data<AppState>, portal: web::Data<Portal>) -> HttpResponse {
    let visit = Visit::of(&request, &state, &portal);
    let shown = async {
        let reader = visit.reader(&request)?;
        let id = request.match_info().get("id").unwrap_or("").to_owned();
        if !is_valid_id(&id) {
            return Err(Failure::NotFound);
        }
        let document = web::block(move || reader.document(&id)).await??.ok_or(Failure::NotFound)?;
        let page = visit.page(Section::Documents);
        Ok(visit.html(StatusCode::OK, views::document(&page, &document)))
    };
    shown.await.unwrap_or_else(|failure| visit.failed(failure))
}
