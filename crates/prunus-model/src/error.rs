//! The crate's error type. Every variant carries the offending values (file, tensor, field,
//! value); messages are lowercase with no trailing period.

use std::path::PathBuf;

/// Errors from loading, running and saving models.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file or directory could not be read or written.
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },

    /// A GGUF file is truncated or malformed.
    #[error("invalid gguf file {path}: {reason}")]
    Gguf { path: PathBuf, reason: String },

    /// A safetensors file (or its shard index) is malformed.
    #[error("invalid safetensors file {path}: {reason}")]
    Safetensors { path: PathBuf, reason: String },

    /// A config.json could not be parsed.
    #[error("cannot parse {path}: {source}")]
    ConfigParse { path: PathBuf, source: serde_json::Error },

    /// The model file is of an architecture this crate does not implement.
    #[error("unsupported architecture `{arch}` in {path} (supported: llama)")]
    UnsupportedArchitecture { path: PathBuf, arch: String },

    /// A GGUF tensor is stored in a quantization type that cannot be dequantized.
    #[error("tensor `{tensor}` in {path} has unsupported quantization type {dtype}")]
    UnsupportedQuantization { path: PathBuf, tensor: String, dtype: String },

    /// A safetensors tensor has a dtype other than f32, f16 or bf16.
    #[error("tensor `{tensor}` in {path} has unsupported dtype {dtype} (expected f32, f16 or bf16)")]
    UnsupportedDtype { path: PathBuf, tensor: String, dtype: String },

    /// A metadata key the loader needs is absent.
    #[error("{path} lacks metadata key `{key}`")]
    MissingMetadata { path: PathBuf, key: String },

    /// A metadata key has a value of the wrong type or range.
    #[error("metadata key `{key}` in {path} has invalid value {value}")]
    BadMetadata { path: PathBuf, key: String, value: String },

    /// A tensor the model needs is absent from the file(s).
    #[error("tensor `{tensor}` is missing from {path}")]
    MissingTensor { path: PathBuf, tensor: String },

    /// A tensor's shape disagrees with the config.
    #[error("tensor `{tensor}` has shape {found:?}, the config implies {expected:?}")]
    ShapeMismatch { tensor: String, expected: Vec<usize>, found: Vec<usize> },

    /// A config field has an invalid value.
    #[error("invalid config: {field} = {value}: {reason}")]
    Config { field: String, value: String, reason: String },

    /// The token tensor given to a forward pass is not usable.
    #[error("invalid tokens: {reason}")]
    Tokens { reason: String },

    /// A block index is out of range.
    #[error("block {block} is out of range (the model has {n_blocks} blocks)")]
    BlockOutOfRange { block: usize, n_blocks: usize },

    /// A linear name that no block has.
    #[error("unknown linear `{name}` (expected one of q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj)")]
    UnknownLinear { name: String },

    /// The output directory of a save cannot be used.
    #[error("cannot write model to {path}: {reason}")]
    OutputDir { path: PathBuf, reason: String },

    /// A tensor operation failed.
    #[error("{context}: {source}")]
    Candle { context: String, source: candle_core::Error },
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
