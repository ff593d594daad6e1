//! The FHIR resource parser and the profile validator: the first byte chooses the resource type
//! a `POST /{type}` names, the rest is the body. Whatever parses must also validate without a
//! panic, and what the strict reader accepts is valid for the profile validator to walk.
#![no_main]

use fhir_profiles::profiles::profiles;
use fhir_profiles::{parse_resource, strict, ResourceType};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let resource_type = ResourceType::ALL[selector as usize % ResourceType::ALL.len()];
    let _ = parse_resource(resource_type, body);
    // The validator alone, on any JSON, as `$validate` runs it.
    if let Ok(value) = strict::read(body) {
        let _ = profiles().validate(&value);
    }
});
