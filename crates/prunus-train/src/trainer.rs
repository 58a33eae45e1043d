//! The training loop: batches, accumulation, the method's hooks, clipping, AdamW, the core's
//! pruning schedule, evaluation, checkpoints and the per-step log.
//!
//! One step `t` (from 0), in this order (prunus-core's `training` module documents the hooks):
//! the step's batch is split into `accumulate` equal micro-batches whose gradients are summed
//! and divided by `accumulate` (the gradient of the batch's mean loss); the loss is checked
//! finite; the method's `after_backward`; the global gradient norm (clipped when asked); the
//! AdamW update at the schedule's rate; the method's `after_update`; the core's pruning
//! at a checkpoint boundary (every `checkpoint_every` steps and the last, whether or not
//! checkpoints are written), the method's `at_checkpoint`; the core's pruning
//! ([`PruneSchedule::action`]: the method's scores, one global mask, or the frozen mask
//! re-applied); the log record; an evaluation and a checkpoint when due (in that order, so
//! that a checkpoint holds the evaluations up to it).
//!
//! Determinism: the batch of step `t` is the caller's pure function of `t`, the rate a pure
//! function of `t`, and every buffer is updated sequentially, so the same inputs give the same
//! weights bit for bit; a run resumed from a checkpoint holds exactly the state the
//! uninterrupted run held after that step, and continues identically.

use std::path::{Path, PathBuf};
use std::time::Instant;

use prunus_core::training::{MaskStats, candidate_indices, candidate_zeros, MethodState, PruneAction, PruneSchedule, RunInfo, StepInfo, TrainableModel, TrainingMethod, apply_mask, global_mask};
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Blob, Checkpoint, CheckpointMeta};
use crate::clip::{clip_global_norm, global_norm};
use crate::error::{Result, TrainError};
use crate::optim::{AdamW, AdamWConfig};
use crate::schedule::Schedule;

/// How a run trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Token windows per step.
    pub batch: usize,
    /// Micro-batches each step's batch is split into (gradient accumulation); divides `batch`.
    pub accumulate: usize,
    /// Tokens per window.
    pub seq_len: usize,
    /// The learning-rate schedule (its `total` is `steps`).
    pub lr: Schedule,
    /// AdamW's hyperparameters.
    pub adamw: AdamWConfig,
    /// Clip the gradients to this global norm (`None`: never).
    pub clip: Option<f64>,
    /// The sparsity schedule (`None`: a dense fine-tune).
    pub prune: Option<PruneSchedule>,
    /// Evaluate every this many steps (0: only after the last).
    pub eval_every: u64,
    /// Checkpoint boundaries every this many steps, and at the last step (0: only there): a
    /// checkpoint is written at each when the run has a checkpoint directory, and the method's
    /// `at_checkpoint` runs at each either way.
    pub checkpoint_every: u64,
}

impl TrainConfig {
    /// One clear message for the first bad value.
    pub fn check(&self) -> Result<()> {
        let bad = |name, value: String, reason| Err(TrainError::Hyperparameter { name, value, reason });
        if self.steps == 0 {
            return bad("steps", "0".into(), "must be at least 1");
        }
        if self.batch == 0 {
            return bad("batch", "0".into(), "must be at least 1 window");
        }
        if self.accumulate == 0 || self.accumulate > self.batch || self.batch % self.accumulate != 0 {
            return bad("accumulate", self.accumulate.to_string(), "must divide the batch into equal micro-batches of at least one window (1 <= accumulate <= batch)");
        }
        if self.seq_len < 2 {
            return bad("seq-len", self.seq_len.to_string(), "must be at least 2 tokens");
        }
        if self.lr.total != self.steps {
            return bad("learning-rate schedule", self.lr.total.to_string(), "must span the run's steps");
        }
        Schedule::new(self.lr.peak, self.lr.warmup, self.lr.total, self.lr.decay, self.lr.final_multiplier)?;
        self.adamw.check()?;
        if let Some(c) = self.clip
            && !(c > 0.0 && c.is_finite())
        {
            return bad("clip", c.to_string(), "must be positive and finite");
        }
        if let Some(p) = &self.prune {
            p.check(self.steps)?;
        }
        Ok(())
    }
}

/// One step of the log (prunus-report's record, which the run report keeps).
pub type StepRecord = prunus_report::TrainStep;

/// One evaluation.
pub type EvalRecord = prunus_report::TrainEval;

/// Where the run is, for a progress display.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    /// Steps done.
    pub done: u64,
    /// Steps in all.
    pub total: u64,
    /// Training tokens per second over the steps this process ran.
    pub tokens_per_s: f64,
    /// Estimated seconds left.
    pub eta_s: f64,
}

