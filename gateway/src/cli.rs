//! The operator's subcommands beside `serve`: `migrate`, `certs` (the PKI), `audit` (verify,
//! export), `keys` (the key-encryption key's versions: `keys.rs`) and `dev token`. Each that changes or reads the deployment's data is recorded in the
//! audit log as the operator's action before it goes on.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use audit_log::Outcome;
use certs::{CertificateAuthority, OrganisationOid, Validity};
use store::audit::{checkpoints, for_each_entry, verify_database, AuditSigner, ORIGIN};
use store::db::Pool;
use store::StoreError;

use crate::app::{open_database, StartError};
use crate::audit::{generate_signing_key_file, record_operator_action};
use crate::config::{Config, ConfigArgs, ConfigError, FolderArgs, Mode, OperatorLog};
use identity::KeyError;

mod keys;
mod retention;
pub use keys::{keys, KeysCommand};
pub use retention::{retention, RetentionCommand};

/// Why an operator's command failed; printed as `vaitio: {error}` with exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error("the operator action could not be recorded in the audit log: {0}")]
    NotRecorded(StoreError),
    #[error("{path}: {cause}")]
    File { path: String, cause: String },
    /// The command is not allowed here, with the reason.
    #[error("{0}")]
    Refused(String),
    #[error("the audit log does not verify: position {position}: {problem}")]
    NotVerified { position: String, problem: audit_log::Problem },
}

impl CliError {
    fn file(path: &Path, cause: impl std::fmt::Display) -> Self {
        CliError::File { path: path.display().to_string(), cause: cause.to_string() }
    }
}

/// `vaitio migrate`: applies the pending migrations, recorded as the operator's action.
pub fn migrate(config: &Config) -> Result<usize, CliError> {
    let (pool, applied) = open_database(config)?;
    // Recorded once the audit tables exist: on a new database the migrations create them.
    let signer = operator_signer(&config.operator_log())?;
    let what = format!("migrate: {applied} migration(s) applied");
    record(&pool, &signer, &what, Outcome::Success)?;
    Ok(applied)
}

fn record(pool: &Pool, signer: &AuditSigner, what: &str, outcome: Outcome) -> Result<(), CliError> {
    record_operator_action(pool, signer, what, outcome).map_err(CliError::NotRecorded)
}

#[derive(clap::Args, Clone, Debug)]
pub struct PkiArgs {
    /// The PKI folder [default: the data folder's pki/].
    #[arg(long, global = true, value_name = "DIR")]
    pub pki: Option<PathBuf>,
    #[command(flatten)]
    pub config: FolderArgs,
}

