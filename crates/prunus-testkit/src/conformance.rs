//! The conformance suite every layer-wise plugin runs on [`ToyModel`].
//!
//! Checks: each supported pattern realises exactly the requested sparsity per comparison
//! group (per row and N:M exactly; per matrix within one weight of floor(numel * s)); N:M
//! masks are valid in every group; two runs with the same inputs are bit-identical;
//! unsupported patterns give [`Error::Unsupported`]; a non-finite weight is an error naming
//! the tensor; a method that needs statistics refuses to run without calibration data.

use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::{Error, Group, LayerwiseMethod, Pattern, PrunableModel, StatKind};

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
pub fn check(method: &dyn LayerwiseMethod) {
    let name = method.name().to_string();
    let mut supported = 0;
    for pattern in patterns() {
        let group = match method.group(&pattern) {
            Ok(g) => g,
            Err(Error::Unsupported { method: m, .. }) => {
                assert_eq!(m, name, "unsupported error must name the method");
                continue;
            }
            Err(e) => panic!("{name}: group({pattern}) gave {e}, expected a group or Unsupported"),
        };
        supported += 1;
        let (model, _) = run(method, &pattern);
        check_sparsity(&name, &model, &pattern, group);
        let (again, _) = run(method, &pattern);
        assert_eq!(model.all_weights(), again.all_weights(), "{name} {pattern}: two runs differ");
    }
    assert!(supported > 0, "{name} supports none of the suite's patterns");
    check_bad_input(method);
}

/// Prunes a fresh toy model (seed 7) with calibration (seed 11, 4 x 8 tokens).
pub fn run(method: &dyn LayerwiseMethod, pattern: &Pattern) -> (ToyModel, prunus_core::pipeline::PruneOutcome) {
    let mut model = ToyModel::new(7);
    let tokens = model.tokens(11, 4, 8);
    let opts = PipelineOptions { batch_size: 3 };
    let outcome = prune_layerwise(&mut model, method, pattern, Some(&tokens), &opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: pruning at {pattern} failed: {e}", method.name()));
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

fn check_bad_input(method: &dyn LayerwiseMethod) {
    let name = method.name();
    let pattern = patterns().into_iter().find(|p| method.group(p).is_ok()).expect("a supported pattern");
    // A non-finite weight is named.
    let mut model = ToyModel::new(7);
    let mut w = model.weight(1, "down").unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    w[3] = f32::INFINITY;
    let dims = (model.d_model, model.d_hidden);
    model.set_weight(1, "down", candle_core::Tensor::from_vec(w, dims, &candle_core::Device::Cpu).unwrap()).unwrap();
    let tokens = model.tokens(11, 4, 8);
    let e = prune_layerwise(&mut model, method, &pattern, Some(&tokens), &PipelineOptions::default(), &mut |_| {})
        .expect_err("an infinite weight must be an error");
    assert!(e.to_string().contains("blk.1.down"), "{name}: error does not name the tensor: {e}");
    // Statistics without calibration data.
    if method.stats() > StatKind::None {
        let mut model = ToyModel::new(7);
        let before = model.all_weights();
        let e = prune_layerwise(&mut model, method, &pattern, None, &PipelineOptions::default(), &mut |_| {})
            .expect_err("a method needing statistics must refuse to run without calibration data");
        assert!(matches!(e, Error::NeedsCalibration { .. }), "{name}: {e}");
        assert_eq!(before, model.all_weights(), "{name}: weights changed on error");
    }
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
pub fn mask_snapshot(method: &dyn LayerwiseMethod) -> String {
    let mut out = String::new();
    for pattern in [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }] {
        let (model, outcome) = run(method, &pattern);
        let group = method.group(&pattern).expect("a supported pattern");
        out += &format!("{pattern} group={group} sparsity={:.4}\n", outcome.sparsity());
        out += &crate::render_mask(&model, 0, "up", 8);
    }
    out
}
