//! The audit log's tables: appending records inside the writer's transaction, signed
//! checkpoints, reading pages of the log, and verifying it from the first entry.
//!
//! Appends are serial across every node: a writer locks the log's head row (PostgreSQL: `SELECT
//! ... FOR UPDATE`; SQLite has one writer), resumes the Merkle frontier from it, appends, signs a
//! checkpoint when one is due, and writes the head back, all in the transaction of the request
//! (or of the group commit) that the records belong to. A record that cannot be written fails
//! that transaction: a write is not kept and a read returns no data.
//!
//! What goes into a record (who, what, which decision) is the gateway's business; this module
//! takes [`AuditRecord`]s made from `audit_log` events and stores them.

use std::path::Path;

use audit_log::{
    leaf_hash, AuditEvent, LogHead, MerkleTree, Sha256Hash, SignedCheckpoint, SigningKey, StoredEntry, UnixMillis,
    VerifyingKey, Who,
};
use diesel::prelude::*;

use crate::crypto::CryptoError;
use crate::db::schema::{audit_checkpoints, audit_entries, audit_head};
use crate::db::{write_transaction, DbConnection, Pool};
use crate::error::StoreError;
use crate::time::now_millis;

/// The key that signs checkpoints, with the log's name and how often to sign.
pub struct AuditSigner {
    key: SigningKey,
    /// Sign when this many entries are unsigned…
    every_entries: u64,
    /// …or when the oldest unsigned one is this old (milliseconds), whichever comes first.
    every_millis: i64,
}

/// The name of the log in its checkpoints (C2SP origin). Every node of a deployment signs with
/// the same key under the same name.
pub const ORIGIN: &str = "vaitio-audit";
pub const CHECKPOINT_ENTRIES: u64 = 1000;
pub const CHECKPOINT_MILLIS: i64 = 10_000;

impl AuditSigner {
    pub fn new(key: SigningKey, every_entries: u64, every_millis: i64) -> Self {
        AuditSigner { key, every_entries: every_entries.max(1), every_millis: every_millis.max(1) }
    }

    /// Signs every `entries` entries or `millis` milliseconds, whichever comes first.
    pub fn with_schedule(self, entries: u64, millis: i64) -> Self {
        AuditSigner::new(self.key, entries, millis)
    }

    /// Reads an Ed25519 private key (PEM).
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let error = |message: String| CryptoError::KeyFile { path: path.display().to_string(), message };
        let pem = std::fs::read(path).map_err(|e| error(e.to_string()))?;
        let key = SigningKey::from_pem(ORIGIN, &pem).map_err(|e| error(e.to_string()))?;
        Ok(AuditSigner::new(key, CHECKPOINT_ENTRIES, CHECKPOINT_MILLIS))
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        self.key.verifying_key()
    }

    /// How often an idle log is checked for a checkpoint that is due.
    pub fn tick(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.every_millis.clamp(50, 1000) as u64)
    }
}

/// An event ready to append: its canonical bytes and the columns searched beside them.
#[derive(Clone, Debug)]
pub struct AuditRecord {
    event: Vec<u8>,
    recorded: i64,
    patient: Option<String>,
    organisation: Option<String>,
    agent: Option<String>,
    action: &'static str,
}

impl AuditRecord {
    /// The size of the event as stored, in bytes.
    pub fn len(&self) -> usize {
        self.event.len()
    }

    pub fn is_empty(&self) -> bool {
        self.event.is_empty()
    }

    pub fn new(event: &AuditEvent) -> Self {
        let (organisation, agent) = match &event.agent.who {
            Who::Practitioner { terhikki, organisation, .. } => (Some(organisation.clone()), Some(terhikki.clone())),
            Who::Patient { pseudonym } => (None, Some(pseudonym.clone())),
            Who::Auditor { subject, organisation } | Who::Administrator { subject, organisation } => {
                (Some(organisation.clone()), Some(subject.clone()))
            }
            Who::Operator { account } => (None, Some(account.clone())),
            Who::Unidentified => (None, None),
        };
        AuditRecord {
            event: event.canonical_bytes(),
            recorded: event.recorded.as_millis() as i64,
            patient: event.patient.clone(),
            organisation,
            agent,
            action: event.action.name(),
        }
    }
}

