//! The bad day, on real engines: the gateway killed (-9) under concurrent submissions, and
//! PostgreSQL stopped and started under load. What a client was told must be true: an
//! acknowledged submission is kept, a 503 never hides a duplicate, no answer is a 500, no
//! request waits past the configured bound, and the gateway recovers by itself.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use vaitio_conformance::case::temporary_hetu_number;
use vaitio_conformance::client::Client;

use super::cli::{clinic_client, vaitio};
use super::submission::{record, submit};
use super::support::*;

/// A record of its own patient and id.
fn distinct_record(label: &str, n: u128) -> Value {
    let mut body = record();
    body["record_id"] = format!("{label}-{n}").into();
    body["patient"]["hetu"] = temporary_hetu_number(n).into();
    body["patient"].as_object_mut().unwrap().remove("birth_date");
    body
}

/// A gateway process in `dir`, and a client of the clinic with its token.
pub struct Process {
    child: Child,
    pub port: u16,
}

impl Process {
    pub fn start(dir: &Path, database_url: Option<&str>) -> (Process, Duration) {
        let started = Instant::now();
        let mut command = vaitio(dir);
        command.args(["serve", "--listen", "127.0.0.1:0"]);
        if let Some(url) = database_url {
            command.args(["--database-url", url]);
        }
        let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.rsplit(':').next().and_then(|p| p.trim().trim_end_matches("/metadata").parse().ok()).unwrap();
        (Process { child, port }, started.elapsed())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn client(&self, dir: &Path) -> Client {
        clinic_client(dir, &format!("https://localhost:{}", self.port))
    }
}

/// A record sent, and the status it was answered with (none: the connection broke).
type Told = (Value, Option<u16>);

/// Kills the gateway with SIGKILL under concurrent submissions, restarts it, and checks what
/// every client was told.
fn kill_under_load(database_url: Option<&str>, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged: Vec<Value> = Vec::new();
    let mut unanswered: Vec<Value> = Vec::new();
    let mut restarts = Vec::new();
    for cycle in 0..3u128 {
        let (process, restart) = Process::start(dir.path(), database_url);
        restarts.push(restart);
        let client = process.client(dir.path());
        // Everything acknowledged before this crash is still there, unchanged.
        for body in &acknowledged {
            assert_eq!(submit(&client, body).status, 200, "an acknowledged record was lost or changed");
        }
        let stop = Arc::new(AtomicBool::new(false));
        let told: Arc<Mutex<Vec<Told>>> = Arc::default();
        let workers: Vec<_> = (0..8u128)
            .map(|worker| {
                let (client, stop, told) = (client.reconnect(), stop.clone(), told.clone());
                let label = label.to_owned();
                std::thread::spawn(move || {
                    let mut n = 0u128;
                    while !stop.load(Ordering::Relaxed) {
                        let body = distinct_record(&label, 100_000 * cycle + 1_000 * worker + n);
                        let status = client
                            .send(
                                "POST",
                                "/psychotherapy-records",
                                &[("Content-Type", "application/json")],
                                Some(body.to_string().as_bytes()),
                            )
                            .ok()
                            .map(|answer| answer.status);
                        told.lock().unwrap().push((body, status));
                        n += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(1500));
        stop.store(true, Ordering::Relaxed);
        process.kill();
        for worker in workers {
            worker.join().unwrap();
        }
        for (body, status) in std::mem::take(&mut *told.lock().unwrap()) {
            match status {
                Some(201) => acknowledged.push(body),
                None => unanswered.push(body),
                Some(other) => panic!("a submission answered {other} before the crash"),
            }
        }
    }
    assert!(acknowledged.len() > 50, "too few submissions to tell: {}", acknowledged.len());
    let (process, restart) = Process::start(dir.path(), database_url);
    restarts.push(restart);
    let client = process.client(dir.path());
    for body in &acknowledged {
        assert_eq!(submit(&client, body).status, 200, "an acknowledged record was lost, partial or changed");
    }
    // What was cut off is either whole or absent: sent again, it is stored (201) or found (200).
    for body in &unanswered {
        let status = submit(&client, body).status;
        assert!(status == 201 || status == 200, "a record cut off by the crash answers {status} when sent again");
        assert_eq!(submit(&client, body).status, 200, "a record sent twice is one document");
    }
    process.kill();
    // One document per record, and a log that verifies.
    let mut verify = vaitio(dir.path());
    verify.args(["audit", "verify"]);
    if let Some(url) = database_url {
        verify.args(["--database-url", url]);
    }
    let verified = verify.output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    eprintln!(
        "{label}: {} acknowledged, {} cut off, restarts {:?}, {}",
        acknowledged.len(),
        unanswered.len(),
        restarts,
        String::from_utf8_lossy(&verified.stdout).trim()
    );
}

#[test]
fn a_kill_under_load_loses_nothing_acknowledged_sqlite() {
    kill_under_load(None, "CRASH-SQLITE");
}

#[test]
fn a_kill_under_load_loses_nothing_acknowledged_postgres() {
    let Some(admin) = postgres_or_skip() else { return };
    let (url, _) = fresh_postgres_database(&admin);
    kill_under_load(Some(&url), "CRASH-PG");
}

/// A PostgreSQL cluster of the test's own, which it stops and starts.
struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
}

impl Cluster {
    fn pg(&self, tool: &str) -> Command {
        let root = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
            .unwrap_or(false);
        let path = self.bin.join(tool);
        if root {
            // PostgreSQL refuses to run as root.
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn create() -> Option<Cluster> {
        postgres_or_skip()?;
        let bin = PathBuf::from(std::env::var("VAITIO_TEST_PG_BIN").ok()?);
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Cluster { dir, bin, port };
        let data = cluster.dir.path().join("data");
        let init = cluster
            .pg("initdb")
            .args(["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"])
            .output()
            .unwrap();
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        cluster.start();
        Some(cluster)
    }

    fn start(&self) {
        let data = self.dir.path().join("data");
        let options =
            format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", self.port, self.dir.path().display());
        let started = self
            .pg("pg_ctl")
            .args([
                "-D",
                data.to_str().unwrap(),
                "-l",
                self.dir.path().join("log").to_str().unwrap(),
                "-w",
                "-o",
                &options,
                "start",
            ])
            .output()
            .unwrap();
        assert!(started.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&started.stderr));
    }

    fn stop(&self) {
        let data = self.dir.path().join("data");
        let stopped =
            self.pg("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output().unwrap();
        assert!(stopped.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&stopped.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = self.pg("pg_ctl").args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]).output();
    }
}

/// One request of the load: what it was, what it answered, how long it took.
struct Seen {
    what: &'static str,
    status: Option<u16>,
    outcome_code: Option<String>,
    took: Duration,
    at: Instant,
    body: Option<Value>,
}

#[test]
fn a_database_outage_answers_503_quickly_and_recovers_losing_nothing() {
    let Some(cluster) = Cluster::create() else { return };
    let Some(mut gateway) = TestGateway::spawn_with(Backend::Postgres, |config| {
        config.database = store::db::DatabaseUrl::parse(&cluster.url()).unwrap();
    }) else {
        return;
    };
    let bound = gateway.config.db_wait + Duration::from_secs(1);
    let patient_id = gateway.create(&patient(HETU));
    let stop = Arc::new(AtomicBool::new(false));
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let workers: Vec<_> = (0..8u128)
        .map(|worker| {
            let (client, stop, seen) = (gateway.client.reconnect(), stop.clone(), seen.clone());
            let read = format!("/Patient/{patient_id}");
            let search = format!("/Encounter?patient={patient_id}");
            std::thread::spawn(move || {
                let mut n = 0u128;
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    let (what, answer, body) = match n % 3 {
                        0 => {
                            let body = distinct_record("OUTAGE", 10_000 * worker + n);
                            let answer = client.send(
                                "POST",
                                "/psychotherapy-records",
                                &[("Content-Type", "application/json")],
                                Some(body.to_string().as_bytes()),
                            );
                            ("submission", answer, Some(body))
                        }
                        1 => ("read", client.get(&read), None),
                        _ => ("search", client.get(&search), None),
                    };
                    let took = at.elapsed();
                    let (status, outcome_code) = match &answer {
                        Ok(answer) => (
                            Some(answer.status),
                            answer.json().ok().and_then(|v| v["issue"][0]["code"].as_str().map(str::to_owned)),
                        ),
                        Err(_) => (None, None),
                    };
                    if status == Some(503) {
                        // A client backs off a little before it tries again.
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    seen.lock().unwrap().push(Seen { what, status, outcome_code, took, at, body });
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    let down = Instant::now();
    cluster.stop();
    // Readiness says so within a second.
    let health = |client: &Client| client.get("/health").map(|a| a.status).unwrap_or(0);
    let mut reported = None;
    while down.elapsed() < Duration::from_secs(3) {
        let asked = Instant::now();
        let status = health(&gateway.client);
        assert!(asked.elapsed() < Duration::from_millis(1200), "/health took {:?}", asked.elapsed());
        if status == 503 {
            reported = Some(down.elapsed());
            break;
        }
    }
    let reported = reported.expect("/health did not report the outage");
    assert!(reported < Duration::from_secs(1), "/health reported the outage after {reported:?}");
    assert_eq!(gateway.client.get("/health/live").unwrap().status, 200, "liveness does not depend on the database");
    std::thread::sleep(Duration::from_secs(3));
    let up = Instant::now();
    cluster.start();
    // Recovery without a restart: readiness, then requests.
    while health(&gateway.client) != 200 {
        assert!(up.elapsed() < Duration::from_secs(20), "the gateway did not recover");
        std::thread::sleep(Duration::from_millis(100));
    }
    let ready = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let seen = std::mem::take(&mut *seen.lock().unwrap());
    let during = seen.iter().filter(|s| s.at >= down && s.at < up).count();
    let refused: Vec<&Seen> = seen.iter().filter(|s| s.status == Some(503)).collect();
    assert!(during > 0 && !refused.is_empty(), "the load did not meet the outage");
    for s in seen.iter().filter(|s| s.took > gateway.config.db_wait) {
        eprintln!(
            "slow: a {} started {:?} after the outage began took {:?}: {:?}",
            s.what,
            s.at.checked_duration_since(down)
                .map(|d| d.as_millis() as i64)
                .unwrap_or_else(|| -(down.duration_since(s.at).as_millis() as i64)),
            s.took,
            s.status
        );
    }
    for s in &seen {
        assert_ne!(s.status, Some(500), "a {} answered 500", s.what);
        assert!(s.status.is_some(), "a {} got no answer", s.what);
        assert!(s.took <= bound, "a {} waited {:?}, past the bound of {bound:?}", s.what, s.took);
        if s.status == Some(503) {
            assert_eq!(
                s.outcome_code.as_deref(),
                Some("transient"),
                "a 503 {} is not a transient OperationOutcome",
                s.what
            );
        }
    }
    // Once readiness says so, the load is served again.
    let last: Vec<&Seen> = seen.iter().filter(|s| s.at > ready + Duration::from_millis(200)).collect();
    assert!(
        last.iter().all(|s| s.status.is_some_and(|status| status < 500)),
        "not recovered: {:?}",
        last.iter().map(|s| s.status).collect::<Vec<_>>()
    );
    // Nothing answered 2xx is lost; a 503 re-sent is stored once.
    for s in seen.iter().filter(|s| s.what == "submission") {
        let body = s.body.as_ref().unwrap();
        let again = submit(&gateway.client, body).status;
        match s.status {
            Some(201) => assert_eq!(again, 200, "an acknowledged submission was lost"),
            _ => {
                assert!(again == 201 || again == 200, "a refused submission sent again answers {again}");
                assert_eq!(submit(&gateway.client, body).status, 200, "sent twice, it is one document");
            }
        }
    }
    let longest = seen.iter().map(|s| s.took).max().unwrap_or_default();
    eprintln!(
        "outage: {} requests, {} during the outage, {} answered 503, /health reported it after {reported:?} and the recovery {:?} after the database was back, longest wait {longest:?}",
        seen.len(),
        during,
        refused.len(),
        ready - up
    );
    gateway.stop();
}

/// A file system of the test's own, `size` large: a tmpfs it mounts (as root) and unmounts.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        if !running_as_root() {
            // Only root mounts; CI runs as root, so there it is a failure, not a skip.
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "CI=true: the disk-full test needs root to mount a tmpfs"
            );
            eprintln!("not root: the disk-full test is skipped");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(mounted.status.success(), "mount: {}", String::from_utf8_lossy(&mounted.stderr));
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Bytes still free.
    fn available(&self) -> u64 {
        let out = Command::new("df").args(["--output=avail", "-B1"]).arg(self.path()).output().unwrap();
        String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).unwrap()
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).output();
    }
}

fn running_as_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A record with a long note, so that a few of them fill what is left of a disk.
fn long_record(n: u128) -> Value {
    let mut body = distinct_record("FULL", n);
    let words = ["calm", "sleep", "work", "family", "lake", "anxiety", "plan", "session"];
    let text: Vec<&str> = (0..6_000).map(|i| words[(i * 7 + n as usize) % words.len()]).collect();
    body["note"]["text"] = text.join(" ").into();
    body
}

/// SQLite on a disk that fills up: writes are refused (507, a transient OperationOutcome) and
/// keep nothing; the disk reserve is released so that reads and their audit records go on; once
/// space is freed, writes work again without a restart, and the log verifies.
#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers_sqlite() {
    let Some(disk) = SmallDisk::mount("48m") else { return };
    let Some(gateway) = TestGateway::spawn_with(Backend::Sqlite, |config| {
        config.database = store::db::DatabaseUrl::Sqlite(disk.path().join("vaitio.sqlite3"));
        config.disk_reserve = 4 << 20;
    }) else {
        return;
    };
    let patient_id = gateway.create(&patient(HETU));
    let mut acknowledged = Vec::new();
    for n in 0..5 {
        let body = long_record(n);
        assert_eq!(submit(&gateway.client, &body).status, 201);
        acknowledged.push(body);
    }
    // Everything but about a megabyte and a half goes to a ballast file.
    let ballast = disk.path().join("ballast");
    let fill = disk.available().saturating_sub(1_500_000);
    std::fs::write(&ballast, vec![0u8; fill as usize]).unwrap();
    let mut refused = Vec::new();
    for n in 5..400 {
        let body = long_record(n);
        let answer = submit(&gateway.client, &body);
        match answer.status {
            201 => acknowledged.push(body),
            507 => {
                let outcome = answer.json().unwrap();
                assert_eq!(outcome["issue"][0]["code"], "transient", "{outcome}");
                assert!(!answer.text().contains("FULL-"), "the refusal names the record");
                refused.push(body);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("a write on a full disk answered {other}: {}", answer.text()),
        }
    }
    assert!(!refused.is_empty(), "the disk never filled");
    assert!(!disk.path().join("vaitio.sqlite3-reserve").exists(), "the reserve was not released");
    // Reads go on, in the space the reserve freed; writes wait.
    for _ in 0..20 {
        assert_eq!(gateway.get(&format!("/Patient/{patient_id}")).status, 200, "a read on a full disk");
    }
    assert_eq!(submit(&gateway.client, &long_record(1_000)).status, 507, "a write while the reserve is out");
    // Space freed: within a second or so the reserve is back and writes work again, without a
    // restart; nothing refused was kept.
    std::fs::remove_file(&ballast).unwrap();
    let freed = Instant::now();
    while submit(&gateway.client, &refused[0]).status == 507 {
        assert!(freed.elapsed() < Duration::from_secs(5), "writes did not come back after space was freed");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(disk.path().join("vaitio.sqlite3-reserve").exists(), "the reserve was not written again");
    acknowledged.push(refused.remove(0));
    for body in &refused {
        assert_eq!(submit(&gateway.client, body).status, 201, "a refused write was kept, or writes did not recover");
    }
    for body in &acknowledged {
        assert_eq!(submit(&gateway.client, body).status, 200, "an acknowledged write was lost");
    }
    let verified = gateway.verify_audit_log().expect("the audit log verifies after the disk was full");
    eprintln!(
        "disk full: {} written, {} refused with 507, reads served throughout; {} audit entries verify",
        acknowledged.len(),
        refused.len() + 1,
        verified.entries
    );
}

/// HAProxy from the environment (`VAITIO_TEST_HAPROXY`, set by `./scripts/test`, or on the
/// PATH). Under CI=true a missing HAProxy is a failure.
fn haproxy_or_skip() -> Option<PathBuf> {
    let found = std::env::var("VAITIO_TEST_HAPROXY").ok().map(PathBuf::from).filter(|p| p.exists()).or_else(|| {
        ["/usr/sbin/haproxy", "/usr/bin/haproxy", "/usr/local/sbin/haproxy"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and no HAProxy: install Debian's haproxy");
        eprintln!("no HAProxy: the load-balancer test is skipped");
    }
    found
}

/// HAProxy in TCP mode in front of `nodes`: TLS passes through, so each node sees the client's
/// certificate. A node that stops answering is out of the rotation within a second, and a
/// connection that cannot reach one is sent to the other.
struct Balancer {
    child: Child,
    port: u16,
    _config: tempfile::NamedTempFile,
}

impl Balancer {
    fn start(haproxy: &Path, nodes: &[u16]) -> Balancer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let servers: String = nodes
            .iter()
            .enumerate()
            .map(|(i, node)| format!("    server node{i} 127.0.0.1:{node} check inter 200ms fall 1 rise 2\n"))
            .collect();
        let config = format!(
            "global\n    maxconn 512\n\ndefaults\n    mode tcp\n    timeout connect 1s\n    timeout client 30s\n    \
             timeout server 30s\n    retries 3\n    option redispatch\n\nfrontend gateway\n    bind 127.0.0.1:{port}\n    \
             default_backend nodes\n\nbackend nodes\n    balance roundrobin\n{servers}"
        );
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, config.as_bytes()).unwrap();
        let child = Command::new(haproxy)
            .args(["-db", "-f"])
            .arg(file.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(started.elapsed() < Duration::from_secs(10), "HAProxy did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Balancer { child, port, _config: file }
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the clients behind the balancer saw: the records acknowledged, how many times one had
/// to be sent again, and the acknowledging statuses (200: found on a resend).
type Balanced = (Vec<Value>, usize, Vec<u16>);

/// Two gateway nodes on one PostgreSQL behind HAProxy; one is killed (-9) mid-load. Clients that
/// retry on a new connection get every record acknowledged, and nothing acknowledged is lost.
#[test]
fn a_node_lost_behind_a_load_balancer_loses_nothing() {
    let Some(admin) = postgres_or_skip() else { return };
    let Some(haproxy) = haproxy_or_skip() else { return };
    let (url, _) = fresh_postgres_database(&admin);
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = Process::start(dir.path(), Some(&url));
    let (second, _) = Process::start(dir.path(), Some(&url));
    let balancer = Balancer::start(&haproxy, &[first.port, second.port]);
    let client = clinic_client(dir.path(), &format!("https://localhost:{}", balancer.port));
    let stop = Arc::new(AtomicBool::new(false));
    let outcome: Arc<Mutex<Balanced>> = Arc::default();
    let workers: Vec<_> = (0..8u128)
        .map(|worker| {
            let (client, stop, outcome) = (client.reconnect(), stop.clone(), outcome.clone());
            std::thread::spawn(move || {
                let mut client = client;
                let mut n = 0u128;
                while !stop.load(Ordering::Relaxed) {
                    let body = distinct_record("BALANCED", 1_000 * worker + n);
                    // A client that loses its connection retries the same record on a new one.
                    let started = Instant::now();
                    loop {
                        let answer = client.send(
                            "POST",
                            "/psychotherapy-records",
                            &[("Content-Type", "application/json")],
                            Some(body.to_string().as_bytes()),
                        );
                        let mut seen = outcome.lock().unwrap();
                        match answer.map(|a| a.status) {
                            Ok(status @ (200 | 201)) => {
                                seen.0.push(body);
                                seen.2.push(status);
                                break;
                            }
                            Ok(503) | Err(_) => {
                                seen.1 += 1;
                                drop(seen);
                                assert!(started.elapsed() < Duration::from_secs(20), "a record was never acknowledged");
                                client = client.reconnect();
                                std::thread::sleep(Duration::from_millis(50));
                            }
                            Ok(other) => panic!("a submission through the balancer answered {other}"),
                        }
                    }
                    n += 1;
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(1500));
    first.kill();
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().unwrap();
    }
    let (acknowledged, retried, statuses) = std::mem::take(&mut *outcome.lock().unwrap());
    assert!(acknowledged.len() > 50, "too few submissions to tell: {}", acknowledged.len());
    // The survivor has every acknowledged record, once.
    let direct = second.client(dir.path());
    for body in &acknowledged {
        assert_eq!(submit(&direct, body).status, 200, "an acknowledged record was lost");
    }
    let verified = vaitio(dir.path()).args(["audit", "verify", "--database-url", &url]).output().unwrap();
    assert!(verified.status.success(), "{}", String::from_utf8_lossy(&verified.stderr));
    eprintln!(
        "balancer: {} acknowledged ({} on a resend), {} retries after the node was lost, {}",
        acknowledged.len(),
        statuses.iter().filter(|s| **s == 200).count(),
        retried,
        String::from_utf8_lossy(&verified.stdout).trim()
    );
    second.kill();
}
