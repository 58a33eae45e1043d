//! The model as a training loop sees it: named f32 parameters and the gradients of a batch.

use serde::{Deserialize, Serialize};

use crate::error::Result;

/// One trainable parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamInfo {
    /// Its name in the model's own convention (Hugging Face names for prunus-model).
    pub name: String,
    /// Its shape; the buffers the loop holds are row-major with this many elements.
    pub shape: Vec<usize>,
    /// Whether training-time methods may prune it (the linears of the decoder blocks; never
    /// the embeddings or the norms).
    pub prunable: bool,
}

impl ParamInfo {
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// A model a training loop can fine-tune: it reads and writes its parameters as f32 buffers
/// (in [`params`](Self::params) order) and gives the loss and gradients of a token batch.
pub trait TrainableModel {
    /// Every trainable parameter, in a fixed order.
    fn params(&self) -> Vec<ParamInfo>;

    /// The current values, one row-major buffer per parameter.
    fn read_params(&self) -> Result<Vec<Vec<f32>>>;

    /// Replaces every parameter; the buffers must match [`params`](Self::params) in number
    /// and length (checked before anything changes).
    fn write_params(&mut self, values: &[Vec<f32>]) -> Result<()>;

    /// Mean next-token cross-entropy (nats) of `tokens`, `n` windows of `seq_len` ids
    /// row-major, over its `n * (seq_len - 1)` predictions, and the gradient of that mean with
    /// respect to every parameter. Must not change the model.
    fn loss_and_grads(&self, tokens: &[u32], n: usize, seq_len: usize) -> Result<(f64, Vec<Vec<f32>>)>;

    /// [`loss_and_grads`](Self::loss_and_grads) with the gradients added into `acc` (one
    /// buffer per parameter; filled, not added to, when `acc` is empty), for accumulation over
    /// micro-batches; returns the loss. The default adds what `loss_and_grads` returns; a model
    /// may write into `acc` directly and spare the buffers.
    fn add_loss_and_grads(&self, tokens: &[u32], n: usize, seq_len: usize, acc: &mut Vec<Vec<f32>>) -> Result<f64> {
        let (loss, grads) = self.loss_and_grads(tokens, n, seq_len)?;
        if acc.is_empty() {
            *acc = grads;
        } else {
            for (a, g) in acc.iter_mut().zip(&grads) {
                a.iter_mut().zip(g).for_each(|(a, g)| *a += g);
            }
        }
        Ok(loss)
    }
}
