//! Models larger than memory: a layer-wise prune that holds one decoder block at a time.
//!
//! [`StreamingLlama`] opens a Hugging Face directory (one safetensors file or shards) or a
//! GGUF file by its headers only, keeps the token embedding (the calibration tokens enter
//! through it) and the final norm in memory as f32, and reads block `i` when the pruning
//! pipeline asks for it ([`PrunableModel::load_block`]). Once the block is pruned and has fed
//! the next one ([`PrunableModel::release_block`]) it is written out as its own shard and
//! dropped. The peak is the embedding, one block in f32, the calibration hidden states and the
//! method's working set; the files are read with plain reads (see [`ShardReader`]).
//!
//! The output is `model-00001-of-000NN.safetensors` (the embedding), one shard per block, a
//! last shard with the final norm and the output head, the index, `config.json` and the
//! tokenizer, written into an [`OutputDir`] that appears only when
//! [`finish`](StreamingLlama::finish) succeeds. From a directory, each tensor keeps its dtype
//! (bf16 stays bf16) and unchanged ones are copied byte for byte; from a GGUF file, tensors are
//! written as f32 (f16 ones as f16), as the in-memory `--out` writes a dequantized model.
//!
//! [`inspect_dir`] counts the zeros of a directory's linears the same way, a tensor at a time.
//!
//! [`write_synthetic`] writes a directory of the same layout with the seeded weights of
//! [`LlamaModel::synthetic`], a block at a time, in any float dtype: a model of any shape
//! (a LLaMA-2-7B-shaped one is 13.5 GB in bf16) without holding it.

use std::path::Path;

use candle_core::Tensor;
use prunus_core::rng::SplitMix64;
use prunus_core::{LinearInfo, PrunableModel};
pub use safetensors::Dtype;

use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};
use crate::gguf::GgufReader;
use crate::hf::{OutputDir, RawTensor, ShardReader, ShardWriter, read_config};
use crate::layout::{BLOCK_TENSORS, EMBED, FINAL_NORM, LINEARS, LM_HEAD};
use crate::llama::{Block, LinearSparsity, LlamaModel, synthetic_values};

/// A Llama whose blocks stay on disk until the pruning pipeline reaches them (see the
/// module docs).
pub struct StreamingLlama {
    /// The embedding and final norm; blocks are placeholders except the resident one; no
    /// output head (pruning never computes logits).
    model: LlamaModel,
    source: Source,
    /// Per block, its tensors' names and shapes in table order.
    shapes: Vec<Vec<(String, Vec<usize>)>>,
    resident: Option<usize>,
    released: usize,
    out: OutputDir,
    writer: ShardWriter,
    /// Written last: the final norm and, when untied, the output head.
    tail: Vec<(String, Vec<usize>)>,
    tokenizer_json: Option<Vec<u8>>,
}

impl std::fmt::Debug for StreamingLlama {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingLlama").field("resident", &self.resident).field("released", &self.released).finish_non_exhaustive()
    }
}

/// The shards of a directory written a block at a time: embedding, blocks, then the tail.
fn n_shards(config: &LlamaConfig) -> usize {
    config.num_hidden_layers + 2
}

/// `config`'s tensors split into (embedding, per block, tail), names with shapes.
type Split = ((String, Vec<usize>), Vec<Vec<(String, Vec<usize>)>>, Vec<(String, Vec<usize>)>);

fn split_shapes(config: &LlamaConfig) -> Split {
    let mut all = config.tensor_shapes().into_iter();
    let embed = all.next().expect("the embedding comes first");
    let blocks = (0..config.num_hidden_layers).map(|_| all.by_ref().take(BLOCK_TENSORS.len()).collect()).collect();
    (embed, blocks, all.collect())
}

/// Where a streamed model's tensors come from.
enum Source {
    /// A Hugging Face directory: tensors as stored; unchanged ones are copied byte for byte,
    /// blocks go back to each tensor's own dtype.
    Hf(ShardReader),
    /// A GGUF file: tensors dequantized to f32 and written as f32 (f16 ones as f16), as the
    /// in-memory `--out` writes them.
    Gguf(Box<GgufReader>),
}

