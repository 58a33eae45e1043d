//! Loading Llama models from GGUF files (llama.cpp), inspecting GGUF headers, and writing
//! synthetic models as GGUF ([`write_gguf`], for tests and fixtures).
//!
//! Tensors are dequantized to f32 with candle. llama.cpp stores the rows of the query and
//! key projections permuted for interleaved RoPE; they are un-permuted here to the Hugging
//! Face layout, so that the forward pass (and any exported safetensors) uses `rotate_half`.

use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Content, TensorInfo, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};

use crate::config::{LlamaConfig, TokenIds};
use crate::error::{ModelError, Result};
use crate::layout::{BlockSlot, block_tensor, gguf_name, permute_qk_to_gguf, tensor_specs, unpermute_qk_from_gguf};
use crate::llama::LlamaModel;

/// One tensor of a GGUF file, as its header describes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GgufTensor {
    /// The GGUF tensor name.
    pub name: String,
    /// The ggml storage type, e.g. `Q4_1`.
    pub dtype: String,
    /// Row-major shape (GGUF lists dims reversed; this is (d_out, d_in) for a linear).
    pub shape: Vec<usize>,
    /// Elements (saturating at `usize::MAX` for absurd headers).
    pub numel: usize,
}

/// What a GGUF header says, without reading any tensor data.
#[derive(Debug, Clone, serde::Serialize)]
pub struct GgufSummary {
    /// The file read.
    pub path: PathBuf,
    /// Its size in bytes.
    pub file_size: u64,
    /// `general.architecture`.
    pub architecture: String,
    /// `general.name`, if present.
    pub name: Option<String>,
    /// The Llama config read from the metadata (present when the architecture is `llama`
    /// and the metadata is complete).
    pub config: Option<LlamaConfig>,
    /// Scalar metadata as (key, value) text, sorted by key; arrays are shown by length.
    pub metadata: Vec<(String, String)>,
    /// Tensors sorted by name.
    pub tensors: Vec<GgufTensor>,
    /// Total elements over all tensors.
    pub n_params: usize,
    /// Number of tensors per storage type, sorted by type name.
    pub dtype_counts: Vec<(String, usize)>,
}

fn dtype_name(t: GgmlDType) -> String {
    format!("{t:?}").replace("Q2K", "Q2_K").replace("Q3K", "Q3_K").replace("Q4K", "Q4_K")
        .replace("Q5K", "Q5_K").replace("Q6K", "Q6_K").replace("Q8K", "Q8_K")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::U8(x) => x.to_string(),
        Value::I8(x) => x.to_string(),
        Value::U16(x) => x.to_string(),
        Value::I16(x) => x.to_string(),
        Value::U32(x) => x.to_string(),
        Value::I32(x) => x.to_string(),
        Value::U64(x) => x.to_string(),
        Value::I64(x) => x.to_string(),
        Value::F32(x) => x.to_string(),
        Value::F64(x) => x.to_string(),
        Value::Bool(x) => x.to_string(),
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => format!("[{} items]", a.len()),
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match *v {
        Value::F32(x) => Some(x as f64),
        Value::F64(x) => Some(x),
        _ => as_u64(v).map(|x| x as f64),
    }
}

/// Typed access to GGUF metadata with errors naming the file and key.
struct Meta<'a> {
    path: &'a Path,
    md: &'a HashMap<String, Value>,
}

impl Meta<'_> {
    fn get(&self, key: &str) -> Result<&Value> {
        self.md.get(key).ok_or_else(|| ModelError::MissingMetadata { path: self.path.to_path_buf(), key: key.into() })
    }

    fn bad(&self, key: &str, v: &Value) -> ModelError {
        ModelError::BadMetadata { path: self.path.to_path_buf(), key: key.into(), value: value_text(v) }
    }

    fn usize(&self, key: &str) -> Result<usize> {
        let v = self.get(key)?;
        as_u64(v).and_then(|x| usize::try_from(x).ok()).ok_or_else(|| self.bad(key, v))
    }

    fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        if self.md.contains_key(key) { self.usize(key).map(Some) } else { Ok(None) }
    }

    fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.md.get(key) {
            None => Ok(None),
            Some(v) => as_f64(v).map(Some).ok_or_else(|| self.bad(key, v)),
        }
    }

    fn opt_str(&self, key: &str) -> Option<&str> {
        match self.md.get(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        }
    }
}

