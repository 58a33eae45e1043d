//! What a complete run leaves: the tables, plots and manifest (written by `tables` and
//! here), the comparison with the committed results of its matrix (compare.rs), and with
//! `--update` the committed results replaced by the run.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::atomic;
use crate::plan::Plan;
use crate::record::{cells_dir, existing};
use crate::workspace::same_dir;

/// Where the committed results are, and whether to replace them.
#[derive(clap::Args)]
pub struct ResultsArgs {
    /// The committed results the run is compared with (default: results/<matrix file stem>).
    #[arg(long, value_name = "DIR")]
    pub compare_with: Option<std::path::PathBuf>,
    /// After the run, replace the committed results (records, tables, plots, manifest) with it.
    #[arg(long)]
    pub update: bool,
}
/// After a complete run in `plan.out`: compare it with the committed results, then replace
/// them with it (`update`), or fail when a cell differs beyond the tolerances.
pub fn finish(plan: &Plan, committed: &Path, update: bool) -> Result<()> {
    if same_dir(&plan.out, committed) {
        return Ok(());
    }
    let comparison = crate::compare::compare(&plan.cells, &plan.out, committed)?;
    let text = comparison.markdown(&plan.loaded.name, committed);
    atomic::write(&plan.out.join("comparison.md"), text.as_bytes())?;
    for line in comparison.lines() {
        eprintln!("compare: {line}");
    }
    eprintln!("compare: the whole comparison is in {}", plan.out.join("comparison.md").display());
    if update {
        update_results(plan, committed)?;
        eprintln!("bench: {} now holds this run (review with `git diff`, then commit)", committed.display());
        return Ok(());
    }
    if comparison.differing() > 0 {
        bail!(
            "{} of {} cells differ from the committed results beyond the tolerances (listed above); `--update` makes this run the committed results",
            comparison.differing(),
            plan.cells.len()
        );
    }
    Ok(())
}
/// Makes the complete run in `plan.out` the committed results in `committed`: its records
/// replace the records there (a record of a cell no longer in the matrix is removed), then
/// the tables, plots and manifest are written there from them.
fn update_results(plan: &Plan, committed: &Path) -> Result<()> {
    let dir = cells_dir(committed);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    for (key, _) in &plan.cells {
        let from = cells_dir(&plan.out).join(format!("{key}.json"));
        let bytes = std::fs::read(&from).with_context(|| format!("reading {}", from.display()))?;
        atomic::write(&dir.join(format!("{key}.json")), &bytes)?;
    }
    let keep: std::collections::BTreeSet<String> = plan.cells.iter().map(|(k, _)| format!("{k}.json")).collect();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name.ends_with(".json") && !keep.contains(&name) {
            std::fs::remove_file(dir.join(&name)).with_context(|| format!("removing the stale record {name}"))?;
        }
    }
    let manifest: Option<serde_json::Value> = std::fs::read(plan.out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let (commit, dirty) = manifest
        .as_ref()
        .map(|m| (m["git_commit"].as_str().unwrap_or("unknown").to_string(), m["git_dirty"].as_bool().unwrap_or(true)))
        .unwrap_or_else(git_state);
    let (seconds, ran) = manifest
        .as_ref()
        .map(|m| (m["wall_seconds_this_time"].as_f64().unwrap_or(0.0), m["cells_run_this_time"].as_u64().unwrap_or(0) as usize))
        .unwrap_or((0.0, 0));
    write_outputs(plan, committed, (commit, dirty), seconds, ran, None)
}
/// Reads every cell's record from `plan.out` (all must exist) and writes the tables, plots
/// and manifest into `out`. `previous`: the manifest of an earlier bench run over these cells,
/// when `report` rewrites its tables; its account of that run (commit, dirty state, cells
/// run, wall seconds, and the machine and tools it ran on) is kept and this commit is recorded
/// beside it as `tables_rewritten_by_report`.
pub fn write_outputs(plan: &Plan, out: &Path, git: (String, bool), seconds: f64, ran: usize, previous: Option<serde_json::Value>) -> Result<()> {
    let mut records = Vec::new();
    let mut missing = Vec::new();
    for (key, cell) in &plan.cells {
        match existing(out, key) {
            Some(r) => records.push(r),
            None => missing.push(format!("{} {} {} ({key})", cell.label, cell.pattern, cell.sparsity)),
        }
    }
    if !missing.is_empty() {
        bail!("{} of {} cells have no record yet (run the missing shards): {}", missing.len(), plan.cells.len(), missing.join(", "));
    }
    let m = &plan.loaded.matrix;
    let opts = crate::tables::SummaryOptions {
        title: format!("prunus benchmark `{}`", plan.loaded.name),
        time_reference: m.time_reference.as_ref().map(|r| r.get_ref().clone()),
        training_baseline: m.training_baseline.as_ref().map(|r| r.get_ref().clone()),
        notes: summary_notes(plan),
    };
    let records = crate::tables::packed::with_packed_rows(&crate::tables::model_level::with_structure_rows(&records));
    let written = crate::tables::write_tables(&records, out, &opts)?;
    let mut manifest = manifest(plan, out, git.clone(), seconds, ran)?;
    if let Some(previous) = previous {
        for key in ["git_commit", "git_dirty", "cells_run_this_time", "wall_seconds_this_time", "machine", "tools"] {
            if let Some(v) = previous.get(key) {
                manifest[key] = v.clone();
            }
        }
        manifest["tables_rewritten_by_report"] = serde_json::json!({"git_commit": git.0, "git_dirty": git.1});
    }
    atomic::write(&out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    for w in written {
        eprintln!("bench: wrote {}", w.display());
    }
    eprintln!("bench: wrote {}", out.join("manifest.json").display());
    Ok(())
}
/// Protocol lines for summary.md.
fn summary_notes(plan: &Plan) -> Vec<String> {
    let m = &plan.loaded.matrix;
    let rel = plan.path.strip_prefix(crate::workspace::root()).unwrap_or(&plan.path).display().to_string();
    let mut notes = Vec::new();
    if !m.description.trim().is_empty() {
        notes.push(m.description.trim().to_string());
    }
    notes.push(format!("Matrix `{rel}`: {} cells; produced by `cargo xtask bench {rel}`; machine, tools and commit in `manifest.json`, one record per cell in `cells/`.", plan.cells.len()));
    notes.push(format!(
        "Perplexity: wiki-vital eval split, seq_len {}, first {} windows. Calibration (methods that use data): {} x {} tokens from the wiki-vital calibration pool, seeds {:?}. Dense agreement: KL(dense || pruned) in nats per predicted token and top-1 agreement on the first {} eval windows.",
        m.eval.seq_len, m.eval.windows, m.calibration.samples, m.calibration.seq_len, m.calibration.seeds, m.eval.agreement_windows
    ));
    let pruned = || plan.cells.iter().map(|(_, c)| c).filter(|c| c.method.is_some() && c.training.is_none());
    if pruned().any(|c| !c.structured) {
        notes.push("Sparsity is over all linears of all decoder blocks (q, k, v, o, gate, up, down); embeddings, norms and the tied LM head stay dense. Metric seconds = scoring, masking and weight updates (Wanda's \"metric time\"); prune seconds = calibration forward + statistics + metric, end to end.".into());
    }
    if pruned().any(|c| c.structured) {
        notes.push("Structured cells remove whole units (decoder layers; attention heads, each a key/value head with its query heads; MLP channels) and leave a physically smaller model, with no recovery fine-tuning. Their target and \"removed\" count the parameters outside the token embedding and the tied output head.".into());
    }
    if plan.cells.iter().any(|(_, c)| c.training.is_some()) {
        notes.push("Training cells (`prunus finetune`, and the dense fine-tune `dense-finetune`): sparsity is global over all linears of all decoder blocks; their prune seconds are their training seconds; the fine-tuning section gives their budget and schedule.".into());
    }
    for g in &m.gates {
        notes.push(format!("Gate: dense {} {} {} must be {} within {:e} relative, or the pruned cells do not run.", g.model, g.task.get_ref(), g.metric, g.expected, g.tolerance));
    }
    notes
}
fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(crate::workspace::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}
/// (commit, whether tracked files differ from it).
pub fn git_state() -> (String, bool) {
    (command_output("git", &["rev-parse", "HEAD"]), command_output("git", &["status", "--porcelain", "--untracked-files=no"]) != "")
}
/// The value of the first `key` line of /proc/cpuinfo (`model name`, `flags`), if there is one.
pub fn cpuinfo_field(key: &str) -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines().find(|l| l.starts_with(key)).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
}

