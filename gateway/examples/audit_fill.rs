//! Fills a gateway's audit log with synthetic events, for measuring `vaitio audit verify` over
//! a log of realistic size: the events are what a read by a practitioner records (BALP, agent,
//! patient pseudonym, resource, consent decision), appended in transactions of 1,000 through the
//! gateway's own append path, checkpoints signed every 1,000 entries.
//!
//! `cargo run --release -p vaitio --example audit_fill -- <data dir> <entries>`, then
//! `vaitio audit verify --data-dir <data dir>`.

use std::path::PathBuf;
use std::time::Instant;

use audit_log::{Action, ResourceRef, UnixMillis};
use consent::{Principal, Professional, Purpose, Role};
use store::audit::{append_alone, AuditRecord, AuditSigner};
use vaitio::audit::{self, Judged};
use vaitio::config::Config;

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(args.next().ok_or("usage: audit_fill <data dir> <entries>")?);
    let entries: u64 =
        args.next().ok_or("usage: audit_fill <data dir> <entries>")?.parse().map_err(|_| "entries: a number")?;
    let config = Config::development(&data_dir, "127.0.0.1:0".parse().map_err(|_| "address")?);
    if !config.audit_signing_key.exists() {
        audit::generate_signing_key_file(&config.audit_signing_key).map_err(|e| e.to_string())?;
    }
    let signer =
        AuditSigner::from_file(&config.audit_signing_key).map_err(|e| e.to_string())?.with_schedule(1000, i64::MAX / 2);
    let (pool, _) = vaitio::app::open_database(&config).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut written = 0u64;
    while written < entries {
        let batch: Vec<AuditRecord> = (written..(written + 1000).min(entries)).map(record).collect();
        append_alone(&pool, &batch, &signer).map_err(|e| e.to_string())?;
        written += batch.len() as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    println!("appended {written} entries in {seconds:.1} s ({:.0}/s)", written as f64 / seconds);
    Ok(())
}

/// What a practitioner's read of one resource of a patient records.
fn record(n: u64) -> AuditRecord {
    let principal = Principal::Professional(Professional {
        practitioner: format!("100{:08}", n % 40_000),
        role: Role::ALL[(n % 5) as usize],
        organisation: format!("1.2.246.10.{}.10.1", 10_000_000 + n % 977),
        purpose: Purpose::Treatment,
        reason: None,
    });
    let agent =
        audit::agent(&principal, Some(format!("{:064x}", n % 977)), Some(format!("10.0.{}.{}", n % 250, n % 199)));
    let judged = Judged {
        patient: Some(format!("{:064x}", n.wrapping_mul(0x9e37_79b9_7f4a_7c15) / 7)),
        resource: ResourceRef {
            resource_type: "Encounter".into(),
            id: format!("{:032x}", n),
            version: Some("1".into()),
        },
        permit: !n.is_multiple_of(13),
        break_the_glass: false,
        rule: if !n.is_multiple_of(13) { consent::Rule::Treatment } else { consent::Rule::NoteRestrictedToAuthor },
        consent_id: None,
        provision: None,
        listed: true,
    };
    let now = UnixMillis::new(1_790_000_000_000 + n).expect("a time");
    let event = audit::events(Action::Read, &agent, None, &[], &[judged], now).remove(0);
    AuditRecord::new(&event)
}
