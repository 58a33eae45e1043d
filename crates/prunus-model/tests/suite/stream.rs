//! Streaming: a synthetic directory written a block at a time loads as the synthetic model;
//! a streamed prune writes what the in-memory prune gives (bit for bit from f32, in the
//! input's dtype from bf16); a failure half-way leaves nothing written.

use std::path::Path;

use candle_core::{Device, Tensor};
use prunus_core::layerwise::Target;
use prunus_core::pipeline::{PipelineOptions, PruneOutcome, prune_layerwise};
use prunus_core::{Built, Decision, Group, LayerView, LayerwiseMethod, Mask, Notes, Pattern, PrunableModel, Result, StatKind};
use prunus_model::hf::ShardReader;
use prunus_model::{LlamaConfig, LlamaModel, StreamingLlama, write_synthetic};
use candle_core::quantized::GgmlDType;
use safetensors::Dtype;

/// Wanda's score (|w| times the input feature's norm), per row.
struct NormScore;

impl LayerwiseMethod for NormScore {
    fn stats(&self) -> StatKind {
        StatKind::SqNorm
    }
    fn group(&self, _pattern: &Pattern) -> Result<Group> {
        Ok(Group::PerRow)
    }
    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        let norms: Vec<f64> = layer.stats.sq_sum.as_ref().expect("asked for").iter().map(|s| s.sqrt()).collect();
        Ok(Decision::Scores(layer.weight.chunks(layer.d_in).flat_map(|row| row.iter().zip(&norms).map(|(w, n)| w.abs() * *n as f32)).collect()))
    }
}

/// Prunes the smallest half of each row and scales the kept weights by 1.25 (a weight update,
/// as SparseGPT's, whose values must be written back).
struct ScaleKept;

impl LayerwiseMethod for ScaleKept {
    fn stats(&self) -> StatKind {
        StatKind::None
    }
    fn group(&self, _pattern: &Pattern) -> Result<Group> {
        Ok(Group::PerRow)
    }
    fn decide(&self, layer: &LayerView<'_>, _target: &Target, _notes: &mut Notes) -> Result<Decision> {
        let mut pruned = Vec::with_capacity(layer.weight.len());
        for row in layer.weight.chunks(layer.d_in) {
            let mut sorted: Vec<f32> = row.iter().map(|w| w.abs()).collect();
            sorted.sort_by(f32::total_cmp);
            let cut = sorted[row.len() / 2];
            pruned.extend(row.iter().map(|w| w.abs() < cut));
        }
        let weight = layer.weight.iter().map(|w| w * 1.25).collect();
        Ok(Decision::MaskAndWeights { mask: Mask::from_vec(layer.d_out, layer.d_in, pruned)?, weight })
    }
}

fn config(tied: bool) -> LlamaConfig {
    LlamaConfig::new(64, 32, 48, 3, 4, 2, tied)
}

fn tokens() -> Tensor {
    let ids: Vec<u32> = (0..5 * 12).map(|i| (i * 7 + 3) % 64).collect();
    Tensor::from_vec(ids, (5, 12), &Device::Cpu).unwrap()
}

fn prune(model: &mut dyn PrunableModel, method: impl LayerwiseMethod + 'static) -> PruneOutcome {
    let built: Built<dyn LayerwiseMethod> = Built::unregistered("test", Box::new(method));
    let calibration = tokens();
    prune_layerwise(model, &built, &Pattern::Unstructured { sparsity: 0.5 }, Some(&calibration), &PipelineOptions { batch_size: 2 }, &mut |_| {}).unwrap()
}

fn tensors(model: &LlamaModel) -> Vec<(String, Vec<f32>)> {
    model.named_tensors().into_iter().map(|(n, t)| (n, t.flatten_all().unwrap().to_vec1::<f32>().unwrap())).collect()
}

fn synthetic_dir(root: &Path, tied: bool, dtype: Dtype) -> std::path::PathBuf {
    let dir = root.join(format!("in-{tied}-{dtype:?}"));
    write_synthetic(&config(tied), 7, dtype, &dir, Some(b"{}"), &mut |_, _| {}).unwrap();
    dir
}

#[test]
fn a_synthetic_directory_loads_as_the_synthetic_model() {
    let root = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let dir = synthetic_dir(root.path(), tied, Dtype::F32);
        let loaded = LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
        let made = LlamaModel::synthetic(config(tied), 7).unwrap();
        assert_eq!(tensors(&loaded), tensors(&made), "tied = {tied}");
        // One shard for the embedding, one per block, one for the tail.
        let shards = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".safetensors")).count();
        assert_eq!(shards, 3 + 2);
    }
}

#[test]
fn a_streamed_prune_writes_what_the_in_memory_prune_gives() {
    let root = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let dir = synthetic_dir(root.path(), tied, Dtype::F32);
        for use_scale in [false, true] {
            let mut whole = LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
            let out = root.path().join(format!("out-{tied}-{use_scale}"));
            let mut streamed = StreamingLlama::open(&dir, &out, false, Some(b"{}".to_vec())).unwrap();
            let (a, b) = if use_scale {
                (prune(&mut whole, ScaleKept), prune(&mut streamed, ScaleKept))
            } else {
                (prune(&mut whole, NormScore), prune(&mut streamed, NormScore))
            };
            assert!(!out.exists(), "nothing appears before finish");
            streamed.finish().unwrap();
            let back = LlamaModel::from_hf_dir(&out, &Device::Cpu).unwrap();
            assert_eq!(tensors(&back), tensors(&whole), "tied = {tied}, weight update = {use_scale}");
            let counts = |o: &PruneOutcome| o.layers.iter().map(|l| (l.block, l.name.clone(), l.pruned)).collect::<Vec<_>>();
            assert_eq!(counts(&a), counts(&b));
            assert_eq!(back.config().tie_word_embeddings, tied);
            assert!(out.join("tokenizer.json").is_file() && out.join("model.safetensors.index.json").is_file());
        }
    }
}

