//! One-token rows of N:M matrices that keep half of every group (1:2, 2:4, 4:8, 8:16): a
//! chunk's 16 stored values lie in 32 consecutive inputs, so vector permutes pick the inputs
//! instead of one load each. The arithmetic is [`crate::simd`]'s: the same lanes, chains and
//! reduction as the portable loop in `kernels`, so the same bits.

use crate::simd::{Isa, LANES};

/// Whether [`nm_half_row`] has a vector path for `isa` and an N:M pattern keeping `keep` of
/// every `m`: AVX-512 or AVX2, and half of every group kept (1:2, 2:4, 4:8, 8:16).
pub(crate) fn nm_half_vector(isa: Isa, m: usize, keep: usize) -> bool {
    cfg!(target_arch = "x86_64") && matches!(isa, Isa::Avx512 | Isa::Avx2) && m == 2 * keep && LANES % keep == 0
}

/// One row of an N:M matrix that keeps half of every group times `x`, for one token, on the
/// vector path [`nm_half_vector`] found: the 16 stored values of a chunk lie in 32 consecutive
/// inputs, which two loads and a two-register permute pick out instead of 16 separate loads
/// (with AVX2, per half chunk: two loads, two one-register permutes and a blend). Stored value
/// i goes to lane i mod 16 of accumulator (i / 16) mod 4 by a fused multiply-add, as in the
/// portable loop, then [`reduce`](crate::simd::reduce): the same bits. `values` and `positions`
/// are the row's, `x` holds its `values.len() / keep * m` inputs.
pub(crate) fn nm_half_row(isa: Isa, m: usize, keep: usize, values: &[f32], positions: &[u8], x: &[f32]) -> f32 {
    assert!(nm_half_vector(isa, m, keep), "no vector path for {keep} of {m} on {}", isa.name());
    assert!(positions.len() == values.len() && x.len() >= values.len() / keep * m, "a position per value and an input per column");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Isa::Avx512 is only chosen when available); the lengths
        // were checked above and every position is below m (an invariant of the storage).
        Isa::Avx512 => unsafe { x86::nm_half_row_avx512(m, keep, values, positions, x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA; as above.
        Isa::Avx2 => unsafe { x86::nm_half_row_avx2(m, keep, values, positions, x) },
        _ => unreachable!("nm_half_vector allows AVX-512 and AVX2 only"),
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use crate::simd::{CHAINS, LANES, PREFETCH, by_chains, reduce};

    /// Chunk c's values a few KiB ahead, and the positions once per group of chunks (a hint:
    /// it never faults).
    #[inline(always)]
    fn prefetch(values: &[f32], positions: &[u8], c: usize) {
        // SAFETY: a prefetch only hints at an address; it never faults.
        unsafe {
            if c % CHAINS == 0 {
                _mm_prefetch::<_MM_HINT_T0>(positions.as_ptr().wrapping_add(c * LANES + PREFETCH).cast());
            }
            _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().wrapping_add(c * LANES + PREFETCH).cast());
        }
    }

    /// The values after the whole chunks into their lanes, as the portable loop adds them, then
    /// the reduction of all the lanes.
    #[inline(always)]
    fn finish(mut out: [[f32; LANES]; CHAINS], m: usize, keep: usize, values: &[f32], positions: &[u8], x: &[f32]) -> f32 {
        let chunks = values.len() / LANES;
        let a = &mut out[chunks % CHAINS];
        for (j, i) in (chunks * LANES..values.len()).enumerate() {
            a[j] = values[i].mul_add(x[i / keep * m + positions[i] as usize], a[j]);
        }
        reduce(&out)
    }

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn nm_half_row_avx512(m: usize, keep: usize, values: &[f32], positions: &[u8], x: &[f32]) -> f32 {
        // Lane l of a chunk belongs to group l / keep, which starts at input (l / keep) * m of
        // the chunk's 32 (= 16 / keep groups of m).
        let base: [i32; LANES] = std::array::from_fn(|l| ((l / keep) * m) as i32);
        // SAFETY: base holds 16 i32.
        let base = unsafe { _mm512_loadu_si512(base.as_ptr().cast()) };
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        by_chains(positions.as_chunks::<LANES>().0, &mut acc, |a, c, p| {
            // SAFETY: chunk c reads values c * 16..c * 16 + 16 (c < chunks) and inputs
            // c * 32..c * 32 + 32, within the row's values / keep * m inputs (checked by the
            // caller); positions below m keep every index below 32.
            unsafe {
                prefetch(values, positions, c);
                let idx = _mm512_add_epi32(base, _mm512_cvtepu8_epi32(_mm_loadu_si128(p.as_ptr().cast())));
                let xs = x.as_ptr().add(c * 2 * LANES);
                let picked = _mm512_permutex2var_ps(_mm512_loadu_ps(xs), idx, _mm512_loadu_ps(xs.add(LANES)));
                *a = _mm512_fmadd_ps(_mm512_loadu_ps(values.as_ptr().add(c * LANES)), picked, *a);
            }
        });
        let mut out = [[0f32; LANES]; CHAINS];
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: o holds 16 floats.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
        finish(out, m, keep, values, positions, x)
    }

    #[target_feature(enable = "avx2,fma,popcnt")]
    pub(super) unsafe fn nm_half_row_avx2(m: usize, keep: usize, values: &[f32], positions: &[u8], x: &[f32]) -> f32 {
        // As in the AVX-512 kernel, per half chunk: lane l of half h (stored value 8h + l)
        // belongs to group (8h + l) / keep, at input ((8h + l) / keep) * m - 16h of the half's 16.
        let base: [[i32; 8]; 2] = std::array::from_fn(|h| std::array::from_fn(|l| (((8 * h + l) / keep) * m - 16 * h) as i32));
        // SAFETY: each half of base holds 8 i32.
        let base = unsafe { [_mm256_loadu_si256(base[0].as_ptr().cast()), _mm256_loadu_si256(base[1].as_ptr().cast())] };
        let seven = _mm256_set1_epi32(7);
        // Each accumulator of 16 lanes as two registers of 8.
        let mut acc = [[_mm256_setzero_ps(); 2]; CHAINS];
        by_chains(positions.as_chunks::<LANES>().0, &mut acc, |a, c, p| {
            prefetch(values, positions, c);
            for h in 0..2 {
                let at = c * LANES + 8 * h;
                // SAFETY: as in nm_half_row_avx512, the half's 8 values and positions and 16
                // inputs are in bounds; indices stay below 16 (the two registers of 8 inputs).
                unsafe {
                    let idx = _mm256_add_epi32(base[h], _mm256_cvtepu8_epi32(_mm_loadl_epi64(p[8 * h..].as_ptr().cast())));
                    let xs = x.as_ptr().add(c * 2 * LANES + 16 * h);
                    let (lo, hi) = (_mm256_permutevar8x32_ps(_mm256_loadu_ps(xs), idx), _mm256_permutevar8x32_ps(_mm256_loadu_ps(xs.add(8)), idx));
                    let picked = _mm256_blendv_ps(lo, hi, _mm256_castsi256_ps(_mm256_cmpgt_epi32(idx, seven)));
                    a[h] = _mm256_fmadd_ps(_mm256_loadu_ps(values.as_ptr().add(at)), picked, a[h]);
                }
            }
        });
        let mut out = [[0f32; LANES]; CHAINS];
        for (o, [lo, hi]) in out.iter_mut().zip(acc) {
            // SAFETY: o holds 16 floats.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr(), lo);
                _mm256_storeu_ps(o.as_mut_ptr().add(8), hi);
            }
        }
        finish(out, m, keep, values, positions, x)
    }
}
