//! SHA-1 of several equal-length messages at once with the SHA extensions
//! (SHA-NI), their rounds interleaved.
//!
//! One SHA-1 stream on SHA-NI is bound by the latency of `sha1rnds4`: each
//! group of four rounds waits for the one before. Two independent messages
//! hashed in lockstep fill those waits, so a pair costs little more than
//! one (`cargo bench --bench hash`). This is the multi-buffer path for CPUs
//! without AVX-512 (AMD's, and Intel's client cores); the structure follows
//! the SHA-NI reference sequence (Intel's "New Instructions Supporting the
//! Secure Hash Algorithm on Intel Architecture Processors").

use std::arch::x86_64::*;

/// Messages hashed together.
pub const LANES: usize = 2;

/// Whether this CPU can run [`sha1_lanes`].
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("sha")
        && std::arch::is_x86_feature_detected!("sse4.1")
        && std::arch::is_x86_feature_detected!("ssse3")
}

const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// One lane's registers: the state and the four message-schedule words.
#[derive(Clone, Copy)]
struct Lane {
    abcd: __m128i,
    e0: __m128i,
    e1: __m128i,
    w: [__m128i; 4],
}

/// Hashes `LANES` messages of equal length and returns their digests.
///
/// # Safety
/// The CPU must support SHA, SSE4.1 and SSSE3 ([`available`]).
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
pub unsafe fn sha1_lanes(msgs: [&[u8]; LANES]) -> [[u8; 20]; LANES] {
    let len = msgs[0].len();
    assert!(msgs.iter().all(|m| m.len() == len), "equal lengths");
    let full = len / 64;
    let rest = len % 64;
    // The padded tail (last partial block, 0x80, zeros, bit length): one or
    // two blocks, the same shape for every lane.
    let tail_blocks = if rest < 56 { 1 } else { 2 };
    let mut tails = [[0u8; 128]; LANES];
    for (t, m) in tails.iter_mut().zip(&msgs) {
        t[..rest].copy_from_slice(&m[full * 64..]);
        t[rest] = 0x80;
        let bits = (len as u64).wrapping_mul(8);
        t[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_be_bytes());
    }

    let mut abcd = [_mm_shuffle_epi32::<0x1B>(_mm_set_epi32(
        H0[3] as i32,
        H0[2] as i32,
        H0[1] as i32,
        H0[0] as i32,
    )); LANES];
    let mut e = [_mm_set_epi32(H0[4] as i32, 0, 0, 0); LANES];
    for b in 0..full {
        let blocks: [&[u8]; LANES] = std::array::from_fn(|i| &msgs[i][b * 64..b * 64 + 64]);
        // SAFETY: the caller vouched for the CPU features; each block is 64 bytes.
        unsafe { compress(&mut abcd, &mut e, blocks) };
    }
    for b in 0..tail_blocks {
        let blocks: [&[u8]; LANES] = std::array::from_fn(|i| &tails[i][b * 64..b * 64 + 64]);
        // SAFETY: as above.
        unsafe { compress(&mut abcd, &mut e, blocks) };
    }

    std::array::from_fn(|i| {
        let mut words = [0u32; 4];
        // SAFETY: `words` is 16 writable bytes; unaligned stores are allowed.
        unsafe {
            _mm_storeu_si128(
                words.as_mut_ptr().cast(),
                _mm_shuffle_epi32::<0x1B>(abcd[i]),
            )
        };
        let e4 = _mm_extract_epi32::<3>(e[i]) as u32;
        let mut out = [0u8; 20];
        for (o, w) in out.chunks_exact_mut(4).zip(words.iter().chain([&e4])) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    })
}