/// Appends `records` in a transaction of their own, outside the writer: an operator's command
/// (`vaitio migrate`, `vaitio audit export`) recorded before it goes on.
pub fn append_alone(pool: &Pool, records: &[AuditRecord], signer: &AuditSigner) -> Result<(), StoreError> {
    let mut conn = pool.get()?;
    write_transaction(&mut conn, |conn| append(conn, records, signer, now_millis()))
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_head)]
struct HeadRow {
    size: i64,
    frontier: Vec<u8>,
    last_leaf: Vec<u8>,
    last_prev: Vec<u8>,
    checkpoint_size: i64,
    checkpoint_at: i64,
}

#[derive(Insertable)]
#[diesel(table_name = audit_entries, treat_none_as_default_value = false)]
struct EntryRow<'a> {
    seq: i64,
    recorded: i64,
    patient: Option<&'a str>,
    organisation: Option<&'a str>,
    agent: Option<&'a str>,
    action: &'a str,
    event: &'a [u8],
    leaf: &'a [u8],
    prev: &'a [u8],
}

fn hash(bytes: &[u8]) -> Result<Sha256Hash, StoreError> {
    let bytes: [u8; 32] = bytes.try_into().map_err(|_| StoreError::Damaged("the audit head".into()))?;
    Ok(Sha256Hash::from_bytes(bytes))
}

fn damaged(error: impl std::fmt::Display) -> StoreError {
    StoreError::Damaged(format!("the audit head: {error}"))
}

/// Appends `records` to the log inside the caller's transaction, and signs a checkpoint when
/// one is due (also with no records: the idle tick). Serial across nodes by the head row's lock.
pub(crate) fn append(
    conn: &mut DbConnection,
    records: &[AuditRecord],
    signer: &AuditSigner,
    now_millis: i64,
) -> Result<(), StoreError> {
    append_signing(conn, records, signer, now_millis, false)
}

/// Signs a checkpoint of every entry now, whatever the schedule says: at a graceful stop, so
/// that the log's tail is not left unsigned until the next start.
pub(crate) fn sign_now(conn: &mut DbConnection, signer: &AuditSigner, now_millis: i64) -> Result<(), StoreError> {
    append_signing(conn, &[], signer, now_millis, true)
}

