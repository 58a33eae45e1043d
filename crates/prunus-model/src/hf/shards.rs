//! Safetensors a tensor at a time, for models larger than memory.
//!
//! [`ShardReader`] reads the headers of a directory's safetensors files (one file or the
//! shards of an index) and then each tensor with a positioned read into its own buffer. It
//! does not memory-map: pages of a mapping that were touched count towards the process's
//! resident memory until the kernel reclaims them, so streaming a 13 GB checkpoint through a
//! mapping would report 13 GB resident; plain reads leave the file in the page cache, which
//! the kernel owns.
//!
//! [`ShardWriter`] writes a directory shard by shard (`model-00001-of-000NN.safetensors`, as
//! transformers names them) and then `model.safetensors.index.json`, so that only one shard's
//! bytes are in memory at a time.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use safetensors::Dtype;
use safetensors::tensor::Metadata;

use super::files::{header_problem, safetensors_files, write_config};
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// A tensor's little-endian bytes with its safetensors dtype and shape.
#[derive(Debug, Clone)]
pub struct RawTensor {
    /// Element type.
    pub dtype: Dtype,
    /// Row-major shape.
    pub shape: Vec<usize>,
    /// The data, little-endian.
    pub bytes: Vec<u8>,
}

impl RawTensor {
    /// `t` converted to `dtype` (f32, f16 or bf16; rounding to nearest even).
    pub fn from_tensor(t: &Tensor, dtype: Dtype) -> Result<Self> {
        let flat = t.flatten_all()?.to_device(&Device::Cpu)?;
        let bytes = match dtype {
            Dtype::F32 => flat.to_dtype(DType::F32)?.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::BF16 => flat.to_dtype(DType::BF16)?.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => flat.to_dtype(DType::F16)?.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
            other => return Err(ModelError::Safetensors { path: PathBuf::from("<output>"), reason: format!("cannot write dtype {other:?}") }),
        };
        Ok(RawTensor { dtype, shape: t.dims().to_vec(), bytes })
    }

    /// The tensor as f32 on the CPU.
    pub fn to_f32(&self) -> Result<Tensor> {
        let dtype = match self.dtype {
            Dtype::F32 => DType::F32,
            Dtype::F16 => DType::F16,
            Dtype::BF16 => DType::BF16,
            other => return Err(ModelError::Safetensors { path: PathBuf::from("<tensor>"), reason: format!("dtype {other:?} is not a float") }),
        };
        Ok(Tensor::from_raw_buffer(&self.bytes, dtype, &self.shape, &Device::Cpu)?.to_dtype(DType::F32)?)
    }
}

impl safetensors::View for &RawTensor {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        std::borrow::Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Where one tensor lies.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    /// Absolute byte range in the file.
    start: u64,
    end: u64,
}

/// Reads the tensors of a Hugging Face directory one at a time (see the module docs).
#[derive(Debug)]
pub struct ShardReader {
    files: Vec<(PathBuf, File)>,
    entries: HashMap<String, Entry>,
    dir: PathBuf,
}

