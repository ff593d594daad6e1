//! The shipped profiles, read by the validator: each rule kind refuses a document that breaks it,
//! naming the element by FHIRPath.

use fhir_profiles::profiles::{profiles, Profiles, ARTIFACTS, MENTAL_DISORDERS_VALUE_SET};
use fhir_profiles::record::parse_record;
use fhir_profiles::translate::{translate, ICD10_SYSTEM};
use fhir_profiles::{parse_resource_value, IssueCode, ProfileError, ResourceType};
use serde_json::{json, Value};

use crate::translation::{example, ids, limits};

pub fn example_document() -> Value {
    let checked = parse_record(example().to_string().as_bytes(), &limits()).unwrap();
    translate(&checked, &ids(&checked), "2026-03-02T15:00:00+02:00")
}

/// A change that breaks one rule, and the issue the validator must report for it. Entries of the
/// example document: 0 Composition, 1 Patient, 2 Practitioner, 3 Organization, 4 service event,
/// 5 session, 6 Condition, 7 Observation.
pub struct Mutation {
    pub name: &'static str,
    pub change: fn(&mut Value),
    pub code: IssueCode,
    pub expression: &'static str,
}

fn resource(document: &mut Value, index: usize) -> &mut Value {
    &mut document["entry"][index]["resource"]
}

pub const MUTATIONS: &[Mutation] = &[
    Mutation {
        name: "fixed value: confidentiality",
        change: |d| resource(d, 0)["confidentiality"] = json!("N"),
        code: IssueCode::Value,
        expression: "Bundle.entry[0].resource.confidentiality",
    },
    Mutation {
        name: "fixed value: session status",
        change: |d| resource(d, 5)["status"] = json!("in-progress"),
        code: IssueCode::Value,
        expression: "Bundle.entry[5].resource.status",
    },
    Mutation {
        name: "security slice: the note label removed",
        change: |d| {
            resource(d, 0)["meta"]["security"].as_array_mut().unwrap().remove(0);
        },
        code: IssueCode::Required,
        expression: "Bundle.entry[0].resource.meta.security",
    },
    Mutation {
        name: "required binding: a diagnosis outside chapter F",
        change: |d| resource(d, 6)["code"]["coding"][0]["code"] = json!("J45"),
        code: IssueCode::CodeInvalid,
        expression: "Bundle.entry[6].resource.code",
    },
    Mutation {
        name: "required binding: the chapter itself is not a diagnosis",
        change: |d| resource(d, 6)["code"]["coding"][0]["code"] = json!("F00-F99"),
        code: IssueCode::CodeInvalid,
        expression: "Bundle.entry[6].resource.code",
    },
    Mutation {
        name: "required binding: an instrument outside the value set",
        change: |d| resource(d, 7)["code"]["coding"][0]["code"] = json!("2345-7"),
        code: IssueCode::CodeInvalid,
        expression: "Bundle.entry[7].resource.code",
    },
    Mutation {
        name: "required binding: the document type",
        change: |d| resource(d, 0)["type"]["coding"][0]["code"] = json!("11488-4"),
        code: IssueCode::CodeInvalid,
        expression: "Bundle.entry[0].resource.type",
    },
    Mutation {
        name: "nested slice: a modality code that does not exist",
        change: |d| resource(d, 5)["type"][0]["coding"][1]["code"] = json!("telepathic"),
        code: IssueCode::CodeInvalid,
        expression: "Bundle.entry[5].resource.type[0].coding[1]",
    },
    Mutation {
        name: "closed slicing: a third session type",
        change: |d| {
            resource(d, 5)["type"].as_array_mut().unwrap().push(json!({"text": "extra"}));
        },
        code: IssueCode::Structure,
        expression: "Bundle.entry[5].resource.type[2]",
    },
    Mutation {
        name: "identifier slice: the Terhikki number missing",
        change: |d| resource(d, 2)["identifier"][0]["system"] = json!("urn:oid:1.2.246.537.25"),
        code: IssueCode::Required,
        expression: "Bundle.entry[2].resource.identifier",
    },
    Mutation {
        name: "identifier slice: the service event OID without a value",
        change: |d| {
            resource(d, 4)["identifier"][0].as_object_mut().unwrap().remove("value");
        },
        code: IssueCode::Required,
        expression: "Bundle.entry[4].resource.identifier[0].value",
    },
    Mutation {
        name: "cardinality: a Composition without sections",
        change: |d| {
            resource(d, 0).as_object_mut().unwrap().remove("section");
        },
        code: IssueCode::Required,
        expression: "Bundle.entry[0].resource.section",
    },
    Mutation {
        name: "cardinality: two authors",
        change: |d| {
            let author = resource(d, 0)["author"][0].clone();
            resource(d, 0)["author"].as_array_mut().unwrap().push(author);
        },
        code: IssueCode::Structure,
        expression: "Bundle.entry[0].resource.author",
    },
    Mutation {
        name: "choice type: an assessment scored as text",
        change: |d| {
            let observation = resource(d, 7).as_object_mut().unwrap();
            observation.remove("valueInteger");
            observation.insert("valueString".into(), json!("fourteen"));
        },
        code: IssueCode::Value,
        expression: "Bundle.entry[7].resource.valueString",
    },
    Mutation {
        name: "reference target: the session part of a Patient",
        change: |d| {
            let patient = d["entry"][1]["fullUrl"].clone();
            resource(d, 5)["partOf"]["reference"] = patient;
        },
        code: IssueCode::Invalid,
        expression: "Bundle.entry[5].resource.partOf.reference",
    },
    Mutation {
        name: "entry slicing: a resource declaring no profile",
        change: |d| {
            resource(d, 7).as_object_mut().unwrap().remove("meta");
        },
        code: IssueCode::Structure,
        expression: "Bundle.entry[7]",
    },
    Mutation {
        name: "entry slicing: two service events",
        change: |d| {
            let mut second = d["entry"][4].clone();
            second["fullUrl"] = json!("urn:uuid:00000000-0000-4000-8000-0000000000ff");
            d["entry"].as_array_mut().unwrap().push(second);
        },
        code: IssueCode::Structure,
        expression: "Bundle.entry",
    },
    Mutation {
        name: "pattern: an assessment that is not a survey",
        change: |d| resource(d, 7)["category"][0]["coding"][0]["code"] = json!("laboratory"),
        code: IssueCode::Value,
        expression: "Bundle.entry[7].resource.category[0]",
    },
];

