//! The long table grouped (polars) into what the summary and the plots show: every measured
//! number averaged over the cells that differ only by calibration seed ([`Measure`]), the
//! pruning cost of each model, method and setting ([`Timing`]), and accuracies averaged over
//! tasks ([`TaskMean`]).

use std::collections::HashSet;

use anyhow::Result;
use polars::prelude::*;

use super::long::long_frame;
use super::settings::{nm, setting_label};
use crate::record::CellRecord;

/// Group keys of a measured number in the summary.
const GROUP: [&str; 5] = ["model", "method", "setting", "task", "metric"];

/// The long frame with a `setting` column (label of pattern and requested sparsity).
pub(super) fn working_frame(records: &[CellRecord]) -> Result<DataFrame> {
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
pub(super) struct Measure {
    /// Model label.
    pub(super) model: String,
    /// Method label (`dense` for the dense model).
    pub(super) method: String,
    /// Setting label.
    pub(super) setting: String,
    /// Task name.
    pub(super) task: String,
    /// Metric name.
    pub(super) metric: String,
    /// Mean over the cells.
    pub(super) mean: f64,
    /// Standard deviation over the cells, where there are several.
    pub(super) sd: Option<f64>,
    /// Mean of the cells' standard errors.
    pub(super) stderr: Option<f64>,
    /// Fewest and most documents scored by a cell.
    pub(super) docs: Option<(u64, u64)>,
    /// Cells averaged.
    pub(super) cells: usize,
}

/// Pruning cost of one model, method and setting, averaged over its cells.
#[derive(Debug, Clone)]
pub(super) struct Timing {
    /// Model label.
    pub(super) model: String,
    /// Method label.
    pub(super) method: String,
    /// Setting label.
    pub(super) setting: String,
    /// Whether the cells were pruned (not the dense model).
    pub(super) pruned: bool,
    /// Whole units removed (a structured method's cell): no zeros to count.
    pub(super) structured: bool,
    /// Mean seconds scoring, masking and updating weights.
    pub(super) score_and_mask: f64,
    /// Mean seconds of the whole pruning stage.
    pub(super) prune_total: f64,
    /// Mean realised sparsity.
    pub(super) realised: Option<f64>,
    /// Highest peak RSS, bytes.
    pub(super) peak_rss: Option<u64>,
    /// Cells averaged.
    pub(super) cells: usize,
}

/// An item of a method x setting table.
pub(super) trait MethodSetting {
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
pub(super) struct TaskMean {
    /// Model label.
    pub(super) model: String,
    /// Method label.
    pub(super) method: String,
    /// Setting label.
    pub(super) setting: String,
    /// `acc` or `acc_norm`.
    pub(super) metric: String,
    /// Mean over the tasks of the per-task means.
    pub(super) mean: f64,
    /// Tasks averaged.
    pub(super) tasks: usize,
}

/// The strings of column `name` (null as empty).
pub(super) fn strings(df: &DataFrame, name: &str) -> Result<Vec<String>> {
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
pub(super) fn measures(work: &DataFrame) -> Result<Vec<Measure>> {
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
pub(super) fn timings(work: &DataFrame) -> Result<Vec<Timing>> {
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
pub(super) const ACC_METRICS: [&str; 2] = ["acc", "acc_norm"];

/// Per model, method, setting and accuracy metric: the mean over tasks of the per-task means
/// (grouped with polars over the measures).
pub(super) fn task_means(measures: &[Measure]) -> Result<Vec<TaskMean>> {
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
