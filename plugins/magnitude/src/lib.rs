//! Magnitude pruning, the baseline every pruning paper reports.
//!
//! Score `S_ij = |W_ij|`; no calibration data. Reference: locuslab/wanda `lib/prune.py`
//! (`prune_magnitude`), which compares the weights of a whole linear layer for unstructured
//! sparsity and M consecutive input columns of a row for N:M. See README.md for the checklist
//! and the one deliberate deviation (exact count instead of `<= threshold`).

use prunus_core::layerwise::{Decision, LayerView, LayerwiseMethod, Target};
use prunus_core::{Group, Method, Notes, Pattern, Result, StatKind, UnstructuredGroup};
use serde::{Deserialize, Serialize};

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Comparison group for unstructured sparsity; N:M always compares within each group of M.
    /// Default: `per_matrix` (the whole linear, as Wanda's and SparseGPT's baseline).
    pub unstructured_group: UnstructuredGroup,
}

impl Default for Config {
    fn default() -> Self {
        Config { unstructured_group: UnstructuredGroup::PerMatrix }
    }
}

/// The magnitude method.
#[derive(Debug, Clone, Default)]
pub struct Magnitude {
    /// Its configuration.
    pub config: Config,
}

impl Method for Magnitude {
    const NAME: &'static str = "magnitude";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "magnitude |W| (baseline; no calibration data), per matrix, per row or N:M";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(Magnitude { config })
    }
}

impl LayerwiseMethod for Magnitude {
    fn stats(&self) -> StatKind {
        StatKind::None
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        Ok(self.config.unstructured_group.group(pattern))
    }

    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        Ok(Decision::Scores(layer.weight.iter().map(|w| w.abs()).collect()))
    }
}

prunus_core::register!(layerwise Magnitude);
