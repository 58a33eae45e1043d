//! The kernels of the hand-written training path, on row-major f32 buffers: products through
//! the `gemm` crate (which picks AVX-512, AVX2 or portable kernels at run time), RMSNorm, RoPE,
//! causal attention and SwiGLU, each with its backward.
//!
//! Parallel work goes to the current rayon pool and is split so that no sum depends on the
//! thread count: `gemm` splits its output, never its reduction; row-wise passes own their rows;
//! the attention tasks own a (window, head) each, and the key/value gradients of a group are
//! summed over its query heads in head order after the tasks. Results are bit-identical with 1
//! or 2 threads.

use rayon::prelude::*;

/// How `gemm` may use threads: the current rayon pool's, inside which this runs.
fn parallelism(parallel: bool) -> gemm::Parallelism {
    let n = rayon::current_num_threads();
    if parallel && n > 1 { gemm::Parallelism::Rayon(n) } else { gemm::Parallelism::None }
}

/// A strided matrix operand: element (i, j) at `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Operand<'a> {
    pub data: &'a [f32],
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Operand<'a> {
    /// Row-major with row stride `rs`.
    pub fn rows(data: &'a [f32], rs: usize) -> Self {
        Operand { data, rs, cs: 1 }
    }

    /// The transpose of a row-major matrix with row stride `rs`.
    pub fn transposed(data: &'a [f32], rs: usize) -> Self {
        Operand { data, rs: 1, cs: rs }
    }

    fn check(&self, rows: usize, cols: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < self.data.len(), "{what}: element {last} of a buffer of {}", self.data.len());
        }
    }
}

/// `dst (m x n, row stride dst_rs) = [dst +] alpha * lhs (m x k) . rhs (k x n)`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul(m: usize, n: usize, k: usize, dst: &mut [f32], dst_rs: usize, accumulate: bool, lhs: Operand<'_>, rhs: Operand<'_>, alpha: f32, parallel: bool) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * dst_rs..i * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    lhs.check(m, k, "left operand");
    rhs.check(k, n, "right operand");
    assert!((m - 1) * dst_rs + n <= dst.len(), "product of {m} x {n} into a buffer of {}", dst.len());
    let product = |rhs: Operand<'_>, dst: &mut [f32]| {
        // SAFETY: every index the product touches is inside its buffer (checked above; a
        // transposed copy holds k x n values); dst does not alias the operands (a unique borrow).
        unsafe {
            gemm::gemm(
                m, n, k, dst.as_mut_ptr(), 1, dst_rs as isize, accumulate, lhs.data.as_ptr(), lhs.cs as isize, lhs.rs as isize, rhs.data.as_ptr(),
                rhs.cs as isize, rhs.rs as isize, 1.0, alpha, false, false, false, parallelism(parallel),
            );
        }
    };
    // A linear's weights (the transpose of a row-major matrix) times many rows: multiplied as
    // a transposed copy, which gemm reads as it is instead of gathering it into panels inside
    // the product; the same bits (prunus_sparse::transposing_pays).
    if parallel && rhs.rs == 1 && rhs.cs >= k && prunus_sparse::transposing_pays(m, n, k) {
        prunus_sparse::with_transposed(rhs.data, rhs.cs, n, k, |wt| product(Operand::rows(wt, n), dst));
    } else {
        product(rhs, dst);
    }
}

/// `y (t x o) = x (t x i) . W^T`, W (o x i).
pub(crate) fn linear(x: &[f32], w: &[f32], t: usize, i: usize, o: usize, y: &mut [f32]) {
    matmul(t, o, i, y, o, false, Operand::rows(x, i), Operand::transposed(w, i), 1.0, true);
}

/// `dx (t x i) [+]= dy (t x o) . W`.
pub(crate) fn linear_back_input(dy: &[f32], w: &[f32], t: usize, i: usize, o: usize, dx: &mut [f32], accumulate: bool) {
    matmul(t, i, o, dx, i, accumulate, Operand::rows(dy, o), Operand::rows(w, i), 1.0, true);
}

