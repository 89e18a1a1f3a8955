use std::fmt;

/// A BitTorrent info-hash as peers exchange it: SHA-1 of the bencoded
/// `info` dictionary (v1), or its SHA-256 cut to 20 bytes (v2).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InfoHash(pub [u8; 20]);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoHashParseError {
    #[error("info-hash must be 40 hex or 32 base32 characters, got {0}")]
    Length(usize),
    #[error("info-hash is not valid hex")]
    Hex,
    #[error("info-hash is not valid base32")]
    Base32,
}

impl InfoHash {
    pub fn of(info_bytes: &[u8]) -> InfoHash {
        InfoHash(crate::hash::sha1(info_bytes))
    }

    /// A v2 info-hash (SHA-256) as the wire, trackers and the DHT carry
    /// it: its first 20 bytes (BEP 52).
    pub fn truncated(v2: &[u8; 32]) -> InfoHash {
        let mut h = [0u8; 20];
        h.copy_from_slice(&v2[..20]);
        InfoHash(h)
    }

    /// The hash a torrent is known by: SHA-1 of its `info` bytes when it
    /// has v1 piece hashes, else its v2 hash (`v2`, SHA-256 of the same
    /// bytes) cut to 20 bytes.
    pub fn known_by(info_bytes: &[u8], has_v1: bool, v2: Option<&[u8; 32]>) -> InfoHash {
        match v2 {
            Some(v2) if !has_v1 => InfoHash::truncated(v2),
            _ => InfoHash::of(info_bytes),
        }
    }

    pub fn to_hex(&self) -> String {
        data_encoding::HEXLOWER.encode(&self.0)
    }

    /// Parses the 40-character hex or 32-character base32 form (as magnet
    /// links carry it), case-insensitively.
    pub fn parse(s: &str) -> Result<InfoHash, InfoHashParseError> {
        let upper = s.to_ascii_uppercase();
        let bytes = match s.len() {
            40 => data_encoding::HEXUPPER
                .decode(upper.as_bytes())
                .map_err(|_| InfoHashParseError::Hex)?,
            32 => data_encoding::BASE32_NOPAD
                .decode(upper.as_bytes())
                .map_err(|_| InfoHashParseError::Base32)?,
            n => return Err(InfoHashParseError::Length(n)),
        };
        let mut out = [0u8; 20];
        out.copy_from_slice(&bytes);
        Ok(InfoHash(out))
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({})", self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_base32_agree() {
        let h = InfoHash::parse("c12fe1c06bba254a9dc9f519b335aa7c1367a88a").unwrap();
        let b = InfoHash::parse("YEX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK").unwrap();
        assert_eq!(h, b);
        assert_eq!(h.to_hex(), "c12fe1c06bba254a9dc9f519b335aa7c1367a88a");
        assert_eq!(
            InfoHash::parse("C12FE1C06BBA254A9DC9F519B335AA7C1367A88A").unwrap(),
            h
        );
        assert_eq!(
            InfoHash::parse("yex6dqdlxisuvhoj6um3gnnkpqjwpkek").unwrap(),
            h
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(InfoHash::parse("abc"), Err(InfoHashParseError::Length(3)));
        assert_eq!(
            InfoHash::parse("g12fe1c06bba254a9dc9f519b335aa7c1367a88a"),
            Err(InfoHashParseError::Hex)
        );
        assert_eq!(
            InfoHash::parse("1EX6DQDLXISUVHOJ6UM3GNNKPQJWPKEK"),
            Err(InfoHashParseError::Base32)
        );
    }
}
