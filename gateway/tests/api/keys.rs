//! The keys: the key-encryption key rotated under load with no request failing and every document
//! still opening, resumed after a kill -9, old versions retired; kept in a PKCS#11 token
//! (SoftHSM2) from submission to restart, its key never let out, the token unplugged and back;
//! and the index key rotated under load, every search and access log finding the same throughout.

use std::collections::BTreeMap;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vaitio_conformance::case::temporary_hetu_number;
use vaitio_conformance::client::Client;

use super::cli::vaitio;
use super::submission::{record as example_record, submit};
use super::support::*;

/// The example record, of the `n`th of many patients.
fn record(record_id: &str, hetu: &str) -> Value {
    let mut body = example_record();
    body["record_id"] = record_id.into();
    body["patient"]["hetu"] = hetu.into();
    body["patient"].as_object_mut().unwrap().remove("birth_date");
    body
}

/// Submits a record of a new patient (the `n`th); returns its document's id.
fn submit_new_patient(client: &Client, n: u128) -> Result<String, String> {
    let body = record(&format!("KEYS-{n}"), &temporary_hetu_number(n));
    let answer = submit(client, &body);
    if answer.status != 201 {
        return Err(format!("submission {n}: {} {}", answer.status, answer.text()));
    }
    Ok(answer.json().unwrap()["id"].as_str().unwrap().to_owned())
}

fn opens(client: &Client, id: &str) -> Result<(), String> {
    let answer = client.get(&format!("/Bundle/{id}")).unwrap();
    match answer.status {
        200 => Ok(()),
        status => Err(format!("Bundle/{id}: {status} {}", answer.text())),
    }
}

/// `vaitio keys …` against the gateway's folder, database and key custody.
fn keys(gateway: &TestGateway, args: &[&str]) -> std::process::Command {
    let mut command = vaitio(gateway.dir.path());
    command.arg("keys").args(args).args([
        "--data-dir",
        &gateway.config.data_dir.display().to_string(),
        "--database-url",
        &gateway.database_url(),
    ]);
    if let vaitio::config::KekSettings::Token(token) = &gateway.config.kek {
        let hsm::TokenChoice::Label(label) = &token.token else { panic!("a token by label") };
        let pin_file = token.pin_file.as_ref().expect("a PIN file");
        command.args(["--pkcs11-module", &token.module.display().to_string(), "--pkcs11-token", label]).args([
            "--pkcs11-pin-file",
            &pin_file.display().to_string(),
            "--pkcs11-key-label",
            &token.key_label,
        ]);
    }
    command
}

fn succeeded(output: Output) -> String {
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "vaitio keys failed: {text}");
    text
}

/// Data keys by the id of the key-encryption key that wraps them, read from the database.
fn wrapped_by(gateway: &TestGateway) -> BTreeMap<String, i64> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        kek_id: String,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let rows: Vec<Row> = gateway.query("SELECT kek_id, COUNT(*) AS n FROM data_keys GROUP BY kek_id");
    rows.into_iter().map(|r| (r.kek_id, r.n)).collect()
}

/// The key ids of the versions, oldest first.
fn versions(gateway: &TestGateway) -> Vec<String> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        key_id: String,
    }
    let rows: Vec<Row> = gateway.query("SELECT key_id FROM key_versions WHERE purpose = 'kek' ORDER BY version");
    rows.into_iter().map(|r| r.key_id).collect()
}

