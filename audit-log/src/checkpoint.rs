//! Signed checkpoints: the log's size and root at a moment, signed with Ed25519 by a key kept
//! outside the database, in the C2SP signed-note and checkpoint formats.

use std::fmt;

use openssl::pkey::{Id, PKey, Private, Public};
use openssl::sign;
use sha2::{Digest as _, Sha256};

use crate::base64;
use crate::hash::Sha256Hash;
use crate::time::UnixMillis;
use crate::AuditError;

/// The C2SP signed-note signature type of Ed25519.
const ED25519_SIGNATURE_TYPE: u8 = 0x01;
/// Starts each signature line of a signed note: an em dash (U+2014) and a space.
const SIGNATURE_LINE: &str = "\u{2014} ";

/// The log's size and root at a moment.
///
/// Its text form ([`Checkpoint::body`]) is a C2SP checkpoint whose one extension line is the
/// time:
///
/// ```text
/// <origin>\n
/// <size in decimal>\n
/// <root, base64>\n
/// <time in unix milliseconds, decimal>\n
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Sha256Hash,
    time: UnixMillis,
}

impl Checkpoint {
    /// `origin` names the log (and its key), e.g. `fhir.clinic.example/audit`: non-empty, without
    /// spaces, control characters or `+`, as a signed note's key name must be.
    pub fn new(origin: &str, size: u64, root: Sha256Hash, time: UnixMillis) -> Result<Self, AuditError> {
        Ok(Checkpoint { origin: valid_origin(origin)?.to_owned(), size, root, time })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The number of entries the checkpoint covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle Tree Hash of the first `size` entries.
    pub fn root(&self) -> Sha256Hash {
        self.root
    }

    pub fn time(&self) -> UnixMillis {
        self.time
    }

    /// The text that is signed.
    pub fn body(&self) -> String {
        format!("{}\n{}\n{}\n{}\n", self.origin, self.size, base64::encode(self.root.as_bytes()), self.time.as_millis())
    }

    fn parse_body(body: &str) -> Result<Self, AuditError> {
        let malformed = AuditError::MalformedNote;
        let lines: Vec<&str> =
            body.strip_suffix('\n').ok_or(malformed("the text ends with a newline"))?.split('\n').collect();
        let [origin, size, root, time] = lines[..] else {
            return Err(malformed("four lines: origin, size, root, time"));
        };
        let size = size.parse().map_err(|_| malformed("the size is a decimal number"))?;
        let root = base64::decode(root)
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(malformed("the root is 32 bytes in base64"))?;
        let time = time.parse().map_err(|_| malformed("the time is a decimal number of milliseconds"))?;
        let checkpoint = Checkpoint::new(origin, size, Sha256Hash::from_bytes(root), UnixMillis::new(time)?)?;
        // Only the one spelling this crate writes (no leading zeros, no '+') is accepted, so the
        // signed text is exactly what a verifier renders again.
        if checkpoint.body() != body {
            return Err(malformed("numbers in their shortest decimal form"));
        }
        Ok(checkpoint)
    }
}

fn valid_origin(origin: &str) -> Result<&str, AuditError> {
    let forbidden = |c: char| c.is_whitespace() || c.is_control() || c == '+';
    if origin.is_empty() || origin.contains(forbidden) {
        return Err(AuditError::InvalidOrigin);
    }
    Ok(origin)
}

/// The first four bytes of the C2SP key hash: `SHA-256(name || 0x0A || 0x01 || public key)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId([u8; 4]);

impl KeyId {
    fn of(name: &str, public_key: &[u8; 32]) -> Self {
        let digest = Sha256::new()
            .chain_update(name)
            .chain_update([b'\n', ED25519_SIGNATURE_TYPE])
            .chain_update(public_key)
            .finalize();
        KeyId([digest[0], digest[1], digest[2], digest[3]])
    }

    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// A checkpoint and its Ed25519 signature, as a C2SP signed note:
///
/// ```text
/// <checkpoint body>
/// \n
/// — <origin> <base64(key id || 64-byte signature)>\n
/// ```
///
/// The signature covers the body, final newline included. The key is named by the origin, so a
/// checkpoint of another log fails verification whatever key signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    key_id: KeyId,
    signature: [u8; 64],
}

impl SignedCheckpoint {
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// The key the signature line names; it need not be the key that made the signature.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    pub fn to_note(&self) -> String {
        let mut signature = Vec::with_capacity(68);
        signature.extend_from_slice(&self.key_id.0);
        signature.extend_from_slice(&self.signature);
        format!(
            "{}\n{SIGNATURE_LINE}{} {}\n",
            self.checkpoint.body(),
            self.checkpoint.origin,
            base64::encode(&signature)
        )
    }

