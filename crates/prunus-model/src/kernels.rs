//! Fused CPU kernels for inference: the row-wise log-sum-exp of the NLL, the SwiGLU product
//! and the block linears' products (through prunus-sparse's dense kernel), rows split over
//! candle's thread count, with the C library's `expf` many values at
//! a time ([`expf`]). No gradient; the differentiable path composes ops. (The causal
//! softmax that lived here is part of the fused attention now, `attention.rs`.)

use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

/// Runs `f(first_row, rows_in, rows_out)` over row chunks on up to candle's thread count.
fn par_rows(src: &[f32], dst: &mut [f32], in_len: usize, out_len: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) {
    let rows = src.len().checked_div(in_len).unwrap_or(0);
    let threads = candle_core::utils::get_num_threads().clamp(1, rows.max(1));
    let per = rows.div_ceil(threads).max(1);
    std::thread::scope(|s| {
        for (i, (a, b)) in src.chunks(per * in_len).zip(dst.chunks_mut(per * out_len)).enumerate() {
            let f = &f;
            s.spawn(move || f(i * per, a, b));
        }
    });
}

fn contiguous_f32<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what} expects f32") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("{what} expects a contiguous tensor") };
    Ok(&v[a..b])
}

/// log(sum(exp(x))) over the last dim, (..., n) -> (...).
struct RowLogSumExp;

impl CustomOp1 for RowLogSumExp {
    fn name(&self) -> &'static str {
        "row-logsumexp"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "row logsumexp")?;
        let dims = l.dims();
        let n = dims.last().copied().unwrap_or(0);
        let rows = src.len().checked_div(n).unwrap_or(0);
        let mut out = vec![0f32; rows];
        if n > 0 {
            let exp = expf::Expf::get();
            par_rows(src, &mut out, n, 1, |_, a, b| {
                for (x, y) in a.chunks_exact(n).zip(b.iter_mut()) {
                    *y = exp.logsumexp(x);
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(&dims[..dims.len().saturating_sub(1)])))
    }
}

/// Row-wise log-sum-exp, (..., n) -> (...): per row `m + ln(sum of e^(x - m))` with `m` the
/// row's maximum, each `e^(x - m)` the C library's `expf` (through [`expf::Expf`]) and the sum
/// in f64 in the row's order. Summed in f64 because a vocabulary of ~50K terms loses the small
/// ones in f32 (perplexity came out 1.2e-4 relative too low against the numpy reference).
pub(crate) fn row_logsumexp(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&RowLogSumExp)
}

/// `silu(gate) * up` elementwise, (...) x (...) -> (...): candle's `silu` (`g / (1 + e^-g)`,
/// rounded to f32) times `up`, in one pass over row chunks, `e^-g` through [`expf::Expf`], so
/// the bits of `(gate.silu()? * up)?`.
struct SwiGlu;

impl candle_core::CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (gate, up) = (contiguous_f32(s1, l1, "swiglu")?, contiguous_f32(s2, l2, "swiglu")?);
        if l1.dims() != l2.dims() {
            candle_core::bail!("swiglu of shapes {:?} and {:?}", l1.dims(), l2.dims());
        }
        let n = l1.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; gate.len()];
        let exp = expf::Expf::get();
        // Rows of gate and up side by side: par_rows splits one input, so the row index finds
        // the other.
        par_rows(gate, &mut out, n, n, |first, g, o| {
            let u = &up[first * n..first * n + g.len()];
            for ((g, u), o) in g.chunks(4096).zip(u.chunks(4096)).zip(o.chunks_mut(4096)) {
                for (o, &g) in o.iter_mut().zip(g) {
                    *o = -g;
                }
                exp.exp_shifted(o, 0.0);
                for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                    *o = g / (1.0 + *o) * u;
                }
            }
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `silu(gate) * up` with the bits of `(gate.silu()? * up)?` (f32, CPU, same shapes; no
/// gradient).
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &SwiGlu)
}

/// `x W^T` for `x` (rows x d_in) and `w` (d_out x d_in), both f32: prunus-sparse's dense
/// product, which for many rows multiplies by a transposed copy of `w` and gives the bits of
/// candle's `x.matmul(&w.t())` (the same gemm kernels, the same order of operations) faster.
struct DenseLinear;

