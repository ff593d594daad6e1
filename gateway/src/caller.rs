//! The request's principal as a handler argument: made from the connection's certificate and
//! the request's token before the handler runs, and a refusal recorded in the audit log.

use std::future::ready;

use actix_web::{web, FromRequest, HttpRequest};
use audit_log::{Action, AuditEvent, Outcome};
use consent::Principal;
use store::audit::AuditRecord;

use crate::audit;
use crate::error::GatewayError;
use crate::state::AppState;
use crate::watch::Verdict;

/// The client certificate of the connection, read once when it is accepted.
#[derive(Clone)]
pub struct PeerCertificate(pub Option<certs::PeerIdentity>);

/// The request's principal, as a handler argument, and the audit log's view of them (who, from
/// which certificate and address, why): made before the handler runs, so a refused request
/// never reaches one. A refusal is itself recorded in the audit log.
pub struct Caller(pub Principal, pub audit_log::Agent);

impl FromRequest for Caller {
    type Error = GatewayError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Caller, GatewayError>>>>;

    fn from_request(request: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let certificate =
            request.conn_data::<PeerCertificate>().and_then(|p| p.0.as_ref()).map(|p| p.thumbprint.clone());
        let address = request.peer_addr().map(|a| a.ip().to_string());
        match principal(request) {
            Ok(principal) => {
                let agent = audit::agent(&principal, certificate, address);
                let state = request.app_data::<web::Data<AppState>>().cloned();
                let verdict = state.as_ref().map(|s| s.enforcement.watch().verdict(&principal, &agent));
                match (verdict, state) {
                    (Some(Verdict::Refuse { retry_after }), Some(state)) => Box::pin(async move {
                        // The refusal is an access attempt of the principal's too.
                        let event = AuditEvent {
                            query: Some("refused: an unusual-access alert holds for this principal".into()),
                            ..audit::event(
                                Action::UnusualAccess,
                                Outcome::MinorFailure,
                                &agent,
                                None,
                                Vec::new(),
                                audit::now(),
                            )
                        };
                        let store = state.store.clone();
                        let recorded = web::block(move || store.record(vec![AuditRecord::new(&event)])).await;
                        if !matches!(recorded, Ok(Ok(()))) {
                            tracing::warn!("a request refused under an unusual-access alert could not be recorded");
                        }
                        Err(GatewayError::TooManyRequests { retry_after })
                    }),
                    (Some(Verdict::Slow(wait)), _) => Box::pin(async move {
                        actix_web::rt::time::sleep(wait).await;
                        Ok(Caller(principal, agent))
                    }),
                    _ => Box::pin(ready(Ok(Caller(principal, agent)))),
                }
            }
            Err(refusal) => {
                let state = request.app_data::<web::Data<AppState>>().cloned();
                Box::pin(async move {
                    if let Some(state) = state {
                        let agent = audit::agent(&Principal::Anonymous, certificate, address);
                        let event = audit::event(
                            Action::AuthenticationRefused,
                            Outcome::MinorFailure,
                            &agent,
                            None,
                            Vec::new(),
                            audit::now(),
                        );
                        let store = state.store.clone();
                        let recorded = web::block(move || store.record(vec![AuditRecord::new(&event)])).await;
                        if !matches!(recorded, Ok(Ok(()))) {
                            tracing::warn!("a refused authentication could not be recorded in the audit log");
                        }
                    }
                    Err(refusal)
                })
            }
        }
    }
}

pub fn principal(request: &HttpRequest) -> Result<Principal, GatewayError> {
    let state = request.app_data::<web::Data<AppState>>().ok_or_else(|| GatewayError::Internal("no state".into()))?;
    // Two Authorization headers: which one a proxy or this server reads would decide who the
    // caller is.
    let mut authorizations = request.headers().get_all(actix_web::http::header::AUTHORIZATION);
    let authorization = authorizations.next().and_then(|v| v.to_str().ok());
    if authorizations.next().is_some() {
        return Err(GatewayError::Unauthenticated("a request carries one Authorization header".into()));
    }
    let peer = request.conn_data::<PeerCertificate>().and_then(|p| p.0.as_ref());
    Ok(state.identity.principal(authorization, peer)?)
}
