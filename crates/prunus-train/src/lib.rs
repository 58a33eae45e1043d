//! prunus-train: the numerics of training, for the training-time pruning methods (MGPP, GMP,
//! PLATON, Systematic Weight Evaluation).
//!
//! What is here so far is what any training loop needs and what can be checked against a hand
//! computation on its own:
//!
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
//! The training loop itself (batches, accumulation, the method hooks, evaluation, checkpoints)
//! is not here yet. Everything is sequential over the buffers, so results do not depend on the
//! thread count.

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
