//! prunus-train against PyTorch: `scripts/reference/train_reference.py` ran torch.optim.AdamW
//! (single-tensor, f32), torch.nn.utils.clip_grad_norm_ and transformers' warm-up schedules on
//! fixed numbers and committed what they gave (`fixtures/train/optim.json`). AdamW's weights
//! and the clipped gradients agree bit for bit, the learning rates to 1e-12.

use prunus_train::{AdamW, AdamWConfig, Decay, Schedule, clip_global_norm};
use serde_json::Value;

fn fixture() -> Value {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let path = dir.join("../../scripts/reference/fixtures/train/optim.json");
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

fn f32s(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

#[test]
fn adamw_matches_pytorch_step_by_step() {
    for case in fixture()["adamw"].as_array().unwrap() {
        let betas = f32s(&case["betas"]);
        let config = AdamWConfig {
            beta1: case["betas"][0].as_f64().unwrap(),
            beta2: case["betas"][1].as_f64().unwrap(),
            eps: case["eps"].as_f64().unwrap(),
            weight_decay: case["weight_decay"].as_f64().unwrap(),
        };
        let mut params: Vec<Vec<f32>> = case["initial"].as_array().unwrap().iter().map(f32s).collect();
        let mut opt = AdamW::new(config, &params.iter().map(Vec::len).collect::<Vec<_>>()).unwrap();
        for (step, (lr, grads)) in case["lrs"].as_array().unwrap().iter().zip(case["grads"].as_array().unwrap()).enumerate() {
            let grads: Vec<Vec<f32>> = grads.as_array().unwrap().iter().map(f32s).collect();
            let mut views: Vec<&mut [f32]> = params.iter_mut().map(|p| p.as_mut_slice()).collect();
            opt.step(&mut views, &grads.iter().map(Vec::as_slice).collect::<Vec<_>>(), lr.as_f64().unwrap()).unwrap();
            let want: Vec<Vec<f32>> = case["after"][step].as_array().unwrap().iter().map(f32s).collect();
            for (got, want) in params.iter().flatten().zip(want.iter().flatten()) {
                assert_eq!(got.to_bits(), want.to_bits(), "betas {betas:?}, step {step}: {got} vs PyTorch {want}");
            }
        }
    }
}

#[test]
fn clipping_matches_pytorch() {
    let case = &fixture()["clip"];
    let mut grads: Vec<Vec<f32>> = case["grads"].as_array().unwrap().iter().map(f32s).collect();
    let mut views: Vec<&mut [f32]> = grads.iter_mut().map(|g| g.as_mut_slice()).collect();
    let norm = clip_global_norm(&mut views, case["max_norm"].as_f64().unwrap()).unwrap();
    let want = case["norm"].as_f64().unwrap();
    assert!((norm - want).abs() <= 1e-6 * want, "{norm} vs {want}");
    let clipped: Vec<Vec<f32>> = case["clipped"].as_array().unwrap().iter().map(f32s).collect();
    for (got, want) in grads.iter().flatten().zip(clipped.iter().flatten()) {
        assert_eq!(got.to_bits(), want.to_bits(), "{got} vs PyTorch {want}");
    }
}

#[test]
fn schedules_match_transformers_with_a_final_multiplier_of_zero() {
    let f = fixture();
    for (key, decay) in [("linear", Decay::Linear), ("cosine", Decay::Cosine)] {
        let case = &f[key];
        let (warmup, total) = (case["warmup"].as_u64().unwrap(), case["total"].as_u64().unwrap());
        let schedule = Schedule::new(1.0, warmup, total, decay, 0.0).unwrap();
        // Up to `total` (the steps run, and the end point of the decay): past it transformers'
        // cosine rises again, where prunus holds the final rate (as Composer does).
        for (t, want) in case["lrs"].as_array().unwrap().iter().enumerate().take(total as usize + 1) {
            let (got, want) = (schedule.lr(t as u64), want.as_f64().unwrap());
            assert!((got - want).abs() <= 1e-12, "{key} step {t}: {got} vs transformers {want}");
        }
    }
}
