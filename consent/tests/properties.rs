//! Properties of the decision point over any patient choices, principal, resource and policy.
//! Choices are generated as specifications, written out as FHIR Consents, read back and
//! compiled; the expectations are computed from the specifications, not from the crate.

use consent::{
    decide, decide_with, CompiledConsents, PatientConsent, Policy, Principal, Professional, Purpose, ResourceMeta,
    Role, Rule, SecurityLabel, Timestamp, ACT_REASON, CONSENT_SCOPE, TERHIKKI, URI,
};
use proptest::prelude::*;
use serde_json::{json, Value};

const ORGANISATIONS: [&str; 3] = ["1.2.246.10.12345678.10.1", "1.2.246.10.87654321.10.1", "1.2.246.10.11223344.10.2"];
const PRACTITIONERS: [&str; 4] = ["10012345678", "10088888888", "10066666666", "10077777777"];
const SERVICE_EVENTS: [&str; 3] =
    ["1.2.246.10.12345678.10.1.99.1", "1.2.246.10.12345678.10.1.99.2", "1.2.246.10.87654321.10.1.99.7"];
const PATIENTS: [&str; 2] = ["p1", "p2"];
const PURPOSES: [Purpose; 3] = [Purpose::Treatment, Purpose::EmergencyTreatment, Purpose::BreakTheGlass];
const LABELS: [SecurityLabel; 5] = [
    SecurityLabel::PsychotherapyNote,
    SecurityLabel::Psychiatry,
    SecurityLabel::MentalHealth,
    SecurityLabel::Restricted,
    SecurityLabel::VeryRestricted,
];

/// 2024-06-01T00:00:00Z
const NOW: Timestamp = Timestamp::from_unix_seconds(1_717_200_000);

#[derive(Clone, Copy, Debug)]
enum Choice {
    DenyOrganisation(usize),
    DenyPractitioner(usize),
    DenyRole(Role),
    DenyServiceEvent(usize),
    DenyEverything,
    PermitPractitioner(usize, Option<usize>),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum When {
    Always,
    Now,
    Past,
    Future,
}

#[derive(Clone, Debug)]
struct ProvisionSpec {
    choice: Choice,
    refuse_emergency: bool,
    when: When,
}

#[derive(Clone, Debug)]
struct ConsentSpec {
    active: bool,
    day: u32,
    /// Under a top-level permit naming no one, as the provisions' base.
    nested: bool,
    provisions: Vec<ProvisionSpec>,
}

#[derive(Clone, Debug)]
struct Resource {
    patient: Option<&'static str>,
    labels: Vec<SecurityLabel>,
    author_organisation: Option<&'static str>,
    author_practitioner: Option<&'static str>,
    service_event: Option<&'static str>,
}

impl Resource {
    fn meta(&self) -> ResourceMeta<'_> {
        ResourceMeta {
            resource_type: "DocumentReference",
            patient: self.patient,
            security_labels: &self.labels,
            author_organisation: self.author_organisation,
            author_practitioner: self.author_practitioner,
            service_event: self.service_event,
        }
    }

    fn is_note(&self) -> bool {
        self.labels.iter().any(|l| matches!(l, SecurityLabel::PsychotherapyNote | SecurityLabel::VeryRestricted))
    }
}

fn role() -> impl Strategy<Value = Role> {
    prop::sample::select(Role::ALL.to_vec())
}

fn choice() -> impl Strategy<Value = Choice> {
    prop_oneof![
        (0..ORGANISATIONS.len()).prop_map(Choice::DenyOrganisation),
        (0..PRACTITIONERS.len()).prop_map(Choice::DenyPractitioner),
        role().prop_map(Choice::DenyRole),
        (0..SERVICE_EVENTS.len()).prop_map(Choice::DenyServiceEvent),
        Just(Choice::DenyEverything),
        ((0..PRACTITIONERS.len()), prop::option::of(0..SERVICE_EVENTS.len()))
            .prop_map(|(p, e)| Choice::PermitPractitioner(p, e)),
        // Permits twice as likely, so that they meet denials often.
        ((0..PRACTITIONERS.len()), prop::option::of(0..SERVICE_EVENTS.len()))
            .prop_map(|(p, e)| Choice::PermitPractitioner(p, e)),
    ]
}

