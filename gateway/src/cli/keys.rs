//! `vaitio keys`: the key-encryption key's versions, made, rotated and retired by an operator
//! while the gateway serves. Each command is recorded in the audit log as the operator's action.

use std::sync::Arc;
use std::time::Instant;

use audit_log::Outcome;
use clap::Subcommand;
use store::db::{Database, Pool};
use store::kek::KekVersion;
use store::rotation::{KekRotation, RetireRefusal};

use super::{operator_log, record, CliError};
use crate::app::kek_custody;
use crate::config::{Config, ConfigArgs};

#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the key-encryption key's versions: the one in force, and how many data keys each
    /// still wraps.
    Status {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make the first version of the key-encryption key where the configuration keeps it: in
    /// the HSM's token (sensitive, not extractable), or as the key file.
    CreateKek {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Make a new version of the key-encryption key and rewrap every data key under it, in
    /// batches, while the gateway serves. Run it again to resume one that stopped.
    RotateKek {
        /// Data keys rewrapped in one transaction.
        #[arg(long, value_name = "N", default_value_t = store::rotation::REWRAP_BATCH)]
        batch: usize,
        /// Pause between batches, to leave more of the database to the gateway.
        #[arg(long, value_name = "MILLIS", default_value_t = 0)]
        pause_millis: u64,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Retire version N of the key-encryption key: refused for the version in force and while
    /// any data key is still wrapped by it.
    RetireKek {
        #[arg(long, value_name = "N")]
        version: u32,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn keys(command: &KeysCommand) -> Result<(), CliError> {
    match command {
        KeysCommand::CreateKek { config } => create(&Config::resolve(config)?),
        KeysCommand::Status { config } => status(&Config::resolve(config)?),
        KeysCommand::RotateKek { batch, pause_millis, config } => {
            rotate(&Config::resolve(config)?, *batch, std::time::Duration::from_millis(*pause_millis))
        }
        KeysCommand::RetireKek { version, config } => retire(&Config::resolve(config)?, *version),
    }
}

/// The versions over `pool` (the operator log's, opened once per command) and the configured
/// custody.
fn rotation(config: &Config, pool: &Pool) -> Result<KekRotation, CliError> {
    let db = Arc::new(Database::new(pool.clone(), config.db_wait));
    Ok(KekRotation::new(db, kek_custody(config)?)?)
}

fn create(config: &Config) -> Result<(), CliError> {
    let (pool, signer) = operator_log(&config.operator_log())?;
    let custody = kek_custody(config)?;
    if let Ok(existing) = custody.open(1) {
        println!("the key-encryption key is there already: {} ({})", existing.id(), custody.describe());
        return Ok(());
    }
    let made = custody.create(1).map_err(|e| CliError::Refused(e.to_string()))?;
    record(&pool, &signer, &format!("keys create-kek: {}", made.id()), Outcome::Success)?;
    println!("made the key-encryption key {} ({})", made.id(), custody.describe());
    Ok(())
}

fn status(config: &Config) -> Result<(), CliError> {
    let (pool, _) = operator_log(&config.operator_log())?;
    let rotation = rotation(config, &pool)?;
    let versions = rotation.versions()?;
    let in_force = versions.iter().filter(|v| v.retired_at.is_none()).map(|v| v.version).max();
    println!("key-encryption key: {}", rotation.describe_custody());
    for version in &versions {
        let wraps = rotation.wrapped_by(version)?;
        let state = match (version.retired_at, Some(version.version) == in_force, version.rewrapped_at) {
            (Some(_), _, _) => "retired",
            (None, true, Some(_)) => "in force",
            (None, true, None) => "in force, rotation unfinished (`vaitio keys rotate-kek` resumes it)",
            (None, false, _) => "older, may be retired once it wraps nothing",
        };
        println!("  version {}  {}  {wraps} data keys  {state}", version.version, version.key_id);
    }
    Ok(())
}

fn rotate(config: &Config, batch: usize, pause: std::time::Duration) -> Result<(), CliError> {
    let (pool, signer) = operator_log(&config.operator_log())?;
    let rotation = rotation(config, &pool)?;
    let state = rotation.begin()?;
    let target: &KekVersion = &state.target;
    let verb = if state.resumed { "resuming the rotation to" } else { "rotating to" };
    println!(
        "{verb} key-encryption key version {} ({}): {} data keys to rewrap",
        target.version, target.key_id, state.remaining
    );
    record(
        &pool,
        &signer,
        &format!(
            "keys rotate-kek: {} version {} ({} data keys to rewrap)",
            if state.resumed { "resumes" } else { "begins" },
            target.version,
            state.remaining
        ),
        Outcome::Success,
    )?;
    let bar = progress_bar(state.remaining);
    let started = Instant::now();
    let mut rewrapped = 0u64;
    loop {
        let Some(done) = rotation.rewrap_batch(target, batch)? else { break };
        rewrapped += done as u64;
        bar.inc(done as u64);
        std::thread::sleep(pause);
    }
    bar.set_message("waiting for every gateway to wrap new keys under the new version");
    rotation.finish(target, batch, |done| {
        rewrapped += done as u64;
        bar.inc_length(done as u64);
        bar.inc(done as u64);
    })?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    record(
        &pool,
        &signer,
        &format!("keys rotate-kek: version {} in force, {rewrapped} data keys rewrapped", target.version),
        Outcome::Success,
    )?;
    println!(
        "key-encryption key version {} is in force: {rewrapped} data keys rewrapped in {seconds:.1} s; older versions may now be retired (`vaitio keys retire-kek --version N`)",
        target.version
    );
    Ok(())
}

fn retire(config: &Config, version: u32) -> Result<(), CliError> {
    let (pool, signer) = operator_log(&config.operator_log())?;
    let rotation = rotation(config, &pool)?;
    match rotation.retire(version) {
        Ok(()) => {
            record(&pool, &signer, &format!("keys retire-kek: version {version} retired"), Outcome::Success)?;
            println!("key-encryption key version {version} is retired: nothing unwraps with it any more");
            Ok(())
        }
        Err(RetireRefusal::Store(error)) => Err(error.into()),
        Err(refusal) => {
            record(
                &pool,
                &signer,
                &format!("keys retire-kek: version {version} refused: {refusal}"),
                Outcome::MinorFailure,
            )?;
            Err(CliError::Refused(refusal.to_string()))
        }
    }
}

/// Data keys rewrapped, of how many, at what rate.
fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} {elapsed_precise} [{wide_bar}] {pos}/{len} data keys ({per_sec}, ETA {eta})\n  {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
