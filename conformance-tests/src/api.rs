//! Cases on the FHIR REST API itself and its transport: the CapabilityStatement, TLS, the
//! errors every FHIR server must answer with an OperationOutcome, read-your-write and search.

use serde_json::{json, Value};

use crate::case::{
    check, expect_outcome, refused_to_this_identity, temporary_hetu, test_patient, verdict, Case, Context, Failure,
    Level, Outcome, PROFESSIONAL,
};
use crate::client::{handshake, plaintext_probe};

pub fn cases() -> Vec<Case> {
    // What needs no credentials runs against any deployment: the CapabilityStatement, TLS, and
    // format negotiation (on /metadata, which is public). Everything else reads or writes as the
    // run's practitioner; without its credentials the deployment rightly answers 401 before any
    // of the rules checked here.
    vec![
        Case {
            id: "CAP-01",
            title: "CapabilityStatement is served as FHIR R4 4.0.1 JSON",
            level: Level::Shall,
            reference: "FHIR R4 http.html#capabilities",
            needs: &[],
            run: capability_statement,
        },
        Case {
            id: "CAP-02",
            title: "Every advertised search parameter is accepted",
            level: Level::Shall,
            reference: "FHIR R4 search.html#errors",
            needs: PROFESSIONAL,
            run: advertised_params_accepted,
        },
        Case {
            id: "TLS-01",
            title: "TLS 1.3 is negotiated",
            level: Level::Shall,
            reference: "Vaitio design: Transport and identity",
            needs: &[],
            run: tls13_negotiated,
        },
        Case {
            id: "TLS-02",
            title: "Plaintext HTTP is refused on the service port",
            level: Level::Shall,
            reference: "Vaitio design: the only listener is TLS",
            needs: &[],
            run: plaintext_refused,
        },
        Case {
            id: "TLS-03",
            title: "A TLS 1.2-only client is refused",
            level: Level::Should,
            reference: "Vaitio design: TLS 1.3 by default",
            needs: &[],
            run: tls12_refused,
        },
        Case {
            id: "ERR-01",
            title: "Malformed JSON gets 400 and an OperationOutcome",
            level: Level::Shall,
            reference: "FHIR R4 http.html#create",
            needs: PROFESSIONAL,
            run: malformed_json,
        },
        Case {
            id: "ERR-02",
            title: "A body of the wrong resource type gets 400 and an OperationOutcome",
            level: Level::Shall,
            reference: "FHIR R4 http.html#create",
            needs: PROFESSIONAL,
            run: wrong_resource_type,
        },
        Case {
            id: "ERR-03",
            title: "An unknown resource type gets an OperationOutcome (404 in the path, 400 in a body)",
            level: Level::Shall,
            reference: "FHIR R4 http.html",
            needs: PROFESSIONAL,
            run: unknown_resource_type,
        },
        Case {
            id: "ERR-04",
            title: "An unknown search parameter is refused with 400, never ignored",
            level: Level::Shall,
            reference: "FHIR R4 search.html#errors",
            needs: PROFESSIONAL,
            run: unknown_search_param,
        },
        Case {
            id: "ERR-05",
            title: "A wrong Content-Type gets 415 and an OperationOutcome",
            level: Level::Shall,
            reference: "FHIR R4 http.html#mime-type",
            needs: PROFESSIONAL,
            run: wrong_content_type,
        },
        Case {
            id: "ERR-06",
            title: "An oversized body gets 413 and an OperationOutcome",
            level: Level::Shall,
            reference: "Vaitio design: request size limit",
            needs: PROFESSIONAL,
            run: oversized_body,
        },
        Case {
            id: "ERR-07",
            title: "An unknown id gets 404 and an OperationOutcome",
            level: Level::Shall,
            reference: "FHIR R4 http.html#read",
            needs: PROFESSIONAL,
            run: unknown_id,
        },
        Case {
            id: "ERR-08",
            title: "A format other than JSON is refused with 406",
            level: Level::Shall,
            reference: "FHIR R4 http.html#mime-type",
            needs: &[],
            run: unsupported_format,
        },
        Case {
            id: "ERR-09",
            title: "A refused resource is not stored, and the error does not echo the identity code",
            level: Level::Shall,
            reference: "Vaitio design: never echo or log a HETU",
            needs: PROFESSIONAL,
            run: invalid_hetu_refused,
        },
        Case {
            id: "RW-01",
            title: "Read-your-write: create, read, vread, update with If-Match, history",
            level: Level::Shall,
            reference: "FHIR R4 http.html#versioning",
            needs: PROFESSIONAL,
            run: read_your_write,
        },
        Case {
            id: "SRCH-01",
            title: "Search by identifier, patient and date, paged with _count and next links",
            level: Level::Shall,
            reference: "FHIR R4 search.html#paging",
            needs: PROFESSIONAL,
            run: search_and_paging,
        },
        Case {
            id: "SRCH-02",
            title: "A professional's search that names no patient, id or identifier is refused: the register cannot be browsed",
            level: Level::Shall,
            reference: "Vaitio design: no population browsing",
            needs: PROFESSIONAL,
            run: no_population_browsing,
        },
    ]
}

