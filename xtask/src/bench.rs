//! `cargo xtask bench [MATRIX]`: run a matrix, resumably and shardably, then write its tables
//! and compare them with the committed results.
//!
//! The bench fetches and verifies the assets (through `prunus assets`), expands a matrix
//! (benchmarks/*.toml, see matrix.rs) into cells and runs each cell in its own release-built
//! `prunus` process (cell.rs; isolation; the process's peak memory is in its report). A
//! finished cell is written atomically to `bench-runs/<matrix>/cells/<key>.json` (the run
//! directory, not committed; keys in record.rs), so a rerun skips finished cells and a run killed at any
//! moment resumes without losing or duplicating one. When every cell is there, the tables are
//! written into the run directory and every cell is compared with the committed record of the
//! same key in `results/<matrix>/` (outputs.rs, compare.rs); `--update` then makes the run the
//! committed results. `--shard I/N` runs a disjoint slice (for job arrays); `cargo xtask
//! report` merges all records into the tables once every cell is there.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressStyle};

use crate::matrix::Shard;
use crate::outputs::{ResultsArgs, finish, git_state, write_outputs};
use crate::plan::{self, Plan};
use crate::record::{CellRecord, cells_dir, existing};
use crate::workspace::{absolute, results_dir, same_dir};

/// Arguments of `cargo xtask bench`.
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
/// Runs the matrix (or the shard), then writes the tables and compares them.
pub fn run(args: Args) -> Result<()> {
    if crate::swe::is_scratch(&args.matrix) {
        if args.shard.is_some() {
            bail!("{}: a from-scratch matrix is one training run and one sweep; it has no shards", args.matrix.display());
        }
        return crate::swe::run(&args.matrix, args.out.as_deref(), args.prunus.as_deref(), args.fresh, args.results.update, args.results.compare_with.as_deref(), args.dry_run);
    }
    let plan = plan::for_bench(&args.matrix, args.out.as_deref(), args.prunus.as_deref(), true)?;
    let prunus = plan.prunus.clone().expect("the bench's plan has a prunus binary");
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
    // Dense cells gate the other cells of their model (pruned, fine-tuned): a shard with such
    // cells of a gated model also needs that model's dense record (run here if no shard has written it yet).
    let mut todo: Vec<usize> = Vec::new();
    for &i in &owned {
        let cell = &plan.cells[i].1;
        if !cell.is_dense() && plan.loaded.matrix.gates.iter().any(|g| g.model == cell.model) {
            if let Some(d) = plan.cells.iter().position(|(_, c)| c.is_dense() && c.model == cell.model)
                && !todo.contains(&d)
                && !owned.contains(&d)
            {
                todo.push(d);
            }
        }
    }
    todo.extend(owned.iter().copied());
    todo.sort_by_key(|&i| (!plan.cells[i].1.is_dense(), i));
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
        if !cell.is_dense()
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
                let r = crate::cell::run(&prunus, &plan.out, &plan.loaded.name, key, cell).inspect_err(|_| pb.abandon())?;
                ran += 1;
                ran_seconds += r.wall_seconds;
                let line = format!("bench: {what}: done in {:.0} s", r.wall_seconds);
                if pb.is_hidden() { eprintln!("{line}") } else { pb.println(line) }
                r
            }
        };
        if cell.is_dense() {
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
