//! The forward pass: token checks, embedding, RoPE tables and causal masks (the pass
//! context), one decoder block with its capture sites, the final norm and the output head.

use candle_core::{D, DType, Tensor};

use super::model::LlamaModel;
use crate::error::{ModelError, Result};
use crate::layout::{ATTN_IN, ATTN_OUT, BlockSlot, MLP_ACT, MLP_IN};

/// A capture callback with the caller's error type.
pub(super) type SiteFn<'a, E> = dyn FnMut(&str, &Tensor) -> std::result::Result<(), E> + 'a;

/// Per-sequence-length tensors shared by all blocks of one forward pass.
pub(crate) struct PassCtx {
    /// RoPE tables, (seq_len, head_dim/2).
    pub(super) cos: Tensor,
    pub(super) sin: Tensor,
    pub(super) seq: usize,
    pub(super) n_rep: usize,
    pub(super) device: candle_core::Device,
    /// Additive causal mask, (n_rep * seq_len, seq_len), built on first use (the fused CPU
    /// kernel does not need it).
    pub(super) mask: std::sync::OnceLock<Tensor>,
    /// The mask was set for a token tree (`tree.rs`) and is not causal: attention must
    /// add it instead of using the fused causal kernel.
    pub(super) custom_mask: bool,
}

impl PassCtx {
    /// Row r is position r % seq_len (queries of the n_rep heads sharing a KV head are
    /// stacked along rows).
    pub(super) fn mask(&self) -> candle_core::Result<Tensor> {
        if let Some(m) = self.mask.get() {
            return Ok(m.clone());
        }
        let (seq, rows) = (self.seq, self.n_rep * self.seq);
        let mut mask = Vec::with_capacity(rows * seq);
        for r in 0..rows {
            let pos = r % seq;
            mask.extend((0..seq).map(|j| if j > pos { f32::NEG_INFINITY } else { 0.0 }));
        }
        let m = Tensor::from_vec(mask, (rows, seq), &self.device)?;
        Ok(self.mask.get_or_init(|| m).clone())
    }

    /// The additive mask of a layer with `rep` query heads per KV head (layers of a
    /// width-pruned model differ), (rep * seq_len, seq_len), in the dtype of the RoPE tables.
    fn mask_for(&self, rep: usize) -> candle_core::Result<Tensor> {
        let m = self.mask()?;
        let m = if rep == self.n_rep {
            m
        } else {
            // Every block of seq_len rows is the same mask: restack the first one.
            let (seq, one) = (self.seq, m.narrow(0, 0, self.seq)?);
            one.unsqueeze(0)?.broadcast_as((rep, seq, seq))?.contiguous()?.reshape((rep * seq, seq))?
        };
        m.to_dtype(self.cos.dtype())
    }
}

impl LlamaModel {
    /// Checks a token tensor: (n_samples, seq_len), integer ids below vocab_size. Returns it
    /// as u32 with its dims.
    pub(crate) fn check_tokens(&self, tokens: &Tensor) -> Result<(Tensor, usize, usize)> {
        let (n, seq) = tokens.dims2().map_err(|_| ModelError::Tokens {
            reason: format!("expected shape (n_samples, seq_len), got {:?}", tokens.dims()),
        })?;
        if n == 0 || seq == 0 {
            return Err(ModelError::Tokens { reason: format!("empty token tensor {:?}", tokens.dims()) });
        }
        let ids = match tokens.dtype() {
            DType::U32 => tokens.clone(),
            DType::U8 | DType::I64 | DType::I32 | DType::I16 => {
                let min = tokens.to_dtype(DType::I64)?.flatten_all()?.min(0)?.to_scalar::<i64>()?;
                if min < 0 {
                    return Err(ModelError::Tokens { reason: format!("negative token id {min}") });
                }
                let max = tokens.to_dtype(DType::I64)?.flatten_all()?.max(0)?.to_scalar::<i64>()?;
                if max > u32::MAX as i64 {
                    return Err(ModelError::Tokens { reason: format!("token id {max} does not fit in u32") });
                }
                tokens.to_dtype(DType::U32)?
            }
            other => {
                return Err(ModelError::Tokens { reason: format!("token ids must be integers, got {other:?}") });
            }
        };
        let max = ids.flatten_all()?.max(0)?.to_scalar::<u32>()?;
        if max as usize >= self.config.vocab_size {
            return Err(ModelError::Tokens {
                reason: format!("token id {max} is out of range for vocab_size {}", self.config.vocab_size),
            });
        }
        if seq > self.config.max_position_embeddings {
            tracing::warn!(seq, max = self.config.max_position_embeddings, "sequence longer than max_position_embeddings");
        }
        let ids = ids.to_device(&self.device)?;
        Ok((ids, n, seq))
    }

