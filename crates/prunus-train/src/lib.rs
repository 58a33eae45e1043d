//! prunus-train: the training engine of the training-time pruning methods (MGPP, GMP, PLATON;
//! Systematic Weight Evaluation next).
//!
//! - [`train`] (`trainer.rs`): the loop. Per step: the step's batch in micro-batches (gradient
//!   accumulation), the loss checked finite, the method's hooks (prunus-core's
//!   `TrainingMethod`: after the backward pass, after the update, at checkpoints), clipping by
//!   global norm, the AdamW update at the schedule's rate, the core's cubic sparsity schedule
//!   and global mask, a [`StepRecord`] for the log, checkpoints and evaluations when due. The
//!   model comes in as prunus-core's `TrainableModel`; the caller supplies the data, the
//!   evaluation and the progress display through [`Io`].
//! - [`Checkpoint`] (`checkpoint.rs`): the whole state (weights, AdamW's moments, the method's
//!   state, the frozen mask, the log), written atomically with a sha256 per blob; a resumed run
//!   ends bit-identical to an uninterrupted one, and another run's checkpoint is refused.
//! - [`AdamW`]: Adam with decoupled weight decay and bias correction, over plain f32 buffers,
//!   in the order of operations of PyTorch's single-tensor `torch.optim.AdamW` (bit for bit
//!   on the fixture of `scripts/reference/train_reference.py`); defaults are MGPP's recipe
//!   (betas 0.9/0.98, eps 1e-6, weight decay 0);
//! - [`Schedule`]: linear warm-up from 0, then linear or cosine decay to a final multiplier of
//!   the peak (Composer's `LinearWithWarmupScheduler` and `CosineAnnealingWithWarmupScheduler`,
//!   which MGPP's scripts use), or constant;
//! - [`clip_global_norm`]: gradient clipping by the global L2 norm, as
//!   `torch.nn.utils.clip_grad_norm_` does it (the norm summed in f64 here, in a fixed order).
//!
//! Everything is sequential over the buffers, so results do not depend on the thread count.

mod checkpoint;
mod clip;
mod error;
mod optim;
mod schedule;
mod trainer;

pub use checkpoint::{Blob, Checkpoint, CheckpointMeta};
pub use clip::clip_global_norm;
pub use error::{Result, TrainError};
pub use optim::{AdamW, AdamWConfig};
pub use schedule::{Decay, Schedule};
pub use trainer::{EvalRecord, Io, Outcome, Progress, StepRecord, TrainConfig, train};
