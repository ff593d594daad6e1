//! Submission cases: a clinic's record becomes a national document, idempotently, and bad
//! records are refused naming the field. The record uses the organisation and practitioner of
//! the run's token and a temporary identity code.

use serde_json::{json, Value};

use crate::actors::practitioner;
use crate::case::{temporary_hetu, Case, Context, Failure, Level, Outcome, PROFESSIONAL};
use crate::fixtures::{not_a_practitioner, record, submit};

pub fn cases() -> Vec<Case> {
    // Every case submits as the run's practitioner: its certificate and token.
    let shall =
        |id, title, reference, run| Case { id, title, level: Level::Shall, reference, needs: PROFESSIONAL, run };
    vec![
        shall(
            "SUB-01",
            "A record becomes a document Bundle (Composition first, PSYTHPN-labelled, markup escaped)",
            "Vaitio input contract v1; FHIR R4 documents",
            accepted,
        ),
        shall(
            "SUB-02",
            "The same record again answers 200 with the same document; a changed one a new version",
            "Vaitio input contract v1: record_id",
            idempotent_and_versioned,
        ),
        shall(
            "SUB-03",
            "Bad records are refused with an OperationOutcome naming the field, and nothing is stored",
            "Vaitio input contract v1",
            refusals,
        ),
        shall(
            "SUB-04",
            "$validate reports every profile issue with its FHIRPath and stores nothing",
            "FHIR R4 resource-operation-validate; Vaitio national profiles",
            validate_without_storing,
        ),
        shall(
            "SUB-05",
            "A ready document Bundle is accepted at POST /Bundle and held to the same profiles",
            "Vaitio national profiles: vaitio-psychotherapy-document",
            ready_documents,
        ),
        shall(
            "SUB-06",
            "Documents of one patient share one Patient, Practitioner and Organization",
            "Vaitio design: resolve-or-create of participants",
            participants_shared,
        ),
    ]
}

/// A new record of a new patient by the run's practitioner, and the practitioner's organisation;
/// a skip when the run's token names no practitioner.
fn fresh(ctx: &Context) -> Result<Result<(Value, String), Outcome>, Failure> {
    let Some((org, practitioner)) = practitioner(ctx) else {
        return Ok(Err(not_a_practitioner()));
    };
    let record_id = format!("CONFORMANCE-{}", chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default());
    Ok(Ok((record(&org, &practitioner, &record_id, &temporary_hetu()), org)))
}

fn accepted(ctx: &Context) -> Result<Outcome, Failure> {
    let (body, _) = match fresh(ctx)? {
        Ok(fresh) => fresh,
        Err(skip) => return Ok(skip),
    };
    let answer = submit(ctx, &body)?;
    if answer.status != 201 {
        return Ok(Outcome::Fail(format!("HTTP {}: {}", answer.status, answer.text_excerpt())));
    }
    let document = answer.json()?;
    let composition = &document["entry"][0]["resource"];
    let labelled =
        composition["meta"]["security"].as_array().is_some_and(|labels| labels.iter().any(|l| l["code"] == "PSYTHPN"));
    let div = composition["section"][0]["text"]["div"].as_str().unwrap_or("");
    Ok(if document["type"] != "document" || composition["resourceType"] != "Composition" {
        Outcome::Fail("not a document Bundle with its Composition first".into())
    } else if !labelled {
        Outcome::Fail("the Composition is not labelled PSYTHPN".into())
    } else if div.contains("<script>") || !div.contains("&lt;script&gt;") {
        Outcome::Fail("the note's markup was not escaped into the narrative".into())
    } else if !answer.header("location").is_some_and(|l| l.contains("/Bundle/")) {
        Outcome::Fail("no Location of the Bundle".into())
    } else {
        Outcome::Pass(format!("201, a document of {} entries", document["entry"].as_array().map_or(0, Vec::len)))
    })
}

fn idempotent_and_versioned(ctx: &Context) -> Result<Outcome, Failure> {
    let (body, _) = match fresh(ctx)? {
        Ok(fresh) => fresh,
        Err(skip) => return Ok(skip),
    };
    let first = submit(ctx, &body)?;
    let again = submit(ctx, &body)?;
    let mut changed = body.clone();
    changed["plan"] = json!("Changed plan.");
    let third = submit(ctx, &changed)?;
    let id = first.json()?["id"].clone();
    Ok(if first.status != 201 {
        Outcome::Fail(format!("first submission: HTTP {}", first.status))
    } else if again.status != 200 || again.json()?["id"] != id || again.header("etag") != Some("W/\"1\"") {
        Outcome::Fail(format!("the repeat answered HTTP {} with ETag {:?}", again.status, again.header("etag")))
    } else if third.status != 200 || third.json()?["id"] != id || third.header("etag") != Some("W/\"2\"") {
        Outcome::Fail(format!("the changed record answered HTTP {} with ETag {:?}", third.status, third.header("etag")))
    } else {
        let history = ctx.client.get(&format!("/Bundle/{}/_history", id.as_str().unwrap_or("")))?.json()?;
        if history["total"] == 2 {
            Outcome::Pass("201, then 200 with the same document, then version 2 with version 1 in history".into())
        } else {
            Outcome::Fail(format!("history total {}", history["total"]))
        }
    })
}

