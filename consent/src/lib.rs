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
        Principal::Patient { pseudonym } if pseudonym == patient => Decision::permit(Rule::OwnData),
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
mod tests {
    use serde_json::{json, Value};

    use super::*;

    const ORG: &str = "1.2.246.10.12345678.10.1";
    const OTHER_ORG: &str = "1.2.246.10.87654321.10.1";
    const THIRD_ORG: &str = "1.2.246.10.11223344.10.1";
    const THERAPY: &str = "1.2.246.10.12345678.10.1.99.1";
    const OTHER_EVENT: &str = "1.2.246.10.87654321.10.1.99.7";
    const AUTHOR: &str = "10012345678";
    const PERMITTED: &str = "10066666666";
    const NOW: Timestamp = Timestamp::from_unix_seconds(1_717_200_000); // 2024-06-01T00:00:00Z

    const NOTE: &[SecurityLabel] = &[SecurityLabel::PsychotherapyNote, SecurityLabel::Restricted];

    fn meta<'a>(patient: Option<&'a str>, labels: &'a [SecurityLabel]) -> ResourceMeta<'a> {
        ResourceMeta {
            resource_type: "Composition",
            patient,
            security_labels: labels,
            author_organisation: Some(ORG),
            author_practitioner: Some(AUTHOR),
            service_event: Some(THERAPY),
        }
    }

