//! `vaitio`: the gateway server and the operator CLI.

use std::process::ExitCode;

/// mimalloc rather than the system allocator: a submission builds and drops a JSON tree of a few
/// hundred nodes on each of many request threads, and glibc's malloc spent over a third of the
/// request threads' time in allocation and chunk consolidation. Ingest took a fifth to two
/// fifths less CPU per document with mimalloc; it holds more memory per thread (peak RSS about
/// 110 MB instead of 58 MB under the ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use vaitio::cli::{AuditCommand, CertsCommand, CliError, DevTokenArgs, PkiArgs};
use vaitio::config::{Config, ConfigArgs, LogFormat, Mode};
use vaitio::Application;

#[derive(Parser)]
#[command(name = "vaitio", version, about = "Vaitio: a Class A gateway for psychotherapy records (FHIR R4)")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR API over HTTPS. With no configuration at all it runs in development mode:
    /// SQLite, PKI and keys in ./vaitio-data (generated on first run), https://127.0.0.1:8443.
    Serve(ConfigArgs),
    /// Apply the database migrations of the configured backend, then exit.
    Migrate(ConfigArgs),
    /// The PKI: a CA, server and organisation certificates, revocation.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
        #[command(flatten)]
        pki: PkiArgs,
    },
    /// The audit log: verify it, or export it for an outside auditor.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The key-encryption key: make it, rotate it (rewrapping every data key while the gateway
    /// serves), retire old versions.
    Keys {
        #[command(subcommand)]
        command: vaitio::cli::KeysCommand,
    },
    /// The end of retention: destroy the records of patients past it (`run`, or `run --dry-run`
    /// to count them).
    Retention {
        #[command(subcommand)]
        command: vaitio::cli::RetentionCommand,
    },
    /// Move a clinic in: stream an export of v1 records (NDJSON; gzip or zstd) to the
    /// gateway's $import, with a progress bar, a report of refused lines, and resume.
    /// Exits 0 when every line was stored, 2 when some were refused (see the report), 1 when
    /// the import stopped (run the same command again to resume from the checkpoint).
    Import(vaitio_import::ImportArgs),
    /// Development tools.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
}

#[derive(Subcommand)]
enum DevCommand {
    /// Mint a token with the development issuer's key (development mode only); prints it alone
    /// on standard output.
    Token(DevTokenArgs),
    /// Write realistic generated records (NDJSON) to try an import with; the same seed gives the
    /// same file.
    Generate(vaitio_import::generate::GenerateArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("VAITIO_LOG").unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Import(args) => return import(&args),
        Command::Dev { command: DevCommand::Generate(args) } => generate(&args),
        Command::Serve(args) => serve(&args),
        Command::Migrate(args) => migrate(&args),
        Command::Certs { command, pki } => vaitio::cli::certs(&command, &pki),
        Command::Dev { command: DevCommand::Token(args) } => vaitio::cli::dev_token(&args),
        Command::Audit { command } => vaitio::cli::audit(&command),
        Command::Keys { command } => vaitio::cli::keys(&command),
        Command::Retention { command } => vaitio::cli::retention(&command),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("vaitio: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `vaitio import`, with its own exit statuses.
fn import(args: &vaitio_import::ImportArgs) -> ExitCode {
    match vaitio_import::run(args) {
        Ok(counts) => {
            println!("{}: {}", args.file.display(), counts.describe());
            if counts.refused > 0 {
                let report = args.report.as_ref().map(|r| format!(": see {}", r.display())).unwrap_or_default();
                eprintln!("vaitio import: {} line(s) refused{report}", counts.refused);
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(error) => {
            eprintln!("vaitio import: {error}");
            if args.checkpoint.is_some() && !args.dry_run {
                eprintln!("vaitio import: run the same command again to resume after the last line answered");
            }
            ExitCode::FAILURE
        }
    }
}

fn generate(args: &vaitio_import::generate::GenerateArgs) -> Result<(), CliError> {
    let generated = vaitio_import::generate::generate(args).map_err(|e| CliError::Refused(e.to_string()))?;
    eprintln!(
        "{}: {} records ({} with a defect), {} bytes",
        args.out.display(),
        generated.records,
        generated.defects,
        generated.bytes
    );
    Ok(())
}

fn migrate(args: &ConfigArgs) -> Result<(), CliError> {
    let config = Config::resolve(args)?;
    init_logging(config.log_format);
    let applied = vaitio::cli::migrate(&config)?;
    println!("{applied} migration(s) applied to {}", config.database.redacted());
    Ok(())
}

fn serve(args: &ConfigArgs) -> Result<(), CliError> {
    let config = Config::resolve(args)?;
    init_logging(config.log_format);
    actix_web::rt::System::new().block_on(serve_until_stopped(config))
}

async fn serve_until_stopped(config: Config) -> Result<(), CliError> {
    let app = Application::build(config).map_err(|e| CliError::Refused(format!("refusing to start: {e}")))?;
    let config = app.config.clone();
    if config.mode == Mode::Development {
        let port = app.port();
        let ca = config.data_dir.join("pki").join("ca.pem");
        eprintln!(
            "\n\
             ======================================================================\n  \
             VAITIO IS RUNNING IN DEVELOPMENT MODE: NOT FOR REAL PATIENT DATA\n  \
             - keys and a development PKI live in {dir}{generated}\n  \
             - a development token issuer is trusted (vaitio dev token): never in production\n  \
             - database: {db}\n\
             ======================================================================\n",
            dir = config.data_dir.display(),
            generated = if app.first_run { " (generated now)" } else { "" },
            db = config.database.redacted(),
        );
        println!("Try: curl --cacert {} https://127.0.0.1:{port}/metadata", ca.display());
        eprintln!(
            "Requests for data need an organisation certificate and a token bound to it, for example:\n  \
             vaitio certs issue-org --org-oid 1.2.246.10.12345678.10.1 --name 'Example Clinic' --out clinic\n  \
             TOKEN=$(vaitio dev token --role psychotherapist --org 1.2.246.10.12345678.10.1 --sub 10012345678 --cert clinic/cert.pem)\n  \
             curl --cacert {ca} --cert clinic/cert.pem --key clinic/key.pem -H \"Authorization: Bearer $TOKEN\" https://127.0.0.1:{port}/Patient\n",
            ca = ca.display()
        );
    }
    tracing::info!(listen = %config.listen, port = app.port(), backend = config.database.backend_name(), "serving HTTPS");
    app.run_until_stopped().await.map_err(|e| CliError::Refused(format!("the server stopped: {e}")))
}
