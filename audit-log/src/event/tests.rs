//! Tests of audit events: canonical bytes, the FHIR rendering, and what an event never holds.

use super::*;

const ORG: &str = "1.2.246.10.12345678.10.1";

fn practitioner(purpose: PurposeOfUse, reason: Option<&str>) -> Agent {
    Agent {
        who: Who::Practitioner {
            terhikki: "10012345678".into(),
            role: "psychotherapist".into(),
            organisation: ORG.into(),
        },
        client_certificate: Some("q3Zl5d1u1bqhJ7V3vQfWl9o2yq3Zl5d1u1bqhJ7V3vQ".into()),
        address: Some("192.0.2.10".into()),
        purpose: Some(purpose),
        reason: reason.map(Into::into),
    }
}

fn event(action: Action, agent: Agent) -> AuditEvent {
    AuditEvent {
        action,
        outcome: Outcome::Success,
        recorded: UnixMillis::new(1_714_555_800_250).unwrap(),
        agent,
        observer: "fhir.clinic.example/gateway-1".into(),
        resources: vec![ResourceRef {
            resource_type: "DocumentReference".into(),
            id: "3f1c".into(),
            version: Some("2".into()),
        }],
        patient: Some("pseudo-7c2e".into()),
        query: None,
        consent: None,
        count: None,
    }
}

#[test]
fn a_patient_read_is_shaped_after_balp() {
    let fhir = event(Action::Read, practitioner(PurposeOfUse::Treatment, None)).to_fhir();
    assert_eq!(fhir["resourceType"], "AuditEvent");
    assert_eq!(fhir["type"]["system"], EVENT_TYPE);
    assert_eq!(fhir["type"]["code"], "rest");
    assert_eq!(fhir["subtype"][0]["system"], RESTFUL_INTERACTION);
    assert_eq!(fhir["subtype"][0]["code"], "read");
    assert_eq!(fhir["action"], "R");
    assert_eq!(fhir["recorded"], "2024-05-01T09:30:00.250Z");
    assert_eq!(fhir["outcome"], "0");

    let user = &fhir["agent"][0];
    assert_eq!(user["requestor"], true);
    assert_eq!(user["who"]["identifier"]["system"], TERHIKKI);
    assert_eq!(user["who"]["identifier"]["value"], "10012345678");
    assert_eq!(user["role"][0]["coding"][0]["code"], "psychotherapist");
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["system"], ACT_REASON);
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(fhir["agent"][1]["who"]["identifier"]["value"], format!("urn:oid:{ORG}"));
    let client = &fhir["agent"][2];
    assert_eq!(client["type"]["coding"][0]["code"], "110153");
    assert_eq!(client["requestor"], false);
    assert_eq!(client["network"]["address"], "192.0.2.10");
    assert_eq!(client["who"]["identifier"]["system"], CLIENT_CERTIFICATE);
    assert_eq!(fhir["agent"][3]["type"]["coding"][0]["code"], "110152");
    assert_eq!(fhir["source"]["observer"]["display"], "fhir.clinic.example/gateway-1");

    assert_eq!(fhir["entity"][0]["what"]["reference"], "DocumentReference/3f1c/_history/2");
    let patient = &fhir["entity"][1];
    assert_eq!(patient["role"]["code"], "1");
    assert_eq!(patient["what"]["identifier"]["system"], PATIENT_PSEUDONYM);
    assert_eq!(patient["what"]["identifier"]["value"], "pseudo-7c2e");
}

#[test]
fn every_action_has_its_balp_codes() {
    let expected = [
        (Action::Create, "rest", "create", "C"),
        (Action::Read, "rest", "read", "R"),
        (Action::Vread, "rest", "vread", "R"),
        (Action::History, "rest", "history", "R"),
        (Action::Search, "rest", "search", "E"),
        (Action::Update, "rest", "update", "U"),
        (Action::Delete, "rest", "delete", "D"),
        (Action::Submission, "110107", "create", "C"),
        (Action::Validate, "rest", "operation", "E"),
        (Action::ConsentChange, "rest", "update", "U"),
        (Action::ConsentDecision, "110113", "AuthZ-Consent", "E"),
        (Action::BreakTheGlass, "110113", "110127", "E"),
        (Action::AuthenticationRefused, "110114", "110122", "E"),
        (Action::AdministratorAction, "110113", "110132", "E"),
        (Action::UnusualAccess, "110113", "unusual-access-pattern", "E"),
    ];
    for (action, event_type, subtype, code) in expected {
        let fhir = event(action, practitioner(PurposeOfUse::Treatment, None)).to_fhir();
        assert_eq!(
            (fhir["type"]["code"].as_str(), fhir["subtype"][0]["code"].as_str()),
            (Some(event_type), Some(subtype))
        );
        assert_eq!(fhir["action"], code, "{action:?}");
    }
}

