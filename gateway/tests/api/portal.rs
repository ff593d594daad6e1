//! The patient portal over real TLS on both backends, as a browser without script would use
//! it: signing in and out, sessions and CSRF, the headers of every page, documents read as the
//! patient (another patient's id is the same 404 as none), markup in a note shown as text,
//! forms refused with nothing saved, and a preview that says exactly what the API then answers
//! to each audience. The browser journey itself (keyboard, live updates, axe-core, screenshots)
//! is `gateway/tests/portal/journey.mjs` in Chromium.

use std::collections::BTreeSet;

use serde_json::{json, Value};
use vaitio_conformance::client::{Answer, Client, Target};

use super::submission::{record, submit};
use super::support::*;

const OTHER_HETU: &str = "010101A900R";
const GP_HERE: &str = "10000000001";
const EMERGENCY_DOCTOR: &str = "10000000009";
const THERAPIST_ELSEWHERE: &str = "10000000005";
const OTHER_THERAPIST: &str = "10000000007";
const SECOND_EVENT: &str = "1.2.246.10.87654321.10.1.5.2";

/// A browser without script: a cookie jar of the portal's two cookies, forms posted as forms.
pub struct Browser {
    pub client: Client,
    pub session: Option<String>,
    sign_in: Option<String>,
    oidc: Option<String>,
}

pub fn attribute<'a>(html: &'a str, marker: &str) -> Option<&'a str> {
    let start = html.find(marker)? + marker.len();
    let end = html[start..].find('"')?;
    Some(&html[start..start + end])
}

impl Browser {
    pub fn new(gateway: &TestGateway) -> Browser {
        let client =
            Client::new(Target { base_url: gateway.base_url.clone(), ca: Some(gateway.ca()), ..Target::default() })
                .unwrap();
        Browser { client, session: None, sign_in: None, oidc: None }
    }

    fn cookies(&self) -> String {
        let mut cookies = Vec::new();
        if let Some(s) = &self.session {
            cookies.push(format!("__Host-vaitio-session={s}"));
        }
        if let Some(s) = &self.sign_in {
            cookies.push(format!("__Host-vaitio-sign-in={s}"));
        }
        if let Some(s) = &self.oidc {
            cookies.push(format!("__Host-vaitio-oidc={s}"));
        }
        cookies.join("; ")
    }

    fn keep(&mut self, answer: &Answer) {
        for (name, value) in &answer.headers {
            if !name.eq_ignore_ascii_case("set-cookie") {
                continue;
            }
            let Some((pair, _)) = value.split_once(';') else { continue };
            let Some((cookie, value)) = pair.split_once('=') else { continue };
            let value = (!value.is_empty()).then(|| value.to_owned());
            match cookie {
                "__Host-vaitio-session" => self.session = value,
                "__Host-vaitio-sign-in" => self.sign_in = value,
                "__Host-vaitio-oidc" => self.oidc = value,
                _ => {}
            }
        }
    }

    pub fn get(&mut self, path: &str) -> Answer {
        let cookies = self.cookies();
        let answer = self.client.send("GET", path, &[("Cookie", &cookies), ("Accept-Language", "en")], None).unwrap();
        self.keep(&answer);
        answer
    }

    pub fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Answer {
        let mut body = form_urlencoded::Serializer::new(String::new());
        for (name, value) in fields {
            body.append_pair(name, value);
        }
        self.post_raw(path, body.finish().as_bytes())
    }

    pub fn post_raw(&mut self, path: &str, body: &[u8]) -> Answer {
        let cookies = self.cookies();
        let headers = [
            ("Cookie", cookies.as_str()),
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Accept-Language", "en"),
        ];
        let answer = self.client.send("POST", path, &headers, Some(body)).unwrap();
        self.keep(&answer);
        answer
    }

    /// Signs in through the development form; returns the page's CSRF token.
    pub fn sign_in(&mut self, hetu: &str) -> String {
        let page = self.get("/portal/login");
        assert_eq!(page.status, 200, "{}", page.text());
        let token = attribute(&page.text(), "name=\"csrf\" value=\"").unwrap().to_owned();
        let answer = self.post("/portal/login/dev", &[("csrf", &token), ("hetu", hetu)]);
        assert_eq!(answer.status, 303, "{}", answer.text());
        assert_eq!(answer.header("location"), Some("/portal/documents"));
        assert!(self.session.is_some());
        self.csrf()
    }

