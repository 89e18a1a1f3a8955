//! What `seed` and `fetch` share: options, signals, progress, the summary.
//! Both run one session holding every torrent named on the command line.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ringtorrent::dht::DhtConfig;
use ringtorrent::magnet::Magnet;
use ringtorrent::metainfo::{Layerless, Metainfo, MetainfoError};
use ringtorrent::resume::store;
use ringtorrent::session::{
    AddTorrent, FindMetadata, Mode, ResumeConfig, Session, SessionConfig, SessionEvent,
    SessionReport, TorrentStats,
};
use ringtorrent::storage::WriteMode;
use ringtorrent::torrent::{TorrentConfig, TorrentId};
use ringtorrent::tracker::client::TrackerConfig;

use super::fmt;

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Address to accept peers on (port 0 picks a free one); `[::]` takes
    /// IPv4 and IPv6 peers (IPv4 alone where the host has no IPv6).
    #[arg(long, default_value = "[::]:6881")]
    pub listen: SocketAddr,
    /// Connect to this peer too (repeatable); no tracker is needed then.
    #[arg(long = "peer", value_name = "ADDR")]
    pub peers: Vec<SocketAddr>,
    /// Shard threads, each with its own io_uring loop (default: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Threads that verify pieces (0: the shard threads do it).
    #[arg(long)]
    pub hash_threads: Option<usize>,
    /// Read every piece to upload into a buffer, instead of sending pieces
    /// that are in the page cache straight from a mapping of the file.
    #[arg(long)]
    pub no_mmap: bool,
    /// How verified pieces are written: `direct` (O_DIRECT, no page-cache
    /// copy; buffered where the file system refuses it) or `buffered` (page
    /// cache with write-behind, for disks whose direct writes are slow).
    #[arg(long, default_value = "direct", value_parser = parse_write_mode)]
    pub write_mode: WriteMode,
    /// Regular upload slots per torrent (one optimistic slot comes on top).
    #[arg(long, default_value_t = 8)]
    pub upload_slots: usize,
    /// Peers unchoked at once, all torrents together (default: each
    /// torrent's own slots only).
    #[arg(long)]
    pub max_unchoked: Option<usize>,
    /// Most peer connections.
    #[arg(long, default_value_t = 200)]
    pub max_peers: usize,
    /// Most connections from or to one IP address (NAT and containers put
    /// several peers behind one).
    #[arg(long, default_value_t = 32)]
    pub max_peers_per_ip: usize,
    /// Memory for pieces in flight (e.g. 32M), all torrents together, and at
    /// least four pieces; raise it for links with a large bandwidth-delay
    /// product.
    #[arg(long, value_parser = fmt::parse_size, default_value = "32M")]
    pub memory: u64,
    /// Upload rate limit for the whole process, bytes per second (e.g. 20M).
    #[arg(long, value_parser = fmt::parse_size)]
    pub upload_limit: Option<u64>,
    /// Download rate limit for the whole process, bytes per second (e.g. 20M).
    #[arg(long, value_parser = fmt::parse_size)]
    pub download_limit: Option<u64>,
    /// Files kept open at once, all torrents together.
    #[arg(long, default_value_t = 256)]
    pub max_open_files: usize,
    /// Seconds to wait for an HTTP tracker, and the first UDP retry
    /// timeout (it doubles on each of 4 attempts).
    #[arg(long, default_value_t = 15.0)]
    pub tracker_timeout: f64,
    /// Where resume state is kept [default: $XDG_STATE_HOME/ringtorrent].
    #[arg(long, env = "RINGTORRENT_STATE_DIR", value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Keep no resume state: always check the data on start.
    #[arg(long, conflicts_with = "state_dir")]
    pub no_resume: bool,
    /// Run no DHT node (BEP 5): peers come only from trackers, --peer and
    /// peer exchange.
    #[arg(long)]
    pub no_dht: bool,
    /// Join the DHT through this node (repeatable; default: the well-known
    /// routers). `--dht-bootstrap ''` alone joins through none, as the
    /// first node of a private DHT does.
    #[arg(long = "dht-bootstrap", value_name = "HOST:PORT")]
    pub dht_bootstrap: Vec<String>,
    /// UDP port of the DHT node (0: the listen port).
    #[arg(long, default_value_t = 0)]
    pub dht_port: u16,
    /// No local service discovery (BEP 14): no multicast announces of our
    /// torrents, none heard.
    #[arg(long)]
    pub no_lsd: bool,
    /// No peer exchange (BEP 11): peers neither learn of other peers from
    /// us nor tell us of theirs (always so for private torrents).
    #[arg(long)]
    pub no_pex: bool,
    /// Encryption (MSE/PE) of peer connections: `prefer-plain` dials in
    /// plaintext, `prefer` dials encrypted (plaintext for a peer that
    /// fails it), `require` takes RC4 only, both ways. Except under
    /// `require`, plaintext and encrypted peers are both accepted.
    #[arg(long, default_value = "prefer-plain", value_name = "POLICY")]
    pub encryption: ringtorrent::mse::Policy,
    /// While a seed, send each piece out once before any twice: a piece's
    /// first copy goes to one peer at a time, and a piece already sent is
    /// refused (BEP 6 reject) until every piece has gone out, so the
    /// leechers pass pieces on. For the first seed of a fleet.
    #[arg(long)]
    pub super_seed: bool,
    /// Print a JSON summary on stdout at the end.
    #[arg(long)]
    pub json: bool,
    /// More log output (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

