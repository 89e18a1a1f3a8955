//! State shared by the shards of one torrent.
//!
//! Shards touch it at piece granularity (picking a piece, completing one) or
//! less often (a choker round each 10 s, a new connection), never per block:
//! block-level state lives in the shard that downloads the piece.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use super::ConnId;
use super::config::TorrentConfig;
use super::registry::Registry;
use super::smart_ban::SmartBan;
use super::stats::Stats;
use crate::bitfield::{AtomicBitfield, Bitfield};
use crate::buffer::{BufPool, PieceBuf};
use crate::choker::{Candidate, Choker, PeerKey};
use crate::metainfo::{Info, InfoHash};
use crate::picker::Picker;
use crate::wire::PeerId;

/// A message to a shard from another thread.
#[derive(Debug)]
pub enum ShardMsg {
    /// Dial this peer.
    Connect(SocketAddr),
    /// Take over a connection accepted on another shard.
    Adopt(OwnedFd, SocketAddr),
    /// A piece was verified and written (by any shard).
    Have(u32),
    /// Choker decision made at `decided`: the peers of this shard to have
    /// unchoked. Peers unchoked after `decided` keep their slot until the
    /// next round.
    Unchoke { keep: Vec<ConnId>, decided: Instant },
    /// A hash job finished (when hashing runs off the shard).
    Hashed {
        piece: u32,
        buf: crate::buffer::PieceBuf,
        ok: bool,
    },
    /// This peer was banned: drop its connections.
    Ban(super::registry::PeerIdent),
    /// Another shard kept a newer connection to the same peer: close this one.
    CloseDuplicate(ConnId),
    /// Close the incoming connection from this address, chosen because it had
    /// not completed its handshake: a newer one needs its place.
    Displace(SocketAddr),
    /// Close every connection and stop.
    Shutdown,
}

/// Something the torrent tells the thread that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TorrentEvent {
    /// Every piece is verified and written.
    Complete,
    /// The download cannot go on (a disk error, say).
    Fatal(String),
}

/// A shard's mailbox: a queue and a way to wake the shard's event loop.
pub struct Inbox {
    queue: Mutex<Vec<ShardMsg>>,
    waker: Box<dyn Fn() + Send + Sync>,
}

impl Inbox {
    pub fn new(waker: Box<dyn Fn() + Send + Sync>) -> Inbox {
        Inbox {
            queue: Mutex::new(Vec::new()),
            waker,
        }
    }

    pub fn post(&self, msg: ShardMsg) {
        let was_empty = {
            let mut q = lock(&self.queue);
            q.push(msg);
            q.len() == 1
        };
        if was_empty {
            (self.waker)();
        }
    }

    pub fn drain(&self) -> Vec<ShardMsg> {
        std::mem::take(&mut *lock(&self.queue))
    }
}

/// Locks a mutex, recovering the data if another thread panicked holding it:
/// the structures behind these locks stay consistent between operations.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The choker's view across shards.
pub struct ChokeBoard {
    pub choker: Choker,
    /// Latest candidates published by each shard.
    pub candidates: HashMap<PeerKey, Candidate>,
    pub next_round: Instant,
}

pub struct Shared {
    pub info: Arc<Info>,
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub config: TorrentConfig,
    pub listen_port: AtomicU64,
    pub have: AtomicBitfield,
    pub picker: Mutex<Picker>,
    pub registry: Mutex<Registry>,
    /// Failed pieces with several contributors, until a good copy names the liar.
    pub smart_ban: Mutex<SmartBan>,
    pub choke: Mutex<ChokeBoard>,
    /// Peers unchoked right now, across shards.
    pub unchoked: AtomicUsize,
    pub stats: Stats,
    /// Bytes of piece buffers in use, all shards together.
    pub buffers_used: AtomicU64,
    /// Most bytes of piece buffers in use at once.
    pub buffer_budget: u64,
    /// Download buffers not in use. Buffers are only allocated while the
    /// budget has room and are reused after, so memory stays within the
    /// budget (plus one piece per shard) however long the torrent.
    pool: Arc<BufPool>,
    /// Buffers for pieces read to serve uploads (bounded by the read caches).
    pub read_pool: Arc<BufPool>,
    pub inboxes: Vec<Inbox>,
    events: Mutex<Option<std::sync::mpsc::Sender<TorrentEvent>>>,
    completed: AtomicBool,
    pub fatal: Mutex<Option<String>>,
}

