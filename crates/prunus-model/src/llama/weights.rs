//! The model's tensors: building a model from named tensors (or a seeded generator), listing
//! and replacing them by Hugging Face name, and counting parameters and zeros.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use super::model::LlamaModel;
use super::block::Block;
use crate::config::LlamaConfig;
use crate::error::{CandleContext, ModelError, Result};
use crate::layout::{EMBED, FINAL_NORM, LINEARS, LM_HEAD};
use prunus_core::rng::SplitMix64;

/// Parameter counts of a model; tied embeddings are counted once.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParamCounts {
    /// Every parameter.
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
    /// The block (decoder layer) index.
    pub block: usize,
    /// Short name (`q_proj`, ...).
    pub name: String,
    /// Entries exactly equal to zero.
    pub zeros: usize,
    /// Entries in the weight.
    pub numel: usize,
}

impl LinearSparsity {
    /// Fraction of exact zeros.
    pub fn fraction(&self) -> f64 {
        if self.numel == 0 { 0.0 } else { self.zeros as f64 / self.numel as f64 }
    }
}

/// The next tensor of a synthetic model from `rng`: norm weights uniform in 1 ± 0.1, the
/// embedding uniform in ±1, linears and the output head uniform in ±1/sqrt(d_in).
pub(crate) fn synthetic_values(rng: &mut SplitMix64, name: &str, shape: &[usize]) -> Vec<f32> {
    let numel: usize = shape.iter().product();
    if shape.len() == 1 {
        (0..numel).map(|_| 1.0 + rng.uniform(0.1)).collect()
    } else if name == EMBED.hf {
        (0..numel).map(|_| rng.uniform(1.0)).collect()
    } else {
        let a = 1.0 / (shape[1] as f32).sqrt();
        (0..numel).map(|_| rng.uniform(a)).collect()
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
        source_name: &Path,
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
            blocks.push(Block::try_from_table(|_| next())?);
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

    /// A model from its parts, unchecked: for [`stream`](crate::stream), whose blocks are
    /// placeholders until read.
    pub(crate) fn from_parts(config: LlamaConfig, embed: Tensor, blocks: Vec<Block>, norm: Tensor, lm_head: Option<Tensor>) -> Self {
        LlamaModel { config, device: Device::Cpu, embed, blocks, norm, lm_head, source: None, differentiable: false }
    }

    /// A deterministic random model for tests (on the CPU): linears uniform in
    /// ±1/sqrt(d_in), embeddings uniform in ±1, norm weights 1 ± 0.1.
    pub fn synthetic(config: LlamaConfig, seed: u64) -> Result<Self> {
        config.validate()?;
        let mut rng = SplitMix64::new(seed);
        let device = Device::Cpu;
        let mut tensors = HashMap::new();
        for (name, shape) in config.tensor_shapes() {
            let data = synthetic_values(&mut rng, &name, &shape);
            tensors.insert(name, Tensor::from_vec(data, shape, &device)?);
        }
        Self::from_tensors(config, tensors, &device, Path::new("<synthetic>"))
    }

    /// Every stored tensor with its Hugging Face name, in
    /// [`tensor_specs`](crate::layout::tensor_specs) order (no `lm_head.weight` when tied).
    /// Q/K are in the Hugging Face layout.
    pub fn named_tensors(&self) -> Vec<(String, &Tensor)> {
        let mut out = vec![(EMBED.hf.to_string(), &self.embed)];
        for (i, b) in self.blocks.iter().enumerate() {
            out.extend(b.named().map(|(spec, t)| (spec.hf_name(i), t)));
        }
        out.push((FINAL_NORM.hf.to_string(), &self.norm));
        if let Some(h) = &self.lm_head {
            out.push((LM_HEAD.hf.to_string(), h));
        }
        out
    }

    /// [`named_tensors`](Self::named_tensors), mutable.
    pub(crate) fn named_tensors_mut(&mut self) -> Vec<(String, &mut Tensor)> {
        let mut out = vec![(EMBED.hf.to_string(), &mut self.embed)];
        for (i, b) in self.blocks.iter_mut().enumerate() {
            out.extend(b.named_mut().map(|(spec, t)| (spec.hf_name(i), t)));
        }
        out.push((FINAL_NORM.hf.to_string(), &mut self.norm));
        if let Some(h) = &mut self.lm_head {
            out.push((LM_HEAD.hf.to_string(), h));
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
            let (mut block_norms, mut block_linears) = (0, 0);
            for (spec, t) in b.named() {
                *(if spec.is_linear() { &mut block_linears } else { &mut block_norms }) += t.elem_count();
            }
            norms += block_norms;
            per_block_linears.push(block_linears);
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
}
