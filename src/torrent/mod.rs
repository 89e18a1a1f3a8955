//! One torrent's logic on one shard, without I/O.
//!
//! A [`TorrentShard`] owns the connections of one torrent that live on one
//! shard's event loop, and the pieces that shard is assembling. Its shard's
//! [`Endpoint`](crate::endpoint::Endpoint) feeds it what happened (bytes
//! received, a send or a disk operation done, the time) and carries out the
//! [`Action`]s it asks for. What other shards or the session must know
//! leaves as an [`Event`] for the session's coordinator; what they decide
//! comes back as a [`Command`]. No lock is taken and no clock is read here.

mod cache;
pub mod config;
mod download;
pub mod limits;
pub mod registry;
mod send_queue;
mod shard;
pub mod smart_ban;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub use cache::{READ_UNIT, ReadKey};
pub use config::TorrentConfig;
pub use registry::PeerIdent;
pub use send_queue::SendQueue;
pub use shard::TorrentShard;

use crate::bitfield::Bitfield;
use crate::buffer::{BufPool, PieceBuf};
use crate::choker::Candidate;
use crate::metainfo::{Info, InfoHash};
use crate::peer::PeerError;
use crate::wire::PeerId;
use smart_ban::BlockRecord;

/// A torrent in a session. Never reused while the process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TorrentId(pub u32);

impl std::fmt::Display for TorrentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A connection on a shard: a slot and the slot's generation, so that a late
/// completion for a closed connection never reaches the next one in its slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub slot: u32,
    pub generation: u32,
}

/// A connection anywhere in the session: its shard and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ShardConn {
    pub shard: usize,
    pub conn: ConnId,
}

impl ShardConn {
    /// The choker's key for this connection.
    pub fn key(&self) -> crate::choker::PeerKey {
        ((self.shard as u64) << 56)
            | ((u64::from(self.conn.generation) & 0xff_ffff) << 32)
            | u64::from(self.conn.slot)
    }

    pub fn from_key(key: crate::choker::PeerKey) -> ShardConn {
        ShardConn {
            shard: (key >> 56) as usize,
            conn: ConnId {
                slot: key as u32,
                generation: ((key >> 32) & 0xff_ffff) as u32,
            },
        }
    }
}

/// Memory for piece buffers, shared by every torrent and shard of a
/// session. Taken once per piece (never per block).
#[derive(Debug)]
pub struct Budget {
    used: AtomicU64,
    max: AtomicU64,
}

impl Budget {
    pub fn new(max: u64) -> Budget {
        Budget {
            used: AtomicU64::new(0),
            max: AtomicU64::new(max),
        }
    }

    /// Raises the limit to `bytes` if it is lower (a torrent of large pieces
    /// needs room for a few at once).
    pub fn ensure_at_least(&self, bytes: u64) {
        self.max.fetch_max(bytes, Ordering::AcqRel);
    }

    /// Reserves `bytes`; `force` takes them even past the limit (a shard
    /// holding no buffer of a torrent may always take one, so every
    /// download makes progress).
    pub fn reserve(&self, bytes: u64, force: bool) -> bool {
        let max = self.max();
        let mut cur = self.used.load(Ordering::Relaxed);
        loop {
            if cur + bytes > max && !force {
                return false;
            }
            match self.used.compare_exchange_weak(
                cur,
                cur + bytes,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => cur = now,
            }
        }
    }

    pub fn release(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Whether `bytes` more would fit now (no reservation).
    pub fn has_room(&self, bytes: u64) -> bool {
        self.used.load(Ordering::Relaxed) + bytes <= self.max()
    }

    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }
}

/// What the shards of one torrent share: fixed when the torrent is added.
#[derive(Debug)]
pub struct TorrentCtx {
    pub id: TorrentId,
    pub info: Arc<Info>,
    pub info_hash: InfoHash,
    /// A hybrid torrent's other name: its v2 info-hash cut to 20 bytes
    /// (BEP 52). Peers of its v2 swarm are accepted under it.
    pub info_hash_v2: Option<InfoHash>,
    /// Ours, the same for every torrent of the session.
    pub peer_id: PeerId,
    pub config: TorrentConfig,
    /// The port we accept peers on (0: unknown), for the BEP 10 handshake.
    pub listen_port: u16,
    /// Piece buffers, session-wide.
    pub budget: Arc<Budget>,
    /// Buffers for read units of this torrent's pieces (uploads), returned
    /// when the sends that use them complete.
    pub read_pool: Arc<BufPool>,
    /// The pieces to download (`None`: all). Pieces only of unwanted files
    /// are neither asked for nor needed to be done.
    pub wanted: Option<Arc<Bitfield>>,
    /// The `info` dictionary as peers get it (BEP 9); `None` for a private
    /// torrent, which offers neither its metadata nor peer exchange.
    pub metadata: Option<Arc<[u8]>>,
    /// Our DHT node's UDP port, told to peers that have a DHT (0: none,
    /// or a private torrent).
    pub dht_port: u16,
}

