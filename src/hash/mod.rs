//! SHA-1 for piece verification.
//!
//! Everything that hashes pieces goes through here, so the implementation
//! (the `sha1` crate, which uses the CPU's SHA instructions when present) can
//! be swapped for a faster one in a single place.

use sha1::{Digest, Sha1};

/// SHA-1 of `data`.
pub fn sha1(data: &[u8]) -> [u8; 20] {
    Sha1::digest(data).into()
}

/// SHA-1 of the concatenation of `parts`, for pieces that arrive in blocks.
pub fn sha1_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> [u8; 20] {
    let mut h = Sha1::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_vectors() {
        assert_eq!(
            data_encoding::HEXLOWER.encode(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(sha1_parts([&b"a"[..], b"bc"]), sha1(b"abc"));
    }
}