impl ShardReader {
    /// Reads and checks the headers of `dir`'s safetensors files (every tensor's byte range
    /// lies inside its file); no tensor data is read.
    pub fn open(dir: &Path) -> Result<Self> {
        let mut files = Vec::new();
        let mut entries = HashMap::new();
        for (i, path) in safetensors_files(dir)?.into_iter().enumerate() {
            let bad = |reason: String| ModelError::Safetensors { path: path.clone(), reason };
            let file = File::open(&path).map_err(|source| ModelError::Io { op: "open", path: path.clone(), source })?;
            let len = file.metadata().map_err(|source| ModelError::Io { op: "stat", path: path.clone(), source })?.len();
            let mut n = [0u8; 8];
            file.read_exact_at(&mut n, 0).map_err(|e| bad(format!("cannot read the header length: {e}")))?;
            let n = u64::from_le_bytes(n);
            if n > len.saturating_sub(8) || n > 100 << 20 {
                return Err(bad(format!("the header claims {n} bytes of a {len}-byte file")));
            }
            let mut header = vec![0u8; n as usize];
            file.read_exact_at(&mut header, 8).map_err(|e| bad(format!("cannot read the header: {e}")))?;
            let metadata: Metadata = serde_json::from_slice(&header).map_err(|e| {
                bad(match header_problem(&path) {
                    Some(detail) => format!("{e} ({detail})"),
                    None => e.to_string(),
                })
            })?;
            let data_start = 8 + n;
            if metadata.data_len() as u64 > len - data_start {
                return Err(bad(format!("the header describes {} bytes of data, the file holds {}", metadata.data_len(), len - data_start)));
            }
            for (name, info) in metadata.tensors() {
                let (s, e) = info.data_offsets;
                let entry = Entry { file: i, dtype: info.dtype, shape: info.shape.clone(), start: data_start + s as u64, end: data_start + e as u64 };
                entries.insert(name, entry);
            }
            files.push((path, file));
        }
        Ok(ShardReader { files, entries, dir: dir.to_path_buf() })
    }

    /// Every tensor name in the files.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The prefix of `name`'s four tensors when it is stored in the sparse-bitmask layout
    /// (no `name` itself, but `<prefix>.compressed`).
    fn sparse_prefix<'n>(&self, name: &'n str) -> Option<&'n str> {
        let prefix = super::bitmask::prefix(name);
        (!self.entries.contains_key(name) && self.entries.contains_key(&format!("{prefix}.compressed"))).then_some(prefix)
    }

    /// The stored dtype of `name`, checked to be f32, f16 or bf16 and of shape `shape` (f32 for a
    /// linear in the sparse-bitmask layout, whose shape is checked when it is read).
    pub fn check(&self, name: &str, shape: &[usize]) -> Result<Dtype> {
        if self.sparse_prefix(name).is_some() {
            return Ok(Dtype::F32);
        }
        let e = self.entry(name)?;
        if e.shape != shape {
            return Err(ModelError::ShapeMismatch { tensor: name.to_string(), expected: shape.to_vec(), found: e.shape.clone() });
        }
        match e.dtype {
            Dtype::F32 | Dtype::F16 | Dtype::BF16 => Ok(e.dtype),
            other => Err(ModelError::UnsupportedDtype { path: self.files[e.file].0.clone(), tensor: name.to_string(), dtype: format!("{other:?}") }),
        }
    }

    /// The bytes of `name` as stored, after [`check`](Self::check)ing it against `shape`; a
    /// linear in the sparse-bitmask layout comes back dense, as f32.
    pub fn raw(&self, name: &str, shape: &[usize]) -> Result<RawTensor> {
        if let Some(prefix) = self.sparse_prefix(name) {
            return self.sparse(prefix, shape);
        }
        let dtype = self.check(name, shape)?;
        let e = self.entry(name)?;
        Ok(RawTensor { dtype, shape: e.shape.clone(), bytes: self.bytes(name, e)? })
    }

    /// The data of `name`'s entry `e`.
    fn bytes(&self, name: &str, e: &Entry) -> Result<Vec<u8>> {
        let (path, file) = &self.files[e.file];
        let mut bytes = vec![0u8; (e.end - e.start) as usize];
        file.read_exact_at(&mut bytes, e.start)
            .map_err(|err| ModelError::Safetensors { path: path.clone(), reason: format!("reading tensor `{name}`: {err}") })?;
        Ok(bytes)
    }

    /// The dense f32 matrix of `prefix`'s four sparse-bitmask tensors, checked as
    /// [`bitmask::decompress`](super::bitmask::decompress) does.
    fn sparse(&self, prefix: &str, shape: &[usize]) -> Result<RawTensor> {
        let mut parts = HashMap::new();
        for part in super::bitmask::PARTS {
            let name = format!("{prefix}.{part}");
            if let Some(e) = self.entries.get(&name) {
                parts.insert(part, (e, self.bytes(&name, e)?));
            }
        }
        let file = &self.files[self.entries[&format!("{prefix}.compressed")].file].0;
        let w = super::bitmask::decompress(shape, |part| {
            let (e, bytes) = parts.get(part)?;
            safetensors::tensor::TensorView::new(e.dtype, e.shape.clone(), bytes).ok()
        })
        .map_err(|reason| ModelError::Safetensors { path: file.clone(), reason: format!("sparse tensor `{prefix}`: {reason}") })?;
        Ok(RawTensor { dtype: Dtype::F32, shape: shape.to_vec(), bytes: w.iter().flat_map(|v| v.to_le_bytes()).collect() })
    }

    /// `name` as an f32 tensor on the CPU (see [`raw`](Self::raw)).
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.raw(name, shape)?.to_f32()
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.entries.get(name).ok_or_else(|| ModelError::MissingTensor { path: self.dir.clone(), tensor: name.to_string() })
    }
}

