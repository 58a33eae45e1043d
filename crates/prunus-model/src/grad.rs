//! Gradients through the whole model: the training-mode forward on candle autograd.
//!
//! The training loop uses the hand-written backward of [`backprop`](crate::backprop) instead
//! (the same gradients to f32 rounding, about 3.4x faster on the default model); this path
//! serves the structured methods' gradients and is the reference the hand-written one is
//! tested against.
//!
//! [`LlamaModel::loss_and_grads`] scores a batch of token windows (n_samples, seq_len) with
//! the mean next-token cross-entropy over its n_samples * (seq_len - 1) predictions and
//! returns that loss with the gradient of every parameter, by the parameter's Hugging Face
//! name ([`Grads`]). PIP ranks units by how differently their parameters move under the
//! gradients of original and perturbed text; fine-tuning takes steps along them.
//!
//! How: the parameters are copied into fresh candle [`Var`]s (the model itself is left
//! untouched, and candle records no graph for it), and the forward runs with the model's
//! differentiable switch on ([`LlamaModel::set_differentiable`]): every op on the path has a
//! backward rule. RMSNorm is `x / sqrt(mean(x^2) + eps) * w`, RoPE is the `rotate_half`
//! composition, attention softmax is a max-subtracted `exp / sum` after adding an additive
//! causal mask (`-inf` above the diagonal), and the loss takes `log_softmax` of the logits
//! and gathers the targets. candle's fused `rms_norm`, `softmax_last_dim` and `rope` and this
//! crate's fused causal softmax and row log-sum-exp silently have no gradient and are never
//! on this path. The computation is f32 by default; [`Precision::F64`] runs the same path on
//! f64 copies of the weights, for checks against finite differences.
//!
//! Cost: one `loss_and_grads` on the default model (SmolLM2-135M, 134.5 M parameters, tied
//! embeddings, vocab 49152) at batch 4 x 128 tokens raised the process's resident set from
//! 0.55 GB (the model loaded) to a peak of 4.2 GB, and took 14-17 s on the shared two-core
//! development machine while other builds ran (load average 3-6; the differentiable forward
//! alone took 2.7 s, the inference forward 1.8 s). Measure it with
//! `cargo run --release -p prunus-model --example grad_memory`. The peak holds the model, a
//! second copy of the weights as variables, every activation of the forward, the gradients,
//! and a few (rows, vocab) tensors of the log-softmax and its backward. In a profile most of
//! the time was matmuls (forward and backward) and candle's gradient accumulation, which
//! allocates a fresh tensor at every step.

use std::collections::HashMap;

use candle_core::{D, DType, Tensor, Var};

use crate::error::{ModelError, Result};
use crate::llama::LlamaModel;

/// The arithmetic of the training path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32, as the model is stored (the default).
    #[default]
    F32,
    /// f64 copies of the f32 weights: slower, for checks against finite differences.
    F64,
}

impl Precision {
    fn dtype(self) -> DType {
        match self {
            Precision::F32 => DType::F32,
            Precision::F64 => DType::F64,
        }
    }
}

/// Gradients of a scalar loss with respect to every parameter of a model, by Hugging Face
/// name (the names of [`LlamaModel::named_tensors`], in that order; a tied model has no
/// `lm_head.weight`, and the embedding's gradient includes the output head's share). Each
/// gradient has its parameter's shape and the dtype of the pass ([`Precision`]: f32 unless
/// asked for f64).
#[derive(Debug, Clone)]
pub struct Grads {
    grads: Vec<(String, Tensor)>,
    index: HashMap<String, usize>,
}

impl Grads {
    fn new(grads: Vec<(String, Tensor)>) -> Self {
        let index = grads.iter().enumerate().map(|(i, (n, _))| (n.clone(), i)).collect();
        Grads { grads, index }
    }

    /// The gradient of the parameter named `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.index.get(name).map(|&i| &self.grads[i].1)
    }

    /// (name, gradient) pairs in [`LlamaModel::named_tensors`] order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.grads.iter().map(|(n, g)| (n.as_str(), g))
    }

    /// Number of parameters with a gradient.
    pub fn len(&self) -> usize {
        self.grads.len()
    }

    /// Whether there are no gradients.
    pub fn is_empty(&self) -> bool {
        self.grads.is_empty()
    }

    /// The squared L2 norm of all gradients together, summed in f64.
    pub fn sum_sq(&self) -> Result<f64> {
        let mut total = 0f64;
        for (_, g) in &self.grads {
            total += g.to_dtype(DType::F64)?.sqr()?.sum_all()?.to_scalar::<f64>()?;
        }
        Ok(total)
    }
}

impl LlamaModel {
    /// Mean next-token cross-entropy of `tokens` (n_samples, seq_len), in nats, and its
    /// gradient with respect to every parameter, computed in f32. The loss averages the
    /// n_samples * (seq_len - 1) predictions, so it equals the sum of [`nll`](Self::nll)
    /// divided by that count (up to f32 rounding). See the [module docs](crate::grad) for
    /// how and at what memory cost.
    pub fn loss_and_grads(&self, tokens: &Tensor) -> Result<(f64, Grads)> {
        self.loss_and_grads_in(tokens, Precision::F32)
    }

