//! SQLite tuned for Vaitio's one writer, at its C interface.
//!
//! This is Vaitio's only unsafe code (the rest of the workspace forbids it): C callbacks that
//! forward SQLite's calls to SQLite's own implementations, changing one thing each.
//! - [`page_cache`]: the default page cache, with the key of a page parked during a B-tree split
//!   translated, so that a commit does not sweep the whole cache.
//! - [`wal_buffer`]: the default VFS, with a transaction's write-ahead-log frames written in a
//!   few calls instead of two per frame.
//!
//! [`install`] puts both in place, once per process, before SQLite's first connection.

pub mod page_cache;
pub mod wal_buffer;

/// Installs the page cache (which must come before SQLite initialises) and then the VFS (which
/// initialises it). Returns whether both are in place: false if SQLite was initialised first,
/// by a connection opened before the first pool; SQLite then runs as it comes.
pub fn install() -> bool {
    let cache = page_cache::install();
    let vfs = wal_buffer::install();
    cache && vfs
}
