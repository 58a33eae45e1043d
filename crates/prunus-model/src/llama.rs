//! The Llama decoder: weights, forward pass, next-token NLL, and the [`PrunableModel`] view.

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{D, DType, Device, Tensor};
use prunus_core::{LinearInfo, PrunableModel};

use crate::config::LlamaConfig;
use crate::error::{CandleContext, ModelError, Result};
use crate::rng::SplitMix64;

/// The prunable linears of a block, in forward order, with their capture sites.
pub const LINEARS: [(&str, &str); 7] = [
    ("q_proj", "attn_in"),
    ("k_proj", "attn_in"),
    ("v_proj", "attn_in"),
    ("o_proj", "attn_out"),
    ("gate_proj", "mlp_in"),
    ("up_proj", "mlp_in"),
    ("down_proj", "mlp_act"),
];

/// A capture callback with the caller's error type.
type SiteFn<'a, E> = dyn FnMut(&str, &Tensor) -> std::result::Result<(), E> + 'a;

/// The Hugging Face name suffixes of a block's tensors, in
/// [`tensor_specs`](crate::layout::tensor_specs) order, which is the order of [`Block`]'s fields.
const BLOCK_TENSORS: [&str; 9] = [
    "input_layernorm.weight",
    "self_attn.q_proj.weight",
    "self_attn.k_proj.weight",
    "self_attn.v_proj.weight",
    "self_attn.o_proj.weight",
    "post_attention_layernorm.weight",
    "mlp.gate_proj.weight",
    "mlp.up_proj.weight",
    "mlp.down_proj.weight",
];

/// Elements of one logits chunk in [`LlamaModel::token_nll`] (64 MiB of f32).
const LOGITS_CHUNK_ELEMS: usize = 1 << 24;

/// One decoder block. Linear weights are (d_out, d_in) f32, `y = x W^T`; q/k rows are in the
/// Hugging Face layout (`rotate_half` RoPE).
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) attn_norm: Tensor,
    /// (heads * head_dim, d_model); head h owns rows h*head_dim..(h+1)*head_dim.
    pub(crate) q_proj: Tensor,
    /// (kv_heads * head_dim, d_model).
    pub(crate) k_proj: Tensor,
    pub(crate) v_proj: Tensor,
    /// (d_model, heads * head_dim).
    pub(crate) o_proj: Tensor,
    pub(crate) ffn_norm: Tensor,
    /// (d_ffn, d_model).
    pub(crate) gate_proj: Tensor,
    pub(crate) up_proj: Tensor,
    /// (d_model, d_ffn).
    pub(crate) down_proj: Tensor,
}

impl Block {
    fn linear(&self, name: &str) -> Option<&Tensor> {
        Some(match name {
            "q_proj" => &self.q_proj,
            "k_proj" => &self.k_proj,
            "v_proj" => &self.v_proj,
            "o_proj" => &self.o_proj,
            "gate_proj" => &self.gate_proj,
            "up_proj" => &self.up_proj,
            "down_proj" => &self.down_proj,
            _ => return None,
        })
    }

    fn linear_mut(&mut self, name: &str) -> Option<&mut Tensor> {
        Some(match name {
            "q_proj" => &mut self.q_proj,
            "k_proj" => &mut self.k_proj,
            "v_proj" => &mut self.v_proj,
            "o_proj" => &mut self.o_proj,
            "gate_proj" => &mut self.gate_proj,
            "up_proj" => &mut self.up_proj,
            "down_proj" => &mut self.down_proj,
            _ => return None,
        })
    }