impl TorrentCtx {
    /// The names peers may greet this torrent by.
    pub fn info_hashes(&self) -> impl Iterator<Item = InfoHash> + '_ {
        std::iter::once(self.info_hash).chain(self.info_hash_v2)
    }

    /// Whether we offer and take part in peer exchange with this torrent's
    /// peers.
    pub fn pex(&self) -> bool {
        self.metadata.is_some() && self.config.pex
    }

    /// Whether `have` holds every wanted piece.
    pub fn done(&self, have: &Bitfield) -> bool {
        match &self.wanted {
            None => have.is_full(),
            Some(w) => have.contains(w),
        }
    }

    /// Whether a peer with `pieces` has a wanted piece `have` lacks.
    pub fn wants_from(&self, have: &Bitfield, pieces: crate::picker::PeerPieces<'_>) -> bool {
        match (pieces, &self.wanted) {
            (crate::picker::PeerPieces::All, _) => !self.done(have),
            (crate::picker::PeerPieces::Some(b), None) => have.lacks_any_of(b),
            (crate::picker::PeerPieces::Some(b), Some(w)) => have.lacks_any_of_masked(b, w),
        }
    }

    /// Whether piece `p` is wanted.
    pub fn wants(&self, p: u32) -> bool {
        self.wanted.as_ref().is_none_or(|w| w.get(p))
    }
    /// Bytes one download reserves from the budget.
    pub fn piece_reservation(&self) -> u64 {
        u64::from(self.info.piece_length)
    }
}

/// What a shard asks its driver to do.
#[derive(Debug)]
pub enum Action {
    /// Open a TCP connection; report with `handle_connected` or
    /// `handle_connect_failed`.
    Connect {
        torrent: TorrentId,
        conn: ConnId,
        addr: SocketAddr,
    },
    /// Close the socket. The shard has forgotten the connection already.
    Close { conn: ConnId },
    /// Get `len` bytes of piece `key.piece` from `begin` (a read unit) to
    /// upload: read them into a buffer from the torrent's read pool and
    /// report with `handle_read`, or hand over the bytes otherwise (a
    /// mapping) with `handle_unit`.
    Read {
        torrent: TorrentId,
        key: ReadKey,
        begin: u32,
        len: u32,
    },
    /// Verify `buf` against piece `piece`'s hash; report with `handle_hashed`.
    Hash {
        torrent: TorrentId,
        piece: u32,
        buf: PieceBuf,
    },
    /// Write the verified piece; report with `handle_written`.
    Write {
        torrent: TorrentId,
        piece: u32,
        buf: PieceBuf,
    },
}

/// Why a file operation failed, typed so that the logic can tell a full
/// disk from a dead one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DiskError {
    #[error("{}", std::io::Error::from_raw_os_error(*.0))]
    Os(i32),
    #[error("file is shorter than the torrent says")]
    Short,
    #[error("file is not available")]
    Missing,
    #[error("the download directory was removed")]
    Removed,
}

impl DiskError {
    pub fn from_io(e: &std::io::Error) -> DiskError {
        e.raw_os_error()
            .map_or(DiskError::Os(libc::EIO), DiskError::Os)
    }

    /// Whether the disk is full (the download cannot go on until space is freed).
    pub fn is_no_space(&self) -> bool {
        matches!(self, DiskError::Os(e) if *e == libc::ENOSPC || *e == libc::EDQUOT)
    }
}

/// A change to what a connected peer has, for the piece picker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// A peer with every piece arrived or left.
    Seed { joined: bool },
    /// A peer with these pieces arrived or left.
    Pieces { joined: bool, pieces: Bitfield },
    /// A peer announced one piece.
    Have(u32),
}

/// What a peer has, as a request for pieces to download from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    All,
    Some(Bitfield),
}