/// `dW (o x i) [+]= dy^T . x`.
pub(crate) fn linear_back_weight(dy: &[f32], x: &[f32], t: usize, i: usize, o: usize, dw: &mut [f32], accumulate: bool) {
    matmul(o, i, t, dw, i, accumulate, Operand::transposed(dy, o), Operand::rows(x, i), 1.0, true);
}

/// RMSNorm of each row of `x` (rows of `d`): `y = x * rstd * w`, `rstd = 1 / sqrt(mean(x^2) +
/// eps)` (the mean in f64), saved per row for the backward.
pub(crate) fn rms_norm(x: &[f32], w: &[f32], eps: f64, y: &mut [f32], rstd: &mut [f32]) {
    let d = w.len();
    y.par_chunks_mut(d).zip(x.par_chunks(d)).zip(rstd.par_iter_mut()).for_each(|((y, x), r)| {
        let ms = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / d as f64;
        *r = (1.0 / (ms + eps).sqrt()) as f32;
        for ((y, &x), &w) in y.iter_mut().zip(x).zip(w) {
            *y = x * *r * w;
        }
    });
}

/// The backward of [`rms_norm`]: `dx += rstd * (dy * w) - x * rstd^3 / d * sum(dy * w * x)`
/// per row, and `dw [+]= sum over rows of dy * x * rstd` (rows in order).
pub(crate) fn rms_norm_back(x: &[f32], w: &[f32], rstd: &[f32], dy: &[f32], dx: &mut [f32], dw: &mut [f32], accumulate: bool) {
    let d = w.len();
    dx.par_chunks_mut(d).zip(x.par_chunks(d)).zip(dy.par_chunks(d)).zip(rstd.par_iter()).for_each(|(((dx, x), dy), &r)| {
        let dot: f64 = x.iter().zip(dy).zip(w).map(|((&x, &g), &w)| f64::from(g) * f64::from(w) * f64::from(x)).sum();
        let c = (dot * f64::from(r).powi(3) / d as f64) as f32;
        for (((dx, &x), &g), &w) in dx.iter_mut().zip(x).zip(dy).zip(w) {
            *dx += r * g * w - x * c;
        }
    });
    if !accumulate {
        dw.fill(0.0);
    }
    for ((x, dy), &r) in x.chunks_exact(d).zip(dy.chunks_exact(d)).zip(rstd) {
        for ((dw, &x), &g) in dw.iter_mut().zip(x).zip(dy) {
            *dw += g * x * r;
        }
    }
}

/// The RoPE tables of positions `0..seq`, (seq, head_dim / 2), angles in f64 as the model's.
pub(crate) fn rope_tables(seq: usize, head_dim: usize, theta: f64) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let mut cos = Vec::with_capacity(seq * half);
    let mut sin = Vec::with_capacity(seq * half);
    for p in 0..seq {
        for i in 0..half {
            let a = p as f64 / theta.powf((2 * i) as f64 / head_dim as f64);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
    }
    (cos, sin)
}

/// Rotates every head of every row in place (`rotate_half` RoPE: dims i and i + hd/2 form a
/// pair); the row's position is its index modulo `seq`. With `inverse`, the transpose (the
/// backward).
pub(crate) fn rope(x: &mut [f32], heads: usize, hd: usize, seq: usize, cos: &[f32], sin: &[f32], inverse: bool) {
    let half = hd / 2;
    let sign = if inverse { -1.0 } else { 1.0 };
    x.par_chunks_mut(heads * hd).enumerate().for_each(|(row, r)| {
        let p = row % seq;
        let (c, s) = (&cos[p * half..(p + 1) * half], &sin[p * half..(p + 1) * half]);
        for h in r.chunks_exact_mut(hd) {
            for i in 0..half {
                let (a, b) = (h[i], h[i + half]);
                let si = sign * s[i];
                h[i] = a * c[i] - b * si;
                h[i + half] = b * c[i] + a * si;
            }
        }
    });
}