    /// (Hugging Face name suffix, tensor) pairs, in the order of [`tensor_specs`](crate::layout::tensor_specs).
    fn named(&self) -> [(&'static str, &Tensor); 9] {
        let slots = [
            &self.attn_norm,
            &self.q_proj,
            &self.k_proj,
            &self.v_proj,
            &self.o_proj,
            &self.ffn_norm,
            &self.gate_proj,
            &self.up_proj,
            &self.down_proj,
        ];
        std::array::from_fn(|i| (BLOCK_TENSORS[i], slots[i]))
    }
}

/// Per-sequence-length tensors shared by all blocks of one forward pass.
pub(crate) struct PassCtx {
    /// RoPE tables, (seq_len, head_dim/2).
    cos: Tensor,
    sin: Tensor,
    seq: usize,
    n_rep: usize,
    device: Device,
    /// Additive causal mask, (n_rep * seq_len, seq_len), built on first use (the fused CPU
    /// kernel does not need it).
    mask: std::sync::OnceLock<Tensor>,
    /// The mask was set by [`LlamaModel::tree_pass_ctx`] and is not causal: attention must
    /// add it instead of using the fused causal kernel.
    custom_mask: bool,
}

impl PassCtx {
    /// Row r is position r % seq_len (queries of the n_rep heads sharing a KV head are
    /// stacked along rows).
    fn mask(&self) -> candle_core::Result<Tensor> {
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

/// A Llama-architecture causal LM held as f32 candle tensors.
#[derive(Debug, Clone)]
pub struct LlamaModel {
    pub(crate) config: LlamaConfig,
    device: Device,
    /// (vocab, d_model).
    pub(crate) embed: Tensor,
    pub(crate) blocks: Vec<Block>,
    /// (d_model).
    pub(crate) norm: Tensor,
    /// (vocab, d_model); `None` when tied to `embed`.
    pub(crate) lm_head: Option<Tensor>,
    /// Canonical path of the file or directory this model was loaded from.
    source: Option<PathBuf>,
    /// Use autograd-friendly (unfused) ops for norms, softmax and RoPE.
    pub(crate) differentiable: bool,
}

/// Parameter counts of a model; tied embeddings are counted once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParamCounts {
    pub total: usize,
    /// The token embedding (vocab * d_model).
    pub embedding: usize,
    /// The output head when untied, else 0.
    pub lm_head: usize,
    /// All RMSNorm weights.
    pub norms: usize,
    /// All block linears.
    pub linears: usize,
    /// Linear parameters of each block.
    pub per_block_linears: Vec<usize>,
}

/// Zeros in one block linear.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinearSparsity {
    pub block: usize,
    /// Short name (`q_proj`, ...).
    pub name: String,
    /// Entries exactly equal to zero.
    pub zeros: usize,
    pub numel: usize,
}

impl LinearSparsity {
    /// Fraction of exact zeros.
    pub fn fraction(&self) -> f64 {
        if self.numel == 0 { 0.0 } else { self.zeros as f64 / self.numel as f64 }
    }
}

impl LlamaModel {
    /// Builds a model from Hugging Face-named tensors (see [`LlamaConfig::tensor_shapes`],
    /// which applies per-layer widths to [`tensor_specs`](crate::layout::tensor_specs));
    /// every tensor is checked against the config's shape, converted to f32 and moved to
    /// `device`. Q/K rows must already be in the Hugging Face layout. Extra tensors are ignored.
    pub fn from_tensors(
        config: LlamaConfig,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
        source_name: &std::path::Path,
    ) -> Result<Self> {
        config.validate()?;
        let mut take = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = tensors.remove(name).ok_or_else(|| ModelError::MissingTensor {
                path: source_name.to_path_buf(),
                tensor: name.to_string(),
            })?;
            if t.dims() != shape {
                return Err(ModelError::ShapeMismatch {
                    tensor: name.to_string(),
                    expected: shape.to_vec(),
                    found: t.dims().to_vec(),
                });
            }
            t.to_dtype(DType::F32)
                .and_then(|t| t.to_device(device))
                .and_then(|t| t.contiguous())
                .ctx(|| format!("converting tensor `{name}` to f32"))
        };
        let specs = config.tensor_shapes();
        let mut it = specs.iter();
        let mut next = || {
            let (name, shape) = it.next().expect("tensor_specs lists every tensor");
            take(name, shape)
        };
        let embed = next()?;
        let mut blocks = Vec::with_capacity(config.num_hidden_layers);
        for _ in 0..config.num_hidden_layers {
            blocks.push(Block {
                attn_norm: next()?,
                q_proj: next()?,
                k_proj: next()?,
                v_proj: next()?,
                o_proj: next()?,
                ffn_norm: next()?,
                gate_proj: next()?,
                up_proj: next()?,
                down_proj: next()?,
            });
        }
        let norm = next()?;
        let lm_head = if config.tie_word_embeddings { None } else { Some(next()?) };
        Ok(LlamaModel {
            config,
            device: device.clone(),
            embed,
            blocks,
            norm,
            lm_head,
            source: None,
            differentiable: false,
        })
    }

    /// A deterministic random model for tests (on the CPU): linears uniform in
    /// ±1/sqrt(d_in), embeddings uniform in ±1, norm weights 1 ± 0.1.
    pub fn synthetic(config: LlamaConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let device = Device::Cpu;
        let mut tensors = HashMap::new();
        for (name, shape) in config.tensor_shapes() {
            let numel: usize = shape.iter().product();
            let data: Vec<f32> = if shape.len() == 1 {
                (0..numel).map(|_| 1.0 + rng.uniform(0.1)).collect()
            } else if name == "model.embed_tokens.weight" {
                (0..numel).map(|_| rng.uniform(1.0)).collect()
            } else {
                let a = 1.0 / (shape[1] as f32).sqrt();
                (0..numel).map(|_| rng.uniform(a)).collect()
            };
            let t = Tensor::from_vec(data, shape, &device)?;
            tensors.insert(name, t);
        }
        Self::from_tensors(config, tensors, &device, std::path::Path::new("<synthetic>"))
    }

    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The canonical path this model was loaded from, if any.
    pub fn source(&self) -> Option<&std::path::Path> {
        self.source.as_deref()
    }

