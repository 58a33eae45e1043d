//! Weight layouts: the one table of a Llama's tensors (Hugging Face names, their GGUF
//! counterparts, capture sites and shapes), and llama.cpp's row permutation of the query and
//! key projections.
//!
//! Every per-block tensor is spelled once, in [`BLOCK_TENSORS`]; the model-level tensors
//! once each, in [`EMBED`], [`FINAL_NORM`] and [`LM_HEAD`]. Everything else derives from
//! them: the prunable linears and their capture sites ([`LINEARS`]), the list of names and
//! shapes a config implies ([`tensor_specs`], [`LlamaConfig::tensor_shapes`]), the GGUF name
//! of a Hugging Face name ([`gguf_name`]), and the decoder block's storage
//! (`llama::Block` holds its tensors in table order, indexed by [`BlockSlot`]).

use candle_core::Tensor;

use crate::config::LlamaConfig;

/// Capture site of the q, k and v projections' input (the attention-normed hidden states).
pub const ATTN_IN: &str = "attn_in";
/// Capture site of the o projection's input (the attention heads' concatenated outputs).
pub const ATTN_OUT: &str = "attn_out";
/// Capture site of the gate and up projections' input (the MLP-normed hidden states).
pub const MLP_IN: &str = "mlp_in";
/// Capture site of the down projection's input (the SwiGLU activations).
pub const MLP_ACT: &str = "mlp_act";

/// One dimension of a tensor's shape, in terms of the config (of one layer, for width-pruned
/// models whose layers differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// `hidden_size` (d_model).
    Model,
    /// The layer's query heads times `head_dim`.
    Query,
    /// The layer's key/value heads times `head_dim`.
    KeyValue,
    /// The layer's SwiGLU width (`intermediate_size`).
    Ffn,
    /// `vocab_size`.
    Vocab,
}

/// The widths one layer's (or the top level's) shape rules read.
#[derive(Debug, Clone, Copy)]
struct Widths {
    d: usize,
    q: usize,
    kv: usize,
    f: usize,
    vocab: usize,
}

impl Widths {
    /// The top-level widths of `config` (the largest over the layers of a width-pruned model).
    fn top(config: &LlamaConfig) -> Self {
        let hd = config.head_dim();
        Widths {
            d: config.hidden_size,
            q: config.num_attention_heads * hd,
            kv: config.n_kv_heads() * hd,
            f: config.intermediate_size,
            vocab: config.vocab_size,
        }
    }

    /// The widths of decoder layer `l` (per-layer widths applied when present).
    fn layer(config: &LlamaConfig, l: usize) -> Self {
        let hd = config.head_dim();
        Widths {
            d: config.hidden_size,
            q: config.layer_heads(l) * hd,
            kv: config.layer_kv_heads(l) * hd,
            f: config.layer_intermediate_size(l),
            vocab: config.vocab_size,
        }
    }

    fn of(&self, dims: &[Dim]) -> Vec<usize> {
        dims.iter()
            .map(|d| match d {
                Dim::Model => self.d,
                Dim::Query => self.q,
                Dim::KeyValue => self.kv,
                Dim::Ffn => self.f,
                Dim::Vocab => self.vocab,
            })
            .collect()
    }
}

/// A tensor outside the decoder blocks.
#[derive(Debug, Clone, Copy)]
pub struct ModelTensor {
    /// Hugging Face name.
    pub hf: &'static str,
    /// GGUF (llama.cpp) name.
    pub gguf: &'static str,
    /// Row-major shape rule.
    pub shape: &'static [Dim],
}

/// The token embedding, (vocab, d_model).
pub const EMBED: ModelTensor =
    ModelTensor { hf: "model.embed_tokens.weight", gguf: "token_embd.weight", shape: &[Dim::Vocab, Dim::Model] };
/// The final RMSNorm weight, (d_model).
pub const FINAL_NORM: ModelTensor = ModelTensor { hf: "model.norm.weight", gguf: "output_norm.weight", shape: &[Dim::Model] };
/// The output head, (vocab, d_model); stored only when not tied to the embedding.
pub const LM_HEAD: ModelTensor =
    ModelTensor { hf: "lm_head.weight", gguf: "output.weight", shape: &[Dim::Vocab, Dim::Model] };

