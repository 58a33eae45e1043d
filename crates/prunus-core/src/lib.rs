//! prunus-core: the vocabulary of pruning and the machinery every method shares.
//!
//! A method (a plugin crate) says how much each weight matters; this crate decides which
//! weights go. It holds the declaration of a method ([`declare`]), the method registry ([`registry`]), the patterns and comparison
//! groups ([`pattern`]), the mask builders ([`mask`]), the activation statistics a method may
//! ask for ([`stats`]), the layer-wise method kind ([`layerwise`]) and the block-sequential
//! calibration driver ([`pipeline`]). Structured (model-level) methods, which remove whole
//! layers, heads or channels, have their own kind ([`structured`]): the method scores units,
//! the core's greedy driver removes the lowest until a parameter budget is met. Training-time
//! methods ([`training`]) prune while the model trains: they hook into every step of
//! prunus-train's loop and score weights, the core's schedule and global mask decide which go. It knows no
//! model family, no dataset and no file system: models come in through
//! [`model::PrunableModel`] and [`structured::StructuredModel`], data as token tensors (or,
//! for structured methods, texts with a tokenizer).

pub mod declare;
pub mod error;
pub mod layerwise;
pub mod mask;
pub mod model;
pub mod pattern;
pub mod pipeline;
pub mod registry;
pub mod stats;
pub mod structured;
pub mod training;

pub use error::{Error, Result};
pub use mask::Mask;
pub use declare::{Built, Method, Notes};
pub use layerwise::{Decision, LayerView, LayerwiseMethod, Target};
pub use model::{LinearInfo, PrunableModel};
pub use pattern::{Group, Pattern, PatternKind, UnstructuredGroup};
pub use registry::MethodRegistration;
pub use stats::{StatKind, Stats};
pub use structured::{StructuredMethod, StructuredModel, UnitKind};
pub use training::{TrainableModel, TrainingMethod};

// Re-exported so plugins register without naming inventory themselves.
pub use inventory;
/// The workspace's seeded generator (SplitMix64), for plugins and tests.
pub use prunus_rng as rng;
