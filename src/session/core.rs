//! The session's coordinator, without I/O: the torrent table and everything
//! that spans shards or torrents.
//!
//! Shards report what happened as [`ShardEvent`]s; the core decides and
//! answers with [`ShardCommand`]s: which peers to dial and from which
//! shard, which pieces each shard downloads next (leases from the torrent's
//! piece picker), who is unchoked, who is banned, each shard's share of the
//! rate limits. It also keeps each torrent's counters and says when a
//! torrent completes or fails. Time comes in as an argument; randomness
//! from a seeded generator, so a simulated session replays.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::choker::{Candidate, Choker, PeerKey};
use crate::endpoint::{ShardCommand, ShardEvent};
use crate::metainfo::InfoHash;
use crate::peer::PeerError;
use crate::pex;
use crate::picker::{PeerPieces, Picker, Priority};
use crate::torrent::registry::{Registry, Verdict};
use crate::torrent::smart_ban::SmartBan;
use crate::torrent::{
    Availability, Command, DiskError, Event, Offer, PeerIdent, PeerInfo, ShardConn, ShardStats,
    TorrentCtx, TorrentId,
};
use crate::webseed::{WebMsg, WebSeedStats};
use crate::wire::PeerId;

/// What the core needs to know of the session's settings.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub shards: usize,
    /// Peer connections, all torrents together.
    pub max_connections: usize,
    /// Session-wide rate limits, bytes per second.
    pub upload_limit: Option<u64>,
    pub download_limit: Option<u64>,
    /// Peers unchoked at once, all torrents together (each torrent's own
    /// upload slots apply too).
    pub max_unchoked: Option<usize>,
    /// Time between choker rounds (BEP 3 suggests 10 s).
    pub rechoke_interval: Duration,
    pub seed: u64,
}

/// What the core tells the session's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Every piece is verified and written.
    Complete(TorrentId),
    /// The torrent cannot go on: a write of `piece` failed.
    Fatal {
        torrent: TorrentId,
        piece: u32,
        error: DiskError,
    },
    /// A removed torrent is gone from every shard; its pieces at the end
    /// (for its last resume save).
    Removed(TorrentId, Bitfield),
    /// A piece is verified and on disk (for resume state).
    PieceDone(TorrentId, u32),
    /// A peer's DHT node, from its `port` message.
    DhtNode(SocketAddr),
}

/// A torrent's counters, all shards together.
#[derive(Debug, Clone)]
pub struct TorrentStats {
    pub downloaded: u64,
    pub uploaded: u64,
    pub wasted: u64,
    pub written: u64,
    pub hash_failures: u64,
    pub read_errors: u64,
    pub pieces_verified: u64,
    pub pieces_have: u32,
    pub pieces_total: u32,
    /// Pieces wanted (of wanted files), had or not.
    pub pieces_wanted: u32,
    pub peers: u64,
    pub peers_seen: u64,
    pub peers_banned: u64,
    pub banned: Vec<SocketAddr>,
    pub disconnects: BTreeMap<&'static str, u64>,
    pub protocol_errors: u64,
    pub connect_failures: u64,
    pub known_peers: usize,
    pub hash_nanos: u64,
    /// Peer addresses learned by peer exchange, and PEX messages ignored
    /// for coming too often.
    pub pex_received: u64,
    pub pex_ignored: u64,
    /// Block latencies (none while nothing was downloaded).
    pub latency: crate::torrent::Latency,
    /// Disk job latencies (reads and writes), microseconds.
    pub disk_latency: crate::torrent::Latency,
    /// Pieces from web seeds (BEP 19).
    pub web: WebSeedStats,
    pub complete: bool,
}

impl TorrentStats {
    /// No counts yet, for a torrent of `pieces_total` pieces.
    pub fn empty(pieces_total: u32) -> TorrentStats {
        TorrentStats {
            downloaded: 0,
            uploaded: 0,
            wasted: 0,
            written: 0,
            hash_failures: 0,
            read_errors: 0,
            pieces_verified: 0,
            pieces_have: 0,
            pieces_total,
            pieces_wanted: pieces_total,
            peers: 0,
            peers_seen: 0,
            peers_banned: 0,
            banned: Vec::new(),
            disconnects: BTreeMap::new(),
            protocol_errors: 0,
            connect_failures: 0,
            known_peers: 0,
            hash_nanos: 0,
            pex_received: 0,
            pex_ignored: 0,
            latency: None,
            disk_latency: None,
            web: WebSeedStats::default(),
            complete: false,
        }
    }

