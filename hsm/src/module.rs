//! A PKCS#11 module, loaded and initialised once for the process, and initialised again when a
//! token it lost will not come back otherwise.
//!
//! A module is initialised once per process: every user of it in the process shares the one
//! context here (finalising it, which dropping a context does, would end every other user's
//! sessions). Some modules, SoftHSM2 among them, never see a token again once it has gone
//! until they are initialised anew; so when the configured token is not found, the context is
//! let go of (it is finalised once its last session ends) and the next use initialises the
//! module again, at most once a second.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, Pkcs11};
use cryptoki::error::{Error as Pkcs11Error, RvError};
use store::crypto::CryptoError;

/// How soon a module may be initialised again after the last time.
const REINITIALISE_AFTER: Duration = Duration::from_secs(1);

pub(crate) struct Module {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    /// The context, and its generation: sessions of an older generation are dropped.
    context: Option<(u64, Pkcs11)>,
    generation: u64,
    initialised_at: Option<Instant>,
}

impl Module {
    /// The module at `path`, shared by every user in the process.
    pub fn at(path: &Path) -> Result<Arc<Module>, CryptoError> {
        static MODULES: OnceLock<Mutex<HashMap<PathBuf, Arc<Module>>>> = OnceLock::new();
        let mut modules = MODULES.get_or_init(Default::default).lock().map_err(|_| poisoned())?;
        let module = modules.entry(path.to_owned()).or_insert_with(|| {
            Arc::new(Module {
                path: path.to_owned(),
                state: Mutex::new(State { context: None, generation: 0, initialised_at: None }),
            })
        });
        let module = module.clone();
        // Loaded now, so that a wrong path stops the gateway at start.
        module.context()?;
        Ok(module)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current context and its generation, initialising the module when there is none.
    pub fn context(&self) -> Result<(u64, Pkcs11), CryptoError> {
        let mut state = self.state.lock().map_err(|_| poisoned())?;
        if let Some(context) = &state.context {
            return Ok(context.clone());
        }
        let failed =
            |e: Pkcs11Error| CryptoError::Kek(format!("the PKCS#11 module {} did not load: {e}", self.path.display()));
        let context = Pkcs11::new(&self.path).map_err(failed)?;
        match context.initialize(CInitializeArgs::OsThreads) {
            Ok(()) | Err(Pkcs11Error::AlreadyInitialized) => {}
            Err(Pkcs11Error::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(failed(e)),
        }
        state.generation += 1;
        state.initialised_at = Some(Instant::now());
        state.context = Some((state.generation, context.clone()));
        Ok((state.generation, context))
    }

    /// The token is not found: lets go of the context of `generation` so that the next use
    /// initialises the module again, unless it was initialised less than a second ago. Returns
    /// whether it did.
    pub fn reinitialise(&self, generation: u64) -> bool {
        let Ok(mut state) = self.state.lock() else { return false };
        let current = state.context.as_ref().map(|(g, _)| *g);
        if current != Some(generation) || state.initialised_at.is_some_and(|at| at.elapsed() < REINITIALISE_AFTER) {
            return false;
        }
        tracing::warn!(module = %self.path.display(), "the key-encryption key's token is not found: initialising its PKCS#11 module again");
        state.context = None;
        true
    }

    /// The generation sessions must be of to be used.
    pub fn generation(&self) -> u64 {
        self.state.lock().map(|s| s.generation).unwrap_or(0)
    }
}

fn poisoned() -> CryptoError {
    CryptoError::Kek("the PKCS#11 module's lock is poisoned".into())
}
