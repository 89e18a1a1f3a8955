//! One shard's endpoint: every connection on the shard's ring, without I/O.
//!
//! An incoming connection belongs to the endpoint until its handshake
//! arrives; the info-hash then routes it to the torrent it names (or the
//! connection is refused, counted by reason). Outgoing connections belong
//! to their torrent from the start. The endpoint also admits connections
//! (caps per shard and per IP address, displacing silent ones), keeps the
//! shard's timers (`poll_timeout`) and routes everything else (sends, disk
//! completions, commands) to the torrent concerned.
//!
//! A torrent whose metadata is not known yet (a magnet link, BEP 9) will
//! live here too, in a phase of its own: its connections are routed by
//! info-hash all the same.

mod admission;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

pub use admission::Admission;

use crate::bitfield::Bitfield;
use crate::buffer::{BufPool, PieceBuf};
use crate::metainfo::InfoHash;
use crate::peer::PeerError;
use crate::torrent::{
    Action, Command, ConnId, DiskError, Event, ReadKey, SendQueue, TorrentCtx, TorrentId,
    TorrentShard,
};
use crate::wire::{self, Decoder};

/// What the coordinator (or the hashing pool) tells a shard.
#[derive(Debug)]
pub enum ShardCommand {
    /// Carry this torrent, having `have`.
    Add(Arc<TorrentCtx>, Bitfield),
    /// Stop carrying this torrent: close its connections, return its pieces.
    Remove(TorrentId),
    /// A command for one torrent.
    Torrent(TorrentId, Command),
    /// Close every connection and stop.
    Shutdown,
}

/// What a shard tells the coordinator.
#[derive(Debug)]
pub enum ShardEvent {
    Torrent(Event),
    /// An incoming connection was turned away (`reason` as in the
    /// `disconnects` counters).
    Refused(&'static str),
    /// A removed torrent has let go of everything on this shard.
    Removed(TorrentId),
}

enum Phase {
    /// Incoming, waiting for the peer's handshake.
    Handshake {
        decoder: Box<Decoder>,
        since: Instant,
    },
    /// Owned by a torrent.
    Torrent(TorrentId),
}

struct Slot {
    generation: u32,
    /// The peer's address and the connection's phase, while it is open.
    conn: Option<(SocketAddr, Phase)>,
}

pub struct Endpoint {
    shard: usize,
    slots: Vec<Slot>,
    free: Vec<u32>,
    // Boxed: a B-tree keeps its values in half-full nodes, and a shard holds
    // one of these (about 1 KiB) for every torrent of the session.
    torrents: BTreeMap<TorrentId, Box<TorrentShard>>,
    by_hash: HashMap<InfoHash, TorrentId>,
    /// HASH('req2', info-hash) of each torrent: how an MSE dialler names
    /// the torrent it wants.
    by_req2: HashMap<[u8; 20], InfoHash>,
    /// Torrents being removed: they finish closing, then go.
    removing: HashSet<TorrentId>,
    /// Torrents touched since the last `drain`.
    touched: Vec<TorrentId>,
    touched_set: HashSet<TorrentId>,
    admission: Admission,
    /// Download buffers of this shard, for every torrent on it.
    buffers: Arc<BufPool>,
    actions: VecDeque<Action>,
    events: Vec<ShardEvent>,
    handshake_timeout: Duration,
    shutting_down: bool,
}

impl Endpoint {
    pub fn new(
        shard: usize,
        admission: Admission,
        buffers: Arc<BufPool>,
        handshake_timeout: Duration,
    ) -> Endpoint {
        Endpoint {
            shard,
            slots: Vec::new(),
            free: Vec::new(),
            torrents: BTreeMap::new(),
            by_hash: HashMap::new(),
            by_req2: HashMap::new(),
            removing: HashSet::new(),
            touched: Vec::new(),
            touched_set: HashSet::new(),
            admission,
            buffers,
            actions: VecDeque::new(),
            events: Vec::new(),
            handshake_timeout,
            shutting_down: false,
        }
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn torrent_count(&self) -> usize {
        self.torrents.len()
    }

    /// Peers unchoked on this shard, all torrents.
    pub fn unchoked_count(&self) -> usize {
        self.torrents.values().map(|t| t.unchoked_count()).sum()
    }

    pub fn connection_count(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_some()).count()
    }

    /// Whether nothing is left for the driver to finish (after shutdown).
    pub fn is_drained(&self) -> bool {
        self.actions.is_empty()
            && self.torrents.values().all(|t| t.is_drained())
            && self.connection_count() == 0
    }

