//! What `seed` and `fetch` share: options, signals, progress, the summary.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::Context;
use ringtorrent::engine::{self, EngineConfig, Mode, Progress, ResumeConfig, Summary};
use ringtorrent::metainfo::Metainfo;
use ringtorrent::resume::store;
use ringtorrent::storage::WriteMode;
use ringtorrent::torrent::TorrentConfig;
use ringtorrent::tracker::client::TrackerConfig;

use super::fmt;

#[derive(clap::Args, Clone)]
pub struct Common {
    /// Address to accept peers on (port 0 picks a free one).
    #[arg(long, default_value = "0.0.0.0:6881")]
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
    /// Regular upload slots (one optimistic slot comes on top).
    #[arg(long, default_value_t = 8)]
    pub upload_slots: usize,
    /// Most peer connections.
    #[arg(long, default_value_t = 200)]
    pub max_peers: usize,
    /// Most connections from or to one IP address (NAT and containers put
    /// several peers behind one).
    #[arg(long, default_value_t = 32)]
    pub max_peers_per_ip: usize,
    /// Memory for pieces in flight (e.g. 8M); raise it for links with a large
    /// bandwidth-delay product.
    #[arg(long, value_parser = fmt::parse_size, default_value = "8M")]
    pub memory: u64,
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

/// Stops the engine on SIGTERM or SIGINT.
fn stop_on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    Ok(stop)
}

pub fn run(
    torrent: &std::path::Path,
    dir: std::path::PathBuf,
    mode: Mode,
    common: &Common,
    stall: Duration,
    trust_resume: bool,
) -> anyhow::Result<Summary> {
    super::init_logging(common.verbose);
    if torrent.to_str().is_some_and(|t| t.starts_with("magnet:")) {
        anyhow::bail!(
            "{}: magnet links are not supported yet; give the .torrent file (`ringtorrent info` reads magnets)",
            torrent.display()
        );
    }
    let metainfo = Metainfo::from_file(torrent)?;
    let total = metainfo.info.total_length;
    let name = metainfo.info.name.clone();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cfg = EngineConfig {
        mode,
        metainfo,
        dir,
        listen: common.listen,
        peers: common.peers.clone(),
        threads: common.threads,
        hash_threads: common.hash_threads.unwrap_or(cores),
        map_uploads: !common.no_mmap,
        write_mode: common.write_mode,
        stall_timeout: stall,
        torrent: TorrentConfig {
            choker: ringtorrent::choker::ChokerConfig {
                slots: common.upload_slots,
                ..Default::default()
            },
            max_connections: common.max_peers,
            max_per_ip: common.max_peers_per_ip,
            buffer_budget: common.memory,
            ..TorrentConfig::default()
        },
        tracker: TrackerConfig {
            http_timeout: Duration::from_secs_f64(common.tracker_timeout.max(0.1)),
            udp_timeout: Duration::from_secs_f64((common.tracker_timeout / 5.0).max(0.1)),
            min_backoff: Duration::from_secs_f64((common.tracker_timeout / 3.0).clamp(0.5, 5.0)),
            ..TrackerConfig::default()
        },
        stop: stop_on_signals()?,
        resume: resume_config(common, trust_resume),
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
        b.set_prefix(name.clone());
        b
    });
    super::set_progress_bar(bar.clone());
    let result = engine::run(cfg, |p: &Progress| {
        if let Some(b) = &bar {
            let done = u64::from(p.pieces_have) * total / u64::from(p.pieces_total.max(1));
            b.set_position(done);
            b.set_message(format!("{} peers, up {}", p.peers, fmt::bytes(p.uploaded)));
        }
    });
    super::set_progress_bar(None);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(result?)
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

/// Prints the summary: JSON for scripts, one line for people.
pub fn report(s: &Summary, json: bool, verb: &str) -> anyhow::Result<()> {
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
