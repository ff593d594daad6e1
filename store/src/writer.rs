//! The node's writer: one thread holding one connection, which commits the writes and audit
//! records of concurrent requests together (group commit).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Weak};
use std::time::Instant;

use diesel::prelude::*;
use diesel::r2d2::PooledConnection;
use fhir_profiles::ResourceType;

use crate::apply::{check_not_moved, write_request, write_rows, Pending, WriteContext};
use crate::audit::{append, AuditRecord};
use crate::db::{write_transaction, Database, DbConnection, Manager};
use crate::error::StoreError;
use crate::marks::{insert_marks, ReachMark};
use crate::postgres::write_created;
use crate::reserve::Reserve;
use crate::resource::{WriteKind, Written};
use crate::time::now_millis;

/// A node's writer: one thread, one connection, and group commit. Requests queue their writes
/// and audit records;
/// the thread takes every request waiting (up to [`WriteQueue::GROUP`]), writes each inside a
/// savepoint of one transaction, commits once, and only then answers them all. A request whose
/// writes fail is rolled back to its savepoint alone. The queue is first come, first served, so
/// no writer waits behind luckier ones, and the connection's page cache stays warm (SQLite drops
/// a connection's cache whenever another connection has written).
pub(crate) struct WriteQueue {
    jobs: mpsc::Sender<Job>,
    stats: WriterStats,
    /// Set by the SQLite checkpoint thread when the log has been copied up to its last few
    /// frames: the writer copies those itself between two groups, when no write can add more,
    /// so that its next transaction starts the log over (see `checkpoint.rs`).
    pub catch_up: Arc<AtomicBool>,
}

/// What the writer has done since the node started, for `/metrics`: the mean group size
/// (`jobs / groups`) says how much group commit is saving, and `busy` how close the one writer
/// is to saturation.
#[derive(Default, Debug)]
pub struct WriterStats {
    counters: Arc<Counters>,
}

#[derive(Default, Debug)]
struct Counters {
    groups: AtomicU64,
    jobs: AtomicU64,
    busy_micros: AtomicU64,
    audit_entries: AtomicU64,
    audit_bytes: AtomicU64,
}

impl WriterStats {
    /// Transactions the writer committed (or tried to).
    pub fn groups(&self) -> u64 {
        self.counters.groups.load(Ordering::Relaxed)
    }

    /// Requests whose writes and audit records those transactions carried.
    pub fn jobs(&self) -> u64 {
        self.counters.jobs.load(Ordering::Relaxed)
    }

    /// Audit entries the writer appended (in groups that committed), and their bytes: what the
    /// log grows by.
    pub fn audit_appended(&self) -> (u64, u64) {
        (self.counters.audit_entries.load(Ordering::Relaxed), self.counters.audit_bytes.load(Ordering::Relaxed))
    }

    /// Time the writer spent writing and committing.
    pub fn busy_seconds(&self) -> f64 {
        self.counters.busy_micros.load(Ordering::Relaxed) as f64 / 1e6
    }
}

struct Job {
    pending: Pending,
    answer: mpsc::SyncSender<(Result<Written, StoreError>, Job)>,
}

impl Job {
    /// Answers the job's request and hands the job back with the answer, so that the request's
    /// thread frees its resources, bodies and records rather than the writer, whose time every
    /// queued request waits for (dropping finished jobs was 3.5 % of it during ingest).
    fn answer(self, result: Result<Written, StoreError>) {
        let answer = self.answer.clone();
        let _ = answer.send((result, self));
    }
}

impl WriteQueue {
    const GROUP: usize = 64;

