//! The write-ahead log written a transaction at a time instead of a frame at a time.
//!
//! SQLite writes each WAL frame with two `pwrite` calls, its 24-byte header and its page. Under
//! ingest a group commit writes about a hundred frames, and those calls were a third of the
//! writer's time (the kernel's per-call cost, not the bytes: one write of the same frames costs a
//! quarter as much, measured here). This VFS wraps the default one and, for WAL files only,
//! collects a transaction's consecutive frame writes in a buffer and writes them in one call.
//!
//! What keeps the log sound:
//! - **A commit is on file before it is published.** The frame that commits carries the new
//!   database size in bytes 4-8 of its header (every other frame carries zero). The write of the
//!   page after such a header flushes the buffer, before `walFrames` appends the frames to the
//!   WAL index and publishes the header, and a failed flush fails that write, so SQLite rolls
//!   the transaction back as it does for any failed write. A commit header written right after
//!   a read (`walRewriteChecksums`, which rewrites headers in place) is not buffered at all.
//! - **Nothing reads past the buffer.** Every other call on the WAL file (read, size, sync,
//!   truncate, lock, file control, close) flushes first, so SQLite never reads, sizes or syncs a
//!   log that lacks what it wrote.
//! - **A safety net at publication.** The database file's shared-memory barrier and locks (which
//!   `walIndexWriteHdr` and the lock release go through) flush the connection's WAL buffer too.
//!   A commit never leaves anything for it (`counts` reports what it found; the test asserts
//!   nothing); it can only meet frames that a transaction spilled and then rolled back, which
//!   lie beyond the log's end and are never published. If its flush fails there is no way to
//!   report it, and the process aborts rather than publish frames that are not on file:
//!   unanswered requests fail, and recovery drops the torn transaction by its checksums.
//!
//! A WAL file is tied to its connection's database file through the name SQLite gives both:
//! `sqlite3_filename_database` of the WAL's name is the very pointer the database file was
//! opened with. A WAL whose database file is not found is written through, unbuffered.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, Once, OnceLock};

use libsqlite3_sys as ffi;

/// At most this much is held before it is written: a group commit of ingest writes about
/// 450 kB; larger transactions are written in pieces of this size.
const CAPACITY: usize = 1 << 20;
/// The most the unix VFS writes in one call.
const MAX_WRITE: usize = 0x1_f000;
/// A WAL frame header's size (SQLite's `WAL_FRAME_HDRSIZE`).
const FRAME_HEADER: usize = 24;

/// How many times the safety net found buffered frames: never those of a commit.
static NET_FLUSHES: AtomicU64 = AtomicU64::new(0);
/// How many buffered writes reached the file, for tests and to show the buffer works.
static FLUSHES: AtomicU64 = AtomicU64::new(0);
static BUFFERED_WRITES: AtomicU64 = AtomicU64::new(0);

/// The default VFS, wrapped.
struct Base(*mut ffi::sqlite3_vfs);
// A VFS is process-wide and SQLite calls it from any thread.
unsafe impl Send for Base {}
unsafe impl Sync for Base {}
static BASE: OnceLock<Base> = OnceLock::new();

/// Open database files (name pointer, file), so that a WAL finds its own.
static MAIN_FILES: Mutex<Vec<(usize, usize)>> = Mutex::new(Vec::new());

#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Main,
    Wal,
}

/// One open file of the two kinds this VFS looks after. SQLite allocates `szOsFile` bytes for
/// it; the default VFS's own file follows it in the same allocation. SQLite calls a file's
/// methods under its connection's mutex, one at a time, and a connection's database and WAL
/// files under the same one.
#[repr(C)]
struct File {
    base: ffi::sqlite3_file,
    inner: *mut ffi::sqlite3_file,
    role: Role,
    /// Main: the name pointer it is registered under.
    name: usize,
    /// Main: its WAL file while open. Wal: its database file (null: written through).
    partner: *mut File,
    /// Wal: the bytes from `start` on, not yet written.
    buffer: Vec<u8>,
    start: i64,
    /// Wal: the last write was a commit frame's header; the next write completes the commit.
    commit_pending: bool,
    /// Wal: the last call was a read (so a commit header now is `walRewriteChecksums`').
    after_read: bool,
}

const INNER_OFFSET: usize = std::mem::size_of::<File>().next_multiple_of(16);

