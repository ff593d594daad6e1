//! The audit trail's gateway side: who a request's agent is, and the events a request produces
//! from what the enforcement point decided. The store appends them (`store::audit`), in the
//! transaction of the request or of the group commit that carries it; an event that cannot be
//! written fails that transaction: a write is not kept and a read returns no data.

use std::collections::HashMap;
use std::path::Path;

use audit_log::{
    Action, Agent, AuditEvent, ConsentDecision, Decision, Outcome, PurposeOfUse, ResourceRef, UnixMillis, Who,
};
use consent::{Principal, Purpose};
use store::audit::{append_alone, AuditRecord, AuditSigner};
use store::crypto::CryptoError;
use store::db::Pool;
use store::time::now_millis;
use store::StoreError;

/// The gateway instance named as the observer of its events: the host's name.
pub fn observer() -> &'static str {
    static OBSERVER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OBSERVER.get_or_init(|| format!("vaitio@{}", host_name()))
}

/// This host's name, as `/etc/hostname` gives it.
fn host_name() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let host = std::fs::read_to_string("/etc/hostname").ok().map(|h| h.trim().to_owned()).filter(|h| !h.is_empty());
        host.unwrap_or_else(|| "localhost".into())
    })
}

/// The operating-system account running this process, as `user@host`: who an operator command
/// is recorded as.
pub fn operator_account() -> String {
    // The login's name where the environment carries it (sudo keeps the invoking user's), else
    // the numeric uid, which the kernel always knows.
    let uid = || {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|line| line.starts_with("Uid:"))?;
        Some(format!("uid-{}", line.split_whitespace().nth(1)?))
    };
    let user = std::env::var("SUDO_USER")
        .or_else(|_| std::env::var("USER"))
        .or_else(|_| std::env::var("LOGNAME"))
        .ok()
        .filter(|user| !user.is_empty())
        .or_else(uid)
        .unwrap_or_else(|| "unknown".into());
    format!("{user}@{}", host_name())
}

/// Appends the record of an operator's command (`vaitio migrate`, `vaitio audit export`) to the
/// log, committed before the command goes on: a command whose record cannot be written is not
/// run. `command` names the command and its non-secret arguments.
pub fn record_operator_action(
    pool: &Pool,
    signer: &AuditSigner,
    command: &str,
    outcome: Outcome,
) -> Result<(), StoreError> {
    let action = operator_event(Action::AdministratorAction, outcome, None, command);
    append_alone(pool, &[AuditRecord::new(&action)], signer)
}

/// An operator's action as an audit event: the operator's account as the agent, `what` as the
/// query, and the patient (a pseudonym) it concerned, if one.
pub fn operator_event(action: Action, outcome: Outcome, patient: Option<String>, what: &str) -> AuditEvent {
    let agent = Agent {
        who: Who::Operator { account: operator_account() },
        client_certificate: None,
        address: None,
        purpose: Some(PurposeOfUse::SystemAdministration),
        reason: None,
    };
    let mut action = event(action, outcome, &agent, patient, Vec::new(), now());
    action.query = Some(what.to_owned());
    action
}

/// The time of an event: now.
pub fn now() -> UnixMillis {
    let millis = u64::try_from(now_millis()).unwrap_or(0);
    UnixMillis::new(millis).unwrap_or_else(|_| UnixMillis::new(0).expect("the epoch is a time"))
}

/// Writes a new Ed25519 private key (PEM, mode 0600) that signs the log's checkpoints:
/// development mode's first run.
pub fn generate_signing_key_file(path: &Path) -> Result<(), CryptoError> {
    let failed =
        |e: &dyn std::fmt::Display| CryptoError::KeyFile { path: path.display().to_string(), message: e.to_string() };
    let key = openssl::pkey::PKey::generate_ed25519().map_err(|e| failed(&e))?;
    let pem = key.private_key_to_pem_pkcs8().map_err(|e| failed(&e))?;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| failed(&e))?;
    }
    certs::write_file(path, &pem, true).map_err(|e| failed(&e))
}

/// The agent of a request: who (by identifier), the connection's certificate, the address, why.
pub fn agent(principal: &Principal, client_certificate: Option<String>, address: Option<String>) -> Agent {
    let (who, purpose, reason) = match principal {
        Principal::Professional(p) => (
            Who::Practitioner {
                terhikki: p.practitioner.clone(),
                role: p.role.as_str().to_owned(),
                organisation: p.organisation.clone(),
            },
            Some(match p.purpose {
                Purpose::Treatment => PurposeOfUse::Treatment,
                Purpose::EmergencyTreatment => PurposeOfUse::EmergencyTreatment,
                Purpose::BreakTheGlass => PurposeOfUse::BreakTheGlass,
            }),
            p.reason.clone(),
        ),
        Principal::Patient { pseudonym, .. } => {
            (Who::Patient { pseudonym: pseudonym.clone() }, Some(PurposeOfUse::PatientRequested), None)
        }
        Principal::Auditor { subject, organisation } => (
            Who::Auditor { subject: subject.clone(), organisation: organisation.clone() },
            Some(PurposeOfUse::Compliance),
            None,
        ),
        Principal::Administrator { subject, organisation } => (
            Who::Administrator { subject: subject.clone(), organisation: organisation.clone() },
            Some(PurposeOfUse::SystemAdministration),
            None,
        ),
        Principal::Anonymous => (Who::Unidentified, None, None),
    };
    Agent { who, client_certificate, address, purpose, reason }
}

