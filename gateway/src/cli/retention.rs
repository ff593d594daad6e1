//! `vaitio retention run [--dry-run]`: destroys the records of patients past retention (their
//! rows removed, their data key destroyed), each destruction recorded in the audit log in the
//! same transaction. The dry run changes nothing and prints counts only.

use std::collections::HashSet;

use audit_log::{Action, Outcome};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use store::audit::AuditRecord;

use super::{operator_log, operator_store, record, CliError};
use crate::audit::operator_event;
use crate::config::{Config, ConfigArgs};
use crate::retention::RetentionRule;

/// Patients read a page at a time.
const PAGE: usize = 500;

#[derive(Subcommand)]
pub enum RetentionCommand {
    /// Find the patients past retention and destroy their records; `--dry-run` only counts.
    Run(RunArgs),
}

#[derive(Args)]
pub struct RunArgs {
    /// Count the patients past retention and their resources; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Years the records are kept after the date of death.
    #[arg(long, value_name = "YEARS", default_value_t = 12, env = "VAITIO_RETENTION_YEARS_AFTER_DEATH")]
    years_after_death: u32,
    /// Years the records are kept after the birth date (from the HETU) when no date of death is
    /// known.
    #[arg(long, value_name = "YEARS", default_value_t = 120, env = "VAITIO_RETENTION_YEARS_AFTER_BIRTH")]
    years_after_birth: u32,
    #[command(flatten)]
    config: ConfigArgs,
}

pub fn retention(command: &RetentionCommand) -> Result<(), CliError> {
    let RetentionCommand::Run(args) = command;
    let config = Config::resolve(&args.config)?;
    let rule = RetentionRule { years_after_death: args.years_after_death, years_after_birth: args.years_after_birth };
    run(&config, rule, args.dry_run)
}

fn run(config: &Config, rule: RetentionRule, dry_run: bool) -> Result<(), CliError> {
    let (pool, signer) = operator_log(&config.operator_log())?;
    let (store, opener) = operator_store(config, &pool)?;
    let today: NaiveDate = chrono::Utc::now().date_naive();
    let rule_text = format!("{} years after death, {} after birth", rule.years_after_death, rule.years_after_birth);
    let (mut patients, mut resources, mut keys) = (0usize, 0usize, 0usize);
    // A patient may have more than one Patient resource: each is judged, the patient is counted
    // (or destroyed) once.
    let mut past: HashSet<String> = HashSet::new();
    let mut after = String::new();
    loop {
        let heads = store.patients_after(&after, PAGE)?;
        let Some(last) = heads.last() else { break };
        after = last.id.clone();
        // The page's current versions in one query.
        for row in store.current_versions(heads.iter())? {
            let Some(pseudonym) = row.patient.clone() else { continue };
            if past.contains(&pseudonym) {
                continue;
            }
            let body: serde_json::Value = serde_json::from_slice(&opener.open(&row)?).unwrap_or_default();
            if !rule.past(&body, today) {
                continue;
            }
            past.insert(pseudonym.clone());
            patients += 1;
            if dry_run {
                resources += store.patient_resources(&pseudonym)?;
                continue;
            }
            let what =
                format!("retention run ({rule_text}): the patient's records destroyed and their data key with them");
            let event = operator_event(Action::Delete, Outcome::Success, Some(pseudonym.clone()), &what);
            let destroyed = store.destroy_patient(&pseudonym, &[AuditRecord::new(&event)])?;
            resources += destroyed.resources;
            keys += destroyed.data_keys;
        }
    }
    let summary = if dry_run {
        format!("retention run --dry-run ({rule_text}): {patients} patients past retention, {resources} resources")
    } else {
        format!("retention run ({rule_text}): {patients} patients destroyed, {resources} resources, {keys} data keys")
    };
    record(&pool, &signer, &summary, Outcome::Success)?;
    println!("{summary}");
    Ok(())
}