/// What a torrent's shard tells the session's coordinator. All of it is
/// about pieces, connections or seconds: nothing per block.
#[derive(Debug)]
pub enum Event {
    /// A connection is up (outgoing: dialled from `local`).
    Connected {
        torrent: TorrentId,
        conn: ShardConn,
        addr: SocketAddr,
        local: Option<SocketAddr>,
    },
    /// A dial failed; the address may be retried later.
    DialFailed {
        torrent: TorrentId,
        addr: SocketAddr,
    },
    /// The peer said who it is.
    Handshaken {
        torrent: TorrentId,
        conn: ShardConn,
        addr: SocketAddr,
        outgoing: bool,
        peer_id: PeerId,
    },
    /// A connection reached ourselves: `addr` (dialled, or dialled from,
    /// when `outgoing` is false) is our own.
    IsUs {
        torrent: TorrentId,
        addr: SocketAddr,
        outgoing: bool,
    },
    Disconnected {
        torrent: TorrentId,
        conn: ShardConn,
        addr: SocketAddr,
        outgoing: bool,
        peer_id: Option<PeerId>,
        why: PeerError,
    },
    Availability {
        torrent: TorrentId,
        change: Availability,
    },
    /// Pieces to download from a peer that has `offer` (`endgame`: pieces
    /// other shards are downloading may be given too).
    WantPieces {
        torrent: TorrentId,
        shard: usize,
        offer: Offer,
        count: u32,
        endgame: bool,
    },
    /// Leased pieces this shard gives back unfinished.
    ReturnPieces {
        torrent: TorrentId,
        pieces: Vec<u32>,
    },
    /// A piece passed its hash check and is written.
    PieceDone { torrent: TorrentId, piece: u32 },
    /// A peer's DHT node (its `port` message).
    DhtNode {
        torrent: TorrentId,
        addr: SocketAddr,
    },
    /// Peers a peer told us of (BEP 11).
    Exchanged {
        torrent: TorrentId,
        peers: Vec<SocketAddr>,
    },
    /// A piece failed its hash check: who sent each of its blocks.
    HashFailed {
        torrent: TorrentId,
        piece: u32,
        contributors: Vec<PeerIdent>,
        record: BlockRecord,
    },
    /// A piece fetched from one peer after an earlier failure passed: its
    /// block digests settle who sent the bad blocks.
    SuspectPassed {
        torrent: TorrentId,
        piece: u32,
        digests: Vec<[u8; 20]>,
    },
    /// This second's peers of a torrent on a shard (the choker's
    /// candidates, and what `torrent-get` shows of each peer).
    Peers {
        torrent: TorrentId,
        shard: usize,
        peers: Vec<PeerInfo>,
    },
    /// Counters since the last report.
    Stats {
        torrent: TorrentId,
        shard: usize,
        delta: Box<ShardStats>,
    },
    /// The torrent cannot go on (a write failed).
    Fatal {
        torrent: TorrentId,
        piece: u32,
        error: DiskError,
    },
}

impl Event {
    /// The torrent the event is about.
    pub fn torrent(&self) -> TorrentId {
        match self {
            Event::Connected { torrent, .. }
            | Event::DialFailed { torrent, .. }
            | Event::Handshaken { torrent, .. }
            | Event::IsUs { torrent, .. }
            | Event::Disconnected { torrent, .. }
            | Event::Availability { torrent, .. }
            | Event::WantPieces { torrent, .. }
            | Event::ReturnPieces { torrent, .. }
            | Event::PieceDone { torrent, .. }
            | Event::Exchanged { torrent, .. }
            | Event::DhtNode { torrent, .. }
            | Event::HashFailed { torrent, .. }
            | Event::SuspectPassed { torrent, .. }
            | Event::Peers { torrent, .. }
            | Event::Stats { torrent, .. }
            | Event::Fatal { torrent, .. } => *torrent,
        }
    }
}

/// A connected peer, as the coordinator (and `torrent-get`) sees it.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub addr: SocketAddr,
    pub incoming: bool,
    /// From its BEP 10 handshake.
    pub client: String,
    pub candidate: Candidate,
    /// We choke it / are interested in it / it chokes us.
    pub am_choking: bool,
    pub am_interested: bool,
    pub peer_choking: bool,
    /// Fraction of the pieces it has.
    pub progress: f32,
    /// Where it accepts connections (dialled, or the port of its
    /// extension handshake), for peer exchange.
    pub listen: Option<SocketAddr>,
}

