//! The per-shard torrent logic. Split by concern:
//! - this file: connections, handshakes, closing, the driver interface;
//! - `download`: requests, arriving blocks, verification, writing;
//! - `upload`: serving peers' requests from the read cache;
//! - `maintenance`: choking, timeouts, rates, the per-second tick.

mod download;
mod maintenance;
mod upload;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hdrhistogram::Histogram;

use super::ConnId;
use super::cache::ReadCache;
pub use super::cache::ReadKey;
use super::download::Download;
use super::registry::Verdict;
use super::send_queue::SendQueue;
use super::shared::{ShardMsg, Shared, lock};
use super::stats::Stats;
use crate::buffer::PieceBuf;
use crate::metainfo::Info;
use crate::peer::{Input, PeerError, PeerState};
use crate::wire::{self, Decoder, ExtHandshake, Handshake, Message};

/// What a shard asks its driver to do.
#[derive(Debug)]
pub enum Action {
    /// Open a TCP connection; report with `handle_connected` or `handle_closed`.
    Connect { conn: ConnId, addr: SocketAddr },
    /// Close the socket. The shard has forgotten the connection already.
    Close { conn: ConnId },
    /// Get `len` bytes of piece `key.piece` from `begin` (a read unit) to
    /// upload: read them into a buffer from `Shared::read_pool` and report
    /// with `handle_read`, or hand over the bytes otherwise (a mapping) with
    /// `handle_piece_data`.
    Read { key: ReadKey, begin: u32, len: u32 },
    /// Verify `buf` against piece `piece`'s hash; report with `handle_hashed`.
    Hash { piece: u32, buf: PieceBuf },
    /// Write the verified piece; report with `handle_written`.
    Write { piece: u32, buf: PieceBuf },
}

/// One connection: protocol state, decoder and outgoing bytes.
pub(super) struct Conn {
    pub id: ConnId,
    pub peer: PeerState,
    decoder: Option<Decoder>,
    pub send: SendQueue,
    /// Waiting for a piece read before it can serve more.
    pub waiting_read: bool,
}

struct Slot {
    generation: u32,
    conn: Option<Conn>,
}

fn slot_conn(slots: &[Slot], id: ConnId) -> Option<&Conn> {
    let slot = slots.get(id.slot as usize)?;
    if slot.generation != id.generation {
        return None;
    }
    slot.conn.as_ref()
}

/// How long a peer is not asked again for a piece it rejected, and a piece
/// that could not be read is not read again.
pub(crate) const REJECT_BACKOFF: std::time::Duration = std::time::Duration::from_secs(5);

pub struct Shard {
    pub id: usize,
    shared: Arc<Shared>,
    info: Arc<Info>,
    slots: Vec<Slot>,
    free: Vec<u32>,
    /// Pieces being assembled here, and the order they started in (oldest
    /// first, so partial pieces are finished before new ones are started).
    downloads: HashMap<u32, Download>,
    order: VecDeque<u32>,
    cache: ReadCache,
    actions: VecDeque<Action>,
    /// Connections with newly queued bytes.
    dirty: Vec<ConnId>,
    /// Block latency, request to arrival, in microseconds.
    latency: Histogram<u64>,
    last_second: Instant,
    /// A request could not start a piece for lack of buffer memory.
    budget_blocked: bool,
    shutting_down: bool,
    limits: wire::Limits,
    /// Pieces whose read failed, until when requests for them are refused
    /// without another read (the file may be repaired meanwhile).
    unreadable: HashMap<u32, Instant>,
}

impl Shard {
    pub fn new(id: usize, shared: Arc<Shared>, now: Instant) -> Shard {
        let info = shared.info.clone();
        Shard {
            id,
            limits: wire::Limits::for_pieces(info.piece_count()),
            cache: ReadCache::new(shared.config.read_cache, info.piece_length),
            info,
            shared,
            slots: Vec::new(),
            free: Vec::new(),
            downloads: HashMap::new(),
            order: VecDeque::new(),
            actions: VecDeque::new(),
            dirty: Vec::new(),
            latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds"),
            last_second: now,
            budget_blocked: false,
            unreadable: HashMap::new(),
            shutting_down: false,
        }
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Connections that have bytes to send since the last call.
    pub fn take_dirty(&mut self) -> Vec<ConnId> {
        std::mem::take(&mut self.dirty)
    }

    pub fn send_queue(&mut self, id: ConnId) -> Option<&mut SendQueue> {
        self.conn_mut(id).map(|c| &mut c.send)
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn latency(&self) -> &Histogram<u64> {
        &self.latency
    }

    pub fn connection_count(&self) -> usize {
        self.slots.iter().filter(|s| s.conn.is_some()).count()
    }

    /// Whether nothing is left for the driver to finish (after shutdown).
    pub fn is_drained(&self) -> bool {
        self.actions.is_empty() && self.connection_count() == 0
    }

    pub(super) fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        slot.conn.as_mut()
    }

    /// Removes a connection from its slot (freeing the slot) and asks the
    /// driver to close its socket.
    fn take_conn(&mut self, id: ConnId) -> Option<Conn> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        if slot.generation != id.generation {
            return None;
        }
        let c = slot.conn.take()?;
        self.free.push(id.slot);
        self.dirty.retain(|d| *d != id);
        self.actions.push_back(Action::Close { conn: id });
        Some(c)
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        slot_conn(&self.slots, id)
    }

