//! Pieces read from disk to serve peers' requests, kept a little while
//! because peers ask for a piece's blocks one after another.

use std::collections::HashMap;

use bytes::Bytes;

use super::ConnId;

#[derive(Debug)]
enum Entry {
    /// A read is under way; these connections wait for it.
    Reading(Vec<ConnId>),
    Ready {
        data: Bytes,
        last_used: u64,
    },
}

#[derive(Debug)]
pub struct ReadCache {
    entries: HashMap<u32, Entry>,
    bytes: u64,
    max_bytes: u64,
    clock: u64,
}

/// What a lookup found.
pub enum Lookup {
    Ready(Bytes),
    /// Not cached; the caller must read it (and was registered as waiting).
    Read,
    /// Not cached, a read is already under way (the caller waits for it).
    Pending,
}

impl ReadCache {
    pub fn new(max_bytes: u64) -> ReadCache {
        ReadCache {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes,
            clock: 0,
        }
    }

    pub fn get(&mut self, piece: u32, waiter: ConnId) -> Lookup {
        self.clock += 1;
        match self.entries.get_mut(&piece) {
            Some(Entry::Ready { data, last_used }) => {
                *last_used = self.clock;
                Lookup::Ready(data.clone())
            }
            Some(Entry::Reading(waiters)) => {
                if !waiters.contains(&waiter) {
                    waiters.push(waiter);
                }
                Lookup::Pending
            }
            None => {
                self.entries.insert(piece, Entry::Reading(vec![waiter]));
                Lookup::Read
            }
        }
    }

    /// A read finished; returns the connections waiting for it.
    pub fn filled(&mut self, piece: u32, data: Option<Bytes>) -> Vec<ConnId> {
        let waiters = match self.entries.remove(&piece) {
            Some(Entry::Reading(w)) => w,
            _ => Vec::new(),
        };
        if let Some(data) = data {
            self.bytes += data.len() as u64;
            self.clock += 1;
            self.entries.insert(
                piece,
                Entry::Ready {
                    data,
                    last_used: self.clock,
                },
            );
            self.evict();
        }
        waiters
    }

    /// Forgets every piece held (reads under way still complete).
    pub fn drop_ready(&mut self) {
        self.entries.retain(|_, e| matches!(e, Entry::Reading(_)));
        self.bytes = 0;
    }

    /// Drops the least recently used pieces beyond the budget. Buffers still
    /// referenced by queued sends stay alive until those sends complete.
    fn evict(&mut self) {
        while self.bytes > self.max_bytes {
            let oldest = self
                .entries
                .iter()
                .filter_map(|(p, e)| match e {
                    Entry::Ready { last_used, .. } => Some((*last_used, *p)),
                    Entry::Reading(_) => None,
                })
                .min();
            let Some((_, piece)) = oldest else { break };
            if let Some(Entry::Ready { data, .. }) = self.entries.remove(&piece) {
                self.bytes -= data.len() as u64;
            }
        }
    }
}
