//! A simulated swarm: every node is a torrent with one shard, connections
//! are in-memory byte pipes, the disk is a `Vec`, and time is virtual. The
//! whole protocol logic runs as in the engine, in milliseconds.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::*;
use crate::bitfield::Bitfield;
use crate::metainfo::{FileAttr, FileEntry, InfoHash};
use crate::torrent::{Inbox, TorrentConfig, TorrentEvent};

struct Node {
    addr: SocketAddr,
    shard: Shard,
    shared: Arc<Shared>,
    data: Vec<u8>,
    events: Receiver<TorrentEvent>,
    /// Corrupts every block this node uploads.
    liar: bool,
}

/// (node, conn) <-> (node, conn)
type Link = ((usize, ConnId), (usize, ConnId));

struct Sim {
    nodes: Vec<Node>,
    links: Vec<Link>,
    now: Instant,
    /// Bytes handed to `handle_recv` per call, to exercise the decoder.
    chunk: usize,
}

fn info(data: &[u8], piece_length: u32) -> Info {
    Info {
        name: "sim".into(),
        piece_length,
        pieces: data
            .chunks(piece_length as usize)
            .map(crate::hash::sha1)
            .collect(),
        files: vec![FileEntry {
            path: vec!["sim".into()],
            length: data.len() as u64,
            offset: 0,
            attr: FileAttr::default(),
        }],
        private: false,
        multi_file: false,
        total_length: data.len() as u64,
    }
}

impl Sim {
    fn new(chunk: usize) -> Sim {
        Sim {
            nodes: Vec::new(),
            links: Vec::new(),
            now: Instant::now(),
            chunk,
        }
    }

    fn add(&mut self, info: &Arc<Info>, data: Option<&[u8]>, config: TorrentConfig) -> usize {
        let i = self.nodes.len();
        let have = match data {
            Some(_) => Bitfield::full(info.piece_count()),
            None => Bitfield::new(info.piece_count()),
        };
        let (tx, rx) = channel();
        let shared = Arc::new(Shared::new(
            info.clone(),
            InfoHash([9; 20]),
            &have,
            config,
            vec![Inbox::new(Box::new(|| {}))],
            tx,
        ));
        self.nodes.push(Node {
            addr: format!("10.0.0.{}:6881", i + 1).parse().unwrap(),
            shard: Shard::new(0, shared.clone(), self.now),
            shared,
            data: data.map_or_else(|| vec![0; info.total_length as usize], <[u8]>::to_vec),
            events: rx,
            liar: false,
        });
        i
    }

    /// `from` learns of `to` and dials it.
    fn dial(&mut self, from: usize, to: usize) {
        let addr = self.nodes[to].addr;
        let n = &mut self.nodes[from];
        let mut reg = lock(&n.shared.registry);
        reg.add(self.now, [addr]);
        let due = reg.due(self.now);
        drop(reg);
        for (a, _) in due {
            n.shard.handle_msg(self.now, ShardMsg::Connect(a));
        }
    }

    fn peer_of(&self, node: usize, conn: ConnId) -> Option<(usize, ConnId)> {
        self.links.iter().find_map(|&(a, b)| {
            if a == (node, conn) {
                Some(b)
            } else if b == (node, conn) {
                Some(a)
            } else {
                None
            }
        })
    }

    /// Runs until nothing moves for a while or `done` holds; returns steps.
    fn run(&mut self, max_steps: usize, done: impl Fn(&Sim) -> bool) -> usize {
        let mut idle = 0;
        for step in 0..max_steps {
            if done(self) {
                return step;
            }
            let moved = self.step();
            idle = if moved { 0 } else { idle + 1 };
            if idle > 2000 {
                return step;
            }
        }
        max_steps
    }

    fn step(&mut self) -> bool {
        let mut moved = false;
        for i in 0..self.nodes.len() {
            for msg in self.nodes[i].shared.inboxes[0].drain() {
                moved = true;
                let now = self.now;
                self.nodes[i].shard.handle_msg(now, msg);
            }
            while let Some(action) = self.nodes[i].shard.poll_action() {
                moved = true;
                self.act(i, action);
            }
            for conn in self.nodes[i].shard.take_dirty() {
                moved |= self.deliver(i, conn);
            }
        }
        self.now += Duration::from_millis(1);
        for n in &mut self.nodes {
            n.shard.handle_tick(self.now);
        }
        moved
    }

