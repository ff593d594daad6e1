//! Harvesting detection on both backends: a practitioner who walks through patients is stopped
//! at the threshold, with a security alert, a flag in every reached patient's log and 429s; a
//! colleague keeps working; an auditor clears the alert; two nodes splitting the walk still trip
//! it; break-the-glass trips a lower threshold; refusals count; and a clinic's ordinary day is
//! not flagged.

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vaitio_conformance::client::Client;

use super::support::*;

const GP: &str = "10088888888";
const COLLEAGUE: &str = "10077777777";
const EMERGENCY: &str = "10066666666";

/// `n` distinct patients, written by the clinic's therapist, with a visit each and a note each.
fn patients(gateway: &TestGateway, n: u128, from: u128) -> Vec<(String, String, String)> {
    (from..from + n)
        .map(|k| {
            let id = gateway.create(&patient(&vaitio_conformance::case::temporary_hetu_number(k)));
            let visit = gateway.create(&encounter(&id, "2026-03-02T10:00:00+02:00"));
            let note = gateway.create(&note_composition(&id, NOTE));
            (id, visit, note)
        })
        .collect()
}

fn alerts(auditor: &Client, query: &str) -> Vec<Value> {
    let answer = auditor.get(&format!("/access-alerts{query}")).unwrap();
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json().unwrap()["alerts"].as_array().cloned().unwrap_or_default()
}

