//! The auditors' conformance suite: cases run against a live deployment over HTTPS, and reports
//! in four formats. The gateway's own tests run the same cases against gateways they start.

pub mod audit;
pub mod cases;
pub mod client;
pub mod consent;
pub mod identity;
pub mod report;
pub mod submission;

use std::path::PathBuf;
use std::time::Instant;

use cases::{Context, Outcome};
use client::{Client, Target};
use report::{CaseResult, RunReport};

pub struct Options {
    pub target: Target,
    pub identity: identity::IdentityOptions,
    pub report_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// Run only the cases whose id starts with one of these; all when empty.
    pub only: Vec<String>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs the suite and writes the reports (when a folder is given).
pub fn run(options: &Options) -> Result<RunReport, String> {
    let client = Client::new(options.target.clone())?;
    let context = Context { client, max_body_bytes: options.max_body_bytes, identity: options.identity.clone() };
    let started = now();
    let mut results = Vec::new();
    for case in cases::all() {
        if !options.only.is_empty() && !options.only.iter().any(|prefix| case.id.starts_with(prefix.as_str())) {
            continue;
        }
        let clock = Instant::now();
        // A case that cannot reach the deployment at all has failed: an unreachable server is
        // not conformant.
        let outcome = (case.run)(&context).unwrap_or_else(|error| Outcome::Fail(format!("could not run: {error}")));
        results.push(CaseResult {
            id: case.id,
            title: case.title,
            level: case.level,
            reference: case.reference,
            outcome,
            millis: clock.elapsed().as_millis(),
        });
    }
    let report = RunReport { base_url: options.target.base_url.clone(), started, finished: now(), results };
    if let Some(dir) = &options.report_dir {
        report.write(dir)?;
    }
    Ok(report)
}
