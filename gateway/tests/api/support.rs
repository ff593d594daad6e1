//! Shared test helpers: a gateway started in-process on a free port, on SQLite or on a fresh
//! PostgreSQL database, and a client that trusts its development CA.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread;

use diesel::{Connection, RunQueryDsl};
use identity::Claims;
use serde_json::{json, Value};
use vaitio::config::Config;
use vaitio::Application;
use vaitio_conformance::client::{Answer, Client, Target};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// The administrative URL of the throwaway PostgreSQL cluster the test script started.
pub fn postgres_admin_url() -> Option<String> {
    std::env::var("VAITIO_TEST_POSTGRES_URL").ok().filter(|url| !url.is_empty())
}

/// Under CI a missing PostgreSQL is a failure; on a developer's machine the PostgreSQL half of
/// each test is skipped with a note (run ./scripts/test to get one).
pub fn postgres_or_skip() -> Option<String> {
    match postgres_admin_url() {
        Some(url) => Some(url),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true but VAITIO_TEST_POSTGRES_URL is not set: PostgreSQL tests must run in CI")
        }
        None => {
            eprintln!(
                "VAITIO_TEST_POSTGRES_URL not set: skipping the PostgreSQL half (./scripts/test starts a cluster)"
            );
            None
        }
    }
}