/// What the coordinator tells a torrent on a shard.
#[derive(Debug)]
pub enum Command {
    /// Dial this peer.
    Connect(SocketAddr),
    /// Pieces leased to this shard to download (`endgame`: no piece is left
    /// that nobody is downloading).
    Lease { pieces: Vec<u32>, endgame: bool },
    /// A piece was verified and written by another shard.
    Have(u32),
    /// Choker decision made at `decided`: the peers of this shard to have
    /// unchoked, and how many more it may unchoke at once until the next
    /// decision. Peers unchoked after `decided` keep their slot until then.
    Unchoke {
        keep: Vec<ConnId>,
        decided: Instant,
        allowance: usize,
    },
    /// A hash job finished (when hashing runs off the shard).
    Hashed { piece: u32, buf: PieceBuf, ok: bool },
    /// This peer is banned: drop its connections here and refuse it.
    Ban(PeerIdent),
    /// Fetch this piece from one peer alone (an earlier copy failed).
    Suspect(u32),
    /// Close this connection (a duplicate of another to the same peer).
    Close(ConnId, PeerError),
    /// This shard's share of the torrent's rate limits, bytes per second.
    Rates { up: Option<u64>, down: Option<u64> },
    /// The torrent's peers, by listen address, for peer exchange.
    Pex(Arc<[(SocketAddr, u8)]>),
}

/// A histogram of block latencies in microseconds (1 µs to 60 s, two
/// significant digits: about 12 KiB).
/// A latency histogram, boxed: most torrents of a big session never make
/// one, and every shard keeps counters for every torrent.
pub type Latency = Option<Box<hdrhistogram::Histogram<u64>>>;

pub fn latency_histogram() -> Box<hdrhistogram::Histogram<u64>> {
    Box::new(
        hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 2).expect("valid histogram bounds"),
    )
}

/// Records `took` in a latency histogram made on first use.
pub fn record_latency(h: &mut Latency, took: std::time::Duration) {
    let micros = (took.as_micros() as u64).clamp(1, 60_000_000);
    let _ = h.get_or_insert_with(latency_histogram).record(micros);
}

/// Counters of one torrent on one shard since the last report: plain
/// numbers on the shard, folded into the session's totals once a second.
#[derive(Debug, Clone, Default)]
pub struct ShardStats {
    /// Payload bytes of requested blocks received.
    pub downloaded: u64,
    /// Payload bytes sent.
    pub uploaded: u64,
    /// Bytes received that we did not need (duplicates, unrequested).
    pub wasted: u64,
    /// Bytes written to disk after verification.
    pub written: u64,
    pub hash_failures: u64,
    /// Read units that could not be read from disk to serve a request.
    pub read_errors: u64,
    pub peers_seen: u64,
    /// Disconnects by reason (`PeerError::kind`).
    pub disconnects: Vec<(&'static str, u64)>,
    /// Disconnects that were protocol violations.
    pub protocol_errors: u64,
    pub connect_failures: u64,
    /// Addresses of banned peers' connections closed here.
    pub banned: Vec<SocketAddr>,
    /// Nanoseconds spent hashing on the shard (with no hashing threads).
    pub hash_nanos: u64,
    /// Block latency, request to arrival, microseconds.
    pub latency: Latency,
    /// Disk job latency, submission to completion, microseconds.
    pub disk_latency: Latency,
    /// Peers with a completed handshake right now (not a delta).
    pub peers: u64,
    /// Addresses learned by peer exchange.
    pub pex_received: u64,
    /// Peer exchange messages ignored for coming too soon after the last.
    pub pex_ignored: u64,
}

impl ShardStats {
    pub fn disconnected(&mut self, why: &PeerError) {
        if why.is_violation() {
            self.protocol_errors += 1;
        }
        let kind = why.kind();
        match self.disconnects.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, n)) => *n += 1,
            None => self.disconnects.push((kind, 1)),
        }
    }

    /// Whether anything happened worth reporting.
    pub fn is_empty(&self) -> bool {
        self.downloaded == 0
            && self.uploaded == 0
            && self.wasted == 0
            && self.written == 0
            && self.hash_failures == 0
            && self.read_errors == 0
            && self.peers_seen == 0
            && self.disconnects.is_empty()
            && self.connect_failures == 0
            && self.banned.is_empty()
            && self.hash_nanos == 0
            && self.pex_received == 0
            && self.pex_ignored == 0
            && self.latency.as_ref().is_none_or(|h| h.is_empty())
            && self.disk_latency.as_ref().is_none_or(|h| h.is_empty())
    }
}
