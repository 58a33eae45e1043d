//! The training numerics' errors: a bad hyperparameter (named, with its value) or buffers that
//! do not fit the optimizer's state.

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
}

/// Result with [`TrainError`].
pub type Result<T, E = TrainError> = std::result::Result<T, E>;
