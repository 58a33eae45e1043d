//! Hugging Face directories: `config.json` + `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), read memory-mapped, and written so that transformers'
//! `LlamaForCausalLM.from_pretrained` loads them as they are.
//!
//! Beside the whole-model load and save: [`OutputDir`] (a directory written whole or not at
//! all, which every save goes through) and [`ShardReader`]/[`ShardWriter`] (a tensor or a
//! shard at a time, for models larger than memory; see [`stream`](crate::stream)).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::{Load, MmapedSafetensors};
use candle_core::{DType, Device};
use safetensors::Dtype;

use crate::config::LlamaConfig;

mod outdir;
mod shards;

pub use outdir::OutputDir;
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

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelError + 'a {
    move |source| ModelError::Io { op, path: path.to_path_buf(), source }
}

/// Temporary directories of a save are named `<TEMP_PREFIX><pid>-<name>.<random>` beside the
/// output, so that a later run can tell the leftovers of a killed process from a save in
/// progress.
pub const TEMP_PREFIX: &str = ".prunus-tmp-";

/// Removes the temporary directories that killed saves left in `dir` (their process is gone),
/// with a warning naming each; returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return removed };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(TEMP_PREFIX).and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if pid == std::process::id() || Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let path = entry.path();
        tracing::warn!(path = %path.display(), "removing the temporary output of an interrupted save");
        let removed_ok = if entry.file_type().is_ok_and(|t| t.is_dir()) { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if removed_ok.is_ok() {
            removed.push(path);
        }
    }
    removed
}

/// Why a safetensors header does not describe its file, naming the tensor, when the crate's
/// own error does not (it says "incomplete metadata" or "invalid ... for tensor" without a
/// name). Reads only the header; `None` when no single tensor is to blame.
pub fn header_problem(file: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::fs::File::open(file).ok()?;
    let file_len = f.metadata().ok()?.len();
    let mut n = [0u8; 8];
    f.read_exact(&mut n).ok()?;
    let n = u64::from_le_bytes(n);
    if n > file_len.saturating_sub(8) || n > 100 << 20 {
        return Some(format!("the header claims {n} bytes of a {file_len}-byte file"));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).ok()?;
    let json: serde_json::Value = serde_json::from_slice(&header).ok()?;
    let data_len = file_len - 8 - n;
    let mut entries: Vec<(String, u64, u64, u64)> = Vec::new();
    for (name, info) in json.as_object()? {
        if name == "__metadata__" {
            continue;
        }
        let offsets = info.get("data_offsets")?.as_array()?;
        let (s, e) = (offsets.first()?.as_u64()?, offsets.get(1)?.as_u64()?);
        let bytes_per = match info.get("dtype")?.as_str()? {
            "F64" | "I64" | "U64" => 8,
            "F32" | "I32" | "U32" => 4,
            "F16" | "BF16" | "I16" | "U16" => 2,
            "I8" | "U8" | "BOOL" | "F8_E4M3" | "F8_E5M2" => 1,
            other => return Some(format!("tensor `{name}` has dtype {other}")),
        };
        let numel = info.get("shape")?.as_array()?.iter().try_fold(1u64, |a, d| d.as_u64().and_then(|d| a.checked_mul(d)));
        let Some(size) = numel.and_then(|n| n.checked_mul(bytes_per)) else {
            return Some(format!("tensor `{name}` has a shape too large to address"));
        };
        entries.push((name.clone(), s, e, size));
    }
    entries.sort_by_key(|&(_, s, e, _)| (s, e));
    let mut end = 0;
    for (name, s, e, size) in entries {
        if s != end || e < s {
            return Some(format!("tensor `{name}` has data_offsets [{s}, {e}], expected to start at {end}"));
        }
        if e - s != size {
            return Some(format!("tensor `{name}` has data_offsets [{s}, {e}] ({} bytes) for a shape of {size} bytes", e - s));
        }
        if e > data_len {
            return Some(format!("tensor `{name}` has data_offsets [{s}, {e}] past the {data_len} bytes of data"));
        }
        end = e;
    }
    None
}

/// Reads and validates `dir/config.json`.
pub fn read_config(dir: &Path) -> Result<LlamaConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(io("read", &path))?;
    let config: LlamaConfig =
        serde_json::from_str(&text).map_err(|source| ModelError::ConfigParse { path: path.clone(), source })?;
    config.validate()?;
    Ok(config)
}

/// The safetensors files of a directory: the shards named by the index, or the single file.
pub(crate) fn safetensors_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index).map_err(io("read", &index))?;
        let json: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| ModelError::Safetensors { path: index.clone(), reason: e.to_string() })?;
        let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| ModelError::Safetensors {
            path: index.clone(),
            reason: "no `weight_map` object".into(),
        })?;
        let mut files = BTreeSet::new();
        for (tensor, file) in map {
            let file = file.as_str().ok_or_else(|| ModelError::Safetensors {
                path: index.clone(),
                reason: format!("weight_map entry for `{tensor}` is not a file name: {file}"),
            })?;
            if Path::new(file).components().count() != 1 || file.starts_with('.') {
                return Err(ModelError::Safetensors {
                    path: index.clone(),
                    reason: format!("weight_map entry for `{tensor}` names `{file}`, not a file in the directory"),
                });
            }
            files.insert(file.to_string());
        }
        Ok(files.into_iter().map(|f| dir.join(f)).collect())
    } else {
        Ok(vec![dir.join("model.safetensors")])
    }
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

/// Writes `config` as `dir/config.json`; returns its path.
pub(crate) fn write_config(dir: &Path, config: &LlamaConfig) -> Result<PathBuf> {
    let config_path = dir.join("config.json");
    let mut text = serde_json::to_string_pretty(config).map_err(|source| ModelError::ConfigParse { path: config_path.clone(), source })?;
    text.push('\n');
    std::fs::write(&config_path, text).map_err(io("write", &config_path))?;
    Ok(config_path)
}