/// Submissions of new patients and reads of stored documents on `threads` threads each, until
/// `stop`; every id submitted is added to `ids`, and every failure to `failures`.
fn load(
    gateway: &TestGateway,
    ids: &Arc<Mutex<Vec<String>>>,
    stop: &Arc<AtomicBool>,
    first: u128,
) -> Vec<std::thread::JoinHandle<Vec<String>>> {
    let mut threads = Vec::new();
    for worker in 0..2u128 {
        let (client, submitted, stopped) =
            (TestGateway::on_node(&gateway.client, &gateway.base_url), ids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (ids, stop) = (submitted, stopped);
            let mut failures = Vec::new();
            let mut n = first + worker * 100_000;
            while !stop.load(Ordering::Relaxed) {
                match submit_new_patient(&client, n) {
                    Ok(id) => ids.lock().unwrap().push(id),
                    Err(failure) => failures.push(failure),
                }
                n += 1;
                // A clinic's pace rather than a flood: a few hundred patients over a rotation.
                std::thread::sleep(Duration::from_millis(40));
            }
            failures
        }));
        let (client, submitted, stopped) =
            (TestGateway::on_node(&gateway.client, &gateway.base_url), ids.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            let (ids, stop) = (submitted, stopped);
            let mut failures = Vec::new();
            let mut i = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let id = {
                    let ids = ids.lock().unwrap();
                    ids[i % ids.len()].clone()
                };
                if let Err(failure) = opens(&client, &id) {
                    failures.push(failure);
                }
                i += 7;
                std::thread::sleep(Duration::from_millis(10));
            }
            failures
        }));
    }
    threads
}

/// A gateway for a load of one clinic's many new patients: the harvesting detection, which
/// would rightly stop one practitioner reaching hundreds of patients, is off.
fn busy_clinic(backend: Backend, adjust: impl FnOnce(&mut vaitio::config::Config)) -> Option<TestGateway> {
    TestGateway::spawn_with(backend, |config| {
        config.harvest.enabled = false;
        adjust(config);
    })
}

#[test]
fn the_kek_rotates_under_load_on_sqlite() {
    rotates_under_load(Backend::Sqlite);
}

#[test]
fn the_kek_rotates_under_load_on_postgres() {
    rotates_under_load(Backend::Postgres);
}

