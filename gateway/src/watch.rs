//! Harvesting detection: a professional with a valid certificate and token who walks through
//! hundreds of patients is the attack certificates and consent do not stop. For each principal
//! (the practitioner, their organisation, the client certificate, and the practitioner in an
//! emergency) the gateway counts the distinct patients reached in a sliding window, and how many
//! of them only with refusals; a principal that crosses a threshold gets an alert: a security
//! alert in the audit log, a flag in the log of every patient it reached in the window, a
//! Prometheus counter, a log line without identifiers, and its requests refused (429) or slowed
//! until an auditor clears the alert or it lapses.
//!
//! The counts are shared through the database (`store::watch`): several nodes on one PostgreSQL
//! splitting the same harvesting still add up. A request writes a mark only the first time this
//! node sees its principal reach a patient in a minute, with its audit records, and counts only
//! then: a clinic reading the same patients again and again costs nothing more.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use audit_log::{Action, Agent, AuditEvent, Outcome};
use consent::Principal;
use store::audit::AuditRecord;
use store::cache::BoundedMap;
use store::time::now_millis;
use store::watch::{AccessAlert, NewAlert, ReachMark};
use store::Store;

use crate::audit;
use crate::config::HarvestPolicy;

/// How often a node reads the alerts that hold: the longest another node's alert goes unheeded.
const ALERTS_FRESH_FOR: Duration = Duration::from_secs(1);
/// How many principal-minute-patient marks a node remembers having written.
const MARKED_SIZE: usize = 200_000;

/// One of the principals a request counts for.
struct Counted {
    key: String,
    organisation: Option<String>,
    limit: u64,
    what: &'static str,
}

/// The principals a professional's request counts for; none for anyone else (a patient reaches
/// only themselves, staff receive no clinical content).
fn counted(policy: &HarvestPolicy, principal: &Principal, agent: &Agent) -> Vec<Counted> {
    let Principal::Professional(p) = principal else { return Vec::new() };
    let organisation = Some(p.organisation.clone());
    let mut counted = vec![
        Counted {
            key: format!("practitioner:{}/{}", p.organisation, p.practitioner),
            organisation: organisation.clone(),
            limit: policy.practitioner_patients,
            what: "patients reached by one practitioner",
        },
        Counted {
            key: format!("organisation:{}", p.organisation),
            organisation: organisation.clone(),
            limit: policy.organisation_patients,
            what: "patients reached by one organisation",
        },
    ];
    if let Some(certificate) = &agent.client_certificate {
        counted.push(Counted {
            key: format!("certificate:{certificate}"),
            organisation: organisation.clone(),
            limit: policy.certificate_patients,
            what: "patients reached over one client certificate",
        });
    }
    if p.purpose.needs_reason() {
        counted.push(Counted {
            key: format!("break-the-glass:{}/{}", p.organisation, p.practitioner),
            organisation,
            limit: policy.break_the_glass_patients,
            what: "patients reached by one practitioner by break-the-glass",
        });
    }
    counted
}

/// What the gateway does with a request whose principal is under an alert.
pub enum Verdict {
    Serve,
    /// Refuse with 429; retry after this many seconds.
    Refuse {
        retry_after: u64,
    },
    /// Serve after waiting this long.
    Slow(Duration),
}

/// The node's harvesting detector.
pub struct Watch {
    policy: HarvestPolicy,
    store: Store,
    marked: BoundedMap<()>,
    /// The alerts that hold, by principal, as read at the instant kept beside them.
    alerts: Mutex<Option<(Instant, HashMap<String, AccessAlert>)>>,
    raised: AtomicU64,
    refused: AtomicU64,
}

