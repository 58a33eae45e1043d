//! Systematic Weight Evaluation (Islam, Belhaouari & Bermak, arXiv 2502.17071): a weight's
//! importance is how large it stayed over the end of training, a weighted average of its
//! magnitude over the last `k` checkpoints with later checkpoints weighted more; each tensor
//! is pruned below `std(|W|) x rate`.
//!
//! The paper's code is not public. What this follows (docs/methods.md section 7):
//!
//! - importance, as the reviews give the formula: with checkpoints numbered `e = 1, 2, ...`
//!   and `n` the last, `Imp = sum_{e=n-k+1..n} c_e |W_e| / sum c_e` with `c_e = e`
//!   (`weighting: "linear"`); the authors' earlier CNN code weights the window's positions
//!   `i = 1..k` by `sqrt(i)` (`weighting: "sqrt"`);
//! - the threshold: per tensor `std(|W|) x rate`, with `W` the current weights, and a weight
//!   pruned when its importance falls below it (`compare: "averaged"`). The earlier code
//!   compares the current `|W|` with the standard deviation of the averaged (signed) weights
//!   instead (`compare: "current"`);
//! - one rate for the whole model, found for a target sparsity: a weight's score is its
//!   importance divided by its tensor's standard deviation, and the core's global mask prunes
//!   the lowest scores, so the rate is the threshold score (what bisecting the rate converges
//!   to), reported as `mask_threshold`; tensors end at different sparsities.
//!
//! The history is a ring of the last `keep` checkpoints of every candidate tensor, recorded at
//! the run's checkpoint boundaries (whether or not checkpoints are written): `keep` times the
//! candidates' size in f32 (a running sum could not drop the oldest checkpoint of a sliding
//! window, and the ring lets `k` and the weighting be chosen after training). It travels in
//! the method's state, so a resumed run, or a later `prunus sweep` over the run, has it; the
//! average over the newest `k <= keep` is computed when the schedule prunes.

use std::collections::VecDeque;

use prunus_core::training::{MethodState, RunInfo, StepInfo, TrainingMethod};
use prunus_core::{Error, Method, Notes, Result, declare::bad_config};
use serde::{Deserialize, Serialize};

/// How the checkpoints of the window are weighted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weighting {
    /// By the checkpoint's number `e` (the reviews' formula).
    #[default]
    Linear,
    /// By the square root of its position in the window, `sqrt(1..k)` (the earlier CNN code).
    Sqrt,
}

/// What is compared with the threshold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compare {
    /// The averaged magnitude, against `std(|W|)` of the current weights (the paper's formula).
    #[default]
    Averaged,
    /// The current `|W|`, against the standard deviation of the averaged signed weights (the
    /// earlier CNN code).
    Current,
}

/// The method's options.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Checkpoints kept in the ring (the history's memory is `keep` times the candidates).
    #[serde(default = "default_keep")]
    pub keep: usize,
    /// Checkpoints averaged, the newest `k` of those kept (default: every one kept, at most `keep`).
    #[serde(default)]
    pub k: Option<usize>,
    /// The weights of the window's checkpoints.
    #[serde(default)]
    pub weighting: Weighting,
    /// What is compared with the per-tensor threshold.
    #[serde(default)]
    pub compare: Compare,
}

fn default_keep() -> usize {
    10
}

impl Default for Config {
    fn default() -> Self {
        Config { keep: default_keep(), k: None, weighting: Weighting::Linear, compare: Compare::Averaged }
    }
}

/// The method: the ring of recorded checkpoints and how to average them.
#[derive(Debug, Clone)]
pub struct Swe {
    config: Config,
    /// Candidate parameter indices (into the weight buffers), in order.
    candidates: Vec<usize>,
    /// The newest `keep` checkpoints, oldest first: (its number from 1, per candidate its
    /// weights then).
    ring: VecDeque<(u64, Vec<Vec<f32>>)>,
    /// Checkpoints recorded so far.
    recorded: u64,
}

impl Method for Swe {
    const NAME: &'static str = "swe";
    const VERSION: &'static str = "1";
    const SUMMARY: &'static str = "Systematic Weight Evaluation (training-time): weighted average of |W| over the last k checkpoints, per-tensor std(|W|) x rate threshold";
    type Config = Config;

    fn new(config: Config) -> Result<Self> {
        if config.keep == 0 {
            return Err(bad_config(Self::NAME, "keep must be at least 1 checkpoint"));
        }
        if let Some(k) = config.k
            && (k == 0 || k > config.keep)
        {
            return Err(bad_config(Self::NAME, &format!("k = {k} must be between 1 and keep = {} (the checkpoints kept)", config.keep)));
        }
        Ok(Swe { config, candidates: vec![], ring: VecDeque::new(), recorded: 0 })
    }
}

impl Swe {
    /// Checkpoints in the average: `k`, or every one kept.
    fn k(&self) -> usize {
        self.config.k.unwrap_or(self.ring.len())
    }

    /// The numbers (from 1) of the checkpoints the average takes, oldest first (empty when
    /// fewer than `k` are kept).
    pub fn checkpoint_numbers(&self) -> Vec<u64> {
        self.window().map(|w| w.iter().map(|&(r, _)| self.ring[r].0).collect()).unwrap_or_default()
    }