    fn touch(&mut self, t: TorrentId) {
        if self.touched_set.insert(t) {
            self.touched.push(t);
        }
    }

    /// Moves what the touched torrents asked for into the caller's queues:
    /// actions for the driver, events for the coordinator, connections with
    /// bytes to send.
    pub fn drain(
        &mut self,
        actions: &mut VecDeque<Action>,
        events: &mut Vec<ShardEvent>,
        dirty: &mut Vec<ConnId>,
    ) {
        actions.append(&mut self.actions);
        events.append(&mut self.events);
        let mut tev = Vec::new();
        for t in std::mem::take(&mut self.touched) {
            self.touched_set.remove(&t);
            let Some(ts) = self.torrents.get_mut(&t) else {
                continue;
            };
            let mut closed = Vec::new();
            while let Some(a) = ts.poll_action() {
                if let Action::Close { conn } = a {
                    closed.push(conn);
                }
                actions.push_back(a);
            }
            ts.drain_events(&mut tev);
            ts.drain_dirty(dirty);
            let gone = self.removing.contains(&t) && ts.is_drained();
            for conn in closed {
                self.release(conn);
            }
            if gone {
                self.torrents.remove(&t);
                self.removing.remove(&t);
                events.push(ShardEvent::Removed(t));
            }
        }
        events.extend(tev.into_iter().map(ShardEvent::Torrent));
    }

    /// Frees a connection's slot (its socket is being closed).
    fn release(&mut self, id: ConnId) {
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        if slot.generation != id.generation {
            return;
        }
        if let Some((addr, phase)) = slot.conn.take() {
            self.admission
                .closed(id, addr, matches!(phase, Phase::Handshake { .. }));
            self.free.push(id.slot);
        }
    }

