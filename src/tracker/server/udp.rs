//! The server side of BEP 15. A connection id is a keyed hash of the
//! requester's IP address and the minute, so it cannot be forged and needs
//! no table: ids of this minute and the last are accepted. (The port is
//! left out: clients may announce from another socket with the id they
//! got, and proving the address is what stops spoofing.) Nothing is sent
//! for a packet without a valid id except the connect reply, which is no
//! larger than its request, so the tracker amplifies nothing.

use std::net::{IpAddr, SocketAddr};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::{Announce, Tracker};
use crate::metainfo::InfoHash;
use crate::tracker::Event;
use crate::tracker::udp::{be32, be64};

const PROTOCOL_ID: u64 = 0x417_2710_1980;
const CONNECT: u32 = 0;
const ANNOUNCE: u32 = 1;
const SCRAPE: u32 = 2;
const ERROR: u32 = 3;
/// Info-hashes answered per scrape, as BEP 15 allows in one packet.
const MAX_SCRAPE: usize = 74;

/// Issues and checks connection ids.
pub struct ConnectionIds {
    secret: [u8; 16],
}

impl ConnectionIds {
    pub fn new() -> ConnectionIds {
        let mut secret = [0u8; 16];
        if getrandom::fill(&mut secret).is_err() {
            secret.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        ConnectionIds { secret }
    }

    fn id(&self, from: SocketAddr, minute: u64) -> u64 {
        let ip = match from.ip().to_canonical() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let h = crate::hash::sha1_parts([&self.secret[..], &ip, &minute.to_be_bytes()]);
        u64::from_be_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]])
    }

    /// Valid for one to two minutes, as BEP 15 asks.
    fn valid(&self, id: u64, from: SocketAddr, minute: u64) -> bool {
        id == self.id(from, minute) || id == self.id(from, minute.saturating_sub(1))
    }
}

impl Default for ConnectionIds {
    fn default() -> Self {
        Self::new()
    }
}

fn minute_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 60)
}

/// Answers one datagram from `from` into `out` (left empty when nothing is
/// to be sent). `minute` is the clock connection ids are keyed on (`None`:
/// the wall clock's).
pub fn handle(
    tracker: &mut Tracker,
    ids: &ConnectionIds,
    now: Instant,
    minute: Option<u64>,
    from: SocketAddr,
    packet: &[u8],
    out: &mut Vec<u8>,
) {
    out.clear();
    let minute = minute.unwrap_or_else(minute_now);
    if packet.len() < 16 {
        return;
    }
    let u64_at = |i| be64(packet, i);
    let u32_at = |i| be32(packet, i);
    let (conn, action, tid) = (u64_at(0), u32_at(8), u32_at(12));
    if action == CONNECT {
        if conn == PROTOCOL_ID {
            out.extend_from_slice(&CONNECT.to_be_bytes());
            out.extend_from_slice(&tid.to_be_bytes());
            out.extend_from_slice(&ids.id(from, minute).to_be_bytes());
        }
        return;
    }
    if !ids.valid(conn, from, minute) {
        return;
    }
    match action {
        ANNOUNCE if packet.len() >= 98 => {
            let mut h = [0u8; 20];
            h.copy_from_slice(&packet[16..36]);
            let event = match u32_at(80) {
                1 => Event::Completed,
                2 => Event::Started,
                3 => Event::Stopped,
                _ => Event::None,
            };
            let numwant = match u32_at(92) as i32 {
                n if n < 0 => None,
                n => Some(n as u32),
            };
            let port = u16::from_be_bytes([packet[96], packet[97]]);
            // The address the packet came from, never the one it claims.
            let a = Announce {
                info_hash: InfoHash(h),
                addr: SocketAddr::new(from.ip(), port),
                left: u64_at(64),
                event,
                numwant,
            };
            match tracker.announce(now, &a) {
                Ok(r) => {
                    out.extend_from_slice(&ANNOUNCE.to_be_bytes());
                    out.extend_from_slice(&tid.to_be_bytes());
                    out.extend_from_slice(&r.interval.to_be_bytes());
                    out.extend_from_slice(&r.leechers.to_be_bytes());
                    out.extend_from_slice(&r.seeders.to_be_bytes());
                    // Peers of the requester's family, in its packet format.
                    let v6 = from.ip().to_canonical().is_ipv6();
                    for p in r.peers {
                        match (p.ip(), v6) {
                            (IpAddr::V4(ip), false) => out.extend_from_slice(&ip.octets()),
                            (IpAddr::V6(ip), true) => out.extend_from_slice(&ip.octets()),
                            _ => continue,
                        }
                        out.extend_from_slice(&p.port().to_be_bytes());
                    }
                }
                Err(e) => error(out, tid, &e.to_string()),
            }
        }
        SCRAPE => {
            let hashes: Vec<InfoHash> = packet[16..]
                .chunks_exact(20)
                .take(MAX_SCRAPE)
                .map(|c| {
                    let mut h = [0u8; 20];
                    h.copy_from_slice(c);
                    InfoHash(h)
                })
                .collect();
            out.extend_from_slice(&SCRAPE.to_be_bytes());
            out.extend_from_slice(&tid.to_be_bytes());
            for e in tracker.scrape(&hashes) {
                out.extend_from_slice(&e.seeders.to_be_bytes());
                out.extend_from_slice(&e.completed.to_be_bytes());
                out.extend_from_slice(&e.leechers.to_be_bytes());
            }
        }
        // A short announce or an unknown action from a real client.
        _ => error(out, tid, "malformed request"),
    }
}

fn error(out: &mut Vec<u8>, tid: u32, message: &str) {
    out.clear();
    out.extend_from_slice(&ERROR.to_be_bytes());
    out.extend_from_slice(&tid.to_be_bytes());
    out.extend_from_slice(message.as_bytes());
}
