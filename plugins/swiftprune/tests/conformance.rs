//! SwiftPrune against the layer-wise conformance suite, plus its threshold rules, config checks and errors.

use prunus_core::{Pattern, registry};
use prunus_swiftprune as _;
use serde_json::json;

fn build(config: serde_json::Value) -> prunus_core::Built<dyn prunus_core::LayerwiseMethod> {
    registry::find("swiftprune").unwrap().build_layerwise(&config).unwrap()
}

#[test]
fn exact_count_variants_pass_the_conformance_suite() {
    for config in [
        json!({"exact_count": true}),
        json!({"exact_count": true, "selection": "quantile"}),
        json!({"exact_count": true, "x_source": "weight_row"}),
        json!({"selection": "sort", "form": "half_product"}),
        json!({"exact_count": true, "selection": "single_pass"}),
    ] {
        prunus_testkit::conformance::check(&build(config));
    }
}

/// Without the fix-up the EWMA threshold is approximate: on the toy model's short rows (16 and
/// 32 inputs) the realised sparsity of each linear must still be near the target, and N:M exact.
#[test]
fn ewma_selection_lands_near_the_target() {
    for (config, tol) in [(json!(null), 0.05)] {
        let method = build(config.clone());
        for s in [0.3, 0.5, 0.7] {
            let (_, outcome) = prunus_testkit::conformance::run(&method, &Pattern::Unstructured { sparsity: s });
            for l in &outcome.layers {
                assert!((l.sparsity - s).abs() <= tol, "{config} s={s} {}: {}", l.name, l.sparsity);
            }
        }
        let (_, outcome) = prunus_testkit::conformance::run(&method, &Pattern::NM { n: 2, m: 4 });
        assert_eq!(outcome.sparsity(), 0.5);
    }
}

#[test]
fn bad_configs_are_errors() {
    for (config, needle) in [
        (json!({"alpha": 0.0}), "alpha"),
        (json!({"ridge": -1.0}), "ridge"),
        (json!({"selection": "argsort"}), "unknown variant `argsort`"),
        (json!({"threshold": 1}), "unknown field `threshold`"),
        (json!({"form": "square"}), "unknown variant `square`"),
        (json!({"pass_model": "gamma"}), "unknown variant `gamma`"),
    ] {
        let e = registry::find("swiftprune").unwrap().build_layerwise(&config).err().expect("an error");
        assert!(e.to_string().contains(needle), "{config}: {e}");
    }
}

#[test]
fn small_masks_snapshot() {
    insta::assert_snapshot!(prunus_testkit::conformance::mask_snapshot(&build(json!(null))));
}

/// Both threshold rules on rows of realistic width (576 and 1536 inputs, log-normal scores):
/// the default (EWMA) within 0.5 percentage points of the target; the quantile tracker is
/// cruder (about 3 points off at 70% on these heavy-tailed rows), bounded at 5.
#[test]
fn threshold_rules_on_wide_rows() {
    let mut rng = prunus_testkit::SplitMix64::new(9);
    for d_in in [576usize, 1536] {
        let d_out = 64;
        let weight: Vec<f32> = (0..d_out * d_in).map(|_| rng.uniform(1.0) * (2.0 * rng.uniform(1.0)).exp()).collect();
        let stats = prunus_core::Stats::new(prunus_core::StatKind::None, d_in);
        let view = prunus_core::LayerView { block: 0, name: "wide", d_out, d_in, weight: &weight, stats: &stats };
        for (config, tol) in [(json!({"x_source": "weight_row"}), 0.005), (json!({"x_source": "weight_row", "selection": "quantile"}), 0.05)] {
            let method = build(config.clone());
            for s in [0.3, 0.5, 0.7] {
                let pattern = Pattern::Unstructured { sparsity: s };
                
                let prunus_core::Decision::Mask(mask) = prunus_testkit::decide(&method, &view, &pattern).map(|d| d.0).unwrap() else { panic!("a mask") };
                assert!((mask.sparsity() - s).abs() <= tol, "{config} d_in={d_in} s={s}: {}", mask.sparsity());
            }
        }
    }
}

