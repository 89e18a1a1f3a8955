//! The daemon's torrents: what each one is doing, what it has, and the
//! figures the RPC reports. Plain data, changed under the daemon's lock.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use super::config::Prefs;
use super::state::{Cumulative, FilePrefs, SavedTorrent};
use crate::bitfield::Bitfield;
use crate::metainfo::{Info, InfoHash, Metainfo};
use crate::session::{Priority, piece_priorities};
use crate::torrent::TorrentId;

/// Where a torrent is in its life.
#[derive(Debug, Clone, PartialEq)]
pub enum Run {
    Stopped,
    /// Wants to run, and waits for a queue slot.
    Queued,
    /// Handed to the starter, which adds one torrent at a time.
    CheckWait,
    /// Being added: its data is checked, or its resume state read.
    Checking,
    Running(TorrentId),
    /// Taken out of the session; `After` is done once it is gone.
    Leaving(TorrentId, After),
    /// Its data is being moved to another directory.
    Moving,
}

/// What to do once a torrent has left the session.
#[derive(Debug, Clone, PartialEq)]
pub enum After {
    Stop,
    /// Start again (`check`: check every piece first).
    Start {
        check: bool,
    },
    /// Forget the torrent (and delete its data).
    Remove {
        delete_data: bool,
    },
    /// Move its data to another directory, then start again if `start`.
    Move {
        to: PathBuf,
        start: bool,
    },
}

impl After {
    /// What to do when `self` was asked for and then `next`: removal wins,
    /// a move already promised still happens (a later stop or start only
    /// decides what follows it), and otherwise the later request wins.
    pub fn then(self, next: After) -> After {
        match (self, next) {
            (r @ After::Remove { .. }, After::Stop | After::Start { .. } | After::Move { .. }) => r,
            (After::Move { to, .. }, After::Stop) => After::Move { to, start: false },
            (After::Move { to, .. }, After::Start { .. }) => After::Move { to, start: true },
            (_, next) => next,
        }
    }
}

/// Transmission's status numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Stopped = 0,
    CheckWait = 1,
    Check = 2,
    DownloadWait = 3,
    Download = 4,
    SeedWait = 5,
    Seed = 6,
}

/// Transmission's error numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    TrackerWarning = 1,
    TrackerError = 2,
    Local = 3,
}

/// Bytes wanted and had, from the pieces had and the files wanted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of verified pieces.
    pub have_valid: u64,
    /// Bytes of wanted pieces.
    pub size_when_done: u64,
    /// Bytes of wanted pieces not had yet.
    pub left_until_done: u64,
}

impl Progress {
    pub fn of(info: &Info, have: &Bitfield, wanted: &Bitfield) -> Progress {
        let mut p = Progress::default();
        for i in 0..info.piece_count() {
            let len = u64::from(info.piece_len(i));
            let (h, w) = (have.get(i), wanted.get(i));
            if h {
                p.have_valid += len;
            }
            if w {
                p.size_when_done += len;
                if !h {
                    p.left_until_done += len;
                }
            }
        }
        p
    }

    pub fn done(&self) -> bool {
        self.left_until_done == 0
    }

    pub fn percent_done(&self) -> f64 {
        if self.size_when_done == 0 {
            1.0
        } else {
            (self.size_when_done - self.left_until_done) as f64 / self.size_when_done as f64
        }
    }
}

/// Transfer rates over the last few seconds, from byte counters sampled
/// once a second.
#[derive(Debug, Clone, Default)]
pub struct Rates {
    samples: VecDeque<(Instant, u64, u64)>,
    pub down: u64,
    pub up: u64,
}

const RATE_WINDOW: usize = 5;

impl Rates {
    pub fn sample(&mut self, now: Instant, down: u64, up: u64) {
        if self.samples.len() == RATE_WINDOW {
            self.samples.pop_front();
        }
        self.samples.push_back((now, down, up));
        if let (Some(a), Some(b)) = (self.samples.front(), self.samples.back()) {
            let secs = b.0.duration_since(a.0).as_secs_f64();
            if secs > 0.0 {
                self.down = (b.1.saturating_sub(a.1) as f64 / secs) as u64;
                self.up = (b.2.saturating_sub(a.2) as f64 / secs) as u64;
            }
        }
    }

