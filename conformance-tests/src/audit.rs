//! Audit cases: an access appears in the patient's own log with its agent and purpose, and the
//! auditor's view of the log holds no clinical content. Like the consent cases, they act as other
//! professionals, as the patient and as an auditor with tokens of the deployment's test issuer.

use serde_json::Value;

use crate::actors::{auditor, patient, professional};
use crate::case::{Case, Context, Failure, Level, Outcome, ISSUER};
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
