//! How far an import got: the last line of the file whose answer came back, and every line
//! before it. The same command run again starts after it; a line sent twice is harmless, because
//! the gateway files a record by its `record_id` (the same record again is `unchanged`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::ImportError;

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The file this is for, and its size: a checkpoint never skips lines of another file.
    pub file: PathBuf,
    pub size: u64,
    /// Every line up to this one (from 1) has its answer.
    pub line: u64,
    /// The import reached the file's end.
    pub complete: bool,
}

impl Checkpoint {
    /// The checkpoint at `path` for `file`, or a new one when there is none yet.
    pub fn load(path: &Path, file: &Path, size: u64) -> Result<Checkpoint, ImportError> {
        let file = std::fs::canonicalize(file).map_err(|cause| ImportError::file(file, cause))?;
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Checkpoint { file, size, line: 0, complete: false })
            }
            Err(cause) => return Err(ImportError::file(path, cause)),
        };
        let saved: Checkpoint = serde_json::from_str(&text)
            .map_err(|cause| ImportError::file(path, format!("not a checkpoint of vaitio import: {cause}")))?;
        if saved.file != file || saved.size != size {
            return Err(ImportError::Usage(format!(
                "the checkpoint {} is for {} ({} bytes), not this file: give another --checkpoint",
                path.display(),
                saved.file.display(),
                saved.size
            )));
        }
        Ok(saved)
    }

    /// Writes it whole or not at all (a new file renamed over the old), and to the disk.
    pub fn save(&self, path: &Path) -> Result<(), ImportError> {
        let mut temporary = path.as_os_str().to_owned();
        temporary.push(".new");
        let temporary = PathBuf::from(temporary);
        let text = serde_json::to_vec_pretty(self).map_err(|e| ImportError::file(path, e))?;
        let write = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&temporary, path)
        };
        write().map_err(|cause| ImportError::file(path, cause))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_kept_for_its_own_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let (file, other, at) = (dir.path().join("a.ndjson"), dir.path().join("b.ndjson"), dir.path().join("cp"));
        std::fs::write(&file, "x\n").unwrap();
        std::fs::write(&other, "y\n").unwrap();
        let mut checkpoint = Checkpoint::load(&at, &file, 2).unwrap();
        assert_eq!(checkpoint.line, 0);
        checkpoint.line = 1;
        checkpoint.save(&at).unwrap();
        assert_eq!(Checkpoint::load(&at, &file, 2).unwrap(), checkpoint);
        assert!(Checkpoint::load(&at, &other, 2).is_err(), "another file");
        assert!(Checkpoint::load(&at, &file, 3).is_err(), "the file changed");
    }
}
