//! One DHT node, without I/O: fed datagrams and the time, it answers
//! queries, runs iterative lookups and says what to send.
//!
//! What it keeps is bounded: the routing table ([`Table`]), peers stored
//! for others ([`MAX_STORED_TORRENTS`] torrents of [`MAX_STORED_PEERS`]),
//! queries in flight ([`MAX_PENDING`]), candidates per lookup, and the
//! per-address rate limit's memory. Requests beyond the rate limit are
//! dropped unanswered and counted, so a forged source address cannot make
//! the node send much to a victim.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use super::krpc::{self, Body, Contact, Msg, NodeId, Query, Response};
use super::table::{K, Table};
use crate::hash::sha1_parts;

/// Torrents whose peers we store for others, and peers per torrent (as
/// libtorrent's `dht_max_torrents`; it keeps up to 500 peers each).
pub const MAX_STORED_TORRENTS: usize = 2000;
pub const MAX_STORED_PEERS: usize = 100;
/// Stored peers not announced again within this long are forgotten.
const PEER_TTL: Duration = Duration::from_secs(30 * 60);
/// Peers given in one `get_peers` answer.
const VALUES_PER_ANSWER: usize = 50;
/// Queries in flight at once (further ones wait for a later turn).
pub const MAX_PENDING: usize = 256;
/// Pings in flight at once (for peers' `port` messages).
const MAX_PINGS: usize = 16;
/// A query unanswered this long has failed.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A lookup gives up after this long.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);
/// Queries in flight per lookup, and the candidates it keeps.
const ALPHA: usize = 4;
const MAX_CANDIDATES: usize = 64;
/// Tokens are made with a secret that changes this often; the previous
/// one is still accepted.
const SECRET_EVERY: Duration = Duration::from_secs(5 * 60);
/// With fewer nodes than this the node joins again, this often.
const REJOIN_EVERY: Duration = Duration::from_secs(30);
/// Requests answered per source address (a burst, then a rate) and in
/// total, per second.
const PER_ADDR_BURST: f64 = 40.0;
const PER_ADDR_RATE: f64 = 10.0;
const TOTAL_RATE: f64 = 500.0;
/// Source addresses tracked for the rate limit.
const MAX_TRACKED: usize = 8192;

/// What a lookup found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeEvent {
    Peers {
        lookup: u64,
        peers: Vec<SocketAddr>,
    },
    /// The lookup ended; `announced`: `announce_peer`s sent.
    Done {
        lookup: u64,
        announced: usize,
    },
}

/// Counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NodeStats {
    pub nodes: usize,
    pub queries_answered: u64,
    /// Requests dropped by the rate limit.
    pub refused: u64,
    /// Datagrams that were not KRPC, or not what we asked for.
    pub malformed: u64,
    pub stored_torrents: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Ping,
    Lookup(u64),
    Announce,
}

struct Pending {
    to: SocketAddrV4,
    sent: Instant,
    purpose: Purpose,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CandState {
    New,
    Asked,
    Answered,
    Failed,
}

struct Cand {
    /// Distance to the target (all ones for an address not heard yet).
    dist: [u8; 20],
    state: CandState,
    token: Option<Vec<u8>>,
}

struct Lookup {
    target: NodeId,
    /// `get_peers` (and announce on this port afterwards) or `find_node`.
    get_peers: bool,
    announce: Option<u16>,
    cands: HashMap<SocketAddrV4, Cand>,
    started: Instant,
}

pub struct Node {
    table: Table,
    secrets: ([u8; 20], [u8; 20]),
    secret_at: Instant,
    store: HashMap<NodeId, Vec<(SocketAddr, Instant)>>,
    pending: HashMap<u16, Pending>,
    next_tid: u16,
    lookups: BTreeMap<u64, Lookup>,
    next_lookup: u64,
    outbox: VecDeque<(SocketAddrV4, Vec<u8>)>,
    events: VecDeque<NodeEvent>,
    rate: RateState,
    rng: fastrand::Rng,
    stats: NodeStats,
    bootstrap: Vec<SocketAddrV4>,
    next_join: Instant,
    last_expire: Instant,
}

impl Node {
    pub fn new(id: NodeId, now: Instant, rng: fastrand::Rng) -> Node {
        let mut rng = rng;
        let mut secret = || {
            let mut s = [0u8; 20];
            rng.fill(&mut s);
            s
        };
        let secrets = (secret(), secret());
        Node {
            table: Table::new(id),
            secrets,
            secret_at: now,
            store: HashMap::new(),
            pending: HashMap::new(),
            next_tid: rng.u16(..),
            lookups: BTreeMap::new(),
            next_lookup: 1,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            rate: RateState::new(now),
            rng,
            stats: NodeStats::default(),
            bootstrap: Vec::new(),
            next_join: now,
            last_expire: now,
        }
    }

