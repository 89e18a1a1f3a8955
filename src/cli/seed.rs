use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ringtorrent::engine::Mode;

use super::transfer::{self, Common};

#[derive(clap::Args)]
pub struct Args {
    torrent: PathBuf,
    /// The payload is DATA_DIR/<name>.
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
    let summary = transfer::run(
        &args.torrent,
        args.data_dir,
        Mode::Seed,
        &args.common,
        Duration::MAX,
        args.trust_resume,
    )?;
    transfer::report(&summary, args.common.json, "seeded")?;
    Ok(ExitCode::SUCCESS)
}