#[test]
fn a_streamed_prune_keeps_the_input_dtype() {
    let root = tempfile::tempdir().unwrap();
    let dir = synthetic_dir(root.path(), false, Dtype::BF16);
    let mut whole = LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
    prune(&mut whole, NormScore);
    let out = root.path().join("out");
    let mut streamed = StreamingLlama::open(&dir, &out, false, None).unwrap();
    prune(&mut streamed, NormScore);
    streamed.finish().unwrap();
    let reader = ShardReader::open(&out).unwrap();
    for (name, t) in whole.named_tensors() {
        assert_eq!(reader.check(&name, t.dims()).unwrap(), Dtype::BF16, "{name}");
    }
    let text = std::fs::read_to_string(out.join("config.json")).unwrap();
    assert!(text.contains("\"torch_dtype\": \"bfloat16\""), "{text}");
    // Kept weights are the input's bf16 values, so bf16 -> f32 -> bf16 is exact.
    let back = LlamaModel::from_hf_dir(&out, &Device::Cpu).unwrap();
    assert_eq!(tensors(&back), tensors(&whole));
    let zeros: usize = back.sparsity_report().unwrap().iter().map(|r| r.zeros).sum();
    assert!(zeros > 0);
}

#[test]
fn a_failure_half_way_leaves_nothing_written() {
    let root = tempfile::tempdir().unwrap();
    let dir = synthetic_dir(root.path(), true, Dtype::F32);
    // A NaN in block 1's up_proj, written through the in-memory model.
    let mut model = LlamaModel::from_hf_dir(&dir, &Device::Cpu).unwrap();
    let name = "model.layers.1.mlp.up_proj.weight";
    let mut w = model.named_tensors().into_iter().find(|(n, _)| n == name).unwrap().1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    w[5] = f32::NAN;
    model.set_tensor(name, &Tensor::from_vec(w, (48, 32), &Device::Cpu).unwrap()).unwrap();
    let bad = root.path().join("bad");
    model.save_hf_dir(&bad, &prunus_model::SaveOptions::default()).unwrap();

    let out = root.path().join("out");
    let mut streamed = StreamingLlama::open(&bad, &out, false, None).unwrap();
    let built: Built<dyn LayerwiseMethod> = Built::unregistered("test", Box::new(NormScore));
    let calibration = tokens();
    let err = prune_layerwise(&mut streamed, &built, &Pattern::Unstructured { sparsity: 0.5 }, Some(&calibration), &PipelineOptions::default(), &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(err.contains("blk.1.up_proj"), "{err}");
    drop(streamed);
    assert!(!out.exists());
    let left: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(left.iter().all(|n| !n.starts_with(prunus_model::TEMP_PREFIX)), "{left:?}");
    // Finishing before every block is written is refused.
    let out2 = root.path().join("out2");
    let streamed = StreamingLlama::open(&dir, &out2, false, None).unwrap();
    assert!(streamed.finish().unwrap_err().to_string().contains("0 of 3 blocks"));
    assert!(!out2.exists());
}

#[test]
fn a_streamed_prune_of_a_gguf_file_writes_what_the_in_memory_prune_gives() {
    // f32, f16 and a quantized type (rows are multiples of Q8_0's 32-value blocks); untied
    // head; q/k rows permuted in the file, put back on reading.
    let root = tempfile::tempdir().unwrap();
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 64, 96, 3, 4, 2, false), 11).unwrap();
    for (dtype, written) in [(GgmlDType::F32, Dtype::F32), (GgmlDType::F16, Dtype::F16), (GgmlDType::Q8_0, Dtype::F32)] {
        let file = root.path().join(format!("m-{dtype:?}.gguf"));
        crate::common::write_gguf(&model, &file, dtype, "llama");
        let mut whole = LlamaModel::from_gguf(&file, &Device::Cpu).unwrap();
        prune(&mut whole, NormScore);
        let out = root.path().join(format!("out-{dtype:?}"));
        let mut streamed = StreamingLlama::open(&file, &out, false, None).unwrap();
        prune(&mut streamed, NormScore);
        streamed.finish().unwrap();
        let back = LlamaModel::from_hf_dir(&out, &Device::Cpu).unwrap();
        assert_eq!(tensors(&back), tensors(&whole), "{dtype:?}");
        let reader = ShardReader::open(&out).unwrap();
        assert_eq!(reader.check("model.layers.0.mlp.up_proj.weight", &[96, 64]).unwrap(), written, "{dtype:?}");
    }
}

#[test]
fn blocks_load_one_at_a_time_in_order() {
    let root = tempfile::tempdir().unwrap();
    let dir = synthetic_dir(root.path(), true, Dtype::F32);
    let mut streamed = StreamingLlama::open(&dir, &root.path().join("out"), false, None).unwrap();
    assert!(streamed.weight(0, "q_proj").is_err(), "block 0 is not read yet");
    assert!(streamed.load_block(1).is_err(), "out of order");
    streamed.load_block(0).unwrap();
    assert_eq!(streamed.weight(0, "q_proj").unwrap().dims(), &[32, 32]);
    assert!(streamed.load_block(1).is_err(), "block 0 is still resident");
    streamed.release_block(0).unwrap();
    assert!(streamed.weight(0, "q_proj").is_err(), "block 0 is written out");
    assert_eq!(streamed.linears(2).len(), 7);
}
