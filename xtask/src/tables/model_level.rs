//! Structured (model-level) cells: their parameter accounting and measured speed, read from
//! the `structure` section of their run report ([`StructureInfo`]), as rows of the long table (task `structure`)
//! and as one summary table in the shape of the structured-pruning papers: parameters
//! removed, perplexity, zero-shot accuracy and the share of the dense accuracy retained,
//! pruning seconds, tokens per second and the ratio to the dense model measured in the same
//! process, followed by the decoder layers each layer-unit cell removed.

use std::fmt::Write;

use prunus_report::{Evaluation, StructureInfo};

use crate::record::CellRecord;

/// The task name of the synthesized rows.
pub const TASK: &str = "structure";

fn structure(r: &CellRecord) -> Option<&StructureInfo> {
    r.report.structure.as_ref()
}

/// The records with one evaluation row per structure number appended (parameters removed
/// with and without embeddings, pruned and dense tokens per second, their ratio).
pub fn with_structure_rows(records: &[CellRecord]) -> Vec<CellRecord> {
    let mut out = records.to_vec();
    for r in &mut out {
        let Some(s) = structure(r) else { continue };
        let speed = s.speed;
        let rows = [
            ("params_removed", Some(s.params.removed_fraction), "share of the parameters outside the embeddings removed"),
            ("params_removed_incl_embeddings", Some(s.params.removed_fraction_including_embeddings), "share of all parameters removed"),
            ("tokens_per_second", speed.map(|v| v.pruned_tokens_per_second), "evaluation throughput of the pruned model"),
            ("dense_tokens_per_second", speed.map(|v| v.dense_tokens_per_second), "evaluation throughput of the dense model, same process, timed alternately"),
            ("speedup_vs_dense", speed.map(|v| v.speedup), "pruned / dense tokens per second, same process"),
        ];
        for (metric, value, protocol) in rows {
            if let Some(value) = value {
                r.report.evaluations.push(Evaluation::derived(TASK, metric, value, protocol));
            }
        }
    }
    out
}

fn metric(r: &CellRecord, task: &str, metric: &str) -> Option<f64> {
    r.report.evaluations.iter().find(|e| e.task == task && e.metric == metric).map(|e| e.value)
}

/// Mean `acc` over the multiple-choice tasks of a record, with the task names.
fn mean_acc(r: &CellRecord) -> Option<(f64, Vec<String>)> {
    let accs: Vec<(&str, f64)> =
        r.report.evaluations.iter().filter(|e| e.task.starts_with("mc:") && e.metric == "acc").map(|e| (e.task.as_str(), e.value)).collect();
    if accs.is_empty() {
        return None;
    }
    Some((accs.iter().map(|a| a.1).sum::<f64>() / accs.len() as f64, accs.iter().map(|a| a.0.to_string()).collect()))
}

/// The structured-pruning table, or nothing when no record is structured.
pub fn section(records: &[CellRecord]) -> String {
    let structured: Vec<&CellRecord> = records.iter().filter(|r| r.cell.structured && structure(r).is_some()).collect();
    if structured.is_empty() {
        return String::new();
    }
    let mut out = String::from("## Structured pruning\n\n");
    out.push_str(
        "Target: share of the parameters outside the embeddings, or of all parameters where it says `of all` (LLM-Pruner's convention). \
         Removed: share of the parameters outside the embeddings and of all parameters. \
         Accuracy: mean zero-shot `acc` over the cell's multiple-choice tasks; retained = that mean / the dense model's mean on the same tasks. \
         Speed: evaluation tokens per second of the pruned model and its ratio to the dense model, both measured in the cell's own process, timed alternately on the same windows.\n\n",
    );
    out.push_str("| Method | Unit | Target | Removed (excl. emb.) | Removed (all) | ppl | Mean acc | Retained | Prune s | tok/s | × dense |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for &r in &structured {
        let s = structure(r).expect("filtered");
        let dense = records.iter().find(|d| d.cell.is_dense() && d.cell.model == r.cell.model);
        let ppl = r.report.evaluations.iter().find(|e| e.metric == "ppl").map(|e| e.value);
        let acc = mean_acc(r);
        let retained = acc.as_ref().and_then(|(a, tasks)| {
            let d = dense?;
            let dense_accs: Vec<f64> = tasks.iter().filter_map(|t| metric(d, t, "acc")).collect();
            (dense_accs.len() == tasks.len()).then(|| a / (dense_accs.iter().sum::<f64>() / dense_accs.len() as f64))
        });
        let pct = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}%", v * 100.0));
        let f = |v: Option<f64>, d: usize| v.map_or("–".into(), |v| format!("{v:.d$}"));
        writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.cell.label,
            r.cell.pattern,
            format!("{}{}", pct(Some(r.cell.sparsity)), of_all(r)),
            pct(Some(s.params.removed_fraction)),
            pct(Some(s.params.removed_fraction_including_embeddings)),
            f(ppl, 3),
            pct(acc.as_ref().map(|a| a.0)),
            pct(retained),
            f(Some(r.report.seconds.prune_total), 2),
            f(s.speed.map(|v| v.pruned_tokens_per_second), 1),
            s.speed.map_or("–".into(), |v| format!("{:.2}×", v.speedup)),
        )
        .unwrap();
    }
    out.push('\n');
    let layers: Vec<String> = structured
        .iter()
        .filter(|r| r.cell.pattern == "layer")
        .filter_map(|r| {
            let removed: Vec<String> =
                structure(r)?.iterations.iter().flat_map(|it| &it.removed).map(|u| u.layer.to_string()).collect();
            Some(format!("- {} {}{}: {}", r.cell.label, pct(r.cell.sparsity), of_all(r), removed.join(" ")))
        })
        .collect();
    if !layers.is_empty() {
        out.push_str("Decoder layers removed (original indices, in the order removed):\n\n");
        out.push_str(&layers.join("\n"));
        out.push_str("\n\n");
    }
    out.push_str(&per_task(records, &structured));
    out
}

