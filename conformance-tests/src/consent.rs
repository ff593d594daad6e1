//! Consent cases: the psychotherapy-note rule and each patient choice, checked as an auditor
//! would against a deployment with test data. Each case files a record for a fresh synthetic
//! patient as the run's practitioner (the author), then acts as other professionals of the same
//! organisation and as the patient, with tokens signed by the deployment's test issuer
//! (`--issuer-key`) and bound to the run's certificate. The scene they act on is in
//! `fixtures.rs`.

use serde_json::{json, Value};

use crate::actors::{patient, professional};
use crate::case::{temporary_hetu, Case, Context, Failure, Level, Outcome, ISSUER};
use crate::client::{Answer, Client};
use crate::fixtures::{scene, Scene};

pub fn cases() -> Vec<Case> {
    // Every case acts as other professionals and as the patient: tokens signed with the issuer key.
    let shall = |id, title, reference, run| Case { id, title, level: Level::Shall, reference, needs: ISSUER, run };
    vec![
        shall(
            "CNS-01",
            "A psychotherapy note is read by its author and by no other professional, GPs of the same organisation included; withheld answers exactly like absent",
            "Vaitio design: consent and enforcement (PSYTHPN)",
            note_rule,
        ),
        shall(
            "CNS-02",
            "A patient reads their own record, and no patient reads another's",
            "Vaitio design: patients see their own data",
            own_data,
        ),
        shall(
            "CNS-03",
            "A patient's denial of an organisation withholds their data from its professionals until withdrawn",
            "Vaitio design: patient choices (deny an organisation)",
            deny_organisation,
        ),
        shall(
            "CNS-04",
            "A patient's denial of a service event withholds that service event only",
            "Vaitio design: patient choices (deny a service event)",
            deny_service_event,
        ),
        shall(
            "CNS-05",
            "A patient's denial of a role withholds their data from that role only",
            "Vaitio design: patient choices (deny a role)",
            deny_role,
        ),
        shall(
            "CNS-06",
            "A patient's denial of everything withholds their data from every professional, not from them",
            "Vaitio design: patient choices (deny everything)",
            deny_everything,
        ),
        shall(
            "CNS-07",
            "A practitioner the patient names reads the notes; no other does",
            "Vaitio design: patient choices (permit a named practitioner)",
            permit_practitioner,
        ),
        shall(
            "CNS-08",
            "Break-the-glass opens non-note data but not notes, and not at all once the patient refused emergency access",
            "Vaitio design: break-the-glass",
            emergency_access,
        ),
        shall(
            "CNS-09",
            "A patient's Consents are written and read by that patient alone",
            "Vaitio design: patient API",
            consents_are_the_patients,
        ),
        shall(
            "CNS-10",
            "Counts, includes and reverse chains reveal nothing withheld",
            "Vaitio design: every output path goes through the same enforcement",
            no_side_channels,
        ),
    ]
}

const GP: &str = "10055500001";
const OTHER_GP: &str = "10055500002";
const COLLEAGUE: &str = "10055500003";
const NURSE: &str = "10055500004";

/// Whether `path` is served (200) or withheld; a withheld answer must be the very 404 an absent
/// id of the same type gets.
fn sees(client: &Client, path: &str, id: &str) -> Result<bool, Failure> {
    let answer = client.get(path)?;
    match answer.status {
        200 => Ok(true),
        404 => {
            let absent_id = "00000000-0000-4000-8000-0000000c0de0";
            let absent = client.get(&path.replace(id, absent_id))?;
            let shape = |a: &Answer, id: &str| (a.status, a.text().replace(id, "{id}"));
            if shape(&answer, id) != shape(&absent, absent_id) {
                return Err(format!("{path}: the 404 differs from an absent id's: {}", answer.text_excerpt()).into());
            }
            Ok(false)
        }
        other => Err(format!("{path}: HTTP {other}: {}", answer.text_excerpt()).into()),
    }
}

fn total(client: &Client, path: &str) -> Result<u64, Failure> {
    let answer = client.get(path)?;
    if answer.status != 200 {
        return Err(format!("{path}: HTTP {}: {}", answer.status, answer.text_excerpt()).into());
    }
    Ok(answer.json()?["total"].as_u64().ok_or_else(|| format!("{path}: no total"))?)
}

/// Checks a list of (what, seen, expected), failing on the first difference.
fn expect(checks: &[(&str, bool, bool)]) -> Outcome {
    match checks.iter().find(|(_, seen, wanted)| seen != wanted) {
        Some((what, seen, _)) => Outcome::Fail(format!("{what}: {}", if *seen { "served" } else { "withheld" })),
        None => Outcome::Pass(format!("{} checks held", checks.len())),
    }
}

fn consent(scene: &Scene, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{}", scene.patient)},
        "dateTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTOUT"}]},
        "provision": provision,
    })
}

fn recipient(system: &str, value: &str) -> Value {
    json!({"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
           "reference": {"identifier": {"system": system, "value": value}}})
}

