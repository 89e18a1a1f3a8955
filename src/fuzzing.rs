//! Bodies of the fuzz targets (`fuzz/`), kept in the library so that the
//! regression inputs in `fuzz/regressions/` replay through the very same code
//! in the ordinary test suite (`tests/fuzz_regressions.rs`). Each function
//! panics only when it finds a bug.

use crate::bencode;
use crate::metainfo::Metainfo;

/// Decoding never panics; whatever decodes re-encodes canonically to bytes
/// that decode to the same value, and canonical input round-trips exactly.
pub fn bencode(data: &[u8]) {
    let Ok(v) = bencode::decode(data) else {
        return;
    };
    assert_eq!(v.raw, data, "a full decode covers the whole input");
    let canonical = bencode::encode(&v);
    let again = bencode::decode(&canonical).expect("canonical output decodes");
    assert_eq!(again.to_owned_value(), v.to_owned_value());
    assert_eq!(bencode::encode(&again), canonical, "encoding is stable");
}

/// Parsing never panics; an accepted torrent satisfies every invariant the
/// storage layer relies on.
pub fn metainfo(data: &[u8]) {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &m.info;
    assert_eq!(m.info_hash, crate::metainfo::InfoHash::of(&m.info_bytes));
    assert!(info.piece_length > 0);
    assert!(info.total_length > 0);
    let mut offset = 0u64;
    for f in &info.files {
        assert_eq!(f.offset, offset);
        offset += f.length;
        for c in &f.path {
            assert!(
                !c.is_empty() && c != "." && c != ".." && !c.contains('/') && !c.contains('\0')
            );
        }
    }
    assert_eq!(offset, info.total_length);
    assert_eq!(
        u64::from(info.piece_count()),
        info.total_length.div_ceil(u64::from(info.piece_length))
    );
    let last = info.piece_count() - 1;
    let spanned: u64 = info
        .block_spans(last, 0, info.piece_len(last))
        .map(|s| s.len)
        .sum();
    assert_eq!(spanned, u64::from(info.piece_len(last)));
}

/// Magnet parsing never panics.
pub fn magnet(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = crate::magnet::Magnet::parse(s);
    }
}