fn capability_statement(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.get("/metadata")?;
    verdict((|| {
        check(answer.status == 200, || format!("GET /metadata answered {}", answer.status))?;
        let statement = answer.json()?;
        check(statement["resourceType"] == "CapabilityStatement", || "resourceType is not CapabilityStatement".into())?;
        check(statement["fhirVersion"] == "4.0.1", || format!("fhirVersion is {}", statement["fhirVersion"]))?;
        check(statement["kind"] == "instance", || "kind is not instance".into())?;
        for element in ["status", "date", "format", "rest"] {
            check(!statement[element].is_null(), || format!("the required element {element} is missing"))?;
        }
        let formats = statement["format"].as_array().cloned().unwrap_or_default();
        check(formats.iter().any(|f| f == "application/fhir+json" || f == "json"), || {
            "format does not list JSON".into()
        })?;
        let resources = statement["rest"][0]["resource"].as_array().cloned().unwrap_or_default();
        check(!resources.is_empty(), || "rest[0].resource is empty".into())?;
        for resource in &resources {
            check(resource["interaction"].as_array().is_some_and(|i| !i.is_empty()), || {
                format!("{} lists no interaction", resource["type"])
            })?;
        }
        Ok(format!("{} resource types advertised", resources.len()))
    })())
}

fn advertised_params_accepted(ctx: &Context) -> Result<Outcome, Failure> {
    let statement = ctx.client.get("/metadata")?.json()?;
    let resources = statement["rest"][0]["resource"].as_array().cloned().unwrap_or_default();
    let mut checked = 0;
    let mut not_for_this_identity = Vec::new();
    'types: for resource in &resources {
        let resource_type = resource["type"].as_str().unwrap_or("");
        for param in resource["searchParam"].as_array().into_iter().flatten() {
            let name = param["name"].as_str().unwrap_or("");
            let value = match param["type"].as_str() {
                Some("date") => "ge2000-01-01",
                Some("reference") => "Patient/conformance-none",
                _ => "conformance-none",
            };
            // A search names what it looks for: a parameter that names nothing (a date) is tried
            // beside an id.
            let names = matches!(name, "_id" | "identifier" | "patient");
            let bound = if names { "" } else { "&_id=conformance-none" };
            let answer = ctx.client.get(&format!("/{resource_type}?{name}={value}{bound}&_count=1"))?;
            if answer.status == 401 {
                return Ok(Outcome::Skip(format!(
                    "Searching was refused to the run's identity (HTTP 401): {}",
                    answer.text_excerpt()
                )));
            }
            // A type this identity may not search at all (the audit log, for a practitioner).
            if answer.status == 403 && answer.is_operation_outcome() {
                not_for_this_identity.push(resource_type.to_owned());
                continue 'types;
            }
            let bundle = answer.json().unwrap_or(Value::Null);
            if answer.status != 200 || bundle["type"] != "searchset" {
                return Ok(Outcome::Fail(format!(
                    "{resource_type}?{name}= answered {}: {}",
                    answer.status,
                    answer.text_excerpt()
                )));
            }
            checked += 1;
        }
    }
    if checked == 0 {
        return Ok(Outcome::Skip("this identity may search none of the advertised types".into()));
    }
    let refused = if not_for_this_identity.is_empty() {
        String::new()
    } else {
        format!(" ({} refused to this identity with 403)", not_for_this_identity.join(", "))
    };
    Ok(Outcome::Pass(format!("{checked} advertised parameters answered with a searchset{refused}")))
}

