//! The plots' data: perplexity and mean zero-shot accuracy against sparsity, one curve per
//! method (unstructured settings on a line, N:M settings as marks, the dense value as a
//! reference line), as [`LinePlot`]s for [`crate::plots`] to draw.

use super::groups::ACC_METRICS;
use super::settings::{method_label, nm, setting_label};
use super::summary::Summary;
use crate::plots::{LinePlot, Reference, Series as Curve};

/// File name of the plot of perplexity against sparsity.
pub const PLOT_PPL: &str = "plot_ppl.svg";
/// File name of the plot of mean zero-shot accuracy against sparsity.
pub const PLOT_ACC: &str = "plot_acc.svg";

impl Summary<'_> {
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
                && setting_label(&r.cell.setting_pattern(), r.cell.sparsity) == setting
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
    pub(super) fn plots(&self) -> Vec<(&'static str, LinePlot)> {
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
