//! prunus-eval: how a (pruned) model is measured, and the record of a run.
//!
//! Tasks are data ([`tasks`]): a name, a version and a protocol. This crate computes the
//! metrics from a model's outputs ([`perplexity`]) and defines the serde run report
//! ([`report`]) that the CLI writes and `cargo xtask bench` reads. The numbers always carry
//! their protocol (corpus, seq_len, window count) next to them.

pub mod perplexity;
pub mod report;
pub mod tasks;

pub use perplexity::{PerplexityResult, perplexity};
pub use tasks::{Task, TaskKind};

/// Errors of the evaluation crate; messages are lowercase and carry the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown task `{name}`{}", match .suggestion { Some(s) => format!(" (did you mean `{s}`?)"), None => format!(" (known tasks: {})", .known) })]
    UnknownTask { name: String, suggestion: Option<String>, known: String },
    #[error("corpus `{corpus}` has {n_tokens} tokens, too few for one window of seq_len {seq_len}")]
    TooShort { corpus: String, n_tokens: usize, seq_len: usize },
    #[error("invalid evaluation setting: {0}")]
    Invalid(String),
    #[error("model produced a non-finite negative log-likelihood ({value}) in window {window}")]
    NonFinite { window: usize, value: f64 },
    #[error(transparent)]
    Core(#[from] prunus_core::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
