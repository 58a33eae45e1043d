//! prunus-core: the vocabulary of pruning and the machinery every method shares.
//!
//! A method (a plugin crate) says how much each weight matters; this crate decides which
//! weights go. It holds the method registry ([`registry`]), the patterns and comparison
//! groups ([`pattern`]), the mask builders ([`mask`]), the activation statistics a method may
//! ask for ([`stats`]), the layer-wise method trait ([`method`]) and the block-sequential
//! calibration driver ([`pipeline`]). It knows no model family, no dataset and no file system:
//! models come in through [`model::PrunableModel`], data as token tensors.

pub mod error;
pub mod mask;
pub mod method;
pub mod model;
pub mod pattern;
pub mod pipeline;
pub mod registry;
pub mod rng;
pub mod stats;

pub use error::{Error, Result};
pub use mask::Mask;
pub use method::{Decided, Decision, LayerView, LayerwiseMethod, Notes};
pub use model::{LinearInfo, PrunableModel};
pub use pattern::{Group, Pattern, PatternKind};
pub use registry::MethodRegistration;
pub use stats::{StatKind, Stats};

// Re-exported so plugins register without naming inventory themselves.
pub use inventory;
