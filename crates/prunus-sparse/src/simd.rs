//! The instruction set of the inner loops, chosen once at run time, and the few loops written
//! with intrinsics.
//!
//! Every kernel is defined by its arithmetic, not by its instruction set: each output (or each
//! of its 16 accumulator lanes, for one token) is a chain of fused multiply-adds in a fixed
//! order, reduced in a fixed order. The AVX-512 and AVX2 paths are that arithmetic with 16 or 8
//! lanes per register, and the portable path is the same written with `f32::mul_add` (the
//! hardware instruction where the target has one, a correctly rounded library call where not),
//! so every path gives the same bits. The portable loops are compiled once per instruction set
//! (`#[target_feature]`) so the compiler can vectorize them at that width.

use std::sync::OnceLock;

/// An instruction set the kernels can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// AVX-512F with AVX2 and FMA (16 lanes of f32).
    Avx512,
    /// AVX2 with FMA and POPCNT (8 lanes).
    Avx2,
    /// Whatever the baseline target allows (SSE2 on x86-64); fused multiply-adds in software
    /// there, so slow: a fallback.
    Portable,
}

impl Isa {
    /// Its name in reports and tables.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Avx512 => "avx512f",
            Isa::Avx2 => "avx2+fma",
            Isa::Portable => "portable",
        }
    }

    /// Whether this CPU can run it.
    pub fn available(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && Isa::Avx2.available(),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("popcnt"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// This one if the CPU has it, else the portable path.
    pub(crate) fn or_portable(self) -> Isa {
        if self.available() { self } else { Isa::Portable }
    }
}

/// The widest instruction set this CPU has (detected once).
pub fn detected() -> Isa {
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| [Isa::Avx512, Isa::Avx2].into_iter().find(|i| i.available()).unwrap_or(Isa::Portable))
}

/// The CPU's model name, from /proc/cpuinfo (empty where there is none): for the tables that
/// name the machine beside [`detected`].
pub fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_default()
}

/// How far ahead (in floats) the one-token loops ask for the weights they will read: the
/// hardware's prefetchers alone left the bitmap loop, whose loads wait on the popcounts of the
/// masks before them, at about 10 GB/s, and a model's decode at 70% zeros went from 20.3 to
/// 14.2 ms per token with it (the dense loop's from 30.6 to 26 ms) on the 2-core Xeon.
pub(crate) const PREFETCH: usize = 1024;

/// Lanes of a one-token accumulator.
pub(crate) const LANES: usize = 16;

/// Accumulators of a one-token row product (independent chains, so that each multiply-add
/// does not wait for the previous one).
pub(crate) const CHAINS: usize = 4;

/// The one-token sums: `CHAINS` accumulators of 16 lanes added lane by lane in order, then the
/// 16 lanes halved four times (lane j plus lane j + 8, then j + 4, j + 2, j + 1), the order a
/// vector unit adds the halves of a register in: seven adds deep instead of the nineteen of a
/// sum in lane order, whose latency a one-token row (36 to 96 chunks) paid once per output. A
/// fixed order, so every instruction set gets the same bits.
#[inline(always)]
pub(crate) fn reduce(acc: &[[f32; LANES]; CHAINS]) -> f32 {
    const { assert!(CHAINS == 4 && LANES == 16) };
    let mut sum = acc[0];
    for a in &acc[1..] {
        for j in 0..LANES {
            sum[j] += a[j];
        }
    }
    for j in 0..8 {
        sum[j] += sum[j + 8];
    }
    for j in 0..4 {
        sum[j] += sum[j + 4];
    }
    for j in 0..2 {
        sum[j] += sum[j + 2];
    }
    sum[0] + sum[1]
}