fn parse_write_mode(s: &str) -> Result<WriteMode, String> {
    match s {
        "direct" => Ok(WriteMode::Direct),
        "buffered" => Ok(WriteMode::Buffered),
        _ => Err(format!("{s:?}: use direct or buffered")),
    }
}

/// Stops the session on SIGTERM or SIGINT.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    Ok(stop)
}

/// The outcome of one torrent, for the terminal and for `--json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Summary {
    pub info_hash: String,
    pub name: String,
    pub complete: bool,
    pub total_length: u64,
    /// Seconds from the start of the transfer to completion (or to the end
    /// of the run, if it did not complete).
    pub seconds: f64,
    /// Seconds the run took, check included.
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
    /// Disconnects by reason, with connections the session refused before
    /// they named a torrent.
    pub disconnects: BTreeMap<String, u64>,
    /// Block request to arrival, microseconds.
    pub block_latency_us: Latency,
    pub hash_seconds: f64,
    pub disk_seconds: f64,
    pub loop_busy_seconds: f64,
    pub recv_ops: u64,
    pub send_ops: u64,
    pub disk_ops: u64,
    /// Peer connections encrypted with RC4 (MSE/PE), and those whose MSE
    /// exchange chose plaintext.
    pub rc4_connections: u64,
    pub mse_plaintext_connections: u64,
    /// Peak resident memory of this process (`VmHWM`), KiB.
    pub peak_rss_kib: u64,
    /// How pieces were written: `direct`, `buffered`, or `none` (seeding).
    pub write_path: &'static str,
    /// For a magnet link: seconds from the start of the run until its
    /// metadata was verified, and how many peers sent pieces of it.
    pub metadata_seconds: Option<f64>,
    pub metadata_sources: Option<usize>,
    /// Peers whose metadata was refused or who were dropped while it was
    /// fetched, by reason.
    pub metadata_refused: BTreeMap<String, u64>,
    /// Seconds from the start of the run to the first payload byte.
    pub first_byte_seconds: Option<f64>,
    /// Peer addresses learned by peer exchange (BEP 11).
    pub pex_peers: u64,
    /// The session's DHT node (`null` with `--no-dht`).
    pub dht: Option<ringtorrent::dht::DhtStats>,
    /// Pieces from web seeds (BEP 19), and the servers' failures.
    pub web_seeds: ringtorrent::webseed::WebSeedStats,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
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

