//! The canonical URLs of the national profiles and the code systems the documents use: the names
//! that the profiles (`profiles.rs`), the record contract (`record.rs`) and the translation
//! (`translate.rs`) share. A leaf: it imports nothing else of the crate, so those three depend on
//! it rather than on each other. Where each code comes from is in `CODES.md`.

/// Where Vaitio's canonical URLs start.
pub const CANONICAL_BASE: &str = "https://fhir.vaitio.fi/";

/// The canonical URL of a Vaitio StructureDefinition.
macro_rules! structure_definition {
    ($id:literal) => {
        concat!("https://fhir.vaitio.fi/StructureDefinition/", $id)
    };
}

pub const DOCUMENT_PROFILE: &str = structure_definition!("vaitio-psychotherapy-document");
pub const COMPOSITION_PROFILE: &str = structure_definition!("vaitio-psychotherapy-composition");
pub const PATIENT_PROFILE: &str = structure_definition!("vaitio-patient");
pub const PRACTITIONER_PROFILE: &str = structure_definition!("vaitio-practitioner");
pub const ORGANIZATION_PROFILE: &str = structure_definition!("vaitio-organization");
pub const SERVICE_EVENT_PROFILE: &str = structure_definition!("vaitio-service-event");
pub const SESSION_PROFILE: &str = structure_definition!("vaitio-psychotherapy-session");
pub const DIAGNOSIS_PROFILE: &str = structure_definition!("vaitio-diagnosis");
pub const ASSESSMENT_PROFILE: &str = structure_definition!("vaitio-assessment");
pub const CONSENT_PROFILE: &str = structure_definition!("vaitio-consent");

pub const SESSION_MODALITY_SYSTEM: &str = "https://fhir.vaitio.fi/CodeSystem/session-modality";
pub const SESSION_SETTING_SYSTEM: &str = "https://fhir.vaitio.fi/CodeSystem/session-setting";
/// The diagnoses a psychotherapy document may carry: ICD-10 chapter V (F00-F99).
pub const MENTAL_DISORDERS_VALUE_SET: &str = "https://fhir.vaitio.fi/ValueSet/vaitio-icd10-mental-disorders";

/// Terhikki, Valvira's register of health care professionals: a practitioner's identifier.
pub const TERHIKKI_SYSTEM: &str = "urn:oid:1.2.246.537.26";
/// THL's ICD-10 classification with its version, as HL7 Finland's examples write it.
pub const ICD10_SYSTEM: &str = "urn:oid:1.2.246.537.6.1.1999";
pub const LOINC: &str = "http://loinc.org";
pub const SNOMED: &str = "http://snomed.info/sct";
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_profile_url_is_under_the_canonical_base() {
        for url in [
            DOCUMENT_PROFILE,
            COMPOSITION_PROFILE,
            PATIENT_PROFILE,
            PRACTITIONER_PROFILE,
            ORGANIZATION_PROFILE,
            SERVICE_EVENT_PROFILE,
            SESSION_PROFILE,
            DIAGNOSIS_PROFILE,
            ASSESSMENT_PROFILE,
            CONSENT_PROFILE,
            SESSION_MODALITY_SYSTEM,
            SESSION_SETTING_SYSTEM,
            MENTAL_DISORDERS_VALUE_SET,
        ] {
            assert!(url.starts_with(CANONICAL_BASE), "{url}");
        }
    }
}