/// Calls `step(accumulator, chunk, item)` for every chunk of a one-token row (`items` holds
/// one per chunk: a bitmap's masks, an N:M row's positions), chunk c into accumulator
/// c mod CHAINS: whole groups of CHAINS chunks (so the accumulators stay in registers), then
/// the rest.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
pub(crate) fn by_chains<A, T: Copy>(items: &[T], acc: &mut [A; CHAINS], mut step: impl FnMut(&mut A, usize, T)) {
    let whole = items.len() / CHAINS * CHAINS;
    for (g, group) in items[..whole].chunks_exact(CHAINS).enumerate() {
        for (i, (a, &item)) in acc.iter_mut().zip(group).enumerate() {
            step(a, g * CHAINS + i, item);
        }
    }
    for (i, &item) in items[whole..].iter().enumerate() {
        step(&mut acc[i], whole + i, item);
    }
}

/// One row of a bitmap-packed matrix times `x`, for one token: for every 16 columns, the
/// row's weights there (zeros where the bit is clear) are multiplied into accumulator
/// `chunk % CHAINS` (lane j takes column j of the chunk) with fused multiply-adds, and the
/// accumulators are then reduced ([`reduce`]). `masks` holds the row's 16-bit chunks,
/// `values` its non-zeros followed by at least 16 readable values, `x` one input per chunk
/// column (zero-padded).
pub(crate) fn bitmap_row(isa: Isa, masks: &[u16], values: &[f32], x: &[f32]) -> f32 {
    assert!(x.len() >= masks.len() * LANES, "inputs padded to whole chunks");
    let mut acc = [[0f32; LANES]; CHAINS];
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Isa::Avx512 is only chosen when available); the
        // kernel checks its loads of values, and x was checked above.
        Isa::Avx512 => return unsafe { x86::bitmap_row_avx512(masks, values, x) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA; as above.
        Isa::Avx2 => return unsafe { x86::bitmap_row_avx2(masks, values, x) },
        _ => {
            let mut k = 0;
            for (chunk, &mask) in masks.iter().enumerate() {
                let mut w = [0f32; LANES];
                let mut b = mask;
                while b != 0 {
                    w[b.trailing_zeros() as usize] = values[k];
                    k += 1;
                    b &= b - 1;
                }
                let xs = &x[chunk * LANES..(chunk + 1) * LANES];
                let a = &mut acc[chunk % CHAINS];
                for j in 0..LANES {
                    a[j] = w[j].mul_add(xs[j], a[j]);
                }
            }
        }
    }
    reduce(&acc)
}

/// A bitmap row unpacked into `out` (16 floats per chunk: the row's weights where the bits
/// are set, zeros elsewhere); `values` as for [`bitmap_row`].
pub(crate) fn bitmap_unpack(isa: Isa, masks: &[u16], values: &[f32], out: &mut [f32]) {
    assert!(out.len() >= masks.len() * LANES, "a whole chunk of output per mask");
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Isa::Avx512 is only chosen when available); the
        // kernel checks its loads, and out was checked above.
        Isa::Avx512 => unsafe { x86::bitmap_unpack_avx512(masks, values, out) },
        _ => {
            let mut k = 0;
            for (chunk, &mask) in masks.iter().enumerate() {
                let w = &mut out[chunk * LANES..(chunk + 1) * LANES];
                w.fill(0.0);
                let mut b = mask;
                while b != 0 {
                    w[b.trailing_zeros() as usize] = values[k];
                    k += 1;
                    b &= b - 1;
                }
            }
        }
    }
}

