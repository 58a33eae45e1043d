//! Loading and saving: Hugging Face directories (single file and sharded), GGUF, and the
//! error values for broken inputs.

use crate::common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};
use common::{max_abs_diff, tokens, write_gguf};
use prunus_model::{LlamaConfig, LlamaModel, ModelError, SaveOptions, inspect_gguf};

fn tiny() -> LlamaModel {
    LlamaModel::synthetic(LlamaConfig::tiny(), 42).unwrap()
}

fn logits(m: &LlamaModel) -> Tensor {
    m.forward(&tokens(2, 8, m.config().vocab_size, 1)).unwrap()
}

#[test]
fn save_then_load_is_bit_exact() {
    let dir = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 2, 4, 2, !tied), 9).unwrap();
        let out = dir.path().join(format!("out-{tied}"));
        model.save_hf_dir(&out, &SaveOptions { tokenizer_json: Some(b"{\"x\": 1}"), overwrite: false, sparse: false }).unwrap();
        assert_eq!(std::fs::read(out.join("tokenizer.json")).unwrap(), b"{\"x\": 1}");
        let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("config.json")).unwrap()).unwrap();
        assert_eq!(cfg["architectures"], serde_json::json!(["LlamaForCausalLM"]));
        assert_eq!(cfg["model_type"], "llama");
        assert_eq!(cfg["torch_dtype"], "float32");
        assert_eq!(cfg["tie_word_embeddings"], !tied);
        let st = candle_core::safetensors::load(out.join("model.safetensors"), &Device::Cpu).unwrap();
        assert_eq!(st.contains_key("lm_head.weight"), tied);
        assert!(st.values().all(|t| t.dtype() == DType::F32));
        let back = LlamaModel::from_hf_dir(&out, &Device::Cpu).unwrap();
        assert_eq!(max_abs_diff(&logits(&model), &logits(&back)), 0.0);
        assert_eq!(back.is_tied(), !tied);
        // Modes are those of a plain mkdir and create here (umask applied), not owner-only.
        let plain = dir.path().join(format!("plain-{tied}"));
        std::fs::create_dir(&plain).unwrap();
        std::fs::File::create(plain.join("f")).unwrap();
        let mode = |p: &std::path::Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions()) & 0o777;
        assert_eq!(mode(&out), mode(&plain), "directory mode");
        for f in ["config.json", "model.safetensors", "tokenizer.json"] {
            assert_eq!(mode(&out.join(f)), mode(&plain.join("f")), "{f} mode");
        }
        std::fs::remove_dir_all(&plain).unwrap();
        // No temporary directories are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).filter(|n| n.to_string_lossy().starts_with('.')).collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

/// A pid with no process (for leftovers of a "killed" run).
fn dead_pid() -> u32 {
    (4_000_000..4_100_000).find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap()
}

#[test]
fn leftovers_of_killed_saves_are_removed_by_the_next_save_and_live_ones_kept() {
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join(format!("{}{}-out.abc123", prunus_model::TEMP_PREFIX, dead_pid()));
    std::fs::create_dir(&dead).unwrap();
    std::fs::write(dead.join("model.safetensors"), b"half written").unwrap();
    // pid 1 is alive: its temporary directory may be a save in progress.
    let live = dir.path().join(format!("{}1-out.def456", prunus_model::TEMP_PREFIX));
    std::fs::create_dir(&live).unwrap();
    let unrelated = dir.path().join(".tmp-something-else");
    std::fs::create_dir(&unrelated).unwrap();
    tiny().save_hf_dir(dir.path().join("other"), &SaveOptions::default()).unwrap();
    assert!(!dead.exists() && live.exists() && unrelated.exists());
}

