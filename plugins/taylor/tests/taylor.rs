//! Taylor on tiny synthetic Llama models: scores are sum |w * g| with the model's gradients,
//! the lowest go (one-shot or iteratively rescored), the structured conformance suite passes,
//! bad input fails.

use prunus_core::Method;
use prunus_core::structured::{Calibration, ScoreInput, StructuredMethod, StructuredModel, StructuredOptions, UnitKind, prune_structured};
use prunus_core::{Error, registry};
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_taylor::{Config, Taylor};

const TEXTS: [&str; 3] = [
    "The quick brown fox jumps over the lazy dog, and later the host of the party was happy.",
    "In 1905 Einstein published four papers; each changed physics (and chemistry) for good.",
    "Rivers carry sediment downstream, where it settles into deltas rich with plant life.",
];

fn bytes(s: &str) -> prunus_core::Result<Vec<u32>> {
    Ok(s.bytes().map(|b| u32::from(b) % 128).collect())
}

fn calibration() -> Calibration<'static> {
    Calibration::new(TEXTS.map(String::from).to_vec(), 40, &bytes).unwrap()
}

fn model() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::new(128, 32, 48, 6, 4, 2, true), 3).unwrap()
}

fn taylor(config: serde_json::Value) -> Taylor {
    Taylor::new(serde_json::from_value(config).unwrap()).unwrap()
}

#[test]
fn scores_are_sums_of_abs_weight_times_gradient() {
    let m = model();
    let calib = calibration();
    let (_, g) = m.loss_and_grads(&calib.original().unwrap()).unwrap();
    let w = m.weights().unwrap();
    for kind in [UnitKind::Layer, UnitKind::Head, UnitKind::Channel] {
        let units = m.units(kind).unwrap();
        let scored = taylor(serde_json::json!({})).score(&ScoreInput { model: &m, units: &units, calibration: Some(&calib), iteration: 0 }).unwrap();
        for (u, s) in units.iter().zip(&scored.scores) {
            let want: f64 = u
                .parts
                .iter()
                .map(|p| {
                    let a = w.get(&p.tensor).unwrap().narrow(p.dim, p.start, p.len).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    let b = g.get(&p.tensor).unwrap().narrow(p.dim, p.start, p.len).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
                    a.iter().zip(&b).map(|(&x, &y)| (f64::from(x) * f64::from(y)).abs()).sum::<f64>()
                })
                .sum();
            assert!(want > 0.0 && (s - want).abs() <= 1e-5 * want, "{}: {s} vs {want}", u.describe());
        }
        assert!(scored.notes["loss"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn the_lowest_go_one_shot_or_iteratively() {
    let calib = calibration();
    for (unit, target) in [(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::Channel, 0.25)] {
        let units = model().units(unit).unwrap();
        for iterative in [false, true] {
            let method = taylor(serde_json::json!({"iterative": iterative, "units_per_iteration": 8}));
            let mut m = model();
            let out = prune_structured(&mut m, &prunus_core::Built::structured(method.clone()), Some(&calib), &StructuredOptions::new(unit, target), &mut |_| {}).unwrap();
            let n = out.removed_units().count();
            assert_eq!(out.iterations.len() > 1, iterative && n > 8, "{unit} iterative {iterative}");
            // The first iteration takes the lowest-scored candidates of the dense model.
            let first = &out.iterations[0];
            let cands: Vec<_> = units.iter().filter(|u| u.layer != 0 && u.layer != 5).cloned().collect();
            let scores = method.score(&ScoreInput { model: &model(), units: &cands, calibration: Some(&calib), iteration: 0 }).unwrap().scores;
            let mut sorted = scores.clone();
            sorted.sort_by(f64::total_cmp);
            if unit == UnitKind::Layer {
                let got: Vec<f64> = first.removed.iter().map(|r| r.score).collect();
                assert_eq!(got, sorted[..got.len()], "{unit}");
            }
            assert_eq!(first.removed[0].score, sorted[0], "{unit} iterative {iterative}");
        }
    }
}

#[test]
fn bad_input_is_refused() {
    let reg = registry::find("taylor").unwrap();
    assert_eq!(reg.kind(), "structured");
    for (config, needle) in [(serde_json::json!({"batch_size": 0}), "batch_size"), (serde_json::json!({"order": 2}), "unknown field `order`")] {
        let e = reg.build_structured(&config).err().expect("an error");
        assert!(matches!(e, Error::BadConfig { .. }) && e.to_string().contains(needle), "{e}");
    }
    let m = reg.build_structured(&serde_json::Value::Null).unwrap();
    assert_eq!(m.config, serde_json::to_value(Config::default()).unwrap());
    let mut tiny = model();
    let e = prune_structured(&mut tiny, &m, None, &StructuredOptions::new(UnitKind::Layer, 0.3), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::NeedsCalibration { .. }), "{e}");
    let calib = calibration();
    let e = prune_structured(&mut tiny, &m, Some(&calib), &StructuredOptions::new(UnitKind::Layer, 0.0), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::BadReduction { .. }), "{e}");
    assert_eq!(tiny.param_count(), model().param_count());
}

#[test]
fn passes_the_structured_conformance_suite() {
    let calib = calibration();
    for config in [serde_json::json!(null), serde_json::json!({"iterative": true, "units_per_iteration": 8})] {
        let method = registry::find("taylor").unwrap().build_structured(&config).unwrap();
        prunus_testkit::structured_conformance::check(&method, &model(), Some(&calib), &[(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::Channel, 0.25)]);
    }
}
