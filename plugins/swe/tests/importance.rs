//! Systematic Weight Evaluation against hand computations: the importance under both
//! weightings and both comparisons, the ring, the per-tensor threshold rule, the state, and
//! the one-line refusals.

use prunus_core::Method;
use prunus_core::training::{MethodState, ParamInfo, RunInfo, StepInfo, TrainingMethod, global_mask};
use prunus_swe::{Compare, Config, Swe, Weighting, std};

const W1: [f32; 3] = [1.0, -2.0, 0.5];
const W2: [f32; 3] = [2.0, -1.0, 0.5];
const W3: [f32; 3] = [3.0, 0.0, -0.5];
const STEP: StepInfo = StepInfo { step: 0, lr: 0.0 };

fn params() -> Vec<ParamInfo> {
    vec![
        ParamInfo { name: "norm".into(), shape: vec![2], prunable: false },
        ParamInfo { name: "w".into(), shape: vec![3], prunable: true },
    ]
}

/// A method that recorded `history` (the candidate's weights at each checkpoint).
fn recorded(config: Config, history: &[[f32; 3]]) -> Swe {
    let mut m = Swe::new(config).unwrap();
    let p = params();
    m.begin(&RunInfo { params: &p, candidates: &[1], total_steps: 10, n_examples: 1, schedule: None }).unwrap();
    for w in history {
        m.at_checkpoint(&STEP, &[vec![1.0, 1.0], w.to_vec()]).unwrap();
    }
    m
}

fn scores(m: &Swe, current: [f32; 3]) -> Vec<f32> {
    m.scores(&STEP, &[vec![1.0, 1.0], current.to_vec()], 1).unwrap()
}

fn pop_std(v: &[f64]) -> f64 {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt()
}

fn assert_close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!(((*g as f64) - w).abs() <= 1e-6 * w.abs().max(1.0), "got {got:?}, want {want:?}");
    }
}

#[test]
fn linear_weighting_is_the_checkpoint_number() {
    let m = recorded(Config { keep: 3, ..Config::default() }, &[W1, W2, W3]);
    // (1 |W1| + 2 |W2| + 3 |W3|) / 6, over std(|W3|) (population).
    let imp = [(1.0 + 4.0 + 9.0) / 6.0, (2.0 + 2.0 + 0.0) / 6.0, (0.5 + 1.0 + 1.5) / 6.0];
    let sd = pop_std(&[3.0, 0.0, 0.5]);
    assert_close(&scores(&m, W3), &imp.map(|v| v / sd));
}

#[test]
fn sqrt_weighting_is_the_position_in_the_window() {
    // Four checkpoints, keep 3, k 2: the window is checkpoints 3 and 4, weighted sqrt(1), sqrt(2).
    let m = recorded(Config { keep: 3, k: Some(2), weighting: Weighting::Sqrt, ..Config::default() }, &[W3, W1, W2, W3]);
    let r2 = 2f64.sqrt();
    let imp: Vec<f64> = (0..3).map(|i| (W2[i].abs() as f64 + r2 * W3[i].abs() as f64) / (1.0 + r2)).collect();
    let sd = pop_std(&[3.0, 0.0, 0.5]);
    assert_close(&scores(&m, W3), &imp.iter().map(|v| v / sd).collect::<Vec<_>>());
    // Linear over the same window: checkpoints 3 and 4 weigh 3 and 4.
    let m = recorded(Config { keep: 3, k: Some(2), ..Config::default() }, &[W3, W1, W2, W3]);
    let imp: Vec<f64> = (0..3).map(|i| (3.0 * W2[i].abs() as f64 + 4.0 * W3[i].abs() as f64) / 7.0).collect();
    assert_close(&scores(&m, W3), &imp.iter().map(|v| v / sd).collect::<Vec<_>>());
}

#[test]
fn compare_current_uses_the_spread_of_the_averaged_signed_weights() {
    let m = recorded(Config { keep: 2, compare: Compare::Current, ..Config::default() }, &[W1, W2, W3]);
    // Checkpoints 2 and 3 (the ring keeps 2): avg = (2 W2 + 3 W3) / 5, signed.
    let avg = [(4.0 + 9.0) / 5.0, (-2.0 + 0.0) / 5.0, (1.0 - 1.5) / 5.0];
    let sd = pop_std(&avg);
    assert_close(&scores(&m, W3), &[3.0 / sd, 0.0, 0.5 / sd]);
}

#[test]
fn std_is_the_population_standard_deviation() {
    assert!((std([1.0, 2.0, 3.0, 4.0].into_iter()) - 1.25f64.sqrt()).abs() < 1e-15);
    assert_eq!(std(std::iter::empty()), 0.0);
}