fn provision() -> impl Strategy<Value = ProvisionSpec> {
    (choice(), any::<bool>(), prop::sample::select(vec![When::Always, When::Now, When::Past, When::Future]))
        .prop_map(|(choice, refuse_emergency, when)| ProvisionSpec { choice, refuse_emergency, when })
}

fn consents() -> impl Strategy<Value = Vec<ConsentSpec>> {
    let consent = (prop::bool::weighted(0.85), 1u32..28, any::<bool>(), prop::collection::vec(provision(), 1..4))
        .prop_map(|(active, day, nested, provisions)| ConsentSpec { active, day, nested, provisions });
    prop::collection::vec(consent, 0..6)
}

fn principal() -> impl Strategy<Value = Principal> {
    let professional = (
        prop::sample::select(PRACTITIONERS.to_vec()),
        role(),
        prop::sample::select(ORGANISATIONS.to_vec()),
        prop::sample::select(PURPOSES.to_vec()),
        prop::bool::weighted(0.9),
    )
        .prop_map(|(practitioner, role, organisation, purpose, with_reason)| {
            Principal::Professional(Professional {
                practitioner: practitioner.into(),
                role,
                organisation: organisation.into(),
                purpose,
                reason: with_reason.then(|| "patient unconscious".into()),
            })
        });
    prop_oneof![
        6 => professional,
        1 => prop::sample::select(PATIENTS.to_vec()).prop_map(|p| Principal::Patient { pseudonym: p.into(), earlier: Vec::new() }),
        1 => Just(Principal::Auditor { subject: "a1".into(), organisation: ORGANISATIONS[0].into() }),
        1 => Just(Principal::Administrator { subject: "admin1".into(), organisation: ORGANISATIONS[0].into() }),
        1 => Just(Principal::Anonymous),
    ]
}

fn resource() -> impl Strategy<Value = Resource> {
    (
        prop::option::weighted(0.9, prop::sample::select(PATIENTS.to_vec())),
        prop::sample::subsequence(LABELS.to_vec(), 0..=LABELS.len()),
        prop::option::weighted(0.9, prop::sample::select(ORGANISATIONS.to_vec())),
        prop::option::weighted(0.9, prop::sample::select(PRACTITIONERS.to_vec())),
        prop::option::weighted(0.8, prop::sample::select(SERVICE_EVENTS.to_vec())),
    )
        .prop_map(|(patient, labels, author_organisation, author_practitioner, service_event)| Resource {
            patient,
            labels,
            author_organisation,
            author_practitioner,
            service_event,
        })
}

fn policy() -> impl Strategy<Value = Policy> {
    (any::<bool>(), any::<bool>()).prop_map(
        |(notes_open_to_break_the_glass, treating_professionals_see_non_note_data)| Policy {
            notes_open_to_break_the_glass,
            treating_professionals_see_non_note_data,
        },
    )
}

fn identifier(system: &str, value: String) -> Value {
    json!({"identifier": {"system": system, "value": value}})
}

fn provision_json(spec: &ProvisionSpec) -> Value {
    let mut provision = match spec.choice {
        Choice::DenyOrganisation(i) => json!({"type": "deny", "actor": [
            {"role": {"coding": [{"code": "IRCP"}]}, "reference": identifier(URI, format!("urn:oid:{}", ORGANISATIONS[i]))}]}),
        Choice::DenyPractitioner(i) => json!({"type": "deny", "actor": [
            {"role": {"coding": [{"code": "IRCP"}]}, "reference": identifier(TERHIKKI, PRACTITIONERS[i].into())}]}),
        Choice::DenyRole(role) => {
            json!({"type": "deny", "actor": [{"role": {"coding": [{"system": Role::CODE_SYSTEM, "code": role.as_str()}]}}]})
        }
        Choice::DenyServiceEvent(i) => json!({"type": "deny", "data": [
            {"meaning": "related", "reference": identifier(URI, format!("urn:oid:{}", SERVICE_EVENTS[i]))}]}),
        Choice::DenyEverything => json!({"type": "deny"}),
        Choice::PermitPractitioner(p, event) => {
            let mut permit = json!({"type": "permit", "actor": [
                {"role": {"coding": [{"code": "IRCP"}]}, "reference": identifier(TERHIKKI, PRACTITIONERS[p].into())}]});
            if let Some(e) = event {
                permit["data"] = json!([{"meaning": "related", "reference": identifier(URI, format!("urn:oid:{}", SERVICE_EVENTS[e]))}]);
            }
            permit
        }
    };
    if spec.refuse_emergency && is_deny(spec.choice) {
        provision["purpose"] = json!([{"system": ACT_REASON, "code": "ETREAT"}]);
    }
    let period = match spec.when {
        When::Always => None,
        When::Now => Some(("2024-01-01", "2024-12-31")),
        When::Past => Some(("2023-01-01", "2023-12-31")),
        When::Future => Some(("2025-01", "2025")),
    };
    if let Some((start, end)) = period {
        provision["period"] = json!({"start": start, "end": end});
    }
    provision
}

