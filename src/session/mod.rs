//! A session: one per process, any number of torrents.
//!
//! The session owns the shard threads (each an io_uring driver around an
//! [`Endpoint`]), their listeners (one per shard on the same port), the
//! hashing pool, the announce worker, the resume saver and the coordinator
//! thread that runs the [`SessionCore`]. Torrents are added and removed
//! while it runs; everything that uses it (the CLI, the daemon, tests) goes
//! through [`Session`]'s methods and its events.

pub mod core;
mod resume;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use self::core::{CoreConfig, Notice, SessionCore, TorrentStats};
use crate::bitfield::Bitfield;
use crate::buffer::BufPool;
use crate::dht::{Dht, DhtConfig};
use crate::endpoint::{Admission, Endpoint, ShardEvent};
use crate::engine::LoopStats;
use crate::engine::driver::{Driver, DriverConfig};
use crate::engine::hasher::HashPool;
use crate::engine::inbox::{Inbound, Inbox};
use crate::lock;
use crate::lsd::Lsd;
use crate::metadata;
use crate::metainfo::{InfoHash, Metainfo};
pub use crate::picker::Priority;
use crate::resume::{ResumeState, store};
use crate::storage::{OpenMode, Storage, StorageError, WriteMode};
use crate::torrent::PeerInfo;
use crate::torrent::config::MIN_PIECES_IN_FLIGHT;
use crate::torrent::{Budget, TorrentConfig, TorrentCtx, TorrentId};
use crate::tracker::client::{Announcer, Totals, TrackerConfig, TrackerSetup, TrackerStat};
use crate::webseed::{WebMsg, WebSeedSetup, WebSeeds};
use crate::wire::PeerId;
use resume::{SaveTarget, Saver};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload what is on disk.
    Seed,
    /// Download, then upload.
    Fetch,
}

#[derive(Debug, Clone)]
pub struct ResumeConfig {
    pub dir: PathBuf,
    /// Seed: skip the full check when the files' sizes and mtimes match the
    /// state. (A fetch always trusts a state that matches its files.)
    pub trust: bool,
    /// How often a download saves its progress.
    pub interval: Duration,
}

/// Piece buffers in flight, all torrents together, unless configured: room
/// for a piece from each of the many peers a fleet host downloads from at
/// once. With 8 MiB (eight 1-MiB pieces among 16 peers) a 16-host 1-GiB
/// fleet took 1.10-1.23 of its lower bound; with 32 MiB 1.08 (perf/RESULTS.md
/// run 22). Peak memory is about this plus the program.
pub const DEFAULT_MEMORY: u64 = 32 << 20;

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// `[::]` takes both families (IPv4 peers appear as themselves), or
    /// IPv4 alone where the host has no IPv6.
    pub listen: SocketAddr,
    /// Shard threads (0: one per core).
    pub threads: usize,
    /// Hashing threads (0: hash on the shard threads).
    pub hash_threads: usize,
    pub map_uploads: bool,
    pub write_mode: WriteMode,
    /// Peer connections, all torrents together.
    pub max_connections: usize,
    /// Connections from or to one IP address.
    pub max_per_ip: usize,
    /// Memory for piece buffers in flight, all torrents together (raised to
    /// four pieces of the largest torrent).
    pub memory: u64,
    /// Files kept open, all shards together.
    pub max_open_files: usize,
    /// Session-wide rate limits, bytes per second.
    pub upload_limit: Option<u64>,
    pub download_limit: Option<u64>,
    /// Peers unchoked at once, all torrents together.
    pub max_unchoked: Option<usize>,
    /// Defaults for every torrent.
    pub torrent: TorrentConfig,
    pub tracker: TrackerConfig,
    pub resume: Option<ResumeConfig>,
    /// The DHT node (BEP 5); `None`: no DHT. Port 0 takes the listen port.
    pub dht: Option<DhtConfig>,
    /// Local service discovery (BEP 14) on the listen address's network.
    pub lsd: bool,
    /// MSE/PE for peer connections, both directions.
    pub encryption: crate::mse::Policy,
    /// Seeds the session's random choices (a fresh one if `None`).
    pub seed: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            listen: "[::]:6881".parse().expect("literal"),
            threads: 0,
            hash_threads: 0,
            map_uploads: true,
            write_mode: WriteMode::Direct,
            max_connections: 200,
            max_per_ip: 32,
            memory: DEFAULT_MEMORY,
            max_open_files: 256,
            upload_limit: None,
            download_limit: None,
            max_unchoked: None,
            torrent: TorrentConfig::default(),
            dht: None,
            lsd: false,
            encryption: crate::mse::Policy::PreferPlain,
            tracker: TrackerConfig::default(),
            resume: None,
            seed: None,
        }
    }
}

/// A torrent to add.
#[derive(Debug, Clone)]
pub struct AddTorrent {
    pub metainfo: Metainfo,
    /// The payload is `dir/<info.name>`.
    pub dir: PathBuf,
    pub mode: Mode,
    /// Peers to dial besides the trackers'.
    pub peers: Vec<SocketAddr>,
    pub upload_limit: Option<u64>,
    pub download_limit: Option<u64>,
    /// Each file's priority (`Priority::Skip`: not wanted); `None`: every
    /// file at normal priority.
    pub files: Option<Vec<Priority>>,
    /// Check the data even if resume state vouches for it.
    pub force_check: bool,
    /// Another name for the payload (`DIR/<name>`) than the torrent's.
    pub name: Option<String>,
    /// Files or directories renamed, in order: (path from the torrent's
    /// name down, new last component), as [`Info::rename_path`] takes them.
    ///
    /// [`Info::rename_path`]: crate::metainfo::Info::rename_path
    pub renames: Vec<(String, String)>,
    /// Trackers to use instead of the torrent's (tiers of URLs).
    pub trackers: Option<Vec<Vec<String>>>,
    /// Once set, stops this torrent's start-up check (as the session's
    /// cancel flag does for every torrent).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Web seeds (BEP 19) a download also fetches from; the torrent's
    /// `url-list` by default. Those not HTTP(S), and repeats, are left out.
    pub web_seeds: Vec<String>,
}