/// Which tensor of a decoder block: the index of its row in [`BLOCK_TENSORS`] (forward order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockSlot {
    /// The attention RMSNorm weight.
    AttnNorm,
    /// The query projection.
    QProj,
    /// The key projection.
    KProj,
    /// The value projection.
    VProj,
    /// The attention output projection.
    OProj,
    /// The MLP RMSNorm weight.
    FfnNorm,
    /// The SwiGLU gate projection.
    GateProj,
    /// The SwiGLU up projection.
    UpProj,
    /// The SwiGLU down projection.
    DownProj,
}

/// One tensor of a decoder block `model.layers.{i}`.
#[derive(Debug, Clone, Copy)]
pub struct BlockTensor {
    /// Its slot (the row's own index in [`BLOCK_TENSORS`]).
    pub slot: BlockSlot,
    /// The Hugging Face module path inside the block (`self_attn`, `mlp`, or empty for norms).
    pub module: &'static str,
    /// The short name: the Hugging Face module name (`q_proj`, `input_layernorm`), which is
    /// also the name a linear goes by in the pruning pipeline.
    pub name: &'static str,
    /// The GGUF name inside `blk.{i}.` without `.weight` (`attn_q`).
    pub gguf: &'static str,
    /// For a prunable linear, the capture site whose statistics its input feeds; `None` for
    /// the norms.
    pub site: Option<&'static str>,
    /// Row-major shape rule; a linear is (d_out, d_in).
    pub shape: &'static [Dim],
    /// llama.cpp permutes this projection's rows for interleaved RoPE (q and k).
    pub rope_permuted: bool,
}

impl BlockTensor {
    /// The Hugging Face name suffix after `model.layers.{i}.` (`self_attn.q_proj.weight`).
    pub fn hf_suffix(&self) -> String {
        if self.module.is_empty() { format!("{}.weight", self.name) } else { format!("{}.{}.weight", self.module, self.name) }
    }

    /// The full Hugging Face name in layer `layer`.
    pub fn hf_name(&self, layer: usize) -> String {
        format!("model.layers.{layer}.{}", self.hf_suffix())
    }

    /// The full GGUF name in layer `layer`.
    pub fn gguf_name(&self, layer: usize) -> String {
        format!("blk.{layer}.{}.weight", self.gguf)
    }

    /// Whether this is a prunable linear (it has a capture site).
    pub const fn is_linear(&self) -> bool {
        self.site.is_some()
    }

    /// The number of heads that llama.cpp's RoPE permutation splits this tensor's rows into
    /// (the top-level query or key/value heads of `config`), or `None` when it is not permuted.
    pub fn rope_heads(&self, config: &LlamaConfig) -> Option<usize> {
        if !self.rope_permuted {
            return None;
        }
        match self.shape.first() {
            Some(Dim::Query) => Some(config.num_attention_heads),
            Some(Dim::KeyValue) => Some(config.n_kv_heads()),
            _ => None,
        }
    }
}

/// Every tensor of a decoder block, in forward order (the order of [`tensor_specs`] and of
/// [`BlockSlot`]).
pub const BLOCK_TENSORS: [BlockTensor; 9] = {
    use BlockSlot::*;
    use Dim::*;
    [
        norm(AttnNorm, "input_layernorm", "attn_norm"),
        linear(QProj, "self_attn", "q_proj", "attn_q", ATTN_IN, &[Query, Model], true),
        linear(KProj, "self_attn", "k_proj", "attn_k", ATTN_IN, &[KeyValue, Model], true),
        linear(VProj, "self_attn", "v_proj", "attn_v", ATTN_IN, &[KeyValue, Model], false),
        linear(OProj, "self_attn", "o_proj", "attn_output", ATTN_OUT, &[Model, Query], false),
        norm(FfnNorm, "post_attention_layernorm", "ffn_norm"),
        linear(GateProj, "mlp", "gate_proj", "ffn_gate", MLP_IN, &[Ffn, Model], false),
        linear(UpProj, "mlp", "up_proj", "ffn_up", MLP_IN, &[Ffn, Model], false),
        linear(DownProj, "mlp", "down_proj", "ffn_down", MLP_ACT, &[Model, Ffn], false),
    ]
};

/// A row of [`BLOCK_TENSORS`] for an RMSNorm weight, (d_model).
const fn norm(slot: BlockSlot, name: &'static str, gguf: &'static str) -> BlockTensor {
    BlockTensor { slot, module: "", name, gguf, site: None, shape: &[Dim::Model], rope_permuted: false }
}

