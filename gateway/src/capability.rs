//! The CapabilityStatement: exactly what this server implements, built from the same tables the
//! handlers use, so it cannot claim more than they do.

use fhir_profiles::search::search_params;
use fhir_profiles::{ResourceType, FHIR_VERSION};
use serde_json::{json, Value};

/// The interactions each type supports; AuditEvent is read-only.
pub fn interactions(resource_type: ResourceType) -> &'static [&'static str] {
    if resource_type.is_writable() {
        &["read", "vread", "history-instance", "search-type", "create", "update"]
    } else {
        &["read", "vread", "history-instance", "search-type"]
    }
}

pub fn capability_statement(base_url: Option<&str>) -> Value {
    let resources: Vec<Value> = ResourceType::ALL
        .into_iter()
        .map(|resource_type| {
            let params: Vec<Value> = search_params(resource_type)
                .into_iter()
                .map(|p| json!({"name": p.name, "definition": p.definition, "type": p.kind.as_str(), "documentation": p.documentation}))
                .collect();
            let mut resource = json!({
                "type": resource_type.as_str(),
                "interaction": interactions(resource_type).iter().map(|code| json!({"code": code})).collect::<Vec<_>>(),
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": false,
                "conditionalCreate": false,
                "conditionalRead": "not-supported",
                "conditionalUpdate": false,
                "conditionalDelete": "not-supported",
                "searchParam": params,
                "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
            });
            if resource_type == ResourceType::Bundle {
                resource["documentation"] = json!("Only Bundles of type 'document' are accepted.");
            }
            resource
        })
        .collect();
    let mut statement = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-28",
        "publisher": "Vaitio",
        "kind": "instance",
        "software": {"name": "Vaitio", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {"description": "Vaitio psychotherapy records gateway"},
        "fhirVersion": FHIR_VERSION,
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "HTTPS (TLS 1.3) only. Search results are paged with _count (and _offset in next links). \
                Identifiers are matched exactly through keyed HMAC tokens; names and free text are not searchable.",
            "security": {
                "cors": false,
                "description": "Organisations authenticate with a client certificate (mutual TLS) and send, per request, a practitioner \
                    bearer token bound to that certificate (RFC 8705 cnf.x5t#S256) naming the same organisation. Patients send a \
                    citizen token. Every resource is stored encrypted; access is decided per resource by the patient's consent and \
                    role rules, and what is withheld answers like what does not exist."
            },
            "resource": resources,
            "operation": [{"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"}],
        }],
    });
    if let Some(url) = base_url {
        statement["implementation"]["url"] = json!(url);
    }
    statement
}
