//! The Llama decoder: a causal LM held as f32 candle tensors, one file per job.
//!
//! - `model`: the [`LlamaModel`] struct and its accessors;
//! - `block`: a decoder block's storage, its tensors in the order of the one table of
//!   block tensors ([`BLOCK_TENSORS`](crate::layout::BLOCK_TENSORS));
//! - `weights`: building a model from named tensors or a seed, naming, replacing and counting
//!   its tensors ([`ParamCounts`], [`LinearSparsity`]);
//! - `forward`: token checks, embedding, the pass context (RoPE tables, masks), one block
//!   with its capture sites, final norm and output head;
//! - `nll`: next-token NLL per position and per window;
//! - `tree`: token trees, many continuations of a context in one pass;
//! - `prunable`: the [`prunus_core::PrunableModel`] implementation.
//!
//! Loading and saving live beside this module ([`gguf`](crate::gguf), [`hf`](crate::hf)), as
//! do the training-mode path ([`grad`](crate::grad)) and the structural edits
//! ([`edit`](crate::edit)).

mod block;
mod forward;
mod model;
mod nll;
mod prunable;
mod tree;
mod weights;

pub(crate) use block::Block;
pub(crate) use weights::synthetic_values;
pub use model::LlamaModel;
pub use weights::{LinearSparsity, ParamCounts};

/// The prunable linears of a block, in forward order, with their capture sites (derived
/// from the block tensor table; see [`layout::LINEARS`](crate::layout::LINEARS)).
pub use crate::layout::LINEARS;