/// What the enforcement point decided about one resource, for the audit log.
#[derive(Clone, Debug)]
pub struct Judged {
    pub patient: Option<String>,
    pub resource: ResourceRef,
    pub permit: bool,
    pub break_the_glass: bool,
    pub rule: consent::Rule,
    pub consent_id: Option<String>,
    pub provision: Option<String>,
    /// Whether the event names the resource. A search names what it returned on its page and
    /// what it withheld up to there, and counts the rest (`AuditEvent::count`), so that what
    /// one request appends does not grow with a patient's record.
    pub listed: bool,
}

/// The events of one request, per patient it named or reached: one event of the action over
/// what was released (flagged as break-the-glass when emergency access opened any of it), one
/// consent-decision event for each rule or Consent provision that withheld something, and, for
/// a patient named but with nothing found, one event of the action that found nothing. An
/// action that touched no one's data gets one event of its own. A search's events count the
/// resources they stand for.
pub fn events(
    action: Action,
    agent: &Agent,
    query: Option<&str>,
    named: &[String],
    judged: &[Judged],
    now: UnixMillis,
) -> Vec<AuditEvent> {
    let counted = action == Action::Search;
    let event = |action, outcome, patient: Option<&str>, resources, consent, count: usize| AuditEvent {
        query: query.map(str::to_owned),
        consent,
        count: counted.then_some(count as u64),
        ..event(action, outcome, agent, patient.map(str::to_owned), resources, now)
    };
    // Patients in the order first named or judged; each resource once, as last judged (a search
    // judges a head and then its version), listed if any judgement listed it.
    let mut patients: Vec<Option<&str>> = named.iter().map(|p| Some(p.as_str())).collect();
    let mut latest: HashMap<(Option<&str>, &ResourceRef), (usize, bool)> = HashMap::new();
    let mut order: Vec<(Option<&str>, &ResourceRef)> = Vec::new();
    for (n, judged) in judged.iter().enumerate() {
        let patient = judged.patient.as_deref();
        if !patients.contains(&patient) {
            patients.push(patient);
        }
        let key = (patient, &judged.resource);
        match latest.get_mut(&key) {
            Some((at, listed)) => {
                *at = n;
                *listed |= judged.listed;
            }
            None => {
                latest.insert(key, (n, judged.listed));
                order.push(key);
            }
        }
    }
    let decision = |j: &Judged, decision| ConsentDecision {
        decision,
        rule: j.rule.to_string(),
        consent_id: j.consent_id.clone(),
        provision: j.provision.clone(),
    };
    let mut events = Vec::new();
    for patient in patients {
        let mine: Vec<(&Judged, bool)> = order
            .iter()
            .filter(|(p, _)| *p == patient)
            .filter_map(|key| latest.get(key).map(|(at, listed)| (&judged[*at], *listed)))
            .collect();
        let listed = |group: &[(&Judged, bool)]| -> Vec<ResourceRef> {
            group.iter().filter(|(_, listed)| *listed).map(|(j, _)| j.resource.clone()).collect()
        };
        let permitted: Vec<(&Judged, bool)> = mine.iter().copied().filter(|(j, _)| j.permit).collect();
        if let Some((first, _)) = permitted.first() {
            let emergency = permitted.iter().any(|(j, _)| j.break_the_glass);
            events.push(event(
                if emergency { Action::BreakTheGlass } else { action },
                Outcome::Success,
                patient,
                listed(&permitted),
                Some(decision(first, Decision::Permit)),
                permitted.len(),
            ));
        }
        // One event per reason something was withheld: the note rule, each Consent provision.
        let mut reasons: Vec<(consent::Rule, Option<&str>, Option<&str>)> = Vec::new();
        for (j, _) in mine.iter().filter(|(j, _)| !j.permit) {
            let reason = (j.rule, j.consent_id.as_deref(), j.provision.as_deref());
            if !reasons.contains(&reason) {
                reasons.push(reason);
            }
        }
        for reason in reasons {
            let withheld: Vec<(&Judged, bool)> = mine
                .iter()
                .copied()
                .filter(|(j, _)| !j.permit && (j.rule, j.consent_id.as_deref(), j.provision.as_deref()) == reason)
                .collect();
            let Some((first, _)) = withheld.first() else { continue };
            events.push(event(
                Action::ConsentDecision,
                Outcome::MinorFailure,
                patient,
                listed(&withheld),
                Some(decision(first, Decision::Deny)),
                withheld.len(),
            ));
        }
        if mine.is_empty() && patient.is_some() {
            // Named, and nothing found: the attempt is the patient's to see all the same.
            events.push(event(action, Outcome::Success, patient, Vec::new(), None, 0));
        }
    }
    if events.is_empty() {
        events.push(event(action, Outcome::Success, None, Vec::new(), None, 0));
    }
    events
}

