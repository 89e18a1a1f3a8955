//! Magnet URIs (BEP 9): `magnet:?xt=urn:btih:<hash>&dn=<name>&tr=<url>&x.pe=<peer>`,
//! and BEP 52's `xt=urn:btmh:1220<SHA-256>` for v2 torrents.

use std::net::SocketAddr;

use crate::metainfo::{InfoHash, InfoHashParseError, Layerless};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Magnet {
    /// The hash the swarm knows: `btih`, or for a v2-only link its `btmh`
    /// SHA-256 cut to 20 bytes.
    pub info_hash: InfoHash,
    /// `btmh`: the v2 info-hash the metadata must hash to (SHA-256).
    pub info_hash_v2: Option<[u8; 32]>,
    /// `dn`: a display name until the metadata arrives.
    pub display_name: Option<String>,
    /// `tr`: trackers, each its own tier, in the order given.
    pub trackers: Vec<String>,
    /// `x.pe`: peers to contact directly.
    pub peers: Vec<PeerHint>,
    /// The `info` dictionary when it is known already: a v2 torrent file
    /// without its piece layers, resolved like a link (only the layers
    /// are fetched).
    pub known_info: Option<std::sync::Arc<[u8]>>,
}

/// A peer address from `x.pe`, which may name a host rather than an IP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerHint {
    Addr(SocketAddr),
    Host { host: String, port: u16 },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MagnetError {
    #[error("not a magnet URI (expected it to start with `magnet:?`)")]
    NotMagnet,
    #[error("magnet URI has no `xt=urn:btih:` or `xt=urn:btmh:` info-hash")]
    MissingInfoHash,
    #[error("magnet `xt=urn:btmh:` is not a SHA-256 multihash (`1220` and 64 hex digits)")]
    BadV2Hash,
    #[error("magnet URI has two different `urn:btih` or `urn:btmh` info-hashes")]
    ConflictingInfoHashes,
    #[error("magnet `xt`")]
    InfoHash(#[from] InfoHashParseError),
    #[error("magnet parameter `{0}` is not valid percent-encoded UTF-8")]
    Encoding(String),
    #[error("magnet `x.pe` {0:?} is not host:port")]
    Peer(String),
}

impl Magnet {
    pub fn parse(uri: &str) -> Result<Magnet, MagnetError> {
        let query = strip_prefix_ignore_case(uri, "magnet:?").ok_or(MagnetError::NotMagnet)?;
        let mut info_hash = None;
        let mut v2 = None;
        let mut display_name = None;
        let mut trackers = Vec::new();
        let mut peers = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
            // Some writers number repeated keys: `tr.1=...&tr.2=...`.
            let base = match key.split_once('.') {
                Some((b, n)) if n.bytes().all(|c| c.is_ascii_digit()) => b,
                _ => key,
            };
            let value =
                || decode(raw, base == "dn").ok_or_else(|| MagnetError::Encoding(key.to_owned()));
            match base {
                "xt" => {
                    let v = value()?;
                    if let Some(h) = strip_prefix_ignore_case(&v, "urn:btih:") {
                        let h = InfoHash::parse(h)?;
                        if info_hash.is_some_and(|prev| prev != h) {
                            return Err(MagnetError::ConflictingInfoHashes);
                        }
                        info_hash = Some(h);
                    } else if let Some(h) = strip_prefix_ignore_case(&v, "urn:btmh:") {
                        let h = multihash_sha256(h).ok_or(MagnetError::BadV2Hash)?;
                        if v2.is_some_and(|prev| prev != h) {
                            return Err(MagnetError::ConflictingInfoHashes);
                        }
                        v2 = Some(h);
                    }
                }
                "dn" => display_name = Some(value()?),
                "tr" => trackers.push(value()?),
                "x.pe" => peers.push(peer(&value()?)?),
                _ => {}
            }
        }
        let info_hash = match (info_hash, &v2) {
            (Some(h), _) => h,
            (None, Some(v2)) => InfoHash::truncated(v2),
            (None, None) => return Err(MagnetError::MissingInfoHash),
        };
        Ok(Magnet {
            info_hash,
            info_hash_v2: v2,
            known_info: None,
            display_name,
            trackers,
            peers,
        })
    }
}

impl From<Layerless> for Magnet {
    fn from(l: Layerless) -> Magnet {
        Magnet {
            info_hash: InfoHash::truncated(&l.info_hash_v2),
            info_hash_v2: Some(l.info_hash_v2),
            display_name: None,
            trackers: l.tiers.into_iter().flatten().collect(),
            peers: Vec::new(),
            known_info: Some(l.info.into()),
        }
    }
}