/// [`append`]; with `force`, a checkpoint is signed whenever any entry is unsigned.
fn append_signing(
    conn: &mut DbConnection,
    records: &[AuditRecord],
    signer: &AuditSigner,
    now_millis: i64,
    force: bool,
) -> Result<(), StoreError> {
    let head: HeadRow = match conn {
        DbConnection::Postgres(pg) => {
            audit_head::table.find(1).for_update().select(HeadRow::as_select()).get_result(pg).map_err(unavailable)?
        }
        DbConnection::Sqlite(sqlite) => {
            audit_head::table.find(1).select(HeadRow::as_select()).get_result(sqlite).map_err(unavailable)?
        }
    };
    let size = u64::try_from(head.size).map_err(damaged)?;
    let frontier = head.frontier.chunks(32).map(hash).collect::<Result<Vec<_>, _>>()?;
    let tree = MerkleTree::from_frontier(size, frontier).map_err(damaged)?;
    let last = if size == 0 {
        None
    } else {
        Some(StoredEntry { seq: size - 1, event: &[], leaf: hash(&head.last_leaf)?, prev: hash(&head.last_prev)? })
    };
    let mut log = LogHead::resume(tree, last.as_ref()).map_err(damaged)?;
    let mut last_hashes = (head.last_leaf, head.last_prev);
    if !records.is_empty() {
        let entries: Vec<(StoredEntry<'_>, &AuditRecord)> =
            records.iter().map(|record| (log.append(&record.event), record)).collect();
        let leaves: Vec<([u8; 32], [u8; 32])> =
            entries.iter().map(|(entry, _)| (*entry.leaf.as_bytes(), *entry.prev.as_bytes())).collect();
        let rows: Vec<EntryRow<'_>> = entries
            .iter()
            .zip(&leaves)
            .map(|((entry, record), (leaf, prev))| EntryRow {
                seq: entry.seq as i64,
                recorded: record.recorded,
                patient: record.patient.as_deref(),
                organisation: record.organisation.as_deref(),
                agent: record.agent.as_deref(),
                action: record.action,
                event: &record.event,
                leaf,
                prev,
            })
            .collect();
        match conn {
            DbConnection::Postgres(pg) => {
                // One statement for any number of entries, prepared once (`db::unnest`).
                use crate::db::unnest::{Column, Unnest};
                Unnest::new(
                    "audit_entries",
                    "seq, recorded, patient, organisation, agent, action, event, leaf, prev",
                    vec![
                        Column::BigInt(rows.iter().map(|r| r.seq).collect()),
                        Column::BigInt(rows.iter().map(|r| r.recorded).collect()),
                        Column::OptionalText(rows.iter().map(|r| r.patient).collect()),
                        Column::OptionalText(rows.iter().map(|r| r.organisation).collect()),
                        Column::OptionalText(rows.iter().map(|r| r.agent).collect()),
                        Column::Text(rows.iter().map(|r| r.action).collect()),
                        Column::Binary(rows.iter().map(|r| r.event).collect()),
                        Column::Binary(rows.iter().map(|r| r.leaf).collect()),
                        Column::Binary(rows.iter().map(|r| r.prev).collect()),
                    ],
                )
                .insert(pg)
                .map_err(unavailable)?;
            }
            DbConnection::Sqlite(sqlite) => {
                // One prepared statement run per row: SQLite has no round trips to save, and a
                // multi-row INSERT would be a new statement for every group size.
                for row in &rows {
                    diesel::insert_into(audit_entries::table).values(row).execute(sqlite).map_err(unavailable)?;
                }
            }
        }
        if let Some((leaf, prev)) = leaves.last() {
            last_hashes = (leaf.to_vec(), prev.to_vec());
        }
    }
    let size = log.size() as i64;
    let unsigned = size - head.checkpoint_size;
    let (mut checkpoint_size, mut checkpoint_at) = (head.checkpoint_size, head.checkpoint_at);
    // A checkpoint is due when enough entries are unsigned, or when unsigned ones have waited
    // long enough; never for an unchanged size (checkpoint sizes must grow).
    if unsigned > 0
        && (force || unsigned as u64 >= signer.every_entries || now_millis - head.checkpoint_at >= signer.every_millis)
    {
        let time = UnixMillis::new(now_millis as u64).map_err(damaged)?;
        let checkpoint = log.checkpoint(ORIGIN, time).map_err(damaged)?;
        let signed: SignedCheckpoint = signer.key.sign(checkpoint).map_err(damaged)?;
        diesel::insert_into(audit_checkpoints::table)
            .values((
                audit_checkpoints::size.eq(size),
                audit_checkpoints::note.eq(signed.to_note()),
                audit_checkpoints::created.eq(now_millis),
            ))
            .execute(conn)
            .map_err(unavailable)?;
        checkpoint_size = size;
        checkpoint_at = now_millis;
    } else if unsigned == 0 {
        // Nothing waits to be signed: the clock for the next checkpoint starts with the next entry.
        checkpoint_at = now_millis;
    }
    let frontier: Vec<u8> = log.tree().frontier().iter().flat_map(|h| h.as_bytes().to_vec()).collect();
    let update = HeadUpdate {
        size,
        frontier: &frontier,
        last_leaf: &last_hashes.0,
        last_prev: &last_hashes.1,
        checkpoint_size,
        checkpoint_at,
    };
    crate::db::on_backend!(conn, |conn| update.execute(conn)).map_err(unavailable)?;
    Ok(())
}

/// `UPDATE audit_head … WHERE id = 1`, written out so that it is one statement diesel keeps
/// prepared: its own UPDATE builder never is (a changeset may leave columns out), and the head
/// is written back in every group the writer commits.
struct HeadUpdate<'a> {
    size: i64,
    frontier: &'a [u8],
    last_leaf: &'a [u8],
    last_prev: &'a [u8],
    checkpoint_size: i64,
    checkpoint_at: i64,
}

