//! Benchmark of `audit verify`: one million synthetic BALP events, a signed checkpoint every
//! 1,000 entries, verified on one core; then the same log as an auditor's NDJSON export.
//!
//! `cargo run -j1 --release -p audit-log --example verify [-- <entries>]`
//!
//! Prints entries/s as text and as one JSON line.

use std::hint::black_box;
use std::time::Instant;

use audit_log::{
    verify, verify_export, Action, Agent, AuditEvent, ConsentDecision, Decision, ExportLine, LogHead, Outcome,
    PurposeOfUse, ResourceRef, Sha256Hash, SigningKey, StoredEntry, UnixMillis, Who,
};
use openssl::pkey::PKey;

const ORIGIN: &str = "fhir.clinic.example/audit";
const CHECKPOINT_EVERY: u64 = 1_000;

/// The log as a database would return it, kept in one buffer so that a million rows cost their
/// bytes and little more.
struct Rows {
    events: Vec<u8>,
    ends: Vec<usize>,
    hashes: Vec<(u64, Sha256Hash, Sha256Hash)>,
}

impl Rows {
    fn entries(&self) -> impl Iterator<Item = StoredEntry<'_>> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts.zip(&self.ends).zip(&self.hashes).map(|((start, &end), &(seq, leaf, prev))| StoredEntry {
            seq,
            event: &self.events[start..end],
            leaf,
            prev,
        })
    }
}

fn main() {
    let size: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let key = SigningKey::from_pkey(ORIGIN, PKey::generate_ed25519().expect("a key")).expect("an Ed25519 key");

    let started = Instant::now();
    let mut head = LogHead::new();
    let mut rows = Rows { events: Vec::new(), ends: Vec::new(), hashes: Vec::new() };
    let mut checkpoints = Vec::new();
    for n in 0..size {
        let event = event(n).canonical_bytes();
        let entry = head.append(&event);
        rows.hashes.push((entry.seq, entry.leaf, entry.prev));
        rows.events.extend_from_slice(&event);
        rows.ends.push(rows.events.len());
        if head.size().is_multiple_of(CHECKPOINT_EVERY) {
            let checkpoint = head.checkpoint(ORIGIN, time(n)).expect("a checkpoint");
            checkpoints.push(key.sign(checkpoint).expect("a signature"));
        }
    }
    let mean_bytes = rows.events.len() as f64 / size.max(1) as f64;
    println!(
        "built {size} events (mean {mean_bytes:.0} bytes) and {} checkpoints in {:.1} s",
        checkpoints.len(),
        started.elapsed().as_secs_f64()
    );

    let started = Instant::now();
    let verified = verify(black_box(rows.entries()), &checkpoints, key.verifying_key()).expect("an untampered log");
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(verified.entries, size);
    let rate = size as f64 / seconds;
    println!("verify: {size} entries, {} checkpoints in {seconds:.3} s: {rate:.0} entries/s", verified.checkpoints);

    let mut export = Vec::with_capacity(rows.events.len() + rows.ends.len() * 200);
    ExportLine::Key(key.verifying_key().clone()).write(&mut export).expect("a key line");
    checkpoints.iter().for_each(|c| ExportLine::Checkpoint(c.clone()).write(&mut export).expect("a checkpoint line"));
    rows.entries().for_each(|entry| ExportLine::Entry(entry).write(&mut export).expect("an entry line"));
    let export = String::from_utf8(export).expect("UTF-8");
    let started = Instant::now();
    let exported = verify_export(black_box(export.lines()), Some(key.verifying_key())).expect("an untampered export");
    let export_seconds = started.elapsed().as_secs_f64();
    assert_eq!(exported, verified);
    let export_rate = size as f64 / export_seconds;
    println!(
        "verify_export: {:.0} MB of NDJSON in {export_seconds:.3} s: {export_rate:.0} entries/s",
        export.len() as f64 / 1e6
    );

    println!(
        "{}",
        serde_json::json!({
            "benchmark": "audit-log verify",
            "entries": size,
            "checkpoints": verified.checkpoints,
            "mean_event_bytes": mean_bytes.round(),
            "verify_seconds": seconds,
            "entries_per_second": rate.round(),
            "export_verify_seconds": export_seconds,
            "export_entries_per_second": export_rate.round(),
        })
    );
}

