//! Versioned, encrypted resource storage and the search index, on either backend.
//!
//! A request's writes are one transaction: the version rows, the heads, the index rows and a new
//! patient's data key together, or nothing. Bodies are sealed before they reach the database and
//! opened only for rows that the enforcement point released.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use diesel::prelude::*;
use fhir_profiles::search::{DateQuery, IndexFact};
use fhir_profiles::ResourceType;
use serde_json::{Map, Value};

use crate::audit::{self, AuditRecord, AuditSigner};
use crate::cache::BoundedMap;
use crate::crypto::{
    open_body, seal_body, BodyBinding, DataKey, DataKeyCache, KeyEncryptionKey, Pseudonymizer, DATA_KEY_CACHE_SIZE,
};
use crate::db::schema::{
    consent_generations, data_keys, resource_heads, resource_versions, search_dates, search_tokens,
};
use crate::db::unnest::{Column, Unnest};
use crate::db::{DbConnection, Manager, Pool};
use crate::enforce::{ConsentBook, Released};
use crate::error::GatewayError;
use diesel::r2d2::PooledConnection;

/// The key scope of resources that belong to no patient.
const SHARED_SCOPE: &str = "shared";
/// Bound on ids in one `IN (...)` list: SQLite limits bound parameters per statement.
const CHUNK: usize = 500;

/// The join of an index table (`search_tokens`, `search_dates`) to the heads that keeps only
/// the rows of each resource's current version: the one rule that makes old versions' index
/// rows invisible, for every query that reads an index.
macro_rules! current_version_of {
    ($index:ident) => {
        resource_heads::table.on(resource_heads::resource_type
            .eq($index::resource_type)
            .and(resource_heads::id.eq($index::id))
            .and(resource_heads::version.eq($index::version)))
    };
}

/// What the enforcement point reads of a stored row: never the body.
pub trait Stored {
    fn resource_type(&self) -> &str;
    fn id(&self) -> &str;
    fn version(&self) -> i64;
    fn patient(&self) -> Option<&str>;
    fn security_labels(&self) -> &str;
    fn author(&self) -> (Option<&str>, Option<&str>);
    /// The bare OID of the service event the row belongs to.
    fn service_event(&self) -> Option<&str>;
}

#[derive(Queryable, Selectable, Insertable, Clone, Debug)]
#[diesel(table_name = resource_heads, treat_none_as_default_value = false)]
pub struct Head {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub patient: Option<String>,
    pub security_labels: String,
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    pub last_updated: i64,
    pub service_event: Option<String>,
}

#[derive(Queryable, Selectable, Insertable, Clone)]
#[diesel(table_name = resource_versions, treat_none_as_default_value = false)]
pub struct VersionRow {
    pub resource_type: String,
    pub id: String,
    pub version: i64,
    pub patient: Option<String>,
    pub key_scope: String,
    pub security_labels: String,
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    pub last_updated: i64,
    pub method: String,
    pub body: Vec<u8>,
    pub service_event: Option<String>,
}

/// Heads and versions carry the same decision metadata under the same column names.
macro_rules! stored {
    ($($row:ty),*) => {$(
        impl Stored for $row {
            fn resource_type(&self) -> &str {
                &self.resource_type
            }
            fn id(&self) -> &str {
                &self.id
            }
            fn version(&self) -> i64 {
                self.version
            }
            fn patient(&self) -> Option<&str> {
                self.patient.as_deref()
            }
            fn security_labels(&self) -> &str {
                &self.security_labels
            }
            fn author(&self) -> (Option<&str>, Option<&str>) {
                (self.author_org.as_deref(), self.author_practitioner.as_deref())
            }
            fn service_event(&self) -> Option<&str> {
                self.service_event.as_deref()
            }
        }
    )*};
}
stored!(Head, VersionRow);

/// An index row belongs to one version of its resource and is never changed or removed: a
/// new version adds its own rows, and every query joins the head to keep only the current
/// version's (`current_version_of!`). So a write never reads or deletes index rows, and the
/// rows can be keyed for lookup alone (the table is its own search index) rather than also by
/// resource.
#[derive(Insertable)]
#[diesel(table_name = search_tokens, treat_none_as_default_value = false)]
struct TokenRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    param: &'a str,
    token: String,
    patient: Option<&'a str>,
    version: i64,
    system_token: Option<String>,
}

/// What a token search asks of an identifier, in the terms of the index: the identifier's
/// any-system token (`value` in any system), and, for `system|value` or `|value`, the token
/// of that exact form.
///
/// An identifier is filed in one row, under `any` with `exact` beside it (`system_token`);
/// rows written before migration 7, and a second identifier of one resource with the same
/// value in another system, are filed under `exact` alone, with no `system_token`. Every
/// lookup reads both forms: the rows whose key is `any` or `exact`, then [`TokenMatch::admits`].
#[derive(Clone, Debug)]
pub struct TokenMatch {
    pub any: String,
    pub exact: Option<String>,
}

impl TokenMatch {
    /// An identifier as it is filed and asked for exactly: `system|value`, or `|value` for one
    /// without a system. The one place that pairs the two tokens, for writes and lookups alike.
    pub fn exact(pseudonyms: &Pseudonymizer, param: &str, system: Option<&str>, value: &str) -> TokenMatch {
        TokenMatch {
            any: pseudonyms.token_any_system(param, value),
            exact: Some(pseudonyms.token(param, system, value)),
        }
    }

    /// `value` in any system.
    pub fn any_system(pseudonyms: &Pseudonymizer, param: &str, value: &str) -> TokenMatch {
        TokenMatch { any: pseudonyms.token_any_system(param, value), exact: None }
    }

    /// Whether an index row (its key and its `system_token`) is an identifier this asks for.
    pub fn admits(&self, token: &str, system_token: Option<&str>) -> bool {
        match &self.exact {
            None => token == self.any,
            Some(exact) => match system_token {
                Some(system_token) => token == self.any && system_token == exact,
                None => token == exact,
            },
        }
    }

    /// The keys to read: the rows any of `matches` may admit are filed under these.
    fn keys(matches: &[TokenMatch]) -> Vec<&str> {
        let mut keys: Vec<&str> =
            matches.iter().flat_map(|m| std::iter::once(m.any.as_str()).chain(m.exact.as_deref())).collect();
        keys.sort_unstable();
        keys.dedup();
        keys
    }
}

#[derive(Insertable)]
#[diesel(table_name = search_dates, treat_none_as_default_value = false)]
struct DateRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    param: &'a str,
    range_start: i64,
    range_end: i64,
    patient: Option<&'a str>,
    version: i64,
}

#[derive(Insertable)]
#[diesel(table_name = data_keys)]
struct NewDataKey<'a> {
    scope: &'a str,
    kek_id: &'a str,
    wrapped_key: Vec<u8>,
    created_at: i64,
}

/// A resource ready to be written: read and checked, its patient resolved.
pub struct NewResource {
    pub resource_type: ResourceType,
    pub json: Map<String, Value>,
    /// The patient pseudonym; `None` for Practitioner and Organization.
    pub patient: Option<String>,
    /// Space-separated security label codes the consent crate acts on.
    pub security_labels: String,
    pub facts: Vec<IndexFact>,
    /// Who writes it: organisation OID and practitioner, when a professional does.
    pub author_org: Option<String>,
    pub author_practitioner: Option<String>,
    /// The bare OID of the service event it belongs to, resolved through stored Encounters.
    pub service_event: Option<String>,
}

/// How a resource in a [`Store::write_all`] is written.
pub enum WriteKind {
    /// Version 1 of a new id.
    Create,
    /// The next version; `Some(v)` if the client said which version it last saw.
    Update(Option<i64>),
    /// Version 1 unless the id exists; an existing resource is left as it is.
    CreateIfAbsent,
}

pub struct Write {
    pub resource: NewResource,
    pub id: String,
    pub kind: WriteKind,
}

/// Version 1 of a new resource, stamped and encrypted by the request's own thread before it
/// queues for the writer: serialising and sealing bodies inside the one writer thread was a
/// fifth of its time during ingest. Used when the write turns out to create version 1 (a
/// `CreateIfAbsent` that finds the resource present drops it).
struct Sealed {
    last_updated: i64,
    plain: Vec<u8>,
    sealed: Vec<u8>,
}

/// A search criterion; several are ANDed, the values inside one are ORed.
pub enum Criterion {
    Ids(Vec<String>),
    Tokens { param: String, tokens: Vec<TokenMatch> },
    Patients(Vec<String>),
    Dates { param: String, queries: Vec<DateQuery> },
    LastUpdated(Vec<DateQuery>),
}

