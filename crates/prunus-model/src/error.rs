//! The crate's error type. Every variant carries the offending values (file, tensor, field,
//! value); messages are lowercase with no trailing period.

use std::path::PathBuf;

/// Errors from loading, running and saving models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done (`open`, `read`, `create`, ...).
        op: &'static str,
        /// The file or directory at fault.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },

    /// A GGUF file is truncated or malformed.
    #[error("invalid gguf file {path}: {reason}")]
    Gguf {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A safetensors file (or its shard index) is malformed.
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A config.json could not be parsed.
    #[error("cannot parse {path}: {source}")]
    ConfigParse {
        /// The file or directory at fault.
        path: PathBuf,
        /// The underlying error.
        source: serde_json::Error,
    },

    /// The model file is of an architecture this crate does not implement.
    #[error("unsupported architecture `{arch}` in {path} (supported: llama)")]
    UnsupportedArchitecture {
        /// The file or directory at fault.
        path: PathBuf,
        /// The architecture the file declares.
        arch: String,
    },

    /// A GGUF tensor is stored in a quantization type that cannot be dequantized.
    #[error("tensor `{tensor}` in {path} has unsupported quantization type {dtype}")]
    UnsupportedQuantization {
        /// The file or directory at fault.
        path: PathBuf,
        /// The tensor (its name in the file, or a description).
        tensor: String,
        /// The stored type.
        dtype: String,
    },

    /// A safetensors tensor has a dtype other than f32, f16 or bf16.
    #[error("tensor `{tensor}` in {path} has unsupported dtype {dtype} (expected f32, f16 or bf16)")]
    UnsupportedDtype {
        /// The file or directory at fault.
        path: PathBuf,
        /// The tensor (its name in the file, or a description).
        tensor: String,
        /// The stored type.
        dtype: String,
    },

    /// A metadata key the loader needs is absent.
    #[error("{path} lacks metadata key `{key}`")]
    MissingMetadata {
        /// The file or directory at fault.
        path: PathBuf,
        /// The metadata key.
        key: String,
    },

    /// A metadata key has a value of the wrong type or range.
    #[error("metadata key `{key}` in {path} has invalid value {value}")]
    BadMetadata {
        /// The file or directory at fault.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// The value found, as text.
        value: String,
    },

    /// A tensor the model needs is absent from the file(s).
    #[error("tensor `{tensor}` is missing from {path}")]
    MissingTensor {
        /// The file or directory at fault.
        path: PathBuf,
        /// The tensor (its name in the file, or a description).
        tensor: String,
    },

    /// A tensor's shape disagrees with the config.
    #[error("tensor `{tensor}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch {
        /// The tensor (its name in the file, or a description).
        tensor: String,
        /// The shape expected.
        expected: Vec<usize>,
        /// The shape found.
        found: Vec<usize>,
    },

    /// A config field has an invalid value.
    #[error("invalid config: {field} = {value}: {reason}")]
    Config {
        /// The config field (a dotted path for nested keys).
        field: String,
        /// The value found, as text.
        value: String,
        /// What is wrong.
        reason: String,
    },

    /// The hand-written training path cannot run on this model as held (not f32 on the CPU,
    /// or widths that do not fit).
    #[error("hand-written backward: {reason}")]
    Backprop {
        /// What is wrong.
        reason: String,
    },

    /// The token tensor given to a forward pass is not usable.
    #[error("invalid tokens: {reason}")]
    Tokens {
        /// What is wrong.
        reason: String,
    },

    /// A block index is out of range.
    #[error("block {block} is out of range (the model has {n_blocks} blocks)")]
    BlockOutOfRange {
        /// The block index asked for.
        block: usize,
        /// The number of blocks the model has.
        n_blocks: usize,
    },

    /// A linear name that no block has.
    #[error("unknown linear `{name}` (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")]
    UnknownLinear {
        /// The name given.
        name: String,
    },

    /// The output directory of a save cannot be used.
    #[error("cannot write model to {path}: {reason}")]
    OutputDir {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },

    /// A streamed model was driven out of order (a block not in memory, blocks skipped, or
    /// finished before every block was written).
    #[error("streamed model: {reason}")]
    Stream {
        /// What happened.
        reason: String,
    },

    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: candle_core::Error,
    },
}

impl From<candle_core::Error> for ModelError {
    fn from(source: candle_core::Error) -> Self {
        ModelError::Candle { context: "tensor operation failed".to_string(), source }
    }
}

impl From<ModelError> for prunus_core::Error {
    fn from(e: ModelError) -> Self {
        match e {
            ModelError::ShapeMismatch { tensor, expected, found } => {
                prunus_core::Error::Shape { tensor, expected, got: found }
            }
            ModelError::Candle { context, source } if context == "tensor operation failed" => {
                prunus_core::Error::Candle(source)
            }
            other => prunus_core::Error::model("llama model", other),
        }
    }
}

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// Adds a context string to candle errors.
pub(crate) trait CandleContext<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> CandleContext<T> for std::result::Result<T, candle_core::Error> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| ModelError::Candle { context: context(), source })
    }
}
