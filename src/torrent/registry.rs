//! Every peer address a torrent knows of, for the session's coordinator.
//!
//! Addresses arrive from trackers and `--peer`; the registry decides when to
//! dial each (at most one connection per address, retries with backoff),
//! keeps one connection per peer, and remembers bans and addresses that
//! turned out to be ourselves. How many connections there may be, and on
//! which shard, is the session's to decide.
//!
//! Bans name a peer, not an address: several peers often share one IP (NAT,
//! containers, many processes on one host), and an honest one must not go
//! with a liar beside it.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use super::ShardConn;
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
    /// A peer we are connected to by another connection (a duplicate was
    /// closed): dialled again only once that connection ends.
    Alias(PeerId),
    /// Our own listen address, learned from a self-connection.
    Us,
}

/// A peer as bans and hash-failure strikes know it: its address and the id
/// from its handshake. Another peer behind the same IP is another peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerIdent {
    pub ip: IpAddr,
    pub id: PeerId,
}

/// An established connection, as the registry knows it.
#[derive(Debug, Clone, Copy)]
struct Live {
    addr: SocketAddr,
    outgoing: bool,
    conn: ShardConn,
}

/// What to do with a connection whose handshake just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Another connection to the same peer is the one to keep.
    Drop,
    /// The peer was banned earlier in this session.
    Banned,
    /// Keep this one and close the other.
    Replace(ShardConn),
}

#[derive(Debug, Default)]
pub struct Registry {
    addrs: HashMap<SocketAddr, State>,
    /// Connected peers by id, to refuse a second connection to the same peer.
    ids: HashMap<PeerId, Live>,
    banned: HashSet<PeerIdent>,
    /// Listen addresses of banned peers (never dialled again).
    banned_addrs: HashSet<SocketAddr>,
    /// Hash-failure strikes per peer.
    strikes: HashMap<PeerIdent, u32>,
    /// Local address of each outgoing connection, to the address it dialled:
    /// an incoming self-connection comes from one of these.
    dialled_from: HashMap<SocketAddr, SocketAddr>,
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
    pub fn new() -> Registry {
        Registry {
            max_failures: 8,
            ..Registry::default()
        }
    }

