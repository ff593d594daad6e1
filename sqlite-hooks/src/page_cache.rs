//! SQLite's own page cache with one key changed, so that a commit does not sweep it.
//!
//! C callbacks that forward each call to SQLite's default cache. Kept to forwarding, and tested
//! by the databases every test writes (and here, by splits checked with `integrity_check`).
//!
//! When SQLite splits B-tree pages (`balance_nonroot`) it swaps their page numbers so the new
//! pages lie in file order, parking one page for a moment under the number of the *locking
//! page* (the page holding byte 2^30, which no database ever uses: 262,145 with 4 KiB pages).
//! The default cache remembers the largest key it has seen until the next truncate, and every
//! commit truncates it to the database's size; a remembered key more than a hash table's worth
//! above that size makes the truncate scan the whole table and every page in it. During ingest
//! a split happens in nearly every commit, so every commit scanned the writer's whole cache:
//! 260 µs a commit at 2,000 pages, a twelfth of the writer's time, and more for a larger cache.
//!
//! This wrapper hands every call to SQLite's default cache (`pcache1`) unchanged, except that
//! the parked page is filed under a key just above the largest the cache can hold. SQLite names
//! the parked page by the locking page's number in every call, and the wrapper translates it in
//! each, so SQLite sees the same cache; only the default cache's memory of its largest key
//! stays near the database's size.
//!
//! # Separate caches
//!
//! SQLite is built without `SQLITE_ENABLE_MEMORY_MANAGEMENT` and with memory statistics off
//! (`.cargo/config.toml` sets `LIBSQLITE3_FLAGS` for libsqlite3-sys's bundled build). With
//! memory management, every connection's cache is one group under one process-wide mutex, so
//! that `sqlite3_release_memory` can reclaim pages across connections: the writer and the
//! request threads' readers took that mutex on every page they touched, and contended for it
//! (10 % of the writer's samples during ingest, a fifth of it waiting). Nothing here reclaims
//! memory that way, and each connection's cache is bounded by its `cache_size`. The statistics
//! took another process-wide mutex on every allocation SQLite made.
//!
//! Installed once, before SQLite initialises; if something initialised it first (a test that
//! opened a connection of its own), SQLite keeps its default cache and nothing else changes.

use std::ffi::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};

use libsqlite3_sys as ffi;

/// SQLite's `PENDING_BYTE`: the locking page is the page holding it.
const PENDING_BYTE: c_uint = 0x4000_0000;

/// The default cache's methods, fetched before ours replace them.
struct Default(ffi::sqlite3_pcache_methods2);
// The methods are function pointers and SQLite's own (null) argument; SQLite calls them from
// any thread.
unsafe impl Send for Default {}
unsafe impl Sync for Default {}

static DEFAULT: OnceLock<Default> = OnceLock::new();
static INSTALL: Once = Once::new();
/// How many parked pages were given a stand-in key: for tests, and to show the wrapper works.
static STAND_INS: AtomicU64 = AtomicU64::new(0);

/// One connection's cache: the default cache's, and what the wrapper needs to pick a key that
/// cannot be in use. SQLite calls a cache's methods under its connection's mutex, one at a time.
struct Cache {
    inner: *mut ffi::sqlite3_pcache,
    /// The locking page's number at this cache's page size.
    locking_page: c_uint,
    /// At least every key the cache holds: raised by each key that enters, lowered by truncates.
    ceiling: c_uint,
    /// The key the parked page holds instead of the locking page's, while it is parked (0: none).
    stand_in: c_uint,
}

impl Cache {
    /// The key to give the default cache for SQLite's `key`.
    fn key(&mut self, key: c_uint) -> c_uint {
        if key != self.locking_page {
            return key;
        }
        if self.stand_in == 0 {
            // Above every key held, so it cannot meet a page; and only just above the database's
            // last page, so the next commit's truncate finds it with a glance.
            self.stand_in = self.ceiling.saturating_add(1);
            STAND_INS.fetch_add(1, Ordering::Relaxed);
        }
        self.stand_in
    }

    fn entered(&mut self, key: c_uint) {
        self.ceiling = self.ceiling.max(key);
    }
}

fn default() -> &'static ffi::sqlite3_pcache_methods2 {
    // Only ever installed after DEFAULT is set.
    &DEFAULT.get().expect("the default page cache is fetched before ours is installed").0
}

/// # Safety
/// `p` is a cache this module created and has not destroyed.
unsafe fn cache<'a>(p: *mut ffi::sqlite3_pcache) -> &'a mut Cache {
    unsafe { &mut *(p as *mut Cache) }
}

