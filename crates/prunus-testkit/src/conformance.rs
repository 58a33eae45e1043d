//! The conformance suite every layer-wise plugin runs on [`ToyModel`].
//!
//! Checks: each supported pattern realises exactly the requested sparsity per comparison
//! group (per row and N:M exactly; per matrix within one weight of floor(numel * s)); N:M
//! masks are valid in every group; two runs with the same inputs are bit-identical, and so
//! are runs inside rayon pools of 1 and 2 threads ([`check_threads`]); unsupported patterns
//! give [`Error::Unsupported`] naming the method; a non-finite weight is an error naming the
//! tensor, with the model untouched; a method that needs statistics refuses, naming itself, to
//! run without calibration data.
//!
//! What the thread check covers: any rayon use inside a method or the core (the pool is the
//! caller's). It does not vary candle's own matmul split: candle sizes it from
//! `RAYON_NUM_THREADS` (else the physical cores), read per call from the environment, not from
//! the current pool, and the toy model's products are below gemm's threading threshold anyway.
//! `tests/suite/threads_env.rs` covers that part with child processes.

use prunus_core::pipeline::{LayerRecord, PipelineOptions, PruneOutcome, prune_layerwise};
use prunus_core::{Built, Error, Group, LayerwiseMethod, Pattern, PrunableModel, StatKind};

use crate::ToyModel;

/// The patterns the suite tries.
pub fn patterns() -> Vec<Pattern> {
    vec![
        Pattern::Unstructured { sparsity: 0.5 },
        Pattern::Unstructured { sparsity: 0.3 },
        Pattern::Unstructured { sparsity: 0.0 },
        Pattern::NM { n: 2, m: 4 },
        Pattern::NM { n: 4, m: 8 },
        Pattern::NM { n: 1, m: 4 },
    ]
}

/// Runs the whole suite; panics (test failure) with a message naming the method and check.
pub fn check(method: &Built<dyn LayerwiseMethod>) {
    let name = method.name.to_string();
    let mut supported = 0;
    for pattern in patterns() {
        let group = match method.group(&pattern) {
            Ok(g) => g,
            Err(Error::Unsupported { method: m, what }) => {
                assert_eq!(m, name, "unsupported error must name the method");
                assert!(what.contains(&pattern.to_string()), "{name}: unsupported error must name {pattern}: {what}");
                check_refused(method, &pattern);
                continue;
            }
            Err(e) => panic!("{name}: group({pattern}) gave {e}, expected a group or Unsupported"),
        };
        supported += 1;
        let (model, _) = run(method, &pattern);
        check_sparsity(&name, &model, &pattern, group);
        let (again, _) = run(method, &pattern);
        assert_eq!(bits(&model), bits(&again), "{name} {pattern}: two runs differ");
        check_threads(method, &pattern);
    }
    assert!(supported > 0, "{name} supports none of the suite's patterns");
    check_bad_input(method);
}

/// Asserts that the pipeline refuses `pattern` with [`Error::Unsupported`] naming the method
/// and the pattern, before any weight changes.
pub fn check_refused(method: &Built<dyn LayerwiseMethod>, pattern: &Pattern) {
    let name = method.name;
    let mut model = ToyModel::new(7);
    let before = bits(&model);
    let tokens = model.tokens(11, 4, 8);
    let e = prune_layerwise(&mut model, method, pattern, Some(&tokens), &PipelineOptions::default(), &mut |_| {})
        .expect_err("an unsupported pattern must be refused");
    assert!(matches!(e, Error::Unsupported { method: ref m, .. } if m == name), "{name} {pattern}: {e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("`{name}`")) && msg.contains(&pattern.to_string()), "{name}: {msg}");
    assert_eq!(before, bits(&model), "{name}: weights changed although {pattern} was refused");
}

/// Asserts that pruning inside a rayon pool of 1 thread and of 2 threads gives bit-identical
/// weights, the same masks (zero patterns) and the same per-layer counts and notes.
pub fn check_threads(method: &Built<dyn LayerwiseMethod>, pattern: &Pattern) {
    let name = method.name;
    let in_pool = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a rayon pool");
        pool.install(|| run(method, pattern))
    };
    let (one, one_outcome) = in_pool(1);
    let (two, two_outcome) = in_pool(2);
    let zeros = |m: &ToyModel| m.all_weights().iter().map(|w| *w == 0.0).collect::<Vec<_>>();
    assert_eq!(zeros(&one), zeros(&two), "{name} {pattern}: masks differ between 1 and 2 threads");
    assert_eq!(bits(&one), bits(&two), "{name} {pattern}: weights differ between 1 and 2 threads");
    let summary = |o: &PruneOutcome| o.layers.iter().map(|l: &LayerRecord| (l.block, l.name.clone(), l.pruned, l.notes.clone())).collect::<Vec<_>>();
    assert_eq!(summary(&one_outcome), summary(&two_outcome), "{name} {pattern}: records differ between 1 and 2 threads");
}

/// Every weight's bit pattern (so -0.0 and 0.0, or two NaNs, are told apart).
fn bits(model: &ToyModel) -> Vec<u32> {
    model.all_weights().iter().map(|w| w.to_bits()).collect()
}

