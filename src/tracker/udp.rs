//! Our UDP tracker client (BEP 15), as a state machine: it is told what
//! arrived and what time it is, and answers with what to send and when to
//! wake it. The thread in `client` owns the socket.
//!
//! - A connection id is reused for up to a minute after it was obtained
//!   (BEP 15), then a new one is requested.
//! - Every reply must carry the transaction id of the request in flight;
//!   anything else is ignored (and counted), never trusted.
//! - Lost requests are sent again after `base_timeout * 2^n`; BEP 15 says
//!   15 s * 2^n, which the caller can shorten for a local network.

use std::time::{Duration, Instant};

use super::{
    AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError, compact_v4, compact_v6, usable,
};
use crate::metainfo::InfoHash;

pub const PROTOCOL_ID: u64 = 0x41727101980;
pub const ACTION_CONNECT: u32 = 0;
pub const ACTION_ANNOUNCE: u32 = 1;
pub const ACTION_SCRAPE: u32 = 2;
pub const ACTION_ERROR: u32 = 3;

/// How long a connection id stays valid on our side.
pub const CONNECTION_ID_TTL: Duration = Duration::from_secs(60);

/// What the exchange wants.
#[derive(Debug, Clone)]
pub enum Request {
    Announce(AnnounceRequest),
    Scrape(InfoHash),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Announce(AnnounceResponse),
    Scrape(ScrapeStats),
}

/// The exchange's next step.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Send this datagram, then wait for a reply until the deadline.
    Send(Vec<u8>, Instant),
    /// Keep waiting until the deadline.
    Wait(Instant),
    Done(Reply),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Connecting,
    Requesting,
}

/// One tracker's UDP client. Keeps the connection id between requests.
#[derive(Debug)]
pub struct UdpTracker {
    connection: Option<(u64, Instant)>,
    base_timeout: Duration,
    max_attempts: u32,
    /// IPv6 trackers answer with 18-byte peers.
    ipv6: bool,
    current: Option<InFlight>,
    /// Replies dropped for a wrong transaction id or action.
    pub ignored: u64,
}

#[derive(Debug)]
struct InFlight {
    request: Request,
    phase: Phase,
    transaction_id: u32,
    attempt: u32,
    deadline: Instant,
}

impl UdpTracker {
    pub fn new(base_timeout: Duration, max_attempts: u32, ipv6: bool) -> UdpTracker {
        UdpTracker {
            connection: None,
            base_timeout,
            max_attempts: max_attempts.max(1),
            ipv6,
            current: None,
            ignored: 0,
        }
    }

    /// Starts a request; returns the first datagram to send.
    pub fn start(&mut self, now: Instant, request: Request) -> Step {
        let connection = self
            .connection
            .filter(|(_, at)| now.duration_since(*at) < CONNECTION_ID_TTL);
        let phase = if connection.is_some() {
            Phase::Requesting
        } else {
            Phase::Connecting
        };
        self.current = Some(InFlight {
            request,
            phase,
            transaction_id: 0,
            attempt: 0,
            deadline: now,
        });
        self.send(now)
    }

    /// Called when the deadline passed without a valid reply.
    pub fn handle_timeout(&mut self, now: Instant) -> Result<Step, TrackerError> {
        let Some(cur) = &mut self.current else {
            return Err(TrackerError::Malformed("no request in flight"));
        };
        if now < cur.deadline {
            return Ok(Step::Wait(cur.deadline));
        }
        cur.attempt += 1;
        if cur.attempt >= self.max_attempts {
            let attempts = cur.attempt;
            self.current = None;
            return Err(TrackerError::TimedOut(attempts));
        }
        // A connection id may have expired while we waited.
        if cur.phase == Phase::Requesting
            && self
                .connection
                .is_none_or(|(_, at)| now.duration_since(at) >= CONNECTION_ID_TTL)
        {
            cur.phase = Phase::Connecting;
        }
        Ok(self.send(now))
    }

