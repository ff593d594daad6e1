//! The R4 model's view of a JSON resource: read into fhir-model's types and written back.
//!
//! A crate of its own for the build's sake, not the design's: fhir-model is tens of thousands
//! of generated serde types, and they are compiled where they are instantiated. Here that is
//! one function, built at a low optimisation level (the workspace's release profile), so that
//! `fhir-profiles`, which runs on every submission, can be fully optimised without spending
//! the minutes that optimising the model costs.
//!
//! fhir-model offers R4B rather than R4; for the resource types the gateway serves, the R4B and
//! R4 (4.0.1) structures are the same.

use fhir_model::r4b::resources::Resource;
use serde::Deserialize;
use serde_json::Value;

/// Why the model could not read or write a resource back.
#[derive(Debug)]
pub enum ModelError {
    /// The resource does not fit the model (serde's message).
    Read(serde_json::Error),
    /// The model's value cannot be written back as JSON.
    Write(serde_json::Error),
}

/// `value` read into the R4 model and written back: what the model kept. Anything in `value`
/// that is missing from the result is an element the model does not know.
pub fn round_trip(value: &Value) -> Result<Value, ModelError> {
    // Deserialising from a borrowed Value: no copy of the document.
    let model = Resource::deserialize(value).map_err(ModelError::Read)?;
    serde_json::to_value(&model).map_err(ModelError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keeps_what_r4_has_and_drops_what_it_does_not() {
        let patient = json!({"resourceType": "Patient", "gender": "female", "birthDate": "1952-10-13"});
        assert_eq!(round_trip(&patient).expect("a valid Patient"), patient);
        let invented = json!({"resourceType": "Patient", "gender": "female", "favouriteColour": "blue"});
        let kept = round_trip(&invented).expect("unknown elements are dropped, not refused");
        assert!(kept.get("favouriteColour").is_none());
    }

    #[test]
    fn refuses_what_does_not_fit() {
        let wrong = json!({"resourceType": "Patient", "gender": 42});
        assert!(matches!(round_trip(&wrong), Err(ModelError::Read(_))));
    }
}
