//! The DHT (BEP 5): one node per session, on a UDP port of its own, that
//! finds peers for our public torrents and magnet links and announces us
//! for them.
//!
//! `krpc` is the message codec, `table` the routing table, `node` the
//! node itself without I/O (answers, iterative lookups, tokens, storage,
//! rate limits); this module is its driver: a thread that owns the UDP
//! socket, feeds the node, runs each torrent's lookup on a schedule and
//! keeps the node id and table across restarts.
//!
//! Why not the `mainline` crate: it drops every message whose transaction
//! id is not exactly four bytes, and libtorrent's are two, so a libtorrent
//! node could never query ours (see README, "The DHT").

mod krpc;
mod node;
mod table;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use krpc::{KrpcError, Msg as KrpcMsg, NodeId};
pub use node::{MAX_PENDING, MAX_STORED_PEERS, MAX_STORED_TORRENTS, Node, NodeEvent, NodeStats};

use crate::bencode::{self, Encoder};
use crate::metainfo::InfoHash;

/// The routers most clients bootstrap from.
pub const DEFAULT_BOOTSTRAP: &[&str] = &[
    "router.bittorrent.com:6881",
    "dht.transmissionbt.com:6881",
    "dht.libtorrent.org:25401",
    "router.utorrent.com:6881",
];

/// A torrent's lookup and announce, when the last one reached nodes.
const ANNOUNCE_EVERY: Duration = Duration::from_secs(15 * 60);
/// After an announce that reached nobody: 2 s, doubling up to 5 min.
const FIRST_RETRY: Duration = Duration::from_secs(2);
const MAX_RETRY: Duration = Duration::from_secs(5 * 60);
/// A magnet link's lookup, while its metadata is wanted: soon again
/// while it finds nobody, else now and then.
const LOOKUP_AGAIN: Duration = Duration::from_secs(2);
const LOOKUP_EVERY: Duration = Duration::from_secs(15);
/// Lookups running at once (each sends at most a few queries at a time).
const MAX_LOOKUPS: usize = 16;
/// Nodes saved for the next start.
const MAX_SAVED: usize = 200;

#[derive(Debug, Clone)]
pub struct DhtConfig {
    /// The UDP port (0: the caller's default, the listen port).
    pub port: u16,
    pub bind: Ipv4Addr,
    /// Nodes to join through (`host:port`); none: start alone, as the
    /// first node of a private DHT does.
    pub bootstrap: Vec<String>,
    /// Where the node id and the routing table are kept between runs.
    pub state_file: Option<PathBuf>,
}

