//! Every peer address we know of, and which shard talks to it.
//!
//! Addresses arrive from trackers and `--peer`; the registry decides when to
//! dial each (at most one connection per address, retries with backoff, a
//! cap on connections), spreads connections over shards, and remembers bans
//! and addresses that turned out to be ourselves.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::ConnId;
use crate::wire::PeerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle {
        retry_at: Instant,
        failures: u32,
    },
    Connecting {
        failures: u32,
    },
    Connected,
    /// Our own listen address, learned from a self-connection.
    Us,
}

/// An established connection, as the registry knows it.
#[derive(Debug, Clone, Copy)]
struct Live {
    addr: SocketAddr,
    outgoing: bool,
    shard: usize,
    conn: ConnId,
}

/// What to do with a connection whose handshake just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Another connection to the same peer is the one to keep.
    Drop,
    /// Keep this one and close the other (on `shard`).
    Replace {
        shard: usize,
        conn: ConnId,
    },
}

#[derive(Debug)]
pub struct Registry {
    addrs: HashMap<SocketAddr, State>,
    /// Connected peers by id, to refuse a second connection to the same peer.
    ids: HashMap<PeerId, Live>,
    banned: HashSet<IpAddr>,
    /// Hash-failure strikes per IP.
    strikes: HashMap<IpAddr, u32>,
    /// Local address of each outgoing connection, to the address it dialled:
    /// an incoming self-connection comes from one of these.
    dialled_from: HashMap<SocketAddr, SocketAddr>,
    per_shard: Vec<usize>,
    max_connections: usize,
    /// Failed dials are retried this many times.
    max_failures: u32,
}

/// Backoff after the n-th failed dial: 250 ms, 500 ms, 1 s ... up to a
/// minute. Quick at first: a seeder given with `--peer` may still be
/// checking its data when we start.
fn backoff(failures: u32) -> Duration {
    (Duration::from_millis(250) * (1 << failures.saturating_sub(1).min(8)))
        .min(Duration::from_secs(60))
}

impl Registry {
    pub fn new(shards: usize, max_connections: usize) -> Registry {
        Registry {
            addrs: HashMap::new(),
            ids: HashMap::new(),
            banned: HashSet::new(),
            strikes: HashMap::new(),
            dialled_from: HashMap::new(),
            per_shard: vec![0; shards.max(1)],
            max_connections,
            max_failures: 8,
        }
    }