#[test]
fn a_search_records_its_query_and_no_results() {
    let mut search = event(Action::Search, practitioner(PurposeOfUse::Treatment, None));
    search.resources.clear();
    search.query = Some("DocumentReference?patient&_lastUpdated".into());
    let fhir = search.to_fhir();
    let query = &fhir["entity"][1];
    assert_eq!(query["role"]["code"], "24");
    assert_eq!(query["description"], "DocumentReference?patient&_lastUpdated");
    assert_eq!(query["query"], base64::encode(b"DocumentReference?patient&_lastUpdated"));
}

#[test]
fn break_the_glass_records_the_reason() {
    let mut btg = event(Action::BreakTheGlass, practitioner(PurposeOfUse::BreakTheGlass, Some("unconscious in ER")));
    btg.outcome = Outcome::Success;
    let fhir = btg.to_fhir();
    let purpose = &fhir["agent"][0]["purposeOfUse"][0];
    assert_eq!(purpose["coding"][0]["code"], "BTG");
    assert_eq!(purpose["text"], "unconscious in ER");
}

#[test]
fn a_consent_decision_names_the_rule_and_provision() {
    let mut decision = event(Action::ConsentDecision, practitioner(PurposeOfUse::Treatment, None));
    decision.outcome = Outcome::MinorFailure;
    decision.consent = Some(ConsentDecision {
        decision: Decision::Deny,
        rule: "PatientDenied".into(),
        consent_id: Some("c-1".into()),
        provision: Some("Consent.provision.provision[0]".into()),
    });
    let fhir = decision.to_fhir();
    assert_eq!(fhir["outcome"], "4");
    let consent = &fhir["entity"][2];
    assert_eq!(consent["what"]["reference"], "Consent/c-1");
    assert_eq!(consent["type"]["code"], "Consent");
    assert_eq!(consent["detail"][0]["valueString"], "deny");
    assert_eq!(consent["detail"][1]["valueString"], "PatientDenied");
    assert_eq!(consent["detail"][2]["valueString"], "Consent.provision.provision[0]");
}

#[test]
fn a_refused_authentication_has_no_identity_but_says_where_from() {
    let agent = Agent {
        who: Who::Unidentified,
        client_certificate: None,
        address: Some("198.51.100.7".into()),
        purpose: None,
        reason: None,
    };
    let mut refused = event(Action::AuthenticationRefused, agent);
    refused.outcome = Outcome::MinorFailure;
    refused.resources.clear();
    refused.patient = None;
    let fhir = refused.to_fhir();
    assert_eq!(fhir["agent"][0]["requestor"], true);
    assert!(fhir["agent"][0].get("who").is_none());
    assert_eq!(fhir["agent"][1]["network"]["address"], "198.51.100.7");
    assert!(fhir.get("entity").is_none());
}

#[test]
fn patients_and_staff_are_identified_by_their_systems() {
    let patient = Agent {
        who: Who::Patient { pseudonym: "pseudo-1".into() },
        client_certificate: None,
        address: None,
        purpose: Some(PurposeOfUse::PatientRequested),
        reason: None,
    };
    let fhir = event(Action::Read, patient).to_fhir();
    assert_eq!(fhir["agent"][0]["who"]["identifier"]["system"], PATIENT_PSEUDONYM);
    assert_eq!(fhir["agent"][0]["role"][0]["coding"][0]["code"], "PAT");
    assert_eq!(fhir["agent"].as_array().unwrap().len(), 2, "the requester and the gateway");

    let auditor = Agent {
        who: Who::Auditor { subject: "auditor-9".into(), organisation: ORG.into() },
        client_certificate: None,
        address: None,
        purpose: Some(PurposeOfUse::Compliance),
        reason: None,
    };
    let fhir = event(Action::Search, auditor).to_fhir();
    assert_eq!(fhir["agent"][0]["who"]["identifier"]["system"], STAFF_SUBJECT);
    assert_eq!(fhir["agent"][0]["role"][0]["coding"][0]["code"], "auditor");
    assert_eq!(fhir["agent"][0]["purposeOfUse"][0]["coding"][0]["code"], "HCOMPL");
}

