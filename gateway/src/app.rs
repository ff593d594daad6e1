//! Start-up: the same path in `main` and in tests. `Application::build` checks keys, opens and
//! migrates the database, binds the TLS listener; `run_until_stopped` serves.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{middleware, web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::json;

use crate::audit::AuditSigner;
use crate::capability::capability_statement;
use crate::config::{Config, Mode};
use crate::crypto::{FileKek, Pseudonymizer, SecretKey};
use crate::db::{self, DatabaseUrl};
use crate::error::GatewayError;
use crate::identity::{Identity, IssuerKind, PeerCertificate};
use crate::metrics::{self, Metrics};
use crate::store::Store;
use crate::{access_log, fhir, http, submission};

/// What every handler shares.
pub struct AppState {
    pub config: Arc<Config>,
    pub identity: Identity,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub pool: db::Pool,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

pub struct Application {
    server: actix_web::dev::Server,
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
        let pki = certs::DevPki::ensure(&pki_dir).map_err(|e| StartError(format!("development PKI: {e}")))?;
        created |= pki.created;
    }
    for key in [&config.kek_file, &config.index_key_file] {
        if !key.exists() {
            SecretKey::generate_file(key).map_err(|e| StartError(e.to_string()))?;
            created = true;
        }
    }
    if !config.audit_signing_key.exists() {
        AuditSigner::generate_file(&config.audit_signing_key).map_err(StartError)?;
        created = true;
    }
    Ok(created)
}