/// The shape of one attention call: `n` windows of `seq` positions, `heads` query heads over
/// `kv_heads` key/value heads of `hd` dims, scores scaled by `scale`.
#[derive(Clone, Copy)]
pub(crate) struct AttnShape {
    pub n: usize,
    pub seq: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub hd: usize,
    pub scale: f32,
}

impl AttnShape {
    fn group(&self, head: usize) -> usize {
        head / (self.heads / self.kv_heads)
    }
}

/// A buffer the attention tasks write disjoint parts of.
#[derive(Clone, Copy)]
pub(crate) struct Shared(*mut f32, usize);
// SAFETY: every task writes only its own (window, head) columns or rows (see the callers),
// and the buffer outlives the parallel loop.
unsafe impl Send for Shared {}
unsafe impl Sync for Shared {}

impl Shared {
    pub(crate) fn new(v: &mut [f32]) -> Self {
        Shared(v.as_mut_ptr(), v.len())
    }

    /// The whole buffer; callers write only what their task owns.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn get(&self) -> &mut [f32] {
        // SAFETY: the caller's contract (disjoint writes, live buffer).
        unsafe { std::slice::from_raw_parts_mut(self.0, self.1) }
    }
}

/// The scores of query head `j` of window `b` against its group's keys, scaled, into `s`
/// (seq x seq; the causal upper triangle is computed and then ignored).
fn scores(sh: &AttnShape, q: &[f32], k: &[f32], b: usize, j: usize, s: &mut [f32]) {
    let (seq, hd) = (sh.seq, sh.hd);
    let (qw, kw) = (sh.heads * hd, sh.kv_heads * hd);
    let g = sh.group(j);
    let qj = Operand::rows(&q[b * seq * qw + j * hd..], qw);
    let kg = Operand::transposed(&k[b * seq * kw + g * hd..], kw);
    matmul(seq, seq, hd, s, seq, false, qj, kg, sh.scale, false);
}

/// Causal attention forward. q (n*seq, heads*hd) and k, v (n*seq, kv_heads*hd), rotated;
/// writes `o` (n*seq, heads*hd) and the log-sum-exp of every score row, `lse` (n*seq, heads).
pub(crate) fn attention(sh: &AttnShape, q: &[f32], k: &[f32], v: &[f32], o: &mut [f32], lse: &mut [f32]) {
    let (seq, hd, h) = (sh.seq, sh.hd, sh.heads);
    let (qw, kw) = (h * hd, sh.kv_heads * hd);
    let (o_out, lse_out) = (Shared::new(o), Shared::new(lse));
    // The C library's expf, many values at a time (the same bits).
    let exp = crate::kernels::expf::Expf::get();
    (0..sh.n * h).into_par_iter().for_each_init(
        || vec![0f32; seq * seq],
        |s, task| {
            let (b, j) = (task / h, task % h);
            scores(sh, q, k, b, j, s);
            // SAFETY: this task writes the lse of (window b, head j) only.
            let lse = unsafe { lse_out.get() };
            for (p, row) in s.chunks_exact_mut(seq).enumerate() {
                let m = row[..=p].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                exp.exp_shifted(&mut row[..=p], m);
                let mut sum = 0f32;
                for x in &row[..=p] {
                    sum += *x;
                }
                let inv = 1.0 / sum;
                row[..=p].iter_mut().for_each(|x| *x *= inv);
                row[p + 1..].fill(0.0);
                lse[(b * seq + p) * h + j] = m + sum.ln();
            }
            let g = sh.group(j);
            // SAFETY: this task writes the columns of head j in the rows of window b only.
            let o = unsafe { o_out.get() };
            let dst = &mut o[b * seq * qw + j * hd..];
            let vg = Operand::rows(&v[b * seq * kw + g * hd..], kw);
            matmul(seq, hd, seq, dst, qw, false, Operand::rows(s, seq), vg, 1.0, false);
        },
    );
}

