//! `prunus sweep`: the model of a `prunus train` run pruned at many sparsities by several
//! rules, each scored on the held-out works before and after a short retraining with the mask
//! fixed. Every point starts from the trained weights; nothing is written but the report.
//!
//! The rules:
//! - `swe`, `swe-sqrt`, `swe-current`: Systematic Weight Evaluation from the run's recorded
//!   history (linear weighting; square-root weighting; the current weights compared with the
//!   spread of the averaged ones), per-tensor `std x rate` thresholds with one rate;
//! - `tensor-magnitude`: the final `|W|` under the same per-tensor rule;
//! - `global-magnitude`: the final `|W|` against one threshold over all block linears;
//! - `wanda`: Wanda (per output row, `|W| x ||x||`), calibrated on windows of the training
//!   works, through the core's layer-wise pipeline.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::training::{FixedMask, MethodState, ParamInfo, RunInfo, StepInfo, TrainableModel, apply_mask, candidate_indices, candidate_zeros, global_mask};
use prunus_core::{Method, Pattern, TrainingMethod, registry};
use prunus_data::corpus::calibration_windows;
use prunus_model::LlamaModel;
use prunus_swe::{Compare, Swe, Weighting};
use prunus_train::{Checkpoint, Decay, Io, Schedule, TrainConfig};
use serde::{Deserialize, Serialize};

use super::train::TrainReport;
use super::{corpus, validation_loss, window_batch, windows_tensor};

/// How a rule scores the trained weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// The swe plugin restored from the run's history, with this weighting and comparison.
    Swe(Weighting, Compare),
    /// `|W| / std(|W|)` of the final weights, per tensor.
    TensorMagnitude,
    /// `|W|` of the final weights, one threshold over all block linears.
    GlobalMagnitude,
    /// A layer-wise method from the registry, through the core's pipeline (per output row).
    Layerwise,
}

/// Every rule by name, in the default order.
const RULES: [(&str, Rule); 6] = [
    ("swe", Rule::Swe(Weighting::Linear, Compare::Averaged)),
    ("swe-sqrt", Rule::Swe(Weighting::Sqrt, Compare::Averaged)),
    ("swe-current", Rule::Swe(Weighting::Linear, Compare::Current)),
    ("tensor-magnitude", Rule::TensorMagnitude),
    ("global-magnitude", Rule::GlobalMagnitude),
    ("wanda", Rule::Layerwise),
];

fn rule(name: &str) -> Result<Rule> {
    RULES.iter().find(|(n, _)| *n == name).map(|(_, r)| *r).ok_or_else(|| {
        anyhow::anyhow!("--rules: unknown rule `{name}`; the rules are {}", RULES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", "))
    })
}

/// `prunus sweep`.
#[derive(Args, Debug, Clone)]
pub struct SweepArgs {
    /// The directory of a finished `prunus train` run.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Rules, comma-separated: swe, swe-sqrt, swe-current, tensor-magnitude, global-magnitude, wanda.
    #[arg(long, default_value = "swe,swe-sqrt,swe-current,tensor-magnitude,global-magnitude,wanda", value_delimiter = ',')]
    pub rules: Vec<String>,
    /// Target sparsities over the block linears, comma-separated, each in (0, 1).
    #[arg(long, default_value = "0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9", value_delimiter = ',', allow_negative_numbers = true)]
    pub sparsities: Vec<f64>,
    /// Prune rates instead (the paper's knob: a weight goes when its score is below
    /// std(|W|) x rate of its tensor), comma-separated, each positive; the per-tensor rules
    /// only. The realised sparsity is reported.
    #[arg(long, value_delimiter = ',', allow_negative_numbers = true)]
    pub rates: Vec<f64>,
    /// Checkpoints averaged by the swe rules (the newest k of those the run kept) [default: all kept]
    #[arg(long, allow_negative_numbers = true)]
    pub k: Option<usize>,
    /// Retraining steps with the mask fixed after each pruning (0: none).
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub retrain_steps: u64,
    /// Peak learning rate of the retraining (cosine decay to a tenth, no warm-up).
    #[arg(long, default_value_t = 1e-3, allow_negative_numbers = true)]
    pub retrain_lr: f64,
    /// Wanda's calibration windows (from the training works, of the run's window length).
    #[arg(long, default_value_t = 32, allow_negative_numbers = true)]
    pub calib_samples: usize,
    /// Validation windows of --run's window length (the first W of the held-out works)
    /// [default: the run's --eval-windows]
    #[arg(long, allow_negative_numbers = true, value_name = "W")]
    pub eval_windows: Option<usize>,
    /// Seed of Wanda's calibration windows and the retraining windows.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Write the report (JSON) here.
    #[arg(long, value_name = "FILE.json")]
    pub report: Option<PathBuf>,
}

