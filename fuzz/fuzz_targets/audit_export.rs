//! The audit export verifier, the auditor's entry point: any text is verified or refused with
//! the line at fault, never a panic, whatever key it carries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = audit_log::verify_export(text.lines(), None);
});