    fn act(&mut self, i: usize, action: Action) {
        let now = self.now;
        match action {
            Action::Connect { conn, addr } => {
                let Some(j) = self.nodes.iter().position(|n| n.addr == addr) else {
                    self.nodes[i]
                        .shard
                        .handle_connect_failed(now, conn, "refused");
                    return;
                };
                let from = self.nodes[i].addr;
                if lock(&self.nodes[j].shared.registry)
                    .incoming(from)
                    .is_none()
                {
                    self.nodes[i]
                        .shard
                        .handle_closed(now, conn, PeerError::Closed);
                    return;
                }
                let theirs = self.nodes[j].shard.handle_accepted(now, from);
                self.links.push(((i, conn), (j, theirs)));
                self.nodes[i].shard.handle_connected(now, conn, None);
            }
            Action::Close { conn } => {
                if let Some((j, other)) = self.peer_of(i, conn) {
                    self.links
                        .retain(|&(a, b)| a != (i, conn) && b != (i, conn));
                    self.nodes[j]
                        .shard
                        .handle_closed(now, other, PeerError::Closed);
                }
            }
            Action::Read { key, begin, len } => {
                let n = &mut self.nodes[i];
                let at = (u64::from(key.piece) * u64::from(n.shared.info.piece_length)
                    + u64::from(begin)) as usize;
                let len = len as usize;
                let mut buf = n.shared.read_pool.take(len);
                buf.copy_from_slice(&n.data[at..at + len]);
                if n.liar {
                    buf.iter_mut().for_each(|b| *b ^= 0x55);
                }
                n.shard.handle_read(now, key, buf, Ok(()));
            }
            Action::Hash { piece, buf } => {
                let n = &mut self.nodes[i];
                let ok = crate::hash::sha1(&buf) == n.shared.info.pieces[piece as usize];
                n.shard.handle_hashed(now, piece, buf, ok);
            }
            Action::Write { piece, buf } => {
                let n = &mut self.nodes[i];
                let at = (u64::from(piece) * u64::from(n.shared.info.piece_length)) as usize;
                n.data[at..at + buf.len()].copy_from_slice(&buf);
                n.shard.handle_written(now, piece, buf, Ok(()));
            }
        }
    }

    /// Moves one connection's queued bytes to its peer, in chunks.
    fn deliver(&mut self, i: usize, conn: ConnId) -> bool {
        let Some((j, other)) = self.peer_of(i, conn) else {
            return false;
        };
        let Some(q) = self.nodes[i].shard.send_queue(conn) else {
            return false;
        };
        let bytes: Vec<u8> = q
            .front(usize::MAX)
            .iter()
            .flat_map(|b| b.iter().copied())
            .collect();
        if bytes.is_empty() {
            return false;
        }
        let now = self.now;
        self.nodes[i].shard.handle_sent(now, conn, bytes.len());
        for chunk in bytes.chunks(self.chunk) {
            self.nodes[j].shard.handle_recv(now, other, chunk);
        }
        true
    }

    fn complete(&self, i: usize) -> bool {
        self.nodes[i].shared.is_complete()
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 7) as u8).collect()
}

#[test]
fn one_seeder_one_leecher() {
    let data = payload(1_000_003);
    let info = Arc::new(info(&data, 64 * 1024));
    let mut sim = Sim::new(1000);
    let seed = sim.add(&info, Some(&data), TorrentConfig::default());
    let leech = sim.add(&info, None, TorrentConfig::default());
    sim.dial(leech, seed);
    sim.run(200_000, |s| s.complete(leech));
    assert!(sim.complete(leech));
    assert!(sim.nodes[leech].data == data, "every byte arrived intact");
    assert_eq!(
        sim.nodes[leech].events.try_recv(),
        Ok(TorrentEvent::Complete)
    );
    let st = &sim.nodes[leech].shared.stats;
    assert_eq!(Stats::get(&st.downloaded), data.len() as u64);
    assert_eq!(Stats::get(&st.hash_failures), 0);
    assert_eq!(
        Stats::get(&sim.nodes[seed].shared.stats.uploaded),
        data.len() as u64
    );
    assert!(!sim.nodes[leech].shard.latency().is_empty());
    // Both are seeds now: the connection ends.
    sim.run(100, |s| s.links.is_empty());
    assert!(sim.links.is_empty());
}

#[test]
fn one_seeder_many_leechers_who_trade() {
    let data = payload(3 * 256 * 1024 + 5);
    let info = Arc::new(info(&data, 16 * 1024));
    let mut sim = Sim::new(4096);
    let cfg = TorrentConfig {
        choker: crate::choker::ChokerConfig {
            slots: 1,
            ..Default::default()
        },
        ..TorrentConfig::default()
    };
    let seed = sim.add(&info, Some(&data), cfg.clone());
    let leechers: Vec<usize> = (0..4).map(|_| sim.add(&info, None, cfg.clone())).collect();
    for &l in &leechers {
        sim.dial(l, seed);
        for &m in &leechers {
            if m > l {
                sim.dial(l, m);
            }
        }
    }
    sim.run(2_000_000, |s| leechers.iter().all(|&l| s.complete(l)));
    for &l in &leechers {
        assert!(sim.nodes[l].data == data, "leecher {l} has the right bytes");
    }
    // With two upload slots at the seeder, leechers must have fed each other.
    let traded: u64 = leechers
        .iter()
        .map(|&l| Stats::get(&sim.nodes[l].shared.stats.uploaded))
        .sum();
    assert!(traded > 0, "leechers uploaded nothing to each other");
}

