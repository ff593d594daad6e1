//! The Consent reader: any JSON a patient sends as a Consent is either read into provisions the
//! policy compiles, or refused. Duplicate members are refused before it (strict JSON).
#![no_main]

use consent::{CompiledConsents, PatientConsent, Timestamp};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = fhir_profiles::strict::read(data) else { return };
    if let Ok(consent) = PatientConsent::from_fhir(&value) {
        let _ = CompiledConsents::compile(&[consent], Timestamp::from_unix_seconds(1_796_000_000));
    }
});
