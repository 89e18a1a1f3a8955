//! `/metrics`: the session's and each torrent's figures in Prometheus's
//! text format, encoded by the `prometheus` crate from families built at
//! each scrape (nothing is registered: the torrents come and go).
//!
//! Latencies are summaries whose quantiles come from the session's
//! hdrhistograms (block latency: request to arrival; disk latency: job
//! submission to completion).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use prometheus::proto::{
    Counter, Gauge, LabelPair, Metric, MetricFamily, MetricType, Quantile, Summary,
};

use super::control::Daemon;
use super::table::Status;

/// The text exposition format's content type.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// One family being filled.
struct Family(MetricFamily);

impl Family {
    fn new(name: &str, help: &str, kind: MetricType) -> Family {
        let mut f = MetricFamily::default();
        f.set_name(format!("ringtorrent_{name}"));
        f.set_help(help.to_owned());
        f.set_field_type(kind);
        Family(f)
    }

    fn push(&mut self, labels: &[(&str, &str)], fill: impl FnOnce(&mut Metric)) {
        let mut m = Metric::default();
        m.set_label(
            labels
                .iter()
                .map(|(k, v)| {
                    let mut l = LabelPair::default();
                    l.set_name((*k).to_owned());
                    l.set_value((*v).to_owned());
                    l
                })
                .collect(),
        );
        fill(&mut m);
        self.0.mut_metric().push(m);
    }

    fn gauge(&mut self, labels: &[(&str, &str)], v: f64) {
        self.push(labels, |m| {
            let mut g = Gauge::default();
            g.set_value(v);
            m.set_gauge(g);
        });
    }

    fn counter(&mut self, labels: &[(&str, &str)], v: f64) {
        self.push(labels, |m| {
            let mut c = Counter::default();
            c.set_value(v);
            m.set_counter(c);
        });
    }

    /// A summary in seconds from a histogram in microseconds.
    fn summary(&mut self, labels: &[(&str, &str)], h: &Histogram<u64>) {
        self.push(labels, |m| {
            let mut s = Summary::default();
            s.set_sample_count(h.len());
            s.set_sample_sum(h.mean() * h.len() as f64 / 1e6);
            s.set_quantile(
                [0.5, 0.9, 0.99, 0.999]
                    .iter()
                    .map(|&q| {
                        let mut x = Quantile::default();
                        x.set_quantile(q);
                        x.set_value(h.value_at_quantile(q) as f64 / 1e6);
                        x
                    })
                    .collect(),
            );
            m.set_summary(s);
        });
    }
}

