//! SoftHSM2 tokens for development and the tests: a real PKCS#11 module whose tokens are
//! folders, so a test can make one, and take it away and put it back as if it were unplugged.
//!
//! SoftHSM2 reads its configuration (`SOFTHSM2_CONF`) when the module is initialised, once per
//! process. `./scripts/test` points it at a throwaway configuration with removable slots; when
//! nothing has, [`ensure_config`] writes one under the system's temporary folder before the
//! module is first loaded.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use store::crypto::CryptoError;

use crate::module::Module;
use crate::{Pin, TokenChoice, TokenSettings};

/// The folder SoftHSM2 keeps its tokens in, read from its configuration (writing one first when
/// none is set).
pub fn ensure_config() -> Result<PathBuf, CryptoError> {
    static TOKENS: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    TOKENS
        .get_or_init(|| {
            let conf = match std::env::var_os("SOFTHSM2_CONF") {
                Some(conf) => PathBuf::from(conf),
                None => {
                    let dir = std::env::temp_dir().join(format!("vaitio-softhsm-{}", std::process::id()));
                    let conf = dir.join("softhsm2.conf");
                    write_config(&dir).map_err(|e| e.to_string())?;
                    // Before any module is loaded: the module reads it when initialised.
                    std::env::set_var("SOFTHSM2_CONF", &conf);
                    conf
                }
            };
            let text = std::fs::read_to_string(&conf).map_err(|e| format!("{}: {e}", conf.display()))?;
            text.lines()
                .filter_map(|line| line.trim().strip_prefix("directories.tokendir"))
                .filter_map(|rest| rest.trim().strip_prefix('='))
                .map(|dir| PathBuf::from(dir.trim()))
                .next()
                .ok_or_else(|| format!("{} names no directories.tokendir", conf.display()))
        })
        .clone()
        .map_err(CryptoError::Kek)
}

/// Writes a SoftHSM2 configuration with its tokens under `dir`, slots removable (a token whose
/// folder goes away is reported absent), and returns the configuration's path.
pub fn write_config(dir: &Path) -> std::io::Result<PathBuf> {
    let tokens = dir.join("tokens");
    std::fs::create_dir_all(&tokens)?;
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = true\n",
            tokens.display()
        ),
    )?;
    Ok(conf)
}

/// A token made in SoftHSM2's free slot, with its user PIN set.
pub struct SoftToken {
    pub settings: TokenSettings,
    tokens: PathBuf,
}

impl SoftToken {
    /// Initialises a new token labelled `label`, with user PIN `pin`, and `key_label` as the
    /// label its key-encryption key will have.
    pub fn create(label: &str, pin: &str, key_label: &str) -> Result<SoftToken, CryptoError> {
        let tokens = ensure_config()?;
        let path = softhsm_module().ok_or_else(|| {
            CryptoError::Kek("SoftHSM2 is not installed (Debian's softhsm2; ./scripts/test installs it as root)".into())
        })?;
        let (_, module) = Module::at(&path)?.context()?;
        let failed = |e: cryptoki::error::Error| CryptoError::Kek(format!("SoftHSM2: {e}"));
        // One at a time: two would take the same free slot.
        static CREATING: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _one = CREATING.lock().map_err(|_| CryptoError::Kek("a token creation panicked".into()))?;
        let free = module
            .get_all_slots()
            .map_err(failed)?
            .into_iter()
            .find(|slot| module.get_token_info(*slot).is_ok_and(|info| !info.token_initialized()))
            .ok_or_else(|| CryptoError::Kek("SoftHSM2 has no free slot".into()))?;
        // The security officer's PIN is needed once, here, and thrown away.
        let so_pin = AuthPin::new(format!("so-{pin}"));
        module.init_token(free, &so_pin, label).map_err(failed)?;
        let session = module.open_rw_session(free).map_err(failed)?;
        session.login(UserType::So, Some(&so_pin)).map_err(failed)?;
        session.init_pin(&AuthPin::new(pin.to_owned())).map_err(failed)?;
        session.logout().map_err(failed)?;
        let settings = TokenSettings {
            module: path,
            token: TokenChoice::Label(label.to_owned()),
            pin: Pin::new(pin.to_owned()),
            key_label: key_label.to_owned(),
        };
        Ok(SoftToken { settings, tokens })
    }

    /// The token's folder: the one whose token object carries its label.
    fn folder(&self, tokens: &Path) -> Option<PathBuf> {
        let TokenChoice::Label(label) = &self.settings.token else { return None };
        std::fs::read_dir(tokens).ok()?.flatten().map(|e| e.path()).find(|dir| {
            std::fs::read(dir.join("token.object"))
                .is_ok_and(|bytes| bytes.windows(label.len()).any(|w| w == label.as_bytes()))
        })
    }

    /// Takes the token away, as if unplugged: its folder is moved aside.
    pub fn unplug(&self) -> std::io::Result<()> {
        let folder = self.folder(&self.tokens).ok_or_else(|| std::io::Error::other("the token's folder"))?;
        std::fs::rename(&folder, self.aside(&folder))
    }

    /// Puts an unplugged token back.
    pub fn plug_in(&self) -> std::io::Result<()> {
        let aside = self.tokens.with_file_name("unplugged");
        let folder = self.folder(&aside).ok_or_else(|| std::io::Error::other("the unplugged token's folder"))?;
        let name = folder.file_name().ok_or_else(|| std::io::Error::other("a folder name"))?;
        std::fs::rename(&folder, self.tokens.join(name))
    }

    fn aside(&self, folder: &Path) -> PathBuf {
        let aside = self.tokens.with_file_name("unplugged");
        let _ = std::fs::create_dir_all(&aside);
        aside.join(folder.file_name().unwrap_or_default())
    }
}

/// The usual places of Debian's SoftHSM2 module, for development and the tests.
pub fn softhsm_module() -> Option<PathBuf> {
    [
        "/usr/lib/softhsm/libsofthsm2.so",
        "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
        "/usr/local/lib/softhsm/libsofthsm2.so",
    ]
    .iter()
    .map(Path::new)
    .find(|p| p.exists())
    .map(Path::to_path_buf)
}