    pub(crate) fn set_source(&mut self, source: Option<PathBuf>) {
        self.source = source;
    }

    /// Whether the output head shares the token embedding.
    pub fn is_tied(&self) -> bool {
        self.lm_head.is_none()
    }

    /// Switches RMSNorm, softmax and RoPE between candle's fused kernels (fast, no gradient;
    /// the default) and compositions of differentiable ops (for training and backward passes;
    /// [`loss_and_grads`](Self::loss_and_grads) turns it on in its own copy of the model).
    pub fn set_differentiable(&mut self, on: bool) {
        self.differentiable = on;
    }

    /// The token embedding, (vocab, d_model).
    pub fn embedding(&self) -> &Tensor {
        &self.embed
    }

    /// The output head, (vocab, d_model) (the embedding when tied).
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Every stored tensor with its Hugging Face name, in
    /// [`tensor_specs`](crate::layout::tensor_specs) order (no `lm_head.weight` when tied).
    /// Q/K are in the Hugging Face layout.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), &self.embed)];
        for (i, b) in self.blocks.iter().enumerate() {
            for (suffix, t) in b.named() {
                out.push((format!("model.layers.{i}.{suffix}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &self.norm));
        if let Some(h) = &self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// [`named_tensors`](Self::named_tensors), mutable.
    pub(crate) fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = vec![("model.embed_tokens.weight".to_string(), &mut self.embed)];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            let Block { attn_norm, q_proj, k_proj, v_proj, o_proj, ffn_norm, gate_proj, up_proj, down_proj } = b;
            let slots = [attn_norm, q_proj, k_proj, v_proj, o_proj, ffn_norm, gate_proj, up_proj, down_proj];
            for (suffix, t) in BLOCK_TENSORS.iter().zip(slots) {
                out.push((format!("model.layers.{i}.{suffix}"), t));
            }
        }
        out.push(("model.norm.weight".to_string(), &mut self.norm));
        if let Some(h) = &mut self.lm_head {
            out.push(("lm_head.weight".to_string(), h));
        }
        out
    }

    /// Replaces the tensor named `name` (a name of [`named_tensors`](Self::named_tensors))
    /// with `value`, which must have the same shape; it is stored as f32 on the model's
    /// device. For tied models `model.embed_tokens.weight` is also the output head.
    pub fn set_tensor(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let device = self.device.clone();
        let slot = self
            .named_tensors_mut()
            .into_iter()
            .find_map(|(n, t)| (n == name).then_some(t))
            .ok_or_else(|| ModelError::MissingTensor { path: PathBuf::from("<model>"), tensor: name.to_string() })?;
        if value.dims() != slot.dims() {
            return Err(ModelError::ShapeMismatch {
                tensor: name.to_string(),
                expected: slot.dims().to_vec(),
                found: value.dims().to_vec(),
            });
        }
        *slot = value.to_dtype(DType::F32)?.to_device(&device)?.contiguous()?;
        Ok(())
    }

    /// Parameter counts (tied embeddings counted once).
    pub fn param_counts(&self) -> ParamCounts {
        let embedding = self.embed.elem_count();
        let lm_head = self.lm_head.as_ref().map_or(0, |t| t.elem_count());
        let mut norms = self.norm.elem_count();
        let mut per_block_linears = Vec::with_capacity(self.blocks.len());
        for b in &self.blocks {
            norms += b.attn_norm.elem_count() + b.ffn_norm.elem_count();
            per_block_linears.push(
                LINEARS.iter().map(|(n, _)| b.linear(n).map_or(0, |t| t.elem_count())).sum(),
            );
        }
        let linears: usize = per_block_linears.iter().sum();
        ParamCounts {
            total: embedding + lm_head + norms + linears,
            embedding,
            lm_head,
            norms,
            linears,
            per_block_linears,
        }
    }

    /// Total parameter count (tied embeddings counted once).
    pub fn n_params(&self) -> usize {
        self.param_counts().total
    }

    /// Exact zeros in every block linear, block by block in forward order.
    pub fn sparsity_report(&self) -> Result<Vec<LinearSparsity>> {
        let mut out = Vec::with_capacity(self.blocks.len() * LINEARS.len());
        for (block, b) in self.blocks.iter().enumerate() {
            for (name, _) in LINEARS {
                let w = b.linear(name).expect("every block has every linear");
                let zeros = w
                    .eq(0f32)
                    .and_then(|m| m.to_dtype(DType::F32))
                    .and_then(|m| m.sum_all())
                    .and_then(|s| s.to_scalar::<f32>())
                    .ctx(|| format!("counting zeros of block {block} {name}"))?;
                out.push(LinearSparsity {
                    block,
                    name: name.to_string(),
                    zeros: zeros as usize,
                    numel: w.elem_count(),
                });
            }
        }
        Ok(out)
    }

    fn block(&self, block: usize) -> Result<&Block> {
        self.blocks.get(block).ok_or(ModelError::BlockOutOfRange { block, n_blocks: self.blocks.len() })
    }

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

    /// The pass context of causal windows of `seq` tokens; RoPE tables in the weights' dtype
    /// (f32, or f64 on the training path's f64 copies).
    pub(crate) fn pass_ctx(&self, seq: usize) -> Result<PassCtx> {
        let hd = self.config.head_dim();
        let half = hd / 2;
        let theta = self.config.rope_theta;
        let mut cos = Vec::with_capacity(seq * half);
        let mut sin = Vec::with_capacity(seq * half);
        for p in 0..seq {
            for i in 0..half {
                let inv_freq = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
                let a = p as f64 * inv_freq;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let dtype = self.embed.dtype();
        Ok(PassCtx {
            cos: Tensor::from_vec(cos, (seq, half), &self.device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (seq, half), &self.device)?.to_dtype(dtype)?,
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

    /// Runs block `b` on (n_samples, seq_len, d_model) hidden states.
    pub(crate) fn run_block<E>(
        &self,
        b: usize,
        x: &Tensor,
        ctx: &PassCtx,
        mut capture: Option<&mut SiteFn<'_, E>>,
    ) -> std::result::Result<Tensor, E>
    where
        E: From<ModelError> + From<candle_core::Error>,
    {
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
        let xn = self.rms_norm(x, &blk.attn_norm)?.reshape((rows, d))?; // (n*seq, d_model)
        if let Some(f) = capture.as_mut() {
            f("attn_in", &xn)?;
        }
        // (n*seq, heads*hd) -> (n, heads, seq, hd)
        let split = |t: Tensor, heads: usize| -> candle_core::Result<Tensor> {
            t.reshape((n, seq, heads, hd))?.transpose(1, 2)?.contiguous()
        };
        let q = split(xn.matmul(&blk.q_proj.t()?)?, h)?;
        let k = split(xn.matmul(&blk.k_proj.t()?)?, kvh)?;
        let v = split(xn.matmul(&blk.v_proj.t()?)?, kvh)?;
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
        // GQA without copying K/V: the n_rep query heads of a KV head are stacked along rows,
        // (n, heads, seq, hd) -> (n, kv_heads, n_rep*seq, hd).
        let q = (q * (1.0 / (hd as f64).sqrt()))?.reshape((n, kvh, rep * seq, hd))?;
        let scores = q.matmul(&k.t()?)?; // (n, kv_heads, n_rep*seq, seq)
        let probs = if self.differentiable {
            candle_nn::ops::softmax(&scores.broadcast_add(&ctx.mask_for(rep)?)?, D::Minus1)?
        } else if self.device.is_cpu() && !ctx.custom_mask {
            crate::kernels::causal_softmax(&scores)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores.broadcast_add(&ctx.mask_for(rep)?)?)?
        };
        let o = probs.matmul(&v)?; // (n, kv_heads, n_rep*seq, hd)
        // -> (n, heads, seq, hd) -> (n, seq, heads, hd) -> (n*seq, heads*hd)
        let o = o.reshape((n, h, seq, hd))?.transpose(1, 2)?.contiguous()?.reshape((rows, h * hd))?;
        if let Some(f) = capture.as_mut() {
            f("attn_out", &o)?;
        }
        let attn = o.matmul(&blk.o_proj.t()?)?.reshape((n, seq, d))?;
        let x = (x + attn)?;

        // SwiGLU MLP.
        let xn = self.rms_norm(&x, &blk.ffn_norm)?.reshape((rows, d))?; // (n*seq, d_model)
        if let Some(f) = capture.as_mut() {
            f("mlp_in", &xn)?;
        }
        let gate = xn.matmul(&blk.gate_proj.t()?)?; // (n*seq, d_ffn)
        let up = xn.matmul(&blk.up_proj.t()?)?;
        let act = (gate.silu()? * up)?;
        if let Some(f) = capture.as_mut() {
            f("mlp_act", &act)?;
        }
        let down = act.matmul(&blk.down_proj.t()?)?.reshape((n, seq, d))?;
        Ok((x + down)?)
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

    /// Per-position next-token NLL, (n_samples, seq_len) -> (n_samples, seq_len - 1) f32:
    /// entry (i, t) is -log p(tokens[i, t+1] | tokens[i, ..=t]). Log-softmax is computed in
    /// f32, the output head in chunks of positions so that memory stays bounded.
    pub fn token_nll(&self, tokens: &Tensor) -> Result<Tensor> {
        let (ids, _, seq) = self.check_tokens(tokens)?;
        if seq < 2 {
            return Err(ModelError::Tokens { reason: format!("seq_len {seq} leaves nothing to predict") });
        }
        let hidden = self.forward_hidden(&ids)?; // (n, seq, d_model)
        self.token_nll_from_hidden(&hidden, &ids)
    }

    /// [`token_nll`](Self::token_nll) from hidden states that
    /// [`forward_hidden`](Self::forward_hidden) already computed for `tokens`, so that a
    /// caller who also needs the hidden states (dense agreement) runs the blocks once.
    pub fn token_nll_from_hidden(&self, hidden: &Tensor, tokens: &Tensor) -> Result<Tensor> {
        let (ids, n, seq) = self.check_tokens(tokens)?;
        if seq < 2 {
            return Err(ModelError::Tokens { reason: format!("seq_len {seq} leaves nothing to predict") });
        }
        let d = self.config.hidden_size;
        if hidden.dims() != [n, seq, d] {
            return Err(ModelError::ShapeMismatch {
                tensor: "hidden states for token_nll_from_hidden".into(),
                expected: vec![n, seq, d],
                found: hidden.dims().to_vec(),
            });
        }
        let rows = n * (seq - 1);
        let h = hidden.narrow(1, 0, seq - 1)?.contiguous()?.reshape((rows, d))?; // (n*(seq-1), d_model)
        let targets = ids.narrow(1, 1, seq - 1)?.contiguous()?.reshape((rows, 1))?; // (n*(seq-1), 1)
        let w_t = self.lm_head_weight().t()?; // (d_model, vocab)
        let chunk = (LOGITS_CHUNK_ELEMS / self.config.vocab_size).max(1);
        let mut parts = Vec::with_capacity(rows.div_ceil(chunk));
        let mut r0 = 0;
        while r0 < rows {
            let len = chunk.min(rows - r0);
            let logits = h.narrow(0, r0, len)?.matmul(&w_t)?; // (len, vocab)
            let lse = if self.device.is_cpu() {
                crate::kernels::row_logsumexp(&logits)?.unsqueeze(1)? // (len, 1)
            } else {
                let max = logits.max_keepdim(1)?; // (len, 1)
                (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?
            };
            let tgt = logits.gather(&targets.narrow(0, r0, len)?, 1)?; // (len, 1)
            parts.push((lse - tgt)?);
            r0 += len;
        }
        Ok(Tensor::cat(&parts, 0)?.reshape((n, seq - 1))?)
    }

    /// Summed next-token NLL of each window, (n_samples, seq_len) -> n_samples values; each
    /// window scores its seq_len - 1 predictions (f32 log-softmax, f64 sums). Perplexity over
    /// windows is `exp(sum / (n_samples * (seq_len - 1)))`.
    pub fn nll(&self, tokens: &Tensor) -> Result<Vec<f64>> {
        let per_pos = self.token_nll(tokens)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
        Ok(per_pos.iter().map(|row| row.iter().map(|&v| v as f64).sum()).collect())
    }

    /// Checks a token tree (see [`tree_hidden`](Self::tree_hidden)) and returns each node's
    /// position (its depth: a root is at position 0).
    fn tree_positions(&self, tokens: &[u32], parents: &[Option<usize>]) -> Result<Vec<usize>> {
        if tokens.is_empty() || tokens.len() != parents.len() {
            return Err(ModelError::Tokens {
                reason: format!("a token tree needs one parent per token (got {} tokens, {} parents)", tokens.len(), parents.len()),
            });
        }
        let mut pos = Vec::with_capacity(tokens.len());
        for (i, p) in parents.iter().enumerate() {
            pos.push(match *p {
                None => 0,
                Some(j) if j < i => pos[j] + 1,
                Some(j) => {
                    return Err(ModelError::Tokens { reason: format!("token {i} of a tree has parent {j}; parents must come first") });
                }
            });
        }
        Ok(pos)
    }

    /// Pass context of a token tree: RoPE at each node's depth, and an additive mask letting
    /// node i see exactly itself and its ancestors (rows stacked n_rep times, as in
    /// [`PassCtx::mask`]).
    fn tree_pass_ctx(&self, parents: &[Option<usize>], positions: &[usize]) -> Result<PassCtx> {
        let nodes = parents.len();
        let hd = self.config.head_dim();
        let half = hd / 2;
        let theta = self.config.rope_theta;
        let mut cos = Vec::with_capacity(nodes * half);
        let mut sin = Vec::with_capacity(nodes * half);
        for &p in positions {
            for i in 0..half {
                // The same angles as `pass_ctx` gives position p.
                let inv_freq = 1.0 / theta.powf((2 * i) as f64 / hd as f64);
                let a = p as f64 * inv_freq;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let mut visible = vec![f32::NEG_INFINITY; nodes * nodes]; // (nodes, nodes)
        for i in 0..nodes {
            let mut j = Some(i);
            while let Some(k) = j {
                visible[i * nodes + k] = 0.0;
                j = parents[k];
            }
        }
        let rep = self.config.n_rep();
        let one = Tensor::from_vec(visible, (1, nodes, nodes), &self.device)?;
        let mask = one.broadcast_as((rep, nodes, nodes))?.contiguous()?.reshape((rep * nodes, nodes))?;
        let dtype = self.embed.dtype();
        Ok(PassCtx {
            cos: Tensor::from_vec(cos, (nodes, half), &self.device)?.to_dtype(dtype)?,
            sin: Tensor::from_vec(sin, (nodes, half), &self.device)?.to_dtype(dtype)?,
            seq: nodes,
            n_rep: rep,
            device: self.device.clone(),
            mask: std::sync::OnceLock::from(mask),
            custom_mask: true,
        })
    }

    /// Final-norm hidden states of a token tree (a forest), (nodes, d_model).
    ///
    /// Node i holds token `tokens[i]` and continues node `parents[i]` (`None`: it starts a
    /// sequence); parents come before their children. Each root-to-node path is one
    /// sequence, and node i's hidden state equals the one [`forward_hidden`](Self::forward_hidden)
    /// gives the last token of its path: it sits at position = depth and attends to itself
    /// and its ancestors only. Sequences that share a prefix (multiple-choice continuations
    /// of one context) thus compute it once, and several trees pack into one forward.
    pub fn tree_hidden(&self, tokens: &[u32], parents: &[Option<usize>]) -> Result<Tensor> {
        let positions = self.tree_positions(tokens, parents)?;
        let ids = Tensor::from_vec(tokens.to_vec(), (1, tokens.len()), &Device::Cpu)?;
        let mut x = self.embed(&ids)?; // (1, nodes, d_model)
        let ctx = self.tree_pass_ctx(parents, &positions)?;
        for b in 0..self.blocks.len() {
            x = self.run_block::<ModelError>(b, &x, &ctx, None)?;
        }
        Ok(self.final_norm(&x)?.squeeze(0)?)
    }

    /// Log-probabilities of next tokens in a token tree: for each `(node, token)` in
    /// `targets`, log p(token | the path ending at node). Log-softmax as in
    /// [`token_nll`](Self::token_nll) (f32 logits, log-sum-exp summed in f64); the output
    /// head runs only on the nodes that some target reads.
    pub fn tree_logprobs(&self, tokens: &[u32], parents: &[Option<usize>], targets: &[(usize, u32)]) -> Result<Vec<f64>> {
        let nodes = tokens.len();
        let vocab = self.config.vocab_size;
        if let Some(&(node, tok)) = targets.iter().find(|&&(n, t)| n >= nodes || t as usize >= vocab) {
            return Err(ModelError::Tokens {
                reason: format!("target (node {node}, token {tok}) is outside the tree ({nodes} nodes) or the vocabulary ({vocab})"),
            });
        }
        if targets.is_empty() {
            self.tree_positions(tokens, parents)?;
            return Ok(Vec::new());
        }
        let hidden = self.tree_hidden(tokens, parents)?; // (nodes, d_model)
        // The distinct nodes read, in order, and each target's row among them.
        let mut row_of = vec![usize::MAX; nodes];
        let mut rows = Vec::new();
        for &(node, _) in targets {
            if row_of[node] == usize::MAX {
                row_of[node] = rows.len();
                rows.push(node as u32);
            }
        }
        let n_rows = rows.len();
        let h = hidden.index_select(&Tensor::from_vec(rows, n_rows, &self.device)?, 0)?; // (n_rows, d_model)
        let w_t = self.lm_head_weight().t()?; // (d_model, vocab)
        let chunk = (LOGITS_CHUNK_ELEMS / vocab).max(1);
        let mut out = vec![0f64; targets.len()];
        let mut r0 = 0;
        while r0 < n_rows {
            let len = chunk.min(n_rows - r0);
            let logits = h.narrow(0, r0, len)?.matmul(&w_t)?; // (len, vocab)
            let lse = if self.device.is_cpu() {
                crate::kernels::row_logsumexp(&logits)? // (len)
            } else {
                let max = logits.max_keepdim(1)?;
                (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?.squeeze(1)?
            };
            let lse = lse.to_device(&Device::Cpu)?.to_vec1::<f32>()?;
            let logits = logits.to_device(&Device::Cpu)?.flatten_all()?.to_vec1::<f32>()?;
            for (o, &(node, tok)) in out.iter_mut().zip(targets) {
                let r = row_of[node];
                if (r0..r0 + len).contains(&r) {
                    *o = f64::from(logits[(r - r0) * vocab + tok as usize] - lse[r - r0]);
                }
            }
            r0 += len;
        }
        Ok(out)
    }
}

impl PrunableModel for LlamaModel {
    fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn linears(&self, block: usize) -> Vec<LinearInfo> {
        let Some(b) = self.blocks.get(block) else { return Vec::new() };
        LINEARS
            .iter()
            .map(|(name, site)| {
                let w = b.linear(name).expect("every block has every linear");
                let (d_out, d_in) = w.dims2().unwrap_or((0, 0));
                LinearInfo { name: name.to_string(), input_site: site.to_string(), d_out, d_in }
            })
            .collect()
    }

    fn embed(&self, tokens: &Tensor) -> prunus_core::Result<Tensor> {
        Ok(LlamaModel::embed(self, tokens)?)
    }

    fn block_forward(
        &self,
        block: usize,
        hidden: &Tensor,
        capture: Option<&mut prunus_core::model::CaptureFn<'_>>,
    ) -> prunus_core::Result<Tensor> {
        self.block(block)?;
        let seq = hidden
            .dims3()
            .map_err(|_| ModelError::ShapeMismatch {
                tensor: format!("hidden states entering block {block}"),
                expected: vec![0, 0, self.config.hidden_size],
                found: hidden.dims().to_vec(),
            })?
            .1;
        let ctx = self.pass_ctx(seq)?;
        match capture {
            Some(f) => self.run_block::<prunus_core::Error>(block, hidden, &ctx, Some(f)),
            None => self.run_block::<prunus_core::Error>(block, hidden, &ctx, None),
        }
    }

    fn weight(&self, block: usize, name: &str) -> prunus_core::Result<Tensor> {
        let b = self.block(block)?;
        Ok(b.linear(name).ok_or_else(|| ModelError::UnknownLinear { name: name.to_string() })?.clone())
    }

    fn set_weight(&mut self, block: usize, name: &str, weight: Tensor) -> prunus_core::Result<()> {
        let n_blocks = self.blocks.len();
        let device = self.device.clone();
        let b = self.blocks.get_mut(block).ok_or(ModelError::BlockOutOfRange { block, n_blocks })?;
        let slot = b.linear_mut(name).ok_or_else(|| ModelError::UnknownLinear { name: name.to_string() })?;
        if weight.dims() != slot.dims() {
            return Err(prunus_core::Error::Shape {
                tensor: format!("block {block} {name}"),
                expected: slot.dims().to_vec(),
                got: weight.dims().to_vec(),
            });
        }
        *slot = weight.to_dtype(DType::F32)?.to_device(&device)?.contiguous()?;
        Ok(())
    }
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    /// log p(seq[t] | seq[..t]) for t >= 1 from the plain forward.
    fn plain_logprobs(m: &LlamaModel, seq: &[u32]) -> Vec<f64> {
        let t = Tensor::from_vec(seq.to_vec(), (1, seq.len()), &Device::Cpu).unwrap();
        m.token_nll(&t).unwrap().to_vec2::<f32>().unwrap()[0].iter().map(|&v| -f64::from(v)).collect()
    }

    /// Appends `seq` to a tree as a fresh chain (no sharing) and returns its node indices.
    fn chain(tokens: &mut Vec<u32>, parents: &mut Vec<Option<usize>>, seq: &[u32], parent: Option<usize>) -> Vec<usize> {
        let mut prev = parent;
        seq.iter()
            .map(|&t| {
                tokens.push(t);
                parents.push(prev);
                prev = Some(tokens.len() - 1);
                tokens.len() - 1
            })
            .collect()
    }

    #[test]
    fn a_token_tree_scores_like_separate_sequences() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 7).unwrap();
        // Two "docs" packed as a forest: doc A has a shared context and three continuations
        // (two of them share their first token), doc B is a plain chain.
        let ctx = [5u32, 9, 3, 17, 40];
        let conts: [&[u32]; 3] = [&[4, 8], &[4, 2, 11], &[30]];
        let other = [1u32, 2, 3, 4, 5, 6];
        let (mut tokens, mut parents) = (Vec::new(), Vec::new());
        let ctx_nodes = chain(&mut tokens, &mut parents, &ctx, None);
        let last_ctx = *ctx_nodes.last().unwrap();
        let mut targets = Vec::new();
        let mut expect = Vec::new();
        // Continuations: the shared first token `4` is one node; every continuation token is a
        // target read from its predecessor's node.
        let first4 = chain(&mut tokens, &mut parents, &[4], Some(last_ctx))[0];
        let c0 = chain(&mut tokens, &mut parents, &[8], Some(first4));
        let c1 = chain(&mut tokens, &mut parents, &[2, 11], Some(first4));
        let c2 = chain(&mut tokens, &mut parents, &[30], Some(last_ctx));
        let nodes_of: [Vec<usize>; 3] = [vec![first4, c0[0]], vec![first4, c1[0], c1[1]], c2];
        for (cont, nodes) in conts.iter().zip(&nodes_of) {
            let full: Vec<u32> = ctx.iter().chain(cont.iter()).copied().collect();
            let lp = plain_logprobs(&m, &full);
            for (k, &node) in nodes.iter().enumerate() {
                let pred = if k == 0 { last_ctx } else { nodes[k - 1] };
                assert_eq!(tokens[node], cont[k]);
                targets.push((pred, cont[k]));
                expect.push(lp[ctx.len() - 1 + k]);
            }
        }
        let other_nodes = chain(&mut tokens, &mut parents, &other, None);
        let lp = plain_logprobs(&m, &other);
        for k in 1..other.len() {
            targets.push((other_nodes[k - 1], other[k]));
            expect.push(lp[k - 1]);
        }
        let got = m.tree_logprobs(&tokens, &parents, &targets).unwrap();
        assert_eq!(got.len(), expect.len());
        for (i, (g, e)) in got.iter().zip(&expect).enumerate() {
            assert!((g - e).abs() < 1e-5, "target {i}: tree {g} vs plain {e}");
        }
        // The hidden state of a node is the plain forward's at the end of its path.
        let h = m.tree_hidden(&tokens, &parents).unwrap();
        let full: Vec<u32> = ctx.iter().chain([4u32, 2, 11].iter()).copied().collect();
        let plain = m.forward_hidden(&Tensor::from_vec(full.clone(), (1, full.len()), &Device::Cpu).unwrap()).unwrap();
        let a = h.get(c1[1]).unwrap();
        let b = plain.get(0).unwrap().get(full.len() - 1).unwrap();
        let diff = (a - b).unwrap().abs().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        assert!(diff < 1e-5, "hidden differs by {diff}");
    }

    #[test]
    fn token_nll_from_hidden_equals_token_nll() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
        let ids: Vec<u32> = (0..24).map(|i| (i * 7 + 3) % 64).collect();
        let t = Tensor::from_vec(ids, (2, 12), &Device::Cpu).unwrap();
        let a = m.token_nll(&t).unwrap().to_vec2::<f32>().unwrap();
        let h = m.forward_hidden(&t).unwrap();
        let b = m.token_nll_from_hidden(&h, &t).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(a, b);
        let e = m.token_nll_from_hidden(&h.narrow(1, 0, 11).unwrap(), &t).unwrap_err().to_string();
        assert!(e.contains("token_nll_from_hidden"), "{e}");
    }

    #[test]
    fn malformed_trees_are_refused() {
        let m = LlamaModel::synthetic(LlamaConfig::tiny(), 1).unwrap();
        let e = m.tree_logprobs(&[1, 2], &[None, Some(1)], &[(0, 3)]).unwrap_err().to_string();
        assert!(e.contains("token 1 of a tree has parent 1"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None], &[(0, 3)]).unwrap_err().to_string();
        assert!(e.contains("2 tokens, 1 parents"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None, Some(0)], &[(2, 3)]).unwrap_err().to_string();
        assert!(e.contains("node 2"), "{e}");
        let e = m.tree_logprobs(&[1, 2], &[None, Some(0)], &[(1, 64)]).unwrap_err().to_string();
        assert!(e.contains("token 64"), "{e}");
    }
}