    /// RoPE tables (cos, sin), (positions, head_dim/2), for the given positions, in the
    /// weights' dtype (f32, or f64 on the training path's f64 copies). Angles are computed in
    /// f64.
    pub(super) fn rope_tables(&self, positions: impl ExactSizeIterator<Item = usize>) -> Result<(Tensor, Tensor)> {
        let n = positions.len();
        let hd = self.config.head_dim();
        let half = hd / 2;
        let theta = self.config.rope_theta;
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in positions {
            for i in 0..half {
                let inv_freq = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
                let a = p as f64 * inv_freq;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let dtype = self.embed.dtype();
        Ok((
            Tensor::from_vec(cos, (n, half), &self.device)?.to_dtype(dtype)?,
            Tensor::from_vec(sin, (n, half), &self.device)?.to_dtype(dtype)?,
        ))
    }

    /// The pass context of causal windows of `seq` tokens.
    pub(crate) fn pass_ctx(&self, seq: usize) -> Result<PassCtx> {
        let (cos, sin) = self.rope_tables(0..seq)?;
        Ok(PassCtx {
            cos,
            sin,
            seq,
            n_rep: self.config.n_rep(),
            device: self.device.clone(),
            mask: std::sync::OnceLock::new(),
            custom_mask: false,
        })
    }

    fn rms_norm(&self, x: &Tensor, w: &Tensor) -> candle_core::Result<Tensor> {
        let eps = self.config.rms_norm_eps as f32;
        if self.differentiable {
            candle_nn::ops::rms_norm_slow(x, w, eps)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, w, eps)
        }
    }

    /// Token ids (n_samples, seq_len) -> embeddings (n_samples, seq_len, d_model).
    pub fn embed(&self, tokens: &Tensor) -> Result<Tensor> {
        let (ids, n, seq) = self.check_tokens(tokens)?;
        let x = self.embed.index_select(&ids.flatten_all()?, 0)?; // (n * seq, d_model)
        Ok(x.reshape((n, seq, self.config.hidden_size))?)
    }

    /// Runs block `b` on (n_samples, seq_len, d_model) hidden states, handing each linear's
    /// input to `capture` at its site (the sites of [`BLOCK_TENSORS`](crate::layout::BLOCK_TENSORS)).
    pub(crate) fn run_block<E>(&self, b: usize, x: &Tensor, ctx: &PassCtx, capture: Option<&mut SiteFn<'_, E>>) -> std::result::Result<Tensor, E>
    where
        E: From<ModelError> + From<candle_core::Error>,
    {
        Ok(self.block_pass(b, x, ctx, capture, true)?.expect("a whole pass has an output"))
    }

    /// [`run_block`](Self::run_block), or with `whole` false, only up to the last capture
    /// site (the down projection and the residual are not computed; `None`).
    pub(crate) fn block_pass<E>(
        &self,
        b: usize,
        x: &Tensor,
        ctx: &PassCtx,
        mut capture: Option<&mut SiteFn<'_, E>>,
        whole: bool,
    ) -> std::result::Result<Option<Tensor>, E>
    where
        E: From<ModelError> + From<candle_core::Error>,
    {
        use BlockSlot::*;
        let blk = self.block(b)?;
        let c = &self.config;
        let (n, seq, d) = x.dims3()?;
        if d != c.hidden_size {
            return Err(ModelError::ShapeMismatch {
                tensor: format!("hidden states entering block {b}"),
                expected: vec![n, seq, c.hidden_size],
                found: x.dims().to_vec(),
            }
            .into());
        }
        // This layer's widths (they differ between layers of a width-pruned model).
        let (h, kvh, hd, rep) = (c.layer_heads(b), c.layer_kv_heads(b), c.head_dim(), c.layer_n_rep(b));
        let rows = n * seq;

        // Attention.
        let xn = self.rms_norm(x, &blk[AttnNorm])?.reshape((rows, d))?; // (n*seq, d_model)
        if let Some(f) = capture.as_mut() {
            f(ATTN_IN, &xn)?;
        }
        // (n*seq, heads*hd) -> (n, heads, seq, hd)
        let split = |t: Tensor, heads: usize| -> candle_core::Result<Tensor> {
            t.reshape((n, seq, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        // `x W^T`; many rows of inference on the CPU through the kernel that gives the same
        // bits faster (kernels::linear).
        let fast = !self.differentiable && self.device.is_cpu() && x.dtype() == DType::F32 && rows >= crate::kernels::LINEAR_ROWS;
        let linear = |x: &Tensor, slot: BlockSlot| if fast { crate::kernels::linear(x, &blk[slot]) } else { x.matmul(&blk[slot].t()?) };
        let q = split(linear(&xn, QProj)?, h)?;
        let k = split(linear(&xn, KProj)?, kvh)?;
        let v = split(linear(&xn, VProj)?, kvh)?;
        let (q, k) = if self.differentiable {
            (
                candle_nn::rotary_emb::rope_slow(&q, &ctx.cos, &ctx.sin)?,
                candle_nn::rotary_emb::rope_slow(&k, &ctx.cos, &ctx.sin)?,
            )
        } else {
            (
                candle_nn::rotary_emb::rope(&q, &ctx.cos, &ctx.sin)?,
                candle_nn::rotary_emb::rope(&k, &ctx.cos, &ctx.sin)?,
            )
        };
        let o = if !self.differentiable && self.device.is_cpu() && !ctx.custom_mask && q.dtype() == DType::F32 {
            // Fused: the masked half never computed, written in the layout o_proj reads.
            crate::attention::causal_attention(&q, &k, &v, (1.0 / (hd as f64).sqrt()) as f32)?.reshape((rows, h * hd))?
        } else {
            // GQA without copying K/V: the n_rep query heads of a KV head are stacked along
            // rows, (n, heads, seq, hd) -> (n, kv_heads, n_rep*seq, hd).
            let q = (q * (1.0 / (hd as f64).sqrt()))?.reshape((n, kvh, rep * seq, hd))?;
            let scores = q.matmul(&k.t()?)?; // (n, kv_heads, n_rep*seq, seq)
            let probs = if self.differentiable {
                candle_nn::ops::softmax(&scores.broadcast_add(&ctx.mask_for(rep)?)?, D::Minus1)?
            } else {
                candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&ctx.mask_for(rep)?)?)?
            };
            let o = probs.matmul(&v)?; // (n, kv_heads, n_rep*seq, hd)
            // -> (n, heads, seq, hd) -> (n, seq, heads, hd) -> (n*seq, heads*hd)
            o.reshape((n, h, seq, hd))?.transpose(1, 2)?.contiguous()?.reshape((rows, h * hd))?
        };
        if let Some(f) = capture.as_mut() {
            f(ATTN_OUT, &o)?;
        }
        let attn = linear(&o, OProj)?.reshape((n, seq, d))?;
        let x = (x + attn)?;

        // SwiGLU MLP.
        let xn = self.rms_norm(&x, &blk[FfnNorm])?.reshape((rows, d))?; // (n*seq, d_model)
        if let Some(f) = capture.as_mut() {
            f(MLP_IN, &xn)?;
        }
        let gate = linear(&xn, GateProj)?; // (n*seq, d_ffn)
        let up = linear(&xn, UpProj)?;
        let act = if !self.differentiable && self.device.is_cpu() && gate.dtype() == DType::F32 {
            crate::kernels::swiglu(&gate, &up)? // the same bits, one pass
        } else {
            (gate.silu()? * up)?
        };
        if let Some(f) = capture.as_mut() {
            f(MLP_ACT, &act)?;
        }
        if !whole {
            return Ok(None);
        }
        let down = linear(&act, DownProj)?.reshape((n, seq, d))?;
        Ok(Some((x + down)?))
    }

    /// Runs block `block` on hidden states (n_samples, seq_len, d_model) with a causal mask.
    pub fn block_forward(&self, block: usize, hidden: &Tensor) -> Result<Tensor> {
        let seq = hidden.dim(1)?;
        let ctx = self.pass_ctx(seq)?;
        self.run_block::<ModelError>(block, hidden, &ctx, None)
    }

    /// The final RMSNorm, (..., d_model) -> (..., d_model).
    pub fn final_norm(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.rms_norm(hidden, &self.norm)?)
    }

    /// The output head on normed hidden states, (..., d_model) -> (..., vocab). Use it on
    /// chunks of [`forward_hidden`](Self::forward_hidden) to bound memory.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let dims = hidden.dims().to_vec();
        let d = self.config.hidden_size;
        if dims.last() != Some(&d) {
            return Err(ModelError::ShapeMismatch {
                tensor: "hidden states entering lm_head".into(),
                expected: vec![d],
                found: dims,
            });
        }
        let rows = hidden.elem_count() / d;
        let flat = hidden.reshape((rows, d))?;
        let logits = flat.matmul(&self.lm_head_weight().t()?)?; // (rows, vocab)
        let mut out_dims = dims;
        *out_dims.last_mut().expect("non-empty") = self.config.vocab_size;
        Ok(logits.reshape(out_dims)?)
    }

    /// Tokens (n_samples, seq_len) -> hidden states after the final norm,
    /// (n_samples, seq_len, d_model).
    pub fn forward_hidden(&self, tokens: &Tensor) -> Result<Tensor> {
        let mut x = self.embed(tokens)?;
        let ctx = self.pass_ctx(x.dim(1)?)?;
        for b in 0..self.blocks.len() {
            x = self.run_block::<ModelError>(b, &x, &ctx, None)?;
        }
        self.final_norm(&x)
    }

    /// Tokens (n_samples, seq_len) -> logits (n_samples, seq_len, vocab). For long windows
    /// and large vocabularies prefer [`token_nll`](Self::token_nll).
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor> {
        let h = self.forward_hidden(tokens)?;
        self.logits(&h)
    }
}
