//! Trackers: the HTTP tracker protocol (BEP 3, compact peers BEP 23, IPv6
//! peers BEP 7), our own UDP tracker client (BEP 15), multitracker tiers
//! (BEP 12), and a tracker of our own (`server`: HTTP and UDP). The codecs and the UDP exchange are plain state machines; the
//! thread that does the talking is `client`.

pub mod client;
pub mod http;
pub mod server;
pub mod tiers;
pub mod udp;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::metainfo::InfoHash;
use crate::wire::PeerId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    None,
    Started,
    Completed,
    Stopped,
}

impl Event {
    /// BEP 15's numbering.
    pub fn udp_code(self) -> u32 {
        match self {
            Event::None => 0,
            Event::Completed => 1,
            Event::Started => 2,
            Event::Stopped => 3,
        }
    }

    /// The `event` query value, if any (BEP 3).
    pub fn http_name(self) -> Option<&'static str> {
        match self {
            Event::None => None,
            Event::Started => Some("started"),
            Event::Completed => Some("completed"),
            Event::Stopped => Some("stopped"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AnnounceRequest {
    pub info_hash: InfoHash,
    pub peer_id: PeerId,
    pub port: u16,
    pub uploaded: u64,
    pub downloaded: u64,
    pub left: u64,
    pub event: Event,
    pub num_want: u32,
    /// Identifies us to the tracker across IP changes (BEP 15 `key`).
    pub key: u32,
    /// Echoed back if an HTTP tracker gave us one.
    pub tracker_id: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceResponse {
    /// Seconds until the next regular announce.
    pub interval: u32,
    pub min_interval: Option<u32>,
    pub peers: Vec<SocketAddr>,
    pub seeders: Option<u32>,
    pub leechers: Option<u32>,
    pub tracker_id: Option<Vec<u8>>,
    pub warning: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrapeStats {
    pub seeders: u32,
    pub completed: u32,
    pub leechers: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TrackerError {
    #[error("tracker refused: {0}")]
    Failure(String),
    #[error("tracker response is not valid bencode")]
    NotBencode,
    #[error("tracker response is malformed: {0}")]
    Malformed(&'static str),
    #[error("UDP tracker packet is malformed: {0}")]
    BadPacket(&'static str),
    #[error("tracker did not answer after {0} attempts")]
    TimedOut(u32),
    #[error("unsupported tracker URL {0:?}")]
    UnsupportedUrl(String),
    #[error("tracker I/O: {0}")]
    Io(String),
}

/// Splits BEP 23 compact IPv4 peers (6 bytes each).
pub fn compact_v4(bytes: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    bytes.chunks_exact(6).map(|c| {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(c[0], c[1], c[2], c[3])),
            u16::from_be_bytes([c[4], c[5]]),
        )
    })
}

/// Splits BEP 7 compact IPv6 peers (18 bytes each).
pub fn compact_v6(bytes: &[u8]) -> impl Iterator<Item = SocketAddr> + '_ {
    bytes.chunks_exact(18).map(|c| {
        let mut ip = [0u8; 16];
        ip.copy_from_slice(&c[..16]);
        // `::ffff:a.b.c.d` is the IPv4 peer, known by that address.
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(ip)).to_canonical(),
            u16::from_be_bytes([c[16], c[17]]),
        )
    })
}

/// Peers worth dialling: no port 0, no unspecified or multicast addresses.
pub(crate) fn usable(addr: &SocketAddr) -> bool {
    addr.port() != 0 && !addr.ip().is_unspecified() && !addr.ip().is_multicast()
}
