//! Envelope encryption of clinical payloads, and the keyed HMACs that stand in for identifiers.
//!
//! Every resource body is sealed with AES-256-GCM under a data key of its patient (resources of no
//! patient share one data key). Data keys are stored only wrapped by a key-encryption key, which
//! lives outside the database (a key file, or a PKCS#11 token: see `kek.rs`). The
//! authenticated data binds the resource type, id, version and key scope, so a ciphertext copied
//! to another row does not open. Identifiers are indexed as HMAC-SHA256 tokens under a separate
//! secret, so a stolen database alone yields neither text nor identity codes.

use std::fmt;
use std::fs;
use std::path::Path;

use fhir_profiles::Hetu;
use hmac::{Hmac, KeyInit, Mac};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::rand::{SecureRandom, SystemRandom};
use sha2::Sha256;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("key file {path}: {message}")]
    KeyFile { path: String, message: String },
    #[error("a sealed value did not open: wrong key, or the data was altered or moved")]
    Open,
    #[error("the system's random source failed")]
    Random,
    #[error("a value could not be sealed")]
    Seal,
    /// The key-encryption key cannot be used now (its token is absent, locked or not answering):
    /// transient, and answered 503.
    #[error("the key-encryption key is unavailable: {0}")]
    Unavailable(String),
    /// The key-encryption key refused an operation for a reason that waiting will not mend.
    #[error("the key-encryption key failed: {0}")]
    Kek(String),
    /// The custody's key of a version is not the key the database recorded for it.
    #[error(
        "key-encryption key version {version} is recorded as {recorded}, but the configured custody holds {found}"
    )]
    Mismatch { version: u32, recorded: String, found: String },
}

/// 32 bytes of key material whose `Debug` prints nothing, wiped from memory when dropped.
#[derive(Clone)]
pub struct SecretKey([u8; 32]);

impl Drop for SecretKey {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// From the operating system's generator (through `ring`, as nonces are): OpenSSL 3's
    /// `RAND_bytes` looked its generator up under locks on every call, 20 µs of every new
    /// patient's submission.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = [0u8; 32];
        SystemRandom::new().fill(&mut key).map_err(|_| CryptoError::Random)?;
        Ok(SecretKey(key))
    }

    pub(crate) fn expose_secret(&self) -> &[u8; 32] {
        &self.0
    }

    /// Reads a key file: 64 hexadecimal characters. Refuses a file that others can read, so a
    /// misconfigured deployment fails at start rather than leaking later.
    pub fn from_file(path: &Path) -> Result<Self, CryptoError> {
        let error = |message: String| CryptoError::KeyFile { path: path.display().to_string(), message };
        let text = zeroize::Zeroizing::new(fs::read_to_string(path).map_err(|e| error(e.to_string()))?);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(path).map_err(|e| error(e.to_string()))?.permissions().mode();
            if mode & 0o077 != 0 {
                return Err(error(format!("mode {:o} lets others read it; chmod 600 it", mode & 0o777)));
            }
        }
        let bytes = zeroize::Zeroizing::new(
            hex::decode(text.trim()).map_err(|_| error("expected 64 hexadecimal characters".into()))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| error("expected a 32-byte key (64 hexadecimal characters)".into()))?;
        Ok(SecretKey(key))
    }

    /// Writes a new random key file, readable by its owner only (development mode's first run).
    pub fn generate_file(path: &Path) -> Result<Self, CryptoError> {
        use std::io::Write;
        let key = Self::generate()?;
        let error =
            |e: std::io::Error| CryptoError::KeyFile { path: path.display().to_string(), message: e.to_string() };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(error)?;
        }
        let mut options = fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let text = zeroize::Zeroizing::new(hex::encode(key.0));
        // `create_new`: a key file is never overwritten.
        options.open(path).and_then(|mut file| file.write_all(text.as_bytes())).map_err(error)?;
        Ok(key)
    }
}

