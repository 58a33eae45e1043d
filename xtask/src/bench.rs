//! `cargo xtask bench [MATRIX]`.
//!
//! The bench fetches and verifies the assets (through `prunus assets`), expands a matrix
//! (benchmarks/*.toml, see matrix.rs) into cells and runs each cell in its own release-built
//! `prunus` process (isolation; the process's peak memory is in its report). A finished cell
//! is written atomically to `bench-runs/<matrix>/cells/<key>.json` (the run directory, not
//! committed; keys in plan.rs), so a rerun skips finished cells and a run killed at any
//! moment resumes without losing or duplicating one. When every cell is there, the tables are
//! written into the run directory and every cell is compared with the committed record of the
//! same key in `results/<matrix>/` (outputs.rs, compare.rs); `--update` then makes the run the
//! committed results. `--shard I/N` runs a disjoint slice (for job arrays); `cargo xtask
//! report` merges all records into the tables once every cell is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::atomic;
use crate::matrix::Shard;
use crate::outputs::{ResultsArgs, finish, git_state, write_outputs};
use crate::plan::{Plan, absolute, cells_dir, existing, plan, results_dir, same_dir};
use crate::record::{CellRecord, CellSpec, RECORD_VERSION, Report};

#[derive(clap::Args)]
pub struct Args {
    /// The matrix file (TOML; schema in benchmarks/README.md).
    #[arg(default_value = "benchmarks/default.toml")]
    matrix: PathBuf,
    /// Run only the I-th of N disjoint slices of the cells (1-based, e.g. 2/4); merge with
    /// `cargo xtask report` when all shards are done.
    #[arg(long, value_name = "I/N")]
    shard: Option<Shard>,
    /// The run directory (default: bench-runs/<matrix file stem>): records, tables, comparison.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this `prunus` binary instead of building it (`cargo build --release -p prunus-cli`).
    #[arg(long, env = "PRUNUS_BIN")]
    prunus: Option<PathBuf>,
    /// Validate the matrix and list its cells (with keys and whether each is done); run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Discard the run directory's finished cells and run every cell again (without it, an
    /// interrupted run resumes).
    #[arg(long)]
    fresh: bool,
    #[command(flatten)]
    results: ResultsArgs,
}
/// `prunus` arguments of a cell.
fn cell_args(cell: &CellSpec, report: &Path) -> Vec<String> {
    let tasks: Vec<String> = cell.tasks.iter().map(|t| match t.limit {
        Some(l) => format!("{}={l}", t.name),
        None => t.name.clone(),
    }).collect();
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    match &cell.method {
        None => push(&["eval", "--model", &cell.model, "--task", &tasks.join(",")]),
        Some(method) if cell.structured => {
            push(&["prune", "--model", &cell.model, "--method", method, "--unit", &cell.pattern.replace('_', "-")]);
            push(&["--reduction", &cell.sparsity.to_string(), "--eval", &tasks.join(",")]);
        }
        Some(method) => {
            push(&["prune", "--model", &cell.model, "--method", method, "--pattern", &cell.pattern]);
            push(&["--sparsity", &cell.sparsity.to_string(), "--eval", &tasks.join(",")]);
        }
    }
    if cell.method.is_some() {
        if !cell.config.is_null() {
            push(&["--config", &cell.config.to_string()]);
        }
        let c = &cell.calibration;
        push(&["--calib-samples", &c.samples.to_string(), "--calib-seq-len", &c.seq_len.to_string(), "--seed", &c.seed.to_string()]);
        push(&["--agreement-windows", &cell.eval.agreement_windows.to_string()]);
    }
    push(&["--seq-len", &cell.eval.seq_len.to_string(), "--max-windows", &cell.eval.windows.to_string()]);
    push(&["--report", &report.display().to_string()]);
    a
}
/// Runs one cell in its own process and writes its record atomically.
fn run_cell(plan: &Plan, key: &str, cell: &CellSpec) -> Result<CellRecord> {
    let dir = cells_dir(&plan.out);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pid = std::process::id();
    let report_path = dir.join(format!(".{key}.report.{pid}.tmp"));
    let log_path = dir.join(format!("{key}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let args = cell_args(cell, &report_path);
    let start = Instant::now();
    let status = Command::new(&plan.prunus)
        .args(&args)
        .env("NO_COLOR", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start {}", plan.prunus.display()))?;
    let wall_seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("cell {} ({} {}) failed ({status}); command: prunus {}\n{}", key, cell.label, cell.pattern, args.join(" "), tail.join("\n"));
    }
    let text = std::fs::read_to_string(&report_path).with_context(|| format!("reading {}", report_path.display()))?;
    let report: Report = serde_json::from_str(&text).with_context(|| format!("parsing {}", report_path.display()))?;
    let _ = std::fs::remove_file(&report_path);
    let record = CellRecord {
        record_version: RECORD_VERSION,
        key: key.to_string(),
        matrix: plan.loaded.name.clone(),
        cell: cell.clone(),
        wall_seconds,
        finished_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        report,
    };
    atomic::write(&dir.join(format!("{key}.json")), serde_json::to_string_pretty(&record)?.as_bytes())?;
    let _ = std::fs::remove_file(&log_path);
    Ok(record)
}
/// The gate failures of `model`'s dense record, as messages.
fn gate_failures(plan: &Plan, model: &str, dense: &CellRecord) -> Vec<String> {
    let mut out = Vec::new();
    for g in plan.loaded.matrix.gates.iter().filter(|g| g.model == model) {
        let found = dense.report.evaluations.iter().find(|e| &e.task == g.task.get_ref() && e.metric == g.metric);
        match found {
            None => out.push(format!("dense {} has no {} {}", model, g.task.get_ref(), g.metric)),
            Some(e) => {
                let rel = (e.value - g.expected).abs() / g.expected.abs().max(f64::MIN_POSITIVE);
                if !(rel <= g.tolerance) {
                    out.push(format!(
                        "dense {} {} {} = {} but the matrix expects {} (relative tolerance {:e}); off by {:+} ({:.3e} relative)",
                        model,
                        g.task.get_ref(),
                        g.metric,
                        e.value,
                        g.expected,
                        g.tolerance,
                        e.value - g.expected,
                        rel
                    ));
                }
            }
        }
    }
    out
}
pub fn run(args: Args) -> Result<()> {
    let plan = plan(&args.matrix, args.out.as_deref(), args.prunus.as_deref(), true)?;
    if args.dry_run {
        for (i, (key, c)) in plan.cells.iter().enumerate() {
            let done = if existing(&plan.out, key).is_some() { "done" } else { "todo" };
            let shard = args.shard.map_or(String::new(), |s| if s.owns(i) { " (this shard)".into() } else { String::new() });
            println!("{key} {done} {} {} {} {}{shard}", c.model, c.label, c.pattern, c.sparsity);
        }
        return Ok(());
    }
    let committed = args.results.compare_with.as_deref().map(absolute).unwrap_or_else(|| results_dir(&plan.loaded.name));
    if same_dir(&plan.out, &committed) && (args.fresh || args.results.update) {
        bail!("--out is the committed results directory {}; --fresh and --update work on a run directory of their own", committed.display());
    }
    // The run directory must be usable before the first cell spends its minutes.
    let cells = cells_dir(&plan.out);
    std::fs::create_dir_all(&cells).with_context(|| format!("the run directory {} cannot be created or is not a directory", plan.out.display()))?;
    if args.fresh {
        discard_records(&plan.out)?;
    }
    let started = Instant::now();
    let git = git_state();
    let owned: Vec<usize> = (0..plan.cells.len()).filter(|&i| args.shard.is_none_or(|s| s.owns(i))).collect();
    // Dense cells gate the pruned cells of their model: a shard with pruned cells of a gated
    // model also needs that model's dense record (run here if no shard has written it yet).
    let mut todo: Vec<usize> = Vec::new();
    for &i in &owned {
        let cell = &plan.cells[i].1;
        if cell.method.is_some() && plan.loaded.matrix.gates.iter().any(|g| g.model == cell.model) {
            if let Some(d) = plan.cells.iter().position(|(_, c)| c.method.is_none() && c.model == cell.model)
                && !todo.contains(&d)
                && !owned.contains(&d)
            {
                todo.push(d);
            }
        }
    }
    todo.extend(owned.iter().copied());
    todo.sort_by_key(|&i| (plan.cells[i].1.method.is_some(), i));
    todo.dedup();

    let done: Vec<CellRecord> = todo.iter().filter_map(|&i| existing(&plan.out, &plan.cells[i].0)).collect();
    eprintln!(
        "bench: {} ({} cells{}, {} already done) -> {}",
        plan.path.display(),
        todo.len(),
        args.shard.map(|s| format!(", shard {}/{}", s.index, s.count)).unwrap_or_default(),
        done.len(),
        plan.out.display()
    );
    let other_commits = done.iter().filter(|r| r.report.git_commit != git.0).count();
    if other_commits > 0 {
        eprintln!("bench: {other_commits} of the finished cells were recorded at another commit than {}; `--fresh` runs them again", short(&git.0));
    }
    let pb = ProgressBar::new(todo.len() as u64);
    pb.set_style(ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} cells, {msg}").expect("template").progress_chars("=> "));
    pb.set_prefix("bench");
    let (mut ran, mut ran_seconds) = (0usize, 0.0f64);
    let mut dense: BTreeMap<String, CellRecord> = BTreeMap::new();
    for (n, &i) in todo.iter().enumerate() {
        let (key, cell) = &plan.cells[i];
        if cell.method.is_some()
            && let Some(d) = dense.get(&cell.model)
        {
            let fails = gate_failures(&plan, &cell.model, d);
            if !fails.is_empty() {
                pb.abandon();
                bail!("dense-baseline gate failed, refusing to run the pruned cells:\n  {}", fails.join("\n  "));
            }
        }
        let record = match existing(&plan.out, key) {
            Some(r) => r,
            None => {
                let remaining = todo.len() - n;
                let eta = if ran > 0 { format!(", about {:.0} min left", ran_seconds / ran as f64 * remaining as f64 / 60.0) } else { String::new() };
                let what = format!("{} {} {} ({key})", cell.label, cell.pattern, cell.sparsity);
                pb.set_message(format!("running {what}{eta}"));
                if pb.is_hidden() {
                    eprintln!("bench: cell {}/{}: running {what}{eta}", n + 1, todo.len());
                }
                let r = run_cell(&plan, key, cell).inspect_err(|_| pb.abandon())?;
                ran += 1;
                ran_seconds += r.wall_seconds;
                let line = format!("bench: {what}: done in {:.0} s", r.wall_seconds);
                if pb.is_hidden() { eprintln!("{line}") } else { pb.println(line) }
                r
            }
        };
        if cell.method.is_none() {
            dense.insert(cell.model.clone(), record);
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    eprintln!("bench: {ran} cells run, {} found done, {:.0} s", todo.len() - ran, started.elapsed().as_secs_f64());
    if args.shard.is_some() {
        eprintln!("bench: shard finished; when every shard is done, `cargo xtask report {}` writes the tables", args.matrix.display());
        return Ok(());
    }
    write_outputs(&plan, &plan.out, git, started.elapsed().as_secs_f64(), ran, None)?;
    finish(&plan, &committed, args.results.update)
}
/// Removes the finished records of a run directory (`--fresh`).
fn discard_records(out: &Path) -> Result<()> {
    let dir = cells_dir(out);
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(()) };
    let mut n = 0;
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json") {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            n += 1;
        }
    }
    eprintln!("bench: --fresh: discarded {n} finished cells in {}", dir.display());
    Ok(())
}
fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}
#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::cell_key;
    use crate::record::{CalibSpec, EvalSpec, TaskSpec};

    fn cell() -> CellSpec {
        CellSpec {
            model: "default".into(),
            method: Some("swiftprune".into()),
            label: "swift".into(),
            config: serde_json::json!({"selection": "quantile", "alpha": 0.125}),
            pattern: "2:4".into(),
            sparsity: 0.5,
            tasks: vec![TaskSpec { name: "ppl:wiki-vital".into(), limit: None }],
            calibration: CalibSpec { samples: 32, seq_len: 512, seed: 0 },
            eval: EvalSpec { seq_len: 512, windows: 64, agreement_windows: 8 },
            structured: false,
        }
    }

    #[test]
    fn key_depends_on_every_field_and_the_model_but_not_on_key_order() {
        let base = cell_key(&cell(), "abc");
        let mut reordered = cell();
        reordered.config = serde_json::from_str(r#"{"alpha": 0.125, "selection": "quantile"}"#).unwrap();
        assert_eq!(cell_key(&reordered, "abc"), base);
        assert_ne!(cell_key(&cell(), "abd"), base);
        let mut other = cell();
        other.calibration.seed = 1;
        assert_ne!(cell_key(&other, "abc"), base);
        let mut other = cell();
        other.tasks[0].limit = Some(10);
        assert_ne!(cell_key(&other, "abc"), base);
        assert_eq!(base.len(), 16);
    }

    #[test]
    fn records_keep_the_whole_report() {
        let text = r#"{"git_commit": "c", "threads": 2, "calibration": {"offsets": [5, 9]},
            "model": {"label": "m", "sha256": "s", "n_params": 3, "format": "gguf"},
            "sparsity": {"pattern": "2:4", "requested": 0.5, "realised": 0.5, "per_layer": [{"name": "q", "notes": {"damping_retries": 1}}]},
            "evaluations": [{"task": "ppl:wiki-vital", "task_version": 1, "metric": "ppl", "value": 14.9, "windows": 64}],
            "seconds": {"load": 1.0, "tokenize": 0.5, "save": 0.25}}"#;
        let report: Report = serde_json::from_str(text).unwrap();
        let back = serde_json::to_value(&report).unwrap();
        assert_eq!(back["calibration"]["offsets"], serde_json::json!([5, 9]));
        assert_eq!(back["model"]["format"], "gguf");
        assert_eq!(back["sparsity"]["per_layer"][0]["notes"]["damping_retries"], 1);
        assert_eq!(back["evaluations"][0]["windows"], 64);
        assert_eq!(back["seconds"]["tokenize"], 0.5);
    }

    #[test]
    fn cell_args_pass_config_calibration_tasks_and_limits() {
        let mut c = cell();
        c.tasks.push(TaskSpec { name: "mc:piqa".into(), limit: Some(100) });
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("prune --model default --method swiftprune --pattern 2:4 --sparsity 0.5 --eval ppl:wiki-vital,mc:piqa=100"), "{a}");
        assert!(a.contains("--calib-samples 32 --calib-seq-len 512 --seed 0 --agreement-windows 8"), "{a}");
        assert!(a.contains("--report /tmp/r.json"), "{a}");
        c.structured = true;
        c.pattern = "query_head".into();
        c.sparsity = 0.2;
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("prune --model default --method swiftprune --unit query-head --reduction 0.2 --eval"), "{a}");
        c.method = None;
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("eval --model default --task ppl:wiki-vital,mc:piqa=100 --seq-len 512 --max-windows 64"), "{a}");
    }
}
