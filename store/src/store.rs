//! The store: one per node, shared by every request. It holds the pool, the pseudonymizer, the
//! data keys and the writer; its reads, searches and writes are in `read.rs`, `search.rs` and
//! `write.rs`.

use std::sync::Arc;

use crate::apply::WriteContext;
use crate::audit::{search_log, AuditSigner, LogPage, LogQuery};
use crate::cache::BoundedMap;
use crate::checkpoint::checkpoint_in_background;
use crate::crypto::Pseudonymizer;
use crate::db::{Database, Manager, Pool};
use crate::error::StoreError;
use crate::index_keys::IndexKeys;
use crate::kek::{KekCustody, KekVersion};
use crate::keys::DataKeys;
use crate::opener::Opener;
use crate::reserve::Reserve;
use crate::writer::{tick_audit_checkpoints, WriteQueue, WriterStats};

/// How long a request waits for the database, and what is kept back on its disk: from the
/// deployment's settings.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Longest a request waits for a connection (at once while the database is known to be
    /// down).
    pub db_wait: std::time::Duration,
    /// Bytes kept back beside an embedded database, released when its disk fills so that reads
    /// and their audit records go on (0: none; see `reserve.rs`).
    pub disk_reserve: u64,
}

/// Versioned, encrypted resource storage, the search index and the audit log, on either
/// backend. Cheap to clone: every clone is the same store.
#[derive(Clone)]
pub struct Store {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub db: Arc<Database>,
    pub index: Arc<IndexKeys>,
    pub keys: Arc<DataKeys>,
    /// Every write and every audit record of this node goes to one thread holding one
    /// connection, which commits those of concurrent requests together ([`WriteQueue`]): SQLite
    /// allows one writer, and on either backend the audit log's appends are serial (its head
    /// row is locked until the commit), so one commit per group is what lets them scale.
    pub writer: Arc<WriteQueue>,
    /// `type|identifier token` → id, for [`Store::id_by_identifier`].
    pub known_ids: BoundedMap<String>,
    pub audit_key: audit_log::VerifyingKey,
    /// Signs checkpoints of appends made outside the writer (an alert raised, an operator's
    /// command).
    pub signer: Arc<AuditSigner>,
    /// Held while the store lives: the checkpoint thread stops when it is gone.
    _alive: Arc<()>,
}

impl Store {
    /// The store over `pool`, and the one [`Opener`] that decrypts what it holds. Starts the
    /// node's writer, the thread that signs audit checkpoints when the log is idle, and on
    /// SQLite the checkpoint thread; each ends with the store.
    /// A request waits at most `limits.db_wait` for a connection (at once while the database is
    /// known to be down, see [`Database`]).
    pub fn new(
        pool: Pool,
        limits: Limits,
        custody: Box<dyn KekCustody>,
        index: IndexKeys,
        signer: AuditSigner,
    ) -> (Store, Opener) {
        let index = Arc::new(index);
        let sqlite = pool.sqlite_path().is_some();
        let reserve = pool.sqlite_path().filter(|_| limits.disk_reserve > 0).map(|path| {
            let mut name = path.as_os_str().to_owned();
            name.push("-reserve");
            Arc::new(Reserve::keep(name.into(), limits.disk_reserve))
        });
        let audit_key = signer.verifying_key().clone();
        let tick = signer.tick();
        let db = Arc::new(Database::new(pool.clone(), limits.db_wait));
        let keys = Arc::new(DataKeys::new(db.clone(), custody));
        let signer = Arc::new(signer);
        let context = WriteContext { index: index.clone(), signer: signer.clone() };
        let writer = WriteQueue::start(db.clone(), context, reserve);
        let alive = Arc::new(());
        if sqlite {
            checkpoint_in_background(pool.clone(), writer.catch_up.clone(), Arc::downgrade(&alive));
        }
        tick_audit_checkpoints(Arc::downgrade(&writer), tick);
        let opener = Opener::new(keys.clone());
        let inner =
            Inner { db, index, keys, writer, known_ids: BoundedMap::new(50_000), audit_key, signer, _alive: alive };
        (Store { inner: Arc::new(inner) }, opener)
    }

    /// Reads the key-encryption key's versions (recording the first on a new database) and
    /// checks that the version in force opens: at start, before anything is served.
    pub fn prepare_keys(&self) -> Result<Vec<KekVersion>, StoreError> {
        self.inner.keys.prepare()
    }

