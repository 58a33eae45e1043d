//! The training loss and its gradients by a hand-written backward pass (the approach of
//! karpathy's llm.c for GPT-2): the Llama forward on flat f32 buffers, keeping what the
//! backward needs, then the backward block by block in reverse.
//!
//! [`LlamaModel::manual_loss_and_grads`] computes what [`LlamaModel::loss_and_grads`] computes
//! on candle autograd, the mean next-token cross-entropy of a batch of windows and the gradient
//! of every parameter, in f32, without building a graph: the products go straight to `gemm`
//! with the layouts the math needs (no transposed copies), every buffer is allocated once per
//! call, the attention probabilities are recomputed in the backward from the saved
//! log-sum-exp of each score row (flash-attention style) instead of being stored, and the
//! output head's logits are taken 512 rows at a time. Kept per block for the backward: its
//! input, both normed inputs and their inverse RMS, the rotated q and k, v, the attention
//! output and its row log-sum-exps, the residual after attention, gate, up and the SwiGLU
//! activation: about (6 d + 2 (q + kv) + 3 d_ffn) floats per token per block.
//!
//! Checked against the autograd path and central differences in `tests/suite/backprop.rs`;
//! the kernels and their determinism are in [`ops`].

pub(crate) mod ops;

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::error::{ModelError, Result};
use crate::layout::BlockSlot;
use crate::llama::LlamaModel;
use ops::{AttnShape, linear, linear_back_input, linear_back_weight};

/// Rows of logits computed at once (memory: rows x vocab floats).
const HEAD_ROWS: usize = 512;

/// What the forward keeps of one block for its backward.
struct Saved {
    x: Vec<f32>,
    h1: Vec<f32>,
    r1: Vec<f32>,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    o: Vec<f32>,
    lse: Vec<f32>,
    x2: Vec<f32>,
    h2: Vec<f32>,
    r2: Vec<f32>,
    g: Vec<f32>,
    u: Vec<f32>,
    a: Vec<f32>,
}

/// One block's weights as slices, in [`BlockSlot`] order, and its widths.
struct BlockWeights<'a> {
    w: [&'a [f32]; 9],
    q: usize,
    kv: usize,
    ff: usize,
    heads: usize,
    kv_heads: usize,
}

impl BlockWeights<'_> {
    fn get(&self, s: BlockSlot) -> &[f32] {
        self.w[s as usize]
    }
}

/// The f32 contents of a contiguous CPU tensor.
fn f32_slice<'a>(guard: &'a Storage, layout: &candle_core::Layout, what: &str) -> Result<&'a [f32]> {
    match guard {
        Storage::Cpu(CpuStorage::F32(v)) if layout.is_contiguous() => {
            let start = layout.start_offset();
            Ok(&v[start..start + layout.shape().elem_count()])
        }
        _ => Err(ModelError::Backprop { reason: format!("needs contiguous f32 CPU tensors; {what} is not") }),
    }
}

impl LlamaModel {
    /// Mean next-token cross-entropy of `tokens` (`n` windows of `seq` ids, row-major) in nats
    /// and the gradient of every parameter, in [`named_tensors`](Self::named_tensors) order, by
    /// the hand-written backward (see the [module docs](crate::backprop)). The loss averages the
    /// n * (seq - 1) predictions, summed in f64.
    pub fn manual_loss_and_grads(&self, tokens: &[u32], n: usize, seq: usize) -> Result<(f64, Vec<Vec<f32>>)> {
        let mut grads: Vec<Vec<f32>> = self.named_tensors().iter().map(|(_, t)| vec![0f32; t.elem_count()]).collect();
        let loss = self.manual_into(tokens, n, seq, &mut grads, false)?;
        Ok((loss, grads))
    }

    /// [`manual_loss_and_grads`](Self::manual_loss_and_grads) with the gradients added into
    /// `acc` (one buffer per parameter, in [`named_tensors`](Self::named_tensors) order), for
    /// accumulation over micro-batches without a buffer per micro-batch; returns the loss.
    pub fn manual_add_loss_and_grads(&self, tokens: &[u32], n: usize, seq: usize, acc: &mut [Vec<f32>]) -> Result<f64> {
        let lens: Vec<usize> = self.named_tensors().iter().map(|(_, t)| t.elem_count()).collect();
        if acc.len() != lens.len() || acc.iter().zip(&lens).any(|(a, &l)| a.len() != l) {
            return Err(ModelError::Backprop { reason: format!("{} gradient buffers do not fit the model's {} parameters", acc.len(), lens.len()) });
        }
        self.manual_into(tokens, n, seq, acc, true)
    }