fn tls13_negotiated(ctx: &Context) -> Result<Outcome, Failure> {
    let version = handshake(ctx.client.target(), rustls::ALL_VERSIONS)?;
    verdict(if version == rustls::ProtocolVersion::TLSv1_3 {
        Ok("TLSv1.3 negotiated when a client offers 1.2 and 1.3".into())
    } else {
        Err(format!("{version:?} negotiated although the client offered TLS 1.3").into())
    })
}

fn plaintext_refused(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = plaintext_probe(ctx.client.target())?;
    verdict(if answer.starts_with(b"HTTP/") {
        Err(format!(
            "the TLS port answered plaintext HTTP: {}",
            String::from_utf8_lossy(&answer[..answer.len().min(80)])
        )
        .into())
    } else {
        Ok(format!("no HTTP answer to plaintext ({} bytes of TLS alert or nothing)", answer.len()))
    })
}

fn tls12_refused(ctx: &Context) -> Result<Outcome, Failure> {
    if ctx.identity.allows_tls12 {
        return Ok(Outcome::Skip("the deployment is configured to accept TLS 1.2 (--allows-tls12)".into()));
    }
    verdict(match handshake(ctx.client.target(), &[&rustls::version::TLS12]) {
        Ok(version) => Err(format!("the handshake succeeded with {version:?}").into()),
        Err(error) => Ok(format!("refused: {error}")),
    })
}

fn malformed_json(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.send(
        "POST",
        "/Patient",
        &[("Content-Type", "application/fhir+json")],
        Some(b"{\"resourceType\": \"Patient\", "),
    )?;
    if let Some(skip) = refused_to_this_identity(&answer, "Creating") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 400, "truncated JSON"))
}

fn wrong_resource_type(ctx: &Context) -> Result<Outcome, Failure> {
    let answer =
        ctx.client.post_json("/Patient", &json!({"resourceType": "Practitioner", "name": [{"family": "Test"}]}))?;
    if let Some(skip) = refused_to_this_identity(&answer, "Creating") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 400, "a Practitioner posted to /Patient"))
}

fn unknown_resource_type(ctx: &Context) -> Result<Outcome, Failure> {
    let in_path = ctx.client.get("/NoSuchType/1")?;
    let first = expect_outcome(&in_path, 404, "GET /NoSuchType/1");
    if first.is_err() {
        return verdict(first);
    }
    let in_body = ctx.client.post_json("/Patient", &json!({"resourceType": "NoSuchType"}))?;
    if in_body.status == 401 || in_body.status == 403 {
        return verdict(first);
    }
    verdict(
        expect_outcome(&in_body, 400, "resourceType NoSuchType in a body")
            .map(|second| format!("{}; {second}", first.unwrap_or_default())),
    )
}

fn unknown_search_param(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.get("/Patient?no-such-parameter=1")?;
    if let Some(skip) = refused_to_this_identity(&answer, "Searching") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 400, "GET /Patient?no-such-parameter=1"))
}

fn wrong_content_type(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.send(
        "POST",
        "/Patient",
        &[("Content-Type", "text/plain")],
        Some(b"{\"resourceType\": \"Patient\"}"),
    )?;
    if let Some(skip) = refused_to_this_identity(&answer, "Creating") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 415, "Content-Type text/plain"))
}

fn oversized_body(ctx: &Context) -> Result<Outcome, Failure> {
    // A valid resource whose size is just over the limit: padding in a string element.
    let padding = "x".repeat(ctx.max_body_bytes + 1024);
    let body = json!({"resourceType": "Organization", "name": padding});
    let answer = match ctx.client.post_json("/Organization", &body) {
        Ok(answer) => answer,
        // Refusing before reading can reset the connection while the client still writes.
        Err(error) => return Ok(Outcome::Fail(format!("no answer to an oversized body: {error}"))),
    };
    if let Some(skip) = refused_to_this_identity(&answer, "Creating") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 413, &format!("a body of {} bytes", ctx.max_body_bytes + 1024)))
}

fn unknown_id(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.get("/Patient/conformance-does-not-exist")?;
    if let Some(skip) = refused_to_this_identity(&answer, "Reading") {
        return Ok(skip);
    }
    verdict(expect_outcome(&answer, 404, "GET /Patient/conformance-does-not-exist"))
}

