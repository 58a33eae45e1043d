//! The greedy driver: score, remove the lowest within the budget, rescore, record.

use std::collections::HashMap;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::method::{Calibration, Schedule, ScoreInput, StructuredMethod, StructuredModel};
use super::units::{ParamCount, Unit, UnitKind};
use crate::declare::Built;
pub use prunus_report::{BudgetBase, IterationRecord, RemovedUnit};
use crate::error::{Error, Result};

/// What to remove and what to keep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StructuredOptions {
    /// The kind of unit removed.
    pub unit: UnitKind,
    /// Share of the parameters to remove, in (0, 1), of the count `budget` names.
    pub target: f64,
    /// What `target` is a share of. Default: the parameters outside the embeddings.
    #[serde(default)]
    pub budget: BudgetBase,
    /// The units of the first this many decoder layers (original numbering) are never removed.
    pub protect_first: usize,
    /// The units of the last this many decoder layers are never removed.
    pub protect_last: usize,
}

impl StructuredOptions {
    /// `unit` and `target` with the first and the last layer protected.
    pub fn new(unit: UnitKind, target: f64) -> Self {
        StructuredOptions { unit, target, budget: BudgetBase::ExcludingEmbeddings, protect_first: 1, protect_last: 1 }
    }
}

/// Progress events for a bar in the binary.
#[derive(Debug, Clone, Copy)]
pub enum Event {
    /// Iteration `index` starts; about `expected` iterations in all (an estimate from the
    /// unit sizes); `reduction` removed so far.
    Iteration {
        /// 0-based index of the iteration.
        index: usize,
        /// Estimated number of iterations in all.
        expected: usize,
        /// Share of the parameters outside the embeddings removed so far.
        reduction: f64,
    },
}

/// The result of [`prune_structured`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StructuredOutcome {
    /// The kind of unit removed ([`StructuredOptions::unit`]).
    pub unit: UnitKind,
    /// The target reduction asked for ([`StructuredOptions::target`]).
    pub target: f64,
    /// What the target is a share of ([`StructuredOptions::budget`]).
    #[serde(default)]
    pub budget: BudgetBase,
    /// [`StructuredOptions::protect_first`] of the run.
    pub protect_first: usize,
    /// [`StructuredOptions::protect_last`] of the run.
    pub protect_last: usize,
    /// The method's schedule.
    pub schedule: Schedule,
    /// Parameter counts of the model before pruning.
    pub before: ParamCount,
    /// Parameter counts of the pruned model.
    pub after: ParamCount,
    /// Every scoring and its removal, in order.
    pub iterations: Vec<IterationRecord>,
}

impl StructuredOutcome {
    /// Share of the parameters outside the embeddings removed.
    pub fn removed_fraction(&self) -> f64 {
        fraction(self.before.excluding_embeddings - self.after.excluding_embeddings, self.before.excluding_embeddings)
    }

    /// Share of all parameters removed.
    pub fn removed_fraction_including_embeddings(&self) -> f64 {
        fraction(self.before.total - self.after.total, self.before.total)
    }

    /// Every removed unit, in removal order.
    pub fn removed_units(&self) -> impl Iterator<Item = &RemovedUnit> {
        self.iterations.iter().flat_map(|i| &i.removed)
    }

    /// Seconds spent scoring and removing.
    pub fn seconds(&self) -> f64 {
        self.iterations.iter().map(|i| i.score_seconds + i.remove_seconds).sum()
    }
}

fn fraction(part: usize, whole: usize) -> f64 {
    if whole == 0 { 0.0 } else { part as f64 / whole as f64 }
}

/// A target reduction must lie in (0, 1).
pub fn check_target(target: f64) -> Result<()> {
    if target.is_finite() && target > 0.0 && target < 1.0 {
        Ok(())
    } else {
        Err(Error::BadReduction { value: target })
    }
}

