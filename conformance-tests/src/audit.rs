//! Audit cases: an access appears in the patient's own log with its agent and purpose, and the
//! auditor's view of the log holds no clinical content. Like the consent cases, they act as other
//! professionals, as the patient and as an auditor with tokens of the deployment's test issuer.

use serde_json::{json, Value};

use crate::actors::{auditor, patient, practitioner, professional};
use crate::case::{temporary_hetu, test_patient, Case, Context, Failure, Level, Outcome, ISSUER};
use crate::client::Client;
use crate::fixtures::{scene, Scene};

pub fn cases() -> Vec<Case> {
    // Every case acts as other professionals, the patient or an auditor: tokens signed with the
    // issuer key.
    let shall = |id, title, reference, run| Case { id, title, level: Level::Shall, reference, needs: ISSUER, run };
    vec![
        shall(
            "AUD-01",
            "An access to a patient's data appears in the patient's own log with its agent, organisation and purpose, break-the-glass with its reason",
            "Vaitio design: audit (patients read their own entries); IHE BALP",
            patients_log,
        ),
        shall(
            "AUD-02",
            "The auditor's view of the log holds identifiers and pseudonyms only, never clinical content or a HETU",
            "Vaitio design: audit (identifiers and pseudonyms only)",
            auditors_view,
        ),
        shall(
            "AUD-03",
            "A read refused to a professional appears in the patient's own log, with what was asked for and the decision",
            "Vaitio design: every attempt attributed; Finnish Act 703/2023 §11",
            refused_read_in_patients_log,
        ),
        Case {
            id: "HRV-01",
            title: "A practitioner who reaches more distinct patients than the harvesting threshold is refused with 429 until an auditor clears the alert",
            level: Level::Shall,
            reference: "Vaitio design: harvesting detection",
            needs: ISSUER,
            run: harvesting_refused,
        },
    ]
}

const GP: &str = "10055500011";
const EMERGENCY_DOCTOR: &str = "10055500012";
const REASON: &str = "conformance: patient unconscious on arrival";

fn scene_or_skip(ctx: &Context) -> Result<Result<Scene, Outcome>, Failure> {
    scene(ctx)
}

fn log_of(client: &Client, query: &str) -> Result<Value, Failure> {
    let answer = client.get(&format!("/AuditEvent{query}"))?;
    if answer.status != 200 {
        return Err(format!("/AuditEvent{query}: HTTP {}: {}", answer.status, answer.text_excerpt()).into());
    }
    Ok(answer.json()?)
}

/// The events of a log Bundle whose agent is the practitioner `terhikki`.
fn by_agent<'a>(log: &'a Value, terhikki: &str) -> Vec<&'a Value> {
    log["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| &entry["resource"])
        .filter(|event| {
            event["agent"].as_array().into_iter().flatten().any(|agent| agent["who"]["identifier"]["value"] == terhikki)
        })
        .collect()
}

fn purposes(event: &Value) -> Vec<String> {
    event["agent"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|agent| agent["purposeOfUse"].as_array().into_iter().flatten())
        .flat_map(|purpose| purpose["coding"].as_array().into_iter().flatten())
        .filter_map(|coding| coding["code"].as_str().map(str::to_owned))
        .collect()
}

fn patients_log(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = match scene_or_skip(ctx)? {
        Ok(scene) => scene,
        Err(skip) => return Ok(skip),
    };
    let event = format!("/Encounter/{}", scene.event);
    let read = professional(ctx, GP, "physician", None)?.get(&event)?;
    let opened = professional(ctx, EMERGENCY_DOCTOR, "physician", Some("BTG"))?.get(&event)?;
    if read.status != 200 || opened.status != 200 {
        return Err(format!("the accesses were not served: HTTP {} and {}", read.status, opened.status).into());
    }
    let log = log_of(&patient(ctx, &scene.hetu)?, "?_count=100")?;
    let gp = by_agent(&log, GP);
    let emergency = by_agent(&log, EMERGENCY_DOCTOR);
    let text = log.to_string();
    Ok(if gp.is_empty() {
        Outcome::Fail("the GP's read is not in the patient's log".into())
    } else if !gp.iter().any(|e| purposes(e).iter().any(|p| p == "TREAT")) {
        Outcome::Fail("the GP's read does not say its purpose (TREAT)".into())
    } else if !gp.iter().any(|e| e.to_string().contains(&scene.org)) {
        Outcome::Fail("the GP's read does not name the organisation".into())
    } else if !emergency.iter().any(|e| purposes(e).iter().any(|p| p == "BTG")) || !text.contains(REASON) {
        Outcome::Fail("the emergency access is not flagged BTG with its stated reason".into())
    } else {
        Outcome::Pass(format!(
            "{} entries in the patient's log, the GP's and the emergency access among them",
            log["total"]
        ))
    })
}