    /// The loss, with the gradients written into `grads` (or added, with `accumulate`).
    fn manual_into(&self, tokens: &[u32], n: usize, seq: usize, grads: &mut [Vec<f32>], accumulate: bool) -> Result<f64> {
        let c = &self.config;
        let (d, vocab) = (c.hidden_size, c.vocab_size);
        if seq < 2 || n == 0 || tokens.len() != n * seq {
            return Err(ModelError::Tokens { reason: format!("{} ids for {n} windows of {seq} (at least 2 each)", tokens.len()) });
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= vocab) {
            return Err(ModelError::Tokens { reason: format!("token id {bad} is out of range for vocab_size {vocab}") });
        }
        let t_rows = n * seq;
        // Borrow every weight's storage for the whole call.
        let tensors: Vec<(String, Tensor)> = self.named_tensors().into_iter().map(|(name, t)| Ok((name, t.contiguous()?))).collect::<Result<_>>()?;
        let guards: Vec<_> = tensors.iter().map(|(_, t)| t.storage_and_layout()).collect();
        let slices: Vec<&[f32]> = guards.iter().zip(&tensors).map(|((g, l), (name, t))| {
            if t.dtype() != DType::F32 {
                return Err(ModelError::Backprop { reason: format!("needs f32 weights; {name} is {:?}", t.dtype()) });
            }
            f32_slice(g, l, name)
        }).collect::<Result<_>>()?;
        let embed = slices[0];
        let mut blocks = Vec::with_capacity(self.blocks.len());
        for b in 0..self.blocks.len() {
            let w: [&[f32]; 9] = std::array::from_fn(|i| slices[1 + 9 * b + i]);
            let (heads, kv_heads) = (c.layer_heads(b), c.layer_kv_heads(b));
            let bw = BlockWeights { q: w[BlockSlot::QProj as usize].len() / d, kv: w[BlockSlot::KProj as usize].len() / d, ff: w[BlockSlot::GateProj as usize].len() / d, heads, kv_heads, w };
            if bw.q != heads * c.head_dim() || bw.kv != kv_heads * c.head_dim() || kv_heads == 0 || heads % kv_heads != 0 {
                return Err(ModelError::Backprop { reason: format!("block {b}: q {} and kv {} rows do not fit {heads} heads over {kv_heads} groups", bw.q, bw.kv) });
            }
            blocks.push(bw);
        }
        let final_norm = slices[1 + 9 * self.blocks.len()];
        let head = if self.is_tied() { embed } else { slices[2 + 9 * self.blocks.len()] };
        let (cos, sin) = ops::rope_tables(seq, c.head_dim(), c.rope_theta);
        let eps = c.rms_norm_eps;

        // Forward.
        let mut x = vec![0f32; t_rows * d];
        for (row, &id) in x.chunks_exact_mut(d).zip(tokens) {
            row.copy_from_slice(&embed[id as usize * d..(id as usize + 1) * d]);
        }
        let mut saved = Vec::with_capacity(blocks.len());
        for bw in &blocks {
            let (s, next) = block_forward(bw, x, n, seq, c.head_dim(), eps, &cos, &sin);
            saved.push(s);
            x = next;
        }
        let (mut xf, mut rf) = (vec![0f32; t_rows * d], vec![0f32; t_rows]);
        ops::rms_norm(&x, final_norm, eps, &mut xf, &mut rf);

        // The head and the loss, HEAD_ROWS predictions at a time.
        let preds: Vec<(usize, u32)> = (0..n).flat_map(|b| (0..seq - 1).map(move |p| (b * seq + p, tokens[b * seq + p + 1]))).collect();
        let inv = 1.0 / preds.len() as f64;
        let n_blocks = self.blocks.len();
        let head_slot = if self.is_tied() { 0 } else { 2 + 9 * n_blocks };
        let mut dxf = vec![0f32; t_rows * d];
        let mut loss = 0f64;
        let mut logits = vec![0f32; HEAD_ROWS.min(preds.len()) * vocab];
        let mut rows = vec![0f32; HEAD_ROWS.min(preds.len()) * d];
        let mut d_rows = vec![0f32; HEAD_ROWS.min(preds.len()) * d];
        for (chunk_index, chunk) in preds.chunks(HEAD_ROWS).enumerate() {
            let m = chunk.len();
            for (dst, &(r, _)) in rows.chunks_exact_mut(d).zip(chunk) {
                dst.copy_from_slice(&xf[r * d..(r + 1) * d]);
            }
            linear(&rows[..m * d], head, m, d, vocab, &mut logits[..m * vocab]);
            let mut row_loss = vec![0f64; m];
            {
                use rayon::prelude::*;
                let exp = crate::kernels::expf::Expf::get();
                logits[..m * vocab].par_chunks_mut(vocab).zip(row_loss.par_iter_mut()).zip(chunk.par_iter()).for_each(|((l, out), &(_, target))| {
                    // The maximum and the f64 sum of `expf(v - mx)` in order, many at a time.
                    let (mx, sum) = exp.max_sum_exp(l);
                    let lse = f64::from(mx) + sum.ln();
                    *out = lse - f64::from(l[target as usize]);
                    for v in l.iter_mut() {
                        *v = ((f64::from(*v) - lse).exp() * inv) as f32;
                    }
                    l[target as usize] -= inv as f32;
                });
            }
            loss += row_loss.iter().sum::<f64>();
            let dl = &logits[..m * vocab];
            linear_back_input(dl, head, m, d, vocab, &mut d_rows[..m * d], false);
            linear_back_weight(dl, &rows[..m * d], m, d, vocab, &mut grads[head_slot], accumulate || chunk_index > 0);
            for (src, &(r, _)) in d_rows.chunks_exact(d).zip(chunk) {
                dxf[r * d..(r + 1) * d].copy_from_slice(src);
            }
        }
        drop((logits, rows, d_rows));

        // Backward.
        let mut dx = vec![0f32; t_rows * d];
        ops::rms_norm_back(&x, final_norm, &rf, &dxf, &mut dx, &mut grads[1 + 9 * n_blocks], accumulate);
        drop((xf, dxf, x));
        for (b, (bw, s)) in blocks.iter().zip(saved).enumerate().rev() {
            dx = block_backward(bw, s, dx, n, seq, c.head_dim(), &cos, &sin, &mut grads[1 + 9 * b..1 + 9 * (b + 1)], accumulate);
        }
        // The embedding: the head's share is in it already when tied.
        let d_embed = &mut grads[0];
        if !self.is_tied() && !accumulate {
            d_embed.fill(0.0);
        }
        for (row, &id) in dx.chunks_exact(d).zip(tokens) {
            d_embed[id as usize * d..(id as usize + 1) * d].iter_mut().zip(row).for_each(|(g, v)| *g += v);
        }
        Ok(loss * inv)
    }
}