/// AES-256-GCM: a random 96-bit nonce, the ciphertext, the 128-bit tag, in that order. Done with
/// `ring` (already built for rustls) rather than OpenSSL's EVP interface, which looks the cipher
/// and its parameters up by name on every call: 8.6 against 3.2 µs for a 9 kB document, 4.3
/// against 1.1 µs for a wrapped key. The bytes are the same either way (the tests check both
/// directions against OpenSSL), so what was sealed before opens unchanged.
pub(crate) fn seal(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new().fill(&mut nonce).map_err(|_| CryptoError::Random)?;
    let mut sealed = Vec::with_capacity(NONCE_LEN + plaintext.len() + TAG_LEN);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = aead_key(key)?
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad), &mut sealed[NONCE_LEN..])
        .map_err(|_| CryptoError::Seal)?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(sealed)
}

pub(crate) fn open(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if sealed.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::Open);
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| CryptoError::Open)?;
    let mut opened = rest.to_vec();
    let plain_len =
        aead_key(key)?.open_in_place(nonce, Aad::from(aad), &mut opened).map_err(|_| CryptoError::Open)?.len();
    opened.truncate(plain_len);
    Ok(opened)
}

fn aead_key(key: &[u8; 32]) -> Result<LessSafeKey, CryptoError> {
    Ok(LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| CryptoError::Seal)?))
}

/// A patient's data key, in memory only (wiped when dropped).
#[derive(Clone, Debug)]
pub struct DataKey(SecretKey);

impl DataKey {
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(DataKey(SecretKey::generate()?))
    }

    /// A data key from its 32 bytes, as a key-encryption key unwrapped them.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, CryptoError> {
        Ok(DataKey(SecretKey(bytes.try_into().map_err(|_| CryptoError::Open)?)))
    }

    /// The key's bytes, for a key-encryption key to wrap: nothing else reads them.
    pub fn expose_secret(&self) -> &[u8; 32] {
        &self.0 .0
    }
}

/// What a sealed resource body is bound to.
pub(crate) struct BodyBinding<'a> {
    pub resource_type: &'a str,
    pub id: &'a str,
    pub version: i64,
    pub key_scope: &'a str,
    /// What the enforcement point decides on, kept in clear beside the body: bound into the
    /// authenticated data, so a row relabelled (or re-attributed, or moved to another patient or
    /// service event) in the database no longer opens, rather than opening for the wrong reader.
    pub patient: Option<&'a str>,
    pub security_labels: &'a str,
    pub author: (Option<&'a str>, Option<&'a str>),
    pub service_event: Option<&'a str>,
}

impl BodyBinding<'_> {
    fn aad(&self) -> Vec<u8> {
        self.aad_for("vaitio:resource:v2:")
    }

    /// A document's listing is bound to the same metadata as the version it was read from, and
    /// apart from bodies: a listing cannot be opened as a body, nor a body as a listing.
    fn listing_aad(&self) -> Vec<u8> {
        self.aad_for("vaitio:listing:v1:")
    }

    fn aad_for(&self, domain: &str) -> Vec<u8> {
        // A JSON array: every value delimited, none able to run into the next.
        let bound = serde_json::json!([
            self.resource_type,
            self.id,
            self.version,
            self.key_scope,
            self.patient,
            self.security_labels,
            self.author.0,
            self.author.1,
            self.service_event,
        ]);
        format!("{domain}{bound}").into_bytes()
    }
}

pub(crate) fn seal_body(key: &DataKey, binding: &BodyBinding<'_>, body: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal(&key.0 .0, &binding.aad(), body)
}

pub(crate) fn seal_listing(key: &DataKey, binding: &BodyBinding<'_>, listing: &[u8]) -> Result<Vec<u8>, CryptoError> {
    seal(&key.0 .0, &binding.listing_aad(), listing)
}

/// Crate-private, like [`open_body`].
pub(crate) fn open_listing(key: &DataKey, binding: &BodyBinding<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open(&key.0 .0, &binding.listing_aad(), sealed)
}

/// Crate-private: a body is opened only through the [`crate::Opener`], whose one instance the
/// enforcement point holds.
pub(crate) fn open_body(key: &DataKey, binding: &BodyBinding<'_>, sealed: &[u8]) -> Result<Vec<u8>, CryptoError> {
    open(&key.0 .0, &binding.aad(), sealed)
}

