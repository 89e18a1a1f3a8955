//! A shard's mailbox: messages from the coordinator and the hashing pool,
//! and an eventfd that wakes the shard's ring when mail arrives.

use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex};

use crate::buffer::PieceBuf;
use crate::endpoint::ShardCommand;
use crate::storage::Storage;
use crate::torrent::{TorrentCtx, TorrentId};

/// What a shard's driver receives.
#[derive(Debug)]
pub enum Inbound {
    /// Where a torrent's files are (sent before its `ShardCommand::Add`).
    Storage(Arc<TorrentCtx>, Arc<Storage>),
    /// A removed torrent is gone: close its files.
    Forget(TorrentId),
    /// The listening socket listens now: accept on it.
    Listen,
    Command(ShardCommand),
    /// A hash job finished.
    Hashed {
        torrent: TorrentId,
        piece: u32,
        buf: PieceBuf,
        ok: bool,
    },
}

pub struct Inbox {
    queue: Mutex<Vec<Inbound>>,
    eventfd: OwnedFd,
}

impl Inbox {
    pub fn new() -> std::io::Result<Inbox> {
        let eventfd = rustix::event::eventfd(
            0,
            rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
        )?;
        Ok(Inbox {
            queue: Mutex::new(Vec::new()),
            eventfd,
        })
    }

    pub fn eventfd(&self) -> &OwnedFd {
        &self.eventfd
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Inbound>> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues messages and wakes the shard once if its queue was empty.
    pub fn post_all(&self, msgs: impl IntoIterator<Item = Inbound>) {
        let was_empty = {
            let mut q = self.lock();
            let before = q.len();
            q.extend(msgs);
            before == 0 && !q.is_empty()
        };
        if was_empty {
            let _ = rustix::io::write(&self.eventfd, &1u64.to_ne_bytes());
        }
    }

    pub fn post(&self, msg: Inbound) {
        self.post_all([msg]);
    }

    pub fn drain(&self) -> Vec<Inbound> {
        std::mem::take(&mut *self.lock())
    }
}