    /// Reads a note as [`SignedCheckpoint::to_note`] writes it: one signature, by the key named
    /// after the checkpoint's origin. Whether the signature is good is
    /// [`VerifyingKey::verify`]'s question.
    pub fn from_note(note: &str) -> Result<Self, AuditError> {
        let malformed = AuditError::MalformedNote;
        let split = note.rfind("\n\n").ok_or(malformed("a blank line between the text and its signature"))?;
        let (body, signatures) = (&note[..=split], &note[split + 2..]);
        let checkpoint = Checkpoint::parse_body(body)?;
        let line = signatures
            .strip_suffix('\n')
            .and_then(|line| line.strip_prefix(SIGNATURE_LINE))
            .filter(|line| !line.contains('\n'))
            .ok_or(malformed("one signature line, '\u{2014} <key name> <signature>'"))?;
        let (name, signature) = line.split_once(' ').ok_or(malformed("a key name and a signature"))?;
        if name != checkpoint.origin {
            return Err(malformed("the signature's key is named after the origin"));
        }
        let signature = base64::decode(signature)
            .filter(|bytes| bytes.len() == 68)
            .ok_or(malformed("a 4-byte key id and a 64-byte signature in base64"))?;
        let (key_id, signature) = signature.split_at(4);
        Ok(SignedCheckpoint {
            checkpoint,
            key_id: KeyId(key_id.try_into().expect("split at 4")),
            signature: signature.try_into().expect("68 - 4 bytes"),
        })
    }
}

/// The log's Ed25519 signing key, named by the log's origin.
pub struct SigningKey {
    private: PKey<Private>,
    verifying: VerifyingKey,
}

impl SigningKey {
    /// Reads a PKCS#8 PEM private key; it must be Ed25519.
    pub fn from_pem(origin: &str, pem: &[u8]) -> Result<Self, AuditError> {
        SigningKey::from_pkey(origin, PKey::private_key_from_pem(pem)?)
    }

    pub fn from_pkey(origin: &str, private: PKey<Private>) -> Result<Self, AuditError> {
        if private.id() != Id::ED25519 {
            return Err(AuditError::NotEd25519);
        }
        let public = PKey::public_key_from_raw_bytes(&private.raw_public_key()?, Id::ED25519)?;
        Ok(SigningKey { private, verifying: VerifyingKey::from_pkey(origin, public)? })
    }

    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.verifying
    }

    /// Signs a checkpoint of this key's log.
    pub fn sign(&self, checkpoint: Checkpoint) -> Result<SignedCheckpoint, AuditError> {
        if checkpoint.origin != self.verifying.origin {
            return Err(AuditError::OriginMismatch);
        }
        let signature =
            sign::Signer::new_without_digest(&self.private)?.sign_oneshot_to_vec(checkpoint.body().as_bytes())?;
        let signature = signature.try_into().map_err(|_| AuditError::NotEd25519)?;
        Ok(SignedCheckpoint { checkpoint, key_id: self.verifying.id, signature })
    }
}

impl fmt::Debug for SigningKey {
    // Never the key itself.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey({} {})", self.verifying.origin, self.verifying.id)
    }
}