/// The trusted token issuers of this configuration.
fn build_identity(config: &Config, pseudonyms: Pseudonymizer) -> Result<Identity, StartError> {
    let mut identity = Identity::new(&config.token_audience, pseudonyms);
    if let Some((issuer, jwks)) = &config.professional_issuer {
        identity.trust_jwks_file(issuer, IssuerKind::Professional, jwks).map_err(StartError)?;
    }
    if let Some((issuer, jwks)) = &config.citizen_issuer {
        identity.trust_jwks_file(issuer, IssuerKind::Citizen, jwks).map_err(StartError)?;
    }
    if let Some(key) = &config.development_issuer_key {
        identity.trust_development_issuer(key).map_err(StartError)?;
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

/// Opens the pool and applies the pending migrations (`vaitio migrate` and every start).
pub fn open_database(config: &Config) -> Result<(db::Pool, usize), StartError> {
    let pool = db::pool(&config.database, config.db_pool_size)
        .map_err(|e| StartError(format!("cannot open the database {}: {e}", config.database.redacted())))?;
    let mut conn =
        pool.get().map_err(|e| StartError(format!("cannot connect to {}: {e}", config.database.redacted())))?;
    let applied = db::migrate(&mut conn).map_err(StartError)?;
    Ok((pool, applied))
}

impl Application {
    pub fn build(config: Config) -> Result<Self, StartError> {
        let first_run = match config.mode {
            Mode::Development => prepare_development(&config)?,
            Mode::Production => false,
        };
        let kek = SecretKey::from_file(&config.kek_file).map_err(|e| StartError(e.to_string()))?;
        let index_key = SecretKey::from_file(&config.index_key_file).map_err(|e| StartError(e.to_string()))?;
        let (pool, applied) = open_database(&config)?;
        if applied > 0 {
            tracing::info!(applied, backend = config.database.backend_name(), "migrations applied");
        }
        let sqlite = matches!(config.database, DatabaseUrl::Sqlite(_));
        let pseudonyms = Pseudonymizer::new(index_key);
        let identity = build_identity(&config, pseudonyms.clone())?;
        let signer = AuditSigner::from_file(&config.audit_signing_key)
            .map_err(StartError)?
            .with_schedule(config.audit_checkpoint_entries, config.audit_checkpoint_millis);
        let store = Store::new(pool.clone(), Box::new(FileKek::new(kek)), pseudonyms, signer, sqlite);
        let tls =
            certs::server_config(&config.tls_cert, &config.tls_key, config.tls_minimum, Some(&config.client_auth))
                .map_err(|e| StartError(format!("TLS: {e}")))?;
        let listener = TcpListener::bind(config.listen)
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        let port = listener.local_addr().map_err(|e| StartError(e.to_string()))?.port();
        let config = Arc::new(config);
        let state = web::Data::new(AppState {
            config: config.clone(),
            identity,
            store,
            metrics: Arc::new(Metrics::default()),
            pool,
        });
        let workers = crate::config::cores();
        let server = HttpServer::new(move || {
            App::new().app_data(state.clone()).wrap(middleware::from_fn(metrics::observe)).configure(routes)
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
        .map_err(|e| StartError(format!("cannot serve TLS: {e}")))?
        .run();
        Ok(Application { server, port, first_run, config })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}

/// The pattern of the route a request matched, kept with the route so that metrics need not
/// match the path against the table a second time.
#[derive(Clone, Copy, Debug)]
pub struct RoutePattern(pub &'static str);

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
                        .default_service(web::to(fhir::method_not_allowed)),
                );
            )+
            config.default_service(web::to(unknown_endpoint));
        }
    };
}

// Order matters where patterns overlap: `/$validate` and `_search` are matched before `{id}`, so
// neither is read as a resource id, and `/Patient/{id}/$everything` before the generic paths.
route_table! {
    "/metadata" => [get => metadata],
    "/health" => [get => health],
    "/health/live" => [get => live],
    "/health/ready" => [get => health],
    "/metrics" => [get => prometheus],
    "/psychotherapy-records/schema" => [get => submission::schema],
    "/$validate" => [post => submission::validate],
    "/{type}/$validate" => [post => submission::validate],
    "/psychotherapy-records" => [post => submission::submit],
    "/AuditEvent" => [get => access_log::search],
    "/Patient/{id}/$everything" => [get => fhir::everything],
    "/{type}/_search" => [get => fhir::search, post => fhir::search],
    "/{type}/{id}/_history/{vid}" => [get => fhir::vread],
    "/{type}/{id}/_history" => [get => fhir::history],
    "/{type}/{id}" => [get => fhir::read, put => fhir::update],
    "/{type}" => [get => fhir::search, post => fhir::create],
}

async fn unknown_endpoint() -> Result<HttpResponse, GatewayError> {
    Err(GatewayError::UnknownEndpoint)
}

async fn metadata(request: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, GatewayError> {
    let params = http::query_pairs(&request);
    let output = http::negotiate(&request, &params)?;
    http::only_params(&params, &["mode"])?;
    if params.iter().any(|(name, value)| name == "mode" && value != "full") {
        return Err(GatewayError::BadRequest("only mode=full is supported".into()));
    }
    let base = http::base_url(&request, &state);
    let body = capability_statement(Some(&base)).to_string().into_bytes();
    Ok(http::fhir_json(StatusCode::OK, body, output))
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "pass"}))
}

/// Readiness: the database answers a query.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let database = web::block(move || store.ping()).await.map_err(GatewayError::from).and_then(|r| r);
    let (status, database_status) = match database {
        Ok(()) => (StatusCode::OK, "pass"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "fail"),
    };
    HttpResponse::build(status).json(json!({
        "status": database_status,
        "mode": match state.config.mode { Mode::Development => "development", Mode::Production => "production" },
        "checks": {"database": {"status": database_status, "backend": state.config.database.backend_name()}}
    }))
}

async fn prometheus(state: web::Data<AppState>) -> HttpResponse {
    let store = state.store.clone();
    let up = matches!(web::block(move || store.ping()).await, Ok(Ok(())));
    let pool = state.pool.state();
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(state.metrics.render(
        up,
        pool.connections,
        pool.idle_connections,
        state.store.writer_stats(),
    ))
}