    pub fn id(&self) -> NodeId {
        self.table.own_id()
    }

    /// Joins the DHT through `addrs` (and again whenever the table is
    /// nearly empty); `known` are nodes saved from an earlier run.
    pub fn join(&mut self, now: Instant, addrs: Vec<SocketAddrV4>, known: &[Contact]) {
        for &(id, addr) in known {
            self.table.heard(now, id, addr, false);
        }
        self.bootstrap = addrs;
        self.rejoin(now);
    }

    fn rejoin(&mut self, now: Instant) {
        self.next_join = now + REJOIN_EVERY;
        let target = self.id();
        let extra = self.bootstrap.clone();
        self.start(now, target, false, None, &extra);
    }

    /// Starts a `get_peers` lookup of `info_hash` (then announcing us on
    /// `announce`); its peers and end come as [`NodeEvent`]s.
    pub fn get_peers(&mut self, now: Instant, info_hash: NodeId, announce: Option<u16>) -> u64 {
        let extra = if self.table.len() < K {
            self.bootstrap.clone()
        } else {
            Vec::new()
        };
        self.start(now, info_hash, true, announce, &extra)
    }

    /// Pings `addr` (a peer's `port` message): if it answers, it joins
    /// the table. Known nodes are not pinged, and at most
    /// [`MAX_PINGS`] pings are in flight, so peers cannot crowd out lookups.
    pub fn ping(&mut self, now: Instant, addr: SocketAddrV4) {
        let pinging = self
            .pending
            .values()
            .filter(|p| p.purpose == Purpose::Ping)
            .count();
        if pinging >= MAX_PINGS || self.table.knows(addr) {
            return;
        }
        let id = self.id();
        self.send_query(now, addr, &Query::Ping, Purpose::Ping, &id);
    }

    fn start(
        &mut self,
        now: Instant,
        target: NodeId,
        get_peers: bool,
        announce: Option<u16>,
        extra: &[SocketAddrV4],
    ) -> u64 {
        let id = self.next_lookup;
        self.next_lookup += 1;
        let mut cands = HashMap::new();
        for (nid, addr) in self.table.closest(&target, K * 2) {
            cands.insert(addr, cand(target.distance(&nid)));
        }
        for &addr in extra {
            cands.entry(addr).or_insert(cand([0xff; 20]));
        }
        self.lookups.insert(
            id,
            Lookup {
                target,
                get_peers,
                announce,
                cands,
                started: now,
            },
        );
        self.advance(now, id);
        id
    }

    /// Sends the lookup's next queries, or ends it.
    fn advance(&mut self, now: Instant, lookup: u64) {
        let Some(l) = self.lookups.get(&lookup) else {
            return;
        };
        let mut order: Vec<(&SocketAddrV4, &Cand)> = l
            .cands
            .iter()
            .filter(|(_, c)| c.state != CandState::Failed)
            .collect();
        order.sort_by_key(|(a, c)| (c.dist, **a));
        let closest = &order[..order.len().min(K)];
        let in_flight = l
            .cands
            .values()
            .filter(|c| c.state == CandState::Asked)
            .count();
        let done = now.saturating_duration_since(l.started) >= LOOKUP_TIMEOUT
            || (in_flight == 0 && closest.iter().all(|(_, c)| c.state == CandState::Answered));
        if done {
            self.finish(now, lookup);
            return;
        }
        let to_ask: Vec<SocketAddrV4> = closest
            .iter()
            .filter(|(_, c)| c.state == CandState::New)
            .map(|(a, _)| **a)
            .take(ALPHA.saturating_sub(in_flight))
            .collect();
        let (target, get_peers) = (l.target, l.get_peers);
        let query = if get_peers {
            Query::GetPeers { info_hash: target }
        } else {
            Query::FindNode { target }
        };
        let own = self.id();
        for addr in to_ask {
            if self.send_query(now, addr, &query, Purpose::Lookup(lookup), &own)
                && let Some(c) = self
                    .lookups
                    .get_mut(&lookup)
                    .and_then(|l| l.cands.get_mut(&addr))
            {
                c.state = CandState::Asked;
            }
        }
    }

