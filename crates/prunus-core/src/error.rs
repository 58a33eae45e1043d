//! The core's error type. Variants carry the offending values; messages are lowercase.

use crate::pattern::Pattern;

/// Errors of the core and of the traits it defines (plugins and model families use it too).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A method name that is not registered.
    #[error("unknown method `{name}`{}", suggestion_text(.suggestion))]
    UnknownMethod {
        /// The name given.
        name: String,
        /// The closest registered name, if it is plausibly a typo.
        suggestion: Option<String>,
    },

    /// Two registrations share one method name.
    #[error("method `{name}` is registered twice (by {first} and by {second})")]
    DuplicateMethod {
        /// The shared name.
        name: String,
        /// The crate of one registration (its `origin`).
        first: String,
        /// The crate of the other registration.
        second: String,
    },

    /// A method loaded from a shared library failed at the boundary: the library could not be
    /// loaded, its table is wrong, or the method returned an error, panicked or gave back data
    /// of the wrong shape.
    #[error("plugin {library}: {reason}")]
    Plugin {
        /// The library's path.
        library: String,
        /// What went wrong, on one line.
        reason: String,
    },

    /// A method asked for something it cannot do (a pattern, a kind of pruning).
    #[error("method `{method}` does not support {what}")]
    Unsupported {
        /// The method's name.
        method: String,
        /// What was asked for, e.g. `pattern 2:4`.
        what: String,
    },

    /// An unstructured sparsity outside [0, 1).
    #[error("sparsity {value} is outside [0, 1)")]
    BadSparsity {
        /// The sparsity given.
        value: f64,
    },

    /// A pattern that cannot be parsed or is not a valid N:M.
    #[error("invalid pattern `{pattern}`: {reason}")]
    BadPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A valid pattern that does not fit one linear layer (M does not divide its input width).
    #[error("pattern {pattern} does not fit linear `{tensor}` with d_in = {d_in}: {reason}")]
    PatternMismatch {
        /// The pattern asked for.
        pattern: Pattern,
        /// The linear's tensor name.
        tensor: String,
        /// The linear's input width.
        d_in: usize,
        /// Why it does not fit.
        reason: String,
    },

    /// A method configuration that cannot be used.
    #[error("invalid config for method `{method}`: {reason}")]
    BadConfig {
        /// The method's name.
        method: String,
        /// Which value is wrong and why.
        reason: String,
    },

    /// A NaN or infinite value where finite ones are required.
    #[error("{tensor} contains a non-finite value ({value}) at index {index}")]
    NonFinite {
        /// What holds the value (a tensor, scores, calibration inputs).
        tensor: String,
        /// Its position in the values, flattened row-major (a score's candidate index).
        index: usize,
        /// The value found.
        value: f32,
    },

    /// A tensor or buffer whose shape is not the one expected.
    #[error("shape mismatch for {tensor}: expected {expected:?}, got {got:?}")]
    Shape {
        /// What has the wrong shape.
        tensor: String,
        /// The expected dimensions.
        expected: Vec<usize>,
        /// The dimensions found.
        got: Vec<usize>,
    },

    /// A method that needs calibration data run without any.
    #[error("method `{method}` needs calibration data ({what}) but none was given")]
    NeedsCalibration {
        /// The method's name.
        method: String,
        /// What it needs, e.g. `Hessian statistics` or `calibration texts`.
        what: String,
    },

    /// A structured target reduction outside (0, 1).
    #[error("target reduction {value} is outside (0, 1)")]
    BadReduction {
        /// The target given.
        value: f64,
    },

    /// A structured target reduction that the removable units cannot meet.
    #[error("target reduction {target}: {reason}")]
    Budget {
        /// The target reduction asked for.
        target: f64,
        /// Why it cannot be met (nothing removable, too little, or units too large).
        reason: String,
    },

    /// A structured unit kind that this model cannot remove.
    #[error("unit `{unit}` cannot be removed consistently from this model: {reason}")]
    UnsupportedUnit {
        /// The unit kind, e.g. `query_head`.
        unit: String,
        /// Why the model cannot remove it.
        reason: String,
    },

    /// Calibration data too small to use (no texts, too short a `seq_len`, too short a text).
    #[error("calibration too small for one batch: {reason}")]
    CalibrationTooSmall {
        /// What is too small.
        reason: String,
    },

    /// Any other invalid input or inconsistent result (the message says which and why).
    #[error("{0}")]
    Invalid(String),

    /// An error of a model family, wrapped by [`Error::model`].
    #[error("{context}: {source}")]
    Model {
        /// What was being done (or which model), shown before the source.
        context: String,
        /// The model family's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },

    /// An error of a candle tensor operation.
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

/// `Result` with the core's [`Error`] as default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