    /// Handles a datagram from the tracker.
    pub fn handle_packet(&mut self, now: Instant, packet: &[u8]) -> Result<Step, TrackerError> {
        let Some(cur) = &self.current else {
            self.ignored += 1;
            return Err(TrackerError::BadPacket("no request in flight"));
        };
        let deadline = cur.deadline;
        if packet.len() < 8 {
            self.ignored += 1;
            return Ok(Step::Wait(deadline));
        }
        let action = be32(packet, 0);
        let tid = be32(packet, 4);
        if tid != cur.transaction_id {
            // Late reply to an earlier attempt, or spoofed: ignore it.
            self.ignored += 1;
            return Ok(Step::Wait(deadline));
        }
        if action == ACTION_ERROR {
            self.current = None;
            let msg = String::from_utf8_lossy(&packet[8..])
                .chars()
                .take(300)
                .collect();
            return Err(TrackerError::Failure(msg));
        }
        match (cur.phase, action) {
            (Phase::Connecting, ACTION_CONNECT) => {
                if packet.len() < 16 {
                    self.current = None;
                    return Err(TrackerError::BadPacket(
                        "connect reply shorter than 16 bytes",
                    ));
                }
                self.connection = Some((be64(packet, 8), now));
                if let Some(cur) = &mut self.current {
                    cur.phase = Phase::Requesting;
                    cur.attempt = 0;
                }
                Ok(self.send(now))
            }
            (Phase::Requesting, ACTION_ANNOUNCE) if matches!(cur.request, Request::Announce(_)) => {
                self.current = None;
                parse_announce(packet, self.ipv6).map(|r| Step::Done(Reply::Announce(r)))
            }
            (Phase::Requesting, ACTION_SCRAPE) if matches!(cur.request, Request::Scrape(_)) => {
                self.current = None;
                if packet.len() < 20 {
                    return Err(TrackerError::BadPacket(
                        "scrape reply shorter than 20 bytes",
                    ));
                }
                Ok(Step::Done(Reply::Scrape(ScrapeStats {
                    seeders: be32(packet, 8),
                    completed: be32(packet, 12),
                    leechers: be32(packet, 16),
                })))
            }
            _ => {
                self.ignored += 1;
                Ok(Step::Wait(deadline))
            }
        }
    }

    /// Forgets the connection id (the tracker may have restarted).
    pub fn reset_connection(&mut self) {
        self.connection = None;
    }

    fn send(&mut self, now: Instant) -> Step {
        let timeout =
            self.base_timeout * 2u32.pow(self.current.as_ref().map_or(0, |c| c.attempt.min(8)));
        let connection_id = self.connection.map(|(id, _)| id);
        let cur = self
            .current
            .as_mut()
            .expect("send with a request in flight");
        cur.transaction_id = fastrand::u32(..);
        cur.deadline = now + timeout;
        let packet = match (cur.phase, &cur.request, connection_id) {
            (Phase::Requesting, Request::Announce(a), Some(cid)) => {
                announce_packet(cid, cur.transaction_id, a)
            }
            (Phase::Requesting, Request::Scrape(h), Some(cid)) => {
                scrape_packet(cid, cur.transaction_id, h)
            }
            _ => {
                cur.phase = Phase::Connecting;
                connect_packet(cur.transaction_id)
            }
        };
        Step::Send(packet, cur.deadline)
    }
}

pub(in crate::tracker) fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(in crate::tracker) fn be64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(x)
}

