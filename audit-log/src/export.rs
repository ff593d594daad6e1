//! The export for an outside auditor: NDJSON, one line per record, verifiable without the gateway.
//!
//! ```text
//! {"kind":"key","origin":"<origin>","key_id":"<8 hex digits>","public_key":"<SPKI PEM>"}
//! {"kind":"checkpoint","note":"<signed note>"}                          (each checkpoint, by size)
//! {"kind":"entry","seq":<n>,"leaf":"<hex>","prev":"<hex>","event":<event bytes, verbatim>}
//! ```
//!
//! The key comes first, then every checkpoint, then the entries in order, so a reader can check
//! the checkpoints before streaming the entries. `event` is the last member of an entry line and
//! holds the stored bytes exactly as they were hashed: the text between `"event":` and the line's
//! final `}`.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::checkpoint::{SignedCheckpoint, VerifyingKey};
use crate::hash::Sha256Hash;
use crate::log::StoredEntry;
use crate::verify::{Problem, Verified, Verifier};
use crate::AuditError;

/// One line of an export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExportLine<'a> {
    Key(VerifyingKey),
    Checkpoint(SignedCheckpoint),
    Entry(StoredEntry<'a>),
}

/// An export line as JSON reads it, before its kind says which members it must have.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Members<'a> {
    #[serde(borrow)]
    kind: Cow<'a, str>,
    origin: Option<String>,
    key_id: Option<String>,
    public_key: Option<String>,
    note: Option<String>,
    seq: Option<u64>,
    #[serde(borrow)]
    leaf: Option<Cow<'a, str>>,
    #[serde(borrow)]
    prev: Option<Cow<'a, str>>,
    #[serde(borrow)]
    event: Option<&'a RawValue>,
}

impl<'a> ExportLine<'a> {
    /// Appends the line, with its newline, to `out`.
    pub fn write(&self, out: &mut Vec<u8>) -> Result<(), AuditError> {
        match self {
            ExportLine::Key(key) => {
                let line = serde_json::json!({
                    "kind": "key",
                    "origin": key.origin(),
                    "key_id": key.id().to_string(),
                    "public_key": key.pem(),
                });
                out.extend_from_slice(line.to_string().as_bytes());
            }
            ExportLine::Checkpoint(signed) => {
                let line = serde_json::json!({"kind": "checkpoint", "note": signed.to_note()});
                out.extend_from_slice(line.to_string().as_bytes());
            }
            ExportLine::Entry(entry) => {
                // Embedded verbatim, the bytes must be one JSON object with nothing around it,
                // or a reader would not get back exactly what was hashed.
                let event: &RawValue = serde_json::from_slice(entry.event).map_err(|_| AuditError::EventNotJson)?;
                if !event.get().starts_with('{') || event.get().len() != entry.event.len() {
                    return Err(AuditError::EventNotJson);
                }
                let head = format!(
                    r#"{{"kind":"entry","seq":{},"leaf":"{}","prev":"{}","event":"#,
                    entry.seq, entry.leaf, entry.prev
                );
                out.extend_from_slice(head.as_bytes());
                out.extend_from_slice(entry.event);
                out.push(b'}');
            }
        }
        out.push(b'\n');
        Ok(())
    }

    /// Reads one line (without its newline). An entry borrows its event from the line.
    pub fn parse(line: &'a str) -> Result<Self, AuditError> {
        let members: Members<'a> =
            serde_json::from_str(line).map_err(|error| AuditError::ExportJson { column: error.column() })?;
        match members {
            Members {
                kind,
                origin: Some(origin),
                key_id: Some(key_id),
                public_key: Some(pem),
                note: None,
                seq: None,
                leaf: None,
                prev: None,
                event: None,
            } if kind == "key" => {
                let key = VerifyingKey::from_pem(&origin, pem.as_bytes())?;
                if key.id().to_string() != key_id {
                    return Err(AuditError::MalformedLine("a key_id that is the key's"));
                }
                Ok(ExportLine::Key(key))
            }
            Members {
                kind,
                note: Some(note),
                origin: None,
                key_id: None,
                public_key: None,
                seq: None,
                leaf: None,
                prev: None,
                event: None,
            } if kind == "checkpoint" => Ok(ExportLine::Checkpoint(SignedCheckpoint::from_note(&note)?)),
            Members {
                kind,
                seq: Some(seq),
                leaf: Some(leaf),
                prev: Some(prev),
                event: Some(event),
                origin: None,
                key_id: None,
                public_key: None,
                note: None,
            } if kind == "entry" => Ok(ExportLine::Entry(StoredEntry {
                seq,
                event: event.get().as_bytes(),
                leaf: Sha256Hash::from_hex(&leaf)?,
                prev: Sha256Hash::from_hex(&prev)?,
            })),
            _ => Err(AuditError::MalformedLine(
                "kind key (origin, key_id, public_key), checkpoint (note) or entry (seq, leaf, prev, event)",
            )),
        }
    }
}

/// Verifies an export, line by line, without the gateway: the auditor's entry point.
///
/// With `trusted`, the export's key must be that key. Without it the export is checked against
/// the key it carries, which proves only that the log is consistent with *some* key: whoever
/// could rewrite the export could also re-sign it with a key of their own. The auditor must
/// then compare [`Verified::key_id`] with the key id the operator published.
pub fn verify_export<'a>(
    lines: impl IntoIterator<Item = &'a str>,
    trusted: Option<&VerifyingKey>,
) -> Result<Verified, Problem> {
    let mut lines = (1..).zip(lines);
    let unreadable = |line, reason: &str| Problem::Unreadable { line, reason: reason.to_owned() };
    let parse = |line, text| ExportLine::parse(text).map_err(|error| unreadable(line, &error.to_string()));

    let key = match lines.next() {
        Some((line, text)) => match parse(line, text)? {
            ExportLine::Key(key) => key,
            _ => return Err(unreadable(line, "an export begins with its key")),
        },
        None => return Err(unreadable(1, "an export begins with its key")),
    };
    if trusted.is_some_and(|trusted| *trusted != key) {
        return Err(Problem::UntrustedKey);
    }

    let mut checkpoints = Vec::new();
    let mut first_entry = None;
    for (line, text) in lines.by_ref() {
        match parse(line, text)? {
            ExportLine::Checkpoint(checkpoint) => checkpoints.push(checkpoint),
            ExportLine::Entry(entry) => {
                first_entry = Some(entry);
                break;
            }
            ExportLine::Key(_) => return Err(unreadable(line, "one key, on the first line")),
        }
    }

    let mut verifier = Verifier::new(&checkpoints, &key)?;
    if let Some(entry) = first_entry {
        verifier.push(entry)?;
    }
    for (line, text) in lines {
        match parse(line, text)? {
            ExportLine::Entry(entry) => verifier.push(entry)?,
            _ => return Err(unreadable(line, "entries only, after the first entry")),
        }
    }
    verifier.finish()
}
