//! Tests of the decision: roles, labels, purposes, break-the-glass and patients' Consents.

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
    Principal::Patient { pseudonym: pseudonym.into(), earlier: Vec::new() }
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
    check(&[refuse_emergency_access()], open_notes, &cases(&[(emergency_nurse, note, deny(EmergencyAccessRefused))]));

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
    let dated =
        |start: &str, end: &str| consent("2024-01-01", json!({"type": "deny", "period": {"start": start, "end": end}}));
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
        consent("2024-01-01", json!({"type": "permit", "actor": [practitioner(PERMITTED)], "period": {"start": start}}))
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
        ("/provision", "Consent.provision.period.end", json!({"period": {"start": "2024-05-01", "end": "2024-04-01"}})),
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
        (nested, "Consent.provision.provision[0].actor[0]", json!({"type": "permit", "actor": [organisation(ORG)]})),
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

/// `receives_all_of` says a principal receives every row of a patient only where every decision
/// permits, whatever the row and the patient's Consents: what lets a caller page that patient's
/// rows in the database.
#[test]
fn a_principal_who_receives_all_of_a_patient_is_permitted_every_row() {
    let every_choice = compile(&[
        deny_organisation(ORG),
        deny_service_event(THERAPY),
        deny_role(Role::Physician),
        deny_everything(),
        refuse_emergency_access(),
    ]);
    let labels: [&[SecurityLabel]; 3] = [NOTE, &[SecurityLabel::MentalHealth], &[]];
    let principals = [
        Principal::Patient { pseudonym: "p1".into(), earlier: Vec::new() },
        Principal::Patient { pseudonym: "p2".into(), earlier: Vec::new() },
        author(),
        gp(),
        emergency_nurse(),
        Principal::Anonymous,
    ];
    for principal in &principals {
        let all = receives_all_of(principal, "p1");
        assert_eq!(all, *principal == Principal::Patient { pseudonym: "p1".into(), earlier: Vec::new() });
        for resource_type in ["Composition", "Bundle", "Consent", "Observation", "Patient"] {
            for labels in labels {
                for consents in [&every_choice, CompiledConsents::none()] {
                    let meta = ResourceMeta { resource_type, ..meta(Some("p1"), labels) };
                    let decision = decide_with(principal, &meta, consents, &Policy::default());
                    if all {
                        assert!(decision.is_permit(), "{resource_type} {labels:?}");
                    }
                }
            }
        }
    }
}
