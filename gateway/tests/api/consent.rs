//! The consent matrix: every kind of principal × every patient choice × every path data leaves
//! by, on both backends. Each cell asserts exactly which resources are visible, against an
//! oracle written from the rules in the issue (not from the consent crate), and that a withheld
//! resource is answered exactly like an absent one.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use vaitio_conformance::client::{Answer, Client};

use super::submission::record;
use super::support::*;

/// The service event of the therapy, and one of another provider.
const THERAPY: &str = "1.2.246.10.12345678.10.1.77.1";
const ELSEWHERE: &str = "1.2.246.10.87654321.10.1.5.1";
const COLLEAGUE: &str = "10099999999";
const GP_HERE: &str = "10055555555";
const GP_ELSEWHERE: &str = "10088888888";
const NURSE: &str = "10077777777";
const EMERGENCY_DOCTOR: &str = "10066666666";
const OTHER_HETU: &str = "010101A900R";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Author,
    ColleagueTherapist,
    GpHere,
    GpElsewhere,
    Nurse,
    EmergencyDoctor,
    PatientSelf,
    OtherPatient,
    Auditor,
    Administrator,
}

const EVERYONE: [Who; 10] = [
    Who::Author,
    Who::ColleagueTherapist,
    Who::GpHere,
    Who::GpElsewhere,
    Who::Nurse,
    Who::EmergencyDoctor,
    Who::PatientSelf,
    Who::OtherPatient,
    Who::Auditor,
    Who::Administrator,
];

/// A professional as the oracle sees them: organisation, registration number, role, emergency.
struct Professional {
    org: &'static str,
    practitioner: &'static str,
    role: &'static str,
    emergency: bool,
}

impl Who {
    fn professional(self) -> Option<Professional> {
        let p = |org, practitioner, role, emergency| Some(Professional { org, practitioner, role, emergency });
        match self {
            Who::Author => p(ORG, THERAPIST, "psychotherapist", false),
            Who::ColleagueTherapist => p(ORG, COLLEAGUE, "psychotherapist", false),
            Who::GpHere => p(ORG, GP_HERE, "physician", false),
            Who::GpElsewhere => p(OTHER_ORG, GP_ELSEWHERE, "physician", false),
            Who::Nurse => p(ORG, NURSE, "nurse", false),
            Who::EmergencyDoctor => p(OTHER_ORG, EMERGENCY_DOCTOR, "physician", true),
            _ => None,
        }
    }

    fn client(self, gateway: &TestGateway) -> Client {
        match self {
            Who::PatientSelf => gateway.patient(HETU),
            Who::OtherPatient => gateway.patient(OTHER_HETU),
            Who::Auditor => gateway.professional(ORG, "auditor-1", "auditor"),
            Who::Administrator => gateway.professional(ORG, "admin-1", "administrator"),
            Who::EmergencyDoctor => {
                let cert = gateway.org_certificate(OTHER_ORG);
                let mut claims = gateway.claims("physician", Some(OTHER_ORG), EMERGENCY_DOCTOR, Some(&cert.0));
                claims.purpose = Some("BTG".into());
                claims.reason = Some("unconscious on arrival".into());
                gateway.client_with(Some(cert), Some(gateway.token(&claims)))
            }
            other => {
                let p = other.professional().unwrap();
                gateway.professional(p.org, p.practitioner, p.role)
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Nothing,
    DenyOrganisation,
    DenyServiceEvent,
    DenyRole,
    DenyEverything,
    PermitGpHere,
    RefuseEmergencyAccess,
}

const CHOICES: [Choice; 7] = [
    Choice::Nothing,
    Choice::DenyOrganisation,
    Choice::DenyServiceEvent,
    Choice::DenyRole,
    Choice::DenyEverything,
    Choice::PermitGpHere,
    Choice::RefuseEmergencyAccess,
];

fn recipient(system: &str, value: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
           "reference": {"identifier": {"system": system, "value": value}}})
}

impl Choice {
    /// The patient's Consent expressing the choice, in the shapes the gateway documents.
    fn consent(self, patient_id: &str) -> Option<Value> {
        let provision = match self {
            Choice::Nothing => return None,
            Choice::DenyOrganisation => {
                json!({"type": "deny", "actor": [recipient("urn:ietf:rfc:3986", &format!("urn:oid:{OTHER_ORG}"))]})
            }
            Choice::DenyServiceEvent => json!({"type": "deny", "data": [{"meaning": "related",
                "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{THERAPY}")}}}]}),
            Choice::DenyRole => json!({"type": "deny", "actor": [{"role": {"coding": [
                {"system": "https://fhir.vaitio.fi/CodeSystem/professional-role", "code": "physician"}]},
                "reference": {"display": "any physician"}}]}),
            Choice::DenyEverything => json!({"type": "deny"}),
            Choice::PermitGpHere => json!({"type": "permit", "actor": [recipient("urn:oid:1.2.246.537.26", GP_HERE)]}),
            Choice::RefuseEmergencyAccess => json!({"type": "deny",
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]}),
        };
        Some(json!({
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{patient_id}")},
            "dateTime": "2026-11-01T10:00:00+02:00",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
            "provision": provision,
        }))
    }
}

