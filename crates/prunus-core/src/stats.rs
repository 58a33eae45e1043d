//! Activation statistics a layer-wise method may ask for, gathered per capture site.

use candle_core::{CpuStorage, DType, Storage, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// What a method needs to know about a linear's inputs. Ordered: each kind includes the
/// cheaper ones before it (a Hessian run also has the squared norms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatKind {
    /// Nothing: the method looks at the weights only (magnitude).
    None,
    /// Per input feature j, the sum over calibration tokens of x_j^2 (Wanda).
    SqNorm,
    /// The full d_in x d_in Gram matrix sum of x x^T (SparseGPT).
    Hessian,
}

/// Statistics of one capture site's inputs over the calibration set, accumulated in f64.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// Input width.
    pub d_in: usize,
    /// Number of calibration sequences seen.
    pub n_samples: usize,
    /// Number of tokens seen (n_samples * seq_len).
    pub n_tokens: usize,
    /// Per feature sum over tokens of x_j^2, length d_in (if asked for).
    pub sq_sum: Option<Vec<f64>>,
    /// Row-major d_in x d_in sum over tokens of x x^T (if asked for).
    pub gram: Option<Vec<f64>>,
}

impl Stats {
    /// Empty statistics for a site of width `d_in`, gathering what `kind` needs.
    pub fn new(kind: StatKind, d_in: usize) -> Self {
        Stats {
            d_in,
            n_samples: 0,
            n_tokens: 0,
            sq_sum: (kind >= StatKind::SqNorm).then(|| vec![0.0; d_in]),
            gram: (kind >= StatKind::Hessian).then(|| vec![0.0; d_in * d_in]),
        }
    }

    /// Adds a batch of `n_samples` sequences whose inputs are `x`, (n_tokens, d_in).
    pub fn add(&mut self, x: &Tensor, n_samples: usize) -> Result<()> {
        let (n_tokens, d_in) = x.dims2()?;
        if d_in != self.d_in {
            return Err(crate::Error::Shape {
                tensor: "captured activations".into(),
                expected: vec![n_tokens, self.d_in],
                got: vec![n_tokens, d_in],
            });
        }
        if self.sq_sum.is_some() || self.gram.is_some() {
            // The activations as they are when they are contiguous f32 on the CPU (the
            // pipeline's case), else a copy.
            let plain = x.dtype() == DType::F32 && x.device().is_cpu() && x.is_contiguous();
            let owned = if plain { Vec::new() } else { x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()? };
            let (storage, layout) = x.storage_and_layout();
            let flat: &[f32] = match (plain, &*storage, layout.contiguous_offsets()) {
                (false, ..) => &owned,
                (true, Storage::Cpu(CpuStorage::F32(v)), Some((a, b))) => &v[a..b],
                (true, ..) => unreachable!("a contiguous f32 tensor on the CPU has its values in one f32 CPU buffer"),
            };
            if let Some(sq) = self.sq_sum.as_mut() {
                add_sq_sum(sq, flat, d_in)?;
            }
            if let Some(gram) = self.gram.as_mut() {
                // (d_in, n_tokens) x (n_tokens, d_in) in f32, summed per batch into f64.
                add_gram(gram, flat, n_tokens, d_in);
            }
        }
        self.n_samples += n_samples;
        self.n_tokens += n_tokens;
        Ok(())
    }

    /// Wanda's `scaler_row`: per feature, sum over tokens of x_j^2 divided by the number of
    /// sequences (Wanda's running mean over calibration sequences), or `None` if not gathered.
    pub fn mean_sq_per_sample(&self) -> Option<Vec<f64>> {
        let n = self.n_samples.max(1) as f64;
        self.sq_sum.as_ref().map(|s| s.iter().map(|v| v / n).collect())
    }
}

/// Adds the squares of `x` (rows of `d` values) to `sq`, column by column in row order (in
/// f64), the columns split into one contiguous group per thread of the rayon pool (each task
/// reads a run of every row): every sum takes its terms in the order a single loop over the
/// rows would, so the thread count changes no bit.
/// If a value is not finite, `sq` is left as it was and the error names the first one.
fn add_sq_sum(sq: &mut [f64], x: &[f32], d: usize) -> Result<()> {
    use rayon::prelude::*;

    let mut sums = sq.to_vec();
    let per_task = d.div_ceil(rayon::current_num_threads()).next_multiple_of(16).max(16);
    sums.par_chunks_mut(per_task).enumerate().for_each(|(c, acc)| {
        let c0 = c * per_task;
        for row in x.chunks_exact(d) {
            for (a, &v) in acc.iter_mut().zip(&row[c0..]) {
                *a += f64::from(v) * f64::from(v);
            }
        }
    });
    // A square of a finite f32 is far from f64's range, and sums of them too, so a sum that
    // is not finite means an input that was not.
    if sums.iter().any(|v| !v.is_finite()) {
        crate::mask::check_finite(x, "calibration activations")?;
    }
    sq.copy_from_slice(&sums);
    Ok(())
}

