//! The HTTP tracker protocol: building announce URLs and parsing replies.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_encode};

use super::{
    AnnounceRequest, AnnounceResponse, ScrapeStats, TrackerError, compact_v4, compact_v6, usable,
};
use crate::bencode::{self, Value};
use crate::metainfo::InfoHash;

/// BEP 3 says to escape everything outside `0-9a-zA-Z.-_~`.
const QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');

/// Tracker replies larger than this are refused (a peer list of thousands
/// fits in a few hundred KiB).
pub const MAX_RESPONSE: usize = 4 * 1024 * 1024;

pub fn announce_url(base: &str, req: &AnnounceRequest) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut url = format!(
        "{base}{sep}info_hash={}&peer_id={}&port={}&uploaded={}&downloaded={}&left={}&compact=1&numwant={}&key={:08x}",
        percent_encode(&req.info_hash.0, QUERY),
        percent_encode(&req.peer_id.0, QUERY),
        req.port,
        req.uploaded,
        req.downloaded,
        req.left,
        req.num_want,
        req.key,
    );
    if let Some(e) = req.event.http_name() {
        url.push_str("&event=");
        url.push_str(e);
    }
    if let Some(id) = &req.tracker_id {
        url.push_str("&trackerid=");
        url.extend(percent_encode(id, QUERY));
    }
    url
}

/// The scrape URL for an announce URL, if it has one (BEP 48: the last path
/// component must start with `announce`).
pub fn scrape_url(announce: &str, info_hash: &InfoHash) -> Option<String> {
    let (path, query) = match announce.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (announce, None),
    };
    let slash = path.rfind('/')?;
    let last = &path[slash + 1..];
    let rest = last.strip_prefix("announce")?;
    let mut url = format!("{}/scrape{rest}", &path[..slash]);
    url.push('?');
    if let Some(q) = query {
        url.push_str(q);
        url.push('&');
    }
    url.push_str("info_hash=");
    url.extend(percent_encode(&info_hash.0, QUERY));
    Some(url)
}

fn dict_of(body: &[u8]) -> Result<Value<'_>, TrackerError> {
    let limits = bencode::Limits {
        max_depth: 16,
        max_values: 1_000_000,
    };
    let v = bencode::decode_with(body, limits).map_err(|_| TrackerError::NotBencode)?;
    if v.as_dict().is_none() {
        return Err(TrackerError::Malformed("not a dictionary"));
    }
    if let Some(reason) = v.get(b"failure reason") {
        let text = String::from_utf8_lossy(reason.as_bytes().unwrap_or(b"(no reason given)"));
        return Err(TrackerError::Failure(text.chars().take(300).collect()));
    }
    Ok(v)
}

fn u32_field(v: &Value<'_>, key: &[u8]) -> Option<u32> {
    v.get(key)
        .and_then(Value::as_int)
        .and_then(|i| u32::try_from(i).ok())
}

pub fn parse_announce(body: &[u8]) -> Result<AnnounceResponse, TrackerError> {
    let v = dict_of(body)?;
    let interval =
        u32_field(&v, b"interval").ok_or(TrackerError::Malformed("no valid `interval`"))?;
    let mut peers = Vec::new();
    if let Some(p) = v.get(b"peers") {
        match (p.as_bytes(), p.as_list()) {
            (Some(compact), _) => {
                if compact.len() % 6 != 0 {
                    return Err(TrackerError::Malformed(
                        "compact `peers` is not a multiple of 6 bytes",
                    ));
                }
                peers.extend(compact_v4(compact));
            }
            (_, Some(list)) => {
                for entry in list {
                    let ip = entry
                        .get(b"ip")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok());
                    let port = entry
                        .get(b"port")
                        .and_then(Value::as_int)
                        .and_then(|p| u16::try_from(p).ok());
                    if let (Some(ip), Some(port)) = (ip, port) {
                        peers.push(std::net::SocketAddr::new(ip, port));
                    }
                }
            }
            _ => {
                return Err(TrackerError::Malformed(
                    "`peers` is neither a string nor a list",
                ));
            }
        }
    }
    if let Some(p6) = v.get(b"peers6").and_then(Value::as_bytes) {
        if p6.len() % 18 != 0 {
            return Err(TrackerError::Malformed(
                "`peers6` is not a multiple of 18 bytes",
            ));
        }
        peers.extend(compact_v6(p6));
    }
    peers.retain(usable);
    Ok(AnnounceResponse {
        interval,
        min_interval: u32_field(&v, b"min interval"),
        peers,
        seeders: u32_field(&v, b"complete"),
        leechers: u32_field(&v, b"incomplete"),
        tracker_id: v
            .get(b"tracker id")
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec),
        warning: v
            .get(b"warning message")
            .and_then(Value::as_bytes)
            .map(|w| String::from_utf8_lossy(w).chars().take(300).collect()),
    })
}