impl<DB> diesel::query_builder::QueryFragment<DB> for HeadUpdate<'_>
where
    DB: diesel::backend::Backend,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    [u8]: diesel::serialize::ToSql<diesel::sql_types::Binary, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: diesel::query_builder::AstPass<'_, 'b, DB>) -> QueryResult<()> {
        use diesel::sql_types::{BigInt, Binary};
        out.push_sql("UPDATE audit_head SET size = ");
        out.push_bind_param::<BigInt, _>(&self.size)?;
        out.push_sql(", frontier = ");
        out.push_bind_param::<Binary, _>(self.frontier)?;
        out.push_sql(", last_leaf = ");
        out.push_bind_param::<Binary, _>(self.last_leaf)?;
        out.push_sql(", last_prev = ");
        out.push_bind_param::<Binary, _>(self.last_prev)?;
        out.push_sql(", checkpoint_size = ");
        out.push_bind_param::<BigInt, _>(&self.checkpoint_size)?;
        out.push_sql(", checkpoint_at = ");
        out.push_bind_param::<BigInt, _>(&self.checkpoint_at)?;
        out.push_sql(" WHERE id = 1");
        Ok(())
    }
}

impl<Conn> RunQueryDsl<Conn> for HeadUpdate<'_> {}

/// The statement's text depends on nothing but the type: diesel may find it by type.
impl diesel::query_builder::QueryId for HeadUpdate<'_> {
    type QueryId = HeadUpdate<'static>;
    const HAS_STATIC_QUERY_ID: bool = true;
}

/// An audit record that cannot be written stops the request: 503, nothing kept, nothing shown.
fn unavailable(error: diesel::result::Error) -> StoreError {
    StoreError::Unavailable(format!("the audit record could not be written: {error}"))
}

/// One stored entry as read back for verification and export.
#[derive(Queryable, Selectable)]
#[diesel(table_name = audit_entries)]
pub struct EntryOut {
    pub seq: i64,
    pub event: Vec<u8>,
    pub leaf: Vec<u8>,
    pub prev: Vec<u8>,
}

impl EntryOut {
    /// The entry as the verifier reads it; a hash of the wrong length reads as zeros, which no
    /// honest log holds, so the verifier names the row.
    pub fn stored(&self) -> StoredEntry<'_> {
        let hash = |bytes: &[u8]| Sha256Hash::from_bytes(bytes.try_into().unwrap_or([0; 32]));
        StoredEntry { seq: self.seq as u64, event: &self.event, leaf: hash(&self.leaf), prev: hash(&self.prev) }
    }
}

/// The stored checkpoints, oldest first.
pub fn checkpoints(conn: &mut DbConnection) -> Result<Vec<SignedCheckpoint>, StoreError> {
    let notes: Vec<String> =
        audit_checkpoints::table.order(audit_checkpoints::size.asc()).select(audit_checkpoints::note).load(conn)?;
    notes
        .iter()
        .map(|note| SignedCheckpoint::from_note(note).map_err(|e| StoreError::Damaged(format!("a checkpoint: {e}"))))
        .collect()
}

/// Streams the stored entries in log order to `each`.
pub fn for_each_entry<E: From<StoreError>>(
    conn: &mut DbConnection,
    mut each: impl FnMut(&EntryOut) -> Result<(), E>,
) -> Result<(), E> {
    let mut failed: Result<(), E> = Ok(());
    read_batches(conn, |batch| {
        failed = batch.iter().try_for_each(&mut each);
        failed.is_ok()
    })?;
    failed
}

