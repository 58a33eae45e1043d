//! `prunus prune` with a structured method (`pip`, `taylor`, `struct-magnitude`,
//! `struct-random`): remove whole units until `--reduction` of the parameters outside the
//! embeddings is gone, then evaluate, time dense vs pruned, save and report.
//!
//! Calibration for structured methods is text: windows of the wiki-vital calibration pool a
//! little longer than `--calib-seq-len` are decoded, and the method (re-)tokenizes them (or
//! its perturbed copies) and keeps the first `--calib-seq-len` tokens.

use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{Device, Tensor};
use clap::Args;
use prunus_core::registry::MethodRegistration;
use prunus_core::structured::{self, Calibration, Event, StructuredOptions, UnitKind, prune_structured};
use prunus_eval::report::{CalibrationInfo, ParamAccounting, Seconds, SparsityInfo, SpeedInfo, StructureInfo};
use prunus_eval::tasks;
use prunus_model::LlamaModel;

use crate::PruneArgs;
use crate::commands::{DenseAgreement, base_report, check_eval_opts, check_outputs, evaluate_and_save, method_info};
use crate::outputs;
use crate::session::{self, bar};

/// The flags of structured methods (refused for layer-wise ones).
#[derive(Args, Clone, Default)]
#[command(next_help_heading = "Structured methods (kind `structured` in `prunus list`)")]
pub struct StructuredArgs {
    /// Share of the parameters outside the embeddings (token embedding, output head) to
    /// remove, in (0, 1); required. Units go, lowest score first, until the removed share is
    /// as close to R as whole units allow (within half a unit).
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub reduction: Option<f64>,
    /// What is removed: `layer` (a decoder layer), `head` (a key/value head with the query
    /// heads reading it), `query-head` (the same query head of every key/value group; needs
    /// grouped-query attention) or `channel` (an MLP channel) [default: layer]
    #[arg(long, value_name = "UNIT")]
    pub unit: Option<String>,
    /// Never remove units of the first N decoder layers [default: 1]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub protect_first: Option<usize>,
    /// Never remove units of the last N decoder layers [default: 1]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub protect_last: Option<usize>,
    /// Time the dense and the pruned model (forward and NLL, alternately, best of 2 each) on
    /// the first K perplexity windows at --seq-len; 0 disables it [default: 4, or 0 with
    /// `--eval none`]
    #[arg(long, allow_negative_numbers = true, value_name = "K")]
    pub speed_windows: Option<usize>,
}

/// Calibration windows are decoded from this many tokens per `seq_len` tokens kept, so that
/// a perturbed or re-tokenized text still has `seq_len` tokens.
fn window_tokens(seq_len: usize) -> usize {
    seq_len + seq_len / 2 + 8
}

const SPEED_REPEATS: usize = 2;

/// Refuses the structured flags for a layer-wise method.
pub fn check_layerwise(args: &PruneArgs) -> Result<()> {
    let s = &args.structure;
    if s.reduction.is_some() || s.unit.is_some() || s.protect_first.is_some() || s.protect_last.is_some() || s.speed_windows.is_some() {
        bail!(
            "--reduction, --unit, --protect-first, --protect-last and --speed-windows are for structured methods; `{}` is layer-wise: use --sparsity and --pattern",
            args.method
        );
    }
    Ok(())
}