/// Keyed HMAC-SHA256 under one version of the index key: patient pseudonyms and identifier
/// tokens. Each use has its own prefix so a token of one kind never equals a token of another.
///
/// A pseudonym made under version 2 or later carries its version in front (`v2-…`): every row
/// and every audit entry that names a patient says which key version named them, so a re-index
/// knows what it has moved and an auditor knows which key to ask. Version 1's pseudonyms are the
/// bare digest, as they were before the index key had versions.
///
/// The HMAC is keyed once and cloned for each use: a submission computes some twenty of them,
/// and keying a new one each time (as an OpenSSL `PKey` and `Signer` did) cost more than the
/// hashing.
#[derive(Clone)]
pub struct Pseudonymizer {
    keyed: Hmac<Sha256>,
    version: u32,
}

impl Pseudonymizer {
    /// The index key's first version (a deployment's `index.key`).
    pub fn new(key: SecretKey) -> Self {
        Self::of_version(key, 1)
    }

    pub fn of_version(key: SecretKey, version: u32) -> Self {
        let keyed = <Hmac<Sha256> as KeyInit>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
        Pseudonymizer { keyed, version: version.max(1) }
    }

    /// The index key version this pseudonymizer is.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// A pseudonym: the digest, with the key version in front from version 2 on.
    fn pseudonym(&self, parts: &[&str]) -> String {
        match self.version {
            1 => self.mac(parts),
            version => format!("v{version}-{}", self.mac(parts)),
        }
    }

    fn digest(&self, parts: &[&str]) -> [u8; 32] {
        let mut mac = self.keyed.clone();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                mac.update(&[0x1f]);
            }
            mac.update(part.as_bytes());
        }
        mac.finalize().into_bytes().into()
    }

    fn mac(&self, parts: &[&str]) -> String {
        hex::encode(self.digest(parts))
    }

    /// A key for `purpose` derived from this version of the index key (HMAC with the purpose as
    /// its label, apart from every pseudonym and token): for what must be as stable as the
    /// version, and as secret.
    pub fn derived_key(&self, purpose: &str) -> [u8; 32] {
        self.digest(&["derived-key", purpose])
    }

    /// The patient pseudonym of a HETU: the same person gets the same pseudonym in every row.
    pub fn patient_from_hetu(&self, hetu: &Hetu) -> String {
        self.pseudonym(&["patient", "hetu", hetu.expose()])
    }

    /// The pseudonym of a Patient that carries no HETU (a temporary record).
    pub fn patient_from_id(&self, id: &str) -> String {
        self.pseudonym(&["patient", "id", id])
    }

    /// An identifier token: `system` is `None` for identifiers without a system.
    pub fn token(&self, param: &str, system: Option<&str>, value: &str) -> String {
        match system {
            Some(system) => self.mac(&["token", param, "system", system, value]),
            None => self.mac(&["token", param, "nosystem", value]),
        }
    }

    /// A stable, unguessable UUID (version 4 layout) for `parts`: document ids derived from an
    /// organisation's own record ids, so a repeated submission finds its document.
    pub fn uuid(&self, parts: &[&str]) -> String {
        let mut all = Vec::with_capacity(parts.len() + 1);
        all.push("uuid");
        all.extend_from_slice(parts);
        let digest = self.digest(&all);
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        // The version 4 and RFC 4122 variant bits, as a random UUID has them.
        uuid::Builder::from_random_bytes(bytes).into_uuid().hyphenated().to_string()
    }

    /// The token that matches an identifier value whatever its system.
    pub fn token_any_system(&self, param: &str, value: &str) -> String {
        self.mac(&["token", param, "any", value])
    }
}

