//! The training-time method: hooks at fixed points of every step.
//!
//! One step of the loop (prunus-train), with `t` counting from 0:
//!
//! 1. forward and backward over the step's batch (accumulated over micro-batches): the mean
//!    loss's gradients;
//! 2. [`TrainingMethod::after_backward`]: the method may add to the gradients (MGPP's prior);
//! 3. clipping by global norm (if asked), then the optimizer update;
//! 4. [`TrainingMethod::after_update`]: the method sees the updated weights and the gradients
//!    the update used (PLATON's importance averages); it may change weights;
//! 5. at every checkpoint boundary (every `checkpoint_every` steps and the last step, whether
//!    or not checkpoints are written to disk), [`TrainingMethod::at_checkpoint`]: a method may
//!    record the weights' history (Systematic Weight Evaluation);
//! 6. the core's pruning on the [`PruneSchedule`](super::PruneSchedule): when the schedule
//!    prunes at `t`, [`TrainingMethod::scores`] gives every candidate weight's importance and
//!    the core zeroes the lowest over all candidates together; after the schedule's end the
//!    frozen mask is re-applied every step;
//! 7. when a checkpoint is written, [`TrainingMethod::state`], saved with the run so that a
//!    resumed run is bit-identical to an uninterrupted one.
//!
//! Weights and gradients come as one buffer per parameter, in the model's
//! [`params`](super::TrainableModel::params) order; [`RunInfo::candidates`] says which are
//! prunable.

use serde::{Deserialize, Serialize};

use super::model::ParamInfo;
use super::schedule::PruneSchedule;
use crate::declare::{Built, Method, Notes};
use crate::error::{Error, Result};

/// What a method learns once, before the first step.
#[derive(Debug, Clone, Copy)]
pub struct RunInfo<'a> {
    /// Every parameter, in buffer order.
    pub params: &'a [ParamInfo],
    /// Indices into `params` of the prunable candidates.
    pub candidates: &'a [usize],
    /// Steps of the whole run.
    pub total_steps: u64,
    /// The number of training examples (MGPP's `n`, which scales its prior).
    pub n_examples: u64,
    /// The sparsity schedule the core will apply (`None`: a dense fine-tune).
    pub schedule: Option<&'a PruneSchedule>,
}

/// Where a hook is called.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// The step, from 0.
    pub step: u64,
    /// Its learning rate.
    pub lr: f64,
}

/// A method's state at a checkpoint: scalars as JSON and named f32 buffers (moving averages,
/// accumulated histories), restored by [`TrainingMethod::restore`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MethodState {
    /// Small values (counters, the last window's index...).
    pub scalars: serde_json::Value,
    /// Large values by name.
    #[serde(skip)]
    pub buffers: Vec<(String, Vec<f32>)>,
}

/// A training-time pruning method (see the module docs for when each hook runs).
pub trait TrainingMethod: Send + Sync {
    /// Called once before the first step (and again when a run resumes, before
    /// [`restore`](Self::restore)): allocate state, check that the run suits the method.
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()>;

    /// After the backward pass of step `step.step`: the method may add to `grads`.
    fn after_backward(&mut self, _step: &StepInfo, _weights: &[Vec<f32>], _grads: &mut [Vec<f32>]) -> Result<()> {
        Ok(())
    }

    /// After the optimizer update: `weights` are updated, `grads` are the ones the update used
    /// (after the method's additions and clipping).
    fn after_update(&mut self, _step: &StepInfo, _weights: &mut [Vec<f32>], _grads: &[Vec<f32>]) -> Result<()> {
        Ok(())
    }

    /// The importance of every weight of candidate parameter `param` (an index into the
    /// buffers) when the schedule prunes: one finite value per element, low pruned first.
    /// The default is the magnitude `|w|`.
    fn scores(&self, _step: &StepInfo, weights: &[Vec<f32>], param: usize) -> Result<Vec<f32>> {
        Ok(weights[param].iter().map(|w| w.abs()).collect())
    }

    /// At a checkpoint boundary after step `step.step`'s update, before the core prunes (and
    /// before [`state`](Self::state) is saved when a checkpoint is written).
    fn at_checkpoint(&mut self, _step: &StepInfo, _weights: &[Vec<f32>]) -> Result<()> {
        Ok(())
    }

    /// Numbers to log for the step just taken (MGPP's current slab weight, ...).
    fn log(&self) -> Notes {
        Notes::default()
    }

    /// Everything [`restore`](Self::restore) needs to continue bit for bit.
    fn state(&self) -> MethodState {
        MethodState::default()
    }

    /// Continues from a saved [`state`](Self::state) (after [`begin`](Self::begin)).
    fn restore(&mut self, state: MethodState) -> Result<()> {
        if state.scalars.is_null() && state.buffers.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid("this method keeps no state, but the checkpoint holds some".into()))
        }
    }
}

impl Built<dyn TrainingMethod> {
    /// `method` as the loop takes it, built outside the registry (tests): its declared name,
    /// no recorded configuration.
    pub fn training<M: Method + TrainingMethod>(method: M) -> Self {
        Built::unregistered(M::NAME, Box::new(method))
    }
}
