//! The Llama configuration, with Hugging Face `config.json` field names.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// A token id, or several (Llama 3 lists several end-of-sequence ids).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    /// A single id.
    One(u32),
    /// Several ids (any of them).
    Many(Vec<u32>),
}

/// Configuration of a Llama-architecture decoder (Llama, SmolLM2), read from and written to
/// Hugging Face `config.json`. Unknown fields are ignored on reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaConfig {
    /// `["LlamaForCausalLM"]`.
    #[serde(default = "default_architectures")]
    pub architectures: Vec<String>,
    /// `"llama"`.
    #[serde(default = "default_model_type")]
    pub model_type: String,
    /// Vocabulary size (rows of the embedding and the output head).
    pub vocab_size: usize,
    /// d_model.
    pub hidden_size: usize,
    /// The SwiGLU width (d_ffn).
    pub intermediate_size: usize,
    /// Decoder layers.
    pub num_hidden_layers: usize,
    /// Query heads (the largest over the layers of a width-pruned model).
    pub num_attention_heads: usize,
    /// Defaults to `num_attention_heads` (no GQA) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_key_value_heads: Option<usize>,
    /// Defaults to `hidden_size / num_attention_heads` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_dim: Option<usize>,
    /// Epsilon of every RMSNorm.
    #[serde(default = "default_rms_norm_eps")]
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// The context length the model was trained for.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: usize,
    /// Whether the output head shares the token embedding (Hugging Face's default is false).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Beginning-of-sequence token id(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bos_token_id: Option<TokenIds>,
    /// End-of-sequence token id(s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eos_token_id: Option<TokenIds>,
    /// Only `"silu"` is supported.
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    /// Biases on q/k/v/o are not supported (must be false).
    #[serde(default)]
    pub attention_bias: bool,
    /// Biases on the MLP are not supported (must be false).
    #[serde(default)]
    pub mlp_bias: bool,
    /// RoPE scaling is not supported (must be absent or null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rope_scaling: Option<serde_json::Value>,
    /// The dtype of the stored weights (`"float32"` when this crate writes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub torch_dtype: Option<String>,
    /// Per-layer widths of a width-pruned model (see [`LayerWidths`]); absent when every
    /// layer has the top-level widths, as in any unpruned or layer-pruned model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prunus_layer_widths: Option<LayerWidths>,
    /// compressed-tensors' description of how the weights are stored: written by prunus only
    /// for sparse checkpoints (`sparsity_config.format = "sparse-bitmask"`, see
    /// [`crate::SaveOptions::sparse`]); a checkpoint whose weights are quantized is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization_config: Option<serde_json::Value>,
}

/// Per-layer widths of a model whose layers differ (structured width pruning), stored in
/// `config.json` under the extra key `prunus_layer_widths`:
///
/// ```json
/// "prunus_layer_widths": {
///   "num_attention_heads": [9, 6, 9],
///   "num_key_value_heads": [3, 2, 3],
///   "intermediate_size": [1536, 1200, 1536]
/// }
/// ```
///
/// Entry i describes decoder layer i (`model.layers.{i}`); every list has
/// `num_hidden_layers` entries. When the key is present, `head_dim` must be given
/// explicitly and the top-level `num_attention_heads`, `num_key_value_heads` and
/// `intermediate_size` hold the largest width over the layers (an upper bound for tools that
/// only read the top level; transformers cannot load such a model without custom code).
/// [`LlamaConfig::set_layer_widths`] drops the key again whenever all layers agree, so a
/// uniformly pruned model has a plain `config.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerWidths {
    /// Query heads of each layer.
    pub num_attention_heads: Vec<usize>,
    /// Key/value heads (GQA groups) of each layer; each divides the layer's query heads.
    pub num_key_value_heads: Vec<usize>,
    /// SwiGLU width (d_ffn) of each layer.
    pub intermediate_size: Vec<usize>,
}

impl LayerWidths {
    /// Number of layers described.
    pub fn len(&self) -> usize {
        self.num_attention_heads.len()
    }

    /// Whether no layer is described.
    pub fn is_empty(&self) -> bool {
        self.num_attention_heads.is_empty()
    }

    /// Whether every layer has the same widths.
    fn is_uniform(&self) -> bool {
        let same = |v: &[usize]| v.windows(2).all(|w| w[0] == w[1]);
        same(&self.num_attention_heads) && same(&self.num_key_value_heads) && same(&self.intermediate_size)
    }
}

