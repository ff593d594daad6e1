//! Configuration. Every setting is declared once, in [`SETTINGS`]: its TOML key, its flag, its
//! environment variable (derived from the flag), its default and its help all come from that one
//! line, and so do `vaitio serve --help` and the settings table in `docs/configuration.md` (a
//! test compares them). Sources, strongest first: command-line flag, environment variable, the
//! TOML file (`--config` / `VAITIO_CONFIG`), the default.
//!
//! Raw values are read first ([`ConfigArgs`], the file), then lifted once into a checked
//! [`Config`] that the rest of the program uses; a configuration that would be unsafe is refused
//! with the reason, before anything starts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certs::TlsMinimum;
use store::db::DatabaseUrl;

/// What a setting is when nothing sets it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fallback {
    /// This value, read like any other.
    Value(&'static str),
    /// Worked out from other settings, as described.
    Derived(&'static str),
    /// Not set: off, or required where the description says so.
    Unset(&'static str),
}

/// One setting, declared once.
#[derive(Debug)]
pub struct Setting {
    /// Its key in the TOML file. A dotted key lives in a table: `tls.client_ca` is `client_ca`
    /// under `[tls]`.
    pub key: &'static str,
    /// Its long flag, without the dashes. Its environment variable is `VAITIO_` and the flag in
    /// capitals, with `_` for `-` ([`Setting::env`]).
    pub flag: &'static str,
    pub value_name: &'static str,
    pub default: Fallback,
    pub help: &'static str,
    /// Accepted only to be refused loudly (a plaintext listener): not listed.
    pub hidden: bool,
}

impl Setting {
    pub fn env(&self) -> String {
        format!("VAITIO_{}", self.flag.to_ascii_uppercase().replace('-', "_"))
    }
}

macro_rules! settings {
    ($( $key:literal, $flag:literal, $value_name:literal, $default:expr, $help:literal $(, $hidden:ident)? ; )+) => {
        /// Every setting of the gateway and its operator commands.
        pub const SETTINGS: &[Setting] = &[$(
            Setting {
                key: $key,
                flag: $flag,
                value_name: $value_name,
                default: $default,
                help: $help,
                hidden: settings!(@hidden $($hidden)?),
            },
        )+];
    };
    (@hidden) => { false };
    (@hidden hidden) => { true };
}

use Fallback::{Derived, Unset, Value};

settings! {
    "config", "config", "FILE", Unset("none"),
        "TOML configuration file: every setting below, by its key (a dotted key is a key in a table: `[tls]` `cert`)";
    "mode", "mode", "MODE", Value("development"),
        "`development` (generates its own PKI and keys, loopback only) or `production`";
    "data_dir", "data-dir", "DIR", Value("vaitio-data"),
        "Data folder: the SQLite database, and in development mode the generated PKI and keys";
    "listen", "listen", "ADDR", Value("127.0.0.1:8443"),
        "Address and port of the HTTPS listener, the only one";
    "database_url", "database-url", "URL", Derived("sqlite://<data_dir>/vaitio.sqlite3"),
        "`postgres://…` for PostgreSQL, or `sqlite://PATH` (or a plain path) for SQLite";
    "public_base_url", "public-base-url", "URL", Derived("https://<Host header>"),
        "The https:// URL clients use to reach the gateway, for Location headers and paging links";
    "max_body_bytes", "max-body-bytes", "BYTES", Value("2097152"),
        "Largest request body accepted, in bytes";
    "max_note_bytes", "max-note-bytes", "BYTES", Value("65536"),
        "Largest note text accepted in a clinic's record, in bytes";
    "db_pool_size", "db-pool-size", "N", Value("8"),
        "Database connections in the pool";
    "db_wait_millis", "db-wait-millis", "MILLIS", Value("2000"),
        "Longest a request waits for a database connection before it answers 503; while the database is known to be down (it failed within the last second), 503 at once";
    "disk_reserve_mb", "disk-reserve-mb", "MB", Value("32"),
        "SQLite only: space kept back beside the database file (`<database>-reserve`). When the disk fills, it is released so that reads and their audit records go on while writes answer 507; once twice as much is free again, it is written anew and writes are taken. 0: none";
    "request_threads", "request-threads", "N", Derived("8 per CPU core"),
        "Requests worked on at once (parsing, validation, sealing, the database), split among the per-core workers, rounded up; the rest queue. Bounds memory under many clients";
    "operator_organisation", "operator-organisation", "OID", Derived("development: 1.2.246.10.12345678.10.1, the example clinic; production: none"),
        "The organisation (OID) whose administrators operate the service: only they read `/metrics`, whose counters would tell anyone else what their requests found. Unset: `/metrics` answers no one";
    "log_format", "log-format", "FORMAT", Value("text"),
        "Log format: `text` or `json` (the log filter is `VAITIO_LOG`, default `info`)";
    "tls.cert", "tls-cert", "FILE", Derived("development: <data_dir>/pki/server/cert.pem; production: required"),
        "Server certificate chain (PEM)";
    "tls.key", "tls-key", "FILE", Derived("development: <data_dir>/pki/server/key.pem; production: required"),
        "Server private key (PEM)";
    "tls.min_version", "tls-min-version", "VERSION", Value("1.3"),
        "Lowest TLS version accepted: `1.3` or `1.2`";
    "tls.client_ca", "tls-client-ca", "FILE", Derived("development: <data_dir>/pki/ca.pem; production: required"),
        "CA bundle (PEM) that organisations' client certificates must chain to";
    "tls.client_crl", "tls-client-crl", "FILE", Derived("development: <data_dir>/pki/crl.pem; production: none"),
        "CRL (PEM) of revoked client certificates, read again when it changes";
    "identity.audience", "token-audience", "AUD", Value("vaitio"),
        "The `aud` every token must carry";
    "identity.professional_issuer", "professional-issuer", "ISS", Unset("production: required"),
        "`iss` of the professional identity provider (practitioners, auditors, administrators)";
    "identity.professional_jwks", "professional-jwks", "FILE", Unset("production: required"),
        "JWKS file of the professional identity provider";
    "identity.citizen_issuer", "citizen-issuer", "ISS", Unset("none"),
        "`iss` of the citizen identity provider (patients)";
    "identity.citizen_jwks", "citizen-jwks", "FILE", Unset("none"),
        "JWKS file of the citizen identity provider";
    "keys.kek_file", "kek-file", "FILE", Derived("development: <data_dir>/keys/kek.hex; production: required"),
        "Key-encryption key file: 64 hex characters, mode 0600";
    "keys.pkcs11_module", "pkcs11-module", "FILE", Unset("none: the key-encryption key is keys.kek_file"),
        "PKCS#11 module of the HSM that keeps the key-encryption key (data keys are wrapped inside the token); when set, keys.kek_file is not used";
    "keys.pkcs11_token", "pkcs11-token", "LABEL", Unset("required with keys.pkcs11_module, or keys.pkcs11_slot"),
        "Label of the token that holds the key-encryption key";
    "keys.pkcs11_slot", "pkcs11-slot", "N", Unset("none"),
        "The token's slot number, instead of its label";
    "keys.pkcs11_pin_file", "pkcs11-pin-file", "FILE", Unset("the environment variable VAITIO_PKCS11_PIN"),
        "File holding the token user's PIN (mode 0600); the PIN itself is never a setting";
    "keys.pkcs11_key_label", "pkcs11-key-label", "LABEL", Value("vaitio-kek"),
        "Label of the key-encryption key in the token; version N is labelled `<label>.vN`";
    "keys.index_key_file", "index-key-file", "FILE", Derived("development: <data_dir>/keys/index.hex; production: required"),
        "Index (HMAC) key file (version 1): 64 hex characters, mode 0600; version N is the file beside it with .vN before the extension";
    "keys.audit_signing_key", "audit-signing-key", "FILE", Derived("development: <data_dir>/keys/audit-signing.pem; production: required"),
        "Ed25519 private key (PEM, mode 0600) that signs the audit log's checkpoints; keep it off the database host";
    "audit.checkpoint_entries", "audit-checkpoint-entries", "N", Value("1000"),
        "Sign an audit checkpoint when this many entries are unsigned";
    "audit.checkpoint_seconds", "audit-checkpoint-seconds", "SECONDS", Value("10"),
        "…or when the oldest unsigned entry is this many seconds old";
    "search.default_count", "search-default-count", "N", Value("20"),
        "Search page size when `_count` is not given";
    "search.max_count", "search-max-count", "N", Value("100"),
        "Largest page size a search may ask for";
    "policy.notes_open_to_break_the_glass", "policy-notes-open-to-break-the-glass", "BOOL", Value("false"),
        "Whether break-the-glass also opens psychotherapy notes";
    "policy.treating_professionals_see_non_note_data", "policy-treating-professionals-see-non-note-data", "BOOL", Value("true"),
        "Whether a professional acting for treatment receives a patient's data other than notes without a permit naming them";
    "harvest.enabled", "harvest-enabled", "BOOL", Value("true"),
        "Whether professionals who reach unusually many patients are detected (harvesting detection)";
    "harvest.window_seconds", "harvest-window-seconds", "SECONDS", Value("600"),
        "The sliding window over which distinct patients are counted";
    "harvest.practitioner_patients", "harvest-practitioner-patients", "N", Value("30"),
        "Distinct patients one practitioner may reach in the window";
    "harvest.organisation_patients", "harvest-organisation-patients", "N", Value("300"),
        "Distinct patients one organisation's practitioners may reach in the window, together";
    "harvest.certificate_patients", "harvest-certificate-patients", "N", Value("300"),
        "Distinct patients the requests over one client certificate may reach in the window";
    "harvest.break_the_glass_patients", "harvest-break-the-glass-patients", "N", Value("5"),
        "Distinct patients one practitioner may reach in the window by break-the-glass (ETREAT, BTG)";
    "harvest.withheld_share", "harvest-withheld-share", "SHARE", Value("0.5"),
        "Raise an alert also when at least this share of the distinct patients a principal reached were only refused or withheld…";
    "harvest.withheld_minimum", "harvest-withheld-minimum", "N", Value("10"),
        "…once the principal has reached at least this many distinct patients in the window";
    "harvest.response", "harvest-response", "RESPONSE", Value("refuse"),
        "What an alert does to its principal's requests: `refuse` (429 with Retry-After) or `slow` (each waits harvest.slow_millis)";
    "harvest.slow_millis", "harvest-slow-millis", "MILLIS", Value("2000"),
        "How long each request of a slowed principal waits";
    "harvest.block_seconds", "harvest-block-seconds", "SECONDS", Value("3600"),
        "How long an alert holds; 0: until an auditor clears it";
    "portal.idle_minutes", "portal-idle-minutes", "MINUTES", Value("15"),
        "A patient portal session ends after this many minutes without a request";
    "portal.oidc_issuer", "portal-oidc-issuer", "ISS", Unset("none: the portal has no production sign-in"),
        "`iss` of the citizen identity provider the portal signs patients in with (OpenID Connect, authorization code with PKCE)";
    "portal.oidc_client_id", "portal-oidc-client-id", "ID", Unset("required with portal.oidc_issuer"),
        "The portal's client id at that provider";
    "portal.oidc_client_secret_file", "portal-oidc-client-secret-file", "FILE", Unset("none: a public client, PKCE only"),
        "File holding the portal's client secret (mode 0600); the secret itself is never a setting";
    "portal.oidc_redirect_url", "portal-oidc-redirect-url", "URL", Derived("<public_base_url>/portal/login/callback"),
        "The redirect URL registered at the provider";
    "portal.oidc_discovery", "portal-oidc-discovery", "FILE", Derived("<issuer>/.well-known/openid-configuration"),
        "The provider's discovery document, read from this file instead of from the issuer";
    "portal.oidc_jwks", "portal-oidc-jwks", "FILE", Derived("the discovery document's jwks_uri"),
        "The provider's JWKS, read from this file instead of from its jwks_uri";
    "portal.oidc_ca", "portal-oidc-ca", "FILE", Unset("the usual web roots"),
        "CA bundle (PEM) the provider's HTTPS certificate must chain to";
    "portal.oidc_hetu_claim", "portal-oidc-hetu-claim", "CLAIM", Value("hetu"),
        "The ID token claim that holds the patient's HETU";
    "plaintext_listen", "plaintext-listen", "ADDR", Unset("none"),
        "There is no plaintext listener: setting this is refused with the reason", hidden;
    "tls.enabled", "tls-enabled", "BOOL", Value("true"),
        "TLS cannot be turned off: `false` is refused with the reason", hidden;
}

fn setting(key: &str) -> Option<&'static Setting> {
    SETTINGS.iter().find(|s| s.key == key)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Generates its own PKI and keys in the data folder on first run, listens on loopback only,
    /// and says so loudly. For a developer's machine and for tests.
    Development,
    /// Never generates keys, never trusts development issuers; every key and certificate must be
    /// configured and present.
    Production,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The settings given on the command line or in the environment, by key: every command that
/// touches the deployment takes them. clap reads them from [`SETTINGS`].
#[derive(Clone, Debug, Default)]
pub struct ConfigArgs {
    given: BTreeMap<&'static str, String>,
}

impl ConfigArgs {
    /// `key` set to `value`, as a flag would set it (for tests and tools).
    ///
    /// # Panics
    /// When `key` is not a declared setting: a programming error.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        let Some(setting) = setting(key) else { panic!("no setting '{key}'") };
        self.given.insert(setting.key, value.into());
        self
    }
}

/// Where an operator's command is recorded: the deployment's database and checkpoint key, read
/// from the settings without checking what only serving needs (a CA is made before the server
/// has a certificate).
#[derive(Clone, Debug)]
pub struct OperatorLog {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    pub audit_signing_key: PathBuf,
}

impl Config {
    /// Where this configuration records an operator's command.
    pub fn operator_log(&self) -> OperatorLog {
        OperatorLog {
            mode: self.mode,
            data_dir: self.data_dir.clone(),
            database: self.database.clone(),
            audit_signing_key: self.audit_signing_key.clone(),
        }
    }
}

impl ConfigArgs {
    /// The data folder these settings name, without checking the rest: for the commands that
    /// only need the folder (`vaitio certs`).
    pub fn data_dir(&self) -> Result<PathBuf, ConfigError> {
        Raw::read(self)?.required("data_dir", "a folder")
    }

    /// Where an operator's command is recorded (see [`OperatorLog`]).
    pub fn operator_log(&self) -> Result<OperatorLog, ConfigError> {
        let raw = Raw::read(self)?;
        let mode = match raw.text("mode").as_deref() {
            Some("development") => Mode::Development,
            Some("production") => Mode::Production,
            other => {
                return refuse(format!("mode must be 'development' or 'production', not '{}'", other.unwrap_or("")))
            }
        };
        let data_dir: PathBuf = raw.required("data_dir", "a folder")?;
        let database_text = raw
            .text("database_url")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("vaitio.sqlite3").display()));
        let database = DatabaseUrl::parse(&database_text).map_err(|e| ConfigError(e.to_string()))?;
        let audit_signing_key = match (mode, raw.path("keys.audit_signing_key")) {
            (_, Some(path)) => path,
            (Mode::Development, None) => data_dir.join("keys").join("audit-signing.pem"),
            (Mode::Production, None) => {
                return refuse(
                    "production mode needs keys.audit_signing_key (VAITIO_AUDIT_SIGNING_KEY) to record the command",
                )
            }
        };
        Ok(OperatorLog { mode, data_dir, database, audit_signing_key })
    }
}