impl PkiArgs {
    fn dir(&self) -> Result<PathBuf, CliError> {
        match &self.pki {
            Some(pki) => Ok(pki.clone()),
            None => Ok(self.config.0.data_dir()?.join("pki")),
        }
    }
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum CertsCommand {
    /// Create a certificate authority (ca.pem, ca-key.pem) in the PKI folder.
    InitCa {
        #[arg(long, default_value = "Vaitio CA")]
        name: String,
    },
    /// Issue the gateway's TLS server certificate; writes cert.pem, key.pem, ca.pem to --out.
    IssueServer {
        #[arg(long = "dns", value_name = "NAME")]
        dns: Vec<String>,
        #[arg(long = "ip", value_name = "ADDRESS")]
        ips: Vec<IpAddr>,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
    },
    /// Issue an organisation's client certificate (the OID in a urn:oid: SAN and the subject);
    /// writes cert.pem, key.pem, ca.pem to --out.
    IssueOrg {
        /// An OID of the form 1.2.246.10.BUSINESS-ID.10.N
        #[arg(long, value_name = "OID")]
        org_oid: String,
        #[arg(long)]
        name: String,
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: i64,
        /// Start of validity, in days from now (negative: in the past). For test certificates.
        #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
        start_days: i64,
    },
    /// Revoke a certificate by serial (as `list` shows it) and write the CRL (crl.pem), which a
    /// running gateway picks up at the next handshake.
    Revoke {
        #[arg(long)]
        serial: String,
    },
    /// List issued certificates.
    List,
}

/// What an operator's certificate command is recorded as: the command and its arguments, none
/// of them secret.
fn certs_action(command: &CertsCommand) -> Option<String> {
    Some(match command {
        CertsCommand::InitCa { name } => format!("certs init-ca --name {name:?}"),
        CertsCommand::IssueServer { dns, ips, days, .. } => {
            let names = dns.iter().map(|name| format!(" --dns {name}"));
            let addresses = ips.iter().map(|ip| format!(" --ip {ip}"));
            format!("certs issue-server{} --days {days}", names.chain(addresses).collect::<String>())
        }
        CertsCommand::IssueOrg { org_oid, name, days, start_days, .. } => {
            format!("certs issue-org --org-oid {org_oid} --name {name:?} --days {days} --start-days {start_days}")
        }
        CertsCommand::Revoke { serial } => format!("certs revoke --serial {serial}"),
        // Reading the list of issued certificates changes nothing.
        CertsCommand::List => return None,
    })
}

pub fn certs(command: &CertsCommand, args: &PkiArgs) -> Result<(), CliError> {
    let pki = args.dir()?;
    // A command that changes the PKI is recorded before it runs: one whose record cannot be
    // written is not run.
    if let Some(action) = certs_action(command) {
        let log = args.config.0.operator_log()?;
        let (pool, signer) = operator_log(&log)?;
        record(&pool, &signer, &action, Outcome::Success)?;
    }
    match command {
        CertsCommand::InitCa { name } => {
            if pki.join("ca.pem").exists() {
                return Err(CliError::Refused(format!("{} already holds a CA; refusing to replace it", pki.display())));
            }
            CertificateAuthority::init(&pki, name)?;
            println!("CA created in {} (ca.pem; ca-key.pem is private, mode 0600)", pki.display());
        }
        CertsCommand::IssueServer { dns, ips, out, days } => {
            let ca = CertificateAuthority::load(&pki)?;
            let issued = ca.issue_server_with(dns, ips, Validity { start_days: 0, days: *days })?;
            let serial = ca.record(&pki, &issued)?;
            issued.write_to(out, &ca)?;
            println!("server certificate {serial} written to {}", out.display());
        }
        CertsCommand::IssueOrg { org_oid, name, out, days, start_days } => {
            let oid = OrganisationOid::parse(org_oid)?;
            let ca = CertificateAuthority::load(&pki)?;
            let issued = ca.issue_org(&oid, name, Validity { start_days: *start_days, days: *days })?;
            let serial = ca.record(&pki, &issued)?;
            issued.write_to(out, &ca)?;
            println!("organisation certificate {serial} for {oid} written to {}", out.display());
        }
        CertsCommand::Revoke { serial } => {
            let ca = CertificateAuthority::load(&pki)?;
            let crl = ca.revoke(&pki, serial)?;
            println!("revoked {serial}; CRL written to {}", crl.display());
        }
        CertsCommand::List => {
            println!("{:<34} {:<8} {:<28} {:<26} SUBJECT", "SERIAL", "STATUS", "ORGANISATION", "NOT AFTER");
            for record in certs::list(&pki)? {
                println!(
                    "{:<34} {:<8} {:<28} {:<26} {}",
                    record.serial,
                    if record.revoked { "revoked" } else { "valid" },
                    record.organisation.as_deref().unwrap_or("-"),
                    record.not_after,
                    record.subject
                );
            }
        }
    }
    Ok(())
}

#[derive(clap::Args, Clone, Debug)]
pub struct DevTokenArgs {
    /// psychotherapist, psychologist, psychiatrist, physician, nurse, auditor, administrator, or
    /// patient.
    #[arg(long)]
    pub role: String,
    /// The organisation OID (professionals).
    #[arg(long)]
    pub org: Option<String>,
    /// Terhikki number for professionals, HETU for patients, an employee id for staff.
    #[arg(long)]
    pub sub: String,
    /// The client certificate (PEM) the token is bound to (cnf.x5t#S256).
    #[arg(long, value_name = "FILE")]
    pub cert: Option<PathBuf>,
    /// TREAT (default), ETREAT or BTG.
    #[arg(long)]
    pub purpose: Option<String>,
    /// The stated reason for ETREAT or BTG.
    #[arg(long)]
    pub reason: Option<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600, allow_hyphen_values = true)]
    pub ttl: i64,
    #[command(flatten)]
    pub config: ConfigArgs,
}

