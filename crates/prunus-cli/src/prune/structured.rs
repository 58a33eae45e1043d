//! A structured method's step of `prunus prune`: calibration texts, the core's greedy removal
//! of whole units, and the dense and pruned models timed side by side.
//!
//! Calibration for structured methods is text: windows of the wiki-vital calibration pool a
//! little longer than `--calib-seq-len` are decoded, and the method (re-)tokenizes them (or
//! its perturbed copies) and keeps the first `--calib-seq-len` tokens.

use std::time::Instant;

use anyhow::{Result, bail};
use prunus_core::structured::{Calibration, Event, StructuredOptions, prune_structured};
use prunus_core::{Built, StructuredMethod};
use prunus_data::corpus::calibration_windows;
use prunus_eval::report::{ParamAccounting, Seconds, SparsityInfo, SpeedInfo, StructureInfo};
use prunus_model::LlamaModel;

use super::Pruned;
use crate::plan::CalibrationPlan;
use crate::report::calibration_info;
use crate::session::{CorpusTokens, Session, bar, window_batch};

/// Calibration windows are decoded from this many tokens per `seq_len` tokens kept, so that
/// a perturbed or re-tokenized text still has `seq_len` tokens.
fn window_tokens(seq_len: usize) -> usize {
    seq_len + seq_len / 2 + 8
}

/// Timing runs per model; the best counts.
const SPEED_REPEATS: usize = 2;

/// The dense-vs-pruned timing: the first `windows` windows of `seq_len` evaluation tokens
/// (0: no timing), in batches of `batch_size`.
pub(super) struct Speed {
    pub windows: usize,
    pub seq_len: usize,
    pub batch_size: usize,
}

/// Removes units of `session`'s model with `method` until `options`' target is met,
/// calibrating on decoded windows of the calibration pool when the method uses data, then
/// times the dense and the pruned model.
pub(super) fn prune(
    session: &mut Session,
    method: &Built<dyn StructuredMethod>,
    options: &StructuredOptions,
    calibration: Option<CalibrationPlan>,
    tokens: &CorpusTokens,
    speed: Speed,
    seconds: &mut Seconds,
) -> Result<Pruned> {
    let tokenizer = &session.tokenizer;
    let tokenize = |text: &str| -> prunus_core::Result<Vec<u32>> {
        prunus_data::tokenizer::encode_whole(tokenizer, text).map_err(|e| prunus_core::Error::Invalid(format!("tokenizing calibration text: {e}")))
    };
    let (calibration, calibration_info) = match calibration {
        Some(c) => {
            let width = window_tokens(c.seq_len);
            let windows = calibration_windows(&tokens.calib, c.samples, width, c.seed)?;
            let texts = windows.windows().map(|w| prunus_data::tokenizer::decode(tokenizer, w)).collect::<Result<Vec<String>, _>>()?;
            let sampler = format!(
                "CPython random.seed(seed); start = randint(0, len - {width} - 1) per window of {width} tokens, decoded to text; \
                 the method tokenizes each text (or its perturbed copy) and keeps the first {} tokens",
                c.seq_len
            );
            let info = calibration_info(&windows, c.seq_len, sampler);
            (Some(Calibration::new(texts, c.seq_len, &tokenize)?), Some(info))
        }
        None => (None, None),
    };
    // The dense model is timed after pruning, alternating with the pruned one, so that both
    // see the same machine load; the copy shares every tensor that pruning leaves as it is.
    let dense = (speed.windows > 0).then(|| session.model.clone());

    let unit = options.unit;
    let pb = bar(1, &format!("pruning ({}, {unit})", method.name));
    let t = Instant::now();
    let outcome = prune_structured(&mut session.model, method, calibration.as_ref(), options, &mut |e| match e {
        Event::Iteration { index, expected, reduction } => {
            pb.set_length(expected.max(index + 1) as u64);
            pb.set_position(index as u64);
            tracing::info!(iteration = index, reduction, "scoring");
        }
    })?;
    pb.finish_and_clear();
    seconds.prune_total = t.elapsed().as_secs_f64();
    seconds.score_and_mask = outcome.seconds();
    let speed = match dense {
        Some(dense) => Some(side_by_side(&dense, &session.model, &tokens.eval, &speed)?),
        None => None,
    };

    let (before, after) = (outcome.before, outcome.after);
    Ok(Pruned {
        asked: unit.to_string(),
        summary: format!(
            "removed {} units in {} iterations, {:.4} of the parameters outside the embeddings ({:.4} of all)",
            outcome.removed_units().count(),
            outcome.iterations.len(),
            outcome.removed_fraction(),
            outcome.removed_fraction_including_embeddings(),
        ),
        tail: format!(
            "{}; pruning {:.1} s",
            speed.map(|s| format!(", {:.2}x dense speed", s.speedup)).unwrap_or_default(),
            seconds.prune_total
        ),
        sparsity: SparsityInfo {
            pattern: unit.to_string(),
            requested: options.target,
            realised: (options.budget.count(&before) - options.budget.count(&after)) as f64 / options.budget.count(&before).max(1) as f64,
            pruned: options.budget.count(&before) - options.budget.count(&after),
            numel: options.budget.count(&before),
            group: format!("structured: whole {unit} units, share {}", options.budget.describe()),
            per_layer: Vec::new(),
            per_block: Vec::new(),
        },
        structure: Some(StructureInfo {
            unit: unit.to_string(),
            requested: options.target,
            budget: options.budget,
            protect_first: options.protect_first,
            protect_last: options.protect_last,
            schedule: outcome.schedule.to_string(),
            params: ParamAccounting {
                before,
                after,
                removed_fraction: outcome.removed_fraction(),
                removed_fraction_including_embeddings: outcome.removed_fraction_including_embeddings(),
            },
            score_seconds: outcome.iterations.iter().map(|i| i.score_seconds).sum(),
            remove_seconds: outcome.iterations.iter().map(|i| i.remove_seconds).sum(),
            iterations: outcome.iterations,
            speed,
        }),
        calibration: calibration_info,
    })
}