#[test]
fn the_global_mask_on_scores_is_the_per_tensor_rule_with_one_rate() {
    // Two tensors of very different scales: a per-tensor std(|W|) x rate threshold prunes a
    // similar share of each; the core's global mask over importance / std gives the same mask
    // as bisecting the rate until the target count is reached.
    let a: Vec<f32> = (0..200).map(|i| ((i * 37 % 200) as f32 - 100.0) * 0.01).collect();
    let b: Vec<f32> = (0..300).map(|i| ((i * 53 % 300) as f32 - 150.0) * 3.0).collect();
    let p = vec![ParamInfo { name: "a".into(), shape: vec![200], prunable: true }, ParamInfo { name: "b".into(), shape: vec![300], prunable: true }];
    let mut m = Swe::new(Config { keep: 1, ..Config::default() }).unwrap();
    m.begin(&RunInfo { params: &p, candidates: &[0, 1], total_steps: 1, n_examples: 1, schedule: None }).unwrap();
    let w = vec![a.clone(), b.clone()];
    m.at_checkpoint(&STEP, &w).unwrap();
    let sc = vec![m.scores(&STEP, &w, 0).unwrap(), m.scores(&STEP, &w, 1).unwrap()];
    let (masks, stats) = global_mask(&["a", "b"], &sc, 0.4).unwrap();
    let rate = stats.threshold.unwrap() as f64;
    // The rule written out: prune |w| < std(|W|) x rate per tensor.
    for (t, keep) in [&a, &b].iter().zip(&masks) {
        let sd = std(t.iter().map(|v| v.abs() as f64));
        for (v, k) in t.iter().zip(keep) {
            assert_eq!(*k, ((v.abs() as f64 / sd) as f32) >= rate as f32, "{v}");
        }
    }
    // Bisection on the rate reaches the same count.
    let count = |r: f64| sc.iter().flatten().filter(|s| (**s as f64) < r).count() as u64;
    let (mut lo, mut hi) = (0.0f64, 100.0f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if count(mid) <= stats.pruned { lo = mid } else { hi = mid }
    }
    assert_eq!(count(lo), stats.pruned);
    let share = |keep: &Vec<bool>| keep.iter().filter(|k| !**k).count() as f64 / keep.len() as f64;
    assert!((share(&masks[0]) - share(&masks[1])).abs() < 0.15, "{} vs {}", share(&masks[0]), share(&masks[1]));
}

#[test]
fn the_state_round_trips_and_a_smaller_ring_keeps_the_newest() {
    let m = recorded(Config { keep: 3, ..Config::default() }, &[W1, W2, W3]);
    let state = m.state();
    let mut back = recorded(Config { keep: 3, ..Config::default() }, &[]);
    back.restore(state.clone()).unwrap();
    assert_eq!(scores(&back, W3), scores(&m, W3));
    let mut small = recorded(Config { keep: 2, ..Config::default() }, &[]);
    small.restore(state).unwrap();
    let direct = recorded(Config { keep: 2, ..Config::default() }, &[W1, W2, W3]);
    assert_eq!(scores(&small, W3), scores(&direct, W3));
}

#[test]
fn bad_input_is_one_line() {
    let e = Swe::new(Config { keep: 3, k: Some(4), ..Config::default() }).unwrap_err().to_string();
    assert!(e.contains("k = 4 must be between 1 and keep = 3"), "{e}");
    let e = Swe::new(Config { keep: 0, ..Config::default() }).unwrap_err().to_string();
    assert!(e.contains("keep must be at least 1"), "{e}");
    let none = recorded(Config::default(), &[]);
    let e = none.scores(&STEP, &[vec![1.0, 1.0], W3.to_vec()], 1).unwrap_err().to_string();
    assert!(e.contains("no weight history"), "{e}");
    let two = recorded(Config { keep: 3, k: Some(3), ..Config::default() }, &[W1, W2]);
    // Without k, the average takes every checkpoint there is.
    let all = recorded(Config { keep: 3, ..Config::default() }, &[W1, W2]);
    assert!(all.scores(&STEP, &[vec![1.0, 1.0], W3.to_vec()], 1).is_ok());
    let e = two.scores(&STEP, &[vec![1.0, 1.0], W3.to_vec()], 1).unwrap_err().to_string();
    assert!(e.contains("k = 3 is larger than the 2 checkpoints kept"), "{e}");
    let mut other = Swe::new(Config::default()).unwrap();
    let p = vec![ParamInfo { name: "x".into(), shape: vec![1], prunable: true }; 2];
    other.begin(&RunInfo { params: &p, candidates: &[0, 1], total_steps: 1, n_examples: 1, schedule: None }).unwrap();
    let e = other.restore(two.state()).unwrap_err().to_string();
    assert!(e.contains("1 candidate tensors saved, 2 in the model"), "{e}");
    let e = other.restore(MethodState::default()).unwrap_err().to_string();
    assert!(e.contains("does not fit"), "{e}");
}
