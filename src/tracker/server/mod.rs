//! `ringtorrent tracker`: an HTTP (BEP 3, 23, 7, 48) and UDP (BEP 15)
//! tracker. [`Tracker`] is the swarm table, without I/O: fed announces and
//! scrapes with the time, it answers with peers and counts. `http` and
//! `udp` turn requests into its calls and its answers into bytes; `run`
//! serves both on one thread.
//!
//! Memory is bounded: at most [`Limits::max_torrents`] swarms and
//! [`Limits::max_peers`] peers in all (a new torrent or peer past a cap is
//! answered but not stored), and a peer not heard from for twice the
//! announce interval is forgotten.

pub mod http;
pub(crate) mod http_conn;
pub mod run;
#[cfg(test)]
mod tests;
pub mod udp;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::Event;
use crate::metainfo::InfoHash;

/// Sizes and times the tracker keeps to.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Asked of every peer between announces.
    pub interval: Duration,
    pub max_torrents: usize,
    /// Peers in all swarms together.
    pub max_peers: usize,
    /// Peers handed out per announce, at most (`numwant` asks for fewer).
    pub max_numwant: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            interval: Duration::from_secs(300),
            max_torrents: 100_000,
            max_peers: 1_000_000,
            max_numwant: 200,
        }
    }
}

/// One announce, however it arrived.
#[derive(Debug, Clone)]
pub struct Announce {
    pub info_hash: InfoHash,
    /// The address the request came from, with the port the peer gave.
    pub addr: SocketAddr,
    pub left: u64,
    pub event: Event,
    /// `None`: the default of 50.
    pub numwant: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceReply {
    pub interval: u32,
    pub seeders: u32,
    pub leechers: u32,
    /// Other peers of the swarm, the requester never among them.
    pub peers: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeEntry {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

/// Why an announce was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("torrent not on this tracker's allow-list")]
    NotAllowed,
    #[error("port 0")]
    BadPort,
}

/// Counters for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub announces: u64,
    pub scrapes: u64,
    pub refused: u64,
    /// Torrents or peers not stored because a cap was reached.
    pub over_cap: u64,
}

const DEFAULT_NUMWANT: usize = 50;

struct Peer {
    addr: SocketAddr,
    seeder: bool,
    last: Instant,
}

#[derive(Default)]
struct Swarm {
    /// A vector for sampling in O(numwant), an index to find a peer.
    peers: Vec<Peer>,
    index: HashMap<SocketAddr, usize>,
    seeders: u32,
    completed: u32,
}

impl Swarm {
    fn remove(&mut self, at: usize) {
        let gone = self.peers.swap_remove(at);
        self.index.remove(&gone.addr);
        if gone.seeder {
            self.seeders -= 1;
        }
        if let Some(moved) = self.peers.get(at) {
            self.index.insert(moved.addr, at);
        }
    }

    fn counts(&self) -> ScrapeEntry {
        ScrapeEntry {
            seeders: self.seeders,
            completed: self.completed,
            leechers: self.peers.len() as u32 - self.seeders,
        }
    }
}

pub struct Tracker {
    limits: Limits,
    swarms: HashMap<InfoHash, Swarm>,
    peers: usize,
    /// `None`: every torrent is served.
    allow: Option<HashSet<InfoHash>>,
    rng: fastrand::Rng,
    stats: Stats,
}

impl Tracker {
    pub fn new(limits: Limits, allow: Option<HashSet<InfoHash>>) -> Tracker {
        Tracker {
            limits,
            swarms: HashMap::new(),
            peers: 0,
            allow,
            rng: fastrand::Rng::new(),
            stats: Stats::default(),
        }
    }

