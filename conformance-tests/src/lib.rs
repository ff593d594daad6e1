//! The auditors' conformance suite: cases run against a live deployment over HTTPS, and reports
//! in four formats. The gateway's own tests run the same cases against gateways they start.

// The layers, from the bottom: `client` (HTTPS) and `token` (JWTs) know nothing of cases;
// `case` is what a case is and the helpers every case file shares; `actors` (who a case acts as)
// and `fixtures` (what cases set up on the deployment) build on it; the case files (`api`,
// `identity`, `submission`, `consent`, `audit`) use those and never each other; `cases` lists
// them all.
mod actors;
pub mod api;
pub mod audit;
pub mod case;
pub mod cases;
pub mod client;
pub mod consent;
mod fixtures;
pub mod identity;
pub mod portal;
pub mod report;
pub mod submission;
pub mod token;

use std::path::PathBuf;
use std::time::Instant;

use case::Context;
use client::{Client, ClientError, Target};
use report::{CaseResult, ReportError, RunReport};

/// Why the suite could not run at all (a case that fails is a result, not an error).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The client could not be configured: the CA, certificate or key could not be read.
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error(transparent)]
    Report(#[from] ReportError),
}

pub struct Options {
    pub target: Target,
    pub identity: identity::IdentityOptions,
    pub report_dir: Option<PathBuf>,
    pub max_body_bytes: usize,
    /// Run only the cases whose id starts with one of these; all when empty.
    pub only: Vec<String>,
    /// The deployment's harvesting threshold: distinct patients one practitioner may reach in
    /// its window (`harvest.practitioner_patients`). The harvesting case runs only with it.
    pub harvest_limit: Option<u64>,
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Runs the suite and writes the reports (when a folder is given).
pub fn run(options: &Options) -> Result<RunReport, RunError> {
    let client = Client::new(options.target.clone())?;
    let context = Context {
        client,
        max_body_bytes: options.max_body_bytes,
        identity: options.identity.clone(),
        harvest_limit: options.harvest_limit,
    };
    let started = now();
    let mut results = Vec::new();
    for case in cases::all() {
        if !options.only.is_empty() && !options.only.iter().any(|prefix| case.id.starts_with(prefix.as_str())) {
            continue;
        }
        let clock = Instant::now();
        let outcome = case.outcome(&context);
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
