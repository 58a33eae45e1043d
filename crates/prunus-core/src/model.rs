//! The model as the pruning pipeline sees it.
//!
//! The core knows no model family: a family (prunus-model's Llama) implements
//! [`PrunableModel`], and the pipeline drives it block by block.

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One prunable linear layer of a decoder block, `y = x W^T` with `W` of shape (d_out, d_in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinearInfo {
    /// Short name inside its block, e.g. `q_proj` (Hugging Face naming).
    pub name: String,
    /// The capture site whose activations are this linear's input. Linears that read the
    /// same tensor (q, k, v; gate, up) share a site, so its statistics are gathered once.
    pub input_site: String,
    /// Output features: rows of `W`.
    pub d_out: usize,
    /// Input features: columns of `W`, the width of the capture site's activations.
    pub d_in: usize,
}

/// Called by [`PrunableModel::block_forward`] with each capture site's name and the input
/// of the linears reading it, flattened to (n_tokens, d_in).
pub type CaptureFn<'a> = dyn FnMut(&str, &Tensor) -> Result<()> + 'a;

/// A decoder-only model whose blocks can be run one at a time.
pub trait PrunableModel {
    /// Number of decoder blocks.
    fn n_blocks(&self) -> usize;

    /// The prunable linears of block `block`, in forward order.
    fn linears(&self, block: usize) -> Vec<LinearInfo>;

    /// Token ids (n_samples, seq_len) u32 -> hidden states entering block 0,
    /// (n_samples, seq_len, d_model) f32.
    fn embed(&self, tokens: &Tensor) -> Result<Tensor>;

    /// Runs block `block` on hidden states (n_samples, seq_len, d_model) with a causal mask
    /// and returns its output of the same shape. If `capture` is given, it is called once per
    /// capture site with that site's input, (n_samples * seq_len, d_in).
    fn block_forward(
        &self,
        block: usize,
        hidden: &Tensor,
        capture: Option<&mut CaptureFn<'_>>,
    ) -> Result<Tensor>;

    /// Runs block `block` on `hidden` only as far as its last capture site, calling
    /// `capture` as [`block_forward`](Self::block_forward) does, and returns nothing: the
    /// statistics pass, whose output nobody reads, need not compute what follows the last
    /// site (in a Llama block, the down projection). By default the whole block runs.
    fn block_capture(&self, block: usize, hidden: &Tensor, capture: &mut CaptureFn<'_>) -> Result<()> {
        self.block_forward(block, hidden, Some(capture)).map(|_| ())
    }

    /// The weight of linear `name` in block `block`, (d_out, d_in) f32.
    fn weight(&self, block: usize, name: &str) -> Result<Tensor>;

    /// Replaces the weight of linear `name` in block `block`; the shape must not change.
    fn set_weight(&mut self, block: usize, name: &str, weight: Tensor) -> Result<()>;

    /// Whether the model holds one block at a time ([`load_block`](Self::load_block) reads
    /// it, [`release_block`](Self::release_block) writes it out). A streaming model's weights
    /// are checked block by block as they load rather than all before the run, and an error
    /// half-way must leave nothing written (its output appears only when complete).
    fn streams(&self) -> bool {
        false
    }

    /// Called before anything of block `block` is read, blocks in order; a model held in
    /// memory has nothing to do.
    fn load_block(&mut self, _block: usize) -> Result<()> {
        Ok(())
    }

    /// Called when block `block` is pruned and has fed the next block; a streaming model
    /// writes it out and drops it.
    fn release_block(&mut self, _block: usize) -> Result<()> {
        Ok(())
    }
}