/// The patient records a choice; returns the stored Consent.
fn choose(ctx: &Context, scene: &Scene, provision: Value) -> Result<Value, Failure> {
    let answer = patient(ctx, &scene.hetu)?.post_json("/Consent", &consent(scene, provision))?;
    if answer.status != 201 {
        return Err(
            format!("the patient's Consent was refused: HTTP {}: {}", answer.status, answer.text_excerpt()).into()
        );
    }
    Ok(answer.json()?)
}

macro_rules! scene_or_skip {
    ($ctx:expr) => {
        match scene($ctx)? {
            Ok(scene) => scene,
            Err(skip) => return Ok(skip),
        }
    };
}

fn paths(scene: &Scene) -> (String, String, String) {
    (
        format!("/Bundle/{}", scene.document),
        format!("/Encounter/{}", scene.event),
        format!("/Encounter/{}", scene.other_event),
    )
}

fn note_rule(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (note, event, _) = paths(&scene);
    let gp = professional(ctx, GP, "physician", None)?;
    let colleague = professional(ctx, COLLEAGUE, "psychotherapist", None)?;
    let nurse = professional(ctx, NURSE, "nurse", None)?;
    let documents = format!("/Bundle?patient={}", scene.patient);
    Ok(expect(&[
        ("the author reads the note", sees(&ctx.client, &note, &scene.document)?, true),
        ("a GP of the same organisation reads the note", sees(&gp, &note, &scene.document)?, false),
        ("a GP's search counts the note", total(&gp, &documents)? > 0, false),
        ("another psychotherapist reads the note", sees(&colleague, &note, &scene.document)?, false),
        ("a nurse reads the note", sees(&nurse, &note, &scene.document)?, false),
        ("a GP reads the note's version", sees(&gp, &format!("{note}/_history/1"), &scene.document)?, false),
        ("a GP reads the note's history", sees(&gp, &format!("{note}/_history"), &scene.document)?, false),
        ("a GP reads that a course of therapy exists", sees(&gp, &event, &scene.event)?, true),
    ]))
}

fn own_data(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (note, event, _) = paths(&scene);
    let me = patient(ctx, &scene.hetu)?;
    let stranger = patient(ctx, &temporary_hetu())?;
    let everything = format!("/Patient/{}/$everything", scene.patient);
    Ok(expect(&[
        ("the patient reads their note", sees(&me, &note, &scene.document)?, true),
        ("the patient reads their Encounter", sees(&me, &event, &scene.event)?, true),
        ("the patient reads $everything", sees(&me, &everything, &scene.patient)?, true),
        ("another patient reads the note", sees(&stranger, &note, &scene.document)?, false),
        (
            "another patient reads the Patient",
            sees(&stranger, &format!("/Patient/{}", scene.patient), &scene.patient)?,
            false,
        ),
        ("another patient reads $everything", sees(&stranger, &everything, &scene.patient)?, false),
    ]))
}

fn deny_organisation(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (_, event, _) = paths(&scene);
    let colleague = professional(ctx, COLLEAGUE, "psychotherapist", None)?;
    let before = sees(&colleague, &event, &scene.event)?;
    let mut chosen = choose(
        ctx,
        &scene,
        json!({"type": "deny", "actor": [recipient("urn:ietf:rfc:3986", &format!("urn:oid:{}", scene.org))]}),
    )?;
    let during = sees(&colleague, &event, &scene.event)?;
    let counted = total(&colleague, &format!("/Encounter?patient={}", scene.patient))? > 0;
    chosen["status"] = json!("inactive");
    let id = chosen["id"].as_str().unwrap_or_default().to_owned();
    let withdrawn = patient(ctx, &scene.hetu)?.put_json(&format!("/Consent/{id}"), &chosen, None)?;
    if withdrawn.status != 200 {
        return Err(format!("withdrawing: HTTP {}: {}", withdrawn.status, withdrawn.text_excerpt()).into());
    }
    Ok(expect(&[
        ("before the denial, a colleague reads the Encounter", before, true),
        ("with the organisation denied, a colleague reads it", during, false),
        ("with the organisation denied, a colleague's search counts it", counted, false),
        ("once withdrawn, a colleague reads it", sees(&colleague, &event, &scene.event)?, true),
    ]))
}

fn deny_service_event(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (_, event, other) = paths(&scene);
    let gp = professional(ctx, GP, "physician", None)?;
    let data = json!([{"meaning": "related",
        "reference": {"identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:oid:{}", scene.service_event)}}}]);
    choose(ctx, &scene, json!({"type": "deny", "data": data}))?;
    Ok(expect(&[
        ("the denied service event's Encounter", sees(&gp, &event, &scene.event)?, false),
        ("another service event's Encounter", sees(&gp, &other, &scene.other_event)?, true),
    ]))
}

