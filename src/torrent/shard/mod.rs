//! One torrent on one shard. Split by concern:
//! - this file: connections, handshakes, closing, commands, the interface
//!   its endpoint drives;
//! - `download`: leased pieces, requests, arriving blocks, verification,
//!   writing;
//! - `upload`: serving peers' requests from the read cache;
//! - `maintenance`: choking, timeouts, rates, the per-second work.

mod download;
mod extensions;
mod maintenance;
mod spread;
use spread::Show;
mod upload;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::ReadCache;
use super::download::Download;
use super::limits::Limits;
use super::send_queue::SendQueue;
use super::{
    Action, Availability, Command, ConnId, Event, PeerIdent, ShardConn, ShardStats, TorrentCtx,
    TorrentId,
};
use crate::bitfield::Bitfield;
use crate::buffer::{BufPool, PieceBuf};
use crate::hash::merkle::LayerTree;
use crate::peer::{Input, PeerError, PeerState};
use crate::wire::{self, Decoder, Handshake, Message};

/// One connection: protocol state, decoder and outgoing bytes.
pub(super) struct Conn {
    pub peer: PeerState,
    decoder: Option<Decoder>,
    pub send: SendQueue,
    /// Waiting for a read unit before it can serve more.
    pub waiting_read: bool,
    /// A request for pieces to download from this peer is with the
    /// coordinator.
    pub wants_lease: bool,
    /// Peer exchange with this peer, and metadata it asked for.
    ext: ExtState,
}

#[derive(Debug, Default)]
struct ExtState {
    pex: crate::pex::PexState,
    metadata_requests: u32,
    hash_requests: u32,
    /// Its `port` message arrived (later ones are ignored).
    dht_port_heard: bool,
}

/// How long a peer is not asked again for a piece it rejected, and a piece
/// that could not be read is not read again.
pub(crate) const REJECT_BACKOFF: Duration = Duration::from_secs(5);

/// How long a torrent waits to retry starting a piece when the memory
/// budget had no room.
const BUDGET_RETRY: Duration = Duration::from_millis(100);

pub struct TorrentShard {
    ctx: Arc<TorrentCtx>,
    shard: usize,
    /// Ordered, so that work done for every connection runs in the same
    /// order each time (a simulated run replays).
    conns: BTreeMap<ConnId, Conn>,
    /// Pieces verified and written, as this shard knows them (its own at
    /// once, other shards' when the coordinator says).
    have: Bitfield,
    /// Pieces leased to this shard and not started yet.
    leased: VecDeque<u32>,
    /// The coordinator said no piece is left that nobody downloads.
    endgame: bool,
    /// Merkle trees over piece layers peers asked hashes of (BEP 52), by
    /// file root, built at the first request.
    layer_trees: HashMap<[u8; 32], LayerTree>,
    /// Pieces being assembled here, and the order they started in (oldest
    /// first, so partial pieces are finished before new ones are started).
    downloads: BTreeMap<u32, Download>,
    order: VecDeque<u32>,
    /// Pieces to fetch from one peer alone (smart ban).
    suspects: HashSet<u32>,
    /// Peers banned for this torrent.
    banned: HashSet<PeerIdent>,
    cache: ReadCache,
    /// Download buffers of this shard, reused.
    buffers: Arc<BufPool>,
    actions: VecDeque<Action>,
    events: Vec<Event>,
    /// Connections with newly queued bytes.
    dirty: Vec<ConnId>,
    stats: ShardStats,
    /// Block latency, request to arrival, in microseconds (made when the
    /// first block arrives: a seed never needs one).
    latency: crate::torrent::Latency,
    /// When the per-second work is due next.
    next_second: Instant,
    last_second: Instant,
    /// A piece could not start for lack of buffer memory; retry then.
    budget_retry: Option<Instant>,
    /// Peers this shard may still unchoke at once, without waiting for a
    /// choker round (a share of the free upload slots).
    allowance: usize,
    limits: Limits,
    /// A rate limit held requests or uploads back; retry then.
    limit_retry: Option<Instant>,
    /// The first payload bytes have been reported.
    first_data_reported: bool,
    shutting_down: bool,
    wire_limits: wire::Limits,
    /// Read units whose read failed, until when requests for their piece
    /// are refused without another read (the file may be repaired meanwhile).
    unreadable: HashMap<u32, Instant>,
    /// `--super-seed`: first copies of pieces, while we are a seed.
    spread: Option<spread::Spread>,
}