/// Rows of the Gram matrix per panel of [`add_gram`], at least (more than gemm's 64).
const GRAM_BLOCK: usize = 128;

/// Adds `x^T x` (d x d) for `x` (n x d, row-major) to the symmetric row-major `acc`, each
/// entry computed in f32 by gemm and added in f64, with about half the multiply-adds of the
/// whole product. The rows are cut into panels (of about [`GRAM_BLOCK`]) and each panel, in
/// parallel, is one product of its rows against the columns up to its last row, whose entries
/// are added both where they are and at their mirror above the diagonal: a panel owns every
/// entry whose larger index is one of its rows. As `acc` was symmetric and `x_a . x_b` and
/// `x_b . x_a` are one sum, the result is entry for entry what adding gemm's product of the
/// whole matrices gives: gemm's passes over the `n` rows depend on `n` alone once a product is
/// larger than 64 x 64 (a test checks the bits against candle's `x.t().matmul(&x)`).
fn add_gram(acc: &mut [f64], x: &[f32], n: usize, d: usize) {
    use rayon::prelude::*;

    /// `acc`, written by the panels at disjoint entries.
    struct Sum(*mut f64);
    // SAFETY: the panels write disjoint entries (those whose larger index is in the panel).
    unsafe impl Sync for Sum {}

    assert!(x.len() == n * d && acc.len() == d * d, "{n} x {d} activations, a {d} x {d} sum");
    if n == 0 {
        return;
    }
    // Panels of at least GRAM_BLOCK rows, or the whole matrix: gemm takes other paths for
    // products of at most 64 x 64 (there its passes over the rows split differently, which
    // changes the bits), so no panel may be that small unless the whole product is.
    let panels = (d / GRAM_BLOCK).max(1);
    let sum = Sum(acc.as_mut_ptr());
    // The largest panels (the last) first, for balance.
    (0..panels).into_par_iter().rev().for_each_init(Vec::new, |part: &mut Vec<f32>, p| {
        let (r0, r1) = (p * d / panels, (p + 1) * d / panels);
        part.resize((r1 - r0) * r1, 0.0);
        // SAFETY: lhs reads x[k * d + r0 + a] (a < r1 - r0, k < n) and rhs x[k * d + b]
        // (b < r1 <= d), inside x (n x d); part holds (r1 - r0) x r1, written row-major.
        unsafe {
            gemm::gemm(
                r1 - r0,
                r1,
                n,
                part.as_mut_ptr(),
                1,
                r1 as isize,
                false,
                x.as_ptr().add(r0),
                d as isize,
                1,
                x.as_ptr(),
                1,
                d as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        let sum = &sum;
        let at = |i: usize| {
            // SAFETY: i < d * d, and this panel alone writes entry i (the larger of its row
            // and column, `a` below, is one of the panel's rows): see `Sum`.
            unsafe { &mut *sum.0.add(i) }
        };
        for (a, row) in (r0..r1).zip(part.chunks_exact(r1)) {
            for (b, &v) in row[..=a].iter().enumerate() {
                *at(a * d + b) += f64::from(v);
            }
        }
        // The mirrors, row by row above the diagonal (a > b).
        for b in 0..r1 {
            for a in (b + 1).max(r0)..r1 {
                *at(b * d + a) += f64::from(part[(a - r0) * r1 + b]);
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn accumulates_sq_norm_and_gram() {
        let x = Tensor::new(&[[1f32, 2.0], [3.0, -1.0]], &Device::Cpu).unwrap();
        let mut s = Stats::new(StatKind::Hessian, 2);
        s.add(&x, 1).unwrap();
        s.add(&x, 1).unwrap();
        assert_eq!(s.sq_sum.as_deref(), Some(&[20.0, 10.0][..]));
        assert_eq!(s.gram.as_deref(), Some(&[20.0, -2.0, -2.0, 10.0][..]));
        assert_eq!(s.mean_sq_per_sample().unwrap(), vec![10.0, 5.0]);
        assert_eq!((s.n_samples, s.n_tokens), (2, 4));
    }

    #[test]
    fn none_gathers_nothing_and_nan_is_an_error() {
        let s = Stats::new(StatKind::None, 3);
        assert!(s.sq_sum.is_none() && s.gram.is_none());
        let x = Tensor::new(&[[1f32, f32::NAN]], &Device::Cpu).unwrap();
        let mut s = Stats::new(StatKind::SqNorm, 2);
        assert!(s.add(&x, 1).unwrap_err().to_string().contains("calibration activations"));
    }

    #[test]
    fn sq_sum_has_the_bits_of_one_loop_over_the_rows_in_any_pool() {
        for (n, d, seed) in [(2048, 576, 1), (300, 1536, 2), (7, 33, 3), (5, 1, 4), (64, 95, 5)] {
            let mut rng = prunus_rng::SplitMix64::new(seed);
            // Magnitudes from 1e-3 to 1e3, so that the order of the additions shows.
            let batches: Vec<Vec<f32>> = (0..2).map(|_| (0..n * d).map(|_| (rng.next_f32() - 0.5) * 10f32.powi((rng.next_u64() % 7) as i32 - 3)).collect()).collect();
            let mut serial = vec![0f64; d];
            for x in &batches {
                for row in x.chunks_exact(d) {
                    for (a, &v) in serial.iter_mut().zip(row) {
                        *a += f64::from(v) * f64::from(v);
                    }
                }
            }
            for threads in 1..=4 {
                let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
                let mut s = Stats::new(StatKind::SqNorm, d);
                pool.install(|| {
                    for x in &batches {
                        s.add(&Tensor::from_vec(x.clone(), (n, d), &Device::Cpu).unwrap(), 1).unwrap();
                    }
                });
                let same = s.sq_sum.as_deref().unwrap().iter().zip(&serial).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{n} x {d}, {threads} threads");
            }
        }
    }

    #[test]
    fn views_and_other_dtypes_are_read_by_value_and_errors_change_nothing() {
        let x = Tensor::new(&[[1f32, 2.0, 3.0], [4.0, 5.0, 6.0]], &Device::Cpu).unwrap();
        let mut plain = Stats::new(StatKind::Hessian, 2);
        plain.add(&x.t().unwrap().contiguous().unwrap(), 1).unwrap();
        let mut view = Stats::new(StatKind::Hessian, 2);
        view.add(&x.t().unwrap(), 1).unwrap(); // a transposed view, not contiguous
        assert_eq!((view.sq_sum.as_deref(), view.gram.as_deref()), (plain.sq_sum.as_deref(), plain.gram.as_deref()));
        let mut half = Stats::new(StatKind::Hessian, 2);
        half.add(&x.t().unwrap().to_dtype(DType::BF16).unwrap(), 1).unwrap();
        assert_eq!((half.sq_sum.as_deref(), half.gram.as_deref()), (plain.sq_sum.as_deref(), plain.gram.as_deref()));
        assert_eq!(plain.sq_sum.as_deref(), Some(&[14.0, 77.0][..]));
        // A non-finite value: the first is named and the sums stay as they were.
        let bad = Tensor::new(&[[1f32, 2.0], [f32::INFINITY, 1.0], [f32::NAN, 0.0]], &Device::Cpu).unwrap();
        let before = plain.clone();
        let err = plain.add(&bad, 1).unwrap_err();
        assert!(matches!(err, crate::Error::NonFinite { index: 2, .. }), "{err}");
        assert_eq!((plain.sq_sum, plain.gram, plain.n_tokens), (before.sq_sum, before.gram, before.n_tokens));
    }

    #[test]
    fn gram_has_the_bits_of_the_whole_product() {
        // Shapes of the real sites (576 and 1536 wide, 512 to 2048 tokens a batch), widths
        // the panels do not divide, more than 512 rows (gemm splits its passes over them), and
        // products small enough for gemm's other paths; added twice, onto a symmetric sum.
        for (n, d, seed) in [(2048, 576, 1), (512, 1536, 2), (1000, 200, 3), (700, 1000, 4), (1300, 130, 5), (100, 65, 6), (37, 50, 7), (5, 96, 8), (3, 1, 9), (0, 7, 10)] {
            let mut rng = prunus_rng::SplitMix64::new(seed);
            let (mut ours, mut whole_sum) = (vec![0f64; d * d], vec![0f64; d * d]);
            for _ in 0..2 {
                let x: Vec<f32> = (0..n * d).map(|_| rng.next_f32() * 4.0 - 2.0).collect();
                let t = Tensor::from_vec(x.clone(), (n, d), &Device::Cpu).unwrap();
                let whole = t.t().unwrap().matmul(&t).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                for (s, v) in whole_sum.iter_mut().zip(whole) {
                    *s += f64::from(v);
                }
                add_gram(&mut ours, &x, n, d);
            }
            let first = whole_sum.iter().zip(&ours).position(|(a, b)| a.to_bits() != b.to_bits());
            assert_eq!(first, None, "{n} x {d}: entry {first:?} differs");
        }
    }
}
