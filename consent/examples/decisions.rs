//! Micro-benchmark of the policy decision point: decisions per second on one core for a patient
//! with five Consents, plus the one-off cost of reading and compiling them.
//!
//! `cargo run -p consent --release --example decisions [-- <millions of decisions>]`

use std::hint::black_box;
use std::time::Instant;

use consent::{
    decide_with, CompiledConsents, PatientConsent, Policy, Principal, Professional, Purpose, ResourceMeta, Role,
    SecurityLabel, Timestamp, ACT_REASON, CONSENT_SCOPE, TERHIKKI, URI,
};
use serde_json::{json, Value};

const ORG: &str = "1.2.246.10.12345678.10.1";
const OTHER_ORG: &str = "1.2.246.10.87654321.10.1";
const THIRD_ORG: &str = "1.2.246.10.11223344.10.1";
const DENIED_ORG: &str = "1.2.246.10.99887766.10.1";
const THERAPY: &str = "1.2.246.10.12345678.10.1.99.1";
const OLD_THERAPY: &str = "1.2.246.10.12345678.10.1.99.2";
const AUTHOR: &str = "10012345678";
const PERMITTED: &str = "10066666666";

fn consent(id: &str, date: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "id": id, "status": "active", "dateTime": date,
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "provision": provision,
    })
}

fn actor(system: &str, value: &str) -> Value {
    json!({"role": {"coding": [{"code": "IRCP"}]}, "reference": {"identifier": {"system": system, "value": value}}})
}

/// Five Consents, one of each kind of choice.
fn five_consents() -> Vec<Value> {
    vec![
        consent(
            "deny-org",
            "2023-01-05",
            json!({"type": "permit", "provision": [
            {"type": "deny", "actor": [actor(URI, &format!("urn:oid:{DENIED_ORG}"))]}]}),
        ),
        consent(
            "deny-event",
            "2023-03-01",
            json!({"type": "deny", "data": [
            {"meaning": "related", "reference": {"identifier": {"system": URI, "value": format!("urn:oid:{OLD_THERAPY}")}}}]}),
        ),
        consent(
            "deny-role",
            "2023-06-01",
            json!({"type": "deny", "actor": [
            {"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": "nurse"}]}}],
            "period": {"start": "2023-06-01", "end": "2026-12-31"}}),
        ),
        consent(
            "no-emergency",
            "2024-01-10",
            json!({"type": "deny", "actor": [actor(URI, &format!("urn:oid:{THIRD_ORG}"))],
            "purpose": [{"system": ACT_REASON, "code": "ETREAT"}]}),
        ),
        consent("permit", "2024-02-01", json!({"type": "permit", "actor": [actor(TERHIKKI, PERMITTED)]})),
    ]
}

fn professional(role: Role, organisation: &str, practitioner: &str, purpose: Purpose) -> Principal {
    Principal::Professional(Professional {
        practitioner: practitioner.into(),
        role,
        organisation: organisation.into(),
        purpose,
        reason: (purpose != Purpose::Treatment).then(|| "patient unconscious".into()),
    })
}

fn main() {
    let millions: u64 = std::env::args().nth(1).and_then(|n| n.parse().ok()).unwrap_or(20);
    let decisions = millions * 1_000_000;
    let now = Timestamp::parse("2024-06-01T12:00:00+03:00").expect("an instant");
    let policy = Policy::default();

    let json = five_consents();
    let rounds = 20_000;
    let started = Instant::now();
    let mut compiled = CompiledConsents::default();
    for _ in 0..rounds {
        let read: Vec<PatientConsent> =
            black_box(&json).iter().map(|c| PatientConsent::from_fhir(c).expect("a supported Consent")).collect();
        compiled = CompiledConsents::compile(black_box(&read), now);
    }
    let per_patient = started.elapsed() / rounds;
    println!("read and compile five Consents: {:.1} µs per patient", per_patient.as_secs_f64() * 1e6);

    let principals = [
        professional(Role::Physician, OTHER_ORG, "10088888888", Purpose::Treatment),
        professional(Role::Psychiatrist, ORG, PERMITTED, Purpose::Treatment),
        professional(Role::Psychotherapist, ORG, AUTHOR, Purpose::Treatment),
        professional(Role::Physician, THIRD_ORG, "10077777777", Purpose::EmergencyTreatment),
        professional(Role::Nurse, OTHER_ORG, "10055555555", Purpose::BreakTheGlass),
        Principal::Patient { pseudonym: "p1".into(), earlier: Vec::new() },
    ];
    let note = [SecurityLabel::PsychotherapyNote, SecurityLabel::Restricted];
    let mental_health = [SecurityLabel::MentalHealth];
    let resource = |labels, service_event| ResourceMeta {
        resource_type: "DocumentReference",
        patient: Some("p1"),
        security_labels: labels,
        author_organisation: Some(ORG),
        author_practitioner: Some(AUTHOR),
        service_event: Some(service_event),
    };
    let resources = [resource(&note, THERAPY), resource(&mental_health, THERAPY), resource(&[], OLD_THERAPY)];

    // Mixed: every principal against every resource, in turn.
    let (rate, permits) =
        run(decisions, &compiled, &policy, |i| (&principals[i % principals.len()], &resources[i % resources.len()]));
    println!("mixed principals and resources: {:.2} M decisions/s ({permits} of {decisions} permitted)", rate / 1e6);

    // Worst case: a principal whom no deny matches, so every provision is scanned, on a note.
    let (rate, _) = run(decisions, &compiled, &policy, |_| (&principals[0], &resources[0]));
    println!("worst case (all provisions scanned): {:.2} M decisions/s", rate / 1e6);
}

/// Decisions per second over `n` decisions on this thread, and how many were permits.
fn run<'a>(
    n: u64,
    consents: &CompiledConsents,
    policy: &Policy,
    pick: impl Fn(usize) -> (&'a Principal, &'a ResourceMeta<'a>),
) -> (f64, u64) {
    let mut permits = 0u64;
    let started = Instant::now();
    for i in 0..n {
        let (principal, meta) = pick(black_box(i as usize));
        let decision = decide_with(black_box(principal), black_box(meta), black_box(consents), black_box(policy));
        permits += u64::from(black_box(decision).is_permit());
    }
    (n as f64 / started.elapsed().as_secs_f64(), permits)
}
