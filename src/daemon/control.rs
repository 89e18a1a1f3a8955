//! The daemon's torrents over time: adding, starting, stopping, queueing,
//! limits, and what the session reports back. The RPC and the watch
//! directory call these; the manager thread calls `tick` and `on_event`;
//! the starter thread adds torrents to the session one at a time.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, Weak};
use std::time::{Duration, Instant};

use super::config::Settings;
use super::data;
use super::engine::Engine;
use super::state::{FilePrefs, Saved, SavedTorrent, StateDir, StateError, VERSION, unix_now};
use super::table::{After, Base, Entry, ErrorKind, Run, Table};
use crate::lock;
use crate::magnet::Magnet;
use crate::metainfo::{InfoHash, Layerless, Metainfo, MetainfoError, RenameError};
use crate::resume::{ResumeState, store};
use crate::session::{AddTorrent, FindMetadata, Mode, SessionEvent};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    #[error("invalid or corrupt torrent file")]
    BadTorrent(#[source] MetainfoError),
    #[error("{0} is not under an allowed download directory")]
    OutsideRoots(PathBuf),
    #[error("download directory must be an absolute path: {0}")]
    RelativeDir(PathBuf),
    #[error("no such torrent")]
    NoSuchTorrent,
    #[error(transparent)]
    Rename(#[from] RenameError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error("shutting down")]
    ShuttingDown,
    #[error("cannot start a thread")]
    Thread(#[source] std::io::Error),
}

/// A torrent to add, as `torrent-add` or the watch directory give it.
#[derive(Debug, Default)]
pub struct AddRequest {
    pub torrent: Vec<u8>,
    pub download_dir: Option<PathBuf>,
    pub paused: Option<bool>,
    pub files: FileChanges,
    pub labels: Option<Vec<String>>,
    pub peer_limit: Option<u32>,
    pub bandwidth_priority: Option<i8>,
    /// The id to take (one a magnet link was answered with).
    pub id: Option<u32>,
    /// Peers known to have the torrent, dialled when it starts.
    pub peers: Vec<std::net::SocketAddr>,
}

/// File indices whose wanted flag or priority changes. As in
/// Transmission, an empty list means every file (`transmission-remote -G
/// all` sends one); `None` changes nothing.
#[derive(Debug, Default, Clone)]
pub struct FileChanges {
    pub wanted: Option<Vec<usize>>,
    pub unwanted: Option<Vec<usize>>,
    pub high: Option<Vec<usize>>,
    pub normal: Option<Vec<usize>>,
    pub low: Option<Vec<usize>>,
}

impl FileChanges {
    pub fn is_empty(&self) -> bool {
        self.wanted.is_none()
            && self.unwanted.is_none()
            && self.high.is_none()
            && self.normal.is_none()
            && self.low.is_none()
    }

    /// Applies to `files`; indices out of range are ignored.
    fn apply(&self, files: &mut [FilePrefs]) -> bool {
        let mut changed = false;
        let mut set = |list: &Option<Vec<usize>>, f: &dyn Fn(&mut FilePrefs)| {
            let mut one = |p: &mut FilePrefs| {
                let before = *p;
                f(p);
                changed |= *p != before;
            };
            match list.as_deref() {
                None => {}
                Some([]) => files.iter_mut().for_each(&mut one),
                Some(list) => {
                    for &i in list {
                        if let Some(p) = files.get_mut(i) {
                            one(p);
                        }
                    }
                }
            }
        };
        set(&self.wanted, &|p| p.wanted = true);
        set(&self.unwanted, &|p| p.wanted = false);
        set(&self.high, &|p| p.priority = 1);
        set(&self.normal, &|p| p.priority = 0);
        set(&self.low, &|p| p.priority = -1);
        changed
    }
}

/// The id, name and info-hash of an added (or already present) torrent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Brief {
    pub id: u32,
    pub name: String,
    pub hash: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AddOutcome {
    Added(Brief),
    Duplicate(Brief),
}

/// `torrent-set`'s changes; `None` and empty lists change nothing.
#[derive(Debug, Default, Clone)]
pub struct TorrentChanges {
    pub bandwidth_priority: Option<i8>,
    /// Bytes per second.
    pub download_limit: Option<u64>,
    pub download_limited: Option<bool>,
    pub upload_limit: Option<u64>,
    pub upload_limited: Option<bool>,
    pub files: FileChanges,
    pub labels: Option<Vec<String>>,
    pub peer_limit: Option<u32>,
    pub queue_position: Option<usize>,
    pub seed_idle_limit: Option<u32>,
    pub seed_idle_mode: Option<u8>,
    pub seed_ratio_limit: Option<f64>,
    pub seed_ratio_mode: Option<u8>,
    pub tracker_add: Vec<String>,
    /// Tracker ids (positions in the flattened list).
    pub tracker_remove: Vec<usize>,
    pub tracker_replace: Vec<(usize, String)>,
    /// Tiers replacing every tracker (Transmission 4's `trackerList`).
    pub tracker_list: Option<Vec<Vec<String>>>,
}

pub struct Daemon {
    me: Weak<Daemon>,
    pub(super) engine: Arc<dyn Engine>,
    state: StateDir,
    table: Mutex<Table>,
    starter: Sender<u32>,
    settings: RwLock<Settings>,
    /// Where downloads may go when no `allowed-roots` are set: the download
    /// directory at start, so `session-set` cannot widen it.
    default_root: PathBuf,
    /// The `X-Transmission-Session-Id` clients must echo.
    pub session_id: String,
    pub started: Instant,
    /// `session-close` was asked for, or the daemon is stopping.
    closing: AtomicBool,
    /// Magnet links whose metadata is being fetched, and the ids they
    /// were answered with.
    magnets: Mutex<HashMap<InfoHash, Pending>>,
    /// One state save at a time, in order.
    saving: Mutex<()>,
    last_save: Mutex<Instant>,
}

/// A magnet link whose metadata is being fetched.
struct Pending {
    /// The id `torrent-add` answered with.
    id: u32,
    cancel: Arc<AtomicBool>,
}

/// How often counters are saved when nothing else changed.
const SAVE_COUNTERS_EVERY: Duration = Duration::from_secs(30);

impl Daemon {
    /// Loads the saved torrents (stopped: `tick` starts them) and returns
    /// the daemon and what the starter thread reads.
    pub fn new(
        engine: Arc<dyn Engine>,
        state: StateDir,
        settings: Settings,
    ) -> Result<(Arc<Daemon>, Receiver<u32>), ControlError> {
        let mut saved = state.load()?;
        let mut table = Table {
            prefs: settings.prefs_over(saved.prefs.take().unwrap_or_default()),
            cumulative: saved.cumulative,
            ..Table::default()
        };
        table.cumulative.session_count += 1;
        table.current.session_count = 1;
        if let Err(e) = std::fs::create_dir_all(&table.prefs.download_dir) {
            log::warn!("cannot create {}: {e}", table.prefs.download_dir.display());
        }
        let mut kept = state.kept_torrents()?;
        kept.sort_by_key(|(m, _)| {
            saved
                .torrents
                .get(&m.info_hash.to_hex())
                .map_or(u32::MAX, |t| t.id)
        });
        for (meta, _) in kept {
            let s = saved
                .torrents
                .remove(&meta.info_hash.to_hex())
                .unwrap_or_else(|| SavedTorrent {
                    download_dir: table.prefs.download_dir.clone(),
                    added_date: unix_now(),
                    ..SavedTorrent::default()
                });
            let have = saved_have(&state, &meta, &s);
            let mut e = Entry::new(Arc::new(meta), s, have);
            if !e.saved.paused && !e.saved.finished {
                e.run = Run::Queued;
            }
            table.insert(e);
        }
        table.renumber_queue();
        let (starter, jobs) = std::sync::mpsc::channel();
        let default_root = table.prefs.download_dir.clone();
        let d = Arc::new_cyclic(|me| Daemon {
            me: me.clone(),
            engine,
            state,
            table: Mutex::new(table),
            starter,
            settings: RwLock::new(settings),
            default_root,
            session_id: new_session_id(),
            started: Instant::now(),
            closing: AtomicBool::new(false),
            magnets: Mutex::new(HashMap::new()),
            saving: Mutex::new(()),
            last_save: Mutex::new(Instant::now()),
        });
        d.apply_prefs();
        d.schedule(&mut d.table());
        Ok((d, jobs))
    }

    /// The torrents, locked: the RPC reads and changes them through this.
    pub fn table(&self) -> MutexGuard<'_, Table> {
        lock(&self.table)
    }

    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn state_dir(&self) -> &Path {
        self.state.root()
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        for p in lock(&self.magnets).values() {
            p.cancel.store(true, Ordering::Relaxed);
        }
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Relaxed)
    }

    /// Applies a reloaded configuration: its keys replace the current
    /// settings, its `session-set` keys the running values.
    pub fn reload(&self, settings: Settings) {
        {
            let mut t = self.table();
            t.prefs = settings.prefs_over(t.prefs.clone());
            t.dirty = true;
        }
        *self.settings.write().unwrap_or_else(|p| p.into_inner()) = settings;
        self.apply_prefs();
    }

    /// Pushes the session-wide limits to the session.
    pub fn apply_prefs(&self) {
        let (up, down) = self.table().prefs.session_limits();
        self.engine.set_session_limits(up, down);
    }

    /// `dir` if it lies under one of the allowed roots (symlinks resolved
    /// as far as the path exists).
    pub fn allowed_dir(&self, dir: &Path) -> Result<PathBuf, ControlError> {
        if !dir.is_absolute() {
            return Err(ControlError::RelativeDir(dir.to_path_buf()));
        }
        if dir.components().any(|c| c == Component::ParentDir) {
            return Err(ControlError::OutsideRoots(dir.to_path_buf()));
        }
        let resolved = resolve_existing(dir);
        let roots = self
            .settings()
            .allowed_roots
            .unwrap_or_else(|| vec![self.default_root.clone()]);
        if roots
            .iter()
            .any(|r| resolved.starts_with(resolve_existing(r)))
        {
            Ok(resolved)
        } else {
            Err(ControlError::OutsideRoots(dir.to_path_buf()))
        }
    }

    pub fn add(&self, mut req: AddRequest) -> Result<AddOutcome, ControlError> {
        let meta = match Metainfo::from_bytes(&req.torrent) {
            Ok(m) => m,
            // A v2 torrent file without the piece layers its files need:
            // they are fetched from peers, as for a `btmh` link.
            Err(e @ MetainfoError::PieceLayer { .. }) => {
                return match Layerless::from_bytes(&req.torrent) {
                    Some(l) => {
                        log::warn!("{e}; fetching piece layers from peers");
                        self.add_magnet(Magnet::from(l), req)
                    }
                    None => Err(ControlError::BadTorrent(e)),
                };
            }
            Err(e) => return Err(ControlError::BadTorrent(e)),
        };
        for w in &meta.warnings {
            log::warn!("{}: {w}", meta.info.name);
        }
        // The same torrent as a file while its magnet is being fetched: it
        // takes the magnet's id, and the fetch stops.
        if req.id.is_none()
            && let Some(p) = lock(&self.magnets).get(&meta.info_hash)
        {
            p.cancel.store(true, Ordering::Relaxed);
            req.id = Some(p.id);
        }
        let brief = |id, m: &Metainfo| Brief {
            id,
            name: m.info.name.clone(),
            hash: m.info_hash.to_hex(),
        };
        let dir = {
            let t = self.table();
            if let Some(&id) = t.by_hash.get(&meta.info_hash) {
                return Ok(AddOutcome::Duplicate(brief(id, &meta)));
            }
            req.download_dir
                .clone()
                .unwrap_or_else(|| t.prefs.download_dir.clone())
        };
        let dir = self.allowed_dir(&dir)?;
        // On disk before the add is acknowledged.
        self.state.keep_torrent(&meta, &req.torrent)?;
        let mut t = self.table();
        if let Some(&id) = t.by_hash.get(&meta.info_hash) {
            return Ok(AddOutcome::Duplicate(brief(id, &meta)));
        }
        let paused = req.paused.unwrap_or(!t.prefs.start_added_torrents);
        let files = meta.info.files.len();
        let mut saved = SavedTorrent {
            id: req.id.unwrap_or(0),
            download_dir: dir,
            paused,
            added_date: unix_now(),
            queue_position: t.entries.len(),
            files: vec![FilePrefs::NORMAL; files],
            labels: req.labels.unwrap_or_default(),
            ..SavedTorrent::default()
        };
        if let Some(p) = req.peer_limit {
            saved.peer_limit = p;
        }
        if let Some(p) = req.bandwidth_priority {
            saved.bandwidth_priority = p.clamp(-1, 1);
        }
        req.files.apply(&mut saved.files);
        let have = saved_have(&self.state, &meta, &saved);
        let b = brief(0, &meta);
        let mut e = Entry::new(Arc::new(meta), saved, have);
        e.initial_peers = req.peers;
        if !paused {
            e.run = Run::Queued;
        }
        let id = t.insert(e);
        t.cumulative.files_added += files as u64;
        t.current.files_added += files as u64;
        self.schedule(&mut t);
        log::info!("added {} ({})", b.name, b.hash);
        Ok(AddOutcome::Added(Brief { id, ..b }))
    }

    /// Adds a magnet link: its metadata is fetched on a thread of its own,
    /// then the torrent is added as [`add`](Self::add) does, under the id
    /// answered now. Until then it is not in the table (and not in
    /// `torrent-get`); removing that id, or adding the same torrent as a
    /// file, stops the fetch.
    pub fn add_magnet(&self, magnet: Magnet, req: AddRequest) -> Result<AddOutcome, ControlError> {
        let hash = magnet.info_hash;
        let name = magnet.name();
        // Refused now rather than when the metadata arrives.
        let dir = req
            .download_dir
            .clone()
            .unwrap_or_else(|| self.table().prefs.download_dir.clone());
        self.allowed_dir(&dir)?;
        let cancel = Arc::new(AtomicBool::new(false));
        let id = {
            let mut t = self.table();
            if let Some(&id) = t.by_hash.get(&hash) {
                return Ok(AddOutcome::Duplicate(Brief {
                    id,
                    name: t
                        .entries
                        .get(&id)
                        .map_or(name, |e| e.meta.info.name.clone()),
                    hash: hash.to_hex(),
                }));
            }
            let mut pending = lock(&self.magnets);
            if let Some(p) = pending.get(&hash) {
                return Ok(AddOutcome::Duplicate(Brief {
                    id: p.id,
                    name,
                    hash: hash.to_hex(),
                }));
            }
            // Taken now, so that nothing added meanwhile gets it.
            let id = t.free_id();
            t.next_id = id + 1;
            pending.insert(
                hash,
                Pending {
                    id,
                    cancel: cancel.clone(),
                },
            );
            id
        };
        let Some(me) = self.me.upgrade() else {
            return Err(ControlError::ShuttingDown);
        };
        let brief = Brief {
            id,
            name: name.clone(),
            hash: hash.to_hex(),
        };
        let spawned = std::thread::Builder::new()
            .name("magnet".into())
            .spawn(move || {
                me.resolve(magnet, req, id, &cancel);
                lock(&me.magnets).remove(&hash);
            });
        if let Err(e) = spawned {
            lock(&self.magnets).remove(&hash);
            return Err(ControlError::Thread(e));
        }
        log::info!("fetching the metadata of {name} ({})", hash.to_hex());
        Ok(AddOutcome::Added(brief))
    }

    fn resolve(&self, magnet: Magnet, mut req: AddRequest, id: u32, cancel: &AtomicBool) {
        let find = FindMetadata {
            info_hash: magnet.info_hash,
            info_hash_v2: magnet.info_hash_v2,
            known_info: magnet.known_info.clone(),
            trackers: magnet.tracker_tiers(),
            peers: magnet.peer_addrs(),
            timeout: None,
        };
        let fetched = match self.engine.fetch_metadata(find, cancel) {
            Ok(f) => f,
            Err(e) => {
                log::warn!("{}: {}", magnet.name(), crate::error_chain(&e));
                return;
            }
        };
        let meta = match Metainfo::from_info(
            &fetched.info,
            &fetched.piece_layers,
            &magnet.tracker_tiers(),
        ) {
            Ok(m) => m,
            Err(e) => {
                log::warn!(
                    "{}: its metadata: {}",
                    magnet.name(),
                    crate::error_chain(&e)
                );
                return;
            }
        };
        req.torrent = meta.to_torrent_bytes();
        req.id = Some(id);
        req.peers = fetched.peers;
        match self.add(req) {
            Ok(_) => {}
            Err(e) => log::warn!("{}: {}", meta.info.name, crate::error_chain(&e)),
        }
    }

    /// Starts torrents: through the queue, or at once (`now`).
    pub fn start(&self, ids: &[u32], now: bool) {
        let mut t = self.table();
        for &id in ids {
            let Some(e) = t.entries.get_mut(&id) else {
                continue;
            };
            e.saved.paused = false;
            e.saved.finished = false;
            e.touch();
            match &mut e.run {
                Run::Stopped => {
                    e.error = None;
                    e.run = Run::Queued;
                }
                // A pending removal or move stays; a pending stop is undone.
                Run::Checking | Run::Moving => {
                    e.pending = e.pending.take().and_then(|p| {
                        match p.then(After::Start { check: false }) {
                            After::Start { .. } => None,
                            kept => Some(kept),
                        }
                    });
                }
                Run::Leaving(_, after) => {
                    *after = after.clone().then(After::Start { check: false });
                }
                Run::Queued | Run::CheckWait | Run::Running(_) => {}
            }
            if now && e.run == Run::Queued {
                e.run = Run::CheckWait;
                let _ = self.starter.send(id);
            }
        }
        t.dirty = true;
        self.schedule(&mut t);
    }

    pub fn stop(&self, ids: &[u32]) {
        let mut t = self.table();
        for &id in ids {
            if let Some(e) = t.entries.get_mut(&id) {
                e.saved.paused = true;
            }
            self.leave(&mut t, id, After::Stop);
        }
        t.dirty = true;
        self.schedule(&mut t);
    }

    /// Checks every piece again; a running torrent runs on after.
    pub fn verify(&self, ids: &[u32]) {
        let mut t = self.table();
        for &id in ids {
            let Some(e) = t.entries.get_mut(&id) else {
                continue;
            };
            e.touch();
            match e.run {
                Run::Stopped | Run::Queued => {
                    // A stopped torrent stops again after its check.
                    e.saved.paused = e.run == Run::Stopped;
                    e.force_check = true;
                    e.run = Run::CheckWait;
                    let _ = self.starter.send(id);
                }
                _ => self.leave(&mut t, id, After::Start { check: true }),
            }
        }
        t.dirty = true;
    }

    pub fn reannounce(&self, ids: &[u32]) {
        let t = self.table();
        for id in ids {
            if let Some(s) = t.entries.get(id).and_then(|e| e.session_id()) {
                self.engine.reannounce(s);
            }
        }
    }

    pub fn remove(&self, ids: &[u32], delete_data: bool) {
        for p in lock(&self.magnets).values() {
            if ids.contains(&p.id) {
                p.cancel.store(true, Ordering::Relaxed);
            }
        }
        let mut t = self.table();
        for &id in ids {
            if let Some(e) = t.entries.get(&id) {
                // A removed torrent must not come back after a crash.
                if let Err(err) = self.state.forget_torrent(&e.hash()) {
                    log::error!("{}", crate::error_chain(&err));
                }
            }
            self.leave(&mut t, id, After::Remove { delete_data });
        }
        self.schedule(&mut t);
    }

    /// Moves torrents' data (or only points them) to `dir`.
    pub fn set_location(
        &self,
        ids: &[u32],
        dir: &Path,
        move_data: bool,
    ) -> Result<(), ControlError> {
        let dir = self.allowed_dir(dir)?;
        let mut t = self.table();
        for &id in ids {
            let Some(e) = t.entries.get_mut(&id) else {
                continue;
            };
            e.touch();
            if move_data {
                let start = e.is_active();
                self.leave(
                    &mut t,
                    id,
                    After::Move {
                        to: dir.clone(),
                        start,
                    },
                );
            } else {
                // Where it looks from now on: check what is there.
                let start = e.is_active();
                e.saved.download_dir = dir.clone();
                if start {
                    self.leave(&mut t, id, After::Start { check: true });
                }
            }
        }
        t.dirty = true;
        Ok(())
    }

    /// Renames a file or directory of a torrent; returns (path, name) as
    /// the RPC answers them.
    pub fn rename_path(&self, id: u32, path: &str, name: &str) -> Result<(), ControlError> {
        let mut t = self.table();
        let e = t.entries.get_mut(&id).ok_or(ControlError::NoSuchTorrent)?;
        // Refused before anything stops.
        let mut probe = (*e.info).clone();
        for (p, n) in &e.pending_rename {
            let _ = probe.rename_path(p, n);
        }
        probe.rename_path(path, name)?;
        let start = e.is_active();
        // Made on disk once it is out of the session (at once if it is).
        e.pending_rename.push((path.to_owned(), name.to_owned()));
        self.leave(&mut t, id, After::Stop);
        if start {
            self.leave(&mut t, id, After::Start { check: false });
        }
        t.dirty = true;
        Ok(())
    }

    pub fn set(&self, ids: &[u32], c: &TorrentChanges) {
        let mut t = self.table();
        for &id in ids {
            let Some(e) = t.entries.get_mut(&id) else {
                continue;
            };
            e.touch();
            let s = &mut e.saved;
            if let Some(v) = c.bandwidth_priority {
                s.bandwidth_priority = v.clamp(-1, 1);
            }
            let mut limits = false;
            if let Some(v) = c.download_limit {
                (s.download_limit, limits) = (v, true);
            }
            if let Some(v) = c.download_limited {
                (s.download_limited, limits) = (v, true);
            }
            if let Some(v) = c.upload_limit {
                (s.upload_limit, limits) = (v, true);
            }
            if let Some(v) = c.upload_limited {
                (s.upload_limited, limits) = (v, true);
            }
            if let Some(v) = &c.labels {
                s.labels.clone_from(v);
            }
            if let Some(v) = c.peer_limit {
                s.peer_limit = v;
            }
            if let Some(v) = c.seed_idle_limit {
                s.seed_idle_limit = v;
            }
            if let Some(v) = c.seed_idle_mode {
                s.seed_idle_mode = v.min(2);
            }
            if let Some(v) = c.seed_ratio_limit {
                s.seed_ratio_limit = v;
            }
            if let Some(v) = c.seed_ratio_mode {
                s.seed_ratio_mode = v.min(2);
            }
            if let Some(v) = c.queue_position {
                // Just before whoever holds that place now.
                s.queue_position = v;
                for (other, o) in t.entries.iter_mut() {
                    if *other != id && o.saved.queue_position >= v {
                        o.saved.queue_position += 1;
                    }
                }
                t.renumber_queue();
            }
            let Some(e) = t.entries.get_mut(&id) else {
                continue;
            };
            if limits && let Some(s) = e.session_id() {
                let (up, down) = torrent_limits(&e.saved);
                self.engine.set_limits(s, up, down);
            }
            // What the picker wants and whom it asks are fixed while a
            // torrent runs: such changes restart it.
            let mut restart = c.files.apply(&mut e.saved.files);
            if restart {
                e.files_changed();
            }
            restart |= change_trackers(e, c);
            if restart && e.is_active() {
                self.leave(&mut t, id, After::Start { check: false });
            }
        }
        t.dirty = true;
        self.schedule(&mut t);
    }

    /// Takes a torrent out of the session (or out of the queue), then does
    /// `after`.
    fn leave(&self, t: &mut Table, id: u32, after: After) {
        let Some(e) = t.entries.get_mut(&id) else {
            return;
        };
        e.touch();
        match e.run.clone() {
            Run::Stopped | Run::Queued | Run::CheckWait => {
                e.run = Run::Stopped;
                self.settle(t, id, after);
            }
            Run::Checking | Run::Moving => {
                e.pending = Some(match e.pending.take() {
                    Some(p) => p.then(after),
                    None => after,
                });
                e.cancel.store(true, Ordering::Relaxed);
            }
            Run::Running(s) => {
                absorb(e, self.engine.stats(s).as_ref());
                if let Some(h) = self.engine.have(s) {
                    e.set_have(h);
                }
                self.engine.remove(s);
                e.run = Run::Leaving(s, after);
            }
            Run::Leaving(s, before) => e.run = Run::Leaving(s, before.then(after)),
        }
    }

    /// A torrent is out of the session: does what was asked.
    fn settle(&self, t: &mut Table, id: u32, after: After) {
        let Some(e) = t.entries.get_mut(&id) else {
            return;
        };
        e.run = Run::Stopped;
        e.rates.reset();
        e.peers_connected = 0;
        for (path, name) in std::mem::take(&mut e.pending_rename) {
            // Checked again against the renames made so far: a rename the
            // session could not apply would keep the torrent from starting.
            let applies = (*e.info).clone().rename_path(&path, &name);
            let done = applies.map_err(|err| err.to_string()).and_then(|()| {
                data::rename(&e.saved.download_dir, &path, &name).map_err(|err| err.to_string())
            });
            match done {
                Ok(()) => {
                    e.saved.renames.push((path, name));
                    e.renames_changed();
                }
                Err(err) => {
                    e.error = Some((ErrorKind::Local, format!("cannot rename {path}: {err}")))
                }
            }
        }
        match after {
            After::Stop => {}
            After::Start { check } => {
                e.force_check |= check;
                e.run = Run::Queued;
                if check {
                    // A check does not wait for the queue.
                    e.run = Run::CheckWait;
                    let _ = self.starter.send(id);
                }
            }
            After::Remove { delete_data } => {
                let Some(e) = t.remove(id) else {
                    return;
                };
                let dir = e.saved.download_dir.clone();
                let resume = resume_path(&self.state, &e.meta, &e.saved);
                let info = e.info.clone();
                log::info!("removed {}", info.name);
                if delete_data {
                    std::thread::spawn(move || {
                        if let Err(err) = data::delete(&info, &dir) {
                            log::error!("cannot delete the data of {}: {err}", info.name);
                        }
                        forget_resume(&resume);
                    });
                } else {
                    forget_resume(&resume);
                }
                t.renumber_queue();
            }
            After::Move { to, start } => {
                let from = e.saved.download_dir.clone();
                if from == to {
                    return self.settle(
                        t,
                        id,
                        if start {
                            After::Start { check: false }
                        } else {
                            After::Stop
                        },
                    );
                }
                let info = e.info.clone();
                let old_resume = resume_path(&self.state, &e.meta, &e.saved);
                e.saved.download_dir = to.clone();
                // Moving can take long: on a thread of its own. Whatever
                // is asked meanwhile waits for it, as during a check.
                e.run = Run::Moving;
                let Some(d) = self.me.upgrade() else {
                    return;
                };
                std::thread::spawn(move || {
                    let r = data::relocate(&info, &from, &to);
                    let mut t = d.table();
                    let Some(e) = t.entries.get_mut(&id) else {
                        return;
                    };
                    match r {
                        Ok(()) => {
                            log::info!("moved {} to {}", info.name, to.display());
                            // Its resume state named the old place: check.
                            forget_resume(&old_resume);
                            e.force_check = true;
                        }
                        Err(err) => {
                            // The data stayed (or was put back) where it was.
                            e.saved.download_dir = from;
                            e.error = Some((
                                ErrorKind::Local,
                                format!("cannot move the data to {}: {err}", to.display()),
                            ));
                        }
                    }
                    let then = e.pending.take().unwrap_or(if start {
                        After::Start { check: true }
                    } else {
                        After::Stop
                    });
                    d.settle(&mut t, id, then);
                });
            }
        }
        t.dirty = true;
    }

    /// Queued torrents that have a slot go to the starter.
    fn schedule(&self, t: &mut Table) {
        for id in t.to_start() {
            if let Some(e) = t.entries.get_mut(&id) {
                e.run = Run::CheckWait;
                e.touch();
                let _ = self.starter.send(id);
            }
        }
    }

    /// The starter thread: adds torrents to the session one at a time (an
    /// add may check the data on every core).
    pub fn run_starter(&self, jobs: &Receiver<u32>) {
        while let Ok(id) = jobs.recv() {
            if self.is_closing() {
                break;
            }
            self.start_one(id);
        }
    }

    /// Adds torrent `id` to the session, if it still waits for that.
    pub fn start_one(&self, id: u32) {
        let add = {
            let mut t = self.table();
            let Some(e) = t.entries.get_mut(&id) else {
                return;
            };
            if e.run != Run::CheckWait {
                return;
            }
            e.run = Run::Checking;
            e.touch();
            e.cancel = Arc::new(AtomicBool::new(false));
            let mut add =
                AddTorrent::new((*e.meta).clone(), e.saved.download_dir.clone(), Mode::Fetch);
            add.files = Some(e.priorities());
            add.renames.clone_from(&e.saved.renames);
            add.trackers.clone_from(&e.saved.trackers);
            add.force_check = std::mem::take(&mut e.force_check);
            add.peers = std::mem::take(&mut e.initial_peers);
            (add.upload_limit, add.download_limit) = torrent_limits(&e.saved);
            add.cancel = Some(e.cancel.clone());
            add
        };
        let result = self.engine.add(add);
        let mut t = self.table();
        let Some(e) = t.entries.get_mut(&id) else {
            if let Ok(a) = result {
                self.engine.remove(a.id);
            }
            return;
        };
        e.touch();
        match result {
            Ok(a) => {
                e.run = Run::Running(a.id);
                e.error = None;
                e.base = Base {
                    uploaded: e.saved.uploaded_ever,
                    downloaded: e.saved.downloaded_ever,
                    corrupt: e.saved.corrupt_ever,
                };
                e.rates.reset();
                e.start_date = unix_now();
                e.set_have(a.pieces);
                let then = e.pending.take().or(e.saved.paused.then_some(After::Stop));
                t.by_session.insert(a.id, id);
                if let Some(then) = then {
                    self.leave(&mut t, id, then);
                }
            }
            Err(err) => {
                let why = crate::error_chain(&err);
                log::error!("cannot start {}: {why}", e.name());
                e.run = Run::Stopped;
                e.error = Some((ErrorKind::Local, why));
                e.saved.paused = true;
                if let Some(then) = e.pending.take() {
                    self.settle(&mut t, id, then);
                }
            }
        }
        t.dirty = true;
        self.schedule(&mut t);
    }

    /// What the session says: a download done, a torrent failed or gone.
    pub fn on_event(&self, ev: SessionEvent) {
        let mut t = self.table();
        match ev {
            SessionEvent::Complete(s) => {
                let Some(&id) = t.by_session.get(&s) else {
                    return;
                };
                let have = self.engine.have(s);
                if let Some(e) = t.entries.get_mut(&id) {
                    if let Some(h) = have {
                        e.set_have(h);
                    }
                    if e.saved.done_date == 0 || e.progress.done() {
                        e.saved.done_date = unix_now();
                    }
                    e.touch();
                    log::info!("{}: download complete", e.name());
                }
                t.dirty = true;
                self.schedule(&mut t);
            }
            SessionEvent::Failed(s, why) => {
                let Some(&id) = t.by_session.get(&s) else {
                    return;
                };
                if let Some(e) = t.entries.get_mut(&id) {
                    e.error = Some((ErrorKind::Local, why));
                    e.saved.paused = true;
                }
                self.leave(&mut t, id, After::Stop);
            }
            SessionEvent::Removed(s) => {
                let Some(id) = t.by_session.remove(&s) else {
                    return;
                };
                let after = match t.entries.get(&id).map(|e| &e.run) {
                    Some(Run::Leaving(gone, after)) if *gone == s => after.clone(),
                    _ => return,
                };
                self.settle(&mut t, id, after);
                self.schedule(&mut t);
            }
        }
    }

    /// Once a second: counters, rates, seeding limits, the queue, saves.
    pub fn tick(&self, now: Instant, elapsed: Duration) {
        let mut t = self.table();
        let prefs = t.prefs.clone();
        let mut done_seeding = Vec::new();
        let (mut up, mut down) = (0u64, 0u64);
        for (id, e) in t.entries.iter_mut() {
            let Some(s) = e.session_id() else {
                continue;
            };
            let Some(stats) = self.engine.stats(s) else {
                continue;
            };
            let (u0, d0) = (e.saved.uploaded_ever, e.saved.downloaded_ever);
            absorb(e, Some(&stats));
            up += e.saved.uploaded_ever.saturating_sub(u0);
            down += e.saved.downloaded_ever.saturating_sub(d0);
            e.rates.sample(now, stats.downloaded, stats.uploaded);
            if e.rates.down > 0 || e.rates.up > 0 {
                e.last_transfer = now;
                e.saved.activity_date = unix_now();
                e.touch();
            }
            if e.peers_connected != stats.peers {
                e.peers_connected = stats.peers;
                e.touch();
            }
            if stats.pieces_have != e.have.count_ones()
                && let Some(h) = self.engine.have(s)
            {
                e.set_have(h);
                e.touch();
            }
            if e.progress.done() {
                e.saved.seconds_seeding += elapsed.as_secs();
                let ratio_hit = e.ratio_limit(&prefs).is_some_and(|r| e.upload_ratio() >= r);
                let idle_hit = e.idle_limit(&prefs).is_some_and(|m| {
                    now.duration_since(e.last_transfer) >= Duration::from_secs(u64::from(m) * 60)
                });
                if ratio_hit || idle_hit {
                    done_seeding.push(*id);
                }
            } else {
                e.saved.seconds_downloading += elapsed.as_secs();
            }
        }
        {
            let t = &mut *t;
            for c in [&mut t.cumulative, &mut t.current] {
                c.uploaded_bytes += up;
                c.downloaded_bytes += down;
                c.seconds_active += elapsed.as_secs();
            }
        }
        for id in done_seeding {
            if let Some(e) = t.entries.get_mut(&id) {
                log::info!("{}: seeding limit reached", e.name());
                e.saved.finished = true;
                e.saved.paused = true;
            }
            self.leave(&mut t, id, After::Stop);
        }
        self.schedule(&mut t);
        t.forget_old_removals(now);
        let due = t.dirty || now.duration_since(*lock(&self.last_save)) >= SAVE_COUNTERS_EVERY;
        drop(t);
        if due {
            self.save();
        }
    }

    /// Writes `daemon.json` with every torrent's settings and counters.
    pub fn save(&self) {
        let _one = lock(&self.saving);
        let saved = {
            let mut t = self.table();
            t.dirty = false;
            Saved {
                version: VERSION,
                prefs: Some(t.prefs.clone()),
                cumulative: t.cumulative,
                torrents: t
                    .entries
                    .values()
                    .map(|e| (e.hash().to_hex(), e.saved.clone()))
                    .collect(),
            }
        };
        *lock(&self.last_save) = Instant::now();
        if let Err(e) = self.state.save(&saved) {
            log::error!("{}", crate::error_chain(&e));
        }
    }

    /// Stops every torrent's check and start, for a shutdown.
    pub fn stop_starting(&self) {
        self.close();
        let t = self.table();
        for e in t.entries.values() {
            e.cancel.store(true, Ordering::Relaxed);
        }
        // Wakes the starter if it waits.
        let _ = self.starter.send(0);
    }
}