/// Checks `options` against `model` without changing anything: the target, the unit kind,
/// the protected layers and that the target is reachable. [`prune_structured`] runs the same
/// checks first; a caller may run them before expensive preparations.
pub fn check(model: &dyn StructuredModel, options: &StructuredOptions) -> Result<()> {
    check_target(options.target)?;
    let units = model.units(options.unit)?;
    let tracker = Tracker::new(model.n_layers(), options.unit, &units)?;
    let goal = options.target * options.budget.count(&model.param_count()) as f64;
    tracker.check_budget(&units, options, goal, 0.0)
}

/// Runs `method` on `model` until the target of `options` is met (see the
/// [module docs](crate::structured) for the rule) and returns what was removed, iteration by iteration.
/// Everything is checked before the first unit goes: the target, the unit kind, the
/// protected layers, reachability, and calibration data for a method that needs it.
pub fn prune_structured(
    model: &mut dyn StructuredModel,
    method: &Built<dyn StructuredMethod>,
    calibration: Option<&Calibration<'_>>,
    options: &StructuredOptions,
    on_event: &mut dyn FnMut(Event),
) -> Result<StructuredOutcome> {
    check_target(options.target)?;
    if method.needs_calibration() && calibration.is_none() {
        return Err(Error::NeedsCalibration { method: method.name.into(), what: "calibration texts".into() });
    }
    let schedule = method.schedule();
    let per_iteration = match schedule {
        Schedule::OneShot => usize::MAX,
        Schedule::Iterative { units_per_iteration: 0 } => {
            return Err(Error::BadConfig { method: method.name.into(), reason: "units_per_iteration must be at least 1".into() });
        }
        Schedule::Iterative { units_per_iteration } => units_per_iteration,
    };
    let before = model.param_count();
    let goal = options.target * options.budget.count(&before) as f64;
    let mut units = model.units(options.unit)?;
    let mut tracker = Tracker::new(model.n_layers(), options.unit, &units)?;
    tracker.check_budget(&units, options, goal, 0.0)?;

    let mut iterations = Vec::new();
    loop {
        let removed = (before.excluding_embeddings - model.param_count().excluding_embeddings) as f64;
        let candidates: Vec<Unit> = units.iter().filter(|u| !tracker.protected(u, options)).cloned().collect();
        let Some(smallest) = candidates.iter().map(|u| u.params).min() else { break };
        if !takes(removed, smallest, goal) {
            break;
        }
        let index = iterations.len();
        let mean = candidates.iter().map(|u| u.params as f64).sum::<f64>() / candidates.len() as f64;
        let left = ((goal - removed) / mean).round().max(1.0) as usize;
        let expected = index + if per_iteration == usize::MAX { 1 } else { left.div_ceil(per_iteration) };
        on_event(Event::Iteration { index, expected, reduction: removed / before.excluding_embeddings.max(1) as f64 });

        let t = Instant::now();
        let scored = method.score(&ScoreInput { model: &*model, units: &candidates, calibration, iteration: index })?;
        let score_seconds = t.elapsed().as_secs_f64();
        check_scores(method.name, &candidates, &scored.scores)?;

        let picked = tracker.pick(&units, &candidates, &scored.scores, removed, goal, per_iteration);
        if picked.is_empty() {
            break;
        }
        let t = Instant::now();
        let chosen: Vec<Unit> = picked.iter().map(|&c| candidates[c].clone()).collect();
        let before_edit = model.param_count().excluding_embeddings;
        model.remove_units(&chosen)?;
        let remove_seconds = t.elapsed().as_secs_f64();
        let gone: usize = chosen.iter().map(|u| u.params).sum();
        let now = model.param_count().excluding_embeddings;
        if before_edit - now != gone {
            return Err(Error::Invalid(format!(
                "removing {} {} units took {} parameters, but the units count {gone}",
                chosen.len(),
                options.unit,
                before_edit - now
            )));
        }
        let removed_units = picked
            .iter()
            .map(|&c| {
                let (layer, index) = tracker.original(&candidates[c]);
                RemovedUnit { layer, index, params: candidates[c].params, score: scored.scores[c] }
            })
            .collect();
        tracker.remove(&chosen);
        iterations.push(IterationRecord {
            iteration: index,
            candidates: candidates.len(),
            removed: removed_units,
            reduction: fraction(before.excluding_embeddings - now, before.excluding_embeddings),
            score_seconds,
            remove_seconds,
            notes: scored.notes,
        });
        if schedule == Schedule::OneShot {
            break;
        }
        units = model.units(options.unit)?;
        tracker.check(&units)?;
    }
    Ok(StructuredOutcome {
        unit: options.unit,
        target: options.target,
        budget: options.budget,
        protect_first: options.protect_first,
        protect_last: options.protect_last,
        schedule,
        before,
        after: model.param_count(),
        iterations,
    })
}