/// Causal attention backward: from `d_o` (the gradient of `o`) the gradients of the rotated
/// q, k and v (overwritten). The probabilities are recomputed from q, k and `lse`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention_back(sh: &AttnShape, q: &[f32], k: &[f32], v: &[f32], o: &[f32], lse: &[f32], d_o: &[f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let (n, seq, hd, h) = (sh.n, sh.seq, sh.hd, sh.heads);
    let (qw, kw) = (h * hd, sh.kv_heads * hd);
    // Per (window, query head): its share of its group's key and value gradients.
    let mut dk_part = vec![0f32; n * h * seq * hd];
    let mut dv_part = vec![0f32; n * h * seq * hd];
    let (dq_out, dk_out, dv_out) = (Shared::new(dq), Shared::new(&mut dk_part), Shared::new(&mut dv_part));
    // The C library's expf, many values at a time (the same bits).
    let exp = crate::kernels::expf::Expf::get();
    (0..n * h).into_par_iter().for_each_init(
        || (vec![0f32; seq * seq], vec![0f32; seq * seq], vec![0f32; seq]),
        |(p_buf, dp, delta), task| {
            let (b, j) = (task / h, task % h);
            let g = sh.group(j);
            scores(sh, q, k, b, j, p_buf);
            for (p, row) in p_buf.chunks_exact_mut(seq).enumerate() {
                let l = lse[(b * seq + p) * h + j];
                exp.exp_shifted(&mut row[..=p], l);
                row[p + 1..].fill(0.0);
            }
            let rows = b * seq * qw + j * hd;
            for (p, d) in delta.iter_mut().enumerate() {
                let (a, c) = (&d_o[rows + p * qw..rows + p * qw + hd], &o[rows + p * qw..rows + p * qw + hd]);
                *d = a.iter().zip(c).map(|(x, y)| x * y).sum();
            }
            let do_j = Operand::rows(&d_o[rows..], qw);
            let part = task * seq * hd;
            // SAFETY: this task owns part `task` of the partial buffers.
            let (dk_p, dv_p) = unsafe { (&mut dk_out.get()[part..part + seq * hd], &mut dv_out.get()[part..part + seq * hd]) };
            // dV_j = P^T dO_j.
            matmul(seq, hd, seq, dv_p, hd, false, Operand::transposed(p_buf, seq), do_j, 1.0, false);
            // dP = dO_j V_g^T; dS = P * (dP - delta).
            let vg = &v[b * seq * kw + g * hd..];
            matmul(seq, seq, hd, dp, seq, false, do_j, Operand::transposed(vg, kw), 1.0, false);
            for (p, (ds, pr)) in dp.chunks_exact_mut(seq).zip(p_buf.chunks_exact(seq)).enumerate() {
                for (x, &pv) in ds.iter_mut().zip(pr) {
                    *x = pv * (*x - delta[p]);
                }
            }
            // dQ_j = scale dS K_g; dK_j = scale dS^T Q_j.
            let kg = Operand::rows(&k[b * seq * kw + g * hd..], kw);
            // SAFETY: this task writes the columns of head j in the rows of window b only.
            let dq_all = unsafe { dq_out.get() };
            matmul(seq, hd, seq, &mut dq_all[rows..], qw, false, Operand::rows(dp, seq), kg, sh.scale, false);
            let qj = Operand::rows(&q[rows..], qw);
            matmul(seq, hd, seq, dk_p, hd, false, Operand::transposed(dp, seq), qj, sh.scale, false);
        },
    );
    // Each group's gradient: its query heads' parts, summed in head order.
    let rep = h / sh.kv_heads;
    let sum_parts = |parts: &[f32], out: &mut [f32]| {
        out.par_chunks_mut(kw).enumerate().for_each(|(row, out)| {
            let (b, p) = (row / seq, row % seq);
            for (g, dst) in out.chunks_exact_mut(hd).enumerate() {
                dst.fill(0.0);
                for j in g * rep..(g + 1) * rep {
                    let src = &parts[((b * h + j) * seq + p) * hd..][..hd];
                    dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                }
            }
        });
    };
    sum_parts(&dk_part, dk);
    sum_parts(&dv_part, dv);
}

