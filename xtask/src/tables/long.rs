//! The long table: one row per cell x task x metric, columns [`COLUMNS`] (`runs.parquet`,
//! `runs.csv`).

use std::collections::HashSet;

use anyhow::{Result, bail};
use polars::prelude::*;

use super::settings::{Orders, cmp_setting, method_label, rank};
use crate::record::CellRecord;
use prunus_report::{Evaluation, Seconds};

/// Columns of [`long_frame`], in order.
pub const COLUMNS: [&str; 32] = [
    "matrix",
    "key",
    "model",
    "model_sha256",
    "method",
    "method_name",
    "method_version",
    "config",
    "pattern",
    "sparsity_requested",
    "sparsity_realised",
    "task",
    "task_version",
    "metric",
    "value",
    "stderr",
    "docs",
    "seed",
    "calib_samples",
    "eval_windows",
    "git_commit",
    "seconds_load",
    "seconds_calibration_forward",
    "seconds_statistics",
    "seconds_score_and_mask",
    "seconds_prune_total",
    "seconds_evaluation",
    "seconds_total",
    "wall_seconds",
    "peak_rss_bytes",
    "threads",
    "finished_unix",
];


/// One row per cell x task x metric, columns [`COLUMNS`], sorted by model, method, setting,
/// calibration seed, task (orders of first appearance, dense first), metric and cell key.
///
/// Errors if a cell key appears twice or a cell reports a task's metric twice.
pub fn long_frame(records: &[CellRecord]) -> Result<DataFrame> {
    let orders = Orders::new(records);
    let mut keys = HashSet::new();
    let mut rows: Vec<(&CellRecord, Option<&Evaluation>)> = Vec::new();
    for r in records {
        if !keys.insert(r.key.as_str()) {
            bail!("cell {} appears twice in the records", r.key);
        }
        let mut seen = HashSet::new();
        for e in &r.report.evaluations {
            if !seen.insert((e.task.as_str(), e.metric.as_str())) {
                bail!("cell {} reports {} {} twice", r.key, e.task, e.metric);
            }
            rows.push((r, Some(e)));
        }
        if r.report.evaluations.is_empty() {
            rows.push((r, None));
        }
    }
    rows.sort_by(|(a, ea), (b, eb)| {
        let task = |e: &Option<&Evaluation>| e.map_or(usize::MAX, |e| rank(&orders.tasks, &e.task));
        let metric = |e: &Option<&Evaluation>| e.map(|e| e.metric.clone());
        rank(&orders.models, &a.report.model.label)
            .cmp(&rank(&orders.models, &b.report.model.label))
            .then(
                rank(&orders.methods, method_label(a)).cmp(&rank(&orders.methods, method_label(b))),
            )
            .then(cmp_setting(
                (&a.cell.setting_pattern(), a.cell.sparsity),
                (&b.cell.setting_pattern(), b.cell.sparsity),
            ))
            .then(a.cell.calibration.seed.cmp(&b.cell.calibration.seed))
            .then(task(ea).cmp(&task(eb)))
            .then(metric(ea).cmp(&metric(eb)))
            .then(a.key.cmp(&b.key))
    });

    type Row<'a> = (&'a CellRecord, Option<&'a Evaluation>);
    let text = |name: &str, f: &dyn Fn(&Row) -> Option<String>| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let float = |name: &str, f: &dyn Fn(&Row) -> Option<f64>| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let uint = |name: &str, f: &dyn Fn(&Row) -> Option<u64>| {
        Column::new(name.into(), rows.iter().map(f).collect::<Vec<_>>())
    };
    let secs = |name: &str, f: fn(&Seconds) -> f64| {
        float(name, &|(r, _)| Some(f(&r.report.seconds)))
    };

    let columns = vec![
        text("matrix", &|(r, _)| Some(r.matrix.clone())),
        text("key", &|(r, _)| Some(r.key.clone())),
        text("model", &|(r, _)| Some(r.report.model.label.clone())),
        text("model_sha256", &|(r, _)| {
            Some(r.report.model.sha256.clone())
        }),
        text("method", &|(r, _)| Some(method_label(r).to_string())),
        text("method_name", &|(r, _)| {
            r.report
                .method
                .as_ref()
                .map(|m| m.name.clone())
                .or_else(|| r.cell.method.clone())
        }),
        text("method_version", &|(r, _)| {
            r.report.method.as_ref().map(|m| m.version.clone())
        }),
        text("config", &|(r, _)| {
            let config = r
                .report
                .method
                .as_ref()
                .map_or(&r.cell.config, |m| &m.config);
            Some(serde_json::to_string(config).expect("a JSON value serialises"))
        }),
        text("pattern", &|(r, _)| Some(r.cell.setting_pattern())),
        float("sparsity_requested", &|(r, _)| Some(r.cell.sparsity)),
        float("sparsity_realised", &|(r, _)| {
            r.report.sparsity.as_ref().map(|s| s.realised)
        }),
        text("task", &|(_, e)| e.map(|e| e.task.clone())),
        uint("task_version", &|(_, e)| {
            e.map(|e| u64::from(e.task_version))
        }),
        text("metric", &|(_, e)| e.map(|e| e.metric.clone())),
        float("value", &|(_, e)| e.map(|e| e.value)),
        float("stderr", &|(_, e)| e.and_then(|e| e.stderr)),
        uint("docs", &|(_, e)| e.and_then(|e| e.docs).map(|d| d as u64)),
        uint("seed", &|(r, _)| Some(r.cell.calibration.seed)),
        uint("calib_samples", &|(r, _)| {
            Some(r.cell.calibration.samples as u64)
        }),
        uint("eval_windows", &|(r, _)| Some(r.cell.eval.windows as u64)),
        text("git_commit", &|(r, _)| Some(r.report.git_commit.clone())),
        secs("seconds_load", |s| s.load),
        secs("seconds_calibration_forward", |s| s.calibration_forward),
        secs("seconds_statistics", |s| s.statistics),
        secs("seconds_score_and_mask", |s| s.score_and_mask),
        secs("seconds_prune_total", |s| s.prune_total),
        secs("seconds_evaluation", |s| s.evaluation),
        secs("seconds_total", |s| s.total),
        float("wall_seconds", &|(r, _)| Some(r.wall_seconds)),
        uint("peak_rss_bytes", &|(r, _)| r.report.peak_rss_bytes),
        uint("threads", &|(r, _)| Some(r.report.threads as u64)),
        uint("finished_unix", &|(r, _)| Some(r.finished_unix)),
    ];
    debug_assert!(columns.iter().map(|c| c.name().as_str()).eq(COLUMNS));
    Ok(DataFrame::new(rows.len(), columns)?)
}
