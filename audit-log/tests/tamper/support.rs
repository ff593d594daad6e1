//! A signed log to tamper with: synthetic BALP events, appended and checkpointed as the gateway
//! would, kept as the rows a database would hold.

use std::sync::OnceLock;

use audit_log::{
    verify, Action, Agent, AuditEvent, ConsentDecision, Decision, LogHead, Outcome, Problem, PurposeOfUse, ResourceRef,
    Sha256Hash, SignedCheckpoint, SigningKey, StoredEntry, UnixMillis, Verified, Who,
};
use openssl::pkey::PKey;

pub const ORIGIN: &str = "fhir.clinic.example/audit";
/// The tamper tests' log: `SIZE` entries, a checkpoint after every `EVERY`, the last one
/// covering every entry.
pub const SIZE: u64 = 300;
pub const EVERY: u64 = 25;
pub const CHECKPOINTS: usize = (SIZE / EVERY) as usize;

/// One stored row, owned, as a database returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub seq: u64,
    pub event: Vec<u8>,
    pub leaf: Sha256Hash,
    pub prev: Sha256Hash,
}

impl Row {
    pub fn stored(&self) -> StoredEntry<'_> {
        StoredEntry { seq: self.seq, event: &self.event, leaf: self.leaf, prev: self.prev }
    }
}

#[derive(Clone)]
pub struct TestLog {
    pub rows: Vec<Row>,
    pub checkpoints: Vec<SignedCheckpoint>,
}

impl TestLog {
    /// `size` entries with a checkpoint signed after every `every` of them.
    pub fn build(size: u64, every: u64) -> Self {
        let mut head = LogHead::new();
        let mut rows = Vec::new();
        let mut checkpoints = Vec::new();
        for n in 0..size {
            let event = event(n).canonical_bytes();
            let entry = head.append(&event);
            rows.push(Row { seq: entry.seq, event: entry.event.to_vec(), leaf: entry.leaf, prev: entry.prev });
            if head.size().is_multiple_of(every) {
                let checkpoint = head.checkpoint(ORIGIN, time(n)).unwrap();
                checkpoints.push(key().sign(checkpoint).unwrap());
            }
        }
        TestLog { rows, checkpoints }
    }

    pub fn verify(&self) -> Result<Verified, Problem> {
        verify(self.rows.iter().map(Row::stored), &self.checkpoints, key().verifying_key())
    }
}

/// The log of `SIZE` entries, built once.
pub fn signed_log() -> TestLog {
    static LOG: OnceLock<TestLog> = OnceLock::new();
    LOG.get_or_init(|| TestLog::build(SIZE, EVERY)).clone()
}

/// The log's key, generated for the test run.
pub fn key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(another_key)
}

/// A key of the same name that is not the log's.
pub fn another_key() -> SigningKey {
    SigningKey::from_pkey(ORIGIN, PKey::generate_ed25519().unwrap()).unwrap()
}

pub fn time(n: u64) -> UnixMillis {
    UnixMillis::new(1_714_555_800_000 + n * 1_500).unwrap()
}

/// A different, well-formed event for the same slot: what an attacker would write.
pub fn forged_event(n: u64) -> Vec<u8> {
    let mut event = event(n);
    event.outcome = if event.outcome == Outcome::Success { Outcome::MinorFailure } else { Outcome::Success };
    event.canonical_bytes()
}

/// The `n`th synthetic event: every kind of action and agent in turn, realistic identifiers.
pub fn event(n: u64) -> AuditEvent {
    let actions =
        [Action::Read, Action::Search, Action::Vread, Action::ConsentDecision, Action::Create, Action::History];
    let action = actions[(n % actions.len() as u64) as usize];
    let organisation = format!("1.2.246.10.{}.10.1", 10_000_000 + n % 97);
    let who = match n % 10 {
        0..=6 => Who::Practitioner {
            terhikki: format!("100{:08}", n % 5_000),
            role: ["psychotherapist", "physician", "nurse"][(n % 3) as usize].into(),
            organisation,
        },
        7 | 8 => Who::Patient { pseudonym: pseudonym(n) },
        _ => Who::Auditor { subject: format!("auditor-{}", n % 7), organisation },
    };
    let (purpose, reason) = match (&who, n % 50) {
        (Who::Practitioner { .. }, 0) => {
            (PurposeOfUse::BreakTheGlass, Some("unconscious patient in emergency care".into()))
        }
        (Who::Practitioner { .. }, _) => (PurposeOfUse::Treatment, None),
        (Who::Patient { .. }, _) => (PurposeOfUse::PatientRequested, None),
        _ => (PurposeOfUse::Compliance, None),
    };
    let search = action == Action::Search;
    AuditEvent {
        action,
        outcome: if n.is_multiple_of(13) { Outcome::MinorFailure } else { Outcome::Success },
        recorded: time(n),
        agent: Agent {
            who,
            client_certificate: Some(format!("{:043}", n * 7_919)),
            address: Some(format!("10.{}.{}.{}", n % 250, (n / 250) % 250, n % 199)),
            purpose: Some(purpose),
            reason,
        },
        observer: "fhir.clinic.example/gateway-1".into(),
        resources: if search {
            Vec::new()
        } else {
            vec![ResourceRef {
                resource_type: "DocumentReference".into(),
                id: format!("{:032x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
                version: Some((1 + n % 4).to_string()),
            }]
        },
        patient: Some(pseudonym(n / 3)),
        query: search.then(|| "DocumentReference?patient&_lastUpdated&_count".into()),
        consent: (action == Action::ConsentDecision).then(|| ConsentDecision {
            decision: if n.is_multiple_of(4) { Decision::Deny } else { Decision::Permit },
            rule: if n.is_multiple_of(4) { "PatientDenied".into() } else { "Treatment".into() },
            consent_id: n.is_multiple_of(4).then(|| format!("consent-{}", n % 11)),
            provision: n.is_multiple_of(4).then(|| "Consent.provision.provision[0]".into()),
        }),
        count: None,
    }
}

fn pseudonym(n: u64) -> String {
    audit_log::leaf_hash(&n.to_be_bytes()).to_hex()
}
