//! Counters shared by all shards, read by the progress display and the
//! `--json` summary.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

#[derive(Debug, Default)]
pub struct Stats {
    /// Payload bytes of requested blocks received.
    pub downloaded: AtomicU64,
    /// Payload bytes sent.
    pub uploaded: AtomicU64,
    /// Bytes received that we did not need (duplicates, unrequested).
    pub wasted: AtomicU64,
    /// Bytes written to disk after verification.
    pub written: AtomicU64,
    pub hash_failures: AtomicU64,
    /// Pieces that could not be read from disk to serve a request.
    pub read_errors: AtomicU64,
    pub pieces_verified: AtomicU64,
    pub peers_connected: AtomicU64,
    pub peers_seen: AtomicU64,
    pub peers_banned: AtomicU64,
    /// Addresses of the connections of banned peers (bounded).
    pub banned: Mutex<Vec<std::net::SocketAddr>>,
    /// Disconnects by reason (`PeerError::kind`).
    pub disconnects: Mutex<BTreeMap<&'static str, u64>>,
    /// Disconnects that were protocol violations.
    pub protocol_errors: AtomicU64,
    pub connect_failures: AtomicU64,
    pub tracker_announces: AtomicU64,
    pub tracker_failures: AtomicU64,
    /// Nanoseconds spent hashing and in file I/O (from the shards' own clocks).
    pub hash_nanos: AtomicU64,
    pub disk_nanos: AtomicU64,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn disconnected(&self, kind: &'static str, violation: bool) {
        if violation {
            self.protocol_errors.fetch_add(1, Relaxed);
        }
        if let Ok(mut m) = self.disconnects.lock() {
            *m.entry(kind).or_insert(0) += 1;
        }
    }
}