pub fn connect_packet(transaction_id: u32) -> Vec<u8> {
    let mut p = Vec::with_capacity(16);
    p.extend_from_slice(&PROTOCOL_ID.to_be_bytes());
    p.extend_from_slice(&ACTION_CONNECT.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p
}

pub fn announce_packet(connection_id: u64, transaction_id: u32, a: &AnnounceRequest) -> Vec<u8> {
    let mut p = Vec::with_capacity(98);
    p.extend_from_slice(&connection_id.to_be_bytes());
    p.extend_from_slice(&ACTION_ANNOUNCE.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p.extend_from_slice(&a.info_hash.0);
    p.extend_from_slice(&a.peer_id.0);
    p.extend_from_slice(&a.downloaded.to_be_bytes());
    p.extend_from_slice(&a.left.to_be_bytes());
    p.extend_from_slice(&a.uploaded.to_be_bytes());
    p.extend_from_slice(&a.event.udp_code().to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes()); // IP: the sender's
    p.extend_from_slice(&a.key.to_be_bytes());
    p.extend_from_slice(&(a.num_want as i32).to_be_bytes());
    p.extend_from_slice(&a.port.to_be_bytes());
    p
}

pub fn scrape_packet(connection_id: u64, transaction_id: u32, h: &InfoHash) -> Vec<u8> {
    let mut p = Vec::with_capacity(36);
    p.extend_from_slice(&connection_id.to_be_bytes());
    p.extend_from_slice(&ACTION_SCRAPE.to_be_bytes());
    p.extend_from_slice(&transaction_id.to_be_bytes());
    p.extend_from_slice(&h.0);
    p
}

/// Parses an announce reply (action and transaction id already checked).
pub fn parse_announce(p: &[u8], ipv6: bool) -> Result<AnnounceResponse, TrackerError> {
    if p.len() < 20 {
        return Err(TrackerError::BadPacket(
            "announce reply shorter than 20 bytes",
        ));
    }
    let peers_raw = &p[20..];
    let width = if ipv6 { 18 } else { 6 };
    if !peers_raw.len().is_multiple_of(width) {
        return Err(TrackerError::BadPacket(
            "announce reply has a partial peer entry",
        ));
    }
    let mut peers: Vec<_> = if ipv6 {
        compact_v6(peers_raw).collect()
    } else {
        compact_v4(peers_raw).collect()
    };
    peers.retain(usable);
    Ok(AnnounceResponse {
        interval: be32(p, 8),
        min_interval: None,
        leechers: Some(be32(p, 12)),
        seeders: Some(be32(p, 16)),
        peers,
        tracker_id: None,
        warning: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;
    use crate::wire::PeerId;

    fn announce() -> Request {
        Request::Announce(AnnounceRequest {
            info_hash: InfoHash([3; 20]),
            peer_id: PeerId([4; 20]),
            port: 6881,
            uploaded: 10,
            downloaded: 20,
            left: 30,
            event: Event::Started,
            num_want: 200,
            key: 7,
            tracker_id: None,
        })
    }

    fn sent(step: Step) -> (Vec<u8>, Instant) {
        match step {
            Step::Send(p, d) => (p, d),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    fn connect_reply(tid: u32, cid: u64) -> Vec<u8> {
        let mut r = ACTION_CONNECT.to_be_bytes().to_vec();
        r.extend_from_slice(&tid.to_be_bytes());
        r.extend_from_slice(&cid.to_be_bytes());
        r
    }

    fn announce_reply(tid: u32, peers: &[u8]) -> Vec<u8> {
        let mut r = ACTION_ANNOUNCE.to_be_bytes().to_vec();
        r.extend_from_slice(&tid.to_be_bytes());
        r.extend_from_slice(&1800u32.to_be_bytes());
        r.extend_from_slice(&4u32.to_be_bytes());
        r.extend_from_slice(&2u32.to_be_bytes());
        r.extend_from_slice(peers);
        r
    }

    fn tid(p: &[u8]) -> u32 {
        be32(p, 12)
    }

    #[test]
    fn connect_then_announce_then_reuse_the_connection_id() {
        let t0 = Instant::now();
        let mut u = UdpTracker::new(Duration::from_secs(15), 8, false);
        let (p, deadline) = sent(u.start(t0, announce()));
        assert_eq!(p.len(), 16);
        assert_eq!(be64(&p, 0), PROTOCOL_ID);
        assert_eq!(deadline, t0 + Duration::from_secs(15));
        let (a, _) = sent(
            u.handle_packet(t0, &connect_reply(tid(&p), 0xfeed))
                .unwrap(),
        );
        assert_eq!(a.len(), 98);
        assert_eq!(be64(&a, 0), 0xfeed);
        assert_eq!(be32(&a, 8), ACTION_ANNOUNCE);
        assert_eq!(be32(&a, 80), 2, "event started");
        assert_eq!(&a[96..98], &6881u16.to_be_bytes());
        let reply = announce_reply(be32(&a, 12), &[127, 0, 0, 1, 0x1a, 0xe1, 1, 2, 3, 4, 0, 0]);
        match u.handle_packet(t0, &reply).unwrap() {
            Step::Done(Reply::Announce(r)) => {
                assert_eq!(r.interval, 1800);
                assert_eq!((r.leechers, r.seeders), (Some(4), Some(2)));
                assert_eq!(
                    r.peers,
                    vec!["127.0.0.1:6881".parse().unwrap()],
                    "port 0 dropped"
                );
            }
            other => panic!("{other:?}"),
        }
        // Within a minute: straight to announce, no connect.
        let (p, _) = sent(u.start(t0 + Duration::from_secs(59), announce()));
        assert_eq!(p.len(), 98);
        // After a minute: connect again.
        let (p, _) = sent(u.start(t0 + Duration::from_secs(61), announce()));
        assert_eq!(p.len(), 16);
    }

    #[test]
    fn wrong_transaction_ids_are_ignored() {
        let t0 = Instant::now();
        let mut u = UdpTracker::new(Duration::from_secs(1), 3, false);
        let (p, deadline) = sent(u.start(t0, announce()));
        let wrong = connect_reply(tid(&p).wrapping_add(1), 1);
        assert_eq!(u.handle_packet(t0, &wrong).unwrap(), Step::Wait(deadline));
        assert_eq!(
            u.handle_packet(t0, b"\x00\x00").unwrap(),
            Step::Wait(deadline)
        );
        assert_eq!(u.ignored, 2);
        // An announce-shaped reply while connecting is ignored too.
        let odd = announce_reply(tid(&p), &[]);
        assert_eq!(u.handle_packet(t0, &odd).unwrap(), Step::Wait(deadline));
    }

    #[test]
    fn retransmits_with_backoff_then_gives_up() {
        let t0 = Instant::now();
        let mut u = UdpTracker::new(Duration::from_millis(100), 3, false);
        let (p1, d1) = sent(u.start(t0, announce()));
        assert_eq!(u.handle_timeout(t0).unwrap(), Step::Wait(d1), "not yet due");
        let (p2, d2) = sent(u.handle_timeout(d1).unwrap());
        assert_eq!(d2 - d1, Duration::from_millis(200));
        assert_ne!(
            tid(&p1),
            tid(&p2),
            "each attempt gets a fresh transaction id"
        );
        // A late reply to the first attempt is not accepted.
        assert_eq!(
            u.handle_packet(d1, &connect_reply(tid(&p1), 5)).unwrap(),
            Step::Wait(d2)
        );
        let (_, d3) = sent(u.handle_timeout(d2).unwrap());
        assert_eq!(d3 - d2, Duration::from_millis(400));
        assert_eq!(u.handle_timeout(d3), Err(TrackerError::TimedOut(3)));
    }

    #[test]
    fn error_action_and_short_replies() {
        let t0 = Instant::now();
        let mut u = UdpTracker::new(Duration::from_secs(1), 3, false);
        let (p, _) = sent(u.start(t0, announce()));
        let mut err = ACTION_ERROR.to_be_bytes().to_vec();
        err.extend_from_slice(&tid(&p).to_be_bytes());
        err.extend_from_slice(b"torrent not registered");
        assert_eq!(
            u.handle_packet(t0, &err),
            Err(TrackerError::Failure("torrent not registered".into()))
        );

        let (p, _) = sent(u.start(t0, announce()));
        let (a, _) = sent(u.handle_packet(t0, &connect_reply(tid(&p), 9)).unwrap());
        let mut bad = announce_reply(be32(&a, 12), &[1, 2, 3]);
        assert!(matches!(
            u.handle_packet(t0, &bad),
            Err(TrackerError::BadPacket(_))
        ));
        bad.truncate(12);
        let (a, _) = sent(u.start(t0, announce()));
        bad[4..8].copy_from_slice(&be32(&a, 12).to_be_bytes());
        assert!(matches!(
            u.handle_packet(t0, &bad),
            Err(TrackerError::BadPacket(_))
        ));
    }

    #[test]
    fn scrape_and_ipv6_peers() {
        let t0 = Instant::now();
        let mut u = UdpTracker::new(Duration::from_secs(1), 3, true);
        let (p, _) = sent(u.start(t0, Request::Scrape(InfoHash([1; 20]))));
        let (s, _) = sent(u.handle_packet(t0, &connect_reply(tid(&p), 9)).unwrap());
        assert_eq!(s.len(), 36);
        let mut r = ACTION_SCRAPE.to_be_bytes().to_vec();
        r.extend_from_slice(&be32(&s, 12).to_be_bytes());
        for v in [5u32, 6, 7] {
            r.extend_from_slice(&v.to_be_bytes());
        }
        assert_eq!(
            u.handle_packet(t0, &r).unwrap(),
            Step::Done(Reply::Scrape(ScrapeStats {
                seeders: 5,
                completed: 6,
                leechers: 7
            }))
        );
        let mut peer6 = vec![0u8; 15];
        peer6.extend_from_slice(&[1, 0x1a, 0xe1]);
        let parsed = parse_announce(&announce_reply(0, &peer6), true).unwrap();
        assert_eq!(parsed.peers, vec!["[::1]:6881".parse().unwrap()]);
    }
}
