//! Saves resume state while downloads run, on a thread of its own (a save
//! flushes the payload, which can take a while on a slow disk).
//!
//! The coordinator takes the bitfield of verified, written pieces *before*
//! the files are flushed: every piece it claims was written before the
//! flush, so it is on stable storage when the state names it.
//!
//! Between saves, each piece written is appended to the state's journal
//! (no fsync): a process killed at any moment leaves it behind, and the
//! next start checks just those pieces instead of fetching them again. A
//! save empties the journal once the state covers it.

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
    /// The torrent's last save: tell the coordinator when it is done.
    last: bool,
}

impl Job {
    fn new(torrent: TorrentId, target: SaveTarget, storage: Arc<Storage>, have: Bitfield) -> Self {
        Job {
            torrent,
            target,
            storage,
            have,
            last: false,
        }
    }
}

enum Msg {
    Save(Job),
    /// A piece written since the last save.
    Journal(PathBuf, u32),
}

pub struct Saver {
    tx: Option<Sender<Msg>>,
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
        self.send(Msg::Save(Job::new(torrent, target, storage, have)));
    }

    /// The last save of a removed torrent; `CoordMsg::Saved` follows it.
    pub fn save_last(
        &self,
        torrent: TorrentId,
        target: SaveTarget,
        storage: Arc<Storage>,
        have: Bitfield,
    ) {
        let job = Job::new(torrent, target, storage, have);
        self.send(Msg::Save(Job { last: true, ..job }));
    }

    /// Notes that `piece` of the torrent saving to `target` is written.
    pub fn journal(&self, target: &SaveTarget, piece: u32) {
        self.send(Msg::Journal(target.path.clone(), piece));
    }

    fn send(&self, msg: Msg) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(msg);
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

fn run(rx: &Receiver<Msg>, coordinator: &Sender<CoordMsg>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(m) = rx.try_recv() {
            batch.push(m);
        }
        // Only the newest save of each torrent is made, where it stands in
        // the queue: the journal entries before it are in its bitfield.
        let mut newest: HashMap<TorrentId, usize> = HashMap::new();
        for (i, m) in batch.iter().enumerate() {
            if let Msg::Save(j) = m {
                newest.insert(j.torrent, i);
            }
        }
        let mut journal: HashMap<PathBuf, Vec<u32>> = HashMap::new();
        for (i, m) in batch.into_iter().enumerate() {
            match m {
                Msg::Journal(path, piece) => journal.entry(path).or_default().push(piece),
                Msg::Save(job) => {
                    let t = job.torrent;
                    if newest.get(&t) == Some(&i) {
                        let last = job.last;
                        // Entries before the save are in it; later ones go
                        // to the journal the save starts afresh.
                        journal.remove(&job.target.path);
                        save(t, job, coordinator);
                        if last {
                            let _ = coordinator.send(CoordMsg::Saved(t));
                        }
                    }
                }
            }
        }
        for (path, pieces) in journal {
            if let Err(e) = store::append_journal(&path, &pieces) {
                log::warn!("cannot journal pieces for {}: {e}", path.display());
            }
        }
    }
}

fn save(t: TorrentId, job: Job, coordinator: &Sender<CoordMsg>) {
    if !job.storage.still_in_place() {
        let why = format!(
            "{} was removed while downloading into it",
            job.storage.root().display()
        );
        log::error!("{why}");
        let _ = coordinator.send(CoordMsg::SaveFailed(t, why));
        return;
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
    match r {
        Ok(()) => store::clear_journal(&job.target.path),
        Err(e) => log::warn!("cannot save resume state: {e}"),
    }
}
