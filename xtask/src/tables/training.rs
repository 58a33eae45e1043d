//! Training cells (`prunus finetune`): the fine-tuning section of summary.md and the loss
//! curves, read from the `training` section of their run reports.
//!
//! The section has one row per training cell (budget, final training loss as the mean of its
//! last five steps, the last held-out perplexity, tokens per second, training seconds) and,
//! when the matrix names a `training_baseline` (GMP for MGPP's claim), the final perplexity of
//! each training-time method per sparsity with its ratio to the baseline's, and whether that
//! ratio grows with sparsity, stated from the numbers. The plots are one per final sparsity:
//! the training loss against the step (a trailing mean over 5 steps) of every method at that
//! sparsity and of the dense fine-tune, and the held-out perplexity against the step when the
//! cells logged it more than once.

use std::fmt::Write;

use prunus_report::TrainingInfo;

use super::markdown::{MISSING, Table, fixed, pct};
use crate::plots::{LinePlot, Reference, Series};
use crate::record::CellRecord;

fn training(r: &CellRecord) -> Option<&TrainingInfo> {
    r.report.training.as_ref()
}

/// The final perplexity of a cell (its first `ppl` evaluation).
fn final_ppl(r: &CellRecord) -> Option<f64> {
    r.report.evaluations.iter().find(|e| e.metric == "ppl").map(|e| e.value)
}

fn tail_loss(t: &TrainingInfo) -> Option<f64> {
    let n = t.log.len().min(5);
    (n > 0).then(|| t.log[t.log.len() - n..].iter().map(|s| s.loss).sum::<f64>() / n as f64)
}

/// Cells with a training record, in record order.
fn cells(records: &[CellRecord]) -> Vec<&CellRecord> {
    records.iter().filter(|r| training(r).is_some()).collect()
}

/// Sparsities of the pruning cells, ascending, deduplicated.
fn sparsities(cells: &[&CellRecord]) -> Vec<f64> {
    let mut s: Vec<f64> = cells.iter().filter(|r| r.cell.method.is_some()).map(|r| r.cell.sparsity).collect();
    s.sort_by(f64::total_cmp);
    s.dedup();
    s
}

/// `## Fine-tuning`, or nothing without training cells; with a `baseline` label, the
/// comparison of every other training-time method with it.
pub fn section(records: &[CellRecord], baseline: Option<&str>) -> String {
    let cells = cells(records);
    if cells.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Fine-tuning\n\n");
    let first = training(cells[0]).expect("a training cell");
    // The schedule of the first pruning cell (the dense fine-tune has none).
    let c = &cells.iter().filter_map(|r| training(r)).find(|t| !t.config["prune"].is_null()).unwrap_or(first).config;
    writeln!(
        out,
        "Every cell fine-tunes for {} steps of {} windows x {} tokens from the wiki-vital calibration pool (seed {}), AdamW (betas {}/{}, eps {}, weight decay {}), learning rate {} ({} decay to {}x); the pruning schedule is the same for every method (cubic from step {} to {}, every {} steps). Held-out perplexity: {}.\n",
        c["steps"],
        c["batch"],
        c["seq_len"],
        cells[0].cell.calibration.seed,
        c["adamw"]["beta1"],
        c["adamw"]["beta2"],
        c["adamw"]["eps"],
        c["adamw"]["weight_decay"],
        c["lr"]["peak"],
        c["lr"]["decay"].as_str().unwrap_or("?"),
        c["lr"]["final_multiplier"],
        c["prune"]["start"].as_u64().map_or(MISSING.to_string(), |v| v.to_string()),
        c["prune"]["end"].as_u64().map_or(MISSING.to_string(), |v| v.to_string()),
        c["prune"]["interval"].as_u64().map_or(MISSING.to_string(), |v| v.to_string()),
        first.eval_protocol
    )
    .unwrap();
    let rows = cells
        .iter()
        .map(|r| {
            let t = training(r).expect("filtered");
            let realised = r.report.sparsity.as_ref().map_or(0.0, |s| s.realised);
            vec![
                r.cell.label.clone(),
                pct(r.cell.sparsity),
                pct(realised),
                tail_loss(t).map_or(MISSING.into(), |l| fixed(l, 4)),
                t.evals.last().map_or(MISSING.into(), |e| fixed(e.value, 3)),
                final_ppl(r).map_or(MISSING.into(), |p| fixed(p, 3)),
                fixed(t.tokens_per_s, 1),
                fixed(t.train_seconds, 0),
            ]
        })
        .collect();
    Table {
        header: ["method", "sparsity %", "realised %", "train loss (last 5 steps)", "held-out ppl (last log)", "final ppl", "train tokens/s", "train s"].map(String::from).to_vec(),
        left: 1,
        rows,
    }
    .render(&mut out);
    if let Some(b) = baseline {
        against_baseline(&cells, b, &mut out);
    }
    out
}

