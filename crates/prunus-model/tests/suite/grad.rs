//! The training path: gradients against central finite differences, its loss against the
//! inference path's NLL, and a gradient step on the real model.

use crate::common;

use candle_core::{DType, Device, Tensor};
use common::tokens;
use prunus_core::rng::SplitMix64;
use prunus_model::{LlamaConfig, LlamaModel, ModelError, Precision};

/// The inference path's mean next-token NLL (f64 sums of f32 log-softmax).
fn mean_nll(model: &LlamaModel, t: &Tensor) -> f64 {
    let (n, seq) = t.dims2().unwrap();
    model.nll(t).unwrap().iter().sum::<f64>() / (n * (seq - 1)) as f64
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap()
}

/// The entries of a tensor to check: its largest gradient and `n_random` others.
fn entries(g: &[f64], n_random: usize, rng: &mut SplitMix64) -> Vec<usize> {
    let top = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
    let mut out = vec![top];
    out.extend((0..n_random).map(|_| rng.below(g.len() as u64) as usize));
    out
}

/// `model` with entry `i` of tensor `name` moved by `delta` (in f32); returns the model and
/// the step actually taken (the f32 difference, exact).
fn nudged(model: &LlamaModel, name: &str, i: usize, delta: f32) -> (LlamaModel, f64) {
    let t = model.named_tensors().into_iter().find(|(n, _)| n == name).unwrap().1.clone();
    let mut v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let old = v[i];
    v[i] = old + delta;
    let step = f64::from(v[i]) - f64::from(old);
    let mut m = model.clone();
    m.set_tensor(name, &Tensor::from_vec(v, t.dims(), &Device::Cpu).unwrap()).unwrap();
    (m, step)
}

/// Every parameter's f64 gradient against central differences of the f64 training loss,
/// on `n_random` + 1 entries per tensor. Returns the number of entries checked.
fn check_against_finite_differences(model: &LlamaModel, t: &Tensor, n_random: usize, seed: u64) -> usize {
    let (loss, grads) = model.loss_and_grads_in(t, Precision::F64).unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    let names: Vec<String> = model.named_tensors().into_iter().map(|(n, _)| n).collect();
    assert_eq!(grads.len(), names.len());
    let mut rng = SplitMix64::new(seed);
    let mut checked = 0;
    let mut worst = 0f64;
    for (name, w) in model.named_tensors() {
        let g_t = grads.get(&name).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_eq!(g_t.dims(), w.dims(), "{name}");
        assert_eq!(g_t.dtype(), DType::F64, "{name}");
        let g = values(g_t);
        let gmax = g.iter().fold(0f64, |m, v| m.max(v.abs()));
        assert!(gmax > 1e-6, "{name}: gradient is {gmax} everywhere");
        for i in entries(&g, n_random, &mut rng) {
            let h = 1e-3f32;
            let (plus, sp) = nudged(model, &name, i, h);
            let (minus, sm) = nudged(model, &name, i, -h);
            let lp = plus.training_loss(t, Precision::F64).unwrap();
            let lm = minus.training_loss(t, Precision::F64).unwrap();
            let fd = (lp - lm) / (sp - sm);
            let err = (fd - g[i]).abs();
            worst = worst.max(err / (g[i].abs() + 1e-4 * gmax));
            assert!(err <= 1e-7 + 1e-4 * g[i].abs(), "{name}[{i}]: gradient {} vs central difference {fd} (|diff| {err:e})", g[i]);
            checked += 1;
        }
    }
    eprintln!("worst relative error {worst:e} over {checked} entries");
    checked
}