/// Prunes a fresh toy model (seed 7) with calibration (seed 11, 4 x 8 tokens).
pub fn run(method: &Built<dyn LayerwiseMethod>, pattern: &Pattern) -> (ToyModel, PruneOutcome) {
    let mut model = ToyModel::new(7);
    let tokens = model.tokens(11, 4, 8);
    let opts = PipelineOptions { batch_size: 3 };
    let outcome = prune_layerwise(&mut model, method, pattern, Some(&tokens), &opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: pruning at {pattern} failed: {e}", method.name));
    (model, outcome)
}

fn check_sparsity(name: &str, model: &ToyModel, pattern: &Pattern, group: Group) {
    for block in 0..model.n_blocks() {
        for lin in model.linears(block) {
            let w = model.weight(block, &lin.name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let zeros = |s: &[f32]| s.iter().filter(|v| **v == 0.0).count();
            let s = pattern.sparsity();
            let tag = format!("{name} {pattern} blk.{block}.{}", lin.name);
            match group {
                Group::PerRow => {
                    let k = (lin.d_in as f64 * s).floor() as usize;
                    for row in w.chunks(lin.d_in) {
                        assert_eq!(zeros(row), k, "{tag}: a row has the wrong number of zeros");
                    }
                }
                Group::NM { n, m } => {
                    for g in w.chunks(m) {
                        assert_eq!(zeros(g), n, "{tag}: an N:M group is invalid");
                    }
                }
                Group::PerMatrix => {
                    let k = (w.len() as f64 * s).floor() as usize;
                    let z = zeros(&w);
                    assert!(z == k || z == k + 1, "{tag}: {z} zeros, expected {k}");
                }
            }
        }
    }
}

fn check_bad_input(method: &Built<dyn LayerwiseMethod>) {
    let name = method.name;
    let pattern = patterns().into_iter().find(|p| method.group(p).is_ok()).expect("a supported pattern");
    // A non-finite weight is named, in the last linear (seen last) and in the first (whose
    // output feeds the statistics of the next site), and nothing is pruned.
    for (block, linear, bad) in [(1, "down", f32::INFINITY), (0, "up", f32::NAN)] {
        let mut model = ToyModel::new(7);
        let mut w = model.weight(block, linear).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        w[3] = bad;
        let dims = model.weight(block, linear).unwrap().dims2().unwrap();
        model.set_weight(block, linear, candle_core::Tensor::from_vec(w, dims, &candle_core::Device::Cpu).unwrap()).unwrap();
        let before = bits(&model);
        let tokens = model.tokens(11, 4, 8);
        let e = prune_layerwise(&mut model, method, &pattern, Some(&tokens), &PipelineOptions::default(), &mut |_| {})
            .expect_err("a non-finite weight must be an error");
        let tensor = format!("blk.{block}.{linear}");
        assert!(matches!(e, Error::NonFinite { .. }) && e.to_string().contains(&tensor), "{name}: error does not name {tensor}: {e}");
        assert_eq!(before, bits(&model), "{name}: weights changed although {tensor} is not finite");
    }
    // Statistics without calibration data.
    if method.stats() > StatKind::None {
        let mut model = ToyModel::new(7);
        let before = model.all_weights();
        let e = prune_layerwise(&mut model, method, &pattern, None, &PipelineOptions::default(), &mut |_| {})
            .expect_err("a method needing statistics must refuse to run without calibration data");
        assert!(matches!(e, Error::NeedsCalibration { method: ref m, .. } if m == name), "{name}: {e}");
        assert!(e.to_string().contains(&format!("`{name}`")), "{name}: the message must name the method: {e}");
        assert_eq!(before, model.all_weights(), "{name}: weights changed on error");
    }
    let tokens = ToyModel::new(7).tokens(11, 4, 8);
    // An N:M pattern that does not divide the width fails before any weight changes.
    let mut model = ToyModel::new(7);
    let before = model.all_weights();
    let odd = Pattern::NM { n: 2, m: 5 };
    if method.group(&odd).is_ok() {
        let e = prune_layerwise(&mut model, method, &odd, Some(&tokens), &PipelineOptions::default(), &mut |_| {})
            .expect_err("2:5 does not divide 16");
        assert!(matches!(e, Error::PatternMismatch { .. }), "{name}: {e}");
        assert_eq!(before, model.all_weights(), "{name}: weights changed on error");
    }
}

/// The text every plugin snapshots with insta: for 50% unstructured and 2:4, the comparison
/// group, the realised sparsity and the first 8 rows of block 0's `up` mask on the toy model.
pub fn mask_snapshot(method: &Built<dyn LayerwiseMethod>) -> String {
    let mut out = String::new();
    for pattern in [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }] {
        let (model, outcome) = run(method, &pattern);
        let group = method.group(&pattern).expect("a supported pattern");
        out += &format!("{pattern} group={group} sparsity={:.4}\n", outcome.sparsity());
        out += &crate::render_mask(&model, 0, "up", 8);
    }
    out
}