fn ctx_spread(ctx: &TorrentCtx) -> Option<spread::Spread> {
    ctx.config
        .super_seed
        .then(|| spread::Spread::new(ctx.info.piece_count(), ctx.info.piece_length))
}

impl TorrentShard {
    /// The torrent on shard `shard`, having the pieces in `have`.
    pub fn new(
        ctx: Arc<TorrentCtx>,
        shard: usize,
        have: Bitfield,
        buffers: Arc<BufPool>,
        now: Instant,
    ) -> TorrentShard {
        let info = &ctx.info;
        TorrentShard {
            wire_limits: wire::Limits::for_pieces(info.piece_count()),
            cache: ReadCache::new(ctx.config.read_cache, info.piece_length),
            allowance: ctx.config.choker().slots + 1,
            shard,
            conns: BTreeMap::new(),
            have,
            leased: VecDeque::new(),
            endgame: false,
            layer_trees: HashMap::new(),
            downloads: BTreeMap::new(),
            order: VecDeque::new(),
            suspects: HashSet::new(),
            banned: HashSet::new(),
            buffers,
            actions: VecDeque::new(),
            events: Vec::new(),
            dirty: Vec::new(),
            stats: ShardStats::default(),
            latency: None,
            next_second: now + Duration::from_secs(1),
            last_second: now,
            budget_retry: None,
            limits: Limits::default(),
            limit_retry: None,
            first_data_reported: false,
            shutting_down: false,
            unreadable: HashMap::new(),
            spread: ctx_spread(&ctx),
            ctx,
        }
    }

    pub fn id(&self) -> TorrentId {
        self.ctx.id
    }

    pub fn ctx(&self) -> &Arc<TorrentCtx> {
        &self.ctx
    }

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// Events for the coordinator since the last call.
    pub fn drain_events(&mut self, out: &mut Vec<Event>) {
        out.append(&mut self.events);
    }

    /// Connections that have bytes to send since the last call.
    pub fn drain_dirty(&mut self, out: &mut Vec<ConnId>) {
        out.append(&mut self.dirty);
    }

    pub fn send_queue(&mut self, id: ConnId) -> Option<&mut SendQueue> {
        self.conns.get_mut(&id).map(|c| &mut c.send)
    }

    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    /// Peers we upload to (not choking) right now.
    pub fn unchoked_count(&self) -> usize {
        self.conns.values().filter(|c| !c.peer.am_choking).count()
    }

