//! The key-encryption key kept in a hardware security module, through its PKCS#11 module.
//!
//! Data keys are wrapped and unwrapped inside the token with AES-256-GCM (`CKM_AES_GCM`,
//! `C_Encrypt` and `C_Decrypt`): the key-encryption key is made in the token as sensitive and
//! not extractable, and never leaves it. Only a data key's 32 bytes cross into the process, to
//! seal and open bodies, as they do with the key file. The wrapped form is the same as the key
//! file's (a 96-bit nonce, the ciphertext, the 128-bit tag), bound to the data key's scope.
//!
//! Versions of the key are token objects labelled `<label>` (version 1) and `<label>.v<N>`.
//! Sessions are pooled; when the token answers that it is gone (removed, not present, its
//! sessions closed, its PIN locked) the pool is emptied and the operation fails as
//! [`CryptoError::Unavailable`], which the gateway answers with 503. The next operation opens a
//! new session and signs in again, so service resumes when the token is back.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error as Pkcs11Error, RvError};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use store::crypto::{CryptoError, DataKey};
use store::kek::{wrap_aad, KekCustody, KeyEncryptionKey};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;
const TAG_BITS: u64 = 128;

/// Which token holds the key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenChoice {
    /// The token with this label, in whichever slot it is.
    Label(String),
    /// The token in this slot.
    Slot(u64),
}

/// A token's user PIN: never printed, wiped from memory when dropped.
#[derive(Clone)]
pub struct Pin(Zeroizing<String>);

impl Pin {
    pub fn new(pin: String) -> Self {
        Pin(Zeroizing::new(pin))
    }
}

impl fmt::Debug for Pin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Pin(<redacted>)")
    }
}

/// Where the key-encryption key is: the module, the token, the PIN, the key's label.
#[derive(Clone, Debug)]
pub struct TokenSettings {
    pub module: PathBuf,
    pub token: TokenChoice,
    pub pin: Pin,
    pub key_label: String,
}

/// A session in the pool, with the handles of the keys it has found, and the generation of the
/// module's context it belongs to.
struct Pooled {
    session: Session,
    handles: HashMap<String, ObjectHandle>,
    generation: u64,
}

/// The token: its module (see `module.rs`) and a pool of sessions.
pub struct Token {
    module: Arc<Module>,
    settings: TokenSettings,
    sessions: Mutex<Vec<Pooled>>,
}

impl Token {
    /// The token, through its module (loaded and initialised once for the process). The token
    /// itself is reached when a key is first used.
    pub fn load(settings: TokenSettings) -> Result<Arc<Token>, CryptoError> {
        let module = Module::at(&settings.module)?;
        Ok(Arc::new(Token { module, settings, sessions: Mutex::new(Vec::new()) }))
    }

    fn slot(&self, module: &Pkcs11) -> Result<Slot, CryptoError> {
        let slots = module.get_slots_with_token().map_err(|e| classify(&e))?;
        let found = match &self.settings.token {
            TokenChoice::Slot(id) => slots.into_iter().find(|s| s.id() == *id),
            TokenChoice::Label(label) => slots
                .into_iter()
                .find(|slot| module.get_token_info(*slot).is_ok_and(|info| info.label().trim_end() == label.as_str())),
        };
        found.ok_or_else(|| CryptoError::Unavailable(format!("the token {} is not present", self.describe_token())))
    }

    fn describe_token(&self) -> String {
        match &self.settings.token {
            TokenChoice::Label(label) => format!("labelled {label:?}"),
            TokenChoice::Slot(id) => format!("in slot {id}"),
        }
    }

    /// A new session, signed in as the token's user. When the token is not found, the module
    /// is initialised again (see `module.rs`) and the token looked for once more.
    fn open_session(&self) -> Result<Pooled, CryptoError> {
        match self.try_open_session() {
            Err((CryptoError::Unavailable(_), generation)) if self.module.reinitialise(generation) => {
                self.try_open_session().map_err(|(error, _)| error)
            }
            opened => opened.map_err(|(error, _)| error),
        }
    }

