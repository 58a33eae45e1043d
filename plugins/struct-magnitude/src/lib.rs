//! Magnitude structured pruning: the units with the smallest weights go.
//!
//! The "L2" rows of structured-pruning tables (LLM-Pruner Table 1, "L2 (block)"): a unit's
//! importance is the L2 norm of all its weights, sqrt(sum of w^2) over every parameter the
//! unit owns (for a layer: its linears and norms; for a head: its q, k, v rows and o
//! columns; for a channel: its gate and up rows and down column). No calibration data.
//! One-shot: removing a unit leaves the others' weights, hence their scores, unchanged.

use prunus_core::{Method, Notes};
use prunus_core::structured::{Schedule, ScoreInput, Scored, StructuredMethod, unit_sums};
use prunus_core::Result;
use serde::{Deserialize, Serialize};

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Divide each unit's norm by sqrt(its parameter count) (the root mean square weight;
    /// matters only when units differ in size). Default false.
    pub normalize: bool,
}

/// The magnitude baseline.
#[derive(Debug, Clone, Default)]
pub struct StructMagnitude {
    /// Its configuration.
    pub config: Config,
}

impl Method for StructMagnitude {
    const NAME: &'static str = "struct-magnitude";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "structured baseline: remove the units with the smallest L2 weight norm (one-shot; no data)";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(StructMagnitude { config })
    }
}

impl StructuredMethod for StructMagnitude {
    fn schedule(&self) -> Schedule {
        Schedule::OneShot
    }

    fn needs_calibration(&self) -> bool {
        false
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
        let weights = input.model.weights()?;
        let sq = unit_sums(input.units, |name| Ok(weights.get(name)?.sqr()?))?;
        let scores = sq
            .iter()
            .zip(input.units)
            .map(|(s, u)| if self.config.normalize { (s / u.params as f64).sqrt() } else { s.sqrt() })
            .collect();
        Ok(Scored { scores, notes: Notes::new() })
    }
}

prunus_core::register!(structured StructMagnitude);
