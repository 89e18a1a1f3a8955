//! Piece verification off the socket loops: a pool of hashing threads that
//! take finished pieces in batches (whatever is queued, up to 8), hash each
//! batch in one multi-buffer pass and post the verdicts back to the shards
//! that own the pieces. With `threads == 0` the shard hashes inline instead.

use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::torrent::stats::Stats;
use crate::torrent::{ShardMsg, Shared};

/// How long a lone piece waits for a second one to hash with.
const PAIR_WAIT: std::time::Duration = std::time::Duration::from_millis(2);

pub struct Job {
    pub shard: usize,
    pub piece: u32,
    pub buf: crate::buffer::PieceBuf,
}

pub struct HashPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
}

impl HashPool {
    pub fn start(threads: usize, shared: Arc<Shared>) -> std::io::Result<HashPool> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            let shared = shared.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("hasher-{i}"))
                    .spawn(move || worker(&rx, &shared))?,
            );
        }
        Ok(HashPool {
            tx: Some(tx),
            threads: handles,
        })
    }

    pub fn sender(&self) -> Option<Sender<Job>> {
        self.tx.clone()
    }

    pub fn stop(mut self) {
        self.tx = None;
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Verifies one piece, counting the time spent.
pub fn verify(shared: &Shared, piece: u32, buf: &[u8]) -> bool {
    let t = Instant::now();
    let ok = shared.info.pieces.get(piece as usize) == Some(&crate::hash::sha1(buf));
    Stats::add(&shared.stats.hash_nanos, t.elapsed().as_nanos() as u64);
    ok
}

fn worker(rx: &Mutex<Receiver<Job>>, shared: &Shared) {
    loop {
        // Take whatever is queued as one batch.
        let batch: Vec<Job> = {
            let Ok(rx) = rx.lock() else { return };
            let Ok(first) = rx.recv() else { return };
            let mut batch = vec![first];
            while batch.len() < 8 {
                match rx.try_recv() {
                    Ok(j) => batch.push(j),
                    Err(_) => break,
                }
            }
            // A lone piece waits briefly for a partner: two hash together
            // for little more than one (on SHA-NI), and while the download
            // runs the next piece is about a millisecond away.
            if batch.len() == 1
                && crate::hash::pairs_pay()
                && let Ok(j) = rx.recv_timeout(PAIR_WAIT)
            {
                batch.push(j);
            }
            batch
        };
        // One multi-buffer pass over the batch (pairs on SHA-NI, sixteen
        // lanes on AVX-512): pieces that queue up while the CPU is busy
        // cost less each.
        let t = Instant::now();
        let msgs: Vec<&[u8]> = batch.iter().map(|j| &j.buf[..]).collect();
        let digests = crate::hash::sha1_batch(&msgs);
        Stats::add(&shared.stats.hash_nanos, t.elapsed().as_nanos() as u64);
        for (job, digest) in batch.into_iter().zip(digests) {
            let ok = shared.info.pieces.get(job.piece as usize) == Some(&digest);
            if let Some(inbox) = shared.inboxes.get(job.shard) {
                inbox.post(ShardMsg::Hashed {
                    piece: job.piece,
                    buf: job.buf,
                    ok,
                });
            }
        }
    }
}
