//! Start-up: the same path in `main` and in tests. `Application::build` checks keys, opens and
//! migrates the database, binds the TLS listener; `run_until_stopped` serves. The route table is
//! here, and only here.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{middleware, web, App, HttpServer};
use store::audit::AuditSigner;
use store::crypto::{CryptoError, SecretKey};
use store::db::{self, Pool};
use store::index_keys::IndexKeys;
use store::kek::{KekCustody, KeyFiles};
use store::{Store, StoreError};

use crate::api::{access_log, alerts, import, read, search, submission, system, write};
use crate::config::{Config, KekSettings, Mode};
use crate::enforce::Enforcement;
use crate::import_pool::ImportPool;
use fhir_profiles::Hetu;
use identity::{Identity, IssuerKind, KeyError};

use crate::caller::PeerCertificate;
use crate::metrics::{self, Metrics, RoutePattern};
use crate::portal::Portal;
use crate::state::AppState;

/// Why the gateway (or an operator command) could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("development PKI: {0}")]
    DevelopmentPki(certs::CertsError),
    #[error(transparent)]
    Key(#[from] CryptoError),
    #[error(transparent)]
    Issuer(#[from] KeyError),
    #[error("cannot open the database {database}: {cause}")]
    Database { database: String, cause: StoreError },
    #[error("TLS: {0}")]
    Tls(certs::CertsError),
    #[error("cannot listen on {address}: {cause}")]
    Listen { address: String, cause: std::io::Error },
    #[error("cannot serve TLS: {0}")]
    Serve(std::io::Error),
    #[error("portal sign-in: {0}")]
    Oidc(crate::portal::oidc::OidcError),
    #[error("the key-encryption key: {0}")]
    Keys(StoreError),
    #[error("the index key (every version the database records must open here): {0}")]
    IndexKeys(StoreError),
    #[error("the key-encryption key's token: {0}")]
    Token(String),
}

/// The custody of the key-encryption key's versions, as configured: key files, or a PKCS#11
/// token. In development mode a token without a key gets its first version made in it (as the
/// key file is generated); in production `vaitio keys create-kek` makes it.
pub fn kek_custody(config: &Config) -> Result<Box<dyn KekCustody>, StartError> {
    match &config.kek {
        KekSettings::File(file) => Ok(Box::new(KeyFiles::new(file))),
        KekSettings::Token(token) => {
            let settings = token.settings().map_err(StartError::Token)?;
            let custody = hsm::TokenCustody::new(hsm::Token::load(settings)?);
            if config.mode == Mode::Development && custody.open(1).is_err() {
                custody.create(1)?;
            }
            Ok(Box::new(custody))
        }
    }
}

pub struct Application {
    server: actix_web::dev::Server,
    store: Store,
    port: u16,
    /// True when this start generated the development PKI and keys.
    pub first_run: bool,
    pub config: Arc<Config>,
}

/// Development mode's first run: the PKI and the two keys, generated into the data folder.
/// Returns whether anything was generated.
fn prepare_development(config: &Config) -> Result<bool, StartError> {
    let mut created = false;
    let pki_dir = config.data_dir.join("pki");
    if !config.tls_cert.exists() || !config.tls_key.exists() {
        let pki = certs::DevPki::ensure(&pki_dir).map_err(StartError::DevelopmentPki)?;
        created |= pki.created;
    }
    let kek_file = match &config.kek {
        KekSettings::File(file) => Some(file),
        KekSettings::Token(_) => None,
    };
    for key in kek_file.into_iter().chain([&config.index_key_file]) {
        if !key.exists() {
            SecretKey::generate_file(key)?;
            created = true;
        }
    }
    if !config.audit_signing_key.exists() {
        crate::audit::generate_signing_key_file(&config.audit_signing_key)?;
        created = true;
    }
    Ok(created)
}

/// The trusted token issuers of this configuration.
fn build_identity(config: &Config, store: Store) -> Result<Identity, StartError> {
    let pseudonymise = move |hetu: &Hetu| store.every_pseudonym(|p| p.patient_from_hetu(hetu));
    let mut identity = Identity::new(&config.token_audience, Box::new(pseudonymise));
    if let Some((issuer, jwks)) = &config.professional_issuer {
        identity.trust_jwks_file(issuer, IssuerKind::Professional, jwks)?;
    }
    if let Some((issuer, jwks)) = &config.citizen_issuer {
        identity.trust_jwks_file(issuer, IssuerKind::Citizen, jwks)?;
    }
    if let Some(key) = &config.development_issuer_key {
        identity.trust_development_issuer(key)?;
    }
    Ok(identity)
}

/// Reads the verified client certificate of a new connection once, for every request on it.
fn read_client_certificate(connection: &dyn std::any::Any, extensions: &mut actix_web::dev::Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    if let Some(tls) = connection.downcast_ref::<Tls>() {
        let (socket, session) = tls.get_ref();
        // Without this, the first response on a new connection waits for the client's delayed
        // ACK of the TLS 1.3 session tickets: about 40 ms per new connection.
        let _ = socket.set_nodelay(true);
        let peer = session
            .peer_certificates()
            .and_then(|chain| chain.first())
            .and_then(|cert| certs::PeerIdentity::from_der(cert).ok());
        extensions.insert(PeerCertificate(peer));
    }
}

/// Reads the alerts that hold every second, and deletes every minute harvesting detection's
/// marks that left its window. The thread ends with the enforcement point.
fn watch_in_background(enforcement: &Arc<Enforcement>) {
    let enforcement = Arc::downgrade(enforcement);
    let spawned = std::thread::Builder::new().name("harvest-watch".into()).spawn(move || {
        for second in 1u64.. {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let Some(enforcement) = enforcement.upgrade() else { return };
            enforcement.watch().refresh();
            if second % 60 == 0 {
                enforcement.watch().purge();
            }
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no thread deletes old harvesting marks: the table grows");
    }
}

/// Opens the pool and applies the pending migrations (`vaitio migrate` and every start).
pub fn open_database(config: &Config) -> Result<(Pool, usize), StartError> {
    let failed = |cause| StartError::Database { database: config.database.redacted(), cause };
    let pool = db::pool(&config.database, config.db_pool_size).map_err(failed)?;
    let mut conn = pool.get_timeout(db::START_WAIT).map_err(|e| failed(e.into()))?;
    let applied = db::migrate(&mut conn).map_err(failed)?;
    Ok((pool, applied))
}

/// The checkpoint key, with the configured schedule.
pub fn audit_signer(config: &Config) -> Result<AuditSigner, StartError> {
    Ok(AuditSigner::from_file(&config.audit_signing_key)?
        .with_schedule(config.audit_checkpoint_entries, config.audit_checkpoint_millis))
}

impl Application {
    pub fn build(config: Config) -> Result<Self, StartError> {
        let first_run = match config.mode {
            Mode::Development => prepare_development(&config)?,
            Mode::Production => false,
        };
        let custody = kek_custody(&config)?;
        let index_keys = IndexKeys::from_files(&config.index_key_file)?;
        let (pool, applied) = open_database(&config)?;
        if applied > 0 {
            tracing::info!(applied, backend = config.database.backend_name(), "migrations applied");
        }
        let signer = audit_signer(&config)?;
        let limits = store::Limits { db_wait: config.db_wait, disk_reserve: config.disk_reserve };
        let (store, opener) = Store::new(pool, limits, custody, index_keys, signer);
        let versions = store.prepare_keys().map_err(StartError::Keys)?;
        if let Some(current) = versions.iter().filter(|v| v.retired_at.is_none()).max_by_key(|v| v.version) {
            tracing::info!(version = current.version, key = %current.key_id, "key-encryption key in force");
        }
        let index_versions = store.prepare_index_keys().map_err(StartError::IndexKeys)?;
        if let Some(current) = index_versions.iter().max_by_key(|v| v.version) {
            let reindexed = current.rewrapped_at.is_some();
            tracing::info!(version = current.version, key = %current.key_id, reindexed, "index key in force");
        }
        let identity = build_identity(&config, store.clone())?;
        let enforcement = Arc::new(Enforcement::new(store.clone(), opener, config.policy, config.harvest.clone()));
        watch_in_background(&enforcement);
        let tls =
            certs::server_config(&config.tls_cert, &config.tls_key, config.tls_minimum, Some(&config.client_auth))
                .map_err(StartError::Tls)?;
        let listener = TcpListener::bind(config.listen)
            .map_err(|cause| StartError::Listen { address: config.listen.to_string(), cause })?;
        let port = listener
            .local_addr()
            .map_err(|cause| StartError::Listen { address: config.listen.to_string(), cause })?
            .port();
        let config = Arc::new(config);
        let metrics = Arc::new(Metrics::default());
        let state = web::Data::new(AppState {
            config: config.clone(),
            identity,
            store: store.clone(),
            enforcement,
            metrics: metrics.clone(),
            // As many as the request threads: enough lines in flight to fill the writer's
            // groups, apart from the interactive requests.
            imports: ImportPool::start(config.request_threads),
        });
        let metrics = web::Data::from(metrics);
        let oidc = match config.oidc.clone() {
            Some(settings) => Some(
                crate::portal::oidc::OidcClient::start(settings, config.public_base_url.as_deref())
                    .map_err(StartError::Oidc)?,
            ),
            None => None,
        };
        let portal = web::Data::new(Portal::new(config.portal_idle, oidc));
        let workers = crate::config::cores();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(metrics.clone())
                .app_data(portal.clone())
                .wrap(middleware::from_fn(metrics::observe))
                .configure(crate::portal::routes)
                .configure(routes)
        })
        // Each worker's blocking threads do its requests' work, and a submission holds one
        // until its group commits. Tokio's default (hundreds per worker) let memory grow with
        // the number of clients: peak RSS 125 MB at 16 concurrent submissions, 700 MB at 256.
        // Beyond the bound, requests queue for a thread; eight per worker already keep the one
        // writer busy.
        .workers(workers)
        .worker_max_blocking_threads(config.request_threads.div_ceil(workers))
        .on_connect(read_client_certificate)
        .listen_rustls_0_23(listener, tls)
        .map_err(StartError::Serve)?
        .run();
        Ok(Application { server, store, port, first_run, config })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until the server is stopped (a signal, or its handle); then, the last request
    /// answered, signs a checkpoint of the audit log's tail.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        let store = self.store;
        let signed = actix_web::rt::task::spawn_blocking(move || store.sign_checkpoint_now()).await;
        match signed {
            Ok(Ok(())) => tracing::info!("stopped; the audit log's tail is signed"),
            Ok(Err(error)) => tracing::warn!(%error, "stopped; the audit log's tail could not be signed"),
            Err(_) => tracing::warn!("stopped; the audit log's tail could not be signed"),
        }
        served
    }
}

/// Declares the route table once: [`ROUTES`] lists it as data (the audit tests walk it, so a
/// route added without its expected audit events fails them) and [`routes`] registers it. Each
/// pattern answers other methods with 405; a path matching no pattern gets 404.
macro_rules! route_table {
    ($( $pattern:literal => [ $( $method:ident => $handler:path ),+ ] ),+ $(,)?) => {
        /// Every route: its pattern and methods, in the order they are matched.
        pub const ROUTES: &[(&str, &[&str])] = &[ $( ($pattern, &[ $( stringify!($method) ),+ ]) ),+ ];

        /// Registers [`ROUTES`].
        pub fn routes(config: &mut web::ServiceConfig) {
            $(
                config.service(
                    web::resource($pattern)
                        .app_data(RoutePattern($pattern))
                        $( .route(web::$method().to($handler)) )+
                        .default_service(web::to(system::method_not_allowed)),
                );
            )+
            config.default_service(web::to(system::unknown_endpoint));
        }
    };
}

// Order matters where patterns overlap: `/$validate` and `_search` are matched before `{id}`, so
// neither is read as a resource id, and `/Patient/{id}/$everything` before the generic paths.
route_table! {
    "/metadata" => [get => system::metadata],
    "/health" => [get => system::health],
    "/health/live" => [get => system::live],
    "/health/ready" => [get => system::health],
    "/metrics" => [get => system::prometheus],
    "/psychotherapy-records/schema" => [get => submission::schema],
    "/$validate" => [post => submission::validate],
    "/{type}/$validate" => [post => submission::validate],
    "/psychotherapy-records" => [post => submission::submit],
    "/psychotherapy-records/$import" => [post => import::import],
    "/AuditEvent" => [get => access_log::search],
    "/access-alerts" => [get => alerts::search],
    "/access-alerts/{id}/$clear" => [post => alerts::clear],
    "/Patient/{id}/$everything" => [get => search::everything],
    "/{type}/_search" => [get => search::search, post => search::search],
    "/{type}/{id}/_history/{vid}" => [get => read::vread],
    "/{type}/{id}/_history" => [get => read::history],
    "/{type}/{id}" => [get => read::read, put => write::update],
    "/{type}" => [get => search::search, post => write::create],
}
