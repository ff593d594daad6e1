//! What every FHIR handler reads of its request first: the resource type and id in the path,
//! the caller, the response format, the query's parameters and paging.

use std::sync::Arc;

use actix_web::HttpRequest;
use audit_log::Agent;
use consent::Principal;
use fhir_profiles::{is_valid_id, ResourceType};
use store::Store;

use crate::caller::Caller;
use crate::config::Config;
use crate::enforce::{Enforcement, Gate};
use crate::error::{printable_name, GatewayError};
use crate::http::{self, Output};
use crate::state::AppState;

/// The resource type named in the path, or 404.
pub fn resource_type(request: &HttpRequest) -> Result<ResourceType, GatewayError> {
    let name = request.match_info().get("type").unwrap_or("");
    name.parse().map_err(|()| GatewayError::UnknownResourceType(printable_name(name)))
}

pub fn not_found(resource_type: ResourceType, id: &str) -> GatewayError {
    GatewayError::not_found(resource_type, id)
}

/// The id in the path. An id that cannot exist gets the same 404 as one that does not.
pub fn path_id(request: &HttpRequest, resource_type: ResourceType) -> Result<String, GatewayError> {
    let id = request.match_info().get("id").unwrap_or("");
    if is_valid_id(id) {
        Ok(id.to_owned())
    } else {
        Err(not_found(resource_type, id))
    }
}

pub struct Context {
    pub resource_type: ResourceType,
    pub principal: Principal,
    pub agent: Agent,
    pub output: Output,
    pub params: Vec<(String, String)>,
}

/// What every FHIR handler does first: the caller is known (the `Caller` extractor ran before the
/// handler), the type exists, the response format is one we can produce.
pub fn context(request: &HttpRequest, caller: Caller) -> Result<Context, GatewayError> {
    let resource_type = resource_type(request)?;
    let Caller(principal, agent) = caller;
    let params = http::query_pairs(request);
    let output = http::negotiate(request, &params)?;
    Ok(Context { resource_type, principal, agent, output, params })
}

/// What the blocking part of a handler needs: who asks (and how the audit log names them), and
/// the enforcement point that answers.
pub struct Work {
    pub principal: Principal,
    pub agent: Agent,
    pub enforcement: Arc<Enforcement>,
}

impl Work {
    pub fn new(principal: Principal, agent: Agent, state: &AppState) -> Self {
        Work { principal, agent, enforcement: state.enforcement.clone() }
    }

    pub fn gate(&self) -> Gate<'_> {
        self.enforcement.gate(&self.principal)
    }

    pub fn store(&self) -> &Store {
        self.enforcement.store()
    }
}

impl Context {
    pub fn work(&self, state: &AppState) -> Work {
        Work::new(self.principal.clone(), self.agent.clone(), state)
    }
}

/// `_count` and `_offset`.
pub struct Paging {
    pub count: usize,
    pub offset: usize,
}

pub fn paging(params: &[(String, String)], config: &Config) -> Result<Paging, GatewayError> {
    let mut paging = Paging { count: config.default_count, offset: 0 };
    for (name, value) in params {
        match name.as_str() {
            "_count" => {
                let count: usize =
                    value.parse().map_err(|_| GatewayError::BadRequest("_count must be a whole number".into()))?;
                paging.count = count.min(config.max_count);
            }
            "_offset" => {
                paging.offset =
                    value.parse().map_err(|_| GatewayError::BadRequest("_offset must be a whole number".into()))?;
            }
            _ => {}
        }
    }
    Ok(paging)
}
