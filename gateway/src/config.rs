//! Configuration: every setting with its default, its environment variable and its TOML key, in
//! one place. Sources, strongest first: command-line flag, environment variable, the TOML file
//! (`--config` / `VAITIO_CONFIG`), the default. The result is checked once, here; a configuration
//! that would be unsafe is refused with the reason, before anything starts.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use certs::TlsMinimum;
use serde::Deserialize;

use crate::db::DatabaseUrl;

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

/// Settings as given on the command line or in the environment. Shared by every subcommand that
/// touches the deployment.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConfigArgs {
    /// TOML configuration file; its keys are the long flag names with underscores, the TLS and
    /// key settings under [tls] and [keys] (see README).
    #[arg(long, env = "VAITIO_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// `development` (the default: generates its own PKI and keys) or `production`.
    #[arg(long, env = "VAITIO_MODE", value_name = "MODE")]
    pub mode: Option<String>,
    /// Data folder: the SQLite database, and in development mode the generated PKI and keys
    /// [default: ./vaitio-data].
    #[arg(long, env = "VAITIO_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address of the HTTPS listener, the only one [default: 127.0.0.1:8443].
    #[arg(long, env = "VAITIO_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// postgres://… for PostgreSQL, or sqlite://PATH or a plain path for SQLite
    /// [default: sqlite://<data dir>/vaitio.sqlite3].
    #[arg(long, env = "VAITIO_DATABASE_URL", value_name = "URL")]
    pub database_url: Option<String>,
    /// The URL clients use to reach the gateway, for Location headers and paging links
    /// [default: https://<Host header>].
    #[arg(long, env = "VAITIO_PUBLIC_BASE_URL", value_name = "URL")]
    pub public_base_url: Option<String>,
    /// Server certificate chain (PEM) [development default: <data dir>/pki/server/cert.pem].
    #[arg(long, env = "VAITIO_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM) [development default: <data dir>/pki/server/key.pem].
    #[arg(long, env = "VAITIO_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) that organisations' client certificates must chain to
    /// [development default: <data dir>/pki/ca.pem].
    #[arg(long, env = "VAITIO_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<PathBuf>,
    /// CRL (PEM) of revoked client certificates, re-read when it changes
    /// [development default: <data dir>/pki/crl.pem, when it exists].
    #[arg(long, env = "VAITIO_TLS_CLIENT_CRL", value_name = "FILE")]
    pub tls_client_crl: Option<PathBuf>,
    /// The `aud` every token must carry [default: vaitio].
    #[arg(long, env = "VAITIO_TOKEN_AUDIENCE", value_name = "AUD")]
    pub token_audience: Option<String>,
    /// `iss` of the professional identity provider (practitioners, auditors, administrators).
    #[arg(long, env = "VAITIO_PROFESSIONAL_ISSUER", value_name = "ISS")]
    pub professional_issuer: Option<String>,
    /// JWKS file of the professional identity provider; required in production.
    #[arg(long, env = "VAITIO_PROFESSIONAL_JWKS", value_name = "FILE")]
    pub professional_jwks: Option<PathBuf>,
    /// `iss` of the citizen identity provider (patients).
    #[arg(long, env = "VAITIO_CITIZEN_ISSUER", value_name = "ISS")]
    pub citizen_issuer: Option<String>,
    /// JWKS file of the citizen identity provider.
    #[arg(long, env = "VAITIO_CITIZEN_JWKS", value_name = "FILE")]
    pub citizen_jwks: Option<PathBuf>,
    /// Lowest TLS version accepted: 1.3 (default) or 1.2.
    #[arg(long, env = "VAITIO_TLS_MIN_VERSION", value_name = "VERSION")]
    pub tls_min_version: Option<String>,
    /// Key-encryption key file: 64 hex characters, mode 0600
    /// [development default: <data dir>/keys/kek.hex].
    #[arg(long, env = "VAITIO_KEK_FILE", value_name = "FILE")]
    pub kek_file: Option<PathBuf>,
    /// Index (HMAC) key file: 64 hex characters, mode 0600
    /// [development default: <data dir>/keys/index.hex].
    #[arg(long, env = "VAITIO_INDEX_KEY_FILE", value_name = "FILE")]
    pub index_key_file: Option<PathBuf>,
    /// Ed25519 private key (PEM, mode 0600) that signs the audit log's checkpoints; keep it off
    /// the database host [development default: <data dir>/keys/audit-signing.pem].
    #[arg(long, env = "VAITIO_AUDIT_SIGNING_KEY", value_name = "FILE")]
    pub audit_signing_key: Option<PathBuf>,
    /// Largest request body accepted, in bytes [default: 2097152].
    #[arg(long, env = "VAITIO_MAX_BODY_BYTES", value_name = "BYTES")]
    pub max_body_bytes: Option<usize>,
    /// Largest note text accepted in a clinic's record, in bytes [default: 65536].
    #[arg(long, env = "VAITIO_MAX_NOTE_BYTES", value_name = "BYTES")]
    pub max_note_bytes: Option<usize>,
    /// Database connections in the pool [default: 8].
    #[arg(long, env = "VAITIO_DB_POOL_SIZE", value_name = "N")]
    pub db_pool_size: Option<u32>,
    /// Threads that do requests' work (parsing, validation, sealing, the database) at once,
    /// split among the server's workers (one per core, rounded up); more requests wait for one.
    /// Bounds memory under many concurrent clients [default: 8 per CPU core].
    #[arg(long, env = "VAITIO_REQUEST_THREADS", value_name = "N")]
    pub request_threads: Option<usize>,
    /// Log format: text (default) or json.
    #[arg(long, env = "VAITIO_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<String>,
    /// There is no plaintext listener. Setting this (to anything) is refused with the reason; it
    /// exists so that the attempt fails loudly instead of being ignored.
    #[arg(long, env = "VAITIO_PLAINTEXT_LISTEN", value_name = "ADDR", hide = true)]
    pub plaintext_listen: Option<String>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    mode: Option<String>,
    data_dir: Option<PathBuf>,
    listen: Option<String>,
    database_url: Option<String>,
    public_base_url: Option<String>,
    max_body_bytes: Option<usize>,
    max_note_bytes: Option<usize>,
    db_pool_size: Option<u32>,
    request_threads: Option<usize>,
    log_format: Option<String>,
    plaintext_listen: Option<String>,
    #[serde(default)]
    tls: FileTls,
    #[serde(default)]
    keys: FileKeys,
    #[serde(default)]
    search: FileSearch,
    #[serde(default)]
    identity: FileIdentity,
    /// The consent policy's knobs, read by the consent crate itself (an unknown knob is refused).
    #[serde(default)]
    policy: consent::Policy,
    #[serde(default)]
    audit: FileAudit,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    checkpoint_entries: Option<u64>,
    checkpoint_seconds: Option<f64>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileIdentity {
    audience: Option<String>,
    professional_issuer: Option<String>,
    professional_jwks: Option<PathBuf>,
    citizen_issuer: Option<String>,
    citizen_jwks: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileTls {
    enabled: Option<bool>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    min_version: Option<String>,
    client_ca: Option<PathBuf>,
    client_crl: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileKeys {
    kek_file: Option<PathBuf>,
    index_key_file: Option<PathBuf>,
    audit_signing_key: Option<PathBuf>,
}

#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct FileSearch {
    default_count: Option<usize>,
    max_count: Option<usize>,
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
    pub kek_file: PathBuf,
    pub index_key_file: PathBuf,
    pub audit_signing_key: PathBuf,
    pub max_body_bytes: usize,
    pub max_note_bytes: usize,
    pub db_pool_size: u32,
    /// Requests worked on at once, across the server's workers: each holds a thread and its
    /// allocator's memory (about 3 MB apiece was measured under ingest), and the rest queue.
    pub request_threads: usize,
    pub log_format: LogFormat,
    pub default_count: usize,
    pub max_count: usize,
    /// What the patient's choices combine with: `[policy]` in the TOML file.
    pub policy: consent::Policy,
    /// Sign an audit checkpoint every this many entries…
    pub audit_checkpoint_entries: u64,
    /// …or when unsigned entries have waited this long (milliseconds).
    pub audit_checkpoint_millis: i64,
}

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

impl Config {
    /// Development defaults in `data_dir`, listening on `listen`: what tests start from.
    pub fn development(data_dir: &Path, listen: SocketAddr) -> Config {
        let args =
            ConfigArgs { data_dir: Some(data_dir.to_owned()), listen: Some(listen.to_string()), ..Default::default() };
        Config::resolve(&args).unwrap_or_else(|e| panic!("development defaults are valid: {e}"))
    }

    pub fn resolve(args: &ConfigArgs) -> Result<Config, ConfigError> {
        let file = match &args.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read the configuration file {}: {e}", path.display())))?;
                toml::from_str::<FileConfig>(&text)
                    .map_err(|e| ConfigError(format!("configuration file {}: {e}", path.display())))?
            }
            None => FileConfig::default(),
        };
        if args.plaintext_listen.is_some() || file.plaintext_listen.is_some() || file.tls.enabled == Some(false) {
            return refuse(
                "Vaitio has no plaintext listener: clinical data and tokens would cross the network readable by anyone on the path. \
                 Remove the plaintext setting; the gateway serves HTTPS only.",
            );
        }
        let mode = match args.mode.as_deref().or(file.mode.as_deref()) {
            None | Some("development") => Mode::Development,
            Some("production") => Mode::Production,
            Some(other) => return refuse(format!("mode must be 'development' or 'production', not '{other}'")),
        };
        let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(|| PathBuf::from("vaitio-data"));
        let listen_text = args.listen.clone().or(file.listen).unwrap_or_else(|| "127.0.0.1:8443".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "listen must be an address and port such as 127.0.0.1:8443 (HTTPS is implied), not '{listen_text}'"
            ))
        })?;
        let database_text = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("vaitio.sqlite3").display()));
        let database = DatabaseUrl::parse(&database_text).map_err(ConfigError)?;
        let tls_minimum = match args.tls_min_version.as_deref().or(file.tls.min_version.as_deref()) {
            None | Some("1.3") => TlsMinimum::Tls13,
            Some("1.2") => TlsMinimum::Tls12,
            Some(other) => return refuse(format!("tls min_version must be 1.3 or 1.2, not '{other}'")),
        };
        let log_format = match args.log_format.as_deref().or(file.log_format.as_deref()) {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return refuse(format!("log_format must be text or json, not '{other}'")),
        };
        let max_body_bytes = args.max_body_bytes.or(file.max_body_bytes).unwrap_or(2 * 1024 * 1024);
        if max_body_bytes < 1024 {
            return refuse("max_body_bytes must be at least 1024");
        }
        let max_note_bytes = args.max_note_bytes.or(file.max_note_bytes).unwrap_or(64 * 1024);
        let db_pool_size = args.db_pool_size.or(file.db_pool_size).unwrap_or(8);
        if db_pool_size == 0 {
            return refuse("db_pool_size must be at least 1");
        }
        let request_threads = args.request_threads.or(file.request_threads).unwrap_or(8 * cores());
        if request_threads == 0 {
            return refuse("request_threads must be at least 1");
        }
        let default_count = file.search.default_count.unwrap_or(20);
        let max_count = file.search.max_count.unwrap_or(100);
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
                    args.tls_cert.clone().or(file.tls.cert).unwrap_or_else(|| pki.join("cert.pem")),
                    args.tls_key.clone().or(file.tls.key).unwrap_or_else(|| pki.join("key.pem")),
                    args.kek_file.clone().or(file.keys.kek_file).unwrap_or_else(|| keys.join("kek.hex")),
                    args.index_key_file.clone().or(file.keys.index_key_file).unwrap_or_else(|| keys.join("index.hex")),
                    args.audit_signing_key
                        .clone()
                        .or(file.keys.audit_signing_key)
                        .unwrap_or_else(|| keys.join("audit-signing.pem")),
                )
            }
            Mode::Production => {
                let required = |value: Option<PathBuf>, setting: &str| -> Result<PathBuf, ConfigError> {
                    let path = value.ok_or_else(|| {
                        ConfigError(format!("production mode needs {setting}: it never generates keys or certificates"))
                    })?;
                    if !path.is_file() {
                        return refuse(format!("{setting} {} does not exist", path.display()));
                    }
                    Ok(path)
                };
                (
                    required(args.tls_cert.clone().or(file.tls.cert), "tls.cert (VAITIO_TLS_CERT)")?,
                    required(args.tls_key.clone().or(file.tls.key), "tls.key (VAITIO_TLS_KEY)")?,
                    required(args.kek_file.clone().or(file.keys.kek_file), "keys.kek_file (VAITIO_KEK_FILE)")?,
                    required(
                        args.index_key_file.clone().or(file.keys.index_key_file),
                        "keys.index_key_file (VAITIO_INDEX_KEY_FILE)",
                    )?,
                    required(
                        args.audit_signing_key.clone().or(file.keys.audit_signing_key),
                        "keys.audit_signing_key (VAITIO_AUDIT_SIGNING_KEY)",
                    )?,
                )
            }
        };
        let issuer = |iss: Option<String>,
                      jwks: Option<PathBuf>,
                      name: &str|
         -> Result<Option<(String, PathBuf)>, ConfigError> {
            match (iss, jwks) {
                (Some(iss), Some(jwks)) => {
                    if !jwks.is_file() {
                        return refuse(format!("the {name} JWKS file {} does not exist", jwks.display()));
                    }
                    Ok(Some((iss, jwks)))
                }
                (None, None) => Ok(None),
                _ => refuse(format!("{name}_issuer and {name}_jwks go together")),
            }
        };
        let professional_issuer = issuer(
            args.professional_issuer.clone().or(file.identity.professional_issuer),
            args.professional_jwks.clone().or(file.identity.professional_jwks),
            "professional",
        )?;
        let citizen_issuer = issuer(
            args.citizen_issuer.clone().or(file.identity.citizen_issuer),
            args.citizen_jwks.clone().or(file.identity.citizen_jwks),
            "citizen",
        )?;
        let audit_checkpoint_entries = file.audit.checkpoint_entries.unwrap_or(crate::audit::CHECKPOINT_ENTRIES);
        let audit_checkpoint_millis = match file.audit.checkpoint_seconds {
            Some(seconds) if !(0.001..=86_400.0).contains(&seconds) => {
                return refuse("audit checkpoint_seconds must be between 0.001 and 86400")
            }
            Some(seconds) => (seconds * 1000.0) as i64,
            None => crate::audit::CHECKPOINT_MILLIS,
        };
        if audit_checkpoint_entries == 0 {
            return refuse("audit checkpoint_entries must be at least 1");
        }
        let token_audience =
            args.token_audience.clone().or(file.identity.audience).unwrap_or_else(|| "vaitio".to_owned());
        let client_ca = args.tls_client_ca.clone().or(file.tls.client_ca);
        let client_crl = args.tls_client_crl.clone().or(file.tls.client_crl);
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
        let public_base_url =
            args.public_base_url.clone().or(file.public_base_url).map(|url| url.trim_end_matches('/').to_owned());
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
            kek_file,
            index_key_file,
            audit_signing_key,
            max_body_bytes,
            max_note_bytes,
            db_pool_size,
            request_threads,
            log_format,
            default_count,
            max_count,
            policy: file.policy,
            audit_checkpoint_entries,
            audit_checkpoint_millis,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> ConfigArgs {
        ConfigArgs::default()
    }

    #[test]
    fn no_configuration_means_development_on_loopback() {
        let config = Config::resolve(&args()).unwrap();
        assert_eq!(config.mode, Mode::Development);
        assert_eq!(config.listen, "127.0.0.1:8443".parse().unwrap());
        assert_eq!(config.database, DatabaseUrl::Sqlite("vaitio-data/vaitio.sqlite3".into()));
        assert_eq!(config.tls_minimum, TlsMinimum::Tls13);
        assert!(config.kek_file.starts_with("vaitio-data"));
    }

    #[test]
    fn unsafe_configurations_are_refused_with_a_reason() {
        let plaintext = ConfigArgs { plaintext_listen: Some("0.0.0.0:80".into()), ..args() };
        assert!(Config::resolve(&plaintext).unwrap_err().0.contains("no plaintext listener"));
        let exposed = ConfigArgs { listen: Some("0.0.0.0:8443".into()), ..args() };
        assert!(Config::resolve(&exposed).unwrap_err().0.contains("loopback"));
        let production = ConfigArgs { mode: Some("production".into()), ..args() };
        assert!(Config::resolve(&production).unwrap_err().0.contains("never generates"));
        let missing =
            ConfigArgs { mode: Some("production".into()), tls_cert: Some("/nonexistent/cert.pem".into()), ..args() };
        assert!(Config::resolve(&missing).unwrap_err().0.contains("does not exist"));
        let typo = ConfigArgs { database_url: Some("postgress://localhost/v".into()), ..args() };
        assert!(Config::resolve(&typo).unwrap_err().0.contains("unknown database scheme"));
        let url = ConfigArgs { listen: Some("http://127.0.0.1:8080".into()), ..args() };
        assert!(Config::resolve(&url).is_err());
    }

    #[test]
    fn the_file_is_read_and_flags_override_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vaitio.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:9443\"\nmax_body_bytes = 4096\n[tls]\nmin_version = \"1.2\"\n[search]\nmax_count = 50\n[policy]\nnotes_open_to_break_the_glass = true\n").unwrap();
        let from_file = Config::resolve(&ConfigArgs { config: Some(path.clone()), ..args() }).unwrap();
        assert_eq!(from_file.listen.port(), 9443);
        assert_eq!(from_file.max_body_bytes, 4096);
        assert_eq!(from_file.tls_minimum, TlsMinimum::Tls12);
        assert_eq!(from_file.max_count, 50);
        assert_eq!(from_file.request_threads, 8 * cores());
        assert!(
            from_file.policy.notes_open_to_break_the_glass && from_file.policy.treating_professionals_see_non_note_data
        );
        let overridden = Config::resolve(&ConfigArgs {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:10443".into()),
            ..args()
        })
        .unwrap();
        assert_eq!(overridden.listen.port(), 10443);
        std::fs::write(&path, "request_threads = 4\n").unwrap();
        let bounded = Config::resolve(&ConfigArgs { config: Some(path.clone()), ..args() }).unwrap();
        assert_eq!(bounded.request_threads, 4);
        let flagged = ConfigArgs { config: Some(path.clone()), request_threads: Some(12), ..args() };
        assert_eq!(Config::resolve(&flagged).unwrap().request_threads, 12);
        let none = ConfigArgs { request_threads: Some(0), ..args() };
        assert!(Config::resolve(&none).unwrap_err().0.contains("request_threads"));
        std::fs::write(&path, "[tls]\nenabled = false\n").unwrap();
        assert!(Config::resolve(&ConfigArgs { config: Some(path.clone()), ..args() }).is_err());
        std::fs::write(&path, "lisen = \"127.0.0.1:1\"\n").unwrap();
        assert!(Config::resolve(&ConfigArgs { config: Some(path), ..args() }).unwrap_err().0.contains("unknown field"));
    }
}