    /// Adds addresses to dial; returns how many were new.
    pub fn add(&mut self, now: Instant, addrs: impl IntoIterator<Item = SocketAddr>) -> usize {
        let mut new = 0;
        for a in addrs {
            if self.banned.contains(&a.ip()) {
                continue;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = self.addrs.entry(a) {
                e.insert(State::Idle {
                    retry_at: now,
                    failures: 0,
                });
                new += 1;
            }
        }
        new
    }

    pub fn connections(&self) -> usize {
        self.per_shard.iter().sum()
    }

    pub fn known(&self) -> usize {
        self.addrs.len()
    }

    /// Addresses to dial now, each with the shard to dial from (the one with
    /// the fewest connections). They are counted as connections at once.
    pub fn due(&mut self, now: Instant) -> Vec<(SocketAddr, usize)> {
        let mut out = Vec::new();
        let mut ready: Vec<SocketAddr> = self
            .addrs
            .iter()
            .filter(|(_, s)| matches!(s, State::Idle { retry_at, .. } if *retry_at <= now))
            .map(|(a, _)| *a)
            .collect();
        ready.sort();
        for a in ready {
            if self.connections() >= self.max_connections {
                break;
            }
            let shard = self.least_loaded();
            self.per_shard[shard] += 1;
            let failures = match self.addrs.get(&a) {
                Some(State::Idle { failures, .. }) => *failures,
                _ => 0,
            };
            self.addrs.insert(a, State::Connecting { failures });
            out.push((a, shard));
        }
        out
    }

    fn least_loaded(&self) -> usize {
        (0..self.per_shard.len())
            .min_by_key(|&s| self.per_shard[s])
            .unwrap_or(0)
    }

    /// An incoming connection from `addr`: the shard to hand it to, or None
    /// to refuse it (banned, or at the connection cap).
    pub fn incoming(&mut self, addr: SocketAddr) -> Option<usize> {
        if self.banned.contains(&addr.ip()) || self.connections() >= self.max_connections {
            return None;
        }
        let shard = self.least_loaded();
        self.per_shard[shard] += 1;
        // Incoming peers connect from ephemeral ports: not an address to dial.
        Some(shard)
    }

    /// An outgoing dial failed.
    pub fn dial_failed(&mut self, now: Instant, addr: SocketAddr, shard: usize) {
        self.release(shard);
        let failures = match self.addrs.get(&addr) {
            Some(State::Idle { failures, .. } | State::Connecting { failures }) => *failures,
            _ => 0,
        } + 1;
        if failures > self.max_failures {
            self.addrs.remove(&addr);
        } else {
            self.addrs.insert(
                addr,
                State::Idle {
                    retry_at: now + backoff(failures),
                    failures,
                },
            );
        }
    }

    /// A handshake with peer `id` completed on (`shard`, `conn`). When two
    /// connections join the same pair of peers (both dialled at once), both
    /// ends must keep the same one or neither survives: the one kept is the
    /// one dialled by the peer with the smaller id.
    #[allow(clippy::too_many_arguments)]
    pub fn handshaken(
        &mut self,
        addr: SocketAddr,
        outgoing: bool,
        id: PeerId,
        ours: PeerId,
        shard: usize,
        conn: ConnId,
    ) -> Verdict {
        let new = Live {
            addr,
            outgoing,
            shard,
            conn,
        };
        let verdict = match self.ids.get(&id) {
            None => Verdict::Keep,
            Some(old) if old.outgoing == outgoing => Verdict::Drop,
            Some(old) => {
                // Keep the connection dialled by the smaller id.
                let keep_outgoing = ours.0 < id.0;
                if outgoing == keep_outgoing {
                    Verdict::Replace {
                        shard: old.shard,
                        conn: old.conn,
                    }
                } else {
                    Verdict::Drop
                }
            }
        };
        if verdict != Verdict::Drop {
            self.ids.insert(id, new);
            if outgoing {
                self.addrs.insert(addr, State::Connected);
            }
        }
        verdict
    }

    /// An outgoing connection to `remote` left from `local`.
    pub fn dialled_from(&mut self, local: SocketAddr, remote: SocketAddr) {
        self.dialled_from.insert(local, remote);
    }

    /// The connection we dialled to `addr` turned out to be to ourselves.
    pub fn is_us(&mut self, addr: SocketAddr) {
        self.addrs.insert(addr, State::Us);
    }

    /// An incoming connection from `from` was ourselves: the address it was
    /// dialled to is ours.
    pub fn is_us_dialled_from(&mut self, from: SocketAddr) {
        if let Some(target) = self.dialled_from.remove(&from) {
            self.addrs.insert(target, State::Us);
        }
    }

    /// A connection ended. Outgoing addresses become dialable again later,
    /// so a restarted seeder is found again.
    pub fn disconnected(
        &mut self,
        now: Instant,
        addr: SocketAddr,
        outgoing: bool,
        id: Option<PeerId>,
        shard: usize,
    ) {
        self.release(shard);
        if outgoing {
            self.dialled_from.retain(|_, remote| *remote != addr);
        }
        if let Some(id) = id
            && self
                .ids
                .get(&id)
                .is_some_and(|l| l.addr == addr && l.outgoing == outgoing)
        {
            self.ids.remove(&id);
        }
        if outgoing
            && matches!(
                self.addrs.get(&addr),
                Some(State::Connected | State::Connecting { .. })
            )
        {
            self.addrs.insert(
                addr,
                State::Idle {
                    retry_at: now + Duration::from_secs(5),
                    failures: 0,
                },
            );
        }
    }

    /// Records a hash failure involving `ip`; returns true when that bans it.
    pub fn strike(&mut self, ip: IpAddr, max: u32) -> bool {
        let s = self.strikes.entry(ip).or_insert(0);
        *s += 1;
        if *s >= max && self.banned.insert(ip) {
            self.addrs.retain(|a, _| a.ip() != ip);
            return true;
        }
        false
    }

    pub fn is_banned(&self, ip: &IpAddr) -> bool {
        self.banned.contains(ip)
    }

    fn release(&mut self, shard: usize) {
        if let Some(n) = self.per_shard.get_mut(shard) {
            *n = n.saturating_sub(1);
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

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dials_once_spreads_over_shards_and_caps() {
        let now = Instant::now();
        let mut r = Registry::new(2, 3);
        assert_eq!(
            r.add(now, [a("10.0.0.1:1"), a("10.0.0.2:1"), a("10.0.0.1:1")]),
            2
        );
        r.add(now, [a("10.0.0.3:1"), a("10.0.0.4:1")]);
        let due = r.due(now);
        assert_eq!(due.len(), 3, "capped at 3 connections");
        let shards: Vec<usize> = due.iter().map(|d| d.1).collect();
        assert_eq!(shards, vec![0, 1, 0]);
        assert!(r.due(now).is_empty(), "nothing is dialled twice");
        assert_eq!(
            r.incoming(a("10.0.0.9:5555")),
            None,
            "cap applies to incoming too"
        );
    }

    #[test]
    fn failed_dials_back_off_and_reconnect_later() {
        let now = Instant::now();
        let mut r = Registry::new(1, 10);
        r.add(now, [a("10.0.0.1:1")]);
        let (addr, shard) = r.due(now)[0];
        r.dial_failed(now, addr, shard);
        assert!(r.due(now).is_empty());
        assert_eq!(r.due(now + Duration::from_millis(250)).len(), 1);
        r.dial_failed(now, addr, 0);
        assert!(r.due(now + Duration::from_millis(400)).is_empty());
        assert_eq!(r.due(now + Duration::from_millis(500)).len(), 1);
        // Connected, then dropped: dialled again after a pause.
        assert_eq!(
            r.handshaken(addr, true, PeerId([1; 20]), PeerId([0; 20]), 0, C),
            Verdict::Keep
        );
        r.disconnected(now, addr, true, Some(PeerId([1; 20])), 0);
        assert!(r.due(now).is_empty());
        assert_eq!(r.due(now + Duration::from_secs(6)).len(), 1);
    }

    #[test]
    fn duplicate_ids_self_and_bans() {
        let now = Instant::now();
        let mut r = Registry::new(1, 10);
        let (lo, hi) = (PeerId([1; 20]), PeerId([2; 20]));
        assert_eq!(
            r.handshaken(a("10.0.0.1:1"), true, hi, lo, 0, C),
            Verdict::Keep
        );
        // Same direction twice: the second goes.
        assert_eq!(
            r.handshaken(a("10.0.0.1:2"), true, hi, lo, 1, C),
            Verdict::Drop
        );
        // Both dialled: we have the smaller id, so our dial is the keeper.
        assert_eq!(
            r.handshaken(a("10.0.0.1:3"), false, hi, lo, 1, C),
            Verdict::Drop
        );
        // Seen from the other end (its id is larger): ours replaces its dial.
        let mut other = Registry::new(2, 10);
        let d = ConnId {
            slot: 7,
            generation: 1,
        };
        assert_eq!(
            other.handshaken(a("10.0.0.2:1"), true, lo, hi, 1, d),
            Verdict::Keep
        );
        assert_eq!(
            other.handshaken(a("10.0.0.2:9"), false, lo, hi, 0, C),
            Verdict::Replace { shard: 1, conn: d }
        );
        r.add(now, [a("127.0.0.1:6881"), a("127.0.0.1:6882")]);
        r.due(now);
        r.is_us(a("127.0.0.1:6881"));
        r.disconnected(now, a("127.0.0.1:6881"), true, None, 0);
        // Found by the accepting side: the dialler's local address names the target.
        r.dialled_from(a("127.0.0.1:40000"), a("127.0.0.1:6882"));
        r.is_us_dialled_from(a("127.0.0.1:40000"));
        r.disconnected(now, a("127.0.0.1:6882"), true, None, 0);
        assert!(
            r.due(now + Duration::from_secs(100)).is_empty(),
            "never dial ourselves again"
        );
        let ip: IpAddr = "10.0.0.7".parse().unwrap();
        assert!(!r.strike(ip, 2));
        assert!(r.strike(ip, 2));
        assert!(r.is_banned(&ip));
        assert_eq!(r.add(now, [a("10.0.0.7:1")]), 0);
        assert_eq!(r.incoming(a("10.0.0.7:9")), None);
    }
}
