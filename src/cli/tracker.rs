//! `ringtorrent tracker`: an HTTP and UDP tracker until SIGTERM or SIGINT;
//! SIGHUP reloads the allow-list.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use ringtorrent::tracker::server::Limits;
use ringtorrent::tracker::server::run::{Server, ServerConfig};

#[derive(clap::Args)]
pub struct Args {
    /// Address for both the HTTP tracker (TCP, `/announce` and `/scrape`)
    /// and the UDP tracker (BEP 15); `[::]` takes both families.
    #[arg(long, default_value = "[::]:6969")]
    listen: SocketAddr,
    /// Serve HTTP only.
    #[arg(long, conflicts_with = "no_http")]
    no_udp: bool,
    /// Serve UDP only.
    #[arg(long)]
    no_http: bool,
    /// Serve only the torrents listed (one hex info-hash per line); SIGHUP
    /// reloads the file.
    #[arg(long, value_name = "FILE")]
    allow: Option<PathBuf>,
    /// Seconds peers are asked to wait between announces; a peer silent
    /// for twice as long (and a minute) is forgotten.
    #[arg(long, default_value_t = 300)]
    interval: u64,
    /// Most torrents tracked at once.
    #[arg(long, default_value_t = 100_000)]
    max_torrents: usize,
    /// Most peers tracked at once, all torrents together (about 100 bytes
    /// each).
    #[arg(long, default_value_t = 1_000_000)]
    max_peers: usize,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(sig, stop.clone()).context("cannot install signal handlers")?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone())
        .context("cannot install signal handlers")?;
    let server = Server::start(ServerConfig {
        http: (!args.no_http).then_some(args.listen),
        udp: (!args.no_udp).then_some(args.listen),
        limits: Limits {
            interval: Duration::from_secs(args.interval.max(1)),
            max_torrents: args.max_torrents,
            max_peers: args.max_peers,
            ..Limits::default()
        },
        allow_file: args.allow,
        reload,
    })?;
    if let Some(a) = server.http_addr {
        log::info!("HTTP tracker on http://{a}/announce");
    }
    if let Some(a) = server.udp_addr {
        log::info!("UDP tracker on udp://{a}");
    }
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
    Ok(ExitCode::SUCCESS)
}