    pub fn reset(&mut self) {
        *self = Rates::default();
    }
}

/// One torrent of the daemon.
#[derive(Debug)]
pub struct Entry {
    pub meta: Arc<Metainfo>,
    /// The torrent's info with its renames applied.
    pub info: Arc<Info>,
    pub saved: SavedTorrent,
    pub run: Run,
    /// Asked of a torrent being checked, for when its check ends.
    pub pending: Option<After>,
    /// Set to cut a check short.
    pub cancel: Arc<AtomicBool>,
    pub error: Option<(ErrorKind, String)>,
    pub have: Bitfield,
    pub wanted: Bitfield,
    pub progress: Progress,
    pub rates: Rates,
    /// Session counters when it was last added (the saved totals were
    /// carried up to then).
    pub base: Base,
    /// Unix seconds it last started.
    pub start_date: u64,
    /// When anything about it changed (for `recently-active`).
    pub touched: Instant,
    /// When it last moved a byte, for the idle seeding limit.
    pub last_transfer: Instant,
    pub peers_connected: u64,
    /// Check every piece when it next starts.
    pub force_check: bool,
    /// Renames to make on disk once it has stopped.
    pub pending_rename: Vec<(String, String)>,
    /// Peers to dial when it first starts (those that gave a magnet
    /// link's metadata).
    pub initial_peers: Vec<std::net::SocketAddr>,
}

/// The lifetime totals at the start of the current run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Base {
    pub uploaded: u64,
    pub downloaded: u64,
    pub corrupt: u64,
}

impl Entry {
    pub fn new(meta: Arc<Metainfo>, saved: SavedTorrent, have: Option<Bitfield>) -> Entry {
        let info = Arc::new(renamed(&meta.info, &saved.renames));
        let have = have
            .filter(|h| h.len() == info.piece_count())
            .unwrap_or_else(|| Bitfield::new(info.piece_count()));
        let now = Instant::now();
        let mut e = Entry {
            wanted: Bitfield::new(0),
            progress: Progress::default(),
            meta,
            info,
            saved,
            run: Run::Stopped,
            pending: None,
            cancel: Arc::new(AtomicBool::new(false)),
            error: None,
            have,
            rates: Rates::default(),
            base: Base::default(),
            start_date: 0,
            touched: now,
            last_transfer: now,
            peers_connected: 0,
            force_check: false,
            pending_rename: Vec::new(),
            initial_peers: Vec::new(),
        };
        if e.saved.files.len() != e.info.files.len() {
            e.saved.files = vec![FilePrefs::NORMAL; e.info.files.len()];
        }
        e.files_changed();
        e
    }

    pub fn hash(&self) -> InfoHash {
        self.meta.info_hash
    }

    pub fn name(&self) -> &str {
        &self.info.name
    }

    pub fn priorities(&self) -> Vec<Priority> {
        self.saved.files.iter().map(|f| f.as_priority()).collect()
    }

    /// Recomputes what is wanted after file priorities changed.
    pub fn files_changed(&mut self) {
        self.wanted = piece_priorities(&self.info, &self.priorities()).1;
        self.progress = Progress::of(&self.info, &self.have, &self.wanted);
    }

    pub fn set_have(&mut self, have: Bitfield) {
        if have.len() == self.info.piece_count() && have != self.have {
            self.have = have;
            self.progress = Progress::of(&self.info, &self.have, &self.wanted);
        }
    }

    pub fn renames_changed(&mut self) {
        self.info = Arc::new(renamed(&self.meta.info, &self.saved.renames));
    }

    pub fn session_id(&self) -> Option<TorrentId> {
        match self.run {
            Run::Running(t) => Some(t),
            _ => None,
        }
    }

    /// Wants to run: running, about to, or waiting.
    pub fn is_active(&self) -> bool {
        matches!(
            self.run,
            Run::Queued | Run::CheckWait | Run::Checking | Run::Running(_)
        ) && self.pending.is_none()
    }