impl AddTorrent {
    /// A torrent with the defaults: every file wanted, its own name and
    /// trackers, resume state trusted.
    pub fn new(metainfo: Metainfo, dir: PathBuf, mode: Mode) -> AddTorrent {
        AddTorrent {
            dir,
            mode,
            peers: Vec::new(),
            upload_limit: None,
            download_limit: None,
            files: None,
            force_check: false,
            name: None,
            renames: Vec::new(),
            trackers: None,
            cancel: None,
            web_seeds: metainfo.url_list.clone(),
            metainfo,
        }
    }
}

/// The web seeds of `urls` we can fetch from (HTTP and HTTPS), each once.
fn usable_web_seeds(urls: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for u in urls {
        if (u.starts_with("http://") || u.starts_with("https://")) && !out.contains(u) {
            out.push(u.clone());
        }
    }
    out
}

/// Each piece's priority from its files' (the highest of the files it
/// touches; pad files do not count), and the pieces wanted.
pub fn piece_priorities(
    info: &crate::metainfo::Info,
    files: &[Priority],
) -> (Vec<Priority>, Bitfield) {
    let mut pr = vec![Priority::Skip; info.piece_count() as usize];
    for (i, f) in info.files.iter().enumerate() {
        if f.attr.pad {
            continue;
        }
        let p = files.get(i).copied().unwrap_or_default();
        for piece in info.file_pieces(i) {
            let slot = &mut pr[piece as usize];
            *slot = (*slot).max(p);
        }
    }
    let mut wanted = Bitfield::new(info.piece_count());
    for (i, p) in pr.iter().enumerate() {
        if *p != Priority::Skip {
            wanted.set(i as u32);
        }
    }
    (pr, wanted)
}

#[cfg(test)]
#[test]
fn file_priorities_become_piece_priorities() {
    use crate::metainfo::{FileAttr, FileEntry, Info};
    let file = |name: &str, offset: u64, length: u64| FileEntry {
        path: vec!["top".into(), name.into()],
        length,
        offset,
        attr: FileAttr::default(),
    };
    // Pieces of 10 bytes: a = 0..15 (pieces 0, 1), b = 15..35 (1, 2, 3), c = 35..40 (3).
    let info = Info {
        name: "top".into(),
        piece_length: 10,
        pieces: vec![[0; 20]; 4],
        pieces_v2: Vec::new(),
        v2_layers: Vec::new(),
        files: vec![file("a", 0, 15), file("b", 15, 20), file("c", 35, 5)],
        private: false,
        multi_file: true,
        total_length: 40,
    };
    let (pr, wanted) = piece_priorities(&info, &[Priority::High, Priority::Skip, Priority::Low]);
    // A piece shared by a wanted and an unwanted file is wanted, at the
    // wanted file's priority.
    assert_eq!(
        pr,
        [
            Priority::High,
            Priority::High,
            Priority::Skip,
            Priority::Low
        ]
    );
    assert_eq!(wanted.ones().collect::<Vec<_>>(), [0, 1, 3]);
}

/// What adding a torrent found.
#[derive(Debug, Clone)]
pub struct Added {
    pub id: TorrentId,
    /// Seconds spent checking existing data.
    pub check_seconds: f64,
    /// Pieces taken from resume state instead of being checked.
    pub resumed_pieces: u32,
    /// Pieces present when it started.
    pub have: u32,
    /// Which ones.
    pub pieces: Bitfield,
}

/// What the session tells its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Every piece is verified and written.
    Complete(TorrentId),
    /// The torrent cannot go on.
    Failed(TorrentId, String),
    /// A removed torrent is gone.
    Removed(TorrentId),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the session")]
    Start(#[source] std::io::Error),
    #[error("none of the data in {0} matches the torrent")]
    NoData(PathBuf),
    #[error("resume state (choose another --state-dir, or --no-resume)")]
    Resume(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(transparent)]
    Rename(#[from] crate::metainfo::RenameError),
    #[error("the torrent is already in the session")]
    Duplicate,
    #[error("the session has stopped")]
    Stopped,
}

/// What the coordinator thread receives.
pub enum CoordMsg {
    /// Events of one shard's loop iteration.
    Shard(usize, Vec<ShardEvent>),
    Add(Box<Adding>),
    Remove(TorrentId),
    Peers(TorrentId, Vec<SocketAddr>),
    Announced(TorrentId, bool),
    SetLimits(TorrentId, Option<u64>, Option<u64>),
    SessionLimits(Option<u64>, Option<u64>),
    Reannounce(TorrentId),
    TrackerStats(TorrentId, Vec<TrackerStat>),
    /// Announce an info-hash whose metadata is being fetched, under `key`
    /// (not a torrent id), sending its peers to `peers`.
    Lookup {
        key: u64,
        info_hash: InfoHash,
        tiers: Vec<Vec<String>>,
        peers: Sender<Vec<SocketAddr>>,
    },
    EndLookup(u64),
    /// A resume save found the payload gone.
    SaveFailed(TorrentId, String),
    /// The last save of a removed torrent is done (or failed).
    Saved(TorrentId),
    /// A shard's loop has ended.
    ShardStopped(usize),
    /// A web seed worker of a torrent asks or reports.
    Web(TorrentId, WebMsg),
    Stop,
}

/// A torrent on its way into the coordinator.
pub struct Adding {
    ctx: Arc<TorrentCtx>,
    have: Bitfield,
    storage: Arc<Storage>,
    save: Option<SaveTarget>,
    peers: Vec<SocketAddr>,
    tiers: Vec<Vec<String>>,
    limits: (Option<u64>, Option<u64>),
    priorities: Option<Vec<Priority>>,
    /// Web seeds to fetch from, the files' layout, and their names on the
    /// servers.
    web_seeds: Option<WebSeedSetup>,
}

/// Counters of the whole session, at the end.
#[derive(Debug, Clone, Default)]
pub struct SessionReport {
    pub loops: LoopStats,
    pub hash_seconds: f64,
    /// Connections refused before they named a torrent, by reason.
    pub refused: BTreeMap<&'static str, u64>,
    /// Each torrent's counters at the end.
    pub torrents: HashMap<TorrentId, TorrentStats>,
    pub announces: HashMap<TorrentId, (u64, u64)>,
    /// The DHT node's counters (`None` without a DHT).
    pub dht: Option<crate::dht::DhtStats>,
}

/// What the coordinator publishes for `Session::stats` and the like.
#[derive(Default)]
struct Published {
    stats: HashMap<TorrentId, TorrentStats>,
    /// Tracker announces and failures per torrent.
    announces: HashMap<TorrentId, (u64, u64)>,
    trackers: HashMap<TorrentId, Vec<TrackerStat>>,
    peers: HashMap<TorrentId, Vec<PeerInfo>>,
    have: HashMap<TorrentId, Bitfield>,
}

// The daemon shares one session between its threads.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<Session>();
};

