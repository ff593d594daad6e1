//! The four report formats: JUnit XML for CI, a JSON summary for scripts, an HTML page for
//! people, and a FHIR R4 TestReport for filing.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::case::{Level, Outcome};

/// A report that could not be written: where, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReportError {
    path: PathBuf,
    source: std::io::Error,
}

/// One case's result.
pub struct CaseResult {
    pub id: &'static str,
    pub title: &'static str,
    pub level: Level,
    pub reference: &'static str,
    pub outcome: Outcome,
    pub millis: u128,
}

pub struct RunReport {
    pub base_url: String,
    pub started: String,
    pub finished: String,
    pub results: Vec<CaseResult>,
}

impl RunReport {
    pub fn count(&self, label: &str) -> usize {
        self.results.iter().filter(|r| r.outcome.label() == label).count()
    }

    /// Whether any SHALL case failed: the suite's exit status.
    pub fn shall_failed(&self) -> bool {
        self.results.iter().any(|r| r.level == Level::Shall && matches!(r.outcome, Outcome::Fail(_)))
    }

    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        fs::create_dir_all(dir).map_err(|source| ReportError { path: dir.to_owned(), source })?;
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            fs::write(&path, text).map_err(|source| ReportError { path, source })
        };
        write("junit.xml", self.junit())?;
        write("summary.json", serde_json::to_string_pretty(&self.summary()).unwrap_or_default())?;
        write("report.html", self.html())?;
        write("testreport.json", serde_json::to_string_pretty(&self.test_report()).unwrap_or_default())
    }

    pub fn summary(&self) -> Value {
        json!({
            "suite": "vaitio-conformance",
            "version": env!("CARGO_PKG_VERSION"),
            "baseUrl": self.base_url,
            "started": self.started,
            "finished": self.finished,
            "totals": {"pass": self.count("pass"), "fail": self.count("fail"), "skip": self.count("skip")},
            "shallFailed": self.shall_failed(),
            "cases": self.results.iter().map(|r| json!({
                "id": r.id, "title": r.title, "level": r.level.as_str(), "reference": r.reference,
                "outcome": r.outcome.label(), "detail": r.outcome.detail(), "millis": r.millis as u64,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn junit(&self) -> String {
        let seconds: f64 = self.results.iter().map(|r| r.millis as f64 / 1000.0).sum();
        let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        xml.push_str(&format!(
            "<testsuites name=\"vaitio-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{seconds:.3}\">\n",
            self.results.len(),
            self.count("fail"),
            self.count("skip")
        ));
        xml.push_str(&format!(
            "  <testsuite name=\"vaitio-conformance\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" errors=\"0\" time=\"{seconds:.3}\" timestamp=\"{}\">\n",
            self.results.len(),
            self.count("fail"),
            self.count("skip"),
            escape(&self.started)
        ));
        for r in &self.results {
            xml.push_str(&format!(
                "    <testcase classname=\"vaitio.{}\" name=\"{} {}\" time=\"{:.3}\">",
                r.level.as_str(),
                escape(r.id),
                escape(r.title),
                r.millis as f64 / 1000.0
            ));
            match &r.outcome {
                Outcome::Pass(_) => {}
                Outcome::Fail(detail) => {
                    xml.push_str(&format!("<failure message=\"{}\">{}</failure>", escape(detail), escape(r.reference)))
                }
                Outcome::Skip(detail) => xml.push_str(&format!("<skipped message=\"{}\"/>", escape(detail))),
            }
            xml.push_str("</testcase>\n");
        }
        xml.push_str("  </testsuite>\n</testsuites>\n");
        xml
    }

    pub fn html(&self) -> String {
        let rows: String = self
            .results
            .iter()
            .map(|r| {
                format!(
                    "<tr class=\"{label}\"><td>{id}</td><td>{level}</td><td>{title}<div class=\"ref\">{reference}</div></td><td><b>{label}</b></td><td>{detail}</td></tr>\n",
                    label = r.outcome.label(),
                    id = escape(r.id),
                    level = r.level.as_str(),
                    title = escape(r.title),
                    reference = escape(r.reference),
                    detail = escape(r.outcome.detail()),
                )
            })
            .collect();
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Vaitio conformance report</title>\n\
             <style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse;width:100%}}td,th{{border:1px solid #ccc;padding:.4em;vertical-align:top;text-align:left}}\
             tr.pass td:nth-child(4){{color:#176f2c}}tr.fail td:nth-child(4){{color:#b00020}}tr.skip td:nth-child(4){{color:#8a6d00}}.ref{{color:#666;font-size:.85em}}</style></head>\n\
             <body><h1>Vaitio conformance report</h1>\n<p>Deployment: <code>{base}</code><br>Run: {started} – {finished}<br>\
             Result: <b>{verdict}</b> — {pass} passed, {fail} failed, {skip} skipped</p>\n\
             <table><thead><tr><th>Case</th><th>Level</th><th>Requirement</th><th>Outcome</th><th>Detail</th></tr></thead><tbody>\n{rows}</tbody></table>\n</body></html>\n",
            base = escape(&self.base_url),
            started = escape(&self.started),
            finished = escape(&self.finished),
            verdict = if self.shall_failed() { "NOT CONFORMANT (a SHALL case failed)" } else { "conformant: every SHALL case passed or was skipped" },
            pass = self.count("pass"),
            fail = self.count("fail"),
            skip = self.count("skip"),
        )
    }

    /// A FHIR R4 TestReport.
    pub fn test_report(&self) -> Value {
        let run = self.results.len().max(1);
        let tests: Vec<Value> = self
            .results
            .iter()
            .map(|r| {
                json!({
                    "name": format!("{} {}", r.id, r.title),
                    "description": format!("{} — {}", r.level.as_str(), r.reference),
                    "action": [{"assert": {"result": r.outcome.label(), "message": r.outcome.detail()}}]
                })
            })
            .collect();
        json!({
            "resourceType": "TestReport",
            "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{}", pseudo_uuid(&self.started, &self.base_url))},
            "name": "Vaitio conformance",
            "status": "completed",
            "testScript": {"display": format!("vaitio-conformance {}", env!("CARGO_PKG_VERSION"))},
            "result": if self.shall_failed() { "fail" } else { "pass" },
            "score": (self.count("pass") as f64 * 100.0 / run as f64 * 10.0).round() / 10.0,
            "tester": "vaitio-conformance",
            "issued": self.finished,
            "participant": [
                {"type": "test-engine", "uri": "urn:vaitio:conformance", "display": "vaitio-conformance"},
                {"type": "server", "uri": self.base_url}
            ],
            "test": tests,
        })
    }
}

/// A UUID-shaped identifier derived from the run, so the report needs no random source.
fn pseudo_uuid(a: &str, b: &str) -> String {
    let mut hash: u128 = 0x6c62272e07bb014262b821756295c58d;
    for byte in a.bytes().chain(b.bytes()) {
        hash ^= u128::from(byte);
        hash = hash.wrapping_mul(0x0000000001000000000000000000013B);
    }
    let hex = format!("{hash:032x}");
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(outcome: Outcome, level: Level) -> RunReport {
        RunReport {
            base_url: "https://127.0.0.1:8443".into(),
            started: "2026-11-28T00:00:00Z".into(),
            finished: "2026-11-28T00:00:01Z".into(),
            results: vec![CaseResult { id: "X-01", title: "a <case>", level, reference: "ref", outcome, millis: 3 }],
        }
    }

    #[test]
    fn a_failed_shall_fails_the_run_and_every_format_says_so() {
        let failed = report(Outcome::Fail("saw <script>".into()), Level::Shall);
        assert!(failed.shall_failed());
        assert!(failed.junit().contains("<failure message=\"saw &lt;script&gt;\""));
        assert!(!failed.html().contains("<script>"));
        assert_eq!(failed.test_report()["result"], "fail");
        assert_eq!(failed.summary()["totals"]["fail"], 1);
        let should = report(Outcome::Fail("x".into()), Level::Should);
        assert!(!should.shall_failed());
        assert_eq!(should.test_report()["result"], "pass");
    }

    #[test]
    fn the_test_report_has_the_required_r4_elements() {
        let report = report(Outcome::Skip("no token".into()), Level::Shall).test_report();
        for element in ["status", "testScript", "result"] {
            assert!(!report[element].is_null(), "{element}");
        }
        assert_eq!(report["test"][0]["action"][0]["assert"]["result"], "skip");
        assert!(report["identifier"]["value"].as_str().unwrap().starts_with("urn:uuid:"));
    }
}