/// One block forward on `x` (n*seq, d); returns what it keeps and the block's output.
#[allow(clippy::too_many_arguments)]
fn block_forward(w: &BlockWeights<'_>, x: Vec<f32>, n: usize, seq: usize, hd: usize, eps: f64, cos: &[f32], sin: &[f32]) -> (Saved, Vec<f32>) {
    use BlockSlot::*;
    let d = w.get(AttnNorm).len();
    let t = n * seq;
    let (mut h1, mut r1) = (vec![0f32; t * d], vec![0f32; t]);
    ops::rms_norm(&x, w.get(AttnNorm), eps, &mut h1, &mut r1);
    let (mut q, mut k, mut v) = (vec![0f32; t * w.q], vec![0f32; t * w.kv], vec![0f32; t * w.kv]);
    linear(&h1, w.get(QProj), t, d, w.q, &mut q);
    linear(&h1, w.get(KProj), t, d, w.kv, &mut k);
    linear(&h1, w.get(VProj), t, d, w.kv, &mut v);
    ops::rope(&mut q, w.heads, hd, seq, cos, sin, false);
    ops::rope(&mut k, w.kv_heads, hd, seq, cos, sin, false);
    let sh = AttnShape { n, seq, heads: w.heads, kv_heads: w.kv_heads, hd, scale: (1.0 / (hd as f64).sqrt()) as f32 };
    let (mut o, mut lse) = (vec![0f32; t * w.q], vec![0f32; t * w.heads]);
    ops::attention(&sh, &q, &k, &v, &mut o, &mut lse);
    let mut x2 = x.clone();
    ops::matmul(t, d, w.q, &mut x2, d, true, ops::Operand::rows(&o, w.q), ops::Operand::transposed(w.get(OProj), w.q), 1.0, true);
    let (mut h2, mut r2) = (vec![0f32; t * d], vec![0f32; t]);
    ops::rms_norm(&x2, w.get(FfnNorm), eps, &mut h2, &mut r2);
    let (mut g, mut u, mut a) = (vec![0f32; t * w.ff], vec![0f32; t * w.ff], vec![0f32; t * w.ff]);
    linear(&h2, w.get(GateProj), t, d, w.ff, &mut g);
    linear(&h2, w.get(UpProj), t, d, w.ff, &mut u);
    ops::swiglu(&g, &u, &mut a);
    let mut out = x2.clone();
    ops::matmul(t, d, w.ff, &mut out, d, true, ops::Operand::rows(&a, w.ff), ops::Operand::transposed(w.get(DownProj), w.ff), 1.0, true);
    (Saved { x, h1, r1, q, k, v, o, lse, x2, h2, r2, g, u, a }, out)
}

