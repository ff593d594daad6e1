//! Patients' data keys: found (unwrapped, cached briefly) or made (and wrapped) for a write.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::prelude::*;

use crate::cache::BoundedMap;
use crate::crypto::DataKey;
use crate::db::schema::data_keys;
use crate::db::{Database, DbConnection};
use crate::error::StoreError;
use crate::kek::{KekCustody, KekRing, KekVersion, KeyEncryptionKey};

/// How many unwrapped data keys are kept in memory.
const DATA_KEY_CACHE_SIZE: usize = 4096;

/// How long an unwrapped data key stays in memory after it was unwrapped. Long enough for a
/// patient's resources read together (and for ingest, which writes a patient's documents one
/// after another); short enough that a key not in use does not linger in the process.
const DATA_KEY_LIFETIME: Duration = Duration::from_secs(120);

/// A data key in the cache, and when it was unwrapped.
#[derive(Clone)]
struct Cached {
    key: DataKey,
    at: Instant,
}

/// A data key wrapped for storing, and the id of the key-encryption key that wrapped it.
#[derive(Clone, Debug)]
pub(crate) struct Wrapped {
    pub kek_id: String,
    pub bytes: Vec<u8>,
}

/// The key-encryption keys and the data keys they unwrap. Unwrapping costs a database read and
/// an AES operation (in the token, with an HSM), and one patient's resources are usually read
/// together, so unwrapped keys are kept in a small cache for a short while; every copy is wiped
/// from memory when it is dropped (`SecretKey`).
pub(crate) struct DataKeys {
    db: Arc<Database>,
    ring: KekRing,
    cache: BoundedMap<Cached>,
    /// When the cache was last swept of keys past their lifetime.
    swept: Mutex<Instant>,
}

impl DataKeys {
    pub fn new(db: Arc<Database>, custody: Box<dyn KekCustody>) -> Self {
        DataKeys {
            db,
            ring: KekRing::new(custody),
            cache: BoundedMap::new(DATA_KEY_CACHE_SIZE),
            swept: Mutex::new(Instant::now()),
        }
    }

    /// Reads the key versions (recording version 1 on a database that has none) and checks that
    /// the version in force opens: at start, so that a wrong or missing key stops the gateway
    /// rather than its first write.
    pub fn prepare(&self) -> Result<Vec<KekVersion>, StoreError> {
        crate::rotation::prepare(&mut *self.db.conn()?, &self.ring)
    }

    /// The versions, read again when what this process knows is more than a few seconds old
    /// (as it is on a gateway that has not wrapped a key lately).
    pub fn versions(&self) -> Vec<KekVersion> {
        if let Err(error) = self.refresh_if_stale() {
            tracing::debug!(%error, "the key versions were not read again");
        }
        self.ring.versions()
    }

    fn refresh(&self) -> Result<(), StoreError> {
        let versions = crate::rotation::read_versions(&mut *self.db.conn()?)?;
        self.ring.learn(versions);
        Ok(())
    }

    /// Reads the versions again when what this process knows is older than
    /// [`crate::kek::VERSIONS_FRESH_FOR`].
    fn refresh_if_stale(&self) -> Result<(), StoreError> {
        if self.ring.fresh() {
            return Ok(());
        }
        self.refresh()
    }

    /// The key of `scope` when it is in memory, without asking the database.
    pub fn cached(&self, scope: &str) -> Option<DataKey> {
        self.cache.get(scope).filter(|c| c.at.elapsed() < DATA_KEY_LIFETIME).map(|c| c.key)
    }

    /// Remembers a key that is stored (committed) under `scope`.
    pub fn remember(&self, scope: &str, key: DataKey) {
        self.sweep();
        self.cache.put(scope, Cached { key, at: Instant::now() });
    }

    /// Drops the keys past their lifetime, at most once a lifetime: a key not used again would
    /// otherwise stay until the cache fills.
    fn sweep(&self) {
        // `try_lock`: a sweep under way is enough; no request waits for another's.
        let Ok(mut swept) = self.swept.try_lock() else { return };
        if swept.elapsed() < DATA_KEY_LIFETIME {
            return;
        }
        *swept = Instant::now();
        self.cache.retain(|cached| cached.at.elapsed() < DATA_KEY_LIFETIME);
    }