fn time(n: u64) -> UnixMillis {
    UnixMillis::new(1_714_555_800_000 + n * 250).expect("a time in range")
}

/// The `n`th synthetic event: reads mostly, with searches, consent decisions, writes and the
/// occasional break-the-glass; practitioners, patients and auditors.
fn event(n: u64) -> AuditEvent {
    let actions = [
        Action::Read,
        Action::Read,
        Action::Search,
        Action::ConsentDecision,
        Action::Vread,
        Action::Create,
        Action::History,
        Action::Update,
    ];
    let action = actions[(n % actions.len() as u64) as usize];
    let organisation = format!("1.2.246.10.{}.10.{}", 10_000_000 + n % 977, 1 + n % 3);
    let who = match n % 20 {
        0..=15 => Who::Practitioner {
            terhikki: format!("100{:08}", n % 40_000),
            role: ["psychotherapist", "psychologist", "psychiatrist", "physician", "nurse"][(n % 5) as usize].into(),
            organisation,
        },
        16..=18 => Who::Patient { pseudonym: pseudonym(n) },
        _ => Who::Auditor { subject: format!("auditor-{}", n % 17), organisation },
    };
    let emergency = matches!(who, Who::Practitioner { .. }) && n.is_multiple_of(500);
    let purpose = match &who {
        Who::Practitioner { .. } if emergency => PurposeOfUse::BreakTheGlass,
        Who::Practitioner { .. } => PurposeOfUse::Treatment,
        Who::Patient { .. } => PurposeOfUse::PatientRequested,
        _ => PurposeOfUse::Compliance,
    };
    // Organisations connect with a client certificate; patients and auditors come through
    // their own front ends.
    let client_certificate = matches!(who, Who::Practitioner { .. }).then(|| pseudonym(n % 977)[..43].to_owned());
    let search = action == Action::Search;
    AuditEvent {
        action: if emergency { Action::BreakTheGlass } else { action },
        outcome: if n.is_multiple_of(17) { Outcome::MinorFailure } else { Outcome::Success },
        recorded: time(n),
        agent: Agent {
            who,
            client_certificate,
            address: Some(format!("10.{}.{}.{}", n % 250, (n / 250) % 250, 1 + n % 199)),
            purpose: Some(purpose),
            reason: emergency.then(|| "patient unconscious on arrival, history needed".into()),
        },
        observer: "fhir.clinic.example/gateway-1".into(),
        resources: if search {
            Vec::new()
        } else {
            vec![ResourceRef {
                resource_type: ["DocumentReference", "Composition", "Encounter"][(n % 3) as usize].into(),
                id: format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                version: Some((1 + n % 4).to_string()),
            }]
        },
        patient: Some(pseudonym(n / 7)),
        query: search.then(|| "DocumentReference?patient&category&_lastUpdated&_count".into()),
        consent: (action == Action::ConsentDecision).then(|| ConsentDecision {
            decision: if n.is_multiple_of(3) { Decision::Deny } else { Decision::Permit },
            rule: if n.is_multiple_of(3) { "PatientDenied".into() } else { "Treatment".into() },
            consent_id: n.is_multiple_of(3).then(|| format!("{:016x}", n % 1_009)),
            provision: n.is_multiple_of(3).then(|| "Consent.provision.provision[0]".into()),
        }),
        count: None,
    }
}

/// A stand-in for the gateway's HMAC pseudonyms: 64 hexadecimal digits.
fn pseudonym(n: u64) -> String {
    audit_log::leaf_hash(&n.to_be_bytes()).to_hex()
}