    fn finish(&mut self, now: Instant, lookup: u64) {
        let Some(l) = self.lookups.remove(&lookup) else {
            return;
        };
        let mut announced = 0;
        if let Some(port) = l.announce {
            let mut answered: Vec<(&SocketAddrV4, &Cand)> = l
                .cands
                .iter()
                .filter(|(_, c)| c.state == CandState::Answered && c.token.is_some())
                .collect();
            answered.sort_by_key(|(a, c)| (c.dist, **a));
            let own = self.id();
            for (addr, c) in answered.into_iter().take(K) {
                let token = c.token.clone().unwrap_or_default();
                let q = Query::AnnouncePeer {
                    info_hash: l.target,
                    port,
                    implied_port: false,
                    token: &token,
                };
                if self.send_query(now, *addr, &q, Purpose::Announce, &own) {
                    announced += 1;
                }
            }
        }
        self.events.push_back(NodeEvent::Done { lookup, announced });
    }

    fn send_query(
        &mut self,
        now: Instant,
        to: SocketAddrV4,
        q: &Query<'_>,
        purpose: Purpose,
        own: &NodeId,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING {
            return false;
        }
        let mut tid = self.next_tid;
        while self.pending.contains_key(&tid) {
            tid = tid.wrapping_add(1);
        }
        self.next_tid = tid.wrapping_add(1);
        self.pending.insert(
            tid,
            Pending {
                to,
                sent: now,
                purpose,
            },
        );
        self.outbox
            .push_back((to, krpc::query(&tid.to_be_bytes(), own, q)));
        true
    }

    /// A datagram arrived from `from`.
    pub fn handle_packet(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let SocketAddr::V4(from) = from else {
            return;
        };
        if from.port() == 0 {
            return;
        }
        let Ok(msg) = Msg::decode(bytes) else {
            self.stats.malformed += 1;
            return;
        };
        match msg.body {
            Body::Query { id, query } => {
                if !self.rate.allow(*from.ip(), now) {
                    self.stats.refused += 1;
                    return;
                }
                self.table.heard(now, id, from, false);
                self.answer(now, from, msg.t, &query);
            }
            Body::Response(r) => self.on_response(now, from, msg.t, r),
            Body::Error { .. } => {
                if let Some(p) = self.take_pending(from, msg.t) {
                    self.on_failure(now, p);
                }
            }
        }
    }

    fn take_pending(&mut self, from: SocketAddrV4, t: &[u8]) -> Option<Pending> {
        let tid = u16::from_be_bytes(<[u8; 2]>::try_from(t).ok()?);
        match self.pending.get(&tid) {
            Some(p) if p.to == from => self.pending.remove(&tid),
            _ => {
                self.stats.malformed += 1;
                None
            }
        }
    }

