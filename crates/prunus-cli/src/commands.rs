//! The subcommands.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use prunus_core::pipeline::{Event, PipelineOptions, prune_layerwise};
use prunus_core::{Pattern, PatternKind, registry};
use prunus_eval::report::{self, CalibrationInfo, Evaluation, MethodInfo, RunReport, Seconds, SparsityInfo};
use prunus_eval::tasks::{self, Task, TaskKind};

use crate::session::{self, Loaded, bar};
use crate::{EvalArgs, EvalOpts, PruneArgs};

pub fn list() -> Result<()> {
    println!("methods:");
    for r in registry::list()? {
        println!("  {:<12} v{:<3} {:<11} {}", r.name, r.version, r.kind(), r.summary);
    }
    println!("tasks:");
    for t in tasks::TASKS {
        println!("  {:<16} v{:<3} {}", t.name, t.version, t.protocol);
    }
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let task = tasks::find(&args.task)?;
    check_eval_opts(&args.eval)?;
    let loaded = session::load(&args.model)?;
    let tokens = session::wiki_vital_tokens(&loaded.tokenizer, false)?;
    let t = Instant::now();
    let evaluation = evaluate(&loaded, task, &tokens.eval, &args.eval)?;
    let seconds = Seconds {
        load: loaded.seconds,
        tokenize: tokens.seconds,
        evaluation: t.elapsed().as_secs_f64(),
        total: started.elapsed().as_secs_f64(),
        ..Seconds::default()
    };
    println!("{}: {} = {:.4} ({} windows of {} tokens)", loaded.info.label, evaluation.task, evaluation.value, evaluation.windows.unwrap_or(0), evaluation.seq_len.unwrap_or(0));
    let report = base_report("eval", &loaded, vec![evaluation], seconds);
    write_report(args.eval.report.as_deref(), &report)
}