    fn fold(&mut self, d: ShardStats) {
        self.downloaded += d.downloaded;
        self.uploaded += d.uploaded;
        self.wasted += d.wasted;
        self.written += d.written;
        self.hash_failures += d.hash_failures;
        self.read_errors += d.read_errors;
        self.peers_seen += d.peers_seen;
        for (k, n) in d.disconnects {
            *self.disconnects.entry(k).or_insert(0) += n;
        }
        self.protocol_errors += d.protocol_errors;
        self.connect_failures += d.connect_failures;
        self.banned.extend(d.banned);
        self.banned.truncate(100);
        self.hash_nanos += d.hash_nanos;
        self.pex_received += d.pex_received;
        self.pex_ignored += d.pex_ignored;
        merge(&mut self.latency, d.latency);
        merge(&mut self.disk_latency, d.disk_latency);
    }
}

fn merge(into: &mut crate::torrent::Latency, from: crate::torrent::Latency) {
    match (into.as_mut(), from) {
        (Some(mine), Some(h)) => {
            let _ = mine.add(&*h);
        }
        (None, Some(h)) => *into = Some(h),
        (_, None) => {}
    }
}

/// One torrent as the coordinator keeps it.
struct TorrentState {
    ctx: Arc<TorrentCtx>,
    have: Bitfield,
    /// Hands out pieces to download (none for a seed-only torrent).
    picker: Option<Picker>,
    registry: Registry,
    choker: Choker,
    candidates: BTreeMap<PeerKey, Candidate>,
    /// The same peers as `torrent-get` shows them.
    peer_info: BTreeMap<PeerKey, PeerInfo>,
    smart_ban: SmartBan,
    /// Which shards hold each piece on lease.
    leases: HashMap<u32, Vec<usize>>,
    /// Connections of this torrent per shard.
    conns: Vec<usize>,
    /// Peers per shard with a completed handshake (the shards' own count).
    peers: Vec<u64>,
    stats: TorrentStats,
    upload_limit: Option<u64>,
    download_limit: Option<u64>,
    /// The rates each shard was last told.
    rates: Vec<(Option<u64>, Option<u64>)>,
    /// Shards yet to let go of a removed torrent.
    removing: Option<usize>,
    failed: bool,
}

impl TorrentState {
    fn seeding(&self) -> bool {
        self.ctx.config.seed_only || self.ctx.done(&self.have)
    }

    fn total_conns(&self) -> usize {
        self.conns.iter().sum()
    }
}

pub struct SessionCore {
    cfg: CoreConfig,
    peer_id: PeerId,
    rng: fastrand::Rng,
    // Boxed: B-tree nodes are often half full, and there is one per torrent.
    torrents: BTreeMap<TorrentId, Box<TorrentState>>,
    by_hash: HashMap<InfoHash, TorrentId>,
    /// Connections (and dials under way) per shard, all torrents.
    shard_conns: Vec<usize>,
    /// Connections refused before they named a torrent, by reason.
    refused: BTreeMap<&'static str, u64>,
    commands: Vec<(usize, ShardCommand)>,
    notices: Vec<Notice>,
    next_tick: Option<Instant>,
    /// When every torrent's choker runs next (set one interval after the
    /// first candidates: a new peer is unchoked at once if a slot is free).
    next_round: Option<Instant>,
    /// When the torrents' peer lists next go to the shards for PEX.
    next_pex: Option<Instant>,
    /// Torrents whose counters changed since `take_changed`.
    changed: std::collections::BTreeSet<TorrentId>,
}

/// How often the core looks at dials, choker rounds and rates.
const TICK: Duration = Duration::from_secs(1);
/// How often the shards get each torrent's peers for PEX (each peer still
/// hears from us at most once a minute; this is how soon a new one does).
const PEX_ROUND: Duration = Duration::from_secs(5);
/// Addresses a torrent learns by PEX only while it knows fewer than this.
const MAX_KNOWN_FOR_PEX: usize = 4096;

impl SessionCore {
    pub fn new(cfg: CoreConfig, peer_id: PeerId) -> SessionCore {
        SessionCore {
            rng: fastrand::Rng::with_seed(cfg.seed),
            shard_conns: vec![0; cfg.shards.max(1)],
            cfg,
            peer_id,
            torrents: BTreeMap::new(),
            by_hash: HashMap::new(),
            refused: BTreeMap::new(),
            commands: Vec::new(),
            notices: Vec::new(),
            next_tick: None,
            next_round: None,
            next_pex: None,
            changed: std::collections::BTreeSet::new(),
        }
    }

