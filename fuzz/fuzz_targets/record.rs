//! The clinic's record contract (`POST /psychotherapy-records`): any bytes are either a checked
//! record or a refusal, and a refusal echoes no submitted value (a HETU, a name, note text).
#![no_main]

use chrono::{FixedOffset, TimeZone};
use fhir_profiles::record::{parse_record, RecordLimits};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Every string in `value` that reads as data (a HETU, a date, an id: it holds four digits or
/// more) and is long enough that finding it in a message cannot be chance. (Words alone are
/// left out: the fuzzer learns the messages' own words from the comparisons it sees.)
fn long_strings(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::String(text) if text.chars().count() >= 8 && text.bytes().filter(u8::is_ascii_digit).count() >= 4 => {
            out.push(text.clone())
        }
        Value::Array(items) => items.iter().for_each(|item| long_strings(item, out)),
        Value::Object(members) => members.values().for_each(|member| long_strings(member, out)),
        _ => {}
    }
}

fuzz_target!(|data: &[u8]| {
    let now = FixedOffset::east_opt(2 * 3600).unwrap().with_ymd_and_hms(2026, 12, 1, 12, 0, 0).unwrap();
    let limits = RecordLimits { now, max_note_bytes: 65_536 };
    let Err(error) = parse_record(data, &limits) else { return };
    let message = error.to_string();
    let mut sent = Vec::new();
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        long_strings(&value, &mut sent);
    }
    for value in sent {
        // The contract's own schema id is named by the message that asks for it.
        if !"vaitio.psychotherapy-record/v1".contains(value.as_str()) {
            assert!(!message.contains(&value), "a refusal echoes a submitted value: {message}");
        }
    }
});