#[test]
fn several_seeders_feed_one_leecher() {
    let data = payload(2 * 1024 * 1024);
    let info = Arc::new(info(&data, 32 * 1024));
    let mut sim = Sim::new(16384 + 13);
    let seeds: Vec<usize> = (0..3)
        .map(|_| sim.add(&info, Some(&data), TorrentConfig::default()))
        .collect();
    // Short pipelines, so that one seeder cannot take every request at once.
    let cfg = TorrentConfig {
        initial_pipeline: 8,
        min_pipeline: 4,
        max_pipeline: 8,
        ..TorrentConfig::default()
    };
    let leech = sim.add(&info, None, cfg);
    for &s in &seeds {
        sim.dial(leech, s);
    }
    sim.run(500_000, |s| s.complete(leech));
    assert!(sim.nodes[leech].data == data);
    let from_each: Vec<u64> = seeds
        .iter()
        .map(|&s| Stats::get(&sim.nodes[s].shared.stats.uploaded))
        .collect();
    assert!(
        from_each.iter().all(|&u| u > 0),
        "every seeder contributed: {from_each:?}"
    );
}

#[test]
fn a_lying_seeder_is_banned_and_the_download_still_completes() {
    let data = payload(600_000);
    let info = Arc::new(info(&data, 16 * 1024));
    let mut sim = Sim::new(7000);
    let honest = sim.add(&info, Some(&data), TorrentConfig::default());
    let liar = sim.add(&info, Some(&data), TorrentConfig::default());
    sim.nodes[liar].liar = true;
    let leech = sim.add(&info, None, TorrentConfig::default());
    // Only the liar at first: its data fails, it gets banned and dropped.
    sim.dial(leech, liar);
    sim.run(500_000, |s| {
        Stats::get(&s.nodes[leech].shared.stats.peers_banned) > 0 && s.links.is_empty()
    });
    assert!(sim.links.is_empty(), "the liar was disconnected");
    assert_eq!(
        Stats::get(&sim.nodes[leech].shared.stats.pieces_verified),
        0
    );
    // The pieces it spoiled are wanted again and come from an honest seeder.
    sim.dial(leech, honest);
    sim.run(500_000, |s| s.complete(leech));
    assert!(sim.nodes[leech].data == data, "only verified data was kept");
    let st = &sim.nodes[leech].shared.stats;
    assert!(Stats::get(&st.hash_failures) >= 1);
    assert_eq!(Stats::get(&st.peers_banned), 1);
    let liar_peer = crate::torrent::registry::PeerIdent {
        ip: sim.nodes[liar].addr.ip(),
        id: sim.nodes[liar].shared.peer_id,
    };
    assert!(lock(&sim.nodes[leech].shared.registry).is_banned(&liar_peer));
    // And it is never dialled again.
    sim.dial(leech, liar);
    sim.run(1000, |s| s.links.len() > 1);
    assert_eq!(sim.links.len(), 0, "connections: {:?}", sim.links);
}

#[test]
fn a_liar_is_told_apart_from_an_honest_peer_on_its_address() {
    // Both seeders on one IP, both feeding the same piece: the failed piece
    // has two contributors, so it is fetched again from one peer and its
    // blocks compared. Only the liar is banned; the honest peer stays.
    let data = payload(4 * 1024 * 1024);
    let info = Arc::new(info(&data, 4 * 1024 * 1024));
    let mut sim = Sim::new(7000);
    // The liar first, so that its bytes win the races.
    let liar = sim.add(&info, Some(&data), TorrentConfig::default());
    let honest = sim.add(&info, Some(&data), TorrentConfig::default());
    sim.nodes[liar].liar = true;
    sim.nodes[honest].addr = "10.0.0.9:6881".parse().unwrap();
    sim.nodes[liar].addr = "10.0.0.9:6882".parse().unwrap();
    let leech = sim.add(&info, None, TorrentConfig::default());
    sim.dial(leech, honest);
    sim.dial(leech, liar);
    sim.run(1_000_000, |s| s.complete(leech));
    assert!(sim.nodes[leech].data == data, "only verified data was kept");
    let st = &sim.nodes[leech].shared.stats;
    // One 4 MiB piece: the two seeders' pipelines (128 blocks each) split
    // it, it fails once, and the single-peer copy settles who lied, with
    // no further strikes needed.
    assert_eq!(Stats::get(&st.hash_failures), 1);
    assert_eq!(Stats::get(&st.peers_banned), 1, "one peer banned");
    assert_eq!(sim.links.len(), 1, "the honest peer is still connected");
    let ident = |n: usize| crate::torrent::registry::PeerIdent {
        ip: sim.nodes[n].addr.ip(),
        id: sim.nodes[n].shared.peer_id,
    };
    let reg = lock(&sim.nodes[leech].shared.registry);
    assert!(reg.is_banned(&ident(liar)), "the liar is banned");
    assert!(!reg.is_banned(&ident(honest)), "its neighbour is not");
}