/// One point of the sweep.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepRow {
    /// The rule.
    pub rule: String,
    /// The target sparsity, when the point was asked by sparsity.
    pub target: Option<f64>,
    /// The rate asked, when the point was asked by rate.
    pub rate_asked: Option<f64>,
    /// The threshold score: for the per-tensor rules the rate (multiple of std(|W|)) a
    /// bisection would converge to; for global magnitude the |w| threshold; none for Wanda.
    pub threshold: Option<f64>,
    /// Realised sparsity over the block linears.
    pub realised: f64,
    /// Realised sparsity of each block linear, in the model's order.
    pub per_tensor: Vec<f64>,
    /// Validation loss (nats per character) right after pruning.
    pub validation_loss: f64,
    /// Validation loss after the retraining with the mask fixed (none without retraining).
    pub retrained_loss: Option<f64>,
    /// Seconds of the pruning (scores and mask, or Wanda's pipeline).
    pub prune_seconds: f64,
    /// Seconds of the retraining.
    pub retrain_seconds: f64,
}

/// The sweep's report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepReport {
    /// prunus version.
    pub prunus: String,
    /// The run swept.
    pub run: String,
    /// Its training report, without the per-step log.
    pub train: TrainReport,
    /// The history's checkpoints (numbers) the swe rules averaged.
    pub history: Vec<u64>,
    /// The swe rules' k.
    pub k: usize,
    /// How the validation loss is computed here.
    pub eval_protocol: String,
    /// The dense model's validation loss.
    pub dense_validation_loss: f64,
    /// The dense model's after the same retraining (nothing masked): what the retrained rows
    /// compare with, since the retraining also trains the model further.
    pub dense_retrained_loss: Option<f64>,
    /// Retraining: steps, batch, window, peak learning rate.
    pub retrain: serde_json::Value,
    /// Wanda's calibration: windows, seed, sampler.
    pub calibration: serde_json::Value,
    /// Every point.
    pub rows: Vec<SweepRow>,
    /// Wall seconds of the sweep.
    pub seconds: f64,
}

enum Point {
    Sparsity(f64),
    Rate(f64),
}

fn check(a: &SweepArgs) -> Result<()> {
    let rules = a.rules.iter().map(|r| rule(r)).collect::<Result<Vec<_>>>()?;
    for &s in &a.sparsities {
        if !(s > 0.0 && s < 1.0) {
            bail!("--sparsities: {s} is outside (0, 1)");
        }
    }
    for &r in &a.rates {
        if !(r > 0.0 && r.is_finite()) {
            bail!("--rates: {r} must be a positive number (a multiple of each tensor's std(|W|))");
        }
    }
    if !a.rates.is_empty() && rules.iter().any(|r| matches!(r, Rule::GlobalMagnitude | Rule::Layerwise)) {
        bail!("--rates apply to the per-tensor rules (swe, swe-sqrt, swe-current, tensor-magnitude); leave global-magnitude and wanda out or give --sparsities");
    }
    if a.k == Some(0) {
        bail!("--k must be at least 1 checkpoint");
    }
    if let Some(r) = &a.report {
        if r.is_dir() || r.as_os_str().is_empty() {
            bail!("--report {}: give a file path", r.display());
        }
        let parent = r.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            bail!("--report {}: the directory {} does not exist", r.display(), parent.display());
        }
    }
    Ok(())
}