/// One block backward from the gradient of its output: writes (or adds, with `acc`) the
/// gradients of its nine tensors into `grads` ([`BlockSlot`] order) and returns the gradient
/// of its input.
#[allow(clippy::too_many_arguments)]
fn block_backward(w: &BlockWeights<'_>, s: Saved, dout: Vec<f32>, n: usize, seq: usize, hd: usize, cos: &[f32], sin: &[f32], grads: &mut [Vec<f32>], acc: bool) -> Vec<f32> {
    use BlockSlot::*;
    let d = w.get(AttnNorm).len();
    let t = n * seq;
    // MLP: out = x2 + down(silu(gate(h2)) * up(h2)).
    linear_back_weight(&dout, &s.a, t, w.ff, d, &mut grads[DownProj as usize], acc);
    let mut da = vec![0f32; t * w.ff];
    linear_back_input(&dout, w.get(DownProj), t, w.ff, d, &mut da, false);
    let (mut dg, mut du) = (vec![0f32; t * w.ff], vec![0f32; t * w.ff]);
    ops::swiglu_back(&s.g, &s.u, &da, &mut dg, &mut du);
    drop(da);
    linear_back_weight(&dg, &s.h2, t, d, w.ff, &mut grads[GateProj as usize], acc);
    linear_back_weight(&du, &s.h2, t, d, w.ff, &mut grads[UpProj as usize], acc);
    let mut dh2 = vec![0f32; t * d];
    linear_back_input(&dg, w.get(GateProj), t, d, w.ff, &mut dh2, false);
    linear_back_input(&du, w.get(UpProj), t, d, w.ff, &mut dh2, true);
    drop((dg, du));
    let mut dx2 = dout;
    ops::rms_norm_back(&s.x2, w.get(FfnNorm), &s.r2, &dh2, &mut dx2, &mut grads[FfnNorm as usize], acc);
    drop(dh2);
    // Attention: x2 = x + o_proj(attention(rope(q(h1)), rope(k(h1)), v(h1))).
    linear_back_weight(&dx2, &s.o, t, w.q, d, &mut grads[OProj as usize], acc);
    let mut d_o = vec![0f32; t * w.q];
    linear_back_input(&dx2, w.get(OProj), t, w.q, d, &mut d_o, false);
    let sh = AttnShape { n, seq, heads: w.heads, kv_heads: w.kv_heads, hd, scale: (1.0 / (hd as f64).sqrt()) as f32 };
    let (mut dq, mut dk, mut dv) = (vec![0f32; t * w.q], vec![0f32; t * w.kv], vec![0f32; t * w.kv]);
    ops::attention_back(&sh, &s.q, &s.k, &s.v, &s.o, &s.lse, &d_o, &mut dq, &mut dk, &mut dv);
    drop(d_o);
    ops::rope(&mut dq, w.heads, hd, seq, cos, sin, true);
    ops::rope(&mut dk, w.kv_heads, hd, seq, cos, sin, true);
    linear_back_weight(&dq, &s.h1, t, d, w.q, &mut grads[QProj as usize], acc);
    linear_back_weight(&dk, &s.h1, t, d, w.kv, &mut grads[KProj as usize], acc);
    linear_back_weight(&dv, &s.h1, t, d, w.kv, &mut grads[VProj as usize], acc);
    let mut dh1 = vec![0f32; t * d];
    linear_back_input(&dq, w.get(QProj), t, d, w.q, &mut dh1, false);
    linear_back_input(&dk, w.get(KProj), t, d, w.kv, &mut dh1, true);
    linear_back_input(&dv, w.get(VProj), t, d, w.kv, &mut dh1, true);
    let mut dx = dx2;
    ops::rms_norm_back(&s.x, w.get(AttnNorm), &s.r1, &dh1, &mut dx, &mut grads[AttnNorm as usize], acc);
    dx
}
