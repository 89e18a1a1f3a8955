//! Every peer address we know of, and which shard talks to it.
//!
//! Addresses arrive from trackers and `--peer`; the registry decides when to
//! dial each (at most one connection per address, retries with backoff, a
//! cap on connections), spreads connections over shards, and remembers bans
//! and addresses that turned out to be ourselves.
//!
//! Bans name a peer, not an address: several peers often share one IP (NAT,
//! containers, many processes on one host), and an honest one must not go
//! with a liar beside it.

use std::collections::{HashMap, HashSet, VecDeque};
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
    shard: usize,
    conn: ConnId,
}

/// Where an incoming connection goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admit {
    pub shard: usize,
    /// A connection to close to make room: the oldest one from the same
    /// limit's scope still waiting for its handshake (remote address, shard).
    pub displace: Option<(SocketAddr, usize)>,
}

/// What to do with a connection whose handshake just completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Keep,
    /// Another connection to the same peer is the one to keep.
    Drop,
    /// The peer was banned earlier in this session.
    Banned,
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
    banned: HashSet<PeerIdent>,
    /// Listen addresses of banned peers (never dialled again).
    banned_addrs: HashSet<SocketAddr>,
    /// Hash-failure strikes per peer.
    strikes: HashMap<PeerIdent, u32>,
    /// Local address of each outgoing connection, to the address it dialled:
    /// an incoming self-connection comes from one of these.
    dialled_from: HashMap<SocketAddr, SocketAddr>,
    per_shard: Vec<usize>,
    /// Connections per IP address, both directions.
    per_ip: HashMap<IpAddr, usize>,
    /// Incoming connections that have not completed their handshake, oldest
    /// first: the ones displaced when a limit is reached.
    pending: VecDeque<(SocketAddr, usize)>,
    max_connections: usize,
    max_per_ip: usize,
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
    pub fn new(shards: usize, max_connections: usize, max_per_ip: usize) -> Registry {
        Registry {
            addrs: HashMap::new(),
            ids: HashMap::new(),
            banned: HashSet::new(),
            banned_addrs: HashSet::new(),
            strikes: HashMap::new(),
            dialled_from: HashMap::new(),
            per_shard: vec![0; shards.max(1)],
            per_ip: HashMap::new(),
            pending: VecDeque::new(),
            max_connections,
            max_per_ip: max_per_ip.max(1),
            max_failures: 8,
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
            if self.per_ip.get(&a.ip()).copied().unwrap_or(0) >= self.max_per_ip {
                continue;
            }
            let shard = self.least_loaded();
            self.per_shard[shard] += 1;
            *self.per_ip.entry(a.ip()).or_insert(0) += 1;
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
    /// to refuse it. At the connection cap, or at the cap for its IP, it
    /// displaces the oldest connection (from that IP, for the per-IP cap)
    /// that has not completed its handshake; with none to displace it is
    /// refused. So silent connections cannot crowd out a peer that speaks.
    /// Bans are checked at the handshake, when the peer has said who it is.
    pub fn incoming(&mut self, addr: SocketAddr) -> Option<Admit> {
        let ip = addr.ip();
        let ip_full = self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip;
        let displace = if ip_full {
            Some(self.pending.iter().position(|(a, _)| a.ip() == ip)?)
        } else if self.connections() >= self.max_connections {
            Some(if self.pending.is_empty() {
                return None;
            } else {
                0
            })
        } else {
            None
        };
        // The displaced connection is released when its shard closes it.
        let displace = displace.and_then(|i| self.pending.remove(i));
        let shard = self.least_loaded();
        self.per_shard[shard] += 1;
        *self.per_ip.entry(ip).or_insert(0) += 1;
        self.pending.push_back((addr, shard));
        // Incoming peers connect from ephemeral ports: not an address to dial.
        Some(Admit { shard, displace })
    }

    /// An outgoing dial failed.
    pub fn dial_failed(&mut self, now: Instant, addr: SocketAddr, shard: usize) {
        self.release(addr, shard);
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
        if !outgoing {
            self.pending.retain(|(a, _)| *a != addr);
        }
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
                    Verdict::Replace {
                        shard: old.shard,
                        conn: old.conn,
                    }
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
        shard: usize,
    ) {
        self.release(addr, shard);
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

    fn release(&mut self, addr: SocketAddr, shard: usize) {
        if let Some(n) = self.per_shard.get_mut(shard) {
            *n = n.saturating_sub(1);
        }
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
        self.pending.retain(|(a, _)| *a != addr);
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
        let mut r = Registry::new(2, 3, 10);
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
    fn silent_connections_make_room_for_new_ones() {
        let mut r = Registry::new(1, 3, 2);
        let (x1, x2, x3) = (a("10.0.0.1:1001"), a("10.0.0.1:1002"), a("10.0.0.1:1003"));
        assert_eq!(r.incoming(x1).unwrap().displace, None);
        assert_eq!(r.incoming(x2).unwrap().displace, None);
        // The per-IP cap: the oldest silent one from that IP goes.
        assert_eq!(r.incoming(x3).unwrap().displace, Some((x1, 0)));
        r.disconnected(Instant::now(), x1, false, None, 0);
        // x3 speaks; x2 stays silent.
        r.handshaken(x3, false, PeerId([3; 20]), PeerId([0; 20]), 0, C);
        let y = a("10.0.0.2:1");
        assert_eq!(r.incoming(y).unwrap().displace, None);
        // The global cap: the oldest silent one anywhere.
        let z = a("10.0.0.3:1");
        assert_eq!(r.incoming(z).unwrap().displace, Some((x2, 0)));
        r.disconnected(Instant::now(), x2, false, None, 0);
        r.handshaken(y, false, PeerId([4; 20]), PeerId([0; 20]), 0, C);
        r.handshaken(z, false, PeerId([5; 20]), PeerId([0; 20]), 0, C);
        // Everyone has spoken: nothing to displace, so a newcomer is refused.
        assert_eq!(r.incoming(a("10.0.0.4:1")), None);
    }

    #[test]
    fn failed_dials_back_off_and_reconnect_later() {
        let now = Instant::now();
        let mut r = Registry::new(1, 10, 10);
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
        let mut r = Registry::new(1, 10, 10);
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
        let mut other = Registry::new(2, 10, 10);
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
    }

    #[test]
    fn a_ban_names_the_peer_not_its_address() {
        let now = Instant::now();
        let mut r = Registry::new(1, 10, 10);
        let (liar, honest) = (PeerId([7; 20]), PeerId([8; 20]));
        r.add(now, [a("10.0.0.7:1"), a("10.0.0.7:2")]);
        r.due(now);
        assert_eq!(
            r.handshaken(a("10.0.0.7:1"), true, liar, PeerId([0; 20]), 0, C),
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
        r.disconnected(now, a("10.0.0.7:1"), true, Some(liar), 0);
        assert_eq!(
            r.add(now, [a("10.0.0.7:1")]),
            0,
            "its address is not dialled again"
        );
        assert_eq!(
            r.handshaken(a("10.0.0.7:9"), false, liar, PeerId([0; 20]), 0, C),
            Verdict::Banned,
            "nor accepted from another port"
        );
        // Its neighbour on the same IP is untouched.
        assert!(r.incoming(a("10.0.0.7:9")).is_some());
        assert_eq!(
            r.handshaken(a("10.0.0.7:2"), true, honest, PeerId([0; 20]), 0, C),
            Verdict::Keep
        );
    }
}