/// Heavy-tailed synthetic layer: log-normal weight magnitudes with random signs, and
/// log-normal per-feature activation energies (a few outlier features, as in LLMs).
fn heavy_tailed_layer(seed: u64, d_out: usize, d_in: usize) -> (Vec<f32>, prunus_core::Stats) {
    let mut rng = prunus_testkit::SplitMix64::new(seed);
    let weight: Vec<f32> = (0..d_out * d_in).map(|_| rng.uniform(1.0).signum() * (1.5 * rng.uniform(1.0)).exp() * 0.02).collect();
    let mut stats = prunus_core::Stats::new(prunus_core::StatKind::SqNorm, d_in);
    stats.n_samples = 32;
    stats.n_tokens = 32 * 512;
    stats.sq_sum = Some((0..d_in).map(|_| 32.0 * f64::from((4.0 * rng.uniform(1.0)).exp())).collect());
    (weight, stats)
}

/// The default config (activation_norm, EWMA, no fix-up) lands within 0.5 percentage points
/// of the target on rows of SmolLM2's widths (576 and 1536 inputs) with heavy-tailed weights
/// and activations (observed: at most 0.14 points off). The quantile variant's defaults do not:
/// up to 2.7 points over at 70% (observed), bounded here at 5 as in the README.
#[test]
fn default_configs_on_wide_rows_with_activation_norms() {
    for d_in in [576usize, 1536] {
        let (weight, stats) = heavy_tailed_layer(d_in as u64, 64, d_in);
        let view = prunus_core::LayerView { block: 0, name: "wide", d_out: 64, d_in, weight: &weight, stats: &stats };
        for (config, tol) in [(json!(null), 0.005), (json!({"selection": "quantile"}), 0.05)] {
            let method = build(config.clone());
            for s in [0.3, 0.5, 0.7] {
                let pattern = Pattern::Unstructured { sparsity: s };
                
                let prunus_core::Decision::Mask(mask) = prunus_testkit::decide(&method, &view, &pattern).map(|d| d.0).unwrap() else { panic!("a mask") };
                assert!((mask.sparsity() - s).abs() <= tol, "{config} d_in={d_in} s={s}: {}", mask.sparsity());
            }
        }
    }
}

/// Non-finite weights or activation statistics are errors naming the layer (never a mask), for
/// both score sources; statistics of the wrong width are a shape error.
#[test]
fn non_finite_weights_and_statistics_are_named_errors() {
    use prunus_core::{Decision, Error, LayerView};
    let (d_out, d_in) = (4, 16);
    let (weight, stats) = heavy_tailed_layer(3, d_out, d_in);
    let pattern = Pattern::Unstructured { sparsity: 0.5 };
    let decide = |method: &prunus_core::Built<dyn prunus_core::LayerwiseMethod>, view: &LayerView<'_>| -> prunus_core::Result<Decision> {
        prunus_testkit::decide(method, view, &pattern).map(|d| d.0)
    };
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut w = weight.clone();
        w[7] = bad;
        for config in [json!(null), json!({"x_source": "weight_row"}), json!({"selection": "quantile"})] {
            let method = build(config.clone());
            let view = LayerView { block: 2, name: "blk.2.gate_proj", d_out, d_in, weight: &w, stats: &stats };
            let e = decide(&method, &view).map(|_| ()).unwrap_err();
            assert!(matches!(e, Error::NonFinite { index: 7, .. }) && e.to_string().contains("blk.2.gate_proj"), "{config} {bad}: {e}");
        }
        let mut bad_stats = stats.clone();
        bad_stats.sq_sum.as_mut().unwrap()[9] = f64::from(bad);
        let view = LayerView { block: 2, name: "blk.2.up_proj", d_out, d_in, weight: &weight, stats: &bad_stats };
        let e = decide(&build(json!(null)), &view).map(|_| ()).unwrap_err();
        assert!(matches!(e, Error::NonFinite { index: 9, .. }) && e.to_string().contains("blk.2.up_proj input statistics"), "{bad}: {e}");
    }
    let mut short = stats.clone();
    short.sq_sum.as_mut().unwrap().pop();
    let view = LayerView { block: 2, name: "blk.2.down_proj", d_out, d_in, weight: &weight, stats: &short };
    let e = decide(&build(json!(null)), &view).map(|_| ()).unwrap_err();
    assert!(matches!(e, Error::Shape { .. }) && e.to_string().contains("blk.2.down_proj"), "{e}");
}