    /// Torrents whose counters changed since the last call.
    pub fn take_changed(&mut self) -> Vec<TorrentId> {
        std::mem::take(&mut self.changed).into_iter().collect()
    }

    /// Whether some torrent's counters changed since `take_changed`.
    pub fn has_changed(&self) -> bool {
        !self.changed.is_empty()
    }

    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The next command for a shard (its index and the command).
    pub fn poll_command(&mut self) -> Option<(usize, ShardCommand)> {
        if self.commands.is_empty() {
            return None;
        }
        Some(self.commands.remove(0))
    }

    /// All commands for the shards, in order.
    pub fn drain_commands(&mut self) -> std::vec::Drain<'_, (usize, ShardCommand)> {
        self.commands.drain(..)
    }

    pub fn poll_notice(&mut self) -> Option<Notice> {
        if self.notices.is_empty() {
            return None;
        }
        Some(self.notices.remove(0))
    }

    /// When the core next needs `handle_timeout`: once a second while some
    /// torrent has peers or addresses to dial; never for idle torrents.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_tick
    }

    fn wake_at(&mut self, at: Instant) {
        self.next_tick = Some(self.next_tick.map_or(at, |t| t.min(at)));
    }

    fn broadcast(&mut self, t: TorrentId, cmd: impl Fn() -> Command) {
        for s in 0..self.cfg.shards {
            self.commands.push((s, ShardCommand::Torrent(t, cmd())));
        }
    }

    /// Carries a new torrent on every shard: having `have`, its pieces of
    /// `priorities` (`None`: all normal). `ctx.id` must be new.
    pub fn add(
        &mut self,
        now: Instant,
        ctx: Arc<TorrentCtx>,
        have: Bitfield,
        priorities: Option<&[Priority]>,
    ) {
        let id = ctx.id;
        let seed = self.rng.u64(..);
        let done = ctx.done(&have);
        let picker = (!ctx.config.seed_only && !done)
            .then(|| Picker::with_priorities(&have, priorities, seed));
        let mut stats = TorrentStats::empty(ctx.info.piece_count());
        stats.pieces_have = have.count_ones();
        stats.pieces_wanted = ctx
            .wanted
            .as_ref()
            .map_or(ctx.info.piece_count(), |w| w.count_ones());
        stats.complete = done;
        let shards = self.cfg.shards;
        let state = TorrentState {
            choker: Choker::new(ctx.config.choker(), self.rng.u64(..)),
            ctx: ctx.clone(),
            have: have.clone(),
            picker,
            registry: Registry::new(),
            candidates: BTreeMap::new(),
            peer_info: BTreeMap::new(),
            smart_ban: SmartBan::default(),
            leases: HashMap::new(),
            conns: vec![0; shards],
            peers: vec![0; shards],
            stats,
            upload_limit: None,
            download_limit: None,
            rates: vec![(None, None); shards],
            removing: None,
            failed: false,
        };
        self.by_hash.insert(ctx.info_hash, id);
        self.torrents.insert(id, Box::new(state));
        self.changed.insert(id);
        for s in 0..shards {
            self.commands
                .push((s, ShardCommand::Add(ctx.clone(), have.clone())));
        }
        self.rebalance_rates(now);
    }

    /// Stops carrying a torrent; `Notice::Removed` follows once every shard
    /// has let go of it.
    pub fn remove(&mut self, t: TorrentId) {
        let Some(ts) = self.torrents.get_mut(&t) else {
            return;
        };
        if ts.removing.is_some() {
            return;
        }
        ts.removing = Some(self.cfg.shards);
        self.by_hash.remove(&ts.ctx.info_hash);
        for s in 0..self.cfg.shards {
            self.commands.push((s, ShardCommand::Remove(t)));
        }
    }

    /// Peers to dial for a torrent (from trackers, or given by the user).
    pub fn add_peers(&mut self, now: Instant, t: TorrentId, addrs: &[SocketAddr]) {
        if let Some(ts) = self.torrents.get_mut(&t) {
            let n = ts.registry.add(now, addrs.iter().copied());
            ts.stats.known_peers = ts.registry.known();
            if n > 0 {
                self.dial(now);
            }
        }
    }

    /// Sets a torrent's own rate limits (bytes per second; `None`: none).
    pub fn set_limits(&mut self, now: Instant, t: TorrentId, up: Option<u64>, down: Option<u64>) {
        if let Some(ts) = self.torrents.get_mut(&t) {
            ts.upload_limit = up;
            ts.download_limit = down;
            self.rebalance_rates(now);
        }
    }

    /// A torrent's connected peers, as of their shards' last report.
    pub fn peers(&self, t: TorrentId) -> Vec<PeerInfo> {
        self.torrents
            .get(&t)
            .map(|ts| ts.peer_info.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Sets the session-wide rate limits (bytes per second; `None`: none).
    pub fn set_session_limits(&mut self, now: Instant, up: Option<u64>, down: Option<u64>) {
        self.cfg.upload_limit = up;
        self.cfg.download_limit = down;
        self.rebalance_rates(now);
    }

    pub fn stats(&self, t: TorrentId) -> Option<&TorrentStats> {
        self.torrents.get(&t).map(|ts| &ts.stats)
    }

    /// A torrent's verified and written pieces.
    pub fn have(&self, t: TorrentId) -> Option<&Bitfield> {
        self.torrents.get(&t).map(|ts| &ts.have)
    }

    pub fn torrent_ids(&self) -> impl Iterator<Item = TorrentId> + '_ {
        self.torrents.keys().copied()
    }

    /// Connections refused before they named a torrent, by reason.
    pub fn refused(&self) -> &BTreeMap<&'static str, u64> {
        &self.refused
    }

    pub fn connections(&self) -> usize {
        self.shard_conns.iter().sum()
    }

    /// Dials what is due, within the session's connection cap, each from
    /// the shard with the fewest connections.
    fn dial(&mut self, now: Instant) {
        let mut room = self.cfg.max_connections.saturating_sub(self.connections());
        let ids: Vec<TorrentId> = self.torrents.keys().copied().collect();
        let mut next: Option<Instant> = None;
        for t in ids {
            let Some(ts) = self.torrents.get_mut(&t) else {
                continue;
            };
            if ts.removing.is_some() || ts.failed {
                continue;
            }
            let due = ts.registry.due(now, room);
            room -= due.len();
            for addr in due {
                let shard = (0..self.shard_conns.len())
                    .min_by_key(|&s| self.shard_conns[s])
                    .unwrap_or(0);
                self.shard_conns[shard] += 1;
                ts.conns[shard] += 1;
                self.commands
                    .push((shard, ShardCommand::Torrent(t, Command::Connect(addr))));
            }
            if let Some(at) = ts.registry.next_due() {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        if let Some(at) = next {
            self.wake_at(at.max(now));
        }
    }

    fn released(&mut self, t: TorrentId, shard: usize) {
        if let Some(n) = self.shard_conns.get_mut(shard) {
            *n = n.saturating_sub(1);
        }
        if let Some(ts) = self.torrents.get_mut(&t)
            && let Some(n) = ts.conns.get_mut(shard)
        {
            *n = n.saturating_sub(1);
        }
    }

    /// Something happened on shard `shard`.
    pub fn handle_event(&mut self, now: Instant, shard: usize, ev: ShardEvent) {
        match ev {
            ShardEvent::Refused(reason) => *self.refused.entry(reason).or_insert(0) += 1,
            ShardEvent::Removed(t) => {
                if let Some(ts) = self.torrents.get_mut(&t)
                    && let Some(left) = ts.removing.as_mut()
                {
                    *left -= 1;
                    if *left == 0 {
                        let conns = ts.conns.clone();
                        for (s, n) in conns.into_iter().enumerate() {
                            self.shard_conns[s] = self.shard_conns[s].saturating_sub(n);
                        }
                        if let Some(ts) = self.torrents.remove(&t) {
                            self.notices.push(Notice::Removed(t, ts.have));
                        }
                    }
                }
            }
            ShardEvent::Torrent(ev) => self.torrent_event(now, shard, ev),
        }
    }

    fn torrent_event(&mut self, now: Instant, shard: usize, ev: Event) {
        let t = ev.torrent();
        if self.torrents.contains_key(&t) {
            self.changed.insert(t);
        }
        match ev {
            Event::Connected {
                torrent,
                conn,
                addr,
                local,
            } => {
                match local {
                    // Outgoing: counted when dialled.
                    Some(local) => {
                        if let Some(ts) = self.torrents.get_mut(&torrent) {
                            ts.registry.dialled_from(local, addr);
                        }
                    }
                    None => {
                        if let Some(ts) = self.torrents.get_mut(&torrent) {
                            self.shard_conns[conn.shard] += 1;
                            ts.conns[conn.shard] += 1;
                        }
                    }
                }
                self.wake_at(now + TICK);
            }
            Event::DialFailed { torrent, addr } => {
                self.released(torrent, shard);
                if let Some(ts) = self.torrents.get_mut(&torrent) {
                    ts.registry.dial_failed(now, addr);
                }
                self.dial(now);
            }
            Event::Handshaken {
                torrent,
                conn,
                addr,
                outgoing,
                peer_id,
            } => {
                let ours = self.peer_id;
                let Some(ts) = self.torrents.get_mut(&torrent) else {
                    return;
                };
                let close = match ts.registry.handshaken(addr, outgoing, peer_id, ours, conn) {
                    Verdict::Keep => None,
                    Verdict::Drop => Some((conn, PeerError::Duplicate)),
                    Verdict::Banned => Some((conn, PeerError::Banned)),
                    Verdict::Replace(old) => Some((old, PeerError::Duplicate)),
                };
                if let Some((c, why)) = close {
                    self.commands.push((
                        c.shard,
                        ShardCommand::Torrent(torrent, Command::Close(c.conn, why)),
                    ));
                }
            }
            Event::IsUs {
                torrent,
                addr,
                outgoing,
            } => {
                if let Some(ts) = self.torrents.get_mut(&torrent) {
                    if outgoing {
                        ts.registry.is_us(addr);
                    } else {
                        // The dialling side never sees our reply; name its target here.
                        ts.registry.is_us_dialled_from(addr);
                    }
                }
            }
            Event::Disconnected {
                torrent,
                conn,
                addr,
                outgoing,
                peer_id,
                why: _,
            } => {
                self.released(torrent, shard);
                if let Some(ts) = self.torrents.get_mut(&torrent) {
                    ts.registry.disconnected(now, addr, outgoing, peer_id, conn);
                    ts.candidates.remove(&conn.key());
                    ts.peer_info.remove(&conn.key());
                    if let Some(at) = ts.registry.next_due() {
                        self.wake_at(at.max(now));
                    }
                }
                self.dial(now);
            }
            Event::Availability { torrent, change } => {
                let Some(picker) = self
                    .torrents
                    .get_mut(&torrent)
                    .and_then(|t| t.picker.as_mut())
                else {
                    return;
                };
                match change {
                    Availability::Seed { joined: true } => picker.add_peer(PeerPieces::All),
                    Availability::Seed { joined: false } => picker.remove_peer(PeerPieces::All),
                    Availability::Pieces {
                        joined: true,
                        pieces,
                    } => picker.add_peer(PeerPieces::Some(&pieces)),
                    Availability::Pieces {
                        joined: false,
                        pieces,
                    } => picker.remove_peer(PeerPieces::Some(&pieces)),
                    Availability::Have(p) => picker.peer_has(p),
                }
            }
            Event::WantPieces {
                torrent,
                shard,
                offer,
                count,
                endgame: _,
            } => self.lease(torrent, shard, &offer, count),
            Event::ReturnPieces { torrent, pieces } => self.return_pieces(torrent, shard, pieces),
            Event::PieceDone { torrent, piece } => self.piece_done(torrent, piece),
            Event::DhtNode { addr, .. } => self.notices.push(Notice::DhtNode(addr)),
            Event::Exchanged { torrent, peers } => {
                let room = self.torrents.get(&torrent).is_some_and(|ts| {
                    ts.ctx.metadata.is_some() && ts.registry.known() < MAX_KNOWN_FOR_PEX
                });
                if room {
                    self.add_peers(now, torrent, &peers);
                }
            }
            Event::HashFailed {
                torrent,
                piece,
                contributors,
                record,
            } => match contributors.as_slice() {
                [] => {}
                // One sender: it alone is to blame.
                [peer] => {
                    let peer = *peer;
                    let Some(ts) = self.torrents.get_mut(&torrent) else {
                        return;
                    };
                    let max = ts.ctx.config.max_hash_failures;
                    if ts.registry.strike(peer, max) {
                        log::warn!("banning {}: sent data failing {max} hash checks", peer.ip);
                        self.banned(torrent, peer);
                    }
                }
                // Several: fetch it again from one peer and compare blocks.
                _ => {
                    if let Some(ts) = self.torrents.get_mut(&torrent) {
                        ts.smart_ban.record(piece, record);
                    }
                    self.broadcast(torrent, || Command::Suspect(piece));
                }
            },
            Event::SuspectPassed {
                torrent,
                piece,
                digests,
            } => {
                let Some(ts) = self.torrents.get_mut(&torrent) else {
                    return;
                };
                let liars = ts.smart_ban.verified(piece, &digests);
                for peer in liars {
                    log::warn!(
                        "piece {piece}: {} sent blocks that differ from the good copy",
                        peer.ip
                    );
                    let newly = self
                        .torrents
                        .get_mut(&torrent)
                        .is_some_and(|ts| ts.registry.ban(peer));
                    if newly {
                        self.banned(torrent, peer);
                    }
                }
            }
            Event::Peers {
                torrent,
                shard,
                peers,
            } => {
                if let Some(ts) = self.torrents.get_mut(&torrent) {
                    ts.candidates
                        .retain(|k, _| ShardConn::from_key(*k).shard != shard);
                    ts.peer_info
                        .retain(|k, _| ShardConn::from_key(*k).shard != shard);
                    for p in peers {
                        ts.candidates.insert(p.candidate.key, p.candidate);
                        ts.peer_info.insert(p.candidate.key, p);
                    }
                    self.wake_at(now + TICK);
                }
            }
            Event::Stats {
                torrent,
                shard,
                delta,
            } => {
                if let Some(ts) = self.torrents.get_mut(&torrent) {
                    if let Some(p) = ts.peers.get_mut(shard) {
                        *p = delta.peers;
                    }
                    ts.stats.peers = ts.peers.iter().sum();
                    ts.stats.fold(*delta);
                }
            }
            Event::Fatal {
                torrent,
                piece,
                error,
            } => {
                if let Some(ts) = self.torrents.get_mut(&torrent)
                    && !ts.failed
                {
                    ts.failed = true;
                    self.notices.push(Notice::Fatal {
                        torrent,
                        piece,
                        error,
                    });
                }
            }
        }
    }

    /// A peer proven to send bad data: banned on every shard.
    fn banned(&mut self, t: TorrentId, peer: PeerIdent) {
        if let Some(ts) = self.torrents.get_mut(&t) {
            ts.stats.peers_banned += 1;
        }
        self.broadcast(t, || Command::Ban(peer));
    }

    /// Leases up to `count` pieces the peer behind `offer` has to `shard`,
    /// rarest first; in endgame, pieces other shards are downloading.
    fn lease(&mut self, t: TorrentId, shard: usize, offer: &Offer, count: u32) {
        let Some(ts) = self.torrents.get_mut(&t) else {
            return;
        };
        let Some(picker) = ts.picker.as_mut() else {
            self.commands.push((
                shard,
                ShardCommand::Torrent(
                    t,
                    Command::Lease {
                        pieces: Vec::new(),
                        endgame: false,
                    },
                ),
            ));
            return;
        };
        let has = |p: u32| match offer {
            Offer::All => true,
            Offer::Some(b) => b.get(p),
        };
        let mut pieces = Vec::new();
        while pieces.len() < count as usize {
            match picker.pick_where(has) {
                Some(p) => pieces.push(p),
                None => break,
            }
        }
        let endgame = picker.in_endgame();
        if pieces.is_empty() && endgame {
            let peer = match offer {
                Offer::All => PeerPieces::All,
                Offer::Some(b) => PeerPieces::Some(b),
            };
            let leases = &ts.leases;
            if let Some(p) =
                picker.pick_endgame(peer, |x| leases.get(&x).is_some_and(|h| h.contains(&shard)))
            {
                pieces.push(p);
            }
        }
        for &p in &pieces {
            ts.leases.entry(p).or_default().push(shard);
        }
        self.commands.push((
            shard,
            ShardCommand::Torrent(t, Command::Lease { pieces, endgame }),
        ));
    }

    /// Pieces `holder` (a shard or a web seed worker) leased and gives back
    /// unfinished.
    fn return_pieces(&mut self, t: TorrentId, holder: usize, pieces: Vec<u32>) {
        let Some(ts) = self.torrents.get_mut(&t) else {
            return;
        };
        for p in pieces {
            if let Some(holders) = ts.leases.get_mut(&p)
                && let Some(i) = holders.iter().position(|&s| s == holder)
            {
                holders.swap_remove(i);
                if holders.is_empty() {
                    ts.leases.remove(&p);
                }
                if let Some(picker) = ts.picker.as_mut() {
                    picker.abort(p);
                }
            }
        }
    }

    /// What a web seed worker of torrent `t` asks or reports.
    pub fn handle_web(&mut self, t: TorrentId, msg: WebMsg) {
        if let Some(ts) = self.torrents.get_mut(&t)
            && !matches!(msg, WebMsg::Want { .. })
        {
            ts.stats.web.record(&msg);
            self.changed.insert(t);
        }
        match msg {
            WebMsg::Want {
                holder,
                from,
                max,
                reply,
            } => {
                // A worker that stopped waiting gets nothing: what it would
                // have leased goes back at once.
                let run = self.lease_run(t, holder, from, max);
                if let Err(
                    std::sync::mpsc::TrySendError::Full(Some(run))
                    | std::sync::mpsc::TrySendError::Disconnected(Some(run)),
                ) = reply.try_send(run)
                {
                    self.return_pieces(t, holder, run);
                }
            }
            WebMsg::Done { piece, .. } => self.piece_done(t, piece),
            WebMsg::Return { holder, pieces, .. } => self.return_pieces(t, holder, pieces),
            WebMsg::Error | WebMsg::Dropped(_) => {}
        }
    }

    /// Leases to `holder` up to `max` consecutive wanted pieces nobody is
    /// fetching, from the first such piece at or after `from` (wrapping):
    /// a web seed fetches them with one request. `None`: nothing is left.
    fn lease_run(&mut self, t: TorrentId, holder: usize, from: u32, max: u32) -> Option<Vec<u32>> {
        let ts = self.torrents.get_mut(&t)?;
        if ts.removing.is_some() {
            return None;
        }
        let picker = ts.picker.as_mut()?;
        let n = picker.piece_count();
        let mut run = Vec::new();
        if let Some(first) = (0..n)
            .map(|k| (from + k) % n)
            .find(|&p| picker.pick_specific(p))
        {
            run.push(first);
            let mut next = first + 1;
            while run.len() < max as usize && next < n && picker.pick_specific(next) {
                run.push(next);
                next += 1;
            }
        }
        for &p in &run {
            ts.leases.entry(p).or_default().push(holder);
        }
        Some(run)
    }

    fn piece_done(&mut self, t: TorrentId, piece: u32) {
        let Some(ts) = self.torrents.get_mut(&t) else {
            return;
        };
        ts.leases.remove(&piece);
        let first = match ts.picker.as_mut() {
            Some(p) => p.complete(piece),
            None => !ts.have.get(piece),
        };
        if !first || !ts.have.set(piece) {
            return;
        }
        ts.stats.pieces_verified += 1;
        ts.stats.pieces_have = ts.have.count_ones();
        self.notices.push(Notice::PieceDone(t, piece));
        let complete = ts.ctx.done(&ts.have);
        if complete {
            ts.stats.complete = true;
            ts.picker = None;
            ts.leases.clear();
        }
        self.broadcast(t, || Command::Have(piece));
        if complete {
            self.notices.push(Notice::Complete(t));
        }
    }

    /// The clock: dials, choker rounds and rate shares.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.next_tick.is_none_or(|t| now < t) {
            return;
        }
        self.next_tick = None;
        self.dial(now);
        self.choke_round(now);
        self.pex_round(now);
        self.rebalance_rates(now);
        if self.torrents.values().any(|ts| !ts.candidates.is_empty()) {
            self.wake_at(now + TICK);
        }
    }

    /// Sends each shard the listen addresses of every public torrent's
    /// peers, for it to tell its peers what changed (BEP 11).
    fn pex_round(&mut self, now: Instant) {
        if now < *self.next_pex.get_or_insert(now + PEX_ROUND) {
            return;
        }
        self.next_pex = Some(now + PEX_ROUND);
        for (&t, ts) in &self.torrents {
            if ts.ctx.metadata.is_none() || ts.peer_info.len() < 2 {
                continue;
            }
            // Seeds are flagged, and peers we dialled are reachable.
            let mut peers: Vec<(SocketAddr, u8)> = ts
                .peer_info
                .values()
                .filter_map(|p| {
                    let seed = if p.progress >= 1.0 {
                        pex::flags::SEED
                    } else {
                        0
                    };
                    let reachable = if p.incoming {
                        0
                    } else {
                        pex::flags::CONNECTABLE
                    };
                    Some((p.listen?, seed | reachable))
                })
                .collect();
            peers.sort();
            peers.dedup_by_key(|(a, _)| *a);
            let peers: Arc<[(SocketAddr, u8)]> = peers.into();
            for (shard, &n) in ts.conns.iter().enumerate() {
                if n > 0 {
                    self.commands
                        .push((shard, ShardCommand::Torrent(t, Command::Pex(peers.clone()))));
                }
            }
        }
    }

    /// Runs every torrent's choker when the round is due, keeps at most
    /// the session's `max_unchoked` of their picks (the fastest), and tells
    /// each shard which of its peers are unchoked and how many more it may
    /// unchoke at once before the next round.
    fn choke_round(&mut self, now: Instant) {
        if self.torrents.values().all(|ts| ts.candidates.is_empty()) {
            return;
        }
        let interval = self.cfg.rechoke_interval;
        if now < *self.next_round.get_or_insert(now + interval) {
            return;
        }
        self.next_round = Some(now + interval);
        let shards = self.cfg.shards;
        // (torrent, peer, rate it is ranked by)
        let mut picks: Vec<(TorrentId, PeerKey, u64)> = Vec::new();
        let mut rounds: Vec<(TorrentId, usize)> = Vec::new();
        for (&t, ts) in self.torrents.iter_mut() {
            if ts.candidates.is_empty() {
                continue;
            }
            let all: Vec<Candidate> = ts.candidates.values().copied().collect();
            let seeding = ts.seeding();
            let unchoke = ts.choker.rechoke(&all, seeding);
            for key in unchoke {
                let rate = ts.candidates.get(&key).map_or(0, |c| {
                    if seeding {
                        c.upload_rate
                    } else {
                        c.download_rate
                    }
                });
                picks.push((t, key, rate));
            }
            rounds.push((t, ts.ctx.config.choker().slots + 1));
        }
        let free_global = match self.cfg.max_unchoked {
            Some(max) => {
                if picks.len() > max {
                    picks.sort_by_key(|&(_, _, rate)| std::cmp::Reverse(rate));
                    picks.truncate(max);
                }
                Some((max - picks.len()).div_ceil(rounds.len().max(1)))
            }
            None => None,
        };
        for (t, slots) in rounds {
            let mine: Vec<PeerKey> = picks.iter().filter(|p| p.0 == t).map(|p| p.1).collect();
            let free = slots.saturating_sub(mine.len());
            let free = free_global.map_or(free, |g| free.min(g));
            let allowance = free.div_ceil(shards);
            let mut per_shard: Vec<Vec<crate::torrent::ConnId>> = vec![Vec::new(); shards];
            for key in mine {
                let c = ShardConn::from_key(key);
                if let Some(v) = per_shard.get_mut(c.shard) {
                    v.push(c.conn);
                }
            }
            for (s, keep) in per_shard.into_iter().enumerate() {
                self.commands.push((
                    s,
                    ShardCommand::Torrent(
                        t,
                        Command::Unchoke {
                            keep,
                            decided: now,
                            allowance,
                        },
                    ),
                ));
            }
        }
    }

    /// Splits each torrent's and the session's rate limits over the shards
    /// by where the torrent's connections are, and tells shards whose share
    /// changed.
    fn rebalance_rates(&mut self, _now: Instant) {
        let total: usize = self.connections().max(1);
        let (g_up, g_down) = (self.cfg.upload_limit, self.cfg.download_limit);
        let shards = self.cfg.shards;
        for (&t, ts) in self.torrents.iter_mut() {
            let mine = ts.total_conns();
            for s in 0..shards {
                // With no connections yet, an even split.
                let share = if mine == 0 {
                    1.0 / shards as f64
                } else {
                    ts.conns[s] as f64 / mine as f64
                };
                let global_share = ts.conns[s].max(1) as f64 / total as f64;
                let split = |own: Option<u64>, global: Option<u64>| -> Option<u64> {
                    let a = own.map(|r| (r as f64 * share) as u64);
                    let b = global.map(|r| (r as f64 * global_share) as u64);
                    match (a, b) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                };
                let rates = (
                    split(ts.upload_limit, g_up),
                    split(ts.download_limit, g_down),
                );
                if ts.rates[s] != rates {
                    ts.rates[s] = rates;
                    self.commands.push((
                        s,
                        ShardCommand::Torrent(
                            t,
                            Command::Rates {
                                up: rates.0,
                                down: rates.1,
                            },
                        ),
                    ));
                }
            }
        }
    }

    /// Stops everything: every shard closes its connections.
    pub fn shutdown(&mut self) {
        for s in 0..self.cfg.shards {
            self.commands.push((s, ShardCommand::Shutdown));
        }
    }
}
