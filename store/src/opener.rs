//! The one way a sealed body is opened.

use std::sync::Arc;

use crate::crypto::{open_body, open_listing};
use crate::error::StoreError;
use crate::keys::DataKeys;
use crate::rows::{ListedHead, VersionRow};

/// Decrypts stored bodies. [`Store::new`](crate::Store::new) makes exactly one, and the gateway hands it to its
/// enforcement point, which opens a row only once it has released it to the caller: nothing
/// else in the program holds one, so nothing else can read a body. It cannot be cloned.
pub struct Opener {
    keys: Arc<DataKeys>,
}

impl Opener {
    pub(crate) fn new(keys: Arc<DataKeys>) -> Self {
        Opener { keys }
    }

    /// The plaintext of a stored version, checked against the metadata it was sealed with.
    pub fn open(&self, row: &VersionRow) -> Result<Vec<u8>, StoreError> {
        let key = self
            .keys
            .stored(&row.key_scope)?
            .ok_or_else(|| StoreError::Damaged("a body's data key is missing".into()))?;
        Ok(open_body(&key, &row.binding(), &row.body)?)
    }

    /// The plaintext of a document's listing, checked against its head's metadata; `None` for a
    /// head that carries none.
    pub fn open_listing(&self, row: &ListedHead) -> Result<Option<Vec<u8>>, StoreError> {
        let (Some(sealed), Some(binding)) = (&row.listing, row.binding()) else { return Ok(None) };
        let key = self
            .keys
            .stored(binding.key_scope)?
            .ok_or_else(|| StoreError::Damaged("a listing's data key is missing".into()))?;
        Ok(Some(open_listing(&key, &binding, sealed)?))
    }
}