/// One row's stored weights in one block of a tile: for each weight k in order, every lane l
/// of the tile takes `acc[l] = values[k] * xs[offsets[k] + l] + acc[l]` (fused), so each
/// output is one chain of multiply-adds in storage order. The AVX-512 (T = 128) and AVX2
/// (T = 64) kernels hold the T accumulators in eight registers; other tile sizes run the
/// portable loop compiled for the caller's instruction set. Panics if a column runs past `xs`.
#[inline(always)]
pub(crate) fn tile_segment<const T: usize>(isa: Isa, values: &[f32], offsets: &[u32], xs: &[f32], acc: &mut [f32; T]) {
    assert_eq!(values.len(), offsets.len(), "an offset per value");
    match (isa, T) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F (Isa::Avx512 is only chosen when available); acc holds
        // T = 128 floats and the kernel checks every column against xs.
        (Isa::Avx512, 128) => unsafe { x86::tile_segment_avx512(values, offsets, xs, acc.as_mut_ptr()) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX2 and FMA; acc holds T = 64 floats; as above.
        (Isa::Avx2, 64) => unsafe { x86::tile_segment_avx2(values, offsets, xs, acc.as_mut_ptr()) },
        _ => {
            let mut a = *acc;
            for (&v, &o) in values.iter().zip(offsets) {
                let col: &[f32; T] = xs[o as usize..o as usize + T].try_into().expect("a tile column");
                for l in 0..T {
                    a[l] = v.mul_add(col[l], a[l]);
                }
            }
            *acc = a;
        }
    }
}

/// `tokens` rows of `cols` inputs (`x`, rows `ld` apart) transposed into `xs`: input column
/// c of token l at `xs[c * stride + l]`. Data movement only: every path gives the same values.
pub(crate) fn transpose(isa: Isa, x: &[f32], ld: usize, tokens: usize, cols: usize, xs: &mut [f32], stride: usize) {
    if tokens == 0 || cols == 0 {
        return;
    }
    assert!(xs.len() >= (cols - 1) * stride + tokens, "room for {cols} columns of {tokens}");
    // SAFETY: xs holds every position written (checked above) and is borrowed uniquely.
    unsafe { transpose_to(isa, x, ld, tokens, cols, xs.as_mut_ptr(), stride) }
}

/// [`transpose`] into memory that other tasks may be writing elsewhere (the many-token
/// kernel's outputs, whose rows several tasks share).
///
/// # Safety
///
/// `xs + c * stride + l` for every column c < `cols` and token l < `tokens` must be valid for
/// writes, and nothing else may read or write those positions during the call.
pub(crate) unsafe fn transpose_to(isa: Isa, x: &[f32], ld: usize, tokens: usize, cols: usize, xs: *mut f32, stride: usize) {
    if tokens == 0 || cols == 0 {
        return;
    }
    assert!(x.len() >= (tokens - 1) * ld + cols && ld >= cols && stride >= tokens, "{tokens} x {cols} inputs, {ld} apart");
    let (mut l0, mut c0) = (0, 0);
    #[cfg(target_arch = "x86_64")]
    if matches!(isa, Isa::Avx512 | Isa::Avx2) {
        // SAFETY: the CPU has AVX2 (both instruction sets include it); the kernel reads whole
        // 8 x 8 blocks inside the bounds checked above and writes positions the caller vouches for.
        unsafe { x86::transpose_avx2(x, ld, tokens, cols, xs, stride) };
        (l0, c0) = (tokens / 8 * 8, cols / 8 * 8);
    }
    let _ = isa;
    // What the blocks of 8 x 8 left: the last columns of every token, and the last tokens.
    for l in 0..tokens {
        let from = if l < l0 { c0 } else { 0 };
        for c in from..cols {
            // SAFETY: c < cols and l < tokens: a position the caller vouches for.
            unsafe { *xs.add(c * stride + l) = x[l * ld + c] };
        }
    }
}

