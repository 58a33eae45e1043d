//! The hand-written backward (`manual_loss_and_grads`) against the autograd path in f64 (itself
//! checked against central differences in `grad.rs`), directly against central differences on
//! the toy model, against the autograd path in f32 on the real model, and bit-identical with 1
//! and 2 threads.

use crate::common;

use candle_core::{DType, Tensor};
use common::tokens;
use prunus_model::{LlamaConfig, LlamaModel, Precision};

fn ids(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<u32>().unwrap()
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// Every tensor's manual f32 gradient within `tol` x its largest entry of `reference`'s, and
/// the losses within `loss_tol`.
fn compare(model: &LlamaModel, t: &Tensor, precision: Precision, tol: f64, loss_tol: f64) {
    let (n, seq) = t.dims2().unwrap();
    let (loss, grads) = model.manual_loss_and_grads(&ids(t), n, seq).unwrap();
    let (ref_loss, reference) = model.loss_and_grads_in(t, precision).unwrap();
    assert!((loss - ref_loss).abs() <= loss_tol * ref_loss, "loss {loss} vs {ref_loss}");
    assert_eq!(grads.len(), reference.len());
    let mut worst = 0f64;
    for (g, (name, r)) in grads.iter().zip(reference.iter()) {
        let r = values(r);
        assert_eq!(g.len(), r.len(), "{name}");
        let scale = r.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = g.iter().zip(&r).fold(0f64, |m, (a, b)| m.max((f64::from(*a) - b).abs()));
        assert!(scale > 0.0 && diff <= tol * scale, "{name}: manual and autograd gradients differ by {diff:e} (largest {scale:e})");
        worst = worst.max(diff / scale);
    }
    eprintln!("largest difference {worst:e} of a tensor's largest gradient; losses {loss} and {ref_loss}");
}

#[test]
fn manual_gradients_match_autograd_in_f64_tied_and_untied() {
    let tied = LlamaModel::synthetic(LlamaConfig::tiny(), 11).unwrap();
    compare(&tied, &tokens(2, 7, 64, 1), Precision::F64, 1e-4, 1e-6);
    // Untied, three query heads per key/value head.
    let untied = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 12).unwrap();
    compare(&untied, &tokens(3, 5, 50, 3), Precision::F64, 1e-4, 1e-6);
    // Longer windows than the head rows of one chunk would need: many rows, one head.
    let wide = LlamaModel::synthetic(LlamaConfig::new(40, 16, 24, 1, 2, 1, true), 13).unwrap();
    compare(&wide, &tokens(3, 200, 40, 4), Precision::F64, 1e-4, 1e-6);
}

#[test]
fn manual_gradients_match_central_differences() {
    let model = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 3, false), 5).unwrap();
    let t = tokens(2, 9, 50, 6);
    let (_, grads) = model.manual_loss_and_grads(&ids(&t), 2, 9).unwrap();
    let mut rng = prunus_core::rng::SplitMix64::new(9);
    let mut checked = 0;
    for ((name, w), g) in model.named_tensors().into_iter().zip(&grads) {
        let gmax = g.iter().fold(0f32, |m, v| m.max(v.abs()));
        let top = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
        for i in [top, rng.below(g.len() as u64) as usize] {
            let mut v = w.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let old = v[i];
            let loss_at = |x: f32, v: &mut Vec<f32>| {
                v[i] = x;
                let mut m = model.clone();
                m.set_tensor(&name, &Tensor::from_vec(v.clone(), w.dims(), w.device()).unwrap()).unwrap();
                (m.training_loss(&t, Precision::F64).unwrap(), f64::from(x))
            };
            let (lp, xp) = loss_at(old + 1e-3, &mut v);
            let (lm, xm) = loss_at(old - 1e-3, &mut v);
            let fd = (lp - lm) / (xp - xm);
            let err = (fd - f64::from(g[i])).abs();
            assert!(err <= 1e-6 + 1e-4 * f64::from(gmax), "{name}[{i}]: manual {} vs central difference {fd}", g[i]);
            checked += 1;
        }
    }
    assert_eq!(checked, 2 * (1 + 2 * 9 + 1 + 1));
}

#[test]
fn manual_gradients_are_the_same_with_one_and_two_threads() {
    let model = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 12).unwrap();
    let t = ids(&tokens(2, 70, 50, 3));
    let run = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let (loss, grads) = pool.install(|| model.manual_loss_and_grads(&t, 2, 70).unwrap());
        (loss.to_bits(), grads.iter().map(|g| g.iter().map(|x| x.to_bits()).collect::<Vec<_>>()).collect::<Vec<_>>())
    };
    assert!(run(1) == run(2), "the thread count changed a gradient");
}

#[test]
fn manual_gradients_match_autograd_on_the_real_model() {
    let model = LlamaModel::from_gguf(common::real_model_path(), &candle_core::Device::Cpu).unwrap();
    // f32 on both sides: the differences are rounding, summed over 30 blocks.
    compare(&model, &tokens(1, 48, 49152, 7), Precision::F32, 2e-4, 1e-6);
}

#[test]
fn bad_windows_are_refused() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 1).unwrap();
    let e = model.manual_loss_and_grads(&[1, 2, 3], 3, 1).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    let e = model.manual_loss_and_grads(&[1, 64], 1, 2).unwrap_err().to_string();
    assert!(e.contains("token id 64"), "{e}");
}

#[test]
fn accumulating_into_buffers_equals_the_sum_of_the_micro_batches() {
    let model = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 12).unwrap();
    let (a, b) = (ids(&tokens(2, 9, 50, 1)), ids(&tokens(2, 9, 50, 2)));
    let (la, ga) = model.manual_loss_and_grads(&a, 2, 9).unwrap();
    let (lb, gb) = model.manual_loss_and_grads(&b, 2, 9).unwrap();
    let mut acc = ga.clone();
    let lb2 = model.manual_add_loss_and_grads(&b, 2, 9, &mut acc).unwrap();
    assert_eq!(lb.to_bits(), lb2.to_bits());
    for ((s, x), y) in acc.iter().zip(&ga).zip(&gb) {
        let scale = x.iter().chain(y).fold(0f32, |m, v| m.max(v.abs()));
        for ((s, x), y) in s.iter().zip(x).zip(y) {
            assert!((s - (x + y)).abs() <= 1e-6 * scale, "{s} vs {x} + {y}");
        }
    }
    assert!(la.is_finite());
    let mut wrong = vec![vec![0f32; 3]];
    assert!(model.manual_add_loss_and_grads(&b, 2, 9, &mut wrong).unwrap_err().to_string().contains("gradient buffers"));
}
