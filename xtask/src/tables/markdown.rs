//! Markdown rendering: a table with label columns and right-aligned numbers, and the number
//! formats the summary uses.

/// A Markdown table: the first `left` columns are left-aligned labels, the rest right-aligned.
pub(super) struct Table {
    /// Column headings.
    pub(super) header: Vec<String>,
    /// Leading label columns (left-aligned).
    pub(super) left: usize,
    /// Rows, one string per column.
    pub(super) rows: Vec<Vec<String>>,
}

impl Table {
    /// Appends the table and a blank line to `out`.
    pub(super) fn render(&self, out: &mut String) {
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

/// What an empty table cell shows.
pub(super) const MISSING: &str = "–";

/// `v` with `decimals` decimals.
pub(super) fn fixed(v: f64, decimals: usize) -> String {
    format!("{v:.decimals$}")
}

/// A fraction in percent, one decimal.
pub(super) fn pct(v: f64) -> String {
    fixed(v * 100.0, 1)
}

/// `134.5M`, `6.7B`, `950K`; plain below a thousand.
pub(super) fn count_label(n: usize) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1}B", n / 1e9),
        n if n >= 1e6 => format!("{:.1}M", n / 1e6),
        n if n >= 1e3 => format!("{:.1}K", n / 1e3),
        n => format!("{n:.0}"),
    }
}

/// The distinct strings in order of first appearance.
pub(super) fn distinct<'b>(it: impl Iterator<Item = &'b str>) -> Vec<&'b str> {
    let mut v: Vec<&str> = Vec::new();
    for s in it {
        if !v.contains(&s) {
            v.push(s);
        }
    }
    v
}