pub fn prune(args: PruneArgs) -> Result<()> {
    let started = Instant::now();
    // Everything that can be checked before loading is checked first.
    let registration = registry::find(&args.method)?;
    let config: serde_json::Value = match &args.config {
        Some(text) => serde_json::from_str(text).with_context(|| format!("--config is not valid JSON: {text}"))?,
        None => serde_json::Value::Null,
    };
    let method = registration.build_layerwise(&config)?;
    let pattern = match args.pattern.parse::<PatternKind>()? {
        PatternKind::Unstructured => Pattern::unstructured(args.sparsity)?,
        PatternKind::NM { n, m } => {
            prunus_core::pattern::check_sparsity(args.sparsity)?;
            Pattern::n_m(n, m)?
        }
    };
    let group = method.group(&pattern)?;
    let task = match args.eval.as_str() {
        "none" => None,
        name => Some(tasks::find(name)?),
    };
    check_eval_opts(&args.opts)?;
    let calib_seq_len = args.calib_seq_len.unwrap_or(args.opts.seq_len);
    if args.calib_samples == 0 || calib_seq_len < 2 {
        bail!("--calib-samples must be at least 1 and the calibration seq_len at least 2 (got {} and {calib_seq_len})", args.calib_samples);
    }
    let model_path = session::resolve(&args.model)?;
    if let Some(out) = &args.out {
        check_output_dir(out, &model_path)?;
    }

    let mut loaded = session::load_resolved(&args.model, model_path)?;
    let needs_data = method.stats() > prunus_core::StatKind::None;
    let tokens = session::wiki_vital_tokens(&loaded.tokenizer, needs_data)?;
    let mut seconds = Seconds { load: loaded.seconds, tokenize: tokens.seconds, ..Seconds::default() };

    // Calibration windows (only drawn when the method uses data).
    let calibration = if needs_data {
        let offsets = prunus_data::corpus::calibration_offsets(tokens.calib.len(), args.calib_samples, calib_seq_len, args.seed)?;
        let mut ids = Vec::with_capacity(offsets.len() * calib_seq_len);
        for &o in &offsets {
            ids.extend_from_slice(&tokens.calib[o..o + calib_seq_len]);
        }
        let t = Tensor::from_vec(ids, (offsets.len(), calib_seq_len), &Device::Cpu)?;
        let info = CalibrationInfo {
            corpus: "wiki-vital".into(),
            split: "calibration pool".into(),
            n_samples: args.calib_samples,
            seq_len: calib_seq_len,
            seed: args.seed,
            stream_tokens: tokens.calib.len(),
            offsets,
            sampler: "CPython random.seed(seed); start = randint(0, len - seq_len - 1) per window".into(),
        };
        Some((t, info))
    } else {
        None
    };

    let n_blocks = loaded.info.n_blocks as u64;
    let pb = bar(n_blocks, &format!("pruning ({})", method.name()));
    let t = Instant::now();
    let outcome = prune_layerwise(
        &mut loaded.model,
        method.as_ref(),
        &pattern,
        calibration.as_ref().map(|(t, _)| t),
        &PipelineOptions { batch_size: args.opts.batch_size },
        &mut |e| match e {
            Event::Block { index, .. } => pb.set_position(index as u64),
        },
    )?;
    pb.finish_and_clear();
    seconds.prune_total = t.elapsed().as_secs_f64();
    seconds.calibration_forward = outcome.seconds.calibration_forward;
    seconds.statistics = outcome.seconds.statistics;
    seconds.score_and_mask = outcome.seconds.score_and_mask;

    let mut evaluations = Vec::new();
    if let Some(task) = task {
        let t = Instant::now();
        evaluations.push(evaluate(&loaded, task, &tokens.eval, &args.opts)?);
        seconds.evaluation = t.elapsed().as_secs_f64();
    }
    if let Some(out) = &args.out {
        let t = Instant::now();
        let pb = session::spinner(&format!("saving to {}", out.display()));
        loaded.model.save_hf_dir(out, &prunus_model::SaveOptions { tokenizer_json: Some(loaded.tokenizer_json.as_bytes()), overwrite: false }).with_context(|| format!("saving to {}", out.display()))?;
        pb.finish_and_clear();
        seconds.save = t.elapsed().as_secs_f64();
    }
    seconds.total = started.elapsed().as_secs_f64();

    let mut report = base_report("prune", &loaded, evaluations, seconds);
    report.method = Some(MethodInfo {
        name: registration.name.into(),
        version: registration.version.into(),
        kind: registration.kind().into(),
        config: method.config(),
    });
    report.sparsity = Some(SparsityInfo {
        pattern: pattern.label(),
        requested: pattern.sparsity(),
        realised: outcome.sparsity(),
        pruned: outcome.pruned(),
        numel: outcome.numel(),
        group: group.to_string(),
        per_layer: outcome.layers.clone(),
        per_block: outcome.blocks.clone(),
    });
    report.calibration = calibration.map(|(_, info)| info);
    report.output = args.out.as_ref().map(|p| p.display().to_string());

    let ppl = report.evaluations.first().map(|e| format!(", {} = {:.4}", e.task, e.value)).unwrap_or_default();
    println!(
        "{} {} {}: realised sparsity {:.6} over {} weights{ppl}; pruning {:.1} s (score+mask {:.2} s)",
        loaded.info.label,
        registration.name,
        pattern,
        outcome.sparsity(),
        outcome.numel(),
        seconds.prune_total,
        seconds.score_and_mask
    );
    write_report(args.opts.report.as_deref(), &report)
}

pub fn inspect(spec: &str) -> Result<()> {
    let loaded = session::load(spec)?;
    let cfg = loaded.model.config();
    println!("model:        {}", loaded.info.label);
    println!("path:         {}", loaded.path.display());
    println!("sha256:       {}", loaded.info.sha256);
    println!("architecture: llama ({} layers, hidden {}, ffn {}, {} heads, {} kv heads, vocab {}, tied embeddings: {})",
        cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.n_kv_heads(), cfg.vocab_size, cfg.tie_word_embeddings);
    println!("parameters:   {} total", loaded.model.n_params());
    let rows = loaded.model.sparsity_report()?;
    let (zeros, numel) = rows.iter().fold((0usize, 0usize), |(z, n), r| (z + r.zeros, n + r.numel));
    println!("linears:      {} weights in {} block linears, sparsity {:.4}", numel, rows.len(), zeros as f64 / numel.max(1) as f64);
    println!("{:<28} {:>10} {:>10} {:>9}", "tensor", "zeros", "numel", "sparsity");
    for r in rows {
        println!("{:<28} {:>10} {:>10} {:>9.4}", format!("blk.{}.{}", r.block, r.name), r.zeros, r.numel, r.fraction());
    }
    Ok(())
}