/// Adds the settings `wanted` picks to `command`, each as its declaration says.
fn add_settings(command: clap::Command, wanted: fn(&Setting) -> bool) -> clap::Command {
    SETTINGS.iter().filter(|setting| wanted(setting)).fold(command, |command, setting| {
        let help = match setting.default {
            Value(value) => format!("{} [default: {value}]", setting.help),
            Derived(text) => format!("{} [default: {text}]", setting.help),
            Unset(_) => setting.help.to_owned(),
        };
        command.arg(
            clap::Arg::new(setting.flag)
                .long(setting.flag)
                .env(setting.env())
                .value_name(setting.value_name)
                .help(help.replace('`', ""))
                .hide(setting.hidden)
                // Also after a subcommand: `vaitio certs issue-org --data-dir D …`.
                .global(true)
                .action(clap::ArgAction::Set),
        )
    })
}

impl clap::Args for ConfigArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        add_settings(command, |_| true)
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for ConfigArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        let mut args = ConfigArgs::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        for setting in SETTINGS {
            if let Ok(Some(value)) = matches.try_get_one::<String>(setting.flag) {
                self.given.insert(setting.key, value.clone());
            }
        }
        Ok(())
    }
}

/// The settings an operator's command that needs no server takes (`vaitio certs`): where the
/// data folder is, and what it takes to record the command in the audit log (the mode, the
/// database, the checkpoint key), declared in [`SETTINGS`] like every other.
#[derive(Clone, Debug, Default)]
pub struct FolderArgs(pub ConfigArgs);

