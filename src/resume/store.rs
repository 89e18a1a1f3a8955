//! Resume files on disk. A save is write-to-temp, fsync, rename, fsync of
//! the directory: a crash at any moment leaves either the old state or the
//! new one, never a torn file.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use super::ResumeState;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("cannot use the state directory {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save resume state to {path}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `$XDG_STATE_HOME/ringtorrent`, else `~/.local/state/ringtorrent`.
pub fn default_dir() -> Option<PathBuf> {
    let nonempty = |v: std::ffi::OsString| (!v.is_empty()).then(|| PathBuf::from(v));
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").and_then(nonempty) {
        return Some(d.join("ringtorrent"));
    }
    std::env::var_os("HOME")
        .and_then(nonempty)
        .map(|h| h.join(".local/state/ringtorrent"))
}

/// Creates the state directory (once, at start, so a bad `--state-dir`
/// fails before any transfer).
pub fn prepare_dir(dir: &Path) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|source| StoreError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    // Writable? Saving later must not be the first to find out.
    tempfile::NamedTempFile::new_in(dir)
        .map(drop)
        .map_err(|source| StoreError::Dir {
            path: dir.to_path_buf(),
            source,
        })
}

/// The saved state, if there is a readable one. A damaged file is reported
/// and ignored: the data gets checked instead.
pub fn load(path: &Path) -> Option<ResumeState> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            log::warn!(
                "cannot read {}: {e}; checking the data instead",
                path.display()
            );
            return None;
        }
    };
    match ResumeState::decode(&bytes) {
        Ok(s) => Some(s),
        Err(e) => {
            log::warn!("{}: {e}; checking the data instead", path.display());
            None
        }
    }
}

pub fn save(path: &Path, state: &ResumeState) -> Result<(), StoreError> {
    let err = |source| StoreError::Save {
        path: path.to_path_buf(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(&state.encode()).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(path).map_err(|e| err(e.error))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}
