use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringtorrent::engine::Mode;

use super::transfer::{self, Common};

#[derive(clap::Args)]
pub struct Args {
    torrent: PathBuf,
    /// The payload goes to OUT_DIR/<name>.
    #[arg(long)]
    out_dir: PathBuf,
    /// Keep seeding after the download completes, until SIGTERM.
    #[arg(long)]
    seed_after: bool,
    /// Give up when nothing arrives for this many seconds.
    #[arg(long, default_value_t = 300)]
    timeout: u64,
    #[command(flatten)]
    common: Common,
}

/// Downloads; exits 0 once every piece is verified and written.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mode = Mode::Fetch {
        seed_after: args.seed_after,
    };
    let stall = Duration::from_secs(args.timeout);
    let summary = transfer::run(
        &args.torrent,
        args.out_dir,
        mode,
        &args.common,
        stall,
        false,
    )?;
    transfer::report(&summary, args.common.json, "fetched")?;
    Ok(ExitCode::SUCCESS)
}
