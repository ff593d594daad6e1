//! Vaitio's national document model: what a FHIR R4 resource submitted to the gateway must look
//! like, the identifiers it carries, and the search index facts extracted from it.
//!
//! Pure: no I/O. The gateway hands bytes in and gets typed, checked facts back.
//!
//! The R4 model (fhir-model's R4B types, through the `r4-model` crate; for every resource type
//! listed in [`ResourceType`] the R4B and R4 (4.0.1) structures are the same) serves as the R4
//! parser. It drops elements it does not know, so [`parse_resource`] compares the model's view
//! with the input and refuses anything it would have dropped: the original bytes are the record
//! of truth and must not hold content the model never checked.

pub mod codes;
mod error;
mod hetu;
mod icd10;
mod json;
pub mod listing;
mod parse;
pub mod profiles;
pub mod query;
pub mod record;
mod resource_type;
pub mod search;
pub mod strict;
pub mod translate;

pub use error::{printable, printable_name, Issue, IssueCode, ProfileError};
pub use hetu::{Hetu, HETU_SYSTEM};
pub use icd10::icd10_text;
pub use parse::{
    document_custodian, is_valid_id, parse_resource, parse_resource_value, parse_translated, stored_patient_id,
    ParsedResource, PatientLink, SecurityCoding, ServiceEventLink,
};
pub use resource_type::ResourceType;

/// The FHIR version the gateway speaks on the wire.
pub const FHIR_VERSION: &str = "4.0.1";
