//! Key-encryption keys (KEKs): the keys that wrap patients' data keys, in numbered versions.
//!
//! A version's key is kept in a custody ([`KekCustody`]): key files in development mode, or a
//! PKCS#11 token (the `hsm` crate), where wrapping and unwrapping happen inside the token. The
//! database knows the versions (`key_versions`): which key id each has, which one wraps new data
//! keys (the newest that is not retired), and each data key names the id that wrapped it. A
//! rotation adds a version and rewraps every data key under it, while the gateway serves: a
//! gateway looks the versions up again every few seconds, and at once when it meets a data key
//! wrapped by a version it has not seen.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::crypto::{open, seal, CryptoError, DataKey, SecretKey};

/// The key that wraps data keys: a key file's, or one kept in an HSM.
pub trait KeyEncryptionKey: Send + Sync {
    /// Names the key: stored beside every data key it wraps.
    fn id(&self) -> &str;
    fn wrap(&self, scope: &str, data_key: &DataKey) -> Result<Vec<u8>, CryptoError>;
    fn unwrap(&self, scope: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError>;
}

/// Where the versions of the key-encryption key are kept.
pub trait KekCustody: Send + Sync {
    /// The key of `version`; an error when the custody has none.
    fn open(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError>;
    /// Makes the key of `version`, or returns it when it exists already (a rotation resumed
    /// after it made the key and before it recorded it).
    fn create(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError>;
    /// What an operator reads: "key files under …", "PKCS#11 token …".
    fn describe(&self) -> String;
}

/// The authenticated data a data key is wrapped with: a wrapped key copied to another patient's
/// row does not unwrap.
pub fn wrap_aad(scope: &str) -> Vec<u8> {
    format!("vaitio:data-key:v1:{scope}").into_bytes()
}

/// A key-encryption key read from a key file.
pub struct FileKek {
    id: String,
    key: SecretKey,
}

impl FileKek {
    pub fn new(key: SecretKey) -> Self {
        // The id is a digest of the key, so it reveals nothing and changes when the key does.
        let digest = <sha2::Sha256 as sha2::Digest>::digest(key.expose_secret());
        FileKek { id: format!("file:{}", hex::encode(&digest[..8])), key }
    }
}

impl KeyEncryptionKey for FileKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, scope: &str, data_key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        seal(self.key.expose_secret(), &wrap_aad(scope), data_key.expose_secret())
    }

    fn unwrap(&self, scope: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        let bytes = Zeroizing::new(open(self.key.expose_secret(), &wrap_aad(scope), wrapped)?);
        DataKey::from_slice(&bytes)
    }
}

/// Development mode's custody: version 1 is the configured key file (`kek.hex`), version N is
/// the file beside it with `.vN` before its extension (`kek.v2.hex`).
pub struct KeyFiles {
    first: PathBuf,
}

impl KeyFiles {
    pub fn new(first: &Path) -> Self {
        KeyFiles { first: first.to_owned() }
    }

    pub fn path(&self, version: u32) -> PathBuf {
        if version <= 1 {
            return self.first.clone();
        }
        let stem = self.first.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let name = match self.first.extension() {
            Some(extension) => format!("{stem}.v{version}.{}", extension.to_string_lossy()),
            None => format!("{stem}.v{version}"),
        };
        self.first.with_file_name(name)
    }
}

impl KekCustody for KeyFiles {
    fn open(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        Ok(Arc::new(FileKek::new(SecretKey::from_file(&self.path(version))?)))
    }

    fn create(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        let path = self.path(version);
        if path.exists() {
            return self.open(version);
        }
        Ok(Arc::new(FileKek::new(SecretKey::generate_file(&path)?)))
    }

    fn describe(&self) -> String {
        format!("key files beside {}", self.first.display())
    }
}

/// A version of the key-encryption key as the database records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KekVersion {
    pub version: u32,
    pub key_id: String,
    pub created_at: i64,
    /// When a rotation finished rewrapping every data key under it; `None` while one runs.
    pub rewrapped_at: Option<i64>,
    pub retired_at: Option<i64>,
}

/// How long a gateway uses what it last read of the versions before it reads them again: a
/// rotation waits this long (and a little more) after rewrapping, so that no gateway still
/// wraps new data keys under the old version when it finishes.
pub const VERSIONS_FRESH_FOR: Duration = Duration::from_secs(5);

/// The versions this process knows, and their keys once opened.
struct Known {
    versions: Vec<KekVersion>,
    keys: BTreeMap<u32, Arc<dyn KeyEncryptionKey>>,
    read_at: Option<Instant>,
}

/// The keys of every version in use, opened from the custody as they are needed.
pub(crate) struct KekRing {
    custody: Box<dyn KekCustody>,
    known: RwLock<Known>,
}

impl KekRing {
    pub fn new(custody: Box<dyn KekCustody>) -> Self {
        KekRing { custody, known: RwLock::new(Known { versions: Vec::new(), keys: BTreeMap::new(), read_at: None }) }
    }

    pub fn custody(&self) -> &dyn KekCustody {
        &*self.custody
    }

    /// Whether the versions were read within [`VERSIONS_FRESH_FOR`].
    pub fn fresh(&self) -> bool {
        self.known.read().ok().and_then(|k| k.read_at).is_some_and(|at| at.elapsed() < VERSIONS_FRESH_FOR)
    }

    /// Takes the versions as just read from the database.
    pub fn learn(&self, versions: Vec<KekVersion>) {
        if let Ok(mut known) = self.known.write() {
            // A retired version's key is let go of.
            known.keys.retain(|v, _| versions.iter().any(|k| k.version == *v && k.retired_at.is_none()));
            known.versions = versions;
            known.read_at = Some(Instant::now());
        }
    }

