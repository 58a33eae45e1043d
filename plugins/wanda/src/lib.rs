//! Wanda: Pruning by Weights and activations (Sun, Liu, Bair, Kolter, 2023; arXiv 2306.11695).
//!
//! Score `S_ij = |W_ij| * sqrt(scaler_j)`, where `scaler_j` is the sum over calibration
//! tokens of `x_j^2` divided by the number of calibration sequences (the running mean that
//! locuslab/wanda `lib/layerwrapper.py` keeps); it equals `|W_ij| * ||X_j||_2` up to a
//! constant. Weights compete per output row (every row loses exactly floor(d_in * s)), or
//! within each group of M consecutive inputs for N:M. No weight update. Reference:
//! locuslab/wanda `lib/prune.py` (`prune_wanda`); README.md has the checklist.

use prunus_core::method::parse_config;
use prunus_core::registry::{Factory, MethodRegistration};
use prunus_core::{Error, Group, LayerView, LayerwiseMethod, Pattern, Result, StatKind};
use serde::{Deserialize, Serialize};

/// Which weights compete with each other for unstructured sparsity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnstructuredGroup {
    /// Each output row (the paper's choice, and its code's).
    #[default]
    PerRow,
    /// The whole matrix (the paper's ablation, worse on LLaMA).
    PerMatrix,
}

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Comparison group for unstructured sparsity. Default: `per_row`.
    pub unstructured_group: UnstructuredGroup,
}

/// The Wanda method.
#[derive(Debug, Clone, Default)]
pub struct Wanda {
    pub config: Config,
}

impl LayerwiseMethod for Wanda {
    fn name(&self) -> &str {
        NAME
    }

    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }

    fn group(&self, pattern: &Pattern) -> Result<Group> {
        match (*pattern, self.config.unstructured_group) {
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerRow) => Ok(Group::PerRow),
            (Pattern::Unstructured { .. }, UnstructuredGroup::PerMatrix) => Ok(Group::PerMatrix),
            (Pattern::NM { n, m }, _) => Ok(Group::NM { n, m }),
        }
    }

    fn score(&self, layer: &LayerView<'_>) -> Result<Vec<f32>> {
        let scaler = layer.stats.mean_sq_per_sample().ok_or_else(|| Error::NeedsCalibration {
            method: NAME.to_string(),
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

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

const NAME: &str = "wanda";

fn build(config: &serde_json::Value) -> Result<Box<dyn LayerwiseMethod>> {
    Ok(Box::new(Wanda { config: parse_config(NAME, config)? }))
}

prunus_core::inventory::submit! {
    MethodRegistration {
        name: NAME,
        summary: "Wanda |W| * ||X|| (calibration activations), per output row or N:M",
        version: "1",
        origin: env!("CARGO_PKG_NAME"),
        factory: Factory::Layerwise(build),
    }
}
