use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringtorrent::session::Mode;

use super::transfer::{self, Common};

#[derive(clap::Args)]
pub struct Args {
    /// One or more .torrent files, seeded together in one process.
    #[arg(required = true)]
    torrents: Vec<PathBuf>,
    /// Each payload is DATA_DIR/<name>.
    #[arg(long)]
    data_dir: PathBuf,
    /// Skip the full check when the resume state matches the files' sizes
    /// and modification times (any mismatch falls back to a check).
    #[arg(long)]
    trust_resume: bool,
    #[command(flatten)]
    common: Common,
}

/// Seeds until SIGTERM or SIGINT.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let summaries = transfer::run(
        transfer::Run {
            torrents: &args.torrents,
            dir: args.data_dir,
            mode: Mode::Seed,
            seed_after: false,
            stall: Duration::MAX,
            trust_resume: args.trust_resume,
            save_torrent: None,
            web_seeds: &[],
            own_web_seeds: false,
        },
        &args.common,
    )?;
    transfer::report(&summaries, args.common.json, "seeded")?;
    Ok(ExitCode::SUCCESS)
}
