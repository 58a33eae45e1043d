//! Wanda: Pruning by Weights and activations (Sun, Liu, Bair, Kolter, 2023; arXiv 2306.11695).
//!
//! Score `S_ij = |W_ij| * sqrt(scaler_j)`, where `scaler_j` is the sum over calibration
//! tokens of `x_j^2` divided by the number of calibration sequences (the running mean that
//! locuslab/wanda `lib/layerwrapper.py` keeps); it equals `|W_ij| * ||X_j||_2` up to a
//! constant. Weights compete per output row (every row loses exactly floor(d_in * s)), or
//! within each group of M consecutive inputs for N:M. No weight update. Reference:
//! locuslab/wanda `lib/prune.py` (`prune_wanda`); README.md has the checklist.

use prunus_core::layerwise::{Decision, LayerView, LayerwiseMethod, Target};
use prunus_core::{Error, Group, Method, Notes, Pattern, Result, StatKind, UnstructuredGroup};
use serde::{Deserialize, Serialize};

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Comparison group for unstructured sparsity. Default: `per_row` (the paper's choice and
    /// its code's; `per_matrix` is the paper's ablation, worse on LLaMA).
    pub unstructured_group: UnstructuredGroup,
}

impl Default for Config {
    fn default() -> Self {
        Config { unstructured_group: UnstructuredGroup::PerRow }
    }
}

/// The Wanda method.
#[derive(Debug, Clone, Default)]
pub struct Wanda {
    /// Its configuration.
    pub config: Config,
}

impl Method for Wanda {
    const NAME: &'static str = "wanda";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "Wanda |W| * ||X|| (calibration activations), per output row or N:M";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Wanda { config })
    }
}

impl LayerwiseMethod for Wanda {
    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        Ok(self.config.unstructured_group.group(pattern))
    }

    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        Ok(Decision::Scores(self.scores(layer)?))
    }
}

impl Wanda {
    /// `|W_ij| * sqrt(scaler_j)`, row-major (d_out, d_in).
    pub fn scores(&self, layer: &LayerView<'_>) -> Result<Vec<f32>> {
        let scaler = layer.stats.mean_sq_per_sample().ok_or_else(|| Error::NeedsCalibration {
            method: Self::NAME.to_string(),
            what: "per-feature mean of x^2".to_string(),
        })?;
        if scaler.len() != layer.d_in {
            return Err(Error::Shape {
                tensor: format!("{} input statistics", layer.name),
                expected: vec![layer.d_in],
                got: vec![scaler.len()],
            });
        }
        let norms: Vec<f64> = scaler.iter().map(|s| s.sqrt()).collect();
        let scores = layer
            .weight
            .chunks_exact(layer.d_in)
            .flat_map(|row| row.iter().zip(&norms).map(|(w, n)| (f64::from(w.abs()) * n) as f32))
            .collect();
        Ok(scores)
    }
}

prunus_core::register!(layerwise Wanda);
