//! Saves resume state while downloads run, on a thread of its own (a save
//! flushes the payload, which can take a while on a slow disk).
//!
//! The coordinator takes the bitfield of verified, written pieces *before*
//! the files are flushed: every piece it claims was written before the
//! flush, so it is on stable storage when the state names it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use super::CoordMsg;
use crate::bitfield::Bitfield;
use crate::metainfo::InfoHash;
use crate::resume::{ResumeState, store};
use crate::storage::Storage;
use crate::torrent::TorrentId;

/// Where one torrent's state goes.
#[derive(Debug, Clone)]
pub struct SaveTarget {
    pub path: PathBuf,
    /// The payload root as recorded in the state.
    pub root: PathBuf,
    pub info_hash: InfoHash,
}

impl SaveTarget {
    /// Writes a state claiming `have`, with the files as they are now. The
    /// caller makes sure those pieces are on stable storage first.
    pub fn write(&self, storage: &Storage, have: Bitfield) -> Result<(), store::StoreError> {
        let state = ResumeState {
            info_hash: self.info_hash,
            root: self.root.clone(),
            have,
            files: storage.stamps(),
        };
        store::save(&self.path, &state)
    }
}

struct Job {
    torrent: TorrentId,
    target: SaveTarget,
    storage: Arc<Storage>,
    have: Bitfield,
}

pub struct Saver {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Saver {
    pub fn spawn(coordinator: Sender<CoordMsg>) -> std::io::Result<Saver> {
        let (tx, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("resume".into())
            .spawn(move || run(&rx, &coordinator))?;
        Ok(Saver {
            tx: Some(tx),
            thread: Some(thread),
        })
    }

    /// Saves `have` for a torrent (queued; a later save of the same torrent
    /// replaces an earlier one still waiting).
    pub fn save(
        &self,
        torrent: TorrentId,
        target: SaveTarget,
        storage: Arc<Storage>,
        have: Bitfield,
    ) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Job {
                torrent,
                target,
                storage,
                have,
            });
        }
    }

    /// Finishes the saves queued so far.
    pub fn finish(mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(rx: &Receiver<Job>, coordinator: &Sender<CoordMsg>) {
    while let Ok(first) = rx.recv() {
        // The newest job per torrent.
        let mut jobs: HashMap<TorrentId, Job> = HashMap::new();
        jobs.insert(first.torrent, first);
        while let Ok(j) = rx.try_recv() {
            jobs.insert(j.torrent, j);
        }
        for (t, job) in jobs {
            if !job.storage.still_in_place() {
                let why = format!(
                    "{} was removed while downloading into it",
                    job.storage.root().display()
                );
                log::error!("{why}");
                let _ = coordinator.send(CoordMsg::SaveFailed(t, why));
                continue;
            }
            let r = job
                .storage
                .sync()
                .map_err(|e| crate::error_chain(&e))
                .and_then(|()| {
                    job.target
                        .write(&job.storage, job.have)
                        .map_err(|e| crate::error_chain(&e))
                });
            if let Err(e) = r {
                log::warn!("cannot save resume state: {e}");
            }
        }
    }
}
