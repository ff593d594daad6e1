//! Rotating the key-encryption key: a new version, every data key rewrapped under it in batches
//! while the gateway serves, and old versions retired once nothing uses them.
//!
//! Every step is safe to repeat. A rotation is recorded as a version whose `rewrapped_at` is not
//! yet set; running it again resumes it. A batch rewraps a data key only if it is still wrapped
//! by the version it was read under (a compare-and-set), and the data key itself never changes,
//! so a gateway's cached keys, and everything sealed under them, stay good throughout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use diesel::prelude::*;

use crate::crypto::CryptoError;
use crate::db::schema::{data_keys, key_versions};
use crate::db::{write_transaction, Database, DbConnection};
use crate::error::StoreError;
use crate::kek::{KekCustody, KekRing, KekVersion, VERSIONS_FRESH_FOR};
use crate::time::now_millis;

/// `key_versions.purpose` of the key-encryption key.
const KEK: &str = "kek";

/// `key_versions.purpose` of the index (HMAC) key.
pub(crate) const INDEX: &str = "index";

/// Data keys rewrapped in one transaction, unless the operator says otherwise: short enough that
/// the gateway's writer never waits long for the database's write lock, long enough that the
/// commits do not dominate.
pub const REWRAP_BATCH: usize = 500;

/// A row of `key_versions`.
#[derive(Queryable)]
struct KeyVersionRow {
    version: i64,
    key_id: String,
    created_at: i64,
    rewrapped_at: Option<i64>,
    retired_at: Option<i64>,
}

/// The key-encryption key's versions, oldest first.
pub(crate) fn read_versions(conn: &mut DbConnection) -> Result<Vec<KekVersion>, StoreError> {
    read_versions_of(conn, KEK)
}

/// The versions of the key of `purpose` (`kek`, `index`), oldest first.
pub(crate) fn read_versions_of(conn: &mut DbConnection, purpose: &str) -> Result<Vec<KekVersion>, StoreError> {
    let rows: Vec<KeyVersionRow> = key_versions::table
        .filter(key_versions::purpose.eq(purpose))
        .order(key_versions::version)
        .select((
            key_versions::version,
            key_versions::key_id,
            key_versions::created_at,
            key_versions::rewrapped_at,
            key_versions::retired_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|row| KekVersion {
            version: u32::try_from(row.version).unwrap_or(0),
            key_id: row.key_id,
            created_at: row.created_at,
            rewrapped_at: row.rewrapped_at,
            retired_at: row.retired_at,
        })
        .collect())
}

/// Records the key-encryption key's `version` with `key_id`, unless it is recorded already
/// (another process did it).
fn record_version(conn: &mut DbConnection, version: u32, key_id: &str, rewrapped: bool) -> Result<(), StoreError> {
    record_version_of(conn, KEK, version, key_id, rewrapped)
}

/// Records `version` of the key of `purpose`, unless it is recorded already.
pub(crate) fn record_version_of(
    conn: &mut DbConnection,
    purpose: &str,
    version: u32,
    key_id: &str,
    rewrapped: bool,
) -> Result<(), StoreError> {
    let now = now_millis();
    let row = (
        key_versions::purpose.eq(purpose),
        key_versions::version.eq(i64::from(version)),
        key_versions::key_id.eq(key_id),
        key_versions::created_at.eq(now),
        key_versions::rewrapped_at.eq(rewrapped.then_some(now)),
    );
    write_transaction(conn, |conn| {
        let exists = key_versions::table
            .filter(key_versions::purpose.eq(purpose))
            .filter(key_versions::version.eq(i64::from(version)))
            .count()
            .get_result::<i64>(conn)?
            > 0;
        if !exists {
            diesel::insert_into(key_versions::table).values(row).execute(conn)?;
        }
        Ok(())
    })
}