/// Whether a unit of `params` is taken with `removed` parameters gone and `goal` to reach:
/// while below the goal, and if taking it ends no farther from the goal than stopping.
fn takes(removed: f64, params: usize, goal: f64) -> bool {
    removed < goal && removed + params as f64 - goal <= goal - removed
}

fn check_scores(method: &str, units: &[Unit], scores: &[f64]) -> Result<()> {
    if scores.len() != units.len() {
        return Err(Error::Invalid(format!("method `{method}` returned {} scores for {} units", scores.len(), units.len())));
    }
    if let Some((i, &s)) = scores.iter().enumerate().find(|(_, s)| !s.is_finite()) {
        let u = &units[i];
        return Err(Error::NonFinite { tensor: format!("`{method}` score of {}", u.describe()), index: i, value: s as f32 });
    }
    Ok(())
}

/// The original (unpruned) indices of the current layers and of the units inside them.
struct Tracker {
    kind: UnitKind,
    n_original: usize,
    /// Current layer -> original layer.
    layers: Vec<usize>,
    /// Current layer -> (current index -> original index) of its units (width kinds).
    within: Vec<Vec<usize>>,
}

impl Tracker {
    fn new(n_layers: usize, kind: UnitKind, units: &[Unit]) -> Result<Self> {
        let mut within = vec![Vec::new(); n_layers];
        for u in units {
            let list = within.get_mut(u.layer).ok_or_else(|| Error::Invalid(format!("{kind} unit in layer {} of a {n_layers}-layer model", u.layer)))?;
            list.push(list.len());
        }
        let t = Tracker { kind, n_original: n_layers, layers: (0..n_layers).collect(), within };
        t.check(units)?;
        Ok(t)
    }

    /// The model must list its units as the tracker expects (the [`StructuredModel`] contract).
    fn check(&self, units: &[Unit]) -> Result<()> {
        let mut counts = vec![0usize; self.layers.len()];
        for u in units {
            let ok = u.kind == self.kind
                && u.layer < counts.len()
                && u.index == counts[u.layer]
                && (self.kind != UnitKind::Layer || u.index == 0);
            if !ok {
                return Err(Error::Invalid(format!("the model listed {} out of order", u.describe())));
            }
            counts[u.layer] += 1;
        }
        if let Some(l) = (0..counts.len()).find(|&l| counts[l] != self.within[l].len()) {
            return Err(Error::Invalid(format!("the model lists {} {} units in layer {l}, expected {}", counts[l], self.kind, self.within[l].len())));
        }
        Ok(())
    }

    fn original(&self, u: &Unit) -> (usize, usize) {
        (self.layers[u.layer], if self.kind == UnitKind::Layer { 0 } else { self.within[u.layer][u.index] })
    }

    fn protected(&self, u: &Unit, o: &StructuredOptions) -> bool {
        let l = self.layers[u.layer];
        l < o.protect_first || l + o.protect_last >= self.n_original
    }

    /// Units per container now.
    fn remaining(units: &[Unit]) -> HashMap<Option<usize>, usize> {
        let mut m = HashMap::new();
        for u in units {
            *m.entry(u.container()).or_insert(0) += 1;
        }
        m
    }