    fn try_open_session(&self) -> Result<Pooled, (CryptoError, u64)> {
        let (generation, module) = self.module.context().map_err(|e| (e, 0))?;
        let failed = |e: CryptoError| (e, generation);
        let slot = self.slot(&module).map_err(failed)?;
        // Read-write: a rotation makes keys; every other use only encrypts and decrypts.
        let session = module.open_rw_session(slot).map_err(|e| failed(classify(&e)))?;
        let pin = AuthPin::new(self.settings.pin.0.as_str().to_owned());
        match session.login(UserType::User, Some(&pin)) {
            Ok(()) | Err(Pkcs11Error::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => {}
            Err(e) => return Err(failed(classify(&e))),
        }
        Ok(Pooled { session, handles: HashMap::new(), generation })
    }

    /// Runs `work` on a pooled session. A token that has gone empties the pool, so that the
    /// next operation starts over with a new session.
    fn with_session<T>(&self, work: impl FnOnce(&mut Pooled) -> Result<T, Pkcs11Error>) -> Result<T, CryptoError> {
        let generation = self.module.generation();
        let pooled = self.sessions.lock().ok().and_then(|mut pool| {
            // Sessions of a context let go of are dropped.
            pool.retain(|p| p.generation == generation);
            pool.pop()
        });
        let mut pooled = match pooled {
            Some(pooled) => pooled,
            None => self.open_session()?,
        };
        match work(&mut pooled) {
            Ok(done) => {
                if let Ok(mut pool) = self.sessions.lock() {
                    pool.push(pooled);
                }
                Ok(done)
            }
            Err(error) => {
                let classified = classify(&error);
                if matches!(classified, CryptoError::Unavailable(_)) {
                    if let Ok(mut pool) = self.sessions.lock() {
                        pool.clear();
                    }
                } else if let Ok(mut pool) = self.sessions.lock() {
                    pool.push(pooled);
                }
                Err(classified)
            }
        }
    }

    /// The handle of the secret key labelled `label`, `None` when the token has none.
    fn find(pooled: &mut Pooled, label: &str) -> Result<Option<ObjectHandle>, Pkcs11Error> {
        if let Some(handle) = pooled.handles.get(label) {
            return Ok(Some(*handle));
        }
        let template = [Attribute::Class(ObjectClass::SECRET_KEY), Attribute::Label(label.as_bytes().to_vec())];
        let found = pooled.session.find_objects(&template)?;
        let handle = found.first().copied();
        if let Some(handle) = handle {
            pooled.handles.insert(label.to_owned(), handle);
        }
        Ok(handle)
    }

    /// Whether the token holds a key labelled `label`.
    pub fn has_key(&self, label: &str) -> Result<bool, CryptoError> {
        self.with_session(|pooled| Ok(Token::find(pooled, label)?.is_some()))
    }

    /// Makes an AES-256 key labelled `label` in the token: kept on the token, private,
    /// sensitive and not extractable, usable only to encrypt and decrypt.
    pub fn generate_key(&self, label: &str) -> Result<(), CryptoError> {
        self.with_session(|pooled| {
            if Token::find(pooled, label)?.is_some() {
                return Ok(());
            }
            let template = [
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32u64.into()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Encrypt(true),
                Attribute::Decrypt(true),
                Attribute::Wrap(false),
                Attribute::Unwrap(false),
            ];
            let handle = pooled.session.generate_key(&Mechanism::AesKeyGen, &template)?;
            pooled.handles.insert(label.to_owned(), handle);
            Ok(())
        })
    }

    /// Tries to read the key's value out of the token, as a thief with the PIN would: the
    /// token refuses, and this says how. (For the tests: it proves the key is kept in.)
    pub fn try_extract(&self, label: &str) -> Result<ExtractAttempt, CryptoError> {
        self.with_session(|pooled| {
            let Some(handle) = Token::find(pooled, label)? else {
                return Ok(ExtractAttempt { value: None, wrapped: None });
            };
            let value = pooled
                .session
                .get_attribute_info(handle, &[AttributeType::Value])?
                .first()
                .map(|info| format!("{info:?}"));
            // Wrapping it under a key of one's own is the other way out of a token.
            let own = pooled.session.generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Token(false),
                    Attribute::Wrap(true),
                ],
            )?;
            let wrapped = pooled.session.wrap_key(&Mechanism::AesKeyWrapPad, own, handle);
            let _ = pooled.session.destroy_object(own);
            Ok(ExtractAttempt { value, wrapped: Some(wrapped.map(|bytes| bytes.len()).map_err(|e| e.to_string())) })
        })
    }
}

/// What a token said when asked for a key's value: `value` is its answer about the value
/// attribute (`Sensitive` when refused), `wrapped` the outcome of wrapping it under another key
/// (an error when refused).
#[derive(Debug)]
pub struct ExtractAttempt {
    pub value: Option<String>,
    pub wrapped: Option<Result<usize, String>>,
}

impl ExtractAttempt {
    /// Whether the token kept the key in: the value refused and the wrapping refused.
    pub fn refused(&self) -> bool {
        self.value.as_deref() == Some("Sensitive") && matches!(self.wrapped, Some(Err(_)))
    }
}

