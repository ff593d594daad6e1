//! Space kept back on the disk of an embedded (SQLite) database, for the day it fills.
//!
//! A full disk refuses every transaction, and every read needs one: its audit record. So the
//! store keeps a reserve file of a set size beside the database. When a write finds the disk
//! full, the writer deletes the reserve, and from then on refuses clinical writes up front
//! (507) while reads and their audit records go on in the space it freed. Once the disk has
//! twice the reserve free again (an operator freed space), the reserve is written anew and
//! writes are taken again, with no restart. PostgreSQL's disk is its server's to watch.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often, while the reserve is released, the free space is looked at.
const LOOK_EVERY: Duration = Duration::from_secs(1);

pub(crate) struct Reserve {
    path: PathBuf,
    bytes: u64,
    state: Mutex<State>,
}

struct State {
    held: bool,
    looked_at: Option<Instant>,
}

impl Reserve {
    /// The reserve of `bytes` in `path`, written now if it is not there at its size. On a disk
    /// too full for it, the store starts with the reserve released.
    pub fn keep(path: PathBuf, bytes: u64) -> Reserve {
        let reserve = Reserve { path, bytes, state: Mutex::new(State { held: false, looked_at: None }) };
        let held = reserve.write();
        if !held {
            tracing::warn!(path = %reserve.path.display(), bytes, "no room for the disk reserve: writes are refused until there is");
        }
        reserve.state().held = held;
        reserve
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the file with real blocks (a file only set to its length would be sparse and
    /// keep nothing back).
    fn write(&self) -> bool {
        let metadata = std::fs::metadata(&self.path);
        if metadata.is_ok_and(|m| m.len() == self.bytes) {
            return true;
        }
        let written = (|| -> std::io::Result<()> {
            let mut file = std::fs::File::create(&self.path)?;
            let chunk = vec![0u8; 1 << 20];
            let mut left = self.bytes;
            while left > 0 {
                let n = left.min(chunk.len() as u64) as usize;
                file.write_all(&chunk[..n])?;
                left -= n as u64;
            }
            file.sync_all()
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&self.path);
        }
        written.is_ok()
    }

    /// The disk was found full: frees the reserve, if it was held. True when this call freed it.
    pub fn release(&self) -> bool {
        let mut state = self.state();
        if !state.held {
            return false;
        }
        state.held = false;
        state.looked_at = Some(Instant::now());
        let removed = std::fs::remove_file(&self.path);
        tracing::error!(
            path = %self.path.display(),
            freed = removed.is_ok(),
            "the database's disk is full: the reserve was released so that reads and their audit records go on; clinical writes are refused (507) until space is freed"
        );
        true
    }

    /// Whether writes may go ahead: the reserve is held, or is written again now because the
    /// disk has room for it twice over (looked at once a second at most).
    pub fn writes_allowed(&self) -> bool {
        let mut state = self.state();
        if state.held {
            return true;
        }
        if state.looked_at.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
            return false;
        }
        state.looked_at = Some(Instant::now());
        if available(&self.path).is_some_and(|free| free >= 2 * self.bytes) && self.write() {
            state.held = true;
            tracing::info!(path = %self.path.display(), "the database's disk has room again: the reserve is back and writes are taken");
        }
        state.held
    }
}

/// Bytes free to an unprivileged user on the file system holding `path`.
fn available(path: &Path) -> Option<u64> {
    let folder = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let stats = rustix::fs::statvfs(folder).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_released_reserve_comes_back_when_there_is_room() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.reserve");
        let reserve = Reserve::keep(path.clone(), 1 << 20);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
        assert!(reserve.writes_allowed());
        assert!(reserve.release());
        assert!(!path.exists());
        assert!(!reserve.release(), "released once");
        // Not looked at again within the second.
        assert!(!reserve.writes_allowed());
        reserve.state().looked_at = None;
        assert!(reserve.writes_allowed(), "the temporary folder has room for a megabyte twice");
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    }
}