    pub fn status(&self) -> Status {
        match self.run {
            Run::Stopped | Run::Leaving(..) | Run::Moving => Status::Stopped,
            Run::Queued if self.progress.done() => Status::SeedWait,
            Run::Queued => Status::DownloadWait,
            Run::CheckWait => Status::CheckWait,
            Run::Checking => Status::Check,
            Run::Running(_) if self.progress.done() => Status::Seed,
            Run::Running(_) => Status::Download,
        }
    }

    pub fn touch(&mut self) {
        self.touched = Instant::now();
    }

    /// Uploaded over the wanted size (Transmission's ratio; -1 when
    /// nothing was downloaded or wanted).
    pub fn upload_ratio(&self) -> f64 {
        let base = self.saved.downloaded_ever.max(self.progress.have_valid);
        if base == 0 {
            -1.0
        } else {
            self.saved.uploaded_ever as f64 / base as f64
        }
    }

    /// The ratio at which it stops seeding, if any.
    pub fn ratio_limit(&self, prefs: &Prefs) -> Option<f64> {
        match self.saved.seed_ratio_mode {
            0 => prefs.ratio_limited.then_some(prefs.ratio_limit),
            1 => Some(self.saved.seed_ratio_limit),
            _ => None,
        }
    }

    /// Minutes idle after which it stops seeding, if any.
    pub fn idle_limit(&self, prefs: &Prefs) -> Option<u32> {
        match self.saved.seed_idle_mode {
            0 => prefs
                .idle_seeding_limit_enabled
                .then_some(prefs.idle_seeding_limit),
            1 => Some(self.saved.seed_idle_limit),
            _ => None,
        }
    }

    /// Bytes of each file that are in verified pieces.
    pub fn file_progress(&self) -> Vec<u64> {
        let info = &self.info;
        (0..info.files.len())
            .map(|i| {
                let f = &info.files[i];
                info.file_pieces(i)
                    .filter(|p| self.have.get(*p))
                    .map(|p| {
                        let start = info.piece_offset(p).max(f.offset);
                        let end = (info.piece_offset(p) + u64::from(info.piece_len(p)))
                            .min(f.offset + f.length);
                        end.saturating_sub(start)
                    })
                    .sum()
            })
            .collect()
    }
}

/// The torrent's info with renames applied (a rename that no longer
/// applies is skipped: it was checked when made).
fn renamed(info: &Info, renames: &[(String, String)]) -> Info {
    let mut info = info.clone();
    for (path, name) in renames {
        if let Err(e) = info.rename_path(path, name) {
            log::warn!("{}: {e}", info.name);
        }
    }
    info
}

/// Every torrent, and the daemon-wide figures.
#[derive(Debug, Default)]
pub struct Table {
    /// By RPC id.
    // Boxed: B-tree nodes are often half full, and an entry is 600 bytes.
    pub entries: BTreeMap<u32, Box<Entry>>,
    pub by_hash: HashMap<InfoHash, u32>,
    pub by_session: HashMap<TorrentId, u32>,
    pub next_id: u32,
    pub prefs: Prefs,
    /// Ids removed lately, for `recently-active`.
    pub removed: Vec<(u32, Instant)>,
    pub cumulative: Cumulative,
    /// This run's counters.
    pub current: Cumulative,
    /// Something to save.
    pub dirty: bool,
}

/// The largest torrent id: clients keep ids in signed 32-bit integers.
const MAX_ID: u32 = i32::MAX as u32;

/// How long `recently-active` looks back.
pub const RECENT: Duration = Duration::from_secs(60);

impl Table {
    pub fn insert(&mut self, e: Entry) -> u32 {
        let id = match e.saved.id {
            id if (1..=MAX_ID).contains(&id) && !self.entries.contains_key(&id) => id,
            _ => self.free_id(),
        };
        self.next_id = self.next_id.max(id + 1);
        let mut e = e;
        e.saved.id = id;
        self.by_hash.insert(e.hash(), id);
        self.entries.insert(id, Box::new(e));
        self.dirty = true;
        id
    }

    /// The next id not in use (ids are not reused while free ones follow).
    pub fn free_id(&self) -> u32 {
        let mut id = self.next_id.clamp(1, MAX_ID);
        while self.entries.contains_key(&id) {
            id = if id >= MAX_ID { 1 } else { id + 1 };
        }
        id
    }

