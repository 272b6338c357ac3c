//! SHA-256 of two independent messages at once, their rounds interleaved on the x86 SHA extensions.
//!
//! One message's 64 rounds are one dependency chain: each `sha256rnds2` waits for the previous
//! one, so a single stream runs at the instruction's latency (1.8 GB/s a core here, the same for
//! `sha2`, `ring` and OpenSSL) while the SHA unit could start a new one every other cycle.
//! Stepping a second message through the same rounds fills those gaps: 3.3 GB/s a core on this
//! machine for two 50 KiB files (BENCHMARKS.md §2). No maintained crate hashes several messages
//! at once on SHA-NI, hence this kernel; it uses the same intrinsics as `sha2`'s SHA-NI backend,
//! is checked against `sha2` for every length pair in the tests below, and falls back to `sha2`
//! on CPUs without the extensions.

use sha2::{Digest, Sha256};

/// The SHA-256 digests of `a` and `b` (as `Sha256::digest` of each).
pub(crate) fn digest2(a: &[u8], b: &[u8]) -> ([u8; 32], [u8; 32]) {
    #[cfg(target_arch = "x86_64")]
    if ni::available() {
        // SAFETY: the CPU has the features the kernel is compiled for (checked just above).
        return unsafe { ni::digest2(a, b) };
    }
    (Sha256::digest(a).into(), Sha256::digest(b).into())
}

/// Whether two messages really hash at once here (else [`digest2`] hashes them one by one).
pub(crate) fn interleaved() -> bool {
    #[cfg(target_arch = "x86_64")]
    return ni::available();
    #[cfg(not(target_arch = "x86_64"))]
    false
}

#[cfg(target_arch = "x86_64")]
mod ni {
    use core::arch::x86_64::*;

