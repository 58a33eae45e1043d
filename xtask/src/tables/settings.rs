//! Settings (a pattern with its sparsity), their labels and order, and the first-appearance
//! orders of models, methods, settings and tasks that every table follows.

use std::cmp::Ordering;

use crate::record::CellRecord;

/// `(N, M)` of an `N:M` pattern.
pub(super) fn nm(pattern: &str) -> Option<(u32, u32)> {
    let (n, m) = pattern.split_once(':')?;
    Some((n.trim().parse().ok()?, m.trim().parse().ok()?))
}

/// `50%`, `62.5%`.
pub(super) fn percent_label(fraction: f64) -> String {
    let p = fraction * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}%")
    } else {
        format!("{p:.1}%")
    }
}

/// Column label of a pattern and its (requested) sparsity: `dense`, `50%`, `2:4`,
/// `<unit> 20% of all` for a structured budget of all parameters ([`CellSpec::setting_pattern`](crate::record::CellSpec::setting_pattern)),
/// or `<pattern> 50%` for other patterns.
pub fn setting_label(pattern: &str, sparsity: f64) -> String {
    match pattern {
        "dense" => "dense".into(),
        "unstructured" => percent_label(sparsity),
        p if nm(p).is_some() => p.into(),
        p => match p.strip_suffix(" of all") {
            Some(unit) => format!("{unit} {} of all", percent_label(sparsity)),
            None => format!("{p} {}", percent_label(sparsity)),
        },
    }
}

/// Dense, unstructured by sparsity, N:M by sparsity with the larger M first, others by name.
pub(super) fn cmp_setting(a: (&str, f64), b: (&str, f64)) -> Ordering {
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
pub(super) fn method_label(r: &CellRecord) -> &str {
    if r.cell.is_dense() {
        "dense"
    } else {
        &r.cell.label
    }
}

/// First-appearance orders of the records' models, methods (dense first), settings and tasks.
#[derive(Debug, Default)]
pub(super) struct Orders {
    /// Model labels.
    pub(super) models: Vec<String>,
    /// Method labels, `dense` first.
    pub(super) methods: Vec<String>,
    /// Setting labels, in setting order.
    pub(super) settings: Vec<String>,
    /// Task names.
    pub(super) tasks: Vec<String>,
}

/// Appends `s` unless `v` has it.
pub(super) fn push_new(v: &mut Vec<String>, s: &str) {
    if !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

/// Position of `s` in `v` (after the end when absent).
pub(super) fn rank(v: &[String], s: &str) -> usize {
    v.iter().position(|x| x == s).unwrap_or(v.len())
}

impl Orders {
    /// The orders of `records`.
    pub(super) fn new(records: &[CellRecord]) -> Self {
        let mut o = Orders::default();
        if records.iter().any(|r| r.cell.is_dense()) {
            o.methods.push("dense".into());
        }
        let mut settings: Vec<(String, f64)> = Vec::new();
        for r in records {
            push_new(&mut o.models, &r.report.model.label);
            push_new(&mut o.methods, method_label(r));
            settings.push((r.cell.setting_pattern(), r.cell.sparsity));
            for t in &r.cell.tasks {
                push_new(&mut o.tasks, &t.name);
            }
            for e in &r.report.evaluations {
                push_new(&mut o.tasks, &e.task);
            }
        }
        settings.sort_by(|a, b| cmp_setting((&a.0, a.1), (&b.0, b.1)));
        for (p, s) in settings {
            push_new(&mut o.settings, &setting_label(&p, s));
        }
        o
    }
}
