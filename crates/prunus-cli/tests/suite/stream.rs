//! `prunus prune --stream` on the real model: the same weights and report as the in-memory
//! prune of the same Hugging Face directory (and of the default GGUF file), a fraction of its
//! peak memory, and one clear line (nothing written) for what it cannot do; `prunus synth`
//! writes a loadable model.

use std::path::Path;

use crate::common::{fails_with, prunus};

fn ok(args: &[&str]) {
    let run = prunus(args);
    assert!(run.status.success(), "prunus {args:?}: {}", String::from_utf8_lossy(&run.stderr));
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn tensors(dir: &Path) -> Vec<(String, Vec<u32>)> {
    let model = prunus_model::LlamaModel::from_hf_dir(dir, &candle_core::Device::Cpu).unwrap();
    model.named_tensors().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect())).collect()
}

#[test]
fn a_streamed_prune_equals_the_in_memory_prune_with_less_memory() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    // The default model as a Hugging Face directory (f32, one file).
    ok(&["prune", "--method", "magnitude", "--sparsity", "0", "--eval", "none", "--out", &p("dense")]);
    // SparseGPT rewrites weights: what the streamed run writes back must be the same.
    let common = ["--model", &p("dense"), "--method", "sparsegpt", "--calib-samples", "2", "--calib-seq-len", "64"];
    ok(&[&["prune"], &common[..], &["--eval", "none", "--out", &p("whole"), "--report", &p("whole.json")]].concat());
    ok(&[&["prune"], &common[..], &["--stream", "--out", &p("streamed"), "--report", &p("streamed.json")]].concat());
    assert_eq!(tensors(&dir.path().join("streamed")), tensors(&dir.path().join("whole")));
    let (a, b) = (report(&dir.path().join("whole.json")), report(&dir.path().join("streamed.json")));
    for key in ["model", "calibration", "method"] {
        assert_eq!(a[key], b[key], "{key}");
    }
    let pruned = |r: &serde_json::Value| r["sparsity"]["per_layer"].as_array().unwrap().iter().map(|l| l["pruned"].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(pruned(&a), pruned(&b));
    assert_eq!(b["output"], p("streamed"));
    // The in-memory run holds the 0.54 GB f32 model; the streamed one the embedding (0.11 GB)
    // and one block (0.02 GB).
    let (whole, streamed) = (a["peak_rss_bytes"].as_u64().unwrap(), b["peak_rss_bytes"].as_u64().unwrap());
    assert!(streamed + (300 << 20) < whole, "peak RSS streamed {streamed} vs whole {whole}");
    // The streamed output is sharded, one shard per block, and inspects as pruned.
    let shards = std::fs::read_dir(dir.path().join("streamed")).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".safetensors")).count();
    assert_eq!(shards, 30 + 2);
    let inspect = prunus(&["inspect", &p("streamed")]);
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("sparsity 0.5000"), "{}", String::from_utf8_lossy(&inspect.stdout));
    // The default model itself, a Q4_1 GGUF file: both write the dequantized weights as f32.
    let wanda = ["--method", "wanda", "--calib-samples", "2", "--calib-seq-len", "64"];
    ok(&[&["prune"], &wanda[..], &["--eval", "none", "--out", &p("whole-gguf")]].concat());
    ok(&[&["prune"], &wanda[..], &["--stream", "--out", &p("streamed-gguf")]].concat());
    assert_eq!(tensors(&dir.path().join("streamed-gguf")), tensors(&dir.path().join("whole-gguf")));
}

#[test]
fn a_streamed_prune_refuses_what_it_cannot_do_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    fails_with(&prunus(&["prune", "--method", "wanda", "--stream"]), &["--stream", "--out"]);
    fails_with(&prunus(&["prune", "--method", "wanda", "--stream", "--out", &p("o"), "--eval", "ppl:wiki-vital"]), &["--stream", "evaluates nothing"]);
    fails_with(&prunus(&["prune", "--method", "taylor", "--reduction", "0.2", "--stream", "--out", &p("o")]), &["--stream", "layer-wise"]);
    fails_with(&prunus(&["prune", "--method", "wanda", "--stream", "--out", &p("o"), "--out-format", "sparse-bitmask"]), &["--stream", "sparse-bitmask"]);
    fails_with(&prunus(&["prune", "--method", "wanda", "--stream", "--out", &p("o"), "--speed"]), &["--stream", "--speed"]);
    fails_with(&prunus(&["prune", "--method", "wanda", "--out-format", "sparse-bitmask"]), &["--out"]);
    // A shard cut short is named before any block is pruned; nothing appears at --out.
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--dtype", "f32", "--out", &p("syn")]);
    let shard = dir.path().join("syn/model-00003-of-00004.safetensors");
    let bytes = std::fs::read(&shard).unwrap();
    std::fs::write(&shard, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&prunus(&["prune", "--model", &p("syn"), "--method", "magnitude", "--stream", "--out", &p("o")]), &["model-00003-of-00004.safetensors"]);
    let left: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, vec!["syn".to_string()], "only the input is left");
}

#[test]
fn synth_writes_a_model_that_evaluates() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("syn");
    ok(&["synth", "--shape", "smollm2-135m", "--layers", "2", "--seed", "3", "--out", out.to_str().unwrap()]);
    let run = prunus(&["eval", "--model", out.to_str().unwrap(), "--seq-len", "64", "--max-windows", "1"]);
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    assert!(String::from_utf8_lossy(&run.stdout).contains("ppl"), "{}", String::from_utf8_lossy(&run.stdout));
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(text.contains("bfloat16") && text.contains("\"num_hidden_layers\": 2"), "{text}");
    fails_with(&prunus(&["synth", "--shape", "gpt-5", "--out", dir.path().join("x").to_str().unwrap()]), &["--shape gpt-5"]);
    fails_with(&prunus(&["synth", "--out", out.to_str().unwrap()]), &["--out", "not empty"]);
}