fn consent_json(spec: &ConsentSpec) -> Value {
    let provisions: Vec<Value> = spec.provisions.iter().map(provision_json).collect();
    let provision = if spec.nested || provisions.len() > 1 {
        json!({"type": "permit", "provision": provisions})
    } else {
        provisions.into_iter().next().unwrap()
    };
    json!({
        "resourceType": "Consent",
        "id": format!("c{}", spec.day),
        "status": if spec.active { "active" } else { "inactive" },
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "patient-privacy"}]},
        "dateTime": format!("2024-02-{:02}", spec.day),
        "provision": provision,
    })
}

fn compile(specs: &[ConsentSpec]) -> CompiledConsents {
    let read: Vec<PatientConsent> = specs
        .iter()
        .map(|spec| PatientConsent::from_fhir(&consent_json(spec)).expect("generated Consents are in supported shapes"))
        .collect();
    CompiledConsents::compile(&read, NOW)
}

fn is_deny(choice: Choice) -> bool {
    !matches!(choice, Choice::PermitPractitioner(..))
}

/// The provisions in force now.
fn in_force(specs: &[ConsentSpec]) -> impl Iterator<Item = &ProvisionSpec> {
    specs.iter().filter(|c| c.active).flat_map(|c| &c.provisions).filter(|p| matches!(p.when, When::Always | When::Now))
}

