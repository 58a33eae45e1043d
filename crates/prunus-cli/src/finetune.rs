//! `prunus finetune`: fine-tune a model while a training-time method prunes it.
//!
//! Everything checkable without the model is checked first (the method and its kind, the
//! sparsity schedule against the steps, the optimizer's hyperparameters, the outputs and the
//! checkpoint directory); then the model loads, the memory of one micro-batch's gradients is
//! bounded by the machine's, the training windows are drawn from the wiki-vital calibration
//! pool (`calibration_windows`: CPython's `random.seed` / `randint`, all of them up front, step
//! `t` taking windows `t * batch ..`), prunus-train's loop runs with a progress bar, the tasks
//! are evaluated on the result, the model is saved, and the report records the whole log.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use prunus_core::registry;
use prunus_core::training::{PruneSchedule, TrainableModel, candidate_indices, candidate_zeros};
use prunus_core::{Built, TrainingMethod};
use prunus_data::corpus::{CALIBRATION_SAMPLER, calibration_windows};
use prunus_eval::report::{Seconds, SparsityInfo, TrainingInfo};
use prunus_eval::tasks::{self, TaskSpec};
use prunus_model::LlamaModel;
use prunus_train::{AdamWConfig, Checkpoint, Decay, Io, Progress, Schedule, StepRecord, TrainConfig};

use crate::args::FinetuneArgs;
use crate::{budget, eval, outputs, report, session};

/// The held-out evaluation logged during training.
const HELDOUT: &str = "ppl:wiki-vital";

