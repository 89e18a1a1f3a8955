//! The watch directory: a `.torrent` dropped there is added, then renamed
//! `.added` (or deleted, with `trash-original-torrent-files`). One that
//! does not parse is retried while it may still be being written, then
//! renamed `.invalid`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::control::{AddOutcome, AddRequest, ControlError, Daemon};

/// How long a file that does not parse may still be growing.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Watcher {
    /// Files that failed to parse, with their size then (retried only once
    /// they change or settle).
    failed: HashMap<PathBuf, u64>,
}

impl Watcher {
    pub fn scan(&mut self, daemon: &Daemon, dir: &Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_none_or(|x| x != "torrent") {
                continue;
            }
            let Ok(meta) = e.metadata() else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let settled = meta
                .modified()
                .ok()
                .and_then(|m| SystemTime::now().duration_since(m).ok())
                .is_some_and(|age| age >= SETTLE);
            if self.failed.get(&path) == Some(&meta.len()) && !settled {
                continue;
            }
            self.take(daemon, &path, meta.len(), settled);
        }
        self.failed.retain(|p, _| p.exists());
    }

    fn take(&mut self, daemon: &Daemon, path: &Path, len: u64, settled: bool) {
        if len > crate::metainfo::MAX_TORRENT_FILE_SIZE {
            return self.refuse(path, "too large for a torrent file");
        }
        let Ok(bytes) = std::fs::read(path) else {
            return;
        };
        match daemon.add(AddRequest {
            torrent: bytes,
            ..AddRequest::default()
        }) {
            Ok(AddOutcome::Added(b) | AddOutcome::Duplicate(b)) => {
                log::info!("watch dir: {} is torrent {}", path.display(), b.id);
                let done = if daemon.table().prefs.trash_original_torrent_files {
                    std::fs::remove_file(path)
                } else {
                    std::fs::rename(path, path.with_extension("torrent.added"))
                };
                if let Err(e) = done {
                    log::error!("watch dir: cannot move {} aside: {e}", path.display());
                }
                self.failed.remove(path);
            }
            Err(ControlError::BadTorrent(_)) if !settled => {
                // Perhaps still being written.
                self.failed.insert(path.to_path_buf(), len);
            }
            Err(e) => self.refuse(path, &crate::error_chain(&e)),
        }
    }

    fn refuse(&mut self, path: &Path, why: &str) {
        log::error!("watch dir: {}: {why}", path.display());
        if std::fs::rename(path, path.with_extension("torrent.invalid")).is_err() {
            self.failed.insert(path.to_path_buf(), u64::MAX);
        }
    }
}