/// Records that every key under an older version of `purpose` has been moved to `version`
/// (`rewrapped_at`): a KEK rotation's rewrap, an index key's re-index.
pub(crate) fn mark_done(conn: &mut DbConnection, purpose: &str, version: u32) -> Result<(), StoreError> {
    write_transaction(conn, |conn| {
        diesel::update(
            key_versions::table
                .filter(key_versions::purpose.eq(purpose))
                .filter(key_versions::version.eq(i64::from(version))),
        )
        .set(key_versions::rewrapped_at.eq(now_millis()))
        .execute(conn)?;
        Ok(())
    })
}

/// The versions as recorded, and the ring told of them. On a database where none is recorded
/// (the first start, or a database from before versions were kept), the custody's version 1 is
/// recorded: every data key there was wrapped by it, and a key of another id is refused when
/// it is met.
pub(crate) fn prepare(conn: &mut DbConnection, ring: &KekRing) -> Result<Vec<KekVersion>, StoreError> {
    let mut versions = read_versions(conn)?;
    if versions.is_empty() {
        let first = ring.custody().open(1)?;
        record_version(conn, 1, first.id(), true)?;
        versions = read_versions(conn)?;
    }
    ring.learn(versions.clone());
    // The version in force must open, and be the key recorded for it.
    ring.current()?;
    Ok(versions)
}

/// Where a rotation stands.
#[derive(Clone, Debug)]
pub struct RotationState {
    /// The version every data key is being rewrapped under.
    pub target: KekVersion,
    /// Whether it resumes a rotation that an earlier run began.
    pub resumed: bool,
    /// Data keys still wrapped by another version.
    pub remaining: u64,
}

/// The key-encryption key's versions as an operator manages them (`vaitio keys …`), over the
/// same database and custody the gateway uses, which may be serving meanwhile.
pub struct KekRotation {
    db: Arc<Database>,
    ring: KekRing,
    /// Where the current pass has got to: the last scope rewrapped, by the old key's id.
    cursor: Mutex<HashMap<String, String>>,
}

impl KekRotation {
    pub fn new(db: Arc<Database>, custody: Box<dyn KekCustody>) -> Result<Self, StoreError> {
        let ring = KekRing::new(custody);
        prepare(&mut *db.conn()?, &ring)?;
        Ok(KekRotation { db, ring, cursor: Mutex::new(HashMap::new()) })
    }

    pub fn versions(&self) -> Result<Vec<KekVersion>, StoreError> {
        let versions = read_versions(&mut *self.db.conn()?)?;
        self.ring.learn(versions.clone());
        Ok(versions)
    }

    pub fn describe_custody(&self) -> String {
        self.ring.custody().describe()
    }

