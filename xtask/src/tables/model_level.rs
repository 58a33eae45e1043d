//! Structured (model-level) cells: their parameter accounting and measured speed, taken from
//! the `structure` section of the prunus report, as rows of the long table (task `structure`)
//! and as one summary table in the shape of the structured-pruning papers: parameters
//! removed, perplexity, zero-shot accuracy and the share of the dense accuracy retained,
//! pruning seconds, tokens per second and the ratio to the dense model measured in the same
//! process, followed by the decoder layers each layer-unit cell removed.

use std::fmt::Write;

use crate::record::{CellRecord, Evaluation};

/// The task name of the synthesized rows.
pub const TASK: &str = "structure";

fn num(v: &serde_json::Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn structure(r: &CellRecord) -> Option<&serde_json::Value> {
    r.report.rest.get("structure").filter(|s| !s.is_null())
}

/// The records with one evaluation row per structure number appended (parameters removed
/// with and without embeddings, pruned and dense tokens per second, their ratio).
pub fn with_structure_rows(records: &[CellRecord]) -> Vec<CellRecord> {
    let mut out = records.to_vec();
    for r in &mut out {
        let Some(s) = structure(r).cloned() else { continue };
        let rows = [
            ("params_removed", num(&s, &["params", "removed_fraction"]), "share of the parameters outside the embeddings removed"),
            ("params_removed_incl_embeddings", num(&s, &["params", "removed_fraction_including_embeddings"]), "share of all parameters removed"),
            ("tokens_per_second", num(&s, &["speed", "pruned_tokens_per_second"]), "evaluation throughput of the pruned model"),
            ("dense_tokens_per_second", num(&s, &["speed", "dense_tokens_per_second"]), "evaluation throughput of the dense model, same process, timed alternately"),
            ("speedup_vs_dense", num(&s, &["speed", "speedup"]), "pruned / dense tokens per second, same process"),
        ];
        for (metric, value, protocol) in rows {
            if let Some(value) = value {
                r.report.evaluations.push(Evaluation {
                    task: TASK.into(),
                    task_version: 1,
                    metric: metric.into(),
                    value,
                    stderr: None,
                    docs: None,
                    protocol: protocol.into(),
                    rest: Default::default(),
                });
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
        "Removed: share of the parameters outside the embeddings (what the target counts) and of all parameters. \
         Accuracy: mean zero-shot `acc` over the cell's multiple-choice tasks; retained = that mean / the dense model's mean on the same tasks. \
         Speed: evaluation tokens per second of the pruned model and its ratio to the dense model, both measured in the cell's own process, timed alternately on the same windows.\n\n",
    );
    out.push_str("| Method | Unit | Target | Removed (excl. emb.) | Removed (all) | ppl | Mean acc | Retained | Prune s | tok/s | × dense |\n");
    out.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for &r in &structured {
        let s = structure(r).expect("filtered");
        let dense = records.iter().find(|d| d.cell.method.is_none() && d.cell.model == r.cell.model);
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
            pct(Some(r.cell.sparsity)),
            pct(num(s, &["params", "removed_fraction"])),
            pct(num(s, &["params", "removed_fraction_including_embeddings"])),
            f(ppl, 3),
            pct(acc.as_ref().map(|a| a.0)),
            pct(retained),
            f(Some(r.report.seconds.prune_total), 2),
            f(num(s, &["speed", "pruned_tokens_per_second"]), 1),
            num(s, &["speed", "speedup"]).map_or("–".into(), |v| format!("{v:.2}×")),
        )
        .unwrap();
    }
    out.push('\n');
    let layers: Vec<String> = structured
        .iter()
        .filter(|r| r.cell.pattern == "layer")
        .filter_map(|r| {
            let removed: Vec<String> = structure(r)?["iterations"]
                .as_array()?
                .iter()
                .flat_map(|it| it["removed"].as_array().into_iter().flatten())
                .filter_map(|u| u["layer"].as_u64().map(|l| l.to_string()))
                .collect();
            Some(format!("- {} {}: {}", r.cell.label, pct(r.cell.sparsity), removed.join(" ")))
        })
        .collect();
    if !layers.is_empty() {
        out.push_str("Decoder layers removed (original indices, in the order removed):\n\n");
        out.push_str(&layers.join("\n"));
        out.push_str("\n\n");
    }
    out
}

fn pct(v: f64) -> String {
    format!("{:.0}%", v * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(method: Option<&str>, structure: Option<serde_json::Value>, accs: &[(&str, f64)], ppl: f64) -> CellRecord {
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
        let s = serde_json::json!({"params": {"removed_fraction": 0.2, "removed_fraction_including_embeddings": 0.158},
                                   "speed": {"pruned_tokens_per_second": 480.0, "dense_tokens_per_second": 400.0, "speedup": 1.2},
                                   "iterations": [{"removed": [{"layer": 7, "index": 0}]}, {"removed": [{"layer": 3, "index": 0}, {"layer": 9, "index": 0}]}]});
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
        assert_eq!(section(&records[..1]), "", "no structured cell, no section");
    }

    #[test]
    fn the_summary_counts_no_zeros_in_structured_cells_and_says_what_their_seconds_are() {
        let s = serde_json::json!({"params": {"removed_fraction": 0.2, "removed_fraction_including_embeddings": 0.158}});
        let mut pip = record(Some("pip"), Some(s), &[("mc:arc_easy", 0.4)], 40.0);
        // A structured report's sparsity block holds the removed share, not zeros in linears.
        pip.report.sparsity = Some(serde_json::from_value(serde_json::json!({"pattern": "layer", "requested": 0.2, "realised": 0.2})).unwrap());
        let records = with_structure_rows(&[record(None, None, &[("mc:arc_easy", 0.5)], 14.2), pip]);
        let opts = crate::aggregate::SummaryOptions { title: "t".into(), time_reference: None, notes: vec![] };
        let md = crate::aggregate::summary_markdown(&records, &opts).unwrap();
        assert!(!md.contains("Realised sparsity"), "{md}");
        assert!(md.contains("## Pruning time") && md.contains("For structured cells, score+mask is every scoring iteration"), "{md}");
        assert!(md.contains("## Structured pruning"), "{md}");
    }
}