fn unsupported_format(ctx: &Context) -> Result<Outcome, Failure> {
    let answer = ctx.client.get("/metadata?_format=xml")?;
    let first = expect_outcome(&answer, 406, "_format=xml");
    if first.is_err() {
        return verdict(first);
    }
    let answer = ctx.client.send("GET", "/metadata", &[("Accept", "application/fhir+xml")], None)?;
    verdict(
        expect_outcome(&answer, 406, "Accept: application/fhir+xml")
            .map(|second| format!("{}; {second}", first.unwrap_or_default())),
    )
}

fn invalid_hetu_refused(ctx: &Context) -> Result<Outcome, Failure> {
    let good = temporary_hetu();
    // The same code with a wrong check character.
    let last = good.chars().last().unwrap_or('0');
    let wrong = format!("{}{}", &good[..10], if last == 'A' { 'B' } else { 'A' });
    let answer = ctx.client.post_json("/Patient", &test_patient(&wrong))?;
    if let Some(skip) = refused_to_this_identity(&answer, "Creating") {
        return Ok(skip);
    }
    verdict((|| {
        let refused = expect_outcome(&answer, 422, "a HETU with a wrong check character")?;
        check(!answer.text().contains(&wrong), || "the error body echoes the identity code".into())?;
        let search = ctx.client.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{wrong}"))?;
        let bundle = search.json()?;
        check(bundle["total"] == 0, || format!("the refused Patient is findable: total {}", bundle["total"]))?;
        Ok(refused)
    })())
}

fn read_your_write(ctx: &Context) -> Result<Outcome, Failure> {
    let hetu = temporary_hetu();
    let patient = test_patient(&hetu);
    let created = ctx.client.post_json("/Patient", &patient)?;
    if let Some(skip) = refused_to_this_identity(&created, "Creating") {
        return Ok(skip);
    }
    verdict((|| {
        check(created.status == 201, || format!("create answered {}: {}", created.status, created.text_excerpt()))?;
        let location = created.header("location").ok_or("no Location header")?.to_owned();
        check(location.contains("/Patient/") && location.ends_with("/_history/1"), || {
            format!("Location {location} is not …/Patient/{{id}}/_history/1")
        })?;
        check(created.header("etag") == Some("W/\"1\""), || {
            format!("ETag is {:?}, not W/\"1\"", created.header("etag"))
        })?;
        let id = location
            .split("/Patient/")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .ok_or("no id in Location")?
            .to_owned();
        let read = ctx.client.get(&format!("/Patient/{id}"))?;
        check(read.status == 200, || format!("read answered {}", read.status))?;
        let stored = read.json()?;
        check(stored["id"] == id.as_str(), || "read returned another id".into())?;
        check(stored["identifier"] == patient["identifier"], || {
            "the identifier read back differs from the one written".into()
        })?;
        check(stored["name"] == patient["name"], || "the name read back differs from the one written".into())?;
        check(stored["meta"]["versionId"] == "1", || format!("meta.versionId is {}", stored["meta"]["versionId"]))?;
        let vread = ctx.client.get(&format!("/Patient/{id}/_history/1"))?;
        check(vread.status == 200 && vread.json()?["name"] == patient["name"], || {
            format!("vread answered {}", vread.status)
        })?;
        let mut changed = stored.clone();
        changed["gender"] = json!("other");
        let updated = ctx.client.put_json(&format!("/Patient/{id}"), &changed, Some("W/\"1\""))?;
        check(updated.status == 200, || {
            format!("update with If-Match W/\"1\" answered {}: {}", updated.status, updated.text_excerpt())
        })?;
        check(updated.header("etag") == Some("W/\"2\""), || {
            format!("ETag after update is {:?}", updated.header("etag"))
        })?;
        let stale = ctx.client.put_json(&format!("/Patient/{id}"), &changed, Some("W/\"1\""))?;
        check(stale.status == 412 && stale.is_operation_outcome(), || {
            format!("a stale If-Match answered {}", stale.status)
        })?;
        let history = ctx.client.get(&format!("/Patient/{id}/_history"))?.json()?;
        check(history["type"] == "history" && history["total"] == 2, || {
            format!("history: type {} total {}", history["type"], history["total"])
        })?;
        check(history["entry"][0]["resource"]["gender"] == "other", || {
            "history does not list the newest version first".into()
        })?;
        check(history["entry"][1]["resource"]["gender"] == "unknown", || "history lost the first version".into())?;
        let old = ctx.client.get(&format!("/Patient/{id}/_history/1"))?.json()?;
        check(old["gender"] == "unknown", || "version 1 changed after the update".into())?;
        Ok(format!("Patient/{id}: created, read, vread, updated to version 2, stale update refused, history of 2"))
    })())
}