    pub fn remove(&mut self, id: u32) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        self.by_hash.remove(&e.hash());
        if let Run::Running(t) | Run::Leaving(t, _) = e.run {
            self.by_session.remove(&t);
        }
        self.removed.push((id, Instant::now()));
        self.dirty = true;
        Some(*e)
    }

    /// The entries that ask to run, in queue order, and whether each is a
    /// download: the ones to start so that at most the queue sizes run.
    pub fn to_start(&self) -> Vec<u32> {
        let p = &self.prefs;
        let running = |download: bool| {
            self.entries
                .values()
                .filter(|e| {
                    matches!(e.run, Run::CheckWait | Run::Checking | Run::Running(_))
                        && e.progress.done() != download
                })
                .count()
        };
        let mut slots = [
            // Seeds, then downloads.
            if p.seed_queue_enabled {
                p.seed_queue_size.saturating_sub(running(false))
            } else {
                usize::MAX
            },
            if p.download_queue_enabled {
                p.download_queue_size.saturating_sub(running(true))
            } else {
                usize::MAX
            },
        ];
        let mut queued: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.run == Run::Queued)
            .map(|e| &**e)
            .collect();
        queued.sort_by_key(|e| e.saved.queue_position);
        let mut out = Vec::new();
        for e in queued {
            let slot = &mut slots[usize::from(!e.progress.done())];
            if *slot > 0 {
                *slot -= 1;
                out.push(e.saved.id);
            }
        }
        out
    }

    /// Queue positions 0.. in the current order (after adds, removes and
    /// moves).
    pub fn renumber_queue(&mut self) {
        let mut order: Vec<(usize, u32)> = self
            .entries
            .values()
            .map(|e| (e.saved.queue_position, e.saved.id))
            .collect();
        order.sort_unstable();
        for (pos, (_, id)) in order.into_iter().enumerate() {
            if let Some(e) = self.entries.get_mut(&id) {
                e.saved.queue_position = pos;
            }
        }
    }

    /// Moves `ids` in the queue: to the top or bottom, or one place up or
    /// down.
    pub fn queue_move(&mut self, ids: &[u32], to: QueueMove) {
        self.renumber_queue();
        let mut order: Vec<u32> = {
            let mut v: Vec<(usize, u32)> = self
                .entries
                .values()
                .map(|e| (e.saved.queue_position, e.saved.id))
                .collect();
            v.sort_unstable();
            v.into_iter().map(|(_, id)| id).collect()
        };
        let ids: std::collections::HashSet<u32> = ids.iter().copied().collect();
        let moving = |id: &u32| ids.contains(id);
        match to {
            QueueMove::Top | QueueMove::Bottom => {
                let (mut front, mut back): (Vec<u32>, Vec<u32>) =
                    order.iter().partition(|id| moving(id));
                if to == QueueMove::Bottom {
                    std::mem::swap(&mut front, &mut back);
                }
                front.extend(back);
                order = front;
            }
            QueueMove::Up => {
                for i in 1..order.len() {
                    if moving(&order[i]) && !moving(&order[i - 1]) {
                        order.swap(i, i - 1);
                    }
                }
            }
            QueueMove::Down => {
                for i in (0..order.len().saturating_sub(1)).rev() {
                    if moving(&order[i]) && !moving(&order[i + 1]) {
                        order.swap(i, i + 1);
                    }
                }
            }
        }
        for (pos, id) in order.into_iter().enumerate() {
            if let Some(e) = self.entries.get_mut(&id) {
                e.saved.queue_position = pos;
                e.touch();
            }
        }
        self.dirty = true;
    }

    pub fn forget_old_removals(&mut self, now: Instant) {
        self.removed
            .retain(|(_, at)| now.duration_since(*at) < RECENT);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueMove {
    Top,
    Up,
    Down,
    Bottom,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metainfo::{FileAttr, FileEntry};

    #[test]
    fn a_promised_removal_or_move_survives_a_later_stop_or_start() {
        let rm = After::Remove { delete_data: true };
        let mv = |start| After::Move {
            to: "/x".into(),
            start,
        };
        assert_eq!(rm.clone().then(After::Start { check: false }), rm);
        assert_eq!(rm.clone().then(mv(true)), rm);
        assert_eq!(mv(true).then(After::Stop), mv(false));
        assert_eq!(mv(false).then(After::Start { check: true }), mv(true));
        assert_eq!(mv(true).then(rm.clone()), rm);
        assert_eq!(
            After::Stop.then(After::Start { check: true }),
            After::Start { check: true }
        );
    }

    /// Pieces of 10 bytes: a = 0..15, b = 15..35, c = 35..40.
    fn meta() -> Arc<Metainfo> {
        let file = |name: &str, offset: u64, length: u64| FileEntry {
            path: vec!["top".into(), name.into()],
            length,
            offset,
            attr: FileAttr::default(),
        };
        Arc::new(Metainfo {
            info: Info {
                name: "top".into(),
                piece_length: 10,
                pieces: vec![[0; 20]; 4],
                pieces_v2: Vec::new(),
                v2_layers: Vec::new(),
                files: vec![file("a", 0, 15), file("b", 15, 20), file("c", 35, 5)],
                private: false,
                multi_file: true,
                total_length: 40,
            },
            info_hash: InfoHash([1; 20]),
            info_hash_v2: None,
            info_bytes: Vec::new(),
            announce: None,
            announce_list: Vec::new(),
            comment: None,
            created_by: None,
            creation_date: None,
            url_list: Vec::new(),
            warnings: Vec::new(),
            renamed: Default::default(),
        })
    }

    #[test]
    fn progress_counts_only_wanted_pieces() {
        let mut have = Bitfield::new(4);
        have.set(0);
        have.set(3);
        let mut e = Entry::new(meta(), SavedTorrent::default(), Some(have));
        assert_eq!(e.progress.size_when_done, 40);
        assert_eq!(e.progress.left_until_done, 20);
        // Piece 3 (30..40) holds the last 5 bytes of b and all of c.
        assert_eq!(e.file_progress(), [10, 5, 5]);
        // b unwanted: pieces 1 (shared with a) and 3 (shared with c) stay.
        e.saved.files[1].wanted = false;
        e.files_changed();
        assert_eq!(
            e.progress,
            Progress {
                have_valid: 20,
                size_when_done: 30,
                left_until_done: 10
            }
        );
        assert!(!e.progress.done());
    }

    #[test]
    fn queues_start_in_order_up_to_their_sizes() {
        let mut t = Table {
            prefs: Prefs {
                download_queue_size: 2,
                ..Prefs::default()
            },
            ..Table::default()
        };
        for i in 0..4u8 {
            let mut m = (*meta()).clone();
            m.info_hash = InfoHash([i; 20]);
            let mut e = Entry::new(Arc::new(m), SavedTorrent::default(), None);
            e.saved.queue_position = 10 - usize::from(i);
            e.run = Run::Queued;
            t.insert(e);
        }
        // Ids 1..=4 have positions 10, 9, 8, 7: the last two go first.
        assert_eq!(t.to_start(), [4, 3]);
        t.entries.get_mut(&4).unwrap().run = Run::Running(TorrentId(1));
        assert_eq!(t.to_start(), [3]);
        t.queue_move(&[1], QueueMove::Top);
        assert_eq!(t.to_start(), [1]);
        // Order 1, 4, 3, 2; twice down: 4, 3, 1, 2.
        t.queue_move(&[1], QueueMove::Down);
        t.queue_move(&[1], QueueMove::Down);
        assert_eq!(t.to_start(), [3]);
        t.prefs.download_queue_enabled = false;
        assert_eq!(t.to_start().len(), 3);
    }

    #[test]
    fn removal_wins_over_later_stops() {
        let r = After::Remove { delete_data: true };
        assert_eq!(r.clone().then(After::Stop), r);
        assert_eq!(
            After::Stop.then(After::Start { check: true }),
            After::Start { check: true }
        );
    }

    #[test]
    fn rates_follow_the_last_seconds() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        for s in 0..10u64 {
            r.sample(t0 + Duration::from_secs(s), s * 1000, 0);
        }
        assert_eq!((r.down, r.up), (1000, 0));
    }
}
