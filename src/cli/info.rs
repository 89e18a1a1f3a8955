use std::path::PathBuf;
use std::process::ExitCode;

use ringtorrent::magnet::{Magnet, PeerHint};
use ringtorrent::metainfo::Metainfo;
use serde_json::json;

use super::fmt;

#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file, or a magnet URI.
    torrent: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let text = match args.torrent.to_str().filter(|s| s.starts_with("magnet:")) {
        Some(uri) => magnet_text(&Magnet::parse(uri)?, args.json),
        None => {
            let m = Metainfo::from_file(&args.torrent)?;
            if args.json {
                serde_json::to_string_pretty(&to_json(&m))? + "\n"
            } else {
                torrent_text(&m)
            }
        }
    };
    fmt::out(&text)?;
    Ok(ExitCode::SUCCESS)
}

fn torrent_text(m: &Metainfo) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let i = &m.info;
    let _ = writeln!(s, "name:       {}", i.name);
    if i.has_v1() {
        let _ = writeln!(s, "info-hash:  {}", m.info_hash);
    } else {
        let _ = writeln!(
            s,
            "info-hash:  {} (v2-only: the v2 hash cut to 20 bytes)",
            m.info_hash
        );
    }
    if let Some(v2) = &m.info_hash_v2 {
        let _ = writeln!(s, "v2 hash:    {}", data_encoding::HEXLOWER.encode(v2));
    }
    let _ = writeln!(
        s,
        "size:       {} ({} bytes)",
        fmt::bytes(i.total_length),
        i.total_length
    );
    let _ = writeln!(
        s,
        "pieces:     {} x {}",
        i.piece_count(),
        fmt::bytes(u64::from(i.piece_length))
    );
    let _ = writeln!(s, "private:    {}", if i.private { "yes" } else { "no" });
    let tiers = m.tracker_tiers();
    if tiers.is_empty() {
        let _ = writeln!(s, "trackers:   none");
    }
    for (n, tier) in tiers.iter().enumerate() {
        let _ = writeln!(s, "tier {:<7}{}", format!("{}:", n + 1), tier.join("  "));
    }
    if let Some(c) = &m.comment {
        let _ = writeln!(s, "comment:    {c}");
    }
    if let Some(c) = &m.created_by {
        let _ = writeln!(s, "created by: {c}");
    }
    let stored: Vec<_> = i
        .files
        .iter()
        .enumerate()
        .filter(|(_, f)| f.is_stored())
        .collect();
    let _ = writeln!(s, "files:      {}", stored.len());
    for (n, f) in stored {
        let _ = writeln!(s, "  {:>12}  {}", fmt::bytes(f.length), f.display_path());
        if let Some(original) = m.renamed.get(&n) {
            let _ = writeln!(s, "  {:>12}  (in the torrent: {original})", "");
        }
    }
    for w in &m.warnings {
        let _ = writeln!(s, "warning:    {w}");
    }
    s
}

fn to_json(m: &Metainfo) -> serde_json::Value {
    let i = &m.info;
    json!({
        "name": i.name,
        "info_hash": m.info_hash.to_hex(),
        "info_hash_v2": m.info_hash_v2.map(|h| data_encoding::HEXLOWER.encode(&h)),
        "total_length": i.total_length,
        "piece_length": i.piece_length,
        "piece_count": i.piece_count(),
        "private": i.private,
        "multi_file": i.multi_file,
        "trackers": m.tracker_tiers(),
        "comment": m.comment,
        "created_by": m.created_by,
        "creation_date": m.creation_date,
        "url_list": m.url_list,
        "warnings": m.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "files": i.files.iter().enumerate().map(|(n, f)| json!({
            "path": f.display_path(),
            "torrent_path": m.renamed.get(&n).map_or_else(|| f.display_path(), ToString::to_string),
            "length": f.length,
            "offset": f.offset,
            "pad": f.attr.pad,
            "executable": f.attr.executable,
            "symlink": f.attr.symlink,
        })).collect::<Vec<_>>(),
    })
}

fn magnet_text(m: &Magnet, as_json: bool) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let peers: Vec<String> = m
        .peers
        .iter()
        .map(|p| match p {
            PeerHint::Addr(a) => a.to_string(),
            PeerHint::Host { host, port } => format!("{host}:{port}"),
        })
        .collect();
    if as_json {
        let v = json!({
            "info_hash": m.info_hash.to_hex(),
            "name": m.display_name,
            "trackers": m.trackers,
            "peers": peers,
        });
        return format!("{v:#}\n");
    }
    let _ = writeln!(s, "info-hash:  {}", m.info_hash);
    if let Some(n) = &m.display_name {
        let _ = writeln!(s, "name:       {n}");
    }
    for t in &m.trackers {
        let _ = writeln!(s, "tracker:    {t}");
    }
    for p in &peers {
        let _ = writeln!(s, "peer:       {p}");
    }
    s
}
