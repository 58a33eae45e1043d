//! Structural edits: a removed layer is a skipped block, a removed head or channel is a
//! zeroed one, GQA-breaking removals are refused, and edited models survive save and load.

use crate::common;

use std::collections::BTreeSet;

use candle_core::{Device, Tensor};
use common::{max_abs_diff, tokens};
use prunus_model::{LayerWidths, LlamaConfig, LlamaModel, ModelError, SaveOptions};

fn logits(m: &LlamaModel) -> Tensor {
    m.forward(&tokens(2, 9, m.config().vocab_size, 5)).unwrap()
}

/// `model` with the given rows (dim 0) or columns (dim 1) of tensor `name` set to zero.
fn zeroed(model: &LlamaModel, name: &str, dim: usize, indices: &[usize]) -> LlamaModel {
    let t = model.named_tensors().into_iter().find(|(n, _)| n == name).unwrap().1.clone();
    let mut rows = t.to_vec2::<f32>().unwrap();
    for (r, row) in rows.iter_mut().enumerate() {
        for (c, v) in row.iter_mut().enumerate() {
            if indices.contains(if dim == 0 { &r } else { &c }) {
                *v = 0.0;
            }
        }
    }
    let mut m = model.clone();
    m.set_tensor(name, &Tensor::new(rows, &Device::Cpu).unwrap()).unwrap();
    m
}

/// The rows (or columns) of heads `heads` of `head_dim` each.
fn head_rows(heads: &[usize], head_dim: usize) -> Vec<usize> {
    heads.iter().flat_map(|&h| h * head_dim..(h + 1) * head_dim).collect()
}

/// `model` with query heads `heads` of `layer` zeroed: q rows and o columns.
fn zero_query_heads(model: &LlamaModel, layer: usize, heads: &[usize]) -> LlamaModel {
    let rows = head_rows(heads, model.config().head_dim());
    let m = zeroed(model, &format!("model.layers.{layer}.self_attn.q_proj.weight"), 0, &rows);
    zeroed(&m, &format!("model.layers.{layer}.self_attn.o_proj.weight"), 1, &rows)
}

/// `model` with MLP channels `channels` of `layer` zeroed: gate/up rows and down columns.
fn zero_channels(model: &LlamaModel, layer: usize, channels: &[usize]) -> LlamaModel {
    let p = |s: &str| format!("model.layers.{layer}.mlp.{s}.weight");
    let m = zeroed(model, &p("gate_proj"), 0, channels);
    let m = zeroed(&m, &p("up_proj"), 0, channels);
    zeroed(&m, &p("down_proj"), 1, channels)
}

/// The top-level keys of a saved model's config.json.
fn config_keys(dir: &std::path::Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json.as_object().unwrap().keys().cloned().collect()
}

#[test]
fn removing_layers_equals_skipping_their_blocks() {
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 4, 4, 2, true), 1).unwrap();
    let t = tokens(2, 9, 64, 5);
    for removed in [vec![0], vec![2], vec![3], vec![1, 3], vec![2, 0, 2]] {
        let mut m = model.clone();
        m.remove_layers(&removed).unwrap();
        let kept: Vec<usize> = (0..4).filter(|l| !removed.contains(l)).collect();
        assert_eq!(m.config().num_hidden_layers, kept.len());
        assert_eq!(m.config().prunus_layer_widths, None);
        // The unedited model's blocks, run by hand, skipping the removed ones.
        let mut x = model.embed(&t).unwrap();
        for &b in &kept {
            x = model.block_forward(b, &x).unwrap();
        }
        let manual = model.logits(&model.final_norm(&x).unwrap()).unwrap();
        assert_eq!(max_abs_diff(&m.forward(&t).unwrap(), &manual), 0.0, "removing {removed:?}");
    }
}