/// The structured-pruning papers' table (LLM-Pruner's Table 1, PIP's): perplexity, accuracy
/// on each zero-shot task, their mean and the share of the dense mean retained, the dense
/// model first; nothing with fewer than two multiple-choice tasks.
fn per_task(records: &[CellRecord], structured: &[&CellRecord]) -> String {
    let mut tasks: Vec<&str> = Vec::new();
    for e in structured.iter().flat_map(|r| &r.report.evaluations) {
        if e.task.starts_with("mc:") && e.metric == "acc" && !tasks.contains(&e.task.as_str()) {
            tasks.push(&e.task);
        }
    }
    if tasks.len() < 2 {
        return String::new();
    }
    let dense: Vec<&CellRecord> = records.iter().filter(|d| d.cell.is_dense() && structured.iter().any(|r| r.cell.model == d.cell.model)).collect();
    let mut out = String::from("### Accuracy per task\n\nZero-shot `acc` per task (%), their mean, and the mean as a share of the dense model's on the same tasks (retained).\n\n");
    let names: Vec<&str> = tasks.iter().map(|t| t.trim_start_matches("mc:")).collect();
    writeln!(out, "| Method | Target | ppl | {} | Mean | Retained |", names.join(" | ")).unwrap();
    writeln!(out, "|---|---:|---:|{}---:|---:|", "---:|".repeat(tasks.len())).unwrap();
    for r in dense.iter().chain(structured) {
        let accs: Vec<Option<f64>> = tasks.iter().map(|t| metric(r, t, "acc")).collect();
        let mean = accs.iter().copied().collect::<Option<Vec<f64>>>().map(|a| a.iter().sum::<f64>() / a.len() as f64);
        let dense_mean = dense.iter().find(|d| d.cell.model == r.cell.model).and_then(|d| {
            let a: Option<Vec<f64>> = tasks.iter().map(|t| metric(d, t, "acc")).collect();
            a.map(|a| a.iter().sum::<f64>() / a.len() as f64)
        });
        let ppl = r.report.evaluations.iter().find(|e| e.metric == "ppl").map_or("–".into(), |e| format!("{:.3}", e.value));
        let cell = |v: Option<f64>| v.map_or("–".into(), |v| format!("{:.1}", v * 100.0));
        let target = if r.cell.is_dense() { "–".to_string() } else { format!("{} {}{}", r.cell.pattern, pct(r.cell.sparsity), of_all(r)) };
        let label = if r.cell.is_dense() { "dense" } else { r.cell.label.as_str() };
        let retained = mean.zip(dense_mean).map_or("–".into(), |(m, d)| format!("{:.1}%", 100.0 * m / d));
        let accs: Vec<String> = accs.into_iter().map(cell).collect();
        writeln!(out, "| {label} | {target} | {ppl} | {} | {} | {retained} |", accs.join(" | "), cell(mean)).unwrap();
    }
    out.push('\n');
    out
}

/// ` of all` for a cell whose target is a share of all parameters.
fn of_all(r: &CellRecord) -> &'static str {
    if r.cell.budget_of.as_deref() == Some("all") { " of all" } else { "" }
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

