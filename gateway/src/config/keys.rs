//! Where the key-encryption key is kept: a key file (development, and deployments without an
//! HSM), or a PKCS#11 token, lifted from the raw values.

use std::path::{Path, PathBuf};

use super::{refuse, ConfigError, Raw};

/// The environment variable a token's PIN may come from, when no PIN file is configured. The
/// PIN is never a flag: a flag is seen by everyone who can list the machine's processes.
pub const PIN_VARIABLE: &str = "VAITIO_PKCS11_PIN";

/// The custody of the key-encryption key's versions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KekSettings {
    /// Key files: version 1 is this file, version N the file beside it with `.vN`.
    File(PathBuf),
    /// A PKCS#11 token.
    Token(TokenConfig),
}

/// A PKCS#11 token, as configured (the PIN is read when the gateway starts).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenConfig {
    pub module: PathBuf,
    pub token: hsm::TokenChoice,
    /// `None`: the PIN is in the environment variable [`PIN_VARIABLE`].
    pub pin_file: Option<PathBuf>,
    pub key_label: String,
}

impl TokenConfig {
    /// The token's settings with its PIN, read from its file (which only its owner may read) or
    /// from the environment.
    pub fn settings(&self) -> Result<hsm::TokenSettings, String> {
        let pin = match &self.pin_file {
            Some(path) => read_pin(path)?,
            None => std::env::var(PIN_VARIABLE).map_err(|_| {
                format!("the token's PIN: set keys.pkcs11_pin_file or the environment variable {PIN_VARIABLE}")
            })?,
        };
        let pin = pin.trim().to_owned();
        if pin.is_empty() {
            return Err("the token's PIN is empty".into());
        }
        Ok(hsm::TokenSettings {
            module: self.module.clone(),
            token: self.token.clone(),
            pin: hsm::Pin::new(pin),
            key_label: self.key_label.clone(),
        })
    }
}

fn read_pin(path: &Path) -> Result<String, String> {
    let failed = |e: std::io::Error| format!("keys.pkcs11_pin_file {}: {e}", path.display());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).map_err(failed)?.permissions().mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "keys.pkcs11_pin_file {}: mode {:o} lets others read it; chmod 600 it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    std::fs::read_to_string(path).map_err(failed)
}

/// The token, when `keys.pkcs11_module` is set; `None` otherwise (the key file is used).
pub(super) fn token(raw: &Raw) -> Result<Option<TokenConfig>, ConfigError> {
    let Some(module) = raw.path("keys.pkcs11_module") else {
        let stray = ["keys.pkcs11_token", "keys.pkcs11_slot", "keys.pkcs11_pin_file"]
            .into_iter()
            .find(|key| raw.values.contains_key(key));
        return match stray {
            Some(key) => refuse(format!("{key} needs keys.pkcs11_module")),
            None => Ok(None),
        };
    };
    if !module.is_file() {
        return refuse(format!("keys.pkcs11_module {} does not exist", module.display()));
    }
    let label = raw.text("keys.pkcs11_token").filter(|l| !l.trim().is_empty());
    let slot = raw.parsed::<u64>("keys.pkcs11_slot", "a slot number")?;
    let token = match (label, slot) {
        (Some(label), None) => hsm::TokenChoice::Label(label),
        (None, Some(slot)) => hsm::TokenChoice::Slot(slot),
        (Some(_), Some(_)) => return refuse("set keys.pkcs11_token or keys.pkcs11_slot, not both"),
        (None, None) => return refuse("keys.pkcs11_module needs keys.pkcs11_token (its label) or keys.pkcs11_slot"),
    };
    let pin_file = raw.path("keys.pkcs11_pin_file");
    if let Some(path) = &pin_file {
        if !path.is_file() {
            return refuse(format!("keys.pkcs11_pin_file {} does not exist", path.display()));
        }
    }
    let key_label = raw.text("keys.pkcs11_key_label").unwrap_or_else(|| "vaitio-kek".into());
    if key_label.trim().is_empty() || key_label.contains(".v") {
        return refuse("keys.pkcs11_key_label must be a label without `.v` (versions are labelled `<label>.vN`)");
    }
    Ok(Some(TokenConfig { module, token, pin_file, key_label }))
}