    /// Begins a rotation, or resumes the one an earlier run left unfinished: the newest version
    /// when its rewrap is not done (or a data key of an older version turned up after it was),
    /// otherwise a new version made in the custody and recorded.
    pub fn begin(&self) -> Result<RotationState, StoreError> {
        let versions = self.versions()?;
        if let Some(newest) = versions.iter().filter(|v| v.retired_at.is_none()).max_by_key(|v| v.version) {
            let remaining = self.remaining(newest)?;
            if newest.rewrapped_at.is_none() || remaining > 0 {
                self.ring.current()?;
                return Ok(RotationState { target: newest.clone(), resumed: true, remaining });
            }
        }
        let version = versions.iter().map(|v| v.version).max().unwrap_or(0) + 1;
        let key = self.ring.custody().create(version)?;
        record_version(&mut *self.db.conn()?, version, key.id(), false)?;
        let target = self
            .versions()?
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| StoreError::Internal("a recorded key version is not found".into()))?;
        // The new version must open, as the one in force, before anything is rewrapped under it.
        self.ring.current()?;
        let remaining = self.remaining(&target)?;
        Ok(RotationState { target, resumed: false, remaining })
    }

    /// Data keys wrapped by a version other than `target`, counted through the index by key id.
    /// (An operator's question, not a request's: it reads every such key's index entry.)
    pub fn remaining(&self, target: &KekVersion) -> Result<u64, StoreError> {
        let mut remaining = 0u64;
        for version in self.versions()?.iter().filter(|v| v.key_id != target.key_id) {
            remaining += self.wrapped_by(version)?;
        }
        Ok(remaining)
    }

    /// How many data keys `version` wraps (through the index by key id; an operator's question).
    pub fn wrapped_by(&self, version: &KekVersion) -> Result<u64, StoreError> {
        let count: i64 =
            data_keys::table.filter(data_keys::kek_id.eq(&version.key_id)).count().get_result(&mut *self.db.conn()?)?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// Rewraps the next `batch` data keys of an older version under `target`, in one
    /// transaction, and returns how many it rewrapped; `None` when the pass has none left.
    ///
    /// A pass reads on from the last key it rewrapped (by scope) rather than from the start:
    /// on PostgreSQL a rewrapped key leaves a dead entry under the old id in the index until
    /// vacuum, and starting over every batch made a rotation of a million keys read hundreds of
    /// millions of them. [`KekRotation::new_pass`] starts again from the first key.
    pub fn rewrap_batch(&self, target: &KekVersion, batch: usize) -> Result<Option<usize>, StoreError> {
        let new = self.ring.by_id(&target.key_id).ok_or_else(|| {
            StoreError::Crypto(CryptoError::Kek(format!("version {} is not in force", target.version)))
        })??;
        for old in self.ring.versions().iter().filter(|v| v.key_id != target.key_id && v.retired_at.is_none()) {
            let mut conn = self.db.conn()?;
            let after = self.cursor.lock().ok().and_then(|c| c.get(&old.key_id).cloned()).unwrap_or_default();
            let batch: Vec<(String, Vec<u8>)> = data_keys::table
                .filter(data_keys::kek_id.eq(&old.key_id))
                .filter(data_keys::scope.gt(&after))
                .order(data_keys::scope)
                .limit(i64::try_from(batch.max(1)).unwrap_or(i64::MAX))
                .select((data_keys::scope, data_keys::wrapped_key))
                .load(&mut *conn)?;
            if batch.is_empty() {
                continue;
            }
            let key = self.ring.by_id(&old.key_id).ok_or_else(|| {
                StoreError::Crypto(CryptoError::Kek(format!("version {} cannot be opened", old.version)))
            })??;
            // Unwrapped and wrapped again outside the transaction: with an HSM these are the
            // token's operations, and the write lock is held for the updates alone.
            let mut rewrapped = Vec::with_capacity(batch.len());
            for (scope, wrapped) in &batch {
                let data_key = key.unwrap(scope, wrapped)?;
                rewrapped.push((scope, new.wrap(scope, &data_key)?));
            }
            let done =
                write_transaction(&mut conn, |conn| store_rewrapped(conn, &old.key_id, &target.key_id, &rewrapped))?;
            if let (Ok(mut cursor), Some((last, _))) = (self.cursor.lock(), batch.last()) {
                cursor.insert(old.key_id.clone(), last.clone());
            }
            // Every key of the batch may have been rewrapped by another run meanwhile (`done`
            // is then 0), and the pass goes on.
            return Ok(Some(done));
        }
        Ok(None)
    }

    /// Starts the next pass from the first data key: keys made under an old version while a
    /// pass went on may sort before where it had got to.
    pub fn new_pass(&self) {
        if let Ok(mut cursor) = self.cursor.lock() {
            cursor.clear();
        }
    }

    /// Finishes a rotation once no data key is wrapped by another version: waits until every
    /// gateway has read the versions again (so none still wraps new keys under an old one),
    /// rewraps what they made meanwhile, and records the rotation done.
    pub fn finish(&self, target: &KekVersion, batch: usize, mut progress: impl FnMut(usize)) -> Result<(), StoreError> {
        loop {
            std::thread::sleep(VERSIONS_FRESH_FOR + std::time::Duration::from_secs(1));
            self.new_pass();
            let mut moved = 0;
            while let Some(done) = self.rewrap_batch(target, batch)? {
                moved += done;
                progress(done);
            }
            if moved == 0 && self.remaining(target)? == 0 {
                break;
            }
        }
        mark_done(&mut *self.db.conn()?, KEK, target.version)
    }

    /// Retires `version`: refused for the version in force, and while any data key is still
    /// wrapped by it.
    pub fn retire(&self, version: u32) -> Result<(), RetireRefusal> {
        let versions = self.versions()?;
        let Some(retiring) = versions.iter().find(|v| v.version == version) else {
            return Err(RetireRefusal::Unknown(version));
        };
        if retiring.retired_at.is_some() {
            return Err(RetireRefusal::Already(version));
        }
        let in_force = versions.iter().filter(|v| v.retired_at.is_none()).map(|v| v.version).max();
        if in_force == Some(version) {
            return Err(RetireRefusal::InForce(version));
        }
        let mut conn = self.db.conn()?;
        let in_use = data_keys::table
            .filter(data_keys::kek_id.eq(&retiring.key_id))
            .select(data_keys::scope)
            .first::<String>(&mut *conn)
            .optional()
            .map_err(StoreError::from)?
            .is_some();
        if in_use {
            return Err(RetireRefusal::InUse(version));
        }
        write_transaction(&mut conn, |conn| {
            diesel::update(
                key_versions::table
                    .filter(key_versions::purpose.eq(KEK))
                    .filter(key_versions::version.eq(i64::from(version))),
            )
            .set(key_versions::retired_at.eq(now_millis()))
            .execute(conn)?;
            Ok(())
        })?;
        Ok(())
    }
}

