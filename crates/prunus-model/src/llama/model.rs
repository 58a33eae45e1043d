//! The model struct: the config, the device, the tensors (the token embedding, the decoder
//! blocks, the final norm, the untied output head) and their accessors.

use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};

use super::block::Block;
use crate::config::LlamaConfig;
use crate::error::{ModelError, Result};

/// A Llama-architecture causal LM held as f32 candle tensors.
#[derive(Debug, Clone)]
pub struct LlamaModel {
    pub(crate) config: LlamaConfig,
    pub(super) device: Device,
    /// (vocab, d_model).
    pub(crate) embed: Tensor,
    pub(crate) blocks: Vec<Block>,
    /// (d_model).
    pub(crate) norm: Tensor,
    /// (vocab, d_model); `None` when tied to `embed`.
    pub(crate) lm_head: Option<Tensor>,
    /// Canonical path of the file or directory this model was loaded from.
    pub(super) source: Option<PathBuf>,
    /// Use autograd-friendly (unfused) ops for norms, softmax and RoPE.
    pub(crate) differentiable: bool,
}

impl LlamaModel {
    /// The config.
    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }

    /// The device holding the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The canonical path this model was loaded from, if any.
    pub fn source(&self) -> Option<&Path> {
        self.source.as_deref()
    }

    pub(crate) fn set_source(&mut self, source: Option<PathBuf>) {
        self.source = source;
    }

    /// Whether the output head shares the token embedding.
    pub fn is_tied(&self) -> bool {
        self.lm_head.is_none()
    }

    /// Switches RMSNorm, softmax and RoPE between candle's fused kernels (fast, no gradient;
    /// the default) and compositions of differentiable ops (for training and backward passes;
    /// [`loss_and_grads`](Self::loss_and_grads) turns it on in its own copy of the model).
    pub fn set_differentiable(&mut self, on: bool) {
        self.differentiable = on;
    }

    /// The token embedding, (vocab, d_model).
    pub fn embedding(&self) -> &Tensor {
        &self.embed
    }

    /// The output head, (vocab, d_model) (the embedding when tied).
    pub fn lm_head_weight(&self) -> &Tensor {
        self.lm_head.as_ref().unwrap_or(&self.embed)
    }

    /// Decoder block `block`, or a typed error when it is out of range.
    pub(crate) fn block(&self, block: usize) -> Result<&Block> {
        self.blocks.get(block).ok_or(ModelError::BlockOutOfRange { block, n_blocks: self.blocks.len() })
    }
}