/// Carries a running torrent's session counters into its lifetime totals.
fn absorb(e: &mut Entry, stats: Option<&crate::session::TorrentStats>) {
    if let Some(s) = stats {
        e.saved.uploaded_ever = e.base.uploaded + s.uploaded;
        e.saved.downloaded_ever = e.base.downloaded + s.downloaded;
        e.saved.corrupt_ever = e.base.corrupt + s.wasted;
    }
}

/// A torrent's own limits as the session takes them: (up, down).
fn torrent_limits(s: &SavedTorrent) -> (Option<u64>, Option<u64>) {
    (
        s.upload_limited.then_some(s.upload_limit),
        s.download_limited.then_some(s.download_limit),
    )
}

/// Trackers one torrent may have.
const MAX_TRACKERS: usize = 256;

/// Applies tracker changes; whether any tracker changed.
fn change_trackers(e: &mut Entry, c: &TorrentChanges) -> bool {
    if c.tracker_add.is_empty()
        && c.tracker_remove.is_empty()
        && c.tracker_replace.is_empty()
        && c.tracker_list.is_none()
    {
        return false;
    }
    let mut tiers = match &c.tracker_list {
        Some(list) => list.clone(),
        None => e
            .saved
            .trackers
            .clone()
            .unwrap_or_else(|| e.meta.tracker_tiers()),
    };
    // Ids are positions in the flattened list, as `trackerStats` gives them.
    let mut flat: Vec<(usize, Option<String>)> = tiers
        .iter()
        .enumerate()
        .flat_map(|(tier, urls)| urls.iter().map(move |u| (tier, Some(u.clone()))))
        .collect();
    for (id, url) in &c.tracker_replace {
        if let Some(slot) = flat.get_mut(*id) {
            slot.1 = Some(url.clone());
        }
    }
    for id in &c.tracker_remove {
        if let Some(slot) = flat.get_mut(*id) {
            slot.1 = None;
        }
    }
    let ntiers = tiers.len();
    tiers = vec![Vec::new(); ntiers];
    for (tier, url) in flat {
        if let Some(u) = url {
            tiers[tier].push(u);
        }
    }
    let mut known: std::collections::HashSet<String> = tiers.iter().flatten().cloned().collect();
    for url in &c.tracker_add {
        if known.len() >= MAX_TRACKERS {
            break;
        }
        // Each added tracker gets a tier of its own, as Transmission does.
        if url::is_tracker_url(url) && known.insert(url.clone()) {
            tiers.push(vec![url.clone()]);
        }
    }
    tiers.retain(|t| !t.is_empty());
    // A request cannot make the announce list (and every later
    // `trackerStats`) unboundedly long.
    let mut room = MAX_TRACKERS;
    for t in &mut tiers {
        t.truncate(room);
        room -= t.len();
    }
    tiers.retain(|t| !t.is_empty());
    if e.saved.trackers.as_ref() == Some(&tiers) {
        return false;
    }
    e.saved.trackers = Some(tiers);
    true
}