/// A fresh database on the test cluster; returns its URL and name.
pub fn fresh_postgres_database(admin_url: &str) -> (String, String) {
    let name = format!("vaitio_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = diesel::pg::PgConnection::establish(admin_url).expect("connect to the test cluster");
    diesel::sql_query(format!("CREATE DATABASE {name}")).execute(&mut admin).expect("create a test database");
    let base = admin_url.rsplit_once('/').map(|(base, _)| base).unwrap_or(admin_url);
    (format!("{base}/{name}"), name)
}

pub struct TestGateway {
    pub dir: tempfile::TempDir,
    pub base_url: String,
    pub client: Client,
    pub config: Config,
    pub backend: Backend,
    /// The PostgreSQL database name, for pg_dump.
    pub database: Option<String>,
    server: Option<actix_web::dev::ServerHandle>,
    thread: Option<thread::JoinHandle<()>>,
}

impl TestGateway {
    /// Starts a development-mode gateway; `None` only for PostgreSQL outside CI without a cluster.
    pub fn spawn(backend: Backend) -> Option<TestGateway> {
        Self::spawn_with(backend, |_| {})
    }

    pub fn spawn_with(backend: Backend, adjust: impl FnOnce(&mut Config)) -> Option<TestGateway> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config::development(dir.path(), "127.0.0.1:0".parse().unwrap());
        config.db_pool_size = 4;
        // Every test gateway writes its disk reserve; a megabyte is enough to be real.
        config.disk_reserve = 1 << 20;
        let mut database = None;
        if backend == Backend::Postgres {
            let (url, name) = fresh_postgres_database(&postgres_or_skip()?);
            config.database = store::db::DatabaseUrl::parse(&url).unwrap();
            database = Some(name);
        }
        adjust(&mut config);
        let (port, server, thread) = start(config.clone());
        let base_url = format!("https://localhost:{port}");
        let mut gateway = TestGateway {
            client: Client::new(Target {
                base_url: base_url.clone(),
                ca: Some(dir.path().join("pki/ca.pem")),
                ..Target::default()
            })
            .unwrap(),
            dir,
            base_url,
            config,
            backend,
            database,
            server: Some(server),
            thread: Some(thread),
        };
        if gateway.config.development_issuer_key.is_some() {
            gateway.client = gateway.professional(ORG, THERAPIST, "psychotherapist");
        }
        Some(gateway)
    }

    /// A second gateway node on this one's database, sharing its keys and PKI: what a
    /// deployment runs behind a load balancer. Use this node's helpers for certificates and
    /// tokens, and [`TestGateway::on_node`] to point their clients at the second node.
    pub fn second_node(&self) -> TestGateway {
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..self.config.clone() };
        let (port, server, thread) = start(config.clone());
        let base_url = format!("https://localhost:{port}");
        TestGateway {
            client: Self::on_node(&self.client, &base_url),
            dir: tempfile::tempdir().expect("temp dir"),
            base_url,
            config,
            backend: self.backend,
            database: self.database.clone(),
            server: Some(server),
            thread: Some(thread),
        }
    }

    /// `client`, talking to the node at `base_url` instead.
    pub fn on_node(client: &Client, base_url: &str) -> Client {
        Client::new(Target { base_url: base_url.to_owned(), ..client.target().clone() }).unwrap()
    }

    /// A connection to this gateway's database, as an operator (or an attacker) would open one.
    pub fn database(&self) -> diesel::r2d2::PooledConnection<store::db::Manager> {
        store::db::pool(&self.config.database, 1).unwrap().get().unwrap()
    }

    /// How many resources of `resource_type` the database holds, read as an operator would: a
    /// search may not ask this (it must name what it looks for), and "nothing was stored" is a
    /// fact about the database.
    pub fn stored(&self, resource_type: &str) -> i64 {
        self.count(&format!("SELECT COUNT(*) AS n FROM resource_heads WHERE resource_type = '{resource_type}'"))
    }

    /// What `sql` (which names its one column `n`) counts in the database, read as an operator.
    pub fn count(&self, sql: &str) -> i64 {
        #[derive(diesel::QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        self.query::<Count>(sql).first().map_or(0, |c| c.n)
    }

    /// The rows `sql` selects in the database, on either backend, read as an operator would.
    pub fn query<T>(&self, sql: &str) -> Vec<T>
    where
        T: diesel::QueryableByName<diesel::sqlite::Sqlite> + diesel::QueryableByName<diesel::pg::Pg> + 'static,
    {
        let mut conn = self.database();
        match &mut *conn {
            store::db::DbConnection::Sqlite(c) => diesel::RunQueryDsl::load(diesel::sql_query(sql), c),
            store::db::DbConnection::Postgres(c) => diesel::RunQueryDsl::load(diesel::sql_query(sql), c),
        }
        .unwrap()
    }

    /// Verifies the audit log in the database against this deployment's checkpoint key.
    pub fn verify_audit_log(&self) -> Result<audit_log::Verified, audit_log::Problem> {
        let key = store::audit::AuditSigner::from_file(&self.config.audit_signing_key).unwrap().verifying_key().clone();
        store::audit::verify_database(&store::db::pool(&self.config.database, 4).unwrap(), &key).unwrap()
    }

    /// Sends `request` (raw HTTP/1.1, as written) over TLS with the client certificate `cert`,
    /// and returns everything the server answered until it closed the connection or stopped for
    /// a second: for requests an HTTP library would not write (a header twice, bad bytes).
    pub fn raw(&self, cert: Option<&(PathBuf, PathBuf)>, request: &[u8]) -> String {
        use openssl::ssl::{SslConnector, SslFiletype, SslMethod};
        use std::io::{Read, Write};
        let mut builder = SslConnector::builder(SslMethod::tls_client()).unwrap();
        builder.set_ca_file(self.ca()).unwrap();
        if let Some((cert, key)) = cert {
            builder.set_certificate_chain_file(cert).unwrap();
            builder.set_private_key_file(key, SslFiletype::PEM).unwrap();
        }
        let port = self.base_url.rsplit(':').next().unwrap();
        let tcp = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        tcp.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        let mut tls = builder.build().connect("localhost", tcp).unwrap();
        tls.write_all(request).unwrap();
        let mut answer = Vec::new();
        let mut buffer = [0u8; 8192];
        loop {
            match tls.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => answer.extend_from_slice(&buffer[..n]),
            }
        }
        String::from_utf8_lossy(&answer).into_owned()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pki").join("ca.pem")
    }

    /// An organisation certificate from the gateway's development CA, issued once per folder.
    pub fn org_certificate(&self, org: &str) -> (PathBuf, PathBuf) {
        self.certificate(org, certs::Validity::default(), org)
    }

    /// A certificate with the given validity, kept under `label`.
    pub fn certificate(&self, org: &str, validity: certs::Validity, label: &str) -> (PathBuf, PathBuf) {
        let out = self.dir.path().join("orgs").join(label);
        if !out.join("cert.pem").exists() {
            let pki = self.dir.path().join("pki");
            let ca = certs::CertificateAuthority::load(&pki).unwrap();
            let issued =
                ca.issue_org(&certs::OrganisationOid::parse(org).unwrap(), "Test Organisation", validity).unwrap();
            ca.record(&pki, &issued).unwrap();
            issued.write_to(&out, &ca).unwrap();
        }
        (out.join("cert.pem"), out.join("key.pem"))
    }

    /// Development-issuer claims for `role`, bound to `cert` when given.
    pub fn claims(&self, role: &str, org: Option<&str>, sub: &str, cert: Option<&std::path::Path>) -> Claims {
        let mut claims = identity::development_claims(&self.config.token_audience, sub, role, 600);
        claims.org = org.map(str::to_owned);
        if let Some(cert) = cert {
            let der = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap()).unwrap().to_der().unwrap();
            claims.cnf = Some(identity::Confirmation { x5t_s256: Some(certs::thumbprint_sha256(&der)) });
        }
        claims
    }

    pub fn token(&self, claims: &Claims) -> String {
        identity::mint_development_token(self.config.development_issuer_key.as_ref().unwrap(), claims).unwrap()
    }

    /// A client on a connection with `cert` (when given) sending `token` (when given).
    pub fn client_with(&self, cert: Option<(PathBuf, PathBuf)>, token: Option<String>) -> Client {
        let (cert, key) = match cert {
            Some((cert, key)) => (Some(cert), Some(key)),
            None => (None, None),
        };
        Client::new(Target { base_url: self.base_url.clone(), ca: Some(self.ca()), cert, key, token }).unwrap()
    }

    /// A professional of `org` with the organisation's certificate and a token bound to it.
    pub fn professional(&self, org: &str, practitioner: &str, role: &str) -> Client {
        let cert = self.org_certificate(org);
        let token = self.token(&self.claims(role, Some(org), practitioner, Some(&cert.0)));
        self.client_with(Some(cert), Some(token))
    }

    /// The certificates and key the conformance suite's identity cases need: the development
    /// issuer's key, and an expired, a not-yet-valid and a revoked certificate of this CA.
    pub fn refused_identities(&self) -> vaitio_conformance::identity::IdentityOptions {
        let expired = self.certificate(ORG, certs::Validity { start_days: -30, days: 10 }, "expired");
        let not_yet_valid = self.certificate(ORG, certs::Validity { start_days: 10, days: 30 }, "not-yet-valid");
        let revoked = self.certificate(ORG, certs::Validity::default(), "revoked");
        self.revoke(&revoked.0);
        vaitio_conformance::identity::IdentityOptions {
            issuer_key: self.config.development_issuer_key.clone(),
            expired: Some(expired),
            not_yet_valid: Some(not_yet_valid),
            revoked: Some(revoked),
            allows_tls12: false,
        }
    }

    /// Revokes a certificate of the development CA; the gateway reads the new CRL at once.
    pub fn revoke(&self, cert: &std::path::Path) {
        let pki = self.dir.path().join("pki");
        let serial = openssl::x509::X509::from_pem(&std::fs::read(cert).unwrap())
            .unwrap()
            .serial_number()
            .to_bn()
            .unwrap()
            .to_hex_str()
            .unwrap()
            .to_string();
        certs::CertificateAuthority::load(&pki).unwrap().revoke(&pki, &serial).unwrap();
    }

    /// A patient with a citizen token and no client certificate.
    pub fn patient(&self, hetu: &str) -> Client {
        self.client_with(None, Some(self.token(&self.claims("patient", None, hetu, None))))
    }

    pub fn get(&self, path: &str) -> Answer {
        self.client.get(path).unwrap()
    }

    /// The service's operator: an administrator of the clinic's organisation.
    pub fn operator(&self) -> Client {
        self.professional(ORG, "operator-1", "administrator")
    }

    /// `GET /metrics`, as the operator (the metrics are for administrators alone).
    pub fn metrics(&self) -> String {
        self.operator().get("/metrics").unwrap().text()
    }

    pub fn post(&self, path: &str, body: &Value) -> Answer {
        self.client.post_json(path, body).unwrap()
    }

    pub fn put(&self, path: &str, body: &Value, if_match: Option<&str>) -> Answer {
        self.client.put_json(path, body, if_match).unwrap()
    }

    /// Creates a resource and returns its id, failing the test on anything but 201.
    pub fn create(&self, body: &Value) -> String {
        let resource_type = body["resourceType"].as_str().unwrap();
        let answer = self.post(&format!("/{resource_type}"), body);
        assert_eq!(answer.status, 201, "create {resource_type}: {}", answer.text());
        answer.json().unwrap()["id"].as_str().unwrap().to_owned()
    }
}