/// The issues of a refused document, or a panic if it was accepted.
pub fn refusal(name: &str, document: Value) -> Vec<(IssueCode, String)> {
    match parse_resource_value(ResourceType::Bundle, document) {
        Err(ProfileError::Rule(issues)) => {
            issues.into_iter().map(|i| (i.code, i.expression.unwrap_or_default())).collect()
        }
        other => panic!("{name}: not refused by a rule: {other:?}"),
    }
}

#[test]
fn every_mutation_is_refused_naming_the_element() {
    assert!(parse_resource_value(ResourceType::Bundle, example_document()).is_ok());
    for mutation in MUTATIONS {
        let mut document = example_document();
        (mutation.change)(&mut document);
        let issues = refusal(mutation.name, document);
        assert!(
            issues.iter().any(|(code, at)| *code == mutation.code && at == mutation.expression),
            "{}: expected {} at {}, got {issues:?}",
            mutation.name,
            mutation.code,
            mutation.expression
        );
    }
}

#[test]
fn the_shipped_artifacts_load_and_every_file_is_listed() {
    let loaded = Profiles::load(ARTIFACTS).unwrap();
    assert_eq!(loaded.structure_definitions().count(), 10);
    let folder = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles");
    for entry in std::fs::read_dir(folder).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            assert!(ARTIFACTS.iter().any(|(file, _)| *file == name), "{name} is shipped but not compiled in");
        }
    }
}

#[test]
fn the_loader_refuses_what_it_would_misread() {
    let with = |element: Value| {
        let definition = json!({"resourceType": "StructureDefinition", "url": "https://fhir.vaitio.fi/StructureDefinition/x",
            "type": "Patient", "differential": {"element": [element]}});
        Profiles::load(&[("x.json", &definition.to_string())])
    };
    assert!(with(json!({"id": "Patient.name", "path": "Patient.name", "min": 1})).is_ok());
    let constraint = with(json!({"id": "Patient.name", "path": "Patient.name", "constraint": [{"key": "x"}]}));
    assert!(constraint.unwrap_err().to_string().contains("constraint"));
    let unknown_set = with(json!({"id": "Patient.gender", "path": "Patient.gender",
        "binding": {"strength": "required", "valueSet": "https://example.org/none"}}));
    assert!(unknown_set.unwrap_err().to_string().contains("unknown value set"));
}

