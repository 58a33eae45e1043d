//! A bench run against the committed results of its matrix, cell by cell.
//!
//! Cells are matched by key (the hash of the cell's specification and the model's sha256), so
//! only runs of the same protocol on the same model file are compared. Every evaluation of a
//! cell and its realised sparsity are compared with the committed record:
//!
//! - counts turned into fractions (`acc`, `acc_norm`, `top1_agree`) may differ by one
//!   document or one prediction: on another CPU the kernels round differently, and a near
//!   tie between two choices can flip;
//! - every other metric (perplexity, KL to the dense model) and the realised sparsity may
//!   differ by [`REL_TOLERANCE`] relative.
//!
//! On the machine the results were made on, the numbers are bit-identical; the summary says
//! how many cells were identical, how many within the tolerances, and lists every difference.
//! Timings and memory are not compared (they depend on the machine and its load).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;

use crate::record::{CellRecord, CellSpec, cells_dir, existing};

/// Relative tolerance of continuous metrics and of the realised sparsity.
pub const REL_TOLERANCE: f64 = 1e-4;

/// How one cell compares.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Every compared number is bit-identical.
    Identical,
    /// Every compared number is within its tolerance, some not identical.
    Within,
    /// At least one number is outside its tolerance (or missing on one side).
    Differs,
    /// No committed record of this cell (a new cell, another model file, another protocol).
    NotCommitted,
}

/// One compared number.
#[derive(Debug, Clone)]
pub struct Row {
    /// Task and metric, or `realised sparsity`.
    pub what: String,
    /// The committed record's number, if it has it.
    pub committed: Option<f64>,
    /// This run's number, if it has it.
    pub run: Option<f64>,
    /// The tolerance, in words.
    pub tolerance: String,
    /// Whether the two are within the tolerance.
    pub ok: bool,
}

/// One cell's comparison.
#[derive(Debug, Clone)]
pub struct Cell {
    /// Label, pattern and sparsity.
    pub name: String,
    /// How it compares.
    pub verdict: Verdict,
    /// Every compared number (none without a committed record).
    pub rows: Vec<Row>,
}

/// The whole comparison.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// One per cell, in matrix order.
    pub cells: Vec<Cell>,
    /// Whether the committed directory exists at all.
    pub committed_exists: bool,
}

/// The numbers of a record that are compared, by name, with the tolerance each gets.
fn numbers(rec: &CellRecord) -> BTreeMap<String, (f64, Tolerance)> {
    let mut out = BTreeMap::new();
    for e in &rec.report.evaluations {
        let count = match e.metric.as_str() {
            "acc" | "acc_norm" => e.docs,
            "top1_agree" => e.predictions,
            _ => None,
        };
        let tol = match count {
            Some(n) => Tolerance::OneIn(n.max(1)),
            None => Tolerance::Relative(REL_TOLERANCE),
        };
        out.insert(format!("{} {}", e.task, e.metric), (e.value, tol));
    }
    if let Some(s) = &rec.report.sparsity {
        out.insert("realised sparsity".into(), (s.realised, Tolerance::Relative(REL_TOLERANCE)));
    }
    out
}

#[derive(Debug, Clone, Copy)]
enum Tolerance {
    Relative(f64),
    /// One unit in `n` (one document, one prediction).
    OneIn(usize),
}

impl Tolerance {
    fn admits(self, committed: f64, run: f64) -> bool {
        let diff = (run - committed).abs();
        match self {
            Tolerance::Relative(r) => diff <= r * committed.abs(),
            Tolerance::OneIn(n) => diff <= 1.0 / n as f64 + 1e-12,
        }
    }

    fn label(self) -> String {
        match self {
            Tolerance::Relative(r) => format!("{r:e} relative"),
            Tolerance::OneIn(n) => format!("1 of {n}"),
        }
    }
}