    pub fn versions(&self) -> Vec<KekVersion> {
        self.known.read().map(|k| k.versions.clone()).unwrap_or_default()
    }

    /// The first version in force (not retired) that `pick` chooses, and its key if opened:
    /// looked up under the lock, as every wrap and unwrap asks.
    fn find(&self, pick: impl Fn(&[KekVersion]) -> Option<u32>) -> Option<(u32, Option<Arc<dyn KeyEncryptionKey>>)> {
        let known = self.known.read().ok()?;
        let version = pick(&known.versions)?;
        Some((version, known.keys.get(&version).cloned()))
    }

    /// The version that wraps new data keys: the newest that is not retired.
    pub fn current(&self) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        let newest =
            |versions: &[KekVersion]| versions.iter().filter(|v| v.retired_at.is_none()).map(|v| v.version).max();
        match self.find(newest) {
            Some((_, Some(key))) => Ok(key),
            Some((version, None)) => self.open(version),
            None => Err(CryptoError::Unavailable("no key-encryption key version is recorded".into())),
        }
    }

    /// The key with `key_id`, `None` when no version in force that this process knows has it.
    pub fn by_id(&self, key_id: &str) -> Option<Result<Arc<dyn KeyEncryptionKey>, CryptoError>> {
        let named = |versions: &[KekVersion]| {
            versions.iter().find(|v| v.key_id == key_id && v.retired_at.is_none()).map(|v| v.version)
        };
        match self.find(named)? {
            (_, Some(key)) => Some(Ok(key)),
            (version, None) => Some(self.open(version)),
        }
    }

    /// Opens `version` from the custody, checks it is the key recorded for it, and keeps it.
    fn open(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        // A version this node cannot open (its key file not here, its token without the key) is
        // a node not ready for it: 503, as another node or a later try may succeed.
        let key = self.custody.open(version).map_err(|error| match error {
            CryptoError::Unavailable(_) => error,
            other => {
                CryptoError::Unavailable(format!("key-encryption key version {version} does not open here: {other}"))
            }
        })?;
        let recorded = self.versions().into_iter().find(|v| v.version == version).map(|v| v.key_id);
        if recorded.as_deref().is_some_and(|id| id != key.id()) {
            return Err(CryptoError::Mismatch {
                version,
                recorded: recorded.unwrap_or_default(),
                found: key.id().to_owned(),
            });
        }
        if let Ok(mut known) = self.known.write() {
            known.keys.insert(version, key.clone());
        }
        Ok(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_keys_are_wrapped_per_scope() {
        let kek = FileKek::new(SecretKey::generate().unwrap());
        let data_key = DataKey::generate().unwrap();
        let wrapped = kek.wrap("patient-1", &data_key).unwrap();
        assert_eq!(kek.unwrap("patient-1", &wrapped).unwrap().expose_secret(), data_key.expose_secret());
        assert!(kek.unwrap("patient-2", &wrapped).is_err());
        let other = FileKek::new(SecretKey::generate().unwrap());
        assert!(other.unwrap("patient-1", &wrapped).is_err());
        assert_ne!(kek.id(), other.id());
    }

    #[test]
    fn key_file_versions_sit_beside_the_first() {
        let files = KeyFiles::new(Path::new("/keys/kek.hex"));
        assert_eq!(files.path(1), Path::new("/keys/kek.hex"));
        assert_eq!(files.path(2), Path::new("/keys/kek.v2.hex"));
        assert_eq!(KeyFiles::new(Path::new("/keys/kek")).path(3), Path::new("/keys/kek.v3"));
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&dir.path().join("kek.hex"));
        let made = files.create(2).unwrap();
        assert_eq!(files.create(2).unwrap().id(), made.id(), "made once, then found");
        assert_eq!(files.open(2).unwrap().id(), made.id());
        assert!(files.open(3).is_err());
    }

    #[test]
    fn the_ring_wraps_with_the_newest_version_in_force_and_checks_recorded_ids() {
        let dir = tempfile::tempdir().unwrap();
        let files = KeyFiles::new(&dir.path().join("kek.hex"));
        let first = files.create(1).unwrap();
        let second = files.create(2).unwrap();
        let ring = KekRing::new(Box::new(KeyFiles::new(&dir.path().join("kek.hex"))));
        let version = |version: u32, key_id: &str, retired: bool| KekVersion {
            version,
            key_id: key_id.to_owned(),
            created_at: 0,
            rewrapped_at: None,
            retired_at: retired.then_some(1),
        };
        assert!(ring.current().is_err(), "nothing recorded yet");
        ring.learn(vec![version(1, first.id(), false), version(2, second.id(), false)]);
        assert_eq!(ring.current().unwrap().id(), second.id());
        assert!(ring.by_id(first.id()).unwrap().is_ok());
        assert!(ring.by_id("file:unknown").is_none());
        ring.learn(vec![version(1, first.id(), true), version(2, second.id(), false)]);
        assert!(ring.by_id(first.id()).is_none(), "a retired version unwraps nothing");
        // A custody whose key is not the one the database recorded for the version is refused.
        ring.learn(vec![version(1, first.id(), false), version(2, first.id(), false)]);
        let stale = KekRing::new(Box::new(KeyFiles::new(&dir.path().join("kek.hex"))));
        stale.learn(ring.versions());
        assert!(matches!(stale.current(), Err(CryptoError::Mismatch { version: 2, .. })));
    }
}
