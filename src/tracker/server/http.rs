//! The HTTP side: `GET /announce?...` (BEP 3, compact peers per BEP 23,
//! IPv6 peers in `peers6` per BEP 7) and `GET /scrape?info_hash=...`
//! (BEP 48), answered in bencode. The requester's address is the
//! connection's; an `ip` parameter is ignored (it would let anyone announce
//! someone else).

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use super::{Announce, Tracker};
use crate::bencode::Encoder;
use crate::metainfo::InfoHash;
use crate::tracker::Event;

/// Info-hashes answered per scrape.
const MAX_SCRAPE: usize = 100;

/// The body answering request target `target` (path and query) from
/// `from`; `None` for a path we do not serve.
pub fn respond(
    tracker: &mut Tracker,
    now: Instant,
    from: SocketAddr,
    target: &str,
) -> Option<Vec<u8>> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let params: Vec<(&str, Vec<u8>)> = query
        .split('&')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k, percent_encoding::percent_decode_str(v).collect())
        })
        .collect();
    match path.trim_end_matches('/') {
        "/announce" => Some(announce(tracker, now, from, &params)),
        "/scrape" => {
            let hashes: Vec<InfoHash> = params
                .iter()
                .filter(|(k, _)| *k == "info_hash")
                .filter_map(|(_, v)| <[u8; 20]>::try_from(v.as_slice()).ok().map(InfoHash))
                .take(MAX_SCRAPE)
                .collect();
            let entries = tracker.scrape(&hashes);
            let mut out = Vec::new();
            let mut e = Encoder::new(&mut out);
            e.begin_dict().bytes(b"files").begin_dict();
            // Keys in order: a bencoded dictionary is sorted.
            let mut pairs: Vec<_> = hashes.iter().zip(entries).collect();
            pairs.sort_by_key(|(h, _)| h.0);
            pairs.dedup_by_key(|(h, _)| h.0);
            for (h, s) in pairs {
                e.bytes(&h.0).begin_dict();
                e.bytes(b"complete").int(i64::from(s.seeders));
                e.bytes(b"downloaded").int(i64::from(s.completed));
                e.bytes(b"incomplete").int(i64::from(s.leechers));
                e.end();
            }
            e.end().end();
            Some(out)
        }
        _ => None,
    }
}

type Params<'a> = [(&'a str, Vec<u8>)];

fn announce(tracker: &mut Tracker, now: Instant, from: SocketAddr, params: &Params<'_>) -> Vec<u8> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_slice())
    };
    let number = |name: &str| -> Option<u64> { std::str::from_utf8(get(name)?).ok()?.parse().ok() };
    let Some(info_hash) = get("info_hash").and_then(|v| <[u8; 20]>::try_from(v).ok()) else {
        return failure("missing or malformed info_hash");
    };
    let Some(port) = number("port").and_then(|p| u16::try_from(p).ok()) else {
        return failure("missing or malformed port");
    };
    let event = match get("event") {
        Some(b"started") => Event::Started,
        Some(b"completed") => Event::Completed,
        Some(b"stopped") => Event::Stopped,
        _ => Event::None,
    };
    let a = Announce {
        info_hash: InfoHash(info_hash),
        addr: SocketAddr::new(from.ip().to_canonical(), port),
        left: number("left").unwrap_or(1),
        event,
        numwant: number("numwant").map(|n| n.min(u64::from(u32::MAX)) as u32),
    };
    let r = match tracker.announce(now, &a) {
        Ok(r) => r,
        Err(e) => return failure(&e.to_string()),
    };
    let (mut v4, mut v6) = (Vec::new(), Vec::new());
    for p in &r.peers {
        match p.ip() {
            IpAddr::V4(ip) => {
                v4.extend_from_slice(&ip.octets());
                v4.extend_from_slice(&p.port().to_be_bytes());
            }
            IpAddr::V6(ip) => {
                v6.extend_from_slice(&ip.octets());
                v6.extend_from_slice(&p.port().to_be_bytes());
            }
        }
    }
    let mut out = Vec::with_capacity(64 + v4.len() + v6.len());
    let mut e = Encoder::new(&mut out);
    e.begin_dict();
    e.bytes(b"complete").int(i64::from(r.seeders));
    e.bytes(b"incomplete").int(i64::from(r.leechers));
    e.bytes(b"interval").int(i64::from(r.interval));
    e.bytes(b"min interval").int(i64::from(r.interval / 2));
    e.bytes(b"peers").bytes(&v4);
    if !v6.is_empty() {
        e.bytes(b"peers6").bytes(&v6);
    }
    e.end();
    out
}

fn failure(reason: &str) -> Vec<u8> {
    let mut out = Vec::new();
    Encoder::new(&mut out)
        .begin_dict()
        .bytes(b"failure reason")
        .bytes(reason.as_bytes())
        .end();
    out
}