#[test]
fn save_refuses_bad_output_dirs() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    let src = dir.path().join("src");
    model.save_hf_dir(&src, &SaveOptions::default()).unwrap();
    let loaded = LlamaModel::from_hf_dir(&src, &Device::Cpu).unwrap();
    // The input model's own path, also via `..`, and a parent of it.
    for out in [src.clone(), src.join("..").join("src"), dir.path().to_path_buf()] {
        let e = loaded.save_hf_dir(&out, &SaveOptions { tokenizer_json: None, overwrite: true, sparse: false }).unwrap_err();
        assert!(matches!(e, ModelError::OutputDir { .. }) && e.to_string().contains("input model"), "{e}");
    }
    // An existing non-empty directory without overwrite, then with it.
    let other = dir.path().join("other");
    model.save_hf_dir(&other, &SaveOptions::default()).unwrap();
    let e = model.save_hf_dir(&other, &SaveOptions::default()).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");
    std::fs::write(other.join("stale.txt"), "x").unwrap();
    model.save_hf_dir(&other, &SaveOptions { tokenizer_json: None, overwrite: true, sparse: false }).unwrap();
    assert!(!other.join("stale.txt").exists());
    // An existing empty directory is fine.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    model.save_hf_dir(&empty, &SaveOptions::default()).unwrap();
    // A file in the way, and a parent that is a file.
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    assert!(matches!(model.save_hf_dir(&file, &SaveOptions::default()).unwrap_err(), ModelError::OutputDir { .. }));
    assert!(matches!(model.save_hf_dir(file.join("sub"), &SaveOptions::default()).unwrap_err(), ModelError::OutputDir { .. }));
    // A GGUF-loaded model refuses its own file path.
    let g = dir.path().join("m.gguf");
    write_gguf(&model, &g, GgmlDType::F32, "llama");
    let gm = LlamaModel::from_gguf(&g, &Device::Cpu).unwrap();
    assert!(gm.save_hf_dir(&g, &SaveOptions { tokenizer_json: None, overwrite: true, sparse: false }).unwrap_err().to_string().contains("input model"));
}

#[test]
fn save_refuses_unwritable_dir() {
    let dir = tempfile::tempdir().unwrap();
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let mut perm = std::fs::metadata(&ro).unwrap().permissions();
    use std::os::unix::fs::PermissionsExt;
    perm.set_mode(0o555);
    std::fs::set_permissions(&ro, perm).unwrap();
    // root ignores permissions; only check when the directory really is read-only.
    if std::fs::write(ro.join("probe"), "x").is_err() {
        let e = tiny().save_hf_dir(ro.join("out"), &SaveOptions::default()).unwrap_err();
        assert!(matches!(e, ModelError::OutputDir { .. }), "{e}");
    }
}

/// Writes the tensors of `model` as `n` safetensors shards plus an index.
fn write_sharded(model: &LlamaModel, dir: &Path, n: usize, dtype: DType) {
    std::fs::create_dir_all(dir).unwrap();
    let cfg = serde_json::to_string(&model.export_config()).unwrap();
    std::fs::write(dir.join("config.json"), cfg).unwrap();
    let named = model.named_tensors();
    let mut weight_map = serde_json::Map::new();
    for (i, chunk) in named.chunks(named.len().div_ceil(n)).enumerate() {
        let file = format!("model-{:05}-of-{n:05}.safetensors", i + 1);
        let mut m = HashMap::new();
        for (name, t) in chunk {
            m.insert(name.clone(), t.to_dtype(dtype).unwrap());
            weight_map.insert(name.clone(), serde_json::Value::String(file.clone()));
        }
        candle_core::safetensors::save(&m, dir.join(&file)).unwrap();
    }
    let index = serde_json::json!({"metadata": {"total_size": 0}, "weight_map": weight_map});
    std::fs::write(dir.join("model.safetensors.index.json"), index.to_string()).unwrap();
}

#[test]
fn sharded_directories_load() {
    let dir = tempfile::tempdir().unwrap();
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 2, 4, 2, false), 3).unwrap();
    write_sharded(&model, &dir.path().join("a"), 2, DType::F32);
    let back = LlamaModel::load(dir.path().join("a"), &Device::Cpu).unwrap();
    assert_eq!(max_abs_diff(&logits(&model), &logits(&back)), 0.0);
    // bf16 and f16 shards are converted to f32.
    for dt in [DType::BF16, DType::F16] {
        let p = dir.path().join(format!("{dt:?}"));
        write_sharded(&model, &p, 3, dt);
        let back = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap();
        assert!(max_abs_diff(&logits(&model), &logits(&back)) < 0.5);
    }
    // An index naming a shard that is not there.
    let p = dir.path().join("a");
    std::fs::remove_file(p.join("model-00002-of-00002.safetensors")).unwrap();
    let e = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("model-00002-of-00002.safetensors"), "{e}");
}

