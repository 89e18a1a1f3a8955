//! A simulated swarm on virtual time: every node is a session core with
//! several shard endpoints, connections are byte pipes with latency,
//! bandwidth and loss, disks are `Vec`s, and hashing is inline. The whole
//! protocol logic runs as in the engine, in milliseconds. Every random
//! choice comes from one seed, printed if a run fails, so any run replays.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::bitfield::Bitfield;
use crate::buffer::BufPool;
use crate::endpoint::{Admission, Endpoint, ShardCommand};
use crate::metainfo::{FileAttr, FileEntry, Info, InfoHash};
use crate::peer::PeerError;
use crate::session::core::{CoreConfig, Notice, SessionCore};
use crate::torrent::{Action, Budget, ConnId, TorrentConfig, TorrentCtx, TorrentId};
use crate::wire::PeerId;

/// A link's character, both directions alike.
#[derive(Debug, Clone, Copy)]
pub struct LinkSpec {
    pub latency: Duration,
    /// Bytes per second (0: unlimited).
    pub bandwidth: u64,
    /// Chance that a segment is lost and arrives a retransmission later.
    pub loss: f64,
}

impl Default for LinkSpec {
    fn default() -> Self {
        LinkSpec {
            latency: Duration::from_millis(1),
            bandwidth: 0,
            loss: 0.0,
        }
    }
}

/// A host's access link, shared by all of its connections (a fleet host
/// behind `tc`): bytes per second each way, 0 for unlimited. Its
/// connections take turns on the uplink a block at a time, as TCP flows
/// through one queue roughly do.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostLink {
    pub up: u64,
    pub down: u64,
}

/// Bytes a connection puts on a shared uplink per turn.
const UPLINK_TURN: usize = 16 * 1024 + 13;

/// TCP's retransmission delay for a lost segment (everything behind it
/// waits too: a stream keeps its order).
const RTO: Duration = Duration::from_millis(200);

/// One direction of a connection.
struct Pipe {
    to: (usize, usize, ConnId),
    queue: VecDeque<(Instant, Vec<u8>)>,
    /// When the link is free to put the next byte on the wire.
    free_at: Instant,
}

pub struct Node {
    /// Where the node listens.
    pub addr: SocketAddr,
    pub core: SessionCore,
    pub endpoints: Vec<Endpoint>,
    /// Each torrent's bytes on this node's disk.
    pub disks: HashMap<TorrentId, Vec<u8>>,
    pub ctxs: HashMap<TorrentId, Arc<TorrentCtx>>,
    pub notices: Vec<Notice>,
    /// Corrupts every block this node uploads.
    pub liar: bool,
    pub link: LinkSpec,
    pub host: HostLink,
    /// When the shared uplink and downlink are free again.
    up_free_at: Instant,
    down_free_at: Instant,
    /// Connections with bytes waiting for the shared uplink, in turn.
    backlog: VecDeque<(usize, ConnId)>,
    next_id: u32,
    pub budget: Arc<Budget>,
    /// Bytes this node put on the wire.
    pub sent: u64,
}

pub struct Sim {
    pub nodes: Vec<Node>,
    pipes: BTreeMap<(usize, usize, ConnId), Pipe>,
    pub now: Instant,
    /// When the run began (virtual time).
    pub start: Instant,
    pub rng: fastrand::Rng,
    /// Bytes handed to `handle_recv` at most per call, to exercise the decoder.
    pub chunk: usize,
    /// For nodes added from now on: peers unchoked at once, all torrents.
    pub max_unchoked: Option<usize>,
}

/// Prints the seed of a failing run.
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("simulated swarm failed; replay with seed {}", self.0);
        }
    }
}

pub const PORT: u16 = 6881;

/// A single-file torrent of `data` in pieces of `piece_length`.
pub fn info(name: &str, data: &[u8], piece_length: u32) -> Info {
    Info {
        name: name.into(),
        piece_length,
        pieces: data
            .chunks(piece_length as usize)
            .map(crate::hash::sha1)
            .collect(),
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files: vec![FileEntry {
            path: vec![name.into()],
            length: data.len() as u64,
            offset: 0,
            attr: FileAttr::default(),
        }],
        private: false,
        multi_file: false,
        total_length: data.len() as u64,
    }
}