    /// Refuses a target that is out of reach or below half the smallest candidate.
    fn check_budget(&self, units: &[Unit], o: &StructuredOptions, goal: f64, removed: f64) -> Result<()> {
        let candidates: Vec<&Unit> = units.iter().filter(|u| !self.protected(u, o)).collect();
        let protection = format!("protect_first {}, protect_last {} of {} layers", o.protect_first, o.protect_last, self.n_original);
        let Some(smallest) = candidates.iter().map(|u| u.params).min() else {
            return Err(Error::Budget { target: o.target, reason: format!("no {} unit can be removed ({protection})", o.unit) });
        };
        // Every candidate may go except, in a container whose units are all candidates, one.
        let remaining = Self::remaining(units);
        let mut per_container: HashMap<Option<usize>, Vec<usize>> = HashMap::new();
        for u in &candidates {
            per_container.entry(u.container()).or_default().push(u.params);
        }
        let reachable: f64 = per_container
            .iter()
            .map(|(c, sizes)| {
                let sum: usize = sizes.iter().sum();
                let keep = if sizes.len() == remaining[c] { sizes.iter().copied().min().unwrap_or(0) } else { 0 };
                (sum - keep) as f64
            })
            .sum();
        let total = goal / o.target;
        if removed + reachable < goal && goal - (removed + reachable) > smallest as f64 / 2.0 {
            return Err(Error::Budget {
                target: o.target,
                reason: format!(
                    "at most {:.4} {} can be removed as {} units ({protection}; one unit of each {} must remain)",
                    (removed + reachable) / total,
                    o.budget.describe(),
                    o.unit,
                    if o.unit == UnitKind::Layer { "model" } else { "layer" }
                ),
            });
        }
        if !takes(removed, smallest, goal) {
            return Err(Error::Budget {
                target: o.target,
                reason: format!(
                    "the smallest {} unit is {:.4} {}, so nothing would be removed",
                    o.unit,
                    smallest as f64 / total,
                    o.budget.describe()
                ),
            });
        }
        Ok(())
    }

