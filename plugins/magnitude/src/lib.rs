//! Magnitude pruning, the baseline every pruning paper reports.
//!
//! Score `S_ij = |W_ij|`; no calibration data. Reference: locuslab/wanda `lib/prune.py`
//! (`prune_magnitude`), which compares the weights of a whole linear layer for unstructured
//! sparsity and M consecutive input columns of a row for N:M. See README.md for the checklist
//! and the one deliberate deviation (exact count instead of `<= threshold`).

use prunus_core::method::parse_config;
use prunus_core::registry::{Factory, MethodRegistration};
use prunus_core::{Group, LayerView, LayerwiseMethod, Pattern, Result, StatKind};
use serde::{Deserialize, Serialize};

/// Which weights compete with each other for unstructured sparsity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnstructuredGroup {
    /// The whole weight matrix of one linear layer (Wanda's and SparseGPT's baseline).
    #[default]
    PerMatrix,
    /// Each output row separately.
    PerRow,
}

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Comparison group for unstructured sparsity; N:M always compares within each group of M.
    /// Default: `per_matrix`.
    pub unstructured_group: UnstructuredGroup,
}

/// The magnitude method.
#[derive(Debug, Clone, Default)]
pub struct Magnitude {
    pub config: Config,
}

impl LayerwiseMethod for Magnitude {
    fn name(&self) -> &str {
        NAME
    }

    fn stats(&self) -> StatKind {
        StatKind::None
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        match (*pattern, self.config.unstructured_group) {
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerMatrix) => Ok(Group::PerMatrix),
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerRow) => Ok(Group::PerRow),
            (Pattern::NM { n, m }, _) => Ok(Group::NM { n, m }),
        }
    }

    fn score(&self, layer: &LayerView<'_>) -> Result<Vec<f32>> {
        Ok(layer.weight.iter().map(|w| w.abs()).collect())
    }

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

const NAME: &str = "magnitude";

fn build(config: &serde_json::Value) -> Result<Box<dyn LayerwiseMethod>> {
    Ok(Box::new(Magnitude { config: parse_config(NAME, config)? }))
}

prunus_core::inventory::submit! {
    MethodRegistration {
        name: NAME,
        summary: "magnitude |W| (baseline; no calibration data), per matrix, per row or N:M",
        version: "1",
        origin: env!("CARGO_PKG_NAME"),
        factory: Factory::Layerwise(build),
    }
}
