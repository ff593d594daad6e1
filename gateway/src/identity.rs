//! The one place a request's principal is made.
//!
//! Until certificate and token verification are configured, the only principal there can be is
//! the development one, and only in development mode: a production gateway answers 401 to every
//! request for data rather than serve anybody it cannot name.

use actix_web::HttpRequest;
use consent::Principal;

use crate::app::AppState;
use crate::config::Mode;
use crate::error::GatewayError;

pub fn principal(_request: &HttpRequest, state: &AppState) -> Result<Principal, GatewayError> {
    match state.config.mode {
        Mode::Development => Ok(Principal::Development),
        Mode::Production => Err(GatewayError::Unauthenticated),
    }
}