    fn conn_ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .filter_map(|s| s.conn.as_ref().map(|c| c.id))
            .collect()
    }

    fn add_conn(&mut self, now: Instant, addr: SocketAddr, outgoing: bool) -> ConnId {
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
        let id = ConnId {
            slot,
            generation: s.generation,
        };
        let mut peer = PeerState::new(now, addr, outgoing, self.info.piece_count());
        peer.pipeline = self.shared.config.initial_pipeline;
        s.conn = Some(Conn {
            id,
            peer,
            decoder: Some(Decoder::new(self.limits)),
            send: SendQueue::default(),
            waiting_read: false,
        });
        Stats::add(&self.shared.stats.peers_seen, 1);
        id
    }

    /// Queues a message and marks the connection for sending.
    pub(super) fn send(&mut self, id: ConnId, m: Message<'_>) {
        if let Some(c) = self.conn_mut(id) {
            let was_empty = c.send.is_empty();
            c.send.push(&m);
            if was_empty {
                self.dirty.push(id);
            }
        }
    }

    pub(super) fn mark_dirty(&mut self, id: ConnId) {
        if !self.dirty.contains(&id) {
            self.dirty.push(id);
        }
    }

    /// A message from another thread. `Adopt` is the driver's to handle
    /// (it owns sockets); it then calls `handle_accepted`.
    pub fn handle_msg(&mut self, now: Instant, msg: ShardMsg) {
        match msg {
            ShardMsg::Connect(addr) => {
                if self.shutting_down {
                    lock(&self.shared.registry).dial_failed(now, addr, self.id);
                    return;
                }
                let conn = self.add_conn(now, addr, true);
                self.actions.push_back(Action::Connect { conn, addr });
            }
            ShardMsg::Adopt(..) => debug_assert!(false, "the driver handles Adopt"),
            ShardMsg::Have(piece) => self.piece_completed(now, piece),
            ShardMsg::Unchoke { keep, decided } => self.apply_choke(keep, decided),
            ShardMsg::Hashed { piece, buf, ok } => self.handle_hashed(now, piece, buf, ok),
            ShardMsg::Ban(peer) => {
                for id in self.conn_ids() {
                    if self.conn(id).is_some_and(|c| {
                        c.peer.addr.ip() == peer.ip
                            && c.peer.handshake.is_some_and(|h| h.peer_id == peer.id)
                    }) {
                        if let (Some(c), Ok(mut list)) =
                            (self.conn(id), self.shared.stats.banned.lock())
                            && list.len() < 100
                        {
                            list.push(c.peer.addr);
                        }
                        self.close(
                            now,
                            id,
                            PeerError::HashFailures(self.shared.config.max_hash_failures),
                        );
                    }
                }
            }
            ShardMsg::CloseDuplicate(conn) => self.close(now, conn, PeerError::Duplicate),
            ShardMsg::Displace(addr) => {
                // Chosen while silent; closed even if its handshake has come
                // in since, so the connection cap holds.
                let victim = self.conn_ids().into_iter().find(|&id| {
                    self.conn(id)
                        .is_some_and(|c| c.peer.addr == addr && !c.peer.outgoing)
                });
                if let Some(id) = victim {
                    self.close(now, id, PeerError::TooManyConnections);
                }
            }
            ShardMsg::Shutdown => self.shutdown(now),
        }
    }

    /// An outgoing connection is established (from `local`): greet the peer.
    pub fn handle_connected(&mut self, now: Instant, id: ConnId, local: Option<SocketAddr>) {
        let hs = Handshake::ours(self.shared.info_hash, self.shared.peer_id);
        if let (Some(local), Some(c)) = (local, self.conn(id)) {
            lock(&self.shared.registry).dialled_from(local, c.peer.addr);
        }
        if let Some(c) = self.conn_mut(id) {
            c.peer.last_recv = now;
            c.send.push_raw(&hs.encode());
            self.mark_dirty(id);
        }
    }

    /// An incoming connection (accepted by the driver, admitted by the registry).
    pub fn handle_accepted(&mut self, now: Instant, addr: SocketAddr) -> ConnId {
        self.add_conn(now, addr, false)
    }

    /// The socket reported end of stream or an error.
    pub fn handle_closed(&mut self, now: Instant, id: ConnId, why: PeerError) {
        self.close(now, id, why);
    }

    /// An outgoing dial failed: the address is retried later, with backoff.
    pub fn handle_connect_failed(&mut self, now: Instant, id: ConnId, why: &str) {
        let Some(c) = self.take_conn(id) else { return };
        log::debug!("cannot connect to {}: {why}", c.peer.addr);
        Stats::add(&self.shared.stats.connect_failures, 1);
        lock(&self.shared.registry).dial_failed(now, c.peer.addr, self.id);
    }

    /// Bytes arrived on a connection.
    pub fn handle_recv(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        let Some(c) = self.conn_mut(id) else { return };
        let Some(mut decoder) = c.decoder.take() else {
            return;
        };
        let mut input = data;
        let result = loop {
            let ev = match decoder.decode(&mut input) {
                Ok(Some(ev)) => ev,
                Ok(None) => break Ok(()),
                Err(e) => break Err(PeerError::from(e)),
            };
            let info = self.info.clone();
            let Some(c) = self.conn_mut(id) else {
                break Ok(());
            };
            match c.peer.accept(now, ev, &info) {
                Ok(inp) => {
                    if let Err(e) = self.on_input(now, id, inp) {
                        break Err(e);
                    }
                }
                Err(e) => break Err(e),
            }
            if self.conn(id).is_none() {
                break Ok(());
            }
        };
        match result {
            Ok(()) => {
                if let Some(c) = self.conn_mut(id) {
                    c.decoder = Some(decoder);
                }
            }
            Err(e) => self.close(now, id, e),
        }
    }

    /// `n` bytes of a connection's queue reached the socket.
    pub fn handle_sent(&mut self, now: Instant, id: ConnId, n: usize) {
        let high_water = self.shared.config.send_high_water;
        let Some(c) = self.conn_mut(id) else { return };
        c.send.advance(n);
        c.peer.last_send = now;
        let below = c.send.len() < high_water / 2;
        if below {
            self.serve(now, id);
        }
    }

    fn on_input(&mut self, now: Instant, id: ConnId, input: Input<'_>) -> Result<(), PeerError> {
        match input {
            Input::Handshake(h) => self.on_handshake(now, id, h),
            Input::Nothing => Ok(()),
            Input::ExtHandshake => {
                if let Some(c) = self.conn_mut(id) {
                    log::debug!("peer {} is {}", c.peer.addr, c.peer.client());
                }
                self.fill(now, id);
                Ok(())
            }
            Input::Pieces => {
                self.on_pieces(now, id);
                Ok(())
            }
            Input::PiecesReplaced { previous } => {
                lock(&self.shared.picker).remove_peer(previous.pieces());
                self.on_pieces(now, id);
                Ok(())
            }
            Input::Have(p) => {
                self.on_have(now, id, p);
                Ok(())
            }
            Input::Choked { dropped } => {
                for b in &dropped {
                    if let Some(d) = self.downloads.get_mut(&b.piece) {
                        d.unrequest(b);
                    }
                }
                if !dropped.is_empty() {
                    self.release_pieces_of(id);
                    self.refill_all(now);
                }
                Ok(())
            }
            Input::Unchoked | Input::AllowedFast(_) => {
                self.fill(now, id);
                Ok(())
            }
            Input::Suggest(_) => Ok(()),
            Input::Interested => {
                self.on_interested(now, id);
                Ok(())
            }
            Input::NotInterested => {
                self.choke_peer(id);
                Ok(())
            }
            Input::Request(b) => {
                self.on_request(now, id, b);
                Ok(())
            }
            Input::Cancel(_) => Ok(()),
            Input::Rejected(b) => {
                if let Some(d) = self.downloads.get_mut(&b.piece) {
                    d.unrequest(&b);
                }
                // Rejected while unchoked: the peer cannot serve this piece
                // now (a read error on its side, say). Ask elsewhere first.
                if let Some(c) = self.conn_mut(id)
                    && !c.peer.peer_choking
                {
                    c.peer.avoid_piece(b.piece, now + REJECT_BACKOFF);
                }
                if let Some(d) = self.downloads.get_mut(&b.piece)
                    && d.owner == Some(id)
                {
                    d.owner = None;
                }
                self.fill(now, id);
                Ok(())
            }
            Input::Block {
                block,
                offset,
                data,
                requested,
                completes,
                sent_at,
            } => {
                self.on_block(now, id, block, offset, data, requested, completes, sent_at);
                Ok(())
            }
        }
    }

    fn on_handshake(&mut self, now: Instant, id: ConnId, h: Handshake) -> Result<(), PeerError> {
        let shared = self.shared.clone();
        if h.info_hash != shared.info_hash {
            return Err(PeerError::WrongInfoHash);
        }
        let Some(c) = self.conn_mut(id) else {
            return Ok(());
        };
        let (addr, outgoing) = (c.peer.addr, c.peer.outgoing);
        if h.peer_id == shared.peer_id {
            let mut reg = lock(&shared.registry);
            if outgoing {
                reg.is_us(addr);
            } else {
                // The dialling side never sees our reply; name its target here.
                reg.is_us_dialled_from(addr);
            }
            return Err(PeerError::SelfConnection);
        }
        let verdict = lock(&shared.registry).handshaken(
            addr,
            outgoing,
            h.peer_id,
            shared.peer_id,
            self.id,
            id,
        );
        match verdict {
            Verdict::Keep => {}
            Verdict::Drop => return Err(PeerError::Duplicate),
            Verdict::Banned => return Err(PeerError::Banned),
            Verdict::Replace { shard, conn } if shard == self.id => {
                self.close(now, conn, PeerError::Duplicate)
            }
            Verdict::Replace { shard, conn } => {
                shared.inboxes[shard].post(ShardMsg::CloseDuplicate(conn))
            }
        }
        Stats::add(&shared.stats.peers_connected, 1);
        let piece_count = self.info.piece_count();
        let Some(c) = self.conn_mut(id) else {
            return Ok(());
        };
        if !outgoing {
            c.send
                .push_raw(&Handshake::ours(shared.info_hash, shared.peer_id).encode());
        }
        let have = shared.have.count_ones();
        let fast = c.peer.fast();
        if fast && have == 0 {
            c.send.push(&Message::HaveNone);
        } else if fast && have == piece_count {
            c.send.push(&Message::HaveAll);
        } else if have > 0 {
            let bits = shared.have.snapshot();
            c.send.push(&Message::Bitfield(bits.as_wire()));
        }
        if c.peer.extensions() {
            let ext = ExtHandshake {
                m: Vec::new(),
                v: Some(concat!("ringtorrent ", env!("CARGO_PKG_VERSION")).to_owned()),
                reqq: Some(crate::peer::MAX_QUEUED_REQUESTS as u32),
                p: u16::try_from(
                    shared
                        .listen_port
                        .load(std::sync::atomic::Ordering::Relaxed),
                )
                .ok()
                .filter(|&p| p != 0),
                yourip: Some(addr.ip()),
            };
            let payload = ext.encode();
            c.send.push(&Message::Extended {
                id: wire::EXT_HANDSHAKE,
                payload: &payload,
            });
        }
        c.peer.last_recv = now;
        self.mark_dirty(id);
        Ok(())
    }

    /// Forgets a connection and asks the driver to close its socket.
    pub(super) fn close(&mut self, now: Instant, id: ConnId, why: PeerError) {
        let Some(c) = self.take_conn(id) else { return };
        let p = &c.peer;
        if why.is_violation() {
            log::info!("dropping peer {} ({}): {why}", p.addr, p.client());
        } else {
            log::debug!("peer {} ({}) gone: {why}", p.addr, p.client());
        }
        self.shared
            .stats
            .disconnected(why.kind(), why.is_violation());
        if p.is_active() {
            self.shared
                .stats
                .peers_connected
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        // What it had is no longer available; what we asked of it goes to others.
        if p.is_active() {
            lock(&self.shared.picker).remove_peer(p.pieces());
        }
        for o in &p.requests_out {
            if let Some(d) = self.downloads.get_mut(&o.block.piece) {
                d.unrequest(&o.block);
            }
        }
        self.release_pieces_of(id);
        if !p.am_choking {
            self.shared
                .unchoked
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
        lock(&self.shared.registry).disconnected(
            now,
            p.addr,
            p.outgoing,
            p.handshake.map(|h| h.peer_id),
            self.id,
        );
        if !p.requests_out.is_empty() {
            self.refill_all(now);
        }
    }

    /// Pieces fetched from `id` alone (to settle a hash failure) are open to
    /// another peer once `id` stops serving them.
    pub(super) fn release_pieces_of(&mut self, id: ConnId) {
        for d in self.downloads.values_mut() {
            if d.owner == Some(id) {
                d.owner = None;
            }
        }
    }

    fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        for id in self.conn_ids() {
            self.close(now, id, PeerError::ShuttingDown);
        }
    }
}

#[cfg(test)]
mod tests;
