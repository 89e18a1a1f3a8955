//! Subcommands. Library errors become one line on stderr here, the only
//! place that uses `anyhow`.

mod bench;
mod create;
mod daemon;
mod fetch;
mod fmt;
mod health;
mod info;
mod seed;
mod tracker;
mod transfer;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "ringtorrent",
    version,
    about = "A fast BitTorrent seeder/leecher for Linux servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Make a .torrent of a file or directory, hashing on every core.
    Create(create::Args),
    /// Show what a .torrent (or magnet URI) holds.
    Info(info::Args),
    /// Ask every tracker of a .torrent (or magnet URI) how its swarm
    /// stands: seeders, leechers, completed downloads.
    Health(health::Args),
    /// Upload DATA_DIR/<name> to peers until SIGTERM.
    Seed(seed::Args),
    /// Download into OUT_DIR/<name>; exit 0 once every piece is verified and written.
    Fetch(fetch::Args),
    /// Loopback benchmark: generate data, seed and fetch it between ringtorrent processes.
    Bench(bench::Args),
    /// Run an HTTP and UDP tracker (announce, scrape, an optional
    /// allow-list reloaded on SIGHUP).
    Tracker(tracker::Args),
    /// Run many torrents, driven over Transmission's RPC (transmission-remote,
    /// its web client, Sonarr...), with a web UI and Prometheus metrics.
    Daemon(Box<daemon::Args>),
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => info::run(args),
        Command::Health(args) => health::run(args),
        Command::Seed(args) => seed::run(args),
        Command::Fetch(args) => fetch::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Tracker(args) => tracker::run(args),
        Command::Daemon(args) => daemon::run(*args),
    }
}

/// The progress bar on screen, if any: log lines are printed above it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Shows `bar` (or none) under the log output from now on.
pub fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    *BAR.lock().unwrap_or_else(|p| p.into_inner()) = bar;
}

/// env_logger, with the progress bar cleared around every line so a log line
/// never leaves a stale copy of the bar above it.
struct BarLogger(env_logger::Logger);

impl log::Log for BarLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        self.0.enabled(m)
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.0.matches(record) {
            return;
        }
        let bar = BAR.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match bar {
            Some(b) => b.suspend(|| self.0.log(record)),
            None => self.0.log(record),
        }
    }

    fn flush(&self) {
        self.0.flush();
    }
}

/// Logs to stderr: warnings by default, more with -v, or as `RUST_LOG` says.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let logger = env_logger::Builder::new()
        .filter_level(level)
        .parse_env("RUST_LOG")
        .format_target(false)
        .format_timestamp_millis()
        .build();
    let max = logger.filter();
    if log::set_boxed_logger(Box::new(BarLogger(logger))).is_ok() {
        log::set_max_level(max);
    }
}
