//! The task registry: every task is data with a version that changes whenever its numbers can.

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What kind of measurement a task is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskKind {
    /// Perplexity over non-overlapping windows of a corpus's evaluation split.
    Perplexity,
}

/// A registered task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Name used on the command line, e.g. `ppl:wiki-vital`.
    pub name: &'static str,
    pub version: u32,
    pub kind: TaskKind,
    /// The corpus (for perplexity) whose evaluation split is scored.
    pub corpus: &'static str,
    /// One line describing the protocol.
    pub protocol: &'static str,
}

/// Every task, sorted by name.
pub const TASKS: &[Task] = &[Task {
    name: "ppl:wiki-vital",
    version: 1,
    kind: TaskKind::Perplexity,
    corpus: "wiki-vital",
    protocol: "wiki-vital eval split (every 10th article by title, joined with \\n\\n, no BOS); \
               non-overlapping windows of seq_len from the start, the first W = min(max_windows, \
               n_tokens / seq_len); each window scores its seq_len - 1 next-token predictions; \
               ppl = exp(total NLL / total predictions)",
}];

/// The task called `name`, or an error suggesting the closest one.
pub fn find(name: &str) -> Result<&'static Task> {
    TASKS.iter().find(|t| t.name == name).ok_or_else(|| Error::UnknownTask {
        name: name.to_string(),
        suggestion: prunus_core::registry::closest(name, TASKS.iter().map(|t| t.name)).map(str::to_string),
        known: TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", "),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn unknown_tasks_get_a_suggestion() {
        assert_eq!(super::find("ppl:wiki-vital").unwrap().version, 1);
        let e = super::find("ppl:wiki_vital").unwrap_err().to_string();
        assert!(e.contains("did you mean `ppl:wiki-vital`"), "{e}");
        let e = super::find("mc:arc_easy").unwrap_err().to_string();
        assert!(e.contains("known tasks: ppl:wiki-vital"), "{e}");
    }
}