fn base() -> *mut ffi::sqlite3_vfs {
    BASE.get().expect("installed before use").0
}

/// # Safety
/// `f` is a file this VFS opened with a role, and not yet closed.
unsafe fn file<'a>(f: *mut ffi::sqlite3_file) -> &'a mut File {
    unsafe { &mut *(f as *mut File) }
}

/// # Safety
/// `f.inner` is open.
unsafe fn inner_methods(f: &File) -> &ffi::sqlite3_io_methods {
    unsafe { &*(*f.inner).pMethods }
}

impl File {
    /// Writes what is held. On failure the bytes are dropped: SQLite treats the failed write
    /// as the transaction's and rolls it back, and its frames lie beyond the log's end.
    fn flush(&mut self) -> c_int {
        if self.buffer.is_empty() {
            return ffi::SQLITE_OK;
        }
        // SAFETY: inner is open while self is.
        let write = unsafe { inner_methods(self) }.xWrite.expect("a file that can be written");
        let mut rc = ffi::SQLITE_OK;
        let mut offset = self.start;
        // The unix VFS writes at most 128 KiB a call (it masks the length to 17 bits).
        for chunk in self.buffer.chunks(MAX_WRITE) {
            rc = unsafe { write(self.inner, chunk.as_ptr() as *const c_void, chunk.len() as c_int, offset) };
            if rc != ffi::SQLITE_OK {
                break;
            }
            offset += chunk.len() as i64;
        }
        self.buffer.clear();
        FLUSHES.fetch_add(1, Ordering::Relaxed);
        rc
    }

    fn write(&mut self, data: &[u8], offset: i64) -> c_int {
        let commit_header = data.len() == FRAME_HEADER && data[4..8] != [0; 4];
        let completes_commit = std::mem::take(&mut self.commit_pending);
        let after_read = std::mem::take(&mut self.after_read);
        if self.partner.is_null() || data.len() >= MAX_WRITE || (commit_header && after_read) {
            let rc = self.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            let write = unsafe { inner_methods(self) }.xWrite.expect("a file that can be written");
            // A commit header written through still has its page to come, which is held until
            // that write completes the commit.
            self.commit_pending = commit_header;
            return unsafe { write(self.inner, data.as_ptr() as *const c_void, data.len() as c_int, offset) };
        }
        let end = self.start + self.buffer.len() as i64;
        if !self.buffer.is_empty() && offset >= self.start && offset + data.len() as i64 <= end {
            // A frame written again within the transaction, still held: overwrite it here.
            let at = (offset - self.start) as usize;
            self.buffer[at..at + data.len()].copy_from_slice(data);
        } else {
            if !(offset == end && self.buffer.len() + data.len() <= CAPACITY) {
                let rc = self.flush();
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                self.start = offset;
            }
            self.buffer.extend_from_slice(data);
            BUFFERED_WRITES.fetch_add(1, Ordering::Relaxed);
        }
        if completes_commit {
            return self.flush();
        }
        self.commit_pending = commit_header;
        ffi::SQLITE_OK
    }

    /// The database file's side: flush its WAL's buffer before anything is published.
    fn flush_partner(&mut self) {
        if self.role != Role::Main || self.partner.is_null() {
            return;
        }
        // SAFETY: a partner is unlinked when it closes.
        let wal = unsafe { &mut *self.partner };
        if wal.buffer.is_empty() {
            return;
        }
        NET_FLUSHES.fetch_add(1, Ordering::Relaxed);
        if wal.flush() != ffi::SQLITE_OK {
            eprintln!("sqlite wal buffer: frames could not be written before publication; aborting");
            std::process::abort();
        }
    }
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    f: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let base = base();
    // SAFETY: the default VFS has an xOpen.
    let base_open = unsafe { (*base).xOpen }.expect("a VFS opens files");
    let role = if flags & ffi::SQLITE_OPEN_MAIN_DB != 0 && !name.is_null() {
        Role::Main
    } else if flags & ffi::SQLITE_OPEN_WAL != 0 && !name.is_null() {
        Role::Wal
    } else {
        // Everything else is the default VFS's file, at the start of the allocation.
        return unsafe { base_open(base, name, f, flags, out_flags) };
    };
    let inner = unsafe { (f as *mut u8).add(INNER_OFFSET) } as *mut ffi::sqlite3_file;
    let rc = unsafe { base_open(base, name, inner, flags, out_flags) };
    if rc != ffi::SQLITE_OK {
        unsafe { (*f).pMethods = std::ptr::null() };
        return rc;
    }
    let mut partner: *mut File = std::ptr::null_mut();
    let mut key = name as usize;
    let mut registry = MAIN_FILES.lock().unwrap_or_else(|e| e.into_inner());
    if role == Role::Wal {
        key = unsafe { ffi::sqlite3_filename_database(name) } as usize;
        if let Some(&(_, main)) = registry.iter().find(|(k, _)| *k == key) {
            partner = main as *mut File;
        }
    }
    unsafe {
        std::ptr::write(
            f as *mut File,
            File {
                base: ffi::sqlite3_file { pMethods: &METHODS },
                inner,
                role,
                name: key,
                partner,
                buffer: Vec::new(),
                start: 0,
                commit_pending: false,
                after_read: false,
            },
        )
    };
    match role {
        Role::Main => registry.push((key, f as usize)),
        Role::Wal if !partner.is_null() => unsafe { (*partner).partner = f as *mut File },
        Role::Wal => {}
    }
    ffi::SQLITE_OK
}