/// Prints a development token, alone on standard output.
pub fn dev_token(args: &DevTokenArgs) -> Result<(), CliError> {
    let config = Config::resolve(&args.config)?;
    let key = match (config.mode, &config.development_issuer_key) {
        (Mode::Development, Some(key)) => key.clone(),
        _ => {
            return Err(CliError::Refused(
                "development tokens exist only in development mode: production never trusts them".into(),
            ))
        }
    };
    // Minting a credential is recorded like any operator's action; a patient's subject is a
    // HETU, which no log holds.
    let hetu = args.role == "patient" || fhir_profiles::Hetu::parse(&args.sub).is_ok();
    let subject = if hetu { String::new() } else { format!(" --sub {}", args.sub) };
    let organisation = args.org.as_deref().map(|org| format!(" --org {org}")).unwrap_or_default();
    let purpose = args.purpose.as_deref().map(|purpose| format!(" --purpose {purpose}")).unwrap_or_default();
    let action = format!("dev token --role {}{organisation}{subject}{purpose} --ttl {}", args.role, args.ttl);
    let (pool, signer) = operator_log(&config.operator_log())?;
    record(&pool, &signer, &action, Outcome::Success)?;
    let mut claims = identity::development_claims(&config.token_audience, &args.sub, &args.role, args.ttl);
    claims.org = args.org.clone();
    claims.purpose = args.purpose.clone();
    claims.reason = args.reason.clone();
    if let Some(cert) = &args.cert {
        let pem = std::fs::read(cert).map_err(|e| CliError::file(cert, e))?;
        let der = openssl::x509::X509::from_pem(&pem).and_then(|c| c.to_der()).map_err(|e| CliError::file(cert, e))?;
        claims.cnf = Some(identity::Confirmation { x5t_s256: Some(certs::thumbprint_sha256(&der)) });
    }
    println!("{}", identity::mint_development_token(&key, &claims)?);
    Ok(())
}

