//! ringtorrent: a BitTorrent seeder/leecher for Linux servers.
//!
//! The protocol logic (bencode, metainfo, wire messages, tracker messages,
//! piece picking, choking) is plain code without I/O; the engine drives it
//! from per-core io_uring event loops.

#![deny(unsafe_op_in_unsafe_fn)]
// serde_json's `json!` of session-get's sixty keys.
#![recursion_limit = "256"]

pub mod bencode;
pub mod bitfield;
pub mod buffer;
pub mod choker;
pub mod create;
pub mod daemon;
pub mod dht;
pub mod endpoint;
pub mod engine;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod lsd;
pub mod magnet;
pub mod metadata;
pub mod metainfo;
pub mod mse;
pub mod peer;
pub mod pex;
pub mod picker;
pub mod resume;
mod serve;
pub mod session;
pub(crate) mod sockopt;
pub mod storage;
pub mod torrent;
pub mod tracker;
pub mod units;
pub mod webseed;
pub mod wire;

/// Locks `m`, taking the data of a lock a panicking thread left behind:
/// every mutex here guards plain tables and counters, usable as they are.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An error and its sources on one line (`a: b: c`), for logs.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
