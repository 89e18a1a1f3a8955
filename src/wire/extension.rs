//! The BEP 10 extension handshake.

use std::net::IpAddr;

use super::WireError;
use crate::bencode::{self, Encoder};

/// What a peer tells us in its extension handshake, and what we tell it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtHandshake {
    /// Extension name to the id the sender wants to receive it under
    /// (0 disables it).
    pub m: Vec<(String, u8)>,
    /// Client name and version.
    pub v: Option<String>,
    /// How many outstanding requests the sender accepts.
    pub reqq: Option<u32>,
    /// The sender's listen port.
    pub p: Option<u16>,
    /// Our address as the sender sees it.
    pub yourip: Option<IpAddr>,
    /// Size of the torrent's info dictionary (BEP 9), when the sender has it.
    pub metadata_size: Option<u64>,
}

/// The ids we want extension messages addressed to us under. Each side picks
/// its own numbers, so these only matter for what arrives.
pub const UT_METADATA: u8 = 1;
pub const UT_PEX: u8 = 2;

impl ExtHandshake {
    /// The id the peer wants `name` sent under, if it speaks it.
    pub fn id_of(&self, name: &str) -> Option<u8> {
        self.m
            .iter()
            .find(|(n, id)| n == name && *id != 0)
            .map(|&(_, id)| id)
    }
}

impl ExtHandshake {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96);
        let mut e = Encoder::new(&mut out);
        e.begin_dict();
        // Keys in sorted order: m, metadata_size, p, reqq, v, yourip.
        e.bytes(b"m").begin_dict();
        let mut m = self.m.clone();
        m.sort();
        for (name, id) in &m {
            e.bytes(name.as_bytes()).int(i64::from(*id));
        }
        e.end();
        if let Some(size) = self.metadata_size.and_then(|s| i64::try_from(s).ok()) {
            e.bytes(b"metadata_size").int(size);
        }
        if let Some(p) = self.p {
            e.bytes(b"p").int(i64::from(p));
        }
        if let Some(q) = self.reqq {
            e.bytes(b"reqq").int(i64::from(q));
        }
        if let Some(v) = &self.v {
            e.bytes(b"v").bytes(v.as_bytes());
        }
        match self.yourip {
            Some(IpAddr::V4(ip)) => {
                e.bytes(b"yourip").bytes(&ip.octets());
            }
            Some(IpAddr::V6(ip)) => {
                e.bytes(b"yourip").bytes(&ip.octets());
            }
            None => {}
        }
        e.end();
        out
    }

    /// Parses a peer's handshake. Only the outer shape is mandatory; fields
    /// with the wrong type are ignored, as peers in the wild vary.
    pub fn decode(payload: &[u8]) -> Result<ExtHandshake, WireError> {
        let limits = bencode::Limits {
            max_depth: 8,
            max_values: 4096,
        };
        let v = bencode::decode_with(payload, limits)
            .map_err(|_| WireError::BadExtHandshake("not bencode"))?;
        let d = v
            .as_dict()
            .ok_or(WireError::BadExtHandshake("not a dictionary"))?;
        let mut out = ExtHandshake::default();
        if let Some(m) = d.get(b"m").and_then(|m| m.as_dict()) {
            for (k, id) in m.iter() {
                if let (Ok(name), Some(id)) = (std::str::from_utf8(k), id.as_int())
                    && let Ok(id) = u8::try_from(id)
                {
                    out.m.push((name.to_owned(), id));
                }
            }
        }
        out.v = d
            .get(b"v")
            .and_then(|v| v.as_str())
            .map(|s| s.chars().take(64).collect());
        out.reqq = d
            .get(b"reqq")
            .and_then(|v| v.as_int())
            .and_then(|q| u32::try_from(q).ok());
        out.p = d
            .get(b"p")
            .and_then(|v| v.as_int())
            .and_then(|p| u16::try_from(p).ok());
        out.metadata_size = d
            .get(b"metadata_size")
            .and_then(|v| v.as_int())
            .and_then(|s| u64::try_from(s).ok());
        out.yourip = d
            .get(b"yourip")
            .and_then(|v| v.as_bytes())
            .and_then(|b| match b.len() {
                4 => <[u8; 4]>::try_from(b).ok().map(IpAddr::from),
                16 => <[u8; 16]>::try_from(b).ok().map(IpAddr::from),
                _ => None,
            });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let h = ExtHandshake {
            m: vec![("ut_pex".into(), 2), ("ut_metadata".into(), 1)],
            v: Some("ringtorrent 0.1.0".into()),
            reqq: Some(2000),
            p: Some(6881),
            yourip: Some("10.1.2.3".parse().unwrap()),
            metadata_size: Some(31_337),
        };
        let bytes = h.encode();
        // Canonical bencode: it decodes and re-encodes to itself.
        let v = bencode::decode(&bytes).unwrap();
        assert_eq!(bencode::encode(&v), bytes);
        let mut back = ExtHandshake::decode(&bytes).unwrap();
        back.m.sort();
        let mut want = h.clone();
        want.m.sort();
        assert_eq!(back, want);
    }

    #[test]
    fn tolerates_odd_fields_and_rejects_garbage() {
        let h = ExtHandshake::decode(b"d1:md6:ut_pexi999ee4:reqqi-1e1:vi5e6:yourip3:abce").unwrap();
        assert_eq!(h, ExtHandshake::default());
        assert_eq!(
            ExtHandshake::decode(b"le"),
            Err(WireError::BadExtHandshake("not a dictionary"))
        );
        assert_eq!(
            ExtHandshake::decode(b"d"),
            Err(WireError::BadExtHandshake("not bencode"))
        );
    }
}
