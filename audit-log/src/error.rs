/// What this crate refuses to do or to read.
///
/// A finding about a log (a modified entry, a forged checkpoint) is not an error but a
/// [`Problem`](crate::Problem): verification ran and has something to report. The messages here
/// never repeat the offending input, so nothing read from an untrusted export reaches a log
/// through them.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("the key is not an Ed25519 key")]
    NotEd25519,
    #[error("openssl: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("a log origin is a non-empty name without spaces, control characters or '+'")]
    InvalidOrigin,
    #[error("the checkpoint belongs to another log than the key's")]
    OriginMismatch,
    #[error("time out of range: an instant from 1970 to the end of 9999, in milliseconds")]
    TimeOutOfRange,
    #[error("a SHA-256 hash is 64 hexadecimal digits")]
    MalformedHash,
    #[error("a tree of size {size} has {expected} perfect subtrees, not {found}")]
    Frontier { size: u64, expected: u32, found: usize },
    #[error("a tree of size {tree} cannot resume a log of {entries} entries")]
    Resume { tree: u64, entries: u64 },
    #[error("checkpoint note: {0}")]
    MalformedNote(&'static str),
    #[error("the stored event is not a JSON object")]
    EventNotJson,
    #[error("the stored event is not an audit event of this format")]
    EventUnreadable,
    #[error("export line: not one JSON object of the export's members (column {column})")]
    ExportJson { column: usize },
    #[error("export line: {0}")]
    MalformedLine(&'static str),
}
