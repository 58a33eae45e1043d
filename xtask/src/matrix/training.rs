//! The `[training]` section of a matrix: how its training cells train.

use serde::Deserialize;

use crate::record::TrainSpec;

fn yes() -> bool {
    true
}
fn default_seq_len() -> usize {
    512
}

/// The `[training]` section: the flags of `prunus finetune` every training cell shares, so
/// that its methods train under identical schedules and budgets. Defaults are the CLI's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Optimizer steps.
    #[serde(default = "default_steps")]
    pub steps: u64,
    /// Windows per step.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Micro-batches per step (default: `batch`, one window each).
    #[serde(default)]
    pub accumulate: Option<usize>,
    /// Tokens per training window.
    #[serde(default = "default_seq_len")]
    pub window: usize,
    /// Peak learning rate.
    #[serde(default = "default_lr")]
    pub lr: f64,
    /// Warm-up steps.
    #[serde(default)]
    pub warmup: u64,
    /// `linear`, `cosine` or `constant`.
    #[serde(default = "default_decay")]
    pub decay: String,
    /// The last step's learning rate as a multiple of `lr`.
    #[serde(default = "default_final_lr")]
    pub final_lr: f64,
    /// Gradient clipping norm (none by default).
    #[serde(default)]
    pub clip: Option<f64>,
    /// Sparsity of the jump at the pruning start (each cell takes the smaller of this and its
    /// final sparsity).
    #[serde(default = "default_initial_sparsity")]
    pub initial_sparsity: f64,
    /// Step of the first pruning (default: a tenth of `steps`).
    #[serde(default)]
    pub prune_start: Option<u64>,
    /// Step the mask freezes (default: three quarters of `steps`).
    #[serde(default)]
    pub prune_end: Option<u64>,
    /// Steps between prunings (default: a tenth of the span, at least 1).
    #[serde(default)]
    pub prune_every: Option<u64>,
    /// Held-out perplexity every this many steps (0: only at the end).
    #[serde(default)]
    pub eval_every: u64,
    /// Windows of that held-out perplexity.
    #[serde(default = "default_eval_windows")]
    pub eval_windows: usize,
    /// Whether the dense fine-tune (same data and optimizer, nothing pruned) runs, as the
    /// cell labelled `dense-finetune`.
    #[serde(default = "yes")]
    pub dense: bool,
}

impl Training {
    /// The cell's spec at final sparsity `s` (0 for the dense fine-tune).
    pub(super) fn spec(&self, s: f64) -> TrainSpec {
        let start = self.prune_start.unwrap_or(self.steps / 10);
        let end = self.prune_end.unwrap_or(self.steps * 3 / 4);
        TrainSpec {
            steps: self.steps,
            batch: self.batch,
            accumulate: self.accumulate.unwrap_or(self.batch),
            window: self.window,
            lr: self.lr,
            warmup: self.warmup,
            decay: self.decay.clone(),
            final_lr: self.final_lr,
            clip: self.clip,
            initial_sparsity: self.initial_sparsity.min(s),
            prune_start: start,
            prune_end: end,
            prune_every: self.prune_every.unwrap_or((end.saturating_sub(start) / 10).max(1)),
            eval_every: self.eval_every,
            eval_windows: self.eval_windows,
        }
    }
}

fn default_steps() -> u64 {
    100
}
fn default_batch() -> usize {
    8
}
fn default_lr() -> f64 {
    5e-5
}
fn default_decay() -> String {
    "linear".into()
}
fn default_final_lr() -> f64 {
    0.1
}
fn default_initial_sparsity() -> f64 {
    0.3
}
fn default_eval_windows() -> usize {
    4
}