/// Each training-time method against `baseline` per sparsity (MGPP's claim: its advantage
/// over GMP grows with sparsity): the final perplexities, the ratio baseline / method (> 1:
/// the method is better), and whether that ratio grows with every step of sparsity.
fn against_baseline(cells: &[&CellRecord], baseline: &str, out: &mut String) {
    let ppl = |label: &str, s: f64| cells.iter().find(|r| r.cell.label == label && r.cell.sparsity == s).and_then(|r| final_ppl(r));
    let levels = sparsities(cells);
    let labels: Vec<&str> = super::markdown::distinct(cells.iter().filter(|r| r.cell.method.is_some()).map(|r| r.cell.label.as_str()));
    if !labels.contains(&baseline) {
        return;
    }
    let others: Vec<&str> = labels.iter().copied().filter(|l| *l != baseline).collect();
    let mut header = vec!["sparsity %".to_string()];
    header.extend(labels.iter().map(|m| format!("{m} ppl")));
    header.extend(others.iter().map(|m| format!("{baseline} / {m}")));
    let mut ratios: Vec<Vec<f64>> = vec![Vec::new(); others.len()];
    let rows = levels
        .iter()
        .map(|&s| {
            let mut row = vec![pct(s)];
            row.extend(labels.iter().map(|m| ppl(m, s).map_or(MISSING.into(), |p| fixed(p, 3))));
            for (i, m) in others.iter().enumerate() {
                let ratio = ppl(baseline, s).zip(ppl(m, s)).map(|(b, x)| b / x);
                ratios[i].extend(ratio);
                row.push(ratio.map_or(MISSING.into(), |r| fixed(r, 3)));
            }
            row
        })
        .collect();
    writeln!(out, "Against `{baseline}` at each final sparsity (final perplexity; a ratio above 1: the method is better than `{baseline}`):\n").unwrap();
    Table { header, left: 1, rows }.render(out);
    for (m, r) in others.iter().zip(&ratios) {
        let trail = r.iter().map(|v| fixed(*v, 3)).collect::<Vec<_>>().join(" -> ");
        let verdict = if r.len() < 2 {
            "fewer than two sparsities: whether it grows cannot be read from this table".to_string()
        } else if r.windows(2).all(|w| w[1] > w[0]) {
            format!("grows with every step of sparsity ({trail})")
        } else {
            format!("does not grow with every step of sparsity ({trail})")
        };
        writeln!(out, "- `{m}` over `{baseline}`: the ratio {verdict}.").unwrap();
    }
    out.push('\n');
}

/// A trailing mean over `k` points.
fn smooth(points: &[(f64, f64)], k: usize) -> Vec<(f64, f64)> {
    (0..points.len())
        .map(|i| {
            let lo = (i + 1).saturating_sub(k);
            let w = &points[lo..=i];
            (points[i].0, w.iter().map(|p| p.1).sum::<f64>() / w.len() as f64)
        })
        .collect()
}

/// The loss (and held-out perplexity) plots, one per final sparsity, with their file names.
pub fn plots(records: &[CellRecord]) -> Vec<(String, LinePlot)> {
    let cells = cells(records);
    let dense: Vec<&&CellRecord> = cells.iter().filter(|r| r.cell.method.is_none()).collect();
    let mut plots = Vec::new();
    for s in sparsities(&cells) {
        let at: Vec<&&CellRecord> = cells.iter().filter(|r| r.cell.method.is_some() && r.cell.sparsity == s).chain(dense.iter().copied()).collect();
        let loss = at
            .iter()
            .map(|r| {
                let log = &training(r).expect("filtered").log;
                let points: Vec<(f64, f64)> = log.iter().map(|p| (p.step as f64, p.loss)).collect();
                Series { label: r.cell.label.clone(), line: smooth(&points, 5), marks: vec![] }
            })
            .collect();
        let tag = format!("{:.0}", s * 100.0);
        plots.push((
            format!("plot_loss_{tag}.svg"),
            LinePlot {
                title: format!("Training loss at {tag}% final sparsity (trailing mean of 5 steps)"),
                x_label: "step".into(),
                y_label: "loss (nats per token)".into(),
                log_y: false,
                legend_upper: true,
                series: loss,
                references: vec![],
            },
        ));
        let heldout: Vec<Series> = at
            .iter()
            .filter_map(|r| {
                let evals = &training(r).expect("filtered").evals;
                (evals.len() > 1).then(|| Series { label: r.cell.label.clone(), line: evals.iter().map(|e| (e.steps_done as f64, e.value)).collect(), marks: vec![] })
            })
            .collect();
        if !heldout.is_empty() {
            let references = records
                .iter()
                .filter(|r| r.cell.is_dense())
                .filter_map(final_ppl)
                .map(|y| Reference { label: "dense, not fine-tuned (all windows)".into(), y })
                .take(1)
                .collect();
            plots.push((
                format!("plot_heldout_{tag}.svg"),
                LinePlot {
                    title: format!("Held-out perplexity during fine-tuning at {tag}% final sparsity (log scale)"),
                    x_label: "steps done".into(),
                    y_label: "perplexity".into(),
                    log_y: true,
                    legend_upper: true,
                    series: heldout,
                    references,
                },
            ));
        }
    }
    plots
}