#[test]
fn icd10_subcategories_belong_to_their_category() {
    let contains = |code| profiles().value_set_contains(MENTAL_DISORDERS_VALUE_SET, Some(ICD10_SYSTEM), code);
    assert!(contains("F32"));
    assert!(contains("F32.1"));
    assert!(contains("F10.24"));
    assert!(!contains("F32.123"));
    assert!(!contains("F32.X"));
    assert!(!contains("F08"), "F08 is not a category of chapter V");
    assert!(!contains("F00-F99"));
    assert!(!contains("J45"));
    assert!(!profiles().value_set_contains(MENTAL_DISORDERS_VALUE_SET, Some("http://hl7.org/fhir/sid/icd-10"), "F32"));
}

#[test]
fn a_standalone_resource_is_held_to_the_profile_it_declares() {
    let patient = |profile: &str, system: &str| {
        json!({"resourceType": "Patient", "meta": {"profile": [profile]},
            "identifier": [{"system": system, "value": "131052-308T"}], "name": [{"family": "Virtanen"}]})
    };
    let declared = fhir_profiles::profiles::PATIENT_PROFILE;
    assert!(parse_resource_value(ResourceType::Patient, patient(declared, fhir_profiles::HETU_SYSTEM)).is_ok());
    let Err(ProfileError::Rule(issues)) =
        parse_resource_value(ResourceType::Patient, patient(declared, "urn:oid:1.2.246.537.25"))
    else {
        panic!("a vaitio-patient without a HETU was accepted")
    };
    assert_eq!(issues[0].expression.as_deref(), Some("Patient.identifier"));
    let unknown = "https://fhir.vaitio.fi/StructureDefinition/vaitio-nothing";
    let Err(ProfileError::Rule(issues)) =
        parse_resource_value(ResourceType::Patient, patient(unknown, fhir_profiles::HETU_SYSTEM))
    else {
        panic!("an unknown Vaitio profile was accepted")
    };
    assert_eq!(issues[0].code, IssueCode::NotSupported);
    assert_eq!(issues[0].expression.as_deref(), Some("Patient.meta.profile[0]"));
    // Profiles of others cannot be checked offline; the base rules still apply.
    let other = "https://hl7.fi/fhir/finnish-base-profiles/StructureDefinition/fi-base-patient";
    assert!(parse_resource_value(ResourceType::Patient, patient(other, "urn:oid:1.2.246.537.25")).is_ok());
}

/// A patient's privacy choice in the shape the consent crate reads: deny one organisation.
pub fn patient_consent() -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "dateTime": "2026-11-01T10:00:00+02:00",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": {"type": "deny", "actor": [{
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.87654321.10.1"}}
        }]}
    })
}

#[test]
fn a_consent_is_held_to_the_consent_profile_whether_or_not_it_declares_it() {
    parse_resource_value(ResourceType::Consent, patient_consent()).expect("the example Consent is valid");
    let refused = |change: fn(&mut Value)| {
        let mut consent = patient_consent();
        change(&mut consent);
        match parse_resource_value(ResourceType::Consent, consent) {
            Err(ProfileError::Rule(issues)) => issues.into_iter().filter_map(|i| i.expression).collect::<Vec<_>>(),
            other => panic!("accepted or refused otherwise: {other:?}"),
        }
    };
    assert_eq!(refused(|c| c["scope"]["coding"][0]["code"] = json!("treatment")), ["Consent.scope"]);
    assert_eq!(refused(|c| drop(c.as_object_mut().unwrap().remove("dateTime"))), ["Consent.dateTime"]);
    assert_eq!(refused(|c| drop(c.as_object_mut().unwrap().remove("provision"))), ["Consent.provision"]);
    assert_eq!(refused(|c| drop(c.as_object_mut().unwrap().remove("policyRule"))), ["Consent.policyRule"]);
}
