//! The tamper-evident audit log.
//!
//! Every access and decision in the gateway becomes an [`AuditEvent`], which holds identifiers
//! and pseudonyms only and renders as a FHIR R4 AuditEvent shaped after IHE Basic Audit Log
//! Patterns. Its compact [canonical bytes](AuditEvent::canonical_bytes) are appended to a log ([`LogHead`]) that is
//! both an RFC 6962 Merkle tree and a hash chain, and whose state is signed from time to time as
//! a [`SignedCheckpoint`] with an Ed25519 key kept outside the database. [`verify`] recomputes
//! it all from the first entry; [`verify_export`] does the same for an auditor's NDJSON
//! [export](ExportLine).
//!
//! The crate is pure: no files, network, database or clock ("now" is an argument). The gateway
//! stores what it returns and streams it back for verification.
//!
//! # What is stored
//!
//! For each entry, its sequence number (its 0-based position), its event bytes, and two hashes:
//!
//! - `leaf = SHA-256(0x00 || event)`, RFC 6962's leaf hash;
//! - `prev`, the chain value of everything before it: 32 zero bytes for the first entry, and for
//!   the next, `SHA-256(0x02 || prev || leaf)` of the one before.
//!
//! A checkpoint signs the log's origin, its size n, the Merkle Tree Hash of the first n leaves
//! (RFC 6962 section 2.1, interior nodes `SHA-256(0x01 || left || right)`) and the time.
//!
//! # Writing
//!
//! Appends are serial: an entry's `prev` depends on the entry before it, so one [`LogHead`]
//! appends at a time and each entry is stored with the action it records, in the same
//! transaction. A head is small to clone: append to a clone and keep it once the transaction
//! commits, so that a rollback leaves the head as storage is.
//! Every N entries or T seconds the head's [`checkpoint`](LogHead::checkpoint) is signed and
//! stored. After a restart, [`LogHead::resume`] takes the stored frontier and the last entry
//! instead of rehashing the log.
//!
//! # What the verifier guarantees
//!
//! Against anyone who can change the database but does not hold the signing key:
//!
//! - **Nothing covered by a signed checkpoint changes undetected.** A modified, removed,
//!   inserted or moved entry below a checkpoint's size changes the root recomputed from the
//!   events, which the attacker cannot sign again (SHA-256 collision resistance, Ed25519
//!   unforgeability). A checkpoint altered or signed with another key fails its signature; one
//!   covering more entries than remain reports the truncation.
//! - **One altered row is named exactly**, whatever was changed in it: its event alone (the
//!   stored leaf hash no longer matches), its event with its leaf hash (the `prev` stored by the
//!   *next* row no longer follows from it, while the link after that holds), or its own `prev`
//!   (the links on both sides break). Each link is checked between stored values, so one altered
//!   row breaks only the links beside it, which a keyless attacker cannot avoid without
//!   rewriting the rows after it too. Removed or moved entries are named by the first position
//!   whose sequence number is wrong (renumbering the rest is rewriting many rows: see below).
//! - **More rewriting yields a position or a range, never silence.** An attacker who rewrites an
//!   event with its leaf hash and also the `prev` of every row after it, up to a checkpoint,
//!   leaves every link intact: the verifier then names that checkpoint and the positions it
//!   covers beyond the previous one ([`Problem::RootMismatch`]). A run of rows rewritten so
//!   that it ends before a checkpoint is named by its last row; it may begin anywhere after the
//!   previous checkpoint.
//!
//! Its limits:
//!
//! - Entries after the latest checkpoint are only consistent with each other: without the key,
//!   an attacker can still rewrite, drop or add them undetected. [`Verified::unsigned_tail`]
//!   says how many there are; signing every N entries or T seconds bounds it.
//! - At the end of the log nothing follows a broken link to tell which of the two rows beside it
//!   was altered: [`Evidence::BrokenLinkToNext`] names both.
//! - Removing the latest checkpoints together with the entries they cover (a rollback) leaves a
//!   log that verifies. An auditor who keeps the latest checkpoint of a previous verification
//!   ([`Verified::latest`]) and checks that the next one is no smaller, or an operator who
//!   publishes checkpoints elsewhere, closes this.
//! - The holder of the signing key can rewrite anything; that is why it is kept outside the
//!   database, and why an export is only as good as the key it is checked against
//!   ([`verify_export`]).
//! - Checkpoints' times are signed but not checked: a clock stepping back is not tampering.

mod base64;
mod checkpoint;
mod error;
mod event;
mod export;
mod hash;
mod log;
mod merkle;
mod time;
mod verify;

pub use checkpoint::{Checkpoint, KeyId, SignedCheckpoint, SigningKey, VerifyingKey};
pub use error::AuditError;
pub use event::{
    Action, Agent, AuditEvent, ConsentDecision, Decision, Outcome, PurposeOfUse, ResourceRef, Who, ACT_REASON,
    CLIENT_CERTIFICATE, HOST_ACCOUNT, PATIENT_PSEUDONYM, PROFESSIONAL_ROLE, STAFF_ROLE, STAFF_SUBJECT, TERHIKKI, URI,
};
pub use export::{verify_export, ExportLine};
pub use hash::{chain_hash, leaf_hash, node_hash, Sha256Hash, EMPTY_ROOT, GENESIS};
pub use log::{LogHead, StoredEntry};
pub use merkle::MerkleTree;
pub use time::UnixMillis;
pub use verify::{verify, Evidence, Problem, Verified, Verifier};