/// The run's report and newest checkpoint (weights, method state).
fn read_run(run: &Path) -> Result<(TrainReport, Vec<Vec<f32>>, MethodState, Vec<ParamInfo>)> {
    let path = run.join("train.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("--run {}: no finished `prunus train` run (reading {})", run.display(), path.display()))?;
    let report: TrainReport = serde_json::from_str(&text).with_context(|| format!("{} is not a training report", path.display()))?;
    let dir = run.join("checkpoints");
    let ck_path = Checkpoint::latest(&dir)?.with_context(|| format!("--run {}: no checkpoint in {}", run.display(), dir.display()))?;
    let mut ck = Checkpoint::read(&ck_path)?;
    if ck.meta.steps_done != report.train.steps {
        bail!("{}: the newest checkpoint is at step {}, but the run's report says {} steps", ck_path.display(), ck.meta.steps_done, report.train.steps);
    }
    let model = LlamaModel::init(report.model.clone(), 0, 0.02)?;
    let params = model.params();
    let weights = params.iter().map(|p| ck.take_f32(&ck_path, &format!("w/{}", p.name), p.numel())).collect::<prunus_train::Result<Vec<_>>>()?;
    let state = ck.take_method_state(&ck_path)?;
    Ok((report, weights, state, params))
}

/// `prunus sweep`.
pub fn run(a: SweepArgs) -> Result<()> {
    let started = Instant::now();
    check(&a)?;
    let (mut report, dense, state, params) = read_run(&a.run)?;
    let candidates = candidate_indices(&params);
    let rules: Vec<(String, Rule)> = a.rules.iter().map(|r| Ok((r.clone(), rule(r)?))).collect::<Result<_>>()?;
    let swe_rules = rules.iter().any(|(_, r)| matches!(r, Rule::Swe(..)));
    let keep = state.scalars.get("numbers").and_then(|n| n.as_array()).map_or(0, Vec::len);
    if swe_rules && keep == 0 {
        bail!("--run {}: the run recorded no weight history (trained with --method none?); the swe rules need one", a.run.display());
    }
    let k = a.k.unwrap_or(keep);
    if swe_rules && k > keep {
        bail!("--k {k} is larger than the {keep} checkpoints the run kept");
    }
    let corpus = corpus()?;
    if corpus.train.len() != report.data.train_tokens || corpus.vocab.len() != report.data.vocab {
        bail!("the Shakespeare corpus here does not match the run's ({} training characters and {} symbols here, {} and {} there)", corpus.train.len(), corpus.vocab.len(), report.data.train_tokens, report.data.vocab);
    }
    let window = report.train.seq_len;
    let eval_windows = a.eval_windows.unwrap_or(report.eval_windows);
    let n_val = corpus.validation.len() / window;
    if eval_windows == 0 || eval_windows > n_val {
        bail!("--eval-windows {eval_windows}: the held-out works have {n_val} windows of {window} characters");
    }
    let mut model = LlamaModel::init(report.model.clone(), 0, 0.02)?;
    model.write_params(&dense)?;
    let val = |m: &LlamaModel| validation_loss(m, &corpus.validation, window, eval_windows, 8);
    let dense_loss = val(&model)?;
    if eval_windows == report.eval_windows && (dense_loss - report.final_validation_loss).abs() > 1e-9 * dense_loss.abs() {
        bail!("the run's model gives validation loss {dense_loss} here but {} in its report", report.final_validation_loss);
    }

    let dense_retrained_loss = if a.retrain_steps > 0 {
        retrain(&mut model, &dense, &[], &report.train, &corpus.train, a.retrain_steps, a.retrain_lr, a.seed)?;
        Some(val(&model)?)
    } else {
        None
    };
    let points: Vec<Point> = if a.rates.is_empty() { a.sparsities.iter().map(|&s| Point::Sparsity(s)).collect() } else { a.rates.iter().map(|&r| Point::Rate(r)).collect() };
    let calib = calibration_windows(&corpus.train, a.calib_samples, window, a.seed)?;
    let calib_tensor = windows_tensor(calib.ids.clone(), a.calib_samples, window)?;
    let total = (rules.len() * points.len()) as u64;
    let pb = ProgressBar::new(total);
    pb.set_style(ProgressStyle::with_template("sweep [{bar:28}] {pos}/{len} {msg} ({elapsed}, eta {eta})").expect("template").progress_chars("=> "));
    pb.enable_steady_tick(Duration::from_millis(500));
    let mut rows = Vec::new();
    let mut history = Vec::new();
    for (name, rule) in &rules {
        let swe = if let Rule::Swe(weighting, compare) = *rule {
            let config = prunus_swe::Config { keep, k: Some(k), weighting, compare };
            let mut m = Swe::new(config)?;
            m.begin(&RunInfo { params: &params, candidates: &candidates, total_steps: report.train.steps, n_examples: 0, schedule: None })?;
            m.restore(state.clone())?;
            history = m.checkpoint_numbers();
            Some(m)
        } else {
            None
        };
        for point in &points {
            pb.set_message(format!("{name} at {}", match point { Point::Sparsity(s) => format!("sparsity {s}"), Point::Rate(r) => format!("rate {r}") }));
            let t = Instant::now();
            model.write_params(&dense)?;
            let threshold = if *rule == Rule::Layerwise {
                let Point::Sparsity(s) = point else { unreachable!("checked") };
                let method = registry::find(name)?.build_layerwise(&serde_json::Value::Null)?;
                prune_layerwise(&mut model, &method, &Pattern::unstructured(*s)?, Some(&calib_tensor), &PipelineOptions::default(), &mut |_| {})?;
                None
            } else {
                let step = StepInfo { step: report.train.steps, lr: 0.0 };
                let scores = candidates
                    .iter()
                    .map(|&i| match (rule, &swe) {
                        (_, Some(m)) => m.scores(&step, &dense, i),
                        (Rule::TensorMagnitude, _) => {
                            let sd = prunus_swe::std(dense[i].iter().map(|w| w.abs() as f64)).max(f64::MIN_POSITIVE);
                            Ok(dense[i].iter().map(|w| (w.abs() as f64 / sd) as f32).collect())
                        }
                        _ => Ok(dense[i].iter().map(|w| w.abs()).collect()),
                    })
                    .collect::<prunus_core::Result<Vec<Vec<f32>>>>()?;
                let (masks, thr) = match point {
                    Point::Sparsity(s) => {
                        let names: Vec<&str> = candidates.iter().map(|&i| params[i].name.as_str()).collect();
                        let (masks, stats) = global_mask(&names, &scores, *s)?;
                        (masks, stats.threshold.map(f64::from))
                    }
                    Point::Rate(r) => (scores.iter().map(|sc| sc.iter().map(|v| f64::from(*v) >= *r).collect()).collect(), Some(*r)),
                };
                let mut w = dense.clone();
                for (&i, keep) in candidates.iter().zip(&masks) {
                    apply_mask(&mut w[i], keep);
                }
                model.write_params(&w)?;
                thr
            };
            let prune_seconds = t.elapsed().as_secs_f64();
            let pruned = model.read_params()?;
            let (zeros, numel) = candidate_zeros(&pruned, &candidates);
            let per_tensor = candidates.iter().map(|&i| pruned[i].iter().filter(|w| **w == 0.0).count() as f64 / pruned[i].len() as f64).collect();
            let validation_loss = val(&model)?;
            let t = Instant::now();
            let retrained_loss = if a.retrain_steps > 0 {
                retrain(&mut model, &pruned, &candidates, &report.train, &corpus.train, a.retrain_steps, a.retrain_lr, a.seed)?;
                Some(val(&model)?)
            } else {
                None
            };
            rows.push(SweepRow {
                rule: name.clone(),
                target: match point { Point::Sparsity(s) => Some(*s), Point::Rate(_) => None },
                rate_asked: match point { Point::Rate(r) => Some(*r), Point::Sparsity(_) => None },
                threshold,
                realised: zeros as f64 / numel.max(1) as f64,
                per_tensor,
                validation_loss,
                retrained_loss,
                prune_seconds,
                retrain_seconds: t.elapsed().as_secs_f64(),
            });
            pb.inc(1);
        }
        if pb.is_hidden() {
            // No bar when stderr is not a terminal (the bench): one line per rule instead.
            eprintln!("sweep: {name} done ({}/{} points, {:.0} s)", pb.position(), total, started.elapsed().as_secs_f64());
        }
    }
    pb.finish_and_clear();
    let after = dense_retrained_loss.map_or(String::new(), |l| format!(", {l:.4} after the same retraining"));
    println!("dense: validation loss {dense_loss:.4} nats/char{after} ({} parameters, {} steps)", report.params, report.train.steps);
    println!("{:<17} {:>7} {:>9} {:>9} {:>9}", "rule", "target", "realised", "loss", "retrained");
    for r in &rows {
        let target = r.target.map_or_else(|| format!("r={}", r.rate_asked.unwrap_or(f64::NAN)), |s| format!("{s:.2}"));
        println!("{:<17} {:>7} {:>9.4} {:>9.4} {:>9}", r.rule, target, r.realised, r.validation_loss, r.retrained_loss.map_or("-".into(), |v| format!("{v:.4}")));
    }
    report.log.clear();
    let out = SweepReport {
        prunus: env!("CARGO_PKG_VERSION").into(),
        run: a.run.display().to_string(),
        train: report.clone(),
        history,
        k,
        eval_protocol: format!("mean next-character NLL (nats) over the first {eval_windows} non-overlapping windows of {window} characters of the held-out works"),
        dense_validation_loss: dense_loss,
        dense_retrained_loss,
        retrain: serde_json::json!({"steps": a.retrain_steps, "batch": report.train.batch, "window": window, "lr": a.retrain_lr, "decay": "cosine to 0.1", "windows": "SplitMix64 offsets from the training works, seed + 1"}),
        calibration: serde_json::json!({"samples": a.calib_samples, "seq_len": window, "seed": a.seed, "sampler": "CPython random.seed/randint over the training works", "offsets": calib.offsets}),
        rows,
        seconds: started.elapsed().as_secs_f64(),
    };
    if let Some(path) = &a.report {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(&out)?).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Retrains `model` (holding `pruned`) for `steps` steps with the zeros of the `candidates`
/// kept (none: the dense model trained further the same way).
#[allow(clippy::too_many_arguments)]
fn retrain(model: &mut LlamaModel, pruned: &[Vec<f32>], candidates: &[usize], run: &TrainConfig, train: &[u32], steps: u64, lr: f64, seed: u64) -> Result<()> {
    let mut fixed = FixedMask::of_zeros(pruned, candidates);
    let config = TrainConfig {
        steps,
        lr: Schedule::new(lr, 0, steps, Decay::Cosine, 0.1).map_err(|e| anyhow::anyhow!("{e}"))?,
        prune: None,
        eval_every: 0,
        checkpoint_every: 0,
        ..run.clone()
    };
    let (per, seq) = (config.batch, config.seq_len);
    let batch = move |t: u64| -> prunus_core::Result<Vec<u32>> { Ok(window_batch(train, seed.wrapping_add(1), t, per, seq)) };
    let io = Io { batch: &batch, eval: None, on_step: &mut |_, _| {}, checkpoints: None, resume: false };
    prunus_train::train(model, Some(&mut fixed as &mut dyn TrainingMethod), &config, serde_json::json!("retrain"), 0, io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SweepArgs {
        SweepArgs {
            run: "x".into(),
            rules: vec!["swe".into()],
            sparsities: vec![0.5],
            rates: vec![],
            k: None,
            retrain_steps: 0,
            retrain_lr: 1e-3,
            eval_windows: None,
            calib_samples: 4,
            seed: 0,
            report: None,
        }
    }

    #[test]
    fn bad_input_is_one_line() {
        let e = |a: SweepArgs| check(&a).unwrap_err().to_string();
        assert!(e(SweepArgs { rates: vec![-1.0], ..args() }).contains("--rates: -1 must be a positive number"));
        assert!(e(SweepArgs { sparsities: vec![1.0], ..args() }).contains("outside (0, 1)"));
        assert!(e(SweepArgs { rules: vec!["sve".into()], ..args() }).contains("unknown rule `sve`"));
        assert!(e(SweepArgs { rates: vec![1.0], rules: vec!["wanda".into()], ..args() }).contains("per-tensor rules"));
        assert!(e(SweepArgs { k: Some(0), ..args() }).contains("--k must be at least 1"));
        assert!(e(SweepArgs { report: Some("/nonexistent-dir/r.json".into()), ..args() }).contains("does not exist"));
        check(&args()).unwrap();
    }
}
