use serde_json::{Map, Value};

use crate::error::{printable_name, without_values, Issue, IssueCode, Path, ProfileError};
use crate::hetu::{Hetu, HETU_SYSTEM};
use crate::json::Member;
use crate::resource_type::ResourceType;

/// A `meta.security` coding as submitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecurityCoding {
    pub system: String,
    pub code: String,
}

/// Whom a resource is about, as far as the resource itself can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PatientLink {
    /// The resource is the Patient.
    Itself,
    /// A reference to a stored Patient: `Patient/{id}`.
    Stored(String),
    /// A document Bundle whose Composition's subject is a Patient inside the Bundle, identified
    /// by its HETU.
    Embedded(Hetu),
    /// A resource that belongs to no patient (Practitioner, Organization).
    None,
}

/// The service event (palvelutapahtuma, the course of care) a resource belongs to, as far as the
/// resource itself can tell. A patient may deny a whole service event, so what belongs to one
/// must be filed under it: the gateway resolves [`ServiceEventLink::Encounter`] against the
/// stored Encounter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServiceEventLink {
    /// Named by its OID (bare, without `urn:oid:`): the resource is the service event's
    /// Encounter, or a document that carries it.
    Oid(String),
    /// Through a stored Encounter (`Encounter/{id}`): a session's `partOf`, or the `encounter`
    /// of a Composition, Condition or Observation.
    Encounter(String),
    /// The resource names no service event.
    None,
}

/// A submitted resource that the model read without dropping anything.
#[derive(Clone, Debug)]
pub struct ParsedResource {
    pub resource_type: ResourceType,
    /// The submitted JSON: the record of truth, stored (encrypted) after the gateway sets `id`
    /// and `meta`.
    pub json: Map<String, Value>,
    /// Security labels on the resource and, for a Bundle, on any of its entries: a document is as
    /// sensitive as its most sensitive part.
    pub security: Vec<SecurityCoding>,
    /// Valid HETU identifiers of a Patient.
    pub hetus: Vec<Hetu>,
    pub patient: PatientLink,
    pub service_event: ServiceEventLink,
}

impl ParsedResource {
    pub fn id(&self) -> Option<&str> {
        self.json.member("id").and_then(Value::as_str)
    }
}

/// Reads `bytes` as a FHIR R4 resource of type `expected`.
///
/// Refuses (400) what is not JSON, not a resource of the expected type, or holds elements the
/// R4 model does not know; refuses (422) what breaks a rule the gateway relies on: a HETU with a
/// wrong check character, patient data that names no patient, a Bundle that is not a document.
pub fn parse_resource(expected: ResourceType, bytes: &[u8]) -> Result<ParsedResource, ProfileError> {
    parse_resource_value(expected, crate::strict::read(bytes)?)
}

/// [`parse_resource`] of JSON already parsed.
pub fn parse_resource_value(expected: ResourceType, value: Value) -> Result<ParsedResource, ProfileError> {
    read(expected, value, true)
}

/// A resource the gateway built itself from a checked record (`translate`): every rule of
/// [`parse_resource`] and the profiles, without the round trip through the R4 model. That
/// round trip guards against elements a submitter invented; the translation's output is held
/// to the model by the golden and property tests over every record the generator can make, so
/// repeating it on each submission would only spend the time.
pub fn parse_translated(expected: ResourceType, value: Value) -> Result<ParsedResource, ProfileError> {
    read(expected, value, false)
}