/// Reads the stored entries in log order, a batch at a time, until `each` returns false. Small
/// batches keep the memory in use (and in cache) small.
fn read_batches(conn: &mut DbConnection, mut each: impl FnMut(Vec<EntryOut>) -> bool) -> Result<(), StoreError> {
    const BATCH: i64 = 2_000;
    let mut after = -1i64;
    loop {
        // Ordered by storage order as the rows' sequence numbers claim it: the verifier checks
        // that they are the positions.
        let batch: Vec<EntryOut> = audit_entries::table
            .filter(audit_entries::seq.gt(after))
            .order(audit_entries::seq.asc())
            .limit(BATCH)
            .select(EntryOut::as_select())
            .load(conn)?;
        let Some(last) = batch.last() else { return Ok(()) };
        after = last.seq;
        if !each(batch) {
            return Ok(());
        }
    }
}

/// What a reader of the audit log asks for; every filter ANDed.
#[derive(Default)]
pub struct LogQuery {
    pub ids: Option<Vec<i64>>,
    pub patients: Option<Vec<String>>,
    pub agents: Vec<String>,
    pub organisations: Vec<String>,
    /// Recorded between, in epoch milliseconds, inclusive.
    pub from: Option<i64>,
    pub to: Option<i64>,
    pub offset: usize,
    pub count: usize,
    /// Only entries after this position: what a reader who has seen up to it has not.
    pub after: Option<i64>,
    /// Leave the total uncounted (answered as -1): a reader that pages by "is there more"
    /// spares the count over every matching entry.
    pub without_total: bool,
    /// Leave out the entries of these agents (a patient reading their log without their own
    /// visits, under every name they have had).
    pub except_agents: Vec<String>,
}

/// How many entries match, and a page of them: position and event bytes, newest first.
pub type LogPage = (i64, Vec<(i64, Vec<u8>)>);

/// A page of the log, newest first, and how many entries match in all.
pub fn search_log(conn: &mut DbConnection, query: &LogQuery) -> Result<LogPage, StoreError> {
    use crate::db::schema::audit_entries::dsl as e;
    // Boxed queries are per backend; the filters are the same on both.
    macro_rules! filtered {
        () => {{
            let mut q = e::audit_entries.into_boxed();
            if let Some(ids) = &query.ids {
                q = q.filter(e::seq.eq_any(ids.clone()));
            }
            if let Some(patients) = &query.patients {
                q = q.filter(e::patient.eq_any(patients.clone()));
            }
            if !query.agents.is_empty() {
                q = q.filter(e::agent.eq_any(query.agents.clone()));
            }
            if !query.organisations.is_empty() {
                q = q.filter(e::organisation.eq_any(query.organisations.clone()));
            }
            if let Some(from) = query.from {
                q = q.filter(e::recorded.ge(from));
            }
            if let Some(to) = query.to {
                q = q.filter(e::recorded.le(to));
            }
            if let Some(after) = query.after {
                q = q.filter(e::seq.gt(after));
            }
            if !query.except_agents.is_empty() {
                q = q.filter(e::agent.is_null().or(e::agent.ne_all(query.except_agents.clone())));
            }
            q
        }};
    }
    macro_rules! run {
        ($conn:expr) => {{
            let total: i64 = if query.without_total { -1 } else { filtered!().count().get_result($conn)? };
            let page: Vec<(i64, Vec<u8>)> = filtered!()
                .order(e::seq.desc())
                .offset(query.offset as i64)
                .limit(query.count as i64)
                .select((e::seq, e::event))
                .load($conn)?;
            Ok((total, page))
        }};
    }
    match conn {
        DbConnection::Postgres(pg) => run!(pg),
        DbConnection::Sqlite(sqlite) => run!(sqlite),
    }
}