fn check_eval_opts(o: &EvalOpts) -> Result<()> {
    if o.seq_len < 2 || o.max_windows == 0 || o.batch_size == 0 {
        bail!("--seq-len must be at least 2 and --max-windows and --batch-size at least 1 (got {}, {}, {})", o.seq_len, o.max_windows, o.batch_size);
    }
    Ok(())
}

/// Refuses an output directory that is the input model, exists with content, or is not writable.
fn check_output_dir(out: &Path, model: &Path) -> Result<()> {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let model_dir = if model.is_dir() { canon(model) } else { canon(model.parent().unwrap_or(Path::new("."))) };
    if out.exists() && (canon(out) == canon(model) || canon(out) == model_dir) {
        bail!("--out {} is the input model's directory; choose a new directory", out.display());
    }
    if out.exists() && std::fs::read_dir(out).map(|mut d| d.next().is_some()).unwrap_or(true) {
        bail!("--out {} already exists and is not empty; choose a new directory", out.display());
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let probe = tempfile_in(&parent).with_context(|| format!("--out {}: the directory {} is not writable", out.display(), parent.display()))?;
    drop(probe);
    Ok(())
}

fn tempfile_in(dir: &Path) -> std::io::Result<std::fs::File> {
    let p = dir.join(format!(".prunus-write-probe-{}", std::process::id()));
    let f = std::fs::File::create(&p)?;
    std::fs::remove_file(&p)?;
    Ok(f)
}

fn evaluate(loaded: &Loaded, task: &'static Task, tokens: &[u32], o: &EvalOpts) -> Result<Evaluation> {
    match task.kind {
        TaskKind::Perplexity => {
            let windows = prunus_eval::perplexity::n_windows(task.corpus, tokens.len(), o.seq_len, o.max_windows)?;
            let pb = bar(windows as u64, &format!("evaluating {}", task.name));
            let mut nll = |t: &Tensor| -> prunus_eval::Result<Vec<f64>> { Ok(loaded.model.nll(t).map_err(prunus_core::Error::from)?) };
            let r = prunus_eval::perplexity(task.corpus, tokens, o.seq_len, o.max_windows, o.batch_size, &mut nll, &mut |n| pb.set_position(n as u64))?;
            pb.finish_and_clear();
            Ok(Evaluation {
                task: task.name.into(),
                task_version: task.version,
                metric: "ppl".into(),
                value: r.ppl,
                seq_len: Some(r.seq_len),
                windows: Some(r.windows),
                predictions: Some(r.predictions),
                stderr: None,
                docs: None,
                protocol: task.protocol.into(),
            })
        }
    }
}

fn base_report(command: &str, loaded: &Loaded, evaluations: Vec<Evaluation>, seconds: Seconds) -> RunReport {
    RunReport {
        report_version: report::REPORT_VERSION,
        command: command.into(),
        prunus_version: env!("CARGO_PKG_VERSION").into(),
        git_commit: env!("PRUNUS_GIT_COMMIT").into(),
        started_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0).saturating_sub(seconds.total as u64),
        model: loaded.info.clone(),
        method: None,
        sparsity: None,
        calibration: None,
        evaluations,
        seconds,
        peak_rss_bytes: report::peak_rss_bytes(),
        threads: std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        output: None,
    }
}

/// Writes the report atomically (temporary name, then rename), if a path was given.
fn write_report(path: Option<&Path>, report: &RunReport) -> Result<()> {
    let Some(path) = path else { return Ok(()) };
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(report)?).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// `prunus assets`: fetch, verify and cache every asset (the model, the corpus, the task files).
pub fn assets() -> Result<()> {
    let start = Instant::now();
    let mut say = |msg: &str| eprintln!("assets: {msg}");
    prunus_data::assets::ensure_all(&mut say).context("fetching the assets")?;
    eprintln!("assets: ready in {} ({:.1} s)", prunus_data::assets::home().display(), start.elapsed().as_secs_f64());
    Ok(())
}