/// The threads a shutdown joins.
struct Running {
    coordinator: JoinHandle<SessionReport>,
    shards: Vec<JoinHandle<std::io::Result<LoopStats>>>,
    pool: Option<HashPool>,
}

/// Shared by reference between threads (`Session` is `Sync`): its methods
/// post messages or read published counters.
pub struct Session {
    cfg: SessionConfig,
    /// The shards' listening sockets (copies), until `listen` is called.
    listening: Vec<OwnedFd>,
    peer_id: PeerId,
    port: u16,
    threads: usize,
    budget: Arc<Budget>,
    next_id: AtomicU32,
    to_coordinator: Sender<CoordMsg>,
    /// Taken by the first `shutdown`.
    threads_running: Mutex<Option<Running>>,
    inboxes: Vec<Arc<Inbox>>,
    events: Mutex<Receiver<SessionEvent>>,
    published: Arc<Mutex<Published>>,
    /// Set to stop a start-up check under way.
    cancel: Arc<AtomicBool>,
    /// Download directories open, by device and inode, shared by torrents.
    dirs: Mutex<HashMap<(u64, u64), std::sync::Weak<OwnedFd>>>,
    /// Announce keys of metadata fetches (above every torrent id).
    next_lookup: AtomicU64,
    /// The DHT node's UDP port (0: no DHT).
    dht_port: u16,
    dht_stats: Option<crate::dht::StatsHandle>,
}

/// A torrent known by its info-hash only (a magnet link): where to look
/// for peers that have its metadata.
/// The key a torrent's announces go under with the announcer, the DHT and
/// LSD: one per name, as a hybrid has a v2 one too. (Metadata lookups take
/// keys from 1 << 40 up.)
fn swarm_key(t: TorrentId, v2: bool) -> u64 {
    u64::from(t.0) | if v2 { 1 << 41 } else { 0 }
}

#[derive(Debug, Clone)]
pub struct FindMetadata {
    pub info_hash: InfoHash,
    /// A v2 link's SHA-256 info-hash: the metadata is checked against it,
    /// and its piece layers fetched with it.
    pub info_hash_v2: Option<[u8; 32]>,
    /// The `info` dictionary if known already: only the piece layers are
    /// fetched.
    pub known_info: Option<Arc<[u8]>>,
    /// Trackers to announce to while fetching (tiers of URLs).
    pub trackers: Vec<Vec<String>>,
    pub peers: Vec<SocketAddr>,
    /// Give up after this long without the metadata.
    pub timeout: Option<Duration>,
}

impl Session {
    pub fn start(cfg: SessionConfig) -> Result<Session, SessionError> {
        let threads = match cfg.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let seed = cfg.seed.unwrap_or_else(|| fastrand::u64(..));
        let mut rng = fastrand::Rng::with_seed(seed);
        let peer_id = PeerId::generate_with(&mut rng);
        let listeners = bind(cfg.listen, threads)?;
        let port = local_port(&listeners[0]);
        let listening = listeners
            .iter()
            .map(|l| l.try_clone())
            .collect::<Result<Vec<_>, _>>()
            .map_err(SessionError::Start)?;
        let inboxes: Vec<Arc<Inbox>> = (0..threads)
            .map(|_| Inbox::new().map(Arc::new))
            .collect::<Result<_, _>>()
            .map_err(SessionError::Start)?;
        let pool = match cfg.hash_threads {
            0 => None,
            n => Some(HashPool::start(n, inboxes.clone()).map_err(SessionError::Start)?),
        };
        let (to_coordinator, from_all) = channel();
        let driver_cfg = DriverConfig {
            map_uploads: cfg.map_uploads,
            direct_writes: cfg.write_mode == WriteMode::Direct,
            max_open_files: cfg.max_open_files.div_ceil(threads).max(8),
            encryption: cfg.encryption,
        };
        let mut shards = Vec::with_capacity(threads);
        for (i, listener) in listeners.into_iter().enumerate() {
            let admission = Admission::new(
                cfg.max_connections.div_ceil(threads),
                cfg.max_per_ip.div_ceil(threads).max(1),
            );
            // Spare download buffers: a share of the memory budget.
            let buffers = BufPool::with_byte_limit(0, cfg.memory as usize);
            let endpoint = Endpoint::new(i, admission, buffers, cfg.torrent.handshake_timeout);
            let inbox = inboxes[i].clone();
            let tx = pool.as_ref().and_then(HashPool::sender);
            let out = to_coordinator.clone();
            let t = std::thread::Builder::new()
                .name(format!("shard-{i}"))
                .spawn(move || {
                    Driver::new(endpoint, Some(listener), inbox, tx, out, driver_cfg)?.run()
                })
                .map_err(SessionError::Start)?;
            shards.push(t);
        }
        let (events_tx, events) = channel();
        let published = Arc::new(Mutex::new(Published::default()));
        let core = SessionCore::new(
            CoreConfig {
                shards: threads,
                max_connections: cfg.max_connections,
                upload_limit: cfg.upload_limit,
                download_limit: cfg.download_limit,
                max_unchoked: cfg.max_unchoked,
                rechoke_interval: cfg.torrent.rechoke_interval,
                seed: rng.u64(..),
            },
            peer_id,
        );
        let announcer = Announcer::spawn().map_err(SessionError::Start)?;
        let dht = match cfg.dht.clone() {
            Some(mut d) => {
                if d.port == 0 {
                    d.port = port;
                }
                // Without it we still work (trackers, peers, PEX, LSD).
                Dht::start(d)
                    .inspect_err(|e| log::warn!("no DHT: {}", crate::error_chain(e)))
                    .ok()
            }
            None => None,
        };
        let dht_port = dht.as_ref().map_or(0, Dht::port);
        let lsd_bind = match cfg.listen.ip() {
            std::net::IpAddr::V4(ip) => ip,
            std::net::IpAddr::V6(_) => std::net::Ipv4Addr::UNSPECIFIED,
        };
        // Loopback has no multicast, and no neighbours to find.
        let lsd = if cfg.lsd && !lsd_bind.is_loopback() {
            Lsd::start(lsd_bind, port)
                .inspect_err(|e| log::warn!("no local service discovery: {e}"))
                .ok()
        } else {
            None
        };
        let dht_stats = dht.as_ref().map(Dht::stats_handle);
        let saver = Saver::spawn(to_coordinator.clone()).map_err(SessionError::Start)?;
        let coordinator = {
            let c = Coordinator {
                core,
                inboxes: inboxes.clone(),
                events: events_tx,
                published: published.clone(),
                announcer: Some(announcer),
                dht,
                lsd,
                saver: Some(saver),
                storages: HashMap::new(),
                web: HashMap::new(),
                saves: HashMap::new(),
                dirty: HashMap::new(),
                save_interval: cfg
                    .resume
                    .as_ref()
                    .map_or(Duration::from_secs(1), |r| r.interval),
                tracker: cfg.tracker.clone(),
                port,
                to_self: to_coordinator.clone(),
                announces: HashMap::new(),
                stopped_shards: 0,
            };
            std::thread::Builder::new()
                .name("coordinator".into())
                .spawn(move || c.run(from_all))
                .map_err(SessionError::Start)?
        };
        Ok(Session {
            listening,
            budget: Arc::new(Budget::new(cfg.memory)),
            cfg,
            peer_id,
            port,
            threads,
            next_id: AtomicU32::new(1),
            to_coordinator,
            threads_running: Mutex::new(Some(Running {
                coordinator,
                shards,
                pool,
            })),
            inboxes,
            events: Mutex::new(events),
            published,
            cancel: Arc::new(AtomicBool::new(false)),
            dirs: Mutex::new(HashMap::new()),
            next_lookup: AtomicU64::new(0),
            dht_port,
            dht_stats,
        })
    }