/// Called directly (not through the pipeline, which checks first), an N:M pattern whose M does
/// not divide the row is refused instead of letting groups straddle rows.
#[test]
fn n_m_that_does_not_divide_the_row_is_refused() {
    let (weight, stats) = heavy_tailed_layer(4, 2, 10);
    let view = prunus_core::LayerView { block: 0, name: "blk.0.o_proj", d_out: 2, d_in: 10, weight: &weight, stats: &stats };
    let method = build(json!(null));
    let pattern = Pattern::NM { n: 2, m: 4 };
    let e = prunus_testkit::decide(&method, &view, &pattern).map(|d| d.0).map(|_| ()).unwrap_err();
    assert!(matches!(e, prunus_core::Error::PatternMismatch { .. }) && e.to_string().contains("blk.0.o_proj"), "{e}");
}

/// The default config (not exact-count, so not run through `check`) is also bit-identical in
/// rayon pools of 1 and 2 threads.
#[test]
fn default_config_is_deterministic_across_thread_counts() {
    for config in [json!(null), json!({"selection": "quantile"})] {
        let method = build(config);
        for pattern in [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }] {
            prunus_testkit::conformance::check_threads(&method, &pattern);
        }
    }
}

/// The single-pass rule is deterministic across thread counts and exact for N:M (where it is
/// not used); its unstructured count is whatever the rule gives, so only determinism is checked
/// through the suite here.
#[test]
fn single_pass_is_deterministic_and_leaves_n_m_exact() {
    for config in [json!({"selection": "single_pass"}), json!({"selection": "single_pass", "beta": 0.25, "pass_model": "normal"})] {
        let method = build(config.clone());
        for pattern in [Pattern::Unstructured { sparsity: 0.5 }, Pattern::NM { n: 2, m: 4 }] {
            prunus_testkit::conformance::check_threads(&method, &pattern);
        }
        let (_, outcome) = prunus_testkit::conformance::run(&method, &Pattern::NM { n: 2, m: 4 });
        assert_eq!(outcome.sparsity(), 0.5, "{config}");
    }
}

fn mask_of(method: &prunus_core::Built<dyn prunus_core::LayerwiseMethod>, view: &prunus_core::LayerView<'_>, s: f64) -> prunus_core::Mask {
    let prunus_core::Decision::Mask(mask) = prunus_testkit::decide(method, view, &Pattern::Unstructured { sparsity: s }).map(|d| d.0).unwrap() else {
        panic!("a mask")
    };
    mask
}

