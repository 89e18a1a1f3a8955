//! Parts of pieces read from disk to serve peers' requests, kept a little
//! while because peers ask for a piece's blocks one after another.
//!
//! The cache works in read units of at most [`READ_UNIT`] bytes, not whole
//! pieces: a 64 MiB piece is never read (or held) whole to serve one 16 KiB
//! request, and the cache always has room for the unit it has just filled,
//! whatever the piece size.

use std::collections::HashMap;

use bytes::Bytes;

use super::ConnId;

/// Largest span of a piece read (or mapped) at once to serve uploads.
pub const READ_UNIT: u32 = 1 << 20;

/// One read unit: `unit` counts units of `unit_len` bytes from the start of
/// `piece`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReadKey {
    pub piece: u32,
    pub unit: u32,
}

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
    entries: HashMap<ReadKey, Entry>,
    bytes: u64,
    max_bytes: u64,
    /// Bytes per unit (the last unit of a piece may be shorter).
    unit_len: u32,
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
    /// A cache of about `max_bytes` for a torrent of `piece_length` pieces.
    /// It always holds at least four units, so the unit a request waits for
    /// is never pushed out by the one read just before it.
    pub fn new(max_bytes: u64, piece_length: u32) -> ReadCache {
        let unit_len = piece_length.clamp(1, READ_UNIT);
        ReadCache {
            entries: HashMap::new(),
            bytes: 0,
            max_bytes: max_bytes.max(4 * u64::from(unit_len)),
            unit_len,
            clock: 0,
        }
    }

    #[cfg(test)]
    fn unit_len(&self) -> u32 {
        self.unit_len
    }

    /// The units of a piece that bytes `begin..end` of it fall in.
    pub fn units(&self, begin: u32, end: u32) -> std::ops::RangeInclusive<u32> {
        begin / self.unit_len..=end.saturating_sub(1).max(begin) / self.unit_len
    }

    /// Where `key` starts in its piece and how long it is, for a piece of
    /// `piece_len` bytes.
    pub fn span(&self, key: ReadKey, piece_len: u32) -> (u32, u32) {
        let begin = key.unit.saturating_mul(self.unit_len).min(piece_len);
        (begin, (piece_len - begin).min(self.unit_len))
    }

    pub fn get(&mut self, key: ReadKey, waiter: ConnId) -> Lookup {
        self.clock += 1;
        match self.entries.get_mut(&key) {
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
                self.entries.insert(key, Entry::Reading(vec![waiter]));
                Lookup::Read
            }
        }
    }

    /// Registers a read of `key` that nobody waits for yet (read ahead);
    /// false when it is cached or being read already, or when the budget
    /// has no room for it beside what is held and being read: a unit read
    /// ahead only to be evicted before it is asked for would be read twice.
    pub fn prefetch(&mut self, key: ReadKey) -> bool {
        if self.entries.contains_key(&key) {
            return false;
        }
        let reading = self
            .entries
            .values()
            .filter(|e| matches!(e, Entry::Reading(_)))
            .count() as u64;
        if self.bytes + (reading + 1) * u64::from(self.unit_len) > self.max_bytes {
            return false;
        }
        self.entries.insert(key, Entry::Reading(Vec::new()));
        true
    }

    /// A read finished; returns the connections waiting for it. The unit
    /// just filled stays cached however small the budget.
    pub fn filled(&mut self, key: ReadKey, data: Option<Bytes>) -> Vec<ConnId> {
        let waiters = match self.entries.remove(&key) {
            Some(Entry::Reading(w)) => w,
            _ => Vec::new(),
        };
        if let Some(data) = data {
            self.bytes += data.len() as u64;
            self.clock += 1;
            self.evict(key);
            self.entries.insert(
                key,
                Entry::Ready {
                    data,
                    last_used: self.clock,
                },
            );
        }
        waiters
    }

    /// Forgets every unit held (reads under way still complete).
    pub fn drop_ready(&mut self) {
        self.entries.retain(|_, e| matches!(e, Entry::Reading(_)));
        self.bytes = 0;
    }

    /// Drops the least recently used units beyond the budget (never `keep`,
    /// which is not in the map yet). Buffers still referenced by queued
    /// sends stay alive until those sends complete.
    fn evict(&mut self, keep: ReadKey) {
        while self.bytes > self.max_bytes {
            let oldest = self
                .entries
                .iter()
                .filter_map(|(k, e)| match e {
                    Entry::Ready { last_used, .. } if *k != keep => Some((*last_used, *k)),
                    _ => None,
                })
                .min_by_key(|(t, _)| *t);
            let Some((_, key)) = oldest else { break };
            if let Some(Entry::Ready { data, .. }) = self.entries.remove(&key) {
                self.bytes -= data.len() as u64;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: ConnId = ConnId {
        slot: 0,
        generation: 1,
    };

    fn key(piece: u32, unit: u32) -> ReadKey {
        ReadKey { piece, unit }
    }

    #[test]
    fn units_of_large_pieces() {
        let c = ReadCache::new(8 << 20, 16 << 20);
        assert_eq!(c.unit_len(), READ_UNIT);
        assert_eq!(c.units(0, 16384), 0..=0);
        assert_eq!(c.units(READ_UNIT - 100, READ_UNIT + 100), 0..=1);
        assert_eq!(c.units(READ_UNIT, READ_UNIT + 16384), 1..=1);
        assert_eq!(c.span(key(0, 15), 16 << 20), (15 * READ_UNIT, READ_UNIT));
        // A short last piece has a short last unit.
        assert_eq!(c.span(key(3, 1), READ_UNIT + 10), (READ_UNIT, 10));
        let small = ReadCache::new(8 << 20, 16384);
        assert_eq!(small.unit_len(), 16384);
        assert_eq!(small.units(0, 16384), 0..=0);
    }

    #[test]
    fn a_unit_larger_than_the_budget_is_still_served() {
        // A budget below one unit: the unit just read must not evict itself.
        let mut c = ReadCache::new(1, 64 << 20);
        assert!(matches!(c.get(key(0, 0), C), Lookup::Read));
        let waiters = c.filled(key(0, 0), Some(Bytes::from(vec![7u8; READ_UNIT as usize])));
        assert_eq!(waiters, vec![C]);
        assert!(matches!(c.get(key(0, 0), C), Lookup::Ready(d) if d.len() == READ_UNIT as usize));
    }

    #[test]
    fn reads_ahead_only_within_the_budget() {
        let unit = 16384u32;
        let mut c = ReadCache::new(4 * u64::from(unit), unit);
        assert!(c.prefetch(key(0, 1)));
        assert!(!c.prefetch(key(0, 1)), "already being read");
        // A peer asking for it meanwhile waits for that read.
        assert!(matches!(c.get(key(0, 1), C), Lookup::Pending));
        assert_eq!(
            c.filled(key(0, 1), Some(Bytes::from(vec![1; unit as usize]))),
            vec![C]
        );
        assert!(!c.prefetch(key(0, 1)), "already held");
        // One unit held and three being read fill the budget of four.
        assert!(c.prefetch(key(1, 0)));
        assert!(c.prefetch(key(2, 0)));
        assert!(c.prefetch(key(3, 0)));
        assert!(!c.prefetch(key(4, 0)), "the budget is spent");
        // A read that comes back with nobody waiting is kept for later.
        assert!(
            c.filled(key(1, 0), Some(Bytes::from(vec![2; unit as usize])))
                .is_empty()
        );
        assert!(matches!(c.get(key(1, 0), C), Lookup::Ready(d) if d[0] == 2));
    }

    #[test]
    fn least_recently_used_goes_first() {
        let unit = 16384u32;
        let mut c = ReadCache::new(4 * u64::from(unit), unit);
        for p in 0..4 {
            assert!(matches!(c.get(key(p, 0), C), Lookup::Read));
            c.filled(key(p, 0), Some(Bytes::from(vec![p as u8; unit as usize])));
        }
        assert!(matches!(c.get(key(0, 0), C), Lookup::Ready(_)));
        assert!(matches!(c.get(key(4, 0), C), Lookup::Read));
        assert!(matches!(c.get(key(4, 0), C), Lookup::Pending));
        c.filled(key(4, 0), Some(Bytes::from(vec![4u8; unit as usize])));
        assert!(
            matches!(c.get(key(0, 0), C), Lookup::Ready(_)),
            "touched, kept"
        );
        assert!(
            matches!(c.get(key(1, 0), C), Lookup::Read),
            "oldest, evicted"
        );
    }
}