    /// Starts accepting peers. Until then the port is reserved but closed,
    /// so a peer that connects early (while the torrents are checked) is
    /// refused by the kernel and retries, instead of being turned away for
    /// a torrent not added yet.
    pub fn listen(&mut self) -> Result<(), SessionError> {
        let addr = self.cfg.listen;
        for l in self.listening.drain(..) {
            rustix::net::listen(&l, 1024).map_err(|e| SessionError::Listen {
                addr,
                source: e.into(),
            })?;
        }
        for inbox in &self.inboxes {
            inbox.post(Inbound::Listen);
        }
        Ok(())
    }

    /// The port peers reach us on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The DHT node's counters (`None` without a DHT).
    pub fn dht_stats(&self) -> Option<crate::dht::DhtStats> {
        self.dht_stats.as_ref().map(|h| h.get())
    }

    pub fn shards(&self) -> usize {
        self.threads
    }

    /// A flag that, once set (by a signal, say), stops a start-up check
    /// under way.
    pub fn set_cancel_flag(&mut self, flag: Arc<AtomicBool>) {
        self.cancel = flag;
    }

    /// The next event, waiting at most `timeout` (`None`: nothing came).
    pub fn next_event(&self, timeout: Duration) -> Option<SessionEvent> {
        lock(&self.events).recv_timeout(timeout).ok()
    }

    /// A torrent's counters (refreshed a few times a second).
    pub fn stats(&self, id: TorrentId) -> Option<TorrentStats> {
        lock(&self.published).stats.get(&id).cloned()
    }