    /// The key-encryption key's versions, read again when more than a few seconds old
    /// (`/metrics`).
    pub fn kek_versions(&self) -> Vec<KekVersion> {
        self.inner.keys.versions()
    }

    /// Reads the index key's versions (recording version 1 on a new database) and opens every
    /// one: at start.
    pub fn prepare_index_keys(&self) -> Result<Vec<KekVersion>, StoreError> {
        self.inner.index.prepare(&mut *self.conn()?)
    }

    /// The index key's version in force: every new pseudonym and token is made under it.
    pub fn pseudonyms(&self) -> Pseudonymizer {
        self.index_keys().current()
    }

    /// Every version of the index key this node holds, read again from the database when a few
    /// seconds old: a rotation begun by an operator is followed within that time.
    pub fn index_keys(&self) -> &IndexKeys {
        let db = &self.inner.db;
        self.inner
            .index
            .refresh_if_stale(|| crate::rotation::read_versions_of(&mut *db.conn()?, crate::rotation::INDEX));
        &self.inner.index
    }

    /// The pseudonym a write files a patient under, given how each index key version names them
    /// (`name`): see [`Store::patient_name_now`]. (The writer refuses the write if a re-index
    /// moves the patient before it commits.)
    pub fn patient_for_write(&self, name: impl Fn(&Pseudonymizer) -> String) -> Result<String, StoreError> {
        self.patient_name_now(&self.every_pseudonym(name))
    }

    /// Which of a patient's names (`names`, one under each index key version, newest first)
    /// their rows are filed under now: the newest, unless a re-index has not yet moved a patient
    /// who has rows under an older one; every row of a patient is under one name at any time.
    pub fn patient_name_now(&self, names: &[String]) -> Result<String, StoreError> {
        let newest = names.first().cloned().unwrap_or_default();
        let index = self.index_keys();
        index.complete()?;
        if index.reindexing() {
            for older in names.iter().skip(1) {
                if self.inner.keys.exists(older)? {
                    return Ok(older.clone());
                }
            }
        }
        Ok(newest)
    }

    /// A patient's names under every version of the index key, newest first: what the audit log
    /// may name them by (it is never rewritten).
    pub fn every_pseudonym(&self, name: impl Fn(&Pseudonymizer) -> String) -> Vec<String> {
        self.index_keys().every().iter().map(name).collect()
    }

    /// A patient's names that stored rows may be under: the version in force's, and while a
    /// re-index is unfinished the older ones'.
    pub fn lookup_pseudonyms(&self, name: impl Fn(&Pseudonymizer) -> String) -> Vec<String> {
        self.index_keys().lookup().iter().map(name).collect()
    }

    /// The key that verifies this deployment's audit checkpoints.
    pub fn audit_key(&self) -> &audit_log::VerifyingKey {
        &self.inner.audit_key
    }

    /// A page of the audit log (see [`search_log`]).
    pub fn read_log(&self, query: &LogQuery) -> Result<LogPage, StoreError> {
        search_log(&mut *self.conn()?, query)
    }

    pub(crate) fn signer(&self) -> &Arc<AuditSigner> {
        &self.inner.signer
    }

    pub(crate) fn conn(&self) -> Result<diesel::r2d2::PooledConnection<Manager>, StoreError> {
        self.inner.db.conn()
    }

    /// Readiness: the database answers within `wait`, whatever a request found a moment ago.
    pub fn ping(&self, wait: std::time::Duration) -> Result<(), StoreError> {
        use diesel::connection::SimpleConnection;
        let mut conn = self.inner.db.probe(wait)?;
        Ok(conn.batch_execute("SELECT 1")?)
    }

    /// Signs a checkpoint of every entry now: at a graceful stop, once the last request is
    /// answered, so that the log's tail is not left unsigned.
    pub fn sign_checkpoint_now(&self) -> Result<(), StoreError> {
        let signer = self.inner.signer.clone();
        crate::db::write_transaction(&mut *self.conn()?, |conn| {
            crate::audit::sign_now(conn, &signer, crate::time::now_millis())
        })
    }

    /// The node writer's counters.
    pub fn writer_stats(&self) -> &WriterStats {
        self.inner.writer.stats()
    }

    /// The pool's connections: open, and idle among them.
    pub fn pool_state(&self) -> (u32, u32) {
        let state = self.inner.db.pool().state();
        (state.connections, state.idle_connections)
    }
}