#[test]
fn hf_errors_name_tensor_and_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    let p = dir.path().join("m");
    model.save_hf_dir(&p, &SaveOptions::default()).unwrap();
    // A config whose intermediate_size disagrees with the tensors.
    let mut cfg = model.export_config();
    cfg.intermediate_size = 40;
    std::fs::write(p.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let e = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err();
    match &e {
        ModelError::ShapeMismatch { tensor, expected, found } => {
            assert_eq!(tensor, "model.layers.0.mlp.gate_proj.weight");
            assert_eq!((expected.as_slice(), found.as_slice()), (&[40, 32][..], &[48, 32][..]));
        }
        other => panic!("unexpected {other}"),
    }
    assert!(e.to_string().contains("gate_proj") && e.to_string().contains("40"));
    // An untied config over a tied checkpoint: lm_head.weight is missing.
    let mut cfg = model.export_config();
    cfg.tie_word_embeddings = false;
    std::fs::write(p.join("config.json"), serde_json::to_string(&cfg).unwrap()).unwrap();
    let e = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err();
    assert!(matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "lm_head.weight"), "{e}");
    // Broken config.json, missing config.json, corrupt safetensors.
    std::fs::write(p.join("config.json"), "{not json").unwrap();
    assert!(matches!(LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err(), ModelError::ConfigParse { .. }));
    std::fs::write(p.join("config.json"), serde_json::to_string(&model.export_config()).unwrap()).unwrap();
    let st = p.join("model.safetensors");
    let bytes = std::fs::read(&st).unwrap();
    std::fs::write(&st, &bytes[..bytes.len() / 2]).unwrap();
    let e = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err();
    assert!(matches!(e, ModelError::Safetensors { .. }) && e.to_string().contains("model.safetensors"), "{e}");
    std::fs::write(&st, b"garbage").unwrap();
    assert!(LlamaModel::from_hf_dir(&p, &Device::Cpu).is_err());
    std::fs::remove_file(p.join("config.json")).unwrap();
    assert!(matches!(LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err(), ModelError::Io { .. }));
}

#[test]
fn gguf_round_trip_f32_is_exact_and_q8_0_is_close() {
    let dir = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 64, 2, 4, 2, tied), 5).unwrap();
        let p = dir.path().join(format!("m-{tied}.gguf"));
        write_gguf(&model, &p, GgmlDType::F32, "llama");
        let back = LlamaModel::from_gguf(&p, &Device::Cpu).unwrap();
        assert_eq!(back.config().vocab_size, 64);
        assert_eq!(back.is_tied(), tied);
        assert_eq!(max_abs_diff(&logits(&model), &logits(&back)), 0.0);
        let q = dir.path().join(format!("q-{tied}.gguf"));
        write_gguf(&model, &q, GgmlDType::Q8_0, "llama");
        let back = LlamaModel::from_gguf(&q, &Device::Cpu).unwrap();
        let d = max_abs_diff(&logits(&model), &logits(&back));
        assert!(d > 0.0 && d < 0.25, "{d}");
        let s = inspect_gguf(&q).unwrap();
        assert_eq!(s.architecture, "llama");
        assert_eq!(s.config.as_ref().unwrap().num_hidden_layers, 2);
        assert_eq!(s.n_params, model.n_params());
        assert!(s.dtype_counts.iter().any(|(t, n)| t == "Q8_0" && *n == 14 + 1 + usize::from(!tied)));
        let q_proj = s.tensors.iter().find(|t| t.name == "blk.0.attn_q.weight").unwrap();
        assert_eq!(q_proj.shape, vec![32, 32]);
    }
}