/// `sigmoid(x)`.
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// SwiGLU: `act = silu(gate) * up`.
pub(crate) fn swiglu(gate: &[f32], up: &[f32], act: &mut [f32]) {
    act.par_chunks_mut(4096).zip(gate.par_chunks(4096)).zip(up.par_chunks(4096)).for_each(|((a, g), u)| {
        for ((a, &g), &u) in a.iter_mut().zip(g).zip(u) {
            *a = g * sigmoid(g) * u;
        }
    });
}

/// The backward of [`swiglu`]: `d_gate = d_act * up * silu'(gate)`, `d_up = d_act * silu(gate)`.
pub(crate) fn swiglu_back(gate: &[f32], up: &[f32], d_act: &[f32], d_gate: &mut [f32], d_up: &mut [f32]) {
    d_gate.par_chunks_mut(4096).zip(d_up.par_chunks_mut(4096)).enumerate().for_each(|(c, (dg, du))| {
        let base = c * 4096;
        for (i, (dg, du)) in dg.iter_mut().zip(du.iter_mut()).enumerate() {
            let (g, u, d) = (gate[base + i], up[base + i], d_act[base + i]);
            let s = sigmoid(g);
            *du = d * g * s;
            *dg = d * u * s * (1.0 + g * (1.0 - s));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A naive causal attention in f64: (o, lse).
    fn naive(sh: &AttnShape, q: &[f32], k: &[f32], v: &[f32]) -> (Vec<f64>, Vec<f64>) {
        let (seq, hd, h, kvh) = (sh.seq, sh.hd, sh.heads, sh.kv_heads);
        let mut o = vec![0f64; sh.n * seq * h * hd];
        let mut lse = vec![0f64; sh.n * seq * h];
        for b in 0..sh.n {
            for j in 0..h {
                let g = sh.group(j);
                for p in 0..seq {
                    let s: Vec<f64> = (0..=p)
                        .map(|r| (0..hd).map(|c| f64::from(q[(b * seq + p) * h * hd + j * hd + c]) * f64::from(k[(b * seq + r) * kvh * hd + g * hd + c])).sum::<f64>() * f64::from(sh.scale))
                        .collect();
                    let m = s.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
                    lse[(b * seq + p) * h + j] = m + z.ln();
                    for c in 0..hd {
                        o[(b * seq + p) * h * hd + j * hd + c] = (0..=p).map(|r| (s[r] - m).exp() / z * f64::from(v[(b * seq + r) * kvh * hd + g * hd + c])).sum();
                    }
                }
            }
        }
        (o, lse)
    }

    fn data(len: usize, seed: u64) -> Vec<f32> {
        let mut r = prunus_core::rng::SplitMix64::new(seed);
        (0..len).map(|_| r.next_f32() * 2.0 - 1.0).collect()
    }

    #[test]
    fn a_linears_product_through_the_transposed_copy_has_the_plain_bits() {
        // parallel: many rows through the transposed copy of the weights; not parallel: gemm
        // on the strided weights, one thread. Overwriting and accumulating.
        for (t, i, o) in [(130, 70, 40), (256, 96, 200)] {
            let (x, w, start) = (data(t * i, 1), data(o * i, 2), data(t * o, 3));
            for accumulate in [false, true] {
                let (mut fast, mut plain) = (start.clone(), start.clone());
                matmul(t, o, i, &mut fast, o, accumulate, Operand::rows(&x, i), Operand::transposed(&w, i), 1.0, true);
                matmul(t, o, i, &mut plain, o, accumulate, Operand::rows(&x, i), Operand::transposed(&w, i), 1.0, false);
                let differ = fast.iter().zip(&plain).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                assert_eq!(differ, 0, "{t} x {i} x {o}, accumulate {accumulate}");
            }
        }
    }

    #[test]
    fn attention_matches_a_naive_computation_and_its_backward_the_differences() {
        let sh = AttnShape { n: 2, seq: 7, heads: 4, kv_heads: 2, hd: 6, scale: 0.4 };
        let (rows, qw, kw) = (sh.n * sh.seq, sh.heads * sh.hd, sh.kv_heads * sh.hd);
        let (q, k, v) = (data(rows * qw, 1), data(rows * kw, 2), data(rows * kw, 3));
        let (mut o, mut lse) = (vec![0f32; rows * qw], vec![0f32; rows * sh.heads]);
        attention(&sh, &q, &k, &v, &mut o, &mut lse);
        let (want_o, want_lse) = naive(&sh, &q, &k, &v);
        for (a, b) in o.iter().zip(&want_o).chain(lse.iter().zip(&want_lse)) {
            assert!((f64::from(*a) - b).abs() < 1e-5, "{a} vs {b}");
        }
        // The backward of loss = sum(o * w) against central differences of the naive one.
        let w = data(rows * qw, 4);
        let (mut dq, mut dk, mut dv) = (vec![0f32; q.len()], vec![0f32; k.len()], vec![0f32; v.len()]);
        attention_back(&sh, &q, &k, &v, &o, &lse, &w, &mut dq, &mut dk, &mut dv);
        let loss = |q: &[f32], k: &[f32], v: &[f32]| naive(&sh, q, k, v).0.iter().zip(&w).map(|(o, w)| o * f64::from(*w)).sum::<f64>();
        for (which, grad) in [(0, &dq), (1, &dk), (2, &dv)] {
            for i in (0..grad.len()).step_by(5) {
                let mut bufs = [q.clone(), k.clone(), v.clone()];
                let h = 1e-3f32;
                bufs[which][i] += h;
                let up = loss(&bufs[0], &bufs[1], &bufs[2]);
                bufs[which][i] -= 2.0 * h;
                let down = loss(&bufs[0], &bufs[1], &bufs[2]);
                let fd = (up - down) / (2.0 * f64::from(h));
                assert!((fd - f64::from(grad[i])).abs() < 2e-3 * (1.0 + fd.abs()), "operand {which} index {i}: {} vs {fd}", grad[i]);
            }
        }
    }

    #[test]
    fn rope_backward_is_the_transpose_and_norm_backward_the_differences() {
        let (heads, hd, seq) = (2, 8, 3);
        let (cos, sin) = rope_tables(seq, hd, 10000.0);
        let x = data(seq * heads * hd, 5);
        let mut y = x.clone();
        rope(&mut y, heads, hd, seq, &cos, &sin, false);
        rope(&mut y, heads, hd, seq, &cos, &sin, true);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() < 1e-6);
        }
        let d = 5;
        let (x, w, dy) = (data(3 * d, 6), data(d, 7), data(3 * d, 8));
        let (mut out, mut r) = (vec![0f32; 3 * d], vec![0f32; 3]);
        rms_norm(&x, &w, 1e-5, &mut out, &mut r);
        let (mut dx, mut dw) = (vec![0f32; 3 * d], vec![0f32; d]);
        rms_norm_back(&x, &w, &r, &dy, &mut dx, &mut dw, false);
        let loss = |x: &[f32], w: &[f32]| {
            let (mut y, mut r) = (vec![0f32; 3 * d], vec![0f32; 3]);
            rms_norm(x, w, 1e-5, &mut y, &mut r);
            y.iter().zip(&dy).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum::<f64>()
        };
        let h = 1e-2f32;
        for i in 0..3 * d {
            let (mut up, mut down) = (x.clone(), x.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&up, &w) - loss(&down, &w)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(dx[i])).abs() < 1e-3, "dx[{i}]: {} vs {fd}", dx[i]);
        }
        for i in 0..d {
            let (mut up, mut down) = (w.clone(), w.clone());
            up[i] += h;
            down[i] -= h;
            let fd = (loss(&x, &up) - loss(&x, &down)) / (2.0 * f64::from(h));
            assert!((fd - f64::from(dw[i])).abs() < 1e-3, "dw[{i}]: {} vs {fd}", dw[i]);
        }
    }
}
