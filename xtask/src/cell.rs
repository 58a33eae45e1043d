//! One bench cell: the `prunus` command line of its specification, its own process (output
//! in `cells/<key>.log` while it runs, the last lines shown if it fails), and its record,
//! written atomically as `cells/<key>.json` with the process's whole run report.

use std::path::Path;
use std::process::Stdio;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};

use crate::atomic;
use crate::record::{CellRecord, CellSpec, RECORD_VERSION, RunReport, cells_dir};

/// `prunus` arguments of a cell.
fn cell_args(cell: &CellSpec, report: &Path) -> Vec<String> {
    let tasks: Vec<String> = cell.tasks.iter().map(|t| match t.limit {
        Some(l) => format!("{}={l}", t.name),
        None => t.name.clone(),
    }).collect();
    let mut a: Vec<String> = Vec::new();
    let mut push = |xs: &[&str]| a.extend(xs.iter().map(|s| s.to_string()));
    if let Some(t) = &cell.training {
        push(&["finetune", "--model", &cell.model, "--eval", &tasks.join(",")]);
        if let Some(method) = &cell.method {
            push(&["--method", method, "--sparsity", &cell.sparsity.to_string(), "--initial-sparsity", &t.initial_sparsity.to_string()]);
            push(&["--prune-start", &t.prune_start.to_string(), "--prune-end", &t.prune_end.to_string(), "--prune-every", &t.prune_every.to_string()]);
            if !cell.config.is_null() {
                push(&["--config", &cell.config.to_string()]);
            }
        }
        push(&["--steps", &t.steps.to_string(), "--batch", &t.batch.to_string(), "--accumulate", &t.accumulate.to_string(), "--window", &t.window.to_string()]);
        push(&["--lr", &t.lr.to_string(), "--warmup", &t.warmup.to_string(), "--decay", &t.decay, "--final-lr", &t.final_lr.to_string()]);
        if let Some(c) = t.clip {
            push(&["--clip", &c.to_string()]);
        }
        push(&["--seed", &cell.calibration.seed.to_string(), "--eval-every", &t.eval_every.to_string(), "--eval-windows", &t.eval_windows.to_string()]);
        push(&["--seq-len", &cell.eval.seq_len.to_string(), "--max-windows", &cell.eval.windows.to_string()]);
        push(&["--report", &report.display().to_string()]);
        return a;
    }
    match &cell.method {
        None => push(&["eval", "--model", &cell.model, "--task", &tasks.join(",")]),
        Some(method) if cell.structured => {
            push(&["prune", "--model", &cell.model, "--method", method, "--unit", &cell.pattern.replace('_', "-")]);
            push(&["--reduction", &cell.sparsity.to_string(), "--eval", &tasks.join(",")]);
            if let Some(b) = &cell.budget_of {
                push(&["--budget-of", b]);
            }
        }
        Some(method) => {
            push(&["prune", "--model", &cell.model, "--method", method, "--pattern", &cell.pattern]);
            push(&["--sparsity", &cell.sparsity.to_string(), "--eval", &tasks.join(",")]);
            if cell.speed {
                push(&["--speed"]);
            }
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
/// Runs one cell of matrix `matrix` in its own `prunus` process and writes its record
/// atomically into `out`'s records.
pub fn run(prunus: &Path, out: &Path, matrix: &str, key: &str, cell: &CellSpec) -> Result<CellRecord> {
    let dir = cells_dir(out);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let pid = std::process::id();
    let report_path = dir.join(format!(".{key}.report.{pid}.tmp"));
    let log_path = dir.join(format!("{key}.log"));
    let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let args = cell_args(cell, &report_path);
    let start = Instant::now();
    let status = crate::prunus::command(prunus)
        .args(&args)
        .env("NO_COLOR", "1")
        .stdout(log.try_clone()?)
        .stderr(log)
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("could not start {}", prunus.display()))?;
    let wall_seconds = start.elapsed().as_secs_f64();
    if !status.success() {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect();
        bail!("cell {} ({} {}) failed ({status}); command: prunus {}\n{}", key, cell.label, cell.pattern, args.join(" "), tail.join("\n"));
    }
    let text = std::fs::read_to_string(&report_path).with_context(|| format!("reading {}", report_path.display()))?;
    let report: RunReport = serde_json::from_str(&text).with_context(|| format!("parsing {}", report_path.display()))?;
    let _ = std::fs::remove_file(&report_path);
    let record = CellRecord {
        record_version: RECORD_VERSION,
        key: key.to_string(),
        matrix: matrix.to_string(),
        cell: cell.clone(),
        wall_seconds,
        finished_unix: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        report,
    };
    atomic::write(&dir.join(format!("{key}.json")), serde_json::to_string_pretty(&record)?.as_bytes())?;
    let _ = std::fs::remove_file(&log_path);
    Ok(record)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{TaskSpec, sample_cell as cell};

    #[test]
    fn cell_args_pass_config_calibration_tasks_and_limits() {
        let mut c = cell();
        c.tasks.push(TaskSpec { name: "mc:piqa".into(), limit: Some(100) });
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("prune --model default --method swiftprune --pattern 2:4 --sparsity 0.5 --eval ppl:wiki-vital,mc:piqa=100"), "{a}");
        assert!(a.contains("--calib-samples 32 --calib-seq-len 512 --seed 0 --agreement-windows 8"), "{a}");
        assert!(a.contains("--report /tmp/r.json"), "{a}");
        assert!(!a.contains("--speed"), "{a}");
        c.speed = true;
        assert!(cell_args(&c, Path::new("/tmp/r.json")).join(" ").contains("--pattern 2:4 --sparsity 0.5 --eval ppl:wiki-vital,mc:piqa=100 --speed"));
        c.structured = true;
        c.pattern = "query_head".into();
        c.sparsity = 0.2;
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("prune --model default --method swiftprune --unit query-head --reduction 0.2 --eval"), "{a}");
        assert!(!a.contains("--budget-of"), "{a}");
        c.budget_of = Some("all".into());
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.contains("--budget-of all"), "{a}");
        c.budget_of = None;
        c.method = None;
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("eval --model default --task ppl:wiki-vital,mc:piqa=100 --seq-len 512 --max-windows 64"), "{a}");
        c.structured = false;
        c.training = Some(crate::record::TrainSpec {
            steps: 40, batch: 2, accumulate: 2, window: 512, lr: 5e-5, warmup: 0, decay: "linear".into(), final_lr: 0.1, clip: None,
            initial_sparsity: 0.3, prune_start: 4, prune_end: 30, prune_every: 2, eval_every: 10, eval_windows: 4,
        });
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.starts_with("finetune --model default --eval ppl:wiki-vital,mc:piqa=100 --steps 40 --batch 2 --accumulate 2 --window 512"), "{a}");
        assert!(!a.contains("--method") && !a.contains("--calib"), "a dense fine-tune: {a}");
        c.method = Some("mgpp".into());
        c.sparsity = 0.7;
        let a = cell_args(&c, Path::new("/tmp/r.json")).join(" ");
        assert!(a.contains("--method mgpp --sparsity 0.7 --initial-sparsity 0.3 --prune-start 4 --prune-end 30 --prune-every 2 --config"), "{a}");
        assert!(a.contains("--seed 0 --eval-every 10 --eval-windows 4 --seq-len 512 --max-windows 64 --report /tmp/r.json"), "{a}");
    }
}