    /// The therapy note, a non-note resource of the same course, and one from another provider's
    /// service event.
    fn note() -> ResourceMeta<'static> {
        meta(Some("p1"), NOTE)
    }
    fn therapy_data() -> ResourceMeta<'static> {
        meta(Some("p1"), &[SecurityLabel::MentalHealth])
    }
    fn other_data() -> ResourceMeta<'static> {
        ResourceMeta {
            author_organisation: Some(OTHER_ORG),
            author_practitioner: Some("10088888888"),
            service_event: Some(OTHER_EVENT),
            ..meta(Some("p1"), &[])
        }
    }

    fn professional(role: Role, org: &str, practitioner: &str, purpose: Purpose) -> Principal {
        Principal::Professional(Professional {
            practitioner: practitioner.into(),
            role,
            organisation: org.into(),
            purpose,
            reason: (purpose != Purpose::Treatment).then(|| "unconscious patient".into()),
        })
    }
    fn author() -> Principal {
        professional(Role::Psychotherapist, ORG, AUTHOR, Purpose::Treatment)
    }
    fn colleague() -> Principal {
        professional(Role::Psychotherapist, ORG, "10099999999", Purpose::Treatment)
    }
    fn gp() -> Principal {
        professional(Role::Physician, OTHER_ORG, "10088888888", Purpose::Treatment)
    }
    fn permitted() -> Principal {
        professional(Role::Psychiatrist, THIRD_ORG, PERMITTED, Purpose::Treatment)
    }
    fn emergency_nurse() -> Principal {
        professional(Role::Nurse, THIRD_ORG, "10077777777", Purpose::BreakTheGlass)
    }
    fn patient(pseudonym: &str) -> Principal {
        Principal::Patient { pseudonym: pseudonym.into() }
    }
    fn auditor() -> Principal {
        Principal::Auditor { subject: "a1".into(), organisation: ORG.into() }
    }
    fn administrator() -> Principal {
        Principal::Administrator { subject: "admin1".into(), organisation: ORG.into() }
    }

    fn consent(date: &str, provision: Value) -> Value {
        json!({
            "resourceType": "Consent",
            "id": format!("c-{date}"),
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "dateTime": date,
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": provision,
        })
    }
    fn organisation(oid: &str) -> Value {
        json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
               "reference": {"identifier": {"system": URI, "value": format!("urn:oid:{oid}")}}})
    }
    fn practitioner(number: &str) -> Value {
        json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
               "reference": {"identifier": {"system": TERHIKKI, "value": number}}})
    }
    fn role(role: Role) -> Value {
        json!({"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": role.as_str()}]},
               "reference": {"display": format!("any {}", role.as_str())}})
    }
    fn service_event(oid: &str) -> Value {
        json!({"meaning": "related", "reference": {"identifier": {"system": URI, "value": format!("urn:oid:{oid}")}}})
    }
    const EMERGENCY: &str = "ETREAT";

    fn deny_organisation(oid: &str) -> Value {
        consent("2024-01-10", json!({"type": "permit", "provision": [{"type": "deny", "actor": [organisation(oid)]}]}))
    }
    fn deny_service_event(oid: &str) -> Value {
        consent("2024-01-11", json!({"type": "deny", "data": [service_event(oid)]}))
    }
    fn deny_role(denied: Role) -> Value {
        consent("2024-01-12", json!({"type": "deny", "actor": [role(denied)]}))
    }
    fn deny_everything() -> Value {
        consent("2024-01-13", json!({"type": "deny"}))
    }
    fn refuse_emergency_access() -> Value {
        consent("2024-01-14", json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": EMERGENCY}]}))
    }
    fn permit_practitioner(number: &str) -> Value {
        consent("2024-01-15", json!({"type": "permit", "actor": [practitioner(number)]}))
    }

    fn compile(consents: &[Value]) -> CompiledConsents {
        let consents: Vec<PatientConsent> =
            consents.iter().map(|c| PatientConsent::from_fhir(c).expect("a Consent in a supported shape")).collect();
        CompiledConsents::compile(&consents, NOW)
    }

    type Case = (fn() -> Principal, fn() -> ResourceMeta<'static>, Option<Rule>, Option<Rule>);
    /// A principal, a resource, and the expected permit or denial (see [`permit`] and [`deny`]).
    type Line = (fn() -> Principal, fn() -> ResourceMeta<'static>, (Option<Rule>, Option<Rule>));

    /// One line per principal and resource: the rule of the permit (`Some` in the third column) or
    /// of the denial (fourth column).
    fn check(consents: &[Value], policy: Policy, cases: &[Case]) {
        let compiled = compile(consents);
        for (line, (principal, resource, permit, deny)) in cases.iter().enumerate() {
            let decision = decide_with(&principal(), &resource(), &compiled, &policy);
            let expected = permit.or(*deny).unwrap();
            assert_eq!(
                (decision.is_permit(), decision.rule()),
                (permit.is_some(), expected),
                "case {line}: {:?} reading {}",
                principal(),
                resource().security_labels.len()
            );
        }
    }

    use Rule::*;
    fn permit(rule: Rule) -> (Option<Rule>, Option<Rule>) {
        (Some(rule), None)
    }
    fn deny(rule: Rule) -> (Option<Rule>, Option<Rule>) {
        (None, Some(rule))
    }
    fn cases(lines: &[Line]) -> Vec<Case> {
        lines.iter().map(|(principal, resource, (p, d))| (*principal, *resource, *p, *d)).collect()
    }

    /// What every patient choice leaves alone: the patient, other patients and staff.
    fn unaffected() -> Vec<Line> {
        vec![
            (|| patient("p1"), note, permit(OwnData)),
            (|| patient("p1"), therapy_data, permit(OwnData)),
            (|| patient("p2"), therapy_data, deny(AnotherPatientsData)),
            (auditor, therapy_data, deny(StaffSeeNoClinicalContent)),
            (administrator, note, deny(StaffSeeNoClinicalContent)),
        ]
    }

    fn check_choice(consents: &[Value], lines: &[Line]) {
        let mut all = unaffected();
        all.extend_from_slice(lines);
        check(consents, Policy::default(), &cases(&all));
    }

    #[test]
    fn defaults_without_choices() {
        check_choice(
            &[],
            &[
                (author, note, permit(NoteAuthor)),
                (colleague, note, deny(NoteRestrictedToAuthor)),
                (gp, note, deny(NoteRestrictedToAuthor)),
                (permitted, note, deny(NoteRestrictedToAuthor)),
                (emergency_nurse, note, deny(NoteRestrictedToAuthor)),
                (gp, therapy_data, permit(Treatment)),
                (colleague, therapy_data, permit(Treatment)),
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
            ],
        );
    }

    #[test]
    fn an_organisation_denied() {
        check_choice(
            &[deny_organisation(OTHER_ORG)],
            &[
                (gp, therapy_data, deny(PatientDenied)),
                (gp, other_data, deny(PatientDenied)),
                (gp, note, deny(PatientDenied)),
                (author, note, permit(NoteAuthor)),
                (colleague, therapy_data, permit(Treatment)),
                (permitted, therapy_data, permit(Treatment)),
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
            ],
        );
        // The author's own organisation denied: the author is denied too.
        check_choice(&[deny_organisation(ORG)], &[(author, note, deny(PatientDenied))]);
    }

    #[test]
    fn a_service_event_denied() {
        check_choice(
            &[deny_service_event(THERAPY)],
            &[
                (gp, therapy_data, deny(PatientDenied)),
                (gp, other_data, permit(Treatment)),
                (colleague, therapy_data, deny(PatientDenied)),
                (author, note, deny(PatientDenied)),
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
                (emergency_nurse, note, deny(PatientDenied)),
            ],
        );
    }

    #[test]
    fn a_role_denied() {
        check_choice(
            &[deny_role(Role::Physician)],
            &[
                (gp, therapy_data, deny(PatientDenied)),
                (gp, other_data, deny(PatientDenied)),
                (permitted, therapy_data, permit(Treatment)),
                (author, note, permit(NoteAuthor)),
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
            ],
        );
    }

    #[test]
    fn everything_denied() {
        check_choice(
            &[deny_everything()],
            &[
                (gp, therapy_data, deny(PatientDenied)),
                (gp, other_data, deny(PatientDenied)),
                (author, note, deny(PatientDenied)),
                (colleague, therapy_data, deny(PatientDenied)),
                // Break-the-glass overrides it for non-note data only.
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
                (emergency_nurse, note, deny(PatientDenied)),
            ],
        );
    }

    #[test]
    fn emergency_access_refused() {
        check_choice(
            &[refuse_emergency_access()],
            &[
                // It is about emergency access only: treatment goes on as before.
                (gp, therapy_data, permit(Treatment)),
                (emergency_nurse, therapy_data, deny(EmergencyAccessRefused)),
                (emergency_nurse, note, deny(EmergencyAccessRefused)),
            ],
        );
        // Nested in an organisation's denial, the refusal covers that organisation only.
        let nested = consent(
            "2024-02-01",
            json!({"type": "deny", "actor": [organisation(THIRD_ORG)],
                   "provision": [{"type": "deny", "purpose": [{"system": ACT_REASON, "code": "BTG"}]}]}),
        );
        check_choice(
            &[nested],
            &[
                (emergency_nurse, therapy_data, deny(EmergencyAccessRefused)),
                (permitted, therapy_data, deny(PatientDenied)),
                (gp, therapy_data, permit(Treatment)),
                (
                    || professional(Role::Nurse, OTHER_ORG, "10077777777", Purpose::EmergencyTreatment),
                    therapy_data,
                    permit(BreakTheGlass),
                ),
            ],
        );
    }

    #[test]
    fn a_named_practitioner_permitted() {
        check_choice(
            &[permit_practitioner(PERMITTED)],
            &[
                (permitted, note, permit(PatientPermitted)),
                (permitted, therapy_data, permit(Treatment)),
                (gp, note, deny(NoteRestrictedToAuthor)),
                (author, note, permit(NoteAuthor)),
            ],
        );
        // Deny wins over the permit, in whichever order the Consents came.
        for consents in [
            [permit_practitioner(PERMITTED), deny_organisation(THIRD_ORG)],
            [deny_organisation(THIRD_ORG), permit_practitioner(PERMITTED)],
        ] {
            check_choice(&consents, &[(permitted, note, deny(PatientDenied))]);
        }
        // A permit for one service event opens that one only.
        let scoped = consent(
            "2024-03-01",
            json!({"type": "permit", "actor": [practitioner(PERMITTED)], "data": [service_event(OTHER_EVENT)]}),
        );
        check_choice(&[scoped], &[(permitted, note, deny(NoteRestrictedToAuthor))]);
    }

    #[test]
    fn the_policy_knobs() {
        let open_notes = Policy { notes_open_to_break_the_glass: true, ..Policy::default() };
        check(
            &[deny_everything()],
            open_notes,
            &cases(&[(emergency_nurse, note, permit(BreakTheGlass)), (gp, note, deny(PatientDenied))]),
        );
        check(&[], open_notes, &cases(&[(emergency_nurse, note, permit(BreakTheGlass))]));
        check(
            &[refuse_emergency_access()],
            open_notes,
            &cases(&[(emergency_nurse, note, deny(EmergencyAccessRefused))]),
        );

        let closed = Policy { treating_professionals_see_non_note_data: false, ..Policy::default() };
        check(
            &[permit_practitioner(PERMITTED)],
            closed,
            &cases(&[
                (gp, therapy_data, deny(NotATreatingProfessional)),
                (author, therapy_data, permit(RecordAuthor)),
                (permitted, therapy_data, permit(PatientPermitted)),
                (emergency_nurse, therapy_data, permit(BreakTheGlass)),
            ]),
        );
    }

    #[test]
    fn a_patients_consents_go_to_that_patient_alone() {
        let consent = ResourceMeta {
            resource_type: "Consent",
            author_organisation: None,
            author_practitioner: None,
            ..meta(Some("p1"), &[])
        };
        assert!(decide(&patient("p1"), &consent).is_permit());
        for other in [patient("p2"), author(), gp(), emergency_nurse(), auditor(), administrator()] {
            let decision = decide(&other, &consent);
            assert!(!decision.is_permit(), "{other:?}");
        }
        assert_eq!(decide(&gp(), &consent).rule(), Rule::PrivacyChoicesArePrivate);
    }

    #[test]
    fn periods_and_statuses_decide_what_is_in_force() {
        let dated = |start: &str, end: &str| {
            consent("2024-01-01", json!({"type": "deny", "period": {"start": start, "end": end}}))
        };
        check_choice(&[dated("2024-05-01", "2024-06-01")], &[(gp, therapy_data, deny(PatientDenied))]);
        check_choice(&[dated("2024-01-01", "2024-05-30")], &[(gp, therapy_data, permit(Treatment))]);
        check_choice(&[dated("2024-06-02", "2024-12-31")], &[(gp, therapy_data, permit(Treatment))]);
        check_choice(&[dated("2024-01-01", "2024-05-31T23:59:59Z")], &[(gp, therapy_data, permit(Treatment))]);
        // A date has no zone: a deny that ended on the 31st, or starts on the 1st, somewhere on
        // Earth, still holds at midnight UTC.
        check_choice(&[dated("2024-01-01", "2024-05-31")], &[(gp, therapy_data, deny(PatientDenied))]);
        check_choice(&[dated("2024-06-01", "2024-12-31")], &[(gp, therapy_data, deny(PatientDenied))]);

        // A permit is read in the narrowest span its dates can mean.
        let permit_from = |start: &str| {
            consent(
                "2024-01-01",
                json!({"type": "permit", "actor": [practitioner(PERMITTED)], "period": {"start": start}}),
            )
        };
        check_choice(&[permit_from("2024-06-01")], &[(permitted, note, deny(NoteRestrictedToAuthor))]);
        check_choice(&[permit_from("2024-05-31")], &[(permitted, note, permit(PatientPermitted))]);

        // A cache of the compiled form learns when to compile again: the next bound ahead of
        // now, read in whichever zone comes first: the 1 June end of the first deny is over from
        // 10:00 UTC in the zone furthest ahead (UTC+14).
        let compiled = compile(&[dated("2024-05-01", "2024-06-01"), dated("2024-06-03T00:00:00Z", "2025")]);
        assert_eq!(compiled.changes_at(), Some(Timestamp::from_unix_seconds(1_717_200_000 + 10 * 3600)));
        assert_eq!(compile(&[dated("2024-01-01", "2024-02-01")]).changes_at(), None);

        for status in ["inactive", "draft", "proposed", "rejected", "entered-in-error"] {
            let mut withdrawn = deny_everything();
            withdrawn["status"] = json!(status);
            let read = PatientConsent::from_fhir(&withdrawn).unwrap();
            assert!(!read.is_active());
            assert!(CompiledConsents::compile(&[read], NOW).is_empty(), "{status}");
        }
    }

    #[test]
    fn the_decision_names_the_most_recent_matching_provision() {
        let older = consent("2023-01-01", json!({"type": "deny", "actor": [organisation(OTHER_ORG)]}));
        let newer = consent(
            "2024-05-01T10:00:00+03:00",
            json!({"type": "permit", "provision": [{"type": "deny", "actor": [role(Role::Physician)]}]}),
        );
        let compiled = compile(&[older, newer]);
        let decision = decide_with(&gp(), &therapy_data(), &compiled, &Policy::default());
        let source = decision.provision().unwrap();
        assert_eq!(source.consent_id(), Some("c-2024-05-01T10:00:00+03:00"));
        assert_eq!(source.path(), "Consent.provision.provision[0]");
        assert_eq!(source.to_string(), "Consent/c-2024-05-01T10:00:00+03:00 Consent.provision.provision[0]");

        // Break-the-glass names the denial it overrode, and is flagged.
        let compiled = compile(&[deny_everything()]);
        let decision = decide_with(&emergency_nurse(), &therapy_data(), &compiled, &Policy::default());
        assert!(decision.is_permit() && decision.break_the_glass());
        assert_eq!(decision.provision().map(ProvisionSource::path), Some("Consent.provision"));
    }

    #[test]
    fn every_emergency_permit_is_flagged_and_needs_a_reason() {
        let author_in_emergency = professional(Role::Psychotherapist, ORG, AUTHOR, Purpose::EmergencyTreatment);
        let decision = decide(&author_in_emergency, &note());
        assert!(decision.is_permit() && decision.break_the_glass() && decision.rule() == NoteAuthor);
        assert!(!decide(&gp(), &therapy_data()).break_the_glass());
        assert!(!decide(&emergency_nurse(), &note()).break_the_glass());

        for reason in [None, Some("  ".to_owned())] {
            let Principal::Professional(mut nurse) = emergency_nurse() else { unreachable!() };
            nurse.reason = reason;
            let decision = decide(&Principal::Professional(nurse), &therapy_data());
            assert_eq!((decision.is_permit(), decision.rule()), (false, BreakTheGlassWithoutReason));
        }
    }

    #[test]
    fn only_the_authoring_therapist_reads_a_note() {
        assert_eq!(decide(&author(), &meta(Some("p1"), NOTE)).rule(), Rule::NoteAuthor);
        for other in [
            colleague(),
            professional(Role::Physician, ORG, "10088888888", Purpose::Treatment),
            professional(Role::Physician, OTHER_ORG, "10088888888", Purpose::Treatment),
            professional(Role::Nurse, ORG, "10077777777", Purpose::BreakTheGlass),
            professional(Role::Psychotherapist, OTHER_ORG, AUTHOR, Purpose::Treatment),
        ] {
            let decision = decide(&other, &meta(Some("p1"), NOTE));
            assert_eq!((decision.is_permit(), decision.rule()), (false, NoteRestrictedToAuthor), "{other:?}");
        }
    }

    #[test]
    fn treating_professionals_see_non_note_data_and_break_the_glass_is_marked() {
        let decision = decide(&gp(), &meta(Some("p1"), &[SecurityLabel::Restricted]));
        assert!(decision.is_permit() && decision.rule() == Treatment);
        let emergency = professional(Role::Nurse, OTHER_ORG, "10077777777", Purpose::EmergencyTreatment);
        let decision = decide(&emergency, &meta(Some("p1"), &[]));
        assert!(decision.is_permit() && decision.rule() == BreakTheGlass && decision.break_the_glass());
    }

    #[test]
    fn patients_see_their_own_data_only() {
        assert!(decide(&patient("p1"), &meta(Some("p1"), NOTE)).is_permit());
        assert_eq!(decide(&patient("p1"), &meta(Some("p2"), &[])).rule(), AnotherPatientsData);
    }

    #[test]
    fn staff_and_strangers_get_no_clinical_content() {
        for principal in [Principal::Anonymous, auditor(), administrator()] {
            assert!(!decide(&principal, &meta(Some("p1"), &[])).is_permit(), "{principal:?}");
        }
        assert!(!decide(&Principal::Anonymous, &meta(None, &[])).is_permit());
        let decision = decide(&administrator(), &meta(None, &[]));
        assert!(decision.is_permit() && decision.rule() == DirectoryResource);
    }

    /// Each line: a change to a valid Consent, and the FHIRPath the refusal must name.
    #[test]
    fn shapes_not_understood_are_refused_by_path() {
        let base = || deny_organisation(OTHER_ORG);
        let nested = "/provision/provision/0";
        let cases: &[(&str, &str, Value)] = &[
            ("", "Consent.resourceType", json!({"resourceType": "Patient"})),
            ("", "Consent.status", json!({"status": "withdrawn"})),
            ("", "Consent.scope", json!({"scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research"}]}})),
            ("", "Consent.dateTime", json!({"dateTime": "yesterday"})),
            ("", "Consent.modifierExtension", json!({"modifierExtension": [{"url": "http://example.org/x"}]})),
            ("", "Consent.implicitRules", json!({"implicitRules": "http://example.org/rules"})),
            ("/provision", "Consent.provision.type", json!({"type": "maybe"})),
            ("/provision", "Consent.provision.securityLabel", json!({"securityLabel": [{"code": "R"}]})),
            ("/provision", "Consent.provision.action", json!({"action": [{"text": "access"}]})),
            (
                "/provision",
                "Consent.provision.period.end",
                json!({"period": {"start": "2024-05-01", "end": "2024-04-01"}}),
            ),
            (nested, "Consent.provision.provision[0].class", json!({"class": [{"code": "Observation"}]})),
            (
                nested,
                "Consent.provision.provision[0].purpose[0]",
                json!({"purpose": [{"system": ACT_REASON, "code": "TREAT"}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].reference.reference",
                json!({"actor": [{"reference": {"reference": "Organization/1"}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[1].reference.identifier.system",
                json!({"actor": [organisation(ORG), {"reference": {"identifier": {"system": "urn:oid:1.2.246.21", "value": "x"}}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].reference.identifier.value",
                json!({"actor": [{"reference": {"identifier": {"system": URI, "value": "urn:oid:1.2.246.01"}}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].reference.identifier.value",
                json!({"actor": [{"reference": {"identifier": {"system": TERHIKKI, "value": "A1"}}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].role",
                json!({"actor": [{"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": "janitor"}]}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].role",
                json!({"actor": [{"role": {"coding": [{"system": "http://example.org", "code": "physician"}]}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0].role",
                json!({"actor": [{"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": "nurse"}]}, "reference": {"identifier": {"system": URI, "value": "urn:oid:1.2.3"}}}]}),
            ),
            (nested, "Consent.provision.provision[0].actor", json!({"actor": []})),
            (
                nested,
                "Consent.provision.provision[0].data[0].meaning",
                json!({"data": [{"meaning": "instance", "reference": {"identifier": {"system": URI, "value": "urn:oid:1.2.3"}}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].data[0].reference.identifier.system",
                json!({"data": [{"meaning": "related", "reference": {"identifier": {"system": "http://example.org", "value": "1"}}}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].provision[1].type",
                json!({"provision": [{"type": "deny"}, {"type": "permit", "actor": [practitioner(PERMITTED)]}]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor[0]",
                json!({"type": "permit", "actor": [organisation(ORG)]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].actor",
                json!({"type": "permit", "actor": null, "data": [service_event(THERAPY)]}),
            ),
            (
                nested,
                "Consent.provision.provision[0].purpose",
                json!({"type": "permit", "actor": [practitioner(PERMITTED)], "purpose": [{"system": ACT_REASON, "code": "ETREAT"}]}),
            ),
        ];
        for (at, path, change) in cases {
            let mut consent = base();
            let target = consent.pointer_mut(at).unwrap();
            for (key, value) in change.as_object().unwrap() {
                if value.is_null() {
                    target.as_object_mut().unwrap().remove(key);
                } else {
                    target[key] = value.clone();
                }
            }
            let error = PatientConsent::from_fhir(&consent).expect_err(path);
            assert_eq!(error.path(), *path, "{error}");
        }
        assert_eq!(
            PatientConsent::from_fhir(&json!({"resourceType": "Consent", "status": "active", "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]}}))
                .unwrap_err()
                .path(),
            "Consent.provision"
        );
    }

    #[test]
    fn errors_do_not_repeat_values() {
        let mut consent = deny_organisation(OTHER_ORG);
        consent["provision"]["provision"][0]["actor"][0]["reference"]["identifier"]["value"] = json!("urn:oid:secret");
        let error = PatientConsent::from_fhir(&consent).unwrap_err();
        assert!(!error.to_string().contains("secret"), "{error}");
    }
}