/// A row of [`BLOCK_TENSORS`] for a prunable linear.
const fn linear(
    slot: BlockSlot,
    module: &'static str,
    name: &'static str,
    gguf: &'static str,
    site: &'static str,
    shape: &'static [Dim],
    rope_permuted: bool,
) -> BlockTensor {
    BlockTensor { slot, module, name, gguf, site: Some(site), shape, rope_permuted }
}

impl BlockSlot {
    /// This slot's row of [`BLOCK_TENSORS`].
    pub const fn spec(self) -> BlockTensor {
        BLOCK_TENSORS[self as usize]
    }
}

/// The number of prunable linears in a block.
const N_LINEARS: usize = {
    let mut n = 0;
    let mut i = 0;
    while i < BLOCK_TENSORS.len() {
        // Each row sits at its slot's index, so `BlockSlot::spec` and a block's storage agree.
        assert!(BLOCK_TENSORS[i].slot as usize == i, "BLOCK_TENSORS rows must be in BlockSlot order");
        if BLOCK_TENSORS[i].is_linear() {
            n += 1;
        }
        i += 1;
    }
    n
};

/// The prunable linears of a block, in forward order, with their capture sites (the rows of
/// [`BLOCK_TENSORS`] that have one).
pub const LINEARS: [(&str, &str); N_LINEARS] = {
    let mut out = [("", ""); N_LINEARS];
    let (mut i, mut n) = (0, 0);
    while i < BLOCK_TENSORS.len() {
        if let Some(site) = BLOCK_TENSORS[i].site {
            out[n] = (BLOCK_TENSORS[i].name, site);
            n += 1;
        }
        i += 1;
    }
    out
};

/// The block tensor a short linear name (`q_proj`, as in [`LINEARS`]) names.
pub fn linear_slot(name: &str) -> Option<BlockSlot> {
    BLOCK_TENSORS.iter().find(|t| t.is_linear() && t.name == name).map(|t| t.slot)
}

/// The layer and table row of a Hugging Face block tensor name (`model.layers.3.mlp.up_proj.weight`).
pub fn block_tensor(hf_name: &str) -> Option<(usize, BlockTensor)> {
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (idx, tail) = rest.split_once('.')?;
    let layer: usize = idx.parse().ok()?;
    BLOCK_TENSORS.into_iter().find(|t| t.hf_suffix() == tail).map(|t| (layer, t))
}

/// The Hugging Face names and row-major shapes of every tensor a Llama model stores, in
/// forward order, with the top-level widths. `lm_head.weight` is listed only for untied
/// models.
pub fn tensor_specs(config: &LlamaConfig) -> Vec<(String, Vec<usize>)> {
    specs(config, |_| Widths::top(config))
}

/// The names and shapes of `config`'s tensors with the widths `layer` gives each layer.
fn specs(config: &LlamaConfig, layer: impl Fn(usize) -> Widths) -> Vec<(String, Vec<usize>)> {
    let top = Widths::top(config);
    let mut specs = vec![(EMBED.hf.to_string(), top.of(EMBED.shape))];
    for i in 0..config.num_hidden_layers {
        let w = layer(i);
        specs.extend(BLOCK_TENSORS.iter().map(|t| (t.hf_name(i), w.of(t.shape))));
    }
    specs.push((FINAL_NORM.hf.to_string(), top.of(FINAL_NORM.shape)));
    if !config.tie_word_embeddings {
        specs.push((LM_HEAD.hf.to_string(), top.of(LM_HEAD.shape)));
    }
    specs
}

impl LlamaConfig {
    /// The Hugging Face names and shapes of every tensor, in forward order, with per-layer
    /// widths applied: [`tensor_specs`] with each layer's attention and MLP shapes taken from
    /// [`layer_widths`](Self::layer_widths).
    pub fn tensor_shapes(&self) -> Vec<(String, Vec<usize>)> {
        specs(self, |l| Widths::layer(self, l))
    }
}

/// The GGUF (llama.cpp) name of a Hugging Face tensor name, if it is one of a Llama's.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    if let Some(t) = [EMBED, FINAL_NORM, LM_HEAD].iter().find(|t| t.hf == hf_name) {
        return Some(t.gguf.to_string());
    }
    let (layer, t) = block_tensor(hf_name)?;
    Some(t.gguf_name(layer))
}

