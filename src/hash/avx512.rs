//! SHA-1 of up to 16 equal-length messages at once, one per 32-bit lane of
//! AVX-512 registers ("multi-buffer" hashing).
//!
//! SHA-1 is serial within a message, so one stream cannot use wide vectors;
//! sixteen independent pieces can. Each round costs the same few vector
//! instructions for all sixteen (ternary logic for the round function,
//! native rotates), so a batch of pieces hashes several times faster than one
//! piece at a time with the SHA instructions.

use std::arch::x86_64::*;

/// Whether this CPU can run [`sha1_x16`].
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bw")
}

const K: [u32; 4] = [0x5A82_7999, 0x6ED9_EBA1, 0x8F1B_BCDC, 0xCA62_C1D6];
const H0: [u32; 5] = [
    0x6745_2301,
    0xEFCD_AB89,
    0x98BA_DCFE,
    0x1032_5476,
    0xC3D2_E1F0,
];

/// Hashes `msgs` (1 to 16 slices of equal length) and returns one digest per
/// message.
///
/// # Safety
/// The CPU must support AVX-512F and AVX-512BW ([`available`]).
#[target_feature(enable = "avx512f,avx512bw")]
pub unsafe fn sha1_x16(msgs: &[&[u8]]) -> Vec<[u8; 20]> {
    let n = msgs.len();
    assert!((1..=16).contains(&n), "1 to 16 messages");
    let len = msgs[0].len();
    assert!(msgs.iter().all(|m| m.len() == len), "equal lengths");

    // Lanes past `n` repeat message 0; their results are dropped.
    let lanes: [&[u8]; 16] = std::array::from_fn(|i| msgs[if i < n { i } else { 0 }]);

    // The padded tail (the last partial block, 0x80, zeros, bit length) of
    // every lane: one or two blocks, the same shape for all lanes.
    let full = len / 64;
    let rest = len % 64;
    let tail_blocks = if rest < 56 { 1 } else { 2 };
    let mut tails = [[0u8; 128]; 16];
    for (t, m) in tails.iter_mut().zip(&lanes) {
        t[..rest].copy_from_slice(&m[full * 64..]);
        t[rest] = 0x80;
        let bits = (len as u64).wrapping_mul(8);
        t[tail_blocks * 64 - 8..tail_blocks * 64].copy_from_slice(&bits.to_be_bytes());
    }

    let mut state = [_mm512_setzero_si512(); 5];
    for (s, h) in state.iter_mut().zip(H0) {
        *s = _mm512_set1_epi32(h as i32);
    }
    for b in 0..full {
        let ptrs: [*const u8; 16] = std::array::from_fn(|i| lanes[i][b * 64..].as_ptr());
        // SAFETY: each pointer starts a full 64-byte block inside its message.
        unsafe { compress(&mut state, &ptrs) };
    }
    for b in 0..tail_blocks {
        let ptrs: [*const u8; 16] = std::array::from_fn(|i| tails[i][b * 64..].as_ptr());
        // SAFETY: each tail holds `tail_blocks` whole blocks.
        unsafe { compress(&mut state, &ptrs) };
    }

    let mut words = [[0u32; 16]; 5];
    for (w, s) in words.iter_mut().zip(&state) {
        // SAFETY: a 16 x u32 array is exactly one 64-byte vector.
        unsafe { _mm512_storeu_si512(w.as_mut_ptr().cast(), *s) };
    }
    (0..n)
        .map(|lane| {
            let mut d = [0u8; 20];
            for (k, w) in words.iter().enumerate() {
                d[k * 4..k * 4 + 4].copy_from_slice(&w[lane].to_be_bytes());
            }
            d
        })
        .collect()
}

/// One 64-byte block of each of the 16 lanes.
///
/// # Safety
/// AVX-512F/BW available; every pointer valid for 64 bytes of reads.
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn compress(state: &mut [__m512i; 5], ptrs: &[*const u8; 16]) {
    // Load one block per lane, then transpose so that w[i] holds word i of
    // every lane.
    let mut w = [_mm512_setzero_si512(); 16];
    for (r, p) in w.iter_mut().zip(ptrs) {
        // SAFETY: the caller guarantees 64 readable bytes at `p`.
        *r = unsafe { _mm512_loadu_si512(p.cast()) };
    }
    transpose16(&mut w);
    // Message words are big-endian.
    let bswap = _mm512_set_epi8(
        12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5,
        6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8,
        9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3,
    );
    for x in &mut w {
        *x = _mm512_shuffle_epi8(*x, bswap);
    }

    let [mut a, mut b, mut c, mut d, mut e] = *state;
    macro_rules! round {
        ($t:expr, $f:expr) => {{
            let t: usize = $t;
            let wt = if t < 16 {
                w[t]
            } else {
                // w[t] = rol1(w[t-3] ^ w[t-8] ^ w[t-14] ^ w[t-16])
                let x = _mm512_ternarylogic_epi32::<0x96>(
                    w[(t - 3) % 16],
                    w[(t - 8) % 16],
                    w[(t - 14) % 16],
                );
                let x = _mm512_rol_epi32::<1>(_mm512_xor_si512(x, w[t % 16]));
                w[t % 16] = x;
                x
            };
            let k = _mm512_set1_epi32(K[t / 20] as i32);
            let f = $f;
            let tmp = _mm512_add_epi32(
                _mm512_add_epi32(_mm512_rol_epi32::<5>(a), f),
                _mm512_add_epi32(_mm512_add_epi32(e, k), wt),
            );
            e = d;
            d = c;
            c = _mm512_rol_epi32::<30>(b);
            b = a;
            a = tmp;
        }};
    }
    for t in 0..20 {
        // Ch(b, c, d) = (b & c) | (!b & d)
        round!(t, _mm512_ternarylogic_epi32::<0xCA>(b, c, d));
    }
    for t in 20..40 {
        round!(t, _mm512_ternarylogic_epi32::<0x96>(b, c, d));
    }
    for t in 40..60 {
        // Maj(b, c, d)
        round!(t, _mm512_ternarylogic_epi32::<0xE8>(b, c, d));
    }
    for t in 60..80 {
        round!(t, _mm512_ternarylogic_epi32::<0x96>(b, c, d));
    }
    for (s, v) in state.iter_mut().zip([a, b, c, d, e]) {
        *s = _mm512_add_epi32(*s, v);
    }
}