    const IV: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];

    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];

    type Block = [u8; 64];

    pub(super) fn available() -> bool {
        // std caches the CPUID answer: this is a load and a test after the first call.
        is_x86_feature_detected!("sha")
            && is_x86_feature_detected!("sse2")
            && is_x86_feature_detected!("ssse3")
            && is_x86_feature_detected!("sse4.1")
    }

    /// What is left to compress of one message: its remaining whole blocks, then its padded tail.
    struct Rest<'a> {
        body: &'a [Block],
        tail: [Block; 2],
        tail_len: usize,
        tail_done: usize,
    }

    impl<'a> Rest<'a> {
        fn new(msg: &'a [u8]) -> Rest<'a> {
            let (body, rest) = msg.split_at(msg.len() / 64 * 64);
            // SAFETY: `body` is a whole number of 64-byte blocks; [u8; 64] has alignment 1.
            let body = unsafe {
                core::slice::from_raw_parts(body.as_ptr().cast::<Block>(), body.len() / 64)
            };
            let mut tail = [[0u8; 64]; 2];
            let flat = tail.as_flattened_mut();
            flat[..rest.len()].copy_from_slice(rest);
            flat[rest.len()] = 0x80;
            // The length in bits ends the last block: one block when it fits after the 0x80.
            let tail_len = if rest.len() < 56 { 1 } else { 2 };
            let bits = (msg.len() as u64).wrapping_mul(8).to_be_bytes();
            flat[tail_len * 64 - 8..tail_len * 64].copy_from_slice(&bits);
            Rest {
                body,
                tail,
                tail_len,
                tail_done: 0,
            }
        }

        /// The next run of contiguous blocks (empty when done).
        fn next_run(&self) -> &[Block] {
            if self.body.is_empty() {
                &self.tail[self.tail_done..self.tail_len]
            } else {
                self.body
            }
        }

        fn advance(&mut self, n: usize) {
            if self.body.is_empty() {
                self.tail_done += n;
            } else {
                self.body = &self.body[n..];
            }
        }
    }

    fn to_bytes(state: &[u32; 8]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (o, w) in out.chunks_exact_mut(4).zip(state) {
            o.copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    /// # Safety
    /// The CPU must have the `sha`, `sse2`, `ssse3` and `sse4.1` features ([`available`]).
    pub(super) unsafe fn digest2(a: &[u8], b: &[u8]) -> ([u8; 32], [u8; 32]) {
        let (mut ra, mut rb) = (Rest::new(a), Rest::new(b));
        let (mut sa, mut sb) = (IV, IV);
        loop {
            let n = ra.next_run().len().min(rb.next_run().len());
            if n == 0 {
                break;
            }
            compress2(&mut sa, &mut sb, &ra.next_run()[..n], &rb.next_run()[..n]);
            ra.advance(n);
            rb.advance(n);
        }
        // The longer message goes on alone, its blocks in both lanes: one message's rounds run
        // at the instruction's latency either way, so the spare lane costs nothing.
        for (r, s) in [(&mut ra, &mut sa), (&mut rb, &mut sb)] {
            loop {
                let run = r.next_run();
                let n = run.len();
                if n == 0 {
                    break;
                }
                let mut spare = IV;
                compress2(s, &mut spare, run, run);
                r.advance(n);
            }
        }
        (to_bytes(&sa), to_bytes(&sb))
    }

    #[inline(always)]
    unsafe fn schedule(v0: __m128i, v1: __m128i, v2: __m128i, v3: __m128i) -> __m128i {
        let t1 = _mm_sha256msg1_epu32(v0, v1);
        let t2 = _mm_alignr_epi8(v3, v2, 4);
        _mm_sha256msg2_epu32(_mm_add_epi32(t1, t2), v3)
    }

    /// The state in the instructions' layout: (ABEF, CDGH).
    #[inline(always)]
    unsafe fn load(s: &[u32; 8]) -> (__m128i, __m128i) {
        let p = s.as_ptr().cast::<__m128i>();
        let cdab = _mm_shuffle_epi32(_mm_loadu_si128(p), 0xB1);
        let efgh = _mm_shuffle_epi32(_mm_loadu_si128(p.add(1)), 0x1B);
        (
            _mm_alignr_epi8(cdab, efgh, 8),
            _mm_blend_epi16(efgh, cdab, 0xF0),
        )
    }

    #[inline(always)]
    unsafe fn store(s: &mut [u32; 8], abef: __m128i, cdgh: __m128i) {
        let feba = _mm_shuffle_epi32(abef, 0x1B);
        let dchg = _mm_shuffle_epi32(cdgh, 0xB1);
        let p = s.as_mut_ptr().cast::<__m128i>();
        _mm_storeu_si128(p, _mm_blend_epi16(feba, dchg, 0xF0));
        _mm_storeu_si128(p.add(1), _mm_alignr_epi8(dchg, feba, 8));
    }

    /// Compresses `a` into `sa` and `b` into `sb` (same number of blocks), round by round in step.
    #[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
    unsafe fn compress2(sa: &mut [u32; 8], sb: &mut [u32; 8], a: &[Block], b: &[Block]) {
        debug_assert_eq!(a.len(), b.len());
        let mask = _mm_set_epi64x(
            0x0C0D_0E0F_0809_0A0Bu64 as i64,
            0x0405_0607_0001_0203u64 as i64,
        );
        let kp = K.as_ptr().cast::<__m128i>();
        let (mut abef0, mut cdgh0) = load(sa);
        let (mut abef1, mut cdgh1) = load(sb);
        for (ba, bb) in a.iter().zip(b) {
            let (save_abef0, save_cdgh0, save_abef1, save_cdgh1) = (abef0, cdgh0, abef1, cdgh1);
            let (pa, pb) = (ba.as_ptr().cast::<__m128i>(), bb.as_ptr().cast::<__m128i>());
            let mut a0 = _mm_shuffle_epi8(_mm_loadu_si128(pa), mask);
            let mut a1 = _mm_shuffle_epi8(_mm_loadu_si128(pa.add(1)), mask);
            let mut a2 = _mm_shuffle_epi8(_mm_loadu_si128(pa.add(2)), mask);
            let mut a3 = _mm_shuffle_epi8(_mm_loadu_si128(pa.add(3)), mask);
            let mut b0 = _mm_shuffle_epi8(_mm_loadu_si128(pb), mask);
            let mut b1 = _mm_shuffle_epi8(_mm_loadu_si128(pb.add(1)), mask);
            let mut b2 = _mm_shuffle_epi8(_mm_loadu_si128(pb.add(2)), mask);
            let mut b3 = _mm_shuffle_epi8(_mm_loadu_si128(pb.add(3)), mask);
            // Four rounds of both messages, their instructions alternating.
            macro_rules! rounds4 {
                ($i:expr, $wa:expr, $wb:expr) => {{
                    let k = _mm_loadu_si128(kp.add($i));
                    let (ta, tb) = (_mm_add_epi32($wa, k), _mm_add_epi32($wb, k));
                    cdgh0 = _mm_sha256rnds2_epu32(cdgh0, abef0, ta);
                    cdgh1 = _mm_sha256rnds2_epu32(cdgh1, abef1, tb);
                    abef0 = _mm_sha256rnds2_epu32(abef0, cdgh0, _mm_shuffle_epi32(ta, 0x0E));
                    abef1 = _mm_sha256rnds2_epu32(abef1, cdgh1, _mm_shuffle_epi32(tb, 0x0E));
                }};
            }
            // The next four schedule words replace the oldest four, then four rounds use them.
            macro_rules! schedule_rounds4 {
                ($i:expr, $a0:ident $a1:ident $a2:ident $a3:ident, $b0:ident $b1:ident $b2:ident $b3:ident) => {{
                    $a0 = schedule($a0, $a1, $a2, $a3);
                    $b0 = schedule($b0, $b1, $b2, $b3);
                    rounds4!($i, $a0, $b0);
                }};
            }
            rounds4!(0, a0, b0);
            rounds4!(1, a1, b1);
            rounds4!(2, a2, b2);
            rounds4!(3, a3, b3);
            schedule_rounds4!(4, a0 a1 a2 a3, b0 b1 b2 b3);
            schedule_rounds4!(5, a1 a2 a3 a0, b1 b2 b3 b0);
            schedule_rounds4!(6, a2 a3 a0 a1, b2 b3 b0 b1);
            schedule_rounds4!(7, a3 a0 a1 a2, b3 b0 b1 b2);
            schedule_rounds4!(8, a0 a1 a2 a3, b0 b1 b2 b3);
            schedule_rounds4!(9, a1 a2 a3 a0, b1 b2 b3 b0);
            schedule_rounds4!(10, a2 a3 a0 a1, b2 b3 b0 b1);
            schedule_rounds4!(11, a3 a0 a1 a2, b3 b0 b1 b2);
            schedule_rounds4!(12, a0 a1 a2 a3, b0 b1 b2 b3);
            schedule_rounds4!(13, a1 a2 a3 a0, b1 b2 b3 b0);
            schedule_rounds4!(14, a2 a3 a0 a1, b2 b3 b0 b1);
            schedule_rounds4!(15, a3 a0 a1 a2, b3 b0 b1 b2);
            abef0 = _mm_add_epi32(abef0, save_abef0);
            cdgh0 = _mm_add_epi32(cdgh0, save_cdgh0);
            abef1 = _mm_add_epi32(abef1, save_abef1);
            cdgh1 = _mm_add_epi32(cdgh1, save_cdgh1);
        }
        store(sa, abef0, cdgh0);
        store(sb, abef1, cdgh1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn plain(m: &[u8]) -> [u8; 32] {
        Sha256::digest(m).into()
    }

    #[test]
    fn every_length_pair_around_the_block_and_padding_edges_matches_sha2() {
        // 0..=200 covers: empty, tails that need a second padding block (56..=63), whole
        // blocks, and either lane running out first.
        for la in 0..=200 {
            for lb in [0, 1, 55, 56, 63, 64, 65, 119, 120, 128, 200, 1000] {
                let (a, b) = (data(la, 1), data(lb, 2));
                let (da, db) = digest2(&a, &b);
                assert_eq!((da, db), (plain(&a), plain(&b)), "lengths {la} and {lb}");
                let (db2, da2) = digest2(&b, &a);
                assert_eq!((da2, db2), (da, db), "lengths {lb} and {la}");
            }
        }
    }

    #[test]
    fn big_and_unequal_messages_match_sha2() {
        let a = data(51_200, 3);
        let b = data((1 << 20) + 17, 4);
        assert_eq!(digest2(&a, &b), (plain(&a), plain(&b)));
        assert_eq!(digest2(&a, &a), (plain(&a), plain(&a)));
    }

    #[test]
    fn the_known_answer_for_abc() {
        let (x, _) = digest2(b"abc", b"");
        assert_eq!(
            hex::encode(x),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
