//! Hugging Face directories: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), read memory-mapped, and written so that transformers'
//! `LlamaForCausalLM.from_pretrained` loads them as they are.
//!
//! Beside the whole-model load and save: [`OutputDir`] (a directory written whole or not at
//! all, which every save goes through) and [`ShardReader`]/[`ShardWriter`] (a tensor or a
//! shard at a time, for models larger than memory; see [`stream`](crate::stream)).

use std::collections::HashMap;
use std::path::Path;

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device};
use safetensors::Dtype;

use crate::config::LlamaConfig;

mod bitmask;
mod files;
mod outdir;
mod shards;

use files::io;
pub(crate) use files::{safetensors_files, write_config};
pub use files::{header_problem, read_config};
pub use bitmask::FORMAT as SPARSE_FORMAT;
pub use outdir::{OutputDir, TEMP_PREFIX, remove_stale_temps};
pub use shards::{RawTensor, ShardReader, ShardWriter};
use shards::write_safetensors;
use crate::error::{ModelError, Result};
use crate::llama::LlamaModel;

/// Options for [`LlamaModel::save_hf_dir`].
#[derive(Debug, Clone, Default)]
pub struct SaveOptions<'a> {
    /// Written verbatim as `tokenizer.json` when given.
    pub tokenizer_json: Option<&'a [u8]>,
    /// Replace an existing non-empty output directory (it is swapped out only once the new
    /// one is complete).
    pub overwrite: bool,
    /// Store every decoder-block linear in compressed-tensors' sparse-bitmask layout (its
    /// non-zero values, a bit per weight and the row offsets; see [`SPARSE_FORMAT`]) instead of
    /// as a dense matrix: a pruned model's file shrinks with its sparsity, and
    /// [`from_hf_dir`](LlamaModel::from_hf_dir) reads it back bit for bit.
    pub sparse: bool,
}