/// Reads a GGUF header, mapping candle's errors to one naming the file.
fn read_content(path: &Path) -> Result<(Content, BufReader<File>, u64)> {
    let file = File::open(path).map_err(|source| ModelError::Io { op: "open", path: path.into(), source })?;
    let file_size = file
        .metadata()
        .map_err(|source| ModelError::Io { op: "stat", path: path.into(), source })?
        .len();
    let mut reader = BufReader::new(file);
    let content = Content::read(&mut reader)
        .map_err(|e| ModelError::Gguf { path: path.into(), reason: e.to_string() })?;
    if content.tensor_data_offset > file_size {
        return Err(ModelError::Gguf {
            path: path.into(),
            reason: format!("tensor data starts at byte {} past the end of the {file_size}-byte file", content.tensor_data_offset),
        });
    }
    Ok((content, reader, file_size))
}

/// The architecture named in the header (`general.architecture`).
fn architecture(path: &Path, content: &Content) -> Result<String> {
    let meta = Meta { path, md: &content.metadata };
    match meta.get("general.architecture")? {
        Value::String(s) => Ok(s.clone()),
        v => Err(meta.bad("general.architecture", v)),
    }
}

/// Builds a [`LlamaConfig`] from `llama.*` metadata and the tensor list.
fn llama_config(path: &Path, content: &Content) -> Result<LlamaConfig> {
    let meta = Meta { path, md: &content.metadata };
    let n_layers = meta.usize("llama.block_count")?;
    let hidden = meta.usize("llama.embedding_length")?;
    let ffn = meta.usize("llama.feed_forward_length")?;
    let n_heads = meta.usize("llama.attention.head_count")?;
    let n_kv = meta.opt_usize("llama.attention.head_count_kv")?.unwrap_or(n_heads);
    let eps = meta.opt_f64("llama.attention.layer_norm_rms_epsilon")?.unwrap_or(1e-5);
    let theta = meta.opt_f64("llama.rope.freq_base")?.unwrap_or(10_000.0);
    let ctx = meta.opt_usize("llama.context_length")?.unwrap_or(2048);
    let key_len = meta.opt_usize("llama.attention.key_length")?;
    let vocab = match meta.md.get("tokenizer.ggml.tokens") {
        Some(Value::Array(a)) => a.len(),
        _ => match meta.opt_usize("llama.vocab_size")? {
            Some(v) => v,
            None => content
                .tensor_infos
                .get("token_embd.weight")
                .and_then(|t| t.shape.dims().first().copied())
                .ok_or_else(|| ModelError::MissingMetadata { path: path.into(), key: "tokenizer.ggml.tokens".into() })?,
        },
    };
    if let Some(kind) = meta.opt_str("llama.rope.scaling.type")
        && kind != "none"
    {
        return Err(ModelError::BadMetadata {
            path: path.into(),
            key: "llama.rope.scaling.type".into(),
            value: format!("{kind:?} (rope scaling is not supported)"),
        });
    }
    for (key, value) in [("llama.attention.head_count", n_heads), ("llama.attention.head_count_kv", n_kv), ("llama.embedding_length", hidden), ("llama.block_count", n_layers)] {
        if value == 0 {
            return Err(ModelError::BadMetadata { path: path.into(), key: key.into(), value: "0 (must be positive)".into() });
        }
    }
    let mut config = LlamaConfig::new(vocab, hidden, ffn, n_layers, n_heads, n_kv, !content.tensor_infos.contains_key("output.weight"));
    if let Some(kl) = key_len
        && (n_heads == 0 || kl * n_heads != hidden)
    {
        config.head_dim = Some(kl);
    }
    if let Some(rd) = meta.opt_usize("llama.rope.dimension_count")?
        && rd != config.head_dim()
    {
        return Err(ModelError::BadMetadata {
            path: path.into(),
            key: "llama.rope.dimension_count".into(),
            value: format!("{rd} (partial rope is not supported; head_dim is {})", config.head_dim()),
        });
    }
    config.rms_norm_eps = eps;
    config.rope_theta = theta;
    config.max_position_embeddings = ctx;
    let id = |key: &str| meta.opt_usize(key).map(|v| v.and_then(|x| u32::try_from(x).ok()).map(TokenIds::One));
    config.bos_token_id = id("tokenizer.ggml.bos_token_id")?;
    config.eos_token_id = id("tokenizer.ggml.eos_token_id")?;
    config.validate()?;
    Ok(config)
}

