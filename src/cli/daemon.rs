//! `ringtorrent daemon`.

use std::path::PathBuf;
use std::process::ExitCode;

use ringtorrent::daemon::{self, Settings};

#[derive(clap::Args)]
pub struct Args {
    /// TOML file of settings: the keys are these flags' names, and flags
    /// win over it. Read again on SIGHUP.
    #[arg(long, short = 'c', value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(flatten)]
    settings: Settings,
    /// More log output (-v: info, -vv: debug).
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    super::init_logging(args.verbose.max(1));
    daemon::run(args.settings, args.config)?;
    Ok(ExitCode::SUCCESS)
}
