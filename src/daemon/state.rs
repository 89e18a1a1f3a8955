//! What the daemon keeps across restarts, in its state directory:
//!
//! - `torrents/<info-hash>.torrent`: a copy of each torrent, written before
//!   `torrent-add` answers and deleted before `torrent-remove` does. These
//!   say which torrents the daemon has: one whose settings never reached
//!   `daemon.json` (a `kill -9` right after adding it) comes back with the
//!   defaults.
//! - `daemon.json`: each torrent's settings and counters, and the settings
//!   `session-set` changed; replaced atomically, at most a second after a
//!   change.
//! - `resume/`: the session's resume state (which pieces are verified).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::Prefs;
use crate::metainfo::{InfoHash, Metainfo};
use crate::resume::store::{write_atomic, write_atomic_with};
use crate::session::Priority;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("cannot use the state directory {path}")]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot save {path}")]
    Save {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is damaged ({message}); move it away to start afresh")]
    Damaged { path: PathBuf, message: String },
}

/// A file's priority as saved (and as Transmission numbers it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct FilePrefs {
    pub wanted: bool,
    /// -1 low, 0 normal, 1 high.
    pub priority: i8,
}

impl FilePrefs {
    pub const NORMAL: FilePrefs = FilePrefs {
        wanted: true,
        priority: 0,
    };

    pub fn as_priority(self) -> Priority {
        match (self.wanted, self.priority) {
            (false, _) => Priority::Skip,
            (true, p) if p < 0 => Priority::Low,
            (true, 0) => Priority::Normal,
            (true, _) => Priority::High,
        }
    }
}

/// One torrent's settings and lifetime counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SavedTorrent {
    pub id: u32,
    pub download_dir: PathBuf,
    pub paused: bool,
    /// Unix seconds.
    pub added_date: u64,
    pub done_date: u64,
    pub activity_date: u64,
    pub files: Vec<FilePrefs>,
    /// Files or directories renamed, in order (path, new name).
    pub renames: Vec<(String, String)>,
    /// Trackers in use when they differ from the torrent's.
    pub trackers: Option<Vec<Vec<String>>>,
    pub labels: Vec<String>,
    /// Bytes per second.
    pub upload_limit: u64,
    pub upload_limited: bool,
    pub download_limit: u64,
    pub download_limited: bool,
    pub bandwidth_priority: i8,
    /// 0: the session's, 1: this torrent's, 2: none.
    pub seed_ratio_mode: u8,
    pub seed_ratio_limit: f64,
    pub seed_idle_mode: u8,
    /// Minutes.
    pub seed_idle_limit: u32,
    pub peer_limit: u32,
    pub queue_position: usize,
    /// Stopped by its ratio or idle limit.
    pub finished: bool,
    pub uploaded_ever: u64,
    pub downloaded_ever: u64,
    pub corrupt_ever: u64,
    pub seconds_downloading: u64,
    pub seconds_seeding: u64,
}

impl Default for SavedTorrent {
    fn default() -> Self {
        SavedTorrent {
            id: 0,
            download_dir: PathBuf::new(),
            paused: false,
            added_date: 0,
            done_date: 0,
            activity_date: 0,
            files: Vec::new(),
            renames: Vec::new(),
            trackers: None,
            labels: Vec::new(),
            upload_limit: 100_000,
            upload_limited: false,
            download_limit: 100_000,
            download_limited: false,
            bandwidth_priority: 0,
            seed_ratio_mode: 0,
            seed_ratio_limit: 2.0,
            seed_idle_mode: 0,
            seed_idle_limit: 30,
            peer_limit: 50,
            queue_position: 0,
            finished: false,
            uploaded_ever: 0,
            downloaded_ever: 0,
            corrupt_ever: 0,
            seconds_downloading: 0,
            seconds_seeding: 0,
        }
    }
}

/// Counters Transmission keeps for the whole daemon.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Cumulative {
    pub uploaded_bytes: u64,
    pub downloaded_bytes: u64,
    pub files_added: u64,
    pub session_count: u64,
    pub seconds_active: u64,
}

/// `daemon.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Saved {
    pub version: u32,
    pub prefs: Option<Prefs>,
    pub cumulative: Cumulative,
    /// By info-hash (hex).
    pub torrents: BTreeMap<String, SavedTorrent>,
}

/// `Saved::version` of what this build writes.
pub const VERSION: u32 = 1;

