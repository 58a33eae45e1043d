//! GMP: gradual magnitude pruning during fine-tuning (Zhu & Gupta, "To prune, or not to
//! prune", 2017), MGPP's first baseline: the same schedule and the same global magnitude mask
//! as MGPP, without the prior.
//!
//! Everything it does is the core's: the cubic `PruneSchedule` (with the initial jump when the
//! run asks for one) and the global mask over the candidates by `|θ|` (the default
//! `TrainingMethod::scores`). Zhu & Gupta mask each layer to the same sparsity; the PTMGP
//! code's GMP, which this follows, ranks all candidates together.

use prunus_core::training::{RunInfo, TrainingMethod};
use prunus_core::{Method, Result, declare::bad_config};
use serde::{Deserialize, Serialize};

/// No options: the schedule is the run's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {}

/// The GMP method.
#[derive(Debug, Clone, Default)]
pub struct Gmp;

impl Method for Gmp {
    const NAME: &'static str = "gmp";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "GMP (training-time): global magnitude on the cubic schedule (Zhu & Gupta), MGPP without its prior";
    type Config = Config;

    fn new(_: Config) -> Result<Self> {
        Ok(Gmp)
    }
}

impl TrainingMethod for Gmp {
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()> {
        match run.schedule {
            Some(_) => Ok(()),
            None => Err(bad_config(Self::NAME, "GMP prunes on a schedule: give a final sparsity")),
        }
    }
}

prunus_core::register!(training Gmp);
