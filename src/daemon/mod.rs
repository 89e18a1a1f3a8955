//! `ringtorrent daemon`: one long-lived session driven over Transmission's
//! RPC, with a web UI and Prometheus metrics.
//!
//! Threads: the session's own (shards, coordinator, trackers, resume
//! saver); the manager (this module's [`run`]: session events, a tick a
//! second, the watch directory, signals); the starter (adds torrents one at
//! a time, since an add may check data on every core); and the HTTP thread
//! (a single-threaded tokio runtime serving hyper). All of them share one
//! [`Daemon`], whose torrent table sits behind one lock that no one holds
//! across I/O.

pub mod config;
pub mod control;
mod data;
pub mod engine;
mod http;
mod metrics;
pub mod rpc;
pub mod state;
pub mod table;
mod watch;
mod web;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

pub use config::{ConfigError, Prefs, Settings};
pub use control::{ControlError, Daemon};

use crate::dht::DhtConfig;
use crate::session::{ResumeConfig, Session, SessionConfig, SessionError};
use state::{StateDir, StateError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error("cannot serve RPC on {addr}")]
    Rpc {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the daemon")]
    Start(#[source] std::io::Error),
    #[error("cannot start the tracker")]
    Tracker(#[from] crate::tracker::server::run::ServerError),
}

/// Runs the daemon until SIGTERM, SIGINT or `session-close`. `flags` are
/// the command line's settings, `config` the file they sit on (read again
/// on SIGHUP).
pub fn run(flags: Settings, config: Option<PathBuf>) -> Result<(), DaemonError> {
    // `bound`: the RPC address in use. A reload cannot move the listener,
    // so it is validated (credentials included) against that address.
    let load = |bound: Option<SocketAddr>| -> Result<Settings, ConfigError> {
        let file = match &config {
            Some(p) => Settings::load(p)?,
            None => Settings::default(),
        };
        let mut s = flags.clone().or(file);
        if let Some(addr) = bound {
            if s.rpc_addr() != addr {
                log::warn!("rpc stays on {addr}: a new RPC address takes a restart");
            }
            s.rpc = Some(addr);
        }
        s.validate()?;
        Ok(s)
    };
    let settings = load(None)?;
    let state = StateDir::open(&settings.state_dir()?)?;
    let rpc_addr = settings.rpc_addr();
    let rpc = std::net::TcpListener::bind(rpc_addr).map_err(|source| DaemonError::Rpc {
        addr: rpc_addr,
        source,
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut session = Session::start(SessionConfig {
        listen: settings.listen_addr(),
        threads: settings.threads.unwrap_or(0),
        hash_threads: cores,
        max_connections: settings.max_peers.unwrap_or(500),
        max_per_ip: settings.max_peers_per_ip.unwrap_or(32),
        memory: settings.memory.unwrap_or(64 << 20),
        max_open_files: settings.max_open_files.unwrap_or(256),
        resume: Some(ResumeConfig {
            dir: state.resume(),
            trust: true,
            interval: Duration::from_secs(1),
        }),
        dht: settings.dht.unwrap_or(true).then(|| {
            let mut d = DhtConfig::new(0);
            if let std::net::IpAddr::V4(ip) = settings.listen_addr().ip() {
                d.bind = ip;
            }
            if let Some(b) = &settings.dht_bootstrap {
                d.bootstrap = b.iter().filter(|n| !n.is_empty()).cloned().collect();
            }
            d.state_file = Some(state.root().join("dht-nodes"));
            d
        }),
        lsd: settings.lsd.unwrap_or(true),
        encryption: settings.encryption.unwrap_or_default(),
        ..SessionConfig::default()
    })?;
    session.listen()?;
    let session = Arc::new(session);
    let (daemon, jobs) = Daemon::new(session.clone(), state, settings)?;
    log::info!(
        "peers on port {}, RPC on http://{rpc_addr}/transmission/rpc",
        session.port()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let reload = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).map_err(DaemonError::Start)?;
    }
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .map_err(DaemonError::Start)?;

    let starter = {
        let d = daemon.clone();
        std::thread::Builder::new()
            .name("starter".into())
            .spawn(move || d.run_starter(&jobs))
            .map_err(DaemonError::Start)?
    };
    let server = http::Server::spawn(daemon.clone(), rpc).map_err(DaemonError::Start)?;
    // A tracker beside the torrents (a reload does not move it).
    let tracker = match daemon.settings().tracker {
        Some(addr) => {
            let t = crate::tracker::server::run::Server::start(
                crate::tracker::server::run::ServerConfig {
                    http: Some(addr),
                    udp: Some(addr),
                    ..Default::default()
                },
            )?;
            log::info!("tracker on http://{addr}/announce and udp://{addr}");
            Some(t)
        }
        None => None,
    };
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let mut last_tick = Instant::now();
    let mut watcher = watch::Watcher::default();
    while !stop.load(Ordering::Relaxed) && !daemon.is_closing() {
        if reload.swap(false, Ordering::Relaxed) {
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Reloading]);
            match load(Some(rpc_addr)) {
                Ok(s) => {
                    daemon.reload(s);
                    log::info!("configuration reloaded");
                }
                Err(e) => log::error!("not reloaded: {}", crate::error_chain(&e)),
            }
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
        }
        if let Some(ev) = session.next_event(Duration::from_millis(200)) {
            daemon.on_event(ev);
        }
        let now = Instant::now();
        if now.duration_since(last_tick) >= Duration::from_secs(1) {
            daemon.tick(now, now.duration_since(last_tick));
            last_tick = now;
            if let Some(dir) = daemon.settings().watch_dir {
                watcher.scan(&daemon, &dir);
            }
        }
    }
    log::info!("stopping");
    // Metadata fetches of magnet links stop too.
    daemon.close();
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    daemon.stop_starting();
    server.stop();
    if let Some(t) = tracker {
        t.stop();
    }
    daemon.tick(Instant::now(), Duration::ZERO);
    daemon.save();
    session.shutdown();
    let _ = starter.join();
    Ok(())
}