#[test]
fn gguf_errors_are_values() {
    let dir = tempfile::tempdir().unwrap();
    let model = tiny();
    let good = dir.path().join("good.gguf");
    write_gguf(&model, &good, GgmlDType::F32, "llama");
    let bytes = std::fs::read(&good).unwrap();

    // Unsupported architecture names it.
    let g = dir.path().join("gemma.gguf");
    write_gguf(&model, &g, GgmlDType::F32, "gemma3");
    let e = LlamaModel::from_gguf(&g, &Device::Cpu).unwrap_err();
    assert!(matches!(&e, ModelError::UnsupportedArchitecture { arch, .. } if arch == "gemma3"), "{e}");
    assert_eq!(inspect_gguf(&g).unwrap().architecture, "gemma3");

    // Truncated anywhere: an error naming the file, never a panic.
    let t = dir.path().join("trunc.gguf");
    let n = bytes.len();
    let mut cuts: Vec<usize> = (0..64).chain((0..40).map(|i| i * n / 40)).chain([n - 1, n - 4]).collect();
    cuts.sort();
    cuts.dedup();
    for cut in cuts {
        std::fs::write(&t, &bytes[..cut]).unwrap();
        let e = LlamaModel::from_gguf(&t, &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("trunc.gguf"), "cut {cut}: {e}");
    }

    // Corrupt header: bad magic, absurd counts, and random byte flips in the header.
    let c = dir.path().join("corrupt.gguf");
    let mut b = bytes.clone();
    b[0] = b'X';
    std::fs::write(&c, &b).unwrap();
    let e = LlamaModel::from_gguf(&c, &Device::Cpu).unwrap_err();
    assert!(matches!(e, ModelError::Gguf { .. }) && e.to_string().contains("corrupt.gguf"), "{e}");
    let mut b = bytes.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes()); // tensor count
    std::fs::write(&c, &b).unwrap();
    assert!(LlamaModel::from_gguf(&c, &Device::Cpu).is_err());
    let mut rng = prunus_core::rng::SplitMix64::new(1);
    let header_len = 2000.min(n);
    for _ in 0..300 {
        let mut b = bytes.clone();
        for _ in 0..3 {
            let i = rng.below(header_len as u64) as usize;
            b[i] = rng.next_u64() as u8;
        }
        std::fs::write(&c, &b).unwrap();
        let _ = LlamaModel::from_gguf(&c, &Device::Cpu); // Ok or Err, but no panic
        let _ = inspect_gguf(&c);
    }

    // A header claiming more blocks than the file holds: the first missing tensor is named.
    let big = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 3, 4, 2, true), 1).unwrap();
    let p3 = dir.path().join("three.gguf");
    write_gguf(&big, &p3, GgmlDType::F32, "llama");
    let mut b = std::fs::read(&p3).unwrap();
    let key = b"llama.block_count";
    let pos = b.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    b[pos..pos + 4].copy_from_slice(&4u32.to_le_bytes());
    std::fs::write(&p3, &b).unwrap();
    let e = LlamaModel::from_gguf(&p3, &Device::Cpu).unwrap_err();
    assert!(matches!(&e, ModelError::MissingTensor { tensor, .. } if tensor == "blk.3.attn_norm.weight"), "{e}");
    // An absurd block count fails fast instead of listing a billion tensor names.
    b[pos..pos + 4].copy_from_slice(&2_000_000_000u32.to_le_bytes());
    std::fs::write(&p3, &b).unwrap();
    assert!(LlamaModel::from_gguf(&p3, &Device::Cpu).is_err());
    // Not found file.
    let e = LlamaModel::from_gguf(dir.path().join("nope.gguf"), &Device::Cpu).unwrap_err();
    assert!(matches!(e, ModelError::Io { .. }) && e.to_string().contains("nope.gguf"));
}

#[test]
fn gguf_unsupported_quantization_names_tensor_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 64, 2, 4, 2, true), 1).unwrap();
    let p = dir.path().join("q81.gguf");
    // Q8_1 is a type candle can store but not dequantize.
    let t = Tensor::zeros((32, 32), DType::F32, &Device::Cpu).unwrap();
    if candle_core::quantized::QTensor::quantize(&t, GgmlDType::Q8_1).is_err() {
        return;
    }
    write_gguf(&model, &p, GgmlDType::Q8_1, "llama");
    let e = LlamaModel::from_gguf(&p, &Device::Cpu).unwrap_err();
    match &e {
        ModelError::UnsupportedQuantization { tensor, dtype, .. } => {
            assert_eq!(tensor, "token_embd.weight");
            assert_eq!(dtype, "Q8_1");
        }
        other => panic!("unexpected {other}"),
    }
}

#[test]
fn gguf_shape_disagreement_names_tensor() {
    let dir = tempfile::tempdir().unwrap();
    // Write a model whose FFN is 64 wide but claim 48 in the header by building the file from
    // a different model's tensors: take the 64-wide tensors, the 48-wide metadata.
    let wide = LlamaModel::synthetic(LlamaConfig::new(64, 32, 64, 2, 4, 2, true), 1).unwrap();
    let p = dir.path().join("wide.gguf");
    write_gguf(&wide, &p, GgmlDType::F32, "llama");
    let mut bytes = std::fs::read(&p).unwrap();
    // Patch llama.feed_forward_length (u32 value right after its key and type tag).
    let key = b"llama.feed_forward_length";
    let pos = bytes.windows(key.len()).position(|w| w == key).unwrap() + key.len() + 4;
    bytes[pos..pos + 4].copy_from_slice(&48u32.to_le_bytes());
    std::fs::write(&p, &bytes).unwrap();
    let e = LlamaModel::from_gguf(&p, &Device::Cpu).unwrap_err();
    match &e {
        ModelError::ShapeMismatch { tensor, expected, found } => {
            assert_eq!(tensor, "blk.0.ffn_gate.weight");
            assert_eq!((expected.clone(), found.clone()), (vec![48, 32], vec![64, 32]));
        }
        other => panic!("unexpected {other}"),
    }
}
