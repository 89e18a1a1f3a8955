use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use ringtorrent::create::{CreateOptions, Version, create};

use super::fmt;

#[derive(clap::Args)]
pub struct Args {
    /// File or directory to share.
    path: PathBuf,
    /// Where to write the .torrent file.
    #[arg(short, long)]
    output: PathBuf,
    /// Tracker URL; repeat for more tiers, separate URLs of one tier with `,`.
    #[arg(short, long = "tracker", value_name = "URL[,URL...]")]
    trackers: Vec<String>,
    /// Web seed URL (BEP 19): a server holding the file (single-file
    /// torrent), or the directory holding the torrent's top directory;
    /// repeatable.
    #[arg(long = "web-seed", value_name = "URL")]
    web_seeds: Vec<String>,
    /// Piece size (e.g. 256K, 4M); a power of two from 16K to 256M. Default:
    /// chosen from the payload size.
    #[arg(short = 'p', long, value_parser = fmt::parse_size)]
    piece_size: Option<u64>,
    /// Set the private flag (BEP 27): peers only from the trackers.
    #[arg(long)]
    private: bool,
    #[arg(short, long)]
    comment: Option<String>,
    /// Leave out the creation date (the output then depends only on the input).
    #[arg(long)]
    no_date: bool,
    /// Hashing threads (default: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Make a hybrid torrent (BEP 52): v1 and v2 metadata for the same
    /// files, which then start on piece boundaries.
    #[arg(long, conflicts_with = "v2")]
    hybrid: bool,
    /// Make a v2-only torrent (BEP 52): per-file SHA-256 Merkle trees,
    /// which clients without v2 support cannot load.
    #[arg(long)]
    v2: bool,
    /// Overwrite OUTPUT if it exists.
    #[arg(short, long)]
    force: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.output.exists() && !args.force {
        bail!(
            "{} exists (use --force to overwrite)",
            args.output.display()
        );
    }
    let piece_length = args
        .piece_size
        .map(|p| u32::try_from(p).context("piece size is larger than 256 MiB"))
        .transpose()?;
    let creation_date = (!args.no_date)
        .then(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .ok()
        })
        .flatten();
    let opts = CreateOptions {
        trackers: args
            .trackers
            .iter()
            .map(|t| {
                t.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(String::from)
                    .collect::<Vec<_>>()
            })
            .filter(|t| !t.is_empty())
            .collect(),
        web_seeds: args.web_seeds,
        piece_length,
        private: args.private,
        comment: args.comment,
        creation_date,
        threads: args.threads,
        version: match (args.hybrid, args.v2) {
            (true, _) => Version::Hybrid,
            (false, true) => Version::V2,
            (false, false) => Version::V1,
        },
        ..CreateOptions::default()
    };
    let start = Instant::now();
    let created = create(&args.path, &opts)?;
    let secs = start.elapsed().as_secs_f64();
    write_atomically(&args.output, &created.bytes)?;
    if args.json {
        let v = serde_json::json!({
            "output": args.output,
            "info_hash": created.info_hash.to_hex(),
            "info_hash_v2": created.info_hash_v2.map(|h| data_encoding::HEXLOWER.encode(&h)),
            "total_length": created.total_length,
            "piece_length": created.piece_length,
            "piece_count": created.piece_count,
            "file_count": created.file_count,
            "seconds": secs,
        });
        fmt::out(&format!("{v}\n"))?;
    } else {
        fmt::out(&format!(
            "{}: {} in {} files, {} pieces of {}, info-hash {} ({:.2} s, {:.0} MiB/s)\n",
            args.output.display(),
            fmt::bytes(created.total_length),
            created.file_count,
            created.piece_count,
            fmt::bytes(u64::from(created.piece_length)),
            created.info_hash,
            secs,
            created.total_length as f64 / 1048576.0 / secs.max(1e-9),
        ))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes to a temporary file beside `path` and renames it into place, so a
/// crash never leaves a half-written torrent.
fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    std::io::Write::write_all(&mut tmp, bytes)
        .with_context(|| format!("cannot write {}", path.display()))?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}