/// What the loop needs from its caller.
pub struct Io<'a, M> {
    /// The token windows of step `t`, `batch * seq_len` ids row-major.
    pub batch: &'a dyn Fn(u64) -> prunus_core::Result<Vec<u32>>,
    /// The held-out metric of the model as it is (called with the current weights written).
    pub eval: Option<&'a mut dyn FnMut(&M) -> prunus_core::Result<f64>>,
    /// Called after every step and after every evaluation.
    pub on_step: &'a mut dyn FnMut(&StepRecord, &Progress),
    /// Where checkpoints go (and where a resumed run finds its last).
    pub checkpoints: Option<&'a Path>,
    /// Continue from the newest checkpoint in `checkpoints` (an error when there is none).
    pub resume: bool,
}

/// What a run did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    /// Every step's record (a resumed run's include the steps before the checkpoint).
    pub log: Vec<StepRecord>,
    /// Every evaluation.
    pub evals: Vec<EvalRecord>,
    /// Training seconds over all processes of the run (evaluation excluded).
    pub train_seconds: f64,
    /// Training tokens per second over those seconds.
    pub tokens_per_s: f64,
    /// The step this process resumed from, if it did.
    pub resumed_from: Option<u64>,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
}

struct State {
    weights: Vec<Vec<f32>>,
    adam: AdamW,
    frozen: Option<Vec<Vec<bool>>>,
    log: Vec<StepRecord>,
    evals: Vec<EvalRecord>,
    seconds: f64,
    start: u64,
}