/// Bytes that differ from piece to piece.
pub fn payload(len: usize, salt: u64) -> Vec<u8> {
    let mut x = salt.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

impl Sim {
    pub fn new(seed: u64) -> Sim {
        Sim {
            nodes: Vec::new(),
            pipes: BTreeMap::new(),
            now: Instant::now(),
            start: Instant::now(),
            rng: fastrand::Rng::with_seed(seed),
            chunk: 16 * 1024,
            max_unchoked: None,
        }
    }

    /// A node with `shards` endpoints.
    pub fn add_node(&mut self, shards: usize, link: LinkSpec) -> usize {
        self.add_host(shards, link, HostLink::default())
    }

    /// A node whose connections share one access link.
    pub fn add_host(&mut self, shards: usize, link: LinkSpec, host: HostLink) -> usize {
        let i = self.nodes.len();
        let peer_id = PeerId::generate_with(&mut self.rng);
        let core = SessionCore::new(
            CoreConfig {
                shards,
                max_connections: 200,
                upload_limit: None,
                download_limit: None,
                max_unchoked: self.max_unchoked,
                rechoke_interval: Duration::from_secs(10),
                seed: self.rng.u64(..),
            },
            peer_id,
        );
        let endpoints = (0..shards)
            .map(|s| {
                Endpoint::new(
                    s,
                    Admission::new(200, 64),
                    BufPool::with_byte_limit(0, 64 << 20),
                    Duration::from_secs(5),
                )
            })
            .collect();
        let ip = IpAddr::V4(std::net::Ipv4Addr::new(
            10,
            0,
            (i / 250) as u8,
            (i % 250 + 1) as u8,
        ));
        self.nodes.push(Node {
            addr: SocketAddr::new(ip, PORT),
            core,
            endpoints,
            disks: HashMap::new(),
            ctxs: HashMap::new(),
            notices: Vec::new(),
            liar: false,
            link,
            host,
            up_free_at: self.now,
            down_free_at: self.now,
            backlog: VecDeque::new(),
            next_id: 1,
            budget: Arc::new(Budget::new(crate::session::DEFAULT_MEMORY)),
            sent: 0,
        });
        i
    }

    pub fn addr(&self, node: usize) -> SocketAddr {
        self.nodes[node].addr
    }

    /// Adds a torrent to `node`: a seed of `data`, or an empty download.
    pub fn add_torrent(
        &mut self,
        node: usize,
        info: &Arc<Info>,
        data: Option<&[u8]>,
        config: TorrentConfig,
    ) -> TorrentId {
        self.add_torrent_with(node, info, data, config, None)
    }

    /// Like `add_torrent`, with each piece's priority.
    pub fn add_torrent_with(
        &mut self,
        node: usize,
        info: &Arc<Info>,
        data: Option<&[u8]>,
        config: TorrentConfig,
        priorities: Option<Vec<crate::picker::Priority>>,
    ) -> TorrentId {
        let now = self.now;
        let n = &mut self.nodes[node];
        let id = TorrentId(n.next_id);
        n.next_id += 1;
        let have = match data {
            Some(_) => Bitfield::full(info.piece_count()),
            None => Bitfield::new(info.piece_count()),
        };
        n.budget.ensure_at_least(4 * u64::from(info.piece_length));
        let unit = info.piece_length.min(crate::torrent::READ_UNIT) as usize;
        let ctx = Arc::new(TorrentCtx {
            id,
            info: info.clone(),
            info_hash: InfoHash(crate::hash::sha1(info.name.as_bytes())),
            info_hash_v2: None,
            peer_id: n.core.peer_id(),
            config,
            listen_port: n.addr.port(),
            metadata: None,
            dht_port: 0,
            budget: n.budget.clone(),
            read_pool: BufPool::new(unit, 16),
            wanted: priorities.as_ref().map(|pr| {
                let mut w = Bitfield::new(info.piece_count());
                for (i, p) in pr.iter().enumerate() {
                    if *p != crate::picker::Priority::Skip {
                        w.set(i as u32);
                    }
                }
                Arc::new(w)
            }),
        });
        n.disks.insert(
            id,
            data.map_or_else(|| vec![0; info.total_length as usize], <[u8]>::to_vec),
        );
        n.ctxs.insert(id, ctx.clone());
        n.core.add(now, ctx, have, priorities.as_deref());
        id
    }

    /// `from` learns of `to`'s address for torrent `t`.
    pub fn introduce(&mut self, from: usize, t: TorrentId, to: usize) {
        let addr = self.addr(to);
        let now = self.now;
        self.nodes[from].core.add_peers(now, t, &[addr]);
    }

    pub fn remove_torrent(&mut self, node: usize, t: TorrentId) {
        self.nodes[node].core.remove(t);
    }

    pub fn complete(&self, node: usize, t: TorrentId) -> bool {
        self.nodes[node].core.have(t).is_some_and(Bitfield::is_full)
    }

    /// Runs for `d` of virtual time (counters reach the cores once a second).
    pub fn settle(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// Runs until `done` holds or `limit` of virtual time passes; returns
    /// whether `done` held.
    pub fn run_until(&mut self, limit: Duration, done: impl Fn(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if done(self) {
                return true;
            }
            self.step();
            self.now += Duration::from_millis(1);
        }
        done(self)
    }

    fn step(&mut self) {
        let now = self.now;
        // Bytes due arrive.
        let due: Vec<(usize, usize, ConnId)> = self
            .pipes
            .iter()
            .filter(|(_, p)| p.queue.front().is_some_and(|(t, _)| *t <= now))
            .map(|(k, _)| *k)
            .collect();
        for key in due {
            while let Some(pipe) = self.pipes.get_mut(&key) {
                let Some((t, _)) = pipe.queue.front() else {
                    break;
                };
                if *t > now {
                    break;
                }
                let (_, bytes) = pipe.queue.pop_front().expect("checked above");
                let (n, s, c) = pipe.to;
                for chunk in bytes.chunks(self.chunk.max(1)) {
                    self.nodes[n].endpoints[s].handle_recv(now, c, chunk);
                }
            }
        }
        for n in 0..self.nodes.len() {
            for s in 0..self.nodes[n].endpoints.len() {
                if self.nodes[n].endpoints[s]
                    .poll_timeout()
                    .is_some_and(|t| t <= now)
                {
                    self.nodes[n].endpoints[s].handle_timeout(now);
                }
            }
            self.nodes[n].core.handle_timeout(now);
            self.pump(n);
            self.drain_uplink(n);
        }
    }

    /// Moves work between a node's core and endpoints until it settles.
    fn pump(&mut self, n: usize) {
        let now = self.now;
        for _ in 0..1000 {
            let mut moved = false;
            let cmds: Vec<(usize, ShardCommand)> = self.nodes[n].core.drain_commands().collect();
            for (s, cmd) in cmds {
                moved = true;
                self.nodes[n].endpoints[s].handle_command(now, cmd);
            }
            while let Some(notice) = self.nodes[n].core.poll_notice() {
                self.nodes[n].notices.push(notice);
            }
            for s in 0..self.nodes[n].endpoints.len() {
                let mut actions = VecDeque::new();
                let mut events = Vec::new();
                let mut dirty = Vec::new();
                self.nodes[n].endpoints[s].drain(&mut actions, &mut events, &mut dirty);
                moved |= !actions.is_empty() || !events.is_empty() || !dirty.is_empty();
                for a in actions {
                    self.act(n, s, a);
                }
                for c in dirty {
                    self.send(n, s, c);
                }
                for ev in events {
                    self.nodes[n].core.handle_event(now, s, ev);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn act(&mut self, n: usize, s: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { conn, addr, .. } => {
                let Some(m) = self.nodes.iter().position(|x| x.addr == addr) else {
                    self.nodes[n].endpoints[s].handle_connect_failed(now, conn, libc::ECONNREFUSED);
                    return;
                };
                // Like SO_REUSEPORT: the accepting shard by a hash of the pair.
                let ts = (conn.slot as usize + n) % self.nodes[m].endpoints.len();
                let from = SocketAddr::new(
                    self.nodes[n].addr.ip(),
                    40000 + (self.nodes[n].addr.port() % 100) * 100 + conn.slot as u16,
                );
                let Some(theirs) = self.nodes[m].endpoints[ts].handle_accepted(now, from) else {
                    self.nodes[n].endpoints[s].handle_connect_failed(now, conn, libc::ECONNREFUSED);
                    return;
                };
                for (a, b) in [
                    ((n, s, conn), (m, ts, theirs)),
                    ((m, ts, theirs), (n, s, conn)),
                ] {
                    self.pipes.insert(
                        a,
                        Pipe {
                            to: b,
                            queue: VecDeque::new(),
                            free_at: now,
                        },
                    );
                }
                self.nodes[n].endpoints[s].handle_connected(now, conn, Some(from));
            }
            Action::Close { conn } => {
                if let Some(p) = self.pipes.remove(&(n, s, conn)) {
                    self.pipes.remove(&p.to);
                    let (m, ts, theirs) = p.to;
                    self.nodes[m].endpoints[ts].handle_closed(now, theirs, PeerError::Closed);
                }
            }
            Action::Read {
                torrent,
                key,
                begin,
                len,
            } => {
                let node = &mut self.nodes[n];
                let ctx = &node.ctxs[&torrent];
                let at = (u64::from(key.piece) * u64::from(ctx.info.piece_length)
                    + u64::from(begin)) as usize;
                let mut buf = ctx.read_pool.take(len as usize);
                buf.copy_from_slice(&node.disks[&torrent][at..at + len as usize]);
                if node.liar {
                    buf.iter_mut().for_each(|b| *b ^= 0x55);
                }
                node.endpoints[s].handle_read(now, torrent, key, buf, Ok(()));
            }
            Action::Hash {
                torrent,
                piece,
                buf,
            } => {
                let node = &mut self.nodes[n];
                let ok = node.ctxs[&torrent].info.verify(piece, &buf, None);
                node.endpoints[s].handle_hashed(now, torrent, piece, buf, ok);
            }
            Action::Write {
                torrent,
                piece,
                buf,
            } => {
                let node = &mut self.nodes[n];
                if let Some(disk) = node.disks.get_mut(&torrent) {
                    let at = (u64::from(piece) * u64::from(node.ctxs[&torrent].info.piece_length))
                        as usize;
                    disk[at..at + buf.len()].copy_from_slice(&buf);
                }
                node.endpoints[s].handle_written(now, torrent, piece, buf, Ok(()));
            }
        }
    }

    /// Puts a connection's queued bytes on its link.
    fn send(&mut self, n: usize, s: usize, conn: ConnId) {
        if self.nodes[n].host.up > 0 {
            if !self.nodes[n].backlog.contains(&(s, conn)) {
                self.nodes[n].backlog.push_back((s, conn));
            }
            return;
        }
        let now = self.now;
        let link = self.nodes[n].link;
        // Everything queued, as the driver would send it in turn.
        let mut bytes: Vec<u8> = Vec::new();
        while let Some(q) = self.nodes[n].endpoints[s].send_queue(conn) {
            let front: Vec<u8> = q
                .front(usize::MAX)
                .iter()
                .flat_map(|b| b.iter().copied())
                .collect();
            if front.is_empty() {
                break;
            }
            bytes.extend_from_slice(&front);
            self.nodes[n].endpoints[s].handle_sent(now, conn, front.len());
        }
        if bytes.is_empty() {
            return;
        }
        let Some(pipe) = self.pipes.get_mut(&(n, s, conn)) else {
            return;
        };
        let start = pipe.free_at.max(now);
        let on_wire = if link.bandwidth == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(bytes.len() as f64 / link.bandwidth as f64)
        };
        pipe.free_at = start + on_wire;
        let mut at = pipe.free_at + link.latency;
        if link.loss > 0.0 && self.rng.f64() < link.loss {
            at += RTO;
        }
        // A stream keeps its order: nothing overtakes a delayed segment.
        if let Some((last, _)) = pipe.queue.back() {
            at = at.max(*last);
        }
        pipe.queue.push_back((at, bytes));
    }

    /// Gives node `n`'s shared uplink to its waiting connections in turn
    /// until it is busy past now.
    fn drain_uplink(&mut self, n: usize) {
        let now = self.now;
        let host = self.nodes[n].host;
        if host.up == 0 {
            return;
        }
        while self.nodes[n].up_free_at <= now {
            let Some((s, conn)) = self.nodes[n].backlog.pop_front() else {
                return;
            };
            let Some(q) = self.nodes[n].endpoints[s].send_queue(conn) else {
                continue;
            };
            let mut bytes: Vec<u8> = Vec::new();
            for b in q.front(UPLINK_TURN) {
                let room = UPLINK_TURN - bytes.len();
                bytes.extend_from_slice(&b[..b.len().min(room)]);
                if bytes.len() == UPLINK_TURN {
                    break;
                }
            }
            if bytes.is_empty() {
                continue;
            }
            self.nodes[n].endpoints[s].handle_sent(now, conn, bytes.len());
            self.nodes[n].backlog.push_back((s, conn));
            // The endpoint may have queued more in answer (a refill).
            self.pump(n);
            let Some(pipe) = self.pipes.get(&(n, s, conn)) else {
                continue;
            };
            let (m, _, _) = pipe.to;
            let node = &mut self.nodes[n];
            node.sent += bytes.len() as u64;
            node.up_free_at = node.up_free_at.max(now)
                + Duration::from_secs_f64(bytes.len() as f64 / host.up as f64);
            let mut at = node.up_free_at + node.link.latency;
            let to = &mut self.nodes[m];
            if to.host.down > 0 {
                at = at.max(to.down_free_at)
                    + Duration::from_secs_f64(bytes.len() as f64 / to.host.down as f64);
                to.down_free_at = at;
            }
            let Some(pipe) = self.pipes.get_mut(&(n, s, conn)) else {
                continue;
            };
            if let Some((last, _)) = pipe.queue.back() {
                at = at.max(*last);
            }
            pipe.queue.push_back((at, bytes));
        }
    }
}