/// Fixtures of structured records (shared with the tables' tests).
#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A full `structure` section (as the CLI writes it): the removed shares, the speed if
    /// given (pruned and dense tokens per second), and the layers removed per iteration.
    pub(crate) fn structure_json(removed: (f64, f64), speed: Option<(f64, f64)>, iterations: &[&[usize]]) -> serde_json::Value {
        let count = serde_json::json!({"total": 10, "excluding_embeddings": 8});
        let iterations: Vec<serde_json::Value> = iterations
            .iter()
            .enumerate()
            .map(|(i, layers)| {
                let removed: Vec<serde_json::Value> =
                    layers.iter().map(|l| serde_json::json!({"layer": l, "index": 0, "params": 1, "score": 0.5})).collect();
                serde_json::json!({"iteration": i, "candidates": 28, "removed": removed, "reduction": 0.1, "score_seconds": 1.0, "remove_seconds": 0.0})
            })
            .collect();
        let speed = speed.map(|(pruned, dense)| {
            serde_json::json!({"windows": 2, "seq_len": 64, "batch_size": 1, "repeats": 3,
                               "dense_tokens_per_second": dense, "pruned_tokens_per_second": pruned, "speedup": pruned / dense})
        });
        serde_json::json!({"unit": "layer", "requested": 0.2, "protect_first": 1, "protect_last": 1, "schedule": "one-shot",
                           "params": {"before": count, "after": count, "removed_fraction": removed.0, "removed_fraction_including_embeddings": removed.1},
                           "iterations": iterations, "score_seconds": 1.0, "remove_seconds": 0.0, "speed": speed})
    }

    /// A record of a dense cell (`method` none) or a structured layer cell, with the given
    /// `structure` section, accuracies and perplexity.
    pub(crate) fn record(method: Option<&str>, structure: Option<serde_json::Value>, accs: &[(&str, f64)], ppl: f64) -> CellRecord {
        let evals: Vec<serde_json::Value> = std::iter::once(serde_json::json!({"task": "ppl:wiki-vital", "task_version": 1, "metric": "ppl", "value": ppl}))
            .chain(accs.iter().map(|(t, a)| serde_json::json!({"task": t, "task_version": 1, "metric": "acc", "value": a})))
            .collect();
        let mut report = serde_json::json!({
            "git_commit": "c", "model": {"label": "m", "sha256": "s", "n_params": 10},
            "evaluations": evals, "seconds": {"prune_total": 12.5},
        });
        if let Some(s) = structure {
            report["structure"] = s;
        }
        serde_json::from_value(serde_json::json!({
            "record_version": 1, "key": method.unwrap_or("dense"), "matrix": "t", "wall_seconds": 1.0, "finished_unix": 0,
            "cell": {"model": "default", "method": method, "label": method.unwrap_or("dense"), "config": null,
                     "pattern": if method.is_some() { "layer" } else { "dense" }, "sparsity": 0.2, "tasks": [],
                     "calibration": {"samples": 10, "seq_len": 64, "seed": 0},
                     "eval": {"seq_len": 512, "windows": 16, "agreement_windows": 4}, "structured": method.is_some()},
            "report": report,
        }))
        .unwrap()
    }

    #[test]
    fn structured_rows_and_table_use_the_reports_structure_section() {
        let s = structure_json((0.2, 0.158), Some((480.0, 400.0)), &[&[7], &[3, 9]]);
        let records = vec![
            record(None, None, &[("mc:arc_easy", 0.5), ("mc:piqa", 0.7)], 14.2),
            record(Some("pip"), Some(s), &[("mc:arc_easy", 0.4), ("mc:piqa", 0.5)], 40.0),
        ];
        let with = with_structure_rows(&records);
        assert_eq!(with[0].report.evaluations.len(), 3, "the dense cell gets no structure rows");
        let rows: Vec<(&str, f64)> =
            with[1].report.evaluations.iter().filter(|e| e.task == TASK).map(|e| (e.metric.as_str(), e.value)).collect();
        assert_eq!(
            rows,
            [("params_removed", 0.2), ("params_removed_incl_embeddings", 0.158), ("tokens_per_second", 480.0), ("dense_tokens_per_second", 400.0), ("speedup_vs_dense", 1.2)]
        );
        let md = section(&records);
        // Mean acc 45% against the dense 60%: 75% retained.
        assert!(md.contains("| pip | layer | 20.0% | 20.0% | 15.8% | 40.000 | 45.0% | 75.0% | 12.50 | 480.0 | 1.20× |"), "{md}");
        assert!(md.contains("- pip 20%: 7 3 9\n"), "layers in removal order: {md}");
        // The papers' table: per task, mean and retained, dense first.
        assert!(md.contains("| Method | Target | ppl | arc_easy | piqa | Mean | Retained |\n"), "{md}");
        assert!(md.contains("| dense | – | 14.200 | 50.0 | 70.0 | 60.0 | 100.0% |\n| pip | layer 20% | 40.000 | 40.0 | 50.0 | 45.0 | 75.0% |\n"), "{md}");
        assert_eq!(section(&records[..1]), "", "no structured cell, no section");
        // A budget of all parameters says so in the target.
        let mut all = records.clone();
        all[1].cell.budget_of = Some("all".into());
        let md = section(&all);
        assert!(md.contains("| pip | layer | 20.0% of all |") && md.contains("| pip | layer 20% of all | 40.000 |") && md.contains("- pip 20% of all: 7 3 9"), "{md}");
    }
}
