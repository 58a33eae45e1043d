//! Retraining with the mask fixed: a pruned model trains on while its pruned weights stay zero.

use super::method::{RunInfo, StepInfo, TrainingMethod};
use super::sparsify::apply_mask;
use crate::error::{Error, Result};

/// Re-applies a fixed keep-mask to the candidates after every optimizer update (the earlier
/// SWE code's retraining, and Han et al.'s). Built from the zeros of the weights it starts
/// from; not a registered method, the loop's helper for "prune, then retrain".
#[derive(Debug, Clone)]
pub struct FixedMask {
    /// Per candidate, in order: (its parameter index, keep-mask).
    masks: Vec<(usize, Vec<bool>)>,
}

impl FixedMask {
    /// The mask of the zeros in `weights` (one buffer per parameter) over `candidates`.
    pub fn of_zeros(weights: &[Vec<f32>], candidates: &[usize]) -> Self {
        FixedMask { masks: candidates.iter().map(|&i| (i, weights[i].iter().map(|w| *w != 0.0).collect())).collect() }
    }
}

impl TrainingMethod for FixedMask {
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()> {
        for (i, keep) in &self.masks {
            match run.params.get(*i) {
                Some(p) if p.numel() == keep.len() => {}
                _ => return Err(Error::Invalid(format!("the fixed mask of parameter {i} does not fit the model"))),
            }
        }
        Ok(())
    }

    fn after_update(&mut self, _step: &StepInfo, weights: &mut [Vec<f32>], _grads: &[Vec<f32>]) -> Result<()> {
        for (i, keep) in &self.masks {
            apply_mask(&mut weights[*i], keep);
        }
        Ok(())
    }
}
