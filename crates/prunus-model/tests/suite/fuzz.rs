//! The model readers under prunus-fuzz (see its docs): GGUF files, safetensors files (dense
//! and in the sparse-bitmask layout) and their shard index, and config.json. Each target writes the input where the reader expects
//! it and loads; an error is the right answer, a panic is a crash. Regression inputs live in
//! `tests/fuzz/<target>/`; `PRUNUS_FUZZ_SECONDS=600 cargo test --release -p prunus-model
//! --test fuzz -- <target>` is a campaign.

use crate::common;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_core::quantized::GgmlDType;
use prunus_model::{LlamaConfig, LlamaModel, SaveOptions};

fn corpus(target: &str) -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("tests/fuzz").join(target)
}

fn tiny() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::new(32, 16, 24, 2, 4, 2, true), 3).unwrap()
}

/// A tiny saved Hugging Face directory.
fn hf_dir(root: &Path) -> PathBuf {
    let dir = root.join("hf");
    tiny().save_hf_dir(&dir, &SaveOptions::default()).unwrap();
    dir
}

#[test]
fn fuzz_gguf() {
    let scratch = tempfile::tempdir().unwrap();
    let mut seeds = Vec::new();
    for dtype in [GgmlDType::F32, GgmlDType::Q8_0] {
        let p = scratch.path().join("seed.gguf");
        // Q8_0 needs rows of 32 values: a model with hidden 32.
        let model = if dtype == GgmlDType::F32 { tiny() } else { LlamaModel::synthetic(LlamaConfig::new(32, 32, 64, 1, 4, 2, true), 4).unwrap() };
        common::write_gguf(&model, &p, dtype, "llama");
        seeds.push(std::fs::read(&p).unwrap());
    }
    let path = scratch.path().join("input.gguf");
    prunus_fuzz::run("gguf", &corpus("gguf"), &seeds, |data| {
        std::fs::write(&path, data).unwrap();
        let _ = prunus_model::inspect_gguf(&path);
        LlamaModel::from_gguf(&path, &Device::Cpu).map(|_| ())
    });
}

#[test]
fn fuzz_safetensors() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = hf_dir(scratch.path());
    // A second seed with the block linears in the sparse-bitmask layout (its own reader).
    let sparse = scratch.path().join("sparse");
    tiny().save_hf_dir(&sparse, &SaveOptions { sparse: true, ..SaveOptions::default() }).unwrap();
    let seeds = vec![std::fs::read(dir.join("model.safetensors")).unwrap(), std::fs::read(sparse.join("model.safetensors")).unwrap()];
    let file = dir.join("model.safetensors");
    prunus_fuzz::run("safetensors", &corpus("safetensors"), &seeds, |data| {
        std::fs::write(&file, data).unwrap();
        let _ = prunus_model::hf::header_problem(&file);
        LlamaModel::from_hf_dir(&dir, &Device::Cpu).map(|_| ())
    });
}

#[test]
fn fuzz_safetensors_index() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = hf_dir(scratch.path());
    std::fs::rename(dir.join("model.safetensors"), dir.join("model-00001-of-00001.safetensors")).unwrap();
    let names: Vec<String> = tiny().named_tensors().into_iter().map(|(n, _)| n).collect();
    let map: serde_json::Map<String, serde_json::Value> = names.iter().map(|n| (n.clone(), "model-00001-of-00001.safetensors".into())).collect();
    let seeds = vec![serde_json::to_vec_pretty(&serde_json::json!({"metadata": {"total_size": 1}, "weight_map": map})).unwrap()];
    let index = dir.join("model.safetensors.index.json");
    prunus_fuzz::run("safetensors-index", &corpus("safetensors-index"), &seeds, |data| {
        std::fs::write(&index, data).unwrap();
        LlamaModel::from_hf_dir(&dir, &Device::Cpu).map(|_| ())
    });
}

#[test]
fn fuzz_config_json() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = hf_dir(scratch.path());
    let mut seeds = vec![std::fs::read(dir.join("config.json")).unwrap()];
    // A width-pruned config too (per-layer widths).
    let mut cfg: serde_json::Value = serde_json::from_slice(&seeds[0]).unwrap();
    cfg["prunus_layer_widths"] = serde_json::json!({"num_attention_heads": [4, 2], "num_key_value_heads": [2, 1], "intermediate_size": [24, 12]});
    seeds.push(serde_json::to_vec_pretty(&cfg).unwrap());
    let config = dir.join("config.json");
    prunus_fuzz::run("config-json", &corpus("config-json"), &seeds, |data| {
        std::fs::write(&config, data).unwrap();
        prunus_model::hf::read_config(&dir).and_then(|_| LlamaModel::from_hf_dir(&dir, &Device::Cpu).map(|_| ()))
    });
}