/// The stored weights of bitmap chunks `masks` (the first is chunk `first` of its row) as
/// offsets into a tile of inputs (`column * stride`, in storage order) written to `out`;
/// returns how many.
pub(crate) fn bitmap_offsets(isa: Isa, masks: &[u16], first: usize, stride: usize, out: &mut [u32]) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the CPU has AVX-512F; the kernel checks its stores against out.
        Isa::Avx512 => unsafe { x86::bitmap_offsets_avx512(masks, first, stride, out, 0) },
        _ => {
            let mut k = 0;
            for (i, &mask) in masks.iter().enumerate() {
                let mut m = mask;
                while m != 0 {
                    out[k] = (((first + i) * LANES + m.trailing_zeros() as usize) * stride) as u32;
                    k += 1;
                    m &= m - 1;
                }
            }
            k
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{CHAINS, LANES, PREFETCH, by_chains};

    /// For each byte of a mask, the source lane of each of 8 lanes when the set bits take
    /// consecutive values (lanes whose bit is clear point at lane 0 and are masked off).
    static EXPAND8: [[i32; 8]; 256] = {
        let mut t = [[0i32; 8]; 256];
        let mut m = 0;
        while m < 256 {
            let (mut j, mut k) = (0, 0);
            while j < 8 {
                if m & (1 << j) != 0 {
                    t[m][j] = k;
                    k += 1;
                }
                j += 1;
            }
            m += 1;
        }
        t
    };

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn bitmap_row_avx512(masks: &[u16], values: &[f32], x: &[f32]) -> f32 {
        let mut acc = [_mm512_setzero_ps(); CHAINS];
        let mut k = 0;
        // One chunk into accumulator a.
        let step = |a: &mut __m512, chunk: usize, mask: u16| {
            assert!(k + LANES <= values.len(), "values padded by a chunk");
            // SAFETY: 16 values from k are in bounds (just checked) and the caller checked
            // that x holds a whole chunk per mask. The expansion is the register form of
            // vexpandps: the compiler would fold the load into it, and the memory form is slow
            // on AMD's cores.
            unsafe {
                // The values a few KiB ahead every other chunk, about a cache line at half
                // density (a hint: it never faults). Once per four chunks left every other line
                // to the hardware's prefetchers: a 2:4 row (exactly 8 values a chunk) from
                // memory took 1.16-1.35x the time of one with half its weights zero at random.
                if chunk % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().wrapping_add(k + PREFETCH).cast());
                }
                let v = _mm512_loadu_ps(values.as_ptr().add(k));
                let w: __m512;
                std::arch::asm!("vexpandps {w}{{{m}}}{{z}}, {v}", w = lateout(zmm_reg) w, m = in(kreg) mask, v = in(zmm_reg) v, options(pure, nomem, nostack));
                *a = _mm512_fmadd_ps(w, _mm512_loadu_ps(x.as_ptr().add(chunk * LANES)), *a);
            }
            k += mask.count_ones() as usize;
        };
        by_chains(masks, &mut acc, step);
        let mut out = [[0f32; LANES]; CHAINS];
        for (o, a) in out.iter_mut().zip(acc) {
            // SAFETY: o holds 16 floats.
            unsafe { _mm512_storeu_ps(o.as_mut_ptr(), a) };
        }
        super::reduce(&out)
    }

    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn bitmap_unpack_avx512(masks: &[u16], values: &[f32], out: &mut [f32]) {
        let mut k = 0;
        for (chunk, &mask) in masks.iter().enumerate() {
            assert!(k + LANES <= values.len(), "values padded by a chunk");
            // SAFETY: 16 values from k are in bounds (just checked); the caller checked that
            // out holds a whole chunk per mask. Register-form expansion, as in bitmap_row.
            unsafe {
                let v = _mm512_loadu_ps(values.as_ptr().add(k));
                let w: __m512;
                std::arch::asm!("vexpandps {w}{{{m}}}{{z}}, {v}", w = lateout(zmm_reg) w, m = in(kreg) mask, v = in(zmm_reg) v, options(pure, nomem, nostack));
                _mm512_storeu_ps(out.as_mut_ptr().add(chunk * LANES), w);
            }
            k += mask.count_ones() as usize;
        }
    }

    /// [`super::transpose`] of the whole 8 x 8 blocks: eight rows of eight loaded, transposed
    /// in registers (pairs interleaved, then quadruples, then halves swapped), stored as
    /// eight columns of eight.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn transpose_avx2(x: &[f32], ld: usize, tokens: usize, cols: usize, xs: *mut f32, stride: usize) {
        // Eight tokens at a time, their rows read in order (the hardware prefetchers follow
        // eight streams); the eight-float runs written land in the tile's lines, which stay in
        // the second-level cache until the next eight tokens fill them further.
        for l0 in (0..tokens / 8 * 8).step_by(8) {
            for c0 in (0..cols / 8 * 8).step_by(8) {
                // SAFETY: rows l0..l0 + 8 <= tokens and columns c0..c0 + 8 <= cols lie inside x
                // (tokens rows of cols, ld apart; checked by the caller), and columns c0..c0 + 8
                // of tokens l0..l0 + 8 are positions of xs the caller vouches for.
                unsafe {
                    let r = |i: usize| _mm256_loadu_ps(x.as_ptr().add((l0 + i) * ld + c0));
                    let (t0, t1) = (_mm256_unpacklo_ps(r(0), r(1)), _mm256_unpackhi_ps(r(0), r(1)));
                    let (t2, t3) = (_mm256_unpacklo_ps(r(2), r(3)), _mm256_unpackhi_ps(r(2), r(3)));
                    let (t4, t5) = (_mm256_unpacklo_ps(r(4), r(5)), _mm256_unpackhi_ps(r(4), r(5)));
                    let (t6, t7) = (_mm256_unpacklo_ps(r(6), r(7)), _mm256_unpackhi_ps(r(6), r(7)));
                    let (u0, u1) = (_mm256_shuffle_ps::<0x44>(t0, t2), _mm256_shuffle_ps::<0xEE>(t0, t2));
                    let (u2, u3) = (_mm256_shuffle_ps::<0x44>(t1, t3), _mm256_shuffle_ps::<0xEE>(t1, t3));
                    let (u4, u5) = (_mm256_shuffle_ps::<0x44>(t4, t6), _mm256_shuffle_ps::<0xEE>(t4, t6));
                    let (u6, u7) = (_mm256_shuffle_ps::<0x44>(t5, t7), _mm256_shuffle_ps::<0xEE>(t5, t7));
                    let columns = [
                        _mm256_permute2f128_ps::<0x20>(u0, u4),
                        _mm256_permute2f128_ps::<0x20>(u1, u5),
                        _mm256_permute2f128_ps::<0x20>(u2, u6),
                        _mm256_permute2f128_ps::<0x20>(u3, u7),
                        _mm256_permute2f128_ps::<0x31>(u0, u4),
                        _mm256_permute2f128_ps::<0x31>(u1, u5),
                        _mm256_permute2f128_ps::<0x31>(u2, u6),
                        _mm256_permute2f128_ps::<0x31>(u3, u7),
                    ];
                    for (j, v) in columns.into_iter().enumerate() {
                        _mm256_storeu_ps(xs.add((c0 + j) * stride + l0), v);
                    }
                }
            }
        }
    }

    /// [`super::bitmap_offsets`] of the chunks `masks` (the first is chunk `first` of the
    /// row), written from `out[k]`; returns the position after the last.
    #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
    pub(super) unsafe fn bitmap_offsets_avx512(masks: &[u16], first: usize, stride: usize, out: &mut [u32], mut k: usize) -> usize {
        let s = stride as i32;
        let lanes = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(s));
        for (i, &mask) in masks.iter().enumerate() {
            let n = mask.count_ones() as usize;
            assert!(k + n <= out.len(), "room for the row's offsets");
            let column = (first + i) * LANES * stride;
            // SAFETY: the masked store writes the first n lanes only, in bounds (just checked).
            unsafe {
                let packed = _mm512_maskz_compress_epi32(mask, _mm512_add_epi32(lanes, _mm512_set1_epi32(column as i32)));
                _mm512_mask_storeu_epi32(out.as_mut_ptr().add(k).cast(), ((1u32 << n) - 1) as u16, packed);
            }
            k += n;
        }
        k
    }

    /// [`super::tile_segment`] held in eight registers of `$w` lanes (`T` = 8 * `$w`): one
    /// body for AVX-512 and AVX2, their intrinsics named.
    macro_rules! tile_segment_kernel {
        ($(#[$doc:meta])* $name:ident, $features:literal, $w:literal, $zero:ident, $load:ident, $store:ident, $set1:ident, $fmadd:ident) => {
            $(#[$doc])*
            #[inline]
            #[target_feature(enable = $features)]
            pub(super) unsafe fn $name(values: &[f32], offsets: &[u32], xs: &[f32], acc: *mut f32) {
                let last = xs.len().checked_sub(8 * $w).expect("a whole tile column");
                // SAFETY: acc holds 8 * $w floats (the caller's promise); every column read is
                // checked to end within xs.
                unsafe {
                    let mut a = [$zero(); 8];
                    for (j, r) in a.iter_mut().enumerate() {
                        *r = $load(acc.add($w * j));
                    }
                    let [mut a0, mut a1, mut a2, mut a3, mut a4, mut a5, mut a6, mut a7] = a;
                    for (&v, &o) in values.iter().zip(offsets) {
                        let o = o as usize;
                        assert!(o <= last, "a tile column within the inputs");
                        let (w, c) = ($set1(v), xs.as_ptr().add(o));
                        a0 = $fmadd(w, $load(c), a0);
                        a1 = $fmadd(w, $load(c.add($w)), a1);
                        a2 = $fmadd(w, $load(c.add(2 * $w)), a2);
                        a3 = $fmadd(w, $load(c.add(3 * $w)), a3);
                        a4 = $fmadd(w, $load(c.add(4 * $w)), a4);
                        a5 = $fmadd(w, $load(c.add(5 * $w)), a5);
                        a6 = $fmadd(w, $load(c.add(6 * $w)), a6);
                        a7 = $fmadd(w, $load(c.add(7 * $w)), a7);
                    }
                    for (j, r) in [a0, a1, a2, a3, a4, a5, a6, a7].into_iter().enumerate() {
                        $store(acc.add($w * j), r);
                    }
                }
            }
        };
    }

    tile_segment_kernel!(
        /// [`super::tile_segment`] for 128 lanes: eight registers of 16.
        tile_segment_avx512, "avx512f,avx2,fma", 16, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_storeu_ps, _mm512_set1_ps, _mm512_fmadd_ps
    );
    tile_segment_kernel!(
        /// [`super::tile_segment`] for 64 lanes: eight registers of 8.
        tile_segment_avx2, "avx2,fma", 8, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_storeu_ps, _mm256_set1_ps, _mm256_fmadd_ps
    );

    #[target_feature(enable = "avx2,fma,popcnt")]
    pub(super) unsafe fn bitmap_row_avx2(masks: &[u16], values: &[f32], x: &[f32]) -> f32 {
        // Each accumulator of 16 lanes as two registers of 8.
        let mut acc = [[_mm256_setzero_ps(); 2]; CHAINS];
        let bit = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
        let mut k = 0;
        // Eight weights of one mask byte, expanded: gathered by the table, the clear lanes zeroed.
        let expand = |v: *const f32, byte: usize| {
            // SAFETY: the loop checks that 16 values from v are in bounds; EXPAND8 rows hold 8
            // i32.
            unsafe {
                let idx = _mm256_loadu_si256(EXPAND8[byte].as_ptr().cast());
                let w = _mm256_permutevar8x32_ps(_mm256_loadu_ps(v), idx);
                let on = _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(byte as i32), bit), bit);
                _mm256_and_ps(w, _mm256_castsi256_ps(on))
            }
        };
        let step = |[lo, hi]: &mut [__m256; 2], chunk: usize, mask: u16| {
            let (b0, b1) = ((mask & 0xff) as usize, (mask >> 8) as usize);
            assert!(k + LANES <= values.len(), "values padded by a chunk");
            // SAFETY: 16 values from k are in bounds (just checked: the high byte's 8 start at
            // most 8 later); the caller checked that x holds a whole chunk per mask.
            unsafe {
                // Every other chunk, as in the AVX-512 kernel (and for the same measured reason).
                if chunk % 2 == 0 {
                    _mm_prefetch::<_MM_HINT_T0>(values.as_ptr().wrapping_add(k + PREFETCH).cast());
                }
                let (v, xs) = (values.as_ptr().add(k), x.as_ptr().add(chunk * LANES));
                *lo = _mm256_fmadd_ps(expand(v, b0), _mm256_loadu_ps(xs), *lo);
                let v = v.add(b0.count_ones() as usize);
                *hi = _mm256_fmadd_ps(expand(v, b1), _mm256_loadu_ps(xs.add(8)), *hi);
            }
            k += mask.count_ones() as usize;
        };
        by_chains(masks, &mut acc, step);
        let mut out = [[0f32; LANES]; CHAINS];
        for (o, [lo, hi]) in out.iter_mut().zip(acc) {
            // SAFETY: o holds 16 floats.
            unsafe {
                _mm256_storeu_ps(o.as_mut_ptr(), lo);
                _mm256_storeu_ps(o.as_mut_ptr().add(8), hi);
            }
        }
        super::reduce(&out)
    }
}