/// Trains `model` (its parameters are written back after every step and hold the final
/// weights at the end) under `config`, with `method`'s hooks and the core's schedule.
/// `identity` describes the run (model, data, method); a checkpoint must match it and
/// `config` to be resumed. `n_examples` is the number of training examples (MGPP's `n`).
pub fn train<M: TrainableModel>(
    model: &mut M,
    mut method: Option<&mut dyn TrainingMethod>,
    config: &TrainConfig,
    identity: serde_json::Value,
    n_examples: u64,
    io: Io<'_, M>,
) -> Result<Outcome> {
    config.check()?;
    let identity = serde_json::json!({ "run": identity, "train": config, "method_state": method.is_some() });
    let params = model.params();
    let candidates = candidate_indices(&params);
    if config.prune.is_some() && candidates.is_empty() {
        return Err(prunus_core::Error::Invalid("the model has no prunable parameters".into()).into());
    }
    let run = RunInfo { params: &params, candidates: &candidates, total_steps: config.steps, n_examples, schedule: config.prune.as_ref() };
    if let Some(m) = method.as_deref_mut() {
        m.begin(&run)?;
    }
    let mut st = match (io.resume, io.checkpoints) {
        (true, None) => return Err(TrainError::Checkpoint { path: PathBuf::new(), reason: "resuming needs a checkpoint directory".into() }),
        (true, Some(dir)) => {
            let path = Checkpoint::latest(dir)?.ok_or_else(|| TrainError::Checkpoint { path: dir.into(), reason: "holds no checkpoint to resume from".into() })?;
            resume(&path, &identity, &params, &candidates, config, method.as_deref_mut())?
        }
        (false, dir) => {
            if let Some(dir) = dir
                && let Some(found) = Checkpoint::latest(dir)?
            {
                return Err(TrainError::Checkpoint { path: found, reason: "exists already: resume from it, or give another checkpoint directory".into() });
            }
            let weights = model.read_params()?;
            let adam = AdamW::new(config.adamw, &weights.iter().map(Vec::len).collect::<Vec<_>>())?;
            State { weights, adam, frozen: None, log: vec![], evals: vec![], seconds: 0.0, start: 0 }
        }
    };
    let resumed_from = (st.start > 0).then_some(st.start);
    let Io { batch, mut eval, on_step, checkpoints, .. } = io;
    let tokens_per_step = (config.batch * config.seq_len) as f64;
    let mut last_checkpoint = checkpoints.and_then(|d| Checkpoint::latest(d).ok().flatten());
    let mut this_run_seconds = 0.0;
    model.write_params(&st.weights)?;
    for t in st.start..config.steps {
        let started = Instant::now();
        let lr = config.lr.lr(t);
        let step = StepInfo { step: t, lr };
        let tokens = batch(t)?;
        if tokens.len() != config.batch * config.seq_len {
            return Err(prunus_core::Error::Invalid(format!("the batch of step {t} has {} tokens, not {} x {}", tokens.len(), config.batch, config.seq_len)).into());
        }
        let (loss, mut grads) = accumulate(model, &tokens, config)?;
        if !loss.is_finite() {
            return Err(TrainError::NonFinite { what: "loss", step: t, value: loss, checkpoint: last_checkpoint });
        }
        if let Some(m) = method.as_deref_mut() {
            m.after_backward(&step, &st.weights, &mut grads)?;
        }
        let mut grad_refs: Vec<&mut [f32]> = grads.iter_mut().map(Vec::as_mut_slice).collect();
        let grad_norm = match config.clip {
            Some(c) => clip_global_norm(&mut grad_refs, c)?,
            None => global_norm(&grad_refs),
        };
        if !grad_norm.is_finite() {
            return Err(TrainError::NonFinite { what: "gradient norm", step: t, value: grad_norm, checkpoint: last_checkpoint });
        }
        {
            let mut w: Vec<&mut [f32]> = st.weights.iter_mut().map(Vec::as_mut_slice).collect();
            let g: Vec<&[f32]> = grads.iter().map(Vec::as_slice).collect();
            st.adam.step(&mut w, &g, lr)?;
        }
        if let Some(m) = method.as_deref_mut() {
            m.after_update(&step, &mut st.weights, &grads)?;
        }
        drop(grads);
        let done = t + 1;
        let last = done == config.steps;
        let boundary = last || (config.checkpoint_every > 0 && done % config.checkpoint_every == 0);
        if boundary && let Some(m) = method.as_deref_mut() {
            m.at_checkpoint(&step, &st.weights)?;
        }
        let mut notes = method.as_deref().map(|m| m.log()).unwrap_or_default();
        if let Some(schedule) = &config.prune {
            if let Some(stats) = prune_step(schedule, t, &step, &params, &candidates, method.as_deref(), &mut st)? {
                notes.insert("mask_threshold".into(), serde_json::json!(stats.threshold));
            }
        }
        model.write_params(&st.weights)?;
        let seconds = started.elapsed().as_secs_f64();
        st.seconds += seconds;
        this_run_seconds += seconds;
        let record = StepRecord {
            step: t,
            loss,
            lr,
            grad_norm,
            scheduled_sparsity: config.prune.map_or(0.0, |p| p.sparsity(t)),
            sparsity: zeros_share(&st.weights, &candidates),
            seconds,
            notes,
        };
        st.log.push(record.clone());
        let per_step = this_run_seconds / (done - st.start) as f64;
        let progress = Progress { done, total: config.steps, tokens_per_s: tokens_per_step / per_step, eta_s: per_step * (config.steps - done) as f64 };
        on_step(&record, &progress);
        // Evaluation before the checkpoint, so that a resumed run's record has it.
        if let Some(eval) = eval.as_deref_mut()
            && (last || (config.eval_every > 0 && done % config.eval_every == 0))
        {
            let started = Instant::now();
            let value = eval(model)?;
            st.evals.push(EvalRecord { steps_done: done, value, seconds: started.elapsed().as_secs_f64() });
        }
        if let Some(dir) = checkpoints
            && boundary
        {
            let ckpt = snapshot(&st, &identity, &params, &candidates, done, method.as_deref().map(|m| m.state()).unwrap_or_default());
            last_checkpoint = Some(ckpt.write(dir)?);
        }
    }
    let total_tokens = tokens_per_step * st.log.len() as f64;
    Ok(Outcome {
        tokens_per_s: if st.seconds > 0.0 { total_tokens / st.seconds } else { 0.0 },
        log: st.log,
        evals: st.evals,
        train_seconds: st.seconds,
        resumed_from,
        checkpoint: last_checkpoint,
    })
}

/// The step's loss and gradients over `accumulate` micro-batches.
fn accumulate<M: TrainableModel>(model: &M, tokens: &[u32], config: &TrainConfig) -> Result<(f64, Vec<Vec<f32>>)> {
    let per = config.batch / config.accumulate;
    let chunk = per * config.seq_len;
    let mut loss = 0.0;
    let mut grads = Vec::new();
    for micro in tokens.chunks(chunk) {
        loss += model.add_loss_and_grads(micro, per, config.seq_len, &mut grads)?;
    }
    if config.accumulate > 1 {
        use rayon::prelude::*;
        let k = config.accumulate as f32;
        grads.iter_mut().for_each(|g| g.par_chunks_mut(1 << 16).for_each(|c| c.iter_mut().for_each(|x| *x /= k)));
        loss /= config.accumulate as f64;
    }
    Ok((loss, grads))
}