/// The log's public key, named by the log's origin: what an auditor needs to check checkpoints.
#[derive(Clone)]
pub struct VerifyingKey {
    origin: String,
    key: PKey<Public>,
    raw: [u8; 32],
    id: KeyId,
    pem: String,
}

impl VerifyingKey {
    /// Reads a SubjectPublicKeyInfo PEM public key; it must be Ed25519.
    pub fn from_pem(origin: &str, pem: &[u8]) -> Result<Self, AuditError> {
        VerifyingKey::from_pkey(origin, PKey::public_key_from_pem(pem)?)
    }

    fn from_pkey(origin: &str, key: PKey<Public>) -> Result<Self, AuditError> {
        if key.id() != Id::ED25519 {
            return Err(AuditError::NotEd25519);
        }
        let origin = valid_origin(origin)?.to_owned();
        let raw: [u8; 32] = key.raw_public_key()?.try_into().map_err(|_| AuditError::NotEd25519)?;
        let pem = String::from_utf8(key.public_key_to_pem()?).map_err(|_| AuditError::NotEd25519)?;
        Ok(VerifyingKey { id: KeyId::of(&origin, &raw), origin, key, raw, pem })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The SubjectPublicKeyInfo PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// The C2SP verifier key, `<origin>+<key id in hex>+<base64(0x01 || public key)>`, which the
    /// Go `note` package and other signed-note tools accept.
    pub fn note_verifier_key(&self) -> String {
        let mut typed = vec![ED25519_SIGNATURE_TYPE];
        typed.extend_from_slice(&self.raw);
        format!("{}+{}+{}", self.origin, self.id, base64::encode(&typed))
    }

    /// Whether this key signed the checkpoint.
    pub fn verify(&self, signed: &SignedCheckpoint) -> bool {
        signed.key_id == self.id
            && signed.checkpoint.origin == self.origin
            && sign::Verifier::new_without_digest(&self.key)
                .and_then(|mut verifier| {
                    verifier.verify_oneshot(&signed.signature, signed.checkpoint.body().as_bytes())
                })
                .unwrap_or(false)
    }
}

impl PartialEq for VerifyingKey {
    fn eq(&self, other: &Self) -> bool {
        self.origin == other.origin && self.raw == other.raw
    }
}

impl Eq for VerifyingKey {}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VerifyingKey({} {})", self.origin, self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::leaf_hash;

    const ORIGIN: &str = "fhir.clinic.example/audit";

    fn key() -> SigningKey {
        SigningKey::from_pkey(ORIGIN, PKey::generate_ed25519().unwrap()).unwrap()
    }

    fn checkpoint(size: u64) -> Checkpoint {
        Checkpoint::new(ORIGIN, size, leaf_hash(b"root"), UnixMillis::new(1_714_555_800_250).unwrap()).unwrap()
    }

    #[test]
    fn the_body_is_a_c2sp_checkpoint_with_the_time() {
        let body = checkpoint(1000).body();
        let root = base64::encode(leaf_hash(b"root").as_bytes());
        assert_eq!(body, format!("{ORIGIN}\n1000\n{root}\n1714555800250\n"));
    }

    #[test]
    fn a_signed_note_round_trips_and_verifies() {
        let key = key();
        let signed = key.sign(checkpoint(1000)).unwrap();
        let note = signed.to_note();
        assert!(note.starts_with(&checkpoint(1000).body()));
        assert!(note.contains(&format!("\n\n\u{2014} {ORIGIN} ")));
        let read = SignedCheckpoint::from_note(&note).unwrap();
        assert_eq!(read, signed);
        assert!(key.verifying_key().verify(&read));
        assert_eq!(read.key_id(), key.verifying_key().id());
    }

    #[test]
    fn another_key_or_an_altered_body_does_not_verify() {
        let (key, other) = (key(), key());
        let signed = key.sign(checkpoint(1000)).unwrap();
        assert!(!other.verifying_key().verify(&signed));
        let forged = other.sign(checkpoint(1000)).unwrap();
        assert!(!key.verifying_key().verify(&forged));

        let altered = signed.to_note().replacen("\n1000\n", "\n1001\n", 1);
        let altered = SignedCheckpoint::from_note(&altered).unwrap();
        assert!(!key.verifying_key().verify(&altered));
    }