/// Everything checked before the model loads.
struct Plan {
    method: Option<(&'static registry::MethodRegistration, Built<dyn TrainingMethod>)>,
    config: TrainConfig,
    specs: Vec<TaskSpec>,
}

fn plan(a: &FinetuneArgs) -> Result<Plan> {
    let method = match &a.method {
        Some(name) => {
            let registration = registry::find(name)?;
            let config: serde_json::Value = match &a.config {
                Some(text) => serde_json::from_str(text).with_context(|| format!("--config is not valid JSON: {text}"))?,
                None => serde_json::Value::Null,
            };
            if registration.kind() != "training" {
                bail!("`{name}` is a {} method: `prunus finetune` runs training-time methods (mgpp, gmp, platon, swe); prune with `prunus prune --method {name}`", registration.kind());
            }
            Some((registration, registration.build_training(&config)?))
        }
        None => None,
    };
    let schedule_flags = a.initial_sparsity.is_some() || a.prune_start.is_some() || a.prune_end.is_some() || a.prune_every.is_some();
    let prune = match (&method, a.sparsity) {
        (None, Some(_)) => bail!("--sparsity needs a training-time method (--method mgpp, gmp, platon or swe); without one the run is a dense fine-tune"),
        (None, None) if schedule_flags => bail!("--initial-sparsity, --prune-start, --prune-end and --prune-every need --method"),
        (None, None) => None,
        (Some((r, _)), None) => bail!("`{}` prunes to a final sparsity: give --sparsity S (e.g. 0.5)", r.name),
        (Some(_), Some(s)) => {
            if !(0.0..1.0).contains(&s) {
                bail!("--sparsity {s} is outside [0, 1)");
            }
            let start = a.prune_start.unwrap_or(a.steps / 10);
            let end = a.prune_end.unwrap_or(a.steps * 3 / 4);
            let every = a.prune_every.unwrap_or((end.saturating_sub(start) / 10).max(1));
            let schedule = PruneSchedule { initial_sparsity: a.initial_sparsity.unwrap_or(s.min(0.3)), final_sparsity: s, start, end, interval: every };
            schedule.check(a.steps).map_err(|e| anyhow::anyhow!("the pruning schedule: {e} (see --prune-start, --prune-end, --prune-every, --initial-sparsity)"))?;
            Some(schedule)
        }
    };
    let decay = match a.decay.as_str() {
        "linear" => Decay::Linear,
        "cosine" => Decay::Cosine,
        "constant" => Decay::Constant,
        other => bail!("--decay {other}: use linear, cosine or constant"),
    };
    let lr = Schedule::new(a.lr, a.warmup, a.steps, decay, a.final_lr).map_err(|e| anyhow::anyhow!("{e}"))?;
    let adamw = AdamWConfig { weight_decay: a.weight_decay, ..AdamWConfig::default() };
    let config = TrainConfig {
        steps: a.steps,
        batch: a.batch,
        accumulate: a.accumulate.unwrap_or(a.batch),
        seq_len: a.window,
        lr,
        adamw,
        clip: a.clip,
        prune,
        eval_every: a.eval_every,
        checkpoint_every: a.checkpoint_every.unwrap_or((a.steps / 10).max(1)),
    };
    config.check()?;
    if a.eval_windows == 0 {
        bail!("--eval-windows must be at least 1");
    }
    if a.resume && a.checkpoints.is_none() {
        bail!("--resume continues from --checkpoints DIR: give the directory");
    }
    let specs = tasks::parse_list(&a.eval, a.opts.limit)?;
    Ok(Plan { method, config, specs })
}

/// Checks --checkpoints before any work: not the model, apart from --out, a directory if it
/// exists, and holding a checkpoint exactly when resuming.
fn check_checkpoints(dir: &Path, model: &Path, out: Option<&Path>, resume: bool) -> Result<PathBuf> {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let model = std::fs::canonicalize(model).unwrap_or_else(|_| model.to_path_buf());
    if abs == model || abs.starts_with(&model) {
        bail!("--checkpoints {} is the input model or inside it; choose another directory", dir.display());
    }
    if out.is_some_and(|o| abs == o || abs.starts_with(o) || o.starts_with(&abs)) {
        bail!("--checkpoints {} and --out overlap; the model is written to --out whole at the end, so keep them apart", dir.display());
    }
    if abs.exists() && !abs.is_dir() {
        bail!("--checkpoints {} is not a directory", dir.display());
    }
    let latest = Checkpoint::latest(&abs)?;
    match (resume, latest) {
        (true, None) => bail!("--resume: --checkpoints {} holds no checkpoint", dir.display()),
        (false, Some(p)) => bail!("--checkpoints {} already holds {}: pass --resume to continue it, or choose another directory", dir.display(), p.display()),
        _ => Ok(abs),
    }
}

/// Perplexity of the first `windows` evaluation windows, silently (the log keeps it).
fn heldout(model: &LlamaModel, tokens: &[u32], seq_len: usize, windows: usize, batch: usize) -> prunus_core::Result<f64> {
    let task = tasks::find(HELDOUT).map_err(|e| prunus_core::Error::Invalid(e.to_string()))?;
    let corpus = task.corpus().unwrap_or("wiki-vital");
    Ok(eval::silent_perplexity(model, corpus, tokens, seq_len, windows, batch)?.ppl)
}

/// `prunus finetune`.
pub fn run(a: FinetuneArgs) -> Result<()> {
    let started = Instant::now();
    let Plan { mut method, config, specs } = plan(&a)?;
    let model_path = session::resolve(&a.model)?;
    let out = a.out.as_deref().map(|o| outputs::check_out_dir(o, &model_path.path)).transpose()?;
    let report_path = a.opts.report.as_deref().map(|r| outputs::check_report(r, &model_path.path, out.as_deref())).transpose()?;
    let checkpoints = a.checkpoints.as_deref().map(|d| check_checkpoints(d, &model_path.path, out.as_deref(), a.resume)).transpose()?;

    let mut session = session::load_resolved(&a.model, model_path)?;
    eval::check_budget(&session, &a.opts, &specs, a.eval_every > 0)?;
    let cfg = session.model.config().clone();
    budget::check_gradients(&cfg, session.model.n_params(), config.batch / config.accumulate, config.seq_len)?;
    let tokens = session::wiki_vital_tokens(&session.tokenizer, true)?;
    let mut seconds = Seconds { load: session.seconds, tokenize: tokens.seconds, ..Seconds::default() };

    let n_windows = usize::try_from(config.steps).ok().and_then(|s| s.checked_mul(config.batch)).context("--steps x --batch is too large")?;
    let windows = calibration_windows(&tokens.calib, n_windows, config.seq_len, a.seed)?;
    let n_examples = (tokens.calib.len() / config.seq_len) as u64;
    let calibration = report::calibration_info(&windows, config.seq_len, CALIBRATION_SAMPLER.into());
    let per_step = config.batch * config.seq_len;
    let ids = windows.ids;
    let batch = move |t: u64| -> prunus_core::Result<Vec<u32>> {
        let start = t as usize * per_step;
        Ok(ids[start..start + per_step].to_vec())
    };
    let label = method.as_ref().map_or("dense", |(r, _)| r.name);
    let identity = serde_json::json!({
        "model": {"sha256": session.info.sha256, "label": session.info.label},
        "method": method.as_ref().map(|(r, m)| serde_json::json!({"name": r.name, "version": r.version, "config": m.config})),
        "data": {"corpus": "wiki-vital", "split": "calibration pool", "seed": a.seed, "stream_tokens": tokens.calib.len()},
    });

    let pb = ProgressBar::new(config.steps);
    pb.set_style(
        ProgressStyle::with_template("fine-tuning ({prefix}) [{bar:28}] {pos}/{len} {msg} ({elapsed}, eta {eta})").expect("template").progress_chars("=> "),
    );
    pb.set_prefix(label.to_string());
    pb.enable_steady_tick(Duration::from_millis(500));
    let mut on_step = |r: &StepRecord, p: &Progress| {
        pb.set_position(p.done);
        pb.set_message(format!("loss {:.3}, {:.0} tok/s, sparsity {:.3}", r.loss, p.tokens_per_s, r.sparsity));
    };
    let (eval_tokens, seq_len, eval_windows, batch_size) = (&tokens.eval, a.opts.seq_len, a.eval_windows, a.opts.batch_size);
    let mut eval_fn = |m: &LlamaModel| heldout(m, eval_tokens, seq_len, eval_windows, batch_size);
    let io = Io { batch: &batch, eval: Some(&mut eval_fn), on_step: &mut on_step, checkpoints: checkpoints.as_deref(), resume: a.resume };
    let t = Instant::now();
    let outcome = prunus_train::train(&mut session.model, method.as_mut().map(|(_, m)| &mut **m as &mut dyn TrainingMethod), &config, identity, n_examples, io);
    pb.finish_and_clear();
    let outcome = outcome?;
    seconds.prune_total = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let evaluations = eval::run_tasks(&session, &specs, &tokens.eval, &a.opts, None)?;
    seconds.evaluation = t.elapsed().as_secs_f64();
    if let Some(out) = &out {
        seconds.save = session::save(&session, out, false)?;
    }
    seconds.total = started.elapsed().as_secs_f64();

    let params = session.model.params();
    let candidates = candidate_indices(&params);
    let (pruned, numel) = candidate_zeros(&session.model.read_params()?, &candidates);
    let mut rep = report::base("finetune", &session.info, evaluations, seconds);
    rep.calibration = Some(calibration);
    rep.output = out.as_ref().map(|p| p.display().to_string());
    if let Some((registration, m)) = &method {
        rep.method = Some(report::method_info(registration, m.config.clone()));
        rep.sparsity = Some(SparsityInfo {
            pattern: "unstructured".into(),
            requested: config.prune.map_or(0.0, |p| p.final_sparsity),
            realised: pruned as f64 / numel.max(1) as f64,
            pruned,
            numel,
            group: "global (all candidate linears)".into(),
            per_layer: vec![],
            per_block: vec![],
        });
    }
    let heldout_protocol = format!("{HELDOUT}, the first {} windows of {} tokens", a.eval_windows, a.opts.seq_len);
    rep.training = Some(TrainingInfo {
        config: serde_json::to_value(&config)?,
        n_examples,
        eval_protocol: heldout_protocol,
        log: outcome.log.clone(),
        evals: outcome.evals.clone(),
        train_seconds: outcome.train_seconds,
        tokens_per_s: outcome.tokens_per_s,
        resumed_from: outcome.resumed_from,
        checkpoint: outcome.checkpoint.as_ref().map(|p| p.display().to_string()),
    });
    let last = outcome.log.last().map(|r| r.loss).unwrap_or(f64::NAN);
    let ppl = rep.evaluations.iter().find(|e| e.metric == "ppl").map(|e| format!(", {} = {:.4}", e.task, e.value)).unwrap_or_default();
    println!(
        "{} finetune ({label}) {} steps x {} x {} tokens: final loss {last:.4}, sparsity {:.6} over {numel} candidate weights{ppl}; {:.0} tokens/s over {:.1} s of training",
        session.info.label, config.steps, config.batch, config.seq_len, pruned as f64 / numel.max(1) as f64, outcome.tokens_per_s, outcome.train_seconds
    );
    outputs::write_report(report_path.as_deref(), &rep)
}