fn refusals(ctx: &Context) -> Result<Outcome, Failure> {
    let (good, org) = match fresh(ctx)? {
        Ok(fresh) => fresh,
        Err(skip) => return Ok(skip),
    };
    let hetu = good["patient"]["hetu"].as_str().unwrap_or("").to_owned();
    let wrong_check = format!("{}{}", &hetu[..10], if hetu.ends_with('A') { 'B' } else { 'A' });
    let other_org = if org.ends_with(".1") { format!("{}.2", &org[..org.len() - 2]) } else { format!("{org}.1") };
    let cases: Vec<(&str, u16, &str, Value)> = vec![
        ("unknown schema version", 400, "schema", {
            let mut r = good.clone();
            r["schema"] = json!("vaitio.psychotherapy-record/v99");
            r
        }),
        ("missing service event", 400, "service_event", {
            let mut r = good.clone();
            r.as_object_mut().map(|o| o.remove("service_event"));
            r
        }),
        ("unknown field", 400, "patient.nickname", {
            let mut r = good.clone();
            r["patient"]["nickname"] = json!("x");
            r
        }),
        ("wrong HETU check character", 422, "patient.hetu", {
            let mut r = good.clone();
            r["patient"]["hetu"] = json!(wrong_check);
            r
        }),
        ("impossible date", 422, "service_event.start", {
            let mut r = good.clone();
            r["service_event"]["start"] = json!("2026-02-30");
            r
        }),
        ("unknown ICD-10 code", 422, "diagnoses[0].icd10", {
            let mut r = good.clone();
            r["diagnoses"][0]["icd10"] = json!("F99.9.9");
            r
        }),
        ("session in the future", 422, "session.start", {
            let mut r = good.clone();
            r["session"]["start"] = json!("2099-01-01T10:00:00+02:00");
            r
        }),
        ("another organisation", 422, "organization.oid", {
            let mut r = good.clone();
            r["organization"]["oid"] = json!(other_org);
            r
        }),
        ("note over the limit", 422, "note.text", {
            let mut r = good.clone();
            r["note"]["text"] = json!("x".repeat(ctx.max_body_bytes / 2));
            r
        }),
    ];
    for (what, status, field, body) in cases {
        let answer = submit(ctx, &body)?;
        let outcome = answer.json().unwrap_or(Value::Null);
        if answer.status != status || outcome["resourceType"] != "OperationOutcome" {
            return Ok(Outcome::Fail(format!(
                "{what}: HTTP {} (expected {status}): {}",
                answer.status,
                answer.text_excerpt()
            )));
        }
        let named = outcome["issue"][0]["expression"][0].as_str().unwrap_or("");
        if named != field {
            return Ok(Outcome::Fail(format!(
                "{what}: the outcome names {} instead of {field}",
                outcome["issue"][0]["expression"]
            )));
        }
        if answer.text().contains(&wrong_check) {
            return Ok(Outcome::Fail(format!("{what}: the refusal echoes the identity code")));
        }
    }
    for (what, body) in [("malformed JSON", &b"{\"schema\": "[..]), ("non-UTF-8 JSON", &[0x7b, 0xff, 0xfe, 0x7d][..])] {
        let answer =
            ctx.client.send("POST", "/psychotherapy-records", &[("Content-Type", "application/json")], Some(body))?;
        if answer.status != 400 || !answer.is_operation_outcome() {
            return Ok(Outcome::Fail(format!("{what}: HTTP {}", answer.status)));
        }
    }
    let stored = ctx.client.get(&format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{hetu}"))?.json()?;
    Ok(if stored["total"] == 0 {
        Outcome::Pass("11 bad records refused, each naming its field; nothing stored".into())
    } else {
        Outcome::Fail("a refused record left a document behind".into())
    })
}

/// A document the gateway made for a fresh record, made ready to be sent again as a new
/// document: without its server id and version, under a new identifier.
fn ready_document(ctx: &Context) -> Result<Result<Value, Outcome>, Failure> {
    let (body, _) = match fresh(ctx)? {
        Ok(fresh) => fresh,
        Err(skip) => return Ok(Err(skip)),
    };
    let answer = submit(ctx, &body)?;
    if answer.status != 201 {
        return Ok(Err(Outcome::Fail(format!("the record was not accepted: HTTP {}", answer.status))));
    }
    let mut document = answer.json()?;
    if let Some(object) = document.as_object_mut() {
        object.remove("id");
    }
    if let Some(meta) = document["meta"].as_object_mut() {
        meta.remove("versionId");
        meta.remove("lastUpdated");
    }
    let nanos = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    document["identifier"]["value"] =
        json!(format!("urn:uuid:00000000-0000-4000-8000-{:012x}", nanos & 0xffff_ffff_ffff));
    Ok(Ok(document))
}

/// The `expression`s of an OperationOutcome's issues.
fn expressions(outcome: &Value) -> Vec<String> {
    outcome["issue"]
        .as_array()
        .map(|issues| issues.iter().filter_map(|i| i["expression"][0].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The document with its Composition no longer restricted: a break of the document profile.
fn unrestricted(document: &Value) -> Value {
    let mut broken = document.clone();
    broken["entry"][0]["resource"]["confidentiality"] = json!("N");
    broken
}

const CONFIDENTIALITY: &str = "Bundle.entry[0].resource.confidentiality";

fn validate_without_storing(ctx: &Context) -> Result<Outcome, Failure> {
    let document = match ready_document(ctx)? {
        Ok(document) => document,
        Err(outcome) => return Ok(outcome),
    };
    let identifier = document["identifier"]["value"].as_str().unwrap_or("").to_owned();
    let valid = ctx.client.post_json("/Bundle/$validate", &document)?;
    let valid_outcome = valid.json().unwrap_or(Value::Null);
    if valid.status != 200 || valid_outcome["issue"][0]["severity"] != "information" {
        return Ok(Outcome::Fail(format!("a valid document: HTTP {}: {}", valid.status, valid.text_excerpt())));
    }
    let invalid = ctx.client.post_json("/$validate", &unrestricted(&document))?;
    let invalid_outcome = invalid.json().unwrap_or(Value::Null);
    if invalid.status != 200 || !expressions(&invalid_outcome).iter().any(|e| e == CONFIDENTIALITY) {
        return Ok(Outcome::Fail(format!("a broken document: HTTP {}: {}", invalid.status, invalid.text_excerpt())));
    }
    let stored = ctx.client.get(&format!("/Bundle?identifier=urn:ietf:rfc:3986|{identifier}"))?.json()?;
    Ok(if stored["total"] == 0 {
        Outcome::Pass(format!("valid: informational; broken: the issue at {CONFIDENTIALITY}; nothing stored"))
    } else {
        Outcome::Fail("$validate stored the document".into())
    })
}

fn ready_documents(ctx: &Context) -> Result<Outcome, Failure> {
    let document = match ready_document(ctx)? {
        Ok(document) => document,
        Err(outcome) => return Ok(outcome),
    };
    let refused = ctx.client.post_json("/Bundle", &unrestricted(&document))?;
    let refused_outcome = refused.json().unwrap_or(Value::Null);
    if refused.status != 422 || !expressions(&refused_outcome).iter().any(|e| e == CONFIDENTIALITY) {
        return Ok(Outcome::Fail(format!(
            "a document breaking the profile: HTTP {}: {}",
            refused.status,
            refused.text_excerpt()
        )));
    }
    let mut undeclared = document.clone();
    if let Some(meta) = undeclared["entry"][1]["resource"]["meta"].as_object_mut() {
        meta.remove("profile");
    }
    let closed = ctx.client.post_json("/Bundle", &undeclared)?;
    if closed.status != 422
        || !expressions(&closed.json().unwrap_or(Value::Null)).iter().any(|e| e == "Bundle.entry[1]")
    {
        return Ok(Outcome::Fail(format!("an entry without its profile: HTTP {}", closed.status)));
    }
    let created = ctx.client.post_json("/Bundle", &document)?;
    Ok(if created.status == 201 && created.header("location").is_some_and(|l| l.contains("/Bundle/")) {
        Outcome::Pass(
            "a conforming document 201; a profile break and an undeclared entry 422 naming the element".into(),
        )
    } else {
        Outcome::Fail(format!("a conforming document: HTTP {}: {}", created.status, created.text_excerpt()))
    })
}

fn participants_shared(ctx: &Context) -> Result<Outcome, Failure> {
    let (first, org) = match fresh(ctx)? {
        Ok(fresh) => fresh,
        Err(skip) => return Ok(skip),
    };
    let mut second = first.clone();
    second["record_id"] = json!(format!("{}-2", first["record_id"].as_str().unwrap_or("")));
    second["session"]["start"] = json!("2026-03-09T14:00:00+02:00");
    let (a, b) = (submit(ctx, &first)?, submit(ctx, &second)?);
    if a.status != 201 || b.status != 201 {
        return Ok(Outcome::Fail(format!("two records: HTTP {} and {}", a.status, b.status)));
    }
    let (a, b) = (a.json()?, b.json()?);
    for (index, kind) in [(1, "Patient"), (2, "Practitioner"), (3, "Organization")] {
        if a["entry"][index]["fullUrl"] != b["entry"][index]["fullUrl"] {
            return Ok(Outcome::Fail(format!("the two documents name different {kind} resources")));
        }
    }
    let hetu = first["patient"]["hetu"].as_str().unwrap_or("");
    let patients = ctx.client.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{hetu}"))?.json()?;
    let organizations = ctx.client.get(&format!("/Organization?identifier=urn:ietf:rfc:3986|urn:oid:{org}"))?.json()?;
    Ok(if patients["total"] != 1 || organizations["total"] != 1 {
        Outcome::Fail(format!("{} Patients and {} Organizations stored", patients["total"], organizations["total"]))
    } else {
        Outcome::Pass("one Patient and one Organization, named by both documents under the same ids".into())
    })
}