impl Shared {
    pub fn new(
        info: Arc<Info>,
        info_hash: InfoHash,
        have: &Bitfield,
        config: TorrentConfig,
        inboxes: Vec<Inbox>,
        events: std::sync::mpsc::Sender<TorrentEvent>,
    ) -> Shared {
        let shards = inboxes.len();
        Shared {
            info_hash,
            peer_id: PeerId::generate(),
            have: AtomicBitfield::new(have),
            picker: Mutex::new(Picker::new(have)),
            registry: Mutex::new(Registry::new(
                shards,
                config.max_connections,
                config.max_per_ip,
            )),
            smart_ban: Mutex::new(SmartBan::default()),
            choke: Mutex::new(ChokeBoard {
                choker: Choker::new(config.choker),
                candidates: HashMap::new(),
                next_round: Instant::now() + config.rechoke_interval,
            }),
            unchoked: AtomicUsize::new(0),
            stats: Stats::default(),
            buffers_used: AtomicU64::new(0),
            buffer_budget: config.budget(info.piece_length),
            // One block of slack lets the driver shift a piece into
            // alignment with its file for a direct write. Spare buffers
            // are bounded by the budget, not by the pool.
            pool: BufPool::new(
                info.piece_length as usize + crate::buffer::ALIGN,
                usize::MAX,
            ),
            read_pool: {
                let unit = u64::from(info.piece_length.clamp(1, super::cache::READ_UNIT));
                BufPool::new(
                    unit as usize,
                    (config.read_cache / unit) as usize * shards + shards,
                )
            },
            listen_port: AtomicU64::new(0),
            completed: AtomicBool::new(have.is_full()),
            inboxes,
            events: Mutex::new(Some(events)),
            fatal: Mutex::new(None),
            info,
            config,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.have.is_full()
    }

    pub fn left(&self) -> u64 {
        let info = &self.info;
        let have = self.have.count_ones();
        if have == info.piece_count() {
            return 0;
        }
        // Close enough for trackers: the last piece may be short.
        u64::from(info.piece_count() - have) * u64::from(info.piece_length)
    }

    pub fn broadcast(&self, msg: impl Fn() -> ShardMsg) {
        for inbox in &self.inboxes {
            inbox.post(msg());
        }
    }

    /// Records a verified, written piece; returns false if some shard had
    /// already completed it (an endgame duplicate).
    pub fn piece_done(&self, piece: u32) -> bool {
        if !lock(&self.picker).complete(piece) {
            return false;
        }
        self.have.set(piece);
        Stats::add(&self.stats.pieces_verified, 1);
        if self.have.is_full() && !self.completed.swap(true, Ordering::AcqRel) {
            self.emit(TorrentEvent::Complete);
        }
        true
    }

    pub fn fail(&self, why: String) {
        log::error!("{why}");
        lock(&self.fatal).get_or_insert(why.clone());
        self.emit(TorrentEvent::Fatal(why));
    }

    fn emit(&self, ev: TorrentEvent) {
        if let Some(tx) = lock(&self.events).as_ref() {
            let _ = tx.send(ev);
        }
    }

    /// Reserves `bytes` of piece buffer memory. A shard holding no buffer may
    /// always take one, so every shard can make progress.
    pub fn reserve_buffer(&self, bytes: u64, shard_holds_none: bool) -> bool {
        let max = self.buffer_budget;
        let mut cur = self.buffers_used.load(Ordering::Relaxed);
        loop {
            if cur + bytes > max && !shard_holds_none {
                return false;
            }
            match self.buffers_used.compare_exchange_weak(
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

    pub fn release_buffer(&self, bytes: u64) {
        self.buffers_used.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// A piece buffer (capacity one piece), reused if one is spare. Call only
    /// with a reservation from `reserve_buffer` in hand.
    pub fn take_buffer(&self) -> PieceBuf {
        self.pool.take(0)
    }

    pub fn return_buffer(&self, buf: PieceBuf) {
        self.pool.put(buf);
    }
}