/// Runs a gateway on a thread of its own; returns its port, its handle and the thread.
fn start(config: Config) -> (u16, actix_web::dev::ServerHandle, thread::JoinHandle<()>) {
    let (sender, receiver) = mpsc::channel();
    let thread = thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            match Application::build(config) {
                Ok(app) => {
                    let _ = sender.send(Ok((app.port(), app.handle())));
                    let _ = app.run_until_stopped().await;
                }
                Err(error) => {
                    let _ = sender.send(Err(error.to_string()));
                }
            }
        });
    });
    let (port, server) = receiver.recv().expect("the gateway thread answers").expect("the gateway starts");
    (port, server, thread)
}

impl TestGateway {
    /// Stops the gateway and starts it again on the same folder and database (a new port):
    /// what survives a restart is what was stored, not what was in memory.
    pub fn restart(&mut self) {
        self.stop();
        let config = Config { listen: "127.0.0.1:0".parse().unwrap(), ..self.config.clone() };
        let (port, server, thread) = start(config);
        self.base_url = format!("https://localhost:{port}");
        self.client = Self::on_node(&self.client, &self.base_url);
        self.server = Some(server);
        self.thread = Some(thread);
    }

    /// The database as the `vaitio` commands take it (`--database-url`).
    pub fn database_url(&self) -> String {
        match &self.config.database {
            store::db::DatabaseUrl::Sqlite(path) => path.display().to_string(),
            store::db::DatabaseUrl::Postgres(url) => url.clone(),
        }
    }

