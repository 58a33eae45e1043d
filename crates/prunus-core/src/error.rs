//! The core's error type. Variants carry the offending values; messages are lowercase.

use crate::pattern::Pattern;

/// Errors of the core and of the traits it defines (plugins and model families use it too).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown method `{name}`{}", suggestion_text(.suggestion))]
    UnknownMethod { name: String, suggestion: Option<String> },

    #[error("method `{name}` is registered twice (by {first} and by {second})")]
    DuplicateMethod { name: String, first: String, second: String },

    #[error("method `{method}` does not support {what}")]
    Unsupported { method: String, what: String },

    #[error("sparsity {value} is outside [0, 1)")]
    BadSparsity { value: f64 },

    #[error("invalid pattern `{pattern}`: {reason}")]
    BadPattern { pattern: String, reason: String },

    #[error("pattern {pattern} does not fit linear `{tensor}` with d_in = {d_in}: {reason}")]
    PatternMismatch { pattern: Pattern, tensor: String, d_in: usize, reason: String },

    #[error("invalid config for method `{method}`: {reason}")]
    BadConfig { method: String, reason: String },

    #[error("{tensor} contains a non-finite value ({value}) at index {index}")]
    NonFinite { tensor: String, index: usize, value: f32 },

    #[error("shape mismatch for {tensor}: expected {expected:?}, got {got:?}")]
    Shape { tensor: String, expected: Vec<usize>, got: Vec<usize> },

    #[error("method `{method}` needs calibration data ({what}) but none was given")]
    NeedsCalibration { method: String, what: String },

    #[error("target reduction {value} is outside (0, 1)")]
    BadReduction { value: f64 },

    #[error("target reduction {target}: {reason}")]
    Budget { target: f64, reason: String },

    #[error("unit `{unit}` cannot be removed consistently from this model: {reason}")]
    UnsupportedUnit { unit: String, reason: String },

    #[error("calibration too small for one batch: {reason}")]
    CalibrationTooSmall { reason: String },

    #[error("{0}")]
    Invalid(String),

    #[error("{context}: {source}")]
    Model { context: String, source: Box<dyn std::error::Error + Send + Sync> },

    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

fn suggestion_text(s: &Option<String>) -> String {
    match s {
        Some(s) => format!(" (did you mean `{s}`?)"),
        None => " (run `prunus list` to see the registered methods)".to_string(),
    }
}

impl Error {
    /// Wraps any error from a model family with a context string.
    pub fn model(context: impl Into<String>, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Error::Model { context: context.into(), source: Box::new(source) }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