    /// Replaces the allow-list (`None`: serve everything). Swarms of
    /// torrents no longer allowed are dropped.
    pub fn set_allow(&mut self, allow: Option<HashSet<InfoHash>>) {
        if let Some(a) = &allow {
            let before = self.swarms.len();
            self.swarms.retain(|h, _| a.contains(h));
            if self.swarms.len() != before {
                self.peers = self.swarms.values().map(|s| s.peers.len()).sum();
            }
        }
        self.allow = allow;
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn interval(&self) -> Duration {
        self.limits.interval
    }

    /// Peers in all swarms.
    pub fn peer_count(&self) -> usize {
        self.peers
    }

    pub fn announce(&mut self, now: Instant, a: &Announce) -> Result<AnnounceReply, Refusal> {
        if self
            .allow
            .as_ref()
            .is_some_and(|l| !l.contains(&a.info_hash))
        {
            self.stats.refused += 1;
            return Err(Refusal::NotAllowed);
        }
        if a.addr.port() == 0 {
            self.stats.refused += 1;
            return Err(Refusal::BadPort);
        }
        self.stats.announces += 1;
        let addr = SocketAddr::new(a.addr.ip().to_canonical(), a.addr.port());
        let room_for_torrent = self.swarms.len() < self.limits.max_torrents;
        let room_for_peer = self.peers < self.limits.max_peers;
        let swarm = match self.swarms.get_mut(&a.info_hash) {
            Some(s) => s,
            None if a.event == Event::Stopped => return Ok(self.empty_reply()),
            None if !room_for_torrent => {
                self.stats.over_cap += 1;
                return Ok(self.empty_reply());
            }
            None => self.swarms.entry(a.info_hash).or_default(),
        };
        let seeder = a.left == 0;
        match (swarm.index.get(&addr).copied(), a.event) {
            (Some(at), Event::Stopped) => {
                swarm.remove(at);
                self.peers -= 1;
            }
            (None, Event::Stopped) => {}
            (Some(at), _) => {
                let p = &mut swarm.peers[at];
                if seeder && !p.seeder {
                    swarm.seeders += 1;
                    // A download finished here, whether or not the
                    // client said `completed`.
                    swarm.completed += 1;
                } else if !seeder && p.seeder {
                    swarm.seeders -= 1;
                }
                p.seeder = seeder;
                p.last = now;
            }
            (None, event) if room_for_peer => {
                swarm.index.insert(addr, swarm.peers.len());
                swarm.peers.push(Peer {
                    addr,
                    seeder,
                    last: now,
                });
                if seeder {
                    swarm.seeders += 1;
                    if event == Event::Completed {
                        swarm.completed += 1;
                    }
                }
                self.peers += 1;
            }
            (None, _) => self.stats.over_cap += 1,
        }
        let want = a
            .numwant
            .map_or(DEFAULT_NUMWANT, |n| n as usize)
            .min(self.limits.max_numwant);
        let peers = if a.event == Event::Stopped {
            Vec::new()
        } else {
            sample(&swarm.peers, addr, want, &mut self.rng)
        };
        let counts = swarm.counts();
        if swarm.peers.is_empty() {
            self.swarms.remove(&a.info_hash);
        }
        Ok(AnnounceReply {
            interval: self.limits.interval.as_secs() as u32,
            seeders: counts.seeders,
            leechers: counts.leechers,
            peers,
        })
    }

    fn empty_reply(&self) -> AnnounceReply {
        AnnounceReply {
            interval: self.limits.interval.as_secs() as u32,
            ..AnnounceReply::default()
        }
    }

    /// Counts for each torrent asked about (zeros for one we do not know).
    pub fn scrape(&mut self, hashes: &[InfoHash]) -> Vec<ScrapeEntry> {
        self.stats.scrapes += 1;
        hashes
            .iter()
            .map(|h| self.swarms.get(h).map(Swarm::counts).unwrap_or_default())
            .collect()
    }

    /// Forgets peers not heard from for twice the interval (and a minute),
    /// and swarms left empty.
    pub fn expire(&mut self, now: Instant) {
        let ttl = self.limits.interval * 2 + Duration::from_secs(60);
        let mut removed = 0;
        self.swarms.retain(|_, s| {
            let mut at = 0;
            while at < s.peers.len() {
                if now.saturating_duration_since(s.peers[at].last) > ttl {
                    s.remove(at);
                    removed += 1;
                } else {
                    at += 1;
                }
            }
            !s.peers.is_empty()
        });
        self.peers -= removed;
    }
}

/// Up to `want` peers of `peers` other than `me`, chosen at random: the
/// whole swarm shuffled when it is small, else `want` in a row from a
/// random place (the vector's order is itself stirred by every departure,
/// and a picked run costs no hashing or allocation beyond the answer).
fn sample(peers: &[Peer], me: SocketAddr, want: usize, rng: &mut fastrand::Rng) -> Vec<SocketAddr> {
    let others = peers.iter().filter(|p| p.addr != me).map(|p| p.addr);
    if peers.len() <= want + 1 {
        let mut all: Vec<SocketAddr> = others.collect();
        rng.shuffle(&mut all);
        all.truncate(want);
        return all;
    }
    let start = rng.usize(..peers.len());
    peers[start..]
        .iter()
        .chain(&peers[..start])
        .filter(|p| p.addr != me)
        .map(|p| p.addr)
        .take(want)
        .collect()
}

/// Reads an allow-list: one hex info-hash per line; blank lines and lines
/// starting with `#` are skipped.
pub fn read_allow_list(path: &std::path::Path) -> std::io::Result<HashSet<InfoHash>> {
    let text = std::fs::read_to_string(path)?;
    let mut out = HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let h = InfoHash::parse(line).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}:{}: {e}", path.display(), n + 1),
            )
        })?;
        out.insert(h);
    }
    Ok(out)
}