fn read(expected: ResourceType, value: Value, model: bool) -> Result<ParsedResource, ProfileError> {
    let Some(json) = value.as_object() else {
        return Err(ProfileError::structure(Issue::new(
            IssueCode::Structure,
            "the body must be a JSON object holding one FHIR resource",
        )));
    };
    let declared = match json.member("resourceType") {
        Some(Value::String(name)) => name.as_str(),
        _ => {
            return Err(ProfileError::structure(
                Issue::new(IssueCode::Required, "the resource has no resourceType").at("resourceType"),
            ))
        }
    };
    let actual: ResourceType = declared.parse().map_err(|()| {
        ProfileError::structure(
            Issue::new(
                IssueCode::NotSupported,
                format!("resource type '{}' is not served here", printable_name(declared)),
            )
            .at("resourceType"),
        )
    })?;
    if actual != expected {
        return Err(ProfileError::structure(
            Issue::new(IssueCode::Invalid, format!("expected a {expected} resource but the body is a {actual}"))
                .at("resourceType"),
        ));
    }
    if model {
        check_model(&value)?;
    }
    let mut rules = Vec::new();
    if let Some(id) = json.member("id") {
        if !id.as_str().is_some_and(is_valid_id) {
            rules.push(
                Issue::new(IssueCode::Value, "id must be 1-64 characters of A-Z a-z 0-9 - .")
                    .at(format!("{actual}.id")),
            );
        }
    }
    let hetus = if actual == ResourceType::Patient { patient_hetus(json, "Patient", &mut rules) } else { Vec::new() };
    let patient = patient_link(actual, json, &mut rules);
    let service_event = service_event_link(actual, json, &mut rules);
    let security = security_labels(actual, json);
    rules.extend(crate::profiles::profiles().validate(&value));
    if !rules.is_empty() {
        return Err(ProfileError::Rule(rules));
    }
    let Value::Object(json) = value else { unreachable!("checked to be an object above") };
    Ok(ParsedResource { resource_type: actual, json, security, hetus, patient, service_event })
}

/// The model's view must hold everything the submitter sent: anything it dropped is an element
/// that R4 does not have here, and is refused rather than silently lost.
fn check_model(value: &Value) -> Result<(), ProfileError> {
    let back = r4_model::round_trip(value).map_err(|error| {
        ProfileError::structure(Issue::new(
            IssueCode::Structure,
            match error {
                r4_model::ModelError::Read(e) => format!("the resource does not match FHIR R4: {}", model_error(&e)),
                r4_model::ModelError::Write(e) => format!("the resource cannot be represented: {e}"),
            },
        ))
    })?;
    let mut dropped = Vec::new();
    let root = value.member("resourceType").and_then(Value::as_str).unwrap_or("Resource");
    dropped_elements(value, &back, root, &mut dropped);
    if dropped.is_empty() {
        Ok(())
    } else {
        Err(ProfileError::Structure(
            dropped
                .into_iter()
                .map(|path| Issue::new(IssueCode::Structure, format!("unknown element '{path}'")).at(path))
                .collect(),
        ))
    }
}

/// serde's messages quote the value they could not read (`invalid type: string "…"`,
/// unknown enum values in backticks), which could be anything a client typed: a HETU, a name,
/// note text. Keep the kind of problem and drop every quoted text.
fn model_error(error: &serde_json::Error) -> String {
    without_values(&error.to_string())
}