fn auditors_view(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = match scene_or_skip(ctx)? {
        Ok(scene) => scene,
        Err(skip) => return Ok(skip),
    };
    // The note is read (and so logged) before the auditor looks.
    let read = ctx.client.get(&format!("/Bundle/{}", scene.document))?;
    if read.status != 200 {
        return Err(format!("the author could not read the note: HTTP {}", read.status).into());
    }
    let log = log_of(&auditor(ctx)?, &format!("?patient:identifier=urn:oid:1.2.246.21|{}&_count=100", scene.hetu))?;
    let text = log.to_string();
    let leaked = ["Synthetic conformance note", "Terapeutti", "Conformance Clinic", scene.hetu.as_str()]
        .into_iter()
        .find(|clinical| text.contains(clinical));
    Ok(match (log["total"].as_u64(), leaked) {
        (Some(0) | None, _) => Outcome::Fail("the auditor found no entries about the patient".into()),
        (_, Some(leaked)) => Outcome::Fail(format!("the auditor's view holds {leaked:?}")),
        (Some(total), None) => {
            Outcome::Pass(format!("{total} entries about the patient, identifiers and pseudonyms only"))
        }
    })
}

const REFUSED_GP: &str = "10055500013";

fn refused_read_in_patients_log(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = match scene_or_skip(ctx)? {
        Ok(scene) => scene,
        Err(skip) => return Ok(skip),
    };
    // The document holds a psychotherapy note: closed to a GP, who gets what absence gets.
    let read = professional(ctx, REFUSED_GP, "physician", None)?.get(&format!("/Bundle/{}", scene.document))?;
    if read.status != 404 {
        return Ok(Outcome::Fail(format!("a GP's read of a psychotherapy document answered HTTP {}", read.status)));
    }
    let log = log_of(&patient(ctx, &scene.hetu)?, "?_count=100")?;
    let refused = by_agent(&log, REFUSED_GP);
    let named = |event: &&Value| event.to_string().contains(&format!("Bundle/{}", scene.document));
    let denied = |event: &&Value| event.to_string().contains("\"deny\"");
    Ok(match refused.iter().find(|e| named(e) && denied(e)) {
        Some(_) => Outcome::Pass("the refused read is in the patient's log, naming the document and the denial".into()),
        None if refused.is_empty() => Outcome::Fail("the GP's refused read is not in the patient's log".into()),
        None => Outcome::Fail("the GP's entry does not name the document asked for and the denial".into()),
    })
}

fn harvesting_refused(ctx: &Context) -> Result<Outcome, Failure> {
    let Some(limit) = ctx.harvest_limit else {
        return Ok(Outcome::Skip("give --harvest-practitioner-patients (the deployment's threshold) to run it".into()));
    };
    let Some((org, _)) = practitioner(ctx) else {
        return Ok(Outcome::Skip("the run's token names no practitioner".into()));
    };
    // The run's own practitioner writes the patients (writes do not count); a practitioner of
    // the run's organisation who has never read anything walks through them.
    let mut visits = Vec::new();
    for _ in 0..limit + 2 {
        let created = ctx.client.post_json("/Patient", &test_patient(&temporary_hetu()))?;
        let id = created.json()?["id"].as_str().unwrap_or_default().to_owned();
        let visit = json!({"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": format!("Patient/{id}")},
            "period": {"start": "2026-01-05T10:00:00+02:00", "end": "2026-01-05T10:45:00+02:00"}});
        let answer = ctx.client.post_json("/Encounter", &visit)?;
        if answer.status != 201 {
            return Err(format!("a visit was not stored: HTTP {}: {}", answer.status, answer.text_excerpt()).into());
        }
        visits.push(answer.json()?["id"].as_str().unwrap_or_default().to_owned());
    }
    let walker = format!("1009{:07}", chrono::Utc::now().timestamp_micros().rem_euclid(10_000_000));
    let client = professional(ctx, &walker, "physician", None)?;
    let mut served = 0u64;
    for visit in &visits {
        let answer = client.get(&format!("/Encounter/{visit}"))?;
        match answer.status {
            200 => served += 1,
            429 => {
                let retry = answer.header("retry-after").and_then(|r| r.parse::<u64>().ok());
                let outcome = answer.is_operation_outcome();
                // Clear what the case raised, so the deployment is as the case found it.
                let auditor = auditor(ctx)?;
                let found = auditor.get(&format!("/access-alerts?principal=practitioner:{org}/{walker}"))?.json()?;
                let id = found["alerts"][0]["id"].as_str().unwrap_or_default().to_owned();
                let cleared = auditor.post_json(
                    &format!("/access-alerts/{id}/$clear"),
                    &json!({"reason": "raised by the conformance suite's HRV-01"}),
                )?;
                return Ok(match (served == limit + 1, retry, outcome, cleared.status) {
                    (true, Some(_), true, 200) => Outcome::Pass(format!(
                        "served {served} distinct patients, then 429 with Retry-After and an OperationOutcome; the auditor cleared the alert"
                    )),
                    (false, ..) => Outcome::Fail(format!("refused after {served} patients, not {}", limit + 1)),
                    (_, None, ..) => Outcome::Fail("the 429 has no Retry-After".into()),
                    (_, _, false, _) => Outcome::Fail("the 429 is not an OperationOutcome".into()),
                    (.., status) => Outcome::Fail(format!("the auditor could not clear the alert: HTTP {status}")),
                });
            }
            other => return Err(format!("reading a visit answered HTTP {other}: {}", answer.text_excerpt()).into()),
        }
    }
    Ok(Outcome::Fail(format!("{served} distinct patients were served; the threshold is {limit}")))
}
