//! `cargo xtask bench`: the default matrix, one `prunus` process per cell.
//!
//! Cells: the dense model, then magnitude and Wanda at 50% unstructured and 2:4, all on
//! SmolLM2-135M-Instruct with wiki-vital perplexity (seq_len 512, 64 windows) and 32 x 512
//! calibration windows (seed 0). Each cell writes its JSON run report into
//! `results/default/reports/`; the table (summary.md) and a manifest are written from them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use prunus_eval::report::RunReport;

#[derive(clap::Args)]
pub struct Args {
    /// Output directory for reports, summary.md and manifest.json.
    #[arg(long, default_value = "results/default")]
    out: PathBuf,
    /// Evaluation window length in tokens.
    #[arg(long, default_value_t = 512)]
    seq_len: usize,
    /// Number of evaluation windows.
    #[arg(long, default_value_t = 64)]
    max_windows: usize,
    /// Calibration windows (of --seq-len tokens) for methods that need activations.
    #[arg(long, default_value_t = 32)]
    calib_samples: usize,
    /// Calibration sampler seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

struct Cell {
    id: String,
    method: Option<&'static str>,
    pattern: &'static str,
}

fn cells() -> Vec<Cell> {
    let mut cells = vec![Cell { id: "dense".into(), method: None, pattern: "dense" }];
    for method in ["magnitude", "wanda"] {
        for pattern in ["unstructured", "2:4"] {
            cells.push(Cell { id: format!("{method}_{}", pattern.replace(':', "-")), method: Some(method), pattern });
        }
    }
    cells
}

pub fn run(args: Args) -> Result<()> {
    let root = crate::root();
    crate::assets::run()?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(&root)
        .args(["build", "--release", "-p", "prunus-cli"])
        .status()
        .context("could not start `cargo build`")?;
    if !status.success() {
        bail!("building prunus failed ({status})");
    }
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| root.join("target"));
    let prunus = target.join("release").join("prunus");
    let out = if args.out.is_absolute() { args.out.clone() } else { root.join(&args.out) };
    let reports_dir = out.join("reports");
    std::fs::create_dir_all(&reports_dir).with_context(|| format!("creating {}", reports_dir.display()))?;

    let cells = cells();
    let started = Instant::now();
    // The state of the checkout when the run starts (the binary was just built from it).
    let git = git_state();
    let mut reports = Vec::new();
    for (i, cell) in cells.iter().enumerate() {
        eprintln!("bench: cell {}/{}: {} ({:.0} s elapsed)", i + 1, cells.len(), cell.id, started.elapsed().as_secs_f64());
        let report = reports_dir.join(format!("{}.json", cell.id));
        let mut cmd = Command::new(&prunus);
        let common = [
            "--seq-len".to_string(),
            args.seq_len.to_string(),
            "--max-windows".to_string(),
            args.max_windows.to_string(),
            "--report".to_string(),
            report.display().to_string(),
        ];
        match cell.method {
            None => {
                cmd.args(["eval", "--model", "default", "--task", "ppl:wiki-vital"]).args(&common);
            }
            Some(method) => {
                cmd.args(["prune", "--model", "default", "--method", method, "--sparsity", "0.5"])
                    .args(["--pattern", cell.pattern, "--eval", "ppl:wiki-vital"])
                    .args(["--calib-samples", &args.calib_samples.to_string(), "--seed", &args.seed.to_string()])
                    .args(&common);
            }
        }
        let status = cmd.status().with_context(|| format!("could not start {}", prunus.display()))?;
        if !status.success() {
            bail!("cell {} failed ({status}); its command: {cmd:?}", cell.id);
        }
        reports.push(read_report(&report)?);
    }
    let table = render_table(&cells, &reports);
    println!("{table}");
    let summary = render_summary(&args, &reports, &table);
    write_atomic(&out.join("summary.md"), summary.as_bytes())?;
    let manifest = manifest(&args, git, started.elapsed().as_secs_f64())?;
    write_atomic(&out.join("manifest.json"), serde_json::to_string_pretty(&manifest)?.as_bytes())?;
    eprintln!("bench: wrote {} in {:.0} s", out.display(), started.elapsed().as_secs_f64());
    Ok(())
}