fn search_and_paging(ctx: &Context) -> Result<Outcome, Failure> {
    let hetu = temporary_hetu();
    let created = ctx.client.post_json("/Patient", &test_patient(&hetu))?;
    if let Some(skip) = refused_to_this_identity(&created, "Creating") {
        return Ok(skip);
    }
    verdict((|| {
        check(created.status == 201, || format!("create answered {}", created.status))?;
        let patient_id = created.json()?["id"].as_str().ok_or("no id")?.to_owned();
        for day in ["2026-01-05", "2026-01-12", "2026-01-19"] {
            let encounter = json!({
                "resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "period": {"start": format!("{day}T10:00:00+02:00"), "end": format!("{day}T10:45:00+02:00")}
            });
            let answer = ctx.client.post_json("/Encounter", &encounter)?;
            check(answer.status == 201, || {
                format!("Encounter create answered {}: {}", answer.status, answer.text_excerpt())
            })?;
        }
        let by_identifier = ctx.client.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{hetu}"))?.json()?;
        check(
            by_identifier["total"] == 1 && by_identifier["entry"][0]["resource"]["id"] == patient_id.as_str(),
            || format!("identifier search: total {}", by_identifier["total"]),
        )?;
        let first = ctx.client.get(&format!("/Encounter?patient=Patient/{patient_id}&_count=2"))?.json()?;
        check(first["type"] == "searchset", || "not a searchset".into())?;
        check(first["total"] == 3, || format!("total is {}, expected 3", first["total"]))?;
        check(first["entry"].as_array().map(Vec::len) == Some(2), || "the first page does not hold 2 entries".into())?;
        let next = first["link"]
            .as_array()
            .and_then(|links| links.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .ok_or("no next link")?
            .to_owned();
        let second = ctx.client.get(&next)?.json()?;
        check(second["entry"].as_array().map(Vec::len) == Some(1), || {
            "the second page does not hold the last entry".into()
        })?;
        let ids: Vec<&Value> = first["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .chain(second["entry"].as_array().into_iter().flatten())
            .map(|e| &e["resource"]["id"])
            .collect();
        check(ids.iter().collect::<std::collections::HashSet<_>>().len() == 3, || "the pages repeat an entry".into())?;
        let dated =
            ctx.client.get(&format!("/Encounter?patient={patient_id}&date=ge2026-01-10&date=lt2026-01-15"))?.json()?;
        check(dated["total"] == 1, || format!("date range search: total {}, expected 1", dated["total"]))?;
        let by_hetu = ctx.client.get(&format!("/Encounter?patient:identifier=urn:oid:1.2.246.21|{hetu}"))?.json()?;
        check(by_hetu["total"] == 3, || format!("patient:identifier search: total {}", by_hetu["total"]))?;
        Ok("identifier, patient, patient:identifier and date searches; 3 results paged 2 + 1".into())
    })())
}

fn no_population_browsing(ctx: &Context) -> Result<Outcome, Failure> {
    let mut seen = Vec::new();
    for query in ["/Patient", "/Patient?_count=20", "/Encounter?date=ge2000-01-01", "/Bundle?_lastUpdated=ge2000-01-01"]
    {
        let answer = ctx.client.get(query)?;
        if let Some(skip) = refused_to_this_identity(&answer, "Searching") {
            return Ok(skip);
        }
        let refused = expect_outcome(&answer, 400, &format!("GET {query}"));
        if refused.is_err() {
            return verdict(refused);
        }
        if answer.text().contains("\"entry\"") || answer.text().contains("\"total\"") {
            return Ok(Outcome::Fail(format!("GET {query} was refused but its answer carries results")));
        }
        seen.push(query);
    }
    Ok(Outcome::Pass(format!("refused with an OperationOutcome: {}", seen.join(", "))))
}
