//! Causal attention on the CPU for inference, fused.
//!
//! One task per (window, key/value group, block of query positions) computes the scores of the
//! group's query heads (stacked, so one product serves them all) against the keys up to the
//! block's last position only, so the masked upper triangle is never computed. It then takes
//! the causal softmax and multiplies by the values, writing straight into the (n, seq, heads x
//! head_dim) layout the output projection reads. The products go to the `gemm` crate (which
//! picks its AVX-512, AVX2 or portable kernels at run time), single-threaded inside a task.
//! Tasks own disjoint output rows and each row is computed the same way whoever runs it, so
//! results do not depend on the thread count.
//!
//! No gradient: the differentiable path composes candle ops, and so do token trees (their
//! mask is not causal).

use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

/// Query positions per task.
const BLOCK: usize = 64;

/// The op: q (n, heads, seq, hd), k and v (n, kv_heads, seq, hd), all contiguous f32.
struct CausalAttention {
    scale: f32,
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("causal attention expects f32 {what}") };
    let Some((a, b)) = l.contiguous_offsets() else { candle_core::bail!("causal attention expects contiguous {what}") };
    Ok(&v[a..b])
}

/// The output buffer, shared by the tasks; each writes only its own rows.
#[derive(Clone, Copy)]
struct Out(*mut f32);
// SAFETY: tasks write disjoint rows (see `cpu_fwd`), and the buffer outlives the scope.
unsafe impl Send for Out {}
unsafe impl Sync for Out {}

impl Out {
    /// The address of element `i` (a method, so that closures capture the whole `Out`).
    fn at(self, i: usize) -> *mut f32 {
        self.0.wrapping_add(i)
    }
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(&self, qs: &CpuStorage, ql: &Layout, ks: &CpuStorage, kl: &Layout, vs: &CpuStorage, vl: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (q, k, v) = (slice(qs, ql, "queries")?, slice(ks, kl, "keys")?, slice(vs, vl, "values")?);
        let (n, h, seq, hd) = ql.shape().dims4()?;
        let (kn, kvh, kseq, khd) = kl.shape().dims4()?;
        if (kn, kseq, khd) != (n, seq, hd) || vl.shape() != kl.shape() || kvh == 0 || h % kvh != 0 {
            candle_core::bail!("causal attention: q {:?}, k {:?}, v {:?} do not fit", ql.dims(), kl.dims(), vl.dims());
        }
        let rep = h / kvh;
        let blocks = seq.div_ceil(BLOCK);
        let tasks = n * kvh * blocks;
        let mut out = vec![0f32; n * seq * h * hd];
        let dst = Out(out.as_mut_ptr());
        let next = AtomicUsize::new(0);
        let threads = candle_core::utils::get_num_threads().clamp(1, tasks.max(1));
        let scale = self.scale;
        // The C library's expf, many values at a time (the same bits).
        let exp = crate::kernels::expf::Expf::get();
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut stacked = vec![0f32; rep * BLOCK * hd];
                    let mut scores = vec![0f32; rep * BLOCK * seq];
                    loop {
                        let t = next.fetch_add(1, Ordering::Relaxed);
                        if t >= tasks {
                            break;
                        }
                        // The costliest blocks (the last positions) first.
                        let (bg, blk) = (t / blocks, blocks - 1 - t % blocks);
                        let (b, g) = (bg / kvh, bg % kvh);
                        let a = blk * BLOCK;
                        let bq = BLOCK.min(seq - a);
                        let e = a + bq; // keys 0..e
                        let rows = rep * bq;
                        // The group's query heads, positions a..e, stacked: row j * bq + r.
                        for j in 0..rep {
                            let head = g * rep + j;
                            let src = &q[((b * h + head) * seq + a) * hd..((b * h + head) * seq + e) * hd];
                            stacked[j * bq * hd..(j + 1) * bq * hd].copy_from_slice(src);
                        }
                        let kg = &k[(b * kvh + g) * seq * hd..];
                        let vg = &v[(b * kvh + g) * seq * hd..];
                        let sc = &mut scores[..rows * e];
                        // SAFETY: `sc` is rows x e (row stride e); `stacked` rows x hd (row
                        // stride hd); the keys are e rows of hd from `kg`, read transposed
                        // (column c of the right-hand side is key row c). No aliasing.
                        unsafe {
                            gemm::gemm(
                                rows, e, hd, sc.as_mut_ptr(), 1, e as isize, false, stacked.as_ptr(), 1, hd as isize, kg.as_ptr(), hd as isize, 1, 0.0,
                                scale, false, false, false, gemm::Parallelism::None,
                            );
                        }
                        for (r, row) in sc.chunks_exact_mut(e).enumerate() {
                            let visible = a + r % bq + 1;
                            let m = row[..visible].iter().copied().fold(f32::NEG_INFINITY, f32::max);
                            exp.exp_shifted(&mut row[..visible], m);
                            let mut sum = 0f32;
                            for x in &row[..visible] {
                                sum += *x;
                            }
                            let inv = 1.0 / sum;
                            row[..visible].iter_mut().for_each(|x| *x *= inv);
                            row[visible..].iter_mut().for_each(|x| *x = 0.0);
                        }
                        for j in 0..rep {
                            let head = g * rep + j;
                            let probs = &sc[j * bq * e..(j + 1) * bq * e];
                            let offset = ((b * seq + a) * h + head) * hd;
                            // SAFETY: the destination rows (b, a..e, head) are this task's alone
                            // (tasks split b, g, the position blocks, and j the heads of g);
                            // row stride h * hd inside the n * seq * h * hd buffer.
                            unsafe {
                                gemm::gemm(
                                    bq, hd, e, dst.at(offset), 1, (h * hd) as isize, false, probs.as_ptr(), 1, e as isize, vg.as_ptr(), 1, hd as isize,
                                    0.0, 1.0, false, false, false, gemm::Parallelism::None,
                                );
                            }
                        }
                    }
                });
            }
        });
        Ok((CpuStorage::F32(out), Shape::from((n, seq, h * hd))))
    }
}

/// Causal attention of q (n, heads, seq, hd) over k and v (n, kv_heads, seq, hd), scores scaled
/// by `scale`; returns (n, seq, heads * hd). Grouped-query attention: query head `h` reads
/// key/value head `h / (heads / kv_heads)`.
pub(crate) fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f32) -> candle_core::Result<Tensor> {
    q.contiguous()?.apply_op3_no_bwd(&k.contiguous()?, &v.contiguous()?, &CausalAttention { scale })
}
