//! Prometheus metrics, and the one middleware that observes every request: it counts, times and
//! logs each one by route pattern (never the path's values or the query string, which may hold a
//! HETU).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::web;

use store::WriterStats;

/// The pattern of the route a request matched, kept with the route so that metrics need not
/// match the path against the table a second time.
#[derive(Clone, Copy, Debug)]
pub struct RoutePattern(pub &'static str);

const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

#[derive(Default)]
pub struct Metrics {
    requests: Mutex<HashMap<(Method, &'static str, u16), u64>>,
    buckets: [AtomicU64; BUCKETS.len()],
    duration_micros: AtomicU64,
    count: AtomicU64,
}

impl Metrics {
    pub fn observe(&self, method: &Method, route: &'static str, status: u16, seconds: f64) {
        if let Ok(mut requests) = self.requests.lock() {
            *requests.entry((method.clone(), route, status)).or_default() += 1;
        }
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            if seconds <= bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.duration_micros.fetch_add((seconds * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    /// `unusual_access`: alerts this node raised, and requests it refused or slowed under one.
    pub fn render(
        &self,
        database_up: bool,
        pool_connections: u32,
        pool_idle: u32,
        writer: &WriterStats,
        unusual_access: (u64, u64),
        keys: &KeyState,
    ) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# HELP vaitio_http_requests_total HTTP requests by method, route pattern and status.");
        let _ = writeln!(out, "# TYPE vaitio_http_requests_total counter");
        if let Ok(requests) = self.requests.lock() {
            let mut counted: Vec<_> = requests.iter().collect();
            counted.sort_by(|((m1, r1, s1), _), ((m2, r2, s2), _)| (m1.as_str(), r1, s1).cmp(&(m2.as_str(), r2, s2)));
            for ((method, route, status), count) in counted {
                let _ = writeln!(
                    out,
                    "vaitio_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {count}",
                    route.replace('\\', "\\\\").replace('"', "\\\"")
                );
            }
        }
        let _ = writeln!(out, "# HELP vaitio_http_request_duration_seconds Time to answer a request.");
        let _ = writeln!(out, "# TYPE vaitio_http_request_duration_seconds histogram");
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS) {
            let _ = writeln!(
                out,
                "vaitio_http_request_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "vaitio_http_request_duration_seconds_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "vaitio_http_request_duration_seconds_sum {}",
            self.duration_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "vaitio_http_request_duration_seconds_count {count}");
        let _ = writeln!(out, "# HELP vaitio_database_up Whether the database answered the last readiness check.");
        let _ = writeln!(out, "# TYPE vaitio_database_up gauge");
        let _ = writeln!(out, "vaitio_database_up {}", u8::from(database_up));
        let _ = writeln!(out, "# HELP vaitio_db_pool_connections Open database connections (idle included).");
        let _ = writeln!(out, "# TYPE vaitio_db_pool_connections gauge");
        let _ = writeln!(out, "vaitio_db_pool_connections {pool_connections}");
        let _ = writeln!(out, "# TYPE vaitio_db_pool_idle_connections gauge");
        let _ = writeln!(out, "vaitio_db_pool_idle_connections {pool_idle}");
        let counters = [
            ("vaitio_writer_groups_total", "Transactions the node's writer committed (or tried to).", writer.groups()),
            (
                "vaitio_writer_jobs_total",
                "Requests whose writes and audit records those transactions carried.",
                writer.jobs(),
            ),
        ];
        let (audit_entries, audit_bytes) = writer.audit_appended();
        let counters = counters.into_iter().chain([
            ("vaitio_audit_entries_total", "Audit entries appended by this node.", audit_entries),
            ("vaitio_audit_bytes_total", "Bytes of audit events appended by this node.", audit_bytes),
            (
                "vaitio_unusual_access_alerts_total",
                "Unusual-access (harvesting) alerts this node raised.",
                unusual_access.0,
            ),
            (
                "vaitio_unusual_access_refused_total",
                "Requests this node refused or slowed because an unusual-access alert held.",
                unusual_access.1,
            ),
        ]);
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name} {value}");
        }
        let _ = writeln!(
            out,
            "# HELP vaitio_writer_busy_seconds_total Time the node's writer spent writing and committing."
        );
        let _ = writeln!(out, "# TYPE vaitio_writer_busy_seconds_total counter");
        let _ = writeln!(out, "vaitio_writer_busy_seconds_total {}", writer.busy_seconds());
        key_versions(&mut out, &keys.kek);
        index_key(&mut out, keys);
        out
    }
}

/// The keys' versions as `/metrics` shows them: the key-encryption key's, and the index key's
/// version in force with a re-index's progress (counts only).
#[derive(Clone, Debug, Default)]
pub struct KeyState {
    pub kek: Vec<store::kek::KekVersion>,
    pub index_version: u32,
    /// Patients moved, of how many, while a re-index is unfinished.
    pub reindex: Option<(u64, u64)>,
}

fn index_key(out: &mut String, index: &KeyState) {
    let _ = writeln!(
        out,
        "# HELP vaitio_index_key_version_in_force The index key version that names new patients and tokens."
    );
    let _ = writeln!(out, "# TYPE vaitio_index_key_version_in_force gauge");
    let _ = writeln!(out, "vaitio_index_key_version_in_force {}", index.index_version);
    let _ =
        writeln!(out, "# HELP vaitio_reindex_unfinished 1 while a re-index to the index key version in force runs.");
    let _ = writeln!(out, "# TYPE vaitio_reindex_unfinished gauge");
    let _ = writeln!(out, "vaitio_reindex_unfinished {}", u8::from(index.reindex.is_some()));
    let (moved, to_move) = index.reindex.unwrap_or_default();
    let _ = writeln!(out, "# HELP vaitio_reindex_patients_moved Patients the unfinished re-index has moved, as its command last recorded.");
    let _ = writeln!(out, "# TYPE vaitio_reindex_patients_moved gauge");
    let _ = writeln!(out, "vaitio_reindex_patients_moved {moved}");
    let _ = writeln!(
        out,
        "# HELP vaitio_reindex_patients_to_move Patients the unfinished re-index found to move when it began."
    );
    let _ = writeln!(out, "# TYPE vaitio_reindex_patients_to_move gauge");
    let _ = writeln!(out, "vaitio_reindex_patients_to_move {to_move}");
}

/// The key-encryption key's versions: numbers and states only (no key ids).
fn key_versions(out: &mut String, keys: &[store::kek::KekVersion]) {
    let in_force = keys.iter().filter(|v| v.retired_at.is_none()).max_by_key(|v| v.version);
    let _ =
        writeln!(out, "# HELP vaitio_kek_version_in_force The key-encryption key version that wraps new data keys.");
    let _ = writeln!(out, "# TYPE vaitio_kek_version_in_force gauge");
    let _ = writeln!(out, "vaitio_kek_version_in_force {}", in_force.map_or(0, |v| v.version));
    let _ = writeln!(
        out,
        "# HELP vaitio_kek_versions Key-encryption key versions: in force, older (may still wrap data keys), retired."
    );
    let _ = writeln!(out, "# TYPE vaitio_kek_versions gauge");
    let retired = keys.iter().filter(|v| v.retired_at.is_some()).count();
    let older = keys.len() - retired - usize::from(in_force.is_some());
    let _ = writeln!(out, "vaitio_kek_versions{{state=\"in_force\"}} {}", usize::from(in_force.is_some()));
    let _ = writeln!(out, "vaitio_kek_versions{{state=\"older\"}} {older}");
    let _ = writeln!(out, "vaitio_kek_versions{{state=\"retired\"}} {retired}");
    let _ = writeln!(
        out,
        "# HELP vaitio_kek_rotation_unfinished 1 while a rotation to the version in force has not rewrapped every data key."
    );
    let _ = writeln!(out, "# TYPE vaitio_kek_rotation_unfinished gauge");
    let unfinished = in_force.is_some_and(|v| v.rewrapped_at.is_none());
    let _ = writeln!(out, "vaitio_kek_rotation_unfinished {}", u8::from(unfinished));
}

/// Counts, times and logs every request.
pub async fn observe(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = request.method().clone();
    let metrics = request.app_data::<web::Data<Metrics>>().cloned();
    let response = next.call(request).await?;
    let route = response.request().app_data::<RoutePattern>().map_or("unmatched", |pattern| pattern.0);
    let status = response.status().as_u16();
    let seconds = started.elapsed().as_secs_f64();
    if let Some(metrics) = metrics {
        metrics.observe(&method, route, status, seconds);
    }
    // One line per request is a write to stderr per request: at thousands of reads a second it
    // cost a tenth of the event loop. The audit log is the record of who accessed what, and
    // `/metrics` counts requests, so a request is logged at debug (`VAITIO_LOG=debug`) unless
    // the gateway failed it.
    if status >= 500 {
        tracing::warn!(method = %method, route = %route, status, duration_ms = seconds * 1e3, "request");
    } else {
        tracing::debug!(method = %method, route = %route, status, duration_ms = seconds * 1e3, "request");
    }
    Ok(response)
}