impl candle_core::CustomOp2 for DenseLinear {
    fn name(&self) -> &'static str {
        "dense-linear"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (x, w) = (contiguous_f32(s1, l1, "linear")?, contiguous_f32(s2, l2, "linear")?);
        let (&[rows, d_in], &[d_out, w_in]) = (l1.dims(), l2.dims()) else {
            candle_core::bail!("linear of shapes {:?} and {:?}", l1.dims(), l2.dims());
        };
        if d_in != w_in {
            candle_core::bail!("linear of {rows} x {d_in} inputs by weights of {d_out} x {w_in}");
        }
        let mut out = vec![0f32; rows * d_out];
        prunus_sparse::dense_forward(w, d_out, d_in, x, rows, &mut out);
        Ok((CpuStorage::F32(out), Shape::from((rows, d_out))))
    }
}

/// Rows at and above which [`linear`] is used: where prunus-sparse's product starts
/// multiplying by a transposed copy (`prunus_sparse::transposing_pays`). Fewer rows gain
/// nothing over candle's matmul, and one row would take prunus-sparse's row loop, whose bits
/// are not gemm's.
pub(crate) const LINEAR_ROWS: usize = 128;

/// `x.matmul(&w.t())` with its bits for `x` (rows x d_in, rows at least [`LINEAR_ROWS`]) and
/// `w` (d_out x d_in), f32 on the CPU, through [`DenseLinear`]; no gradient.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op2_no_bwd(&w.contiguous()?, &DenseLinear)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    #[test]
    fn swiglu_has_the_bits_of_silu_times_up() {
        let (rows, cols) = (7, 1531);
        let n = rows * cols;
        // Gates from -130 to 130 (past the 88 where expf's special cases start), some zeros.
        let g: Vec<f32> = (0..n).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * if i % 97 == 0 { 0.13 } else { 0.013 }).collect();
        let u: Vec<f32> = (0..n).map(|i| ((i * 104_729 % 1009) as f32 - 504.0) * 0.002).collect();
        let g = Tensor::from_vec(g, (rows, cols), &Device::Cpu).unwrap();
        let u = Tensor::from_vec(u, (rows, cols), &Device::Cpu).unwrap();
        let fused = super::swiglu(&g, &u).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let plain = (g.silu().unwrap() * &u).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let differ = fused.iter().zip(&plain).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
        assert_eq!(differ, 0, "{differ} of {n} values differ");
        assert!(super::swiglu(&g, &u.narrow(1, 0, 5).unwrap()).is_err());
    }

    #[test]
    fn linear_has_the_bits_of_matmul_by_the_transpose() {
        for (rows, d_in, d_out) in [(super::LINEAR_ROWS, 72, 37), (300, 576, 192), (257, 200, 576)] {
            let x: Vec<f32> = (0..rows * d_in).map(|i| ((i * 7919 % 2003) as f32 - 1001.0) * 0.001).collect();
            let w: Vec<f32> = (0..d_out * d_in).map(|i| ((i * 104_729 % 1009) as f32 - 504.0) * 0.002).collect();
            let x = Tensor::from_vec(x, (rows, d_in), &Device::Cpu).unwrap();
            let w = Tensor::from_vec(w, (d_out, d_in), &Device::Cpu).unwrap();
            let fast = super::linear(&x, &w).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let plain = x.matmul(&w.t().unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(fast.len(), rows * d_out);
            let differ = fast.iter().zip(&plain).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
            assert_eq!(differ, 0, "{rows} x {d_in} x {d_out}: {differ} values differ");
        }
        let x = Tensor::zeros((4, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(super::linear(&x, &Tensor::zeros((3, 7), candle_core::DType::F32, &Device::Cpu).unwrap()).is_err());
    }
}

pub(crate) mod expf {
    //! The C library's `expf`, bit for bit, many values at a time.
    //!
    //! Perplexity takes `e^x` of every logit (25M per 512-token window of a 49K vocabulary);
    //! one call of the library's `expf` per value was about 7% of an evaluation. glibc's
    //! `expf` (since 2.28; the algorithm of Arm's optimized-routines, also in musl) works in
    //! double precision: `x = (k + r) ln2 / 32` with integer `k` and `|r| <= 1/2`, `2^(k/32)`
    //! from a table of 32 entries and the exponent bits, `2^(r/32)` from a cubic, one rounding
    //! to f32 at the end. The same steps written here in f64 arithmetic compile to vector
    //! instructions (AVX-512 or AVX2, chosen at run time) and give the same bits, so every
    //! perplexity keeps its last digit. glibc builds the function twice, with and without
    //! fused multiply-adds, and picks one per CPU; which one this machine's library uses is not
    //! assumed but checked: [`Expf::get`] compares each candidate with the library on a sweep
    //! of inputs once per process and takes the first that agrees everywhere, or the library's
    //! own scalar calls when none does (another C library, another algorithm).

    use std::sync::OnceLock;

    /// `32 / ln 2` (glibc's `InvLn2N`).
    const INV_LN2_N: f64 = f64::from_bits(0x3ff7_1547_652b_82fe) * 32.0;
    /// `1.5 * 2^52`: adding and subtracting it rounds to an integer, ties to even.
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    /// The cubic's coefficients for `2^(r/32) - 1` in powers of `r` (3, 2, 1), scaled by 32.
    const C0: f64 = f64::from_bits(0x3fac_6af8_4b91_2394) / 32_768.0;
    const C1: f64 = f64::from_bits(0x3fce_bfce_50fa_c4f3) / 1_024.0;
    const C2: f64 = f64::from_bits(0x3fe6_2e42_ff0c_52d6) / 32.0;

    /// Values per block: computed together, then added to the f64 sum in order.
    const BLOCK: usize = 64;

    /// How the block's exponentials are computed.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(crate) enum Path {
        /// One call of the library's `expf` per value.
        Library,
        /// The steps above with fused multiply-adds, compiled for AVX-512.
        FusedAvx512,
        /// With fused multiply-adds, compiled for AVX2 and FMA.
        FusedAvx2,
        /// Without fused multiply-adds, compiled for AVX2.
        UnfusedAvx2,
        /// Without fused multiply-adds, compiled for the baseline target.
        Unfused,
    }

    /// The chosen path with its table: `tab[i] = bits(2^(i/32)) - (i << 47)`, so that adding
    /// `k << 47` to `tab[k % 32]` gives the bits of `2^(k/32)`.
    #[derive(Debug)]
    pub(crate) struct Expf {
        pub(crate) path: Path,
        tab: [u64; 32],
    }

    impl Expf {
        /// The path for this process: the first candidate that agrees with the library on
        /// every input of [`sweep`], checked once.
        pub(crate) fn get() -> &'static Expf {
            static CHOSEN: OnceLock<Expf> = OnceLock::new();
            CHOSEN.get_or_init(|| {
                let tab = table();
                let inputs = sweep();
                let want: Vec<u32> = inputs.iter().map(|x| x.exp().to_bits()).collect();
                let mut got = vec![0f32; inputs.len()];
                for path in candidates() {
                    let e = Expf { path, tab };
                    for (x, g) in inputs.chunks(BLOCK).zip(got.chunks_mut(BLOCK)) {
                        e.block(x, 0.0, g);
                    }
                    if got.iter().zip(&want).all(|(g, w)| g.to_bits() == *w) {
                        return e;
                    }
                }
                Expf { path: Path::Library, tab }
            })
        }

        /// `out[i] = expf(x[i] - m)` for one block (at most [`BLOCK`] values), every `x[i] - m`
        /// finite with magnitude below 88 (outside, glibc takes special cases).
        #[inline]
        fn block(&self, x: &[f32], m: f32, out: &mut [f32]) {
            let t = &self.tab;
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2_fma(x: &[f32], m: f32, out: &mut [f32], t: &[u64; 32]) {
                    lanes::<true>(x, m, out, t)
                }
                #[target_feature(enable = "avx2")]
                fn avx2(x: &[f32], m: f32, out: &mut [f32], t: &[u64; 32]) {
                    lanes::<false>(x, m, out, t)
                }
                // SAFETY: a path is only a candidate where the CPU has its features
                // (`candidates`), and a chosen path is one of the candidates.
                match self.path {
                    Path::FusedAvx512 => {
                        unsafe { avx512::<false>(x, m, out, 0.0, t) };
                        return;
                    }
                    Path::FusedAvx2 => return unsafe { avx2_fma(x, m, out, t) },
                    Path::UnfusedAvx2 => return unsafe { avx2(x, m, out, t) },
                    _ => {}
                }
            }
            if self.path == Path::Library {
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (v - m).exp();
                }
                return;
            }
            lanes::<false>(x, m, out, t)
        }

        /// Each value `v` of `x` replaced by `expf(v - m)`, the library's bits; blocks with a
        /// difference of magnitude 88 or more, an infinity or a NaN take the library's calls.
        pub(crate) fn exp_shifted(&self, x: &mut [f32], m: f32) {
            let mut buf = [0f32; BLOCK];
            for c in x.chunks_mut(BLOCK) {
                let special = c.iter().fold(false, |s, &v| s | !((v - m).abs() < 88.0));
                if special || self.path == Path::Library {
                    c.iter_mut().for_each(|v| *v = (*v - m).exp());
                } else {
                    let b = &mut buf[..c.len()];
                    b.copy_from_slice(c);
                    self.block(b, m, c);
                }
            }
        }

        /// `m + ln(sum of expf(x - m))` with `m` the maximum of `x`, the sum in f64 in the
        /// order of `x`: the bits of the plain loop with one library call per value.
        pub(crate) fn logsumexp(&self, x: &[f32]) -> f32 {
            let (m, sum) = self.max_sum_exp(x);
            m + sum.ln() as f32
        }

        /// The maximum `m` of `x` (as `f32::max` folds it) and the sum of `expf(x - m)` in f64
        /// in the order of `x`, with the bits of the plain loop. A row with a NaN, an
        /// infinity or a value 88 or more below its maximum takes that loop.
        pub(crate) fn max_sum_exp(&self, x: &[f32]) -> (f32, f64) {
            let (m, lo, nan) = range(x);
            let mut sum = 0f64;
            if nan || !(lo - m > -88.0) || self.path == Path::Library {
                for &v in x {
                    sum += f64::from((v - m).exp());
                }
            } else if self.path == Path::FusedAvx512 {
                // SAFETY: the path is chosen only where the CPU has AVX-512 F (x86-64 only).
                #[cfg(target_arch = "x86_64")]
                return (m, unsafe { avx512::<true>(x, m, &mut [], 0.0, &self.tab) });
                #[cfg(not(target_arch = "x86_64"))]
                unreachable!("AVX-512 is a candidate on x86-64 only");
            } else {
                let mut buf = [0f32; BLOCK];
                for c in x.chunks(BLOCK) {
                    let b = &mut buf[..c.len()];
                    self.block(c, m, b);
                    for &e in b.iter() {
                        sum += f64::from(e);
                    }
                }
            }
            (m, sum)
        }
    }

    /// The maximum and minimum of `x` (`f32::max` and `f32::min`, which ignore NaN and give
    /// the same value in any order, so 16 lanes) and whether it holds a NaN.
    fn range(x: &[f32]) -> (f32, f32, bool) {
        let (mut hi, mut lo, mut nan) = ([f32::NEG_INFINITY; 16], [f32::INFINITY; 16], [false; 16]);
        let mut chunks = x.chunks_exact(16);
        for c in &mut chunks {
            for (i, &v) in c.iter().enumerate() {
                hi[i] = hi[i].max(v);
                lo[i] = lo[i].min(v);
                nan[i] |= v.is_nan();
            }
        }
        let rest = chunks.remainder();
        let m = rest.iter().chain(&hi).copied().fold(f32::NEG_INFINITY, f32::max);
        let l = rest.iter().chain(&lo).copied().fold(f32::INFINITY, f32::min);
        (m, l, nan.iter().any(|&n| n) || rest.iter().any(|v| v.is_nan()))
    }

    /// [`lanes`] with fused multiply-adds in AVX-512 intrinsics, eight values at a time, each
    /// written to `out` or, with `SUM`, added to `sum` in order (`out` unused). The compiler's
    /// version of the same loop fetches the table entries with a gather, which made it half
    /// as fast on an AMD EPYC (Zen 4); here they come from the four registers that hold the
    /// table (two two-source permutes and a blend on bit 4 of `k`). Adding in the same loop
    /// lets the sum's chain of dependent additions, the floor of a row's time, overlap the
    /// computation of the next values.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    fn avx512<const SUM: bool>(x: &[f32], m: f32, out: &mut [f32], mut sum: f64, tab: &[u64; 32]) -> f64 {
        use std::arch::x86_64::*;
        let n = if SUM { x.len() } else { x.len().min(out.len()) };
        let whole = n - n % 8;
        let mut wide = [0f64; 8];
        // SAFETY: loads of eight values at offsets i < whole <= n from `x` and, without
        // `SUM`, stores as many into `out` (n <= out.len()); the table is read as four vectors
        // of eight u64 from its 32 entries.
        unsafe {
            let t = tab.as_ptr().cast::<__m512i>();
            let (t0, t1, t2, t3) = (_mm512_loadu_si512(t), _mm512_loadu_si512(t.add(1)), _mm512_loadu_si512(t.add(2)), _mm512_loadu_si512(t.add(3)));
            let (inv, shift) = (_mm512_set1_pd(INV_LN2_N), _mm512_set1_pd(SHIFT));
            let (c0, c1, c2, one) = (_mm512_set1_pd(C0), _mm512_set1_pd(C1), _mm512_set1_pd(C2), _mm512_set1_pd(1.0));
            let (mv, bit4) = (_mm256_set1_ps(m), _mm512_set1_epi64(16));
            for i in (0..whole).step_by(8) {
                let xd = _mm512_cvtps_pd(_mm256_sub_ps(_mm256_loadu_ps(x.as_ptr().add(i)), mv));
                let z = _mm512_mul_pd(inv, xd);
                let kd = _mm512_add_pd(z, shift);
                let ki = _mm512_castpd_si512(kd);
                let r = _mm512_sub_pd(z, _mm512_sub_pd(kd, shift));
                let lo = _mm512_permutex2var_epi64(t0, ki, t1);
                let hi = _mm512_permutex2var_epi64(t2, ki, t3);
                let entry = _mm512_mask_blend_epi64(_mm512_test_epi64_mask(ki, bit4), lo, hi);
                let s = _mm512_castsi512_pd(_mm512_add_epi64(entry, _mm512_slli_epi64::<47>(ki)));
                let p = _mm512_fmadd_pd(c0, r, c1);
                let r2 = _mm512_mul_pd(r, r);
                let q = _mm512_fmadd_pd(c2, r, one);
                let e = _mm512_cvtpd_ps(_mm512_mul_pd(_mm512_fmadd_pd(p, r2, q), s));
                if SUM {
                    _mm512_storeu_pd(wide.as_mut_ptr(), _mm512_cvtps_pd(e));
                    for w in wide {
                        sum += w;
                    }
                } else {
                    _mm256_storeu_ps(out.as_mut_ptr().add(i), e);
                }
            }
        }
        let mut rest = [0f32; 8];
        let rest = if SUM { &mut rest[..n - whole] } else { &mut out[whole..n] };
        lanes::<true>(&x[whole..n], m, rest, tab);
        if SUM {
            for &e in rest.iter() {
                sum += f64::from(e);
            }
        }
        sum
    }

    /// glibc's steps for every value of one block, in lanes the compiler vectorizes; `FUSED`
    /// chooses fused multiply-adds where the library's FMA build contracts them.
    #[inline(always)]
    fn lanes<const FUSED: bool>(x: &[f32], m: f32, out: &mut [f32], tab: &[u64; 32]) {
        for (o, &v) in out.iter_mut().zip(x) {
            let xd = f64::from(v - m);
            let z = INV_LN2_N * xd;
            let kd = z + SHIFT;
            let ki = kd.to_bits();
            let r = z - (kd - SHIFT);
            let s = f64::from_bits(tab[(ki % 32) as usize].wrapping_add(ki << 47));
            let (p, r2, q) = if FUSED { (C0.mul_add(r, C1), r * r, C2.mul_add(r, 1.0)) } else { (C0 * r + C1, r * r, C2 * r + 1.0) };
            let y = if FUSED { p.mul_add(r2, q) } else { p * r2 + q };
            *o = (y * s) as f32;
        }
    }

    /// `tab[i] = bits(2^(i/32)) - (i << 47)`.
    fn table() -> [u64; 32] {
        std::array::from_fn(|i| (i as f64 / 32.0).exp2().to_bits().wrapping_sub((i as u64) << 47))
    }

    /// The paths this CPU can run, preferred first.
    fn candidates() -> Vec<Path> {
        let mut c = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                c.push(Path::FusedAvx512);
            }
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                c.push(Path::FusedAvx2);
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                c.push(Path::UnfusedAvx2);
            }
        }
        c.push(Path::Unfused);
        c
    }

    /// The inputs a candidate must agree on: 2^20 values spread over [-88, 0] (every table
    /// entry many times over, both signs of `r`), the ends, tiny values and zeros.
    fn sweep() -> Vec<f32> {
        let n = 1 << 20;
        let mut v: Vec<f32> = (0..n).map(|i| -88.0 * (i as f32 / n as f32)).collect();
        v.extend([0.0, -0.0, 1e-30, -1e-30, f32::MIN_POSITIVE, -87.999_99, 87.0, 1.0, 10.0, 50.0]);
        v
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        /// The plain loop the kernel replaces: one library call per value.
        fn plain(x: &[f32]) -> (f32, f64, f32) {
            let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum: f64 = x.iter().map(|v| f64::from((v - m).exp())).sum();
            (m, sum, m + sum.ln() as f32)
        }

        #[test]
        fn the_vector_path_has_the_library_bits_on_every_sixteenth_float_below_88() {
            let e = Expf::get();
            // glibc on x86-64 has the algorithm whose steps the candidates repeat; a vector
            // path falling back to the library there means a wrong constant or step.
            #[cfg(all(target_arch = "x86_64", target_env = "gnu"))]
            assert_ne!(e.path, Path::Library, "no candidate agreed with glibc's expf");
            // Every sixteenth f32 of magnitude below 88, both signs (about 135M values).
            let top = 88f32.to_bits();
            let mut xs = Vec::with_capacity(1 << 16);
            let mut out = vec![0f32; BLOCK];
            let mut bad = Vec::new();
            for sign in [0u32, 0x8000_0000] {
                let mut b = 0u32;
                while b < top {
                    xs.clear();
                    xs.extend((b..(b + (1 << 18)).min(top)).step_by(16).map(|u| f32::from_bits(sign | u)));
                    for c in xs.chunks(BLOCK) {
                        e.block(c, 0.0, &mut out[..c.len()]);
                        bad.extend(c.iter().zip(&out).filter(|(x, o)| x.exp().to_bits() != o.to_bits()).map(|(x, _)| *x).take(4));
                    }
                    b += 1 << 18;
                }
            }
            assert!(bad.is_empty(), "{:?} differ from the library (path {:?})", &bad[..bad.len().min(8)], e.path);
        }

        #[test]
        fn exp_shifted_max_sum_and_logsumexp_have_the_bits_of_the_plain_loops() {
            let e = Expf::get();
            let mut state = 0x2545_f491_4f6c_dd1du64;
            let mut next = move || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32
            };
            let mut rows: Vec<Vec<f32>> = [1usize, 15, 16, 17, 63, 64, 65, 1000, 49_152].iter().map(|&n| (0..n).map(|_| next() * 60.0 - 30.0).collect()).collect();
            rows.push(vec![f32::NAN, 1.0, 2.0]);
            rows.push(vec![1.0, f32::NEG_INFINITY, 3.0]);
            rows.push(vec![f32::INFINITY, 1.0]);
            rows.push(vec![f32::NEG_INFINITY; 3]);
            rows.push(vec![-200.0, 0.0, 5.0]);
            rows.push(vec![-0.0, 0.0, -0.0]);
            rows.push((0..300).map(|i| if i == 77 { 87.9 } else { -0.05 * i as f32 }).collect());
            let same32 = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
            for r in &rows {
                for m in [0.0, 1.5, -3.0, f32::INFINITY] {
                    let mut fast = r.clone();
                    e.exp_shifted(&mut fast, m);
                    for (i, (&f, &v)) in fast.iter().zip(r).enumerate() {
                        assert!(same32(f, (v - m).exp()), "row of {}, value {i}: expf({v} - {m}) = {f}", r.len());
                    }
                }
                let ((m, sum), lse, (pm, psum, plse)) = (e.max_sum_exp(r), e.logsumexp(r), plain(r));
                assert!(same32(m, pm) && (sum.to_bits() == psum.to_bits() || (sum.is_nan() && psum.is_nan())), "row of {}: ({m}, {sum}) against ({pm}, {psum})", r.len());
                assert!(same32(lse, plse), "row of {}: {lse} against {plse}", r.len());
            }
        }
    }
}