fn read_report(path: &Path) -> Result<RunReport> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn ppl(r: &RunReport) -> Option<f64> {
    r.evaluations.iter().find(|e| e.metric == "ppl").map(|e| e.value)
}

/// The table printed and put into summary.md.
fn render_table(cells: &[Cell], reports: &[RunReport]) -> String {
    let mut t = String::from(
        "| method | pattern | sparsity (requested) | sparsity (realised) | wiki-vital ppl | score+mask s | prune s (end to end) |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for (cell, r) in cells.iter().zip(reports) {
        let ppl = ppl(r).map(|p| format!("{p:.3}")).unwrap_or_else(|| "-".into());
        match &r.sparsity {
            None => t += &format!("| dense | - | 0 | 0 | {ppl} | - | - |\n"),
            Some(s) => {
                t += &format!(
                    "| {} | {} | {:.4} | {:.6} | {ppl} | {:.2} | {:.1} |\n",
                    cell.method.unwrap_or("-"),
                    s.pattern,
                    s.requested,
                    s.realised,
                    r.seconds.score_and_mask,
                    r.seconds.prune_total
                )
            }
        }
    }
    t
}

fn render_summary(args: &Args, reports: &[RunReport], table: &str) -> String {
    let first = &reports[0];
    let eval = first.evaluations.iter().find(|e| e.metric == "ppl");
    let mut s = String::new();
    s += "# prunus default benchmark\n\n";
    s += &format!("Model: {} (`{}`, sha256 `{}`), {} parameters.\n\n", first.model.label, first.model.format, first.model.sha256, first.model.n_params);
    if let Some(e) = eval {
        s += &format!(
            "Perplexity: task `{}` v{}, seq_len {}, {} windows ({} predictions). Protocol: {}\n\n",
            e.task,
            e.task_version,
            e.seq_len.unwrap_or(0),
            e.windows.unwrap_or(0),
            e.predictions.unwrap_or(0),
            e.protocol
        );
    }
    if let Some(c) = reports.iter().find_map(|r| r.calibration.as_ref()) {
        s += &format!(
            "Calibration (methods that use data): {} x {} tokens from the {} {} ({} tokens), seed {}; sampler: {}.\n\n",
            c.n_samples, c.seq_len, c.corpus, c.split, c.stream_tokens, c.seed, c.sampler
        );
    }
    s += "Sparsity is over all linears of all decoder blocks (q, k, v, o, gate, up, down); embeddings, norms and the tied LM head are dense. ";
    s += "`score+mask s` is the time spent scoring, building and applying masks (Wanda's \"metric time\"); `prune s (end to end)` adds the calibration forward passes and statistics.\n\n";
    s += table;
    s += &format!(
        "\nProduced by `cargo xtask bench` (seq_len {}, {} windows, {} calibration samples, seed {}) at commit `{}`; one report per row in `reports/`, machine and tools in `manifest.json`.\n",
        args.seq_len, args.max_windows, args.calib_samples, args.seed, first.git_commit
    );
    s
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

fn manifest(args: &Args, git: (String, bool), seconds: f64) -> Result<serde_json::Value> {
    let mem_kb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok()));
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| c.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()));
    Ok(serde_json::json!({
        "command": format!("cargo xtask bench --seq-len {} --max-windows {} --calib-samples {} --seed {}", args.seq_len, args.max_windows, args.calib_samples, args.seed),
        "git_commit": git.0,
        "git_dirty_at_start": git.1,
        "machine": {
            "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
            "memory_bytes": mem_kb.map(|k| k * 1024),
            "cpu": cpu,
        },
        "tools": { "rustc": command_output("rustc", &["--version"]), "cargo": command_output("cargo", &["--version"]) },
        "wall_seconds": seconds,
    }))
}

/// Writes `bytes` to `path` via a temporary file in the same directory and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
    Ok(())
}
