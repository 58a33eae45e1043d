//! The conformance suite every structured plugin runs, on a model the plugin provides (the
//! plugins use a synthetic Llama from prunus-model, which this crate does not link).
//!
//! For each case (a unit kind and a target reduction), with the first and the last layer
//! protected:
//! - the budget: the removed share of the parameters outside the embeddings is within half a
//!   unit of the target;
//! - the accounting: the outcome's counts before and after are the model's, and the removed
//!   units add up to what went;
//! - protection: no removed unit belongs to the first or the last layer;
//! - the order: the first unit removed has the lowest score the method gives the dense model's
//!   candidates;
//! - determinism: a second run, and runs inside rayon pools of 1 and 2 threads, remove the same
//!   units with bit-identical scores and the same notes.
//!
//! And bad input changes nothing: a target outside (0, 1) is [`Error::BadReduction`]; a method
//! that needs calibration refuses to run without it ([`Error::NeedsCalibration`], naming it).

use prunus_core::structured::{Calibration, ScoreInput, StructuredMethod, StructuredModel, StructuredOptions, StructuredOutcome, UnitKind, prune_structured};
use prunus_core::{Built, Error, Notes};

/// What a run removed: per iteration, (original layer, original index, parameters, score
/// bits) of each unit, and the iteration's notes.
type Removal = Vec<(Vec<(usize, usize, usize, u64)>, Notes)>;

fn removal(out: &StructuredOutcome) -> Removal {
    out.iterations
        .iter()
        .map(|it| (it.removed.iter().map(|r| (r.layer, r.index, r.params, r.score.to_bits())).collect(), it.notes.clone()))
        .collect()
}

/// Prunes a copy of `model`.
fn run<M: StructuredModel + Clone>(
    method: &Built<dyn StructuredMethod>,
    model: &M,
    calibration: Option<&Calibration<'_>>,
    options: &StructuredOptions,
) -> prunus_core::Result<(M, StructuredOutcome)> {
    let mut m = model.clone();
    let out = prune_structured(&mut m, method, calibration, options, &mut |_| {})?;
    Ok((m, out))
}

/// Runs the suite for every `(unit, target)` of `cases`; panics (a test failure) with a
/// message naming the method, the case and the check.
pub fn check<M: StructuredModel + Clone + Send + Sync>(
    method: &Built<dyn StructuredMethod>,
    model: &M,
    calibration: Option<&Calibration<'_>>,
    cases: &[(UnitKind, f64)],
) {
    let name = method.name;
    assert!(!cases.is_empty(), "{name}: no cases");
    for &(unit, target) in cases {
        let tag = format!("{name} {unit} {target}");
        let options = StructuredOptions::new(unit, target);
        let units = model.units(unit).unwrap_or_else(|e| panic!("{tag}: the model has no {unit} units: {e}"));
        let (pruned, out) = run(method, model, calibration, &options).unwrap_or_else(|e| panic!("{tag}: pruning failed: {e}"));

        // The budget and the accounting.
        let before = model.param_count();
        assert_eq!(out.before, before, "{tag}: counts before");
        assert_eq!(out.after, pruned.param_count(), "{tag}: counts after");
        let removed = (before.excluding_embeddings - out.after.excluding_embeddings) as f64;
        let largest = units.iter().map(|u| u.params).max().unwrap_or(0) as f64;
        let goal = target * before.excluding_embeddings as f64;
        assert!((removed - goal).abs() <= largest / 2.0, "{tag}: removed {removed} parameters, target {goal} (a unit is {largest})");
        assert_eq!(out.removed_units().map(|r| r.params as f64).sum::<f64>(), removed, "{tag}: removed units do not add up");

        // Protection.
        let last = model.n_layers() - 1;
        assert!(out.removed_units().all(|r| r.layer != 0 && r.layer != last), "{tag}: a protected layer lost a unit");

        // The order: the first unit removed is the lowest-scored candidate of the dense model.
        let candidates: Vec<_> = units.iter().filter(|u| u.layer != 0 && u.layer != last).cloned().collect();
        let scored = method
            .score(&ScoreInput { model, units: &candidates, calibration, iteration: 0 })
            .unwrap_or_else(|e| panic!("{tag}: scoring the dense model failed: {e}"));
        let lowest = scored.scores.iter().copied().fold(f64::INFINITY, f64::min);
        let first = out.iterations.first().and_then(|i| i.removed.first()).unwrap_or_else(|| panic!("{tag}: nothing removed"));
        assert_eq!(first.score, lowest, "{tag}: the first unit removed is not the lowest-scored candidate");

        // Determinism, in this thread and in pools of 1 and 2 threads.
        let again = run(method, model, calibration, &options).unwrap_or_else(|e| panic!("{tag}: second run failed: {e}")).1;
        assert_eq!(removal(&out), removal(&again), "{tag}: two runs differ");
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
            let o = pool.install(|| run(method, model, calibration, &options)).unwrap_or_else(|e| panic!("{tag}: run in {threads} threads failed: {e}")).1;
            assert_eq!(removal(&out), removal(&o), "{tag}: a run in a pool of {threads} threads differs");
        }
    }
    check_bad_input(method, model, calibration, cases[0].0);
}

/// Bad input changes nothing: targets outside (0, 1), and no calibration for a method that
/// needs it.
fn check_bad_input<M: StructuredModel + Clone>(
    method: &Built<dyn StructuredMethod>,
    model: &M,
    calibration: Option<&Calibration<'_>>,
    unit: UnitKind,
) {
    let name = method.name;
    let untouched = |m: &M| m.param_count() == model.param_count() && m.units(unit).ok() == model.units(unit).ok();
    for target in [0.0, 1.0, 1.2, -0.1, f64::NAN] {
        let mut m = model.clone();
        let e = prune_structured(&mut m, method, calibration, &StructuredOptions::new(unit, target), &mut |_| {})
            .expect_err("a target outside (0, 1) must be refused");
        assert!(matches!(e, Error::BadReduction { .. }), "{name}: target {target}: {e}");
        assert!(untouched(&m), "{name}: target {target} was refused but units went");
    }
    if method.needs_calibration() {
        let mut m = model.clone();
        let e = prune_structured(&mut m, method, None, &StructuredOptions::new(unit, 0.2), &mut |_| {})
            .expect_err("a method that needs calibration must refuse to run without it");
        assert!(matches!(e, Error::NeedsCalibration { method: ref n, .. } if n == name), "{name}: {e}");
        assert!(untouched(&m), "{name}: refused for lack of calibration but units went");
    }
}