/// Everything, in the text format.
pub fn render(d: &Daemon) -> String {
    use MetricType::{COUNTER, GAUGE, SUMMARY};
    let mut torrents_by_status = Family::new(
        "torrents",
        "Torrents by status (stopped, queued, checking, downloading, seeding).",
        GAUGE,
    );
    let mut session_bytes = Family::new(
        "session_bytes_total",
        "Payload bytes moved by every torrent since the daemon started.",
        COUNTER,
    );
    let mut session_rate = Family::new(
        "session_rate_bytes",
        "Payload bytes per second over the last seconds, all torrents.",
        GAUGE,
    );
    let mut uptime = Family::new("uptime_seconds", "Seconds since the daemon started.", GAUGE);
    let mut bytes = Family::new(
        "torrent_bytes_total",
        "Payload bytes a torrent moved over its life (direction: down, up, corrupt).",
        COUNTER,
    );
    let mut rate = Family::new(
        "torrent_rate_bytes",
        "Payload bytes per second over the last seconds (direction: down, up).",
        GAUGE,
    );
    let mut peers = Family::new("torrent_peers", "Connected peers.", GAUGE);
    let mut pieces = Family::new(
        "torrent_pieces",
        "Pieces (state: have, wanted, total).",
        GAUGE,
    );
    let mut status = Family::new(
        "torrent_status",
        "Transmission's status number (0 stopped .. 6 seeding).",
        GAUGE,
    );
    let mut hash_failures = Family::new(
        "torrent_hash_failures_total",
        "Pieces that failed their hash check in this run.",
        COUNTER,
    );
    let mut protocol_errors = Family::new(
        "torrent_protocol_errors_total",
        "Peers disconnected for breaking the protocol in this run.",
        COUNTER,
    );
    let mut disconnects = Family::new(
        "torrent_disconnects_total",
        "Peer disconnects in this run, by kind.",
        COUNTER,
    );
    let mut banned = Family::new(
        "torrent_peers_banned_total",
        "Peers banned for sending bad data in this run.",
        COUNTER,
    );
    let mut block_latency = Family::new(
        "torrent_block_latency_seconds",
        "Block request to arrival, in this run.",
        SUMMARY,
    );
    let mut disk_latency = Family::new(
        "torrent_disk_latency_seconds",
        "Disk reads and writes, submission to completion, in this run.",
        SUMMARY,
    );
    let mut all_blocks = crate::torrent::latency_histogram();
    let mut all_disk = crate::torrent::latency_histogram();

    let t = d.table();
    let mut by_status: BTreeMap<&str, u64> =
        ["stopped", "queued", "checking", "downloading", "seeding"]
            .into_iter()
            .map(|s| (s, 0))
            .collect();
    let (mut down, mut up) = (0, 0);
    for e in t.entries.values() {
        let st = e.status();
        let key = match st {
            Status::Stopped => "stopped",
            Status::DownloadWait | Status::SeedWait => "queued",
            Status::CheckWait | Status::Check => "checking",
            Status::Download => "downloading",
            Status::Seed => "seeding",
        };
        *by_status.entry(key).or_insert(0) += 1;
        down += e.rates.down;
        up += e.rates.up;
        let hash = e.hash().to_hex();
        let l = [("info_hash", hash.as_str()), ("name", e.name())];
        let with = |k: &'static str, v: &'static str| [l[0], l[1], (k, v)];
        bytes.counter(&with("direction", "down"), e.saved.downloaded_ever as f64);
        bytes.counter(&with("direction", "up"), e.saved.uploaded_ever as f64);
        bytes.counter(&with("direction", "corrupt"), e.saved.corrupt_ever as f64);
        rate.gauge(&with("direction", "down"), e.rates.down as f64);
        rate.gauge(&with("direction", "up"), e.rates.up as f64);
        peers.gauge(&l, e.peers_connected as f64);
        pieces.gauge(&with("state", "have"), f64::from(e.have.count_ones()));
        pieces.gauge(&with("state", "wanted"), f64::from(e.wanted.count_ones()));
        pieces.gauge(&with("state", "total"), f64::from(e.info.piece_count()));
        status.gauge(&l, f64::from(st as u8));
        let Some(s) = e.session_id().and_then(|s| d.engine.stats(s)) else {
            continue;
        };
        hash_failures.counter(&l, s.hash_failures as f64);
        protocol_errors.counter(&l, s.protocol_errors as f64);
        banned.counter(&l, s.peers_banned as f64);
        for (kind, n) in &s.disconnects {
            disconnects.counter(&with("kind", kind), *n as f64);
        }
        if let Some(h) = &s.latency {
            block_latency.summary(&l, h);
            let _ = all_blocks.add(&**h);
        }
        if let Some(h) = &s.disk_latency {
            disk_latency.summary(&l, h);
            let _ = all_disk.add(&**h);
        }
    }
    for (k, n) in by_status {
        torrents_by_status.gauge(&[("status", k)], n as f64);
    }
    session_bytes.counter(&[("direction", "down")], t.current.downloaded_bytes as f64);
    session_bytes.counter(&[("direction", "up")], t.current.uploaded_bytes as f64);
    drop(t);
    session_rate.gauge(&[("direction", "down")], down as f64);
    session_rate.gauge(&[("direction", "up")], up as f64);
    uptime.gauge(&[], d.started.elapsed().as_secs_f64());
    let mut session_blocks = Family::new(
        "block_latency_seconds",
        "Block request to arrival, every torrent, in this run.",
        SUMMARY,
    );
    session_blocks.summary(&[], &all_blocks);
    let mut session_disk = Family::new(
        "disk_latency_seconds",
        "Disk reads and writes, every torrent, in this run.",
        SUMMARY,
    );
    session_disk.summary(&[], &all_disk);

    let families: Vec<MetricFamily> = [
        torrents_by_status,
        session_bytes,
        session_rate,
        uptime,
        session_blocks,
        session_disk,
        bytes,
        rate,
        peers,
        pieces,
        status,
        hash_failures,
        protocol_errors,
        disconnects,
        banned,
        block_latency,
        disk_latency,
    ]
    .into_iter()
    .map(|f| f.0)
    .filter(|f| !f.get_metric().is_empty())
    .collect();
    let mut out = String::new();
    if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
        log::error!("cannot encode metrics: {e}");
    }
    out
}