/// A torrent of the run.
struct Running {
    id: TorrentId,
    meta: Metainfo,
    check_seconds: f64,
    resumed_pieces: u32,
    started: Instant,
    completed_at: Option<Instant>,
    /// Bytes received so far, and when that last changed.
    progress: (u64, Instant),
    write_path: &'static str,
    /// The metadata fetch (magnet links only).
    metadata: Option<MetadataFetch>,
    first_byte: Option<Instant>,
}

/// Why a run of `seed` or `fetch` failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{name}: {why}")]
    Failed { name: String, why: String },
    #[error(
        "{name}: nothing received for {secs} s: {known} peers known, {connected} connected, {tracker_failures} tracker failures, {web_seed_errors} failed web seed requests"
    )]
    Stalled {
        name: String,
        secs: u64,
        known: usize,
        connected: u64,
        tracker_failures: u64,
        web_seed_errors: u64,
    },
    #[error("stopped before the download completed ({have} of {total} pieces)")]
    Interrupted { have: u32, total: u32 },
}

/// How a magnet's metadata was fetched.
#[derive(Debug, Clone)]
struct MetadataFetch {
    seconds: f64,
    sources: usize,
    refused: BTreeMap<&'static str, u64>,
}

/// A torrent named on the command line.
enum Source {
    File(Box<Metainfo>),
    Magnet(Magnet),
}

fn read_torrent(path: &Path) -> anyhow::Result<Source> {
    if let Some(uri) = path.to_str().filter(|t| t.starts_with("magnet:")) {
        return Ok(Source::Magnet(Magnet::parse(uri)?));
    }
    let meta = match Metainfo::from_file(path) {
        Ok(m) => m,
        // A v2 torrent file without the piece layers its files need: they
        // are fetched from peers, as for a `btmh` link.
        Err(e @ MetainfoError::PieceLayer { .. }) => {
            let Some(l) = std::fs::read(path)
                .ok()
                .and_then(|b| Layerless::from_bytes(&b))
            else {
                return Err(anyhow::Error::new(e).context(path.display().to_string()));
            };
            log::warn!("{}: {e}; fetching piece layers from peers", path.display());
            return Ok(Source::Magnet(Magnet::from(l)));
        }
        Err(e) => return Err(anyhow::Error::new(e).context(path.display().to_string())),
    };
    for w in &meta.warnings {
        log::warn!("{}: {w}", path.display());
    }
    Ok(Source::File(Box::new(meta)))
}

/// Fetches a magnet's metadata; the torrent it makes, the peers that had
/// it, and how long it took.
fn resolve(
    session: &Session,
    m: &Magnet,
    common: &Common,
    stall: Duration,
    stop: &AtomicBool,
    run_start: Instant,
) -> anyhow::Result<(Metainfo, Vec<SocketAddr>, MetadataFetch)> {
    let started = Instant::now();
    let mut peers = common.peers.clone();
    peers.extend(m.peer_addrs());
    log::info!(
        "{}: fetching the metadata from {} peers and {} trackers",
        m.name(),
        peers.len(),
        m.trackers.len()
    );
    let fetched = session.fetch_metadata(
        FindMetadata {
            info_hash: m.info_hash,
            info_hash_v2: m.info_hash_v2,
            known_info: m.known_info.clone(),
            trackers: m.tracker_tiers(),
            peers: peers.clone(),
            timeout: Some(stall),
        },
        stop,
    )?;
    let meta = Metainfo::from_info(&fetched.info, &fetched.piece_layers, &m.tracker_tiers())
        .with_context(|| format!("{}: the metadata the peers sent", m.name()))?;
    for w in &meta.warnings {
        log::warn!("{}: {w}", m.name());
    }
    for p in fetched.peers {
        if !peers.contains(&p) {
            peers.push(p);
        }
    }
    log::info!(
        "{}: metadata verified in {:.2} s",
        meta.info.name,
        started.elapsed().as_secs_f64()
    );
    Ok((
        meta,
        peers,
        MetadataFetch {
            seconds: run_start.elapsed().as_secs_f64(),
            sources: fetched.sources,
            refused: fetched.refused,
        },
    ))
}