/// A streaming decision: the fate of weight j depends on the weights before it and itself only,
/// so changing the last weights of a row leaves every earlier decision as it was. The bisected
/// EWMA rule looks at the whole row to place its multiplier and does not have this property.
#[test]
fn single_pass_decides_each_weight_from_what_came_before() {
    let (d_out, d_in) = (8, 576);
    let (weight, stats) = heavy_tailed_layer(21, d_out, d_in);
    let mut changed = weight.clone();
    for row in changed.chunks_exact_mut(d_in) {
        row[d_in - 40..].iter_mut().for_each(|w| *w *= 25.0);
    }
    let before = prunus_core::LayerView { block: 0, name: "wide", d_out, d_in, weight: &weight, stats: &stats };
    let after = prunus_core::LayerView { weight: &changed, ..before };
    let prefix_equal = |config: serde_json::Value| {
        let method = build(config);
        let (a, b) = (mask_of(&method, &before, 0.5), mask_of(&method, &after, 0.5));
        let (a, b) = (a.as_slice(), b.as_slice());
        (0..d_out).all(|r| a[r * d_in..(r + 1) * d_in - 40] == b[r * d_in..(r + 1) * d_in - 40])
    };
    assert!(prefix_equal(json!({"selection": "single_pass"})));
    assert!(prefix_equal(json!({"selection": "single_pass", "pass_model": "normal", "beta": 0.25})));
    assert!(!prefix_equal(json!(null)), "the bisected rule sees the whole row");
}

/// The two readings of the formula rank an outlier feature (x_j^2 a large share of S) in
/// opposite directions: dividing by 1 - x^2/S raises its score (kept), the product lowers it
/// (pruned); with no outlier both rank the row by |w|.
#[test]
fn the_two_forms_disagree_on_outlier_features() {
    let d_in = 8;
    let weight = [0.5f32, 0.4, 0.3, 0.2, 0.6, 0.7, 0.8, 0.9];
    let mut stats = prunus_core::Stats::new(prunus_core::StatKind::SqNorm, d_in);
    stats.n_samples = 1;
    stats.n_tokens = 1;
    stats.sq_sum = Some(vec![90.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]); // feature 0: 90/97 of S
    let view = prunus_core::LayerView { block: 0, name: "outlier", d_out: 1, d_in, weight: &weight, stats: &stats };
    let exact = |form: &str| mask_of(&build(json!({"form": form, "selection": "sort"})), &view, 0.5);
    assert_eq!(exact("divide").as_slice(), [false, true, true, true, true, false, false, false]);
    assert_eq!(exact("half_product").as_slice(), [true, true, true, true, false, false, false, false]);
}

/// Realised sparsity of the single-pass rule on Gaussian weights (rows of 576 and 1536 inputs,
/// weight_row): the chi-square model lands near the target, the normal model (c = 0 at 50%,
/// i.e. "below the running mean") prunes far more, as the skew of w^2 predicts (P(X < 1) =
/// 68% for X ~ chi^2_1). Observed: chi-square 48.6-50.9%, normal 66.1-66.4%; bounded at 3
/// points and above 62%.
#[test]
fn single_pass_realised_sparsity_on_gaussian_rows() {
    let mut rng = prunus_testkit::SplitMix64::new(17);
    for d_in in [576usize, 1536] {
        let d_out = 64;
        // Sum of 12 uniforms: close to Gaussian.
        let weight: Vec<f32> = (0..d_out * d_in).map(|_| (0..12).map(|_| rng.uniform(1.0)).sum::<f32>() * 0.01).collect();
        let stats = prunus_core::Stats::new(prunus_core::StatKind::None, d_in);
        let view = prunus_core::LayerView { block: 0, name: "gauss", d_out, d_in, weight: &weight, stats: &stats };
        for beta in [0.125, 0.25] {
            let chi = mask_of(&build(json!({"x_source": "weight_row", "selection": "single_pass", "beta": beta})), &view, 0.5).sparsity();
            let normal = mask_of(&build(json!({"x_source": "weight_row", "selection": "single_pass", "beta": beta, "pass_model": "normal"})), &view, 0.5).sparsity();
            eprintln!("d_in {d_in} beta {beta}: chi-square {chi:.4}, normal {normal:.4}");
            assert!((chi - 0.5).abs() < 0.03, "d_in {d_in} beta {beta}: chi-square {chi}");
            assert!(normal > 0.62, "d_in {d_in} beta {beta}: normal {normal}");
        }
    }
}