unsafe extern "C" fn close(f: *mut ffi::sqlite3_file) -> c_int {
    let this = unsafe { file(f) };
    let flushed = this.flush();
    {
        let mut registry = MAIN_FILES.lock().unwrap_or_else(|e| e.into_inner());
        match this.role {
            Role::Main => {
                registry.retain(|&(name, main)| (name, main) != (this.name, f as usize));
                if !this.partner.is_null() {
                    unsafe { (*this.partner).partner = std::ptr::null_mut() };
                }
            }
            Role::Wal => {
                if !this.partner.is_null() {
                    unsafe { (*this.partner).partner = std::ptr::null_mut() };
                }
            }
        }
    }
    let inner = this.inner;
    let close = unsafe { inner_methods(this) }.xClose;
    // SAFETY: written by `open`, dropped once here; SQLite does not touch the file after xClose.
    unsafe { std::ptr::drop_in_place(f as *mut File) };
    let rc = match close {
        Some(close) => unsafe { close(inner) },
        None => ffi::SQLITE_OK,
    };
    if flushed != ffi::SQLITE_OK {
        flushed
    } else {
        rc
    }
}

unsafe extern "C" fn read(f: *mut ffi::sqlite3_file, buf: *mut c_void, amount: c_int, offset: i64) -> c_int {
    let this = unsafe { file(f) };
    let rc = this.flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    this.after_read = true;
    let read = unsafe { inner_methods(this) }.xRead.expect("a file that can be read");
    unsafe { read(this.inner, buf, amount, offset) }
}

unsafe extern "C" fn write(f: *mut ffi::sqlite3_file, buf: *const c_void, amount: c_int, offset: i64) -> c_int {
    let this = unsafe { file(f) };
    if this.role == Role::Main {
        let write = unsafe { inner_methods(this) }.xWrite.expect("a file that can be written");
        return unsafe { write(this.inner, buf, amount, offset) };
    }
    // SAFETY: SQLite passes `amount` readable bytes.
    let data = unsafe { std::slice::from_raw_parts(buf as *const u8, amount.max(0) as usize) };
    this.write(data, offset)
}

/// Forwards a call that must see the file as written so far: flushes first.
macro_rules! flushing {
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*), $missing:expr) => {
        unsafe extern "C" fn $name(f: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> c_int {
            let this = unsafe { file(f) };
            let rc = this.flush();
            if rc != ffi::SQLITE_OK {
                return rc;
            }
            match unsafe { inner_methods(this) }.$method {
                Some(m) => unsafe { m(this.inner $(, $arg)*) },
                None => $missing,
            }
        }
    };
}

flushing!(truncate, xTruncate, (size: i64), ffi::SQLITE_IOERR);
flushing!(sync, xSync, (flags: c_int), ffi::SQLITE_IOERR);
flushing!(file_size, xFileSize, (size: *mut i64), ffi::SQLITE_IOERR);
flushing!(lock, xLock, (level: c_int), ffi::SQLITE_IOERR);
flushing!(unlock, xUnlock, (level: c_int), ffi::SQLITE_IOERR);
flushing!(file_control, xFileControl, (op: c_int, arg: *mut c_void), ffi::SQLITE_NOTFOUND);

