//! The drivers: each shard's io_uring event loop (`driver`), its bounded
//! cache of open files (`files`), its mailbox (`inbox`), what lies between
//! a socket and the wire protocol (`link`: plaintext or MSE), and the
//! hashing pool (`hasher`). They move bytes and run the rings; every decision is
//! the endpoint's, the torrents' or the coordinator's (see
//! `docs/architecture.md`).

pub mod driver;
mod files;
pub mod hasher;
pub mod inbox;
mod link;

use std::time::Duration;

/// Timing counters of a shard's loop, for `bench`'s breakdown.
#[derive(Debug, Default, Clone)]
pub struct LoopStats {
    pub recv_ops: u64,
    pub recv_bytes: u64,
    pub send_ops: u64,
    pub send_bytes: u64,
    pub disk_ops: u64,
    /// Connections whose MSE exchange ended in RC4, and in plaintext.
    pub rc4_connections: u64,
    pub mse_plaintext_connections: u64,
    /// Wall time of disk jobs (overlapping), nanoseconds.
    pub disk_nanos: u64,
    /// Time spent outside `io_uring_enter` waits: the loop's own work.
    pub busy: Duration,
}

impl LoopStats {
    pub fn add(&mut self, o: &LoopStats) {
        self.recv_ops += o.recv_ops;
        self.recv_bytes += o.recv_bytes;
        self.send_ops += o.send_ops;
        self.send_bytes += o.send_bytes;
        self.disk_ops += o.disk_ops;
        self.rc4_connections += o.rc4_connections;
        self.mse_plaintext_connections += o.mse_plaintext_connections;
        self.disk_nanos += o.disk_nanos;
        self.busy += o.busy;
    }
}