/// The machine a run's manifest names: cores, memory, CPU model, OS.
pub fn machine() -> serde_json::Value {
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()));
    let cpu = cpuinfo_field("model name");
    serde_json::json!({
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory_bytes": mem_kb.map(|k| k * 1024),
        "cpu": cpu,
        "os": std::env::consts::OS,
    })
}

fn manifest(plan: &Plan, out: &Path, git: (String, bool), seconds: f64, ran: usize) -> Result<serde_json::Value> {
    let rel = plan.path.strip_prefix(crate::workspace::root()).unwrap_or(&plan.path).display().to_string();
    let records: Vec<_> = plan.cells.iter().filter_map(|(k, _)| existing(out, k)).collect();
    let commits: std::collections::BTreeSet<&str> = records.iter().map(|r| r.report.git_commit.as_str()).collect();
    // The binary's own `--version` when the bench ran it; when reporting, the versions the
    // records name, in the same words.
    let prunus = match &plan.prunus {
        Some(p) => command_output(&p.display().to_string(), &["--version"]),
        None => {
            let versions: std::collections::BTreeSet<&str> = records.iter().map(|r| r.report.prunus_version.as_str()).collect();
            versions.iter().map(|v| format!("prunus {v}")).collect::<Vec<_>>().join(", ")
        }
    };
    Ok(serde_json::json!({
        "matrix": { "name": plan.loaded.name, "path": rel, "text": plan.loaded.text },
        "cells": plan.cells.iter().map(|(k, c)| serde_json::json!({"key": k, "label": c.label, "pattern": c.pattern, "sparsity": c.sparsity})).collect::<Vec<_>>(),
        "git_commit": git.0,
        "git_dirty": git.1,
        "cell_commits": commits,
        "machine": machine(),
        "tools": {
            "rustc": command_output("rustc", &["--version"]),
            "cargo": crate::cargo::version(),
            "prunus": prunus,
        },
        "cells_run_this_time": ran,
        "wall_seconds_this_time": seconds,
    }))
}
