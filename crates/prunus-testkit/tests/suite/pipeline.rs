//! The block-sequential driver: statistics come from the dense block, and the next block's
//! inputs come from the pruned block (Wanda's and SparseGPT's error propagation); method notes
//! reach the layer records; seconds are split per block; bad activations are named.

use std::sync::{Arc, Mutex};

use candle_core::Tensor;
use prunus_core::pipeline::{BlockSeconds, LayerRecord, PipelineOptions, prune_layerwise};
use prunus_core::layerwise::Target;
use prunus_core::{Built, Decision, Group, LayerView, LayerwiseMethod, Notes, Pattern, PrunableModel, Result, StatKind};
use prunus_testkit::ToyModel;

/// Magnitude scores, recording the squared-norm statistics it is handed.
#[derive(Default, Clone)]
struct Recorder {
    seen: Arc<Mutex<Vec<(usize, String, Vec<f64>, usize)>>>,
}

/// `method` as the pipeline takes it.
fn built(name: &'static str, method: impl LayerwiseMethod + 'static) -> Built<dyn LayerwiseMethod> {
    Built::unregistered(name, Box::new(method))
}

impl LayerwiseMethod for Recorder {
    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }
    fn group(&self, pattern: &Pattern) -> Result<Group> {
        Ok(match *pattern {
            Pattern::NM { n, m } => Group::NM { n, m },
            Pattern::Unstructured { .. } => Group::PerRow,
        })
    }
    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        let s = layer.stats;
        self.seen.lock().unwrap().push((layer.block, layer.name.to_string(), s.sq_sum.clone().unwrap(), s.n_samples));
        Ok(Decision::Scores(layer.weight.iter().map(|w| w.abs()).collect()))
    }
}

fn sq_sum(x: &Tensor) -> Vec<f64> {
    let (_, d) = x.dims2().unwrap();
    let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut out = vec![0.0; d];
    for row in v.chunks(d) {
        for (o, x) in out.iter_mut().zip(row) {
            *o += f64::from(*x) * f64::from(*x);
        }
    }
    out
}

fn site_inputs(model: &ToyModel, block: usize, hidden: &Tensor) -> Vec<(String, Tensor)> {
    let mut got = Vec::new();
    let mut cap = |site: &str, x: &Tensor| -> Result<()> {
        got.push((site.to_string(), x.clone()));
        Ok(())
    };
    model.block_forward(block, hidden, Some(&mut cap)).unwrap();
    got
}

fn close(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-5 * x.abs().max(1.0))
}

#[test]
fn statistics_come_from_the_dense_block_and_propagate_pruned_outputs() {
    let dense = ToyModel::new(3);
    let mut model = dense.clone();
    let tokens = dense.tokens(5, 6, 4);
    let recorder = Recorder::default();
    let method = built("recorder", recorder.clone());
    let opts = PipelineOptions { batch_size: 4 }; // 6 samples: chunks of 4 and 2
    let outcome =
        prune_layerwise(&mut model, &method, &Pattern::Unstructured { sparsity: 0.5 }, Some(&tokens), &opts, &mut |_| {})
            .unwrap();
    assert_eq!(outcome.sparsity(), 0.5);
    let seen = recorder.seen.lock().unwrap().clone();

    // Block 0: both sites measured on the dense block.
    let h0 = dense.embed(&tokens).unwrap();
    let dense0 = site_inputs(&dense, 0, &h0);
    for (site, name) in [("in", "blk.0.up"), ("act", "blk.0.down")] {
        let want = sq_sum(&dense0.iter().find(|(s, _)| s == site).unwrap().1);
        let got = seen.iter().find(|(_, n, _, _)| n == name).unwrap();
        assert!(close(&got.2, &want), "{name}: statistics differ from the dense block's");
        assert_eq!(got.3, 6, "n_samples");
    }
    // Block 1: its input is the *pruned* block 0's output.
    let h1 = model.block_forward(0, &h0, None).unwrap();
    let want = sq_sum(&site_inputs(&model, 1, &h1)[0].1);
    let got = seen.iter().find(|(_, n, _, _)| n == "blk.1.up").unwrap();
    assert!(close(&got.2, &want), "block 1 statistics must come from the pruned block 0");
    let h1_dense = dense.block_forward(0, &h0, None).unwrap();
    let not_want = sq_sum(&site_inputs(&model, 1, &h1_dense)[0].1);
    assert!(!close(&got.2, &not_want), "block 1 statistics must not come from the dense block 0");
}

#[test]
fn chunking_does_not_change_the_masks() {
    let tokens = ToyModel::new(3).tokens(5, 6, 4);
    let mut results = Vec::new();
    for batch_size in [1, 4, 6] {
        let mut model = ToyModel::new(3);
        let method = built("recorder", Recorder::default());
        prune_layerwise(
            &mut model,
            &method,
            &Pattern::NM { n: 2, m: 4 },
            Some(&tokens),
            &PipelineOptions { batch_size },
            &mut |_| {},
        )
        .unwrap();
        results.push(model.all_weights().iter().map(|w| *w == 0.0).collect::<Vec<_>>());
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[1], results[2]);
}