fn dropped_elements(input: &Value, model: &Value, path: &str, out: &mut Vec<String>) {
    match (input, model) {
        (Value::Object(sent), Value::Object(kept)) => {
            for (key, value) in sent {
                let child = format!("{path}.{}", printable_name(key));
                match kept.member(key) {
                    Some(kept_value) => dropped_elements(value, kept_value, &child, out),
                    None if value.is_null() => {}
                    None => out.push(child),
                }
            }
        }
        (Value::Array(sent), Value::Array(kept)) => {
            for (index, value) in sent.iter().enumerate() {
                if let Some(kept_value) = kept.get(index) {
                    dropped_elements(value, kept_value, &format!("{path}[{index}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// FHIR's `id` datatype.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn patient_hetus(json: &Map<String, Value>, path: &str, rules: &mut Vec<Issue>) -> Vec<Hetu> {
    let mut hetus = Vec::new();
    let identifiers = json.member("identifier").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    for (index, identifier) in identifiers.iter().enumerate() {
        if identifier.member("system").and_then(Value::as_str) != Some(HETU_SYSTEM) {
            continue;
        }
        let at = format!("{path}.identifier[{index}].value");
        match identifier.member("value").and_then(Value::as_str).map(Hetu::parse) {
            Some(Ok(hetu)) => hetus.push(hetu),
            Some(Err(error)) => rules.push(Issue::new(IssueCode::Value, error.to_string()).at(at)),
            None => rules.push(Issue::new(IssueCode::Required, "a HETU identifier needs a value").at(at)),
        }
    }
    hetus
}

/// The element of each patient-data type that names its patient.
fn subject_element(resource_type: ResourceType) -> Option<&'static str> {
    match resource_type {
        ResourceType::Encounter | ResourceType::Condition | ResourceType::Observation | ResourceType::Composition => {
            Some("subject")
        }
        ResourceType::Consent => Some("patient"),
        ResourceType::AuditEvent => None,
        _ => None,
    }
}

fn patient_link(resource_type: ResourceType, json: &Map<String, Value>, rules: &mut Vec<Issue>) -> PatientLink {
    match resource_type {
        ResourceType::Patient => PatientLink::Itself,
        ResourceType::Practitioner | ResourceType::Organization | ResourceType::AuditEvent => PatientLink::None,
        ResourceType::Bundle => document_patient(json, rules),
        _ => {
            let element = subject_element(resource_type).unwrap_or("subject");
            let at = format!("{resource_type}.{element}");
            match json.get(element).and_then(|r| r.member("reference")).and_then(Value::as_str) {
                Some(reference) => match stored_patient_id(reference) {
                    Some(id) => PatientLink::Stored(id.to_owned()),
                    None => {
                        rules.push(
                            Issue::new(IssueCode::Value, "the patient must be referenced as Patient/{id}")
                                .at(format!("{at}.reference")),
                        );
                        PatientLink::None
                    }
                },
                None => {
                    rules.push(Issue::new(IssueCode::Required, "patient data must reference its Patient").at(at));
                    PatientLink::None
                }
            }
        }
    }
}

/// The OID of a document's custodian: the organisation that answers for it, named by the
/// Composition's `custodian` and the Organization entry it resolves to. `None` when the document
/// names none that resolves (the profile refuses such a document).
pub fn document_custodian(json: &Map<String, Value>) -> Option<String> {
    let entries = json.member("entry")?.as_array()?;
    let composition = entries.first()?.member("resource")?;
    let reference = composition.member("custodian")?.member("reference")?.as_str()?;
    let organization = entries.iter().find(|e| e.member("fullUrl").and_then(Value::as_str) == Some(reference))?;
    organization.member("resource")?.member("identifier")?.as_array()?.iter().find_map(|identifier| {
        let system = identifier.member("system").and_then(Value::as_str);
        let value = identifier.member("value").and_then(Value::as_str)?;
        (system == Some("urn:ietf:rfc:3986")).then(|| value.strip_prefix("urn:oid:").map(str::to_owned)).flatten()
    })
}

/// The identifier system under which a service event is named by its OID.
const OID_SYSTEM: &str = "urn:ietf:rfc:3986";

/// The OID of an `urn:ietf:rfc:3986` identifier with an `urn:oid:` value.
fn oid_identifier(resource: &Map<String, Value>) -> Option<String> {
    resource.member("identifier")?.as_array()?.iter().find_map(|identifier| {
        if identifier.member("system").and_then(Value::as_str) != Some(OID_SYSTEM) {
            return None;
        }
        identifier.member("value")?.as_str()?.strip_prefix("urn:oid:").filter(|oid| !oid.is_empty()).map(str::to_owned)
    })
}

/// Which service event a resource belongs to. An Encounter that is `partOf` another belongs to
/// that one's; an Encounter with an OID and no parent is a service event itself. A reference
/// the gateway cannot follow is refused: a resource filed under no service event would escape
/// the patient's denial of its service event.
fn service_event_link(
    resource_type: ResourceType,
    json: &Map<String, Value>,
    rules: &mut Vec<Issue>,
) -> ServiceEventLink {
    let element = match resource_type {
        ResourceType::Bundle => return document_service_event(json),
        ResourceType::Encounter => "partOf",
        ResourceType::Composition | ResourceType::Condition | ResourceType::Observation => "encounter",
        _ => return ServiceEventLink::None,
    };
    match json.member(element) {
        Some(reference) => match reference.member("reference").and_then(Value::as_str).and_then(stored_encounter_id) {
            Some(id) => ServiceEventLink::Encounter(id.to_owned()),
            None => {
                rules.push(
                    Issue::new(IssueCode::Value, "the encounter must be referenced as Encounter/{id}")
                        .at(format!("{resource_type}.{element}")),
                );
                ServiceEventLink::None
            }
        },
        None if resource_type == ResourceType::Encounter => {
            oid_identifier(json).map_or(ServiceEventLink::None, ServiceEventLink::Oid)
        }
        None => ServiceEventLink::None,
    }
}

/// A document belongs to the service event whose Encounter it carries.
fn document_service_event(json: &Map<String, Value>) -> ServiceEventLink {
    let entries = json.member("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    entries
        .iter()
        .filter_map(|entry| entry.member("resource")?.as_object())
        .filter(|resource| resource.member("resourceType").and_then(Value::as_str) == Some("Encounter"))
        .filter(|resource| resource.member("partOf").is_none())
        .find_map(oid_identifier)
        .map_or(ServiceEventLink::None, ServiceEventLink::Oid)
}

fn stored_encounter_id(reference: &str) -> Option<&str> {
    reference.strip_prefix("Encounter/").filter(|id| is_valid_id(id))
}

/// `Patient/{id}`, relative, as the gateway stores references.
pub fn stored_patient_id(reference: &str) -> Option<&str> {
    reference.strip_prefix("Patient/").filter(|id| is_valid_id(id))
}

/// A document Bundle: `type = document` and a Composition first whose subject is a Patient,
/// either stored or inside the Bundle with a HETU.
fn document_patient(json: &Map<String, Value>, rules: &mut Vec<Issue>) -> PatientLink {
    if json.member("type").and_then(Value::as_str) != Some("document") {
        rules.push(Issue::new(IssueCode::Value, "only Bundles of type 'document' are accepted").at("Bundle.type"));
        return PatientLink::None;
    }
    let entries = json.member("entry").and_then(Value::as_array).map(Vec::as_slice).unwrap_or(&[]);
    document_invariants(json, entries, rules);
    let Some(composition) = entries
        .first()
        .and_then(|e| e.member("resource"))
        .filter(|r| r.member("resourceType").and_then(Value::as_str) == Some("Composition"))
    else {
        rules.push(
            Issue::new(IssueCode::Invalid, "a document Bundle starts with its Composition")
                .at("Bundle.entry[0].resource"),
        );
        return PatientLink::None;
    };
    let at = "Bundle.entry[0].resource.subject.reference";
    let Some(reference) = composition.member("subject").and_then(|s| s.member("reference")).and_then(Value::as_str)
    else {
        rules.push(
            Issue::new(IssueCode::Required, "the Composition must name its patient")
                .at("Bundle.entry[0].resource.subject"),
        );
        return PatientLink::None;
    };
    let embedded =
        entries.iter().enumerate().find(|(_, e)| e.member("fullUrl").and_then(Value::as_str) == Some(reference));
    match embedded {
        Some((index, entry)) => {
            let resource = entry.member("resource").and_then(Value::as_object);
            match resource.filter(|r| r.member("resourceType").and_then(Value::as_str) == Some("Patient")) {
                Some(patient) => {
                    let path = format!("Bundle.entry[{index}].resource");
                    let mut hetus = patient_hetus(patient, &path, rules);
                    if hetus.is_empty() {
                        rules.push(
                            Issue::new(
                                IssueCode::Required,
                                "the document's Patient must carry a HETU identifier (urn:oid:1.2.246.21)",
                            )
                            .at(format!("{path}.identifier")),
                        );
                        PatientLink::None
                    } else {
                        PatientLink::Embedded(hetus.swap_remove(0))
                    }
                }
                None => {
                    rules.push(Issue::new(IssueCode::Invalid, "the Composition's subject must be a Patient").at(at));
                    PatientLink::None
                }
            }
        }
        None => match stored_patient_id(reference) {
            Some(id) => PatientLink::Stored(id.to_owned()),
            None => {
                rules.push(
                    Issue::new(
                        IssueCode::Invalid,
                        "the Composition's subject resolves neither inside the Bundle nor as Patient/{id}",
                    )
                    .at(at),
                );
                PatientLink::None
            }
        },
    }
}

/// The document invariants of FHIR R4 Bundle: `bdl-9` (identifier with system and value),
/// `bdl-10` (timestamp), `bdl-7` (fullUrl unique), every entry a `fullUrl` and a `resource`, and
/// every `urn:uuid:` reference resolving to an entry of the same document.
fn document_invariants(json: &Map<String, Value>, entries: &[Value], rules: &mut Vec<Issue>) {
    let identifier = json.member("identifier");
    let has = |key: &str| identifier.and_then(|i| i.member(key)).and_then(Value::as_str).is_some_and(|v| !v.is_empty());
    if !(has("system") && has("value")) {
        rules.push(
            Issue::new(IssueCode::Required, "bdl-9: a document has an identifier with a system and a value")
                .at("Bundle.identifier"),
        );
    }
    if json.member("timestamp").and_then(Value::as_str).is_none() {
        rules.push(Issue::new(IssueCode::Required, "bdl-10: a document has a timestamp").at("Bundle.timestamp"));
    }
    let mut full_urls = std::collections::HashSet::new();
    for (index, entry) in entries.iter().enumerate() {
        match entry.member("fullUrl").and_then(Value::as_str) {
            Some(url) if !full_urls.insert(url) => rules.push(
                Issue::new(IssueCode::Invalid, "bdl-7: fullUrl must be unique in a document")
                    .at(format!("Bundle.entry[{index}].fullUrl")),
            ),
            Some(_) => {}
            None => rules.push(
                Issue::new(IssueCode::Required, "every entry of a document has a fullUrl")
                    .at(format!("Bundle.entry[{index}].fullUrl")),
            ),
        }
        if !entry.member("resource").is_some_and(Value::is_object) {
            rules.push(
                Issue::new(IssueCode::Required, "every entry of a document has a resource")
                    .at(format!("Bundle.entry[{index}].resource")),
            );
        }
    }
    let root = Path::Root("Bundle");
    let entry_path = root.key("entry");
    for (index, entry) in entries.iter().enumerate() {
        if let Some(resource) = entry.member("resource") {
            let at = entry_path.index(index);
            unresolved_references(resource, &at.key("resource"), &full_urls, rules);
        }
    }
}

fn unresolved_references(
    value: &Value,
    path: &Path<'_>,
    full_urls: &std::collections::HashSet<&str>,
    rules: &mut Vec<Issue>,
) {
    match value {
        Value::Object(object) => {
            for (key, child) in object {
                let child_path = path.key(key);
                if key == "reference" {
                    if let Some(reference) = child.as_str().filter(|r| r.starts_with("urn:uuid:")) {
                        if !full_urls.contains(reference) {
                            rules.push(
                                Issue::new(
                                    IssueCode::Invalid,
                                    "the reference does not resolve to an entry of the document",
                                )
                                .at(child_path.to_string()),
                            );
                        }
                    }
                } else if key != "contained" {
                    unresolved_references(child, &child_path, full_urls, rules);
                }
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                unresolved_references(item, &path.index(index), full_urls, rules);
            }
        }
        _ => {}
    }
}

fn security_labels(resource_type: ResourceType, json: &Map<String, Value>) -> Vec<SecurityCoding> {
    let mut labels = Vec::new();
    collect_security(json, &mut labels);
    if resource_type == ResourceType::Bundle {
        for entry in json.member("entry").and_then(Value::as_array).into_iter().flatten() {
            if let Some(resource) = entry.member("resource").and_then(Value::as_object) {
                collect_security(resource, &mut labels);
            }
        }
    }
    labels
}

fn collect_security(json: &Map<String, Value>, out: &mut Vec<SecurityCoding>) {
    let codings = json.member("meta").and_then(|m| m.member("security")).and_then(Value::as_array);
    for coding in codings.into_iter().flatten() {
        if let (Some(system), Some(code)) =
            (coding.member("system").and_then(Value::as_str), coding.member("code").and_then(Value::as_str))
        {
            let label = SecurityCoding { system: system.to_owned(), code: code.to_owned() };
            if !out.contains(&label) {
                out.push(label);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(value: Value) -> Result<ParsedResource, ProfileError> {
        let rt = value["resourceType"].as_str().unwrap_or("Patient").parse().unwrap_or(ResourceType::Patient);
        parse_resource(rt, value.to_string().as_bytes())
    }

    #[test]
    fn reads_a_patient_with_a_hetu() {
        let parsed = parse(json!({
            "resourceType": "Patient",
            "identifier": [{"system": HETU_SYSTEM, "value": "131052-308T"}],
            "name": [{"family": "Virtanen", "given": ["Aino"]}],
            "birthDate": "1952-10-13"
        }))
        .unwrap();
        assert_eq!(parsed.resource_type, ResourceType::Patient);
        assert_eq!(parsed.hetus.len(), 1);
        assert_eq!(parsed.patient, PatientLink::Itself);
    }

    #[test]
    fn files_each_resource_under_its_service_event() {
        let event = parse(json!({
            "resourceType": "Encounter", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.1.77.1"}],
            "subject": {"reference": "Patient/p1"}
        }))
        .unwrap();
        assert_eq!(event.service_event, ServiceEventLink::Oid("1.2.246.10.1.77.1".into()));
        let session = parse(json!({
            "resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "identifier": [{"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.1.77.1.5"}],
            "subject": {"reference": "Patient/p1"}, "partOf": {"reference": "Encounter/e1"}
        }))
        .unwrap();
        assert_eq!(session.service_event, ServiceEventLink::Encounter("e1".into()));
        let condition = |encounter: &str| {
            parse(json!({
                "resourceType": "Condition", "subject": {"reference": "Patient/p1"},
                "code": {"text": "x"}, "encounter": {"reference": encounter}
            }))
        };
        assert_eq!(condition("Encounter/e2").unwrap().service_event, ServiceEventLink::Encounter("e2".into()));
        let ProfileError::Rule(issues) = condition("https://elsewhere.example/Encounter/e2").unwrap_err() else {
            panic!("an encounter the gateway cannot follow is refused")
        };
        assert_eq!(issues[0].expression.as_deref(), Some("Condition.encounter"));
        let patient = parse(json!({"resourceType": "Patient", "name": [{"family": "X"}]})).unwrap();
        assert_eq!(patient.service_event, ServiceEventLink::None);
    }

    #[test]
    fn refuses_unknown_elements_with_their_path() {
        let error = parse(json!({"resourceType": "Patient", "name": [{"family": "X", "nickname": "Y"}]})).unwrap_err();
        let ProfileError::Structure(issues) = error else { panic!("{error:?}") };
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.name[0].nickname"));
    }

    /// Found by the `resource` fuzz target's sibling: a member name may be data (a HETU typed
    /// where a name goes), so a name that is not made of letters is not echoed.
    #[test]
    fn an_unknown_member_named_like_data_is_not_echoed() {
        let error = parse(json!({"resourceType": "Patient", "131052-308T": "x"})).unwrap_err();
        let ProfileError::Structure(issues) = error else { panic!("{error:?}") };
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.…"));
        assert!(!issues[0].diagnostics.contains("131052"), "{}", issues[0].diagnostics);
    }

    #[test]
    fn refuses_a_wrong_check_character_without_echoing_it() {
        let error =
            parse(json!({"resourceType": "Patient", "identifier": [{"system": HETU_SYSTEM, "value": "131052-308U"}]}))
                .unwrap_err();
        let ProfileError::Rule(issues) = error else { panic!("{error:?}") };
        assert_eq!(issues[0].expression.as_deref(), Some("Patient.identifier[0].value"));
        assert!(!issues[0].diagnostics.contains("131052"));
    }

    #[test]
    fn refuses_the_wrong_type_and_unknown_types() {
        let body = json!({"resourceType": "Observation"}).to_string();
        assert!(matches!(parse_resource(ResourceType::Patient, body.as_bytes()), Err(ProfileError::Structure(_))));
        let body = json!({"resourceType": "Basic"}).to_string();
        assert!(matches!(parse_resource(ResourceType::Patient, body.as_bytes()), Err(ProfileError::Structure(_))));
        assert!(matches!(
            parse_resource(ResourceType::Patient, b"{\"resourceType\": "),
            Err(ProfileError::MalformedJson(_))
        ));
        assert!(matches!(parse_resource(ResourceType::Patient, b"[1]"), Err(ProfileError::Structure(_))));
        assert!(matches!(parse_resource(ResourceType::Patient, &[0xff, 0xfe]), Err(ProfileError::MalformedJson(_))));
    }

    #[test]
    fn patient_data_must_name_its_patient() {
        let error =
            parse(json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}})).unwrap_err();
        assert!(matches!(error, ProfileError::Rule(_)), "{error:?}");
        let ok = parse(json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}, "subject": {"reference": "Patient/p1"}})).unwrap();
        assert_eq!(ok.patient, PatientLink::Stored("p1".into()));
    }

    /// The example record's document, with fixed ids.
    fn example_document() -> Value {
        use crate::record::{parse_record, RecordLimits, EXAMPLE_V1};
        use crate::translate::{translate, DocumentIds};
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-28T12:00:00Z").unwrap();
        let checked = parse_record(EXAMPLE_V1.as_bytes(), &RecordLimits { now, max_note_bytes: 65536 }).unwrap();
        let mut n = 0u32;
        let ids = DocumentIds::derive(&checked, |_| {
            n += 1;
            format!("00000000-0000-4000-8000-{n:012}")
        });
        translate(&checked, &ids, "2026-03-02T15:00:00+02:00")
    }

    #[test]
    fn a_document_bundle_names_its_embedded_patient_and_carries_every_label() {
        let parsed = parse(example_document()).unwrap();
        assert!(matches!(parsed.patient, PatientLink::Embedded(_)));
        assert!(parsed.security.iter().any(|s| s.code == "PSYTHPN"));
        assert!(parsed.security.iter().any(|s| s.code == "R"));
    }

    #[test]
    fn document_invariants_name_the_element() {
        let document = example_document;
        assert!(parse(document()).is_ok());
        let expression = |change: &dyn Fn(&mut Value)| {
            let mut bundle = document();
            change(&mut bundle);
            match parse(bundle) {
                Err(ProfileError::Rule(issues)) => issues[0].expression.clone().unwrap_or_default(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            expression(&|b| {
                b.as_object_mut().unwrap().remove("identifier");
            }),
            "Bundle.identifier"
        );
        assert_eq!(
            expression(&|b| {
                b.as_object_mut().unwrap().remove("timestamp");
            }),
            "Bundle.timestamp"
        );
        assert_eq!(
            expression(&|b| b["entry"][1]["fullUrl"] = b["entry"][0]["fullUrl"].clone()),
            "Bundle.entry[1].fullUrl"
        );
        assert_eq!(
            expression(&|b| b["entry"][0]["resource"]["author"][0]["reference"] = json!("urn:uuid:nobody")),
            "Bundle.entry[0].resource.author[0].reference"
        );
    }
}