/// Whether candle can dequantize this storage type.
fn dequantizable(t: GgmlDType) -> bool {
    !matches!(t, GgmlDType::Q8_1 | GgmlDType::Q8K)
}

/// The block index of a tensor named `<prefix><index>.<rest>`.
pub(crate) fn block_index(name: &str, prefix: &str) -> Option<usize> {
    name.strip_prefix(prefix)?.split('.').next()?.parse().ok()
}

/// `general.alignment` (GGUF's default 32 when absent); tensor offsets are multiples of it.
fn alignment(path: &Path, content: &Content) -> Result<u64> {
    match content.metadata.get("general.alignment") {
        None => Ok(32),
        Some(v) => match as_u64(v) {
            Some(a) if a > 0 && a.is_power_of_two() => Ok(a),
            _ => Err(ModelError::BadMetadata { path: path.into(), key: "general.alignment".into(), value: value_text(v) }),
        },
    }
}

/// Checks a tensor's header entry against the file and reads it as f32 on the CPU.
fn read_tensor(
    path: &Path,
    name: &str,
    info: &TensorInfo,
    expected: &[usize],
    content: &Content,
    reader: &mut BufReader<File>,
    file_size: u64,
) -> Result<Tensor> {
    if info.shape.dims() != expected {
        return Err(ModelError::ShapeMismatch {
            tensor: name.to_string(),
            expected: expected.to_vec(),
            found: info.shape.dims().to_vec(),
        });
    }
    if !dequantizable(info.ggml_dtype) {
        return Err(ModelError::UnsupportedQuantization {
            path: path.into(),
            tensor: name.into(),
            dtype: dtype_name(info.ggml_dtype),
        });
    }
    // The shape matches the validated config, so this product does not overflow in practice;
    // stay checked anyway.
    let numel = expected.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
    let block = info.ggml_dtype.block_size();
    let row = *expected.last().unwrap_or(&0);
    if numel % block != 0 || !row.is_multiple_of(block) {
        return Err(ModelError::Gguf {
            path: path.into(),
            reason: format!(
                "tensor `{name}` of type {} has rows of {row} values, not a multiple of its block size {block}",
                dtype_name(info.ggml_dtype)
            ),
        });
    }
    let n_bytes = (numel / block) as u64 * info.ggml_dtype.type_size() as u64;
    let start = content.tensor_data_offset.checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(n_bytes));
    match (start, end) {
        (Some(s), Some(e)) if e <= file_size => {
            tracing::trace!(tensor = name, start = s, end = e, "reading gguf tensor");
        }
        _ => {
            return Err(ModelError::Gguf {
                path: path.into(),
                reason: format!(
                    "tensor `{name}` needs {n_bytes} bytes at offset {} + {}, past the end of the {file_size}-byte file (truncated?)",
                    content.tensor_data_offset, info.offset
                ),
            });
        }
    }
    let q = info
        .read(reader, content.tensor_data_offset, &Device::Cpu)
        .map_err(|e| ModelError::Gguf { path: path.into(), reason: format!("reading tensor `{name}`: {e}") })?;
    let t = q
        .dequantize(&Device::Cpu)
        .and_then(|t| t.to_dtype(DType::F32))
        .map_err(|e| ModelError::Gguf { path: path.into(), reason: format!("dequantizing tensor `{name}`: {e}") })?;
    Ok(t)
}

/// The heads llama.cpp's RoPE row permutation splits the Hugging Face tensor `hf` into
/// (q and k projections), or `None` for a tensor it leaves alone.
fn rope_heads(hf: &str, config: &LlamaConfig) -> Option<usize> {
    block_tensor(hf).and_then(|(_, t)| t.rope_heads(config))
}

/// A llama GGUF file read a tensor at a time: the header checked once (architecture, config,
/// the blocks it declares against those it holds, the alignment), then each tensor by its
/// Hugging Face name, dequantized to f32 with the q/k rows put back in the Hugging Face layout.
/// [`LlamaModel::from_gguf`] reads every tensor through it; a streamed prune one block at a time.
pub struct GgufReader {
    path: PathBuf,
    content: Content,
    reader: BufReader<File>,
    file_size: u64,
    alignment: u64,
    config: LlamaConfig,
}

