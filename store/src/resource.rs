//! What the layers above hand the store to write, and what a write answers.

use fhir_profiles::search::IndexFact;
use fhir_profiles::ResourceType;
use serde_json::{Map, Value};

use crate::crypto::DataKey;
use crate::rows::Head;

/// A resource ready to be written: read and checked, its patient resolved.
pub struct NewResource {
    pub resource_type: ResourceType,
    pub json: Map<String, Value>,
    /// The patient pseudonym; `None` for Practitioner and Organization.
    pub patient: Option<String>,
    /// Space-separated security label codes the consent crate acts on.
    pub security_labels: String,
    pub facts: Vec<IndexFact>,
    /// Who writes it: organisation OID and practitioner, when a professional does.
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    /// The bare OID of the service event it belongs to, resolved through stored Encounters.
    pub service_event: Option<String>,
}

impl NewResource {
    /// The data key scope the resource is sealed under: its patient's, or the shared one.
    pub(crate) fn scope(&self) -> &str {
        self.patient.as_deref().unwrap_or(SHARED_SCOPE)
    }
}

/// The key scope of resources that belong to no patient.
pub(crate) const SHARED_SCOPE: &str = "shared";

/// How a resource in a [`crate::Store::write_all`] is written.
pub enum WriteKind {
    /// Version 1 of a new id.
    Create,
    /// The next version; `Some(v)` if the client said which version it last saw.
    Update(Option<i64>),
    /// Version 1 unless the id exists; an existing resource is left as it is.
    CreateIfAbsent,
}

pub struct Write {
    pub resource: NewResource,
    pub id: String,
    pub kind: WriteKind,
}

/// What each write of a request stored, in order: its head and its plaintext body, or `None`
/// for a [`WriteKind::CreateIfAbsent`] that found its resource.
pub type Written = Vec<Option<(Head, Vec<u8>)>>;

/// The data keys of a request's writes: scope, key, and the wrapped key when it is new.
pub(crate) type NewKeys = Vec<(String, DataKey, Option<crate::keys::Wrapped>)>;

/// The key of `scope` among a request's keys.
pub(crate) fn key_of<'k>(keys: &'k NewKeys, scope: &str) -> Option<&'k DataKey> {
    keys.iter().find(|(s, _, _)| s == scope).map(|(_, key, _)| key)
}

/// Whether a write's patient (`scope`) is named under an older index key version than `current`.
pub(crate) fn older_than(scope: &str, current: u32) -> bool {
    scope != SHARED_SCOPE && crate::crypto::pseudonym_version(scope) < current
}
