//! The [`Summary`] of a run's records: the grouped numbers every table and plot of
//! `summary.md` is drawn from, with the queries the sections share (numbers of a model and
//! metric, the methods and settings present, a method x setting table). The sections are in
//! [`super::sections`], the plots' data in [`super::curves`].

use anyhow::Result;

use super::groups::{Measure, MethodSetting, TaskMean, Timing, measures, task_means, timings, working_frame};
use super::markdown::{MISSING, Table, distinct, fixed};
use super::settings::{Orders, push_new, rank};
use crate::record::CellRecord;

/// Everything the summary and the plots are drawn from.
pub(super) struct Summary<'a> {
    /// The records, in matrix order.
    pub(super) records: &'a [CellRecord],
    /// First-appearance orders.
    pub(super) orders: Orders,
    /// Every measured number, averaged over seeds.
    pub(super) measures: Vec<Measure>,
    /// Pruning cost per model, method and setting.
    pub(super) timings: Vec<Timing>,
    /// Accuracies averaged over tasks.
    pub(super) task_means: Vec<TaskMean>,
}

impl<'a> Summary<'a> {
    /// Groups the records.
    pub(super) fn new(records: &'a [CellRecord]) -> Result<Self> {
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
    pub(super) fn select(&self, model: &str, task: Option<&str>, metric: &str) -> Vec<&Measure> {
        self.measures
            .iter()
            .filter(|m| m.model == model && m.metric == metric && task.is_none_or(|t| m.task == t))
            .collect()
    }

    /// Tasks having `metric`, in task order.
    pub(super) fn tasks_with(&self, metric: &str) -> Vec<String> {
        let mut tasks: Vec<String> = Vec::new();
        for m in self.measures.iter().filter(|m| m.metric == metric) {
            push_new(&mut tasks, &m.task);
        }
        tasks.sort_by_key(|t| rank(&self.orders.tasks, t));
        tasks
    }

    /// Methods and settings present in `cells`, in table order.
    pub(super) fn axes<'m>(
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
    pub(super) fn method_by_setting<T: MethodSetting>(&self, items: &[&T], format: impl Fn(&T) -> String) -> Table {
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

    /// A value with its spread over cells, where there are several.
    pub(super) fn with_sd(m: &Measure, scale: f64, decimals: usize) -> String {
        let v = fixed(m.mean * scale, decimals);
        match m.sd {
            Some(sd) => format!("{v} ± {}", fixed(sd * scale, decimals)),
            None => v,
        }
    }

    /// Heading of a task's table (naming the model when there are several).
    pub(super) fn heading(&self, task: &str, model: &str) -> String {
        if self.orders.models.len() > 1 {
            format!("### `{task}`, model `{model}`\n\n")
        } else {
            format!("### `{task}`\n\n")
        }
    }
}
