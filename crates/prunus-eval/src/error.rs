//! The evaluation crate's error type.

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