    /// A torrent's connected peers (refreshed about once a second).
    pub fn peers(&self, id: TorrentId) -> Vec<PeerInfo> {
        lock(&self.published)
            .peers
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// What each of a torrent's trackers said last.
    pub fn trackers(&self, id: TorrentId) -> Vec<TrackerStat> {
        lock(&self.published)
            .trackers
            .get(&id)
            .cloned()
            .unwrap_or_default()
    }

    /// A torrent's verified and written pieces.
    pub fn have(&self, id: TorrentId) -> Option<Bitfield> {
        lock(&self.published).have.get(&id).cloned()
    }

    /// Sets the session-wide rate limits, bytes per second (`None`: none).
    pub fn set_session_limits(&self, up: Option<u64>, down: Option<u64>) {
        let _ = self.to_coordinator.send(CoordMsg::SessionLimits(up, down));
    }

    /// Announces a torrent to its trackers now.
    pub fn reannounce(&self, id: TorrentId) {
        let _ = self.to_coordinator.send(CoordMsg::Reannounce(id));
    }

    /// Tracker announces and failures of a torrent so far.
    pub fn announces(&self, id: TorrentId) -> (u64, u64) {
        lock(&self.published)
            .announces
            .get(&id)
            .copied()
            .unwrap_or((0, 0))
    }

    /// Adds a torrent: opens (or creates) its files, finds what is there
    /// (from resume state, else by checking on every core), and starts it.
    pub fn add(&self, t: AddTorrent) -> Result<Added, SessionError> {
        let start = Instant::now();
        let id = TorrentId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let mut info = t.metainfo.info.clone();
        if let Some(name) = &t.name {
            info.rename(name);
        }
        for (path, name) in &t.renames {
            info.rename_path(path, name)?;
        }
        let info = Arc::new(info);
        let open_mode = match t.mode {
            Mode::Seed => OpenMode::Seed,
            Mode::Fetch => OpenMode::Fetch,
        };
        let selection = t
            .files
            .as_ref()
            .filter(|f| f.iter().any(|p| *p != Priority::Normal))
            .map(|f| piece_priorities(&info, f));
        // Files to create: those holding a wanted piece.
        let needed: Option<Vec<bool>> = selection.as_ref().map(|(_, wanted)| {
            (0..info.files.len())
                .map(|i| info.file_pieces(i).any(|p| wanted.get(p)))
                .collect()
        });
        let mut storage = Storage::open_some(&info, &t.dir, open_mode, needed.as_deref())?;
        storage.share_dir(&mut lock(&self.dirs));
        let storage = Arc::new(storage);
        // Where this payload's resume state lives, if resume state is on.
        let resume = match &self.cfg.resume {
            Some(r) => {
                store::prepare_dir(&r.dir).map_err(|e| SessionError::Resume(Box::new(e)))?;
                let root = storage
                    .root()
                    .canonicalize()
                    .unwrap_or_else(|_| storage.root().to_path_buf());
                let path = r
                    .dir
                    .join(ResumeState::file_name(&t.metainfo.info_hash, &root));
                Some((
                    r.trust,
                    SaveTarget {
                        path,
                        root,
                        info_hash: t.metainfo.info_hash,
                    },
                ))
            }
            None => None,
        };
        let trusted = match &resume {
            Some((trust, target)) if !t.force_check && (*trust || t.mode != Mode::Seed) => {
                resumed(&t, &info, &storage, target).map(|mut have| {
                    // Pieces written after the last save, if the process
                    // ended before the next: checked, not fetched again.
                    let mut journal = Bitfield::new(info.piece_count());
                    for p in store::read_journal(&target.path) {
                        if p < info.piece_count() && !have.get(p) {
                            journal.set(p);
                        }
                    }
                    if journal.count_ones() > 0 {
                        let cancel = t.cancel.as_deref().unwrap_or(&self.cancel);
                        if let Ok(found) =
                            storage.check_pieces(&info, self.threads, cancel, &journal)
                        {
                            log::info!(
                                "{}: {} of {} journaled pieces verified",
                                storage.root().display(),
                                found.count_ones(),
                                journal.count_ones()
                            );
                            for p in found.ones() {
                                have.set(p);
                            }
                            // Saved now, so the journal is not needed again.
                            let saved = storage
                                .sync()
                                .map_err(|e| crate::error_chain(&e))
                                .and_then(|()| {
                                    target
                                        .write(&storage, have.clone())
                                        .map_err(|e| crate::error_chain(&e))
                                });
                            match saved {
                                Ok(()) => store::clear_journal(&target.path),
                                Err(e) => log::warn!("{e}"),
                            }
                        }
                    }
                    have
                })
            }
            _ => None,
        };
        let from_state = trusted.is_some();
        let resumed_pieces = trusted.as_ref().map_or(0, Bitfield::count_ones);
        let have = match trusted {
            Some(have) => have,
            None => {
                let cancel = t.cancel.as_deref().unwrap_or(&self.cancel);
                storage.check(&info, self.threads, cancel)?
            }
        };
        let check_seconds = start.elapsed().as_secs_f64();
        log::info!(
            "{}: {} of {} pieces present ({} in {check_seconds:.2} s)",
            storage.root().display(),
            have.count_ones(),
            info.piece_count(),
            if from_state {
                "from resume state"
            } else {
                "checked"
            },
        );
        if t.mode == Mode::Seed && have.count_ones() == 0 {
            return Err(SessionError::NoData(storage.root().to_path_buf()));
        }
        let save = resume.map(|(_, target)| target);
        if let Some(target) = &save
            && !from_state
            && have.count_ones() > 0
            && let Err(e) = target.write(&storage, have.clone())
        {
            // What a check found is saved at once: a restart does not check
            // again. (Checked pieces were read back from the files.)
            log::warn!("{}", crate::error_chain(&e));
        }
        // Seeding never changes the files: that one save is enough.
        let save = save.filter(|_| t.mode == Mode::Fetch);
        let mut config = self.cfg.torrent.clone();
        config.seed_only = t.mode == Mode::Seed;
        self.budget
            .ensure_at_least(MIN_PIECES_IN_FLIGHT * u64::from(info.piece_length));
        let unit = u64::from(info.piece_length.clamp(1, crate::torrent::READ_UNIT));
        let ctx = Arc::new(TorrentCtx {
            id,
            read_pool: BufPool::new(
                unit as usize,
                (config.read_cache / unit) as usize * self.threads + self.threads,
            ),
            info,
            info_hash: t.metainfo.info_hash,
            // A v2-only torrent is known by its v2 hash already.
            info_hash_v2: t
                .metainfo
                .info_hash_v2
                .filter(|_| t.metainfo.info.has_v1())
                .map(|h| InfoHash::truncated(&h)),
            peer_id: self.peer_id,
            config,
            listen_port: self.port,
            budget: self.budget.clone(),
            wanted: selection.as_ref().map(|(_, w)| Arc::new(w.clone())),
            metadata: (!t.metainfo.info.private).then(|| Arc::from(&t.metainfo.info_bytes[..])),
            dht_port: if t.metainfo.info.private {
                0
            } else {
                self.dht_port
            },
        });
        let adding = Adding {
            have: have.clone(),
            storage,
            save,
            peers: t.peers,
            tiers: t
                .trackers
                .clone()
                .unwrap_or_else(|| t.metainfo.tracker_tiers()),
            limits: (t.upload_limit, t.download_limit),
            priorities: selection.map(|(p, _)| p),
            web_seeds: Some(usable_web_seeds(&t.web_seeds))
                .filter(|urls| t.mode == Mode::Fetch && !urls.is_empty())
                .map(|urls| WebSeedSetup {
                    urls,
                    info: Arc::new(t.metainfo.info.clone()),
                    paths: Arc::from(crate::webseed::url_paths(&t.metainfo)),
                }),
            ctx,
        };
        self.to_coordinator
            .send(CoordMsg::Add(Box::new(adding)))
            .map_err(|_| SessionError::Stopped)?;
        Ok(Added {
            id,
            check_seconds,
            resumed_pieces,
            have: have.count_ones(),
            pieces: have,
        })
    }

    /// Stops a torrent and forgets it (its files stay).
    pub fn remove(&self, id: TorrentId) {
        let _ = self.to_coordinator.send(CoordMsg::Remove(id));
    }

    /// Fetches a torrent's metadata (BEP 9) from `find.peers` and the
    /// peers its trackers give, until it is verified or `cancel` (or the
    /// session's cancel flag) is set. Blocks; the torrent is then added
    /// with [`add`](Self::add) like any other.
    pub fn fetch_metadata(
        &self,
        find: FindMetadata,
        cancel: &AtomicBool,
    ) -> Result<metadata::Fetched, metadata::FetchError> {
        let key = (1 << 40) | self.next_lookup.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = std::sync::mpsc::channel();
        let announced = self
            .to_coordinator
            .send(CoordMsg::Lookup {
                key,
                info_hash: find.info_hash,
                tiers: find.trackers,
                peers: tx,
            })
            .is_ok();
        let mut cfg = metadata::FetchConfig::new(find.info_hash, self.peer_id);
        cfg.listen_port = self.port;
        cfg.timeout = find.timeout;
        cfg.encryption = self.cfg.encryption;
        cfg.info_hash_v2 = find.info_hash_v2;
        cfg.known_info = find.known_info;
        let stop = || cancel.load(Ordering::Relaxed) || self.cancel.load(Ordering::Relaxed);
        let out = metadata::fetch(&cfg, &find.peers, &rx, &stop);
        if announced {
            let _ = self.to_coordinator.send(CoordMsg::EndLookup(key));
        }
        out
    }

    /// Peers to dial for a torrent.
    pub fn add_peers(&self, id: TorrentId, peers: Vec<SocketAddr>) {
        let _ = self.to_coordinator.send(CoordMsg::Peers(id, peers));
    }

    /// A torrent's own rate limits, bytes per second (`None`: none).
    pub fn set_limits(&self, id: TorrentId, up: Option<u64>, down: Option<u64>) {
        let _ = self.to_coordinator.send(CoordMsg::SetLimits(id, up, down));
    }

    /// Stops everything: trackers hear `stopped` (within a second), shards
    /// close their connections, resume state is saved. Returns the final
    /// counters (empty after the first call).
    pub fn shutdown(&self) -> SessionReport {
        self.cancel.store(true, Ordering::Relaxed);
        let Some(running) = lock(&self.threads_running).take() else {
            return SessionReport::default();
        };
        let _ = self.to_coordinator.send(CoordMsg::Stop);
        let mut report = running.coordinator.join().unwrap_or_default();
        for t in running.shards {
            match t.join() {
                Ok(Ok(s)) => report.loops.add(&s),
                Ok(Err(e)) => log::error!("shard failed: {e}"),
                Err(_) => log::error!("a shard thread panicked"),
            }
        }
        if let Some(p) = running.pool {
            report.hash_seconds = p.nanos.load(Ordering::Relaxed) as f64 / 1e9;
            p.stop();
        }
        report.dht = self.dht_stats();
        report
    }
}

/// The pieces the saved resume state vouches for, if it matches the files.
fn resumed(
    t: &AddTorrent,
    info: &crate::metainfo::Info,
    storage: &Storage,
    target: &SaveTarget,
) -> Option<Bitfield> {
    let state = store::load(&target.path)?;
    let strict = t.mode == Mode::Seed;
    match state.usable(
        &t.metainfo.info_hash,
        info,
        &target.root,
        &storage.stamps(),
        storage.preexisting(),
        strict,
    ) {
        Ok(have) => Some(have),
        Err(why) => {
            log::warn!("not using the resume state: {why}; checking the data");
            None
        }
    }
}

/// One socket per shard bound to the same address (`SO_REUSEPORT`): once
/// listening, the kernel spreads incoming connections over the shards.
/// `[::]` listens on both families; on a host without IPv6 it falls back
/// to `0.0.0.0`.
fn bind(addr: SocketAddr, shards: usize) -> Result<Vec<OwnedFd>, SessionError> {
    match bind_all(addr, shards) {
        Err(e) if dual_stack(addr) && no_ipv6(&e) => {
            let v4 = SocketAddr::from(([0, 0, 0, 0], addr.port()));
            log::info!("no IPv6 here ({e}); listening on {v4}");
            bind_all(v4, shards).map_err(|source| SessionError::Listen { addr: v4, source })
        }
        r => r.map_err(|source| SessionError::Listen { addr, source }),
    }
}

fn dual_stack(addr: SocketAddr) -> bool {
    addr.is_ipv6() && addr.ip().is_unspecified()
}

fn no_ipv6(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL | libc::EPROTONOSUPPORT)
    )
}