#[test]
fn wrong_info_hash_is_refused_and_counted() {
    let data = payload(50_000);
    let info = Arc::new(info(&data, 16 * 1024));
    let mut sim = Sim::new(100);
    let seed = sim.add(&info, Some(&data), TorrentConfig::default());
    let now = sim.now;
    let n = &mut sim.nodes[seed];
    lock(&n.shared.registry).incoming("10.9.9.9:1".parse().unwrap());
    let conn = n.shard.handle_accepted(now, "10.9.9.9:1".parse().unwrap());
    let hs = crate::wire::Handshake::ours(InfoHash([1; 20]), crate::wire::PeerId([2; 20]));
    n.shard.handle_recv(now, conn, &hs.encode());
    assert!(matches!(n.shard.poll_action(), Some(Action::Close { conn: c }) if c == conn));
    let d = lock(&n.shared.stats.disconnects).clone();
    assert_eq!(d.get("wrong_info_hash"), Some(&1));
    assert_eq!(Stats::get(&n.shared.stats.protocol_errors), 1);
}

#[test]
fn choked_requests_are_rejected_for_fast_peers() {
    // A leecher that is never unchoked (no slots) gets rejects, not silence.
    let data = payload(100_000);
    let info = Arc::new(info(&data, 16 * 1024));
    let mut sim = Sim::new(500);
    let cfg = TorrentConfig {
        choker: crate::choker::ChokerConfig {
            slots: 0,
            optimistic_every: 1,
            seed_turn: 3,
        },
        ..TorrentConfig::default()
    };
    let seed = sim.add(&info, Some(&data), cfg);
    let _ = seed;
    let now = sim.now;
    let n = &mut sim.nodes[seed];
    let peer: SocketAddr = "10.9.9.9:1".parse().unwrap();
    lock(&n.shared.registry).incoming(peer);
    let conn = n.shard.handle_accepted(now, peer);
    let mut bytes = crate::wire::Handshake::ours(InfoHash([9; 20]), crate::wire::PeerId([2; 20]))
        .encode()
        .to_vec();
    crate::wire::Message::HaveNone.encode(&mut bytes);
    let req = crate::wire::BlockRef {
        piece: 0,
        begin: 0,
        len: 16384,
    };
    crate::wire::Message::Request(req).encode(&mut bytes);
    n.shard.handle_recv(now, conn, &bytes);
    let out: Vec<u8> = n
        .shard
        .send_queue(conn)
        .unwrap()
        .front(100)
        .iter()
        .flat_map(|b| b.to_vec())
        .collect();
    let mut reject = Vec::new();
    crate::wire::Message::Reject(req).encode(&mut reject);
    assert!(
        out.windows(reject.len()).any(|w| w == reject),
        "a reject was queued"
    );
}

#[test]
fn many_pieces_in_odd_chunks() {
    let data = payload(5 * 16384 * 7 + 1234);
    let info = Arc::new(info(&data, 5 * 16384));
    let mut sim = Sim::new(7);
    let seed = sim.add(&info, Some(&data), TorrentConfig::default());
    let leech = sim.add(&info, None, TorrentConfig::default());
    sim.dial(leech, seed);
    sim.run(2_000_000, |s| s.complete(leech));
    assert!(sim.nodes[leech].data == data);
    let _unused: HashMap<u8, u8> = HashMap::new();
}

#[test]
fn simultaneous_dials_leave_exactly_one_connection() {
    let data = payload(400_000);
    let info = Arc::new(info(&data, 16 * 1024));
    let mut sim = Sim::new(4096);
    let seed = sim.add(&info, Some(&data), TorrentConfig::default());
    let leech = sim.add(&info, None, TorrentConfig::default());
    // Both dial before either handshake lands.
    sim.dial(leech, seed);
    sim.dial(seed, leech);
    sim.run(200_000, |s| s.complete(leech));
    assert!(sim.complete(leech), "the race killed both connections");
    assert!(sim.nodes[leech].data == data);
    let dups = |n: usize| {
        lock(&sim.nodes[n].shared.stats.disconnects)
            .get("duplicate")
            .copied()
            .unwrap_or(0)
    };
    // One connection was closed as a duplicate (the other end just sees it close).
    assert!(dups(seed) + dups(leech) >= 1);
}
