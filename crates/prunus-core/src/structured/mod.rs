//! The model-level (structured) method kind: PIP and its baselines.
//!
//! A structured method removes whole units and leaves a physically smaller model. The units
//! ([`UnitKind`]) are decoder layers, attention heads (a key/value head with the query heads
//! that read it, or the same query head of every key/value group, so grouped-query attention
//! stays consistent) and MLP channels. A model family offers them through
//! [`StructuredModel`]: it lists its units with their parameter counts and where their
//! parameters live ([`Part`]), computes the loss and gradients of a token batch, and removes
//! units. The core knows nothing about the family beyond that.
//!
//! As in the layer-wise kind, a method says how much each unit matters
//! ([`StructuredMethod::score`]) and the core decides which go ([`prune_structured`]): lowest
//! score first (ties to the earlier unit), never a protected layer's units
//! ([`StructuredOptions::protect_first`], [`StructuredOptions::protect_last`]), never the
//! last unit of a layer (or the last layer), until the removed share of the parameters
//! outside the embeddings is as close to the target as whole units allow. A method asks for
//! one scoring ([`Schedule::OneShot`]) or for a rescoring after every few removals
//! ([`Schedule::Iterative`], PIP's greedy loop). Every iteration is recorded with the
//! original indices and scores of what it removed ([`IterationRecord`]).
//!
//! The budget rule: units are taken lowest score first while the removed parameters are
//! below the target and taking the next unit ends no farther from the target than stopping
//! (a tie removes). So the realised reduction is within half a unit of the target: 20% of
//! SmolLM2-135M's non-embedding parameters is 6.0 of its 30 layers, and 6 layers are
//! 19.9999%.
//!
//! Methods that need data get a [`Calibration`]: texts with the tokenizer that turns them
//! (or perturbed copies of them) into token windows. [`mean_gradients`] and [`unit_sums`]
//! are the shared arithmetic: gradients averaged over the calibration set, and sums of an
//! elementwise expression over each unit's parameters.

mod driver;
mod params;

use std::fmt;
use std::str::FromStr;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::declare::{Built, Method, Notes};
use crate::{Error, Result};

pub use driver::{Event, IterationRecord, RemovedUnit, StructuredOptions, StructuredOutcome, check, check_target, prune_structured};
pub use params::{Params, mean_gradients, unit_sums};

/// What a structured method removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitKind {
    /// A whole decoder layer (attention and MLP); the residual stream passes straight on.
    Layer,
    /// A key/value head with the query heads that read it (grouped-query attention); one
    /// query head and its key/value head in a model without GQA.
    Head,
    /// Query head j of every key/value group of a layer (grouped-query attention needs every
    /// group to keep the same number of query heads); the key/value heads stay. Refused by
    /// models without GQA, where a query head cannot go without its key/value head.
    QueryHead,
    /// One MLP channel (a row of gate and up projections, a column of the down projection).
    Channel,
}

impl UnitKind {
    /// Every kind, in CLI order.
    pub const ALL: [UnitKind; 4] = [UnitKind::Layer, UnitKind::Head, UnitKind::QueryHead, UnitKind::Channel];

    /// The snake_case name used in configs and reports.
    pub fn name(self) -> &'static str {
        match self {
            UnitKind::Layer => "layer",
            UnitKind::Head => "head",
            UnitKind::QueryHead => "query_head",
            UnitKind::Channel => "channel",
        }
    }
}

impl fmt::Display for UnitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for UnitKind {
    type Err = Error;

    /// `layer`, `head`, `query_head` (or `query-head`), `channel`.
    fn from_str(s: &str) -> Result<Self> {
        let norm = s.trim().replace('-', "_");
        UnitKind::ALL.into_iter().find(|k| k.name() == norm).ok_or_else(|| {
            Error::Invalid(format!("unknown unit `{s}` (expected one of layer, head, query_head, channel)"))
        })
    }
}

/// A slice of one named parameter tensor: `tensor.narrow(dim, start, len)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The parameter's name, as in [`StructuredModel::weights`].
    pub tensor: String,
    pub dim: usize,
    pub start: usize,
    pub len: usize,
}

/// One removable unit of the current model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub kind: UnitKind,
    /// The decoder layer (for a layer unit, the layer itself), in the current model.
    pub layer: usize,
    /// The unit's index inside its layer (key/value head, query head, channel); 0 for a layer.
    pub index: usize,
    /// Parameters that removing the unit removes: the total size of `parts`.
    pub params: usize,
    /// Where its parameters live.
    pub parts: Vec<Part>,
}

impl Unit {
    /// `layer 3`, `head 1 of layer 3`, ... (current indices).
    pub fn describe(&self) -> String {
        match self.kind {
            UnitKind::Layer => format!("layer {}", self.layer),
            k => format!("{k} {} of layer {}", self.index, self.layer),
        }
    }

    /// Units of one container compete for "at least one must remain": the layer of a head or
    /// channel, the whole model (`None`) for a layer.
    pub fn container(&self) -> Option<usize> {
        match self.kind {
            UnitKind::Layer => None,
            _ => Some(self.layer),
        }
    }
}

/// Parameter counts of a model (tied embeddings counted once).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamCount {
    pub total: usize,
    /// Without the token embedding and the output head: the count structured budgets use.
    pub excluding_embeddings: usize,
}
/// Text -> token ids (no special tokens added), for calibration texts and perturbed copies.
pub type TokenizeFn<'a> = dyn Fn(&str) -> Result<Vec<u32>> + 'a;

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

/// How often a method scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Schedule {
    /// Score once, remove everything the budget takes in one edit.
    OneShot,
    /// Score, remove the `units_per_iteration` lowest, rescore the smaller model, repeat.
    Iterative { units_per_iteration: usize },
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
    pub calibration: Option<&'a Calibration<'a>>,
    /// 0 for the first scoring.
    pub iteration: usize,
}

/// One score per candidate unit (low: removed first) and the method's notes on the scoring.
#[derive(Debug, Clone, Default)]
pub struct Scored {
    pub scores: Vec<f64>,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calibration_checks_sizes() {
        let bytes = |s: &str| -> Result<Vec<u32>> { Ok(s.bytes().map(u32::from).collect()) };
        assert!(matches!(Calibration::new(vec![], 4, &bytes).unwrap_err(), Error::CalibrationTooSmall { .. }));
        assert!(matches!(Calibration::new(vec!["abcdef".into()], 1, &bytes).unwrap_err(), Error::CalibrationTooSmall { .. }));
        let e = Calibration::new(vec!["abcdef".into(), "abc".into()], 4, &bytes).unwrap_err();
        assert!(e.to_string().contains("sample 1 has 3 tokens, fewer than seq_len 4"), "{e}");
        let c = Calibration::new(vec!["abcdef".into(), "ghij".into()], 4, &bytes).unwrap();
        let t = c.original().unwrap();
        assert_eq!(t.to_vec2::<u32>().unwrap(), [[97, 98, 99, 100], [103, 104, 105, 106]]);
    }

    #[test]
    fn unit_kinds_parse_and_print() {
        for k in UnitKind::ALL {
            assert_eq!(k.to_string().parse::<UnitKind>().unwrap(), k);
        }
        assert_eq!("query-head".parse::<UnitKind>().unwrap(), UnitKind::QueryHead);
        assert!("block".parse::<UnitKind>().unwrap_err().to_string().contains("expected one of layer"));
        assert_eq!(serde_json::to_string(&Schedule::Iterative { units_per_iteration: 2 }).unwrap(), r#"{"kind":"iterative","units_per_iteration":2}"#);
    }
}