impl Source {
    /// The source at `path` (a directory or a GGUF file), with its config; the headers are
    /// checked, and a directory's weights must not hold layers past its config's count.
    fn open(path: &Path) -> Result<(Self, LlamaConfig)> {
        if !path.is_dir() {
            let reader = GgufReader::open(path)?;
            let config = reader.config().clone();
            return Ok((Source::Gguf(Box::new(reader)), config));
        }
        let config = read_config(path)?;
        let reader = ShardReader::open(path)?;
        if let Some(extra) = reader.names().filter_map(|k| crate::gguf::block_index(k, "model.layers.")).filter(|&b| b >= config.num_hidden_layers).max() {
            return Err(ModelError::Config {
                field: "num_hidden_layers".into(),
                value: config.num_hidden_layers.to_string(),
                reason: format!("the weights in {} hold layer {extra}", path.display()),
            });
        }
        Ok((Source::Hf(reader), config))
    }

    /// The dtype `name` (of shape `shape`, checked) is written in.
    fn out_dtype(&self, name: &str, shape: &[usize]) -> Result<Dtype> {
        match self {
            Source::Hf(r) => r.check(name, shape),
            Source::Gguf(r) => Ok(if r.check(name, shape)? { Dtype::F16 } else { Dtype::F32 }),
        }
    }

    /// `name` as f32.
    fn f32(&mut self, name: &str, shape: &[usize]) -> Result<Tensor> {
        match self {
            Source::Hf(r) => r.f32(name, shape),
            Source::Gguf(r) => r.tensor(name, shape),
        }
    }

    /// `name` as written out unchanged: a directory's bytes as stored, a GGUF tensor in
    /// [`out_dtype`](Self::out_dtype).
    fn raw(&mut self, name: &str, shape: &[usize]) -> Result<RawTensor> {
        match self {
            Source::Hf(r) => r.raw(name, shape),
            Source::Gguf(_) => {
                let dtype = self.out_dtype(name, shape)?;
                RawTensor::from_tensor(&self.f32(name, shape)?, dtype)
            }
        }
    }
}

impl StreamingLlama {
    /// Opens the Hugging Face directory or GGUF file `path` (every tensor's name, shape and
    /// dtype checked from the headers), reads the embedding and the final norm, and starts the
    /// output directory `out` (see [`OutputDir::create`]) with the embedding's shard.
    /// `tokenizer_json` is written beside the weights at the end.
    pub fn open(path: &Path, out: &Path, overwrite: bool, tokenizer_json: Option<Vec<u8>>) -> Result<Self> {
        let (mut source, config) = Source::open(path)?;
        let ((embed_name, embed_shape), shapes, tail) = split_shapes(&config);
        let mut torch_dtype = None;
        for (name, shape) in std::iter::once(&(embed_name.clone(), embed_shape.clone())).chain(shapes.iter().flatten()).chain(&tail) {
            let dtype = source.out_dtype(name, shape)?;
            torch_dtype.get_or_insert(dtype);
        }
        let canonical = std::fs::canonicalize(path).ok();
        let out = OutputDir::create(out, canonical.as_deref(), overwrite)?;
        let embed_raw = source.raw(&embed_name, &embed_shape)?;
        let embed = embed_raw.to_f32()?;
        let norm = source.f32(FINAL_NORM.hf, &[config.hidden_size])?;
        let blocks = (0..config.num_hidden_layers).map(|_| Block::placeholder()).collect::<Result<Vec<_>>>()?;
        let mut model = LlamaModel::from_parts(config.clone(), embed, blocks, norm, None);
        model.set_source(canonical);
        let mut exported = model.export_config();
        exported.tie_word_embeddings = config.tie_word_embeddings;
        exported.torch_dtype = Some(torch_dtype_name(torch_dtype.unwrap_or(Dtype::F32)).into());
        let mut writer = ShardWriter::new(out.path(), n_shards(&config), &exported)?;
        writer.write(&[(embed_name, embed_raw)])?;
        Ok(StreamingLlama { model, source, shapes, resident: None, released: 0, out, writer, tail, tokenizer_json })
    }

    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        self.model.config()
    }

    /// Parameters of the model as stored (tied embeddings counted once).
    pub fn n_params(&self) -> usize {
        n_params(self.config())
    }

    /// Writes the last shard (final norm and output head; from a directory, copied as
    /// stored), the index, and the tokenizer, and moves the directory into place. Every block must have been
    /// released.
    pub fn finish(mut self) -> Result<()> {
        let n_blocks = self.shapes.len();
        if self.released != n_blocks {
            return Err(ModelError::Stream {
                reason: format!("{} of {n_blocks} blocks written; the model is complete only once every block has been pruned", self.released),
            });
        }
        let mut tail = Vec::with_capacity(self.tail.len());
        for (name, shape) in &self.tail {
            tail.push((name.clone(), self.source.raw(name, shape)?));
        }
        self.writer.write(&tail)?;
        self.writer.finish()?;
        if let Some(tok) = self.tokenizer_json.take() {
            let p = self.out.path().join("tokenizer.json");
            std::fs::write(&p, tok).map_err(|source| ModelError::Io { op: "write", path: p, source })?;
        }
        self.out.commit()
    }

    fn resident(&self, block: usize) -> Result<()> {
        match self.resident {
            Some(b) if b == block => Ok(()),
            _ => Err(ModelError::Stream {
                reason: format!("block {block} is not in memory (resident: {:?}); blocks load one at a time, in order", self.resident),
            }),
        }
    }
}

