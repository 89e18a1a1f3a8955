use std::time::Duration;

use crate::choker::ChokerConfig;

/// Knobs of the torrent logic. The defaults suit loopback benchmarks and
/// datacenter links alike: deep pipelines, bounded memory.
#[derive(Debug, Clone)]
pub struct TorrentConfig {
    /// Upload only: never request pieces (the `seed` command).
    pub seed_only: bool,
    pub choker: ChokerConfig,
    /// Seconds between choker rounds (BEP 3 suggests 10).
    pub rechoke_interval: Duration,
    /// Requests outstanding to a new peer before its rate is known.
    pub initial_pipeline: u32,
    /// Bounds of the per-peer request pipeline, in blocks.
    pub min_pipeline: u32,
    pub max_pipeline: u32,
    /// The pipeline aims to hold this much time's worth of the peer's rate.
    /// Generous, because some clients answer in batches once a second
    /// (Transmission) and a short queue then caps the rate at queue/second.
    pub pipeline_time: Duration,
    /// Memory for read units kept to serve uploads, per shard (at least four
    /// units; units mapped from the page cache take none).
    pub read_cache: u64,
    /// Send-queue depth above which we stop serving a peer's requests.
    pub send_high_water: usize,
    /// A peer owing data that sends none for this long is snubbed.
    pub snub_after: Duration,
    pub handshake_timeout: Duration,
    /// Close a connection after this long without receiving anything.
    pub inactivity_timeout: Duration,
    pub keepalive_interval: Duration,
    /// Hash failures a peer may be involved in before it is banned.
    pub max_hash_failures: u32,
    /// While we are a seed, send each piece out once before any twice
    /// (see `shard::spread`).
    pub super_seed: bool,
    /// Peer exchange (BEP 11) for a public torrent (a private one never
    /// has it).
    pub pex: bool,
}

/// A super-seeder unchokes every interested peer (more than any session
/// connects to): a leecher kept waiting holds no first copy to pass on. On
/// virtual time (`session::tests::fleet_on_virtual_time`) 16 slots beat 8
/// for 16 leechers (1.19 against 1.25 of the lower bound), and 32 beat 16
/// for 32 (1.29 against 1.39).
const SUPER_SEED_SLOTS: usize = 1 << 16;

impl TorrentConfig {
    /// The choker's configuration for this torrent.
    pub fn choker(&self) -> ChokerConfig {
        let mut c = self.choker;
        if self.super_seed {
            c.slots = c.slots.max(SUPER_SEED_SLOTS);
        }
        c
    }
}

/// Pieces that the download budget always has room for: one being received
/// while the one before is hashed and the one before that is written, and
/// one more so that requests never wait for a buffer. With fewer, large
/// pieces go through one at a time and the request pipeline drains between
/// them.
pub const MIN_PIECES_IN_FLIGHT: u64 = 4;

impl Default for TorrentConfig {
    fn default() -> Self {
        TorrentConfig {
            seed_only: false,
            choker: ChokerConfig::default(),
            rechoke_interval: Duration::from_secs(10),
            initial_pipeline: 128,
            min_pipeline: 4,
            max_pipeline: 1000,
            pipeline_time: Duration::from_secs(2),
            read_cache: 4 * 1024 * 1024,
            send_high_water: 2 * 1024 * 1024,
            snub_after: Duration::from_secs(20),
            handshake_timeout: Duration::from_secs(5),
            inactivity_timeout: Duration::from_secs(180),
            keepalive_interval: Duration::from_secs(60),
            max_hash_failures: 3,
            super_seed: false,
            pex: true,
        }
    }
}