    /// Adds addresses to dial; returns how many were new.
    pub fn add(&mut self, now: Instant, addrs: impl IntoIterator<Item = SocketAddr>) -> usize {
        let mut new = 0;
        for a in addrs {
            if self.banned_addrs.contains(&a) {
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

    pub fn known(&self) -> usize {
        self.addrs.len()
    }

    /// Up to `max` addresses to dial now, in a stable order. They count as
    /// connecting at once.
    pub fn due(&mut self, now: Instant, max: usize) -> Vec<SocketAddr> {
        if max == 0 {
            return Vec::new();
        }
        let mut ready: Vec<SocketAddr> = self
            .addrs
            .iter()
            .filter(|(_, s)| matches!(s, State::Idle { retry_at, .. } if *retry_at <= now))
            .map(|(a, _)| *a)
            .collect();
        ready.sort();
        ready.truncate(max);
        for a in &ready {
            let failures = match self.addrs.get(a) {
                Some(State::Idle { failures, .. }) => *failures,
                _ => 0,
            };
            self.addrs.insert(*a, State::Connecting { failures });
        }
        ready
    }

    /// When the next address becomes due (for the coordinator's timer).
    pub fn next_due(&self) -> Option<Instant> {
        self.addrs
            .values()
            .filter_map(|s| match s {
                State::Idle { retry_at, .. } => Some(*retry_at),
                _ => None,
            })
            .min()
    }

    /// An outgoing dial failed.
    pub fn dial_failed(&mut self, now: Instant, addr: SocketAddr) {
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

    /// A handshake with peer `id` completed on `conn`. When two connections
    /// join the same pair of peers (both dialled at once), both ends must
    /// keep the same one or neither survives: the one kept is the one
    /// dialled by the peer with the smaller id.
    pub fn handshaken(
        &mut self,
        addr: SocketAddr,
        outgoing: bool,
        id: PeerId,
        ours: PeerId,
        conn: ShardConn,
    ) -> Verdict {
        let new = Live {
            addr,
            outgoing,
            conn,
        };
        if self.banned.contains(&PeerIdent { ip: addr.ip(), id }) {
            return Verdict::Banned;
        }
        let verdict = match self.ids.get(&id) {
            None => Verdict::Keep,
            Some(old) if old.outgoing == outgoing => Verdict::Drop,
            Some(old) => {
                // Keep the connection dialled by the smaller id.
                let keep_outgoing = ours.0 < id.0;
                if outgoing == keep_outgoing {
                    Verdict::Replace(old.conn)
                } else {
                    Verdict::Drop
                }
            }
        };
        if verdict != Verdict::Drop && verdict != Verdict::Banned {
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
        conn: ShardConn,
    ) {
        if outgoing {
            self.dialled_from.retain(|_, remote| *remote != addr);
        }
        let retry = State::Idle {
            retry_at: now + Duration::from_secs(5),
            failures: 0,
        };
        let mut alias = None;
        if let Some(id) = id {
            match self.ids.get(&id) {
                Some(l) if l.conn == conn => {
                    self.ids.remove(&id);
                    for s in self.addrs.values_mut() {
                        if *s == State::Alias(id) {
                            *s = retry;
                        }
                    }
                }
                // A duplicate: the peer is still connected by another.
                Some(_) => alias = Some(State::Alias(id)),
                None => {}
            }
        }
        if outgoing
            && matches!(
                self.addrs.get(&addr),
                Some(State::Connected | State::Connecting { .. })
            )
        {
            self.addrs.insert(addr, alias.unwrap_or(retry));
        }
    }

    /// Records a hash failure that `peer` alone is to blame for; returns
    /// true when that bans it.
    pub fn strike(&mut self, peer: PeerIdent, max: u32) -> bool {
        let s = self.strikes.entry(peer).or_insert(0);
        *s += 1;
        *s >= max && self.ban(peer)
    }

    /// Bans `peer` for the session; returns false if it already was. Its
    /// listen address is not dialled again; other peers on its IP are
    /// unaffected.
    pub fn ban(&mut self, peer: PeerIdent) -> bool {
        if !self.banned.insert(peer) {
            return false;
        }
        if let Some(live) = self.ids.get(&peer.id)
            && live.addr.ip() == peer.ip
            && live.outgoing
        {
            self.banned_addrs.insert(live.addr);
            self.addrs.remove(&live.addr);
        }
        true
    }

    pub fn is_banned(&self, peer: &PeerIdent) -> bool {
        self.banned.contains(peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::torrent::ConnId;

    fn conn(shard: usize, slot: u32) -> ShardConn {
        ShardConn {
            shard,
            conn: ConnId {
                slot,
                generation: 1,
            },
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn dials_once_within_the_limit() {
        let now = Instant::now();
        let mut r = Registry::new();
        assert_eq!(
            r.add(now, [a("10.0.0.1:1"), a("10.0.0.2:1"), a("10.0.0.1:1")]),
            2
        );
        r.add(now, [a("10.0.0.3:1"), a("10.0.0.4:1")]);
        assert_eq!(r.due(now, 3).len(), 3, "at most as many as allowed");
        assert_eq!(r.due(now, 10).len(), 1, "nothing is dialled twice");
        assert!(r.due(now, 10).is_empty());
    }

    #[test]
    fn failed_dials_back_off_and_reconnect_later() {
        let now = Instant::now();
        let mut r = Registry::new();
        r.add(now, [a("10.0.0.1:1")]);
        let addr = r.due(now, 10)[0];
        r.dial_failed(now, addr);
        assert!(r.due(now, 10).is_empty());
        assert_eq!(r.next_due(), Some(now + Duration::from_millis(250)));
        assert_eq!(r.due(now + Duration::from_millis(250), 10).len(), 1);
        r.dial_failed(now, addr);
        assert!(r.due(now + Duration::from_millis(400), 10).is_empty());
        assert_eq!(r.due(now + Duration::from_millis(500), 10).len(), 1);
        // Connected, then dropped: dialled again after a pause.
        let c = conn(0, 1);
        assert_eq!(
            r.handshaken(addr, true, PeerId([1; 20]), PeerId([0; 20]), c),
            Verdict::Keep
        );
        r.disconnected(now, addr, true, Some(PeerId([1; 20])), c);
        assert!(r.due(now, 10).is_empty());
        assert_eq!(r.due(now + Duration::from_secs(6), 10).len(), 1);
    }

    #[test]
    fn an_address_of_a_peer_connected_otherwise_is_not_redialled() {
        let now = Instant::now();
        let later = now + Duration::from_secs(6);
        let mut r = Registry::new();
        // The peer has the smaller id: of the two connections made at once,
        // the one it dialled is kept and ours closed.
        let (peer, us) = (PeerId([1; 20]), PeerId([2; 20]));
        let (listen, from) = (a("10.0.0.1:6881"), a("10.0.0.1:40000"));
        let (dial, inbound) = (conn(0, 1), conn(0, 2));
        r.add(now, [listen]);
        assert_eq!(r.due(now, 10), vec![listen]);
        assert_eq!(r.handshaken(listen, true, peer, us, dial), Verdict::Keep);
        assert_eq!(
            r.handshaken(from, false, peer, us, inbound),
            Verdict::Replace(dial)
        );
        r.disconnected(now, listen, true, Some(peer), dial);
        assert!(r.due(later, 10).is_empty(), "connected by its own dial");
        // Once that connection ends, its listen address is dialled again.
        r.disconnected(now, from, false, Some(peer), inbound);
        assert_eq!(r.due(later, 10), vec![listen]);
    }

    #[test]
    fn duplicate_ids_and_self() {
        let now = Instant::now();
        let mut r = Registry::new();
        let (lo, hi) = (PeerId([1; 20]), PeerId([2; 20]));
        assert_eq!(
            r.handshaken(a("10.0.0.1:1"), true, hi, lo, conn(0, 1)),
            Verdict::Keep
        );
        // Same direction twice: the second goes.
        assert_eq!(
            r.handshaken(a("10.0.0.1:2"), true, hi, lo, conn(1, 1)),
            Verdict::Drop
        );
        // Both dialled: we have the smaller id, so our dial is the keeper.
        assert_eq!(
            r.handshaken(a("10.0.0.1:3"), false, hi, lo, conn(1, 2)),
            Verdict::Drop
        );
        // Seen from the other end (its id is larger): ours replaces its dial.
        let mut other = Registry::new();
        let d = conn(1, 7);
        assert_eq!(
            other.handshaken(a("10.0.0.2:1"), true, lo, hi, d),
            Verdict::Keep
        );
        assert_eq!(
            other.handshaken(a("10.0.0.2:9"), false, lo, hi, conn(0, 1)),
            Verdict::Replace(d)
        );
        r.add(now, [a("127.0.0.1:6881"), a("127.0.0.1:6882")]);
        r.due(now, 10);
        r.is_us(a("127.0.0.1:6881"));
        r.disconnected(now, a("127.0.0.1:6881"), true, None, conn(0, 3));
        // Found by the accepting side: the dialler's local address names the target.
        r.dialled_from(a("127.0.0.1:40000"), a("127.0.0.1:6882"));
        r.is_us_dialled_from(a("127.0.0.1:40000"));
        r.disconnected(now, a("127.0.0.1:6882"), true, None, conn(0, 4));
        assert!(
            r.due(now + Duration::from_secs(100), 10).is_empty(),
            "never dial ourselves again"
        );
    }

    #[test]
    fn a_ban_names_the_peer_not_its_address() {
        let now = Instant::now();
        let mut r = Registry::new();
        let (liar, honest) = (PeerId([7; 20]), PeerId([8; 20]));
        r.add(now, [a("10.0.0.7:1"), a("10.0.0.7:2")]);
        r.due(now, 10);
        let c = conn(0, 1);
        assert_eq!(
            r.handshaken(a("10.0.0.7:1"), true, liar, PeerId([0; 20]), c),
            Verdict::Keep
        );
        let peer = PeerIdent {
            ip: "10.0.0.7".parse().unwrap(),
            id: liar,
        };
        assert!(!r.strike(peer, 2));
        assert!(r.strike(peer, 2));
        assert!(!r.ban(peer), "banned once");
        assert!(r.is_banned(&peer));
        r.disconnected(now, a("10.0.0.7:1"), true, Some(liar), c);
        assert_eq!(
            r.add(now, [a("10.0.0.7:1")]),
            0,
            "its address is not dialled again"
        );
        assert_eq!(
            r.handshaken(a("10.0.0.7:9"), false, liar, PeerId([0; 20]), conn(0, 2)),
            Verdict::Banned,
            "nor accepted from another port"
        );
        // Its neighbour on the same IP is untouched.
        assert_eq!(
            r.handshaken(a("10.0.0.7:2"), true, honest, PeerId([0; 20]), conn(0, 3)),
            Verdict::Keep
        );
    }
}
