//! Structured random on tiny synthetic Llama models: seeded, the lowest random scores go,
//! the structured conformance suite passes, bad configs fail.

use prunus_core::structured::{ScoreInput, StructuredMethod, StructuredModel, StructuredOptions, StructuredOutcome, UnitKind, prune_structured};
use prunus_core::{Error, registry};
use prunus_model::{LlamaConfig, LlamaModel};
use prunus_struct_random::{Config, StructRandom};

fn model() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::new(128, 32, 48, 6, 4, 2, true), 3).unwrap()
}

fn run(seed: u64, unit: UnitKind, target: f64) -> (LlamaModel, StructuredOutcome) {
    let mut m = model();
    let method = StructRandom { config: Config { seed } };
    let out = prune_structured(&mut m, &prunus_core::Built::structured(method.clone()), None, &StructuredOptions::new(unit, target), &mut |_| {}).unwrap();
    (m, out)
}

#[test]
fn the_order_is_seeded() {
    let removed = |seed| run(seed, UnitKind::Channel, 0.25).1.removed_units().map(|r| (r.layer, r.index)).collect::<Vec<_>>();
    let a = removed(0);
    assert_eq!(a, removed(0));
    assert_ne!(a, removed(1));
}

#[test]
fn the_lowest_random_scores_go() {
    for (unit, target) in [(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::Channel, 0.25)] {
        let (_, out) = run(7, unit, target);
        let units = model().units(unit).unwrap();
        assert_eq!(out.iterations.len(), 1, "one-shot");
        // The scores the method gives the candidates of the dense model are the recorded ones,
        // and the removed are the lowest (where a layer keeps one unit, the next lowest).
        let candidates: Vec<_> = units.iter().filter(|u| u.layer != 0 && u.layer != 5).cloned().collect();
        let method = StructRandom { config: Config { seed: 7 } };
        let scores = method.score(&ScoreInput { model: &model(), units: &candidates, calibration: None, iteration: 0 }).unwrap().scores;
        let mut order: Vec<usize> = (0..candidates.len()).collect();
        order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        let mut left = std::collections::HashMap::new();
        for u in &units {
            *left.entry(u.layer).or_insert(0usize) += 1;
        }
        let mut expected = Vec::new();
        for c in order {
            let u = &candidates[c];
            if expected.len() == out.removed_units().count() {
                break;
            }
            if unit == UnitKind::Layer || left[&u.layer] > 1 {
                *left.get_mut(&u.layer).unwrap() -= 1;
                expected.push((u.layer, u.index, scores[c]));
            }
        }
        assert_eq!(out.removed_units().map(|r| (r.layer, r.index, r.score)).collect::<Vec<_>>(), expected, "{unit}");
    }
}

#[test]
fn configs_are_checked() {
    let reg = registry::find("struct-random").unwrap();
    assert_eq!(reg.kind(), "structured");
    let e = reg.build_structured(&serde_json::json!({"seed": "x"})).err().expect("an error");
    assert!(matches!(e, Error::BadConfig { .. }), "{e}");
    let m = reg.build_structured(&serde_json::json!({"seed": 3})).unwrap();
    assert_eq!(m.config, serde_json::json!({"seed": 3}));
    assert!(!m.needs_calibration());
}

#[test]
fn passes_the_structured_conformance_suite() {
    let method = prunus_core::Built::structured(StructRandom { config: Config { seed: 7 } });
    prunus_testkit::structured_conformance::check(&method, &model(), None, &[(UnitKind::Layer, 0.3), (UnitKind::Head, 0.1), (UnitKind::Channel, 0.25)]);
}
