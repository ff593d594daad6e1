//! `vaitio-bench`: a load generator for a running development gateway. It makes its own
//! organisation certificate (from the gateway's development CA) and tokens (with the development
//! issuer's key), runs a scenario at a fixed concurrency over HTTPS with mTLS, and prints
//! requests/s, latency percentiles, errors and the gateway's peak RSS, as text and as one line of
//! JSON. A benchmark: it asserts nothing about time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;
use vaitio_conformance::case::{temporary_hetu, temporary_hetu_number, test_patient};
use vaitio_conformance::client::{Client, ClientError, Target};

/// Why the benchmark could not run, or did not run cleanly.
#[derive(Debug, thiserror::Error)]
enum BenchError {
    #[error("vaitio-bench talks to loopback addresses only")]
    NotLoopback,
    #[error("development issuer key: {0}")]
    IssuerKeyFile(#[source] std::io::Error),
    #[error("the development CA in {}: {source}", pki.display())]
    Ca { pki: PathBuf, source: certs::CertsError },
    /// The data the scenario reads could not be made: what the gateway answered.
    #[error("setting up: {0}")]
    Setup(String),
    #[error("some requests failed")]
    RequestsFailed,
    #[error(transparent)]
    Certs(#[from] certs::CertsError),
    #[error(transparent)]
    Token(#[from] jsonwebtoken::errors::Error),
    #[error(transparent)]
    OpenSsl(#[from] openssl::error::ErrorStack),
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Scenario {
    /// Reads by id on kept-alive connections, one token per worker (verified once, then cached).
    Read,
    /// Reads by id on kept-alive connections with a new token on every request: each request
    /// pays a signature verification.
    ReadFreshToken,
    /// Reads by id, each on a new connection: each request pays a TLS 1.3 handshake with a
    /// client certificate, the certificate's parsing and the token's verification.
    Handshake,
    /// Searches returning `--page` resources of one patient, through the enforcement point.
    Search,
    /// Submits distinct generated psychotherapy records (the example-sized record of the input
    /// contract) to POST /psychotherapy-records: translation, validation, encryption, storage.
    Ingest,
    /// A working day's mix, for soak runs: of every ten requests, two submissions, three
    /// searches (a page of `--page` encounters) and five reads.
    Mixed,
    /// The patient portal, signed in (one session per worker): a patient with 200 documents and
    /// 2,000 access-log entries; requests alternate between a page of the documents list and a
    /// page of the access log, and each has its own figures.
    Portal,
}

impl Scenario {
    /// What the `n`th request of the scenario does.
    fn step(self, n: usize) -> Step {
        match (self, n % 10) {
            (Scenario::Ingest, _) | (Scenario::Mixed, 0 | 1) => Step::Submit,
            (Scenario::Search, _) | (Scenario::Mixed, 2..=4) => Step::Search,
            (Scenario::Portal, step) if step % 2 == 0 => Step::PortalDocuments,
            (Scenario::Portal, _) => Step::PortalAccessLog,
            _ => Step::Read,
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    Read,
    Search,
    Submit,
    PortalDocuments,
    PortalAccessLog,
}

/// The portal scenario's patient: documents and access-log entries.
const PORTAL_DOCUMENTS: usize = 200;
const PORTAL_ACCESSES: usize = 2_000;

#[derive(Parser)]
#[command(name = "vaitio-bench", about = "Load generator for a development Vaitio gateway (loopback only)")]
struct Args {
    #[arg(long, default_value = "https://localhost:8443")]
    base_url: String,
    /// The gateway's data folder: its pki/ (CA and key) and keys/dev-issuer.pem are used to make
    /// this tool's certificate and tokens.
    #[arg(long, default_value = "vaitio-data")]
    data_dir: PathBuf,
    #[arg(long, value_enum, default_value = "read")]
    scenario: Scenario,
    #[arg(long, default_value_t = 10_000)]
    requests: usize,
    /// Run for this many seconds instead of a number of requests (soak runs).
    #[arg(long)]
    seconds: Option<u64>,
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Resources per search page (search scenario).
    #[arg(long, default_value_t = 100)]
    page: usize,
    /// The gateway's process id, for its peak RSS (VmHWM).
    #[arg(long)]
    gateway_pid: Option<u32>,
    #[arg(long, default_value = "urn:vaitio:development-issuer")]
    issuer: String,
    #[arg(long, default_value = "vaitio-development-1")]
    kid: String,
    #[arg(long, default_value = "vaitio")]
    audience: String,
    #[arg(long, default_value = "1.2.246.10.12345678.10.1")]
    org: String,
    /// Before measuring, submit this many distinct records, each of its own patient, so that a
    /// scenario is measured over a database of that size (the fill is not measured).
    #[arg(long, default_value_t = 0)]
    fill: usize,
    /// Ingest: submit the records of this NDJSON file (for example from `vaitio dev generate`),
    /// one a request, rather than generated example-sized records; to compare with importing
    /// the same file.
    #[arg(long, value_name = "FILE")]
    records_file: Option<PathBuf>,
}

struct Minter {
    key: EncodingKey,
    header: Header,
    claims: serde_json::Value,
}

impl Minter {
    fn new(args: &Args, cert: &Path) -> Result<Minter, BenchError> {
        let key_pem = std::fs::read(args.data_dir.join("keys/dev-issuer.pem")).map_err(BenchError::IssuerKeyFile)?;
        let key = EncodingKey::from_ec_pem(&key_pem)?;
        let der = openssl::x509::X509::from_pem(&std::fs::read(cert)?).and_then(|c| c.to_der())?;
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(args.kid.clone());
        let claims = json!({
            "iss": args.issuer, "aud": args.audience, "sub": "10012345678", "role": "psychotherapist",
            "org": args.org, "purpose": "TREAT", "cnf": {"x5t#S256": certs::thumbprint_sha256(&der)}
        });
        Ok(Minter { key, header, claims })
    }

    fn mint(&self, nonce: usize) -> Result<String, BenchError> {
        self.mint_claims(self.claims.clone(), nonce)
    }

    /// A token of the service's operator (an administrator), who alone reads `/metrics`.
    fn mint_operator(&self) -> Result<String, BenchError> {
        let mut claims = self.claims.clone();
        claims["sub"] = json!("bench-operator");
        claims["role"] = json!("administrator");
        self.mint_claims(claims, usize::MAX)
    }

    fn mint_claims(&self, mut claims: serde_json::Value, nonce: usize) -> Result<String, BenchError> {
        let now = chrono::Utc::now().timestamp();
        claims["iat"] = json!(now);
        claims["exp"] = json!(now + 3600);
        claims["jti"] = json!(format!("bench-{nonce}"));
        Ok(jsonwebtoken::encode(&self.header, &claims, &self.key)?)
    }
}

/// The `n`th generated record: the input contract's example, with its own record id, patient
/// and session.
fn record(org: &str, run: i64, n: usize) -> serde_json::Value {
    let day = 1 + n % 28;
    json!({
        "schema": "vaitio.psychotherapy-record/v1",
        "record_id": format!("BENCH-{run}-{n}"),
        "organization": { "oid": org, "name": "Benchmark Therapy Clinic" },
        "patient": { "hetu": temporary_hetu_number(n as u128), "given": ["Testi"], "family": "Potilas", "gender": "unknown" },
        "therapist": { "terhikki": "10012345678", "given": ["Anna"], "family": "Korhonen", "profession": "psychotherapist" },
        "service_event": { "oid": format!("{org}.77.{n}"), "start": "2026-01-10", "end": null },
        "session": { "start": format!("2026-03-{day:02}T14:00:00+02:00"), "minutes": 45, "modality": "individual", "setting": "in_person" },
        "diagnoses": [ { "icd10": "F32.1", "primary": true } ],
        "assessments": [ { "instrument": "PHQ-9", "score": (n % 28) as i64, "date": format!("2026-03-{day:02}") } ],
        "note": { "kind": "progress", "text": "The patient reports lower mood this week and poorer sleep. We returned to the themes of the previous session and practised the agreed exercise together. Homework was reviewed; the patient had completed about half of it and described what got in the way." },
        "risk": { "suicide": "low" },
        "plan": "Continue weekly sessions; review the PHQ-9 in four weeks."
    })
}

fn peak_rss_mb(pid: Option<u32>) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1000.0
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("vaitio-bench: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), BenchError> {
    if !(args.base_url.starts_with("https://localhost")
        || args.base_url.starts_with("https://127.")
        || args.base_url.starts_with("https://[::1]"))
    {
        return Err(BenchError::NotLoopback);
    }
    // This tool's own organisation certificate, from the gateway's development CA.
    let work = tempfile::tempdir()?;
    let pki = args.data_dir.join("pki");
    let ca = certs::CertificateAuthority::load(&pki).map_err(|source| BenchError::Ca { pki: pki.clone(), source })?;
    let oid = certs::OrganisationOid::parse(&args.org)?;
    ca.issue_org(&oid, "vaitio-bench", certs::Validity::default())
        .and_then(|issued| issued.write_to(work.path(), &ca))?;
    let cert = work.path().join("cert.pem");
    let minter = Minter::new(&args, &cert)?;
    let base = Client::new(Target {
        base_url: args.base_url.clone(),
        ca: Some(pki.join("ca.pem")),
        cert: Some(cert.clone()),
        key: Some(work.path().join("key.pem")),
        token: Some(minter.mint(0)?),
    })?;

    if args.fill > 0 {
        fill(&base, &args)?;
    }
    // Data to read: one patient, and for searches a page's worth of its encounters.
    let patient = base.post_json("/Patient", &test_patient(&temporary_hetu()))?;
    if patient.status != 201 {
        return Err(BenchError::Setup(format!(
            "creating a patient answered {}: {}",
            patient.status,
            patient.text_excerpt()
        )));
    }
    let patient_id = patient.json()?["id"].as_str().unwrap_or_default().to_owned();
    if matches!(args.scenario, Scenario::Search | Scenario::Mixed) {
        for day in 0..args.page {
            let encounter = json!({"resourceType": "Encounter", "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/{patient_id}")},
                "period": {"start": format!("2026-01-01T10:{:02}:00Z", day % 60), "end": format!("2026-01-01T10:{:02}:00Z", day % 60)}});
            let answer = base.post_json("/Encounter", &encounter)?;
            if answer.status != 201 {
                return Err(BenchError::Setup(answer.text_excerpt()));
            }
        }
    }
    let sessions = match args.scenario {
        Scenario::Portal => portal_setup(&base, &args)?,
        _ => Vec::new(),
    };
    let read = format!("/Patient/{patient_id}");
    let search = format!("/Encounter?patient={patient_id}&_count={}", args.page);
    // Made ahead for a fixed number of requests, so that making them is not measured; made as
    // they go for a run of a given time.
    let run = chrono::Utc::now().timestamp_millis();
    let records: Vec<Vec<u8>> = match (args.scenario, args.seconds, &args.records_file) {
        (Scenario::Ingest, None, Some(file)) => std::fs::read(file)?
            .split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .take(args.requests)
            .map(<[u8]>::to_vec)
            .collect(),
        (Scenario::Ingest | Scenario::Mixed, None, _) => {
            (0..args.requests).map(|n| record(&args.org, run, n).to_string().into_bytes()).collect()
        }
        _ => Vec::new(),
    };
    let total = if args.seconds.is_some() { usize::MAX } else { args.requests };
    let deadline = args.seconds.map(|seconds| Instant::now() + std::time::Duration::from_secs(seconds));
    let tokens: Vec<String> = match args.scenario {
        Scenario::ReadFreshToken => (1..=args.requests).map(|n| minter.mint(n)).collect::<Result<_, _>>()?,
        _ => Vec::new(),
    };

    let progress = match args.seconds {
        Some(_) => indicatif::ProgressBar::hidden(),
        None => indicatif::ProgressBar::new(args.requests as u64),
    };
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {wide_bar} {pos}/{len} {per_sec} eta {eta}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let operator = base.with_token(minter.mint_operator()?);
    let audit_before = audit_appended(&operator);
    let started = Instant::now();
    let timed: Vec<(Step, u64)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..args.concurrency)
            .map(|worker| {
                let (next, errors, progress, tokens, records) =
                    (next.clone(), errors.clone(), progress.clone(), &tokens, &records);
                let cookie = sessions.get(worker).cloned().unwrap_or_default();
                let (read, search, org) = (&read, &search, &args.org);
                let mut client = base.reconnect();
                let scenario = args.scenario;
                scope.spawn(move || {
                    let mut mine = Vec::new();
                    loop {
                        let n = next.fetch_add(1, Ordering::Relaxed);
                        if n >= total || deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                            break;
                        }
                        match scenario {
                            Scenario::Handshake => client = client.reconnect(),
                            Scenario::ReadFreshToken => client = client.with_token(tokens[n].clone()),
                            _ => {}
                        }
                        let clock = Instant::now();
                        let step = scenario.step(n);
                        let portal = |path: String| {
                            let answer = client.send("GET", &path, &[("Cookie", cookie.as_str())], None);
                            matches!(answer, Ok(answer) if answer.status == 200)
                        };
                        let ok = match step {
                            Step::Submit => {
                                let made;
                                let body = match records.get(n) {
                                    Some(body) => body,
                                    None => {
                                        made = record(org, run, n).to_string().into_bytes();
                                        &made
                                    }
                                };
                                matches!(
                                    client.send("POST", "/psychotherapy-records", &[("Content-Type", "application/json")], Some(body)),
                                    Ok(answer) if answer.status == 201
                                )
                            }
                            Step::Search => matches!(client.get(search), Ok(answer) if answer.status == 200),
                            Step::Read => matches!(client.get(read), Ok(answer) if answer.status == 200),
                            Step::PortalDocuments => {
                                portal(format!("/portal/documents?page={}", 1 + (n / 2) % (PORTAL_DOCUMENTS / 20)))
                            }
                            Step::PortalAccessLog => portal(format!("/portal/access-log?page={}", 1 + (n / 2) % 100)),
                        };
                        mine.push((step, clock.elapsed().as_micros() as u64));
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        progress.inc(1);
                    }
                    mine
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    let seconds = started.elapsed().as_secs_f64();
    progress.finish_and_clear();
    if args.scenario == Scenario::Portal {
        for (step, page) in [(Step::PortalDocuments, "documents list"), (Step::PortalAccessLog, "access log")] {
            let mut these: Vec<u64> = timed.iter().filter(|(s, _)| *s == step).map(|(_, t)| *t).collect();
            these.sort_unstable();
            println!(
                "portal {page}: {} requests, {:.0}/s, p50 {:.2} ms, p99 {:.2} ms",
                these.len(),
                these.len() as f64 / seconds,
                percentile(&these, 0.50),
                percentile(&these, 0.99)
            );
        }
    }
    let latencies: Vec<u64> = timed.into_iter().map(|(_, t)| t).collect();
    // What the audit log grew by, per request (from the gateway's own counters; other clients'
    // requests meanwhile would count too).
    let audit = audit_before.zip(audit_appended(&operator)).map(|((entries0, bytes0), (entries1, bytes1))| {
        let n = latencies.len().max(1) as f64;
        ((entries1 - entries0) as f64 / n, (bytes1 - bytes0) as f64 / n)
    });
    let mut sorted = latencies;
    sorted.sort_unstable();
    let per_second = sorted.len() as f64 / seconds;
    let rss = peak_rss_mb(args.gateway_pid);
    let scenario = format!("{:?}", args.scenario).to_lowercase();
    println!(
        "{scenario}: {} requests at concurrency {} in {seconds:.2} s: {per_second:.0}/s, p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, {} errors, gateway peak RSS {}",
        sorted.len(),
        args.concurrency,
        percentile(&sorted, 0.50),
        percentile(&sorted, 0.95),
        percentile(&sorted, 0.99),
        errors.load(Ordering::Relaxed),
        rss.map(|mb| format!("{mb:.1} MB")).unwrap_or_else(|| "unknown (give --gateway-pid)".into()),
    );
    if let Some((entries, bytes)) = audit {
        println!(
            "audit log: {entries:.2} entries and {bytes:.0} bytes per request; database filled with {} records",
            args.fill
        );
    }
    println!(
        "{}",
        json!({
            "scenario": scenario, "requests": sorted.len(), "concurrency": args.concurrency, "seconds": seconds,
            "per_second": per_second, "p50_ms": percentile(&sorted, 0.50), "p95_ms": percentile(&sorted, 0.95),
            "p99_ms": percentile(&sorted, 0.99), "errors": errors.load(Ordering::Relaxed), "gateway_peak_rss_mb": rss,
            "page": matches!(args.scenario, Scenario::Search | Scenario::Mixed).then_some(args.page),
            "fill": args.fill,
            "audit_entries_per_request": audit.map(|(entries, _)| entries),
            "audit_bytes_per_request": audit.map(|(_, bytes)| bytes),
        })
    );
    if errors.load(Ordering::Relaxed) > 0 {
        return Err(BenchError::RequestsFailed);
    }
    Ok(())
}

/// The gateway's audit counters: entries and bytes appended so far (`GET /metrics`).
fn audit_appended(client: &Client) -> Option<(u64, u64)> {
    let metrics = client.get("/metrics").ok()?.text();
    let value =
        |name: &str| -> Option<u64> { metrics.lines().find_map(|line| line.strip_prefix(name)?.trim().parse().ok()) };
    Some((value("vaitio_audit_entries_total ")?, value("vaitio_audit_bytes_total ")?))
}

/// Submits `--fill` distinct records at the benchmark's concurrency, each of its own patient.
fn fill(base: &Client, args: &Args) -> Result<(), BenchError> {
    let started = Instant::now();
    let run = chrono::Utc::now().timestamp_millis();
    let next = AtomicUsize::new(0);
    let failed = AtomicUsize::new(0);
    let progress = indicatif::ProgressBar::new(args.fill as u64);
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency {
            let client = base.reconnect();
            let (next, failed, progress) = (&next, &failed, &progress);
            scope.spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= args.fill {
                    break;
                }
                // Numbered past the measured scenario's records, so that neither repeats the other.
                let body = record(&args.org, run, 1_000_000 + n).to_string().into_bytes();
                let sent =
                    client.send("POST", "/psychotherapy-records", &[("Content-Type", "application/json")], Some(&body));
                if !matches!(sent, Ok(answer) if answer.status == 201) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                progress.inc(1);
            });
        }
    });
    progress.finish_and_clear();
    eprintln!("filled the database with {} records in {:.1} s", args.fill, started.elapsed().as_secs_f64());
    match failed.load(Ordering::Relaxed) {
        0 => Ok(()),
        n => Err(BenchError::Setup(format!("{n} of the {} fill records were refused", args.fill))),
    }
}

/// The portal scenario's patient: 200 documents submitted for one synthetic patient, 2,000
/// reads of their data by a professional (each an access-log entry), and one signed-in session
/// per worker through the development sign-in. Returns each worker's `Cookie` header.
fn portal_setup(base: &Client, args: &Args) -> Result<Vec<String>, BenchError> {
    let started = Instant::now();
    let run = chrono::Utc::now().timestamp_millis();
    let hetu = temporary_hetu();
    for n in 0..PORTAL_DOCUMENTS {
        let mut body = record(&args.org, run, 2_000_000 + n);
        body["patient"]["hetu"] = json!(hetu);
        body["service_event"]["oid"] = json!(format!("{}.77.{}", args.org, n / 20));
        let answer = base.send(
            "POST",
            "/psychotherapy-records",
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )?;
        if answer.status != 201 {
            return Err(BenchError::Setup(format!(
                "a portal document answered {}: {}",
                answer.status,
                answer.text_excerpt()
            )));
        }
    }
    let found = base.get(&format!("/Patient?identifier=urn:oid:1.2.246.21|{hetu}"))?.json()?;
    let patient_id = found["entry"][0]["resource"]["id"].as_str().unwrap_or_default().to_owned();
    if patient_id.is_empty() {
        return Err(BenchError::Setup("the portal patient's Patient was not found".into()));
    }
    let next = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..args.concurrency {
            let (client, next, patient_id) = (base.reconnect(), &next, &patient_id);
            scope.spawn(move || {
                while next.fetch_add(1, Ordering::Relaxed) < PORTAL_ACCESSES {
                    let _ = client.get(&format!("/Patient/{patient_id}"));
                }
            });
        }
    });
    let mut cookies = Vec::with_capacity(args.concurrency);
    for _ in 0..args.concurrency {
        let portal = base.with_token(String::new());
        let page = portal.send("GET", "/portal/login", &[], None)?;
        let sign_in = cookie_of(&page, "__Host-vaitio-sign-in")
            .ok_or_else(|| BenchError::Setup("no sign-in form (is the gateway in development mode?)".into()))?;
        let html = page.text();
        let marker = "name=\"csrf\" value=\"";
        let csrf = html
            .find(marker)
            .map(|at| &html[at + marker.len()..])
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        let form = format!("csrf={csrf}&hetu={hetu}");
        let signed = portal.send(
            "POST",
            "/portal/login/dev",
            &[
                ("Content-Type", "application/x-www-form-urlencoded"),
                ("Cookie", &format!("__Host-vaitio-sign-in={sign_in}")),
            ],
            Some(form.as_bytes()),
        )?;
        let session = cookie_of(&signed, "__Host-vaitio-session")
            .ok_or_else(|| BenchError::Setup(format!("the development sign-in answered {}", signed.status)))?;
        cookies.push(format!("__Host-vaitio-session={session}"));
    }
    eprintln!(
        "portal: {PORTAL_DOCUMENTS} documents and {PORTAL_ACCESSES} reads of one patient, {} sessions, in {:.1} s",
        cookies.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(cookies)
}

/// The value a response sets for cookie `name`.
fn cookie_of(answer: &vaitio_conformance::client::Answer, name: &str) -> Option<String> {
    answer.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("set-cookie")).find_map(|(_, value)| {
        let pair = value.split(';').next()?;
        let (cookie, value) = pair.split_once('=')?;
        (cookie == name && !value.is_empty()).then(|| value.to_owned())
    })
}