impl std::fmt::Debug for GgufReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufReader").field("path", &self.path).finish_non_exhaustive()
    }
}

impl GgufReader {
    /// Reads and checks the header of the llama GGUF file `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let (content, reader, file_size) = read_content(path)?;
        let arch = architecture(path, &content)?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture { path: path.into(), arch });
        }
        let config = llama_config(path, &content)?;
        // Fail on the first absent block before listing every tensor a (possibly corrupt)
        // block count implies.
        for i in 0..config.num_hidden_layers {
            let name = BlockSlot::AttnNorm.spec().gguf_name(i);
            if !content.tensor_infos.contains_key(&name) {
                return Err(ModelError::MissingTensor { path: path.into(), tensor: name });
            }
        }
        // Blocks past the declared count would be dropped without a word.
        if let Some(extra) = content.tensor_infos.keys().filter_map(|k| block_index(k, "blk.")).filter(|&b| b >= config.num_hidden_layers).max() {
            return Err(ModelError::BadMetadata {
                path: path.into(),
                key: "llama.block_count".into(),
                value: format!("{} (the file holds tensors of block {extra})", config.num_hidden_layers),
            });
        }
        let alignment = alignment(path, &content)?;
        Ok(GgufReader { path: path.to_path_buf(), content, reader, file_size, alignment, config })
    }

    /// The config the header describes.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    fn info(&self, hf: &str) -> Result<(String, &TensorInfo)> {
        let gg = gguf_name(hf).ok_or_else(|| ModelError::MissingTensor { path: self.path.clone(), tensor: hf.to_string() })?;
        let info = self.content.tensor_infos.get(&gg).ok_or_else(|| ModelError::MissingTensor { path: self.path.clone(), tensor: gg.clone() })?;
        Ok((gg, info))
    }

    /// Checks that the Hugging Face tensor `hf` is stored with shape `shape` in a type prunus
    /// reads; returns whether it is f16 (else f32, or quantized, which dequantizes to f32).
    pub fn check(&self, hf: &str, shape: &[usize]) -> Result<bool> {
        let (gg, info) = self.info(hf)?;
        if info.shape.dims() != shape {
            return Err(ModelError::ShapeMismatch { tensor: gg, expected: shape.to_vec(), found: info.shape.dims().to_vec() });
        }
        if !dequantizable(info.ggml_dtype) {
            return Err(ModelError::UnsupportedQuantization { path: self.path.clone(), tensor: gg, dtype: dtype_name(info.ggml_dtype) });
        }
        Ok(info.ggml_dtype == GgmlDType::F16)
    }

    /// The Hugging Face tensor `hf` of shape `shape`, as f32 on the CPU in the Hugging Face
    /// layout.
    pub fn tensor(&mut self, hf: &str, shape: &[usize]) -> Result<Tensor> {
        let gg = self.info(hf)?.0;
        let GgufReader { path, content, reader, file_size, alignment, .. } = self;
        let info = &content.tensor_infos[&gg];
        if info.offset % *alignment != 0 {
            return Err(ModelError::Gguf {
                path: path.clone(),
                reason: format!("tensor `{gg}` starts at offset {}, not a multiple of the file's alignment {alignment}", info.offset),
            });
        }
        let mut t = read_tensor(path, &gg, info, shape, content, reader, *file_size)?;
        if let Some(heads) = rope_heads(hf, &self.config) {
            t = unpermute_qk_from_gguf(&t, heads)?;
        }
        Ok(t)
    }
}

impl LlamaModel {
    /// Loads a Llama-architecture GGUF file, dequantizing every tensor to f32 on `device`.
    /// Q/K rows are un-permuted to the Hugging Face layout. Fails with a typed error for a
    /// non-llama architecture, a missing or mis-shaped tensor, an unsupported quantization
    /// type, or a truncated or corrupt file.
    pub fn from_gguf(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        let mut reader = GgufReader::open(path)?;
        let config = reader.config().clone();
        tracing::debug!(path = %path.display(), ?config, "loading gguf");
        let mut tensors = HashMap::new();
        for (hf, shape) in tensor_specs(&config) {
            let t = reader.tensor(&hf, &shape)?;
            tensors.insert(hf, t);
        }
        let mut model = LlamaModel::from_tensors(config, tensors, device, path)?;
        model.set_source(std::fs::canonicalize(path).ok());
        Ok(model)
    }
}

