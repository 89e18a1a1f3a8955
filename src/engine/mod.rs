//! The engine: one torrent on `threads` shards, each a thread with its own
//! io_uring event loop (see `docs/architecture.md`).
//!
//! The calling thread keeps the engine's clock: it hands new peers to
//! shards, watches for completion, stalls and signals, and reports progress.
//! Trackers have their own thread.

mod driver;
mod hasher;
mod resume_saver;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::{Duration, Instant};

pub use driver::LoopStats;

use crate::bitfield::Bitfield;
use crate::metainfo::{Info, Metainfo};
use crate::resume::{ResumeState, store};
use crate::storage::{OpenMode, Storage, StorageError, WriteMode};
use crate::torrent::shared::lock;
use crate::torrent::stats::Stats;
use crate::torrent::{Inbox, Shard, ShardMsg, Shared, TorrentConfig, TorrentEvent};
use crate::tracker::client::{Announcer, Totals, TrackerConfig, TrackerSetup};
use resume_saver::SaveTarget;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Upload what is on disk until stopped.
    Seed,
    /// Download; with `seed_after`, keep uploading once complete.
    Fetch { seed_after: bool },
}

pub struct EngineConfig {
    pub mode: Mode,
    pub metainfo: Metainfo,
    /// The payload is `dir/<info.name>`.
    pub dir: PathBuf,
    pub listen: SocketAddr,
    /// Peers to dial besides the trackers' (`--peer`).
    pub peers: Vec<SocketAddr>,
    /// Shard threads (0: one per core).
    pub threads: usize,
    /// Hashing threads (0: hash on the shard threads).
    pub hash_threads: usize,
    /// Upload pieces that are in the page cache from a mapping of the file
    /// (no copy into a buffer); otherwise every upload is read.
    pub map_uploads: bool,
    pub write_mode: WriteMode,
    /// Fetch gives up when nothing arrives for this long.
    pub stall_timeout: Duration,
    pub torrent: TorrentConfig,
    pub tracker: TrackerConfig,
    /// Set from outside (a signal) to stop.
    pub stop: Arc<AtomicBool>,
    /// Where resume state lives (`None`: no resume state).
    pub resume: Option<ResumeConfig>,
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

/// What a progress callback sees, a few times a second.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub elapsed: Duration,
    pub pieces_have: u32,
    pub pieces_total: u32,
    pub downloaded: u64,
    pub uploaded: u64,
    pub total_length: u64,
    pub peers: u64,
}

/// The outcome of a run, for the terminal and for `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub info_hash: String,
    pub name: String,
    pub complete: bool,
    pub total_length: u64,
    /// Seconds from the start of the transfer to completion (or to the end
    /// of the run, if it did not complete).
    pub seconds: f64,
    /// Seconds the engine ran, check included.
    pub run_seconds: f64,
    /// Seconds spent checking existing data before the transfer.
    pub check_seconds: f64,
    /// Pieces taken from resume state instead of being checked.
    pub resumed_pieces: u64,
    pub downloaded: u64,
    pub uploaded: u64,
    pub wasted: u64,
    pub mib_per_second: f64,
    pub pieces_verified: u64,
    pub hash_failures: u64,
    pub read_errors: u64,
    pub protocol_errors: u64,
    pub peers_seen: u64,
    pub peers_banned: u64,
    /// Where the banned peers' connections were.
    pub banned_peers: Vec<String>,
    pub connect_failures: u64,
    pub tracker_announces: u64,
    pub tracker_failures: u64,
    pub disconnects: BTreeMap<String, u64>,
    /// Block request to arrival, microseconds.
    pub block_latency_us: Latency,
    pub hash_seconds: f64,
    pub disk_seconds: f64,
    pub loop_busy_seconds: f64,
    pub recv_ops: u64,
    pub send_ops: u64,
    pub disk_ops: u64,
    /// Peak resident memory of this process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// How pieces were written: `direct`, `buffered`, or `none` (seeding).
    pub write_path: &'static str,
}

/// This process's peak resident set since exec, from `/proc/self/status`.
/// (`getrusage` would include the parent's memory at fork.)
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the engine")]
    Start(#[source] std::io::Error),
    #[error("none of the data in {0} matches the torrent")]
    NoData(PathBuf),
    #[error("{0}")]
    Fatal(String),
    #[error(
        "nothing received for {secs} s: {known} peers known, {connected} connected, {tracker_failures} tracker failures"
    )]
    Stalled {
        secs: u64,
        known: usize,
        connected: u64,
        tracker_failures: u64,
    },
    #[error("resume state (choose another --state-dir, or --no-resume)")]
    Resume(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("stopped before the download completed ({have} of {total} pieces)")]
    Interrupted { have: u32, total: u32 },
}