/// The keys of the settings [`FolderArgs`] takes.
const OPERATOR_SETTINGS: [&str; 5] = ["config", "mode", "data_dir", "database_url", "keys.audit_signing_key"];

impl clap::Args for FolderArgs {
    fn augment_args(command: clap::Command) -> clap::Command {
        add_settings(command, |setting| OPERATOR_SETTINGS.contains(&setting.key))
    }

    fn augment_args_for_update(command: clap::Command) -> clap::Command {
        Self::augment_args(command)
    }
}

impl clap::FromArgMatches for FolderArgs {
    fn from_arg_matches(matches: &clap::ArgMatches) -> Result<Self, clap::Error> {
        ConfigArgs::from_arg_matches(matches).map(FolderArgs)
    }

    fn update_from_arg_matches(&mut self, matches: &clap::ArgMatches) -> Result<(), clap::Error> {
        self.0.update_from_arg_matches(matches)
    }
}

/// The checked configuration the rest of the program uses.
#[derive(Clone, Debug)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database: DatabaseUrl,
    pub public_base_url: Option<String>,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    pub tls_minimum: TlsMinimum,
    /// Organisations' CA bundle and CRL.
    pub client_auth: certs::ClientAuth,
    pub token_audience: String,
    /// Trusted identity providers: `iss` and JWKS file.
    pub professional_issuer: Option<(String, PathBuf)>,
    pub citizen_issuer: Option<(String, PathBuf)>,
    /// Development mode's token-signing key; `None` in production, which never trusts it.
    pub development_issuer_key: Option<PathBuf>,
    /// Where the key-encryption key's versions are kept.
    pub kek: KekSettings,
    pub index_key_file: PathBuf,
    pub audit_signing_key: PathBuf,
    pub max_body_bytes: usize,
    pub max_note_bytes: usize,
    pub db_pool_size: u32,
    /// Longest a request waits for a database connection.
    pub db_wait: std::time::Duration,
    /// Bytes kept back beside an embedded database for the day its disk fills.
    pub disk_reserve: u64,
    /// Requests worked on at once, across the server's workers: each holds a thread and its
    /// allocator's memory (about 3 MB apiece was measured under ingest), and the rest queue.
    pub request_threads: usize,
    pub log_format: LogFormat,
    pub default_count: usize,
    pub max_count: usize,
    /// What the patient's choices combine with.
    pub policy: consent::Policy,
    /// Sign an audit checkpoint every this many entries…
    pub audit_checkpoint_entries: u64,
    /// …or when unsigned entries have waited this long (milliseconds).
    pub audit_checkpoint_millis: i64,
    /// Harvesting detection: thresholds and what an alert does.
    pub harvest: HarvestPolicy,
    /// How long a portal session lives without a request.
    pub portal_idle: std::time::Duration,
    /// The portal's production sign-in, when configured.
    pub oidc: Option<OidcSettings>,
    /// The organisation whose administrators read `/metrics`, if any.
    pub operator_organisation: Option<String>,
}

