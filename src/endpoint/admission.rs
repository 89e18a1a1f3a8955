//! Which incoming connections a shard takes.
//!
//! Connections are capped per shard (its share of the session's cap) and
//! per IP address. At either cap a new connection displaces the oldest one
//! (from that IP, for the per-IP cap) that has not completed its handshake;
//! with none to displace it is refused. So hundreds of silent connections
//! cannot keep a peer that speaks waiting: they go first.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

use crate::torrent::ConnId;

/// What to do with a new incoming connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Admit,
    /// Admit it after closing this silent one (the caller closes it).
    Displace(ConnId),
    Refuse,
}

#[derive(Debug)]
pub struct Admission {
    max: usize,
    max_per_ip: usize,
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    /// Incoming connections still waiting for their handshake, oldest first.
    pending: VecDeque<(ConnId, IpAddr)>,
}

impl Admission {
    /// At most `max` connections on this shard, `max_per_ip` from one address.
    pub fn new(max: usize, max_per_ip: usize) -> Admission {
        Admission {
            max: max.max(1),
            max_per_ip: max_per_ip.max(1),
            total: 0,
            per_ip: HashMap::new(),
            pending: VecDeque::new(),
        }
    }

    /// Whether a connection from `addr` may come in.
    pub fn admit(&self, addr: SocketAddr) -> Verdict {
        let ip = addr.ip();
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.max_per_ip {
            return match self.pending.iter().find(|(_, p)| *p == ip) {
                Some((c, _)) => Verdict::Displace(*c),
                None => Verdict::Refuse,
            };
        }
        if self.total >= self.max {
            return match self.pending.front() {
                Some((c, _)) => Verdict::Displace(*c),
                None => Verdict::Refuse,
            };
        }
        Verdict::Admit
    }

    /// A connection (either way) now counts.
    pub fn opened(&mut self, _id: ConnId, addr: SocketAddr) {
        self.total += 1;
        *self.per_ip.entry(addr.ip()).or_insert(0) += 1;
    }

    /// An accepted connection now counts, as one waiting for its handshake.
    pub fn opened_incoming(&mut self, id: ConnId, addr: SocketAddr) {
        self.opened(id, addr);
        self.pending.push_back((id, addr.ip()));
    }

    /// Its handshake came: it is no longer one to displace.
    pub fn handshaken(&mut self, id: ConnId) {
        self.pending.retain(|(c, _)| *c != id);
    }

    pub fn closed(&mut self, id: ConnId, addr: SocketAddr, pending: bool) {
        self.total = self.total.saturating_sub(1);
        if let Some(n) = self.per_ip.get_mut(&addr.ip()) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&addr.ip());
            }
        }
        if pending {
            self.pending.retain(|(c, _)| *c != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(slot: u32) -> ConnId {
        ConnId {
            slot,
            generation: 1,
        }
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn silent_connections_make_room_for_new_ones() {
        let mut ad = Admission::new(3, 2);
        let (x1, x2, x3) = (a("10.0.0.1:1001"), a("10.0.0.1:1002"), a("10.0.0.1:1003"));
        assert_eq!(ad.admit(x1), Verdict::Admit);
        ad.opened_incoming(c(1), x1);
        assert_eq!(ad.admit(x2), Verdict::Admit);
        ad.opened_incoming(c(2), x2);
        // The per-IP cap: the oldest silent one from that IP goes.
        assert_eq!(ad.admit(x3), Verdict::Displace(c(1)));
        ad.closed(c(1), x1, true);
        ad.opened_incoming(c(3), x3);
        // x3 speaks; x2 stays silent.
        ad.handshaken(c(3));
        let y = a("10.0.0.2:1");
        assert_eq!(ad.admit(y), Verdict::Admit);
        ad.opened_incoming(c(4), y);
        // The shard's cap: the oldest silent one anywhere.
        let z = a("10.0.0.3:1");
        assert_eq!(ad.admit(z), Verdict::Displace(c(2)));
        ad.closed(c(2), x2, true);
        ad.opened_incoming(c(5), z);
        ad.handshaken(c(4));
        ad.handshaken(c(5));
        // Everyone has spoken: nothing to displace, so a newcomer is refused.
        assert_eq!(ad.admit(a("10.0.0.4:1")), Verdict::Refuse);
    }
}