#[derive(clap::Subcommand, Clone, Debug)]
pub enum AuditCommand {
    /// Recompute the audit log from its first entry and check every checkpoint's signature.
    /// Prints the count verified, or the first bad position and what is wrong there; exits 1
    /// when the log does not verify.
    Verify {
        /// Verify an export (from `vaitio audit export`) instead of the database.
        #[arg(long, value_name = "FILE")]
        export: Option<PathBuf>,
        /// The public key (PEM) checkpoints must be signed with [default: the configured audit
        /// signing key's; for an export, the key it carries, whose id is printed to compare
        /// with the one the operator published].
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write the log for an outside auditor as NDJSON: the public key, every checkpoint, every
    /// entry. `vaitio audit verify --export FILE` (or the audit-log crate) checks it without the
    /// gateway.
    Export {
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

pub fn audit(command: &AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Verify { export: Some(path), public_key, .. } => {
            let trusted = public_key.as_deref().map(read_public_key).transpose()?;
            let text = std::fs::read_to_string(path).map_err(|e| CliError::file(path, e))?;
            let started = std::time::Instant::now();
            let verified = audit_log::verify_export(text.lines(), trusted.as_ref());
            report_verification(verified, started)
        }
        AuditCommand::Verify { export: None, public_key, config } => {
            let config = Config::resolve(config)?;
            let (pool, signer) = operator_log(&config.operator_log())?;
            let key = match public_key {
                Some(path) => read_public_key(path)?,
                None => signer.verifying_key().clone(),
            };
            let started = std::time::Instant::now();
            let verified = verify_database(&pool, &key)?;
            // Recorded once verified, so the count printed is of the log as it was found.
            let (what, outcome) = match &verified {
                Ok(verified) => (format!("audit verify: {} entries verified", verified.entries), Outcome::Success),
                Err(problem) => (
                    format!("audit verify: fails at position {}", problem.position().map_or(-1, |p| p as i64)),
                    Outcome::MajorFailure,
                ),
            };
            record(&pool, &signer, &what, outcome)?;
            report_verification(verified, started)
        }
        AuditCommand::Export { out, config } => {
            let config = Config::resolve(config)?;
            let (pool, signer) = operator_log(&config.operator_log())?;
            // An export hands the whole log to someone: it is recorded before it is written.
            record(&pool, &signer, "audit export", Outcome::Success)?;
            let mut conn = pool.get().map_err(StoreError::from)?;
            let file = std::fs::File::create(out).map_err(|e| CliError::file(out, e))?;
            let mut file = std::io::BufWriter::new(file);
            let mut line = Vec::new();
            let mut write = |export: audit_log::ExportLine<'_>, line: &mut Vec<u8>| -> Result<(), CliError> {
                use std::io::Write;
                line.clear();
                export.write(line).map_err(|e| CliError::file(out, e))?;
                file.write_all(line).map_err(|e| CliError::file(out, e))
            };
            write(audit_log::ExportLine::Key(signer.verifying_key().clone()), &mut line)?;
            let checkpoints = checkpoints(&mut conn)?;
            for checkpoint in &checkpoints {
                write(audit_log::ExportLine::Checkpoint(checkpoint.clone()), &mut line)?;
            }
            let mut entries = 0u64;
            for_each_entry(&mut conn, |entry| {
                entries += 1;
                write(audit_log::ExportLine::Entry(entry.stored()), &mut line)
            })?;
            std::io::Write::flush(&mut file).map_err(|e| CliError::file(out, e))?;
            println!("exported {entries} entries and {} checkpoints to {}", checkpoints.len(), out.display());
            Ok(())
        }
    }
}

/// The checkpoint key, for an operator command that records itself in the audit log.
/// Development generates a missing key, as `serve` would; production requires it.
pub fn operator_signer(log: &OperatorLog) -> Result<AuditSigner, CliError> {
    if log.mode == Mode::Development && !log.audit_signing_key.exists() {
        generate_signing_key_file(&log.audit_signing_key).map_err(StartError::from)?;
    }
    Ok(AuditSigner::from_file(&log.audit_signing_key).map_err(StartError::from)?)
}

/// The database, migrated, and the checkpoint key.
fn operator_log(log: &OperatorLog) -> Result<(Pool, AuditSigner), CliError> {
    let failed = |cause| StartError::Database { database: log.database.redacted(), cause };
    // Four: a command that runs a store (a re-index, a retention run) holds one in its
    // transaction while its writer and its key lookups use others.
    let pool = store::db::pool(&log.database, 4).map_err(failed)?;
    store::db::migrate(&mut *pool.get().map_err(|e| failed(e.into()))?).map_err(failed)?;
    Ok((pool, operator_signer(log)?))
}

/// A store over `pool` (the operator log's) for an operator's command that reads bodies: a
/// retention run (through its `Opener`) or a re-index (inside the store).
fn operator_store(config: &Config, pool: &Pool) -> Result<(store::Store, store::Opener), CliError> {
    let index_keys = store::index_keys::IndexKeys::from_files(&config.index_key_file).map_err(StartError::from)?;
    let limits = store::Limits { db_wait: config.db_wait, disk_reserve: 0 };
    let custody = crate::app::kek_custody(config)?;
    let (store, opener) =
        store::Store::new(pool.clone(), limits, custody, index_keys, crate::app::audit_signer(config)?);
    store.prepare_keys()?;
    Ok((store, opener))
}

fn read_public_key(path: &Path) -> Result<audit_log::VerifyingKey, CliError> {
    let pem = std::fs::read(path).map_err(|e| CliError::file(path, e))?;
    audit_log::VerifyingKey::from_pem(ORIGIN, &pem).map_err(|e| CliError::file(path, e))
}

/// Prints what verification found; a broken log is an error (exit status 1).
fn report_verification(
    result: Result<audit_log::Verified, audit_log::Problem>,
    started: std::time::Instant,
) -> Result<(), CliError> {
    let seconds = started.elapsed().as_secs_f64();
    match result {
        Ok(verified) => {
            println!(
                "verified {} entries and {} checkpoints (key {}) in {seconds:.2} s, {:.0} entries/s; {} entries after the latest checkpoint are not yet signed",
                verified.entries,
                verified.checkpoints,
                verified.key_id,
                verified.entries as f64 / seconds.max(1e-9),
                verified.unsigned_tail(),
            );
            Ok(())
        }
        Err(problem) => {
            let position = problem.position().map_or_else(|| "-".to_owned(), |p| p.to_string());
            Err(CliError::NotVerified { position, problem })
        }
    }
}