/// The state directory's layout.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Creates the directories if needed and checks they can be written.
    pub fn open(root: &Path) -> Result<StateDir, StateError> {
        let dir = StateDir {
            root: root.to_path_buf(),
        };
        for d in [dir.root.clone(), dir.torrents(), dir.resume()] {
            crate::resume::store::prepare_dir(&d).map_err(|e| StateError::Dir {
                path: d.clone(),
                source: std::io::Error::other(crate::error_chain(&e)),
            })?;
        }
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn resume(&self) -> PathBuf {
        self.root.join("resume")
    }

    fn torrents(&self) -> PathBuf {
        self.root.join("torrents")
    }

    fn state_file(&self) -> PathBuf {
        self.root.join("daemon.json")
    }

    pub fn torrent_file(&self, hash: &InfoHash) -> PathBuf {
        self.torrents().join(format!("{}.torrent", hash.to_hex()))
    }

    /// The saved settings (empty if there are none yet).
    pub fn load(&self) -> Result<Saved, StateError> {
        let path = self.state_file();
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Saved::default()),
            Err(source) => return Err(StateError::Dir { path, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Damaged {
            path,
            message: e.to_string(),
        })
    }

    pub fn save(&self, saved: &Saved) -> Result<(), StateError> {
        let path = self.state_file();
        // Streamed: with thousands of torrents the text is megabytes.
        write_atomic_with(&path, |w| {
            serde_json::to_writer(w, saved).map_err(std::io::Error::other)
        })
        .map_err(|source| StateError::Save { path, source })
    }

    /// Keeps a copy of an added torrent (before the add is acknowledged).
    pub fn keep_torrent(&self, meta: &Metainfo, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.torrent_file(&meta.info_hash);
        write_atomic(&path, bytes).map_err(|source| StateError::Save { path, source })
    }

    pub fn forget_torrent(&self, hash: &InfoHash) -> Result<(), StateError> {
        let path = self.torrent_file(hash);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(StateError::Save { path, source: e })
            }
            _ => Ok(()),
        }
    }

    /// Every kept torrent, in no particular order; unreadable ones are
    /// reported and skipped.
    pub fn kept_torrents(&self) -> Result<Vec<(Metainfo, Vec<u8>)>, StateError> {
        let dir = self.torrents();
        let entries = std::fs::read_dir(&dir).map_err(|source| StateError::Dir {
            path: dir.clone(),
            source,
        })?;
        let mut out = Vec::new();
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "torrent") {
                continue;
            }
            match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    Metainfo::from_bytes(&b)
                        .map(|m| (m, b))
                        .map_err(|e| crate::error_chain(&e))
                }) {
                Ok(t) => out.push(t),
                Err(why) => log::error!("skipping {}: {why}", path.display()),
            }
        }
        Ok(out)
    }
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_survive_a_round_trip_and_old_files_load() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateDir::open(dir.path()).unwrap();
        assert!(s.load().unwrap().torrents.is_empty());
        let mut saved = Saved::default();
        saved.torrents.insert(
            "ab".repeat(20),
            SavedTorrent {
                id: 3,
                labels: vec!["x".into()],
                files: vec![FilePrefs::NORMAL, FilePrefs::default()],
                ..SavedTorrent::default()
            },
        );
        s.save(&saved).unwrap();
        let back = s.load().unwrap();
        assert_eq!(back.torrents, saved.torrents);
        // Keys added later take their defaults.
        std::fs::write(
            dir.path().join("daemon.json"),
            br#"{"torrents":{"x":{"id":9}}}"#,
        )
        .unwrap();
        let t = &s.load().unwrap().torrents["x"];
        assert_eq!((t.id, t.peer_limit, t.seed_ratio_limit), (9, 50, 2.0));
        std::fs::write(dir.path().join("daemon.json"), b"{\"torrents\":").unwrap();
        assert!(matches!(s.load(), Err(StateError::Damaged { .. })));
    }

    #[test]
    fn file_priorities_map_to_the_picker() {
        let p = |wanted, priority| FilePrefs { wanted, priority }.as_priority();
        assert_eq!(p(false, 1), Priority::Skip);
        assert_eq!(p(true, -1), Priority::Low);
        assert_eq!(p(true, 0), Priority::Normal);
        assert_eq!(p(true, 1), Priority::High);
    }
}