/// `prunus prune` for a structured method.
pub fn prune(mut args: PruneArgs, registration: &'static MethodRegistration, config: &serde_json::Value) -> Result<()> {
    let started = Instant::now();
    // Everything that can be checked before loading is checked first.
    let method = registration.build_structured(config)?;
    let s = &args.structure;
    let Some(target) = s.reduction else {
        bail!("`{}` is a structured method: give --reduction R, the share of the parameters outside the embeddings to remove (e.g. 0.2)", registration.name);
    };
    structured::check_target(target)?;
    if args.sparsity.is_some() || args.pattern.is_some() {
        bail!("--sparsity and --pattern are for layer-wise methods; `{}` is structured: use --reduction (and --unit)", registration.name);
    }
    let unit: UnitKind = s.unit.as_deref().unwrap_or("layer").parse()?;
    let options = StructuredOptions { unit, target, protect_first: s.protect_first.unwrap_or(1), protect_last: s.protect_last.unwrap_or(1) };
    let specs = tasks::parse_list(&args.eval, args.opts.limit)?;
    // `--eval none` asks for no evaluation: no timing either, unless asked for.
    let speed_windows = s.speed_windows.unwrap_or(if specs.is_empty() { 0 } else { 4 });
    check_eval_opts(&args.opts)?;
    let needs_data = method.needs_calibration();
    let seq_len = args.calib_seq_len.unwrap_or(64);
    if needs_data && (args.calib_samples == 0 || seq_len < 2) {
        return Err(prunus_core::Error::CalibrationTooSmall {
            reason: format!(
                "method `{}` needs --calib-samples of at least 1 and --calib-seq-len of at least 2 (got {} and {seq_len})",
                registration.name, args.calib_samples
            ),
        }
        .into());
    }
    let model_path = session::resolve(&args.model)?;
    check_outputs(&mut args, &model_path.path)?;

    let mut loaded = session::load_resolved(&args.model, model_path)?;
    structured::check(&loaded.model, &options)?; // the unit kind, protection and budget fit this model
    crate::commands::check_eval_budget(&loaded, &args.opts, &specs, speed_windows > 0 || args.agreement_windows(!specs.is_empty()) > 0)?;
    if needs_data {
        crate::budget::check_gradients(loaded.model.config(), loaded.model.n_params(), args.calib_samples, seq_len)?;
    }
    let tokens = session::wiki_vital_tokens(&loaded.tokenizer, needs_data)?;
    let mut seconds = Seconds { load: loaded.seconds, tokenize: tokens.seconds, ..Seconds::default() };

    // Calibration texts (only drawn when the method uses data).
    let tokenizer = &loaded.tokenizer;
    let tokenize = |text: &str| -> prunus_core::Result<Vec<u32>> {
        prunus_data::tokenizer::encode_whole(tokenizer, text).map_err(|e| prunus_core::Error::Invalid(format!("tokenizing calibration text: {e}")))
    };
    let (calibration, calibration_info) = if needs_data {
        let width = window_tokens(seq_len);
        let offsets = prunus_data::corpus::calibration_offsets(tokens.calib.len(), args.calib_samples, width, args.seed)?;
        let texts = offsets
            .iter()
            .map(|&o| prunus_data::tokenizer::decode(tokenizer, &tokens.calib[o..o + width]))
            .collect::<Result<Vec<String>, _>>()?;
        let info = CalibrationInfo {
            corpus: "wiki-vital".into(),
            split: "calibration pool".into(),
            n_samples: args.calib_samples,
            seq_len,
            seed: args.seed,
            stream_tokens: tokens.calib.len(),
            offsets,
            sampler: format!(
                "CPython random.seed(seed); start = randint(0, len - {width} - 1) per window of {width} tokens, decoded to text; \
                 the method tokenizes each text (or its perturbed copy) and keeps the first {seq_len} tokens"
            ),
        };
        (Some(Calibration::new(texts, seq_len, &tokenize)?), Some(info))
    } else {
        (None, None)
    };

    // The dense side of the comparisons, before any unit goes.
    let mut agreement = match args.agreement_windows(!specs.is_empty()) {
        0 => None,
        k => Some(DenseAgreement::new(&loaded, &tokens.eval, &args.opts, k)?),
    };
    // The dense model is timed after pruning, alternating with the pruned one, so that both
    // see the same machine load; the copy shares every tensor that pruning leaves as it is.
    let dense = (speed_windows > 0).then(|| loaded.model.clone());

    let pb = bar(1, &format!("pruning ({}, {unit})", method.name()));
    let t = Instant::now();
    let outcome = prune_structured(&mut loaded.model, method.as_ref(), calibration.as_ref(), &options, &mut |e| match e {
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
        Some(dense) => Some(side_by_side(&dense, &loaded.model, &tokens.eval, args.opts.seq_len, speed_windows, args.opts.batch_size)?),
        None => None,
    };

    let evaluations = evaluate_and_save(&loaded, &specs, &tokens.eval, &args, agreement.as_mut(), &mut seconds)?;
    seconds.total = started.elapsed().as_secs_f64();

    let mut report = base_report("prune", &loaded, evaluations, seconds);
    report.method = Some(method_info(registration, method.config()));
    let (before, after) = (outcome.before, outcome.after);
    report.sparsity = Some(SparsityInfo {
        pattern: unit.to_string(),
        requested: target,
        realised: outcome.removed_fraction(),
        pruned: before.excluding_embeddings - after.excluding_embeddings,
        numel: before.excluding_embeddings,
        group: format!("structured: whole {unit} units, parameters outside the embeddings"),
        per_layer: Vec::new(),
        per_block: Vec::new(),
    });
    report.calibration = calibration_info;
    report.output = args.out.as_ref().map(|p| p.display().to_string());
    report.structure = Some(StructureInfo {
        unit: unit.to_string(),
        requested: target,
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
        iterations: outcome.iterations.clone(),
        speed,
    });

    let ppl = report.evaluations.iter().find(|e| e.metric == "ppl").map(|e| format!(", {} = {:.4}", e.task, e.value)).unwrap_or_default();
    let speed = report.structure.as_ref().and_then(|s| s.speed).map(|s| format!(", {:.2}x dense speed", s.speedup)).unwrap_or_default();
    println!(
        "{} {} {unit}: removed {} units in {} iterations, {:.4} of the parameters outside the embeddings ({:.4} of all){ppl}{speed}; pruning {:.1} s",
        loaded.info.label,
        registration.name,
        outcome.removed_units().count(),
        outcome.iterations.len(),
        outcome.removed_fraction(),
        outcome.removed_fraction_including_embeddings(),
        seconds.prune_total
    );
    outputs::write_report(args.opts.report.as_deref(), &report)
}

/// Evaluation tokens per second (forward and next-token NLL) of `dense` and `pruned` on the
/// first `k` windows of `seq_len` eval tokens, in batches of `batch_size`: the two are timed
/// alternately, [`SPEED_REPEATS`] times each, and the best time of each counts.
fn side_by_side(dense: &LlamaModel, pruned: &LlamaModel, tokens: &[u32], seq_len: usize, k: usize, batch_size: usize) -> Result<SpeedInfo> {
    let windows = k.min(tokens.len() / seq_len);
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
                let batch = Tensor::from_vec(tokens[w0 * seq_len..(w0 + b) * seq_len].to_vec(), (b, seq_len), &Device::Cpu)?;
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
