//! A shard's open files: a bounded cache, least recently used out first.
//!
//! A thousand multi-file torrents cannot keep every file open. Each shard
//! opens the files it reads and writes on first use (through
//! `Storage::open_file`, which never follows a symlink) and keeps at most
//! its share of the session's descriptor budget. A file in use by an
//! operation in flight is held by that operation (`Arc<File>`), so closing
//! it here never pulls a descriptor from under the kernel.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use crate::storage::{FileMode, Storage};
use crate::torrent::TorrentId;

type Key = (TorrentId, usize, FileMode);

pub struct FileCache {
    open: HashMap<Key, (Arc<File>, u64)>,
    max: usize,
    clock: u64,
}

impl FileCache {
    /// A cache of at most `max` open files.
    pub fn new(max: usize) -> FileCache {
        FileCache {
            open: HashMap::new(),
            max: max.max(1),
            clock: 0,
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }

    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// File `i` of torrent `t`, opened for `mode` if it is not open yet.
    pub fn get(
        &mut self,
        t: TorrentId,
        i: usize,
        mode: FileMode,
        storage: &Storage,
    ) -> std::io::Result<Arc<File>> {
        self.clock += 1;
        if let Some((f, used)) = self.open.get_mut(&(t, i, mode)) {
            *used = self.clock;
            return Ok(f.clone());
        }
        let f = Arc::new(storage.open_file(i, mode)?);
        if mode == FileMode::Read {
            // Uploads read whole units and read ahead within a piece
            // themselves (`torrent::shard::upload`): the kernel's
            // readahead would run past the piece's end into data nobody
            // asked for, which on a cold disk costs reads that are needed
            // (perf/RESULTS.md, run 16). Advice is no error to miss.
            let _ = rustix::fs::fadvise(&*f, 0, None, rustix::fs::Advice::Random);
        }
        if self.open.len() >= self.max
            && let Some(oldest) = self
                .open
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
        {
            self.open.remove(&oldest);
        }
        self.open.insert((t, i, mode), (f.clone(), self.clock));
        Ok(f)
    }

    /// Closes every file of torrent `t` (removed, or its files changed).
    pub fn forget(&mut self, t: TorrentId) {
        self.open.retain(|(tt, _, _), _| *tt != t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileAttr, FileEntry, Info};
    use crate::storage::OpenMode;

    #[test]
    fn holds_at_most_its_bound_and_reopens_on_demand() {
        let tmp = tempfile::tempdir().unwrap();
        let files: Vec<FileEntry> = (0..5)
            .map(|i| FileEntry {
                path: vec!["top".into(), format!("f{i}")],
                length: 10,
                offset: i * 10,
                attr: FileAttr::default(),
            })
            .collect();
        let info = Info {
            name: "top".into(),
            piece_length: 16384,
            pieces: vec![[0; 20]],
            pieces_v2: Vec::new(),
            v2_layers: Vec::new(),
            files,
            private: false,
            multi_file: true,
            total_length: 50,
        };
        let s = Storage::open(&info, tmp.path(), OpenMode::Fetch).unwrap();
        let mut c = FileCache::new(2);
        let t = TorrentId(1);
        let a = c.get(t, 0, FileMode::Write, &s).unwrap();
        c.get(t, 1, FileMode::Write, &s).unwrap();
        c.get(t, 2, FileMode::Write, &s).unwrap();
        assert_eq!(c.len(), 2, "bounded");
        // File 0 was evicted from the cache, but an operation holding it
        // keeps its descriptor valid.
        use std::os::unix::fs::FileExt;
        a.write_all_at(b"still open", 0).unwrap();
        assert!(
            c.get(t, 0, FileMode::Write, &s).is_ok(),
            "reopened on demand"
        );
        c.forget(t);
        assert!(c.is_empty());
    }
}