/// A PKCS#11 error, told apart: the token gone, removed, closed or locked is transient (503,
/// and service resumes when it is back); anything else is a failure to report.
fn classify(error: &Pkcs11Error) -> CryptoError {
    match error {
        Pkcs11Error::Pkcs11(rv, function) => match rv {
            RvError::DeviceRemoved
            | RvError::DeviceError
            | RvError::DeviceMemory
            | RvError::TokenNotPresent
            | RvError::TokenNotRecognized
            | RvError::SessionHandleInvalid
            | RvError::SessionClosed
            | RvError::SessionCount
            | RvError::UserNotLoggedIn
            | RvError::PinLocked
            | RvError::SlotIdInvalid
            | RvError::ObjectHandleInvalid
            | RvError::KeyHandleInvalid
            | RvError::CryptokiNotInitialized => {
                CryptoError::Unavailable(format!("the token answered {rv:?} to {function:?}"))
            }
            RvError::EncryptedDataInvalid | RvError::EncryptedDataLenRange => CryptoError::Open,
            _ => CryptoError::Kek(format!("the token answered {rv:?} to {function:?}")),
        },
        other => CryptoError::Kek(other.to_string()),
    }
}

/// One version of the key-encryption key, in the token.
pub struct TokenKek {
    token: Arc<Token>,
    label: String,
    id: String,
}

impl TokenKek {
    fn handle(pooled: &mut Pooled, label: &str) -> Result<ObjectHandle, Pkcs11Error> {
        // A key that is not found is a key whose token is not the one configured, or not all
        // there: the session is dropped and looked for again on the next operation.
        Token::find(pooled, label)?
            .ok_or(Pkcs11Error::Pkcs11(RvError::KeyHandleInvalid, cryptoki::context::Function::FindObjects))
    }
}

impl KeyEncryptionKey for TokenKek {
    fn id(&self) -> &str {
        &self.id
    }

    fn wrap(&self, scope: &str, data_key: &DataKey) -> Result<Vec<u8>, CryptoError> {
        let aad = wrap_aad(scope);
        self.token.with_session(|pooled| {
            let key = TokenKek::handle(pooled, &self.label)?;
            let mut nonce = [0u8; NONCE_LEN];
            pooled.session.generate_random_slice(&mut nonce)?;
            let mut iv = nonce;
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
            let sealed = pooled.session.encrypt(&Mechanism::AesGcm(params), key, data_key.expose_secret())?;
            let mut wrapped = Vec::with_capacity(NONCE_LEN + sealed.len());
            wrapped.extend_from_slice(&nonce);
            wrapped.extend_from_slice(&sealed);
            Ok(wrapped)
        })
    }

    fn unwrap(&self, scope: &str, wrapped: &[u8]) -> Result<DataKey, CryptoError> {
        if wrapped.len() <= NONCE_LEN {
            return Err(CryptoError::Open);
        }
        let aad = wrap_aad(scope);
        let (nonce, sealed) = wrapped.split_at(NONCE_LEN);
        let opened = self.token.with_session(|pooled| {
            let key = TokenKek::handle(pooled, &self.label)?;
            let mut iv = [0u8; NONCE_LEN];
            iv.copy_from_slice(nonce);
            let params = GcmParams::new(&mut iv, &aad, TAG_BITS.into())?;
            pooled.session.decrypt(&Mechanism::AesGcm(params), key, sealed).map(Zeroizing::new)
        })?;
        DataKey::from_slice(&opened)
    }
}

/// The versions of the key-encryption key as token objects.
pub struct TokenCustody {
    token: Arc<Token>,
}

impl TokenCustody {
    pub fn new(token: Arc<Token>) -> Self {
        TokenCustody { token }
    }

    /// The label of `version`'s key.
    pub fn label(&self, version: u32) -> String {
        let label = &self.token.settings.key_label;
        if version <= 1 {
            label.clone()
        } else {
            format!("{label}.v{version}")
        }
    }

    fn kek(&self, version: u32) -> Arc<dyn KeyEncryptionKey> {
        let label = self.label(version);
        Arc::new(TokenKek { token: self.token.clone(), id: format!("pkcs11:{label}"), label })
    }
}

impl KekCustody for TokenCustody {
    fn open(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        let label = self.label(version);
        if !self.token.has_key(&label)? {
            return Err(CryptoError::Kek(format!(
                "the token {} holds no key labelled {label:?} (`vaitio keys create-kek` makes the first)",
                self.token.describe_token()
            )));
        }
        Ok(self.kek(version))
    }

    fn create(&self, version: u32) -> Result<Arc<dyn KeyEncryptionKey>, CryptoError> {
        self.token.generate_key(&self.label(version))?;
        Ok(self.kek(version))
    }

    fn describe(&self) -> String {
        format!("PKCS#11 token {} through {}", self.token.describe_token(), self.token.module.path().display())
    }
}

mod module;
pub mod softhsm;

use module::Module;

#[cfg(test)]
mod tests;