    fn on_response(&mut self, now: Instant, from: SocketAddrV4, t: &[u8], r: Response<'_>) {
        let Some(p) = self.take_pending(from, t) else {
            return;
        };
        let Some(id) = r.id else {
            self.on_failure(now, p);
            return;
        };
        self.table.heard(now, id, from, true);
        let Purpose::Lookup(lookup) = p.purpose else {
            return;
        };
        let Some(l) = self.lookups.get_mut(&lookup) else {
            return;
        };
        let target = l.target;
        if let Some(c) = l.cands.get_mut(&from) {
            c.state = CandState::Answered;
            c.dist = target.distance(&id);
            c.token = r.token.map(<[u8]>::to_vec);
        }
        for (nid, addr) in &r.nodes {
            if addr.port() == 0 || addr.ip().is_unspecified() || *nid == self.table.own_id() {
                continue;
            }
            l.cands.entry(*addr).or_insert(cand(target.distance(nid)));
        }
        if l.cands.len() > MAX_CANDIDATES {
            let mut all: Vec<(SocketAddrV4, [u8; 20], CandState)> =
                l.cands.iter().map(|(a, c)| (*a, c.dist, c.state)).collect();
            all.sort_by_key(|(a, d, _)| (*d, *a));
            for (a, _, state) in all.into_iter().skip(MAX_CANDIDATES) {
                if state != CandState::Asked {
                    l.cands.remove(&a);
                }
            }
        }
        if l.get_peers && !r.values.is_empty() {
            self.events.push_back(NodeEvent::Peers {
                lookup,
                peers: r.values,
            });
        }
        self.advance(now, lookup);
    }

    fn on_failure(&mut self, now: Instant, p: Pending) {
        self.table.failed(p.to);
        if let Purpose::Lookup(lookup) = p.purpose {
            if let Some(c) = self
                .lookups
                .get_mut(&lookup)
                .and_then(|l| l.cands.get_mut(&p.to))
            {
                c.state = CandState::Failed;
            }
            self.advance(now, lookup);
        }
    }