#[test]
fn removing_kv_groups_equals_zeroing_them() {
    // Four query heads over two key/value heads, and six over two (three per group).
    for (config, layer, group) in [(LlamaConfig::tiny(), 1, 0), (LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 0, 1)] {
        let model = LlamaModel::synthetic(config, 2).unwrap();
        let rep = model.config().n_rep();
        let heads: Vec<usize> = (group * rep..(group + 1) * rep).collect();
        let hd = model.config().head_dim();
        let reference = zero_query_heads(&model, layer, &heads);
        let kv = format!("model.layers.{layer}.self_attn");
        let reference = zeroed(&reference, &format!("{kv}.k_proj.weight"), 0, &head_rows(&[group], hd));
        let reference = zeroed(&reference, &format!("{kv}.v_proj.weight"), 0, &head_rows(&[group], hd));
        let mut m = model.clone();
        m.remove_kv_groups(layer, &[group]).unwrap();
        let c = m.config();
        assert_eq!((c.layer_heads(layer), c.layer_kv_heads(layer)), (rep, 1));
        assert_eq!((c.layer_heads(1 - layer), c.layer_kv_heads(1 - layer)), (2 * rep, 2));
        let d = max_abs_diff(&logits(&m), &logits(&reference));
        assert!(d < 1e-5, "layer {layer} group {group}: {d}");
        // The removal is visible to the pipeline's view of the model.
        use prunus_core::PrunableModel;
        let q = m.linears(layer).into_iter().find(|l| l.name == "q_proj").unwrap();
        assert_eq!((q.d_out, q.d_in), (rep * hd, m.config().hidden_size));
    }
}

#[test]
fn removing_query_heads_evenly_equals_zeroing_them() {
    // tiny: groups {0, 1} and {2, 3}; one head from each leaves one query head per group.
    // 6 heads / 2 groups: {0, 1, 2} and {3, 4, 5}; one from each leaves two per group.
    let cases: [(LlamaConfig, usize, Vec<usize>); 3] = [
        (LlamaConfig::tiny(), 0, vec![1, 2]),
        (LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 1, vec![0, 4]),
        (LlamaConfig::new(50, 24, 40, 2, 6, 2, false), 0, vec![2, 5, 0, 3]),
    ];
    for (config, layer, heads) in cases {
        let model = LlamaModel::synthetic(config, 3).unwrap();
        let n_heads = model.config().num_attention_heads;
        let reference = zero_query_heads(&model, layer, &heads);
        let mut m = model.clone();
        m.remove_query_heads(layer, &heads).unwrap();
        assert_eq!(m.config().layer_heads(layer), n_heads - heads.len());
        assert_eq!(m.config().layer_kv_heads(layer), 2);
        let d = max_abs_diff(&logits(&m), &logits(&reference));
        assert!(d < 1e-5, "layer {layer} heads {heads:?}: {d}");
        // The differentiable path agrees with the inference path on the edited model.
        let t = tokens(2, 9, m.config().vocab_size, 8);
        let (loss, grads) = m.loss_and_grads(&t).unwrap();
        let want = m.nll(&t).unwrap().iter().sum::<f64>() / 16.0;
        assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
        for (name, w) in m.named_tensors() {
            assert_eq!(grads.get(&name).unwrap().dims(), w.dims(), "{name}");
        }
    }
}

#[test]
fn removing_mlp_channels_equals_zeroing_them() {
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 3, 4, 2, false), 4).unwrap();
    let edits: [(usize, Vec<usize>); 3] = [(0, vec![0, 5, 17, 47]), (2, vec![3]), (0, vec![1, 2])];
    let mut m = model.clone();
    let mut reference = model.clone();
    let mut kept: Vec<Vec<usize>> = vec![(0..48).collect(); 3];
    for (layer, channels) in &edits {
        // Indices refer to the current (already narrowed) layer; zero the original channels.
        let original: Vec<usize> = channels.iter().map(|&c| kept[*layer][c]).collect();
        kept[*layer].retain(|c| !original.contains(c));
        reference = zero_channels(&reference, *layer, &original);
        m.remove_mlp_channels(*layer, channels).unwrap();
    }
    let widths = m.config().prunus_layer_widths.clone().expect("layers now differ");
    assert_eq!(widths.intermediate_size, vec![42, 48, 47]);
    assert_eq!(m.config().intermediate_size, 48);
    let d = max_abs_diff(&logits(&m), &logits(&reference));
    assert!(d < 1e-5, "{d}");
}