/// Stores a batch of rewrapped keys, each only if still wrapped by `old` (a compare-and-set).
/// On PostgreSQL in one statement over arrays (a round trip a key made it twenty times
/// slower); SQLite, in-process, updates row by row.
fn store_rewrapped(
    conn: &mut DbConnection,
    old: &str,
    new: &str,
    rewrapped: &[(&String, Vec<u8>)],
) -> Result<usize, StoreError> {
    match conn {
        DbConnection::Postgres(pg) => {
            use diesel::sql_types::{Array, Binary, Text};
            let scopes: Vec<&str> = rewrapped.iter().map(|(scope, _)| scope.as_str()).collect();
            let wrapped: Vec<&[u8]> = rewrapped.iter().map(|(_, wrapped)| wrapped.as_slice()).collect();
            Ok(diesel::sql_query(
                "UPDATE data_keys AS d SET kek_id = $1, wrapped_key = v.wrapped \
                 FROM unnest($2::text[], $3::bytea[]) AS v(scope, wrapped) \
                 WHERE d.scope = v.scope AND d.kek_id = $4",
            )
            .bind::<Text, _>(new)
            .bind::<Array<Text>, _>(scopes)
            .bind::<Array<Binary>, _>(wrapped)
            .bind::<Text, _>(old)
            .execute(pg)?)
        }
        DbConnection::Sqlite(sqlite) => {
            let mut done = 0;
            for (scope, wrapped) in rewrapped {
                done += diesel::update(
                    data_keys::table.filter(data_keys::scope.eq(scope.as_str())).filter(data_keys::kek_id.eq(old)),
                )
                .set((data_keys::kek_id.eq(new), data_keys::wrapped_key.eq(wrapped)))
                .execute(sqlite)?;
            }
            Ok(done)
        }
    }
}

/// Why a version was not retired.
#[derive(Debug, thiserror::Error)]
pub enum RetireRefusal {
    #[error("there is no key-encryption key version {0}")]
    Unknown(u32),
    #[error("version {0} is retired already")]
    Already(u32),
    #[error("version {0} is the one in force: rotate to a new version first (`vaitio keys rotate-kek`)")]
    InForce(u32),
    #[error(
        "data keys are still wrapped by version {0}: finish the rotation first (`vaitio keys rotate-kek` resumes it)"
    )]
    InUse(u32),
    #[error(transparent)]
    Store(#[from] StoreError),
}
