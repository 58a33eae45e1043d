//! The sections of `summary.md`: what the records say about how they were made, then the
//! tables in the shape of the pruning papers' tables: perplexity by method x
//! setting, realised sparsity, agreement with the dense model, zero-shot accuracy per task
//! with its mean, and pruning time with speedups over a reference method.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use super::groups::{ACC_METRICS, Measure, Timing};
use super::markdown::{MISSING, Table, count_label, distinct, fixed, pct};
use super::settings::{push_new, rank};
use super::summary::Summary;
use crate::record::CellRecord;

impl Summary<'_> {
    /// What the records say about how they were made.
    pub(super) fn provenance(&self, out: &mut String) {
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
        // Calibration of the one-shot methods (a training cell's windows are its training data,
        // stated in the fine-tuning section).
        let pruned: Vec<&CellRecord> = r.iter().filter(|c| c.cell.method.is_some() && c.cell.training.is_none()).collect();
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
            .filter(|c| c.cell.method.is_some() && c.cell.training.is_none())
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

    /// Perplexity by method x setting, per task and model.
    pub(super) fn perplexity(&self, out: &mut String) {
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

    /// Realised sparsity of the layer-wise cells, by method x setting.
    pub(super) fn realised(&self, out: &mut String) {
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

    /// KL to the dense model and top-1 agreement, by method x setting.
    pub(super) fn agreement(&self, out: &mut String) {
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

    /// Zero-shot accuracy per task with its standard error, and the mean over tasks.
    pub(super) fn zero_shot(&self, out: &mut String) {
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
                Table { header, left: 2, rows }.render(out);
            }
        }
    }

    /// Pruning seconds and peak memory, with speedups over `reference`.
    pub(super) fn timing(&self, out: &mut String, reference: Option<&str>) {
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
            Table { header, left: 2, rows }.render(out);
        }
    }
}