    /// [`loss_and_grads`](Self::loss_and_grads) computed in the given precision; the
    /// gradients come in that precision's dtype.
    pub fn loss_and_grads_in(&self, tokens: &Tensor, precision: Precision) -> Result<(f64, Grads)> {
        let ids = self.training_tokens(tokens)?;
        let vars = self.differentiable_copy(precision.dtype(), true)?;
        let loss = vars.mean_nll_graph(&ids)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let store = loss.backward()?;
        drop(loss);
        let mut grads = Vec::new();
        for (name, t) in vars.named_tensors() {
            let g = match store.get(t) {
                Some(g) => g.detach(),
                // A parameter the loss does not reach (none in a Llama) has a zero gradient.
                None => t.zeros_like()?.detach(),
            };
            grads.push((name, g));
        }
        Ok((value, Grads::new(grads)))
    }

    /// The loss of [`loss_and_grads_in`](Self::loss_and_grads_in) alone: the same
    /// differentiable forward, without variables, graph or backward pass.
    pub fn training_loss(&self, tokens: &Tensor, precision: Precision) -> Result<f64> {
        let ids = self.training_tokens(tokens)?;
        let copy = self.differentiable_copy(precision.dtype(), false)?;
        Ok(copy.mean_nll_graph(&ids)?.to_dtype(DType::F64)?.to_scalar::<f64>()?)
    }

    /// Logits (seq x vocab, row-major) of one window of token ids from position 0, computed
    /// on f64 copies of the weights: the reference that f32 paths are measured against.
    pub fn window_logits_f64(&self, tokens: &[u32]) -> Result<Vec<f64>> {
        let ids = Tensor::new(tokens, self.device())?.unsqueeze(0)?;
        let copy = self.differentiable_copy(DType::F64, false)?;
        let hidden = copy.forward_hidden(&ids)?.squeeze(0)?; // (seq, d_model), final-normed
        let logits = hidden.matmul(&copy.lm_head_weight().t()?)?;
        Ok(logits.flatten_all()?.to_vec1::<f64>()?)
    }

    /// One plain gradient-descent step, `w <- w - lr * g`, on every parameter; `grads` must
    /// hold a gradient of the right shape for each (as [`loss_and_grads`](Self::loss_and_grads)
    /// returns; gradients of other names are ignored). Everything is checked before the first
    /// weight changes.
    pub fn sgd_step(&mut self, grads: &Grads, lr: f64) -> Result<()> {
        for (name, t) in self.named_tensors() {
            let g = grads
                .get(&name)
                .ok_or_else(|| ModelError::MissingTensor { path: "<gradients>".into(), tensor: name.clone() })?;
            if g.dims() != t.dims() {
                return Err(ModelError::ShapeMismatch {
                    tensor: format!("gradient of {name}"),
                    expected: t.dims().to_vec(),
                    found: g.dims().to_vec(),
                });
            }
        }
        let device = self.device().clone();
        for (name, t) in self.named_tensors_mut() {
            let g = grads.get(&name).expect("checked above").to_dtype(DType::F32)?.to_device(&device)?;
            *t = (&*t - (g * lr)?)?.contiguous()?;
        }
        Ok(())
    }

    /// Checks a token batch for the training loss: valid ids, at least two positions.
    fn training_tokens(&self, tokens: &Tensor) -> Result<Tensor> {
        let (ids, _, seq) = self.check_tokens(tokens)?;
        if seq < 2 {
            return Err(ModelError::Tokens { reason: format!("seq_len {seq} leaves nothing to predict") });
        }
        Ok(ids)
    }

    /// A copy of the model running differentiable ops, its parameters converted to `dtype`
    /// and, when `vars`, made fresh autograd variables (copies: the original stays out of
    /// any graph).
    fn differentiable_copy(&self, dtype: DType, vars: bool) -> Result<LlamaModel> {
        let mut copy = self.clone();
        copy.set_differentiable(true);
        for (_, t) in copy.named_tensors_mut() {
            let converted = t.to_dtype(dtype)?;
            *t = if vars { Var::from_tensor(&converted)?.into_inner() } else { converted };
        }
        Ok(copy)
    }

    /// The mean next-token NLL of checked ids (n_samples, seq_len) as a scalar tensor, built
    /// from ops with backward rules only (the model must be in differentiable mode).
    fn mean_nll_graph(&self, ids: &Tensor) -> Result<Tensor> {
        debug_assert!(self.differentiable, "the training loss needs differentiable ops");
        let (n, seq) = ids.dims2()?;
        let d = self.config().hidden_size;
        let rows = n * (seq - 1);
        let hidden = self.forward_hidden(ids)?; // (n, seq, d_model), final-normed
        let h = hidden.narrow(1, 0, seq - 1)?.contiguous()?.reshape((rows, d))?; // (rows, d_model)
        let logits = h.matmul(&self.lm_head_weight().t()?)?; // (rows, vocab)
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?; // (rows, vocab)
        let targets = ids.narrow(1, 1, seq - 1)?.contiguous()?.reshape((rows, 1))?; // (rows, 1)
        Ok(logp.gather(&targets, 1)?.neg()?.mean_all()?)
    }
}