impl DhtConfig {
    pub fn new(port: u16) -> DhtConfig {
        DhtConfig {
            port,
            bind: Ipv4Addr::UNSPECIFIED,
            bootstrap: DEFAULT_BOOTSTRAP.iter().map(|s| (*s).to_owned()).collect(),
            state_file: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DhtError {
    #[error("cannot start the DHT node on UDP port {port}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the DHT thread")]
    Thread(#[source] std::io::Error),
}

/// Counters of the node and its lookups.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DhtStats {
    #[serde(flatten)]
    pub node: NodeStats,
    pub lookups: u64,
    pub peers_found: u64,
    pub announces: u64,
    pub announce_failures: u64,
}

/// Who is told about the peers a lookup finds.
pub type PeerSink = Box<dyn FnMut(Vec<SocketAddr>) + Send>;

enum Cmd {
    Add {
        key: u64,
        info_hash: InfoHash,
        announce: Option<u16>,
        sink: PeerSink,
    },
    Remove(u64),
    Ping(SocketAddrV4),
    /// The bootstrap names, resolved.
    Bootstrap(Vec<SocketAddrV4>),
    Stop,
}

/// The node's counters, readable from any thread.
#[derive(Clone)]
pub struct StatsHandle(Arc<Mutex<DhtStats>>);

impl StatsHandle {
    pub fn get(&self) -> DhtStats {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The session's DHT node: a handle to its thread.
pub struct Dht {
    port: u16,
    cmds: Sender<Cmd>,
    stats: StatsHandle,
    thread: JoinHandle<()>,
}

impl Dht {
    /// Binds `cfg.port` and starts the node's thread. The bootstrap names
    /// are resolved on a thread of their own (a resolver with no network
    /// can take seconds), and joined through when they are.
    pub fn start(cfg: DhtConfig) -> Result<Dht, DhtError> {
        let bind_err = |source| DhtError::Bind {
            port: cfg.port,
            source,
        };
        let socket = UdpSocket::bind(SocketAddrV4::new(cfg.bind, cfg.port)).map_err(bind_err)?;
        let port = socket.local_addr().map_err(bind_err)?.port();
        let (tx, rx) = std::sync::mpsc::channel();
        {
            let (names, tx) = (cfg.bootstrap.clone(), tx.clone());
            std::thread::Builder::new()
                .name("dht-resolve".into())
                .spawn(move || {
                    // Names that do not resolve (no network) are left out.
                    let addrs: Vec<SocketAddrV4> = names
                        .iter()
                        .filter_map(|h| std::net::ToSocketAddrs::to_socket_addrs(h.as_str()).ok())
                        .flatten()
                        .filter_map(|a| match a {
                            SocketAddr::V4(a) => Some(a),
                            SocketAddr::V6(_) => None,
                        })
                        .collect();
                    log::info!(
                        "DHT: {} of {} bootstrap names resolved",
                        addrs.len(),
                        names.len()
                    );
                    let _ = tx.send(Cmd::Bootstrap(addrs));
                })
                .map_err(DhtError::Thread)?;
        }
        let stats = StatsHandle(Arc::new(Mutex::new(DhtStats::default())));
        let thread = {
            let stats = stats.clone();
            std::thread::Builder::new()
                .name("dht".into())
                .spawn(move || Driver::new(socket, cfg, stats).run(&rx))
                .map_err(DhtError::Thread)?
        };
        Ok(Dht {
            port,
            cmds: tx,
            stats,
            thread,
        })
    }

    /// The UDP port the node is on (told to peers in `port` messages).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Looks up `info_hash` now and then every so often, giving `sink` the
    /// peers found, and announcing us on `announce` if set, until
    /// [`remove`](Self::remove)d.
    pub fn add(&self, key: u64, info_hash: InfoHash, announce: Option<u16>, sink: PeerSink) {
        let _ = self.cmds.send(Cmd::Add {
            key,
            info_hash,
            announce,
            sink,
        });
    }

    pub fn remove(&self, key: u64) {
        let _ = self.cmds.send(Cmd::Remove(key));
    }

    /// A peer's `port` message: its node is pinged, and joins the table
    /// if it answers.
    pub fn learn(&self, node: SocketAddr) {
        if let SocketAddr::V4(a) = node {
            let _ = self.cmds.send(Cmd::Ping(a));
        }
    }

    pub fn stats_handle(&self) -> StatsHandle {
        self.stats.clone()
    }

    /// Saves the node id and table for the next start and stops.
    pub fn stop(self) {
        let _ = self.cmds.send(Cmd::Stop);
        let _ = self.thread.join();
    }
}

/// A torrent or magnet link on the schedule.
struct Entry {
    info_hash: InfoHash,
    announce: Option<u16>,
    sink: PeerSink,
    next: Instant,
    retry: Duration,
    /// Its lookup in flight, and the peers it found so far.
    running: Option<(u64, u64)>,
}

struct Driver {
    socket: UdpSocket,
    node: Node,
    cfg: DhtConfig,
    entries: BTreeMap<u64, Entry>,
    /// Lookup id to schedule key.
    lookups: BTreeMap<u64, u64>,
    stats: StatsHandle,
    counters: DhtStats,
    /// Nodes saved by the last run, to join through.
    known: Vec<(NodeId, SocketAddrV4)>,
}

impl Driver {
    fn new(socket: UdpSocket, cfg: DhtConfig, stats: StatsHandle) -> Driver {
        let now = Instant::now();
        let (id, known) = cfg
            .state_file
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
            .and_then(|b| load_state(&b))
            .unwrap_or_else(|| {
                let mut id = [0u8; 20];
                fastrand::fill(&mut id);
                (NodeId(id), Vec::new())
            });
        let node = Node::new(id, now, fastrand::Rng::new());
        Driver {
            socket,
            node,
            cfg,
            entries: BTreeMap::new(),
            lookups: BTreeMap::new(),
            stats,
            counters: DhtStats::default(),
            known,
        }
    }

    fn run(mut self, cmds: &Receiver<Cmd>) {
        let known = std::mem::take(&mut self.known);
        let port = self.socket.local_addr().map_or(0, |a| a.port());
        log::info!("DHT node on UDP port {port}, {} nodes saved", known.len());
        self.node.join(Instant::now(), Vec::new(), &known);
        let mut buf = [0u8; 2048];
        loop {
            loop {
                match cmds.try_recv() {
                    Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => {
                        self.save();
                        return;
                    }
                    Ok(cmd) => self.command(cmd),
                    Err(TryRecvError::Empty) => break,
                }
            }
            let now = Instant::now();
            self.schedule(now);
            self.flush();
            // Sleep until a datagram, the node's timer, or 100 ms (for
            // commands).
            let wait = self
                .node
                .poll_timeout()
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), Duration::from_millis(100));
            let _ = self.socket.set_read_timeout(Some(wait));
            match self.socket.recv_from(&mut buf) {
                Ok((n, from)) => self.node.handle_packet(Instant::now(), from, &buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                // An ICMP error for an earlier send, and the like.
                Err(_) => {}
            }
            let now = Instant::now();
            if now >= self.node.poll_timeout() {
                self.node.handle_timeout(now);
            }
            self.events(now);
            self.flush();
        }
    }

    fn command(&mut self, cmd: Cmd) {
        match cmd {
            Cmd::Add {
                key,
                info_hash,
                announce,
                sink,
            } => {
                self.entries.insert(
                    key,
                    Entry {
                        info_hash,
                        announce,
                        sink,
                        next: Instant::now(),
                        retry: FIRST_RETRY,
                        running: None,
                    },
                );
            }
            Cmd::Remove(key) => {
                self.entries.remove(&key);
            }
            Cmd::Ping(addr) => self.node.ping(Instant::now(), addr),
            Cmd::Bootstrap(addrs) => self.node.join(Instant::now(), addrs, &[]),
            Cmd::Stop => {}
        }
    }

    /// Starts the lookups that are due, a few at a time.
    fn schedule(&mut self, now: Instant) {
        let mut due: Vec<(Instant, u64)> = self
            .entries
            .iter()
            .filter(|(_, e)| e.running.is_none() && e.next <= now)
            .map(|(k, e)| (e.next, *k))
            .collect();
        due.sort();
        for (_, key) in due
            .into_iter()
            .take(MAX_LOOKUPS.saturating_sub(self.lookups.len()))
        {
            let Some(e) = self.entries.get_mut(&key) else {
                continue;
            };
            let id = self.node.get_peers(now, NodeId(e.info_hash.0), e.announce);
            e.running = Some((id, 0));
            self.lookups.insert(id, key);
        }
    }

    fn events(&mut self, now: Instant) {
        while let Some(ev) = self.node.poll_event() {
            match ev {
                NodeEvent::Peers { lookup, peers } => {
                    let Some(e) = self
                        .lookups
                        .get(&lookup)
                        .and_then(|k| self.entries.get_mut(k))
                    else {
                        continue;
                    };
                    if let Some((_, n)) = &mut e.running {
                        *n += peers.len() as u64;
                    }
                    self.counters.peers_found += peers.len() as u64;
                    (e.sink)(peers);
                }
                NodeEvent::Done { lookup, announced } => {
                    self.counters.lookups += 1;
                    let Some(key) = self.lookups.remove(&lookup) else {
                        continue;
                    };
                    let Some(e) = self.entries.get_mut(&key) else {
                        continue;
                    };
                    let found = e.running.take().map_or(0, |(_, n)| n);
                    e.next = match e.announce {
                        None if found == 0 => now + LOOKUP_AGAIN,
                        None => now + LOOKUP_EVERY,
                        Some(_) if announced > 0 => {
                            self.counters.announces += 1;
                            e.retry = FIRST_RETRY;
                            now + ANNOUNCE_EVERY
                        }
                        Some(_) => {
                            self.counters.announce_failures += 1;
                            let wait = e.retry;
                            e.retry = (e.retry * 2).min(MAX_RETRY);
                            now + wait
                        }
                    };
                    log::debug!(
                        "DHT: {found} peers for {}, {announced} announces",
                        e.info_hash.to_hex()
                    );
                }
            }
        }
        let mut s = self.stats.0.lock().unwrap_or_else(|p| p.into_inner());
        *s = DhtStats {
            node: self.node.stats(),
            ..self.counters
        };
    }

    fn flush(&mut self) {
        while let Some((to, bytes)) = self.node.poll_transmit() {
            // A full socket buffer drops the datagram, as the network may.
            let _ = self.socket.send_to(&bytes, to);
        }
    }

    fn save(&self) {
        let Some(path) = &self.cfg.state_file else {
            return;
        };
        let mut contacts = self.node.contacts();
        contacts.truncate(MAX_SAVED);
        let bytes = save_state(&self.node.id(), &contacts);
        if let Err(e) = crate::resume::store::write_atomic(path, &bytes) {
            log::warn!("cannot save the DHT state to {}: {e}", path.display());
        }
    }
}

/// `d2:id20:<id>5:nodes<26 bytes a node>e`.
fn save_state(id: &NodeId, contacts: &[(NodeId, SocketAddrV4)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.bytes(b"id").bytes(&id.0);
    e.bytes(b"nodes").bytes(&krpc::compact_nodes(contacts));
    e.end();
    out
}

fn load_state(bytes: &[u8]) -> Option<(NodeId, Vec<(NodeId, SocketAddrV4)>)> {
    let v = bencode::decode(bytes).ok()?;
    let d = v.as_dict()?;
    let id = NodeId(<[u8; 20]>::try_from(d.get(b"id")?.as_bytes()?).ok()?);
    let nodes = d
        .get(b"nodes")
        .and_then(|n| n.as_bytes())
        .unwrap_or_default()
        .chunks_exact(26)
        .map(krpc::contact)
        .collect();
    Some((id, nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let id = NodeId([5; 20]);
        let nodes = vec![(NodeId([6; 20]), "10.1.2.3:4".parse().unwrap())];
        assert_eq!(load_state(&save_state(&id, &nodes)), Some((id, nodes)));
        assert_eq!(load_state(b"garbage"), None);
    }
}
