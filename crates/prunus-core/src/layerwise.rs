//! The layer-wise one-shot method kind (magnitude, Wanda, SparseGPT, SwiftPrune).
//!
//! The core drives block-sequential calibration ([`pipeline`](crate::pipeline)) and hands a
//! method one weight matrix at a time, with the statistics it asked for. The method has one
//! entry, [`LayerwiseMethod::decide`]: it returns scores (the core prunes the lowest of each
//! comparison group), a mask it chose itself, or a mask with rewritten surviving weights
//! (SparseGPT). Anything it wants the report to say about the layer goes into the [`Notes`]
//! it is handed.
//!
//! The pattern and group a method decides for come as a [`Target`], which only the core's
//! preflight ([`Target::check`]) makes: the sparsity is valid, the method's group realises the
//! pattern, and an N:M pattern fits every linear's input width. A method does not check them
//! again.

use crate::declare::{Built, Method, Notes};
use crate::mask::{Mask, check_nm_fits};
use crate::pattern::{Group, Pattern, check_sparsity};
use crate::stats::{StatKind, Stats};
use crate::error::{Error, Result};

/// One linear layer as a method sees it: plain slices and shapes, no tensors.
#[derive(Debug, Clone, Copy)]
pub struct LayerView<'a> {
    /// Decoder block index.
    pub block: usize,
    /// Full name for messages, e.g. `blk.3.q_proj`.
    pub name: &'a str,
    /// Output features (rows of the weight).
    pub d_out: usize,
    /// Input features (columns of the weight).
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
    MaskAndWeights {
        /// Which weights go.
        mask: Mask,
        /// The new weights, row-major (d_out, d_in); the core zeroes the masked ones.
        weight: Vec<f32>,
    },
}

/// A checked pattern with the comparison group a method chose for it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Target {
    pattern: Pattern,
    group: Group,
}

impl Target {
    /// The preflight of a layer-wise run: `pattern`'s sparsity is valid, `method`'s group for
    /// it realises it, and an N:M pattern fits every `(name, d_in)` of `linears`.
    pub fn check<'a>(
        method_name: &str,
        method: &dyn LayerwiseMethod,
        pattern: &Pattern,
        linears: impl IntoIterator<Item = (&'a str, usize)>,
    ) -> Result<Target> {
        check_sparsity(pattern.sparsity())?;
        let group = method.group(pattern)?;
        if !group.realises(pattern) {
            return Err(Error::Invalid(format!(
                "method `{method_name}` chose comparison group {group}, which cannot realise pattern {pattern}"
            )));
        }
        for (name, d_in) in linears {
            check_nm_fits(pattern, name, d_in)?;
        }
        Ok(Target { pattern: *pattern, group })
    }

    /// What the user asked for.
    pub fn pattern(&self) -> &Pattern {
        &self.pattern
    }

    /// The comparison group the method chose for it.
    pub fn group(&self) -> Group {
        self.group
    }
}

/// A layer-wise one-shot pruning method.
pub trait LayerwiseMethod: Send + Sync {
    /// The statistics of each linear's inputs this method needs.
    fn stats(&self) -> StatKind;

    /// The comparison group used for `pattern`, or [`Error::Unsupported`] (see
    /// [`unsupported`]).
    fn group(&self, pattern: &Pattern) -> Result<Group>;

    /// The method's decision for `layer` at `target`; remarks for the report go into `notes`.
    fn decide(&self, layer: &LayerView<'_>, target: &Target, notes: &mut Notes) -> Result<Decision>;
}

/// The error for a pattern a method does not support.
pub fn unsupported(method: &str, pattern: &Pattern) -> Error {
    Error::Unsupported { method: method.to_string(), what: format!("pattern {pattern}") }
}

impl Built<dyn LayerwiseMethod> {
    /// `method` as the pipeline takes it, built outside the registry (tests, benchmarks): its
    /// declared name, no recorded configuration.
    pub fn layerwise<M: Method + LayerwiseMethod>(method: M) -> Self {
        Built::unregistered(M::NAME, Box::new(method))
    }
}