/// The index key version that made `pseudonym` (a patient's, or a data key's scope).
pub fn pseudonym_version(pseudonym: &str) -> u32 {
    pseudonym
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('-'))
        .and_then(|(version, _)| version.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sealed values written by OpenSSL (every version before the change to `ring`) open, and
    /// OpenSSL opens what is sealed now: the format is the same AES-256-GCM.
    #[test]
    fn openssl_and_ring_read_each_others_sealed_values() {
        use openssl::symm::{decrypt_aead, encrypt_aead, Cipher};
        let key = [9u8; 32];
        let (aad, plain) = (b"Bundle|id|1".as_slice(), b"{\"resourceType\":\"Bundle\"}".as_slice());
        let nonce = [3u8; NONCE_LEN];
        let mut tag = [0u8; TAG_LEN];
        let ciphertext = encrypt_aead(Cipher::aes_256_gcm(), &key, Some(&nonce), aad, plain, &mut tag).unwrap();
        let by_openssl = [nonce.as_slice(), &ciphertext, &tag].concat();
        assert_eq!(open(&key, aad, &by_openssl).unwrap(), plain);
        assert!(open(&key, b"Bundle|id|2", &by_openssl).is_err(), "the binding is checked");

        let by_ring = seal(&key, aad, plain).unwrap();
        assert_eq!(by_ring.len(), NONCE_LEN + plain.len() + TAG_LEN);
        let (nonce, rest) = by_ring.split_at(NONCE_LEN);
        let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
        let opened = decrypt_aead(Cipher::aes_256_gcm(), &key, Some(nonce), aad, ciphertext, tag).unwrap();
        assert_eq!(opened, plain);
        assert_ne!(seal(&key, aad, plain).unwrap()[..NONCE_LEN], by_ring[..NONCE_LEN], "a fresh nonce each time");
    }

    /// A patient's therapy note's metadata, as a test's sealed bytes are bound to it.
    fn note_binding() -> BodyBinding<'static> {
        BodyBinding {
            resource_type: "Composition",
            id: "a",
            version: 1,
            key_scope: "p",
            patient: Some("p"),
            security_labels: "PSYTHPN R",
            author: (Some("1.2.246.10.1"), Some("10012345678")),
            service_event: Some("1.2.246.10.1.77.1"),
        }
    }

    #[test]
    fn a_sealed_body_opens_only_where_it_was_bound() {
        let key = DataKey::generate().unwrap();
        let at = note_binding();
        let sealed = seal_body(&key, &at, b"note text").unwrap();
        assert!(!sealed.windows(9).any(|w| w == b"note text"));
        assert_eq!(open_body(&key, &at, &sealed).unwrap(), b"note text");
        let moved = BodyBinding { version: 2, ..at };
        assert!(open_body(&key, &moved, &sealed).is_err());
        let other = DataKey::generate().unwrap();
        assert!(open_body(&other, &BodyBinding { version: 1, ..moved }, &sealed).is_err());
        // Metadata changed beside the body: it no longer opens.
        for changed in [
            BodyBinding { security_labels: "R", ..at },
            BodyBinding { author: (Some("1.2.246.10.1"), Some("10099999999")), ..at },
            BodyBinding { service_event: None, ..at },
            BodyBinding { patient: Some("q"), ..at },
        ] {
            assert!(open_body(&key, &changed, &sealed).is_err());
        }
    }

    #[test]
    fn a_listing_opens_only_as_the_listing_of_the_version_it_was_bound_to() {
        let key = DataKey::generate().unwrap();
        let at = BodyBinding { resource_type: "Bundle", version: 2, ..note_binding() };
        let listing = seal_listing(&key, &at, b"{\"kind\":\"note\"}").unwrap();
        assert_eq!(open_listing(&key, &at, &listing).unwrap(), b"{\"kind\":\"note\"}");
        // Not as a body, and no body as a listing.
        assert!(open_body(&key, &at, &listing).is_err());
        assert!(open_listing(&key, &at, &seal_body(&key, &at, b"{}").unwrap()).is_err());
        // Not beside another version, resource or patient.
        for moved in [
            BodyBinding { version: 1, ..at },
            BodyBinding { id: "b", ..at },
            BodyBinding { patient: Some("q"), key_scope: "q", ..at },
            BodyBinding { security_labels: "R", ..at },
        ] {
            assert!(open_listing(&key, &moved, &listing).is_err());
        }
    }

    #[test]
    fn the_mac_is_standard_hmac_sha256_so_stored_pseudonyms_keep_their_meaning() {
        // RFC 4231 test case 1: key 0x0b × 20, "Hi There". The index key is 32 bytes, so pad the
        // comparison through OpenSSL's HMAC with the same 32-byte key instead.
        let key = SecretKey([0x0b; 32]);
        let ours = Pseudonymizer::new(SecretKey(key.0)).mac(&["Hi There", "part"]);
        let pkey = openssl::pkey::PKey::hmac(&key.0).unwrap();
        let mut signer = openssl::sign::Signer::new(openssl::hash::MessageDigest::sha256(), &pkey).unwrap();
        signer.update(b"Hi There\x1fpart").unwrap();
        assert_eq!(ours, hex::encode(signer.sign_to_vec().unwrap()));
        let mut rfc = <Hmac<Sha256> as KeyInit>::new_from_slice(&[0x0b; 20]).unwrap();
        rfc.update(b"Hi There");
        assert_eq!(
            hex::encode(rfc.finalize().into_bytes()),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
    }

    #[test]
    fn pseudonyms_are_stable_keyed_and_separated() {
        let hetu = Hetu::parse("131052-308T").unwrap();
        let a = Pseudonymizer::new(SecretKey::generate().unwrap());
        let b = Pseudonymizer::new(SecretKey::generate().unwrap());
        assert_eq!(a.patient_from_hetu(&hetu), a.patient_from_hetu(&hetu));
        assert_ne!(a.patient_from_hetu(&hetu), b.patient_from_hetu(&hetu));
        assert_ne!(a.token("identifier", None, "x"), a.token_any_system("identifier", "x"));
        assert!(!a.patient_from_hetu(&hetu).contains("131052"));
    }

    #[test]
    fn a_pseudonym_says_which_key_version_made_it() {
        let hetu = Hetu::parse("131052-308T").unwrap();
        let key = SecretKey::generate().unwrap();
        let first = Pseudonymizer::new(SecretKey(key.0));
        let second = Pseudonymizer::of_version(SecretKey(key.0), 2);
        let bare = first.patient_from_hetu(&hetu);
        assert_eq!(bare.len(), 64, "version 1 keeps the bare digest that stored rows hold");
        assert_eq!(second.patient_from_hetu(&hetu), format!("v2-{bare}"));
        assert_eq!(pseudonym_version(&bare), 1);
        assert_eq!(pseudonym_version(&second.patient_from_id("x")), 2);
        assert_eq!(pseudonym_version(&Pseudonymizer::of_version(SecretKey(key.0), 12).patient_from_id("x")), 12);
        assert_eq!(pseudonym_version("shared"), 1);
    }

    #[test]
    fn derived_uuids_keep_the_layout_that_stored_ids_have() {
        // Stored document ids were derived as the HMAC's first 16 bytes with the version and
        // variant bits set, written as lowercase hyphenated hex: a resubmission must find them.
        let a = Pseudonymizer::new(SecretKey::generate().unwrap());
        let parts = ["document", "1.2.246.10.12345678.10.1", "EMR-2026-000123", "composition"];
        let mut all = vec!["uuid"];
        all.extend_from_slice(&parts);
        let digest = hex::decode(a.mac(&all)).unwrap();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex::encode(bytes);
        let expected = format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32]);
        assert_eq!(a.uuid(&parts), expected);
        assert_eq!(a.uuid(&parts), a.uuid(&parts));
        assert_ne!(a.uuid(&parts), a.uuid(&parts[..3]));
    }

    #[test]
    fn key_files_must_be_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kek.hex");
        let key = SecretKey::generate_file(&path).unwrap();
        assert_eq!(SecretKey::from_file(&path).unwrap().0, key.0);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
            assert!(SecretKey::from_file(&path).is_err());
        }
        assert!(format!("{key:?}").contains("redacted"));
    }
}