pub fn parse_scrape(body: &[u8], info_hash: &InfoHash) -> Result<ScrapeStats, TrackerError> {
    let v = dict_of(body)?;
    let files = v
        .get(b"files")
        .ok_or(TrackerError::Malformed("no `files`"))?;
    if files.as_dict().is_none() {
        return Err(TrackerError::Malformed("`files` is not a dictionary"));
    }
    // A tracker leaves out the torrents it knows nothing of: nobody there.
    let Some(entry) = files.get(&info_hash.0) else {
        return Ok(ScrapeStats::default());
    };
    Ok(ScrapeStats {
        seeders: u32_field(entry, b"complete").unwrap_or(0),
        completed: u32_field(entry, b"downloaded").unwrap_or(0),
        leechers: u32_field(entry, b"incomplete").unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::super::Event;
    use super::*;
    use crate::wire::PeerId;

    fn req() -> AnnounceRequest {
        AnnounceRequest {
            info_hash: InfoHash([0xab; 20]),
            peer_id: PeerId(*b"-RT0100-abcdefghijkl"),
            port: 6881,
            uploaded: 1,
            downloaded: 2,
            left: 3,
            event: Event::Started,
            num_want: 50,
            key: 0xdead,
            tracker_id: Some(b"t 1".to_vec()),
        }
    }

    #[test]
    fn announce_url_escapes_binary() {
        let url = announce_url("http://t.example/announce?passkey=x", &req());
        assert!(
            url.starts_with("http://t.example/announce?passkey=x&info_hash=%AB%AB"),
            "{url}"
        );
        assert!(url.contains(
            "&peer_id=-RT0100-abcdefghijkl&port=6881&uploaded=1&downloaded=2&left=3&compact=1"
        ));
        assert!(url.contains("&event=started"));
        assert!(url.ends_with("&trackerid=t%201"));
    }

    #[test]
    fn scrape_urls() {
        let h = InfoHash([1; 20]);
        assert_eq!(
            scrape_url("http://a/announce", &h).unwrap(),
            format!("http://a/scrape?info_hash={}", "%01".repeat(20))
        );
        assert_eq!(
            scrape_url("http://a/x/announce.php?k=1", &h).unwrap(),
            format!("http://a/x/scrape.php?k=1&info_hash={}", "%01".repeat(20))
        );
        assert_eq!(scrape_url("http://a/a", &h), None);
    }

    #[test]
    fn compact_dict_and_v6_peers() {
        let body = b"d8:completei5e10:incompletei3e8:intervali1800e12:min intervali60e5:peers12:\x7f\x00\x00\x01\x1a\xe1\x0a\x00\x00\x02\x00\x506:peers618:\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x1a\xe210:tracker id2:ide";
        let r = parse_announce(body).unwrap();
        assert_eq!(r.interval, 1800);
        assert_eq!(r.min_interval, Some(60));
        assert_eq!((r.seeders, r.leechers), (Some(5), Some(3)));
        assert_eq!(
            r.peers,
            vec![
                "127.0.0.1:6881".parse().unwrap(),
                "10.0.0.2:80".parse().unwrap(),
                "[::1]:6882".parse().unwrap()
            ]
        );
        assert_eq!(r.tracker_id.as_deref(), Some(&b"id"[..]));
        let body = b"d8:intervali60e5:peersld2:ip9:127.0.0.14:porti7000eed2:ip3:bad4:porti1eed2:ip3:::14:porti0eeee";
        assert_eq!(
            parse_announce(body).unwrap().peers,
            vec!["127.0.0.1:7000".parse().unwrap()]
        );
    }

    #[test]
    fn failures_and_garbage() {
        assert_eq!(
            parse_announce(b"d14:failure reason12:unregisterede"),
            Err(TrackerError::Failure("unregistered".into()))
        );
        assert_eq!(parse_announce(b"<html>"), Err(TrackerError::NotBencode));
        assert_eq!(
            parse_announce(b"le"),
            Err(TrackerError::Malformed("not a dictionary"))
        );
        assert_eq!(
            parse_announce(b"d5:peers0:e"),
            Err(TrackerError::Malformed("no valid `interval`"))
        );
        assert!(matches!(
            parse_announce(b"d8:intervali1e5:peers5:abcdee"),
            Err(TrackerError::Malformed(_))
        ));
    }

    #[test]
    fn scrape_reply() {
        let h = InfoHash([b'a'; 20]);
        let body =
            b"d5:filesd20:aaaaaaaaaaaaaaaaaaaad8:completei2e10:downloadedi9e10:incompletei4eeee";
        assert_eq!(
            parse_scrape(body, &h).unwrap(),
            ScrapeStats {
                seeders: 2,
                completed: 9,
                leechers: 4
            }
        );
        // Left out: the tracker knows nobody in that swarm.
        assert_eq!(
            parse_scrape(body, &InfoHash([0; 20])).unwrap(),
            ScrapeStats::default()
        );
        assert!(parse_scrape(b"d5:filesi1ee", &h).is_err());
        assert!(parse_scrape(b"de", &h).is_err());
    }
}