/// One 64-byte block of every lane. Each group of four rounds is done for
/// all lanes before the next, so the lanes' dependency chains overlap.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
#[inline]
unsafe fn compress(abcd: &mut [__m128i; LANES], e: &mut [__m128i; LANES], blocks: [&[u8]; LANES]) {
    // Big-endian words, first word in the high lane (SHA-NI's order).
    let mask = _mm_set_epi64x(0x0001_0203_0405_0607, 0x0809_0a0b_0c0d_0e0f);
    let saved = (*abcd, *e);
    let mut l: [Lane; LANES] = std::array::from_fn(|i| Lane {
        abcd: abcd[i],
        e0: e[i],
        e1: _mm_setzero_si128(),
        w: std::array::from_fn(|k| {
            // SAFETY: the block has 64 bytes, so bytes 16k..16k+16 exist.
            let v = unsafe { _mm_loadu_si128(blocks[i][k * 16..].as_ptr().cast()) };
            _mm_shuffle_epi8(v, mask)
        }),
    });

    // Rounds 0-3.
    for x in &mut l {
        x.e0 = _mm_add_epi32(x.e0, x.w[0]);
        x.e1 = x.abcd;
        x.abcd = _mm_sha1rnds4_epu32::<0>(x.abcd, x.e0);
    }
    // Rounds 4-7, 8-11, 12-15: the message schedule starts.
    for x in &mut l {
        x.e1 = _mm_sha1nexte_epu32(x.e1, x.w[1]);
        x.e0 = x.abcd;
        x.abcd = _mm_sha1rnds4_epu32::<0>(x.abcd, x.e1);
        x.w[0] = _mm_sha1msg1_epu32(x.w[0], x.w[1]);
    }
    for x in &mut l {
        x.e0 = _mm_sha1nexte_epu32(x.e0, x.w[2]);
        x.e1 = x.abcd;
        x.abcd = _mm_sha1rnds4_epu32::<0>(x.abcd, x.e0);
        x.w[1] = _mm_sha1msg1_epu32(x.w[1], x.w[2]);
        x.w[0] = _mm_xor_si128(x.w[0], x.w[2]);
    }
    // Rounds 12-67: the same step, rotating through the schedule words.
    macro_rules! step {
        ($g:literal, $f:literal) => {
            for x in &mut l {
                let a = $g % 4;
                let (b, c, d) = ((a + 1) % 4, (a + 2) % 4, (a + 3) % 4);
                if $g % 2 == 1 {
                    x.e1 = _mm_sha1nexte_epu32(x.e1, x.w[a]);
                    x.e0 = x.abcd;
                    x.w[b] = _mm_sha1msg2_epu32(x.w[b], x.w[a]);
                    x.abcd = _mm_sha1rnds4_epu32::<$f>(x.abcd, x.e1);
                } else {
                    x.e0 = _mm_sha1nexte_epu32(x.e0, x.w[a]);
                    x.e1 = x.abcd;
                    x.w[b] = _mm_sha1msg2_epu32(x.w[b], x.w[a]);
                    x.abcd = _mm_sha1rnds4_epu32::<$f>(x.abcd, x.e0);
                }
                x.w[d] = _mm_sha1msg1_epu32(x.w[d], x.w[a]);
                x.w[c] = _mm_xor_si128(x.w[c], x.w[a]);
            }
        };
    }
    step!(3, 0);
    step!(4, 0);
    step!(5, 1);
    step!(6, 1);
    step!(7, 1);
    step!(8, 1);
    step!(9, 1);
    step!(10, 2);
    step!(11, 2);
    step!(12, 2);
    step!(13, 2);
    step!(14, 2);
    step!(15, 3);
    step!(16, 3);
    // Rounds 68-79: the schedule winds down.
    for x in &mut l {
        x.e1 = _mm_sha1nexte_epu32(x.e1, x.w[1]);
        x.e0 = x.abcd;
        x.w[2] = _mm_sha1msg2_epu32(x.w[2], x.w[1]);
        x.abcd = _mm_sha1rnds4_epu32::<3>(x.abcd, x.e1);
        x.w[3] = _mm_xor_si128(x.w[3], x.w[1]);
    }
    for x in &mut l {
        x.e0 = _mm_sha1nexte_epu32(x.e0, x.w[2]);
        x.e1 = x.abcd;
        x.w[3] = _mm_sha1msg2_epu32(x.w[3], x.w[2]);
        x.abcd = _mm_sha1rnds4_epu32::<3>(x.abcd, x.e0);
    }
    for x in &mut l {
        x.e1 = _mm_sha1nexte_epu32(x.e1, x.w[3]);
        x.e0 = x.abcd;
        x.abcd = _mm_sha1rnds4_epu32::<3>(x.abcd, x.e1);
    }
    for i in 0..LANES {
        e[i] = _mm_sha1nexte_epu32(l[i].e0, saved.1[i]);
        abcd[i] = _mm_add_epi32(l[i].abcd, saved.0[i]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_sha1_crate_for_every_tail_shape() {
        if !available() {
            eprintln!("SKIPPED: no SHA extensions on this CPU");
            return;
        }
        for len in (0..300).chain([16384, 1 << 20, (1 << 20) + 55, 100_000]) {
            let a: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let b: Vec<u8> = (0..len).map(|i| (i * 13 + 5) as u8).collect();
            // SAFETY: the features were checked above.
            let got = unsafe { sha1_lanes([&a, &b]) };
            assert_eq!(
                got,
                [crate::hash::sha1(&a), crate::hash::sha1(&b)],
                "length {len}"
            );
        }
    }
}