    /// Stops the gateway gracefully, as a signal would, and waits until it has stopped.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            // The server runs on its own thread's runtime; the stop command only needs a
            // runtime to be sent from.
            actix_web::rt::System::new().block_on(server.stop(true));
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs a test body once on SQLite and once on PostgreSQL.
macro_rules! on_both_backends {
    ($(fn $name:ident($gateway:ident) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;

                #[test]
                fn sqlite() {
                    let $gateway = $crate::support::TestGateway::spawn($crate::support::Backend::Sqlite).unwrap();
                    $body
                }

                #[test]
                fn postgres() {
                    if let Some($gateway) = $crate::support::TestGateway::spawn($crate::support::Backend::Postgres) {
                        $body
                    }
                }
            }
        )*
    };
}
pub(crate) use on_both_backends;

pub const ORG: &str = "1.2.246.10.12345678.10.1";
pub const OTHER_ORG: &str = "1.2.246.10.87654321.10.1";
pub const THERAPIST: &str = "10012345678";
pub const HETU: &str = "131052-308T";
pub const FAMILY: &str = "Virtanenxq";
pub const GIVEN: &str = "Ainoxq";
pub const NOTE: &str = "Patient described recurring nightmares about the lake house";

pub fn patient(hetu: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "identifier": [{"use": "official", "system": "urn:oid:1.2.246.21", "value": hetu}],
        "name": [{"family": FAMILY, "given": [GIVEN]}],
        "gender": "female",
        "birthDate": "1952-10-13"
    })
}

pub fn encounter(patient_id: &str, start: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "identifier": [{"use": "official", "system": "urn:ietf:rfc:3986", "value": "urn:oid:1.2.246.10.12345678.10.1.77.1"}],
        "subject": {"reference": format!("Patient/{patient_id}")},
        "period": {"start": start, "end": start}
    })
}

pub fn note_composition(patient_id: &str, note: &str) -> Value {
    json!({
        "resourceType": "Composition",
        "meta": {"security": [
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSYTHPN"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ]},
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4", "display": "Consult note"}]},
        "subject": {"reference": format!("Patient/{patient_id}")},
        "date": "2026-03-02T14:00:00+02:00",
        "author": [{"display": "Therapist"}],
        "title": "Psychotherapy session note",
        "section": [{"title": "Note", "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{note}</div>")}}]
    })
}

/// The contract's example record as a document Bundle (fresh ids), as an EMR that speaks FHIR
/// would send it to `POST /Bundle`.
pub fn example_document() -> Value {
    use fhir_profiles::record::{parse_record, RecordLimits, EXAMPLE_V1};
    use fhir_profiles::translate::{translate, DocumentIds};
    let limits = RecordLimits { now: chrono::Utc::now().fixed_offset(), max_note_bytes: 64 * 1024 };
    let checked = parse_record(EXAMPLE_V1.as_bytes(), &limits).unwrap();
    let ids = DocumentIds::derive(&checked, |_| uuid::Uuid::new_v4().to_string());
    translate(&checked, &ids, "2026-03-02T15:00:00+02:00")
}