/// A BEP 52 `btmh` value: the multihash of a SHA-256 digest, in hex.
fn multihash_sha256(s: &str) -> Option<[u8; 32]> {
    let hex = s.strip_prefix("1220")?;
    if hex.len() != 64 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

impl Magnet {
    /// What to call the torrent until its metadata arrives.
    pub fn name(&self) -> String {
        self.display_name
            .clone()
            .unwrap_or_else(|| self.info_hash.to_hex())
    }

    /// The trackers as BEP 12 tiers: each its own, as libtorrent does.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        self.trackers.iter().map(|t| vec![t.clone()]).collect()
    }

    /// The `x.pe` peers as addresses, host names resolved (those that do
    /// not resolve are left out, with a warning).
    pub fn peer_addrs(&self) -> Vec<SocketAddr> {
        use std::net::ToSocketAddrs;
        let mut out = Vec::new();
        for p in &self.peers {
            match p {
                PeerHint::Addr(a) => out.push(*a),
                PeerHint::Host { host, port } => match (host.as_str(), *port).to_socket_addrs() {
                    Ok(addrs) => out.extend(addrs),
                    Err(e) => log::warn!("magnet peer {host}:{port}: {e}"),
                },
            }
        }
        out
    }
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Percent-decodes a query value; `plus_is_space` for the display name, where
/// many writers encode spaces as `+`.
fn decode(raw: &str, plus_is_space: bool) -> Option<String> {
    let raw = if plus_is_space {
        raw.replace('+', " ")
    } else {
        raw.to_owned()
    };
    percent_encoding::percent_decode_str(&raw)
        .decode_utf8()
        .ok()
        .map(|s| s.into_owned())
}

fn peer(s: &str) -> Result<PeerHint, MagnetError> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(PeerHint::Addr(addr));
    }
    let bad = || MagnetError::Peer(s.to_owned());
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let valid_host = !host.is_empty()
        && host
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.');
    if !valid_host {
        return Err(bad());
    }
    Ok(PeerHint::Host {
        host: host.to_owned(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "c12fe1c06bba254a9dc9f519b335aa7c1367a88a";

    #[test]
    fn parses_all_fields() {
        let uri = format!(
            "magnet:?xt=urn:btih:{HEX}&dn=Big+Buck%20Bunny&tr=udp%3A%2F%2Ft.example%3A6969&tr.1=http://a/ann&x.pe=10.0.0.1:6881&x.pe=[::1]:7000&x.pe=seed.example:51413"
        );
        let m = Magnet::parse(&uri).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert_eq!(m.display_name.as_deref(), Some("Big Buck Bunny"));
        assert_eq!(m.trackers, vec!["udp://t.example:6969", "http://a/ann"]);
        assert_eq!(
            m.peers,
            vec![
                PeerHint::Addr("10.0.0.1:6881".parse().unwrap()),
                PeerHint::Addr("[::1]:7000".parse().unwrap()),
                PeerHint::Host {
                    host: "seed.example".into(),
                    port: 51413
                },
            ]
        );
    }

    #[test]
    fn base32_hash_and_case() {
        let m = Magnet::parse("MAGNET:?xt=URN:BTIH:YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
    }

    #[test]
    fn a_v2_link_is_known_by_its_hash_cut_to_20_bytes() {
        let v2 = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
        let m = Magnet::parse(&format!("magnet:?xt=urn:btmh:1220{v2}&dn=x")).unwrap();
        assert_eq!(m.info_hash.to_hex(), v2[..40]);
        assert_eq!(m.info_hash_v2.map(|h| h[31]), Some(0x90));
        // A hybrid's link names both: the v1 swarm is the one joined.
        let m = Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btmh:1220{v2}")).unwrap();
        assert_eq!(m.info_hash.to_hex(), HEX);
        assert!(m.info_hash_v2.is_some());
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(Magnet::parse("http://x"), Err(MagnetError::NotMagnet));
        assert_eq!(
            Magnet::parse("magnet:?dn=x"),
            Err(MagnetError::MissingInfoHash)
        );
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btmh:1220abcd"),
            Err(MagnetError::BadV2Hash)
        );
        // A SHA-1 multihash (0x11) is not a v2 info-hash.
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btmh:1114{HEX}")),
            Err(MagnetError::BadV2Hash)
        );
        assert_eq!(
            Magnet::parse("magnet:?xt=urn:btih:abc"),
            Err(MagnetError::InfoHash(InfoHashParseError::Length(3)))
        );
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&dn=%FF")),
            Err(MagnetError::Encoding(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=nohost")),
            Err(MagnetError::Peer(_))
        ));
        assert!(matches!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&x.pe=a b:1")),
            Err(MagnetError::Peer(_))
        ));
        let other = "0000000000000000000000000000000000000000";
        assert_eq!(
            Magnet::parse(&format!("magnet:?xt=urn:btih:{HEX}&xt=urn:btih:{other}")),
            Err(MagnetError::ConflictingInfoHashes)
        );
    }
}
