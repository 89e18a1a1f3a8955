//! Peer exchange (BEP 11, `ut_pex`): telling connected peers which other
//! peers we are connected to, and learning theirs.
//!
//! A message lists the peers added and dropped since the last one sent to
//! that peer, at most [`MAX_ADDED`] of each, at most once a minute. What we
//! receive is bounded the same way, and never used for a private torrent.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use crate::bencode::{self, Encoder};
use crate::tracker::{compact_v4, compact_v6};

/// Peers added (and dropped) per message, as BEP 11 asks.
pub const MAX_ADDED: usize = 50;
/// Between two messages to one peer.
pub const INTERVAL: Duration = Duration::from_secs(60);
/// A peer's messages closer together than this are ignored (counted).
pub const MIN_RECV_INTERVAL: Duration = Duration::from_secs(45);

/// Flag bits of `added.f`.
pub mod flags {
    /// The peer prefers encryption.
    pub const ENCRYPTION: u8 = 0x01;
    /// The peer is a seed.
    pub const SEED: u8 = 0x02;
    /// The peer can be reached (it accepted a connection).
    pub const CONNECTABLE: u8 = 0x10;
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PexMessage {
    /// Added peers and their flags.
    pub added: Vec<(SocketAddr, u8)>,
    pub dropped: Vec<SocketAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PexError {
    #[error("ut_pex message is not a bencoded dictionary")]
    NotDict,
}

impl PexMessage {
    pub fn encode(&self) -> Vec<u8> {
        let split = |v4: bool| {
            let mut addrs = Vec::new();
            let mut fl = Vec::new();
            for (a, f) in &self.added {
                if a.is_ipv4() == v4 {
                    put_compact(&mut addrs, a);
                    fl.push(*f);
                }
            }
            (addrs, fl)
        };
        let dropped = |v4: bool| {
            let mut out = Vec::new();
            for a in self.dropped.iter().filter(|a| a.is_ipv4() == v4) {
                put_compact(&mut out, a);
            }
            out
        };
        let (a4, f4) = split(true);
        let (a6, f6) = split(false);
        let mut out = Vec::with_capacity(64 + a4.len() + a6.len());
        let mut e = Encoder::new(&mut out);
        // Keys in sorted order.
        e.begin_dict();
        e.bytes(b"added").bytes(&a4);
        e.bytes(b"added.f").bytes(&f4);
        e.bytes(b"added6").bytes(&a6);
        e.bytes(b"added6.f").bytes(&f6);
        e.bytes(b"dropped").bytes(&dropped(true));
        e.bytes(b"dropped6").bytes(&dropped(false));
        e.end();
        out
    }

    /// Parses a message, keeping at most [`MAX_ADDED`] peers of each family
    /// and list. Malformed lists are ignored, as peers in the wild vary.
    pub fn decode(payload: &[u8]) -> Result<PexMessage, PexError> {
        let limits = bencode::Limits {
            max_depth: 4,
            max_values: 256,
        };
        let v = bencode::decode_with(payload, limits).map_err(|_| PexError::NotDict)?;
        let d = v.as_dict().ok_or(PexError::NotDict)?;
        let bytes = |k: &[u8]| d.get(k).and_then(|v| v.as_bytes()).unwrap_or_default();
        let mut out = PexMessage::default();
        for (list, fl, v4) in [
            (bytes(b"added"), bytes(b"added.f"), true),
            (bytes(b"added6"), bytes(b"added6.f"), false),
        ] {
            let addrs: Vec<SocketAddr> = if v4 {
                compact_v4(list).take(MAX_ADDED).collect()
            } else {
                compact_v6(list).take(MAX_ADDED).collect()
            };
            for (i, a) in addrs.into_iter().enumerate() {
                out.added.push((a, fl.get(i).copied().unwrap_or(0)));
            }
        }
        out.dropped
            .extend(compact_v4(bytes(b"dropped")).take(MAX_ADDED));
        out.dropped
            .extend(compact_v6(bytes(b"dropped6")).take(MAX_ADDED));
        Ok(out)
    }
}

fn put_compact(out: &mut Vec<u8>, a: &SocketAddr) {
    match a.ip() {
        IpAddr::V4(ip) => out.extend_from_slice(&ip.octets()),
        IpAddr::V6(ip) => out.extend_from_slice(&ip.octets()),
    }
    out.extend_from_slice(&a.port().to_be_bytes());
}

/// What one connection has been told and when: the exchange's state for a
/// peer, on the shard that owns its connection.
#[derive(Debug, Default)]
pub struct PexState {
    told: BTreeSet<SocketAddr>,
    last_sent: Option<Instant>,
    last_recv: Option<Instant>,
}

impl PexState {
    /// The message to send `peer` now that the torrent's peers are
    /// `current` (listen addresses with their [`flags`]), or `None` when it
    /// is too early or nothing changed.
    pub fn update(
        &mut self,
        now: Instant,
        peer: Option<SocketAddr>,
        current: &[(SocketAddr, u8)],
    ) -> Option<PexMessage> {
        if self
            .last_sent
            .is_some_and(|t| now.saturating_duration_since(t) < INTERVAL)
        {
            return None;
        }
        let flags: BTreeMap<SocketAddr, u8> = current
            .iter()
            .copied()
            .filter(|(a, _)| Some(*a) != peer)
            .collect();
        let current: BTreeSet<SocketAddr> = flags.keys().copied().collect();
        let added: Vec<(SocketAddr, u8)> = current
            .difference(&self.told)
            .take(MAX_ADDED)
            .map(|a| (*a, flags.get(a).copied().unwrap_or(0)))
            .collect();
        let dropped: Vec<SocketAddr> = self
            .told
            .difference(&current)
            .take(MAX_ADDED)
            .copied()
            .collect();
        if added.is_empty() && dropped.is_empty() {
            return None;
        }
        for (a, _) in &added {
            self.told.insert(*a);
        }
        for a in &dropped {
            self.told.remove(a);
        }
        self.last_sent = Some(now);
        Some(PexMessage { added, dropped })
    }

    /// Whether a message from the peer arriving now is to be used (not
    /// closer than [`MIN_RECV_INTERVAL`] to its last one).
    pub fn accept(&mut self, now: Instant) -> bool {
        if self
            .last_recv
            .is_some_and(|t| now.saturating_duration_since(t) < MIN_RECV_INTERVAL)
        {
            return false;
        }
        self.last_recv = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn round_trip_both_families() {
        let m = PexMessage {
            added: vec![(a("10.0.0.1:6881"), flags::SEED), (a("[::1]:7000"), 0)],
            dropped: vec![a("10.0.0.2:1"), a("[2001:db8::1]:2")],
        };
        let back = PexMessage::decode(&m.encode()).unwrap();
        assert_eq!(back, m);
        assert_eq!(PexMessage::decode(b"le"), Err(PexError::NotDict));
        assert_eq!(PexMessage::decode(b"d5:added"), Err(PexError::NotDict));
    }

    #[test]
    fn decode_bounds_and_tolerates_odd_lists() {
        let many: Vec<u8> = (0..200u8).flat_map(|i| [10, 0, 0, i, 0, 80]).collect();
        let mut payload = b"d5:added1200:".to_vec();
        payload.extend_from_slice(&many);
        payload.extend_from_slice(b"7:dropped5:abcdee");
        let m = PexMessage::decode(&payload).unwrap();
        assert_eq!(m.added.len(), MAX_ADDED);
        assert!(m.dropped.is_empty(), "a 5-byte list holds no address");
    }

    #[test]
    fn state_sends_changes_once_a_minute() {
        let t0 = Instant::now();
        let mut s = PexState::default();
        let me = a("1.1.1.1:1");
        let m = s
            .update(t0, Some(me), &[(me, 0), (a("2.2.2.2:2"), flags::SEED)])
            .unwrap();
        assert_eq!(m.added, vec![(a("2.2.2.2:2"), flags::SEED)]);
        assert!(
            s.update(
                t0 + Duration::from_secs(10),
                Some(me),
                &[(a("3.3.3.3:3"), 0)]
            )
            .is_none()
        );
        let m = s
            .update(t0 + INTERVAL, Some(me), &[(a("3.3.3.3:3"), 0)])
            .unwrap();
        assert_eq!(m.added, vec![(a("3.3.3.3:3"), 0)]);
        assert_eq!(m.dropped, vec![a("2.2.2.2:2")]);
        assert!(
            s.update(t0 + INTERVAL * 2, Some(me), &[(a("3.3.3.3:3"), 0)])
                .is_none()
        );
        assert!(s.accept(t0));
        assert!(!s.accept(t0 + Duration::from_secs(1)));
        assert!(s.accept(t0 + MIN_RECV_INTERVAL));
    }
}