    /// The window: (ring entry, weight) of the newest `k` checkpoints, oldest first; an error
    /// when fewer are kept.
    fn window(&self) -> Result<Vec<(usize, f64)>> {
        let k = self.k();
        if self.recorded == 0 {
            return Err(Error::Invalid("swe: the run has no weight history (no checkpoint was recorded; give --checkpoint-every)".into()));
        }
        if k > self.ring.len() {
            return Err(Error::Invalid(format!("swe: k = {k} is larger than the {} checkpoints kept", self.ring.len())));
        }
        let first = self.ring.len() - k;
        Ok((first..self.ring.len())
            .enumerate()
            .map(|(pos, r)| {
                let c = match self.config.weighting {
                    Weighting::Linear => self.ring[r].0 as f64,
                    Weighting::Sqrt => ((pos + 1) as f64).sqrt(),
                };
                (r, c)
            })
            .collect())
    }

    /// The weighted average over the window of `f(w)` for candidate `j`.
    fn average(&self, j: usize, f: impl Fn(f32) -> f64) -> Result<Vec<f64>> {
        let window = self.window()?;
        let total: f64 = window.iter().map(|(_, c)| c).sum();
        let mut acc = vec![0.0f64; self.ring[window[0].0].1[j].len()];
        for &(r, c) in &window {
            for (a, &w) in acc.iter_mut().zip(&self.ring[r].1[j]) {
                *a += c * f(w);
            }
        }
        acc.iter_mut().for_each(|a| *a /= total);
        Ok(acc)
    }

    /// The importance of candidate `j` (its index among the candidates) and the standard
    /// deviation its threshold is a multiple of, from the current `weights` of that tensor.
    pub fn importance(&self, j: usize, weights: &[f32]) -> Result<(Vec<f64>, f64)> {
        match self.config.compare {
            Compare::Averaged => {
                let imp = self.average(j, |w| w.abs() as f64)?;
                Ok((imp, std(weights.iter().map(|w| w.abs() as f64))))
            }
            Compare::Current => {
                let avg = self.average(j, |w| w as f64)?;
                Ok((weights.iter().map(|w| w.abs() as f64).collect(), std(avg.into_iter())))
            }
        }
    }
}

/// The population standard deviation (numpy's default), two-pass in f64.
pub fn std(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let (n, sum) = values.clone().fold((0usize, 0.0), |(n, s), v| (n + 1, s + v));
    if n == 0 {
        return 0.0;
    }
    let mean = sum / n as f64;
    (values.map(|v| (v - mean) * (v - mean)).sum::<f64>() / n as f64).sqrt()
}

impl TrainingMethod for Swe {
    fn begin(&mut self, run: &RunInfo<'_>) -> Result<()> {
        self.candidates = run.candidates.to_vec();
        self.ring.clear();
        self.recorded = 0;
        Ok(())
    }

    fn at_checkpoint(&mut self, _step: &StepInfo, weights: &[Vec<f32>]) -> Result<()> {
        self.recorded += 1;
        if self.ring.len() == self.config.keep {
            self.ring.pop_front();
        }
        self.ring.push_back((self.recorded, self.candidates.iter().map(|&i| weights[i].clone()).collect()));
        Ok(())
    }

    fn scores(&self, _step: &StepInfo, weights: &[Vec<f32>], param: usize) -> Result<Vec<f32>> {
        let j = self.candidates.iter().position(|&i| i == param).ok_or_else(|| Error::Invalid(format!("swe: parameter {param} is not a candidate")))?;
        let (imp, sd) = self.importance(j, &weights[param])?;
        let sd = sd.max(f64::MIN_POSITIVE);
        Ok(imp.into_iter().map(|v| (v / sd) as f32).collect())
    }

    fn log(&self) -> Notes {
        let mut n = Notes::default();
        n.insert("history_checkpoints".into(), serde_json::json!(self.ring.len()));
        n
    }

    fn state(&self) -> MethodState {
        MethodState {
            scalars: serde_json::json!({
                "recorded": self.recorded,
                "numbers": self.ring.iter().map(|(e, _)| *e).collect::<Vec<_>>(),
                "candidates": self.candidates.len(),
            }),
            buffers: self.ring.iter().flat_map(|(e, bufs)| bufs.iter().enumerate().map(move |(j, b)| (format!("ckpt{e}/{j}"), b.clone()))).collect(),
        }
    }

    /// Restores a saved history; one kept in a larger ring keeps its newest `keep` checkpoints.
    fn restore(&mut self, state: MethodState) -> Result<()> {
        let bad = |m: String| Error::Invalid(format!("swe: the saved history does not fit this run: {m}"));
        let recorded = state.scalars.get("recorded").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no `recorded`".into()))?;
        let n_cand = state.scalars.get("candidates").and_then(serde_json::Value::as_u64).ok_or_else(|| bad("no `candidates`".into()))? as usize;
        let numbers: Vec<u64> = serde_json::from_value(state.scalars.get("numbers").cloned().unwrap_or_default()).map_err(|e| bad(e.to_string()))?;
        if n_cand != self.candidates.len() {
            return Err(bad(format!("{n_cand} candidate tensors saved, {} in the model", self.candidates.len())));
        }
        let mut buffers = state.buffers.into_iter();
        let mut ring = VecDeque::new();
        for &e in &numbers {
            let mut bufs = Vec::with_capacity(n_cand);
            for j in 0..n_cand {
                let (name, buf) = buffers.next().ok_or_else(|| bad(format!("checkpoint {e} has no buffer {j}")))?;
                if name != format!("ckpt{e}/{j}") {
                    return Err(bad(format!("buffer {name} out of order")));
                }
                bufs.push(buf);
            }
            ring.push_back((e, bufs));
            if ring.len() > self.config.keep {
                ring.pop_front();
            }
        }
        self.ring = ring;
        self.recorded = recorded;
        Ok(())
    }
}

prunus_core::register!(training Swe);