#[test]
fn every_gradient_matches_central_differences() {
    // Tied: the embedding's gradient gets the output head's share too.
    let tied = LlamaModel::synthetic(LlamaConfig::tiny(), 11).unwrap();
    let t = tokens(2, 7, 64, 1);
    let n = check_against_finite_differences(&tied, &t, 6, 2);
    assert_eq!(n, 7 * (1 + 2 * 9 + 1));
    // Untied, three query heads per key/value head.
    let untied = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 12).unwrap();
    let t = tokens(3, 5, 50, 3);
    let n = check_against_finite_differences(&untied, &t, 6, 4);
    assert_eq!(n, 7 * (1 + 2 * 9 + 1 + 1));
}

#[test]
fn f32_gradients_match_f64() {
    let model = LlamaModel::synthetic(LlamaConfig::new(50, 24, 40, 2, 6, 3, false), 5).unwrap();
    let t = tokens(2, 9, 50, 6);
    let (l32, g32) = model.loss_and_grads(&t).unwrap();
    let (l64, g64) = model.loss_and_grads_in(&t, Precision::F64).unwrap();
    assert!((l32 - l64).abs() < 1e-5, "{l32} vs {l64}");
    assert_eq!(g32.len(), g64.len());
    for ((n32, a), (n64, b)) in g32.iter().zip(g64.iter()) {
        assert_eq!(n32, n64);
        assert_eq!(a.dtype(), DType::F32, "{n32}");
        let (a, b) = (values(a), values(b));
        let scale = b.iter().fold(0f64, |m, v| m.max(v.abs()));
        let diff = a.iter().zip(&b).fold(0f64, |m, (x, y)| m.max((x - y).abs()));
        assert!(diff <= 1e-4 * scale, "{n32}: f32 and f64 gradients differ by {diff:e} (largest {scale:e})");
    }
}

#[test]
fn training_loss_equals_the_inference_nll() {
    for (config, seed) in [(LlamaConfig::tiny(), 1), (LlamaConfig::new(50, 24, 40, 3, 6, 3, false), 2)] {
        let vocab = config.vocab_size;
        let model = LlamaModel::synthetic(config, seed).unwrap();
        let t = tokens(3, 11, vocab, seed + 10);
        let want = mean_nll(&model, &t);
        let (loss, _) = model.loss_and_grads(&t).unwrap();
        assert!((loss - want).abs() < 1e-5, "loss_and_grads {loss} vs nll {want}");
        for p in [Precision::F32, Precision::F64] {
            let l = model.training_loss(&t, p).unwrap();
            assert!((l - want).abs() < 1e-5, "training_loss({p:?}) {l} vs nll {want}");
        }
    }
}

#[test]
fn sgd_step_moves_every_parameter_against_its_gradient() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let t = tokens(2, 8, 64, 4);
    let (loss, grads) = model.loss_and_grads(&t).unwrap();
    let lr = 0.05;
    let mut stepped = model.clone();
    stepped.sgd_step(&grads, lr).unwrap();
    for ((name, w0), (_, w1)) in model.named_tensors().into_iter().zip(stepped.named_tensors()) {
        let g = values(grads.get(&name).unwrap());
        let (w0, w1) = (values(w0), values(w1));
        for ((a, b), g) in w0.iter().zip(&w1).zip(&g) {
            assert!((b - (a - lr * g)).abs() < 1e-6, "{name}: {a} - {lr} * {g} gave {b}");
        }
    }
    let after = stepped.training_loss(&t, Precision::F32).unwrap();
    assert!(after < loss, "{after} vs {loss}");
    // The model that gave the gradients is unchanged, and still off any autograd graph.
    assert_eq!(model.training_loss(&t, Precision::F32).unwrap(), loss);
}