    /// The CSRF token of the signed-in session, read off a page.
    pub fn csrf(&mut self) -> String {
        let page = self.get("/portal/documents");
        assert_eq!(page.status, 200, "{}", page.text());
        attribute(&page.text(), "name=\"csrf\" value=\"").unwrap().to_owned()
    }
}

fn assert_page_headers(answer: &Answer) {
    let csp = answer.header("content-security-policy").unwrap_or("");
    assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(answer.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(answer.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(answer.header("cache-control"), Some("no-store"));
    assert!(answer.header("content-type").unwrap_or("").starts_with("text/html"));
}

/// The patient's two documents: the therapist's (with markup in its note) at ORG, and one from
/// OTHER_ORG; and another patient's document.
fn documents(gateway: &TestGateway) -> (String, String) {
    let mine = submit(&gateway.client, &record());
    assert_eq!(mine.status, 201, "{}", mine.text());
    let mine = mine.json().unwrap()["id"].as_str().unwrap().to_owned();
    let elsewhere = gateway.professional(OTHER_ORG, THERAPIST_ELSEWHERE, "psychotherapist");
    let mut second = record();
    second["record_id"] = json!("B-1");
    second["organization"] = json!({"oid": OTHER_ORG, "name": "Clinic B"});
    second["therapist"]["terhikki"] = json!(THERAPIST_ELSEWHERE);
    second["service_event"]["oid"] = json!(SECOND_EVENT);
    second["note"]["text"] = json!("Second clinic's note.");
    let answer = submit(&elsewhere, &second);
    assert_eq!(answer.status, 201, "{}", answer.text());
    let mut others = record();
    others["record_id"] = json!("OTHER-1");
    others["patient"]["hetu"] = json!(OTHER_HETU);
    others["patient"]["birth_date"] = json!("2001-01-01");
    let answer = submit(&gateway.client, &others);
    assert_eq!(answer.status, 201, "{}", answer.text());
    (mine, answer.json().unwrap()["id"].as_str().unwrap().to_owned())
}

/// The list reads each document's sealed listing, which opens only beside its own document: a
/// listing moved to another document's head fails the page rather than show it. A document
/// stored before listings (none on its head) is listed from its body, exactly as from a listing.
fn listed_from_sealed_listings(gateway: &TestGateway, browser: &mut Browser, html: &str, mine: &str) {
    use diesel::connection::SimpleConnection;
    let table = |html: &str| html[html.find("<table").unwrap()..html.find("</table>").unwrap()].to_owned();
    let without = "SELECT COUNT(*) AS n FROM resource_heads WHERE resource_type = 'Bundle' AND listing IS NULL";
    assert_eq!(gateway.count(without), 0, "every document's head carries its listing");
    let mut conn = gateway.database();
    conn.batch_execute(&format!(
        "UPDATE resource_heads SET listing = (SELECT listing FROM resource_heads AS other \
         WHERE other.resource_type = 'Bundle' AND other.id <> '{mine}' AND other.listing IS NOT NULL \
         AND other.patient = resource_heads.patient) WHERE resource_type = 'Bundle' AND id = '{mine}'"
    ))
    .unwrap();
    let moved = browser.get("/portal/documents");
    assert!(moved.status >= 500, "a listing beside another document does not open: {}", moved.status);
    assert!(!moved.text().contains("Clinic B"), "nothing of it is shown");
    conn.batch_execute("UPDATE resource_heads SET listing = NULL").unwrap();
    let from_bodies = browser.get("/portal/documents");
    assert_eq!(from_bodies.status, 200);
    assert_eq!(table(&from_bodies.text()), table(html), "listed from the bodies alike");

    // A new version of a document carries its own listing, and the list shows the new one.
    let mut amended = record();
    amended["organization"]["name"] = json!("Example Therapy Clinic Annex");
    let answer = submit(&gateway.client, &amended);
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.json().unwrap()["id"].as_str(), Some(mine));
    let listed =
        format!("SELECT COUNT(*) AS n FROM resource_heads WHERE id = '{mine}' AND version = 2 AND listing IS NOT NULL");
    assert_eq!(gateway.count(&listed), 1, "the new version's listing");
    let amended = browser.get("/portal/documents");
    assert_eq!(amended.status, 200);
    assert!(amended.text().contains("Example Therapy Clinic Annex"), "{}", amended.text());
}

fn count(gateway: &TestGateway, resource_type: &str) -> i64 {
    gateway.stored(resource_type)
}

on_both_backends! {
    fn the_portal_shows_a_patient_their_own_documents_and_nothing_else(gateway) {
        let (mine, theirs) = documents(&gateway);
        let mut browser = Browser::new(&gateway);
        // Not signed in: every page leads to the sign-in page.
        let answer = browser.get("/portal/documents");
        assert_eq!((answer.status, answer.header("location")), (303, Some("/portal/login")));
        let login = browser.get("/portal/login");
        assert_page_headers(&login);
        assert!(login.text().contains("not for real patients"), "the development banner");
        assert!(login.text().contains("<html lang=\"en\""));
        browser.sign_in(HETU);

        let list = browser.get("/portal/documents");
        assert_page_headers(&list);
        let html = list.text();
        assert_eq!(html.matches("href=\"/portal/documents/").count(), 2, "{html}");
        assert!(html.contains("Clinic B") && html.contains("Example Therapy Clinic"));
        assert!(html.contains("Psychotherapy (regime/therapy), from 10 Jan 2026"), "the service event for a person");
        assert_eq!(html.matches("<h1").count(), 1);
        listed_from_sealed_listings(&gateway, &mut browser, &html, &mine);

        let page = browser.get(&format!("/portal/documents/{mine}"));
        assert_eq!(page.status, 200);
        assert_page_headers(&page);
        let html = page.text();
        assert!(html.contains(NOTE));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "markup in a note is text");
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("F32.1") && html.contains("Depressive episode"));
        assert!(html.contains("PHQ-9") && html.contains("Suicide risk: low"));

        // Another patient's document and one that does not exist: the same 404 page.
        let other = browser.get(&format!("/portal/documents/{theirs}"));
        let none = browser.get("/portal/documents/no-such-document");
        assert_eq!((other.status, none.status), (404, 404));
        // Alike but for the page's own address in its language links.
        assert_eq!(other.text().replace(&theirs, "ID"), none.text().replace("no-such-document", "ID"));

        // A clinic cannot name another clinic's staff in patients' logs: this clinic's GP, who
        // tries the note, was first named by the other clinic, in a record of someone else's.
        let gp = gateway.professional(ORG, GP_HERE, "physician");
        assert_eq!(gp.get(&format!("/Bundle/{mine}")).unwrap().status, 404);
        let elsewhere = gateway.professional(OTHER_ORG, THERAPIST_ELSEWHERE, "psychotherapist");
        let mut spoof = record();
        spoof["record_id"] = json!("SPOOF-1");
        spoof["organization"] = json!({"oid": OTHER_ORG, "name": "Clinic B"});
        spoof["therapist"] = json!({"terhikki": GP_HERE, "given": ["Spoofed"], "family": "Name", "profession": "your relative"});
        spoof["service_event"]["oid"] = json!(SECOND_EVENT);
        spoof["patient"]["hetu"] = json!("150580-2469");
        spoof["patient"]["birth_date"] = json!("1980-05-15");
        let answer = submit(&elsewhere, &spoof);
        assert_eq!(answer.status, 201, "{}", answer.text());

        // The reads are in the patient's access log, as their own.
        let log = browser.get("/portal/access-log");
        assert!(!log.text().contains("Spoofed") && !log.text().contains("your relative"), "{}", log.text());
        assert!(log.text().contains(&format!("Terhikki number {GP_HERE}")), "{}", log.text());
        assert_eq!(log.status, 200);
        assert_page_headers(&log);
        assert!(log.text().contains("Anna Korhonen"), "the submitting therapist, by name");
        assert!(log.text().contains("You (in the portal)"), "{}", log.text());
        let others = browser.get("/portal/access-log?others=1");
        assert!(!others.text().contains("You (in the portal)"), "the patient's own visits hidden when asked");
        assert!(others.text().contains("Anna Korhonen"));
        assert!(!log.text().contains("Another patient"), "every patient entry of this log is the reader's own");

        // The other patient's log shows this patient's tries at their document (in the portal
        // and through the API) as another patient's, never as the reader's own visit, also when
        // their own visits are hidden.
        let tried = gateway.patient(HETU).get(&format!("/Bundle/{theirs}")).unwrap();
        assert_eq!(tried.status, 404);
        let mut victim = Browser::new(&gateway);
        victim.sign_in(OTHER_HETU);
        let theirs_log = victim.get("/portal/access-log?others=1").text();
        assert!(theirs_log.contains("Another patient"), "{theirs_log}");
        assert!(!theirs_log.contains("You (in the portal)") && !theirs_log.contains("Your own request"), "{theirs_log}");
        assert!(theirs_log.contains("Withheld: not theirs to receive"), "{theirs_log}");
        assert!(!theirs_log.contains("therapy-note rule"), "another patient's try is not the therapy-note rule's");
        // Through the API the same: another patient, without that patient's name or address.
        let api_log = gateway.patient(OTHER_HETU).get("/AuditEvent?_count=100").unwrap().json().unwrap();
        let tries: Vec<&serde_json::Value> = api_log["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| &e["resource"])
            .filter(|r| r.to_string().contains("AnotherPatientsData"))
            .collect();
        assert!(!tries.is_empty(), "{api_log}");
        for entry in tries {
            assert_eq!(entry["agent"][0]["who"]["identifier"]["value"], "another-patient", "{entry}");
            assert!(entry["agent"][0].get("network").is_none(), "{entry}");
        }

        // Signing out ends the session on the server: the old cookie is worth nothing.
        let csrf = browser.csrf();
        let old = browser.session.clone();
        let out = browser.post("/portal/logout", &[("csrf", &csrf)]);
        assert_eq!(out.status, 303);
        browser.session = old;
        let replayed = browser.get("/portal/documents");
        assert_eq!(replayed.status, 303, "a session cookie replayed after sign-out");
    }

    fn forms_without_their_token_or_with_bad_fields_save_nothing(gateway) {
        documents(&gateway);
        let mut browser = Browser::new(&gateway);
        let csrf = browser.sign_in(HETU);
        let before = count(&gateway, "Consent");
        let deny = |csrf: &str| -> Vec<(&'static str, String)> { vec![("csrf", csrf.to_owned()), ("kind", "organisation".into()), ("organisation", OTHER_ORG.into()), ("action", "save".into())] };
        let post = |browser: &mut Browser, list: Vec<(&'static str, String)>| {
            let borrowed: Vec<(&str, &str)> = list.iter().map(|(n, v)| (*n, v.as_str())).collect();
            browser.post("/portal/restrictions", &borrowed)
        };
        // A cross-site post carries no token.
        let forged = post(&mut browser, deny("")[1..].to_vec());
        assert_eq!(forged.status, 403, "{}", forged.text());
        assert!(forged.text().contains("Nothing was saved"));
        let wrong = post(&mut browser, deny(&"0".repeat(64)));
        assert_eq!(wrong.status, 403);
        // Oversized, malformed, repeated and control-character fields.
        let long = "1.".repeat(200);
        for bad in [
            vec![("csrf", csrf.clone()), ("kind", "organisation".into()), ("organisation_oid", long.clone()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "organisation".into()), ("organisation_oid", "not an oid".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "sideways".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "permit".into()), ("practitioner", "12ab".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "everyone".into()), ("from", "2026-13-01".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "everyone".into()), ("from", "2027-01-01".into()), ("until", "2026-01-01".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "everyone\u{0}".into()), ("action", "save".into())],
            vec![("csrf", csrf.clone()), ("kind", "everyone".into()), ("kind", "organisation".into()), ("action", "save".into())],
        ] {
            let answer = post(&mut browser, bad.clone());
            assert_eq!(answer.status, 400, "{bad:?}: {}", answer.text());
            assert!(answer.text().contains("Nothing was saved"), "{}", answer.text());
            assert!(!answer.text().contains("not an oid") && !answer.text().contains("sideways"), "no value echoed");
        }
        let huge = format!("csrf={csrf}&kind=everyone&pad={}", "x".repeat(20_000));
        assert_eq!(browser.post_raw("/portal/restrictions", huge.as_bytes()).status, 400);
        assert_eq!(count(&gateway, "Consent"), before, "nothing was saved");
        // A good form saves one Consent, through the API's validation.
        let saved = post(&mut browser, deny(&csrf));
        assert_eq!(saved.status, 303, "{}", saved.text());
        assert_eq!(count(&gateway, "Consent"), before + 1);
        // A development sign-in needs the sign-in form's token too.
        let mut stranger = Browser::new(&gateway);
        let forged = stranger.post("/portal/login/dev", &[("hetu", HETU)]);
        assert_eq!(forged.status, 403);
        assert!(stranger.session.is_none());
    }

    fn the_preview_says_exactly_what_the_api_then_answers(gateway) {
        documents(&gateway);
        let patient_id = {
            let me = gateway.patient(HETU);
            let found = me.get("/Patient").unwrap().json().unwrap();
            found["entry"][0]["resource"]["id"].as_str().unwrap().to_owned()
        };
        let audiences: Vec<(&str, Client)> = vec![
            ("gp", gateway.professional(ORG, GP_HERE, "physician")),
            ("other-clinic", gateway.professional(OTHER_ORG, OTHER_THERAPIST, "psychotherapist")),
            ("therapist", gateway.professional(OTHER_ORG, THERAPIST_ELSEWHERE, "psychotherapist")),
            ("emergency", {
                let cert = gateway.org_certificate(OTHER_ORG);
                let mut claims = gateway.claims("physician", Some(OTHER_ORG), EMERGENCY_DOCTOR, Some(&cert.0));
                claims.purpose = Some("ETREAT".into());
                claims.reason = Some("unconscious on arrival".into());
                gateway.client_with(Some(cert), Some(gateway.token(&claims)))
            }),
        ];
        let mut browser = Browser::new(&gateway);
        let csrf = browser.sign_in(HETU);
        let choices: [&[(&str, &str)]; 6] = [
            &[("kind", "organisation"), ("organisation", OTHER_ORG)],
            &[("kind", "service_event"), ("service_event", SECOND_EVENT)],
            &[("kind", "role"), ("role", "physician")],
            &[("kind", "everyone")],
            &[("kind", "emergency")],
            &[("kind", "permit"), ("practitioner", GP_HERE)],
        ];
        for choice in choices {
            let mut fields: Vec<(&str, &str)> = vec![("csrf", &csrf), ("gp_org", ORG)];
            fields.extend_from_slice(choice);
            let preview = browser.post("/portal/restrictions", &[fields.as_slice(), &[("action", "preview")]].concat());
            assert_eq!(preview.status, 200, "{}", preview.text());
            let html = preview.text();
            let saved = browser.post("/portal/restrictions", &[fields.as_slice(), &[("action", "save")]].concat());
            assert_eq!(saved.status, 303, "{}", saved.text());
            for (key, client) in &audiences {
                let said = previewed(&html, key, "with");
                let answered = received(client, &patient_id);
                assert_eq!(said, answered, "{choice:?}, {key}: the preview and the API disagree");
            }
            // Withdraw it through the portal, previewed the same way.
            let page = browser.get("/portal/restrictions").text();
            let action = attribute(&page, "action=\"/portal/restrictions/").unwrap().to_owned();
            let path = format!("/portal/restrictions/{action}");
            let preview = browser.post(&path, &[("csrf", &csrf), ("action", "preview")]);
            assert_eq!(preview.status, 200, "{}", preview.text());
            for (key, client) in &audiences {
                let before = received(client, &patient_id);
                assert_eq!(previewed(&preview.text(), key, "without"), before, "{choice:?}, {key}: without the withdrawal");
            }
            let withdrawn = browser.post(&path, &[("csrf", &csrf), ("action", "save")]);
            assert_eq!(withdrawn.status, 303, "{}", withdrawn.text());
            for (key, client) in &audiences {
                assert_eq!(previewed(&preview.text(), key, "with"), received(client, &patient_id), "{choice:?}, {key}: withdrawn");
            }
        }
    }
}

/// The `Type/id`s the preview lists for an audience, in one state (`with` or `without`).
fn previewed(html: &str, audience: &str, state: &str) -> BTreeSet<String> {
    let marker = format!("data-audience=\"{audience}\" data-state=\"{state}\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no {marker}"));
    let section = &html[start..];
    let end = section.find("</details>").unwrap();
    section[..end].split("data-resource=\"").skip(1).map(|s| s[..s.find('"').unwrap()].to_owned()).collect()
}