/// An OID as a setting or a portal form may give it: at least two arcs of digits, at most 64
/// characters.
pub fn is_oid(text: &str) -> bool {
    text.len() <= 64
        && text.split('.').count() >= 2
        && text.split('.').all(|arc| !arc.is_empty() && arc.bytes().all(|b| b.is_ascii_digit()))
}

/// The organisation development mode's examples and first-run certificates name: its
/// administrators operate a development gateway.
pub const DEVELOPMENT_ORGANISATION: &str = "1.2.246.10.12345678.10.1";

/// The CPU cores the gateway may use: one server worker (event loop) each.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

#[derive(Debug, thiserror::Error)]
#[error("refusing to start: {0}")]
pub struct ConfigError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, ConfigError> {
    Err(ConfigError(message.into()))
}

/// The raw values of every setting, flags and environment over the file, as text.
struct Raw {
    values: BTreeMap<&'static str, String>,
}

impl Raw {
    fn read(args: &ConfigArgs) -> Result<Raw, ConfigError> {
        let mut values = match args.given.get("config") {
            Some(path) => read_file(Path::new(path))?,
            None => BTreeMap::new(),
        };
        values.extend(args.given.iter().map(|(key, value)| (*key, value.clone())));
        Ok(Raw { values })
    }

    /// The value of `key`, or its declared default when that is a value.
    fn text(&self, key: &str) -> Option<String> {
        self.values.get(key).cloned().or_else(|| match setting(key).map(|s| s.default) {
            Some(Value(value)) => Some(value.to_owned()),
            _ => None,
        })
    }

