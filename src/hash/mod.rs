//! SHA-1 for piece verification.
//!
//! Everything that hashes pieces goes through here. One message at a time
//! uses the `sha1` crate (with the CPU's SHA instructions when present).
//! Batches of equal-length pieces use 16-lane AVX-512 multi-buffer hashing
//! where the CPU has it, else pairs of pieces with their SHA-NI rounds
//! interleaved; both are faster per core than one piece at a time (see
//! `benches/` and `perf/RESULTS.md`).

#[cfg(target_arch = "x86_64")]
mod avx512;
#[cfg(target_arch = "x86_64")]
mod shani;

pub mod merkle;

use std::sync::OnceLock;

use sha1::{Digest, Sha1};

/// Fewest equal-length messages for which a 16-lane pass beats hashing
/// them one by one. A pass costs the same for 1 or 16 lanes, about 5.2
/// single-message SHA-NI hashes here (`cargo bench --bench hash`).
pub const MIN_BATCH: usize = 6;

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

/// Whether batches run on the multi-buffer path on this CPU.
pub fn multibuffer() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            avx512::available() && std::env::var_os("RINGTORRENT_NO_AVX512").is_none()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether pairs of messages run on the interleaved SHA-NI path.
fn shani_pairs() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            shani::available() && std::env::var_os("RINGTORRENT_NO_SHANI_PAIRS").is_none()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Whether two messages hash faster together than one after the other (the
/// interleaved SHA-NI path), so that a lone piece is worth holding back
/// a moment for a second one.
pub fn pairs_pay() -> bool {
    !multibuffer() && shani_pairs()
}

/// The hashing path batches take on this CPU, for reports.
pub fn batch_path() -> &'static str {
    if multibuffer() {
        "avx512-x16"
    } else if shani_pairs() {
        "sha-ni-x2"
    } else {
        "single"
    }
}

/// SHA-1 of each message. Messages of equal length are hashed 16 at a time
/// (AVX-512) or in pairs (SHA-NI) when the CPU allows it; the rest one by
/// one.
pub fn sha1_batch(msgs: &[&[u8]]) -> Vec<[u8; 20]> {
    let mut out = vec![[0u8; 20]; msgs.len()];
    if !multibuffer() && shani_pairs() && msgs.len() >= 2 {
        #[cfg(target_arch = "x86_64")]
        {
            sha1_pairs(msgs, &mut out);
            return out;
        }
    }
    if !multibuffer() || msgs.len() < MIN_BATCH {
        for (o, m) in out.iter_mut().zip(msgs) {
            *o = sha1(m);
        }
        return out;
    }
    // Group by length (pieces are all one length but the last).
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by_key(|&i| msgs[i].len());
    for group in order.chunk_by(|&a, &b| msgs[a].len() == msgs[b].len()) {
        for lanes in group.chunks(16) {
            if lanes.len() < MIN_BATCH {
                for &i in lanes {
                    out[i] = sha1(msgs[i]);
                }
                continue;
            }
            let batch: Vec<&[u8]> = lanes.iter().map(|&i| msgs[i]).collect();
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `multibuffer()` checked AVX-512F and AVX-512BW.
            let digests = unsafe { avx512::sha1_x16(&batch) };
            #[cfg(not(target_arch = "x86_64"))]
            let digests: Vec<[u8; 20]> = batch.iter().map(|m| sha1(m)).collect();
            for (&i, d) in lanes.iter().zip(digests) {
                out[i] = d;
            }
        }
    }
    out
}

/// Equal-length messages two at a time on SHA-NI, the odd one alone.
#[cfg(target_arch = "x86_64")]
fn sha1_pairs(msgs: &[&[u8]], out: &mut [[u8; 20]]) {
    let mut order: Vec<usize> = (0..msgs.len()).collect();
    order.sort_by_key(|&i| msgs[i].len());
    for group in order.chunk_by(|&a, &b| msgs[a].len() == msgs[b].len()) {
        let mut pairs = group.chunks_exact(shani::LANES);
        for pair in &mut pairs {
            let lanes: [&[u8]; shani::LANES] = std::array::from_fn(|k| msgs[pair[k]]);
            // SAFETY: `shani_pairs()` checked the CPU's SHA, SSSE3 and SSE4.1.
            let digests = unsafe { shani::sha1_lanes(lanes) };
            for (&i, d) in pair.iter().zip(digests) {
                out[i] = d;
            }
        }
        for &i in pairs.remainder() {
            out[i] = sha1(msgs[i]);
        }
    }
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

    #[test]
    fn batches_of_mixed_lengths_match_one_by_one() {
        let msgs: Vec<Vec<u8>> = (0..40)
            .map(|i| vec![i as u8; if i % 7 == 0 { 100 + i } else { 5000 }])
            .collect();
        let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
        let want: Vec<[u8; 20]> = refs.iter().map(|m| sha1(m)).collect();
        assert_eq!(sha1_batch(&refs), want);
        assert_eq!(sha1_batch(&refs[..2]), want[..2].to_vec());
    }
}