/// What the API gives a professional of the patient's data, type by type.
fn received(client: &Client, patient_id: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for resource_type in ["Patient", "Encounter", "Condition", "Observation", "Composition", "Bundle"] {
        let query =
            if resource_type == "Patient" { format!("_id={patient_id}") } else { format!("patient={patient_id}") };
        let answer = client.get(&format!("/{resource_type}?{query}&_count=100")).unwrap();
        assert_eq!(answer.status, 200, "{resource_type}: {}", answer.text());
        let bundle: Value = answer.json().unwrap();
        for entry in bundle["entry"].as_array().into_iter().flatten() {
            if entry["search"]["mode"] == "match" {
                found.insert(format!("{resource_type}/{}", entry["resource"]["id"].as_str().unwrap()));
            }
        }
    }
    found
}

/// Sessions live in the node's memory, the same on either backend.
#[test]
fn a_session_ends_after_its_idle_time() {
    let gateway =
        TestGateway::spawn_with(Backend::Sqlite, |config| config.portal_idle = std::time::Duration::from_millis(1500))
            .unwrap();
    let mut browser = Browser::new(&gateway);
    browser.sign_in(HETU);
    std::thread::sleep(std::time::Duration::from_millis(1700));
    let answer = browser.get("/portal/documents");
    assert_eq!(answer.status, 303, "an expired session");
    assert_eq!(answer.header("location"), Some("/portal/login?ended=1"));
}