/// Magnitude scores, noting each linear's width on `down` only (a method with something to say
/// about some layers).
struct Noter(StatKind);

impl LayerwiseMethod for Noter {
    fn stats(&self) -> StatKind {
        self.0
    }
    fn group(&self, _pattern: &Pattern) -> Result<Group> {
        Ok(Group::PerRow)
    }
    fn decide(&self, layer: &LayerView<'_>, _target: &Target, notes: &mut Notes) -> Result<Decision> {
        if layer.name.ends_with(".down") {
            notes.insert("d_in".into(), layer.d_in.into());
            notes.insert("block".into(), layer.block.into());
        }
        Ok(Decision::Scores(layer.weight.iter().map(|w| w.abs()).collect()))
    }
}

#[test]
fn method_notes_reach_the_layer_records_and_only_when_present() {
    let mut model = ToyModel::new(3);
    let outcome =
        prune_layerwise(&mut model, &built("noter", Noter(StatKind::None)), &Pattern::Unstructured { sparsity: 0.5 }, None, &PipelineOptions::default(), &mut |_| {})
            .unwrap();
    assert_eq!(outcome.layers.len(), 4);
    for l in &outcome.layers {
        let json = serde_json::to_value(l).unwrap();
        if l.name == "down" {
            assert_eq!(json["notes"], serde_json::json!({"block": l.block, "d_in": 32}), "{json}");
        } else {
            assert!(l.notes.is_empty() && json.get("notes").is_none(), "{json}");
        }
        // Older records without the field still read.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("notes");
        let back: LayerRecord = serde_json::from_value(old).unwrap();
        assert!(back.notes.is_empty());
    }
}

#[test]
fn seconds_are_split_per_block_and_add_up() {
    let tokens = ToyModel::new(3).tokens(5, 6, 4);
    for kind in [StatKind::None, StatKind::SqNorm, StatKind::Hessian] {
        let mut model = ToyModel::with_dims(3, 3, 16, 32, 24);
        let outcome = prune_layerwise(
            &mut model,
            &built("noter", Noter(kind)),
            &Pattern::Unstructured { sparsity: 0.5 },
            Some(&tokens),
            &PipelineOptions::default(),
            &mut |_| {},
        )
        .unwrap();
        let blocks = &outcome.blocks;
        assert_eq!(blocks.iter().map(|b| b.block).collect::<Vec<_>>(), vec![0, 1, 2], "{kind:?}");
        for b in blocks {
            let layers: f64 = outcome.layers.iter().filter(|l| l.block == b.block).map(|l| l.score_mask_seconds).sum();
            assert!((b.score_and_mask - layers).abs() <= 1e-12, "{kind:?} block {}: {} vs {layers}", b.block, b.score_and_mask);
            assert!(b.calibration_forward >= 0.0 && b.statistics >= 0.0 && b.score_and_mask >= 0.0, "{kind:?} {b:?}");
            if kind == StatKind::None {
                assert_eq!((b.calibration_forward, b.statistics), (0.0, 0.0), "no forward pass without statistics");
            }
        }
        let sum = |f: fn(&BlockSeconds) -> f64| blocks.iter().map(f).sum::<f64>();
        let s = outcome.seconds;
        assert!((sum(|b| b.score_and_mask) - s.score_and_mask).abs() <= 1e-9, "{kind:?}");
        assert!((sum(|b| b.statistics) - s.statistics).abs() <= 1e-9, "{kind:?}");
        // The totals also hold the embedding of the calibration tokens, which no block owns.
        assert!(sum(|b| b.calibration_forward) <= s.calibration_forward + 1e-9, "{kind:?}");
        if kind != StatKind::None {
            assert!(sum(|b| b.statistics) > 0.0 && sum(|b| b.calibration_forward) > 0.0, "{kind:?}: {blocks:?}");
        }
        // Serialized with the outcome.
        let json = serde_json::to_value(&outcome).unwrap();
        assert_eq!(json["blocks"].as_array().unwrap().len(), 3);
    }
}

#[test]
fn non_finite_activations_name_the_block_and_site() {
    let mut model = ToyModel::new(3);
    let tokens = model.tokens(5, 6, 4);
    let first = tokens.flatten_all().unwrap().to_vec1::<u32>().unwrap()[0] as usize;
    model.set_embedding_entry(first, 2, f32::NAN);
    let before = model.all_weights();
    let e = prune_layerwise(&mut model, &built("recorder", Recorder::default()), &Pattern::NM { n: 2, m: 4 }, Some(&tokens), &PipelineOptions::default(), &mut |_| {})
        .unwrap_err();
    assert!(matches!(e, prunus_core::Error::NonFinite { .. }) && e.to_string().contains("blk.0 calibration inputs of capture site `in`"), "{e}");
    assert_eq!(before, model.all_weights(), "nothing may be pruned before the statistics fail");
}
