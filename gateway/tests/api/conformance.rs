//! The auditors' suite, run against gateways started by the tests, on both backends.

use super::support::on_both_backends;
#[allow(unused_imports)]
use super::support::*;
use vaitio_conformance::{run, Options};

on_both_backends! {
    fn every_shall_case_passes(gateway) {
        let reports = gateway.dir.path().join("reports");
        let options = Options {
            target: gateway.client.target().clone(),
            identity: gateway.refused_identities(),
            report_dir: Some(reports.clone()),
            max_body_bytes: gateway.config.max_body_bytes,
            harvest_limit: Some(gateway.config.harvest.practitioner_patients),
            only: Vec::new(),
        };
        let report = run(&options).unwrap();
        let failed: Vec<String> = report
            .results
            .iter()
            .filter(|r| r.outcome.label() != "pass")
            .map(|r| format!("{} {}: {}", r.id, r.outcome.label(), r.outcome.detail()))
            .collect();
        assert!(failed.is_empty(), "cases that did not pass: {failed:#?}");
        for file in ["junit.xml", "summary.json", "report.html", "testreport.json"] {
            assert!(reports.join(file).is_file(), "{file} was not written");
        }
        let test_report: serde_json::Value = serde_json::from_slice(&std::fs::read(reports.join("testreport.json")).unwrap()).unwrap();
        assert_eq!(test_report["result"], "pass");
        // The report is a FHIR resource: the R4 model reads it.
        let parsed: Result<fhir_model::r4b::resources::Resource, _> = serde_json::from_value(test_report);
        assert!(parsed.is_ok(), "TestReport does not parse: {parsed:?}");
    }
}