    fn allocate(&mut self, addr: SocketAddr, phase: Phase) -> ConnId {
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.slots.push(Slot {
                    generation: 0,
                    conn: None,
                });
                self.slots.len() as u32 - 1
            }
        };
        let s = &mut self.slots[slot as usize];
        // 24 bits, as in the choker's key.
        s.generation = (s.generation + 1) & 0xff_ffff;
        s.conn = Some((addr, phase));
        ConnId {
            slot,
            generation: s.generation,
        }
    }

    fn phase(&self, id: ConnId) -> Option<&Phase> {
        let s = self.slots.get(id.slot as usize)?;
        if s.generation != id.generation {
            return None;
        }
        s.conn.as_ref().map(|(_, p)| p)
    }

    /// The torrent that owns connection `id`, if one does.
    fn owner(&self, id: ConnId) -> Option<TorrentId> {
        match self.phase(id)? {
            Phase::Torrent(t) => Some(*t),
            Phase::Handshake { .. } => None,
        }
    }

    /// Runs `f` on the torrent owning connection `id`.
    fn with_owner(&mut self, id: ConnId, f: impl FnOnce(&mut TorrentShard)) {
        if let Some(t) = self.owner(id)
            && let Some(ts) = self.torrents.get_mut(&t)
        {
            f(ts);
            self.touch(t);
        }
    }

    fn with_torrent(&mut self, t: TorrentId, f: impl FnOnce(&mut TorrentShard)) {
        if let Some(ts) = self.torrents.get_mut(&t) {
            f(ts);
            self.touch(t);
        }
    }

    /// The outgoing bytes of connection `id`.
    /// The info-hash of the torrent owning connection `id`.
    pub fn info_hash_of(&self, id: ConnId) -> Option<InfoHash> {
        let t = self.owner(id)?;
        Some(self.torrents.get(&t)?.ctx().info_hash)
    }

    /// The torrent an MSE dialler names by HASH('req2', info-hash).
    pub fn torrent_for_req2(&self, req2: &[u8; 20]) -> Option<InfoHash> {
        self.by_req2.get(req2).copied()
    }

    pub fn send_queue(&mut self, id: ConnId) -> Option<&mut SendQueue> {
        let t = self.owner(id)?;
        self.torrents.get_mut(&t)?.send_queue(id)
    }

    /// Closes an endpoint-owned (still handshaking) connection.
    fn refuse(&mut self, id: ConnId, reason: &'static str) {
        self.release(id);
        self.actions.push_back(Action::Close { conn: id });
        self.events.push(ShardEvent::Refused(reason));
    }

    /// A command from the coordinator or the hashing pool.
    pub fn handle_command(&mut self, now: Instant, cmd: ShardCommand) {
        match cmd {
            ShardCommand::Add(ctx, have) => {
                let id = ctx.id;
                self.buffers.keep_at_least(ctx.budget.max() as usize);
                for hash in ctx.info_hashes() {
                    self.by_hash.insert(hash, id);
                    self.by_req2.insert(crate::mse::req2(&hash), hash);
                }
                let ts = TorrentShard::new(ctx, self.shard, have, self.buffers.clone(), now);
                self.torrents.insert(id, Box::new(ts));
            }
            ShardCommand::Remove(t) => {
                let Some(ts) = self.torrents.get_mut(&t) else {
                    self.events.push(ShardEvent::Removed(t));
                    return;
                };
                for hash in ts.ctx().info_hashes() {
                    self.by_hash.remove(&hash);
                    self.by_req2.remove(&crate::mse::req2(&hash));
                }
                ts.shutdown(now);
                ts.flush_stats();
                self.removing.insert(t);
                self.touch(t);
            }
            ShardCommand::Torrent(t, Command::Connect(addr)) => {
                if self.shutting_down || !self.torrents.contains_key(&t) {
                    self.events
                        .push(ShardEvent::Torrent(Event::DialFailed { torrent: t, addr }));
                    return;
                }
                let id = self.allocate(addr, Phase::Torrent(t));
                self.admission.opened(id, addr);
                self.with_torrent(t, |ts| ts.connect(now, id, addr));
            }
            ShardCommand::Torrent(t, cmd) => self.with_torrent(t, |ts| ts.handle_command(now, cmd)),
            ShardCommand::Shutdown => self.shutdown(now),
        }
    }

    /// A connection was accepted from `addr`: its id, or `None` to refuse it
    /// (at the caps with nothing to displace, or shutting down).
    pub fn handle_accepted(&mut self, now: Instant, addr: SocketAddr) -> Option<ConnId> {
        if self.shutting_down {
            return None;
        }
        let displace = match self.admission.admit(addr) {
            admission::Verdict::Admit => None,
            admission::Verdict::Displace(victim) => Some(victim),
            admission::Verdict::Refuse => {
                self.events.push(ShardEvent::Refused("refused"));
                return None;
            }
        };
        if let Some(victim) = displace {
            log::debug!("a connection never completed its handshake; making room for {addr}");
            self.refuse(victim, "too_many_connections");
        }
        let decoder = Box::new(Decoder::new(wire::Limits::for_pieces(0)));
        let id = self.allocate(
            addr,
            Phase::Handshake {
                decoder,
                since: now,
            },
        );
        self.admission.opened_incoming(id, addr);
        Some(id)
    }

    pub fn handle_connected(&mut self, now: Instant, id: ConnId, local: Option<SocketAddr>) {
        self.with_owner(id, |ts| ts.handle_connected(now, id, local));
    }

    pub fn handle_connect_failed(&mut self, now: Instant, id: ConnId, errno: i32) {
        self.with_owner(id, |ts| ts.handle_connect_failed(now, id, errno));
    }

    pub fn handle_closed(&mut self, now: Instant, id: ConnId, why: PeerError) {
        if self.owner(id).is_some() {
            self.with_owner(id, |ts| ts.handle_closed(now, id, why));
        } else if matches!(self.phase(id), Some(Phase::Handshake { .. })) {
            self.release(id);
            self.actions.push_back(Action::Close { conn: id });
        }
    }

    pub fn handle_sent(&mut self, now: Instant, id: ConnId, n: usize) {
        self.with_owner(id, |ts| ts.handle_sent(now, id, n));
    }

    /// Bytes arrived on a connection.
    pub fn handle_recv(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        if self.owner(id).is_some() {
            self.with_owner(id, |ts| ts.handle_recv(now, id, data));
            return;
        }
        // Still handshaking: read the handshake, then hand the connection
        // and the rest of the bytes to the torrent it names.
        let Some(slot) = self.slots.get_mut(id.slot as usize) else {
            return;
        };
        let Some((addr, Phase::Handshake { decoder, .. })) = slot.conn.as_mut() else {
            return;
        };
        let addr = *addr;
        let mut input = data;
        let hs = match decoder.decode(&mut input) {
            Ok(None) => return,
            Ok(Some(wire::Event::Handshake(h))) => h,
            Ok(Some(_)) => return self.refuse(id, "wire"),
            Err(e) => return self.refuse(id, PeerError::from(e).kind()),
        };
        let Some(&t) = self.by_hash.get(&hs.info_hash) else {
            log::debug!("{addr} asked for a torrent we do not have");
            return self.refuse(id, "wrong_info_hash");
        };
        let Some((_, Phase::Handshake { decoder, .. })) = self.slots[id.slot as usize]
            .conn
            .replace((addr, Phase::Torrent(t)))
        else {
            return;
        };
        self.admission.handshaken(id);
        self.with_torrent(t, |ts| {
            ts.attach(now, id, addr, *decoder, hs);
            if !input.is_empty() && ts.has_conn(id) {
                ts.handle_recv(now, id, input);
            }
        });
    }

    /// A read unit read for uploading finished.
    pub fn handle_read(
        &mut self,
        now: Instant,
        t: TorrentId,
        key: ReadKey,
        buf: PieceBuf,
        result: Result<(), DiskError>,
    ) {
        self.with_torrent(t, |ts| ts.handle_read(now, key, buf, result));
    }

    /// A read unit to upload is ready as shared bytes (a mapping), or not.
    pub fn handle_unit(
        &mut self,
        now: Instant,
        t: TorrentId,
        key: ReadKey,
        data: Result<Bytes, DiskError>,
    ) {
        self.with_torrent(t, |ts| ts.handle_unit(now, key, data));
    }

    /// A send from a mapped unit of torrent `t` faulted (a file shrank).
    pub fn handle_upload_fault(&mut self, t: TorrentId) {
        self.with_torrent(t, |ts| ts.handle_upload_fault());
    }

    pub fn handle_hashed(
        &mut self,
        now: Instant,
        t: TorrentId,
        piece: u32,
        buf: PieceBuf,
        ok: bool,
    ) {
        if self.torrents.contains_key(&t) {
            self.with_torrent(t, |ts| ts.handle_hashed(now, piece, buf, ok));
        } else {
            self.buffers.put(buf);
        }
    }

    /// A disk job of torrent `t` took `took` (for its latency figures).
    pub fn record_disk(&mut self, t: TorrentId, took: Duration) {
        if self.torrents.contains_key(&t) {
            self.with_torrent(t, |ts| ts.record_disk(took));
        }
    }

    pub fn handle_written(
        &mut self,
        now: Instant,
        t: TorrentId,
        piece: u32,
        buf: PieceBuf,
        result: Result<(), DiskError>,
    ) {
        if self.torrents.contains_key(&t) {
            self.with_torrent(t, |ts| ts.handle_written(now, piece, buf, result));
        } else {
            self.buffers.put(buf);
        }
    }

    /// When the endpoint next needs `handle_timeout`: the earliest timer of
    /// its torrents and of connections waiting for a handshake. `None`: only
    /// I/O can wake it.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let handshakes = self.slots.iter().filter_map(|s| match &s.conn {
            Some((_, Phase::Handshake { since, .. })) => Some(*since + self.handshake_timeout),
            _ => None,
        });
        self.torrents
            .values()
            .filter_map(|t| t.poll_timeout())
            .chain(handshakes)
            .min()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        let expired: Vec<ConnId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.conn {
                Some((_, Phase::Handshake { since, .. }))
                    if now >= *since + self.handshake_timeout =>
                {
                    Some(ConnId {
                        slot: i as u32,
                        generation: s.generation,
                    })
                }
                _ => None,
            })
            .collect();
        for id in expired {
            self.refuse(id, "handshake_timeout");
        }
        let due: Vec<TorrentId> = self
            .torrents
            .iter()
            .filter(|(_, ts)| ts.poll_timeout().is_some_and(|t| t <= now))
            .map(|(id, _)| *id)
            .collect();
        for t in due {
            self.with_torrent(t, |ts| ts.handle_timeout(now));
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        let pending: Vec<ConnId> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match &s.conn {
                Some((_, Phase::Handshake { .. })) => Some(ConnId {
                    slot: i as u32,
                    generation: s.generation,
                }),
                _ => None,
            })
            .collect();
        for id in pending {
            self.release(id);
            self.actions.push_back(Action::Close { conn: id });
        }
        let ids: Vec<TorrentId> = self.torrents.keys().copied().collect();
        for t in ids {
            self.with_torrent(t, |ts| {
                ts.shutdown(now);
                ts.flush_stats();
            });
        }
    }
}

#[cfg(test)]
mod tests;
