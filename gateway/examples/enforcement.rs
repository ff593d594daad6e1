//! What the enforcement point adds to a search that returns 100 documents: the time a search
//! spends in `Gate::release`, once for the 100 matched heads and once for their 100 current
//! versions, where every patient holds five Consents. Measured on a real SQLite store: the
//! consent generations are read with one query per release, and Consents are loaded, decrypted
//! and compiled on the first search (cold) and taken from the node's book afterwards (warm).
//!
//! `cargo run --release -p vaitio --example enforcement`

use std::time::{Duration, Instant};

use consent::{Principal, Professional, Purpose, Role};
use fhir_profiles::search::index_facts;
use fhir_profiles::{parse_resource_value, ResourceType};
use serde_json::{json, Value};
use store::audit::AuditSigner;
use store::crypto::SecretKey;
use store::db::{self, DatabaseUrl};
use store::index_keys::IndexKeys;
use store::kek::{KekCustody, KeyFiles};
use store::{Head, NewResource, VersionRow, Write, WriteKind};
use vaitio::enforce::Enforcement;

const ORG: &str = "1.2.246.10.12345678.10.1";
const OTHER_ORG: &str = "1.2.246.10.87654321.10.1";
const THERAPIST: &str = "10012345678";
const SERVICE_EVENT: &str = "1.2.246.10.12345678.10.1.77.1";
const SEARCHES: usize = 1000;

fn consent(patient_id: &str, day: u32, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient_id}")},
        "dateTime": format!("2026-11-{day:02}T10:00:00+02:00"),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    })
}

/// Five choices of the kinds patients make, two with validity periods.
fn five_consents(patient_id: &str) -> Vec<Value> {
    let identifier = |system: &str, value: &str| json!({"identifier": {"system": system, "value": value}});
    let ircp =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]});
    vec![
        consent(
            patient_id,
            1,
            json!({"type": "deny", "actor": [{"role": ircp, "reference": identifier("urn:ietf:rfc:3986", &format!("urn:oid:{OTHER_ORG}"))}]}),
        ),
        consent(
            patient_id,
            2,
            json!({"type": "deny", "actor": [{"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": "nurse"}]}, "reference": {"display": "any nurse"}}]}),
        ),
        consent(
            patient_id,
            3,
            json!({"type": "deny", "data": [{"meaning": "related", "reference": identifier("urn:ietf:rfc:3986", "urn:oid:1.2.246.10.1.99.9")}], "period": {"start": "2026-01-01", "end": "2030-12-31"}}),
        ),
        consent(
            patient_id,
            4,
            json!({"type": "permit", "actor": [{"role": ircp, "reference": identifier("urn:oid:1.2.246.537.26", "10055555555")}], "period": {"start": "2026-06-01"}}),
        ),
        consent(
            patient_id,
            5,
            json!({"type": "deny", "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]}),
        ),
    ]
}

fn professional(practitioner: &str, role: Role) -> Principal {
    Principal::Professional(Professional {
        practitioner: practitioner.into(),
        role,
        organisation: ORG.into(),
        purpose: Purpose::Treatment,
        reason: None,
    })
}

struct Figures {
    cold: Duration,
    warm: Vec<Duration>,
    released: usize,
}

fn measure(enforcement: &Enforcement, principal: &Principal, heads: &[Head], versions: &[VersionRow]) -> Figures {
    let search = |heads: Vec<Head>, versions: Vec<VersionRow>| {
        let started = Instant::now();
        let gate = enforcement.gate(principal);
        let released = gate.release(heads).expect("release heads").len();
        let released_versions = gate.release(versions).expect("release versions").len();
        assert_eq!(released, released_versions);
        (started.elapsed(), released)
    };
    let (cold, released) = search(heads.to_vec(), versions.to_vec());
    let inputs: Vec<(Vec<Head>, Vec<VersionRow>)> =
        (0..SEARCHES).map(|_| (heads.to_vec(), versions.to_vec())).collect();
    let warm = inputs.into_iter().map(|(heads, versions)| search(heads, versions).0).collect();
    Figures { cold, warm, released }
}

fn report(name: &str, principal: &str, mut figures: Figures) {
    figures.warm.sort();
    let micros = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = figures.warm.iter().map(|d| micros(*d)).sum::<f64>() / figures.warm.len() as f64;
    let p50 = micros(figures.warm[figures.warm.len() / 2]);
    let p99 = micros(figures.warm[figures.warm.len() * 99 / 100]);
    println!(
        "{name:<34} {principal:<10} released {:>3}/100  cold {:>8.0} µs  warm mean {mean:>6.0} µs  p50 {p50:>6.0} µs  p99 {p99:>6.0} µs",
        figures.released,
        micros(figures.cold)
    );
    println!(
        "{}",
        json!({"scenario": name, "principal": principal, "released": figures.released, "cold_us": micros(figures.cold).round(),
               "warm_mean_us": mean.round(), "warm_p50_us": p50.round(), "warm_p99_us": p99.round(), "searches": SEARCHES})
    );
}