fn bind_all(addr: SocketAddr, shards: usize) -> std::io::Result<Vec<OwnedFd>> {
    let mut out = Vec::with_capacity(shards);
    let mut bind_to = addr;
    for _ in 0..shards {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM.cloexec(),
            None,
        )?;
        if dual_stack(addr) {
            // Whatever `net.ipv6.bindv6only` says.
            s.set_only_v6(false)?;
        }
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&bind_to.into())?;
        let fd = OwnedFd::from(s);
        // Port 0: the first bind picked one; the others take the same.
        bind_to.set_port(local_port(&fd));
        out.push(fd);
    }
    Ok(out)
}

fn local_port(fd: &OwnedFd) -> u16 {
    rustix::net::getsockname(fd)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())
        .map_or(0, |a| a.port())
}

/// The coordinator thread: runs the core, carries its commands to the
/// shards, and does the session's slow work around it (announces, resume
/// saves, published counters).
struct Coordinator {
    core: SessionCore,
    inboxes: Vec<Arc<Inbox>>,
    events: Sender<SessionEvent>,
    published: Arc<Mutex<Published>>,
    announcer: Option<Announcer>,
    dht: Option<Dht>,
    lsd: Option<Lsd>,
    saver: Option<Saver>,
    storages: HashMap<TorrentId, Arc<Storage>>,
    /// Torrents downloading from web seeds (dropped: their workers stop).
    web: HashMap<TorrentId, WebSeeds>,
    saves: HashMap<TorrentId, SaveTarget>,
    /// Torrents with pieces done since their last save.
    dirty: HashMap<TorrentId, Instant>,
    save_interval: Duration,
    tracker: TrackerConfig,
    port: u16,
    to_self: Sender<CoordMsg>,
    announces: HashMap<TorrentId, (u64, u64)>,
    stopped_shards: usize,
}

/// How often counters are published for `Session::stats`.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

