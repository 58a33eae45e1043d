//! Shared helpers for the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use prunus_model::layout::{gguf_name, permute_qk_to_gguf};
use prunus_model::LlamaModel;

/// The real default model (SmolLM2-135M-Instruct Q4_1 GGUF) from the asset cache, fetched if
/// needed (`cargo xtask test` fetches it before the suite). The one place that knows where it lives.
pub fn real_model_path() -> PathBuf {
    prunus_data::assets::default_model_path().expect("the default model (run `cargo xtask assets`)")
}

/// Deterministic token windows (n_samples, seq_len) below `vocab`.
pub fn tokens(n: usize, seq: usize, vocab: usize, seed: u64) -> Tensor {
    let mut rng = prunus_model::rng::SplitMix64::new(seed);
    let data: Vec<u32> = (0..n * seq).map(|_| rng.below(vocab as u64) as u32).collect();
    Tensor::from_vec(data, (n, seq), &Device::Cpu).unwrap()
}

/// Largest absolute difference of two same-shape tensors.
pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Writes `model` as a llama GGUF file the way llama.cpp's converter would (Q/K rows
/// permuted), every 2-D weight stored as `dtype`, norms as F32.
pub fn write_gguf(model: &LlamaModel, path: &Path, dtype: GgmlDType, arch: &str) {
    let c = model.config();
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    for (hf, t) in model.named_tensors() {
        let mut t = t.clone();
        if hf.ends_with("q_proj.weight") {
            t = permute_qk_to_gguf(&t, c.num_attention_heads).unwrap();
        } else if hf.ends_with("k_proj.weight") {
            t = permute_qk_to_gguf(&t, c.n_kv_heads()).unwrap();
        }
        let dt = if t.rank() == 1 { GgmlDType::F32 } else { dtype };
        tensors.push((gguf_name(&hf).unwrap(), QTensor::quantize(&t, dt).unwrap()));
    }
    let u = |v: usize| Value::U32(v as u32);
    let vocab: Vec<Value> = (0..c.vocab_size).map(|i| Value::String(format!("t{i}"))).collect();
    let md: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String("synthetic".into())),
        (format!("{arch}.block_count"), u(c.num_hidden_layers)),
        (format!("{arch}.embedding_length"), u(c.hidden_size)),
        (format!("{arch}.feed_forward_length"), u(c.intermediate_size)),
        (format!("{arch}.attention.head_count"), u(c.num_attention_heads)),
        (format!("{arch}.attention.head_count_kv"), u(c.n_kv_heads())),
        (format!("{arch}.attention.layer_norm_rms_epsilon"), Value::F32(c.rms_norm_eps as f32)),
        (format!("{arch}.rope.freq_base"), Value::F32(c.rope_theta as f32)),
        (format!("{arch}.context_length"), u(c.max_position_embeddings)),
        (format!("{arch}.rope.dimension_count"), u(c.head_dim())),
        ("tokenizer.ggml.tokens".into(), Value::Array(vocab)),
    ];
    let md_refs: Vec<(&str, &Value)> = md.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let t_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let mut f = std::fs::File::create(path).unwrap();
    gguf_file::write(&mut f, &md_refs, &t_refs).unwrap();
}
