//! The policy decision point.
//!
//! Every path by which clinical data leaves the gateway asks for a decision first: [`decide`]
//! for the deployment's defaults alone, [`decide_with`] with the patient's Consents and the
//! deployment's [`Policy`]. The crate is pure (no I/O, no HTTP, no SQL, no clock: "now" is an
//! argument) so that the rules can be tested and fuzzed alone. It never sees a clinical payload,
//! only the metadata kept in clear beside it ([`ResourceMeta`]).
//!
//! # The rules
//!
//! The defaults, before any patient choice, as the design brief states them:
//!
//! 1. Nobody without a verified identity gets anything.
//! 2. Administrators and auditors operate and inspect the system; they never receive a patient's
//!    clinical content (directory resources, Practitioner and Organization, are not clinical).
//! 3. A patient receives their own data and nobody else's. No Consent changes this.
//! 4. Content labelled `PSYTHPN` (psychotherapy note) or confidentiality `V` ("notes" below) is
//!    released only to the practitioner who wrote it, in the organisation that wrote it.
//! 5. Other professionals acting for treatment (`TREAT`) receive the rest of a patient's data
//!    ([`Policy::treating_professionals_see_non_note_data`]).
//! 6. Emergency access (purpose `ETREAT` or `BTG`, "break-the-glass") needs a stated reason; it
//!    opens the rest of the data but not notes ([`Policy::notes_open_to_break_the_glass`]).
//!    Every permit given to an emergency request is flagged ([`Decision::break_the_glass`]), so
//!    that it is audited and shown to the patient.
//! 7. A patient's Consents (resource type `Consent`) go to that patient alone: whom they
//!    restricted is itself private. Enforcement never needs to show them to anyone else.
//!
//! The patient's choices, compiled once into [`CompiledConsents`], combine with these for a
//! professional as follows, in this order:
//!
//! 1. **Deny overrides permit.** If a deny provision in force matches the professional and the
//!    resource, the answer is deny, whatever any permit (or default) says, with one exception:
//! 2. **Break-the-glass** overrides a matching deny that does not hold in an emergency, for the
//!    content break-the-glass opens (non-note data; notes too only if the policy says so). A deny
//!    whose `purpose` is `ETREAT` or `BTG` holds in an emergency: the patient refused emergency
//!    access, and nothing overrides it.
//! 3. With no matching deny: notes go to their author and to a practitioner named by a matching
//!    patient permit; the rest goes by rules 5 and 6 above, or to the author or a practitioner
//!    the patient permitted when the policy closes it to other treating professionals.
//!
//! Between Consents, the most recent (`Consent.dateTime`; none counts as oldest) is named as the
//! deciding one when several match. It cannot turn a matching deny into a permit: two Consents
//! that conflict over the same professional are a permit and a deny, and rule 1 settles that. A
//! patient withdraws a choice by making its Consent `inactive`, not by writing its opposite.
//!
//! # Patient Consents read
//!
//! [`PatientConsent::from_fhir`] reads FHIR R4 Consent JSON with `scope`
//! `http://terminology.hl7.org/CodeSystem/consentscope#patient-privacy`. Only `status` `active`
//! counts (the other R4 statuses are read and ignored); `dateTime` orders Consents. The base
//! rules are the deployment's [`Policy`], so `policy` and `policyRule` are informative only.
//!
//! Each `provision` (and nested `provision`) has a `type`, `permit` or `deny`, and any of:
//!
//! | element | shape | meaning |
//! | --- | --- | --- |
//! | `actor[]` | `reference.identifier` = {`system` `urn:ietf:rfc:3986`, `value` `urn:oid:<organisation OID>`}; `role` any code | professionals acting for that organisation |
//! | `actor[]` | `reference.identifier` = {`system` `urn:oid:1.2.246.537.26`, `value` `<Terhikki number>`}; `role` any code | that practitioner, whatever organisation they act for |
//! | `actor[]` | `role.coding` = {`system` [`Role::CODE_SYSTEM`], `code` one of [`Role::as_str`]}; `reference` with a `display` only (R4 requires one; it names the role for people), or none | professionals in that role |
//! | `data[]` | `meaning` `related`, `reference.identifier` = {`system` `urn:ietf:rfc:3986`, `value` `urn:oid:<service event OID>`} | everything about that service event ([`ResourceMeta::service_event`]) |
//! | `purpose[]` | `http://terminology.hl7.org/CodeSystem/v3-ActReason` `ETREAT` or `BTG`, on a deny only | the denial is about emergency access (FHIR: the purpose of the access the rule controls): it applies to emergency requests only, and nothing overrides it |
//! | `period` | `start` and/or `end`, FHIR dateTimes (an end includes its whole day, month or year) | the provision is in force only then |
//!
//! Within one element the entries are alternatives (any actor, any service event); across
//! elements, and from a provision to the provisions nested in it, all must hold: a nested
//! provision applies inside its parent's scope. So the patient choices are:
//!
//! - deny an organisation, a practitioner, a role: a deny with that `actor`;
//! - deny a service event: a deny with that `data`;
//! - deny everything: a deny with neither;
//! - refuse emergency access: a deny with `purpose` `ETREAT` (alone: all emergency access; with
//!   actors or nested in another deny: theirs); a deny without it may be overridden by
//!   break-the-glass for non-note data, and a patient who wants a denial to hold in an
//!   emergency too adds a second deny with the same actors and the purpose;
//! - let a named practitioner see notes too: a permit whose actors are practitioners (with
//!   `data`, only that service event's);
//! - a validity period on any of these.
//!
//! A permit naming no one (typically the top-level provision around nested denials) is the base
//! rule and grants nothing beyond the defaults. Anything else is refused with a [`ConsentError`]
//! naming its FHIRPath, never skipped: another element or code system, a literal `reference`
//! (this crate resolves nothing), a permit naming an organisation or a role (a permit opens notes,
//! so it names people), a permit for service events without actors, a purpose on a permit, a
//! permit nested in a deny (deny overrides permit, so it could never take effect),
//! `modifierExtension` and `implicitRules`.

