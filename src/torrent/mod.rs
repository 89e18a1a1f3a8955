//! One torrent's logic, as each shard runs it, without I/O.
//!
//! A [`Shard`] owns the connections its event loop owns and the pieces it is
//! assembling. The driver feeds it what happened (bytes received, a send or a
//! disk operation done, a tick of the clock) and carries out the
//! [`Action`]s it asks for. Shards of one torrent meet in [`Shared`], at piece
//! granularity or coarser.

mod cache;
pub mod config;
mod download;
pub mod registry;
mod send_queue;
mod shard;
pub mod shared;
mod smart_ban;
pub mod stats;

pub use config::TorrentConfig;
pub use send_queue::SendQueue;
pub use shard::{Action, ReadKey, Shard};
pub use shared::{Inbox, ShardMsg, Shared, TorrentEvent};

/// A connection on a shard: a slot and the slot's generation, so that a late
/// completion for a closed connection never reaches the next one in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

impl ConnId {
    /// The choker's key for this connection on `shard`.
    pub fn key(&self, shard: usize) -> crate::choker::PeerKey {
        ((shard as u64) << 56)
            | ((u64::from(self.generation) & 0xff_ffff) << 32)
            | u64::from(self.slot)
    }
}
