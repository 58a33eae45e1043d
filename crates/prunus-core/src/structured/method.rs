//! The structured method kind's two sides: the model ([`StructuredModel`]: units, gradients,
//! removal) and the method ([`StructuredMethod`]: one score per unit, one-shot or iterative),
//! with the calibration texts a method may read ([`Calibration`]).

use std::fmt;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::params::Params;
use super::units::{ParamCount, Unit, UnitKind};
use crate::declare::{Built, Method, Notes};
use crate::error::{Error, Result};

/// Text -> token ids (no special tokens added), for calibration texts and perturbed copies.
pub type TokenizeFn<'a> = dyn Fn(&str) -> Result<Vec<u32>> + Sync + 'a;

/// Calibration data of a structured method: texts and the tokenizer, so a method may change
/// the text (PIP perturbs it) and tokenize the result. Every window is the first `seq_len`
/// tokens of its text; a text must have at least that many.
pub struct Calibration<'a> {
    texts: Vec<String>,
    seq_len: usize,
    tokenize: &'a TokenizeFn<'a>,
}

impl fmt::Debug for Calibration<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Calibration").field("n_samples", &self.texts.len()).field("seq_len", &self.seq_len).finish()
    }
}

impl<'a> Calibration<'a> {
    /// Checks that there is at least one text, that `seq_len` leaves a token to predict, and
    /// that every text has `seq_len` tokens: else [`Error::CalibrationTooSmall`].
    pub fn new(texts: Vec<String>, seq_len: usize, tokenize: &'a TokenizeFn<'a>) -> Result<Self> {
        if texts.is_empty() {
            return Err(Error::CalibrationTooSmall { reason: "no calibration samples (at least 1 is needed)".into() });
        }
        if seq_len < 2 {
            return Err(Error::CalibrationTooSmall {
                reason: format!("seq_len {seq_len} leaves nothing to predict (at least 2 tokens per sample)"),
            });
        }
        let calibration = Calibration { texts, seq_len, tokenize };
        calibration.original()?;
        Ok(calibration)
    }

    /// The calibration texts.
    pub fn texts(&self) -> &[String] {
        &self.texts
    }

    /// Tokens per sample.
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }

    /// Number of calibration texts (one window each).
    pub fn n_samples(&self) -> usize {
        self.texts.len()
    }

    /// Token ids of `text`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        (self.tokenize)(text)
    }

    /// The first `seq_len` tokens of each text, (texts.len(), seq_len) u32.
    pub fn tokens(&self, texts: &[String]) -> Result<Tensor> {
        let mut ids = Vec::with_capacity(texts.len() * self.seq_len);
        for (i, text) in texts.iter().enumerate() {
            let t = self.tokenize(text)?;
            if t.len() < self.seq_len {
                return Err(Error::CalibrationTooSmall {
                    reason: format!("sample {i} has {} tokens, fewer than seq_len {}", t.len(), self.seq_len),
                });
            }
            ids.extend_from_slice(&t[..self.seq_len]);
        }
        Ok(Tensor::from_vec(ids, (texts.len(), self.seq_len), &Device::Cpu)?)
    }

    /// [`tokens`](Self::tokens) of the calibration texts themselves.
    pub fn original(&self) -> Result<Tensor> {
        self.tokens(&self.texts)
    }
}

/// A decoder-only model whose units can be listed, scored by gradients and removed.
pub trait StructuredModel {
    /// Decoder layers now.
    fn n_layers(&self) -> usize;

    /// The units of `kind` now, in (layer, index) order; [`Error::UnsupportedUnit`] if the
    /// architecture cannot remove them consistently.
    fn units(&self, kind: UnitKind) -> Result<Vec<Unit>>;

    /// Parameter counts now.
    fn param_count(&self) -> ParamCount;

    /// Every parameter by name (the names [`Part::tensor`] uses).
    fn weights(&self) -> Result<Params>;

    /// Mean next-token cross-entropy of `tokens` (n_samples, seq_len) and its gradient with
    /// respect to every parameter, by name. Must not change the model.
    fn loss_and_grads(&self, tokens: &Tensor) -> Result<(f64, Params)>;

    /// Removes `units` (all of one kind, indices of the current model) together, or changes
    /// nothing and returns an error. The remaining units keep their relative order.
    fn remove_units(&mut self, units: &[Unit]) -> Result<()>;
}

/// Mean loss and mean gradient of `model` over the windows `tokens` (n_samples, seq_len),
/// run `batch_size` windows at a time: the gradient of the mean loss over all windows.
pub fn mean_gradients(model: &dyn StructuredModel, tokens: &Tensor, batch_size: usize) -> Result<(f64, Params)> {
    let (n, _) = tokens.dims2()?;
    if n == 0 || batch_size == 0 {
        return Err(Error::CalibrationTooSmall { reason: format!("{n} windows in batches of {batch_size}") });
    }
    let mut loss = 0.0;
    let mut acc: Option<Params> = None;
    for start in (0..n).step_by(batch_size) {
        let b = batch_size.min(n - start);
        let (l, g) = model.loss_and_grads(&tokens.narrow(0, start, b)?)?;
        let w = b as f64 / n as f64;
        loss += l * w;
        match acc.as_mut() {
            None if b == n => acc = Some(g),
            None => acc = Some(g.scaled(w)?),
            Some(a) => a.add_scaled(&g, w)?,
        }
    }
    Ok((loss, acc.expect("at least one batch")))
}

/// How often a method scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Score once, remove everything the budget takes in one edit.
    OneShot,
    /// Score, remove the `units_per_iteration` lowest, rescore the smaller model, repeat.
    Iterative {
        /// Units removed per scoring (at least 1); the last iteration may remove fewer.
        units_per_iteration: usize,
    },
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::OneShot => f.write_str("one-shot"),
            Schedule::Iterative { units_per_iteration } => write!(f, "iterative ({units_per_iteration} per iteration)"),
        }
    }
}

/// What a method sees when it scores.
pub struct ScoreInput<'a> {
    /// The current (already partly pruned) model.
    pub model: &'a dyn StructuredModel,
    /// The candidate units (protected layers left out), in the model's order.
    pub units: &'a [Unit],
    /// The calibration data, if the caller gave any (always, for a method that needs it).
    pub calibration: Option<&'a Calibration<'a>>,
    /// 0 for the first scoring.
    pub iteration: usize,
}

/// One score per candidate unit (low: removed first) and the method's notes on the scoring.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    /// One finite score per unit of [`ScoreInput::units`], in that order.
    pub scores: Vec<f64>,
    /// What the method noted about this scoring; recorded in its [`IterationRecord`].
    pub notes: Notes,
}

/// A structured (model-level) pruning method.
pub trait StructuredMethod: Send + Sync {
    /// One-shot or iterative.
    fn schedule(&self) -> Schedule;

    /// Whether [`score`](Self::score) needs a [`Calibration`].
    fn needs_calibration(&self) -> bool;

    /// The importance of every unit of `input.units`, in that order; low means removable.
    fn score(&self, input: &ScoreInput<'_>) -> Result<Scored>;
}

impl Built<dyn StructuredMethod> {
    /// `method` as the driver takes it, built outside the registry (tests): its declared name,
    /// no recorded configuration.
    pub fn structured<M: Method + StructuredMethod>(method: M) -> Self {
        Built::unregistered(M::NAME, Box::new(method))
    }
}