#[test]
fn the_canonical_bytes_are_compact_and_in_the_documented_order() {
    let read = event(Action::Read, practitioner(PurposeOfUse::Treatment, None));
    let bytes = read.canonical_bytes();
    assert_eq!(bytes, read.canonical_bytes());
    let text = std::str::from_utf8(&bytes).unwrap();
    assert!(text.starts_with(r#"{"action":"read","outcome":"0","recorded":1714555800250,"agent":{"who":{"kind":"practitioner","terhikki":"10012345678","#), "{text}");
    assert!(!text.contains(": ") && !text.contains('\n'));
    let order: Vec<usize> = ["\"agent\"", "\"observer\"", "\"resources\"", "\"patient\""]
        .iter()
        .map(|key| text.find(key).unwrap())
        .collect();
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
    // Absent options are left out, not written as null.
    assert!(!text.contains("null") && !text.contains("\"query\"") && !text.contains("\"reason\""), "{text}");
    // A read's record is a fraction of its FHIR rendering.
    assert!(bytes.len() * 3 < read.to_fhir().to_string().len(), "{} bytes", bytes.len());
}

#[test]
fn canonical_bytes_read_back_to_the_same_event() {
    let whos = [
        Who::Practitioner { terhikki: "1".into(), role: "nurse".into(), organisation: ORG.into() },
        Who::Patient { pseudonym: "p\"q".into() },
        Who::Auditor { subject: "a".into(), organisation: ORG.into() },
        Who::Administrator { subject: "b".into(), organisation: ORG.into() },
        Who::Unidentified,
        Who::Operator { account: "ops@gateway-1".into() },
    ];
    let actions = [Action::Search, Action::ConsentDecision, Action::BreakTheGlass, Action::AuthenticationRefused];
    for (n, who) in whos.into_iter().enumerate() {
        for action in actions {
            let mut original = event(
                action,
                Agent { who: who.clone(), ..practitioner(PurposeOfUse::BreakTheGlass, Some("unconscious, \u{e4}")) },
            );
            original.outcome =
                [Outcome::Success, Outcome::MinorFailure, Outcome::SeriousFailure, Outcome::MajorFailure][n % 4];
            original.query = (n % 2 == 0).then(|| "Bundle?patient&_count".into());
            original.consent = (n % 3 != 2).then(|| ConsentDecision {
                decision: if n % 2 == 0 { Decision::Deny } else { Decision::Permit },
                rule: "PatientDenied".into(),
                consent_id: Some("c-1".into()),
                provision: (n == 0).then(|| "Consent.provision.provision[0]".into()),
            });
            if n >= 4 {
                original.resources.clear();
                original.patient = None;
                original.agent.client_certificate = None;
            }
            let bytes = original.canonical_bytes();
            assert_eq!(AuditEvent::from_canonical(&bytes).unwrap(), original, "{}", String::from_utf8_lossy(&bytes));
        }
    }
}

#[test]
fn an_operator_at_the_console_is_named_by_host_account() {
    let agent = Agent {
        who: Who::Operator { account: "ops@gateway-1".into() },
        client_certificate: None,
        address: None,
        purpose: Some(PurposeOfUse::SystemAdministration),
        reason: None,
    };
    let mut action = event(Action::AdministratorAction, agent);
    action.query = Some("audit export".into());
    let fhir = action.to_fhir();
    assert_eq!(fhir["subtype"][0]["code"], "110132");
    let user = &fhir["agent"][0];
    assert_eq!(user["who"]["identifier"]["system"], HOST_ACCOUNT);
    assert_eq!(user["who"]["identifier"]["value"], "ops@gateway-1");
    assert_eq!(user["role"][0]["coding"][0]["code"], "administrator");
    assert_eq!(user["purposeOfUse"][0]["coding"][0]["code"], "HSYSADMIN");
    // No organisation and no client: the agents are the operator and the gateway.
    assert_eq!(fhir["agent"].as_array().unwrap().len(), 2);
    let bytes = action.canonical_bytes();
    assert!(std::str::from_utf8(&bytes).unwrap().contains(r#""who":{"kind":"operator","account":"ops@gateway-1"}"#));
    assert_eq!(AuditEvent::from_canonical(&bytes).unwrap(), action);
}

#[test]
fn bytes_of_another_shape_are_refused() {
    let bytes = event(Action::Read, practitioner(PurposeOfUse::Treatment, None)).canonical_bytes();
    let text = String::from_utf8(bytes).unwrap();
    for altered in [
        text.replacen('{', r#"{"v":2,"#, 1),
        text.replace(r#""outcome":"0""#, r#""outcome":"1""#),
        text.replace(r#""action":"read""#, r#""action":"peek""#),
        text.replace("1714555800250", "253402300800000"),
        text.replace(r#""kind":"practitioner""#, r#""kind":"practitioner","name":"Anna""#),
        r#"{"resourceType":"AuditEvent"}"#.to_owned(),
    ] {
        assert!(AuditEvent::from_canonical(altered.as_bytes()).is_err(), "{altered}");
    }
}
