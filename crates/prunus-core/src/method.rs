//! The layer-wise one-shot method kind (magnitude, Wanda, SparseGPT, SwiftPrune).
//!
//! The core drives block-sequential calibration and hands a method one weight matrix at a
//! time, with the statistics it asked for. The method says how much each weight matters
//! ([`LayerwiseMethod::score`]); the core builds the mask for the comparison group the method
//! picks. A method that must also change the surviving weights (SparseGPT) overrides
//! [`LayerwiseMethod::decide`]. A method that has something to say about how it decided a
//! layer (SparseGPT's damping retries) overrides [`LayerwiseMethod::decide_with_notes`]; the
//! notes land in that layer's record of the run report. The core never reads them.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;

use crate::mask::Mask;
use crate::pattern::{Group, Pattern};
use crate::stats::{StatKind, Stats};
use crate::{Error, Result};

/// One linear layer as a method sees it: plain slices and shapes, no tensors.
#[derive(Debug, Clone, Copy)]
pub struct LayerView<'a> {
    /// Decoder block index.
    pub block: usize,
    /// Full name for messages, e.g. `blk.3.q_proj`.
    pub name: &'a str,
    pub d_out: usize,
    pub d_in: usize,
    /// Row-major (d_out, d_in) weight.
    pub weight: &'a [f32],
    /// Statistics of this linear's inputs (empty for [`StatKind::None`]).
    pub stats: &'a Stats,
}

/// What a method decided for one linear.
#[derive(Debug, Clone)]
pub enum Decision {
    /// One score per weight, row-major (d_out, d_in); the core prunes the lowest per group.
    Scores(Vec<f32>),
    /// The method selected the weights itself (e.g. by a streaming threshold); no weight update.
    Mask(Mask),
    /// The method chose the mask itself and rewrote the surviving weights.
    MaskAndWeights { mask: Mask, weight: Vec<f32> },
}

/// Free-form remarks of a method about one layer (key: a snake_case name), e.g.
/// `{"damping_retries": 2}`. Empty for most layers.
pub type Notes = BTreeMap<String, serde_json::Value>;

/// A [`Decision`] with the method's notes about how it was reached.
#[derive(Debug, Clone)]
pub struct Decided {
    pub decision: Decision,
    pub notes: Notes,
}

/// A layer-wise one-shot pruning method.
pub trait LayerwiseMethod: Send + Sync {
    /// Registry name.
    fn name(&self) -> &str;

    /// The statistics of each linear's inputs this method needs.
    fn stats(&self) -> StatKind;

    /// The comparison group used for `pattern`, or [`Error::Unsupported`].
    fn group(&self, pattern: &Pattern) -> Result<Group>;

    /// Importance of every weight of `layer`, row-major (d_out, d_in); low means prunable.
    fn score(&self, layer: &LayerView<'_>) -> Result<Vec<f32>>;

    /// The method's decision for `layer`; by default its scores.
    fn decide(&self, layer: &LayerView<'_>, _pattern: &Pattern, _group: Group) -> Result<Decision> {
        Ok(Decision::Scores(self.score(layer)?))
    }

    /// The decision for `layer` with notes for the report; by default [`LayerwiseMethod::decide`]
    /// without notes. This is what the pipeline calls. A method that overrides it should make
    /// `decide` return the same decision (e.g. `Ok(self.decide_with_notes(..)?.decision)`).
    fn decide_with_notes(&self, layer: &LayerView<'_>, pattern: &Pattern, group: Group) -> Result<Decided> {
        Ok(Decided { decision: self.decide(layer, pattern, group)?, notes: Notes::new() })
    }

    /// The effective configuration (defaults filled in), recorded in every report.
    fn config(&self) -> serde_json::Value;
}

/// Parses a method's serde config from JSON (`null` means all defaults); unknown fields are
/// errors if the config type says `#[serde(deny_unknown_fields)]`.
pub fn parse_config<C: DeserializeOwned + Default>(method: &str, value: &serde_json::Value) -> Result<C> {
    if value.is_null() {
        return Ok(C::default());
    }
    serde_json::from_value(value.clone())
        .map_err(|e| Error::BadConfig { method: method.to_string(), reason: e.to_string() })
}

/// The error for a pattern a method does not support.
pub fn unsupported(method: &str, pattern: &Pattern) -> Error {
    Error::Unsupported { method: method.to_string(), what: format!("pattern {pattern}") }
}