unsafe extern "C" fn init(_: *mut c_void) -> c_int {
    let d = default();
    match d.xInit {
        Some(f) => unsafe { f(d.pArg) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn shutdown(_: *mut c_void) {
    let d = default();
    if let Some(f) = d.xShutdown {
        unsafe { f(d.pArg) }
    }
}

unsafe extern "C" fn create(page_size: c_int, extra: c_int, purgeable: c_int) -> *mut ffi::sqlite3_pcache {
    let Some(create) = default().xCreate else { return std::ptr::null_mut() };
    let inner = unsafe { create(page_size, extra, purgeable) };
    if inner.is_null() {
        return inner;
    }
    let locking_page = PENDING_BYTE / (page_size.max(1) as c_uint) + 1;
    Box::into_raw(Box::new(Cache { inner, locking_page, ceiling: 0, stand_in: 0 })) as *mut ffi::sqlite3_pcache
}

unsafe extern "C" fn cache_size(p: *mut ffi::sqlite3_pcache, pages: c_int) {
    if let Some(f) = default().xCachesize {
        unsafe { f(cache(p).inner, pages) }
    }
}

unsafe extern "C" fn page_count(p: *mut ffi::sqlite3_pcache) -> c_int {
    match default().xPagecount {
        Some(f) => unsafe { f(cache(p).inner) },
        None => 0,
    }
}

unsafe extern "C" fn fetch(p: *mut ffi::sqlite3_pcache, key: c_uint, create: c_int) -> *mut ffi::sqlite3_pcache_page {
    let Some(f) = default().xFetch else { return std::ptr::null_mut() };
    let c = unsafe { cache(p) };
    let key = c.key(key);
    if create != 0 {
        c.entered(key);
    }
    unsafe { f(c.inner, key, create) }
}

unsafe extern "C" fn unpin(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, discard: c_int) {
    if let Some(f) = default().xUnpin {
        unsafe { f(cache(p).inner, page, discard) }
    }
}

unsafe extern "C" fn rekey(p: *mut ffi::sqlite3_pcache, page: *mut ffi::sqlite3_pcache_page, old: c_uint, new: c_uint) {
    let Some(f) = default().xRekey else { return };
    let c = unsafe { cache(p) };
    let (old_key, new_key) = (c.key(old), c.key(new));
    c.entered(new_key);
    unsafe { f(c.inner, page, old_key, new_key) }
    if old == c.locking_page {
        // The parked page has its real number again; the next swap picks a new stand-in.
        c.stand_in = 0;
    }
}

unsafe extern "C" fn truncate(p: *mut ffi::sqlite3_pcache, limit: c_uint) {
    let Some(f) = default().xTruncate else { return };
    let c = unsafe { cache(p) };
    unsafe { f(c.inner, limit) }
    // Every key from `limit` up is gone.
    c.ceiling = c.ceiling.min(limit.saturating_sub(1));
}

unsafe extern "C" fn destroy(p: *mut ffi::sqlite3_pcache) {
    let c = unsafe { Box::from_raw(p as *mut Cache) };
    if let Some(f) = default().xDestroy {
        unsafe { f(c.inner) }
    }
}

unsafe extern "C" fn shrink(p: *mut ffi::sqlite3_pcache) {
    if let Some(f) = default().xShrink {
        unsafe { f(cache(p).inner) }
    }
}

/// Installs the wrapper, once per process, if SQLite has not initialised yet. Returns whether
/// it is in place.
pub(crate) fn install() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    INSTALL.call_once(|| {
        let mut methods: ffi::sqlite3_pcache_methods2 = unsafe { std::mem::zeroed() };
        // Both calls fail (SQLITE_MISUSE) once SQLite has initialised; then nothing changes.
        let fetched = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_GETPCACHE2, &mut methods as *mut _) };
        if fetched != ffi::SQLITE_OK || methods.xFetch.is_none() {
            let _ = INSTALLED.set(false);
            return;
        }
        let iversion = methods.iVersion;
        let _ = DEFAULT.set(Default(methods));
        let ours = Box::leak(Box::new(ffi::sqlite3_pcache_methods2 {
            iVersion: iversion,
            pArg: std::ptr::null_mut(),
            xInit: Some(init),
            xShutdown: Some(shutdown),
            xCreate: Some(create),
            xCachesize: Some(cache_size),
            xPagecount: Some(page_count),
            xFetch: Some(fetch),
            xUnpin: Some(unpin),
            xRekey: Some(rekey),
            xTruncate: Some(truncate),
            xDestroy: Some(destroy),
            xShrink: Some(shrink),
        }));
        let set = unsafe { ffi::sqlite3_config(ffi::SQLITE_CONFIG_PCACHE2, ours as *const _) };
        let _ = INSTALLED.set(set == ffi::SQLITE_OK);
    });
    INSTALLED.get().copied().unwrap_or(false)
}

/// How many times a parked page was given a stand-in key in this process.
pub fn stand_ins() -> u64 {
    STAND_INS.load(Ordering::Relaxed)
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sqlite::SqliteConnection;
    use diesel::{Connection, QueryableByName, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }

    /// Random keys split pages all over an index: the wrapper must see parked pages and the
    /// file must stay sound, through commits, a cache smaller than the table, and a reopen.
    #[test]
    fn splits_park_pages_under_a_stand_in_and_the_database_stays_sound() {
        assert!(crate::install(), "the unit tests open no SQLite connection before this");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("splits.db").to_string_lossy().into_owned();
        let before = super::stand_ins();
        {
            let mut conn = SqliteConnection::establish(&path).unwrap();
            conn.batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA cache_size = 64;
                 CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;",
            )
            .unwrap();
            for round in 0..20 {
                conn.batch_execute(&format!(
                    "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
                     INSERT INTO t SELECT randomblob(16), zeroblob(200 + {round}) FROM n; COMMIT;"
                ))
                .unwrap();
            }
        }
        assert!(super::stand_ins() > before, "page splits parked no page under a stand-in");
        let mut conn = SqliteConnection::establish(&path).unwrap();
        let checks: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(&mut conn).unwrap();
        assert_eq!(checks.iter().map(|c| c.integrity_check.as_str()).collect::<Vec<_>>(), ["ok"]);
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let count: Count = diesel::sql_query("SELECT count(*) AS n FROM t").get_result(&mut conn).unwrap();
        assert_eq!(count.n, 10_000);
    }
}
