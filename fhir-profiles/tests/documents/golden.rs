//! Golden documents: each record in `tests/golden/*.record.json` must become exactly the document
//! next to it. A change to the translation shows up here as a diff a reviewer reads.
//! `VAITIO_BLESS=1 cargo test -p fhir-profiles` rewrites the documents after a deliberate change.

use std::path::PathBuf;

use fhir_profiles::record::parse_record;
use fhir_profiles::translate::translate;
use fhir_profiles::{parse_resource_value, ResourceType};

use crate::translation::{ids, limits};

#[test]
fn records_become_exactly_their_golden_documents() {
    let folder = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden"));
    let bless = std::env::var_os("VAITIO_BLESS").is_some();
    let mut records: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(".record.json"))
        .collect();
    records.sort();
    assert!(records.len() >= 4, "the golden records are missing");
    for record_path in records {
        let record = std::fs::read(&record_path).unwrap();
        let checked = parse_record(&record, &limits()).unwrap_or_else(|e| panic!("{}: {e}", record_path.display()));
        let document = translate(&checked, &ids(&checked), "2026-11-28T12:00:00.000Z");
        // Every golden document is one the validator accepts.
        parse_resource_value(ResourceType::Bundle, document.clone())
            .unwrap_or_else(|e| panic!("{}: {:?}", record_path.display(), e.issues()));
        let golden_path = PathBuf::from(record_path.to_string_lossy().replace(".record.json", ".document.json"));
        if bless {
            std::fs::write(&golden_path, serde_json::to_string_pretty(&document).unwrap() + "\n").unwrap();
            continue;
        }
        // Compared as text: member order is part of what other systems see (and Value's
        // equality ignores it).
        let golden =
            std::fs::read_to_string(&golden_path).unwrap_or_else(|_| panic!("{} is missing", golden_path.display()));
        let translated = serde_json::to_string_pretty(&document).unwrap() + "\n";
        assert!(golden == translated, "{} differs from its golden document:\n{translated}", record_path.display());
    }
}