fn default_architectures() -> Vec<String> {
    vec!["LlamaForCausalLM".to_string()]
}
fn default_model_type() -> String {
    "llama".to_string()
}
fn default_rms_norm_eps() -> f64 {
    1e-6
}
fn default_rope_theta() -> f64 {
    10_000.0
}
fn default_max_position_embeddings() -> usize {
    2048
}
fn default_hidden_act() -> String {
    "silu".to_string()
}

impl LlamaConfig {
    /// A config with the given sizes and Hugging Face defaults elsewhere.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        vocab_size: usize,
        hidden_size: usize,
        intermediate_size: usize,
        num_hidden_layers: usize,
        num_attention_heads: usize,
        num_key_value_heads: usize,
        tie_word_embeddings: bool,
    ) -> Self {
        LlamaConfig {
            architectures: default_architectures(),
            model_type: default_model_type(),
            vocab_size,
            hidden_size,
            intermediate_size,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: Some(num_key_value_heads),
            head_dim: None,
            rms_norm_eps: 1e-5,
            rope_theta: default_rope_theta(),
            max_position_embeddings: default_max_position_embeddings(),
            tie_word_embeddings,
            bos_token_id: None,
            eos_token_id: None,
            hidden_act: default_hidden_act(),
            attention_bias: false,
            mlp_bias: false,
            rope_scaling: None,
            torch_dtype: None,
            prunus_layer_widths: None,
            quantization_config: None,
        }
    }

    /// The tiny config used by unit tests: vocab 64, hidden 32, FFN 48, 2 layers, 4 heads,
    /// 2 KV heads (head_dim 8), tied embeddings.
    pub fn tiny() -> Self {
        LlamaConfig::new(64, 32, 48, 2, 4, 2, true)
    }

    /// The number of key/value heads (GQA groups).
    pub fn n_kv_heads(&self) -> usize {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// The per-head dimension.
    pub fn head_dim(&self) -> usize {
        self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads.max(1))
    }

    /// Query heads per key/value head.
    pub fn n_rep(&self) -> usize {
        self.num_attention_heads / self.n_kv_heads().max(1)
    }

    /// Query heads of decoder layer `layer` (per-layer widths apply when present).
    pub fn layer_heads(&self, layer: usize) -> usize {
        self.prunus_layer_widths
            .as_ref()
            .and_then(|w| w.num_attention_heads.get(layer).copied())
            .unwrap_or(self.num_attention_heads)
    }

    /// Key/value heads (GQA groups) of decoder layer `layer`.
    pub fn layer_kv_heads(&self, layer: usize) -> usize {
        self.prunus_layer_widths
            .as_ref()
            .and_then(|w| w.num_key_value_heads.get(layer).copied())
            .unwrap_or_else(|| self.n_kv_heads())
    }

    /// Query heads per key/value head in decoder layer `layer`.
    pub fn layer_n_rep(&self, layer: usize) -> usize {
        self.layer_heads(layer) / self.layer_kv_heads(layer).max(1)
    }

    /// SwiGLU width (d_ffn) of decoder layer `layer`.
    pub fn layer_intermediate_size(&self, layer: usize) -> usize {
        self.prunus_layer_widths
            .as_ref()
            .and_then(|w| w.intermediate_size.get(layer).copied())
            .unwrap_or(self.intermediate_size)
    }

    /// The widths of every layer, listed whether or not they differ.
    pub fn layer_widths(&self) -> LayerWidths {
        let n = self.num_hidden_layers;
        LayerWidths {
            num_attention_heads: (0..n).map(|l| self.layer_heads(l)).collect(),
            num_key_value_heads: (0..n).map(|l| self.layer_kv_heads(l)).collect(),
            intermediate_size: (0..n).map(|l| self.layer_intermediate_size(l)).collect(),
        }
    }

    /// Sets the number of layers and their widths, normalised: `head_dim` becomes explicit;
    /// when all layers agree the widths go to the top-level fields and
    /// `prunus_layer_widths` is cleared, otherwise the top level holds the largest width of
    /// each kind and `prunus_layer_widths` the lists. Call [`validate`](Self::validate) after.
    pub fn set_layer_widths(&mut self, widths: LayerWidths) {
        self.head_dim = Some(self.head_dim());
        self.num_hidden_layers = widths.len();
        let max = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
        self.num_attention_heads = max(&widths.num_attention_heads);
        self.num_key_value_heads = Some(max(&widths.num_key_value_heads));
        self.intermediate_size = max(&widths.intermediate_size);
        self.prunus_layer_widths = if widths.is_uniform() { None } else { Some(widths) };
    }

    /// Parses and validates a `config.json` text.
    pub fn from_json(text: &str) -> std::result::Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// Checks that the config describes a model this crate can build.
    pub fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: String, reason: &str| {
            Err(ModelError::Config { field: field.to_string(), value, reason: reason.to_string() })
        };
        if self.model_type != "llama" {
            return bad("model_type", format!("{:?}", self.model_type), "only `llama` is supported");
        }
        if let Some(a) = self.architectures.iter().find(|a| a.as_str() != "LlamaForCausalLM") {
            return bad("architectures", format!("{a:?}"), "only `LlamaForCausalLM` is supported");
        }
        for (field, value) in [
            ("vocab_size", self.vocab_size),
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("num_key_value_heads", self.n_kv_heads()),
            ("head_dim", self.head_dim()),
            ("max_position_embeddings", self.max_position_embeddings),
        ] {
            if value == 0 {
                return bad(field, "0".into(), "must be positive");
            }
        }
        if self.vocab_size > u32::MAX as usize {
            return bad("vocab_size", self.vocab_size.to_string(), "token ids must fit in u32");
        }
        if self.head_dim.is_none() && !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad(
                "hidden_size",
                self.hidden_size.to_string(),
                &format!("not divisible by num_attention_heads = {} (and no head_dim given)", self.num_attention_heads),
            );
        }
        if let Some(w) = &self.prunus_layer_widths {
            self.validate_layer_widths(w)?;
        } else if !self.num_attention_heads.is_multiple_of(self.n_kv_heads()) {
            return bad(
                "num_key_value_heads",
                self.n_kv_heads().to_string(),
                &format!("does not divide num_attention_heads = {}", self.num_attention_heads),
            );
        }
        if !self.head_dim().is_multiple_of(2) {
            return bad("head_dim", self.head_dim().to_string(), "rope needs an even head dimension");
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return bad("rms_norm_eps", self.rms_norm_eps.to_string(), "must be positive and finite");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return bad("rope_theta", self.rope_theta.to_string(), "must be positive and finite");
        }
        if self.hidden_act != "silu" {
            return bad("hidden_act", format!("{:?}", self.hidden_act), "only `silu` is supported");
        }
        if self.attention_bias {
            return bad("attention_bias", "true".into(), "attention biases are not supported");
        }
        if self.mlp_bias {
            return bad("mlp_bias", "true".into(), "mlp biases are not supported");
        }
        if let Some(s) = &self.rope_scaling
            && !s.is_null()
        {
            return bad("rope_scaling", s.to_string(), "rope scaling is not supported");
        }
        Ok(())
    }

    /// Checks `prunus_layer_widths` against the rest of the config.
    fn validate_layer_widths(&self, w: &LayerWidths) -> Result<()> {
        let bad = |field: String, value: String, reason: String| Err(ModelError::Config { field, value, reason });
        let key = "prunus_layer_widths";
        if self.head_dim.is_none() {
            return bad("head_dim".into(), "null".into(), format!("must be given explicitly when `{key}` is present"));
        }
        let lists = [
            ("num_attention_heads", &w.num_attention_heads, self.num_attention_heads),
            ("num_key_value_heads", &w.num_key_value_heads, self.n_kv_heads()),
            ("intermediate_size", &w.intermediate_size, self.intermediate_size),
        ];
        for (field, list, top) in lists {
            if list.len() != self.num_hidden_layers {
                return bad(
                    format!("{key}.{field}"),
                    format!("{list:?}"),
                    format!("has {} entries, num_hidden_layers is {}", list.len(), self.num_hidden_layers),
                );
            }
            if let Some(l) = list.iter().position(|&v| v == 0) {
                return bad(format!("{key}.{field}[{l}]"), "0".into(), "must be positive".into());
            }
            let max = list.iter().copied().max().unwrap_or(0);
            if top != max {
                return bad(
                    field.into(),
                    top.to_string(),
                    format!("must be the largest entry of `{key}.{field}` ({max})"),
                );
            }
        }
        for (l, (&h, &kv)) in w.num_attention_heads.iter().zip(&w.num_key_value_heads).enumerate() {
            if !h.is_multiple_of(kv) {
                return bad(
                    format!("{key}.num_key_value_heads[{l}]"),
                    kv.to_string(),
                    format!("does not divide the layer's num_attention_heads = {h}"),
                );
            }
        }
        Ok(())
    }
}