/// One stored resource of the patient, and what the oracle needs to know of it.
#[derive(Clone, Debug)]
struct Item {
    resource_type: &'static str,
    id: String,
    note: bool,
    service_event: Option<&'static str>,
    author: (&'static str, &'static str),
}

impl Item {
    fn key(&self) -> String {
        format!("{}/{}", self.resource_type, self.id)
    }
}

/// The rules as the issue states them, independently of the consent crate.
fn visible(who: Who, choice: Choice, item: &Item) -> bool {
    let Some(p) = who.professional() else { return who == Who::PatientSelf };
    let denied = match choice {
        Choice::Nothing | Choice::PermitGpHere => false,
        Choice::DenyOrganisation => p.org == OTHER_ORG,
        Choice::DenyServiceEvent => item.service_event == Some(THERAPY),
        Choice::DenyRole => p.role == "physician",
        Choice::DenyEverything => true,
        Choice::RefuseEmergencyAccess => p.emergency,
    };
    if denied {
        // Break-the-glass overrides a denial for non-note data, unless the patient refused
        // emergency access.
        return p.emergency && choice != Choice::RefuseEmergencyAccess && !item.note;
    }
    if item.note {
        item.author == (p.org, p.practitioner) || (choice == Choice::PermitGpHere && p.practitioner == GP_HERE)
    } else {
        true
    }
}

fn ok(answer: Answer) -> Value {
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json().unwrap()
}

/// The `Type/id` of every entry of a Bundle in `mode` (any mode when `None`).
fn entries(bundle: &Value, mode: Option<&str>) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| mode.is_none_or(|m| e["search"]["mode"] == m))
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect()
}

/// A 404 with the id taken out, so that the answers for two ids can be compared.
fn not_found_shape(answer: &Answer, id: &str) -> (u16, String) {
    (answer.status, answer.text().replace(id, "{id}"))
}

struct Fixture {
    patient: Item,
    items: Vec<Item>,
}

/// The patient's record: a submitted document (with its Patient), and through the FHIR API a
/// service-event Encounter, a Condition and a note Composition of the therapy, and an Encounter
/// of another provider's service event.
fn fixture(gateway: &TestGateway) -> Fixture {
    let author = Who::Author.client(gateway);
    let submitted = author
        .send(
            "POST",
            "/psychotherapy-records",
            &[("Content-Type", "application/json")],
            Some(record().to_string().as_bytes()),
        )
        .unwrap();
    assert_eq!(submitted.status, 201, "{}", submitted.text());
    let document = submitted.json().unwrap();
    // The document names its Patient by `urn:uuid:{id}` of the stored Patient.
    let patient_id = document["entry"][1]["fullUrl"].as_str().unwrap().strip_prefix("urn:uuid:").unwrap().to_owned();
    let create = |client: &Client, body: Value| -> String {
        let resource_type = body["resourceType"].as_str().unwrap().to_owned();
        let answer = client.post_json(&format!("/{resource_type}"), &body).unwrap();
        assert_eq!(answer.status, 201, "{resource_type}: {}", answer.text());
        answer.json().unwrap()["id"].as_str().unwrap().to_owned()
    };
    let service_event = create(&author, encounter(&patient_id, "2026-01-10"));
    let condition = create(
        &author,
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient_id}")},
               "code": {"coding": [{"system": "urn:oid:1.2.246.537.6.1.1999", "code": "F32.1"}]},
               "encounter": {"reference": format!("Encounter/{service_event}")}}),
    );
    let mut note = note_composition(&patient_id, NOTE);
    note["encounter"] = json!({"reference": format!("Encounter/{service_event}")});
    let note = create(&author, note);
    let mut elsewhere = encounter(&patient_id, "2026-02-01");
    elsewhere["identifier"][0]["value"] = json!(format!("urn:oid:{ELSEWHERE}"));
    let elsewhere = create(&Who::GpElsewhere.client(gateway), elsewhere);

    let by_author = (ORG, THERAPIST);
    let item = |resource_type, id: &str, note, service_event, author| Item {
        resource_type,
        id: id.to_owned(),
        note,
        service_event,
        author,
    };
    Fixture {
        patient: item("Patient", &patient_id, false, None, by_author),
        items: vec![
            item("Bundle", document["id"].as_str().unwrap(), true, Some(THERAPY), by_author),
            item("Composition", &note, true, Some(THERAPY), by_author),
            item("Encounter", &service_event, false, Some(THERAPY), by_author),
            item("Condition", &condition, false, Some(THERAPY), by_author),
            item("Encounter", &elsewhere, false, Some(ELSEWHERE), (OTHER_ORG, GP_ELSEWHERE)),
        ],
    }
}

