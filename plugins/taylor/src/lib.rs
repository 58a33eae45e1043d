//! First-order Taylor importance of structural units, as LLM-Pruner scores them
//! (Ma et al., "LLM-Pruner: On the Structural Pruning of Large Language Models", NeurIPS
//! 2023; reference code horseee/LLM-Pruner `hf_prune.py` with `--pruner_type taylor
//! --taylor param_first`, `TaylorImportance` in `LLMPruner/pruner/hf_llama_pruner.py`).
//!
//! The loss change from zeroing a weight is, to first order, `w * dL/dw`; a unit's importance
//! is the sum over all its parameters of `|w * g|` (element-wise salience, "element-1";
//! `group_reduction = 'sum'`), with `g` the gradient of the mean next-token loss over the
//! calibration texts (LLM-Pruner: 10 texts of 64 tokens in one batch). One-shot by default
//! (LLM-Pruner's `iterative_steps = 1`); `iterative = true` rescores after every
//! `units_per_iteration` removals. Second-order and vector-wise variants are not here.

use prunus_core::{Method, Notes};
use prunus_core::structured::{Schedule, ScoreInput, Scored, StructuredMethod, mean_gradients, unit_sums};
use prunus_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Rescore after every `units_per_iteration` removals (true) or score once (false, the
    /// default, as LLM-Pruner's default `iterative_steps = 1`).
    pub iterative: bool,
    /// Units removed between two scorings when `iterative`. Default 1.
    pub units_per_iteration: usize,
    /// Calibration texts per backward pass (memory vs speed; the mean gradient is the same).
    /// Default 16.
    pub batch_size: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config { iterative: false, units_per_iteration: 1, batch_size: 16 }
    }
}

/// The Taylor baseline.
#[derive(Debug, Clone)]
pub struct Taylor {
    config: Config,
}

impl Method for Taylor {
    const NAME: &'static str = "taylor";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "structured baseline: first-order Taylor sum |w * g| per unit (LLM-Pruner element-1; one-shot by default)";
    type Config = Config;

    /// Checks the config: `units_per_iteration` and `batch_size` at least 1.
    fn new(config: Config) -> Result<Self> {
        if config.units_per_iteration == 0 || config.batch_size == 0 {
            return Err(Error::BadConfig {
                method: Self::NAME.into(),
                reason: format!("units_per_iteration ({}) and batch_size ({}) must be at least 1", config.units_per_iteration, config.batch_size),
            });
        }
        Ok(Taylor { config })
    }
}

impl StructuredMethod for Taylor {
    fn schedule(&self) -> Schedule {
        if self.config.iterative { Schedule::Iterative { units_per_iteration: self.config.units_per_iteration } } else { Schedule::OneShot }
    }

    fn needs_calibration(&self) -> bool {
        true
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
        let calib = input
            .calibration
            .ok_or_else(|| Error::NeedsCalibration { method: Self::NAME.into(), what: "calibration texts".into() })?;
        let (loss, grads) = mean_gradients(input.model, &calib.original()?, self.config.batch_size)?;
        let weights = input.model.weights()?;
        let scores = unit_sums(input.units, |name| Ok((weights.get(name)? * grads.get(name)?)?.abs()?))?;
        let mut notes = Notes::new();
        notes.insert("loss".into(), loss.into());
        Ok(Scored { scores, notes })
    }
}

prunus_core::register!(structured Taylor);
