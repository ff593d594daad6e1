//! The text of an ICD-10 chapter V (F00-F99) code for people: the display of the code, or of its
//! category for a subcategory (`F32.1` reads as `F32`), from the shipped CodeSystem.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde_json::Value;

const CODE_SYSTEM: &str = include_str!("../profiles/CodeSystem-icd10-fi-chapter-f.json");

fn displays() -> &'static HashMap<String, String> {
    static DISPLAYS: OnceLock<HashMap<String, String>> = OnceLock::new();
    DISPLAYS.get_or_init(|| {
        fn walk(concepts: &[Value], out: &mut HashMap<String, String>) {
            for concept in concepts {
                if let (Some(code), Some(display)) = (concept["code"].as_str(), concept["display"].as_str()) {
                    out.insert(code.to_owned(), display.to_owned());
                }
                walk(concept["concept"].as_array().map_or(&[], Vec::as_slice), out);
            }
        }
        let mut out = HashMap::new();
        // The file is compiled in and read by the profiles' tests too: it always parses.
        if let Ok(system) = serde_json::from_str::<Value>(CODE_SYSTEM) {
            walk(system["concept"].as_array().map_or(&[], Vec::as_slice), &mut out);
        }
        out
    })
}

/// The display text of `code`, or of its category.
pub fn icd10_text(code: &str) -> Option<&'static str> {
    let displays = displays();
    displays
        .get(code)
        .or_else(|| code.split_once('.').and_then(|(category, _)| displays.get(category)))
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_subcategories_have_text() {
        assert_eq!(icd10_text("F32"), Some("Depressive episode"));
        assert_eq!(icd10_text("F32.1"), Some("Depressive episode"));
        assert_eq!(icd10_text("X99"), None);
    }
}
