//! Subcommands. Library errors become one line on stderr here, the only
//! place that uses `anyhow`.

mod create;
mod fmt;
mod info;

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
}

pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Create(args) => create::run(args),
        Command::Info(args) => info::run(args),
    }
}
