//! `vaitio keys`: the key-encryption key's versions, made, rotated and retired, and the index
//! key's versions, rotated, by an operator while the gateway serves. Each command is recorded in
//! the audit log as the operator's action.

use std::sync::Arc;
use std::time::Instant;

use audit_log::Outcome;
use clap::Subcommand;
use store::db::{Database, Pool};
use store::index_keys::IndexKeys;
use store::kek::KekVersion;
use store::reindex::ReindexCursor;
use store::rotation::{KekRotation, RetireRefusal};

use super::{operator_log, operator_store, record, CliError};
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
    /// Make a new version of the index (HMAC) key: gateways name new patients and tokens under
    /// it within seconds, and this re-indexes every patient and identifier token stored under
    /// older versions, in batches, while the gateway serves. Run it again to resume one that
    /// stopped.
    RotateIndexKey {
        /// Patients moved in one transaction.
        #[arg(long, value_name = "N", default_value_t = store::reindex::REINDEX_BATCH)]
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
        KeysCommand::RotateIndexKey { batch, pause_millis, config } => {
            rotate_index(&Config::resolve(config)?, *batch, std::time::Duration::from_millis(*pause_millis))
        }
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
    let index_keys = IndexKeys::from_files(&config.index_key_file).map_err(crate::app::StartError::from)?;
    let index = index_keys.prepare(&mut *pool.get().map_err(store::StoreError::from)?)?;
    let newest = index.iter().map(|v| v.version).max();
    println!("index key: key files beside {}", config.index_key_file.display());
    for version in &index {
        let state = match (Some(version.version) == newest, version.rewrapped_at) {
            (true, Some(_)) => "in force",
            (true, None) => "in force, re-index unfinished (`vaitio keys rotate-index-key` resumes it)",
            (false, _) => "older: kept, for the audit log's older pseudonyms and documents' ids",
        };
        println!("  version {}  {}  {state}", version.version, version.key_id);
    }
    Ok(())
}

fn rotate_index(config: &Config, batch: usize, pause: std::time::Duration) -> Result<(), CliError> {
    let (pool, signer) = operator_log(&config.operator_log())?;
    let (store, _opener) = operator_store(config, &pool)?;
    let state = store.begin_index_rotation()?;
    let target = &state.target;
    let verb = if state.resumed { "resuming the re-index to" } else { "rotating to" };
    println!("{verb} index key version {} ({}): {} patients to move", target.version, target.key_id, state.remaining);
    let begins = if state.resumed { "resumes" } else { "begins" };
    let what =
        format!("keys rotate-index-key: {begins} version {} ({} patients to move)", target.version, state.remaining);
    record(&pool, &signer, &what, Outcome::Success)?;
    let bar = progress_bar(state.remaining, "patients");
    // Every gateway names new patients under the new version before the walk begins: one that
    // had not yet read it could file a moved patient's write under the old name.
    bar.set_message("waiting for every gateway to read the new version");
    store.wait_for_gateways();
    bar.set_message("moving patients");
    let started = Instant::now();
    let cursor = ReindexCursor::default();
    let (mut patients, mut versions) = (0u64, 0u64);
    let mut unmovable;
    loop {
        unmovable = 0u64;
        while let Some(done) = store.reindex_batch(target, &cursor, batch)? {
            patients += done.patients as u64;
            versions += done.versions as u64;
            unmovable += done.unmovable as u64;
            bar.inc((done.patients + done.unmovable) as u64);
            store.record_reindex_progress(target, patients, state.remaining.max(patients))?;
            std::thread::sleep(pause);
        }
        // Anything a gateway named under an older version meanwhile is moved by another pass.
        if unmovable > 0 || store.index_remaining(target)? == 0 {
            break;
        }
        cursor.new_pass();
    }
    if unmovable > 0 {
        let refusal = format!(
            "{unmovable} patients could not be moved: their pseudonym was not found again in their bodies (the log names no one); the re-index stays unfinished and lookups keep trying every version"
        );
        record(&pool, &signer, &format!("keys rotate-index-key: {refusal}"), Outcome::MinorFailure)?;
        return Err(CliError::Refused(refusal));
    }
    bar.set_message("re-indexing resources of no patient");
    let (mut shared, mut after) = (0u64, None);
    while let Some((last, done)) = store.reindex_shared_batch(target, after.as_ref(), batch)? {
        shared += done as u64;
        after = Some(last);
    }
    store.finish_index_rotation(target)?;
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    let rate = patients as f64 / seconds.max(0.001);
    let what = format!(
        "keys rotate-index-key: version {} in force, {patients} patients ({versions} versions) and {shared} other resources re-indexed",
        target.version
    );
    record(&pool, &signer, &what, Outcome::Success)?;
    println!(
        "index key version {} is in force: {patients} patients ({versions} versions) moved and {shared} other resources re-indexed in {seconds:.1} s ({rate:.0} patients/s)",
        target.version
    );
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
    let bar = progress_bar(state.remaining, "data keys");
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

/// Items (`what`) done, of how many, at what rate.
fn progress_bar(total: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(&format!(
        "{{spinner}} {{elapsed_precise}} [{{wide_bar}}] {{pos}}/{{len}} {what} ({{per_sec}}, ETA {{eta}})\n  {{msg}}"
    ))
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
