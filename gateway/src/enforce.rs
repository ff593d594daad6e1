//! The one enforcement point: every path that returns clinical data passes its rows through a
//! [`Gate`] before anything is decrypted, and only a [`Released`] row can be opened
//! ([`Gate::open`]). The store's one [`Opener`] is a private field of [`Enforcement`], and
//! [`Released`] has no constructor outside this file: a handler that forgot to ask would not
//! compile.
//!
//! A gate judges rows for one principal in one request, with the deployment's policy and the
//! Consents of each row's patient. Consents are compiled once per patient and kept in the
//! `ConsentBook` under the patient's consent generation, which the gate reads from the
//! database for every request: a Consent written through any gateway node applies to the next
//! decision on every node.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use audit_log::{Action, Agent, Outcome, ResourceRef};
use consent::{
    decide_with, CompiledConsents, PatientConsent, Policy, Principal, ResourceMeta, SecurityLabel, Timestamp,
};
use fhir_profiles::ResourceType;
use store::audit::AuditRecord;
use store::cache::BoundedMap;
use store::time::now_millis;
use store::{Criterion, Head, ListedHead, Opener, Store, Stored, VersionRow};

use crate::audit::{self, Judged};
use crate::config::HarvestPolicy;
use crate::error::GatewayError;
use crate::watch::Watch;

/// How many patients' compiled Consents a node keeps.
pub const CONSENT_BOOK_SIZE: usize = 8192;

/// A row the principal may receive. Constructed only by a [`Gate`], in this file.
pub struct Released<T>(T);

impl<T> Released<T> {
    pub fn get(&self) -> &T {
        &self.0
    }
}

/// The node's enforcement point: the store it reads, the one [`Opener`] that decrypts, the
/// deployment's policy and the cache of compiled Consents. Shared by every request.
pub struct Enforcement {
    store: Store,
    opener: Opener,
    policy: Policy,
    book: ConsentBook,
    watch: Watch,
}

impl Enforcement {
    pub fn new(store: Store, opener: Opener, policy: Policy, harvest: HarvestPolicy) -> Self {
        let watch = Watch::new(harvest, store.clone());
        Enforcement { store, opener, policy, book: ConsentBook::default(), watch }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Harvesting detection, which every recorded output feeds.
    pub fn watch(&self) -> &Watch {
        &self.watch
    }

    /// What each of `audiences` would receive of one patient's `rows` if the patient's Consents
    /// were `consents`: the decision function every gate uses, on a proposed set of choices,
    /// with nothing stored and nothing recorded (no one received anything). `[audience][row]`.
    pub fn preview<T: Stored>(
        &self,
        audiences: &[Principal],
        consents: &[PatientConsent],
        rows: &[T],
    ) -> Vec<Vec<bool>> {
        let now = Timestamp::from_unix_seconds(now_millis().div_euclid(1000));
        let compiled = CompiledConsents::compile(consents, now);
        let labelled: Vec<Vec<SecurityLabel>> = rows.iter().map(|row| labels(row.security_labels())).collect();
        audiences
            .iter()
            .map(|audience| {
                rows.iter()
                    .zip(&labelled)
                    .map(|(row, labels)| decide_with(audience, &meta(row, labels), &compiled, &self.policy).is_permit())
                    .collect()
            })
            .collect()
    }

    /// A gate judging rows for `principal`, for one request.
    pub fn gate<'a>(&'a self, principal: &'a Principal) -> Gate<'a> {
        Gate {
            principal,
            enforcement: self,
            now: Timestamp::from_unix_seconds(now_millis().div_euclid(1000)),
            consents: RefCell::new(HashMap::new()),
            judged: RefCell::new(Vec::new()),
            named: RefCell::new(Vec::new()),
        }
    }
}

/// A patient's Consents, compiled, as of one consent generation.
struct CompiledAt {
    generation: i64,
    /// When a period bound passes and the compiled form may no longer hold.
    changes_at: Option<Timestamp>,
    consents: Arc<CompiledConsents>,
}

/// The node's cache of compiled Consents, by patient pseudonym.
struct ConsentBook {
    compiled: BoundedMap<Arc<CompiledAt>>,
}

impl Default for ConsentBook {
    fn default() -> Self {
        ConsentBook { compiled: BoundedMap::new(CONSENT_BOOK_SIZE) }
    }
}

/// Judges rows for one principal within one request.
pub struct Gate<'a> {
    principal: &'a Principal,
    enforcement: &'a Enforcement,
    now: Timestamp,
    /// The compiled Consents of the patients judged so far in this request.
    consents: RefCell<HashMap<String, Arc<CompiledConsents>>>,
    /// Every decision taken, for the audit log.
    judged: RefCell<Vec<Judged>>,
    /// The patients the request named, so that an attempt that found nothing is still recorded
    /// against them.
    named: RefCell<Vec<String>>,
}