#[test]
fn gqa_breaking_and_emptying_edits_are_errors_that_change_nothing() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 5).unwrap();
    let mut m = model.clone();
    let e = m.remove_query_heads(0, &[0]).unwrap_err().to_string();
    assert!(e.contains("same number of query heads") && e.contains("[1, 0]") && e.contains("remove_kv_groups"), "{e}");
    let e = m.remove_query_heads(1, &[0, 1, 2]).unwrap_err().to_string();
    assert!(e.contains("same number of query heads"), "{e}");
    let e = m.remove_query_heads(0, &[0, 1, 2, 3]).unwrap_err().to_string();
    assert!(e.contains("every query head"), "{e}");
    let e = m.remove_query_heads(0, &[4]).unwrap_err().to_string();
    assert!(e.contains("head 4 is out of range"), "{e}");
    let e = m.remove_kv_groups(0, &[0, 1]).unwrap_err().to_string();
    assert!(e.contains("one must remain"), "{e}");
    let e = m.remove_kv_groups(0, &[2]).unwrap_err().to_string();
    assert!(e.contains("group 2 is out of range"), "{e}");
    let e = m.remove_mlp_channels(1, &(0..48).collect::<Vec<_>>()).unwrap_err().to_string();
    assert!(e.contains("one must remain"), "{e}");
    let e = m.remove_mlp_channels(0, &[48]).unwrap_err().to_string();
    assert!(e.contains("channel 48 is out of range"), "{e}");
    assert!(matches!(m.remove_layers(&[0, 1]).unwrap_err(), ModelError::Config { .. }));
    assert!(matches!(m.remove_layers(&[2]).unwrap_err(), ModelError::BlockOutOfRange { block: 2, n_blocks: 2 }));
    assert!(matches!(m.remove_query_heads(2, &[0]).unwrap_err(), ModelError::BlockOutOfRange { block: 2, .. }));
    assert_eq!(m.config(), model.config());
    assert_eq!(max_abs_diff(&logits(&m), &logits(&model)), 0.0);
    // Empty removals are no-ops.
    m.remove_query_heads(0, &[]).unwrap();
    m.remove_mlp_channels(0, &[]).unwrap();
    m.remove_layers(&[]).unwrap();
    assert_eq!(m.config(), model.config());
}

#[test]
fn edited_models_round_trip_through_hf_directories() {
    let dir = tempfile::tempdir().unwrap();
    for tied in [true, false] {
        let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 3, 4, 2, tied), 6).unwrap();
        let plain = dir.path().join(format!("plain-{tied}"));
        model.save_hf_dir(&plain, &SaveOptions::default()).unwrap();

        // Layer removal: a plain config.json with the same keys, fewer layers.
        let mut shallow = model.clone();
        shallow.remove_layers(&[1]).unwrap();
        let p = dir.path().join(format!("shallow-{tied}"));
        shallow.save_hf_dir(&p, &SaveOptions::default()).unwrap();
        assert_eq!(config_keys(&p), config_keys(&plain));
        let back = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap();
        assert_eq!(back.config().num_hidden_layers, 2);
        assert_eq!(max_abs_diff(&logits(&back), &logits(&shallow)), 0.0);

        // Width removal that differs between layers: per-layer widths in config.json.
        let mut narrow = model.clone();
        narrow.remove_kv_groups(0, &[1]).unwrap();
        narrow.remove_query_heads(2, &[0, 3]).unwrap();
        narrow.remove_mlp_channels(1, &[4, 9, 30]).unwrap();
        let p = dir.path().join(format!("narrow-{tied}"));
        narrow.save_hf_dir(&p, &SaveOptions::default()).unwrap();
        let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(p.join("config.json")).unwrap()).unwrap();
        let widths: LayerWidths = serde_json::from_value(json["prunus_layer_widths"].clone()).unwrap();
        assert_eq!(widths.num_attention_heads, vec![2, 4, 2]);
        assert_eq!(widths.num_key_value_heads, vec![1, 2, 2]);
        assert_eq!(widths.intermediate_size, vec![48, 45, 48]);
        assert_eq!((json["num_attention_heads"].as_u64(), json["head_dim"].as_u64()), (Some(4), Some(8)));
        let back = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap();
        assert_eq!(back.config(), &narrow.export_config());
        assert_eq!(max_abs_diff(&logits(&back), &logits(&narrow)), 0.0);

        // The same width cut in every layer needs no per-layer key.
        let mut uniform = model.clone();
        for layer in 0..3 {
            uniform.remove_mlp_channels(layer, &[0, 1]).unwrap();
            uniform.remove_query_heads(layer, &[1, 3]).unwrap();
        }
        assert_eq!(uniform.config().prunus_layer_widths, None);
        let p = dir.path().join(format!("uniform-{tied}"));
        uniform.save_hf_dir(&p, &SaveOptions::default()).unwrap();
        assert_eq!(config_keys(&p), config_keys(&plain));
        let back = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap();
        let c = back.config();
        assert_eq!((c.intermediate_size, c.num_attention_heads, c.n_kv_heads(), c.head_dim()), (46, 2, 2, 8));
        assert_eq!(max_abs_diff(&logits(&back), &logits(&uniform)), 0.0);
    }
}

