//! The watch directory: a `.torrent` dropped there is added, then renamed
//! `.added` (or deleted, with `trash-original-torrent-files`). One that
//! does not parse is retried while it may still be being written, then
//! renamed `.invalid`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use super::control::{AddOutcome, AddRequest, ControlError, Daemon};

/// How long a file that does not parse may still be growing.
const SETTLE: Duration = Duration::from_secs(5);

#[derive(Default)]
pub struct Watcher {
    /// Files that failed to parse, with their size then (retried only once
    /// they change or settle).
    failed: HashMap<PathBuf, u64>,
    /// Files added that could not be moved aside (a read-only directory),
    /// with their size and mtime: not added again while unchanged.
    kept: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    /// Files whose add failed for a reason of ours (a full disk, say), not
    /// theirs: tried again after [`RETRY`].
    retry: HashMap<PathBuf, Instant>,
}

/// How long a file whose add failed on our side waits before another try.
const RETRY: Duration = Duration::from_secs(60);

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
            if self.kept.get(&path) == Some(&(meta.len(), meta.modified().ok())) {
                continue;
            }
            if self.retry.get(&path).is_some_and(|at| Instant::now() < *at) {
                continue;
            }
            self.take(daemon, &path, &meta, settled);
        }
        self.failed.retain(|p, _| p.exists());
        self.kept.retain(|p, _| p.exists());
        self.retry.retain(|p, _| p.exists());
    }

    fn take(&mut self, daemon: &Daemon, path: &Path, meta: &std::fs::Metadata, settled: bool) {
        let len = meta.len();
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
                    self.kept
                        .insert(path.to_path_buf(), (len, meta.modified().ok()));
                }
                self.failed.remove(path);
                self.retry.remove(path);
            }
            Err(ControlError::BadTorrent(_)) if !settled => {
                // Perhaps still being written.
                self.failed.insert(path.to_path_buf(), len);
            }
            Err(e @ ControlError::BadTorrent(_)) => self.refuse(path, &crate::error_chain(&e)),
            Err(e) => {
                log::error!("watch dir: {}: {}", path.display(), crate::error_chain(&e));
                self.retry
                    .insert(path.to_path_buf(), Instant::now() + RETRY);
            }
        }
    }

    fn refuse(&mut self, path: &Path, why: &str) {
        log::error!("watch dir: {}: {why}", path.display());
        if std::fs::rename(path, path.with_extension("torrent.invalid")).is_err() {
            self.failed.insert(path.to_path_buf(), u64::MAX);
        }
    }
}
