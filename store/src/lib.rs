//! Vaitio's storage layer: the database (SQLite embedded, PostgreSQL in production, chosen by
//! the URL), versioned resources sealed under per-patient data keys, the search index of keyed
//! tokens and date ranges, the audit log's tables, and the node's writer that commits
//! concurrent requests' writes and audit records together.
//!
//! It knows nothing of HTTP, of who may see what, or of what an audit record says: the gateway
//! hands it resources to write, criteria to search, and audit records to append. The one
//! exception to "it only stores" is decryption, which it offers through a single [`Opener`]
//! that the gateway's enforcement point holds (see `opener.rs`).
//!
//! Map: `db/` (connections, pool, migrations, schema), `crypto.rs` (envelope encryption and
//! pseudonyms), `kek.rs` (key-encryption keys and their versions), `keys.rs` (data keys),
//! `rotation.rs` (rotating the key-encryption key), `index_keys.rs` (the index key's versions),
//! `reindex.rs` (moving patients and tokens to a new index key version), `opener.rs`
//! (decryption), `rows.rs` (the rows as types), `store.rs` (the store),
//! `read.rs`, `search.rs`, `write.rs` (its API), `seal.rs`, `apply.rs`, `postgres.rs`,
//! `writer.rs` (how a write reaches the database), `checkpoint.rs` (SQLite's checkpoints),
//! `audit.rs` (the audit log's tables).

mod apply;
pub mod audit;
pub mod cache;
mod checkpoint;
pub mod crypto;
pub mod db;
mod error;
pub mod index_keys;
pub mod kek;
mod keys;
mod marks;
mod opener;
mod postgres;
mod read;
pub mod reindex;
mod reserve;
mod resource;
pub mod retention;
pub mod rotation;
mod rows;
mod seal;
mod search;
mod store;
pub mod time;
pub mod watch;
mod write;
mod writer;

pub use error::StoreError;
pub use opener::Opener;
pub use resource::{NewResource, Write, WriteKind, Written};
pub use rows::{Head, ListedHead, Stored, TokenMatch, VersionRow};
pub use search::Criterion;
pub use store::{Limits, Store};
pub use writer::WriterStats;
