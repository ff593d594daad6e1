use std::fmt;

/// A patient Consent (or a date in one) that this crate will not act on.
///
/// The message names the element by its FHIRPath and says what was expected; it never repeats the
/// element's value, so an identifier typed into the wrong field cannot reach a log through it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {expected}")]
pub struct ConsentError {
    path: String,
    expected: String,
}

impl ConsentError {
    pub(crate) fn new(path: impl fmt::Display, expected: impl Into<String>) -> Self {
        ConsentError { path: path.to_string(), expected: expected.into() }
    }

    /// The FHIRPath of the offending element, e.g. `Consent.provision.provision[1].actor[0]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What the element should have been.
    pub fn expected(&self) -> &str {
        &self.expected
    }
}
