//! The end of retention: `vaitio retention run` destroys the records of a patient who died 13
//! years ago and keeps one who died 11 years ago; the destroyed patient's data key is gone from
//! the database and every key file; the audit log keeps its entries, records the destruction
//! and verifies; the dry run changes nothing and names no one.

use chrono::Datelike;
use fhir_profiles::Hetu;
use serde_json::Value;
use store::crypto::{Pseudonymizer, SecretKey};
use store::kek::{KekCustody, KeyFiles};

use super::cli::vaitio;
use super::submission::{record as example_record, submit};
use super::support::*;

/// A patient who died `years_ago` (on this day, an hour past midnight), created through the API.
fn patient_who_died(gateway: &TestGateway, hetu: &str, years_ago: i32) -> String {
    let today = chrono::Utc::now().date_naive();
    let died = today.with_year(today.year_ce().1 as i32 - years_ago).unwrap_or(today);
    let mut body = patient(hetu);
    body["deceasedDateTime"] = format!("{died}T01:00:00+02:00").into();
    gateway.create(&body)
}

fn document_of(gateway: &TestGateway, record_id: &str, hetu: &str) -> String {
    let mut body = example_record();
    body["record_id"] = record_id.into();
    body["patient"]["hetu"] = hetu.into();
    body["patient"].as_object_mut().unwrap().remove("birth_date");
    let answer = submit(&gateway.client, &body);
    assert_eq!(answer.status, 201, "{}", answer.text());
    answer.json().unwrap()["id"].as_str().unwrap().to_owned()
}

/// `SELECT COUNT(*) … WHERE {column} = '{value}'` on the gateway's database.
fn count(gateway: &TestGateway, table: &str, column: &str, value: &str) -> i64 {
    gateway.count(&format!("SELECT COUNT(*) AS n FROM {table} WHERE {column} = '{value}'"))
}

/// Every data key in the database, with its scope, as wrapped.
fn data_keys(gateway: &TestGateway) -> Vec<(String, Vec<u8>)> {
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        scope: String,
        #[diesel(sql_type = diesel::sql_types::Binary)]
        wrapped_key: Vec<u8>,
    }
    let rows: Vec<Row> = gateway.query("SELECT scope, wrapped_key FROM data_keys");
    rows.into_iter().map(|r| (r.scope, r.wrapped_key)).collect()
}

fn retention_run(gateway: &TestGateway, dry_run: bool) -> String {
    let mut command = vaitio(gateway.dir.path());
    command.args(["retention", "run"]);
    if dry_run {
        command.arg("--dry-run");
    }
    command.args([
        "--data-dir",
        &gateway.config.data_dir.display().to_string(),
        "--database-url",
        &gateway.database_url(),
    ]);
    let output = command.output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "vaitio retention run: {text}");
    text
}

on_both_backends! {
    fn records_end_at_the_end_of_retention_and_their_key_with_them(gateway) {
        const GONE: &str = "010150-123A";
        const KEPT: &str = "020250-123S";
        let gone_patient = patient_who_died(&gateway, GONE, 13);
        let kept_patient = patient_who_died(&gateway, KEPT, 11);
        let gone_document = document_of(&gateway, "RET-1", GONE);
        let kept_document = document_of(&gateway, "RET-2", KEPT);
        let living_document = document_of(&gateway, "RET-3", HETU);

        let index_key = SecretKey::from_file(&gateway.config.data_dir.join("keys/index.hex")).unwrap();
        let pseudonym = Pseudonymizer::new(index_key).patient_from_hetu(&Hetu::parse(GONE).unwrap());
        assert!(count(&gateway, "resource_heads", "patient", &pseudonym) >= 2);
        // The patient's data key, as the database and the key file give it now.
        let kek = KeyFiles::new(&gateway.config.data_dir.join("keys/kek.hex")).open(1).unwrap();
        let (_, wrapped) = data_keys(&gateway).into_iter().find(|(scope, _)| *scope == pseudonym).unwrap();
        let their_key = *kek.unwrap(&pseudonym, &wrapped).unwrap().expose_secret();

        assert_eq!(gateway.get(&format!("/Bundle/{gone_document}")).status, 200);
        let audit_before = count(&gateway, "audit_entries", "patient", &pseudonym);
        // The dry run counts, names no one, and changes nothing.
        let (bundles, patients) = (gateway.stored("Bundle"), gateway.stored("Patient"));
        let dry = retention_run(&gateway, true);
        assert!(dry.contains("1 patients past retention"), "{dry}");
        assert!(!dry.contains(GONE) && !dry.contains(&pseudonym) && !dry.contains("Patient/"), "{dry}");
        assert_eq!((gateway.stored("Bundle"), gateway.stored("Patient")), (bundles, patients));
        assert_eq!(count(&gateway, "data_keys", "scope", &pseudonym), 1);

        let run = retention_run(&gateway, false);
        assert!(run.contains("1 patients destroyed"), "{run}");
        assert!(!run.contains(GONE) && !run.contains(&pseudonym), "{run}");

        // Gone through the API; the others are there.
        assert_eq!(gateway.get(&format!("/Bundle/{gone_document}")).status, 404);
        assert_eq!(gateway.get(&format!("/Patient/{gone_patient}")).status, 404);
        assert_eq!(gateway.get(&format!("/Bundle/{kept_document}")).status, 200);
        assert_eq!(gateway.get(&format!("/Patient/{kept_patient}")).status, 200);
        assert_eq!(gateway.get(&format!("/Bundle/{living_document}")).status, 200);

        // Gone from the database: not a row of theirs, and their data key neither stored nor
        // to be had by unwrapping every data key there is with every key file.
        for table in ["resource_heads", "resource_versions", "search_tokens", "search_dates"] {
            assert_eq!(count(&gateway, table, "patient", &pseudonym), 0, "{table}");
        }
        assert_eq!(count(&gateway, "data_keys", "scope", &pseudonym), 0);
        for (scope, wrapped) in data_keys(&gateway) {
            let key = kek.unwrap(&scope, &wrapped).unwrap();
            assert_ne!(*key.expose_secret(), their_key, "the destroyed key is still in the database");
        }
        assert!(KeyFiles::new(&gateway.config.data_dir.join("keys/kek.hex")).open(2).is_err(), "no other key file");

        // The audit log keeps what it held of them, records the destruction, and verifies.
        assert_eq!(count(&gateway, "audit_entries", "patient", &pseudonym), audit_before + 1);
        assert!(gateway.verify_audit_log().is_ok());
        // A second run finds no one.
        assert!(retention_run(&gateway, false).contains("0 patients destroyed"));
        let _: Value = gateway.get(&format!("/Bundle/{kept_document}")).json().unwrap();
    }
}
