//! The tables of a bench run, from its cell records: the long table (`runs.parquet`,
//! `runs.csv`), a summary in the shape of the papers' tables (`summary.md`) and plots
//! (`plot_ppl.svg`, `plot_acc.svg`). This module writes them; its submodules build them:
//!
//! - [`long`]: one row per cell x task x metric (a cell without evaluations keeps one row
//!   with null task and metric, so that its timings are not lost), columns [`long::COLUMNS`];
//! - [`groups`]: the long table grouped (polars) into the numbers the summary shows: means
//!   over cells differing only by seed, pruning cost, means over tasks;
//! - [`summary`] and [`sections`]: `summary.md`, perplexity by method x setting, realised
//!   sparsity, agreement with the dense model, zero-shot accuracy per task with its mean,
//!   pruning time with speedups over a reference method; sections without data are left out;
//! - [`model_level`]: structured cells' rows of the long table and their summary section;
//! - [`curves`]: the plots' data (drawn by [`crate::plots`]);
//! - [`training`]: training cells' fine-tuning section and loss curves (`plot_loss_<s>.svg`,
//!   `plot_heldout_<s>.svg`);
//! - [`settings`], [`markdown`]: labels and orders, Markdown tables and number formats.
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

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use polars::prelude::*;

use crate::record::CellRecord;

mod curves;
mod groups;
mod long;
mod markdown;
/// Structured cells: long-table rows and the summary section.
pub mod model_level;
pub mod packed;
mod sections;
mod settings;
mod summary;
mod training;
#[cfg(test)]
mod tests;

use summary::Summary;

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
    /// Training-time method label the others are compared with in the fine-tuning section.
    pub training_baseline: Option<String>,
}

// File names written by `write_tables` (plots only when they have data).

/// The long table as Parquet.
pub const PARQUET: &str = "runs.parquet";
/// The long table as CSV.
pub const CSV: &str = "runs.csv";
/// The summary.
pub const SUMMARY: &str = "summary.md";

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
    let mut df = long::long_frame(records)?;
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
    let text = render_summary(&summary, opts);
    crate::atomic::write_with(&path, |mut f| {
        std::io::Write::write_all(&mut f, text.as_bytes()).map_err(Into::into)
    })?;
    written.push(path);

    let mut plots: Vec<(String, crate::plots::LinePlot)> = summary.plots().into_iter().map(|(n, p)| (n.to_string(), p)).collect();
    plots.extend(training::plots(records));
    for (name, plot) in plots {
        let path = out_dir.join(name);
        let svg = crate::plots::render_svg(&plot)?;
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
    Ok(render_summary(&Summary::new(records)?, opts))
}

/// `summary.md`: the title and protocol notes, then every section that has data, then links
/// to the plots.
fn render_summary(summary: &Summary, opts: &SummaryOptions) -> String {
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
    summary.provenance(&mut out);
    summary.perplexity(&mut out);
    summary.realised(&mut out);
    summary.agreement(&mut out);
    summary.zero_shot(&mut out);
    summary.timing(&mut out, opts.time_reference.as_deref());
    out.push_str(&model_level::section(summary.records));
    out.push_str(&packed::section(summary.records));
    out.push_str(&training::section(summary.records, opts.training_baseline.as_deref()));
    let mut plots: Vec<(String, crate::plots::LinePlot)> = summary.plots().into_iter().map(|(n, p)| (n.to_string(), p)).collect();
    plots.extend(training::plots(summary.records));
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