/// Compares the records of `cells` in `run` with those of the same keys in `committed`.
pub fn compare(cells: &[(String, CellSpec)], run: &Path, committed: &Path) -> Result<Comparison> {
    let mut out = Vec::new();
    for (key, spec) in cells {
        let name = format!("{} {} {}", spec.label, spec.pattern, spec.sparsity);
        let mine = existing(run, key).ok_or_else(|| anyhow::anyhow!("the run has no record of cell {name} ({key})"))?;
        let Some(theirs) = existing(committed, key) else {
            out.push(Cell { name, verdict: Verdict::NotCommitted, rows: Vec::new() });
            continue;
        };
        let (a, b) = (numbers(&theirs), numbers(&mine));
        let mut rows = Vec::new();
        for what in a.keys().chain(b.keys().filter(|k| !a.contains_key(*k))) {
            let (c, r) = (a.get(what), b.get(what));
            let tol = c.or(r).map(|(_, t)| *t).expect("one side has it");
            let ok = match (c, r) {
                (Some((c, _)), Some((r, _))) => tol.admits(*c, *r),
                _ => false,
            };
            rows.push(Row { what: what.clone(), committed: c.map(|x| x.0), run: r.map(|x| x.0), tolerance: tol.label(), ok });
        }
        let verdict = if rows.iter().any(|r| !r.ok) {
            Verdict::Differs
        } else if rows.iter().all(|r| r.committed.map(f64::to_bits) == r.run.map(f64::to_bits)) {
            Verdict::Identical
        } else {
            Verdict::Within
        };
        out.push(Cell { name, verdict, rows });
    }
    Ok(Comparison { cells: out, committed_exists: cells_dir(committed).is_dir() })
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v}"))
}

impl Comparison {
    fn count(&self, v: Verdict) -> usize {
        self.cells.iter().filter(|c| c.verdict == v).count()
    }

    /// Cells outside the tolerances.
    pub fn differing(&self) -> usize {
        self.count(Verdict::Differs)
    }

    /// The terminal summary: one line of counts, one line per cell that is not identical, and
    /// one per number outside its tolerance.
    pub fn lines(&self) -> Vec<String> {
        if !self.committed_exists {
            return vec!["there are no committed results for this matrix to compare with".into()];
        }
        let mut lines = vec![format!(
            "{} cells: {} identical to the committed results, {} within the tolerances, {} differ, {} have no committed record",
            self.cells.len(),
            self.count(Verdict::Identical),
            self.count(Verdict::Within),
            self.count(Verdict::Differs),
            self.count(Verdict::NotCommitted)
        )];
        for c in &self.cells {
            match c.verdict {
                Verdict::Identical => {}
                Verdict::NotCommitted => lines.push(format!("  {}: no committed record with this key", c.name)),
                Verdict::Within => lines.push(format!("  {}: within the tolerances", c.name)),
                Verdict::Differs => {
                    lines.push(format!("  {}: DIFFERS", c.name));
                    for r in c.rows.iter().filter(|r| !r.ok) {
                        lines.push(format!("    {}: committed {}, this run {} (tolerance {})", r.what, fmt(r.committed), fmt(r.run), r.tolerance));
                    }
                }
            }
        }
        lines
    }

    /// `comparison.md`: the summary, then every compared number of every cell.
    pub fn markdown(&self, matrix: &str, committed: &Path) -> String {
        let mut s = format!("# `{matrix}`: this run against {}\n\n", committed.display());
        s.push_str(&format!(
            "Tolerances: accuracies and top-1 agreement may differ by one document or prediction; perplexity, KL and realised sparsity by {REL_TOLERANCE:e} relative. Timings are not compared.\n\n"
        ));
        for l in self.lines() {
            s.push_str(&format!("{l}\n"));
        }
        s.push_str("\n| cell | number | committed | this run | tolerance | ok |\n|---|---|---:|---:|---|---|\n");
        for c in &self.cells {
            if c.rows.is_empty() {
                s.push_str(&format!("| {} | (no committed record) | | | | |\n", c.name));
            }
            for r in &c.rows {
                s.push_str(&format!("| {} | {} | {} | {} | {} | {} |\n", c.name, r.what, fmt(r.committed), fmt(r.run), r.tolerance, if r.ok { "yes" } else { "**no**" }));
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerances() {
        assert!(Tolerance::Relative(1e-4).admits(100.0, 100.009));
        assert!(!Tolerance::Relative(1e-4).admits(100.0, 100.02));
        assert!(Tolerance::OneIn(100).admits(0.48, 0.49));
        assert!(!Tolerance::OneIn(100).admits(0.48, 0.50));
        assert!(Tolerance::Relative(0.0).admits(1.5, 1.5));
    }
}