/// Reads a GGUF header (no tensor data) for an `inspect` command: architecture, the Llama
/// config when the architecture is `llama`, metadata, tensors and parameter counts.
pub fn inspect_gguf(path: impl AsRef<Path>) -> Result<GgufSummary> {
    let path = path.as_ref();
    let (content, _reader, file_size) = read_content(path)?;
    let architecture = architecture(path, &content)?;
    let config = if architecture == "llama" {
        match llama_config(path, &content) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::warn!(error = %e, "gguf metadata does not describe a usable llama config");
                None
            }
        }
    } else {
        None
    };
    let mut metadata: Vec<(String, String)> =
        content.metadata.iter().map(|(k, v)| (k.clone(), value_text(v))).collect();
    metadata.sort();
    let mut tensors: Vec<GgufTensor> = content
        .tensor_infos
        .iter()
        .map(|(name, info)| {
            let shape = info.shape.dims().to_vec();
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).unwrap_or(usize::MAX);
            GgufTensor { name: name.clone(), dtype: dtype_name(info.ggml_dtype), shape, numel }
        })
        .collect();
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let n_params = tensors.iter().fold(0usize, |a, t| a.saturating_add(t.numel));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for t in &tensors {
        *counts.entry(t.dtype.clone()).or_default() += 1;
    }
    let mut dtype_counts: Vec<_> = counts.into_iter().collect();
    dtype_counts.sort();
    let name = Meta { path, md: &content.metadata }.opt_str("general.name").map(str::to_string);
    Ok(GgufSummary {
        path: path.into(),
        file_size,
        architecture,
        name,
        config,
        metadata,
        tensors,
        n_params,
        dtype_counts,
    })
}

/// Writes `model` as a GGUF file laid out the way llama.cpp's converter does (GGUF tensor
/// names, Q/K rows permuted for interleaved RoPE), every 2-D weight stored as `dtype` and the
/// norms as F32, with `arch` as `general.architecture` and the prefix of the hyperparameter
/// keys, then `overrides` replacing or adding metadata keys. The vocabulary is a placeholder
/// (`t0`, `t1`, ...) with no tokenizer model: this is for synthetic models in tests and
/// fixtures, not a conversion tool.
pub fn write_gguf(model: &LlamaModel, path: &Path, dtype: GgmlDType, arch: &str, overrides: &[(&str, Value)]) -> Result<()> {
    let c = model.config();
    let gguf_err = |reason: String| ModelError::Gguf { path: path.into(), reason };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (hf, t) in model.named_tensors() {
        let mut t = t.clone();
        if let Some(heads) = rope_heads(&hf, c) {
            t = permute_qk_to_gguf(&t, heads)?;
        }
        let dt = if t.rank() == 1 { GgmlDType::F32 } else { dtype };
        let name = gguf_name(&hf).ok_or_else(|| gguf_err(format!("tensor `{hf}` has no GGUF name")))?;
        let q = QTensor::quantize(&t, dt).map_err(|e| gguf_err(format!("quantizing `{hf}`: {e}")))?;
        tensors.push((name, q));
    }
    let u = |v: usize| Value::U32(v as u32);
    let mut md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String("synthetic".into())),
        (format!("{arch}.block_count"), u(c.num_hidden_layers)),
        (format!("{arch}.embedding_length"), u(c.hidden_size)),
        (format!("{arch}.feed_forward_length"), u(c.intermediate_size)),
        (format!("{arch}.attention.head_count"), u(c.num_attention_heads)),
        (format!("{arch}.attention.head_count_kv"), u(c.n_kv_heads())),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(c.rms_norm_eps as f32)),
        (format!("{arch}.rope.freq_base"), Value::F32(c.rope_theta as f32)),
        (format!("{arch}.context_length"), u(c.max_position_embeddings)),
        (format!("{arch}.rope.dimension_count"), u(c.head_dim())),
        ("tokenizer.ggml.tokens".into(), Value::Array((0..c.vocab_size).map(|i| Value::String(format!("t{i}"))).collect())),
    ];
    for (key, value) in overrides {
        md.retain(|(k, _)| k != key);
        md.push((key.to_string(), value.clone()));
    }
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = File::create(path).map_err(|source| ModelError::Io { op: "create", path: path.into(), source })?;
    gguf_file::write(&mut f, &md_refs, &t_refs).map_err(|e| gguf_err(format!("writing: {e}")))?;
    Ok(())
}
