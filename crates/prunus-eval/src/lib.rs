//! prunus-eval: how a (pruned) model is measured, and the record of a run.
//!
//! Tasks are data ([`tasks`]): a name, a version, the data (a corpus split or a request
//! file and split), the metrics and a protocol. This crate turns a model's outputs into
//! metrics: windowed perplexity ([`mod@perplexity`]), zero-shot multiple choice by continuation
//! log-likelihood ([`mc`], with GLUE RTE read from its Arrow file in [`rte`]), and agreement
//! with the dense model ([`agreement`]); both multiple-choice readers produce the documents of
//! [`doc`], and [`error`] is the crate's error type. It reads the task files itself but never
//! loads a model: the caller passes closures that run one (`LlamaModel::nll`,
//! `LlamaModel::tree_logprobs`), so the logic is tested with toy scorers. [`report`] binds
//! prunus-report's run report (which the CLI writes and `cargo xtask bench` reads) to
//! prunus-core's per-layer records. The numbers always carry their protocol (corpus, seq_len
//! and window count; file, split, documents scored and tokenization) next to them.

pub mod agreement;
pub mod doc;
pub mod error;
pub mod mc;
pub mod perplexity;
pub mod report;
pub mod rte;
pub mod tasks;

pub use agreement::Agreement;
pub use error::{Error, Result};
pub use perplexity::{PerplexityResult, perplexity};
pub use tasks::{Task, TaskKind, TaskSpec};
