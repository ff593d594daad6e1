//! The search-parameter parser: the first byte chooses the resource type, the rest is a query
//! string (`name=value&…`, as actix hands it over decoded). Anything is read or refused, and a
//! refusal never echoes a value.
#![no_main]

use fhir_profiles::query::SearchQuery;
use fhir_profiles::ResourceType;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, query)) = data.split_first() else { return };
    let resource_type = ResourceType::ALL[selector as usize % ResourceType::ALL.len()];
    let Ok(query) = std::str::from_utf8(query) else { return };
    let params: Vec<(String, String)> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_owned(), value.to_owned()),
            None => (pair.to_owned(), String::new()),
        })
        .collect();
    match SearchQuery::parse(resource_type, &params) {
        Ok(parsed) => {
            let _ = (parsed.named(), parsed.hetus());
        }
        Err(error) => {
            let message = error.to_string();
            for (name, value) in &params {
                // What reads as data (four digits or more: a HETU, a date, an id) and is long enough
                // not to be in a message by chance. Words alone are left out: the fuzzer learns
                // the messages' own words from the comparisons it sees.
                // A name that reads as one (letters, at most two digits at its end) may be named.
                let name_shown = fhir_profiles::printable_name(name) == *name;
                for sent in [name, value] {
                    if (sent != name || !name_shown)
                        && sent.len() >= 8
                        && sent.bytes().filter(u8::is_ascii_digit).count() >= 4
                    {
                        assert!(!message.contains(sent.as_str()), "a refusal echoes what was sent: {message}");
                    }
                }
            }
        }
    }
});
