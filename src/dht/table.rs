//! The routing table: k-buckets of at most [`K`] nodes, one per length of
//! the prefix a node's id shares with ours (so a node knows many nodes
//! near itself and a few far away, as Kademlia needs).

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use super::krpc::{Contact, NodeId};

/// Nodes per bucket (BEP 5's K).
pub const K: usize = 8;
/// Unanswered queries after which a node is replaced by any newcomer.
const MAX_FAILS: u32 = 2;
/// A node not heard from for this long may be replaced too.
const STALE: Duration = Duration::from_secs(15 * 60);

#[derive(Debug, Clone)]
struct Entry {
    id: NodeId,
    addr: SocketAddrV4,
    last_seen: Instant,
    fails: u32,
}

#[derive(Debug)]
pub struct Table {
    own: NodeId,
    buckets: Vec<Vec<Entry>>,
}

impl Table {
    pub fn new(own: NodeId) -> Table {
        Table {
            own,
            buckets: vec![Vec::new(); 160],
        }
    }

    pub fn own_id(&self) -> NodeId {
        self.own
    }

    fn bucket(&self, id: &NodeId) -> usize {
        self.own.common_prefix(id).min(159)
    }

    /// A node answered us (`verified`) or queried us: keep it if there is
    /// room, or, if it answered, in place of a failing or stale one (a
    /// querier's address may be forged). Returns whether it is in.
    pub fn heard(&mut self, now: Instant, id: NodeId, addr: SocketAddrV4, verified: bool) -> bool {
        if id == self.own || addr.port() == 0 || addr.ip().is_unspecified() {
            return false;
        }
        let b = self.bucket(&id);
        let bucket = &mut self.buckets[b];
        if let Some(e) = bucket.iter_mut().find(|e| e.id == id) {
            e.addr = addr;
            e.last_seen = now;
            e.fails = 0;
            return true;
        }
        // One entry per address: a node that changed its id replaces itself.
        bucket.retain(|e| e.addr != addr);
        let fresh = Entry {
            id,
            addr,
            last_seen: now,
            fails: 0,
        };
        if bucket.len() < K {
            bucket.push(fresh);
            return true;
        }
        if !verified {
            return false;
        }
        let worst = bucket
            .iter()
            .enumerate()
            .max_by_key(|(_, e)| (e.fails, std::cmp::Reverse(e.last_seen)));
        match worst {
            Some((i, e))
                if e.fails >= MAX_FAILS || now.saturating_duration_since(e.last_seen) > STALE =>
            {
                bucket[i] = fresh;
                true
            }
            _ => false,
        }
    }

    pub fn knows(&self, addr: SocketAddrV4) -> bool {
        self.buckets.iter().flatten().any(|e| e.addr == addr)
    }

    /// A query to `addr` went unanswered.
    pub fn failed(&mut self, addr: SocketAddrV4) {
        for bucket in &mut self.buckets {
            if let Some(e) = bucket.iter_mut().find(|e| e.addr == addr) {
                e.fails += 1;
                return;
            }
        }
    }

    /// The `n` known nodes closest to `target`, failing ones last.
    pub fn closest(&self, target: &NodeId, n: usize) -> Vec<Contact> {
        let mut all: Vec<(u32, [u8; 20], Contact)> = self
            .buckets
            .iter()
            .flatten()
            .map(|e| {
                (
                    e.fails.min(MAX_FAILS),
                    target.distance(&e.id),
                    (e.id, e.addr),
                )
            })
            .collect();
        all.sort_by_key(|a| (a.0 >= MAX_FAILS, a.1));
        all.into_iter().take(n).map(|(_, _, c)| c).collect()
    }

    pub fn len(&self) -> usize {
        self.buckets.iter().map(Vec::len).sum()
    }

    /// Every node, for saving the table.
    pub fn contacts(&self) -> Vec<Contact> {
        self.buckets
            .iter()
            .flatten()
            .filter(|e| e.fails < MAX_FAILS)
            .map(|e| (e.id, e.addr))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(first: u8, last: u8) -> NodeId {
        let mut b = [0u8; 20];
        b[0] = first;
        b[19] = last;
        NodeId(b)
    }

    fn addr(n: u8) -> SocketAddrV4 {
        SocketAddrV4::new([10, 0, 0, n].into(), 6881)
    }

    #[test]
    fn buckets_hold_k_and_replace_failing_nodes() {
        let t0 = Instant::now();
        let mut t = Table::new(id(0, 0));
        // Ids with the first bit set all share a prefix of 0 with ours.
        for n in 0..(K as u8) {
            assert!(t.heard(t0, id(0x80, n), addr(n), true));
        }
        assert!(!t.heard(t0, id(0x80, 100), addr(100), true), "bucket full");
        t.failed(addr(3));
        t.failed(addr(3));
        assert!(
            !t.heard(t0, id(0x80, 100), addr(100), false),
            "a mere querier replaces nobody"
        );
        assert!(
            t.heard(t0, id(0x80, 100), addr(100), true),
            "replaces the failing one"
        );
        assert_eq!(t.len(), K);
        assert!(!t.heard(t0, id(0, 0), addr(1), true), "never ourselves");
        // A stale node may be replaced too.
        let later = t0 + STALE + Duration::from_secs(1);
        assert!(t.heard(later, id(0x80, 101), addr(101), true));
    }

    #[test]
    fn closest_orders_by_distance() {
        let t0 = Instant::now();
        let mut t = Table::new(id(0, 0));
        for n in 1..=20u8 {
            t.heard(t0, id(n, n), addr(n), true);
        }
        let target = id(5, 5);
        let c = t.closest(&target, 3);
        assert_eq!(c[0].0, target);
        assert_eq!(c.len(), 3);
        for w in c.windows(2) {
            assert!(target.distance(&w[0].0) <= target.distance(&w[1].0));
        }
    }
}