    fn path(&self, key: &str) -> Option<PathBuf> {
        self.text(key).map(PathBuf::from)
    }

    /// The value of `key` read as a `T`, refused naming the setting when it is not one.
    fn parsed<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>, ConfigError> {
        match self.text(key) {
            None => Ok(None),
            Some(text) => match text.trim().parse() {
                Ok(value) => Ok(Some(value)),
                Err(_) => refuse(format!("{key} must be {what}, not '{text}'")),
            },
        }
    }

    /// A setting whose declared default is a value, so that it always has one.
    fn required<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<T, ConfigError> {
        self.parsed(key, what)?.ok_or_else(|| ConfigError(format!("{key} has no value")))
    }
}

/// Reads the TOML file into values by key; a key no setting declares is refused, so a typo
/// fails loudly rather than being ignored.
fn read_file(path: &Path) -> Result<BTreeMap<&'static str, String>, ConfigError> {
    let failed = |e: &dyn std::fmt::Display| ConfigError(format!("configuration file {}: {e}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| failed(&e))?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| failed(&e))?;
    let mut values = BTreeMap::new();
    let mut add = |key: String, value: &toml::Value| -> Result<(), ConfigError> {
        let Some(setting) = setting(&key).filter(|s| s.key != "config") else {
            return Err(failed(&format!("unknown field '{key}': the settings are listed in docs/configuration.md")));
        };
        let text = match value {
            toml::Value::String(text) => text.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ => return Err(failed(&format!("'{key}' takes a single value"))),
        };
        values.insert(setting.key, text);
        Ok(())
    };
    for (name, value) in &table {
        match value {
            toml::Value::Table(inner) => {
                for (inner_name, value) in inner {
                    add(format!("{name}.{inner_name}"), value)?;
                }
            }
            value => add(name.clone(), value)?,
        }
    }
    Ok(values)
}

impl Config {
    /// Development defaults in `data_dir`, listening on `listen`: what tests start from.
    pub fn development(data_dir: &Path, listen: SocketAddr) -> Config {
        let args =
            ConfigArgs::default().with("data_dir", data_dir.display().to_string()).with("listen", listen.to_string());
        Config::resolve(&args).unwrap_or_else(|e| panic!("development defaults are valid: {e}"))
    }

    pub fn resolve(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let raw = Raw::read(args)?;
        if raw.values.contains_key("plaintext_listen") || raw.parsed::<bool>("tls.enabled", "true")? == Some(false) {
            return refuse(
                "Vaitio has no plaintext listener: clinical data and tokens would cross the network readable by anyone on the path. \
                 Remove the plaintext setting; the gateway serves HTTPS only.",
            );
        }
        let mode = match raw.text("mode").as_deref() {
            Some("development") => Mode::Development,
            Some("production") => Mode::Production,
            other => {
                return refuse(format!("mode must be 'development' or 'production', not '{}'", other.unwrap_or("")))
            }
        };
        let data_dir: PathBuf = raw.required("data_dir", "a folder")?;
        let listen_text = raw.text("listen").unwrap_or_default();
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "listen must be an address and port such as 127.0.0.1:8443 (HTTPS is implied), not '{listen_text}'"
            ))
        })?;
        let database_text = raw
            .text("database_url")
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("vaitio.sqlite3").display()));
        let database = DatabaseUrl::parse(&database_text).map_err(|e| ConfigError(e.to_string()))?;
        let tls_minimum = match raw.text("tls.min_version").as_deref() {
            Some("1.3") => TlsMinimum::Tls13,
            Some("1.2") => TlsMinimum::Tls12,
            other => return refuse(format!("tls min_version must be 1.3 or 1.2, not '{}'", other.unwrap_or(""))),
        };
        let log_format = match raw.text("log_format").as_deref() {
            Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            other => return refuse(format!("log_format must be text or json, not '{}'", other.unwrap_or(""))),
        };
        let max_body_bytes: usize = raw.required("max_body_bytes", "a number of bytes")?;
        if max_body_bytes < 1024 {
            return refuse("max_body_bytes must be at least 1024");
        }
        let max_note_bytes: usize = raw.required("max_note_bytes", "a number of bytes")?;
        let db_pool_size: u32 = raw.required("db_pool_size", "a whole number")?;
        let db_wait_millis: u64 = raw.required("db_wait_millis", "a number of milliseconds")?;
        let disk_reserve_mb: u64 = raw.required("disk_reserve_mb", "a whole number of megabytes")?;
        if disk_reserve_mb > 65_536 {
            return refuse("disk_reserve_mb must be at most 65536 (64 GiB)");
        }
        if !(100..=60_000).contains(&db_wait_millis) {
            return refuse("db_wait_millis must be between 100 and 60000");
        }
        if db_pool_size == 0 {
            return refuse("db_pool_size must be at least 1");
        }
        let request_threads = raw.parsed::<usize>("request_threads", "a whole number")?.unwrap_or(8 * cores());
        if request_threads == 0 {
            return refuse("request_threads must be at least 1");
        }
        let operator_organisation = match raw.text("operator_organisation") {
            Some(oid) if is_oid(&oid) => Some(oid),
            Some(_) => return refuse("operator_organisation must be an OID (digits and dots)"),
            None => (mode == Mode::Development).then(|| DEVELOPMENT_ORGANISATION.to_owned()),
        };
        let default_count: usize = raw.required("search.default_count", "a whole number")?;
        let max_count: usize = raw.required("search.max_count", "a whole number")?;
        if default_count == 0 || default_count > max_count {
            return refuse("search.default_count must be between 1 and search.max_count");
        }

        let pki = data_dir.join("pki").join("server");
        let keys = data_dir.join("keys");
        let (tls_cert, tls_key, kek_file, index_key_file, audit_signing_key) = match mode {
            Mode::Development => {
                if !listen.ip().is_loopback() {
                    return refuse(format!(
                        "development mode listens on loopback only (its keys and PKI are generated, not protected), not on {listen}; \
                         configure mode = \"production\" with real certificates and keys to listen elsewhere"
                    ));
                }
                (
                    raw.path("tls.cert").unwrap_or_else(|| pki.join("cert.pem")),
                    raw.path("tls.key").unwrap_or_else(|| pki.join("key.pem")),
                    Some(raw.path("keys.kek_file").unwrap_or_else(|| keys.join("kek.hex"))),
                    raw.path("keys.index_key_file").unwrap_or_else(|| keys.join("index.hex")),
                    raw.path("keys.audit_signing_key").unwrap_or_else(|| keys.join("audit-signing.pem")),
                )
            }
            Mode::Production => {
                let required = |key: &str| -> Result<PathBuf, ConfigError> {
                    let named = setting(key).map_or_else(|| key.to_owned(), |s| format!("{key} ({})", s.env()));
                    let path = raw.path(key).ok_or_else(|| {
                        ConfigError(format!("production mode needs {named}: it never generates keys or certificates"))
                    })?;
                    if !path.is_file() {
                        return refuse(format!("{named} {} does not exist", path.display()));
                    }
                    Ok(path)
                };
                (
                    required("tls.cert")?,
                    required("tls.key")?,
                    // With an HSM there is no key file.
                    if raw.values.contains_key("keys.pkcs11_module") { None } else { Some(required("keys.kek_file")?) },
                    required("keys.index_key_file")?,
                    required("keys.audit_signing_key")?,
                )
            }
        };
        let issuer = |name: &str| -> Result<Option<(String, PathBuf)>, ConfigError> {
            let issuer = raw.text(&format!("identity.{name}_issuer"));
            let jwks = raw.path(&format!("identity.{name}_jwks"));
            match (issuer, jwks) {
                (Some(issuer), Some(jwks)) => {
                    if !jwks.is_file() {
                        return refuse(format!("the {name} JWKS file {} does not exist", jwks.display()));
                    }
                    Ok(Some((issuer, jwks)))
                }
                (None, None) => Ok(None),
                _ => refuse(format!("{name}_issuer and {name}_jwks go together")),
            }
        };
        let professional_issuer = issuer("professional")?;
        let citizen_issuer = issuer("citizen")?;
        let audit_checkpoint_entries: u64 = raw.required("audit.checkpoint_entries", "a whole number")?;
        if audit_checkpoint_entries == 0 {
            return refuse("audit checkpoint_entries must be at least 1");
        }
        let seconds: f64 = raw.required("audit.checkpoint_seconds", "a number of seconds")?;
        if !(0.001..=86_400.0).contains(&seconds) {
            return refuse("audit checkpoint_seconds must be between 0.001 and 86400");
        }
        let audit_checkpoint_millis = (seconds * 1000.0) as i64;
        let harvest = harvest::policy(&raw)?;
        let policy = consent::Policy {
            notes_open_to_break_the_glass: raw.required("policy.notes_open_to_break_the_glass", "true or false")?,
            treating_professionals_see_non_note_data: raw
                .required("policy.treating_professionals_see_non_note_data", "true or false")?,
        };
        let token_audience = raw.text("identity.audience").unwrap_or_default();
        let client_ca = raw.path("tls.client_ca");
        let client_crl = raw.path("tls.client_crl");
        let (client_auth, development_issuer_key) = match mode {
            Mode::Development => (
                certs::ClientAuth {
                    ca: client_ca.unwrap_or_else(|| data_dir.join("pki").join("ca.pem")),
                    crl: Some(client_crl.unwrap_or_else(|| data_dir.join("pki").join(certs::CRL_FILE))),
                },
                Some(keys.join("dev-issuer.pem")),
            ),
            Mode::Production => {
                let ca = client_ca.ok_or_else(|| {
                    ConfigError("production mode needs tls.client_ca (VAITIO_TLS_CLIENT_CA): the CA that organisations' certificates chain to".into())
                })?;
                if !ca.is_file() {
                    return refuse(format!("tls.client_ca {} does not exist", ca.display()));
                }
                if professional_issuer.is_none() {
                    return refuse(
                        "production mode needs a professional identity provider: identity.professional_issuer and identity.professional_jwks \
                         (VAITIO_PROFESSIONAL_ISSUER, VAITIO_PROFESSIONAL_JWKS); it never trusts the development issuer",
                    );
                }
                (certs::ClientAuth { ca, crl: client_crl }, None)
            }
        };
        let idle_minutes: u64 = raw.required("portal.idle_minutes", "a whole number of minutes")?;
        if !(1..=1440).contains(&idle_minutes) {
            return refuse("portal.idle_minutes must be between 1 and 1440");
        }
        let public_base_url = raw.text("public_base_url").map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_base_url {
            if !url.starts_with("https://") {
                return refuse(format!("public_base_url must be an https:// URL, not '{url}'"));
            }
        }
        Ok(Config {
            mode,
            data_dir,
            listen,
            database,
            public_base_url,
            tls_cert,
            tls_key,
            tls_minimum,
            client_auth,
            token_audience,
            professional_issuer,
            citizen_issuer,
            development_issuer_key,
            kek: match (keys::token(&raw)?, kek_file) {
                (Some(token), _) => KekSettings::Token(token),
                (None, Some(file)) => KekSettings::File(file),
                (None, None) => return refuse("production mode needs keys.kek_file or keys.pkcs11_module"),
            },
            index_key_file,
            audit_signing_key,
            max_body_bytes,
            max_note_bytes,
            db_pool_size,
            db_wait: std::time::Duration::from_millis(db_wait_millis),
            disk_reserve: disk_reserve_mb << 20,
            request_threads,
            log_format,
            default_count,
            max_count,
            policy,
            audit_checkpoint_entries,
            audit_checkpoint_millis,
            harvest,
            portal_idle: std::time::Duration::from_secs(idle_minutes * 60),
            operator_organisation,
            oidc: portal::oidc(&raw)?,
        })
    }
}

/// The settings table of `docs/configuration.md`, as the declarations make it.
pub fn settings_table() -> String {
    let mut table = String::from(
        "| TOML key | flag | environment variable | default | what it sets |\n| --- | --- | --- | --- | --- |\n",
    );
    for setting in SETTINGS.iter().filter(|s| !s.hidden) {
        let default = match setting.default {
            Value(value) => format!("`{value}`"),
            Derived(text) | Unset(text) => text.replace('<', "`<").replace('>', ">`"),
        };
        let key = if setting.key == "config" { "—".to_owned() } else { format!("`{}`", setting.key) };
        table.push_str(&format!(
            "| {key} | `--{}` | `{}` | {default} | {} |\n",
            setting.flag,
            setting.env(),
            setting.help
        ));
    }
    table
}

mod harvest;
mod keys;
mod portal;
pub use harvest::{HarvestPolicy, HarvestResponse};
pub use keys::{KekSettings, TokenConfig, PIN_VARIABLE};
pub use portal::OidcSettings;

#[cfg(test)]
mod tests;