/// Evaluation tokens per second (forward and next-token NLL) of `dense` and `pruned` on the
/// first windows of the evaluation tokens (see [`Speed`]): the two are timed alternately,
/// [`SPEED_REPEATS`] times each, and the best time of each counts.
fn side_by_side(dense: &LlamaModel, pruned: &LlamaModel, tokens: &[u32], speed: &Speed) -> Result<SpeedInfo> {
    let (seq_len, batch_size) = (speed.seq_len, speed.batch_size);
    let windows = speed.windows.min(tokens.len() / seq_len);
    if windows == 0 {
        bail!("--speed-windows: the evaluation split has no window of {seq_len} tokens");
    }
    let pb = bar((2 * windows * SPEED_REPEATS) as u64, "timing dense vs pruned");
    let mut best = [f64::INFINITY; 2];
    for _ in 0..SPEED_REPEATS {
        for (model, best) in [dense, pruned].into_iter().zip(&mut best) {
            let t = Instant::now();
            for w0 in (0..windows).step_by(batch_size) {
                let b = batch_size.min(windows - w0);
                let batch = window_batch(tokens, w0, b, seq_len)?;
                model.nll(&batch)?;
                pb.inc(b as u64);
            }
            *best = best.min(t.elapsed().as_secs_f64());
        }
    }
    pb.finish_and_clear();
    let n = (windows * seq_len) as f64;
    let (dense_tps, pruned_tps) = (n / best[0], n / best[1]);
    Ok(SpeedInfo {
        windows,
        seq_len,
        batch_size,
        repeats: SPEED_REPEATS,
        dense_tokens_per_second: dense_tps,
        pruned_tokens_per_second: pruned_tps,
        speedup: pruned_tps / dense_tps,
    })
}
