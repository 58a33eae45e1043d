//! The block-sequential driver: statistics come from the dense block, and the next block's
//! inputs come from the pruned block (Wanda's and SparseGPT's error propagation).

use std::sync::Mutex;

use candle_core::Tensor;
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::{Group, LayerView, LayerwiseMethod, Pattern, PrunableModel, Result, StatKind};
use prunus_testkit::ToyModel;

/// Magnitude scores, recording the squared-norm statistics it is handed.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(usize, String, Vec<f64>, usize)>>,
}

impl LayerwiseMethod for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }
    fn group(&self, pattern: &Pattern) -> Result<Group> {
        Ok(match *pattern {
            Pattern::NM { n, m } => Group::NM { n, m },
            Pattern::Unstructured { .. } => Group::PerRow,
        })
    }
    fn score(&self, layer: &LayerView<'_>) -> Result<Vec<f32>> {
        let s = layer.stats;
        self.seen.lock().unwrap().push((layer.block, layer.name.to_string(), s.sq_sum.clone().unwrap(), s.n_samples));
        Ok(layer.weight.iter().map(|w| w.abs()).collect())
    }
    fn config(&self) -> serde_json::Value {
        serde_json::Value::Null
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
    let method = Recorder::default();
    let opts = PipelineOptions { batch_size: 4 }; // 6 samples: chunks of 4 and 2
    let outcome =
        prune_layerwise(&mut model, &method, &Pattern::Unstructured { sparsity: 0.5 }, Some(&tokens), &opts, &mut |_| {})
            .unwrap();
    assert_eq!(outcome.sparsity(), 0.5);
    let seen = method.seen.into_inner().unwrap();

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
        let method = Recorder::default();
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
