//! The training engine's errors: a bad hyperparameter (named, with its value), buffers that do
//! not fit, a loss that stopped being finite (with its step), a checkpoint that cannot be
//! used (with its path and why), or an error of the model or the method.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A hyperparameter is out of its range.
    #[error("{name} = {value}: {reason}")]
    Hyperparameter {
        /// Its name as the CLI and configs spell it.
        name: &'static str,
        /// The value given, as text.
        value: String,
        /// The range it must be in.
        reason: &'static str,
    },
    /// The parameters or gradients handed to a step do not match the optimizer's state.
    #[error("buffers do not fit: {0}")]
    Buffers(String),
    /// The loss or the gradient norm of a step is NaN or infinite; the run stops there.
    #[error("the {what} of step {step} is {value}: training stopped{}", last_good(.checkpoint))]
    NonFinite {
        /// `loss` or `gradient norm`.
        what: &'static str,
        /// The step, from 0.
        step: u64,
        /// The value.
        value: f64,
        /// The last checkpoint written, kept as it was.
        checkpoint: Option<PathBuf>,
    },
    /// A checkpoint that cannot be written, read or used for this run.
    #[error("checkpoint {}: {reason}", .path.display())]
    Checkpoint {
        /// The checkpoint (or checkpoint directory).
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An error of the model, the method or the caller's data or evaluation.
    #[error(transparent)]
    Core(#[from] prunus_core::Error),
}

fn last_good(checkpoint: &Option<PathBuf>) -> String {
    match checkpoint {
        Some(p) => format!(" (the last good checkpoint, {}, is kept)", p.display()),
        None => " (no checkpoint had been written)".into(),
    }
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
