//! The pure part of a clinic submission, stage by stage, on the example-sized record:
//! `cargo run --release -p fhir-profiles --example pipeline [N]`. Prints microseconds per
//! document for each stage, so a change to parsing, translation or validation can be measured
//! without a gateway (the ingest benchmark, `vaitio-bench --scenario ingest`, measures the whole).

use std::time::Instant;

use fhir_profiles::record::{parse_record, RecordLimits};
use fhir_profiles::translate::{translate, DocumentIds};
use fhir_profiles::{parse_translated, ResourceType};

// The gateway's allocator: allocation is a large part of these stages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const RECORD: &str = include_str!("../tests/golden/01-example-markup-note.record.json");

fn main() {
    let n: u32 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let limits = RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: 65_536 };
    let bytes = RECORD.as_bytes();
    let mut stages =
        [("parse_record", 0u128), ("translate", 0), ("validate Bundle", 0), ("validate Patient", 0), ("drop", 0)];
    for i in 0..n {
        let t0 = Instant::now();
        let checked = parse_record(bytes, &limits).expect("the example record is valid");
        let t1 = Instant::now();
        let ids = DocumentIds::derive(&checked, |part| {
            format!("{i:08}-0000-4000-8000-{:012x}", fnv(part) & 0xffff_ffff_ffff)
        });
        let document = translate(&checked, &ids, "2026-03-02T12:00:00.000Z");
        let patient = document["entry"]
            .as_array()
            .and_then(|entries| entries.iter().find(|e| e["resource"]["resourceType"] == "Patient"))
            .map(|e| e["resource"].clone())
            .expect("a Patient entry");
        let t2 = Instant::now();
        let bundle = parse_translated(ResourceType::Bundle, document).expect("the document validates");
        let t3 = Instant::now();
        let patient = parse_translated(ResourceType::Patient, patient).expect("the Patient validates");
        let t4 = Instant::now();
        drop((bundle, patient, checked));
        let t5 = Instant::now();
        for (stage, (from, to)) in stages.iter_mut().zip([(t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)]) {
            stage.1 += (to - from).as_nanos();
        }
    }
    let total: u128 = stages.iter().map(|s| s.1).sum();
    for (stage, nanos) in stages {
        println!("{stage:<18} {:8.1} µs/document", nanos as f64 / n as f64 / 1000.0);
    }
    println!("{:<18} {:8.1} µs/document ({n} documents)", "total", total as f64 / n as f64 / 1000.0);
}

/// A stand-in for the gateway's keyed uuids: distinct per part, no key needed.
fn fnv(part: &str) -> u64 {
    part.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