impl Watch {
    pub fn new(policy: HarvestPolicy, store: Store) -> Self {
        Watch {
            policy,
            store,
            marked: BoundedMap::new(MARKED_SIZE),
            alerts: Mutex::new(None),
            raised: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    /// Alerts this node raised, and requests it refused or slowed under an alert.
    pub fn counters(&self) -> (u64, u64) {
        (self.raised.load(Ordering::Relaxed), self.refused.load(Ordering::Relaxed))
    }

    fn minute(millis: i64) -> i64 {
        millis.div_euclid(60_000)
    }

    /// The first minute of the window.
    fn since(&self, now: i64) -> i64 {
        Self::minute(now - self.policy.window_seconds * 1000) + 1
    }

    /// The marks of a request that reached `reached` patients (each with whether all it asked
    /// of them was withheld), for the principals it counts for: only those this node has not
    /// written this minute. Returns the marks and the principals that have new ones.
    pub fn marks(
        &self,
        principal: &Principal,
        agent: &Agent,
        reached: &[(String, bool)],
    ) -> (Vec<ReachMark>, Vec<String>) {
        if !self.policy.enabled || reached.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let minute = Self::minute(now_millis());
        let mut marks = Vec::new();
        let mut fresh = Vec::new();
        for counted in counted(&self.policy, principal, agent) {
            for (patient, withheld) in reached {
                let key = format!("{}|{minute}|{patient}", counted.key);
                if self.marked.get(&key).is_some() {
                    continue;
                }
                self.marked.put(&key, ());
                marks.push(ReachMark {
                    principal: counted.key.clone(),
                    minute,
                    patient: patient.clone(),
                    withheld: *withheld,
                });
                if !fresh.contains(&counted.key) {
                    fresh.push(counted.key.clone());
                }
            }
        }
        (marks, fresh)
    }

    /// After a request's marks committed: counts each principal that has new ones, and raises
    /// an alert for one that crossed a threshold. A failure here is logged, never the
    /// request's: the request's own audit records are already committed.
    pub fn after(&self, principal: &Principal, agent: &Agent, fresh: &[String]) {
        if fresh.is_empty() {
            return;
        }
        let now = now_millis();
        let since = self.since(now);
        for counted in counted(&self.policy, principal, agent).into_iter().filter(|c| fresh.contains(&c.key)) {
            let (patients, withheld) = match self.store.reach(&counted.key, since) {
                Ok(counts) => counts,
                Err(error) => {
                    tracing::warn!(%error, "harvesting detection could not count a principal's reach");
                    continue;
                }
            };
            let threshold = if patients > counted.limit {
                format!(
                    "{patients} distinct {} in {} s, over the limit of {}",
                    counted.what, self.policy.window_seconds, counted.limit
                )
            } else if patients >= self.policy.withheld_minimum
                && patients > 0
                && withheld as f64 / patients as f64 >= self.policy.withheld_share
            {
                format!(
                    "{withheld} of {patients} distinct {} in {} s only refused or withheld, at least the share {}",
                    counted.what, self.policy.window_seconds, self.policy.withheld_share
                )
            } else {
                continue;
            };
            if self.holds(&counted.key) {
                continue;
            }
            self.raise(&counted, agent, (patients, withheld), threshold, since, now);
        }
    }

    /// Raises an alert for `counted`, which reached `(patients, withheld)` in the window from
    /// minute `since`.
    fn raise(&self, counted: &Counted, agent: &Agent, reach: (u64, u64), threshold: String, since: i64, now: i64) {
        let (patients, withheld) = reach;
        let alert = NewAlert {
            id: uuid::Uuid::new_v4().to_string(),
            principal: counted.key.clone(),
            organisation: counted.organisation.clone(),
            raised_at: now,
            until: self.policy.block_seconds.map(|seconds| now + seconds * 1000),
            patients: patients as i64,
            withheld: withheld as i64,
            threshold: threshold.clone(),
        };
        let id = alert.id.clone();
        let query = format!("unusual access pattern: alert {id}: {threshold}");
        let flags = |reached: &[String]| -> Vec<AuditRecord> {
            let event = |patient: Option<String>| AuditEvent {
                query: Some(query.clone()),
                ..audit::event(Action::UnusualAccess, Outcome::Success, agent, patient, Vec::new(), audit::now())
            };
            std::iter::once(event(None))
                .chain(reached.iter().map(|patient| event(Some(patient.clone()))))
                .map(|event| AuditRecord::new(&event))
                .collect()
        };
        // Every patient the principal reached in the window gets a flag; the principal is
        // stopped at the threshold, so they are about that many.
        let limit = (patients as usize).saturating_add(64);
        match self.store.raise_alert(alert, since, limit, flags) {
            Ok(true) => {
                self.raised.fetch_add(1, Ordering::Relaxed);
                // No identifiers in the log line: the alert's id leads to the rest.
                tracing::warn!(alert = %id, patients, withheld, "unusual access pattern: alert raised");
                // This node heeds it from the next request on.
                self.refresh();
            }
            Ok(false) => {}
            Err(error) => tracing::warn!(%error, "an unusual-access alert could not be raised"),
        }
    }

    /// Whether an alert holds for `key`, from the node's view, read again when it is older than
    /// a second (this runs in the blocking pool).
    fn holds(&self, key: &str) -> bool {
        let fresh = self.cached().filter(|(read, _)| read.elapsed() < ALERTS_FRESH_FOR).map(|(_, alerts)| alerts);
        let alerts = match fresh {
            Some(alerts) => Some(alerts),
            None => self.refresh(),
        };
        alerts.is_some_and(|alerts| alerts.get(key).is_some_and(|alert| alert.active(now_millis())))
    }

    fn cached(&self) -> Option<(Instant, HashMap<String, AccessAlert>)> {
        self.alerts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Reads the alerts that hold from the database; a node does this every second
    /// ([`crate::app`]), so that one raised on another node is heeded here within a second.
    pub fn refresh(&self) -> Option<HashMap<String, AccessAlert>> {
        if !self.policy.enabled {
            return None;
        }
        let mut cached = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
        match self.store.active_alerts() {
            Ok(alerts) => {
                let alerts: HashMap<String, AccessAlert> =
                    alerts.into_iter().map(|alert| (alert.principal.clone(), alert)).collect();
                *cached = Some((Instant::now(), alerts.clone()));
                Some(alerts)
            }
            Err(error) => {
                // The database will answer the request itself; an old view is better than none.
                tracing::warn!(%error, "the active unusual-access alerts could not be read");
                cached.as_ref().map(|(_, alerts)| alerts.clone())
            }
        }
    }

    /// What to do with a request of `principal` before it is worked on, from the alerts as last
    /// read: this runs on the event loop, which must not wait for the database.
    pub fn verdict(&self, principal: &Principal, agent: &Agent) -> Verdict {
        let counted = counted(&self.policy, principal, agent);
        if !self.policy.enabled || counted.is_empty() {
            return Verdict::Serve;
        }
        let now = now_millis();
        // The latest `until` of the alerts that hold for any of the request's principals (one
        // without an end is retried after an hour), read without copying the node's view.
        let until = {
            let cached = self.alerts.lock().unwrap_or_else(|e| e.into_inner());
            let Some((_, alerts)) = cached.as_ref() else { return Verdict::Serve };
            counted
                .iter()
                .filter_map(|c| alerts.get(&c.key))
                .filter(|alert| alert.active(now))
                .map(|alert| alert.until.unwrap_or(now + 3_600_000))
                .max()
        };
        let Some(until) = until else { return Verdict::Serve };
        self.refused.fetch_add(1, Ordering::Relaxed);
        match self.policy.response {
            crate::config::HarvestResponse::Slow => Verdict::Slow(Duration::from_millis(self.policy.slow_millis)),
            crate::config::HarvestResponse::Refuse => {
                Verdict::Refuse { retry_after: ((until - now).max(1000) / 1000) as u64 }
            }
        }
    }

    /// Drops the marks that left the window; run every minute by the node.
    pub fn purge(&self) {
        if let Err(error) = self.store.purge_marks(self.since(now_millis())) {
            tracing::warn!(%error, "old harvesting marks could not be deleted");
        }
    }
}
