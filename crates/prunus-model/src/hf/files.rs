//! The files of a Hugging Face directory: which safetensors files hold the weights (one file,
//! or the shards an index names), why a header does not describe its file, and `config.json`
//! read and written.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// An IO error on `path` during `op`, as a [`ModelError`].
pub(super) fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ModelError + 'a {
    move |source| ModelError::Io { op, path: path.to_path_buf(), source }
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

/// Writes `config` as `dir/config.json`; returns its path.
pub(crate) fn write_config(dir: &Path, config: &LlamaConfig) -> Result<PathBuf> {
    let config_path = dir.join("config.json");
    let mut text = serde_json::to_string_pretty(config).map_err(|source| ModelError::ConfigParse { path: config_path.clone(), source })?;
    text.push('\n');
    std::fs::write(&config_path, text).map_err(io("write", &config_path))?;
    Ok(config_path)
}
