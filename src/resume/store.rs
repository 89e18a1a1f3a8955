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
    write_atomic(path, &state.encode()).map_err(|source| StoreError::Save {
        path: path.to_path_buf(),
        source,
    })
}

/// Replaces `path` with `bytes` so that a crash at any moment leaves either
/// the old file or the new one: a temporary file beside it, fsynced, renamed
/// over it, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`], the bytes written by `fill` (no copy of them in memory).
pub fn write_atomic_with(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    // `Path::new("x").parent()` is `Some("")`, which names no directory.
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    {
        let mut w = std::io::BufWriter::new(tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    File::open(dir).and_then(|d| d.sync_all())
}

/// The journal beside a state file: pieces written since its last save.
pub fn journal_path(state: &Path) -> PathBuf {
    state.with_extension("journal")
}

/// Appends piece numbers (4 bytes each, little-endian) to the journal of
/// `state`. Not synced: it has to outlive the process, not the machine.
pub fn append_journal(state: &Path, pieces: &[u32]) -> std::io::Result<()> {
    let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.to_le_bytes()).collect();
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(journal_path(state))?
        .write_all(&bytes)
}

/// The pieces the journal of `state` names (a torn last entry is ignored).
pub fn read_journal(state: &Path) -> Vec<u32> {
    std::fs::read(journal_path(state))
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Empties the journal once a save covers it.
pub fn clear_journal(state: &Path) {
    match std::fs::remove_file(journal_path(state)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            log::warn!("cannot clear {}: {e}", journal_path(state).display());
        }
        _ => {}
    }
}
