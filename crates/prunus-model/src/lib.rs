//! prunus-model: model families, their file formats, and the forward pass the pruning
//! pipeline drives.
//!
//! One family is implemented: the Llama architecture (Llama, SmolLM2, and checkpoints with
//! the same layout), as [`LlamaModel`]. A model is a set of f32 candle tensors named and
//! laid out as in Hugging Face transformers: linear weights are (d_out, d_in), and the
//! query/key rows use the `rotate_half` RoPE layout. It comes from
//!
//! - a GGUF file ([`LlamaModel::from_gguf`]): every tensor is dequantized to f32 and the
//!   query/key rows that llama.cpp permutes for interleaved RoPE are put back
//!   ([`layout::unpermute_qk_from_gguf`]);
//! - a Hugging Face directory ([`LlamaModel::from_hf_dir`]): `config.json` plus one or several
//!   memory-mapped safetensors files, f32/f16/bf16;
//! - a seeded generator ([`LlamaModel::synthetic`]) for tests.
//!
//! A model larger than memory is pruned through [`StreamingLlama`] ([`stream`]), which holds
//! one decoder block at a time and writes each as it is done.
//!
//! It goes back out as a Hugging Face directory ([`LlamaModel::save_hf_dir`]) that
//! transformers loads as it is (width-pruned models, whose layers differ, carry their
//! per-layer widths in an extra `config.json` key, see [`LayerWidths`]). The forward pass
//! is batched over windows, tokens (n_samples, seq_len) -> logits (n_samples, seq_len,
//! vocab), and [`LlamaModel::nll`] scores perplexity windows without materialising all
//! logits at once (on the CPU, attention runs as one fused kernel that never computes the
//! masked half, `attention.rs`). The pruning pipeline sees the model through
//! [`prunus_core::PrunableModel`]: blocks run one at a time, and each linear's input is
//! handed to a capture callback at its site (`attn_in`, `attn_out`, `mlp_in`, `mlp_act`).
//!
//! A block's nine tensors are spelled once, in [`layout::BLOCK_TENSORS`]: Hugging Face
//! name, GGUF name, capture site (for the seven prunable linears, [`LINEARS`]) and shape
//! rule. Loading, saving, the forward's storage, the tensor list a config implies and the
//! structured units all derive from that table.
//!
//! Model-level methods get two more tools. [`grad`] runs the forward on candle autograd
//! and returns the mean next-token cross-entropy of a batch with every parameter's gradient
//! ([`LlamaModel::loss_and_grads`]). [`edit`] makes the model physically smaller: whole
//! decoder layers, attention heads (whole key/value groups, or query heads evenly across
//! groups), MLP channels; [`ParamReduction`] counts what went, with and without the
//! embeddings.
//!
//! Errors are [`ModelError`] values naming the file, tensor, field or value at fault; they
//! convert into [`prunus_core::Error`]. Nothing here prints; progress goes to `tracing`.


mod attention;
pub mod backprop;
pub mod config;
pub mod edit;
pub mod error;
pub mod gguf;
pub mod grad;
pub mod hf;
mod kernels;
pub mod layout;
pub mod llama;
pub mod runtime;
pub mod stream;
mod train;
pub mod units;

pub use config::{LayerWidths, LlamaConfig, TokenIds};
pub use edit::ParamReduction;
pub use error::{ModelError, Result};
pub use gguf::{GgufSummary, GgufTensor, inspect_gguf};
pub use grad::{Grads, Precision};
pub use hf::{OutputDir, SaveOptions, TEMP_PREFIX, remove_stale_temps};
pub use stream::{StreamingLlama, write_synthetic};
pub use llama::{LINEARS, LinearSparsity, LlamaModel, ParamCounts};

