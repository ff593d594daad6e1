//! Patients' data keys: found (unwrapped, cached briefly) or made (and wrapped) for a write.

use diesel::prelude::*;

use crate::cache::BoundedMap;
use crate::crypto::{DataKey, KeyEncryptionKey};
use crate::db::schema::data_keys;
use std::sync::Arc;

use crate::db::Database;
use crate::error::StoreError;

/// How many unwrapped data keys are kept in memory.
const DATA_KEY_CACHE_SIZE: usize = 4096;

/// The key-encryption key and the data keys it unwraps. Unwrapping costs a database read and an
/// AES operation, and one patient's resources are usually read together, so unwrapped keys are
/// kept in a small cache.
pub(crate) struct DataKeys {
    db: Arc<Database>,
    kek: Box<dyn KeyEncryptionKey>,
    cache: BoundedMap<DataKey>,
}

impl DataKeys {
    pub fn new(db: Arc<Database>, kek: Box<dyn KeyEncryptionKey>) -> Self {
        DataKeys { db, kek, cache: BoundedMap::new(DATA_KEY_CACHE_SIZE) }
    }

    /// Names the key-encryption key each new data key is wrapped by.
    pub fn kek_id(&self) -> &str {
        self.kek.id()
    }

    /// The key of `scope` when it is in memory, without asking the database.
    pub fn cached(&self, scope: &str) -> Option<DataKey> {
        self.cache.get(scope)
    }

    /// Remembers a key that is stored (committed) under `scope`.
    pub fn remember(&self, scope: &str, key: DataKey) {
        self.cache.put(scope, key);
    }

    /// The stored key of `scope`, `None` when there is none yet.
    pub fn stored(&self, scope: &str) -> Result<Option<DataKey>, StoreError> {
        if let Some(key) = self.cache.get(scope) {
            return Ok(Some(key));
        }
        let wrapped: Option<Vec<u8>> = data_keys::table
            .filter(data_keys::scope.eq(scope))
            .select(data_keys::wrapped_key)
            .get_result(&mut self.db.conn()?)
            .optional()?;
        match wrapped {
            Some(wrapped) => {
                let key = self.kek.unwrap(scope, &wrapped)?;
                self.cache.put(scope, key.clone());
                Ok(Some(key))
            }
            None => Ok(None),
        }
    }

    /// A new data key for `scope`, and the same key wrapped for storing.
    pub fn generate(&self, scope: &str) -> Result<(DataKey, Vec<u8>), StoreError> {
        let key = DataKey::generate()?;
        let wrapped = self.kek.wrap(scope, &key)?;
        Ok((key, wrapped))
    }
}
