//! Saves resume state while a download runs: every `interval` in which
//! pieces were completed, and once more at the end. The bitfield is read
//! *before* the files are flushed, so every piece it claims was written
//! before the flush and is on stable storage when the state names it.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::resume::{ResumeState, store};
use crate::storage::Storage;
use crate::torrent::Shared;

pub struct Saver {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

pub struct SaveTarget {
    pub path: PathBuf,
    /// The payload root as recorded in the state.
    pub root: PathBuf,
}

impl SaveTarget {
    /// Writes a state claiming `have`, with the files as they are now. The
    /// caller makes sure those pieces are on stable storage first.
    pub fn write(
        &self,
        shared: &Shared,
        storage: &Storage,
        have: crate::bitfield::Bitfield,
    ) -> Result<(), store::StoreError> {
        let state = ResumeState {
            info_hash: shared.info_hash,
            root: self.root.clone(),
            have,
            files: storage.stamps(),
        };
        store::save(&self.path, &state)
    }
}

impl Saver {
    pub fn spawn(
        target: SaveTarget,
        shared: Arc<Shared>,
        storage: Arc<Storage>,
        interval: Duration,
    ) -> std::io::Result<Saver> {
        let (stop, rx) = channel();
        let thread = std::thread::Builder::new()
            .name("resume".into())
            .spawn(move || run(&target, &shared, &storage, interval, &rx))?;
        Ok(Saver { stop, thread })
    }

    /// Saves one last time (call once the shards have stopped writing).
    pub fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn run(
    target: &SaveTarget,
    shared: &Shared,
    storage: &Storage,
    interval: Duration,
    stop: &Receiver<()>,
) {
    let mut saved = None;
    loop {
        let last = match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => false,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => true,
        };
        let have = shared.have.snapshot();
        if saved != Some(have.count_ones()) {
            if !storage.still_in_place() {
                shared.fail(format!(
                    "{} was removed while downloading into it",
                    storage.root().display()
                ));
                return;
            }
            let count = have.count_ones();
            match save(target, shared, storage, have) {
                Ok(()) => saved = Some(count),
                Err(e) => log::warn!("{}", crate::error_chain(&e)),
            }
        }
        if last {
            return;
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum SaveError {
    #[error("cannot flush the payload before saving resume state")]
    Sync(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
}

fn save(
    target: &SaveTarget,
    shared: &Shared,
    storage: &Storage,
    have: crate::bitfield::Bitfield,
) -> Result<(), SaveError> {
    storage.sync()?;
    target.write(shared, storage, have)?;
    Ok(())
}