/// Transposes a 16 x 16 matrix of u32 held as 16 rows.
#[target_feature(enable = "avx512f")]
fn transpose16(r: &mut [__m512i; 16]) {
    // 32-bit interleave of row pairs.
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // 64-bit interleave of pairs of pairs.
    let mut u = [_mm512_setzero_si512(); 16];
    for i in 0..4 {
        let (x0, x1, y0, y1) = (t[4 * i], t[4 * i + 1], t[4 * i + 2], t[4 * i + 3]);
        u[4 * i] = _mm512_unpacklo_epi64(x0, y0);
        u[4 * i + 1] = _mm512_unpackhi_epi64(x0, y0);
        u[4 * i + 2] = _mm512_unpacklo_epi64(x1, y1);
        u[4 * i + 3] = _mm512_unpackhi_epi64(x1, y1);
    }
    // Now u[4i + j] holds, in each 128-bit chunk k, words (4k..4k+4) of
    // column j for rows 4i..4i+4. Move 128-bit chunks into place.
    let mut v = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        let (g0, g1, g2, g3) = (u[j], u[4 + j], u[8 + j], u[12 + j]);
        // Chunks 0,1 of g0 and g1 / 2,3 of g0 and g1, etc.
        let lo01 = _mm512_shuffle_i32x4::<0x44>(g0, g1);
        let hi01 = _mm512_shuffle_i32x4::<0xEE>(g0, g1);
        let lo23 = _mm512_shuffle_i32x4::<0x44>(g2, g3);
        let hi23 = _mm512_shuffle_i32x4::<0xEE>(g2, g3);
        v[j] = _mm512_shuffle_i32x4::<0x88>(lo01, lo23);
        v[4 + j] = _mm512_shuffle_i32x4::<0xDD>(lo01, lo23);
        v[8 + j] = _mm512_shuffle_i32x4::<0x88>(hi01, hi23);
        v[12 + j] = _mm512_shuffle_i32x4::<0xDD>(hi01, hi23);
    }
    *r = v;
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(m: &[u8]) -> [u8; 20] {
        use sha1::Digest;
        sha1::Sha1::digest(m).into()
    }

    #[test]
    fn transpose_is_a_transpose() {
        if !available() {
            return;
        }
        let mut m = [[0u32; 16]; 16];
        for (i, row) in m.iter_mut().enumerate() {
            for (j, x) in row.iter_mut().enumerate() {
                *x = (i * 16 + j) as u32;
            }
        }
        // SAFETY: AVX-512 checked above; loads and stores cover whole rows.
        unsafe {
            let mut r: [__m512i; 16] =
                std::array::from_fn(|i| _mm512_loadu_si512(m[i].as_ptr().cast()));
            transpose16(&mut r);
            for (i, v) in r.iter().enumerate() {
                let mut out = [0u32; 16];
                _mm512_storeu_si512(out.as_mut_ptr().cast(), *v);
                let want: Vec<u32> = (0..16).map(|j| (j * 16 + i) as u32).collect();
                assert_eq!(out.to_vec(), want, "row {i}");
            }
        }
    }

    #[test]
    fn matches_the_sha1_crate_at_block_edges() {
        if !available() {
            eprintln!("no AVX-512 here; multi-buffer SHA-1 not tested");
            return;
        }
        for len in [
            0,
            1,
            55,
            56,
            63,
            64,
            65,
            119,
            120,
            128,
            1000,
            16384,
            1 << 20,
        ] {
            let msgs: Vec<Vec<u8>> = (0..16)
                .map(|i| (0..len).map(|j| (i * 7 + j * 13) as u8).collect())
                .collect();
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            // SAFETY: AVX-512 checked above.
            let got = unsafe { sha1_x16(&refs) };
            for (m, d) in msgs.iter().zip(got) {
                assert_eq!(d, reference(m), "len {len}");
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_sha1_crate(len in 0usize..2000, n in 1usize..=16, seed in any::<u8>()) {
            if !available() {
                return Ok(());
            }
            let msgs: Vec<Vec<u8>> = (0..n).map(|i| (0..len).map(|j| seed.wrapping_add((i * 31 + j) as u8)).collect()).collect();
            let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
            // SAFETY: AVX-512 checked above.
            let got = unsafe { sha1_x16(&refs) };
            prop_assert_eq!(got.len(), n);
            for (m, d) in msgs.iter().zip(got) {
                prop_assert_eq!(d, reference(m));
            }
        }
    }
}
