//! The index (HMAC) key in numbered versions: the key that turns a HETU into a patient
//! pseudonym and an identifier into a search token.
//!
//! Version 1 is the deployment's `index.key`; version N is the file beside it with `.vN` before
//! its extension, as the key-encryption key's files are named ([`KeyFiles`]). The database
//! records the versions (`key_versions`, purpose `index`). The newest version names every new
//! patient and every new search token at once. Until the re-index (`reindex.rs`) has moved every
//! patient and recomputed every token under it (its `rewrapped_at` is then set), lookups also
//! try the older versions. Older versions are never let go of: the audit log is never rewritten,
//! so a patient's access log is found under every pseudonym they ever had, and a document's id,
//! derived from the clinic's record id under the version in force when it was first filed,
//! never changes.

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Instant;

use crate::crypto::{CryptoError, Pseudonymizer, SecretKey};
use crate::db::DbConnection;
use crate::error::StoreError;
use crate::kek::{KekVersion, KeyFiles, VERSIONS_FRESH_FOR};
use crate::rotation::{read_versions_of, record_version_of, INDEX};

/// The id recorded for an index key: a digest of it, which reveals nothing and changes when the
/// key does.
pub fn index_key_id(key: &SecretKey) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(key.expose_secret());
    format!("index:{}", hex::encode(&digest[..8]))
}

/// What this process knows of the versions, and their keys.
struct Known {
    versions: Vec<KekVersion>,
    /// The newest version the database records that this process could not open, if any.
    missing: Option<u32>,
    /// Every version whose key opened, by version.
    keys: BTreeMap<u32, Pseudonymizer>,
    read_at: Option<Instant>,
}

/// Every version of the index key this process holds.
pub struct IndexKeys {
    /// Where versions are read from; `None` for a process given its one key (examples, tools).
    files: Option<KeyFiles>,
    known: RwLock<Known>,
}

impl IndexKeys {
    /// The versions kept as key files beside `first` (version 1).
    pub fn from_files(first: &std::path::Path) -> Result<Self, CryptoError> {
        let files = KeyFiles::new(first);
        let key = SecretKey::from_file(&files.path(1))?;
        Ok(Self::with(Some(files), key))
    }

    /// One key, version 1, and no others: for a process that never sees a rotation.
    pub fn fixed(key: SecretKey) -> Self {
        Self::with(None, key)
    }

    fn with(files: Option<KeyFiles>, first: SecretKey) -> Self {
        let id = index_key_id(&first);
        let version = KekVersion { version: 1, key_id: id, created_at: 0, rewrapped_at: Some(0), retired_at: None };
        let keys = BTreeMap::from([(1, Pseudonymizer::new(first))]);
        IndexKeys { files, known: RwLock::new(Known { versions: vec![version], missing: None, keys, read_at: None }) }
    }

    /// Reads the versions (recording version 1 on a database that has none) and opens every one
    /// of them: at start, so that a gateway without a version's key file stops at once rather
    /// than missing a patient's rows or access log.
    pub fn prepare(&self, conn: &mut DbConnection) -> Result<Vec<KekVersion>, StoreError> {
        let mut versions = read_versions_of(conn, INDEX)?;
        if versions.is_empty() {
            let first = self.known.read().map_err(poisoned)?.versions[0].key_id.clone();
            record_version_of(conn, INDEX, 1, &first, true)?;
            versions = read_versions_of(conn, INDEX)?;
        }
        for version in &versions {
            self.open(version)?;
        }
        self.learn(versions.clone());
        Ok(versions)
    }

    /// Reads the versions again when what this process knows is older than
    /// [`VERSIONS_FRESH_FOR`]: a rotation begun elsewhere is seen within that time.
    pub fn refresh_if_stale(&self, conn: impl FnOnce() -> Result<Vec<KekVersion>, StoreError>) {
        let fresh = self.known.read().ok().and_then(|k| k.read_at).is_some_and(|at| at.elapsed() < VERSIONS_FRESH_FOR);
        if fresh || self.files.is_none() {
            return;
        }
        match conn() {
            Ok(versions) => {
                for version in &versions {
                    if let Err(error) = self.open(version) {
                        // Lookups go on under the versions that open; the operator sees why.
                        tracing::error!(version = version.version, %error, "an index key version does not open here");
                    }
                }
                self.learn(versions);
            }
            Err(error) => tracing::debug!(%error, "the index key versions were not read again"),
        }
    }

    /// Opens the key of `version` (once) and checks it is the key the database recorded.
    fn open(&self, version: &KekVersion) -> Result<(), StoreError> {
        if self.known.read().map_err(poisoned)?.keys.contains_key(&version.version) {
            return Ok(());
        }
        let Some(files) = &self.files else {
            return Err(CryptoError::Unavailable(format!("index key version {} is not held", version.version)).into());
        };
        let key = SecretKey::from_file(&files.path(version.version))?;
        let found = index_key_id(&key);
        if found != version.key_id {
            return Err(
                CryptoError::Mismatch { version: version.version, recorded: version.key_id.clone(), found }.into()
            );
        }
        self.known
            .write()
            .map_err(poisoned)?
            .keys
            .insert(version.version, Pseudonymizer::of_version(key, version.version));
        Ok(())
    }