    pub fn has_conn(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// Whether nothing is left for the driver to finish (after shutdown).
    pub fn is_drained(&self) -> bool {
        self.actions.is_empty() && self.conns.is_empty()
    }

    /// When this torrent next needs `handle_timeout`: its per-second work
    /// while it has connections, and retries held back by memory or a rate
    /// limit. A torrent with no connections needs no timer at all.
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Counters left over from closed connections are reported too.
        let busy = !self.conns.is_empty() || !self.stats.is_empty() || self.latency.is_some();
        let second = busy.then_some(self.next_second);
        [second, self.budget_retry, self.limit_retry]
            .into_iter()
            .flatten()
            .min()
    }

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        self.conns.get(&id)
    }

    fn conn_ids(&self) -> Vec<ConnId> {
        self.conns.keys().copied().collect()
    }

    fn shard_conn(&self, conn: ConnId) -> ShardConn {
        ShardConn {
            shard: self.shard,
            conn,
        }
    }

    /// Removes a connection (the endpoint frees its id) and asks the driver
    /// to close its socket.
    fn take_conn(&mut self, id: ConnId) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        self.dirty.retain(|d| *d != id);
        self.actions.push_back(Action::Close { conn: id });
        Some(c)
    }

    fn add_conn(&mut self, now: Instant, id: ConnId, addr: SocketAddr, outgoing: bool) {
        let mut peer = PeerState::new(now, addr, outgoing, self.ctx.info.piece_count());
        peer.pipeline = self.ctx.config.initial_pipeline;
        self.conns.insert(
            id,
            Conn {
                peer,
                decoder: Some(Decoder::new(self.wire_limits)),
                send: SendQueue::default(),
                waiting_read: false,
                wants_lease: false,
                ext: ExtState::default(),
            },
        );
        self.stats.peers_seen += 1;
    }

    /// Queues a message and marks the connection for sending.
    pub(super) fn send(&mut self, id: ConnId, m: Message<'_>) {
        if let Some(c) = self.conns.get_mut(&id) {
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

    /// A command from the coordinator.
    pub fn handle_command(&mut self, now: Instant, cmd: Command) {
        match cmd {
            Command::Connect(_) => {
                debug_assert!(
                    false,
                    "the endpoint allocates the connection and calls `connect`"
                )
            }
            Command::Lease { pieces, endgame } => self.handle_lease(now, pieces, endgame),
            Command::Have(piece) => self.piece_completed(now, piece),
            Command::Unchoke {
                keep,
                decided,
                allowance,
            } => self.apply_choke(now, &keep, decided, allowance),
            Command::Hashed { piece, buf, ok } => self.handle_hashed(now, piece, buf, ok),
            Command::Ban(peer) => {
                self.banned.insert(peer);
                let victims: Vec<ConnId> = self
                    .conns
                    .iter()
                    .filter(|(_, c)| {
                        c.peer.addr.ip() == peer.ip
                            && c.peer.handshake.is_some_and(|h| h.peer_id == peer.id)
                    })
                    .map(|(id, _)| *id)
                    .collect();
                for id in victims {
                    if let Some(c) = self.conn(id)
                        && self.stats.banned.len() < 100
                    {
                        self.stats.banned.push(c.peer.addr);
                    }
                    let strikes = self.ctx.config.max_hash_failures;
                    self.close(now, id, PeerError::HashFailures(strikes));
                }
            }
            Command::Suspect(piece) => {
                self.suspects.insert(piece);
            }
            Command::Close(conn, why) => self.close(now, conn, why),
            Command::Rates { up, down } => {
                Limits::set(&mut self.limits.up, up, wire::BLOCK_SIZE.into(), now);
                Limits::set(&mut self.limits.down, down, wire::BLOCK_SIZE.into(), now);
                self.limit_retry = None;
                self.refill_all(now);
            }
            Command::Pex(peers) => self.send_pex(now, &peers),
        }
    }

    /// Dials `addr` as connection `id` (allocated by the endpoint).
    pub fn connect(&mut self, now: Instant, id: ConnId, addr: SocketAddr) {
        self.add_conn(now, id, addr, true);
        self.actions.push_back(Action::Connect {
            torrent: self.ctx.id,
            conn: id,
            addr,
        });
    }

    /// An outgoing connection is established (from `local`): greet the peer.
    pub fn handle_connected(&mut self, now: Instant, id: ConnId, local: Option<SocketAddr>) {
        let hs =
            Handshake::ours(self.ctx.info_hash, self.ctx.peer_id).with_dht(self.ctx.dht_port != 0);
        let conn = self.shard_conn(id);
        let torrent = self.ctx.id;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.peer.last_recv = now;
        c.send.push_raw(&hs.encode());
        let addr = c.peer.addr;
        self.mark_dirty(id);
        self.events.push(Event::Connected {
            torrent,
            conn,
            addr,
            local,
        });
    }

    /// An outgoing dial failed: the address is retried later, with backoff.
    pub fn handle_connect_failed(&mut self, _now: Instant, id: ConnId, errno: i32) {
        let Some(c) = self.take_conn(id) else { return };
        log::debug!(
            "cannot connect to {}: {}",
            c.peer.addr,
            std::io::Error::from_raw_os_error(errno)
        );
        self.stats.connect_failures += 1;
        self.events.push(Event::DialFailed {
            torrent: self.ctx.id,
            addr: c.peer.addr,
        });
    }

    /// An incoming connection whose handshake, naming this torrent, the
    /// endpoint has read with `decoder`; the bytes after it follow with
    /// `handle_recv`.
    pub fn attach(
        &mut self,
        now: Instant,
        id: ConnId,
        addr: SocketAddr,
        mut decoder: Decoder,
        handshake: Handshake,
    ) {
        decoder.set_limits(self.wire_limits);
        let conn = self.shard_conn(id);
        self.events.push(Event::Connected {
            torrent: self.ctx.id,
            conn,
            addr,
            local: None,
        });
        self.add_conn(now, id, addr, false);
        let info = self.ctx.info.clone();
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.decoder = Some(decoder);
        let result = match c.peer.accept(now, wire::Event::Handshake(handshake), &info) {
            Ok(Input::Handshake(h)) => self.on_handshake(now, id, h),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.close(now, id, e);
        }
    }

    /// The socket reported end of stream or an error.
    pub fn handle_closed(&mut self, now: Instant, id: ConnId, why: PeerError) {
        self.close(now, id, why);
    }

    /// Bytes arrived on a connection.
    pub fn handle_recv(&mut self, now: Instant, id: ConnId, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(mut decoder) = c.decoder.take() else {
            return;
        };
        let info = self.ctx.info.clone();
        let mut input = data;
        let result = loop {
            let ev = match decoder.decode(&mut input) {
                Ok(Some(ev)) => ev,
                Ok(None) => break Ok(()),
                Err(e) => break Err(PeerError::from(e)),
            };
            let Some(c) = self.conns.get_mut(&id) else {
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
            if !self.conns.contains_key(&id) {
                break Ok(());
            }
        };
        match result {
            Ok(()) => {
                if let Some(c) = self.conns.get_mut(&id) {
                    c.decoder = Some(decoder);
                }
            }
            Err(e) => self.close(now, id, e),
        }
    }

    /// `n` bytes of a connection's queue reached the socket.
    pub fn handle_sent(&mut self, now: Instant, id: ConnId, n: usize) {
        let high_water = self.ctx.config.send_high_water;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.send.advance(n);
        c.peer.last_send = now;
        if c.send.len() < high_water / 2 {
            self.serve(now, id);
        }
    }

    fn on_input(&mut self, now: Instant, id: ConnId, input: Input<'_>) -> Result<(), PeerError> {
        match input {
            Input::Handshake(h) => return self.on_handshake(now, id, h),
            Input::Nothing | Input::Suggest(_) | Input::Cancel(_) => {}
            Input::ExtHandshake => {
                if let Some(c) = self.conns.get(&id) {
                    log::debug!("peer {} is {}", c.peer.addr, c.peer.client());
                }
                self.fill(now, id);
            }
            Input::Metadata(payload) => self.on_metadata(id, payload)?,
            Input::HashRequest(req) => self.on_hash_request(id, &req)?,
            Input::DhtPort(port) => {
                // One per connection: more would only make our node ping.
                if let Some(c) = self.conns.get_mut(&id)
                    && self.ctx.dht_port != 0
                    && port != 0
                    && !std::mem::replace(&mut c.ext.dht_port_heard, true)
                {
                    self.events.push(Event::DhtNode {
                        torrent: self.ctx.id,
                        addr: SocketAddr::new(c.peer.addr.ip(), port),
                    });
                }
            }
            Input::Pex(payload) => self.on_pex(now, id, payload)?,
            Input::Pieces => self.on_pieces(now, id),
            Input::PiecesReplaced { previous } => {
                self.events.push(Event::Availability {
                    torrent: self.ctx.id,
                    change: if previous.has_all {
                        Availability::Seed { joined: false }
                    } else {
                        Availability::Pieces {
                            joined: false,
                            pieces: previous.bitfield,
                        }
                    },
                });
                self.on_pieces(now, id);
            }
            Input::Have(p) => self.on_have(now, id, p),
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
            }
            Input::Unchoked | Input::AllowedFast(_) => self.fill(now, id),
            Input::Interested => self.on_interested(now, id),
            Input::NotInterested => self.choke_peer(id),
            Input::Request(b) => self.on_request(now, id, b),
            Input::Rejected(b) => {
                if let Some(d) = self.downloads.get_mut(&b.piece) {
                    d.unrequest(&b);
                    if d.owner == Some(id) {
                        d.owner = None;
                    }
                }
                // Rejected while unchoked: the peer cannot serve this piece
                // now (a read error on its side, say). Ask elsewhere first.
                if let Some(c) = self.conns.get_mut(&id)
                    && !c.peer.peer_choking
                {
                    c.peer.avoid_piece(b.piece, now + REJECT_BACKOFF);
                }
                self.fill(now, id);
            }
            Input::Block {
                block,
                offset,
                data,
                requested,
                completes,
                sent_at,
            } => self.on_block(now, id, block, offset, data, requested, completes, sent_at),
        }
        Ok(())
    }

    fn on_handshake(&mut self, now: Instant, id: ConnId, h: Handshake) -> Result<(), PeerError> {
        if !self.ctx.info_hashes().any(|ours| ours == h.info_hash) {
            return Err(PeerError::WrongInfoHash);
        }
        let conn = self.shard_conn(id);
        let torrent = self.ctx.id;
        let Some(c) = self.conns.get_mut(&id) else {
            return Ok(());
        };
        let (addr, outgoing) = (c.peer.addr, c.peer.outgoing);
        if h.peer_id == self.ctx.peer_id {
            self.events.push(Event::IsUs {
                torrent,
                addr,
                outgoing,
            });
            return Err(PeerError::SelfConnection);
        }
        if self.banned.contains(&PeerIdent {
            ip: addr.ip(),
            id: h.peer_id,
        }) {
            return Err(PeerError::Banned);
        }
        self.events.push(Event::Handshaken {
            torrent,
            conn,
            addr,
            outgoing,
            peer_id: h.peer_id,
        });
        self.stats.peers += 1;
        if !outgoing {
            // Under the name it used: a hybrid's v1 or v2 swarm.
            c.send.push_raw(
                &Handshake::ours(h.info_hash, self.ctx.peer_id)
                    .with_dht(self.ctx.dht_port != 0)
                    .encode(),
            );
        }
        let piece_count = self.ctx.info.piece_count();
        let have = self.have.count_ones();
        let fast = c.peer.fast();
        // `--super-seed`: shown pieces one by one (`show`).
        let spread =
            fast && have == piece_count && self.spread.as_mut().is_some_and(|s| s.join(id));
        if fast && (have == 0 || spread) {
            c.send.push(&Message::HaveNone);
        } else if fast && have == piece_count {
            c.send.push(&Message::HaveAll);
        } else if have > 0 {
            c.send.push(&Message::Bitfield(self.have.as_wire()));
        }
        if c.peer.extensions() {
            let payload = extensions::our_ext_handshake(&self.ctx, addr).encode();
            c.send.push(&Message::Extended {
                id: wire::EXT_HANDSHAKE,
                payload: &payload,
            });
        }
        if self.ctx.dht_port != 0 && h.supports_dht() {
            c.send.push(&Message::Port(self.ctx.dht_port));
        }
        c.peer.last_recv = now;
        self.mark_dirty(id);
        if spread {
            self.show(now, id);
        }
        Ok(())
    }

    /// `--super-seed`: tells a peer in our view of the pieces it may ask for
    /// now (see `spread`).
    pub(super) fn show(&mut self, now: Instant, id: ConnId) {
        let Some(s) = &mut self.spread else { return };
        let (Some(Show::Pieces(pieces)) | Some(Show::Rest(pieces))) = s.top_up(now, id) else {
            return;
        };
        for p in pieces {
            self.send(id, Message::Have(p));
        }
    }

    /// Forgets a connection and asks the driver to close its socket.
    pub(super) fn close(&mut self, now: Instant, id: ConnId, why: PeerError) {
        let Some(c) = self.take_conn(id) else { return };
        if let Some(s) = &mut self.spread {
            s.leave(id);
        }
        let p = &c.peer;
        if why.is_violation() {
            log::info!("dropping peer {} ({}): {why}", p.addr, p.client());
        } else {
            log::debug!("peer {} ({}) gone: {why}", p.addr, p.client());
        }
        self.stats.disconnected(&why);
        if p.is_active() {
            self.stats.peers = self.stats.peers.saturating_sub(1);
            // What it had is no longer available.
            self.events.push(Event::Availability {
                torrent: self.ctx.id,
                change: match p.pieces() {
                    crate::picker::PeerPieces::All => Availability::Seed { joined: false },
                    crate::picker::PeerPieces::Some(b) => Availability::Pieces {
                        joined: false,
                        pieces: b.clone(),
                    },
                },
            });
        }
        // What we asked of it goes to others.
        for o in &p.requests_out {
            if let Some(d) = self.downloads.get_mut(&o.block.piece) {
                d.unrequest(&o.block);
            }
        }
        if !p.am_choking {
            self.allowance += 1;
        }
        self.release_pieces_of(id);
        self.events.push(Event::Disconnected {
            torrent: self.ctx.id,
            conn: self.shard_conn(id),
            addr: p.addr,
            outgoing: p.outgoing,
            peer_id: p.handshake.map(|h| h.peer_id),
            why,
        });
        if !p.requests_out.is_empty() {
            self.refill_all(now);
        }
        self.return_unusable_leases();
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

    /// Closes every connection and stops taking new ones; leased pieces go
    /// back to the coordinator.
    pub fn shutdown(&mut self, now: Instant) {
        self.shutting_down = true;
        for id in self.conn_ids() {
            self.close(now, id, PeerError::ShuttingDown);
        }
        let mut back: Vec<u32> = self.leased.drain(..).collect();
        back.extend(
            self.downloads
                .iter()
                .filter(|(_, d)| d.stage == super::download::Stage::Receiving)
                .map(|(p, _)| *p),
        );
        if !back.is_empty() {
            self.events.push(Event::ReturnPieces {
                torrent: self.ctx.id,
                pieces: back,
            });
        }
    }

    /// A buffer for a new piece (`len` bytes), reused if one is spare.
    fn take_buffer(&self, len: u32) -> PieceBuf {
        // One block of slack lets the driver shift a piece into alignment
        // with its file for a direct write.
        let mut b = self
            .buffers
            .take_at_least(len as usize + crate::buffer::ALIGN);
        b.set_len(len as usize);
        b
    }

    fn return_buffer(&self, buf: PieceBuf) {
        self.buffers.put(buf);
    }

    /// A disk job of this torrent took `took`, from submission to completion.
    pub fn record_disk(&mut self, took: Duration) {
        crate::torrent::record_latency(&mut self.stats.disk_latency, took);
    }

    /// Takes the counters gathered since the last call (for the coordinator).
    fn take_stats(&mut self) -> ShardStats {
        let peers = self.stats.peers;
        let mut s = std::mem::take(&mut self.stats);
        self.stats.peers = peers;
        s.latency = self.latency.take();
        s
    }

    /// Reports the counters gathered since the last report, if any (each
    /// second, and what is left at shutdown).
    pub fn flush_stats(&mut self) {
        let delta = self.take_stats();
        if !delta.is_empty() {
            self.events.push(Event::Stats {
                torrent: self.ctx.id,
                shard: self.shard,
                delta: Box::new(delta),
            });
        }
    }
}