    /// Candidate positions to remove now, lowest score first (ties: earlier unit), at most
    /// `limit`, each allowed by the budget rule and by "one unit per container remains".
    fn pick(&self, units: &[Unit], candidates: &[Unit], scores: &[f64], mut removed: f64, goal: f64, limit: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]).then(a.cmp(&b)));
        let mut remaining = Self::remaining(units);
        let mut picked = Vec::new();
        for c in order {
            if picked.len() == limit {
                break;
            }
            let u = &candidates[c];
            let left = remaining.get_mut(&u.container()).expect("candidates are units");
            if *left <= 1 {
                continue;
            }
            if !takes(removed, u.params, goal) {
                break;
            }
            *left -= 1;
            removed += u.params as f64;
            picked.push(c);
        }
        picked
    }

    /// Forgets removed units (indices of the current model).
    fn remove(&mut self, removed: &[Unit]) {
        if self.kind == UnitKind::Layer {
            let mut layers: Vec<usize> = removed.iter().map(|u| u.layer).collect();
            layers.sort_unstable_by(|a, b| b.cmp(a));
            layers.dedup();
            for l in layers {
                self.layers.remove(l);
                self.within.remove(l);
            }
        } else {
            let mut at: Vec<(usize, usize)> = removed.iter().map(|u| (u.layer, u.index)).collect();
            at.sort_unstable_by(|a, b| b.cmp(a));
            at.dedup();
            for (l, i) in at {
                self.within[l].remove(i);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Tensor;

    use super::*;
    use crate::declare::Notes;
    use crate::structured::{Params, Part, Scored};

    /// A model of `widths[l]` units per layer (of kind `kind`), each unit `size` parameters
    /// of a (widths[l], size) tensor `l{l}` whose row i is the unit (for layer units: layers
    /// of `size` parameters each, one row).
    struct Toy {
        kind: UnitKind,
        widths: Vec<usize>,
        size: usize,
        embeddings: usize,
        /// Original (layer, index) of each current unit, for checks.
        ids: Vec<Vec<(usize, usize)>>,
    }

    impl Toy {
        fn new(kind: UnitKind, widths: Vec<usize>, size: usize) -> Self {
            let ids = widths.iter().enumerate().map(|(l, &w)| (0..w).map(|i| (l, i)).collect()).collect();
            Toy { kind, widths, size, embeddings: 1000, ids }
        }
    }

    impl StructuredModel for Toy {
        fn n_layers(&self) -> usize {
            self.widths.len()
        }

        fn units(&self, kind: UnitKind) -> Result<Vec<Unit>> {
            if kind != self.kind {
                return Err(Error::UnsupportedUnit { unit: kind.to_string(), reason: "toy".into() });
            }
            let mut out = Vec::new();
            for (l, &w) in self.widths.iter().enumerate() {
                let n = if kind == UnitKind::Layer { 1 } else { w };
                for i in 0..n {
                    let (len, params) = if kind == UnitKind::Layer { (w, w * self.size) } else { (1, self.size) };
                    out.push(Unit { kind, layer: l, index: i, params, parts: vec![Part { tensor: format!("l{}", self.ids[l][0].0), dim: 0, start: i, len }] });
                }
            }
            Ok(out)
        }

        fn param_count(&self) -> ParamCount {
            let body: usize = self.widths.iter().map(|w| w * self.size).sum();
            ParamCount { total: body + self.embeddings, excluding_embeddings: body }
        }

        fn weights(&self) -> Result<Params> {
            Ok(Params::default())
        }

        fn loss_and_grads(&self, _: &Tensor) -> Result<(f64, Params)> {
            Ok((0.0, Params::default()))
        }

        fn remove_units(&mut self, units: &[Unit]) -> Result<()> {
            let mut units = units.to_vec();
            units.sort_by_key(|u| std::cmp::Reverse((u.layer, u.index)));
            for u in units {
                if self.kind == UnitKind::Layer {
                    self.widths.remove(u.layer);
                    self.ids.remove(u.layer);
                } else {
                    self.widths[u.layer] -= 1;
                    self.ids[u.layer].remove(u.index);
                }
            }
            Ok(())
        }
    }

    /// Scores each unit by a fixed function of its original (layer, index).
    #[derive(Clone, Copy)]
    struct ByOriginal {
        schedule: Schedule,
        score: fn(usize, usize) -> f64,
    }

    impl StructuredMethod for ByOriginal {
        fn schedule(&self) -> Schedule {
            self.schedule
        }
        fn needs_calibration(&self) -> bool {
            false
        }
        fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
            // The toy's parts name the original layer; the index is found by the row.
            let toy_ids = input.units.iter().map(|u| (u.parts[0].tensor[1..].parse::<usize>().unwrap(), u.index));
            Ok(Scored { scores: toy_ids.map(|(l, i)| (self.score)(l, i)).collect(), notes: Notes::new() })
        }
    }

    fn run(model: &mut Toy, method: &ByOriginal, o: &StructuredOptions) -> Result<StructuredOutcome> {
        prune_structured(model, &Built::unregistered("by-original", Box::new(*method)), None, o, &mut |_| {})
    }

    #[test]
    fn layers_go_lowest_score_first_with_original_indices() {
        // 10 layers of 100; layer l scores (l * 7) % 10: order 0,3,6,9,2,5,8,1,4,7.
        let mut m = Toy::new(UnitKind::Layer, vec![1; 10], 100);
        let method = ByOriginal { schedule: Schedule::Iterative { units_per_iteration: 1 }, score: |l, _| ((l * 7) % 10) as f64 };
        let out = run(&mut m, &method, &StructuredOptions::new(UnitKind::Layer, 0.3)).unwrap();
        // Layers 0 and 9 are protected: 3, 6, 2 go (scores 1, 2, 4), one per iteration.
        let removed: Vec<usize> = out.removed_units().map(|r| r.layer).collect();
        assert_eq!(removed, [3, 6, 2]);
        assert_eq!(out.iterations.len(), 3);
        assert_eq!(out.iterations[1].candidates, 7);
        assert_eq!(m.ids.iter().map(|v| v[0].0).collect::<Vec<_>>(), [0, 1, 4, 5, 7, 8, 9]);
        assert_eq!(out.removed_fraction(), 0.3);
        assert_eq!(out.after.total, 700 + 1000);
        assert!((out.removed_fraction_including_embeddings() - 300.0 / 2000.0).abs() < 1e-12);
        assert_eq!(out.iterations[2].removed[0].score, 4.0);
    }

    #[test]
    fn the_budget_stops_nearest_to_the_target() {
        let method = ByOriginal { schedule: Schedule::OneShot, score: |l, _| l as f64 };
        // 10 units of 10%: 0.24 -> 2 units, 0.25 -> 3 (a tie removes), 0.26 -> 3, 0.125 -> 1.
        for (target, n) in [(0.24, 2), (0.25, 3), (0.26, 3), (0.125, 1)] {
            let mut m = Toy::new(UnitKind::Layer, vec![1; 10], 100);
            let o = StructuredOptions { protect_first: 0, protect_last: 0, ..StructuredOptions::new(UnitKind::Layer, target) };
            let out = run(&mut m, &method, &o).unwrap();
            assert_eq!(out.removed_units().count(), n, "target {target}");
            assert_eq!(out.iterations.len(), 1, "one-shot");
        }
    }

    #[test]
    fn a_budget_of_all_parameters_counts_the_embeddings_too() {
        let method = ByOriginal { schedule: Schedule::OneShot, score: |l, _| l as f64 };
        // 10 layers of 100 and embeddings of 1000: 24% of all 2000 is 4.8 layers -> 5 go
        // (25% of all, 50% of the rest); 24% of the 1000 outside the embeddings is 2.
        for (budget, n, all, rest) in [(BudgetBase::All, 5, 0.25, 0.5), (BudgetBase::ExcludingEmbeddings, 2, 0.1, 0.2)] {
            let mut m = Toy::new(UnitKind::Layer, vec![1; 10], 100);
            let o = StructuredOptions { protect_first: 0, protect_last: 0, budget, ..StructuredOptions::new(UnitKind::Layer, 0.24) };
            let out = run(&mut m, &method, &o).unwrap();
            assert_eq!((out.removed_units().count(), out.budget), (n, budget));
            assert_eq!((out.removed_fraction_including_embeddings(), out.removed_fraction()), (all, rest));
        }
        // Out of reach as a share of all parameters: 60% of 2000 is more than the 1000 outside.
        let mut m = Toy::new(UnitKind::Layer, vec![1; 10], 100);
        let o = StructuredOptions { protect_first: 0, protect_last: 0, budget: BudgetBase::All, ..StructuredOptions::new(UnitKind::Layer, 0.6) };
        let e = run(&mut m, &method, &o).unwrap_err();
        assert!(e.to_string().contains("of all parameters can be removed"), "{e}");
        assert_eq!(m.widths.len(), 10);
    }

    #[test]
    fn width_units_keep_one_per_layer_and_skip_protected_layers() {
        // Four layers of 3 channels; layer 1's channels score lowest, then layer 2's.
        let mut m = Toy::new(UnitKind::Channel, vec![3; 4], 10);
        let method = ByOriginal { schedule: Schedule::Iterative { units_per_iteration: 2 }, score: |l, i| if l == 1 { i as f64 } else { 10.0 * l as f64 + i as f64 } };
        let o = StructuredOptions::new(UnitKind::Channel, 4.0 / 12.0);
        let out = run(&mut m, &method, &o).unwrap();
        let removed: Vec<(usize, usize)> = out.removed_units().map(|r| (r.layer, r.index)).collect();
        // Layer 1 keeps its best channel (2); then layer 2 loses 0 and 1. Layers 0 and 3 are protected.
        assert_eq!(removed, [(1, 0), (1, 1), (2, 0), (2, 1)]);
        assert_eq!(m.widths, [3, 1, 1, 3]);
        assert_eq!(m.ids[1], [(1, 2)]);
        assert_eq!(out.iterations.iter().map(|i| i.removed.len()).collect::<Vec<_>>(), [2, 2]);
    }

    #[test]
    fn original_indices_survive_renumbering() {
        // One layer of 8 channels, unprotected. The score sees current indices and prefers
        // the current first channel, so every iteration removes the first one left: the
        // record must name originals 0, 1, 2, 3, not 0, 0, 0, 0.
        let mut m = Toy::new(UnitKind::Channel, vec![8], 1);
        let method = ByOriginal { schedule: Schedule::Iterative { units_per_iteration: 1 }, score: |_, i| i as f64 };
        let o = StructuredOptions { protect_first: 0, protect_last: 0, ..StructuredOptions::new(UnitKind::Channel, 0.5) };
        let out = run(&mut m, &method, &o).unwrap();
        assert_eq!(out.removed_units().map(|r| r.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(m.ids[0], [(0, 4), (0, 5), (0, 6), (0, 7)]);
    }

    #[test]
    fn bad_targets_and_unreachable_budgets_are_refused_before_anything_changes() {
        let method = ByOriginal { schedule: Schedule::OneShot, score: |l, _| l as f64 };
        for t in [0.0, 1.0, 1.2, -0.1, f64::NAN] {
            let mut m = Toy::new(UnitKind::Layer, vec![1; 4], 10);
            let e = run(&mut m, &method, &StructuredOptions::new(UnitKind::Layer, t)).unwrap_err();
            assert!(matches!(e, Error::BadReduction { .. }), "{e}");
            assert!(e.to_string().contains("outside (0, 1)"), "{e}");
            assert_eq!(m.widths.len(), 4);
        }
        // Two of four layers are protected: 90% is out of reach (60% is within half a layer of 50%).
        let mut m = Toy::new(UnitKind::Layer, vec![1; 4], 10);
        let e = run(&mut m, &method, &StructuredOptions::new(UnitKind::Layer, 0.9)).unwrap_err();
        assert!(matches!(e, Error::Budget { .. }) && e.to_string().contains("at most 0.5000"), "{e}");
        // Less than half a layer: nothing would go.
        let e = run(&mut m, &method, &StructuredOptions::new(UnitKind::Layer, 0.1)).unwrap_err();
        assert!(e.to_string().contains("nothing would be removed"), "{e}");
        // Everything protected.
        let o = StructuredOptions { protect_first: 2, protect_last: 2, ..StructuredOptions::new(UnitKind::Layer, 0.3) };
        let e = run(&mut m, &method, &o).unwrap_err();
        assert!(e.to_string().contains("no layer unit can be removed"), "{e}");
        // A unit kind the model does not have.
        let e = run(&mut m, &method, &StructuredOptions::new(UnitKind::Head, 0.3)).unwrap_err();
        assert!(matches!(e, Error::UnsupportedUnit { .. }), "{e}");
        assert_eq!(m.widths.len(), 4);
        assert!(check(&m, &StructuredOptions::new(UnitKind::Layer, 0.9)).is_err());
        assert!(check(&m, &StructuredOptions::new(UnitKind::Layer, 0.6)).is_ok());
    }

    #[test]
    fn non_finite_scores_and_missing_calibration_are_errors() {
        let mut m = Toy::new(UnitKind::Layer, vec![1; 6], 10);
        let method = ByOriginal { schedule: Schedule::OneShot, score: |l, _| if l == 2 { f64::NAN } else { 1.0 } };
        let e = run(&mut m, &method, &StructuredOptions::new(UnitKind::Layer, 0.2)).unwrap_err();
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains("score of layer 2"), "{e}");
        assert_eq!(m.widths.len(), 6);

        struct NeedsData;
        impl StructuredMethod for NeedsData {
            fn schedule(&self) -> Schedule {
                Schedule::OneShot
            }
            fn needs_calibration(&self) -> bool {
                true
            }
            fn score(&self, input: &ScoreInput<'_>) -> Result<Scored> {
                Ok(Scored { scores: vec![0.0; input.units.len()], notes: Notes::new() })
            }
        }
        let e = prune_structured(&mut m, &Built::unregistered("needs-data", Box::new(NeedsData)), None, &StructuredOptions::new(UnitKind::Layer, 0.2), &mut |_| {}).unwrap_err();
        assert!(matches!(e, Error::NeedsCalibration { .. }), "{e}");
    }



}
