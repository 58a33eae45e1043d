//! Structured magnitude on tiny synthetic Llama models: scores are the units' weight norms,
//! the lowest go, the structured conformance suite passes for every unit kind (no data
//! needed), bad configs fail.

use candle_core::Tensor;
use prunus_core::structured::{ScoreInput, StructuredMethod, StructuredModel, StructuredOptions, UnitKind, prune_structured};
use prunus_core::{Error, registry};
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_struct_magnitude::{Config, StructMagnitude};

fn model() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::new(128, 32, 48, 6, 4, 2, true), 3).unwrap()
}

/// sqrt of the sum of squares of `t` restricted to `len` indices from `start` along `dim`.
fn sum_sq(t: &Tensor, dim: usize, start: usize, len: usize) -> f64 {
    let v = t.narrow(dim, start, len).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    v.iter().map(|&x| f64::from(x).powi(2)).sum()
}

#[test]
fn scores_are_weight_norms() {
    let m = model();
    let w = m.weights().unwrap();
    for kind in [UnitKind::Layer, UnitKind::Head, UnitKind::Channel] {
        let units = m.units(kind).unwrap();
        let scored = StructMagnitude::default().score(&ScoreInput { model: &m, units: &units, calibration: None, iteration: 0 }).unwrap();
        for (u, s) in units.iter().zip(&scored.scores) {
            let want = u.parts.iter().map(|p| sum_sq(w.get(&p.tensor).unwrap(), p.dim, p.start, p.len)).sum::<f64>().sqrt();
            assert!((s - want).abs() <= 1e-6 * want, "{}: {s} vs {want}", u.describe());
        }
        let normalized = StructMagnitude { config: Config { normalize: true } };
        let n = normalized.score(&ScoreInput { model: &m, units: &units, calibration: None, iteration: 0 }).unwrap();
        assert!((n.scores[0] - scored.scores[0] / (units[0].params as f64).sqrt()).abs() < 1e-12);
    }
}

#[test]
fn the_smallest_units_go_first() {
    // Shrink layers 3 and 1 (3 more): they must be the two removed.
    let mut m = model();
    for (layer, scale) in [(3, 0.01), (1, 0.1)] {
        let w = m.weights().unwrap();
        for (name, t) in w.iter().filter(|(n, _)| n.starts_with(&format!("model.layers.{layer}."))) {
            m.set_tensor(name, &(t * scale).unwrap()).unwrap();
        }
    }
    let out = prune_structured(&mut m, &prunus_core::Built::structured(StructMagnitude::default()), None, &StructuredOptions::new(UnitKind::Layer, 0.3), &mut |_| {}).unwrap();
    assert_eq!(out.removed_units().map(|r| r.layer).collect::<Vec<_>>(), [3, 1]);
    assert_eq!(out.iterations.len(), 1, "one-shot");
    for (unit, target) in [(UnitKind::Head, 0.1), (UnitKind::Channel, 0.25)] {
        let mut m = model();
        let units = m.units(unit).unwrap();
        let out = prune_structured(&mut m, &prunus_core::Built::structured(StructMagnitude::default()), None, &StructuredOptions::new(unit, target), &mut |_| {}).unwrap();
        // Every removed unit scores at most every kept candidate of a layer that still has room.
        let scored = StructMagnitude::default().score(&ScoreInput { model: &model(), units: &units, calibration: None, iteration: 0 }).unwrap();
        let removed: Vec<(usize, usize)> = out.removed_units().map(|r| (r.layer, r.index)).collect();
        let worst_removed = out.removed_units().map(|r| r.score).fold(f64::MIN, f64::max);
        for (u, s) in units.iter().zip(&scored.scores) {
            let candidate = u.layer != 0 && u.layer != 5;
            if candidate && !removed.contains(&(u.layer, u.index)) {
                let layer_left = units.iter().filter(|v| v.layer == u.layer).count() - removed.iter().filter(|r| r.0 == u.layer).count();
                assert!(*s >= worst_removed || layer_left == 1, "{unit}: kept {} scores {s} < {worst_removed}", u.describe());
            }
        }
    }
}

#[test]
fn configs_are_checked() {
    let reg = registry::find("struct-magnitude").unwrap();
    assert_eq!(reg.kind(), "structured");
    let e = reg.build_structured(&serde_json::json!({"norm": 1})).err().expect("an error");
    assert!(matches!(e, Error::BadConfig { .. }) && e.to_string().contains("unknown field `norm`"), "{e}");
    let m = reg.build_structured(&serde_json::Value::Null).unwrap();
    assert!(!m.needs_calibration());
    assert_eq!(m.config, serde_json::json!({"normalize": false}));
    let mut tiny = model();
    let e = prune_structured(&mut tiny, &m, None, &StructuredOptions::new(UnitKind::Layer, 1.2), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::BadReduction { .. }), "{e}");
}

#[test]
fn passes_the_structured_conformance_suite() {
    let cases = [(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::QueryHead, 0.05), (UnitKind::Channel, 0.25)];
    for config in [serde_json::json!(null), serde_json::json!({"normalize": true})] {
        let method = registry::find("struct-magnitude").unwrap().build_structured(&config).unwrap();
        prunus_testkit::structured_conformance::check(&method, &model(), None, &cases);
    }
}
