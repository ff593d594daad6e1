//! A patient's Consents reduced, once, to the provisions in force: what a decision scans.

use std::cmp::Reverse;
use std::fmt;

use crate::patient_consent::{Actor, Effect, Period, Provision};
use crate::{PatientConsent, Professional, ResourceMeta, Timestamp};

/// The provisions of a patient's active Consents that are in force at the moment given to
/// [`CompiledConsents::compile`], most recent Consent first. Build it when the patient's Consents
/// are loaded (or change) and reuse it for every resource of that patient in the request: a
/// decision then allocates nothing and reads no time.
#[derive(Clone, Debug, Default)]
pub struct CompiledConsents {
    denies: Vec<CompiledProvision>,
    permits: Vec<CompiledProvision>,
    changes_at: Option<Timestamp>,
}

/// Which provision of which Consent decided: for the audit log and the patient's access view.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProvisionSource {
    consent: Option<String>,
    path: String,
}

impl ProvisionSource {
    /// `Consent.id` of the deciding Consent, when it had one.
    pub fn consent_id(&self) -> Option<&str> {
        self.consent.as_deref()
    }

    /// FHIRPath of the provision within its Consent, e.g. `Consent.provision.provision[0]`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl fmt::Display for ProvisionSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.consent {
            Some(id) => write!(f, "Consent/{id} {}", self.path),
            None => f.write_str(&self.path),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct CompiledProvision {
    actors: Box<[Box<[Actor]>]>,
    service_events: Box<[Box<[String]>]>,
    pub holds_in_emergency: bool,
    pub source: ProvisionSource,
}

/// No patient choices: the deployment's defaults alone.
pub(crate) static NO_CONSENTS: CompiledConsents =
    CompiledConsents { denies: Vec::new(), permits: Vec::new(), changes_at: None };

impl CompiledConsents {
    /// Keeps the provisions of `active` Consents whose periods hold at `now`. Where a period's
    /// bound is a date without a zone, a deny is read in the widest span the date can mean and a
    /// permit in the narrowest, so the uncertainty never releases anything.
    pub fn compile(consents: &[PatientConsent], now: Timestamp) -> CompiledConsents {
        let changes_at = consents
            .iter()
            .filter(|consent| consent.is_active())
            .flat_map(|consent| consent.provisions().iter().flat_map(|provision| provision.periods.iter()))
            .flat_map(|Period { start, end }| {
                let start = start.iter().flat_map(|time| [time.start.0, time.start.1]);
                let end = end.iter().flat_map(|time| [time.end.0, time.end.1]);
                start.chain(end)
            })
            .filter(|bound| *bound > now.unix_seconds())
            .min()
            .map(Timestamp::from_unix_seconds);
        let mut in_force: Vec<(Option<i64>, &PatientConsent, &Provision)> = consents
            .iter()
            .filter(|consent| consent.is_active())
            .flat_map(|consent| {
                let recorded = consent.recorded().map(|time| time.start.0);
                consent.provisions().iter().map(move |provision| (recorded, consent, provision))
            })
            .filter(|(_, _, provision)| in_force(provision, now))
            .collect();
        // Most recent first (a Consent without dateTime counts as oldest); the sort is stable, so
        // a Consent's own provisions keep their order.
        in_force.sort_by_key(|(recorded, _, _)| Reverse(*recorded));
        let mut compiled = CompiledConsents { changes_at, ..CompiledConsents::default() };
        for (_, consent, provision) in in_force {
            let target = match provision.effect {
                Effect::Deny => &mut compiled.denies,
                Effect::Permit => &mut compiled.permits,
            };
            target.push(CompiledProvision {
                actors: provision.actors.iter().map(|any| any.clone().into_boxed_slice()).collect(),
                service_events: provision.service_events.iter().map(|any| any.clone().into_boxed_slice()).collect(),
                holds_in_emergency: provision.holds_in_emergency,
                source: ProvisionSource { consent: consent.id().map(str::to_owned), path: provision.path.clone() },
            });
        }
        compiled
    }

    /// The first moment after compilation at which a period bound passes, so that the provisions
    /// in force may differ: a caller that caches the compiled form compiles again from then on.
    /// `None` when no period bound lies ahead.
    pub fn changes_at(&self) -> Option<Timestamp> {
        self.changes_at
    }

    /// No patient choices: what a decision for anyone but a professional needs, since Consents
    /// only restrict or widen what professionals receive.
    pub fn none() -> &'static CompiledConsents {
        &NO_CONSENTS
    }

    /// Whether no provision is in force.
    pub fn is_empty(&self) -> bool {
        self.denies.is_empty() && self.permits.is_empty()
    }

    /// The deny provisions in force, most recent first.
    pub(crate) fn denies(&self) -> &[CompiledProvision] {
        &self.denies
    }

    /// The most recent permit that names `professional` for `meta`.
    pub(crate) fn permit(&self, professional: &Professional, meta: &ResourceMeta<'_>) -> Option<&CompiledProvision> {
        self.permits.iter().find(|permit| permit.applies(professional, meta))
    }
}

impl CompiledProvision {
    /// Every level of the provision holds: one of its actors is the professional and one of its
    /// service events is the resource's.
    /// A provision with an emergency purpose controls emergency access only, as FHIR's
    /// `provision.purpose` (the context of the access the rule is about) says.
    pub(crate) fn applies(&self, professional: &Professional, meta: &ResourceMeta<'_>) -> bool {
        (!self.holds_in_emergency || professional.purpose.needs_reason())
            && self.actors.iter().all(|any| any.iter().any(|actor| actor.is(professional)))
            && self.service_events.iter().all(|any| any.iter().any(|event| meta.service_event == Some(event.as_str())))
    }
}

impl Actor {
    fn is(&self, professional: &Professional) -> bool {
        match self {
            Actor::Organisation(oid) => professional.organisation == *oid,
            Actor::Practitioner(number) => professional.practitioner == *number,
            Actor::Role(role) => professional.role == *role,
        }
    }
}

fn in_force(provision: &Provision, now: Timestamp) -> bool {
    let now = now.unix_seconds();
    let widest = provision.effect == Effect::Deny;
    provision.periods.iter().all(|Period { start, end }| {
        let started = match start {
            Some(start) => now >= if widest { start.start.0 } else { start.start.1 },
            None => true,
        };
        let not_ended = match end {
            Some(end) => now < if widest { end.end.1 } else { end.end.0 },
            None => true,
        };
        started && not_ended
    })
}