use std::fmt;

mod compiled;
mod error;
mod labels;
mod patient_consent;
mod policy;
mod principal;
mod time;

pub use compiled::{CompiledConsents, ProvisionSource};
pub use error::ConsentError;
pub use labels::SecurityLabel;
pub use patient_consent::{PatientConsent, ACT_REASON, CONSENT_SCOPE, TERHIKKI, URI};
pub use policy::Policy;
pub use principal::{Principal, Professional, Purpose, Role};
pub use time::Timestamp;

/// What is about to be released: the metadata kept in clear beside each encrypted resource, so
/// that a decision never needs the clinical payload.
#[derive(Clone, Debug)]
pub struct ResourceMeta<'a> {
    pub resource_type: &'a str,
    /// The patient pseudonym (keyed HMAC); `None` for resources that belong to no patient
    /// (Practitioner, Organization).
    pub patient: Option<&'a str>,
    pub security_labels: &'a [SecurityLabel],
    /// The organisation OID and the practitioner (Terhikki number) that wrote this version.
    pub author_organisation: Option<&'a str>,
    pub author_practitioner: Option<&'a str>,
    /// The OID (bare, like `author_organisation`) of the service event, the course of care, that
    /// the resource belongs to. A patient's denial of a service event names it by this OID, so a
    /// resource of a service event must carry it: with `None` no such denial can match it.
    pub service_event: Option<&'a str>,
}

/// Which rule decided; recorded in the audit log, never shown to the requester.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    NoIdentity,
    DirectoryResource,
    StaffSeeNoClinicalContent,
    OwnData,
    AnotherPatientsData,
    NoteAuthor,
    NoteRestrictedToAuthor,
    Treatment,
    BreakTheGlass,
    /// `ETREAT`/`BTG` without a stated reason.
    BreakTheGlassWithoutReason,
    /// A patient's deny provision matched.
    PatientDenied,
    /// A patient's deny provision that holds in an emergency matched an emergency request.
    EmergencyAccessRefused,
    /// A patient's permit named the practitioner.
    PatientPermitted,
    /// The author receives what they wrote when the policy closes it to other professionals.
    RecordAuthor,
    /// The policy closes non-note data to professionals the patient did not name.
    NotATreatingProfessional,
    /// A patient's Consents are theirs alone: what they restricted, and from whom, is itself
    /// something they may want no one to learn.
    PrivacyChoicesArePrivate,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Permit or deny, with what the audit log records about why. None of it is for the requester,
/// who must not learn that anything was withheld.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision<'c> {
    permit: bool,
    rule: Rule,
    break_the_glass: bool,
    provision: Option<&'c ProvisionSource>,
}

impl<'c> Decision<'c> {
    fn permit(rule: Rule) -> Self {
        Decision { permit: true, rule, break_the_glass: false, provision: None }
    }

    fn deny(rule: Rule) -> Self {
        Decision { permit: false, rule, break_the_glass: false, provision: None }
    }

    fn by(self, provision: &'c ProvisionSource) -> Self {
        Decision { provision: Some(provision), ..self }
    }

    pub fn is_permit(&self) -> bool {
        self.permit
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// A permit given to an emergency request (`ETREAT`/`BTG`): always audited with the stated
    /// reason and shown to the patient.
    pub fn break_the_glass(&self) -> bool {
        self.break_the_glass
    }

    /// The patient's provision that decided: the deny that matched, the permit that named the
    /// practitioner, or the deny that break-the-glass overrode.
    pub fn provision(&self) -> Option<&'c ProvisionSource> {
        self.provision
    }
}