fn labels(codes: &str) -> Vec<SecurityLabel> {
    codes.split_whitespace().filter_map(SecurityLabel::from_code).collect()
}

/// What a decision reads of a stored row.
fn meta<'r, T: Stored>(row: &'r T, labels: &'r [SecurityLabel]) -> ResourceMeta<'r> {
    let (author_organisation, author_practitioner) = row.author();
    ResourceMeta {
        resource_type: row.resource_type(),
        patient: row.patient(),
        security_labels: labels,
        author_organisation,
        author_practitioner,
        service_event: row.service_event(),
    }
}

impl Gate<'_> {
    /// The audit records of this request: its action over what was released, per patient, and
    /// the decisions that withheld anything (see [`audit::events`]). With nothing judged (an
    /// absent id), one record of the action with `outcome`.
    pub fn audit_records(
        &self,
        action: Action,
        agent: &Agent,
        query: Option<&str>,
        outcome: Outcome,
    ) -> Vec<AuditRecord> {
        let judged = self.judged.borrow();
        let named = self.named.borrow();
        let mut events = audit::events(action, agent, query, &named, &judged, audit::now());
        if judged.is_empty() {
            for event in &mut events {
                event.outcome = outcome;
            }
        }
        events.iter().map(AuditRecord::new).collect()
    }

    /// Commits this request's audit records (see [`Gate::audit_records`]) with those of
    /// concurrent requests; a request must not answer with data until this returns `Ok`.
    pub fn record(&self, action: Action, agent: &Agent, query: Option<&str>) -> Result<(), GatewayError> {
        self.commit(self.audit_records(action, agent, query, Outcome::Success), agent)
    }

    /// Commits the record of an action that found nothing it may show (absent or withheld).
    pub fn record_not_found(&self, action: Action, agent: &Agent) -> Result<(), GatewayError> {
        self.commit(self.audit_records(action, agent, None, Outcome::MinorFailure), agent)
    }

    /// Commits `records` with harvesting detection's marks of the patients this request named
    /// or reached (each with whether it released nothing of theirs), then lets detection count.
    fn commit(&self, records: Vec<AuditRecord>, agent: &Agent) -> Result<(), GatewayError> {
        let mut reached: Vec<(String, bool)> = Vec::new();
        for patient in self.named.borrow().iter() {
            reached.push((patient.clone(), true));
        }
        for judged in self.judged.borrow().iter() {
            let Some(patient) = &judged.patient else { continue };
            match reached.iter_mut().find(|(p, _)| p == patient) {
                Some((_, withheld)) => *withheld &= !judged.permit,
                None => reached.push((patient.clone(), !judged.permit)),
            }
        }
        let watch = &self.enforcement.watch;
        let (marks, fresh) = watch.marks(self.principal, agent, &reached);
        self.enforcement.store.record_with_marks(records, marks)?;
        watch.after(self.principal, agent, &fresh);
        Ok(())
    }

    /// The current head of a resource, if it exists and this gate releases it.
    pub fn released_head(&self, resource_type: ResourceType, id: &str) -> Result<Option<Released<Head>>, GatewayError> {
        match self.enforcement.store.head(resource_type, id)? {
            Some(head) => self.release_one(head),
            None => Ok(None),
        }
    }

    /// The plaintext of a version if this gate releases it, `None` if it withholds it.
    pub fn open_if_released(&self, row: VersionRow) -> Result<Option<Vec<u8>>, GatewayError> {
        self.release_one(row)?.map(|row| self.open(&row)).transpose()
    }

    /// The plaintext of a released version: the only way a body leaves the store.
    pub fn open(&self, row: &Released<VersionRow>) -> Result<Vec<u8>, GatewayError> {
        Ok(self.enforcement.opener.open(&row.0)?)
    }

    /// The plaintext listing of a released document head; `None` for a head that carries none
    /// (a document stored before listings).
    pub fn open_listing(&self, row: &Released<ListedHead>) -> Result<Option<Vec<u8>>, GatewayError> {
        Ok(self.enforcement.opener.open_listing(&row.0)?)
    }

    /// The plaintext of the version a released head names, released with it: the same
    /// resource, version and decision metadata take the same decision. `None` when the stored
    /// version is another (the resource changed after the head was read).
    pub fn open_version_of<T: Stored>(
        &self,
        head: &Released<T>,
        row: VersionRow,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let head = &head.0;
        let same = row.resource_type() == head.resource_type()
            && row.id() == head.id()
            && row.version() == head.version()
            && row.patient() == head.patient()
            && row.security_labels() == head.security_labels()
            && row.author() == head.author()
            && row.service_event() == head.service_event();
        if !same {
            return Ok(None);
        }
        Ok(Some(self.enforcement.opener.open(&row)?))
    }

    /// The stored version `row`, if once `normalised` it equals `expected`: asked by its author
    /// when they send the same record again. The body is opened here only for the professional
    /// whose organisation and practitioner wrote it, and given back only when it is what they
    /// sent (but for the ids, times and metadata of its first filing, which the answer's headers
    /// carry anyway). It is asked of authorship, not of the patient's choices: a patient's denial
    /// may hide the document even from its author, but must neither freeze the author's record
    /// nor shape the answer to a resent record (an empty one would tell the clinic the patient
    /// has restricted it).
    pub fn authored_version_if_equal(
        &self,
        row: &VersionRow,
        normalised: fn(serde_json::Value) -> serde_json::Value,
        expected: &serde_json::Value,
    ) -> Result<Option<Vec<u8>>, GatewayError> {
        let Principal::Professional(author) = self.principal else { return Ok(None) };
        if row.author() != (Some(author.organisation.as_str()), Some(author.practitioner.as_str())) {
            return Ok(None);
        }
        let body = self.enforcement.opener.open(row)?;
        let stored: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| GatewayError::Internal(format!("a stored version is not JSON: {e}")))?;
        Ok((normalised(stored) == *expected).then_some(body))
    }

    pub fn principal(&self) -> &Principal {
        self.principal
    }

    /// Whether `principal` may receive `row`.
    pub fn permits<T: Stored>(&self, row: &T) -> Result<bool, GatewayError> {
        self.load_consents(row.patient().into_iter())?;
        Ok(self.decide(row, true))
    }

    /// Keeps the rows the principal may receive, in order. Callers count and page only what this
    /// returns, so totals and page sizes reveal nothing about what was withheld.
    pub fn release<T: Stored>(&self, rows: Vec<T>) -> Result<Vec<Released<T>>, GatewayError> {
        self.load_consents(rows.iter().filter_map(Stored::patient))?;
        Ok(rows.into_iter().filter(|row| self.decide(row, true)).map(Released).collect())
    }

    /// Keeps the rows the principal may receive, in order, and returns how many there are and
    /// the page of them from `offset`, `count` long. Every row is judged (so the total counts
    /// only what the caller may see, and reveals nothing withheld), but the audit events list
    /// only the released rows on the page and at most as many withheld rows, from the page's
    /// span; the rest they count.
    pub fn release_page<T: Stored>(
        &self,
        rows: Vec<T>,
        offset: usize,
        count: usize,
    ) -> Result<(usize, Vec<Released<T>>), GatewayError> {
        self.load_consents(rows.iter().filter_map(Stored::patient))?;
        let mut released = 0usize;
        let mut page = Vec::new();
        // Where the page's span begins and ends among the judged rows (after the last released
        // row before the page, up to the page's last row): withheld rows outside it go unlisted.
        let mut span_start = self.judged.borrow().len();
        let mut page_end = None;
        for row in rows {
            if !self.decide(&row, false) {
                continue;
            }
            if released < offset {
                span_start = self.judged.borrow().len();
            } else if released < offset.saturating_add(count) {
                page.push(Released(row));
                let mut judged = self.judged.borrow_mut();
                if let Some(last) = judged.last_mut() {
                    last.listed = true;
                }
                if page.len() == count {
                    page_end = Some(judged.len());
                }
            }
            released += 1;
        }
        let mut judged = self.judged.borrow_mut();
        let end = page_end.unwrap_or(judged.len());
        // At most a page's worth of them, so that what is appended stays bounded even when
        // everything was withheld.
        for judged in judged.iter_mut().take(end).skip(span_start).filter(|j| !j.permit).take(count.max(1)) {
            judged.listed = true;
        }
        Ok((released, page))
    }

    /// Releases a page of `patient`'s rows that the database paged and counted. Sound only when
    /// the principal receives every row of that patient (`consent::receives_all_of`): then the
    /// count and the page are those that judging every row would give. Each row of the page is
    /// judged all the same (and listed in the audit record); a row of another patient, or one
    /// the gate withholds, fails the request rather than be shown or counted wrongly.
    pub fn release_patient_page<T: Stored>(
        &self,
        patient: &str,
        rows: Vec<T>,
    ) -> Result<Vec<Released<T>>, GatewayError> {
        if !consent::receives_all_of(self.principal, patient) {
            return Err(GatewayError::Internal(
                "a page counted in the database for a reader who does not receive every row".into(),
            ));
        }
        let mut released = Vec::with_capacity(rows.len());
        for row in rows {
            if row.patient() != Some(patient) || !self.decide(&row, true) {
                return Err(GatewayError::Internal("a row of a page counted in the database was withheld".into()));
            }
            released.push(Released(row));
        }
        Ok(released)
    }

    /// Notes the patients a request names, by pseudonym: each is recorded in the audit log as
    /// reached by the request, whatever it found.
    pub fn reach(&self, patients: &[String]) {
        let mut named = self.named.borrow_mut();
        for patient in patients {
            if !named.contains(patient) {
                named.push(patient.clone());
            }
        }
    }

    /// One row: `None` when withheld, which callers answer exactly like an absent resource.
    pub fn release_one<T: Stored>(&self, row: T) -> Result<Option<Released<T>>, GatewayError> {
        Ok(self.permits(&row)?.then_some(Released(row)))
    }

    /// Decides one row and keeps the decision for the audit log, `listed` or only counted.
    fn decide<T: Stored>(&self, row: &T, listed: bool) -> bool {
        let labels = labels(row.security_labels());
        let meta = meta(row, &labels);
        let consents = self.consents.borrow();
        let compiled = match (self.principal, row.patient()) {
            // Consents restrict or widen only what professionals receive.
            (Principal::Professional(_), Some(patient)) => match consents.get(patient) {
                Some(compiled) => compiled.as_ref(),
                // Loaded for every row before deciding; a patient missing here is a bug, and
                // the answer to a bug is no.
                None => return false,
            },
            _ => CompiledConsents::none(),
        };
        let decision = decide_with(self.principal, &meta, compiled, &self.enforcement.policy);
        self.judged.borrow_mut().push(Judged {
            patient: row.patient().map(str::to_owned),
            resource: ResourceRef {
                resource_type: row.resource_type().to_owned(),
                id: row.id().to_owned(),
                version: Some(row.version().to_string()),
            },
            permit: decision.is_permit(),
            break_the_glass: decision.break_the_glass(),
            rule: decision.rule(),
            consent_id: decision.provision().and_then(|p| p.consent_id()).map(str::to_owned),
            provision: decision.provision().map(|p| p.path().to_owned()),
            listed,
        });
        decision.is_permit()
    }

    /// Makes sure the compiled Consents of these patients are at hand: one query for their
    /// generations, and a load only for those whose generation moved since the book saw them.
    fn load_consents<'p>(&self, patients: impl Iterator<Item = &'p str>) -> Result<(), GatewayError> {
        if !matches!(self.principal, Principal::Professional(_)) {
            return Ok(());
        }
        let mut missing: Vec<&str> = {
            let known = self.consents.borrow();
            patients.filter(|patient| !known.contains_key(*patient)).collect()
        };
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(());
        }
        let generations = self.enforcement.store.consent_generations(&missing)?;
        let book = &self.enforcement.book;
        let mut known = self.consents.borrow_mut();
        let mut stale = Vec::new();
        for patient in missing {
            let Some(&generation) = generations.get(patient) else {
                known.insert(patient.to_owned(), Arc::new(CompiledConsents::default()));
                continue;
            };
            let cached = book
                .compiled
                .get(patient)
                .filter(|cached| cached.generation == generation && cached.changes_at.is_none_or(|at| self.now < at));
            match cached {
                Some(cached) => {
                    known.insert(patient.to_owned(), cached.consents.clone());
                }
                None => stale.push((patient, generation)),
            }
        }
        // The patients whose Consents changed (or were never seen) are read together.
        let mut read = self.read_consents(stale.iter().map(|(patient, _)| *patient))?;
        for (patient, generation) in stale {
            let compiled = CompiledConsents::compile(&read.remove(patient).unwrap_or_default(), self.now);
            let entry = CompiledAt { generation, changes_at: compiled.changes_at(), consents: Arc::new(compiled) };
            known.insert(patient.to_owned(), entry.consents.clone());
            book.compiled.put(patient, Arc::new(entry));
        }
        Ok(())
    }

    /// Patients' stored Consents, read for the gateway's own decision (never returned): one
    /// search and one read of current versions for all of them.
    fn read_consents<'p>(
        &self,
        patients: impl Iterator<Item = &'p str>,
    ) -> Result<HashMap<String, Vec<PatientConsent>>, GatewayError> {
        let patients: Vec<String> = patients.map(str::to_owned).collect();
        let mut consents: HashMap<String, Vec<PatientConsent>> = HashMap::new();
        if patients.is_empty() {
            return Ok(consents);
        }
        let store = &self.enforcement.store;
        let heads: Vec<Head> = store.search(ResourceType::Consent, &[Criterion::Patients(patients)])?;
        for row in store.current_versions(heads.iter())? {
            let Some(patient) = row.patient.clone() else { continue };
            // Opened for this decision and never returned: the gate reads a patient's choices
            // to judge others' access.
            let body = self.enforcement.opener.open(&row)?;
            let json: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| GatewayError::Internal(format!("a stored Consent is not JSON: {e}")))?;
            // Stored Consents were read by the same rules when written; one that no longer reads
            // fails the request rather than be skipped, which could release what it withheld.
            let consent = PatientConsent::from_fhir(&json)
                .map_err(|e| GatewayError::Internal(format!("a stored Consent no longer reads: {e}")))?;
            consents.entry(patient).or_default().push(consent);
        }
        Ok(consents)
    }
}