unsafe extern "C" fn check_reserved_lock(f: *mut ffi::sqlite3_file, out: *mut c_int) -> c_int {
    let this = unsafe { file(f) };
    match unsafe { inner_methods(this) }.xCheckReservedLock {
        Some(m) => unsafe { m(this.inner, out) },
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn sector_size(f: *mut ffi::sqlite3_file) -> c_int {
    let this = unsafe { file(f) };
    unsafe { inner_methods(this) }.xSectorSize.map_or(4096, |m| unsafe { m(this.inner) })
}

unsafe extern "C" fn device_characteristics(f: *mut ffi::sqlite3_file) -> c_int {
    let this = unsafe { file(f) };
    unsafe { inner_methods(this) }.xDeviceCharacteristics.map_or(0, |m| unsafe { m(this.inner) })
}

unsafe extern "C" fn shm_map(
    f: *mut ffi::sqlite3_file,
    page: c_int,
    size: c_int,
    extend: c_int,
    out: *mut *mut c_void,
) -> c_int {
    let this = unsafe { file(f) };
    match unsafe { inner_methods(this) }.xShmMap {
        Some(m) => unsafe { m(this.inner, page, size, extend, out) },
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn shm_lock(f: *mut ffi::sqlite3_file, offset: c_int, n: c_int, flags: c_int) -> c_int {
    let this = unsafe { file(f) };
    this.flush_partner();
    match unsafe { inner_methods(this) }.xShmLock {
        Some(m) => unsafe { m(this.inner, offset, n, flags) },
        None => ffi::SQLITE_IOERR,
    }
}

unsafe extern "C" fn shm_barrier(f: *mut ffi::sqlite3_file) {
    let this = unsafe { file(f) };
    this.flush_partner();
    if let Some(m) = unsafe { inner_methods(this) }.xShmBarrier {
        unsafe { m(this.inner) }
    }
}

unsafe extern "C" fn shm_unmap(f: *mut ffi::sqlite3_file, delete: c_int) -> c_int {
    let this = unsafe { file(f) };
    this.flush_partner();
    match unsafe { inner_methods(this) }.xShmUnmap {
        Some(m) => unsafe { m(this.inner, delete) },
        None => ffi::SQLITE_OK,
    }
}

unsafe extern "C" fn fetch(f: *mut ffi::sqlite3_file, offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int {
    let this = unsafe { file(f) };
    let rc = this.flush();
    if rc != ffi::SQLITE_OK {
        return rc;
    }
    match unsafe { inner_methods(this) }.xFetch {
        Some(m) => unsafe { m(this.inner, offset, amount, out) },
        None => {
            unsafe { *out = std::ptr::null_mut() };
            ffi::SQLITE_OK
        }
    }
}

unsafe extern "C" fn unfetch(f: *mut ffi::sqlite3_file, offset: i64, p: *mut c_void) -> c_int {
    let this = unsafe { file(f) };
    match unsafe { inner_methods(this) }.xUnfetch {
        Some(m) => unsafe { m(this.inner, offset, p) },
        None => ffi::SQLITE_OK,
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

const NAME: &CStr = c"vaitio-wal-buffer";

/// Registers the VFS as the process's default, once. Returns whether it is in place.
pub(crate) fn install() -> bool {
    static INSTALL: Once = Once::new();
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    INSTALL.call_once(|| {
        // SAFETY: finds the default VFS (initialising SQLite if it has not been).
        let default = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
        if default.is_null() || unsafe { CStr::from_ptr((*default).zName) } == NAME {
            let _ = INSTALLED.set(false);
            return;
        }
        let _ = BASE.set(Base(default));
        // The default VFS's calls apart from xOpen take the VFS only to reach its own data, so
        // the copy keeps them (and that data) as they are.
        let mut ours = unsafe { *default };
        ours.szOsFile = (INNER_OFFSET + unsafe { (*default).szOsFile } as usize) as c_int;
        ours.pNext = std::ptr::null_mut();
        ours.zName = NAME.as_ptr() as *const c_char;
        ours.xOpen = Some(open);
        let ours = Box::leak(Box::new(ours));
        let rc = unsafe { ffi::sqlite3_vfs_register(ours, 1) };
        let _ = INSTALLED.set(rc == ffi::SQLITE_OK);
    });
    INSTALLED.get().copied().unwrap_or(false)
}

/// What the buffer has done in this process: writes held, writes made, and flushes the safety
/// net had to make (zero unless a commit was about to be published unwritten).
pub fn counts() -> (u64, u64, u64) {
    (BUFFERED_WRITES.load(Ordering::Relaxed), FLUSHES.load(Ordering::Relaxed), NET_FLUSHES.load(Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use diesel::connection::SimpleConnection;
    use diesel::sqlite::SqliteConnection;
    use diesel::{Connection, QueryableByName, RunQueryDsl};

    #[derive(QueryableByName)]
    struct Totals {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        rows: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bytes: i64,
    }

    #[derive(QueryableByName)]
    struct Check {
        #[diesel(sql_type = diesel::sql_types::Text)]
        integrity_check: String,
    }

    /// Rows, and the bytes of every value (so the reader reads each page, from the log).
    fn totals(conn: &mut SqliteConnection) -> (i64, i64) {
        let t: Totals = diesel::sql_query("SELECT count(*) AS rows, coalesce(sum(length(v)), 0) AS bytes FROM t")
            .get_result(conn)
            .unwrap();
        (t.rows, t.bytes)
    }

    fn sound(conn: &mut SqliteConnection) {
        let checks: Vec<Check> = diesel::sql_query("PRAGMA integrity_check").load(conn).unwrap();
        assert_eq!(checks.iter().map(|c| c.integrity_check.as_str()).collect::<Vec<_>>(), ["ok"]);
    }

    /// A second connection sees every commit, complete, the moment it is published: through
    /// small and large transactions, transactions that spill frames before they commit and then
    /// write the same pages again (SQLite rewrites their checksums in place), a rollback of
    /// spilled frames, checkpoints that start the log over, and a reopen. Writes were held and
    /// coalesced, and the safety net never found a commit unwritten.
    #[test]
    fn every_commit_is_on_file_before_another_connection_sees_it() {
        assert!(crate::install(), "the unit tests open no SQLite connection before this");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal.db").to_string_lossy().into_owned();
        let mut writer = SqliteConnection::establish(&path).unwrap();
        writer
            .batch_execute(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = 16;
                 PRAGMA wal_autocheckpoint = 0;
                 CREATE TABLE t (k BLOB PRIMARY KEY, v BLOB) WITHOUT ROWID;",
            )
            .unwrap();
        let mut reader = SqliteConnection::establish(&path).unwrap();
        let (held_before, flushes_before, net_before) = super::counts();
        let (mut rows, mut bytes) = (0i64, 0i64);
        for round in 0..60i64 {
            // 1 to 600 rows: one-page commits up to transactions that spill the 16-page cache.
            let n = 1 + (round * 97) % 600;
            let size = 100 + round * 13;
            writer
                .batch_execute(&format!(
                    "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
                     INSERT INTO t SELECT randomblob(16), randomblob({size}) FROM n; COMMIT;"
                ))
                .unwrap();
            rows += n;
            bytes += n * size;
            if round % 7 == 3 {
                // Spill, then write the spilled pages again before the commit.
                writer
                    .batch_execute(
                        "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 400)
                         INSERT INTO t SELECT randomblob(16), randomblob(300) FROM n;
                         UPDATE t SET v = randomblob(length(v)) WHERE k < X'80'; COMMIT;",
                    )
                    .unwrap();
                rows += 400;
                bytes += 400 * 300;
            }
            if round % 11 == 5 {
                // Spilled frames of a transaction that rolls back are never published.
                writer
                    .batch_execute(
                        "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 500)
                         INSERT INTO t SELECT randomblob(16), randomblob(500) FROM n; ROLLBACK;",
                    )
                    .unwrap();
            }
            assert_eq!(totals(&mut reader), (rows, bytes), "round {round}: the reader saw another state");
            if round % 13 == 12 {
                // Copy the log into the database and start it over: the next commit writes the
                // log's header and frames from its start again.
                reader.batch_execute("PRAGMA wal_checkpoint(TRUNCATE);").unwrap();
            }
        }
        sound(&mut reader);
        let (held, flushes, net) = super::counts();
        assert!(held - held_before > flushes - flushes_before, "writes were not coalesced");
        assert_eq!(net, net_before, "a commit was about to be published with frames still held");
        drop((writer, reader));
        let mut reopened = SqliteConnection::establish(&path).unwrap();
        assert_eq!(totals(&mut reopened), (rows, bytes));
        sound(&mut reopened);
    }
}