/// Waits (at most ten seconds) until `request` answers `status`: another node heeds an alert
/// within the second its view of the alerts may be old.
fn eventually(status: u16, request: impl Fn() -> u16) -> u16 {
    let started = Instant::now();
    loop {
        let seen = request();
        if seen == status || started.elapsed() > Duration::from_secs(10) {
            return seen;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The flags in a patient's own log.
fn flagged(gateway: &TestGateway, hetu: &str) -> usize {
    let log = gateway.patient(hetu).get("/AuditEvent?_count=100").unwrap().json().unwrap();
    log["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["resource"]["subtype"][0]["code"] == "unusual-access-pattern")
        .count()
}

on_both_backends! {
    fn a_practitioner_who_walks_through_patients_is_stopped_and_every_patient_told(gateway) {
        let walked = patients(&gateway, 40, 1000);
        let gp = gateway.professional(OTHER_ORG, GP, "physician");
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let mut served = 0;
        let mut refused = None;
        for (id, visit, _) in &walked {
            let answer = gp.get(&format!("/Encounter/{visit}")).unwrap();
            match answer.status {
                200 => served += 1,
                429 => {
                    refused = Some(answer);
                    break;
                }
                other => panic!("reading {id}'s visit: HTTP {other}: {}", answer.text()),
            }
        }
        // The practitioner read 31 patients (the limit is 30) before the alert held.
        assert_eq!(served, 31, "served before the alert");
        let refused = refused.expect("the 32nd patient's visit was not refused");
        assert!(refused.is_operation_outcome(), "{}", refused.text());
        assert_eq!(refused.json().unwrap()["issue"][0]["code"], "throttled");
        let retry_after: u64 = refused.header("retry-after").expect("Retry-After").parse().unwrap();
        assert!(retry_after > 0 && retry_after <= 3600, "{retry_after}");
        // A search is refused too, before it names anyone.
        assert_eq!(gp.get(&format!("/Encounter?patient={}", walked[35].0)).unwrap().status, 429);

        // The alert: one, for the practitioner, with what crossed.
        let raised = alerts(&auditor, &format!("?principal=practitioner:{OTHER_ORG}/{GP}"));
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0]["status"], "active");
        assert_eq!(raised[0]["patients"], 31);
        assert!(raised[0]["threshold"].as_str().unwrap().contains("over the limit of 30"));
        assert_eq!(alerts(&auditor, &format!("?organization={OTHER_ORG}")).len(), 1);
        // Every patient reached is told, in their own log; the ones never reached are not.
        for k in [1000u128, 1015, 1030] {
            assert_eq!(flagged(&gateway, &vaitio_conformance::case::temporary_hetu_number(k)), 1, "patient {k}");
        }
        assert_eq!(flagged(&gateway, &vaitio_conformance::case::temporary_hetu_number(1035)), 0);
        // The auditor's log view holds the alert and the refusals, with no patient identifier.
        let log = auditor.get(&format!("/AuditEvent?agent={GP}&_count=100")).unwrap().text();
        assert!(log.contains("unusual access pattern: alert"), "the alert is in the log");
        assert!(log.contains("refused: an unusual-access alert holds"), "the refusals are in the log");
        // The metrics count it, without identifiers.
        let metrics = gateway.metrics();
        assert!(metrics.contains("vaitio_unusual_access_alerts_total 1"), "{metrics}");
        assert!(!metrics.contains(GP));

        // A colleague in the same organisation, over the same certificate, keeps working.
        let colleague = gateway.professional(OTHER_ORG, COLLEAGUE, "physician");
        assert_eq!(colleague.get(&format!("/Encounter/{}", walked[36].1)).unwrap().status, 200);

        // The export: one alert a line.
        let export = auditor.send("GET", "/access-alerts", &[("Accept", "application/x-ndjson")], None).unwrap();
        assert_eq!(export.status, 200);
        assert_eq!(export.text().lines().count(), 1);
        // Nobody but an auditor reads or clears alerts.
        assert_eq!(gp.get("/access-alerts").unwrap().status, 429, "the stopped practitioner");
        assert_eq!(colleague.get("/access-alerts").unwrap().status, 403);
        let id = raised[0]["id"].as_str().unwrap();
        assert_eq!(colleague.post_json(&format!("/access-alerts/{id}/$clear"), &json!({"reason": "mine"})).unwrap().status, 403);
        // An auditor clears it with a reason; the clearing is recorded; the practitioner works again.
        assert_eq!(auditor.post_json(&format!("/access-alerts/{id}/$clear"), &json!({})).unwrap().status, 400);
        let cleared = auditor.post_json(&format!("/access-alerts/{id}/$clear"), &json!({"reason": "a registry check ordered by the chief physician"})).unwrap();
        assert_eq!(cleared.status, 200, "{}", cleared.text());
        assert_eq!(cleared.json().unwrap()["status"], "cleared");
        assert_eq!(auditor.post_json(&format!("/access-alerts/{id}/$clear"), &json!({"reason": "again"})).unwrap().status, 404);
        assert_eq!(eventually(200, || gp.get(&format!("/Encounter/{}", walked[0].1)).unwrap().status), 200);
        let log = auditor.get("/AuditEvent?agent=auditor-1&_count=100").unwrap().text();
        assert!(log.contains("cleared unusual-access alert") && log.contains("ordered by the chief physician"));
    }

    fn two_nodes_splitting_the_walk_still_trip_it(gateway) {
        let walked = patients(&gateway, 34, 2000);
        let other = gateway.second_node();
        let on_first = gateway.professional(OTHER_ORG, GP, "physician");
        let on_second = TestGateway::on_node(&on_first, &other.base_url);
        let mut served = 0;
        for (n, (_, visit, _)) in walked.iter().enumerate() {
            let node = if n % 2 == 0 { &on_first } else { &on_second };
            if node.get(&format!("/Encounter/{visit}")).unwrap().status == 200 {
                served += 1;
            }
        }
        assert!((31..=34).contains(&served), "served {served} of 34 across two nodes");
        assert_eq!(eventually(429, || on_first.get(&format!("/Encounter/{}", walked[0].1)).unwrap().status), 429);
        assert_eq!(eventually(429, || on_second.get(&format!("/Encounter/{}", walked[1].1)).unwrap().status), 429);
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        assert_eq!(alerts(&auditor, "").len(), 1, "one alert, whichever node raised it");
    }

    fn break_the_glass_and_refusals_trip_lower_thresholds(gateway) {
        let walked = patients(&gateway, 12, 3000);
        // Break-the-glass: five patients at most.
        let cert = gateway.org_certificate(OTHER_ORG);
        let mut claims = gateway.claims("physician", Some(OTHER_ORG), EMERGENCY, Some(&cert.0));
        claims.purpose = Some("ETREAT".into());
        claims.reason = Some("unconscious on arrival".into());
        let emergency = gateway.client_with(Some(cert), Some(gateway.token(&claims)));
        let statuses: Vec<u16> = walked.iter().take(8).map(|(_, visit, _)| emergency.get(&format!("/Encounter/{visit}")).unwrap().status).collect();
        assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429, 429], "break-the-glass: over five patients");
        // Probing notes: every answer withheld. At ten patients, all refused, the share trips.
        let prober = gateway.professional(OTHER_ORG, GP, "physician");
        let statuses: Vec<u16> = walked.iter().map(|(_, _, note)| prober.get(&format!("/Composition/{note}")).unwrap().status).collect();
        assert_eq!(&statuses[..10], [404; 10]);
        assert_eq!(statuses[10..], [429, 429], "{statuses:?}");
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        let raised = alerts(&auditor, "");
        assert_eq!(raised.len(), 2, "{raised:?}");
        assert!(raised.iter().any(|a| a["threshold"].as_str().unwrap().contains("only refused or withheld")));
        assert!(raised.iter().any(|a| a["principal"].as_str().unwrap().starts_with("break-the-glass:")));
    }

    fn an_ordinary_clinic_day_is_not_flagged(gateway) {
        // A therapist's caseload of 25, each read again and again through the day, and searched.
        let caseload = patients(&gateway, 25, 4000);
        let therapist = &gateway.client;
        for _ in 0..4 {
            for (id, visit, note) in &caseload {
                assert_eq!(therapist.get(&format!("/Encounter/{visit}")).unwrap().status, 200);
                assert_eq!(therapist.get(&format!("/Composition/{note}")).unwrap().status, 200);
                assert_eq!(therapist.get(&format!("/Encounter?patient={id}")).unwrap().status, 200);
            }
        }
        let auditor = gateway.professional(ORG, "auditor-1", "auditor");
        assert!(alerts(&auditor, "").is_empty());
        assert!(gateway.metrics().contains("vaitio_unusual_access_alerts_total 0"));
    }
}
