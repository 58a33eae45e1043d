//! Random structured pruning: the units go in a seeded random order.
//!
//! The "Random" rows of structured-pruning tables (LLM-Pruner Table 1: random channels and
//! heads; layer-pruning papers: random layers). Each candidate unit gets a score uniform in
//! [0, 1) from SplitMix64 seeded with `seed`, once (one-shot: a removal changes nothing a
//! random order could depend on); the core removes the lowest until the budget is met, so
//! the same units, budget and protected layers apply as for every structured method.

use prunus_core::method::{Notes, parse_config};
use prunus_core::registry::{Factory, MethodRegistration};
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
    pub config: Config,
}

impl StructuredMethod for StructRandom {
    fn name(&self) -> &str {
        NAME
    }

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

    fn config(&self) -> serde_json::Value {
        serde_json::to_value(&self.config).unwrap_or_default()
    }
}

const NAME: &str = "struct-random";

fn build(config: &serde_json::Value) -> Result<Box<dyn StructuredMethod>> {
    Ok(Box::new(StructRandom { config: parse_config(NAME, config)? }))
}

prunus_core::inventory::submit! {
    MethodRegistration {
        name: NAME,
        summary: "structured baseline: remove units in a seeded random order (one-shot)",
        version: "1",
        origin: env!("CARGO_PKG_NAME"),
        factory: Factory::Structured(build),
    }
}