/// Every output path, for one principal under one choice.
fn check_cell(client: &Client, who: Who, choice: Choice, fixture: &Fixture) {
    let cell = format!("{who:?} under {choice:?}");
    let all: Vec<&Item> = std::iter::once(&fixture.patient).chain(&fixture.items).collect();
    let expected: BTreeSet<String> =
        all.iter().filter(|item| visible(who, choice, item)).map(|item| item.key()).collect();
    let patient_id = &fixture.patient.id;

    // Read, vread and history: 200 for what is visible; for the rest the very answer an absent
    // id gets.
    for item in &all {
        let shown = expected.contains(&item.key());
        for path in [
            format!("/{}/{}", item.resource_type, item.id),
            format!("/{}/{}/_history/1", item.resource_type, item.id),
            format!("/{}/{}/_history", item.resource_type, item.id),
        ] {
            let answer = client.get(&path).unwrap();
            if shown {
                assert_eq!(answer.status, 200, "{cell}: {path}: {}", answer.text());
            } else {
                let absent_id = "00000000-0000-4000-8000-00000000dead";
                let absent = client.get(&path.replace(&item.id, absent_id)).unwrap();
                assert_eq!(not_found_shape(&answer, &item.id), not_found_shape(&absent, absent_id), "{cell}: {path}");
                assert_eq!(answer.status, 404, "{cell}: {path}");
            }
        }
    }

    // Search by patient, per type: exactly the visible ones, and a total that counts only them,
    // also when a page of one is asked for.
    for resource_type in ["Bundle", "Composition", "Encounter", "Condition"] {
        let wanted: BTreeSet<String> =
            expected.iter().filter(|key| key.starts_with(&format!("{resource_type}/"))).cloned().collect();
        let found = ok(client.get(&format!("/{resource_type}?patient={patient_id}")).unwrap());
        assert_eq!(entries(&found, None), wanted, "{cell}: {resource_type} search");
        assert_eq!(found["total"], wanted.len(), "{cell}: {resource_type} total");
        let page = ok(client.get(&format!("/{resource_type}?patient={patient_id}&_count=1")).unwrap());
        assert_eq!(page["total"], wanted.len(), "{cell}: {resource_type} total of a page");
        assert_eq!(page["entry"].as_array().map_or(0, Vec::len), wanted.len().min(1), "{cell}");
    }
    let patient_key = fixture.patient.key();
    let patient_visible = expected.contains(&patient_key);
    let by_identifier = ok(client.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{HETU}")).unwrap());
    assert_eq!(by_identifier["total"], usize::from(patient_visible), "{cell}: Patient by HETU");

    // _include: the matches' Patient, only when it is visible itself.
    let included = ok(client.get(&format!("/Encounter?patient={patient_id}&_include=Encounter:patient")).unwrap());
    let encounters_visible = expected.iter().any(|key| key.starts_with("Encounter/"));
    let want_include: BTreeSet<String> =
        (patient_visible && encounters_visible).then(|| patient_key.clone()).into_iter().collect();
    assert_eq!(entries(&included, Some("include")), want_include, "{cell}: _include");

    // _revinclude from the Patient: what is visible of each type, and nothing if the Patient is not.
    let reverse = ok(client
        .get(&format!(
            "/Patient?_id={patient_id}&_revinclude=Encounter:patient&_revinclude=Composition:patient\
             &_revinclude=Condition:patient&_revinclude=Bundle:patient"
        ))
        .unwrap());
    let want_reverse: BTreeSet<String> = if patient_visible {
        expected.iter().filter(|key| **key != patient_key).cloned().collect()
    } else {
        BTreeSet::new()
    };
    assert_eq!(entries(&reverse, Some("include")), want_reverse, "{cell}: _revinclude");
    assert_eq!(reverse["total"], usize::from(patient_visible), "{cell}: _revinclude total");

    // $everything: all that is visible, or a 404 like any absent Patient.
    let everything = client.get(&format!("/Patient/{patient_id}/$everything")).unwrap();
    if patient_visible {
        let everything = ok(everything);
        // The patient's own Consents are theirs too (and only theirs).
        let (consents, record): (BTreeSet<String>, BTreeSet<String>) =
            entries(&everything, None).into_iter().partition(|key| key.starts_with("Consent/"));
        assert_eq!(record, expected, "{cell}: $everything");
        assert!(consents.is_empty() || who == Who::PatientSelf, "{cell}: $everything gave Consents");
        let expected: BTreeSet<String> = expected.union(&consents).cloned().collect();
        assert_eq!(everything["total"], expected.len(), "{cell}: $everything total");
    } else {
        assert_eq!(everything.status, 404, "{cell}: $everything");
    }
}

on_both_backends! {
    fn every_principal_sees_exactly_what_the_patients_choices_allow(gateway) {
        let fixture = fixture(&gateway);
        let clients: Vec<(Who, Client)> = EVERYONE.iter().map(|who| (*who, who.client(&gateway))).collect();
        let me = &clients.iter().find(|(who, _)| *who == Who::PatientSelf).unwrap().1;
        for choice in CHOICES {
            let written = choice.consent(&fixture.patient.id).map(|consent| {
                let answer = me.post_json("/Consent", &consent).unwrap();
                assert_eq!(answer.status, 201, "{choice:?}: {}", answer.text());
                answer.json().unwrap()
            });
            for (who, client) in &clients {
                check_cell(client, *who, choice, &fixture);
            }
            // Withdrawn, the choice stops applying at once (the next choice starts clean).
            if let Some(mut consent) = written {
                consent["status"] = json!("inactive");
                let id = consent["id"].as_str().unwrap().to_owned();
                let answer = me.put_json(&format!("/Consent/{id}"), &consent, None).unwrap();
                assert_eq!(answer.status, 200, "withdraw {choice:?}: {}", answer.text());
            }
        }
        // Everything withdrawn: the defaults again.
        for (who, client) in &clients {
            check_cell(client, *who, Choice::Nothing, &fixture);
        }
    }

    fn a_write_is_answered_alike_whatever_the_patients_restrictions(gateway) {
        // A clinic the patient has restricted writes about them: its answer must not say so (and
        // so that the patient is in the register). It gets back what it wrote, exactly as a
        // clinic writing about a patient unknown to the gateway does.
        let fixture = fixture(&gateway);
        let consent = Choice::DenyOrganisation.consent(&fixture.patient.id).unwrap();
        assert_eq!(gateway.patient(HETU).post_json("/Consent", &consent).unwrap().status, 201);
        let gp = Who::GpElsewhere.client(&gateway);
        let shape = |answer: Answer| -> (u16, Option<String>, Vec<String>) {
            let status = answer.status;
            let media = answer.header("content-type").map(str::to_owned);
            let body = answer.json().unwrap_or(Value::Null);
            let keys = body.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default();
            (status, media, keys)
        };
        let restricted = shape(gp.post_json("/Patient", &patient(HETU)).unwrap());
        let unknown = shape(gp.post_json("/Patient", &patient("150580-2469")).unwrap());
        assert_eq!(restricted, unknown);
        assert_eq!(restricted.0, 201);
        assert!(restricted.2.contains(&"identifier".to_owned()), "the Patient written: {restricted:?}");
        let other = gateway.post("/Patient", &patient(OTHER_HETU));
        assert_eq!(other.status, 201, "{}", other.text());
        let other_id = other.json().unwrap()["id"].as_str().unwrap().to_owned();
        let about_restricted = shape(gp.post_json("/Encounter", &encounter(&fixture.patient.id, "2026-03-01")).unwrap());
        let about_other = shape(gp.post_json("/Encounter", &encounter(&other_id, "2026-03-01")).unwrap());
        assert_eq!(about_restricted, about_other);
        assert_eq!(about_restricted.0, 201);
        // Reading is still refused: what was written stays behind the patient's restriction.
        let written = gp.get(&format!("/Encounter?patient={}", fixture.patient.id)).unwrap().json().unwrap();
        assert_eq!(written["total"], 0, "{written}");

        // Its author resends the record after the patient has denied everyone: the same answer,
        // the stored document, as before the denial.
        let resend = || {
            let author = Who::Author.client(&gateway);
            let body = record().to_string();
            author.send("POST", "/psychotherapy-records", &[("Content-Type", "application/json")], Some(body.as_bytes())).unwrap()
        };
        let before = resend();
        assert_eq!(before.status, 200, "{}", before.text());
        let deny_all = Choice::DenyEverything.consent(&fixture.patient.id).unwrap();
        assert_eq!(gateway.patient(HETU).post_json("/Consent", &deny_all).unwrap().status, 201);
        let after = resend();
        assert_eq!(after.status, 200, "{}", after.text());
        assert_eq!(after.json().unwrap(), before.json().unwrap());
        assert_eq!(gateway.get(&format!("/Bundle/{}", after.json().unwrap()["id"].as_str().unwrap())).status, 404);
    }

    fn patients_write_and_read_only_their_own_consents(gateway) {
        let fixture = fixture(&gateway);
        let me = gateway.patient(HETU);
        let consent = Choice::DenyEverything.consent(&fixture.patient.id).unwrap();
        let created = me.post_json("/Consent", &consent).unwrap();
        assert_eq!(created.status, 201, "{}", created.text());
        let id = created.json().unwrap()["id"].as_str().unwrap().to_owned();

        // Another patient can neither write a Consent for this patient nor see theirs; a
        // professional writes no Consent; nobody but the patient reads it.
        let stranger = gateway.patient(OTHER_HETU);
        assert_eq!(stranger.post_json("/Consent", &consent).unwrap().status, 403);
        let mut to_a_missing_patient = consent.clone();
        to_a_missing_patient["patient"]["reference"] = json!("Patient/00000000-0000-4000-8000-000000000000");
        let missing = stranger.post_json("/Consent", &to_a_missing_patient).unwrap();
        assert_eq!(missing.status, 403, "the same answer whether the Patient exists or not");
        assert_eq!(Who::Author.client(&gateway).post_json("/Consent", &consent).unwrap().status, 403);
        for who in [Who::OtherPatient, Who::Author, Who::GpHere, Who::Auditor, Who::Administrator] {
            let client = who.client(&gateway);
            assert_eq!(client.get(&format!("/Consent/{id}")).unwrap().status, 404, "{who:?}");
            let search = ok(client.get(&format!("/Consent?patient={}", fixture.patient.id)).unwrap());
            assert_eq!(search["total"], 0, "{who:?}");
        }
        let mine = ok(me.get(&format!("/Consent?patient={}", fixture.patient.id)).unwrap());
        assert_eq!(entries(&mine, None), BTreeSet::from([format!("Consent/{id}")]));

        // Shapes the gateway cannot enforce are refused naming the element; nothing is stored.
        let mut unreadable = consent.clone();
        unreadable["provision"] = json!({"type": "deny", "actor": [{"reference": {"reference": "Practitioner/x"},
            "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}}]});
        let refused = me.post_json("/Consent", &unreadable).unwrap();
        assert_eq!(refused.status, 422, "{}", refused.text());
        assert_eq!(refused.json().unwrap()["issue"][0]["expression"][0], "Consent.provision.actor[0].reference.reference");
        let mut unprofiled = consent.clone();
        unprofiled.as_object_mut().unwrap().remove("dateTime");
        let refused = me.post_json("/Consent", &unprofiled).unwrap();
        assert_eq!(refused.status, 422, "{}", refused.text());
        assert_eq!(refused.json().unwrap()["issue"][0]["expression"][0], "Consent.dateTime");
        assert_eq!(ok(me.get(&format!("/Consent?patient={}", fixture.patient.id)).unwrap())["total"], 1);

        // Withdrawn by the patient, with its history kept.
        let mut withdrawn = created.json().unwrap();
        withdrawn["status"] = json!("inactive");
        assert_eq!(me.put_json(&format!("/Consent/{id}"), &withdrawn, Some("W/\"1\"")).unwrap().status, 200);
        let history = ok(me.get(&format!("/Consent/{id}/_history")).unwrap());
        assert_eq!(history["total"], 2);
        // Another patient's Consent is, to them, one that does not exist.
        let stranger_put = stranger.put_json(&format!("/Consent/{id}"), &withdrawn, None).unwrap();
        assert_eq!(stranger_put.status, 404, "{}", stranger_put.text());
    }
}
