//! prunus-eval: how a (pruned) model is measured, and the record of a run.
//!
//! Tasks are data ([`tasks`]): a name, a version, the data (a corpus split or a request
//! file and split), the metrics and a protocol. This crate turns a model's outputs into
//! metrics: windowed perplexity ([`mod@perplexity`]), zero-shot multiple choice by continuation
//! log-likelihood ([`mc`], with GLUE RTE read from its Arrow file in [`rte`]), and agreement
//! with the dense model ([`agreement`]). It reads the task files itself but never loads a
//! model: the caller passes closures that run one (`LlamaModel::nll`,
//! `LlamaModel::tree_logprobs`), so the logic is tested with toy scorers. It also defines
//! the serde run report ([`report`]) that the CLI writes and `cargo xtask bench` reads. The
//! numbers always carry their protocol (corpus, seq_len and window count; file, split,
//! documents scored and tokenization) next to them.

pub mod agreement;
pub mod mc;
pub mod perplexity;
pub mod report;
pub mod rte;
pub mod tasks;

pub use agreement::Agreement;
pub use perplexity::{PerplexityResult, perplexity};
pub use tasks::{Task, TaskKind, TaskSpec};

/// Errors of the evaluation crate; messages are lowercase and carry the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown task `{name}`{}", match .suggestions.as_slice() {
        [] => format!(" (known tasks: {})", .known),
        [one] => format!(" (did you mean `{one}`?)"),
        many => format!(" (did you mean one of {}?)", many.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")),
    })]
    UnknownTask { name: String, suggestions: Vec<String>, known: String },
    #[error("corpus `{corpus}` has {n_tokens} tokens, too few for one window of seq_len {seq_len}")]
    TooShort { corpus: String, n_tokens: usize, seq_len: usize },
    #[error("invalid evaluation setting: {0}")]
    Invalid(String),
    #[error("model produced a non-finite negative log-likelihood ({value}) in window {window}")]
    NonFinite { window: usize, value: f64 },
    #[error("model produced a non-finite log-likelihood ({value}) for a choice of doc {doc_id}")]
    NonFiniteScore { doc_id: u64, value: f64 },
    #[error("task file {}{}: {reason}", .path.display(), if *.line > 0 { format!(":{}", .line) } else { String::new() })]
    TaskFile { path: std::path::PathBuf, line: usize, reason: String },
    #[error(transparent)]
    Core(#[from] prunus_core::Error),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