    /// Starts the writer thread; it ends when the queue is dropped.
    pub fn start(db: Arc<Database>, context: WriteContext, reserve: Option<Arc<Reserve>>) -> Arc<WriteQueue> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let stats = WriterStats::default();
        let counted = Arc::clone(&stats.counters);
        let catch_up = Arc::new(AtomicBool::new(false));
        let caught_up = catch_up.clone();
        let spawned = std::thread::Builder::new().name("group-commit".into()).spawn(move || {
            let mut held: Option<PooledConnection<Manager>> = None;
            // Ends when the store, and with it the sender, is gone.
            while let Ok(first) = queue.recv() {
                let mut group = vec![first];
                while group.len() < Self::GROUP {
                    match queue.try_recv() {
                        Ok(job) => group.push(job),
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                counted.groups.fetch_add(1, Ordering::Relaxed);
                counted.jobs.fetch_add(group.len() as u64, Ordering::Relaxed);
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    Self::commit_group(&mut held, &db, &context, reserve.as_deref(), group, &counted)
                }));
                counted.busy_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                if outcome.is_err() {
                    // The group's requests see their answers dropped (503). The connection may
                    // be inside a transaction, so it goes back to no pool: it is forgotten.
                    if let Some(conn) = held.take() {
                        std::mem::forget(conn);
                    }
                    tracing::error!("the writer recovered from a panic; that group was refused");
                }
                if caught_up.swap(false, Ordering::Relaxed) {
                    Self::copy_log_tail(&mut held);
                }
            }
        });
        if let Err(error) = spawned {
            // Without its writer the store cannot write; say so at once rather than hang later.
            panic!("cannot start the writer thread: {error}");
        }
        Arc::new(WriteQueue { jobs, stats, catch_up })
    }

    pub fn stats(&self) -> &WriterStats {
        &self.stats
    }

    /// Copies the last frames of SQLite's log into the database, between two groups. The
    /// checkpoint thread has copied the rest; here no write can add frames meanwhile, so the
    /// log ends fully copied, and the next transaction starts it over unless a reader is still
    /// inside it. (A `RESTART` checkpoint from the other thread would hold the writer while it
    /// waited for that moment: 0.2-1.3 s was measured during ingest.)
    fn copy_log_tail(held: &mut Option<PooledConnection<Manager>>) {
        let Some(conn) = held.as_mut() else { return };
        let DbConnection::Sqlite(sqlite) = &mut **conn else { return };
        use diesel::connection::SimpleConnection;
        if let Err(error) = sqlite.batch_execute("PRAGMA wal_checkpoint(PASSIVE)") {
            tracing::warn!(%error, "the writer could not copy the log's tail");
        }
    }

    /// Writes a group in one transaction, one savepoint per request, and answers each request.
    fn commit_group(
        held: &mut Option<PooledConnection<Manager>>,
        db: &Database,
        context: &WriteContext,
        reserve: Option<&Reserve>,
        mut group: Vec<Job>,
        counters: &Counters,
    ) {
        // While the disk reserve is released (the disk filled up), clinical writes are refused
        // before they are tried, so that the space it freed goes to reads' audit records.
        if let Some(reserve) = reserve {
            if group.iter().any(|job| !job.pending.recording_only()) && !reserve.writes_allowed() {
                let (writing, recording): (Vec<Job>, Vec<Job>) =
                    group.into_iter().partition(|job| !job.pending.recording_only());
                for job in writing {
                    job.answer(Err(StoreError::DiskFull("writes wait until space is freed".into())));
                }
                if recording.is_empty() {
                    return;
                }
                group = recording;
            }
        }
        let conn = match held.as_mut() {
            Some(conn) => conn,
            None => match db.conn() {
                Ok(mut conn) => {
                    if let DbConnection::Sqlite(sqlite) = &mut *conn {
                        // The writer touches index pages all over the database; SQLite's
                        // default 2 MiB cache made it read many of them again per group.
                        // (32 MiB was no faster, and cost 30 MB of resident memory.)
                        use diesel::connection::SimpleConnection;
                        if let Err(error) = sqlite.batch_execute("PRAGMA cache_size = -8192") {
                            tracing::warn!(%error, "the writer keeps SQLite's default page cache");
                        }
                    }
                    held.insert(conn)
                }
                Err(error) => {
                    for job in group {
                        job.answer(Err(StoreError::Unavailable(error.to_string())));
                    }
                    return;
                }
            },
        };
        let recording_only = |job: &Job| job.pending.recording_only();
        // First the common case, that every request's writes succeed: the whole group in one
        // transaction, every request's audit records appended together (one turn of the log's
        // head, before any row, as in `write_request`), no savepoints. A savepoint makes SQLite
        // copy each page a request touches into a sub-journal first, which was a fifth of the
        // writer's time during ingest.
        let mut results: Vec<Result<Written, StoreError>> = Vec::with_capacity(group.len());
        let mut committed = write_transaction(conn, |conn| {
            // Also with no records at all: the idle tick is such a request, and the append is
            // where a checkpoint that is due gets signed.
            let all: Vec<AuditRecord> = group.iter().flat_map(|job| job.pending.audit.iter().cloned()).collect();
            append(conn, &all, &context.signer, now_millis())?;
            let marks: Vec<ReachMark> = group.iter().flat_map(|job| job.pending.marks.iter().cloned()).collect();
            insert_marks(conn, &marks)?;
            let only_creating =
                group.iter().filter(|job| !recording_only(job)).flat_map(|job| job.pending.writes.iter()).all(
                    |write| {
                        matches!(write.kind, WriteKind::Create | WriteKind::CreateIfAbsent)
                            && write.resource.resource_type != ResourceType::Consent
                    },
                );
            // Only on PostgreSQL: SQLite runs in-process, so a statement costs no round trip,
            // while a multi-row INSERT of varying length is prepared afresh for every group
            // (its writer took 540 µs a document one row at a time and 880-960 µs batched).
            if only_creating && matches!(conn, DbConnection::Postgres(_)) {
                for job in group.iter().filter(|job| !recording_only(job)) {
                    check_not_moved(conn, context, &job.pending.keys, &job.pending.writes)?;
                }
            }
            if let (true, DbConnection::Postgres(pg)) = (only_creating, &mut *conn) {
                let writing: Vec<&Pending> =
                    group.iter().filter(|job| !recording_only(job)).map(|job| &job.pending).collect();
                results.extend(write_created(pg, context, &writing)?.into_iter().map(Ok));
            } else {
                for job in group.iter_mut().filter(|job| !recording_only(job)) {
                    let Pending { keys, writes, sealed, .. } = &mut job.pending;
                    results.push(Ok(write_rows(conn, context, keys, writes, sealed)?));
                }
            }
            Ok(())
        });
        if committed.is_ok() {
            // `results` holds the writing requests' answers, in order; the others only recorded.
            let mut written = results.into_iter();
            results = group
                .iter()
                .map(|job| if recording_only(job) { Ok(Vec::new()) } else { written.next().unwrap_or(Ok(Vec::new())) })
                .collect();
        } else {
            // Something failed and all of it was rolled back. Again, each request in its own
            // savepoint, so that one request's failure (a version conflict, a refused record)
            // answers that request alone. A full disk refuses every write of the group without
            // trying it again, and releases the disk reserve for the audit records.
            let disk_full = matches!(committed, Err(StoreError::DiskFull(_)));
            if disk_full {
                reserve.map(Reserve::release);
            }
            results = Vec::with_capacity(group.len());
            let records: Vec<AuditRecord> = group
                .iter()
                .filter(|job| recording_only(job))
                .flat_map(|job| job.pending.audit.iter().cloned())
                .collect();
            let marks: Vec<ReachMark> = group
                .iter()
                .filter(|job| recording_only(job))
                .flat_map(|job| job.pending.marks.iter().cloned())
                .collect();
            committed = write_transaction(conn, |conn| {
                let together = !records.is_empty()
                    && conn
                        .transaction(|conn| {
                            append(conn, &records, &context.signer, now_millis())?;
                            insert_marks(conn, &marks)
                        })
                        .is_ok();
                for job in &mut group {
                    results.push(if together && recording_only(job) {
                        Ok(Vec::new())
                    } else if disk_full && !recording_only(job) {
                        Err(StoreError::DiskFull("the write did not commit".into()))
                    } else {
                        conn.transaction(|conn| write_request(conn, context, &mut job.pending))
                    });
                }
                Ok(())
            });
        }
        if let Err(error) = &committed {
            // A connection whose commit failed is not kept. If the database went away, the next
            // group's checkout finds out (within the wait) and makes the ones after it fail at
            // once; if only this connection was lost, the next group gets a new one.
            *held = None;
            tracing::warn!(%error, "a group of writes did not commit");
        }
        for (job, result) in group.into_iter().zip(results) {
            if committed.is_ok() && result.is_ok() {
                let bytes: usize = job.pending.audit.iter().map(AuditRecord::len).sum();
                counters.audit_entries.fetch_add(job.pending.audit.len() as u64, Ordering::Relaxed);
                counters.audit_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
            }
            let answer = match &committed {
                Ok(()) => result,
                Err(StoreError::DiskFull(_)) => Err(StoreError::DiskFull("the write did not commit".into())),
                Err(_) => Err(StoreError::Unavailable("the write did not commit".into())),
            };
            job.answer(answer);
        }
    }

    /// Queues a request's writes and waits until they are committed (or refused).
    pub fn submit(&self, pending: Pending) -> Result<Written, StoreError> {
        let (answer, answered) = mpsc::sync_channel(1);
        self.jobs
            .send(Job { pending, answer })
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        // The writer answers every job it takes; a job dropped unanswered was in a group the
        // writer abandoned after a fault (and it has gone on to the next).
        let (written, _job) = answered
            .recv()
            .map_err(|_| StoreError::Unavailable("the database writer dropped this request after a fault".into()))?;
        written
    }
}

/// Signs audit checkpoints when the log is idle: checkpoints are signed every N entries or T
/// seconds, and a tick appends nothing so that the entries waiting for the next append are
/// signed in time. The thread ends with the writer.
pub(crate) fn tick_audit_checkpoints(writer: Weak<WriteQueue>, tick: std::time::Duration) {
    let spawned = std::thread::Builder::new().name("audit-checkpoint".into()).spawn(move || loop {
        std::thread::sleep(tick);
        let Some(writer) = writer.upgrade() else { return };
        let idle = Pending {
            writes: Arc::new(Vec::new()),
            keys: Vec::new(),
            sealed: Vec::new(),
            audit: Vec::new(),
            marks: Vec::new(),
        };
        if let Err(error) = writer.submit(idle) {
            tracing::warn!(%error, "the audit checkpoint tick failed");
        }
    });
    if let Err(error) = spawned {
        tracing::warn!(%error, "no audit checkpoint thread: checkpoints are signed as entries arrive");
    }
}