/// The browser journey, axe-core and the screenshots: `gateway/tests/portal/journey.mjs` in
/// Debian's Chromium, against this gateway. `./scripts/test` installs Chromium and the two npm
/// packages; in CI a missing one fails the test, elsewhere it is skipped with a message.
fn journey_in_chromium(gateway: &TestGateway) {
    let folder = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/portal");
    let chromium = std::env::var("VAITIO_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let ready = folder.join("node_modules/playwright-core").is_dir() && std::path::Path::new(&chromium).is_file();
    if !ready {
        assert!(
            std::env::var("CI").is_err(),
            "CI: Chromium ({chromium}) or the npm packages of {} are missing",
            folder.display()
        );
        eprintln!("skipped: the portal's browser tests need {chromium} and `npm ci` in {}", folder.display());
        return;
    }
    let (mine, _) = documents(gateway);
    assert!(!mine.is_empty());
    let patient_id = gateway.patient(HETU).get("/Patient").unwrap().json().unwrap()["entry"][0]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let professional = |org: &str, terhikki: &str| {
        let (cert, key) = gateway.org_certificate(org);
        let token = gateway.token(&gateway.claims("physician", Some(org), terhikki, Some(&cert)));
        json!({"cert": cert, "key": key, "token": token, "terhikki": terhikki})
    };
    let screenshots = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/portal-screenshots")
        .join(format!("{:?}", gateway.backend).to_lowercase());
    let config = json!({
        "base_url": gateway.base_url,
        "ca": gateway.ca(),
        "chromium": chromium,
        "hetu": HETU,
        "patient_id": patient_id,
        "clinic_b": OTHER_ORG,
        "gp_a": professional(ORG, GP_HERE),
        "gp_b": professional(OTHER_ORG, "10000000003"),
        "screenshots": screenshots,
    });
    let file = gateway.dir.path().join("journey.json");
    std::fs::write(&file, config.to_string()).unwrap();
    let output = std::process::Command::new("node").arg(folder.join("journey.mjs")).arg(&file).output().expect("node");
    let printed = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    println!("{printed}");
    assert!(output.status.success(), "the browser journey failed:\n{printed}");
}

on_both_backends! {
    fn the_patient_journey_in_chromium(gateway) {
        journey_in_chromium(&gateway);
    }
}