fn main() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let url = DatabaseUrl::Sqlite(dir.path().join("enforcement.sqlite3"));
    let pool = db::pool(&url, 4).expect("the database");
    db::migrate(&mut pool.get().expect("a connection")).expect("migrations");
    let pseudonyms = store::crypto::Pseudonymizer::new(SecretKey::generate().expect("a key"));
    let signing_key = dir.path().join("audit-signing.pem");
    vaitio::audit::generate_signing_key_file(&signing_key).expect("an audit signing key");
    let signer = AuditSigner::from_file(&signing_key).expect("the audit signing key");
    let kek = KeyFiles::new(&dir.path().join("kek.hex"));
    kek.create(1).expect("a key-encryption key");
    let limits = store::Limits { db_wait: std::time::Duration::from_secs(2), disk_reserve: 0 };
    let (store, opener) =
        store::Store::new(pool, limits, Box::new(kek), IndexKeys::fixed(SecretKey::generate().expect("a key")), signer);
    store.prepare_keys().expect("the key-encryption key");
    let harvest = vaitio::Config::development(dir.path(), "127.0.0.1:0".parse().expect("an address")).harvest;
    let enforcement = Enforcement::new(store.clone(), opener, consent::Policy::default(), harvest);

    // 100 patients, each with five Consents stored (encrypted) like any patient's.
    let patients: Vec<(String, String)> = (0..100)
        .map(|n| {
            let id = format!("patient-{n}");
            (id.clone(), pseudonyms.patient_from_id(&id))
        })
        .collect();
    for (id, pseudonym) in &patients {
        let writes = five_consents(id)
            .into_iter()
            .enumerate()
            .map(|(n, json)| {
                let parsed = parse_resource_value(ResourceType::Consent, json).expect("a valid Consent");
                let facts = index_facts(ResourceType::Consent, &parsed.json);
                Write {
                    resource: NewResource {
                        resource_type: ResourceType::Consent,
                        json: parsed.json,
                        patient: Some(pseudonym.clone()),
                        security_labels: String::new(),
                        facts,
                        author_org: None,
                        author_practitioner: None,
                        service_event: None,
                    },
                    id: format!("{id}-consent-{n}"),
                    kind: WriteKind::Create,
                }
            })
            .collect();
        store.write_all(writes, Vec::new()).expect("Consents stored");
    }

    // What a search of 100 documents hands the gate: the heads, then their current versions.
    let rows = |patient_of: &dyn Fn(usize) -> String| -> (Vec<Head>, Vec<VersionRow>) {
        let heads: Vec<Head> = (0..100)
            .map(|n| Head {
                resource_type: "Bundle".into(),
                id: format!("document-{n}"),
                version: 1,
                patient: Some(patient_of(n)),
                security_labels: "PSYTHPN R".into(),
                author_org: Some(ORG.into()),
                author_practitioner: Some(THERAPIST.into()),
                last_updated: 0,
                service_event: Some(SERVICE_EVENT.into()),
            })
            .collect();
        let versions = heads
            .iter()
            .map(|head| VersionRow {
                resource_type: head.resource_type.clone(),
                id: head.id.clone(),
                version: 1,
                patient: head.patient.clone(),
                key_scope: head.patient.clone().unwrap_or_default(),
                security_labels: head.security_labels.clone(),
                author_org: head.author_org.clone(),
                author_practitioner: head.author_practitioner.clone(),
                last_updated: 0,
                method: "POST".into(),
                body: Vec::new(),
                service_event: head.service_event.clone(),
            })
            .collect();
        (heads, versions)
    };
    let author = professional(THERAPIST, Role::Psychotherapist);
    let gp = professional("10088888888", Role::Physician);
    println!("a search returning 100 documents; each patient has 5 Consents; {SEARCHES} warm searches each");
    for (name, patient_of) in [
        ("one patient's 100 documents", &(|_: usize| patients[0].1.clone()) as &dyn Fn(usize) -> String),
        ("100 patients, a document each", &(|n: usize| patients[n].1.clone()) as &dyn Fn(usize) -> String),
    ] {
        let (heads, versions) = rows(patient_of);
        for (who, principal) in [("author", &author), ("GP", &gp)] {
            // The node's book is shared: the author's first search loads and compiles the
            // Consents (cold); the GP's first search finds them compiled.
            report(name, who, measure(&enforcement, principal, &heads, &versions));
        }
    }
}