/// The core's pruning after step `t`; the mask's statistics when it pruned by scores.
fn prune_step(
    schedule: &PruneSchedule,
    t: u64,
    step: &StepInfo,
    params: &[prunus_core::training::ParamInfo],
    candidates: &[usize],
    method: Option<&(dyn TrainingMethod + '_)>,
    st: &mut State,
) -> Result<Option<MaskStats>> {
    let (s, freeze) = match schedule.action(t) {
        PruneAction::None => return Ok(None),
        PruneAction::ApplyFrozen => {
            let frozen = st.frozen.as_ref().ok_or_else(|| prunus_core::Error::Invalid(format!("step {t}: no frozen mask to re-apply")))?;
            for (&i, keep) in candidates.iter().zip(frozen) {
                apply_mask(&mut st.weights[i], keep);
            }
            return Ok(None);
        }
        PruneAction::Prune(s) => (s, false),
        PruneAction::PruneAndFreeze(s) => (s, true),
    };
    let scores = candidates
        .iter()
        .map(|&i| match method {
            Some(m) => m.scores(step, &st.weights, i),
            None => Ok(st.weights[i].iter().map(|w| w.abs()).collect()),
        })
        .collect::<prunus_core::Result<Vec<_>>>()?;
    for (&i, sc) in candidates.iter().zip(&scores) {
        if sc.len() != st.weights[i].len() {
            return Err(prunus_core::Error::Shape { tensor: format!("the scores of {}", params[i].name), expected: params[i].shape.clone(), got: vec![sc.len()] }.into());
        }
    }
    let names: Vec<&str> = candidates.iter().map(|&i| params[i].name.as_str()).collect();
    let (masks, stats) = global_mask(&names, &scores, s)?;
    drop(scores);
    for (&i, keep) in candidates.iter().zip(&masks) {
        apply_mask(&mut st.weights[i], keep);
    }
    if freeze {
        st.frozen = Some(masks);
    }
    Ok(Some(stats))
}

fn zeros_share(weights: &[Vec<f32>], candidates: &[usize]) -> f64 {
    let (zeros, total) = candidate_zeros(weights, candidates);
    if total == 0 { 0.0 } else { zeros as f64 / total as f64 }
}

fn snapshot(st: &State, identity: &serde_json::Value, params: &[prunus_core::training::ParamInfo], candidates: &[usize], done: u64, method: MethodState) -> Checkpoint {
    let (optimizer_steps, m, v) = st.adam.state();
    let mut blobs = Vec::new();
    for (i, p) in params.iter().enumerate() {
        blobs.push((format!("w/{}", p.name), Blob::F32(st.weights[i].clone())));
        blobs.push((format!("m/{}", p.name), Blob::F32(m[i].clone())));
        blobs.push((format!("v/{}", p.name), Blob::F32(v[i].clone())));
    }
    if let Some(frozen) = &st.frozen {
        for (&i, keep) in candidates.iter().zip(frozen) {
            blobs.push((format!("mask/{}", params[i].name), Blob::Bits(keep.clone())));
        }
    }
    let names: Vec<String> = method.buffers.iter().map(|(n, _)| n.clone()).collect();
    for (name, buf) in method.buffers {
        blobs.push((format!("method/{name}"), Blob::F32(buf)));
    }
    let scalars = serde_json::json!({ "scalars": method.scalars, "buffers": names });
    Checkpoint {
        meta: CheckpointMeta {
            identity: identity.clone(),
            steps_done: done,
            optimizer_steps,
            method_scalars: scalars,
            log: st.log.clone(),
            evals: st.evals.clone(),
            seconds: st.seconds,
        },
        blobs,
    }
}

fn resume<'m>(
    path: &Path,
    identity: &serde_json::Value,
    params: &[prunus_core::training::ParamInfo],
    candidates: &[usize],
    config: &TrainConfig,
    method: Option<&mut (dyn TrainingMethod + 'm)>,
) -> Result<State> {
    let mut ck = Checkpoint::read(path)?;
    ck.check_identity(path, identity)?;
    let (mut weights, mut m, mut v) = (vec![], vec![], vec![]);
    for p in params {
        weights.push(ck.take_f32(path, &format!("w/{}", p.name), p.numel())?);
        m.push(ck.take_f32(path, &format!("m/{}", p.name), p.numel())?);
        v.push(ck.take_f32(path, &format!("v/{}", p.name), p.numel())?);
    }
    let done = ck.meta.steps_done;
    let frozen = match config.prune {
        Some(p) if done > p.end => Some(
            candidates
                .iter()
                .map(|&i| match ck.take(path, &format!("mask/{}", params[i].name))? {
                    Blob::Bits(b) if b.len() == params[i].numel() => Ok(b),
                    _ => Err(TrainError::Checkpoint { path: path.into(), reason: format!("the mask of {} has the wrong kind or length", params[i].name) }),
                })
                .collect::<Result<Vec<_>>>()?,
        ),
        _ => None,
    };
    if let Some(method) = method {
        method.restore(ck.take_method_state(path)?)?;
    }
    let adam = AdamW::from_state(config.adamw, ck.meta.optimizer_steps, m, v)?;
    Ok(State { weights, adam, frozen, log: ck.meta.log, evals: ck.meta.evals, seconds: ck.meta.seconds, start: done })
}