/// Hugging Face layout -> llama.cpp layout of a q/k projection (d_out, d_in), d_out =
/// n_head * head_dim: within each head, rows (j, j + head_dim/2) become adjacent rows
/// (2j, 2j+1), so that interleaved RoPE on the result equals `rotate_half` RoPE on the input.
/// This is `w.reshape(n_head, 2, head_dim/2, d_in).swapaxes(1, 2)` of llama.cpp's converter.
pub fn permute_qk_to_gguf(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (d_out, d_in) = w.dims2()?;
    let hd = d_out / n_head.max(1);
    if n_head == 0 || d_out % n_head != 0 || !hd.is_multiple_of(2) {
        candle_core::bail!("cannot permute a ({d_out}, {d_in}) projection into {n_head} heads");
    }
    // (d_out, d_in) -> (n_head, 2, hd/2, d_in) -> (n_head, hd/2, 2, d_in) -> (d_out, d_in)
    w.reshape((n_head, 2, hd / 2, d_in))?.transpose(1, 2)?.contiguous()?.reshape((d_out, d_in))
}

/// llama.cpp layout -> Hugging Face layout of a q/k projection (d_out, d_in): the inverse of
/// [`permute_qk_to_gguf`], `w.reshape(n_head, head_dim/2, 2, d_in).swapaxes(1, 2)`.
pub fn unpermute_qk_from_gguf(w: &Tensor, n_head: usize) -> candle_core::Result<Tensor> {
    let (d_out, d_in) = w.dims2()?;
    let hd = d_out / n_head.max(1);
    if n_head == 0 || d_out % n_head != 0 || !hd.is_multiple_of(2) {
        candle_core::bail!("cannot un-permute a ({d_out}, {d_in}) projection into {n_head} heads");
    }
    // (d_out, d_in) -> (n_head, hd/2, 2, d_in) -> (n_head, 2, hd/2, d_in) -> (d_out, d_in)
    w.reshape((n_head, hd / 2, 2, d_in))?.transpose(1, 2)?.contiguous()?.reshape((d_out, d_in))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_derives_the_old_spellings() {
        assert_eq!(
            LINEARS,
            [
                ("q_proj", "attn_in"),
                ("k_proj", "attn_in"),
                ("v_proj", "attn_in"),
                ("o_proj", "attn_out"),
                ("gate_proj", "mlp_in"),
                ("up_proj", "mlp_in"),
                ("down_proj", "mlp_act"),
            ]
        );
        let suffixes: Vec<String> = BLOCK_TENSORS.iter().map(BlockTensor::hf_suffix).collect();
        assert_eq!(
            suffixes,
            [
                "input_layernorm.weight",
                "self_attn.q_proj.weight",
                "self_attn.k_proj.weight",
                "self_attn.v_proj.weight",
                "self_attn.o_proj.weight",
                "post_attention_layernorm.weight",
                "mlp.gate_proj.weight",
                "mlp.up_proj.weight",
                "mlp.down_proj.weight",
            ]
        );
        assert_eq!(gguf_name("model.layers.12.self_attn.o_proj.weight").as_deref(), Some("blk.12.attn_output.weight"));
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(), Some("blk.0.ffn_norm.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gguf_name("model.layers.1.mlp.up_proj.bias"), None);
    }

    #[test]
    fn the_unknown_linear_error_lists_the_table_linears() {
        // error.rs spells the names in its message (importing this module there would close
        // an import circle through config.rs); this keeps the two in step.
        let names: Vec<&str> = LINEARS.iter().map(|(n, _)| *n).collect();
        let e = crate::error::ModelError::UnknownLinear { name: "x".into() }.to_string();
        assert!(e.ends_with(&format!("(expected one of {})", names.join(", "))), "{e}");
        for t in BLOCK_TENSORS {
            assert_eq!(linear_slot(t.name), t.is_linear().then_some(t.slot));
        }
    }

    #[test]
    fn shapes_follow_the_config() {
        let c = LlamaConfig::new(64, 32, 48, 1, 4, 2, false);
        let specs = tensor_specs(&c);
        let shape = |n: &str| specs.iter().find(|(s, _)| s == n).unwrap().1.clone();
        assert_eq!(specs.len(), 1 + 9 + 2);
        assert_eq!(shape("model.embed_tokens.weight"), [64, 32]);
        assert_eq!(shape("model.layers.0.self_attn.q_proj.weight"), [32, 32]);
        assert_eq!(shape("model.layers.0.self_attn.k_proj.weight"), [16, 32]);
        assert_eq!(shape("model.layers.0.self_attn.o_proj.weight"), [32, 32]);
        assert_eq!(shape("model.layers.0.mlp.down_proj.weight"), [32, 48]);
        assert_eq!(shape("lm_head.weight"), [64, 32]);
        assert_eq!(c.tensor_shapes(), specs);
    }
}
