//! A version's body as stored: the submitted JSON stamped with its id and meta, then sealed
//! under its patient's data key and bound to the metadata it is filed under.

use fhir_profiles::listing::Listing;
use fhir_profiles::ResourceType;
use serde_json::{Map, Value};

use crate::crypto::{seal_body, seal_listing, BodyBinding, DataKey};
use crate::error::StoreError;
use crate::resource::{key_of, NewKeys, NewResource, Write, WriteKind};
use crate::time::{instant, now_millis};

/// A version stamped and encrypted, with its document's listing. Version 1 of a new resource is
/// sealed by the request's own thread before it queues for the writer: serialising and sealing
/// bodies inside the one writer thread was a fifth of its time during ingest. It is used when
/// the write turns out to create version 1 (a `CreateIfAbsent` that finds the resource present
/// drops it); later versions are sealed by the writer, which learns their number.
pub(crate) struct Sealed {
    pub last_updated: i64,
    pub plain: Vec<u8>,
    pub sealed: Vec<u8>,
    /// A document's listing, sealed (see [`sealed_listing`]).
    pub listing: Option<Vec<u8>>,
}

/// Version 1 of each write that may create one, stamped and sealed under its scope's key.
pub(crate) fn seal_new_versions(writes: &[Write], keys: &NewKeys) -> Result<Vec<Option<Sealed>>, StoreError> {
    writes
        .iter()
        .map(|write| {
            if matches!(write.kind, WriteKind::Update(_)) {
                return Ok(None);
            }
            let Some(key) = key_of(keys, write.resource.scope()) else { return Ok(None) };
            Ok(Some(stamp_and_seal(&write.resource, &write.id, 1, now_millis(), key)?))
        })
        .collect()
}

/// A version's body as stored: stamped with its id and meta, then encrypted and bound to the
/// metadata it is filed under; with a document's sealed listing.
pub(crate) fn stamp_and_seal(
    resource: &NewResource,
    id: &str,
    version: i64,
    last_updated: i64,
    key: &DataKey,
) -> Result<Sealed, StoreError> {
    let resource_type = resource.resource_type.as_str();
    let body = stamped_body(&resource.json, resource_type, id, version, last_updated)?;
    let binding = BodyBinding {
        resource_type,
        id,
        version,
        key_scope: resource.scope(),
        patient: resource.patient.as_deref(),
        security_labels: &resource.security_labels,
        author: (resource.author_org.as_deref(), resource.author_practitioner.as_deref()),
        service_event: resource.service_event.as_deref(),
    };
    let sealed = seal_body(key, &binding, &body)?;
    let listing = sealed_listing(&resource.json, key, &binding)?;
    Ok(Sealed { last_updated, plain: body, sealed, listing })
}

/// The listing of a patient's document (a Bundle), read from its tree and sealed under the same
/// key and binding as its body, for the head to carry; `None` for anything else. Only a
/// patient's documents are listed, and the key of a listing is its patient's.
pub(crate) fn sealed_listing(
    json: &Map<String, Value>,
    key: &DataKey,
    binding: &BodyBinding<'_>,
) -> Result<Option<Vec<u8>>, StoreError> {
    if binding.resource_type != ResourceType::Bundle.as_str() || binding.patient != Some(binding.key_scope) {
        return Ok(None);
    }
    let Some(listing) = Listing::of_bundle(json, binding.service_event) else { return Ok(None) };
    let plain = serde_json::to_vec(&listing)
        .map_err(|e| StoreError::Internal(format!("a listing could not be serialised: {e}")))?;
    Ok(Some(seal_listing(key, binding, &plain)?))
}

/// The stored JSON of a resource: the submitted one with the server-assigned `id`,
/// `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta` (profiles, security
/// labels) and putting `resourceType`, `id` and `meta` first. Serialised straight from the
/// submitted tree, which is not copied.
fn stamped_body(
    json: &Map<String, Value>,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated: i64,
) -> Result<Vec<u8>, StoreError> {
    use serde::ser::{Serialize, SerializeMap, Serializer};
    struct Stamped<'a> {
        json: &'a Map<String, Value>,
        resource_type: &'a str,
        id: &'a str,
        meta: Map<String, Value>,
    }
    impl Serialize for Stamped<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("resourceType", self.resource_type)?;
            map.serialize_entry("id", self.id)?;
            map.serialize_entry("meta", &self.meta)?;
            for (key, value) in self.json {
                if !matches!(key.as_str(), "resourceType" | "id" | "meta") {
                    map.serialize_entry(key, value)?;
                }
            }
            map.end()
        }
    }
    let mut meta = match json.get("meta") {
        Some(Value::Object(meta)) => meta.clone(),
        _ => Map::new(),
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(instant(last_updated)));
    serde_json::to_vec(&Stamped { json, resource_type, id, meta })
        .map_err(|e| StoreError::Damaged(format!("a resource could not be serialised: {e}")))
}