impl LlamaModel {
    /// Loads a Hugging Face Llama directory (config.json + model.safetensors, or shards with
    /// model.safetensors.index.json); f32, f16 and bf16 tensors are converted to f32 on
    /// `device`. The files are memory-mapped; each tensor is copied out once. Per-layer
    /// widths (`prunus_layer_widths`, written for width-pruned models) are honoured.
    pub fn from_hf_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config = read_config(dir)?;
        let files = safetensors_files(dir)?;
        let mut maps = Vec::with_capacity(files.len());
        let mut routing: HashMap<String, usize> = HashMap::new();
        for (i, file) in files.iter().enumerate() {
            if !file.is_file() {
                return Err(ModelError::Io {
                    op: "open",
                    path: file.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                });
            }
            // SAFETY: the mapping is read-only; as with any mmap, the file must not be
            // truncated or rewritten by another process while the model loads.
            let st = unsafe { MmapedSafetensors::new(file) }.map_err(|e| ModelError::Safetensors {
                path: file.clone(),
                reason: match header_problem(file) {
                    Some(detail) => format!("{e} ({detail})"),
                    None => e.to_string(),
                },
            })?;
            for (name, _) in st.tensors() {
                routing.insert(name, i);
            }
            maps.push(st);
        }
        // Fail on the first absent block before listing every tensor the config implies.
        for i in 0..config.num_hidden_layers {
            let name = format!("model.layers.{i}.input_layernorm.weight");
            if !routing.contains_key(&name) {
                return Err(ModelError::MissingTensor { path: dir.to_path_buf(), tensor: name });
            }
        }
        // Layers past the declared count would be dropped without a word.
        if let Some(extra) = routing.keys().filter_map(|k| crate::gguf::block_index(k, "model.layers.")).filter(|&b| b >= config.num_hidden_layers).max() {
            return Err(ModelError::Config {
                field: "num_hidden_layers".into(),
                value: config.num_hidden_layers.to_string(),
                reason: format!("the weights in {} hold layer {extra}", dir.display()),
            });
        }
        check_quantization(&config, dir)?;
        let mut tensors = HashMap::new();
        for (name, shape) in config.tensor_shapes() {
            let compressed = format!("{}.compressed", bitmask::prefix(&name));
            if !routing.contains_key(&name) && routing.contains_key(&compressed) {
                let i = routing[&compressed];
                let prefix = bitmask::prefix(&name);
                let w = bitmask::decompress(&shape, |part| maps[*routing.get(&format!("{prefix}.{part}"))?].get(&format!("{prefix}.{part}")).ok())
                    .map_err(|reason| ModelError::Safetensors { path: files[i].clone(), reason: format!("sparse tensor `{prefix}`: {reason}") })?;
                tensors.insert(name, candle_core::Tensor::from_vec(w, shape.as_slice(), &Device::Cpu)?.to_device(device)?);
                continue;
            }
            let i = *routing
                .get(&name)
                .ok_or_else(|| ModelError::MissingTensor { path: dir.to_path_buf(), tensor: name.clone() })?;
            let view = maps[i]
                .get(&name)
                .map_err(|e| ModelError::Safetensors { path: files[i].clone(), reason: e.to_string() })?;
            if view.shape() != shape.as_slice() {
                return Err(ModelError::ShapeMismatch { tensor: name, expected: shape, found: view.shape().to_vec() });
            }
            match view.dtype() {
                Dtype::F32 | Dtype::F16 | Dtype::BF16 => {}
                other => {
                    return Err(ModelError::UnsupportedDtype {
                        path: files[i].clone(),
                        tensor: name,
                        dtype: format!("{other:?}"),
                    });
                }
            }
            let t = view
                .load(&Device::Cpu)
                .and_then(|t| t.to_dtype(DType::F32))
                .map_err(|e| ModelError::Safetensors { path: files[i].clone(), reason: format!("tensor `{name}`: {e}") })?;
            tensors.insert(name, t);
        }
        let parts = routing.keys().filter(|k| bitmask::PARTS.iter().any(|p| k.ends_with(&format!(".{p}")))).count();
        let extra = routing.len().saturating_sub(tensors.len() + parts);
        if extra > 0 {
            tracing::debug!(extra, "ignoring tensors that a llama does not use");
        }
        let mut model = LlamaModel::from_tensors(config, tensors, device, dir)?;
        model.set_source(std::fs::canonicalize(dir).ok());
        Ok(model)
    }

    /// Loads a model from a GGUF file or a Hugging Face directory.
    pub fn load(path: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let path = path.as_ref();
        if path.is_dir() { Self::from_hf_dir(path, device) } else { Self::from_gguf(path, device) }
    }

    /// The config as written by [`save_hf_dir`](Self::save_hf_dir): f32, every derived size
    /// explicit, tying as stored, and per-layer widths under `prunus_layer_widths` when the
    /// layers differ (see [`LayerWidths`](crate::config::LayerWidths)).
    pub fn export_config(&self) -> LlamaConfig {
        let mut c = self.config().clone();
        c.architectures = vec!["LlamaForCausalLM".into()];
        c.model_type = "llama".into();
        c.torch_dtype = Some("float32".into());
        c.tie_word_embeddings = self.is_tied();
        c.num_key_value_heads = Some(c.n_kv_heads());
        c.head_dim = Some(c.head_dim());
        c.quantization_config = None;
        c
    }

    /// Writes a Hugging Face directory: `config.json`, `model.safetensors` (f32, Hugging Face
    /// names and Q/K layout, no `lm_head.weight` when tied) and, if given, `tokenizer.json`.
    /// Everything is written into a temporary directory next to `out` and renamed into place
    /// when complete. Refuses `out` when it is (or contains) the path the model was loaded
    /// from, when it is an existing file, or a non-empty directory without `overwrite`.
    pub fn save_hf_dir(&self, out: impl AsRef<Path>, options: &SaveOptions<'_>) -> Result<()> {
        let dir = OutputDir::create(out.as_ref(), self.source(), options.overwrite)?;
        self.write_hf_files(dir.path(), options)?;
        dir.commit()
    }

    /// Bytes of the tensors [`save_hf_dir`](Self::save_hf_dir) writes (headers aside): every
    /// tensor as f32, or with `sparse` the block linears in the sparse-bitmask layout (their
    /// non-zero values, a bit per weight, a row offset per row and the shape).
    pub fn tensor_bytes(&self, sparse: bool) -> Result<u64> {
        let mut total = 0u64;
        for (name, t) in self.named_tensors() {
            total += if sparse && is_block_linear(&name) {
                let (rows, cols) = t.dims2()?;
                let nonzero = t.flatten_all()?.to_vec1::<f32>()?.iter().filter(|v| v.to_bits() != 0).count();
                (nonzero * 4 + rows * cols.div_ceil(8) + rows * 8 + 16) as u64
            } else {
                (t.elem_count() * 4) as u64
            };
        }
        Ok(total)
    }

    fn write_hf_files(&self, dir: &Path, options: &SaveOptions<'_>) -> Result<()> {
        let mut config = self.export_config();
        let mut tensors = Vec::new();
        let (mut zeros, mut packed) = (0usize, 0usize);
        let mut two_four = true;
        for (name, t) in self.named_tensors() {
            if options.sparse && is_block_linear(&name) {
                let (rows, cols) = t.dims2()?;
                let w = t.flatten_all()?.to_vec1::<f32>()?;
                zeros += w.iter().filter(|v| **v == 0.0).count(); // -0.0 is stored, but is a zero
                packed += w.len();
                two_four &= cols % 4 == 0 && w.chunks_exact(4).all(|g| g.iter().filter(|v| v.to_bits() != 0).count() <= 2);
                tensors.extend(bitmask::compress(bitmask::prefix(&name), &w, rows, cols));
            } else {
                tensors.push((name, RawTensor::from_tensor(t, Dtype::F32)?));
            }
        }
        if options.sparse {
            config.quantization_config = Some(serde_json::json!({
                "quant_method": "compressed-tensors",
                "format": bitmask::FORMAT,
                "sparsity_config": {
                    "format": bitmask::FORMAT,
                    "global_sparsity": zeros as f64 / packed.max(1) as f64,
                    "sparsity_structure": if two_four { "2:4" } else { "unstructured" },
                    "targets": ["Linear"],
                    "ignore": ["lm_head"],
                },
            }));
        }
        let config_path = write_config(dir, &config)?;
        write_safetensors(&dir.join("model.safetensors"), tensors.iter().map(|(n, t)| (n.as_str(), t)), &config_path)?;
        if let Some(tok) = options.tokenizer_json {
            let p = dir.join("tokenizer.json");
            std::fs::write(&p, tok).map_err(io("write", &p))?;
        }
        Ok(())
    }
}

/// Whether `name` is the weight of a decoder block's linear (`model.layers.N.*_proj.weight`).
fn is_block_linear(name: &str) -> bool {
    name.starts_with("model.layers.") && name.ends_with("_proj.weight")
}

/// Refuses a `quantization_config` that describes anything but dense or sparse-bitmask f32,
/// f16 or bf16 weights: prunus does not dequantize.
fn check_quantization(config: &LlamaConfig, dir: &Path) -> Result<()> {
    let Some(q) = &config.quantization_config else { return Ok(()) };
    let method = q.get("quant_method").and_then(|m| m.as_str()).unwrap_or("");
    let groups = q.get("config_groups").is_some_and(|g| g.as_object().is_some_and(|o| !o.is_empty()));
    if method != "compressed-tensors" || groups {
        return Err(ModelError::Config {
            field: "quantization_config".into(),
            value: if method.is_empty() { "?".into() } else { method.into() },
            reason: format!("{} holds quantized weights; prunus reads f32, f16 and bf16 weights, dense or in the {} layout", dir.display(), bitmask::FORMAT),
        });
    }
    Ok(())
}
