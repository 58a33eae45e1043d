//! Random structured pruning: the units go in a seeded random order.
//!
//! The "Random" rows of structured-pruning tables (LLM-Pruner Table 1: random channels and
//! heads; layer-pruning papers: random layers). Each candidate unit gets a score uniform in
//! [0, 1) from SplitMix64 seeded with `seed`, once (one-shot: a removal changes nothing a
//! random order could depend on); the core removes the lowest until the budget is met, so
//! the same units, budget and protected layers apply as for every structured method.

use prunus_core::{Method, Notes};
use prunus_core::rng::SplitMix64;
use prunus_core::structured::{Schedule, ScoreInput, Scored, StructuredMethod};
use prunus_core::Result;
use serde::{Deserialize, Serialize};

/// Configuration (all fields optional in JSON/TOML).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seed of the random order. Default 0.
    pub seed: u64,
}

/// The random baseline.
#[derive(Debug, Clone, Default)]
pub struct StructRandom {
    /// Its configuration.
    pub config: Config,
}

impl Method for StructRandom {
    const NAME: &'static str = "struct-random";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "structured baseline: remove units in a seeded random order (one-shot)";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        Ok(StructRandom { config })
    }
}

impl StructuredMethod for StructRandom {
    fn schedule(&self) -> Schedule {
        Schedule::OneShot
    }

    fn needs_calibration(&self) -> bool {
        false
    }

    fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
        let mut rng = SplitMix64::new(self.config.seed);
        let scores = input.units.iter().map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64).collect();
        Ok(Scored { scores, notes: Notes::new() })
    }
}

prunus_core::register!(structured StructRandom);
