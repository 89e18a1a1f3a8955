//! The metadata exchange (BEP 9): fetching a torrent's `info` dictionary
//! from peers when all we have is its info-hash (a magnet link), and
//! serving ours to peers that ask.
//!
//! `message` is the `ut_metadata` codec, `exchange` the fetching side as a
//! state machine without I/O (which piece to ask whom, assembly, the hash
//! check and who to blame when it fails), `layers` the same for a v2
//! torrent's piece layers (BEP 52 hash requests), and `fetch` their driver:
//! a thread per peer connection, talking only the handshakes, `ut_metadata`
//! and hash requests.

mod exchange;
mod fetch;
mod layers;
mod message;
#[cfg(test)]
mod tests;

pub use exchange::{Exchange, Misbehaviour, Progress, Refusal};
pub use fetch::{FetchConfig, FetchError, Fetched, fetch};
pub use layers::{LayerMisbehaviour, LayerProgress, Layers};
pub use message::{MetadataMsg, MetadataMsgError};

/// Metadata travels in pieces of 16 KiB (the last one shorter).
pub const PIECE: usize = 16 * 1024;

/// The largest info dictionary we fetch. libtorrent's default
/// (`max_metadata_size`) is the same 30 MiB; a torrent of a million files
/// fits, and a peer cannot make us hold more than this for one magnet.
pub const MAX_SIZE: u64 = 30 * 1024 * 1024;

/// Pieces of metadata in `size` bytes.
pub fn piece_count(size: u64) -> u32 {
    size.div_ceil(PIECE as u64) as u32
}
