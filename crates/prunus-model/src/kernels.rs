//! Three fused CPU kernels for inference: a causal softmax that skips the masked half of the
//! attention scores, a row-wise log-sum-exp for the NLL, and SwiGLU's `silu(gate) * up` in
//! one pass. All split rows over candle's thread count (each output element is computed by one
//! thread, so the result does not depend on the count). None has a gradient; the
//! differentiable path composes ops.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

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

/// Softmax over the last dim (seq_len) where row g may only see columns 0..=g % seq_len:
/// the causal mask of attention scores laid out (..., n_rep * seq_len, seq_len).
struct CausalSoftmax;

impl CustomOp1 for CausalSoftmax {
    fn name(&self) -> &'static str {
        "causal-softmax"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let src = contiguous_f32(s, l, "causal softmax")?;
        let seq = l.dims().last().copied().unwrap_or(0);
        let mut out = vec![0f32; src.len()];
        if seq > 0 {
            par_rows(src, &mut out, seq, seq, |first, a, b| {
                for (k, (x, y)) in a.chunks_exact(seq).zip(b.chunks_exact_mut(seq)).enumerate() {
                    let n = (first + k) % seq + 1;
                    let m = x[..n].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f32;
                    for (xi, yi) in x[..n].iter().zip(&mut y[..n]) {
                        let e = (xi - m).exp();
                        *yi = e;
                        sum += e;
                    }
                    let inv = 1.0 / sum;
                    y[..n].iter_mut().for_each(|v| *v *= inv);
                }
            });
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }
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
            par_rows(src, &mut out, n, 1, |_, a, b| {
                for (x, y) in a.chunks_exact(n).zip(b.iter_mut()) {
                    let m = x.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    // Summed in f64: a vocabulary of ~50K terms loses the small ones in f32
                    // (perplexity came out 1.2e-4 relative too low against the numpy reference).
                    let sum: f64 = x.iter().map(|v| f64::from((v - m).exp())).sum();
                    *y = m + sum.ln() as f32;
                }
            });
        }
        Ok((CpuStorage::F32(out), Shape::from(&dims[..dims.len().saturating_sub(1)])))
    }
}

/// `silu(gate) * up` elementwise, with candle's own f32 formula for silu (`x / (1 + exp(-x))`),
/// so the result is bit for bit `gate.silu()? * up`, in one pass and one allocation instead of
/// two of each, and on every thread instead of one.
struct SwiGlu;

impl CustomOp2 for SwiGlu {
    fn name(&self) -> &'static str {
        "swiglu"
    }

    fn cpu_fwd(&self, s1: &CpuStorage, l1: &Layout, s2: &CpuStorage, l2: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let gate = contiguous_f32(s1, l1, "swiglu")?;
        let up = contiguous_f32(s2, l2, "swiglu")?;
        if l1.shape() != l2.shape() {
            candle_core::bail!("swiglu: gate {:?} and up {:?} differ in shape", l1.dims(), l2.dims());
        }
        let n = l1.dims().last().copied().unwrap_or(0);
        let mut out = vec![0f32; gate.len()];
        if n > 0 {
            // `par_rows` walks `gate` and the output; `up` is indexed by the same row offset.
            par_rows(gate, &mut out, n, n, |first, g, y| {
                let u = &up[first * n..first * n + g.len()];
                for ((y, &g), &u) in y.iter_mut().zip(g).zip(u) {
                    *y = g / (1.0 + (-g).exp()) * u;
                }
            });
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// `silu(gate) * up` for two f32 tensors of one shape (the SwiGLU MLP's activation).
pub(crate) fn swiglu(gate: &Tensor, up: &Tensor) -> candle_core::Result<Tensor> {
    gate.contiguous()?.apply_op2_no_bwd(&up.contiguous()?, &SwiGlu)
}

/// Causal softmax of attention scores (..., n_rep * seq_len, seq_len); masked entries are 0.
pub(crate) fn causal_softmax(scores: &Tensor) -> candle_core::Result<Tensor> {
    scores.contiguous()?.apply_op1_no_bwd(&CausalSoftmax)
}

/// Row-wise log-sum-exp, (..., n) -> (...).
pub(crate) fn row_logsumexp(x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&RowLogSumExp)
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    /// The fused SwiGLU is bit for bit candle's `gate.silu()? * up`, whatever the thread count
    /// splits the rows into (odd row count, rows not a multiple of anything).
    #[test]
    fn swiglu_is_candles_silu_times_up_bit_for_bit() {
        let mut rng = prunus_core::rng::SplitMix64::new(9);
        for (rows, cols) in [(7, 13), (64, 96), (1, 1), (333, 17)] {
            let mut v = rng.vec(rows * cols, 12.0);
            v[0] = -100.0; // exp overflows to infinity: silu is -0
            let gate = Tensor::from_vec(v, (rows, cols), &Device::Cpu).unwrap();
            let up = Tensor::from_vec(rng.vec(rows * cols, 3.0), (rows, cols), &Device::Cpu).unwrap();
            let want = (gate.silu().unwrap() * &up).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let got = super::swiglu(&gate, &up).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "{rows} x {cols}");
        }
        let a = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
        let b = Tensor::zeros((3, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
        assert!(super::swiglu(&a, &b).is_err());
    }
}