    /// What is known; a panic while the lock was held left it between two whole updates.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes the versions as just read; a version whose key did not open is left out.
    fn learn(&self, versions: Vec<KekVersion>) {
        if let Ok(mut known) = self.known.write() {
            known.missing = versions.iter().map(|v| v.version).filter(|v| !known.keys.contains_key(v)).max();
            let held: Vec<KekVersion> = versions.into_iter().filter(|v| known.keys.contains_key(&v.version)).collect();
            if !held.is_empty() {
                known.versions = held;
            }
            known.read_at = Some(Instant::now());
        }
    }

    pub fn versions(&self) -> Vec<KekVersion> {
        self.known.read().map(|k| k.versions.clone()).unwrap_or_default()
    }

    /// Refuses (503) while the database records a version this process cannot open: naming a
    /// patient under an older version than the other nodes would split their rows, so writes
    /// wait until the version's key file is in place here.
    pub fn complete(&self) -> Result<(), CryptoError> {
        match self.known.read().ok().and_then(|k| k.missing) {
            Some(version) => Err(CryptoError::Unavailable(format!(
                "index key version {version} is recorded but its key file does not open on this node"
            ))),
            None => Ok(()),
        }
    }

    /// The version that names new patients and new tokens: the newest.
    pub fn current(&self) -> Pseudonymizer {
        let known = self.read();
        let newest = known.versions.iter().map(|v| v.version).max().unwrap_or(1);
        known
            .keys
            .get(&newest)
            .or_else(|| known.keys.values().next_back())
            .cloned()
            .expect("version 1 is held from the start")
    }

    /// Whether a re-index to the newest version is unfinished: lookups then try older versions.
    pub fn reindexing(&self) -> bool {
        let known = self.read();
        known.versions.iter().max_by_key(|v| v.version).is_some_and(|v| v.rewrapped_at.is_none())
    }

    /// The versions that stored index rows may be under, newest first: the newest alone, or
    /// every version while a re-index is unfinished.
    pub fn lookup(&self) -> Vec<Pseudonymizer> {
        if self.reindexing() {
            self.every()
        } else {
            vec![self.current()]
        }
    }

    /// Every version held, newest first: for what is never rewritten (the audit log's
    /// pseudonyms, documents' derived ids).
    pub fn every(&self) -> Vec<Pseudonymizer> {
        let known = self.read();
        known.keys.values().rev().cloned().collect()
    }

    /// The first version, held for good (the audit log keeps the names it made): what must stay
    /// the same across rotations derives from it.
    pub fn first(&self) -> Option<Pseudonymizer> {
        self.version(1)
    }

    /// The key of `version`, if held.
    pub fn version(&self, version: u32) -> Option<Pseudonymizer> {
        self.known.read().ok()?.keys.get(&version).cloned()
    }

    /// The files versions are kept in, if any.
    pub(crate) fn files(&self) -> Option<&KeyFiles> {
        self.files.as_ref()
    }
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> StoreError {
    StoreError::Internal("the index keys' lock was poisoned".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_try_older_versions_only_while_a_reindex_is_unfinished() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("index.key");
        let files = KeyFiles::new(&first);
        let one = SecretKey::generate_file(&files.path(1)).unwrap();
        let two = SecretKey::generate_file(&files.path(2)).unwrap();
        let keys = IndexKeys::from_files(&first).unwrap();
        let version = |version: u32, key: &SecretKey, done: bool| KekVersion {
            version,
            key_id: index_key_id(key),
            created_at: 0,
            rewrapped_at: done.then_some(1),
            retired_at: None,
        };
        assert_eq!(keys.current().version(), 1);
        assert_eq!(keys.lookup().len(), 1);
        keys.open(&version(2, &two, false)).unwrap();
        keys.learn(vec![version(1, &one, true), version(2, &two, false)]);
        assert_eq!(keys.current().version(), 2);
        assert!(keys.reindexing());
        assert_eq!(keys.lookup().iter().map(Pseudonymizer::version).collect::<Vec<_>>(), [2, 1]);
        keys.learn(vec![version(1, &one, true), version(2, &two, true)]);
        assert_eq!(keys.lookup().iter().map(Pseudonymizer::version).collect::<Vec<_>>(), [2]);
        assert_eq!(keys.every().len(), 2, "the audit log's old pseudonyms are still found");
        // A file that is not the key recorded for its version is refused.
        assert!(keys.open(&version(3, &one, false)).is_err(), "version 3 has no file");
        let wrong = KekVersion { key_id: "index:0000".into(), ..version(3, &one, false) };
        SecretKey::generate_file(&files.path(3)).unwrap();
        assert!(keys.open(&wrong).is_err());
        // A version recorded but not held here: writes wait (503) rather than name patients
        // under an older version than the other nodes do.
        assert!(keys.complete().is_ok());
        keys.learn(vec![version(1, &one, true), version(2, &two, true), wrong]);
        assert!(matches!(keys.complete(), Err(CryptoError::Unavailable(_))));
        assert_eq!(keys.current().version(), 2);
    }
}