/// Whether `principal` receives every resource of `patient`, whatever its type, labels, author,
/// service event or the patient's Consents: a patient reading their own data (`Rule::OwnData`,
/// decided before anything else). A caller may then page and count that patient's rows in the
/// database and judge only the page: its counts are those that judging every row would give.
pub fn receives_all_of(principal: &Principal, patient: &str) -> bool {
    principal.is_patient(patient)
}

/// Decides whether `principal` may receive the resource described by `meta`, under the
/// deployment's default rules and no patient choices.
pub fn decide(principal: &Principal, meta: &ResourceMeta<'_>) -> Decision<'static> {
    decide_with(principal, meta, &compiled::NO_CONSENTS, &Policy::default())
}

/// Decides whether `principal` may receive the resource described by `meta`, given the patient's
/// Consents (compiled for the patient `meta.patient` names) and the deployment's policy. See the
/// crate documentation for the rules. Allocates nothing.
pub fn decide_with<'c>(
    principal: &Principal,
    meta: &ResourceMeta<'_>,
    consents: &'c CompiledConsents,
    policy: &Policy,
) -> Decision<'c> {
    let Some(patient) = meta.patient else {
        return match principal {
            Principal::Anonymous => Decision::deny(Rule::NoIdentity),
            _ => Decision::permit(Rule::DirectoryResource),
        };
    };
    match principal {
        Principal::Anonymous => Decision::deny(Rule::NoIdentity),
        Principal::Auditor { .. } | Principal::Administrator { .. } => Decision::deny(Rule::StaffSeeNoClinicalContent),
        Principal::Patient { .. } if principal.is_patient(patient) => Decision::permit(Rule::OwnData),
        _ if meta.resource_type == "Consent" => Decision::deny(Rule::PrivacyChoicesArePrivate),
        Principal::Patient { .. } => Decision::deny(Rule::AnotherPatientsData),
        Principal::Professional(professional) => {
            let emergency = professional.purpose.needs_reason();
            let decision = decide_for_professional(professional, emergency, meta, consents, policy);
            Decision { break_the_glass: decision.permit && emergency, ..decision }
        }
    }
}

fn decide_for_professional<'c>(
    professional: &Professional,
    emergency: bool,
    meta: &ResourceMeta<'_>,
    consents: &'c CompiledConsents,
    policy: &Policy,
) -> Decision<'c> {
    // The gateway refuses such a token already; the decision point does not rely on it.
    let reason_stated = professional.reason.as_deref().is_some_and(|reason| !reason.trim().is_empty());
    if emergency && !reason_stated {
        return Decision::deny(Rule::BreakTheGlassWithoutReason);
    }
    let note = meta
        .security_labels
        .iter()
        .any(|label| matches!(label, SecurityLabel::PsychotherapyNote | SecurityLabel::VeryRestricted));
    let opened_by_emergency = emergency && (!note || policy.notes_open_to_break_the_glass);

    let mut overridden = None;
    for deny in consents.denies().iter().filter(|deny| deny.applies(professional, meta)) {
        if deny.holds_in_emergency && emergency {
            return Decision::deny(Rule::EmergencyAccessRefused).by(&deny.source);
        }
        if deny.holds_in_emergency || !opened_by_emergency {
            return Decision::deny(Rule::PatientDenied).by(&deny.source);
        }
        // Break-the-glass may override this one, unless a later match holds in an emergency.
        overridden.get_or_insert(&deny.source);
    }
    if let Some(deny) = overridden {
        return Decision::permit(Rule::BreakTheGlass).by(deny);
    }

    let author = meta.author_organisation == Some(professional.organisation.as_str())
        && meta.author_practitioner == Some(professional.practitioner.as_str());
    let permitted = || {
        consents.permit(professional, meta).map(|permit| Decision::permit(Rule::PatientPermitted).by(&permit.source))
    };
    if note {
        if author {
            Decision::permit(Rule::NoteAuthor)
        } else if let Some(permitted) = permitted() {
            permitted
        } else if opened_by_emergency {
            Decision::permit(Rule::BreakTheGlass)
        } else {
            Decision::deny(Rule::NoteRestrictedToAuthor)
        }
    } else if emergency {
        Decision::permit(Rule::BreakTheGlass)
    } else if policy.treating_professionals_see_non_note_data {
        Decision::permit(Rule::Treatment)
    } else if author {
        Decision::permit(Rule::RecordAuthor)
    } else {
        permitted().unwrap_or(Decision::deny(Rule::NotATreatingProfessional))
    }
}

#[cfg(test)]
mod tests;