    #[test]
    fn keys_round_trip_through_pem_and_are_named() {
        let private = PKey::generate_ed25519().unwrap();
        let pem = private.private_key_to_pem_pkcs8().unwrap();
        let key = SigningKey::from_pem(ORIGIN, &pem).unwrap();
        let public = VerifyingKey::from_pem(ORIGIN, key.verifying_key().pem().as_bytes()).unwrap();
        assert_eq!(&public, key.verifying_key());
        assert_eq!(public.id(), key.verifying_key().id());
        // The id depends on the name as well as on the key.
        let renamed = VerifyingKey::from_pem("another.example/audit", public.pem().as_bytes()).unwrap();
        assert_ne!(renamed.id(), public.id());
        assert!(public.pem().starts_with("-----BEGIN PUBLIC KEY-----"));
        let vkey = public.note_verifier_key();
        // Neither the name nor the id contains '+'; base64 may.
        let parts: Vec<&str> = vkey.splitn(3, '+').collect();
        assert_eq!(parts[..2], [ORIGIN.to_owned(), public.id().to_string()]);
        let typed_key = base64::decode(parts[2]).unwrap();
        assert_eq!((typed_key[0], &typed_key[1..]), (ED25519_SIGNATURE_TYPE, &public.raw[..]));
        assert!(!format!("{key:?}").contains("PRIVATE"));
    }

    #[test]
    fn c2sp_key_id() {
        // The key id is SHA-256(name || '\n' || 0x01 || key)[..4].
        let raw = [7u8; 32];
        let mut input = b"example.com/log\n\x01".to_vec();
        input.extend_from_slice(&raw);
        assert_eq!(KeyId::of("example.com/log", &raw).as_bytes()[..], Sha256::digest(&input)[..4]);
    }

    #[test]
    fn other_keys_are_refused() {
        let rsa = PKey::from_rsa(openssl::rsa::Rsa::generate(2048).unwrap()).unwrap();
        assert!(matches!(SigningKey::from_pkey(ORIGIN, rsa), Err(AuditError::NotEd25519)));
        assert!(SigningKey::from_pem(ORIGIN, b"not a key").is_err());
    }

    #[test]
    fn a_checkpoint_is_signed_only_by_its_own_log_key() {
        let other_log =
            Checkpoint::new("another.example/audit", 1, leaf_hash(b"r"), UnixMillis::new(0).unwrap()).unwrap();
        assert!(matches!(key().sign(other_log), Err(AuditError::OriginMismatch)));
    }

    #[test]
    fn origins_are_key_names() {
        for origin in ["", "with space", "a+b", "tab\there", "new\nline"] {
            assert!(Checkpoint::new(origin, 0, leaf_hash(b""), UnixMillis::new(0).unwrap()).is_err(), "{origin:?}");
        }
    }

    #[test]
    fn malformed_notes_are_refused() {
        let note = key().sign(checkpoint(1000)).unwrap().to_note();
        let cases = [
            note.replacen("\n1000\n", "\n01000\n", 1),
            note.replacen("\n1000\n", "\n+1000\n", 1),
            note.replacen("\n1000\n", "\n\n1000\n", 1),
            note.replacen("\u{2014} ", "-- ", 1),
            note.replacen(&format!("\u{2014} {ORIGIN}"), "\u{2014} another.example/audit", 1),
            note.trim_end().to_owned(),
            format!("{note}\u{2014} {ORIGIN} AAAA\n"),
            note.replacen("\n1714555800250\n", "\n", 1),
            note.replacen("\n1714555800250\n", "\n1714555800250\nextra\n", 1),
        ];
        for case in cases {
            assert!(SignedCheckpoint::from_note(&case).is_err(), "{case:?}");
        }
    }
}