    fn token(&self, secret: &[u8; 20], ip: Ipv4Addr) -> [u8; 8] {
        let h = sha1_parts([&secret[..], &ip.octets()[..]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&h[..8]);
        t
    }

    fn answer(&mut self, now: Instant, from: SocketAddrV4, t: &[u8], q: &Query<'_>) {
        let own = self.id();
        let closest = |table: &Table, target: &NodeId| table.closest(target, K);
        let reply = match q {
            Query::Ping => krpc::response(t, &own, &Response::default()),
            Query::FindNode { target } => krpc::response(
                t,
                &own,
                &Response {
                    nodes: closest(&self.table, target),
                    ..Response::default()
                },
            ),
            Query::GetPeers { info_hash } => {
                let token = self.token(&self.secrets.0, *from.ip());
                let mut values: Vec<SocketAddr> = self
                    .store
                    .get(info_hash)
                    .map(|v| v.iter().map(|(a, _)| *a).collect())
                    .unwrap_or_default();
                self.rng.shuffle(&mut values);
                values.truncate(VALUES_PER_ANSWER);
                krpc::response(
                    t,
                    &own,
                    &Response {
                        nodes: closest(&self.table, info_hash),
                        values,
                        token: Some(&token),
                        id: None,
                    },
                )
            }
            Query::AnnouncePeer {
                info_hash,
                port,
                implied_port,
                token,
            } => {
                let ip = *from.ip();
                let valid = [self.secrets.0, self.secrets.1]
                    .iter()
                    .any(|s| self.token(s, ip)[..] == **token);
                if !valid {
                    krpc::error(t, 203, "bad token")
                } else {
                    let port = if *implied_port { from.port() } else { *port };
                    if port != 0 {
                        self.store_peer(
                            now,
                            *info_hash,
                            SocketAddr::V4(SocketAddrV4::new(ip, port)),
                        );
                    }
                    krpc::response(t, &own, &Response::default())
                }
            }
            Query::Unknown => krpc::error(t, 204, "Method Unknown"),
        };
        self.stats.queries_answered += 1;
        self.outbox.push_back((from, reply));
    }

    fn store_peer(&mut self, now: Instant, info_hash: NodeId, peer: SocketAddr) {
        if !self.store.contains_key(&info_hash) && self.store.len() >= MAX_STORED_TORRENTS {
            // Full: forget expired peers, but scan at most once a minute.
            if now.saturating_duration_since(self.last_expire) >= Duration::from_secs(60) {
                self.expire(now);
            }
            if self.store.len() >= MAX_STORED_TORRENTS {
                return;
            }
        }
        let peers = self.store.entry(info_hash).or_default();
        if let Some(e) = peers.iter_mut().find(|(a, _)| *a == peer) {
            e.1 = now;
        } else if peers.len() < MAX_STORED_PEERS {
            peers.push((peer, now));
        } else if let Some(oldest) = peers.iter_mut().min_by_key(|(_, t)| *t) {
            *oldest = (peer, now);
        }
    }

    fn expire(&mut self, now: Instant) {
        self.last_expire = now;
        self.store.retain(|_, peers| {
            peers.retain(|(_, t)| now.saturating_duration_since(*t) < PEER_TTL);
            !peers.is_empty()
        });
    }

    /// Expires queries, lookups, stored peers and secrets; rejoins when
    /// the table is nearly empty.
    pub fn handle_timeout(&mut self, now: Instant) {
        let late: Vec<u16> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.sent) >= QUERY_TIMEOUT)
            .map(|(t, _)| *t)
            .collect();
        for t in late {
            if let Some(p) = self.pending.remove(&t) {
                self.on_failure(now, p);
            }
        }
        let ids: Vec<u64> = self.lookups.keys().copied().collect();
        for id in ids {
            self.advance(now, id);
        }
        if now.saturating_duration_since(self.secret_at) >= SECRET_EVERY {
            self.secret_at = now;
            let mut fresh = [0u8; 20];
            self.rng.fill(&mut fresh);
            self.secrets = (fresh, self.secrets.0);
            self.expire(now);
        }
        if now >= self.next_join {
            if self.table.len() < K {
                self.rejoin(now);
            } else {
                self.next_join = now + REJOIN_EVERY;
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due.
    pub fn poll_timeout(&self) -> Instant {
        let mut next = self.next_join.min(self.secret_at + SECRET_EVERY);
        if let Some(p) = self.pending.values().map(|p| p.sent + QUERY_TIMEOUT).min() {
            next = next.min(p);
        }
        if let Some(l) = self
            .lookups
            .values()
            .map(|l| l.started + LOOKUP_TIMEOUT)
            .min()
        {
            next = next.min(l);
        }
        next
    }

    pub fn poll_transmit(&mut self) -> Option<(SocketAddrV4, Vec<u8>)> {
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<NodeEvent> {
        self.events.pop_front()
    }

    pub fn stats(&self) -> NodeStats {
        NodeStats {
            nodes: self.table.len(),
            stored_torrents: self.store.len(),
            ..self.stats
        }
    }

    /// The table's nodes, for saving.
    pub fn contacts(&self) -> Vec<Contact> {
        self.table.contacts()
    }
}

fn cand(dist: [u8; 20]) -> Cand {
    Cand {
        dist,
        state: CandState::New,
        token: None,
    }
}

/// Token buckets per source address and for everyone.
struct RateState {
    per_addr: HashMap<Ipv4Addr, (f64, Instant)>,
    total: (f64, Instant),
}

/// Takes a token from a bucket refilled at `rate` a second up to `burst`.
fn take(bucket: &mut (f64, Instant), now: Instant, rate: f64, burst: f64) -> bool {
    let (tokens, last) = bucket;
    *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
    *last = now;
    if *tokens >= 1.0 {
        *tokens -= 1.0;
        true
    } else {
        false
    }
}

impl RateState {
    fn new(now: Instant) -> RateState {
        RateState {
            per_addr: HashMap::new(),
            total: (TOTAL_RATE, now),
        }
    }

    fn allow(&mut self, ip: Ipv4Addr, now: Instant) -> bool {
        if self.per_addr.len() >= MAX_TRACKED && !self.per_addr.contains_key(&ip) {
            // Forget the addresses heard from least recently.
            let mut seen: Vec<Instant> = self.per_addr.values().map(|v| v.1).collect();
            seen.sort();
            let cut = seen[seen.len() / 2];
            self.per_addr.retain(|_, v| v.1 > cut);
        }
        let mine = self.per_addr.entry(ip).or_insert((PER_ADDR_BURST, now));
        take(mine, now, PER_ADDR_RATE, PER_ADDR_BURST)
            && take(&mut self.total, now, TOTAL_RATE, TOTAL_RATE)
    }
}

#[cfg(test)]
mod tests;