/// Calls the `#[inline(always)]` function `$f` with the arguments `$val`, compiled for the
/// instruction set `$isa`: three copies of the same code, each inside a `#[target_feature]`
/// function, so the compiler vectorizes it at that width.
macro_rules! on_isa {
    ($isa:expr, $f:path, ($($arg:ident: $ty:ty = $val:expr),* $(,)?)) => {{
        match $isa {
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Isa::Avx512 => {
                #[target_feature(enable = "avx512f,avx2,fma,popcnt")]
                fn wide($($arg: $ty),*) { $f($($arg),*) }
                // SAFETY: Isa::Avx512 is only chosen when the CPU has these features.
                unsafe { wide($($val),*) }
            }
            #[cfg(target_arch = "x86_64")]
            $crate::simd::Isa::Avx2 => {
                #[target_feature(enable = "avx2,fma,popcnt")]
                fn wide($($arg: $ty),*) { $f($($arg),*) }
                // SAFETY: Isa::Avx2 is only chosen when the CPU has these features.
                unsafe { wide($($val),*) }
            }
            _ => $f($($val),*),
        }
    }};
}
pub(crate) use on_isa;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_available_path_expands_bitmaps_to_the_same_bits() {
        let chunks = 7;
        let masks: Vec<u16> = (0..chunks).map(|i| [0xffff, 0, 0x8001, 0x5a5a, 0x0100, 0x7fff, 0x00f3][i]).collect();
        let ones: usize = masks.iter().map(|m| m.count_ones() as usize).sum();
        let mut values: Vec<f32> = (0..ones).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        values.extend([0.0; LANES]);
        let x: Vec<f32> = (0..chunks * LANES).map(|i| ((i * 53 % 97) as f32 - 48.0) * 0.021).collect();
        let portable = bitmap_row(Isa::Portable, &masks, &values, &x);
        for isa in [Isa::Avx512, Isa::Avx2] {
            assert_eq!(bitmap_row(isa.or_portable(), &masks, &values, &x).to_bits(), portable.to_bits(), "{}", isa.name());
        }
        // The same sum in f64 from the unpacked row.
        let mut want = 0f64;
        let mut k = 0;
        for (c, &m) in masks.iter().enumerate() {
            for j in 0..LANES {
                if m & (1 << j) != 0 {
                    want += f64::from(values[k]) * f64::from(x[c * LANES + j]);
                    k += 1;
                }
            }
        }
        assert!((f64::from(portable) - want).abs() < 1e-5, "{portable} vs {want}");
        assert!(Isa::Portable.available() && detected().available());
    }
}
