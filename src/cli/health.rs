//! `ringtorrent health`: how a swarm stands, from its trackers' scrapes.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;
use ringtorrent::magnet::Magnet;
use ringtorrent::metainfo::{InfoHash, Metainfo};
use ringtorrent::tracker::ScrapeStats;
use ringtorrent::tracker::client::scrape;
use serde_json::json;

use super::fmt;

#[derive(clap::Args)]
pub struct Args {
    /// A .torrent file or a magnet URI (its `tr=` trackers).
    torrent: PathBuf,
    /// Seconds to wait for each tracker (they are asked at once).
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

/// One tracker's answer.
struct Row {
    url: String,
    result: Result<ScrapeStats, String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (info_hash, tiers) = match args.torrent.to_str().filter(|s| s.starts_with("magnet:")) {
        Some(uri) => {
            let m = Magnet::parse(uri)?;
            (m.info_hash, m.tracker_tiers())
        }
        None => {
            let m = Metainfo::from_file(&args.torrent)?;
            (m.info_hash, m.tracker_tiers())
        }
    };
    let mut urls: Vec<String> = Vec::new();
    for u in tiers.into_iter().flatten() {
        if !urls.contains(&u) {
            urls.push(u);
        }
    }
    if urls.is_empty() {
        bail!("{}: no trackers to ask", args.torrent.display());
    }
    let rows = ask(&urls, info_hash, Duration::from_secs(args.timeout.max(1)));
    let answered: Vec<&ScrapeStats> = rows.iter().filter_map(|r| r.result.as_ref().ok()).collect();
    let total = ScrapeStats {
        seeders: answered.iter().map(|s| s.seeders).sum(),
        leechers: answered.iter().map(|s| s.leechers).sum(),
        completed: answered.iter().map(|s| s.completed).sum(),
    };
    let text = if args.json {
        let counts = |s: &ScrapeStats| {
            json!({
                "seeders": s.seeders,
                "leechers": s.leechers,
                "completed": s.completed,
                "ratio": ratio(s),
            })
        };
        let trackers: Vec<_> = rows
            .iter()
            .map(|r| match &r.result {
                Ok(s) => json!({"url": r.url, "ok": true, "stats": counts(s)}),
                Err(e) => json!({"url": r.url, "ok": false, "error": e}),
            })
            .collect();
        let v = json!({
            "info_hash": info_hash.to_hex(),
            "trackers": trackers,
            "answered": answered.len(),
            "total": counts(&total),
        });
        format!("{v}\n")
    } else {
        table(&rows, &total)
    };
    fmt::out(&text)?;
    if answered.is_empty() {
        bail!("no tracker answered");
    }
    Ok(ExitCode::SUCCESS)
}

/// Every tracker at once, each on its own thread.
fn ask(urls: &[String], info_hash: InfoHash, timeout: Duration) -> Vec<Row> {
    std::thread::scope(|s| {
        let handles: Vec<_> = urls
            .iter()
            .map(|u| s.spawn(move || scrape(u, info_hash, timeout).map_err(|e| e.to_string())))
            .collect();
        urls.iter()
            .zip(handles)
            .map(|(u, h)| Row {
                url: u.clone(),
                result: h
                    .join()
                    .unwrap_or_else(|_| Err("the scrape failed".to_owned())),
            })
            .collect()
    })
}

/// Seeders per leecher (`None` with no leechers).
fn ratio(s: &ScrapeStats) -> Option<f64> {
    (s.leechers > 0).then(|| f64::from(s.seeders) / f64::from(s.leechers))
}

fn table(rows: &[Row], total: &ScrapeStats) -> String {
    use std::fmt::Write;
    let width = rows.iter().map(|r| r.url.len()).max().unwrap_or(0).max(24);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:width$}  {:>8}  {:>8}  {:>9}  {:>15}",
        "tracker", "seeders", "leechers", "completed", "seeders:leechers"
    );
    let line = |out: &mut String, name: &str, s: &ScrapeStats| {
        let r = ratio(s).map_or_else(|| "-".to_owned(), |r| format!("{r:.2}"));
        let _ = writeln!(
            out,
            "{name:width$}  {:>8}  {:>8}  {:>9}  {:>15}",
            s.seeders,
            s.leechers,
            s.completed,
            format!("{}:{} ({r})", s.seeders, s.leechers)
        );
    };
    for r in rows {
        match &r.result {
            Ok(s) => line(&mut out, &r.url, s),
            Err(e) => {
                let _ = writeln!(out, "{:width$}  error: {e}", r.url);
            }
        }
    }
    line(&mut out, "total (sum over trackers)", total);
    out
}
