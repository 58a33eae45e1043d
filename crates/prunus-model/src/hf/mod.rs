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

mod files;
mod outdir;
mod shards;

use files::io;
pub(crate) use files::{safetensors_files, write_config};
pub use files::{header_problem, read_config};
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
        let mut tensors = HashMap::new();
        for (name, shape) in config.tensor_shapes() {
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
        let extra = routing.len().saturating_sub(tensors.len());
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

    fn write_hf_files(&self, dir: &Path, options: &SaveOptions<'_>) -> Result<()> {
        let config_path = write_config(dir, &self.export_config())?;
        let mut tensors = Vec::new();
        for (name, t) in self.named_tensors() {
            tensors.push((name, RawTensor::from_tensor(t, Dtype::F32)?));
        }
        write_safetensors(&dir.join("model.safetensors"), tensors.iter().map(|(n, t)| (n.as_str(), t)), &config_path)?;
        if let Some(tok) = options.tokenizer_json {
            let p = dir.join("tokenizer.json");
            std::fs::write(&p, tok).map_err(io("write", &p))?;
        }
        Ok(())
    }
}