/// One event as this gateway observes it, with no query and no consent decision: a write (what
/// was written, for whom), a refused authentication (no identity, only where the request came
/// from), or an action that judged nothing.
pub fn event(
    action: Action,
    outcome: Outcome,
    agent: &Agent,
    patient: Option<String>,
    resources: Vec<ResourceRef>,
    now: UnixMillis,
) -> AuditEvent {
    AuditEvent {
        action,
        outcome,
        recorded: now,
        agent: agent.clone(),
        observer: observer().to_owned(),
        resources,
        patient,
        query: None,
        consent: None,
        count: None,
    }
}

/// The ids a patient sees their log's entries by. An entry's position in the log counts every
/// entry of every patient, and how far it moves across a request says how many entries that
/// request appended, which depends on what the enforcement point decided (a withheld note adds
/// one): shown to patients, it would tell anyone who can sign in as one what a probe found. So
/// a patient sees each position encrypted (one AES block under a key derived from the index
/// key's first version: stable for good, unreadable without the key); auditors see positions.
pub struct EntryIds {
    key: [u8; 32],
}

/// The first half of an id's block: what tells one of ours from any other 16 bytes.
const ENTRY_ID_MARK: &[u8; 8] = b"vaitio:e";

impl EntryIds {
    pub fn of(store: &store::Store) -> Result<EntryIds, StoreError> {
        let first = store
            .index_keys()
            .first()
            .ok_or_else(|| StoreError::Internal("the index key's first version is not held".into()))?;
        Ok(EntryIds { key: first.derived_key("audit-entry-ids") })
    }

    /// The id of the entry at `seq`, as a patient sees it: 32 hexadecimal digits.
    pub fn show(&self, seq: i64) -> String {
        let mut block = [0u8; 16];
        block[..8].copy_from_slice(ENTRY_ID_MARK);
        block[8..].copy_from_slice(&seq.to_be_bytes());
        self.crypt(openssl::symm::Mode::Encrypt, &block).map(hex::encode).unwrap_or_default()
    }

    /// The position an id a patient sent stands for; `None` for anything not made by `show`.
    pub fn read(&self, id: &str) -> Option<i64> {
        let bytes = hex::decode(id).ok()?;
        let block: [u8; 16] = bytes.try_into().ok()?;
        let plain = self.crypt(openssl::symm::Mode::Decrypt, &block)?;
        let (mark, seq) = plain.split_at(8);
        (mark == ENTRY_ID_MARK).then(|| i64::from_be_bytes(seq.try_into().unwrap_or_default()))
    }

    /// One block through AES-256, no padding: a unique position in, a unique block out.
    fn crypt(&self, mode: openssl::symm::Mode, block: &[u8; 16]) -> Option<Vec<u8>> {
        let cipher = openssl::symm::Cipher::aes_256_ecb();
        let mut crypter = openssl::symm::Crypter::new(cipher, mode, &self.key, None).ok()?;
        crypter.pad(false);
        let mut out = vec![0u8; 32];
        let written = crypter.update(block, &mut out).ok()?;
        let finished = crypter.finalize(&mut out[written..]).ok()?;
        out.truncate(written + finished);
        (out.len() == 16).then_some(out)
    }
}

#[cfg(test)]
mod entry_id_tests {
    use super::EntryIds;

    #[test]
    fn an_entry_id_hides_its_position_and_reads_back() {
        let ids = EntryIds { key: [7; 32] };
        let shown: Vec<String> = (0..1000).map(|seq| ids.show(seq)).collect();
        for (seq, id) in shown.iter().enumerate() {
            assert_eq!(id.len(), 32);
            assert_eq!(ids.read(id), Some(seq as i64));
        }
        // Neighbouring positions share nothing visible.
        assert_ne!(shown[41][..8], shown[42][..8]);
        // Anything else reads as nothing: a position, other hex, another key's id.
        for other in ["42", "00000000000000000000000000000000", "zz", &"a".repeat(32)] {
            assert_eq!(ids.read(other), None, "{other}");
        }
        assert_eq!(EntryIds { key: [8; 32] }.read(&shown[42]), None);
    }
}