/// The length of SQLite's write-ahead log (in pages) past which the background checkpoint has
/// it started over: 256 MiB, under two seconds of ingest at full speed (the log grows by about
/// 40,000 frames a second; the log file ends up about twice as long, by what is written while
/// the thread copies). Every restart holds the writer for 0.1-0.4 s (its last round, below), so
/// not too often (twice the length was 2-3 % faster, within the noise, for a log file of 1 GB);
/// the log file keeps its size and is written over. The connections' automatic threshold,
/// 1 GiB, is only a backstop.
const WAL_RESTART_FRAMES: i32 = 65_536;
/// Before a restart, the checkpoint thread copies in rounds until a round finds the log grown
/// by no more than this many pages since the one before (or for at most this many rounds).
const WAL_TAIL_FRAMES: i32 = 200;
const WAL_TAIL_ROUNDS: usize = 8;
/// The longest and the shortest the checkpoint thread waits between two looks at the log.
const CHECKPOINT_PAUSE: Duration = Duration::from_secs(1);
const CHECKPOINT_PAUSE_MIN: Duration = Duration::from_millis(100);

/// What the checkpoint thread knows of the log between its looks: when to look next, and
/// whether the writer's last round failed to start the log over.
struct LogWatch {
    frames: i32,
    looked: Instant,
    /// Frames a second, between the last two looks that saw the same log.
    rate: f64,
    /// The writer was asked to copy the tail, so that the log starts over.
    asked: bool,
}

impl LogWatch {
    fn new() -> Self {
        LogWatch { frames: 0, looked: Instant::now(), rate: 0.0, asked: false }
    }

    /// The writer was asked to copy the tail at the last look, and the log has not started over
    /// since (a reader was inside it each time).
    fn restart_failed(&self, frames: i32) -> bool {
        self.asked && frames >= self.frames
    }

    /// Notes a look that found `frames` frames in the log, `asked` whether the writer now copies
    /// the tail, and answers when to look next: about when the log will reach
    /// [`WAL_RESTART_FRAMES`] at the rate it last grew.
    ///
    /// The automatic threshold must not be reached: past it every commit of the writer runs a
    /// checkpoint inline (when it was 65,536 frames, ingest took the log past it while the
    /// thread copied, stalling the writer for 0.3-2 s every few seconds). So the thread looks
    /// sooner as the log nears the restart length, and at least every second: with pauses of
    /// up to three seconds, ingest that began during one took the log to the 1 GiB backstop.
    /// Each look ends in syncs, which stall the writer's log writes for a few milliseconds;
    /// alternating ingest runs were no slower with one-second than with three-second pauses.
    fn next_look(&mut self, frames: i32, asked: bool) -> Duration {
        let over = std::mem::replace(&mut self.looked, Instant::now()).elapsed();
        self.next_look_after(frames, asked, over)
    }

    fn next_look_after(&mut self, frames: i32, asked: bool, over: Duration) -> Duration {
        let over = over.as_secs_f64().max(1e-3);
        self.rate = if frames >= self.frames {
            f64::from(frames - self.frames) / over
        } else {
            // It started over at some moment since the last look: it grew at least this fast.
            self.rate.max(f64::from(frames) / over)
        };
        self.asked = asked;
        self.frames = frames;
        // Asked to, the writer starts it over at once; the next look comes while the new log is
        // still shorter than this one, so that one that did not start over is told apart.
        let left = if asked { frames / 2 } else { (WAL_RESTART_FRAMES - frames).max(0) };
        if self.rate < 1.0 {
            return CHECKPOINT_PAUSE;
        }
        Duration::from_secs_f64(f64::from(left) / self.rate).clamp(CHECKPOINT_PAUSE_MIN, CHECKPOINT_PAUSE)
    }
}

#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    kek: Box<dyn KeyEncryptionKey>,
    pseudonyms: Pseudonymizer,
    data_keys: DataKeyCache,
    /// Every write and every audit record of this node goes to one thread holding one
    /// connection, which commits those of concurrent requests together ([`WriteQueue`]): SQLite
    /// allows one writer, and on either backend the audit log's appends are serial (its head
    /// row is locked until the commit), so one commit per group is what lets them scale.
    writer: WriteQueue,
    /// `type|identifier token` → id, for [`Store::id_by_identifier`].
    known_ids: BoundedMap<String>,
    /// Compiled patient Consents, for the enforcement point.
    consent_book: ConsentBook,
    signer: Arc<AuditSigner>,
}