pub fn run(cfg: EngineConfig, mut progress: impl FnMut(&Progress)) -> Result<Summary, EngineError> {
    let start = Instant::now();
    let info = Arc::new(cfg.metainfo.info.clone());
    let threads = match cfg.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };

    // Storage, and what of the payload is already there.
    let open_mode = match cfg.mode {
        Mode::Seed => OpenMode::Seed,
        Mode::Fetch { .. } => OpenMode::Fetch,
    };
    let storage = Arc::new(Storage::open(&info, &cfg.dir, open_mode)?);
    // Where this payload's resume state lives, if resume state is on.
    let resume = match &cfg.resume {
        Some(r) => {
            store::prepare_dir(&r.dir).map_err(|e| EngineError::Resume(Box::new(e)))?;
            let root = storage
                .root()
                .canonicalize()
                .unwrap_or_else(|_| storage.root().to_path_buf());
            let path = r
                .dir
                .join(ResumeState::file_name(&cfg.metainfo.info_hash, &root));
            Some((r, SaveTarget { path, root }))
        }
        None => None,
    };
    let trusted = match &resume {
        Some((r, t)) if r.trust || cfg.mode != Mode::Seed => resumed(&cfg, &info, &storage, t),
        _ => None,
    };
    let from_state = trusted.is_some();
    let resumed_pieces = trusted.as_ref().map_or(0, Bitfield::count_ones);
    let have: Bitfield = match trusted {
        Some(have) => have,
        None => storage.check(&info, threads, &cfg.stop)?,
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
    if cfg.mode == Mode::Seed && have.count_ones() == 0 {
        return Err(EngineError::NoData(storage.root().to_path_buf()));
    }

    let listener = listen(cfg.listen)?;
    let port = local_port(&listener);

    // One eventfd per shard wakes its ring when its inbox gets mail.
    let mut eventfds = Vec::with_capacity(threads);
    let mut inboxes = Vec::with_capacity(threads);
    for _ in 0..threads {
        let efd: Arc<OwnedFd> = Arc::new(
            rustix::event::eventfd(
                0,
                rustix::event::EventfdFlags::CLOEXEC | rustix::event::EventfdFlags::NONBLOCK,
            )
            .map_err(|e| EngineError::Start(e.into()))?,
        );
        let w = efd.clone();
        inboxes.push(Inbox::new(Box::new(move || {
            let _ = rustix::io::write(&*w, &1u64.to_ne_bytes());
        })));
        eventfds.push(efd);
    }
    let (events_tx, events_rx) = channel();
    let mut tcfg = cfg.torrent.clone();
    tcfg.seed_only = cfg.mode == Mode::Seed;
    let shared = Arc::new(Shared::new(
        info.clone(),
        cfg.metainfo.info_hash,
        &have,
        tcfg,
        inboxes,
        events_tx,
    ));
    shared.listen_port.store(u64::from(port), Ordering::Relaxed);

    // Seeding never changes the files: one save after a check is enough.
    // Downloads save as they go.
    let saver = match (resume, cfg.mode) {
        (Some((_, t)), Mode::Seed) => {
            // (A seed never writes, so there is nothing to flush first.)
            if !from_state && let Err(e) = t.write(&shared, &storage, shared.have.snapshot()) {
                log::warn!("{}", crate::error_chain(&e));
            }
            None
        }
        (Some((r, t)), Mode::Fetch { .. }) => Some(
            resume_saver::Saver::spawn(t, shared.clone(), storage.clone(), r.interval)
                .map_err(EngineError::Start)?,
        ),
        (None, _) => None,
    };

    let pool = match cfg.hash_threads {
        0 => None,
        n => Some(hasher::HashPool::start(n, shared.clone()).map_err(EngineError::Start)?),
    };
    let mut listener = Some(listener);
    let direct_writes =
        cfg.mode != Mode::Seed && cfg.write_mode == WriteMode::Direct && storage.has_direct();
    let driver_cfg = driver::DriverConfig {
        map_uploads: cfg.map_uploads,
        direct_writes,
    };
    let mut shard_threads = Vec::with_capacity(threads);
    for (i, efd) in eventfds.into_iter().enumerate() {
        let shard = Shard::new(i, shared.clone(), Instant::now());
        let storage = storage.clone();
        let l = if i == 0 { listener.take() } else { None };
        let tx = pool.as_ref().and_then(|p| p.sender());
        let t = std::thread::Builder::new()
            .name(format!("shard-{i}"))
            .spawn(move || driver::Driver::new(shard, storage, l, efd, tx, driver_cfg)?.run())
            .map_err(EngineError::Start)?;
        shard_threads.push(t);
    }

    // Trackers (none for a trackerless `--peer` transfer).
    let tiers = cfg.metainfo.tracker_tiers();
    let announcer = if tiers.is_empty() {
        None
    } else {
        let s1 = shared.clone();
        let s2 = shared.clone();
        let s3 = shared.clone();
        Some(
            Announcer::spawn(TrackerSetup {
                tiers,
                info_hash: shared.info_hash,
                peer_id: shared.peer_id,
                port,
                config: cfg.tracker.clone(),
                totals: Arc::new(move || Totals {
                    uploaded: Stats::get(&s1.stats.uploaded),
                    downloaded: Stats::get(&s1.stats.downloaded),
                    left: s1.left(),
                }),
                on_peers: Box::new(move |peers| {
                    let n = lock(&s2.registry).add(Instant::now(), peers);
                    log::debug!("{n} new peers from the tracker");
                }),
                on_result: Box::new(move |_, r| {
                    Stats::add(&s3.stats.tracker_announces, 1);
                    if r.is_err() {
                        Stats::add(&s3.stats.tracker_failures, 1);
                    }
                }),
            })
            .map_err(EngineError::Start)?,
        )
    };
    lock(&shared.registry).add(Instant::now(), cfg.peers.iter().copied());

    // The engine's clock.
    let transfer_start = Instant::now();
    let mut completed_at = shared.is_complete().then(Instant::now);
    let mut last_progress = (Stats::get(&shared.stats.downloaded), Instant::now());
    let mut last_report = Instant::now() - Duration::from_secs(1);
    let outcome: Result<(), EngineError> = loop {
        match events_rx.recv_timeout(Duration::from_millis(20)) {
            Ok(TorrentEvent::Complete) => {
                completed_at.get_or_insert_with(Instant::now);
                log::info!("download complete");
                if let Some(a) = &announcer {
                    a.completed();
                }
                if cfg.mode == (Mode::Fetch { seed_after: false }) {
                    break Ok(());
                }
            }
            Ok(TorrentEvent::Fatal(why)) => break Err(EngineError::Fatal(why)),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break Ok(()),
        }
        let now = Instant::now();
        let due = lock(&shared.registry).due(now);
        for (addr, shard) in due {
            shared.inboxes[shard].post(ShardMsg::Connect(addr));
        }
        if cfg.stop.load(Ordering::Relaxed) {
            break match cfg.mode {
                Mode::Fetch { .. } if !shared.is_complete() => Err(EngineError::Interrupted {
                    have: shared.have.count_ones(),
                    total: info.piece_count(),
                }),
                _ => Ok(()),
            };
        }
        let downloaded = Stats::get(&shared.stats.downloaded);
        if downloaded != last_progress.0 {
            last_progress = (downloaded, now);
        } else if matches!(cfg.mode, Mode::Fetch { .. })
            && !shared.is_complete()
            && now.duration_since(last_progress.1) > cfg.stall_timeout
        {
            let reg = lock(&shared.registry);
            break Err(EngineError::Stalled {
                secs: cfg.stall_timeout.as_secs(),
                known: reg.known(),
                connected: Stats::get(&shared.stats.peers_connected),
                tracker_failures: Stats::get(&shared.stats.tracker_failures),
            });
        }
        if now.duration_since(last_report) >= Duration::from_millis(200) {
            last_report = now;
            progress(&Progress {
                elapsed: now.duration_since(transfer_start),
                pieces_have: shared.have.count_ones(),
                pieces_total: info.piece_count(),
                downloaded,
                uploaded: Stats::get(&shared.stats.uploaded),
                total_length: info.total_length,
                peers: Stats::get(&shared.stats.peers_connected),
            });
        }
    };
    let end = match (cfg.mode, completed_at) {
        (Mode::Fetch { .. }, Some(t)) => t,
        _ => Instant::now(),
    };

    // Shut down: shards close their peers while the tracker says goodbye.
    log::debug!("shutting down");
    shared.broadcast(|| ShardMsg::Shutdown);
    if let Some(a) = announcer {
        a.stop(Duration::from_secs(1));
    }
    let mut latency =
        hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    let mut loops = LoopStats::default();
    for t in shard_threads {
        match t.join() {
            Ok(Ok(report)) => {
                let _ = latency.add(&report.latency);
                loops.recv_ops += report.stats.recv_ops;
                loops.send_ops += report.stats.send_ops;
                loops.disk_ops += report.stats.disk_ops;
                loops.busy += report.stats.busy;
            }
            Ok(Err(e)) => log::error!("shard failed: {e}"),
            Err(_) => log::error!("a shard thread panicked"),
        }
    }
    log::debug!("shards stopped");
    if let Some(s) = saver {
        s.finish();
    }
    if let Some(p) = pool {
        p.stop();
    }
    outcome?;
    if let Some(why) = lock(&shared.fatal).clone() {
        return Err(EngineError::Fatal(why));
    }

    let st = &shared.stats;
    let seconds = end.duration_since(transfer_start).as_secs_f64();
    let downloaded = Stats::get(&st.downloaded);
    Ok(Summary {
        info_hash: cfg.metainfo.info_hash.to_hex(),
        name: info.name.clone(),
        complete: shared.is_complete(),
        total_length: info.total_length,
        seconds,
        run_seconds: start.elapsed().as_secs_f64(),
        check_seconds,
        resumed_pieces: u64::from(resumed_pieces),
        downloaded,
        uploaded: Stats::get(&st.uploaded),
        wasted: Stats::get(&st.wasted),
        mib_per_second: downloaded as f64 / 1048576.0 / seconds.max(1e-9),
        pieces_verified: Stats::get(&st.pieces_verified),
        hash_failures: Stats::get(&st.hash_failures),
        read_errors: Stats::get(&st.read_errors),
        protocol_errors: Stats::get(&st.protocol_errors),
        peers_seen: Stats::get(&st.peers_seen),
        peers_banned: Stats::get(&st.peers_banned),
        banned_peers: lock(&st.banned).iter().map(ToString::to_string).collect(),
        connect_failures: Stats::get(&st.connect_failures),
        tracker_announces: Stats::get(&st.tracker_announces),
        tracker_failures: Stats::get(&st.tracker_failures),
        disconnects: lock(&st.disconnects)
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        block_latency_us: Latency {
            count: latency.len(),
            p50: latency.value_at_quantile(0.5),
            p99: latency.value_at_quantile(0.99),
            p999: latency.value_at_quantile(0.999),
            max: latency.max(),
        },
        hash_seconds: Stats::get(&st.hash_nanos) as f64 / 1e9,
        disk_seconds: Stats::get(&st.disk_nanos) as f64 / 1e9,
        loop_busy_seconds: loops.busy.as_secs_f64(),
        recv_ops: loops.recv_ops,
        send_ops: loops.send_ops,
        disk_ops: loops.disk_ops,
        peak_rss_kib: peak_rss_kib(),
        write_path: match (cfg.mode, direct_writes) {
            (Mode::Seed, _) => "none",
            (_, true) => "direct",
            (_, false) => "buffered",
        },
    })
}

/// The pieces the saved resume state vouches for, if it matches the files.
fn resumed(cfg: &EngineConfig, info: &Info, storage: &Storage, t: &SaveTarget) -> Option<Bitfield> {
    let state = store::load(&t.path)?;
    let strict = cfg.mode == Mode::Seed;
    match state.usable(
        &cfg.metainfo.info_hash,
        info,
        &t.root,
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

fn listen(addr: SocketAddr) -> Result<OwnedFd, EngineError> {
    let err = |source| EngineError::Listen { addr, source };
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM.cloexec(),
        None,
    )
    .map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.bind(&addr.into()).map_err(err)?;
    s.listen(1024).map_err(err)?;
    Ok(OwnedFd::from(s))
}

fn local_port(fd: &OwnedFd) -> u16 {
    rustix::net::getsockname(fd)
        .ok()
        .and_then(|a| SocketAddr::try_from(a).ok())
        .map_or(0, |a| a.port())
}
