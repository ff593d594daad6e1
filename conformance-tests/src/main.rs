//! `vaitio-conformance`: run the suite against a deployment and write the reports.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use vaitio_conformance::case::IdentityOptions;
use vaitio_conformance::client::Target;
use vaitio_conformance::{cases, run, Options};

#[derive(Parser)]
#[command(
    name = "vaitio-conformance",
    version,
    about = "Vaitio's conformance suite, for auditors: run it against any deployment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the cases and write junit.xml, summary.json, report.html and testreport.json.
    /// Exits 1 when a SHALL case fails, 2 when the suite could not run. A case that needs a
    /// credential the run was not given (a client certificate, a token, the issuer key, a
    /// certificate to see refused) is skipped, naming it.
    // Boxed: the options of a run are many, and `list` has none.
    Run(Box<RunArgs>),
    /// List the cases.
    List,
}

#[derive(Args)]
struct RunArgs {
    /// The deployment, e.g. https://127.0.0.1:8443
    #[arg(long)]
    base_url: String,
    /// CA certificate (PEM) that the server's certificate chains to; the public web roots
    /// when omitted.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Client certificate (PEM) for organisation endpoints.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// Bearer token sent with every request.
    #[arg(long, env = "VAITIO_CONFORMANCE_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Folder for the reports.
    #[arg(long)]
    report_dir: PathBuf,
    /// The deployment's request size limit, in bytes.
    #[arg(long, default_value_t = 2 * 1024 * 1024)]
    max_body_bytes: usize,
    /// Run only cases whose id starts with this (repeatable), e.g. --only ERR
    #[arg(long)]
    only: Vec<String>,
    /// Private key (PEM) of the test issuer that minted --token, to sign refused variants
    /// of it (expired, wrong audience, other certificate, …).
    #[arg(long, value_name = "FILE")]
    issuer_key: Option<PathBuf>,
    /// An expired certificate from the deployment's CA, and its key.
    #[arg(long, requires = "expired_key")]
    expired_cert: Option<PathBuf>,
    #[arg(long, requires = "expired_cert")]
    expired_key: Option<PathBuf>,
    /// A certificate from the deployment's CA that is not valid yet, and its key.
    #[arg(long, requires = "not_yet_valid_key")]
    not_yet_valid_cert: Option<PathBuf>,
    #[arg(long, requires = "not_yet_valid_cert")]
    not_yet_valid_key: Option<PathBuf>,
    /// A revoked certificate from the deployment's CA, and its key.
    #[arg(long, requires = "revoked_key")]
    revoked_cert: Option<PathBuf>,
    #[arg(long, requires = "revoked_cert")]
    revoked_key: Option<PathBuf>,
    /// The deployment accepts TLS 1.2 by configuration (TLS-03 is then skipped).
    #[arg(long)]
    allows_tls12: bool,
    /// The deployment's harvesting threshold (harvest.practitioner_patients): HRV-01 walks one
    /// more patient than this as a new practitioner and expects 429; skipped without it.
    #[arg(long, value_name = "N")]
    harvest_practitioner_patients: Option<u64>,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::List => {
            for case in cases::all() {
                println!("{:<8} {:<6} {}  [{}]", case.id, case.level.as_str(), case.title, case.reference);
            }
            ExitCode::SUCCESS
        }
        Command::Run(args) => {
            let RunArgs {
                base_url,
                ca,
                cert,
                key,
                token,
                report_dir,
                max_body_bytes,
                only,
                issuer_key,
                expired_cert,
                expired_key,
                not_yet_valid_cert,
                not_yet_valid_key,
                revoked_cert,
                revoked_key,
                allows_tls12,
                harvest_practitioner_patients,
            } = *args;
            let pair = |cert: Option<PathBuf>, key: Option<PathBuf>| cert.zip(key);
            let identity = IdentityOptions {
                issuer_key,
                expired: pair(expired_cert, expired_key),
                not_yet_valid: pair(not_yet_valid_cert, not_yet_valid_key),
                revoked: pair(revoked_cert, revoked_key),
                allows_tls12,
            };
            let options = Options {
                target: Target { base_url, ca, cert, key, token },
                identity,
                report_dir: Some(report_dir.clone()),
                max_body_bytes,
                only,
                harvest_limit: harvest_practitioner_patients,
            };
            match run(&options) {
                Ok(report) => {
                    for result in &report.results {
                        println!(
                            "{:<5} {:<8} {:<6} {} — {}",
                            result.outcome.label().to_uppercase(),
                            result.id,
                            result.level.as_str(),
                            result.title,
                            result.outcome.detail()
                        );
                    }
                    println!("reports: {}", report_dir.display());
                    println!(
                        "conformance: {} passed, {} failed, {} skipped",
                        report.count("pass"),
                        report.count("fail"),
                        report.count("skip")
                    );
                    if report.shall_failed() {
                        eprintln!("vaitio-conformance: a SHALL case failed");
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    }
                }
                Err(error) => {
                    eprintln!("vaitio-conformance: {error}");
                    ExitCode::from(2)
                }
            }
        }
    }
}
