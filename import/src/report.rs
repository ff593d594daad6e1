//! The report a clinic acts on: every refused line with its number, record id and reasons, and
//! a summary of each run. Appended to, so the runs of a resumed import make one report. It holds
//! what the gateway said, which never quotes a record's content.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::Value;

use crate::{Counts, ImportError};

pub struct Report {
    out: Option<BufWriter<File>>,
    path: String,
}

impl Report {
    pub fn open(path: Option<&Path>, file: &Path, from_line: u64, dry_run: bool) -> Result<Report, ImportError> {
        let Some(path) = path else { return Ok(Report { out: None, path: String::new() }) };
        let out = OpenOptions::new().create(true).append(true).open(path).map_err(|e| ImportError::file(path, e))?;
        let mut report = Report { out: Some(BufWriter::new(out)), path: path.display().to_string() };
        let what = if dry_run { "dry run (nothing stored)" } else { "import" };
        report.write(&format!(
            "# vaitio import of {} from line {}: {what}, {}",
            file.display(),
            from_line + 1,
            chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ")
        ))?;
        Ok(report)
    }

    fn write(&mut self, text: &str) -> Result<(), ImportError> {
        if let Some(out) = &mut self.out {
            writeln!(out, "{text}").map_err(|e| ImportError::File { path: self.path.clone(), cause: e.to_string() })?;
        }
        Ok(())
    }

    /// A refused line: `line N<TAB>record ID<TAB>reason; reason`.
    pub fn refused(&mut self, line: u64, record_id: Option<&str>, outcome: &Value) -> Result<(), ImportError> {
        let record = record_id.unwrap_or("-");
        self.write(&format!("line {line}\t{record}\t{}", reasons(outcome)))
    }

    pub fn summary(&mut self, counts: &Counts, ended: &str) -> Result<(), ImportError> {
        self.write(&format!("# {}: {ended}", counts.describe()))?;
        self.flush()
    }

    /// To the disk: what the report holds survives a crash of the client.
    pub fn flush(&mut self) -> Result<(), ImportError> {
        if let Some(out) = &mut self.out {
            let flushed = out.flush().and_then(|()| out.get_ref().sync_data());
            flushed.map_err(|e| ImportError::File { path: self.path.clone(), cause: e.to_string() })?;
        }
        Ok(())
    }
}

/// An OperationOutcome's issues as one line: `where: what; where: what`.
pub fn reasons(outcome: &Value) -> String {
    let issues = outcome["issue"].as_array().map(Vec::as_slice).unwrap_or_default();
    let reasons: Vec<String> = issues
        .iter()
        .map(|issue| {
            let what = issue["diagnostics"].as_str().unwrap_or("refused").replace(['\t', '\n', '\r'], " ");
            match issue["expression"].get(0).and_then(Value::as_str).filter(|at| !at.is_empty()) {
                Some(at) => format!("{at}: {what}"),
                None => what,
            }
        })
        .collect();
    if reasons.is_empty() {
        "refused".to_owned()
    } else {
        reasons.join("; ")
    }
}