/// Writes a Hugging Face directory shard by shard (see the module docs).
#[derive(Debug)]
pub struct ShardWriter {
    dir: PathBuf,
    n_shards: usize,
    written: usize,
    weight_map: BTreeMap<String, String>,
    total_size: u64,
}

impl ShardWriter {
    /// A writer of `n_shards` shards into `dir`; writes `config.json` (whose mode the shards
    /// take, see [`write_safetensors`]) first.
    pub fn new(dir: &Path, n_shards: usize, config: &LlamaConfig) -> Result<Self> {
        write_config(dir, config)?;
        Ok(ShardWriter { dir: dir.to_path_buf(), n_shards, written: 0, weight_map: BTreeMap::new(), total_size: 0 })
    }

    /// Writes the next shard with `tensors` (in that order).
    pub fn write(&mut self, tensors: &[(String, RawTensor)]) -> Result<()> {
        if self.written == self.n_shards {
            return Err(ModelError::Safetensors { path: self.dir.clone(), reason: format!("more than the {} shards announced", self.n_shards) });
        }
        self.written += 1;
        let file = format!("model-{:05}-of-{:05}.safetensors", self.written, self.n_shards);
        for (name, t) in tensors {
            self.weight_map.insert(name.clone(), file.clone());
            self.total_size += t.bytes.len() as u64;
        }
        write_safetensors(&self.dir.join(&file), tensors.iter().map(|(n, t)| (n.as_str(), t)), &self.dir.join("config.json"))
    }

    /// Writes `model.safetensors.index.json` once every announced shard is written.
    pub fn finish(self) -> Result<()> {
        if self.written != self.n_shards {
            return Err(ModelError::Safetensors { path: self.dir.clone(), reason: format!("{} of {} shards written", self.written, self.n_shards) });
        }
        let index = serde_json::json!({"metadata": {"total_size": self.total_size}, "weight_map": self.weight_map});
        let path = self.dir.join("model.safetensors.index.json");
        let mut text = serde_json::to_string_pretty(&index).map_err(|e| ModelError::Safetensors { path: path.clone(), reason: e.to_string() })?;
        text.push('\n');
        std::fs::write(&path, text).map_err(|source| ModelError::Io { op: "write", path, source })
    }
}

/// Writes one safetensors file (format `pt`) and gives it the mode of `mode_like`: safetensors
/// writes through a temporary file of mode 0600, and a model saved into a shared directory
/// should be readable by whoever can read its config (0666 less the umask, as a plain create
/// gives).
pub(crate) fn write_safetensors<'a>(path: &Path, tensors: impl IntoIterator<Item = (&'a str, &'a RawTensor)>, mode_like: &Path) -> Result<()> {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(metadata), path)
        .map_err(|e| ModelError::Safetensors { path: path.to_path_buf(), reason: e.to_string() })?;
    let mode = std::fs::metadata(mode_like).map_err(|source| ModelError::Io { op: "stat", path: mode_like.to_path_buf(), source })?.permissions();
    std::fs::set_permissions(path, mode).map_err(|source| ModelError::Io { op: "chmod", path: path.to_path_buf(), source })
}
