use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringtorrent::session::Mode;

use super::transfer::{self, Common};

#[derive(clap::Args)]
pub struct Args {
    /// One or more .torrent files or magnet links, fetched together in one
    /// process.
    #[arg(required = true)]
    torrents: Vec<PathBuf>,
    /// Write the torrent a magnet link's metadata makes to this file.
    #[arg(long, value_name = "FILE")]
    save_torrent: Option<PathBuf>,
    /// Each payload goes to OUT_DIR/<name>.
    #[arg(long)]
    out_dir: PathBuf,
    /// Keep seeding after the downloads complete, until SIGTERM.
    #[arg(long)]
    seed_after: bool,
    /// Also fetch from this web seed (BEP 19; repeatable): a server holding
    /// the file of a single-file torrent, or the directory holding a
    /// multi-file torrent's.
    #[arg(long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// Do not use the torrents' own web seeds (`url-list`).
    #[arg(long)]
    no_web_seeds: bool,
    /// Give up when nothing arrives for a torrent for this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    common: Common,
}

/// Downloads; exits 0 once every piece of every torrent is verified and written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summaries = transfer::run(
        transfer::Run {
            torrents: &args.torrents,
            dir: args.out_dir,
            mode: Mode::Fetch,
            seed_after: args.seed_after,
            stall: Duration::from_secs(args.timeout),
            trust_resume: false,
            save_torrent: args.save_torrent.as_deref(),
            web_seeds: &args.web_seeds,
            own_web_seeds: !args.no_web_seeds,
        },
        &args.common,
    )?;
    transfer::report(&summaries, args.common.json, "fetched")?;
    Ok(ExitCode::SUCCESS)
}