impl Coordinator {
    fn run(mut self, rx: Receiver<CoordMsg>) -> SessionReport {
        let mut next_publish = Instant::now();
        let mut stopping: Option<Instant> = None;
        loop {
            let now = Instant::now();
            // Asleep until the core's timer, a save or a publish is due.
            let mut wake = now + Duration::from_secs(3600);
            if self.core.has_changed() {
                wake = wake.min(next_publish);
            }
            if let Some(t) = self.core.poll_timeout() {
                wake = wake.min(t);
            }
            if let Some(t) = self.dirty.values().min() {
                wake = wake.min(*t + self.save_interval);
            }
            let msg = match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            };
            let now = Instant::now();
            let mut msgs: Vec<CoordMsg> = msg.into_iter().collect();
            // Everything queued, in one go.
            while let Ok(m) = rx.try_recv() {
                msgs.push(m);
            }
            for m in msgs {
                match m {
                    CoordMsg::Stop if stopping.is_none() => {
                        stopping = Some(now);
                        if let Some(a) = self.announcer.take() {
                            a.stop(Duration::from_secs(1));
                        }
                        if let Some(d) = self.dht.take() {
                            d.stop();
                        }
                        if let Some(l) = self.lsd.take() {
                            l.stop();
                        }
                        self.core.shutdown();
                    }
                    m => self.handle(Instant::now(), m),
                }
            }
            let now = Instant::now();
            self.core.handle_timeout(now);
            self.flush(now);
            if now >= next_publish && self.core.has_changed() {
                self.publish();
                next_publish = now + PUBLISH_EVERY;
            }
            self.save_due(now, false);
            if let Some(since) = stopping {
                // The shards stop once their connections are closed; their
                // last events (counters) come before they say so.
                if self.stopped_shards == self.inboxes.len()
                    || now.duration_since(since) > Duration::from_secs(3)
                {
                    break;
                }
            }
        }
        self.save_due(Instant::now(), true);
        if let Some(s) = self.saver.take() {
            s.finish();
        }
        self.publish();
        let published = lock(&self.published);
        SessionReport {
            refused: self.core.refused().clone(),
            torrents: published.stats.clone(),
            announces: published.announces.clone(),
            ..SessionReport::default()
        }
    }

    fn handle(&mut self, now: Instant, m: CoordMsg) {
        match m {
            CoordMsg::Shard(shard, events) => {
                for ev in events {
                    self.core.handle_event(now, shard, ev);
                }
            }
            CoordMsg::Add(a) => self.add(now, *a),
            CoordMsg::Remove(t) => {
                self.web.remove(&t);
                self.core.remove(t);
            }
            CoordMsg::Web(t, msg) => self.core.handle_web(t, msg),
            CoordMsg::Peers(t, peers) => self.core.add_peers(now, t, &peers),
            CoordMsg::Lookup {
                key,
                info_hash,
                tiers,
                peers,
            } => self.lookup(key, info_hash, tiers, peers),
            CoordMsg::EndLookup(key) => {
                if let Some(a) = &self.announcer {
                    a.remove(key);
                }
                if let Some(d) = &self.dht {
                    d.remove(key);
                }
                if let Some(l) = &self.lsd {
                    l.remove(key);
                }
            }
            CoordMsg::Announced(t, ok) => {
                let e = self.announces.entry(t).or_insert((0, 0));
                e.0 += 1;
                if !ok {
                    e.1 += 1;
                }
            }
            CoordMsg::SetLimits(t, up, down) => self.core.set_limits(now, t, up, down),
            CoordMsg::SessionLimits(up, down) => self.core.set_session_limits(now, up, down),
            CoordMsg::Reannounce(t) => {
                if let Some(a) = &self.announcer {
                    a.reannounce(swarm_key(t, false));
                    a.reannounce(swarm_key(t, true));
                }
            }
            CoordMsg::TrackerStats(t, stats) => {
                lock(&self.published).trackers.insert(t, stats);
            }
            CoordMsg::SaveFailed(t, why) => {
                let _ = self.events.send(SessionEvent::Failed(t, why));
            }
            CoordMsg::Saved(t) => {
                let _ = self.events.send(SessionEvent::Removed(t));
            }
            CoordMsg::ShardStopped(_) => self.stopped_shards += 1,
            CoordMsg::Stop => {}
        }
    }

    fn add(&mut self, now: Instant, a: Adding) {
        let t = a.ctx.id;
        for inbox in &self.inboxes {
            inbox.post(Inbound::Storage(a.ctx.clone(), a.storage.clone()));
        }
        self.storages.insert(t, a.storage.clone());
        if let Some(s) = a.save {
            self.saves.insert(t, s);
        }
        let ctx = a.ctx.clone();
        self.core.add(now, a.ctx, a.have, a.priorities.as_deref());
        self.core.set_limits(now, t, a.limits.0, a.limits.1);
        self.core.add_peers(now, t, &a.peers);
        if let Some(setup) = a.web_seeds {
            let to_self = self.to_self.clone();
            let tell: crate::webseed::Tell = Arc::new(move |msg| {
                let _ = to_self.send(CoordMsg::Web(t, msg));
            });
            self.web
                .insert(t, WebSeeds::start(setup, a.storage.clone(), tell));
        }
        // Published before the first announce, which reports what is left.
        self.publish();
        self.announce(t, &ctx, a.tiers);
    }

    /// Announces a torrent to its trackers, the DHT and LSD: a hybrid under
    /// both its names (BEP 52), so that peers of its v1 and its v2 swarm
    /// find us. The v1 name's tracker results are the ones counted and
    /// shown.
    fn announce(&self, t: TorrentId, ctx: &TorrentCtx, tiers: Vec<Vec<String>>) {
        let names = [(swarm_key(t, false), ctx.info_hash, true)]
            .into_iter()
            .chain(ctx.info_hash_v2.map(|h| (swarm_key(t, true), h, false)));
        let total = ctx.info.total_length;
        let piece = u64::from(ctx.info.piece_length);
        let published = self.published.clone();
        let totals: Arc<dyn Fn() -> Totals + Send + Sync> = Arc::new(move || {
            let p = lock(&published);
            let s = p.stats.get(&t);
            Totals {
                uploaded: s.map_or(0, |s| s.uploaded),
                downloaded: s.map_or(0, |s| s.downloaded),
                // Close enough for trackers: the last piece may be short.
                left: s
                    .map_or(total, |s| u64::from(s.pieces_total - s.pieces_have) * piece)
                    .min(total),
            }
        });
        for (key, info_hash, main) in names {
            let on_peers = || -> Box<dyn FnMut(Vec<SocketAddr>) + Send> {
                let to_self = self.to_self.clone();
                Box::new(move |peers| {
                    let _ = to_self.send(CoordMsg::Peers(t, peers));
                })
            };
            // A private torrent (no metadata to offer) never goes to the
            // DHT or LSD.
            if let (Some(l), Some(_)) = (&self.lsd, &ctx.metadata) {
                l.add(key, info_hash, on_peers());
            }
            if let (Some(d), Some(_)) = (&self.dht, &ctx.metadata) {
                d.add(key, info_hash, Some(self.port), on_peers());
            }
            let Some(ann) = &self.announcer else {
                continue;
            };
            let to_self = self.to_self.clone();
            let to_self2 = self.to_self.clone();
            ann.add(
                key,
                TrackerSetup {
                    tiers: tiers.clone(),
                    info_hash,
                    peer_id: ctx.peer_id,
                    port: self.port,
                    config: self.tracker.clone(),
                    totals: totals.clone(),
                    on_peers: on_peers(),
                    on_result: Box::new(move |_, r| {
                        if main {
                            let _ = to_self.send(CoordMsg::Announced(t, r.is_ok()));
                        }
                    }),
                    on_stats: main.then(|| -> Box<dyn FnMut(Vec<TrackerStat>) + Send> {
                        Box::new(move |stats| {
                            let _ = to_self2.send(CoordMsg::TrackerStats(t, stats));
                        })
                    }),
                },
            );
        }
    }

    /// Announces an info-hash whose metadata is being fetched: as a
    /// leecher with everything left, the size unknown.
    fn lookup(
        &self,
        key: u64,
        info_hash: InfoHash,
        tiers: Vec<Vec<String>>,
        to: Sender<Vec<SocketAddr>>,
    ) {
        if let Some(d) = &self.dht {
            let to = to.clone();
            d.add(
                key,
                info_hash,
                None,
                Box::new(move |peers| {
                    let _ = to.send(peers);
                }),
            );
        }
        if let Some(l) = &self.lsd {
            let to = to.clone();
            l.add(
                key,
                info_hash,
                Box::new(move |peers| {
                    let _ = to.send(peers);
                }),
            );
        }
        if tiers.is_empty() {
            return;
        }
        if let Some(ann) = &self.announcer {
            ann.add(
                key,
                TrackerSetup {
                    tiers,
                    info_hash,
                    peer_id: self.core.peer_id(),
                    port: self.port,
                    config: self.tracker.clone(),
                    // BEP 9 leaves `left` to us; a non-zero one says leecher.
                    totals: Arc::new(|| Totals {
                        uploaded: 0,
                        downloaded: 0,
                        left: metadata::MAX_SIZE,
                    }),
                    on_peers: Box::new(move |peers| {
                        let _ = to.send(peers);
                    }),
                    on_result: Box::new(|_, _| {}),
                    on_stats: None,
                },
            );
        }
    }

    /// Carries the core's commands to the shards (one wake per shard) and
    /// acts on its notices.
    fn flush(&mut self, now: Instant) {
        let mut per_shard: Vec<Vec<Inbound>> = self.inboxes.iter().map(|_| Vec::new()).collect();
        for (s, cmd) in self.core.drain_commands() {
            if let Some(v) = per_shard.get_mut(s) {
                v.push(Inbound::Command(cmd));
            }
        }
        while let Some(n) = self.core.poll_notice() {
            match n {
                Notice::DhtNode(addr) => {
                    if let Some(d) = &self.dht {
                        d.learn(addr);
                    }
                }
                Notice::PieceDone(t, piece) => {
                    self.dirty.entry(t).or_insert(now);
                    if let (Some(saver), Some(target)) = (&self.saver, self.saves.get(&t)) {
                        saver.journal(target, piece);
                    }
                }
                Notice::Complete(t) => {
                    self.web.remove(&t);
                    log::info!("torrent {t} complete");
                    // The `completed` announce reports what is left: nothing.
                    self.publish();
                    if let Some(a) = &self.announcer {
                        a.completed(swarm_key(t, false));
                        a.completed(swarm_key(t, true));
                    }
                    let _ = self.events.send(SessionEvent::Complete(t));
                }
                Notice::Fatal {
                    torrent,
                    piece,
                    error,
                } => {
                    let why = match (error, self.storages.get(&torrent)) {
                        (crate::torrent::DiskError::Removed, Some(s)) => {
                            format!(
                                "{} was removed while downloading into it",
                                s.root().display()
                            )
                        }
                        _ => format!("cannot write piece {piece}: {error}"),
                    };
                    log::error!("{why}");
                    let _ = self.events.send(SessionEvent::Failed(torrent, why));
                }
                Notice::Removed(t, have) => {
                    for v in per_shard.iter_mut() {
                        v.push(Inbound::Forget(t));
                    }
                    for key in [swarm_key(t, false), swarm_key(t, true)] {
                        if let Some(a) = &self.announcer {
                            a.remove(key);
                        }
                        if let Some(l) = &self.lsd {
                            l.remove(key);
                        }
                        if let Some(d) = &self.dht {
                            d.remove(key);
                        }
                    }
                    self.dirty.remove(&t);
                    let storage = self.storages.remove(&t);
                    let save = self.saves.remove(&t);
                    let mut p = lock(&self.published);
                    p.stats.remove(&t);
                    p.peers.remove(&t);
                    p.have.remove(&t);
                    p.trackers.remove(&t);
                    drop(p);
                    // `Removed` once the last save is written, so that a
                    // torrent added again finds it.
                    match (save, storage, &self.saver) {
                        (Some(target), Some(storage), Some(saver)) => {
                            saver.save_last(t, target, storage, have);
                        }
                        _ => {
                            let _ = self.events.send(SessionEvent::Removed(t));
                        }
                    }
                }
            }
        }
        for (inbox, msgs) in self.inboxes.iter().zip(per_shard) {
            if !msgs.is_empty() {
                inbox.post_all(msgs);
            }
        }
    }

    /// Publishes the counters of torrents that changed.
    fn publish(&mut self) {
        let changed = self.core.take_changed();
        let mut p = lock(&self.published);
        for t in changed {
            if let Some(s) = self.core.stats(t) {
                p.stats.insert(t, s.clone());
                p.peers.insert(t, self.core.peers(t));
            }
            if let Some(h) = self.core.have(t) {
                p.have.insert(t, h.clone());
            }
        }
        p.announces.clone_from(&self.announces);
    }

    /// Saves the resume state of torrents with pieces done a save interval
    /// ago or more (all of them when `all`).
    fn save_due(&mut self, now: Instant, all: bool) {
        let due: Vec<TorrentId> = self
            .dirty
            .iter()
            .filter(|(_, since)| all || now.duration_since(**since) >= self.save_interval)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.save_one(t);
        }
    }

    fn save_one(&mut self, t: TorrentId) {
        self.dirty.remove(&t);
        let (Some(target), Some(storage), Some(have), Some(saver)) = (
            self.saves.get(&t),
            self.storages.get(&t),
            self.core.have(t),
            &self.saver,
        ) else {
            return;
        };
        saver.save(t, target.clone(), storage.clone(), have.clone());
    }
}