/// Parameters of a model of `config` (tied embeddings once).
fn n_params(config: &LlamaConfig) -> usize {
    config.tensor_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum()
}

/// The `torch_dtype` a config names for `dtype`.
fn torch_dtype_name(dtype: Dtype) -> &'static str {
    match dtype {
        Dtype::BF16 => "bfloat16",
        Dtype::F16 => "float16",
        _ => "float32",
    }
}

impl PrunableModel for StreamingLlama {
    fn n_blocks(&self) -> usize {
        self.shapes.len()
    }

    fn linears(&self, block: usize) -> Vec<LinearInfo> {
        let Some(shapes) = self.shapes.get(block) else { return Vec::new() };
        BLOCK_TENSORS
            .iter()
            .zip(shapes)
            .filter_map(|(spec, (_, shape))| {
                let site = spec.site?;
                debug_assert!(LINEARS.iter().any(|(n, _)| *n == spec.name));
                Some(LinearInfo { name: spec.name.to_string(), input_site: site.to_string(), d_out: shape[0], d_in: shape[1] })
            })
            .collect()
    }

    fn embed(&self, tokens: &Tensor) -> prunus_core::Result<Tensor> {
        Ok(self.model.embed(tokens)?)
    }

    fn block_forward(&self, block: usize, hidden: &Tensor, capture: Option<&mut prunus_core::model::CaptureFn<'_>>) -> prunus_core::Result<Tensor> {
        self.resident(block)?;
        PrunableModel::block_forward(&self.model, block, hidden, capture)
    }

    fn block_capture(&self, block: usize, hidden: &Tensor, capture: &mut prunus_core::model::CaptureFn<'_>) -> prunus_core::Result<()> {
        self.resident(block)?;
        PrunableModel::block_capture(&self.model, block, hidden, capture)
    }

    fn weight(&self, block: usize, name: &str) -> prunus_core::Result<Tensor> {
        self.resident(block)?;
        self.model.weight(block, name)
    }

    fn set_weight(&mut self, block: usize, name: &str, weight: Tensor) -> prunus_core::Result<()> {
        self.resident(block)?;
        self.model.set_weight(block, name, weight)
    }

    fn streams(&self) -> bool {
        true
    }

    fn load_block(&mut self, block: usize) -> prunus_core::Result<()> {
        if block != self.released || self.resident.is_some() {
            return Err(ModelError::Stream {
                reason: format!("cannot load block {block}: blocks load one at a time, in order ({} written, {:?} in memory)", self.released, self.resident),
            }
            .into());
        }
        let (shapes, source) = (&self.shapes[block], &mut self.source);
        let mut i = 0;
        let loaded = Block::try_from_table(|_| {
            let (name, shape) = &shapes[i];
            i += 1;
            source.f32(name, shape)
        })?;
        self.model.blocks[block] = loaded;
        self.resident = Some(block);
        Ok(())
    }