/// A rotation under load, where no request fails and every document opens; a kill -9 half-way
/// through the next one, resumed; the old versions retired.
fn rotates_under_load(backend: Backend) {
    let Some(mut gateway) = busy_clinic(backend, |_| {}) else { return };
    let ids: Vec<String> = (0..40).map(|n| submit_new_patient(&gateway.client, n).unwrap()).collect();
    let first = versions(&gateway);
    assert_eq!(first.len(), 1, "the first start records version 1");
    // A data key for each patient, and one for the resources of no patient (the clinic,
    // the practitioner).
    assert_eq!(wrapped_by(&gateway), BTreeMap::from([(first[0].clone(), 41)]));

    // A rotation while clinics submit and read.
    let ids = Arc::new(Mutex::new(ids));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(&gateway, &ids, &stop, 1_000);
    std::thread::sleep(Duration::from_millis(300));
    let rotated = succeeded(keys(&gateway, &["rotate-kek"]).output().unwrap());
    assert!(rotated.contains("version 2 is in force"), "{rotated}");
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        failures.is_empty(),
        "{} requests failed during the rotation: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let second = versions(&gateway);
    assert_eq!(second.len(), 2);
    let total = ids.lock().unwrap().len() as i64 + 1;
    assert!(total > 41, "the load submitted nothing");
    assert_eq!(wrapped_by(&gateway), BTreeMap::from([(second[1].clone(), total)]), "every data key rewrapped");

    // With every key unwrapped afresh, every document still opens.
    gateway.restart();
    for id in ids.lock().unwrap().iter() {
        opens(&gateway.client, id).unwrap();
    }
    let metrics = gateway.metrics();
    assert!(metrics.contains("vaitio_kek_version_in_force 2"), "{metrics}");
    assert!(metrics.contains("vaitio_kek_versions{state=\"older\"} 1"), "{metrics}");
    let status = succeeded(keys(&gateway, &["status"]).output().unwrap());
    assert!(status.contains("version 1") && status.contains("version 2"), "{status}");

    // Version 2 is in force: refused. Version 1 wraps nothing: retired.
    let refused = keys(&gateway, &["retire-kek", "--version", "2"]).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("in force"));
    succeeded(keys(&gateway, &["retire-kek", "--version", "1"]).output().unwrap());

    // A rotation to version 3 killed half-way through its batches, then resumed.
    let mut child = keys(&gateway, &["rotate-kek", "--batch", "2", "--pause-millis", "40"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let third = loop {
        let versions = versions(&gateway);
        if let Some(third) = versions.get(2) {
            if wrapped_by(&gateway).get(third).is_some_and(|n| *n >= 4) {
                break third.clone();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the rotation to version 3 did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let halfway = wrapped_by(&gateway);
    assert!(halfway.get(&second[1]).is_some_and(|n| *n > 0), "killed too late to be half-way: {halfway:?}");
    // Version 2 still unwraps what it wraps, so the gateway reads through the half-way state.
    gateway.restart();
    for id in ids.lock().unwrap().iter().take(20) {
        opens(&gateway.client, id).unwrap();
    }
    assert!(gateway.metrics().contains("vaitio_kek_rotation_unfinished 1"));
    let resumed = succeeded(keys(&gateway, &["rotate-kek"]).output().unwrap());
    assert!(resumed.contains("resuming the rotation to key-encryption key version 3"), "{resumed}");
    assert_eq!(versions(&gateway).len(), 3, "resuming made no new version");
    assert_eq!(wrapped_by(&gateway), BTreeMap::from([(third, total)]));
    succeeded(keys(&gateway, &["retire-kek", "--version", "2"]).output().unwrap());
    gateway.restart();
    for id in ids.lock().unwrap().iter() {
        opens(&gateway.client, id).unwrap();
    }

    // Every key operation is in the audit log, as the operator's, and the log verifies.
    assert!(gateway.verify_audit_log().is_ok());
}

/// One test at a time with a SoftHSM2 token: unplugging one initialises the module again,
/// which ends the sessions of every other user of it in the process.
static TOKEN_TESTS: Mutex<()> = Mutex::new(());

/// A gateway whose key-encryption key is in a new SoftHSM2 token, its PIN in a file.
fn with_token(backend: Backend, name: &str) -> Option<(TestGateway, hsm::softhsm::SoftToken)> {
    let label = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    let token = hsm::softhsm::SoftToken::create(&label[..32.min(label.len())], "4711", "vaitio-kek")
        .unwrap_or_else(|e| panic!("a SoftHSM2 token: {e} (./scripts/test installs SoftHSM2 as root)"));
    let pins = tempfile::tempdir().unwrap().keep();
    let pin_file = pins.join("pin");
    std::fs::write(&pin_file, "4711\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pin_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let settings = token.settings.clone();
    let gateway = busy_clinic(backend, |config| {
        config.kek = vaitio::config::KekSettings::Token(vaitio::config::TokenConfig {
            module: settings.module.clone(),
            token: settings.token.clone(),
            pin_file: Some(pin_file),
            key_label: settings.key_label.clone(),
        });
    })?;
    Some((gateway, token))
}

fn kept_in_a_token(backend: Backend) {
    let _one = TOKEN_TESTS.lock().unwrap_or_else(|e| e.into_inner());
    let Some((mut gateway, token)) = with_token(backend, "e2e") else { return };
    let ids: Vec<String> = (0..5).map(|n| submit_new_patient(&gateway.client, 50_000 + n).unwrap()).collect();
    for id in &ids {
        opens(&gateway.client, id).unwrap();
    }
    // Five patients, and the resources of no patient.
    assert_eq!(wrapped_by(&gateway), BTreeMap::from([("pkcs11:vaitio-kek".to_owned(), 6)]));
    gateway.restart();
    for id in &ids {
        opens(&gateway.client, id).unwrap();
    }

    // The key does not leave the token, even to a holder of the PIN.
    let attempt = hsm::Token::load(token.settings.clone()).unwrap().try_extract("vaitio-kek").unwrap();
    assert!(attempt.refused(), "the token let the key out: {attempt:?}");
    // The database and the key files together open nothing: the data keys are wrapped by a key
    // that is not in them.
    let files = store::kek::KeyFiles::new(&gateway.config.data_dir.join("keys/kek.hex"));
    assert!(store::kek::KekCustody::open(&files, 1).is_err(), "a key file was written beside the token");

    // The token unplugged while clinics submit and read: what needs the token answers 503 with
    // an OperationOutcome, never a 500; reads of keys still in memory go on; once the token is
    // back, so is service.
    let ids = Arc::new(Mutex::new(ids));
    let stop = Arc::new(AtomicBool::new(false));
    let threads = load(&gateway, &ids, &stop, 60_000);
    std::thread::sleep(Duration::from_millis(300));
    token.unplug().unwrap();
    let mut refused = 0;
    for n in 0..5 {
        let answer = submit(&gateway.client, &record(&format!("KEYS-U{n}"), &temporary_hetu_number(65_000 + n)));
        assert_eq!(answer.status, 503, "a submission with the token unplugged: {}", answer.text());
        assert!(answer.is_operation_outcome());
        refused += 1;
    }
    assert_eq!(gateway.get("/metadata").status, 200, "what needs no key goes on");
    token.plug_in().unwrap();
    let started = Instant::now();
    loop {
        let answer = submit(&gateway.client, &record("KEYS-BACK", &temporary_hetu_number(70_000)));
        if answer.status == 201 || answer.status == 200 {
            break;
        }
        assert_eq!(answer.status, 503, "{}", answer.text());
        assert!(started.elapsed() < Duration::from_secs(10), "the token came back and the gateway did not");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    let not_503: Vec<&String> = failures.iter().filter(|f| !f.contains(": 503 ")).collect();
    assert!(not_503.is_empty(), "with the token unplugged, answers other than 503: {not_503:?}");
    assert!(refused == 5 && !failures.is_empty(), "the load met no unplugged token");
    let ids: Vec<String> = ids.lock().unwrap().clone();
    gateway.restart();
    for id in &ids {
        opens(&gateway.client, id).unwrap();
    }

    // Rotated inside the token: a second key made there, every data key rewrapped by it.
    let rotated = succeeded(keys(&gateway, &["rotate-kek"]).output().unwrap());
    assert!(rotated.contains("version 2 is in force"), "{rotated}");
    let wrapped = wrapped_by(&gateway);
    assert_eq!(wrapped.keys().collect::<Vec<_>>(), ["pkcs11:vaitio-kek.v2"], "{wrapped:?}");
    succeeded(keys(&gateway, &["retire-kek", "--version", "1"]).output().unwrap());
    let attempt = hsm::Token::load(token.settings.clone()).unwrap().try_extract("vaitio-kek.v2").unwrap();
    assert!(attempt.refused(), "the token let the new key out: {attempt:?}");
    gateway.restart();
    for id in &ids {
        opens(&gateway.client, id).unwrap();
    }
    let _: Value = gateway.get(&format!("/Bundle/{}", ids[0])).json().unwrap();
}

#[test]
fn the_kek_is_kept_in_a_token_on_sqlite() {
    kept_in_a_token(Backend::Sqlite);
}

#[test]
fn the_kek_is_kept_in_a_token_on_postgres() {
    kept_in_a_token(Backend::Postgres);
}

#[test]
fn the_index_key_rotates_under_load_on_sqlite() {
    index_key_rotates_under_load(Backend::Sqlite);
}

#[test]
fn the_index_key_rotates_under_load_on_postgres() {
    index_key_rotates_under_load(Backend::Postgres);
}

/// What one patient's data answers to, by HETU: a clinic's searches of their documents (by
/// `patient:identifier`) and of the Patient (by `identifier`), a document found by its own
/// identifier, and the audit entries about them that the patient (their own access log) and an
/// auditor (by HETU) find.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Found {
    documents: Vec<String>,
    patients: Vec<String>,
    by_identifier: Vec<String>,
    own_log: Vec<String>,
    auditor_log: Vec<String>,
}

/// The ids of a searchset's entries, sorted; an error for anything but 200.
fn ids_of(client: &Client, path: &str) -> Result<Vec<String>, String> {
    let answer = client.get(path).map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("{path}: {} {}", answer.status, answer.text()));
    }
    let json = answer.json().map_err(|e| format!("{path}: not JSON: {e}"))?;
    let mut ids: Vec<String> = json["entry"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["resource"]["id"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    ids.sort();
    Ok(ids)
}

fn found(clinic: &Client, patient: &Client, auditor: &Client, hetu: &str, document: &str) -> Result<Found, String> {
    let hetu_token = format!("urn:oid:1.2.246.21|{hetu}");
    Ok(Found {
        documents: ids_of(clinic, &format!("/Bundle?patient:identifier={hetu_token}"))?,
        patients: ids_of(clinic, &format!("/Patient?identifier={hetu_token}"))?,
        by_identifier: ids_of(clinic, &format!("/Bundle?identifier=urn:ietf:rfc:3986|urn:uuid:{document}"))?,
        own_log: ids_of(patient, "/AuditEvent?_count=500")?,
        auditor_log: ids_of(auditor, &format!("/AuditEvent?patient:identifier={hetu_token}&_count=500"))?,
    })
}

/// Whether what is found now is what was found `before`: the same documents and patients, and
/// every audit entry found before still found, asked for by id (reading the log adds entries of
/// its own, so a first page moves on).
fn finds_the_same(
    clinic: &Client,
    patient: &Client,
    auditor: &Client,
    hetu: &str,
    document: &str,
    before: &Found,
) -> Result<(), String> {
    let hetu_token = format!("urn:oid:1.2.246.21|{hetu}");
    let now = Found {
        documents: ids_of(clinic, &format!("/Bundle?patient:identifier={hetu_token}"))?,
        patients: ids_of(clinic, &format!("/Patient?identifier={hetu_token}"))?,
        by_identifier: ids_of(clinic, &format!("/Bundle?identifier=urn:ietf:rfc:3986|urn:uuid:{document}"))?,
        own_log: ids_of(patient, &format!("/AuditEvent?_id={}&_count=500", before.own_log.join(",")))?,
        auditor_log: ids_of(
            auditor,
            &format!("/AuditEvent?patient:identifier={hetu_token}&_id={}&_count=500", before.auditor_log.join(",")),
        )?,
    };
    if &now != before {
        return Err(format!("found otherwise: {before:?} then {now:?}"));
    }
    Ok(())
}

/// An index key rotation while clinics submit (new patients, and new documents of patients not
/// yet moved) and read: searches by HETU and by identifier, and the patient's and an auditor's
/// access log, find the same before, during and after; a record filed before is still a repeat
/// after; no request fails; nothing is left under the old key.
fn index_key_rotates_under_load(backend: Backend) {
    let Some(mut gateway) = busy_clinic(backend, |_| {}) else { return };
    let patients = 30u128;
    let documents: Vec<String> = (0..patients).map(|n| submit_new_patient(&gateway.client, n).unwrap()).collect();
    let auditor = gateway.professional(ORG, "auditor-1", "auditor");
    let probes: Vec<(String, String)> =
        [0usize, 7, 19].iter().map(|&n| (temporary_hetu_number(n as u128), documents[n].clone())).collect();
    let probe_clients: Vec<Client> = probes.iter().map(|(hetu, _)| gateway.patient(hetu)).collect();
    for (client, (_, document)) in probe_clients.iter().zip(&probes) {
        // Each probe patient reads their document, so their log holds their own access too.
        opens(client, document).unwrap();
    }
    let before: Vec<Found> = probes
        .iter()
        .zip(&probe_clients)
        .map(|((hetu, document), client)| found(&gateway.client, client, &auditor, hetu, document).unwrap())
        .collect();
    assert!(before.iter().all(|f| f.documents.len() == 1 && f.patients.len() == 1 && f.by_identifier.len() == 1));
    assert!(before.iter().all(|f| !f.own_log.is_empty() && !f.auditor_log.is_empty()), "{before:?}");

    let ids = Arc::new(Mutex::new(documents.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = load(&gateway, &ids, &stop, 1_000);
    // New documents of patients already stored (not the probes), filed while they are moved.
    {
        let (client, stopped) = (TestGateway::on_node(&gateway.client, &gateway.base_url), stop.clone());
        threads.push(std::thread::spawn(move || {
            let mut failures = Vec::new();
            let mut round = 0;
            while !stopped.load(Ordering::Relaxed) {
                for n in (0..patients).filter(|n| ![0, 7, 19].contains(n)) {
                    let body = record(&format!("INDEX-{round}-{n}"), &temporary_hetu_number(n));
                    let answer = submit(&client, &body);
                    if answer.status != 201 {
                        failures.push(format!("a new document of patient {n}: {} {}", answer.status, answer.text()));
                    }
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                }
                round += 1;
            }
            failures
        }));
    }
    // The searches, asked again and again while the re-index runs.
    let watching = {
        let stopped = stop.clone();
        let client = TestGateway::on_node(&gateway.client, &gateway.base_url);
        let auditor = TestGateway::on_node(&auditor, &gateway.base_url);
        let patients: Vec<Client> = probe_clients.iter().map(|c| TestGateway::on_node(c, &gateway.base_url)).collect();
        let (probes, before) = (probes.clone(), before.clone());
        std::thread::spawn(move || {
            let (mut failures, mut rounds) = (Vec::new(), 0);
            while !stopped.load(Ordering::Relaxed) {
                for (((hetu, document), patient), was) in probes.iter().zip(&patients).zip(&before) {
                    if let Err(failure) = finds_the_same(&client, patient, &auditor, hetu, document, was) {
                        failures.push(failure);
                    }
                }
                rounds += 1;
            }
            (failures, rounds)
        })
    };
    // Documents as filed before listings were: the re-index gives them one.
    {
        use diesel::connection::SimpleConnection;
        let earliest = "UPDATE resource_heads SET listing = NULL WHERE resource_type = 'Bundle' AND id IN \
             (SELECT id FROM resource_heads WHERE resource_type = 'Bundle' ORDER BY last_updated LIMIT 10)";
        gateway.database().batch_execute(earliest).unwrap();
    }
    let unlisted = "SELECT COUNT(*) AS n FROM resource_heads WHERE resource_type = 'Bundle' AND listing IS NULL";
    assert_eq!(gateway.count(unlisted), 10);
    std::thread::sleep(Duration::from_millis(300));
    let rotated =
        succeeded(keys(&gateway, &["rotate-index-key", "--batch", "3", "--pause-millis", "30"]).output().unwrap());
    assert!(rotated.contains("index key version 2 is in force"), "{rotated}");
    stop.store(true, Ordering::Relaxed);
    let failures: Vec<String> = threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    assert!(
        failures.is_empty(),
        "{} requests failed during the re-index: {:?}",
        failures.len(),
        &failures[..failures.len().min(3)]
    );
    let (mismatches, rounds) = watching.join().unwrap();
    assert!(rounds > 0, "the searches were never asked during the re-index");
    assert!(mismatches.is_empty(), "{} of {rounds} rounds found otherwise: {:?}", mismatches.len(), &mismatches[..1]);

    // Nothing is named under version 1 any more, but the audit log, which is never rewritten.
    let old = "NOT LIKE 'v2-%'";
    assert_eq!(
        gateway.count(&format!("SELECT COUNT(*) AS n FROM data_keys WHERE scope <> 'shared' AND scope {old}")),
        0
    );
    assert_eq!(gateway.count(&format!("SELECT COUNT(*) AS n FROM resource_heads WHERE patient {old}")), 0);
    assert_eq!(gateway.count(&format!("SELECT COUNT(*) AS n FROM resource_versions WHERE patient {old}")), 0);
    assert_eq!(gateway.count(&format!("SELECT COUNT(*) AS n FROM search_tokens WHERE patient {old}")), 0);
    assert!(gateway.count(&format!("SELECT COUNT(*) AS n FROM audit_entries WHERE patient {old}")) > 0);
    assert!(
        gateway.count("SELECT COUNT(*) AS n FROM audit_entries WHERE patient LIKE 'v2-%'") > 0,
        "new entries say v2"
    );

    // After, and after a restart: the same, every document opens, and a record filed before the
    // rotation is a repeat, not a second document.
    for restarted in [false, true] {
        if restarted {
            gateway.restart();
        }
        for (((hetu, document), client), was) in probes.iter().zip(&probe_clients).zip(&before) {
            let client = TestGateway::on_node(client, &gateway.base_url);
            let auditor = TestGateway::on_node(&auditor, &gateway.base_url);
            let clinic = TestGateway::on_node(&gateway.client, &gateway.base_url);
            finds_the_same(&clinic, &client, &auditor, hetu, document, was).unwrap();
        }
    }
    for id in ids.lock().unwrap().iter() {
        opens(&gateway.client, id).unwrap();
    }
    // Every document's listing was sealed again under its patient's new name, those filed
    // without one included: the portal lists a moved patient's documents from them.
    assert_eq!(gateway.count(unlisted), 0);
    let (hetu, document) = &probes[0];
    let mut browser = super::portal::Browser::new(&gateway);
    browser.sign_in(hetu);
    let list = browser.get("/portal/documents");
    assert_eq!(list.status, 200, "{}", list.text());
    assert!(list.text().contains(&format!("/portal/documents/{document}")), "{}", list.text());
    let again = submit(&gateway.client, &record("KEYS-0", &temporary_hetu_number(0)));
    assert_eq!(again.status, 200, "a record filed before the rotation is found again: {}", again.text());
    assert_eq!(again.json().unwrap()["id"], documents[0].as_str());
    let metrics = gateway.metrics();
    assert!(metrics.contains("vaitio_index_key_version_in_force 2"), "{metrics}");
    assert!(metrics.contains("vaitio_reindex_unfinished 0"), "{metrics}");
    let status = succeeded(keys(&gateway, &["status"]).output().unwrap());
    assert!(status.contains("index key") && status.contains("in force"), "{status}");
    assert!(gateway.verify_audit_log().is_ok());
}

#[test]
fn a_reindex_resumes_and_no_write_stays_behind_on_sqlite() {
    reindex_resumes_and_leaves_no_write_behind(Backend::Sqlite);
}

#[test]
fn a_reindex_resumes_and_no_write_stays_behind_on_postgres() {
    reindex_resumes_and_leaves_no_write_behind(Backend::Postgres);
}

/// A re-index killed half-way and resumed; then, step by step, the race a gateway runs when a
/// patient is moved between preparing a write and committing it: the writer refuses the write
/// under the old name, and the patient's name now is the new one.
fn reindex_resumes_and_leaves_no_write_behind(backend: Backend) {
    use store::index_keys::IndexKeys;
    use store::reindex::ReindexCursor;

    let Some(gateway) = busy_clinic(backend, |_| {}) else { return };
    let documents: Vec<String> = (0..12).map(|n| submit_new_patient(&gateway.client, n).unwrap()).collect();
    let moved =
        |version: u32| gateway.count(&format!("SELECT COUNT(*) AS n FROM data_keys WHERE scope LIKE 'v{version}-%'"));

    // Killed once some patients are moved (one a batch, slowly), then resumed.
    let mut child = keys(&gateway, &["rotate-index-key", "--batch", "1", "--pause-millis", "150"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while moved(2) < 3 {
        assert!(started.elapsed() < Duration::from_secs(60), "the re-index did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let halfway = moved(2);
    assert!(halfway < 12, "killed too late to be half-way: {halfway} moved");
    // Half-way, every document is still found by its patient's HETU, moved or not.
    std::thread::sleep(Duration::from_secs(6));
    for (n, document) in documents.iter().enumerate() {
        let path = format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{}", temporary_hetu_number(n as u128));
        assert_eq!(ids_of(&gateway.client, &path).unwrap(), std::slice::from_ref(document), "half-way, patient {n}");
    }
    assert!(gateway.metrics().contains("vaitio_reindex_unfinished 1"));
    // A patient not yet moved writes their own Consent: theirs under the name their rows have.
    let first =
        store::crypto::Pseudonymizer::new(store::crypto::SecretKey::from_file(&gateway.config.index_key_file).unwrap());
    let unmoved = (0..12u128)
        .find(|n| {
            let hetu = fhir_profiles::Hetu::parse(&temporary_hetu_number(*n)).unwrap();
            let name = first.patient_from_hetu(&hetu);
            gateway.count(&format!("SELECT COUNT(*) AS n FROM data_keys WHERE scope = '{name}'")) == 1
        })
        .expect("a patient not yet moved");
    let hetu = temporary_hetu_number(unmoved);
    let patient_id =
        ids_of(&gateway.client, &format!("/Patient?identifier=urn:oid:1.2.246.21|{hetu}")).unwrap()[0].clone();
    let me = gateway.patient(&hetu);
    let consent = me
        .post_json("/Consent", &super::attribution::deny_organisation(&patient_id, "1.2.246.10.99999999.10.1"))
        .unwrap();
    assert_eq!(consent.status, 201, "a patient not yet moved writes their own Consent: {}", consent.text());
    let consent_id = consent.json().unwrap()["id"].as_str().unwrap().to_owned();
    let resumed = succeeded(keys(&gateway, &["rotate-index-key"]).output().unwrap());
    assert!(resumed.contains("resuming the re-index to index key version 2"), "{resumed}");
    assert!(resumed.contains("index key version 2 is in force"), "{resumed}");
    assert_eq!(moved(2), 12, "every patient's data key under their version 2 name");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(me.get(&format!("/Consent/{consent_id}")).unwrap().status, 200, "moved with its patient");

    // The race, step by step, through a second store on the same database (another node).
    let config = &gateway.config;
    let pool = store::db::pool(&store::db::DatabaseUrl::parse(&gateway.database_url()).unwrap(), 4).unwrap();
    let limits = store::Limits { db_wait: Duration::from_secs(5), disk_reserve: 0 };
    let (node, _opener) = store::Store::new(
        pool,
        limits,
        vaitio::app::kek_custody(config).unwrap(),
        IndexKeys::from_files(&config.index_key_file).unwrap(),
        vaitio::app::audit_signer(config).unwrap(),
    );
    node.prepare_keys().unwrap();
    node.prepare_index_keys().unwrap();
    let rotation = node.begin_index_rotation().unwrap();
    assert_eq!(rotation.target.version, 3);
    let hetu = fhir_profiles::Hetu::parse(&temporary_hetu_number(0)).unwrap();
    // Prepared while the patient is not yet moved: their rows' name, version 2's.
    let prepared = node.patient_for_write(|p| p.patient_from_hetu(&hetu)).unwrap();
    assert!(prepared.starts_with("v2-"), "{prepared}");
    let encounter = |patient: String| store::NewResource {
        resource_type: fhir_profiles::ResourceType::Encounter,
        json: serde_json::from_value(serde_json::json!({"resourceType": "Encounter", "status": "finished"})).unwrap(),
        patient: Some(patient),
        security_labels: String::new(),
        facts: Vec::new(),
        author_org: Some(ORG.to_owned()),
        author_practitioner: None,
        service_event: None,
    };
    // The re-index moves every patient, then the prepared write arrives.
    let cursor = ReindexCursor::default();
    while node.reindex_batch(&rotation.target, &cursor, 100).unwrap().is_some() {}
    let late = node.create(encounter(prepared.clone()), "a7d3b1f0-0000-4000-8000-000000000001", Vec::new());
    assert!(matches!(late, Err(store::StoreError::Conflict(_))), "a write under the old name was kept: {late:?}");
    let now = node.patient_for_write(|p| p.patient_from_hetu(&hetu)).unwrap();
    assert!(now.starts_with("v3-"), "{now}");
    node.create(encounter(now), "a7d3b1f0-0000-4000-8000-000000000001", Vec::new()).unwrap();
    assert_eq!(gateway.count(&format!("SELECT COUNT(*) AS n FROM resource_heads WHERE patient = '{prepared}'")), 0);
    let finished = succeeded(keys(&gateway, &["rotate-index-key"]).output().unwrap());
    assert!(finished.contains("index key version 3 is in force"), "{finished}");
    std::thread::sleep(Duration::from_secs(6));
    for (n, document) in documents.iter().enumerate() {
        let path = format!("/Bundle?patient:identifier=urn:oid:1.2.246.21|{}", temporary_hetu_number(n as u128));
        assert_eq!(ids_of(&gateway.client, &path).unwrap(), std::slice::from_ref(document), "after, patient {n}");
    }
    let encounters = format!("/Encounter?patient:identifier=urn:oid:1.2.246.21|{}", temporary_hetu_number(0));
    assert_eq!(ids_of(&gateway.client, &encounters).unwrap().len(), 1, "the write sent again is the patient's");
    assert!(gateway.verify_audit_log().is_ok());

    // Every version the database records must open: without version 3's file, a command (and a
    // gateway's start) is refused, naming the file.
    let third = store::kek::KeyFiles::new(&config.index_key_file).path(3);
    let aside = third.with_extension("aside");
    std::fs::rename(&third, &aside).unwrap();
    let refused = keys(&gateway, &["status"]).output().unwrap();
    std::fs::rename(&aside, &third).unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(said.contains(&third.display().to_string()), "{said}");
}