mod url {
    /// Trackers the announce client can reach.
    pub fn is_tracker_url(u: &str) -> bool {
        ["http://", "https://", "udp://"].iter().any(|s| {
            u.len() > s.len() && u.as_bytes()[..s.len()].eq_ignore_ascii_case(s.as_bytes())
        })
    }
}

/// Where the session keeps a torrent's resume state.
fn resume_path(state: &StateDir, meta: &Metainfo, saved: &SavedTorrent) -> PathBuf {
    let mut info = meta.info.clone();
    for (p, n) in &saved.renames {
        let _ = info.rename_path(p, n);
    }
    let root = saved.download_dir.join(&info.name);
    let root = root.canonicalize().unwrap_or(root);
    state
        .resume()
        .join(ResumeState::file_name(&meta.info_hash, &root))
}

/// Deletes a torrent's resume state and journal.
fn forget_resume(path: &Path) {
    let _ = std::fs::remove_file(path);
    store::clear_journal(path);
}

/// The pieces a torrent's resume state and its journal name, to show
/// before it starts (journaled pieces are checked when it does).
fn saved_have(
    state: &StateDir,
    meta: &Metainfo,
    saved: &SavedTorrent,
) -> Option<crate::bitfield::Bitfield> {
    let path = resume_path(state, meta, saved);
    let journal = store::read_journal(&path);
    let mut have = match store::load(&path).filter(|s| s.info_hash == meta.info_hash) {
        Some(s) => s.have,
        None if journal.is_empty() => return None,
        None => crate::bitfield::Bitfield::new(meta.info.piece_count()),
    };
    for p in journal {
        if p < have.len() {
            have.set(p);
        }
    }
    Some(have)
}

/// `p` with its longest existing prefix resolved (symlinks followed).
fn resolve_existing(p: &Path) -> PathBuf {
    let mut head = p.to_path_buf();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = head.canonicalize() {
            return tail.iter().rev().fold(real, |acc, c| acc.join(c));
        }
        match (head.file_name().map(ToOwned::to_owned), head.parent()) {
            (Some(name), Some(parent)) => {
                tail.push(name);
                head = parent.to_path_buf();
            }
            _ => return p.to_path_buf(),
        }
    }
}

fn new_session_id() -> String {
    let mut rng = fastrand::Rng::new();
    (0..48).map(|_| rng.alphanumeric()).collect()
}