/// What `seed` and `fetch` ask of [`run`] besides the common options.
pub struct Run<'a> {
    pub torrents: &'a [PathBuf],
    /// Where payloads are (`DIR/<name>`).
    pub dir: PathBuf,
    pub mode: Mode,
    /// Seed on once every download is complete.
    pub seed_after: bool,
    /// Give up on a download that receives nothing for this long.
    pub stall: Duration,
    pub trust_resume: bool,
    /// Where to write the torrent of a magnet link's metadata.
    pub save_torrent: Option<&'a Path>,
    /// Web seeds to use besides (or, with `own_web_seeds` false, instead
    /// of) each torrent's.
    pub web_seeds: &'a [String],
    pub own_web_seeds: bool,
}

/// Runs one session with every torrent of `run`: seeds until stopped, or
/// fetches until every torrent is complete (then seeds on with
/// `seed_after`). Returns a summary per torrent, in order.
pub fn run(run: Run<'_>, common: &Common) -> anyhow::Result<Vec<Summary>> {
    let Run {
        torrents,
        dir,
        mode,
        seed_after,
        stall,
        trust_resume,
        save_torrent,
        web_seeds,
        own_web_seeds,
    } = run;
    super::init_logging(common.verbose);
    let sources: Vec<Source> = torrents
        .iter()
        .map(|t| read_torrent(t))
        .collect::<anyhow::Result<_>>()?;
    let magnets = sources
        .iter()
        .filter(|s| matches!(s, Source::Magnet(_)))
        .count();
    if save_torrent.is_some() && magnets != 1 {
        bail!("--save-torrent takes exactly one magnet link, {magnets} given");
    }
    if mode == Mode::Seed && magnets > 0 {
        bail!("seeding needs the .torrent file: fetch the magnet first (with --save-torrent)");
    }
    let run_start = Instant::now();
    let stop = stop_on_signals()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = SessionConfig {
        listen: common.listen,
        threads: common.threads,
        hash_threads: common.hash_threads.unwrap_or(cores),
        map_uploads: !common.no_mmap,
        write_mode: common.write_mode,
        max_connections: common.max_peers,
        max_per_ip: common.max_peers_per_ip,
        memory: common.memory,
        max_open_files: common.max_open_files,
        upload_limit: common.upload_limit,
        download_limit: common.download_limit,
        max_unchoked: common.max_unchoked,
        torrent: TorrentConfig {
            choker: ringtorrent::choker::ChokerConfig {
                slots: common.upload_slots,
                ..Default::default()
            },
            super_seed: common.super_seed,
            pex: !common.no_pex,
            ..TorrentConfig::default()
        },
        tracker: TrackerConfig {
            http_timeout: Duration::from_secs_f64(common.tracker_timeout.max(0.1)),
            udp_timeout: Duration::from_secs_f64((common.tracker_timeout / 5.0).max(0.1)),
            min_backoff: Duration::from_secs_f64((common.tracker_timeout / 3.0).clamp(0.5, 5.0)),
            ..TrackerConfig::default()
        },
        resume: resume_config(common, trust_resume),
        dht: dht_config(common),
        lsd: !common.no_lsd,
        encryption: common.encryption,
        seed: None,
    };
    let mut session = Session::start(cfg)?;
    // A signal during the start-up check stops it too.
    session.set_cancel_flag(stop.clone());
    // Trackers, the DHT and LSD give our port out while a magnet's metadata
    // is fetched: peers that dial it then must get through.
    let listening_early = magnets > 0;
    if listening_early {
        session.listen()?;
    }
    let mut running = Vec::with_capacity(sources.len());
    let direct = common.write_mode == WriteMode::Direct;
    for source in sources {
        let (meta, peers, metadata) = match source {
            Source::File(meta) => (*meta, common.peers.clone(), None),
            Source::Magnet(m) => match resolve(&session, &m, common, stall, &stop, run_start) {
                Ok((meta, peers, took)) => (meta, peers, Some(took)),
                Err(e) => {
                    session.shutdown();
                    return Err(e);
                }
            },
        };
        if metadata.is_some()
            && let Some(path) = save_torrent
        {
            let bytes = meta.to_torrent_bytes();
            ringtorrent::resume::store::write_atomic(path, &bytes)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        let mut add = AddTorrent {
            peers,
            ..AddTorrent::new(meta.clone(), dir.clone(), mode)
        };
        if !own_web_seeds {
            add.web_seeds.clear();
        }
        add.web_seeds.extend_from_slice(web_seeds);
        let added = session.add(add);
        let added = match added {
            Ok(a) => a,
            Err(e) => {
                session.shutdown();
                return Err(e.into());
            }
        };
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let write_path = match mode {
            Mode::Seed => "none",
            Mode::Fetch if direct && storage_takes_direct(&dir) => "direct",
            Mode::Fetch => "buffered",
        };
        running.push(Running {
            id: added.id,
            completed_at: (added.have == meta.info.piece_count()).then_some(now),
            meta,
            check_seconds: added.check_seconds,
            resumed_pieces: added.resumed_pieces,
            started: now,
            progress: (0, now),
            write_path,
            metadata,
            first_byte: None,
        });
    }
    if !listening_early {
        session.listen()?;
    }
    let outcome = watch(
        &session,
        &mut running,
        mode,
        seed_after,
        common,
        stall,
        &stop,
    );
    let report = session.shutdown();
    outcome?;
    Ok(running
        .iter()
        .map(|r| summary(r, &report, run_start))
        .collect())
}

/// Whether the output directory's file system takes `O_DIRECT`.
fn storage_takes_direct(dir: &Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let probe = tempfile::Builder::new()
        .prefix(".ringtorrent-direct-")
        .tempfile_in(dir);
    let Ok(probe) = probe else { return false };
    std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(probe.path())
        .is_ok()
}

/// Follows the torrents until the run is over: every download complete
/// (unless seeding on), a failure, a stall, or a signal.
fn watch(
    session: &Session,
    running: &mut [Running],
    mode: Mode,
    seed_after: bool,
    common: &Common,
    stall: Duration,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    let total: u64 = running.iter().map(|r| r.meta.info.total_length).sum();
    let name = match &*running {
        [one] => one.meta.info.name.clone(),
        many => format!("{} torrents", many.len()),
    };
    let bar = (std::io::stderr().is_terminal() && !common.json).then(|| {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        b.set_prefix(name);
        b
    });
    super::set_progress_bar(bar.clone());
    let by_id: HashMap<TorrentId, usize> =
        running.iter().enumerate().map(|(i, r)| (r.id, i)).collect();
    let fetching = mode == Mode::Fetch;
    let result = loop {
        // Finer until the first byte, which `--json` reports.
        let waiting = fetching && running.iter().any(|r| r.first_byte.is_none());
        let poll = Duration::from_millis(if waiting { 20 } else { 200 });
        match session.next_event(poll) {
            Some(SessionEvent::Complete(id)) => {
                if let Some(&i) = by_id.get(&id) {
                    running[i].completed_at.get_or_insert_with(Instant::now);
                    log::info!("{}: download complete", running[i].meta.info.name);
                }
            }
            Some(SessionEvent::Failed(id, why)) => {
                let name = by_id
                    .get(&id)
                    .map_or_else(|| id.to_string(), |&i| running[i].meta.info.name.clone());
                break Err(RunError::Failed { name, why }.into());
            }
            Some(SessionEvent::Removed(_)) | None => {}
        }
        let now = Instant::now();
        let mut done = 0u64;
        let mut peers = 0;
        let mut uploaded = 0;
        // Counters are read only for the bar and for stalled downloads: a
        // seed with no terminal just waits.
        let watched = if bar.is_some() || fetching {
            &mut *running
        } else {
            &mut []
        };
        for r in watched.iter_mut() {
            let Some(s) = session.stats(r.id) else {
                continue;
            };
            done += u64::from(s.pieces_have) * r.meta.info.total_length
                / u64::from(s.pieces_total.max(1));
            peers += s.peers;
            uploaded += s.uploaded;
            // Web seeds' pieces are progress too.
            let got = s.downloaded + s.web.downloaded;
            if got != r.progress.0 {
                r.progress = (got, now);
                r.first_byte.get_or_insert(now);
            } else if fetching
                && r.completed_at.is_none()
                && now.duration_since(r.progress.1) > stall
            {
                let (_, failures) = session.announces(r.id);
                return finish_bar(
                    &bar,
                    Err(RunError::Stalled {
                        name: r.meta.info.name.clone(),
                        secs: stall.as_secs(),
                        known: s.known_peers,
                        connected: s.peers,
                        tracker_failures: failures,
                        web_seed_errors: s.web.errors,
                    }
                    .into()),
                );
            }
        }
        if fetching && !seed_after && running.iter().all(|r| r.completed_at.is_some()) {
            break Ok(());
        }
        if let Some(b) = &bar {
            b.set_position(done);
            b.set_message(format!("{peers} peers, up {}", fmt::bytes(uploaded)));
        }
        if stop.load(Ordering::Relaxed) {
            let incomplete: Vec<&Running> = running
                .iter()
                .filter(|r| r.completed_at.is_none())
                .collect();
            break if fetching && !incomplete.is_empty() {
                let (have, total) = incomplete.iter().fold((0, 0), |(h, t), r| {
                    let s = session.stats(r.id);
                    (
                        h + s.as_ref().map_or(0, |s| s.pieces_have),
                        t + r.meta.info.piece_count(),
                    )
                });
                Err(RunError::Interrupted { have, total }.into())
            } else {
                Ok(())
            };
        }
    };
    finish_bar(&bar, result)
}

fn finish_bar(
    bar: &Option<indicatif::ProgressBar>,
    result: anyhow::Result<()>,
) -> anyhow::Result<()> {
    super::set_progress_bar(None);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    result
}

/// One torrent's summary from the session's final counters.
fn summary(r: &Running, report: &SessionReport, run_start: Instant) -> Summary {
    let empty;
    let s: &TorrentStats = match report.torrents.get(&r.id) {
        Some(s) => s,
        None => {
            empty = TorrentStats::empty(r.meta.info.piece_count());
            &empty
        }
    };
    let end = r.completed_at.unwrap_or_else(Instant::now);
    let seconds = end.saturating_duration_since(r.started).as_secs_f64();
    let mut disconnects: BTreeMap<String, u64> = s
        .disconnects
        .iter()
        .map(|(k, v)| ((*k).to_owned(), *v))
        .collect();
    let mut protocol_errors = s.protocol_errors;
    for (k, v) in &report.refused {
        *disconnects.entry((*k).to_owned()).or_insert(0) += v;
        if ringtorrent::peer::PeerError::is_violation_kind(k) {
            protocol_errors += v;
        }
    }
    let (announces, failures) = report.announces.get(&r.id).copied().unwrap_or((0, 0));
    let none = ringtorrent::torrent::latency_histogram();
    let l = s.latency.as_ref().unwrap_or(&none);
    Summary {
        info_hash: r.meta.info_hash.to_hex(),
        name: r.meta.info.name.clone(),
        complete: s.complete,
        total_length: r.meta.info.total_length,
        seconds,
        run_seconds: run_start.elapsed().as_secs_f64(),
        check_seconds: r.check_seconds,
        resumed_pieces: u64::from(r.resumed_pieces),
        downloaded: s.downloaded,
        uploaded: s.uploaded,
        wasted: s.wasted,
        mib_per_second: s.downloaded as f64 / 1048576.0 / seconds.max(1e-9),
        pieces_verified: s.pieces_verified,
        hash_failures: s.hash_failures,
        read_errors: s.read_errors,
        protocol_errors,
        peers_seen: s.peers_seen,
        peers_banned: s.peers_banned,
        banned_peers: s.banned.iter().map(ToString::to_string).collect(),
        connect_failures: s.connect_failures,
        tracker_announces: announces,
        tracker_failures: failures,
        disconnects,
        block_latency_us: Latency {
            count: l.len(),
            p50: l.value_at_quantile(0.5),
            p99: l.value_at_quantile(0.99),
            p999: l.value_at_quantile(0.999),
            max: l.max(),
        },
        hash_seconds: report.hash_seconds + s.hash_nanos as f64 / 1e9,
        disk_seconds: report.loops.disk_nanos as f64 / 1e9,
        loop_busy_seconds: report.loops.busy.as_secs_f64(),
        recv_ops: report.loops.recv_ops,
        send_ops: report.loops.send_ops,
        disk_ops: report.loops.disk_ops,
        rc4_connections: report.loops.rc4_connections,
        mse_plaintext_connections: report.loops.mse_plaintext_connections,
        peak_rss_kib: peak_rss_kib(),
        write_path: r.write_path,
        metadata_seconds: r.metadata.as_ref().map(|m| m.seconds),
        metadata_sources: r.metadata.as_ref().map(|m| m.sources),
        metadata_refused: r.metadata.as_ref().map_or_else(BTreeMap::new, |m| {
            m.refused
                .iter()
                .map(|(k, n)| ((*k).to_owned(), *n))
                .collect()
        }),
        first_byte_seconds: r
            .first_byte
            .map(|t| t.saturating_duration_since(run_start).as_secs_f64()),
        pex_peers: s.pex_received,
        dht: report.dht,
        web_seeds: s.web.clone(),
    }
}

/// The DHT node `--no-dht`, `--dht-bootstrap` and `--dht-port` ask for,
/// bound to the listen address's IP when that is IPv4.
fn dht_config(common: &Common) -> Option<DhtConfig> {
    if common.no_dht {
        return None;
    }
    let mut d = DhtConfig::new(common.dht_port);
    if let std::net::IpAddr::V4(ip) = common.listen.ip() {
        d.bind = ip;
    }
    if !common.dht_bootstrap.is_empty() {
        // `--dht-bootstrap ''` alone: join through no node.
        d.bootstrap = common
            .dht_bootstrap
            .iter()
            .filter(|b| !b.is_empty())
            .cloned()
            .collect();
    }
    if !common.no_resume {
        d.state_file = common
            .state_dir
            .clone()
            .or_else(store::default_dir)
            .map(|dir| dir.join("dht-nodes"));
    }
    Some(d)
}

fn resume_config(common: &Common, trust: bool) -> Option<ResumeConfig> {
    if common.no_resume {
        return None;
    }
    let dir = common.state_dir.clone().or_else(store::default_dir);
    if dir.is_none() {
        log::warn!("no state directory (set --state-dir or $HOME): resume state is off");
    }
    Some(ResumeConfig {
        dir: dir?,
        trust,
        interval: Duration::from_secs(1),
    })
}

/// Prints the summaries: JSON for scripts (one object per line, one line
/// per torrent), one line per torrent for people.
pub fn report(summaries: &[Summary], json: bool, verb: &str) -> anyhow::Result<()> {
    for s in summaries {
        report_one(s, json, verb)?;
    }
    Ok(())
}

fn report_one(s: &Summary, json: bool, verb: &str) -> anyhow::Result<()> {
    if json {
        return fmt::out(&(serde_json::to_string(s)? + "\n"));
    }
    let mut line = if verb == "seeded" {
        format!(
            "seeded {} for {:.1} s: uploaded {}",
            s.name,
            s.run_seconds,
            fmt::bytes(s.uploaded)
        )
    } else {
        format!(
            "{verb} {}: {} in {:.2} s ({:.1} MiB/s), uploaded {}",
            s.name,
            fmt::bytes(s.downloaded),
            s.seconds,
            s.mib_per_second,
            fmt::bytes(s.uploaded),
        )
    };
    if s.hash_failures > 0 || s.protocol_errors > 0 {
        line += &format!(
            ", {} hash failures, {} protocol errors",
            s.hash_failures, s.protocol_errors
        );
    }
    eprintln!("{line}");
    Ok(())
}