pub fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// FHIR `instant` of epoch milliseconds.
pub fn instant(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Store {
    pub fn new(
        pool: Pool,
        kek: Box<dyn KeyEncryptionKey>,
        pseudonyms: Pseudonymizer,
        signer: AuditSigner,
        sqlite: bool,
    ) -> Self {
        let signer = Arc::new(signer);
        let writer = WriteQueue::start(pool.clone(), pseudonyms.clone(), kek.id().to_owned(), signer.clone());
        let store = Store {
            inner: Arc::new(Inner {
                pool,
                kek,
                pseudonyms,
                data_keys: DataKeyCache::new(DATA_KEY_CACHE_SIZE),
                writer,
                known_ids: BoundedMap::new(50_000),
                consent_book: ConsentBook::default(),
                signer,
            }),
        };
        if sqlite {
            store.checkpoint_in_background();
        }
        store.sign_audit_checkpoints_in_background();
        store
    }

    /// SQLite copies the write-ahead log into the database file in checkpoints. Left to itself
    /// it runs one inside whichever commit crosses the threshold, and that request (with every
    /// write queued behind it) waits for it; here a thread runs them instead, beside the
    /// writer, looking at the log at least every second ([`LogWatch`]). It ends with the store.
    ///
    /// A passive checkpoint never blocks the writer, but under steady writes it never finds the
    /// log fully copied at the moment a write begins, which is when SQLite starts the log over:
    /// the log would only grow, until the automatic threshold made every commit checkpoint and
    /// sync inline. So when the log passes [`WAL_RESTART_FRAMES`], the thread copies in rounds,
    /// each shorter than the one before, and then asks the writer to copy the last frames
    /// itself between two groups ([`WriteQueue::copy_log_tail`]); its next transaction starts
    /// the log over. That round holds up every write for its syncs and what was written during
    /// the thread's last round: 0.1-0.4 s under ingest. If the log did not start over all the
    /// same (a reader was inside it), the thread runs a `RESTART` checkpoint, which holds the
    /// writer until every reader has left the log: 0.2-1.3 s was measured under ingest.
    fn checkpoint_in_background(&self) {
        #[derive(QueryableByName)]
        struct Checkpointed {
            #[diesel(sql_type = diesel::sql_types::Integer)]
            log: i32,
        }
        let checkpoint = |conn: &mut DbConnection, mode: &str| -> Result<Checkpointed, diesel::result::Error> {
            let DbConnection::Sqlite(sqlite) = conn else { return Ok(Checkpointed { log: 0 }) };
            diesel::sql_query(format!("PRAGMA wal_checkpoint({mode})")).get_result(sqlite)
        };
        let inner = Arc::downgrade(&self.inner);
        let spawned = std::thread::Builder::new().name("sqlite-checkpoint".into()).spawn(move || {
            let mut pause = CHECKPOINT_PAUSE;
            let mut watch = LogWatch::new();
            loop {
                std::thread::sleep(pause);
                let Some(inner) = inner.upgrade() else { return };
                let Ok(mut conn) = inner.pool.get() else { continue };
                let outcome = checkpoint(&mut conn, "PASSIVE").and_then(|first| {
                    if watch.restart_failed(first.log) {
                        // Wait for the readers, holding the writer meanwhile.
                        checkpoint(&mut conn, "RESTART")?;
                        return Ok((0, false));
                    }
                    if first.log < WAL_RESTART_FRAMES {
                        return Ok((first.log, false));
                    }
                    // Each round copies what the log gained during the one before, in less
                    // time, until what is left for the writer is what one round's syncs let
                    // through: its round holds up every write, and copying some thousands of
                    // pages scattered over the database file took it 0.3-1.4 s.
                    let mut previous = first.log;
                    for _ in 0..WAL_TAIL_ROUNDS {
                        let round = checkpoint(&mut conn, "PASSIVE")?;
                        if round.log - std::mem::replace(&mut previous, round.log) <= WAL_TAIL_FRAMES {
                            break;
                        }
                    }
                    inner.writer.catch_up.store(true, Ordering::Relaxed);
                    Ok((previous, true))
                });
                pause = match outcome {
                    Ok((frames, asked)) => watch.next_look(frames, asked),
                    Err(error) => {
                        tracing::warn!(%error, "background checkpoint failed");
                        CHECKPOINT_PAUSE
                    }
                };
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no background checkpoint thread: commits will checkpoint");
        }
    }

    pub fn pseudonyms(&self) -> &Pseudonymizer {
        &self.inner.pseudonyms
    }

    /// The key that verifies this deployment's audit checkpoints.
    pub fn audit_key(&self) -> &audit_log::VerifyingKey {
        self.inner.signer.verifying_key()
    }

    /// A page of the audit log (see [`audit::search_log`]).
    pub fn read_log(&self, query: &audit::LogQuery) -> Result<audit::LogPage, GatewayError> {
        audit::search_log(&mut *self.conn()?, query)
    }

    /// Commits the audit records of a request that wrote nothing (a read, a search, a refusal),
    /// together with those of concurrent requests; returns once they are durable. A request
    /// whose records cannot be written must not answer with data: the error is a 503.
    pub fn record(&self, audit: Vec<AuditRecord>) -> Result<(), GatewayError> {
        self.inner.writer.submit(Arc::new(Vec::new()), Vec::new(), Vec::new(), audit).map(drop)
    }

    /// Checkpoints are signed every N entries or T seconds; when the log is idle, a tick signs
    /// the entries that would otherwise wait for the next append. The thread ends with the store.
    fn sign_audit_checkpoints_in_background(&self) {
        let inner = Arc::downgrade(&self.inner);
        let tick = self.inner.signer.tick();
        let spawned = std::thread::Builder::new().name("audit-checkpoint".into()).spawn(move || loop {
            std::thread::sleep(tick);
            let Some(inner) = inner.upgrade() else { return };
            let store = Store { inner };
            if let Err(error) = store.record(Vec::new()) {
                tracing::warn!(%error, "the audit checkpoint tick failed");
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "no audit checkpoint thread: checkpoints are signed as entries arrive");
        }
    }

    pub fn consent_book(&self) -> &ConsentBook {
        &self.inner.consent_book
    }

    fn conn(&self) -> Result<diesel::r2d2::PooledConnection<crate::db::Manager>, GatewayError> {
        Ok(self.inner.pool.get()?)
    }

    /// Readiness: the database answers.
    pub fn ping(&self) -> Result<(), GatewayError> {
        use diesel::connection::SimpleConnection;
        self.conn()?.batch_execute("SELECT 1")?;
        Ok(())
    }

    /// The node writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        &self.inner.writer.stats
    }

    /// The pseudonym of a stored Patient, `None` when there is no such Patient.
    pub fn patient_pseudonym(&self, patient_id: &str) -> Result<Option<String>, GatewayError> {
        Ok(self.head(ResourceType::Patient, patient_id)?.and_then(|head| head.patient))
    }

    pub fn head(&self, resource_type: ResourceType, id: &str) -> Result<Option<Head>, GatewayError> {
        Ok(head_on(&mut *self.conn()?, resource_type.as_str(), id)?)
    }

    /// The current version of a resource, found through its head in one query (a read by id).
    pub fn current(&self, resource_type: ResourceType, id: &str) -> Result<Option<VersionRow>, GatewayError> {
        let current = resource_heads::table
            .filter(resource_heads::resource_type.eq(resource_type.as_str()))
            .filter(resource_heads::id.eq(id))
            .select(resource_heads::version)
            .single_value();
        let query = resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .filter(resource_versions::version.nullable().eq(current));
        Ok(crate::on_backend!(&mut *self.conn()?, |conn| query
            .select(VersionRow::as_select())
            .get_result(conn)
            .optional())?)
    }

    /// One version of a resource (the current one is named by its head).
    pub fn version(
        &self,
        resource_type: ResourceType,
        id: &str,
        version: i64,
    ) -> Result<Option<VersionRow>, GatewayError> {
        let query = resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .filter(resource_versions::version.eq(version));
        Ok(crate::on_backend!(&mut *self.conn()?, |conn| query
            .select(VersionRow::as_select())
            .get_result(conn)
            .optional())?)
    }

    /// Every version, newest first.
    pub fn history(&self, resource_type: ResourceType, id: &str) -> Result<Vec<VersionRow>, GatewayError> {
        Ok(resource_versions::table
            .filter(resource_versions::resource_type.eq(resource_type.as_str()))
            .filter(resource_versions::id.eq(id))
            .order(resource_versions::version.desc())
            .select(VersionRow::as_select())
            .load(&mut self.conn()?)?)
    }

    /// The current versions of released heads (of any types), in the heads' order: one query
    /// per type and chunk of ids (older versions of the same ids are skipped in memory; they are
    /// few).
    pub fn current_versions(&self, heads: &[Released<Head>]) -> Result<Vec<VersionRow>, GatewayError> {
        let mut wanted: HashMap<&str, HashMap<&str, i64>> = HashMap::new();
        for head in heads {
            let head = head.get();
            wanted.entry(head.resource_type.as_str()).or_default().insert(head.id.as_str(), head.version);
        }
        let mut found: HashMap<(String, String), VersionRow> = HashMap::with_capacity(heads.len());
        let mut conn = self.conn()?;
        for (resource_type, versions) in &wanted {
            let ids: Vec<&str> = versions.keys().copied().collect();
            for chunk in ids.chunks(CHUNK) {
                let rows: Vec<VersionRow> = resource_versions::table
                    .filter(resource_versions::resource_type.eq(resource_type))
                    .filter(resource_versions::id.eq_any(chunk))
                    .select(VersionRow::as_select())
                    .load(&mut conn)?;
                for row in rows {
                    if versions.get(row.id.as_str()) == Some(&row.version) {
                        found.insert((row.resource_type.clone(), row.id.clone()), row);
                    }
                }
            }
        }
        heads
            .iter()
            .map(|head| {
                let key = (head.get().resource_type.clone(), head.get().id.clone());
                found.remove(&key).ok_or_else(|| GatewayError::Internal("a head without its version".into()))
            })
            .collect()
    }

    /// Decrypts a released row.
    pub fn open(&self, row: &Released<VersionRow>) -> Result<Vec<u8>, GatewayError> {
        let row = row.get();
        let key =
            self.data_key(&row.key_scope)?.ok_or_else(|| GatewayError::Internal("a data key is missing".into()))?;
        let binding = BodyBinding {
            resource_type: &row.resource_type,
            id: &row.id,
            version: row.version,
            key_scope: &row.key_scope,
            patient: row.patient.as_deref(),
            security_labels: &row.security_labels,
            author: (row.author_org.as_deref(), row.author_practitioner.as_deref()),
            service_event: row.service_event.as_deref(),
        };
        Ok(open_body(&key, &binding, &row.body)?)
    }

    fn data_key(&self, scope: &str) -> Result<Option<DataKey>, GatewayError> {
        if let Some(key) = self.inner.data_keys.get(scope) {
            return Ok(Some(key));
        }
        let wrapped: Option<Vec<u8>> = data_keys::table
            .filter(data_keys::scope.eq(scope))
            .select(data_keys::wrapped_key)
            .get_result(&mut self.conn()?)
            .optional()?;
        match wrapped {
            Some(wrapped) => {
                let key = self.inner.kek.unwrap(scope, &wrapped)?;
                self.inner.data_keys.put(scope, key.clone());
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    /// Stores a new resource as version 1 of `id` (a fresh, server-chosen id).
    pub fn create(
        &self,
        resource: NewResource,
        id: &str,
        audit: Vec<AuditRecord>,
    ) -> Result<(Head, Vec<u8>), GatewayError> {
        self.write_one(Write { resource, id: id.to_owned(), kind: WriteKind::Create }, audit)
    }

    /// Stores a new version of `id`. `if_match` is the version the client last saw, if it said.
    /// A Patient keeps the pseudonym it was created with: its HETU cannot change under it.
    pub fn update(
        &self,
        resource: NewResource,
        id: &str,
        if_match: Option<i64>,
        audit: Vec<AuditRecord>,
    ) -> Result<(Head, Vec<u8>), GatewayError> {
        self.write_one(Write { resource, id: id.to_owned(), kind: WriteKind::Update(if_match) }, audit)
    }

    fn write_one(&self, write: Write, audit: Vec<AuditRecord>) -> Result<(Head, Vec<u8>), GatewayError> {
        self.write_all(vec![write], audit)?
            .pop()
            .flatten()
            .ok_or_else(|| GatewayError::Internal("a create or update wrote nothing".into()))
    }

    /// Writes every resource in one transaction: all of them, or none. Returns, in order, what
    /// each write stored (`None` for a [`WriteKind::CreateIfAbsent`] that found its resource).
    ///
    /// A patient's first data key is inserted in the same transaction, so a new patient's first
    /// document costs one commit. Two writers racing to create the same key or the same
    /// resource meet a unique violation; the loser runs again once and then sees the winner's
    /// rows.
    ///
    /// `audit` is appended to the audit log in the same transaction: the records of the change
    /// commit with it, or neither does.
    pub fn write_all(&self, writes: Vec<Write>, audit: Vec<AuditRecord>) -> Result<Written, GatewayError> {
        let writes = Arc::new(writes);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let keys = self.data_keys_for(&writes, attempt == 1)?;
            let sealed = seal_new_versions(&writes, &keys)?;
            // Only a derived id or a new data key can meet a concurrent writer's equal row; any
            // other conflict would only repeat.
            let may_race = keys.iter().any(|(_, _, wrapped)| wrapped.is_some())
                || writes.iter().any(|write| matches!(write.kind, WriteKind::CreateIfAbsent));
            match self.commit(&writes, keys, sealed, audit.clone()) {
                Err(GatewayError::Conflict(_)) if attempt < 3 && may_race => continue,
                other => return other,
            }
        }
    }

    /// The data key of each scope the writes need, generated (and wrapped) where none exists yet.
    /// Outside the transaction: unwrapping is CPU work and may read.
    ///
    /// On the `first` attempt, the scope of a Patient these writes create is not looked up: a
    /// new patient has no key yet (a new patient's first document is most of ingest, and the
    /// lookup was one query of every such submission). Where a key exists all the same (another
    /// request created it a moment ago, or a second Patient resource carries the same HETU),
    /// inserting the new one meets it, and the next attempt looks it up.
    fn data_keys_for(&self, writes: &[Write], first: bool) -> Result<NewKeys, GatewayError> {
        let mut keys: NewKeys = Vec::new();
        for write in writes {
            let scope = write.resource.patient.clone().unwrap_or_else(|| SHARED_SCOPE.to_owned());
            if keys.iter().any(|(s, _, _)| *s == scope) {
                continue;
            }
            let new_patient = first
                && write.resource.resource_type == ResourceType::Patient
                && matches!(write.kind, WriteKind::Create | WriteKind::CreateIfAbsent)
                && self.inner.data_keys.get(&scope).is_none();
            let stored = if new_patient { None } else { self.data_key(&scope)? };
            match stored {
                Some(key) => keys.push((scope, key, None)),
                None => {
                    let key = DataKey::generate()?;
                    let wrapped = self.inner.kek.wrap(&scope, &key)?;
                    keys.push((scope, key, Some(wrapped)));
                }
            }
        }
        Ok(keys)
    }

    fn commit(
        &self,
        writes: &Arc<Vec<Write>>,
        keys: NewKeys,
        sealed: Vec<Option<Sealed>>,
        audit: Vec<AuditRecord>,
    ) -> Result<Written, GatewayError> {
        let written = self.inner.writer.submit(writes.clone(), keys.clone(), sealed, audit)?;
        // Only keys that committed are cached.
        for (scope, key, _) in keys {
            self.inner.data_keys.put(&scope, key);
        }
        Ok(written)
    }

    /// The generation of each patient's Consents (how many Consent writes they have had), for
    /// the patients that have any. A patient missing from the answer has never had a Consent.
    pub fn consent_generations(&self, patients: &[&str]) -> Result<HashMap<String, i64>, GatewayError> {
        let mut generations = HashMap::new();
        if patients.is_empty() {
            return Ok(generations);
        }
        let mut conn = self.conn()?;
        let columns = (consent_generations::patient, consent_generations::generation);
        if let [patient] = patients {
            // The common case (a read): a statement SQLite keeps prepared, unlike an IN list.
            let query = consent_generations::table.filter(consent_generations::patient.eq(patient)).select(columns);
            let row: Option<(String, i64)> = crate::on_backend!(&mut *conn, |conn| query.get_result(conn).optional())?;
            generations.extend(row);
            return Ok(generations);
        }
        for chunk in patients.chunks(CHUNK) {
            let rows: Vec<(String, i64)> = consent_generations::table
                .filter(consent_generations::patient.eq_any(chunk))
                .select(columns)
                .load(&mut conn)?;
            generations.extend(rows);
        }
        Ok(generations)
    }

    /// The oldest stored resource of a type carrying an identifier whose id is `usable`. An
    /// internal lookup for resolving a document's participants: callers must not reveal the
    /// result. Answers are remembered: resources are never deleted, so an id once found stays
    /// right, and every submission of a known patient skips the queries.
    pub fn id_by_identifier(
        &self,
        resource_type: ResourceType,
        system: &str,
        value: &str,
        usable: impl Fn(&str) -> bool,
    ) -> Result<Option<String>, GatewayError> {
        let wanted = TokenMatch::exact(&self.inner.pseudonyms, "identifier", Some(system), value);
        let exact = wanted.exact.as_deref().unwrap_or_default();
        let key = format!("{resource_type}|{exact}");
        if let Some(id) = self.inner.known_ids.get(&key) {
            return Ok(Some(id));
        }
        // One statement, prepared once per connection: a new patient's first document misses the
        // cache and comes here, so this runs for most submissions. Each key is its own branch of a
        // UNION ALL, an equality on the key's leading columns: PostgreSQL planned `token = $1
        // OR token = $2` (and `= ANY`) on a fresh database as a filter over every identifier row
        // of the type, which made each lookup a scan (78 ms at 8,000 patients).
        let rt = resource_type.as_str();
        let mut conn = self.conn()?;
        macro_rules! filed_under {
            ($token:expr) => {
                search_tokens::table
                    .inner_join(current_version_of!(search_tokens))
                    .filter(search_tokens::resource_type.eq(rt))
                    .filter(search_tokens::param.eq("identifier"))
                    .filter(search_tokens::token.eq($token))
                    .select((
                        resource_heads::last_updated,
                        resource_heads::id,
                        search_tokens::token,
                        search_tokens::system_token,
                    ))
            };
        }
        let rows: Vec<(i64, String, String, Option<String>)> = crate::on_backend!(&mut *conn, |c| {
            filed_under!(wanted.any.as_str()).union_all(filed_under!(exact)).load(c)
        })?;
        let mut matches: Vec<(i64, String)> = rows
            .into_iter()
            .filter(|(_, _, token, system_token)| wanted.admits(token, system_token.as_deref()))
            .map(|(updated, id, _, _)| (updated, id))
            .collect();
        matches.sort();
        let found = matches.into_iter().map(|(_, id)| id).find(|id| usable(id));
        if let Some(id) = &found {
            self.inner.known_ids.put(&key, id.clone());
        }
        Ok(found)
    }

    /// Remembers the id of a resource just committed with this identifier.
    pub fn remember_identifier(&self, resource_type: ResourceType, system: &str, value: &str, id: &str) {
        let token = self.inner.pseudonyms.token("identifier", Some(system), value);
        self.inner.known_ids.put(&format!("{resource_type}|{token}"), id.to_owned());
    }

    /// The heads matching every criterion, oldest change first. Nothing is decrypted here; the
    /// caller releases, counts and pages.
    pub fn search(&self, resource_type: ResourceType, criteria: &[Criterion]) -> Result<Vec<Head>, GatewayError> {
        let rt = resource_type.as_str();
        let mut conn = self.conn()?;
        let mut candidates: Option<HashSet<String>> = None;
        let narrow = |candidates: &mut Option<HashSet<String>>, found: HashSet<String>| {
            *candidates = Some(match candidates.take() {
                Some(current) => current.intersection(&found).cloned().collect(),
                None => found,
            });
        };
        for criterion in criteria {
            let found: HashSet<String> = match criterion {
                Criterion::Ids(ids) => ids.iter().cloned().collect(),
                Criterion::Tokens { param, tokens } => {
                    let mut found = HashSet::new();
                    for chunk in TokenMatch::keys(tokens).chunks(CHUNK) {
                        let rows: Vec<(String, String, Option<String>)> = search_tokens::table
                            .inner_join(current_version_of!(search_tokens))
                            .filter(search_tokens::resource_type.eq(rt))
                            .filter(search_tokens::param.eq(param))
                            .filter(search_tokens::token.eq_any(chunk))
                            .select((search_tokens::id, search_tokens::token, search_tokens::system_token))
                            .load(&mut conn)?;
                        found.extend(rows.into_iter().filter_map(|(id, token, system_token)| {
                            tokens.iter().any(|m| m.admits(&token, system_token.as_deref())).then_some(id)
                        }));
                    }
                    found
                }
                Criterion::Patients(patients) => {
                    let mut found = HashSet::new();
                    for chunk in patients.chunks(CHUNK) {
                        found.extend(
                            resource_heads::table
                                .filter(resource_heads::resource_type.eq(rt))
                                .filter(resource_heads::patient.eq_any(chunk))
                                .select(resource_heads::id)
                                .load::<String>(&mut conn)?,
                        );
                    }
                    found
                }
                Criterion::Dates { param, queries } => search_dates::table
                    .inner_join(current_version_of!(search_dates))
                    .filter(search_dates::resource_type.eq(rt))
                    .filter(search_dates::param.eq(param))
                    .select((search_dates::id, search_dates::range_start, search_dates::range_end))
                    .load::<(String, i64, i64)>(&mut conn)?
                    .into_iter()
                    .filter(|(_, start, end)| queries.iter().any(|q| q.matches(*start, *end)))
                    .map(|(id, _, _)| id)
                    .collect(),
                Criterion::LastUpdated(_) => continue,
            };
            narrow(&mut candidates, found);
        }
        let mut heads: Vec<Head> = match candidates {
            None => resource_heads::table
                .filter(resource_heads::resource_type.eq(rt))
                .select(Head::as_select())
                .load(&mut conn)?,
            Some(ids) => {
                let ids: Vec<String> = ids.into_iter().collect();
                let mut heads = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(CHUNK) {
                    heads.extend(
                        resource_heads::table
                            .filter(resource_heads::resource_type.eq(rt))
                            .filter(resource_heads::id.eq_any(chunk))
                            .select(Head::as_select())
                            .load(&mut conn)?,
                    );
                }
                heads
            }
        };
        for criterion in criteria {
            if let Criterion::LastUpdated(queries) = criterion {
                heads.retain(|head| {
                    let second = head.last_updated.div_euclid(1000);
                    queries.iter().any(|q| q.matches(second, second))
                });
            }
        }
        heads.sort_by(|a, b| (a.last_updated, &a.id).cmp(&(b.last_updated, &b.id)));
        Ok(heads)
    }
}

/// Inserts index rows: on PostgreSQL in one statement (each statement is a round trip), on
/// SQLite one by one (in-process; diesel's multi-row insert does not reach SQLite through the
/// connection enum).
macro_rules! insert_rows {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let rows = $rows;
        if !rows.is_empty() {
            match &mut *$conn {
                DbConnection::Postgres(conn) => {
                    diesel::insert_into($table).values(rows).execute(conn)?;
                }
                DbConnection::Sqlite(conn) => {
                    for row in rows.iter() {
                        diesel::insert_into($table).values(row).execute(conn)?;
                    }
                }
            }
        }
    }};
}

type Written = Vec<Option<(Head, Vec<u8>)>>;
/// The data keys of a request's writes: scope, key, and the wrapped key when it is new.
type NewKeys = Vec<(String, DataKey, Option<Vec<u8>>)>;

/// What writing needs besides the connection.
struct WriteContext {
    pseudonyms: Pseudonymizer,
    kek_id: String,
    signer: Arc<AuditSigner>,
}

/// One request's writes inside an open transaction: first its audit records, then its new data
/// keys and each resource. Appending first takes the log's head lock before any row lock, so
/// writers on several nodes always lock in the same order and cannot deadlock; the head stays
/// locked until the commit either way.
/// The writer's transaction. On SQLite it begins `IMMEDIATE`, taking the write lock (waiting
/// for it under the busy timeout) before it reads the audit head: a deferred transaction that
/// reads and then writes cannot wait, and fails with "database is locked" if any other
/// connection wrote in between (`vaitio migrate`, another process on the same file); that
/// failure would refuse every read in the group with 503.
pub(crate) fn write_transaction(
    conn: &mut DbConnection,
    work: impl FnOnce(&mut DbConnection) -> Result<(), GatewayError>,
) -> Result<(), GatewayError> {
    use diesel::connection::{AnsiTransactionManager, TransactionManager};
    type Manager = <DbConnection as Connection>::TransactionManager;
    match conn {
        DbConnection::Sqlite(sqlite) => AnsiTransactionManager::begin_transaction_sql(sqlite, "BEGIN IMMEDIATE")?,
        DbConnection::Postgres(_) => Manager::begin_transaction(conn)?,
    }
    match work(conn) {
        Ok(()) => Ok(Manager::commit_transaction(conn)?),
        Err(error) => {
            // The work's error says more than a failed rollback would; a connection left in a
            // transaction is dropped by the caller.
            let _ = Manager::rollback_transaction(conn);
            Err(error)
        }
    }
}

/// One request's audit records, then its rows: every writer takes the log's head lock before
/// any row lock, so nodes cannot deadlock.
fn write_request(conn: &mut DbConnection, context: &WriteContext, job: &mut Job) -> Result<Written, GatewayError> {
    audit::append(conn, &job.audit, &context.signer, now_millis())?;
    write_rows(conn, context, &job.keys, &job.writes, &mut job.sealed)
}

/// A request's new data keys and resource rows.
fn write_rows(
    conn: &mut DbConnection,
    context: &WriteContext,
    keys: &NewKeys,
    writes: &[Write],
    sealed: &mut [Option<Sealed>],
) -> Result<Written, GatewayError> {
    for row in new_key_rows(keys, &context.kek_id, now_millis()) {
        let insert = diesel::insert_into(data_keys::table).values(&row);
        crate::on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?;
    }
    writes
        .iter()
        .enumerate()
        .map(|(n, write)| {
            let scope = write.resource.patient.as_deref().unwrap_or(SHARED_SCOPE);
            let key = keys.iter().find(|(s, _, _)| s == scope).map(|(_, key, _)| key);
            let key = key.ok_or_else(|| GatewayError::Internal("no data key for a write".into()))?;
            // Taken, not copied: the writer owns the job. If the group fails and runs again
            // request by request, a write whose body was taken seals it afresh.
            let prepared = sealed.get_mut(n).and_then(Option::take);
            write_resource(conn, &context.pseudonyms, write, key, scope, prepared)
        })
        .collect()
}

/// Version 1 of each write that may create one, stamped and sealed under its scope's key.
fn seal_new_versions(writes: &[Write], keys: &NewKeys) -> Result<Vec<Option<Sealed>>, GatewayError> {
    writes
        .iter()
        .map(|write| {
            if matches!(write.kind, WriteKind::Update(_)) {
                return Ok(None);
            }
            let scope = write.resource.patient.as_deref().unwrap_or(SHARED_SCOPE);
            let Some(key) = keys.iter().find(|(s, _, _)| s == scope).map(|(_, key, _)| key) else { return Ok(None) };
            let last_updated = now_millis();
            let (plain, sealed) = stamp_and_seal(&write.resource, &write.id, 1, last_updated, key, scope)?;
            Ok(Some(Sealed { last_updated, plain, sealed }))
        })
        .collect()
}

/// A version's body as stored: stamped with its id and meta, then encrypted and bound to the
/// metadata it is filed under.
fn stamp_and_seal(
    resource: &NewResource,
    id: &str,
    version: i64,
    last_updated: i64,
    key: &DataKey,
    scope: &str,
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    let resource_type = resource.resource_type.as_str();
    let body = stamped_body(&resource.json, resource_type, id, version, last_updated)?;
    let binding = BodyBinding {
        resource_type,
        id,
        version,
        key_scope: scope,
        patient: resource.patient.as_deref(),
        security_labels: &resource.security_labels,
        author: (resource.author_org.as_deref(), resource.author_practitioner.as_deref()),
        service_event: resource.service_event.as_deref(),
    };
    let sealed = seal_body(key, &binding, &body)?;
    Ok((body, sealed))
}

/// A node's writer: one thread, one connection, and group commit. Requests queue their writes
/// and audit records;
/// the thread takes every request waiting (up to [`WriteQueue::GROUP`]), writes each inside a
/// savepoint of one transaction, commits once, and only then answers them all. A request whose
/// writes fail is rolled back to its savepoint alone. The queue is first come, first served, so
/// no writer waits behind luckier ones, and the connection's page cache stays warm (SQLite drops
/// a connection's cache whenever another connection has written).
struct WriteQueue {
    jobs: mpsc::Sender<Job>,
    stats: Arc<WriterStats>,
    /// Set by the SQLite checkpoint thread when the log has been copied up to its last few
    /// frames: the writer copies those itself between two groups, when no write can add more,
    /// so that its next transaction starts the log over (see `Store::checkpoint_in_background`).
    catch_up: Arc<AtomicBool>,
}

/// What the writer has done since the node started, for `/metrics`: the mean group size
/// (`jobs / groups`) says how much group commit is saving, and `busy` how close the one writer
/// is to saturation.
#[derive(Default, Debug)]
pub struct WriterStats {
    pub groups: AtomicU64,
    pub jobs: AtomicU64,
    pub busy_micros: AtomicU64,
}

struct Job {
    writes: Arc<Vec<Write>>,
    keys: NewKeys,
    /// For each of `writes`, its version 1 prepared ahead, when it may create one.
    sealed: Vec<Option<Sealed>>,
    audit: Vec<AuditRecord>,
    answer: mpsc::SyncSender<(Result<Written, GatewayError>, Job)>,
}

impl Job {
    /// Answers the job's request and hands the job back with the answer, so that the request's
    /// thread frees its resources, bodies and records rather than the writer, whose time every
    /// queued request waits for (dropping finished jobs was 3.5 % of it during ingest).
    fn answer(self, result: Result<Written, GatewayError>) {
        let answer = self.answer.clone();
        let _ = answer.send((result, self));
    }
}

impl WriteQueue {
    const GROUP: usize = 64;

    fn start(pool: Pool, pseudonyms: Pseudonymizer, kek_id: String, signer: Arc<AuditSigner>) -> WriteQueue {
        let (jobs, queue) = mpsc::channel::<Job>();
        let context = WriteContext { pseudonyms, kek_id, signer };
        let stats = Arc::new(WriterStats::default());
        let counted = stats.clone();
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
                    Self::commit_group(&mut held, &pool, &context, group)
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
        WriteQueue { jobs, stats, catch_up }
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
        pool: &Pool,
        context: &WriteContext,
        mut group: Vec<Job>,
    ) {
        let conn = match held.as_mut() {
            Some(conn) => conn,
            None => match pool.get() {
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
                        job.answer(Err(GatewayError::Unavailable(format!("connection pool: {error}"))));
                    }
                    return;
                }
            },
        };
        let recording_only = |job: &Job| job.writes.is_empty() && job.keys.is_empty();
        // First the common case, that every request's writes succeed: the whole group in one
        // transaction, every request's audit records appended together (one turn of the log's
        // head, before any row, as in `write_request`), no savepoints. A savepoint makes SQLite
        // copy each page a request touches into a sub-journal first, which was a fifth of the
        // writer's time during ingest.
        let mut results: Vec<Result<Written, GatewayError>> = Vec::with_capacity(group.len());
        let mut committed = write_transaction(conn, |conn| {
            // Also with no records at all: the idle tick is such a request, and the append is
            // where a checkpoint that is due gets signed.
            let all: Vec<AuditRecord> = group.iter().flat_map(|job| job.audit.iter().cloned()).collect();
            audit::append(conn, &all, &context.signer, now_millis())?;
            let only_creating =
                group.iter().filter(|job| !recording_only(job)).flat_map(|job| job.writes.iter()).all(|write| {
                    matches!(write.kind, WriteKind::Create | WriteKind::CreateIfAbsent)
                        && write.resource.resource_type != ResourceType::Consent
                });
            // Only on PostgreSQL: SQLite runs in-process, so a statement costs no round trip,
            // while a multi-row INSERT of varying length is prepared afresh for every group
            // (its writer took 540 µs a document one row at a time and 880-960 µs batched).
            if let (true, DbConnection::Postgres(pg)) = (only_creating, &mut *conn) {
                let writing: Vec<&Job> = group.iter().filter(|job| !recording_only(job)).collect();
                results.extend(write_created(pg, context, &writing)?.into_iter().map(Ok));
            } else {
                for job in group.iter_mut().filter(|job| !recording_only(job)) {
                    results.push(Ok(write_rows(conn, context, &job.keys, &job.writes, &mut job.sealed)?));
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
            // answers that request alone.
            results = Vec::with_capacity(group.len());
            let records: Vec<AuditRecord> =
                group.iter().filter(|job| recording_only(job)).flat_map(|job| job.audit.iter().cloned()).collect();
            committed = write_transaction(conn, |conn| {
                let together = !records.is_empty()
                    && conn.transaction(|conn| audit::append(conn, &records, &context.signer, now_millis())).is_ok();
                for job in &mut group {
                    results.push(if together && recording_only(job) {
                        Ok(Vec::new())
                    } else {
                        conn.transaction(|conn| write_request(conn, context, job))
                    });
                }
                Ok(())
            });
        }
        if let Err(error) = &committed {
            // A connection whose commit failed is not kept.
            *held = None;
            tracing::warn!(%error, "a group of writes did not commit");
        }
        for (job, result) in group.into_iter().zip(results) {
            let answer = match &committed {
                Ok(()) => result,
                Err(_) => Err(GatewayError::Unavailable("the write did not commit".into())),
            };
            job.answer(answer);
        }
    }

    /// Queues a request's writes and waits until they are committed (or refused).
    fn submit(
        &self,
        writes: Arc<Vec<Write>>,
        keys: NewKeys,
        sealed: Vec<Option<Sealed>>,
        audit: Vec<AuditRecord>,
    ) -> Result<Written, GatewayError> {
        let (answer, answered) = mpsc::sync_channel(1);
        let stopped = || GatewayError::Unavailable("the database writer has stopped".into());
        self.jobs.send(Job { writes, keys, sealed, audit, answer }).map_err(|_| stopped())?;
        let (written, _job) = answered.recv().map_err(|_| stopped())?;
        written
    }
}

fn write_resource(
    conn: &mut DbConnection,
    pseudonyms: &Pseudonymizer,
    write: &Write,
    key: &DataKey,
    scope: &str,
    prepared: Option<Sealed>,
) -> Result<Option<(Head, Vec<u8>)>, GatewayError> {
    let Write { resource, id, kind } = write;
    let id = id.as_str();
    let resource_type = resource.resource_type.as_str();
    let current: Option<Head> = match kind {
        // A `CreateIfAbsent` learns whether its resource exists by inserting the head (below):
        // for a new patient's first document the lookup was a miss every time.
        WriteKind::Create | WriteKind::CreateIfAbsent => None,
        WriteKind::Update(_) => head_on(conn, resource_type, id)?,
    };
    let version = match (kind, &current) {
        (WriteKind::Create | WriteKind::CreateIfAbsent, _) => 1,
        (WriteKind::Update(_), None) => {
            return Err(GatewayError::NotFound { resource_type: resource_type.to_owned(), id: id.to_owned() })
        }
        (WriteKind::Update(if_match), Some(head)) => {
            if if_match.is_some_and(|expected| expected != head.version) {
                return Err(GatewayError::PreconditionFailed { current: head.version });
            }
            if resource.resource_type == ResourceType::Patient && head.patient != resource.patient {
                return Err(GatewayError::Unprocessable(
                    "a Patient's HETU cannot be changed by an update: the pseudonym every record of this patient is filed under derives from it".into(),
                ));
            }
            head.version + 1
        }
    };
    let updating = current.is_some();
    let (last_updated, body, sealed) = match prepared.filter(|_| version == 1) {
        Some(ready) => (ready.last_updated, ready.plain, ready.sealed),
        None => {
            let last_updated = now_millis();
            let (body, sealed) = stamp_and_seal(resource, id, version, last_updated, key, scope)?;
            (last_updated, body, sealed)
        }
    };
    let rows = new_rows(pseudonyms, write, scope, version, last_updated, sealed, updating);
    let head = rows.head;
    if !updating {
        let inserted = if matches!(kind, WriteKind::CreateIfAbsent) {
            crate::on_backend!(&mut *conn, |c| diesel::insert_into(resource_heads::table)
                .values(&head)
                .on_conflict_do_nothing()
                .execute(c))?
        } else {
            let insert = diesel::insert_into(resource_heads::table).values(&head);
            crate::on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?
        };
        if inserted == 0 {
            // It exists: stored earlier, or by another request of this group.
            return Ok(None);
        }
    }
    // Each statement on the concrete connection, where its prepared statement is found by its
    // type rather than by rendering its SQL (see `on_backend!`).
    let insert = diesel::insert_into(resource_versions::table).values(&rows.version);
    crate::on_backend!(&mut *conn, |c| insert.execute(c)).map_err(conflict)?;
    if updating {
        let target = resource_heads::table
            .filter(resource_heads::resource_type.eq(resource_type))
            .filter(resource_heads::id.eq(id));
        let update = diesel::update(target).set((
            resource_heads::version.eq(version),
            resource_heads::patient.eq(&head.patient),
            resource_heads::security_labels.eq(&head.security_labels),
            resource_heads::author_org.eq(&head.author_org),
            resource_heads::author_practitioner.eq(&head.author_practitioner),
            resource_heads::last_updated.eq(last_updated),
            resource_heads::service_event.eq(&head.service_event),
        ));
        crate::on_backend!(&mut *conn, |c| update.execute(c))?;
    }
    if let (ResourceType::Consent, Some(patient)) = (resource.resource_type, resource.patient.as_deref()) {
        // Every node's cache of this patient's compiled Consents is stale from this commit on.
        // (The multi-backend connection has no upsert; each backend has its own.)
        let values = (consent_generations::patient.eq(patient), consent_generations::generation.eq(1i64));
        let raise = consent_generations::generation.eq(consent_generations::generation + 1i64);
        match &mut *conn {
            DbConnection::Postgres(conn) => diesel::insert_into(consent_generations::table)
                .values(values)
                .on_conflict(consent_generations::patient)
                .do_update()
                .set(raise)
                .execute(conn)?,
            DbConnection::Sqlite(conn) => diesel::insert_into(consent_generations::table)
                .values(values)
                .on_conflict(consent_generations::patient)
                .do_update()
                .set(raise)
                .execute(conn)?,
        };
    }
    insert_rows!(conn, search_tokens::table, &rows.tokens);
    insert_rows!(conn, search_dates::table, &rows.dates);
    Ok(Some((head, body)))
}

/// The rows of one new version of a resource: the version, its head, and its index rows.
struct NewRows<'a> {
    version: VersionRow,
    head: Head,
    tokens: Vec<TokenRow<'a>>,
    dates: Vec<DateRow<'a>>,
}

fn new_rows<'a>(
    pseudonyms: &Pseudonymizer,
    write: &'a Write,
    scope: &str,
    version: i64,
    last_updated: i64,
    sealed: Vec<u8>,
    updating: bool,
) -> NewRows<'a> {
    let Write { resource, id, .. } = write;
    let resource_type = resource.resource_type.as_str();
    let head = Head {
        resource_type: resource_type.to_owned(),
        id: id.clone(),
        version,
        patient: resource.patient.clone(),
        security_labels: resource.security_labels.clone(),
        author_org: resource.author_org.clone(),
        author_practitioner: resource.author_practitioner.clone(),
        last_updated,
        service_event: resource.service_event.clone(),
    };
    let version = VersionRow {
        resource_type: head.resource_type.clone(),
        id: head.id.clone(),
        version,
        patient: head.patient.clone(),
        key_scope: scope.to_owned(),
        security_labels: head.security_labels.clone(),
        author_org: head.author_org.clone(),
        author_practitioner: head.author_practitioner.clone(),
        last_updated,
        method: if updating { "PUT" } else { "POST" }.to_owned(),
        body: sealed,
        service_event: head.service_event.clone(),
    };
    let patient = resource.patient.as_deref();
    let tokens = identifier_tokens(pseudonyms, &resource.facts)
        .into_iter()
        .map(|(param, token, system_token)| TokenRow {
            resource_type,
            id,
            param,
            token,
            patient,
            version: head.version,
            system_token,
        })
        .collect();
    let mut seen = HashSet::new();
    let dates = resource
        .facts
        .iter()
        .filter_map(|fact| match fact {
            IndexFact::Date { param, start, end } if seen.insert((*param, *start, *end)) => Some(DateRow {
                resource_type,
                id,
                param,
                range_start: *start,
                range_end: *end,
                patient,
                version: head.version,
            }),
            _ => None,
        })
        .collect();
    NewRows { version, head, tokens, dates }
}

/// A group's writes when every one creates a resource (ingest's case: a document and its new
/// participants), each table's rows of the whole group in one statement. On PostgreSQL every
/// statement is a round trip and a parse-bind-execute in the server, and the server's CPU per
/// document was as large as the gateway's; this takes the writer's statements from about seven
/// per document to five per group. A `CreateIfAbsent` whose resource exists (its head's insert
/// does nothing) or was created earlier in the group writes nothing. Any other conflict fails
/// the group, which then runs again request by request.
fn write_created(conn: &mut PgConnection, context: &WriteContext, jobs: &[&Job]) -> Result<Vec<Written>, GatewayError> {
    let now = now_millis();
    let mut planned: HashSet<(&str, &str)> = HashSet::new();
    let (mut keys, mut versions, mut heads, mut tokens, mut dates) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    // Where each planned resource's answer sits in `results`, and whether it may exist already.
    let mut answers: Vec<(usize, usize, bool)> = Vec::new();
    let mut results = Vec::with_capacity(jobs.len());
    for (n, job) in jobs.iter().enumerate() {
        keys.extend(new_key_rows(&job.keys, &context.kek_id, now));
        let mut written = Vec::with_capacity(job.writes.len());
        for (write, sealed) in job.writes.iter().zip(job.sealed.iter()) {
            let resource_type = write.resource.resource_type.as_str();
            let if_absent = matches!(write.kind, WriteKind::CreateIfAbsent);
            if !planned.insert((resource_type, write.id.as_str())) && if_absent {
                // Created earlier in this group.
                written.push(None);
                continue;
            }
            let scope = write.resource.patient.as_deref().unwrap_or(SHARED_SCOPE);
            let ready = sealed.as_ref().ok_or_else(|| GatewayError::Internal("no version 1 sealed ahead".into()))?;
            let rows = new_rows(&context.pseudonyms, write, scope, 1, ready.last_updated, ready.sealed.clone(), false);
            answers.push((n, written.len(), if_absent));
            written.push(Some((rows.head.clone(), ready.plain.clone())));
            versions.push(rows.version);
            heads.push(rows.head);
            tokens.extend(rows.tokens);
            dates.extend(rows.dates);
        }
        results.push(written);
    }
    // One statement a table for the whole group, whose text does not depend on its size
    // (`db::unnest`).
    Unnest::new(
        "data_keys",
        "scope, kek_id, wrapped_key, created_at",
        vec![
            Column::Text(keys.iter().map(|k| k.scope).collect()),
            Column::Text(keys.iter().map(|k| k.kek_id).collect()),
            Column::Binary(keys.iter().map(|k| k.wrapped_key.as_slice()).collect()),
            Column::BigInt(keys.iter().map(|k| k.created_at).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    // The heads first: a `CreateIfAbsent` whose resource exists (stored by an earlier group or
    // another node) inserts no head, and then none of its other rows. One statement for the
    // group; looking each one up first took a round trip a document.
    let inserted: HashSet<(String, String)> = Unnest::new(
        "resource_heads",
        "resource_type, id, version, patient, security_labels, author_org, author_practitioner, last_updated, \
         service_event",
        vec![
            Column::Text(heads.iter().map(|h| h.resource_type.as_str()).collect()),
            Column::Text(heads.iter().map(|h| h.id.as_str()).collect()),
            Column::BigInt(heads.iter().map(|h| h.version).collect()),
            Column::OptionalText(heads.iter().map(|h| h.patient.as_deref()).collect()),
            Column::Text(heads.iter().map(|h| h.security_labels.as_str()).collect()),
            Column::OptionalText(heads.iter().map(|h| h.author_org.as_deref()).collect()),
            Column::OptionalText(heads.iter().map(|h| h.author_practitioner.as_deref()).collect()),
            Column::BigInt(heads.iter().map(|h| h.last_updated).collect()),
            Column::OptionalText(heads.iter().map(|h| h.service_event.as_deref()).collect()),
        ],
    )
    .then(" ON CONFLICT DO NOTHING RETURNING resource_type, id")
    .get_results::<(String, String)>(conn)?
    .into_iter()
    .collect();
    let is_inserted = |resource_type: &str, id: &str| inserted.contains(&(resource_type.to_owned(), id.to_owned()));
    for ((n, at, if_absent), head) in answers.iter().zip(&heads) {
        if !is_inserted(&head.resource_type, &head.id) {
            if !if_absent {
                // A created resource met an existing one: the group runs again request by
                // request, and this request alone is refused.
                return Err(GatewayError::Conflict("the resource was created concurrently".into()));
            }
            results[*n][*at] = None;
        }
    }
    versions.retain(|row| is_inserted(&row.resource_type, &row.id));
    tokens.retain(|row| is_inserted(row.resource_type, row.id));
    dates.retain(|row| is_inserted(row.resource_type, row.id));
    Unnest::new(
        "resource_versions",
        "resource_type, id, version, patient, key_scope, security_labels, author_org, author_practitioner, \
         last_updated, method, body, service_event",
        vec![
            Column::Text(versions.iter().map(|v| v.resource_type.as_str()).collect()),
            Column::Text(versions.iter().map(|v| v.id.as_str()).collect()),
            Column::BigInt(versions.iter().map(|v| v.version).collect()),
            Column::OptionalText(versions.iter().map(|v| v.patient.as_deref()).collect()),
            Column::Text(versions.iter().map(|v| v.key_scope.as_str()).collect()),
            Column::Text(versions.iter().map(|v| v.security_labels.as_str()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.author_org.as_deref()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.author_practitioner.as_deref()).collect()),
            Column::BigInt(versions.iter().map(|v| v.last_updated).collect()),
            Column::Text(versions.iter().map(|v| v.method.as_str()).collect()),
            Column::Binary(versions.iter().map(|v| v.body.as_slice()).collect()),
            Column::OptionalText(versions.iter().map(|v| v.service_event.as_deref()).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Unnest::new(
        "search_tokens",
        "resource_type, id, param, token, patient, version, system_token",
        vec![
            Column::Text(tokens.iter().map(|t| t.resource_type).collect()),
            Column::Text(tokens.iter().map(|t| t.id).collect()),
            Column::Text(tokens.iter().map(|t| t.param).collect()),
            Column::Text(tokens.iter().map(|t| t.token.as_str()).collect()),
            Column::OptionalText(tokens.iter().map(|t| t.patient).collect()),
            Column::BigInt(tokens.iter().map(|t| t.version).collect()),
            Column::OptionalText(tokens.iter().map(|t| t.system_token.as_deref()).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Unnest::new(
        "search_dates",
        "resource_type, id, param, range_start, range_end, patient, version",
        vec![
            Column::Text(dates.iter().map(|d| d.resource_type).collect()),
            Column::Text(dates.iter().map(|d| d.id).collect()),
            Column::Text(dates.iter().map(|d| d.param).collect()),
            Column::BigInt(dates.iter().map(|d| d.range_start).collect()),
            Column::BigInt(dates.iter().map(|d| d.range_end).collect()),
            Column::OptionalText(dates.iter().map(|d| d.patient).collect()),
            Column::BigInt(dates.iter().map(|d| d.version).collect()),
        ],
    )
    .insert(conn)
    .map_err(conflict)?;
    Ok(results)
}

/// A resource's head, looked up on the concrete connection (a prepared statement found by the
/// query's type): by the API's reads, and by the writer before an update or a `CreateIfAbsent`.
fn head_on(conn: &mut DbConnection, resource_type: &str, id: &str) -> diesel::QueryResult<Option<Head>> {
    let query =
        resource_heads::table.filter(resource_heads::resource_type.eq(resource_type)).filter(resource_heads::id.eq(id));
    crate::on_backend!(conn, |c| query.select(Head::as_select()).get_result(c).optional())
}

/// The rows of a request's newly generated data keys (those it found stored carry no wrapped
/// key and write nothing).
fn new_key_rows<'a>(keys: &'a NewKeys, kek_id: &'a str, now: i64) -> impl Iterator<Item = NewDataKey<'a>> {
    keys.iter().filter_map(move |(scope, _, wrapped)| {
        wrapped.as_ref().map(|wrapped| NewDataKey { scope, kek_id, wrapped_key: wrapped.clone(), created_at: now })
    })
}

/// The index rows of a resource's identifier facts (parameter, key, `system_token`), without
/// repeats. Each identifier is findable by `system|value`, by `value` alone, and (without a
/// system) by `|value`: it is filed under its any-system token with its exact token beside it.
/// A second identifier with the same value in another system would need the same key again, so
/// it is filed under its exact token alone, as every identifier was before migration 7 (see
/// [`TokenMatch`]).
fn identifier_tokens(pseudonyms: &Pseudonymizer, facts: &[IndexFact]) -> Vec<(&'static str, String, Option<String>)> {
    let mut rows = Vec::new();
    let mut keys = HashSet::new();
    let mut exacts = HashSet::new();
    for fact in facts {
        if let IndexFact::Token { param, system, value } = fact {
            let TokenMatch { any, exact } = TokenMatch::exact(pseudonyms, param, system.as_deref(), value);
            let Some(exact) = exact else { continue };
            if !exacts.insert((*param, exact.clone())) {
                continue;
            }
            if keys.insert((*param, any.clone())) {
                rows.push((*param, any, Some(exact)));
            } else if keys.insert((*param, exact.clone())) {
                rows.push((*param, exact, None));
            }
        }
    }
    rows
}

fn conflict(error: diesel::result::Error) -> GatewayError {
    match error {
        diesel::result::Error::DatabaseError(diesel::result::DatabaseErrorKind::UniqueViolation, _) => {
            GatewayError::Conflict("the resource was changed concurrently; read it again and retry".into())
        }
        other => other.into(),
    }
}

/// The stored JSON of a resource: the submitted one with the server-assigned `id`,
/// `meta.versionId` and `meta.lastUpdated`, keeping the rest of `meta` (profiles, security
/// labels) and putting `resourceType`, `id` and `meta` first. Serialised straight from the
/// submitted tree, which is not copied.
fn stamped_body(
    json: &Map<String, Value>,
    resource_type: &str,
    id: &str,
    version: i64,
    last_updated: i64,
) -> Result<Vec<u8>, GatewayError> {
    use serde::ser::{Serialize, SerializeMap, Serializer};
    struct Stamped<'a> {
        json: &'a Map<String, Value>,
        resource_type: &'a str,
        id: &'a str,
        meta: Map<String, Value>,
    }
    impl Serialize for Stamped<'_> {
        fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
            let mut map = serializer.serialize_map(None)?;
            map.serialize_entry("resourceType", self.resource_type)?;
            map.serialize_entry("id", self.id)?;
            map.serialize_entry("meta", &self.meta)?;
            for (key, value) in self.json {
                if !matches!(key.as_str(), "resourceType" | "id" | "meta") {
                    map.serialize_entry(key, value)?;
                }
            }
            map.end()
        }
    }
    let mut meta = match json.get("meta") {
        Some(Value::Object(meta)) => meta.clone(),
        _ => Map::new(),
    };
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(instant(last_updated)));
    serde_json::to_vec(&Stamped { json, resource_type, id, meta })
        .map_err(|e| GatewayError::Internal(format!("serialise: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn the_checkpoint_thread_looks_when_the_log_will_need_starting_over() {
        let mut watch = LogWatch::new();
        assert_eq!(watch.next_look_after(0, false, secs(3.0)), CHECKPOINT_PAUSE, "an idle log: the longest pause");
        // 20,000 frames a second: the restart length is further off than the longest pause.
        assert_eq!(watch.next_look_after(20_000, false, secs(1.0)), CHECKPOINT_PAUSE);
        // 30,000 frames a second: 15,536 frames left to the restart length take 0.52 s.
        let pause = watch.next_look_after(50_000, false, secs(1.0));
        assert!((pause.as_secs_f64() - 0.5179).abs() < 1e-3, "{pause:?}");
        // Close to it, the next look comes soon, but not sooner than the shortest pause.
        assert_eq!(watch.next_look_after(65_000, false, secs(0.5)), CHECKPOINT_PAUSE_MIN);
        assert!(!watch.restart_failed(70_000), "nobody asked the writer yet");
        // Asked to start the log over at 70,000 frames, the thread looks again while a new log
        // would still be half as long: at the last rate (5,000 frames in 0.1 s), in 0.7 s.
        let asked = watch.next_look_after(70_000, true, secs(0.1));
        assert!((asked.as_secs_f64() - 0.7).abs() < 1e-3, "{asked:?}");
        // A log that started over is shorter than the one the writer was asked to copy; one
        // that did not is not, and the thread falls back on a checkpoint that waits for readers.
        assert!(!watch.restart_failed(30_000));
        assert!(watch.restart_failed(71_000));
        // A log that started over since the last look grew at least as fast as it is long now.
        watch.next_look_after(30_000, false, secs(1.0));
        assert!(watch.rate >= 30_000.0, "{}", watch.rate);
    }
}