#[test]
fn mismatched_gradients_and_short_windows_are_errors() {
    let mut model = LlamaModel::synthetic(LlamaConfig::tiny(), 3).unwrap();
    let other = LlamaModel::synthetic(LlamaConfig::new(64, 32, 40, 2, 4, 2, true), 3).unwrap();
    let (_, wrong) = other.loss_and_grads(&tokens(1, 4, 64, 1)).unwrap();
    let before = model.clone();
    let e = model.sgd_step(&wrong, 0.1).unwrap_err();
    assert!(matches!(&e, ModelError::ShapeMismatch { tensor, .. } if tensor.contains("gate_proj")), "{e}");
    let t = tokens(1, 6, 64, 2);
    assert_eq!(model.training_loss(&t, Precision::F32).unwrap(), before.training_loss(&t, Precision::F32).unwrap());
    let three_layers = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 3, 4, 2, true), 3).unwrap();
    let (_, extra) = three_layers.loss_and_grads(&tokens(1, 4, 64, 1)).unwrap();
    assert!(model.sgd_step(&extra, 0.1).is_ok(), "extra gradients are ignored");
    let (_, fewer) = before.loss_and_grads(&t).unwrap();
    let mut untied = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 2, 4, 2, false), 3).unwrap();
    let e = untied.sgd_step(&fewer, 0.1).unwrap_err();
    assert!(e.to_string().contains("lm_head.weight"), "{e}");
    let e = model.loss_and_grads(&Tensor::new(&[[3u32]], &Device::Cpu).unwrap()).unwrap_err();
    assert!(matches!(e, ModelError::Tokens { .. }), "{e}");
    assert!(model.loss_and_grads(&Tensor::new(&[[3u32, 64]], &Device::Cpu).unwrap()).is_err());
}

const TEXT: &str = "The lighthouse stands on a low island at the mouth of the bay. It was built more than a \
century ago, after a storm drove three ships onto the rocks in a single night. For many years a keeper and his \
family lived in the small house beside the tower. Every evening he climbed the narrow stairs to light the lamp, \
and every morning he cleaned the glass and wound the clockwork that turned the lens. Supplies came by boat once a \
week when the weather allowed, and in winter the family sometimes waited a month for fresh bread. Today the light \
is automatic and the house is a small museum. Visitors cross from the harbour on a ferry in summer, climb the \
tower and look out over the water towards the mountains. The old logbooks are kept in a glass case: they record \
the wind, the ships that passed and, now and then, a rescue. In one entry the keeper wrote that he had rowed out \
through the waves to bring four fishermen to safety, and that his wife had kept the lamp burning while he was away.";

#[test]
fn real_model_loss_matches_nll_and_a_gradient_step_lowers_it() {
    let path = common::real_model_path();
    let tok = prunus_data::tokenizer::from_gguf(&path).unwrap();
    let ids = prunus_data::tokenizer::encode(&tok, TEXT).unwrap();
    assert!(ids.len() >= 128, "{} tokens", ids.len());
    let t = Tensor::from_vec(ids[..128].to_vec(), (2, 64), &Device::Cpu).unwrap();
    let mut model = LlamaModel::from_gguf(&path, &Device::Cpu).unwrap();

    let (loss, grads) = model.loss_and_grads(&t).unwrap();
    let want = mean_nll(&model, &t);
    eprintln!("smollm2 2x64: training loss {loss:.6}, inference mean nll {want:.6}");
    assert!((loss - want).abs() < 1e-4, "training loss {loss} vs inference {want}");
    assert_eq!(grads.len(), model.named_tensors().len());
    let sum_sq = grads.sum_sq().unwrap();
    assert!(sum_sq.is_finite() && sum_sq > 0.0);

    // A step along the gradient small enough for the first-order prediction: the loss falls
    // by about lr * |g|^2 (here 0.5% of the loss).
    let lr = 0.005 * loss / sum_sq;
    model.sgd_step(&grads, lr).unwrap();
    let after = model.training_loss(&t, Precision::F32).unwrap();
    let (drop, predicted) = (loss - after, lr * sum_sq);
    eprintln!("smollm2: sgd step lr {lr:e}: loss {loss:.6} -> {after:.6} (drop {drop:.5}, first-order {predicted:.5})");
    assert!(after < loss, "{after} vs {loss}");
    assert!(drop > 0.8 * predicted && drop < 1.2 * predicted, "drop {drop} vs first-order {predicted}");
}
