//! Aggregation of bench cell records: the long table (`runs.parquet`, `runs.csv`), a summary
//! in the shape of the papers' tables (`summary.md`) and plots (`plot_ppl.svg`,
//! `plot_acc.svg`).
//!
//! - [`long_frame`]: one row per cell x task x metric (a cell without evaluations keeps one
//!   row with null task and metric, so that its timings are not lost), columns [`COLUMNS`].
//! - [`summary_markdown`]: perplexity by method x setting, realised sparsity, agreement with
//!   the dense model, zero-shot accuracy per task with its mean, pruning time with speedups
//!   over a reference method; sections without data are left out.
//! - [`write_tables`]: writes all of the above into a directory.
//!
//! A *setting* is a pattern with its sparsity, labelled `dense`, `50%` (unstructured) or `2:4`
//! (N:M), ordered dense, unstructured by sparsity, then N:M by sparsity with the larger group
//! first (`50%`, `4:8`, `2:4`, as in the papers' tables).
//!
//! Cells sharing model, method, setting (they differ only by calibration seed) are averaged
//! in the summary and the plots; the long table keeps every cell.
//!
//! Everything is a function of the records and their order: methods, models and tasks appear
//! in order of first appearance in `records` (the dense rows first), so pass the records in
//! matrix order. Nothing reads the clock.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use polars::prelude::*;

use crate::plots::{self, LinePlot, Reference, Series as Curve};
use crate::record::{CellRecord, Evaluation};

/// What the summary says besides the records' numbers.
#[derive(Debug, Clone, Default)]
pub struct SummaryOptions {
    /// First heading of summary.md.
    pub title: String,
    /// Method label whose pruning time the others' are divided by ("x faster than"), e.g.
    /// `sparsegpt`; ignored when no record has that label.
    pub time_reference: Option<String>,
    /// Protocol lines, shown as a list under the title.
    pub notes: Vec<String>,
}

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

/// File names written by [`write_tables`] (plots only when they have data).
pub const PARQUET: &str = "runs.parquet";
pub const CSV: &str = "runs.csv";
pub const SUMMARY: &str = "summary.md";
pub const PLOT_PPL: &str = "plot_ppl.svg";
pub const PLOT_ACC: &str = "plot_acc.svg";

/// Writes runs.parquet, runs.csv, summary.md and the plots that have data into `out_dir`
/// (created if needed); returns the paths written, in that order. Each file is written to a
/// temporary name and renamed, so a reader never sees half a file.
pub fn write_tables(
    records: &[CellRecord],
    out_dir: &Path,
    opts: &SummaryOptions,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out_dir)
        .with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut df = long_frame(records)?;
    let mut written = Vec::new();

    let path = out_dir.join(PARQUET);
    crate::atomic::write_with(&path, |f| {
        ParquetWriter::new(f)
            .finish(&mut df)
            .map(drop)
            .map_err(Into::into)
    })?;
    written.push(path);

    let path = out_dir.join(CSV);
    crate::atomic::write_with(&path, |f| {
        CsvWriter::new(f)
            .include_header(true)
            .finish(&mut df)
            .map_err(Into::into)
    })?;
    written.push(path);

    let summary = Summary::new(records)?;
    let path = out_dir.join(SUMMARY);
    let text = summary.markdown(opts);
    crate::atomic::write_with(&path, |mut f| {
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(Into::into)
    })?;
    written.push(path);

    for (name, plot) in summary.plots() {
        let path = out_dir.join(name);
        let svg = plots::render_svg(&plot)?;
        crate::atomic::write_with(&path, |mut f| {
            std::io::Write::write_all(&mut f, svg.as_bytes()).map_err(Into::into)
        })?;
        written.push(path);
    }
    Ok(written)
}

/// The summary (Markdown) of the records; see the module documentation. (`write_tables`
/// writes it; the tests read it directly.)
#[cfg(test)]
pub fn summary_markdown(records: &[CellRecord], opts: &SummaryOptions) -> Result<String> {
    Ok(Summary::new(records)?.markdown(opts))
}

// ---------------------------------------------------------------------------------------------
// Settings, labels and orders.

