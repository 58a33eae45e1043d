//! The evaluation crate's error type and its `Result`.

/// Errors of the evaluation crate; messages are lowercase and carry the offending values.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A task name that is not in the registry, with the closest known names.
    #[error("unknown task `{name}`{}", match .suggestions.as_slice() {
        [] => format!(" (known tasks: {})", .known),
        [one] => format!(" (did you mean `{one}`?)"),
        many => format!(" (did you mean one of {}?)", many.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ")),
    })]
    UnknownTask {
        /// The name given.
        name: String,
        /// Known names close to it (may be empty).
        suggestions: Vec<String>,
        /// Every known task name, comma-separated (shown when nothing is close).
        known: String,
    },
    /// A corpus too short for a single evaluation window.
    #[error("corpus `{corpus}` has {n_tokens} tokens, too few for one window of seq_len {seq_len}")]
    TooShort {
        /// The corpus name.
        corpus: String,
        /// Its length in tokens.
        n_tokens: usize,
        /// The window length asked for.
        seq_len: usize,
    },
    /// An evaluation setting that cannot be used (the message says which and why).
    #[error("invalid evaluation setting: {0}")]
    Invalid(String),
    /// The model returned a NaN or infinite window NLL.
    #[error("model produced a non-finite negative log-likelihood ({value}) in window {window}")]
    NonFinite {
        /// The window index.
        window: usize,
        /// The value returned.
        value: f64,
    },
    /// The model returned a NaN or infinite log-likelihood for a multiple-choice choice.
    #[error("model produced a non-finite log-likelihood ({value}) for a choice of doc {doc_id}")]
    NonFiniteScore {
        /// The document's `doc_id`.
        doc_id: u64,
        /// The value returned.
        value: f64,
    },
    /// A task file that cannot be read or parsed.
    #[error("task file {}{}: {reason}", .path.display(), if *.line > 0 { format!(":{}", .line) } else { String::new() })]
    TaskFile {
        /// The file.
        path: std::path::PathBuf,
        /// The 1-based line at fault, or 0 for the file as a whole.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// An error of the core crate (the model callbacks return these).
    #[error(transparent)]
    Core(#[from] prunus_core::Error),
    /// A tensor operation failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