    /// The stored key of `scope`, `None` when there is none yet.
    pub fn stored(&self, scope: &str) -> Result<Option<DataKey>, StoreError> {
        if let Some(key) = self.cached(scope) {
            return Ok(Some(key));
        }
        let wrapped: Option<(String, Vec<u8>)> = data_keys::table
            .filter(data_keys::scope.eq(scope))
            .select((data_keys::kek_id, data_keys::wrapped_key))
            .get_result(&mut self.db.conn()?)
            .optional()?;
        let Some((kek_id, wrapped)) = wrapped else {
            return Ok(None);
        };
        let key = self.kek(&kek_id)?.unwrap(scope, &wrapped)?;
        self.remember(scope, key.clone());
        Ok(Some(key))
    }

    /// The key-encryption key of `kek_id`: a version this process knows, or one a rotation
    /// recorded since it last looked.
    fn kek(&self, kek_id: &str) -> Result<Arc<dyn KeyEncryptionKey>, StoreError> {
        if let Some(kek) = self.ring.by_id(kek_id) {
            return Ok(kek?);
        }
        self.refresh()?;
        match self.ring.by_id(kek_id) {
            Some(kek) => Ok(kek?),
            None => Err(StoreError::Damaged(format!(
                "a data key is wrapped by key-encryption key {kek_id}, which is not a version in force"
            ))),
        }
    }

    /// The data key of a row read from `data_keys` (a re-index reads it locked, in its own
    /// transaction, rather than through the cache).
    pub fn unwrap_row(&self, scope: &str, kek_id: &str, wrapped: &[u8]) -> Result<DataKey, StoreError> {
        Ok(self.kek(kek_id)?.unwrap(scope, wrapped)?)
    }

    /// `key` wrapped for `scope` by the version in force (a re-index gives a patient's key its
    /// new scope).
    pub fn wrap_for(&self, scope: &str, key: &DataKey) -> Result<Wrapped, StoreError> {
        self.refresh_if_stale()?;
        let kek = self.ring.current()?;
        Ok(Wrapped { kek_id: kek.id().to_owned(), bytes: kek.wrap(scope, key)? })
    }

    /// Whether a data key is stored under `scope`, asked of the database (a cached key may be
    /// one a re-index has since moved).
    pub fn exists(&self, scope: &str) -> Result<bool, StoreError> {
        let found: Option<String> = data_keys::table
            .filter(data_keys::scope.eq(scope))
            .select(data_keys::scope)
            .get_result(&mut self.db.conn()?)
            .optional()?;
        Ok(found.is_some())
    }

    /// A new data key for `scope`, and the same key wrapped for storing by the version in force
    /// (read again when what this process knows is more than a few seconds old).
    pub fn generate(&self, scope: &str) -> Result<(DataKey, Wrapped), StoreError> {
        self.refresh_if_stale()?;
        let kek = self.ring.current()?;
        let key = DataKey::generate()?;
        let bytes = kek.wrap(scope, &key)?;
        Ok((key, Wrapped { kek_id: kek.id().to_owned(), bytes }))
    }
}

/// A data key's row, on PostgreSQL locked (`FOR UPDATE` when `update`, else `FOR SHARE`).
pub(crate) fn data_key_row(
    conn: &mut DbConnection,
    scope: &str,
    update: bool,
) -> Result<Option<(String, Vec<u8>)>, StoreError> {
    let query = data_keys::table.filter(data_keys::scope.eq(scope)).select((data_keys::kek_id, data_keys::wrapped_key));
    Ok(match conn {
        DbConnection::Postgres(pg) if update => query.for_update().get_result(pg).optional()?,
        DbConnection::Postgres(pg) => query.for_share().get_result(pg).optional()?,
        // SQLite has one writer: the transaction is already alone.
        DbConnection::Sqlite(sqlite) => query.get_result(sqlite).optional()?,
    })
}