/// `(N, M)` of an `N:M` pattern.
fn nm(pattern: &str) -> Option<(u32, u32)> {
    let (n, m) = pattern.split_once(':')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// `50%`, `62.5%`.
fn percent_label(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Column label of a pattern and its (requested) sparsity: `dense`, `50%`, `2:4`, or
/// `<pattern> 50%` for other patterns.
pub fn setting_label(pattern: &str, sparsity: f64) -> String {
    match pattern {
        "dense" => "dense".into(),
        "unstructured" => percent_label(sparsity),
        p if nm(p).is_some() => p.into(),
        p => format!("{p} {}", percent_label(sparsity)),
    }
}

/// Dense, unstructured by sparsity, N:M by sparsity with the larger M first, others by name.
fn cmp_setting(a: (&str, f64), b: (&str, f64)) -> Ordering {
    let class = |p: &str| match p {
        "dense" => 0,
        "unstructured" => 1,
        p if nm(p).is_some() => 2,
        _ => 3,
    };
    let m = |p: &str| nm(p).map_or(0, |(_, m)| m);
    class(a.0)
        .cmp(&class(b.0))
        .then(a.1.total_cmp(&b.1))
        .then(m(b.0).cmp(&m(a.0)))
        .then(a.0.cmp(b.0))
}

/// Row label of a cell's method: its matrix label, `dense` for the dense model.
fn method_label(r: &CellRecord) -> &str {
    if r.cell.method.is_none() {
        "dense"
    } else {
        &r.cell.label
    }
}

/// First-appearance orders of the records' models, methods (dense first), settings and tasks.
#[derive(Debug, Default)]
struct Orders {
    models: Vec<String>,
    methods: Vec<String>,
    settings: Vec<String>,
    tasks: Vec<String>,
}

fn push_new(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

fn rank(v: &[String], s: &str) -> usize {
    v.iter().position(|x| x == s).unwrap_or(v.len())
}

impl Orders {
    fn new(records: &[CellRecord]) -> Self {
        let mut o = Orders::default();
        if records.iter().any(|r| r.cell.method.is_none()) {
            o.methods.push("dense".into());
        }
        let mut settings: Vec<(&str, f64)> = Vec::new();
        for r in records {
            push_new(&mut o.models, &r.report.model.label);
            push_new(&mut o.methods, method_label(r));
            settings.push((&r.cell.pattern, r.cell.sparsity));
            for t in &r.cell.tasks {
                push_new(&mut o.tasks, &t.name);
            }
            for e in &r.report.evaluations {
                push_new(&mut o.tasks, &e.task);
            }
        }
        settings.sort_by(|a, b| cmp_setting(*a, *b));
        for (p, s) in settings {
            push_new(&mut o.settings, &setting_label(p, s));
        }
        o
    }
}

// ---------------------------------------------------------------------------------------------
// The long frame.

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
                (&a.cell.pattern, a.cell.sparsity),
                (&b.cell.pattern, b.cell.sparsity),
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
    let secs = |name: &str, f: fn(&crate::record::Seconds) -> f64| {
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
        text("pattern", &|(r, _)| Some(r.cell.pattern.clone())),
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

// ---------------------------------------------------------------------------------------------
// Grouping (polars).

/// Group keys of a measured number in the summary.
const GROUP: [&str; 5] = ["model", "method", "setting", "task", "metric"];

/// The long frame with a `setting` column (label of pattern and requested sparsity).
fn working_frame(records: &[CellRecord]) -> Result<DataFrame> {
    let mut df = long_frame(records)?;
    let patterns = df.column("pattern")?.str()?.clone();
    let sparsities = df.column("sparsity_requested")?.f64()?.clone();
    let labels: Vec<Option<String>> = patterns
        .iter()
        .zip(sparsities.iter())
        .map(|(p, s)| Some(setting_label(p.unwrap_or(""), s.unwrap_or(0.0))))
        .collect();
    df.with_column(Column::new("setting".into(), labels))?;
    Ok(df)
}

/// One `group_by_stable(keys).apply(f)` over the rows of `df` (none: an empty result).
fn grouped(
    df: &DataFrame,
    keys: &[&str],
    f: impl FnMut(DataFrame) -> PolarsResult<DataFrame> + Send + Sync,
) -> Result<Option<DataFrame>> {
    if df.height() == 0 {
        return Ok(None);
    }
    Ok(Some(df.group_by_stable(keys.iter().copied())?.apply(f)?))
}

/// The first row of the key columns of a group, followed by `extra`.
fn group_row(g: &DataFrame, keys: &[&str], extra: Vec<Column>) -> PolarsResult<DataFrame> {
    let mut cols: Vec<Column> = keys
        .iter()
        .map(|k| g.column(k).map(|c| c.head(Some(1))))
        .collect::<PolarsResult<_>>()?;
    cols.extend(extra);
    DataFrame::new(1, cols)
}

fn mean(v: &[f64]) -> f64 {
    v.iter().sum::<f64>() / v.len() as f64
}

/// Sample standard deviation (n - 1), `None` for fewer than two values.
fn sample_sd(v: &[f64]) -> Option<f64> {
    (v.len() > 1).then(|| {
        let m = mean(v);
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt()
    })
}

fn one<T>(name: &str, v: T) -> Column
where
    Series: NamedFrom<[T; 1], [T]>,
{
    Column::new(name.into(), [v])
}

/// A measured number of one model, method, setting, task and metric, over its cells (seeds).
#[derive(Debug, Clone)]
struct Measure {
    model: String,
    method: String,
    setting: String,
    task: String,
    metric: String,
    mean: f64,
    /// Standard deviation over the cells, where there are several.
    sd: Option<f64>,
    /// Mean of the cells' standard errors.
    stderr: Option<f64>,
    docs: Option<(u64, u64)>,
    cells: usize,
}

/// Pruning cost of one model, method and setting, averaged over its cells.
#[derive(Debug, Clone)]
struct Timing {
    model: String,
    method: String,
    setting: String,
    pruned: bool,
    /// Whole units removed (a structured method's cell): no zeros to count.
    structured: bool,
    score_and_mask: f64,
    prune_total: f64,
    realised: Option<f64>,
    peak_rss: Option<u64>,
    cells: usize,
}

/// An item of a method x setting table.
trait MethodSetting {
    fn method(&self) -> &str;
    fn setting(&self) -> &str;
}

impl MethodSetting for Measure {
    fn method(&self) -> &str {
        &self.method
    }
    fn setting(&self) -> &str {
        &self.setting
    }
}

impl MethodSetting for Timing {
    fn method(&self) -> &str {
        &self.method
    }
    fn setting(&self) -> &str {
        &self.setting
    }
}

/// Mean over tasks of one model, method, setting and accuracy metric.
#[derive(Debug, Clone)]
struct TaskMean {
    model: String,
    method: String,
    setting: String,
    metric: String,
    mean: f64,
    tasks: usize,
}

fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
    Ok(df
        .column(name)?
        .str()?
        .iter()
        .map(|s| s.unwrap_or_default().to_string())
        .collect())
}

fn floats(df: &DataFrame, name: &str) -> Result<Vec<Option<f64>>> {
    Ok(df.column(name)?.f64()?.iter().collect())
}

fn uints(df: &DataFrame, name: &str) -> Result<Vec<Option<u64>>> {
    Ok(df.column(name)?.u64()?.iter().collect())
}

/// Means (and spread) over cells of every measured number.
fn measures(work: &DataFrame) -> Result<Vec<Measure>> {
    let measured = work.filter(&work.column("metric")?.is_not_null())?;
    let Some(df) = grouped(&measured, &GROUP, |g| {
        let values: Vec<f64> = g.column("value")?.f64()?.iter().flatten().collect();
        let stderr = g.column("stderr")?.f64()?.mean();
        let docs = g.column("docs")?.u64()?;
        let extra = vec![
            one("mean", mean(&values)),
            one("sd", sample_sd(&values)),
            one("stderr_mean", stderr),
            one("docs_min", docs.min()),
            one("docs_max", docs.max()),
            one("cells", g.height() as u64),
        ];
        group_row(&g, &GROUP, extra)
    })?
    else {
        return Ok(Vec::new());
    };
    let [model, method, setting, task, metric] = GROUP.map(|k| strings(&df, k));
    let (model, method, setting, task, metric) = (model?, method?, setting?, task?, metric?);
    let (means, sd, stderr) = (
        floats(&df, "mean")?,
        floats(&df, "sd")?,
        floats(&df, "stderr_mean")?,
    );
    let (docs_min, docs_max, cells) = (
        uints(&df, "docs_min")?,
        uints(&df, "docs_max")?,
        uints(&df, "cells")?,
    );
    Ok((0..df.height())
        .map(|i| Measure {
            model: model[i].clone(),
            method: method[i].clone(),
            setting: setting[i].clone(),
            task: task[i].clone(),
            metric: metric[i].clone(),
            mean: means[i].unwrap_or(f64::NAN),
            sd: sd[i],
            stderr: stderr[i],
            docs: docs_min[i].zip(docs_max[i]),
            cells: cells[i].unwrap_or(0) as usize,
        })
        .collect())
}

/// Per model, method and setting: the mean over its cells of the pruning seconds, realised
/// sparsity and the highest peak RSS (each cell counted once, whatever its number of rows).
fn timings(work: &DataFrame) -> Result<Vec<Timing>> {
    const KEYS: [&str; 3] = ["model", "method", "setting"];
    let Some(df) = grouped(work, &KEYS, |g| {
        let keys = g.column("key")?.str()?;
        let mut seen = HashSet::new();
        let firsts: Vec<usize> = (0..g.height())
            .filter(|&i| seen.insert(keys.get(i).unwrap_or_default().to_string()))
            .collect();
        let pick = |name: &str| -> PolarsResult<Vec<Option<f64>>> {
            let c = g.column(name)?.f64()?;
            Ok(firsts.iter().map(|&i| c.get(i)).collect())
        };
        let avg = |v: Vec<Option<f64>>| -> Option<f64> {
            let v: Vec<f64> = v.into_iter().flatten().collect();
            (!v.is_empty()).then(|| mean(&v))
        };
        let pattern = g.column("pattern")?.str()?.get(0).unwrap_or_default();
        let pruned = g.column("method_name")?.str()?.get(0).is_some() && pattern != "dense";
        let structured = !(pattern == "dense" || pattern == "unstructured" || nm(pattern).is_some());
        let peak = g.column("peak_rss_bytes")?.u64()?.max();
        let extra = vec![
            one("pruned", pruned),
            one("structured", structured),
            one("score_and_mask", avg(pick("seconds_score_and_mask")?)),
            one("prune_total", avg(pick("seconds_prune_total")?)),
            one("realised", avg(pick("sparsity_realised")?)),
            one("peak_rss", peak),
            one("cells", firsts.len() as u64),
        ];
        group_row(&g, &KEYS, extra)
    })?
    else {
        return Ok(Vec::new());
    };
    let (model, method, setting) = (
        strings(&df, "model")?,
        strings(&df, "method")?,
        strings(&df, "setting")?,
    );
    let flags = |name: &str| -> Result<Vec<bool>> {
        Ok(df.column(name)?.bool()?.iter().map(|b| b.unwrap_or(false)).collect())
    };
    let (pruned, structured) = (flags("pruned")?, flags("structured")?);
    let (sm, pt, realised) = (
        floats(&df, "score_and_mask")?,
        floats(&df, "prune_total")?,
        floats(&df, "realised")?,
    );
    let (peak, cells) = (uints(&df, "peak_rss")?, uints(&df, "cells")?);
    Ok((0..df.height())
        .map(|i| Timing {
            model: model[i].clone(),
            method: method[i].clone(),
            setting: setting[i].clone(),
            pruned: pruned[i],
            structured: structured[i],
            score_and_mask: sm[i].unwrap_or(f64::NAN),
            prune_total: pt[i].unwrap_or(f64::NAN),
            realised: realised[i],
            peak_rss: peak[i],
            cells: cells[i].unwrap_or(0) as usize,
        })
        .collect())
}

/// Accuracy metrics of the zero-shot table, in the order shown.
const ACC_METRICS: [&str; 2] = ["acc", "acc_norm"];

/// Per model, method, setting and accuracy metric: the mean over tasks of the per-task means
/// (grouped with polars over the measures).
fn task_means(measures: &[Measure]) -> Result<Vec<TaskMean>> {
    let acc: Vec<&Measure> = measures
        .iter()
        .filter(|m| ACC_METRICS.contains(&m.metric.as_str()))
        .collect();
    let text = |name: &str, f: fn(&Measure) -> &str| {
        Column::new(name.into(), acc.iter().map(|m| f(m)).collect::<Vec<_>>())
    };
    let df = DataFrame::new(
        acc.len(),
        vec![
            text("model", |m| &m.model),
            text("method", |m| &m.method),
            text("setting", |m| &m.setting),
            text("metric", |m| &m.metric),
            Column::new(
                "mean".into(),
                acc.iter().map(|m| m.mean).collect::<Vec<_>>(),
            ),
        ],
    )?;
    const KEYS: [&str; 4] = ["model", "method", "setting", "metric"];
    let Some(df) = grouped(&df, &KEYS, |g| {
        let mean = g.column("mean")?.f64()?.mean();
        group_row(
            &g,
            &KEYS,
            vec![one("task_mean", mean), one("tasks", g.height() as u64)],
        )
    })?
    else {
        return Ok(Vec::new());
    };
    let [model, method, setting, metric] = KEYS.map(|k| strings(&df, k));
    let (model, method, setting, metric) = (model?, method?, setting?, metric?);
    let (means, tasks) = (floats(&df, "task_mean")?, uints(&df, "tasks")?);
    Ok((0..df.height())
        .map(|i| TaskMean {
            model: model[i].clone(),
            method: method[i].clone(),
            setting: setting[i].clone(),
            metric: metric[i].clone(),
            mean: means[i].unwrap_or(f64::NAN),
            tasks: tasks[i].unwrap_or(0) as usize,
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// The summary.

/// Everything the summary and the plots are drawn from.
struct Summary<'a> {
    records: &'a [CellRecord],
    orders: Orders,
    measures: Vec<Measure>,
    timings: Vec<Timing>,
    task_means: Vec<TaskMean>,
}

/// A Markdown table: the first `left` columns are left-aligned labels, the rest right-aligned.
struct Table {
    header: Vec<String>,
    left: usize,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn render(&self, out: &mut String) {
        let line = |cells: &[String]| format!("| {} |\n", cells.join(" | "));
        out.push_str(&line(&self.header));
        let align: Vec<String> = (0..self.header.len())
            .map(|i| {
                if i < self.left {
                    "---".to_string()
                } else {
                    "---:".to_string()
                }
            })
            .collect();
        out.push_str(&format!("|{}|\n", align.join("|")));
        for r in &self.rows {
            out.push_str(&line(r));
        }
        out.push('\n');
    }
}

const MISSING: &str = "–";

fn fixed(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

fn pct(v: f64) -> String {
    fixed(v * 100.0, 1)
}

/// `134.5M`, `6.7B`, `950K`; plain below a thousand.
fn count_label(n: usize) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1}B", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}K", n / 1e3),
        n => format!("{n:.0}"),
    }
}

fn distinct<'b>(it: impl Iterator<Item = &'b str>) -> Vec<&'b str> {
    let mut v: Vec<&str> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}

impl<'a> Summary<'a> {
    fn new(records: &'a [CellRecord]) -> Result<Self> {
        let work = working_frame(records)?;
        let measures = measures(&work)?;
        let task_means = task_means(&measures)?;
        Ok(Summary {
            records,
            orders: Orders::new(records),
            timings: timings(&work)?,
            measures,
            task_means,
        })
    }

    /// Measures of one model and metric (and task, if given).
    fn select(&self, model: &str, task: Option<&str>, metric: &str) -> Vec<&Measure> {
        self.measures
            .iter()
            .filter(|m| m.model == model && m.metric == metric && task.is_none_or(|t| m.task == t))
            .collect()
    }

    /// Tasks having `metric`, in task order.
    fn tasks_with(&self, metric: &str) -> Vec<String> {
        let mut tasks: Vec<String> = Vec::new();
        for m in self.measures.iter().filter(|m| m.metric == metric) {
            push_new(&mut tasks, &m.task);
        }
        tasks.sort_by_key(|t| rank(&self.orders.tasks, t));
        tasks
    }

    /// Methods and settings present in `cells`, in table order.
    fn axes<'m>(
        &self,
        cells: impl Iterator<Item = (&'m str, &'m str)> + Clone,
    ) -> (Vec<&'m str>, Vec<&'m str>) {
        let mut methods = distinct(cells.clone().map(|c| c.0));
        let mut settings = distinct(cells.map(|c| c.1));
        methods.sort_by_key(|m| rank(&self.orders.methods, m));
        settings.sort_by_key(|s| rank(&self.orders.settings, s));
        (methods, settings)
    }

    /// Method rows x setting columns of one number per item (a metric of one task and model, a
    /// realised sparsity of one model).
    fn method_by_setting<T: MethodSetting>(&self, items: &[&T], format: impl Fn(&T) -> String) -> Table {
        let (methods, settings) = self.axes(items.iter().map(|i| (i.method(), i.setting())));
        let mut header = vec!["Method".to_string()];
        header.extend(settings.iter().map(|s| s.to_string()));
        let rows = methods
            .iter()
            .map(|method| {
                let mut row = vec![method.to_string()];
                for s in &settings {
                    let item = items.iter().find(|i| i.method() == *method && i.setting() == *s);
                    row.push(item.map_or(MISSING.to_string(), |i| format(i)));
                }
                row
            })
            .collect();
        Table {
            header,
            left: 1,
            rows,
        }
    }

    fn markdown(&self, opts: &SummaryOptions) -> String {
        let mut out = String::new();
        let title = if opts.title.is_empty() {
            "Benchmark summary"
        } else {
            &opts.title
        };
        writeln!(out, "# {title}\n").unwrap();
        for n in &opts.notes {
            writeln!(out, "- {n}").unwrap();
        }
        if !opts.notes.is_empty() {
            out.push('\n');
        }
        self.provenance(&mut out);
        self.perplexity(&mut out);
        self.realised(&mut out);
        self.agreement(&mut out);
        self.zero_shot(&mut out);
        self.timing(&mut out, opts.time_reference.as_deref());
        out.push_str(&crate::structure::section(self.records));
        let plots = self.plots();
        if !plots.is_empty() {
            out.push_str("## Plots\n\n");
            for (name, plot) in &plots {
                writeln!(out, "![{}]({name})\n", plot.title).unwrap();
            }
        }
        while out.ends_with("\n\n") {
            out.pop();
        }
        out
    }

    /// What the records say about how they were made.
    fn provenance(&self, out: &mut String) {
        let r = self.records;
        let list = |v: Vec<String>| v.join(", ");
        let matrices = distinct(r.iter().map(|r| r.matrix.as_str()));
        writeln!(
            out,
            "Records: {} cells of matrix {}.\n",
            r.len(),
            list(matrices.iter().map(|m| format!("`{m}`")).collect())
        )
        .unwrap();
        for model in &self.orders.models {
            let cells: Vec<&CellRecord> = r
                .iter()
                .filter(|c| &c.report.model.label == model)
                .collect();
            let shas = distinct(cells.iter().map(|c| c.report.model.sha256.as_str()));
            let params = cells.first().map_or(0, |c| c.report.model.n_params);
            let shas = list(
                shas.iter()
                    .map(|s| format!("`{}`", &s[..s.len().min(12)]))
                    .collect(),
            );
            writeln!(
                out,
                "- Model `{model}`: {} parameters, sha256 {shas}.",
                count_label(params)
            )
            .unwrap();
        }
        let commits = distinct(r.iter().map(|c| c.report.git_commit.as_str()));
        writeln!(
            out,
            "- prunus commit {}.",
            list(commits.iter().map(|c| format!("`{c}`")).collect())
        )
        .unwrap();
        let threads: BTreeSet<usize> = r.iter().map(|c| c.report.threads).collect();
        writeln!(
            out,
            "- Threads: {}.",
            list(threads.iter().map(|t| t.to_string()).collect())
        )
        .unwrap();
        let pruned: Vec<&CellRecord> = r.iter().filter(|c| c.cell.method.is_some()).collect();
        if !pruned.is_empty() {
            let calib: BTreeSet<(usize, usize)> = pruned
                .iter()
                .map(|c| (c.cell.calibration.samples, c.cell.calibration.seq_len))
                .collect();
            let seeds: BTreeSet<u64> = pruned.iter().map(|c| c.cell.calibration.seed).collect();
            let calib = list(
                calib
                    .iter()
                    .map(|(n, l)| format!("{n} x {l} tokens"))
                    .collect(),
            );
            let seeds_list = list(seeds.iter().map(|s| s.to_string()).collect());
            let seeds_word = if seeds.len() > 1 { "seeds" } else { "seed" };
            writeln!(out, "- Calibration: {calib}, {seeds_word} {seeds_list}.").unwrap();
        }
        // The dense cell compares with nothing, so its agreement count (0) is left out.
        let eval: BTreeSet<(usize, usize)> = r
            .iter()
            .map(|c| (c.cell.eval.windows, c.cell.eval.seq_len))
            .collect();
        let agreement: BTreeSet<usize> = r
            .iter()
            .filter(|c| c.cell.method.is_some())
            .map(|c| c.cell.eval.agreement_windows)
            .collect();
        let mut eval = list(
            eval.iter()
                .map(|(w, l)| format!("{w} windows of {l} tokens"))
                .collect(),
        );
        if !agreement.is_empty() {
            let a = list(agreement.iter().map(|a| a.to_string()).collect());
            eval.push_str(&format!(" ({a} for dense agreement)"));
        }
        writeln!(out, "- Evaluation: {eval}.").unwrap();
        if self.measures.iter().any(|m| m.cells > 1) || self.timings.iter().any(|t| t.cells > 1) {
            writeln!(
                out,
                "- Numbers of cells differing only by calibration seed are means over those cells; \
                 `± sd` after a perplexity or agreement is the standard deviation over them."
            )
            .unwrap();
        }
        out.push('\n');
    }

    /// A value with its spread over cells, where there are several.
    fn with_sd(m: &Measure, scale: f64, decimals: usize) -> String {
        let v = fixed(m.mean * scale, decimals);
        match m.sd {
            Some(sd) => format!("{v} ± {}", fixed(sd * scale, decimals)),
            None => v,
        }
    }

    fn heading(&self, task: &str, model: &str) -> String {
        if self.orders.models.len() > 1 {
            format!("### `{task}`, model `{model}`\n\n")
        } else {
            format!("### `{task}`\n\n")
        }
    }

    fn perplexity(&self, out: &mut String) {
        let tasks = self.tasks_with("ppl");
        if tasks.is_empty() {
            return;
        }
        out.push_str("## Perplexity (lower is better)\n\n");
        for task in &tasks {
            for model in &self.orders.models {
                let ms = self.select(model, Some(task), "ppl");
                if ms.is_empty() {
                    continue;
                }
                out.push_str(&self.heading(task, model));
                self.method_by_setting(&ms, |m| Self::with_sd(m, 1.0, 3))
                    .render(out);
            }
        }
    }

    fn realised(&self, out: &mut String) {
        let rows: Vec<&Timing> = self
            .timings
            .iter()
            .filter(|t| t.pruned && !t.structured && t.realised.is_some())
            .collect();
        if rows.is_empty() {
            return;
        }
        out.push_str("## Realised sparsity (% zeros in the pruned linear layers)\n\n");
        for model in &self.orders.models {
            let ts: Vec<&Timing> = rows.iter().copied().filter(|t| &t.model == model).collect();
            if ts.is_empty() {
                continue;
            }
            if self.orders.models.len() > 1 {
                writeln!(out, "### Model `{model}`\n").unwrap();
            }
            self.method_by_setting(&ts, |t| t.realised.map_or(MISSING.to_string(), |r| fixed(r * 100.0, 2)))
                .render(out);
        }
    }

    fn agreement(&self, out: &mut String) {
        let mut tasks = self.tasks_with("kl_dense");
        for t in self.tasks_with("top1_agree") {
            push_new(&mut tasks, &t);
        }
        tasks.sort_by_key(|t| rank(&self.orders.tasks, t));
        if tasks.is_empty() {
            return;
        }
        out.push_str("## Agreement with the dense model\n\n");
        for task in &tasks {
            for model in &self.orders.models {
                let kl = self.select(model, Some(task), "kl_dense");
                let top1 = self.select(model, Some(task), "top1_agree");
                if kl.is_empty() && top1.is_empty() {
                    continue;
                }
                out.push_str(&self.heading(task, model));
                if !kl.is_empty() {
                    out.push_str("Mean KL(dense ‖ pruned) of the next-token distributions (lower is better):\n\n");
                    self.method_by_setting(&kl, |m| Self::with_sd(m, 1.0, 4))
                        .render(out);
                }
                if !top1.is_empty() {
                    out.push_str(
                        "Top-1 agreement with the dense model, % of tokens (higher is better):\n\n",
                    );
                    self.method_by_setting(&top1, |m| Self::with_sd(m, 100.0, 1))
                        .render(out);
                }
            }
        }
    }

    fn zero_shot(&self, out: &mut String) {
        let metrics: Vec<&str> = ACC_METRICS
            .into_iter()
            .filter(|m| self.measures.iter().any(|x| x.metric == *m))
            .collect();
        if metrics.is_empty() {
            return;
        }
        out.push_str("## Zero-shot accuracy (%, higher is better)\n\n");
        out.push_str(
            "Each cell is accuracy ± its standard error, in percent; n is the number of documents. \
             Mean is the unweighted mean over the table's tasks, shown only for rows that have them all.\n\n",
        );
        for metric in metrics {
            let tasks = self.tasks_with(metric);
            for model in &self.orders.models {
                let ms = self.select(model, None, metric);
                if ms.is_empty() {
                    continue;
                }
                let what = if metric == "acc" {
                    "`acc` (unnormalised log-likelihood)"
                } else {
                    "`acc_norm` (length-normalised log-likelihood)"
                };
                if self.orders.models.len() > 1 {
                    writeln!(out, "### {what}, model `{model}`\n").unwrap();
                } else {
                    writeln!(out, "### {what}\n").unwrap();
                }
                let tasks: Vec<&String> = tasks
                    .iter()
                    .filter(|t| ms.iter().any(|m| &m.task == *t))
                    .collect();
                let mut header = vec!["Method".to_string(), "Sparsity".to_string()];
                for t in &tasks {
                    let docs: BTreeSet<(u64, u64)> = ms
                        .iter()
                        .filter(|m| &m.task == *t)
                        .filter_map(|m| m.docs)
                        .collect();
                    let lo = docs.iter().map(|d| d.0).min();
                    let hi = docs.iter().map(|d| d.1).max();
                    let name = t.strip_prefix("mc:").unwrap_or(t);
                    header.push(match (lo, hi) {
                        (Some(lo), Some(hi)) if lo == hi => format!("{name} (n={lo})"),
                        (Some(lo), Some(hi)) => format!("{name} (n={lo}–{hi})"),
                        _ => name.to_string(),
                    });
                }
                header.push("Mean".into());
                let mut rows = Vec::new();
                let (methods, settings) =
                    self.axes(ms.iter().map(|m| (m.method.as_str(), m.setting.as_str())));
                for method in &methods {
                    for setting in &settings {
                        let row_ms: Vec<&&Measure> = ms
                            .iter()
                            .filter(|m| m.method == *method && m.setting == *setting)
                            .collect();
                        if row_ms.is_empty() {
                            continue;
                        }
                        let mut row = vec![method.to_string(), setting.to_string()];
                        for t in &tasks {
                            row.push(row_ms.iter().find(|m| &m.task == *t).map_or(
                                MISSING.to_string(),
                                |m| match m.stderr {
                                    Some(se) => format!("{} ± {}", pct(m.mean), pct(se)),
                                    None => pct(m.mean),
                                },
                            ));
                        }
                        let mean = self.task_means.iter().find(|x| {
                            &x.model == model
                                && x.method == *method
                                && x.setting == *setting
                                && x.metric == metric
                        });
                        row.push(
                            mean.filter(|x| x.tasks == tasks.len())
                                .map_or(MISSING.to_string(), |x| pct(x.mean)),
                        );
                        rows.push(row);
                    }
                }
                Table {
                    header,
                    left: 2,
                    rows,
                }
                .render(out);
            }
        }
    }

    fn timing(&self, out: &mut String, reference: Option<&str>) {
        let pruned: Vec<&Timing> = self.timings.iter().filter(|t| t.pruned).collect();
        if pruned.is_empty() {
            return;
        }
        let reference = reference.filter(|r| pruned.iter().any(|t| t.method == *r));
        out.push_str("## Pruning time\n\n");
        out.push_str(
            "Seconds per cell as the CLI measured them: score+mask is scoring, masking and weight updates (the papers' \
             \"metric time\"); prune adds the calibration forward pass and the statistics. ",
        );
        if pruned.iter().any(|t| t.structured) {
            out.push_str(
                "For structured cells, score+mask is every scoring iteration (gradient passes included) and the \
                 removals. ",
            );
        }
        if let Some(r) = reference {
            write!(
                out,
                "× {r} is {r}'s time divided by the method's, same model and sparsity, in these records. "
            )
            .unwrap();
        }
        out.push_str("Peak RSS is the whole process's (loading, pruning and evaluation).\n\n");
        for model in &self.orders.models {
            let ts: Vec<&Timing> = pruned
                .iter()
                .copied()
                .filter(|t| &t.model == model)
                .collect();
            if ts.is_empty() {
                continue;
            }
            if self.orders.models.len() > 1 {
                writeln!(out, "### Model `{model}`\n").unwrap();
            }
            let mut header: Vec<String> = ["Method", "Sparsity", "score+mask s", "prune s"]
                .map(String::from)
                .to_vec();
            if let Some(r) = reference {
                header.push(format!("× {r} (score+mask)"));
                header.push(format!("× {r} (prune)"));
            }
            header.push("peak RSS GiB".into());
            let (methods, settings) =
                self.axes(ts.iter().map(|t| (t.method.as_str(), t.setting.as_str())));
            let mut rows = Vec::new();
            for method in &methods {
                for setting in &settings {
                    let Some(t) = ts
                        .iter()
                        .find(|t| t.method == *method && t.setting == *setting)
                    else {
                        continue;
                    };
                    let mut row = vec![
                        method.to_string(),
                        setting.to_string(),
                        fixed(t.score_and_mask, 2),
                        fixed(t.prune_total, 2),
                    ];
                    if let Some(r) = reference {
                        let base = ts.iter().find(|x| x.method == r && x.setting == *setting);
                        let speedup = |f: fn(&Timing) -> f64| {
                            base.map(|b| f(b) / f(t))
                                .filter(|x| x.is_finite())
                                .map_or(MISSING.to_string(), |x| format!("{x:.2}×"))
                        };
                        row.push(speedup(|t| t.score_and_mask));
                        row.push(speedup(|t| t.prune_total));
                    }
                    row.push(t.peak_rss.map_or(MISSING.to_string(), |b| {
                        fixed(b as f64 / (1u64 << 30) as f64, 2)
                    }));
                    rows.push(row);
                }
            }
            Table {
                header,
                left: 2,
                rows,
            }
            .render(out);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Plots.

    /// Label of a curve: the method, prefixed with the model when there are several.
    fn curve_label(&self, model: &str, method: &str) -> String {
        if self.orders.models.len() > 1 {
            format!("{model} / {method}")
        } else {
            method.to_string()
        }
    }

    /// x of a setting: its requested sparsity in percent, and whether it is an N:M pattern.
    fn setting_x(&self, model: &str, method: &str, setting: &str) -> Option<(f64, bool)> {
        let r = self.records.iter().find(|r| {
            r.report.model.label == model
                && method_label(r) == method
                && setting_label(&r.cell.pattern, r.cell.sparsity) == setting
        })?;
        Some((r.cell.sparsity * 100.0, nm(&r.cell.pattern).is_some()))
    }

    /// Curves of (model, method, setting, value) points: unstructured settings on a line, N:M
    /// settings as marks, dense values as references. Other patterns are left out.
    fn curves<'p>(
        &self,
        points: impl Iterator<Item = (&'p str, &'p str, &'p str, f64)>,
    ) -> (Vec<Curve>, Vec<Reference>) {
        let mut series: Vec<(String, String, Curve)> = Vec::new();
        let mut refs = Vec::new();
        for (model, method, setting, y) in points {
            if setting == "dense" {
                refs.push(Reference {
                    label: self.curve_label(model, "dense"),
                    y,
                });
                continue;
            }
            let Some((x, is_nm)) = self.setting_x(model, method, setting) else {
                continue;
            };
            let pattern_known = is_nm || !setting.contains(' ');
            if !pattern_known {
                continue;
            }
            let i = match series
                .iter()
                .position(|(m, me, _)| m == model && me == method)
            {
                Some(i) => i,
                None => {
                    let s = Curve {
                        label: self.curve_label(model, method),
                        line: vec![],
                        marks: vec![],
                    };
                    series.push((model.to_string(), method.to_string(), s));
                    series.len() - 1
                }
            };
            let s = &mut series[i].2;
            if is_nm {
                s.marks.push((x, y))
            } else {
                s.line.push((x, y))
            }
        }
        let mut series: Vec<Curve> = series.into_iter().map(|(_, _, s)| s).collect();
        for s in &mut series {
            s.line.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        series.retain(|s| !s.line.is_empty() || !s.marks.is_empty());
        (series, refs)
    }

    /// The plots that have data, with their file names.
    fn plots(&self) -> Vec<(&'static str, LinePlot)> {
        let mut plots = Vec::new();
        let x_label = "sparsity (%): circles on lines unstructured, triangles N:M";
        if let Some(task) = self.tasks_with("ppl").first() {
            let ms = self
                .measures
                .iter()
                .filter(|m| m.metric == "ppl" && &m.task == task);
            let (series, references) = self.curves(ms.map(|m| {
                (
                    m.model.as_str(),
                    m.method.as_str(),
                    m.setting.as_str(),
                    m.mean,
                )
            }));
            if !series.is_empty() {
                let title = format!("Perplexity on {task} (log scale)");
                let y_label = "perplexity".to_string();
                plots.push((
                    PLOT_PPL,
                    LinePlot {
                        title,
                        x_label: x_label.into(),
                        y_label,
                        log_y: true,
                        legend_upper: true,
                        series,
                        references,
                    },
                ));
            }
        }
        if let Some(metric) = ACC_METRICS
            .into_iter()
            .find(|m| self.task_means.iter().any(|t| t.metric == *m))
        {
            let tasks = self.tasks_with(metric);
            let complete = self
                .task_means
                .iter()
                .filter(|t| t.metric == metric && t.tasks == tasks.len());
            let (series, references) = self.curves(complete.map(|t| {
                (
                    t.model.as_str(),
                    t.method.as_str(),
                    t.setting.as_str(),
                    t.mean * 100.0,
                )
            }));
            if !series.is_empty() {
                let title = format!(
                    "Mean zero-shot accuracy ({metric}) over {} tasks",
                    tasks.len()
                );
                let y_label = format!("mean {metric} (%)");
                plots.push((
                    PLOT_ACC,
                    LinePlot {
                        title,
                        x_label: x_label.into(),
                        y_label,
                        log_y: false,
                        legend_upper: false,
                        series,
                        references,
                    },
                ));
            }
        }
        plots
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{
        CalibSpec, CellSpec, EvalSpec, MethodInfo, ModelInfo, Report, Seconds, SparsityInfo,
        TaskSpec,
    };

    const MC: [&str; 2] = ["mc:arc_easy", "mc:piqa"];

    fn eval(
        task: &str,
        metric: &str,
        value: f64,
        stderr: Option<f64>,
        docs: Option<usize>,
    ) -> Evaluation {
        Evaluation {
            task: task.into(),
            task_version: 1,
            metric: metric.into(),
            value,
            stderr,
            docs,
            protocol: String::new(),
            rest: Default::default(),
        }
    }

    /// A cell with perplexity `ppl`, accuracies `acc[task] = (acc, acc_norm)`, and (pruned
    /// cells) agreement; `drop` names a task/metric left out.
    fn cell(
        method: Option<&str>,
        pattern: &str,
        sparsity: f64,
        seed: u64,
        ppl: f64,
        acc: [(f64, f64); 2],
        drop: Option<(&str, &str)>,
    ) -> CellRecord {
        let tasks: Vec<TaskSpec> = ["ppl:wiki-vital", MC[0], MC[1], "agree:wiki-vital"]
            .iter()
            .map(|t| TaskSpec {
                name: t.to_string(),
                limit: t.starts_with("mc:").then_some(200),
            })
            .collect();
        let mut evaluations = vec![eval("ppl:wiki-vital", "ppl", ppl, None, None)];
        for (t, (a, n)) in MC.iter().zip(acc) {
            let docs = if *t == MC[0] { 200 } else { 150 };
            let se = |p: f64| (p * (1.0 - p) / (docs as f64 - 1.0)).sqrt();
            evaluations.push(eval(t, "acc", a, Some(se(a)), Some(docs)));
            evaluations.push(eval(t, "acc_norm", n, Some(se(n)), Some(docs)));
        }
        if method.is_some() {
            evaluations.push(eval(
                "agree:wiki-vital",
                "kl_dense",
                (ppl / 20.0).ln(),
                None,
                None,
            ));
            evaluations.push(eval(
                "agree:wiki-vital",
                "top1_agree",
                20.0 / ppl,
                None,
                None,
            ));
        }
        evaluations.retain(|e| drop != Some((e.task.as_str(), e.metric.as_str())));
        let pruned = method.is_some();
        let work = match method {
            Some("sparsegpt") => 40.0,
            Some(_) => 2.5,
            None => 0.0,
        } * (1.0 + seed as f64 * 0.1);
        let seconds = Seconds {
            load: 1.25,
            tokenize: 0.0,
            save: 0.0,
            calibration_forward: if pruned { 3.0 } else { 0.0 },
            statistics: if pruned { 0.5 } else { 0.0 },
            score_and_mask: work,
            prune_total: if pruned { work + 3.5 } else { 0.0 },
            evaluation: 30.0,
            total: 31.25 + work,
        };
        let label = method.unwrap_or("dense");
        CellRecord {
            record_version: crate::record::RECORD_VERSION,
            key: format!(
                "{label}-{}-{seed}",
                setting_label(pattern, sparsity).replace(['%', ':'], "_")
            ),
            matrix: "fixture".into(),
            cell: CellSpec {
                model: "default".into(),
                method: method.map(String::from),
                label: label.into(),
                config: serde_json::Value::Null,
                pattern: pattern.into(),
                sparsity,
                tasks,
                calibration: CalibSpec {
                    samples: 32,
                    seq_len: 512,
                    seed,
                },
                eval: EvalSpec {
                    seq_len: 512,
                    windows: 64,
                    // As the matrix writes them: the dense cell compares with nothing.
                    agreement_windows: if method.is_some() { 8 } else { 0 },
                },
                structured: false,
            },
            wall_seconds: seconds.total + 0.75,
            finished_unix: 1_700_000_000,
            report: Report {
                git_commit: "0123456789ab".into(),
                model: ModelInfo {
                    label: "SmolLM2-135M".into(),
                    sha256: "ab".repeat(32),
                    n_params: 134_515_008,
                    rest: Default::default(),
                },
                method: method.map(|m| MethodInfo {
                    name: m.into(),
                    version: "1".into(),
                    config: serde_json::json!({"alpha": 1}),
                    rest: Default::default(),
                }),
                sparsity: pruned.then(|| SparsityInfo {
                    pattern: pattern.into(),
                    requested: sparsity,
                    realised: sparsity * 0.999,
                    rest: Default::default(),
                }),
                evaluations,
                seconds,
                peak_rss_bytes: Some(1_610_612_736 + if pruned { 268_435_456 } else { 0 }),
                threads: 2,
                rest: Default::default(),
            },
        }
    }

    /// Dense, Wanda and SparseGPT at 50%, 70% and 2:4 (Wanda 50% with two calibration
    /// seeds), one cell without piqa's acc_norm; given out of table order.
    fn records() -> Vec<CellRecord> {
        vec![
            cell(
                None,
                "dense",
                0.0,
                0,
                20.0,
                [(0.62, 0.58), (0.66, 0.65)],
                None,
            ),
            cell(
                Some("wanda"),
                "2:4",
                0.5,
                0,
                41.5,
                [(0.51, 0.47), (0.6, 0.59)],
                Some((MC[1], "acc_norm")),
            ),
            cell(
                Some("wanda"),
                "unstructured",
                0.5,
                0,
                29.0,
                [(0.57, 0.54), (0.63, 0.62)],
                None,
            ),
            cell(
                Some("wanda"),
                "unstructured",
                0.5,
                1,
                29.5,
                [(0.56, 0.55), (0.64, 0.61)],
                None,
            ),
            cell(
                Some("sparsegpt"),
                "unstructured",
                0.5,
                0,
                27.25,
                [(0.58, 0.55), (0.64, 0.63)],
                None,
            ),
            cell(
                Some("sparsegpt"),
                "2:4",
                0.5,
                0,
                36.0,
                [(0.53, 0.5), (0.61, 0.6)],
                None,
            ),
            cell(
                Some("wanda"),
                "unstructured",
                0.7,
                0,
                160.0,
                [(0.38, 0.35), (0.55, 0.54)],
                None,
            ),
            cell(
                Some("sparsegpt"),
                "unstructured",
                0.7,
                0,
                95.5,
                [(0.42, 0.4), (0.57, 0.56)],
                None,
            ),
        ]
    }

    fn options() -> SummaryOptions {
        SummaryOptions {
            title: "Fixture summary".into(),
            time_reference: Some("sparsegpt".into()),
            notes: vec!["Protocol line from the matrix.".into()],
        }
    }

    fn csv(df: &mut DataFrame) -> String {
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .include_header(true)
            .finish(df)
            .unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn long_frame_has_one_row_per_cell_task_metric() {
        let records = records();
        let mut df = long_frame(&records).unwrap();
        assert!(df.get_column_names().iter().map(|c| c.as_str()).eq(COLUMNS));
        let evaluations: usize = records.iter().map(|r| r.report.evaluations.len()).sum();
        assert_eq!(df.height(), evaluations);
        let keys = strings(&df, "key").unwrap();
        let tasks = strings(&df, "task").unwrap();
        let metrics = strings(&df, "metric").unwrap();
        let distinct: HashSet<(&String, &String, &String)> = keys
            .iter()
            .zip(&tasks)
            .zip(&metrics)
            .map(|((k, t), m)| (k, t, m))
            .collect();
        assert_eq!(distinct.len(), df.height(), "(key, task, metric) is unique");
        // The cell without piqa's acc_norm has no such row, and no null row either.
        let wanda_24 = &records[1].key;
        assert!(
            !keys
                .iter()
                .zip(&tasks)
                .zip(&metrics)
                .any(|((k, t), m)| k == wanda_24 && t == MC[1] && m == "acc_norm")
        );
        assert_eq!(df.column("metric").unwrap().null_count(), 0);
        insta::assert_snapshot!("long_frame_csv", csv(&mut df));
    }

    #[test]
    fn a_cell_without_evaluations_keeps_a_row_for_its_timings() {
        let mut records = records();
        records[2].report.evaluations.clear();
        let df = long_frame(&records).unwrap();
        let evaluations: usize = records.iter().map(|r| r.report.evaluations.len()).sum();
        assert_eq!(df.height(), evaluations + 1);
        assert_eq!(df.column("metric").unwrap().null_count(), 1);
        let summary = summary_markdown(&records, &options()).unwrap();
        assert!(summary.contains("## Pruning time"));
    }

    #[test]
    fn duplicates_are_errors() {
        let mut records = records();
        records.push(records[2].clone());
        let err = long_frame(&records).unwrap_err().to_string();
        assert!(err.contains("appears twice"), "{err}");

        let mut records = self::records();
        let again = records[0].report.evaluations[0].clone();
        records[0].report.evaluations.push(again);
        let err = long_frame(&records).unwrap_err().to_string();
        assert!(err.contains("twice"), "{err}");
    }

    #[test]
    fn summary_snapshot() {
        let records = records();
        let md = summary_markdown(&records, &options()).unwrap();
        assert_eq!(md, summary_markdown(&records, &options()).unwrap());
        insta::assert_snapshot!("summary_md", md);
    }

    #[test]
    fn sections_without_data_are_left_out() {
        let mut records = records();
        for r in &mut records {
            r.report.evaluations.retain(|e| e.metric == "ppl");
        }
        let opts = SummaryOptions {
            time_reference: Some("not-in-records".into()),
            ..options()
        };
        let md = summary_markdown(&records, &opts).unwrap();
        assert!(md.contains("## Perplexity"));
        assert!(md.contains("## Pruning time"));
        for absent in ["## Zero-shot", "## Agreement", "×", PLOT_ACC] {
            assert!(!md.contains(absent), "{absent} in\n{md}");
        }
        assert!(md.contains(PLOT_PPL));
    }

    #[test]
    fn no_records_give_an_empty_frame_and_a_summary_without_tables() {
        let df = long_frame(&[]).unwrap();
        assert_eq!(df.shape(), (0, COLUMNS.len()));
        let md = summary_markdown(&[], &options()).unwrap();
        assert!(!md.contains("## "), "{md}");
        let dir = tempfile::tempdir().unwrap();
        let written = write_tables(&[], dir.path(), &options()).unwrap();
        assert_eq!(written.len(), 3, "no plots without data: {written:?}");
    }

    #[test]
    fn settings_are_ordered_as_in_the_papers() {
        let mut settings = [
            ("2:4", 0.5),
            ("unstructured", 0.6),
            ("dense", 0.0),
            ("4:8", 0.5),
            ("unstructured", 0.5),
        ];
        settings.sort_by(|a, b| cmp_setting(*a, *b));
        let labels: Vec<String> = settings.iter().map(|(p, s)| setting_label(p, *s)).collect();
        assert_eq!(labels, ["dense", "50%", "60%", "4:8", "2:4"]);
        assert_eq!(setting_label("unstructured", 0.625), "62.5%");
    }

    #[test]
    fn write_tables_round_trips_parquet_and_writes_svg() {
        let records = records();
        let dir = tempfile::tempdir().unwrap();
        let written = write_tables(&records, dir.path(), &options()).unwrap();
        let names: Vec<&str> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, [PARQUET, CSV, SUMMARY, PLOT_PPL, PLOT_ACC]);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers.len(),
            written.len(),
            "no temporary files left: {leftovers:?}"
        );

        let expected = long_frame(&records).unwrap();
        let back = ParquetReader::new(std::fs::File::open(&written[0]).unwrap())
            .finish()
            .unwrap();
        assert_eq!(back.shape(), expected.shape());
        assert_eq!(back.schema(), expected.schema());
        assert!(back.equals_missing(&expected));

        let mut expected = expected;
        assert_eq!(
            std::fs::read_to_string(&written[1]).unwrap(),
            csv(&mut expected)
        );
        assert_eq!(
            std::fs::read_to_string(&written[2]).unwrap(),
            summary_markdown(&records, &options()).unwrap()
        );
        for svg in &written[3..] {
            let text = std::fs::read_to_string(svg).unwrap();
            assert!(
                text.starts_with("<svg") || text.starts_with("<?xml"),
                "{}",
                svg.display()
            );
            assert!(text.trim_end().ends_with("</svg>"));
            for label in ["wanda", "sparsegpt", "dense"] {
                assert!(
                    plots::has_text(&text, label),
                    "{label} in {}",
                    svg.display()
                );
            }
        }
        // Same records, same bytes.
        let again = tempfile::tempdir().unwrap();
        let rewritten = write_tables(&records, again.path(), &options()).unwrap();
        for (a, b) in written.iter().zip(&rewritten).skip(1) {
            assert_eq!(
                std::fs::read(a).unwrap(),
                std::fs::read(b).unwrap(),
                "{}",
                a.display()
            );
        }
    }
}