#[test]
fn inconsistent_layer_widths_are_refused() {
    let model = LlamaModel::synthetic(LlamaConfig::tiny(), 1).unwrap();
    let mut m = model.clone();
    m.remove_mlp_channels(0, &[0]).unwrap();
    let good = m.export_config();
    good.validate().unwrap();
    let mut c = good.clone();
    c.prunus_layer_widths.as_mut().unwrap().intermediate_size.push(48);
    assert!(c.validate().unwrap_err().to_string().contains("has 3 entries"));
    let mut c = good.clone();
    c.intermediate_size = 50;
    assert!(c.validate().unwrap_err().to_string().contains("largest entry"));
    let mut c = good.clone();
    c.head_dim = None;
    assert!(c.validate().unwrap_err().to_string().contains("head_dim"));
    let mut c = good.clone();
    c.prunus_layer_widths.as_mut().unwrap().num_attention_heads = vec![3, 4];
    c.num_attention_heads = 4;
    assert!(c.validate().unwrap_err().to_string().contains("does not divide"));
    // A directory whose per-layer widths disagree with its tensors names the tensor.
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m");
    m.save_hf_dir(&p, &SaveOptions::default()).unwrap();
    let mut c = good.clone();
    c.prunus_layer_widths.as_mut().unwrap().intermediate_size = vec![48, 47];
    std::fs::write(p.join("config.json"), serde_json::to_string(&c).unwrap()).unwrap();
    let e = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap_err();
    assert!(matches!(&e, ModelError::ShapeMismatch { tensor, .. } if tensor == "model.layers.0.mlp.gate_proj.weight"), "{e}");
}

#[test]
fn param_reduction_counts_with_and_without_embeddings() {
    for tied in [true, false] {
        let model = LlamaModel::synthetic(LlamaConfig::new(64, 32, 48, 3, 4, 2, tied), 7).unwrap();
        let before = model.param_counts();
        let (d, hd, vocab) = (32, 8, 64);
        let embeddings = vocab * d * if tied { 1 } else { 2 };
        assert_eq!(before.excluding_embeddings(), before.total - embeddings);
        let mut m = model.clone();
        m.remove_layers(&[2]).unwrap();
        m.remove_kv_groups(0, &[0]).unwrap(); // 2 query heads, 1 kv head
        m.remove_query_heads(1, &[0, 2]).unwrap(); // 2 query heads
        m.remove_mlp_channels(1, &[0, 1, 2]).unwrap();
        let r = m.param_reduction(&before);
        let layer = 2 * d + 2 * (4 * hd * d) + 2 * (2 * hd * d) + 3 * 48 * d;
        let removed = layer + 2 * (2 * hd * d) + 2 * (hd * d) + 2 * (2 * hd * d) + 3 * 3 * d;
        assert_eq!(r.removed(), removed);
        assert_eq!(r.removed_excluding_embeddings(), removed);
        assert_eq!(r.after.total, m.n_params());
        assert_eq!(r.after.embedding, before.embedding);
        let all = before.total as f64;
        assert!((r.fraction_removed() - removed as f64 / all).abs() < 1e-12);
        let body = (before.total - embeddings) as f64;
        assert!((r.fraction_removed_excluding_embeddings() - removed as f64 / body).abs() < 1e-12);
        assert!(r.fraction_removed_excluding_embeddings() > r.fraction_removed());
    }
}

#[test]
fn real_model_without_two_layers_saves_and_loads() {
    let path = common::real_model_path();
    let model = LlamaModel::from_gguf(&path, &Device::Cpu).unwrap();
    let before = model.param_counts();
    let plain_keys: BTreeSet<String> = match serde_json::to_value(model.export_config()).unwrap() {
        serde_json::Value::Object(m) => m.keys().cloned().collect(),
        _ => unreachable!(),
    };
    let mut m = model;
    m.remove_layers(&[11, 23]).unwrap();
    assert_eq!(m.config().num_hidden_layers, 28);
    let r = m.param_reduction(&before);
    assert_eq!(r.removed(), before.per_block_linears[11] + before.per_block_linears[23] + 4 * 576);
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("smollm2-28");
    m.save_hf_dir(&p, &SaveOptions::default()).unwrap();
    assert_eq!(config_keys(&p), plain_keys);
    let back = LlamaModel::from_hf_dir(&p, &Device::Cpu).unwrap();
    let t = tokens(1, 24, 49152, 9);
    assert_eq!(max_abs_diff(&back.forward(&t).unwrap(), &m.forward(&t).unwrap()), 0.0);
}
