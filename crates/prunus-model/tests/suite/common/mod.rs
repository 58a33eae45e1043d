//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::GgmlDType;
use candle_core::{Device, Tensor};
use prunus_model::LlamaModel;

/// The real default model (SmolLM2-135M-Instruct Q4_1 GGUF) from the asset cache, fetched if
/// needed (`cargo xtask test` fetches it before the suite). The one place that knows where it lives.
pub fn real_model_path() -> PathBuf {
    prunus_data::assets::default_model_path().expect("the default model (run `cargo xtask assets`)")
}

/// Deterministic token windows (n_samples, seq_len) below `vocab`.
pub fn tokens(n: usize, seq: usize, vocab: usize, seed: u64) -> Tensor {
    let mut rng = prunus_core::rng::SplitMix64::new(seed);
    let data: Vec<u32> = (0..n * seq).map(|_| rng.below(vocab as u64) as u32).collect();
    Tensor::from_vec(data, (n, seq), &Device::Cpu).unwrap()
}

/// Largest absolute difference of two same-shape tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Writes `model` as a GGUF file (prunus-model's `write_gguf`, no metadata overrides).
pub fn write_gguf(model: &LlamaModel, path: &Path, dtype: GgmlDType, arch: &str) {
    prunus_model::gguf::write_gguf(model, path, dtype, arch, &[]).unwrap();
}