fn matches(choice: Choice, professional: &Professional, resource: &Resource) -> bool {
    match choice {
        Choice::DenyOrganisation(i) => professional.organisation == ORGANISATIONS[i],
        Choice::DenyPractitioner(i) => professional.practitioner == PRACTITIONERS[i],
        Choice::DenyRole(role) => professional.role == role,
        Choice::DenyServiceEvent(i) => resource.service_event == Some(SERVICE_EVENTS[i]),
        Choice::DenyEverything => true,
        Choice::PermitPractitioner(p, event) => {
            professional.practitioner == PRACTITIONERS[p]
                && match event {
                    Some(e) => resource.service_event == Some(SERVICE_EVENTS[e]),
                    None => true,
                }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    /// A matching denial is never overridden by a permit, a default or another Consent; only
    /// break-the-glass overrides it, only for what break-the-glass opens, only if the patient did
    /// not refuse emergency access, and always flagged.
    #[test]
    fn a_matching_deny_is_never_overridden_by_a_permit(
        specs in consents(), principal in principal(), resource in resource(), policy in policy(),
    ) {
        let compiled = compile(&specs);
        let decision = decide_with(&principal, &resource.meta(), &compiled, &policy);
        let Principal::Professional(professional) = &principal else { return Ok(()) };
        if resource.patient.is_none() {
            return Ok(());
        }
        let denials: Vec<&ProvisionSpec> = in_force(&specs)
            // A denial with an emergency purpose is about emergency access only.
            .filter(|p| is_deny(p.choice) && matches(p.choice, professional, &resource))
            .filter(|p| !p.refuse_emergency || professional.purpose != Purpose::Treatment)
            .collect();
        if denials.is_empty() || !decision.is_permit() {
            return Ok(());
        }
        let emergency = professional.purpose != Purpose::Treatment;
        prop_assert!(emergency, "a treatment request passed a matching denial: {:?}", decision);
        prop_assert!(denials.iter().all(|d| !d.refuse_emergency), "emergency access refused, yet {:?}", decision);
        prop_assert!(!resource.is_note() || policy.notes_open_to_break_the_glass);
        prop_assert_eq!(decision.rule(), Rule::BreakTheGlass);
        prop_assert!(decision.break_the_glass());
        prop_assert!(decision.provision().is_some(), "the overridden denial is named");
    }

    #[test]
    fn a_patient_never_sees_another_patients_data(
        specs in consents(), me in prop::sample::select(PATIENTS.to_vec()), resource in resource(), policy in policy(),
    ) {
        let principal = Principal::Patient { pseudonym: me.into(), earlier: Vec::new() };
        let compiled = compile(&specs);
        let decision = decide_with(&principal, &resource.meta(), &compiled, &policy);
        match resource.patient {
            Some(owner) if owner != me => prop_assert!(!decision.is_permit()),
            // A patient's own data is theirs whatever they chose.
            Some(_) => prop_assert_eq!(decision.rule(), Rule::OwnData),
            None => {}
        }
    }

    #[test]
    fn staff_never_get_clinical_content(
        specs in consents(), resource in resource(), policy in policy(), auditor in any::<bool>(),
    ) {
        let principal = if auditor {
            Principal::Auditor { subject: "a1".into(), organisation: ORGANISATIONS[0].into() }
        } else {
            Principal::Administrator { subject: "admin1".into(), organisation: ORGANISATIONS[0].into() }
        };
        let compiled = compile(&specs);
        let decision = decide_with(&principal, &resource.meta(), &compiled, &policy);
        prop_assert_eq!(decision.is_permit(), resource.patient.is_none());
    }

    /// A psychotherapy note reaches a professional other than its author only through a patient
    /// permit naming them, or through break-the-glass where the deployment opened notes to it.
    #[test]
    fn a_note_reaches_no_one_but_its_author_without_a_matching_permit(
        specs in consents(), principal in principal(), mut resource in resource(), policy in policy(),
    ) {
        if !resource.labels.contains(&SecurityLabel::PsychotherapyNote) {
            resource.labels.push(SecurityLabel::PsychotherapyNote);
        }
        let compiled = compile(&specs);
        let decision = decide_with(&principal, &resource.meta(), &compiled, &policy);
        let Principal::Professional(professional) = &principal else { return Ok(()) };
        if resource.patient.is_none() || !decision.is_permit() {
            return Ok(());
        }
        let author = resource.author_organisation == Some(professional.organisation.as_str())
            && resource.author_practitioner == Some(professional.practitioner.as_str());
        let permitted = in_force(&specs).any(|p| !is_deny(p.choice) && matches(p.choice, professional, &resource));
        if author {
            return Ok(());
        }
        if permitted {
            prop_assert!(matches!(decision.rule(), Rule::PatientPermitted | Rule::BreakTheGlass));
        } else {
            prop_assert!(policy.notes_open_to_break_the_glass && decision.break_the_glass(), "{:?}", decision);
            prop_assert_eq!(decision.rule(), Rule::BreakTheGlass);
        }
    }

    /// `decide` is the defaults: no Consents, the default policy.
    #[test]
    fn decide_is_decide_with_no_choices(principal in principal(), resource in resource()) {
        let meta = resource.meta();
        let none = CompiledConsents::default();
        prop_assert_eq!(decide(&principal, &meta), decide_with(&principal, &meta, &none, &Policy::default()));
    }

    /// Whatever arrives as a Consent, reading it answers; it does not panic.
    #[test]
    fn reading_any_json_never_panics(value in json_value()) {
        let _ = PatientConsent::from_fhir(&value);
        let mut consent = consent_json(&ConsentSpec { active: true, day: 1, nested: true, provisions: vec![
            ProvisionSpec { choice: Choice::DenyEverything, refuse_emergency: false, when: When::Now },
        ]});
        consent["provision"]["provision"][0]["provision"] = json!([value]);
        let _ = PatientConsent::from_fhir(&consent);
    }
}

/// JSON built from the words a Consent uses, so the reader is driven deep, not refused at once.
fn json_value() -> impl Strategy<Value = Value> {
    let words = prop::sample::select(vec![
        "type",
        "permit",
        "deny",
        "actor",
        "role",
        "reference",
        "identifier",
        "system",
        "value",
        "data",
        "meaning",
        "related",
        "purpose",
        "period",
        "start",
        "end",
        "provision",
        "coding",
        "code",
        URI,
        TERHIKKI,
        ACT_REASON,
        "ETREAT",
        "urn:oid:1.2.3",
        "2024-01-01",
        "2024-13",
        "nurse",
        Role::CODE_SYSTEM,
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        words.clone().prop_map(Value::from),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((words.clone(), inner), 0..5)
                .prop_map(|entries| Value::Object(entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())),
        ]
    })
}
