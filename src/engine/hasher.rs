//! Piece verification off the socket loops: a pool of hashing threads that
//! take finished pieces in batches (whatever is queued, up to 8), hash each
//! batch in one multi-buffer pass and post the verdicts back to the shards
//! that own the pieces. With no pool the shard hashes inline instead.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::inbox::{Inbound, Inbox};
use crate::torrent::{TorrentCtx, TorrentId};

/// How long a lone piece waits for a second one to hash with.
const PAIR_WAIT: Duration = Duration::from_millis(2);

pub struct Job {
    pub shard: usize,
    pub torrent: TorrentId,
    pub ctx: Arc<TorrentCtx>,
    pub piece: u32,
    pub buf: crate::buffer::PieceBuf,
}

pub struct HashPool {
    tx: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    /// Time spent hashing, all threads.
    pub nanos: Arc<AtomicU64>,
}

impl HashPool {
    pub fn start(threads: usize, inboxes: Vec<Arc<Inbox>>) -> std::io::Result<HashPool> {
        let (tx, rx) = channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let nanos = Arc::new(AtomicU64::new(0));
        let inboxes = Arc::new(inboxes);
        let mut handles = Vec::with_capacity(threads);
        for i in 0..threads {
            let rx = rx.clone();
            let inboxes = inboxes.clone();
            let nanos = nanos.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("hasher-{i}"))
                    .spawn(move || worker(&rx, &inboxes, &nanos))?,
            );
        }
        Ok(HashPool {
            tx: Some(tx),
            threads: handles,
            nanos,
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

fn worker(rx: &Mutex<Receiver<Job>>, inboxes: &[Arc<Inbox>], nanos: &AtomicU64) {
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
            // for little more than one (on SHA-NI), and while a download
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
        let msgs: Vec<&[u8]> = batch
            .iter()
            .filter(|j| j.ctx.info.has_v1())
            .map(|j| &j.buf[..])
            .collect();
        let mut digests = crate::hash::sha1_batch(&msgs).into_iter();
        let checked: Vec<(Job, bool)> = batch
            .into_iter()
            .map(|job| {
                let sha1 = if job.ctx.info.has_v1() {
                    digests.next()
                } else {
                    None
                };
                let ok = job.ctx.info.verify(job.piece, &job.buf, sha1);
                (job, ok)
            })
            .collect();
        nanos.fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        for (job, ok) in checked {
            if let Some(inbox) = inboxes.get(job.shard) {
                inbox.post(Inbound::Hashed {
                    torrent: job.torrent,
                    piece: job.piece,
                    buf: job.buf,
                    ok,
                });
            }
        }
    }
}