    fn release_block(&mut self, block: usize) -> prunus_core::Result<()> {
        self.resident(block)?;
        let b = std::mem::replace(&mut self.model.blocks[block], Block::placeholder()?);
        debug_assert!(!b.is_placeholder());
        let mut tensors = Vec::with_capacity(BLOCK_TENSORS.len());
        for ((_, t), (name, shape)) in b.named().zip(&self.shapes[block]) {
            let dtype = self.source.out_dtype(name, shape)?;
            tensors.push((name.clone(), RawTensor::from_tensor(t, dtype)?));
        }
        drop(b);
        self.writer.write(&tensors)?;
        self.resident = None;
        self.released += 1;
        Ok(())
    }
}

/// Zeros in every block linear of the Hugging Face directory `dir`, read a tensor at a time
/// (any size), with its config and parameter count (tied embeddings once).
pub fn inspect_dir(dir: &Path) -> Result<(LlamaConfig, usize, Vec<LinearSparsity>)> {
    let config = read_config(dir)?;
    let reader = ShardReader::open(dir)?;
    let (_, blocks, _) = split_shapes(&config);
    let mut rows = Vec::with_capacity(blocks.len() * LINEARS.len());
    for (block, shapes) in blocks.iter().enumerate() {
        for (spec, (name, shape)) in BLOCK_TENSORS.iter().zip(shapes) {
            if !spec.is_linear() {
                continue;
            }
            let values = reader.f32(name, shape)?.flatten_all()?.to_vec1::<f32>()?;
            rows.push(LinearSparsity { block, name: spec.name.to_string(), zeros: values.iter().filter(|v| **v == 0.0).count(), numel: values.len() });
        }
    }
    for (name, shape) in config.tensor_shapes() {
        reader.check(&name, &shape)?;
    }
    let n = n_params(&config);
    Ok((config, n, rows))
}

/// Writes a Hugging Face directory with `config`'s shape and the weights
/// [`LlamaModel::synthetic`] gives for `seed` (the same stream of numbers, tensor after
/// tensor), stored as `dtype` (f32, f16 or bf16), in the streaming layout: one shard for the
/// embedding, one per block, one for the final norm and output head. Only one shard is in
/// memory at a time. `on_shard` is told each shard as it is written (index, count).
pub fn write_synthetic(
    config: &LlamaConfig,
    seed: u64,
    dtype: Dtype,
    out: &Path,
    tokenizer_json: Option<&[u8]>,
    on_shard: &mut dyn FnMut(usize, usize),
) -> Result<()> {
    config.validate()?;
    let dir = OutputDir::create(out, None, false)?;
    let mut exported = config.clone();
    exported.architectures = vec!["LlamaForCausalLM".into()];
    exported.model_type = "llama".into();
    exported.torch_dtype = Some(torch_dtype_name(dtype).into());
    exported.num_key_value_heads = Some(config.n_kv_heads());
    exported.head_dim = Some(config.head_dim());
    let total = n_shards(config);
    let mut writer = ShardWriter::new(dir.path(), total, &exported)?;
    let mut rng = SplitMix64::new(seed);
    let mut make = |name: &str, shape: &[usize]| -> Result<(String, RawTensor)> {
        let values = synthetic_values(&mut rng, name, shape);
        let t = Tensor::from_vec(values, shape, &candle_core::Device::Cpu)?;
        Ok((name.to_string(), RawTensor::from_tensor(&t, dtype)?))
    };
    let ((embed_name, embed_shape), blocks, tail) = split_shapes(config);
    debug_assert_eq!(embed_name, EMBED.hf);
    writer.write(&[make(&embed_name, &embed_shape)?])?;
    on_shard(1, total);
    for (i, block) in blocks.iter().enumerate() {
        let tensors = block.iter().map(|(n, s)| make(n, s)).collect::<Result<Vec<_>>>()?;
        writer.write(&tensors)?;
        on_shard(i + 2, total);
    }
    let tail = tail.iter().map(|(n, s)| make(n, s)).collect::<Result<Vec<_>>>()?;
    debug_assert!(tail.iter().all(|(n, _)| n == FINAL_NORM.hf || n == LM_HEAD.hf));
    writer.write(&tail)?;
    on_shard(total, total);
    writer.finish()?;
    if let Some(tok) = tokenizer_json {
        let p = dir.path().join("tokenizer.json");
        std::fs::write(&p, tok).map_err(|source| ModelError::Io { op: "write", path: p, source })?;
    }
    dir.commit()
}