/// Verifies the stored log from its first entry against `key`: `Ok(Err(problem))` names the
/// first thing wrong, `Err` is a failure to read.
///
/// Readers, each with its own connection, take turns at ranges of `VERIFY_BATCH`
/// positions and compute the leaf hash of every event they read (the bulk of the work, and
/// order-free); the calling thread takes the ranges back in order and checks what needs order
/// (positions, the chain, the Merkle roots, the checkpoints).
pub fn verify_database(
    pool: &Pool,
    key: &VerifyingKey,
) -> Result<Result<audit_log::Verified, audit_log::Problem>, StoreError> {
    let checkpoints = checkpoints(&mut *pool.get()?)?;
    let mut verifier = match audit_log::Verifier::new(&checkpoints, key) {
        Ok(verifier) => verifier,
        Err(problem) => return Ok(Err(problem)),
    };
    let last: Option<i64> =
        audit_entries::table.select(diesel::dsl::max(audit_entries::seq)).get_result(&mut *pool.get()?)?;
    let Some(last) = last else { return Ok(verifier.finish()) };
    // Three readers beat two by about a tenth on two cores (a reader waits on the database
    // part of the time); the ordered part needs well under a core.
    // Each holds a connection for the whole run: never more than the pool has, or the last
    // would wait for a connection that is not given back until the end.
    let readers_wanted: i64 = 3;
    let readers_count = readers_wanted.min(i64::from(pool.max_size())).max(1);
    type Hashed = Vec<(EntryOut, Sha256Hash)>;
    std::thread::scope(|scope| {
        let mut readers = Vec::new();
        let mut channels = Vec::new();
        for reader in 0..readers_count {
            let (batches, received) = std::sync::mpsc::sync_channel::<Hashed>(2);
            let mut conn = pool.get()?;
            if let DbConnection::Sqlite(sqlite) = &mut *conn {
                // Pages mapped rather than copied in by a read call each, as the whole log passes
                // through once: about a tenth faster. Mapped pages of the file count in the
                // process's resident size, up to this bound. (Only this connection, which only
                // reads.)
                use diesel::connection::SimpleConnection;
                sqlite.batch_execute("PRAGMA mmap_size = 1073741824")?;
            }
            channels.push(received);
            readers.push(scope.spawn(move || -> Result<(), StoreError> {
                let mut start = reader * VERIFY_BATCH;
                while start <= last {
                    let rows = read_range(&mut conn, start, start + VERIFY_BATCH)?;
                    let hashed = rows
                        .into_iter()
                        .map(|row| {
                            let leaf = leaf_hash(&row.event);
                            (row, leaf)
                        })
                        .collect();
                    if batches.send(hashed).is_err() {
                        // The verifier stopped at a problem.
                        return Ok(());
                    }
                    start += readers_count * VERIFY_BATCH;
                }
                Ok(())
            }));
        }
        let mut range = 0usize;
        let mut problem = None;
        'ranges: while let Ok(batch) = channels[range % channels.len()].recv() {
            for (entry, leaf) in &batch {
                if let Err(found) = verifier.push_hashed(entry.stored(), *leaf) {
                    problem = Some(found);
                    break 'ranges;
                }
            }
            range += 1;
        }
        // Dropping the receivers stops the readers at their next range.
        drop(channels);
        for reader in readers {
            reader.join().map_err(|_| StoreError::Internal("a reader of the audit log stopped".into()))??;
        }
        Ok(match problem {
            Some(problem) => Err(problem),
            None => verifier.finish(),
        })
    })
}

/// Positions per range a verifying reader reads at once.
const VERIFY_BATCH: i64 = 4_096;

/// The stored entries with positions in `start..end`, in order of position.
fn read_range(conn: &mut DbConnection, start: i64, end: i64) -> Result<Vec<EntryOut>, StoreError> {
    Ok(audit_entries::table
        .filter(audit_entries::seq.ge(start).and(audit_entries::seq.lt(end)))
        .order(audit_entries::seq.asc())
        .select(EntryOut::as_select())
        .load(conn)?)
}