fn deny_role(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (_, event, _) = paths(&scene);
    let role = json!({"role": {"coding": [{"system": "https://fhir.vaitio.fi/CodeSystem/professional-role", "code": "physician"}]},
                      "reference": {"display": "any physician"}});
    choose(ctx, &scene, json!({"type": "deny", "actor": [role]}))?;
    Ok(expect(&[
        (
            "a physician reads the Encounter",
            sees(&professional(ctx, GP, "physician", None)?, &event, &scene.event)?,
            false,
        ),
        ("a nurse reads the Encounter", sees(&professional(ctx, NURSE, "nurse", None)?, &event, &scene.event)?, true),
    ]))
}

fn deny_everything(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (_, event, other) = paths(&scene);
    choose(ctx, &scene, json!({"type": "deny"}))?;
    let me = patient(ctx, &scene.hetu)?;
    Ok(expect(&[
        ("a GP reads the Encounter", sees(&professional(ctx, GP, "physician", None)?, &event, &scene.event)?, false),
        (
            "a nurse reads the other Encounter",
            sees(&professional(ctx, NURSE, "nurse", None)?, &other, &scene.other_event)?,
            false,
        ),
        (
            "a colleague reads the Patient",
            sees(
                &professional(ctx, COLLEAGUE, "psychotherapist", None)?,
                &format!("/Patient/{}", scene.patient),
                &scene.patient,
            )?,
            false,
        ),
        ("the patient reads their Encounter", sees(&me, &event, &scene.event)?, true),
    ]))
}

fn permit_practitioner(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (note, _, _) = paths(&scene);
    choose(ctx, &scene, json!({"type": "permit", "actor": [recipient("urn:oid:1.2.246.537.26", GP)]}))?;
    Ok(expect(&[
        (
            "the named GP reads the note",
            sees(&professional(ctx, GP, "physician", None)?, &note, &scene.document)?,
            true,
        ),
        (
            "another GP reads the note",
            sees(&professional(ctx, OTHER_GP, "physician", None)?, &note, &scene.document)?,
            false,
        ),
        ("the author still reads the note", sees(&ctx.client, &note, &scene.document)?, true),
    ]))
}

fn emergency_access(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let (note, event, _) = paths(&scene);
    let emergency = professional(ctx, OTHER_GP, "physician", Some("BTG"))?;
    let open_event = sees(&emergency, &event, &scene.event)?;
    let open_note = sees(&emergency, &note, &scene.document)?;
    let purpose = json!([{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "ETREAT"}]);
    choose(ctx, &scene, json!({"type": "deny", "purpose": purpose}))?;
    Ok(expect(&[
        ("break-the-glass reads non-note data", open_event, true),
        ("break-the-glass reads the note", open_note, false),
        ("break-the-glass reads non-note data after the refusal", sees(&emergency, &event, &scene.event)?, false),
        (
            "treatment goes on after the refusal",
            sees(&professional(ctx, GP, "physician", None)?, &event, &scene.event)?,
            true,
        ),
    ]))
}

fn consents_are_the_patients(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let body = consent(&scene, json!({"type": "deny"}));
    let stranger = patient(ctx, &temporary_hetu())?.post_json("/Consent", &body)?.status;
    let by_professional = ctx.client.post_json("/Consent", &body)?.status;
    let chosen = choose(ctx, &scene, json!({"type": "deny"}))?;
    let id = chosen["id"].as_str().unwrap_or_default().to_owned();
    let path = format!("/Consent/{id}");
    Ok(expect(&[
        ("another patient writes this patient's Consent", stranger != 403, false),
        ("a professional writes a patient's Consent", by_professional != 403, false),
        ("the patient reads their Consent", sees(&patient(ctx, &scene.hetu)?, &path, &id)?, true),
        ("the author reads the patient's Consent", sees(&ctx.client, &path, &id)?, false),
        ("another patient reads it", sees(&patient(ctx, &temporary_hetu())?, &path, &id)?, false),
    ]))
}

fn no_side_channels(ctx: &Context) -> Result<Outcome, Failure> {
    let scene = scene_or_skip!(ctx);
    let gp = professional(ctx, GP, "physician", None)?;
    let has = gp.get(&format!("/Patient?_has:Bundle:patient:identifier=x&_id={}", scene.patient))?.status;
    let chained = gp.get("/Bundle?patient.identifier=urn:oid:1.2.246.21|010101A900R")?.status;
    let counted = total(&gp, &format!("/Bundle?patient={}&_count=0", scene.patient))?;
    let reverse = gp.get(&format!("/Patient?_id={}&_revinclude=Bundle:patient", scene.patient))?;
    let included = reverse.json()?["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| entry["resource"]["resourceType"] == "Bundle");
    let everything = gp.get(&format!("/Patient/{}/$everything", scene.patient))?;
    let in_everything = everything.json()?["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|entry| entry["resource"]["resourceType"] == "Bundle");
    Ok(expect(&[
        ("a reverse chain (_has) is answered", has != 400, false),
        ("a chained search is answered", chained != 400, false),
        ("a GP's count of documents includes the note", counted > 0, false),
        ("_revinclude hands a GP the note", included, false),
        ("$everything hands a GP the note", in_everything, false),
        ("$everything is served to a GP", everything.status == 200, true),
    ]))
}
