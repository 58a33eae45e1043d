//! The training-time method kind: methods that prune while the model trains (MGPP, GMP,
//! PLATON, Systematic Weight Evaluation).
//!
//! The training loop itself lives in prunus-train; what is here is what a method and a model
//! family need to know of it, and the part of pruning the core owns for every kind, deciding
//! which weights go:
//!
//! - [`TrainableModel`] (`model.rs`): a model as a list of named f32 parameters, some of them
//!   prunable candidates, with the loss and gradients of a token batch;
//! - [`TrainingMethod`] (`method.rs`): the hooks a method implements, called at fixed points of
//!   every step (after the backward pass, after the optimizer update, at checkpoints), the
//!   importance it gives each candidate weight when the schedule prunes, and its state for
//!   checkpoints ([`MethodState`]);
//! - [`PruneSchedule`] (`schedule.rs`): Zhu & Gupta's cubic sparsity schedule with MGPP's
//!   initial jump, pruning interval and frozen final mask, as the PTMGP code computes it;
//! - [`global_mask`] (`sparsify.rs`): one mask over all candidate tensors together from the
//!   method's scores, by the PTMGP code's threshold rule;
//! - [`FixedMask`] (`fixed.rs`): retraining a pruned model with its zeros kept.
//!
//! Everything is plain data (f32 slices, shapes, names): no tensors of any framework cross
//! these traits.

mod fixed;
mod method;
mod model;
mod schedule;
mod sparsify;

pub use fixed::FixedMask;
pub use method::{MethodState, RunInfo, StepInfo, TrainingMethod};
pub use model::{ParamInfo, TrainableModel};
pub use schedule::{PruneAction, PruneSchedule};
pub use sparsify::{MaskStats, apply_mask, candidate_indices, candidate_zeros, global_mask};
